//! A minimal HTTP/1.1 client, I/O (name lookup, sockets), for probing mirrors and asking
//! peers: HEAD requests bounded in bytes and time, on a connection kept from the last one to
//! the same server when there is one (`pool`).

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use async_io::Async;
use smol::io::AsyncWriteExt;

use crate::http::head::{Head, HeadBuf};
use crate::http::message::{HOP_HEADER, PACSERVE_AGENT_PREFIX};
use crate::http::parse::{ParseError, Parsed, ResponseHead, parse_response};
use crate::http::pool;
use crate::http::url::{Scheme, Url};
use crate::sys::rt::within;

/// What a server answered to HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadAnswer {
    pub status: u16,
    /// A pacserve peer's `X-Pacserve-Sig: yes`.
    pub has_sig: bool,
    /// The size of the body a GET would get (Content-Length).
    pub length: Option<u64>,
    /// A pacserve peer's `X-Pacserve-Sha256`: the SHA-256 of its copy (64 hex digits); None
    /// when absent or not well formed.
    pub sha256: Option<[u8; 32]>,
}

/// The status a server answers to `HEAD url`, within `timeout` for the whole exchange
/// (name lookup, connect, request, response head).
pub async fn head_status(url: &Url, timeout: Duration) -> io::Result<u16> {
    Ok(head(url, timeout).await?.status)
}

/// `HEAD url`, bounded by `timeout` for the whole exchange.
pub async fn head(url: &Url, timeout: Duration) -> io::Result<HeadAnswer> {
    head_with(url, timeout, None).await
}

/// `HEAD url` with one more header field (`name: value`), bounded by `timeout`.
async fn head_with(
    url: &Url,
    timeout: Duration,
    extra: Option<(&str, &str)>,
) -> io::Result<HeadAnswer> {
    if url.scheme != Scheme::Http {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "https cannot be probed",
        ));
    }
    let deadline = Instant::now() + timeout;
    // The User-Agent and the hop field tell a pacserve at the other end (a peer, or this
    // very one under another name) never to pass the request on.
    let extra = extra.map_or(String::new(), |(k, v)| format!("{k}: {v}\r\n"));
    let request = format!(
        "HEAD {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {PACSERVE_AGENT_PREFIX}{}\r\n\
         {HOP_HEADER}: 1\r\n{extra}\r\n",
        url.path,
        url.authority(),
        env!("CARGO_PKG_VERSION")
    );
    within(timeout, "no answer in time", async {
        if let Some(stream) = pool::take(&url.host, url.port) {
            match exchange(&stream, &request, deadline).await {
                Ok(answer) => return Ok(kept(url, stream, answer)),
                // The server closed the kept connection meanwhile: a new one.
                Err(e) if stale(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let stream = connect(&url.host, url.port).await?;
        stream.get_ref().set_nodelay(true)?;
        let answer = exchange(&stream, &request, deadline).await?;
        Ok(kept(url, stream, answer))
    })
    .await
}

/// The answer; the connection goes back to the pool when the server keeps it open.
fn kept(url: &Url, stream: Async<TcpStream>, (answer, keep): (HeadAnswer, bool)) -> HeadAnswer {
    if keep {
        pool::put(&url.host, url.port, stream);
    }
    answer
}

/// How a kept connection the server has closed fails: nothing came back.
fn stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// `request` sent on `stream` and the response head read by `deadline`: the answer, and
/// whether the connection may carry another request (HTTP/1.1, no `Connection: close`,
/// nothing after the head).
async fn exchange(
    stream: &Async<TcpStream>,
    request: &str,
    deadline: Instant,
) -> io::Result<(HeadAnswer, bool)> {
    let mut stream = stream;
    stream.write_all(request.as_bytes()).await?;
    let mut buf = HeadBuf::new();
    let head = buf.read_head(&mut stream, deadline, answer).await?;
    match head {
        Head::Complete((answer, keep)) => Ok((answer, keep && buf.buffered().is_empty())),
        Head::Closed | Head::Malformed(ParseError::Incomplete) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        )),
        Head::Malformed(e) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad response: {}", e.reason()),
        )),
        Head::TimedOut => Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")),
    }
}

/// The answer in a response head, and whether the server keeps the connection open.
fn answer(buf: &[u8]) -> Result<Parsed<(HeadAnswer, bool)>, ParseError> {
    let answer = |h: ResponseHead<'_>| {
        let answer = HeadAnswer {
            status: h.status,
            has_sig: h
                .pacserve_sig
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            length: h.content_length,
            sha256: h.pacserve_sha256.and_then(crate::names::parse_sha256),
        };
        (answer, h.minor_version >= 1 && !h.connection_close)
    };
    parse_response(buf).map(|p| p.map(answer))
}

/// Connect to the first of `host`'s addresses that answers. A name is looked up on the
/// blocking pool (getaddrinfo blocks); an address literal needs no lookup, nor does a
/// link-local one with its zone (`fe80::2%eth0`).
async fn connect(host: &str, port: u16) -> io::Result<Async<TcpStream>> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) if host.contains('%') => {
            let (ip, index) = crate::sys::ifaces::scoped(host).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "no interface of that zone")
            })?;
            vec![SocketAddr::V6(std::net::SocketAddrV6::new(
                ip, port, 0, index,
            ))]
        }
        Err(_) => {
            let host = host.to_string();
            smol::unblock(move || {
                Ok::<_, io::Error>((host.as_str(), port).to_socket_addrs()?.collect())
            })
            .await?
        }
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for addr in addrs {
        match Async::<TcpStream>::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Ask another pacserve at `host:port` with HEAD on `path`; `auth`: the value of the
/// authentication header, on a LAN with a shared secret.
pub async fn ask_peer(
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
    auth: Option<&str>,
) -> io::Result<HeadAnswer> {
    let url = Url {
        scheme: Scheme::Http,
        host: host.to_string(),
        port,
        path: path.to_string(),
    };
    let extra = auth.map(|v| (crate::auth::request::HEADER, v));
    head_with(&url, timeout, extra).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};
    use std::sync::mpsc;

    use crate::http::testing::BOUND;
    use crate::limits::MAX_HEAD_BYTES;

    /// What the one-connection test server does once it has read the request head.
    enum Then {
        /// Send these bytes and keep the connection open.
        Answer(Vec<u8>),
        /// Send these bytes and close its side.
        AnswerAndClose(Vec<u8>),
        /// Send nothing and keep the connection open.
        Silence,
    }

    /// A server for one connection: reads the request head, does `then`, and holds the
    /// connection until the client closes it (a close of ours could reset the client's
    /// reads). The URL to ask and, later, the request it read.
    fn server(then: Then) -> (Url, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local address").port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_read_timeout(Some(BOUND)).expect("read timeout");
            let mut got = Vec::new();
            let mut chunk = [0u8; 1024];
            while !got.ends_with(b"\r\n\r\n") && got.len() < MAX_HEAD_BYTES {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&got).into_owned());
            match then {
                Then::Answer(bytes) => drop(s.write_all(&bytes)),
                Then::AnswerAndClose(bytes) => {
                    let _ = s.write_all(&bytes);
                    let _ = s.shutdown(Shutdown::Write);
                }
                Then::Silence => {}
            }
            let _ = s.read(&mut chunk);
        });
        let url = Url {
            scheme: Scheme::Http,
            host: "127.0.0.1".to_string(),
            port,
            path: "/request/core/x86_64/a-1-1-any.pkg.tar.zst".to_string(),
        };
        (url, rx)
    }

    fn ask(url: &Url, timeout: Duration) -> io::Result<HeadAnswer> {
        smol::block_on(head(url, timeout))
    }

    #[test]
    fn an_answer_is_read() {
        let sha = "ab".repeat(32);
        let (url, request) = server(Then::Answer(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nX-Pacserve-Sig: yes\r\n\
                 X-Pacserve-Sha256: {sha}\r\n\r\n"
            )
            .into_bytes(),
        ));
        let answer = ask(&url, BOUND).expect("an answer");
        assert_eq!(
            answer,
            HeadAnswer {
                status: 200,
                has_sig: true,
                length: Some(9),
                sha256: Some([0xab; 32]),
            }
        );
        let request = request.recv_timeout(BOUND).expect("the request");
        assert!(
            request.starts_with(&format!("HEAD {} HTTP/1.1\r\n", url.path)),
            "{request}"
        );
        assert!(request.contains(&format!("\r\nHost: 127.0.0.1:{}\r\n", url.port)));
        // HTTP/1.1 keeps the connection open unless told otherwise: it can be asked again.
        assert!(!request.contains("Connection:"), "{request}");
        assert!(request.ends_with("\r\n\r\n"), "{request}");
    }

    /// What the keep-alive test server does with each connection: answer this many
    /// requests, then read one more and close without an answer (`true`) or hold on.
    type Plan = Vec<(usize, bool)>;

    /// A server that takes one connection per entry of `plan`, answering each request with
    /// `answer`; the URL to ask and a count of the requests it read per connection.
    fn keeping_server(plan: Plan, answer: &'static str) -> (Url, mpsc::Receiver<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local address").port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for (answered, close) in plan {
                let (mut s, _) = listener.accept().expect("accept");
                s.set_read_timeout(Some(BOUND)).expect("read timeout");
                let mut got = Vec::new();
                let mut chunk = [0u8; 1024];
                let mut requests = 0;
                while requests < answered + usize::from(close) {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        got.drain(..end + 4);
                        requests += 1;
                        if requests <= answered {
                            let _ = s.write_all(answer.as_bytes());
                        }
                    }
                }
                let _ = tx.send(requests);
                if !close {
                    let _ = s.read(&mut chunk);
                }
            }
        });
        let url = Url {
            scheme: Scheme::Http,
            host: "127.0.0.1".to_string(),
            port,
            path: "/peer/core/x86_64/a-1-1-any.pkg.tar.zst".to_string(),
        };
        (url, rx)
    }

    const KEPT: &str = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n";

    #[test]
    fn heads_to_one_server_share_a_connection() {
        let (url, requests) = keeping_server(vec![(3, true), (1, false)], KEPT);
        for _ in 0..3 {
            assert_eq!(ask(&url, BOUND).expect("an answer").status, 200);
        }
        assert_eq!(pool::held(&url.host, url.port), 1, "kept for the next one");
        // The server reads a fourth request on that connection and closes it unanswered:
        // the request goes again on a new connection.
        assert_eq!(ask(&url, BOUND).expect("asked again").status, 200);
        assert_eq!(
            requests.recv_timeout(BOUND).unwrap(),
            4,
            "three answered, one not"
        );
        assert_eq!(
            requests.recv_timeout(BOUND).unwrap(),
            1,
            "on the second connection"
        );
    }

    #[test]
    fn a_connection_the_server_closes_or_http_1_0_is_not_kept() {
        for answer in [
            "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\n",
            "HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\n",
            // Bytes after the head that nobody asked for.
            "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nextra",
        ] {
            let (url, requests) = keeping_server(vec![(1, false), (1, false)], answer);
            assert_eq!(ask(&url, BOUND).expect("an answer").status, 200, "{answer}");
            assert_eq!(pool::held(&url.host, url.port), 0, "{answer}");
            assert_eq!(ask(&url, BOUND).expect("again").status, 200, "{answer}");
            assert_eq!(requests.recv_timeout(BOUND).unwrap(), 1, "{answer}");
            assert_eq!(requests.recv_timeout(BOUND).unwrap(), 1, "{answer}");
        }
    }

    #[test]
    fn a_kept_connection_closed_meanwhile_is_not_used() {
        // Answer one, then close (after reading what comes, which is nothing).
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let (closed_tx, closed) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut chunk = [0u8; 1024];
            let _ = s.read(&mut chunk);
            let _ = s.write_all(KEPT.as_bytes());
            let _ = s.shutdown(Shutdown::Both);
            let _ = closed_tx.send(());
            let (mut s, _) = listener.accept().expect("accept again");
            let _ = s.read(&mut chunk);
            let _ = s.write_all(KEPT.as_bytes());
            let _ = s.read(&mut chunk);
        });
        let url = Url {
            scheme: Scheme::Http,
            host: "127.0.0.1".to_string(),
            port,
            path: "/x".to_string(),
        };
        assert_eq!(ask(&url, BOUND).unwrap().status, 200);
        closed.recv_timeout(BOUND).unwrap();
        // The close has arrived when the peek sees it; wait for that, bounded.
        let mut peeked = 0;
        while pool::held(&url.host, url.port) == 1 && peeked < 100 {
            let kept = pool::take(&url.host, url.port);
            match kept {
                Some(k) => {
                    pool::put(&url.host, url.port, k);
                    std::thread::sleep(Duration::from_millis(10));
                }
                None => break,
            }
            peeked += 1;
        }
        assert_eq!(
            pool::held(&url.host, url.port),
            0,
            "a closed connection was kept"
        );
        assert_eq!(ask(&url, BOUND).unwrap().status, 200);
    }

    #[test]
    fn bad_answers_are_errors() {
        let mut huge = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        huge.resize(MAX_HEAD_BYTES + 100, b'b');
        let half = b"HTTP/1.1 200 OK\r\nContent-Le".to_vec();
        let cases: [(&str, Then, io::ErrorKind, &str); 6] = [
            (
                "garbage",
                Then::Answer(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()),
                io::ErrorKind::InvalidData,
                "bad response: malformed start line",
            ),
            (
                "a head too large",
                Then::Answer(huge),
                io::ErrorKind::InvalidData,
                "bad response: head too large",
            ),
            (
                "half a head, then silence",
                Then::Answer(half.clone()),
                io::ErrorKind::TimedOut,
                "no answer in time",
            ),
            (
                "silence",
                Then::Silence,
                io::ErrorKind::TimedOut,
                "no answer in time",
            ),
            (
                "half a head, then the end",
                Then::AnswerAndClose(half),
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ),
            (
                "the end before an answer",
                Then::AnswerAndClose(Vec::new()),
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ),
        ];
        for (what, then, kind, text) in cases {
            let (url, _request) = server(then);
            let e = ask(&url, Duration::from_millis(200)).expect_err(what);
            assert_eq!((e.kind(), e.to_string().as_str()), (kind, text), "{what}");
        }
        let https = Url {
            scheme: Scheme::Https,
            host: "127.0.0.1".to_string(),
            port: 443,
            path: "/".to_string(),
        };
        let e = ask(&https, BOUND).expect_err("https");
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }
}
