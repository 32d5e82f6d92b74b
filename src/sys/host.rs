//! Facts about this machine (I/O: /proc): its addresses, host name and architecture.
//!
//! Everything is read from `/proc`; the parsers are pure functions of the text so they can be
//! tested on samples and fuzzed. Garbage lines are skipped, never fatal: a host whose `/proc`
//! looks odd simply reports fewer addresses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::limits::MAX_RESOLVED_NAMES;

/// pacman's name for this machine's architecture (what `Architecture = auto` means).
///
/// pacman takes `uname -m`; Rust's names differ for 32-bit ARM and x86, and Arch Linux ARM
/// builds for `armv7h`.
pub fn machine_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        "arm" => "armv7h",
        "x86" => "i686",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// This host's name from `/proc/sys/kernel/hostname`, trimmed; `None` if unreadable or empty.
pub fn hostname() -> Option<String> {
    let text = read_small("/proc/sys/kernel/hostname")?;
    let name = text.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Every address of this host, IPv4 first, without duplicates. Empty if `/proc` is unreadable.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    if let Some(text) = read_small("/proc/net/fib_trie") {
        out.extend(parse_fib_trie(&text).into_iter().map(IpAddr::V4));
    }
    if let Some(text) = read_small("/proc/net/if_inet6") {
        out.extend(parse_if_inet6(&text).into_iter().map(IpAddr::V6));
    }
    out
}

/// The addresses each of `names` resolves to (port ignored), looked up in parallel threads
/// (getaddrinfo blocks and cannot be cancelled), for at most `limit` in all: a name whose
/// lookup is not done by then is left out (its thread finishes on its own). Blocking: call it
/// at start or off the executor.
pub fn resolve(names: &[String], limit: Duration) -> HashMap<String, Vec<IpAddr>> {
    let (tx, rx) = std::sync::mpsc::channel();
    for name in names.iter().take(MAX_RESOLVED_NAMES) {
        let (tx, name) = (tx.clone(), name.clone());
        let spawned = std::thread::Builder::new()
            .name("pacserve-resolve".into())
            .spawn(move || {
                use std::net::ToSocketAddrs;
                let addrs: Vec<IpAddr> = (name.as_str(), 0)
                    .to_socket_addrs()
                    .map(|it| it.map(|a| a.ip()).collect())
                    .unwrap_or_default();
                let _ = tx.send((name, addrs));
            });
        if let Err(e) = spawned {
            crate::error!("warning: cannot look up names: {e}");
            break;
        }
    }
    drop(tx);
    let deadline = Instant::now() + limit;
    let mut out = HashMap::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok((name, addrs)) => {
                out.insert(name, addrs);
            }
            Err(_) => break,
        }
    }
    out
}

/// An IPv4 subnet: network address and mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub mask: Ipv4Addr,
}

impl Subnet {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.mask) == u32::from(self.network) & u32::from(self.mask)
    }
}

/// The IPv4 subnets this host's interfaces are directly on (from `/proc/net/route`); empty if
/// it cannot be read.
pub fn connected_subnets() -> Vec<Subnet> {
    read_small("/proc/net/route").map_or_else(Vec::new, |t| parse_route(&t))
}

/// Directly connected subnets from the text of `/proc/net/route`: routes without a gateway
/// and with a mask (not the default route), addresses in the kernel's byte order as hex.
pub fn parse_route(text: &str) -> Vec<Subnet> {
    let hex = |s: &str| {
        (s.len() == 8)
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
            .map(|v| Ipv4Addr::from(v.to_le_bytes()))
    };
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(dest), Some(gateway), Some(mask)) = (
            cols.get(1).and_then(|s| hex(s)),
            cols.get(2).and_then(|s| hex(s)),
            cols.get(7).and_then(|s| hex(s)),
        ) else {
            continue;
        };
        let subnet = Subnet {
            network: dest,
            mask,
        };
        if gateway.is_unspecified()
            && !mask.is_unspecified()
            && !dest.is_multicast()
            && !out.contains(&subnet)
        {
            out.push(subnet);
        }
    }
    out
}

/// Local IPv4 addresses from the text of `/proc/net/fib_trie`.
///
/// Each local address appears as a leaf line (`|-- 192.0.2.2`) followed by a line
/// `/32 host LOCAL`. The file lists the `Main` and `Local` tables, so addresses repeat; the
/// result is deduplicated in order of first appearance.
pub fn parse_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut previous: Option<&str> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "/32 host LOCAL" {
            let addr = previous
                .and_then(|p| p.strip_prefix("|--"))
                .and_then(|a| a.trim().parse::<Ipv4Addr>().ok());
            if let Some(addr) = addr.filter(|a| !out.contains(a)) {
                out.push(addr);
            }
        }
        previous = Some(line);
    }
    out
}

/// IPv6 addresses from the text of `/proc/net/if_inet6`: the first column of each line is the
/// address as 32 hex digits. Lines that do not fit are skipped; duplicates (one address on
/// two interfaces) are dropped.
pub fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(hex) = line.split_whitespace().next() else {
            continue;
        };
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        // Cannot fail: 32 ASCII hex digits checked just above.
        let Ok(bits) = u128::from_str_radix(hex, 16) else {
            continue;
        };
        let addr = Ipv6Addr::from(bits);
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// Reads a small `/proc` (or `/sys`) file, bounded like every other one.
pub(crate) fn read_proc(path: &str) -> Option<String> {
    read_small(path)
}

/// Reads a small `/proc` file. These are a few KiB at most; the cap only guards against a
/// kernel (or a bind mount) handing us something endless.
fn read_small(path: &str) -> Option<String> {
    use std::io::Read;
    const CAP: u64 = crate::limits::MAX_PROC_FILE_BYTES;
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(CAP).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_subnets_from_the_route_table() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            veth1\t0001E70A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            veth1\t000000E0\t00000000\t0001\t0\t0\t0\t000000F0\t0\t0\t0\n\
            wg0\t0000A8C0\t0101A8C0\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            junk line\n";
        let got = parse_route(text);
        let net = |a: [u8; 4], m: [u8; 4]| Subnet {
            network: Ipv4Addr::from(a),
            mask: Ipv4Addr::from(m),
        };
        assert_eq!(
            got,
            [
                net([192, 0, 2, 0], [255, 255, 255, 0]),
                net([10, 231, 1, 0], [255, 255, 255, 0])
            ],
            "no default route, no multicast route, no route through a gateway"
        );
        assert!(got[1].contains(Ipv4Addr::new(10, 231, 1, 12)));
        assert!(!got[1].contains(Ipv4Addr::new(10, 231, 2, 12)));
    }

    #[test]
    fn resolves_local_names_within_the_limit() {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let got = resolve(&names, Duration::from_secs(10));
        assert!(got["localhost"].iter().any(IpAddr::is_loopback), "{got:?}");
        assert_eq!(got["127.0.0.1"], [IpAddr::from([127, 0, 0, 1])]);
        let none = resolve(
            &["no-such-host.invalid".to_string()],
            Duration::from_secs(10),
        );
        assert!(none.get("no-such-host.invalid").is_none_or(Vec::is_empty));
    }

    /// From a VM with loopback and one interface in 192.0.2.0/24.
    const FIB_TRIE: &str = "\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
";

    /// A host with two addresses on one interface; a single `/32` route that is not LOCAL and a
    /// leaf carrying two route lines (`/32 host LOCAL` second).
    const FIB_TRIE_MULTI: &str = "\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 10.1.2.3
        /32 host LOCAL
     |-- 10.9.9.9
        /32 link UNICAST
     |-- 172.16.0.1
        /32 host LOCAL
";

    const IF_INET6: &str = "\
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
";

    #[test]
    fn fib_trie_samples() {
        let cases: &[(&str, &[&str])] = &[
            (FIB_TRIE, &["127.0.0.1", "192.0.2.2"]),
            (FIB_TRIE_MULTI, &["10.1.2.3", "172.16.0.1"]),
            ("", &[]),
            ("/32 host LOCAL\n", &[]),
            ("|-- 1.2.3.4\n/32 host LOCAL", &["1.2.3.4"]),
            ("|-- 1.2.3.4\r\n   /32 host LOCAL\r\n", &["1.2.3.4"]),
            ("|-- 1.2.3.400\n/32 host LOCAL\n", &[]),
            ("|-- ::1\n/32 host LOCAL\n", &[]),
            ("|-- 1.2.3.4\n\n/32 host LOCAL\n", &[]),
            ("+-- 1.2.3.4/32\n/32 host LOCAL\n", &[]),
            ("|-- 1.2.3.4\n/8 host LOCAL\n", &[]),
            ("|--\n/32 host LOCAL\n", &[]),
            ("\u{0}\u{ffff}|-- \n/32 host LOCAL /32 host LOCAL\n", &[]),
        ];
        for (text, want) in cases {
            let want: Vec<Ipv4Addr> = want.iter().map(|a| a.parse().unwrap()).collect();
            assert_eq!(parse_fib_trie(text), want, "input {text:?}");
        }
    }

    #[test]
    fn if_inet6_samples() {
        let cases: &[(&str, &[&str])] = &[
            (IF_INET6, &["fe80::fc:ff:fe00:1", "::1", "fd00::2"]),
            ("", &[]),
            ("\n\n   \n", &[]),
            // The same address on two interfaces.
            (
                "fd000000000000000000000000000002 04 40 00 82 eth0\n\
                 fd000000000000000000000000000002 05 40 00 82 eth1\n",
                &["fd00::2"],
            ),
            // Too short, too long, not hex, sign characters that from_str_radix would accept.
            ("0000000000000000000000000000001 01 80 10 80 lo\n", &[]),
            ("000000000000000000000000000000001 01 80 10 80 lo\n", &[]),
            ("0000000000000000000000000000000g 01 80 10 80 lo\n", &[]),
            ("+0000000000000000000000000000001 01 80 10 80 lo\n", &[]),
            (
                "ffffffffffffffffffffffffffffffff",
                &["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
            ),
            ("\tFE800000000000000000000000000001\r\n", &["fe80::1"]),
            ("é00000000000000000000000000000001 x\n", &[]),
        ];
        for (text, want) in cases {
            let want: Vec<Ipv6Addr> = want.iter().map(|a| a.parse().unwrap()).collect();
            assert_eq!(parse_if_inet6(text), want, "input {text:?}");
        }
    }

    #[test]
    fn machine_arch_is_a_pacman_name() {
        let arch = machine_arch();
        assert!(!arch.is_empty());
        assert_ne!(arch, "arm");
        assert_ne!(arch, "x86");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(arch, "x86_64");
        }
    }

    #[test]
    fn this_host() {
        // Whatever the machine, these must not panic; on Linux loopback is always there.
        let _ = hostname();
        let addrs = local_addresses();
        if std::path::Path::new("/proc/net/fib_trie").exists() {
            assert!(
                addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
                "{addrs:?}"
            );
        }
        let unique: std::collections::HashSet<_> = addrs.iter().collect();
        assert_eq!(unique.len(), addrs.len(), "{addrs:?}");
    }
}
