//! The test mirror ([`Mirror`]): a real HTTP/1.1 file server that records every request, on
//! 127.0.0.1 or inside a network namespace; and servers that misbehave: [`HungServer`] (accepts,
//! never answers) and [`dead_port`] (refuses).

use std::fmt::{self, Write as _};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::http::{find_head_end, http_date_secs, mtime_secs, parse_http_date};
use super::{LOG_WAIT, lan, wait_until};

/// Socket timeouts inside the test mirror.
const MIRROR_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Most concurrent connection threads in one test mirror, and most sockets a hung server holds.
const MIRROR_MAX_CONNS: usize = 256;
/// Largest request head the test mirror reads.
const MIRROR_MAX_HEAD: usize = 64 * 1024;
/// Accept errors in a row after which a server gives up (the listener is broken).
const MAX_ACCEPT_ERRORS: usize = 1000;

/// One request as the test mirror saw it.
#[derive(Debug, Clone)]
pub struct MirrorRequest {
    /// The client's address.
    pub from: IpAddr,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub range: Option<String>,
    pub if_modified_since: Option<String>,
    pub user_agent: Option<String>,
}

/// A listener and the thread accepting on it; stopped on drop: the listener is shut down,
/// which wakes the blocked `accept` from any namespace without a connection to itself.
struct Acceptor {
    stop: Arc<AtomicBool>,
    wake: TcpListener,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    fn start(listener: TcpListener, mut serve: impl FnMut(TcpStream) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let wake = listener.try_clone().expect("clone the listener");
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut errors = 0;
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match conn {
                        Ok(s) => {
                            errors = 0;
                            serve(s);
                        }
                        Err(_) => {
                            errors += 1;
                            if errors > MAX_ACCEPT_ERRORS {
                                break;
                            }
                        }
                    }
                }
            })
        };
        Acceptor {
            stop,
            wake,
            thread: Some(thread),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // On Linux, shutting down a listening socket makes a blocked accept() fail at once.
        let _ = rustix::net::shutdown(&self.wake, rustix::net::Shutdown::Read);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

/// A real HTTP/1.1 server serving files below `root` (thread per connection,
/// `Connection: close`). GET and HEAD; Last-Modified and If-Modified-Since; single ranges.
pub struct Mirror {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<MirrorRequest>>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<Acceptor>,
}

impl Mirror {
    /// On 127.0.0.1, a port of its own.
    pub fn start(root: &Path) -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mirror");
        Self::serve(listener, root)
    }

    /// Inside the network namespace `ns`, on `addr` (an address of that namespace).
    pub fn start_in(ns: &str, addr: SocketAddr, root: &Path) -> Mirror {
        let listener = lan::in_netns(ns, || TcpListener::bind(addr))
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("bind the mirror on {addr} in {ns}: {e}"));
        Self::serve(listener, root)
    }

    fn serve(listener: TcpListener, root: &Path) -> Mirror {
        let addr = listener.local_addr().expect("mirror address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let workers: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (root, log, workers) = (root.to_path_buf(), log.clone(), workers.clone());
            Acceptor::start(listener, move |stream| {
                let mut w = workers.lock().unwrap();
                w.retain(|h| !h.is_finished());
                if w.len() >= MIRROR_MAX_CONNS {
                    return; // dropped: the client sees a close
                }
                let (root, log) = (root.clone(), log.clone());
                w.push(thread::spawn(move || {
                    let _ = mirror_conn(stream, &root, &log);
                }));
            })
        };
        Mirror {
            addr,
            log,
            workers,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
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

    /// Fail unless exactly `n` GETs of a path ending in `suffix` were served.
    pub fn assert_served(&self, suffix: &str, n: usize) {
        let got = self.served(suffix);
        assert_eq!(
            got,
            n,
            "the mirror served {suffix} {got} times:\n{}",
            self.dump()
        );
    }

    /// Fail unless exactly `n` requests asked for a path ending in `suffix`.
    pub fn assert_asked(&self, suffix: &str, n: usize) {
        let got = self.asked(suffix);
        assert_eq!(
            got,
            n,
            "the mirror was asked {got} times for {suffix}:\n{}",
            self.dump()
        );
    }

    pub fn count(&self, pred: impl Fn(&MirrorRequest) -> bool) -> usize {
        self.log.lock().unwrap().iter().filter(|r| pred(r)).count()
    }

    /// Wait (bounded by [`LOG_WAIT`]) for a request matching `pred`.
    pub fn wait_request(&self, pred: impl Fn(&MirrorRequest) -> bool) -> bool {
        wait_until(LOG_WAIT, || self.count(&pred) > 0)
    }

    /// A readable dump of the request log for failure messages.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for r in self.log.lock().unwrap().iter() {
            let _ = writeln!(
                s,
                "  {} {} {} -> {} range={:?} ims={:?}",
                r.from, r.method, r.path, r.status, r.range, r.if_modified_since
            );
        }
        s
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        drop(self.acceptor.take());
        // Workers end by themselves: one request per connection and socket timeouts.
        for w in self.workers.lock().unwrap().drain(..) {
            let _ = w.join();
        }
    }
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
    let from = s.peer_addr()?.ip();
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
        from,
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
    if method != "HEAD" && status != 304 {
        out.extend_from_slice(&body);
    }
    s.write_all(&out)?;
    s.flush()?;
    let _ = s.shutdown(Shutdown::Write);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Servers that misbehave

/// A server on 127.0.0.1 that accepts connections and never answers: a mirror that hangs.
pub struct HungServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<Acceptor>,
}

impl HungServer {
    pub fn start() -> HungServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hung server");
        let addr = listener.local_addr().expect("hung server address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (accepted, held) = (accepted.clone(), held.clone());
            Acceptor::start(listener, move |s| {
                accepted.fetch_add(1, Ordering::SeqCst);
                let mut held = held.lock().unwrap();
                if held.len() < MIRROR_MAX_CONNS {
                    held.push(s);
                }
            })
        };
        HungServer {
            addr,
            accepted,
            held,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`, as `--pacserver` takes it.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for HungServer {
    fn drop(&mut self) {
        drop(self.acceptor.take());
        self.held.lock().unwrap().clear();
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now (bound, read, released): how a
/// test picks pacserve's port in advance. Someone else may take it; retry on failure.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind for a free port");
    l.local_addr().expect("local address").port()
}

/// A UDP port on 127.0.0.1 that nothing uses right now, so a multicast socket meets no other
/// test's traffic.
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind for a free UDP port");
    s.local_addr().expect("local address").port()
}

/// A port on 127.0.0.1 where connections are refused for as long as this lives: a TCP
/// socket is bound to it and never listens, so the kernel answers every SYN with a reset and
/// nobody else can bind the port meanwhile.
pub struct DeadPort {
    _socket: OwnedFd,
    port: u16,
}

/// See [`DeadPort`].
pub fn dead_port() -> DeadPort {
    use rustix::net::{AddressFamily, SocketType, bind, getsockname, socket};
    let socket = socket(AddressFamily::INET, SocketType::STREAM, None).expect("a TCP socket");
    bind(&socket, &SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind a dead port");
    let addr =
        SocketAddr::try_from(getsockname(&socket).expect("getsockname")).expect("an IPv4 address");
    DeadPort {
        _socket: socket,
        port: addr.port(),
    }
}

impl DeadPort {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, as `--pacserver` takes it.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl fmt::Display for DeadPort {
    /// The port number, so `format!("http://127.0.0.1:{dead}/")` reads as it did.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.port)
    }
}
