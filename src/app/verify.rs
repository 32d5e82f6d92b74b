//! Verified copies (I/O, off the executor): what this host's sync databases say each package
//! must be (size and SHA-256, by repository), reloaded when pacman rewrites them; the SHA-256
//! of this host's cached files, computed once per file version, on a request or by a
//! background sweep at low priority; and the copies found wrong, never served again.
//!
//! pacman checks every package against its database itself; pacserve checks so that it never
//! sends pacman to a copy pacman would reject ("invalid or corrupted package"), which would
//! otherwise keep the LAN broken until someone deleted the file by hand.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use smol::lock::OnceCell;

use crate::app::local::{CachedFile, FileId};
use crate::limits::{
    HASH_CHUNK, HASH_INLINE_MAX, HASH_PEER_WAIT_MAX, MAX_HASHING, MAX_REMEMBERED_HASHES,
    RECENT_SKIPPED,
};
use crate::peers::lookup::Want;
use crate::syncdb::{self, Index};

/// A file's SHA-256 once computed (None: it could not be read), shared by all who wait.
type HashCell = Arc<OnceCell<Option<[u8; 32]>>>;

/// What a cached file is, as far as this host can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its size matches the database and so does its SHA-256 (when the database has one).
    Good,
    /// The database does not know the file (or it is a `.sig`), or its SHA-256 is not
    /// computed yet: nothing says it is wrong.
    Unknown,
    /// Not the file the database describes.
    Bad(Wrong),
}

/// Why a local copy is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrong {
    Size { want: u64, got: u64 },
    Sha256,
}

impl Wrong {
    pub fn as_str(self) -> &'static str {
        match self {
            Wrong::Size { .. } => "size",
            Wrong::Sha256 => "sha256",
        }
    }
}

/// A wrong copy in this host's cache, for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCopy {
    pub path: PathBuf,
    pub why: Wrong,
    /// Seconds since the epoch.
    pub at: u64,
}

/// One repository's database as last read: the index, and the file's mtime it was read at.
struct Loaded {
    mtime: Option<SystemTime>,
    index: Option<Arc<Index>>,
}

#[derive(Default)]
pub struct Verifier {
    /// By repository name.
    dbs: RwLock<HashMap<String, Loaded>>,
    /// SHA-256 of cached files by version; a hash in flight is shared by all who wait.
    hashes: Mutex<HashMap<FileId, HashCell>>,
    /// File versions found wrong (never served again), and the last few for the page.
    bad: Mutex<(HashSet<FileId>, VecDeque<BadCopy>, u64)>,
    /// Cached file names the background sweep has looked at since the databases changed.
    swept: Mutex<HashSet<String>>,
}

impl Verifier {
    /// What `repo`'s database says `file` must be; None when it does not know it.
    pub fn want(&self, repo: &str, file: &str) -> Option<Want> {
        let dbs = self.dbs.read().unwrap_or_else(|p| p.into_inner());
        let e = dbs.get(repo)?.index.as_ref()?.get(file)?;
        Some(Want {
            size: e.size,
            sha256: e.sha256,
        })
    }

    /// The repository whose database knows `file`, if any does.
    pub fn repo_of(&self, file: &str) -> Option<String> {
        let dbs = self.dbs.read().unwrap_or_else(|p| p.into_inner());
        dbs.iter()
            .find(|(_, l)| l.index.as_ref().is_some_and(|i| i.get(file).is_some()))
            .map(|(r, _)| r.clone())
    }

    /// Hash the cached files the databases know and whose SHA-256 is not known yet, at most
    /// `limit` of them, one after the other (the background sweep: requests find the work
    /// done). Each is checked, so a wrong copy is found before anyone asks for it. Returns
    /// how many were hashed.
    pub async fn sweep(&self, cache_dirs: &[PathBuf], listing: &[u8], limit: usize) -> usize {
        let mut hashed = 0;
        // The /info listing: `NAME SIZE` lines, a comment first.
        let names = listing
            .split(|b| *b == b'\n')
            .filter_map(|l| std::str::from_utf8(l).ok()?.split_once(' ').map(|(n, _)| n));
        for name in names {
            if hashed == limit {
                break;
            }
            if name.starts_with('#') || crate::lock(&self.swept).contains(name) {
                continue;
            }
            crate::lock(&self.swept).insert(name.to_string());
            let Some(repo) = self.repo_of(name) else {
                continue;
            };
            let name = name.to_string();
            let (dirs, owned) = (cache_dirs.to_vec(), name.clone());
            let found =
                smol::unblock(move || crate::app::local::open_cached(&dirs, &owned).0).await;
            let Some(cached) = found else { continue };
            if self.known_hash(&cached).is_some() || crate::lock(&self.bad).0.contains(&cached.id) {
                continue;
            }
            self.hash(&cached).await;
            self.check(&repo, &name, &cached, false).await;
            hashed += 1;
        }
        hashed
    }

    /// Repositories whose database is loaded, and how many packages each lists.
    pub fn loaded(&self) -> Vec<(String, usize)> {
        let dbs = self.dbs.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<(String, usize)> = dbs
            .iter()
            .filter_map(|(r, l)| l.index.as_ref().map(|i| (r.clone(), i.len())))
            .collect();
        v.sort();
        v
    }

    /// Read the databases of `repos` in `db_path/sync/` whose mtime changed (all of them the
    /// first time). Blocking: call it off the executor. A database that cannot be read keeps
    /// the previous index (and says why, once per change).
    pub fn refresh(&self, db_path: &Path, repos: &[String]) {
        for repo in repos {
            let path = db_path.join("sync").join(format!("{repo}.db"));
            let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            let known = {
                let dbs = self.dbs.read().unwrap_or_else(|p| p.into_inner());
                dbs.get(repo).map(|l| l.mtime)
            };
            if known == Some(mtime) {
                continue;
            }
            let index = match mtime {
                // No database yet (pacman -Sy has not run): nothing to check against.
                None => None,
                Some(_) => match syncdb::load(&path) {
                    Ok(index) => {
                        crate::verbose!(
                            "{}: {} packages to verify against",
                            path.display(),
                            index.len()
                        );
                        Some(Arc::new(index))
                    }
                    Err(e) => {
                        crate::error!("warning: {e}; keeping what was known of [{repo}] before");
                        let mut dbs = self.dbs.write().unwrap_or_else(|p| p.into_inner());
                        let entry = dbs.entry(repo.clone()).or_insert(Loaded {
                            mtime: None,
                            index: None,
                        });
                        entry.mtime = mtime;
                        continue;
                    }
                },
            };
            let mut dbs = self.dbs.write().unwrap_or_else(|p| p.into_inner());
            dbs.insert(repo.clone(), Loaded { mtime, index });
            // New checksums: every cached file is worth a look again.
            crate::lock(&self.swept).clear();
        }
        let mut dbs = self.dbs.write().unwrap_or_else(|p| p.into_inner());
        dbs.retain(|r, _| repos.contains(r));
    }

    /// The SHA-256 of `cached` when known, without waiting.
    pub fn known_hash(&self, cached: &CachedFile) -> Option<[u8; 32]> {
        let hashes = crate::lock(&self.hashes);
        hashes
            .get(&cached.id)
            .and_then(|c| c.get().copied().flatten())
    }

    /// The SHA-256 of `cached`, computed off the executor unless known or in flight.
    async fn hash(&self, cached: &CachedFile) -> Option<[u8; 32]> {
        let cell = {
            let mut hashes = crate::lock(&self.hashes);
            if hashes.len() >= MAX_REMEMBERED_HASHES && !hashes.contains_key(&cached.id) {
                // Forget the finished ones; a file asked for again is hashed again.
                hashes.retain(|_, c| c.get().is_none());
            }
            hashes.entry(cached.id).or_default().clone()
        };
        let file = cached.file.clone();
        *cell.get_or_init(|| hash_file(file)).await
    }

    /// What `cached` (a package `file` of `repo`) is. With `wait`, a file of at most
    /// [`HASH_INLINE_MAX`] bytes whose SHA-256 is not known yet is hashed now; otherwise its
    /// hash is started in the background and the answer is what is known.
    pub async fn check(&self, repo: &str, file: &str, cached: &CachedFile, wait: bool) -> Verdict {
        if crate::lock(&self.bad).0.contains(&cached.id) {
            return Verdict::Bad(Wrong::Sha256);
        }
        let Some(want) = self.want(repo, file) else {
            return Verdict::Unknown;
        };
        if want.size != cached.len {
            let why = Wrong::Size {
                want: want.size,
                got: cached.len,
            };
            self.found_bad(cached, why);
            return Verdict::Bad(why);
        }
        let Some(want_sha) = want.sha256 else {
            return Verdict::Good;
        };
        let got = match self.known_hash(cached) {
            Some(h) => Some(h),
            None if wait && cached.len <= HASH_INLINE_MAX => self.hash(cached).await,
            None => {
                self.hash_in_background(cached);
                None
            }
        };
        match got {
            Some(h) if h == want_sha => Verdict::Good,
            Some(_) => {
                self.found_bad(cached, Wrong::Sha256);
                Verdict::Bad(Wrong::Sha256)
            }
            None => Verdict::Unknown,
        }
    }

    /// The SHA-256 a peer is told of `cached`, whether or not a database here knows the file:
    /// known, or computed now for a file of at most [`HASH_PEER_WAIT_MAX`] bytes (a peer's
    /// question must be answered well within its peer timeout), else started in the
    /// background and None for now.
    pub async fn hash_for_peer(&self, cached: &CachedFile) -> Option<[u8; 32]> {
        if let Some(h) = self.known_hash(cached) {
            return Some(h);
        }
        if cached.len <= HASH_PEER_WAIT_MAX {
            return self.hash(cached).await;
        }
        self.hash_in_background(cached);
        None
    }

    /// Start hashing `cached` on the blocking pool, if not done or under way.
    fn hash_in_background(&self, cached: &CachedFile) {
        let started = crate::lock(&self.hashes).contains_key(&cached.id);
        if started {
            return;
        }
        let cell: HashCell = Arc::default();
        crate::lock(&self.hashes).insert(cached.id, cell.clone());
        let file = cached.file.clone();
        crate::sys::rt::spawn(async move {
            cell.get_or_init(|| hash_file(file)).await;
        })
        .detach();
    }

    fn found_bad(&self, cached: &CachedFile, why: Wrong) {
        let mut bad = crate::lock(&self.bad);
        if !bad.0.insert(cached.id) {
            return;
        }
        crate::error!(
            "{}: not served: not the package the sync database describes ({} differs)",
            cached.path.display(),
            why.as_str()
        );
        if bad.1.len() == RECENT_SKIPPED {
            bad.1.pop_front();
        }
        bad.1.push_back(BadCopy {
            path: cached.path.clone(),
            why,
            at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        bad.2 += 1;
    }

    /// Wrong local copies: the last few, and how many in all.
    pub fn bad_copies(&self) -> (Vec<BadCopy>, u64) {
        let bad = crate::lock(&self.bad);
        (bad.1.iter().cloned().collect(), bad.2)
    }
}

/// Hashes running at once (each holds a buffer and a core): a burst of peer queries for
/// distinct files waits its turn instead of filling the blocking pool.
static HASHING: smol::lock::Semaphore = smol::lock::Semaphore::new(MAX_HASHING);

/// The SHA-256 of `file`, on the blocking pool, at most [`MAX_HASHING`] at a time.
async fn hash_file(file: Arc<std::fs::File>) -> Option<[u8; 32]> {
    let _turn = HASHING.acquire().await;
    smol::unblock(move || sha256_of(&file)).await
}

/// The SHA-256 of a whole file, read in chunks at explicit offsets (the handle is shared with
/// responses being sent). Blocking. None if it cannot be read.
fn sha256_of(file: &std::fs::File) -> Option<[u8; 32]> {
    use std::os::unix::fs::FileExt;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut offset = 0u64;
    loop {
        let n = file.read_at(&mut buf, offset).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Some(hasher.finalize().into())
}
