//! The HTTP/1.1 server shell, I/O: the accept loop, the connection cap, the drain on stop,
//! and the [`Handler`] contract; each connection's steps are in [`conn`](crate::http::conn).
//!
//! What to answer is the [`Handler`]'s business (the application's); the shell only moves
//! bytes and tells the handler how each response ended.

use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use smol::channel::Receiver;
use smol::future::FutureExt;

use crate::http::conn::{Timeouts, connection};
use crate::http::handler::{Completed, Handler, ShellAnswer};
use crate::http::message::date_now;
use crate::http::message::{Body, Response};
use crate::http::slots::{Limits, Slots};
use crate::limits::{
    ACCEPT_ERROR_PAUSE, BUSY_RETRY_AFTER, DRAIN_POLL, MAX_CONNECTIONS, MAX_HEAD_BYTES,
};
use crate::sys::rt::until;

/// How the server runs; `Options::default()` is what `limits.rs` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Connections served at once, in all and per source; over them a connection is answered
    /// 503 (`MAX_CONNECTIONS`, `MAX_CONNECTIONS_PER_SOURCE`).
    pub limits: Limits,
    pub timeouts: Timeouts,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            limits: Limits::new(MAX_CONNECTIONS),
            timeouts: Timeouts::default(),
        }
    }
}

/// Accept connections, each on its own task, at most `options.max_connections` at a time,
/// until `stop` is closed. Then stop accepting, close idle connections, let responses in
/// flight finish for at most `options.timeouts.drain`, and return.
pub async fn serve<H: Handler>(
    listener: Async<TcpListener>,
    handler: Arc<H>,
    stop: Receiver<()>,
    options: Options,
) {
    let slots = Slots::new(options.limits.clone());
    let timeouts = options.timeouts;
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
            // An IPv4 client of the dual-stack socket is shown and judged as IPv4.
            Ok((stream, peer)) => (stream, crate::http::listen::canonical(peer)),
            Err(e) => {
                crate::error_throttled!(ACCEPT_ERRORS, "accept failed: {e}");
                Timer::after(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let slot = match slots.take(peer.ip()) {
            Ok(slot) => slot,
            Err(_) => {
                refuse_busy(stream.get_ref(), peer, &*handler);
                continue;
            }
        };
        let (handler, stop) = (handler.clone(), stop.clone());
        crate::sys::rt::spawn(async move {
            let _ = stream.get_ref().set_nodelay(true);
            let served = connection(stream, peer, slot, &*handler, &stop, timeouts);
            if let Err(e) = served.await {
                crate::verbose!("{peer}: connection ended: {e}");
            }
        })
        .detach();
    }
    // New connections are refused from here on.
    drop(listener);
    drain(&slots, timeouts.drain).await;
}

/// A flood of failed accepts (EMFILE) costs a few lines, not a disk.
static ACCEPT_ERRORS: crate::sys::log::Throttle = crate::sys::log::Throttle::new();

/// Wait for the open connections to close, at most `limit`.
async fn drain(slots: &Slots, limit: Duration) {
    let closed = async {
        while slots.open() > 0 {
            Timer::after(DRAIN_POLL).await;
        }
    };
    if until(Instant::now() + limit, closed).await.is_none() {
        let left = slots.open();
        crate::error!("stopping with {left} connection(s) still open");
    }
}

/// Over the cap: one non-blocking write of a 503 and close, no task and no waiting. What the
/// client already sent (its request, usually) is read first, without waiting: closing a
/// socket with unread bytes resets it, and the reset can take the 503 with it.
fn refuse_busy<H: Handler>(stream: &TcpStream, peer: SocketAddr, handler: &H) {
    let busy = ShellAnswer::Busy;
    let resp = Response::new(busy.status())
        .header("Retry-After", BUSY_RETRY_AFTER.as_secs().to_string())
        .closing();
    let mut bytes = resp.head(&date_now());
    if let Body::Text(text) = resp.body {
        bytes.extend_from_slice(text.as_bytes());
    }
    let mut s = stream;
    let _ = s.write(&bytes);
    let mut sink = [0u8; 1024];
    let mut left = MAX_HEAD_BYTES;
    while left > 0 {
        match io::Read::read(&mut s, &mut sink) {
            Ok(n) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    handler.completed(&Completed {
        peer,
        request: None,
        status: resp.status,
        body_bytes: 0,
        from_file: false,
        outcome: handler.shell_outcome(busy),
        shell: Some(busy),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::mpsc;

    use crate::http::testing::{BOUND, Client, Record, SlowControl, Stub};

    /// `serve` on its own thread (which also runs the executor its connections are spawned
    /// on), with the means to stop it and learn that it returned.
    struct Server {
        addr: SocketAddr,
        stub: Arc<Stub>,
        slow: SlowControl,
        stop: smol::channel::Sender<()>,
        returned: mpsc::Receiver<()>,
    }

    impl Server {
        fn start(options: Options) -> Server {
            let listener = Async::new(TcpListener::bind("127.0.0.1:0").expect("bind loopback"))
                .expect("non-blocking listener");
            let addr = listener.get_ref().local_addr().expect("local address");
            let (stub, slow) = Stub::new();
            let (stop, stop_rx) = smol::channel::bounded::<()>(1);
            let (tx, returned) = mpsc::channel();
            let handler = stub.clone();
            std::thread::spawn(move || {
                crate::sys::rt::block_on(1, serve(listener, handler, stop_rx, options));
                let _ = tx.send(());
            });
            Server {
                addr,
                stub,
                slow,
                stop,
                returned,
            }
        }

        /// Close the stop channel and wait (at most `BOUND`) for `serve` to return.
        fn stop_and_wait(&self) {
            self.stop.close();
            self.returned
                .recv_timeout(BOUND)
                .expect("serve returns after the stop");
        }

        /// A client that has been answered once, so its connection is being served.
        fn answered_client(&self) -> Client {
            let mut c = Client::connect(self.addr);
            c.send(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(c.answer().expect("an answer").status, 200);
            c
        }
    }

    #[test]
    fn the_stop_closes_idle_connections_and_lets_answers_finish() {
        let s = Server::start(Options::default());
        let mut idle = s.answered_client();
        let mut busy = s.answered_client();
        busy.send(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
        smol::block_on(s.slow.started.recv()).expect("/slow started");
        s.stop.close();
        // The idle connection closes while the other answer is still held back.
        assert!(idle.closed());
        s.slow.release.try_send(()).expect("release /slow");
        let slow = busy.answer().expect("the answer in flight");
        assert_eq!((slow.status, slow.body.as_slice()), (200, &b"slow"[..]));
        assert!(busy.closed(), "closed after its answer");
        s.stop_and_wait();
    }

    #[test]
    fn at_the_cap_an_idle_connection_makes_room() {
        let s = Server::start(Options {
            limits: Limits::new(1),
            ..Options::default()
        });
        let mut idle = s.answered_client();
        // The only slot is held by a keep-alive connection waiting for its next request:
        // it is closed, and the newcomer served. (The answer reaches the client a moment
        // before its connection is back to waiting, so the first tries may still be 503s.)
        let mut served = None;
        for _ in 0..50 {
            let mut next = Client::connect(s.addr);
            next.send(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
            let a = next.answer().expect("an answer");
            if a.status == 200 {
                served = Some(next);
                break;
            }
            assert_eq!(a.status, 503);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            served.is_some(),
            "never served while the slot's holder sat idle"
        );
        assert!(idle.closed(), "the idle connection gave up its slot");
        drop(served);
        s.stop_and_wait();
    }

    #[test]
    fn over_the_cap_a_connection_gets_503() {
        let s = Server::start(Options {
            limits: Limits::new(1),
            ..Options::default()
        });
        // The only slot is busy (an answer held back), not idle: the next one is refused.
        let mut held = Client::connect(s.addr);
        held.send(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
        smol::block_on(s.slow.started.recv()).expect("/slow started");
        let mut over = Client::connect(s.addr);
        let a = over.answer().expect("an answer without asking");
        assert_eq!(a.status, 503);
        let retry = format!("Retry-After: {}\r\n", BUSY_RETRY_AFTER.as_secs());
        assert!(a.head.contains(&retry), "{}", a.head);
        assert!(over.closed());
        s.slow.release.try_send(()).expect("release /slow");
        assert_eq!(held.answer().expect("the held answer").status, 200);
        drop(held);
        s.stop_and_wait();
        let busy: Vec<Record> = s
            .stub
            .records()
            .into_iter()
            .filter(|r| r.shell == Some(ShellAnswer::Busy))
            .collect();
        assert_eq!(busy.len(), 1, "{busy:?}");
        assert_eq!((busy[0].status, busy[0].target.as_deref()), (503, None));
    }
}
