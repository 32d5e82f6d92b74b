//! Before any integration test: does every outside tool the suite relies on really work?
//!
//! Each tool is run for real (repo-add on a package made on the spot, a network namespace
//! added and removed, ...), not just looked up on PATH: a fresh machine once had `repo-add`
//! but not the makepkg libraries it sources, and 16 tests failed with a confusing message.
//! A broken tool is one line naming it, the Debian package that provides it, and what it said.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use super::process::{Ran, try_run_bounded};
use super::tempdir::TempDir;

/// Longest one check may take (chromium's first start is the slowest, about a second).
const CHECK_LIMIT: Duration = Duration::from_secs(30);

/// One outside tool: what it is called, the Debian packages that provide it, and how to see
/// that it works.
struct Tool {
    name: &'static str,
    packages: &'static str,
    check: fn(&Path) -> Result<(), String>,
}

const TOOLS: &[Tool] = &[
    Tool {
        name: "pacman",
        packages: "pacman-package-manager",
        check: |_| version(Command::new("pacman").arg("--version"), "Pacman v"),
    },
    Tool {
        name: "pacman-key",
        packages: "pacman-package-manager",
        check: |_| version(Command::new("pacman-key").arg("--version"), "pacman-key"),
    },
    Tool {
        name: "bsdtar",
        packages: "libarchive-tools",
        check: |_| version(Command::new("bsdtar").arg("--version"), "bsdtar"),
    },
    Tool {
        name: "zstd",
        packages: "zstd",
        check: |_| version(Command::new("zstd").arg("--version"), "Zstandard"),
    },
    Tool {
        name: "repo-add",
        packages: "pacman-package-manager and makepkg (repo-add sources /usr/share/makepkg/)",
        check: repo_add_works,
    },
    Tool {
        name: "gpg",
        packages: "gpg",
        check: |_| version(Command::new("gpg").arg("--version"), "gpg (GnuPG)"),
    },
    Tool {
        name: "qemu-aarch64-static",
        packages: "qemu-user-static",
        check: |_| version(Command::new("qemu-aarch64-static").arg("--version"), "qemu"),
    },
    Tool {
        name: "ip netns",
        packages: "iproute2 (and root)",
        check: |_| netns_works(),
    },
    Tool {
        name: "pacman 7.1 (target/pacman-7.1.0)",
        packages: "meson ninja-build pkg-config gcc libarchive-dev libcurl4-openssl-dev \
                   libgpgme-dev libssl-dev, built by bash .ci/setup",
        check: |_| {
            // Not built: its tests are ignored, and say so; built: it must really run.
            let bin = super::pacman::pacman7_dir().join("build/pacman");
            if !bin.exists() {
                return Ok(());
            }
            version(Command::new(&bin).arg("--version"), "Pacman v7.1.0")
        },
    },
    Tool {
        name: "chromium",
        packages: "chromium",
        check: |_| version(Command::new("chromium").arg("--version"), "Chromium"),
    },
];

fn first_line(ran: &Ran) -> String {
    let text = ran.text();
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let line: String = line.chars().take(200).collect();
    if ran.timed_out {
        format!("no answer within {CHECK_LIMIT:?}")
    } else if line.is_empty() {
        format!("exit {:?} and no output", ran.code())
    } else {
        format!("exit {:?}: {line}", ran.code())
    }
}

fn run(cmd: &mut Command) -> Result<Ran, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    try_run_bounded(cmd.env("LC_ALL", "C"), CHECK_LIMIT)
        .map_err(|e| format!("cannot run {program}: {e}"))
}

/// The command exits 0 and its output contains `needle`.
fn version(cmd: &mut Command, needle: &str) -> Result<(), String> {
    let ran = run(cmd)?;
    if ran.success() && ran.text().contains(needle) {
        Ok(())
    } else {
        Err(first_line(&ran))
    }
}

/// A package built on the spot with bsdtar, then `repo-add` on it: the database must appear.
fn repo_add_works(dir: &Path) -> Result<(), String> {
    let stage = dir.join("stage");
    fs::create_dir_all(stage.join("usr/share/preflight")).map_err(|e| e.to_string())?;
    fs::write(stage.join("usr/share/preflight/payload"), b"preflight\n")
        .map_err(|e| e.to_string())?;
    fs::write(
        stage.join(".PKGINFO"),
        "pkgname = preflight\npkgbase = preflight\npkgver = 1.0-1\npkgdesc = preflight\n\
         url = http://example.invalid/\nbuilddate = 1700000000\npackager = tests <t@example.invalid>\n\
         size = 10\narch = x86_64\nlicense = GPL-2.0-or-later\n",
    )
    .map_err(|e| e.to_string())?;
    let pkg = dir.join("preflight-1.0-1-x86_64.pkg.tar.zst");
    let ran = run(Command::new("bsdtar")
        .arg("--zstd")
        .arg("-cf")
        .arg(&pkg)
        .arg("-C")
        .arg(&stage)
        .args([".PKGINFO", "usr"]))?;
    if !ran.success() {
        return Err(format!(
            "making a package with bsdtar: {}",
            first_line(&ran)
        ));
    }
    let db = dir.join("preflight.db.tar.gz");
    let ran = run(Command::new("repo-add").arg("-q").arg(&db).arg(&pkg))?;
    if !ran.success() {
        return Err(first_line(&ran));
    }
    if !db.is_file() {
        return Err(format!("exit 0 but no {}", db.display()));
    }
    Ok(())
}

/// Add a network namespace and remove it again.
fn netns_works() -> Result<(), String> {
    let name = format!("pspre-{}", std::process::id());
    let ran = run(Command::new("ip").args(["netns", "add", &name]))?;
    if !ran.success() {
        return Err(format!("ip netns add: {}", first_line(&ran)));
    }
    let ran = run(Command::new("ip").args(["netns", "del", &name]))?;
    if !ran.success() {
        return Err(format!("ip netns del: {}", first_line(&ran)));
    }
    Ok(())
}

/// Every tool checked (at once, in parallel): one line per broken tool; empty when all work.
pub fn problems() -> Vec<String> {
    let dir = TempDir::new("preflight");
    thread::scope(|s| {
        let checks: Vec<_> = TOOLS
            .iter()
            .map(|tool| {
                let sub = dir.mkdir(tool.name.replace(' ', "-"));
                s.spawn(move || (tool, (tool.check)(&sub)))
            })
            .collect();
        checks
            .into_iter()
            .filter_map(|c| match c.join() {
                Ok((_, Ok(()))) => None,
                Ok((tool, Err(why))) => Some(format!(
                    "preflight: {} does not work (Debian package: {}): {why}",
                    tool.name, tool.packages
                )),
                Err(_) => Some("preflight: a check panicked".to_string()),
            })
            .collect()
    })
}

/// Checked once per test process; every harness entry point that needs an outside tool calls
/// this first, so a broken machine fails with the list of what to install, not with a
/// confusing error deep inside a test.
pub fn require() {
    static RESULT: OnceLock<Vec<String>> = OnceLock::new();
    let problems = RESULT.get_or_init(problems);
    if !problems.is_empty() {
        panic!(
            "this machine cannot run the integration tests (run `sudo bash .ci/setup`):\n{}",
            problems.join("\n")
        );
    }
}
