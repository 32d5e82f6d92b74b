//! A LAN that lets no stranger in (`--secret-file`): a shared secret and HMAC-SHA-256, no
//! TLS. Every multicast datagram carries a timestamp, a nonce, the sender's address and a
//! MAC over all of it; requests between pacserves carry an authentication header; clients
//! are restricted to loopback, authenticated peers and `--allow` ranges.
//!
//! The pieces: [`key`] (key files, `gen-secret`), [`mac`] (HMAC, constant-time compare),
//! [`window`] (time window and replay cache), [`request`] (the header), [`access`] (who may
//! ask what). All pure but the key loader; [`Lan`] here holds the state they share (the
//! keys, reloaded on SIGHUP, and the caches) and counts what it refuses.
//!
//! What it does not do: encrypt (anyone on the LAN sees which packages are fetched), or
//! authenticate answers (a host that can intercept traffic, by ARP spoofing say, can still
//! tamper with them; pacman's signatures still protect the packages).

pub mod access;
pub mod key;
pub mod mac;
pub mod request;
pub mod window;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use access::{Cidr, Header, Proven, Refusal, Route, Source, decide};
use key::{KeyError, Keys, load_keys};
use mac::Mac;
use window::{ReplayCache, Stale};

/// Why a datagram was dropped before it reached the peer table; each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramRefusal {
    /// No MAC at all.
    Unsigned,
    /// Signed for another sender address than the one it came from (a replay from another
    /// host, or a forged source).
    Address,
    /// The MAC is not one of any key we hold.
    BadMac,
    /// Outside the time window.
    Window,
    /// Seen before.
    Replay,
}

impl DatagramRefusal {
    pub const ALL: [DatagramRefusal; 5] = [
        DatagramRefusal::Unsigned,
        DatagramRefusal::Address,
        DatagramRefusal::BadMac,
        DatagramRefusal::Window,
        DatagramRefusal::Replay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DatagramRefusal::Unsigned => "unsigned",
            DatagramRefusal::Address => "address",
            DatagramRefusal::BadMac => "bad_mac",
            DatagramRefusal::Window => "window",
            DatagramRefusal::Replay => "replay",
        }
    }
}

/// What was refused, by reason, and what was taken.
#[derive(Debug, Default)]
pub struct Counters {
    datagrams: [AtomicU64; DatagramRefusal::ALL.len()],
    requests: [AtomicU64; Refusal::ALL.len()],
    datagrams_taken: AtomicU64,
    requests_taken: AtomicU64,
}

impl Counters {
    pub fn refused_datagram(&self, why: DatagramRefusal) {
        let i = DatagramRefusal::ALL.iter().position(|r| *r == why);
        if let Some(i) = i {
            self.datagrams[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn refused_request(&self, why: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == why) {
            self.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Refused datagrams by reason, in [`DatagramRefusal::ALL`] order.
    pub fn datagrams(&self) -> Vec<(&'static str, u64)> {
        let n = |i: usize| self.datagrams[i].load(Ordering::Relaxed);
        let all = DatagramRefusal::ALL.iter().enumerate();
        all.map(|(i, r)| (r.as_str(), n(i))).collect()
    }

    /// Refused requests by reason, in [`Refusal::ALL`] order.
    pub fn requests(&self) -> Vec<(&'static str, u64)> {
        let n = |i: usize| self.requests[i].load(Ordering::Relaxed);
        let all = Refusal::ALL.iter().enumerate();
        all.map(|(i, r)| (r.as_str(), n(i))).collect()
    }

    /// Signed datagrams and requests taken.
    pub fn taken(&self) -> (u64, u64) {
        (
            self.datagrams_taken.load(Ordering::Relaxed),
            self.requests_taken.load(Ordering::Relaxed),
        )
    }
}

/// The shared-secret state of a pacserve: the keys (from `--secret-file`, read again on
/// SIGHUP), the replay caches of datagrams and of requests, the addresses that proved they
/// hold a key, and the counters.
pub struct Lan {
    files: Vec<PathBuf>,
    keys: RwLock<Arc<Keys>>,
    datagrams: Mutex<ReplayCache>,
    requests: Mutex<ReplayCache>,
    proven: Mutex<Proven>,
    nonce: AtomicU64,
    counters: Arc<Counters>,
}

/// Seconds since the epoch, now (0 for a clock before 1970, which the window then refuses).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Lan {
    /// Read the key files (`files` is never empty when called from the command line); None
    /// when there are none.
    pub fn load(files: &[PathBuf]) -> Result<Option<Lan>, KeyError> {
        let keys = load_keys(files)?;
        Ok(keys.map(|keys| Lan::new(files.to_vec(), keys)))
    }

    /// With `keys`, read from `files` (which a reload reads again).
    pub fn new(files: Vec<PathBuf>, keys: Keys) -> Lan {
        // Nonces only have to differ: a random start, then one more each time.
        let mut seed = [0u8; 8];
        let seed = match key::random_bytes(&mut seed) {
            Ok(()) => u64::from_ne_bytes(seed),
            Err(_) => crate::peers::discovery::new_instance_id(),
        };
        Lan {
            files,
            keys: RwLock::new(Arc::new(keys)),
            datagrams: Mutex::default(),
            requests: Mutex::default(),
            proven: Mutex::default(),
            nonce: AtomicU64::new(seed),
            counters: Arc::default(),
        }
    }

    /// SIGHUP: read the same files again. A broken one keeps the keys in use; the number of
    /// keys now.
    pub fn reload(&self) -> Result<usize, KeyError> {
        let Some(keys) = load_keys(&self.files)? else {
            return Ok(self.keys().all().len());
        };
        let n = keys.all().len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(n)
    }

    pub fn keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    pub fn next_nonce(&self) -> u64 {
        self.nonce.fetch_add(1, Ordering::Relaxed)
    }

    /// The authentication header value for a request `method target` sent now.
    pub fn sign_request(&self, method: &str, target: &str) -> String {
        let keys = self.keys();
        request::header_value(
            keys.signing(),
            method,
            target,
            unix_now(),
            self.next_nonce(),
        )
    }

    /// Judge a request's header (None: it has none) at `now`; a valid one is remembered (no
    /// replay) and proves its sender's address.
    fn judge_request(
        &self,
        method: &str,
        target: &str,
        header: Option<&str>,
        from: IpAddr,
        now: u64,
    ) -> Header {
        let Some(value) = header else {
            return Header::Absent;
        };
        let Some(sig) = request::parse(value) else {
            return Header::Refused(Refusal::Malformed);
        };
        if !request::verify(&self.keys(), method, target, &sig) {
            return Header::Refused(Refusal::BadMac);
        }
        match crate::lock(&self.requests).admit(sig.ts, sig.nonce, now) {
            Ok(()) => {}
            Err(Stale::Window(skew)) => {
                clock_hint(from, skew);
                return Header::Refused(Refusal::Window);
            }
            Err(Stale::Replay) => return Header::Refused(Refusal::Replay),
        }
        self.counters.requests_taken.fetch_add(1, Ordering::Relaxed);
        crate::lock(&self.proven).note(from, now);
        Header::Valid
    }

    /// A datagram whose seal (timestamp, nonce, the MAC's verdict) was read by the wire
    /// decoder, from `from`, at `now`: take it, or count and say why not. A datagram taken
    /// proves its sender's address.
    pub fn admit_datagram(
        &self,
        seal: Option<(u64, u64)>,
        verdict: Result<(), DatagramRefusal>,
        from: IpAddr,
        now: u64,
    ) -> Result<(), DatagramRefusal> {
        let admitted = (|| {
            let (ts, nonce) = seal.ok_or(DatagramRefusal::Unsigned)?;
            verdict?;
            match crate::lock(&self.datagrams).admit(ts, nonce, now) {
                Ok(()) => Ok(()),
                Err(Stale::Window(skew)) => {
                    clock_hint(from, skew);
                    Err(DatagramRefusal::Window)
                }
                Err(Stale::Replay) => Err(DatagramRefusal::Replay),
            }
        })();
        match admitted {
            Ok(()) => {
                self.counters
                    .datagrams_taken
                    .fetch_add(1, Ordering::Relaxed);
                crate::lock(&self.proven).note(from, now);
            }
            Err(why) => self.counters.refused_datagram(why),
        }
        admitted
    }

    /// Whether `ip` proved lately that it holds a key.
    pub fn proven(&self, ip: IpAddr, now: u64) -> bool {
        crate::lock(&self.proven).contains(ip, now)
    }
}

/// Lines about clocks that disagree: a host whose MACs are right but whose time is not is a
/// real peer that NTP would fix.
static CLOCK_LINES: crate::sys::log::Throttle = crate::sys::log::Throttle::new();

fn clock_hint(from: IpAddr, skew: i64) {
    crate::error_throttled!(
        CLOCK_LINES,
        "refused a correctly signed message from {from}: its clock is {} s {} ours (at most \
         {} s allowed) — keep the clocks of the LAN in step (NTP)",
        skew.unsigned_abs(),
        if skew < 0 { "behind" } else { "ahead of" },
        crate::limits::AUTH_WINDOW.as_secs()
    );
}

/// The lines about refused clients.
static REFUSED_LINES: crate::sys::log::Throttle = crate::sys::log::Throttle::new();

/// Who may ask: the shared secret (if any) and the `--allow` ranges. What the server asks
/// before it answers anything.
pub struct Guard {
    lan: Option<Arc<Lan>>,
    allow: Vec<Cidr>,
    counters: Arc<Counters>,
}

impl Guard {
    pub fn new(lan: Option<Arc<Lan>>, allow: Vec<Cidr>) -> Guard {
        let counters = lan
            .as_ref()
            .map_or_else(Arc::default, |l| l.counters.clone());
        Guard {
            lan,
            allow,
            counters,
        }
    }

    /// No secret and no `--allow`: everyone is answered.
    pub fn open(&self) -> bool {
        self.lan.is_none() && self.allow.is_empty()
    }

    pub fn lan(&self) -> Option<&Arc<Lan>> {
        self.lan.as_ref()
    }

    pub fn allow(&self) -> &[Cidr] {
        &self.allow
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// May `method target` from `from`, with the authentication header `header`, be
    /// answered? `is_peer`: whether an address is a peer the table took from a signed hello.
    /// A refusal is counted and logged (throttled).
    pub fn check(
        &self,
        route: Route,
        method: &str,
        target: &str,
        header: Option<&str>,
        from: IpAddr,
        is_peer: impl FnOnce(IpAddr) -> bool,
    ) -> Result<(), Refusal> {
        if self.open() {
            return Ok(());
        }
        let now = unix_now();
        let ip = from.to_canonical();
        let header = match &self.lan {
            Some(lan) => lan.judge_request(method, target, header, ip, now),
            None => Header::Absent,
        };
        let loopback = ip.is_loopback();
        let allowed = self.allow.iter().any(|c| c.contains(ip));
        let peer = !loopback
            && !allowed
            && header == Header::Absent
            && self
                .lan
                .as_ref()
                .is_some_and(|l| l.proven(ip, now) || is_peer(ip));
        let source = Source {
            loopback,
            peer,
            allowed,
        };
        let decided = decide(
            self.lan.is_some(),
            !self.allow.is_empty(),
            route,
            header,
            source,
        );
        if let Err(why) = decided {
            self.counters.refused_request(why);
            crate::error_throttled!(
                REFUSED_LINES,
                "refused {ip} ({}): {}",
                why.as_str(),
                match why {
                    Refusal::NotAllowed =>
                        "not loopback, not an authenticated peer, not in --allow",
                    Refusal::Unsigned => "a pacserve route without an authentication header",
                    Refusal::Malformed => "a malformed authentication header",
                    Refusal::BadMac => "signed with a key we do not hold",
                    Refusal::Window => "signed too long ago (or its clock is off)",
                    Refusal::Replay => "a signed request seen before",
                }
            );
        }
        decided
    }
}

/// A timestamp: decimal, no sign, no leading zero, fits in 64 bits (pure).
pub fn parse_ts(v: &str) -> Option<u64> {
    let digits = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    if !digits || v.len() > 20 || (v.len() > 1 && v.starts_with('0')) {
        return None;
    }
    v.parse().ok()
}

/// A nonce: exactly 16 lowercase hex digits (pure).
pub fn parse_nonce(v: &str) -> Option<u64> {
    let ok = v.len() == 16 && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then(|| u64::from_str_radix(v, 16).ok()).flatten()
}

/// A MAC: exactly 64 lowercase hex digits (pure).
pub fn parse_mac(v: &str) -> Option<Mac> {
    let lower = v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    lower.then(|| crate::names::parse_sha256(v)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_one_spelling() {
        assert_eq!(parse_ts("0"), Some(0));
        assert_eq!(parse_ts("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_ts("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "01",
            "-1",
            "+1",
            "1.0",
            "18446744073709551616",
            "1 ",
            "x",
        ] {
            assert_eq!(parse_ts(bad), None, "{bad:?}");
        }
        assert_eq!(parse_nonce("00000000000000ff"), Some(255));
        for bad in [
            "ff",
            "00000000000000FF",
            "000000000000000ff",
            "-000000000000001",
        ] {
            assert_eq!(parse_nonce(bad), None, "{bad:?}");
        }
        assert_eq!(parse_mac(&"0a".repeat(32)), Some([10; 32]));
        for bad in [
            "0A".repeat(32),
            "0a".repeat(31),
            "0a".repeat(33),
            "g".repeat(64),
        ] {
            assert_eq!(parse_mac(&bad), None, "{bad:?}");
        }
    }
}
