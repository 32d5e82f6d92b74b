//! A LAN with a shared secret (`--secret-file`), in network namespaces: hosts A and B hold
//! the key, host C does not and plays the attacker with raw sockets from the test process
//! inside its namespace (any source address, datagrams captured off the wire and sent again).
//!
//! What the tests show:
//! - A and B find each other by signed multicast, and pacman on A gets a package B holds
//!   from B;
//! - C's unsigned hello, a hello signed with another key, one signed (with the LAN's key)
//!   outside the ±120 s window, B's hello captured and sent again from C's address or
//!   verbatim from B's, and a validly signed hello 61 s old sent again are dropped and
//!   counted by reason in `/status.json`; C never gets into A's table and A never sends pacman
//!   there; a forged goodbye for B does not make A forget B;
//! - C gets 403 from A on `/peer/`, `/info`, `/request/`, `/pacman/`, `/cache/`, `/lan/` and
//!   the status routes; loopback, B (a static peer here, whose lookups are signed) and an
//!   `--allow` address do not; a header of another key, for another path, or replayed is
//!   refused; without a secret, `--allow` alone restricts clients;
//! - the key can be changed in four steps (SIGHUP between them) while A and B keep
//!   each other throughout; afterwards a host with the old key only is shut out;
//! - bad key files (readable by others, empty, too short, missing) stop pacserve with a
//!   message naming the file and the fix.
//!
//! The daemon's clock cannot be moved from here, so "the same datagram a minute later" is a
//! datagram whose timestamp the test sets 61 s in the past and signs with the LAN's key.

mod common;

use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::lan::{self, NETNS_PREFIX, RawUdp};
use common::mirror_lan::{Bare, LanHost, MirrorLan, per_pacman};
use common::*;
use pacserve::auth::key::{Key, parse_key};
use pacserve::auth::request::header_value;
use pacserve::peers::discovery::{
    Announce, DEFAULT_GROUP, DEFAULT_PORT, Kind, decode_datagram, encode, encode_signed,
};

/// pacserve's HTTP port on every host.
const PORT: u16 = 15678;
/// Host numbers: the last byte of each host's address.
const A: u8 = 11;
const B: u8 = 12;
const C: u8 = 20;
const D: u8 = 21;
const E: u8 = 13;
/// How long a running peer may take to be discovered, a datagram to be counted, a capture.
const LIMIT: Duration = Duration::from_secs(10);
/// The name of the authentication header.
const AUTH: &str = "X-Pacserve-Auth";

// ---------------------------------------------------------------------------------------------
// The LAN

/// The switch and mirror M serving repo `core`. Fields drop in order: the mirror and the
/// directory first, then the namespaces.
struct Lan {
    base: MirrorLan,
    keys: TempDir,
}

impl std::ops::Deref for Lan {
    type Target = MirrorLan;
    fn deref(&self) -> &MirrorLan {
        &self.base
    }
}

impl Lan {
    fn new(tag: &str, subnet: u8, names: &[&str]) -> Lan {
        let tag = per_pacman(tag);
        let keys = TempDir::new(&format!("{NETNS_PREFIX}{tag}-keys"));
        Lan {
            base: MirrorLan::new(&tag, subnet, names),
            keys,
        }
    }

    /// A key file `name` (mode 600) holding `key`.
    fn key_file(&self, name: &str, key: &str) -> PathBuf {
        let path = self.keys.join(name);
        write_key(&path, key);
        path
    }
}

impl LanHost {
    fn hold(&self, pkg: &Pkg) {
        self.host.hold(pkg);
    }

    fn authority(&self) -> String {
        format!("{}:{PORT}", self.ip)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, PORT))
    }

    /// pacserve inside this host on all addresses, port 15678, verbose, with `extra`.
    fn start(&self, extra: &[&str]) -> Pacserve {
        self.host
            .pacserve()
            .name(&format!("pacserve {}", self.name))
            .in_netns(&self.ns)
            .address("0.0.0.0")
            .port(PORT)
            .args(extra)
            .start()
    }

    /// With multicast every second and the key files `keys` (the first signs).
    fn start_signed(&self, keys: &[&Path]) -> Pacserve {
        let mut args = vec!["--multicast", "--multicast-interval", "1"];
        for k in keys {
            args.extend(["--secret-file", k.to_str().expect("a UTF-8 path")]);
        }
        self.start(&args)
    }

    fn local_client(&self) -> PacmanClient {
        PacmanClient::new(
            "core",
            &[format!("http://127.0.0.1:{PORT}/request/$repo/$arch")],
        )
        .in_netns(&self.ns)
    }
}

/// Write `key` to `path`, made with mode 600 (an existing file keeps its mode).
fn write_key(path: &Path, key: &str) {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(key.as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A new key from `pacserve gen-secret`, which must be 64 hex digits and a newline.
fn gen_secret() -> String {
    let ran = Pacserve::run_to_exit(&["gen-secret"]);
    ran.assert_ok("pacserve gen-secret", "");
    let out = ran.stdout.clone();
    let digits = out.strip_suffix('\n').unwrap_or("");
    assert!(
        digits.len() == 64 && digits.bytes().all(|b| b.is_ascii_hexdigit()),
        "gen-secret printed {out:?}"
    );
    out
}

fn key_of(text: &str) -> Key {
    parse_key(text.as_bytes()).expect("a valid key")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Something that differs from run to run, for nonces and instance ids.
fn fresh() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}

// ---------------------------------------------------------------------------------------------
// What a pacserve says about authentication

/// `/status.json`'s `auth.GROUP.WHY` (GROUP: rejected_datagrams, rejected_requests).
fn refused(ps: &Pacserve, group: &str, why: &str) -> u64 {
    ps.status_json().field("auth").field(group).num(why)
}

fn dropped(ps: &Pacserve, why: &str) -> u64 {
    refused(ps, "rejected_datagrams", why)
}

/// Wait (bounded) until `ps` has dropped `want` datagrams for `why`, then insist on exactly
/// that many.
fn expect_dropped(ps: &Pacserve, why: &str, want: u64, context: &str) {
    wait_until(LIMIT, || dropped(ps, why) >= want);
    let got = dropped(ps, why);
    assert_eq!(
        got,
        want,
        "{} dropped {got} datagrams for {why}, expected {want} ({context})\n{}",
        ps.name(),
        ps.log()
    );
}

fn knows(ps: &Pacserve, peer: &str) -> bool {
    ps.peers().iter().any(|p| p.address == peer)
}

fn knows_host(ps: &Pacserve, ip: Ipv4Addr) -> bool {
    let prefix = format!("{ip}:");
    ps.peers().iter().any(|p| p.address.starts_with(&prefix))
}

fn assert_discovers(ps: &Pacserve, peer: &LanHost, all: &[&Pacserve], lan: &Lan) {
    let found = ps.wait_peer(&peer.authority(), LIMIT);
    let found = found.unwrap_or_else(|| {
        panic!(
            "{} did not discover {} within {LIMIT:?}\n{}",
            ps.name(),
            peer.name,
            lan.dump(all)
        )
    });
    assert_eq!(found.source, "multicast", "{found:?}");
}

// ---------------------------------------------------------------------------------------------
// The attacker's tools

/// Forged datagrams from inside C's namespace, to pacserve's group and port.
struct Forger {
    raw: RawUdp,
}

impl Forger {
    fn new(ns: &str) -> Forger {
        Forger {
            raw: RawUdp::open_in(ns),
        }
    }

    fn send(&self, from: Ipv4Addr, bytes: &[u8]) {
        let group = SocketAddrV4::new(DEFAULT_GROUP, DEFAULT_PORT);
        self.raw
            .send(SocketAddrV4::new(from, DEFAULT_PORT), group, bytes)
            .unwrap_or_else(|e| panic!("forging a datagram from {from}: {e}"));
    }
}

fn announce(kind: Kind, instance: u64) -> Announce {
    Announce {
        kind,
        instance,
        http_port: PORT,
        archs: vec!["x86_64".into()],
        addrs: Vec::new(),
    }
}

/// A socket inside C's namespace that has joined pacserve's group: it hears what B says.
fn sniffer(c: &Bare) -> UdpSocket {
    lan::in_netns(&c.ns, || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT))?;
        s.join_multicast_v4(&DEFAULT_GROUP, &c.ip)?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        Ok::<_, std::io::Error>(s)
    })
    .and_then(|r| r)
    .unwrap_or_else(|e| panic!("a multicast listener in {}: {e}", c.ns))
}

/// The next hello `from` sends, as it came off the wire (bounded).
fn capture_hello(sniffer: &UdpSocket, from: Ipv4Addr) -> Vec<u8> {
    let deadline = Instant::now() + LIMIT;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        let Ok((n, src)) = sniffer.recv_from(&mut buf) else {
            continue;
        };
        let bytes = &buf[..n];
        let hello = decode_datagram(bytes).is_ok_and(|d| d.announce.kind == Kind::Hello);
        if src.ip() == from && hello {
            return bytes.to_vec();
        }
    }
    panic!("no hello from {from} within {LIMIT:?}");
}

// ---------------------------------------------------------------------------------------------
// HTTP from inside a namespace

/// `method path` with `headers` from inside `ns` to `to`.
fn ask_in(
    ns: &str,
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let raw = request_bytes(method, path, headers);
    lan::in_netns(ns, || {
        let mut c = RawConn::connect_to(to)?;
        c.send(&raw)?;
        c.read_response(method == "HEAD")
    })
    .and_then(|r| r)
    .unwrap_or_else(|e| panic!("{method} {path} to {to} from {ns}: {e}"))
}

/// `method path` to `ps` from its own namespace's loopback.
fn ask_local(ps: &Pacserve, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    ps.connect()
        .and_then(|mut c| {
            c.send(&request_bytes(method, path, headers))?;
            c.read_response(method == "HEAD")
        })
        .unwrap_or_else(|e| panic!("{method} {path} to {}: {e}\n{}", ps.name(), ps.log()))
}

// ---------------------------------------------------------------------------------------------
// Tests

both_pacmans! {
/// A and B share a key and find each other; pacman on A gets X from B. C's hellos, forged,
/// replayed or stale, are dropped and counted; C never becomes A's peer, and a forged goodbye
/// does not make A forget B. Pacman on A then gets Y from the mirror, never from C.
fn signed_lan_shares_and_drops_forged_datagrams() {
    let lan = Lan::new("adg", 41, &["authx", "authy"]);
    let (x, y) = (lan.pkg("authx"), lan.pkg("authy"));
    let secret = gen_secret();
    let key_file = lan.key_file("lan.key", &secret);
    let key = key_of(&secret);
    let wrong = key_of(&gen_secret());
    let (a, b, c) = (lan.host("a", A), lan.host("b", B), lan.bare("c", C));
    let listen = sniffer(&c);
    b.hold(x);
    let ps_a = a.start_signed(&[&key_file]);
    let ps_b = b.start_signed(&[&key_file]);
    let all = [&ps_a, &ps_b];
    assert_discovers(&ps_a, &b, &all, &lan);
    assert_discovers(&ps_b, &a, &all, &lan);
    let auth = ps_a.status_json().field("auth").clone();
    assert_eq!(auth.get("lan_authenticated"), Some(&Json::Bool(true)), "{auth:?}");

    // X, held by B only, comes from B.
    let client = a.local_client();
    client.sync().assert_ok("pacman -Sy", &lan.dump(&all));
    client.fetch(x, || lan.dump(&all));
    ps_a.wait_request(|l| l.path == x.request_path() && l.status == 307 && l.outcome == "peer")
        .unwrap_or_else(|| panic!("A did not send pacman to B for X\n{}", lan.dump(&all)));
    ps_b.wait_request(|l| {
        l.from.ip().to_string() == a.ip.to_string() && l.path == x.lan_path() && l.status == 200
    })
    .unwrap_or_else(|| panic!("B did not serve X to A\n{}", lan.dump(&all)));
    for why in ["unsigned", "address", "bad_mac", "window", "replay"] {
        assert_eq!(dropped(&ps_a, why), 0, "before any attack: {why}\n{}", ps_a.log());
    }

    let forger = Forger::new(&c.ns);
    let now = unix_now();
    // C's own hello, unsigned; signed with another key; signed with the LAN's key (which C
    // does not have: this stands for a datagram of a key holder) but outside the window.
    forger.send(c.ip, &encode(&announce(Kind::Hello, fresh())));
    expect_dropped(&ps_a, "unsigned", 1, "C's unsigned hello");
    let hello_c = announce(Kind::Hello, fresh());
    forger.send(c.ip, &encode_signed(&hello_c, now, fresh(), c.ip, &wrong));
    expect_dropped(&ps_a, "bad_mac", 1, "a hello signed with another key");
    forger.send(c.ip, &encode_signed(&hello_c, now - 121, fresh(), c.ip, &key));
    forger.send(c.ip, &encode_signed(&hello_c, now + 200, fresh(), c.ip, &key));
    expect_dropped(&ps_a, "window", 2, "hellos 121 s old and 200 s ahead");

    // B's hello off the wire, sent again at once: from C's address, and from B's.
    let captured = capture_hello(&listen, b.ip);
    forger.send(c.ip, &captured);
    expect_dropped(&ps_a, "address", 1, "B's hello from C's address");
    forger.send(b.ip, &captured);
    expect_dropped(&ps_a, "replay", 1, "B's hello again from B's address");

    // The same a minute later: a hello of B's signed 61 s ago (inside the window) that A
    // took then, sent again now from C's address and from B's.
    let b_instance = decode_datagram(&captured).expect("B's hello").announce.instance;
    let old = encode_signed(&announce(Kind::Hello, b_instance), now - 61, fresh(), b.ip, &key);
    let taken = ps_a.status_json().field("auth").num("datagrams_taken");
    forger.send(b.ip, &old);
    assert!(
        wait_until(LIMIT, || ps_a.status_json().field("auth").num("datagrams_taken") > taken),
        "A did not take B's hello signed 61 s ago\n{}",
        ps_a.log()
    );
    forger.send(c.ip, &old);
    expect_dropped(&ps_a, "address", 2, "B's 61 s old hello from C's address");
    forger.send(b.ip, &old);
    expect_dropped(&ps_a, "replay", 2, "B's 61 s old hello again from B's address");

    // Forged goodbyes for B: unsigned, signed with another key, and B's own hello turned
    // into a goodbye (its MAC no longer fits).
    forger.send(b.ip, &encode(&announce(Kind::Bye, b_instance)));
    expect_dropped(&ps_a, "unsigned", 2, "an unsigned goodbye for B");
    let bye = announce(Kind::Bye, b_instance);
    forger.send(b.ip, &encode_signed(&bye, unix_now(), fresh(), b.ip, &wrong));
    let text = String::from_utf8(captured.clone()).expect("ASCII");
    let turned = text.replacen(" hello ", " bye ", 1);
    assert_ne!(turned, text);
    forger.send(b.ip, turned.as_bytes());
    expect_dropped(&ps_a, "bad_mac", 3, "goodbyes for B signed wrongly");
    assert!(knows(&ps_a, &b.authority()), "A forgot B\n{}", ps_a.log());
    assert_eq!(
        ps_a.lines_with("said goodbye"),
        0,
        "A took a forged goodbye\n{}",
        ps_a.log()
    );

    // Nothing of all that reached the peer table; no other datagram was dropped.
    assert!(!knows_host(&ps_a, c.ip), "C became A's peer: {:?}", ps_a.peers());
    assert_eq!(ps_a.peers().len(), 1, "{:?}", ps_a.peers());
    for (why, n) in [("unsigned", 2), ("address", 2), ("bad_mac", 3), ("window", 2), ("replay", 2)] {
        assert_eq!(dropped(&ps_a, why), n, "{why}\n{}", ps_a.log());
    }
    let metrics = ps_a.metrics();
    assert_eq!(
        metrics.value("pacserve_rejected_datagrams_total", &[("reason", "bad_mac")]),
        Some(3.0)
    );
    assert_eq!(metrics.value("pacserve_lan_authenticated", &[]), Some(1.0));

    // Y, which only the mirror holds: pacman on A is never sent to C, C is never asked.
    client.fetch(y, || lan.dump(&all));
    let line = ps_a
        .wait_request(|l| l.path == y.request_path() && l.status == 307)
        .unwrap_or_else(|| panic!("no request line for Y\n{}", ps_a.log()));
    assert_eq!(line.outcome, "mirror", "{line:?}");
    assert!(
        failure_lines(&ps_a.log(), &format!("{}:{PORT}", c.ip)).is_empty()
            && !ps_a.log().contains(&format!("peer {}:", c.ip)),
        "A dealt with C as a peer\n{}",
        ps_a.log()
    );
}
}

/// Who gets 403 from A (which holds the key and lists D in `--allow`): C on every route, and
/// anyone with a bad header; not loopback, not B (a static peer whose lookups are signed,
/// and which pacman on B then fetches from), not D on the client routes.
#[test]
fn strangers_get_403_and_key_holders_do_not() {
    let lan = Lan::new("a403", 42, &["authp"]);
    let p = lan.pkg("authp");
    let secret = gen_secret();
    let key_file = lan.key_file("lan.key", &secret);
    let key = key_of(&secret);
    let wrong = key_of(&gen_secret());
    let (a, b, c, d) = (
        lan.host("a", A),
        lan.host("b", B),
        lan.bare("c", C),
        lan.bare("d", D),
    );
    a.hold(p);
    let key_arg = key_file.to_str().expect("UTF-8");
    let allow = format!("{}/32", d.ip);
    let ps_a = a.start(&["--secret-file", key_arg, "--allow", &allow]);
    let a_peer = a.authority();
    let ps_b = b.start(&["--secret-file", key_arg, "--pacserver", &a_peer]);
    let all = [&ps_a, &ps_b];

    // C, without a header: 403 everywhere.
    let peer_routes = [p.peer_path(), "/info".to_string()];
    let client_routes = [
        p.request_path(),
        p.on("pacman"),
        p.on("cache"),
        p.lan_path(),
        "/".to_string(),
        "/status.json".to_string(),
        "/metrics".to_string(),
    ];
    for path in peer_routes.iter().chain(&client_routes) {
        let r = ask_in(&c.ns, a.addr(), "GET", path, &[]);
        assert_eq!(r.status, 403, "C: GET {path}\n{}", ps_a.log());
    }
    assert!(
        ps_a.log()
            .contains(&format!("refused {} (not_allowed)", c.ip)),
        "no log line about C\n{}",
        ps_a.log()
    );
    // A header of another key, of the right key for another path, or one seen before.
    let ts = unix_now();
    let sig = header_value(&wrong, "HEAD", &p.peer_path(), ts, fresh());
    let r = ask_in(&c.ns, a.addr(), "HEAD", &p.peer_path(), &[(AUTH, &sig)]);
    assert_eq!(r.status, 403, "another key");
    let sig = header_value(&key, "HEAD", "/info", ts, fresh());
    let r = ask_in(&c.ns, a.addr(), "HEAD", &p.peer_path(), &[(AUTH, &sig)]);
    assert_eq!(r.status, 403, "signed for another path");
    let sig = header_value(&key, "HEAD", &p.peer_path(), ts, fresh());
    let r = ask_local(&ps_a, "HEAD", &p.peer_path(), &[(AUTH, &sig)]);
    assert_eq!(r.status, 200, "a valid header\n{}", ps_a.log());
    let r = ask_local(&ps_a, "HEAD", &p.peer_path(), &[(AUTH, &sig)]);
    assert_eq!(r.status, 403, "the same header again\n{}", ps_a.log());
    let sig = header_value(&key, "HEAD", &p.peer_path(), ts - 200, fresh());
    let r = ask_local(&ps_a, "HEAD", &p.peer_path(), &[(AUTH, &sig)]);
    assert_eq!(r.status, 403, "a header 200 s old\n{}", ps_a.log());

    // Loopback: answered without a header.
    for path in peer_routes.iter().chain(&client_routes) {
        let r = ask_local(&ps_a, "GET", path, &[]);
        assert_ne!(r.status, 403, "loopback: GET {path}\n{}", ps_a.log());
    }
    // D, listed in --allow: the client routes, not the pacserve ones.
    for path in &client_routes {
        let r = ask_in(&d.ns, a.addr(), "GET", path, &[]);
        assert_ne!(r.status, 403, "D: GET {path}\n{}", ps_a.log());
    }
    for path in &peer_routes {
        let r = ask_in(&d.ns, a.addr(), "GET", path, &[]);
        assert_eq!(r.status, 403, "D: GET {path}\n{}", ps_a.log());
    }

    // B's pacserve asks A (a static peer) with a signed lookup and sends pacman there; pacman
    // on B then gets P from A's /lan/.
    let r = ask_local(&ps_b, "HEAD", &p.request_path(), &[]);
    let location = r.header("location").unwrap_or("").to_string();
    assert!(
        r.status == 307 && location == format!("http://{a_peer}{}", p.lan_path()),
        "B did not send pacman to A: {} {location}\n{}",
        r.status,
        lan.dump(&all)
    );
    let got = ask_in(&b.ns, a.addr(), "GET", &p.lan_path(), &[]);
    assert_eq!(got.status, 200, "pacman on B at A\n{}", ps_a.log());
    assert_eq!(got.body, p.bytes, "P from A");
    let r = ask_in(&b.ns, a.addr(), "GET", "/status.json", &[]);
    assert_eq!(r.status, 200, "B, an authenticated peer, on /status.json");
    let auth = ps_a.status_json().field("auth").clone();
    assert!(auth.num("requests_taken") >= 2, "{auth:?}");

    // Counted by reason: 7 client routes by C; /peer/ and /info by C and D.
    let counts = [
        ("not_allowed", 7),
        ("unsigned", 4),
        ("bad_mac", 2),
        ("replay", 1),
        ("window", 1),
    ];
    for (why, n) in counts {
        assert_eq!(
            refused(&ps_a, "rejected_requests", why),
            n,
            "{why}\n{}",
            ps_a.log()
        );
    }
    let metrics = ps_a.metrics();
    assert_eq!(
        metrics.value(
            "pacserve_rejected_requests_total",
            &[("reason", "not_allowed")]
        ),
        Some(7.0)
    );
}

/// Without a secret, `--allow` alone restricts every route to loopback and the ranges.
#[test]
fn allow_without_a_secret_restricts_clients() {
    let lan = Lan::new("aallow", 43, &["autha"]);
    let p = lan.pkg("autha");
    let (a, c, d) = (lan.host("a", A), lan.bare("c", C), lan.bare("d", D));
    a.hold(p);
    let allow = format!("{}/32", d.ip);
    let ps_a = a.start(&["--allow", &allow]);
    for path in [p.request_path(), p.peer_path(), "/".into(), "/info".into()] {
        let r = ask_in(&c.ns, a.addr(), "GET", &path, &[]);
        assert_eq!(r.status, 403, "C: GET {path}");
        let r = ask_in(&d.ns, a.addr(), "GET", &path, &[]);
        assert_ne!(r.status, 403, "D: GET {path}");
        let r = ask_local(&ps_a, "GET", &path, &[]);
        assert_ne!(r.status, 403, "loopback: GET {path}");
    }
    let auth = ps_a.status_json().field("auth").clone();
    assert_eq!(
        auth.get("lan_authenticated"),
        Some(&Json::Bool(false)),
        "{auth:?}"
    );
    assert_eq!(refused(&ps_a, "rejected_requests", "not_allowed"), 4);
    assert!(
        ps_a.log()
            .contains(&format!("refused {} (not_allowed)", c.ip))
    );
}

/// The number of `reloaded the secret files` lines of `ps`, and SIGHUP; waits for one more.
fn reload(ps: &Pacserve, keys: usize) {
    let line = format!("reloaded the secret files: {keys} key(s)");
    let before = ps.lines_with(&line);
    ps.signal(Signal::HUP);
    assert!(
        ps.wait_more_lines(&line, before),
        "{}: no `{line}`\n{}",
        ps.name(),
        ps.log()
    );
}

/// A and B still know each other and take each other's hellos and lookups: each has taken
/// a few more signed datagrams since, dropped none for a bad MAC, and sends a client to the
/// other for a package only the other holds.
fn keep_each_other(step: &str, lan: &Lan, hosts: [(&LanHost, &Pacserve, &Pkg); 2]) {
    let all = [hosts[0].1, hosts[1].1];
    let taken = |ps: &Pacserve| ps.status_json().field("auth").num("datagrams_taken");
    let before: Vec<u64> = all.iter().map(|ps| taken(ps)).collect();
    for (i, ps) in all.iter().enumerate() {
        // Its own hello and the other's, twice over.
        assert!(
            wait_until(LIMIT, || taken(ps) >= before[i] + 4),
            "{step}: {} takes no more datagrams\n{}",
            ps.name(),
            lan.dump(&all)
        );
    }
    for (i, (_, ps, _)) in hosts.iter().enumerate() {
        let (other, _, held) = hosts[1 - i];
        assert_eq!(dropped(ps, "bad_mac"), 0, "{step}\n{}", lan.dump(&all));
        assert!(knows(ps, &other.authority()), "{step}\n{}", lan.dump(&all));
        let r = ask_local(ps, "HEAD", &held.request_path(), &[]);
        assert_eq!(
            (r.status, r.header("location").unwrap_or("").to_string()),
            (
                307,
                format!("http://{}{}", other.authority(), held.lan_path())
            ),
            "{step}: {} did not send a client to {}\n{}",
            ps.name(),
            other.name,
            lan.dump(&all)
        );
    }
}

/// A new key in four steps, SIGHUP between them (each host reads `lan.key`, which signs, and
/// `lan.next.key`): (1) A accepts old and new, signs old, B has only old; (2) B accepts both;
/// (3) A, then B, sign with the new; (4) both drop the old. A and B keep each other at every
/// step; then a host with only the old key is shut out. A broken file on reload keeps the
/// keys in use.
#[test]
fn key_rotation_in_steps_never_splits_the_lan() {
    let names = [
        "rot1", "rot2", "rot3", "rot4", "rot5", "rot6", "rot7", "rot8", "rot9", "rot10", "rot11",
        "rot12", "rot13", "rot14",
    ];
    let lan = Lan::new("arot", 44, &names);
    let (old, new) = (gen_secret(), gen_secret());
    let (a, b) = (lan.host("a", A), lan.host("b", B));
    let files = |h: &str| {
        (
            lan.key_file(&format!("{h}.key"), &old),
            lan.key_file(&format!("{h}.next.key"), &old),
        )
    };
    let (a_key, a_next) = files("a");
    let (b_key, b_next) = files("b");
    let pkgs: Vec<&Pkg> = names.iter().map(|n| lan.pkg(n)).collect();
    for (i, p) in pkgs.iter().enumerate() {
        if i % 2 == 0 { a.hold(p) } else { b.hold(p) }
    }
    let ps_a = a.start_signed(&[&a_key, &a_next]);
    let ps_b = b.start_signed(&[&b_key, &b_next]);
    let all = [&ps_a, &ps_b];
    assert_discovers(&ps_a, &b, &all, &lan);
    assert_discovers(&ps_b, &a, &all, &lan);
    let mut next = pkgs.chunks(2);
    let mut check = |step: &str| {
        let two = next.next().expect("packages for every step");
        keep_each_other(step, &lan, [(&a, &ps_a, two[0]), (&b, &ps_b, two[1])]);
    };
    check("before");

    write_key(&a_next, &new);
    reload(&ps_a, 2);
    check("(1) A accepts both, signs old; B has old");
    write_key(&b_next, &new);
    reload(&ps_b, 2);
    check("(2) B accepts both");
    write_key(&a_key, &new);
    write_key(&a_next, &old);
    reload(&ps_a, 2);
    check("(3a) A signs with the new key");
    write_key(&b_key, &new);
    write_key(&b_next, &old);
    reload(&ps_b, 2);
    check("(3b) B signs with the new key");
    write_key(&a_next, &new);
    reload(&ps_a, 1);
    write_key(&b_next, &new);
    reload(&ps_b, 1);
    check("(4) both dropped the old key");

    // A broken file on reload: the keys in use stay.
    write_key(&a_next, "");
    let broken = ps_a.lines_with("reload failed, keeping the keys in use");
    ps_a.signal(Signal::HUP);
    assert!(ps_a.wait_more_lines("reload failed, keeping the keys in use", broken));
    check("a broken reload");

    // E, with the old key only, is shut out: its hellos are dropped, its lookups refused.
    let e = lan.host("e", E);
    let e_key = lan.key_file("e.key", &old);
    let ps_e = e.start_signed(&[&e_key]);
    wait_until(LIMIT, || dropped(&ps_a, "bad_mac") >= 2);
    assert!(
        dropped(&ps_a, "bad_mac") >= 2,
        "A took E's hellos\n{}",
        ps_a.log()
    );
    wait_until(LIMIT, || dropped(&ps_e, "bad_mac") >= 2);
    assert!(
        dropped(&ps_e, "bad_mac") >= 2,
        "E took the LAN's hellos\n{}",
        ps_e.log()
    );
    assert!(!knows(&ps_a, &e.authority()), "{:?}", ps_a.peers());
    assert!(!knows(&ps_e, &a.authority()), "{:?}", ps_e.peers());
    let sig = header_value(
        &key_of(&old),
        "HEAD",
        &pkgs[0].peer_path(),
        unix_now(),
        fresh(),
    );
    let r = ask_in(
        &e.ns,
        a.addr(),
        "HEAD",
        &pkgs[0].peer_path(),
        &[(AUTH, &sig)],
    );
    assert_eq!(r.status, 403, "a lookup signed with the old key");
    let r = ask_in(&e.ns, a.addr(), "GET", &pkgs[0].request_path(), &[]);
    assert_eq!(r.status, 403, "E as a client");
}

/// Key files pacserve refuses, each with a message naming the file and the fix, exit 1.
#[test]
fn bad_key_files_stop_pacserve_with_a_clear_message() {
    let dir = TempDir::new("auth-keys");
    let cache = dir.mkdir("cache");
    let conf = write_server_conf(dir.path(), &[&cache], &[("core", &[])]);
    let good = gen_secret();
    let cases: &[(&str, &[u8], u32, &str)] = &[
        ("others.key", good.as_bytes(), 0o644, "chmod 600"),
        ("group.key", good.as_bytes(), 0o640, "chmod 600"),
        ("empty.key", b"", 0o600, "empty"),
        ("blank.key", b" \n\n", 0o600, "empty"),
        (
            "short.key",
            b"0123456789abcdef0123456789abcd\n",
            0o600,
            "too short",
        ),
    ];
    let run = |path: &Path| {
        Pacserve::run_to_exit(&[
            "--pacman-conf",
            conf.to_str().expect("UTF-8"),
            "--address",
            "127.0.0.1",
            "--port",
            "0",
            "--secret-file",
            path.to_str().expect("UTF-8"),
        ])
    };
    for (name, bytes, mode, fix) in cases {
        let path = dir.join(name);
        fs::write(&path, bytes).expect("write a key file");
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).expect("chmod");
        let ran = run(&path);
        let text = ran.text();
        assert_eq!(ran.code(), Some(1), "{name}: {text}");
        assert!(
            text.contains(&format!("secret file {}", path.display())) && text.contains(fix),
            "{name}: {text}"
        );
        assert!(!text.contains("listening on"), "{name}: {text}");
    }
    let missing = dir.join("missing.key");
    let ran = run(&missing);
    let text = ran.text();
    assert_eq!(ran.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("secret file {}: no such file", missing.display()))
            && text.contains("pacserve gen-secret"),
        "{text}"
    );
    // Mode 440 is what stat shows of a systemd credential (400 and an ACL for the service's
    // user): taken in $CREDENTIALS_DIRECTORY only; 444 there is still refused.
    let creds = dir.mkdir("credentials");
    let credential = |name: &str, mode: u32| {
        let path = creds.join(name);
        write_key(&path, &good);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    };
    let launch = |path: &Path| {
        Pacserve::builder(&conf)
            .env("CREDENTIALS_DIRECTORY", creds.to_str().expect("UTF-8"))
            .args(&["--secret-file", path.to_str().expect("UTF-8")])
            .try_start()
    };
    let taken = launch(&credential("lan.key", 0o440));
    let ps = taken.unwrap_or_else(|e| panic!("a credential of mode 440: {e}"));
    drop(ps);
    let refused = launch(&credential("open.key", 0o444))
        .err()
        .unwrap_or_default();
    assert!(refused.contains("(mode 444)"), "{refused}");
    let outside = dir.join("outside.key");
    write_key(&outside, &good);
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o440)).expect("chmod");
    let ran = run(&outside);
    assert_eq!(ran.code(), Some(1), "mode 440 outside: {}", ran.text());

    // The same key file, mode 600, is taken.
    let path = dir.join("good.key");
    write_key(&path, &good);
    let ps = Pacserve::start(&conf, &["--secret-file", path.to_str().expect("UTF-8")]);
    let auth = ps.status_json().field("auth").clone();
    assert_eq!(
        auth.get("lan_authenticated"),
        Some(&Json::Bool(true)),
        "{auth:?}"
    );
    assert_eq!(auth.num("keys"), 1);
}
