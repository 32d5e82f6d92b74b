//! pacman's version order (`vercmp`), pure: `[EPOCH:]PKGVER[-PKGREL]`, the epoch first (an
//! absent one is 0), then the version, then the release when both have one. Versions are
//! compared segment by segment, as libalpm does (rpm's algorithm): runs of digits and runs of
//! letters, separated by anything else; a numeric run beats a letter run, a longer number
//! beats a shorter one, letters compare as bytes, and of two versions equal up to where one
//! ends, the one that goes on with letters is the older (`1.0rc < 1.0`) and the one that goes
//! on with digits the newer (`1.0 < 1.0.1`).
//!
//! The order is checked against pacman 7.1's own `vercmp`: its test script's cases and
//! generated versions (`tests/vercmp.rs`).

use std::cmp::Ordering;

/// How pacman orders versions `a` and `b` (what `vercmp a b` prints as -1, 0, 1).
pub fn vercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (ea, va, ra) = split_evr(a);
    let (eb, vb, rb) = split_evr(b);
    segments_cmp(ea, eb)
        .then_with(|| segments_cmp(va, vb))
        .then_with(|| match (ra, rb) {
            (Some(ra), Some(rb)) => segments_cmp(ra, rb),
            _ => Ordering::Equal,
        })
}

/// `[EPOCH:]VERSION[-RELEASE]`: the epoch is the leading digits when a `:` follows them ("0"
/// when absent or empty); the release is what follows the last `-` after the epoch.
fn split_evr(s: &str) -> (&str, &str, Option<&str>) {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (epoch, rest) = match s.as_bytes().get(digits) {
        Some(b':') => {
            let e = &s[..digits];
            (if e.is_empty() { "0" } else { e }, &s[digits + 1..])
        }
        _ => ("0", s),
    };
    // The last `-` (libalpm searches from the end of the epoch's digits, which holds none).
    match rest.rfind('-') {
        Some(i) => (epoch, &rest[..i], Some(&rest[i + 1..])),
        None => (epoch, rest, None),
    }
}

/// rpm's segment comparison of two version strings.
fn segments_cmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        // Skip the separators; runs of different lengths decide.
        let (si, sj) = (i, j);
        while i < a.len() && !a[i].is_ascii_alphanumeric() {
            i += 1;
        }
        while j < b.len() && !b[j].is_ascii_alphanumeric() {
            j += 1;
        }
        if i == a.len() || j == b.len() {
            break;
        }
        if i - si != j - sj {
            return (i - si).cmp(&(j - sj));
        }
        // One run of digits, or of letters, as the first string has at this point.
        let numeric = a[i].is_ascii_digit();
        let run = |s: &[u8], from: usize| {
            let len = s[from..]
                .iter()
                .take_while(|c| {
                    if numeric {
                        c.is_ascii_digit()
                    } else {
                        c.is_ascii_alphabetic()
                    }
                })
                .count();
            from + len
        };
        let (ei, ej) = (run(a, i), run(b, j));
        if ej == j {
            // The second has the other kind here: a number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut x, mut y) = (&a[i..ei], &b[j..ej]);
        if numeric {
            let zeros = |s: &[u8]| s.iter().take_while(|c| **c == b'0').count();
            x = &x[zeros(x)..];
            y = &y[zeros(y)..];
            if x.len() != y.len() {
                return x.len().cmp(&y.len());
            }
        }
        match x.cmp(y) {
            Ordering::Equal => {}
            other => return other,
        }
        (i, j) = (ei, ej);
    }
    let (rest_a, rest_b) = (&a[i.min(a.len())..], &b[j.min(b.len())..]);
    match (rest_a.first(), rest_b.first()) {
        (None, None) => Ordering::Equal,
        // What is left decides: letters left over are older than nothing, anything else newer.
        (None, Some(c)) if !c.is_ascii_alphabetic() => Ordering::Less,
        (Some(c), _) if c.is_ascii_alphabetic() => Ordering::Less,
        _ => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn splits_epoch_version_release() {
        assert_eq!(split_evr("1.0-1"), ("0", "1.0", Some("1")));
        assert_eq!(split_evr("2:1.0-1"), ("2", "1.0", Some("1")));
        assert_eq!(split_evr(":1.0"), ("0", "1.0", None));
        assert_eq!(split_evr("1.0"), ("0", "1.0", None));
        assert_eq!(split_evr("1.0-2-3"), ("0", "1.0-2", Some("3")));
        assert_eq!(split_evr("a:1.0"), ("0", "a:1.0", None));
    }

    #[test]
    fn orders_like_pacman() {
        // A few of each kind here; pacman's own cases and generated ones are checked against
        // its vercmp binary in tests/vercmp.rs.
        let cases: &[(&str, &str, Ordering)] = &[
            ("1.0", "1.0", Equal),
            ("1.0.1", "1.0", Greater),
            ("1.0-1", "1.0-2", Less),
            ("1.0", "1.0-5", Equal),
            ("1.0rc1", "1.0", Less),
            ("1.0a", "1.0alpha", Less),
            ("1.0.a", "1.0", Greater),
            ("2.0", "2_0", Equal),
            ("1:0.9-1", "1.0-1", Greater),
            ("0:1.0", "1.0", Equal),
            ("1.010", "1.9", Greater),
            ("1.0001", "1.1", Equal),
            ("1..0", "1.0", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(vercmp(a, b), *want, "vercmp {a} {b}");
            assert_eq!(vercmp(b, a), want.reverse(), "vercmp {b} {a}");
        }
    }
}
