//! pacserve: share pacman package caches across a LAN.
//!
//! Pure parsers and decisions live in their own modules and do no I/O; `http::server`,
//! `http::client` and `main.rs` are the thin shell around them.

pub mod cache;
pub mod cli;
pub mod discovery;
pub mod http;
pub mod limits;
pub mod log;
pub mod lookup;
pub mod notify;
pub mod pacman_conf;
pub mod pacsrv;
pub mod peers;
pub mod resolve;
pub mod route;
pub mod rt;
pub mod service;
pub mod stats;
pub mod status;
pub mod sysinfo;

/// Lock a mutex even if a thread panicked while holding it: every shared table here is
/// changed by single calls, so a panic elsewhere cannot leave one half-updated.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
