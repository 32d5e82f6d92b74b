//! pacserve as a daemon: SIGHUP reloads pacman.conf without dropping connections (and keeps
//! the old configuration when the new one is broken), SIGTERM and SIGINT drain downloads in
//! flight and exit 0, and systemd's readiness protocol (`NOTIFY_SOCKET`, path and abstract).
//!
//! What is tested here is mostly what the daemon says: its `reloaded`, `reload failed`,
//! `stopping` and warning lines, and its sd_notify datagrams.

mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

/// How long a notification datagram may take to arrive.
const NOTIFY_WAIT: Duration = Duration::from_secs(10);
/// Longest the daemon may take to exit after SIGTERM/SIGINT: its drain limit
/// (`DRAIN_TIMEOUT`, 30 s) plus room.
const EXIT_WAIT: Duration = Duration::from_secs(40);
/// Overall deadline for reading the rest of the large body after SIGTERM; well within the
/// daemon's 30 s drain, and loopback moves 64 MiB in well under a second.
const BODY_WAIT: Duration = Duration::from_secs(25);
/// Size of the package that is downloaded across SIGTERM: far larger than the loopback
/// socket buffers, so a daemon that exits early cannot hide behind them.
const BIG_PAYLOAD: usize = 64 * 1024 * 1024;
/// Payload of the small test packages.
const PAYLOAD: usize = 100_000;
/// The states of sd_notify(3) this daemon sends; other assignments are ignored.
const STATES: [&str; 3] = ["READY=1", "RELOADING=1", "STOPPING=1"];

// ---------------------------------------------------------------------------------------------
// A world: repos `core` and `extra`, each with a mirror and a cache dir holding its package

/// Fields drop in order: mirrors first, the directory they serve last.
struct World {
    core_mirror: Mirror,
    extra_mirror: Mirror,
    core_cache: PathBuf,
    extra_cache: PathBuf,
    core_pkg: Pkg,
    extra_pkg: Pkg,
    dir: TempDir,
}

impl World {
    fn new(tag: &str) -> World {
        let dir = TempDir::new(tag);
        let core_cache = dir.mkdir("cache-core");
        let extra_cache = dir.mkdir("cache-extra");
        let core_repo = dir.mkdir("mirror-core/core/os/x86_64");
        let extra_repo = dir.mkdir("mirror-extra/extra/os/x86_64");
        let core_pkg = Pkg::build(&core_cache, "corepkg", PAYLOAD);
        let extra_pkg = Pkg::build(&extra_cache, "extrapkg", PAYLOAD);
        repo_add(&core_repo.join("core.db.tar.gz"), &[&core_pkg]);
        repo_add(&extra_repo.join("extra.db.tar.gz"), &[&extra_pkg]);
        World {
            core_mirror: Mirror::start(&dir.join("mirror-core")),
            extra_mirror: Mirror::start(&dir.join("mirror-extra")),
            core_cache,
            extra_cache,
            core_pkg,
            extra_pkg,
            dir,
        }
    }

    /// pacman.conf with `[core]` only, its cache dir only.
    fn conf_core(&self) -> PathBuf {
        write_server_conf(
            self.dir.path(),
            &[&self.core_cache],
            &[("core", &[self.core_mirror.url("/$repo/os/$arch")])],
        )
    }

    /// Rewrite the same file with `[core]` and `[extra]` and both cache dirs.
    fn conf_both(&self) -> PathBuf {
        write_server_conf(
            self.dir.path(),
            &[&self.core_cache, &self.extra_cache],
            &[
                ("core", &[self.core_mirror.url("/$repo/os/$arch")]),
                ("extra", &[self.extra_mirror.url("/$repo/os/$arch")]),
            ],
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Small clients

/// GET `path` on `conn` (kept alive) and read one response.
fn get_on(conn: &mut RawConn, path: &str) -> Response {
    conn.ask("GET", path)
        .unwrap_or_else(|e| panic!("GET {path} on the kept-alive connection: {e}"))
}

/// After shutdown began: a new connection must be refused, or closed without a byte of
/// response. Err says what happened instead.
fn refused_or_closed_silently(port: u16) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok("refused".into()),
        Err(e) => return Err(format!("connect failed oddly: {e}")),
        Ok(s) => s,
    };
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set read timeout");
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("set write timeout");
    // The request may not even be accepted by a closing socket; what matters is the answer.
    let _ = s.write_all(&request_bytes("GET", "/info", &[]));
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => Ok("closed".into()),
        Ok(n) => Err(format!(
            "answered after shutdown began: {}",
            preview(&buf[..n])
        )),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(
                "connection accepted but neither answered nor closed within 10 s: still listening"
                    .into(),
            )
        }
        Err(e) => Ok(format!("reset ({e})")),
    }
}

// ---------------------------------------------------------------------------------------------
// sd_notify

/// Receive datagrams on `sock` until `n` known states (READY=1, RELOADING=1, STOPPING=1)
/// have come or `NOTIFY_WAIT` passes; the states in order of arrival.
fn recv_states(sock: &UnixDatagram, n: usize) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set notify socket timeout");
    let deadline = Instant::now() + NOTIFY_WAIT;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < n && Instant::now() < deadline {
        let Ok(len) = sock.recv(&mut buf) else {
            continue;
        };
        // One datagram may carry several newline-separated assignments.
        for line in String::from_utf8_lossy(&buf[..len]).lines() {
            if STATES.contains(&line) {
                got.push(line.to_string());
            }
        }
    }
    got
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn sighup_reloads_keeps_connections_and_survives_a_broken_conf() {
    let w = World::new("reload");
    let conf = w.conf_core();
    let d = Pacserve::start(&conf, &[]);

    let mut conn = RawConn::connect(d.port()).expect("connect");
    let r = get_on(&mut conn, &w.core_pkg.request_path());
    assert_eq!(r.status, 200, "{}", r.head);
    assert_same_bytes(&r.body, &w.core_pkg.bytes, "core package before reload");
    assert!(
        !r.head.to_ascii_lowercase().contains("connection: close"),
        "a keep-alive GET was answered with close:\n{}",
        r.head
    );
    // Before the reload, `extra` is unknown: its package and database are not served.
    let before = get(d.port(), &w.extra_pkg.at("request", "extra"));
    assert_eq!(before.status, 404, "extra before reload:\n{}", before.head);
    let before_db = get(d.port(), "/request/extra/x86_64/extra.db");
    assert_eq!(
        before_db.status, 404,
        "extra.db before reload:\n{}",
        before_db.head
    );

    w.conf_both();
    let reloaded = d.lines_with("reloaded");
    d.signal(Signal::HUP);
    assert!(
        d.wait_more_lines("reloaded", reloaded),
        "no `reloaded` line after SIGHUP; stderr:\n{}",
        d.log()
    );

    // The same connection, now serving the new repo from the new cache dir.
    let r = get_on(&mut conn, &w.extra_pkg.at("request", "extra"));
    assert_eq!(
        r.status,
        200,
        "extra after reload:\n{}\n{}",
        r.head,
        d.log()
    );
    assert_same_bytes(&r.body, &w.extra_pkg.bytes, "extra package after reload");
    let r = get_on(&mut conn, "/request/extra/x86_64/extra.db");
    assert_eq!(r.status, 307, "extra.db after reload:\n{}", r.head);
    assert_eq!(
        r.header("location"),
        Some(&*w.extra_mirror.url("/extra/os/x86_64/extra.db")),
        "{}",
        r.head
    );

    // A broken file: a directive on line 1, before any section.
    fs::write(
        &conf,
        "Server = http://127.0.0.1:1/oops\n[options]\nArchitecture = x86_64\n",
    )
    .expect("write broken conf");
    let failed = d.lines_with("reload failed");
    d.signal(Signal::HUP);
    assert!(
        d.wait_more_lines("reload failed", failed),
        "no `reload failed` line after SIGHUP with a broken file; stderr:\n{}",
        d.log()
    );
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("reload failed"))
        .expect("the line waited for");
    let at = format!("{}:1:", conf.display());
    assert!(
        line.contains(&at),
        "`reload failed` line does not name {at}: {line}"
    );

    // The previous configuration is kept: extra still served, here and on a new connection.
    let r = get_on(&mut conn, &w.extra_pkg.at("request", "extra"));
    assert_eq!(r.status, 200, "extra after failed reload:\n{}", r.head);
    assert_same_bytes(&r.body, &w.extra_pkg.bytes, "extra after failed reload");
    let r = get(d.port(), &w.extra_pkg.at("request", "extra"));
    assert_eq!(r.status, 200, "extra on a new connection:\n{}", r.head);
    assert_same_bytes(&r.body, &w.extra_pkg.bytes, "extra on a new connection");
    assert!(
        d.is_running(),
        "pacserve exited after a failed reload: {:?}\n{}",
        d.wait_exit(Duration::ZERO),
        d.log()
    );
}

#[test]
fn sigterm_finishes_the_download_in_flight_refuses_new_ones_and_exits_0() {
    let w = World::new("drain");
    let big = Pkg::build(&w.core_cache, "bigpkg", BIG_PAYLOAD);
    let d = Pacserve::start(&w.conf_core(), &[]);

    let mut c = RawConn::connect(d.port()).expect("connect");
    c.send(&request_bytes("GET", &big.request_path(), &[]))
        .expect("send GET");
    let head = c.read_head().expect("the response head");
    assert!(head.head.starts_with("HTTP/1.1 200 "), "{}", head.head);
    assert_eq!(head.content_length(), Some(big.size()), "{}", head.head);
    // A little of the body, then pause with most of it still on the server's side.
    let mut body = c.take_buffered();
    let mut reads = 0;
    while body.is_empty() && reads < 100 {
        let n = c.read_into(&mut body).expect("read the first body bytes");
        assert!(n > 0, "closed before any body");
        reads += 1;
    }
    assert!(!body.is_empty(), "no body bytes");

    let stopping = d.lines_with("stopping");
    d.signal(Signal::TERM);
    assert!(
        d.wait_more_lines("stopping", stopping),
        "no `stopping` line after SIGTERM; stderr:\n{}",
        d.log()
    );
    let new_conn = refused_or_closed_silently(d.port());
    assert!(
        new_conn.is_ok(),
        "new connection after SIGTERM: {new_conn:?}\n{}",
        d.log()
    );

    // The rest of the download, promptly (the drain limit is 30 s).
    body.reserve(big.bytes.len());
    let deadline = Instant::now() + BODY_WAIT;
    while body.len() < big.bytes.len() && Instant::now() < deadline {
        match c.read_into(&mut body) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => panic!(
                "reading the body after SIGTERM, {} of {} bytes: {e}\n{}",
                body.len(),
                big.bytes.len(),
                d.log()
            ),
        }
    }
    assert_same_bytes(&body, &big.bytes, "body across SIGTERM");
    drop(c);

    d.assert_exits_0(EXIT_WAIT, "SIGTERM");
}

#[test]
fn sigint_stops_like_sigterm_with_exit_0() {
    let w = World::new("sigint");
    let d = Pacserve::start(&w.conf_core(), &[]);
    let r = get(d.port(), &w.core_pkg.request_path());
    assert_eq!(r.status, 200, "{}", r.head);

    d.signal(Signal::INT);
    d.assert_exits_0(EXIT_WAIT, "SIGINT");
    assert!(
        d.lines_with("stopping") > 0,
        "no `stopping` line after SIGINT; stderr:\n{}",
        d.log()
    );
}

#[test]
fn sd_notify_on_a_path_socket_ready_reloading_stopping() {
    let w = World::new("notify");
    let sock_path = w.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    let sock_env = sock_path.display().to_string();
    let d = Pacserve::builder(&w.conf_core())
        .env("NOTIFY_SOCKET", &sock_env)
        .start();

    assert_eq!(recv_states(&sock, 1), ["READY=1"], "{}", d.log());
    // Ready means serving.
    let r = get(d.port(), &w.core_pkg.request_path());
    assert_eq!(r.status, 200, "{}", r.head);

    d.signal(Signal::HUP);
    assert_eq!(
        recv_states(&sock, 2),
        ["RELOADING=1", "READY=1"],
        "after SIGHUP; stderr:\n{}",
        d.log()
    );

    d.signal(Signal::TERM);
    assert_eq!(
        recv_states(&sock, 1),
        ["STOPPING=1"],
        "after SIGTERM; stderr:\n{}",
        d.log()
    );
    d.assert_exits_0(EXIT_WAIT, "SIGTERM");
}

#[test]
fn sd_notify_on_an_abstract_socket_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr as UnixAddr;

    let w = World::new("notify-abstract");
    // The abstract namespace is shared by the whole host: borrow the temp dir's unique name.
    let name = w.dir.name();
    let addr = UnixAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
    let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract notify socket");
    let env = format!("@{name}");
    let d = Pacserve::builder(&w.conf_core())
        .env("NOTIFY_SOCKET", &env)
        .start();
    assert_eq!(recv_states(&sock, 1), ["READY=1"], "{}", d.log());
}

/// The lines of `log` that are warnings, in order.
fn warnings(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.starts_with("pacserve: warning: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn an_empty_or_broken_setup_is_warned_about_at_start_and_on_sighup() {
    let dir = TempDir::new("warn");
    let conf = dir.join("pacman.conf");
    let missing = dir.join("no-such-cache");
    // Debian's stock pacman.conf: [options] and no repository at all.
    fs::write(
        &conf,
        format!(
            "[options]\nArchitecture = x86_64\nCacheDir = {}/\n",
            missing.display()
        ),
    )
    .expect("write conf");
    let d = Pacserve::start(&conf, &[]);
    let at_start = warnings(&d.log());
    let path = conf.display().to_string();
    assert_eq!(
        at_start,
        [
            format!(
                "pacserve: warning: {path}: defines no repository, so pacserve has nothing \
                 to serve: add the repositories pacman uses (e.g. [core] with Include = \
                 /etc/pacman.d/mirrorlist), then reload pacserve (SIGHUP)"
            ),
            format!(
                "pacserve: warning: {path}: CacheDir {}/ does not exist: nothing can be \
                 served from it until it does (pacman creates it on its first download; or \
                 fix CacheDir in pacman.conf)",
                missing.display()
            ),
        ],
        "stderr:\n{}",
        d.log()
    );
    // Still running and answering.
    let r = get(d.port(), "/request/core/x86_64/a-1-1-x86_64.pkg.tar.zst");
    assert_eq!(r.status, 404, "{}", r.head);

    // A repository without a Server, and a CacheDir that is a file: warned on reload.
    let file = dir.join("not-a-dir");
    fs::write(&file, b"x").expect("write file");
    fs::write(
        &conf,
        format!(
            "[options]\nArchitecture = x86_64\nCacheDir = {}\n\n[core]\nSigLevel = Never\n",
            file.display()
        ),
    )
    .expect("rewrite conf");
    let reloaded = d.lines_with("reloaded");
    d.signal(Signal::HUP);
    assert!(
        d.wait_more_lines("reloaded", reloaded),
        "no reload; stderr:\n{}",
        d.log()
    );
    let after: Vec<String> = warnings(&d.log())[at_start.len()..].to_vec();
    assert_eq!(
        after,
        [
            format!(
                "pacserve: warning: {path}: [core] has no usable Server: its packages are \
                 served from the cache and the LAN only, and its databases not at all; add a \
                 Server line (or Include = /etc/pacman.d/mirrorlist) to that section"
            ),
            format!(
                "pacserve: warning: {path}: CacheDir {} is not a directory: fix CacheDir in \
                 pacman.conf",
                file.display()
            ),
        ],
        "stderr:\n{}",
        d.log()
    );
    assert!(d.is_running(), "pacserve exited: {}", d.log());
}
