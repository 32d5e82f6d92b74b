//! Tells the tests whether pacman 7.1 (what Arch users run) has been built beside the
//! repository (`bash .ci/setup` builds it into target/pacman-7.1.0 from its source tarball):
//! the tests that drive it are ignored, saying why, when it has not. Nothing in pacserve
//! itself depends on this.

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
}
