//! The discovery loop: announce ourselves, answer queries (rate-limited), and apply what
//! others announce to the [`PeerTable`]; a goodbye on stop.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_io::Timer;
use rustix::io::Errno;
use smol::channel::Receiver;
use smol::future::FutureExt;

use super::socket::Discovery;
use super::wire::{Announce, Kind, decode, decode_datagram, encode, encode_signed};
use super::{MulticastConfig, clamp_interval};
use crate::auth::{Lan, unix_now};
use crate::limits::{ANNOUNCE_RECV_BUFFER, DISCOVERY_RECV_ERROR_PAUSE, QUERY_ANSWER_MIN_GAP};
use crate::peers::table::{PeerAddr, PeerTable, Seen};
use crate::sys::host::{self, Subnet};
use crate::sys::log::escape;

/// Counters of the discovery loop, for the status page and tests.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    /// Datagrams received, including malformed and own ones.
    pub received: AtomicU64,
    /// Datagrams dropped because they did not decode.
    pub malformed: AtomicU64,
    /// Our own datagrams, looped back.
    pub own: AtomicU64,
    /// Announcements sent (to every configured interface).
    pub sent: AtomicU64,
    /// Announcements that could not be sent.
    pub send_errors: AtomicU64,
}

/// A copy of [`DiscoveryStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub received: u64,
    pub malformed: u64,
    pub own: u64,
    pub sent: u64,
    pub send_errors: u64,
}

impl DiscoveryStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            received: get(&self.received),
            malformed: get(&self.malformed),
            own: get(&self.own),
            sent: get(&self.sent),
            send_errors: get(&self.send_errors),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What a decoded announcement from someone else did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Hello(PeerAddr, Seen),
    Query,
    Bye(PeerAddr, bool),
}

/// Apply `a`, received from `src`, to the table. Pure but for the table. `subnets`: those this
/// host is on; a hello from elsewhere (but loopback) is refused unless a filter names it, or
/// it is `authenticated` (its seal verified under the shared secret).
fn apply(
    a: &Announce,
    src: SocketAddr,
    subnets: &[Subnet],
    authenticated: bool,
    table: &mut PeerTable,
    now: Instant,
) -> Heard {
    let addr = PeerAddr {
        host: src.ip().to_string(),
        port: a.http_port,
    };
    let on_subnet = authenticated
        || match src.ip().to_canonical() {
            IpAddr::V4(ip) => ip.is_loopback() || subnets.iter().any(|s| s.contains(ip)),
            IpAddr::V6(ip) => ip.is_loopback(),
        };
    match a.kind {
        Kind::Hello => {
            let seen = table.seen(addr.clone(), a.instance, &a.archs, on_subnet, now);
            Heard::Hello(addr, seen)
        }
        Kind::Query => Heard::Query,
        Kind::Bye => {
            let forgot = table.gone(&addr, a.instance);
            Heard::Bye(addr, forgot)
        }
    }
}

/// Sends announcements (signed, with a shared secret: each with a fresh timestamp and nonce),
/// counts them, and logs a failure once until sending works again.
struct Sender<'a> {
    disc: &'a Discovery,
    stats: &'a DiscoveryStats,
    me: &'a Announce,
    lan: Option<&'a Lan>,
    failing: bool,
}

impl Sender<'_> {
    async fn send(&mut self, kind: Kind) {
        let what = kind.as_str();
        let a = Announce {
            kind,
            ..self.me.clone()
        };
        let sent = match self.lan {
            None => self.disc.send_bytes(&encode(&a)).await,
            Some(lan) => {
                let keys = lan.keys();
                let datagram = |src: Option<std::net::Ipv4Addr>| {
                    let src = src.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
                    encode_signed(&a, unix_now(), lan.next_nonce(), src, keys.signing())
                };
                self.disc.send_each(true, datagram).await
            }
        };
        match sent {
            Ok(()) => {
                bump(&self.stats.sent);
                if self.failing {
                    self.failing = false;
                    crate::info!("discovery: sending to {} works again", self.disc.group);
                }
            }
            Err(e) => {
                bump(&self.stats.send_errors);
                let hint = if e.raw_os_error() == Some(Errno::NETUNREACH.raw_os_error()) {
                    " — is there a route for 224.0.0.0/4 (or a default route)?"
                } else {
                    ""
                };
                if self.failing {
                    crate::verbose!("discovery: sending {what} to {}: {e}", self.disc.group);
                } else {
                    self.failing = true;
                    crate::error!(
                        "discovery: sending {what} to {}: {e}{hint}",
                        self.disc.group
                    );
                }
            }
        }
    }
}

enum Event {
    Stop,
    Timer,
    Datagram(io::Result<(usize, SocketAddr)>),
}

/// When to say hello, as a function of time (pure): every `interval`, and in answer to a
/// query, but never two answers closer than [`QUERY_ANSWER_MIN_GAP`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Schedule {
    interval: Duration,
    last_hello: Instant,
    next_hello: Instant,
    /// A query heard while answers were paused: answer then.
    answer_due: Option<Instant>,
}

/// What a timer firing at some moment asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// The periodic hello (and the time to forget silent peers).
    Periodic,
    /// The delayed answer to a query.
    Answer,
    Nothing,
}

impl Schedule {
    /// Just after the first hello, sent at `now`.
    fn started(interval: Duration, now: Instant) -> Schedule {
        Schedule {
            interval,
            last_hello: now,
            next_hello: now + interval,
            answer_due: None,
        }
    }

    /// The next moment something is due.
    fn deadline(&self) -> Instant {
        self.answer_due
            .map_or(self.next_hello, |t| t.min(self.next_hello))
    }

    /// The timer fired at `now`.
    fn due(&self, now: Instant) -> Due {
        if now >= self.next_hello {
            Due::Periodic
        } else if self.answer_due.is_some_and(|t| now >= t) {
            Due::Answer
        } else {
            Due::Nothing
        }
    }

    /// A query was heard at `now`: true to answer at once, else the answer is scheduled.
    fn on_query(&mut self, now: Instant) -> bool {
        let earliest = self.last_hello + QUERY_ANSWER_MIN_GAP;
        if now >= earliest {
            return true;
        }
        self.answer_due.get_or_insert(earliest);
        false
    }

    /// A hello went out at `now` (it answers every query heard before it).
    fn sent_hello(&mut self, now: Instant, periodic: bool) {
        self.last_hello = now;
        self.answer_due = None;
        if periodic {
            self.next_hello = now + self.interval;
        }
    }
}

/// The "peer discovered" lines.
static DISCOVERED_LINES: crate::sys::log::Throttle = crate::sys::log::Throttle::new();

/// The running loop's state.
struct Discoverer<'a> {
    disc: &'a Discovery,
    me: &'a Announce,
    table: &'a Mutex<PeerTable>,
    stats: &'a DiscoveryStats,
    sender: Sender<'a>,
    lan: Option<&'a Lan>,
    max_silence: Duration,
    schedule: Schedule,
    /// The subnets this host is on, read again with every periodic hello.
    subnets: Vec<Subnet>,
}

impl Discoverer<'_> {
    async fn hello(&mut self, now: Instant, periodic: bool) {
        self.sender.send(Kind::Hello).await;
        self.schedule.sent_hello(now, periodic);
    }

    async fn on_timer(&mut self, now: Instant) {
        match self.schedule.due(now) {
            Due::Periodic => {
                self.hello(now, true).await;
                self.subnets = host::connected_subnets();
                for addr in crate::lock(self.table).expire(now, self.max_silence) {
                    crate::info!(
                        "peer {addr} forgotten: no hello for {} s",
                        self.max_silence.as_secs()
                    );
                }
            }
            Due::Answer => self.hello(now, false).await,
            Due::Nothing => {}
        }
    }

    async fn on_datagram(&mut self, bytes: &[u8], src: SocketAddr, now: Instant) {
        bump(&self.stats.received);
        let d = match decode_datagram(bytes) {
            Ok(d) => d,
            Err(e) => {
                bump(&self.stats.malformed);
                crate::verbose!(
                    "discovery: dropped datagram from {src}: {e}: {}",
                    escape(bytes)
                );
                return;
            }
        };
        // With a secret, nothing unsealed, replayed or stale goes further, not even a query.
        if let Some(lan) = self.lan {
            let verdict = d.verify(bytes, &lan.keys(), src.ip());
            let seal = d.seal.map(|s| (s.ts, s.nonce));
            if let Err(why) = lan.admit_datagram(seal, verdict, src.ip(), unix_now()) {
                crate::verbose!(
                    "discovery: dropped datagram from {src}: {}: {}",
                    why.as_str(),
                    escape(bytes)
                );
                return;
            }
        }
        let a = d.announce;
        if a.instance == self.me.instance {
            bump(&self.stats.own);
            return;
        }
        let sealed = self.lan.is_some();
        let heard = apply(
            &a,
            src,
            &self.subnets,
            sealed,
            &mut crate::lock(self.table),
            now,
        );
        match heard {
            // A flood of forged hellos must not become a flood of lines.
            Heard::Hello(addr, Seen::New) => {
                if let Some(left_out) = DISCOVERED_LINES.admit(now) {
                    if left_out > 0 {
                        crate::info!(
                            "... and {left_out} more peers discovered in the last {} s",
                            crate::limits::LOG_WINDOW.as_secs()
                        );
                    }
                    crate::info!("peer {addr} discovered");
                }
            }
            Heard::Hello(_, Seen::Refreshed) => {}
            Heard::Hello(addr, Seen::Filtered) => {
                crate::verbose!("peer {addr} ignored: excluded by --multicast-filter")
            }
            Heard::Hello(addr, Seen::OffSubnet) => {
                crate::verbose!("peer {addr} ignored: not on a subnet of this host")
            }
            Heard::Hello(addr, Seen::TableFull) => {
                crate::verbose!("peer {addr} ignored: peer table full")
            }
            Heard::Bye(addr, true) => crate::info!("peer {addr} said goodbye"),
            Heard::Bye(addr, false) => {
                crate::verbose!("discovery: goodbye from unknown peer {addr}")
            }
            Heard::Query => {
                if self.schedule.on_query(now) {
                    self.hello(now, false).await;
                }
            }
        }
    }
}

/// Announce `me` (its kind is ignored) and keep `table` up to date with what others
/// announce, until `stop` is closed (or sent to); then say goodbye and return.
///
/// Every wait is bounded by the next hello, which is due every `cfg.interval` (clamped to
/// the valid range); discovered peers silent for `MISSED_HELLOS_BEFORE_EXPIRY` intervals are
/// forgotten then.
pub async fn run(
    disc: Discovery,
    cfg: MulticastConfig,
    me: Announce,
    table: Arc<Mutex<PeerTable>>,
    stats: Arc<DiscoveryStats>,
    lan: Option<Arc<Lan>>,
    stop: Receiver<()>,
) {
    let hello = encode(&Announce {
        kind: Kind::Hello,
        ..me.clone()
    });
    if let Err(e) = decode(&hello) {
        crate::error!(
            "discovery disabled: peers would reject our announcement ({e}): {}",
            escape(&hello)
        );
        return;
    }
    let lan = lan.as_deref();
    let mut sender = Sender {
        disc: &disc,
        stats: &stats,
        me: &me,
        lan,
        failing: false,
    };
    sender.send(Kind::Query).await;
    sender.send(Kind::Hello).await;
    let mut d = Discoverer {
        disc: &disc,
        me: &me,
        table: &table,
        stats: &stats,
        sender,
        lan,
        max_silence: cfg.max_silence(),
        schedule: Schedule::started(clamp_interval(cfg.interval), Instant::now()),
        subnets: host::connected_subnets(),
    };
    let mut buf = [0u8; ANNOUNCE_RECV_BUFFER];
    let mut timer = Timer::never();
    let mut armed: Option<Instant> = None;
    loop {
        let deadline = d.schedule.deadline();
        if armed != Some(deadline) {
            timer.set_at(deadline);
            armed = Some(deadline);
        }
        // Stop first, then the timer: a flood of datagrams can delay neither.
        let event = async {
            let _ = stop.recv().await;
            Event::Stop
        }
        .or(async {
            (&mut timer).await;
            Event::Timer
        })
        .or(async { Event::Datagram(d.disc.socket.recv_from(&mut buf).await) })
        .await;
        let now = Instant::now();
        match event {
            Event::Stop => {
                d.sender.send(Kind::Bye).await;
                return;
            }
            Event::Timer => {
                // A fired timer stays fired until set again.
                armed = None;
                d.on_timer(now).await;
            }
            Event::Datagram(Err(e)) => {
                crate::error!("discovery: receiving on {}: {e}", d.disc.group);
                Timer::after(DISCOVERY_RECV_ERROR_PAUSE).await;
            }
            Event::Datagram(Ok((n, src))) => {
                d.on_datagram(&buf[..n.min(buf.len())], src, now).await;
                // recv_from returns at once while datagrams are queued: let other tasks run.
                smol::future::yield_now().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::discovery::socket::tests::{
        free_udp_port, loopback_config, open_on_loopback, recv_within,
    };
    use crate::peers::discovery::wire::tests::hello;
    use crate::peers::discovery::{DEFAULT_PORT, open};
    use crate::peers::table::Filters;
    use std::time::Duration;

    #[test]
    fn schedule_answers_queries_at_most_once_a_gap() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(60);
        let mut s = Schedule::started(interval, t0);
        assert_eq!(s.deadline(), t0 + interval);
        assert_eq!(s.due(t0), Due::Nothing);
        // A query right after the first hello waits for the gap; a second one changes nothing.
        let q = t0 + Duration::from_millis(100);
        assert!(!s.on_query(q));
        assert!(!s.on_query(q + Duration::from_millis(1)));
        assert_eq!(s.deadline(), t0 + QUERY_ANSWER_MIN_GAP);
        assert_eq!(s.due(t0 + QUERY_ANSWER_MIN_GAP), Due::Answer);
        s.sent_hello(t0 + QUERY_ANSWER_MIN_GAP, false);
        assert_eq!(
            s.deadline(),
            t0 + interval,
            "the answer does not move the period"
        );
        // Long after the last hello, a query is answered at once.
        let late = t0 + Duration::from_secs(10);
        assert!(s.on_query(late));
        assert_eq!(s.due(t0 + interval), Due::Periodic);
        s.sent_hello(t0 + interval, true);
        assert_eq!(s.deadline(), t0 + interval * 2);
    }

    #[test]
    fn applies_announcements_to_the_table() {
        let t0 = Instant::now();
        let mut f = Filters::default();
        f.add(r"x:^10\.0\.0\.9:").unwrap();
        let mut table = PeerTable::new(f);
        let src = |ip: &str| SocketAddr::new(ip.parse().unwrap(), DEFAULT_PORT);
        let peer = |ip: &str, port| PeerAddr {
            host: ip.to_string(),
            port,
        };
        let lan = [Subnet {
            network: std::net::Ipv4Addr::new(10, 0, 0, 0),
            mask: std::net::Ipv4Addr::new(255, 255, 255, 0),
        }];
        let mut a = hello(7, 15678, &["any"]);
        // A forged source off this host's subnets is not taken.
        assert_eq!(
            apply(&a, src("198.51.100.7"), &lan, false, &mut table, t0),
            Heard::Hello(peer("198.51.100.7", 15678), Seen::OffSubnet)
        );
        // Unless its seal verified: then the address is as good as its key.
        let mut sealed = PeerTable::default();
        assert_eq!(
            apply(&a, src("198.51.100.7"), &lan, true, &mut sealed, t0),
            Heard::Hello(peer("198.51.100.7", 15678), Seen::New)
        );
        let heard = apply(&a, src("10.0.0.2"), &lan, false, &mut table, t0);
        assert_eq!(heard, Heard::Hello(peer("10.0.0.2", 15678), Seen::New));
        let heard = apply(&a, src("10.0.0.2"), &lan, false, &mut table, t0);
        assert_eq!(
            heard,
            Heard::Hello(peer("10.0.0.2", 15678), Seen::Refreshed)
        );
        let heard = apply(&a, src("10.0.0.9"), &lan, false, &mut table, t0);
        assert_eq!(heard, Heard::Hello(peer("10.0.0.9", 15678), Seen::Filtered));
        a.kind = Kind::Query;
        assert_eq!(
            apply(&a, src("10.0.0.3"), &lan, false, &mut table, t0),
            Heard::Query
        );
        assert_eq!(table.len(), 1, "a query does not add a peer");
        // A goodbye names host (the source) + port + instance; a forged one with another
        // instance or from another host does nothing.
        a.kind = Kind::Bye;
        a.instance = 8;
        assert_eq!(
            apply(&a, src("10.0.0.2"), &lan, false, &mut table, t0),
            Heard::Bye(peer("10.0.0.2", 15678), false)
        );
        a.instance = 7;
        assert_eq!(
            apply(&a, src("10.0.0.5"), &lan, false, &mut table, t0),
            Heard::Bye(peer("10.0.0.5", 15678), false)
        );
        assert_eq!(
            apply(&a, src("10.0.0.2"), &lan, false, &mut table, t0),
            Heard::Bye(peer("10.0.0.2", 15678), true)
        );
        assert!(table.is_empty());
    }

    // --- Real sockets on loopback --------------------------------------------------------
    struct Running {
        instance: u64,
        table: Arc<Mutex<PeerTable>>,
        stats: Arc<DiscoveryStats>,
        stop: smol::channel::Sender<()>,
        task: smol::Task<()>,
    }

    fn start(cfg: &MulticastConfig, instance: u64, http_port: u16) -> Running {
        start_with(cfg, instance, http_port, None)
    }

    fn start_with(
        cfg: &MulticastConfig,
        instance: u64,
        http_port: u16,
        lan: Option<Arc<Lan>>,
    ) -> Running {
        let disc = open_on_loopback(cfg);
        let table = Arc::new(Mutex::new(PeerTable::default()));
        let stats = Arc::new(DiscoveryStats::default());
        let (stop, stop_rx) = smol::channel::bounded(1);
        let me = hello(instance, http_port, &["x86_64", "any"]);
        let task = smol::spawn(run(
            disc,
            cfg.clone(),
            me,
            table.clone(),
            stats.clone(),
            lan,
            stop_rx,
        ));
        Running {
            instance,
            table,
            stats,
            stop,
            task,
        }
    }

    /// Poll `cond` until it holds or `limit` passes.
    async fn eventually(limit: Duration, cond: impl Fn() -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if cond() {
                return true;
            }
            Timer::after(Duration::from_millis(20)).await;
        }
        cond()
    }

    fn knows(r: &Running, port: u16) -> bool {
        let peer = PeerAddr {
            host: "127.0.0.1".into(),
            port,
        };
        crate::lock(&r.table).get(&peer).is_some()
    }

    #[test]
    fn run_discovers_peers_and_says_goodbye() {
        let cfg = loopback_config(free_udp_port());
        let a = start(&cfg, 0xa, 8001);
        smol::block_on(async {
            let limit = Duration::from_secs(3);
            // b starts after a's query and hello: it learns of a only from the answer to its
            // query, which comes after QUERY_ANSWER_MIN_GAP.
            assert!(eventually(limit, || a.stats.snapshot().sent == 2).await);
            let b = start(&cfg, 0xb, 8002);
            assert!(eventually(limit, || knows(&a, 8002) && knows(&b, 8001)).await);
            assert!(!knows(&a, 8001), "a does not list itself");
            assert!(a.stats.snapshot().own >= 2, "{:?}", a.stats.snapshot());

            // Garbage from a third socket is counted and dropped.
            let c = open(&cfg).expect("a third socket");
            c.send_bytes(b"pacserve 9 hello\n").await.unwrap();
            c.send_bytes(&[0xff; 700]).await.unwrap();
            assert!(eventually(limit, || b.stats.snapshot().malformed >= 2).await);
            assert_eq!(crate::lock(&b.table).len(), 1);

            drop(a.stop);
            a.task.await;
            assert!(
                eventually(limit, || !knows(&b, 8001)).await,
                "b forgets a on bye"
            );
            let sa = a.stats.snapshot();
            assert_eq!(
                (sa.sent, sa.send_errors),
                (4, 0),
                "query, hello, answer, bye: {sa:?}"
            );
            drop(b.stop);
            b.task.await;
        });
    }

    fn lan_of(b: u8) -> Arc<Lan> {
        let key = crate::auth::key::parse_key(&[b; 32]).unwrap();
        let keys = crate::auth::key::Keys::new(vec![key]).unwrap();
        Arc::new(Lan::new(Vec::new(), keys))
    }

    fn refused(lan: &Lan, why: &str) -> u64 {
        let all = lan.counters().datagrams();
        all.iter().find(|(w, _)| *w == why).map_or(0, |(_, n)| *n)
    }

    #[test]
    fn with_a_secret_only_sealed_datagrams_from_key_holders_count() {
        let cfg = loopback_config(free_udp_port());
        let (key_a, key_c) = (lan_of(1), lan_of(2));
        let a = start_with(&cfg, 0xa, 8001, Some(key_a.clone()));
        let b = start_with(&cfg, 0xb, 8002, Some(lan_of(1)));
        let c = start_with(&cfg, 0xc, 8003, Some(key_c.clone()));
        let plain = open(&cfg).expect("a socket without a key");
        smol::block_on(async {
            let limit = Duration::from_secs(3);
            assert!(eventually(limit, || knows(&a, 8002) && knows(&b, 8001)).await);
            // C's datagrams are heard and dropped: its key is another.
            assert!(eventually(limit, || refused(&key_a, "bad_mac") >= 2).await);
            assert!(!knows(&a, 8003) && !knows(&c, 8001));
            // Unsigned: dropped whatever it says, a query too.
            plain.send(&hello(0xd, 8004, &["any"])).await.unwrap();
            let q = Announce {
                kind: Kind::Query,
                ..hello(0xe, 8005, &[])
            };
            plain.send(&q).await.unwrap();
            assert!(eventually(limit, || refused(&key_a, "unsigned") >= 2).await);
            assert!(!knows(&a, 8004));
            // A sealed hello taken once, and the same bytes again: a replay.
            let sealed = encode_signed(
                &hello(0xf, 8006, &["any"]),
                unix_now(),
                7,
                std::net::Ipv4Addr::LOCALHOST,
                key_a.keys().signing(),
            );
            plain.send_bytes(&sealed).await.unwrap();
            assert!(eventually(limit, || knows(&a, 8006)).await);
            plain.send_bytes(&sealed).await.unwrap();
            assert!(eventually(limit, || refused(&key_a, "replay") >= 1).await);
            // Signed for another sender address: refused as such.
            let elsewhere = encode_signed(
                &hello(0x10, 8007, &["any"]),
                unix_now(),
                8,
                std::net::Ipv4Addr::new(10, 9, 9, 9),
                key_a.keys().signing(),
            );
            plain.send_bytes(&elsewhere).await.unwrap();
            assert!(eventually(limit, || refused(&key_a, "address") >= 1).await);
            // Two minutes and a second old: outside the window.
            let stale = encode_signed(
                &hello(0x11, 8008, &["any"]),
                unix_now() - crate::limits::AUTH_WINDOW.as_secs() - 1,
                9,
                std::net::Ipv4Addr::LOCALHOST,
                key_a.keys().signing(),
            );
            plain.send_bytes(&stale).await.unwrap();
            assert!(eventually(limit, || refused(&key_a, "window") >= 1).await);
            assert!(!knows(&a, 8007) && !knows(&a, 8008));
            assert!(key_a.counters().taken().0 >= 2, "a took b's datagrams");
            for r in [a, b, c] {
                drop(r.stop);
                r.task.await;
            }
        });
    }

    #[test]
    fn query_flood_gets_at_most_one_answer_a_second() {
        let cfg = loopback_config(free_udp_port());
        let a = start(&cfg, 0xa, 8001);
        let flooder = open(&cfg).expect("a second socket");
        smol::block_on(async {
            // Let a's start-up datagrams pass, then flood it with queries.
            assert!(eventually(Duration::from_secs(3), || a.stats.snapshot().sent == 2).await);
            let started = Instant::now();
            for i in 0..50u64 {
                let q = Announce {
                    kind: Kind::Query,
                    ..hello(0x1000 + i, 9, &[])
                };
                flooder.send(&q).await.unwrap();
            }
            // Count a's hellos heard by the flooder for a while.
            let mut hellos = 0;
            let until = started + Duration::from_millis(2500);
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                let Some((bytes, _)) = recv_within(&flooder, left).await else {
                    break;
                };
                if let Ok(got) = decode(&bytes)
                    && got.instance == a.instance
                    && got.kind == Kind::Hello
                {
                    hellos += 1;
                }
            }
            let elapsed = started.elapsed().as_secs() + 1;
            assert!(hellos >= 1, "the flood is answered");
            assert!(
                hellos as u64 <= elapsed + 1,
                "{hellos} hellos in {elapsed} s for 50 queries"
            );
            assert!(a.stats.snapshot().received >= 50);
            drop(a.stop);
            a.task.await;
        });
    }
}
