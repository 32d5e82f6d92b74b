//! Client connections kept open after a HEAD for the next one to the same server (I/O: a
//! non-blocking peek). A lookup asks a peer and probes a mirror for every package pacman
//! wants; on a connection already open each costs one round trip instead of two.
//!
//! Bounded: at most [`CLIENT_IDLE_PER_SERVER`] per server and [`CLIENT_IDLE_MAX`] in all
//! (the oldest go first), none older than [`CLIENT_IDLE_TIME`] (well inside the idle
//! timeouts of pacserve and of common servers). A connection is taken only if nothing
//! arrived on it meanwhile: a server that closed it, or sent bytes nobody asked for, is
//! dropped.

use std::io;
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Instant;

use async_io::Async;

use crate::limits::{CLIENT_IDLE_MAX, CLIENT_IDLE_PER_SERVER, CLIENT_IDLE_TIME};

struct Idle {
    host: String,
    port: u16,
    stream: Async<TcpStream>,
    since: Instant,
}

static IDLE: Mutex<Vec<Idle>> = Mutex::new(Vec::new());

/// An open connection to `host:port` that is still good to send on, the most recently
/// used first.
pub fn take(host: &str, port: u16) -> Option<Async<TcpStream>> {
    let mut idle = crate::lock(&IDLE);
    let now = Instant::now();
    idle.retain(|c| now.duration_since(c.since) < CLIENT_IDLE_TIME);
    while let Some(i) = idle.iter().rposition(|c| c.port == port && c.host == host) {
        let c = idle.remove(i);
        if quiet(&c.stream) {
            return Some(c.stream);
        }
    }
    None
}

/// Keep `stream` (its exchange complete, nothing unread on it) for the next request to
/// `host:port`.
pub fn put(host: &str, port: u16, stream: Async<TcpStream>) {
    let mut idle = crate::lock(&IDLE);
    let same = idle
        .iter()
        .filter(|c| c.port == port && c.host == host)
        .count();
    if same >= CLIENT_IDLE_PER_SERVER {
        if let Some(i) = idle.iter().position(|c| c.port == port && c.host == host) {
            idle.remove(i);
        }
    } else if idle.len() >= CLIENT_IDLE_MAX {
        idle.remove(0);
    }
    idle.push(Idle {
        host: host.to_string(),
        port,
        stream,
        since: Instant::now(),
    });
}

/// Connections held now (for the tests).
#[cfg(test)]
pub fn held(host: &str, port: u16) -> usize {
    crate::lock(&IDLE)
        .iter()
        .filter(|c| c.port == port && c.host == host)
        .count()
}

/// Nothing has arrived on the connection since its last answer: no close, no stray bytes.
fn quiet(stream: &Async<TcpStream>) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.get_ref().peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
