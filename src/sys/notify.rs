//! systemd's readiness protocol (sd_notify(3)), written by hand: one datagram to the
//! socket named in `NOTIFY_SOCKET` (I/O). Without that variable (not under systemd) it does
//! nothing.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where `NOTIFY_SOCKET` points: a path, or an abstract name when it starts with `@`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    Path(String),
    Abstract(Vec<u8>),
}

/// Parse the value of `NOTIFY_SOCKET`; None if empty or of a kind we don't speak (vsock).
pub fn parse_target(value: &str) -> Option<NotifyTarget> {
    if let Some(name) = value.strip_prefix('@') {
        return (!name.is_empty()).then(|| NotifyTarget::Abstract(name.as_bytes().to_vec()));
    }
    value
        .starts_with('/')
        .then(|| NotifyTarget::Path(value.to_string()))
}

/// Send `state` (e.g. `READY=1`) if pacserve runs under systemd with `Type=notify`.
pub fn notify(state: &str) -> io::Result<()> {
    notify_via(std::env::var_os("NOTIFY_SOCKET").as_deref(), state)
}

/// [`notify`] with the value of `NOTIFY_SOCKET` given (None: not under systemd).
pub fn notify_via(socket: Option<&std::ffi::OsStr>, state: &str) -> io::Result<()> {
    let Some(value) = socket else {
        return Ok(());
    };
    let Some(target) = parse_target(&value.to_string_lossy()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither a path nor an abstract socket name",
        ));
    };
    let sock = UnixDatagram::unbound()?;
    match target {
        NotifyTarget::Path(path) => sock.send_to(state.as_bytes(), path)?,
        NotifyTarget::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?
        }
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("/run/systemd/notify"),
            Some(NotifyTarget::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_target("@/org/freedesktop/systemd1/notify/42"),
            Some(NotifyTarget::Abstract(
                b"/org/freedesktop/systemd1/notify/42".to_vec()
            ))
        );
        assert_eq!(parse_target(""), None);
        assert_eq!(parse_target("@"), None);
        assert_eq!(parse_target("vsock:2:1234"), None);
        assert_eq!(parse_target("relative/path"), None);
    }

    #[test]
    fn sends_to_a_path_socket() {
        let path = std::env::temp_dir().join(format!("pacserve-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        notify_via(Some(path.as_os_str()), "READY=1").expect("notify a path socket");
        let mut buf = [0u8; 32];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("pacserve-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let value = format!("@{name}");
        notify_via(Some(value.as_ref()), "STOPPING=1").expect("notify an abstract socket");
        let mut buf = [0u8; 32];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn without_systemd_does_nothing_and_a_bad_value_is_an_error() {
        assert!(notify_via(None, "READY=1").is_ok());
        let e = notify_via(Some("vsock:2:1".as_ref()), "READY=1").expect_err("vsock");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let gone = std::env::temp_dir().join("pacserve-notify-nobody-listens");
        assert!(notify_via(Some(gone.as_os_str()), "READY=1").is_err());
    }
}
