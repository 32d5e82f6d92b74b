//! What a repository, an architecture and a package file may be called: one rule each, used
//! wherever such a name enters pacserve (request paths, pacman.conf, announcements), so a
//! name accepted in one place is never refused in another. Pure.

use crate::limits::{MAX_ARCH_NAME, MAX_FILE_NAME, MAX_REPO_NAME};

/// Why a name is not one pacserve can use; the text finishes "NAME ...".
pub type Problem = &'static str;

/// A repository name: `core`, `extra`, `chaotic-aur`, `home_user+x`: ASCII letters, digits
/// and `._+-`, not starting with `.`, at most [`MAX_REPO_NAME`] bytes. It becomes a path
/// segment of every URL for that repository.
pub fn repo_problem(name: &str) -> Option<Problem> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_REPO_NAME {
        Some("is too long (at most 64 bytes)")
    } else if name.starts_with('.') {
        Some("may not start with '.'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
    {
        Some("may only hold ASCII letters, digits and '.', '_', '+', '-'")
    } else {
        None
    }
}

/// An architecture name: `x86_64`, `aarch64`, `armv7h`, `x86_64_v3`, `any`: ASCII letters,
/// digits and `_`, at most [`MAX_ARCH_NAME`] bytes. Package file names end in
/// `-ARCH.pkg.tar.*` with `-` as the separator, so an architecture never holds one.
pub fn arch_problem(name: &str) -> Option<Problem> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_ARCH_NAME {
        Some("is too long (at most 24 bytes)")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Some(
            "may only hold ASCII letters, digits and '_' \
             (package file names use '-' as a separator)",
        )
    } else {
        None
    }
}

pub fn valid_repo(name: &str) -> bool {
    repo_problem(name).is_none()
}

pub fn valid_arch(name: &str) -> bool {
    arch_problem(name).is_none()
}

/// A package or database file name as it may appear in a request: the characters of pacman
/// file names (name, epoch `:`, version, release, arch, `.`), not starting with `.` or `-`,
/// at most [`MAX_FILE_NAME`] bytes. Safe to join to a directory or append to a URL.
pub fn valid_file(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FILE_NAME
        && !name.starts_with('.')
        && !name.starts_with('-')
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-' | b'@' | b':' | b'~')
        })
}

/// A SHA-256 written as 64 hex digits (either case), as sync databases and peers give it.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// 64 lowercase hex digits.
pub fn sha256_hex(sha: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(64);
    for b in sha {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `NAME-VERSION-REL-any.pkg.tar…` (or its `.sig`): a package for every architecture.
pub fn is_any_arch(file: &str) -> bool {
    let base = file.strip_suffix(".sig").unwrap_or(file);
    base.rfind(".pkg.tar")
        .is_some_and(|i| base[..i].ends_with("-any"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for ok in [
            "core",
            "extra",
            "multilib",
            "chaotic-aur",
            "home_x+y",
            "my.repo",
            "a",
        ] {
            assert_eq!(repo_problem(ok), None, "{ok}");
        }
        let long = "r".repeat(MAX_REPO_NAME + 1);
        for bad in [
            "", ".hidden", "..", "a/b", "a b", "a\\b", "é", "a@b", "$repo", &long,
        ] {
            assert!(repo_problem(bad).is_some(), "{bad:?}");
        }
        assert!(valid_repo(&"r".repeat(MAX_REPO_NAME)));
    }

    #[test]
    fn architecture_names() {
        for ok in [
            "x86_64",
            "aarch64",
            "armv7h",
            "i686",
            "x86_64_v3",
            "any",
            "riscv64",
        ] {
            assert_eq!(arch_problem(ok), None, "{ok}");
        }
        let long = "a".repeat(MAX_ARCH_NAME + 1);
        for bad in ["", "armv7-x", "i.686", "x86/64", "a b", "$arch", "é", &long] {
            assert!(arch_problem(bad).is_some(), "{bad:?}");
        }
        assert!(valid_arch(&"a".repeat(MAX_ARCH_NAME)));
    }

    #[test]
    fn hashes_and_any_packages() {
        let hex = "00ff".repeat(16);
        let sha = parse_sha256(&hex).unwrap();
        assert_eq!(sha[..2], [0x00, 0xff]);
        assert_eq!(sha256_hex(&sha), hex);
        assert_eq!(parse_sha256(&hex.to_uppercase()), Some(sha));
        for bad in ["", "00", &"0".repeat(63), &"g".repeat(64), &"0".repeat(65)] {
            assert_eq!(parse_sha256(bad), None, "{bad:?}");
        }
        assert!(is_any_arch("python-six-1.16.0-3-any.pkg.tar.zst"));
        assert!(is_any_arch("python-six-1.16.0-3-any.pkg.tar.zst.sig"));
        assert!(!is_any_arch("zstd-1.5.5-1-x86_64.pkg.tar.zst"));
        assert!(!is_any_arch("company-1-1-x86_64.pkg.tar.zst"));
    }

    #[test]
    fn file_names() {
        for ok in [
            "zstd-1.5.5-1-x86_64.pkg.tar.zst",
            "vim-2:9.0-1-x86_64.pkg.tar.zst",
            "a-1-1-any.pkg.tar.zst.sig",
            "core.db",
            "lib32-gcc-libs-13.2.1+r2-1-x86_64.pkg.tar.zst",
        ] {
            assert!(valid_file(ok), "{ok}");
        }
        let long = "a".repeat(MAX_FILE_NAME + 1);
        for bad in [
            "", ".", "..", ".hidden", "-rf", "a/b", "a\\b", "a b", "a\0", &long,
        ] {
            assert!(!valid_file(bad), "{bad:?}");
        }
    }
}
