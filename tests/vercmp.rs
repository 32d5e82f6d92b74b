//! pacserve's version order (`pacserve::version::vercmp`) against pacman 7.1's own `vercmp`
//! binary, built by `.ci/setup` from pacman's source: every case of pacman's test script
//! (`test/util/vercmptest.sh` in that tree, read at test time), then generated versions; and
//! that the order is a total order. Ignored, saying why, where pacman 7.1 is not built.

mod common;

use std::cmp::Ordering;
use std::process::Command;
use std::time::Duration;

use common::*;
use pacserve::version::vercmp;

/// Longest one `vercmp` run may take.
const VERCMP_LIMIT: Duration = Duration::from_secs(10);
/// Generated pairs asked of the binary (each is one process: a few milliseconds).
const GENERATED_PAIRS: usize = 400;

/// What pacman's vercmp says of `a` and `b`.
fn oracle(a: &str, b: &str) -> Ordering {
    let bin = pacman7_dir().join("build/vercmp");
    let ran = run_bounded(Command::new(&bin).args([a, b]), VERCMP_LIMIT);
    assert!(
        ran.success(),
        "{} {a:?} {b:?}: {}",
        bin.display(),
        ran.text()
    );
    match ran.stdout.trim() {
        "-1" => Ordering::Less,
        "0" => Ordering::Equal,
        "1" => Ordering::Greater,
        other => panic!("vercmp {a:?} {b:?} printed {other:?}"),
    }
}

fn as_ordering(n: i32) -> Ordering {
    n.cmp(&0)
}

/// Deterministic pseudo-random versions: epochs, digits with leading zeros, letters, and the
/// separators pacman's versions use (`.`, `_`, `+`, `~` and a release `-`).
struct Versions(u64);

impl Versions {
    fn next_u32(&mut self) -> u32 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.next_u32() as usize % from.len()]
    }

    fn version(&mut self) -> String {
        let mut v = String::new();
        if self.next_u32() % 5 == 0 {
            v.push_str(self.pick(&["0", "1", "2", "10", "01"]));
            v.push(':');
        }
        let segments = 1 + self.next_u32() % 4;
        for i in 0..segments {
            if i > 0 {
                v.push_str(self.pick(&[".", ".", ".", "_", "+", "..", "~"]));
            }
            v.push_str(self.pick(&[
                "0", "1", "2", "9", "10", "007", "100", "a", "b", "alpha", "beta", "rc", "rc1",
                "1a", "2b3", "pre",
            ]));
        }
        if self.next_u32() % 2 == 0 {
            v.push('-');
            v.push_str(self.pick(&["1", "2", "10", "1.1", "0"]));
        }
        v
    }
}

/// Why the oracle tests cannot run here.
const NO_PACMAN7: &str =
    "pacman 7.1 is not built here: bash .ci/setup builds it from ../shared/third_party";

#[test]
#[cfg_attr(
    not(pacman7),
    ignore = "pacman 7.1 is not built here: bash .ci/setup builds it from ../shared/third_party"
)]
fn agrees_with_pacmans_own_test_cases() {
    let script = pacman7_dir().join("test/util/vercmptest.sh");
    let text = std::fs::read_to_string(&script)
        .unwrap_or_else(|e| panic!("{}: {e} ({NO_PACMAN7})", script.display()));
    let mut cases = 0;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["tap_runtest", a, b, expected] = words[..] else {
            continue;
        };
        let want = as_ordering(expected.parse().expect("an expected -1, 0 or 1"));
        assert_eq!(
            oracle(a, b),
            want,
            "pacman's vercmp disagrees with its own script"
        );
        assert_eq!(vercmp(a, b), want, "vercmp {a} {b} (pacman's case)");
        assert_eq!(
            vercmp(b, a),
            want.reverse(),
            "vercmp {b} {a} (pacman's case)"
        );
        cases += 1;
    }
    assert!(
        cases >= 40,
        "only {cases} cases read from {}",
        script.display()
    );
}

#[test]
#[cfg_attr(
    not(pacman7),
    ignore = "pacman 7.1 is not built here: bash .ci/setup builds it from ../shared/third_party"
)]
fn agrees_with_pacman_on_generated_versions() {
    let mut g = Versions(0x2545_F491_4F6C_DD1D);
    for _ in 0..GENERATED_PAIRS {
        let (a, b) = (g.version(), g.version());
        assert_eq!(vercmp(&a, &b), oracle(&a, &b), "vercmp {a} {b}");
    }
}

/// A total order on generated versions: reflexive, antisymmetric, transitive, and a sort
/// agrees with every pairwise answer.
#[test]
fn the_order_is_total() {
    let mut g = Versions(0x9E37_79B9_7F4A_7C15);
    let versions: Vec<String> = (0..200).map(|_| g.version()).collect();
    for (i, a) in versions.iter().enumerate() {
        assert_eq!(vercmp(a, a), Ordering::Equal, "{a} = {a}");
        for b in &versions[i + 1..] {
            assert_eq!(vercmp(a, b), vercmp(b, a).reverse(), "{a} vs {b}");
        }
    }
    let sample = &versions[..60];
    for a in sample {
        for b in sample {
            for c in sample {
                if vercmp(a, b) != Ordering::Greater && vercmp(b, c) != Ordering::Greater {
                    assert_ne!(vercmp(a, c), Ordering::Greater, "{a} <= {b} <= {c}");
                }
            }
        }
    }
    let mut sorted = versions.clone();
    sorted.sort_by(|a, b| vercmp(a, b));
    for w in sorted.windows(2) {
        assert_ne!(
            vercmp(&w[0], &w[1]),
            Ordering::Greater,
            "{} then {}",
            w[0],
            w[1]
        );
    }
}
