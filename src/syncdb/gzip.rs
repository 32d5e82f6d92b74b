//! gzip (RFC 1952) as sync databases use it: the member header, read by a byte-fed state
//! machine, then the raw deflate payload inflated by miniz_oxide into the caller's buffer,
//! then the trailer's CRC-32 and length checked. Pure: no I/O; one allocation per stream
//! (miniz_oxide's inflate state, about 43 KiB, with its 32 KiB window).
//!
//! One member only. repo-add (`gzip -c -n`) and Arch's own tooling write a single member;
//! bytes after its trailer are refused as [`GzipError::TrailingData`], not read as a further
//! member, so a database is never taken as whole when only its first member was understood.

use miniz_oxide::inflate::stream::{InflateState, inflate};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

use crate::limits::MAX_GZIP_HEADER_TEXT;

/// Why a gzip stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GzipError {
    /// Not `1f 8b`.
    BadMagic,
    /// A compression method other than 8 (deflate), the only one RFC 1952 defines.
    BadMethod,
    /// Reserved flag bits set: RFC 1952 says a reader must refuse them.
    ReservedFlags,
    /// FNAME or FCOMMENT without its terminating zero within `MAX_GZIP_HEADER_TEXT`.
    HeaderTextTooLong,
    /// FHCRC does not match the header.
    HeaderCrc,
    /// The deflate data is invalid.
    Deflate,
    /// The inflated bytes do not match the trailer's CRC-32.
    Crc,
    /// The inflated length does not match the trailer's ISIZE.
    Length,
    /// Bytes after the member's trailer (a second member, or garbage).
    TrailingData,
    /// The input ended before the member did.
    Truncated,
    /// The inflater took no input and gave no output although it had both: never seen;
    /// reported rather than looped on.
    Stalled,
}

impl GzipError {
    pub fn reason(self) -> &'static str {
        match self {
            GzipError::BadMagic => "not gzip data",
            GzipError::BadMethod => "gzip compression method is not deflate",
            GzipError::ReservedFlags => "gzip header has reserved flags set",
            GzipError::HeaderTextTooLong => "gzip header name or comment is too long",
            GzipError::HeaderCrc => "gzip header checksum mismatch",
            GzipError::Deflate => "invalid deflate data",
            GzipError::Crc => "gzip CRC-32 mismatch",
            GzipError::Length => "gzip length mismatch",
            GzipError::TrailingData => "data after the gzip member (multi-member gzip is not read)",
            GzipError::Truncated => "gzip data ends early",
            GzipError::Stalled => "inflate made no progress",
        }
    }
}

impl std::fmt::Display for GzipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for GzipError {}

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const RESERVED: u8 = 0xe0;

/// Where the header parser is: each state knows how many bytes it still wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderState {
    /// The 10 fixed bytes (ID1 ID2 CM FLG MTIME XFL OS); `have` of them seen.
    Fixed {
        have: u8,
    },
    /// The 2-byte little-endian XLEN.
    ExtraLen {
        have: u8,
        len: u16,
    },
    /// XLEN bytes of extra field to skip.
    Extra {
        left: u16,
    },
    /// A zero-terminated string (FNAME, then FCOMMENT); `len` bytes seen.
    Text {
        comment: bool,
        len: usize,
    },
    /// The 2-byte CRC16 of everything before it.
    Crc {
        have: u8,
        value: u16,
    },
    Done,
}

/// The RFC 1952 member header, fed bytes as they come. No allocation.
#[derive(Debug, Clone)]
pub struct HeaderParser {
    state: HeaderState,
    flags: u8,
    crc: Crc32,
    /// Header bytes accepted so far.
    len: usize,
}

impl Default for HeaderParser {
    fn default() -> Self {
        HeaderParser::new()
    }
}

impl HeaderParser {
    pub fn new() -> HeaderParser {
        HeaderParser {
            state: HeaderState::Fixed { have: 0 },
            flags: 0,
            crc: Crc32::new(),
            len: 0,
        }
    }

    /// Reads header bytes from `input`; `Ok(Some(n))`: the header ended after `n` bytes of
    /// this input; `Ok(None)`: all of `input` belonged to it and more is needed.
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<usize>, GzipError> {
        for (i, &b) in input.iter().enumerate() {
            if !matches!(self.state, HeaderState::Crc { .. }) {
                self.crc.update(&[b]);
            }
            self.state = self.step(b)?;
            self.len += 1;
            if self.state == HeaderState::Done {
                return Ok(Some(i + 1));
            }
        }
        Ok(None)
    }

    pub fn is_done(&self) -> bool {
        self.state == HeaderState::Done
    }

    /// The state after byte `b`.
    fn step(&mut self, b: u8) -> Result<HeaderState, GzipError> {
        use HeaderState::*;
        Ok(match self.state {
            Fixed { have } => {
                match have {
                    0 if b != 0x1f => return Err(GzipError::BadMagic),
                    1 if b != 0x8b => return Err(GzipError::BadMagic),
                    2 if b != 8 => return Err(GzipError::BadMethod),
                    3 if b & RESERVED != 0 => return Err(GzipError::ReservedFlags),
                    3 => self.flags = b,
                    _ => {}
                }
                if have < 9 {
                    Fixed { have: have + 1 }
                } else {
                    self.after(FEXTRA)
                }
            }
            ExtraLen { have: 0, .. } => ExtraLen {
                have: 1,
                len: u16::from(b),
            },
            ExtraLen { len, .. } => match len | u16::from(b) << 8 {
                0 => self.after(FNAME),
                left => Extra { left },
            },
            Extra { left: 1 } => self.after(FNAME),
            Extra { left } => Extra { left: left - 1 },
            Text { comment, len } => {
                if b == 0 {
                    self.after(if comment { FHCRC } else { FCOMMENT })
                } else if len >= MAX_GZIP_HEADER_TEXT {
                    return Err(GzipError::HeaderTextTooLong);
                } else {
                    Text {
                        comment,
                        len: len + 1,
                    }
                }
            }
            Crc { have: 0, .. } => Crc {
                have: 1,
                value: u16::from(b),
            },
            Crc { value, .. } => {
                // RFC 1952: the two least significant bytes of the CRC-32 of the header.
                if value | u16::from(b) << 8 != self.crc.value() as u16 {
                    return Err(GzipError::HeaderCrc);
                }
                Done
            }
            Done => Done,
        })
    }

    /// The first optional part at or after `part` (in header order) whose flag is set.
    fn after(&self, part: u8) -> HeaderState {
        let order = [FEXTRA, FNAME, FCOMMENT, FHCRC];
        let from = order.iter().position(|&p| p == part).unwrap_or(order.len());
        for &p in &order[from..] {
            if self.flags & p != 0 {
                return match p {
                    FEXTRA => HeaderState::ExtraLen { have: 0, len: 0 },
                    FNAME => HeaderState::Text {
                        comment: false,
                        len: 0,
                    },
                    FCOMMENT => HeaderState::Text {
                        comment: true,
                        len: 0,
                    },
                    _ => HeaderState::Crc { have: 0, value: 0 },
                };
            }
        }
        HeaderState::Done
    }
}

/// What one [`Gunzip::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input used.
    pub consumed: usize,
    /// Bytes of inflated data written to the start of the output buffer.
    pub written: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    Body,
    Trailer { have: usize },
    Done,
}

/// One gzip member, inflated in a streaming fashion into the caller's buffer.
///
/// What it reports does not depend on how the input is split: inflated bytes always come out
/// before an error found after them (a deflate error waits for the next call when the call
/// that found it also wrote), and the trailer is checked only after the last inflated byte
/// has been handed out, so a reader of the output sees the same bytes before the same error
/// whatever the chunks.
pub struct Gunzip {
    phase: Phase,
    header: HeaderParser,
    inflate: Box<InflateState>,
    crc: Crc32,
    /// Inflated bytes so far (ISIZE is this modulo 2^32).
    out_len: u64,
    /// Input bytes used so far.
    in_len: u64,
    trailer: [u8; 8],
    /// An error found, and the input offset where it was: every later call returns it.
    failed: Option<(GzipError, u64)>,
}

impl Default for Gunzip {
    fn default() -> Self {
        Gunzip::new()
    }
}

impl Gunzip {
    pub fn new() -> Gunzip {
        Gunzip {
            phase: Phase::Header,
            header: HeaderParser::new(),
            inflate: InflateState::new_boxed(DataFormat::Raw),
            crc: Crc32::new(),
            out_len: 0,
            in_len: 0,
            trailer: [0; 8],
            failed: None,
        }
    }

    /// Feeds `input` and writes inflated bytes to `out` (which must not be empty).
    ///
    /// When both counts are zero, all of `input` has been used and more is needed, or the
    /// member has ended ([`Gunzip::is_done`]). Inflated bytes may wait inside for room in
    /// `out`: call again, with no new input if need be, until a call writes nothing. Input
    /// that is there but cannot be used is an error, never a zero [`Progress`], so a loop
    /// around `feed` always ends.
    pub fn feed(&mut self, input: &[u8], out: &mut [u8]) -> Result<Progress, GzipError> {
        if let Some((e, _)) = self.failed {
            return Err(e);
        }
        let mut used = 0;
        let result = self.step(input, out, &mut used);
        if let Err(e) = result {
            self.failed = Some((e, self.in_len + used as u64));
        }
        self.in_len += used as u64;
        result
    }

    fn step(
        &mut self,
        input: &[u8],
        out: &mut [u8],
        used: &mut usize,
    ) -> Result<Progress, GzipError> {
        let mut written = 0;
        if self.phase == Phase::Header {
            match self.header.feed(input) {
                Ok(Some(n)) => {
                    *used = n;
                    self.phase = Phase::Body;
                }
                Ok(None) => *used = input.len(),
                Err(e) => {
                    // The header starts the stream: its length so far is the offset.
                    *used = self.header.len - self.in_len as usize;
                    return Err(e);
                }
            }
        }
        if self.phase == Phase::Body && !out.is_empty() {
            let rest = &input[*used..];
            let r = inflate(&mut self.inflate, rest, out, MZFlush::None);
            *used += r.bytes_consumed;
            written = r.bytes_written;
            self.crc.update(&out[..written]);
            self.out_len += written as u64;
            let progress = Progress {
                consumed: *used,
                written,
            };
            match r.status {
                Ok(MZStatus::StreamEnd) => {
                    self.phase = Phase::Trailer { have: 0 };
                    if written > 0 {
                        // The trailer is checked once these bytes are out.
                        return Ok(progress);
                    }
                }
                Ok(_) => {}
                // "No progress possible": with the input all used this is "need more";
                // the check below catches the other case.
                Err(MZError::Buf) => {}
                Err(_) if written > 0 => {
                    self.failed = Some((GzipError::Deflate, self.in_len + *used as u64));
                    return Ok(progress);
                }
                Err(_) => return Err(GzipError::Deflate),
            }
            if self.phase == Phase::Body
                && r.bytes_consumed == 0
                && written == 0
                && !rest.is_empty()
            {
                return Err(GzipError::Stalled);
            }
        }
        if let Phase::Trailer { have } = self.phase {
            let n = (8 - have).min(input.len() - *used);
            self.trailer[have..have + n].copy_from_slice(&input[*used..*used + n]);
            *used += n;
            if have + n < 8 {
                self.phase = Phase::Trailer { have: have + n };
            } else {
                let [c0, c1, c2, c3, s0, s1, s2, s3] = self.trailer;
                if u32::from_le_bytes([c0, c1, c2, c3]) != self.crc.value() {
                    return Err(GzipError::Crc);
                }
                if u32::from_le_bytes([s0, s1, s2, s3]) != self.out_len as u32 {
                    return Err(GzipError::Length);
                }
                self.phase = Phase::Done;
            }
        }
        if self.phase == Phase::Done && *used < input.len() {
            return Err(GzipError::TrailingData);
        }
        Ok(Progress {
            consumed: *used,
            written,
        })
    }

    /// The member has ended and its trailer matched.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// At the end of the input: whether the member was whole.
    pub fn finish(&self) -> Result<(), GzipError> {
        match self.failed {
            Some((e, _)) => Err(e),
            None if self.is_done() => Ok(()),
            None => Err(GzipError::Truncated),
        }
    }

    /// Where the error was found, or before one, the input bytes used so far. Does not
    /// depend on how the input was split.
    pub fn offset(&self) -> u64 {
        self.failed.map_or(self.in_len, |(_, at)| at)
    }

    /// Inflated bytes so far.
    pub fn inflated(&self) -> u64 {
        self.out_len
    }
}

/// CRC-32 (IEEE 802.3, reflected, as gzip uses it), a byte at a time from a 1 KiB table
/// made at compile time: the slicing variants are faster but cost 8 KiB or more of binary,
/// and a database is checked once per load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crc32(u32);

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

impl Default for Crc32 {
    fn default() -> Self {
        Crc32::new()
    }
}

impl Crc32 {
    pub fn new() -> Crc32 {
        Crc32(!0)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for &b in bytes {
            c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    pub fn value(&self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn crc32(bytes: &[u8]) -> u32 {
        let mut c = Crc32::new();
        c.update(bytes);
        c.value()
    }

    /// A gzip member of `data` with the given header `flags`, optional parts filled in.
    pub fn gzip_with(data: &[u8], flags: u8, level: u8) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 3];
        if flags & FEXTRA != 0 {
            out.extend_from_slice(&[6, 0, b'A', b'B', 2, 0, 1, 2]);
        }
        if flags & FNAME != 0 {
            out.extend_from_slice(b"core.db.tar\0");
        }
        if flags & FCOMMENT != 0 {
            out.extend_from_slice(b"a comment\0");
        }
        if flags & FHCRC != 0 {
            let c = crc32(&out) as u16;
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, level));
        out.extend_from_slice(&crc32(data).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    pub fn gzip(data: &[u8]) -> Vec<u8> {
        gzip_with(data, 0, 6)
    }

    /// Inflates `gz` fed `step` bytes at a time into a `out_size` buffer.
    pub fn gunzip(gz: &[u8], step: usize, out_size: usize) -> Result<Vec<u8>, GzipError> {
        let mut g = Gunzip::new();
        let mut out = vec![0; out_size];
        let mut result = Vec::new();
        for chunk in gz.chunks(step.max(1)) {
            let mut input = chunk;
            loop {
                let p = g.feed(input, &mut out)?;
                input = &input[p.consumed..];
                result.extend_from_slice(&out[..p.written]);
                if p.consumed == 0 && p.written == 0 {
                    break;
                }
            }
            assert!(input.is_empty());
        }
        // Inflated bytes still waiting for room.
        loop {
            let p = g.feed(&[], &mut out)?;
            result.extend_from_slice(&out[..p.written]);
            if p.written == 0 {
                break;
            }
        }
        g.finish()?;
        Ok(result)
    }

    fn sample() -> Vec<u8> {
        let mut data = Vec::new();
        for i in 0..20_000u32 {
            data.extend_from_slice(format!("%NAME%\npkg{i}\n\n").as_bytes());
            data.push((i.wrapping_mul(2_654_435_761) >> 24) as u8);
        }
        data
    }

    #[test]
    fn crc32_known_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414f_a339
        );
    }

    #[test]
    fn inflates_whatever_the_chunking() {
        let data = sample();
        for level in [0, 1, 6, 9] {
            let gz = gzip_with(&data, 0, level);
            for (step, out) in [
                (1, 1),
                (7, 3),
                (512, 512),
                (4096, 32 * 1024),
                (gz.len(), 64),
            ] {
                assert_eq!(
                    gunzip(&gz, step, out).as_deref(),
                    Ok(&data[..]),
                    "level {level} step {step} out {out}"
                );
            }
        }
        assert_eq!(gunzip(&gzip(b""), 1, 1), Ok(Vec::new()));
    }

    #[test]
    fn reads_every_optional_header_part() {
        let data = b"hello, sync database";
        for flags in 0..32u8 {
            assert_eq!(
                gunzip(&gzip_with(data, flags, 6), 1, 8).as_deref(),
                Ok(&data[..]),
                "flags {flags:#x}"
            );
        }
    }

    #[test]
    fn hostile_headers() {
        let good = gzip(b"x");
        let mut long_name = vec![0x1f, 0x8b, 8, FNAME, 0, 0, 0, 0, 0, 3];
        long_name.extend(std::iter::repeat_n(b'a', MAX_GZIP_HEADER_TEXT + 1));
        let mut just_fits = vec![0x1f, 0x8b, 8, FNAME, 0, 0, 0, 0, 0, 3];
        just_fits.extend(std::iter::repeat_n(b'a', MAX_GZIP_HEADER_TEXT));
        just_fits.push(0);
        just_fits.extend_from_slice(&good[10..]);
        let mut bad_hcrc = gzip_with(b"x", FHCRC, 6);
        bad_hcrc[10] ^= 1;
        let mut extra_runs_out = vec![0x1f, 0x8b, 8, FEXTRA, 0, 0, 0, 0, 0, 3, 0xff, 0xff];
        extra_runs_out.extend_from_slice(&[0; 100]);
        let cases: Vec<(&str, Vec<u8>, Result<(), GzipError>)> = vec![
            (
                "zstd magic",
                vec![0x28, 0xb5, 0x2f, 0xfd],
                Err(GzipError::BadMagic),
            ),
            ("half magic", vec![0x1f, 0x00], Err(GzipError::BadMagic)),
            ("method 7", vec![0x1f, 0x8b, 7], Err(GzipError::BadMethod)),
            (
                "reserved 0x20",
                vec![0x1f, 0x8b, 8, 0x20],
                Err(GzipError::ReservedFlags),
            ),
            (
                "reserved 0x80",
                vec![0x1f, 0x8b, 8, 0x80],
                Err(GzipError::ReservedFlags),
            ),
            ("endless name", long_name, Err(GzipError::HeaderTextTooLong)),
            ("name at the limit", just_fits, Ok(())),
            ("header crc", bad_hcrc, Err(GzipError::HeaderCrc)),
            (
                "extra longer than input",
                extra_runs_out,
                Err(GzipError::Truncated),
            ),
            (
                "only the magic",
                vec![0x1f, 0x8b],
                Err(GzipError::Truncated),
            ),
            ("empty", vec![], Err(GzipError::Truncated)),
        ];
        for (what, bytes, want) in cases {
            for step in [1, 3, bytes.len().max(1)] {
                assert_eq!(
                    gunzip(&bytes, step, 16).map(drop),
                    want,
                    "{what}, step {step}"
                );
            }
        }
    }

    #[test]
    fn hostile_bodies_and_trailers() {
        let data = sample();
        let gz = gzip(&data);
        let n = gz.len();
        let mut bad_crc = gz.clone();
        bad_crc[n - 8] ^= 1;
        let mut bad_len = gz.clone();
        bad_len[n - 1] ^= 1;
        let mut trailing = gz.clone();
        trailing.push(0);
        let two_members = [gz.clone(), gzip(b"more")].concat();
        // A stored block header whose LEN and NLEN disagree.
        let mut bad_stored = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        bad_stored.extend_from_slice(&[0x01, 0x05, 0x00, 0x00, 0x00]);
        // Block type 3 is reserved.
        let mut reserved_block = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        reserved_block.extend_from_slice(&[0x07, 0, 0, 0]);
        let mut flipped = gz.clone();
        flipped[n / 2] ^= 0x55;
        let cases: Vec<(&str, Vec<u8>, &[GzipError])> = vec![
            ("crc", bad_crc, &[GzipError::Crc]),
            ("isize", bad_len, &[GzipError::Length]),
            (
                "a byte after the trailer",
                trailing,
                &[GzipError::TrailingData],
            ),
            ("a second member", two_members, &[GzipError::TrailingData]),
            ("stored LEN/NLEN", bad_stored, &[GzipError::Deflate]),
            ("reserved block type", reserved_block, &[GzipError::Deflate]),
            // A flipped byte in the middle is caught by deflate itself or by the CRC.
            (
                "flipped",
                flipped,
                &[GzipError::Deflate, GzipError::Crc, GzipError::Length],
            ),
        ];
        for (what, bytes, want) in cases {
            for step in [1, 100, bytes.len()] {
                let got = gunzip(&bytes, step, 4096);
                assert!(
                    matches!(got, Err(e) if want.contains(&e)),
                    "{what}, step {step}: {:?}",
                    got.map(|v| v.len())
                );
            }
        }
        // Cut anywhere: never whole.
        for cut in (0..n).step_by(97).chain([n - 8, n - 1]) {
            assert_eq!(
                gunzip(&gz[..cut], 4096, 4096).map(|v| v.len()),
                Err(GzipError::Truncated),
                "cut at {cut}"
            );
        }
    }
}
