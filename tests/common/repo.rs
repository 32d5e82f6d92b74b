//! A test world's parts: a repository `core` on a [`Mirror`] ([`Repo`]), hosts with a cache
//! dir and a pacman.conf naming that mirror ([`Host`]), and pacserve's pacman.conf itself
//! ([`write_server_conf`]).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use super::daemon::{Launch, Pacserve};
use super::mirror::Mirror;
use super::packages::{Pkg, repo_add};
use super::tempdir::TempDir;

/// Write `dir/pacserve.conf`: an `[options]` section with `cache_dirs` and `DBPath = dir/db/`
/// (whose `sync/` holds the databases pacserve verifies copies against, none at first) and
/// one section per repo with its `Server =` lines in order. Returns the file's path.
pub fn write_server_conf(dir: &Path, cache_dirs: &[&Path], repos: &[(&str, &[String])]) -> PathBuf {
    write_server_conf_for(dir, "x86_64", cache_dirs, repos)
}

/// [`write_server_conf`] for another `Architecture`.
pub fn write_server_conf_for(
    dir: &Path,
    arch: &str,
    cache_dirs: &[&Path],
    repos: &[(&str, &[String])],
) -> PathBuf {
    let mut conf = format!(
        "[options]\nArchitecture = {arch}\nDBPath = {}/\n",
        dir.join("db").display()
    );
    for c in cache_dirs {
        let _ = writeln!(conf, "CacheDir = {}/", c.display());
    }
    for (name, servers) in repos {
        let _ = writeln!(conf, "\n[{name}]");
        for s in servers.iter() {
            let _ = writeln!(conf, "Server = {s}");
        }
    }
    let path = dir.join("pacserve.conf");
    fs::write(&path, conf).expect("write pacserve.conf");
    path
}

/// Repository `core` (database made by `repo-add`) with packages of the given names and
/// payload sizes, served by a mirror, in a temp dir that also holds the hosts. Fields drop in
/// order: the mirror before the directory it serves.
pub struct Repo {
    pub mirror: Mirror,
    pub pkgs: Vec<Pkg>,
    pub dir: TempDir,
}

impl Repo {
    /// Served by a mirror on 127.0.0.1.
    pub fn new(tag: &str, pkgs: &[(&str, usize)]) -> Repo {
        Self::served_by(tag, pkgs, Mirror::start)
    }

    /// Served by the mirror `start` makes of the mirror's root directory.
    pub fn served_by(
        tag: &str,
        pkgs: &[(&str, usize)],
        start: impl FnOnce(&Path) -> Mirror,
    ) -> Repo {
        let dir = TempDir::new(tag);
        let repo_dir = dir.mkdir("mirror/core/os/x86_64");
        let pkgs: Vec<Pkg> = pkgs
            .iter()
            .map(|(name, payload)| Pkg::build(&repo_dir, name, *payload))
            .collect();
        repo_add(
            &repo_dir.join("core.db.tar.gz"),
            &pkgs.iter().collect::<Vec<_>>(),
        );
        let mirror = start(&dir.join("mirror"));
        Repo { mirror, pkgs, dir }
    }

    pub fn pkg(&self, name: &str) -> &Pkg {
        self.pkgs
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no package {name} in this repo"))
    }

    /// The mirror's `Server =` value.
    pub fn server(&self) -> String {
        self.mirror.url("/$repo/os/$arch")
    }

    /// Where `pkg` lies on the mirror, as a URL.
    pub fn mirror_url(&self, pkg: &Pkg) -> String {
        self.mirror.url(&pkg.mirror_path())
    }

    /// The database file as the mirror serves it.
    pub fn db(&self) -> Vec<u8> {
        fs::read(self.dir.join("mirror/core/os/x86_64/core.db.tar.gz")).expect("read repo db")
    }

    /// Take `pkg`'s file off the mirror: it stays in the database only.
    pub fn remove_from_mirror(&self, pkg: &Pkg) {
        fs::remove_file(&pkg.path).unwrap_or_else(|e| panic!("rm {}: {e}", pkg.path.display()));
    }

    /// Host `name`: an empty cache dir and a pacman.conf whose `[core]` lists the mirror.
    pub fn host(&self, name: &str) -> Host {
        let dir = self.dir.mkdir(name);
        let cache = self.dir.mkdir(format!("{name}/cache"));
        let conf = write_server_conf(&dir, &[&cache], &[("core", &[self.server()])]);
        Host {
            name: name.to_string(),
            dir,
            cache,
            conf,
        }
    }
}

/// One pacserve's files: its directory, cache dir and pacman.conf.
pub struct Host {
    /// What failure messages call its pacserve.
    pub name: String,
    pub dir: PathBuf,
    pub cache: PathBuf,
    pub conf: PathBuf,
}

impl Host {
    /// Put a copy of `pkg` into this host's cache.
    pub fn hold(&self, pkg: &Pkg) {
        pkg.copy_to(&self.cache);
    }

    /// Put a file named `name` into this host's cache.
    pub fn put(&self, name: &str, bytes: &[u8]) {
        let p = self.cache.join(name);
        fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// What `pacman -Sy` leaves: `db` as this host's `DBPath/sync/core.db` (a new file, so
    /// its mtime changes and a running pacserve reads it again).
    pub fn learn(&self, db: &[u8]) {
        let sync = self.dir.join("db/sync");
        fs::create_dir_all(&sync).expect("mkdir DBPath/sync");
        let tmp = sync.join("core.db.new");
        fs::write(&tmp, db).expect("write the sync db");
        fs::rename(&tmp, sync.join("core.db")).expect("move the sync db into place");
    }

    /// Rewrite this host's pacman.conf with `servers` for `[core]`; its path.
    pub fn set_servers(&self, servers: &[String]) -> PathBuf {
        write_server_conf(&self.dir, &[&self.cache], &[("core", servers)])
    }

    /// A launch of pacserve with this host's pacman.conf.
    pub fn pacserve(&self) -> Launch {
        Pacserve::builder(&self.conf).name(&self.name)
    }

    /// pacserve with this host's pacman.conf and `extra` arguments.
    pub fn start(&self, extra: &[&str]) -> Pacserve {
        self.pacserve().args(extra).start()
    }
}
