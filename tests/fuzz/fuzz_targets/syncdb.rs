//! Sync databases on arbitrary bytes, through `read_from`, the code path `load` uses: no
//! panics; the same verdict however the bytes are split into reads; every index keeps its
//! invariants. The bytes are tried as they are (format detection, then gzip or tar), as the
//! entries of a well-formed tar (so that headers with valid checksums reach the deeper tar
//! and desc states), that tar inside gzip, and as one `desc` (alone and inside a tar).
#![no_main]

use std::io::{self, Read};
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pacserve::limits::{MAX_DB_PACKAGES, MAX_DESC_BYTES};
use pacserve::names::valid_file;
use pacserve::syncdb::gzip::Crc32;
use pacserve::syncdb::{DbError, Expected, Index, parse_bytes, parse_desc, read_from};

fuzz_target!(|data: &[u8]| {
    whole(data);
    let tar = entries_tar(data);
    whole(&tar);
    whole(&stored_gzip(&tar));
    desc(data);
});

/// At most `step` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn whole(data: &[u8]) -> Option<Index> {
    let all = parse_bytes(data);
    let step = 1 + data.first().map_or(0, |&b| usize::from(b % 17));
    let split = read_from(Trickle { data, step }, Path::new("(bytes)"));
    match (&all, &split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("in one read: {all:?}; in reads of {step}: {split:?}"),
    }
    match all {
        Ok(index) => {
            invariants(&index);
            Some(index)
        }
        Err(e) => {
            // One error is one log line, and never an I/O error from bytes in memory.
            assert!(!e.to_string().contains(char::is_control), "{e}");
            assert!(!matches!(e, DbError::Io { .. }));
            None
        }
    }
}

fn invariants(index: &Index) {
    assert!(index.len() <= MAX_DB_PACKAGES);
    assert_eq!(index.is_empty(), index.len() == 0);
    let mut names = 0;
    let mut last: Option<&str> = None;
    for (name, expected) in index.iter() {
        assert!(valid_file(name) && !name.ends_with(".sig"), "{name:?}");
        assert!(
            last.is_none_or(|l| l < name),
            "not sorted or not unique: {name:?}"
        );
        assert_eq!(index.get(name), Some(expected));
        assert_eq!(index.get(&format!("{name}.sig")), None);
        names += name.len();
        last = Some(name);
    }
    assert_eq!(index.heap_bytes(), index.len() * 48 + names);
}

/// The input as tar entries, each header well-formed: parts split at 0xff; in each, the
/// first byte picks the type, bytes up to a NUL are the name (pax `x`, GNU `L` and the rest
/// too), the remaining ones the data.
fn entries_tar(data: &[u8]) -> Vec<u8> {
    const TYPES: &[u8] = b"0550xLgK2\0";
    let mut out = Vec::new();
    for part in data.split(|&b| b == 0xff).take(64) {
        let Some((&t, rest)) = part.split_first() else {
            continue;
        };
        let typeflag = TYPES[usize::from(t) % TYPES.len()];
        let (name, body) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let mut h = [0u8; 512];
        let name = &name[..name.len().min(100)];
        h[..name.len()].copy_from_slice(name);
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", body.len()).as_bytes());
        h[156] = typeflag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&x| u32::from(x)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(body);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// `data` as one gzip member of stored deflate blocks.
fn stored_gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let mut crc = Crc32::new();
    crc.update(data);
    out.extend_from_slice(&crc.value().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn desc(data: &[u8]) {
    let parsed = parse_desc(data);
    if let Ok(d) = &parsed {
        assert!(valid_file(d.filename) && !d.filename.ends_with(".sig"));
    }
    // The same bytes as the one desc of a database, in a folder named by a pax header.
    let mut tar = pax_path(b"x-1/desc");
    let mut h = [0u8; 512];
    h[..1].copy_from_slice(b"x");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&x| u32::from(x)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    tar.extend_from_slice(&h);
    tar.extend_from_slice(data);
    tar.resize(tar.len().next_multiple_of(512) + 1024, 0);
    let Some(index) = whole(&tar) else {
        // Refused: the desc was, or it names a package other than its folder's, or it is
        // over the size limit.
        assert!(
            parsed.is_err()
                || parsed.is_ok_and(|d| d.name.is_some() || d.version.is_some())
                || data.len() > MAX_DESC_BYTES
        );
        return;
    };
    let d = parsed.expect("a database whose one desc is refused is refused");
    assert_eq!(index.len(), 1);
    assert_eq!(
        index.get(d.filename),
        Some(Expected {
            size: d.csize,
            sha256: d.sha256
        })
    );
}

/// A pax header giving the next entry the name `path`.
fn pax_path(path: &[u8]) -> Vec<u8> {
    let body = [b" path=", path, b"\n"].concat();
    let mut len = body.len() + 1;
    while format!("{len}").len() + body.len() != len {
        len += 1;
    }
    let record = [format!("{len}").as_bytes(), &body].concat();
    let mut h = [0u8; 512];
    h[..11].copy_from_slice(b"PaxHeader/x");
    h[124..136].copy_from_slice(format!("{:011o}\0", record.len()).as_bytes());
    h[156] = b'x';
    h[257..263].copy_from_slice(b"ustar\0");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&x| u32::from(x)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(&record);
    out.resize(out.len().next_multiple_of(512), 0);
    out
}
