//! Hostile clients against a running pacserve: path traversal, partial files, oversized and
//! garbage requests, connection floods, odd methods, and bad configuration. After every hostile
//! case the daemon must still be running and serving.

mod common;

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How long we wait for the daemon to close a connection it should close; longer than its
/// 10 s head timeout, so a daemon that closes only at that timeout still passes.
const CLOSE_WAIT: Duration = Duration::from_secs(20);

/// Fields drop in order: the daemon first, the directory it serves last.
struct Target {
    ps: Pacserve,
    mirror: Mirror,
    cache: PathBuf,
    good: Pkg,
    good2: Pkg,
    part_marker: Vec<u8>,
    secret: Vec<u8>,
    secret_path: PathBuf,
    _dir: TempDir,
}

const PART_FILE: &str = "partial-1.0-1-x86_64.pkg.tar.zst";

impl Target {
    /// pacserve with a cache holding `good` and `good2` packages and a `.part` of `partial`;
    /// a secret that looks like a package right next to the cache dir; an empty mirror.
    fn new(tag: &str) -> Target {
        let dir = TempDir::new(tag);
        let cache = dir.mkdir("cache");
        let mirror_root = dir.mkdir("mirror");
        let good = Pkg::build(&cache, "good", 20_000);
        let good2 = Pkg::build(&cache, "goodtwo", 7_000);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let secret = format!("SECRET-{}-{nanos}-do-not-serve", std::process::id()).into_bytes();
        // Outside the cache dir, with names a naive join would find.
        let secret_path = dir.join("secret.pkg.tar.zst");
        fs::write(&secret_path, &secret).expect("write secret");
        fs::write(dir.join("secret"), &secret).expect("write secret");
        let part_marker = b"PARTIAL-BYTES-NEVER-A-PACKAGE".repeat(100);
        fs::write(cache.join(format!("{PART_FILE}.part")), &part_marker).expect("write .part");
        let mirror = Mirror::start(&mirror_root);
        let conf = write_server_conf(
            dir.path(),
            &[&cache],
            &[("core", &[mirror.url("/$repo/os/$arch")])],
        );
        let ps = Pacserve::start(&conf, &[]);
        Target {
            good,
            good2,
            _dir: dir,
            cache,
            mirror,
            ps,
            part_marker,
            secret,
            secret_path,
        }
    }

    fn port(&self) -> u16 {
        self.ps.port()
    }

    fn good_path(&self) -> String {
        self.good.request_path()
    }

    /// The daemon has not exited and serves a normal request correctly.
    fn assert_alive(&self, after: &str) {
        assert!(
            self.ps.is_running(),
            "pacserve died after {after}; log:\n{}",
            self.ps.log()
        );
        let r = exchange(
            self.port(),
            &request_bytes("GET", &self.good_path(), &[]),
            false,
        )
        .unwrap_or_else(|e| panic!("normal request failed after {after}: {e}"));
        assert_eq!(r.status, 200, "after {after}: {}", r.head);
        assert!(r.body == self.good.bytes, "wrong body after {after}");
    }

    /// Like `assert_alive`, retrying for a bounded while: after mass disconnects the daemon may
    /// need a moment to notice the closes and free their slots.
    fn assert_alive_eventually(&self, after: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        for _ in 0..150 {
            assert!(self.ps.is_running(), "pacserve died after {after}");
            match exchange(
                self.port(),
                &request_bytes("GET", &self.good_path(), &[]),
                false,
            ) {
                Ok(r) if r.status == 200 && r.body == self.good.bytes => return,
                Ok(r) => last = r.head,
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("pacserve did not serve again after {after}: {last}");
    }

    fn assert_no_secret(&self, what: &str, bytes: &[u8]) {
        assert!(
            !contains_bytes(bytes, &self.secret),
            "{what} leaked the secret file"
        );
        assert!(
            !contains_bytes(bytes, b"root:x:0:0"),
            "{what} leaked /etc/passwd"
        );
        assert!(
            !contains_bytes(bytes, &self.part_marker[..60]),
            "{what} leaked .part bytes"
        );
    }
}

/// Send `raw`, half-close, and collect everything until the daemon closes. Panics when it
/// keeps the connection open past `CLOSE_WAIT`.
fn send_and_collect(port: u16, raw: &[u8], what: &str) -> Vec<u8> {
    let mut c = RawConn::connect(port).expect("connect");
    // The daemon may answer and close before it has read everything; a failed write is fine.
    let _ = c.send(raw);
    c.shutdown_write();
    let closed = c.closed_within(CLOSE_WAIT);
    let got = c.read_until_close(Duration::from_secs(1));
    assert!(
        closed,
        "{what}: connection still open after {CLOSE_WAIT:?}; got {}",
        preview(&got)
    );
    got
}

// ---------------------------------------------------------------------------------------------

#[test]
fn path_traversal_is_refused_in_every_form() {
    let t = Target::new("traversal");
    let secret_abs = t.secret_path.display().to_string();
    let mut targets: Vec<String> = [
        "/request/core/x86_64/../secret.pkg.tar.zst",
        "/request/core/x86_64/../../secret.pkg.tar.zst",
        "/request/core/x86_64/../secret",
        "/request/core/x86_64/../cache/good-1.0-1-x86_64.pkg.tar.zst",
        "/request/core/x86_64/../../../etc/passwd",
        "/request/core/x86_64/../../../../../../../../etc/passwd",
        "/pacman/core/x86_64/../secret.pkg.tar.zst",
        "/request/core/../secret.pkg.tar.zst",
        "/request/../x86_64/secret.pkg.tar.zst",
        "/request/core/x86_64/..",
        "/request/core/x86_64/%2e%2e/secret.pkg.tar.zst",
        "/request/core/x86_64/%2E%2E/secret.pkg.tar.zst",
        "/request/core/x86_64/.%2e/secret.pkg.tar.zst",
        "/request/core/x86_64/%2e%2e%2fsecret.pkg.tar.zst",
        "/request/core/x86_64/..%2fsecret.pkg.tar.zst",
        "/request/core/x86_64/..%2Fsecret.pkg.tar.zst",
        "/request/core/x86_64/..%2f..%2f..%2fetc%2fpasswd",
        "/request/core/x86_64/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/request/core/x86_64/%252e%252e/secret.pkg.tar.zst",
        "/request/core/x86_64/%252e%252e%252fsecret.pkg.tar.zst",
        "/request/core/x86_64/..%252fsecret.pkg.tar.zst",
        "/request/core/x86_64/..\\secret.pkg.tar.zst",
        "/request/core/x86_64/..%5csecret.pkg.tar.zst",
        "/request/core/x86_64/..%5Csecret.pkg.tar.zst",
        "/request/core/x86_64/%c0%ae%c0%ae/secret.pkg.tar.zst",
        "/request/core/x86_64/%c0%ae%c0%ae%c0%afsecret.pkg.tar.zst",
        "/request/core/x86_64/%2fetc%2fpasswd",
        "/request/core/x86_64//etc/passwd",
        "/request/core/x86_64/%00",
        "/request/core/x86_64/secret.pkg.tar.zst%00",
        "/request/core/x86_64/good-1.0-1-x86_64.pkg.tar.zst%00.sig",
        "/request/core/x86_64/..%00/secret.pkg.tar.zst",
        "/request/core/x86_64/....//secret.pkg.tar.zst",
        "/etc/passwd",
        "//etc/passwd",
        "/../secret.pkg.tar.zst",
        "/request/core/x86_64/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "http://127.0.0.1/request/core/x86_64/../secret.pkg.tar.zst",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    targets.push(format!("/request/core/x86_64/{secret_abs}"));
    targets.push(format!(
        "/request/core/x86_64/{}",
        secret_abs.replace('/', "%2f")
    ));
    targets.push(format!(
        "/request/core/x86_64/{}etc/passwd",
        "../".repeat(2000)
    ));
    targets.push(format!(
        "/request/core/x86_64/{}etc/passwd",
        "%2e%2e%2f".repeat(800)
    ));
    targets.push(format!(
        "/request/core/x86_64/{}.pkg.tar.zst",
        "a".repeat(6000)
    ));

    for target in &targets {
        let shown = &target[..target.len().min(100)];
        for method in ["GET", "HEAD"] {
            let raw = format!(
                "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            );
            let r = exchange(t.port(), raw.as_bytes(), method == "HEAD")
                .unwrap_or_else(|e| panic!("{method} {shown}: no response: {e}"));
            assert!(
                (400..500).contains(&r.status),
                "{method} {shown} -> {}, want 4xx",
                r.head
            );
            t.assert_no_secret(&format!("{method} {shown}"), &r.body);
            t.assert_no_secret(&format!("{method} {shown} (head)"), r.head.as_bytes());
        }
        t.assert_alive(shown);
    }
    // No file outside the cache was ever handed to a client: the only answers from the cache
    // were those to the normal request after each hostile one.
    assert_eq!(
        t.ps.counted("local"),
        targets.len() as u64,
        "a hostile target was answered from the cache\n{}",
        t.ps.log()
    );
}

#[test]
fn partial_files_are_never_served() {
    let t = Target::new("part");
    let part_path = format!("/request/core/x86_64/{PART_FILE}.part");
    let pkg_path = format!("/request/core/x86_64/{PART_FILE}");
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: [Case; 5] = [
        ("GET", &part_path, &[]),
        ("HEAD", &part_path, &[]),
        ("GET", &pkg_path, &[]),
        ("HEAD", &pkg_path, &[]),
        ("GET", &pkg_path, &[("Range", "bytes=0-")]),
    ];
    for (method, path, headers) in cases {
        let r = request(t.port(), method, path, headers);
        let what = format!("{method} {path} {headers:?}");
        assert!(
            (400..500).contains(&r.status) || r.status == 307,
            "{what} -> {}",
            r.head
        );
        if r.status == 307 {
            let loc = r.header("location").unwrap_or("");
            assert!(
                !loc.contains(&format!(":{}/", t.port())),
                "{what} redirected to pacserve itself: {loc}"
            );
        }
        t.assert_no_secret(&what, &r.body);
        t.assert_alive(&what);
    }
    let lookups = t.ps.lookups();
    assert!(
        !lookups
            .iter()
            .any(|l| l.path.contains(PART_FILE) && l.outcome == "local"),
        "a .part was served from the cache: {lookups:?}"
    );
    // The empty mirror was asked about the package (so pacserve did not treat the .part as a
    // hit) and served nothing.
    assert_eq!(t.mirror.served(PART_FILE), 0);
    assert!(t.cache.join(format!("{PART_FILE}.part")).exists());
}

#[test]
fn non_regular_files_in_the_cache_are_not_served() {
    let t = Target::new("nonregular");
    // A symlink out of the cache, a FIFO (opening it naively would hang), a directory, all
    // with package names.
    let link = "link-1.0-1-x86_64.pkg.tar.zst";
    std::os::unix::fs::symlink(&t.secret_path, t.cache.join(link)).expect("symlink");
    let fifo = "fifo-1.0-1-x86_64.pkg.tar.zst";
    let ran = run_bounded(
        std::process::Command::new("mkfifo").arg(t.cache.join(fifo)),
        Duration::from_secs(10),
    );
    assert!(ran.success(), "mkfifo: {}", ran.text());
    let dir = "dir-1.0-1-x86_64.pkg.tar.zst";
    fs::create_dir(t.cache.join(dir)).expect("mkdir");
    for name in [link, fifo, dir] {
        for method in ["GET", "HEAD"] {
            let path = format!("/request/core/x86_64/{name}");
            let r = request(t.port(), method, &path, &[]);
            assert!(
                (400..500).contains(&r.status),
                "{method} {name} -> {}",
                r.head
            );
            t.assert_no_secret(name, &r.body);
        }
        t.assert_alive(name);
    }
}

#[test]
fn oversized_heads_get_414_and_431() {
    let t = Target::new("oversized");
    let path = t.good_path();
    let long_line = format!(
        "GET /request/core/x86_64/{}.pkg.tar.zst HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    let big_header = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20 * 1024)
    );
    let mut many = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..70 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let mut wide = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..40 {
        wide.push_str(&format!("X-W{i}: {}\r\n", "w".repeat(450)));
    }
    wide.push_str("\r\n");
    let cases = [
        ("request line over 8 KiB", long_line, 414),
        ("one 20 KiB header", big_header, 431),
        ("70 headers", many, 431),
        ("40 headers of 450 bytes (18 KiB)", wide, 431),
    ];
    for (what, raw, want) in cases {
        let got = send_and_collect(t.port(), raw.as_bytes(), what);
        assert_eq!(status_of(&got), Some(want), "{what}: got {}", preview(&got));
        t.assert_alive(what);
    }
}

#[test]
fn garbage_bytes_get_exactly_one_answer_each() {
    let t = Target::new("garbage");
    let mut client_hello = vec![
        0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03,
    ];
    client_hello.extend_from_slice(&pseudo_random("client random", 32));
    client_hello.extend_from_slice(&[0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00, 0x00, 0x00]);
    let mut junk_header = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Junk: ".to_vec();
    junk_header.extend_from_slice(&pseudo_random("junk header", 300));
    junk_header.extend_from_slice(b"\r\n\r\n");
    let good = t.good_path();
    // Each row: what is sent (then the write side is closed), and the one status it gets, or
    // none for "closed without a byte".
    let cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        ("random binary", pseudo_random("garbage", 4096), Some(400)),
        ("NUL flood", vec![0u8; 8192], Some(400)),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            Some(505),
        ),
        ("TLS ClientHello", client_hello, Some(400)),
        ("binary header value", junk_header, Some(400)),
        (
            "NUL in the target",
            format!("GET {good}\0x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes(),
            Some(400),
        ),
        (
            "escape sequence in the target",
            b"GET /request/core/x86_64/\x1b[31mred\x1b[0m HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                .to_vec(),
            Some(400),
        ),
        (
            "obsolete line folding",
            format!("GET {good} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\r\n folded\r\n\r\n")
                .into_bytes(),
            Some(400),
        ),
        (
            "HTTP/9.9",
            format!("GET {good} HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n").into_bytes(),
            Some(505),
        ),
        (
            "missing version",
            format!("GET {good}\r\nHost: 127.0.0.1\r\n\r\n").into_bytes(),
            Some(400),
        ),
        // Empty lines a server may skip before a request, then the end: nothing was asked,
        // so nothing is answered.
        ("only CRLFs", b"\r\n\r\n\r\n\r\n".to_vec(), None),
        // One empty line more than a server skips is noise.
        ("five CRLFs", b"\r\n\r\n\r\n\r\n\r\n".to_vec(), Some(400)),
        // A head cut short by the end of the connection: the client may still read.
        (
            "half a request line",
            b"GET /request/co".to_vec(),
            Some(400),
        ),
        (
            "head without its blank line",
            format!("GET {good} HTTP/1.1\r\nHost: 127.0.0.1\r\n").into_bytes(),
            Some(400),
        ),
    ];
    for (what, raw, want) in cases {
        let got = send_and_collect(t.port(), &raw, what);
        match want {
            None => assert!(got.is_empty(), "{what}: answered {}", preview(&got)),
            Some(status) => assert_eq!(
                status_of(&got),
                Some(status),
                "{what}: answered {}",
                preview(&got)
            ),
        }
        t.assert_no_secret(what, &got);
        t.assert_alive(what);
    }
    // Control bytes from requests never reach the log raw.
    let _ = t.ps.wait_log(" bad", LOG_WAIT);
    let log = t.ps.log();
    let raw_ctl = log
        .bytes()
        .find(|&b| (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f);
    assert_eq!(raw_ctl, None, "raw control byte in the log:\n{log:?}");
}

#[test]
fn slow_and_silent_clients_do_not_block_others() {
    let t = Target::new("slowloris");
    let partial = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow",
        t.good_path()
    );
    let mut held: Vec<RawConn> = Vec::new();
    for i in 0..300 {
        let mut c = RawConn::connect(t.port()).unwrap_or_else(|e| panic!("slow client {i}: {e}"));
        c.send(partial.as_bytes())
            .unwrap_or_else(|e| panic!("slow client {i}: {e}"));
        held.push(c);
    }
    for i in 0..50 {
        held.push(RawConn::connect(t.port()).unwrap_or_else(|e| panic!("silent client {i}: {e}")));
    }
    // A normal client is served, and served correctly, while all of them hang on.
    t.assert_alive("350 slow and silent clients");
    let r = head(t.port(), &t.good2.request_path());
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length(), Some(t.good2.size()));
    drop(held);
    t.assert_alive_eventually("dropping the slow clients");
}

#[test]
fn silent_connections_over_the_cap_are_closed_to_make_room() {
    let t = Target::new("cap-idle");
    // pacserve::limits::MAX_CONNECTIONS is 1024: open a few more than that, saying nothing.
    let total = pacserve::limits::MAX_CONNECTIONS + 16;
    let held: Vec<TcpStream> = (0..total)
        .map(|i| {
            let c = RawConn::connect(t.port()).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            c.stream().try_clone().expect("clone socket")
        })
        .collect();
    // Idle connections give up their slots to newcomers, the oldest first: the first ones
    // opened are closed by the server (EOF), none is refused with a 503.
    let closed = closed_or_answered(&held, |a| a.is_some(), 16, Duration::from_secs(20));
    // Oldest by the time each connection's task first waited: on a multi-threaded executor
    // that is close to, not exactly, the order of accept.
    let closed_at: Vec<usize> = (0..closed.len())
        .filter(|&i| closed[i].as_deref() == Some(&[][..]))
        .collect();
    assert!(closed_at.len() >= 16, "only {closed_at:?} were closed");
    assert!(
        closed_at.iter().all(|&i| i < 128),
        "closed {closed_at:?}: not the oldest"
    );
    assert!(
        closed
            .iter()
            .all(|a| a.as_deref().and_then(status_of) != Some(503)),
        "an idle connection made room, nobody needed a 503"
    );
    // A real client is served meanwhile.
    let r = get(t.port(), &t.good.request_path());
    assert_eq!(r.status, 200, "{}", r.head);
    drop(held);
    t.assert_alive_eventually("the connection flood");
}

#[test]
fn busy_connections_over_the_cap_get_503() {
    let t = Target::new("cap");
    // Every slot busy: each connection has sent half a head, so none is idle.
    let total = pacserve::limits::MAX_CONNECTIONS + 16;
    let held: Vec<TcpStream> = (0..total)
        .map(|i| {
            let mut c =
                RawConn::connect(t.port()).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            let _ = c.send(b"GET /request/co");
            c.stream().try_clone().expect("clone socket")
        })
        .collect();
    // Wait for the 503s themselves: on a loaded machine the first connections may reach
    // their head deadline (and be closed) before the last ones are refused.
    let is_503 = |a: &Option<Vec<u8>>| a.as_deref().and_then(status_of) == Some(503);
    let answers = closed_or_answered(&held, is_503, 8, Duration::from_secs(20));
    let n = answers.iter().filter(|a| is_503(a)).count();
    let others = answers.iter().filter(|a| a.is_some()).count() - n;
    assert!(
        n >= 8,
        "{n} of {total} connections were answered 503 ({others} other answers or closes)"
    );
    drop(held);
    t.assert_alive_eventually("the connection flood");
    // Counted as busy.
    let busy = t.ps.status_json().field("requests").num("busy");
    assert!(busy >= 8, "requests.busy is {busy}");
}

/// Poll every socket (non-blocking, bounded) until at least `enough` answers are `wanted`:
/// `Some(bytes)` for an answer or an end (empty for a close without a word), None while
/// nothing came.
fn closed_or_answered(
    held: &[TcpStream],
    wanted: impl Fn(&Option<Vec<u8>>) -> bool,
    enough: usize,
    limit: Duration,
) -> Vec<Option<Vec<u8>>> {
    let mut answers: Vec<Option<Vec<u8>>> = vec![None; held.len()];
    for s in held {
        s.set_nonblocking(true).expect("nonblocking");
    }
    let deadline = Instant::now() + limit;
    while answers.iter().filter(|a| wanted(a)).count() < enough && Instant::now() < deadline {
        for (s, a) in held.iter().zip(answers.iter_mut()) {
            if a.is_none() {
                let mut buf = [0u8; 512];
                match std::io::Read::read(&mut &*s, &mut buf) {
                    Ok(n) => *a = Some(buf[..n].to_vec()),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        *a = Some(Vec::new())
                    }
                    Err(_) => {}
                }
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    answers
}

#[test]
fn other_methods_get_405() {
    let t = Target::new("methods");
    let path = t.good_path();
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"] {
        let r = request(t.port(), method, &path, &[("Content-Length", "0")]);
        assert_eq!(r.status, 405, "{method}: {}", r.head);
        assert!(!contains_bytes(&r.body, &t.good.bytes[..64]));
        t.assert_alive(method);
    }
    // The file is still there, untouched.
    assert_eq!(
        fs::read(t.cache.join(&t.good.file)).ok(),
        Some(t.good.bytes.clone())
    );
}

#[test]
fn http11_without_host_is_400_and_http10_without_host_is_fine() {
    let t = Target::new("host");
    let path = t.good_path();
    let raw = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n");
    let r = exchange(t.port(), raw.as_bytes(), false).expect("response");
    assert_eq!(r.status, 400, "{}", r.head);
    let raw = format!("GET {path} HTTP/1.0\r\n\r\n");
    let r = exchange(t.port(), raw.as_bytes(), false).expect("response");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.body == t.good.bytes);
    t.assert_alive("requests without Host");
}

#[test]
fn pipelined_requests_get_answers_in_order() {
    let t = Target::new("pipeline");
    let p1 = t.good_path();
    let p2 = t.good2.request_path();
    let raw = format!(
        "GET {p1} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n\
         HEAD {p2} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n\
         GET /request/core/x86_64/nothere-1-1-x86_64.pkg.tar.zst HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n\
         GET {p2} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut c = RawConn::connect(t.port()).expect("connect");
    c.send(raw.as_bytes()).expect("send pipelined requests");
    let r1 = c.read_response(false).expect("first response");
    assert_eq!(r1.status, 200, "{}", r1.head);
    assert!(
        r1.body == t.good.bytes,
        "first body is not the first package"
    );
    let r2 = c.read_response(true).expect("second response");
    assert_eq!(r2.status, 200, "{}", r2.head);
    assert_eq!(r2.content_length(), Some(t.good2.size()));
    let r3 = c.read_response(false).expect("third response");
    assert_eq!(r3.status, 404, "{}", r3.head);
    let r4 = c.read_response(false).expect("fourth response");
    assert_eq!(r4.status, 200, "{}", r4.head);
    assert!(
        r4.body == t.good2.bytes,
        "fourth body is not the second package"
    );
    assert!(
        c.closed_within(CLOSE_WAIT),
        "no close after Connection: close"
    );
    assert!(c.read_until_close(Duration::from_secs(1)).is_empty());
    t.assert_alive("pipelining");
}

// ---------------------------------------------------------------------------------------------
// Bad configuration and command lines

fn nonempty_lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// pacserve started with `conf` must exit at once, not 0, with one line on stderr that says
/// `needle`, and never listen.
fn assert_conf_error(conf: &Path, needle: &str, what: &str) {
    let conf_s = conf.display().to_string();
    let ran = Pacserve::run_to_exit(&[
        "--address",
        "127.0.0.1",
        "--port",
        "0",
        "--pacman-conf",
        &conf_s,
    ]);
    assert!(
        !ran.timed_out,
        "{what}: pacserve kept running:\n{}",
        ran.stderr
    );
    assert!(!ran.success(), "{what}: exit 0");
    assert!(
        ran.stderr.contains(needle),
        "{what}: error does not say `{needle}`:\n{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("listening on"), "{}", ran.stderr);
    assert_eq!(nonempty_lines(&ran.stderr).len(), 1, "{}", ran.stderr);
}

#[test]
fn missing_pacman_conf_is_a_clear_error() {
    let dir = TempDir::new("noconf");
    let conf = dir.join("does-not-exist.conf");
    assert_conf_error(&conf, &conf.display().to_string(), "a missing config");
}

#[test]
fn malformed_pacman_conf_names_file_and_line() {
    let dir = TempDir::new("badconf");
    let cases = [
        (
            "before-section.conf",
            "Server = http://127.0.0.1:9/x\n[options]\n",
            1,
        ),
        (
            "unterminated.conf",
            "[options]\nCacheDir = /tmp/pacserve-no-such-cache/\n[core\nServer = http://127.0.0.1:9/x\n",
            3,
        ),
    ];
    for (name, text, line) in cases {
        let conf = dir.join(name);
        fs::write(&conf, text).expect("write conf");
        assert_conf_error(&conf, &format!("{}:{line}:", conf.display()), name);
    }
}

#[test]
fn unknown_option_exits_2_naming_it() {
    let ran = Pacserve::run_to_exit(&["--frobnicate-the-cache"]);
    assert!(!ran.timed_out);
    assert_eq!(ran.code(), Some(2), "stderr:\n{}", ran.stderr);
    assert!(
        ran.stderr.contains("--frobnicate-the-cache"),
        "{}",
        ran.stderr
    );
    assert_eq!(nonempty_lines(&ran.stderr).len(), 1, "{}", ran.stderr);
}
