//! Logging to stderr (I/O): one line per request, errors always, detail with `--verbose`.
//!
//! Anything that came from the network is escaped before it is printed, so a hostile
//! request cannot forge log lines or send escape sequences to a terminal.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::config::cli::Verbosity;
use crate::limits::MAX_LOGGED_PATH;

static LEVEL: AtomicU8 = AtomicU8::new(1);

pub fn set_verbosity(v: Verbosity) {
    let level = match v {
        Verbosity::Quiet => 0,
        Verbosity::Normal => 1,
        Verbosity::Verbose => 2,
    };
    LEVEL.store(level, Ordering::Relaxed);
}

/// Per-request lines are printed.
pub fn requests_enabled() -> bool {
    LEVEL.load(Ordering::Relaxed) >= 1
}

/// Lookup detail is printed.
pub fn verbose_enabled() -> bool {
    LEVEL.load(Ordering::Relaxed) >= 2
}

/// Write one whole line to stderr (a single write, so concurrent lines do not interleave).
pub fn line(msg: std::fmt::Arguments<'_>) {
    let mut s = String::with_capacity(128);
    s.push_str("pacserve: ");
    let _ = s.write_fmt(msg);
    s.push('\n');
    let _ = std::io::stderr().lock().write_all(s.as_bytes());
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::sys::log::line(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => {
        if $crate::sys::log::requests_enabled() { $crate::sys::log::line(format_args!($($arg)*)) }
    };
}

#[macro_export]
macro_rules! verbose {
    ($($arg:tt)*) => {
        if $crate::sys::log::verbose_enabled() { $crate::sys::log::line(format_args!($($arg)*)) }
    };
}

/// Bytes from the network made safe to print: printable ASCII stays, everything else
/// (control bytes, spaces, quotes, backslash, non-ASCII) becomes `\xNN`; truncated at
/// `MAX_LOGGED_PATH` bytes of input with a trailing `...`.
pub fn escape(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(MAX_LOGGED_PATH)];
    let mut out = String::with_capacity(shown.len() + 8);
    for &b in shown {
        if b.is_ascii_graphic() && b != b'\\' && b != b'"' {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    if bytes.len() > shown.len() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_hostile_bytes() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"/request/core/x86_64/a.pkg.tar.zst",
                "/request/core/x86_64/a.pkg.tar.zst",
            ),
            (b"/a\r\nFAKE 200", "/a\\x0d\\x0aFAKE\\x20200"),
            (b"\x1b[31mred", "\\x1b[31mred"),
            (b"quote\"back\\", "quote\\x22back\\x5c"),
            (b"\xff\x00", "\\xff\\x00"),
            (b"", ""),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), *want, "{input:?}");
        }
    }

    #[test]
    fn truncates_long_input() {
        let long = vec![b'a'; MAX_LOGGED_PATH + 10];
        let shown = escape(&long);
        assert!(shown.ends_with("..."));
        assert_eq!(shown.len(), MAX_LOGGED_PATH + 3);
    }
}
