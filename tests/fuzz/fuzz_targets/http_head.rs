//! Every pure HTTP parser on arbitrary bytes: no panics, and the invariants the server and
//! client rely on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacserve::http::date::{MAX_HTTP_DATE, format_http_date, parse_http_date};
use pacserve::http::parse::{Parsed, parse_request, parse_response};
use pacserve::http::range::{RangeDecision, decide_range};
use pacserve::http::url::{parse_url, points_at_self};
use pacserve::limits::MAX_HEAD_BYTES;

fuzz_target!(|data: &[u8]| {
    // Raw bytes, and the same bytes behind a valid start line so that the header-field code
    // is reached without the fuzzer first having to discover `HTTP/1.1`.
    request(data);
    response(data);
    request(&[b"GET / HTTP/1.1\r\n".as_slice(), data].concat());
    response(&[b"HTTP/1.1 200 OK\r\n".as_slice(), data].concat());

    let text = String::from_utf8_lossy(data);
    range(data, &text);
    range(data, &format!("bytes={text}"));
    date(data, &text);
    url(&text);
    url(&format!("http://{text}"));
});

/// `s` borrows from `data`.
fn inside(data: &[u8], s: &str) -> bool {
    let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
    let p = s.as_ptr() as usize;
    s.is_empty() || (start <= p && p + s.len() <= end)
}

/// Offsets at which to cut `data` when checking prefixes: all of them for short inputs, a
/// sample (always with the edges around `len`) for long ones, to keep the fuzzer fast.
fn cuts(n: usize, len: Option<usize>) -> impl Iterator<Item = usize> {
    let step = (n / 64).max(1);
    let edges = len.into_iter().flat_map(|l| [l.saturating_sub(1), l]);
    (0..n).step_by(step).chain(edges).filter(move |&k| k <= n)
}

fn request(data: &[u8]) {
    let full = parse_request(data);
    match &full {
        Ok(Parsed::Complete { value, len }) => {
            assert!(*len <= data.len() && *len <= MAX_HEAD_BYTES);
            for s in [value.method, value.target] {
                assert!(!s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b)));
                assert!(inside(data, s));
            }
            if let Some(ua) = value.user_agent {
                let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
                let p = ua.as_ptr() as usize;
                assert!(ua.is_empty() || (start <= p && p + ua.len() <= end));
            }
            let fields = [
                value.host,
                value.range,
                value.if_range,
                value.if_modified_since,
            ];
            for s in fields.into_iter().flatten() {
                assert!(inside(data, s));
                assert!(!s.starts_with([' ', '\t']) && !s.ends_with([' ', '\t']));
                assert!(!s.contains(['\r', '\n', '\0']));
            }
            assert!(value.minor_version <= 1);
            if value.keep_alive() {
                assert!(!value.connection_close);
            }
            // Only the head's own bytes decide it.
            assert_eq!(parse_request(&data[..*len]), full);
        }
        Ok(Parsed::Partial) => assert!(data.len() < MAX_HEAD_BYTES),
        Err(e) => assert!(matches!(e.status(), 400 | 414 | 431 | 505) && !e.reason().is_empty()),
    }
    let len = match full {
        Ok(Parsed::Complete { len, .. }) => Some(len),
        _ => None,
    };
    for k in cuts(data.len(), len) {
        let r = parse_request(&data[..k]);
        assert!(
            r == Ok(Parsed::Partial) || r == full,
            "request prefix {k}: {r:?} vs {full:?}"
        );
    }
}

fn response(data: &[u8]) {
    let full = parse_response(data);
    match &full {
        Ok(Parsed::Complete { value, len }) => {
            assert!(*len <= data.len() && *len <= MAX_HEAD_BYTES);
            assert!((100..=999).contains(&value.status));
            assert!(value.minor_version <= 1);
            for s in [value.location, value.last_modified].into_iter().flatten() {
                assert!(inside(data, s));
                assert!(!s.contains(['\r', '\n', '\0']));
            }
            assert_eq!(parse_response(&data[..*len]), full);
        }
        Ok(Parsed::Partial) => assert!(data.len() < MAX_HEAD_BYTES),
        Err(_) => {}
    }
    let len = match full {
        Ok(Parsed::Complete { len, .. }) => Some(len),
        _ => None,
    };
    for k in cuts(data.len(), len) {
        let r = parse_response(&data[..k]);
        assert!(
            r == Ok(Parsed::Partial) || r == full,
            "response prefix {k}: {r:?} vs {full:?}"
        );
    }
}

fn range(data: &[u8], text: &str) {
    let mut word = [0u8; 8];
    let n = data.len().min(8);
    word[..n].copy_from_slice(&data[..n]);
    let lens = [
        0,
        1,
        2,
        100,
        data.len() as u64,
        u64::from_le_bytes(word),
        u64::MAX,
    ];
    for len in lens {
        for header in [Some(text), text.split_once('\n').map(|(a, _)| a), None] {
            match decide_range(header, len) {
                RangeDecision::Partial { start, end } => assert!(start <= end && end < len),
                RangeDecision::Unsatisfiable | RangeDecision::Full => {}
            }
        }
    }
}

fn date(data: &[u8], text: &str) {
    if let Some(secs) = parse_http_date(text) {
        let back = format_http_date(secs);
        assert_eq!(
            parse_http_date(&back),
            Some(secs),
            "{text:?} -> {secs} -> {back:?}"
        );
    }

    let mut word = [0u8; 8];
    let n = data.len().min(8);
    word[..n].copy_from_slice(&data[..n]);
    let raw = u64::from_le_bytes(word);
    let imf = format_http_date(raw);
    assert_eq!(imf.len(), 29);
    // Beyond year 9999 the formatter saturates; stay in range for the cross-checks.
    let secs = raw % (MAX_HTTP_DATE + 1);
    let imf = format_http_date(secs);
    assert_eq!(parse_http_date(&imf), Some(secs), "{imf}");

    // The same instant in the two obsolete forms parses to the same value.
    let (wday, day, month) = (&imf[..3], &imf[5..7], &imf[8..11]);
    let (year, time) = (&imf[12..16], &imf[17..25]);
    let asctime = format!(
        "{wday} {month} {:>2} {time} {year}",
        day.trim_start_matches('0')
    );
    assert_eq!(parse_http_date(&asctime), Some(secs), "{asctime}");
    if year < "2070" {
        let long = [
            "Sunday",
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
        ]
        .into_iter()
        .find(|l| l.starts_with(wday))
        .expect("format_http_date writes an English day name");
        let rfc850 = format!("{long}, {day}-{month}-{} {time} GMT", &year[2..]);
        assert_eq!(parse_http_date(&rfc850), Some(secs), "{rfc850}");
    }

    // Near misses: a valid date with bytes from the input written over it.
    for form in [imf, asctime] {
        let mut bytes = form.into_bytes();
        for pair in data.get(8..).unwrap_or_default().chunks_exact(2).take(4) {
            let at = usize::from(pair[0]) % bytes.len();
            bytes[at] = pair[1];
        }
        let mutated = String::from_utf8_lossy(&bytes);
        if let Some(secs) = parse_http_date(&mutated) {
            assert_eq!(parse_http_date(&format_http_date(secs)), Some(secs));
        }
    }
}

fn url(text: &str) {
    for s in [text, text.trim()] {
        let Ok(u) = parse_url(s) else { continue };
        assert!(!u.host.is_empty() && u.port != 0 && u.path.starts_with('/'));
        assert!(!u.path.contains('#'));
        assert_eq!(u.host, u.host.to_ascii_lowercase());
        let shown = u.to_string();
        assert_eq!(parse_url(&shown).as_ref(), Ok(&u), "{s:?} -> {shown:?}");
        let _ = u.authority();
        // A name equal to our hostname is us; an IP literal only when it is a local address.
        let named = points_at_self(&u, u.port, &[], Some(&u.host), &[]);
        assert!(named || u.host.parse::<std::net::IpAddr>().is_ok());
        assert!(!points_at_self(
            &u,
            u.port.wrapping_add(1),
            &[],
            Some(&u.host),
            &[]
        ));
    }
}
