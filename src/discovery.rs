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
//!   - `arch`: architectures served, comma-separated names of `[A-Za-z0-9_.-]`, at most
//!     [`MAX_ANNOUNCE_ARCHS`] of at most [`MAX_ARCH_NAME`] bytes, no repeats; may be empty.
//!
//!   Fields with other keys are ignored (any printable value), so later versions can add some.
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

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto, sockopt};
use smol::Async;
use smol::Timer;
use smol::channel::Receiver;
use smol::future::FutureExt;

use crate::limits::{
    ANNOUNCE_RECV_BUFFER, ANNOUNCE_SEND_TIMEOUT, DISCOVERY_RECV_ERROR_PAUSE, MAX_ANNOUNCE_ARCHS,
    MAX_ANNOUNCE_BYTES, MAX_ARCH_NAME, MAX_MULTICAST_INTERFACES, MISSED_HELLOS_BEFORE_EXPIRY,
    MULTICAST_INTERVAL_DEFAULT, MULTICAST_INTERVAL_MAX, MULTICAST_INTERVAL_MIN,
    MULTICAST_TTL_DEFAULT, QUERY_ANSWER_MIN_GAP,
};
use crate::log::escape;
use crate::peers::{PeerAddr, PeerTable, Seen};

/// The default multicast group: administratively scoped (RFC 2365), so it stays inside the
/// organisation, and its last two bytes spell the HTTP port 15678.
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 15, 78);

/// The default UDP port, the one the Python pacserve used.
pub const DEFAULT_PORT: u16 = 15679;

const MAGIC: &str = "pacserve";
const VERSION: &str = "1";

/// The longest valid announcement: every valid [`Announce`] fits in one datagram.
const LONGEST_ANNOUNCE: usize = "pacserve 1 hello id=0123456789abcdef port=65535 arch=".len()
    + MAX_ANNOUNCE_ARCHS * (MAX_ARCH_NAME + 1)
    - 1
    + "\n".len();
const _: () = assert!(LONGEST_ANNOUNCE <= MAX_ANNOUNCE_BYTES);
const _: () = assert!(ANNOUNCE_RECV_BUFFER > MAX_ANNOUNCE_BYTES);

// ---------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------

/// What an announcement says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Here I am (periodic, and the answer to a query).
    Hello,
    /// Who is there? Everyone answers with a hello.
    Query,
    /// I am stopping: forget me now.
    Bye,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hello => "hello",
            Kind::Query => "query",
            Kind::Bye => "bye",
        }
    }
}

/// One multicast datagram, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub kind: Kind,
    /// Random per start of pacserve (see [`new_instance_id`]).
    pub instance: u64,
    /// The sender's HTTP port.
    pub http_port: u16,
    /// Architectures the sender serves (informational).
    pub archs: Vec<String>,
}

/// Why a datagram is not a valid announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Longer than `MAX_ANNOUNCE_BYTES`.
    TooLong,
    /// Does not end in exactly one `\n`.
    NoNewline,
    /// A byte other than printable ASCII, a space, or the final newline.
    BadByte(u8),
    /// Not from a pacserve: the first token is not `pacserve`.
    NotPacserve,
    /// A version other than `1` (or none).
    UnknownVersion,
    /// A kind other than hello, query or bye (or none).
    UnknownKind,
    /// An empty field: two spaces in a row, or a trailing space.
    EmptyField,
    /// A field that is not `key=value` with a `[a-z0-9_-]+` key.
    BadField,
    /// A required field is missing.
    Missing(&'static str),
    /// A known field is given twice.
    Duplicate(&'static str),
    /// A known field has an invalid value.
    BadValue(&'static str),
    /// More than `MAX_ANNOUNCE_ARCHS` architectures.
    TooManyArchs,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLong => write!(f, "longer than {MAX_ANNOUNCE_BYTES} bytes"),
            DecodeError::NoNewline => f.write_str("not a single line ending in a newline"),
            DecodeError::BadByte(b) => write!(f, "byte 0x{b:02x} in the text"),
            DecodeError::NotPacserve => f.write_str("not a pacserve announcement"),
            DecodeError::UnknownVersion => {
                f.write_str("unknown protocol version (from a newer pacserve?)")
            }
            DecodeError::UnknownKind => f.write_str("kind is not hello, query or bye"),
            DecodeError::EmptyField => f.write_str("empty field (double or trailing space)"),
            DecodeError::BadField => f.write_str("field is not key=value"),
            DecodeError::Missing(k) => write!(f, "field {k} is missing"),
            DecodeError::Duplicate(k) => write!(f, "field {k} is given twice"),
            DecodeError::BadValue(k) => write!(f, "field {k} has a bad value"),
            DecodeError::TooManyArchs => {
                write!(f, "more than {MAX_ANNOUNCE_ARCHS} architectures")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// The datagram for `a`. It decodes back to `a` when `a` is valid: `http_port` not 0, archs
/// as described in the module docs (the announcement of `run` is checked before use).
pub fn encode(a: &Announce) -> Vec<u8> {
    let s = format!(
        "{MAGIC} {VERSION} {} id={:016x} port={} arch={}\n",
        a.kind.as_str(),
        a.instance,
        a.http_port,
        a.archs.join(",")
    );
    s.into_bytes()
}

/// Decode one datagram, strictly: see the module docs for the format.
pub fn decode(datagram: &[u8]) -> Result<Announce, DecodeError> {
    if datagram.len() > MAX_ANNOUNCE_BYTES {
        return Err(DecodeError::TooLong);
    }
    let line = datagram.strip_suffix(b"\n").ok_or(DecodeError::NoNewline)?;
    if let Some(&b) = line.iter().find(|&&b| b != b' ' && !b.is_ascii_graphic()) {
        return Err(DecodeError::BadByte(b));
    }
    // Only printable ASCII and spaces are left, so this is valid UTF-8.
    let line =
        std::str::from_utf8(line).map_err(|e| DecodeError::BadByte(line[e.valid_up_to()]))?;

    let mut tokens = line.split(' ');
    if tokens.next() != Some(MAGIC) {
        return Err(DecodeError::NotPacserve);
    }
    if tokens.next() != Some(VERSION) {
        return Err(DecodeError::UnknownVersion);
    }
    let kind = match tokens.next() {
        Some("hello") => Kind::Hello,
        Some("query") => Kind::Query,
        Some("bye") => Kind::Bye,
        _ => return Err(DecodeError::UnknownKind),
    };

    let (mut id, mut port, mut archs) = (None, None, None);
    for field in tokens {
        if field.is_empty() {
            return Err(DecodeError::EmptyField);
        }
        let (key, value) = field.split_once('=').ok_or(DecodeError::BadField)?;
        let key_ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !key_ok {
            return Err(DecodeError::BadField);
        }
        match key {
            "id" => once(&mut id, "id", || parse_id(value))?,
            "port" => once(&mut port, "port", || parse_port(value))?,
            "arch" => once(&mut archs, "arch", || parse_archs(value))?,
            // A field of a later version: ignored.
            _ => {}
        }
    }
    Ok(Announce {
        kind,
        instance: id.ok_or(DecodeError::Missing("id"))?,
        http_port: port.ok_or(DecodeError::Missing("port"))?,
        archs: archs.ok_or(DecodeError::Missing("arch"))?,
    })
}

/// Fill `slot` from `parse` unless it is already filled.
fn once<T>(
    slot: &mut Option<T>,
    key: &'static str,
    parse: impl FnOnce() -> Result<T, DecodeError>,
) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Duplicate(key));
    }
    *slot = Some(parse()?);
    Ok(())
}

fn parse_id(v: &str) -> Result<u64, DecodeError> {
    let bad = DecodeError::BadValue("id");
    if v.len() != 16 || !v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad);
    }
    u64::from_str_radix(v, 16).map_err(|_| bad)
}

fn parse_port(v: &str) -> Result<u16, DecodeError> {
    let bad = DecodeError::BadValue("port");
    // No sign, no leading zero (so also no port 0), at most 5 digits.
    if v.is_empty() || v.len() > 5 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    v.parse::<u16>().map_err(|_| bad)
}

fn parse_archs(v: &str) -> Result<Vec<String>, DecodeError> {
    let mut archs: Vec<String> = Vec::new();
    if v.is_empty() {
        return Ok(archs);
    }
    for name in v.split(',') {
        if archs.len() == MAX_ANNOUNCE_ARCHS {
            return Err(DecodeError::TooManyArchs);
        }
        if !valid_arch(name) || archs.iter().any(|a| a == name) {
            return Err(DecodeError::BadValue("arch"));
        }
        archs.push(name.to_string());
    }
    Ok(archs)
}

/// An architecture name we announce and accept: `x86_64`, `aarch64`, `any`, ...
pub fn valid_arch(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ARCH_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A fresh instance id. Not a secret: it only has to differ between starts and hosts.
/// std's `RandomState` is seeded from the OS's randomness; pid and time make it differ even
/// where that seed were weak.
pub fn new_instance_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    h.write_u128(now.map_or(0, |d| d.as_nanos()));
    h.finish()
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

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
    pub fn validate(&self) -> Result<(), String> {
        let g = self.group;
        if !g.is_multicast() {
            return Err(format!(
                "multicast group {g}: not an IPv4 multicast address \
                 (224.0.0.0 to 239.255.255.255; the default is {DEFAULT_GROUP})"
            ));
        }
        if self.port == 0 {
            return Err(
                "multicast port 0: choose a fixed port, every peer must use the same".into(),
            );
        }
        if !(1..=255).contains(&self.ttl) {
            return Err(format!("multicast TTL {}: must be 1 to 255", self.ttl));
        }
        if self.interval < MULTICAST_INTERVAL_MIN || self.interval > MULTICAST_INTERVAL_MAX {
            return Err(format!(
                "multicast interval {:?}: must be {} s to {} s",
                self.interval,
                MULTICAST_INTERVAL_MIN.as_secs(),
                MULTICAST_INTERVAL_MAX.as_secs()
            ));
        }
        if self.interfaces.len() > MAX_MULTICAST_INTERFACES {
            return Err(format!(
                "{} multicast interfaces: at most {MAX_MULTICAST_INTERFACES}",
                self.interfaces.len()
            ));
        }
        for (i, a) in self.interfaces.iter().enumerate() {
            if a.is_multicast() || a.is_broadcast() {
                return Err(format!(
                    "multicast interface {a}: give the interface's own unicast address"
                ));
            }
            if self.interfaces[..i].contains(a) {
                return Err(format!("multicast interface {a} is given twice"));
            }
        }
        Ok(())
    }

    /// How long a discovered peer may stay silent before it is forgotten.
    pub fn max_silence(&self) -> Duration {
        clamp_interval(self.interval).saturating_mul(MISSED_HELLOS_BEFORE_EXPIRY)
    }
}

fn clamp_interval(d: Duration) -> Duration {
    d.clamp(MULTICAST_INTERVAL_MIN, MULTICAST_INTERVAL_MAX)
}

// ---------------------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------------------

/// The discovery socket: bound to the group's port on all addresses, joined to the group.
#[derive(Debug)]
pub struct Discovery {
    socket: Async<UdpSocket>,
    group: SocketAddrV4,
    interfaces: Vec<Ipv4Addr>,
}

/// An io error with what we were doing in front of it, same kind.
fn context(e: impl Into<io::Error>, what: impl fmt::Display) -> io::Error {
    let e: io::Error = e.into();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn join_error(group: Ipv4Addr, iface: Ipv4Addr, e: Errno) -> io::Error {
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
    context(e, format_args!("joining {group} on {on}{hint}"))
}

/// Open the discovery socket for `cfg`.
///
/// SO_REUSEADDR is set before the bind, so several pacserves on one host can share the port
/// (each then hears the others' and its own datagrams). The group is joined on every
/// configured interface, or on the default one. Options that only refine behaviour
/// (multicast loop, IP_MULTICAST_IF, a TTL of 1, all kernel defaults or unsupported under
/// qemu-user) only warn when they fail.
pub fn open(cfg: &MulticastConfig) -> io::Result<Discovery> {
    cfg.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(ipproto::UDP),
    )
    .map_err(|e| context(e, "creating the multicast UDP socket"))?;
    sockopt::set_socket_reuseaddr(&fd, true)
        .map_err(|e| context(e, "setting SO_REUSEADDR on the multicast socket"))?;
    let local = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port);
    rustix::net::bind(&fd, &local).map_err(|e| {
        let hint = if e == Errno::ADDRINUSE {
            " — another program holds this port without SO_REUSEADDR; choose another \
             multicast port (all peers must use the same)"
        } else {
            ""
        };
        context(e, format_args!("binding UDP {local}{hint}"))
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
            return Err(context(
                e,
                format_args!("setting multicast TTL {}", cfg.ttl),
            ));
        }
        // 1 is the kernel's default: nothing is lost.
        crate::error!("warning: setting multicast TTL {}: {e}", cfg.ttl);
    }
    if let Some(first) = cfg.interfaces.first() {
        // Without it, announcements leave by the interface the routing table picks; qemu-user
        // rejects this option with ENOPROTOOPT.
        if let Err(e) = sockopt::set_ip_multicast_if(&fd, first) {
            crate::error!(
                "warning: setting IP_MULTICAST_IF to {first}: {e}; announcements leave by the \
                 interface the routing table picks for {}",
                cfg.group
            );
        }
    }

    let socket = Async::new(UdpSocket::from(fd))
        .map_err(|e| context(e, "registering the multicast socket"))?;
    Ok(Discovery {
        socket,
        group: SocketAddrV4::new(cfg.group, cfg.port),
        interfaces: cfg.interfaces.clone(),
    })
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
    /// itself: with several interfaces it switches IP_MULTICAST_IF between sends.
    pub async fn send(&self, a: &Announce) -> io::Result<()> {
        self.send_bytes(&encode(a)).await
    }

    async fn send_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        if self.interfaces.len() < 2 {
            // IP_MULTICAST_IF was set once in `open`.
            return self.send_once(bytes).await;
        }
        let mut result = Ok(());
        for iface in &self.interfaces {
            if let Err(e) = sockopt::set_ip_multicast_if(self.socket.get_ref(), iface) {
                // Cannot choose (qemu-user): one datagram, where the routing table says.
                crate::verbose!("discovery: IP_MULTICAST_IF {iface}: {e}");
                return self.send_once(bytes).await;
            }
            if let Err(e) = self.send_once(bytes).await {
                result = Err(context(e, format_args!("on {iface}")));
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

// ---------------------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------------------

/// Counters of the discovery loop, for the status page and tests.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    /// Datagrams received, including malformed and own ones.
    pub received: AtomicU64,
    /// Datagrams dropped because they did not decode.
    pub malformed: AtomicU64,
    /// Our own datagrams, looped back.
    pub own: AtomicU64,
    /// Announcements sent (to every configured interface).
    pub sent: AtomicU64,
    /// Announcements that could not be sent.
    pub send_errors: AtomicU64,
}

/// A copy of [`DiscoveryStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub received: u64,
    pub malformed: u64,
    pub own: u64,
    pub sent: u64,
    pub send_errors: u64,
}

impl DiscoveryStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            received: get(&self.received),
            malformed: get(&self.malformed),
            own: get(&self.own),
            sent: get(&self.sent),
            send_errors: get(&self.send_errors),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What a decoded announcement from someone else did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Hello(PeerAddr, Seen),
    Query,
    Bye(PeerAddr, bool),
}

/// Apply `a`, received from `src`, to the table. Pure but for the table.
fn apply(a: &Announce, src: SocketAddr, table: &mut PeerTable, now: Instant) -> Heard {
    let addr = PeerAddr {
        host: src.ip().to_string(),
        port: a.http_port,
    };
    match a.kind {
        Kind::Hello => {
            let seen = table.seen(addr.clone(), a.instance, now);
            Heard::Hello(addr, seen)
        }
        Kind::Query => Heard::Query,
        Kind::Bye => {
            let forgot = table.gone(&addr, a.instance);
            Heard::Bye(addr, forgot)
        }
    }
}

/// Sends announcements, counts them, and logs a failure once until sending works again.
struct Sender<'a> {
    disc: &'a Discovery,
    stats: &'a DiscoveryStats,
    failing: bool,
}

impl Sender<'_> {
    async fn send(&mut self, bytes: &[u8], what: &str) {
        match self.disc.send_bytes(bytes).await {
            Ok(()) => {
                bump(&self.stats.sent);
                if self.failing {
                    self.failing = false;
                    crate::info!("discovery: sending to {} works again", self.disc.group);
                }
            }
            Err(e) => {
                bump(&self.stats.send_errors);
                let hint = if e.raw_os_error() == Some(Errno::NETUNREACH.raw_os_error()) {
                    " — is there a route for 224.0.0.0/4 (or a default route)?"
                } else {
                    ""
                };
                if self.failing {
                    crate::verbose!("discovery: sending {what} to {}: {e}", self.disc.group);
                } else {
                    self.failing = true;
                    crate::error!(
                        "discovery: sending {what} to {}: {e}{hint}",
                        self.disc.group
                    );
                }
            }
        }
    }
}

enum Event {
    Stop,
    Timer,
    Datagram(io::Result<(usize, SocketAddr)>),
}

/// Announce `me` (its kind is ignored) and keep `table` up to date with what others
/// announce, until `stop` is closed (or sent to); then say goodbye and return.
///
/// Every wait is bounded by the next hello, which is due every `cfg.interval` (clamped to
/// the valid range); discovered peers silent for `MISSED_HELLOS_BEFORE_EXPIRY` intervals are
/// forgotten then.
pub async fn run(
    disc: Discovery,
    cfg: MulticastConfig,
    me: Announce,
    table: Arc<Mutex<PeerTable>>,
    stats: Arc<DiscoveryStats>,
    stop: Receiver<()>,
) {
    let interval = clamp_interval(cfg.interval);
    let max_silence = cfg.max_silence();
    let datagram = |kind| encode(&Announce { kind, ..me.clone() });
    let (hello, query, bye) = (
        datagram(Kind::Hello),
        datagram(Kind::Query),
        datagram(Kind::Bye),
    );
    if let Err(e) = decode(&hello) {
        crate::error!(
            "discovery disabled: peers would reject our announcement ({e}): {}",
            escape(&hello)
        );
        return;
    }

    let mut sender = Sender {
        disc: &disc,
        stats: &stats,
        failing: false,
    };
    sender.send(&query, "query").await;
    sender.send(&hello, "hello").await;
    let mut last_hello = Instant::now();
    let mut next_hello = last_hello + interval;
    // A query heard while answers were paused: answer then.
    let mut answer_due: Option<Instant> = None;
    let mut buf = [0u8; ANNOUNCE_RECV_BUFFER];
    let mut timer = Timer::never();
    let mut armed: Option<Instant> = None;

    loop {
        let deadline = answer_due.map_or(next_hello, |t| t.min(next_hello));
        if armed != Some(deadline) {
            timer.set_at(deadline);
            armed = Some(deadline);
        }
        // Stop first, then the timer: a flood of datagrams can delay neither.
        let event = async {
            let _ = stop.recv().await;
            Event::Stop
        }
        .or(async {
            (&mut timer).await;
            Event::Timer
        })
        .or(async { Event::Datagram(disc.socket.recv_from(&mut buf).await) })
        .await;
        let now = Instant::now();
        match event {
            Event::Stop => {
                sender.send(&bye, "bye").await;
                return;
            }
            Event::Timer => {
                // A fired timer stays fired until set again.
                armed = None;
                if now >= next_hello {
                    sender.send(&hello, "hello").await;
                    (last_hello, answer_due) = (now, None);
                    next_hello = now + interval;
                    for addr in crate::lock(&table).expire(now, max_silence) {
                        crate::info!(
                            "peer {addr} forgotten: no hello for {} s",
                            max_silence.as_secs()
                        );
                    }
                } else if answer_due.is_some_and(|t| now >= t) {
                    sender.send(&hello, "hello").await;
                    (last_hello, answer_due) = (now, None);
                }
            }
            Event::Datagram(Err(e)) => {
                crate::error!("discovery: receiving on {}: {e}", disc.group);
                Timer::after(DISCOVERY_RECV_ERROR_PAUSE).await;
            }
            Event::Datagram(Ok((n, src))) => {
                bump(&stats.received);
                let bytes = &buf[..n.min(buf.len())];
                let a = match decode(bytes) {
                    Ok(a) => a,
                    Err(e) => {
                        bump(&stats.malformed);
                        crate::verbose!(
                            "discovery: dropped datagram from {src}: {e}: {}",
                            escape(bytes)
                        );
                        continue;
                    }
                };
                if a.instance == me.instance {
                    bump(&stats.own);
                    continue;
                }
                let heard = apply(&a, src, &mut crate::lock(&table), now);
                match heard {
                    Heard::Hello(addr, Seen::New) => crate::info!("peer {addr} discovered"),
                    Heard::Hello(_, Seen::Refreshed) => {}
                    Heard::Hello(addr, Seen::Filtered) => {
                        crate::verbose!("peer {addr} ignored: excluded by --multicast-filter")
                    }
                    Heard::Hello(addr, Seen::TableFull) => {
                        crate::verbose!("peer {addr} ignored: peer table full")
                    }
                    Heard::Bye(addr, true) => crate::info!("peer {addr} said goodbye"),
                    Heard::Bye(addr, false) => {
                        crate::verbose!("discovery: goodbye from unknown peer {addr}")
                    }
                    Heard::Query => {
                        let earliest = last_hello + QUERY_ANSWER_MIN_GAP;
                        if now >= earliest {
                            sender.send(&hello, "hello").await;
                            (last_hello, answer_due) = (now, None);
                        } else if answer_due.is_none() {
                            answer_due = Some(earliest);
                        }
                    }
                }
                // recv_from returns at once while datagrams are queued: let other tasks run.
                smol::future::yield_now().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::Filters;

    fn hello(instance: u64, port: u16, archs: &[&str]) -> Announce {
        Announce {
            kind: Kind::Hello,
            instance,
            http_port: port,
            archs: archs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn encodes_exactly() {
        let a = hello(0x0123_4567_89ab_cdef, 15678, &["x86_64", "any"]);
        assert_eq!(
            encode(&a),
            b"pacserve 1 hello id=0123456789abcdef port=15678 arch=x86_64,any\n"
        );
        let q = Announce {
            kind: Kind::Query,
            instance: 1,
            http_port: 1,
            archs: vec![],
        };
        assert_eq!(
            encode(&q),
            b"pacserve 1 query id=0000000000000001 port=1 arch=\n"
        );
    }

    #[test]
    fn decodes_valid_announcements() {
        let any = || vec!["any".to_string()];
        // What follows "pacserve 1 hello id=00000000000000aa port=80 " → the archs.
        let cases: &[(&str, &[&str])] = &[
            ("arch=x86_64,any", &["x86_64", "any"]),
            ("arch=", &[]),
            (
                "arch=Armv7h,x86_64_v3,i.6-86",
                &["Armv7h", "x86_64_v3", "i.6-86"],
            ),
            // Unknown fields, even with odd values and repeated, are ignored.
            ("arch=any x-new=a=b,c! name= zz=1 zz=2", &["any"]),
        ];
        for (tail, archs) in cases {
            let line = format!("pacserve 1 hello id=00000000000000aa port=80 {tail}\n");
            let want = hello(0xaa, 80, archs);
            assert_eq!(decode(line.as_bytes()), Ok(want), "{line:?}");
        }
        let whole: &[(&[u8], Announce)] = &[
            (
                b"pacserve 1 query id=ffffffffffffffff port=65535 arch=any\n",
                Announce {
                    kind: Kind::Query,
                    instance: u64::MAX,
                    http_port: 65535,
                    archs: any(),
                },
            ),
            (
                b"pacserve 1 bye id=0000000000000000 port=1 arch=any\n",
                Announce {
                    kind: Kind::Bye,
                    instance: 0,
                    http_port: 1,
                    archs: any(),
                },
            ),
            // Any order.
            (
                b"pacserve 1 hello arch=any port=80 id=00000000000000aa\n",
                hello(0xaa, 80, &["any"]),
            ),
        ];
        for (line, want) in whole {
            assert_eq!(decode(line).as_ref(), Ok(want), "{}", escape(line));
        }
        // Exactly as long as allowed, thanks to a long unknown field.
        let head = "pacserve 1 hello id=00000000000000aa port=80 arch=any x=";
        let longest = format!(
            "{head}{}\n",
            "a".repeat(MAX_ANNOUNCE_BYTES - head.len() - 1)
        );
        assert_eq!(longest.len(), MAX_ANNOUNCE_BYTES);
        assert_eq!(decode(longest.as_bytes()), Ok(hello(0xaa, 80, &["any"])));
    }

    #[test]
    fn rejects_hostile_datagrams() {
        use DecodeError::*;
        const OK: &str = "pacserve 1 hello id=00000000000000aa port=80 arch=any";
        let over = |extra: usize| format!("{OK} x={}\n", "a".repeat(extra)).into_bytes();
        let framing: Vec<(Vec<u8>, DecodeError)> = vec![
            // One byte too many.
            (over(MAX_ANNOUNCE_BYTES - OK.len() - 3), TooLong),
            (over(MAX_ANNOUNCE_BYTES), TooLong),
            (vec![b'\n'; 2000], TooLong),
            (b"".to_vec(), NoNewline),
            (OK.as_bytes().to_vec(), NoNewline),
            (format!("{OK}\r\n").into_bytes(), BadByte(b'\r')),
            (format!("{OK}\n\n").into_bytes(), BadByte(b'\n')),
            (format!("{OK}\0\n").into_bytes(), BadByte(0)),
            (format!("\t{OK}\n").into_bytes(), BadByte(b'\t')),
            (
                format!("{}\n", OK.replace(" port", "\nport")).into_bytes(),
                BadByte(b'\n'),
            ),
            (format!("{OK},\x1b[31m\n").into_bytes(), BadByte(0x1b)),
            (format!("{OK},\x7f\n").into_bytes(), BadByte(0x7f)),
            (format!("{OK},é\n").into_bytes(), BadByte(0xc3)),
            (b"\n".to_vec(), NotPacserve),
            (b"GET / HTTP/1.1\n".to_vec(), NotPacserve),
        ];
        for (input, want) in &framing {
            assert_eq!(decode(input), Err(*want), "{}", escape(input));
        }

        // Whole lines, with "\n" appended; H is a valid id and port.
        const H: &str = "id=00000000000000aa port=80";
        let many_archs: Vec<String> = (0..=MAX_ANNOUNCE_ARCHS).map(|i| format!("a{i}")).collect();
        let lines: Vec<(String, DecodeError)> = vec![
            (format!("PACSERVE 1 hello {H} arch=any"), NotPacserve),
            (format!(" pacserve 1 hello {H} arch=any"), NotPacserve),
            (format!("pacserved 1 hello {H} arch=any"), NotPacserve),
            ("pacserve".into(), UnknownVersion),
            (format!("pacserve 2 hello {H} arch=any"), UnknownVersion),
            (format!("pacserve 01 hello {H} arch=any"), UnknownVersion),
            (format!("pacserve 1.0 hello {H} arch=any"), UnknownVersion),
            (format!("pacserve  1 hello {H} arch=any"), UnknownVersion),
            ("pacserve 1 bye".into(), Missing("id")),
            ("pacserve 1".into(), UnknownKind),
            ("pacserve 1 ".into(), UnknownKind),
            (format!("pacserve 1 ping {H} arch=any"), UnknownKind),
            (format!("pacserve 1 HELLO {H} arch=any"), UnknownKind),
            (format!("pacserve 1  hello {H} arch=any"), UnknownKind),
            (
                format!("pacserve 1 hello {H} arch={}", many_archs.join(",")),
                TooManyArchs,
            ),
            (
                format!(
                    "pacserve 1 hello {H} arch={}",
                    "a".repeat(MAX_ARCH_NAME + 1)
                ),
                BadValue("arch"),
            ),
        ];
        for (line, want) in &lines {
            assert_eq!(
                decode(format!("{line}\n").as_bytes()),
                Err(*want),
                "{line:?}"
            );
        }

        // Fields after "pacserve 1 hello ".
        let fields: &[(&str, DecodeError)] = &[
            ("", EmptyField),
            ("port=80 arch=any", Missing("id")),
            ("id=00000000000000aa arch=any", Missing("port")),
            ("id=00000000000000aa port=80", Missing("arch")),
            ("id=00000000000000aa port=80 arch=any ", EmptyField),
            (" id=00000000000000aa port=80 arch=any", EmptyField),
            ("id=00000000000000aa  port=80 arch=any", EmptyField),
            ("id=00000000000000aa port=80 arch=any junk", BadField),
            ("id=00000000000000aa port=80 arch=any =x", BadField),
            ("id=00000000000000aa port=80 arch=any X=1", BadField),
            ("id=00000000000000aa port=80 arch=any a.b=1", BadField),
            ("ID=00000000000000aa port=80 arch=any", BadField),
            (
                "id=00000000000000aa id=00000000000000aa port=80 arch=any",
                Duplicate("id"),
            ),
            (
                "id=00000000000000aa id=00000000000000bb port=80 arch=any",
                Duplicate("id"),
            ),
            (
                "id=00000000000000aa port=80 port=81 arch=any",
                Duplicate("port"),
            ),
            (
                "id=00000000000000aa port=80 arch=any arch=any",
                Duplicate("arch"),
            ),
            ("id=00000000000000aa port=80 arch= arch=", Duplicate("arch")),
            ("id= port=80 arch=any", BadValue("id")),
            ("id=aa port=80 arch=any", BadValue("id")),
            ("id=00000000000000AA port=80 arch=any", BadValue("id")),
            ("id=0x000000000000aa port=80 arch=any", BadValue("id")),
            ("id=+00000000000000a port=80 arch=any", BadValue("id")),
            ("id=-00000000000000a port=80 arch=any", BadValue("id")),
            ("id=000000000000000aa port=80 arch=any", BadValue("id")),
            ("id=00000000000000ag port=80 arch=any", BadValue("id")),
            ("id=00000000000000aa port=0 arch=any", BadValue("port")),
            ("id=00000000000000aa port=00080 arch=any", BadValue("port")),
            ("id=00000000000000aa port=65536 arch=any", BadValue("port")),
            ("id=00000000000000aa port=99999 arch=any", BadValue("port")),
            (
                "id=00000000000000aa port=4294967376 arch=any",
                BadValue("port"),
            ),
            ("id=00000000000000aa port=+80 arch=any", BadValue("port")),
            ("id=00000000000000aa port=-1 arch=any", BadValue("port")),
            ("id=00000000000000aa port= arch=any", BadValue("port")),
            ("id=00000000000000aa port=8o arch=any", BadValue("port")),
            ("id=00000000000000aa port=80 arch=,", BadValue("arch")),
            ("id=00000000000000aa port=80 arch=any,", BadValue("arch")),
            ("id=00000000000000aa port=80 arch=,any", BadValue("arch")),
            (
                "id=00000000000000aa port=80 arch=x86_64,,any",
                BadValue("arch"),
            ),
            ("id=00000000000000aa port=80 arch=any,any", BadValue("arch")),
            ("id=00000000000000aa port=80 arch=../etc", BadValue("arch")),
            ("id=00000000000000aa port=80 arch=a/b", BadValue("arch")),
            ("id=00000000000000aa port=80 arch=a=b", BadValue("arch")),
            ("id=00000000000000aa port=80 arch=$arch", BadValue("arch")),
            ("id=00000000000000aa port=80 arch=%41", BadValue("arch")),
        ];
        for (tail, want) in fields {
            let line = format!("pacserve 1 hello {tail}\n");
            assert_eq!(decode(line.as_bytes()), Err(*want), "{line:?}");
        }
    }

    #[test]
    fn round_trips_and_fits() {
        let longest: Vec<String> = (0..MAX_ANNOUNCE_ARCHS)
            .map(|i| format!("{i:0>width$}", width = MAX_ARCH_NAME))
            .collect();
        let cases = [
            hello(0, 1, &[]),
            hello(u64::MAX, u16::MAX, &["x86_64", "any"]),
            Announce {
                kind: Kind::Hello,
                instance: 42,
                http_port: 15678,
                archs: longest,
            },
            Announce {
                kind: Kind::Query,
                instance: new_instance_id(),
                http_port: 8080,
                archs: vec!["aarch64".into()],
            },
        ];
        for a in &cases {
            let bytes = encode(a);
            assert!(bytes.len() <= MAX_ANNOUNCE_BYTES, "{}", bytes.len());
            assert_eq!(decode(&bytes).as_ref(), Ok(a));
        }
        assert_eq!(encode(&cases[2]).len(), LONGEST_ANNOUNCE);
        assert_ne!(new_instance_id(), new_instance_id());
    }

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
            assert!(e.contains(want), "{e:?} should mention {want:?}");
        }
        let bad_cfg = MulticastConfig {
            group: Ipv4Addr::new(10, 0, 0, 1),
            ..MulticastConfig::default()
        };
        let e = open(&bad_cfg).expect_err("a unicast group");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn applies_announcements_to_the_table() {
        let t0 = Instant::now();
        let mut f = Filters::default();
        f.add(r"x:^10\.0\.0\.9:").unwrap();
        let mut table = PeerTable::new(f);
        let src = |ip: &str| SocketAddr::new(ip.parse().unwrap(), DEFAULT_PORT);
        let peer = |ip: &str, port| PeerAddr {
            host: ip.to_string(),
            port,
        };
        let mut a = hello(7, 15678, &["any"]);
        let heard = apply(&a, src("10.0.0.2"), &mut table, t0);
        assert_eq!(heard, Heard::Hello(peer("10.0.0.2", 15678), Seen::New));
        let heard = apply(&a, src("10.0.0.2"), &mut table, t0);
        assert_eq!(
            heard,
            Heard::Hello(peer("10.0.0.2", 15678), Seen::Refreshed)
        );
        let heard = apply(&a, src("10.0.0.9"), &mut table, t0);
        assert_eq!(heard, Heard::Hello(peer("10.0.0.9", 15678), Seen::Filtered));
        a.kind = Kind::Query;
        assert_eq!(apply(&a, src("10.0.0.3"), &mut table, t0), Heard::Query);
        assert_eq!(table.len(), 1, "a query does not add a peer");
        // A goodbye names host (the source) + port + instance; a forged one with another
        // instance or from another host does nothing.
        a.kind = Kind::Bye;
        a.instance = 8;
        assert_eq!(
            apply(&a, src("10.0.0.2"), &mut table, t0),
            Heard::Bye(peer("10.0.0.2", 15678), false)
        );
        a.instance = 7;
        assert_eq!(
            apply(&a, src("10.0.0.5"), &mut table, t0),
            Heard::Bye(peer("10.0.0.5", 15678), false)
        );
        assert_eq!(
            apply(&a, src("10.0.0.2"), &mut table, t0),
            Heard::Bye(peer("10.0.0.2", 15678), true)
        );
        assert!(table.is_empty());
    }

    // --- Real sockets on loopback --------------------------------------------------------

    /// A UDP port nobody uses right now (the kernel's choice for an ephemeral bind).
    fn free_udp_port() -> u16 {
        let s = UdpSocket::bind("0.0.0.0:0").expect("binding an ephemeral UDP port");
        s.local_addr().expect("local_addr of a bound socket").port()
    }

    fn loopback_config(port: u16) -> MulticastConfig {
        MulticastConfig {
            // A group per port, so parallel tests stay apart.
            group: Ipv4Addr::new(239, 255, (port >> 8) as u8, port as u8),
            port,
            interfaces: vec![Ipv4Addr::LOCALHOST],
            ttl: 1,
            interval: Duration::from_secs(60),
        }
    }

    /// Open, or `None` with a note where this machine has no multicast on loopback.
    fn open_or_skip(cfg: &MulticastConfig) -> Option<Discovery> {
        match open(cfg) {
            Ok(d) => Some(d),
            Err(e) if e.raw_os_error().is_none() && e.to_string().contains("os error 19") => {
                eprintln!("note: skipping, no multicast on loopback here: {e}");
                None
            }
            Err(e) => panic!("opening {cfg:?}: {e}"),
        }
    }

    async fn recv_within(d: &Discovery, limit: Duration) -> Option<(Vec<u8>, SocketAddr)> {
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
        let Some(a) = open_or_skip(&cfg) else { return };
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

    struct Running {
        instance: u64,
        table: Arc<Mutex<PeerTable>>,
        stats: Arc<DiscoveryStats>,
        stop: smol::channel::Sender<()>,
        task: smol::Task<()>,
    }

    fn start(cfg: &MulticastConfig, instance: u64, http_port: u16) -> Option<Running> {
        let disc = open_or_skip(cfg)?;
        let table = Arc::new(Mutex::new(PeerTable::default()));
        let stats = Arc::new(DiscoveryStats::default());
        let (stop, stop_rx) = smol::channel::bounded(1);
        let me = hello(instance, http_port, &["x86_64", "any"]);
        let task = smol::spawn(run(
            disc,
            cfg.clone(),
            me,
            table.clone(),
            stats.clone(),
            stop_rx,
        ));
        Some(Running {
            instance,
            table,
            stats,
            stop,
            task,
        })
    }

    /// Poll `cond` until it holds or `limit` passes.
    async fn eventually(limit: Duration, cond: impl Fn() -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if cond() {
                return true;
            }
            Timer::after(Duration::from_millis(20)).await;
        }
        cond()
    }

    fn knows(r: &Running, port: u16) -> bool {
        let peer = PeerAddr {
            host: "127.0.0.1".into(),
            port,
        };
        crate::lock(&r.table).get(&peer).is_some()
    }

    #[test]
    fn run_discovers_peers_and_says_goodbye() {
        let cfg = loopback_config(free_udp_port());
        let Some(a) = start(&cfg, 0xa, 8001) else {
            return;
        };
        smol::block_on(async {
            let limit = Duration::from_secs(3);
            // b starts after a's query and hello: it learns of a only from the answer to its
            // query, which comes after QUERY_ANSWER_MIN_GAP.
            assert!(eventually(limit, || a.stats.snapshot().sent == 2).await);
            let b = start(&cfg, 0xb, 8002).expect("second instance");
            assert!(eventually(limit, || knows(&a, 8002) && knows(&b, 8001)).await);
            assert!(!knows(&a, 8001), "a does not list itself");
            assert!(a.stats.snapshot().own >= 2, "{:?}", a.stats.snapshot());

            // Garbage from a third socket is counted and dropped.
            let c = open(&cfg).expect("a third socket");
            c.send_bytes(b"pacserve 9 hello\n").await.unwrap();
            c.send_bytes(&[0xff; 700]).await.unwrap();
            assert!(eventually(limit, || b.stats.snapshot().malformed >= 2).await);
            assert_eq!(crate::lock(&b.table).len(), 1);

            drop(a.stop);
            a.task.await;
            assert!(
                eventually(limit, || !knows(&b, 8001)).await,
                "b forgets a on bye"
            );
            let sa = a.stats.snapshot();
            assert_eq!(
                (sa.sent, sa.send_errors),
                (4, 0),
                "query, hello, answer, bye: {sa:?}"
            );
            drop(b.stop);
            b.task.await;
        });
    }

    #[test]
    fn query_flood_gets_at_most_one_answer_a_second() {
        let cfg = loopback_config(free_udp_port());
        let Some(a) = start(&cfg, 0xa, 8001) else {
            return;
        };
        let flooder = open(&cfg).expect("a second socket");
        smol::block_on(async {
            // Let a's start-up datagrams pass, then flood it with queries.
            assert!(eventually(Duration::from_secs(3), || a.stats.snapshot().sent == 2).await);
            let started = Instant::now();
            for i in 0..50u64 {
                let q = Announce {
                    kind: Kind::Query,
                    ..hello(0x1000 + i, 9, &[])
                };
                flooder.send(&q).await.unwrap();
            }
            // Count a's hellos heard by the flooder for a while.
            let mut hellos = 0;
            let until = started + Duration::from_millis(2500);
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                let Some((bytes, _)) = recv_within(&flooder, left).await else {
                    break;
                };
                if let Ok(got) = decode(&bytes)
                    && got.instance == a.instance
                    && got.kind == Kind::Hello
                {
                    hellos += 1;
                }
            }
            let elapsed = started.elapsed().as_secs() + 1;
            assert!(hellos >= 1, "the flood is answered");
            assert!(
                hellos as u64 <= elapsed + 1,
                "{hellos} hellos in {elapsed} s for 50 queries"
            );
            assert!(a.stats.snapshot().received >= 50);
            drop(a.stop);
            a.task.await;
        });
    }
}
