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

/// The status a server answers to `HEAD url`, within `timeout` for the whole exchange
/// (name lookup, connect, request, response head).
pub async fn head_status(url: &Url, timeout: Duration) -> io::Result<u16> {
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
        read_status(&mut stream).await
    };
    exchange
        .or(async {
            Timer::after(timeout).await;
            Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))
        })
        .await
}

async fn read_status(stream: &mut TcpStream) -> io::Result<u16> {
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    let mut filled = 0;
    loop {
        match parse_response(&buf[..filled]) {
            Ok(Parsed::Complete { value, .. }) => return Ok(value.status),
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
    peer: &crate::peers::PeerAddr,
    path: &str,
    timeout: Duration,
) -> io::Result<(u16, bool)> {
    let url = Url {
        scheme: Scheme::Http,
        host: peer.host.clone(),
        port: peer.port,
        path: path.to_string(),
    };
    let status = head_status(&url, timeout).await?;
    Ok((status, false))
}
