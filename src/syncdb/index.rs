//! A repository's packages as verification needs them: file name → (size, SHA-256), in
//! about 48 bytes per package plus its name. Pure: no I/O.
//!
//! One sorted slice of fixed-size entries and one string holding every name, each entry
//! pointing into it: two allocations however many packages, binary search to look up. A
//! `HashMap<String, _>` would cost a heap block per name and a table with spare room, about
//! twice as much for Arch's extra (15,000 packages: about 1.4 MiB here).

use std::fmt;

use super::desc::Desc;
use crate::limits::MAX_DB_PACKAGES;

/// What the database says a package file must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Expected {
    /// Its size in bytes (`%CSIZE%`).
    pub size: u64,
    /// Its SHA-256 (`%SHA256SUM%`), when the database gives one.
    pub sha256: Option<[u8; 32]>,
}

/// 48 bytes: the name is found by offset and length in [`Index::names`] (names are at most
/// 255 bytes, `MAX_FILE_NAME`, and all of them together at most `MAX_DB_PACKAGES` × 255,
/// well within a u32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    size: u64,
    sha256: [u8; 32],
    name_at: u32,
    name_len: u8,
    has_sha256: bool,
}

impl Entry {
    fn expected(&self) -> Expected {
        Expected {
            size: self.size,
            sha256: self.has_sha256.then_some(self.sha256),
        }
    }
}

/// One repository's packages, by file name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// Sorted by name, no two with the same name.
    entries: Box<[Entry]>,
    names: Box<str>,
    duplicates: usize,
}

impl Index {
    /// What `file` (a package file name as in `%FILENAME%`) must be; None when the
    /// database does not list it. A signature (`FILE.sig`) is never listed.
    pub fn get(&self, file: &str) -> Option<Expected> {
        let i = self
            .entries
            .binary_search_by(|e| self.name(e).cmp(file))
            .ok()?;
        Some(self.entries[i].expected())
    }

    /// Packages listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries whose `%FILENAME%` an earlier entry of the database already had: the first
    /// was kept, these were dropped.
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// Every package, in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, Expected)> + '_ {
        self.entries.iter().map(|e| (self.name(e), e.expected()))
    }

    /// Bytes this index holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val::<[Entry]>(&self.entries) + self.names.len()
    }

    fn name(&self, e: &Entry) -> &str {
        name_in(&self.names, e)
    }
}

fn name_in<'a>(names: &'a str, e: &Entry) -> &'a str {
    let start = e.name_at as usize;
    // Every entry was made from a name pushed into `names` whole; names are ASCII
    // (`valid_file`), so any offsets fall on character boundaries.
    names
        .get(start..start + usize::from(e.name_len))
        .unwrap_or_default()
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("len", &self.len())
            .field("duplicates", &self.duplicates)
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

/// The index has `MAX_DB_PACKAGES` entries already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Gathers packages in database order; [`IndexBuilder::finish`] sorts them.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    entries: Vec<Entry>,
    names: String,
}

impl IndexBuilder {
    pub fn new() -> IndexBuilder {
        IndexBuilder::default()
    }

    /// Adds a package (duplicates included: `finish` drops them).
    pub fn push(&mut self, desc: &Desc<'_>) -> Result<(), Full> {
        if self.entries.len() >= MAX_DB_PACKAGES {
            return Err(Full);
        }
        // parse_desc only returns names that pass `valid_file`: at most MAX_FILE_NAME
        // (255) bytes, so the length fits a u8, and MAX_DB_PACKAGES of them fit a u32.
        let name_len = u8::try_from(desc.filename.len()).map_err(|_| Full)?;
        let name_at = u32::try_from(self.names.len()).map_err(|_| Full)?;
        self.names.push_str(desc.filename);
        self.entries.push(Entry {
            size: desc.csize,
            sha256: desc.sha256.unwrap_or([0; 32]),
            name_at,
            name_len,
            has_sha256: desc.sha256.is_some(),
        });
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sorts by name, keeps the first of each name in database order (names are pushed in
    /// that order, so the earliest has the lowest offset), and trims the allocations.
    pub fn finish(self) -> Index {
        let IndexBuilder {
            mut entries,
            mut names,
        } = self;
        entries.sort_unstable_by(|a, b| {
            name_in(&names, a)
                .cmp(name_in(&names, b))
                .then(a.name_at.cmp(&b.name_at))
        });
        let before = entries.len();
        entries.dedup_by(|later, kept| name_in(&names, later) == name_in(&names, kept));
        let duplicates = before - entries.len();
        if duplicates > 0 {
            // The dropped names would otherwise stay in the string for as long as the
            // index lives; rewrite it with the kept ones.
            let mut kept = String::with_capacity(entries.iter().map(|e| e.name_len as usize).sum());
            for e in &mut entries {
                let at = kept.len() as u32;
                kept.push_str(name_in(&names, e));
                e.name_at = at;
            }
            names = kept;
        }
        Index {
            entries: entries.into_boxed_slice(),
            names: names.into_boxed_str(),
            duplicates,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(filename: &str, csize: u64, sha: Option<u8>) -> Desc<'_> {
        Desc {
            filename,
            csize,
            sha256: sha.map(|b| [b; 32]),
            name: None,
            version: None,
            arch: None,
        }
    }

    fn index(descs: &[Desc<'_>]) -> Index {
        let mut b = IndexBuilder::new();
        for d in descs {
            b.push(d).unwrap();
        }
        b.finish()
    }

    #[test]
    fn entry_is_48_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 48);
    }

    #[test]
    fn looks_up_by_file_name() {
        let idx = index(&[
            desc("zstd-1.5.5-1-x86_64.pkg.tar.zst", 500, Some(1)),
            desc("acl-2.3.1-3-x86_64.pkg.tar.zst", 10, None),
            desc("glibc-2.38-7-x86_64.pkg.tar.zst", u64::MAX, Some(0)),
        ]);
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.duplicates(), 0);
        assert_eq!(
            idx.get("zstd-1.5.5-1-x86_64.pkg.tar.zst"),
            Some(Expected {
                size: 500,
                sha256: Some([1; 32])
            })
        );
        assert_eq!(
            idx.get("acl-2.3.1-3-x86_64.pkg.tar.zst"),
            Some(Expected {
                size: 10,
                sha256: None
            })
        );
        // An all-zero digest is a digest, not its absence.
        assert_eq!(
            idx.get("glibc-2.38-7-x86_64.pkg.tar.zst")
                .and_then(|e| e.sha256),
            Some([0; 32])
        );
        for absent in [
            "zstd-1.5.5-1-x86_64.pkg.tar.zst.sig",
            "zstd-1.5.5-1-x86_64.pkg.tar",
            "zstd",
            "",
            "acl-2.3.1-3-x86_64.pkg.tar.zsu",
            "core.db",
        ] {
            assert_eq!(idx.get(absent), None, "{absent}");
        }
        let names: Vec<&str> = idx.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "acl-2.3.1-3-x86_64.pkg.tar.zst",
                "glibc-2.38-7-x86_64.pkg.tar.zst",
                "zstd-1.5.5-1-x86_64.pkg.tar.zst"
            ]
        );
        assert_eq!(
            idx.heap_bytes(),
            3 * 48 + names.iter().map(|n| n.len()).sum::<usize>()
        );
    }

    #[test]
    fn keeps_the_first_of_duplicates() {
        let idx = index(&[
            desc("b.pkg", 1, Some(1)),
            desc("a.pkg", 2, None),
            desc("b.pkg", 3, Some(3)),
            desc("c.pkg", 4, None),
            desc("b.pkg", 5, None),
            desc("a.pkg", 6, Some(6)),
        ]);
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.duplicates(), 3);
        assert_eq!(idx.get("a.pkg").map(|e| e.size), Some(2));
        assert_eq!(idx.get("b.pkg").map(|e| e.size), Some(1));
        assert_eq!(idx.get("c.pkg").map(|e| e.size), Some(4));
        // The dropped names are gone from the string too.
        assert_eq!(idx.heap_bytes(), 3 * 48 + 15);
    }

    #[test]
    fn empty_and_full() {
        let idx = IndexBuilder::new().finish();
        assert!(idx.is_empty() && idx.get("a").is_none() && idx.heap_bytes() == 0);

        let mut b = IndexBuilder::new();
        for i in 0..MAX_DB_PACKAGES {
            b.push(&desc(&format!("p{i}.pkg"), i as u64, None)).unwrap();
        }
        assert_eq!(b.push(&desc("one-more.pkg", 0, None)), Err(Full));
        let idx = b.finish();
        assert_eq!(idx.len(), MAX_DB_PACKAGES);
        for i in (0..MAX_DB_PACKAGES).step_by(997) {
            assert_eq!(
                idx.get(&format!("p{i}.pkg")).map(|e| e.size),
                Some(i as u64)
            );
        }
    }
}
