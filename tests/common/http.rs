//! HTTP on the test's side: a raw client ([`RawConn`]) for exact requests, pipelining and
//! hostile bytes, and HTTP dates of our own (so the daemon's code is not checked against
//! itself).

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Socket read/write timeout of the raw client; longer than pacserve's 10 s head timeout so
/// that a daemon closing an idle connection is seen as a close, not as our timeout.
pub const CLIENT_IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Overall deadline for one response read by the raw client.
pub const RESPONSE_LIMIT: Duration = Duration::from_secs(30);
/// Longest a connect may take (loopback or a namespace's bridge: instant when it works).
pub const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// Largest response the raw client reads.
const CLIENT_MAX_RESPONSE: usize = 256 * 1024 * 1024;
/// Largest response head the raw client reads.
const CLIENT_MAX_HEAD: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// HTTP dates

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
// Raw client

/// Where the blank line that ends a head is, counted past it.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The status of a response that starts `bytes`, if it is one.
pub fn status_of(bytes: &[u8]) -> Option<u16> {
    let s = bytes.strip_prefix(b"HTTP/1.")?;
    std::str::from_utf8(s.get(2..5)?).ok()?.parse().ok()
}

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

    /// The body as text (for JSON, metrics, listings).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One TCP connection for hand-made requests, keeping unread bytes between responses so that
/// pipelined answers can be read one by one.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connect to `127.0.0.1:port`.
    pub fn connect(port: u16) -> io::Result<RawConn> {
        Self::connect_to(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    pub fn connect_to(addr: SocketAddr) -> io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_LIMIT)?;
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

    /// `METHOD path` kept alive (no `Connection: close`), and its response.
    pub fn ask(&mut self, method: &str, path: &str) -> io::Result<Response> {
        self.send(&keep_alive_request(method, path))?;
        self.read_response(method == "HEAD")
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
        // A signal to the test process (a child exiting) is no answer: read again.
        let n = loop {
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Read one response head: status and headers, an empty body. Bytes after the head stay
    /// buffered ([`RawConn::take_buffered`]).
    pub fn read_head(&mut self) -> io::Result<Response> {
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
        let status = status_of(status_line.as_bytes()).ok_or_else(|| {
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
        Ok(Response {
            status,
            head,
            headers,
            body: Vec::new(),
        })
    }

    /// Read one response. `head_request`: the request was HEAD, so no body follows.
    pub fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let deadline = Instant::now() + RESPONSE_LIMIT;
        let mut resp = self.read_head()?;
        let status = resp.status;
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

    /// The bytes read past the last response, taken out of the buffer.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// One read straight into `out` (up to 64 KiB); Ok(0) on EOF.
    pub fn read_into(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        out.extend_from_slice(&chunk[..n]);
        Ok(n)
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
    let mut s = keep_alive_head(method, path);
    for (k, v) in extra {
        let _ = write!(s, "{k}: {v}\r\n");
    }
    s.push_str("Connection: close\r\n\r\n");
    s.into_bytes()
}

/// A well-formed HTTP/1.1 request that keeps the connection open.
pub fn keep_alive_request(method: &str, path: &str) -> Vec<u8> {
    let mut s = keep_alive_head(method, path);
    s.push_str("\r\n");
    s.into_bytes()
}

fn keep_alive_head(method: &str, path: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: pacserve-tests\r\n")
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

/// Fail with a short message (not megabytes of bytes) when `got` is not `want`.
pub fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} bytes received, {} expected; first difference at {first_diff:?}",
            got.len(),
            want.len()
        );
    }
}
