//! How a request ended, in the application's words: served from this cache, sent to a peer
//! or a mirror, not found, rejected, refused as busy, or a status page. Pure.

/// How a request ended, for the log and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served from the local cache (200, 206, 304, 416).
    Local,
    /// Redirected to a LAN peer.
    Peer,
    /// Redirected to a mirror.
    Mirror,
    /// Not found anywhere.
    Miss,
    /// Rejected: malformed, hostile, unsupported or too slow.
    Bad,
    /// Refused at once because every connection slot was taken (503).
    Busy,
    /// The status page, metrics and listings: not a lookup.
    Status,
}

impl Outcome {
    /// The word in the log line, the JSON key and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Local => "local",
            Outcome::Peer => "peer",
            Outcome::Mirror => "mirror",
            Outcome::Miss => "miss",
            Outcome::Bad => "bad",
            Outcome::Busy => "busy",
            Outcome::Status => "status",
        }
    }

    /// The words on the status page.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Local => "local hit",
            Outcome::Peer => "peer redirect",
            Outcome::Mirror => "mirror redirect",
            Outcome::Miss => "miss",
            Outcome::Bad => "rejected",
            Outcome::Busy => "busy",
            Outcome::Status => "status",
        }
    }
}

/// The outcomes that are counted, in the order they are shown.
pub const COUNTED: [Outcome; 6] = [
    Outcome::Local,
    Outcome::Peer,
    Outcome::Mirror,
    Outcome::Miss,
    Outcome::Bad,
    Outcome::Busy,
];

/// A response as the application builds it, with how the request ended.
#[derive(Debug)]
pub struct Answer {
    pub response: crate::http::message::Response,
    pub outcome: Outcome,
}

impl Answer {
    pub fn new(status: u16, outcome: Outcome) -> Answer {
        Answer {
            response: crate::http::message::Response::new(status),
            outcome,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.response = self.response.header(name, value);
        self
    }

    pub fn with_body(mut self, body: crate::http::message::Body) -> Answer {
        self.response.body = body;
        self
    }
}
