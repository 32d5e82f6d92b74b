//! Pure HTTP/1.1 head parsing: bytes in; Complete / Partial / error out. No I/O, no allocation.

/// The outcome of feeding bytes to a parser: a whole head, or "need more bytes" (not an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<T> {
    /// A complete head; `len` is the number of bytes it took, including the blank line.
    Complete { value: T, len: usize },
    /// The bytes so far are a valid prefix; read more.
    Partial,
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
}

/// A parsed request head; every field borrows from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub host: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub range: Option<&'a str>,
    pub if_range: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    /// `Connection` contains the `close` token.
    pub connection_close: bool,
    /// `Connection` contains the `keep-alive` token.
    pub connection_keep_alive: bool,
    pub content_length: Option<u64>,
    /// A `Transfer-Encoding` header was present (we accept no request bodies).
    pub transfer_encoding: bool,
}

/// A parsed response head (for the client side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    pub minor_version: u8,
    pub status: u16,
    pub content_length: Option<u64>,
    pub location: Option<&'a str>,
    pub last_modified: Option<&'a str>,
    pub connection_close: bool,
}

pub fn parse_request(buf: &[u8]) -> Result<Parsed<RequestHead<'_>>, ParseError> {
    let _ = buf;
    todo!()
}

pub fn parse_response(buf: &[u8]) -> Result<Parsed<ResponseHead<'_>>, ParseError> {
    let _ = buf;
    todo!()
}
