//! pacman's sync databases (`DBPath/sync/$repo.db`) read into an [`Index`] of what each
//! package file must be (size, SHA-256). [`load`] does the I/O (blocking: call it at start-up
//! or through `smol::unblock`); [`read_from`] is the same parse over any `Read`, and the
//! parsers below it are pure: [`gzip`], [`tar`], [`desc`], and the [`index`] they fill.
//!
//! A database is read in chunks and never held whole: the file through a 64 KiB buffer, the
//! tar it inflates to through a 32 KiB one, one `desc` at a time. Bounded in bytes (file and
//! inflated), tar entries and packages, by the limits in [`crate::limits`]; nothing depends
//! on time. A database is taken whole or not at all: truncated, corrupt or over a limit is
//! an error, never a partial index.
//!
//! Formats: gzip (Arch's official databases, `.db.tar.gz`) and plain tar. zstd, xz, bzip2
//! and the rest of what repo-add can write are recognised by their magic bytes and refused
//! with [`DbError::Unsupported`]; the daemon then verifies nothing for that repository.
//! zstd is not read because of the size budget. The aarch64 binary must stay within 1 MiB
//! and is about 860 KiB; a zstd decoder would add about 70 KiB (ruzstd 0.9, the pure-Rust
//! one, measured in a stdin-to-stdout program at opt-level "z" with LTO, aarch64 musl,
//! stripped: 339,688 → 410,136 bytes), against 36 KiB for this whole module with
//! miniz_oxide's inflate (pacserve with a call to [`load`]: 877,872 → 914,480 bytes). And
//! memory: a zstd frame asks for a window buffer of its own
//! choosing, 2 MiB for repo-add's default `zstd -c -z -q -` (level 3; `zstd -lv` on one) and
//! up to 128 MiB for `--ultra -22 --long`, against 4 MiB for the whole daemon; inflate's
//! window is 32 KiB whatever the file.

pub mod desc;
pub mod gzip;
pub mod index;
pub mod tar;

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use desc::{Desc, DescError, parse_desc};
pub use gzip::GzipError;
pub use index::{Expected, Index, IndexBuilder};
pub use tar::TarError;

use crate::limits::{
    DB_INFLATE_CHUNK, DB_READ_CHUNK, MAX_DB_FILE_BYTES, MAX_DB_PACKAGES, MAX_DB_TAR_BYTES,
    MAX_DB_TAR_ENTRIES, MAX_INTERRUPTED_READS,
};
use crate::sys::log::escape;

/// What a database file is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Gzip,
    Tar,
    Zstd,
    Xz,
    Bzip2,
    Lz4,
    Lzip,
    Lzop,
    Lrzip,
    /// `compress` (`.Z`).
    Compress,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Gzip => "gzip",
            Format::Tar => "tar",
            Format::Zstd => "zstd",
            Format::Xz => "xz",
            Format::Bzip2 => "bzip2",
            Format::Lz4 => "lz4",
            Format::Lzip => "lzip",
            Format::Lzop => "lzop",
            Format::Lrzip => "lrzip",
            Format::Compress => "compress (.Z)",
        }
    }

    /// Bytes [`Format::detect`] needs to decide (fewer at the end of a file are fine).
    pub const MAGIC_BYTES: usize = 512;

    /// The format of a file starting with `head` (its first [`Format::MAGIC_BYTES`] bytes,
    /// or all of a shorter file); None for none of these.
    pub fn detect(head: &[u8]) -> Option<Format> {
        const MAGICS: &[(&[u8], Format)] = &[
            (&[0x1f, 0x8b], Format::Gzip),
            (&[0x28, 0xb5, 0x2f, 0xfd], Format::Zstd),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Format::Xz),
            (b"BZh", Format::Bzip2),
            (&[0x04, 0x22, 0x4d, 0x18], Format::Lz4),
            (b"LZIP", Format::Lzip),
            (
                &[0x89, b'L', b'Z', b'O', 0x00, 0x0d, 0x0a, 0x1a, 0x0a],
                Format::Lzop,
            ),
            (b"LRZI", Format::Lrzip),
            (&[0x1f, 0x9d], Format::Compress),
        ];
        if let Some((_, f)) = MAGICS.iter().find(|(m, _)| head.starts_with(m)) {
            return Some(*f);
        }
        // ustar and GNU headers carry "ustar" at 257; an empty archive (repo-add's "zip up
        // some emptiness") is nothing but zero blocks.
        let ustar = head.get(257..262) == Some(b"ustar");
        let empty_archive = head.len() >= 512 && head[..512].iter().all(|&b| b == 0);
        (ustar || empty_archive).then_some(Format::Tar)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What was wrong with a corrupt database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Gzip(GzipError),
    Tar(TarError),
    Desc(DescError),
    /// `%NAME%` and `%VERSION%` do not match the `NAME-VERSION` folder the `desc` is in
    /// (libalpm calls such a database inconsistent too).
    FolderMismatch,
    /// An empty file.
    Empty,
    /// Not a tar archive nor any compression known here.
    UnknownFormat,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Gzip(e) => e.fmt(f),
            Problem::Tar(e) => e.fmt(f),
            Problem::Desc(e) => e.fmt(f),
            Problem::FolderMismatch => f.write_str("%NAME%-%VERSION% differs from its folder"),
            Problem::Empty => f.write_str("empty file"),
            Problem::UnknownFormat => f.write_str("neither a tar archive nor compressed"),
        }
    }
}

/// Which bytes an offset counts: the file's, or the tar's inside a compressed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    File,
    Tar,
}

/// Why a database could not be read. Every variant names the file.
#[derive(Debug)]
pub enum DbError {
    /// Opening, inspecting or reading it failed (ELOOP: it is a symlink).
    Io { path: PathBuf, source: io::Error },
    /// A directory, FIFO, device or socket.
    NotRegular { path: PathBuf },
    /// Compressed in a format pacserve does not read (see the module documentation).
    Unsupported { path: PathBuf, format: Format },
    /// Over a limit: more than `limit` `what`.
    TooLarge {
        path: PathBuf,
        what: &'static str,
        limit: u64,
    },
    /// Truncated or damaged: `what`, found at byte `offset` of `stream`, in the tar entry
    /// `entry` when there is one (escaped for printing).
    Corrupt {
        path: PathBuf,
        what: Problem,
        stream: Stream,
        offset: u64,
        entry: Option<String>,
    },
}

impl DbError {
    pub fn path(&self) -> &Path {
        match self {
            DbError::Io { path, .. }
            | DbError::NotRegular { path }
            | DbError::Unsupported { path, .. }
            | DbError::TooLarge { path, .. }
            | DbError::Corrupt { path, .. } => path,
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = escape(self.path().as_os_str().as_encoded_bytes());
        match self {
            DbError::Io { source, .. } => write!(f, "{path}: {source}"),
            DbError::NotRegular { .. } => write!(f, "{path}: not a regular file"),
            DbError::Unsupported { format, .. } => {
                write!(f, "{path}: {format}-compressed databases are not read")
            }
            DbError::TooLarge { what, limit, .. } => {
                write!(f, "{path}: database too large: more than {limit} {what}")
            }
            DbError::Corrupt {
                what,
                stream,
                offset,
                entry,
                ..
            } => {
                let of = match stream {
                    Stream::File => "the file",
                    Stream::Tar => "the decompressed tar",
                };
                write!(
                    f,
                    "{path}: corrupt database: {what} (at byte {offset} of {of}"
                )?;
                if let Some(entry) = entry {
                    write!(f, ", entry {entry}")?;
                }
                f.write_str(")")
            }
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DbError::Io { source, .. } => Some(source),
            DbError::Corrupt { what, .. } => match what {
                Problem::Gzip(e) => Some(e),
                Problem::Tar(e) => Some(e),
                Problem::Desc(e) => Some(e),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Reads the sync database at `path`. It is opened with O_NOFOLLOW (a symlink is refused:
/// pacman writes DBPath/sync itself, and a link there points somewhere nobody checked) and
/// O_NONBLOCK (a FIFO cannot hang the open), and refused unless a regular file.
///
/// Blocking; tens of milliseconds for a database the size of Arch's extra.
pub fn load(path: &Path) -> Result<Index, DbError> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::OpenOptionsExt;
    let io_error = |source| DbError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(io_error)?;
    let meta = file.metadata().map_err(io_error)?;
    if !meta.is_file() {
        return Err(DbError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > MAX_DB_FILE_BYTES {
        return Err(too_large(path, "bytes of file", MAX_DB_FILE_BYTES));
    }
    read_from(file, path)
}

/// [`load`]'s parse of a database read from `source`; `path` names it in errors.
pub fn read_from(source: impl Read, path: &Path) -> Result<Index, DbError> {
    Loader::new(source, path).run()
}

/// [`read_from`] over bytes in memory (a test or fuzz input).
pub fn parse_bytes(bytes: &[u8]) -> Result<Index, DbError> {
    read_from(bytes, Path::new("(bytes)"))
}

fn too_large(path: &Path, what: &'static str, limit: u64) -> DbError {
    DbError::TooLarge {
        path: path.to_path_buf(),
        what,
        limit,
    }
}

/// One load: the source, the tar reader and the index it fills, and the byte counts.
struct Loader<'p, R> {
    source: io::Take<R>,
    path: &'p Path,
    /// Bytes read from the source.
    read: u64,
    /// The tar's own bytes are the file's (plain tar) or the inflated ones (gzip).
    stream: Stream,
    tar: tar::TarReader,
    tar_bytes: u64,
    index: IndexBuilder,
}

impl<'p, R: Read> Loader<'p, R> {
    fn new(source: R, path: &'p Path) -> Self {
        Loader {
            // One byte past the limit, to tell a file at the limit from a larger one.
            source: source.take(MAX_DB_FILE_BYTES + 1),
            path,
            read: 0,
            stream: Stream::File,
            tar: tar::TarReader::new(),
            tar_bytes: 0,
            index: IndexBuilder::new(),
        }
    }

    fn run(mut self) -> Result<Index, DbError> {
        let mut buf = vec![0u8; DB_READ_CHUNK];
        // The first read fills at least what format detection needs.
        let mut n = 0;
        while n < Format::MAGIC_BYTES {
            let got = self.fill(&mut buf[n..])?;
            if got == 0 {
                break;
            }
            n += got;
        }
        if n == 0 {
            return Err(self.corrupt(Problem::Empty, Stream::File, 0, None));
        }
        match Format::detect(&buf[..n]) {
            Some(Format::Gzip) => self.gzip(buf, n)?,
            Some(Format::Tar) => self.plain(buf, n)?,
            Some(format) => {
                return Err(DbError::Unsupported {
                    path: self.path.to_path_buf(),
                    format,
                });
            }
            None => return Err(self.corrupt(Problem::UnknownFormat, Stream::File, 0, None)),
        }
        if let Err(e) = self.tar.finish() {
            return Err(self.tar_error(e));
        }
        Ok(self.index.finish())
    }

    fn plain(&mut self, mut buf: Vec<u8>, mut n: usize) -> Result<(), DbError> {
        while n > 0 {
            self.tar_feed(&buf[..n])?;
            n = self.fill(&mut buf)?;
        }
        Ok(())
    }

    fn gzip(&mut self, mut buf: Vec<u8>, mut n: usize) -> Result<(), DbError> {
        self.stream = Stream::Tar;
        let mut gz = gzip::Gunzip::new();
        let mut out = vec![0u8; DB_INFLATE_CHUNK];
        let gz_error = |gz: &gzip::Gunzip, e, this: &Self| {
            this.corrupt(Problem::Gzip(e), Stream::File, gz.offset(), None)
        };
        // The last round, with no input, lets out what the inflater still holds.
        let mut last = false;
        while !last {
            last = n == 0;
            let mut input = &buf[..n];
            // Each round uses input or writes output, else it is the end of this chunk
            // (`Gunzip::feed` errs rather than stall): bounded by the chunk and the
            // inflated-bytes limit.
            loop {
                let p = gz
                    .feed(input, &mut out)
                    .map_err(|e| gz_error(&gz, e, self))?;
                input = &input[p.consumed..];
                self.tar_feed(&out[..p.written])?;
                if p.consumed == 0 && p.written == 0 {
                    break;
                }
            }
            if !last {
                n = self.fill(&mut buf)?;
            }
        }
        gz.finish().map_err(|e| gz_error(&gz, e, self))
    }

    /// Reads into `buf`; 0 at the end of the source.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, DbError> {
        let mut interrupted = 0;
        let got = loop {
            match self.source.read(buf) {
                Ok(got) => break got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    interrupted += 1;
                    if interrupted < MAX_INTERRUPTED_READS {
                        continue;
                    }
                    return Err(self.io_error(e));
                }
                Err(e) => return Err(self.io_error(e)),
            }
        };
        self.read += got as u64;
        if self.read > MAX_DB_FILE_BYTES {
            return Err(too_large(self.path, "bytes of file", MAX_DB_FILE_BYTES));
        }
        Ok(got)
    }

    /// Feeds tar bytes to the reader and each `desc` it completes to the index.
    fn tar_feed(&mut self, mut bytes: &[u8]) -> Result<(), DbError> {
        self.tar_bytes += bytes.len() as u64;
        if self.tar_bytes > MAX_DB_TAR_BYTES {
            return Err(too_large(self.path, "bytes of tar", MAX_DB_TAR_BYTES));
        }
        while !bytes.is_empty() {
            let fed = match self.tar.feed(bytes) {
                Ok(fed) => fed,
                Err(e) => return Err(self.tar_error(e)),
            };
            bytes = &bytes[fed.consumed..];
            // Each call uses a byte or completes a desc, which takes a header's bytes:
            // the loop ends within `bytes.len()` rounds.
            if let Some(file) = fed.desc {
                let problem = match parse_desc(file.data) {
                    Err(e) => Some(Problem::Desc(e)),
                    Ok(d) if !in_its_folder(&d, file.folder) => Some(Problem::FolderMismatch),
                    Ok(d) => match self.index.push(&d) {
                        Ok(()) => None,
                        Err(index::Full) => {
                            return Err(too_large(self.path, "packages", MAX_DB_PACKAGES as u64));
                        }
                    },
                };
                if let Some(problem) = problem {
                    let (at, entry) = (self.tar.entry_offset(), self.tar.entry_name());
                    return Err(self.corrupt(problem, self.stream, at, Some(escape(entry))));
                }
            } else if fed.consumed == 0 {
                // Never happens (see `TarReader::feed`); a wrong promise there must not
                // become an endless loop here.
                return Err(self.tar_error(TarError::Truncated));
            }
        }
        Ok(())
    }

    fn tar_error(&self, e: TarError) -> DbError {
        if e == TarError::TooManyEntries {
            return too_large(self.path, "tar entries", MAX_DB_TAR_ENTRIES as u64);
        }
        let name = self.tar.entry_name();
        let entry = (!name.is_empty()).then(|| escape(name));
        let at = match e {
            TarError::Truncated => self.tar.offset(),
            _ => self.tar.entry_offset(),
        };
        self.corrupt(Problem::Tar(e), self.stream, at, entry)
    }

    fn corrupt(
        &self,
        what: Problem,
        stream: Stream,
        offset: u64,
        entry: Option<String>,
    ) -> DbError {
        DbError::Corrupt {
            path: self.path.to_path_buf(),
            what,
            stream,
            offset,
            entry,
        }
    }

    fn io_error(&self, source: io::Error) -> DbError {
        DbError::Io {
            path: self.path.to_path_buf(),
            source,
        }
    }
}

/// `%NAME%` and `%VERSION%`, where present, are the folder's `NAME-VERSION`.
fn in_its_folder(d: &Desc<'_>, folder: &str) -> bool {
    match (d.name, d.version) {
        (Some(n), Some(v)) => {
            folder.len() == n.len() + 1 + v.len()
                && folder.starts_with(n)
                && folder[n.len()..].starts_with('-')
                && folder.ends_with(v)
        }
        (Some(n), None) => folder.strip_prefix(n).is_some_and(|r| r.starts_with('-')),
        (None, Some(v)) => folder.strip_suffix(v).is_some_and(|r| r.ends_with('-')),
        (None, None) => true,
    }
}

#[cfg(test)]
mod tests;
