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
//! datagram), `src` (the sender's IPv4 address, as it leaves this host) and `mac` (64
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
//! - On start a `query`, then a `hello`; a `hello` every interval; a `bye` on stop.
//! - The peer's HTTP address is the datagram's source IP with the announced `port`.
//! - A `query` is answered with a `hello` to the group, not by unicast to the asker: several
//!   pacserves on one host share the UDP port (SO_REUSEADDR) and a unicast datagram would reach
//!   only one of them, while the group answer also reaches everyone else who just started.
//!   Answers are rate limited ([`QUERY_ANSWER_MIN_GAP`]); a query heard during the pause is
//!   answered when it ends, and any hello answers every query heard before it.
//! - A discovered peer is forgotten after [`MISSED_HELLOS_BEFORE_EXPIRY`] silent intervals.
//!
//! Datagrams are hostile input: malformed ones are counted and dropped (logged only with
//! `--verbose`, escaped), and none can make us send more than one datagram a second.
//!
//! The pieces: [`wire`] (the datagram, pure), [`socket`] (opening and joining the group),
//! [`run`] (the loop that keeps the peer table up to date). This file holds the configuration.

mod run;
mod socket;
mod wire;

pub use run::{DiscoveryStats, StatsSnapshot, run};
pub use socket::{Discovery, OpenError, open};
pub use wire::{
    Announce, Datagram, DecodeError, Kind, Seal, decode, decode_datagram, encode, encode_sealed,
    encode_signed, new_instance_id,
};

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::error::Invalid;
use crate::limits::{
    MAX_MULTICAST_INTERFACES, MISSED_HELLOS_BEFORE_EXPIRY, MULTICAST_INTERVAL_DEFAULT,
    MULTICAST_INTERVAL_MAX, MULTICAST_INTERVAL_MIN, MULTICAST_TTL_DEFAULT,
};

pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 15, 78);

/// The default UDP port, the one the Python pacserve used.
pub const DEFAULT_PORT: u16 = 15679;

/// Where and how often to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MulticastConfig {
    /// An IPv4 multicast group.
    pub group: Ipv4Addr,
    /// UDP port, shared by every pacserve on the LAN (and on this host).
    pub port: u16,
    /// Local addresses of the interfaces to join the group on and to announce on; empty means
    /// the interface the routing table picks for 224.0.0.0/4 (INADDR_ANY).
    pub interfaces: Vec<Ipv4Addr>,
    /// Multicast TTL: 1 keeps announcements on the local link.
    pub ttl: u32,
    /// Time between hellos.
    pub interval: Duration,
}

impl Default for MulticastConfig {
    fn default() -> MulticastConfig {
        MulticastConfig {
            group: DEFAULT_GROUP,
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
        let g = self.group;
        if !g.is_multicast() {
            return Some(format!(
                "multicast group {g}: not an IPv4 multicast address \
                 (224.0.0.0 to 239.255.255.255; the default is {DEFAULT_GROUP})"
            ));
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
        for (i, a) in self.interfaces.iter().enumerate() {
            if a.is_multicast() || a.is_broadcast() {
                return Some(format!(
                    "multicast interface {a}: give the interface's own unicast address"
                ));
            }
            if self.interfaces[..i].contains(a) {
                return Some(format!("multicast interface {a} is given twice"));
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
            &|c| c.group = Ipv4Addr::new(224, 0, 0, 251),
            &|c| c.group = Ipv4Addr::new(239, 255, 255, 255),
            &|c| c.ttl = 255,
            &|c| c.interval = Duration::from_secs(1),
            &|c| c.interval = MULTICAST_INTERVAL_MAX,
            &|c| c.interfaces = vec![Ipv4Addr::LOCALHOST, Ipv4Addr::new(10, 0, 0, 2)],
        ];
        for f in good {
            assert_eq!(with(f), Ok(()));
        }
        let bad: &[(&Edit, &str)] = &[
            (
                &|c| c.group = Ipv4Addr::new(10, 0, 0, 1),
                "not an IPv4 multicast address",
            ),
            (
                &|c| c.group = Ipv4Addr::new(240, 0, 0, 1),
                "not an IPv4 multicast address",
            ),
            (
                &|c| c.group = Ipv4Addr::new(223, 255, 255, 255),
                "not an IPv4 multicast address",
            ),
            (
                &|c| c.group = Ipv4Addr::BROADCAST,
                "not an IPv4 multicast address",
            ),
            (
                &|c| c.group = Ipv4Addr::UNSPECIFIED,
                "not an IPv4 multicast address",
            ),
            (&|c| c.port = 0, "port 0"),
            (&|c| c.ttl = 0, "TTL 0"),
            (&|c| c.ttl = 256, "TTL 256"),
            (&|c| c.interval = Duration::from_millis(999), "interval"),
            (&|c| c.interval = Duration::ZERO, "interval"),
            (&|c| c.interval = Duration::MAX, "interval"),
            (&|c| c.interfaces = vec![DEFAULT_GROUP], "unicast address"),
            (
                &|c| c.interfaces = vec![Ipv4Addr::BROADCAST],
                "unicast address",
            ),
            (
                &|c| c.interfaces = vec![Ipv4Addr::LOCALHOST; 2],
                "given twice",
            ),
            (
                &|c| c.interfaces = (1..=21).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect(),
                "at most 20",
            ),
        ];
        for (f, want) in bad {
            let e = with(f).expect_err(want);
            assert!(e.0.contains(want), "{e:?} should mention {want:?}");
        }
        let bad_cfg = MulticastConfig {
            group: Ipv4Addr::new(10, 0, 0, 1),
            ..MulticastConfig::default()
        };
        let e = open(&bad_cfg).expect_err("a unicast group");
        assert!(
            matches!(&e, OpenError::Invalid(Invalid(m)) if m.contains("not an IPv4 multicast")),
            "{e:?}"
        );
    }
}
