//! Mirror and peer URLs: a small parser for `http://` and `https://` URLs, pure.
//!
//! Deliberately narrower than RFC 3986: no userinfo, no zone ids, no percent-encoded or
//! non-ASCII hosts, and no numeric host that is not a plain dotted quad (`127.1`,
//! `2130706433` and `0x7f.0.0.1` all reach 127.0.0.1 through inet_aton, and would slip past
//! `points_at_self`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// Host as written, lower-cased; IPv6 literals without brackets.
    pub host: String,
    pub port: u16,
    /// Path (with query, if any), always starting with `/`; never empty.
    pub path: String,
}

impl Url {
    /// `host[:port]` as it goes in a Host header: IPv6 in brackets, the port only when it is
    /// not the scheme's default. The zone of a link-local peer (a `Url` built for one, never
    /// parsed) is this host's business and left out, as curl does.
    pub fn authority(&self) -> String {
        let mut s = if self.host.contains(':') {
            format!("[{}]", self.host.split('%').next().unwrap_or_default())
        } else {
            self.host.clone()
        };
        if self.port != self.scheme.default_port() {
            s.push(':');
            s.push_str(&self.port.to_string());
        }
        s
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

fn err(msg: impl Into<String>) -> UrlError {
    UrlError(msg.into())
}

/// Parse an absolute `http://` or `https://` URL; the fragment, if any, is dropped.
pub fn parse_url(s: &str) -> Result<Url, UrlError> {
    if let Some(b) = s.bytes().find(|&b| !(0x21..=0x7e).contains(&b)) {
        let what = match b {
            b' ' => "a space",
            0x80.. => "a non-ASCII character",
            _ => "a control character",
        };
        // `s` is not echoed: it may be the very control bytes we refuse.
        return Err(err(format!("URL contains {what}")));
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(err(format!(
            "'{s}' is not an absolute http:// or https:// URL"
        )));
    };
    let scheme = if scheme.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else if scheme.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else if scheme.is_empty() {
        return Err(err(format!("'{s}' has no scheme (only http and https)")));
    } else {
        return Err(err(format!(
            "unsupported scheme '{scheme}' (only http and https)"
        )));
    };

    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(err(format!(
            "'{s}': user names and passwords in URLs are not supported"
        )));
    }

    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((v6, after)) = bracketed.split_once(']') else {
            return Err(err(format!("'{s}': missing ']' after IPv6 address")));
        };
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(err(format!("'{s}': invalid IPv6 address '{v6}'")));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err(err(format!("'{s}': junk after IPv6 address"))),
            },
        };
        (v6, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };

    let port = match port {
        // RFC 3986 §3.2.3: an empty port means the default.
        None | Some("") => scheme.default_port(),
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port != 0 && p.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => return Err(err(format!("'{s}': invalid port '{p}' (1-65535)"))),
        },
    };

    let host = host.to_ascii_lowercase();
    if host.is_empty() {
        return Err(err(format!("'{s}': empty host")));
    }
    if !authority.starts_with('[') {
        check_reg_name(&host).map_err(|why| err(format!("'{s}': {why}")))?;
    }

    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    Ok(Url {
        scheme,
        host,
        port,
        path,
    })
}

/// A DNS name or a dotted-quad IPv4 address.
fn check_reg_name(host: &str) -> Result<(), String> {
    if let Some(b) = host
        .bytes()
        .find(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'))
    {
        let what = if b == b':' {
            "IPv6 addresses need brackets".to_string()
        } else {
            format!("invalid character '{}' in host", b as char)
        };
        return Err(what);
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.split('.').any(str::is_empty) {
        return Err(format!("empty label in host '{host}'"));
    }
    // WHATWG URL: a host whose last label is numeric is an IPv4 address. Only the canonical
    // dotted quad is accepted, so the address we compare is the one that gets dialled.
    // `127.0.0.1.`: the label before the trailing dot decides.
    let last = name.rsplit('.').next().unwrap_or_default();
    let numeric = !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || (last.starts_with("0x") && last[2..].bytes().all(|b| b.is_ascii_hexdigit())));
    if numeric && host.parse::<Ipv4Addr>().is_err() {
        return Err(format!("'{host}' is not a dotted-quad IPv4 address"));
    }
    Ok(())
}

/// True when `url` points at this very pacserve, which would make pacman loop.
///
/// The port must be ours, and the host one of: `localhost` and its subdomains (RFC 6761),
/// any loopback or unspecified address (also IPv4-mapped), one of `own_addrs`, `hostname`,
/// or a name that resolves (`resolved`: its addresses, looked up by the caller) to one of
/// those (an alias in /etc/hosts, an FQDN, a hub's shared name).
pub fn points_at_self(
    url: &Url,
    own_port: u16,
    own_addrs: &[IpAddr],
    hostname: Option<&str>,
    resolved: &[IpAddr],
) -> bool {
    if url.port != own_port {
        return false;
    }
    // A trailing dot only makes a name absolute; it is the same host.
    let host = url.host.strip_suffix('.').unwrap_or(&url.host);
    if host.eq_ignore_ascii_case("localhost") || ends_with_ignore_case(host, ".localhost") {
        return true;
    }
    let ours = |ip: IpAddr| {
        let ip = ip.to_canonical();
        ip.is_loopback()
            || ip.is_unspecified()
            || own_addrs.iter().any(|own| own.to_canonical() == ip)
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ours(ip);
    }
    let named_so = match hostname.map(|h| h.strip_suffix('.').unwrap_or(h)) {
        Some(name) if !name.is_empty() => host.eq_ignore_ascii_case(name),
        _ => false,
    };
    named_so || resolved.iter().any(|ip| ours(*ip))
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(scheme: Scheme, host: &str, port: u16, path: &str) -> Url {
        Url {
            scheme,
            host: host.to_string(),
            port,
            path: path.to_string(),
        }
    }

    #[test]
    fn good_urls() {
        use Scheme::*;
        let cases: &[(&str, Url, &str)] = &[
            (
                "http://mirror.example.org/archlinux/$repo/os/$arch",
                url(Http, "mirror.example.org", 80, "/archlinux/$repo/os/$arch"),
                "http://mirror.example.org/archlinux/$repo/os/$arch",
            ),
            (
                "https://geo.mirror.pkgbuild.com/$repo/os/$arch",
                url(Https, "geo.mirror.pkgbuild.com", 443, "/$repo/os/$arch"),
                "https://geo.mirror.pkgbuild.com/$repo/os/$arch",
            ),
            ("http://h", url(Http, "h", 80, "/"), "http://h/"),
            ("http://h/", url(Http, "h", 80, "/"), "http://h/"),
            ("HTTP://H", url(Http, "h", 80, "/"), "http://h/"),
            (
                "HtTpS://Mirror.EXAMPLE.org/Path",
                url(Https, "mirror.example.org", 443, "/Path"),
                "https://mirror.example.org/Path",
            ),
            ("http://h:8080", url(Http, "h", 8080, "/"), "http://h:8080/"),
            ("http://h:80/x", url(Http, "h", 80, "/x"), "http://h/x"),
            (
                "https://h:80/x",
                url(Https, "h", 80, "/x"),
                "https://h:80/x",
            ),
            (
                "http://h:443/x",
                url(Http, "h", 443, "/x"),
                "http://h:443/x",
            ),
            (
                "http://h:65535/",
                url(Http, "h", 65535, "/"),
                "http://h:65535/",
            ),
            ("http://h:1/", url(Http, "h", 1, "/"), "http://h:1/"),
            ("http://h:00080/", url(Http, "h", 80, "/"), "http://h/"),
            ("http://h:/", url(Http, "h", 80, "/"), "http://h/"),
            ("http://h?q=1", url(Http, "h", 80, "/?q=1"), "http://h/?q=1"),
            (
                "http://h:81?q=1",
                url(Http, "h", 81, "/?q=1"),
                "http://h:81/?q=1",
            ),
            (
                "http://h/p?q=1&r=%20#frag",
                url(Http, "h", 80, "/p?q=1&r=%20"),
                "http://h/p?q=1&r=%20",
            ),
            ("http://h#frag", url(Http, "h", 80, "/"), "http://h/"),
            ("http://h/#", url(Http, "h", 80, "/"), "http://h/"),
            ("http://h/a#b#c", url(Http, "h", 80, "/a"), "http://h/a"),
            (
                "http://h/a/../b/./%2e%2e",
                url(Http, "h", 80, "/a/../b/./%2e%2e"),
                "http://h/a/../b/./%2e%2e",
            ),
            ("http://h//x", url(Http, "h", 80, "//x"), "http://h//x"),
            (
                "http://192.168.1.2:7878/",
                url(Http, "192.168.1.2", 7878, "/"),
                "http://192.168.1.2:7878/",
            ),
            (
                "http://127.0.0.1/",
                url(Http, "127.0.0.1", 80, "/"),
                "http://127.0.0.1/",
            ),
            ("http://[::1]/", url(Http, "::1", 80, "/"), "http://[::1]/"),
            (
                "http://[::1]:7878/x",
                url(Http, "::1", 7878, "/x"),
                "http://[::1]:7878/x",
            ),
            (
                "https://[FE80::1]:443",
                url(Https, "fe80::1", 443, "/"),
                "https://[fe80::1]/",
            ),
            (
                "http://[::ffff:127.0.0.1]/",
                url(Http, "::ffff:127.0.0.1", 80, "/"),
                "http://[::ffff:127.0.0.1]/",
            ),
            ("http://[::1]:/", url(Http, "::1", 80, "/"), "http://[::1]/"),
            (
                "http://localhost./",
                url(Http, "localhost.", 80, "/"),
                "http://localhost./",
            ),
            (
                "http://under_score.lan/",
                url(Http, "under_score.lan", 80, "/"),
                "http://under_score.lan/",
            ),
            (
                "http://xn--bcher-kva.example/",
                url(Http, "xn--bcher-kva.example", 80, "/"),
                "http://xn--bcher-kva.example/",
            ),
            (
                "http://1.2.3.4.example/",
                url(Http, "1.2.3.4.example", 80, "/"),
                "http://1.2.3.4.example/",
            ),
            (
                "http://h/~user/a;b,c!d$e'f(g)h*i+j=k@l:m",
                url(Http, "h", 80, "/~user/a;b,c!d$e'f(g)h*i+j=k@l:m"),
                "http://h/~user/a;b,c!d$e'f(g)h*i+j=k@l:m",
            ),
        ];
        for (input, want, shown) in cases {
            let got = parse_url(input).unwrap_or_else(|e| panic!("{input}: {}", e.0));
            assert_eq!(&got, want, "{input}");
            assert_eq!(got.to_string(), *shown, "{input}");
            assert_eq!(parse_url(shown).as_ref(), Ok(want), "{shown}");
        }
    }

    #[test]
    fn bad_urls() {
        // (input, a piece of the message)
        let cases: &[(&str, &str)] = &[
            (
                "ftp://mirror/x",
                "unsupported scheme 'ftp' (only http and https)",
            ),
            ("file:///srv/repo", "unsupported scheme 'file'"),
            ("httpx://h/", "unsupported scheme 'httpx'"),
            ("https+unix://h/", "unsupported scheme"),
            ("://h/", "no scheme"),
            ("mirror.example.org/x", "not an absolute"),
            ("http:/h/", "not an absolute"),
            ("http:h", "not an absolute"),
            ("", "not an absolute"),
            ("/relative/path", "not an absolute"),
            ("http:///x", "empty host"),
            ("http://", "empty host"),
            ("http://:80/", "empty host"),
            ("http://?q", "empty host"),
            ("http://#f", "empty host"),
            ("http://[]/", "invalid IPv6"),
            ("http://user@h/", "user names"),
            ("http://user:pw@h/", "user names"),
            ("http://@h/", "user names"),
            ("http://h@evil/", "user names"),
            ("http://h:0/", "invalid port"),
            ("http://h:65536/", "invalid port"),
            ("http://h:99999999999999999999/", "invalid port"),
            ("http://h:-1/", "invalid port"),
            ("http://h:+80/", "invalid port"),
            ("http://h:8o/", "invalid port"),
            ("http://h:80:80/", "invalid port"),
            ("http://::1/", "invalid port"),
            ("http://[::1/", "missing ']'"),
            ("http://[::1]x/", "junk after"),
            ("http://[::1]]/", "junk after"),
            ("http://[127.0.0.1]/", "invalid IPv6"),
            ("http://[fe80::1%eth0]/", "invalid IPv6"),
            ("http://[fe80::1%25eth0]/", "invalid IPv6"),
            ("http://[::g]/", "invalid IPv6"),
            ("http://h h/", "a space"),
            ("http://h/a b", "a space"),
            (" http://h/", "a space"),
            ("http://h/\t", "a control character"),
            ("http://h/\0", "a control character"),
            ("http://h/\r\nHost: evil", "a control character"),
            ("http://h\n/", "a control character"),
            ("http://h/\x7f", "a control character"),
            ("http://bücher.example/", "non-ASCII"),
            ("http://h/ü", "non-ASCII"),
            ("http://h%2e/", "invalid character '%'"),
            ("http://h!/", "invalid character '!'"),
            ("http://h\\evil/", "invalid character '\\'"),
            ("http://h;x/", "invalid character ';'"),
            ("http://127.1/", "not a dotted-quad"),
            ("http://2130706433/", "not a dotted-quad"),
            ("http://0x7f.0.0.1/", "not a dotted-quad"),
            ("http://0x7f000001/", "not a dotted-quad"),
            ("http://127.0.0.01/", "not a dotted-quad"),
            ("http://127.000.000.001/", "not a dotted-quad"),
            ("http://127.0.0.1./", "not a dotted-quad"),
            ("http://256.0.0.1/", "not a dotted-quad"),
            ("http://1.2.3.4.5/", "not a dotted-quad"),
            ("http://0/", "not a dotted-quad"),
            ("http://example.123/", "not a dotted-quad"),
            ("http://0x/", "not a dotted-quad"),
            ("http://a..b/", "empty label"),
            ("http://./", "empty label"),
            ("http://.a/", "empty label"),
            ("http://a../", "empty label"),
        ];
        for (input, msg) in cases {
            match parse_url(input) {
                Err(UrlError(got)) => {
                    assert!(got.contains(msg), "{input:?}: {got:?} lacks {msg:?}")
                }
                Ok(u) => panic!("{input:?} parsed as {u:?}"),
            }
        }
    }

    #[test]
    fn errors_do_not_echo_control_bytes() {
        for input in ["http://h/\x1b[2J", "ftp\x07://h/", "http://h/\r\n"] {
            let UrlError(msg) = parse_url(input).unwrap_err();
            assert!(!msg.chars().any(char::is_control), "{msg:?}");
        }
    }

    #[test]
    fn authority() {
        let cases = [
            ("http://h/", "h"),
            ("http://h:8080/", "h:8080"),
            ("https://h:443/", "h"),
            ("https://h:80/", "h:80"),
            ("http://[::1]/", "[::1]"),
            ("http://[::1]:7878/", "[::1]:7878"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_url(input).unwrap().authority(), want, "{input}");
        }
    }

    #[test]
    fn self_detection() {
        let lan: IpAddr = "192.168.1.2".parse().unwrap();
        let lan6: IpAddr = "fd00::2".parse().unwrap();
        let own = [lan, lan6];
        let host = Some("archbox");
        // (url, own port, points at self)
        let cases: &[(&str, u16, bool)] = &[
            ("http://localhost:7878/", 7878, true),
            ("http://LOCALHOST:7878/", 7878, true),
            ("http://localhost.:7878/", 7878, true),
            ("http://foo.localhost:7878/", 7878, true),
            ("http://foo.localhost.:7878/", 7878, true),
            ("http://localhost:7879/", 7878, false),
            ("http://localhost/", 7878, false),
            ("http://localhost/", 80, true),
            ("https://localhost/", 443, true),
            ("https://localhost/", 80, false),
            ("http://localhost:443/", 443, true),
            ("http://notlocalhost:7878/", 7878, false),
            ("http://localhost.example:7878/", 7878, false),
            ("http://127.0.0.1:7878/", 7878, true),
            ("http://127.0.0.2:7878/", 7878, true),
            ("http://127.255.255.254:7878/", 7878, true),
            ("http://128.0.0.1:7878/", 7878, false),
            ("http://0.0.0.0:7878/", 7878, true),
            ("http://[::1]:7878/", 7878, true),
            ("http://[0:0:0:0:0:0:0:1]:7878/", 7878, true),
            ("http://[::]:7878/", 7878, true),
            ("http://[::ffff:127.0.0.1]:7878/", 7878, true),
            ("http://[::ffff:7f00:1]:7878/", 7878, true),
            ("http://[::ffff:0.0.0.0]:7878/", 7878, true),
            ("http://[::ffff:192.168.1.2]:7878/", 7878, true),
            ("http://192.168.1.2:7878/", 7878, true),
            ("http://192.168.1.2:7879/", 7878, false),
            ("http://192.168.1.3:7878/", 7878, false),
            ("http://[fd00::2]:7878/", 7878, true),
            ("http://[FD00:0::2]:7878/", 7878, true),
            ("http://[fd00::3]:7878/", 7878, false),
            ("http://archbox:7878/", 7878, true),
            ("http://ARCHBOX:7878/", 7878, true),
            ("http://archbox.:7878/", 7878, true),
            ("http://archbox:7879/", 7878, false),
            ("http://archbox.lan:7878/", 7878, false),
            ("http://mirror.example.org:7878/", 7878, false),
            ("http://10.0.0.1:7878/", 7878, false),
        ];
        for &(input, port, want) in cases {
            let u = parse_url(input).unwrap();
            assert_eq!(
                points_at_self(&u, port, &own, host, &[]),
                want,
                "{input} port {port}"
            );
        }
        // Own addresses given as mapped IPv6 still match.
        let mapped: IpAddr = "::ffff:10.1.1.1".parse().unwrap();
        let u = parse_url("http://10.1.1.1:7878/").unwrap();
        assert!(points_at_self(&u, 7878, &[mapped], None, &[]));
        // A name that resolves to this host (an alias, an FQDN) is this host.
        let alias = parse_url("http://pacserve-hub.lan:7878/x").unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        let elsewhere: IpAddr = "192.0.2.77".parse().unwrap();
        assert!(points_at_self(&alias, 7878, &own, None, &[elsewhere, v6]));
        assert!(points_at_self(&alias, 7878, &own, None, &[own[0]]));
        assert!(!points_at_self(&alias, 7878, &own, None, &[elsewhere]));
        assert!(
            !points_at_self(&alias, 7879, &own, None, &[v6]),
            "another port"
        );
        // Without a hostname, or with an empty one, names other than localhost never match.
        let u = parse_url("http://archbox:7878/").unwrap();
        assert!(!points_at_self(&u, 7878, &[], None, &[]));
        assert!(!points_at_self(&u, 7878, &[], Some(""), &[]));
        assert!(points_at_self(&u, 7878, &[], Some("ArchBox."), &[]));
        // Hand-built Urls (not through parse_url) do not panic.
        let odd = url(Scheme::Http, "", 7878, "/");
        assert!(!points_at_self(&odd, 7878, &own, Some(""), &[]));
        let odd = url(Scheme::Http, ".", 7878, "/");
        assert!(!points_at_self(&odd, 7878, &own, Some("."), &[]));
    }
}
