//! The peer table: static and discovered pacserves, their expiry and backoff, and the
//! multicast filters. Pure: the time is always an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use regex_lite::Regex;

use crate::error::Invalid;
use crate::limits::{MAX_HOST_NAME, MAX_PEERS, PEER_BACKOFF_BASE, PEER_BACKOFF_MAX};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// From `--pacserver`: never filtered, never expires.
    Static,
    /// Heard by multicast: filtered, forgotten after silence or a goodbye.
    Multicast,
}

/// Where a peer's HTTP server is: `host` is an IP literal (no brackets), a link-local IPv6
/// address with its zone (`fe80::2%eth0`), or a host name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddr {
    pub host: String,
    pub port: u16,
}

impl PeerAddr {
    /// `host:port`, IPv6 in brackets (`[fe80::2%eth0]:15678`): the string filters match, the
    /// status page, metrics and logs show.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `host:port` as it goes in a URL: a zone's `%` written `%25` (RFC 6874), which is how
    /// pacman's libcurl reads it.
    pub fn url_authority(&self) -> String {
        self.authority().replacen('%', "%25", 1)
    }

    /// The address, zone left out; None for a host name.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        let addr = self.host.split_once('%').map_or(&*self.host, |(a, _)| a);
        addr.parse().ok()
    }

    /// A link-local IPv6 address: reachable only from this host, through its zone.
    pub fn is_link_local(&self) -> bool {
        matches!(self.ip(), Some(std::net::IpAddr::V6(v6)) if v6.is_unicast_link_local())
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.authority())
    }
}

/// Parse `HOST:PORT`, `[IPv6]:PORT` or `IPv4:PORT` (as given to `--pacserver`).
pub fn parse_peer_addr(s: &str) -> Result<PeerAddr, Invalid> {
    let bad = || {
        Invalid(format!(
            "'{s}': expected HOST:PORT, [IPv6]:PORT or IPv4:PORT"
        ))
    };
    let zoned: String;
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = after.strip_prefix(':').ok_or_else(bad)?;
        let (addr, zone) = match host.split_once('%') {
            // As in a URL (`%25eth0`) or as `ip` prints it (`%eth0`).
            Some((addr, zone)) => (addr, Some(zone.strip_prefix("25").unwrap_or(zone))),
            None => (host, None),
        };
        let Ok(ip) = addr.parse::<std::net::Ipv6Addr>() else {
            return Err(Invalid(format!("'{s}': '{addr}' is not an IPv6 address")));
        };
        match zone {
            None => (host, port),
            Some(zone) if ip.is_unicast_link_local() && crate::sys::ifaces::valid_name(zone) => {
                zoned = format!("{addr}%{zone}");
                (zoned.as_str(), port)
            }
            Some(_) => {
                return Err(Invalid(format!(
                    "'{s}': a zone (%eth0) goes only with a link-local address (fe80::/10), \
                     and names an interface"
                )));
            }
        }
    } else {
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        if host.contains(':') {
            return Err(Invalid(format!(
                "'{s}': put an IPv6 address in brackets, e.g. [{host}]:{port}"
            )));
        }
        (host, port)
    };
    let port: u16 = port
        .parse()
        .map_err(|_| Invalid(format!("'{s}': bad port '{port}'")))?;
    if port == 0 {
        return Err(Invalid(format!("'{s}': port 0")));
    }
    let (plain, zone) = host.split_once('%').unwrap_or((host, ""));
    let valid_host = !plain.is_empty()
        && host.len() <= MAX_HOST_NAME
        && plain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    let host = if zone.is_empty() {
        plain.to_ascii_lowercase()
    } else {
        // Interface names are case-sensitive.
        format!("{}%{zone}", plain.to_ascii_lowercase())
    };
    if !valid_host {
        return Err(Invalid(format!("'{s}': bad host name '{host}'")));
    }
    Ok(PeerAddr { host, port })
}

/// `--multicast-filter i:REGEX|x:REGEX`, in order given.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

impl Filters {
    pub fn add(&mut self, spec: &str) -> Result<(), Invalid> {
        let (kind, pattern) = spec
            .split_once(':')
            .ok_or_else(|| Invalid(format!("'{spec}': expected i:REGEX or x:REGEX")))?;
        let re = Regex::new(pattern).map_err(|e| Invalid(format!("'{spec}': {e}")))?;
        match kind {
            "i" => self.include.push(re),
            "x" => self.exclude.push(re),
            _ => {
                return Err(Invalid(format!(
                    "'{spec}': '{kind}' is neither i (include) nor x (exclude)"
                )));
            }
        }
        Ok(())
    }

    /// A discovered `host:port` is kept if it matches an inclusive filter (when there are
    /// any) and no exclusive one.
    pub fn allows(&self, authority: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(authority)))
            && !self.exclude.iter().any(|r| r.is_match(authority))
    }

    /// An inclusive filter names `authority` explicitly: that widens discovery beyond the
    /// subnets this host is on.
    pub fn includes(&self, authority: &str) -> bool {
        self.include.iter().any(|r| r.is_match(authority))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: PeerAddr,
    pub source: Source,
    /// The announcing instance (of a static peer too once it is heard by multicast): a
    /// restart is a new instance.
    pub instance: Option<u64>,
    pub last_seen: Option<Instant>,
    /// Last time it answered a lookup (200 or 404).
    pub last_answer: Option<Instant>,
    /// Consecutive failed queries (refused, timed out, garbage).
    pub failures: u32,
    /// Not asked again before this, after failures.
    pub retry_at: Option<Instant>,
    /// The architectures it announced (empty for a static peer: not known).
    pub archs: Vec<String>,
}

impl Peer {
    pub fn backed_off(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|t| now < t)
    }
}

/// What happened to a multicast announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    New,
    Refreshed,
    /// A pacserve known at a link-local address, now heard at a routable one (its other
    /// address family, or a hello listing it): the entry moved there.
    Moved,
    Filtered,
    /// From an address on none of this host's subnets (and no inclusive filter names it):
    /// on an unauthenticated LAN that is most likely a forged source.
    OffSubnet,
    TableFull,
}

#[derive(Debug, Default)]
pub struct PeerTable {
    peers: HashMap<PeerAddr, Peer>,
    filters: Filters,
}

/// The wait after `failures` consecutive failures: base × 2^(failures-1), capped.
pub fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    PEER_BACKOFF_BASE
        .saturating_mul(1u32 << shift)
        .min(PEER_BACKOFF_MAX)
}

impl PeerTable {
    pub fn new(filters: Filters) -> PeerTable {
        PeerTable {
            peers: HashMap::new(),
            filters,
        }
    }

    pub fn add_static(&mut self, addr: PeerAddr) {
        self.peers.insert(
            addr.clone(),
            Peer {
                addr,
                source: Source::Static,
                instance: None,
                last_seen: None,
                last_answer: None,
                failures: 0,
                retry_at: None,
                archs: Vec::new(),
            },
        );
    }

    /// A multicast hello from `addr`, announcing `archs`; `on_subnet`: its source is on a
    /// subnet of this host.
    pub fn seen(
        &mut self,
        addr: PeerAddr,
        instance: u64,
        archs: &[String],
        on_subnet: bool,
        now: Instant,
    ) -> Seen {
        if let Some(p) = self.peers.get_mut(&addr) {
            p.last_seen = Some(now);
            // A restart is a new instance. Its backoff stays: it belongs to the address (a
            // forged hello with a fresh id must not make a dead address worth asking again);
            // the first answer clears it. A static peer's is kept only to know it when it is
            // heard at another address.
            p.instance = Some(instance);
            if p.source == Source::Multicast {
                p.archs = archs.to_vec();
            }
            return Seen::Refreshed;
        }
        let authority = addr.authority();
        if !self.filters.allows(&authority) {
            return Seen::Filtered;
        }
        if !on_subnet && !self.filters.includes(&authority) {
            return Seen::OffSubnet;
        }
        // The same pacserve at another address (heard on its other address family, or known
        // by its link-local address before): one entry, moved only from a link-local address
        // to a routable one, so it never flaps between two.
        let twin = self
            .peers
            .values()
            .find(|p| p.instance == Some(instance))
            .map(|p| (p.addr.clone(), p.source));
        if let Some((known, source)) = twin {
            let moves =
                source == Source::Multicast && known.is_link_local() && !addr.is_link_local();
            if !moves {
                if let Some(p) = self.peers.get_mut(&known) {
                    p.last_seen = Some(now);
                }
                return Seen::Refreshed;
            }
            self.peers.remove(&known);
            self.insert_discovered(addr, instance, archs, now);
            return Seen::Moved;
        }
        if self.peers.len() >= MAX_PEERS && !self.evict_one_unproven() {
            return Seen::TableFull;
        }
        self.insert_discovered(addr, instance, archs, now);
        Seen::New
    }

    fn insert_discovered(&mut self, addr: PeerAddr, instance: u64, archs: &[String], now: Instant) {
        self.peers.insert(
            addr.clone(),
            Peer {
                addr,
                source: Source::Multicast,
                instance: Some(instance),
                last_seen: Some(now),
                last_answer: None,
                failures: 0,
                retry_at: None,
                archs: archs.to_vec(),
            },
        );
    }

    /// Full table: forget the discovered peer that never answered a lookup and was heard
    /// from longest ago, to make room. False when every peer has answered (or is static).
    fn evict_one_unproven(&mut self) -> bool {
        let victim = self
            .peers
            .values()
            .filter(|p| p.source == Source::Multicast && p.last_answer.is_none())
            .min_by_key(|p| p.last_seen)
            .map(|p| p.addr.clone());
        match victim {
            Some(addr) => {
                self.peers.remove(&addr);
                true
            }
            None => false,
        }
    }

    /// A multicast goodbye: forget a discovered peer at once (static peers stay).
    pub fn gone(&mut self, addr: &PeerAddr, instance: u64) -> bool {
        let forget = self
            .peers
            .get(addr)
            .is_some_and(|p| p.source == Source::Multicast && p.instance == Some(instance));
        if forget {
            self.peers.remove(addr);
        }
        forget
    }

    /// Forget discovered peers silent for longer than `max_silence`; the ones forgotten.
    pub fn expire(&mut self, now: Instant, max_silence: Duration) -> Vec<PeerAddr> {
        let stale: Vec<PeerAddr> = self
            .peers
            .values()
            .filter(|p| {
                p.source == Source::Multicast
                    && p.last_seen
                        .is_none_or(|t| now.saturating_duration_since(t) > max_silence)
            })
            .map(|p| p.addr.clone())
            .collect();
        for a in &stale {
            self.peers.remove(a);
        }
        stale
    }

    /// Peers worth asking now (not backed off), in a stable order.
    pub fn askable(&self, now: Instant) -> Vec<PeerAddr> {
        let mut v: Vec<PeerAddr> = self
            .peers
            .values()
            .filter(|p| !p.backed_off(now))
            .map(|p| p.addr.clone())
            .collect();
        v.sort();
        v
    }

    pub fn succeeded(&mut self, addr: &PeerAddr, now: Instant) {
        if let Some(p) = self.peers.get_mut(addr) {
            p.failures = 0;
            p.retry_at = None;
            p.last_answer = Some(now);
        }
    }

    /// A failed query: back the peer off exponentially; the wait chosen.
    pub fn failed(&mut self, addr: &PeerAddr, now: Instant) -> Option<Duration> {
        let p = self.peers.get_mut(addr)?;
        p.failures = p.failures.saturating_add(1);
        let wait = backoff(p.failures);
        p.retry_at = Some(now + wait);
        Some(wait)
    }

    /// Whether a peer heard by multicast has the address `ip` (on a LAN with a shared
    /// secret, only a hello with a valid seal puts one there).
    pub fn has_discovered(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.peers
            .values()
            .any(|p| p.source == Source::Multicast && p.addr.host.parse() == Ok(ip))
    }

    pub fn get(&self, addr: &PeerAddr) -> Option<&Peer> {
        self.peers.get(addr)
    }

    pub fn all(&self) -> Vec<Peer> {
        let mut v: Vec<Peer> = self.peers.values().cloned().collect();
        v.sort_by(|a, b| a.addr.cmp(&b.addr));
        v
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> PeerAddr {
        parse_peer_addr(s).unwrap()
    }

    #[test]
    fn parses_peer_addresses() {
        let ok: &[(&str, &str, u16)] = &[
            ("10.0.0.2:15678", "10.0.0.2", 15678),
            ("[::1]:8080", "::1", 8080),
            ("[fe80::1]:1", "fe80::1", 1),
            ("Pi.LAN:15678", "pi.lan", 15678),
            ("hub-1:99", "hub-1", 99),
        ];
        for (s, host, port) in ok {
            let a = addr(s);
            assert_eq!((a.host.as_str(), a.port), (*host, *port), "{s}");
        }
        assert_eq!(addr("[::1]:8080").authority(), "[::1]:8080");
        let bad = [
            "",
            "host",
            ":15678",
            "host:",
            "host:0",
            "host:65536",
            "host:x",
            "::1:15678",
            "[::1]",
            "[::1]15678",
            "[nothex]:1",
            "a b:1",
            "a/b:1",
            "a@b:1",
        ];
        for s in bad {
            assert!(parse_peer_addr(s).is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn filters() {
        let mut f = Filters::default();
        assert!(f.allows("10.0.0.1:15678"));
        f.add(r"x:^10\.0\.0\.3:").unwrap();
        assert!(f.allows("10.0.0.1:15678"));
        assert!(!f.allows("10.0.0.3:15678"));
        f.add(r"i:^10\.0\.0\.").unwrap();
        assert!(f.allows("10.0.0.2:15678"));
        assert!(!f.allows("192.168.1.2:15678"));
        assert!(!f.allows("10.0.0.3:15678"), "exclusive wins over inclusive");
        for bad in ["", "i", "y:abc", "i:(", "x:["] {
            assert!(Filters::default().add(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn discovery_lifecycle() {
        let t0 = Instant::now();
        let mut f = Filters::default();
        f.add("x:^10\\.0\\.0\\.9:").unwrap();
        let mut table = PeerTable::new(f);
        table.add_static(addr("10.0.0.9:15678"));
        assert_eq!(
            table.seen(addr("10.0.0.2:15678"), 1, &[], true, t0),
            Seen::New
        );
        assert_eq!(
            table.seen(addr("10.0.0.2:15678"), 1, &[], true, t0),
            Seen::Refreshed
        );
        assert_eq!(
            table.seen(addr("10.0.0.9:1"), 5, &[], true, t0),
            Seen::Filtered
        );
        // Off this host's subnets: refused, unless an inclusive filter names it.
        assert_eq!(
            table.seen(addr("192.0.2.7:1"), 6, &[], false, t0),
            Seen::OffSubnet
        );
        let mut wide = Filters::default();
        wide.add(r"i:^192\.0\.2\.").unwrap();
        let mut widened = PeerTable::new(wide);
        assert_eq!(
            widened.seen(addr("192.0.2.7:1"), 6, &[], false, t0),
            Seen::New
        );
        // A static peer is never filtered nor expired.
        assert_eq!(
            table.seen(addr("10.0.0.9:15678"), 7, &[], true, t0),
            Seen::Refreshed
        );
        assert_eq!(
            table.seen(addr("10.0.0.3:15678"), 2, &[], true, t0),
            Seen::New
        );
        // Goodbye with the wrong instance is ignored; with the right one it forgets.
        assert!(!table.gone(&addr("10.0.0.3:15678"), 99));
        assert!(table.gone(&addr("10.0.0.3:15678"), 2));
        assert!(!table.gone(&addr("10.0.0.9:15678"), 7), "static peers stay");
        let later = t0 + Duration::from_secs(181);
        table.seen(addr("10.0.0.4:15678"), 4, &[], true, later);
        let gone = table.expire(later, Duration::from_secs(180));
        assert_eq!(gone, [addr("10.0.0.2:15678")]);
        assert_eq!(
            table.askable(later),
            [addr("10.0.0.4:15678"), addr("10.0.0.9:15678")]
        );
    }

    #[test]
    fn backoff_grows_and_resets() {
        let t0 = Instant::now();
        let mut table = PeerTable::default();
        let a = addr("10.0.0.2:15678");
        table.add_static(a.clone());
        let mut waits = Vec::new();
        for _ in 0..12 {
            waits.push(table.failed(&a, t0).unwrap());
        }
        assert_eq!(waits[0], PEER_BACKOFF_BASE);
        assert_eq!(waits[1], PEER_BACKOFF_BASE * 2);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*waits.last().unwrap(), PEER_BACKOFF_MAX);
        assert!(table.askable(t0).is_empty());
        assert_eq!(
            table.askable(t0 + PEER_BACKOFF_MAX),
            std::slice::from_ref(&a)
        );
        table.succeeded(&a, t0);
        assert!(!table.get(&a).unwrap().backed_off(t0));
        // A new instance id at a failing address keeps the backoff: it is the address that
        // failed (forged hellos with fresh ids must not make it worth asking again).
        let b = addr("10.0.0.5:15678");
        table.seen(b.clone(), 1, &[], true, t0);
        table.failed(&b, t0);
        table.seen(b.clone(), 2, &[], true, t0);
        let p = table.get(&b).unwrap();
        assert_eq!((p.failures, p.instance), (1, Some(2)));
        assert!(p.backed_off(t0));
        table.succeeded(&b, t0);
        assert_eq!(table.get(&b).unwrap().failures, 0, "an answer clears it");
    }

    #[test]
    fn table_is_capped() {
        let t0 = Instant::now();
        let mut table = PeerTable::default();
        for i in 0..MAX_PEERS {
            assert_eq!(
                table.seen(
                    addr(&format!("10.1.{}.{}:1", i / 250, i % 250 + 1)),
                    i as u64,
                    &[],
                    true,
                    t0
                ),
                Seen::New
            );
        }
        // Full of peers that never answered: the one heard from longest ago makes room.
        let t1 = t0 + Duration::from_secs(1);
        let oldest = addr("10.1.0.1:1");
        table.seen(oldest.clone(), 0, &[], true, t0);
        for i in 1..MAX_PEERS {
            let a = addr(&format!("10.1.{}.{}:1", i / 250, i % 250 + 1));
            table.seen(a.clone(), i as u64, &[], true, t1);
            table.succeeded(&a, t1);
        }
        assert_eq!(
            table.seen(addr("10.9.9.9:1"), 1000, &[], true, t1),
            Seen::New
        );
        assert!(
            table.get(&oldest).is_none(),
            "the unproven peer was evicted"
        );
        assert_eq!(table.len(), MAX_PEERS);
        // Every peer has answered now: a newcomer is refused, nobody proven is evicted.
        table.succeeded(&addr("10.9.9.9:1"), t1);
        assert_eq!(
            table.seen(addr("10.9.9.8:1"), 1001, &[], true, t1),
            Seen::TableFull
        );
        assert_eq!(table.len(), MAX_PEERS);
    }

    #[test]
    fn link_local_peers_and_zones() {
        let ll = addr("[fe80::2%eth0]:15678");
        assert_eq!(ll.host, "fe80::2%eth0");
        assert_eq!(addr("[FE80::2%25eth0]:15678"), ll, "as a URL writes it");
        assert_eq!(ll.authority(), "[fe80::2%eth0]:15678");
        assert_eq!(ll.url_authority(), "[fe80::2%25eth0]:15678");
        assert_eq!(ll.ip(), Some("fe80::2".parse().unwrap()));
        assert!(ll.is_link_local());
        assert!(!addr("[fd00::2]:1").is_link_local());
        assert!(!addr("10.0.0.2:1").is_link_local());
        assert_eq!(addr("pi.lan:1").ip(), None);
        for bad in [
            "[fd00::2%eth0]:1",
            "[fe80::2%]:1",
            "[fe80::2%a/b]:1",
            "[fe80::2%eth0%1]:1",
            "fe80::2%eth0:1",
        ] {
            assert!(parse_peer_addr(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn one_instance_is_one_peer_at_its_best_address() {
        let t0 = Instant::now();
        let mut table = PeerTable::default();
        let (ll, v4, v6) = (
            addr("[fe80::2%eth0]:15678"),
            addr("10.0.0.2:15678"),
            addr("[fd00::2]:15678"),
        );
        assert_eq!(table.seen(ll.clone(), 7, &[], true, t0), Seen::New);
        table.failed(&ll, t0);
        // Link-local to routable: moved (with a clean slate: backoff is the address's).
        assert_eq!(table.seen(v4.clone(), 7, &[], true, t0), Seen::Moved);
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(&v4).map(|p| p.failures), Some(0));
        // Routable to routable, or back to link-local: it stays where it is.
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(table.seen(v6.clone(), 7, &[], true, t1), Seen::Refreshed);
        assert_eq!(table.seen(ll.clone(), 7, &[], true, t1), Seen::Refreshed);
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(&v4).and_then(|p| p.last_seen), Some(t1));
        // Another instance at the link-local address is another pacserve.
        assert_eq!(table.seen(ll.clone(), 8, &[], true, t1), Seen::New);
        // A static peer heard by multicast at another address stays the one entry.
        let mut with_static = PeerTable::default();
        with_static.add_static(v4.clone());
        assert_eq!(
            with_static.seen(v4.clone(), 9, &[], true, t0),
            Seen::Refreshed
        );
        assert_eq!(
            with_static.seen(ll.clone(), 9, &[], true, t0),
            Seen::Refreshed
        );
        assert_eq!(with_static.seen(v6, 9, &[], true, t0), Seen::Refreshed);
        assert_eq!(with_static.len(), 1);
        assert!(!with_static.gone(&v4, 9), "static peers stay");
    }
}
