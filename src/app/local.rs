//! This host's cache as pacserve serves it (I/O, off the executor): package files opened
//! safely from pacman's cache dirs, the answer for a hit (200/206/304/416), and the `/info`
//! listing.
//!
//! A name has already passed `names::valid_file` (a single plain file name); here we only
//! accept what is really a complete package: a non-empty regular file directly inside a
//! CacheDir, opened without following a symlink and without blocking on a FIFO.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::app::outcome::{Answer, Outcome};
use crate::error::local_shortage;
use crate::http::date::{format_http_date, parse_http_date};
use crate::http::message::{Body, Request};
use crate::http::range::{RangeDecision, decide_range};
use crate::limits::{OPEN_CACHE_MAX, OPEN_CACHE_TTL};

use rustix::fs::OFlags;

#[derive(Debug, Clone)]
pub struct CachedFile {
    /// Shared: sendfile reads at explicit offsets, so responses never disturb each other.
    pub file: Arc<File>,
    pub path: PathBuf,
    pub len: u64,
    /// Modification time, whole seconds since the Unix epoch (HTTP dates have no fractions).
    pub mtime: u64,
    /// Which file this is on disk, as far as its content goes: a replaced or rewritten file
    /// has another id, so a hash remembered for it is never taken for the new one.
    pub id: FileId,
}

/// A file's identity and version: device, inode, size and modification time (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// Why a cache dir did not yield the file (for `--verbose` lookup detail).
#[derive(Debug)]
pub enum Skip {
    Missing,
    NotRegular,
    Empty,
    Io(std::io::Error),
}

/// The first cache dir holding a complete regular file `name`, opened for reading; with the
/// reasons the others were skipped. Blocking: call it off the executor.
pub fn open_cached(
    cache_dirs: &[PathBuf],
    name: &str,
) -> (Option<CachedFile>, Vec<(PathBuf, Skip)>) {
    debug_assert!(crate::names::valid_file(name));
    let mut skipped = Vec::new();
    for dir in cache_dirs {
        let path = dir.join(name);
        match open_one(&path) {
            Ok(found) => return (Some(found), skipped),
            Err(skip) => {
                // Out of descriptors: the other dirs would fail the same way.
                let shortage = matches!(&skip, Skip::Io(e) if local_shortage(e));
                skipped.push((path, skip));
                if shortage {
                    break;
                }
            }
        }
    }
    (None, skipped)
}

/// What looking in the cache found.
#[derive(Debug)]
pub enum Lookup {
    Hit(CachedFile),
    Absent,
    /// This host ran out of descriptors or memory: the file may well be there, so it must
    /// not be answered as absent.
    Shortage,
}

/// `path`, if it is a complete package file: a non-empty regular file, opened without
/// following a symlink or blocking on a FIFO. Blocking.
pub(crate) fn open_one(path: &Path) -> Result<CachedFile, Skip> {
    // O_NOFOLLOW: a symlink in the cache is not followed out of it. O_NONBLOCK: a FIFO of
    // that name must not hang the open; we refuse it below anyway.
    let flags = (OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Skip::Missing,
            // ELOOP from O_NOFOLLOW on a symlink.
            _ if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                Skip::NotRegular
            }
            _ => Skip::Io(e),
        })?;
    let meta = file.metadata().map_err(Skip::Io)?;
    if !meta.file_type().is_file() {
        return Err(Skip::NotRegular);
    }
    if meta.len() == 0 {
        return Err(Skip::Empty);
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Ok(CachedFile {
        file: Arc::new(file),
        path: path.to_path_buf(),
        len: meta.len(),
        mtime,
        id: FileId::of(&meta),
    })
}

/// Recently opened cache files, so that repeated requests for the same package (HEAD then
/// GET, a `.sig` after its package, a LAN burst) skip the trip to the blocking pool. Only
/// hits are kept, briefly: a file deleted meanwhile is still served whole from the open
/// handle, and a file that appears is found on the next miss.
#[derive(Debug, Default)]
pub struct OpenCache {
    entries: Mutex<HashMap<String, (CachedFile, Instant)>>,
}

impl OpenCache {
    pub fn get(&self, name: &str, now: Instant) -> Option<CachedFile> {
        let entries = crate::lock(&self.entries);
        entries
            .get(name)
            .filter(|(_, at)| now.saturating_duration_since(*at) < OPEN_CACHE_TTL)
            .map(|(f, _)| f.clone())
    }

    pub fn put(&self, name: &str, file: &CachedFile, now: Instant) {
        let mut entries = crate::lock(&self.entries);
        if entries.len() >= OPEN_CACHE_MAX {
            entries.retain(|_, (_, at)| now.saturating_duration_since(*at) < OPEN_CACHE_TTL);
            if entries.len() >= OPEN_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(name.to_string(), (file.clone(), now));
    }

    /// Forget everything (the cache dirs changed).
    pub fn clear(&self) {
        crate::lock(&self.entries).clear();
    }
}

/// Every package file (name, size) directly in the cache dirs; a name in several dirs is
/// listed once, from the first (the one that would be served). Sorted by name. Blocking.
pub fn list_packages(cache_dirs: &[PathBuf]) -> Vec<(String, u64)> {
    let mut seen = std::collections::BTreeMap::new();
    for dir in cache_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if seen.contains_key(&name)
                || !crate::names::valid_file(&name)
                || crate::app::urls::classify(&name) != Some(crate::app::urls::FileKind::Package)
            {
                continue;
            }
            // DirEntry::metadata does not follow symlinks, like the serving path.
            match entry.metadata() {
                Ok(m) if m.file_type().is_file() && m.len() > 0 => {
                    seen.insert(name, m.len());
                }
                _ => {}
            }
        }
    }
    seen.into_iter().collect()
}

/// What is wrong with a `CacheDir`, in words a user can act on; None when it can be listed.
/// Blocking (one `read_dir`): call it at start and on reload.
pub fn cache_dir_problem(dir: &Path) -> Option<String> {
    match std::fs::read_dir(dir) {
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "CacheDir {} does not exist: nothing can be served from it until it does \
             (pacman creates it on its first download; or fix CacheDir in pacman.conf)",
            dir.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Some(format!(
            "CacheDir {} is not a directory: fix CacheDir in pacman.conf",
            dir.display()
        )),
        Err(e) => Some(format!(
            "CacheDir {} cannot be read ({e}): let pacserve's user read it, or fix CacheDir \
             in pacman.conf",
            dir.display()
        )),
    }
}

/// Modification times of the cache dirs: the listing changes only when one of these does.
pub fn dirs_stamp(cache_dirs: &[PathBuf]) -> Vec<Option<std::time::SystemTime>> {
    cache_dirs
        .iter()
        .map(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok())
        .collect()
}

/// One scan of the cache dirs: the `/info` body and its package count, and what it was made
/// from (the dirs and their mtimes), to tell when it is stale.
#[derive(Debug)]
pub struct Listing {
    dirs: Vec<PathBuf>,
    stamp: Vec<Option<SystemTime>>,
    pub body: Arc<Vec<u8>>,
    pub count: u64,
    /// The listing's validator (a hash of the body, quoted): an unchanged listing costs a
    /// peer's next poll a 304.
    pub etag: String,
}

impl Listing {
    /// Made from these dirs as they are now. A dir that does not exist is a state like any
    /// other (None), not a reason to scan again: only a change is.
    fn is_current(&self, dirs: &[PathBuf], stamp: &[Option<SystemTime>]) -> bool {
        self.dirs == dirs && self.stamp == stamp
    }

    /// Scan `dirs` (blocking).
    fn scan(dirs: Vec<PathBuf>) -> Listing {
        let stamp = dirs_stamp(&dirs);
        let packages = list_packages(&dirs);
        let mut text = String::from("# pacserve info 1: NAME SIZE\n");
        for (name, size) in &packages {
            text.push_str(name);
            text.push(' ');
            text.push_str(&size.to_string());
            text.push('\n');
        }
        // FNV-1a: a change of any byte changes the tag (not a defence: only a validator).
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Listing {
            dirs,
            stamp,
            body: Arc::new(text.into_bytes()),
            count: packages.len() as u64,
            etag: format!("\"{hash:016x}\""),
        }
    }
}

/// Cache files that could not be opened for want of descriptors: a few lines, not a flood.
static SHORTAGE_ERRORS: crate::sys::log::Throttle = crate::sys::log::Throttle::new();

/// Recently opened files and the `/info` listing: what serving from the cache remembers.
#[derive(Default)]
pub struct Local {
    open_files: OpenCache,
    listing: Mutex<Option<Arc<Listing>>>,
    /// Held while a scan runs: at most one at a time, however many ask.
    scanning: smol::lock::Mutex<()>,
}

impl Local {
    /// A complete package file `name` from the cache dirs: from the open-file cache when
    /// it was opened a moment ago, else opened off the executor (open/stat may block on a
    /// slow disk, and must not freeze every connection).
    pub async fn open(&self, cache_dirs: &[PathBuf], name: &str) -> Lookup {
        if let Some(hit) = self.open_files.get(name, Instant::now()) {
            return Lookup::Hit(hit);
        }
        let dirs = cache_dirs.to_vec();
        let owned = name.to_string();
        let (found, skipped) = smol::unblock(move || open_cached(&dirs, &owned)).await;
        let mut shortage = false;
        for (path, why) in &skipped {
            if matches!(why, Skip::Io(e) if local_shortage(e)) {
                shortage = true;
                crate::error_throttled!(
                    SHORTAGE_ERRORS,
                    "{}: cannot open: {why:?}",
                    path.display()
                );
            } else {
                crate::verbose!("{}: not served: {why:?}", path.display());
            }
        }
        match found {
            Some(f) => {
                self.open_files.put(name, &f, Instant::now());
                Lookup::Hit(f)
            }
            None if shortage => Lookup::Shortage,
            None => Lookup::Absent,
        }
    }

    /// `/info`: the packages this host holds, rescanned only when a cache dir changed; a
    /// 304 when the asker's `If-None-Match` names the current listing.
    pub async fn info(&self, cache_dirs: &[PathBuf], req: &Request) -> Answer {
        let listing = self.listing(cache_dirs).await;
        if req
            .if_none_match
            .as_deref()
            .is_some_and(|tags| names_tag(tags, &listing.etag))
        {
            return Answer::new(304, Outcome::Status).header("ETag", listing.etag.clone());
        }
        Answer::new(200, Outcome::Status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .header("ETag", listing.etag.clone())
            .with_body(Body::Shared(listing.body.clone()))
    }

    fn last(&self) -> Option<Arc<Listing>> {
        crate::lock(&self.listing).clone()
    }

    /// The listing of `cache_dirs`: the last one while it is current; else a new scan, of
    /// which only one runs at a time: whoever asks meanwhile gets the previous listing (and
    /// waits only when there is none yet).
    pub async fn listing(&self, cache_dirs: &[PathBuf]) -> Arc<Listing> {
        let dirs = cache_dirs.to_vec();
        let stamp = {
            let dirs = dirs.clone();
            smol::unblock(move || dirs_stamp(&dirs)).await
        };
        let last = self.last();
        if let Some(l) = last.as_ref().filter(|l| l.is_current(&dirs, &stamp)) {
            return l.clone();
        }
        let _scanning = match (self.scanning.try_lock(), last) {
            (Some(guard), _) => guard,
            (None, Some(previous)) => return previous,
            (None, None) => self.scanning.lock().await,
        };
        // Whoever held the lock before us may have just scanned.
        if let Some(l) = self.last().filter(|l| l.is_current(&dirs, &stamp)) {
            return l;
        }
        let fresh = Arc::new(smol::unblock(move || Listing::scan(dirs)).await);
        *crate::lock(&self.listing) = Some(fresh.clone());
        fresh
    }

    /// How many packages the cache holds, for the status page: the last listing's count,
    /// never waiting for a rescan; when no scan runs, one is started in the background, which
    /// rescans only if a dir changed. Only before the first listing exists does this wait.
    pub async fn package_count(self: &Arc<Self>, cache_dirs: &[PathBuf]) -> u64 {
        let Some(last) = self.last() else {
            return self.listing(cache_dirs).await.count;
        };
        if self.scanning.try_lock().is_some() {
            let (local, dirs) = (self.clone(), cache_dirs.to_vec());
            crate::sys::rt::spawn(async move {
                local.listing(&dirs).await;
            })
            .detach();
        }
        last.count
    }

    /// The cache dirs changed (a reload): forget the files opened from the old ones.
    pub fn forget_open_files(&self) {
        self.open_files.clear();
    }
}

/// Whether an `If-None-Match` value (`*`, or tags separated by commas, weak or strong)
/// names `etag` (RFC 9110 §13.1.2: the weak comparison).
fn names_tag(tags: &str, etag: &str) -> bool {
    tags.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
    })
}

/// A cache hit: 200, 206, 304 or 416 as the conditional and range headers ask.
pub fn serve(cached: CachedFile, req: &Request) -> Answer {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    serve_at(cached, req, now)
}

/// [`serve`] at `now` (seconds since the epoch). An If-Modified-Since later than now is
/// ignored (RFC 9110 §13.1.3): a client's clock in the future must not get a 304 for a file
/// that changed after the date it sent.
fn serve_at(cached: CachedFile, req: &Request, now: u64) -> Answer {
    let last_modified = format_http_date(cached.mtime);
    let since = req.if_modified_since.as_deref().and_then(parse_http_date);
    if let Some(since) = since.filter(|s| *s <= now) {
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Dir {
            let nanos = std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let p = std::env::temp_dir().join(format!(
                "pacserve-cache-{tag}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn first_complete_regular_file_wins() {
        let a = Dir::new("a");
        let b = Dir::new("b");
        let name = "x-1-1-any.pkg.tar.zst";
        std::fs::write(a.0.join(name), b"").unwrap(); // empty: not a package
        std::fs::write(b.0.join(name), b"package").unwrap();
        let (found, skipped) = open_cached(&[a.0.clone(), b.0.clone()], name);
        let found = found.expect("found in b");
        assert_eq!(found.path, b.0.join(name));
        assert_eq!(found.len, 7);
        assert!(matches!(skipped.as_slice(), [(_, Skip::Empty)]));
    }

    #[test]
    fn open_cache_keeps_hits_briefly_and_is_bounded() {
        let d = Dir::new("oc");
        let name = "x-1-1-any.pkg.tar.zst";
        std::fs::write(d.0.join(name), b"package").unwrap();
        let (found, _) = open_cached(std::slice::from_ref(&d.0), name);
        let found = found.unwrap();
        let cache = OpenCache::default();
        let t0 = Instant::now();
        assert!(cache.get(name, t0).is_none());
        cache.put(name, &found, t0);
        assert_eq!(cache.get(name, t0).map(|f| f.len), Some(7));
        assert!(cache.get(name, t0 + OPEN_CACHE_TTL).is_none(), "expired");
        for i in 0..(OPEN_CACHE_MAX + 5) {
            cache.put(&format!("n{i}"), &found, t0);
        }
        assert!(cache.entries.lock().unwrap().len() <= OPEN_CACHE_MAX);
        cache.clear();
        assert!(cache.get("n1", t0).is_none());
    }

    #[test]
    fn lists_only_servable_packages() {
        let a = Dir::new("la");
        let b = Dir::new("lb");
        std::fs::write(a.0.join("x-1-1-any.pkg.tar.zst"), b"12345").unwrap();
        std::fs::write(a.0.join("x-1-1-any.pkg.tar.zst.sig"), b"sig").unwrap();
        std::fs::write(a.0.join("y-1-1-any.pkg.tar.zst.part"), b"partial").unwrap();
        std::fs::write(a.0.join("empty-1-1-any.pkg.tar.zst"), b"").unwrap();
        std::fs::write(a.0.join("notes.txt"), b"hello").unwrap();
        std::fs::create_dir(a.0.join("download-abc")).unwrap();
        std::fs::write(a.0.join("download-abc/z-1-1-any.pkg.tar.zst"), b"zz").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", a.0.join("l-1-1-any.pkg.tar.zst")).unwrap();
        std::fs::write(b.0.join("x-1-1-any.pkg.tar.zst"), b"longer file").unwrap();
        std::fs::write(b.0.join("w-1-1-any.pkg.tar.xz"), b"w").unwrap();
        let got = list_packages(&[a.0.clone(), b.0.clone(), PathBuf::from("/nonexistent")]);
        assert_eq!(
            got,
            [
                ("w-1-1-any.pkg.tar.xz".to_string(), 1),
                ("x-1-1-any.pkg.tar.zst".to_string(), 5),
                ("x-1-1-any.pkg.tar.zst.sig".to_string(), 3),
            ]
        );
    }

    #[test]
    fn a_listing_is_rescanned_only_when_a_dir_changed() {
        let d = Dir::new("listing");
        std::fs::write(d.0.join("x-1-1-any.pkg.tar.zst"), b"12345").unwrap();
        let missing = d.0.join("not-yet");
        let dirs = vec![d.0.clone(), missing.clone()];
        let local = Arc::new(Local::default());
        smol::block_on(async {
            let first = local.listing(&dirs).await;
            assert_eq!(first.count, 1);
            // A dir that does not exist is a stable state: no rescan.
            let again = local.listing(&dirs).await;
            assert!(
                Arc::ptr_eq(&first, &again),
                "rescanned with nothing changed"
            );
            assert_eq!(local.package_count(&dirs).await, 1);
            // The missing dir appears with a package: rescanned.
            std::fs::create_dir(&missing).unwrap();
            std::fs::write(missing.join("y-1-1-any.pkg.tar.zst"), b"1").unwrap();
            let after = local.listing(&dirs).await;
            assert_eq!(after.count, 2);
            assert!(String::from_utf8_lossy(&after.body).contains("y-1-1-any.pkg.tar.zst 1\n"));
            // Other dirs (a reload): rescanned.
            let other = local.listing(&dirs[..1]).await;
            assert_eq!(other.count, 1);
        });
    }

    #[test]
    fn while_one_scan_runs_others_get_the_previous_listing() {
        let d = Dir::new("single-flight");
        std::fs::write(d.0.join("x-1-1-any.pkg.tar.zst"), b"12345").unwrap();
        let dirs = vec![d.0.clone()];
        let local = Local::default();
        smol::block_on(async {
            let first = local.listing(&dirs).await;
            std::fs::write(d.0.join("y-1-1-any.pkg.tar.zst"), b"1").unwrap();
            // Someone is scanning: the stale listing comes back at once, no second scan.
            let held = local.scanning.lock().await;
            let during = local.listing(&dirs).await;
            assert!(Arc::ptr_eq(&first, &during));
            drop(held);
            assert_eq!(local.listing(&dirs).await.count, 2);
        });
    }

    #[test]
    fn a_future_if_modified_since_is_ignored() {
        let d = Dir::new("ims");
        let name = "x-1-1-any.pkg.tar.zst";
        std::fs::write(d.0.join(name), b"package").unwrap();
        let open = || open_cached(std::slice::from_ref(&d.0), name).0.unwrap();
        let mtime = open().mtime;
        let req = |since: u64| Request {
            peer: "127.0.0.1:1".parse().unwrap(),
            method: crate::http::message::Method::Get,
            method_text: "GET".into(),
            target: format!("/request/core/x86_64/{name}"),
            range: None,
            if_range: None,
            if_modified_since: Some(format_http_date(since)),
            if_none_match: None,
            has_body: false,
            has_host: true,
            http11: true,
            from_pacserve: false,
            auth: None,
        };
        let now = mtime + 100;
        assert_eq!(serve_at(open(), &req(mtime + 50), now).response.status, 304);
        assert_eq!(serve_at(open(), &req(mtime - 1), now).response.status, 200);
        // A date after `now`: ignored, the file is sent.
        assert_eq!(serve_at(open(), &req(now + 3600), now).response.status, 200);
    }

    #[test]
    fn if_none_match_names_the_tag() {
        let tag = "\"00ff\"";
        for (header, want) in [
            ("\"00ff\"", true),
            ("W/\"00ff\"", true),
            (" \"a\" , \"00ff\"", true),
            ("*", true),
            ("\"00fe\"", false),
            ("00ff", false),
            ("", false),
        ] {
            assert_eq!(names_tag(header, tag), want, "{header:?}");
        }
    }

    #[test]
    fn names_cache_dir_problems() {
        let d = Dir::new("problems");
        assert_eq!(cache_dir_problem(&d.0), None);
        let missing = d.0.join("missing");
        let e = cache_dir_problem(&missing).expect("missing dir");
        assert!(e.contains("does not exist"), "{e}");
        let file = d.0.join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = cache_dir_problem(&file).expect("a file");
        assert!(e.contains("is not a directory"), "{e}");
    }

    #[test]
    fn refuses_symlinks_dirs_and_fifos() {
        let d = Dir::new("odd");
        let outside = Dir::new("outside");
        std::fs::write(outside.0.join("secret"), b"secret").unwrap();
        std::os::unix::fs::symlink(outside.0.join("secret"), d.0.join("link.pkg.tar.zst")).unwrap();
        std::fs::create_dir(d.0.join("dir.pkg.tar.zst")).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            d.0.join("fifo.pkg.tar.zst"),
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        for name in ["link.pkg.tar.zst", "dir.pkg.tar.zst", "fifo.pkg.tar.zst"] {
            let (found, skipped) = open_cached(std::slice::from_ref(&d.0), name);
            assert!(found.is_none(), "{name} must not be served");
            assert!(
                matches!(skipped.as_slice(), [(_, Skip::NotRegular)]),
                "{name}: {skipped:?}"
            );
        }
        let (found, skipped) = open_cached(std::slice::from_ref(&d.0), "none.pkg.tar.zst");
        assert!(found.is_none());
        assert!(matches!(skipped.as_slice(), [(_, Skip::Missing)]));
    }
}
