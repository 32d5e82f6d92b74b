//! HTTP dates (RFC 9110 §5.6.7), pure.

/// `Sun, 06 Nov 1994 08:49:37 GMT` for seconds since the Unix epoch.
pub fn format_http_date(unix_secs: u64) -> String {
    let _ = unix_secs;
    todo!()
}

/// Seconds since the Unix epoch from IMF-fixdate, RFC 850 or asctime form; None if invalid.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let _ = s;
    todo!()
}
