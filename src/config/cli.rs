//! Command-line arguments → a plain `Args` struct (pico-args), and the help texts. Pure.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::access::{Cidr, parse_cidr};
use crate::limits::{MAX_ALLOW_RANGES, MAX_OPTION_TIME, MAX_SECRET_FILES, MIN_OPTION_TIME};
use crate::peers::discovery::Interface;
use crate::peers::table::{Filters, PeerAddr, parse_peer_addr};

/// Default TCP port, the one the original pacserve used.
pub const DEFAULT_PORT: u16 = 15678;
/// Default pacman configuration.
pub const DEFAULT_PACMAN_CONF: &str = "/etc/pacman.conf";

pub use crate::sys::log::Verbosity;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `--address`; None: every address, IPv6 and IPv4 (`[::]`, or `0.0.0.0` where IPv6 is
    /// off).
    pub address: Option<IpAddr>,
    pub port: u16,
    pub pacman_conf: PathBuf,
    pub verbosity: Verbosity,
    /// `--pacserver`, in order given.
    pub pacservers: Vec<PeerAddr>,
    /// Per-peer limit for one lookup (connect + answer).
    pub peer_timeout: Duration,
    pub multicast: Option<MulticastArgs>,
    /// `--hub DIR` and its options.
    pub hub: Option<Box<crate::hub::options::HubArgs>>,
    /// `--secret-file`, in order given: the first key signs, every key verifies.
    pub secret_files: Vec<PathBuf>,
    /// `--allow` ranges: the clients answered besides loopback (and authenticated peers).
    pub allow: Vec<Cidr>,
}

/// `--multicast` and its options; None fields take discovery's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MulticastArgs {
    /// `--multicast-group`: at most one IPv4 and one IPv6 group; none means both defaults,
    /// some means those families only.
    pub groups: Vec<IpAddr>,
    pub port: Option<u16>,
    pub interfaces: Vec<Interface>,
    pub ttl: Option<u32>,
    pub interval: Option<Duration>,
    /// `i:REGEX` / `x:REGEX`, already checked to compile.
    pub filters: Vec<String>,
}

impl MulticastArgs {
    pub fn filters(&self) -> Filters {
        let mut f = Filters::default();
        for spec in &self.filters {
            // Checked in parse_args.
            let _ = f.add(spec);
        }
        f
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the daemon (boxed: the arguments are large and parsed once).
    Run(Box<Args>),
    /// `pacserve pacsrv [--port PORT] PACMAN_ARGS…`
    Pacsrv {
        port: u16,
        pacman_args: Vec<OsString>,
    },
    /// `pacserve print-pacman-conf [--port PORT] [--pacman-conf FILE]`
    PrintPacmanConf {
        port: u16,
        pacman_conf: PathBuf,
    },
    /// `pacserve gen-secret`: print a new key.
    GenSecret,
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

pub fn parse_args(mut raw: Vec<OsString>) -> Result<Command, UsageError> {
    if raw.first().is_some_and(|a| a == "pacsrv") {
        raw.remove(0);
        return parse_pacsrv(raw);
    }
    if raw.first().is_some_and(|a| a == "print-pacman-conf") {
        raw.remove(0);
        return parse_print_pacman_conf(raw);
    }
    if raw.first().is_some_and(|a| a == "gen-secret") {
        return match raw.get(1) {
            None => Ok(Command::GenSecret),
            Some(extra) => Err(UsageError(format!(
                "gen-secret: unexpected argument '{}'",
                extra.to_string_lossy()
            ))),
        };
    }
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
    let args = Args {
        address: p
            .opt_value_from_str("--address")
            .map_err(|e| option_error("--address", e))?,
        port: port_option(&mut p)?,
        pacman_conf: pacman_conf_option(&mut p, false)?,
        pacservers: p
            .values_from_fn("--pacserver", parse_peer_addr)
            .map_err(|e| option_error("--pacserver", e))?,
        peer_timeout: p
            .opt_value_from_fn("--peer-timeout", parse_seconds)
            .map_err(|e| option_error("--peer-timeout", e))?
            .unwrap_or(crate::limits::PEER_TIMEOUT_DEFAULT),
        multicast: multicast_options(&mut p)?,
        hub: crate::hub::options::parse(&mut p)?.map(Box::new),
        verbosity: verbosity_options(&mut p)?,
        secret_files: secret_file_options(&mut p)?,
        allow: allow_options(&mut p)?,
    };
    reject_rest(p, "")?;
    Ok(Command::Run(Box::new(args)))
}

/// `pacsrv [--port PORT] PACMAN_ARGS…`: only a leading --port is ours; everything else is
/// pacman's, unchanged (even a later `--port`).
fn parse_pacsrv(mut raw: Vec<OsString>) -> Result<Command, UsageError> {
    let mut port = DEFAULT_PORT;
    if raw.first().is_some_and(|a| a == "--port") {
        let value = raw
            .get(1)
            .ok_or_else(|| UsageError("option '--port' needs a value".into()))?;
        port = value.to_str().and_then(|v| v.parse().ok()).ok_or_else(|| {
            UsageError(format!(
                "option '--port': bad port '{}'",
                value.to_string_lossy()
            ))
        })?;
        raw.drain(..2);
    }
    Ok(Command::Pacsrv {
        port,
        pacman_args: raw,
    })
}

/// `print-pacman-conf [--port PORT] [--pacman-conf FILE]`.
fn parse_print_pacman_conf(raw: Vec<OsString>) -> Result<Command, UsageError> {
    let mut p = pico_args::Arguments::from_vec(raw);
    let port = port_option(&mut p)?;
    let pacman_conf = pacman_conf_option(&mut p, true)?;
    reject_rest(p, "print-pacman-conf: ")?;
    Ok(Command::PrintPacmanConf { port, pacman_conf })
}

fn port_option(p: &mut pico_args::Arguments) -> Result<u16, UsageError> {
    Ok(p.opt_value_from_str("--port")
        .map_err(|e| option_error("--port", e))?
        .unwrap_or(DEFAULT_PORT))
}

/// `--pacman-conf FILE`, default [`DEFAULT_PACMAN_CONF`]; an empty path is refused unless
/// `allow_empty` (print-pacman-conf then fails to read it and says so).
fn pacman_conf_option(
    p: &mut pico_args::Arguments,
    allow_empty: bool,
) -> Result<PathBuf, UsageError> {
    fn any_path(s: &std::ffi::OsStr) -> Result<PathBuf, String> {
        Ok(PathBuf::from(s))
    }
    fn non_empty_path(s: &std::ffi::OsStr) -> Result<PathBuf, String> {
        if s.is_empty() {
            Err("empty path".into())
        } else {
            Ok(PathBuf::from(s))
        }
    }
    let parse = if allow_empty {
        any_path
    } else {
        non_empty_path
    };
    Ok(p.opt_value_from_os_str("--pacman-conf", parse)
        .map_err(|e| option_error("--pacman-conf", e))?
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PACMAN_CONF)))
}

/// `--multicast` and its options: None without `--multicast` (and then no `--multicast-*`
/// option may be given).
fn multicast_options(p: &mut pico_args::Arguments) -> Result<Option<MulticastArgs>, UsageError> {
    let on = p.contains("--multicast");
    let mc = MulticastArgs {
        groups: p
            .values_from_str("--multicast-group")
            .map_err(|e| option_error("--multicast-group", e))?,
        port: p
            .opt_value_from_str("--multicast-port")
            .map_err(|e| option_error("--multicast-port", e))?,
        interfaces: p
            .values_from_fn("--multicast-interface", |s: &str| {
                Ok::<_, String>(Interface::parse(s))
            })
            .map_err(|e| option_error("--multicast-interface", e))?,
        ttl: p
            .opt_value_from_str("--multicast-ttl")
            .map_err(|e| option_error("--multicast-ttl", e))?,
        interval: p
            .opt_value_from_fn("--multicast-interval", parse_seconds)
            .map_err(|e| option_error("--multicast-interval", e))?,
        filters: p
            .values_from_fn("--multicast-filter", |s: &str| {
                Filters::default().add(s).map(|_| s.to_string())
            })
            .map_err(|e| option_error("--multicast-filter", e))?,
    };
    let v4 = mc.groups.iter().filter(|g| g.is_ipv4()).count();
    if v4 > 1 || mc.groups.len() - v4 > 1 {
        return Err(UsageError(
            "option '--multicast-group': at most one IPv4 and one IPv6 group".into(),
        ));
    }
    if on {
        Ok(Some(mc))
    } else if mc != MulticastArgs::default() {
        Err(UsageError(
            "--multicast-* options need --multicast to turn discovery on".into(),
        ))
    } else {
        Ok(None)
    }
}

/// `--secret-file PATH`, repeatable (at most [`MAX_SECRET_FILES`]); the files are read at
/// start, so a bad one stops pacserve with a message about that file.
fn secret_file_options(p: &mut pico_args::Arguments) -> Result<Vec<PathBuf>, UsageError> {
    let files: Vec<PathBuf> = p
        .values_from_os_str("--secret-file", |s: &std::ffi::OsStr| {
            if s.is_empty() {
                Err("empty path".to_string())
            } else {
                Ok(PathBuf::from(s))
            }
        })
        .map_err(|e| option_error("--secret-file", e))?;
    if files.len() > MAX_SECRET_FILES {
        return Err(UsageError(format!(
            "option '--secret-file': at most {MAX_SECRET_FILES}"
        )));
    }
    Ok(files)
}

/// `--allow CIDR`, repeatable (at most [`MAX_ALLOW_RANGES`]).
fn allow_options(p: &mut pico_args::Arguments) -> Result<Vec<Cidr>, UsageError> {
    let ranges: Vec<Cidr> = p
        .values_from_fn("--allow", parse_cidr)
        .map_err(|e| option_error("--allow", e))?;
    if ranges.len() > MAX_ALLOW_RANGES {
        return Err(UsageError(format!(
            "option '--allow': at most {MAX_ALLOW_RANGES} ranges"
        )));
    }
    Ok(ranges)
}

fn verbosity_options(p: &mut pico_args::Arguments) -> Result<Verbosity, UsageError> {
    let verbose = p.contains(["-v", "--verbose"]);
    let quiet = p.contains(["-q", "--quiet"]);
    match (verbose, quiet) {
        (true, true) => Err(UsageError(
            "--verbose and --quiet exclude each other".into(),
        )),
        (true, false) => Ok(Verbosity::Verbose),
        (false, true) => Ok(Verbosity::Quiet),
        (false, false) => Ok(Verbosity::Normal),
    }
}

/// Anything left over is a mistake; `context` (a subcommand's name) starts the message.
fn reject_rest(p: pico_args::Arguments, context: &str) -> Result<(), UsageError> {
    let rest = p.finish();
    let Some(first) = rest.first() else {
        return Ok(());
    };
    let shown = first.to_string_lossy();
    Err(UsageError(if !context.is_empty() {
        format!("{context}unexpected argument '{shown}'")
    } else if shown.starts_with('-') {
        format!("unknown option '{shown}' (see --help)")
    } else {
        format!("unexpected argument '{shown}' (see --help)")
    }))
}

/// Seconds as a decimal (`1`, `0.5`), between 10 ms and one day.
/// Seconds as a decimal (`1`, `0.5`, `0.025`: at most three decimals), between
/// [`MIN_OPTION_TIME`] and [`MAX_OPTION_TIME`]. Parsed by hand, in whole milliseconds.
pub(crate) fn parse_seconds(s: &str) -> Result<Duration, String> {
    let not_a_number = || format!("'{s}' is not a number of seconds (e.g. 1 or 0.5)");
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 6 || !digits(whole) || !digits(fraction) {
        return Err(not_a_number());
    }
    if fraction.len() > 3 || (s.contains('.') && fraction.is_empty()) {
        return Err(format!("'{s}': give seconds with at most three decimals"));
    }
    let whole: u64 = whole.parse().map_err(|_| not_a_number())?;
    let millis_text = format!("{fraction:0<3}");
    let millis: u64 = millis_text.parse().map_err(|_| not_a_number())?;
    let d = Duration::from_millis(whole * 1000 + millis);
    if d < MIN_OPTION_TIME || d > MAX_OPTION_TIME {
        return Err(format!(
            "'{s}' is out of range ({} ms to {} seconds)",
            MIN_OPTION_TIME.as_millis(),
            MAX_OPTION_TIME.as_secs()
        ));
    }
    Ok(d)
}

pub(crate) fn option_error(name: &str, e: pico_args::Error) -> UsageError {
    UsageError(match e {
        pico_args::Error::OptionWithoutAValue(_) => format!("option '{name}' needs a value"),
        // What pico-args calls a failed parse of a UTF-8 value: `cause` is our parser's
        // message, which names the value.
        pico_args::Error::Utf8ArgumentParsingFailed { cause, .. } => {
            format!("option '{name}': {cause}")
        }
        pico_args::Error::NonUtf8Argument => format!("option '{name}': not valid UTF-8"),
        pico_args::Error::ArgumentParsingFailed { cause } => {
            format!("option '{name}': {cause}")
        }
        other => format!("option '{name}': {other}"),
    })
}

pub const HELP: &str = "\
pacserve — share pacman package caches across a LAN

Usage: pacserve [OPTIONS]
       pacserve pacsrv [--port PORT] PACMAN_ARGS...
       pacserve print-pacman-conf [--port PORT] [--pacman-conf FILE]
       pacserve gen-secret

Options:
  --address ADDR              address to listen on (default: every address, IPv6 and
                              IPv4; 0.0.0.0 where IPv6 is off)
  --port PORT                 TCP port to listen on (default 15678; 0 picks a free one)
  --pacman-conf FILE          pacman configuration to read (default /etc/pacman.conf)
  --pacserver HOST:PORT       a static peer (repeatable; [IPv6]:PORT for IPv6)
  --peer-timeout SECS         time one peer may take to answer a lookup (default 1)
  --multicast                 find peers by UDP multicast (port 15679)
  --multicast-group ADDR      multicast group, IPv4 or IPv6 (repeatable, one of each;
                              default 239.255.15.78 and ff02::15:78)
  --multicast-port PORT       multicast UDP port (default 15679)
  --multicast-interface IF    interface to announce on: its name (both families), or
                              an IPv4 or IPv6 address of it (that family) (repeatable)
  --multicast-ttl N           multicast TTL (default 1: this LAN only)
  --multicast-interval SECS   re-announce period (default 60)
  --multicast-filter i:RE|x:RE
                              include/exclude discovered peers (repeatable)
  --hub DIR                   collect the LAN's packages into DIR and serve them (see HUB
                              in --more-help for --hub-interval, -arch, -pulls, -rate,
                              -keep, -max-size, -min-free)
  --secret-file FILE          the LAN's shared key: only hosts holding it are peers
                              (repeatable for a key change: the first signs)
  --allow CIDR                also answer these clients (repeatable); see --more-help
  -v, --verbose               also log lookup detail
  -q, --quiet                 log only errors
  -h, --help                  this text
  --more-help                 the full manual
  -V, --version               print the version

Point pacman at it by putting this first in /etc/pacman.d/mirrorlist:
  Server = http://localhost:15678/request/$repo/$arch
";

pub const MORE_HELP: &str = "\
pacserve — share pacman package caches across a LAN

ABOUT
  pacserve runs beside pacman on every host of a LAN. pacman's mirror list points at the
  local pacserve. When pacman asks for a package, pacserve
    1. serves it from the local pacman cache (CacheDir) if a complete copy is there;
    2. otherwise asks the other pacserves of the LAN (its peers) in parallel, and
       redirects pacman to the first that holds it (preferring one that also holds the
       package's .sig);
    3. otherwise redirects pacman to the first mirror of that repository (from
       pacman.conf) that has it. Plain-http mirrors are probed with HEAD; a mirror that
       fails a probe is skipped for a minute; https mirrors are redirected to unprobed;
    4. answers 404 when no mirror has it, so pacman moves on to its next Server.
  Databases (*.db, *.files and their signatures) are never served locally nor taken from
  peers: pacman is always redirected to the repository's first mirror, so it sees fresh
  databases (a repeat -Sy still gets its 304 Not Modified from the mirror).

  Only complete regular files directly inside a CacheDir are served: never *.part files,
  never pacman's temporary download directories, never symlinks, never anything outside the
  cache dirs. Requests are percent-decoded once and must name a single plain file.

  Routes (GET and HEAD):
    /request/$repo/$arch/FILE   pacman's route (the original pacserve path)
    /pacman/$repo/$arch/FILE    the later pacserve path; identical
    /cache/$repo/$arch/FILE     for pacman >= 6.1's CacheServer: cache, then LAN; a miss
                                is a plain 404 (see CACHESERVER)
    /peer/$repo/$arch/FILE      for other pacserves: this host's cache only, never
                                forwarded, so lookups cannot recurse or loop
    /lan/$repo/$arch/FILE       where another pacserve sends pacman: this host's cache,
                                then its mirrors, never a further peer, so redirects
                                between pacservers never chain
    /info                       the package files this host holds: NAME SIZE lines
    /                           status page for a browser: counters, peers, recent lookups
    /status.json                the same as JSON
    /metrics                    the same as Prometheus text (pacserve_* metrics)

  Log: one line per request on stderr (peer, method, path, status, bytes, outcome:
  local, peer, mirror, miss, bad, busy). --verbose adds lookup detail; --quiet only errors.

PACMAN.CONF
  pacserve reads the same pacman.conf as pacman (--pacman-conf, default /etc/pacman.conf):
  CacheDir (several allowed; default /var/cache/pacman/pkg/), Architecture, and each
  repository's Server and Include lines (mirrorlists; Include may be a glob). $repo and
  $arch are substituted as pacman does. Server lines that point back at this pacserve
  (its own port on localhost, 127.0.0.0/8, ::1, 0.0.0.0 or one of this host's addresses)
  are skipped, so there is no loop. SIGHUP re-reads the file; a broken file keeps the
  previous configuration.

  To use pacserve, put this line at the top of /etc/pacman.d/mirrorlist, and at the top of
  each repository section in /etc/pacman.conf that does not include the mirrorlist:

    Server = http://localhost:15678/request/$repo/$arch

  If pacserve is not running, pacman simply moves on to the next Server.

PACSERVE NETWORKS
  Every host runs its own pacserve and points its own pacman at localhost. Peers are
  found in two ways:
    --pacserver HOST:PORT   static peers, always asked, never filtered;
    --multicast             discovery: each pacserve announces itself to a multicast
                            group (default 239.255.15.78, and ff02::15:78 on every
                            IPv6 interface; UDP port 15679, TTL 1) at
                            start and every --multicast-interval seconds, asks who is
                            there at start (so running peers answer at once), and says
                            goodbye on a clean stop. A peer not heard from for three
                            intervals is forgotten.
  A lookup asks every live peer at once; each may take at most --peer-timeout. A peer
  that is down (refused) or hung (never answers) costs that timeout once, then is backed
  off (2 s, doubling, at most 2 min) until it answers again. Answers are remembered
  briefly (10 s for a hit, 2 s for a miss), and identical lookups in flight are merged,
  so a burst of parallel downloads costs one query per peer.
  Open TCP port 15678 to the LAN, and UDP port 15679 for the multicast group.

MULTICAST FILTERING
  --multicast-filter i:REGEX includes, x:REGEX excludes (repeatable). A server found by
  multicast, written as HOST:PORT (e.g. 10.0.0.7:15678), is rejected if there are
  inclusive filters and it matches none of them, or if it matches any exclusive filter.
  Static peers (--pacserver) are never filtered. Example, only the 10.0.0.0/24 hosts but
  not the laptop: --multicast-filter 'i:^10\\.0\\.0\\.' --multicast-filter 'x:^10\\.0\\.0\\.99:'

CACHESERVER (pacman >= 6.1)
  pacman 6.1 added CacheServer: tried before Server for packages, never for databases,
  and a 404 from it is neither logged nor counted against it. pacserve's /cache/ route
  is made for it: a local hit or a peer redirect as on /request/, but a LAN miss is a
  plain 404 (never a mirror redirect), so pacman moves on quietly to its own mirrors:

    CacheServer = http://localhost:15678/cache/$repo/$arch

  With pacman >= 6.1 prefer this; with older pacman use the Server line above.

PACSRV AND PRINT-PACMAN-CONF
  pacserve pacsrv [--port PORT] PACMAN_ARGS...
    runs pacman with pacserve inserted: a temporary copy of pacman.conf (the one given
    with --config, else /etc/pacman.conf) gets `Server = http://localhost:PORT/request/
    $repo/$arch` first in every repository; all other arguments go to pacman unchanged;
    pacman's exit code is returned and the temporary file removed. If no pacserve is
    listening on localhost:PORT it says so and runs pacman unchanged. $PACMAN names
    another pacman binary.
  pacserve print-pacman-conf [--port PORT] [--pacman-conf FILE]
    prints pacman.conf with that Server line first in every repository, for those who
    want to keep it (`pacserve print-pacman-conf > /etc/pacman.conf.new`).

CONFIGURATION FILE
  pacserve has no configuration file of its own: everything is a command-line option, and
  repositories, mirrors and cache directories come from pacman.conf. Under systemd, the
  unit reads extra options from /etc/conf.d/pacserve (PACSERVE_ARGS=...).

A LAN THAT LETS NO STRANGER IN (--secret-file)
  Without a secret every host of the LAN is trusted, as with the original pacserve. With
  one, only hosts holding the same key take part:
    (umask 077; pacserve gen-secret > /etc/pacserve/lan.key)   # once, on one host
    then copy that file to every host (mode 600) and start each pacserve with
    --secret-file /etc/pacserve/lan.key (under systemd: LoadCredential=, see the README).
  A key file holds 64 or more hex digits (what gen-secret prints), or else at least 32
  bytes taken as they are. pacserve refuses to start, naming the file, if it is missing,
  empty, too short, not a regular file, or readable by group or others (chmod 600).
  With a secret:
    - every multicast datagram (hello, query, bye) carries a timestamp, a nonce, the
      sender's address and an HMAC-SHA-256 over all of it. Datagrams without one, with a
      MAC of another key, from another address than they were signed for (a replay from
      another host), more than 120 s from this host's clock, or seen before are dropped
      and counted by reason. Keep the clocks of the LAN in step (NTP);
    - /peer/ and /info answer only requests with a valid X-Pacserve-Auth header (method,
      path, timestamp, nonce, MAC), which pacserve puts on its lookups, or loopback;
      others get 403. Static peers (--pacserver) sign their lookups too;
    - everything else (/request/, /pacman/, /cache/, /lan/, the status routes) answers
      loopback, the addresses of authenticated peers (pacman on a peer host is sent here
      by its own pacserve), and the --allow ranges; others get 403 and a log line.
  Without a secret, --allow CIDR (repeatable; 10.0.0.0/24, fd00::/8, or one address)
  alone restricts every route to loopback and those ranges.
  The status page, /status.json (auth) and /metrics (pacserve_lan_authenticated,
  pacserve_rejected_datagrams_total, pacserve_rejected_requests_total) show whether the
  LAN is authenticated and what was refused, by reason.
  A new key without a moment in which two hosts cannot understand each other: the first
  --secret-file signs, every one verifies, and SIGHUP reads the same files again (a broken
  one keeps the keys in use). Run each host with two files, e.g. --secret-file lan.key
  --secret-file lan.next.key, both holding the key in use. To change it: (1) write the
  new key to lan.next.key on each host and reload it (it accepts both, signs with the
  old); (2) once every host accepts both, on each host write the new key to lan.key and
  the old one to lan.next.key, and reload (it signs with the new); (3) once every host
  signs with the new, write the new key to lan.next.key too, and reload: the old key is
  gone. Under systemd a credential is copied when the service starts, so restart instead
  of reloading; the other hosts forget a restarting host for about a second.
  Not encrypted, and answers are not signed: a host that can intercept traffic (ARP
  spoofing) can still read or tamper with it; pacman's signatures still protect packages.

A HOSTILE LAN
  Connections: 1024 at once, 64 per source address (loopback and --pacserver addresses
  more); at the cap the longest-idle connection is closed to make room. Outgoing
  connections (lookups, probes): 256 at once. Discovered peers only from this host's
  subnets unless an inclusive --multicast-filter names them. The mirror walk for one
  package ends within 5 s. Requests from another pacserve are answered from this cache
  only; pacman is sent to a peer's /lan/ route, which never redirects to another peer.
  Repeated error lines: at most 5 per 10 s, then a count.

VERIFIED COPIES
  The sync databases pacman -Sy writes (DBPath/sync/REPO.db, gzip or plain tar) give every
  package's size and SHA-256; they are read at start and again when they change. A peer's
  copy of another size or SHA-256 is skipped (the status page's \"Peers' copies skipped\"
  table says which peer, which file, and why); a cached file of the wrong size or SHA-256
  is never served. Cached files are hashed once, in the background and on first request.
  An any package may come from a peer of another architecture when its SHA-256 matches.
  Without a database, names alone decide, as before.

HUB
  --hub DIR: collect the peers' packages into DIR (its own, never CacheDir) and serve them
  like the cache, for any repository and architecture; polled every --hub-interval SECS
  (60). First the files peers asked for, then the newest of --hub-arch ARCH (repeatable;
  default all), with their .sig; --hub-pulls N (2) at once, at most --hub-rate BYTES/s,
  resumed, checked (size, SHA-256, sync db), synced. --hub-keep N versions (2); over
  --hub-max-size SIZE (e.g. 200G) older versions go first, then the least recently served;
  --hub-min-free PERCENT (5) stays free. See the README's hub section.

SIGNALS
  SIGTERM, SIGINT: stop accepting, let responses in flight finish (30 s at most), say
  goodbye to the multicast group, exit 0. SIGHUP: reload pacman.conf and the secret files.

EXIT STATUS
  0 on a clean stop, 1 when the configuration or a secret file cannot be used or the
  port cannot be bound (the message says which file or address), 2 on a command-line
  mistake.
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
        assert_eq!(a.address, None, "every address, both families");
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
        assert_eq!(a.address, Some("::1".parse::<IpAddr>().unwrap()));
        assert_eq!(a.port, 8080);
        assert_eq!(a.pacman_conf, PathBuf::from("/tmp/x.conf"));
        assert_eq!(a.verbosity, Verbosity::Verbose);
    }

    #[test]
    fn peers_and_multicast() {
        let Command::Run(a) = parse(&[
            "--pacserver",
            "10.0.0.2:15678",
            "--pacserver",
            "[::1]:1",
            "--peer-timeout",
            "0.5",
            "--multicast",
            "--multicast-interface",
            "10.0.0.1",
            "--multicast-interface",
            "eth1",
            "--multicast-group",
            "ff02::99",
            "--multicast-ttl",
            "2",
            "--multicast-interval",
            "5",
            "--multicast-filter",
            "x:^10\\.0\\.0\\.9:",
        ])
        .unwrap() else {
            panic!("expected run")
        };
        assert_eq!(a.pacservers.len(), 2);
        assert_eq!(a.pacservers[1].authority(), "[::1]:1");
        assert_eq!(a.peer_timeout, Duration::from_millis(500));
        let m = a.multicast.expect("multicast on");
        assert_eq!(
            m.interfaces,
            [
                Interface::V4("10.0.0.1".parse().unwrap()),
                Interface::Name("eth1".into())
            ]
        );
        assert_eq!(m.groups, ["ff02::99".parse::<IpAddr>().unwrap()]);
        assert_eq!(m.ttl, Some(2));
        assert_eq!(m.interval, Some(Duration::from_secs(5)));
        assert!(!m.filters().allows("10.0.0.9:15678"));
        assert!(m.filters().allows("10.0.0.8:15678"));
        let Command::Run(plain) = parse(&[]).unwrap() else {
            panic!("expected run")
        };
        assert!(plain.multicast.is_none());
        assert!(plain.pacservers.is_empty());
    }

    #[test]
    fn subcommands() {
        assert_eq!(
            parse(&["pacsrv", "-Syu", "--noconfirm"]),
            Ok(Command::Pacsrv {
                port: DEFAULT_PORT,
                pacman_args: vec!["-Syu".into(), "--noconfirm".into()]
            })
        );
        assert_eq!(
            parse(&["pacsrv", "--port", "9", "-S", "--port"]),
            Ok(Command::Pacsrv {
                port: 9,
                pacman_args: vec!["-S".into(), "--port".into()]
            })
        );
        assert!(parse(&["pacsrv", "--port", "x"]).is_err());
        assert!(parse(&["pacsrv", "--port"]).is_err());
        assert_eq!(
            parse(&["print-pacman-conf", "--pacman-conf", "/a", "--port", "7"]),
            Ok(Command::PrintPacmanConf {
                port: 7,
                pacman_conf: PathBuf::from("/a")
            })
        );
        assert!(parse(&["print-pacman-conf", "extra"]).is_err());
    }

    #[test]
    fn secrets_and_allowed_clients() {
        let Command::Run(a) = parse(&[
            "--secret-file",
            "/etc/pacserve/new.key",
            "--secret-file",
            "/etc/pacserve/old.key",
            "--allow",
            "10.0.0.0/24",
            "--allow",
            "fd00::7",
        ])
        .unwrap() else {
            panic!("expected run")
        };
        assert_eq!(
            a.secret_files,
            [
                PathBuf::from("/etc/pacserve/new.key"),
                PathBuf::from("/etc/pacserve/old.key")
            ]
        );
        assert_eq!(a.allow.len(), 2);
        assert!(a.allow[0].contains("10.0.0.9".parse().unwrap()));
        assert_eq!(parse(&["gen-secret"]), Ok(Command::GenSecret));
        let Command::Run(plain) = parse(&[]).unwrap() else {
            panic!("expected run")
        };
        assert!(plain.secret_files.is_empty() && plain.allow.is_empty());
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
            (&["--pacserver", "nohost"], "'--pacserver'"),
            (&["--pacserver", "h:0"], "'--pacserver'"),
            (&["--peer-timeout", "0"], "'--peer-timeout'"),
            (&["--peer-timeout", "soon"], "'--peer-timeout'"),
            (&["--peer-timeout", "0.001"], "out of range"),
            (&["--peer-timeout", "1.2345"], "three decimals"),
            (&["--peer-timeout", "1."], "three decimals"),
            (&["--peer-timeout", ".5"], "not a number"),
            (&["--peer-timeout", "-1"], "not a number"),
            (&["--peer-timeout", "86401"], "out of range"),
            (
                &["--multicast", "--multicast-filter", "y:abc"],
                "'--multicast-filter'",
            ),
            (
                &["--multicast", "--multicast-filter", "i:("],
                "'--multicast-filter'",
            ),
            (
                &["--multicast", "--multicast-group", "x"],
                "'--multicast-group'",
            ),
            (
                &["--multicast", "--multicast-interval", "-1"],
                "'--multicast-interval'",
            ),
            (&["--multicast-ttl", "2"], "need --multicast"),
            (
                &[
                    "--multicast",
                    "--multicast-group",
                    "239.1.1.1",
                    "--multicast-group",
                    "239.1.1.2",
                ],
                "one IPv4 and one IPv6",
            ),
            (
                &[
                    "--multicast",
                    "--multicast-group",
                    "ff02::1",
                    "--multicast-group",
                    "ff02::2",
                ],
                "one IPv4 and one IPv6",
            ),
            (&["--secret-file"], "'--secret-file'"),
            (&["--secret-file", ""], "'--secret-file'"),
            (&["--allow", "10.0.0.7/24"], "did you mean 10.0.0.0/24?"),
            (&["--allow", "lan"], "'--allow'"),
            (
                &["gen-secret", "--length", "9"],
                "gen-secret: unexpected argument",
            ),
        ];
        for (args, needle) in cases {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            assert!(err.0.contains(needle), "{args:?}: {}", err.0);
        }
    }
}
