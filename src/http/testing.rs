//! Test helpers for the server shell: a stub [`Handler`] that records every completed
//! response, and a blocking loopback client. I/O (loopback sockets); compiled for tests only.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smol::channel::{Receiver, Sender};

use crate::http::handler::{Completed, Handler, ShellAnswer};
use crate::http::message::{Body, Request, Response};
use crate::http::parse::{Parsed, parse_response};

/// The longest any test socket operation may block: a bound, so a broken server fails a
/// test instead of hanging it; never a figure any test asserts on.
pub const BOUND: Duration = Duration::from_secs(10);

/// The body of `/big`: far more than loopback socket buffers hold, so a client that does
/// not read stalls the writer.
pub const BIG: usize = 16 * 1024 * 1024;

/// One completed response, as the stub saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub target: Option<String>,
    pub status: u16,
    pub body_bytes: u64,
    pub shell: Option<ShellAnswer>,
}

/// Answers `/big` with `BIG` bytes, `/slow` once the test releases it (saying when it has
/// started), anything else 200 with its own target as the body.
pub struct Stub {
    pub done: Mutex<Vec<Record>>,
    started: Sender<()>,
    release: Receiver<()>,
}

/// The test's ends of `/slow`: learn that it started, let it finish.
pub struct SlowControl {
    pub started: Receiver<()>,
    pub release: Sender<()>,
}

impl Stub {
    pub fn new() -> (Arc<Stub>, SlowControl) {
        let (started_tx, started_rx) = smol::channel::unbounded();
        let (release_tx, release_rx) = smol::channel::unbounded();
        let stub = Stub {
            done: Mutex::new(Vec::new()),
            started: started_tx,
            release: release_rx,
        };
        let control = SlowControl {
            started: started_rx,
            release: release_tx,
        };
        (Arc::new(stub), control)
    }

    pub fn records(&self) -> Vec<Record> {
        crate::lock(&self.done).clone()
    }
}

impl Handler for Stub {
    type Outcome = Option<ShellAnswer>;

    async fn handle(&self, req: &Request) -> (Response, Self::Outcome) {
        let body = match req.target.as_str() {
            "/big" => Arc::new(vec![b'x'; BIG]),
            "/slow" => {
                let _ = self.started.try_send(());
                let _ = self.release.recv().await;
                Arc::new(b"slow".to_vec())
            }
            other => Arc::new(other.as_bytes().to_vec()),
        };
        let resp = Response {
            body: Body::Shared(body),
            ..Response::new(200)
        };
        (resp, None)
    }

    fn shell_outcome(&self, answer: ShellAnswer) -> Self::Outcome {
        Some(answer)
    }

    fn completed(&self, done: &Completed<'_, Self::Outcome>) {
        assert_eq!(
            done.shell, done.outcome,
            "shell answers get their shell outcome"
        );
        crate::lock(&self.done).push(Record {
            target: done.request.map(|r| r.target.clone()),
            status: done.status,
            body_bytes: done.body_bytes,
            shell: done.shell,
        });
    }
}

/// A blocking client whose every read and write is bounded by `BOUND`.
pub struct Client {
    pub stream: TcpStream,
    /// Bytes read past the last response.
    pending: Vec<u8>,
}

/// A response as the client read it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to the test server");
        Client::new(stream)
    }

    pub fn new(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(BOUND)).expect("read timeout");
        stream
            .set_write_timeout(Some(BOUND))
            .expect("write timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("send to the test server");
    }

    /// The next whole response, or None when the server closes first.
    pub fn answer(&mut self) -> Option<Answer> {
        self.read_answer(true)
    }

    /// The next answer to a HEAD request: its Content-Length describes no body.
    pub fn head_answer(&mut self) -> Option<Answer> {
        self.read_answer(false)
    }

    fn read_answer(&mut self, with_body: bool) -> Option<Answer> {
        let (status, head_len, body_len) = loop {
            match parse_response(&self.pending).expect("a well-formed response") {
                Parsed::Complete { value, len } => {
                    let body = match with_body {
                        true => value.content_length.unwrap_or(0) as usize,
                        false => 0,
                    };
                    break (value.status, len, body);
                }
                Parsed::Partial => {
                    if !self.fill()? {
                        return None;
                    }
                }
            }
        };
        while self.pending.len() < head_len + body_len {
            if !self.fill()? {
                return None;
            }
        }
        let rest = self.pending.split_off(head_len + body_len);
        let mut whole = std::mem::replace(&mut self.pending, rest);
        let body = whole.split_off(head_len);
        Some(Answer {
            status,
            head: String::from_utf8_lossy(&whole).into_owned(),
            body,
        })
    }

    /// Whether the server closed (rather than sent anything more).
    pub fn closed(&mut self) -> bool {
        self.pending.is_empty() && self.fill() == Some(false)
    }

    /// Read once more: Some(false) at the end of the stream, None on an error (a reset).
    fn fill(&mut self) -> Option<bool> {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Some(false),
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                Some(true)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Some(false),
            Err(e) => panic!("test client read failed (a bound passed?): {e}"),
        }
    }
}
