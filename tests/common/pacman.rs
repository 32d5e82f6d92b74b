//! The real pacman as a client ([`PacmanClient`]): its own root, database, cache, keyring dir
//! and config in a temp dir, run bounded, on this host or inside a network namespace.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::packages::Pkg;
use super::process::{Ran, run_bounded};
use super::tempdir::TempDir;
use super::{PACMAN_LIMIT, preflight};

pub struct PacmanClient {
    dir: TempDir,
    conf: PathBuf,
    cache: PathBuf,
    db: PathBuf,
    gpg: PathBuf,
    repo: String,
    netns: Option<String>,
}

impl PacmanClient {
    /// A client with one repo section `[repo]` listing `servers` in order.
    pub fn new(repo: &str, servers: &[String]) -> PacmanClient {
        Self::with_options(repo, servers, "")
    }

    /// Like `new`, with `options` (lines such as `ParallelDownloads = 5`) added to
    /// `[options]`.
    pub fn with_options(repo: &str, servers: &[String], options: &str) -> PacmanClient {
        preflight::require();
        let dir = TempDir::new("client");
        let root = dir.mkdir("root");
        let db = dir.mkdir("db");
        fs::create_dir_all(db.join("sync")).expect("mkdir sync");
        fs::create_dir_all(db.join("local")).expect("mkdir local");
        let cache = dir.mkdir("cache");
        let gpg = dir.mkdir("gnupg");
        let hooks = dir.mkdir("hooks");
        let mut conf = format!(
            "[options]\n\
             RootDir = {}\n\
             DBPath = {}/\n\
             CacheDir = {}/\n\
             LogFile = {}\n\
             GPGDir = {}/\n\
             HookDir = {}/\n\
             Architecture = x86_64\n\
             SigLevel = Never\n\
             {options}\n\
             \n[{repo}]\n",
            root.display(),
            db.display(),
            cache.display(),
            dir.join("pacman.log").display(),
            gpg.display(),
            hooks.display(),
        );
        for s in servers {
            let _ = writeln!(conf, "Server = {s}");
        }
        let conf_path = dir.join("pacman.conf");
        fs::write(&conf_path, conf).expect("write client pacman.conf");
        PacmanClient {
            dir,
            conf: conf_path,
            cache,
            db,
            gpg,
            repo: repo.to_string(),
            netns: None,
        }
    }

    /// Run pacman inside the network namespace `ns` from now on.
    pub fn in_netns(mut self, ns: &str) -> PacmanClient {
        self.netns = Some(ns.to_string());
        self
    }

    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// The client's keyring directory (`GPGDir`).
    pub fn gpg_dir(&self) -> &Path {
        &self.gpg
    }

    /// The synced database file, `DBPath/sync/REPO.db`.
    pub fn sync_db(&self) -> PathBuf {
        self.db.join("sync").join(format!("{}.db", self.repo))
    }

    /// `pacman --config C --noprogressbar ARGS`, bounded by [`PACMAN_LIMIT`].
    pub fn run(&self, args: &[&str]) -> Ran {
        let mut cmd = match &self.netns {
            // `ip netns exec` execs pacman itself: its pid is pacman's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "pacman"]);
                c
            }
            None => Command::new("pacman"),
        };
        cmd.arg("--config")
            .arg(&self.conf)
            .arg("--noprogressbar")
            .args(args)
            .env("LC_ALL", "C");
        run_bounded(&mut cmd, PACMAN_LIMIT)
    }

    /// `-Sy`: refresh the database (a repeat sends If-Modified-Since).
    pub fn sync(&self) -> Ran {
        self.run(&["-Sy", "--noconfirm"])
    }

    /// A second `-Sy`; named apart so tests read as what they mean.
    pub fn sync_again(&self) -> Ran {
        self.sync()
    }

    /// `-Sw --noconfirm PKG`: download into the cache only.
    pub fn download(&self, pkg: &str) -> Ran {
        self.run(&["-Sw", "--noconfirm", pkg])
    }

    /// `-Sw PKG`, which must succeed and leave a byte-identical copy of `pkg` in the cache;
    /// `context` (logs, read after the run) goes into a failure message. The run, for more
    /// checks.
    pub fn fetch(&self, pkg: &Pkg, context: impl Fn() -> String) -> Ran {
        let ran = self.download(&pkg.name);
        ran.assert_ok(&format!("pacman -Sw {}", pkg.name), &context());
        let got = self.cached(&pkg.file);
        assert!(
            got.as_deref() == Some(&pkg.bytes[..]),
            "{} in the client's cache ({:?} bytes) is not byte-identical to the package \
             ({} bytes)\n{}",
            pkg.file,
            got.map(|g| g.len()),
            pkg.bytes.len(),
            context()
        );
        ran
    }

    /// The bytes of `file` in the client's cache, if there.
    pub fn cached(&self, file: &str) -> Option<Vec<u8>> {
        fs::read(self.cache.join(file)).ok()
    }
}
