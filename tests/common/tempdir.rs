//! Private temporary directories under /tmp, removed with everything in them on drop.
//!
//! Named `pacserve-test-PID-N-NANOS-TAG`, so a later run can tell whose a leftover was
//! (`lan.rs` removes those of crashed runs).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// What every harness directory's name starts with.
pub const TEMP_PREFIX: &str = "pacserve-test-";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under /tmp, removed with everything in it on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "{TEMP_PREFIX}{}-{n}-{nanos}-{tag}",
            std::process::id()
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Make `rel` (and its parents) and return its path.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.path.join(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    /// The directory's own name (unique on this host).
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .expect("a temp dir has a name")
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
