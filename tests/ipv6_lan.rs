//! LANs with IPv6: pacserves in Linux network namespaces that have IPv6 only (a unique-local
//! prefix, or link-local addresses and nothing else), or a mix of IPv4-only, IPv6-only and
//! dual-stack hosts, all on one bridge (see `common::lan`, [`Stack`]).
//!
//! Every pacserve listens on its default address (no `--address`: `[::]`, IPv4 as well) and
//! runs `--multicast` with the default groups, IPv4 `239.255.15.78` and IPv6 `ff02::15:78`;
//! what it knows is read from its `/status.json` and `/metrics`, what it served from its log.
//!
//! What the tests show:
//! - IPv6 only, with a unique-local prefix: the hosts find each other at their unique-local
//!   addresses (a hello lists them; the link-local source is not used), bracketed on the
//!   status page and in the metrics; pacman on A gets a package only B holds from B, and the
//!   database from the mirror at its unique-local address.
//! - Link-local only: the hosts find each other at `fe80::I%eth0`; pacman (libcurl, 6.0 and
//!   7.1) on A follows pacserve's redirect to `http://[fe80::I%25eth0]:15678/...` and gets the
//!   package from B; a client on another host is never sent to a link-local peer (the zone
//!   means something only on A).
//! - A host whose IPv6 is off (`disable_ipv6`) listens on `0.0.0.0`, says so in one line,
//!   and serves over IPv4.
//! - Dual stack: an IPv4-only host and an IPv6-only host both find, and are found by, a
//!   dual-stack host, and fetch its status page; on the dual-stack host `127.0.0.1` and `[::1]`
//!   both serve, and pacman there gets one package from each of them.
//! - A shared secret on an IPv6-only LAN: announcements are signed for the link-local
//!   address they leave from and taken; a host with another key is dropped (bad MAC) and
//!   never listed; pacman gets a package through a peer, the lookup authenticated.

mod common;

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, SocketAddrV6};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::lan::{NETNS_PREFIX, Netns, Stack, in_netns, ip};
use common::*;

/// pacserve's HTTP port on every host.
const PORT: u16 = 15678;
/// The mirror's HTTP port.
const MIRROR_PORT: u16 = 8080;
/// How long a running peer may take to be discovered (it announces itself at start).
const DISCOVER_LIMIT: Duration = Duration::from_secs(10);
/// Payload of the test packages.
const PAYLOAD: usize = 4096;

/// One host: its namespace, name and files.
struct V6Host {
    name: String,
    ns: String,
    host: Host,
}

impl V6Host {
    /// pacserve on its default address, port 15678, multicast every 30 s (discovery at start
    /// is what is tested), verbose.
    fn start(&self) -> Pacserve {
        self.host
            .pacserve()
            .name(&format!("pacserve {}", self.name))
            .in_netns(&self.ns)
            .any_address()
            .port(PORT)
            .args(&["--multicast", "--multicast-interval", "30"])
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

/// The test's tag, told apart for each pacman (both run at once).
fn tag(base: &str) -> String {
    match Pacman::current() {
        Pacman::Debian6 => format!("{base}6"),
        Pacman::Arch7 => format!("{base}7"),
    }
}

/// `host` in `net` with `stack`, its files under `repo`.
fn host(net: &Netns, repo: &Repo, name: &str, i: u8, stack: Stack) -> V6Host {
    V6Host {
        name: name.to_string(),
        ns: net.add_host_with(name, i, stack),
        host: repo.host(name),
    }
}

/// Wait (bounded) until `ps` lists `authority` as a peer heard by multicast.
fn assert_discovers(ps: &Pacserve, authority: &str, others: &[&Pacserve]) {
    let found = ps.wait_peer(authority, DISCOVER_LIMIT).unwrap_or_else(|| {
        let mut all = vec![ps];
        all.extend_from_slice(others);
        panic!(
            "{} did not discover {authority} within {DISCOVER_LIMIT:?}; it knows {:?}\n{}",
            ps.name(),
            ps.peers(),
            all.iter().map(|p| p.log()).collect::<Vec<_>>().join("\n")
        )
    });
    assert_eq!(found.source, "multicast", "{found:?}");
}

/// The request line of `d` for `method path` with `status` and `outcome` from the IP `from`.
fn expect_request(d: &Pacserve, from: &str, method: &str, path: &str, status: u16, outcome: &str) {
    let found = d.wait_request(|l| {
        l.from.ip().to_string() == from
            && l.method == method
            && l.path == path
            && l.status == status
            && l.outcome == outcome
    });
    assert!(
        found.is_some(),
        "no `{from} {method} {path} {status} .. {outcome}` line in {}'s log:\n{}",
        d.name(),
        d.log()
    );
}

/// `GET path` to `to`, from inside the namespace `ns`.
fn get_in(ns: &str, to: SocketAddr, path: &str) -> std::io::Result<Response> {
    in_netns(ns, || {
        let mut c = RawConn::connect_to(to)?;
        c.send(&request_bytes("GET", path, &[]))?;
        c.read_response(false)
    })
    .and_then(|r| r)
}

/// The index of `eth0` inside `ns` (`ip -o link` prints `N: eth0@...`).
fn eth0_index(ns: &str) -> u32 {
    let ran = ip(&["-n", ns, "-o", "link", "show", "dev", "eth0"]);
    ran.stdout
        .split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no index of eth0 in {ns}: {}", ran.text()))
}

/// GET requests the mirror had for the path of `pkg` (a HEAD is pacserve asking whether the
/// mirror has it).
fn mirror_asked(repo: &Repo, pkg: &Pkg) -> usize {
    let path = pkg.mirror_path();
    repo.mirror.count(|r| r.method == "GET" && r.path == path)
}

both_pacmans! {
/// IPv6 only (link-local and a unique-local prefix, no IPv4 on any host's interface): A and B
/// find each other at their unique-local addresses, shown bracketed; pacman on A gets X, held
/// only by B, from B, and the database from the mirror at its unique-local address.
fn ipv6_only_lan_shares_at_unique_local_addresses() {
    let tag = tag("v6ula");
    let net = Netns::new(&tag, 41);
    let m_ns = net.add_host_with("m", 100, Stack::Ula);
    let mirror_at: SocketAddr = format!("[{}]:{MIRROR_PORT}", net.ula(100)).parse().unwrap();
    let repo = Repo::served_by(
        &format!("{NETNS_PREFIX}{tag}"),
        &[("sixx", PAYLOAD)],
        |root| Mirror::start_in(&m_ns, mirror_at, root),
    );
    let x = repo.pkg("sixx");
    let a = host(&net, &repo, "a", 11, Stack::Ula);
    let b = host(&net, &repo, "b", 12, Stack::Ula);
    b.host.hold(x);
    let ps_a = a.start();
    let ps_b = b.start();
    assert!(
        ps_a.log().contains(&format!("listening on [::]:{PORT}")),
        "{}",
        ps_a.log()
    );
    let (a_ula, b_ula) = (net.ula(11), net.ula(12));
    let (a_at, b_at) = (format!("[{a_ula}]:{PORT}"), format!("[{b_ula}]:{PORT}"));
    assert_discovers(&ps_a, &b_at, &[&ps_b]);
    assert_discovers(&ps_b, &a_at, &[&ps_a]);
    // One entry per peer, at the address that needs no zone.
    assert_eq!(ps_a.peers().len(), 1, "{:?}", ps_a.peers());
    let up = ps_a
        .metrics()
        .value("pacserve_peer_up", &[("peer", &b_at), ("source", "multicast")]);
    assert!(up.is_some(), "no pacserve_peer_up for {b_at} in A's metrics");

    // The database from the mirror (at its unique-local address), never from B.
    let client = a.local_client();
    let dump = || format!("{}\n{}\n{}", ps_a.log(), ps_b.log(), repo.mirror.dump());
    client.sync().assert_ok("pacman -Sy", &dump());
    expect_request(&ps_a, "127.0.0.1", "GET", "/request/core/x86_64/core.db", 307, "mirror");
    assert!(
        repo.mirror.wait_request(|r| r.from.to_string() == a_ula
            && r.path == "/core/os/x86_64/core.db"
            && r.status == 200),
        "the mirror did not serve core.db to {a_ula}\n{}",
        dump()
    );

    // X from B, asked and fetched over IPv6 at the unique-local addresses.
    client.fetch(x, dump);
    expect_request(&ps_a, "127.0.0.1", "GET", &x.request_path(), 307, "peer");
    expect_request(&ps_b, &a_ula, "HEAD", &x.peer_path(), 200, "local");
    expect_request(&ps_b, &a_ula, "GET", &x.lan_path(), 200, "local");
    assert_eq!(mirror_asked(&repo, x), 0, "the mirror was asked for X\n{}", dump());
}
}

both_pacmans! {
/// Link-local addresses only: A and B find each other at `fe80::I%eth0`. pacman on A is sent
/// to B's link-local address with its zone (`%25eth0`), follows it and gets X from B; a client
/// on B asking A's pacserve for X is sent to the mirror, never to a link-local peer.
fn link_local_only_lan_redirects_pacman_with_the_zone() {
    let tag = tag("v6ll");
    let net = Netns::new(&tag, 42);
    let a_ns = net.add_host_with("a", 11, Stack::LinkLocal);
    // The mirror inside A, on its loopback: B's pacserve never needs one.
    let mirror_at: SocketAddr = format!("127.0.0.1:{MIRROR_PORT}").parse().unwrap();
    let repo = Repo::served_by(
        &format!("{NETNS_PREFIX}{tag}"),
        &[("llx", PAYLOAD)],
        |root| Mirror::start_in(&a_ns, mirror_at, root),
    );
    let x = repo.pkg("llx");
    let a = V6Host {
        name: "a".into(),
        ns: a_ns.clone(),
        host: repo.host("a"),
    };
    let b = host(&net, &repo, "b", 12, Stack::LinkLocal);
    b.host.hold(x);
    let ps_a = a.start();
    let ps_b = b.start();
    let (a_ll, b_ll) = (net.link_local(11), net.link_local(12));
    let b_at = format!("[{b_ll}%eth0]:{PORT}");
    assert_discovers(&ps_a, &b_at, &[&ps_b]);
    assert_discovers(&ps_b, &format!("[{a_ll}%eth0]:{PORT}"), &[&ps_a]);

    let client = a.local_client();
    let dump = || format!("{}\n{}\n{}", ps_a.log(), ps_b.log(), repo.mirror.dump());
    client.sync().assert_ok("pacman -Sy", &dump());

    // Another host's client is never sent to A's link-local peer: it goes to A's mirrors.
    let a_from_b = SocketAddr::V6(SocketAddrV6::new(
        a_ll.parse().unwrap(),
        PORT,
        0,
        eth0_index(&b.ns),
    ));
    let r = get_in(&b.ns, a_from_b, &x.request_path())
        .unwrap_or_else(|e| panic!("GET from B to A at {a_from_b}: {e}\n{}", dump()));
    let location = r.header("location").unwrap_or_default().to_string();
    assert_eq!(r.status, 307, "{}\n{}", r.head, dump());
    assert!(
        location.starts_with(&format!("http://127.0.0.1:{MIRROR_PORT}/")),
        "B's client was sent to {location}, not to the mirror\n{}",
        dump()
    );

    // pacman on A follows the redirect to B's link-local address with its zone.
    let ran = client.fetch(x, dump);
    expect_request(&ps_a, "127.0.0.1", "GET", &x.request_path(), 307, "peer");
    expect_request(&ps_b, &a_ll, "GET", &x.lan_path(), 200, "local");
    assert_eq!(
        mirror_asked(&repo, x),
        0,
        "the mirror was asked for X: pacman did not follow the link-local redirect\n{}\n{}",
        ran.text(),
        dump()
    );
}
}

both_pacmans! {
/// An IPv4-only host F and an IPv6-only host S both find the dual-stack host D and are found
/// by it, and fetch its status page (F and S cannot reach each other and do not list each
/// other); on D, 127.0.0.1 and [::1] both serve, and pacman there gets X from F over IPv4 and
/// Y from S over IPv6.
fn dual_stack_host_reaches_and_serves_both_families() {
    let tag = tag("dual");
    let net = Netns::new(&tag, 43);
    let d_ns = net.add_host_with("d", 10, Stack::Dual);
    let mirror_at: SocketAddr = format!("127.0.0.1:{MIRROR_PORT}").parse().unwrap();
    let repo = Repo::served_by(
        &format!("{NETNS_PREFIX}{tag}"),
        &[("dualx", PAYLOAD), ("dualy", PAYLOAD)],
        |root| Mirror::start_in(&d_ns, mirror_at, root),
    );
    let (x, y) = (repo.pkg("dualx"), repo.pkg("dualy"));
    let d = V6Host {
        name: "d".into(),
        ns: d_ns.clone(),
        host: repo.host("d"),
    };
    let f = host(&net, &repo, "f", 4, Stack::V4Only);
    let s = host(&net, &repo, "s", 6, Stack::Ula);
    f.host.hold(x);
    s.host.hold(y);
    let (ps_d, ps_f, ps_s) = (d.start(), f.start(), s.start());
    let all = [&ps_d, &ps_f, &ps_s];
    let f_at = format!("{}:{PORT}", net.addr(4));
    let s_at = format!("[{}]:{PORT}", net.ula(6));
    let d_v4 = format!("{}:{PORT}", net.addr(10));
    let d_v6 = format!("[{}]:{PORT}", net.ula(10));
    assert_discovers(&ps_d, &f_at, &all);
    assert_discovers(&ps_d, &s_at, &all);
    assert_discovers(&ps_f, &d_v4, &all);
    assert_discovers(&ps_s, &d_v6, &all);
    assert_eq!(ps_d.peers().len(), 2, "{:?}", ps_d.peers());
    assert_eq!(ps_f.peers().len(), 1, "{:?}", ps_f.peers());
    assert_eq!(ps_s.peers().len(), 1, "{:?}", ps_s.peers());

    // Each reaches D's HTTP server over its own family.
    for (ns, to, from) in [
        (&f.ns, d_v4.parse::<SocketAddr>().unwrap(), net.addr(4)),
        (&s.ns, d_v6.parse::<SocketAddr>().unwrap(), net.ula(6)),
    ] {
        let r = get_in(ns, to, "/status.json").unwrap_or_else(|e| panic!("GET {to}: {e}"));
        assert_eq!(r.status, 200, "{}", r.head);
        expect_request(&ps_d, &from, "GET", "/status.json", 200, "status");
    }
    // On D, both loopback addresses serve.
    for to in [format!("127.0.0.1:{PORT}"), format!("[::1]:{PORT}")] {
        let to: SocketAddr = to.parse().unwrap();
        let r = get_in(&d.ns, to, "/status.json").unwrap_or_else(|e| panic!("GET {to}: {e}"));
        assert_eq!(r.status, 200, "{}", r.head);
        expect_request(&ps_d, &to.ip().to_string(), "GET", "/status.json", 200, "status");
    }

    // pacman on D: X from F (IPv4), Y from S (IPv6).
    let client = d.local_client();
    let dump = || all.iter().map(|p| p.log()).collect::<Vec<_>>().join("\n");
    client.sync().assert_ok("pacman -Sy", &dump());
    client.fetch(x, dump);
    client.fetch(y, dump);
    expect_request(&ps_f, &net.addr(10), "GET", &x.lan_path(), 200, "local");
    expect_request(&ps_s, &net.ula(10), "GET", &y.lan_path(), 200, "local");
    assert_eq!(mirror_asked(&repo, x) + mirror_asked(&repo, y), 0, "{}", dump());
}
}

/// A key from `pacserve gen-secret` in `path`, mode 600.
fn write_new_key(path: &Path) {
    let ran = Pacserve::run_to_exit(&["gen-secret"]);
    ran.assert_ok("pacserve gen-secret", "");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(ran.stdout.as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

both_pacmans! {
/// IPv6 only, with a shared secret: A and B (one key) find each other by signed IPv6
/// announcements, each sealed for the link-local address it leaves from; C (another key) is
/// heard, dropped for its MAC and never listed; pacman on A gets X from B.
fn signed_discovery_works_over_ipv6() {
    let tag = tag("v6auth");
    let net = Netns::new(&tag, 46);
    let m_ns = net.add_host_with("m", 100, Stack::Ula);
    let mirror_at: SocketAddr = format!("[{}]:{MIRROR_PORT}", net.ula(100)).parse().unwrap();
    let repo = Repo::served_by(
        &format!("{NETNS_PREFIX}{tag}"),
        &[("authx", PAYLOAD)],
        |root| Mirror::start_in(&m_ns, mirror_at, root),
    );
    let x = repo.pkg("authx");
    let (ours, theirs) = (repo.dir.join("lan.key"), repo.dir.join("other.key"));
    write_new_key(&ours);
    write_new_key(&theirs);
    let start = |h: &V6Host, key: &Path| {
        h.host
            .pacserve()
            .name(&format!("pacserve {}", h.name))
            .in_netns(&h.ns)
            .any_address()
            .port(PORT)
            .args(&["--multicast", "--multicast-interval", "1"])
            .args(&["--secret-file", key.to_str().expect("a UTF-8 path")])
            .start()
    };
    let a = host(&net, &repo, "a", 11, Stack::Ula);
    let b = host(&net, &repo, "b", 12, Stack::Ula);
    let c = host(&net, &repo, "c", 13, Stack::Ula);
    b.host.hold(x);
    let (ps_a, ps_b, ps_c) = (start(&a, &ours), start(&b, &ours), start(&c, &theirs));
    let all = [&ps_a, &ps_b, &ps_c];
    assert_discovers(&ps_a, &format!("[{}]:{PORT}", net.ula(12)), &all);
    assert_discovers(&ps_b, &format!("[{}]:{PORT}", net.ula(11)), &all);
    let auth = |ps: &Pacserve| ps.status_json().field("auth").clone();
    assert!(auth(&ps_a).num("datagrams_taken") > 0, "{:?}", auth(&ps_a));
    let bad_mac = || auth(&ps_a).field("rejected_datagrams").num("bad_mac");
    assert!(
        wait_until(DISCOVER_LIMIT, || bad_mac() >= 2),
        "A did not drop C's datagrams: {:?}",
        auth(&ps_a)
    );
    assert_eq!(auth(&ps_a).field("rejected_datagrams").num("address"), 0);
    assert_eq!(ps_a.peers().len(), 1, "{:?}", ps_a.peers());
    assert_eq!(ps_c.peers().len(), 0, "{:?}", ps_c.peers());

    let client = a.local_client();
    let dump = || all.iter().map(|p| p.log()).collect::<Vec<_>>().join("\n");
    client.sync().assert_ok("pacman -Sy", &dump());
    client.fetch(x, dump);
    expect_request(&ps_a, "127.0.0.1", "GET", &x.request_path(), 307, "peer");
    expect_request(&ps_b, &net.ula(11), "HEAD", &x.peer_path(), 200, "local");
    expect_request(&ps_b, &net.ula(11), "GET", &x.lan_path(), 200, "local");
}
}

/// With IPv6 off in its namespace, pacserve's default listener is `0.0.0.0`, said in one line,
/// and another host reaches it over IPv4.
#[test]
fn without_ipv6_the_default_listener_is_ipv4_with_one_line() {
    let net = Netns::new("v6off", 47);
    let repo = Repo::new(&format!("{NETNS_PREFIX}v6off"), &[("offx", PAYLOAD)]);
    let a = host(&net, &repo, "a", 11, Stack::V4Only);
    let b_ns = net.add_host_with("b", 12, Stack::V4Only);
    let off = run_bounded(
        Command::new("ip").args([
            "netns",
            "exec",
            &a.ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
        ]),
        Duration::from_secs(10),
    );
    assert!(off.success(), "sysctl: {}", off.text());
    let ps = a
        .host
        .pacserve()
        .in_netns(&a.ns)
        .any_address()
        .port(PORT)
        .start();
    let log = ps.log();
    assert!(
        log.contains(&format!("listening on 0.0.0.0:{PORT}")),
        "{log}"
    );
    assert_eq!(ps.lines_with("serving IPv4 only"), 1, "{log}");
    let to: SocketAddr = format!("{}:{PORT}", net.addr(11)).parse().unwrap();
    let r = get_in(&b_ns, to, "/status.json").unwrap_or_else(|e| panic!("GET {to}: {e}"));
    assert_eq!(r.status, 200, "{}", r.head);
}
