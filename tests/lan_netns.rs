//! A real LAN of pacserves, one per Linux network namespace, finding each other by multicast.
//!
//! Each test builds its own LAN (as root): a "switch" namespace holding a Linux bridge, and
//! hosts A, B, C (D joins later) plus a mirror host M, each a namespace with a veth pair whose
//! other end is a port of that bridge. Addresses are `10.231.N.I/24` (N per test), `lo` is up
//! in each host, and each host has a `224.0.0.0/4` route on its veth (so it can join the
//! multicast group) and no default route. Traffic stays inside these namespaces.
//!
//! Every host runs the real pacserve (`--multicast`, port 15678) with its own cache and a
//! pacman.conf whose `[core]` lists the mirror; the mirror is the harness's HTTP server, its
//! socket bound inside M, logging every request with the client's address; the real pacman
//! runs inside host A and talks to A's pacserve on 127.0.0.1. Who knows whom is read from each
//! pacserve's `/status.json` (fetched from inside its namespace); who asked whom, and what
//! pacserve says when peers fail, expire or leave, from its log.
//!
//! What the tests show:
//! - a package only B holds reaches A's pacman from B, byte-identical, the mirror never asked;
//!   databases always come from the mirror and no peer is asked for one;
//! - a host started later is discovered within seconds and serves what it holds;
//! - a host killed with SIGKILL never stalls a download (one refused lookup, then backoff),
//!   is forgotten after three silent intervals, and is not tried again;
//! - a host stopped with SIGTERM says goodbye and is forgotten at once, and exits 0;
//! - `--multicast-filter` keeps a host out: never added, never asked.
//!
//! Namespaces and temp dirs are removed in `Drop`; the first test to start removes those a
//! crashed earlier run left behind.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::mirror_lan::{LanHost, MirrorLan, per_pacman};
use common::*;

/// pacserve's HTTP port on every host (each host has its own network stack).
const PORT: u16 = 15678;
/// Host numbers: the last byte of each host's address.
const A: u8 = 11;
const B: u8 = 12;
const C: u8 = 13;
const D: u8 = 14;

/// How long a running peer may take to be discovered (it announces itself at start).
const DISCOVER_LIMIT: Duration = Duration::from_secs(10);
/// How long a silent peer may take to be forgotten (3 intervals of 1 s, checked every 1 s).
const FORGET_LIMIT: Duration = Duration::from_secs(15);
/// How long a goodbye may take to be heard (the interval is 30 s in that test, so expiry
/// cannot explain a forget within this).
const GOODBYE_LIMIT: Duration = Duration::from_secs(5);
/// How long pacserve may take to exit after SIGTERM with no request in flight.
const EXIT_LIMIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// The LAN

type Lan = MirrorLan;

impl Lan {
    /// The LAN of a test that runs with each pacman: namespaces of its own for each.
    fn for_pacman(tag: &str, subnet: u8, names: &[&str]) -> Lan {
        MirrorLan::new(&per_pacman(tag), subnet, names)
    }

    /// Wait (bounded) for the mirror to have answered `method path` with `status` to `from`.
    fn wait_mirror(&self, from: &str, method: &str, path: &str, status: u16) -> bool {
        self.mirror().wait_request(|r| {
            r.from.to_string() == from && r.method == method && r.path == path && r.status == status
        })
    }
}

impl LanHost {
    fn hold(&self, pkg: &Pkg) {
        self.host.hold(pkg);
    }

    /// `host:port` of its pacserve, as peers know it.
    fn authority(&self) -> String {
        format!("{}:{PORT}", self.ip)
    }

    /// pacserve on all addresses, port 15678, multicast every `interval` seconds, verbose.
    fn start(&self, interval: u32, extra: &[&str]) -> Pacserve {
        let interval = interval.to_string();
        self.host
            .pacserve()
            .name(&format!("pacserve {}", self.name))
            .in_netns(&self.ns)
            .address("0.0.0.0")
            .port(PORT)
            .args(&["--multicast", "--multicast-interval", &interval])
            .args(extra)
            .start()
    }

    /// A pacman client inside this host whose only server is the pacserve of this host.
    fn local_client(&self) -> PacmanClient {
        PacmanClient::new(
            "core",
            &[format!("http://127.0.0.1:{PORT}/request/$repo/$arch")],
        )
        .in_netns(&self.ns)
    }
}

/// Wait (bounded) until `ps` has `peer` in its table, heard by multicast.
fn assert_discovers(ps: &Pacserve, peer: &LanHost, lan: &Lan, others: &[&Pacserve]) {
    let found = ps.wait_peer(&peer.authority(), DISCOVER_LIMIT);
    let mut all = vec![ps];
    all.extend_from_slice(others);
    let found = found.unwrap_or_else(|| {
        panic!(
            "{} did not discover {} within {DISCOVER_LIMIT:?}\n{}",
            ps.name(),
            peer.name,
            lan.dump(&all)
        )
    });
    assert_eq!(found.source, "multicast", "{found:?}");
}

/// The request line of `d` for `path` with `status` and `outcome` from `from`, waited for.
fn expect_request(
    d: &Pacserve,
    from: &str,
    method: &str,
    path: &str,
    status: u16,
    outcome: &str,
) -> LogLine {
    d.wait_request(|l| {
        l.from.ip().to_string() == from
            && l.method == method
            && l.path == path
            && l.status == status
            && l.outcome == outcome
    })
    .unwrap_or_else(|| {
        panic!(
            "no `{from} {method} {path} {status} .. {outcome}` line in {}'s log:\n{}",
            d.name(),
            d.log()
        )
    })
}

/// How many times `log` says that a lookup to `peer` failed.
fn failures(log: &str, peer: &LanHost) -> usize {
    failure_lines(log, &peer.authority()).len()
}

/// Lookups `p` answered for a database (or its files list).
fn database_lookups(p: &Pacserve) -> Vec<Lookup> {
    p.lookups()
        .into_iter()
        .filter(|l| l.path.contains(".db") || l.path.contains(".files"))
        .collect()
}

/// pacman -Sy on `host`: the database comes from the mirror (redirected by the host's
/// pacserve), and no peer is asked for it.
fn sync_from_mirror(
    lan: &Lan,
    host: &LanHost,
    client: &PacmanClient,
    ps: &Pacserve,
    peers: &[&Pacserve],
) {
    let mut all: Vec<&Pacserve> = vec![ps];
    all.extend_from_slice(peers);
    client.sync().assert_ok("pacman -Sy", &lan.dump(&all));
    assert!(client.sync_db().exists(), "no synced core.db");
    expect_request(
        ps,
        "127.0.0.1",
        "GET",
        "/request/core/x86_64/core.db",
        307,
        "mirror",
    );
    assert!(
        lan.wait_mirror(&host.ip.to_string(), "GET", "/core/os/x86_64/core.db", 200),
        "the mirror did not serve core.db to {}\n{}",
        host.ip,
        lan.dump(&all)
    );
    for p in peers {
        let db = database_lookups(p);
        assert!(
            db.is_empty(),
            "a peer was asked for a database: {db:?}\n{}",
            lan.dump(&all)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

both_pacmans! {
/// A's pacman gets X from B (never from the mirror) and the database from the mirror; D,
/// started later, is found within seconds and serves Z; C, killed with SIGKILL, never stalls
/// a download, is forgotten after three silent intervals, and is never asked again.
fn lan_shares_finds_late_hosts_and_forgets_dead_ones() {
    let lan = Lan::for_pacman("share", 1, &["lanx", "lany", "lanz", "lanw"]);
    let (x, y, z, w) = (
        lan.pkg("lanx"),
        lan.pkg("lany"),
        lan.pkg("lanz"),
        lan.pkg("lanw"),
    );
    let (a, b, c) = (lan.host("a", A), lan.host("b", B), lan.host("c", C));
    b.hold(x);
    let ps_a = a.start(1, &[]);
    let ps_b = b.start(1, &[]);
    let ps_c = c.start(1, &[]);
    for peer in [&b, &c] {
        assert_discovers(&ps_a, peer, &lan, &[&ps_b, &ps_c]);
    }

    // Databases come from the mirror, never from a peer.
    let client = a.local_client();
    sync_from_mirror(&lan, &a, &client, &ps_a, &[&ps_b, &ps_c]);

    // X, held only by B, comes from B.
    client.fetch(x, || lan.dump(&[&ps_a, &ps_b, &ps_c]));
    expect_request(&ps_a, "127.0.0.1", "GET", &x.request_path(), 307, "peer");
    expect_request(&ps_b, &a.ip.to_string(), "HEAD", &x.peer_path(), 200, "local");
    let served = expect_request(&ps_b, &a.ip.to_string(), "GET", &x.lan_path(), 200, "local");
    assert_eq!(served.bytes, x.size());
    assert_eq!(
        lan.mirror_asked(x),
        0,
        "the mirror was asked for X\n{}",
        lan.dump(&[&ps_a, &ps_b])
    );
    let c_served: Vec<Lookup> = ps_c
        .lookups()
        .into_iter()
        .filter(|l| l.method == "GET")
        .collect();
    assert!(c_served.is_empty(), "C served something: {c_served:?}");

    // D joins later, holding Z: found within seconds, and Z comes from it.
    let d = lan.host("d", D);
    d.hold(z);
    let ps_d = d.start(1, &[]);
    assert_discovers(&ps_a, &d, &lan, &[&ps_d]);
    client.fetch(z, || lan.dump(&[&ps_a, &ps_b, &ps_c, &ps_d]));
    expect_request(&ps_a, "127.0.0.1", "GET", &z.request_path(), 307, "peer");
    expect_request(&ps_d, &a.ip.to_string(), "GET", &z.lan_path(), 200, "local");
    assert_eq!(
        lan.mirror_asked(z),
        0,
        "the mirror was asked for Z\n{}",
        lan.dump(&[&ps_a, &ps_d])
    );

    // C dies without a goodbye. Right away, a package only the mirror holds still downloads:
    // the lookup to C fails (refused) and C is backed off.
    ps_c.kill();
    let ran = client.fetch(y, || lan.dump(&[&ps_a, &ps_b, &ps_d]));
    assert!(
        !ran.text().contains("error:"),
        "pacman hit an error while C was dead:\n{}\n{}",
        ran.text(),
        lan.dump(&[&ps_a])
    );
    expect_request(&ps_a, "127.0.0.1", "GET", &y.request_path(), 307, "mirror");
    assert!(
        lan.wait_mirror(&a.ip.to_string(), "GET", &y.mirror_path(), 200),
        "the mirror did not serve Y to A\n{}",
        lan.dump(&[&ps_a])
    );
    // One lookup, one attempt at C, one failure that backs C off.
    let log = ps_a.log();
    let failed = failure_lines(&log, &c.authority());
    let backoff = failed
        .first()
        .filter(|_| failed.len() == 1)
        .and_then(|l| backoff_secs(l))
        .unwrap_or_else(|| {
            panic!("A's lookup of Y should fail on the dead C once and back it off\n{log}")
        });
    // The failure was logged before now, so the backoff is over by then: a later lookup that
    // skips C does so because C is forgotten, not because it is backed off.
    let backoff_over = Instant::now() + Duration::from_secs(backoff.min(120));

    // After three silent intervals C is forgotten...
    let forgotten = format!("peer {} forgotten: no hello for", c.authority());
    assert!(
        ps_a.wait_log(&forgotten, FORGET_LIMIT),
        "A did not forget the dead C within {FORGET_LIMIT:?}\n{}",
        ps_a.log()
    );
    assert_eq!(ps_a.peer(&c.authority()), None, "C is still in A's table");
    assert!(
        !ps_a
            .log()
            .contains(&format!("peer {} forgotten", b.authority())),
        "A forgot B, which is alive\n{}",
        ps_a.log()
    );
    assert!(ps_a.peer(&b.authority()).is_some(), "B left A's table");
    // ...and the next lookup, once the backoff is over, makes no attempt to reach it.
    thread::sleep(backoff_over.saturating_duration_since(Instant::now()));
    client.fetch(w, || lan.dump(&[&ps_a, &ps_b, &ps_d]));
    expect_request(&ps_b, &a.ip.to_string(), "HEAD", &w.peer_path(), 404, "miss");
    expect_request(&ps_d, &a.ip.to_string(), "HEAD", &w.peer_path(), 404, "miss");
    expect_request(&ps_a, "127.0.0.1", "GET", &w.request_path(), 307, "mirror");
    let log = ps_a.log();
    let after = &log[log.find(&forgotten).expect("seen above")..];
    assert_eq!(
        failures(after, &c),
        0,
        "A tried the forgotten C again\n{log}"
    );
    // Nothing ever asked a peer for a database.
    for p in [&ps_b, &ps_d] {
        let db = database_lookups(p);
        assert!(
            db.is_empty(),
            "{} was asked for a database: {db:?}",
            p.name()
        );
    }
}
}

both_pacmans! {
/// B stopped with SIGTERM says goodbye: A forgets it at once (with a 30 s interval, expiry
/// could not explain it), B exits 0, and A's next lookup does not try B.
fn lan_goodbye_forgets_a_stopped_host_at_once() {
    let lan = Lan::for_pacman("bye", 2, &["lanx"]);
    let x = lan.pkg("lanx");
    let (a, b) = (lan.host("a", A), lan.host("b", B));
    b.hold(x);
    let ps_a = a.start(30, &[]);
    let ps_b = b.start(30, &[]);
    // B hears A's hello only as the answer to B's start-up query: A's next periodic hello is
    // 30 s away.
    assert_discovers(&ps_a, &b, &lan, &[&ps_b]);
    assert_discovers(&ps_b, &a, &lan, &[&ps_a]);
    let client = a.local_client();
    sync_from_mirror(&lan, &a, &client, &ps_a, &[&ps_b]);

    ps_b.signal(Signal::TERM);
    let goodbye = format!("peer {} said goodbye", b.authority());
    assert!(
        ps_a.wait_log(&goodbye, GOODBYE_LIMIT),
        "A did not hear B's goodbye within {GOODBYE_LIMIT:?}\n{}",
        lan.dump(&[&ps_a, &ps_b])
    );
    assert_eq!(ps_a.peer(&b.authority()), None, "B is still in A's table");
    ps_b.assert_exits_0(EXIT_LIMIT, "SIGTERM");
    assert!(ps_b.log().contains("stopped"), "{}", ps_b.log());
    assert!(
        !ps_a.log().contains("forgotten"),
        "A expired a peer, so the goodbye proves nothing\n{}",
        ps_a.log()
    );

    // B is gone from A's table: X comes from the mirror and B is not tried.
    client.fetch(x, || lan.dump(&[&ps_a, &ps_b]));
    expect_request(&ps_a, "127.0.0.1", "GET", &x.request_path(), 307, "mirror");
    assert!(
        lan.wait_mirror(&a.ip.to_string(), "GET", &x.mirror_path(), 200),
        "the mirror did not serve X to A\n{}",
        lan.dump(&[&ps_a])
    );
    assert_eq!(
        failures(&ps_a.log(), &b),
        0,
        "A tried the departed B\n{}",
        ps_a.log()
    );
}
}

both_pacmans! {
/// `--multicast-filter x:^10\.231\.3\.13:` keeps C out of A's table: A hears and ignores C
/// while it adds B, and a package only C holds comes from the mirror, C never asked.
fn lan_filter_keeps_a_host_out() {
    let lan = Lan::for_pacman("filter", 3, &["lanq"]);
    let q = lan.pkg("lanq");
    let (a, b, c) = (lan.host("a", A), lan.host("b", B), lan.host("c", C));
    c.hold(q);
    let filter = format!(r"x:^{}:", c.ip.to_string().replace('.', r"\."));
    let ps_a = a.start(1, &["--multicast-filter", &filter]);
    let ps_b = b.start(1, &[]);
    let ps_c = c.start(1, &[]);
    assert_discovers(&ps_a, &b, &lan, &[&ps_b, &ps_c]);
    let ignored = format!(
        "peer {} ignored: excluded by --multicast-filter",
        c.authority()
    );
    assert!(
        ps_a.wait_log(&ignored, DISCOVER_LIMIT),
        "A never heard (and ignored) C within {DISCOVER_LIMIT:?}\n{}",
        lan.dump(&[&ps_a, &ps_c])
    );
    // C hears A, so the LAN between them works; the filter alone keeps C out of A's table.
    assert_discovers(&ps_c, &a, &lan, &[&ps_a]);

    let client = a.local_client();
    sync_from_mirror(&lan, &a, &client, &ps_a, &[&ps_b, &ps_c]);
    client.fetch(q, || lan.dump(&[&ps_a, &ps_b, &ps_c]));
    expect_request(&ps_a, "127.0.0.1", "GET", &q.request_path(), 307, "mirror");
    expect_request(&ps_b, &a.ip.to_string(), "HEAD", &q.peer_path(), 404, "miss");
    assert!(
        lan.wait_mirror(&a.ip.to_string(), "GET", &q.mirror_path(), 200),
        "the mirror did not serve Q to A\n{}",
        lan.dump(&[&ps_a])
    );
    let asked_c: Vec<LogLine> = ps_c
        .requests()
        .into_iter()
        .filter(|l| l.path.starts_with("/peer/") || l.from.ip() == a.ip)
        .collect();
    assert!(asked_c.is_empty(), "A asked C: {asked_c:?}\n{}", ps_c.log());
    assert!(
        !ps_a
            .log()
            .contains(&format!("peer {} discovered", c.authority())),
        "A added C despite the filter\n{}",
        ps_a.log()
    );
    assert_eq!(ps_a.peer(&c.authority()), None, "C is in A's table");
    assert_eq!(failures(&ps_a.log(), &c), 0, "{}", ps_a.log());
}
}
