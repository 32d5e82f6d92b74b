//! pacman.conf reader: a pure parser of the text and one loader that touches the filesystem.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacmanConf {
    pub cache_dirs: Vec<PathBuf>,
    pub architectures: Vec<String>,
    pub db_path: PathBuf,
    pub repos: Vec<Repo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub name: String,
    /// Server URLs in order, `$repo` substituted, `$arch` left for the caller.
    pub servers: Vec<String>,
}
