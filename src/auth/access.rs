//! Who may use this pacserve: `--allow` ranges, and the rule that decides each request from
//! what it carries and where it comes from. Pure.
//!
//! With a shared secret:
//! - `/peer/` and `/info` (what pacserves ask each other) need a valid authentication header,
//!   or must come from this host (loopback);
//! - everything else (pacman's routes, `/lan/`, the status routes) answers loopback, the
//!   addresses of authenticated peers (pacman on a peer host is sent here by its own
//!   pacserve, so it comes from that peer's address), the `--allow` ranges, and any request
//!   with a valid authentication header.
//!
//! Without one, `--allow` alone restricts every route to loopback and its ranges; without
//! either, everyone is answered, as on a trusted LAN.

use std::fmt;
use std::net::IpAddr;

use crate::error::Invalid;

/// An address range: `10.0.0.0/24`, `fd00::/8`, or one address (`10.0.0.7`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Parse `ADDR/PREFIX` or `ADDR`; the address must be the range's first (no host bits).
pub fn parse_cidr(s: &str) -> Result<Cidr, Invalid> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let network: IpAddr = addr
        .parse()
        .map_err(|_| Invalid(format!("'{s}': expected ADDRESS/PREFIX, e.g. 10.0.0.0/24")))?;
    if network.to_canonical() != network {
        return Err(Invalid(format!(
            "'{s}': write an IPv4 range as IPv4 (e.g. 10.0.0.0/24)"
        )));
    }
    let max = if network.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= max && (p == "0" || !p.starts_with('0')))
            .ok_or_else(|| Invalid(format!("'{s}': the prefix must be 0 to {max}")))?,
    };
    let cidr = Cidr { network, prefix };
    let first = Cidr {
        network: first_address(network, prefix),
        prefix,
    };
    if first != cidr {
        return Err(Invalid(format!(
            "'{s}': not the first address of the range; did you mean {first}?"
        )));
    }
    Ok(cidr)
}

fn first_address(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// Which rule a route falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/peer/` and `/info`: for pacserves.
    ForPeers,
    /// Everything else: for pacman and people.
    ForClients,
}

/// What a request's authentication header turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    Absent,
    Valid,
    /// Present but not taken; why.
    Refused(Refusal),
}

/// Why a request was answered 403; each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A pacserve route without an authentication header.
    Unsigned,
    /// A header that is not `1 ts=… nonce=… mac=…`.
    Malformed,
    /// The MAC is not one of any key we hold.
    BadMac,
    /// Outside the time window.
    Window,
    /// Seen before.
    Replay,
    /// Not loopback, not an authenticated peer, not in `--allow`.
    NotAllowed,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::Unsigned,
        Refusal::Malformed,
        Refusal::BadMac,
        Refusal::Window,
        Refusal::Replay,
        Refusal::NotAllowed,
    ];

    /// The word in JSON keys and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::Malformed => "malformed",
            Refusal::BadMac => "bad_mac",
            Refusal::Window => "window",
            Refusal::Replay => "replay",
            Refusal::NotAllowed => "not_allowed",
        }
    }
}

/// Where a request comes from, as far as the rule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Source {
    pub loopback: bool,
    /// An authenticated peer's address (only ever true with a secret).
    pub peer: bool,
    /// In an `--allow` range.
    pub allowed: bool,
}

/// The rule. `secret`: a shared secret is configured; `restricted`: `--allow` was given.
pub fn decide(
    secret: bool,
    restricted: bool,
    route: Route,
    header: Header,
    from: Source,
) -> Result<(), Refusal> {
    if !secret {
        return if !restricted || from.loopback || from.allowed {
            Ok(())
        } else {
            Err(Refusal::NotAllowed)
        };
    }
    match (header, route) {
        // A header that fails is refused whoever sent it: it is a mistake or an attack.
        (Header::Refused(why), _) => Err(why),
        (Header::Valid, _) => Ok(()),
        (Header::Absent, _) if from.loopback => Ok(()),
        (Header::Absent, Route::ForPeers) => Err(Refusal::Unsigned),
        (Header::Absent, Route::ForClients) if from.peer || from.allowed => Ok(()),
        (Header::Absent, Route::ForClients) => Err(Refusal::NotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        parse_cidr(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ranges_parse_and_contain() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "10.0.0.0/24",
                &["10.0.0.0", "10.0.0.7", "10.0.0.255", "::ffff:10.0.0.9"],
                &["10.0.1.0", "9.255.255.255", "fd00::1"],
            ),
            ("10.0.0.7", &["10.0.0.7"], &["10.0.0.6", "10.0.0.8"]),
            ("10.0.0.7/32", &["10.0.0.7"], &["10.0.0.6"]),
            ("0.0.0.0/0", &["1.2.3.4", "255.255.255.255"], &["::1"]),
            (
                "fd00::/8",
                &["fd00::1", "fdff:1::2"],
                &["fe80::1", "10.0.0.1"],
            ),
            ("::1", &["::1"], &["::2", "127.0.0.1"]),
            ("::/0", &["::1", "fe80::1"], &["10.0.0.1"]),
        ];
        for (spec, inside, outside) in cases {
            let c = cidr(spec);
            for a in *inside {
                assert!(c.contains(ip(a)), "{spec} should contain {a}");
            }
            for a in *outside {
                assert!(!c.contains(ip(a)), "{spec} should not contain {a}");
            }
        }
        assert_eq!(cidr("10.0.0.0/24").to_string(), "10.0.0.0/24");
        let bad: &[(&str, &str)] = &[
            ("", "expected"),
            ("10.0.0", "expected"),
            ("lan", "expected"),
            ("10.0.0.0/", "prefix"),
            ("10.0.0.0/33", "prefix"),
            ("10.0.0.0/024", "prefix"),
            ("10.0.0.0/-1", "prefix"),
            ("10.0.0.0/x", "prefix"),
            ("fd00::/129", "prefix"),
            ("10.0.0.7/24", "did you mean 10.0.0.0/24?"),
            ("fd00::1/8", "did you mean fd00::/8?"),
            ("10.0.0.0/24/1", "prefix"),
            ("::ffff:10.1.0.0/112", "as IPv4"),
        ];
        for (spec, needle) in bad {
            let e = parse_cidr(spec).expect_err(spec);
            assert!(e.0.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn the_rule() {
        use Header::*;
        use Refusal::*;
        use Route::*;
        let nobody = Source::default();
        let lo = Source {
            loopback: true,
            ..nobody
        };
        let peer = Source {
            peer: true,
            ..nobody
        };
        let listed = Source {
            allowed: true,
            ..nobody
        };
        type Case = (bool, bool, Route, Header, Source, Result<(), Refusal>);
        let cases: &[Case] = &[
            // No secret, no --allow: a trusted LAN, as before.
            (false, false, ForClients, Absent, nobody, Ok(())),
            (false, false, ForPeers, Absent, nobody, Ok(())),
            (false, false, ForPeers, Refused(BadMac), nobody, Ok(())),
            // No secret, --allow: loopback and the ranges, every route.
            (false, true, ForClients, Absent, nobody, Err(NotAllowed)),
            (false, true, ForPeers, Absent, nobody, Err(NotAllowed)),
            (false, true, ForClients, Absent, lo, Ok(())),
            (false, true, ForPeers, Absent, listed, Ok(())),
            (false, true, ForClients, Absent, listed, Ok(())),
            // A secret: pacserve routes need the header, or loopback.
            (true, false, ForPeers, Absent, nobody, Err(Unsigned)),
            (true, false, ForPeers, Absent, peer, Err(Unsigned)),
            (true, true, ForPeers, Absent, listed, Err(Unsigned)),
            (true, false, ForPeers, Absent, lo, Ok(())),
            (true, false, ForPeers, Valid, nobody, Ok(())),
            (true, false, ForPeers, Refused(Replay), peer, Err(Replay)),
            (true, false, ForPeers, Refused(BadMac), lo, Err(BadMac)),
            (true, false, ForPeers, Refused(Window), nobody, Err(Window)),
            (
                true,
                false,
                ForPeers,
                Refused(Malformed),
                nobody,
                Err(Malformed),
            ),
            // A secret: client routes answer loopback, peers, the ranges, and a header.
            (true, false, ForClients, Absent, nobody, Err(NotAllowed)),
            (true, false, ForClients, Absent, lo, Ok(())),
            (true, false, ForClients, Absent, peer, Ok(())),
            (true, true, ForClients, Absent, listed, Ok(())),
            (true, false, ForClients, Valid, nobody, Ok(())),
            (true, false, ForClients, Refused(BadMac), peer, Err(BadMac)),
        ];
        for (secret, restricted, route, header, from, want) in cases {
            assert_eq!(
                decide(*secret, *restricted, *route, *header, *from),
                *want,
                "secret {secret} --allow {restricted} {route:?} {header:?} {from:?}"
            );
        }
    }
}

/// Addresses that proved they hold a key (a signed request, or a signed hello), and when
/// they last did: pacman on such a host, sent here by its pacserve, comes from that
/// address. At most [`MAX_PROVEN_CLIENTS`], each for [`PROVEN_CLIENT_TTL`] after its last
/// proof. Pure: the time (Unix seconds) is an argument.
#[derive(Debug, Clone, Default)]
pub struct Proven {
    last: std::collections::HashMap<IpAddr, u64>,
}

use crate::limits::{MAX_PROVEN_CLIENTS, PROVEN_CLIENT_TTL};

impl Proven {
    pub fn note(&mut self, ip: IpAddr, now: u64) {
        let ip = ip.to_canonical();
        if !self.last.contains_key(&ip) && self.last.len() >= MAX_PROVEN_CLIENTS {
            let ttl = PROVEN_CLIENT_TTL.as_secs();
            self.last.retain(|_, t| t.saturating_add(ttl) >= now);
            if self.last.len() >= MAX_PROVEN_CLIENTS {
                // Only key holders get here: make room by the one silent longest.
                if let Some(oldest) = self.last.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a) {
                    self.last.remove(&oldest);
                }
            }
        }
        self.last.insert(ip, now);
    }

    pub fn contains(&self, ip: IpAddr, now: u64) -> bool {
        let ttl = PROVEN_CLIENT_TTL.as_secs();
        self.last
            .get(&ip.to_canonical())
            .is_some_and(|t| t.saturating_add(ttl) >= now)
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod proven_tests {
    use super::*;

    #[test]
    fn proofs_expire_and_the_set_is_bounded() {
        let ttl = PROVEN_CLIENT_TTL.as_secs();
        let t0 = 1_700_000_000;
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        let mut p = Proven::default();
        assert!(!p.contains(a, t0));
        p.note(mapped, t0);
        assert!(p.contains(a, t0), "an IPv4-mapped address is the IPv4 one");
        assert!(p.contains(a, t0 + ttl));
        assert!(!p.contains(a, t0 + ttl + 1));
        p.note(a, t0 + ttl);
        assert!(p.contains(a, t0 + 2 * ttl), "a new proof extends it");
        // Full: the one silent longest makes room.
        let mut p = Proven::default();
        let first = IpAddr::from(0x0a00_0000u32.to_be_bytes());
        p.note(first, t0 - 1);
        for i in 1..MAX_PROVEN_CLIENTS as u32 {
            p.note(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), t0);
        }
        let newcomer: IpAddr = "192.0.2.1".parse().unwrap();
        p.note(newcomer, t0);
        assert_eq!(p.len(), MAX_PROVEN_CLIENTS);
        assert!(p.contains(newcomer, t0));
        // Long after, the expired ones are cleared before anyone is evicted.
        let mut q = p.clone();
        q.note(first, t0 + ttl + 1);
        assert_eq!(q.len(), 1);
        assert!(!p.contains(first, t0), "the oldest was dropped");
    }
}
