//! One server connection, I/O (reads and writes its socket, every wait bounded by a
//! [`Timeouts`] value), as explicit steps the way darkhttpd keeps its connection states:
//! wait for a request → read its head → answer it → send the response → keep alive or close.
//!
//! What to answer is the [`Handler`]'s business; the answers given here without asking it
//! (a malformed or late head, a request the shell refuses) are reported to it all the same.

use std::fs::File;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use async_io::Async;
use smol::channel::Receiver;
use smol::future::FutureExt;
use smol::io::AsyncReadExt;

use crate::http::handler::{Completed, Handler, ShellAnswer};
use crate::http::head::{Head, HeadBuf};
use crate::http::message::date_now;
use crate::http::message::{Body, Method, Request, Response};
use crate::http::parse::{ParseError, Parsed, parse_request};
use crate::http::slots::Slot;
use crate::limits::{
    DRAIN_TIMEOUT, HEAD_READ_TIMEOUT, IDLE_TIMEOUT, LINGER_BYTES, LINGER_TIME, READ_BUFFER_START,
    SENDFILE_CHUNK, WRITE_STALL_TIMEOUT,
};
use crate::sys::rt::{until, within};

/// Every time limit of a server connection; `Timeouts::default()` is the one in `limits.rs`.
/// Tests use short ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From the first byte of a head to its blank line (`HEAD_READ_TIMEOUT`).
    pub head: Duration,
    /// Waiting for the next request with nothing buffered (`IDLE_TIMEOUT`).
    pub idle: Duration,
    /// One write making no progress (`WRITE_STALL_TIMEOUT`).
    pub write_stall: Duration,
    /// After the stop, for the responses in flight (`DRAIN_TIMEOUT`).
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            head: HEAD_READ_TIMEOUT,
            idle: IDLE_TIMEOUT,
            write_stall: WRITE_STALL_TIMEOUT,
            drain: DRAIN_TIMEOUT,
        }
    }
}

/// Serve one accepted connection until it closes, fails, or the stop leaves it idle.
pub async fn connection<H: Handler>(
    stream: Async<TcpStream>,
    peer: SocketAddr,
    slot: Slot,
    handler: &H,
    stop: &Receiver<()>,
    timeouts: Timeouts,
) -> io::Result<()> {
    let mut conn = Conn {
        stream,
        peer,
        slot,
        handler,
        stop,
        t: timeouts,
        buf: HeadBuf::new(),
    };
    let mut state = State::Idle;
    loop {
        state = match state {
            State::Idle => conn.idle().await?,
            State::ReadHead => conn.read_head().await?,
            State::Answer { req, keep_alive } => conn.answer(req, keep_alive).await,
            State::Send(reply) => conn.send(reply).await?,
            State::Done => return Ok(()),
        };
    }
}

/// Where a connection is; each step takes one and gives the next.
enum State<O> {
    /// Nothing buffered: wait for the next request's first bytes.
    Idle,
    /// Read one request head, part of which may be buffered already.
    ReadHead,
    /// A whole request head, for the handler (or the shell's refusal).
    Answer {
        req: Request,
        keep_alive: bool,
    },
    /// A response to send and report.
    Send(Reply<O>),
    Done,
}

/// A response and what the handler is told about it once it is sent.
struct Reply<O> {
    /// None when the shell answered before a request was read.
    request: Option<Request>,
    resp: Response,
    outcome: O,
    shell: Option<ShellAnswer>,
}

struct Conn<'a, H: Handler> {
    stream: Async<TcpStream>,
    peer: SocketAddr,
    /// Its connection slot, registered as idle while it waits between requests.
    slot: Slot,
    handler: &'a H,
    stop: &'a Receiver<()>,
    t: Timeouts,
    buf: HeadBuf,
}

type Step<H> = io::Result<State<<H as Handler>::Outcome>>;

impl<H: Handler> Conn<'_, H> {
    /// Between requests: bytes arrive (or the end), or the idle limit, the stop, or the
    /// server needing the slot closes the connection without a word. The head buffer shrinks
    /// back while it waits.
    async fn idle(&mut self) -> Step<H> {
        self.buf.shrink();
        // Bytes already waiting (a new connection's request, usually): not idle at all, so
        // never a connection to close when the server needs room.
        let mut first = [0u8; 1];
        if matches!(self.stream.get_ref().peek(&mut first), Ok(n) if n > 0) {
            return Ok(State::ReadHead);
        }
        let idle = self.slot.idle();
        let readable = async { self.stream.readable().await.map(|()| true) };
        let stopping = async {
            let _ = self.stop.recv().await;
            Ok(false)
        };
        let evicted = async {
            let _ = idle.closing.recv().await;
            Ok(false)
        };
        let stopping = stopping.or(evicted);
        let deadline = Instant::now() + self.t.idle;
        let woke = until(deadline, readable.or(stopping)).await;
        // Asked to close while bytes arrived: the slot is already counted free, so close.
        if idle.closing.try_recv().is_ok() {
            return Ok(State::Done);
        }
        match woke {
            Some(Ok(true)) => Ok(State::ReadHead),
            Some(Ok(false)) | None => Ok(State::Done),
            Some(Err(e)) => Err(e),
        }
    }

    async fn read_head(&mut self) -> Step<H> {
        let deadline = Instant::now() + self.t.head;
        let peer = self.peer;
        let head = self
            .buf
            .read_head(&mut &self.stream, deadline, |buf| owned_request(peer, buf))
            .await?;
        Ok(match head {
            Head::Complete((req, keep_alive)) => State::Answer { req, keep_alive },
            Head::Closed => State::Done,
            Head::Malformed(e) => self.shell_answer(ShellAnswer::Malformed(e), None),
            Head::TimedOut => self.shell_answer(ShellAnswer::TimedOut, None),
        })
    }

    /// The handler's answer, unless the shell refuses the request: HTTP/1.1 without Host, or
    /// a body, which we never expect and would rather close on than skip.
    async fn answer(&self, req: Request, keep_alive: bool) -> State<H::Outcome> {
        if (req.http11 && !req.has_host) || req.has_body {
            return self.shell_answer(ShellAnswer::Refused, Some(req));
        }
        // Boxed: the handler's future (lookups, mirror walks) is large, and inline it would
        // make every connection's task that large all its life, idle ones included.
        let (mut resp, outcome) = Box::pin(self.handler.handle(&req)).await;
        resp.close |= !keep_alive;
        State::Send(Reply {
            request: Some(req),
            resp,
            outcome,
            shell: None,
        })
    }

    /// An answer the shell gives by itself; the connection closes after it.
    fn shell_answer(&self, why: ShellAnswer, request: Option<Request>) -> State<H::Outcome> {
        State::Send(Reply {
            request,
            resp: Response::new(why.status()).closing(),
            outcome: self.handler.shell_outcome(why),
            shell: Some(why),
        })
    }

    /// Send the response, tell the handler how it went, then close or wait for the next.
    async fn send(&self, reply: Reply<H::Outcome>) -> Step<H> {
        let with_body = reply
            .request
            .as_ref()
            .is_none_or(|r| r.method != Method::Head);
        let mut out = Out {
            stream: &self.stream,
            stall: self.t.write_stall,
            written: 0,
        };
        let (body_bytes, sent) = out.response(&reply.resp, with_body).await;
        self.handler.completed(&Completed {
            peer: self.peer,
            request: reply.request.as_ref(),
            status: reply.resp.status,
            body_bytes,
            from_file: matches!(reply.resp.body, Body::File { .. }),
            outcome: reply.outcome,
            shell: reply.shell,
        });
        sent?;
        if reply.shell.is_some() {
            self.linger().await;
            return Ok(State::Done);
        }
        if reply.resp.close || self.stop.is_closed() {
            return Ok(State::Done);
        }
        // A keep-alive client with pipelined requests must not starve the other connections.
        smol::future::yield_now().await;
        Ok(match self.buf.buffered() {
            [] => State::Idle,
            _ => State::ReadHead,
        })
    }
}

impl<H: Handler> Conn<'_, H> {
    /// After an answer the shell gave to a request it did not read whole (a 431, a 400): shut
    /// the write side, then read and drop what the client still sends, briefly. Closing with
    /// unread bytes would make the kernel reset the connection, and the client could lose the
    /// answer before reading it.
    async fn linger(&self) {
        let _ = self.stream.get_ref().shutdown(std::net::Shutdown::Write);
        let deadline = Instant::now() + LINGER_TIME;
        let mut left = LINGER_BYTES;
        // On the heap: an array here would sit in every connection's task all its life.
        let mut sink = vec![0u8; READ_BUFFER_START];
        while left > 0 {
            let read = until(deadline, (&self.stream).read(&mut sink)).await;
            match read {
                Some(Ok(n)) if n > 0 => left = left.saturating_sub(n),
                _ => return,
            }
        }
    }
}

/// A request head, copied out of the buffer, and whether the connection may stay open.
fn owned_request(peer: SocketAddr, buf: &[u8]) -> Result<Parsed<(Request, bool)>, ParseError> {
    parse_request(buf).map(|p| p.map(|h| (Request::from_head(peer, &h), h.keep_alive())))
}

/// The writing side of a connection, counting the bytes that got out.
struct Out<'s> {
    stream: &'s Async<TcpStream>,
    stall: Duration,
    written: u64,
}

impl Out<'_> {
    /// Write head and (when `with_body`) body: the body bytes written, and how it ended.
    async fn response(&mut self, resp: &Response, with_body: bool) -> (u64, io::Result<()>) {
        let mut head = resp.head(&date_now());
        let head_len = head.len() as u64;
        let sent = async {
            match &resp.body {
                _ if !with_body => self.write_all(&head).await,
                // One write, so a short answer leaves in one segment.
                Body::Text(text) => {
                    head.extend_from_slice(text.as_bytes());
                    self.write_all(&head).await
                }
                Body::Empty => self.write_all(&head).await,
                Body::Shared(bytes) => {
                    self.write_all(&head).await?;
                    self.write_all(bytes).await
                }
                Body::File { file, start, len } => {
                    self.write_all(&head).await?;
                    self.send_file(file, *start, *len).await
                }
            }
        }
        .await;
        (self.written.saturating_sub(head_len), sent)
    }

    async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = self
                .timed(self.stream.write_with(|mut s| s.write(bytes)))
                .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[n..];
            self.written += n as u64;
        }
        Ok(())
    }

    /// Zero-copy: sendfile(2) from the cache file straight into the socket.
    async fn send_file(&mut self, file: &File, start: u64, len: u64) -> io::Result<()> {
        let end = start + len;
        let mut offset = start;
        while offset < end {
            let chunk = (end - offset).min(SENDFILE_CHUNK as u64) as usize;
            let n = self
                .timed(self.stream.write_with(|sock| {
                    let mut off = offset;
                    rustix::fs::sendfile(sock, file, Some(&mut off), chunk).map_err(io::Error::from)
                }))
                .await?;
            if n == 0 {
                // The file shrank under us; the client cannot get what Content-Length promised.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "cache file shrank while sending",
                ));
            }
            offset += n as u64;
            self.written += n as u64;
            // A fast client on loopback could otherwise keep this task running without a pause.
            smol::future::yield_now().await;
        }
        Ok(())
    }

    /// The one timed write: a client that takes nothing for `stall` is gone.
    async fn timed(&self, write: impl Future<Output = io::Result<usize>>) -> io::Result<usize> {
        within(self.stall, "write stalled", write).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::slots::{Limits, Slots};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::mpsc;

    use crate::http::testing::{BIG, BOUND, Client, Record, SlowControl, Stub};

    /// Short enough to keep the tests quick; the tests assert what happens, never how soon.
    const SHORT: Duration = Duration::from_millis(100);

    /// One connection served on its own thread, and the client's end of it.
    struct Served {
        client: Client,
        stub: Arc<Stub>,
        _slow: SlowControl,
        ended: mpsc::Receiver<io::Result<()>>,
        _stop: smol::channel::Sender<()>,
    }

    impl Served {
        fn start(timeouts: Timeouts) -> Served {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            let client = Client::connect(listener.local_addr().expect("local address"));
            let (server, peer) = listener.accept().expect("accept");
            let (stub, slow) = Stub::new();
            let (stop, stop_rx) = smol::channel::bounded::<()>(1);
            let (tx, ended) = mpsc::channel();
            let handler = stub.clone();
            std::thread::spawn(move || {
                let served = smol::block_on(async {
                    let stream = Async::new(server)?;
                    let slots = Slots::new(Limits::new(4));
                    let slot = slots.take(peer.ip()).expect("a free slot");
                    connection(stream, peer, slot, &*handler, &stop_rx, timeouts).await
                });
                let _ = tx.send(served);
            });
            Served {
                client,
                stub,
                _slow: slow,
                ended,
                _stop: stop,
            }
        }

        /// How the connection task ended (waiting at most `BOUND`).
        fn ended(&self) -> io::Result<()> {
            self.ended.recv_timeout(BOUND).expect("the connection ends")
        }

        /// The client closes its end.
        fn hang_up(&self) {
            let _ = self.client.stream.shutdown(std::net::Shutdown::Both);
        }

        fn get(&mut self, target: &str) -> (u16, Vec<u8>) {
            self.client
                .send(format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
            let a = self.client.answer().expect("an answer");
            (a.status, a.body)
        }
    }

    fn short(f: impl FnOnce(&mut Timeouts)) -> Timeouts {
        let mut t = Timeouts::default();
        f(&mut t);
        t
    }

    fn answered(target: &str, body_bytes: u64) -> Record {
        Record {
            target: Some(target.to_string()),
            status: 200,
            body_bytes,
            shell: None,
        }
    }

    fn shell(status: u16, why: ShellAnswer, target: Option<&str>) -> Record {
        Record {
            target: target.map(str::to_string),
            status,
            body_bytes: crate::http::message::error_text(status).len() as u64,
            shell: Some(why),
        }
    }

    #[test]
    fn pipelined_requests_get_answers_in_order() {
        let mut s = Served::start(Timeouts::default());
        s.client.send(
            b"GET /one HTTP/1.1\r\nHost: h\r\n\r\nHEAD /two HTTP/1.1\r\nHost: h\r\n\r\n\
              GET /three HTTP/1.1\r\nHost: h\r\n\r\n",
        );
        let one = s.client.answer().expect("first answer");
        assert_eq!((one.status, one.body.as_slice()), (200, &b"/one"[..]));
        let two = s.client.head_answer().expect("second answer");
        assert!(two.head.contains("Content-Length: 4\r\n"), "{}", two.head);
        let three = s.client.answer().expect("third answer");
        assert_eq!((three.status, three.body.as_slice()), (200, &b"/three"[..]));
        s.hang_up();
        s.ended().expect("a clean end");
        let want = [
            answered("/one", 4),
            answered("/two", 0),
            answered("/three", 6),
        ];
        assert_eq!(s.stub.records(), want);
    }

    #[test]
    fn keep_alive_serves_one_request_after_another() {
        let mut s = Served::start(Timeouts::default());
        assert_eq!(s.get("/a"), (200, b"/a".to_vec()));
        assert_eq!(s.get("/bb"), (200, b"/bb".to_vec()));
        // HTTP/1.0 asking for keep-alive gets it too.
        s.client
            .send(b"GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(s.client.answer().expect("answer").status, 200);
        assert_eq!(s.get("/d"), (200, b"/d".to_vec()));
        s.hang_up();
        s.ended().expect("a clean end");
        assert_eq!(s.stub.records().len(), 4);
    }

    #[test]
    fn http10_and_connection_close_end_the_connection() {
        for raw in [
            &b"GET /x HTTP/1.0\r\n\r\n"[..],
            b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        ] {
            let mut s = Served::start(Timeouts::default());
            s.client.send(raw);
            let a = s.client.answer().expect("an answer");
            assert_eq!(a.body, b"/x");
            assert!(a.head.contains("Connection: close\r\n"), "{}", a.head);
            assert!(s.client.closed());
            s.ended().expect("a clean end");
        }
    }

    #[test]
    fn a_late_head_gets_408_and_the_connection_closes() {
        let mut s = Served::start(short(|t| t.head = SHORT));
        s.client.send(b"GET /x HTTP/1.1\r\nHost: h\r\n");
        let a = s.client.answer().expect("an answer");
        assert_eq!(
            (a.status, a.body.as_slice()),
            (408, &b"408 Request Timeout\n"[..])
        );
        assert!(s.client.closed());
        s.ended().expect("a clean end");
        assert_eq!(s.stub.records(), [shell(408, ShellAnswer::TimedOut, None)]);
    }

    #[test]
    fn an_idle_connection_closes_without_a_word() {
        // Idle from the start, and idle after an answer.
        let mut s = Served::start(short(|t| t.idle = SHORT));
        assert!(s.client.closed());
        s.ended().expect("a clean end");
        let mut s = Served::start(short(|t| t.idle = SHORT));
        assert_eq!(s.get("/a").0, 200);
        assert!(s.client.closed());
        s.ended().expect("a clean end");
        assert_eq!(s.stub.records(), [answered("/a", 2)]);
    }

    #[test]
    fn a_client_that_stops_reading_is_dropped() {
        let mut s = Served::start(short(|t| t.write_stall = SHORT));
        s.client.send(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n");
        // The client reads nothing until the server has given up.
        let e = s.ended().expect_err("the write stalls");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let done = s.stub.records();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].target.as_deref(), Some("/big"));
        assert!(done[0].body_bytes < BIG as u64, "{done:?}");
    }

    #[test]
    fn a_dripping_client_gets_its_answer() {
        let mut s = Served::start(Timeouts::default());
        for &b in b"GET /drip HTTP/1.1\r\nHost: h\r\nUser-Agent: slow\r\n\r\n" {
            s.client.send(&[b]);
            // Pacing only, so each byte is a read of its own.
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(s.client.answer().expect("an answer").body, b"/drip");
        s.hang_up();
        s.ended().expect("a clean end");
    }

    #[test]
    fn the_shell_answers_bad_requests_itself_and_closes() {
        let tls = [
            0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03,
        ];
        let refused = ShellAnswer::Refused;
        let malformed = ShellAnswer::Malformed;
        let cases: [(&str, &[u8], Record); 5] = [
            (
                "HTTP/1.1 without Host",
                b"GET /x HTTP/1.1\r\n\r\n",
                shell(400, refused, Some("/x")),
            ),
            (
                "a body",
                b"GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
                shell(400, refused, Some("/x")),
            ),
            (
                "a TLS ClientHello",
                &tls,
                shell(400, malformed(ParseError::BadStartLine), None),
            ),
            (
                "half a request line, then the end",
                b"GET /x HT",
                shell(400, malformed(ParseError::Incomplete), None),
            ),
            (
                "HTTP/2",
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                shell(505, malformed(ParseError::UnsupportedVersion), None),
            ),
        ];
        for (what, raw, want) in cases {
            let mut s = Served::start(Timeouts::default());
            s.client.send(raw);
            let _ = s.client.stream.shutdown(std::net::Shutdown::Write);
            let a = s.client.answer().expect("an answer");
            assert_eq!(a.status, want.status, "{what}");
            assert!(
                a.head.contains("Connection: close\r\n"),
                "{what}: {}",
                a.head
            );
            assert!(s.client.closed(), "{what}");
            s.ended().expect("a clean end");
            assert_eq!(s.stub.records(), [want], "{what}");
        }
        // Nothing asked, nothing answered.
        let mut s = Served::start(Timeouts::default());
        s.client.send(b"\r\n\r\n");
        let _ = s.client.stream.shutdown(std::net::Shutdown::Write);
        assert!(s.client.closed());
        s.ended().expect("a clean end");
        assert_eq!(s.stub.records(), []);
    }
}
