//! The listening socket (I/O). By default one socket serves IPv6 and IPv4: `[::]` with
//! `IPV6_V6ONLY` off, so IPv4 clients arrive as `::ffff:a.b.c.d` (which the server shows as
//! plain IPv4). Where IPv6 is off (`net.ipv6.conf.all.disable_ipv6 = 1`, or a kernel without
//! it) it is `0.0.0.0`, said in one log line.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto, sockopt};

use crate::limits::LISTEN_BACKLOG;

/// Why IPv6 cannot be used here, if it cannot: read from the sysctl that turns it off.
pub fn ipv6_off() -> Option<&'static str> {
    match crate::sys::host::read_proc("/proc/sys/net/ipv6/conf/all/disable_ipv6") {
        None => Some("this kernel has no IPv6"),
        Some(v) if v.trim() == "1" => Some("IPv6 is off (net.ipv6.conf.all.disable_ipv6 = 1)"),
        Some(_) => None,
    }
}

/// Listen on `address` (None: every address, both families) and `port`. The address it is
/// bound to, port included; or the address it tried and why that failed.
pub fn listen(
    address: Option<IpAddr>,
    port: u16,
) -> Result<(TcpListener, SocketAddr), (SocketAddr, io::Error)> {
    let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    let any4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let (addr, dual) = match address {
        Some(ip @ IpAddr::V6(v6)) => (SocketAddr::new(ip, port), v6.is_unspecified()),
        Some(ip) => (SocketAddr::new(ip, port), false),
        None => match ipv6_off() {
            Some(why) => {
                crate::info!("{why}: serving IPv4 only");
                (any4, false)
            }
            None => (any6, true),
        },
    };
    let bound = if dual {
        dual_stack(addr)
    } else {
        TcpListener::bind(addr)
    };
    match bound {
        // IPv6 cannot be used after all (no address family, no such address).
        Err(e) if address.is_none() && dual && unusable(&e) => {
            crate::info!("IPv6 cannot be used here ({e}): serving IPv4 only");
            let l = TcpListener::bind(any4).map_err(|e| (any4, e))?;
            let local = l.local_addr().unwrap_or(any4);
            Ok((l, local))
        }
        Err(e) => Err((addr, e)),
        Ok(l) => {
            let local = l.local_addr().unwrap_or(addr);
            Ok((l, local))
        }
    }
}

fn unusable(e: &io::Error) -> bool {
    [
        Errno::AFNOSUPPORT,
        Errno::ADDRNOTAVAIL,
        Errno::PROTONOSUPPORT,
    ]
    .iter()
    .any(|n| e.raw_os_error() == Some(n.raw_os_error()))
}

/// `[::]:port` for IPv6 and IPv4 both, as std's `bind` would make it (SO_REUSEADDR, so a
/// restart does not wait for old connections) but with `IPV6_V6ONLY` off whatever
/// net.ipv6.bindv6only says.
fn dual_stack(addr: SocketAddr) -> io::Result<TcpListener> {
    let fd = rustix::net::socket_with(
        AddressFamily::INET6,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        Some(ipproto::TCP),
    )?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_ipv6_v6only(&fd, false)?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, LISTEN_BACKLOG)?;
    Ok(TcpListener::from(fd))
}

/// A client's address as pacserve shows and judges it: an IPv4 client of the dual-stack
/// socket (`[::ffff:10.0.0.2]:40000`) is plain IPv4 (`10.0.0.2:40000`).
pub fn canonical(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => peer,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    #[test]
    fn canonical_addresses() {
        let cases = [
            ("[::ffff:10.0.0.2]:40000", "10.0.0.2:40000"),
            ("[::ffff:127.0.0.1]:1", "127.0.0.1:1"),
            ("[::1]:1", "[::1]:1"),
            ("[fe80::1%2]:7", "[fe80::1%2]:7"),
            ("10.0.0.2:5", "10.0.0.2:5"),
        ];
        for (given, want) in cases {
            let got = canonical(given.parse().unwrap());
            assert_eq!(got.to_string(), want, "{given}");
        }
    }

    /// The default listener answers on 127.0.0.1 and on ::1 (when this host has IPv6).
    #[test]
    fn default_listener_serves_both_families() {
        let (l, local) = listen(None, 0).expect("listen");
        let port = local.port();
        assert_ne!(port, 0);
        let mut targets = vec![SocketAddr::from(([127, 0, 0, 1], port))];
        if ipv6_off().is_none() {
            assert_eq!(local.ip(), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
            targets.push(SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
        }
        for to in targets {
            let mut c = TcpStream::connect(to).unwrap_or_else(|e| panic!("connect {to}: {e}"));
            let (mut s, from) = l.accept().expect("accept");
            assert_eq!(canonical(from).ip(), to.ip(), "as the server sees it");
            s.write_all(b"x").unwrap();
            let mut one = [0u8; 1];
            c.read_exact(&mut one).unwrap();
        }
        // An explicit address is taken as it is.
        let (_l4, local4) = listen(Some(IpAddr::from([127, 0, 0, 1])), 0).expect("listen v4");
        assert_eq!(local4.ip(), IpAddr::from([127, 0, 0, 1]));
        // Taken: the error names the address tried.
        let (addr, e) = listen(Some(IpAddr::from([127, 0, 0, 1])), local4.port()).unwrap_err();
        assert_eq!((addr, e.kind()), (local4, io::ErrorKind::AddrInUse));
    }
}
