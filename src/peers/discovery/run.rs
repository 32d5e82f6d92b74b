//! The discovery loop: announce ourselves, answer queries (when and where
//! [`super::suppress`] says), and apply what others announce to the [`PeerTable`]; a goodbye
//! on stop.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_io::Timer;
use rustix::io::Errno;
use smol::channel::Receiver;
use smol::future::FutureExt;

use super::address::peer_address;
use super::socket::Discovery;
use super::suppress::{Answering, Due, Jitter, Schedule, Sent};
use super::wire::{Announce, Kind, decode, decode_datagram, encode, encode_signed};
use super::{Families, Family, MulticastConfig, clamp_interval};
use crate::auth::{Lan, unix_now};
use crate::limits::{
    ANNOUNCE_RECV_BUFFER, DISCOVERY_RECV_ERROR_PAUSE, STARTUP_QUERY_RETRIES,
    STARTUP_QUERY_RETRY_PAUSE,
};
use crate::peers::table::{PeerAddr, PeerTable, Seen};
use crate::sys::host::{self, Subnet};
use crate::sys::ifaces::{self, Inet6};
use crate::sys::log::escape;

/// Counters of the discovery loop, for the status page, benchmarks and tests. Datagrams are
/// counted one per family and interface they go out on.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    /// Datagrams received, including malformed and own ones.
    pub received: AtomicU64,
    /// Datagrams dropped because they did not decode.
    pub malformed: AtomicU64,
    /// Our own datagrams, looped back.
    pub own: AtomicU64,
    /// Datagrams sent, of every kind.
    pub sent: AtomicU64,
    /// Announcements that could not be sent (on some family or interface).
    pub send_errors: AtomicU64,
    /// Others' datagrams received, by kind.
    pub received_hello: AtomicU64,
    pub received_query: AtomicU64,
    pub received_bye: AtomicU64,
    /// Datagrams sent, by kind (hellos include answers).
    pub sent_hello: AtomicU64,
    pub sent_query: AtomicU64,
    pub sent_bye: AtomicU64,
    /// Hello datagrams sent in answer to queries (also counted in `sent_hello`).
    pub sent_answer: AtomicU64,
    /// Our start-up queries left out, per family: another host's query was heard first.
    pub suppressed_query: AtomicU64,
    /// Queries that got no answer of their own: answered by one already due, or their
    /// querier was answered already.
    pub suppressed_answer: AtomicU64,
}

/// A copy of [`DiscoveryStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub received: u64,
    pub malformed: u64,
    pub own: u64,
    pub sent: u64,
    pub send_errors: u64,
    pub received_hello: u64,
    pub received_query: u64,
    pub received_bye: u64,
    pub sent_hello: u64,
    pub sent_query: u64,
    pub sent_bye: u64,
    pub sent_answer: u64,
    pub suppressed_query: u64,
    pub suppressed_answer: u64,
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
            received_hello: get(&self.received_hello),
            received_query: get(&self.received_query),
            received_bye: get(&self.received_bye),
            sent_hello: get(&self.sent_hello),
            sent_query: get(&self.sent_query),
            sent_bye: get(&self.sent_bye),
            sent_answer: get(&self.sent_answer),
            suppressed_query: get(&self.suppressed_query),
            suppressed_answer: get(&self.suppressed_answer),
        }
    }
}

impl StatsSnapshot {
    /// Every counter by the name the status page, JSON and metrics show it under.
    pub fn by_kind(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("received", self.received),
            ("malformed", self.malformed),
            ("own", self.own),
            ("sent", self.sent),
            ("send_errors", self.send_errors),
            ("received_hello", self.received_hello),
            ("received_query", self.received_query),
            ("received_bye", self.received_bye),
            ("sent_hello", self.sent_hello),
            ("sent_query", self.sent_query),
            ("sent_bye", self.sent_bye),
            ("sent_answer", self.sent_answer),
            ("suppressed_query", self.suppressed_query),
            ("suppressed_answer", self.suppressed_answer),
        ]
    }
}

fn bump(c: &AtomicU64) {
    add(c, 1);
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// What a decoded announcement from someone else did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Hello(PeerAddr, Seen),
    /// A query also says who asks: the querier is taken as a hello would be (a host whose
    /// own query was suppressed by this one learns of the querier from it alone).
    Query(PeerAddr, Seen),
    Bye(PeerAddr, bool),
}

/// Apply `a`, received from `src`, to the table. Pure but for the table. `subnets` and
/// `links`: this host's IPv4 subnets and IPv6 addresses; a hello from elsewhere (but
/// loopback) is refused unless a filter names it (see [`peer_address`]), or it is
/// `authenticated` (its seal verified under the shared secret).
fn apply(
    a: &Announce,
    src: SocketAddr,
    subnets: &[Subnet],
    links: &[Inet6],
    authenticated: bool,
    table: &mut PeerTable,
    now: Instant,
) -> Heard {
    let (addr, near) = peer_address(src, &a.addrs, a.http_port, subnets, links);
    let on_subnet = authenticated || near;
    match a.kind {
        Kind::Hello => {
            let seen = table.seen(addr.clone(), a.instance, &a.archs, on_subnet, now);
            Heard::Hello(addr, seen)
        }
        Kind::Query => {
            let seen = table.seen(addr.clone(), a.instance, &a.archs, on_subnet, now);
            Heard::Query(addr, seen)
        }
        Kind::Bye => {
            let forgot = table.gone(&addr, a.instance);
            Heard::Bye(addr, forgot)
        }
    }
}

/// Sends announcements (signed, with a shared secret: each with a fresh timestamp and nonce,
/// and the address it leaves from), counts them, and logs a failure once until sending works
/// again.
struct Sender<'a> {
    disc: &'a Discovery,
    stats: &'a DiscoveryStats,
    lan: Option<&'a Lan>,
    failing: bool,
}

impl Sender<'_> {
    /// Send `a` on each of `families`; the families it could not be sent on.
    async fn send(&mut self, a: &Announce, families: Families) -> Families {
        let kind = a.kind;
        let plain = match self.lan {
            None => encode(a),
            Some(_) => Vec::new(),
        };
        let mut failed = Families::NONE;
        let mut result = Ok(());
        let mut sent = 0;
        for f in families.iter() {
            let (n, r) = match self.lan {
                None => self.disc.send_bytes(&plain, Families::one(f)).await,
                Some(lan) => {
                    let keys = lan.keys();
                    let datagram = |src: Option<IpAddr>| {
                        let src = src.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
                        encode_signed(a, unix_now(), lan.next_nonce(), src, keys.signing())
                    };
                    self.disc.send_each(Families::one(f), true, datagram).await
                }
            };
            sent += n;
            if let Err(e) = r {
                failed = failed.union(Families::one(f));
                result = Err(e);
            }
        }
        add(&self.stats.sent, sent);
        let by_kind = match kind {
            Kind::Hello => &self.stats.sent_hello,
            Kind::Query => &self.stats.sent_query,
            Kind::Bye => &self.stats.sent_bye,
        };
        add(by_kind, sent);
        self.report(kind, result);
        failed
    }

    fn report(&mut self, kind: Kind, result: io::Result<()>) {
        let what = kind.as_str();
        match result {
            Ok(()) => {
                if self.failing {
                    self.failing = false;
                    crate::info!("discovery: sending to {} works again", self.disc);
                }
            }
            Err(e) => {
                bump(&self.stats.send_errors);
                let hint = if e.raw_os_error() == Some(Errno::NETUNREACH.raw_os_error()) {
                    " — is there a route for 224.0.0.0/4 (or a default route)?"
                } else if e.raw_os_error() == Some(Errno::ADDRNOTAVAIL.raw_os_error()) {
                    " — no usable source address yet (IPv6 duplicate address detection?); \
                     the start-up query is sent again"
                } else {
                    ""
                };
                if self.failing {
                    crate::verbose!("discovery: sending {what} to {}: {e}", self.disc);
                } else {
                    self.failing = true;
                    crate::error!("discovery: sending {what} to {}: {e}{hint}", self.disc);
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

/// The "peer discovered" lines.
static DISCOVERED_LINES: crate::sys::log::Throttle = crate::sys::log::Throttle::new();

/// The running loop's state.
struct Discoverer<'a> {
    disc: &'a Discovery,
    me: Announce,
    table: &'a Mutex<PeerTable>,
    stats: &'a DiscoveryStats,
    sender: Sender<'a>,
    lan: Option<&'a Lan>,
    max_silence: Duration,
    schedule: Schedule,
    jitter: Jitter,
    /// The subnets this host is on and its IPv6 addresses, read again with every periodic
    /// hello.
    subnets: Vec<Subnet>,
    links: Vec<Inet6>,
    /// Families the first hello could not be sent on: the query goes there too (it announces
    /// us as well).
    unsent_hello: Families,
    /// Times the start-up query was sent again after failing.
    query_retries: u32,
}

/// This host's addresses for hellos: the routable IPv6 ones on the discovery links.
fn own_addrs(disc: &Discovery, links: &[Inet6]) -> Vec<IpAddr> {
    ifaces::announced_addrs(links, disc.links())
        .into_iter()
        .map(IpAddr::V6)
        .collect()
}

impl Discoverer<'_> {
    /// Our announcement of `kind`.
    fn announce(&self, kind: Kind) -> Announce {
        Announce {
            kind,
            ..self.me.clone()
        }
    }

    async fn hello(&mut self, now: Instant, families: Families, what: Sent) {
        let hello = self.announce(Kind::Hello);
        self.sender.send(&hello, families).await;
        self.schedule.sent_hello(now, families, what);
    }

    async fn on_timer(&mut self, now: Instant) {
        match self.schedule.due(now) {
            Due::Periodic(families) => {
                self.hello(now, families, Sent::Periodic).await;
                self.subnets = host::connected_subnets();
                self.links = ifaces::read();
                self.me.addrs = own_addrs(self.disc, &self.links);
                for addr in crate::lock(self.table).expire(now, self.max_silence) {
                    crate::info!(
                        "peer {addr} forgotten: no hello for {} s",
                        self.max_silence.as_secs()
                    );
                }
            }
            Due::Query(families) => {
                let query = self.announce(Kind::Query);
                let families = families.union(std::mem::take(&mut self.unsent_hello));
                let failed = self.sender.send(&query, families).await;
                self.schedule.sent_query();
                // A family with no usable source address yet (a link-local address still
                // tentative at boot) gets the query again a little later.
                if !failed.is_empty() && self.query_retries < STARTUP_QUERY_RETRIES {
                    self.query_retries += 1;
                    self.schedule
                        .retry_query(now + STARTUP_QUERY_RETRY_PAUSE, failed);
                }
            }
            Due::Answer(families) => {
                let before = self.stats.sent.load(Ordering::Relaxed);
                self.hello(now, families, Sent::Answer).await;
                let sent = self.stats.sent.load(Ordering::Relaxed) - before;
                add(&self.stats.sent_answer, sent);
            }
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
        bump(match a.kind {
            Kind::Hello => &self.stats.received_hello,
            Kind::Query => &self.stats.received_query,
            Kind::Bye => &self.stats.received_bye,
        });
        let family = Family::of(&src);
        let heard = apply(
            &a,
            src,
            &self.subnets,
            &self.links,
            self.lan.is_some(),
            &mut crate::lock(self.table),
            now,
        );
        let (addr, seen) = match heard {
            Heard::Bye(addr, true) => {
                self.schedule.on_bye(a.instance);
                crate::info!("peer {addr} said goodbye");
                return;
            }
            Heard::Bye(addr, false) => {
                crate::verbose!("discovery: goodbye from unknown peer {addr}");
                return;
            }
            Heard::Hello(addr, seen) => (addr, seen),
            Heard::Query(addr, seen) => {
                let jitter = self.jitter.answer();
                let (answering, ours) = self.schedule.on_query(now, a.instance, family, jitter);
                if answering != Answering::Scheduled {
                    bump(&self.stats.suppressed_answer);
                }
                if ours {
                    bump(&self.stats.suppressed_query);
                }
                (addr, seen)
            }
        };
        match seen {
            // A flood of forged hellos must not become a flood of lines.
            Seen::New | Seen::Moved => {
                self.schedule.on_hello(now, a.instance, family);
                if let Some(left_out) = DISCOVERED_LINES.admit(now) {
                    if left_out > 0 {
                        crate::info!(
                            "... and {left_out} more peers discovered in the last {} s",
                            crate::limits::LOG_WINDOW.as_secs()
                        );
                    }
                    if seen == Seen::Moved {
                        crate::info!(
                            "peer {addr} discovered (known at a link-local address before)"
                        );
                    } else {
                        crate::info!("peer {addr} discovered");
                    }
                }
            }
            Seen::Refreshed => self.schedule.on_hello(now, a.instance, family),
            Seen::Filtered => {
                crate::verbose!("peer {addr} ignored: excluded by --multicast-filter")
            }
            Seen::OffSubnet => {
                crate::verbose!("peer {addr} ignored: not on a subnet of this host")
            }
            Seen::TableFull => {
                crate::verbose!("peer {addr} ignored: peer table full")
            }
        }
    }
}

/// Announce `me` (its kind and addresses are ignored) and keep `table` up to date with what
/// others announce, until `stop` is closed (or sent to); then say goodbye and return.
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
    let links = ifaces::read();
    let me = Announce {
        kind: Kind::Hello,
        addrs: own_addrs(&disc, &links),
        ..me
    };
    let hello = encode(&me);
    if let Err(e) = decode(&hello) {
        crate::error!(
            "discovery disabled: peers would reject our announcement ({e}): {}",
            escape(&hello)
        );
        return;
    }
    let families = disc.families();
    let lan = lan.as_deref();
    let mut sender = Sender {
        disc: &disc,
        stats: &stats,
        lan,
        failing: false,
    };
    // Everyone learns of us at once; our query waits a moment, in case another one makes it
    // unnecessary.
    let unsent_hello = sender.send(&me, families).await;
    let seed = me.instance ^ super::wire::new_instance_id();
    let mut jitter = Jitter::seeded(seed);
    let query_delay = jitter.query();
    let mut d = Discoverer {
        disc: &disc,
        me,
        table: &table,
        stats: &stats,
        sender,
        lan,
        max_silence: cfg.max_silence(),
        schedule: Schedule::started(
            clamp_interval(cfg.interval),
            families,
            Instant::now(),
            query_delay,
        ),
        jitter,
        subnets: host::connected_subnets(),
        links,
        unsent_hello,
        query_retries: 0,
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
        .or(async { Event::Datagram(d.disc.recv(&mut buf).await) })
        .await;
        let now = Instant::now();
        match event {
            Event::Stop => {
                let bye = d.announce(Kind::Bye);
                d.sender.send(&bye, families).await;
                return;
            }
            Event::Timer => {
                // A fired timer stays fired until set again.
                armed = None;
                d.on_timer(now).await;
            }
            Event::Datagram(Err(e)) => {
                crate::error!("discovery: receiving on {}: {e}", d.disc);
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
            apply(&a, src("198.51.100.7"), &lan, &[], false, &mut table, t0),
            Heard::Hello(peer("198.51.100.7", 15678), Seen::OffSubnet)
        );
        // Unless its seal verified: then the address is as good as its key.
        let mut sealed = PeerTable::default();
        assert_eq!(
            apply(&a, src("198.51.100.7"), &lan, &[], true, &mut sealed, t0),
            Heard::Hello(peer("198.51.100.7", 15678), Seen::New)
        );
        let heard = apply(&a, src("10.0.0.2"), &lan, &[], false, &mut table, t0);
        assert_eq!(heard, Heard::Hello(peer("10.0.0.2", 15678), Seen::New));
        let heard = apply(&a, src("10.0.0.2"), &lan, &[], false, &mut table, t0);
        assert_eq!(
            heard,
            Heard::Hello(peer("10.0.0.2", 15678), Seen::Refreshed)
        );
        let heard = apply(&a, src("10.0.0.9"), &lan, &[], false, &mut table, t0);
        assert_eq!(heard, Heard::Hello(peer("10.0.0.9", 15678), Seen::Filtered));
        // A query says who asks: the querier is a peer too.
        a.kind = Kind::Query;
        a.instance = 3;
        assert_eq!(
            apply(&a, src("10.0.0.3"), &lan, &[], false, &mut table, t0),
            Heard::Query(peer("10.0.0.3", 15678), Seen::New)
        );
        assert_eq!(table.len(), 2, "the querier is added");
        assert!(table.gone(&peer("10.0.0.3", 15678), 3));
        a.instance = 7;
        // A goodbye names host (the source) + port + instance; a forged one with another
        // instance or from another host does nothing.
        a.kind = Kind::Bye;
        a.instance = 8;
        assert_eq!(
            apply(&a, src("10.0.0.2"), &lan, &[], false, &mut table, t0),
            Heard::Bye(peer("10.0.0.2", 15678), false)
        );
        a.instance = 7;
        assert_eq!(
            apply(&a, src("10.0.0.5"), &lan, &[], false, &mut table, t0),
            Heard::Bye(peer("10.0.0.5", 15678), false)
        );
        assert_eq!(
            apply(&a, src("10.0.0.2"), &lan, &[], false, &mut table, t0),
            Heard::Bye(peer("10.0.0.2", 15678), true)
        );
        assert!(table.is_empty());
    }

    #[test]
    fn one_pacserve_heard_on_both_families_is_one_peer() {
        use crate::sys::ifaces::parse_if_inet6;
        use std::net::SocketAddrV6;
        let t0 = Instant::now();
        let mut table = PeerTable::default();
        let lan = [Subnet {
            network: std::net::Ipv4Addr::new(10, 0, 0, 0),
            mask: std::net::Ipv4Addr::new(255, 255, 255, 0),
        }];
        let links = parse_if_inet6("fe800000000000000000000000000001 02 40 20 80 eth0\n");
        let ll = SocketAddr::V6(SocketAddrV6::new("fe80::2".parse().unwrap(), 15679, 0, 2));
        let v4 = SocketAddr::new("10.0.0.2".parse().unwrap(), 15679);
        let peer = |host: &str| PeerAddr {
            host: host.into(),
            port: 15678,
        };
        let a = hello(7, 15678, &["any"]);
        // Heard first on IPv6, from its link-local address only: known with the zone.
        assert_eq!(
            apply(&a, ll, &lan, &links, false, &mut table, t0),
            Heard::Hello(peer("fe80::2%eth0"), Seen::New)
        );
        // Then on IPv4: the same instance moves to the address that needs no zone...
        assert_eq!(
            apply(&a, v4, &lan, &links, false, &mut table, t0),
            Heard::Hello(peer("10.0.0.2"), Seen::Moved)
        );
        // ...and stays there: the next IPv6 hello only refreshes it.
        assert_eq!(
            apply(&a, ll, &lan, &links, false, &mut table, t0),
            Heard::Hello(peer("fe80::2%eth0"), Seen::Refreshed)
        );
        assert_eq!(table.len(), 1);
        assert!(table.get(&peer("10.0.0.2")).is_some());
        // Its goodbye on IPv4 forgets it; the one on IPv6 then finds nothing.
        let bye = Announce {
            kind: Kind::Bye,
            ..a.clone()
        };
        assert_eq!(
            apply(&bye, v4, &lan, &links, false, &mut table, t0),
            Heard::Bye(peer("10.0.0.2"), true)
        );
        assert_eq!(
            apply(&bye, ll, &lan, &links, false, &mut table, t0),
            Heard::Bye(peer("fe80::2%eth0"), false)
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
            c.send_bytes(b"pacserve 9 hello\n", Families::BOTH)
                .await
                .1
                .unwrap();
            c.send_bytes(&[0xff; 700], Families::BOTH).await.1.unwrap();
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
                IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
                key_a.keys().signing(),
            );
            plain.send_bytes(&sealed, Families::BOTH).await.1.unwrap();
            assert!(eventually(limit, || knows(&a, 8006)).await);
            plain.send_bytes(&sealed, Families::BOTH).await.1.unwrap();
            assert!(eventually(limit, || refused(&key_a, "replay") >= 1).await);
            // Signed for another sender address: refused as such.
            let elsewhere = encode_signed(
                &hello(0x10, 8007, &["any"]),
                unix_now(),
                8,
                IpAddr::from([10, 9, 9, 9]),
                key_a.keys().signing(),
            );
            plain
                .send_bytes(&elsewhere, Families::BOTH)
                .await
                .1
                .unwrap();
            assert!(eventually(limit, || refused(&key_a, "address") >= 1).await);
            // Two minutes and a second old: outside the window.
            let stale = encode_signed(
                &hello(0x11, 8008, &["any"]),
                unix_now() - crate::limits::AUTH_WINDOW.as_secs() - 1,
                9,
                IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
                key_a.keys().signing(),
            );
            plain.send_bytes(&stale, Families::BOTH).await.1.unwrap();
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
