//! Reading one message head into a bounded buffer, I/O (reads from any `AsyncRead`), for
//! the server connection and the client alike; what the bytes mean is the business of the
//! pure parser passed in.
//!
//! A parser looks at the whole buffer from byte 0, so parsing after every read would cost a
//! client that sends one byte at a time a parse per byte over a growing buffer. Here the
//! buffer is parsed again only when the new bytes can change the verdict: on the first bytes
//! of a head, on a line end, on a byte no head may hold (a control byte), on the byte after a
//! CR, when the buffer passes the request-line limit, and when it is full. Every line ends in
//! one LF, the limits are passed once, and the other triggers end the head with an error, so
//! the parses are bounded by the lines of a head, not its bytes. A
//! byte that spoils a line without being one of these (a `/` inside a method, say) is noticed
//! at the end of its line; by the parsers' prefix rule the verdict is the one it would have
//! been at once. When the peer closes or the deadline passes, unparsed bytes get a last look,
//! so the answer never depends on how the bytes were split into reads.

use std::io;
use std::time::Instant;

use smol::io::{AsyncRead, AsyncReadExt};

use crate::http::parse::{ParseError, Parsed};
use crate::limits::{HEAD_BUFFER_START, MAX_HEAD_BYTES, MAX_REQUEST_LINE};
use crate::sys::rt::until;

/// How reading one head ended (socket errors aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head<T> {
    /// A whole head; its bytes are consumed, anything after it stays buffered.
    Complete(T),
    /// Malformed or too large, or cut short by the peer's end (`ParseError::Incomplete`).
    Malformed(ParseError),
    /// The deadline passed with the head still incomplete.
    TimedOut,
    /// The peer closed having sent nothing, or only the empty lines allowed before a request.
    Closed,
}

/// The bytes of one connection that are not yet part of an answered head. It starts at
/// [`HEAD_BUFFER_START`] (pacman's heads are about 200 bytes) and grows, doubling, up to
/// [`MAX_HEAD_BYTES`] only for a head that needs it; [`HeadBuf::shrink`] gives the room back
/// between requests. A thousand idle keep-alive connections then hold a thousand small
/// buffers, not 16 MiB.
pub struct HeadBuf {
    buf: Vec<u8>,
    filled: usize,
}

impl Default for HeadBuf {
    fn default() -> HeadBuf {
        HeadBuf::new()
    }
}

impl HeadBuf {
    /// Room for a small head; it grows to `MAX_HEAD_BYTES` (the parsers never say Partial
    /// about that many bytes, so every head gets a verdict).
    pub fn new() -> HeadBuf {
        HeadBuf {
            buf: vec![0; HEAD_BUFFER_START],
            filled: 0,
        }
    }

    /// Between requests, with nothing buffered: back to the starting size.
    pub fn shrink(&mut self) {
        if self.filled == 0 && self.buf.len() > HEAD_BUFFER_START {
            self.buf = vec![0; HEAD_BUFFER_START];
        }
    }

    /// Room to read into: the buffer doubles (at most to `MAX_HEAD_BYTES`) when full.
    fn room(&mut self) -> &mut [u8] {
        if self.filled == self.buf.len() && self.buf.len() < MAX_HEAD_BYTES {
            let grown = (self.buf.len() * 2).min(MAX_HEAD_BYTES);
            self.buf.resize(grown, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// Bytes read but not yet consumed: the start of the next (pipelined) head.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    /// Read from `src` until `parse` has a verdict on one head, the peer closes, or
    /// `deadline` passes. Bytes already buffered are looked at before anything is read.
    pub async fn read_head<R, T>(
        &mut self,
        src: &mut R,
        deadline: Instant,
        mut parse: impl FnMut(&[u8]) -> Result<Parsed<T>, ParseError>,
    ) -> io::Result<Head<T>>
    where
        R: AsyncRead + Unpin,
    {
        // Buffer length at the last parse; 0 while this head has had no look yet.
        let mut parsed_at = 0;
        let mut due = self.filled > 0;
        loop {
            if due {
                parsed_at = self.filled;
                if let Some(verdict) = self.verdict(&mut parse) {
                    return Ok(verdict);
                }
            }
            let start = self.filled;
            let n = match until(deadline, src.read(self.room())).await {
                Some(read) => read?,
                None => return Ok(self.last_look(parsed_at, &mut parse, Head::TimedOut)),
            };
            if n == 0 {
                let end = if self.only_empty_lines() {
                    Head::Closed
                } else {
                    Head::Malformed(ParseError::Incomplete)
                };
                return Ok(self.last_look(parsed_at, &mut parse, end));
            }
            self.filled += n;
            due = parsed_at == 0 || self.may_decide(start);
        }
    }

    /// No more bytes will come: the verdict on those not yet looked at, else `otherwise`.
    fn last_look<T>(
        &mut self,
        parsed_at: usize,
        parse: &mut impl FnMut(&[u8]) -> Result<Parsed<T>, ParseError>,
        otherwise: Head<T>,
    ) -> Head<T> {
        if parsed_at == self.filled {
            return otherwise;
        }
        self.verdict(parse).unwrap_or(otherwise)
    }

    /// The parser's verdict on the buffer, or None while it is a valid prefix. A full buffer
    /// is never a prefix (the parsers promise it; this makes sure).
    fn verdict<T>(
        &mut self,
        parse: &mut impl FnMut(&[u8]) -> Result<Parsed<T>, ParseError>,
    ) -> Option<Head<T>> {
        match parse(self.buffered()) {
            Ok(Parsed::Complete { value, len }) => {
                self.buf.copy_within(len..self.filled, 0);
                self.filled -= len;
                Some(Head::Complete(value))
            }
            Ok(Parsed::Partial) if self.filled < MAX_HEAD_BYTES => None,
            Ok(Parsed::Partial) => Some(Head::Malformed(ParseError::HeadTooLarge)),
            Err(e) => Some(Head::Malformed(e)),
        }
    }

    /// Whether the bytes from `start` on can change a Partial verdict.
    fn may_decide(&self, start: usize) -> bool {
        let after_cr = start > 0 && self.buf[start - 1] == b'\r';
        let ends_or_spoils = self.buf[start..self.filled]
            .iter()
            .any(|&b| b == b'\n' || (b.is_ascii_control() && b != b'\t' && b != b'\r'));
        let past_line_limit = start <= MAX_REQUEST_LINE && self.filled > MAX_REQUEST_LINE;
        after_cr || ends_or_spoils || past_line_limit || self.filled == MAX_HEAD_BYTES
    }

    fn only_empty_lines(&self) -> bool {
        self.buffered().iter().all(|b| matches!(b, b'\r' | b'\n'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use crate::http::parse::{RequestHead, parse_request};

    /// What the fake peer does on each read.
    enum Step {
        Bytes(Vec<u8>),
        /// Never answer again (the reader stays pending).
        Silent,
        Fail,
    }

    /// A peer that hands out its steps one per read, then the end of the stream.
    struct Script(VecDeque<Step>);

    impl Script {
        fn new(steps: impl IntoIterator<Item = Step>) -> Script {
            Script(steps.into_iter().collect())
        }

        /// One read per byte.
        fn drip(bytes: &[u8]) -> Script {
            Script::new(bytes.iter().map(|&b| Step::Bytes(vec![b])))
        }

        fn whole(bytes: &[u8]) -> Script {
            Script::new([Step::Bytes(bytes.to_vec())])
        }

        /// The LFs it will hand out: the looks a head may need, besides the first and the
        /// last.
        fn line_ends(&self) -> usize {
            let count = |s: &Step| match s {
                Step::Bytes(b) => b.iter().filter(|&&b| b == b'\n').count(),
                _ => 0,
            };
            self.0.iter().map(count).sum()
        }
    }

    impl AsyncRead for Script {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            match self.0.pop_front() {
                None => Poll::Ready(Ok(0)),
                Some(Step::Silent) => {
                    self.0.push_front(Step::Silent);
                    Poll::Pending
                }
                Some(Step::Fail) => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
                Some(Step::Bytes(mut b)) => {
                    let n = b.len().min(out.len());
                    out[..n].copy_from_slice(&b[..n]);
                    if n < b.len() {
                        self.0.push_front(Step::Bytes(b.split_off(n)));
                    }
                    Poll::Ready(Ok(n))
                }
            }
        }
    }

    /// (method, target) of a request head, owned.
    type Target = (String, String);

    fn owned(h: RequestHead<'_>) -> Target {
        (h.method.to_string(), h.target.to_string())
    }

    /// Read one request head from `script` with a short deadline; the verdict and how many
    /// times the parser was asked.
    fn read(buf: &mut HeadBuf, script: &mut Script) -> (Head<Target>, usize) {
        let mut parses = 0;
        let head = smol::block_on(buf.read_head(
            script,
            Instant::now() + Duration::from_millis(50),
            |b| {
                parses += 1;
                parse_request(b).map(|p| p.map(owned))
            },
        ))
        .expect("the script fails only when told to");
        (head, parses)
    }

    fn got(method: &str, target: &str) -> Head<Target> {
        Head::Complete((method.to_string(), target.to_string()))
    }

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\nUser-Agent: pacman\r\nAccept: */*\r\n\r\n";

    #[test]
    fn a_dripped_head_is_parsed_once_per_line() {
        let lines = GET.iter().filter(|&&b| b == b'\n').count();
        for head in [
            GET.to_vec(),
            GET.iter().copied().filter(|&b| b != b'\r').collect(),
        ] {
            let mut buf = HeadBuf::new();
            let (verdict, parses) = read(&mut buf, &mut Script::drip(&head));
            assert_eq!(verdict, got("GET", "/a"));
            // The first byte, then one look per line end.
            assert!(parses <= lines + 1, "{parses} parses for {lines} lines");
            assert!(buf.buffered().is_empty());
        }
        // In big reads, one look per read at most.
        let mut buf = HeadBuf::new();
        let (verdict, parses) = read(&mut buf, &mut Script::whole(GET));
        assert_eq!((verdict, parses), (got("GET", "/a"), 1));
    }

    #[test]
    fn the_buffer_grows_for_a_big_head_and_shrinks_back() {
        // A head of 12 KiB (many fields) in one read: the buffer grows to take it.
        let mut big = b"GET /big HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..40 {
            big.extend_from_slice(format!("X-F{i}: {}\r\n", "v".repeat(290)).as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        assert!(big.len() > 8 * HEAD_BUFFER_START && big.len() < MAX_HEAD_BYTES);
        let mut buf = HeadBuf::new();
        assert_eq!(buf.buf.len(), HEAD_BUFFER_START);
        assert_eq!(
            read(&mut buf, &mut Script::whole(&big)).0,
            got("GET", "/big")
        );
        assert!(buf.buf.len() > HEAD_BUFFER_START);
        buf.shrink();
        assert_eq!(buf.buf.len(), HEAD_BUFFER_START, "idle again: small again");
        // Growing stops at the limit: a larger head is still refused as too large.
        let mut huge = b"GET /huge HTTP/1.1\r\n".to_vec();
        while huge.len() <= MAX_HEAD_BYTES {
            huge.extend_from_slice(format!("X-F: {}\r\n", "v".repeat(500)).as_bytes());
        }
        let mut buf = HeadBuf::new();
        assert_eq!(
            read(&mut buf, &mut Script::whole(&huge)).0,
            Head::Malformed(ParseError::HeadTooLarge)
        );
        assert_eq!(buf.buf.len(), MAX_HEAD_BYTES);
    }

    #[test]
    fn bytes_after_a_head_are_the_next_request() {
        let mut two = GET.to_vec();
        two.extend_from_slice(b"HEAD /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c");
        let mut buf = HeadBuf::new();
        let mut script = Script::whole(&two);
        assert_eq!(read(&mut buf, &mut script).0, got("GET", "/a"));
        // The second head is whole in the buffer: answered without a read.
        let mut nothing = Script::new([Step::Fail]);
        assert_eq!(read(&mut buf, &mut nothing).0, got("HEAD", "/b"));
        assert_eq!(buf.buffered(), b"GET /c");
        // The third one's first part is kept and the rest read.
        let mut rest = Script::drip(b" HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(read(&mut buf, &mut rest).0, got("GET", "/c"));
    }

    #[test]
    fn every_way_a_head_can_fail() {
        let spoiled_method = b"GET/ HTTP/1.1".to_vec();
        let mut long_line = b"GET /".to_vec();
        long_line.resize(MAX_REQUEST_LINE + 1, b'a');
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        while big.len() <= MAX_HEAD_BYTES {
            big.extend_from_slice(format!("X-Filler: {}\r\n", "f".repeat(1000)).as_bytes());
        }
        let client_hello = [0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00];
        let malformed = Head::Malformed;
        let cases: Vec<(&str, Script, Head<Target>)> = vec![
            ("nothing", Script::new([]), Head::Closed),
            (
                "only empty lines",
                Script::drip(b"\r\n\n\r\n"),
                Head::Closed,
            ),
            (
                "five empty lines",
                Script::whole(b"\r\n\r\n\r\n\r\n\r\n"),
                malformed(ParseError::BadStartLine),
            ),
            (
                "half a request line, then the end",
                Script::whole(b"GET /request/co"),
                malformed(ParseError::Incomplete),
            ),
            (
                "a head without its blank line, then the end",
                Script::drip(b"GET / HTTP/1.1\r\nHost: h\r\n"),
                malformed(ParseError::Incomplete),
            ),
            // "Answered before the next read": the script fails that read.
            (
                "a TLS ClientHello, answered before the next read",
                Script::new([Step::Bytes(client_hello.to_vec()), Step::Fail]),
                malformed(ParseError::BadStartLine),
            ),
            (
                "NULs one at a time, answered before the next read",
                Script::new([Step::Bytes(vec![0]), Step::Fail]),
                malformed(ParseError::BadStartLine),
            ),
            (
                "a control byte in a field, answered before the next read",
                Script::new([
                    Step::Bytes(b"GET / HTTP/1.1\r\nHo".to_vec()),
                    Step::Bytes(b"st: h\x01".to_vec()),
                    Step::Fail,
                ]),
                malformed(ParseError::BadHeader),
            ),
            (
                "a bare CR then a letter, answered before the next read",
                Script::new([
                    Step::Bytes(b"GET / HTTP/1.1\r".to_vec()),
                    Step::Bytes(b"X".to_vec()),
                    Step::Fail,
                ]),
                malformed(ParseError::BadStartLine),
            ),
            (
                "an overlong request line, answered before the next read",
                Script::new(
                    long_line
                        .chunks(1000)
                        .map(|c| Step::Bytes(c.to_vec()))
                        .chain([Step::Fail]),
                ),
                malformed(ParseError::RequestLineTooLong),
            ),
            (
                "a spoiled method dripped, then the end",
                Script::drip(&spoiled_method),
                malformed(ParseError::BadStartLine),
            ),
            (
                "a spoiled method dripped, then silence",
                Script::new(
                    spoiled_method
                        .iter()
                        .map(|&b| Step::Bytes(vec![b]))
                        .chain([Step::Silent]),
                ),
                malformed(ParseError::BadStartLine),
            ),
            (
                "too many fields",
                Script::whole(
                    format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(70)).as_bytes(),
                ),
                malformed(ParseError::TooManyHeaders),
            ),
            (
                "HTTP/2",
                Script::whole(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
                malformed(ParseError::UnsupportedVersion),
            ),
            (
                "an overlong request line, dripped",
                Script::drip(&long_line),
                malformed(ParseError::RequestLineTooLong),
            ),
            (
                "a head larger than the buffer",
                Script::whole(&big),
                malformed(ParseError::HeadTooLarge),
            ),
            (
                "half a head, then silence",
                Script::new([Step::Bytes(b"GET / HTTP/1.1\r\nHo".to_vec()), Step::Silent]),
                Head::TimedOut,
            ),
            ("silence", Script::new([Step::Silent]), Head::TimedOut),
        ];
        for (what, mut script, want) in cases {
            let mut buf = HeadBuf::new();
            let bound = script.line_ends() + 2;
            let (verdict, parses) = read(&mut buf, &mut script);
            assert_eq!(verdict, want, "{what}");
            assert!(parses <= bound, "{what}: {parses} parses");
        }
    }

    #[test]
    fn socket_errors_are_errors() {
        let mut buf = HeadBuf::new();
        let mut script = Script::new([Step::Bytes(b"GET / HT".to_vec()), Step::Fail]);
        let read = smol::block_on(buf.read_head(
            &mut script,
            Instant::now() + Duration::from_secs(5),
            |b| parse_request(b).map(|p| p.map(owned)),
        ));
        assert_eq!(
            read.expect_err("reset").kind(),
            io::ErrorKind::ConnectionReset
        );
    }
}
