//! Counters kept in memory: cheap atomics on the hot path, and a short ring of recent
//! lookups for the status page.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::http::server::Outcome;
use crate::limits::RECENT_LOOKUPS;

/// The outcomes that are counted, in the order they are shown.
pub const COUNTED: [Outcome; 5] = [
    Outcome::Local,
    Outcome::Peer,
    Outcome::Mirror,
    Outcome::Miss,
    Outcome::Bad,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recent {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub method: String,
    /// Already escaped for logging.
    pub path: String,
    pub status: u16,
    pub outcome: Outcome,
    pub bytes: u64,
}

pub struct Stats {
    started: Instant,
    by_outcome: [AtomicU64; 5],
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
    pub by_outcome: [u64; 5],
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
    /// One finished request. `from_cache` is true when the body was a cached package.
    pub fn record(
        &self,
        method: &str,
        path: &str,
        status: u16,
        outcome: Outcome,
        bytes: u64,
        from_cache: bool,
    ) {
        if let Some(i) = COUNTED.iter().position(|o| *o == outcome) {
            self.by_outcome[i].fetch_add(1, Ordering::Relaxed);
        }
        if outcome == Outcome::Status {
            // Monitoring traffic is neither a lookup nor package bytes.
            return;
        }
        self.bytes_served.fetch_add(bytes, Ordering::Relaxed);
        if from_cache {
            self.bytes_from_cache.fetch_add(bytes, Ordering::Relaxed);
        }
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut recent = crate::lock(&self.recent);
        if recent.len() == RECENT_LOOKUPS {
            recent.pop_front();
        }
        recent.push_back(Recent {
            at,
            method: method.to_string(),
            path: path.to_string(),
            status,
            outcome,
            bytes,
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

    #[test]
    fn counts_and_keeps_recent_lookups() {
        let s = Stats::default();
        s.record(
            "GET",
            "/request/core/x86_64/a",
            200,
            Outcome::Local,
            100,
            true,
        );
        s.record(
            "GET",
            "/request/core/x86_64/a",
            206,
            Outcome::Local,
            10,
            true,
        );
        s.record(
            "GET",
            "/request/core/x86_64/b",
            307,
            Outcome::Peer,
            0,
            false,
        );
        s.record(
            "GET",
            "/request/core/x86_64/c",
            307,
            Outcome::Mirror,
            0,
            false,
        );
        s.record(
            "GET",
            "/request/core/x86_64/d",
            404,
            Outcome::Miss,
            14,
            false,
        );
        s.record("GET", "/status.json", 200, Outcome::Status, 500, false);
        let c = s.counters();
        assert_eq!(c.count(Outcome::Local), 2);
        assert_eq!(c.count(Outcome::Peer), 1);
        assert_eq!(c.count(Outcome::Mirror), 1);
        assert_eq!(c.count(Outcome::Miss), 1);
        assert_eq!(c.count(Outcome::Bad), 0);
        assert_eq!(c.count(Outcome::Status), 0);
        assert_eq!(c.bytes_served, 124, "status pages are not counted");
        assert_eq!(c.bytes_saved, 110);
        let recent = s.recent();
        assert_eq!(recent.len(), 5, "status requests are not lookups");
        assert_eq!(recent[0].path, "/request/core/x86_64/d");
    }

    #[test]
    fn recent_ring_is_bounded() {
        let s = Stats::default();
        for i in 0..(RECENT_LOOKUPS + 7) {
            s.record("GET", &format!("/p/{i}"), 404, Outcome::Miss, 0, false);
        }
        let recent = s.recent();
        assert_eq!(recent.len(), RECENT_LOOKUPS);
        assert_eq!(recent[0].path, format!("/p/{}", RECENT_LOOKUPS + 6));
    }
}
