//! The hub's directory, which is all its state (I/O, blocking: call it off the executor).
//!
//! `DIR/NAME` are the complete files, served like cache files; `DIR/.partial/NAME` the pulls
//! under way, which nothing ever serves (a request names a single file directly in a dir,
//! and `.partial` is no package name), resumed after a restart and removed once a day old.
//! A pull is renamed into place whole (its `.sig` first), and the directory synced, so a
//! crash leaves either the old state or the new one. A file's access time says when it was
//! last served or pulled.
//!
//! Files being sent are counted by the handle they are sent from: a file is served from one
//! shared handle while any response holds it, and eviction, under the same lock, never
//! removes a file whose handle is alive.

use std::fs::{self, File, FileTimes};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use crate::app::local::{CachedFile, FileId, Lookup, Skip, open_one};
use crate::app::urls::{FileKind, classify};
use crate::error::{IoError, local_shortage};
use crate::limits::HUB_STALE_PARTIAL;
use crate::names::valid_file;

/// The directory of pulls under way, inside the hub's directory.
const PARTIAL: &str = ".partial";

/// A file the hub holds, as its directory says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldFile {
    pub file: String,
    pub size: u64,
    /// Last served or pulled, nanoseconds since the epoch.
    pub used: u64,
}

pub struct Store {
    dir: PathBuf,
    partial: PathBuf,
    /// The handle each file is being sent from; dead entries are pruned as it grows.
    sending: Mutex<Vec<(String, Weak<File>)>>,
    /// Held by renames into place, scans and evictions, so each sees the others whole.
    changing: Mutex<()>,
}

impl Store {
    /// Take `dir` (created if missing), and remove the pulls under way there that are
    /// older than [`HUB_STALE_PARTIAL`]; younger ones are resumed.
    pub fn open(dir: &Path) -> Result<Store, IoError> {
        let partial = dir.join(PARTIAL);
        fs::create_dir_all(&partial)
            .map_err(|e| IoError::new(format_args!("creating {}", partial.display()), e))?;
        let store = Store {
            dir: dir.to_path_buf(),
            partial,
            sending: Mutex::default(),
            changing: Mutex::default(),
        };
        let now = SystemTime::now();
        for (name, meta) in entries(&store.partial) {
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok());
            if age.is_some_and(|a| a > HUB_STALE_PARTIAL) {
                let _ = fs::remove_file(store.partial.join(&name));
                crate::info!("hub: removed the stale partial pull {name}");
            }
        }
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the pull of `file` is written.
    pub fn partial(&self, file: &str) -> PathBuf {
        self.partial.join(file)
    }

    /// Bytes of `file` pulled so far (0 when no pull is under way).
    pub fn partial_len(&self, file: &str) -> u64 {
        fs::metadata(self.partial(file)).map_or(0, |m| m.len())
    }

    /// Forget the pull of `file` under way.
    pub fn discard(&self, file: &str) {
        let _ = fs::remove_file(self.partial(file));
    }

    /// Remove every pull under way but those of `keep` (a full disk leaves nothing partial).
    pub fn discard_all_but(&self, keep: &[String]) {
        for (name, _) in entries(&self.partial) {
            if !keep.contains(&name) {
                self.discard(&name);
            }
        }
    }

    /// `file` from the directory, to be sent: the handle it is being sent from already, or
    /// a new one; its access time says it was used now.
    pub fn serve(&self, file: &str) -> Lookup {
        let mut sending = crate::lock(&self.sending);
        // Only the files being sent are kept: a short list.
        sending.retain(|(_, w)| w.strong_count() > 0);
        let shared = sending
            .iter()
            .find(|(f, _)| f == file)
            .and_then(|(_, w)| w.upgrade());
        let cached = match shared {
            Some(handle) => match handle.metadata() {
                Ok(meta) => cached(handle, self.dir.join(file), &meta),
                Err(_) => return Lookup::Absent,
            },
            None => match open_one(&self.dir.join(file)) {
                Ok(c) => c,
                Err(Skip::Io(e)) if local_shortage(&e) => return Lookup::Shortage,
                Err(_) => return Lookup::Absent,
            },
        };
        if shared_is_new(&sending, file) {
            sending.push((file.to_string(), Arc::downgrade(&cached.file)));
        }
        // Not ours to touch (an operator's copy): it keeps the time it has.
        let _ = cached
            .file
            .set_times(FileTimes::new().set_accessed(SystemTime::now()));
        Lookup::Hit(cached)
    }

    /// Whether `file` is being sent.
    pub fn busy(&self, file: &str) -> bool {
        being_sent(&crate::lock(&self.sending), file)
    }

    /// The complete files held: package files and `.sig`s, non-empty regular files directly
    /// in the directory, sorted by name.
    pub fn scan(&self) -> Vec<HeldFile> {
        let _changing = crate::lock(&self.changing);
        let mut held: Vec<HeldFile> = Vec::new();
        for (file, m) in entries(&self.dir) {
            if classify(&file) == Some(FileKind::Package) {
                held.push(HeldFile {
                    size: m.len(),
                    used: used(&m),
                    file,
                });
            }
        }
        crate::hub::order::sort_by(&mut held, |a, b| a.file.cmp(&b.file));
        held
    }

    /// Rename the pulls of `files` into place, in order (a `.sig` before its package), and
    /// make it durable.
    pub fn commit(&self, files: &[String]) -> io::Result<()> {
        let _changing = crate::lock(&self.changing);
        for f in files {
            let from = self.partial(f);
            File::open(&from)?.set_times(FileTimes::new().set_accessed(SystemTime::now()))?;
            fs::rename(from, self.dir.join(f))?;
        }
        File::open(&self.dir)?.sync_all()
    }

    /// Remove `files` (one unit: a package and its `.sig`) unless one is being sent:
    /// Ok(false) then, and nothing is removed.
    pub fn evict(&self, files: &[String]) -> io::Result<bool> {
        let _changing = crate::lock(&self.changing);
        let sending = crate::lock(&self.sending);
        if files.iter().any(|f| being_sent(&sending, f)) {
            return Ok(false);
        }
        for f in files {
            match fs::remove_file(self.dir.join(f)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        drop(sending);
        File::open(&self.dir)?.sync_all()?;
        Ok(true)
    }

    /// The filesystem's size and the bytes free for an unprivileged writer.
    pub fn space(&self) -> Option<(u64, u64)> {
        let s = rustix::fs::statvfs(&self.dir).ok()?;
        Some((s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize))
    }
}

/// Whether `file` is in `sending` with a live handle.
fn being_sent(sending: &[(String, Weak<File>)], file: &str) -> bool {
    sending
        .iter()
        .any(|(f, w)| f == file && w.strong_count() > 0)
}

/// Whether `file` has no entry in `sending` yet.
fn shared_is_new(sending: &[(String, Weak<File>)], file: &str) -> bool {
    !sending.iter().any(|(f, _)| f == file)
}

/// When a file was last used: the later of its access and modification times.
fn used(m: &fs::Metadata) -> u64 {
    let ns = |s: i64, n: i64| (s.max(0) as u64) * 1_000_000_000 + n.max(0) as u64;
    ns(m.atime(), m.atime_nsec()).max(ns(m.mtime(), m.mtime_nsec()))
}

fn cached(file: Arc<File>, path: PathBuf, meta: &fs::Metadata) -> CachedFile {
    CachedFile {
        file,
        path,
        len: meta.len(),
        mtime: meta.mtime().max(0) as u64,
        id: FileId::of(meta),
    }
}

/// The non-empty regular files with valid names directly in `dir` (symlinks not followed).
fn entries(dir: &Path) -> Vec<(String, fs::Metadata)> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in read.flatten() {
        let (Ok(name), Ok(meta)) = (e.file_name().into_string(), e.metadata()) else {
            continue;
        };
        if valid_file(&name) && meta.file_type().is_file() && meta.len() > 0 {
            found.push((name, meta));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "pacserve-hubstore-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&p);
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const A: &str = "a-1-1-any.pkg.tar.zst";

    #[test]
    fn pulls_are_invisible_until_renamed_into_place() {
        let d = Dir::new("commit");
        let s = Store::open(&d.0).unwrap();
        fs::write(s.partial(A), b"abc").unwrap();
        fs::write(s.partial(&format!("{A}.sig")), b"s").unwrap();
        assert_eq!(s.partial_len(A), 3);
        assert!(s.scan().is_empty(), "a pull under way is not held");
        assert!(matches!(s.serve(A), Lookup::Absent));
        s.commit(&[format!("{A}.sig"), A.to_string()]).unwrap();
        let held: Vec<(String, u64)> = s.scan().into_iter().map(|h| (h.file, h.size)).collect();
        assert_eq!(held, [(A.to_string(), 3), (format!("{A}.sig"), 1)]);
        assert_eq!(s.partial_len(A), 0);
        assert!(matches!(s.serve(A), Lookup::Hit(c) if c.len == 3));
    }

    #[test]
    fn a_file_being_sent_is_never_evicted() {
        let d = Dir::new("busy");
        let s = Store::open(&d.0).unwrap();
        fs::write(d.0.join(A), b"abc").unwrap();
        let Lookup::Hit(sending) = s.serve(A) else {
            panic!("served")
        };
        // A second request shares the handle.
        let Lookup::Hit(again) = s.serve(A) else {
            panic!("served")
        };
        assert!(Arc::ptr_eq(&sending.file, &again.file));
        assert!(s.busy(A));
        assert!(
            !s.evict(&[A.to_string()]).unwrap(),
            "evicted while being sent"
        );
        assert!(d.0.join(A).exists());
        drop((sending, again));
        assert!(!s.busy(A));
        assert!(s.evict(&[A.to_string()]).unwrap());
        assert!(!d.0.join(A).exists());
    }

    #[test]
    fn serving_marks_a_file_used_and_stale_partials_go() {
        let d = Dir::new("used");
        let s = Store::open(&d.0).unwrap();
        fs::write(d.0.join(A), b"abc").unwrap();
        let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let f = File::options().write(true).open(d.0.join(A)).unwrap();
        f.set_times(
            FileTimes::new()
                .set_accessed(long_ago)
                .set_modified(long_ago),
        )
        .unwrap();
        let before = s.scan()[0].used;
        drop(s.serve(A));
        assert!(s.scan()[0].used > before);
        // A partial older than a day goes at the next open; a young one stays.
        fs::write(s.partial("old-1-1-any.pkg.tar.zst"), b"x").unwrap();
        fs::write(s.partial("new-1-1-any.pkg.tar.zst"), b"x").unwrap();
        let old = File::options()
            .write(true)
            .open(s.partial("old-1-1-any.pkg.tar.zst"))
            .unwrap();
        old.set_modified(SystemTime::now() - HUB_STALE_PARTIAL - Duration::from_secs(60))
            .unwrap();
        let s = Store::open(&d.0).unwrap();
        assert_eq!(s.partial_len("old-1-1-any.pkg.tar.zst"), 0);
        assert_eq!(s.partial_len("new-1-1-any.pkg.tar.zst"), 1);
        s.discard_all_but(&[]);
        assert_eq!(s.partial_len("new-1-1-any.pkg.tar.zst"), 0);
    }
}
