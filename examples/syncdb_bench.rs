//! How long a sync database the size of Arch's extra takes to load, how much memory its index
//! holds, and how fast this machine hashes package files with SHA-256.
//!
//! `cargo run --release --example syncdb_bench -- DIR` writes 15,000 `desc` files the way
//! repo-add lays them out (`NAME-VERSION/desc`) under `DIR/syncdb-bench/`, has bsdtar make
//! them a gzip database (and a plain tar one), then prints: the median of 5 loads of each,
//! the index's heap size, VmRSS and VmHWM from /proc/self/status before and after, and the
//! SHA-256 rate over a 256 MiB buffer. It removes what it wrote when it is done.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use pacserve::syncdb::{Index, load};
use sha2::{Digest, Sha256};

/// Packages in Arch's core + extra, about.
const PACKAGES: usize = 15_000;
const RUNS: usize = 5;
const SHA_BYTES: usize = 256 * 1024 * 1024;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: syncdb_bench DIR (a directory to write about 70 MB of scratch files in)");
        return ExitCode::from(2);
    };
    match run(&dir.join("syncdb-bench")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("syncdb_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(work: &Path) -> Result<(), String> {
    let _ = fs::remove_dir_all(work);
    let tree = work.join("db");
    fs::create_dir_all(&tree).map_err(|e| format!("mkdir {}: {e}", tree.display()))?;
    let result = measure(work, &tree);
    let _ = fs::remove_dir_all(work);
    result
}

fn measure(work: &Path, tree: &Path) -> Result<(), String> {
    let started = Instant::now();
    let (folders, desc_bytes) = write_descs(tree)?;
    let gz = work.join("bench.db.tar.gz");
    let tar = work.join("bench.db.tar");
    for (db, flag) in [(&gz, "-czf"), (&tar, "-cf")] {
        let ran = Command::new("bsdtar")
            .arg(flag)
            .arg(db)
            .arg("-C")
            .arg(tree)
            .args(&folders)
            .status()
            .map_err(|e| format!("bsdtar: {e}"))?;
        if !ran.success() {
            return Err(format!("bsdtar {flag} failed: {ran}"));
        }
    }
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "database: {PACKAGES} packages, desc files {:.1} MB, gzip {:.2} MB, tar {:.1} MB \
         (made in {:.1} s)",
        mb(desc_bytes),
        mb(size(&gz)),
        mb(size(&tar)),
        started.elapsed().as_secs_f64()
    );

    let before = status();
    // The first load, kept: what a daemon that loads its databases once holds.
    let index: Index = load(&gz).map_err(|e| e.to_string())?;
    let after_one = status();
    for (name, db) in [("gzip", &gz), ("plain tar", &tar)] {
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            let again = load(db).map_err(|e| e.to_string())?;
            times.push(t.elapsed());
            if again != index {
                return Err(format!(
                    "{name}: a different index ({again:?} vs {index:?})"
                ));
            }
        }
        times.sort();
        println!(
            "load {name}: median {} of {RUNS} (min {}, max {})",
            ms(times[RUNS / 2]),
            ms(times[0]),
            ms(times[RUNS - 1])
        );
    }
    let after_all = status();
    println!(
        "index: {} entries, heap {:.2} MiB ({:.0} bytes a package)",
        index.len(),
        index.heap_bytes() as f64 / (1024.0 * 1024.0),
        index.heap_bytes() as f64 / index.len() as f64
    );
    println!("memory before loading: {before}");
    println!("after the first load, its index kept: {after_one}");
    println!("after {} more loads and drops: {after_all}", 2 * RUNS);
    drop(index);

    let mut buf = vec![0u8; SHA_BYTES];
    fill_pseudo_random(&mut buf);
    let t = Instant::now();
    let digest = Sha256::digest(&buf);
    let took = t.elapsed();
    println!(
        "sha256: {SHA_BYTES} bytes in {} = {:.0} MB/s (digest starts {:02x}{:02x})",
        ms(took),
        SHA_BYTES as f64 / 1e6 / took.as_secs_f64(),
        digest[0],
        digest[1]
    );
    Ok(())
}

/// The desc files, and the folder names in the order repo-add's `*` would give them.
fn write_descs(tree: &Path) -> Result<(Vec<String>, u64), String> {
    let mut rng = Rng(0x5eed);
    let mut folders = Vec::with_capacity(PACKAGES);
    let mut total = 0u64;
    let mut seen = std::collections::HashSet::new();
    while folders.len() < PACKAGES {
        let name = package_name(&mut rng);
        if !seen.insert(name.clone()) {
            continue;
        }
        let version = version(&mut rng);
        let arch = if rng.below(100) < 15 { "any" } else { "x86_64" };
        let desc = desc(&mut rng, &name, &version, arch);
        let folder = format!("{name}-{version}");
        let d = tree.join(&folder);
        fs::create_dir(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        fs::write(d.join("desc"), &desc).map_err(|e| format!("write desc: {e}"))?;
        total += desc.len() as u64;
        folders.push(folder);
    }
    folders.sort();
    Ok((folders, total))
}

const SYLLABLES: &[&str] = &[
    "lib", "py", "gtk", "qt", "x", "font", "kde", "gnome", "perl", "ruby", "node", "rust", "go",
    "java", "sdl", "gst", "vulkan", "mesa", "wayland", "pulse", "pipe", "sys", "net", "ssl", "xml",
    "json", "yaml", "http", "tls", "zip", "z", "lz", "core", "utils", "tools", "kit", "media",
    "audio", "video", "image", "doc", "dev", "data", "plugins", "base", "gl",
];
const PREFIXES: &[&str] = &[
    "", "", "", "python-", "perl-", "haskell-", "ruby-", "lib32-",
];

fn package_name(rng: &mut Rng) -> String {
    let mut s = PREFIXES[rng.below(PREFIXES.len() as u64) as usize].to_string();
    for i in 0..1 + rng.below(3) {
        if i > 0 && rng.below(2) == 0 {
            s.push('-');
        }
        s.push_str(SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize]);
    }
    if rng.below(4) == 0 {
        let _ = write!(s, "{}", rng.below(10));
    }
    s
}

fn version(rng: &mut Rng) -> String {
    let epoch = if rng.below(20) == 0 {
        format!("{}:", 1 + rng.below(3))
    } else {
        String::new()
    };
    let mut v = format!("{epoch}{}.{}", rng.below(30), rng.below(100));
    if rng.below(2) == 0 {
        let _ = write!(v, ".{}", rng.below(40));
    }
    let _ = write!(v, "-{}", 1 + rng.below(5));
    v
}

fn hex(rng: &mut Rng, bytes: usize) -> String {
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&rng.next().to_le_bytes());
    let digest = Sha256::digest(seed);
    digest
        .iter()
        .cycle()
        .take(bytes)
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A desc with the keys and sizes of an Arch package's (no %PGPSIG%: pacman 6.1's repo-add
/// leaves it out by default).
fn desc(rng: &mut Rng, name: &str, version: &str, arch: &str) -> String {
    // Package sizes spread from 5 KB to 200 MB, most between 50 KB and 5 MB.
    let csize = (5_000.0 * (40_000f64).powf(rng.unit() * rng.unit().sqrt())) as u64;
    let isize = csize * (2 + rng.below(4));
    let mut d = String::with_capacity(1024);
    let _ = write!(
        d,
        "%FILENAME%\n{name}-{version}-{arch}.pkg.tar.zst\n\n%NAME%\n{name}\n\n\
         %BASE%\n{name}\n\n%VERSION%\n{version}\n\n\
         %DESC%\nA {} library and tools for {} things, with extra words to read\n\n\
         %CSIZE%\n{csize}\n\n%ISIZE%\n{isize}\n\n%MD5SUM%\n{}\n\n%SHA256SUM%\n{}\n\n\
         %URL%\nhttps://example.org/projects/{name}\n\n%LICENSE%\nGPL-2.0-or-later\n\n\
         %ARCH%\n{arch}\n\n%BUILDDATE%\n{}\n\n\
         %PACKAGER%\nSome Packager <packager@archlinux.org>\n\n",
        SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize],
        SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize],
        hex(rng, 16),
        hex(rng, 32),
        1_700_000_000 + rng.below(50_000_000),
    );
    for (key, most) in [("DEPENDS", 12), ("OPTDEPENDS", 4), ("MAKEDEPENDS", 6)] {
        let n = rng.below(most + 1);
        if n == 0 {
            continue;
        }
        let _ = writeln!(d, "%{key}%");
        for _ in 0..n {
            d.push_str(&package_name(rng));
            if key == "OPTDEPENDS" {
                d.push_str(": for optional support of something");
            } else if rng.below(4) == 0 {
                d.push_str(">=1.2");
            }
            d.push('\n');
        }
        d.push('\n');
    }
    d
}

/// splitmix64: the same database on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn fill_pseudo_random(buf: &mut [u8]) {
    let mut rng = Rng(7);
    for chunk in buf.chunks_mut(8) {
        let v = rng.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// `VmRSS … VmHWM …` of this process, from /proc/self/status.
fn status() -> String {
    let text = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map_or("?".to_string(), |v| v.trim().to_string())
    };
    format!("VmRSS {}, VmHWM {}", field("VmRSS:"), field("VmHWM:"))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
