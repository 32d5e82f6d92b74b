//! The hub's HTTP (I/O, blocking: each call runs on the blocking pool): a peer's `/info`
//! listing with its validator, and one file pulled into its temporary with a Range resume,
//! at most at the configured rate, checked against the peer's Content-Length and SHA-256
//! (and this host's sync database when it knows the file), then synced to disk.
//!
//! Every read and write on the socket has a stall limit, heads are bounded like the server's,
//! a listing's size is bounded, and a pull never takes more bytes than it was promised.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::auth::Lan;
use crate::http::message::{HOP_HEADER, PACSERVE_AGENT_PREFIX};
use crate::http::parse::{Parsed, parse_response};
use crate::limits::{
    HUB_CONNECT_TIMEOUT, HUB_HASH_STACK, HUB_MAX_LISTING_BYTES, HUB_PULL_BUFFERS, HUB_PULL_CHUNK,
    HUB_STALL_TIMEOUT, HUB_WRITEBACK_STEP, MAX_HEAD_BYTES, READ_BUFFER_START,
};
use crate::peers::lookup::Want;

/// Why a pull did not bring the file.
#[derive(Debug)]
pub enum Failure {
    /// The peer failed (refused, stalled, closed early, answered something else): the bytes
    /// so far stay, for a resume.
    Peer(String),
    /// The peer does not know its copy's SHA-256 yet (it hashes it meanwhile): not a failure.
    NoHash,
    /// Not the file it must be (`size` or `sha256` differs): nothing is kept.
    Wrong(&'static str),
    /// The filesystem is full.
    Full(io::Error),
    /// Writing here failed otherwise.
    Local(io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Peer(why) => f.write_str(why),
            Failure::NoHash => f.write_str("the peer has not hashed its copy yet"),
            Failure::Wrong(what) => write!(f, "a wrong copy: its {what} differs"),
            Failure::Full(e) => write!(f, "no space left: {e}"),
            Failure::Local(e) => write!(f, "cannot write here: {e}"),
        }
    }
}

/// All pulls together at most `rate` bytes a second: each chunk read takes its turn on one
/// clock, and waits until the clock says its bytes may have arrived.
pub struct Limiter {
    rate: Option<u64>,
    next: Mutex<Instant>,
}

impl Limiter {
    pub fn new(rate: Option<u64>) -> Limiter {
        Limiter {
            rate,
            next: Mutex::new(Instant::now()),
        }
    }

    /// `n` bytes arrived: sleep as long as the rate asks.
    fn take(&self, n: usize) {
        let Some(rate) = self.rate else { return };
        let wait = {
            let mut next = crate::lock(&self.next);
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_nanos(n as u64 * 1_000_000_000 / rate);
            next.saturating_duration_since(now)
        };
        std::thread::sleep(wait);
    }
}

/// What a response head said, owned.
struct Head {
    status: u16,
    length: Option<u64>,
    sha256: Option<[u8; 32]>,
    etag: Option<String>,
    /// `bytes A-B/T` of a 206, as (A, B, T).
    range: Option<(u64, u64, u64)>,
}

/// A connection with one request sent and its response head read; `body` holds the bytes
/// of the body that came with the head.
struct Exchange {
    stream: TcpStream,
    head: Head,
    body: Vec<u8>,
}

/// `GET path` on `host:port` with `extra` header lines, as a pacserve (so the peer answers
/// from its own files only).
/// Signed for the LAN's key when there is one (peers answer `/info` only so).
fn get(
    host: &str,
    port: u16,
    path: &str,
    extra: &str,
    lan: Option<&Lan>,
) -> Result<Exchange, Failure> {
    let peer = |e: io::Error| Failure::Peer(e.to_string());
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    let mut stream = None;
    for addr in (host, port).to_socket_addrs().map_err(peer)? {
        match TcpStream::connect_timeout(&addr, HUB_CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or_else(|| peer(last))?;
    stream
        .set_read_timeout(Some(HUB_STALL_TIMEOUT))
        .map_err(peer)?;
    stream
        .set_write_timeout(Some(HUB_STALL_TIMEOUT))
        .map_err(peer)?;
    let authority = match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {PACSERVE_AGENT_PREFIX}{}\r\n\
         {HOP_HEADER}: 1\r\n{extra}{}Connection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        lan.map_or(String::new(), |l| format!(
            "{}: {}\r\n",
            crate::auth::request::HEADER,
            l.sign_request("GET", path)
        ))
    );
    stream.write_all(request.as_bytes()).map_err(peer)?;
    let mut buf = vec![0u8; READ_BUFFER_START];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_HEAD_BYTES {
                return Err(Failure::Peer("response head too large".into()));
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = stream.read(&mut buf[filled..]).map_err(peer)?;
        if n == 0 {
            return Err(Failure::Peer("connection closed before a response".into()));
        }
        filled += n;
        let parsed = parse_response(&buf[..filled])
            .map_err(|e| Failure::Peer(format!("bad response: {}", e.reason())))?;
        if let Parsed::Complete { value: h, len } = parsed {
            let head = Head {
                status: h.status,
                length: h.content_length,
                sha256: h.pacserve_sha256.and_then(crate::names::parse_sha256),
                etag: h.etag.map(str::to_string),
                range: h.content_range.and_then(content_range),
            };
            return Ok(Exchange {
                stream,
                head,
                body: buf[len..filled].to_vec(),
            });
        }
    }
}

/// `bytes A-B/T` (RFC 9110 §14.4), as (A, B, T).
fn content_range(v: &str) -> Option<(u64, u64, u64)> {
    let (span, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let num = |s: &str| match s.bytes().all(|c| c.is_ascii_digit()) {
        true => s.parse().ok(),
        false => None,
    };
    Some((num(a)?, num(b)?, num(total)?))
}

/// A listing that changed: its body and its validator.
pub struct Fresh {
    pub body: Vec<u8>,
    pub etag: Option<String>,
}

/// A peer's listing as it is now: Ok(None) when it still has the validator `etag` (a 304).
pub fn listing(
    host: &str,
    port: u16,
    etag: Option<&str>,
    lan: Option<&Lan>,
) -> Result<Option<Fresh>, Failure> {
    let extra = etag.map_or(String::new(), |t| format!("If-None-Match: {t}\r\n"));
    let mut x = get(host, port, crate::app::urls::INFO_PATH, &extra, lan)?;
    match x.head.status {
        304 => return Ok(None),
        200 => {}
        s => return Err(Failure::Peer(format!("/info answered {s}"))),
    }
    let len = match x.head.length {
        Some(n) if n <= HUB_MAX_LISTING_BYTES => n as usize,
        Some(_) => return Err(Failure::Peer("/info is too large".into())),
        None => return Err(Failure::Peer("/info without a Content-Length".into())),
    };
    let mut body = std::mem::take(&mut x.body);
    body.truncate(len);
    let have = body.len();
    body.resize(len, 0);
    x.stream
        .read_exact(&mut body[have..])
        .map_err(|e| Failure::Peer(format!("/info cut short: {e}")))?;
    Ok(Some(Fresh {
        body,
        etag: x.head.etag,
    }))
}

/// One file to pull.
pub struct Job<'a> {
    pub host: &'a str,
    pub port: u16,
    pub file: &'a str,
    /// Its size in the peer's listing.
    pub size: u64,
    /// What this host's sync database says it must be, when it knows the file.
    pub want: Option<Want>,
    /// Its temporary: bytes already there are resumed from.
    pub temp: &'a Path,
    /// Bytes in the temporary so far, for the status page.
    pub progress: &'a AtomicU64,
    /// The LAN's key, when it has one.
    pub lan: Option<&'a Lan>,
}

/// Pull `job` into its temporary, synced to disk; its SHA-256. On a wrong copy the
/// temporary is gone; on other failures it keeps what arrived.
pub fn pull(job: &Job<'_>, limiter: &Limiter) -> Result<[u8; 32], Failure> {
    if let Some(want) = job.want {
        if want.size != job.size {
            return Err(Failure::Wrong("size"));
        }
    }
    let wrong = |what| {
        let _ = std::fs::remove_file(job.temp);
        Err(Failure::Wrong(what))
    };
    let mut have = std::fs::metadata(job.temp).map_or(0, |m| m.len());
    if have >= job.size {
        let _ = std::fs::remove_file(job.temp);
        have = 0;
    }
    let range = match have {
        0 => String::new(),
        n => format!("Range: bytes={n}-\r\n"),
    };
    let path = format!("{}/{}", crate::app::urls::INFO_PATH, job.file);
    let mut x = get(job.host, job.port, &path, &range, job.lan)?;
    let start = match (x.head.status, x.head.range) {
        (200, _) => 0,
        (206, Some((a, b, total))) if a == have && b + 1 == total => {
            if total != job.size {
                return wrong("size");
            }
            a
        }
        (416, _) => {
            let _ = std::fs::remove_file(job.temp);
            return Err(Failure::Peer("the peer's copy is shorter than ours".into()));
        }
        (s, _) => return Err(Failure::Peer(format!("answered {s}"))),
    };
    if x.head.length != Some(job.size - start) {
        return wrong("size");
    }
    let Some(sha) = x.head.sha256 else {
        return Err(Failure::NoHash);
    };
    if job.want.and_then(|w| w.sha256).is_some_and(|w| w != sha) {
        return wrong("sha256");
    }
    let local = local_error;
    let out = OpenOptions::new()
        .create(true)
        .write(true)
        .read(true)
        .truncate(start == 0)
        .open(job.temp)
        .map_err(local)?;
    let body = std::mem::take(&mut x.body);
    let head = &body[..body.len().min((job.size - start) as usize)];
    let mut hasher = Sha256::new();
    copy(job, limiter, &mut x.stream, &out, start, head, &mut hasher)?;
    let got = <[u8; 32]>::from(hasher.finalize());
    out.sync_all().map_err(local)?;
    if got != sha {
        if start > 0 {
            // The bytes kept from before may be another copy's: start over, blame no one.
            let _ = std::fs::remove_file(job.temp);
            return Err(Failure::Peer(
                "the resumed copy did not match: starting over".into(),
            ));
        }
        return wrong("sha256");
    }
    Ok(sha)
}

/// A failure to write here: a full disk (or quota) apart.
fn local_error(e: io::Error) -> Failure {
    match e.raw_os_error() {
        Some(c) if c == rustix::io::Errno::NOSPC.raw_os_error() => Failure::Full(e),
        Some(c) if c == rustix::io::Errno::DQUOT.raw_os_error() => Failure::Full(e),
        _ => Failure::Local(e),
    }
}

/// The bytes of the partial copy before `start`, then `head` and the rest of the body from
/// `stream`, written to `out` from `start` on, every byte hashed in order. The socket is
/// read and the file written on this thread while the chunks before are hashed on another,
/// and the kernel is asked to write each [`HUB_WRITEBACK_STEP`] to disk as it is done.
fn copy(
    job: &Job<'_>,
    limiter: &Limiter,
    stream: &mut TcpStream,
    out: &File,
    start: u64,
    head: &[u8],
    hasher: &mut Sha256,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; HUB_PULL_CHUNK];
    let mut offset = 0;
    while offset < start {
        let want = buf.len().min((start - offset) as usize);
        let n = out.read_at(&mut buf[..want], offset).map_err(local_error)?;
        if n == 0 {
            return Err(Failure::Peer("the partial copy shrank".into()));
        }
        offset += n as u64;
        hasher.update(&buf[..n]);
    }
    out.set_len(start).map_err(local_error)?;
    // What came with the head first, then the socket.
    let first = head.len().min((job.size - start) as usize);
    out.write_all_at(&head[..first], start)
        .map_err(local_error)?;
    hasher.update(&head[..first]);
    limiter.take(first);
    let (full, hashing) = mpsc::sync_channel::<(Vec<u8>, usize)>(HUB_PULL_BUFFERS);
    let (free, freed) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let hash = move || {
            for (b, n) in hashing {
                hasher.update(&b[..n]);
                let _ = free.send(b);
            }
        };
        let hashed = std::thread::Builder::new()
            .stack_size(HUB_HASH_STACK)
            .spawn_scoped(s, hash)
            .map_err(local_error)?;
        let mut spare = (1..HUB_PULL_BUFFERS).map(|_| vec![0u8; HUB_PULL_CHUNK]);
        let mut next = Some(buf);
        let read = receive(
            job,
            limiter,
            stream,
            out,
            start + first as u64,
            || match next.take().or_else(|| spare.next()) {
                Some(b) => Some(b),
                None => freed.recv().ok(),
            },
            |b, n| full.send((b, n)).is_ok(),
        );
        drop(full);
        let _ = hashed.join();
        read
    })
}

/// The rest of the body from `stream`, written to `out` from `done` on: each chunk is read
/// into a buffer from `take` and handed to `give` once written.
fn receive(
    job: &Job<'_>,
    limiter: &Limiter,
    stream: &mut TcpStream,
    out: &File,
    mut done: u64,
    mut take: impl FnMut() -> Option<Vec<u8>>,
    mut give: impl FnMut(Vec<u8>, usize) -> bool,
) -> Result<(), Failure> {
    let lost = || Failure::Local(io::Error::other("the hashing thread stopped"));
    let mut started = done;
    while done < job.size {
        let mut buf = take().ok_or_else(lost)?;
        let want = buf.len().min((job.size - done) as usize);
        let n = match stream.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Failure::Peer(format!(
                    "closed after {done} of {} bytes",
                    job.size
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(Failure::Peer(e.to_string())),
        };
        out.write_all_at(&buf[..n], done).map_err(local_error)?;
        done += n as u64;
        job.progress.store(done, Ordering::Relaxed);
        if !give(buf, n) {
            return Err(lost());
        }
        if done - started >= HUB_WRITEBACK_STEP || done == job.size {
            // Start writing the step out now (a hint: the sync after is what counts).
            let len = std::num::NonZeroU64::new(done - started);
            let _ = rustix::fs::fadvise(out, started, len, rustix::fs::Advice::DontNeed);
            started = done;
        }
        limiter.take(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// How long a test waits for its server.
    const BOUND: Duration = Duration::from_secs(10);

    /// A server for one connection that answers with `head` and `body` (`{len}` in the head
    /// is the body's length); the request head it read comes back.
    fn server(head: &str, body: Vec<u8>) -> (u16, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let head = head.replace("{len}", &body.len().to_string());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(BOUND)).unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 1024];
            while !got.ends_with(b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&b[..n]),
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&got).into_owned());
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        });
        (port, rx)
    }

    struct Temp(std::path::PathBuf);
    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn temp(tag: &str) -> Temp {
        Temp(std::env::temp_dir().join(format!("pacserve-pull-{tag}-{}", std::process::id())))
    }

    fn sha(b: &[u8]) -> String {
        crate::names::sha256_hex(&Sha256::digest(b).into())
    }

    fn job<'a>(port: u16, size: u64, t: &'a Temp, p: &'a AtomicU64) -> Job<'a> {
        Job {
            host: "127.0.0.1",
            port,
            file: "a-1-1-any.pkg.tar.zst",
            size,
            want: None,
            temp: &t.0,
            progress: p,
            lan: None,
        }
    }

    #[test]
    fn a_whole_pull_and_a_resumed_one() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let (t, p, limit) = (temp("whole"), AtomicU64::new(0), Limiter::new(None));
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {{len}}\r\nX-Pacserve-Sha256: {}\r\n\r\n",
            sha(&data)
        );
        let (port, req) = server(&head, data.clone());
        let got = pull(&job(port, data.len() as u64, &t, &p), &limit).expect("pulled");
        assert_eq!(crate::names::sha256_hex(&got), sha(&data));
        assert_eq!(std::fs::read(&t.0).unwrap(), data);
        let req = req.recv_timeout(BOUND).unwrap();
        assert!(
            req.starts_with("GET /info/a-1-1-any.pkg.tar.zst HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(!req.contains("Range"), "{req}");
        // Resume: 40,000 bytes there, the rest asked for with a Range.
        std::fs::write(&t.0, &data[..40_000]).unwrap();
        let head = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {{len}}\r\n\
             Content-Range: bytes 40000-99999/100000\r\nX-Pacserve-Sha256: {}\r\n\r\n",
            sha(&data)
        );
        let (port, req) = server(&head, data[40_000..].to_vec());
        pull(&job(port, data.len() as u64, &t, &p), &limit).expect("resumed");
        assert_eq!(std::fs::read(&t.0).unwrap(), data);
        assert!(
            req.recv_timeout(BOUND)
                .unwrap()
                .contains("\r\nRange: bytes=40000-\r\n")
        );
        assert_eq!(p.load(Ordering::Relaxed), 100_000);
    }

    #[test]
    fn a_pull_of_many_chunks_is_hashed_and_written_in_order() {
        // More chunks than buffers, past a writeback step, and a last chunk cut short.
        let len = HUB_WRITEBACK_STEP as usize + HUB_PULL_CHUNK * HUB_PULL_BUFFERS + 12_345;
        let mut data = vec![0u8; len];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let (t, p, limit) = (temp("chunks"), AtomicU64::new(0), Limiter::new(None));
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {{len}}\r\nX-Pacserve-Sha256: {}\r\n\r\n",
            sha(&data)
        );
        let (port, _req) = server(&head, data.clone());
        let got = pull(&job(port, len as u64, &t, &p), &limit).expect("pulled");
        assert_eq!(crate::names::sha256_hex(&got), sha(&data));
        assert!(
            std::fs::read(&t.0).unwrap() == data,
            "the stored bytes differ"
        );
        assert_eq!(p.load(Ordering::Relaxed), len as u64);
    }

    #[test]
    fn wrong_copies_are_never_kept() {
        let data = vec![5u8; 5000];
        let p = AtomicU64::new(0);
        let limit = Limiter::new(None);
        let cases: [(&str, String, Vec<u8>); 3] = [
            (
                "size",
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {{len}}\r\nX-Pacserve-Sha256: {}\r\n\r\n",
                    sha(&data)
                ),
                data[..4000].to_vec(),
            ),
            (
                "sha256",
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {{len}}\r\nX-Pacserve-Sha256: {}\r\n\r\n",
                    sha(b"other")
                ),
                data.clone(),
            ),
            (
                "sha256",
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {{len}}\r\nX-Pacserve-Sha256: {}\r\n\r\n",
                    sha(&data)
                ),
                vec![6u8; 5000],
            ),
        ];
        for (what, head, body) in cases {
            let t = temp("wrong");
            let (port, _req) = server(&head, body);
            match pull(&job(port, 5000, &t, &p), &limit) {
                Err(Failure::Wrong(w)) => assert_eq!(w, what),
                other => panic!("{what}: {other:?}"),
            }
            assert!(!t.0.exists(), "{what}: a wrong copy was kept");
        }
        // The sync database here says another SHA-256: not even downloaded.
        let t = temp("db");
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {{len}}\r\nX-Pacserve-Sha256: {}\r\n\r\n",
            sha(&data)
        );
        let (port, _req) = server(&head, data.clone());
        let mut j = job(port, 5000, &t, &p);
        j.want = Some(Want {
            size: 5000,
            sha256: Some([1; 32]),
        });
        assert!(matches!(pull(&j, &limit), Err(Failure::Wrong("sha256"))));
        // No SHA-256 from the peer: asked again later; cut short: the bytes stay.
        let (port, _req) = server(
            "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n",
            data.clone(),
        );
        assert!(matches!(
            pull(&job(port, 5000, &t, &p), &limit),
            Err(Failure::NoHash)
        ));
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nX-Pacserve-Sha256: {}\r\n\r\n",
            sha(&data)
        );
        let (port, _req) = server(&head, data[..3000].to_vec());
        assert!(matches!(
            pull(&job(port, 5000, &t, &p), &limit),
            Err(Failure::Peer(_))
        ));
        assert_eq!(
            std::fs::metadata(&t.0).unwrap().len(),
            3000,
            "kept for a resume"
        );
    }

    #[test]
    fn listings_and_their_validator() {
        let (port, req) = server(
            "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: \"ab\"\r\n\r\n",
            b"a-1-1-any.pkg.tar.zst 3\n".to_vec(),
        );
        let fresh = listing("127.0.0.1", port, None, None).unwrap().unwrap();
        assert_eq!(fresh.body, b"a-1-1-any.pkg.tar.zst 3\n");
        assert_eq!(fresh.etag.as_deref(), Some("\"ab\""));
        assert!(
            req.recv_timeout(BOUND)
                .unwrap()
                .starts_with("GET /info HTTP/1.1\r\n")
        );
        let (port, req) = server("HTTP/1.1 304 Not Modified\r\n\r\n", Vec::new());
        assert!(
            listing("127.0.0.1", port, Some("\"ab\""), None)
                .unwrap()
                .is_none()
        );
        assert!(
            req.recv_timeout(BOUND)
                .unwrap()
                .contains("\r\nIf-None-Match: \"ab\"\r\n")
        );
        assert_eq!(content_range("bytes 5-9/10"), Some((5, 9, 10)));
        assert_eq!(content_range("bytes 5-9/*"), None);
    }
}
