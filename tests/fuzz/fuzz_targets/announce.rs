//! The multicast announcement decoder on arbitrary bytes: no panics, and every accepted
//! datagram re-encodes to an equal announcement that is no longer than the input (unknown
//! fields are dropped, everything else has one spelling).
//!
//! Signed datagrams too: a seal re-encodes to the same seal; verifying never panics; the
//! announcement signed with a fixed key (under the input's seal, or one made of its bytes)
//! verifies for its own address and that key only, and changing any one byte of what the
//! MAC covers makes it fail.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use pacserve::auth::DatagramRefusal;
use pacserve::auth::key::{Keys, parse_key};
use pacserve::limits::MAX_ANNOUNCE_BYTES;
use pacserve::peers::discovery::{decode, decode_datagram, encode, encode_sealed, encode_signed};

fn keys(hex_digit: &str) -> Keys {
    let key = parse_key(hex_digit.repeat(64).as_bytes()).expect("64 hex digits");
    Keys::new(vec![key]).expect("one key")
}

fuzz_target!(|data: &[u8]| {
    let Ok(a) = decode(data) else {
        return;
    };
    let bytes = encode(&a);
    assert!(bytes.len() <= data.len() && bytes.len() <= MAX_ANNOUNCE_BYTES);
    assert_eq!(decode(&bytes).as_ref(), Ok(&a), "re-encoded: {bytes:?}");

    let d = decode_datagram(data).expect("decode took it");
    assert_eq!(d.announce, a);
    let (ours, theirs) = (keys("a"), keys("b"));
    if let Some(seal) = d.seal {
        let _ = d.verify(data, &ours, seal.src);
        // One spelling of a seal, too.
        let sealed = encode_sealed(&a, &seal);
        assert!(sealed.len() <= data.len(), "re-sealed: {sealed:?}");
        let again = decode_datagram(&sealed).map(|d| (d.announce, d.seal));
        assert_eq!(again, Ok((a.clone(), Some(seal))));
    } else {
        let from = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(d.verify(data, &ours, from), Err(DatagramRefusal::Unsigned));
    }
    // The seal to sign with: the input's, or one made of its bytes.
    let n = |i: usize| u64::from(data[i % data.len()]);
    let (ts, nonce, src) = match d.seal {
        Some(s) => (s.ts, s.nonce, s.src),
        None => (
            n(0) << 40 | n(1) << 8 | n(2),
            n(3) << 56 | n(4) << 16 | n(5),
            if data[8 % data.len()] % 2 == 0 {
                IpAddr::V4(Ipv4Addr::new(
                    10,
                    data[6 % data.len()],
                    0,
                    data[7 % data.len()],
                ))
            } else {
                let tail = u16::from(data[6 % data.len()]) << 8 | u16::from(data[7 % data.len()]);
                IpAddr::V6(Ipv6Addr::new(0xfd15, 0x78, 0, 0, 0, 0, 0, tail))
            },
        ),
    };
    let from = src;

    // Signed again with our key: it verifies from its own address, with our key only.
    let signed = encode_signed(&a, ts, nonce, src, ours.signing());
    let s = decode_datagram(&signed).expect("a signed datagram decodes");
    assert_eq!(s.verify(&signed, &ours, from), Ok(()));
    assert_eq!(
        s.verify(&signed, &theirs, from),
        Err(DatagramRefusal::BadMac)
    );
    let elsewhere = if src == IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)) {
        Ipv4Addr::new(10, 0, 0, 2)
    } else {
        Ipv4Addr::new(10, 0, 0, 1)
    };
    let refused = s.verify(&signed, &ours, IpAddr::V4(elsewhere));
    assert_eq!(refused, Err(DatagramRefusal::Address));

    // Any one byte before ` mac=` changed (the input picks which, and to what): it no longer
    // decodes, or no longer verifies.
    let covered = signed
        .windows(5)
        .position(|w| w == b" mac=")
        .expect("a mac field");
    let at = usize::from(data[0]) * 256 + usize::from(data[data.len() - 1]);
    let mut changed = signed.clone();
    let i = at % covered;
    changed[i] = changed[i].wrapping_add(1 + data[data.len() / 2] % 255);
    if let Ok(c) = decode_datagram(&changed) {
        let from = c.seal.map_or(from, |s| s.src);
        assert!(
            c.verify(&changed, &ours, from).is_err(),
            "a changed byte {i} still verifies: {changed:?}"
        );
    }
});
