//! Command-line arguments → a plain `Args` struct (pico-args), and the help texts.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

/// Default TCP port, the one the original pacserve used.
pub const DEFAULT_PORT: u16 = 15678;
/// Default pacman configuration.
pub const DEFAULT_PACMAN_CONF: &str = "/etc/pacman.conf";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Only errors.
    Quiet,
    /// One line per request.
    Normal,
    /// Also lookup detail.
    Verbose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub address: IpAddr,
    pub port: u16,
    pub pacman_conf: PathBuf,
    pub verbosity: Verbosity,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(Args),
    Help,
    MoreHelp,
    Version,
}

/// A command-line mistake, worded for the user; the process exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn parse_args(raw: Vec<OsString>) -> Result<Command, UsageError> {
    let mut p = pico_args::Arguments::from_vec(raw);
    if p.contains(["-h", "--help"]) {
        return Ok(Command::Help);
    }
    if p.contains("--more-help") {
        return Ok(Command::MoreHelp);
    }
    if p.contains(["-V", "--version"]) {
        return Ok(Command::Version);
    }
    let address = p
        .opt_value_from_str("--address")
        .map_err(|e| option_error("--address", e))?
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let port = p
        .opt_value_from_str("--port")
        .map_err(|e| option_error("--port", e))?
        .unwrap_or(DEFAULT_PORT);
    let pacman_conf = p
        .opt_value_from_os_str("--pacman-conf", |s| -> Result<PathBuf, String> {
            if s.is_empty() {
                Err("empty path".into())
            } else {
                Ok(PathBuf::from(s))
            }
        })
        .map_err(|e| option_error("--pacman-conf", e))?
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PACMAN_CONF));
    let verbose = p.contains(["-v", "--verbose"]);
    let quiet = p.contains(["-q", "--quiet"]);
    let verbosity = match (verbose, quiet) {
        (true, true) => {
            return Err(UsageError(
                "--verbose and --quiet exclude each other".into(),
            ));
        }
        (true, false) => Verbosity::Verbose,
        (false, true) => Verbosity::Quiet,
        (false, false) => Verbosity::Normal,
    };
    let rest = p.finish();
    if let Some(first) = rest.first() {
        let shown = first.to_string_lossy();
        return Err(UsageError(if shown.starts_with('-') {
            format!("unknown option '{shown}' (see --help)")
        } else {
            format!("unexpected argument '{shown}' (see --help)")
        }));
    }
    Ok(Command::Run(Args {
        address,
        port,
        pacman_conf,
        verbosity,
    }))
}

fn option_error(name: &str, e: pico_args::Error) -> UsageError {
    UsageError(match e {
        pico_args::Error::OptionWithoutAValue(_) => format!("option '{name}' needs a value"),
        pico_args::Error::Utf8ArgumentParsingFailed { value, .. } => {
            format!("option '{name}': '{value}' is not valid UTF-8")
        }
        pico_args::Error::ArgumentParsingFailed { cause } => {
            format!("option '{name}': {cause}")
        }
        other => format!("option '{name}': {other}"),
    })
}

pub const HELP: &str = "\
pacserve — share pacman package caches across a LAN

Usage: pacserve [OPTIONS]

Options:
  --address ADDR      address to listen on (default 0.0.0.0)
  --port PORT         TCP port to listen on (default 15678; 0 picks a free one)
  --pacman-conf FILE  pacman configuration to read (default /etc/pacman.conf)
  -v, --verbose       also log lookup detail
  -q, --quiet         log only errors
  -h, --help          this text
  --more-help         the full manual
  -V, --version       print the version

Point pacman at it by putting this first in /etc/pacman.d/mirrorlist:
  Server = http://localhost:15678/request/$repo/$arch
";

pub const MORE_HELP: &str = "\
pacserve — share pacman package caches across a LAN

ABOUT
  pacserve runs beside pacman on every host of a LAN. pacman's mirror list points at the
  local pacserve. When pacman asks for a package, pacserve
    1. serves it from the local pacman cache (CacheDir) if a complete copy is there;
    2. otherwise redirects pacman to the first mirror of that repository (from pacman.conf)
       that has it. Plain-http mirrors are probed with HEAD; a mirror that fails a probe is
       skipped for a minute; https mirrors are redirected to without a probe;
    3. answers 404 when no mirror has it, so pacman moves on to its next Server.
  Databases (*.db, *.files and their signatures) are never served locally: pacman is always
  redirected to the repository's first mirror, so it sees fresh databases (a repeat -Sy still
  gets its 304 Not Modified from the mirror).

  Only complete regular files directly inside a CacheDir are served: never *.part files,
  never pacman's temporary download directories, never anything outside the cache dirs.
  Requests are percent-decoded once and must name a single plain file.

  Routes (GET and HEAD):
    /request/$repo/$arch/FILE   the original pacserve path
    /pacman/$repo/$arch/FILE    the later pacserve path; identical

  Log: one line per request on stderr (peer, method, path, status, bytes, outcome:
  local, mirror, miss, bad). --verbose adds lookup detail; --quiet only errors.

PACMAN.CONF
  pacserve reads the same pacman.conf as pacman (--pacman-conf, default /etc/pacman.conf):
  CacheDir (several allowed; default /var/cache/pacman/pkg/), Architecture, and each
  repository's Server and Include lines (mirrorlists; Include may be a glob). $repo and
  $arch are substituted as pacman does. Server lines that point back at this pacserve
  (its own port on localhost, 127.0.0.0/8, ::1, 0.0.0.0 or one of this host's addresses)
  are skipped, so there is no loop.

  To use pacserve, put this line at the top of /etc/pacman.d/mirrorlist, and at the top of
  each repository section in /etc/pacman.conf that does not include the mirrorlist:

    Server = http://localhost:15678/request/$repo/$arch

  If pacserve is not running, pacman simply moves on to the next Server.

PACSERVE NETWORKS
  Every host runs its own pacserve and points its own pacman at localhost. Open TCP port
  15678 to the LAN so that other hosts can be sent to this one (and UDP port 15679 for
  multicast discovery, where it is used).

MULTICAST FILTERING
  Not available in this version: pacserve serves the local cache and the mirrors only.

CONFIGURATION FILE
  pacserve has no configuration file of its own: everything is a command-line option, and
  repositories, mirrors and cache directories come from pacman.conf.

EXIT STATUS
  0 on a clean stop, 1 when the configuration cannot be loaded or the port cannot be
  bound (the message says which file or address), 2 on a command-line mistake.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, UsageError> {
        parse_args(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn defaults() {
        let Command::Run(a) = parse(&[]).unwrap() else {
            panic!("expected run")
        };
        assert_eq!(a.address, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(a.port, DEFAULT_PORT);
        assert_eq!(a.pacman_conf, PathBuf::from(DEFAULT_PACMAN_CONF));
        assert_eq!(a.verbosity, Verbosity::Normal);
    }

    #[test]
    fn all_options() {
        let Command::Run(a) = parse(&[
            "--address",
            "::1",
            "--port",
            "8080",
            "--pacman-conf",
            "/tmp/x.conf",
            "--verbose",
        ])
        .unwrap() else {
            panic!("expected run")
        };
        assert_eq!(a.address, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(a.port, 8080);
        assert_eq!(a.pacman_conf, PathBuf::from("/tmp/x.conf"));
        assert_eq!(a.verbosity, Verbosity::Verbose);
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
        assert_eq!(parse(&["-h"]), Ok(Command::Help));
        assert_eq!(parse(&["--more-help"]), Ok(Command::MoreHelp));
        assert_eq!(parse(&["--version"]), Ok(Command::Version));
    }

    #[test]
    fn mistakes_name_the_option() {
        let cases: &[(&[&str], &str)] = &[
            (&["--bogus"], "'--bogus'"),
            (&["stray"], "'stray'"),
            (&["--port"], "'--port'"),
            (&["--port", "99999"], "'--port'"),
            (&["--port", "http"], "'--port'"),
            (&["--address", "nowhere"], "'--address'"),
            (&["--pacman-conf"], "'--pacman-conf'"),
            (&["--verbose", "--quiet"], "--quiet"),
        ];
        for (args, needle) in cases {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            assert!(err.0.contains(needle), "{args:?}: {}", err.0);
        }
    }
}
