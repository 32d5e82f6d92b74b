//! One sort for all the hub's lists, pure: the positions are sorted by a comparison behind
//! a reference, so the sorting code exists once in the binary instead of once per list
//! (a few KiB each on the board), and the list is then put in that order in place.

use std::cmp::Ordering;

/// The positions `0..n` in the order `cmp` gives them, ties in their original order.
fn positions(n: usize, cmp: &dyn Fn(usize, usize) -> Ordering) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    p.sort_by(|&a, &b| cmp(a, b));
    p
}

/// Sort `v` by `cmp`, stably.
pub fn sort_by<T>(v: &mut [T], cmp: impl Fn(&T, &T) -> Ordering) {
    let mut from = positions(v.len(), &|a, b| cmp(&v[a], &v[b]));
    // Position i takes what was at from[i]: follow each cycle once, marking it done.
    for start in 0..from.len() {
        let mut at = start;
        while from[at] != usize::MAX {
            let next = from[at];
            from[at] = usize::MAX;
            if next == start {
                break;
            }
            v.swap(at, next);
            at = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_stably_in_place() {
        let cases: &[&[(u8, char)]] = &[
            &[],
            &[(1, 'a')],
            &[(2, 'a'), (1, 'b')],
            &[(3, 'a'), (1, 'b'), (2, 'c'), (1, 'd'), (3, 'e'), (0, 'f')],
            &[(5, 'a'), (4, 'b'), (3, 'c'), (2, 'd'), (1, 'e')],
            &[(1, 'a'), (1, 'b'), (1, 'c')],
        ];
        for case in cases {
            let mut got = case.to_vec();
            sort_by(&mut got, |a, b| a.0.cmp(&b.0));
            let mut want = case.to_vec();
            want.sort_by_key(|x| x.0);
            assert_eq!(got, want, "{case:?}");
        }
        // A larger shuffle: every permutation cycle length.
        let mut v: Vec<u32> = (0..1000).map(|i| (i * 7919) % 1000).collect();
        sort_by(&mut v, |a, b| b.cmp(a));
        assert!(v.windows(2).all(|w| w[0] > w[1]) && v.len() == 1000);
    }
}
