//! When discovery sends what, and on which address families, so that a LAN of many hosts stays
//! quiet: a join costs O(hosts) datagrams and the steady state one hello per host per
//! interval. Pure: the time and the random jitter are arguments.
//!
//! - **Start:** a hello on every family at once (everyone learns of the newcomer), and a query
//!   after a random delay up to [`QUERY_DELAY_MAX`]. A query from another host heard during
//!   the delay makes ours unnecessary on that family: the answers to it are multicast and
//!   reach us too (mDNS's duplicate question suppression).
//! - **Answers:** a query is answered by a hello on the family it came on, after a random
//!   [`ANSWER_JITTER_MIN`]–[`ANSWER_JITTER_MAX`], at most once every [`QUERY_ANSWER_MIN_GAP`].
//!   Queries heard before the answer goes out are answered by it; a querier already answered
//!   (its query arrives once per family) is not answered again; a periodic hello on that
//!   family answers it as well. Each host's answer is its own hello, which no other host can
//!   give for it: what is suppressed is every answer beyond one per querier and family.
//! - **Periodic hellos:** on the families where some peer is heard only on that family
//!   (IPv4-only hosts, older pacserves); where every peer is heard on both, on one family,
//!   taking turns, so each family still carries a hello every other interval — well inside
//!   the expiry of [`MISSED_HELLOS_BEFORE_EXPIRY`] intervals, even when one family fails in
//!   one direction only. The other families also go along every other interval.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::{Families, Family};
use crate::limits::{
    ANSWER_JITTER_MAX, ANSWER_JITTER_MIN, ANSWERED_MEMORY, MAX_ANSWERED, MAX_HEARD_INSTANCES,
    MISSED_HELLOS_BEFORE_EXPIRY, QUERY_ANSWER_MIN_GAP, QUERY_DELAY_MAX,
};

/// What is due when the timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The periodic hello (and the time to forget silent peers), on these families.
    Periodic(Families),
    /// Our start-up query, on these families.
    Query(Families),
    /// The answer to queries, a hello on these families.
    Answer(Families),
    Nothing,
}

/// What became of a query heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answering {
    /// An answer is scheduled for it.
    Scheduled,
    /// An answer already scheduled answers it too.
    Merged,
    /// Its querier was answered already (its query on the other family, or a repeat).
    Duplicate,
}

/// What a hello is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Periodic,
    Answer,
}

#[derive(Debug, Clone, Copy, Default)]
struct HeardOn {
    v4: Option<Instant>,
    v6: Option<Instant>,
}

impl HeardOn {
    fn latest(&self) -> Option<Instant> {
        self.v4.max(self.v6)
    }
}

#[derive(Debug)]
pub struct Schedule {
    interval: Duration,
    /// The families the sockets speak.
    available: Families,
    next_hello: Instant,
    /// Periodic hellos sent so far: whose turn it is.
    periodic_sent: u64,
    query: Option<(Instant, Families)>,
    answer: Option<(Instant, Families)>,
    last_answer: Option<Instant>,
    /// Queriers (instance ids) answered or to be answered, oldest first.
    answered: VecDeque<(u64, Instant)>,
    /// When each peer (instance id) was last heard on each family.
    heard: HashMap<u64, HeardOn>,
}

impl Schedule {
    /// The first hello went out at `now` on every available family; our query is due after
    /// `query_delay` (random, up to [`QUERY_DELAY_MAX`]).
    pub fn started(
        interval: Duration,
        available: Families,
        now: Instant,
        query_delay: Duration,
    ) -> Schedule {
        Schedule {
            interval,
            available,
            next_hello: now + interval,
            periodic_sent: 0,
            query: (!available.is_empty()).then_some((now + query_delay, available)),
            answer: None,
            last_answer: None,
            answered: VecDeque::new(),
            heard: HashMap::new(),
        }
    }

    /// The next moment something is due.
    pub fn deadline(&self) -> Instant {
        [self.query.map(|q| q.0), self.answer.map(|a| a.0)]
            .into_iter()
            .flatten()
            .fold(self.next_hello, Instant::min)
    }

    /// What the timer firing at `now` asks for. Each is done, then reported with
    /// [`Schedule::sent_hello`] or [`Schedule::sent_query`].
    pub fn due(&mut self, now: Instant) -> Due {
        if now >= self.next_hello {
            return Due::Periodic(self.periodic_families(now));
        }
        if let Some((at, families)) = self.query
            && now >= at
        {
            return Due::Query(families);
        }
        if let Some((at, families)) = self.answer
            && now >= at
        {
            return Due::Answer(families);
        }
        Due::Nothing
    }

    /// A query from `querier` came in on `family` at `now`; `jitter` is a random time from
    /// [`ANSWER_JITTER_MIN`] to [`ANSWER_JITTER_MAX`]. Also true when it makes our own
    /// start-up query unnecessary on that family.
    pub fn on_query(
        &mut self,
        now: Instant,
        querier: u64,
        family: Family,
        jitter: Duration,
    ) -> (Answering, bool) {
        let mut ours_suppressed = false;
        if let Some((_, families)) = &mut self.query
            && families.contains(family)
        {
            *families = families.minus(Families::one(family));
            ours_suppressed = true;
            if families.is_empty() {
                self.query = None;
            }
        }
        while self
            .answered
            .front()
            .is_some_and(|(_, t)| now.saturating_duration_since(*t) > ANSWERED_MEMORY)
        {
            self.answered.pop_front();
        }
        if self.answered.iter().any(|(q, _)| *q == querier) {
            return (Answering::Duplicate, ours_suppressed);
        }
        if self.answered.len() >= MAX_ANSWERED {
            self.answered.pop_front();
        }
        self.answered.push_back((querier, now));
        let earliest = self.last_answer.map_or(now, |t| t + QUERY_ANSWER_MIN_GAP);
        let at = (now + jitter).max(earliest);
        let answering = match &mut self.answer {
            Some((_, families)) => {
                *families = families.union(Families::one(family));
                Answering::Merged
            }
            None => {
                self.answer = Some((at, Families::one(family)));
                Answering::Scheduled
            }
        };
        (answering, ours_suppressed)
    }

    /// A hello from peer `instance` (one the table took) came in on `family` at `now`.
    pub fn on_hello(&mut self, now: Instant, instance: u64, family: Family) {
        if !self.heard.contains_key(&instance) && self.heard.len() >= MAX_HEARD_INSTANCES {
            let window = self.window();
            self.heard.retain(|_, h| {
                h.latest()
                    .is_some_and(|t| now.saturating_duration_since(t) <= window)
            });
            if self.heard.len() >= MAX_HEARD_INSTANCES {
                let oldest = self
                    .heard
                    .iter()
                    .min_by_key(|(_, h)| h.latest())
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.heard.remove(&k);
                }
            }
        }
        let h = self.heard.entry(instance).or_default();
        match family {
            Family::V4 => h.v4 = Some(now),
            Family::V6 => h.v6 = Some(now),
        }
    }

    /// Peer `instance` said goodbye.
    pub fn on_bye(&mut self, instance: u64) {
        self.heard.remove(&instance);
    }

    /// A hello went out at `now` on `families`, as `what`: it answers every query heard
    /// before it on those families. The queries it made unnecessary.
    pub fn sent_hello(&mut self, now: Instant, families: Families, what: Sent) {
        if let Some((at, pending)) = self.answer {
            let left = pending.minus(families);
            self.answer = (!left.is_empty() && what == Sent::Periodic).then_some((at, left));
        }
        match what {
            Sent::Answer => self.last_answer = Some(now),
            Sent::Periodic => {
                self.periodic_sent += 1;
                self.next_hello = now + self.interval;
            }
        }
    }

    /// Our start-up query went out.
    pub fn sent_query(&mut self) {
        self.query = None;
    }

    /// Send our start-up query again at `at` on `families` (it could not be sent there).
    pub fn retry_query(&mut self, at: Instant, families: Families) {
        self.query = Some((at, families));
    }

    /// How long a family counts as heard from a peer: as long as the peer is remembered.
    fn window(&self) -> Duration {
        self.interval.saturating_mul(MISSED_HELLOS_BEFORE_EXPIRY)
    }

    /// The families the periodic hello due at `now` goes on (see the module docs).
    fn periodic_families(&self, now: Instant) -> Families {
        let window = self.window();
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) <= window);
        let mut only = Families::NONE;
        for h in self.heard.values() {
            match (recent(h.v4), recent(h.v6)) {
                (true, false) => only = only.union(Families::V4),
                (false, true) => only = only.union(Families::V6),
                _ => {}
            }
        }
        let only = only.intersect(self.available);
        let turn = self.periodic_sent;
        if only.is_empty() {
            let all: Vec<Family> = self.available.iter().collect();
            return match all.len() {
                0 => Families::NONE,
                n => Families::one(all[(turn % n as u64) as usize]),
            };
        }
        if turn % 2 == 1 { self.available } else { only }
    }
}

/// Random times for the jitter: xorshift64*, seeded once. Not for secrets.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn seeded(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// A time from `min` to `max`, uniformly in whole microseconds.
    pub fn between(&mut self, min: Duration, max: Duration) -> Duration {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let span = max.saturating_sub(min).as_micros() as u64;
        min + Duration::from_micros(r % (span + 1))
    }

    /// An answer's delay.
    pub fn answer(&mut self) -> Duration {
        self.between(ANSWER_JITTER_MIN, ANSWER_JITTER_MAX)
    }

    /// The start-up query's delay.
    pub fn query(&mut self) -> Duration {
        self.between(Duration::ZERO, QUERY_DELAY_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const INTERVAL: Duration = Duration::from_secs(60);

    /// A fake clock: milliseconds after a fixed start.
    struct Clock(Instant);
    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    #[test]
    fn start_query_waits_and_is_suppressed_by_another_hosts_query() {
        let c = Clock(Instant::now());
        let mut s = Schedule::started(INTERVAL, Families::BOTH, c.at(0), 50 * MS);
        assert_eq!(s.deadline(), c.at(50));
        assert_eq!(s.due(c.at(49)), Due::Nothing);
        // Another host's query on IPv4 within the delay: ours goes on IPv6 only.
        let (a, ours) = s.on_query(c.at(10), 7, Family::V4, 20 * MS);
        assert_eq!((a, ours), (Answering::Scheduled, true));
        assert_eq!(s.deadline(), c.at(30), "the answer comes first");
        assert_eq!(s.due(c.at(30)), Due::Answer(Families::V4));
        s.sent_hello(c.at(30), Families::V4, Sent::Answer);
        assert_eq!(s.due(c.at(50)), Due::Query(Families::V6));
        s.sent_query();
        assert_eq!(s.deadline(), c.at(60_000));
        // With queries heard on both families, none of ours goes out at all.
        let mut s = Schedule::started(INTERVAL, Families::BOTH, c.at(0), 90 * MS);
        s.on_query(c.at(1), 8, Family::V6, 20 * MS);
        s.on_query(c.at(2), 8, Family::V4, 20 * MS);
        s.sent_hello(c.at(21), Families::V6, Sent::Answer);
        assert_eq!(s.due(c.at(90)), Due::Nothing);
        assert_eq!(s.deadline(), c.at(60_000));
        // A query after ours went out suppresses nothing.
        let mut s = Schedule::started(INTERVAL, Families::V4, c.at(0), Duration::ZERO);
        assert_eq!(s.due(c.at(0)), Due::Query(Families::V4));
        s.sent_query();
        assert!(!s.on_query(c.at(5), 9, Family::V4, 20 * MS).1);
    }

    #[test]
    fn answers_are_jittered_merged_rate_limited_and_once_per_querier() {
        let c = Clock(Instant::now());
        let mut s = Schedule::started(INTERVAL, Families::BOTH, c.at(0), Duration::ZERO);
        s.sent_query();
        // (time, querier, family, jitter, verdict, answer due afterwards)
        type Row = (u64, u64, Family, u64, Answering, Option<(u64, Families)>);
        let rows: &[Row] = &[
            (
                100,
                1,
                Family::V4,
                80,
                Answering::Scheduled,
                Some((180, Families::V4)),
            ),
            // The same querier on its other family: one answer does.
            (
                101,
                1,
                Family::V6,
                20,
                Answering::Duplicate,
                Some((180, Families::V4)),
            ),
            // Another querier before the answer goes out: the same answer, now on both.
            (
                150,
                2,
                Family::V6,
                20,
                Answering::Merged,
                Some((180, Families::BOTH)),
            ),
            (
                170,
                3,
                Family::V4,
                20,
                Answering::Merged,
                Some((180, Families::BOTH)),
            ),
        ];
        for (t, q, f, j, verdict, due) in rows {
            let (got, _) = s.on_query(c.at(*t), *q, *f, Duration::from_millis(*j));
            assert_eq!(got, *verdict, "query of {q} at {t}");
            assert_eq!(s.answer, due.map(|(t, f)| (c.at(t), f)));
        }
        assert_eq!(s.due(c.at(180)), Due::Answer(Families::BOTH));
        s.sent_hello(c.at(180), Families::BOTH, Sent::Answer);
        assert_eq!(s.due(c.at(181)), Due::Nothing);
        // The next answer waits for the gap after this one, however small its jitter.
        s.on_query(c.at(300), 4, Family::V4, 20 * MS);
        assert_eq!(s.deadline(), c.at(180) + QUERY_ANSWER_MIN_GAP);
        // Querier 1 again (a restart would have a new id): a repeat within memory...
        let (v, _) = s.on_query(c.at(400), 1, Family::V4, 20 * MS);
        assert_eq!(v, Answering::Duplicate);
        s.sent_hello(c.at(1180), Families::V4, Sent::Answer);
        let (v, _) = s.on_query(c.at(3000), 1, Family::V4, 20 * MS);
        // ...and a new question after it.
        assert_eq!(
            v,
            Answering::Scheduled,
            "remembered only for {ANSWERED_MEMORY:?}"
        );
    }

    #[test]
    fn a_periodic_hello_answers_pending_queries_on_its_families() {
        let c = Clock(Instant::now());
        let mut s = Schedule::started(
            Duration::from_secs(1),
            Families::BOTH,
            c.at(0),
            Duration::ZERO,
        );
        s.sent_query();
        s.on_query(c.at(950), 1, Family::V4, 100 * MS);
        s.on_query(c.at(960), 2, Family::V6, 100 * MS);
        // No peer heard yet: the periodic hello takes IPv6 this time.
        assert_eq!(s.due(c.at(1000)), Due::Periodic(Families::V6));
        s.sent_hello(c.at(1000), Families::V6, Sent::Periodic);
        assert_eq!(
            s.due(c.at(1050)),
            Due::Answer(Families::V4),
            "IPv4 still owed"
        );
        s.sent_hello(c.at(1050), Families::V4, Sent::Answer);
        assert_eq!(s.due(c.at(1100)), Due::Nothing);
    }

    #[test]
    fn periodic_hellos_go_where_peers_need_them() {
        let c = Clock(Instant::now());
        let i = 1000; // the interval in ms
        let mut s = Schedule::started(
            Duration::from_millis(i),
            Families::BOTH,
            c.at(0),
            Duration::ZERO,
        );
        s.sent_query();
        let tick = |s: &mut Schedule, n: u64| {
            let at = c.at(n * i);
            let Due::Periodic(f) = s.due(at) else {
                panic!("no periodic hello due at {n}");
            };
            s.sent_hello(at, f, Sent::Periodic);
            f
        };
        // Alone: one family per interval, taking turns.
        assert_eq!(tick(&mut s, 1), Families::V6);
        assert_eq!(tick(&mut s, 2), Families::V4);
        // Peers heard on both families: still one a turn.
        for t in [2100, 2200] {
            s.on_hello(c.at(t), 10, Family::V4);
            s.on_hello(c.at(t), 10, Family::V6);
        }
        assert_eq!(tick(&mut s, 3), Families::V6);
        assert_eq!(tick(&mut s, 4), Families::V4);
        // An IPv4-only peer: IPv4 every time, IPv6 along every other time.
        s.on_hello(c.at(4500), 20, Family::V4);
        assert_eq!(tick(&mut s, 5), Families::V4);
        assert_eq!(tick(&mut s, 6), Families::BOTH);
        assert_eq!(tick(&mut s, 7), Families::V4);
        // It leaves: back to one a turn (peer 10, last heard at 2.2 s, is out of the window
        // of three intervals).
        s.on_bye(20);
        assert_eq!(tick(&mut s, 8), Families::V4);
        assert_eq!(tick(&mut s, 9), Families::V6);
        // A peer heard on IPv6 only counts while it is in the window.
        s.on_hello(c.at(9100), 30, Family::V6);
        assert_eq!(tick(&mut s, 10), Families::BOTH);
        assert_eq!(tick(&mut s, 11), Families::V6);
        assert_eq!(tick(&mut s, 12), Families::BOTH);
        assert_eq!(
            tick(&mut s, 13),
            Families::V6,
            "heard 3.9 s ago: one a turn again"
        );
        assert_eq!(tick(&mut s, 14), Families::V4);
        // One family only: always that one.
        let mut v4 = Schedule::started(
            Duration::from_millis(i),
            Families::V4,
            c.at(0),
            Duration::ZERO,
        );
        v4.on_hello(c.at(10), 5, Family::V4);
        assert_eq!(tick(&mut v4, 1), Families::V4);
        assert_eq!(tick(&mut v4, 2), Families::V4);
    }

    #[test]
    fn memories_are_bounded() {
        let c = Clock(Instant::now());
        let mut s = Schedule::started(INTERVAL, Families::BOTH, c.at(0), Duration::ZERO);
        for q in 0..(MAX_ANSWERED as u64 * 3) {
            s.on_query(c.at(1), q, Family::V4, 20 * MS);
        }
        assert_eq!(s.answered.len(), MAX_ANSWERED);
        assert_eq!(
            s.answer.map(|a| a.1),
            Some(Families::V4),
            "one merged answer"
        );
        for id in 0..(MAX_HEARD_INSTANCES as u64 * 3) {
            s.on_hello(c.at(id), id, Family::V6);
        }
        assert_eq!(s.heard.len(), MAX_HEARD_INSTANCES);
        assert!(s.heard.contains_key(&(MAX_HEARD_INSTANCES as u64 * 3 - 1)));
        assert!(!s.heard.contains_key(&0), "the oldest went first");
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let mut j = Jitter::seeded(42);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let a = j.answer();
            assert!(
                (ANSWER_JITTER_MIN..=ANSWER_JITTER_MAX).contains(&a),
                "{a:?}"
            );
            let q = j.query();
            assert!(q <= QUERY_DELAY_MAX, "{q:?}");
            seen.insert(a.as_millis());
        }
        assert!(seen.len() > 50, "{} distinct delays", seen.len());
        assert_eq!(j.between(MS, MS), MS);
    }

    #[test]
    fn a_query_that_could_not_be_sent_is_due_again() {
        let c = Clock(Instant::now());
        let mut s = Schedule::started(INTERVAL, Families::BOTH, c.at(0), 10 * MS);
        assert_eq!(s.due(c.at(10)), Due::Query(Families::BOTH));
        s.sent_query();
        // IPv6 had no usable source address yet: it alone is tried again.
        s.retry_query(c.at(1010), Families::V6);
        assert_eq!(s.deadline(), c.at(1010));
        assert_eq!(s.due(c.at(1009)), Due::Nothing);
        assert_eq!(s.due(c.at(1010)), Due::Query(Families::V6));
        s.sent_query();
        assert_eq!(s.deadline(), c.at(60_000));
    }
}
