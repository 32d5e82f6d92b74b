//! This host's IPv6 interfaces, as IPv6 discovery and link-local peers need them (I/O:
//! `/proc/net/if_inet6` and `/sys/class/net/NAME/flags`).
//!
//! `/proc/net/if_inet6` belongs to the network namespace of the process that reads it, so it
//! is right inside any namespace; it lists every IPv6 address with its interface's index and
//! name, prefix length, scope and flags. The parsers are pure functions of the text.

use std::net::Ipv6Addr;

use crate::limits::MAX_ANNOUNCE_ADDRS;

/// One line of `/proc/net/if_inet6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inet6 {
    pub addr: Ipv6Addr,
    pub index: u32,
    pub prefix_len: u8,
    /// The kernel's scope: 0x00 global (ULA too), 0x10 host, 0x20 link.
    pub scope: u8,
    /// `IFA_F_*` bits.
    pub flags: u8,
    pub name: String,
}

/// `IFA_F_TEMPORARY`: a privacy address, replaced every day or so.
const IFA_F_TEMPORARY: u8 = 0x01;
/// `IFA_F_DADFAILED`: another host has it.
const IFA_F_DADFAILED: u8 = 0x08;
/// `IFA_F_DEPRECATED`: still valid, no longer to be used for new connections.
const IFA_F_DEPRECATED: u8 = 0x20;
/// `IFA_F_TENTATIVE`: duplicate address detection is not done yet; unusable.
const IFA_F_TENTATIVE: u8 = 0x40;
/// The kernel's scope value of a link-local address.
const SCOPE_LINK: u8 = 0x20;
/// The kernel's scope value of a global address (ULAs are global to the kernel too).
const SCOPE_GLOBAL: u8 = 0x00;

/// `IFF_UP`, `IFF_LOOPBACK` and `IFF_MULTICAST` of `/sys/class/net/NAME/flags`.
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_MULTICAST: u32 = 0x1000;

impl Inet6 {
    /// Global or unique-local, stable and usable: an address worth telling peers about.
    pub fn routable(&self) -> bool {
        self.scope == SCOPE_GLOBAL
            && self.flags & (IFA_F_TEMPORARY | IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE)
                == 0
            && is_routable_v6(self.addr)
    }

    /// Whether `ip` is on the prefix of this (global) address: a neighbour on that link.
    pub fn on_prefix(&self, ip: Ipv6Addr) -> bool {
        if self.scope != SCOPE_GLOBAL || self.prefix_len == 0 || self.prefix_len > 128 {
            return false;
        }
        let mask = u128::MAX << (128 - u32::from(self.prefix_len));
        u128::from(self.addr) & mask == u128::from(ip) & mask
    }
}

/// An IPv6 address a peer may be reached at without a zone: not unspecified, loopback,
/// multicast, link-local or IPv4-mapped.
pub fn is_routable_v6(ip: Ipv6Addr) -> bool {
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unicast_link_local()
        || ip.to_ipv4_mapped().is_some())
}

/// The lines of `/proc/net/if_inet6`: `ADDR(32 hex) INDEX PLEN SCOPE FLAGS NAME`, numbers in
/// hex. Lines that do not fit are skipped.
pub fn parse_if_inet6(text: &str) -> Vec<Inet6> {
    let mut out = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [hex, index, plen, scope, flags, name] = cols[..] else {
            continue;
        };
        let all_hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        if hex.len() != 32 || ![hex, index, plen, scope, flags].into_iter().all(all_hex) {
            continue;
        }
        let (Ok(bits), Ok(index), Ok(prefix_len), Ok(scope), Ok(flags)) = (
            u128::from_str_radix(hex, 16),
            u32::from_str_radix(index, 16),
            u8::from_str_radix(plen, 16),
            u8::from_str_radix(scope, 16),
            u8::from_str_radix(flags, 16),
        ) else {
            continue;
        };
        if !valid_name(name) {
            continue;
        }
        out.push(Inet6 {
            addr: Ipv6Addr::from(bits),
            index,
            prefix_len,
            scope,
            flags,
            name: name.to_string(),
        });
    }
    out
}

/// Every IPv6 address of this host (empty when IPv6 is off or `/proc` unreadable).
pub fn read() -> Vec<Inet6> {
    super::host::read_proc("/proc/net/if_inet6").map_or_else(Vec::new, |t| parse_if_inet6(&t))
}

/// An interface name as Linux allows it: 1 to 15 bytes, no `/`, no whitespace, no `%`.
pub fn valid_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'%')
}

/// An IPv6 interface discovery can use: its index and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
}

/// The interfaces IPv6 discovery uses by default: up, multicast-capable, not loopback, with a
/// link-local address (so IPv6 is on there), in index order.
pub fn multicast_links(entries: &[Inet6]) -> Vec<Link> {
    let mut out: Vec<Link> = Vec::new();
    for e in entries {
        if e.scope != SCOPE_LINK || out.iter().any(|l| l.index == e.index) {
            continue;
        }
        // Where sysfs cannot say (not mounted for this namespace), take it as usable.
        let usable = interface_flags(&e.name)
            .is_none_or(|f| f & IFF_UP != 0 && f & IFF_MULTICAST != 0 && f & IFF_LOOPBACK == 0);
        if usable && e.name != "lo" {
            out.push(Link {
                index: e.index,
                name: e.name.clone(),
            });
        }
    }
    out.sort_by_key(|l| l.index);
    out
}

/// `/sys/class/net/NAME/flags`, if readable.
fn interface_flags(name: &str) -> Option<u32> {
    if !valid_name(name) || name == "." || name == ".." {
        return None;
    }
    let text = super::host::read_proc(&format!("/sys/class/net/{name}/flags"))?;
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

/// The interface called `name`, or numbered `name`, among `entries`.
pub fn link_named(entries: &[Inet6], name: &str) -> Option<Link> {
    let by_number = name.parse::<u32>().ok();
    entries
        .iter()
        .find(|e| e.name == name || Some(e.index) == by_number)
        .map(|e| Link {
            index: e.index,
            name: e.name.clone(),
        })
}

/// The interface that holds `addr`.
pub fn link_of(entries: &[Inet6], addr: Ipv6Addr) -> Option<Link> {
    entries.iter().find(|e| e.addr == addr).map(|e| Link {
        index: e.index,
        name: e.name.clone(),
    })
}

/// What a zone (`%eth0`) is written as for interface `index`: its name when that is safe in a
/// URL without escaping (RFC 6874 zones are unreserved characters), else the number.
pub fn zone_for(entries: &[Inet6], index: u32) -> String {
    let url_safe = |n: &str| {
        n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    };
    match entries.iter().find(|e| e.index == index) {
        Some(e) if url_safe(&e.name) => e.name.clone(),
        _ => index.to_string(),
    }
}

/// `fe80::1%eth0` (or `%3`) → the address and its interface index; None for anything else,
/// or a zone that names no interface of this host.
pub fn scoped(host: &str) -> Option<(Ipv6Addr, u32)> {
    let (addr, zone) = host.split_once('%')?;
    let addr: Ipv6Addr = addr.parse().ok()?;
    if zone.is_empty() {
        return None;
    }
    let index = match zone.parse::<u32>() {
        Ok(n) => n,
        Err(_) => link_named(&read(), zone)?.index,
    };
    Some((addr, index))
}

/// This host's addresses to tell peers on `links` about (routable ones: unique-local first,
/// then global, at most [`MAX_ANNOUNCE_ADDRS`]).
pub fn announced_addrs(entries: &[Inet6], links: &[Link]) -> Vec<Ipv6Addr> {
    let mut addrs: Vec<Ipv6Addr> = entries
        .iter()
        .filter(|e| e.routable() && links.iter().any(|l| l.index == e.index))
        .map(|e| e.addr)
        .collect();
    addrs.dedup();
    // fc00::/7 first: a unique-local prefix does not change when the ISP's does.
    addrs.sort_by_key(|a| a.segments()[0] & 0xfe00 != 0xfc00);
    let mut unique = Vec::new();
    for a in addrs {
        if !unique.contains(&a) && unique.len() < MAX_ANNOUNCE_ADDRS {
            unique.push(a);
        }
    }
    unique
}

/// Whether `ip` is on one of the prefixes of interface `index` (0: of any interface).
pub fn on_link(entries: &[Inet6], index: u32, ip: Ipv6Addr) -> bool {
    entries
        .iter()
        .any(|e| (index == 0 || e.index == index) && e.on_prefix(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host with a link-local and a ULA on eth0, a global and a temporary one on wlan0, a
    /// tentative one, and loopback.
    const IF_INET6: &str = "\
fe8000000000000000fc00fffe000001 02 40 20 80     eth0
fd000000000000000000000000000002 02 40 00 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
20010db8000000000000000000000005 03 40 00 00    wlan0
20010db80000000000000000000000aa 03 40 00 01    wlan0
fe800000000000000000000000000005 03 40 20 80    wlan0
fd000000000000000000000000000077 02 40 00 c0     eth0
";

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_if_inet6() {
        let e = parse_if_inet6(IF_INET6);
        assert_eq!(e.len(), 7);
        assert_eq!(
            e[0],
            Inet6 {
                addr: ip("fe80::fc:ff:fe00:1"),
                index: 2,
                prefix_len: 64,
                scope: 0x20,
                flags: 0x80,
                name: "eth0".into(),
            }
        );
        let routable: Vec<Ipv6Addr> = e.iter().filter(|x| x.routable()).map(|x| x.addr).collect();
        assert_eq!(
            routable,
            [ip("fd00::2"), ip("2001:db8::5")],
            "no temporary, no tentative"
        );
        // Lines that do not fit are skipped.
        let bad = "\
fe80000000000000000000000000001 02 40 20 80 eth0
fe800000000000000000000000000001 02 40 20 80
fe800000000000000000000000000001 xx 40 20 80 eth0
fe800000000000000000000000000001 02 40 20 80 eth0 extra
fe800000000000000000000000000001 02 400 20 80 eth0
fe800000000000000000000000000001 02 40 20 80 a/b
fe800000000000000000000000000001 02 40 20 80 sixteen-bytes-xx
";
        assert!(parse_if_inet6(bad).is_empty());
        assert!(parse_if_inet6("").is_empty());
    }

    #[test]
    fn prefixes_links_zones_and_announced_addresses() {
        let e = parse_if_inet6(IF_INET6);
        assert!(on_link(&e, 2, ip("fd00::99")));
        assert!(on_link(&e, 0, ip("fd00::99")));
        assert!(
            !on_link(&e, 3, ip("fd00::99")),
            "fd00::/64 is eth0's, not wlan0's"
        );
        assert!(on_link(&e, 3, ip("2001:db8::1234")));
        assert!(!on_link(&e, 2, ip("fd00:0:0:1::2")), "another /64");
        assert!(
            !on_link(&e, 2, ip("fe80::2")),
            "link-local prefixes are not used"
        );
        assert_eq!(
            link_named(&e, "wlan0"),
            Some(Link {
                index: 3,
                name: "wlan0".into()
            })
        );
        assert_eq!(link_named(&e, "2").map(|l| l.name), Some("eth0".into()));
        assert_eq!(link_named(&e, "eth9"), None);
        assert_eq!(link_of(&e, ip("2001:db8::5")).map(|l| l.index), Some(3));
        assert_eq!(zone_for(&e, 2), "eth0");
        assert_eq!(zone_for(&e, 9), "9");
        let odd = parse_if_inet6("fe800000000000000000000000000001 04 40 20 80 br:0\n");
        assert_eq!(zone_for(&odd, 4), "4", "':' needs escaping in a URL");
        let links = [
            Link {
                index: 2,
                name: "eth0".into(),
            },
            Link {
                index: 3,
                name: "wlan0".into(),
            },
        ];
        assert_eq!(
            announced_addrs(&e, &links),
            [ip("fd00::2"), ip("2001:db8::5")]
        );
        assert_eq!(announced_addrs(&e, &links[1..]), [ip("2001:db8::5")]);
        assert!(announced_addrs(&e, &[]).is_empty());
        let many: String = (1..=9)
            .map(|i| format!("fd00000000000000000000000000000{i} 02 40 00 80 eth0\n"))
            .collect();
        assert_eq!(
            announced_addrs(&parse_if_inet6(&many), &links).len(),
            MAX_ANNOUNCE_ADDRS
        );
    }

    #[test]
    fn scoped_hosts() {
        assert_eq!(scoped("fe80::1%3"), Some((ip("fe80::1"), 3)));
        assert_eq!(scoped("fe80::1%"), None);
        assert_eq!(scoped("fe80::1"), None);
        assert_eq!(scoped("10.0.0.1%3"), None);
        assert_eq!(scoped("fe80::1%no-such-interface"), None);
        // Loopback has IPv6 wherever IPv6 is on.
        if read().iter().any(|e| e.name == "lo") {
            assert_eq!(scoped("fe80::1%lo").map(|(_, i)| i), Some(1));
        }
        assert!(valid_name("eth0") && valid_name("br-1.100"));
        assert!(!valid_name("") && !valid_name("a b") && !valid_name("a/b"));
        assert!(!valid_name("0123456789abcdef"));
        assert!(is_routable_v6(ip("fd00::1")) && is_routable_v6(ip("2001:db8::1")));
        for bad in ["::", "::1", "fe80::1", "ff02::1", "::ffff:10.0.0.1"] {
            assert!(!is_routable_v6(ip(bad)), "{bad}");
        }
    }
}
