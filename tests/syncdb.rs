//! Sync databases written by the real repo-add (gzip, plain tar, zstd, xz, bzip2, and the
//! empty database repo-remove leaves) read by `pacserve::syncdb::load`: every package's size
//! and SHA-256 against the package file itself; what cannot be read is refused, and a cut
//! or damaged database is never an index.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use pacserve::limits::MAX_DB_FILE_BYTES;
use pacserve::syncdb::{DbError, Expected, Format, Index, load};
use sha2::{Digest, Sha256};

/// Longest one repo-remove or mkfifo run may take.
const TOOL_LIMIT: Duration = Duration::from_secs(60);

/// Packages of several sizes, one with a name long enough (the folder is over 155 bytes)
/// that bsdtar must write a pax header for it.
fn packages(dir: &Path) -> Vec<Pkg> {
    let long = format!("long-{}", "n".repeat(160));
    [
        ("acl", 0),
        ("zstd", 3000),
        ("glibc", 70_000),
        (long.as_str(), 10),
    ]
    .iter()
    .map(|(name, payload)| Pkg::build(dir, name, *payload))
    .collect()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The index lists exactly `pkgs`, each with its file's size and SHA-256.
fn assert_lists(index: &Index, pkgs: &[Pkg], db: &Path) {
    assert_eq!(index.len(), pkgs.len(), "{}", db.display());
    assert_eq!(index.duplicates(), 0);
    for p in pkgs {
        assert_eq!(
            index.get(&p.file),
            Some(Expected {
                size: p.size(),
                sha256: Some(sha256(&p.bytes)),
            }),
            "{} in {}",
            p.file,
            db.display()
        );
        assert_eq!(index.get(&p.sig_file()), None);
    }
}

fn repo(tag: &str) -> (TempDir, Vec<Pkg>) {
    let dir = TempDir::new(tag);
    let pkgs = packages(dir.path());
    (dir, pkgs)
}

fn add(dir: &TempDir, db: &str, pkgs: &[Pkg]) -> PathBuf {
    let path = dir.join(db);
    repo_add(&path, &pkgs.iter().collect::<Vec<_>>());
    path
}

#[test]
fn gzip_database_from_repo_add() {
    let (dir, pkgs) = repo("syncdb-gz");
    let db = add(&dir, "core.db.tar.gz", &pkgs);
    assert_lists(&load(&db).unwrap(), &pkgs, &db);
}

#[test]
fn plain_tar_database_from_repo_add() {
    let (dir, pkgs) = repo("syncdb-tar");
    let db = add(&dir, "core.db.tar", &pkgs);
    assert_eq!(fs::read(&db).unwrap().get(257..262), Some(&b"ustar"[..]));
    assert_lists(&load(&db).unwrap(), &pkgs, &db);
}

#[test]
fn other_compressions_are_refused_by_name() {
    let (dir, pkgs) = repo("syncdb-other");
    for (db, format) in [
        ("core.db.tar.zst", Format::Zstd),
        ("extra.db.tar.xz", Format::Xz),
        ("multilib.db.tar.bz2", Format::Bzip2),
    ] {
        let path = add(&dir, db, &pkgs);
        let e = load(&path).unwrap_err();
        assert!(
            matches!(e, DbError::Unsupported { format: f, .. } if f == format),
            "{db}: {e:?}"
        );
        let shown = e.to_string();
        assert!(
            shown.contains(db) && shown.contains(format.name()),
            "{shown}"
        );
    }
}

#[test]
fn the_empty_database_repo_remove_leaves() {
    let dir = TempDir::new("syncdb-empty");
    let pkg = Pkg::build(dir.path(), "only", 100);
    let db = add(&dir, "core.db.tar.gz", std::slice::from_ref(&pkg));
    assert_eq!(load(&db).unwrap().len(), 1);
    let ran = run_bounded(
        Command::new("repo-remove")
            .arg("-q")
            .arg(&db)
            .arg("only")
            .env("LC_ALL", "C"),
        TOOL_LIMIT,
    );
    assert!(ran.success(), "repo-remove: {}", ran.text());
    let index = load(&db).unwrap();
    assert!(index.is_empty() && index.get(&pkg.file).is_none());
}

#[test]
fn cut_or_damaged_databases_are_never_an_index() {
    let (dir, pkgs) = repo("syncdb-cut");
    for db in ["core.db.tar.gz", "core.db.tar"] {
        let path = add(&dir, db, &pkgs);
        let bytes = fs::read(&path).unwrap();
        let cut_path = dir.join(format!("cut-{db}"));
        let n = bytes.len();
        // Inside the headers, the descs, the padding, the end marker, the gzip trailer.
        let cuts = (1..n).step_by(n.div_ceil(60)).chain([n - 1, n - 4, n - 8]);
        for cut in cuts {
            // A plain tar cut after its first end block (in the second, a cut at a block
            // boundary is taken as the end) or in bsdtar's padding after both is whole.
            if db.ends_with(".tar") && cut >= end_of_marker(&bytes) - 512 {
                continue;
            }
            fs::write(&cut_path, &bytes[..cut]).unwrap();
            match load(&cut_path) {
                Err(DbError::Corrupt { .. }) => {}
                other => panic!("{db} cut at {cut} of {n}: {other:?}"),
            }
        }
        // A byte changed: anywhere in gzip (the CRC-32 covers it all); in a plain tar,
        // which has no checksum over its contents, in a header (which has one).
        let at = if db.ends_with(".gz") { n / 3 } else { 10 };
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x40;
        fs::write(&cut_path, &damaged).unwrap();
        match load(&cut_path) {
            Err(DbError::Corrupt { .. }) => {}
            other => panic!("{db} damaged at {at} of {n}: {other:?}"),
        }
    }
}

/// Where a plain tar's two end-of-archive blocks end (the rest is bsdtar's padding).
fn end_of_marker(tar: &[u8]) -> usize {
    let blocks: Vec<&[u8]> = tar.chunks(512).collect();
    let mut at = 0;
    while at + 1 < blocks.len() {
        let zero = |b: &[u8]| b.iter().all(|&x| x == 0);
        if zero(blocks[at]) && zero(blocks[at + 1]) {
            return (at + 2) * 512;
        }
        // A header: skip its data.
        let size = usize::from_str_radix(
            std::str::from_utf8(&blocks[at][124..135])
                .unwrap()
                .trim_matches(['\0', ' ']),
            8,
        )
        .unwrap_or(0);
        at += 1 + size.div_ceil(512);
    }
    tar.len()
}

#[test]
fn only_regular_files_are_opened() {
    let (dir, pkgs) = repo("syncdb-files");
    let db = add(&dir, "core.db.tar.gz", &pkgs);
    // repo-add leaves core.db as a symlink to core.db.tar.gz: O_NOFOLLOW refuses it.
    let link = dir.join("core.db");
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    match load(&link) {
        Err(DbError::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(40)),
        other => panic!("symlink: {other:?}"),
    }
    let other_link = dir.join("other.db");
    symlink(&db, &other_link).unwrap();
    assert!(matches!(load(&other_link), Err(DbError::Io { .. })));

    // A FIFO would block a plain open until a writer came; O_NONBLOCK opens it at once.
    let fifo = dir.join("fifo.db");
    let ran = run_bounded(Command::new("mkfifo").arg(&fifo), TOOL_LIMIT);
    assert!(ran.success(), "mkfifo: {}", ran.text());
    for path in [fifo.as_path(), dir.path(), Path::new("/dev/null")] {
        let e = load(path).unwrap_err();
        assert!(
            matches!(e, DbError::NotRegular { .. }),
            "{}: {e:?}",
            path.display()
        );
        assert!(e.to_string().ends_with("not a regular file"), "{e}");
    }
    match load(&dir.join("missing.db")) {
        Err(DbError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("missing: {other:?}"),
    }

    // Over the size limit (sparse, so it costs no disk): refused before a byte is read.
    let big = dir.join("big.db");
    let f = fs::File::create(&big).unwrap();
    f.set_len(MAX_DB_FILE_BYTES + 1).unwrap();
    match load(&big) {
        Err(DbError::TooLarge { limit, .. }) => assert_eq!(limit, MAX_DB_FILE_BYTES),
        other => panic!("big: {other:?}"),
    }
}
