//! The HTTP/1.1 server shell: accept loop, one task per connection, keep-alive and
//! pipelining, time limits on every read and write, zero-copy file bodies.
//!
//! I/O. What to answer is the [`Handler`]'s business (the application's); this module only
//! moves bytes and tells the handler how each response ended.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smol::Async;
use smol::Timer;
use smol::channel::Receiver;
use smol::future::FutureExt;
use smol::io::AsyncWriteExt;

use crate::http::date::format_http_date;
use crate::http::message::{Body, Method, Request, Response, error_text, reason};
use crate::http::parse::{ParseError, Parsed, parse_request};
use crate::limits::{
    DRAIN_POLL, DRAIN_TIMEOUT, HEAD_READ_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS, MAX_HEAD_BYTES,
    SENDFILE_CHUNK, WRITE_STALL_TIMEOUT,
};

/// An answer the shell gave by itself, without asking the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellAnswer {
    /// The head was malformed, too large, or cut short (the error says which).
    Malformed(ParseError),
    /// The head did not arrive within its time limit (408).
    TimedOut,
    /// Every connection slot was taken (503).
    Busy,
    /// A request the shell refuses before the handler sees it (HTTP/1.1 without Host, a body).
    Refused,
}

/// One finished response, for the handler's log and counters.
#[derive(Debug)]
pub struct Completed<'a, O> {
    pub peer: SocketAddr,
    /// The request answered; None when the shell answered before one was read.
    pub request: Option<&'a Request>,
    pub status: u16,
    /// Body bytes sent (fewer than promised when the client went away).
    pub body_bytes: u64,
    /// The body was a file (a cached package).
    pub from_file: bool,
    pub outcome: O,
    /// Why the shell answered by itself, for the log.
    pub shell: Option<ShellAnswer>,
}

/// Something that answers requests.
pub trait Handler: Send + Sync + 'static {
    /// What the handler says about each answer; carried to [`Handler::completed`].
    type Outcome: Copy + Send + Sync + 'static;

    fn handle(&self, req: &Request) -> impl Future<Output = (Response, Self::Outcome)> + Send;

    /// The outcome of an answer the shell gave by itself.
    fn shell_outcome(&self, answer: ShellAnswer) -> Self::Outcome;

    /// A response is done (sent whole, or cut short): log it, count it.
    fn completed(&self, done: &Completed<'_, Self::Outcome>);
}

/// Accept connections, each on its own task, at most `MAX_CONNECTIONS` at a time, until
/// `stop` is closed. Then stop accepting, close idle connections, let responses in flight
/// finish for at most `DRAIN_TIMEOUT`, and return.
pub async fn serve<H: Handler>(listener: Async<TcpListener>, handler: Arc<H>, stop: Receiver<()>) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = listener
            .accept()
            .or(async {
                let _ = stop.recv().await;
                Err(io::Error::new(io::ErrorKind::Interrupted, "stopping"))
            })
            .await;
        if stop.is_closed() {
            // A connection accepted in the same instant as the stop is dropped unanswered.
            break;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin.
                crate::error!("accept failed: {e}");
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            refuse_busy(stream.get_ref(), peer, &*handler);
            continue;
        }
        let guard = ConnectionSlot::take(&active);
        let handler = handler.clone();
        let stop = stop.clone();
        crate::sys::rt::spawn(async move {
            let _guard = guard;
            let _ = stream.get_ref().set_nodelay(true);
            if let Err(e) = connection(stream, peer, &*handler, &stop).await {
                crate::verbose!("{peer}: connection ended: {e}");
            }
        })
        .detach();
    }
    // New connections are refused from here on.
    drop(listener);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while active.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        Timer::after(DRAIN_POLL).await;
    }
    let left = active.load(Ordering::Relaxed);
    if left > 0 {
        crate::error!("stopping with {left} connection(s) still open");
    }
}

/// Over the cap: one non-blocking write of a 503 and close, no task and no waiting.
fn refuse_busy<H: Handler>(stream: &TcpStream, peer: SocketAddr, handler: &H) {
    use std::io::Write as _;
    let text = error_text(503);
    let head = format!(
        "HTTP/1.1 503 {}\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{text}",
        reason(503),
        text.len()
    );
    let mut s = stream;
    let _ = s.write(head.as_bytes());
    handler.completed(&Completed {
        peer,
        request: None,
        status: 503,
        body_bytes: 0,
        from_file: false,
        outcome: handler.shell_outcome(ShellAnswer::Busy),
        shell: Some(ShellAnswer::Busy),
    });
}

struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlot {
    fn take(active: &Arc<AtomicUsize>) -> ConnectionSlot {
        active.fetch_add(1, Ordering::Relaxed);
        ConnectionSlot(active.clone())
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn timed_out(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what)
}

/// Race `fut` against a timer.
async fn within<T>(
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    fut.or(async {
        Timer::after(limit).await;
        Err(timed_out(what))
    })
    .await
}

async fn connection<H: Handler>(
    stream: Async<TcpStream>,
    peer: SocketAddr,
    handler: &H,
    stop: &Receiver<()>,
) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    let mut filled = 0usize;
    loop {
        // Read until one whole head is buffered; leftover bytes are the next pipelined request.
        let head_deadline = if filled > 0 {
            Some(Instant::now() + HEAD_READ_TIMEOUT)
        } else {
            None
        };
        let mut head_deadline = head_deadline;
        let (req, consumed) = loop {
            match parse_request(&buf[..filled]) {
                Ok(Parsed::Complete { value, len }) => {
                    let req = Request {
                        peer,
                        method: match value.method {
                            "GET" => Method::Get,
                            "HEAD" => Method::Head,
                            _ => Method::Other,
                        },
                        method_text: value.method.to_string(),
                        target: value.target.to_string(),
                        range: value.range.map(str::to_string),
                        if_range: value.if_range.map(str::to_string),
                        if_modified_since: value.if_modified_since.map(str::to_string),
                        has_body: value.transfer_encoding
                            || value.content_length.is_some_and(|n| n > 0),
                        has_host: value.host.is_some(),
                        http11: value.minor_version == 1,
                    };
                    let keep = value.keep_alive();
                    break (Some((req, keep)), len);
                }
                Ok(Parsed::Partial) => {}
                Err(e) => {
                    reject(&stream, peer, e, handler).await;
                    return Ok(());
                }
            }
            if filled == buf.len() {
                reject(&stream, peer, ParseError::HeadTooLarge, handler).await;
                return Ok(());
            }
            let limit = match head_deadline {
                None => IDLE_TIMEOUT,
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            };
            let idle = filled == 0;
            let read = within(
                limit,
                "timed out reading a request",
                stream.read_with(|s| {
                    use std::io::Read as _;
                    let mut s = s;
                    s.read(&mut buf[filled..])
                }),
            )
            .or(async {
                // Between requests, a shutdown closes the connection at once.
                if idle {
                    let _ = stop.recv().await;
                    Ok(0)
                } else {
                    std::future::pending().await
                }
            })
            .await;
            match read {
                // The client closed its side with nothing asked (or only the empty lines
                // allowed before a request line): nothing to answer.
                Ok(0) if buf[..filled].iter().all(|b| matches!(b, b'\r' | b'\n')) => {
                    return Ok(());
                }
                // Part of a head, then the end: the client may still be reading (a
                // half-close), so say the request was incomplete.
                Ok(0) => {
                    reject(&stream, peer, ParseError::Incomplete, handler).await;
                    return Ok(());
                }
                Ok(n) => {
                    filled += n;
                    head_deadline.get_or_insert_with(|| Instant::now() + HEAD_READ_TIMEOUT);
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut && filled == 0 => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    let resp = Response::new(408).closing();
                    let _ = write_response(&stream, &resp, false).await;
                    handler.completed(&Completed {
                        peer,
                        request: None,
                        status: 408,
                        body_bytes: 0,
                        from_file: false,
                        outcome: handler.shell_outcome(ShellAnswer::TimedOut),
                        shell: Some(ShellAnswer::TimedOut),
                    });
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        };
        let Some((req, keep_alive)) = req else {
            return Ok(());
        };
        buf.copy_within(consumed..filled, 0);
        filled -= consumed;

        let (mut resp, outcome, shell) = if (req.http11 && !req.has_host) || req.has_body {
            // A body we never expect: rather than skip one of unknown size, close.
            let refused = ShellAnswer::Refused;
            let outcome = handler.shell_outcome(refused);
            (Response::new(400).closing(), outcome, Some(refused))
        } else {
            let (resp, outcome) = handler.handle(&req).await;
            (resp, outcome, None)
        };
        if !keep_alive {
            resp.close = true;
        }
        let with_body = req.method != Method::Head;
        let sent = write_response(&stream, &resp, with_body).await;
        handler.completed(&Completed {
            peer,
            request: Some(&req),
            status: resp.status,
            body_bytes: sent.as_ref().map_or(0, |n| *n),
            from_file: matches!(resp.body, Body::File { .. }),
            outcome,
            shell,
        });
        sent?;
        if resp.close || stop.is_closed() {
            return Ok(());
        }
        // A keep-alive client with pipelined requests must not starve the other connections.
        smol::future::yield_now().await;
    }
}

async fn reject<H: Handler>(
    stream: &Async<TcpStream>,
    peer: SocketAddr,
    e: ParseError,
    handler: &H,
) {
    let resp = Response::new(e.status()).closing();
    let bytes = write_response(stream, &resp, true).await.unwrap_or(0);
    let shell = ShellAnswer::Malformed(e);
    handler.completed(&Completed {
        peer,
        request: None,
        status: resp.status,
        body_bytes: bytes,
        from_file: false,
        outcome: handler.shell_outcome(shell),
        shell: Some(shell),
    });
}

/// Write head and (unless `with_body` is false) body; the body bytes written.
async fn write_response(
    stream: &Async<TcpStream>,
    resp: &Response,
    with_body: bool,
) -> io::Result<u64> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut head = String::with_capacity(256);
    head.push_str("HTTP/1.1 ");
    head.push_str(&resp.status.to_string());
    head.push(' ');
    head.push_str(reason(resp.status));
    head.push_str("\r\nDate: ");
    head.push_str(&format_http_date(now));
    head.push_str("\r\nServer: pacserve\r\n");
    for (name, value) in &resp.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    if resp.status != 304 {
        head.push_str("Content-Length: ");
        head.push_str(&resp.body.len().to_string());
        head.push_str("\r\n");
    }
    if let Body::Text(_) = resp.body {
        head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    if resp.close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");

    let mut s = stream;
    match (&resp.body, with_body) {
        (Body::Text(text), true) => {
            head.push_str(text);
            within(
                WRITE_STALL_TIMEOUT,
                "write stalled",
                s.write_all(head.as_bytes()),
            )
            .await?;
            Ok(text.len() as u64)
        }
        (Body::Shared(bytes), true) => {
            within(
                WRITE_STALL_TIMEOUT,
                "write stalled",
                s.write_all(head.as_bytes()),
            )
            .await?;
            within(WRITE_STALL_TIMEOUT, "write stalled", s.write_all(bytes)).await?;
            Ok(bytes.len() as u64)
        }
        (Body::File { file, start, len }, true) => {
            within(
                WRITE_STALL_TIMEOUT,
                "write stalled",
                s.write_all(head.as_bytes()),
            )
            .await?;
            send_file(stream, file, *start, *len).await
        }
        _ => {
            within(
                WRITE_STALL_TIMEOUT,
                "write stalled",
                s.write_all(head.as_bytes()),
            )
            .await?;
            Ok(0)
        }
    }
}

/// Zero-copy: sendfile(2) from the cache file straight into the socket.
async fn send_file(
    stream: &Async<TcpStream>,
    file: &File,
    start: u64,
    len: u64,
) -> io::Result<u64> {
    let end = start + len;
    let mut offset = start;
    while offset < end {
        let chunk = (end - offset).min(SENDFILE_CHUNK as u64) as usize;
        let n = within(
            WRITE_STALL_TIMEOUT,
            "write stalled",
            stream.write_with(|sock| {
                let mut off = offset;
                rustix::fs::sendfile(sock, file, Some(&mut off), chunk).map_err(io::Error::from)
            }),
        )
        .await?;
        if n == 0 {
            // The file shrank under us; the client cannot get what Content-Length promised.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "cache file shrank while sending",
            ));
        }
        offset += n as u64;
        // A fast client on loopback could otherwise keep this task running without a pause.
        smol::future::yield_now().await;
    }
    Ok(len)
}
