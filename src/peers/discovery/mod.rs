//! Finding peers by UDP multicast: the announcement format (pure, fuzzed), the socket set-up
//! and the discovery loop that feeds [`PeerTable`].
//!
//! # Wire format
//!
//! One datagram is one line of printable ASCII ending in `\n`, at most
//! [`MAX_ANNOUNCE_BYTES`] long, tokens separated by single spaces:
//!
//! ```text
//! pacserve 1 hello id=0123456789abcdef port=15678 arch=x86_64,any
//! ```
//!
//! - `pacserve` (magic) and `1` (version). Other versions are rejected: a later version that
//!   wants version-1 peers to understand it keeps the `1` and adds fields.
//! - The kind: `hello` (here I am; also the answer to a query), `query` (who is there?) or
//!   `bye` (I am stopping: forget me now).
//! - `key=value` fields in any order; keys are `[a-z0-9_-]+`. Every kind carries all three
//!   known fields, each exactly once:
//!   - `id`: the instance, 16 lowercase hex digits, new on every start. Our own looped-back
//!     datagrams are recognised by it, and a restarted peer gets a clean slate.
//!   - `port`: the HTTP port, decimal 1–65535 without leading zeros.
//!   - `arch`: architectures served, comma-separated names of `[A-Za-z0-9_]`, at most
//!     [`MAX_ANNOUNCE_ARCHS`] of at most [`MAX_ARCH_NAME`] bytes, no repeats; may be empty.
//!
//!   and optionally `addrs`: the sender's unique-local and global IPv6 addresses (at most
//!   [`crate::limits::MAX_ANNOUNCE_ADDRS`], comma-separated, no repeats, none link-local,
//!   loopback, multicast or IPv4-mapped), so that a receiver that heard it from a link-local
//!   address can reach it without a zone.
//!
//!   Fields with other keys are ignored (any printable value), so later versions can add some.
//!
//! # The seal (with `--secret-file`)
//!
//! On a LAN with a shared secret every datagram ends with four more fields:
//!
//! ```text
//! pacserve 1 hello id=… port=15678 arch=x86_64,any ts=1700000000 nonce=… src=10.0.0.2 mac=…
//! ```
//!
//! `ts` (seconds since the epoch, decimal), `nonce` (16 lowercase hex digits, new for every
//! datagram), `src` (the address it leaves this host from: IPv4, or for IPv6 the link-local
//! address of the interface, without a zone, as Rust writes it) and `mac` (64
//! lowercase hex digits), always last: HMAC-SHA-256 under the signing key of every byte
//! before ` mac=`. So the MAC covers the whole content and the sender's address. A receiver
//! with a secret drops (and counts, by reason) a datagram without a seal, one whose `src` is
//! not the address it came from (a replay from another host), one whose MAC no key of its
//! own gives, one whose `ts` is more than [`crate::limits::AUTH_WINDOW`] away from its own
//! clock, and one whose `ts` and `nonce` it has seen already. The version stays `1`: a
//! pacserve without a secret ignores the four fields, as it ignores any unknown field.
//!
//! # Protocol
//!
//! - Two families: IPv4 to [`DEFAULT_GROUP`], IPv6 to the link-local [`DEFAULT_GROUP6`] on
//!   every IPv6 interface (by index). One pacserve heard on both is one peer.
//! - On start a `hello`, then (after a random delay) a `query`; a `hello` every interval; a
//!   `bye` on stop. A query announces its sender as a hello does. When and on which family
//!   each goes, so that a LAN of many hosts stays quiet, is [`suppress`]'s.
//! - The peer's HTTP address is the datagram's source IP with the announced `port`, or for a
//!   link-local IPv6 source one of the `addrs` on that link, else the source with its zone
//!   (`fe80::2%eth0`): see [`address`].
//! - A `query` is answered with a `hello` to the group, not by unicast to the asker: several
//!   pacserves on one host share the UDP port (SO_REUSEADDR) and a unicast datagram would reach
//!   only one of them, while the group answer also reaches everyone else who just started.
//!   Answers are rate limited ([`QUERY_ANSWER_MIN_GAP`]); a query heard during the pause is
//!   answered when it ends, and any hello answers every query heard before it.
//! - A discovered peer is forgotten after [`MISSED_HELLOS_BEFORE_EXPIRY`] silent intervals.
//!
//! Datagrams are hostile input: malformed ones are counted and dropped (logged only with
//! `--verbose`, escaped), and none can make us answer more than once a second.
//!
//! The pieces: [`wire`] (the datagram, pure), [`address`] (where a peer is reached, pure),
//! [`suppress`] (what is sent when, pure), [`socket`] (opening and joining the groups),
//! [`run`] (the loop that keeps the peer table up to date). This file holds the configuration.

mod address;
mod run;
mod socket;
mod suppress;
mod wire;

pub use run::{DiscoveryStats, StatsSnapshot, run};
pub use socket::{Discovery, OpenError, open};
pub use wire::{
    Announce, Datagram, DecodeError, Kind, Seal, decode, decode_datagram, encode, encode_sealed,
    encode_signed, new_instance_id,
};

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::error::Invalid;
use crate::limits::{
    MAX_MULTICAST_INTERFACES, MISSED_HELLOS_BEFORE_EXPIRY, MULTICAST_INTERVAL_DEFAULT,
    MULTICAST_INTERVAL_MAX, MULTICAST_INTERVAL_MIN, MULTICAST_TTL_DEFAULT,
};

pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 15, 78);

/// The default UDP port, the one the Python pacserve used.
pub const DEFAULT_PORT: u16 = 15679;

/// The default IPv6 group: link-local scope (`ff02::/16`, never routed off the link, joined
/// per interface), its last groups mirroring the IPv4 group's `15.78`. Not assigned by IANA
/// (its link-local list, RFC 4291 and the IPv6 multicast registry, has no `ff02::15:78`).
pub const DEFAULT_GROUP6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0x15, 0x78);

/// An address family discovery speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &std::net::SocketAddr) -> Family {
        match addr {
            std::net::SocketAddr::V4(_) => Family::V4,
            std::net::SocketAddr::V6(_) => Family::V6,
        }
    }
}

/// A set of families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Families(u8);

impl Families {
    pub const NONE: Families = Families(0);
    pub const V4: Families = Families(1);
    pub const V6: Families = Families(2);
    pub const BOTH: Families = Families(3);

    pub fn one(f: Family) -> Families {
        match f {
            Family::V4 => Families::V4,
            Family::V6 => Families::V6,
        }
    }

    pub fn contains(self, f: Family) -> bool {
        self.0 & Families::one(f).0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Families) -> Families {
        Families(self.0 | other.0)
    }

    pub fn intersect(self, other: Families) -> Families {
        Families(self.0 & other.0)
    }

    pub fn minus(self, other: Families) -> Families {
        Families(self.0 & !other.0)
    }

    /// The families in order, IPv6 first.
    pub fn iter(self) -> impl Iterator<Item = Family> {
        [Family::V6, Family::V4]
            .into_iter()
            .filter(move |f| self.contains(*f))
    }
}

/// An interface to announce on: by one of its addresses, or by name. An IPv4 address is
/// IPv4's only; an IPv6 address is IPv6's only (the interface holding it); a name is both's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interface {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    Name(String),
}

impl Interface {
    /// An address literal, else an interface name (checked by `validate`).
    pub fn parse(s: &str) -> Interface {
        match s.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(a)) => Interface::V4(a),
            Ok(std::net::IpAddr::V6(a)) => Interface::V6(a),
            Err(_) => Interface::Name(s.to_string()),
        }
    }
}

impl std::fmt::Display for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interface::V4(a) => a.fmt(f),
            Interface::V6(a) => a.fmt(f),
            Interface::Name(n) => f.write_str(n),
        }
    }
}

/// Where and how often to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MulticastConfig {
    /// The IPv4 multicast group; None: no IPv4 discovery.
    pub group: Option<Ipv4Addr>,
    /// The IPv6 multicast group; None: no IPv6 discovery.
    pub group6: Option<Ipv6Addr>,
    /// UDP port, shared by every pacserve on the LAN (and on this host).
    pub port: u16,
    /// The interfaces to join the groups on and to announce on; empty means IPv4 on the
    /// interface the routing table picks for 224.0.0.0/4 (INADDR_ANY) and IPv6 on every
    /// interface that is up, multicast-capable and has IPv6.
    pub interfaces: Vec<Interface>,
    /// Multicast TTL (IPv6: hop limit): 1 keeps announcements on the local link.
    pub ttl: u32,
    /// Time between hellos.
    pub interval: Duration,
}

impl Default for MulticastConfig {
    fn default() -> MulticastConfig {
        MulticastConfig {
            group: Some(DEFAULT_GROUP),
            group6: Some(DEFAULT_GROUP6),
            port: DEFAULT_PORT,
            interfaces: Vec::new(),
            ttl: MULTICAST_TTL_DEFAULT,
            interval: MULTICAST_INTERVAL_DEFAULT,
        }
    }
}

impl MulticastConfig {
    /// Check the values; the error names the option's value and what is wrong with it.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.problem().map_or(Ok(()), |p| Err(Invalid(p)))
    }

    fn problem(&self) -> Option<String> {
        if let Some(g) = self.group
            && !g.is_multicast()
        {
            return Some(format!(
                "multicast group {g}: not an IPv4 multicast address \
                 (224.0.0.0 to 239.255.255.255; the default is {DEFAULT_GROUP})"
            ));
        }
        if let Some(g) = self.group6
            && !g.is_multicast()
        {
            return Some(format!(
                "multicast group {g}: not an IPv6 multicast address \
                 (ff00::/8; the default is {DEFAULT_GROUP6})"
            ));
        }
        if self.group.is_none() && self.group6.is_none() {
            return Some("no multicast group: give an IPv4 or an IPv6 one".into());
        }
        if self.port == 0 {
            return Some(
                "multicast port 0: choose a fixed port, every peer must use the same".into(),
            );
        }
        if !(1..=255).contains(&self.ttl) {
            return Some(format!("multicast TTL {}: must be 1 to 255", self.ttl));
        }
        if self.interval < MULTICAST_INTERVAL_MIN || self.interval > MULTICAST_INTERVAL_MAX {
            return Some(format!(
                "multicast interval {:?}: must be {} s to {} s",
                self.interval,
                MULTICAST_INTERVAL_MIN.as_secs(),
                MULTICAST_INTERVAL_MAX.as_secs()
            ));
        }
        if self.interfaces.len() > MAX_MULTICAST_INTERFACES {
            return Some(format!(
                "{} multicast interfaces: at most {MAX_MULTICAST_INTERFACES}",
                self.interfaces.len()
            ));
        }
        for (i, iface) in self.interfaces.iter().enumerate() {
            let unicast = match iface {
                Interface::V4(a) => !(a.is_multicast() || a.is_broadcast() || a.is_unspecified()),
                Interface::V6(a) => !(a.is_multicast() || a.is_unspecified()),
                Interface::Name(n) => {
                    if !crate::sys::ifaces::valid_name(n) {
                        return Some(format!(
                            "multicast interface '{n}': neither an address nor an interface \
                             name (see `ip link`)"
                        ));
                    }
                    true
                }
            };
            if !unicast {
                return Some(format!(
                    "multicast interface {iface}: give the interface's own unicast address \
                     or its name"
                ));
            }
            if self.interfaces[..i].contains(iface) {
                return Some(format!("multicast interface {iface} is given twice"));
            }
        }
        None
    }

    /// How long a discovered peer may stay silent before it is forgotten.
    pub fn max_silence(&self) -> Duration {
        clamp_interval(self.interval).saturating_mul(MISSED_HELLOS_BEFORE_EXPIRY)
    }
}

fn clamp_interval(d: Duration) -> Duration {
    d.clamp(MULTICAST_INTERVAL_MIN, MULTICAST_INTERVAL_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_config() {
        let ok = MulticastConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.max_silence(), MULTICAST_INTERVAL_DEFAULT * 3);
        type Edit = dyn Fn(&mut MulticastConfig);
        let with = |f: &Edit| {
            let mut c = MulticastConfig::default();
            f(&mut c);
            c.validate()
        };
        let good: &[&Edit] = &[
            &|c| c.group = Some(Ipv4Addr::new(224, 0, 0, 251)),
            &|c| c.group = Some(Ipv4Addr::new(239, 255, 255, 255)),
            &|c| c.group = None,
            &|c| c.group6 = None,
            &|c| c.group6 = Some("ff12::1".parse().unwrap()),
            &|c| c.ttl = 255,
            &|c| c.interval = Duration::from_secs(1),
            &|c| c.interval = MULTICAST_INTERVAL_MAX,
            &|c| {
                c.interfaces = vec![
                    Interface::V4(Ipv4Addr::LOCALHOST),
                    Interface::V4(Ipv4Addr::new(10, 0, 0, 2)),
                    Interface::parse("fd00::2"),
                    Interface::parse("eth0"),
                    Interface::parse("br-lan.100"),
                ]
            },
        ];
        for f in good {
            assert_eq!(with(f), Ok(()));
        }
        let bad: &[(&Edit, &str)] = &[
            (
                &|c| c.group = Some(Ipv4Addr::new(10, 0, 0, 1)),
                "not an IPv4 multicast address",
            ),
            (
                &|c| c.group = Some(Ipv4Addr::new(240, 0, 0, 1)),
                "not an IPv4 multicast address",
            ),
            (
                &|c| c.group = Some(Ipv4Addr::new(223, 255, 255, 255)),
                "not an IPv4 multicast address",
            ),
            (
                &|c| c.group = Some(Ipv4Addr::BROADCAST),
                "not an IPv4 multicast address",
            ),
            (
                &|c| c.group = Some(Ipv4Addr::UNSPECIFIED),
                "not an IPv4 multicast address",
            ),
            (
                &|c| c.group6 = Some("fe80::1".parse().unwrap()),
                "not an IPv6 multicast address",
            ),
            (
                &|c| {
                    c.group = None;
                    c.group6 = None
                },
                "no multicast group",
            ),
            (&|c| c.port = 0, "port 0"),
            (&|c| c.ttl = 0, "TTL 0"),
            (&|c| c.ttl = 256, "TTL 256"),
            (&|c| c.interval = Duration::from_millis(999), "interval"),
            (&|c| c.interval = Duration::ZERO, "interval"),
            (&|c| c.interval = Duration::MAX, "interval"),
            (
                &|c| c.interfaces = vec![Interface::V4(DEFAULT_GROUP)],
                "unicast address",
            ),
            (
                &|c| c.interfaces = vec![Interface::V4(Ipv4Addr::BROADCAST)],
                "unicast address",
            ),
            (
                &|c| c.interfaces = vec![Interface::V6(DEFAULT_GROUP6)],
                "unicast address",
            ),
            (
                &|c| c.interfaces = vec![Interface::parse("::")],
                "unicast address",
            ),
            (
                &|c| c.interfaces = vec![Interface::parse("a/b")],
                "neither an address nor an interface name",
            ),
            (
                &|c| c.interfaces = vec![Interface::parse("")],
                "neither an address nor an interface name",
            ),
            (
                &|c| c.interfaces = vec![Interface::parse("eth0"), Interface::parse("eth0")],
                "given twice",
            ),
            (
                &|c| c.interfaces = vec![Interface::V4(Ipv4Addr::LOCALHOST); 2],
                "given twice",
            ),
            (
                &|c| {
                    c.interfaces = (1..=21)
                        .map(|i| Interface::V4(Ipv4Addr::new(10, 0, 0, i)))
                        .collect()
                },
                "at most 20",
            ),
        ];
        for (f, want) in bad {
            let e = with(f).expect_err(want);
            assert!(e.0.contains(want), "{e:?} should mention {want:?}");
        }
        let bad_cfg = MulticastConfig {
            group: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ..MulticastConfig::default()
        };
        let e = open(&bad_cfg).expect_err("a unicast group");
        assert!(
            matches!(&e, OpenError::Invalid(Invalid(m)) if m.contains("not an IPv4 multicast")),
            "{e:?}"
        );
    }
}
