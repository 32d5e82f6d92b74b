//! The authentication header of requests between pacserves (`/peer/` lookups, `/info`):
//! build it and check its MAC. Pure: the caller brings the time and the nonce, and the
//! freshness checks of [`super::window`].
//!
//! ```text
//! X-Pacserve-Auth: 1 ts=1700000000 nonce=0123456789abcdef mac=<64 hex digits>
//! ```
//!
//! The MAC is HMAC-SHA-256, under the signing key, of the method, the request target as
//! sent, the timestamp and the nonce, each on a line of its own after a line naming the
//! scheme (`pacserve-auth 1`), so that no other message of pacserve can pass for one.

use super::key::{Key, Keys};
use super::mac::{Mac, hmac_sha256, same_mac};
use super::{parse_mac, parse_nonce, parse_ts};

/// The header field's name.
pub const HEADER: &str = "X-Pacserve-Auth";

/// The version of the scheme, first in the value and in what the MAC covers.
const VERSION: &str = "1";

/// What a well-formed header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    pub ts: u64,
    pub nonce: u64,
    pub mac: Mac,
}

/// The MAC of a request `method target` signed at `ts` with `nonce`.
pub fn mac_of(key: &Key, method: &str, target: &str, ts: u64, nonce: u64) -> Mac {
    let (ts, nonce) = (ts.to_string(), format!("{nonce:016x}"));
    hmac_sha256(
        key.bytes(),
        &[
            b"pacserve-auth ",
            VERSION.as_bytes(),
            b"\n",
            method.as_bytes(),
            b"\n",
            target.as_bytes(),
            b"\n",
            ts.as_bytes(),
            b"\n",
            nonce.as_bytes(),
        ],
    )
}

/// The header value for `method target`, signed with `key` at `ts` with `nonce`.
pub fn header_value(key: &Key, method: &str, target: &str, ts: u64, nonce: u64) -> String {
    let mac = mac_of(key, method, target, ts, nonce);
    format!(
        "{VERSION} ts={ts} nonce={nonce:016x} mac={}",
        crate::names::sha256_hex(&mac)
    )
}

/// Parse a header value strictly (one spelling only); None when it is not one.
pub fn parse(value: &str) -> Option<Signature> {
    let mut t = value.split(' ');
    if t.next()? != VERSION {
        return None;
    }
    let ts = parse_ts(t.next()?.strip_prefix("ts=")?)?;
    let nonce = parse_nonce(t.next()?.strip_prefix("nonce=")?)?;
    let mac = parse_mac(t.next()?.strip_prefix("mac=")?)?;
    if t.next().is_some() {
        return None;
    }
    Some(Signature { ts, nonce, mac })
}

/// Whether `sig` is the MAC of `method target` under one of `keys` (each compared in
/// constant time).
pub fn verify(keys: &Keys, method: &str, target: &str, sig: &Signature) -> bool {
    keys.all().iter().fold(false, |ok, key| {
        ok | same_mac(&mac_of(key, method, target, sig.ts, sig.nonce), &sig.mac)
    })
}

#[cfg(test)]
mod tests {
    use super::super::key::parse_key;
    use super::*;

    fn key(b: u8) -> Key {
        parse_key(&[b; 32]).unwrap()
    }

    #[test]
    fn a_signed_request_verifies_and_nothing_else_does() {
        let (old, new, stranger) = (key(1), key(2), key(3));
        let both = Keys::new(vec![new.clone(), old.clone()]).unwrap();
        let path = "/peer/core/x86_64/zstd-1.5.5-1-x86_64.pkg.tar.zst";
        let ts = 1_700_000_000;
        let value = header_value(&old, "HEAD", path, ts, 0xabc);
        let sig = parse(&value).expect("our own header parses");
        assert_eq!((sig.ts, sig.nonce), (ts, 0xabc));
        assert!(value.starts_with("1 ts=1700000000 nonce=0000000000000abc mac="));
        // Any key of the ring verifies; a key outside it does not.
        assert!(verify(&both, "HEAD", path, &sig));
        assert!(!verify(
            &Keys::new(vec![stranger]).unwrap(),
            "HEAD",
            path,
            &sig
        ));
        // Every part is covered.
        let others: &[(&str, &str, u64, u64)] = &[
            ("GET", path, ts, 0xabc),
            (
                "HEAD",
                "/peer/core/x86_64/other-1-1-x86_64.pkg.tar.zst",
                ts,
                0xabc,
            ),
            ("HEAD", "/info", ts, 0xabc),
            ("HEAD", path, ts + 1, 0xabc),
            ("HEAD", path, ts, 0xabd),
        ];
        for (method, target, ts, nonce) in others {
            let moved = Signature {
                ts: *ts,
                nonce: *nonce,
                mac: sig.mac,
            };
            assert!(
                !verify(&both, method, target, &moved),
                "{method} {target} {ts} {nonce}"
            );
        }
    }

    #[test]
    fn header_values_have_one_spelling() {
        let good = format!("1 ts=5 nonce=00000000000000ff mac={}", "ab".repeat(32));
        assert!(parse(&good).is_some());
        let bad = [
            String::new(),
            "1".to_string(),
            good.replacen("1 ", "2 ", 1),
            good.replacen("ts=5", "ts=05", 1),
            good.replacen("ts=5", "ts=", 1),
            good.replacen("ts=5", "ts=-5", 1),
            good.replacen("ts=5", "ts=+5", 1),
            good.replacen("ts=5", "ts=99999999999999999999", 1),
            good.replacen("nonce=00000000000000ff", "nonce=ff", 1),
            good.replacen("nonce=00000000000000ff", "nonce=00000000000000FF", 1),
            good.replace("ab", "AB"),
            good.replace("mac=ab", "mac=a"),
            format!("{good} "),
            format!(" {good}"),
            format!("{good} x=1"),
            good.replace(' ', "  "),
            good.replacen("ts=5 nonce", "nonce", 1),
            good.replacen("ts=", "ts:", 1),
        ];
        for b in &bad {
            assert_eq!(parse(b), None, "{b:?}");
        }
    }
}
