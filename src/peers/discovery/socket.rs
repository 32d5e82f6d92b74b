//! The discovery socket: bound to the group's port, joined to the group on each interface,
//! sending to the group. I/O only; what the datagrams mean is [`super::wire`]'s.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use async_io::{Async, Timer};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto, sockopt};
use smol::future::FutureExt;

use super::MulticastConfig;
use super::wire::{Announce, encode};
use crate::error::{Invalid, IoError};
use crate::limits::{ANNOUNCE_SEND_TIMEOUT, MULTICAST_TTL_DEFAULT};

/// The discovery socket: bound to the group's port on all addresses, joined to the group.
#[derive(Debug)]
pub struct Discovery {
    pub(super) socket: Async<UdpSocket>,
    pub(super) group: SocketAddrV4,
    interfaces: Vec<Ipv4Addr>,
    /// IP_MULTICAST_IF was set to the first interface: datagrams leave from its address.
    if_set: bool,
}

/// Why the discovery socket could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// A value of the configuration cannot be used.
    Invalid(Invalid),
    /// A socket call failed; the OS error is kept.
    Io(IoError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Invalid(e) => e.fmt(f),
            OpenError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Invalid(e) => Some(e),
            OpenError::Io(e) => Some(e),
        }
    }
}

fn io_error(doing: impl fmt::Display) -> impl FnOnce(Errno) -> OpenError {
    move |e| OpenError::Io(IoError::new(doing, e))
}

fn join_error(group: Ipv4Addr, iface: Ipv4Addr, e: Errno) -> OpenError {
    let on = if iface.is_unspecified() {
        "the default interface".to_string()
    } else {
        iface.to_string()
    };
    let hint = if e == Errno::NODEV {
        if iface.is_unspecified() {
            " — is there a route for 224.0.0.0/4 (or a default route)? \
             e.g. `ip route add 224.0.0.0/4 dev eth0`, or name an interface address"
        } else {
            " — is there a route for 224.0.0.0/4 on that interface?"
        }
    } else if e == Errno::ADDRNOTAVAIL {
        " — is that an address of this host? (see `ip -4 addr`)"
    } else if e == Errno::NOBUFS {
        " — too many group memberships (sysctl net.ipv4.igmp_max_memberships)"
    } else {
        ""
    };
    OpenError::Io(IoError::new(
        format_args!("joining {group} on {on}{hint}"),
        e,
    ))
}

/// Open the discovery socket for `cfg`.
///
/// SO_REUSEADDR is set before the bind, so several pacserves on one host can share the port
/// (each then hears the others' and its own datagrams). The group is joined on every
/// configured interface, or on the default one. Options that only refine behaviour
/// (multicast loop, IP_MULTICAST_IF, a TTL of 1, all kernel defaults or unsupported under
/// qemu-user) only warn when they fail.
pub fn open(cfg: &MulticastConfig) -> Result<Discovery, OpenError> {
    cfg.validate().map_err(OpenError::Invalid)?;
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(ipproto::UDP),
    )
    .map_err(io_error("creating the multicast UDP socket"))?;
    sockopt::set_socket_reuseaddr(&fd, true)
        .map_err(io_error("setting SO_REUSEADDR on the multicast socket"))?;
    let local = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port);
    rustix::net::bind(&fd, &local).map_err(|e| {
        let hint = if e == Errno::ADDRINUSE {
            " — another program holds this port without SO_REUSEADDR; choose another \
             multicast port (all peers must use the same)"
        } else {
            ""
        };
        io_error(format_args!("binding UDP {local}{hint}"))(e)
    })?;

    let joins = if cfg.interfaces.is_empty() {
        vec![Ipv4Addr::UNSPECIFIED]
    } else {
        cfg.interfaces.clone()
    };
    for iface in &joins {
        sockopt::set_ip_add_membership(&fd, &cfg.group, iface)
            .map_err(|e| join_error(cfg.group, *iface, e))?;
    }

    if let Err(e) = sockopt::set_ip_multicast_loop(&fd, true) {
        crate::error!(
            "warning: enabling IP_MULTICAST_LOOP: {e}; other pacserves on this host may not \
             hear this one"
        );
    }
    if let Err(e) = sockopt::set_ip_multicast_ttl(&fd, cfg.ttl) {
        if cfg.ttl != MULTICAST_TTL_DEFAULT {
            return Err(io_error(format_args!("setting multicast TTL {}", cfg.ttl))(
                e,
            ));
        }
        // 1 is the kernel's default: nothing is lost.
        crate::error!("warning: setting multicast TTL {}: {e}", cfg.ttl);
    }
    let mut if_set = false;
    if let Some(first) = cfg.interfaces.first() {
        // Without it, announcements leave by the interface the routing table picks; qemu-user
        // rejects this option with ENOPROTOOPT.
        match sockopt::set_ip_multicast_if(&fd, first) {
            Ok(()) => if_set = true,
            Err(e) => crate::error!(
                "warning: setting IP_MULTICAST_IF to {first}: {e}; announcements leave by the \
                 interface the routing table picks for {}",
                cfg.group
            ),
        }
    }

    let socket = Async::new(UdpSocket::from(fd))
        .map_err(|e| OpenError::Io(IoError::new("registering the multicast socket", e)))?;
    Ok(Discovery {
        socket,
        group: SocketAddrV4::new(cfg.group, cfg.port),
        interfaces: cfg.interfaces.clone(),
        if_set,
    })
}

/// The address a datagram to `group` leaves this host from when no interface is chosen: the
/// one the routing table picks (a connected UDP socket asks the kernel the same question).
fn routed_source(group: SocketAddrV4) -> io::Result<Ipv4Addr> {
    let probe = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    probe.connect(group)?;
    match probe.local_addr()? {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Ok(*a.ip()),
        other => Err(io::Error::other(format!(
            "no source address for {group} (got {other})"
        ))),
    }
}

impl Discovery {
    /// The address the socket is bound to (`0.0.0.0:port`).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.get_ref().local_addr()
    }

    /// The group and port announcements go to.
    pub fn group(&self) -> SocketAddrV4 {
        self.group
    }

    /// Send `a` to the group, on every configured interface. Not for concurrent use with
    /// itself: with several interfaces it switches IP_MULTICAST_IF between sends. When some
    /// interfaces fail, the error of the last one is returned as the OS gave it.
    pub async fn send(&self, a: &Announce) -> io::Result<()> {
        self.send_bytes(&encode(a)).await
    }

    pub(super) async fn send_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        self.send_each(false, |_| bytes.to_vec()).await
    }

    /// Send to the group on every configured interface the bytes `datagram(src)` gives,
    /// `src` being the address the datagram leaves from (looked up only when `want_src`; a
    /// signed datagram names it).
    pub(super) async fn send_each(
        &self,
        want_src: bool,
        datagram: impl Fn(Option<Ipv4Addr>) -> Vec<u8>,
    ) -> io::Result<()> {
        let routed = || match want_src {
            true => routed_source(self.group).map(Some),
            false => Ok(None),
        };
        if self.interfaces.len() < 2 {
            // IP_MULTICAST_IF was set once in `open`.
            let src = match self.interfaces.first() {
                Some(first) if self.if_set => Some(*first),
                _ => routed()?,
            };
            return self.send_once(&datagram(src)).await;
        }
        let mut result = Ok(());
        for iface in &self.interfaces {
            if let Err(e) = sockopt::set_ip_multicast_if(self.socket.get_ref(), iface) {
                // Cannot choose (qemu-user): one datagram, where the routing table says.
                crate::verbose!("discovery: IP_MULTICAST_IF {iface}: {e}");
                return self.send_once(&datagram(routed()?)).await;
            }
            if let Err(e) = self.send_once(&datagram(Some(*iface))).await {
                crate::verbose!("discovery: sending on {iface}: {e}");
                result = Err(e);
            }
        }
        result
    }

    async fn send_once(&self, bytes: &[u8]) -> io::Result<()> {
        let sent = self
            .socket
            .send_to(bytes, SocketAddr::V4(self.group))
            .or(async {
                Timer::after(ANNOUNCE_SEND_TIMEOUT).await;
                Err(io::Error::new(io::ErrorKind::TimedOut, "send buffer full"))
            })
            .await?;
        if sent != bytes.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "datagram truncated",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::limits::ANNOUNCE_RECV_BUFFER;
    use crate::peers::discovery::wire::decode;
    use crate::peers::discovery::wire::tests::hello;
    use std::time::Duration;

    /// A UDP port nobody uses right now (the kernel's choice for an ephemeral bind).
    pub(in crate::peers::discovery) fn free_udp_port() -> u16 {
        let s = UdpSocket::bind("0.0.0.0:0").expect("binding an ephemeral UDP port");
        s.local_addr().expect("local_addr of a bound socket").port()
    }

    pub(in crate::peers::discovery) fn loopback_config(port: u16) -> MulticastConfig {
        MulticastConfig {
            // A group per port, so parallel tests stay apart.
            group: Ipv4Addr::new(239, 255, (port >> 8) as u8, port as u8),
            port,
            interfaces: vec![Ipv4Addr::LOCALHOST],
            ttl: 1,
            interval: Duration::from_secs(60),
        }
    }

    /// Open on loopback, or fail the test saying why: these tests need multicast on `lo`,
    /// which Linux gives when the sender sets IP_MULTICAST_IF to 127.0.0.1 (as `open` does).
    pub(in crate::peers::discovery) fn open_on_loopback(cfg: &MulticastConfig) -> Discovery {
        match open(cfg) {
            Ok(d) => d,
            Err(OpenError::Io(e)) if e.raw_os_error() == Some(Errno::NODEV.raw_os_error()) => {
                panic!("this machine has no multicast on loopback ({e}); these tests need it")
            }
            Err(e) => panic!("opening {cfg:?}: {e}"),
        }
    }

    pub(in crate::peers::discovery) async fn recv_within(
        d: &Discovery,
        limit: Duration,
    ) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; ANNOUNCE_RECV_BUFFER];
        let heard = async {
            let (n, src) = d.socket.recv_from(&mut buf).await.ok()?;
            Some((buf[..n].to_vec(), src))
        };
        heard
            .or(async {
                Timer::after(limit).await;
                None
            })
            .await
    }

    #[test]
    fn two_sockets_on_one_port_hear_each_other() {
        let cfg = loopback_config(free_udp_port());
        let a = open_on_loopback(&cfg);
        let b = open(&cfg).expect("a second socket on the same port (SO_REUSEADDR)");
        assert_eq!(a.local_addr().unwrap().port(), cfg.port);
        let sent = hello(1, 15678, &["x86_64", "any"]);
        smol::block_on(async {
            a.send(&sent).await.expect("sending to the group on lo");
            let (bytes, src) = recv_within(&b, Duration::from_secs(3))
                .await
                .expect("b hears a's hello within 3 s");
            assert_eq!(decode(&bytes), Ok(sent.clone()));
            assert_eq!(src.ip(), std::net::IpAddr::V4(Ipv4Addr::LOCALHOST));
            // The sender hears itself too (multicast loop): run() must skip its own.
            let (bytes, _) = recv_within(&a, Duration::from_secs(3))
                .await
                .expect("a hears its own hello");
            assert_eq!(decode(&bytes), Ok(sent));
        });
    }
}
