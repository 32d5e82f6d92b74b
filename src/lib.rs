//! pacserve: share pacman package caches across a LAN.
//!
//! The layers, from the top: `main.rs` wires the parts together; [`app`] decides what each
//! request gets (local cache, a LAN peer, a mirror); [`peers`] knows the other pacserves
//! (the table, lookups, multicast discovery); [`http`] is the hand-written HTTP/1.1 server
//! and client; [`config`] reads the command line and pacman.conf; [`sys`] is the process's
//! surroundings (log, systemd, facts about this host, the executor). [`auth`] is the shared
//! secret of a LAN that lets no stranger in. [`hub`] is the always-on collector of the
//! LAN's packages (`--hub`). [`limits`] holds every limit. Each module's first doc line
//! says what it owns and whether it does I/O.

pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod hub;
pub mod limits;
pub mod names;
pub mod pacsrv;
pub mod peers;
pub mod syncdb;
pub mod sys;
pub mod version;

/// Lock a mutex even if a thread panicked while holding it: every shared table here is
/// changed by single calls, so a panic elsewhere cannot leave one half-updated.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
