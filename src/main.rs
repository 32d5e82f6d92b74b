//! Wiring only: arguments, configuration, the listener, the server.

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;

use pacserve::cli::{self, Args, Command};
use pacserve::http::server::serve;
use pacserve::http::url::points_at_self;
use pacserve::pacman_conf::{self, PacmanConf};
use pacserve::resolve::RepoTable;
use pacserve::service::{Config, Service};
use pacserve::{error, sysinfo};

fn main() -> ExitCode {
    match cli::parse_args(std::env::args_os().skip(1).collect()) {
        Ok(Command::Help) => print!("{}", cli::HELP),
        Ok(Command::MoreHelp) => print!("{}", cli::MORE_HELP),
        Ok(Command::Version) => println!("pacserve {}", env!("CARGO_PKG_VERSION")),
        Ok(Command::Run(args)) => return run(args),
        Err(e) => {
            eprintln!("pacserve: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn run(args: Args) -> ExitCode {
    pacserve::log::set_verbosity(args.verbosity);
    let conf = match pacman_conf::load(&args.pacman_conf) {
        Ok(conf) => conf,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let bind = SocketAddr::new(args.address, args.port);
    let listener = match TcpListener::bind(bind) {
        Ok(l) => l,
        Err(e) => {
            error!("cannot listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(bind);
    let config = build_config(&conf, local.port());
    let listener = match smol::Async::new(listener) {
        Ok(l) => l,
        Err(e) => {
            error!("cannot use the listening socket: {e}");
            return ExitCode::FAILURE;
        }
    };
    let service = Arc::new(Service::new(config));
    error!("listening on {local}");
    smol::block_on(serve(listener, service));
    ExitCode::SUCCESS
}

/// The served configuration: cache dirs, and mirrors less those that point back at us.
fn build_config(conf: &PacmanConf, port: u16) -> Config {
    let own_addrs = sysinfo::local_addresses();
    let hostname = sysinfo::hostname();
    let (repos, warnings) = RepoTable::from_conf(conf, |url| {
        points_at_self(url, port, &own_addrs, hostname.as_deref())
    });
    for w in warnings {
        error!("warning: {}", w.0);
    }
    Config {
        cache_dirs: conf.cache_dirs.clone(),
        repos,
    }
}
