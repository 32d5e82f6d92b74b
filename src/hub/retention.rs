//! Which of the hub's files go, pure. A package and its `.sig` are one unit: they go
//! together or not at all, and a unit with a file being sent stays.
//!
//! 1. Of each package name and architecture, the versions beyond the newest `keep` (by
//!    pacman's version order) go.
//! 2. Over the byte budget, units go in this order until the rest (and what is about to be
//!    pulled) fits: the older versions first (the oldest of a package before its newer
//!    ones, then the least recently used), then the newest versions, least recently used
//!    first. "Used" is the later of when the unit was last served and when it was pulled.
//!    Room is made for a file about to be pulled only if it then fits, beside the pulls
//!    under way; otherwise it is not pulled, and only the rest must fit.
//! 3. A `.sig` whose package is gone goes.

use std::cmp::Reverse;

use crate::hub::{order, package};
use crate::version::vercmp;

/// One file the hub holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held<'a> {
    pub file: &'a str,
    pub size: u64,
    /// When it was last served or pulled (nanoseconds since the epoch).
    pub used: u64,
    /// Being sent right now.
    pub busy: bool,
}

/// Why a unit goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Beyond the newest `--hub-keep` versions.
    Versions,
    /// Over `--hub-max-size`.
    Budget,
    /// A `.sig` without its package.
    Orphan,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Versions => "versions",
            Why::Budget => "budget",
            Why::Orphan => "orphan",
        }
    }
}

/// One unit to remove: its files (the `.sig` first), their bytes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evict<'a> {
    pub files: Vec<&'a str>,
    pub bytes: u64,
    pub why: Why,
}

struct Unit<'a> {
    files: Vec<&'a str>,
    bytes: u64,
    used: u64,
    busy: bool,
    /// 0 for the newest version of its package, 1 for the one before, ...
    rank: usize,
    orphan: bool,
}

/// What goes from `held` with `keep` versions per package, at most `max_bytes` (when set)
/// held once `incoming` more bytes arrive beside `under_way` bytes of pulls under way;
/// in the order above.
pub fn evictions<'a>(
    held: &[Held<'a>],
    keep: usize,
    max_bytes: Option<u64>,
    incoming: u64,
    under_way: u64,
) -> Vec<Evict<'a>> {
    let mut units: Vec<Unit<'a>> = Vec::new();
    let unit = |h: &Held<'a>, orphan| Unit {
        files: vec![h.file],
        bytes: h.size,
        used: h.used,
        busy: h.busy,
        rank: 0,
        orphan,
    };
    for h in held {
        if package::signed(h.file).is_none() {
            units.push(unit(h, false));
        }
    }
    // By name, to find each .sig's package.
    order::sort_by(&mut units, |a, b| a.files[0].cmp(b.files[0]));
    let packages = units.len();
    for h in held {
        let Some(pkg) = package::signed(h.file) else {
            continue;
        };
        match units[..packages].binary_search_by(|u| u.files[u.files.len() - 1].cmp(pkg)) {
            Ok(i) => {
                let u = &mut units[i];
                u.files.insert(0, h.file);
                u.bytes += h.size;
                u.used = u.used.max(h.used);
                u.busy |= h.busy;
            }
            Err(_) => units.push(unit(h, true)),
        }
    }
    // Versions of one package, newest first; a name that is no package is a group alone.
    let key = |u: &Unit<'a>| {
        let f = u.files[u.files.len() - 1];
        package::parse(f).map_or((f, "", ""), |p| (p.name, p.arch, p.version))
    };
    order::sort_by(&mut units, |a, b| {
        let (a, b) = (key(a), key(b));
        (a.0, a.1).cmp(&(b.0, b.1)).then(vercmp(b.2, a.2))
    });
    let mut last: Option<((&str, &str), usize)> = None;
    for u in units.iter_mut() {
        if u.orphan {
            continue;
        }
        let (name, arch, _) = key(u);
        u.rank = match last {
            Some((group, rank)) if group == (name, arch) => rank + 1,
            _ => 0,
        };
        last = Some(((name, arch), u.rank));
    }
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for u in units {
        let why = match () {
            _ if u.busy => None,
            _ if u.orphan => Some(Why::Orphan),
            _ if u.rank >= keep => Some(Why::Versions),
            _ => None,
        };
        match why {
            Some(why) => out.push(Evict {
                files: u.files,
                bytes: u.bytes,
                why,
            }),
            None => kept.push(u),
        }
    }
    let Some(max) = max_bytes else {
        return out;
    };
    order::sort_by(&mut kept, |a, b| {
        budget_order(a)
            .cmp(&budget_order(b))
            .then(a.files.cmp(&b.files))
    });
    let mut bytes = 0;
    for u in &kept {
        bytes += u.bytes;
    }
    let (mut go, left) = over_budget(&kept, max, bytes + incoming);
    if left + under_way > max {
        // The file would not be pulled: evicting for it would leave less for nothing.
        go = over_budget(&kept, max, bytes).0;
    }
    for (i, u) in kept.into_iter().enumerate() {
        if go.contains(&i) {
            out.push(Evict {
                files: u.files,
                bytes: u.bytes,
                why: Why::Budget,
            });
        }
    }
    out
}

/// Which of `units` (by index, in their order) go until `total` bytes fit in `max`, those
/// being sent aside, and the bytes then left.
fn over_budget(units: &[Unit<'_>], max: u64, mut total: u64) -> (Vec<usize>, u64) {
    let mut go = Vec::new();
    for (i, u) in units.iter().enumerate() {
        if total <= max {
            break;
        }
        if !u.busy {
            total -= u.bytes;
            go.push(i);
        }
    }
    (go, total)
}

/// Older versions before newest ones, the oldest first, then the least recently used.
fn budget_order(u: &Unit<'_>) -> (bool, Reverse<usize>, u64) {
    (u.rank == 0, Reverse(u.rank), u.used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(file: &str, size: u64, used: u64) -> Held<'_> {
        Held {
            file,
            size,
            used,
            busy: false,
        }
    }

    fn gone<'a>(e: &[Evict<'a>]) -> Vec<(Vec<&'a str>, &'static str)> {
        e.iter()
            .map(|e| (e.files.clone(), e.why.as_str()))
            .collect()
    }

    #[test]
    fn keeps_the_newest_versions_by_vercmp() {
        let held = [
            h("p-1.0-1-x86_64.pkg.tar.zst", 10, 3),
            h("p-1.0-1-x86_64.pkg.tar.zst.sig", 1, 3),
            h("p-1.0-2-x86_64.pkg.tar.zst", 10, 1),
            h("p-2:0.9-1-x86_64.pkg.tar.zst", 10, 2),
            // Another architecture is another package.
            h("p-0.1-1-aarch64.pkg.tar.zst", 10, 0),
        ];
        let e = evictions(&held, 2, None, 0, 0);
        assert_eq!(
            gone(&e),
            [(
                vec![
                    "p-1.0-1-x86_64.pkg.tar.zst.sig",
                    "p-1.0-1-x86_64.pkg.tar.zst"
                ],
                "versions"
            )]
        );
        assert_eq!(e[0].bytes, 11);
        assert_eq!(gone(&evictions(&held, 3, None, 0, 0)), []);
        let one = evictions(&held, 1, None, 0, 0);
        assert_eq!(one.len(), 2, "{one:?}");
        assert!(
            one.iter()
                .all(|e| !e.files.contains(&"p-2:0.9-1-x86_64.pkg.tar.zst"))
        );
        // A .sig whose package is gone, of a version between the others: it goes alone and
        // does not change the others' ranks.
        let mut with_orphan = held.to_vec();
        with_orphan.push(h("p-1.0-1.5-x86_64.pkg.tar.zst.sig", 1, 9));
        let e = evictions(&with_orphan, 2, None, 0, 0);
        assert_eq!(
            gone(&e),
            [
                (vec!["p-1.0-1.5-x86_64.pkg.tar.zst.sig"], "orphan"),
                (
                    vec![
                        "p-1.0-1-x86_64.pkg.tar.zst.sig",
                        "p-1.0-1-x86_64.pkg.tar.zst"
                    ],
                    "versions"
                ),
            ]
        );
    }

    #[test]
    fn over_budget_older_versions_go_first_then_the_least_recently_used() {
        let held = [
            h("a-1-1-any.pkg.tar.zst", 100, 50),
            h("a-2-1-any.pkg.tar.zst", 100, 10),
            h("b-1-1-any.pkg.tar.zst", 100, 5),
            h("c-1-1-any.pkg.tar.zst", 100, 1),
            h("c-1-1-any.pkg.tar.zst.sig", 1, 60),
            h("d-3-1-any.pkg.tar.zst", 100, 40),
            h("d-2-1-any.pkg.tar.zst", 100, 70),
            h("d-1-1-any.pkg.tar.zst", 100, 80),
        ];
        let order: Vec<&str> = evictions(&held, 5, Some(0), 0, 0)
            .iter()
            .map(|e| *e.files.last().unwrap())
            .collect();
        assert_eq!(
            order,
            [
                // The oldest of d (two versions back), then the older versions by use.
                "d-1-1-any.pkg.tar.zst",
                "a-1-1-any.pkg.tar.zst",
                "d-2-1-any.pkg.tar.zst",
                // Then the newest versions, least recently used first: b (5), a-2 (10),
                // d-3 (40), c (its .sig was used at 60).
                "b-1-1-any.pkg.tar.zst",
                "a-2-1-any.pkg.tar.zst",
                "d-3-1-any.pkg.tar.zst",
                "c-1-1-any.pkg.tar.zst",
            ]
        );
        // Just enough goes: 701 held, 451 allowed, 50 incoming: three units.
        let e = evictions(&held, 5, Some(451), 50, 0);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e.iter().all(|e| e.why == Why::Budget));
        assert_eq!(gone(&evictions(&held, 5, Some(701), 0, 0)), []);
    }

    /// The last file of each unit that goes.
    fn last<'a>(e: &[Evict<'a>]) -> Vec<&'a str> {
        e.iter().map(|e| *e.files.last().unwrap()).collect()
    }

    #[test]
    fn nothing_goes_for_a_file_that_would_not_fit_even_then() {
        let mut held = vec![
            h("a-1-1-any.pkg.tar.zst", 100, 1),
            h("b-1-1-any.pkg.tar.zst", 100, 2),
            h("c-1-1-any.pkg.tar.zst", 100, 3),
        ];
        let all = [
            "a-1-1-any.pkg.tar.zst",
            "b-1-1-any.pkg.tar.zst",
            "c-1-1-any.pkg.tar.zst",
        ];
        // 300 held, 250 allowed: 250 incoming fits once all go; 251 never does (bigger
        // than the budget), so only the rest is brought under it.
        assert_eq!(last(&evictions(&held, 5, Some(250), 250, 0)), all);
        assert_eq!(last(&evictions(&held, 5, Some(250), 251, 0)), all[..1]);
        assert_eq!(last(&evictions(&held, 5, Some(300), 301, 0)), [""; 0]);
        // Beside 100 under way: room for 100 more (a) is not enough in 300, so a stays;
        // room for 50 more (a, 100) leaves room for 50 under way too, so a goes. The
        // rest is brought under the budget whatever comes: 300 held in 250, a goes.
        assert_eq!(last(&evictions(&held, 5, Some(300), 100, 100)), [""; 0]);
        assert_eq!(last(&evictions(&held, 5, Some(300), 100, 0)), all[..1]);
        assert_eq!(last(&evictions(&held, 5, Some(300), 50, 50)), all[..1]);
        assert_eq!(last(&evictions(&held, 5, Some(250), 150, 100)), all[..1]);
        // Beside a unit being sent (which stays), 150 fits in 250 and 151 does not.
        held[2].busy = true;
        assert_eq!(last(&evictions(&held, 5, Some(250), 150, 0)), all[..2]);
        assert_eq!(last(&evictions(&held, 5, Some(250), 151, 0)), all[..1]);
    }

    #[test]
    fn a_unit_being_sent_stays_and_pairs_go_together() {
        let mut held = vec![
            h("a-1-1-any.pkg.tar.zst", 100, 1),
            h("a-1-1-any.pkg.tar.zst.sig", 1, 1),
            h("a-2-1-any.pkg.tar.zst", 100, 2),
            h("b-1-1-any.pkg.tar.zst.sig", 1, 1),
        ];
        held[1].busy = true;
        let e = evictions(&held, 1, Some(0), 0, 0);
        // The old a stays (its .sig is being sent); the orphan .sig goes; then the budget
        // takes the newest a, never the busy pair.
        assert_eq!(
            gone(&e),
            [
                (vec!["b-1-1-any.pkg.tar.zst.sig"], "orphan"),
                (vec!["a-2-1-any.pkg.tar.zst"], "budget"),
            ]
        );
        held[1].busy = false;
        let e = evictions(&held, 1, None, 0, 0);
        assert_eq!(
            e[0].files,
            ["a-1-1-any.pkg.tar.zst.sig", "a-1-1-any.pkg.tar.zst"]
        );
    }
}
