//! Glob patterns as pacman's `Include` uses them (glob(3), fnmatch(3) without flags):
//! [`glob_match`] is pure; [`expand_glob`] reads directories.

use std::path::{Path, PathBuf};

use crate::limits::MAX_GLOB_MATCHES;

/// Expands a glob the way glob(3) does for pacman: `*`, `?`, `[...]` (and `\` escapes) within
/// one path component, `/` matched only literally, names starting with `.` only by a pattern
/// starting with `.`; the result sorted. Unreadable directories contribute nothing. Only
/// regular files (after following symlinks) are returned: a directory that happens to match
/// is not a config file.
pub fn expand_glob(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let too_many =
        || format!("Include: {pattern} matches more than {MAX_GLOB_MATCHES} files; narrow it");
    let (mut found, rest) = match pattern.strip_prefix('/') {
        Some(rest) => (vec![PathBuf::from("/")], rest),
        None => (vec![PathBuf::new()], pattern),
    };
    for component in rest.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for base in &found {
            if !component.contains(['*', '?', '[', '\\']) {
                next.push(base.join(component));
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                // A name that is not UTF-8 cannot be matched against a UTF-8 pattern.
                let Some(name) = name.to_str() else {
                    continue;
                };
                if name.starts_with('.') && !component.starts_with('.') {
                    continue;
                }
                if glob_match(component, name) {
                    if next.len() >= MAX_GLOB_MATCHES {
                        return Err(too_many());
                    }
                    next.push(base.join(name));
                }
            }
        }
        found = next;
    }
    found.retain(|p| p.is_file());
    found.sort();
    Ok(found)
}

/// Whether file name `name` matches the glob `pattern` (fnmatch(3) without flags, on one path
/// component): `*` any run, `?` any one character, `[abc]`, `[a-z]`, `[!x]` or `[^x]` a class,
/// `\c` the character `c`; a `[` without its `]` is literal. Runs in O(len(pattern) ×
/// len(name)) at worst, never exponentially.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, name index it took up to).
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if p.get(pi) == Some(&'*') {
            pi += 1;
            star = Some((pi, ni));
            continue;
        }
        if let Some(next) = (pi < p.len()).then(|| match_token(&p, pi, n[ni])).flatten() {
            pi = next;
            ni += 1;
            continue;
        }
        match star {
            Some((star_pi, star_ni)) => {
                // Let the last `*` swallow one more character and try again from there.
                pi = star_pi;
                ni = star_ni + 1;
                star = Some((star_pi, ni));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// If the single-character token at `p[pi]` (not `*`) matches `c`, the index after it.
fn match_token(p: &[char], pi: usize, c: char) -> Option<usize> {
    match p[pi] {
        '?' => Some(pi + 1),
        '[' => match match_class(p, pi, c) {
            Some((matched, end)) => matched.then_some(end),
            // No closing `]`: the `[` is an ordinary character.
            None => (c == '[').then_some(pi + 1),
        },
        '\\' if pi + 1 < p.len() => (p[pi + 1] == c).then_some(pi + 2),
        literal => (literal == c).then_some(pi + 1),
    }
}

/// Matches `c` against the class starting at `p[start] == '['`: whether it matched and the
/// index after the closing `]`, or `None` if the class is not closed.
fn match_class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &here = p.get(i)?;
        if here == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let (low, after_low) = class_char(p, i)?;
        i = after_low;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&h| h != ']') {
            let (high, after_high) = class_char(p, i + 1)?;
            i = after_high;
            matched |= low <= c && c <= high;
        } else {
            matched |= low == c;
        }
    }
}

/// One possibly `\`-escaped character of a class at `p[i]`, and the index after it.
fn class_char(p: &[char], i: usize) -> Option<(char, usize)> {
    match p.get(i)? {
        '\\' => p.get(i + 1).map(|&c| (c, i + 2)),
        &c => Some((c, i + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "a", true),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("*.conf", "a.conf", true),
            ("*.conf", "a.conf.bak", false),
            ("*.conf", ".conf", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "aüc", true),
            ("[ab].conf", "a.conf", true),
            ("[ab].conf", "c.conf", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[!a-c]x", "dx", true),
            ("[^a-c]x", "ax", false),
            ("[]]", "]", true),
            ("[!]]", "]", false),
            ("[a-]", "-", true),
            ("[\\]]", "]", true),
            ("[", "[", true),
            ("[ab", "[ab", true),
            ("[ab", "a", false),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("a\\", "a\\", true),
            ("*a*b*c*", "xxaxxbxxcxx", true),
            ("*a*b*c*", "xxaxxcxxbxx", false),
            ("**", "abc", true),
            ("*?", "", false),
            ("*?", "a", true),
            ("mirror*list", "mirrorlist", true),
            ("mirror*list", "mirror-old-list", true),
            ("mirror*list", "mirrorlist.pacnew", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                glob_match(pattern, name),
                *expected,
                "{pattern:?} vs {name:?}"
            );
        }
        // Pathological backtracking stays fast (quadratic at worst, not exponential).
        let name = "a".repeat(2000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!glob_match(&pattern, &name));
    }
}
