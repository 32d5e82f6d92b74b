//! The mirrors of each repository: which may answer, in which order, what a probe's answer
//! means, which failed recently (pure, time passed in); and [`Mirrors`], the one place that
//! probes them (I/O).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::app::urls::FileRequest;
use crate::config::pacman_conf::PacmanConf;
use crate::http::client::head_status;
use crate::http::url::{Scheme, Url, parse_url};
use crate::limits::{DEAD_MIRROR_BACKOFF, MAX_DEAD_MIRRORS, MIRROR_PROBE_TIMEOUT};

/// Repositories and their usable mirrors, built once per (re)load of pacman.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoTable {
    repos: HashMap<String, Vec<String>>,
    architectures: Vec<String>,
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
                    Ok(_) => kept.push(server.trim_end_matches('/').to_string()),
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
        };
        (table, warnings)
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

    pub fn mark_dead(&mut self, url: &Url, now: Instant) {
        if self.until.len() >= MAX_DEAD_MIRRORS {
            self.until.retain(|_, t| now < *t);
        }
        if self.until.len() < MAX_DEAD_MIRRORS {
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

/// The probing side: mirrors that failed recently, shared by every lookup.
#[derive(Debug, Default)]
pub struct Mirrors {
    dead: Mutex<DeadMirrors>,
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
    /// first https one is taken unprobed.
    pub async fn find(&self, repos: &RepoTable, f: &FileRequest) -> Option<Url> {
        let mirrors = repos.mirror_urls(&f.repo, &f.arch, &f.file);
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
        dead.mark_dead(&b, now);
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
        dead.mark_dead(&a, now);
        assert_eq!(
            pick_database_mirror(vec![a.clone(), b.clone()], &dead, now),
            Some(b.clone())
        );
        dead.mark_dead(&b, now);
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
    fn dead_table_is_capped() {
        let now = Instant::now();
        let mut dead = DeadMirrors::default();
        for i in 0..(MAX_DEAD_MIRRORS + 50) {
            dead.mark_dead(&url(&format!("http://m{i}.example/")), now);
        }
        assert_eq!(dead.len(), MAX_DEAD_MIRRORS);
        // Once the entries have expired, new ones fit again.
        let later = now + DEAD_MIRROR_BACKOFF + Duration::from_secs(1);
        dead.mark_dead(&url("http://fresh.example/"), later);
        assert_eq!(dead.len(), 1);
    }
}
