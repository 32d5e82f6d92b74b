//! A streaming tar reader for sync databases: fed bytes in chunks of any size, it checks each
//! 512-byte header, skips file data, and hands back each `FOLDER/desc` whole. Pure: no I/O;
//! its buffers (one header block, one `desc`, one extended header) are reused, never grown
//! past their limits.
//!
//! Understood: ustar (with `prefix`), GNU and v7 headers; octal and base-256 numbers; pax
//! extended headers (`x`: `path` and `size` applied to the next entry; `g`: skipped) and GNU
//! long names (`L`: applied; `K`: skipped), each at most [`MAX_TAR_EXTENDED_BYTES`].
//!
//! The archive must end with its end-of-archive marker (two zero blocks, or one at the very
//! end): a plain tar carries no checksum over its contents, so the marker is the only sign
//! that a cut at an entry boundary is not the end.

use crate::limits::{MAX_DB_TAR_BYTES, MAX_DB_TAR_ENTRIES, MAX_DESC_BYTES, MAX_TAR_EXTENDED_BYTES};

const BLOCK: usize = 512;

/// Why an archive was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarError {
    /// The header's checksum does not match its bytes.
    BadChecksum,
    /// A size or checksum field that is not a number.
    BadNumber,
    /// An entry larger than a whole database may be (`MAX_DB_TAR_BYTES`).
    EntryTooLarge,
    /// A `desc` larger than `MAX_DESC_BYTES`.
    DescTooLarge,
    /// A pax header or GNU long name larger than `MAX_TAR_EXTENDED_BYTES`.
    ExtendedTooLarge,
    /// A malformed pax record.
    BadPax,
    /// An entry name that is not UTF-8.
    NonUtf8Name,
    /// An absolute name, a `..` component, or a NUL byte in a name.
    UnsafeName,
    /// More than `MAX_DB_TAR_ENTRIES` entries.
    TooManyEntries,
    /// A zero block followed by a header: not an end-of-archive marker.
    LoneZeroBlock,
    /// A pax header or long name with no entry after it.
    OrphanExtended,
    /// The input ended inside an entry or before the end-of-archive marker.
    Truncated,
}

impl TarError {
    pub fn reason(self) -> &'static str {
        match self {
            TarError::BadChecksum => "tar header checksum mismatch",
            TarError::BadNumber => "tar header number field is not a number",
            TarError::EntryTooLarge => "tar entry larger than a database may be",
            TarError::DescTooLarge => "desc file larger than the limit",
            TarError::ExtendedTooLarge => "tar extended header larger than the limit",
            TarError::BadPax => "malformed pax extended header",
            TarError::NonUtf8Name => "tar entry name is not UTF-8",
            TarError::UnsafeName => "tar entry name is absolute or has a '..' component",
            TarError::TooManyEntries => "too many tar entries",
            TarError::LoneZeroBlock => "zero block inside the archive",
            TarError::OrphanExtended => "tar extended header without an entry",
            TarError::Truncated => "tar archive ends early",
        }
    }
}

impl std::fmt::Display for TarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for TarError {}

/// A complete `desc` file: its folder (`NAME-VERSION`) and its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescFile<'a> {
    pub folder: &'a str,
    pub data: &'a [u8],
}

/// What one [`TarReader::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed<'a> {
    /// Bytes of the input used.
    pub consumed: usize,
    /// A `desc` that the used bytes completed; feed the rest of the input after it.
    pub desc: Option<DescFile<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collect {
    Desc,
    Pax,
    LongName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Gathering a header block.
    Header,
    /// Entry data collected into `data`; `pad` bytes of padding follow.
    Collect { what: Collect, left: u64, pad: u64 },
    /// Entry data (with padding) skipped.
    Skip { left: u64 },
    /// After the end-of-archive marker: the rest (the archiver's padding) is ignored.
    End,
}

/// The reader; see the module documentation.
#[derive(Debug, Clone)]
pub struct TarReader {
    state: State,
    block: [u8; BLOCK],
    have: usize,
    /// Zero blocks seen in a row.
    zeros: u8,
    entries: usize,
    /// Bytes used so far, and where the current entry's header began.
    offset: u64,
    entry_offset: u64,
    /// The current entry's name (or, until it is known, nothing).
    name: Vec<u8>,
    /// A name from a pax `path` or GNU `L` for the next entry.
    next_name: Option<Vec<u8>>,
    /// A size from a pax `size` for the next entry.
    next_size: Option<u64>,
    /// The `desc`, pax header or long name being collected.
    data: Vec<u8>,
}

impl Default for TarReader {
    fn default() -> Self {
        TarReader::new()
    }
}

impl TarReader {
    pub fn new() -> TarReader {
        TarReader {
            state: State::Header,
            block: [0; BLOCK],
            have: 0,
            zeros: 0,
            entries: 0,
            offset: 0,
            entry_offset: 0,
            name: Vec::new(),
            next_name: None,
            next_size: None,
            data: Vec::new(),
        }
    }

    /// Feeds `input`. Uses all of it, or stops just after a `desc` it completed (then feed
    /// the rest). With input, each call uses at least one byte or returns a `desc`.
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed<'_>, TarError> {
        let mut used = 0;
        loop {
            if let State::Collect { what, left: 0, pad } = self.state {
                self.state = if pad == 0 {
                    State::Header
                } else {
                    State::Skip { left: pad }
                };
                match what {
                    Collect::Desc => {
                        self.offset += used as u64;
                        return Ok(Fed {
                            consumed: used,
                            desc: Some(self.desc_file()),
                        });
                    }
                    Collect::Pax => self.apply_pax()?,
                    Collect::LongName => {
                        let name = &self.data[..];
                        let end = name.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                        self.next_name = Some(name[..end].to_vec());
                    }
                }
            }
            let rest = &input[used..];
            if rest.is_empty() {
                break;
            }
            match self.state {
                State::Header => {
                    if self.have == 0 {
                        // The last entry is behind us: errors from here on are not its.
                        self.name.clear();
                    }
                    let n = (BLOCK - self.have).min(rest.len());
                    self.block[self.have..self.have + n].copy_from_slice(&rest[..n]);
                    self.have += n;
                    used += n;
                    if self.have == BLOCK {
                        self.have = 0;
                        self.entry_offset = self.offset + used as u64 - BLOCK as u64;
                        self.header()?;
                    }
                }
                State::Collect { what, left, pad } => {
                    let n = left.min(rest.len() as u64) as usize;
                    self.data.extend_from_slice(&rest[..n]);
                    used += n;
                    self.state = State::Collect {
                        what,
                        left: left - n as u64,
                        pad,
                    };
                }
                State::Skip { left } => {
                    let n = left.min(rest.len() as u64) as usize;
                    used += n;
                    self.state = if left == n as u64 {
                        State::Header
                    } else {
                        State::Skip {
                            left: left - n as u64,
                        }
                    };
                }
                State::End => used = input.len(),
            }
        }
        self.offset += used as u64;
        Ok(Fed {
            consumed: used,
            desc: None,
        })
    }

    /// At the end of the input: whether the archive was whole.
    pub fn finish(&self) -> Result<(), TarError> {
        let at_marker = self.state == State::End
            || (self.state == State::Header && self.have == 0 && self.zeros == 1);
        if at_marker {
            Ok(())
        } else {
            Err(TarError::Truncated)
        }
    }

    /// The end-of-archive marker has been seen.
    pub fn is_end(&self) -> bool {
        self.state == State::End
    }

    /// Bytes used so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Where the header of the entry being read (or refused) began.
    pub fn entry_offset(&self) -> u64 {
        self.entry_offset
    }

    /// The name of the entry being read, as far as it is known (empty before).
    pub fn entry_name(&self) -> &[u8] {
        &self.name
    }

    fn desc_file(&self) -> DescFile<'_> {
        // `header` chose this entry as a desc only after checking that its name is UTF-8
        // and ends in "/desc".
        let name = std::str::from_utf8(&self.name).unwrap_or_default();
        DescFile {
            folder: name.strip_suffix("/desc").unwrap_or_default(),
            data: &self.data,
        }
    }

    /// The header in `block` decides what comes next.
    fn header(&mut self) -> Result<(), TarError> {
        self.name.clear();
        let b = &self.block;
        if b.iter().all(|&x| x == 0) {
            if self.next_name.is_some() || self.next_size.is_some() {
                return Err(TarError::OrphanExtended);
            }
            self.zeros += 1;
            if self.zeros == 2 {
                self.state = State::End;
            }
            return Ok(());
        }
        if self.zeros > 0 {
            return Err(TarError::LoneZeroBlock);
        }
        check_checksum(b)?;
        self.entries += 1;
        if self.entries > MAX_DB_TAR_ENTRIES {
            return Err(TarError::TooManyEntries);
        }
        let typeflag = b[156];
        let mut size = number(&b[124..136])?;
        if matches!(typeflag, b'x' | b'L') {
            if size > MAX_TAR_EXTENDED_BYTES as u64 {
                return Err(TarError::ExtendedTooLarge);
            }
            let what = if typeflag == b'x' {
                Collect::Pax
            } else {
                Collect::LongName
            };
            return self.collect(what, size);
        }
        if !matches!(typeflag, b'g' | b'K') {
            size = self.next_size.take().unwrap_or(size);
            self.name = match self.next_name.take() {
                Some(name) => name,
                None => header_name(b),
            };
            check_name(&self.name)?;
        }
        if size > MAX_DB_TAR_BYTES {
            return Err(TarError::EntryTooLarge);
        }
        let regular = matches!(typeflag, b'0' | 0 | b'7');
        if regular && is_desc(&self.name) {
            if size > MAX_DESC_BYTES as u64 {
                return Err(TarError::DescTooLarge);
            }
            return self.collect(Collect::Desc, size);
        }
        let left = padded(size);
        self.state = if left == 0 {
            State::Header
        } else {
            State::Skip { left }
        };
        Ok(())
    }

    fn collect(&mut self, what: Collect, size: u64) -> Result<(), TarError> {
        self.data.clear();
        // Sizes here are within MAX_DESC_BYTES or MAX_TAR_EXTENDED_BYTES: reserving them
        // whole is bounded, and the buffer is reused for the next entry.
        self.data.reserve(size as usize);
        self.state = State::Collect {
            what,
            left: size,
            pad: padded(size) - size,
        };
        Ok(())
    }

    /// The pax records in `data`: `path` and `size` apply to the next entry.
    fn apply_pax(&mut self) -> Result<(), TarError> {
        let mut rest = &self.data[..];
        while !rest.is_empty() {
            let space = rest
                .iter()
                .take(20)
                .position(|&b| b == b' ')
                .ok_or(TarError::BadPax)?;
            let len = decimal(&rest[..space]).ok_or(TarError::BadPax)?;
            let len = usize::try_from(len).map_err(|_| TarError::BadPax)?;
            if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
                return Err(TarError::BadPax);
            }
            let record = &rest[space + 1..len - 1];
            let eq = record
                .iter()
                .position(|&b| b == b'=')
                .ok_or(TarError::BadPax)?;
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            match key {
                b"path" => self.next_name = Some(value.to_vec()),
                b"size" => self.next_size = Some(decimal(value).ok_or(TarError::BadPax)?),
                _ => {}
            }
            rest = &rest[len..];
        }
        Ok(())
    }
}

/// `size` rounded up to whole blocks. Callers check sizes against their limits first; the
/// saturation only keeps a mistake there from wrapping around.
fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64)
}

/// POSIX: the sum of the header's bytes with the checksum field taken as spaces, as an
/// unsigned sum; old archivers summed signed bytes, which readers still accept.
fn check_checksum(b: &[u8; BLOCK]) -> Result<(), TarError> {
    let field = &b[148..156];
    if field.iter().all(|&x| x == 0 || x == b' ') {
        return Err(TarError::BadChecksum);
    }
    let stored = number(field).map_err(|_| TarError::BadChecksum)?;
    // The field's own bytes count as 8 spaces.
    let spaces = 8 * u64::from(b' ');
    let unsigned = |bytes: &[u8]| bytes.iter().map(|&x| u64::from(x)).sum::<u64>();
    if stored == unsigned(&b[..148]) + spaces + unsigned(&b[156..]) {
        return Ok(());
    }
    let signed = |bytes: &[u8]| bytes.iter().map(|&x| i64::from(x as i8)).sum::<i64>();
    let sum = signed(&b[..148]) + spaces as i64 + signed(&b[156..]);
    if i64::try_from(stored).is_ok_and(|s| s == sum) {
        Ok(())
    } else {
        Err(TarError::BadChecksum)
    }
}

/// A numeric header field: octal digits (leading spaces, then digits, ended by a space or
/// NUL or the field's end; blank is 0), or GNU base-256 (first byte 0x80, big-endian).
pub fn number(field: &[u8]) -> Result<u64, TarError> {
    let Some(&first) = field.first() else {
        return Ok(0);
    };
    if first & 0x80 != 0 {
        // Base-256; bit 6 of the first byte is the sign: a negative size is no size.
        if first & 0x40 != 0 {
            return Err(TarError::BadNumber);
        }
        let mut v = u64::from(first & 0x3f);
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or(TarError::BadNumber)?;
        }
        return Ok(v);
    }
    let start = field.iter().position(|&b| b != b' ').unwrap_or(field.len());
    let digits = &field[start..];
    let end = digits
        .iter()
        .position(|&b| b == b' ' || b == 0)
        .unwrap_or(digits.len());
    if digits[end..].iter().any(|&b| b != b' ' && b != 0) {
        return Err(TarError::BadNumber);
    }
    let mut v = 0u64;
    for &d in &digits[..end] {
        if !(b'0'..=b'7').contains(&d) {
            return Err(TarError::BadNumber);
        }
        // At most 12 octal digits (36 bits): no overflow.
        v = v * 8 + u64::from(d - b'0');
    }
    Ok(v)
}

/// A decimal number of pax records: digits only, 1 to 20 of them, no overflow.
fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |v, &d| {
        v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The name in a header: ustar `prefix/name` (POSIX magic only: GNU headers use the prefix
/// bytes for other things), else `name`, each up to its first NUL.
fn header_name(b: &[u8; BLOCK]) -> Vec<u8> {
    let field = |f: &[u8]| -> Vec<u8> {
        let end = f.iter().position(|&x| x == 0).unwrap_or(f.len());
        f[..end].to_vec()
    };
    let name = field(&b[0..100]);
    if &b[257..263] == b"ustar\0" {
        let mut prefix = field(&b[345..500]);
        if !prefix.is_empty() {
            prefix.push(b'/');
            prefix.extend_from_slice(&name);
            return prefix;
        }
    }
    name
}

/// A name is used only to find the `desc` files, never as a path; still, a database with
/// names no archiver writes for it (not UTF-8, absolute, `..`) is not one to trust.
fn check_name(name: &[u8]) -> Result<(), TarError> {
    let text = std::str::from_utf8(name).map_err(|_| TarError::NonUtf8Name)?;
    if text.starts_with('/') || text.contains('\0') || text.split('/').any(|c| c == "..") {
        return Err(TarError::UnsafeName);
    }
    Ok(())
}

/// `FOLDER/desc`, with one non-empty folder that is not `.`: where repo-add puts them.
fn is_desc(name: &[u8]) -> bool {
    name.strip_suffix(b"/desc")
        .is_some_and(|folder| !folder.is_empty() && folder != b"." && !folder.contains(&b'/'))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One header block with a correct checksum.
    pub fn header(name: &[u8], size_field: &[u8], typeflag: u8) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name);
        b[100..108].copy_from_slice(b"0000644\0");
        b[108..116].copy_from_slice(b"0000000\0");
        b[116..124].copy_from_slice(b"0000000\0");
        b[124..124 + size_field.len()].copy_from_slice(size_field);
        b[136..148].copy_from_slice(b"14530365102\0");
        b[156] = typeflag;
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        fix_checksum(&mut b);
        b
    }

    pub fn fix_checksum(b: &mut [u8; BLOCK]) {
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    pub fn octal(n: usize) -> Vec<u8> {
        format!("{n:011o}\0").into_bytes()
    }

    /// An entry (header + padded data).
    pub fn entry(name: &str, typeflag: u8, data: &[u8]) -> Vec<u8> {
        entry_raw(name.as_bytes(), typeflag, data)
    }

    pub fn entry_raw(name: &[u8], typeflag: u8, data: &[u8]) -> Vec<u8> {
        let mut out = header(name, &octal(data.len()), typeflag).to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
        out
    }

    pub fn file(name: &str, data: &[u8]) -> Vec<u8> {
        entry(name, b'0', data)
    }

    pub fn dir(name: &str) -> Vec<u8> {
        entry(name, b'5', b"")
    }

    pub fn pax(records: &[(&str, &str)]) -> Vec<u8> {
        let raw: Vec<(&[u8], &[u8])> = records
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        pax_raw(&raw)
    }

    pub fn pax_raw(records: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut data = Vec::new();
        for (k, v) in records {
            let body = [b" ", *k, b"=", *v, b"\n"].concat();
            // The length counts its own digits.
            let mut len = body.len() + 1;
            while format!("{len}").len() + body.len() != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len}").as_bytes());
            data.extend_from_slice(&body);
        }
        entry("PaxHeader/x", b'x', &data)
    }

    pub fn end() -> Vec<u8> {
        vec![0; 2 * BLOCK]
    }

    /// Every desc in `archive` fed `step` bytes at a time, then `finish`.
    pub fn descs(archive: &[u8], step: usize) -> Result<Vec<(String, Vec<u8>)>, TarError> {
        let mut r = TarReader::new();
        let mut found = Vec::new();
        for chunk in archive.chunks(step.max(1)) {
            let mut input = chunk;
            // Bounded: each call uses a byte or returns a desc that a byte completed.
            for _ in 0..=2 * input.len() {
                if input.is_empty() {
                    break;
                }
                let fed = r.feed(input)?;
                input = &input[fed.consumed..];
                if let Some(d) = fed.desc {
                    found.push((d.folder.to_string(), d.data.to_vec()));
                }
            }
            assert!(input.is_empty(), "feed made no progress");
        }
        r.finish()?;
        Ok(found)
    }

    fn db(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out = parts.concat();
        out.extend(end());
        out
    }

    #[test]
    fn reads_desc_files_whatever_the_chunking() {
        let a = b"%FILENAME%\na-1-1-any.pkg.tar.zst\n\n".to_vec();
        let big = vec![b'x'; 3000];
        let archive = db(&[
            dir("a-1-1/"),
            file("a-1-1/desc", &a),
            file("a-1-1/files", &big),
            dir("b-2-1/"),
            file("b-2-1/desc", b""),
            file("b-2-1/desc.bak", b"x"),
            file("b-2-1/sub/desc", b"x"),
            file("desc", b"x"),
            file("./c-1-1/desc", b"x"),
            entry("d-1-1/desc", b'2', b""),
            file("e-1-1/desc", &big),
        ]);
        let want = vec![
            ("a-1-1".to_string(), a.clone()),
            ("b-2-1".to_string(), vec![]),
            ("e-1-1".to_string(), big.clone()),
        ];
        for step in [1, 5, 511, 512, 513, 4096, archive.len()] {
            assert_eq!(descs(&archive, step).as_ref(), Ok(&want), "step {step}");
        }
    }

    #[test]
    fn names_from_prefix_pax_and_gnu_long_names() {
        let long = "p".repeat(150);
        let mut ustar = header(b"desc", &octal(2), b'0');
        ustar[345..345 + long.len() + 4].copy_from_slice(format!("{long}-1-1").as_bytes());
        fix_checksum(&mut ustar);
        let mut prefixed = ustar.to_vec();
        prefixed.extend_from_slice(b"hi");
        prefixed.resize(2 * BLOCK, 0);

        // GNU magic: the prefix bytes are not a prefix.
        let mut gnu = ustar;
        gnu[257..265].copy_from_slice(b"ustar  \0");
        fix_checksum(&mut gnu);
        let mut gnu_entry = gnu.to_vec();
        gnu_entry.extend_from_slice(&[0; BLOCK]);

        let longer = format!("{}-1-1/desc", "q".repeat(300));
        let mut long_name = longer.clone().into_bytes();
        long_name.push(0);
        let archive = db(&[
            prefixed,
            gnu_entry,
            pax(&[
                ("mtime", "1.5"),
                ("path", &format!("{}-1-1/desc", "r".repeat(200))),
            ]),
            file("ignored-name", b"pax"),
            entry("././@LongLink", b'L', &long_name),
            file("ignored-too", b"gnu"),
            entry("././@LongLink", b'K', b"link target\0"),
            pax(&[("size", "3")]),
            // The pax size wins over the header's (here 0).
            file("s-1-1/desc", b""),
            vec![b'a', b'b', b'c'],
            vec![0; BLOCK - 3],
            entry(
                "pax_global_header",
                b'g',
                b"52 path=global-is-not-applied-to-anything/desc\n",
            ),
            file("t-1-1/desc", b"t"),
        ]);
        let got = descs(&archive, 100).unwrap();
        let folders: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        let want_long = format!("{long}-1-1");
        let want_r = format!("{}-1-1", "r".repeat(200));
        let want_q = format!("{}-1-1", "q".repeat(300));
        assert_eq!(
            folders,
            [
                want_long.as_str(),
                want_r.as_str(),
                want_q.as_str(),
                "s-1-1",
                "t-1-1"
            ]
        );
        assert_eq!(got[0].1, b"hi");
        assert_eq!(got[1].1, b"pax");
        assert_eq!(got[2].1, b"gnu");
        assert_eq!(got[3].1, b"abc");
    }

    #[test]
    fn numbers() {
        let ok: &[(&[u8], u64)] = &[
            (b"00000000012\0", 10),
            (b"00000000012 ", 10),
            (b"       12   ", 10),
            (b"777777777777", 0o777777777777),
            (b"\0\0\0\0\0\0\0\0\0\0\0\0", 0),
            (b"            ", 0),
            (&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], 256),
            (
                &[
                    0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                ],
                u64::MAX,
            ),
        ];
        for (field, want) in ok {
            assert_eq!(number(field), Ok(*want), "{field:?}");
        }
        let bad: &[&[u8]] = &[
            b"0000000001a\0",
            b"00000000018\0",
            b"-0000000001\0",
            b"0000 000001\0",
            b"0x0000000001",
            &[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
            &[0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        ];
        for field in bad {
            assert_eq!(number(field), Err(TarError::BadNumber), "{field:?}");
        }
    }

    #[test]
    fn hostile_archives() {
        let desc = b"%FILENAME%\na-1-1-any.pkg.tar.zst\n\n";
        let good = file("a-1-1/desc", desc);
        let mut bad_sum = good.clone();
        bad_sum[0] = b'b';
        let mut blank_sum = good.clone();
        blank_sum[148..156].fill(b' ');
        // A checksum summed over signed bytes, as old archivers did, is accepted.
        let mut signed = header(b"a-1-1/desc", &octal(0), b'0');
        signed[265] = 0xe9; // in the owner's user name
        let sum: i64 = signed
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    i64::from(x as i8)
                }
            })
            .sum();
        signed[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let huge = |field: &[u8], typeflag| {
            let mut v = header(b"a-1-1/files", field, typeflag).to_vec();
            v.extend_from_slice(&[0; BLOCK]);
            v
        };
        let base256 = |n: u64| {
            let mut f = [0u8; 12];
            f[0] = 0x80;
            f[4..].copy_from_slice(&n.to_be_bytes());
            f
        };
        let desc_at_limit = file("a-1-1/desc", &vec![b'x'; MAX_DESC_BYTES]);
        let desc_over = header(b"a-1-1/desc", &octal(MAX_DESC_BYTES + 1), b'0').to_vec();
        let pax_over = header(b"P/x", &octal(MAX_TAR_EXTENDED_BYTES + 1), b'x').to_vec();
        let mut truncated_pax = pax(&[("path", "x-1-1/desc")]);
        truncated_pax[BLOCK] = b'9';
        let mut lone_zero = vec![0; BLOCK];
        lone_zero.extend(file("a-1-1/desc", desc));
        let cases: Vec<(&str, Vec<u8>, Result<usize, TarError>)> = vec![
            ("good", db(std::slice::from_ref(&good)), Ok(1)),
            ("bad checksum", db(&[bad_sum]), Err(TarError::BadChecksum)),
            (
                "blank checksum",
                db(&[blank_sum]),
                Err(TarError::BadChecksum),
            ),
            ("signed checksum", db(&[signed.to_vec()]), Ok(1)),
            (
                "size 777777777777 octal",
                huge(b"777777777777", b'0'),
                Err(TarError::EntryTooLarge),
            ),
            (
                "size in base-256, 2^40",
                huge(&base256(1 << 40), b'0'),
                Err(TarError::EntryTooLarge),
            ),
            (
                "size in base-256, u64::MAX",
                huge(&base256(u64::MAX), b'0'),
                Err(TarError::EntryTooLarge),
            ),
            (
                "negative base-256 size",
                huge(&[0xff; 12], b'0'),
                Err(TarError::BadNumber),
            ),
            (
                "size not octal",
                huge(b"0000000009\0\0", b'0'),
                Err(TarError::BadNumber),
            ),
            // A huge pax size goes to the next entry: refused there.
            (
                "huge pax size",
                db(&[pax(&[("size", "99999999999999")]), file("a/b", b"")]),
                Err(TarError::EntryTooLarge),
            ),
            (
                "pax size overflows",
                db(&[
                    pax(&[("size", "99999999999999999999999")]),
                    file("a/b", b""),
                ]),
                Err(TarError::BadPax),
            ),
            (
                "pax path not UTF-8",
                db(&[pax_raw(&[(b"path", b"a-\xff/desc")]), file("x", b"")]),
                Err(TarError::NonUtf8Name),
            ),
            (
                "pax record length lies",
                db(&[truncated_pax, file("x", b"")]),
                Err(TarError::BadPax),
            ),
            (
                "pax without '='",
                db(&[entry("P/x", b'x', b"8 pathx\n"), file("x", b"")]),
                Err(TarError::BadPax),
            ),
            (
                "pax not ending in newline",
                db(&[entry("P/x", b'x', b"7 a=bc "), file("x", b"")]),
                Err(TarError::BadPax),
            ),
            (
                "pax header too large",
                pax_over,
                Err(TarError::ExtendedTooLarge),
            ),
            (
                "pax then the end",
                db(&[pax(&[("path", "a-1-1/desc")])]),
                Err(TarError::OrphanExtended),
            ),
            (
                "long name then the end",
                db(&[entry("L", b'L', b"a-1-1/desc\0")]),
                Err(TarError::OrphanExtended),
            ),
            (
                "non-UTF-8 name",
                db(&[entry_raw(b"a-1-1/d\xffsc", b'0', b"")]),
                Err(TarError::NonUtf8Name),
            ),
            (
                "non-UTF-8 long name",
                db(&[entry("L", b'L', b"a-\xff/desc\0"), file("x", b"")]),
                Err(TarError::NonUtf8Name),
            ),
            (
                "'..' in a name",
                db(&[file("../desc", desc)]),
                Err(TarError::UnsafeName),
            ),
            (
                "'..' inside a name",
                db(&[file("a/../b/desc", desc)]),
                Err(TarError::UnsafeName),
            ),
            (
                "absolute name",
                db(&[file("/a-1-1/desc", desc)]),
                Err(TarError::UnsafeName),
            ),
            (
                "'..' from pax",
                db(&[pax(&[("path", "x/../../desc")]), file("x", b"")]),
                Err(TarError::UnsafeName),
            ),
            (
                "NUL from pax",
                db(&[pax(&[("path", "x\0/desc")]), file("x", b"")]),
                Err(TarError::UnsafeName),
            ),
            ("desc at the limit", db(&[desc_at_limit]), Ok(1)),
            (
                "desc over the limit",
                desc_over,
                Err(TarError::DescTooLarge),
            ),
            ("lone zero block", lone_zero, Err(TarError::LoneZeroBlock)),
            ("no end marker", good.clone(), Err(TarError::Truncated)),
            (
                "one zero block at the end",
                [good.clone(), vec![0; BLOCK]].concat(),
                Ok(1),
            ),
            (
                "ends mid-header",
                good[..100].to_vec(),
                Err(TarError::Truncated),
            ),
            (
                "ends mid-desc",
                good[..BLOCK + 10].to_vec(),
                Err(TarError::Truncated),
            ),
            (
                "ends in the padding",
                good[..BLOCK + desc.len() + 1].to_vec(),
                Err(TarError::Truncated),
            ),
            (
                "ends mid-marker",
                [good.clone(), vec![0; 700]].concat(),
                Err(TarError::Truncated),
            ),
            ("empty", vec![], Err(TarError::Truncated)),
            ("empty archive", end(), Ok(0)),
            (
                "garbage after the marker",
                [end(), vec![0xff; 5000]].concat(),
                Ok(0),
            ),
        ];
        for (what, bytes, want) in cases {
            for step in [1, 512, bytes.len()] {
                assert_eq!(
                    descs(&bytes, step).map(|d| d.len()),
                    want,
                    "{what}, step {step}"
                );
            }
        }
    }

    #[test]
    fn counts_entries() {
        let one = dir("d/");
        let mut r = TarReader::new();
        for _ in 0..MAX_DB_TAR_ENTRIES {
            assert_eq!(r.feed(&one).map(|f| f.consumed), Ok(BLOCK));
        }
        assert_eq!(r.feed(&one), Err(TarError::TooManyEntries));
    }

    #[test]
    fn reports_where() {
        let mut archive = db(&[
            dir("a-1-1/"),
            file("a-1-1/desc", b"x"),
            file("b-1-1/desc", b"y"),
        ]);
        archive[3 * BLOCK] ^= 1;
        let mut r = TarReader::new();
        let mut input = &archive[..];
        let mut err = None;
        for _ in 0..archive.len() {
            match r.feed(input) {
                Ok(f) => input = &input[f.consumed..],
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert_eq!(err, Some(TarError::BadChecksum));
        assert_eq!(r.entry_offset(), 3 * BLOCK as u64);
        assert_eq!(r.entry_name(), b"");
    }
}
