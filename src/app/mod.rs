//! What pacserve answers, and the order it tries things in: [`Service::answer`] is the table
//! of contents. A package: this host's cache ([`local`]), then a LAN peer
//! ([`crate::peers::lookup`]), then the first mirror that has it ([`mirrors`]); a database:
//! straight to a mirror; a page: the status view ([`status`]). [`urls`] is the URL space,
//! [`outcome`] how a request ended, [`stats`] the counters. With `--hub`, the hub's files
//! ([`crate::hub`]) come first, for any repository and architecture. I/O through those
//! modules.

pub mod auth_view;
pub mod local;
pub mod mirrors;
pub mod outcome;
pub mod stats;
pub mod status;
pub mod urls;
pub mod verify;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::app::local::{CachedFile, Local, Lookup};
use crate::app::mirrors::{Found, Mirrors, RepoTable};
use crate::app::outcome::{Answer, Outcome};
use crate::app::stats::Stats;
use crate::app::urls::{Endpoint, FileKind, FileRequest, Page, route};
use crate::app::verify::Verdict;
use crate::auth::Guard;
use crate::auth::access::Route;
use crate::http::handler::{Completed, Handler, ShellAnswer};
use crate::http::message::{Body, Method, Request, Response};
use crate::http::url::Url;
use crate::hub::Hub;
use crate::limits::{SWEEP_FILES_PER_ROUND, UPKEEP_INTERVAL};
use crate::peers::discovery::DiscoveryStats;
use crate::peers::lookup::{PeerLookup, Query};
use crate::peers::table::Source;
use crate::sys::log::escape;
use auth_view::AuthView;
use status::{CopyView, PeerView, StatusView, VerificationView};

/// What a (re)load of pacman.conf yields.
#[derive(Debug, Clone)]
pub struct Config {
    pub cache_dirs: Vec<PathBuf>,
    pub repos: RepoTable,
    /// pacman's DBPath: its sync databases say what each package must be.
    pub db_path: PathBuf,
}

pub struct Service {
    config: RwLock<Arc<Config>>,
    local: Arc<Local>,
    peers: PeerLookup,
    mirrors: Mirrors,
    verify: Arc<verify::Verifier>,
    stats: Stats,
    /// `group:port` when multicast discovery is on, for the status page.
    multicast: Option<String>,
    discovery_stats: Option<Arc<DiscoveryStats>>,
    hub: Option<Arc<Hub>>,
    /// Who may ask what (the shared secret, `--allow`).
    guard: Guard,
}

impl Service {
    pub fn new(config: Config, peers: PeerLookup) -> Service {
        Service {
            config: RwLock::new(Arc::new(config)),
            local: Arc::new(Local::default()),
            peers,
            mirrors: Mirrors::default(),
            verify: Arc::default(),
            stats: Stats::default(),
            multicast: None,
            discovery_stats: None,
            hub: None,
            guard: Guard::new(None, Vec::new()),
        }
    }

    /// Serve the hub's files too (`--hub`).
    pub fn with_hub(mut self, hub: Arc<Hub>) -> Service {
        self.hub = Some(hub);
        self
    }

    /// What copies are checked against; the hub checks its pulls against it too.
    pub fn verifier(&self) -> &Arc<verify::Verifier> {
        &self.verify
    }

    /// The directories this host serves from: the cache dirs, then the hub's.
    fn served_dirs(&self, config: &Config) -> Vec<PathBuf> {
        let mut dirs = config.cache_dirs.clone();
        dirs.extend(self.hub.as_ref().map(|h| h.dir().to_path_buf()));
        dirs
    }

    /// Answer only whom `guard` lets in.
    pub fn with_guard(mut self, guard: Guard) -> Service {
        self.guard = guard;
        self
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
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

    /// Read the sync databases now (blocking: at start, before the first request, so that
    /// copies are checked from the first one on).
    pub fn read_databases(&self) {
        let config = self.config();
        let repos: Vec<String> = config.repos.repo_names().map(str::to_string).collect();
        self.verify.refresh(&config.db_path, &repos);
    }

    /// The background upkeep, forever: every [`UPKEEP_INTERVAL`], read again the sync
    /// databases pacman rewrote (off the executor: requests never wait for it), then hash a
    /// few more cached packages against them.
    pub async fn upkeep(self: Arc<Self>) {
        loop {
            // First a pause: start-up serves at once, the databases come a moment later.
            async_io::Timer::after(UPKEEP_INTERVAL).await;
            let config = self.config();
            let repos: Vec<String> = config.repos.repo_names().map(str::to_string).collect();
            let (verify, db_path) = (self.verify.clone(), config.db_path.clone());
            smol::unblock(move || verify.refresh(&db_path, &repos)).await;
            let dirs = self.served_dirs(&config);
            let listing = self.local.listing(&dirs).await;
            self.verify
                .sweep(&dirs, &listing.body, SWEEP_FILES_PER_ROUND)
                .await;
        }
    }

    /// Swap in a new configuration; requests in flight keep the one they started with.
    pub fn replace_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        self.local.forget_open_files();
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether `req` may be answered at all (see [`crate::auth::access`]); a 403 if not.
    fn refused(&self, req: &Request) -> Option<Answer> {
        if self.guard.open() {
            return None;
        }
        let for_peers = urls::page(&req.target) == Some(Page::Info)
            || urls::listed_file(&req.target).is_some()
            || route(&req.target).is_ok_and(|r| r.endpoint == Endpoint::Peer);
        let route = if for_peers {
            Route::ForPeers
        } else {
            Route::ForClients
        };
        let table = self.peers.table();
        let checked = self.guard.check(
            route,
            &req.method_text,
            &req.target,
            req.auth.as_deref(),
            req.peer.ip(),
            |ip| crate::lock(table).has_discovered(ip),
        );
        checked.err().map(|_| Answer::new(403, Outcome::Bad))
    }

    async fn answer(&self, req: &Request) -> Answer {
        if let Some(refused) = self.refused(req) {
            return refused;
        }
        if req.method == Method::Other {
            return Answer::new(405, Outcome::Bad).header("Allow", "GET, HEAD");
        }
        match urls::page(&req.target) {
            Some(Page::Info) => {
                let dirs = self.served_dirs(&self.config());
                return self.local.info(&dirs, req).await;
            }
            // Browsers ask for it with every view of the status page; not a lookup.
            Some(Page::Favicon) => return Answer::new(404, Outcome::Status),
            Some(page) => return self.status_page(page).await,
            None => {}
        }
        // `/info/NAME`: a pacserve (a hub) pulls one file of this host's listing, of any
        // repository; answered as on /peer/, checked against the database that knows it.
        let listed = urls::listed_file(&req.target).map(|file| FileRequest {
            endpoint: Endpoint::Peer,
            repo: self.verify.repo_of(&file).unwrap_or_default(),
            arch: String::new(),
            file,
            kind: FileKind::Package,
        });
        let is_listed = listed.is_some();
        let file_req = match listed.map_or_else(|| route(&req.target), Ok) {
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
        if file_req.kind == FileKind::Package {
            if let Some(a) = self.hub_answer(&file_req, req, !is_listed).await {
                return a;
            }
        }
        let config = self.config();
        if is_listed {
            return self.peer_query(&config, &file_req, req).await;
        }
        if !config.repos.has_repo(&file_req.repo) {
            crate::verbose!("{}: repository not in pacman.conf", file_req.repo);
            return Answer::new(404, Outcome::Miss);
        }
        // An `any` package is the same file under every architecture: a host of another
        // one may serve it to a pacserve (whose requester checks its SHA-256) and to the
        // pacman it sends here.
        let any_for_a_peer = crate::names::is_any_arch(&file_req.file)
            && (matches!(file_req.endpoint, Endpoint::Peer | Endpoint::Lan) || req.from_pacserve);
        if !config.repos.serves_arch(&file_req.arch) && !any_for_a_peer {
            crate::verbose!("{}: architecture not in pacman.conf", file_req.arch);
            return Answer::new(404, Outcome::Miss);
        }
        match (file_req.endpoint, file_req.kind) {
            (Endpoint::Request | Endpoint::Lan, FileKind::Database) => {
                self.database(&config, &file_req)
            }
            // A pacserve asking on a pacman route (a peer listed as a mirror, or this very
            // pacserve under a name that was not recognised as its own): this host alone
            // answers, so pacservers can never fan out or loop through each other.
            (Endpoint::Request | Endpoint::Lan | Endpoint::Cache, FileKind::Package)
                if req.from_pacserve =>
            {
                self.peer_query(&config, &file_req, req).await
            }
            (Endpoint::Request, FileKind::Package) => {
                self.package(&config, &file_req, req, true).await
            }
            // Sent here by a peer: never on to another one, so redirects never chain.
            (Endpoint::Lan, FileKind::Package) => {
                self.package(&config, &file_req, req, false).await
            }
            (Endpoint::Peer, FileKind::Package) => {
                // The asker lacks the file: whatever we believed about it holding it is wrong.
                self.peers
                    .forget_holder(&urls::peer_query_path(&file_req), req.peer.ip());
                self.peer_query(&config, &file_req, req).await
            }
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
        let cached = match self.local.open(&config.cache_dirs, &f.file).await {
            Lookup::Hit(cached) => cached,
            Lookup::Absent => return Answer::new(404, Outcome::Miss),
            Lookup::Shortage => return overloaded(),
        };
        // Never waits for a hash: the asker waits at most its peer timeout. What is known is
        // said (size always, SHA-256 when computed); a copy known to be wrong is not offered.
        if let Verdict::Bad(_) = self.verify.check(&f.repo, &f.file, &cached, false).await {
            return Answer::new(404, Outcome::Miss);
        }
        self.peer_answer(config, cached, &f.file, req).await
    }

    /// `cached` for another pacserve, with `X-Pacserve-Sig` (whether the `.sig` is here
    /// too) and, when known, `X-Pacserve-Sha256`.
    async fn peer_answer(
        &self,
        config: &Config,
        cached: CachedFile,
        file: &str,
        req: &Request,
    ) -> Answer {
        let sha = self.verify.hash_for_peer(&cached).await;
        let sig = format!("{file}.sig");
        let has_sig = !file.ends_with(".sig")
            && (matches!(
                self.local.open(&config.cache_dirs, &sig).await,
                Lookup::Hit(_)
            ) || matches!(self.open_hub(&sig).await, Some(Lookup::Hit(_))));
        let answer =
            local::serve(cached, req).header("X-Pacserve-Sig", if has_sig { "yes" } else { "no" });
        match sha {
            Some(sha) => answer.header("X-Pacserve-Sha256", crate::names::sha256_hex(&sha)),
            None => answer,
        }
    }

    /// `file` from the hub, off the executor; None without a hub.
    async fn open_hub(&self, file: &str) -> Option<Lookup> {
        let hub = self.hub.clone()?;
        let file = file.to_string();
        Some(smol::unblock(move || hub.serve(&file)).await)
    }

    /// A file the hub holds, answered like a cache hit whatever its repository and
    /// architecture: to a pacserve (a peer route, or any route asked by one) with what it
    /// needs to judge the copy. When a peer asks for one it lacks (`note_miss`), the hub
    /// pulls it as soon as some peer holds it.
    async fn hub_answer(&self, f: &FileRequest, req: &Request, note_miss: bool) -> Option<Answer> {
        let for_peer = f.endpoint == Endpoint::Peer || req.from_pacserve;
        let cached = match self.open_hub(&f.file).await? {
            Lookup::Hit(cached) => cached,
            Lookup::Shortage => return Some(overloaded()),
            Lookup::Absent => {
                if note_miss && f.endpoint == Endpoint::Peer {
                    if let Some(hub) = &self.hub {
                        hub.missed(&f.file);
                    }
                }
                return None;
            }
        };
        let verdict = self
            .verify
            .check(&f.repo, &f.file, &cached, !for_peer)
            .await;
        if matches!(verdict, Verdict::Bad(_)) {
            return None;
        }
        Some(match for_peer {
            true => self.peer_answer(&self.config(), cached, &f.file, req).await,
            false => local::serve(cached, req),
        })
    }

    /// Everything the status page, JSON and metrics show.
    async fn status_view(&self) -> StatusView {
        let dirs = self.served_dirs(&self.config());
        let packages = self.local.package_count(&dirs).await;
        let now = Instant::now();
        let peers = crate::lock(self.peers.table()).all();
        let since = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs());
        StatusView {
            version: env!("CARGO_PKG_VERSION").to_string(),
            cache_dirs: dirs.iter().map(|d| d.display().to_string()).collect(),
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
            multicast_datagrams: self
                .discovery_stats
                .as_ref()
                .map_or(Vec::new(), |d| d.snapshot().by_kind()),
            verification: self.verification_view(),
            hub: self.hub.as_ref().map(|h| h.view()),
            auth: self.auth_view(),
        }
    }

    /// The authentication part of the status view.
    fn auth_view(&self) -> AuthView {
        let c = self.guard.counters();
        let (datagrams_taken, requests_taken) = c.taken();
        let lan = self.guard.lan();
        AuthView {
            authenticated: lan.is_some(),
            keys: lan.map_or(0, |l| l.keys().all().len()),
            allow: self.guard.allow().iter().map(|a| a.to_string()).collect(),
            datagrams_taken,
            requests_taken,
            datagrams_refused: if lan.is_some() {
                c.datagrams()
            } else {
                Vec::new()
            },
            requests_refused: c.requests(),
        }
    }

    /// The verification part of the status view, newest first.
    fn verification_view(&self) -> VerificationView {
        let (skipped, by_size, by_sha) = self.peers.skipped();
        let (bad, bad_total) = self.verify.bad_copies();
        let file_of = |path: &str| path.rsplit('/').next().unwrap_or(path).to_string();
        VerificationView {
            repos: self.verify.loaded(),
            skipped: skipped
                .iter()
                .rev()
                .map(|s| CopyView {
                    at: s.at,
                    holder: s.peer.authority(),
                    file: file_of(&s.path),
                    why: s.why.as_str(),
                })
                .collect(),
            skipped_by: vec![("size", by_size), ("sha256", by_sha)],
            bad_local: bad
                .iter()
                .rev()
                .map(|b| CopyView {
                    at: b.at,
                    holder: b
                        .path
                        .parent()
                        .map_or(String::new(), |p| p.display().to_string()),
                    file: b
                        .path
                        .file_name()
                        .map_or(String::new(), |f| f.to_string_lossy().into_owned()),
                    why: b.why.as_str(),
                })
                .collect(),
            bad_local_total: bad_total,
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
        Answer::new(200, Outcome::Status)
            .header("Content-Type", kind)
            .header("Cache-Control", "no-store")
            .with_body(Body::Shared(Arc::new(body.into_bytes())))
    }

    fn database(&self, config: &Config, f: &FileRequest) -> Answer {
        match self.mirrors.database(&config.repos, f) {
            Some(url) => redirect(&url),
            None => Answer::new(404, Outcome::Miss),
        }
    }

    /// `/cache/`: the cache, then the LAN; a miss is a plain 404, never a mirror redirect.
    async fn cache_server(&self, config: &Config, f: &FileRequest, req: &Request) -> Answer {
        match self.local_or_peer(config, f, req, true).await {
            Some(r) => r,
            None => Answer::new(404, Outcome::Miss),
        }
    }

    /// The cache, then (if `ask_peers`) the LAN, then the mirrors.
    async fn package(
        &self,
        config: &Config,
        f: &FileRequest,
        req: &Request,
        ask_peers: bool,
    ) -> Answer {
        if let Some(r) = self.local_or_peer(config, f, req, ask_peers).await {
            return r;
        }
        match self.mirrors.find(&config.repos, f).await {
            Found::At(url) => redirect(&url),
            Found::Nowhere => Answer::new(404, Outcome::Miss),
            Found::Overloaded => overloaded(),
        }
    }

    /// A cache hit, or (if `ask_peers`) a redirect to a peer that holds the file.
    async fn local_or_peer(
        &self,
        config: &Config,
        f: &FileRequest,
        req: &Request,
        ask_peers: bool,
    ) -> Option<Answer> {
        match self.local.open(&config.cache_dirs, &f.file).await {
            Lookup::Hit(cached) => {
                // A copy the sync database says is wrong is as good as absent.
                let verdict = self.verify.check(&f.repo, &f.file, &cached, true).await;
                if !matches!(verdict, Verdict::Bad(_)) {
                    return Some(local::serve(cached, req));
                }
            }
            Lookup::Shortage => return Some(overloaded()),
            Lookup::Absent => {}
        }
        if !ask_peers {
            return None;
        }
        let query = Query {
            path: urls::peer_query_path(f),
            arch: f.arch.clone(),
            any_arch: crate::names::is_any_arch(&f.file),
            want: self.verify.want(&f.repo, &f.file),
        };
        if let Some(hit) = self.peers.find(&query).await {
            // A link-local address means something only with this host's zone: a client
            // elsewhere (a pacman pointed at this pacserve over the LAN) cannot follow it.
            if hit.peer.is_link_local() && !req.peer.ip().is_loopback() {
                crate::verbose!(
                    "{}: held by link-local peer {}, which {} cannot reach by that address",
                    f.file,
                    hit.peer,
                    req.peer.ip()
                );
                return None;
            }
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
        // Refusals come in floods (one host reopening a thousand sockets): a few lines.
        (None, Some(ShellAnswer::Busy)) => {
            if let Some(left_out) = BUSY_LINES.admit(std::time::Instant::now()) {
                if left_out > 0 {
                    crate::info!(
                        "... and {left_out} more refused as busy in the last {} s",
                        crate::limits::LOG_WINDOW.as_secs()
                    );
                }
                crate::info!("{peer} - - {status} {bytes} {outcome}");
            }
        }
        (None, _) => crate::info!("{peer} - - {status} {bytes} {outcome}"),
    }
}

/// The log lines of connections refused as busy.
static BUSY_LINES: crate::sys::log::Throttle = crate::sys::log::Throttle::new();

/// This host ran out of descriptors or memory: not a miss (the file may well be there), so
/// 503 and a hint to try again, which pacman treats like any failed server.
fn overloaded() -> Answer {
    Answer::new(503, Outcome::Busy).header("Retry-After", "1")
}

fn redirect(url: &Url) -> Answer {
    Answer::new(307, Outcome::Mirror).header("Location", url.to_string())
}
