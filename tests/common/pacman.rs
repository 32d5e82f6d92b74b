//! The real pacman as a client ([`PacmanClient`]): its own root, database, cache, keyring dir
//! and config in a temp dir, run bounded, on this host or inside a network namespace. Two
//! pacmans ([`Pacman`]): Debian's 6.0.2, and 7.1 built from source (what Arch users run),
//! with `DownloadUser = alpm` and its sandbox; [`both_pacmans!`] makes a test of each.

use std::cell::Cell;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which pacman a client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacman {
    /// Debian's `pacman-package-manager` 6.0.2 (libalpm 13).
    Debian6,
    /// pacman 7.1.0 (libalpm 16) built by `.ci/setup` into `target/pacman-7.1.0`.
    Arch7,
}

thread_local! {
    /// The pacman of the test running on this thread (`Pacman::run_test`).
    static CURRENT: Cell<Pacman> = const { Cell::new(Pacman::Debian6) };
}

/// Where `.ci/setup` builds pacman 7.1.
pub fn pacman7_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pacman-7.1.0")
}

impl Pacman {
    /// The pacman of the test running now.
    pub fn current() -> Pacman {
        CURRENT.with(Cell::get)
    }

    /// Run `test` with every client it makes being this pacman.
    pub fn run_test(self, test: impl FnOnce()) {
        if self == Pacman::Arch7 {
            let bin = self.binary();
            assert!(
                Path::new(&bin).is_file(),
                "{bin} is missing (it was there when the tests were built): run bash .ci/setup"
            );
        }
        CURRENT.with(|c| c.set(self));
        test();
    }

    pub fn binary(self) -> String {
        match self {
            Pacman::Debian6 => "pacman".into(),
            Pacman::Arch7 => pacman7_dir().join("build/pacman").display().to_string(),
        }
    }

    /// Lines its pacman.conf's `[options]` needs besides the common ones.
    fn options(self) -> &'static str {
        match self {
            Pacman::Debian6 => "",
            // As on Arch: downloads run as the unprivileged `alpm` user, sandboxed.
            Pacman::Arch7 => "DownloadUser = alpm\n",
        }
    }
}

/// Two tests from one body: `NAME::pacman6` with Debian's pacman 6.0.2 and `NAME::pacman7`
/// with pacman 7.1, so a failure names the client; the second is ignored, saying why, where
/// pacman 7.1 has not been built.
#[macro_export]
macro_rules! both_pacmans {
    ($(#[doc = $doc:expr])* fn $name:ident() $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            use super::*;

            fn body() $body

            #[test]
            fn pacman6() {
                $crate::common::Pacman::Debian6.run_test(body);
            }

            #[test]
            #[cfg_attr(
                not(pacman7),
                ignore = "pacman 7.1 is not built here: bash .ci/setup builds it from \
                          ../shared/third_party/pacman-7.1.0.tar.gz"
            )]
            fn pacman7() {
                $crate::common::Pacman::Arch7.run_test(body);
            }
        }
    };
}

use super::packages::Pkg;
use super::process::{Ran, run_bounded};
use super::tempdir::TempDir;
use super::{PACMAN_LIMIT, preflight};

pub struct PacmanClient {
    pacman: Pacman,
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
    /// `[options]`. The pacman is the current test's ([`Pacman::current`]).
    pub fn with_options(repo: &str, servers: &[String], options: &str) -> PacmanClient {
        Self::of(Pacman::current(), repo, servers, options)
    }

    /// A client whose `[repo]` lists `cache_servers` as `CacheServer` lines (pacman >= 6.1
    /// tries them first for packages; 6.0.2 warns and ignores them), then `servers`.
    pub fn with_cache_servers(
        repo: &str,
        cache_servers: &[String],
        servers: &[String],
    ) -> PacmanClient {
        let lines: Vec<String> = cache_servers
            .iter()
            .map(|s| format!("CacheServer = {s}"))
            .chain(servers.iter().map(|s| format!("Server = {s}")))
            .collect();
        Self::with_lines(Pacman::current(), repo, &lines, "")
    }

    /// A client of `pacman` with `[repo]` listing `servers`, and `options` in `[options]`.
    pub fn of(pacman: Pacman, repo: &str, servers: &[String], options: &str) -> PacmanClient {
        let lines: Vec<String> = servers.iter().map(|s| format!("Server = {s}")).collect();
        Self::with_lines(pacman, repo, &lines, options)
    }

    /// A client of `pacman` whose `[repo]` section holds `repo_lines`.
    fn with_lines(
        pacman: Pacman,
        repo: &str,
        repo_lines: &[String],
        options: &str,
    ) -> PacmanClient {
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
             {}{options}\n\
             \n[{repo}]\n",
            root.display(),
            db.display(),
            cache.display(),
            dir.join("pacman.log").display(),
            gpg.display(),
            hooks.display(),
            pacman.options(),
        );
        for line in repo_lines {
            let _ = writeln!(conf, "{line}");
        }
        let conf_path = dir.join("pacman.conf");
        fs::write(&conf_path, conf).expect("write client pacman.conf");
        if pacman == Pacman::Arch7 {
            // pacman 7 downloads as `alpm`, which must get through every directory on the way
            // to DBPath and CacheDir, whatever the umask made of them.
            use std::os::unix::fs::PermissionsExt;
            for d in [
                dir.path(),
                &root,
                &db,
                &db.join("sync"),
                &db.join("local"),
                &cache,
                &gpg,
            ] {
                fs::set_permissions(d, fs::Permissions::from_mode(0o755))
                    .unwrap_or_else(|e| panic!("chmod {}: {e}", d.display()));
            }
        }
        PacmanClient {
            pacman,
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

    /// Which pacman this is.
    pub fn pacman(&self) -> Pacman {
        self.pacman
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
        let bin = self.pacman.binary();
        let mut cmd = match &self.netns {
            // `ip netns exec` execs pacman itself: its pid is pacman's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, &bin]);
                c
            }
            None => Command::new(&bin),
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
