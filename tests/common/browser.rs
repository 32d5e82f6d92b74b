//! Headless chromium, as a person's browser would show a page: loaded with everything but
//! that page turned off, run in a process group of its own that is killed at its time limit;
//! and checks of what it gives back (a PNG's structure, text and tables in a DOM).

use std::process::Command;
use std::time::Duration;

use super::preflight;
use super::process::{Ran, run_grouped};
use super::tempdir::TempDir;

/// Longest one headless chromium run may take before its process group is killed.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);
/// The window's size, passed to chromium and expected in a screenshot's IHDR.
pub const SHOT_WIDTH: u32 = 1280;
pub const SHOT_HEIGHT: u32 = 2000;

/// chromium loading `url`; `mode` is `--screenshot=FILE` or `--dump-dom` (the DOM is its
/// stdout). Its profile, home and caches live in `dir`, named after `tag`.
pub fn chromium(dir: &TempDir, tag: &str, mode: &str, url: &str) -> Ran {
    preflight::require();
    let profile = dir.mkdir(format!("profile-{tag}"));
    let home = dir.mkdir(format!("home-{tag}"));
    run_grouped(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                // No name resolves: the page is on a literal 127.0.0.1.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={SHOT_WIDTH},{SHOT_HEIGHT}"))
            .arg(mode)
            .arg(url)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("LC_ALL", "C"),
        BROWSER_LIMIT,
    )
}

/// CRC-32 (ISO-HDLC), as PNG chunks carry it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Check a PNG's structure: signature, IHDR first, every chunk's CRC, IDAT present, IEND last
/// with nothing after it. Returns (width, height).
pub fn check_png(png: &[u8]) -> Result<(u32, u32), String> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    if !png.starts_with(&SIGNATURE) {
        return Err("no PNG signature".into());
    }
    let mut chunks: Vec<(&[u8], &[u8])> = Vec::new();
    let mut i = SIGNATURE.len();
    // Each round consumes at least 12 bytes, so this ends.
    while i < png.len() {
        let head = png.get(i..i + 8).ok_or("chunk head cut short")?;
        let len = be32(head) as usize;
        let end = i
            .checked_add(12 + len)
            .filter(|&e| e <= png.len())
            .ok_or("chunk cut short")?;
        let kind = &png[i + 4..i + 8];
        if crc32(&png[i + 4..end - 4]) != be32(&png[end - 4..end]) {
            return Err(format!("bad CRC in {}", String::from_utf8_lossy(kind)));
        }
        chunks.push((kind, &png[i + 8..end - 4]));
        i = end;
        if kind == b"IEND" {
            break;
        }
    }
    if i != png.len() {
        return Err(format!("{} bytes after IEND", png.len() - i));
    }
    let (kind, ihdr) = chunks.first().ok_or("no chunks")?;
    if *kind != b"IHDR" || ihdr.len() != 13 {
        return Err("the first chunk is not a 13-byte IHDR".into());
    }
    let (width, height) = (be32(&ihdr[0..4]), be32(&ihdr[4..8]));
    let (depth, color) = (ihdr[8], ihdr[9]);
    if !matches!(depth, 1 | 2 | 4 | 8 | 16) || !matches!(color, 0 | 2 | 3 | 4 | 6) {
        return Err(format!("bad bit depth {depth} or colour type {color}"));
    }
    if ihdr[10] != 0 || ihdr[11] != 0 || ihdr[12] > 1 {
        return Err("bad compression, filter or interlace method".into());
    }
    if !chunks.iter().any(|(k, d)| *k == b"IDAT" && !d.is_empty()) {
        return Err("no image data".into());
    }
    if chunks.last().map(|(k, _)| *k) != Some(&b"IEND"[..]) {
        return Err("no IEND".into());
    }
    Ok((width, height))
}

pub fn html_text(fragment: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in fragment.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .trim()
        .to_string()
}

/// What follows the start tag carrying `id="ID"`, up to `close`; None unless exactly one
/// element has that id.
pub fn by_id<'a>(dom: &'a str, id: &str, close: &str) -> Option<&'a str> {
    let attr = format!("id=\"{id}\"");
    if dom.matches(&attr).count() != 1 {
        return None;
    }
    let rest = &dom[dom.find(&attr)?..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find(close)?;
    Some(&rest[start..start + end])
}

/// The number a counter card shows in bold.
pub fn card_count(dom: &str, id: &str) -> Option<u64> {
    let card = by_id(dom, id, "</div>")?;
    let bold = &card[card.find("<b>")? + 3..];
    html_text(&bold[..bold.find("</b>")?]).parse().ok()
}

/// The cells' text of each row of a table that has `<td>` cells.
pub fn table_rows(table: &str) -> Vec<Vec<String>> {
    table
        .split("<tr")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .filter_map(|cell| {
                    let body = &cell[cell.find('>')? + 1..];
                    Some(html_text(&body[..body.find("</td>")?]))
                })
                .collect::<Vec<_>>()
        })
        .filter(|cells| !cells.is_empty())
        .collect()
}
