//! pacserve's URL space, pure: every route a request can take ([`route`]: the target → what
//! is asked for, checked against the allow-lists of [`crate::names`], so later steps only
//! ever see plain, safe names), and every URL pacserve builds (a peer's Location, the path
//! a peer is asked on, the line pacman is given).

use std::fmt;

use crate::names::{valid_arch, valid_file, valid_repo};
use crate::peers::table::PeerAddr;

/// Who a file route is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/request/…` (the original pacserve path) and `/pacman/…` (the later one): pacman's
    /// route, answered from the cache, the LAN, or the mirrors.
    Request,
    /// `/peer/…`: another pacserve asking; answered from this cache only, so lookups never
    /// recurse.
    Peer,
    /// `/cache/…`: pacman ≥ 6.1's `CacheServer`: the cache, then the LAN; a miss is a plain
    /// 404 (never a mirror redirect), so pacman quietly moves on to its own mirrors.
    Cache,
    /// `/lan/…`: where another pacserve sends pacman: this cache, then the mirrors, never a
    /// further peer. Redirects between pacservers never chain, even when answers about who
    /// holds a file have gone stale on both sides. pacman asks for the `.sig` here too.
    Lan,
}

/// The path prefixes of file routes.
pub const PREFIXES: [(&str, Endpoint); 5] = [
    ("request", Endpoint::Request),
    ("pacman", Endpoint::Request),
    (PEER_PREFIX, Endpoint::Peer),
    ("cache", Endpoint::Cache),
    (LAN_PREFIX, Endpoint::Lan),
];

/// The prefix a peer is asked on: its own cache only.
const PEER_PREFIX: &str = "peer";
/// The prefix pacman is sent to on a peer.
const LAN_PREFIX: &str = "lan";

/// The package listing other pacserves may fetch: `NAME SIZE` lines.
pub const INFO_PATH: &str = "/info";
/// The status page for a browser, and the same data for programs.
pub const STATUS_PATH: &str = "/";
pub const STATUS_JSON_PATH: &str = "/status.json";
pub const METRICS_PATH: &str = "/metrics";
/// What browsers ask for with every view of the status page.
pub const FAVICON_PATH: &str = "/favicon.ico";

/// The paths that are not file routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Info,
    Favicon,
    Status,
    StatusJson,
    Metrics,
}

/// Which page `target` asks for (query ignored), if it is one.
pub fn page(target: &str) -> Option<Page> {
    match target.split_once('?').map_or(target, |(p, _)| p) {
        INFO_PATH => Some(Page::Info),
        FAVICON_PATH => Some(Page::Favicon),
        STATUS_PATH => Some(Page::Status),
        STATUS_JSON_PATH => Some(Page::StatusJson),
        METRICS_PATH => Some(Page::Metrics),
        _ => None,
    }
}

/// The file of `/info/NAME`: one file of this host's listing, as a peer's route gives it
/// (this host's files only, with what a pacserve needs to judge the copy), whatever its
/// repository; a hub pulls it so. None for any other target.
pub fn listed_file(target: &str) -> Option<String> {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let name = decode_segment(path.strip_prefix(INFO_PATH)?.strip_prefix('/')?).ok()?;
    (valid_file(&name) && classify(&name) == Some(FileKind::Package)).then_some(name)
}

/// Where pacman is sent for a file a peer holds: the peer's `/lan/` route, which answers
/// from its cache (and sends a missing `.sig`, or a file it no longer holds, to its own
/// mirrors, never to another peer). A link-local peer's zone is written `%25eth0`, which
/// pacman's libcurl (pacman 6.0 and 7.1 alike) follows.
pub fn peer_location(peer: &PeerAddr, f: &FileRequest) -> String {
    format!(
        "http://{}/{LAN_PREFIX}/{}/{}/{}",
        peer.url_authority(),
        f.repo,
        f.arch,
        f.file
    )
}

/// The path a peer is asked on whether it holds `f`.
pub fn peer_query_path(f: &FileRequest) -> String {
    format!("/{PEER_PREFIX}/{}/{}/{}", f.repo, f.arch, f.file)
}

/// The `Server` line value pacman needs to use the pacserve on `port` of this host.
pub fn local_server(port: u16) -> String {
    format!("http://localhost:{port}/request/$repo/$arch")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `*.pkg.tar[.EXT]` or its `.sig`: served locally when cached.
    Package,
    /// Repository databases and their signatures: always from the mirrors.
    Database,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRequest {
    pub endpoint: Endpoint,
    pub repo: String,
    pub arch: String,
    /// A single plain file name: safe to join to a cache dir or append to a mirror URL.
    pub file: String,
    pub kind: FileKind,
}

/// Why a target was not routed; every one of these is a 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// Not one of our prefixes, or the wrong number of path segments.
    UnknownPath,
    /// A percent escape that is not two hex digits, or a decoded name that is not UTF-8.
    BadEncoding,
    /// A repo, arch or file name outside the allow-list (traversal, separators, control bytes).
    BadName,
    /// A plain file that is neither a package nor a database (e.g. `*.part`).
    NotServable,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for RouteError {}

impl RouteError {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteError::UnknownPath => "unknown path",
            RouteError::BadEncoding => "bad percent-encoding",
            RouteError::BadName => "name not allowed",
            RouteError::NotServable => "not a package or database file",
        }
    }
}

/// Route an origin-form request target (`/request/core/x86_64/FILE`, query ignored).
pub fn route(target: &str) -> Result<FileRequest, RouteError> {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let rest = path.strip_prefix('/').ok_or(RouteError::UnknownPath)?;
    let mut segments = rest.split('/');
    let (Some(prefix), Some(repo), Some(arch), Some(file), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(RouteError::UnknownPath);
    };
    let Some(&(_, endpoint)) = PREFIXES.iter().find(|(p, _)| *p == prefix) else {
        return Err(RouteError::UnknownPath);
    };
    let repo = decode_segment(repo)?;
    let arch = decode_segment(arch)?;
    let file = decode_segment(file)?;
    if !valid_repo(&repo) || !valid_arch(&arch) || !valid_file(&file) {
        return Err(RouteError::BadName);
    }
    let kind = classify(&file).ok_or(RouteError::NotServable)?;
    Ok(FileRequest {
        endpoint,
        repo,
        arch,
        file,
        kind,
    })
}

/// Percent-decode one path segment exactly once.
fn decode_segment(s: &str) -> Result<String, RouteError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(RouteError::BadEncoding);
            };
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| RouteError::BadEncoding)
}

/// What kind of file a (valid) name is; None for anything pacserve does not serve.
pub fn classify(file: &str) -> Option<FileKind> {
    let base = file.strip_suffix(".sig").unwrap_or(file);
    if is_package(base) {
        return Some(FileKind::Package);
    }
    if is_database(base) {
        return Some(FileKind::Database);
    }
    None
}

/// `NAME.pkg.tar` or `NAME.pkg.tar.EXT` with an alphanumeric compression suffix.
fn is_package(base: &str) -> bool {
    let Some(idx) = base.rfind(".pkg.tar") else {
        return false;
    };
    if idx == 0 {
        return false;
    }
    let tail = &base[idx + ".pkg.tar".len()..];
    tail.is_empty() || tail.strip_prefix('.').is_some_and(compression_ext)
}

/// `REPO.db`, `REPO.files`, or their `.tar.EXT` forms.
fn is_database(base: &str) -> bool {
    for kind in [".db", ".files"] {
        if let Some(idx) = base.rfind(kind) {
            if idx == 0 {
                continue;
            }
            let tail = &base[idx + kind.len()..];
            if tail.is_empty() {
                return true;
            }
            if let Some(ext) = tail.strip_prefix(".tar") {
                if ext.is_empty() || ext.strip_prefix('.').is_some_and(compression_ext) {
                    return true;
                }
            }
        }
    }
    false
}

fn compression_ext(ext: &str) -> bool {
    !ext.is_empty() && ext.len() <= 8 && ext.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(target: &str, repo: &str, arch: &str, file: &str, kind: FileKind) {
        let got = route(target).unwrap_or_else(|e| panic!("{target}: {e:?}"));
        let endpoint = if target.starts_with("/peer/") {
            Endpoint::Peer
        } else if target.starts_with("/cache/") {
            Endpoint::Cache
        } else if target.starts_with("/lan/") {
            Endpoint::Lan
        } else {
            Endpoint::Request
        };
        assert_eq!(
            got,
            FileRequest {
                endpoint,
                repo: repo.into(),
                arch: arch.into(),
                file: file.into(),
                kind
            },
            "{target}"
        );
    }

    #[test]
    fn routes_packages_and_databases() {
        use FileKind::*;
        let p = "zstd-1.5.5-1-x86_64.pkg.tar.zst";
        ok(
            &format!("/request/core/x86_64/{p}"),
            "core",
            "x86_64",
            p,
            Package,
        );
        ok(
            &format!("/pacman/core/x86_64/{p}"),
            "core",
            "x86_64",
            p,
            Package,
        );
        ok(
            &format!("/lan/core/x86_64/{p}.sig"),
            "core",
            "x86_64",
            &format!("{p}.sig"),
            Package,
        );
        ok(
            &format!("/pacman/core/x86_64/{p}.sig"),
            "core",
            "x86_64",
            &format!("{p}.sig"),
            Package,
        );
        ok(
            "/request/extra/aarch64/a-1-1-any.pkg.tar.xz",
            "extra",
            "aarch64",
            "a-1-1-any.pkg.tar.xz",
            Package,
        );
        ok(
            "/request/extra/x86_64/a-1-1-any.pkg.tar",
            "extra",
            "x86_64",
            "a-1-1-any.pkg.tar",
            Package,
        );
        ok(
            "/request/core/x86_64/vim-2:9.0-1-x86_64.pkg.tar.zst",
            "core",
            "x86_64",
            "vim-2:9.0-1-x86_64.pkg.tar.zst",
            Package,
        );
        ok(
            "/request/core/x86_64/vim-2%3A9.0-1-x86_64.pkg.tar.zst",
            "core",
            "x86_64",
            "vim-2:9.0-1-x86_64.pkg.tar.zst",
            Package,
        );
        ok(
            "/request/core/x86_64/lib32-gcc-libs-13.2.1+r2-1-x86_64.pkg.tar.zst?x=1",
            "core",
            "x86_64",
            "lib32-gcc-libs-13.2.1+r2-1-x86_64.pkg.tar.zst",
            Package,
        );
        ok(
            "/request/core/x86_64/core.db",
            "core",
            "x86_64",
            "core.db",
            Database,
        );
        ok(
            "/request/core/x86_64/core.db.sig",
            "core",
            "x86_64",
            "core.db.sig",
            Database,
        );
        ok(
            "/request/core/x86_64/core.files",
            "core",
            "x86_64",
            "core.files",
            Database,
        );
        ok(
            "/request/core/x86_64/core.db.tar.gz",
            "core",
            "x86_64",
            "core.db.tar.gz",
            Database,
        );
        ok(
            "/request/core/x86_64/core.files.tar.zst.sig",
            "core",
            "x86_64",
            "core.files.tar.zst.sig",
            Database,
        );
        ok(
            "/request/my-repo_2/x86_64/my-repo_2.db",
            "my-repo_2",
            "x86_64",
            "my-repo_2.db",
            Database,
        );
    }

    #[test]
    fn rejects_hostile_targets() {
        use RouteError::*;
        let cases: &[(&str, RouteError)] = &[
            ("", UnknownPath),
            ("*", UnknownPath),
            ("/", UnknownPath),
            (
                "http://example.com/request/core/x86_64/a.pkg.tar.zst",
                UnknownPath,
            ),
            ("/request/core/x86_64", UnknownPath),
            ("/request/core/x86_64/", BadName),
            ("/other/core/x86_64/a.pkg.tar.zst", UnknownPath),
            ("/request/core/x86_64/../../etc/passwd", UnknownPath),
            ("/request/core/x86_64/sub/a.pkg.tar.zst", UnknownPath),
            ("/request//x86_64/a.pkg.tar.zst", BadName),
            ("/request/core/x86_64/..", BadName),
            ("/request/core/x86_64/.", BadName),
            ("/request/../x86_64/a.pkg.tar.zst", BadName),
            ("/request/core/../a.pkg.tar.zst", BadName),
            ("/request/core/x86_64/%2e%2e", BadName),
            ("/request/core/x86_64/%2E%2E%2Fetc%2Fpasswd", BadName),
            (
                "/request/core/x86_64/..%2fetc%2fpasswd.pkg.tar.zst",
                BadName,
            ),
            (
                "/request/core/x86_64/%252e%252e%252fetc.pkg.tar.zst",
                BadName,
            ),
            ("/request/core/x86_64/a%2fb.pkg.tar.zst", BadName),
            ("/request/core/x86_64/a%5cb.pkg.tar.zst", BadName),
            ("/request/core/x86_64/a\\b.pkg.tar.zst", BadName),
            ("/request/core/x86_64/a%00.pkg.tar.zst", BadName),
            ("/request/core/x86_64/a%0d%0a.pkg.tar.zst", BadName),
            ("/request/core/x86_64/a%20b.pkg.tar.zst", BadName),
            ("/request/core/x86_64/%ff.pkg.tar.zst", BadEncoding),
            ("/request/core/x86_64/a%2.pkg.tar.zst", BadEncoding),
            ("/request/core/x86_64/a%zz.pkg.tar.zst", BadEncoding),
            ("/request/core/x86_64/a%", BadEncoding),
            ("/request/core/x86_64/.hidden.pkg.tar.zst", BadName),
            ("/request/core/x86_64/-rf.pkg.tar.zst", BadName),
            ("/request/core/x86%2f64/a.pkg.tar.zst", BadName),
            ("/request/co%2fre/x86_64/a.pkg.tar.zst", BadName),
            (
                "/request/core/x86_64/a-1-1-x86_64.pkg.tar.zst.part",
                NotServable,
            ),
            ("/request/core/x86_64/a.pkg.tar.zst.sig.part", NotServable),
            ("/request/core/x86_64/core.db.part", NotServable),
            ("/request/core/x86_64/download-abc123", NotServable),
            ("/request/core/x86_64/passwd", NotServable),
            ("/request/core/x86_64/.pkg.tar.zst", BadName),
            ("/request/core/x86_64/a.pkg.tar.zst.sig.sig", NotServable),
            ("/request/core/x86_64/a.pkg.tar.z-st", NotServable),
            ("/request/core/x86_64/a.pkg.tarball", NotServable),
            ("/request/core/x86_64/a.dbx", NotServable),
        ];
        for (target, want) in cases {
            assert_eq!(route(target), Err(*want), "{target:?}");
        }
    }

    #[test]
    fn pages_and_built_urls() {
        assert_eq!(page("/"), Some(Page::Status));
        assert_eq!(page("/?refresh=1"), Some(Page::Status));
        assert_eq!(page("/status.json"), Some(Page::StatusJson));
        assert_eq!(page("/metrics"), Some(Page::Metrics));
        assert_eq!(page("/info"), Some(Page::Info));
        assert_eq!(page("/favicon.ico"), Some(Page::Favicon));
        assert_eq!(page("/info/"), None);
        assert_eq!(page("/request/core/x86_64/a.pkg.tar.zst"), None);
        // One file of the listing, by name; nothing else under /info/.
        for (target, want) in [
            (
                "/info/vim-2%3A9.0-1-x86_64.pkg.tar.zst",
                Some("vim-2:9.0-1-x86_64.pkg.tar.zst"),
            ),
            (
                "/info/a-1-1-any.pkg.tar.zst.sig?x",
                Some("a-1-1-any.pkg.tar.zst.sig"),
            ),
            ("/info/", None),
            ("/info/core.db", None),
            ("/info/a-1-1-any.pkg.tar.zst.part", None),
            ("/info/..%2Fa-1-1-any.pkg.tar.zst", None),
            ("/info/x/a-1-1-any.pkg.tar.zst", None),
            ("/infox/a-1-1-any.pkg.tar.zst", None),
        ] {
            assert_eq!(listed_file(target).as_deref(), want, "{target}");
        }

        let f = route("/cache/core/x86_64/vim-2%3A9.0-1-x86_64.pkg.tar.zst").unwrap();
        let peer = crate::peers::table::parse_peer_addr("[fd00::2]:15678").unwrap();
        let location = peer_location(&peer, &f);
        assert_eq!(
            location,
            "http://[fd00::2]:15678/lan/core/x86_64/vim-2:9.0-1-x86_64.pkg.tar.zst"
        );
        // What we build is what we route: the Location and the query path come back whole.
        let back = route(location.trim_start_matches("http://[fd00::2]:15678")).unwrap();
        assert_eq!((back.endpoint, &back.file), (Endpoint::Lan, &f.file));
        // A link-local peer: the zone escaped as RFC 6874 and libcurl want it.
        let ll = crate::peers::table::parse_peer_addr("[fe80::2%eth0]:15678").unwrap();
        assert_eq!(
            peer_location(&ll, &f),
            "http://[fe80::2%25eth0]:15678/lan/core/x86_64/vim-2:9.0-1-x86_64.pkg.tar.zst"
        );
        let query = peer_query_path(&f);
        assert_eq!(query, "/peer/core/x86_64/vim-2:9.0-1-x86_64.pkg.tar.zst");
        assert_eq!(route(&query).unwrap().endpoint, Endpoint::Peer);
        assert_eq!(
            local_server(15678),
            "http://localhost:15678/request/$repo/$arch"
        );
    }

    #[test]
    fn rejects_overlong_names() {
        let long = format!("/request/core/x86_64/{}.pkg.tar.zst", "a".repeat(300));
        assert_eq!(route(&long), Err(RouteError::BadName));
        let long_repo = format!("/request/{}/x86_64/a.pkg.tar.zst", "r".repeat(65));
        assert_eq!(route(&long_repo), Err(RouteError::BadName));
    }
}
