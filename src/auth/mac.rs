//! HMAC-SHA-256 (RFC 2104 over the `sha2` crate's SHA-256) and a comparison of MACs that takes
//! the same time wherever the first difference is. Pure.

use sha2::{Digest, Sha256};

/// SHA-256's block size: keys are padded (or first hashed) to it.
const BLOCK: usize = 64;

/// A MAC: 32 bytes of HMAC-SHA-256.
pub type Mac = [u8; 32];

/// HMAC-SHA-256 of the concatenation of `parts` under `key` (any length; a key longer than a
/// block is hashed first, as RFC 2104 says).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Mac {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|k| k ^ byte);
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// `a == b`, in time that does not depend on where they differ: a forger who can time the
/// answers learns nothing about how much of a guessed MAC was right.
pub fn same_mac(a: &Mac, b: &Mac) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{parse_sha256, sha256_hex};

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 4231 §4.2–4.8: key, data, HMAC-SHA-256 (case 5 is truncated to 128 bits there).
    #[test]
    fn rfc_4231_test_vectors() {
        let long_key = "aa".repeat(131);
        let cases: [(String, Vec<u8>, &str); 7] = [
            (
                "0b".repeat(20),
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                hex_of(b"Jefe"),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                "aa".repeat(20),
                unhex(&"dd".repeat(50)),
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                "0102030405060708090a0b0c0d0e0f10111213141516171819".to_string(),
                unhex(&"cd".repeat(50)),
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                "0c".repeat(20),
                b"Test With Truncation".to_vec(),
                "a3b6167473100ee06e0c796c2955552b",
            ),
            (
                long_key.clone(),
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                long_key,
                b"This is a test using a larger than block-size key and a larger than \
                  block-size data. The key needs to be hashed before being used by the HMAC \
                  algorithm."
                    .to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (i, (key, data, want)) in cases.iter().enumerate() {
            let mac = hmac_sha256(&unhex(key), &[data]);
            let got = sha256_hex(&mac);
            assert_eq!(&got[..want.len()], *want, "RFC 4231 test case {}", i + 1);
        }
    }

    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn parts_are_concatenated_and_keys_matter() {
        let key = [7u8; 32];
        let whole = hmac_sha256(&key, &[b"pacserve 1 hello"]);
        assert_eq!(whole, hmac_sha256(&key, &[b"pacserve ", b"1 ", b"hello"]));
        assert_eq!(whole, hmac_sha256(&key, &[b"", b"pacserve 1 hello", b""]));
        assert_ne!(whole, hmac_sha256(&[8u8; 32], &[b"pacserve 1 hello"]));
        assert_ne!(whole, hmac_sha256(&key, &[b"pacserve 1 hellO"]));
        // A key of exactly one block is used as it is, one byte longer is hashed first.
        let block = [1u8; 64];
        let longer = [1u8; 65];
        assert_ne!(hmac_sha256(&block, &[b"x"]), hmac_sha256(&longer, &[b"x"]));
        let hashed: [u8; 32] = Sha256::digest(longer).into();
        assert_eq!(hmac_sha256(&longer, &[b"x"]), hmac_sha256(&hashed, &[b"x"]));
    }

    #[test]
    fn compares_every_byte() {
        let a = parse_sha256(&"ab".repeat(32)).unwrap();
        assert!(same_mac(&a, &a));
        for i in 0..32 {
            for bit in 0..8 {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!same_mac(&a, &b), "byte {i} bit {bit}");
            }
        }
    }
}
