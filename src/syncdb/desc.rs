//! One package's `desc` file from a sync database: `%KEY%` blocks, each the key line, its
//! value lines, then a blank line. Pure: no I/O, no allocation; the fields borrow from the
//! input.
//!
//! Stricter than libalpm, which skips lines it does not understand: repo-add writes a
//! regular format, and a `desc` that strays from it is more likely damaged than new.

use crate::limits::MAX_DESC_KEYS;
use crate::names::valid_file;

/// What verification needs from a `desc` (and what names it in messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc<'a> {
    /// `%FILENAME%`: the package file, a valid name per [`crate::names::valid_file`], never
    /// a `.sig`.
    pub filename: &'a str,
    /// `%CSIZE%`: the package file's size in bytes.
    pub csize: u64,
    /// `%SHA256SUM%`, when present (databases before pacman 4.2 had only `%MD5SUM%`).
    pub sha256: Option<[u8; 32]>,
    pub name: Option<&'a str>,
    pub version: Option<&'a str>,
    pub arch: Option<&'a str>,
}

/// Why a `desc` was refused; `line` counts from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescError {
    MissingFilename,
    MissingCsize,
    /// A line where a `%KEY%` line was expected.
    NotAKey {
        line: usize,
    },
    /// A key seen before in the same `desc`.
    DuplicateKey {
        line: usize,
    },
    /// More than `MAX_DESC_KEYS` keys.
    TooManyKeys {
        line: usize,
    },
    /// A key that takes one value has none, or more than one.
    ValueCount {
        line: usize,
    },
    /// A value that should be text is not UTF-8.
    NotUtf8 {
        line: usize,
    },
    /// `%FILENAME%` is not a package file name.
    BadFilename {
        line: usize,
    },
    /// `%CSIZE%` is not a decimal number of bytes.
    BadCsize {
        line: usize,
    },
    /// `%SHA256SUM%` is not 64 hex digits.
    BadSha256 {
        line: usize,
    },
}

impl DescError {
    pub fn reason(self) -> &'static str {
        match self {
            DescError::MissingFilename => "no %FILENAME%",
            DescError::MissingCsize => "no %CSIZE%",
            DescError::NotAKey { .. } => "not a %KEY% line",
            DescError::DuplicateKey { .. } => "duplicate key",
            DescError::TooManyKeys { .. } => "too many keys",
            DescError::ValueCount { .. } => "key needs exactly one value line",
            DescError::NotUtf8 { .. } => "value is not UTF-8",
            DescError::BadFilename { .. } => "%FILENAME% is not a package file name",
            DescError::BadCsize { .. } => "%CSIZE% is not a number of bytes",
            DescError::BadSha256 { .. } => "%SHA256SUM% is not 64 hex digits",
        }
    }

    pub fn line(self) -> Option<usize> {
        match self {
            DescError::MissingFilename | DescError::MissingCsize => None,
            DescError::NotAKey { line }
            | DescError::DuplicateKey { line }
            | DescError::TooManyKeys { line }
            | DescError::ValueCount { line }
            | DescError::NotUtf8 { line }
            | DescError::BadFilename { line }
            | DescError::BadCsize { line }
            | DescError::BadSha256 { line } => Some(line),
        }
    }
}

impl std::fmt::Display for DescError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line() {
            Some(line) => write!(f, "desc line {line}: {}", self.reason()),
            None => write!(f, "desc has {}", self.reason()),
        }
    }
}

impl std::error::Error for DescError {}

/// A value: its first line, how many lines it had, and the line number of the first.
#[derive(Clone, Copy)]
struct Value<'a> {
    first: &'a [u8],
    lines: usize,
    at: usize,
}

impl<'a> Value<'a> {
    /// The one line of a single-valued key.
    fn single(self, key_line: usize) -> Result<(&'a [u8], usize), DescError> {
        if self.lines != 1 || self.first.is_empty() {
            return Err(DescError::ValueCount { line: key_line });
        }
        Ok((self.first, self.at))
    }

    fn text(self, key_line: usize) -> Result<(&'a str, usize), DescError> {
        let (v, line) = self.single(key_line)?;
        let s = std::str::from_utf8(v).map_err(|_| DescError::NotUtf8 { line })?;
        Ok((s, line))
    }
}

/// Parses a `desc`. Unknown keys are skipped; `%FILENAME%` and `%CSIZE%` are required.
pub fn parse_desc(text: &[u8]) -> Result<Desc<'_>, DescError> {
    let mut seen: [&[u8]; MAX_DESC_KEYS] = [&[]; MAX_DESC_KEYS];
    let mut keys = 0;
    let mut filename = None;
    let mut csize = None;
    let mut sha256 = None;
    let (mut name, mut version, mut arch) = (None, None, None);

    // Lines end in LF; a CR before it is dropped (libalpm does the same).
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .zip(1..);
    while let Some((line, at)) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let key = line
            .strip_prefix(b"%")
            .and_then(|l| l.strip_suffix(b"%"))
            .filter(|k| {
                !k.is_empty()
                    && k.iter()
                        .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            })
            .ok_or(DescError::NotAKey { line: at })?;
        if seen[..keys].contains(&key) {
            return Err(DescError::DuplicateKey { line: at });
        }
        if keys == MAX_DESC_KEYS {
            return Err(DescError::TooManyKeys { line: at });
        }
        seen[keys] = key;
        keys += 1;

        let mut value = Value {
            first: &[],
            lines: 0,
            at: at + 1,
        };
        for (l, _) in lines.by_ref() {
            if l.is_empty() {
                break;
            }
            if value.lines == 0 {
                value.first = l;
            }
            value.lines += 1;
        }
        match key {
            b"FILENAME" => {
                let (f, line) = value.text(at)?;
                if !valid_file(f) || f.ends_with(".sig") {
                    return Err(DescError::BadFilename { line });
                }
                filename = Some(f);
            }
            b"CSIZE" => {
                let (v, line) = value.single(at)?;
                csize = Some(decimal(v).ok_or(DescError::BadCsize { line })?);
            }
            b"SHA256SUM" => {
                let (v, line) = value.single(at)?;
                sha256 = Some(hex32(v).ok_or(DescError::BadSha256 { line })?);
            }
            b"NAME" => name = Some(value.text(at)?.0),
            b"VERSION" => version = Some(value.text(at)?.0),
            b"ARCH" => arch = Some(value.text(at)?.0),
            _ => {}
        }
    }
    Ok(Desc {
        filename: filename.ok_or(DescError::MissingFilename)?,
        csize: csize.ok_or(DescError::MissingCsize)?,
        sha256,
        name,
        version,
        arch,
    })
}

/// Decimal digits only (no sign, no space), at most 20, no overflow.
fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |v, &d| {
        v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// 64 hex digits (either case) as 32 bytes.
fn hex32(s: &[u8]) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "6e0b680f07db1d08c712950556890a547197dbe1f9d782c295d1fe7f62d2145a";

    /// What repo-add 6.0.2 wrote for a test package, in its order.
    fn real() -> String {
        format!(
            "%FILENAME%\nfoo-1.0-1-x86_64.pkg.tar.zst\n\n%NAME%\nfoo\n\n%BASE%\nfoo\n\n\
             %VERSION%\n1.0-1\n\n%DESC%\nx\n\n%CSIZE%\n1340\n\n%ISIZE%\n1000\n\n\
             %MD5SUM%\na0b1d3a12ecc534db0fd1ae30253bb60\n\n%SHA256SUM%\n{SHA}\n\n\
             %URL%\nhttp://x\n\n%LICENSE%\nGPL\n\n%ARCH%\nx86_64\n\n\
             %BUILDDATE%\n1700000000\n\n%PACKAGER%\nt <t@x>\n\n\
             %DEPENDS%\nglibc\nzlib>=1.2\n\n"
        )
    }

    fn sha() -> [u8; 32] {
        hex32(SHA.as_bytes()).unwrap()
    }

    #[test]
    fn reads_what_repo_add_writes() {
        let text = real();
        let d = parse_desc(text.as_bytes()).unwrap();
        assert_eq!(
            d,
            Desc {
                filename: "foo-1.0-1-x86_64.pkg.tar.zst",
                csize: 1340,
                sha256: Some(sha()),
                name: Some("foo"),
                version: Some("1.0-1"),
                arch: Some("x86_64"),
            }
        );
        assert_eq!(sha()[0], 0x6e);
        assert_eq!(sha()[31], 0x5a);
        // CRLF, no final blank line, upper-case hex, extra blank lines, a PGPSIG.
        let crlf = text.replace('\n', "\r\n");
        let variants = [
            crlf.as_str(),
            text.trim_end(),
            &text.replace(SHA, &SHA.to_uppercase()),
            &text.replace("\n\n", "\n\n\n\n"),
            &format!("{text}%PGPSIG%\niQEzBAABCAAdFiEE\n\n"),
        ];
        for v in variants {
            assert_eq!(parse_desc(v.as_bytes()), Ok(d), "{v:?}");
        }
    }

    #[test]
    fn only_what_is_required() {
        let d = parse_desc(b"%CSIZE%\n0\n\n%FILENAME%\na-1-1-any.pkg.tar\n").unwrap();
        assert_eq!(
            (d.filename, d.csize, d.sha256),
            ("a-1-1-any.pkg.tar", 0, None)
        );
        assert_eq!((d.name, d.version, d.arch), (None, None, None));
        let max = format!("%FILENAME%\na\n\n%CSIZE%\n{}\n", u64::MAX);
        assert_eq!(parse_desc(max.as_bytes()).map(|d| d.csize), Ok(u64::MAX));
    }

    #[test]
    fn hostile_descs() {
        let base = "%FILENAME%\na-1-1-any.pkg.tar.zst\n\n%CSIZE%\n10\n\n";
        let many_keys: String = (0..MAX_DESC_KEYS)
            .map(|i| format!("%K{i}%\nv\n\n"))
            .collect();
        let cases: Vec<(String, DescError)> = vec![
            (String::new(), DescError::MissingFilename),
            ("\n\n\n".into(), DescError::MissingFilename),
            ("%CSIZE%\n10\n".into(), DescError::MissingFilename),
            ("%FILENAME%\na.pkg.tar\n".into(), DescError::MissingCsize),
            (
                format!("{base}%FILENAME%\nb.pkg.tar\n"),
                DescError::DuplicateKey { line: 7 },
            ),
            (
                format!("{base}%CSIZE%\n10\n"),
                DescError::DuplicateKey { line: 7 },
            ),
            (
                format!("{base}%DEPENDS%\na\n\n%DEPENDS%\nb\n"),
                DescError::DuplicateKey { line: 10 },
            ),
            (
                format!("{base}{many_keys}"),
                DescError::TooManyKeys {
                    line: 7 + 3 * (MAX_DESC_KEYS - 2),
                },
            ),
            (format!("{base}FILENAME\n"), DescError::NotAKey { line: 7 }),
            (format!("{base}%%\n"), DescError::NotAKey { line: 7 }),
            (format!("{base}%name%\nx\n"), DescError::NotAKey { line: 7 }),
            (format!("{base}%NAME\n"), DescError::NotAKey { line: 7 }),
            (format!("{base} %NAME%\n"), DescError::NotAKey { line: 7 }),
            (
                "value before any key\n".into(),
                DescError::NotAKey { line: 1 },
            ),
            (
                "%FILENAME%\n\n%CSIZE%\n10\n".into(),
                DescError::ValueCount { line: 1 },
            ),
            (
                "%FILENAME%\na.pkg.tar\nb.pkg.tar\n\n%CSIZE%\n1\n".into(),
                DescError::ValueCount { line: 1 },
            ),
            ("%FILENAME%\n".into(), DescError::ValueCount { line: 1 }),
            (
                "%FILENAME%\na.pkg.tar\n\n%CSIZE%\n1\n2\n".into(),
                DescError::ValueCount { line: 4 },
            ),
            (
                "%FILENAME%\n../../etc/passwd\n\n%CSIZE%\n1\n".into(),
                DescError::BadFilename { line: 2 },
            ),
            (
                "%FILENAME%\na b.pkg.tar\n\n%CSIZE%\n1\n".into(),
                DescError::BadFilename { line: 2 },
            ),
            (
                "%FILENAME%\n.hidden\n\n%CSIZE%\n1\n".into(),
                DescError::BadFilename { line: 2 },
            ),
            (
                "%FILENAME%\na-1-1-any.pkg.tar.zst.sig\n\n%CSIZE%\n1\n".into(),
                DescError::BadFilename { line: 2 },
            ),
            (
                format!("%FILENAME%\n{}\n\n%CSIZE%\n1\n", "a".repeat(256)),
                DescError::BadFilename { line: 2 },
            ),
            (
                "%FILENAME%\na\u{e9}.pkg\n\n%CSIZE%\n1\n".into(),
                DescError::BadFilename { line: 2 },
            ),
            (
                "%FILENAME%\na.pkg\n\n%CSIZE%\n-1\n".into(),
                DescError::BadCsize { line: 5 },
            ),
            (
                "%FILENAME%\na.pkg\n\n%CSIZE%\n+1\n".into(),
                DescError::BadCsize { line: 5 },
            ),
            (
                "%FILENAME%\na.pkg\n\n%CSIZE%\n1 \n".into(),
                DescError::BadCsize { line: 5 },
            ),
            (
                "%FILENAME%\na.pkg\n\n%CSIZE%\n0x10\n".into(),
                DescError::BadCsize { line: 5 },
            ),
            (
                "%FILENAME%\na.pkg\n\n%CSIZE%\n18446744073709551616\n".into(),
                DescError::BadCsize { line: 5 },
            ),
            (
                "%FILENAME%\na.pkg\n\n%CSIZE%\n000000000000000000001\n".into(),
                DescError::BadCsize { line: 5 },
            ),
            (
                format!("{base}%SHA256SUM%\n{}\n", &SHA[1..]),
                DescError::BadSha256 { line: 8 },
            ),
            (
                format!("{base}%SHA256SUM%\n{SHA}0\n"),
                DescError::BadSha256 { line: 8 },
            ),
            (
                format!("{base}%SHA256SUM%\n{}g\n", &SHA[1..]),
                DescError::BadSha256 { line: 8 },
            ),
            (
                format!("{base}%SHA256SUM%\n\n"),
                DescError::ValueCount { line: 7 },
            ),
        ];
        for (text, want) in &cases {
            assert_eq!(parse_desc(text.as_bytes()), Err(*want), "{text:?}");
            assert!(!want.to_string().is_empty());
        }
        // Non-UTF-8 where text is needed, and where it is not.
        let mut bad = base.as_bytes().to_vec();
        bad.extend_from_slice(b"%NAME%\n\xff\n\n");
        assert_eq!(parse_desc(&bad), Err(DescError::NotUtf8 { line: 8 }));
        let mut fine = base.as_bytes().to_vec();
        fine.extend_from_slice(b"%DESC%\n\xff\xfe caf\xe9\n\n");
        assert!(parse_desc(&fine).is_ok());
        let bad_name = b"%FILENAME%\n\xffa.pkg\n\n%CSIZE%\n1\n";
        assert_eq!(parse_desc(bad_name), Err(DescError::NotUtf8 { line: 2 }));
    }
}
