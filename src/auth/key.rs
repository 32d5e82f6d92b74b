//! The LAN's shared secret: key files (read, checked, refused with a message that says how to
//! fix them), and `pacserve gen-secret`. The parse of a file's bytes into a key is pure; the
//! loader does the I/O.
//!
//! A key file holds 64 or more hex digits (surrounding whitespace ignored), decoded to the
//! key; anything else is taken byte for byte and must be at least 32 bytes. It must be a
//! regular file that neither group nor others may read or write.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::limits::{MAX_SECRET_FILE_BYTES, MIN_SECRET_HEX_DIGITS, MIN_SECRET_RAW_BYTES};

/// One key. Its bytes are never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl Key {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} bytes)", self.0.len())
    }
}

/// The keys in use: the first signs, every one verifies (so a LAN can move to a new key
/// without a moment in which two hosts cannot understand each other). No duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys(Vec<Key>);

impl Keys {
    /// `keys` in order, duplicates dropped; None when empty.
    pub fn new(keys: Vec<Key>) -> Option<Keys> {
        let mut kept: Vec<Key> = Vec::with_capacity(keys.len());
        for k in keys {
            if !kept.contains(&k) {
                kept.push(k);
            }
        }
        (!kept.is_empty()).then_some(Keys(kept))
    }

    /// The key that signs.
    pub fn signing(&self) -> &Key {
        &self.0[0]
    }

    /// Every key that verifies, the signing one first.
    pub fn all(&self) -> &[Key] {
        &self.0
    }
}

/// What is wrong with a key file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weak {
    Empty,
    /// Not 64 or more hex digits, and fewer than 32 bytes.
    TooShort {
        bytes: usize,
    },
}

/// The key in a file's `bytes` (pure).
pub fn parse_key(bytes: &[u8]) -> Result<Key, Weak> {
    let text = bytes.trim_ascii();
    if text.is_empty() {
        return Err(Weak::Empty);
    }
    let hex = text.len() >= MIN_SECRET_HEX_DIGITS
        && text.len() % 2 == 0
        && text.iter().all(u8::is_ascii_hexdigit);
    if hex {
        let digit = |c: u8| (c as char).to_digit(16).map_or(0, |d| d as u8);
        let key = text
            .chunks(2)
            .map(|p| digit(p[0]) << 4 | digit(p[1]))
            .collect();
        return Ok(Key(key));
    }
    if bytes.len() < MIN_SECRET_RAW_BYTES {
        return Err(Weak::TooShort { bytes: bytes.len() });
    }
    Ok(Key(bytes.to_vec()))
}

/// Why a key file cannot be used; the message names the file and says what to do.
#[derive(Debug)]
pub enum KeyError {
    /// It cannot be opened or read (missing, not permitted, ...).
    Read {
        path: PathBuf,
        source: io::Error,
    },
    NotRegular {
        path: PathBuf,
    },
    /// Group or others may read or write it.
    Exposed {
        path: PathBuf,
        mode: u32,
    },
    TooLarge {
        path: PathBuf,
    },
    Weak {
        path: PathBuf,
        weak: Weak,
    },
}

/// How to make a good key file at `path`.
fn make_one(path: &Path) -> String {
    format!(
        "make one with `(umask 077; pacserve gen-secret > {})` and copy that same file to \
         every host",
        path.display()
    )
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Read { path, source } if source.kind() == io::ErrorKind::NotFound => {
                write!(
                    f,
                    "secret file {}: no such file — {}",
                    path.display(),
                    make_one(path)
                )
            }
            KeyError::Read { path, source } => write!(
                f,
                "secret file {}: cannot read it: {source} (it must be readable by the user \
                 pacserve runs as; under systemd, pass it with LoadCredential=)",
                path.display()
            ),
            KeyError::NotRegular { path } => write!(
                f,
                "secret file {}: not a regular file — {}",
                path.display(),
                make_one(path)
            ),
            KeyError::Exposed { path, mode } => write!(
                f,
                "secret file {}: group or others may read or write it (mode {:03o}) — run \
                 `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ),
            KeyError::TooLarge { path } => write!(
                f,
                "secret file {}: larger than {MAX_SECRET_FILE_BYTES} bytes, not a key — {}",
                path.display(),
                make_one(path)
            ),
            KeyError::Weak {
                path,
                weak: Weak::Empty,
            } => write!(
                f,
                "secret file {}: empty — {}",
                path.display(),
                make_one(path)
            ),
            KeyError::Weak {
                path,
                weak: Weak::TooShort { bytes },
            } => write!(
                f,
                "secret file {}: too short for a key ({bytes} bytes; a key is 64 or more hex \
                 digits, or at least {MIN_SECRET_RAW_BYTES} bytes) — {}",
                path.display(),
                make_one(path)
            ),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Read and check the key file at `path`. Opened non-blocking, so a FIFO in its place cannot
/// hang start-up or a reload.
pub fn load_key(path: &Path) -> Result<Key, KeyError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let read_err = |source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(KeyError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode();
    if exposed(mode, in_credentials(path)) {
        return Err(KeyError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() > MAX_SECRET_FILE_BYTES {
        return Err(KeyError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    parse_key(&bytes).map_err(|weak| KeyError::Weak {
        path: path.to_path_buf(),
        weak,
    })
}

/// Whether a key file of `mode` may be read or written by others than its owner (pure).
/// `credential`: it is one systemd passed (`LoadCredential=`): mode 400 and an ACL that lets
/// the service's user read it, which stat shows as the group bits (the ACL's mask, r--), in
/// a directory of that service alone. There, group read is what it looks like.
fn exposed(mode: u32, credential: bool) -> bool {
    let fine = if credential { 0o040 } else { 0 };
    mode & 0o077 & !fine != 0
}

/// Whether `path` lies in the service's `$CREDENTIALS_DIRECTORY`.
fn in_credentials(path: &Path) -> bool {
    std::env::var_os("CREDENTIALS_DIRECTORY")
        .is_some_and(|dir| !dir.is_empty() && path.starts_with(dir))
}

/// Every file of `--secret-file`, in order: the first signs.
pub fn load_keys(paths: &[PathBuf]) -> Result<Option<Keys>, KeyError> {
    let keys = paths
        .iter()
        .map(|p| load_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Keys::new(keys))
}

/// Fill `buf` from the kernel's random source (getrandom(2), which blocks only until the
/// pool is first initialised at boot).
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    use rustix::rand::{GetRandomFlags, getrandom};
    let mut filled = 0;
    // Each call gives at least 256 bytes unless a signal interrupts it: bounded.
    for _ in 0..64 {
        if filled == buf.len() {
            return Ok(());
        }
        match getrandom(&mut buf[filled..], GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if filled == buf.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "getrandom kept being interrupted",
        ))
    }
}

/// `pacserve gen-secret`: a new key, 64 hex digits and a newline.
pub fn gen_secret() -> io::Result<String> {
    let mut key = [0u8; MIN_SECRET_HEX_DIGITS / 2];
    random_bytes(&mut key)?;
    Ok(format!("{}\n", crate::names::sha256_hex(&key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_and_raw_keys() {
        let hex64 = "00112233445566778899aabbccddeeff".repeat(2);
        let cases: Vec<(Vec<u8>, Result<usize, Weak>)> = vec![
            // 64 hex digits: 32 bytes, with or without whitespace around, either case.
            (hex64.clone().into_bytes(), Ok(32)),
            (format!("{hex64}\n").into_bytes(), Ok(32)),
            (
                format!("  {}\r\n", hex64.to_uppercase()).into_bytes(),
                Ok(32),
            ),
            (format!("{hex64}abcd\n").into_bytes(), Ok(34)),
            // Not hex (or too few, or an odd number of digits): raw bytes, all of them.
            (format!("{hex64}a\n").into_bytes(), Ok(66)),
            (vec![0xff; 32], Ok(32)),
            (b"correct horse battery staple and more".to_vec(), Ok(37)),
            (format!("{}\n", &hex64[..62]).into_bytes(), Ok(63)),
            (b"".to_vec(), Err(Weak::Empty)),
            (b" \n\t\n".to_vec(), Err(Weak::Empty)),
            (b"abc\n".to_vec(), Err(Weak::TooShort { bytes: 4 })),
            (vec![7; 31], Err(Weak::TooShort { bytes: 31 })),
            (
                hex64.as_bytes()[..30].to_vec(),
                Err(Weak::TooShort { bytes: 30 }),
            ),
        ];
        for (bytes, want) in cases {
            let got = parse_key(&bytes).map(|k| k.bytes().len());
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&bytes));
        }
        let k = parse_key(format!("{hex64}\n").as_bytes()).unwrap();
        assert_eq!(k.bytes()[..4], [0x00, 0x11, 0x22, 0x33]);
        assert_eq!(k, parse_key(hex64.to_uppercase().as_bytes()).unwrap());
        assert_eq!(format!("{k:?}"), "Key(32 bytes)", "a key is never printed");
    }

    #[test]
    fn who_may_read_a_key_file() {
        let cases: &[(u32, bool, bool)] = &[
            (0o100600, false, false),
            (0o100400, false, false),
            (0o100700, false, false),
            (0o100640, false, true),
            (0o100604, false, true),
            (0o100620, false, true),
            (0o100644, false, true),
            // A systemd credential: 400 with an ACL for the service's user shows as 440.
            (0o100440, true, false),
            (0o100400, true, false),
            (0o100460, true, true),
            (0o100444, true, true),
            (0o100404, true, true),
        ];
        for (mode, credential, want) in cases {
            assert_eq!(exposed(*mode, *credential), *want, "{mode:o} {credential}");
        }
    }

    #[test]
    fn keys_keep_order_without_duplicates() {
        let k = |b: u8| Key(vec![b; 32]);
        let keys = Keys::new(vec![k(1), k(2), k(1), k(3)]).unwrap();
        assert_eq!(keys.signing(), &k(1));
        assert_eq!(keys.all(), &[k(1), k(2), k(3)]);
        assert!(Keys::new(Vec::new()).is_none());
    }

    #[test]
    fn new_secrets_are_64_hex_digits_and_differ() {
        let a = gen_secret().unwrap();
        let b = gen_secret().unwrap();
        assert_eq!(a.len(), 65);
        assert!(a.ends_with('\n'));
        assert!(a.trim_end().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(parse_key(a.as_bytes()).unwrap().bytes().len(), 32);
    }
}
