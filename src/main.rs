//! Wiring only: arguments, configuration, the listener, the server, signals.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use async_signal::{Signal, Signals};
use smol::stream::StreamExt;

use pacserve::app::mirrors::RepoTable;
use pacserve::app::{Config, Service};
use pacserve::config::cli::{self, Args, Command};
use pacserve::config::pacman_conf;
use pacserve::http::server::{Options, serve};
use pacserve::http::url::points_at_self;
use pacserve::peers::discovery::{self, Announce, DiscoveryStats, Kind, MulticastConfig};
use pacserve::peers::lookup::PeerLookup;
use pacserve::peers::table::PeerTable;
use pacserve::sys::{host, notify};
use pacserve::{error, info, pacsrv};

fn main() -> ExitCode {
    match cli::parse_args(std::env::args_os().skip(1).collect()) {
        Ok(Command::Help) => print!("{}", cli::HELP),
        Ok(Command::MoreHelp) => print!("{}", cli::MORE_HELP),
        Ok(Command::Version) => println!("pacserve {}", env!("CARGO_PKG_VERSION")),
        Ok(Command::Run(args)) => return run(args),
        Ok(Command::Pacsrv { port, pacman_args }) => return pacsrv::pacsrv(port, pacman_args),
        Ok(Command::PrintPacmanConf { port, pacman_conf }) => {
            return pacsrv::print_conf(&pacman_conf, port);
        }
        Err(e) => {
            eprintln!("pacserve: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn run(args: Args) -> ExitCode {
    pacserve::sys::log::set_verbosity(args.verbosity);
    raise_fd_limit();
    let bind = SocketAddr::new(args.address, args.port);
    // Load before binding, so a broken pacman.conf never leaves a half-started daemon.
    let conf = match pacman_conf::load(&args.pacman_conf) {
        Ok(conf) => conf,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(bind).and_then(smol::Async::new) {
        Ok(l) => l,
        Err(e) => {
            error!("cannot listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let port = listener
        .get_ref()
        .local_addr()
        .map_or(args.port, |a| a.port());
    let filters = args
        .multicast
        .as_ref()
        .map(|m| m.filters())
        .unwrap_or_default();
    let mut table = PeerTable::new(filters);
    for peer in &args.pacservers {
        table.add_static(peer.clone());
    }
    let table = Arc::new(Mutex::new(table));
    let lookup = PeerLookup::new(table.clone(), args.peer_timeout);
    // Installed before READY=1, so a signal sent right after readiness is never fatal.
    let signals = Signals::new([Signal::Term, Signal::Int, Signal::Hup]);
    if let Err(e) = &signals {
        error!("warning: cannot handle signals ({e}); SIGTERM will stop pacserve abruptly");
    }

    let discovery = match &args.multicast {
        None => None,
        Some(m) => match start_discovery(m, port, &conf) {
            Ok(d) => Some(d),
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        },
    };

    let discovery_stats = Arc::new(DiscoveryStats::default());
    let mut service = Service::new(build_config(&conf, &args.pacman_conf, port), lookup);
    if let Some((_, cfg, _)) = &discovery {
        service = service.with_multicast(
            format!("{}:{}", cfg.group, cfg.port),
            discovery_stats.clone(),
        );
    }
    let service = Arc::new(service);

    pacserve::sys::rt::block_on(pacserve::sys::rt::thread_count(), async {
        let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
        let server = pacserve::sys::rt::spawn(serve(
            listener,
            service.clone(),
            stop_rx.clone(),
            Options::default(),
        ));
        let discovery = discovery.map(|(disc, cfg, me)| {
            pacserve::sys::rt::spawn(discovery::run(
                disc,
                cfg,
                me,
                table.clone(),
                discovery_stats.clone(),
                stop_rx.clone(),
            ))
        });
        let shown = SocketAddr::new(args.address, port);
        info!("listening on {shown}");
        if let Err(e) = notify::notify("READY=1") {
            error!("warning: cannot notify systemd: {e}");
        }
        if let Ok(mut signals) = signals {
            while let Some(signal) = signals.next().await {
                match signal {
                    Ok(Signal::Hup) => reload(&service, &args.pacman_conf, port),
                    Ok(_) => break,
                    Err(e) => error!("signal handling failed: {e}"),
                }
            }
            info!("stopping: finishing responses in flight");
            let _ = notify::notify("STOPPING=1");
            stop_tx.close();
        }
        server.await;
        if let Some(d) = discovery {
            d.await;
        }
    });
    info!("stopped");
    ExitCode::SUCCESS
}

/// Each connection may hold a socket and an open package file; the usual soft limit of
/// 1024 descriptors is below what `MAX_CONNECTIONS` needs. Raise it toward the hard limit.
fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let want = (2 * pacserve::limits::MAX_CONNECTIONS + 64) as u64;
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
fn start_discovery(
    m: &cli::MulticastArgs,
    port: u16,
    conf: &pacman_conf::PacmanConf,
) -> Result<(discovery::Discovery, MulticastConfig, Announce), String> {
    let defaults = MulticastConfig::default();
    let cfg = MulticastConfig {
        group: m.group.unwrap_or(defaults.group),
        port: m.port.unwrap_or(defaults.port),
        interfaces: m.interfaces.clone(),
        ttl: m.ttl.unwrap_or(defaults.ttl),
        interval: m.interval.unwrap_or(defaults.interval),
    };
    let disc = discovery::open(&cfg).map_err(|e| format!("multicast: {e}"))?;
    let me = Announce {
        kind: Kind::Hello,
        instance: discovery::new_instance_id(),
        http_port: port,
        archs: conf
            .architectures
            .iter()
            .filter(|a| discovery::valid_arch(a))
            .cloned()
            .collect(),
    };
    info!(
        "multicast discovery on {}:{} (ttl {}, every {}s)",
        cfg.group,
        cfg.port,
        cfg.ttl,
        cfg.interval.as_secs()
    );
    Ok((disc, cfg, me))
}

/// SIGHUP: read pacman.conf again; keep the old configuration if the new one is broken.
fn reload(service: &Service, path: &Path, port: u16) {
    let _ = notify::notify("RELOADING=1");
    match pacman_conf::load(path) {
        Ok(conf) => {
            service.replace_config(build_config(&conf, path, port));
            info!("reloaded {}", path.display());
        }
        Err(e) => error!("reload failed, keeping the previous configuration: {e}"),
    }
    let _ = notify::notify("READY=1");
}

/// The served configuration: cache dirs, and mirrors less those that point back at us.
/// Warns (once per load) about what would make pacserve serve less than the user expects.
fn build_config(conf: &pacman_conf::PacmanConf, path: &Path, port: u16) -> Config {
    let own_addrs = host::local_addresses();
    let hostname = host::hostname();
    let (repos, warnings) = RepoTable::from_conf(conf, |url| {
        points_at_self(url, port, &own_addrs, hostname.as_deref())
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
    }
}
