//! Wiring only: arguments, configuration, the listener, the server, discovery, signals; and
//! the one place where an error becomes an exit code.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_io::Async;
use async_signal::{Signal, Signals};
use smol::stream::StreamExt;

use pacserve::app::mirrors::RepoTable;
use pacserve::app::{Config, Service};
use pacserve::auth::key::KeyError;
use pacserve::auth::{Guard, Lan};
use pacserve::config::cli::{self, Args, Command, MulticastArgs};
use pacserve::config::pacman_conf::{self, ConfError, PacmanConf};
use pacserve::http::listen;
use pacserve::http::server::{Options, serve};
use pacserve::http::url::points_at_self;
use pacserve::hub::Hub;
use pacserve::hub::options::{HubArgs, announced_archs};
use pacserve::limits::{NAME_RESOLVE_TIMEOUT, RELOAD_TIMEOUT};
use pacserve::peers::discovery::{
    self, Announce, Discovery, DiscoveryStats, Kind, MulticastConfig, OpenError,
};
use pacserve::peers::lookup::PeerLookup;
use pacserve::peers::table::PeerTable;
use pacserve::sys::{host, notify, rt};
use pacserve::{error, info, pacsrv};

/// Why the daemon could not start; each says what to fix. Exit code 1.
#[derive(Debug)]
enum StartError {
    Config(ConfError),
    Listen { addr: SocketAddr, source: io::Error },
    Multicast(OpenError),
    Hub(pacserve::error::IoError),
    Secret(KeyError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => e.fmt(f),
            StartError::Listen { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Multicast(e) => write!(f, "multicast: {e}"),
            StartError::Hub(e) => write!(f, "hub: {e}"),
            StartError::Secret(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Config(e) => Some(e),
            StartError::Listen { source, .. } => Some(source),
            StartError::Multicast(e) => Some(e),
            StartError::Hub(e) => Some(e),
            StartError::Secret(e) => Some(e),
        }
    }
}

fn main() -> ExitCode {
    let command = match cli::parse_args(std::env::args_os().skip(1).collect()) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("pacserve: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => print!("{}", cli::HELP),
        Command::MoreHelp => print!("{}", cli::MORE_HELP),
        Command::Version => println!("pacserve {}", env!("CARGO_PKG_VERSION")),
        Command::GenSecret => match pacserve::auth::key::gen_secret() {
            Ok(key) => print!("{key}"),
            Err(e) => {
                eprintln!("pacserve: gen-secret: reading the kernel's random source: {e}");
                return ExitCode::FAILURE;
            }
        },
        Command::Pacsrv { port, pacman_args } => return pacsrv::pacsrv(port, pacman_args),
        Command::PrintPacmanConf { port, pacman_conf } => {
            return pacsrv::print_conf(&pacman_conf, port);
        }
        Command::Run(args) => {
            if let Err(e) = run(*args) {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// The daemon: start every part, serve until SIGTERM/SIGINT, stop cleanly.
fn run(args: Args) -> Result<(), StartError> {
    pacserve::sys::log::set_verbosity(args.verbosity);
    raise_fd_limit();
    // Load before binding, so a broken pacman.conf never leaves a half-started daemon.
    let conf = pacman_conf::load(&args.pacman_conf).map_err(StartError::Config)?;
    let lan = Lan::load(&args.secret_files)
        .map_err(StartError::Secret)?
        .map(Arc::new);
    let hub = match &args.hub {
        Some(h) => Some(Arc::new(
            Hub::open((**h).clone(), lan.clone()).map_err(StartError::Hub)?,
        )),
        None => None,
    };
    let (listener, bound) = listen::listen(args.address, args.port)
        .map_err(|(addr, source)| StartError::Listen { addr, source })?;
    let listener = Async::new(listener).map_err(|source| StartError::Listen {
        addr: bound,
        source,
    })?;
    let port = bound.port();
    let table = Arc::new(Mutex::new(peer_table(&args)));
    // Installed before READY=1, so a signal sent right after readiness is never fatal.
    let signals = Signals::new([Signal::Term, Signal::Int, Signal::Hup]);
    if let Err(e) = &signals {
        error!("warning: cannot handle signals ({e}); SIGTERM will stop pacserve abruptly");
    }
    let discovery = match &args.multicast {
        None => None,
        Some(m) => Some(
            open_discovery(m, port, &conf, args.hub.as_deref()).map_err(StartError::Multicast)?,
        ),
    };
    let discovery_stats = Arc::new(DiscoveryStats::default());
    let mut service = Service::new(
        build_config(&conf, &args.pacman_conf, port),
        PeerLookup::new(table.clone(), args.peer_timeout).signed_by(lan.clone()),
    )
    .with_guard(Guard::new(lan.clone(), args.allow.clone()));
    log_access(&args, lan.as_deref());
    if let Some((disc, _, _)) = &discovery {
        service = service.with_multicast(disc.to_string(), discovery_stats.clone());
    }
    if let Some(h) = &hub {
        info!("hub: collecting into {}", h.dir().display());
        service = service.with_hub(h.clone());
    }
    service.read_databases();
    let service = Arc::new(service);

    rt::block_on(rt::thread_count(), async {
        let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
        let upkeep = rt::spawn(service.clone().upkeep());
        if let Some(h) = hub {
            let (table, verify) = (table.clone(), service.verifier().clone());
            // Pulls under way stop with the process; their temporaries are resumed next start.
            let _ = std::thread::Builder::new()
                .name("hub".into())
                .spawn(move || h.run(table, verify));
        }
        let server = rt::spawn(serve(
            listener,
            service.clone(),
            stop_rx.clone(),
            server_options(&args),
        ));
        let discovery = discovery.map(|(disc, cfg, me)| {
            let stats = discovery_stats.clone();
            rt::spawn(discovery::run(
                disc,
                cfg,
                me,
                table.clone(),
                stats,
                lan.clone(),
                stop_rx.clone(),
            ))
        });
        info!("listening on {bound}");
        if let Err(e) = notify::notify("READY=1") {
            error!("warning: cannot notify systemd: {e}");
        }
        // SIGHUPs are coalesced: one reload runs, at most one more waits.
        let (reload_tx, reload_rx) = smol::channel::bounded::<()>(1);
        let reloader = rt::spawn(reloader(
            reload_rx,
            service.clone(),
            args.pacman_conf.clone(),
            port,
        ));
        if let Ok(signals) = signals {
            wait_for_stop(signals, &reload_tx).await;
            info!("stopping: finishing responses in flight");
            let _ = notify::notify("STOPPING=1");
            stop_tx.close();
        }
        server.await;
        if let Some(d) = discovery {
            d.await;
        }
        drop(reload_tx);
        drop(upkeep);
        // A reload stuck on a slow filesystem must not hold up the exit.
        drop(reloader);
    });
    info!("stopped");
    Ok(())
}

/// The server's limits: the configured peers (their IP literals) may hold more connections
/// than other hosts.
fn server_options(args: &Args) -> Options {
    let mut options = Options::default();
    options.limits.trusted = args
        .pacservers
        .iter()
        .filter_map(|p| p.host.parse::<std::net::IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    options
}

/// Static peers, and the filters discovered ones must pass.
fn peer_table(args: &Args) -> PeerTable {
    let filters = args
        .multicast
        .as_ref()
        .map(MulticastArgs::filters)
        .unwrap_or_default();
    let mut table = PeerTable::new(filters);
    for peer in &args.pacservers {
        table.add_static(peer.clone());
    }
    table
}

/// Until SIGTERM or SIGINT; a SIGHUP meanwhile asks for a reload, which runs on its own
/// task, so a slow one never delays a stop.
async fn wait_for_stop(mut signals: Signals, reload: &smol::channel::Sender<()>) {
    while let Some(signal) = signals.next().await {
        match signal {
            Ok(Signal::Hup) => {
                // Full: a reload is already waiting, and it will read the newest file.
                let _ = reload.try_send(());
            }
            Ok(_) => return,
            Err(e) => error!("signal handling failed: {e}"),
        }
    }
}

/// Reloads, one at a time, until the senders are gone.
async fn reloader(
    asked: smol::channel::Receiver<()>,
    service: Arc<Service>,
    conf: PathBuf,
    port: u16,
) {
    while asked.recv().await.is_ok() {
        reload(&service, &conf, port).await;
    }
}

/// Each connection may hold a socket and an open package file, plus the open-file cache and
/// the outgoing connections; the usual soft limit of 1024 descriptors is below that. Raise it
/// toward the hard limit.
fn raise_fd_limit() {
    use pacserve::limits::{MAX_CONNECTIONS, MAX_OUTGOING_CONNECTIONS, OPEN_CACHE_MAX, SPARE_FDS};
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let want = (2 * MAX_CONNECTIONS + OPEN_CACHE_MAX + MAX_OUTGOING_CONNECTIONS + SPARE_FDS) as u64;
    let lim = getrlimit(Resource::Nofile);
    if lim.current.is_some_and(|c| c >= want) {
        return;
    }
    let target = lim.maximum.map_or(want, |m| m.min(want));
    let raised = Rlimit {
        current: Some(target),
        maximum: lim.maximum,
    };
    if let Err(e) = setrlimit(Resource::Nofile, raised) {
        error!("warning: cannot raise the open-file limit to {target}: {e}");
    }
}

/// Open the multicast socket (before READY=1, so a bad group or interface stops start-up).
fn open_discovery(
    m: &MulticastArgs,
    port: u16,
    conf: &PacmanConf,
    hub: Option<&HubArgs>,
) -> Result<(Discovery, MulticastConfig, Announce), OpenError> {
    let defaults = MulticastConfig::default();
    // Groups given: those families only; none: both defaults.
    let given = |v4: bool| m.groups.iter().find(|g| g.is_ipv4() == v4).copied();
    let (group, group6) = if m.groups.is_empty() {
        (defaults.group, defaults.group6)
    } else {
        let v4 = given(true).and_then(|g| match g {
            IpAddr::V4(g) => Some(g),
            IpAddr::V6(_) => None,
        });
        let v6 = given(false).and_then(|g| match g {
            IpAddr::V6(g) => Some(g),
            IpAddr::V4(_) => None,
        });
        (v4, v6)
    };
    let cfg = MulticastConfig {
        group,
        group6,
        port: m.port.unwrap_or(defaults.port),
        interfaces: m.interfaces.clone(),
        ttl: m.ttl.unwrap_or(defaults.ttl),
        interval: m.interval.unwrap_or(defaults.interval),
    };
    let disc = discovery::open(&cfg)?;
    let me = Announce {
        kind: Kind::Hello,
        instance: discovery::new_instance_id(),
        http_port: port,
        // pacman.conf's architectures already passed the one name rule; a hub's too.
        archs: announced_archs(&conf.architectures, hub),
        // Filled in by the discovery loop.
        addrs: Vec::new(),
    };
    info!(
        "multicast discovery on {disc} (ttl {}, every {}s)",
        cfg.ttl,
        cfg.interval.as_secs()
    );
    Ok((disc, cfg, me))
}

/// Say who this pacserve answers.
fn log_access(args: &Args, lan: Option<&Lan>) {
    let allow: Vec<String> = args.allow.iter().map(|a| a.to_string()).collect();
    match lan {
        Some(lan) => info!(
            "LAN authenticated: {} key(s) from --secret-file; answering loopback, \
             authenticated peers{}{}",
            lan.keys().all().len(),
            if allow.is_empty() { "" } else { " and " },
            allow.join(", ")
        ),
        None if !allow.is_empty() => info!(
            "no --secret-file: the LAN is not authenticated; answering loopback and {}",
            allow.join(", ")
        ),
        None => {}
    }
}

/// SIGHUP: read pacman.conf again, off the executor and within [`RELOAD_TIMEOUT`]; keep the
/// old configuration if the new one is broken or too slow to read. The key files are read
/// again too (a broken one keeps the keys in use).
async fn reload(service: &Service, path: &Path, port: u16) {
    let _ = notify::notify("RELOADING=1");
    if let Some(lan) = service.guard().lan().cloned() {
        let reloading = smol::unblock(move || lan.reload());
        match rt::until(Instant::now() + RELOAD_TIMEOUT, reloading).await {
            Some(Ok(n)) => info!("reloaded the secret files: {n} key(s)"),
            Some(Err(e)) => error!("reload failed, keeping the keys in use: {e}"),
            None => {
                error!("reload failed, keeping the keys in use: the secret files took too long")
            }
        }
    }
    let owned = path.to_path_buf();
    let loading = smol::unblock(move || {
        pacman_conf::load(&owned).map(|conf| build_config(&conf, &owned, port))
    });
    let loaded = rt::until(Instant::now() + RELOAD_TIMEOUT, loading).await;
    match loaded {
        Some(Ok(config)) => {
            service.replace_config(config);
            info!("reloaded {}", path.display());
        }
        Some(Err(e)) => error!("reload failed, keeping the previous configuration: {e}"),
        None => error!(
            "reload failed, keeping the previous configuration: {} took longer than {} s to read",
            path.display(),
            RELOAD_TIMEOUT.as_secs()
        ),
    }
    let _ = notify::notify("READY=1");
}

/// The served configuration: cache dirs, and mirrors less those that point back at us.
/// Warns (once per load) about what would make pacserve serve less than the user expects.
fn build_config(conf: &PacmanConf, path: &Path, port: u16) -> Config {
    let own_addrs = host::local_addresses();
    let hostname = host::hostname();
    // Names on our own port could be us (an alias, an FQDN): look them up, bounded.
    let names = RepoTable::names_on_port(conf, port);
    let resolved = host::resolve(&names, NAME_RESOLVE_TIMEOUT);
    let (repos, warnings) = RepoTable::from_conf(conf, |url| {
        let addrs = resolved.get(&url.host).map_or(&[][..], Vec::as_slice);
        points_at_self(url, port, &own_addrs, hostname.as_deref(), addrs)
    });
    for w in warnings {
        error!("warning: {}: {}", path.display(), w.0);
    }
    for dir in &conf.cache_dirs {
        if let Some(problem) = pacserve::app::local::cache_dir_problem(dir) {
            error!("warning: {}: {problem}", path.display());
        }
    }
    Config {
        cache_dirs: conf.cache_dirs.clone(),
        repos,
        db_path: conf.db_path.clone(),
    }
}
