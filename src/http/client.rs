//! A minimal HTTP/1.1 client for probing mirrors (and, later, peers): one HEAD request per
//! connection, bounded in bytes and time.

use std::io;
use std::time::Duration;

use smol::Timer;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use crate::http::parse::{Parsed, parse_response};
use crate::http::url::{Scheme, Url};
use crate::limits::MAX_HEAD_BYTES;

/// What a server answered to HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadAnswer {
    pub status: u16,
    /// A pacserve peer's `X-Pacserve-Sig: yes`.
    pub has_sig: bool,
}

/// The status a server answers to `HEAD url`, within `timeout` for the whole exchange
/// (name lookup, connect, request, response head).
pub async fn head_status(url: &Url, timeout: Duration) -> io::Result<u16> {
    Ok(head(url, timeout).await?.status)
}

/// `HEAD url`, bounded by `timeout` for the whole exchange.
pub async fn head(url: &Url, timeout: Duration) -> io::Result<HeadAnswer> {
    if url.scheme != Scheme::Http {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "https cannot be probed",
        ));
    }
    let exchange = async {
        let mut stream = TcpStream::connect((url.host.as_str(), url.port)).await?;
        stream.set_nodelay(true)?;
        let request = format!(
            "HEAD {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: pacserve/{}\r\nConnection: close\r\n\r\n",
            url.path,
            url.authority(),
            env!("CARGO_PKG_VERSION")
        );
        stream.write_all(request.as_bytes()).await?;
        read_answer(&mut stream).await
    };
    exchange
        .or(async {
            Timer::after(timeout).await;
            Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))
        })
        .await
}

async fn read_answer(stream: &mut TcpStream) -> io::Result<HeadAnswer> {
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    let mut filled = 0;
    loop {
        match parse_response(&buf[..filled]) {
            Ok(Parsed::Complete { value, .. }) => {
                return Ok(HeadAnswer {
                    status: value.status,
                    has_sig: value
                        .pacserve_sig
                        .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
                });
            }
            Ok(Parsed::Partial) => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad response: {}", e.reason()),
                ));
            }
        }
        if filled == buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too large",
            ));
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        filled += n;
    }
}

/// Ask a peer's peer route with HEAD: (status, whether it also holds the `.sig`).
pub async fn ask_peer(
    peer: &crate::peers::table::PeerAddr,
    path: &str,
    timeout: Duration,
) -> io::Result<(u16, bool)> {
    let url = Url {
        scheme: Scheme::Http,
        host: peer.host.clone(),
        port: peer.port,
        path: path.to_string(),
    };
    let answer = head(&url, timeout).await?;
    Ok((answer.status, answer.has_sig))
}
