//! Who holds the server's connection slots (no I/O): how many in all, how many per source
//! address, and which connections are idle, waiting for a next request, so that one can be
//! asked to close to make room. One host opening a thousand idle connections then neither
//! locks everyone else out (its own limit is well below the cap) nor keeps a busy client
//! waiting while idle ones hold the slots.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use smol::channel::{Receiver, Sender};

use crate::limits::{MAX_CONNECTIONS_PER_SOURCE, MAX_CONNECTIONS_PER_TRUSTED};

/// How many connections one source may hold; loopback and the configured peers more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// All connections at once.
    pub total: usize,
    /// Each source address.
    pub per_source: usize,
    /// Each trusted address (static peers), and loopback.
    pub per_trusted: usize,
    pub trusted: Vec<IpAddr>,
}

impl Limits {
    pub fn new(total: usize) -> Limits {
        Limits {
            total,
            per_source: MAX_CONNECTIONS_PER_SOURCE.min(total),
            per_trusted: MAX_CONNECTIONS_PER_TRUSTED.min(total),
            trusted: Vec::new(),
        }
    }

    fn for_source(&self, ip: IpAddr) -> usize {
        if ip.to_canonical().is_loopback() {
            // Only the total bounds this host's own pacman.
            usize::MAX
        } else if self.trusted.contains(&ip.to_canonical()) {
            self.per_trusted
        } else {
            self.per_source
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every slot is taken by a busy connection.
    Full,
    /// This source holds as many as it may.
    SourceFull,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    /// Idle connections asked to close that have not closed yet: their slots are as good as
    /// free. In all, and by source.
    closing: usize,
    closing_by: HashMap<IpAddr, usize>,
    by_source: HashMap<IpAddr, usize>,
    /// Idle connections, oldest first (by the order they became idle), each with the means to
    /// ask it to close.
    idle: BTreeMap<u64, (IpAddr, Sender<()>)>,
    next_idle: u64,
}

impl State {
    /// Ask the idle connection `key` to close; its slot counts as free from now on.
    fn evict(&mut self, key: u64) {
        if let Some((ip, close)) = self.idle.remove(&key) {
            close.close();
            self.closing += 1;
            *self.closing_by.entry(ip).or_default() += 1;
        }
    }
}

/// The slots of one server.
#[derive(Debug)]
pub struct Slots {
    limits: Limits,
    state: Mutex<State>,
}

/// One taken slot; given back on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    source: IpAddr,
    /// Asked to close while idle: its slot was already counted as free.
    evicted: bool,
}

/// A connection registered as idle; unregistered on drop. `closing` ends when the server
/// needs its slot.
pub struct Idle<'a> {
    slot: &'a mut Slot,
    key: u64,
    pub closing: Receiver<()>,
}

impl Slots {
    pub fn new(limits: Limits) -> Arc<Slots> {
        Arc::new(Slots {
            limits,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// A slot for a new connection from `source`. At a limit, the connection idle the
    /// longest (of that source, for the source's own limit) is asked to close to make room;
    /// only with none idle is the newcomer refused.
    pub fn take(self: &Arc<Self>, source: IpAddr) -> Result<Slot, Refused> {
        let source = source.to_canonical();
        let mut s = self.state();
        let held = s.by_source.get(&source).copied().unwrap_or(0);
        let closing_here = s.closing_by.get(&source).copied().unwrap_or(0);
        if held - closing_here >= self.limits.for_source(source) {
            let own = s
                .idle
                .iter()
                .find(|(_, (ip, _))| *ip == source)
                .map(|(k, _)| *k);
            let Some(key) = own else {
                return Err(Refused::SourceFull);
            };
            s.evict(key);
        } else if s.total - s.closing >= self.limits.total {
            let Some(key) = s.idle.keys().next().copied() else {
                return Err(Refused::Full);
            };
            s.evict(key);
        }
        s.total += 1;
        *s.by_source.entry(source).or_default() += 1;
        Ok(Slot {
            slots: self.clone(),
            source,
            evicted: false,
        })
    }

    /// Connections open now (including those asked to close).
    pub fn open(&self) -> usize {
        self.state().total
    }
}

impl Slot {
    /// Register as idle until the returned value is dropped.
    pub fn idle(&mut self) -> Idle<'_> {
        let (tx, rx) = smol::channel::bounded(1);
        let key = {
            let mut s = self.slots.state();
            let key = s.next_idle;
            s.next_idle += 1;
            s.idle.insert(key, (self.source, tx));
            key
        };
        Idle {
            slot: self,
            key,
            closing: rx,
        }
    }
}

impl Drop for Idle<'_> {
    fn drop(&mut self) {
        let mut s = self.slot.slots.state();
        if s.idle.remove(&self.key).is_none() {
            // Not there any more: the server took it out to ask this connection to close.
            self.slot.evicted = true;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.state();
        s.total -= 1;
        if self.evicted {
            s.closing -= 1;
            if let Some(n) = s.closing_by.get_mut(&self.source) {
                *n -= 1;
                if *n == 0 {
                    s.closing_by.remove(&self.source);
                }
            }
        }
        if let Some(n) = s.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                s.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_source_cannot_take_every_slot() {
        let mut limits = Limits::new(10);
        limits.per_source = 3;
        limits.per_trusted = 6;
        limits.trusted = vec![ip("10.0.0.9")];
        let slots = Slots::new(limits);
        let a: Vec<Slot> = (0..3)
            .map(|_| slots.take(ip("10.0.0.2")).unwrap())
            .collect();
        assert_eq!(slots.take(ip("10.0.0.2")).unwrap_err(), Refused::SourceFull);
        // Others still get in; a trusted peer and loopback get more.
        let b = slots.take(ip("10.0.0.3")).unwrap();
        let t: Vec<Slot> = (0..4)
            .map(|_| slots.take(ip("10.0.0.9")).unwrap())
            .collect();
        assert_eq!(slots.open(), 8);
        // A source at its limit with an idle connection: that one makes room.
        let mut a = a;
        let idle = a[0].idle();
        let fourth = slots
            .take(ip("10.0.0.2"))
            .expect("its own idle one makes room");
        assert!(idle.closing.is_closed());
        drop((idle, fourth));
        drop(a);
        assert!(slots.take(ip("10.0.0.2")).is_ok(), "given back on drop");
        let l: Vec<Slot> = (0..2).map(|_| slots.take(ip("::1")).unwrap()).collect();
        assert_eq!(slots.open(), 7);
        drop((b, t, l));
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let slots = Slots::new(Limits::new(2));
        let mut first = slots.take(ip("10.0.0.2")).unwrap();
        let mut second = slots.take(ip("10.0.0.3")).unwrap();
        let idle_first = first.idle();
        let idle_second = second.idle();
        // Full, but two are idle: the one idle the longest is asked to close.
        let third = slots.take(ip("10.0.0.4")).unwrap();
        assert!(
            idle_first.closing.is_closed(),
            "the oldest idle one is told"
        );
        assert!(!idle_second.closing.is_closed());
        drop(idle_first);
        drop(first);
        assert_eq!(slots.open(), 2);
        // Busy (not idle) connections are never asked: with none idle, the next is refused.
        drop(idle_second);
        assert_eq!(slots.take(ip("10.0.0.5")).unwrap_err(), Refused::Full);
        drop((second, third));
        assert_eq!(slots.open(), 0);
    }
}
