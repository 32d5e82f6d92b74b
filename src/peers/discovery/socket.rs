//! The discovery sockets, one per address family: bound to the group's port, joined to the
//! group on each interface, sending to the group. I/O only; what the datagrams mean is
//! [`super::wire`]'s.
//!
//! IPv4 joins the group on each configured interface address (or the interface the routing
//! table picks for 224.0.0.0/4). IPv6 joins its link-local group on every interface by index:
//! each interface named or holding an address given to `--multicast-interface`, else every
//! interface that is up, multicast-capable and has IPv6. A datagram sent to a link-local
//! group leaves by the interface its destination's scope id names.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};

use async_io::{Async, Timer};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto, sockopt};
use smol::future::FutureExt;

use super::wire::{Announce, encode};
use super::{Families, Family, Interface, MulticastConfig};
use crate::error::{Invalid, IoError};
use crate::limits::{ANNOUNCE_SEND_TIMEOUT, MULTICAST_TTL_DEFAULT};
use crate::sys::ifaces::{self, Link};

/// The discovery sockets: one per family that could be opened.
#[derive(Debug)]
pub struct Discovery {
    v4: Option<V4>,
    v6: Option<V6>,
}

/// Where IPv4 announcements leave: an interface by its address or by its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ipv4If {
    Addr(Ipv4Addr),
    Index(u32),
}

#[derive(Debug)]
struct V4 {
    socket: Async<UdpSocket>,
    group: SocketAddrV4,
    /// Empty: where the routing table says.
    interfaces: Vec<Ipv4If>,
}

#[derive(Debug)]
struct V6 {
    socket: Async<UdpSocket>,
    group: Ipv6Addr,
    port: u16,
    links: Vec<Link>,
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

fn join_error(group: Ipv4Addr, iface: &str, e: Errno) -> OpenError {
    let hint = if e == Errno::NODEV {
        if iface == "the default interface" {
            " — is there a route for 224.0.0.0/4 (or a default route)? \
             e.g. `ip route add 224.0.0.0/4 dev eth0`, or name an interface"
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
        format_args!("joining {group} on {iface}{hint}"),
        e,
    ))
}

/// A UDP socket of `family` bound to `port` on all addresses, SO_REUSEADDR set first (several
/// pacserves on one host then share the port, each hearing the others and itself).
fn bound(family: AddressFamily, port: u16) -> Result<rustix::fd::OwnedFd, OpenError> {
    let what = if family == AddressFamily::INET6 {
        "IPv6"
    } else {
        "IPv4"
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(ipproto::UDP),
    )
    .map_err(io_error(format_args!(
        "creating the {what} multicast socket"
    )))?;
    sockopt::set_socket_reuseaddr(&fd, true)
        .map_err(io_error("setting SO_REUSEADDR on the multicast socket"))?;
    let local: SocketAddr = if family == AddressFamily::INET6 {
        // IPv6 only: the IPv4 socket hears IPv4.
        sockopt::set_ipv6_v6only(&fd, true)
            .map_err(io_error("setting IPV6_V6ONLY on the multicast socket"))?;
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))
    } else {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
    };
    rustix::net::bind(&fd, &local).map_err(|e| {
        let hint = if e == Errno::ADDRINUSE {
            " — another program holds this port without SO_REUSEADDR; choose another \
             multicast port (all peers must use the same)"
        } else {
            ""
        };
        io_error(format_args!("binding UDP {local}{hint}"))(e)
    })?;
    Ok(fd)
}

fn registered(fd: rustix::fd::OwnedFd) -> Result<Async<UdpSocket>, OpenError> {
    Async::new(UdpSocket::from(fd))
        .map_err(|e| OpenError::Io(IoError::new("registering the multicast socket", e)))
}

/// Open the discovery sockets for `cfg`: IPv4 and IPv6 as configured. A family that cannot
/// be used here (no IPv6 on this host, no IPv4 route for multicast) is left out with one
/// warning, as long as another one works; with none, the first family's error.
///
/// Options that only refine behaviour (multicast loop, IP_MULTICAST_IF, a TTL of 1, all
/// kernel defaults or unsupported under qemu-user) only warn when they fail.
pub fn open(cfg: &MulticastConfig) -> Result<Discovery, OpenError> {
    cfg.validate().map_err(OpenError::Invalid)?;
    let entries = ifaces::read();
    let v4 = cfg.group.map(|g| open_v4(cfg, g));
    let v6 = cfg
        .group6
        .and_then(|g| open_v6(cfg, g, &entries).transpose());
    let (v4, v4_err) = split(v4);
    let (v6, v6_err) = split(v6);
    if v4.is_none() && v6.is_none() {
        return Err(v4_err.or(v6_err).unwrap_or_else(|| {
            OpenError::Invalid(Invalid(
                "no multicast interface for the configured groups: an IPv6 group needs an \
                 interface with IPv6 (give its name to --multicast-interface), an IPv4 group \
                 an IPv4 address or an interface name"
                    .into(),
            ))
        }));
    }
    if let Some(e) = v4_err {
        crate::error!("warning: multicast: IPv4 discovery off: {e}");
    }
    if let Some(e) = v6_err {
        crate::error!("warning: multicast: IPv6 discovery off: {e}");
    }
    Ok(Discovery { v4, v6 })
}

/// A family's socket or its error, apart.
fn split<T>(r: Option<Result<T, OpenError>>) -> (Option<T>, Option<OpenError>) {
    match r {
        Some(Ok(t)) => (Some(t), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    }
}

/// The IPv4 socket, joined on the configured interface addresses and names (or the default
/// interface when none is configured).
fn open_v4(cfg: &MulticastConfig, group: Ipv4Addr) -> Result<V4, OpenError> {
    let fd = bound(AddressFamily::INET, cfg.port)?;
    let mut interfaces = Vec::new();
    for i in &cfg.interfaces {
        match i {
            Interface::V4(a) => interfaces.push(Ipv4If::Addr(*a)),
            Interface::Name(n) => {
                let index = rustix::net::netdevice::name_to_index(&fd, n)
                    .map_err(io_error(format_args!("finding interface {n}")))?;
                interfaces.push(Ipv4If::Index(index));
            }
            Interface::V6(_) => {}
        }
    }
    if !cfg.interfaces.is_empty() && interfaces.is_empty() {
        return Err(OpenError::Invalid(Invalid(
            "no IPv4 interface among --multicast-interface (give an IPv4 address or a name)".into(),
        )));
    }
    if interfaces.is_empty() {
        sockopt::set_ip_add_membership(&fd, &group, &Ipv4Addr::UNSPECIFIED)
            .map_err(|e| join_error(group, "the default interface", e))?;
    }
    for (i, iface) in interfaces.iter().enumerate() {
        match iface {
            Ipv4If::Addr(a) => sockopt::set_ip_add_membership(&fd, &group, a)
                .map_err(|e| join_error(group, &a.to_string(), e))?,
            Ipv4If::Index(index) => sockopt::set_ip_add_membership_with_ifindex(
                &fd,
                &group,
                &Ipv4Addr::UNSPECIFIED,
                *index,
            )
            .map_err(|e| join_error(group, &cfg.interfaces[i].to_string(), e))?,
        }
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
    if let Some(first) = interfaces.first() {
        // Without it, announcements leave by the interface the routing table picks; qemu-user
        // rejects this option with ENOPROTOOPT.
        if let Err(e) = set_v4_interface(&fd, group, *first) {
            crate::error!(
                "warning: setting IP_MULTICAST_IF: {e}; announcements leave by the interface \
                 the routing table picks for {group}"
            );
        }
    }
    Ok(V4 {
        socket: registered(fd)?,
        group: SocketAddrV4::new(group, cfg.port),
        interfaces,
    })
}

fn set_v4_interface(
    fd: impl rustix::fd::AsFd,
    group: Ipv4Addr,
    i: Ipv4If,
) -> rustix::io::Result<()> {
    match i {
        Ipv4If::Addr(a) => sockopt::set_ip_multicast_if(fd, &a),
        Ipv4If::Index(index) => {
            sockopt::set_ip_multicast_if_with_ifindex(fd, &group, &Ipv4Addr::UNSPECIFIED, index)
        }
    }
}

/// The IPv6 links of `cfg` (see the module docs); Ok(None) when there is none to use, which
/// is not an error when no interface was asked for by name or IPv6 address.
fn v6_links(cfg: &MulticastConfig, entries: &[ifaces::Inet6]) -> Result<Vec<Link>, OpenError> {
    if cfg.interfaces.is_empty() {
        return Ok(ifaces::multicast_links(entries));
    }
    let mut links: Vec<Link> = Vec::new();
    for i in &cfg.interfaces {
        let link = match i {
            Interface::V4(_) => continue,
            Interface::V6(a) => ifaces::link_of(entries, *a).ok_or_else(|| {
                OpenError::Invalid(Invalid(format!(
                    "multicast interface {a}: no interface of this host has it (see `ip -6 addr`)"
                )))
            })?,
            Interface::Name(n) => ifaces::link_named(entries, n).ok_or_else(|| {
                OpenError::Invalid(Invalid(format!(
                    "multicast interface {n}: no such interface with IPv6 (see `ip -6 addr`)"
                )))
            })?,
        };
        if !links.contains(&link) {
            links.push(link);
        }
    }
    Ok(links)
}

/// The IPv6 socket joined on every link; Ok(None) when there is no link to use.
fn open_v6(
    cfg: &MulticastConfig,
    group: Ipv6Addr,
    entries: &[ifaces::Inet6],
) -> Result<Option<V6>, OpenError> {
    let links = v6_links(cfg, entries)?;
    if links.is_empty() {
        if cfg.interfaces.is_empty() {
            crate::info!("multicast: no interface with IPv6 and multicast: IPv6 discovery off");
        }
        return Ok(None);
    }
    let fd = bound(AddressFamily::INET6, cfg.port)?;
    for link in &links {
        sockopt::set_ipv6_add_membership(&fd, &group, link.index).map_err(|e| {
            io_error(format_args!(
                "joining [{group}] on {} (index {})",
                link.name, link.index
            ))(e)
        })?;
    }
    if let Err(e) = sockopt::set_ipv6_multicast_loop(&fd, true) {
        crate::error!(
            "warning: enabling IPV6_MULTICAST_LOOP: {e}; other pacserves on this host may not \
             hear this one"
        );
    }
    if let Err(e) = sockopt::set_ipv6_multicast_hops(&fd, cfg.ttl) {
        if cfg.ttl != MULTICAST_TTL_DEFAULT {
            return Err(io_error(format_args!("setting multicast hops {}", cfg.ttl))(e));
        }
        crate::error!("warning: setting multicast hops {}: {e}", cfg.ttl);
    }
    Ok(Some(V6 {
        socket: registered(fd)?,
        group,
        port: cfg.port,
        links,
    }))
}

impl fmt::Display for Discovery {
    /// `239.255.15.78:15679 and [ff02::15:78]:15679 on eth0, eth1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(v4) = &self.v4 {
            write!(f, "{}", v4.group)?;
            if self.v6.is_some() {
                f.write_str(" and ")?;
            }
        }
        if let Some(v6) = &self.v6 {
            write!(f, "[{}]:{} on ", v6.group, v6.port)?;
            for (i, l) in v6.links.iter().enumerate() {
                write!(f, "{}{}", if i > 0 { ", " } else { "" }, l.name)?;
            }
        }
        Ok(())
    }
}

impl Discovery {
    /// The address the IPv4 socket is bound to (`0.0.0.0:port`), else the IPv6 one.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match (&self.v4, &self.v6) {
            (Some(v4), _) => v4.socket.get_ref().local_addr(),
            (None, Some(v6)) => v6.socket.get_ref().local_addr(),
            (None, None) => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    /// The families that are open.
    pub fn families(&self) -> Families {
        let mut f = Families::NONE;
        if self.v4.is_some() {
            f = f.union(Families::V4);
        }
        if self.v6.is_some() {
            f = f.union(Families::V6);
        }
        f
    }

    /// The IPv6 links announcements go out on.
    pub fn links(&self) -> &[Link] {
        self.v6.as_ref().map_or(&[], |v6| &v6.links)
    }

    /// Send `a` to the group on every family and interface (see [`Discovery::send_bytes`]).
    pub async fn send(&self, a: &Announce) -> io::Result<()> {
        self.send_bytes(&encode(a), Families::BOTH).await.1
    }

    /// Send `bytes` to the group on each of `families` that is open, on every interface. Not
    /// for concurrent use with itself: with several IPv4 interfaces it switches
    /// IP_MULTICAST_IF between sends. How many datagrams went out, and the error of the last
    /// one that failed, as the OS gave it.
    pub(super) async fn send_bytes(
        &self,
        bytes: &[u8],
        families: Families,
    ) -> (u64, io::Result<()>) {
        self.send_each(families, false, |_| bytes.to_vec()).await
    }

    /// Send the bytes `datagram(src)` gives to the group on each of `families` that is open,
    /// on every interface, `src` being the address each datagram leaves from (looked up only
    /// when `want_src`: a signed datagram names it). As [`Discovery::send_bytes`] otherwise.
    pub(super) async fn send_each(
        &self,
        families: Families,
        want_src: bool,
        datagram: impl Fn(Option<IpAddr>) -> Vec<u8>,
    ) -> (u64, io::Result<()>) {
        let mut sent = 0;
        let mut result = Ok(());
        let mut count = |r: io::Result<()>, what: &dyn fmt::Display| match r {
            Ok(()) => sent += 1,
            Err(e) => {
                crate::verbose!("discovery: sending on {what}: {e}");
                result = Err(e);
            }
        };
        // The bytes for a datagram to `to` leaving by `iface` (IPv4), or None and the error.
        let bytes_for = |to: SocketAddr, iface: Option<Ipv4If>| -> io::Result<Vec<u8>> {
            match want_src {
                false => Ok(datagram(None)),
                true => source_for(to, iface).map(|src| datagram(Some(src))),
            }
        };
        if let Some(v4) = self.v4.as_ref().filter(|_| families.contains(Family::V4)) {
            let to = SocketAddr::V4(v4.group);
            if v4.interfaces.len() < 2 {
                // IP_MULTICAST_IF was set once in `open`.
                let r = match bytes_for(to, v4.interfaces.first().copied()) {
                    Ok(b) => send_once(&v4.socket, &b, to).await,
                    Err(e) => Err(e),
                };
                count(r, &v4.group);
            } else {
                for iface in &v4.interfaces {
                    let chosen = set_v4_interface(v4.socket.get_ref(), *v4.group.ip(), *iface);
                    if let Err(e) = &chosen {
                        // Cannot choose (qemu-user): one datagram, where the routing table says.
                        crate::verbose!("discovery: IP_MULTICAST_IF {iface:?}: {e}");
                    }
                    let via = chosen.is_ok().then_some(*iface);
                    let r = match bytes_for(to, via) {
                        Ok(b) => send_once(&v4.socket, &b, to).await,
                        Err(e) => Err(e),
                    };
                    count(r, &v4.group);
                    if via.is_none() {
                        break;
                    }
                }
            }
        }
        if let Some(v6) = self.v6.as_ref().filter(|_| families.contains(Family::V6)) {
            for link in &v6.links {
                let to = SocketAddr::V6(SocketAddrV6::new(v6.group, v6.port, 0, link.index));
                let r = match bytes_for(to, None) {
                    Ok(b) => send_once(&v6.socket, &b, to).await,
                    Err(e) => Err(e),
                };
                count(r, &link.name);
            }
        }
        (sent, result)
    }

    /// The next datagram from either socket (neither can starve the other), and its source:
    /// an IPv6 source carries the arrival interface as its scope id.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match (&self.v4, &self.v6) {
            (Some(v4), None) => v4.socket.recv_from(buf).await,
            (None, Some(v6)) => v6.socket.recv_from(buf).await,
            (None, None) => std::future::pending().await,
            (Some(v4), Some(v6)) => loop {
                let v4_ready = async { v4.socket.readable().await.map(|()| &v4.socket) };
                let v6_ready = async { v6.socket.readable().await.map(|()| &v6.socket) };
                let socket = smol::future::race(v4_ready, v6_ready).await?;
                match socket.get_ref().recv_from(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            },
        }
    }
}

/// The address a datagram to the group `to` leaves this host from, by IPv4 interface `iface`
/// (else where the routing table says) or, for IPv6, by the interface `to`'s scope id names:
/// a connected UDP socket asks the kernel the same question the send does.
fn source_for(to: SocketAddr, iface: Option<Ipv4If>) -> io::Result<IpAddr> {
    let probe = match to {
        SocketAddr::V4(v4) => {
            let probe = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
            if let Some(i) = iface {
                set_v4_interface(&probe, *v4.ip(), i)?;
            }
            probe
        }
        SocketAddr::V6(_) => UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0))?,
    };
    probe.connect(to)?;
    match probe.local_addr()?.ip() {
        ip if !ip.is_unspecified() => Ok(ip),
        _ => Err(io::Error::other(format!("no source address for {to}"))),
    }
}

async fn send_once(socket: &Async<UdpSocket>, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
    let sent = socket
        .send_to(bytes, to)
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
            group: Some(Ipv4Addr::new(239, 255, (port >> 8) as u8, port as u8)),
            group6: None,
            port,
            interfaces: vec![Interface::V4(Ipv4Addr::LOCALHOST)],
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
            let (n, src) = d.recv(&mut buf).await.ok()?;
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
        assert_eq!(a.families(), Families::V4);
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

    #[test]
    fn a_family_without_interfaces_is_left_out() {
        // Only an IPv4 address is given: IPv6 has no interface, which is no error.
        let mut cfg = loopback_config(free_udp_port());
        cfg.group6 = Some(super::super::DEFAULT_GROUP6);
        let d = open_on_loopback(&cfg);
        assert_eq!(d.families(), Families::V4);
        assert!(d.links().is_empty());
        // An interface name this host does not have: an error that names it.
        cfg.interfaces = vec![Interface::Name("nosuch0".into())];
        let e = open(&cfg).expect_err("no such interface");
        assert!(e.to_string().contains("nosuch0"), "{e}");
    }
}
