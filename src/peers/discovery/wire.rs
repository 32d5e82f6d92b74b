//! The announcement datagram: encode and a strict decoder, and the signed envelope (its
//! seal) on a LAN with a shared secret. Pure: no sockets, no clock (the format is described
//! in the module docs of [`super`]).

use std::fmt;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::auth::DatagramRefusal;
use crate::auth::key::{Key, Keys};
use crate::auth::mac::{Mac, hmac_sha256, same_mac};
use crate::auth::{parse_mac, parse_nonce, parse_ts};
use crate::limits::{
    ANNOUNCE_RECV_BUFFER, MAX_ANNOUNCE_ADDRS, MAX_ANNOUNCE_ARCHS, MAX_ANNOUNCE_BYTES, MAX_ARCH_NAME,
};
use crate::names::{sha256_hex, valid_arch};

const MAGIC: &str = "pacserve";
const VERSION: &str = "1";

/// The longest valid announcement: every valid [`Announce`] fits in one datagram.
const LONGEST_ANNOUNCE: usize = "pacserve 1 hello id=0123456789abcdef port=65535 arch=".len()
    + MAX_ANNOUNCE_ARCHS * (MAX_ARCH_NAME + 1)
    - 1
    + "\n".len();
/// What a seal adds at most.
const LONGEST_SEAL: usize = " ts=18446744073709551615 nonce=0123456789abcdef \
     src=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff mac="
    .len()
    + 64;
const _: () = assert!(LONGEST_ANNOUNCE + LONGEST_SEAL <= MAX_ANNOUNCE_BYTES);
const _: () = assert!(ANNOUNCE_RECV_BUFFER > MAX_ANNOUNCE_BYTES);

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
    /// Addresses the sender may also be reached at (`addrs=`, optional): its unique-local and
    /// global IPv6 addresses, for receivers that heard it from a link-local one.
    pub addrs: Vec<IpAddr>,
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
    /// More than `MAX_ANNOUNCE_ADDRS` addresses.
    TooManyAddrs,
    /// `mac` is not the last field (what follows it would not be covered).
    MacNotLast,
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
            DecodeError::TooManyAddrs => write!(f, "more than {MAX_ANNOUNCE_ADDRS} addresses"),
            DecodeError::MacNotLast => f.write_str("field mac is not the last"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The seal of a signed datagram: when and by whom it was signed, and the MAC over the
/// line before ` mac=` (which includes these fields, so the MAC covers the sender's address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// Seconds since the epoch at signing.
    pub ts: u64,
    /// Differs for every datagram of a sender: with `ts`, what the replay cache remembers.
    pub nonce: u64,
    /// The sender's address the datagram was signed for; it must be the one it comes from.
    pub src: IpAddr,
    pub mac: Mac,
}

/// A decoded datagram: the announcement, its seal if it has one, and how many of its bytes
/// the MAC covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub announce: Announce,
    pub seal: Option<Seal>,
    signed_len: usize,
}

impl Datagram {
    /// Whether this datagram, decoded from `bytes` and received from `from`, is sealed with
    /// one of `keys` for that very address (MACs compared in constant time).
    pub fn verify(&self, bytes: &[u8], keys: &Keys, from: IpAddr) -> Result<(), DatagramRefusal> {
        let seal = self.seal.ok_or(DatagramRefusal::Unsigned)?;
        if seal.src != from.to_canonical() {
            return Err(DatagramRefusal::Address);
        }
        let signed = &bytes[..self.signed_len.min(bytes.len())];
        let ok = keys.all().iter().fold(false, |ok, key| {
            ok | same_mac(&seal_mac(key, signed), &seal.mac)
        });
        if ok {
            Ok(())
        } else {
            Err(DatagramRefusal::BadMac)
        }
    }
}

fn seal_mac(key: &Key, signed: &[u8]) -> Mac {
    hmac_sha256(key.bytes(), &[signed])
}

/// The line of `a` without its newline. The addresses are optional: those that would leave
/// no room for a seal within `MAX_ANNOUNCE_BYTES` are left out (the receiver then has the
/// datagram's source).
fn line_of(a: &Announce) -> String {
    let mut s = format!(
        "{MAGIC} {VERSION} {} id={:016x} port={} arch={}",
        a.kind.as_str(),
        a.instance,
        a.http_port,
        a.archs.join(",")
    );
    let mut sep = " addrs=";
    for addr in &a.addrs {
        let item = format!("{sep}{addr}");
        if s.len() + item.len() + LONGEST_SEAL + "\n".len() > MAX_ANNOUNCE_BYTES {
            break;
        }
        s.push_str(&item);
        sep = ",";
    }
    s
}

/// The datagram for `a`. It decodes back to `a` when `a` is valid: `http_port` not 0, archs
/// and addrs as described in the module docs (the announcement of `run` is checked before
/// use), and its addrs fit (see `line_of`).
pub fn encode(a: &Announce) -> Vec<u8> {
    let mut s = line_of(a);
    s.push('\n');
    s.into_bytes()
}

/// The datagram for `a` with `seal` as it is (its MAC is not computed): for re-encoding what
/// was decoded.
pub fn encode_sealed(a: &Announce, seal: &Seal) -> Vec<u8> {
    let mut s = sealed_prefix(a, seal.ts, seal.nonce, seal.src);
    s.push_str(&format!(" mac={}\n", sha256_hex(&seal.mac)));
    s.into_bytes()
}

fn sealed_prefix(a: &Announce, ts: u64, nonce: u64, src: IpAddr) -> String {
    format!("{} ts={ts} nonce={nonce:016x} src={src}", line_of(a))
}

/// The datagram for `a`, sent from `src` at `ts` with `nonce`, sealed with `key`.
pub fn encode_signed(
    a: &Announce,
    ts: u64,
    nonce: u64,
    src: impl Into<IpAddr>,
    key: &Key,
) -> Vec<u8> {
    let src = src.into();
    let prefix = sealed_prefix(a, ts, nonce, src);
    let mac = seal_mac(key, prefix.as_bytes());
    encode_sealed(
        a,
        &Seal {
            ts,
            nonce,
            src,
            mac,
        },
    )
}

/// Decode one datagram, strictly: see the module docs for the format.
pub fn decode(datagram: &[u8]) -> Result<Announce, DecodeError> {
    decode_datagram(datagram).map(|d| d.announce)
}

/// Decode one datagram and its seal, strictly. The seal's fields (`ts`, `nonce`, `src`,
/// `mac`) come all together or not at all, and `mac` last; its MAC is not checked here
/// ([`Datagram::verify`]).
pub fn decode_datagram(datagram: &[u8]) -> Result<Datagram, DecodeError> {
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

    let (mut id, mut port, mut archs, mut addrs) = (None, None, None, None);
    let (mut ts, mut nonce, mut src, mut mac) = (None, None, None, None);
    // Where the space before the field being read is in `line`: the MAC covers what is
    // before ` mac=`.
    let mut space = line.len() - tokens.clone().map(|t| t.len() + 1).sum::<usize>();
    let mut signed_len = line.len();
    for field in tokens {
        if field.is_empty() {
            return Err(DecodeError::EmptyField);
        }
        if mac.is_some() {
            return Err(DecodeError::MacNotLast);
        }
        let (key, value) = field.split_once('=').ok_or(DecodeError::BadField)?;
        let key_ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !key_ok {
            return Err(DecodeError::BadField);
        }
        let bad = DecodeError::BadValue;
        match key {
            "id" => once(&mut id, "id", || parse_id(value))?,
            "port" => once(&mut port, "port", || parse_port(value))?,
            "arch" => once(&mut archs, "arch", || parse_archs(value))?,
            "addrs" => once(&mut addrs, "addrs", || parse_addrs(value))?,
            "ts" => once(&mut ts, "ts", || parse_ts(value).ok_or(bad("ts")))?,
            "nonce" => once(&mut nonce, "nonce", || {
                parse_nonce(value).ok_or(bad("nonce"))
            })?,
            "src" => once(&mut src, "src", || parse_src(value))?,
            "mac" => {
                once(&mut mac, "mac", || parse_mac(value).ok_or(bad("mac")))?;
                signed_len = space;
            }
            // A field of a later version: ignored.
            _ => {}
        }
        space += field.len() + 1;
    }
    let announce = Announce {
        kind,
        instance: id.ok_or(DecodeError::Missing("id"))?,
        http_port: port.ok_or(DecodeError::Missing("port"))?,
        archs: archs.ok_or(DecodeError::Missing("arch"))?,
        addrs: addrs.unwrap_or_default(),
    };
    let seal = match (ts, nonce, src, mac) {
        (None, None, None, None) => None,
        (Some(ts), Some(nonce), Some(src), Some(mac)) => Some(Seal {
            ts,
            nonce,
            src,
            mac,
        }),
        (None, ..) => return Err(DecodeError::Missing("ts")),
        (_, None, ..) => return Err(DecodeError::Missing("nonce")),
        (_, _, None, _) => return Err(DecodeError::Missing("src")),
        (.., None) => return Err(DecodeError::Missing("mac")),
    };
    Ok(Datagram {
        announce,
        seal,
        signed_len,
    })
}

/// The sender's address as the seal names it: dotted IPv4 or IPv6 as Rust writes it (the
/// link-local address an IPv6 hello leaves from, without a zone), one spelling only; never
/// an IPv4-mapped one (a receiver compares it with the source in its canonical form).
fn parse_src(v: &str) -> Result<IpAddr, DecodeError> {
    v.parse::<IpAddr>()
        .ok()
        .filter(|ip| ip.to_string() == v && ip.to_canonical() == *ip)
        .ok_or(DecodeError::BadValue("src"))
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

/// `addrs=`: 1 to `MAX_ANNOUNCE_ADDRS` IP literals, comma-separated, no repeats, each one a
/// peer can be reached at: not unspecified, loopback, multicast, IPv6 link-local (that needs a
/// zone) or IPv4-mapped (written with a dot, so it would not re-encode to its own spelling).
fn parse_addrs(v: &str) -> Result<Vec<IpAddr>, DecodeError> {
    let bad = DecodeError::BadValue("addrs");
    let mut addrs: Vec<IpAddr> = Vec::new();
    for text in v.split(',') {
        if addrs.len() == MAX_ANNOUNCE_ADDRS {
            return Err(DecodeError::TooManyAddrs);
        }
        let ip: IpAddr = text.parse().map_err(|_| bad)?;
        let usable = match ip {
            IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_loopback() || v4.is_multicast()),
            IpAddr::V6(v6) => crate::sys::ifaces::is_routable_v6(v6),
        };
        if !usable || addrs.contains(&ip) {
            return Err(bad);
        }
        addrs.push(ip);
    }
    Ok(addrs)
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::sys::log::escape;

    pub(in crate::peers::discovery) fn hello(instance: u64, port: u16, archs: &[&str]) -> Announce {
        Announce {
            kind: Kind::Hello,
            instance,
            http_port: port,
            archs: archs.iter().map(|s| s.to_string()).collect(),
            addrs: vec![],
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
            addrs: vec![],
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
                "arch=Armv7h,x86_64_v3,i686",
                &["Armv7h", "x86_64_v3", "i686"],
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
                    addrs: vec![],
                },
            ),
            (
                b"pacserve 1 bye id=0000000000000000 port=1 arch=any\n",
                Announce {
                    kind: Kind::Bye,
                    instance: 0,
                    http_port: 1,
                    archs: any(),
                    addrs: vec![],
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
            // The one architecture rule: no '-' or '.' (pacman.conf refuses them too).
            ("id=00000000000000aa port=80 arch=armv7-x", BadValue("arch")),
            ("id=00000000000000aa port=80 arch=i.686", BadValue("arch")),
        ];
        for (tail, want) in fields {
            let line = format!("pacserve 1 hello {tail}\n");
            assert_eq!(decode(line.as_bytes()), Err(*want), "{line:?}");
        }
    }

    fn key(b: u8) -> Key {
        crate::auth::key::parse_key(&[b; 32]).unwrap()
    }

    const TS: u64 = 1_700_000_000;

    #[test]
    fn signed_datagrams_verify_only_from_their_sender_under_a_known_key() {
        let a = hello(0xaa, 15678, &["x86_64", "any"]);
        let src = IpAddr::from([10, 0, 0, 2]);
        let bytes = encode_signed(&a, TS, 0x1234, src, &key(1));
        let text = String::from_utf8(bytes.clone()).unwrap();
        let prefix = "pacserve 1 hello id=00000000000000aa port=15678 arch=x86_64,any \
                      ts=1700000000 nonce=0000000000001234 src=10.0.0.2";
        let mac = hmac_sha256(&[1; 32], &[prefix.as_bytes()]);
        assert_eq!(text, format!("{prefix} mac={}\n", sha256_hex(&mac)));
        let d = decode_datagram(&bytes).expect("a signed datagram decodes");
        assert_eq!(d.announce, a);
        assert_eq!(
            d.seal,
            Some(Seal {
                ts: TS,
                nonce: 0x1234,
                src,
                mac
            })
        );
        assert_eq!(decode(&bytes), Ok(a.clone()), "a receiver without a secret");
        let from = |s: &str| s.parse::<IpAddr>().unwrap();
        let ring = |ks: &[u8]| Keys::new(ks.iter().map(|b| key(*b)).collect()).unwrap();
        use DatagramRefusal::*;
        let cases: &[(&[u8], &str, Result<(), DatagramRefusal>)] = &[
            (&[1], "10.0.0.2", Ok(())),
            (&[1], "::ffff:10.0.0.2", Ok(())),
            // A rotation: the signing key second in the ring still verifies.
            (&[2, 1], "10.0.0.2", Ok(())),
            (&[2], "10.0.0.2", Err(BadMac)),
            (&[2, 3], "10.0.0.2", Err(BadMac)),
            // Sent again from another host: refused whatever the key.
            (&[1], "10.0.0.3", Err(Address)),
            (&[2], "10.0.0.66", Err(Address)),
            (&[1], "fd00::2", Err(Address)),
        ];
        for (keys, sender, want) in cases {
            assert_eq!(
                d.verify(&bytes, &ring(keys), from(sender)),
                *want,
                "{keys:?} {sender}"
            );
        }
        let plain = decode_datagram(&encode(&a)).unwrap();
        assert_eq!(plain.seal, None);
        assert_eq!(
            plain.verify(&encode(&a), &ring(&[1]), from("10.0.0.2")),
            Err(Unsigned)
        );
        // A forged src field for the sender's own address does not help another key.
        let forged = encode_signed(&a, TS, 1, IpAddr::from([10, 0, 0, 3]), &key(4));
        let fd = decode_datagram(&forged).unwrap();
        assert_eq!(
            fd.verify(&forged, &ring(&[1]), from("10.0.0.3")),
            Err(BadMac)
        );
    }

    #[test]
    fn no_changed_byte_of_a_signed_datagram_verifies() {
        let a = hello(0xaa, 15678, &["x86_64", "any"]);
        let src = IpAddr::from([10, 0, 0, 2]);
        let keys = Keys::new(vec![key(1)]).unwrap();
        let mut bytes = encode_signed(&a, TS, 7, src, &key(1));
        bytes.splice(bytes.len() - 1.., b" x-later=1\n".iter().copied());
        // An unknown field after the MAC is not covered: refused.
        assert_eq!(decode_datagram(&bytes), Err(DecodeError::MacNotLast));
        let bytes = encode_signed(&a, TS, 7, src, &key(1));
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x20, 0x02] {
                let mut changed = bytes.clone();
                changed[i] ^= flip;
                let verdict = decode_datagram(&changed).map(|d| d.verify(&changed, &keys, src));
                assert!(
                    !matches!(verdict, Ok(Ok(()))),
                    "byte {i} ^ {flip:#x} still verifies: {}",
                    escape(&changed)
                );
            }
        }
    }

    #[test]
    fn rejects_hostile_seals() {
        use DecodeError::*;
        const H: &str = "pacserve 1 hello id=00000000000000aa port=80 arch=any";
        let mac = "ab".repeat(32);
        let ok = format!("{H} ts=5 nonce=00000000000000ff src=10.0.0.2 mac={mac}");
        assert!(decode_datagram(format!("{ok}\n").as_bytes()).is_ok());
        // The seal's fields in another order are fine, as long as mac is last.
        let reordered = format!("{H} src=10.0.0.2 nonce=00000000000000ff ts=5 mac={mac}");
        let d = decode_datagram(format!("{reordered}\n").as_bytes()).unwrap();
        assert_eq!(d.seal.map(|s| (s.ts, s.nonce)), Some((5, 0xff)));
        let lines: Vec<(String, DecodeError)> = vec![
            (format!("{H} mac={mac}"), Missing("ts")),
            (format!("{H} ts=5"), Missing("nonce")),
            (format!("{H} ts=5 nonce=00000000000000ff"), Missing("src")),
            (
                format!("{H} ts=5 nonce=00000000000000ff src=10.0.0.2"),
                Missing("mac"),
            ),
            (format!("{ok} x=1"), MacNotLast),
            (format!("{ok} mac={mac}"), MacNotLast),
            (ok.replace("ts=5", "ts=5 ts=6"), Duplicate("ts")),
            (ok.replace("ts=5", "ts=05"), BadValue("ts")),
            (ok.replace("ts=5", "ts=-5"), BadValue("ts")),
            (ok.replace("ts=5", "ts="), BadValue("ts")),
            (
                ok.replace("ts=5", "ts=18446744073709551616"),
                BadValue("ts"),
            ),
            (ok.replace("00000000000000ff", "ff"), BadValue("nonce")),
            (
                ok.replace("00000000000000ff", "00000000000000FF"),
                BadValue("nonce"),
            ),
            (ok.replace("10.0.0.2", "10.0.0.02"), BadValue("src")),
            (ok.replace("10.0.0.2", "10.0.0"), BadValue("src")),
            // IPv6 as Rust writes it only: no mapped IPv4, no capitals, no zone.
            (ok.replace("10.0.0.2", "::ffff:10.0.0.2"), BadValue("src")),
            (ok.replace("10.0.0.2", "FE80::1"), BadValue("src")),
            (ok.replace("10.0.0.2", "fe80:0::1"), BadValue("src")),
            (ok.replace("10.0.0.2", "fe80::1%eth0"), BadValue("src")),
            (ok.replace("10.0.0.2", "10.0.0.256"), BadValue("src")),
            (ok.replace(&mac, &mac.to_uppercase()), BadValue("mac")),
            (ok.replace(&mac, &mac[..62]), BadValue("mac")),
            (ok.replace(&mac, &format!("{mac}00")), BadValue("mac")),
            (format!("{ok} "), EmptyField),
        ];
        for (line, want) in &lines {
            assert_eq!(
                decode_datagram(format!("{line}\n").as_bytes()),
                Err(*want),
                "{line:?}"
            );
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
                addrs: vec![],
            },
            Announce {
                kind: Kind::Query,
                instance: new_instance_id(),
                http_port: 8080,
                archs: vec!["aarch64".into()],
                addrs: vec!["fd00::2".parse().unwrap(), "10.0.0.2".parse().unwrap()],
            },
        ];
        for a in &cases {
            let bytes = encode(a);
            assert!(bytes.len() <= MAX_ANNOUNCE_BYTES, "{}", bytes.len());
            assert_eq!(decode(&bytes).as_ref(), Ok(a));
        }
        assert_eq!(encode(&cases[2]).len(), LONGEST_ANNOUNCE);
        for a in &cases {
            let src = IpAddr::from([0xffff_u16; 8]);
            let bytes = encode_signed(a, u64::MAX, u64::MAX, src, &key(1));
            assert!(bytes.len() <= MAX_ANNOUNCE_BYTES, "{}", bytes.len());
            let d = decode_datagram(&bytes).expect("the longest signed datagrams decode");
            assert_eq!(&d.announce, a);
            assert_eq!(encode_sealed(a, &d.seal.unwrap()), bytes);
        }
        let longest = encode_signed(
            &cases[2],
            u64::MAX,
            0,
            IpAddr::from([0xffff_u16; 8]),
            &key(1),
        );
        assert_eq!(longest.len(), LONGEST_ANNOUNCE + LONGEST_SEAL);
        assert_ne!(new_instance_id(), new_instance_id());
    }

    #[test]
    fn addresses_are_optional_and_strict() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut a = hello(0xaa, 80, &["any"]);
        a.addrs = vec![ip("fd00::2"), ip("2001:db8::7")];
        assert_eq!(
            encode(&a),
            b"pacserve 1 hello id=00000000000000aa port=80 arch=any addrs=fd00::2,2001:db8::7\n"
        );
        assert_eq!(decode(&encode(&a)), Ok(a.clone()));
        // Optional, in any place; written at most once.
        let line = b"pacserve 1 bye addrs=10.0.0.2 id=00000000000000aa port=80 arch=any\n";
        let got = decode(line).unwrap();
        assert_eq!((got.kind, got.addrs), (Kind::Bye, vec![ip("10.0.0.2")]));
        use DecodeError::*;
        const H: &str = "pacserve 1 hello id=00000000000000aa port=80 arch=any";
        let cases: &[(&str, DecodeError)] = &[
            ("addrs=", BadValue("addrs")),
            ("addrs=,", BadValue("addrs")),
            ("addrs=fd00::2,", BadValue("addrs")),
            ("addrs=fd00::2,fd00::2", BadValue("addrs")),
            ("addrs=fd00::2 addrs=fd00::3", Duplicate("addrs")),
            ("addrs=[fd00::2]", BadValue("addrs")),
            ("addrs=fe80::1", BadValue("addrs")),
            ("addrs=fe80::1%eth0", BadValue("addrs")),
            ("addrs=::1", BadValue("addrs")),
            ("addrs=::", BadValue("addrs")),
            ("addrs=ff02::15:78", BadValue("addrs")),
            ("addrs=::ffff:10.0.0.1", BadValue("addrs")),
            ("addrs=::ffff:a:b", BadValue("addrs")),
            ("addrs=127.0.0.1", BadValue("addrs")),
            ("addrs=0.0.0.0", BadValue("addrs")),
            ("addrs=239.255.15.78", BadValue("addrs")),
            ("addrs=010.0.0.1", BadValue("addrs")),
            ("addrs=host.lan", BadValue("addrs")),
            (
                "addrs=fd00::1,fd00::2,fd00::3,fd00::4,fd00::5",
                TooManyAddrs,
            ),
        ];
        for (tail, want) in cases {
            let line = format!("{H} {tail}\n");
            assert_eq!(decode(line.as_bytes()), Err(*want), "{line:?}");
        }
        // A hello with every architecture and every address it may have still fits, with
        // room for a seal naming an IPv6 sender.
        let mut full = hello(
            1,
            1,
            &(0..MAX_ANNOUNCE_ARCHS)
                .map(|i| format!("{i:0>width$}", width = MAX_ARCH_NAME))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        full.addrs = (1..=MAX_ANNOUNCE_ADDRS)
            .map(|i| ip(&format!("2001:db8:1234:5678:9abc:def0:1234:{i:x}")))
            .collect();
        let bytes = encode(&full);
        assert!(
            bytes.len() + LONGEST_SEAL <= MAX_ANNOUNCE_BYTES,
            "{}",
            bytes.len()
        );
        assert_eq!(decode(&bytes).as_ref(), Ok(&full));
        let src = ip("fe80::1234:5678:9abc:def0");
        let signed = encode_signed(&full, u64::MAX, u64::MAX, src, &key(1));
        assert!(signed.len() <= MAX_ANNOUNCE_BYTES, "{}", signed.len());
        let d = decode_datagram(&signed).expect("the longest signed hello decodes");
        assert_eq!((&d.announce, d.seal.map(|s| s.src)), (&full, Some(src)));
        let keys = crate::auth::key::Keys::new(vec![key(1)]).unwrap();
        assert_eq!(d.verify(&signed, &keys, src), Ok(()));
    }
}
