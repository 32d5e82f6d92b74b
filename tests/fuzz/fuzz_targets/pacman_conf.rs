//! pacman.conf text and the `/proc` parsers behind pacserve's host facts: whatever the bytes,
//! they must return, never panic, and keep their promises about the result.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pacserve::config::pacman_conf;
use pacserve::sys::host;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Ok(conf) = pacman_conf::parse_str(&text, Path::new("pacman.conf")) {
        assert!(!conf.cache_dirs.is_empty());
        assert!(!conf.architectures.is_empty());
        for repo in &conf.repos {
            assert!(!repo.name.is_empty() && !repo.name.contains('/'));
            assert!(repo.name != "." && repo.name != "..");
            assert!(conf.repo(&repo.name).is_some());
            for server in &repo.servers {
                assert!(!server.is_empty());
                assert!(!server.contains(char::is_control));
            }
        }
    } else if let Err(e) = pacman_conf::parse_str(&text, Path::new("pacman.conf")) {
        // Display escapes control characters: one error is one log line.
        assert!(!e.to_string().contains(char::is_control));
    }

    // The first line as a glob pattern, the rest as a file name.
    let (pattern, name) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = pacserve::config::glob::glob_match(pattern, name);

    let v4 = host::parse_fib_trie(&text);
    let v6 = host::parse_if_inet6(&text);
    for (i, a) in v4.iter().enumerate() {
        assert!(!v4[..i].contains(a));
    }
    for (i, a) in v6.iter().enumerate() {
        assert!(!v6[..i].contains(a));
    }
});
