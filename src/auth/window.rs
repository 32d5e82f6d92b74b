//! Freshness of signed messages: the time window around now, and the cache of messages
//! already seen (replays). Pure: the time (Unix seconds) is always an argument, so tests run
//! the clock as they like.

use std::collections::BTreeSet;

use crate::limits::{AUTH_WINDOW, MAX_REPLAY_ENTRIES};

/// Why a signed message with a valid MAC is still not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Its timestamp is more than [`AUTH_WINDOW`] before or after now (a capture played back
    /// late, or a host whose clock is off); the difference in seconds, signed.
    Window(i64),
    /// Seen before (the same timestamp and nonce), or older than what a full cache still
    /// remembers.
    Replay,
}

/// `ts` seconds since the epoch, seen at `now`: within [`AUTH_WINDOW`] either way?
pub fn in_window(ts: u64, now: u64) -> Result<(), Stale> {
    let skew = i128::from(ts) - i128::from(now);
    let window = i128::from(AUTH_WINDOW.as_secs());
    if skew.abs() > window {
        let clamped = skew.clamp(i128::from(i64::MIN), i128::from(i64::MAX));
        return Err(Stale::Window(clamped as i64));
    }
    Ok(())
}

/// The messages taken within the window, by (timestamp, nonce), at most
/// [`MAX_REPLAY_ENTRIES`] of them. A message can only be replayed while it is inside the
/// window, so an entry is kept until its timestamp has left it; when the cache is full of
/// entries that are all still inside, the oldest is dropped and `floor` rises to it: from
/// then on nothing that old is taken, so what is forgotten can never come back. Only
/// messages with a valid MAC are entered, so only a holder of the key can fill it.
#[derive(Debug, Clone, Default)]
pub struct ReplayCache {
    seen: BTreeSet<(u64, u64)>,
    floor: Option<u64>,
}

impl ReplayCache {
    /// A message with timestamp `ts` and `nonce` (its MAC already checked) arrives at
    /// `now`: take it (and remember it) or say why not.
    pub fn admit(&mut self, ts: u64, nonce: u64, now: u64) -> Result<(), Stale> {
        in_window(ts, now)?;
        if self.floor.is_some_and(|f| ts <= f) {
            return Err(Stale::Replay);
        }
        if self.seen.contains(&(ts, nonce)) {
            return Err(Stale::Replay);
        }
        self.expire(now);
        if self.seen.len() >= MAX_REPLAY_ENTRIES {
            if let Some(oldest) = self.seen.pop_first() {
                self.floor = Some(self.floor.map_or(oldest.0, |f| f.max(oldest.0)));
            }
            // Everything as old as the new floor would be refused now: drop it too.
            let floor = self.floor.unwrap_or(0);
            while self.seen.first().is_some_and(|e| e.0 <= floor) {
                self.seen.pop_first();
            }
            if ts <= floor {
                return Err(Stale::Replay);
            }
        }
        self.seen.insert((ts, nonce));
        Ok(())
    }

    /// Forget entries whose timestamp has left the window: a replay of them is refused as
    /// out of the window.
    fn expire(&mut self, now: u64) {
        let window = AUTH_WINDOW.as_secs();
        while self
            .seen
            .first()
            .is_some_and(|e| e.0.saturating_add(window) < now)
        {
            self.seen.pop_first();
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = AUTH_WINDOW.as_secs();
    const T0: u64 = 1_700_000_000;

    #[test]
    fn the_window_is_inclusive_both_ways() {
        let cases: &[(u64, u64, Result<(), Stale>)] = &[
            (T0, T0, Ok(())),
            (T0 - W, T0, Ok(())),
            (T0 + W, T0, Ok(())),
            (T0 - W - 1, T0, Err(Stale::Window(-(W as i64) - 1))),
            (T0 + W + 1, T0, Err(Stale::Window(W as i64 + 1))),
            (T0 - 60, T0, Ok(())),
            (0, T0, Err(Stale::Window(-(T0 as i64)))),
            (u64::MAX, 0, Err(Stale::Window(i64::MAX))),
            (0, u64::MAX, Err(Stale::Window(i64::MIN))),
            (u64::MAX, u64::MAX, Ok(())),
            // A clock at the epoch (no RTC, no NTP yet) refuses everything real.
            (T0, 0, Err(Stale::Window(T0 as i64))),
        ];
        for (ts, now, want) in cases {
            assert_eq!(in_window(*ts, *now), *want, "ts {ts} now {now}");
        }
    }

    /// Steps of (arrival time, timestamp, nonce, verdict) against one cache: the fake clock
    /// is the first column.
    #[test]
    fn replays_are_refused_until_the_window_forgets_them() {
        use Stale::*;
        let steps: &[(u64, u64, u64, Result<(), Stale>)] = &[
            (T0, T0, 1, Ok(())),
            // The same message again, at once and a minute later.
            (T0, T0, 1, Err(Replay)),
            (T0 + 60, T0, 1, Err(Replay)),
            // Another nonce in the same second, or the same nonce at another second.
            (T0 + 60, T0, 2, Ok(())),
            (T0 + 60, T0 + 1, 1, Ok(())),
            // Two minutes after its timestamp it is still inside, still a replay.
            (T0 + W, T0, 1, Err(Replay)),
            // Once outside, it is refused as late (and forgotten by the cache).
            (T0 + W + 1, T0, 1, Err(Window(-(W as i64) - 1))),
            (T0 + W + 5, T0 + 10, 9, Ok(())),
            // From the future, within the window: fine once.
            (T0 + W + 5, T0 + W + 100, 3, Ok(())),
            (T0 + W + 6, T0 + W + 100, 3, Err(Replay)),
        ];
        let mut cache = ReplayCache::default();
        for (i, (now, ts, nonce, want)) in steps.iter().enumerate() {
            assert_eq!(cache.admit(*ts, *nonce, *now), *want, "step {i}");
        }
        // The entries of T0 and T0+1 have left the window and the cache: two are kept.
        assert_eq!(cache.len(), 2, "{cache:?}");
    }

    #[test]
    fn a_full_cache_raises_its_floor_instead_of_forgetting_replays() {
        let mut cache = ReplayCache::default();
        // Fill it within one window: timestamps T0-100 .. spread over 200 s.
        let n = MAX_REPLAY_ENTRIES as u64;
        for i in 0..n {
            let ts = T0 - 100 + i * 200 / n;
            assert_eq!(cache.admit(ts, i, T0), Ok(()), "entry {i}");
        }
        assert_eq!(cache.len(), MAX_REPLAY_ENTRIES);
        // One more: the oldest second goes, and with it everything that old.
        assert_eq!(cache.admit(T0 + 50, n, T0), Ok(()));
        assert!(cache.len() <= MAX_REPLAY_ENTRIES);
        // The first entry, forgotten, is refused anyway: it is not newer than the floor.
        assert_eq!(cache.admit(T0 - 100, 0, T0), Err(Stale::Replay));
        assert_eq!(cache.admit(T0 - 100, 12345, T0), Err(Stale::Replay));
        // Newer messages are still taken; remembered ones are still replays.
        assert_eq!(cache.admit(T0 + 60, n + 1, T0), Ok(()));
        assert_eq!(cache.admit(T0 + 50, n, T0), Err(Stale::Replay));
        // A minute later the old entries have expired: the cache has room again, the floor
        // stays below the window's start and costs nothing.
        let later = T0 + 2 * W;
        assert_eq!(cache.admit(later, 7, later), Ok(()));
        assert!(cache.len() < MAX_REPLAY_ENTRIES / 2, "{}", cache.len());
    }
}
