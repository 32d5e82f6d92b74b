//! What pacserve answers: local cache → mirrors, databases straight to the mirrors.
//!
//! The I/O shell around the pure decisions in `route`, `resolve` and `http::range`.

pub mod local;
pub mod mirrors;
pub mod outcome;
pub mod stats;
pub mod status;
pub mod urls;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::app::local::{CachedFile, OpenCache, dirs_stamp, list_packages, open_cached};
use crate::app::mirrors::{
    DeadMirrors, MirrorStep, ProbeVerdict, RepoTable, pick_database_mirror, plan_package,
    probe_verdict,
};
use crate::app::outcome::{Answer, Outcome};
use crate::app::stats::Stats;
use crate::app::urls::{Endpoint, FileKind, FileRequest, Page, route};
use crate::http::client::head_status;
use crate::http::date::{format_http_date, parse_http_date};
use crate::http::message::{Body, Method, Request, Response};
use crate::http::range::{RangeDecision, decide_range};
use crate::http::server::{Completed, Handler, ShellAnswer};
use crate::http::url::Url;
use crate::limits::MIRROR_PROBE_TIMEOUT;
use crate::peers::discovery::DiscoveryStats;
use crate::peers::lookup::PeerLookup;
use crate::peers::table::Source;
use crate::sys::log::escape;
use status::{PeerView, StatusView};

/// What a (re)load of pacman.conf yields.
#[derive(Debug, Clone)]
pub struct Config {
    pub cache_dirs: Vec<PathBuf>,
    pub repos: RepoTable,
}

/// The cache dirs' mtimes and the `/info` body rendered from them.
#[derive(Clone)]
struct InfoListing {
    stamp: Vec<Option<std::time::SystemTime>>,
    body: Arc<Vec<u8>>,
    count: u64,
}

pub struct Service {
    config: RwLock<Arc<Config>>,
    dead_mirrors: Mutex<DeadMirrors>,
    peers: PeerLookup,
    open_files: OpenCache,
    stats: Stats,
    /// `group:port` when multicast discovery is on, for the status page.
    multicast: Option<String>,
    discovery_stats: Option<Arc<DiscoveryStats>>,
    /// The rendered `/info` listing and the cache dirs' mtimes it was made from.
    info: Mutex<Option<InfoListing>>,
}

impl Service {
    pub fn new(config: Config, peers: PeerLookup) -> Service {
        Service {
            config: RwLock::new(Arc::new(config)),
            dead_mirrors: Mutex::new(DeadMirrors::default()),
            peers,
            info: Mutex::new(None),
            stats: Stats::default(),
            open_files: OpenCache::default(),
            multicast: None,
            discovery_stats: None,
        }
    }

    /// Say on the status page that discovery runs, and where.
    pub fn with_multicast(mut self, description: String, stats: Arc<DiscoveryStats>) -> Service {
        self.multicast = Some(description);
        self.discovery_stats = Some(stats);
        self
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn peers(&self) -> &PeerLookup {
        &self.peers
    }

    /// Swap in a new configuration; requests in flight keep the one they started with.
    pub fn replace_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        self.open_files.clear();
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn dead(&self) -> std::sync::MutexGuard<'_, DeadMirrors> {
        // A panic elsewhere cannot leave this table half-updated in a harmful way.
        crate::lock(&self.dead_mirrors)
    }

    async fn answer(&self, req: &Request) -> Answer {
        if req.method == Method::Other {
            return Answer::new(405, Outcome::Bad).header("Allow", "GET, HEAD");
        }
        match urls::page(&req.target) {
            Some(Page::Info) => return self.info().await,
            // Browsers ask for it with every view of the status page; not a lookup.
            Some(Page::Favicon) => return Answer::new(404, Outcome::Status),
            Some(page) => return self.status_page(page).await,
            None => {}
        }
        let file_req = match route(&req.target) {
            Ok(r) => r,
            Err(e) => {
                crate::verbose!(
                    "{}: {}",
                    crate::sys::log::escape(req.target.as_bytes()),
                    e.as_str()
                );
                return Answer::new(404, Outcome::Bad);
            }
        };
        let config = self.config();
        if !config.repos.has_repo(&file_req.repo) {
            crate::verbose!("{}: repository not in pacman.conf", file_req.repo);
            return Answer::new(404, Outcome::Miss);
        }
        if !config.repos.serves_arch(&file_req.arch) {
            crate::verbose!("{}: architecture not in pacman.conf", file_req.arch);
            return Answer::new(404, Outcome::Miss);
        }
        match (file_req.endpoint, file_req.kind) {
            (Endpoint::Request, FileKind::Database) => self.database(&config, &file_req),
            (Endpoint::Request, FileKind::Package) => self.package(&config, &file_req, req).await,
            (Endpoint::Peer, FileKind::Package) => self.peer_query(&config, &file_req, req).await,
            (Endpoint::Cache, FileKind::Package) => {
                self.cache_server(&config, &file_req, req).await
            }
            // Databases are never taken from peers, nor offered as a CacheServer (pacman
            // does not ask one for them).
            (Endpoint::Peer | Endpoint::Cache, FileKind::Database) => {
                Answer::new(404, Outcome::Miss)
            }
        }
    }

    /// Another pacserve asks: answer from this cache only, never from peers or mirrors, so
    /// a lookup cannot recurse or loop. `X-Pacserve-Sig` says whether the `.sig` is here too.
    async fn peer_query(&self, config: &Config, f: &FileRequest, req: &Request) -> Answer {
        let Some(cached) = self.open(config, &f.file).await else {
            return Answer::new(404, Outcome::Miss);
        };
        let has_sig = !f.file.ends_with(".sig")
            && self
                .open(config, &format!("{}.sig", f.file))
                .await
                .is_some();
        serve_local(cached, req).header("X-Pacserve-Sig", if has_sig { "yes" } else { "no" })
    }

    /// A complete package file `name` from the cache dirs: from the open-file cache when
    /// it was opened a moment ago, else opened off the executor (open/stat may block on a
    /// slow disk, and must not freeze every connection).
    async fn open(&self, config: &Config, name: &str) -> Option<CachedFile> {
        if let Some(hit) = self.open_files.get(name, Instant::now()) {
            return Some(hit);
        }
        let dirs = config.cache_dirs.clone();
        let owned = name.to_string();
        let (found, skipped) = smol::unblock(move || open_cached(&dirs, &owned)).await;
        for (path, why) in &skipped {
            crate::verbose!("{}: not served: {why:?}", path.display());
        }
        if let Some(f) = &found {
            self.open_files.put(name, f, Instant::now());
        }
        found
    }

    /// `/info`: the packages this host holds, rebuilt only when a cache dir changed.
    async fn info(&self) -> Answer {
        let (body, _) = self.listing().await;
        let mut r =
            Answer::new(200, Outcome::Status).header("Content-Type", "text/plain; charset=utf-8");
        r.response.body = Body::Shared(body);
        r
    }

    /// The `/info` body and its package count, rebuilt only when a cache dir changed.
    async fn listing(&self) -> (Arc<Vec<u8>>, u64) {
        let dirs = self.config().cache_dirs.clone();
        let cached = crate::lock(&self.info).clone();
        let listing = smol::unblock(move || {
            let stamp = dirs_stamp(&dirs);
            match cached {
                Some(old) if old.stamp == stamp && stamp.iter().all(Option::is_some) => old,
                _ => {
                    let mut text = String::from("# pacserve info 1: NAME SIZE\n");
                    let packages = list_packages(&dirs);
                    for (name, size) in &packages {
                        text.push_str(name);
                        text.push(' ');
                        text.push_str(&size.to_string());
                        text.push('\n');
                    }
                    InfoListing {
                        stamp,
                        body: Arc::new(text.into_bytes()),
                        count: packages.len() as u64,
                    }
                }
            }
        })
        .await;
        let out = (listing.body.clone(), listing.count);
        *crate::lock(&self.info) = Some(listing);
        out
    }

    /// Everything the status page, JSON and metrics show.
    async fn status_view(&self) -> StatusView {
        let (_, packages) = self.listing().await;
        let now = Instant::now();
        let peers = crate::lock(self.peers.table()).all();
        let since = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs());
        StatusView {
            version: env!("CARGO_PKG_VERSION").to_string(),
            cache_dirs: self
                .config()
                .cache_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect(),
            packages,
            multicast: self.multicast.clone(),
            peers: peers
                .iter()
                .map(|p| PeerView {
                    address: p.addr.authority(),
                    source: match p.source {
                        Source::Static => "static",
                        Source::Multicast => "multicast",
                    },
                    last_seen_secs: since(p.last_seen.max(p.last_answer)),
                    state: if p.backed_off(now) {
                        "backed off"
                    } else if p.failures > 0 {
                        // Backoff over, not yet asked again: still not known to be up.
                        "failing"
                    } else if p.last_answer.is_none() {
                        "unknown"
                    } else {
                        "ok"
                    },
                    failures: p.failures,
                    retry_in_secs: p
                        .retry_at
                        .filter(|t| *t > now)
                        .map(|t| t.saturating_duration_since(now).as_secs().max(1)),
                })
                .collect(),
            recent: self.stats.recent(),
            now_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            counters: self.stats.counters(),
            multicast_datagrams: self.discovery_stats.as_ref().map_or(Vec::new(), |d| {
                let s = d.snapshot();
                vec![
                    ("received", s.received),
                    ("malformed", s.malformed),
                    ("own", s.own),
                    ("sent", s.sent),
                    ("send_errors", s.send_errors),
                ]
            }),
        }
    }

    async fn status_page(&self, page: Page) -> Answer {
        let view = self.status_view().await;
        let (body, kind) = match page {
            Page::StatusJson => (status::json(&view), "application/json"),
            Page::Metrics => (
                status::metrics(&view),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            _ => (status::html(&view), "text/html; charset=utf-8"),
        };
        let mut r = Answer::new(200, Outcome::Status)
            .header("Content-Type", kind)
            .header("Cache-Control", "no-store");
        r.response.body = Body::Shared(Arc::new(body.into_bytes()));
        r
    }

    fn database(&self, config: &Config, f: &FileRequest) -> Answer {
        let mirrors = config.repos.mirror_urls(&f.repo, &f.arch, &f.file);
        let picked = pick_database_mirror(mirrors, &self.dead(), Instant::now());
        match picked {
            Some(url) => redirect(&url),
            None => Answer::new(404, Outcome::Miss),
        }
    }

    /// `/cache/`: the cache, then the LAN; a miss is a plain 404, never a mirror redirect.
    async fn cache_server(&self, config: &Config, f: &FileRequest, req: &Request) -> Answer {
        match self.local_or_peer(config, f, req).await {
            Some(r) => r,
            None => Answer::new(404, Outcome::Miss),
        }
    }

    async fn package(&self, config: &Config, f: &FileRequest, req: &Request) -> Answer {
        if let Some(r) = self.local_or_peer(config, f, req).await {
            return r;
        }
        match self.find_on_mirrors(config, f).await {
            Some(url) => redirect(&url),
            None => Answer::new(404, Outcome::Miss),
        }
    }

    /// A cache hit, or a redirect to a peer that holds the file.
    async fn local_or_peer(
        &self,
        config: &Config,
        f: &FileRequest,
        req: &Request,
    ) -> Option<Answer> {
        if let Some(cached) = self.open(config, &f.file).await {
            return Some(serve_local(cached, req));
        }
        if let Some(hit) = self.peers.find(&urls::peer_query_path(f)).await {
            crate::verbose!(
                "{}: held by peer {} (sig: {})",
                f.file,
                hit.peer,
                hit.has_sig
            );
            let location = urls::peer_location(&hit.peer, f);
            return Some(Answer::new(307, Outcome::Peer).header("Location", location));
        }
        None
    }

    /// The first mirror that has the file: plain-http mirrors are probed in order, the
    /// first https one is taken unprobed.
    async fn find_on_mirrors(&self, config: &Config, f: &FileRequest) -> Option<Url> {
        let mirrors = config.repos.mirror_urls(&f.repo, &f.arch, &f.file);
        let steps = plan_package(mirrors, &self.dead(), Instant::now());
        for step in steps {
            match step {
                MirrorStep::Redirect(url) => return Some(url),
                MirrorStep::SkipDead(url) => crate::verbose!("{url}: skipped, failed recently"),
                MirrorStep::Probe(url) => match head_status(&url, MIRROR_PROBE_TIMEOUT).await {
                    Ok(status) => match probe_verdict(status) {
                        ProbeVerdict::Has => {
                            crate::verbose!("{url}: {status}, has it");
                            return Some(url);
                        }
                        ProbeVerdict::Lacks => crate::verbose!("{url}: {status}, lacks it"),
                        ProbeVerdict::Failed => {
                            crate::error!(
                                "mirror {url} answered {status}; skipping it for a while"
                            );
                            self.dead().mark_dead(&url, Instant::now());
                        }
                    },
                    Err(e) => {
                        crate::error!("mirror {url} failed: {e}; skipping it for a while");
                        self.dead().mark_dead(&url, Instant::now());
                    }
                },
            }
        }
        None
    }
}

impl Handler for Service {
    type Outcome = Outcome;

    async fn handle(&self, req: &Request) -> (Response, Outcome) {
        let a = self.answer(req).await;
        (a.response, a.outcome)
    }

    fn shell_outcome(&self, answer: ShellAnswer) -> Outcome {
        match answer {
            ShellAnswer::Busy => Outcome::Busy,
            ShellAnswer::Malformed(_) | ShellAnswer::TimedOut | ShellAnswer::Refused => {
                Outcome::Bad
            }
        }
    }

    /// The access log line, then the counters.
    fn completed(&self, done: &Completed<'_, Outcome>) {
        log_completed(done);
        self.stats.record(done);
    }
}

/// One line per response: `PEER METHOD PATH STATUS BYTES OUTCOME`, with `-` for the method
/// and path when the shell answered before a request was read (and why, for a malformed one).
fn log_completed(done: &Completed<'_, Outcome>) {
    if !crate::sys::log::requests_enabled() {
        return;
    }
    let (peer, status, bytes, outcome) = (
        done.peer,
        done.status,
        done.body_bytes,
        done.outcome.as_str(),
    );
    match (done.request, done.shell) {
        (Some(r), _) => {
            let method = escape(r.method_text.as_bytes());
            let path = escape(r.target.as_bytes());
            crate::info!("{peer} {method} {path} {status} {bytes} {outcome}");
        }
        (None, Some(ShellAnswer::Malformed(e))) => {
            crate::info!("{peer} - - {status} {bytes} {outcome} ({})", e.reason());
        }
        (None, _) => crate::info!("{peer} - - {status} {bytes} {outcome}"),
    }
}

fn redirect(url: &Url) -> Answer {
    Answer::new(307, Outcome::Mirror).header("Location", url.to_string())
}

/// A cache hit: 200, 206, 304 or 416 as the conditional and range headers ask.
fn serve_local(cached: CachedFile, req: &Request) -> Answer {
    let last_modified = format_http_date(cached.mtime);
    if let Some(since) = req.if_modified_since.as_deref().and_then(parse_http_date) {
        if cached.mtime <= since {
            return Answer::new(304, Outcome::Local).header("Last-Modified", last_modified);
        }
    }
    // If-Range with a date other than ours: the client's partial copy is of another file.
    let range = match &req.if_range {
        Some(tag) if *tag != last_modified => None,
        _ => req.range.as_deref(),
    };
    let file = cached.file;
    let resp = |status| {
        Answer::new(status, Outcome::Local)
            .header("Content-Type", "application/octet-stream")
            .header("Last-Modified", last_modified.clone())
            .header("Accept-Ranges", "bytes")
    };
    match decide_range(range, cached.len) {
        RangeDecision::Full => {
            let mut r = resp(200);
            r.response.body = Body::File {
                file,
                start: 0,
                len: cached.len,
            };
            r
        }
        RangeDecision::Partial { start, end } => {
            let mut r = resp(206).header(
                "Content-Range",
                format!("bytes {start}-{end}/{}", cached.len),
            );
            r.response.body = Body::File {
                file,
                start,
                len: end - start + 1,
            };
            r
        }
        RangeDecision::Unsatisfiable => Answer::new(416, Outcome::Local)
            .header("Content-Range", format!("bytes */{}", cached.len)),
    }
}
