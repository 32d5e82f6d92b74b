//! The address a discovered peer is reached at, from the source of its datagram and the
//! addresses its hello lists. Pure: this host's subnets and IPv6 prefixes are arguments.
//!
//! - An IPv4 source is the peer's address, as it always was.
//! - An IPv6 hello to a link-local group comes from the sender's link-local address (source
//!   address selection picks the group's scope). The first unique-local or global address
//!   the hello lists that is on a prefix of the interface the datagram arrived on is used
//!   instead: it needs no zone, so pacman on any host can be sent there. Without one, the
//!   link-local source with the zone of that interface (`fe80::2%eth0`).
//! - A listed address is only used when it is on one of this host's prefixes of that link,
//!   as a source address must be on a subnet of this host: a hello cannot make pacserve
//!   connect to an address elsewhere.

use std::net::{IpAddr, SocketAddr};

use crate::peers::table::PeerAddr;
use crate::sys::host::Subnet;
use crate::sys::ifaces::{self, Inet6};

/// Where the peer that sent a datagram from `src`, listing `listed`, with HTTP port
/// `http_port`, is reached; and whether that address is on a subnet (or link) of this host.
pub fn peer_address(
    src: SocketAddr,
    listed: &[IpAddr],
    http_port: u16,
    subnets: &[Subnet],
    links: &[Inet6],
) -> (PeerAddr, bool) {
    let at = |host: String| PeerAddr {
        host,
        port: http_port,
    };
    let ip = match src {
        SocketAddr::V4(v4) => IpAddr::V4(*v4.ip()),
        SocketAddr::V6(v6) => IpAddr::V6(*v6.ip()).to_canonical(),
    };
    match (ip, src) {
        (IpAddr::V4(v4), _) => {
            let near = v4.is_loopback() || subnets.iter().any(|s| s.contains(v4));
            (at(v4.to_string()), near)
        }
        (IpAddr::V6(v6), _) if v6.is_loopback() => (at(v6.to_string()), true),
        (IpAddr::V6(v6), SocketAddr::V6(s)) if v6.is_unicast_link_local() => {
            let index = s.scope_id();
            if index == 0 {
                // No interface to say which link: it cannot be reached.
                return (at(v6.to_string()), false);
            }
            let routable = listed.iter().find_map(|a| match a {
                IpAddr::V6(a)
                    if ifaces::is_routable_v6(*a) && ifaces::on_link(links, index, *a) =>
                {
                    Some(*a)
                }
                _ => None,
            });
            match routable {
                Some(a) => (at(a.to_string()), true),
                None => (at(format!("{v6}%{}", ifaces::zone_for(links, index))), true),
            }
        }
        (IpAddr::V6(v6), _) => (at(v6.to_string()), ifaces::on_link(links, 0, v6)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::ifaces::parse_if_inet6;
    use std::net::{Ipv4Addr, SocketAddrV6};

    #[test]
    fn chooses_the_address_to_reach_a_peer_at() {
        let links = parse_if_inet6(
            "fe800000000000000000000000000001 02 40 20 80 eth0\n\
             fd000000000000000000000000000001 02 40 00 80 eth0\n\
             fe800000000000000000000000000001 03 40 20 80 wlan0\n\
             20010db8000000000000000000000001 03 40 00 80 wlan0\n",
        );
        let lan = [Subnet {
            network: Ipv4Addr::new(10, 0, 0, 0),
            mask: Ipv4Addr::new(255, 255, 255, 0),
        }];
        let v6 = |s: &str, scope: u32| {
            SocketAddr::V6(SocketAddrV6::new(s.parse().unwrap(), 15679, 0, scope))
        };
        let v4 = |s: &str| SocketAddr::new(s.parse().unwrap(), 15679);
        let ips = |v: &[&str]| {
            v.iter()
                .map(|s| s.parse().unwrap())
                .collect::<Vec<IpAddr>>()
        };
        let cases: &[(SocketAddr, Vec<IpAddr>, &str, bool)] = &[
            // IPv4: the source, as always; the list is not used.
            (v4("10.0.0.2"), ips(&["fd00::2"]), "10.0.0.2", true),
            (v4("192.0.2.9"), vec![], "192.0.2.9", false),
            (v4("127.0.0.1"), vec![], "127.0.0.1", true),
            (v6("::ffff:10.0.0.2", 0), vec![], "10.0.0.2", true),
            (v6("::1", 0), vec![], "::1", true),
            // Link-local: a listed address on the arrival link's prefix, the first such.
            (v6("fe80::2", 2), ips(&["fd00::2"]), "fd00::2", true),
            (
                v6("fe80::2", 2),
                ips(&["2001:db8::2", "10.0.0.2", "fd00::7", "fd00::8"]),
                "fd00::7",
                true,
            ),
            (
                v6("fe80::2", 3),
                ips(&["fd00::2", "2001:db8::2"]),
                "2001:db8::2",
                true,
            ),
            // Nothing usable listed: the source with its zone.
            (v6("fe80::2", 2), vec![], "fe80::2%eth0", true),
            (v6("fe80::2", 2), ips(&["fd00:1::2"]), "fe80::2%eth0", true),
            (v6("fe80::2", 3), ips(&["fd00::2"]), "fe80::2%wlan0", true),
            (v6("fe80::2", 7), ips(&["fd00::2"]), "fe80::2%7", true),
            (v6("fe80::2", 0), vec![], "fe80::2", false),
            // A routable source: on one of this host's prefixes or not.
            (v6("fd00::9", 0), vec![], "fd00::9", true),
            (v6("2001:db8:1::9", 0), vec![], "2001:db8:1::9", false),
        ];
        for (src, listed, host, near) in cases {
            let (addr, on) = peer_address(*src, listed, 15678, &lan, &links);
            assert_eq!(
                (addr.host.as_str(), addr.port, on),
                (*host, 15678, *near),
                "{src} {listed:?}"
            );
        }
    }
}
