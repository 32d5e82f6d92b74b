//! Attacks from a hostile LAN, reproduced at a small, bounded scale against real pacserves in
//! network namespaces, and the behaviour that defends against each.
//!
//! Each test builds its own LAN (as root), as `lan_netns.rs` does: a switch namespace holding
//! a bridge, a mirror host M serving repo `core`, the pacserve hosts, and hosts without a
//! pacserve: an attacker X and a client C. The attacker forges multicast hellos with a raw
//! socket (any source address on the LAN, a fresh instance id in each), opens connections by
//! the hundred, or is a peer whose answers have gone stale. What each pacserve did is read
//! from its `/status.json`, its log, `/proc/PID/fd`, and the answers its clients got.
//!
//! What the tests show:
//! - forged hellos from silent addresses, with clients asking for random files meanwhile, do
//!   not exhaust a victim held to 512 descriptors: its cache is still served, its mirror is
//!   never marked dead and still gets pacman, its status page answers;
//! - a failing peer address stays backed off, however many fresh instance ids it announces;
//! - a table full of peers that never answered still admits a real newcomer;
//! - a hello from an address on none of the victim's subnets is ignored, unless an inclusive
//!   `--multicast-filter` names it; a newly discovered peer never wins over one that answered;
//! - a Server line naming this host under another name is skipped, and a request from a
//!   pacserve is answered from the cache alone: no self-probes, no fan-out;
//! - two peers with stale answers about each other cannot bounce pacman between them;
//! - one host's idle and half-sent connections cannot lock out the others, and their refusals
//!   cost a few log lines, not one each.
//!
//! Namespaces, hosts files and temp dirs are removed in `Drop`; the first test to start removes
//! those a crashed earlier run left behind. Forged traffic stays inside these namespaces.

mod common;

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::lan::{self, RawUdp};
use common::mirror_lan::{Bare, LanHost, MirrorLan};
use common::*;
use pacserve::limits::{
    LOG_BURST, LOG_WINDOW, MAX_CONNECTIONS_PER_SOURCE, MAX_OUTGOING_CONNECTIONS, MAX_PEERS,
    OPEN_CACHE_TTL,
};
use pacserve::peers::discovery::{DEFAULT_GROUP, DEFAULT_PORT};

/// pacserve's HTTP port on every host (each host has its own network stack).
const PORT: u16 = 15678;
/// Host numbers: the last byte of each host's address.
const A: u8 = 11;
const B: u8 = 12;
const N: u8 = 13;
const ATTACKER: u8 = 20;
const CLIENT: u8 = 30;
/// Forged hellos come from `.FORGED_FIRST` and the `FORGED_ADDRS - 1` addresses after it:
/// addresses of the LAN that no host has, so a connection to one hangs until it times out.
const FORGED_FIRST: u8 = 150;
const FORGED_ADDRS: u8 = 100;
/// How long a running peer may take to be discovered (it announces itself at start).
const DISCOVER_LIMIT: Duration = Duration::from_secs(10);
/// Forged hellos sent in a row before a pause, so the victim's receive buffer never
/// overflows (that would test the kernel, not pacserve).
const HELLO_BURST: usize = 16;
const HELLO_PAUSE: Duration = Duration::from_millis(5);

// ---------------------------------------------------------------------------------------------
// The LAN

type Lan = MirrorLan;

impl LanHost {
    fn hold(&self, pkg: &Pkg) {
        self.host.hold(pkg);
    }

    fn drop_file(&self, name: &str) {
        let p = self.host.cache.join(name);
        std::fs::remove_file(&p).unwrap_or_else(|e| panic!("rm {}: {e}", p.display()));
    }

    /// `host:port` of its pacserve, as peers know it.
    fn authority(&self) -> String {
        format!("{}:{PORT}", self.ip)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, PORT))
    }

    /// `http://IP:PORT` + `path`.
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.authority())
    }

    /// pacserve inside this host on all addresses, port 15678, verbose.
    fn launch(&self) -> Launch {
        self.host
            .pacserve()
            .name(&format!("pacserve {}", self.name))
            .in_netns(&self.ns)
            .address("0.0.0.0")
            .port(PORT)
    }

    fn start(&self, extra: &[&str]) -> Pacserve {
        self.launch().args(extra).start()
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP from inside a namespace

/// `raw` on a fresh connection to `to`, from the calling thread's namespace.
fn exchange_to(to: SocketAddr, raw: &[u8], head_request: bool) -> io::Result<Response> {
    let mut c = RawConn::connect_to(to)?;
    c.send(raw)?;
    c.read_response(head_request)
}

/// `raw` on a fresh connection from inside `ns` to `to`, and the response.
fn exchange_in(ns: &str, to: SocketAddr, raw: &[u8], head_request: bool) -> io::Result<Response> {
    lan::in_netns(ns, || exchange_to(to, raw, head_request)).and_then(|r| r)
}

/// `METHOD path` from inside `ns` to `to`; panics on I/O errors.
fn ask_in(ns: &str, to: SocketAddr, method: &str, path: &str) -> Response {
    exchange_in(ns, to, &request_bytes(method, path, &[]), method == "HEAD")
        .unwrap_or_else(|e| panic!("{method} {path} to {to} from {ns}: {e}"))
}

/// `HEAD path` to `ps` from inside its own namespace (from 127.0.0.1).
fn head_of(ps: &Pacserve, path: &str) -> Response {
    ps.connect()
        .and_then(|mut c| {
            c.send(&request_bytes("HEAD", path, &[]))?;
            c.read_response(true)
        })
        .unwrap_or_else(|e| panic!("HEAD {path} to {}: {e}\n{}", ps.name(), ps.log()))
}

/// `http://A.B.C.D:PORT/path` → (address, path).
fn split_url(url: &str) -> Option<(SocketAddr, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find('/')?);
    Some((authority.parse().ok()?, path.to_string()))
}

/// GET `url` from inside `ns`, following redirects like pacman, at most `max` requests:
/// each URL asked and its status, and the last response.
fn follow(ns: &str, url: &str, max: usize) -> (Vec<(String, u16)>, Response) {
    lan::in_netns(ns, || {
        let mut chain = Vec::new();
        let mut url = url.to_string();
        loop {
            let (to, path) =
                split_url(&url).unwrap_or_else(|| panic!("not an http://IP:PORT/ URL: {url}"));
            let r = exchange_to(to, &request_bytes("GET", &path, &[]), false)
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            chain.push((url.clone(), r.status));
            match r.header("location") {
                Some(next) if (300..400).contains(&r.status) && chain.len() < max => {
                    url = next.to_string();
                }
                _ => return (chain, r),
            }
        }
    })
    .expect("a thread inside the namespace")
}

// ---------------------------------------------------------------------------------------------
// Forged hellos

/// The attacker's raw socket: multicast hellos from any address, a fresh instance id each.
struct Forger {
    raw: RawUdp,
    rng: Rng,
    sent: usize,
    /// The LAN's first silent address (`.FORGED_FIRST`).
    silent: Ipv4Addr,
}

impl Forger {
    fn new(lan: &Lan, attacker: &Bare) -> Forger {
        Forger {
            raw: RawUdp::open_in(&attacker.ns),
            rng: Rng::seeded(),
            sent: 0,
            silent: lan.ip(FORGED_FIRST),
        }
    }

    /// `pacserve 1 hello id=ID port=PORT arch=x86_64` from `from`, to pacserve's default
    /// group and port, with a new random id.
    fn hello(&mut self, from: Ipv4Addr, http_port: u16) {
        let id = self.rng.next();
        let text = format!("pacserve 1 hello id={id:016x} port={http_port} arch=x86_64\n");
        let group = SocketAddrV4::new(DEFAULT_GROUP, DEFAULT_PORT);
        self.raw
            .send(
                SocketAddrV4::new(from, DEFAULT_PORT),
                group,
                text.as_bytes(),
            )
            .unwrap_or_else(|e| panic!("forging a hello from {from}: {e}"));
        self.sent += 1;
        if self.sent % HELLO_BURST == 0 {
            thread::sleep(HELLO_PAUSE);
        }
    }

    /// A random silent address of the LAN (see [`FORGED_FIRST`]) and a random port.
    fn silent_peer(&mut self) -> (Ipv4Addr, u16) {
        let [a, b, c, first] = self.silent.octets();
        let i = first + self.rng.below(u64::from(FORGED_ADDRS)) as u8;
        let port = 1024 + self.rng.below(64_000) as u16;
        (Ipv4Addr::new(a, b, c, i), port)
    }
}

/// The `k`th of a fixed list of distinct silent peers (address and port) of `lan`.
fn silent_peer(lan: &Lan, k: usize) -> (Ipv4Addr, u16) {
    let addrs = usize::from(FORGED_ADDRS);
    let i = FORGED_FIRST + (k % addrs) as u8;
    (lan.ip(i), 20_000 + (k / addrs) as u16)
}

/// `multicast_datagrams.received` of `ps`.
fn datagrams_received(ps: &Pacserve) -> u64 {
    ps.status_json()
        .field("multicast_datagrams")
        .num("received")
}

/// A fresh package file name nobody holds.
fn random_file(rng: &mut Rng) -> String {
    format!("flood{:016x}-1-1-x86_64.pkg.tar.zst", rng.next())
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Open-file limit of the victim in the descriptor test: the 256 outgoing connections the
/// budget allows fit under it with room to serve; the lookups of six clients to 256 forged
/// peers each (1536 sockets) do not.
const VICTIM_FDS: u64 = 512;
/// Clients asking for random files at once, each at most `ASKS` times, `ASK_PAUSE` apart.
const ASKERS: usize = 6;
const ASKS: usize = 400;
const ASK_PAUSE: Duration = Duration::from_millis(50);
/// Rounds of checks on the victim while the flood goes on, `CHECK_PAUSE` apart.
const CHECKS: usize = 8;
const CHECK_PAUSE: Duration = Duration::from_millis(250);
/// Most forged hellos in the flood (it stops when the checks are done), and the pause after
/// each burst of them: about 700 a second, a fresh table of silent peers every half second.
const FLOOD_MAX: usize = 20_000;
const FLOOD_PAUSE: Duration = Duration::from_millis(20);
/// Most samples of the victim's descriptors, `SAMPLE_PAUSE` apart.
const SAMPLES: usize = 6_000;
const SAMPLE_PAUSE: Duration = Duration::from_millis(10);

/// What the clients of the descriptor test saw.
#[derive(Default)]
struct Seen {
    /// Answers to the random lookups, by status (or error).
    asks: BTreeMap<String, usize>,
    /// Checks that went wrong.
    problems: Vec<String>,
    /// Most peers `/status.json` listed at one time.
    most_peers: usize,
}

/// The victim, held to 512 descriptors, hears thousands of forged hellos from silent
/// addresses (each a new peer with a new id) while six clients ask it for random files, so
/// that every lookup would ask 256 peers that never answer. Its own cache is served 200 and
/// byte-identical throughout, a package only the mirror has still gets its 307 there, the
/// mirror is never marked dead, the status page answers, and it never holds as many
/// descriptors as its limit.
#[test]
fn forged_hellos_cannot_exhaust_descriptors() {
    let lan = Lan::new("fds", 21, &["kept", "remote"]);
    let (kept, remote) = (lan.pkg("kept"), lan.pkg("remote"));
    let v = lan.host("v", A);
    v.hold(kept);
    let attacker = lan.bare("x", ATTACKER);
    let client = lan.bare("c", CLIENT);
    let ps = v
        .launch()
        .open_files(VICTIM_FDS)
        .not_verbose()
        .args(&["--multicast"])
        .start();
    let limit = VICTIM_FDS.to_string();
    assert_eq!(
        ps.open_file_limit(),
        Some((limit.clone(), limit)),
        "the victim does not run with the open-file limit the test set"
    );

    let done = AtomicBool::new(false);
    let most_fds = AtomicUsize::new(0);
    let seen = Mutex::new(Seen::default());
    let mut forger = Forger::new(&lan, &attacker);
    let remote_url = lan.repo.mirror_url(remote);
    thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) && forger.sent < FLOOD_MAX {
                for _ in 0..HELLO_BURST {
                    let (ip, port) = forger.silent_peer();
                    forger.hello(ip, port);
                }
                thread::sleep(FLOOD_PAUSE);
            }
        });
        for i in 0..ASKERS {
            let (done, seen, client, v) = (&done, &seen, &client, &v);
            s.spawn(move || {
                lan::in_netns(&client.ns, || {
                    let mut rng = Rng::seeded();
                    rng.0 ^= i as u64;
                    for _ in 0..ASKS {
                        if done.load(Ordering::SeqCst) {
                            break;
                        }
                        let path = format!("/cache/core/x86_64/{}", random_file(&mut rng));
                        let raw = request_bytes("HEAD", &path, &[]);
                        let what = match exchange_to(v.addr(), &raw, true) {
                            Ok(r) => r.status.to_string(),
                            Err(e) => format!("{:?}", e.kind()),
                        };
                        *seen.lock().unwrap().asks.entry(what).or_default() += 1;
                        thread::sleep(ASK_PAUSE);
                    }
                })
                .expect("a client thread inside C");
            });
        }
        s.spawn(|| {
            for _ in 0..SAMPLES {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                if let Some(n) = ps.open_fds() {
                    most_fds.fetch_max(n, Ordering::SeqCst);
                }
                thread::sleep(SAMPLE_PAUSE);
            }
        });
        // The checks, from C, while all of that goes on.
        let checked = lan::in_netns(&client.ns, || {
            for round in 0..CHECKS {
                thread::sleep(CHECK_PAUSE);
                let mut problems = Vec::new();
                let raw = request_bytes("GET", &kept.request_path(), &[]);
                match exchange_to(v.addr(), &raw, false) {
                    Ok(r) if r.status == 200 && r.body == kept.bytes => {}
                    Ok(r) => problems.push(format!(
                        "round {round}: the cached package: {} with {} bytes",
                        r.status,
                        r.body.len()
                    )),
                    Err(e) => problems.push(format!("round {round}: the cached package: {e}")),
                }
                let raw = request_bytes("GET", &remote.request_path(), &[]);
                match exchange_to(v.addr(), &raw, false) {
                    Ok(r) if r.status == 307 && r.header("location") == Some(&remote_url) => {}
                    Ok(r) => problems.push(format!(
                        "round {round}: the mirror's package: {}",
                        r.head.trim_end()
                    )),
                    Err(e) => problems.push(format!("round {round}: the mirror's package: {e}")),
                }
                let raw = request_bytes("GET", "/status.json", &[]);
                let status = exchange_to(v.addr(), &raw, false)
                    .map_err(|e| e.to_string())
                    .and_then(|r| Json::parse(&r.text()));
                let mut seen = seen.lock().unwrap();
                match status {
                    Ok(j) => {
                        let peers = j.field("peers").as_array().map_or(0, <[Json]>::len);
                        seen.most_peers = seen.most_peers.max(peers);
                    }
                    Err(e) => problems.push(format!("round {round}: /status.json: {e}")),
                }
                seen.problems.extend(problems);
            }
        });
        done.store(true, Ordering::SeqCst);
        checked.expect("the checks ran inside C");
    });

    let seen = seen.into_inner().unwrap();
    let most_fds = most_fds.into_inner();
    let log = ps.log();
    let context = format!(
        "forged hellos: {}; most descriptors: {most_fds}; most peers: {}; random lookups: \
         {:?}\n--- log (tail):\n{}",
        forger.sent,
        seen.most_peers,
        seen.asks,
        tail(&log, 40)
    );
    assert!(
        seen.problems.is_empty(),
        "under the flood:\n{}\n{context}",
        seen.problems.join("\n")
    );
    // The flood did what it should: the table was full of forged peers, and lookups kept
    // connections to them open (each is held until the peer timeout).
    assert!(
        seen.most_peers >= MAX_PEERS / 2,
        "the forged hellos never filled the table\n{context}"
    );
    assert!(
        most_fds > MAX_OUTGOING_CONNECTIONS / 2,
        "the lookups never held many connections to forged peers\n{context}"
    );
    assert!(
        (most_fds as u64) < VICTIM_FDS,
        "the victim ran out of descriptors\n{context}"
    );
    let other: Vec<_> = seen.asks.iter().filter(|(k, _)| *k != "404").collect();
    assert!(
        other.is_empty(),
        "random lookups under the flood were not all answered 404 (no peer has it): \
         {other:?}\n{context}"
    );
    let dead: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("skipping it for a while"))
        .collect();
    assert!(
        dead.is_empty(),
        "the mirror was marked dead: {dead:?}\n{context}"
    );
    // Afterwards, it still answers everything.
    let r = ask_in(&client.ns, v.addr(), "GET", &kept.request_path());
    assert_eq!((r.status, r.body == kept.bytes), (200, true), "{context}");
    let r = ask_in(&client.ns, v.addr(), "GET", "/");
    assert_eq!(r.status, 200, "the status page: {}\n{context}", r.head);
}

/// The last `n` lines of `log`.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A forged peer at an address that refuses connections fails its first lookup and is
/// backed off; hellos from that address with fresh instance ids (what an attacker sends to
/// make a dead address worth asking again) do not reset its failures, and the next failure
/// doubles the backoff.
#[test]
fn fresh_instance_ids_do_not_lift_an_address_backoff() {
    let lan = Lan::new("backoff", 22, &["unused"]);
    let v = lan.host("v", A);
    let attacker = lan.bare("x", ATTACKER);
    let ps = v.start(&["--multicast"]);
    let mut forger = Forger::new(&lan, &attacker);
    // The attacker's own address, where nothing listens: every lookup is refused at once.
    let liar = format!("{}:{PORT}", attacker.ip);
    let mut rng = Rng::seeded();

    let heard = wait_for(DISCOVER_LIMIT, || {
        forger.hello(attacker.ip, PORT);
        ps.wait_peer(&liar, Duration::from_secs(1))
    });
    let p = heard.unwrap_or_else(|| panic!("the forged peer was not added\n{}", ps.log()));
    assert_eq!((p.source.as_str(), p.failures), ("multicast", 0), "{p:?}");

    // A lookup asks it and fails: backed off.
    let path = format!("/cache/core/x86_64/{}", random_file(&mut rng));
    assert_eq!(head_of(&ps, &path).status, 404);
    assert!(
        wait_until(LOG_WAIT, || failure_lines(&ps.log(), &liar).len() == 1),
        "the lookup did not fail on {liar}\n{}",
        ps.log()
    );
    let log = ps.log();
    let first = backoff_secs(failure_lines(&log, &liar)[0]);
    assert_eq!(first, Some(2), "the first backoff\n{log}");
    let p = ps.peer(&liar).expect("still in the table");
    assert_eq!(p.failures, 1, "{p:?}");

    // Hellos with five fresh ids from the same address.
    let before = datagrams_received(&ps);
    for _ in 0..5 {
        forger.hello(attacker.ip, PORT);
    }
    assert!(
        wait_until(LOG_WAIT, || datagrams_received(&ps) >= before + 5),
        "the victim did not receive the hellos\n{}",
        ps.log()
    );
    let p = ps.peer(&liar).expect("still in the table");
    assert_eq!(
        p.failures, 1,
        "a fresh instance id reset the failures of a failing address: {p:?}"
    );
    // Once the backoff is over, the next lookup fails again and the backoff doubles.
    assert!(
        wait_until(Duration::from_secs(10), || ps
            .peer(&liar)
            .is_some_and(|p| p.state != "backed off")),
        "{liar} stayed backed off\n{}",
        ps.log()
    );
    let path = format!("/cache/core/x86_64/{}", random_file(&mut rng));
    assert_eq!(head_of(&ps, &path).status, 404);
    assert!(
        wait_until(LOG_WAIT, || failure_lines(&ps.log(), &liar).len() == 2),
        "the second lookup did not fail on {liar}\n{}",
        ps.log()
    );
    let log = ps.log();
    let second = backoff_secs(failure_lines(&log, &liar)[1]);
    assert_eq!(
        second,
        Some(4),
        "the backoff after the second failure\n{log}"
    );
    let p = ps.peer(&liar).expect("still in the table");
    assert_eq!(p.failures, 2, "{p:?}");
}

/// 256 forged peers that never answered fill the victim's table; a real pacserve started
/// then is still admitted (the forged peer heard from longest ago makes room), and the
/// victim sends pacman to it for what it holds.
#[test]
fn a_full_table_of_silent_peers_still_admits_a_real_one() {
    let lan = Lan::new("full", 23, &["zed"]);
    let zed = lan.pkg("zed");
    let (v, r) = (lan.host("v", A), lan.host("r", N));
    r.hold(zed);
    let attacker = lan.bare("x", ATTACKER);
    let ps = v.start(&["--multicast"]);
    let mut forger = Forger::new(&lan, &attacker);
    let forged: Vec<(Ipv4Addr, u16)> = (0..MAX_PEERS).map(|k| silent_peer(&lan, k)).collect();
    let authority = |(ip, port): &(Ipv4Addr, u16)| format!("{ip}:{port}");

    // The first one alone, so that it is the one heard from longest ago.
    let first = authority(&forged[0]);
    let heard = wait_for(DISCOVER_LIMIT, || {
        forger.hello(forged[0].0, forged[0].1);
        ps.wait_peer(&first, Duration::from_secs(1))
    });
    assert!(heard.is_some(), "{first} was not added\n{}", ps.log());
    // The others; those the kernel may have dropped are sent again (a bounded number of
    // times).
    for _ in 0..3 {
        let known: Vec<String> = ps.peers().into_iter().map(|p| p.address).collect();
        for p in forged.iter().filter(|p| !known.contains(&authority(p))) {
            forger.hello(p.0, p.1);
        }
        if wait_until(Duration::from_secs(5), || ps.peers().len() == MAX_PEERS) {
            break;
        }
    }
    let peers = ps.peers();
    assert_eq!(
        peers.len(),
        MAX_PEERS,
        "the table did not fill\n{}",
        ps.log()
    );
    assert!(
        peers
            .iter()
            .all(|p| p.source == "multicast" && p.state == "unknown"),
        "{peers:?}"
    );

    let ps_r = r.start(&["--multicast"]);
    let admitted = ps.wait_peer(&r.authority(), DISCOVER_LIMIT);
    assert!(
        admitted.is_some(),
        "the real peer was not admitted to the full table\n{}",
        lan.dump(&[&ps, &ps_r])
    );
    let peers = ps.peers();
    assert_eq!(peers.len(), MAX_PEERS, "the table grew past its cap");
    assert!(
        !peers.iter().any(|p| p.address == first),
        "the forged peer heard from longest ago should have made room"
    );
    let resp = head_of(&ps, &zed.request_path());
    assert_eq!(resp.status, 307, "{}\n{}", resp.head, ps.log());
    assert_eq!(
        resp.header("location"),
        Some(r.url(&zed.lan_path()).as_str())
    );
}

/// A hello whose source is on none of the victim's subnets (a forged one: the datagram does
/// arrive, a route to that range is there) is ignored, while one from the LAN is taken; a
/// victim whose inclusive `--multicast-filter` names that address takes it.
#[test]
fn forged_off_subnet_hellos_are_ignored_unless_included() {
    let lan = Lan::new("offnet", 24, &["unused"]);
    let (plain, wide) = (lan.host("a", A), lan.host("b", B));
    let attacker = lan.bare("x", ATTACKER);
    let far = Ipv4Addr::new(10, 99, 0, 7);
    let near = lan.ip(FORGED_FIRST);
    // Reachable through the attacker, as a router would make it: not a subnet of theirs.
    for h in [&plain, &wide] {
        lan::ip_ok(&[
            "-n",
            &h.ns,
            "route",
            "add",
            "10.99.0.0/24",
            "via",
            &attacker.ip.to_string(),
        ]);
    }
    let ps_plain = plain.start(&["--multicast"]);
    let ps_wide = wide.start(&["--multicast", "--multicast-filter", r"i:^10\.99\.0\.7:"]);
    let mut forger = Forger::new(&lan, &attacker);
    let (far_peer, near_peer) = (format!("{far}:{PORT}"), format!("{near}:{PORT}"));
    let off_subnet = format!("peer {far_peer} ignored: not on a subnet of this host");
    let filtered = format!("peer {near_peer} ignored: excluded by --multicast-filter");
    // Each round sends the far hello first: once the near one is in, the far one was read.
    let all_heard = wait_until(DISCOVER_LIMIT, || {
        forger.hello(far, PORT);
        forger.hello(near, PORT);
        thread::sleep(SETTLE);
        ps_plain.peer(&near_peer).is_some()
            && ps_wide.peer(&far_peer).is_some()
            && ps_wide.log().contains(&filtered)
    });
    let dump = || lan.dump(&[&ps_plain, &ps_wide]);
    assert!(
        all_heard,
        "the forged hellos were not all heard\n{}",
        dump()
    );
    assert_eq!(
        ps_plain.peer(&far_peer),
        None,
        "an off-subnet source was added\n{}",
        dump()
    );
    assert!(
        ps_plain.log().contains(&off_subnet),
        "no `{off_subnet}`\n{}",
        dump()
    );
    assert_eq!(ps_wide.peer(&near_peer), None, "{}", dump());
    assert_eq!(
        ps_wide.peer(&far_peer).map(|p| p.source),
        Some("multicast".to_string())
    );
}

/// The victim knows P (a static peer) and hears of N (a new peer, by multicast). Both hold
/// the package; N also has its signature, which would rank it higher. pacman is sent to P:
/// a peer just heard of does not win over one that has answered before.
#[test]
fn a_new_peer_does_not_win_over_a_proven_one() {
    let lan = Lan::new("proven", 25, &["both"]);
    let both = lan.pkg("both");
    let (v, p, n) = (lan.host("v", A), lan.host("p", B), lan.host("n", N));
    p.hold(both);
    n.hold(both);
    n.host.put(
        &both.sig_file(),
        b"a signature, as far as a lookup can tell",
    );
    let ps_p = p.start(&[]);
    let ps_n = n.start(&["--multicast"]);
    let ps_v = v.start(&["--multicast", "--pacserver", &p.authority()]);
    let dump = || lan.dump(&[&ps_v, &ps_p, &ps_n]);
    let found = ps_v.wait_peer(&n.authority(), DISCOVER_LIMIT);
    assert_eq!(
        found.map(|p| (p.source, p.state)),
        Some(("multicast".to_string(), "unknown".to_string())),
        "{}",
        dump()
    );
    let r = ps_v.get(&both.request_path());
    assert_eq!(r.status, 307, "{}\n{}", r.head, dump());
    assert_eq!(
        r.header("location"),
        Some(p.url(&both.lan_path()).as_str()),
        "pacman was not sent to the proven peer\n{}",
        dump()
    );
    // N was asked too, and claimed it: the choice was between the two.
    let claimed =
        ps_n.wait_request(|l| l.from.ip() == v.ip && l.path == both.peer_path() && l.status == 200);
    assert!(claimed.is_some(), "N was not asked\n{}", dump());
}

/// The host's pacman.conf names it as `pacserve-self` (its hosts file says so) in a Server
/// line on its own port: the line is recognised and skipped with a warning, and a miss costs
/// one request, no probe of itself. A HEAD on `/request/` from a pacserve (its User-Agent, or
/// `X-Pacserve-Hop: 1`) for a file this host lacks is 404 from the cache alone: no peer is
/// asked, no mirror probed, though a peer holds it.
#[test]
fn a_name_for_this_host_is_skipped_and_pacserve_requests_never_fan_out() {
    let lan = Lan::new("self", 26, &["held"]);
    let held = lan.pkg("held");
    let (v, p) = (lan.host("v", A), lan.host("p", B));
    let client = lan.bare("c", CLIENT);
    p.hold(held);
    lan.net.hosts_file(
        &v.ns,
        &format!("127.0.0.1 localhost\n{} pacserve-self\n", v.ip),
    );
    let self_server = format!("http://pacserve-self:{PORT}/request/$repo/$arch");
    v.host
        .set_servers(&[self_server.clone(), lan.repo.server()]);
    let ps_p = p.start(&[]);
    let ps_v = v.start(&["--pacserver", &p.authority()]);
    let dump = || lan.dump(&[&ps_v, &ps_p]);
    // pacman.conf's loader puts in the repository's name.
    let warning = format!(
        "[core] Server {}: points at this pacserve, skipped",
        self_server.replace("$repo", "core")
    );
    assert!(
        ps_v.log().contains(&warning),
        "no warning `{warning}`\n{}",
        dump()
    );

    // A miss: one request, answered after one mirror probe; never a request to itself.
    let absent = "/request/core/x86_64/absent-1.0-1-x86_64.pkg.tar.zst";
    let r = ask_in(&client.ns, v.addr(), "GET", absent);
    assert_eq!(r.status, 404, "{}\n{}", r.head, dump());
    assert!(ps_v.wait_request(|l| l.path == absent).is_some());
    thread::sleep(SETTLE);
    let requests = ps_v.requests();
    assert_eq!(
        requests.len(),
        1,
        "a miss made more than one request: {requests:?}\n{}",
        dump()
    );
    assert_eq!(requests[0].from.ip(), client.ip, "{requests:?}");
    let probes = lan
        .mirror()
        .count(|r| r.path == "/core/os/x86_64/absent-1.0-1-x86_64.pkg.tar.zst");
    assert_eq!(probes, 1, "{}", dump());

    // Asked by a pacserve: this cache only.
    let hop_marked = [
        ("a pacserve's User-Agent", "User-Agent: pacserve/x"),
        (
            "X-Pacserve-Hop",
            "User-Agent: pacserve-tests\r\nX-Pacserve-Hop: 1",
        ),
    ];
    for (what, fields) in hop_marked {
        let raw = format!(
            "HEAD {} HTTP/1.1\r\nHost: {}\r\n{fields}\r\nConnection: close\r\n\r\n",
            held.request_path(),
            v.authority()
        );
        let r = exchange_in(&client.ns, v.addr(), raw.as_bytes(), true)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(r.status, 404, "{what}: {}\n{}", r.head, dump());
    }
    thread::sleep(SETTLE);
    let asked_p = |ps: &Pacserve| {
        ps.requests()
            .into_iter()
            .filter(|l| l.path == held.peer_path())
            .count()
    };
    assert_eq!(asked_p(&ps_p), 0, "the peer was asked\n{}", dump());
    assert_eq!(
        lan.mirror_asked(held),
        0,
        "the mirror was probed\n{}",
        dump()
    );
    // The same question from pacman is looked up on the LAN: the peer was there to ask.
    let r = ask_in(&client.ns, v.addr(), "HEAD", &held.request_path());
    assert_eq!(r.status, 307, "{}\n{}", r.head, dump());
    assert_eq!(r.header("location"), Some(p.url(&held.lan_path()).as_str()));
    // Its line is written just after its answer.
    wait_until(LOG_WAIT, || asked_p(&ps_p) >= 1);
    assert_eq!(asked_p(&ps_p), 1, "{}", dump());
}

/// A and B list each other. Each is made to remember that the other holds X, then X is
/// removed from both; following A's redirects ends at the mirror within two pacserve hops.
/// B, asked by A on `/peer/` for a file B believes A holds, forgets that at once (and A
/// likewise); and `/lan/`, where a peer sends pacman, never sends it on to another peer.
#[test]
fn peers_with_stale_answers_cannot_bounce_pacman() {
    let lan = Lan::new("bounce", 27, &["x"]);
    let x = lan.pkg("x");
    let (a, b) = (lan.host("a", A), lan.host("b", B));
    let client = lan.bare("c", CLIENT);
    let ps_a = a.start(&["--pacserver", &b.authority()]);
    let ps_b = b.start(&["--pacserver", &a.authority()]);
    let dump = || lan.dump(&[&ps_a, &ps_b]);
    // How many times `from` has asked `ps` whether it holds X, once at least `n` have.
    let peer_queries = |ps: &Pacserve, from: &LanHost, n: usize| {
        let count = || {
            ps.requests()
                .into_iter()
                .filter(|l| l.from.ip() == from.ip && l.path == x.peer_path())
                .count()
        };
        wait_until(LOG_WAIT, || count() >= n);
        thread::sleep(SETTLE);
        count()
    };
    let mirror_url = lan.repo.mirror_url(x);

    // A remembers "B has X".
    b.hold(x);
    let r = ask_in(&client.ns, a.addr(), "GET", &x.request_path());
    assert_eq!(
        r.header("location"),
        Some(b.url(&x.lan_path()).as_str()),
        "{}",
        dump()
    );
    // B's open-file cache still holds X for a moment after it is removed: wait that out.
    b.drop_file(&x.file);
    a.hold(x);
    thread::sleep(OPEN_CACHE_TTL + SETTLE);
    // B remembers "A has X"; asking A, it made A forget "B has X".
    let r = ask_in(&client.ns, b.addr(), "GET", &x.request_path());
    assert_eq!(
        r.header("location"),
        Some(a.url(&x.lan_path()).as_str()),
        "{}",
        dump()
    );
    assert_eq!(peer_queries(&ps_a, &b, 1), 1, "{}", dump());
    a.drop_file(&x.file);
    thread::sleep(OPEN_CACHE_TTL + SETTLE);

    // Where a peer sends pacman: B lacks X, and sends it to the mirror, not back to A.
    let r = ask_in(&client.ns, b.addr(), "GET", &x.lan_path());
    assert_eq!(r.status, 307, "{}\n{}", r.head, dump());
    assert_eq!(
        r.header("location"),
        Some(mirror_url.as_str()),
        "/lan/ sent pacman on\n{}",
        dump()
    );
    assert_eq!(
        peer_queries(&ps_a, &b, 1),
        1,
        "/lan/ asked a peer\n{}",
        dump()
    );

    // pacman, through A: at most two pacserve hops, then the mirror.
    let (chain, last) = follow(&client.ns, &a.url(&x.request_path()), 10);
    let hops = chain
        .iter()
        .filter(|(u, _)| u.starts_with(&a.url("/")) || u.starts_with(&b.url("/")))
        .count();
    assert!(hops <= 2, "{hops} pacserve hops: {chain:?}\n{}", dump());
    assert_eq!(
        chain.last().map(|(u, s)| (u.as_str(), *s)),
        Some((mirror_url.as_str(), 200)),
        "{chain:?}\n{}",
        dump()
    );
    assert_same_bytes(&last.body, &x.bytes, "X through the redirects");
    // A had forgotten "B has X": it asked B again rather than send pacman there.
    assert_eq!(chain.len(), 2, "A sent pacman to B: {chain:?}\n{}", dump());
    assert_eq!(peer_queries(&ps_b, &a, 2), 2, "{}", dump());
    // B, asked by A, forgot "A has X": its next lookup asks A again.
    let r = ask_in(&client.ns, b.addr(), "GET", &x.request_path());
    assert_eq!(
        r.header("location"),
        Some(mirror_url.as_str()),
        "{}",
        dump()
    );
    assert_eq!(peer_queries(&ps_a, &b, 2), 2, "{}", dump());
}

/// What became of one connection a test holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    /// Nothing came yet: the server holds it.
    Open,
    /// Closed (or reset) without a word.
    Closed,
    /// An answer with this status, then (for a refusal) the close.
    Answered(u16),
}

/// Connections from inside `ns` to `to`, each sending `first` (if not empty) at once.
fn open_in(ns: &str, to: SocketAddr, n: usize, first: &[u8]) -> Vec<TcpStream> {
    lan::in_netns(ns, || {
        (0..n)
            .map(|i| {
                let mut c = RawConn::connect_to(to)
                    .unwrap_or_else(|e| panic!("connection {i} to {to}: {e}"));
                if !first.is_empty() {
                    c.send(first)
                        .unwrap_or_else(|e| panic!("connection {i} to {to}: {e}"));
                }
                c.stream().try_clone().expect("clone the socket")
            })
            .collect()
    })
    .expect("a thread inside the namespace")
}

/// Poll every socket (non-blocking) until `enough` says so or `limit` passes: what became of
/// each.
fn fates(held: &[TcpStream], limit: Duration, enough: impl Fn(&[Fate]) -> bool) -> Vec<Fate> {
    let mut out = vec![Fate::Open; held.len()];
    for s in held {
        s.set_nonblocking(true).expect("non-blocking");
    }
    let deadline = Instant::now() + limit;
    loop {
        for (s, f) in held.iter().zip(out.iter_mut()) {
            if *f != Fate::Open {
                continue;
            }
            let mut buf = [0u8; 1024];
            match (&*s).read(&mut buf) {
                Ok(0) => *f = Fate::Closed,
                Ok(n) => *f = status_of(&buf[..n]).map_or(Fate::Closed, Fate::Answered),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => *f = Fate::Closed,
            }
        }
        if enough(&out) || Instant::now() >= deadline {
            return out;
        }
        thread::sleep(POLL);
    }
}

fn count_of(fates: &[Fate], which: &Fate) -> usize {
    fates.iter().filter(|f| *f == which).count()
}

/// The busy refusals of connections from `from` in `log`, and the counts of the summary
/// lines (`... and N more refused as busy in the last 10 s`).
fn refusal_lines(log: &str, from: Ipv4Addr) -> (usize, Vec<u64>) {
    let lines = log
        .lines()
        .filter_map(LogLine::parse)
        .filter(|l| l.from.ip() == from && l.status == 503 && l.outcome == "busy")
        .count();
    let summaries = log
        .lines()
        .filter_map(|l| l.split("... and ").nth(1)?.strip_suffix(" s"))
        .filter_map(|rest| {
            let (n, _) = rest.split_once(" more refused as busy in the last ")?;
            n.parse().ok()
        })
        .collect();
    (lines, summaries)
}

/// Connections beyond its share that one host opens, silent then busy.
const FLOOD_EXTRA: usize = 16;
const REFUSED: usize = 100;
/// A request head cut short: the connection is busy reading it, not idle.
const HALF_HEAD: &[u8] = b"GET /status.json HTTP/1.1\r\nHost: v\r\nUser-Agent: slow";
/// Time for the server to read the half-sent heads, so that none of those connections is
/// still waiting idle (and so evictable) when more arrive.
const BUSY_SETTLE: Duration = Duration::from_secs(1);
/// How long a refusal may take to arrive.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);

/// Host F opens more idle connections than one source may hold: the oldest are closed to make
/// room, F never holds more than its share, and host C is served meanwhile. With all of F's
/// connections busy (half-sent heads), the excess is refused with 503 (or closed), C is still
/// served, and the refusals are logged a few at a time with a count of the rest.
#[test]
fn one_host_cannot_lock_out_the_others_with_idle_sockets() {
    let lan = Lan::new("idle", 28, &["kept"]);
    let kept = lan.pkg("kept");
    let v = lan.host("v", A);
    v.hold(kept);
    let (flood, client) = (lan.bare("f", ATTACKER), lan.bare("c", CLIENT));
    let ps = v.start(&[]);
    let limit = MAX_CONNECTIONS_PER_SOURCE;
    let served = |what: &str| {
        let r = ask_in(&client.ns, v.addr(), "GET", &kept.request_path());
        assert_eq!(
            (r.status, r.body == kept.bytes),
            (200, true),
            "C {what}: {}\n{}",
            r.head,
            ps.log()
        );
    };

    // Silent connections: each one over the limit closes the one idle the longest.
    let mut idle = open_in(&flood.ns, v.addr(), limit, b"");
    // Let the server see them all waiting before more come.
    thread::sleep(SETTLE);
    idle.extend(open_in(&flood.ns, v.addr(), FLOOD_EXTRA, b""));
    let f = fates(&idle, LOG_WAIT, |f| count_of(f, &Fate::Open) <= limit);
    let open = count_of(&f, &Fate::Open);
    assert!(
        open <= limit,
        "F holds {open} idle connections, more than {limit}: {f:?}\n{}",
        ps.log()
    );
    assert!(
        f.iter()
            .all(|x| matches!(x, Fate::Open | Fate::Closed | Fate::Answered(503))),
        "{f:?}"
    );
    assert_eq!(f.last(), Some(&Fate::Open), "the newest was closed: {f:?}");
    served("beside F's idle connections");
    let mut refused = count_of(&f, &Fate::Answered(503));
    drop(idle);

    // Busy connections: the excess is refused (or closed).
    let started = Instant::now();
    let mut held = open_in(&flood.ns, v.addr(), limit, HALF_HEAD);
    thread::sleep(BUSY_SETTLE);
    held.extend(open_in(&flood.ns, v.addr(), REFUSED, b""));
    let f = fates(&held, LOG_WAIT, |f| {
        f[limit..].iter().all(|x| *x != Fate::Open)
    });
    let elapsed = started.elapsed();
    let open = count_of(&f, &Fate::Open);
    assert!(
        open <= limit,
        "F holds {open} connections, more than {limit}: {f:?}\n{}",
        ps.log()
    );
    served("beside F's busy connections");
    refused += count_of(&f, &Fate::Answered(503));
    assert!(
        refused > LOG_BURST as usize,
        "only {refused} of F's connections were refused: {f:?}\n{}",
        ps.log()
    );
    let (lines, summaries) = refusal_lines(&ps.log(), flood.ip);
    // At most LOG_BURST lines a window, and the refusals spanned this many windows at most.
    let windows = (elapsed.as_secs() / LOG_WINDOW.as_secs() + 1) as usize;
    assert!(
        lines <= LOG_BURST as usize * windows,
        "{lines} lines for {refused} refusals in {elapsed:?}\n{}",
        ps.log()
    );
    drop(held);

    // Once the window is over, the next refusal says how many were left out.
    thread::sleep(LOG_WINDOW + SETTLE);
    let mut held = open_in(&flood.ns, v.addr(), limit, HALF_HEAD);
    thread::sleep(BUSY_SETTLE);
    let mut answered = false;
    for _ in 0..10 {
        let one = open_in(&flood.ns, v.addr(), 1, b"");
        match fates(&one, REFUSAL_WAIT, |f| f[0] != Fate::Open)[0] {
            Fate::Answered(503) => {
                refused += 1;
                answered = true;
                break;
            }
            // Let in (a busy one was still idle and made room): make it busy too.
            Fate::Open => {
                let _ = std::io::Write::write_all(&mut &one[0], HALF_HEAD);
                held.extend(one);
            }
            _ => {}
        }
    }
    assert!(answered, "F was never refused again\n{}", ps.log());
    let summed = wait_for(LOG_WAIT, || {
        let (now_lines, now_summaries) = refusal_lines(&ps.log(), flood.ip);
        (now_summaries.len() > summaries.len()).then_some((now_lines, now_summaries))
    });
    let (lines, summaries) =
        summed.unwrap_or_else(|| panic!("no summary of the refusals left out\n{}", ps.log()));
    let left_out: u64 = summaries.iter().sum();
    assert_eq!(
        lines as u64 + left_out,
        refused as u64,
        "every refusal is a line or counted in a summary\n{}",
        ps.log()
    );
    assert!(
        lines <= LOG_BURST as usize * (windows + 1),
        "{lines} lines for {refused} refusals\n{}",
        ps.log()
    );
}
