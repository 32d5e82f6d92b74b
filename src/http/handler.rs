//! What the server shell asks of the application: the [`Handler`] that answers requests,
//! and how each response ended ([`Completed`], [`ShellAnswer`]). Plain types, no I/O.

use std::net::SocketAddr;

use crate::http::message::{Request, Response};
use crate::http::parse::ParseError;

/// An answer the shell gave by itself, without asking the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellAnswer {
    /// The head was malformed, too large, or cut short (the error says which).
    Malformed(ParseError),
    /// The head did not arrive within its time limit (408).
    TimedOut,
    /// Every connection slot was taken (503).
    Busy,
    /// A request the shell refuses before the handler sees it (HTTP/1.1 without Host, a body).
    Refused,
}

impl ShellAnswer {
    pub fn status(self) -> u16 {
        match self {
            ShellAnswer::Malformed(e) => e.status(),
            ShellAnswer::TimedOut => 408,
            ShellAnswer::Busy => 503,
            ShellAnswer::Refused => 400,
        }
    }
}

/// One finished response, for the handler's log and counters.
#[derive(Debug)]
pub struct Completed<'a, O> {
    pub peer: SocketAddr,
    /// The request answered; None when the shell answered before one was read.
    pub request: Option<&'a Request>,
    pub status: u16,
    /// Body bytes sent (fewer than promised when the client went away).
    pub body_bytes: u64,
    /// The body was a file (a cached package).
    pub from_file: bool,
    pub outcome: O,
    /// Why the shell answered by itself, for the log.
    pub shell: Option<ShellAnswer>,
}

/// Something that answers requests.
pub trait Handler: Send + Sync + 'static {
    /// What the handler says about each answer; carried to [`Handler::completed`].
    type Outcome: Copy + Send + Sync + 'static;

    fn handle(&self, req: &Request) -> impl Future<Output = (Response, Self::Outcome)> + Send;

    /// The outcome of an answer the shell gave by itself.
    fn shell_outcome(&self, answer: ShellAnswer) -> Self::Outcome;

    /// A response is done (sent whole, or cut short): log it, count it.
    fn completed(&self, done: &Completed<'_, Self::Outcome>);
}
