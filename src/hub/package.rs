//! What a package file's name says, pure: `NAME-PKGVER-PKGREL-ARCH.pkg.tar[.EXT]` (or its
//! `.sig`) → the package name, its version (`[EPOCH:]PKGVER-PKGREL`, ordered by
//! [`crate::version::vercmp`]) and its architecture. pacman names every package file so
//! (`makepkg`'s `PKGDEST` naming); package names hold no `-`-separated digits-first parts
//! that would confuse this, since pkgver and pkgrel may hold no `-`.

/// The parts of a package file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PkgName<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub arch: &'a str,
    /// The name is the package's `.sig`.
    pub sig: bool,
}

impl<'a> PkgName<'a> {
    /// What the versions of one package are grouped by: the name and the architecture.
    pub fn group(&self) -> (&'a str, &'a str) {
        (self.name, self.arch)
    }
}

/// The parts of `file`, None when it is not named like a package.
pub fn parse(file: &str) -> Option<PkgName<'_>> {
    let (base, sig) = match file.strip_suffix(".sig") {
        Some(base) => (base, true),
        None => (file, false),
    };
    let stem = &base[..base.rfind(".pkg.tar")?];
    let (rest, arch) = stem.rsplit_once('-')?;
    let (rest, rel) = rest.rsplit_once('-')?;
    let (name, ver) = rest.rsplit_once('-')?;
    if [name, ver, rel, arch].iter().any(|p| p.is_empty()) {
        return None;
    }
    Some(PkgName {
        name,
        version: &stem[name.len() + 1..stem.len() - arch.len() - 1],
        arch,
        sig,
    })
}

/// The package a `.sig` belongs to (None for a name that is not a `.sig`).
pub fn signed(file: &str) -> Option<&str> {
    file.strip_suffix(".sig")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_package_names() {
        type Parts<'a> = Option<(&'a str, &'a str, &'a str, bool)>;
        let cases: &[(&str, Parts<'_>)] = &[
            (
                "zstd-1.5.5-1-x86_64.pkg.tar.zst",
                Some(("zstd", "1.5.5-1", "x86_64", false)),
            ),
            (
                "vim-2:9.0.1-1-x86_64.pkg.tar.zst.sig",
                Some(("vim", "2:9.0.1-1", "x86_64", true)),
            ),
            (
                "lib32-gcc-libs-13.2.1+r2-1-x86_64.pkg.tar.xz",
                Some(("lib32-gcc-libs", "13.2.1+r2-1", "x86_64", false)),
            ),
            (
                "python-six-1.16.0-3-any.pkg.tar",
                Some(("python-six", "1.16.0-3", "any", false)),
            ),
            (
                "linux-aarch64-6.1-2.1-aarch64.pkg.tar.xz",
                Some(("linux-aarch64", "6.1-2.1", "aarch64", false)),
            ),
            ("x-1-any.pkg.tar.zst", None),
            ("-1-1-any.pkg.tar.zst", None),
            ("x--1-any.pkg.tar.zst", None),
            ("x-1-1-.pkg.tar.zst", None),
            ("core.db", None),
            ("x-1-1-any.tar.zst", None),
        ];
        for (file, want) in cases {
            let got = parse(file).map(|p| (p.name, p.version, p.arch, p.sig));
            assert_eq!(got, *want, "{file}");
        }
        assert_eq!(signed("a.pkg.tar.zst.sig"), Some("a.pkg.tar.zst"));
        assert_eq!(signed("a.pkg.tar.zst"), None);
    }
}
