//! Several pacserves on 127.0.0.1 sharing their caches: static peers, cycles between peers,
//! dead and hung peers and their backoff, signatures, `/info`, merged lookups, and databases
//! that never come from peers.
//!
//! Each test builds its own LAN on loopback: one mirror (a real HTTP server) holding repo `core`
//! made by `repo-add`, and "hosts", each a real pacserve process with its own cache dir and
//! pacman.conf. Where it matters, the real pacman downloads through them. What each pacserve
//! answered is read from its `/status.json`; what it says about failing peers, from its log.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;

/// Payload of the test packages: a few KiB keeps every test quick.
const PAYLOAD: usize = 4096;
/// Longest a gpg or pacman-key run may take.
const GPG_LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// A LAN on loopback

/// A mirror with repo `core` holding `names`, and a directory for the hosts.
fn lan(tag: &str, names: &[&str]) -> Repo {
    let pkgs: Vec<(&str, usize)> = names.iter().map(|n| (*n, PAYLOAD)).collect();
    Repo::new(tag, &pkgs)
}

/// Where pacserve sends pacman when `peer` holds `pkg`.
fn peer_location(peer: &Pacserve, pkg: &Pkg) -> String {
    peer.url(&pkg.lan_path())
}

/// A pacman client whose only server is `ps`.
fn client_of(ps: &Pacserve) -> PacmanClient {
    PacmanClient::new("core", &[ps.url("/request/$repo/$arch")])
}

/// A pacman client whose only server is `ps`, after its first `-Sy`.
fn synced_client(ps: &Pacserve, named: &[&Pacserve], mirror: &Mirror) -> PacmanClient {
    let client = client_of(ps);
    client.sync().assert_ok("-Sy", &logs(named, mirror));
    client
}

fn assert_redirect(r: &Response, want: &str, what: &str, ps: &Pacserve) {
    assert_eq!(r.status, 307, "{what}: {}\n{}", r.head, ps.log());
    assert_eq!(
        r.header("location"),
        Some(want),
        "{what}: wrong Location\n{}",
        ps.log()
    );
}

/// Lookups of `ps` matching `pred`, now.
fn count(ps: &Pacserve, pred: impl Fn(&Lookup) -> bool) -> usize {
    ps.lookups().iter().filter(|l| pred(l)).count()
}

/// Wait (bounded) until at least `at_least` lookups match, give stragglers `SETTLE`, and
/// return how many match then.
fn settled_count(ps: &Pacserve, at_least: usize, pred: impl Fn(&Lookup) -> bool) -> usize {
    let _ = wait_until(LOG_WAIT, || count(ps, &pred) >= at_least);
    thread::sleep(SETTLE);
    count(ps, &pred)
}

/// Start two pacserves that name each other as peers: ports are picked first.
fn start_cycle(a: &Host, b: &Host) -> (Pacserve, Pacserve) {
    with_free_ports(2, |p| {
        let (to_a, to_b) = (format!("127.0.0.1:{}", p[0]), format!("127.0.0.1:{}", p[1]));
        let first = a.pacserve().port(p[0]).args(&["--pacserver", &to_b]);
        let second = b.pacserve().port(p[1]).args(&["--pacserver", &to_a]);
        Ok((first.try_start()?, second.try_start()?))
    })
}

// ---------------------------------------------------------------------------------------------
// Signatures: a throwaway key and a client keyring

/// `gpgconf --homedir DIR --kill all`: ends the gpg-agent that gpg started for that home
/// (and only that one) before its directory goes.
fn kill_agent(home: &Path) {
    let _ = run_bounded(
        Command::new("gpgconf")
            .arg("--homedir")
            .arg(home)
            .args(["--kill", "all"]),
        Duration::from_secs(10),
    );
}

/// A signing key in a private GNUPGHOME.
struct Signer {
    home: PathBuf,
    /// The exported public key, armored.
    public_key: PathBuf,
    /// Holds the home and the key; removed after the agent is gone.
    _dir: TempDir,
}

impl Signer {
    fn new() -> Signer {
        common::preflight::require();
        let dir = TempDir::new("gpg");
        let home = dir.mkdir("home");
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).expect("chmod GNUPGHOME");
        let signer = Signer {
            public_key: dir.join("key.asc"),
            home,
            _dir: dir,
        };
        signer.gpg(&[
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Test <t@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ]);
        let key = signer.public_key.display().to_string();
        signer.gpg(&["--batch", "--armor", "--output", &key, "--export"]);
        signer
    }

    fn gpg(&self, args: &[&str]) {
        let ran = run_bounded(
            Command::new("gpg").args(args).env("GNUPGHOME", &self.home),
            GPG_LIMIT,
        );
        assert!(ran.success(), "gpg {args:?} failed:\n{}", ran.text());
    }

    /// Write `out`: a detached binary signature of `what`.
    fn sign_into(&self, what: &Path, out: &Path) {
        let (what, out) = (what.display().to_string(), out.display().to_string());
        self.gpg(&[
            "--batch",
            "--yes",
            "--detach-sign",
            "--no-armor",
            "-o",
            &out,
            &what,
        ]);
    }

    /// `pkg.sig` next to `pkg`; its bytes.
    fn sign(&self, pkg: &Path) -> Vec<u8> {
        let sig = PathBuf::from(format!("{}.sig", pkg.display()));
        self.sign_into(pkg, &sig);
        fs::read(&sig).expect("read signature")
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        kill_agent(&self.home);
    }
}

/// Ends the gpg-agent of a client's keyring on drop.
struct AgentGuard(PathBuf);

impl Drop for AgentGuard {
    fn drop(&mut self) {
        kill_agent(&self.0);
    }
}

/// Make `client` demand package signatures and trust `signer`'s key: its own keyring, made
/// by pacman-key.
fn require_signatures(client: &PacmanClient, signer: &Signer) -> AgentGuard {
    let conf_path = client.conf_path();
    let conf = fs::read_to_string(conf_path).expect("read client pacman.conf");
    assert!(
        conf.contains("SigLevel = Never\n"),
        "unexpected client conf:\n{conf}"
    );
    let conf = conf.replace(
        "SigLevel = Never\n",
        "SigLevel = Required DatabaseOptional TrustAll\n",
    );
    fs::write(conf_path, &conf).expect("write client pacman.conf");
    let gpgdir = client.gpg_dir().to_path_buf();
    let guard = AgentGuard(gpgdir.clone());
    for step in [
        vec!["--init".to_string()],
        vec!["--add".to_string(), signer.public_key.display().to_string()],
    ] {
        let ran = run_bounded(
            Command::new("pacman-key")
                .arg("--config")
                .arg(conf_path)
                .arg("--gpgdir")
                .arg(&gpgdir)
                .args(&step)
                .env("LC_ALL", "C"),
            GPG_LIMIT,
        );
        assert!(ran.success(), "pacman-key {step:?} failed:\n{}", ran.text());
    }
    guard
}

// ---------------------------------------------------------------------------------------------
// 1. A static peer

both_pacmans! {
fn static_peer_serves_pacman_while_the_db_comes_from_the_mirror() {
    let lan = lan("static", &["sharedpkg"]);
    let x = lan.pkg("sharedpkg");
    let host_a = lan.host("a");
    host_a.hold(x);
    let a = host_a.start(&[]);
    let b = lan.host("b").start(&["--pacserver", &a.authority()]);
    let named = [&a, &b];

    let client = synced_client(&b, &named, &lan.mirror);
    client.fetch(x, || logs(&named, &lan.mirror));
    // The package came from A's cache...
    let line = a.expect_lookup("GET", &x.lan_path(), 200);
    assert_eq!(line.outcome, "local");
    assert_eq!(line.bytes, x.bytes.len() as u64);
    let asked = a.expect_lookup("HEAD", &x.peer_path(), 200);
    assert_eq!(asked.outcome, "local");
    // ... because B sent pacman there ...
    assert_eq!(
        b.expect_lookup("GET", &x.request_path(), 307).outcome,
        "peer"
    );
    let r = get(b.port(), &x.request_path());
    assert_redirect(&r, &peer_location(&a, x), "B's answer", &b);
    // ... and the mirror was never involved.
    lan.mirror.assert_served(&x.file, 0);
    lan.mirror.assert_asked(&x.file, 0);

    // The database came from the mirror; A never heard of it.
    lan.mirror.assert_served("/core/os/x86_64/core.db", 1);
    assert_eq!(
        b.expect_lookup("GET", "/request/core/x86_64/core.db", 307)
            .outcome,
        "mirror"
    );
    thread::sleep(SETTLE);
    let db_lines = count(&a, |l| l.path.contains(".db") || l.path.contains(".files"));
    assert_eq!(db_lines, 0, "A was asked about a database:\n{}", a.log());
}
}

// ---------------------------------------------------------------------------------------------
// 2. Peers naming each other

both_pacmans! {
fn peers_naming_each_other_never_recurse() {
    let lan = lan("cycle", &["looppkg"]);
    let x = lan.pkg("looppkg");
    let (host_a, host_b) = (lan.host("a"), lan.host("b"));
    let (a, b) = start_cycle(&host_a, &host_b);
    let named = [&a, &b];

    // A asks B; B answers from its own cache only (a miss) and does not ask A back.
    let r = get(a.port(), &x.request_path());
    assert_redirect(&r, &lan.mirror_url(x), "A's answer", &a);
    assert_eq!(
        a.expect_lookup("GET", &x.request_path(), 307).outcome,
        "mirror"
    );
    let query = b.expect_lookup("HEAD", &x.peer_path(), 404);
    assert_eq!(query.outcome, "miss");
    let b_peer = settled_count(&b, 1, |l| l.path.starts_with("/peer/"));
    assert_eq!(b_peer, 1, "B was queried more than once:\n{}", b.log());
    let b_request = count(&b, |l| l.path.starts_with("/request/"));
    assert_eq!(b_request, 0, "A sent a /request/ to B:\n{}", b.log());
    let a_peer = count(&a, |l| l.path.starts_with("/peer/"));
    assert_eq!(a_peer, 0, "B recursed back to A:\n{}", a.log());

    // The other way round: B asks A once, and A does not ask B back.
    let r = get(b.port(), &x.request_path());
    assert_redirect(&r, &lan.mirror_url(x), "B's answer", &b);
    assert_eq!(a.expect_lookup("HEAD", &x.peer_path(), 404).outcome, "miss");
    let a_peer = settled_count(&a, 1, |l| l.path.starts_with("/peer/"));
    assert_eq!(a_peer, 1, "A was queried more than once:\n{}", a.log());
    let b_peer = count(&b, |l| l.path.starts_with("/peer/"));
    assert_eq!(b_peer, 1, "A recursed back to B:\n{}", b.log());

    // The real pacman through A gets the package from the mirror.
    let client = synced_client(&a, &named, &lan.mirror);
    client.fetch(x, || logs(&named, &lan.mirror));
    lan.mirror.assert_served(&x.mirror_path(), 1);
    thread::sleep(SETTLE);
    // Whatever A asked B during pacman's run, B only ever answered on its peer route, and
    // databases never went to B.
    let b_request = count(&b, |l| l.path.starts_with("/request/"));
    assert_eq!(b_request, 1, "B saw /request/s besides ours:\n{}", b.log());
    let b_db = count(&b, |l| l.path.contains(".db"));
    assert_eq!(b_db, 0, "A asked B about a database:\n{}", b.log());
    let a_peer = count(&a, |l| l.path.starts_with("/peer/"));
    assert_eq!(
        a_peer,
        1,
        "B recursed to A during pacman's run:\n{}",
        a.log()
    );
}
}

// ---------------------------------------------------------------------------------------------
// 3. A dead peer

both_pacmans! {
fn dead_peer_is_backed_off_and_the_live_one_serves() {
    let lan = lan("dead", &["livepkg", "otherpkg"]);
    let (x, y) = (lan.pkg("livepkg"), lan.pkg("otherpkg"));
    let host_live = lan.host("live");
    host_live.hold(x);
    host_live.hold(y);
    let live = host_live.start(&[]);
    let dead = dead_port();
    let dead_peer = dead.authority();
    let b = lan
        .host("b")
        .start(&["--pacserver", &dead_peer, "--pacserver", &live.authority()]);
    let named = [&live, &b];

    let r = get(b.port(), &x.request_path());
    assert_redirect(&r, &peer_location(&live, x), "first lookup", &b);
    assert!(
        b.wait_log(&format!("peer {dead_peer} failed"), LOG_WAIT),
        "no failure logged for the dead peer:\n{}",
        b.log()
    );
    // Within the backoff, another lookup leaves the dead peer alone.
    let r = get(b.port(), &y.request_path());
    assert_redirect(&r, &peer_location(&live, y), "second lookup", &b);
    assert_eq!(
        live.expect_lookup("HEAD", &y.peer_path(), 200).outcome,
        "local"
    );
    thread::sleep(SETTLE);
    let log = b.log();
    let failures = failure_lines(&log, &dead_peer);
    assert_eq!(
        failures.len(),
        1,
        "the dead peer was asked again within its backoff:\n{}",
        b.log()
    );
    assert_eq!(
        backoff_secs(failures[0]),
        Some(2),
        "first backoff: {}",
        failures[0]
    );
    lan.mirror.assert_asked(&x.file, 0);
    lan.mirror.assert_asked(&y.file, 0);

    // pacman downloads through B, from the live peer.
    let client = synced_client(&b, &named, &lan.mirror);
    client.fetch(x, || logs(&named, &lan.mirror));
    assert_eq!(
        live.expect_lookup("GET", &x.lan_path(), 200).outcome,
        "local"
    );
    lan.mirror.assert_served(&x.file, 0);

    // Once the backoff is over the dead peer is tried again, and its next wait doubles.
    // Fresh names each round, so no remembered answer stands in for a lookup.
    for i in 0..100 {
        if failure_lines(&b.log(), &dead_peer).len() >= 2 {
            break;
        }
        let ghost = format!("/request/core/x86_64/ghost{i}-1.0-1-x86_64.pkg.tar.zst");
        assert_eq!(get(b.port(), &ghost).status, 404, "{}", b.log());
        thread::sleep(Duration::from_millis(100));
    }
    let log = b.log();
    let failures = failure_lines(&log, &dead_peer);
    assert!(
        failures.len() >= 2,
        "the dead peer was never retried:\n{}",
        b.log()
    );
    assert_eq!(
        backoff_secs(failures[1]),
        Some(4),
        "second backoff: {}",
        failures[1]
    );
    // Last, so the behaviour above is checked first: the wait reads as a plain duration.
    for l in &failures[..2] {
        assert!(!l.contains("Some("), "the log shows an Option: {l}");
    }
}
}

// ---------------------------------------------------------------------------------------------
// 4. A hung peer

both_pacmans! {
fn hung_peer_times_out_and_is_not_asked_again_during_backoff() {
    let lan = lan("hung", &["mirrorpkg", "more1", "more2", "more3"]);
    let x = lan.pkg("mirrorpkg");
    let hung = HungServer::start();
    let hung_peer = hung.authority();
    let b = lan
        .host("b")
        .start(&["--pacserver", &hung_peer, "--peer-timeout", "0.5"]);
    let named = [&b];

    let r = get(b.port(), &x.request_path());
    assert_redirect(&r, &lan.mirror_url(x), "lookup past a hung peer", &b);
    assert_eq!(
        b.expect_lookup("GET", &x.request_path(), 307).outcome,
        "mirror"
    );
    // The accept thread counts just after the kernel's handshake; give it a moment.
    for _ in 0..100 {
        if hung.accepted() >= 1 {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        hung.accepted(),
        1,
        "the hung peer was not asked exactly once"
    );

    for name in ["more1", "more2", "more3"] {
        let p = lan.pkg(name);
        let r = get(b.port(), &p.request_path());
        assert_redirect(&r, &lan.mirror_url(p), name, &b);
    }
    assert_eq!(
        hung.accepted(),
        1,
        "the hung peer was asked again within its backoff:\n{}",
        b.log()
    );
    let log = b.log();
    assert_eq!(failure_lines(&log, &hung_peer).len(), 1, "{log}");

    let client = synced_client(&b, &named, &lan.mirror);
    client.fetch(x, || logs(&named, &lan.mirror));
    lan.mirror.assert_served(&x.mirror_path(), 1);
}
}

// ---------------------------------------------------------------------------------------------
// 5. Signatures

/// A LAN whose packages are signed after `repo-add` (the db carries no signatures), with the
/// `.sig` files next to the packages on the mirror.
fn signed_lan(tag: &str, names: &[&str], signer: &Signer) -> (Repo, BTreeMap<String, Vec<u8>>) {
    let lan = lan(tag, names);
    let sigs = lan
        .pkgs
        .iter()
        .map(|p| (p.name.clone(), signer.sign(&p.path)))
        .collect();
    (lan, sigs)
}

#[test]
fn peer_with_the_signature_is_preferred() {
    let signer = Signer::new();
    // Several packages, each a fresh lookup: a daemon that took whichever peer answered first
    // would pick the right one for all of them only by a run of luck.
    let names: Vec<String> = (1..=10).map(|i| format!("sig{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (lan, sigs) = signed_lan("sigprefer", &names, &signer);
    let (h1, h2) = (lan.host("p1"), lan.host("p2"));
    let (p1, p2) = (h1.start(&[]), h2.start(&[]));
    // Peers are asked in address order, so the one without signatures gets the lower port:
    // it is asked first and (on loopback) usually answers first, and must still lose.
    let ((bare, bare_host), (signed, signed_host)) = if p1.port() < p2.port() {
        ((&p1, &h1), (&p2, &h2))
    } else {
        ((&p2, &h2), (&p1, &h1))
    };
    for p in &lan.pkgs {
        bare_host.hold(p);
        signed_host.hold(p);
        signed_host.put(&p.sig_file(), &sigs[&p.name]);
    }
    let b = lan.host("b").start(&[
        "--pacserver",
        &bare.authority(),
        "--pacserver",
        &signed.authority(),
    ]);

    // The peer route says who holds the signature.
    let first = &lan.pkgs[0];
    let h = head(signed.port(), &first.peer_path());
    assert_eq!(h.status, 200, "{}", h.head);
    assert_eq!(h.header("x-pacserve-sig"), Some("yes"), "{}", h.head);
    let h = head(bare.port(), &first.peer_path());
    assert_eq!(h.status, 200, "{}", h.head);
    assert_eq!(h.header("x-pacserve-sig"), Some("no"), "{}", h.head);

    // Each package is a fresh lookup; every one must go to the peer with the signature.
    for p in &lan.pkgs {
        let r = get(b.port(), &p.request_path());
        assert_redirect(&r, &peer_location(signed, p), &p.name, &b);
    }
    for p in &lan.pkgs {
        assert_eq!(
            b.expect_lookup("GET", &p.request_path(), 307).outcome,
            "peer"
        );
    }
    // Peers held everything: the mirror was never even probed.
    assert!(lan.mirror.requests().is_empty(), "{}", lan.mirror.dump());
}

both_pacmans! {
fn pacman_verifies_a_package_from_a_peer_without_its_signature() {
    let signer = Signer::new();
    let (lan, sigs) = signed_lan("sigverify", &["goodpkg", "badsigpkg"], &signer);
    let (good, bad) = (lan.pkg("goodpkg"), lan.pkg("badsigpkg"));
    // The control: the mirror's signature for badsigpkg is of some other file.
    let other = lan.dir.join("other");
    fs::write(&other, b"not the package").expect("write other");
    signer.sign_into(
        &other,
        &PathBuf::from(format!("{}.sig", bad.path.display())),
    );

    let host_p1 = lan.host("p1");
    host_p1.hold(good);
    host_p1.hold(bad);
    let p1 = host_p1.start(&[]);
    let b = lan.host("b").start(&["--pacserver", &p1.authority()]);
    let named = [&p1, &b];

    let client = client_of(&b);
    let _agent = require_signatures(&client, &signer);
    client
        .sync()
        .assert_ok("-Sy via B", &logs(&named, &lan.mirror));
    let ran = client.fetch(good, || logs(&named, &lan.mirror));
    assert!(
        ran.text().contains("checking package integrity"),
        "pacman did not check the package:\n{}",
        ran.text()
    );
    assert!(
        !ran.text().to_lowercase().contains("signature"),
        "signature trouble:\n{}",
        ran.text()
    );
    assert_eq!(
        client.cached(&good.sig_file()).as_deref(),
        Some(&sigs[&good.name][..])
    );

    // The package came from P1, its signature from the mirror by way of P1.
    assert_eq!(
        b.expect_lookup("GET", &good.request_path(), 307).outcome,
        "peer"
    );
    assert_eq!(
        p1.expect_lookup("GET", &good.lan_path(), 200).outcome,
        "local"
    );
    let sig_path = format!("{}.sig", good.lan_path());
    assert_eq!(p1.expect_lookup("GET", &sig_path, 307).outcome, "mirror");
    lan.mirror
        .assert_served(&format!("{}.sig", good.mirror_path()), 1);
    lan.mirror.assert_asked(&good.file, 0);

    // The same path with a wrong signature fails: the verification above was real.
    let ran = client.download(&bad.name);
    assert!(
        !ran.success() && !ran.timed_out,
        "pacman accepted a bad signature:\n{}\n{}",
        ran.text(),
        logs(&named, &lan.mirror)
    );
    assert!(
        ran.text().contains("PGP signature"),
        "not a signature failure:\n{}",
        ran.text()
    );
    assert_eq!(
        b.expect_lookup("GET", &bad.request_path(), 307).outcome,
        "peer"
    );
    lan.mirror
        .assert_served(&format!("{}.sig", bad.mirror_path()), 1);
}
}

// ---------------------------------------------------------------------------------------------
// 6. /info

fn info_body(ps: &Pacserve) -> String {
    let r = get(ps.port(), "/info");
    assert_eq!(r.status, 200, "{}", r.head);
    String::from_utf8(r.body).expect("/info is text")
}

fn expected_info(entries: &BTreeMap<String, usize>) -> String {
    let mut s = String::from("# pacserve info 1: NAME SIZE\n");
    for (name, size) in entries {
        s.push_str(&format!("{name} {size}\n"));
    }
    s
}

#[test]
fn info_lists_exactly_the_package_files() {
    let lan = lan("info", &["infoa", "infob"]);
    let (a, b) = (lan.pkg("infoa"), lan.pkg("infob"));
    let host = lan.host("h");
    host.hold(a);
    host.hold(b);
    host.put(&b.sig_file(), &[7u8; 119]);
    // Not packages, or not complete ones.
    host.put("infoc-1.0-1-x86_64.pkg.tar.zst.part", &[1u8; 1234]);
    host.put("notes.txt", b"hello");
    host.put("core.db", b"database");
    host.put("empty-1.0-1-x86_64.pkg.tar.zst", b"");
    fs::create_dir(host.cache.join("download-x1")).expect("mkdir download dir");
    fs::write(
        host.cache
            .join("download-x1/infod-1.0-1-x86_64.pkg.tar.zst"),
        b"in flight",
    )
    .expect("write into download dir");
    let ps = host.start(&[]);

    let mut want = BTreeMap::new();
    want.insert(a.file.clone(), a.bytes.len());
    want.insert(b.file.clone(), b.bytes.len());
    want.insert(b.sig_file(), 119);
    let body = info_body(&ps);
    assert_eq!(body, expected_info(&want));
    let names: Vec<&str> = body
        .lines()
        .skip(1)
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "not sorted:\n{body}");
    // The sizes are the files' sizes on disk.
    for l in body.lines().skip(1) {
        let (name, size) = l.split_once(' ').expect("NAME SIZE");
        let on_disk = fs::metadata(host.cache.join(name))
            .expect("listed file exists")
            .len();
        assert_eq!(size.parse::<u64>().ok(), Some(on_disk), "{l}");
    }

    // A package that arrives later is listed on the next request.
    let newer = "aaa-2.0-1-x86_64.pkg.tar.zst";
    host.put(newer, &[3u8; 321]);
    want.insert(newer.to_string(), 321);
    assert_eq!(info_body(&ps), expected_info(&want));
}

// ---------------------------------------------------------------------------------------------
// 7. A burst of identical lookups

#[test]
fn a_burst_of_identical_lookups_costs_one_query() {
    const BURST: usize = 20;
    let lan = lan("burst", &["burstpkg"]);
    let x = lan.pkg("burstpkg");
    let host_p = lan.host("p");
    host_p.hold(x);
    let p = host_p.start(&[]);
    let b = lan.host("b").start(&["--pacserver", &p.authority()]);

    let start = Arc::new(Barrier::new(BURST));
    let port = b.port();
    let threads: Vec<_> = (0..BURST)
        .map(|_| {
            let (start, path) = (start.clone(), x.request_path());
            thread::spawn(move || {
                start.wait();
                get(port, &path)
            })
        })
        .collect();
    let want = peer_location(&p, x);
    for t in threads {
        let r = t.join().expect("a burst request failed");
        assert_redirect(&r, &want, "burst", &b);
    }
    let answered = settled_count(&b, BURST, |l| {
        l.path == x.request_path() && l.status == 307 && l.outcome == "peer"
    });
    assert_eq!(answered, BURST, "{}", b.log());
    let queries = settled_count(&p, 1, |l| l.path == x.peer_path());
    assert_eq!(queries, 1, "P was asked more than once:\n{}", p.log());
    assert_eq!(
        p.expect_lookup("HEAD", &x.peer_path(), 200).outcome,
        "local"
    );
    lan.mirror.assert_asked(&x.file, 0);
}

// ---------------------------------------------------------------------------------------------
// 8. Databases never come from peers

#[test]
fn databases_are_never_taken_from_peers() {
    let lan = lan("dbpeer", &["dbpeerpkg"]);
    let x = lan.pkg("dbpeerpkg");
    let host_a = lan.host("a");
    let db_files = ["core.db", "core.db.sig", "core.files", "core.db.tar.gz"];
    for f in db_files {
        host_a.put(f, b"a stale database in A's cache");
    }
    host_a.hold(x);
    let a = host_a.start(&[]);
    let b = lan.host("b").start(&["--pacserver", &a.authority()]);

    for f in db_files {
        let r = get(b.port(), &format!("/request/core/x86_64/{f}"));
        assert_redirect(&r, &lan.mirror.url(&format!("/core/os/x86_64/{f}")), f, &b);
    }
    thread::sleep(SETTLE);
    assert!(
        a.lookups().is_empty(),
        "B asked A about databases:\n{}",
        a.log()
    );

    // A's peer route refuses databases even though it holds them...
    for f in db_files {
        let path = format!("/peer/core/x86_64/{f}");
        assert_eq!(head(a.port(), &path).status, 404, "HEAD {path}");
        let r = get(a.port(), &path);
        assert_eq!(r.status, 404, "GET {path}");
        assert!(!contains_bytes(&r.body, b"stale database"));
    }
    // ... and B does ask A about packages, so A's silence above was B's choice.
    let r = get(b.port(), &x.request_path());
    assert_redirect(&r, &peer_location(&a, x), "package", &b);
    assert_eq!(
        a.expect_lookup("HEAD", &x.peer_path(), 200).outcome,
        "local"
    );
}

/// A peer without the `.sig` has the package and another peer hangs: the hit must not wait
/// for the hung peer's whole timeout (60 s here, far beyond the client's 15 s I/O limit).
#[test]
fn a_hung_peer_does_not_hold_up_a_hit_without_signature() {
    let lan = lan("sig-grace", &["nosig"]);
    let x = lan.pkg("nosig");
    let holder_host = lan.host("holder");
    holder_host.hold(x);
    let holder = holder_host.start(&[]);
    let hung = HungServer::start();
    let hung_peer = hung.authority();
    let b = lan.host("b").start(&[
        "--pacserver",
        &hung_peer,
        "--pacserver",
        &holder.authority(),
        "--peer-timeout",
        "60",
    ]);
    let r = get(b.port(), &x.request_path());
    assert_redirect(&r, &peer_location(&holder, x), "hit beside a hung peer", &b);
    assert_eq!(
        b.expect_lookup("GET", &x.request_path(), 307).outcome,
        "peer"
    );
    lan.mirror.assert_asked(&x.mirror_path(), 0);
}
