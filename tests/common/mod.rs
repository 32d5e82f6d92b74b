//! Integration-test harness: real processes, real sockets, all on 127.0.0.1.
//!
//! Everything here is bounded: every wait has a deadline, every socket a read and write
//! timeout, every thread a way to stop. Every process a test starts is killed by pid in `Drop`
//! and every temporary directory is removed in `Drop`, so a panicking test cleans up too.
//!
//! Pieces:
//! - [`TempDir`]: a private directory under /tmp.
//! - [`Mirror`]: a small HTTP/1.1 file server that records every request; [`HungServer`] and
//!   [`dead_port`] for mirrors that never answer or refuse.
//! - [`make_package`] / [`repo_add`]: real pacman packages and repo databases.
//! - [`PacmanClient`]: the real `pacman` with a private root, config and cache.
//! - [`Pacserve`]: the daemon under test, with its stderr log captured.
//! - [`RawConn`] and friends: a tiny HTTP client for exact requests and hostile bytes.

#![allow(dead_code)]

pub mod preflight;

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest a single pacman run may take before it is killed and the test fails.
pub const PACMAN_LIMIT: Duration = Duration::from_secs(120);
/// Longest pacserve may take to print its `listening on` line.
pub const START_LIMIT: Duration = Duration::from_secs(10);
/// Socket read/write timeout of the raw client; longer than pacserve's 10 s head timeout so
/// that a daemon closing an idle connection is seen as a close, not as our timeout.
pub const CLIENT_IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Overall deadline for one response read by the raw client.
pub const RESPONSE_LIMIT: Duration = Duration::from_secs(30);
/// Socket timeouts inside the test mirror.
const MIRROR_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Most concurrent connection threads in one test mirror, and most sockets a hung server holds.
const MIRROR_MAX_CONNS: usize = 256;
/// Largest request head the test mirror reads.
const MIRROR_MAX_HEAD: usize = 64 * 1024;
/// Largest response the raw client reads.
const CLIENT_MAX_RESPONSE: usize = 256 * 1024 * 1024;
/// Largest response head the raw client reads.
const CLIENT_MAX_HEAD: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Temporary directories

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under /tmp, removed with everything in it on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "pacserve-test-{}-{n}-{nanos}-{tag}",
            std::process::id()
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Make `rel` (and its parents) and return its path.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.path.join(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// Bounded child processes

/// What a bounded run of a command left behind.
#[derive(Debug)]
pub struct Ran {
    /// None when the command was killed at its time limit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// stdout then stderr, for assertions and failure messages.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Spawn a thread that copies `r` into a shared buffer until EOF or error.
pub fn drain<R: Read + Send + 'static>(mut r: R, buf: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    })
}

/// Wait (bounded) for reader threads to see EOF; a grandchild holding the pipe must not hang us.
fn join_readers(readers: Vec<JoinHandle<()>>, limit: Duration) {
    let deadline = Instant::now() + limit;
    for r in readers {
        while !r.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        if r.is_finished() {
            let _ = r.join();
        }
    }
}

/// Wait for `child` up to `limit`; past it (or if waiting fails) kill it by pid and reap it.
/// None when it had to be killed.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Poll `cond` every 20 ms until it holds (true) or `limit` passes (false).
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Run `cmd` with stdin closed, capturing stdout and stderr; kill it (by pid) after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Ran {
    try_run_bounded(cmd, limit).unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

/// [`run_bounded`], with a program that cannot be started as an error instead of a panic.
pub fn try_run_bounded(cmd: &mut Command, limit: Duration) -> io::Result<Ran> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let readers = vec![
        drain(child.stdout.take().expect("stdout is piped"), out.clone()),
        drain(child.stderr.take().expect("stderr is piped"), err.clone()),
    ];
    let status = wait_bounded(&mut child, limit);
    let timed_out = status.is_none();
    join_readers(readers, Duration::from_secs(5));
    let stdout = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err.lock().unwrap()).into_owned();
    Ok(Ran {
        status,
        stdout,
        stderr,
        timed_out,
    })
}

// ---------------------------------------------------------------------------------------------
// HTTP dates (our own, so the daemon's code is not checked against itself)

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) of seconds since the epoch.
pub fn http_date_secs(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let wd = WEEKDAYS[((days + 4).rem_euclid(7)) as usize];
    format!(
        "{wd}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

pub fn http_date(t: SystemTime) -> String {
    http_date_secs(unix_secs(t))
}

pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Seconds since the epoch of an IMF-fixdate; None for anything else.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.len() != 6 || f[5] != "GMT" || !WEEKDAYS.contains(&f[0].trim_end_matches(',')) {
        return None;
    }
    let d: u32 = f[1].parse().ok()?;
    let m = MONTHS.iter().position(|&x| x == f[2])? as u32 + 1;
    let y: i64 = f[3].parse().ok()?;
    let hms: Vec<u64> = f[4]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 || !(1..=31).contains(&d) || hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    u64::try_from(days * 86_400)
        .ok()
        .map(|s| s + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

/// The modification time of `path` in whole seconds since the epoch.
pub fn mtime_secs(path: &Path) -> u64 {
    let md = fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    unix_secs(md.modified().expect("mtime is supported on Linux"))
}

// ---------------------------------------------------------------------------------------------
// Test mirror

/// One request as the test mirror saw it.
#[derive(Debug, Clone)]
pub struct MirrorRequest {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub range: Option<String>,
    pub if_modified_since: Option<String>,
    pub user_agent: Option<String>,
}

/// A real HTTP/1.1 server on 127.0.0.1 serving files below `root` (thread per connection,
/// `Connection: close`). GET and HEAD; Last-Modified and If-Modified-Since; single ranges.
pub struct Mirror {
    addr: SocketAddr,
    root: PathBuf,
    log: Arc<Mutex<Vec<MirrorRequest>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Mirror {
    pub fn start(root: &Path) -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mirror");
        let addr = listener.local_addr().expect("mirror address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (root, log, stop) = (root.to_path_buf(), log.clone(), stop.clone());
            thread::spawn(move || mirror_accept(listener, root, log, stop))
        };
        Mirror {
            addr,
            root: root.to_path_buf(),
            log,
            stop,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port())
    }

    pub fn requests(&self) -> Vec<MirrorRequest> {
        self.log.lock().unwrap().clone()
    }

    /// GETs of a path ending in `suffix` answered 200 or 206 (bytes really served).
    pub fn served(&self, suffix: &str) -> usize {
        self.count(|r| {
            r.method == "GET" && r.path.ends_with(suffix) && matches!(r.status, 200 | 206)
        })
    }

    /// Requests of any method and status for a path ending in `suffix`.
    pub fn asked(&self, suffix: &str) -> usize {
        self.count(|r| r.path.ends_with(suffix))
    }

    pub fn count(&self, pred: impl Fn(&MirrorRequest) -> bool) -> usize {
        self.log.lock().unwrap().iter().filter(|r| pred(r)).count()
    }

    /// A readable dump of the request log for failure messages.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for r in self.log.lock().unwrap().iter() {
            let _ = writeln!(
                s,
                "  {} {} -> {} range={:?} ims={:?}",
                r.method, r.path, r.status, r.range, r.if_modified_since
            );
        }
        s
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblock accept(); the loop sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn mirror_accept(
    listener: TcpListener,
    root: PathBuf,
    log: Arc<Mutex<Vec<MirrorRequest>>>,
    stop: Arc<AtomicBool>,
) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut errors = 0;
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(_) => {
                errors += 1;
                if errors > 1000 {
                    break;
                }
                continue;
            }
        };
        let (done, running): (Vec<_>, Vec<_>) = workers.into_iter().partition(|w| w.is_finished());
        workers = running;
        for w in done {
            let _ = w.join();
        }
        if workers.len() >= MIRROR_MAX_CONNS {
            continue; // dropped: the client sees a close
        }
        let (root, log) = (root.clone(), log.clone());
        workers.push(thread::spawn(move || {
            let _ = mirror_conn(stream, &root, &log);
        }));
    }
    // Workers end by themselves: one request per connection and socket timeouts.
    for w in workers {
        let _ = w.join();
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parse one `bytes=...` single range against `len`: Some(Ok((start, end))) satisfiable,
/// Some(Err(())) unsatisfiable, None when the header is not a single byte range (ignored).
fn parse_single_range(h: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len.saturating_sub(n), len - 1)));
    }
    let start: u64 = a.parse().ok()?;
    let end: u64 = if b.is_empty() {
        len.saturating_sub(1)
    } else {
        b.parse().ok()?
    };
    if end < start {
        return None;
    }
    if start >= len {
        return Some(Err(()));
    }
    Some(Ok((start, end.min(len - 1))))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        _ => "Unknown",
    }
}

fn mirror_conn(mut s: TcpStream, root: &Path, log: &Mutex<Vec<MirrorRequest>>) -> io::Result<()> {
    s.set_read_timeout(Some(MIRROR_IO_TIMEOUT))?;
    s.set_write_timeout(Some(MIRROR_IO_TIMEOUT))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_len = loop {
        if let Some(n) = find_head_end(&buf) {
            break n;
        }
        if buf.len() > MIRROR_MAX_HEAD {
            return Ok(());
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or("");
    let mut parts = start.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut range = None;
    let mut ims = None;
    let mut ua = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v),
                "if-modified-since" => ims = Some(v),
                "user-agent" => ua = Some(v),
                _ => {}
            }
        }
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    let file = (path.starts_with('/') && !path.contains("..") && !path.contains('\\'))
        .then(|| root.join(path.trim_start_matches('/')))
        .filter(|p| fs::metadata(p).is_ok_and(|m| m.is_file()));

    let mut headers = String::new();
    let mut body: Vec<u8> = Vec::new();
    let status = if method != "GET" && method != "HEAD" {
        body = b"method not allowed\n".to_vec();
        405
    } else if let Some(file) = &file {
        let data = fs::read(file)?;
        let mtime = mtime_secs(file);
        let len = data.len() as u64;
        let _ = write!(
            headers,
            "Last-Modified: {}\r\nAccept-Ranges: bytes\r\nContent-Type: application/octet-stream\r\n",
            http_date_secs(mtime)
        );
        let not_modified = ims
            .as_deref()
            .and_then(parse_http_date)
            .is_some_and(|t| mtime <= t);
        if not_modified {
            304
        } else {
            match range.as_deref().and_then(|r| parse_single_range(r, len)) {
                None => {
                    body = data;
                    200
                }
                Some(Ok((a, b))) => {
                    let _ = write!(headers, "Content-Range: bytes {a}-{b}/{len}\r\n");
                    body = data[a as usize..=b as usize].to_vec();
                    206
                }
                Some(Err(())) => {
                    let _ = write!(headers, "Content-Range: bytes */{len}\r\n");
                    416
                }
            }
        }
    } else {
        body = b"not found\n".to_vec();
        404
    };
    // Logged before the answer goes out, so whoever got the answer finds the entry.
    log.lock().unwrap().push(MirrorRequest {
        method: method.clone(),
        path,
        status,
        range,
        if_modified_since: ims,
        user_agent: ua,
    });
    let mut out = format!("HTTP/1.1 {status} {}\r\n{headers}", reason(status));
    if status != 304 {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    if method == "GET" && status != 304 {
        out.extend_from_slice(&body);
    }
    s.write_all(&out)?;
    s.flush()?;
    let _ = s.shutdown(Shutdown::Write);
    Ok(())
}

/// A server that accepts connections and never answers: a mirror that hangs.
pub struct HungServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    accept: Option<JoinHandle<()>>,
}

impl HungServer {
    pub fn start() -> HungServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hung server");
        let addr = listener.local_addr().expect("hung server address");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let accept = {
            let (stop, accepted) = (stop.clone(), accepted.clone());
            thread::spawn(move || {
                let mut held = Vec::new();
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(s) = conn {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        if held.len() < MIRROR_MAX_CONNS {
                            held.push(s);
                        }
                    }
                }
                drop(held);
            })
        };
        HungServer {
            addr,
            stop,
            accepted,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port())
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for HungServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// A port on 127.0.0.1 that nothing listens on right now (bound, read, released). Also how a
/// test picks pacserve's port in advance.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind for a free port");
    l.local_addr().expect("local address").port()
}

/// A port where connections are refused.
pub fn dead_port() -> u16 {
    free_port()
}

// ---------------------------------------------------------------------------------------------
// Packages and repositories

/// Deterministic pseudo-random bytes (splitmix64) seeded from `seed`.
pub fn pseudo_random(seed: &str, len: usize) -> Vec<u8> {
    let mut h = DefaultHasher::new();
    seed.hash(&mut h);
    let mut x = h.finish();
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `NAME-VERSION-x86_64.pkg.tar.zst`.
pub fn package_file_name(name: &str, version: &str) -> String {
    format!("{name}-{version}-x86_64.pkg.tar.zst")
}

/// Build a real package `dir/NAME-VERSION-x86_64.pkg.tar.zst` (VERSION like `1.0-1`) holding a
/// .PKGINFO and `usr/share/NAME/payload` of `payload_bytes` pseudo-random (incompressible) bytes.
pub fn make_package(dir: &Path, name: &str, version: &str, payload_bytes: usize) -> PathBuf {
    preflight::require();
    let stage = dir.join(format!(".stage-{name}-{version}"));
    let _ = fs::remove_dir_all(&stage);
    let share = stage.join("usr/share").join(name);
    fs::create_dir_all(&share).expect("mkdir package stage");
    fs::write(
        share.join("payload"),
        pseudo_random(&format!("{name}-{version}"), payload_bytes),
    )
    .expect("write payload");
    let pkginfo = format!(
        "# Generated by the pacserve test harness\n\
         pkgname = {name}\n\
         pkgbase = {name}\n\
         pkgver = {version}\n\
         pkgdesc = pacserve test package {name}\n\
         url = http://example.invalid/{name}\n\
         builddate = 1700000000\n\
         packager = pacserve tests <tests@example.invalid>\n\
         size = {payload_bytes}\n\
         arch = x86_64\n\
         license = GPL-2.0-or-later\n"
    );
    fs::write(stage.join(".PKGINFO"), pkginfo).expect("write .PKGINFO");
    let out = dir.join(package_file_name(name, version));
    let ran = run_bounded(
        Command::new("bsdtar")
            .arg("--zstd")
            .arg("-cf")
            .arg(&out)
            .arg("-C")
            .arg(&stage)
            .arg(".PKGINFO")
            .arg("usr"),
        Duration::from_secs(60),
    );
    let _ = fs::remove_dir_all(&stage);
    assert!(ran.success(), "bsdtar failed for {name}: {}", ran.text());
    out
}

/// `repo-add DB PKGS...`; DB like `dir/core.db.tar.gz` (which also leaves `core.db`,
/// `core.files` links next to it).
pub fn repo_add(db_path: &Path, pkgs: &[PathBuf]) {
    preflight::require();
    let ran = run_bounded(
        Command::new("repo-add")
            .arg("-q")
            .arg(db_path)
            .args(pkgs)
            .env("LC_ALL", "C"),
        Duration::from_secs(60),
    );
    assert!(ran.success(), "repo-add failed: {}", ran.text());
}

// ---------------------------------------------------------------------------------------------
// pacman client

/// The real pacman, with its own root, database, cache and config in a temp dir.
pub struct PacmanClient {
    dir: TempDir,
    conf: PathBuf,
    cache: PathBuf,
    db: PathBuf,
    repo: String,
}

impl PacmanClient {
    /// A client with one repo section `[repo]` listing `servers` in order.
    pub fn new(repo: &str, servers: &[String]) -> PacmanClient {
        Self::with_options(repo, servers, "")
    }

    /// Like `new`, with `options` (lines such as `ParallelDownloads = 5`) added to
    /// `[options]`.
    pub fn with_options(repo: &str, servers: &[String], options: &str) -> PacmanClient {
        preflight::require();
        let dir = TempDir::new("client");
        let root = dir.mkdir("root");
        let db = dir.mkdir("db");
        fs::create_dir_all(db.join("sync")).expect("mkdir sync");
        fs::create_dir_all(db.join("local")).expect("mkdir local");
        let cache = dir.mkdir("cache");
        let gpg = dir.mkdir("gnupg");
        let hooks = dir.mkdir("hooks");
        let mut conf = format!(
            "[options]\n\
             RootDir = {}\n\
             DBPath = {}/\n\
             CacheDir = {}/\n\
             LogFile = {}\n\
             GPGDir = {}/\n\
             HookDir = {}/\n\
             Architecture = x86_64\n\
             SigLevel = Never\n\
             {options}\n\
             \n[{repo}]\n",
            root.display(),
            db.display(),
            cache.display(),
            dir.join("pacman.log").display(),
            gpg.display(),
            hooks.display(),
        );
        for s in servers {
            let _ = writeln!(conf, "Server = {s}");
        }
        let conf_path = dir.join("pacman.conf");
        fs::write(&conf_path, conf).expect("write client pacman.conf");
        PacmanClient {
            dir,
            conf: conf_path,
            cache,
            db,
            repo: repo.to_string(),
        }
    }

    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// The synced database file, `DBPath/sync/REPO.db`.
    pub fn sync_db(&self) -> PathBuf {
        self.db.join("sync").join(format!("{}.db", self.repo))
    }

    /// `pacman --config C --noprogressbar ARGS`, bounded by [`PACMAN_LIMIT`].
    pub fn run(&self, args: &[&str]) -> Ran {
        run_bounded(
            Command::new("pacman")
                .arg("--config")
                .arg(&self.conf)
                .arg("--noprogressbar")
                .args(args)
                .env("LC_ALL", "C"),
            PACMAN_LIMIT,
        )
    }

    /// `-Sy`: refresh the database (a repeat sends If-Modified-Since).
    pub fn sync(&self) -> Ran {
        self.run(&["-Sy", "--noconfirm"])
    }

    /// A second `-Sy`; named apart so tests read as what they mean.
    pub fn sync_again(&self) -> Ran {
        self.sync()
    }

    /// `-Syy`: forced refresh (plain GET).
    pub fn force_sync(&self) -> Ran {
        self.run(&["-Syy", "--noconfirm"])
    }

    /// `-Sw --noconfirm PKG`: download into the cache only.
    pub fn download(&self, pkg: &str) -> Ran {
        self.run(&["-Sw", "--noconfirm", pkg])
    }

    /// The bytes of `file` in the client's cache, if there.
    pub fn cached(&self, file: &str) -> Option<Vec<u8>> {
        fs::read(self.cache.join(file)).ok()
    }
}

// ---------------------------------------------------------------------------------------------
// pacserve's configuration

/// Write `dir/pacserve.conf`: an `[options]` section with `cache_dirs` and one section per
/// repo with its `Server =` lines in order. Returns the file's path.
pub fn write_server_conf(dir: &Path, cache_dirs: &[&Path], repos: &[(&str, &[String])]) -> PathBuf {
    let mut conf = String::from("[options]\nArchitecture = x86_64\n");
    for c in cache_dirs {
        let _ = writeln!(conf, "CacheDir = {}/", c.display());
    }
    for (name, servers) in repos {
        let _ = writeln!(conf, "\n[{name}]");
        for s in servers.iter() {
            let _ = writeln!(conf, "Server = {s}");
        }
    }
    let path = dir.join("pacserve.conf");
    fs::write(&path, conf).expect("write pacserve.conf");
    path
}

// ---------------------------------------------------------------------------------------------
// The daemon

/// One request line of pacserve's log:
/// `pacserve: PEER METHOD PATH STATUS BYTES OUTCOME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    pub outcome: String,
}

fn parse_log_line(line: &str) -> Option<LogLine> {
    let t: Vec<&str> = line.split_whitespace().collect();
    let i = t.iter().position(|x| x.parse::<SocketAddr>().is_ok())?;
    let rest = t.get(i + 1..i + 6)?;
    Some(LogLine {
        method: rest[0].to_string(),
        path: rest[1].to_string(),
        status: rest[2].parse().ok()?,
        bytes: rest[3].parse().ok()?,
        outcome: rest[4].to_string(),
    })
}

/// A running pacserve; killed by pid on drop.
pub struct Pacserve {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    stopped: bool,
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pacserve")
}

/// The port in the first `listening on ADDR:PORT` of `log`.
pub fn listening_port(log: &str) -> Option<u16> {
    let rest = &log[log.find("listening on ")? + "listening on ".len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    let port = addr.rsplit(':').next()?;
    port.parse().ok()
}

impl Pacserve {
    /// Start pacserve with `--address 127.0.0.1 --port 0 --pacman-conf CONF --verbose`, each
    /// left out when `extra` gives its own, and wait (bounded) for `listening on`.
    pub fn start(conf: &Path, extra: &[&str]) -> Pacserve {
        Self::try_start(conf, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(conf: &Path, extra: &[&str]) -> Result<Pacserve, String> {
        preflight::require();
        let has = |k: &str| {
            extra
                .iter()
                .any(|a| *a == k || a.starts_with(&format!("{k}=")))
        };
        let mut args: Vec<String> = Vec::new();
        if !has("--address") {
            args.extend(["--address".into(), "127.0.0.1".into()]);
        }
        if !has("--port") {
            args.extend(["--port".into(), "0".into()]);
        }
        if !has("--pacman-conf") {
            args.extend(["--pacman-conf".into(), conf.display().to_string()]);
        }
        if !has("--verbose") && !has("--quiet") {
            args.push("--verbose".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn pacserve: {e}"))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let reader = drain(child.stderr.take().expect("stderr is piped"), log.clone());
        let mut ps = Pacserve {
            child,
            port: 0,
            log,
            reader: Some(reader),
            stopped: false,
        };
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            if let Some(port) = listening_port(&ps.log()) {
                ps.port = port;
                return Ok(ps);
            }
            if let Ok(Some(status)) = ps.child.try_wait() {
                // Let the reader pick up the last words.
                thread::sleep(Duration::from_millis(100));
                return Err(format!(
                    "pacserve {args:?} exited with {status} before listening; stderr:\n{}",
                    ps.log()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "pacserve {args:?} printed no `listening on` within {START_LIMIT:?}; stderr:\n{}",
            ps.log()
        ))
    }

    /// Run pacserve with exactly `args` (nothing added) and wait (bounded, 10 s) for it to exit:
    /// for configuration and command-line errors.
    pub fn run_to_exit(args: &[&str]) -> Ran {
        run_bounded(Command::new(bin()).args(args), Duration::from_secs(10))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything pacserve wrote to stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// The request lines of the log, parsed.
    pub fn requests(&self) -> Vec<LogLine> {
        self.log().lines().filter_map(parse_log_line).collect()
    }

    /// Wait (bounded) for a request line matching `pred`: log lines are written after the
    /// answer, so a client may see the answer a moment before the line.
    pub fn wait_request(
        &self,
        limit: Duration,
        pred: impl Fn(&LogLine) -> bool,
    ) -> Option<LogLine> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.requests().into_iter().find(|l| pred(l)) {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait (bounded) for `needle` anywhere in the log.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || self.log().contains(needle))
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        !self.stopped && matches!(self.child.try_wait(), Ok(None))
    }

    /// Kill (by pid) and reap; idempotent.
    pub fn stop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.stopped = true;
        }
        if let Some(r) = self.reader.take() {
            join_readers(vec![r], Duration::from_secs(5));
        }
    }
}

impl Drop for Pacserve {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP client

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }
}

/// One TCP connection for hand-made requests, keeping unread bytes between responses so that
/// pipelined answers can be read one by one.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub fn connect(port: u16) -> io::Result<RawConn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(CLIENT_IO_TIMEOUT))?;
        stream.set_write_timeout(Some(CLIENT_IO_TIMEOUT))?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Half-close: tell the server no more bytes will come.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Read more bytes into the buffer; Ok(0) on EOF.
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "response deadline"));
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Read one response. `head_request`: the request was HEAD, so no body follows.
    pub fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let deadline = Instant::now() + RESPONSE_LIMIT;
        let head_len = loop {
            if let Some(n) = find_head_end(&self.buf) {
                break n;
            }
            if self.buf.len() > CLIENT_MAX_HEAD {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
            }
            if self.fill(deadline)? == 0 {
                let what = if self.buf.is_empty() {
                    "connection closed before a response".to_string()
                } else {
                    format!(
                        "connection closed inside a response head: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    )
                };
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, what));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_len]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .strip_prefix("HTTP/1.")
            .and_then(|r| r.get(2..5))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad status line {status_line:?}"),
                )
            })?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        self.buf.drain(..head_len);
        let mut resp = Response {
            status,
            head,
            headers,
            body: Vec::new(),
        };
        let no_body = head_request || (100..200).contains(&status) || matches!(status, 204 | 304);
        if no_body {
            return Ok(resp);
        }
        match resp.content_length() {
            Some(len) => {
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= CLIENT_MAX_RESPONSE)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "body too large"))?;
                while self.buf.len() < len {
                    if self.fill(deadline)? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("body cut short: {} of {len} bytes", self.buf.len()),
                        ));
                    }
                }
                resp.body = self.buf.drain(..len).collect();
            }
            None => {
                // No length: the body runs to the close.
                while self.buf.len() <= CLIENT_MAX_RESPONSE && self.fill(deadline)? > 0 {}
                resp.body = std::mem::take(&mut self.buf);
            }
        }
        Ok(resp)
    }

    /// Everything the server sends until it closes (or errors, or `limit` passes), bounded.
    pub fn read_until_close(&mut self, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        while self.buf.len() <= CLIENT_MAX_RESPONSE {
            match self.fill(deadline) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// True when the server has closed the connection (EOF or reset) within `limit`;
    /// bytes it sent first are kept for `read_response`.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(_) => return true,
            }
        }
        let _ = self.stream.set_read_timeout(Some(CLIENT_IO_TIMEOUT));
        false
    }
}

/// Send `raw` on a fresh connection and read one response.
pub fn exchange(port: u16, raw: &[u8], head_request: bool) -> io::Result<Response> {
    let mut c = RawConn::connect(port)?;
    c.send(raw)?;
    c.read_response(head_request)
}

/// A well-formed HTTP/1.1 request with Host, `Connection: close` and `extra` header lines.
pub fn request_bytes(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut s =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: pacserve-tests\r\n");
    for (k, v) in extra {
        let _ = write!(s, "{k}: {v}\r\n");
    }
    s.push_str("Connection: close\r\n\r\n");
    s.into_bytes()
}

/// `METHOD path` with extra headers on a fresh connection; panics on I/O errors.
pub fn request(port: u16, method: &str, path: &str, extra: &[(&str, &str)]) -> Response {
    exchange(port, &request_bytes(method, path, extra), method == "HEAD")
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn get(port: u16, path: &str) -> Response {
    request(port, "GET", path, &[])
}

pub fn head(port: u16, path: &str) -> Response {
    request(port, "HEAD", path, &[])
}

/// Lossy text of bytes, shortened for failure messages.
pub fn preview(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
    if bytes.len() > 400 {
        format!("{s}... ({} bytes)", bytes.len())
    } else {
        s
    }
}

/// True when `needle` occurs in `hay`.
pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
