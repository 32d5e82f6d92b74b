//! HTTP messages as the server sees them, plain data and no I/O: the request it read, the
//! response it writes (and that response's head as bytes).

use std::fs::File;
use std::sync::Arc;

use crate::http::parse::RequestHead;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

/// A request head, copied out of the connection buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Who sent it.
    pub peer: std::net::SocketAddr,
    pub method: Method,
    pub method_text: String,
    pub target: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub if_modified_since: Option<String>,
    pub if_none_match: Option<String>,
    pub has_body: bool,
    pub has_host: bool,
    pub http11: bool,
    /// Sent by a pacserve (its User-Agent, or the hop field it puts on every request): such
    /// a request is answered from this host alone, never passed on, so pacservers that point
    /// at each other (or at themselves, by a name) can never fan out.
    pub from_pacserve: bool,
    /// The authentication header of a signed request from another pacserve.
    pub auth: Option<String>,
}

impl Request {
    /// An owned copy of a parsed head, so the connection buffer can take the next request.
    pub fn from_head(peer: std::net::SocketAddr, head: &RequestHead<'_>) -> Request {
        Request {
            peer,
            method: match head.method {
                "GET" => Method::Get,
                "HEAD" => Method::Head,
                _ => Method::Other,
            },
            method_text: head.method.to_string(),
            target: head.target.to_string(),
            range: head.range.map(str::to_string),
            if_range: head.if_range.map(str::to_string),
            if_modified_since: head.if_modified_since.map(str::to_string),
            if_none_match: head.if_none_match.map(str::to_string),
            has_body: head.transfer_encoding || head.content_length.is_some_and(|n| n > 0),
            has_host: head.host.is_some(),
            http11: head.minor_version == 1,
            from_pacserve: head.pacserve_hop
                || head
                    .user_agent
                    .is_some_and(|ua| ua.starts_with(PACSERVE_AGENT_PREFIX.as_bytes())),
            auth: head.pacserve_auth.map(str::to_string),
        }
    }
}

#[derive(Debug)]
pub enum Body {
    Empty,
    Text(&'static str),
    /// A body built once and shared (e.g. the package listing).
    Shared(Arc<Vec<u8>>),
    /// `len` bytes of `file` from `start`, sent with sendfile(2).
    File {
        file: Arc<File>,
        start: u64,
        len: u64,
    },
}

impl Body {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Text(t) => t.len() as u64,
            Body::Shared(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
    /// Close the connection after this response.
    pub close: bool,
}

impl Response {
    /// A response with no headers yet; an error status gets its short text as the body.
    pub fn new(status: u16) -> Response {
        let body = match status {
            200..=399 => Body::Empty,
            _ => Body::Text(error_text(status)),
        };
        Response {
            status,
            headers: Vec::new(),
            body,
            close: false,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }
}

impl Response {
    /// The status line and header fields, up to and including the blank line; `date` is the
    /// `Date` value (the caller reads the clock, so this stays pure). A 304 has no
    /// Content-Length: it would describe the body the client already holds.
    pub fn head(&self, date: &str) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nDate: {date}\r\nServer: pacserve\r\n",
            self.status,
            reason(self.status)
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if self.status != 304 {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        if let Body::Text(_) = self.body {
            head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
        }
        if self.close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

pub fn error_text(status: u16) -> &'static str {
    match status {
        400 => "400 Bad Request\n",
        403 => "403 Forbidden\n",
        404 => "404 Not Found\n",
        405 => "405 Method Not Allowed\n",
        408 => "408 Request Timeout\n",
        414 => "414 URI Too Long\n",
        416 => "416 Range Not Satisfiable\n",
        431 => "431 Request Header Fields Too Large\n",
        503 => "503 Service Unavailable\n",
        505 => "505 HTTP Version Not Supported\n",
        _ => "error\n",
    }
}

/// How every pacserve's User-Agent starts (`pacserve/0.1.0`).
pub const PACSERVE_AGENT_PREFIX: &str = "pacserve/";

/// The header pacserve puts on every request it sends, besides its User-Agent.
pub const HOP_HEADER: &str = "X-Pacserve-Hop";

/// The `Date` of a response sent now.
pub fn date_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    crate::http::date::format_http_date(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{Parsed, parse_request};

    #[test]
    fn heads_say_what_the_body_is() {
        let date = "Thu, 01 Jan 1970 00:00:00 GMT";
        let cases: [(Response, &str); 4] = [
            (
                Response::new(200).header("Accept-Ranges", "bytes"),
                "HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nServer: pacserve\r\n\
                 Accept-Ranges: bytes\r\nContent-Length: 0\r\n\r\n",
            ),
            (
                Response::new(404).closing(),
                "HTTP/1.1 404 Not Found\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
                 Server: pacserve\r\nContent-Length: 14\r\n\
                 Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n",
            ),
            (
                Response::new(304).header("Last-Modified", date),
                "HTTP/1.1 304 Not Modified\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
                 Server: pacserve\r\nLast-Modified: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n",
            ),
            (
                Response {
                    body: Body::Shared(Arc::new(b"abc".to_vec())),
                    ..Response::new(200)
                },
                "HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nServer: pacserve\r\n\
                 Content-Length: 3\r\n\r\n",
            ),
        ];
        for (resp, want) in cases {
            assert_eq!(String::from_utf8(resp.head(date)).unwrap(), want);
        }
    }

    #[test]
    fn requests_are_copied_out_of_the_head() {
        let raw = b"HEAD /x?y HTTP/1.1\r\nHost: h\r\nRange: bytes=1-\r\nContent-Length: 0\r\n\r\n";
        let Ok(Parsed::Complete { value, .. }) = parse_request(raw) else {
            panic!("a valid head")
        };
        let req = Request::from_head("127.0.0.1:1".parse().unwrap(), &value);
        assert_eq!(req.method, Method::Head);
        assert_eq!(req.target, "/x?y");
        assert_eq!(req.range.as_deref(), Some("bytes=1-"));
        assert!(req.has_host && req.http11 && !req.has_body);
        let raw = b"PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        let Ok(Parsed::Complete { value, .. }) = parse_request(raw) else {
            panic!("a valid head")
        };
        let req = Request::from_head("127.0.0.1:1".parse().unwrap(), &value);
        assert_eq!(
            (req.method, req.method_text.as_str()),
            (Method::Other, "PUT")
        );
        assert!(!req.has_host && !req.http11 && req.has_body);
    }
}
