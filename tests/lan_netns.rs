//! A real LAN of pacserves, one per Linux network namespace, finding each other by multicast.
//!
//! Each test builds its own LAN (as root): a "switch" namespace holding a Linux bridge, and
//! hosts A, B, C (D joins later) plus a mirror host M, each a namespace with a veth pair whose
//! other end is a port of that bridge. Addresses are `10.231.N.I/24` (N per test), `lo` is up
//! in each host, and each host has a `224.0.0.0/4` route on its veth (so it can join the
//! multicast group) and no default route. Traffic stays inside these namespaces.
//!
//! Every host runs the real pacserve (`--multicast`, port 15678) with its own cache and a
//! pacman.conf whose `[core]` lists the mirror; the mirror is a real HTTP server (a small
//! Python `http.server`, no name lookups) inside M that logs every request; the real pacman
//! runs inside host A and talks to A's pacserve on 127.0.0.1.
//!
//! What the tests show:
//! - a package only B holds reaches A's pacman from B, byte-identical, the mirror never asked;
//!   databases always come from the mirror and no peer is asked for one;
//! - a host started later is discovered within seconds and serves what it holds;
//! - a host killed with SIGKILL never stalls a download (one refused lookup, then backoff),
//!   is forgotten after three silent intervals, and is not tried again;
//! - a host stopped with SIGTERM says goodbye and is forgotten at once, and exits 0;
//! - `--multicast-filter` keeps a host out: never added, never asked.
//!
//! Namespaces are named `psl-PID-TEST-HOST`; each test removes its own in `Drop`, and the first
//! test to start removes those a crashed earlier run left behind (owner PID no longer a test).

mod common;

use std::cell::RefCell;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use common::*;

/// Prefix of every namespace these tests make.
const PREFIX: &str = "psl-";
/// What `/proc/PID/comm` of this test binary starts with (`lan_netns-HASH`, cut at 15 bytes).
const COMM: &str = "lan_netns";
/// pacserve's HTTP port on every host (each host has its own network stack).
const PORT: u16 = 15678;
/// The mirror's HTTP port inside M.
const MIRROR_PORT: u16 = 8080;
/// Host numbers: the last byte of each host's address.
const A: u8 = 11;
const B: u8 = 12;
const C: u8 = 13;
const D: u8 = 14;
const M: u8 = 100;

/// Longest one `ip` command may take.
const IP_LIMIT: Duration = Duration::from_secs(10);
/// Longest a daemon may take to say it listens.
const READY_LIMIT: Duration = Duration::from_secs(10);
/// Longest one pacman run may take.
const PACMAN_RUN_LIMIT: Duration = Duration::from_secs(60);
/// How long a running peer may take to be discovered (it announces itself at start).
const DISCOVER_LIMIT: Duration = Duration::from_secs(10);
/// How long a silent peer may take to be forgotten (3 intervals of 1 s, checked every 1 s).
const FORGET_LIMIT: Duration = Duration::from_secs(15);
/// How long a goodbye may take to be heard (the interval is 30 s in that test, so expiry
/// cannot explain a forget within this).
const GOODBYE_LIMIT: Duration = Duration::from_secs(5);
/// How long a log line may lag behind the answer it describes.
const LOG_WAIT: Duration = Duration::from_secs(5);
/// How long pacserve may take to exit after SIGTERM with no request in flight.
const EXIT_LIMIT: Duration = Duration::from_secs(15);
/// Payload of the test packages: a few KiB keeps every test quick.
const PAYLOAD: usize = 4096;

/// The mirror: `http.server` serving a directory, GET/HEAD/If-Modified-Since, no name lookups
/// (`server_bind` would call getfqdn, which waits for a resolver that cannot answer), every
/// request logged as `CLIENT METHOD PATH STATUS` before the answer goes out.
const MIRROR_PY: &str = r#"
import functools, http.server, socketserver, sys, threading

addr, port, root, log_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
lock = threading.Lock()
log = open(log_path, "a", buffering=1)

def note(line):
    with lock:
        log.write(line + "\n")
        log.flush()

class Handler(http.server.SimpleHTTPRequestHandler):
    timeout = 10

    def log_request(self, code="-", size="-"):
        note("%s %s %s %s" % (self.client_address[0], self.command, self.path, int(code)))

    def log_message(self, format, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name = addr
        self.server_port = port

server = Server((addr, port), functools.partial(Handler, directory=root))
note("READY")
server.serve_forever()
"#;

// ---------------------------------------------------------------------------------------------
// Namespaces

/// `ip ARGS`, bounded.
fn ip(args: &[&str]) -> Ran {
    run_bounded(Command::new("ip").args(args), IP_LIMIT)
}

/// `ip ARGS`, which must succeed.
fn ip_ok(args: &[&str]) {
    let ran = ip(args);
    assert!(
        ran.success(),
        "ip {} failed: {}",
        args.join(" "),
        ran.text()
    );
}

/// True when `pid` is a running instance of this test binary.
fn test_process_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with(COMM))
}

/// Remove namespaces that a crashed earlier run left behind: those with our prefix whose
/// owner (the PID in the name) is no longer a running test. Whatever still runs inside them
/// was started by that run; it is killed by pid first.
fn remove_leftovers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let list = ip(&["netns", "list"]);
        for line in list.stdout.lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let owner: Option<u32> = rest.split('-').next().and_then(|p| p.parse().ok());
            if !owner.is_none_or(owner_gone) {
                continue;
            }
            let pids = ip(&["netns", "pids", name]);
            for pid in pids
                .stdout
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
            {
                if let Some(pid) = Pid::from_raw(pid) {
                    let _ = kill_process(pid, Signal::KILL);
                }
            }
            let _ = ip(&["netns", "del", name]);
        }
        remove_leftover_dirs();
    });
}

/// True when `pid` is not this process and not another running instance of this test.
fn owner_gone(pid: u32) -> bool {
    pid != std::process::id() && !test_process_alive(pid)
}

/// Remove the temporary directories of a crashed earlier run: the harness names them
/// `pacserve-test-PID-...-TAG`; a PID whose directories include one of our LAN tags
/// (`...-psl-TEST`) was this test binary, so all its directories (pacman clients too) go.
fn remove_leftover_dirs() {
    let tmp = std::env::temp_dir();
    let Ok(entries) = fs::read_dir(&tmp) else {
        return;
    };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pacserve-test-"))
        .collect();
    let pid_of =
        |n: &str| -> Option<u32> { n["pacserve-test-".len()..].split('-').next()?.parse().ok() };
    let crashed: Vec<u32> = names
        .iter()
        .filter(|n| n.contains(&format!("-{PREFIX}")))
        .filter_map(|n| pid_of(n))
        .filter(|&p| owner_gone(p))
        .collect();
    for n in &names {
        if pid_of(n).is_some_and(|p| crashed.contains(&p)) {
            let _ = fs::remove_dir_all(tmp.join(n));
        }
    }
}

/// The namespaces of one test: a switch with a bridge, and hosts plugged into it. All are
/// deleted on drop (which also removes their veths and the bridge).
struct Netns {
    prefix: String,
    subnet: u8,
    made: RefCell<Vec<String>>,
}

impl Netns {
    fn new(tag: &str, subnet: u8) -> Netns {
        common::preflight::require();
        remove_leftovers();
        let net = Netns {
            prefix: format!("{PREFIX}{}-{tag}-", std::process::id()),
            subnet,
            made: RefCell::new(Vec::new()),
        };
        let sw = net.add("sw");
        ip_ok(&[
            "-n",
            &sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip_ok(&["-n", &sw, "link", "set", "br0", "up"]);
        net
    }

    /// `ip netns add`, recorded first so that `Drop` removes it even if a later step fails.
    fn add(&self, host: &str) -> String {
        let name = format!("{}{host}", self.prefix);
        // A namespace of this very name would be ours from this process: none is reused.
        self.made.borrow_mut().push(name.clone());
        ip_ok(&["netns", "add", &name]);
        name
    }

    fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    fn addr(&self, i: u8) -> String {
        format!("10.231.{}.{i}", self.subnet)
    }

    /// A host namespace `host` with address `.i`, plugged into the switch.
    fn add_host(&self, host: &str, i: u8) -> String {
        let ns = self.add(host);
        let sw = self.switch();
        let port = format!("v-{host}");
        let cidr = format!("{}/24", self.addr(i));
        ip_ok(&["-n", &ns, "link", "set", "lo", "up"]);
        ip_ok(&[
            "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &sw,
        ]);
        ip_ok(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
        ip_ok(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
        ip_ok(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip_ok(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in self.made.borrow().iter().rev() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes inside namespaces

/// A long-running process started with `ip netns exec NS PROG` (which execs PROG under the same
/// pid), its output in a file; killed by pid and reaped on drop.
struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Daemon {
    fn spawn(name: &str, ns: &str, prog: &str, args: &[String], log: PathBuf) -> Daemon {
        let out = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file handle");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, prog])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} in {ns}: {e}"));
        Daemon {
            name: name.to_string(),
            child,
            log,
            status: None,
        }
    }

    /// Read the log from `log` rather than from the captured output.
    fn with_log(mut self, log: PathBuf) -> Daemon {
        self.log = log;
        self
    }

    fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Wait (bounded) for `needle` in the log; false if the process exits or time runs out.
    fn wait_log(&mut self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || {
            self.log().contains(needle) || matches!(self.child.try_wait(), Ok(Some(_)))
        }) && self.log().contains(needle)
    }

    fn signal(&self, sig: Signal) {
        assert!(self.status.is_none(), "{} has already exited", self.name);
        let pid = Pid::from_child(&self.child);
        kill_process(pid, sig).unwrap_or_else(|e| panic!("signal {}: {e}", self.name));
    }

    /// Wait (bounded) for the process to exit; None if it is still running at `limit`.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while self.status.is_none() && Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(s)) => self.status = Some(s),
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        self.status
    }

    /// SIGKILL by pid and reap.
    fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A request line of pacserve's log, with the client's address.
#[derive(Debug)]
struct Req {
    from: String,
    line: LogLine,
}

/// `pacserve: PEER METHOD PATH STATUS BYTES OUTCOME` lines of `log`.
fn request_lines(log: &str) -> Vec<Req> {
    log.lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            let peer: std::net::SocketAddr = t.get(1)?.parse().ok()?;
            let rest = t.get(2..7)?;
            Some(Req {
                from: peer.ip().to_string(),
                line: LogLine {
                    method: rest[0].to_string(),
                    path: rest[1].to_string(),
                    status: rest[2].parse().ok()?,
                    bytes: rest[3].parse().ok()?,
                    outcome: rest[4].to_string(),
                },
            })
        })
        .collect()
}

fn requests(d: &Daemon) -> Vec<Req> {
    request_lines(&d.log())
}

/// Wait (bounded) for a request line of `d` matching `pred`.
fn wait_request(d: &Daemon, pred: impl Fn(&Req) -> bool) -> Option<Req> {
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        if let Some(r) = requests(d).into_iter().find(|r| pred(r)) {
            return Some(r);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// One line of the mirror's log: `CLIENT METHOD PATH STATUS`.
#[derive(Debug)]
struct MirrorHit {
    from: String,
    method: String,
    path: String,
    status: u16,
}

// ---------------------------------------------------------------------------------------------
// The LAN

struct Pkg {
    name: String,
    file: String,
    bytes: Vec<u8>,
}

impl Pkg {
    fn request_path(&self) -> String {
        format!("/request/core/x86_64/{}", self.file)
    }

    fn peer_path(&self) -> String {
        format!("/peer/core/x86_64/{}", self.file)
    }

    fn mirror_path(&self) -> String {
        format!("/core/os/x86_64/{}", self.file)
    }
}

/// Switch, mirror host and the packages. Fields drop in order: the mirror process, then the
/// namespaces, then the directory.
struct Lan {
    mirror: Daemon,
    net: Netns,
    pkgs: Vec<Pkg>,
    dir: TempDir,
}

/// One host: its namespace, address, cache and pacman.conf.
struct Host {
    name: String,
    ns: String,
    ip: String,
    cache: PathBuf,
    conf: PathBuf,
    dir: PathBuf,
}

impl Lan {
    /// Mirror M holding repo `core` with `names` (all in its database).
    fn new(tag: &str, subnet: u8, names: &[&str]) -> Lan {
        let dir = TempDir::new(&format!("{PREFIX}{tag}"));
        let root = dir.mkdir("mirror");
        let repo_dir = dir.mkdir("mirror/core/os/x86_64");
        let paths: Vec<PathBuf> = names
            .iter()
            .map(|n| make_package(&repo_dir, n, "1.0-1", PAYLOAD))
            .collect();
        repo_add(&repo_dir.join("core.db.tar.gz"), &paths);
        let pkgs = paths
            .iter()
            .zip(names)
            .map(|(p, n)| Pkg {
                name: n.to_string(),
                file: p.file_name().unwrap().to_string_lossy().into_owned(),
                bytes: fs::read(p).expect("read built package"),
            })
            .collect();

        let net = Netns::new(tag, subnet);
        let ns = net.add_host("m", M);
        let script = dir.join("mirror.py");
        fs::write(&script, MIRROR_PY).expect("write mirror.py");
        let args = [
            script.display().to_string(),
            net.addr(M),
            MIRROR_PORT.to_string(),
            root.display().to_string(),
            dir.join("mirror.log").display().to_string(),
        ];
        // The script writes its own log; `mirror.out` only catches a traceback.
        let mut mirror = Daemon::spawn("mirror", &ns, python(), &args, dir.join("mirror.out"))
            .with_log(dir.join("mirror.log"));
        let ready = wait_until(READY_LIMIT, || {
            mirror.log().lines().any(|l| l == "READY")
                || matches!(mirror.child.try_wait(), Ok(Some(_)))
        }) && mirror.log().lines().any(|l| l == "READY");
        assert!(
            ready,
            "the mirror did not start within {READY_LIMIT:?}:\n{}",
            fs::read_to_string(dir.join("mirror.out")).unwrap_or_default()
        );
        Lan {
            mirror,
            net,
            pkgs,
            dir,
        }
    }

    fn pkg(&self, name: &str) -> &Pkg {
        self.pkgs
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no package {name} in this LAN"))
    }

    fn mirror_server(&self) -> String {
        format!("http://{}:{MIRROR_PORT}/$repo/os/$arch", self.net.addr(M))
    }

    /// Host `name` with address `.i`: an empty cache and a pacman.conf listing the mirror.
    fn host(&self, name: &str, i: u8) -> Host {
        let ns = self.net.add_host(name, i);
        let dir = self.dir.mkdir(name);
        let cache = self.dir.mkdir(format!("{name}/cache"));
        let conf = write_server_conf(&dir, &[&cache], &[("core", &[self.mirror_server()])]);
        Host {
            name: name.to_string(),
            ns,
            ip: self.net.addr(i),
            cache,
            conf,
            dir,
        }
    }

    fn mirror_hits(&self) -> Vec<MirrorHit> {
        self.mirror
            .log()
            .lines()
            .filter_map(|l| {
                let t: Vec<&str> = l.split_whitespace().collect();
                let [from, method, path, status] = t[..] else {
                    return None;
                };
                Some(MirrorHit {
                    from: from.to_string(),
                    method: method.to_string(),
                    path: path.to_string(),
                    status: status.parse().ok()?,
                })
            })
            .collect()
    }

    /// Requests of any method for the mirror path of `pkg`.
    fn mirror_asked(&self, pkg: &Pkg) -> usize {
        let path = pkg.mirror_path();
        self.mirror_hits().iter().filter(|h| h.path == path).count()
    }

    /// Wait (bounded) for the mirror to log `method path status` from `from`.
    fn wait_mirror(&self, from: &str, method: &str, path: &str, status: u16) -> bool {
        wait_until(LOG_WAIT, || {
            self.mirror_hits().iter().any(|h| {
                h.from == from && h.method == method && h.path == path && h.status == status
            })
        })
    }

    /// Everything a failure message needs.
    fn dump(&self, daemons: &[&Daemon]) -> String {
        let mut s = String::new();
        for d in daemons {
            s.push_str(&format!("--- {}:\n{}", d.name, d.log()));
        }
        s.push_str(&format!("--- mirror:\n{}", self.mirror.log()));
        s
    }
}

/// The system python (not a shim script, so `ip netns exec` execs the interpreter itself).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

impl Host {
    fn hold(&self, pkg: &Pkg) {
        let p = self.cache.join(&pkg.file);
        fs::write(&p, &pkg.bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// `PEER discovered` as pacserve logs it for this host.
    fn discovered(&self) -> String {
        format!("peer {}:{PORT} discovered", self.ip)
    }

    fn authority(&self) -> String {
        format!("{}:{PORT}", self.ip)
    }

    /// pacserve on all addresses, port 15678, multicast every `interval` seconds, verbose.
    fn start(&self, interval: u32, extra: &[&str]) -> Daemon {
        let mut args: Vec<String> = [
            "--address",
            "0.0.0.0",
            "--port",
            &PORT.to_string(),
            "--pacman-conf",
            &self.conf.display().to_string(),
            "--multicast",
            "--multicast-interval",
            &interval.to_string(),
            "--verbose",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let name = format!("pacserve {}", self.name);
        let log = self.dir.join("pacserve.log");
        let mut d = Daemon::spawn(&name, &self.ns, env!("CARGO_BIN_EXE_pacserve"), &args, log);
        assert!(
            d.wait_log("listening on", READY_LIMIT),
            "{name} did not start within {READY_LIMIT:?}:\n{}",
            d.log()
        );
        d
    }

    /// `pacman --config CONF --noprogressbar ARGS` inside this host, bounded.
    fn pacman(&self, client: &PacmanClient, args: &[&str]) -> Ran {
        let conf = client.conf_path().display().to_string();
        run_bounded(
            Command::new("ip")
                .args(["netns", "exec", &self.ns, "pacman", "--config", &conf])
                .arg("--noprogressbar")
                .args(args)
                .env("LC_ALL", "C"),
            PACMAN_RUN_LIMIT,
        )
    }
}

/// A pacman client whose only server is the pacserve of the host it runs in.
fn local_client() -> PacmanClient {
    PacmanClient::new(
        "core",
        &[format!("http://127.0.0.1:{PORT}/request/$repo/$arch")],
    )
}

fn assert_ran_ok(ran: &Ran, what: &str, lan: &Lan, daemons: &[&Daemon]) {
    assert!(
        ran.success(),
        "{what} failed ({:?}, timed out: {}):\n{}\n{}",
        ran.status,
        ran.timed_out,
        ran.text(),
        lan.dump(daemons)
    );
}

/// pacman on `host` downloads `pkg` (-Sw) and the copy in its cache is byte-identical.
fn download(host: &Host, client: &PacmanClient, pkg: &Pkg, lan: &Lan, daemons: &[&Daemon]) -> Ran {
    let ran = host.pacman(client, &["-Sw", "--noconfirm", &pkg.name]);
    assert_ran_ok(&ran, &format!("pacman -Sw {}", pkg.name), lan, daemons);
    assert!(
        client.cached(&pkg.file).as_deref() == Some(&pkg.bytes[..]),
        "{} in the client's cache is not byte-identical to the package\n{}",
        pkg.file,
        lan.dump(daemons)
    );
    ran
}

/// The request line of `d` for `path` with `status` and `outcome` from `from`, waited for.
fn expect_request(
    d: &Daemon,
    from: &str,
    method: &str,
    path: &str,
    status: u16,
    outcome: &str,
) -> Req {
    wait_request(d, |r| {
        r.from == from
            && r.line.method == method
            && r.line.path == path
            && r.line.status == status
            && r.line.outcome == outcome
    })
    .unwrap_or_else(|| {
        panic!(
            "no `{from} {method} {path} {status} .. {outcome}` line in {}'s log:\n{}",
            d.name,
            d.log()
        )
    })
}

/// The verbose lines of `d`'s log saying that `peer` failed a lookup.
fn failures(log: &str, peer: &Host) -> usize {
    let needle = format!("peer {} failed", peer.authority());
    log.lines().filter(|l| l.contains(&needle)).count()
}

/// The N of `...; next try in Ns` (pacserve's backoff after a failed lookup), at most 2 min.
fn backoff_secs(line: &str) -> Option<u64> {
    let n: u64 = line
        .split("next try in ")
        .nth(1)?
        .trim()
        .strip_suffix('s')?
        .parse()
        .ok()?;
    Some(n.min(120))
}

/// pacman -Sy on `host`: the database comes from the mirror (redirected by the host's
/// pacserve), and no peer is asked for it.
fn sync_from_mirror(lan: &Lan, host: &Host, client: &PacmanClient, ps: &Daemon, peers: &[&Daemon]) {
    let mut all: Vec<&Daemon> = vec![ps];
    all.extend_from_slice(peers);
    let ran = host.pacman(client, &["-Sy", "--noconfirm"]);
    assert_ran_ok(&ran, "pacman -Sy", lan, &all);
    assert!(client.sync_db().exists(), "no synced core.db");
    expect_request(
        ps,
        "127.0.0.1",
        "GET",
        "/request/core/x86_64/core.db",
        307,
        "mirror",
    );
    assert!(
        lan.wait_mirror(&host.ip, "GET", "/core/os/x86_64/core.db", 200),
        "the mirror did not serve core.db to {}\n{}",
        host.ip,
        lan.dump(&all)
    );
    for p in peers {
        let db = requests(p)
            .into_iter()
            .filter(|r| r.line.path.contains(".db") || r.line.path.contains(".files"))
            .count();
        assert_eq!(db, 0, "a peer was asked for a database\n{}", lan.dump(&all));
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

/// A's pacman gets X from B (never from the mirror) and the database from the mirror; D,
/// started later, is found within seconds and serves Z; C, killed with SIGKILL, never stalls
/// a download, is forgotten after three silent intervals, and is never asked again.
#[test]
fn lan_shares_finds_late_hosts_and_forgets_dead_ones() {
    let lan = Lan::new("share", 1, &["lanx", "lany", "lanz", "lanw"]);
    let (x, y, z, w) = (
        lan.pkg("lanx"),
        lan.pkg("lany"),
        lan.pkg("lanz"),
        lan.pkg("lanw"),
    );
    let (a, b, c) = (lan.host("a", A), lan.host("b", B), lan.host("c", C));
    b.hold(x);
    let mut ps_a = a.start(1, &[]);
    let ps_b = b.start(1, &[]);
    let mut ps_c = c.start(1, &[]);
    for peer in [&b, &c] {
        assert!(
            ps_a.wait_log(&peer.discovered(), DISCOVER_LIMIT),
            "A did not discover {} within {DISCOVER_LIMIT:?}\n{}",
            peer.name,
            lan.dump(&[&ps_a, &ps_b, &ps_c])
        );
    }

    // Databases come from the mirror, never from a peer.
    let client = local_client();
    sync_from_mirror(&lan, &a, &client, &ps_a, &[&ps_b, &ps_c]);

    // X, held only by B, comes from B.
    download(&a, &client, x, &lan, &[&ps_a, &ps_b, &ps_c]);
    expect_request(&ps_a, "127.0.0.1", "GET", &x.request_path(), 307, "peer");
    expect_request(&ps_b, &a.ip, "HEAD", &x.peer_path(), 200, "local");
    let served = expect_request(&ps_b, &a.ip, "GET", &x.request_path(), 200, "local");
    assert_eq!(served.line.bytes, x.bytes.len() as u64);
    assert_eq!(
        lan.mirror_asked(x),
        0,
        "the mirror was asked for X\n{}",
        lan.dump(&[&ps_a, &ps_b])
    );
    assert!(
        !requests(&ps_c).iter().any(|r| r.line.method == "GET"),
        "C served something\n{}",
        ps_c.log()
    );

    // D joins later, holding Z: found within seconds, and Z comes from it.
    let d = lan.host("d", D);
    d.hold(z);
    let ps_d = d.start(1, &[]);
    assert!(
        ps_a.wait_log(&d.discovered(), DISCOVER_LIMIT),
        "A did not discover the late host D within {DISCOVER_LIMIT:?}\n{}",
        lan.dump(&[&ps_a, &ps_d])
    );
    download(&a, &client, z, &lan, &[&ps_a, &ps_b, &ps_c, &ps_d]);
    expect_request(&ps_a, "127.0.0.1", "GET", &z.request_path(), 307, "peer");
    expect_request(&ps_d, &a.ip, "GET", &z.request_path(), 200, "local");
    assert_eq!(
        lan.mirror_asked(z),
        0,
        "the mirror was asked for Z\n{}",
        lan.dump(&[&ps_a, &ps_d])
    );

    // C dies without a goodbye. Right away, a package only the mirror holds still downloads:
    // the lookup to C fails (refused) and C is backed off.
    ps_c.kill();
    let ran = download(&a, &client, y, &lan, &[&ps_a, &ps_b, &ps_d]);
    assert!(
        !ran.text().contains("error:"),
        "pacman hit an error while C was dead:\n{}\n{}",
        ran.text(),
        lan.dump(&[&ps_a])
    );
    expect_request(&ps_a, "127.0.0.1", "GET", &y.request_path(), 307, "mirror");
    assert!(
        lan.wait_mirror(&a.ip, "GET", &y.mirror_path(), 200),
        "the mirror did not serve Y to A\n{}",
        lan.dump(&[&ps_a])
    );
    // One lookup, one attempt at C, one failure that backs C off.
    let log = ps_a.log();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("peer {} failed", c.authority())))
        .collect();
    let backoff = failed
        .first()
        .filter(|_| failed.len() == 1)
        .and_then(|l| backoff_secs(l))
        .unwrap_or_else(|| {
            panic!("A's lookup of Y should fail on the dead C once and back it off\n{log}")
        });
    // The failure was logged before now, so the backoff is over by then: a later lookup that
    // skips C does so because C is forgotten, not because it is backed off.
    let backoff_over = Instant::now() + Duration::from_secs(backoff);

    // After three silent intervals C is forgotten...
    let forgotten = format!("peer {} forgotten: no hello for", c.authority());
    assert!(
        ps_a.wait_log(&forgotten, FORGET_LIMIT),
        "A did not forget the dead C within {FORGET_LIMIT:?}\n{}",
        ps_a.log()
    );
    assert!(
        !ps_a
            .log()
            .contains(&b.discovered().replace("discovered", "forgotten")),
        "A forgot B, which is alive\n{}",
        ps_a.log()
    );
    // ...and the next lookup, once the backoff is over, makes no attempt to reach it.
    thread::sleep(backoff_over.saturating_duration_since(Instant::now()));
    download(&a, &client, w, &lan, &[&ps_a, &ps_b, &ps_d]);
    expect_request(&ps_b, &a.ip, "HEAD", &w.peer_path(), 404, "miss");
    expect_request(&ps_d, &a.ip, "HEAD", &w.peer_path(), 404, "miss");
    expect_request(&ps_a, "127.0.0.1", "GET", &w.request_path(), 307, "mirror");
    let log = ps_a.log();
    let after = &log[log.find(&forgotten).expect("seen above")..];
    assert_eq!(
        failures(after, &c),
        0,
        "A tried the forgotten C again\n{log}"
    );
    // Nothing ever asked a peer for a database.
    for p in [&ps_b, &ps_d] {
        let db: Vec<Req> = requests(p)
            .into_iter()
            .filter(|r| r.line.path.contains(".db") || r.line.path.contains(".files"))
            .collect();
        assert!(db.is_empty(), "{} was asked for a database: {db:?}", p.name);
    }
}

/// B stopped with SIGTERM says goodbye: A forgets it at once (with a 30 s interval, expiry
/// could not explain it), B exits 0, and A's next lookup does not try B.
#[test]
fn lan_goodbye_forgets_a_stopped_host_at_once() {
    let lan = Lan::new("bye", 2, &["lanx"]);
    let x = lan.pkg("lanx");
    let (a, b) = (lan.host("a", A), lan.host("b", B));
    b.hold(x);
    let mut ps_a = a.start(30, &[]);
    let mut ps_b = b.start(30, &[]);
    // B hears A's hello only as the answer to B's start-up query: A's next periodic hello is
    // 30 s away.
    assert!(
        ps_a.wait_log(&b.discovered(), DISCOVER_LIMIT)
            && ps_b.wait_log(&a.discovered(), DISCOVER_LIMIT),
        "A and B did not discover each other within {DISCOVER_LIMIT:?}\n{}",
        lan.dump(&[&ps_a, &ps_b])
    );
    let client = local_client();
    sync_from_mirror(&lan, &a, &client, &ps_a, &[&ps_b]);

    ps_b.signal(Signal::TERM);
    let goodbye = format!("peer {} said goodbye", b.authority());
    assert!(
        ps_a.wait_log(&goodbye, GOODBYE_LIMIT),
        "A did not hear B's goodbye within {GOODBYE_LIMIT:?}\n{}",
        lan.dump(&[&ps_a, &ps_b])
    );
    let status = ps_b.wait_exit(EXIT_LIMIT);
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "B did not exit 0 after SIGTERM within {EXIT_LIMIT:?}: {status:?}\n{}",
        ps_b.log()
    );
    assert!(ps_b.log().contains("stopped"), "{}", ps_b.log());
    assert!(
        !ps_a.log().contains("forgotten"),
        "A expired a peer, so the goodbye proves nothing\n{}",
        ps_a.log()
    );

    // B is gone from A's table: X comes from the mirror and B is not tried.
    download(&a, &client, x, &lan, &[&ps_a, &ps_b]);
    expect_request(&ps_a, "127.0.0.1", "GET", &x.request_path(), 307, "mirror");
    assert!(
        lan.wait_mirror(&a.ip, "GET", &x.mirror_path(), 200),
        "the mirror did not serve X to A\n{}",
        lan.dump(&[&ps_a])
    );
    assert_eq!(
        failures(&ps_a.log(), &b),
        0,
        "A tried the departed B\n{}",
        ps_a.log()
    );
}

/// `--multicast-filter x:^10\.231\.3\.13:` keeps C out of A's table: A hears and ignores C
/// while it adds B, and a package only C holds comes from the mirror, C never asked.
#[test]
fn lan_filter_keeps_a_host_out() {
    let lan = Lan::new("filter", 3, &["lanq"]);
    let q = lan.pkg("lanq");
    let (a, b, c) = (lan.host("a", A), lan.host("b", B), lan.host("c", C));
    c.hold(q);
    let filter = format!(r"x:^{}:", c.ip.replace('.', r"\."));
    let mut ps_a = a.start(1, &["--multicast-filter", &filter]);
    let ps_b = b.start(1, &[]);
    let mut ps_c = c.start(1, &[]);
    assert!(
        ps_a.wait_log(&b.discovered(), DISCOVER_LIMIT),
        "A did not discover B within {DISCOVER_LIMIT:?}\n{}",
        lan.dump(&[&ps_a, &ps_b, &ps_c])
    );
    let ignored = format!(
        "peer {} ignored: excluded by --multicast-filter",
        c.authority()
    );
    assert!(
        ps_a.wait_log(&ignored, DISCOVER_LIMIT),
        "A never heard (and ignored) C within {DISCOVER_LIMIT:?}\n{}",
        lan.dump(&[&ps_a, &ps_c])
    );
    // C hears A, so the LAN between them works; the filter alone keeps C out of A's table.
    assert!(
        ps_c.wait_log(&a.discovered(), DISCOVER_LIMIT),
        "C did not discover A\n{}",
        lan.dump(&[&ps_a, &ps_c])
    );

    let client = local_client();
    sync_from_mirror(&lan, &a, &client, &ps_a, &[&ps_b, &ps_c]);
    download(&a, &client, q, &lan, &[&ps_a, &ps_b, &ps_c]);
    expect_request(&ps_a, "127.0.0.1", "GET", &q.request_path(), 307, "mirror");
    expect_request(&ps_b, &a.ip, "HEAD", &q.peer_path(), 404, "miss");
    assert!(
        lan.wait_mirror(&a.ip, "GET", &q.mirror_path(), 200),
        "the mirror did not serve Q to A\n{}",
        lan.dump(&[&ps_a])
    );
    let asked_c: Vec<Req> = requests(&ps_c)
        .into_iter()
        .filter(|r| r.line.path.starts_with("/peer/") || r.from == a.ip)
        .collect();
    assert!(asked_c.is_empty(), "A asked C: {asked_c:?}\n{}", ps_c.log());
    assert!(
        !ps_a.log().contains(&c.discovered()),
        "A added C despite the filter\n{}",
        ps_a.log()
    );
    assert_eq!(failures(&ps_a.log(), &c), 0, "{}", ps_a.log());
}
