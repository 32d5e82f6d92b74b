//! What the hub pulls next, pure: from the peers' `/info` listings, the package files it
//! lacks, of the architectures it collects, and only versions among the newest `keep` of
//! their package (counting what it holds: it never pulls what it would evict at once); a
//! package with its `.sig` from the same peer when that peer has one. Files that peers asked
//! the hub for and it lacked come first, oldest miss first; the rest in name order.

use crate::app::urls::{FileKind, classify};
use crate::hub::{order, package};
use crate::limits::HUB_MAX_FILE_BYTES;
use crate::names::valid_file;
use crate::version::vercmp;

/// The entries of an `/info` body (`NAME SIZE` lines, `#` comments): package files with a
/// size of 1 to [`HUB_MAX_FILE_BYTES`], anything else skipped (a peer's listing is as
/// hostile as any other input).
pub fn listing(body: &[u8]) -> impl Iterator<Item = (&str, u64)> {
    body.split(|b| *b == b'\n').filter_map(|line| {
        let (name, size) = std::str::from_utf8(line).ok()?.split_once(' ')?;
        let size: u64 = match size.bytes().all(|b| b.is_ascii_digit()) {
            true => size
                .parse()
                .ok()
                .filter(|n| (1..=HUB_MAX_FILE_BYTES).contains(n))?,
            false => return None,
        };
        (valid_file(name) && classify(name) == Some(FileKind::Package)).then_some((name, size))
    })
}

/// A file a peer lists: the peer is an index into the caller's list of peers, whose order
/// is the order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer<'a> {
    pub file: &'a str,
    pub size: u64,
    pub peer: usize,
}

/// One pull: a file from a peer, with the size of its `.sig` when it comes along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    pub file: String,
    pub size: u64,
    pub peer: usize,
    pub sig: Option<u64>,
    /// A peer asked the hub for it.
    pub missed: bool,
}

/// What the plan is made from.
pub struct Wants<'a> {
    /// The files the hub holds, sorted.
    pub held: &'a [&'a str],
    pub offers: &'a [Offer<'a>],
    /// Files peers asked for and the hub lacked, oldest first.
    pub missed: &'a [&'a str],
    /// Architectures collected besides `any`; empty: all.
    pub archs: &'a [String],
    pub keep: usize,
}

impl Wants<'_> {
    fn holds(&self, file: &str) -> bool {
        self.held.binary_search(&file).is_ok()
    }

    fn collects(&self, arch: &str) -> bool {
        self.archs.is_empty() || arch == "any" || self.archs.iter().any(|a| a == arch)
    }
}

/// The pulls to make, in order. `skip(peer, file)`: that peer is not to be asked for that
/// file now (it served a wrong copy, or the file is being pulled); `forgotten(file)`: the
/// hub evicted it for room, so only a peer's miss brings it back.
pub fn plan(
    w: &Wants<'_>,
    skip: impl Fn(usize, &str) -> bool,
    forgotten: impl Fn(&str) -> bool,
) -> Vec<Pull> {
    // Offers by file, then in the peers' order.
    let mut offers: Vec<&Offer<'_>> = w.offers.iter().collect();
    order::sort_by(&mut offers, |a, b| (a.file, a.peer).cmp(&(b.file, b.peer)));
    let offered = |file: &str, peer: usize| {
        offers
            .binary_search_by(|o| (o.file, o.peer).cmp(&(file, peer)))
            .ok()
            .map(|i| offers[i].size)
    };
    // The versions the hub keeps of each package: the newest `keep` of those it holds and
    // those offered.
    let mut versions: Vec<(&str, &str, &str)> = Vec::new();
    for f in w.held.iter().copied().chain(offers.iter().map(|o| o.file)) {
        match package::parse(f) {
            Some(p) if !p.sig && w.collects(p.arch) => versions.push((p.name, p.arch, p.version)),
            _ => {}
        }
    }
    let newest_first = |a: &(&str, &str, &str), b: &(&str, &str, &str)| {
        (a.0, a.1).cmp(&(b.0, b.1)).then(vercmp(b.2, a.2))
    };
    order::sort_by(&mut versions, newest_first);
    versions.dedup_by(|a, b| newest_first(a, b).is_eq());
    // Each version's rank among its package's: 0 for the newest.
    let mut rank = vec![0usize; versions.len()];
    for i in 1..versions.len() {
        if (versions[i - 1].0, versions[i - 1].1) == (versions[i].0, versions[i].1) {
            rank[i] = rank[i - 1] + 1;
        }
    }
    let top = |v: (&str, &str, &str)| {
        versions
            .binary_search_by(|x| newest_first(x, &v))
            .is_ok_and(|i| rank[i] < w.keep)
    };
    let mut pulls: Vec<Pull> = Vec::new();
    let mut i = 0;
    while i < offers.len() {
        let file = offers[i].file;
        let mut end = i;
        while end < offers.len() && offers[end].file == file {
            end += 1;
        }
        let missed = w.missed.contains(&file);
        let wanted = match package::parse(file) {
            _ if w.holds(file) || (forgotten(file) && !missed) => false,
            Some(p) if p.sig => {
                // A .sig alone: for a package the hub holds without it.
                package::signed(file).is_some_and(|pkg| w.holds(pkg))
            }
            Some(p) => w.collects(p.arch) && top((p.name, p.arch, p.version)),
            None => false,
        };
        let from = offers[i..end].iter().find(|o| !skip(o.peer, file));
        if let (true, Some(o)) = (wanted, from) {
            let sig = match package::signed(file) {
                Some(_) => None,
                None => {
                    let sig = format!("{file}.sig");
                    offered(&sig, o.peer).filter(|_| !w.holds(&sig))
                }
            };
            pulls.push(Pull {
                file: file.to_string(),
                size: o.size,
                peer: o.peer,
                sig,
                missed,
            });
        }
        i = end;
    }
    // Missed files first, oldest miss first; then by name (already).
    let miss_rank = |p: &Pull| w.missed.iter().position(|m| *m == p.file);
    order::sort_by(&mut pulls, |a, b| {
        let key = |p: &Pull| (miss_rank(p).is_none(), miss_rank(p));
        key(a).cmp(&key(b))
    });
    pulls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(file: &str, size: u64, peer: usize) -> Offer<'_> {
        Offer { file, size, peer }
    }

    fn files(p: &[Pull]) -> Vec<(&str, usize, Option<u64>)> {
        p.iter().map(|p| (p.file.as_str(), p.peer, p.sig)).collect()
    }

    #[test]
    fn reads_listings_and_skips_what_is_not_a_package() {
        let body = b"# pacserve info 1: NAME SIZE\n\
            a-1-1-any.pkg.tar.zst 10\n\
            a-1-1-any.pkg.tar.zst.sig 1\n\
            core.db 5\n\
            b-1-1-any.pkg.tar.zst.part 5\n\
            ../x-1-1-any.pkg.tar.zst 5\n\
            c-1-1-any.pkg.tar.zst 0\n\
            d-1-1-any.pkg.tar.zst -3\n\
            e-1-1-any.pkg.tar.zst 12 extra\n\
            \xff-1-1-any.pkg.tar.zst 3\n\
            f-1-1-any.pkg.tar.zst 99999999999999999999999\n\
            h-1-1-any.pkg.tar.zst 18446744073709551615\n\
            i-1-1-any.pkg.tar.zst 1099511627777\n\
            j-1-1-any.pkg.tar.zst 1099511627776\n\
            g-1-1-any.pkg.tar.zst 7";
        let got: Vec<(&str, u64)> = listing(body).collect();
        assert_eq!(
            got,
            [
                ("a-1-1-any.pkg.tar.zst", 10),
                ("a-1-1-any.pkg.tar.zst.sig", 1),
                // At most HUB_MAX_FILE_BYTES.
                ("j-1-1-any.pkg.tar.zst", 1 << 40),
                ("g-1-1-any.pkg.tar.zst", 7)
            ]
        );
    }

    #[test]
    fn lacking_files_of_collected_archs_come_with_their_sig() {
        let offers = [
            offer("a-1-1-x86_64.pkg.tar.zst", 10, 1),
            offer("a-1-1-x86_64.pkg.tar.zst.sig", 1, 1),
            offer("a-1-1-x86_64.pkg.tar.zst", 10, 0),
            offer("b-1-1-armv7h.pkg.tar.zst", 10, 0),
            offer("c-1-1-any.pkg.tar.zst", 10, 0),
            offer("held-1-1-any.pkg.tar.zst", 10, 0),
            offer("held-1-1-any.pkg.tar.zst.sig", 1, 0),
        ];
        let held = ["held-1-1-any.pkg.tar.zst"];
        let archs = vec!["x86_64".to_string()];
        let w = Wants {
            held: &held,
            offers: &offers,
            missed: &[],
            archs: &archs,
            keep: 2,
        };
        let p = plan(&w, |_, _| false, |_| false);
        // Peer 0 first for a, but only peer 1 has its .sig: the first peer is asked, with
        // no .sig to come along; b's architecture is not collected; held's .sig alone.
        assert_eq!(
            files(&p),
            [
                ("a-1-1-x86_64.pkg.tar.zst", 0, None),
                ("c-1-1-any.pkg.tar.zst", 0, None),
                ("held-1-1-any.pkg.tar.zst.sig", 0, None),
            ]
        );
        // Peer 0 to be skipped for a: peer 1, and with it the .sig.
        let p = plan(&w, |peer, f| peer == 0 && f.starts_with("a-"), |_| false);
        assert_eq!(files(&p)[0], ("a-1-1-x86_64.pkg.tar.zst", 1, Some(1)));
        // Every architecture.
        let all = Wants { archs: &[], ..w };
        assert_eq!(plan(&all, |_, _| false, |_| false).len(), 4);
    }

    #[test]
    fn only_the_newest_versions_and_misses_first() {
        let offers = [
            offer("p-1.0-1-x86_64.pkg.tar.zst", 10, 0),
            offer("p-1.0-2-x86_64.pkg.tar.zst", 10, 0),
            offer("p-2:0.9-1-x86_64.pkg.tar.zst", 10, 0),
            offer("q-1-1-x86_64.pkg.tar.zst", 10, 0),
            offer("z-1-1-x86_64.pkg.tar.zst", 10, 0),
        ];
        let w = Wants {
            held: &[],
            offers: &offers,
            missed: &["z-1-1-x86_64.pkg.tar.zst", "q-1-1-x86_64.pkg.tar.zst"],
            archs: &[],
            keep: 2,
        };
        let p = plan(&w, |_, _| false, |_| false);
        assert_eq!(
            files(&p),
            [
                ("z-1-1-x86_64.pkg.tar.zst", 0, None),
                ("q-1-1-x86_64.pkg.tar.zst", 0, None),
                ("p-1.0-2-x86_64.pkg.tar.zst", 0, None),
                ("p-2:0.9-1-x86_64.pkg.tar.zst", 0, None),
            ]
        );
        assert!(p[0].missed && !p[2].missed);
        // Held versions count: with 2:0.9-1 and 1.0-2 held, 1.0-1 is never pulled.
        let held = ["p-1.0-2-x86_64.pkg.tar.zst", "p-2:0.9-1-x86_64.pkg.tar.zst"];
        let w2 = Wants {
            held: &held,
            missed: &[],
            ..w
        };
        assert_eq!(plan(&w2, |_, _| false, |_| false).len(), 2, "q and z only");
        // A file evicted for room comes back only when missed.
        let p = plan(
            &w,
            |_, _| false,
            |f| f.starts_with('q') || f.starts_with('p'),
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[1].file, "q-1-1-x86_64.pkg.tar.zst");
    }
}
