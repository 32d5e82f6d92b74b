//! The hub's command-line options (`--hub DIR` and the `--hub-*` that tune it) → a plain
//! [`HubArgs`]; sizes and rates written `200G`, `10M`. Pure.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::cli::{UsageError, option_error, parse_seconds};
use crate::limits::{HUB_INTERVAL_DEFAULT, HUB_MAX_KEEP, HUB_MAX_PULLS};
use crate::names::arch_problem;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubArgs {
    /// The directory the hub owns.
    pub dir: PathBuf,
    /// How often peers' listings are polled.
    pub interval: Duration,
    /// Architectures collected (`any` always is); empty: every architecture seen.
    pub archs: Vec<String>,
    /// Pulls at a time.
    pub pulls: usize,
    /// Bytes per second over all pulls; None: as fast as the LAN goes.
    pub rate: Option<u64>,
    /// Versions kept per package name and architecture.
    pub keep: usize,
    /// Most bytes held; None: no limit but the free space.
    pub max_size: Option<u64>,
    /// Percent of the filesystem the hub leaves free.
    pub min_free: u8,
}

/// The `--hub` options: None without `--hub` (and then no `--hub-*` option may be given).
pub fn parse(p: &mut pico_args::Arguments) -> Result<Option<HubArgs>, UsageError> {
    let dir: Option<PathBuf> = p
        .opt_value_from_os_str("--hub", |s| match s.is_empty() {
            true => Err("empty path".to_string()),
            false => Ok(PathBuf::from(s)),
        })
        .map_err(|e| option_error("--hub", e))?;
    // Each value as text, then checked: one kind of parse for all (less code on the board).
    let interval = checked("--hub-interval", text(p, "--hub-interval")?, parse_seconds)?;
    let archs = p
        .values_from_str::<_, String>("--hub-arch")
        .map_err(|e| option_error("--hub-arch", e))?;
    for a in &archs {
        if let Some(why) = arch_problem(a) {
            return Err(UsageError(format!(
                "option '--hub-arch': architecture '{a}' {why}"
            )));
        }
    }
    let pulls = checked("--hub-pulls", text(p, "--hub-pulls")?, |s| {
        count(s, HUB_MAX_PULLS)
    })?;
    let rate = checked("--hub-rate", text(p, "--hub-rate")?, parse_size)?;
    let keep = checked("--hub-keep", text(p, "--hub-keep")?, |s| {
        count(s, HUB_MAX_KEEP)
    })?;
    let max_size = checked("--hub-max-size", text(p, "--hub-max-size")?, parse_size)?;
    let min_free = checked("--hub-min-free", text(p, "--hub-min-free")?, |s| {
        match s.parse::<u8>() {
            Ok(n) if n < 100 => Ok(n),
            _ => Err(format!("'{s}' is not a percentage from 0 to 99")),
        }
    })?;
    let Some(dir) = dir else {
        let tuned = interval.is_some()
            || !archs.is_empty()
            || pulls.is_some()
            || rate.is_some()
            || keep.is_some()
            || max_size.is_some()
            || min_free.is_some();
        return match tuned {
            true => Err(UsageError(
                "--hub-* options need --hub DIR to turn the hub on".into(),
            )),
            false => Ok(None),
        };
    };
    Ok(Some(HubArgs {
        dir,
        interval: interval.unwrap_or(HUB_INTERVAL_DEFAULT),
        archs,
        pulls: pulls.unwrap_or(2),
        rate,
        keep: keep.unwrap_or(2),
        max_size,
        min_free: min_free.unwrap_or(5),
    }))
}

/// The value of option `name`, as given.
fn text(p: &mut pico_args::Arguments, name: &'static str) -> Result<Option<String>, UsageError> {
    p.opt_value_from_str::<_, String>(name)
        .map_err(|e| option_error(name, e))
}

/// `value` checked by `parse`, whose message is about the value.
fn checked<T>(
    name: &str,
    value: Option<String>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, UsageError> {
    value
        .map(|s| parse(&s).map_err(|why| UsageError(format!("option '{name}': {why}"))))
        .transpose()
}

/// A whole number from 1 to `max`.
fn count(s: &str, max: usize) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("'{s}' is not a whole number from 1 to {max}")),
    }
}

/// A byte count: digits, then optionally `K`, `M`, `G` or `T` (powers of 1024), not 0.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        Some(b'T' | b't') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let n = match digits.bytes().all(|b| b.is_ascii_digit()) {
        true => digits.parse::<u64>().ok(),
        false => None,
    };
    match n.and_then(|n| n.checked_mul(1 << shift)) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "'{s}' is not a size (whole bytes, or with K, M, G or T: e.g. 200G)"
        )),
    }
}

/// The architectures a hub says it serves in its multicast hello: its pacman's, those it
/// collects and `any`; or none at all (not known) when it collects every architecture, so
/// that peers of any architecture take its copies.
pub fn announced_archs(own: &[String], hub: Option<&HubArgs>) -> Vec<String> {
    let Some(hub) = hub else {
        return own.to_vec();
    };
    if hub.archs.is_empty() {
        return Vec::new();
    }
    let mut archs = own.to_vec();
    for a in hub.archs.iter().map(String::as_str).chain(["any"]) {
        if !archs.iter().any(|x| x == a) {
            archs.push(a.to_string());
        }
    }
    archs.truncate(crate::limits::MAX_ANNOUNCE_ARCHS);
    archs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Option<HubArgs>, UsageError> {
        let mut p = pico_args::Arguments::from_vec(args.iter().map(Into::into).collect());
        parse(&mut p)
    }

    #[test]
    fn defaults_and_every_option() {
        assert_eq!(parse_args(&[]), Ok(None));
        let h = parse_args(&["--hub", "/srv/hub"]).unwrap().unwrap();
        assert_eq!(h.dir, PathBuf::from("/srv/hub"));
        assert_eq!(h.interval, HUB_INTERVAL_DEFAULT);
        assert_eq!((h.pulls, h.keep, h.min_free), (2, 2, 5));
        assert!(h.archs.is_empty() && h.rate.is_none() && h.max_size.is_none());
        let h = parse_args(&[
            "--hub",
            "d",
            "--hub-interval",
            "0.5",
            "--hub-arch",
            "x86_64",
            "--hub-arch",
            "aarch64",
            "--hub-pulls",
            "1",
            "--hub-rate",
            "10M",
            "--hub-keep",
            "3",
            "--hub-max-size",
            "200G",
            "--hub-min-free",
            "0",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(h.interval, Duration::from_millis(500));
        assert_eq!(h.archs, ["x86_64", "aarch64"]);
        assert_eq!((h.pulls, h.keep, h.min_free), (1, 3, 0));
        assert_eq!(h.rate, Some(10 << 20));
        assert_eq!(h.max_size, Some(200 << 30));
    }

    #[test]
    fn mistakes_name_the_option() {
        let cases: &[(&[&str], &str)] = &[
            (&["--hub-keep", "2"], "need --hub DIR"),
            (&["--hub"], "'--hub'"),
            (&["--hub", ""], "'--hub'"),
            (&["--hub", "d", "--hub-keep", "0"], "'--hub-keep'"),
            (&["--hub", "d", "--hub-pulls", "9"], "'--hub-pulls'"),
            (&["--hub", "d", "--hub-arch", "x86-64"], "'--hub-arch'"),
            (
                &["--hub", "d", "--hub-max-size", "1.5G"],
                "'--hub-max-size'",
            ),
            (&["--hub", "d", "--hub-rate", "0"], "'--hub-rate'"),
            (&["--hub", "d", "--hub-min-free", "100"], "'--hub-min-free'"),
            (&["--hub", "d", "--hub-interval", "x"], "'--hub-interval'"),
        ];
        for (args, needle) in cases {
            let e = parse_args(args).expect_err(&format!("{args:?}"));
            assert!(e.0.contains(needle), "{args:?}: {}", e.0);
        }
    }

    #[test]
    fn sizes() {
        for (s, n) in [
            ("1", 1),
            ("512K", 512 << 10),
            ("3m", 3 << 20),
            ("200G", 200 << 30),
            ("2T", 2 << 40),
        ] {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
        for bad in [
            "",
            "G",
            "0",
            "0K",
            "-1",
            "1.5G",
            "1 G",
            "99999999999T",
            "1P",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn what_a_hub_announces() {
        let own = vec!["aarch64".to_string()];
        let mut h = parse_args(&["--hub", "d"]).unwrap().unwrap();
        assert_eq!(announced_archs(&own, None), ["aarch64"]);
        assert!(announced_archs(&own, Some(&h)).is_empty(), "every arch");
        h.archs = vec!["x86_64".into(), "aarch64".into()];
        assert_eq!(
            announced_archs(&own, Some(&h)),
            ["aarch64", "x86_64", "any"]
        );
    }
}
