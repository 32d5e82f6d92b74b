//! Pure HTTP/1.1 head parsing: bytes in; Complete / Partial / error out. No I/O, no allocation.
//!
//! The parsers scan left to right and report the first problem they meet, so the answer for a
//! buffer depends only on the bytes up to the point where it was decided:
//!
//! - `Partial` means the bytes so far are a valid prefix of a head and within the limits; a
//!   buffer of `MAX_HEAD_BYTES` bytes is never `Partial`, so a reader with a buffer that size
//!   always gets an answer.
//! - An error for a prefix is the same error for every longer input, and `Complete` for a
//!   prefix is the same `Complete` (same value, same `len`) for every longer input.
//!
//! Line endings may be CRLF or a bare LF (RFC 9112 §2.2); a bare CR anywhere else is rejected.

use crate::limits::{MAX_HEAD_BYTES, MAX_HEADERS, MAX_LEADING_EMPTY_LINES, MAX_REQUEST_LINE};

/// The outcome of feeding bytes to a parser: a whole head, or "need more bytes" (not an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<T> {
    /// A complete head; `len` is the number of bytes it took, including the blank line.
    Complete { value: T, len: usize },
    /// The bytes so far are a valid prefix; read more.
    Partial,
}

impl<T> Parsed<T> {
    /// The same verdict about the same bytes, with the head turned into something else (an
    /// owned copy, say, that outlives the buffer).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Parsed<U> {
        match self {
            Parsed::Complete { value, len } => Parsed::Complete {
                value: f(value),
                len,
            },
            Parsed::Partial => Parsed::Partial,
        }
    }
}

/// Why a head was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// No end of the request line within `MAX_REQUEST_LINE` bytes.
    RequestLineTooLong,
    /// No end of the head within `MAX_HEAD_BYTES` bytes.
    HeadTooLarge,
    /// More than `MAX_HEADERS` header fields.
    TooManyHeaders,
    /// Malformed request or status line.
    BadStartLine,
    /// An HTTP version other than 1.0 or 1.1.
    UnsupportedVersion,
    /// Malformed header field (bad name, control byte in value, obsolete line folding).
    BadHeader,
    /// Unparseable or conflicting Content-Length.
    BadContentLength,
    /// The connection ended in the middle of a head (never returned by the parsers, which
    /// only see bytes; the connection that saw the end says so).
    Incomplete,
}

impl ParseError {
    /// The status a server should answer with before it closes the connection.
    pub fn status(self) -> u16 {
        match self {
            ParseError::RequestLineTooLong => 414,
            ParseError::HeadTooLarge | ParseError::TooManyHeaders => 431,
            ParseError::UnsupportedVersion => 505,
            ParseError::BadStartLine
            | ParseError::BadHeader
            | ParseError::BadContentLength
            | ParseError::Incomplete => 400,
        }
    }

    /// Short human text for logs and error bodies.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::RequestLineTooLong => "request line too long",
            ParseError::HeadTooLarge => "head too large",
            ParseError::TooManyHeaders => "too many header fields",
            ParseError::BadStartLine => "malformed start line",
            ParseError::UnsupportedVersion => "unsupported HTTP version",
            ParseError::BadHeader => "malformed header field",
            ParseError::BadContentLength => "bad Content-Length",
            ParseError::Incomplete => "connection ended inside the request head",
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ParseError {}

/// A parsed request head; every field borrows from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub host: Option<&'a str>,
    /// Opaque bytes (RFC 9110 §5.5: a field value is octets; only logged and compared).
    pub user_agent: Option<&'a [u8]>,
    /// An `X-Pacserve-Hop` field: the request comes from another pacserve.
    pub pacserve_hop: bool,
    /// The `X-Pacserve-Auth` field of a signed request (at most one).
    pub pacserve_auth: Option<&'a str>,
    pub range: Option<&'a str>,
    pub if_range: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    /// The entity tags of `If-None-Match` (a listing's validator), as sent.
    pub if_none_match: Option<&'a str>,
    /// `Connection` contains the `close` token.
    pub connection_close: bool,
    /// `Connection` contains the `keep-alive` token.
    pub connection_keep_alive: bool,
    pub content_length: Option<u64>,
    /// A `Transfer-Encoding` header was present (we accept no request bodies).
    pub transfer_encoding: bool,
}

impl RequestHead<'_> {
    /// Whether the connection may stay open after the response (RFC 9112 §9.3): HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive` and no `close`.
    pub fn keep_alive(&self) -> bool {
        if self.connection_close {
            return false;
        }
        self.minor_version >= 1 || self.connection_keep_alive
    }
}

/// A parsed response head (for the client side).
///
/// A response with `Transfer-Encoding` has `content_length: None` whatever Content-Length says
/// (RFC 9112 §6.3: Transfer-Encoding overrides it), so a client never trusts a length that the
/// sender did not frame the body with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    pub minor_version: u8,
    pub status: u16,
    pub content_length: Option<u64>,
    pub location: Option<&'a str>,
    pub last_modified: Option<&'a str>,
    pub connection_close: bool,
    /// `X-Pacserve-Sig` of a peer's answer: whether it also holds the `.sig`.
    pub pacserve_sig: Option<&'a str>,
    /// `X-Pacserve-Sha256` of a peer's answer: the SHA-256 of its copy, when it knows it.
    pub pacserve_sha256: Option<&'a str>,
    /// `ETag`: the validator of a peer's listing.
    pub etag: Option<&'a str>,
    /// `Content-Range` of a 206: which bytes of how many follow.
    pub content_range: Option<&'a str>,
}

/// Parse a request head from the start of `buf`.
///
/// Strict where leniency would let two parsers disagree about a request: a second Host,
/// Range, If-Range or If-Modified-Since field is BadHeader (a second User-Agent is ignored);
/// Content-Length must be digits, equal wherever it is repeated.
pub fn parse_request(buf: &[u8]) -> Result<Parsed<RequestHead<'_>>, ParseError> {
    // Stray empty lines before the request line (RFC 9112 §2.2).
    let mut pos = 0;
    let mut empty_lines = 0;
    loop {
        match &buf[pos..] {
            [] => return Ok(Parsed::Partial),
            [b'\r' | b'\n', ..] if empty_lines == MAX_LEADING_EMPTY_LINES => {
                return Err(ParseError::BadStartLine);
            }
            [b'\r'] => return Ok(Parsed::Partial),
            [b'\n', ..] => pos += 1,
            [b'\r', b'\n', ..] => pos += 2,
            _ => break,
        }
        empty_lines += 1;
    }

    let (limit, too_long) = if pos + MAX_REQUEST_LINE < MAX_HEAD_BYTES {
        (pos + MAX_REQUEST_LINE, ParseError::RequestLineTooLong)
    } else {
        (MAX_HEAD_BYTES, ParseError::HeadTooLarge)
    };
    let (line, next) = match next_line(buf, pos, limit) {
        Line::Complete { content, next } => (content, next),
        Line::Partial { content, at_limit } => {
            match content.split_last() {
                Some((b'\r', before)) => request_line(before, true)?,
                _ => request_line(content, false)?,
            };
            return if at_limit {
                Err(too_long)
            } else {
                Ok(Parsed::Partial)
            };
        }
    };
    let Some((method, target, minor_version)) = request_line(line, true)? else {
        unreachable!("a complete request line is either valid or an error")
    };

    let mut head = RequestHead {
        method,
        target,
        minor_version,
        host: None,
        user_agent: None,
        pacserve_hop: false,
        pacserve_auth: None,
        range: None,
        if_range: None,
        if_modified_since: None,
        if_none_match: None,
        connection_close: false,
        connection_keep_alive: false,
        content_length: None,
        transfer_encoding: false,
    };
    let fields = fields(buf, next, |name, value| {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("host") {
            once(&mut head.host, value)
        } else if is("user-agent") {
            // Only compared; a second one is odd but harmless, keep the first.
            head.user_agent.get_or_insert(value);
            Ok(())
        } else if is("x-pacserve-hop") {
            head.pacserve_hop = true;
            Ok(())
        } else if is("x-pacserve-auth") {
            once(&mut head.pacserve_auth, value)
        } else if is("range") {
            once(&mut head.range, value)
        } else if is("if-range") {
            once(&mut head.if_range, value)
        } else if is("if-modified-since") {
            once(&mut head.if_modified_since, value)
        } else if is("if-none-match") {
            once(&mut head.if_none_match, value)
        } else if is("connection") {
            connection(
                value,
                &mut head.connection_close,
                &mut head.connection_keep_alive,
            );
            Ok(())
        } else if is("content-length") {
            content_length(&mut head.content_length, value)
        } else if is("transfer-encoding") {
            head.transfer_encoding = true;
            Ok(())
        } else {
            Ok(())
        }
    })?;
    Ok(match fields {
        Some(len) => Parsed::Complete { value: head, len },
        None => Parsed::Partial,
    })
}

/// Parse a response head from the start of `buf`.
///
/// No leading empty lines are skipped. `connection_close` only reports the token: an
/// HTTP/1.0 response (`minor_version == 0`) also ends the connection unless the client asked
/// for and got keep-alive. A second Location is BadHeader; a second Last-Modified is ignored.
pub fn parse_response(buf: &[u8]) -> Result<Parsed<ResponseHead<'_>>, ParseError> {
    let (line, next) = match next_line(buf, 0, MAX_HEAD_BYTES) {
        Line::Complete { content, next } => (content, next),
        Line::Partial { content, at_limit } => {
            match content.split_last() {
                Some((b'\r', before)) => status_line(before, true)?,
                _ => status_line(content, false)?,
            };
            return if at_limit {
                Err(ParseError::HeadTooLarge)
            } else {
                Ok(Parsed::Partial)
            };
        }
    };
    let Some((minor_version, status)) = status_line(line, true)? else {
        unreachable!("a complete status line is either valid or an error")
    };

    let mut head = ResponseHead {
        minor_version,
        status,
        content_length: None,
        location: None,
        last_modified: None,
        connection_close: false,
        pacserve_sig: None,
        pacserve_sha256: None,
        etag: None,
        content_range: None,
    };
    let mut transfer_encoding = false;
    let fields = fields(buf, next, |name, value| {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("content-length") {
            content_length(&mut head.content_length, value)
        } else if is("location") {
            // Two different redirect targets: follow neither.
            once(&mut head.location, value)
        } else if is("last-modified") {
            if head.last_modified.is_none() {
                head.last_modified = Some(utf8(value)?);
            }
            Ok(())
        } else if is("connection") {
            let mut keep_alive = false;
            connection(value, &mut head.connection_close, &mut keep_alive);
            Ok(())
        } else if is("transfer-encoding") {
            transfer_encoding = true;
            Ok(())
        } else if is("x-pacserve-sig") {
            once(&mut head.pacserve_sig, value)
        } else if is("x-pacserve-sha256") {
            once(&mut head.pacserve_sha256, value)
        } else if is("etag") {
            once(&mut head.etag, value)
        } else if is("content-range") {
            once(&mut head.content_range, value)
        } else {
            Ok(())
        }
    })?;
    if transfer_encoding {
        head.content_length = None;
    }
    Ok(match fields {
        Some(len) => Parsed::Complete { value: head, len },
        None => Parsed::Partial,
    })
}

/// One line of the head, found by `next_line`.
enum Line<'a> {
    /// A line ended by LF before the limit; `content` without the CRLF or LF.
    Complete { content: &'a [u8], next: usize },
    /// No LF yet: `content` is everything from the line start (up to the limit), and
    /// `at_limit` says the limit was reached, so no LF can come in time.
    Partial { content: &'a [u8], at_limit: bool },
}

/// The line starting at `start`, which must end (LF included) before index `limit`.
fn next_line(buf: &[u8], start: usize, limit: usize) -> Line<'_> {
    let end = buf.len().min(limit);
    let window = buf.get(start..end).unwrap_or_default();
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let content = &window[..i];
            Line::Complete {
                content: content.strip_suffix(b"\r").unwrap_or(content),
                next: start + i + 1,
            }
        }
        None => Line::Partial {
            content: window,
            at_limit: buf.len() >= limit,
        },
    }
}

/// Check a request line, or a prefix of one when `complete` is false.
///
/// Ok(None): a valid prefix. Errors are decided left to right, so a prefix that fails fails
/// the same way whatever follows. A partial line that ends in CR is checked by the caller as
/// complete without that CR, since only LF may follow it.
fn request_line(line: &[u8], complete: bool) -> Result<Option<(&str, &str, u8)>, ParseError> {
    let bad = ParseError::BadStartLine;
    let incomplete = if complete { Err(bad) } else { Ok(None) };

    let method_len = line.iter().take_while(|&&b| is_tchar(b)).count();
    let Some(&sep) = line.get(method_len) else {
        return incomplete;
    };
    if method_len == 0 || sep != b' ' {
        return Err(bad);
    }
    let rest = &line[method_len + 1..];
    let target_len = rest.iter().take_while(|&&b| is_vchar(b)).count();
    let Some(&sep) = rest.get(target_len) else {
        return incomplete;
    };
    if target_len == 0 || sep != b' ' {
        return Err(bad);
    }
    let version = &rest[target_len + 1..];
    let Some(minor) = version_prefix(version)? else {
        return incomplete;
    };
    if version.len() > VERSION_LEN {
        return Err(bad);
    }
    // Both are ASCII (checked above), so these cannot fail.
    let method = std::str::from_utf8(&line[..method_len]).map_err(|_| bad)?;
    let target = std::str::from_utf8(&rest[..target_len]).map_err(|_| bad)?;
    Ok(Some((method, target, minor)))
}

/// Check a status line, or a prefix of one; as `request_line`.
fn status_line(line: &[u8], complete: bool) -> Result<Option<(u8, u16)>, ParseError> {
    let bad = ParseError::BadStartLine;
    let incomplete = if complete { Err(bad) } else { Ok(None) };

    let Some(minor) = version_prefix(line)? else {
        return incomplete;
    };
    let rest = &line[VERSION_LEN..];
    match rest.first() {
        None => return incomplete,
        Some(b' ') => {}
        Some(_) => return Err(bad),
    }
    let mut status: u16 = 0;
    for i in 0..3 {
        match rest.get(1 + i) {
            None => return incomplete,
            // 100..=999: a leading 0 is not a status.
            Some(b'0') if i == 0 => return Err(bad),
            Some(&d) if d.is_ascii_digit() => status = status * 10 + u16::from(d - b'0'),
            Some(_) => return Err(bad),
        }
    }
    // `HTTP/1.1 200` without the SP before an empty reason is common enough to accept.
    match rest.get(4) {
        None => {}
        Some(b' ') if rest[5..].iter().all(|&b| is_field_vchar(b)) => {}
        Some(_) => return Err(bad),
    }
    Ok(Some((minor, status)))
}

/// `HTTP/1.1`
const VERSION_LEN: usize = 8;

/// Check the start of `s` against `HTTP/D.D`. Ok(None) while fewer than 8 bytes are there,
/// Ok(Some(minor)) for 1.0 and 1.1, UnsupportedVersion for other digits (decided as soon as
/// the 8 bytes are in, whatever follows).
fn version_prefix(s: &[u8]) -> Result<Option<u8>, ParseError> {
    for (i, &b) in s.iter().take(VERSION_LEN).enumerate() {
        let ok = match i {
            0..=4 => b == b"HTTP/"[i],
            6 => b == b'.',
            _ => b.is_ascii_digit(),
        };
        if !ok {
            return Err(ParseError::BadStartLine);
        }
    }
    match s.get(5..VERSION_LEN) {
        None => Ok(None),
        Some(b"1.0") => Ok(Some(0)),
        Some(b"1.1") => Ok(Some(1)),
        Some(_) => Err(ParseError::UnsupportedVersion),
    }
}

/// Scan the header fields starting at `pos`, handing each (name, trimmed value) to `field`.
/// Ok(Some(len)) once the blank line is in; Ok(None) for a valid prefix.
fn fields<'a>(
    buf: &'a [u8],
    mut pos: usize,
    mut field: impl FnMut(&'a [u8], &'a [u8]) -> Result<(), ParseError>,
) -> Result<Option<usize>, ParseError> {
    let mut count = 0;
    loop {
        match next_line(buf, pos, MAX_HEAD_BYTES) {
            Line::Complete { content: [], next } => return Ok(Some(next)),
            Line::Complete { content, next } => {
                let Some((name, value)) = field_line(content, true, count)? else {
                    unreachable!("a complete field line is either valid or an error")
                };
                field(name, value)?;
                count += 1;
                pos = next;
            }
            Line::Partial { content, at_limit } => {
                match content.split_last() {
                    // The blank line, waiting for its LF.
                    Some((b'\r', [])) => {}
                    Some((b'\r', before)) => {
                        field_line(before, true, count)?;
                    }
                    _ => {
                        field_line(content, false, count)?;
                    }
                }
                return if at_limit {
                    Err(ParseError::HeadTooLarge)
                } else {
                    Ok(None)
                };
            }
        }
    }
}

/// A field name and its value, trimmed of SP and HTAB.
type Field<'a> = (&'a [u8], &'a [u8]);

/// Check one non-empty field line (or a prefix of one) given `count` fields before it.
fn field_line(line: &[u8], complete: bool, count: usize) -> Result<Option<Field<'_>>, ParseError> {
    let bad = ParseError::BadHeader;
    match line.first() {
        None => return Ok(None),
        // obs-fold, or whitespace between the start line and the first field (RFC 9112 §2.2,
        // §5.2): both are smuggling vectors, so reject.
        Some(b' ' | b'\t') => return Err(bad),
        Some(_) if count == MAX_HEADERS => return Err(ParseError::TooManyHeaders),
        Some(_) => {}
    }
    let name_len = line.iter().take_while(|&&b| is_tchar(b)).count();
    match line.get(name_len) {
        None if complete => return Err(bad),
        None => return Ok(None),
        Some(b':') if name_len > 0 => {}
        // Includes whitespace before the colon (RFC 9112 §5.1: MUST reject).
        Some(_) => return Err(bad),
    }
    let value = &line[name_len + 1..];
    if !value.iter().all(|&b| is_field_vchar(b)) {
        return Err(bad);
    }
    Ok(Some((&line[..name_len], trim_ows(value))))
}

/// Store a field that may appear once; a second one makes the request ambiguous.
fn once<'a>(slot: &mut Option<&'a str>, value: &'a [u8]) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::BadHeader);
    }
    *slot = Some(utf8(value)?);
    Ok(())
}

fn utf8(value: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(value).map_err(|_| ParseError::BadHeader)
}

/// Note the `close` and `keep-alive` tokens of a Connection value; other tokens are ignored.
fn connection(value: &[u8], close: &mut bool, keep_alive: &mut bool) {
    for token in value.split(|&b| b == b',').map(trim_ows) {
        if token.eq_ignore_ascii_case(b"close") {
            *close = true;
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            *keep_alive = true;
        }
    }
}

/// Content-Length: digits only; a list of identical values (`42, 42`) and repeated fields with
/// the same value count as one (RFC 9110 §8.6); anything else is a framing attack.
fn content_length(slot: &mut Option<u64>, value: &[u8]) -> Result<(), ParseError> {
    for item in value.split(|&b| b == b',').map(trim_ows) {
        let n = parse_u64(item).ok_or(ParseError::BadContentLength)?;
        match *slot {
            Some(old) if old != n => return Err(ParseError::BadContentLength),
            _ => *slot = Some(n),
        }
    }
    Ok(())
}

/// Non-empty ASCII digits that fit in a u64.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Visible ASCII (VCHAR), the bytes allowed in a request target.
fn is_vchar(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// Bytes allowed in a field value or reason phrase: HTAB, SP, VCHAR, obs-text.
fn is_field_vchar(b: u8) -> bool {
    b == b'\t' || b == b' ' || is_vchar(b) || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;
    use ParseError::*;

    const CURL: &[u8] = b"GET /request/core/x86_64/pacman-6.1.0-3-x86_64.pkg.tar.zst HTTP/1.1\r\n\
        Host: 192.168.1.2:7878\r\n\
        User-Agent: pacman/6.1.0 (Linux x86_64) libalpm/14.0.0\r\n\
        Accept: */*\r\n\
        Range: bytes=1000-\r\n\
        If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
        \r\n";

    fn req(buf: &[u8]) -> RequestHead<'_> {
        match parse_request(buf) {
            Ok(Parsed::Complete { value, len }) => {
                assert_eq!(len, buf.len(), "whole input should be the head: {buf:?}");
                value
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn req_err(buf: &[u8]) -> ParseError {
        match parse_request(buf) {
            Err(e) => e,
            other => panic!(
                "{:?}: expected error, got {other:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    fn resp(buf: &[u8]) -> ResponseHead<'_> {
        match parse_response(buf) {
            Ok(Parsed::Complete { value, len }) => {
                assert_eq!(len, buf.len());
                value
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn resp_err(buf: &[u8]) -> ParseError {
        match parse_response(buf) {
            Err(e) => e,
            other => panic!(
                "{:?}: expected error, got {other:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    /// Every proper prefix of a complete head is Partial; the whole is Complete.
    fn assert_prefixes_partial(buf: &[u8]) {
        for k in 0..buf.len() {
            assert_eq!(
                parse_request(&buf[..k]),
                Ok(Parsed::Partial),
                "prefix {k} of {:?}",
                String::from_utf8_lossy(buf)
            );
        }
        assert!(matches!(parse_request(buf), Ok(Parsed::Complete { len, .. }) if len == buf.len()));
    }

    /// Every prefix of `buf` is Partial or the same result as `buf`.
    fn assert_prefix_consistent(buf: &[u8]) {
        let full = parse_request(buf);
        for k in 0..buf.len() {
            let r = parse_request(&buf[..k]);
            assert!(
                r == Ok(Parsed::Partial) || r == full,
                "prefix {k}: {r:?} vs {full:?}"
            );
        }
        let full = parse_response(buf);
        for k in 0..buf.len() {
            let r = parse_response(&buf[..k]);
            assert!(
                r == Ok(Parsed::Partial) || r == full,
                "prefix {k}: {r:?} vs {full:?}"
            );
        }
    }

    #[test]
    fn pacman_request() {
        let h = req(CURL);
        assert_eq!(h.method, "GET");
        assert_eq!(
            h.target,
            "/request/core/x86_64/pacman-6.1.0-3-x86_64.pkg.tar.zst"
        );
        assert_eq!(h.minor_version, 1);
        assert_eq!(h.host, Some("192.168.1.2:7878"));
        assert_eq!(
            h.user_agent,
            Some(&b"pacman/6.1.0 (Linux x86_64) libalpm/14.0.0"[..])
        );
        assert_eq!(h.range, Some("bytes=1000-"));
        assert_eq!(h.if_range, None);
        assert_eq!(h.if_modified_since, Some("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(!h.connection_close && !h.connection_keep_alive);
        assert_eq!(h.content_length, None);
        assert!(!h.transfer_encoding);
        assert!(h.keep_alive());
    }

    #[test]
    fn every_prefix_of_valid_requests_is_partial() {
        let cases: &[&[u8]] = &[
            CURL,
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.0\n\n",
            b"\r\n\nHEAD /x HTTP/1.1\r\nHost: a\n\r\n",
            b"GET /%2e%2e/ HTTP/1.1\r\nX:\r\nY: \t v \t \r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 0, 0\r\nContent-Length: 0\r\n\r\n",
        ];
        for case in cases {
            assert_prefixes_partial(case);
        }
    }

    #[test]
    fn bytes_after_the_head_are_not_consumed() {
        let mut buf = CURL.to_vec();
        buf.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        match parse_request(&buf) {
            Ok(Parsed::Complete { len, .. }) => assert_eq!(len, CURL.len()),
            other => panic!("{other:?}"),
        }
        // Even garbage after the head does not matter.
        let mut buf = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        buf.extend_from_slice(b"\0\0\xff garbage");
        assert!(matches!(
            parse_request(&buf),
            Ok(Parsed::Complete { len: 18, .. })
        ));
    }

    #[test]
    fn start_lines() {
        // (input, method, target, minor)
        let ok: &[(&[u8], &str, &str, u8)] = &[
            (b"GET / HTTP/1.1\r\n\r\n", "GET", "/", 1),
            (b"GET / HTTP/1.0\r\n\r\n", "GET", "/", 0),
            (b"HEAD /a HTTP/1.1\n\n", "HEAD", "/a", 1),
            (b"OPTIONS * HTTP/1.1\r\n\r\n", "OPTIONS", "*", 1),
            (b"M-SEARCH * HTTP/1.1\r\n\r\n", "M-SEARCH", "*", 1),
            (b"get / HTTP/1.1\r\n\r\n", "get", "/", 1),
            (
                b"X!#$%&'*+-.^_`|~9 / HTTP/1.1\r\n\r\n",
                "X!#$%&'*+-.^_`|~9",
                "/",
                1,
            ),
            (
                b"GET http://mirror/core/os/x86_64/core.db HTTP/1.1\r\n\r\n",
                "GET",
                "http://mirror/core/os/x86_64/core.db",
                1,
            ),
            // Percent escapes, dots and odd characters pass through untouched.
            (
                b"GET /%2e%2e/%00/%zz HTTP/1.1\r\n\r\n",
                "GET",
                "/%2e%2e/%00/%zz",
                1,
            ),
            (
                b"GET /../../etc/passwd HTTP/1.1\r\n\r\n",
                "GET",
                "/../../etc/passwd",
                1,
            ),
            (
                b"GET /a?b=c&d#frag HTTP/1.1\r\n\r\n",
                "GET",
                "/a?b=c&d#frag",
                1,
            ),
            (
                b"GET /\"<>\\^`{|}~ HTTP/1.1\r\n\r\n",
                "GET",
                "/\"<>\\^`{|}~",
                1,
            ),
            (b"GET noslash HTTP/1.1\r\n\r\n", "GET", "noslash", 1),
            // Leading empty lines are skipped, up to the limit.
            (b"\r\nGET / HTTP/1.1\r\n\r\n", "GET", "/", 1),
            (b"\n\n\r\n\nGET / HTTP/1.1\r\n\r\n", "GET", "/", 1),
        ];
        for &(buf, method, target, minor) in ok {
            let h = req(buf);
            assert_eq!(
                (h.method, h.target, h.minor_version),
                (method, target, minor),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn bad_start_lines() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", BadStartLine),
            (b"\n\n\n\n\n", BadStartLine),
            (b"\n\n\n\n\r", BadStartLine),
            (b"\rGET / HTTP/1.1\r\n\r\n", BadStartLine),
            (b"GET / HTTP/1.1\r\r\n\r\n", BadStartLine),
            (b"GET / HTTP/1.1\rX\r\n\r\n", BadStartLine),
            (b"GET /\r HTTP/1.1\r\n\r\n", BadStartLine),
            (b" GET / HTTP/1.1\r\n\r\n", BadStartLine),
            (b"GET  / HTTP/1.1\r\n\r\n", BadStartLine),
            (b"GET /  HTTP/1.1\r\n\r\n", BadStartLine),
            (b"GET / HTTP/1.1 \r\n\r\n", BadStartLine),
            (b"GET\t/ HTTP/1.1\r\n\r\n", BadStartLine),
            (b"GET /\tx HTTP/1.1\r\n\r\n", BadStartLine),
            (b"GET / \r\n\r\n", BadStartLine),
            (b"GET /\r\n\r\n", BadStartLine),
            (b"GET\r\n\r\n", BadStartLine),
            (b"/ HTTP/1.1\r\n\r\n", BadStartLine),
            (b"GET / HTTP/1.1x\r\n\r\n", BadStartLine),
            (b"GET / HTTP/1.\r\n\r\n", BadStartLine),
            (b"GET / HTTP/1\r\n\r\n", BadStartLine),
            (b"GET / http/1.1\r\n\r\n", BadStartLine),
            (b"GET / HTTP/11.1\r\n\r\n", BadStartLine),
            (b"GET / HTTP/1.10\r\n\r\n", BadStartLine),
            (b"GET / HTTPS/1.1\r\n\r\n", BadStartLine),
            (b"GET / FOO\r\n\r\n", BadStartLine),
            (b"G\0T / HTTP/1.1\r\n\r\n", BadStartLine),
            (b"GET /\0 HTTP/1.1\r\n\r\n", BadStartLine),
            (b"GET / HTTP/1.1\0\r\n\r\n", BadStartLine),
            (b"GET /\x7f HTTP/1.1\r\n\r\n", BadStartLine),
            (b"GET /\x80 HTTP/1.1\r\n\r\n", BadStartLine),
            (b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", BadStartLine),
            (b"G(T / HTTP/1.1\r\n\r\n", BadStartLine),
            (b"GET/ HTTP/1.1\r\n\r\n", BadStartLine),
            (b"\xef\xbb\xbfGET / HTTP/1.1\r\n\r\n", BadStartLine),
            (
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                BadStartLine,
            ),
            (b"GET / HTTP/2.0\r\n\r\n", UnsupportedVersion),
            (b"GET / HTTP/0.9\r\n\r\n", UnsupportedVersion),
            (b"GET / HTTP/1.2\r\n\r\n", UnsupportedVersion),
            (b"GET / HTTP/3.0\r\n\r\n", UnsupportedVersion),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", UnsupportedVersion),
            // Decided as soon as the version is in.
            (b"GET / HTTP/2.0", UnsupportedVersion),
            (b"GET / HTTP/2.0x\r\n\r\n", UnsupportedVersion),
        ];
        for &(buf, want) in cases {
            assert_eq!(req_err(buf), want, "{:?}", String::from_utf8_lossy(buf));
            assert_prefix_consistent(buf);
        }
    }

    #[test]
    fn errors_are_reported_before_the_line_ends() {
        // A prefix that can never become valid is rejected at once, not held as Partial.
        let cases: &[(&[u8], ParseError)] = &[
            (b"GET /\0", BadStartLine),
            (b"GET /\r", BadStartLine),
            (b"GET / HTTP/1.1\rX", BadStartLine),
            (b"GET / HTTP/1.1 ", BadStartLine),
            (b"GET / XTTP", BadStartLine),
            (b" ", BadStartLine),
            (b"\x16\x03", BadStartLine),
            (b"GET / HTTP/1.1\r\n ", BadHeader),
            (b"GET / HTTP/1.1\r\nHost :", BadHeader),
            (b"GET / HTTP/1.1\r\nHost: a\0", BadHeader),
            (b"GET / HTTP/1.1\r\nHost\r", BadHeader),
            (b"GET / HTTP/1.1\r\nHost: a\rb", BadHeader),
            (b"GET / HTTP/1.1\r\n\rX", BadHeader),
        ];
        for &(buf, want) in cases {
            assert_eq!(req_err(buf), want, "{:?}", String::from_utf8_lossy(buf));
        }
    }

    #[test]
    fn header_fields() {
        let h = req(b"GET / HTTP/1.1\r\n\
            hOsT:example.org\r\n\
            USER-AGENT:   curl/8.0 \t\r\n\
            range:bytes=0-99\r\n\
            If-Range: \"etag\"\r\n\
            if-modified-since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
            If-None-Match: \"a1\", W/\"b2\"\r\n\
            X-Unknown: \x80\xff obs-text is fine in fields we skip\r\n\
            X-Empty:\r\n\
            X-Tab:\tv\ta\tl\t\r\n\
            \r\n");
        assert_eq!(h.host, Some("example.org"));
        assert_eq!(h.user_agent, Some(&b"curl/8.0"[..]));
        assert_eq!(h.range, Some("bytes=0-99"));
        assert_eq!(h.if_range, Some("\"etag\""));
        assert_eq!(h.if_modified_since, Some("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(h.if_none_match, Some("\"a1\", W/\"b2\""));
        // Empty Host is allowed by RFC 9112 §3.2 and kept as such.
        assert_eq!(req(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").host, Some(""));
        assert_eq!(req(b"GET / HTTP/1.1\r\nHost: \t \r\n\r\n").host, Some(""));
        // A User-Agent is opaque bytes: UTF-8 or not, it is returned as is.
        assert_eq!(
            req("GET / HTTP/1.1\r\nUser-Agent: pacmän\r\n\r\n".as_bytes()).user_agent,
            Some("pacmän".as_bytes())
        );
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nUser-Agent: caf\xe9/1\r\n\r\n").user_agent,
            Some(&b"caf\xe9/1"[..])
        );
        assert!(req(b"GET / HTTP/1.1\r\nX-Pacserve-Hop: 1\r\n\r\n").pacserve_hop);
        assert!(!req(b"GET / HTTP/1.1\r\n\r\n").pacserve_hop);
        assert_eq!(
            req(b"HEAD /info HTTP/1.1\r\nx-pacserve-auth: 1 ts=5\r\n\r\n").pacserve_auth,
            Some("1 ts=5")
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nX-Pacserve-Auth: a\r\nX-Pacserve-Auth: a\r\n\r\n"),
            Err(ParseError::BadHeader),
            "two authentication headers"
        );
        // Values keep inner whitespace.
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nRange: bytes = 1 - 2\r\n\r\n").range,
            Some("bytes = 1 - 2")
        );
        // A second User-Agent is ignored.
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nUser-Agent: a\r\nUser-Agent: b\r\n\r\n").user_agent,
            Some(&b"a"[..])
        );
    }

    #[test]
    fn bad_header_fields() {
        let cases: &[(&[u8], ParseError)] = &[
            // obs-fold
            (b"X: a\r\n b\r\n\r\n", BadHeader),
            (b"X: a\r\n\tb\r\n\r\n", BadHeader),
            // whitespace before the first field
            (b" Host: a\r\n\r\n", BadHeader),
            (b"\r\r\n", BadHeader),
            // whitespace before the colon
            (b"Host : a\r\n\r\n", BadHeader),
            (b"Host\t: a\r\n\r\n", BadHeader),
            (b"Content-Length : 5\r\n\r\n", BadHeader),
            // no name, no colon, bad name bytes
            (b": a\r\n\r\n", BadHeader),
            (b"Host\r\n\r\n", BadHeader),
            (b"Ho(st: a\r\n\r\n", BadHeader),
            (b"Ho\xc3\xa9st: a\r\n\r\n", BadHeader),
            (b"Ho\0st: a\r\n\r\n", BadHeader),
            // control bytes in values
            (b"X: a\0b\r\n\r\n", BadHeader),
            (b"X: a\x01\r\n\r\n", BadHeader),
            (b"X: a\x7f\r\n\r\n", BadHeader),
            (b"X: a\x1b[31m\r\n\r\n", BadHeader),
            (b"X: a\rb\r\n\r\n", BadHeader),
            (b"X: a\r\r\n\r\n", BadHeader),
            (b"X: a\x0b\r\n\r\n", BadHeader),
            (b"X: a\x0c\r\n\r\n", BadHeader),
            // bare CR as a line end
            (b"Host: a\rUser-Agent: b\r\n\r\n", BadHeader),
            (b"Host: a\r\n\r\r", BadHeader),
            // duplicate singletons
            (b"Host: a\r\nHost: a\r\n\r\n", BadHeader),
            (b"Host: a\r\nhost: b\r\n\r\n", BadHeader),
            (b"Range: bytes=0-\r\nRange: bytes=1-\r\n\r\n", BadHeader),
            (b"If-Range: a\r\nIf-Range: a\r\n\r\n", BadHeader),
            (
                b"If-Modified-Since: a\r\nIf-Modified-Since: b\r\n\r\n",
                BadHeader,
            ),
            // non-UTF-8 in a field read as text (a User-Agent is opaque bytes: accepted)
            (b"Host: \xff\r\n\r\n", BadHeader),
            (b"Range: bytes=\x80-\r\n\r\n", BadHeader),
            (b"If-Range: \xed\xa0\x80\r\n\r\n", BadHeader),
            (b"If-Modified-Since: \xc0\xaf\r\n\r\n", BadHeader),
            // Content-Length
            (
                b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
                BadContentLength,
            ),
            (b"Content-Length: 1, 2\r\n\r\n", BadContentLength),
            (b"Content-Length: 1,\r\n\r\n", BadContentLength),
            (b"Content-Length: ,1\r\n\r\n", BadContentLength),
            (b"Content-Length:\r\n\r\n", BadContentLength),
            (b"Content-Length: -1\r\n\r\n", BadContentLength),
            (b"Content-Length: +1\r\n\r\n", BadContentLength),
            (b"Content-Length: 0x10\r\n\r\n", BadContentLength),
            (b"Content-Length: 1 0\r\n\r\n", BadContentLength),
            (b"Content-Length: 1.0\r\n\r\n", BadContentLength),
            (b"Content-Length: \xd9\xa1\r\n\r\n", BadContentLength),
            (
                b"Content-Length: 18446744073709551616\r\n\r\n",
                BadContentLength,
            ),
            (
                b"Content-Length: 99999999999999999999999\r\n\r\n",
                BadContentLength,
            ),
        ];
        for &(fields, want) in cases {
            let buf = [b"GET / HTTP/1.1\r\n".as_slice(), fields].concat();
            assert_eq!(req_err(&buf), want, "{:?}", String::from_utf8_lossy(&buf));
            assert_prefix_consistent(&buf);
        }
    }

    #[test]
    fn content_length_and_transfer_encoding() {
        let cases: &[(&[u8], Option<u64>, bool)] = &[
            (b"\r\n", None, false),
            (b"Content-Length: 0\r\n\r\n", Some(0), false),
            (b"Content-Length: 007\r\n\r\n", Some(7), false),
            (b"Content-Length: 42, 42\r\n\r\n", Some(42), false),
            (b"Content-Length:42,42 ,\t42\r\n\r\n", Some(42), false),
            (
                b"Content-Length: 42\r\ncontent-length: 42\r\n\r\n",
                Some(42),
                false,
            ),
            (
                b"Content-Length: 42\r\ncontent-length: 042\r\n\r\n",
                Some(42),
                false,
            ),
            (
                b"Content-Length: 18446744073709551615\r\n\r\n",
                Some(u64::MAX),
                false,
            ),
            (b"Transfer-Encoding: chunked\r\n\r\n", None, true),
            (b"transfer-encoding:\r\n\r\n", None, true),
            (
                b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                Some(5),
                true,
            ),
        ];
        for &(fields, cl, te) in cases {
            let buf = [b"GET / HTTP/1.1\r\n".as_slice(), fields].concat();
            let h = req(&buf);
            assert_eq!(
                (h.content_length, h.transfer_encoding),
                (cl, te),
                "{:?}",
                String::from_utf8_lossy(&buf)
            );
        }
    }

    #[test]
    fn connection_and_keep_alive() {
        // (version, fields, connection_close, connection_keep_alive, keep_alive())
        type Case = (&'static [u8], &'static [u8], bool, bool, bool);
        let cases: &[Case] = &[
            (b"HTTP/1.1", b"", false, false, true),
            (b"HTTP/1.0", b"", false, false, false),
            (b"HTTP/1.1", b"Connection: close\r\n", true, false, false),
            (b"HTTP/1.1", b"Connection: CLOSE\r\n", true, false, false),
            (
                b"HTTP/1.1",
                b"Connection: keep-alive\r\n",
                false,
                true,
                true,
            ),
            (
                b"HTTP/1.0",
                b"Connection: keep-alive\r\n",
                false,
                true,
                true,
            ),
            (
                b"HTTP/1.0",
                b"Connection: Keep-Alive\r\n",
                false,
                true,
                true,
            ),
            (
                b"HTTP/1.0",
                b"Connection: keep-alive, close\r\n",
                true,
                true,
                false,
            ),
            (
                b"HTTP/1.0",
                b"Connection: keep-alive\r\nConnection: close\r\n",
                true,
                true,
                false,
            ),
            (
                b"HTTP/1.1",
                b"Connection: Upgrade , close\r\n",
                true,
                false,
                false,
            ),
            (
                b"HTTP/1.1",
                b"Connection: ,,close,,\r\n",
                true,
                false,
                false,
            ),
            (
                b"HTTP/1.1",
                b"Connection: \tclose\t\r\n",
                true,
                false,
                false,
            ),
            (b"HTTP/1.1", b"Connection: closed\r\n", false, false, true),
            (
                b"HTTP/1.1",
                b"Connection: close-ish\r\n",
                false,
                false,
                true,
            ),
            (
                b"HTTP/1.0",
                b"Connection: keep-alive-ish\r\n",
                false,
                false,
                false,
            ),
            (
                b"HTTP/1.1",
                b"Connection: keep alive\r\n",
                false,
                false,
                true,
            ),
            (
                b"HTTP/1.1",
                b"Connection: \xffclose\r\n",
                false,
                false,
                true,
            ),
            (b"HTTP/1.1", b"Connection:\r\n", false, false, true),
            (
                b"HTTP/1.0",
                b"Proxy-Connection: keep-alive\r\n",
                false,
                false,
                false,
            ),
        ];
        for &(version, fields, close, ka, keep) in cases {
            let mut buf = b"GET / ".to_vec();
            buf.extend_from_slice(version);
            buf.extend_from_slice(b"\r\n");
            buf.extend_from_slice(fields);
            buf.extend_from_slice(b"\r\n");
            let h = req(&buf);
            assert_eq!(
                (h.connection_close, h.connection_keep_alive, h.keep_alive()),
                (close, ka, keep),
                "{:?}",
                String::from_utf8_lossy(&buf)
            );
        }
    }

    fn with_fields(n: usize) -> Vec<u8> {
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..n {
            buf.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        buf
    }

    #[test]
    fn header_count_limit() {
        req(&with_fields(0));
        req(&with_fields(MAX_HEADERS - 1));
        req(&with_fields(MAX_HEADERS));
        assert_eq!(req_err(&with_fields(MAX_HEADERS + 1)), TooManyHeaders);
        assert_eq!(req_err(&with_fields(MAX_HEADERS * 10)), TooManyHeaders);
        // Rejected as soon as the extra field starts.
        let mut buf = with_fields(MAX_HEADERS);
        buf.pop();
        buf.pop();
        assert_eq!(parse_request(&buf), Ok(Parsed::Partial));
        buf.push(b'\r');
        assert_eq!(parse_request(&buf), Ok(Parsed::Partial));
        buf.pop();
        buf.push(b'X');
        assert_eq!(req_err(&buf), TooManyHeaders);
        assert_prefix_consistent(&with_fields(MAX_HEADERS + 1));
    }

    #[test]
    fn request_line_limit() {
        let line = |target_len: usize, ending: &[u8]| {
            let mut buf = b"GET /".to_vec();
            buf.resize(4 + target_len, b'a');
            buf.extend_from_slice(b" HTTP/1.1");
            buf.extend_from_slice(ending);
            buf
        };
        let fixed = "GET  HTTP/1.1\r\n".len();
        // Exactly at the limit, CRLF included.
        let buf = line(MAX_REQUEST_LINE - fixed, b"\r\n\r\n");
        assert_eq!(req(&buf).target.len(), MAX_REQUEST_LINE - fixed);
        let buf = line(MAX_REQUEST_LINE - fixed + 1, b"\n\r\n");
        assert_eq!(req(&buf).target.len(), MAX_REQUEST_LINE - fixed + 1);
        // One over.
        assert_eq!(
            req_err(&line(MAX_REQUEST_LINE - fixed + 1, b"\r\n\r\n")),
            RequestLineTooLong
        );
        assert_eq!(
            req_err(&line(MAX_REQUEST_LINE - fixed + 2, b"\n\r\n")),
            RequestLineTooLong
        );
        // Decided once MAX_REQUEST_LINE bytes are in, not before.
        let mut buf = b"GET /".to_vec();
        buf.resize(MAX_REQUEST_LINE - 1, b'a');
        assert_eq!(parse_request(&buf), Ok(Parsed::Partial));
        buf.push(b'a');
        assert_eq!(req_err(&buf), RequestLineTooLong);
        buf.resize(10 * MAX_HEAD_BYTES, b'a');
        assert_eq!(req_err(&buf), RequestLineTooLong);
        // Leading empty lines do not count against the request line.
        let mut buf = b"\r\n\r\n".to_vec();
        buf.extend_from_slice(&line(MAX_REQUEST_LINE - fixed, b"\r\n\r\n"));
        req(&buf);
        // A bad byte inside a long line is reported as such, whatever its length.
        let mut buf = b"GET /\0".to_vec();
        buf.resize(2 * MAX_REQUEST_LINE, b'a');
        assert_eq!(req_err(&buf), BadStartLine);
    }

    #[test]
    fn head_size_limit() {
        let head = |value_len: usize| {
            let mut buf = b"GET / HTTP/1.1\r\nX: ".to_vec();
            buf.resize(buf.len() + value_len, b'v');
            buf.extend_from_slice(b"\r\n\r\n");
            buf
        };
        let fixed = head(0).len();
        let exact = head(MAX_HEAD_BYTES - fixed);
        assert_eq!(exact.len(), MAX_HEAD_BYTES);
        req(&exact);
        assert_eq!(req_err(&head(MAX_HEAD_BYTES - fixed + 1)), HeadTooLarge);
        assert_eq!(req_err(&head(10 * MAX_HEAD_BYTES)), HeadTooLarge);
        // Bare LF for the final blank line: one byte less.
        let mut buf = head(MAX_HEAD_BYTES - fixed + 1);
        buf.truncate(buf.len() - 2);
        buf.push(b'\n');
        assert_eq!(buf.len(), MAX_HEAD_BYTES);
        req(&buf);
        // A long series of small fields hits the count limit first.
        assert_eq!(req_err(&with_fields(10_000)), TooManyHeaders);
        // Many fields of legal count but huge total size.
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..MAX_HEADERS {
            buf.extend_from_slice(b"X: ");
            buf.resize(buf.len() + 1000, b'v');
            buf.extend_from_slice(b"\r\n");
        }
        assert_eq!(req_err(&buf), HeadTooLarge);
    }

    #[test]
    fn full_buffer_is_never_partial() {
        // A reader with a MAX_HEAD_BYTES buffer always gets an answer once it is full.
        let fillers: &[&[u8]] = &[
            b"a",
            b"\n",
            b"\r\n",
            b"GET / HTTP/1.1\r\nX: ",
            b"GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n",
        ];
        for filler in fillers {
            let mut buf = Vec::new();
            while buf.len() < MAX_HEAD_BYTES {
                buf.extend_from_slice(filler);
            }
            buf.truncate(MAX_HEAD_BYTES);
            assert_ne!(parse_request(&buf), Ok(Parsed::Partial));
            assert_ne!(parse_response(&buf), Ok(Parsed::Partial));
        }
    }

    #[test]
    fn truncation_at_every_offset_never_errors() {
        let mut buf = with_fields(MAX_HEADERS);
        buf.splice(0..0, b"\r\n".iter().copied());
        assert_prefixes_partial(&buf);
    }

    #[test]
    fn single_byte_inputs() {
        for b in 0..=255u8 {
            let one = [b];
            let r = parse_request(&one);
            let want = if is_tchar(b) || b == b'\r' || b == b'\n' {
                Ok(Parsed::Partial)
            } else {
                Err(BadStartLine)
            };
            assert_eq!(r, want, "byte {b:#04x}");
            let r = parse_response(&one);
            let want = if b == b'H' {
                Ok(Parsed::Partial)
            } else {
                Err(BadStartLine)
            };
            assert_eq!(r, want, "byte {b:#04x}");
        }
    }

    #[test]
    fn every_value_byte() {
        for b in 0..=255u8 {
            let buf = [b"GET / HTTP/1.1\r\nX: a".as_slice(), &[b], b"a\r\n\r\n"].concat();
            let r = parse_request(&buf);
            if b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80 {
                assert!(matches!(r, Ok(Parsed::Complete { .. })), "byte {b:#04x}");
            } else {
                assert_eq!(r, Err(BadHeader), "byte {b:#04x}");
            }
        }
    }

    #[test]
    fn every_target_byte() {
        for b in 0..=255u8 {
            let buf = [b"GET /".as_slice(), &[b], b" HTTP/1.1\r\n\r\n"].concat();
            let r = parse_request(&buf);
            if (0x21..=0x7e).contains(&b) {
                let h = req(&buf);
                assert_eq!(h.target.as_bytes(), &[b'/', b]);
            } else {
                assert_eq!(r, Err(BadStartLine), "byte {b:#04x}");
            }
        }
    }

    #[test]
    fn errors_map_to_statuses() {
        let cases = [
            (RequestLineTooLong, 414),
            (HeadTooLarge, 431),
            (TooManyHeaders, 431),
            (BadStartLine, 400),
            (UnsupportedVersion, 505),
            (BadHeader, 400),
            (BadContentLength, 400),
        ];
        for (e, status) in cases {
            assert_eq!(e.status(), status);
            assert!(!e.reason().is_empty());
            assert_eq!(e.to_string(), e.reason());
        }
    }

    #[test]
    fn responses() {
        let h = resp(
            b"HTTP/1.1 200 OK\r\n\
            Server: nginx\r\n\
            Content-Length: 1234\r\n\
            Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
            Connection: keep-alive\r\n\
            \r\n",
        );
        assert_eq!(
            h,
            ResponseHead {
                minor_version: 1,
                status: 200,
                content_length: Some(1234),
                location: None,
                last_modified: Some("Sun, 06 Nov 1994 08:49:37 GMT"),
                connection_close: false,
                pacserve_sig: None,
                pacserve_sha256: None,
                etag: None,
                content_range: None,
            }
        );
        let h = resp(b"HTTP/1.1 200 OK\r\nX-Pacserve-Sig: yes\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.pacserve_sig, Some("yes"));
        let h = resp(b"HTTP/1.1 200 OK\r\nX-Pacserve-Sha256: ab12\r\n\r\n");
        assert_eq!(h.pacserve_sha256, Some("ab12"));
        let h = resp(b"HTTP/1.1 206 OK\r\nETag: \"7f\"\r\nContent-Range: bytes 5-9/10\r\n\r\n");
        assert_eq!(
            (h.etag, h.content_range),
            (Some("\"7f\""), Some("bytes 5-9/10"))
        );
        let h = resp(
            b"HTTP/1.0 301 Moved Permanently\nLocation: https://mirror/x\nConnection: close\n\n",
        );
        assert_eq!(h.minor_version, 0);
        assert_eq!(h.status, 301);
        assert_eq!(h.location, Some("https://mirror/x"));
        assert!(h.connection_close);

        let statuses: &[(&[u8], u16)] = &[
            (b"HTTP/1.1 200\r\n\r\n", 200),
            (b"HTTP/1.1 200 \r\n\r\n", 200),
            (b"HTTP/1.1 404 Not Found\r\n\r\n", 404),
            (b"HTTP/1.1 100 Continue\r\n\r\n", 100),
            (b"HTTP/1.1 999 x\r\n\r\n", 999),
            (b"HTTP/1.1 200 \xc3\xa9 \x80\t ok\r\n\r\n", 200),
            (b"HTTP/1.1 206 Partial Content\r\n\r\n", 206),
        ];
        for &(buf, status) in statuses {
            assert_eq!(
                resp(buf).status,
                status,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
            for k in 0..buf.len() {
                assert_eq!(parse_response(&buf[..k]), Ok(Parsed::Partial));
            }
        }
        // Transfer-Encoding overrides Content-Length.
        let h = resp(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.content_length, None);
        // A second Last-Modified is ignored.
        let h = resp(b"HTTP/1.1 200 OK\r\nLast-Modified: a\r\nLast-Modified: b\r\n\r\n");
        assert_eq!(h.last_modified, Some("a"));
    }

    #[test]
    fn bad_responses() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"HTTP/1.1 099 x\r\n\r\n", BadStartLine),
            (b"HTTP/1.1 000\r\n\r\n", BadStartLine),
            (b"HTTP/1.1 20\r\n\r\n", BadStartLine),
            (b"HTTP/1.1 2000 x\r\n\r\n", BadStartLine),
            (b"HTTP/1.1 20x OK\r\n\r\n", BadStartLine),
            (b"HTTP/1.1  200 OK\r\n\r\n", BadStartLine),
            (b"HTTP/1.1 200\tOK\r\n\r\n", BadStartLine),
            (b"HTTP/1.1\r\n\r\n", BadStartLine),
            (b"HTTP/1.1 \r\n\r\n", BadStartLine),
            (b"HTTP/1.1 200 O\0K\r\n\r\n", BadStartLine),
            (b"HTTP/1.1 200 O\rK\r\n\r\n", BadStartLine),
            (b"HTTP/1.1 200 OK\x7f\r\n\r\n", BadStartLine),
            (b"http/1.1 200 OK\r\n\r\n", BadStartLine),
            (b"\r\nHTTP/1.1 200 OK\r\n\r\n", BadStartLine),
            (b"ICY 200 OK\r\n\r\n", BadStartLine),
            (b"HTTP/2 200\r\n\r\n", BadStartLine),
            (b"HTTP/2.0 200 OK\r\n\r\n", UnsupportedVersion),
            (b"HTTP/1.2 200 OK\r\n\r\n", UnsupportedVersion),
            (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", BadHeader),
            (b"HTTP/1.1 200 OK\r\nX : b\r\n\r\n", BadHeader),
            (
                b"HTTP/1.1 200 OK\r\nLocation: a\r\nLocation: b\r\n\r\n",
                BadHeader,
            ),
            (b"HTTP/1.1 200 OK\r\nLocation: \xff\r\n\r\n", BadHeader),
            (b"HTTP/1.1 200 OK\r\nLast-Modified: \xff\r\n\r\n", BadHeader),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                BadContentLength,
            ),
        ];
        for &(buf, want) in cases {
            assert_eq!(resp_err(buf), want, "{:?}", String::from_utf8_lossy(buf));
            assert_prefix_consistent(buf);
        }
        // A huge status line or head never stays Partial.
        let mut buf = b"HTTP/1.1 200 ".to_vec();
        buf.resize(MAX_HEAD_BYTES, b'x');
        assert_eq!(resp_err(&buf), HeadTooLarge);
        let mut buf = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            buf.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(resp_err(&buf), TooManyHeaders);
    }

    #[test]
    fn requests_and_responses_are_told_apart() {
        assert_eq!(resp_err(CURL), BadStartLine);
        assert_eq!(req_err(b"HTTP/1.1 200 OK\r\n\r\n"), BadStartLine);
    }

    #[test]
    fn pseudo_random_inputs_are_prefix_consistent() {
        // A tiny deterministic fuzzer over the interesting bytes, for machines without
        // cargo-fuzz; the real one is tests/fuzz/fuzz_targets/http_head.rs.
        let alphabet: &[&[u8]] = &[
            b"GET",
            b" ",
            b"/",
            b"HTTP/1.1",
            b"HTTP/1.0",
            b"HTTP/2.0",
            b"\r\n",
            b"\n",
            b"\r",
            b":",
            b"Host",
            b"Content-Length",
            b"1",
            b",",
            b"\t",
            b"\0",
            b"\xff",
            b"Connection",
            b"close",
            b"HTTP/1.1 200 OK",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..1000 {
            let mut buf = Vec::new();
            for _ in 0..(seed % 24) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                buf.extend_from_slice(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            seed = seed.wrapping_add(1);
            assert_prefix_consistent(&buf);
        }
    }
}
