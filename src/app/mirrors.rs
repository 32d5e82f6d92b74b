//! The mirrors of each repository: which may answer, in which order, what a probe's answer
//! means, which failed recently (pure, time passed in); and [`Mirrors`], the one place that
//! probes them (I/O).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use smol::lock::OnceCell;

use crate::app::urls::FileRequest;
use crate::config::pacman_conf::PacmanConf;
use crate::error::local_shortage;
use crate::http::client::head_status;
use crate::http::url::{Scheme, Url, parse_url};
use crate::limits::{
    DEAD_MIRROR_BACKOFF, MAX_DEAD_MIRRORS, MAX_PROBES_PER_WALK, MIRROR_PROBE_TIMEOUT,
    MIRROR_WALK_TIMEOUT,
};
use crate::sys::budget;

/// Repositories and their usable mirrors, built once per (re)load of pacman.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoTable {
    repos: HashMap<String, Vec<String>>,
    architectures: Vec<String>,
    /// Distinct mirrors (scheme, host, port) over all repos.
    mirror_hosts: usize,
}

/// Something about the configuration a user should hear of, but not fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfWarning(pub String);

impl RepoTable {
    /// Keep each repo's Server templates that pacserve can redirect to: http(s) URLs that do
    /// not point back at this pacserve (`is_self`).
    pub fn from_conf(
        conf: &PacmanConf,
        is_self: impl Fn(&Url) -> bool,
    ) -> (Self, Vec<ConfWarning>) {
        let mut warnings = Vec::new();
        if conf.repos.is_empty() {
            warnings.push(ConfWarning(
                "defines no repository, so pacserve has nothing to serve: add the \
                 repositories pacman uses (e.g. [core] with Include = /etc/pacman.d/mirrorlist), \
                 then reload pacserve (SIGHUP)"
                    .into(),
            ));
        }
        let mut repos = HashMap::new();
        let mut hosts = std::collections::HashSet::new();
        let probe_arch = conf.architectures.first().map_or("x86_64", String::as_str);
        for repo in &conf.repos {
            let mut kept = Vec::new();
            for server in &repo.servers {
                let sample = server.replace("$arch", probe_arch);
                match parse_url(&sample) {
                    Ok(url) if is_self(&url) => warnings.push(ConfWarning(format!(
                        "[{}] Server {server}: points at this pacserve, skipped",
                        repo.name
                    ))),
                    Ok(url) => {
                        hosts.insert(mirror_key(&url));
                        kept.push(server.trim_end_matches('/').to_string());
                    }
                    Err(e) => warnings.push(ConfWarning(format!(
                        "[{}] Server {server}: {}, skipped",
                        repo.name, e.0
                    ))),
                }
            }
            if kept.is_empty() {
                warnings.push(ConfWarning(format!(
                    "[{}] has no usable Server: its packages are served from the cache and \
                     the LAN only, and its databases not at all; add a Server line (or \
                     Include = /etc/pacman.d/mirrorlist) to that section",
                    repo.name
                )));
            }
            repos.insert(repo.name.clone(), kept);
        }
        let table = RepoTable {
            repos,
            architectures: conf.architectures.clone(),
            mirror_hosts: hosts.len(),
        };
        (table, warnings)
    }

    /// The host names (not IP literals) of Server lines on `port`: the ones that might be
    /// this pacserve under another name, worth a lookup before `from_conf`.
    pub fn names_on_port(conf: &PacmanConf, port: u16) -> Vec<String> {
        let probe_arch = conf.architectures.first().map_or("x86_64", String::as_str);
        let mut names: Vec<String> = conf
            .repos
            .iter()
            .flat_map(|r| &r.servers)
            .filter_map(|s| parse_url(&s.replace("$arch", probe_arch)).ok())
            .filter(|u| u.port == port && u.host.parse::<std::net::IpAddr>().is_err())
            .map(|u| u.host)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn has_repo(&self, repo: &str) -> bool {
        self.repos.contains_key(repo)
    }

    /// Architectures this host's pacman uses; requests for others are not ours.
    pub fn serves_arch(&self, arch: &str) -> bool {
        self.architectures.iter().any(|a| a == arch)
    }

    /// The URLs of `file` on each mirror of `repo`, in pacman.conf order. `arch` and `file`
    /// must already have passed `route`'s allow-lists.
    pub fn mirror_urls(&self, repo: &str, arch: &str, file: &str) -> Vec<Url> {
        let Some(servers) = self.repos.get(repo) else {
            return Vec::new();
        };
        servers
            .iter()
            .filter_map(|template| {
                let base = template.replace("$arch", arch);
                parse_url(&format!("{base}/{file}")).ok()
            })
            .collect()
    }

    /// How many mirrors (scheme, host and port) the configuration names, over all repos.
    pub fn mirror_hosts(&self) -> usize {
        self.mirror_hosts
    }

    pub fn repo_names(&self) -> impl Iterator<Item = &str> {
        self.repos.keys().map(String::as_str)
    }
}

/// What to do with one mirror while looking for a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorStep {
    /// Plain http: ask it with HEAD first.
    Probe(Url),
    /// https: pacserve speaks no TLS, so redirect pacman there unprobed.
    Redirect(Url),
    /// Failed a probe recently; skip it.
    SkipDead(Url),
}

/// The order in which to try mirrors for a package. Stops at the first https mirror, since
/// it is redirected to unconditionally.
pub fn plan_package(mirrors: Vec<Url>, dead: &DeadMirrors, now: Instant) -> Vec<MirrorStep> {
    let mut steps = Vec::with_capacity(mirrors.len());
    for url in mirrors {
        if dead.is_dead(&url, now) {
            steps.push(MirrorStep::SkipDead(url));
        } else if url.scheme == Scheme::Https {
            steps.push(MirrorStep::Redirect(url));
            break;
        } else {
            steps.push(MirrorStep::Probe(url));
        }
    }
    steps
}

/// Where a database request goes: the first mirror not known to be dead, else the first.
pub fn pick_database_mirror(mirrors: Vec<Url>, dead: &DeadMirrors, now: Instant) -> Option<Url> {
    let first_alive = mirrors.iter().position(|u| !dead.is_dead(u, now));
    let idx = first_alive.unwrap_or(0);
    mirrors.into_iter().nth(idx)
}

/// What a mirror's answer to HEAD means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// It has the file (2xx), or sends clients elsewhere for it (3xx; pacman follows).
    Has,
    /// It answered, but does not have it (4xx).
    Lacks,
    /// It is broken right now (5xx, or no valid answer): skip it for a while.
    Failed,
}

pub fn probe_verdict(status: u16) -> ProbeVerdict {
    match status {
        200..=299 | 301 | 302 | 303 | 307 | 308 => ProbeVerdict::Has,
        400..=499 => ProbeVerdict::Lacks,
        _ => ProbeVerdict::Failed,
    }
}

/// Mirrors that failed a probe, by scheme + authority, until when to skip them.
#[derive(Debug, Default)]
pub struct DeadMirrors {
    until: HashMap<String, Instant>,
}

fn mirror_key(url: &Url) -> String {
    let scheme = match url.scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    format!("{scheme}://{}:{}", url.host, url.port)
}

impl DeadMirrors {
    pub fn is_dead(&self, url: &Url, now: Instant) -> bool {
        self.until.get(&mirror_key(url)).is_some_and(|t| now < *t)
    }

    /// Skip `url`'s mirror for a while. The table holds at least [`MAX_DEAD_MIRRORS`], and
    /// as many as the configuration has mirrors (`configured`), so every mirror of a config
    /// can be remembered and none is probed again by every request.
    pub fn mark_dead(&mut self, url: &Url, now: Instant, configured: usize) {
        let cap = configured.max(MAX_DEAD_MIRRORS);
        if self.until.len() >= cap {
            self.until.retain(|_, t| now < *t);
        }
        if self.until.len() < cap {
            self.until
                .insert(mirror_key(url), now + DEAD_MIRROR_BACKOFF);
        }
    }

    pub fn mark_alive(&mut self, url: &Url) {
        self.until.remove(&mirror_key(url));
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

/// What the walk over a repository's mirrors found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Send pacman here.
    At(Url),
    /// No mirror has it (or none answered within the walk's deadline).
    Nowhere,
    /// This host ran out of descriptors or memory while probing: nobody's fault but ours,
    /// so no mirror is marked dead; the client should try again in a moment.
    Overloaded,
}

/// How one probe ended, shared by every request that asked for the same URL meanwhile.
#[derive(Debug, Clone)]
enum Probed {
    Status(u16),
    Failed(String),
    Shortage,
}

/// Every error line about a failing mirror goes through this: a flood of failing mirrors
/// costs a few lines.
static MIRROR_ERRORS: crate::sys::log::Throttle = crate::sys::log::Throttle::new();

/// The probing side: mirrors that failed recently, and probes in flight, shared by every
/// request.
#[derive(Debug, Default)]
pub struct Mirrors {
    dead: Mutex<DeadMirrors>,
    /// Probes running now, by URL: a burst of requests for one file costs one probe.
    probing: Mutex<HashMap<String, Arc<OnceCell<Probed>>>>,
}

impl Mirrors {
    fn dead(&self) -> std::sync::MutexGuard<'_, DeadMirrors> {
        crate::lock(&self.dead)
    }

    /// Where a database request goes: the first mirror not known to be dead.
    pub fn database(&self, repos: &RepoTable, f: &FileRequest) -> Option<Url> {
        let mirrors = repos.mirror_urls(&f.repo, &f.arch, &f.file);
        pick_database_mirror(mirrors, &self.dead(), Instant::now())
    }

    /// The first mirror that has the file: plain-http mirrors are probed in order, the
    /// first https one is taken unprobed. The whole walk ends within [`MIRROR_WALK_TIMEOUT`]
    /// (well inside pacman's 10 s stall limit) and makes at most [`MAX_PROBES_PER_WALK`]
    /// probes.
    pub async fn find(&self, repos: &RepoTable, f: &FileRequest) -> Found {
        let mirrors = repos.mirror_urls(&f.repo, &f.arch, &f.file);
        let deadline = Instant::now() + MIRROR_WALK_TIMEOUT;
        let mut probes = 0;
        let steps = plan_package(mirrors, &self.dead(), Instant::now());
        for step in steps {
            let url = match step {
                MirrorStep::Redirect(url) => return Found::At(url),
                MirrorStep::SkipDead(url) => {
                    crate::verbose!("{url}: skipped, failed recently");
                    continue;
                }
                MirrorStep::Probe(url) => url,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || probes == MAX_PROBES_PER_WALK {
                crate::verbose!("{}: mirror walk given up at {url}", f.file);
                return Found::Nowhere;
            }
            probes += 1;
            match self.probe(&url, deadline).await {
                Probed::Status(status) => match probe_verdict(status) {
                    ProbeVerdict::Has => {
                        crate::verbose!("{url}: {status}, has it");
                        return Found::At(url);
                    }
                    ProbeVerdict::Lacks => crate::verbose!("{url}: {status}, lacks it"),
                    ProbeVerdict::Failed => {
                        crate::error_throttled!(
                            MIRROR_ERRORS,
                            "mirror {url} answered {status}; skipping it for a while"
                        );
                        self.dead()
                            .mark_dead(&url, Instant::now(), repos.mirror_hosts());
                    }
                },
                Probed::Failed(e) => {
                    crate::error_throttled!(
                        MIRROR_ERRORS,
                        "mirror {url} failed: {e}; skipping it for a while"
                    );
                    self.dead()
                        .mark_dead(&url, Instant::now(), repos.mirror_hosts());
                }
                Probed::Shortage => return Found::Overloaded,
            }
        }
        Found::Nowhere
    }

    /// `HEAD url` within [`MIRROR_PROBE_TIMEOUT`] and `deadline`, merged with a probe of the
    /// same URL already in flight. It waits for room in the outgoing budget first.
    async fn probe(&self, url: &Url, deadline: Instant) -> Probed {
        let key = url.to_string();
        let cell = crate::lock(&self.probing)
            .entry(key.clone())
            .or_default()
            .clone();
        let result = cell
            .get_or_init(|| async {
                let Some(_permit) = budget::outgoing(deadline).await else {
                    return Probed::Shortage;
                };
                let left = deadline.saturating_duration_since(Instant::now());
                match head_status(url, left.min(MIRROR_PROBE_TIMEOUT)).await {
                    Ok(status) => Probed::Status(status),
                    Err(e) if local_shortage(&e) => Probed::Shortage,
                    Err(e) => Probed::Failed(e.to_string()),
                }
            })
            .await
            .clone();
        let mut probing = crate::lock(&self.probing);
        if probing.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            probing.remove(&key);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::pacman_conf::Repo;
    use std::path::PathBuf;
    use std::time::Duration;

    fn conf(servers: &[&str]) -> PacmanConf {
        PacmanConf {
            cache_dirs: vec![PathBuf::from("/var/cache/pacman/pkg/")],
            architectures: vec!["x86_64".into()],
            db_path: PathBuf::from("/var/lib/pacman/"),
            repos: vec![Repo {
                name: "core".into(),
                servers: servers.iter().map(|s| s.to_string()).collect(),
            }],
        }
    }

    fn url(s: &str) -> Url {
        parse_url(s).unwrap()
    }

    #[test]
    fn skips_self_and_unsupported_servers() {
        let c = conf(&[
            "http://localhost:15678/request/core/$arch",
            "ftp://mirror.example/core/os/$arch",
            "file:///srv/repo/core/os/$arch",
            "http://mirror.example/core/os/$arch/",
            "https://secure.example/core/os/$arch",
        ]);
        let (table, warnings) = RepoTable::from_conf(&c, |u| u.host == "localhost");
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].0.contains("points at this pacserve"));
        let urls = table.mirror_urls("core", "x86_64", "a-1-1-x86_64.pkg.tar.zst");
        let shown: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
        assert_eq!(
            shown,
            [
                "http://mirror.example/core/os/x86_64/a-1-1-x86_64.pkg.tar.zst",
                "https://secure.example/core/os/x86_64/a-1-1-x86_64.pkg.tar.zst"
            ]
        );
        assert!(table.has_repo("core"));
        assert!(!table.has_repo("extra"));
        assert!(table.serves_arch("x86_64"));
        assert!(!table.serves_arch("aarch64"));
        assert!(table.mirror_urls("extra", "x86_64", "a").is_empty());
    }

    #[test]
    fn names_worth_a_lookup_are_names_on_our_port() {
        let c = conf(&[
            "http://hub.lan:15678/request/$repo/$arch",
            "http://HUB.lan:15678/request/$repo/$arch",
            "http://10.0.0.2:15678/request/$repo/$arch",
            "http://mirror.example/core/os/$arch",
            "https://other.example:15678/$repo",
        ]);
        assert_eq!(
            RepoTable::names_on_port(&c, 15678),
            ["hub.lan", "other.example"]
        );
        assert!(RepoTable::names_on_port(&c, 80).contains(&"mirror.example".to_string()));
    }

    #[test]
    fn repo_without_servers_warns() {
        let (_, warnings) = RepoTable::from_conf(&conf(&[]), |_| false);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].0.contains("[core] has no usable Server"));
    }

    #[test]
    fn conf_without_repositories_warns() {
        let mut c = conf(&[]);
        c.repos.clear();
        let (table, warnings) = RepoTable::from_conf(&c, |_| false);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].0.contains("defines no repository"));
        assert!(!table.has_repo("core"));
    }

    #[test]
    fn plans_probe_order_and_stops_at_https() {
        let now = Instant::now();
        let mut dead = DeadMirrors::default();
        let a = url("http://a.example/x");
        let b = url("http://b.example/x");
        let s = url("https://s.example/x");
        let c = url("http://c.example/x");
        dead.mark_dead(&b, now, 0);
        let steps = plan_package(vec![a.clone(), b.clone(), s.clone(), c], &dead, now);
        assert_eq!(
            steps,
            [
                MirrorStep::Probe(a.clone()),
                MirrorStep::SkipDead(b.clone()),
                MirrorStep::Redirect(s)
            ]
        );
        // Backoff expires.
        let later = now + DEAD_MIRROR_BACKOFF + Duration::from_secs(1);
        assert!(!dead.is_dead(&b, later));
        dead.mark_alive(&b);
        assert!(dead.is_empty());
    }

    #[test]
    fn database_goes_to_first_live_mirror() {
        let now = Instant::now();
        let mut dead = DeadMirrors::default();
        let a = url("http://a.example/x");
        let b = url("http://b.example/x");
        assert_eq!(
            pick_database_mirror(vec![a.clone(), b.clone()], &dead, now),
            Some(a.clone())
        );
        dead.mark_dead(&a, now, 0);
        assert_eq!(
            pick_database_mirror(vec![a.clone(), b.clone()], &dead, now),
            Some(b.clone())
        );
        dead.mark_dead(&b, now, 0);
        assert_eq!(
            pick_database_mirror(vec![a.clone(), b], &dead, now),
            Some(a)
        );
        assert_eq!(pick_database_mirror(vec![], &dead, now), None);
    }

    #[test]
    fn verdicts() {
        let table: &[(u16, ProbeVerdict)] = &[
            (200, ProbeVerdict::Has),
            (206, ProbeVerdict::Has),
            (302, ProbeVerdict::Has),
            (307, ProbeVerdict::Has),
            (304, ProbeVerdict::Failed),
            (403, ProbeVerdict::Lacks),
            (404, ProbeVerdict::Lacks),
            (410, ProbeVerdict::Lacks),
            (500, ProbeVerdict::Failed),
            (503, ProbeVerdict::Failed),
            (100, ProbeVerdict::Failed),
        ];
        for (status, want) in table {
            assert_eq!(probe_verdict(*status), *want, "{status}");
        }
    }

    #[test]
    fn dead_table_holds_every_configured_mirror() {
        let now = Instant::now();
        let mut dead = DeadMirrors::default();
        let configured = MAX_DEAD_MIRRORS * 4;
        for i in 0..configured {
            dead.mark_dead(&url(&format!("http://m{i}.example/")), now, configured);
        }
        assert_eq!(dead.len(), configured);
        assert!(dead.is_dead(&url("http://m0.example/x"), now));
        let (table, _) = RepoTable::from_conf(
            &conf(&[
                "http://a.example/$repo",
                "http://a.example/other/$repo",
                "https://a.example/",
            ]),
            |_| false,
        );
        assert_eq!(
            table.mirror_hosts(),
            2,
            "http and https of one host are two mirrors"
        );
    }

    #[test]
    fn dead_table_is_capped() {
        let now = Instant::now();
        let mut dead = DeadMirrors::default();
        for i in 0..(MAX_DEAD_MIRRORS + 50) {
            dead.mark_dead(&url(&format!("http://m{i}.example/")), now, 0);
        }
        assert_eq!(dead.len(), MAX_DEAD_MIRRORS);
        // Once the entries have expired, new ones fit again.
        let later = now + DEAD_MIRROR_BACKOFF + Duration::from_secs(1);
        dead.mark_dead(&url("http://fresh.example/"), later, 0);
        assert_eq!(dead.len(), 1);
    }
}
