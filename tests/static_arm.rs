//! The static release binaries: both musl targets build, are static (no interpreter, no
//! shared libraries) for the right machine, the aarch64 one fits the 1 MiB budget, and it
//! really works: under `qemu-aarch64-static` it serves a cached package to the real pacman,
//! redirects databases to the mirror, and starts with multicast discovery even though
//! qemu-user rejects `IP_MULTICAST_IF`.
//!
//! Each target is built once per test process (`cargo build --release --target T`, bounded),
//! shared by the tests through a `OnceLock`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

const X86_64: &str = "x86_64-unknown-linux-musl";
const AARCH64: &str = "aarch64-unknown-linux-musl";
/// Longest one release build may take (LTO, one codegen unit, a cold cache).
const BUILD_LIMIT: Duration = Duration::from_secs(15 * 60);
/// The stripped aarch64 binary's budget: it must fit small boards' flash comfortably.
const AARCH64_BUDGET: u64 = 1024 * 1024;

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const SHT_SYMTAB: u32 = 2;

// ---------------------------------------------------------------------------------------------
// Building

static BUILT_X86_64: OnceLock<Result<PathBuf, String>> = OnceLock::new();
static BUILT_AARCH64: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The release binary for `target`, built at most once per test process.
fn built(target: &str) -> PathBuf {
    let cell = match target {
        X86_64 => &BUILT_X86_64,
        AARCH64 => &BUILT_AARCH64,
        _ => panic!("no build cell for {target}"),
    };
    match cell.get_or_init(|| build(target)) {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// `cargo build --release --target T` in the crate's directory; the executable's path, read
/// from cargo's own JSON messages (so `CARGO_TARGET_DIR` and friends are honoured).
fn build(target: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let ran = run_bounded(
        Command::new(cargo)
            .args(["build", "--release", "--target", target])
            .arg("--message-format=json-render-diagnostics")
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        BUILD_LIMIT,
    );
    if !ran.success() {
        return Err(format!(
            "cargo build --release --target {target} failed ({:?}, timed out: {}):\n{}",
            ran.status, ran.timed_out, ran.stderr
        ));
    }
    ran.stdout
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|l| {
            let rest = &l[l.find("\"executable\":\"")? + "\"executable\":\"".len()..];
            Some(PathBuf::from(&rest[..rest.find('"')?]))
        })
        .find(|p| p.file_name().is_some_and(|n| n == "pacserve"))
        .ok_or_else(|| {
            format!(
                "cargo named no pacserve executable for {target}:\n{}",
                ran.stdout
            )
        })
}

// ---------------------------------------------------------------------------------------------
// ELF, read by hand (64-bit little-endian only: both targets are)

/// What makes a binary static and stripped, read from its ELF headers.
#[derive(Debug)]
struct ElfFacts {
    machine: u16,
    /// The program interpreter (PT_INTERP), e.g. `/lib64/ld-linux-x86-64.so.2`.
    interp: Option<String>,
    /// A PT_DYNAMIC segment exists (static-pie binaries have one, for self-relocation).
    dynamic: bool,
    /// DT_NEEDED entries: shared libraries the binary asks for.
    needed: usize,
    /// A full symbol table (.symtab) is present: not stripped.
    symtab: bool,
}

fn read_elf(path: &Path) -> ElfFacts {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    parse_elf(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_elf(b: &[u8]) -> Result<ElfFacts, String> {
    let slice = |off: u64, len: usize| -> Result<&[u8], String> {
        usize::try_from(off)
            .ok()
            .and_then(|o| b.get(o..o.checked_add(len)?))
            .ok_or_else(|| format!("truncated ELF: {len} bytes at {off}"))
    };
    let u16_at = |off: u64| slice(off, 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32_at = |off: u64| slice(off, 4).map(|s| u32::from_le_bytes(s.try_into().unwrap()));
    let u64_at = |off: u64| slice(off, 8).map(|s| u64::from_le_bytes(s.try_into().unwrap()));

    if slice(0, 4)? != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    let ident = slice(4, 2)?;
    if ident != [2, 1] {
        return Err(format!(
            "not 64-bit little-endian (class, data = {ident:?})"
        ));
    }
    let machine = u16_at(18)?;
    let phoff = u64_at(32)?;
    let shoff = u64_at(40)?;
    let phentsize = u64::from(u16_at(54)?);
    let phnum = u64::from(u16_at(56)?);
    let shentsize = u64::from(u16_at(58)?);
    let shnum = u64::from(u16_at(60)?);

    let mut facts = ElfFacts {
        machine,
        interp: None,
        dynamic: false,
        needed: 0,
        symtab: false,
    };
    // phnum and shnum are u16: these loops are bounded.
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let p_type = u32_at(ph)?;
        let offset = u64_at(ph + 8)?;
        let filesz = u64_at(ph + 32)?;
        match p_type {
            PT_INTERP => {
                let raw = slice(offset, filesz as usize)?;
                let text = String::from_utf8_lossy(raw);
                facts.interp = Some(text.trim_end_matches('\0').to_string());
            }
            PT_DYNAMIC => {
                facts.dynamic = true;
                for j in 0..filesz / 16 {
                    match u64_at(offset + j * 16)? {
                        DT_NULL => break,
                        DT_NEEDED => facts.needed += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    for i in 0..shnum {
        if u32_at(shoff + i * shentsize + 4)? == SHT_SYMTAB {
            facts.symtab = true;
        }
    }
    Ok(facts)
}

fn assert_static(path: &Path, machine: u16) -> ElfFacts {
    let elf = read_elf(path);
    assert_eq!(elf.machine, machine, "{}: e_machine", path.display());
    assert_eq!(
        elf.interp,
        None,
        "{}: has a program interpreter (dynamically linked)",
        path.display()
    );
    assert_eq!(
        elf.needed,
        0,
        "{}: asks for shared libraries (DT_NEEDED) in its dynamic section",
        path.display()
    );
    assert!(
        !elf.symtab,
        "{}: not stripped (.symtab present)",
        path.display()
    );
    elf
}

// ---------------------------------------------------------------------------------------------
// pacserve under qemu

/// A mirror with repo `core` (database and `cachedpkg`), and pacserve's cache holding it.
struct World {
    host: Host,
    repo: Repo,
}

impl World {
    fn new(tag: &str) -> World {
        let repo = Repo::new(tag, &[("cachedpkg", 300_000)]);
        let host = repo.host("server");
        host.hold(repo.pkg("cachedpkg"));
        World { host, repo }
    }

    fn pkg(&self) -> &Pkg {
        self.repo.pkg("cachedpkg")
    }

    /// `bin` under qemu with this world's pacman.conf and `extra` arguments.
    fn start(&self, bin: &Path, extra: &[&str]) -> Result<Pacserve, String> {
        self.host.pacserve().under_qemu(bin).args(extra).try_start()
    }

    /// The raw client gets the cached package byte-identical and a 307 for the database.
    fn check_served(&self, ps: &Pacserve) {
        let r = get(ps.port(), &self.pkg().request_path());
        assert_eq!(r.status, 200, "{}\n{}", r.head, ps.log());
        assert_same_bytes(&r.body, &self.pkg().bytes, "cached package");
        let r = get(ps.port(), "/request/core/x86_64/core.db");
        assert_eq!(r.status, 307, "{}\n{}", r.head, ps.log());
        assert_eq!(
            r.header("location"),
            Some(&*self.repo.mirror.url("/core/os/x86_64/core.db")),
            "{}",
            r.head
        );
        assert_eq!(
            self.repo.mirror.served(&self.pkg().file),
            0,
            "the package came from the mirror:\n{}",
            self.repo.mirror.dump()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn elf_reader_sees_the_dynamic_unstripped_debug_binary() {
    // The host (glibc, debug) build: proves each check of `assert_static` can fail.
    let elf = read_elf(Path::new(bin()));
    assert_eq!(elf.machine, EM_X86_64);
    assert!(
        elf.interp.as_deref().is_some_and(|i| i.contains("ld-")),
        "{elf:?}"
    );
    assert!(elf.dynamic && elf.needed > 0, "{elf:?}");
    assert!(elf.symtab, "{elf:?}");
    assert!(parse_elf(b"\x7fELF").is_err());
    assert!(parse_elf(b"#!/bin/sh\n").is_err());
}

#[test]
fn x86_64_musl_release_binary_is_static() {
    let bin = built(X86_64);
    assert_static(&bin, EM_X86_64);
}

#[test]
fn aarch64_musl_release_binary_is_static_stripped_and_within_1_mib() {
    let bin = built(AARCH64);
    assert_static(&bin, EM_AARCH64);
    let size = fs::metadata(&bin).expect("stat binary").len();
    assert!(
        size <= AARCH64_BUDGET,
        "{}: {size} bytes, budget {AARCH64_BUDGET}",
        bin.display()
    );
}

both_pacmans! {
fn aarch64_binary_under_qemu_serves_pacman_from_cache_and_redirects_the_db() {
    let bin = built(AARCH64);
    let w = World::new("qemu");
    let ps = w.start(&bin, &[]).unwrap_or_else(|e| panic!("{e}"));
    w.check_served(&ps);

    // The real pacman: database through the redirect, package from pacserve's cache.
    let client = PacmanClient::new("core", &[ps.url("/request/$repo/$arch")]);
    let ran = client.sync();
    assert!(ran.success(), "pacman -Sy: {}\n{}", ran.text(), ps.log());
    let ran = client.download("cachedpkg");
    assert!(ran.success(), "pacman -Sw: {}\n{}", ran.text(), ps.log());
    let got = client
        .cached(&w.pkg().file)
        .expect("package in pacman's cache");
    assert!(
        got == w.pkg().bytes,
        "pacman's copy differs from the cached package"
    );
    assert!(
        w.repo.mirror.served("core.db") >= 1,
        "the database did not come from the mirror:\n{}",
        w.repo.mirror.dump()
    );
    assert_eq!(
        w.repo.mirror.served(&w.pkg().file),
        0,
        "the package came from the mirror:\n{}",
        w.repo.mirror.dump()
    );
}
}

#[test]
fn aarch64_binary_under_qemu_starts_with_multicast_despite_enoprotoopt() {
    let bin = built(AARCH64);
    let w = World::new("qemu-mc");
    let port = free_udp_port().to_string();
    let args = [
        "--multicast",
        "--multicast-interface",
        "127.0.0.1",
        "--multicast-port",
        &port,
    ];
    let ps = match w.start(&bin, &args) {
        Ok(ps) => ps,
        Err(e) if e.contains("unknown option") => panic!(
            "the aarch64 binary does not accept {args:?} yet (multicast discovery missing?): {e}"
        ),
        Err(e) => panic!("with {args:?}: {e}"),
    };
    w.check_served(&ps);
    let log = ps.log();
    assert!(
        log.lines().any(|l| l.contains("warning")),
        "no warning about the multicast option qemu rejects; stderr:\n{log}"
    );
    assert!(
        log.contains("multicast"),
        "multicast discovery not mentioned in the log; stderr:\n{log}"
    );
}
