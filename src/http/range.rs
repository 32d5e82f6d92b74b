//! Single-range requests (RFC 9110 §14), pure.
//!
//! pacman resumes downloads with `Range: bytes=N-`; that, `N-M` and suffix `-N` are served.
//! Anything else (several ranges, another unit, odd syntax) is ignored and the whole file is
//! sent, which RFC 9110 §14.2 allows and which can never be used to make us do extra work.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeDecision {
    /// Serve the whole representation with 200 (no Range, or one we ignore).
    Full,
    /// Serve bytes `start..=end` with 206.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Decide how to answer a `Range` header value for a representation of `len` bytes.
///
/// `Partial` always has `start <= end < len`.
pub fn decide_range(header: Option<&str>, len: u64) -> RangeDecision {
    let Some(header) = header else {
        return RangeDecision::Full;
    };
    let Some((unit, spec)) = header.split_once('=') else {
        return RangeDecision::Full;
    };
    // Range units are case-insensitive (RFC 9110 §14.1).
    if !trim_ows(unit).eq_ignore_ascii_case("bytes") {
        return RangeDecision::Full;
    }
    let spec = trim_ows(spec);
    if spec.contains(',') {
        return RangeDecision::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeDecision::Full;
    };
    match (first, last) {
        ("", "") => RangeDecision::Full,
        // Suffix: the last N bytes.
        ("", n) => match parse_u64(n) {
            None => RangeDecision::Full,
            Some(0) => RangeDecision::Unsatisfiable,
            Some(_) if len == 0 => RangeDecision::Unsatisfiable,
            Some(n) => RangeDecision::Partial {
                start: len - n.min(len),
                end: len - 1,
            },
        },
        (first, last) => {
            let Some(start) = parse_u64(first) else {
                return RangeDecision::Full;
            };
            let end = if last.is_empty() {
                u64::MAX
            } else {
                match parse_u64(last) {
                    Some(end) if end >= start => end,
                    // Overflow, junk, or last < first: invalid, so ignored (§14.1.1).
                    _ => return RangeDecision::Full,
                }
            };
            if start >= len {
                return RangeDecision::Unsatisfiable;
            }
            RangeDecision::Partial {
                start,
                end: end.min(len - 1),
            }
        }
    }
}

/// Non-empty ASCII digits that fit in a u64 (`str::parse` would also take a `+`).
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

#[cfg(test)]
mod tests {
    use super::RangeDecision::*;
    use super::*;

    const MAX: u64 = u64::MAX;

    #[test]
    fn table() {
        let p = |start, end| Partial { start, end };
        let cases: &[(Option<&str>, u64, RangeDecision)] = &[
            (None, 100, Full),
            (None, 0, Full),
            // N-
            (Some("bytes=0-"), 100, p(0, 99)),
            (Some("bytes=50-"), 100, p(50, 99)),
            (Some("bytes=99-"), 100, p(99, 99)),
            (Some("bytes=100-"), 100, Unsatisfiable),
            (Some("bytes=101-"), 100, Unsatisfiable),
            (Some("bytes=0-"), 0, Unsatisfiable),
            (Some("bytes=0-"), 1, p(0, 0)),
            (Some("bytes=007-"), 100, p(7, 99)),
            // N-M
            (Some("bytes=0-0"), 100, p(0, 0)),
            (Some("bytes=0-49"), 100, p(0, 49)),
            (Some("bytes=10-20"), 100, p(10, 20)),
            (Some("bytes=10-99"), 100, p(10, 99)),
            (Some("bytes=10-100"), 100, p(10, 99)),
            (Some("bytes=10-1000000"), 100, p(10, 99)),
            (Some("bytes=100-200"), 100, Unsatisfiable),
            (Some("bytes=0-0"), 0, Unsatisfiable),
            (Some("bytes=20-10"), 100, Full),
            (Some("bytes=200-100"), 100, Full),
            (Some("bytes=5-5"), 5, Unsatisfiable),
            // -N
            (Some("bytes=-1"), 100, p(99, 99)),
            (Some("bytes=-10"), 100, p(90, 99)),
            (Some("bytes=-100"), 100, p(0, 99)),
            (Some("bytes=-1000"), 100, p(0, 99)),
            (Some("bytes=-0"), 100, Unsatisfiable),
            (Some("bytes=-000"), 100, Unsatisfiable),
            (Some("bytes=-1"), 0, Unsatisfiable),
            (Some("bytes=-0"), 0, Unsatisfiable),
            (Some("bytes=-1"), 1, p(0, 0)),
            // whitespace and case
            (Some("  bytes=0-9  "), 100, p(0, 9)),
            (Some("\tbytes=0-9\t"), 100, p(0, 9)),
            (Some("bytes = 0-9"), 100, p(0, 9)),
            (Some("bytes= 0-9 "), 100, p(0, 9)),
            (Some("Bytes=0-9"), 100, p(0, 9)),
            (Some("BYTES=0-9"), 100, p(0, 9)),
            (Some("bytes=0 - 9"), 100, Full),
            (Some("bytes=0 -9"), 100, Full),
            (Some("bytes=- 9"), 100, Full),
            (Some("bytes=\n0-9"), 100, Full),
            // other units, several ranges, junk
            (Some(""), 100, Full),
            (Some("bytes"), 100, Full),
            (Some("bytes="), 100, Full),
            (Some("bytes=-"), 100, Full),
            (Some("bytes=--1"), 100, Full),
            (Some("bytes=1--2"), 100, Full),
            (Some("bytes=1-2-3"), 100, Full),
            (Some("bytes=0-1,2-3"), 100, Full),
            (Some("bytes=0-1, 5-"), 100, Full),
            (Some("bytes=0-1,"), 100, Full),
            (Some("bytes=,0-1"), 100, Full),
            (Some("bytes=0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1"), 100, Full),
            (Some("items=0-9"), 100, Full),
            (Some("bytes0-9"), 100, Full),
            (Some("bits=0-9"), 100, Full),
            (Some("byte=0-9"), 100, Full),
            (Some("bytes==0-9"), 100, Full),
            (Some("=0-9"), 100, Full),
            (Some("bytes=+1-2"), 100, Full),
            (Some("bytes=1-+2"), 100, Full),
            (Some("bytes=-+2"), 100, Full),
            (Some("bytes=0x10-"), 100, Full),
            (Some("bytes=1.5-"), 100, Full),
            (Some("bytes=a-b"), 100, Full),
            (Some("bytes=\u{661}-"), 100, Full),
            (Some("bytes=１-"), 100, Full),
            (Some("bytes=0-9\0"), 100, Full),
            (Some("bytes=0-9;x"), 100, Full),
            // big numbers and overflow
            (Some("bytes=0-18446744073709551615"), 100, p(0, 99)),
            (Some("bytes=18446744073709551615-"), 100, Unsatisfiable),
            (
                Some("bytes=18446744073709551614-"),
                MAX,
                p(MAX - 1, MAX - 1),
            ),
            (Some("bytes=0-"), MAX, p(0, MAX - 1)),
            (Some("bytes=-18446744073709551615"), MAX, p(0, MAX - 1)),
            (Some("bytes=-18446744073709551615"), 10, p(0, 9)),
            (Some("bytes=18446744073709551616-"), 100, Full),
            (Some("bytes=0-18446744073709551616"), 100, Full),
            (Some("bytes=-18446744073709551616"), 100, Full),
            (Some("bytes=99999999999999999999999999999-"), 100, Full),
            (Some("bytes=-99999999999999999999999999999"), 100, Full),
        ];
        for &(header, len, want) in cases {
            assert_eq!(decide_range(header, len), want, "{header:?} len {len}");
        }
    }

    #[test]
    fn partial_is_always_inside() {
        let headers = [
            "bytes=0-",
            "bytes=1-",
            "bytes=5-",
            "bytes=0-0",
            "bytes=0-5",
            "bytes=3-7",
            "bytes=-1",
            "bytes=-3",
            "bytes=-100",
            "bytes=9-",
            "bytes=10-",
        ];
        for len in [0, 1, 2, 5, 9, 10, 11, MAX - 1, MAX] {
            for h in headers {
                if let Partial { start, end } = decide_range(Some(h), len) {
                    assert!(start <= end && end < len, "{h} len {len}: {start}..={end}");
                }
            }
        }
    }
}
