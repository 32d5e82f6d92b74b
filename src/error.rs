//! An I/O error with what pacserve was doing when it happened, the way walkdir keeps the path:
//! the message a user reads ("joining 239.255.15.78 on 10.0.0.2: No such device") and the OS
//! error kept whole as its source, so callers can still ask for its kind and errno. No I/O.

use std::fmt;
use std::io;

#[derive(Debug)]
pub struct IoError {
    doing: String,
    source: io::Error,
}

impl IoError {
    /// `source`, met while `doing` (worded to follow "while": "binding UDP 0.0.0.0:15679").
    pub fn new(doing: impl fmt::Display, source: impl Into<io::Error>) -> IoError {
        IoError {
            doing: doing.to_string(),
            source: source.into(),
        }
    }

    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }

    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.doing, self.source)
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A value a user gave (an option, a config value) that cannot be used; the text says which
/// value and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// Whether `e` says this host ran out of something (descriptors, buffers, memory): not the
/// fault of the peer or mirror we were talking to, so never held against it.
pub fn local_shortage(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let shortages = [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM];
    e.raw_os_error()
        .is_some_and(|code| shortages.iter().any(|s| s.raw_os_error() == code))
        || e.kind() == io::ErrorKind::OutOfMemory
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn tells_local_shortages_from_remote_failures() {
        for code in [24, 23, 105, 12] {
            assert!(
                local_shortage(&io::Error::from_raw_os_error(code)),
                "{code}"
            );
        }
        for code in [111, 110, 113, 104] {
            assert!(
                !local_shortage(&io::Error::from_raw_os_error(code)),
                "{code}"
            );
        }
        assert!(!local_shortage(&io::Error::new(
            io::ErrorKind::TimedOut,
            "x"
        )));
    }

    #[test]
    fn keeps_the_os_error() {
        let e = IoError::new(
            "joining 239.255.15.78 on lo",
            io::Error::from_raw_os_error(19),
        );
        assert_eq!(e.raw_os_error(), Some(19));
        assert!(e.to_string().starts_with("joining 239.255.15.78 on lo: "));
        let source = e.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(source.and_then(io::Error::raw_os_error), Some(19));
    }
}
