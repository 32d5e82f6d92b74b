//! The integration-test harness: its modules, what they re-export, and the limits they share.
//!
//! Everything is real and everything is bounded: real pacserve, pacman, mirrors and browsers,
//! on 127.0.0.1 or inside network namespaces a test made; every wait has a deadline, every
//! socket a timeout, every loop a count. Every process a test starts is killed by pid in
//! `Drop` and every temporary directory and namespace is removed in `Drop`, so a panicking
//! test cleans up too and a second run starts clean.
//!
//! - [`tempdir`]: private directories under /tmp.
//! - [`process`]: bounded runs of commands, and children killed by pid.
//! - [`daemon`]: one builder for every way a test starts pacserve, and what it observes.
//! - [`mirror`]: the test mirror, and servers that hang or refuse.
//! - [`http`]: a raw HTTP client for exact requests and hostile bytes; HTTP dates.
//! - [`packages`]: real pacman packages and repo databases.
//! - [`repo`]: a repository on a mirror, and hosts with a cache dir and a pacman.conf.
//! - [`pacman`]: the real pacman with a private root and config.
//! - [`json`], [`prometheus`]: strict parsers for `/status.json` and `/metrics`.
//! - [`browser`]: headless chromium, and checks of what it shows.
//! - [`lan`]: network namespaces, veth pairs, a bridge, and cleanup of leftovers.
//! - [`mirror_lan`]: a LAN of namespaces with a mirror host serving `core`, and its hosts.
//! - [`preflight`]: every outside tool checked once, before anything needs it.

// Every test binary compiles the whole harness and uses a part of it.
#![allow(dead_code, unused_imports)]

pub mod browser;
pub mod daemon;
pub mod http;
pub mod json;
pub mod lan;
pub mod mirror;
pub mod mirror_lan;
pub mod packages;
pub mod pacman;
pub mod preflight;
pub mod process;
pub mod prometheus;
pub mod repo;
pub mod tempdir;

pub use daemon::*;
pub use http::*;
pub use json::Json;
pub use mirror::*;
pub use packages::*;
pub use pacman::*;
pub use process::*;
pub use repo::*;
pub use rustix::process::Signal;
pub use tempdir::TempDir;

use std::thread;
use std::time::{Duration, Instant};

/// How long what pacserve reports (a log line, a counter, a lookup in `/status.json`) may lag
/// behind what it reports on: both are written just after the answer goes out.
pub const LOG_WAIT: Duration = Duration::from_secs(10);
/// Pause before checking that something did *not* happen: a request that did happen shows up
/// in the log and the counters well within it.
pub const SETTLE: Duration = Duration::from_millis(300);
/// Longest a single pacman run may take before it is killed and the test fails.
pub const PACMAN_LIMIT: Duration = Duration::from_secs(120);
/// Longest pacserve may take to print its `listening on` line natively (qemu gets longer).
pub const START_LIMIT: Duration = Duration::from_secs(10);
/// Pause between two polls of a condition.
pub const POLL: Duration = Duration::from_millis(20);

/// Poll `cond` every [`POLL`] until it holds (true) or `limit` passes (false).
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// Poll `f` every [`POLL`] until it gives Some (that) or `limit` passes (None).
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let mut found = None;
    wait_until(limit, || {
        found = f();
        found.is_some()
    });
    found
}
