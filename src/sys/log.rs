//! Logging to stderr (I/O): one line per request, errors always, detail with `--verbose`.
//!
//! Anything that came from the network is escaped before it is printed, so a hostile
//! request cannot forge log lines or send escape sequences to a terminal.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

use std::time::Instant;

use crate::limits::{LOG_BURST, LOG_WINDOW, MAX_LOGGED_PATH};

/// How much is logged (`--quiet`, default, `--verbose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Only errors.
    Quiet,
    /// One line per request.
    Normal,
    /// Also lookup detail.
    Verbose,
}

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

/// Repeated lines from one place in the code, limited: at most [`LOG_BURST`] in each
/// [`LOG_WINDOW`]; the rest are counted, and the first line after the window says how many
/// were left out ("… and 3412 more like it in the last 10 s"). A flood of refused connections
/// or failing mirrors then costs a few lines, not a disk.
pub struct Throttle {
    state: std::sync::Mutex<(Option<Instant>, u32, u64)>,
}

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle {
            state: std::sync::Mutex::new((None, 0, 0)),
        }
    }

    /// Whether a line may be printed at `now`; when it may, also how many were left out in
    /// the window that ended.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = crate::lock(&self.state);
        let (start, printed, dropped) = &mut *state;
        let window_over = start.is_none_or(|s| now.saturating_duration_since(s) >= LOG_WINDOW);
        if window_over {
            let left_out = *dropped;
            *state = (Some(now), 1, 0);
            return Some(left_out);
        }
        if *printed < LOG_BURST {
            *printed += 1;
            return Some(0);
        }
        *dropped += 1;
        None
    }
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle::new()
    }
}

/// Print an error line through a `static` [`Throttle`] of the call site.
#[macro_export]
macro_rules! error_throttled {
    ($throttle:expr, $($arg:tt)*) => {
        if let Some(left_out) = $throttle.admit(std::time::Instant::now()) {
            if left_out > 0 {
                $crate::sys::log::line(format_args!(
                    "... and {left_out} more like the next in the last {} s",
                    $crate::limits::LOG_WINDOW.as_secs()
                ));
            }
            $crate::sys::log::line(format_args!($($arg)*));
        }
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
    fn throttle_lets_a_burst_through_then_counts() {
        let t = Throttle::new();
        let t0 = Instant::now();
        for _ in 0..LOG_BURST {
            assert_eq!(t.admit(t0), Some(0));
        }
        for _ in 0..3412 {
            assert_eq!(t.admit(t0), None);
        }
        assert_eq!(
            t.admit(t0 + LOG_WINDOW),
            Some(3412),
            "the next window says how many"
        );
        assert_eq!(t.admit(t0 + LOG_WINDOW), Some(0));
    }

    #[test]
    fn truncates_long_input() {
        let long = vec![b'a'; MAX_LOGGED_PATH + 10];
        let shown = escape(&long);
        assert!(shown.ends_with("..."));
        assert_eq!(shown.len(), MAX_LOGGED_PATH + 3);
    }
}
