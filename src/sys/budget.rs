//! The budget of outgoing connections (lookups to peers, probes of mirrors): one counter for
//! the whole process, so no flood of peers or lookups can make pacserve open more sockets than
//! its descriptor limit was raised for. Lookups skip a peer when the budget is spent; probes
//! wait for room until their deadline. No I/O.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::limits::{MAX_OUTGOING_CONNECTIONS, OUTGOING_WAIT_POLL, PROBE_RESERVE};

/// Outgoing connections open now.
static IN_USE: AtomicUsize = AtomicUsize::new(0);
/// Times the budget was spent when someone asked (for the status page).
static REFUSED: AtomicUsize = AtomicUsize::new(0);

/// The right to hold one outgoing connection; given back on drop.
#[derive(Debug)]
pub struct Permit(());

impl Drop for Permit {
    fn drop(&mut self) {
        IN_USE.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A permit now for a peer lookup, or None when all but [`PROBE_RESERVE`] of the
/// [`MAX_OUTGOING_CONNECTIONS`] are open: a flood of lookups can never starve the mirror
/// probes, which pacman's requests fall back on.
pub fn try_outgoing() -> Option<Permit> {
    take(MAX_OUTGOING_CONNECTIONS - PROBE_RESERVE)
}

/// A permit now for a mirror probe (the whole budget), or None.
pub fn try_outgoing_probe() -> Option<Permit> {
    take(MAX_OUTGOING_CONNECTIONS)
}

fn take(limit: usize) -> Option<Permit> {
    let taken = IN_USE.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
        (n < limit).then_some(n + 1)
    });
    match taken {
        Ok(_) => Some(Permit(())),
        Err(_) => {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// A probe's permit as soon as one is free, or None when `deadline` passes first.
pub async fn outgoing(deadline: Instant) -> Option<Permit> {
    loop {
        if let Some(p) = try_outgoing_probe() {
            return Some(p);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        let pause: Duration = OUTGOING_WAIT_POLL.min(deadline - now);
        async_io::Timer::after(pause).await;
    }
}

/// (open now, refusals so far).
pub fn usage() -> (usize, usize) {
    (
        IN_USE.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_budget() {
        // Other tests of this process may hold permits; take what is left, then one more.
        let mut held = Vec::new();
        while let Some(p) = try_outgoing() {
            held.push(p);
            assert!(held.len() <= MAX_OUTGOING_CONNECTIONS);
        }
        assert_eq!(usage().0, MAX_OUTGOING_CONNECTIONS - PROBE_RESERVE);
        // Lookups are out of room; probes still have theirs.
        while let Some(p) = try_outgoing_probe() {
            held.push(p);
        }
        assert_eq!(usage().0, MAX_OUTGOING_CONNECTIONS);
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(
            smol::block_on(outgoing(soon)).is_none(),
            "spent: waits, then gives up"
        );
        held.pop();
        assert!(try_outgoing().is_none(), "the reserve is the probes'");
        assert!(
            try_outgoing_probe().is_some(),
            "a permit given back is free again"
        );
    }
}
