//! The whole parse (format, gzip, tar, desc, index) on databases built in memory; real
//! repo-add databases are in tests/syncdb.rs.

use std::error::Error as _;
use std::io::{self, Read};

use super::gzip::tests::{gzip, gzip_with};
use super::tar::tests::{dir, end, file, fix_checksum, header, octal, pax};
use super::*;
use crate::limits::MAX_DESC_BYTES;

const SHA: &str = "6e0b680f07db1d08c712950556890a547197dbe1f9d782c295d1fe7f62d2145a";

fn desc_text(name: &str, version: &str, size: u64) -> String {
    format!(
        "%FILENAME%\n{name}-{version}-x86_64.pkg.tar.zst\n\n%NAME%\n{name}\n\n\
         %VERSION%\n{version}\n\n%CSIZE%\n{size}\n\n%SHA256SUM%\n{SHA}\n\n%ARCH%\nx86_64\n\n"
    )
}

/// A package's two entries as repo-add writes them.
fn package(name: &str, version: &str, size: u64) -> Vec<u8> {
    let folder = format!("{name}-{version}");
    [
        dir(&format!("{folder}/")),
        file(
            &format!("{folder}/desc"),
            desc_text(name, version, size).as_bytes(),
        ),
    ]
    .concat()
}

fn tar_of(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut t = parts.concat();
    t.extend(end());
    // bsdtar pads to 10 KiB records.
    t.resize(t.len().next_multiple_of(10240), 0);
    t
}

fn sample_tar() -> Vec<u8> {
    tar_of(&[
        package("acl", "2.3.1-3", 100),
        package("zstd", "1.5.5-1", 500),
        package("glibc", "2.38-7", 12_345_678),
    ])
}

/// A source that gives at most `step` bytes per read, and now and then EINTR.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
    reads: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        if self.reads % 5 == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn read_in_steps(data: &[u8], step: usize) -> Result<Index, DbError> {
    read_from(
        Trickle {
            data,
            step,
            reads: 0,
        },
        Path::new("core.db"),
    )
}

fn corrupt(r: Result<Index, DbError>) -> (Problem, Stream, u64, Option<String>) {
    match r {
        Err(DbError::Corrupt {
            what,
            stream,
            offset,
            entry,
            ..
        }) => (what, stream, offset, entry),
        other => panic!("not Corrupt: {other:?}"),
    }
}

#[test]
fn gzip_and_plain_tar_give_the_same_index_whatever_the_chunking() {
    let tar = sample_tar();
    let gz = gzip(&tar);
    let want = parse_bytes(&tar).unwrap();
    assert_eq!(want.len(), 3);
    let sha = Some(
        desc::parse_desc(desc_text("a", "1", 0).as_bytes())
            .unwrap()
            .sha256
            .unwrap(),
    );
    assert_eq!(
        want.get("glibc-2.38-7-x86_64.pkg.tar.zst"),
        Some(Expected {
            size: 12_345_678,
            sha256: sha
        })
    );
    assert_eq!(want.get("glibc-2.38-7-x86_64.pkg.tar.zst.sig"), None);
    for bytes in [&tar, &gz, &gzip_with(&tar, 0x1f, 9)] {
        for step in [1, 7, 511, 4096, bytes.len()] {
            assert_eq!(
                read_in_steps(bytes, step).as_ref().ok(),
                Some(&want),
                "step {step}"
            );
        }
    }
}

#[test]
fn recognises_and_refuses_other_compressions() {
    let cases: &[(&[u8], Format)] = &[
        (&[0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58], Format::Zstd),
        (b"\xfd7zXZ\x00\x00\x04", Format::Xz),
        (b"BZh91AY&SY", Format::Bzip2),
        (&[0x04, 0x22, 0x4d, 0x18, 0x64], Format::Lz4),
        (b"LZIP\x01", Format::Lzip),
        (b"\x89LZO\x00\r\n\x1a\n", Format::Lzop),
        (b"LRZI\x00\x06", Format::Lrzip),
        (&[0x1f, 0x9d, 0x90], Format::Compress),
    ];
    for (head, format) in cases {
        match parse_bytes(head) {
            Err(DbError::Unsupported { format: f, .. }) => assert_eq!(f, *format),
            other => panic!("{format}: {other:?}"),
        }
        let e = DbError::Unsupported {
            path: "/var/lib/pacman/sync/core.db".into(),
            format: *format,
        };
        assert!(e.to_string().starts_with("/var/lib/pacman/sync/core.db: "));
    }
    assert_eq!(Format::detect(&sample_tar()), Some(Format::Tar));
    assert_eq!(Format::detect(&gzip(b"")), Some(Format::Gzip));
    assert_eq!(corrupt(parse_bytes(b"")).0, Problem::Empty);
    for junk in [&b"PK\x03\x04"[..], b"%FILENAME%\n", &[0; 100], &[0xff; 600]] {
        assert_eq!(
            corrupt(parse_bytes(junk)).0,
            Problem::UnknownFormat,
            "{junk:?}"
        );
    }
    // A plain tar with a v7 header (no "ustar" magic) is not taken for a database.
    let mut v7 = sample_tar();
    v7[257..265].fill(0);
    let mut h: [u8; 512] = v7[..512].try_into().unwrap();
    fix_checksum(&mut h);
    v7[..512].copy_from_slice(&h);
    assert_eq!(corrupt(parse_bytes(&v7)).0, Problem::UnknownFormat);
}

#[test]
fn empty_database() {
    // What repo-add writes when no package remains.
    let empty = vec![0; 10240];
    for bytes in [empty.clone(), gzip(&empty)] {
        let idx = parse_bytes(&bytes).unwrap();
        assert!(idx.is_empty());
    }
}

#[test]
fn duplicate_entries_keep_the_first() {
    let tar = tar_of(&[
        package("a", "1-1", 10),
        package("b", "1-1", 20),
        // Another folder with the same %FILENAME% (and a %NAME% to match its folder).
        dir("a-1-1x/"),
        file(
            "a-1-1x/desc",
            b"%FILENAME%\na-1-1-x86_64.pkg.tar.zst\n\n%CSIZE%\n99\n\n",
        ),
    ]);
    let idx = parse_bytes(&gzip(&tar)).unwrap();
    assert_eq!((idx.len(), idx.duplicates()), (2, 1));
    assert_eq!(
        idx.get("a-1-1-x86_64.pkg.tar.zst").map(|e| e.size),
        Some(10)
    );
}

#[test]
fn hostile_databases() {
    let good = sample_tar();
    let gz = gzip(&good);
    let pkg = package("acl", "2.3.1-3", 100);
    let mismatch = tar_of(&[
        dir("b-1-1/"),
        file("b-1-1/desc", desc_text("c", "1-1", 1).as_bytes()),
    ]);
    let version_mismatch = tar_of(&[file("b-1-1/desc", desc_text("b", "1-2", 1).as_bytes())]);
    let missing = tar_of(&[pkg.clone(), file("x-1-1/desc", b"%FILENAME%\nx.pkg\n\n")]);
    let dup_key = tar_of(&[file("x-1-1/desc", b"%CSIZE%\n1\n\n%CSIZE%\n2\n\n")]);
    let traversal = tar_of(&[file(
        "x-1-1/desc",
        b"%FILENAME%\n../../x.pkg\n\n%CSIZE%\n1\n\n",
    )]);
    let mut bad_sum = good.clone();
    bad_sum[1536 + 10] ^= 1; // in the second package's folder header
    let mut huge = header(b"acl-2.3.1-3/files", b"777777777777", b'0').to_vec();
    huge.extend(end());
    let desc_over = tar_of(&[file("a-1-1/desc", &vec![b'\n'; MAX_DESC_BYTES + 1])]);
    let non_utf8 = {
        let mut h = header(b"a-\xff/desc", &octal(0), b'0').to_vec();
        h.extend(end());
        h
    };
    let mut flipped = gz.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;

    type Case = (&'static str, Vec<u8>, fn(&Problem) -> bool);
    let cases: Vec<Case> = vec![
        ("folder mismatch", mismatch, |p| {
            *p == Problem::FolderMismatch
        }),
        ("version mismatch", version_mismatch, |p| {
            *p == Problem::FolderMismatch
        }),
        ("missing %CSIZE%", missing, |p| {
            *p == Problem::Desc(DescError::MissingCsize)
        }),
        ("duplicate key", dup_key, |p| {
            *p == Problem::Desc(DescError::DuplicateKey { line: 4 })
        }),
        ("traversal in %FILENAME%", traversal, |p| {
            *p == Problem::Desc(DescError::BadFilename { line: 2 })
        }),
        ("bad checksum", bad_sum, |p| {
            *p == Problem::Tar(TarError::BadChecksum)
        }),
        ("size 777777777777", huge, |p| {
            *p == Problem::Tar(TarError::EntryTooLarge)
        }),
        ("desc over the limit", desc_over, |p| {
            *p == Problem::Tar(TarError::DescTooLarge)
        }),
        ("non-UTF-8 name", non_utf8, |p| {
            *p == Problem::Tar(TarError::NonUtf8Name)
        }),
        ("tar ends mid-entry", good[..1024 + 100].to_vec(), |p| {
            *p == Problem::Tar(TarError::Truncated)
        }),
        ("tar without its end", pkg.clone(), |p| {
            *p == Problem::Tar(TarError::Truncated)
        }),
        ("gzip ends early", gz[..gz.len() - 1].to_vec(), |p| {
            *p == Problem::Gzip(GzipError::Truncated)
        }),
        ("gzip of a truncated tar", gzip(&good[..1024 + 100]), |p| {
            *p == Problem::Tar(TarError::Truncated)
        }),
        // Caught by deflate, by the CRC, or by the tar or desc parser before that: any
        // Corrupt will do, never an index.
        ("flipped bit", flipped, |_| true),
        (
            "a second gzip member",
            [gz.clone(), gzip(b"x")].concat(),
            |p| *p == Problem::Gzip(GzipError::TrailingData),
        ),
    ];
    for (what, bytes, want) in cases {
        // Each tar case also inside gzip.
        let variants = if bytes.starts_with(&[0x1f, 0x8b]) {
            vec![bytes]
        } else {
            vec![gzip(&bytes), bytes]
        };
        for bytes in variants {
            // The same error, at the same place, however the reads split the file.
            let shown = read_in_steps(&bytes, usize::MAX).unwrap_err().to_string();
            for step in [1, 3, 512, 65536] {
                let got = read_in_steps(&bytes, step);
                assert_eq!(
                    got.as_ref().unwrap_err().to_string(),
                    shown,
                    "{what}, step {step}"
                );
                let (problem, ..) = corrupt(got);
                assert!(want(&problem), "{what}, step {step}: {problem:?}");
            }
        }
    }
}

#[test]
fn errors_say_what_and_where() {
    let tar = tar_of(&[
        package("a", "1-1", 1),
        file("b-1-1/desc", b"%FILENAME%\nb.pkg\n\n%CSIZE%\nten\n\n"),
    ]);
    let e = parse_bytes(&gzip(&tar)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "(bytes): corrupt database: desc line 5: %CSIZE% is not a number of bytes \
         (at byte 1536 of the decompressed tar, entry b-1-1/desc)"
    );
    let source = e.source().and_then(|s| s.downcast_ref::<DescError>());
    assert_eq!(source, Some(&DescError::BadCsize { line: 5 }));

    assert_eq!(
        corrupt(parse_bytes(&tar[..2000])),
        (Problem::Tar(TarError::Truncated), Stream::File, 2000, None)
    );

    // Hostile names are escaped: one error is one log line.
    let evil = tar_of(&[file("a\n\x1b[31m-1/desc", b"%CSIZE%\n1\n")]);
    let shown = parse_bytes(&evil).unwrap_err().to_string();
    assert!(!shown.contains(['\n', '\x1b']), "{shown}");
    assert!(shown.contains("entry a\\x0a\\x1b[31m-1/desc"), "{shown}");

    let io = DbError::Io {
        path: "/x/core.db".into(),
        source: io::Error::from_raw_os_error(40),
    };
    assert_eq!(
        io.source()
            .and_then(|s| s.downcast_ref::<io::Error>())
            .and_then(io::Error::raw_os_error),
        Some(40)
    );
}

#[test]
fn names_from_pax_headers_are_used() {
    let long = "n".repeat(180);
    let folder = format!("{long}-1-1");
    let tar = tar_of(&[
        pax(&[("path", &format!("{folder}/desc"))]),
        file("x", desc_text(&long, "1-1", 7).as_bytes()),
    ]);
    let idx = parse_bytes(&tar).unwrap();
    assert_eq!(
        idx.get(&format!("{long}-1-1-x86_64.pkg.tar.zst"))
            .map(|e| e.size),
        Some(7)
    );
}

#[test]
fn stops_at_the_limits() {
    // An endless file of zero blocks: a plain tar that ends at once, then padding that
    // never ends; stopped by the file's byte limit.
    struct Zeros;
    impl Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(0);
            Ok(buf.len())
        }
    }
    match read_from(Zeros, Path::new("z.db")) {
        Err(DbError::TooLarge { what, limit, .. }) => {
            assert_eq!((what, limit), ("bytes of file", MAX_DB_FILE_BYTES));
        }
        other => panic!("{other:?}"),
    }
}

/// A raw deflate stream of `1 + 258 * runs` zero bytes in one fixed-Huffman block: a
/// literal 0, then `runs` matches of length 258 at distance 1, 13 bits each (a 1000:1 bomb
/// that costs nothing to make).
fn zeros_deflate(runs: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl Bits {
        /// `len` bits of `v`, least significant first (deflate's order for headers).
        fn put(&mut self, v: u64, len: u32) {
            self.acc |= v << self.n;
            self.n += len;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u64, len: u32) {
            let reversed = (0..len).fold(0, |r, i| r << 1 | (code >> i) & 1);
            self.put(reversed, len);
        }
    }
    let mut b = Bits {
        out: Vec::with_capacity(runs * 13 / 8 + 8),
        acc: 0,
        n: 0,
    };
    b.put(1, 1); // BFINAL
    b.put(1, 2); // fixed Huffman
    b.code(0b0011_0000, 8); // literal 0
    for _ in 0..runs {
        b.code(0b1100_0101, 8); // length code 285: 258
        b.code(0, 5); // distance code 0: 1
    }
    b.code(0, 7); // end of block
    b.put(0, 7);
    b.out
}

#[test]
fn a_gzip_bomb_stops_at_the_inflated_limit() {
    let small = zeros_deflate(3);
    let inflated = miniz_oxide::inflate::decompress_to_vec(&small).ok();
    assert_eq!(inflated.as_deref(), Some(&[0u8; 1 + 3 * 258][..]));
    // Over MAX_DB_TAR_BYTES (by more than one output chunk, so that the limit and not the
    // trailer is met first) from about 1.7 MB: zero blocks, an empty tar and then padding,
    // so only the limit stops it.
    let runs = (crate::limits::MAX_DB_TAR_BYTES / 258 + 1000) as usize;
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    gz.extend(zeros_deflate(runs));
    gz.extend_from_slice(&[0; 8]);
    match parse_bytes(&gz) {
        Err(DbError::TooLarge { what, limit, .. }) => {
            assert_eq!(
                (what, limit),
                ("bytes of tar", crate::limits::MAX_DB_TAR_BYTES)
            );
        }
        other => panic!("{other:?}"),
    }
}
