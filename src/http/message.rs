//! HTTP messages as the server sees them: the request it read, the response it writes.
//! Plain data, no I/O.

use std::fs::File;
use std::sync::Arc;

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
    pub has_body: bool,
    pub has_host: bool,
    pub http11: bool,
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

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
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
