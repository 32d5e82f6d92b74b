//! Tells the tests whether pacman 7.1 (what Arch users run) has been built beside the
//! repository (`bash .ci/setup` builds it into target/pacman-7.1.0 from its source tarball):
//! the tests that drive it are ignored, saying why, when it has not. Nothing in pacserve
//! itself depends on this.
//!
//! Release builds abort on panic (Cargo.toml), so nothing unwinds: when rust-lld links
//! them, as it does the board builds (.cargo/config.toml), the unwind tables are left out
//! (cross/no-unwind-tables.ld). On aarch64 they were 147 KiB of the 1 MiB budget; a panic
//! still prints its message, without a backtrace.

fn main() {
    let pacman7 = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("pacman-7.1.0")
        .join("build")
        .join("pacman");
    println!("cargo::rustc-check-cfg=cfg(pacman7)");
    println!("cargo::rerun-if-changed={}", pacman7.display());
    if pacman7.is_file() {
        println!("cargo::rustc-cfg=pacman7");
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("cross")
        .join("no-unwind-tables.ld");
    println!("cargo::rerun-if-changed={}", script.display());
    // The release profile is the one that sets panic = "abort" (Cargo.toml).
    let aborts = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    // rust-lld links the board builds (.cargo/config.toml); gcc's crtbegin for musl
    // refers to .eh_frame, so other linkers keep the tables.
    let lld = std::env::var("RUSTC_LINKER").is_ok_and(|l| l.ends_with("rust-lld"));
    if aborts && lld {
        println!("cargo::rustc-link-arg-bins=-T{}", script.display());
    }
}
