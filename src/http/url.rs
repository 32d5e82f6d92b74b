//! Mirror and peer URLs: a small parser for `http://` and `https://` URLs, pure.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub String);

pub fn parse_url(s: &str) -> Result<Url, UrlError> {
    let _ = s;
    todo!()
}

/// True when `url` points at this very pacserve, which would make pacman loop.
pub fn points_at_self(url: &Url, own_port: u16, own_addrs: &[IpAddr], hostname: Option<&str>) -> bool {
    let _ = (url, own_port, own_addrs, hostname);
    todo!()
}
