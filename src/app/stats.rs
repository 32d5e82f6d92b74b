//! Counters kept in memory: cheap atomics on the hot path, and a short ring of recent
//! lookups for the status page. No I/O.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::app::outcome::{COUNTED, Outcome};
use crate::http::handler::Completed;
use crate::limits::RECENT_LOOKUPS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recent {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// As the client sent it (a valid token); each view escapes it its own way.
    pub method: String,
    /// As the client sent it (printable ASCII, the parser allows nothing else); each view
    /// escapes it its own way.
    pub path: String,
    pub status: u16,
    pub outcome: Outcome,
    pub bytes: u64,
}

pub struct Stats {
    started: Instant,
    by_outcome: [AtomicU64; COUNTED.len()],
    bytes_served: AtomicU64,
    bytes_from_cache: AtomicU64,
    recent: Mutex<VecDeque<Recent>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            by_outcome: Default::default(),
            bytes_served: AtomicU64::new(0),
            bytes_from_cache: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_LOOKUPS)),
        }
    }
}

/// A consistent-enough copy of the counters for rendering.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counters {
    pub uptime_secs: u64,
    /// Requests by outcome, in `COUNTED` order.
    pub by_outcome: [u64; COUNTED.len()],
    /// Every body byte sent for lookups (not for status pages).
    pub bytes_served: u64,
    /// Package bytes sent from this host's cache, to this host's pacman or to another
    /// host's: bytes the LAN did not fetch from the internet.
    pub bytes_saved: u64,
}

impl Counters {
    pub fn count(&self, outcome: Outcome) -> u64 {
        COUNTED
            .iter()
            .position(|o| *o == outcome)
            .map_or(0, |i| self.by_outcome[i])
    }
}

impl Stats {
    /// One finished response. Bytes of a file body are bytes the LAN saved.
    pub fn record(&self, done: &Completed<'_, Outcome>) {
        if let Some(i) = COUNTED.iter().position(|o| *o == done.outcome) {
            self.by_outcome[i].fetch_add(1, Ordering::Relaxed);
        }
        if done.outcome == Outcome::Status {
            // Monitoring traffic is neither a lookup nor package bytes.
            return;
        }
        self.bytes_served
            .fetch_add(done.body_bytes, Ordering::Relaxed);
        if done.from_file {
            self.bytes_from_cache
                .fetch_add(done.body_bytes, Ordering::Relaxed);
        }
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (method, path) = match done.request {
            Some(r) => (r.method_text.clone(), r.target.clone()),
            None => ("-".to_string(), "-".to_string()),
        };
        let mut recent = crate::lock(&self.recent);
        if recent.len() == RECENT_LOOKUPS {
            recent.pop_front();
        }
        recent.push_back(Recent {
            at,
            method,
            path,
            status: done.status,
            outcome: done.outcome,
            bytes: done.body_bytes,
        });
    }

    pub fn counters(&self) -> Counters {
        Counters {
            uptime_secs: self.started.elapsed().as_secs(),
            by_outcome: std::array::from_fn(|i| self.by_outcome[i].load(Ordering::Relaxed)),
            bytes_served: self.bytes_served.load(Ordering::Relaxed),
            bytes_saved: self.bytes_from_cache.load(Ordering::Relaxed),
        }
    }

    /// Newest first.
    pub fn recent(&self) -> Vec<Recent> {
        let recent = crate::lock(&self.recent);
        recent.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::message::{Method, Request};

    /// Record one GET of `path` (None: an answer the shell gave before any request).
    fn record(s: &Stats, path: Option<&str>, status: u16, outcome: Outcome, bytes: u64) {
        let req = path.map(|p| Request {
            peer: "127.0.0.1:1".parse().unwrap(),
            method: Method::Get,
            method_text: "GET".into(),
            target: p.into(),
            range: None,
            if_range: None,
            if_modified_since: None,
            if_none_match: None,
            has_body: false,
            has_host: true,
            http11: true,
            from_pacserve: false,
            auth: None,
        });
        s.record(&Completed {
            peer: "127.0.0.1:1".parse().unwrap(),
            request: req.as_ref(),
            status,
            body_bytes: bytes,
            from_file: outcome == Outcome::Local,
            outcome,
            shell: None,
        });
    }

    #[test]
    fn counts_and_keeps_recent_lookups() {
        let s = Stats::default();
        record(&s, Some("/request/core/x86_64/a"), 200, Outcome::Local, 100);
        record(&s, Some("/request/core/x86_64/a"), 206, Outcome::Local, 10);
        record(&s, Some("/request/core/x86_64/b"), 307, Outcome::Peer, 0);
        record(&s, Some("/request/core/x86_64/c"), 307, Outcome::Mirror, 0);
        record(&s, Some("/request/core/x86_64/d"), 404, Outcome::Miss, 14);
        record(&s, None, 503, Outcome::Busy, 0);
        record(&s, Some("/status.json"), 200, Outcome::Status, 500);
        let c = s.counters();
        assert_eq!(c.count(Outcome::Local), 2);
        assert_eq!(c.count(Outcome::Peer), 1);
        assert_eq!(c.count(Outcome::Mirror), 1);
        assert_eq!(c.count(Outcome::Miss), 1);
        assert_eq!(c.count(Outcome::Bad), 0);
        assert_eq!(c.count(Outcome::Busy), 1);
        assert_eq!(c.count(Outcome::Status), 0);
        assert_eq!(c.bytes_served, 124, "status pages are not counted");
        assert_eq!(c.bytes_saved, 110);
        let recent = s.recent();
        assert_eq!(recent.len(), 6, "status requests are not lookups");
        assert_eq!(recent[0].path, "-", "the busy answer had no request");
        assert_eq!(recent[1].path, "/request/core/x86_64/d");
    }

    #[test]
    fn recent_ring_is_bounded() {
        let s = Stats::default();
        for i in 0..(RECENT_LOOKUPS + 7) {
            record(&s, Some(&format!("/p/{i}")), 404, Outcome::Miss, 0);
        }
        let recent = s.recent();
        assert_eq!(recent.len(), RECENT_LOOKUPS);
        assert_eq!(recent[0].path, format!("/p/{}", RECENT_LOOKUPS + 6));
    }
}
