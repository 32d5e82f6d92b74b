//! pacserve under test. One builder, [`Launch`], for every way a test starts it: plain on
//! 127.0.0.1, with environment variables (`NOTIFY_SOCKET`), with extra arguments, on a port
//! picked in advance, inside a network namespace, under `qemu-aarch64-static` with another
//! binary. [`Pacserve`] is the running daemon, killed by pid on drop: what it logs, its
//! `/status.json` and `/metrics`, signals and its exit.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rustix::process::{Resource, Rlimit, Signal, setrlimit};

use super::http::{RawConn, Response, request_bytes};
use super::json::Json;
use super::mirror::{Mirror, free_port};
use super::process::{Process, Ran, run_bounded};
use super::prometheus::{Exposition, parse_exposition};
use super::{LOG_WAIT, START_LIMIT, lan, preflight, wait_for, wait_until};

/// The emulator for the aarch64 binary (binfmt is not mounted here, so it is called by name).
pub const QEMU: &str = "qemu-aarch64-static";
/// Start-up under qemu-user is slower than native: translation of the whole binary.
const QEMU_START_LIMIT: Duration = Duration::from_secs(60);
/// Longest `run_to_exit` waits for pacserve to exit by itself.
const EXIT_LIMIT: Duration = Duration::from_secs(10);
/// Starts tried with fresh ports before a test gives up (someone may take a port first).
const PORT_TRIES: usize = 3;

/// The pacserve binary cargo built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pacserve")
}

// ---------------------------------------------------------------------------------------------
// What pacserve says

/// One request line of pacserve's log:
/// `pacserve: CLIENT METHOD PATH STATUS BYTES OUTCOME`, `- -` for method and path of a
/// request that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub from: SocketAddr,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    pub outcome: String,
}

impl LogLine {
    /// The request line `line` is, if it is one.
    pub fn parse(line: &str) -> Option<LogLine> {
        let t: Vec<&str> = line.strip_prefix("pacserve: ")?.split(' ').collect();
        Some(LogLine {
            from: t.first()?.parse().ok()?,
            method: t.get(1)?.to_string(),
            path: t.get(2)?.to_string(),
            status: t.get(3)?.parse().ok()?,
            bytes: t.get(4)?.parse().ok()?,
            outcome: t.get(5)?.to_string(),
        })
    }
}

/// The port in the first `listening on ADDR:PORT` of `log`.
pub fn listening_port(log: &str) -> Option<u16> {
    let rest = &log[log.find("listening on ")? + "listening on ".len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.rsplit(':').next()?.parse().ok()
}

/// The lines of `log` saying that a lookup to the peer `authority` (`host:port`) failed.
pub fn failure_lines<'a>(log: &'a str, authority: &str) -> Vec<&'a str> {
    let needle = format!("peer {authority} failed");
    log.lines().filter(|l| l.contains(&needle)).collect()
}

/// The N of a failure line's `...; next try in Ns` (the peer's backoff): whole seconds,
/// printed as digits and `s` and nothing else.
pub fn backoff_secs(line: &str) -> Option<u64> {
    let wait = line.split("next try in ").nth(1)?;
    let digits = wait.strip_suffix('s')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One entry of `/status.json`'s `recent`: a finished lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// Seconds since the epoch.
    pub at: u64,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub outcome: String,
    pub bytes: u64,
}

impl Lookup {
    fn of(j: &Json) -> Lookup {
        Lookup {
            at: j.num("at"),
            method: j.text("method").to_string(),
            path: j.text("path").to_string(),
            status: u16::try_from(j.num("status")).expect("an HTTP status"),
            outcome: j.text("outcome").to_string(),
            bytes: j.num("bytes"),
        }
    }
}

/// One entry of `/status.json`'s `peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    /// `host:port`.
    pub address: String,
    /// `static` or `multicast`.
    pub source: String,
    pub last_seen_secs: Option<u64>,
    /// `ok`, `unknown`, `failing` or `backed off`.
    pub state: String,
    pub failures: u64,
    pub retry_in_secs: Option<u64>,
}

impl PeerState {
    fn of(j: &Json) -> PeerState {
        PeerState {
            address: j.text("address").to_string(),
            source: j.text("source").to_string(),
            last_seen_secs: j.opt_num("last_seen_secs"),
            state: j.text("state").to_string(),
            failures: j.num("failures"),
            retry_in_secs: j.opt_num("retry_in_secs"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Starting it

/// How to start pacserve: `--address 127.0.0.1 --port 0 --pacman-conf CONF --verbose`, then
/// the extra arguments, with `NOTIFY_SOCKET` removed from the environment unless given.
#[derive(Clone, Debug)]
pub struct Launch {
    conf: PathBuf,
    program: PathBuf,
    qemu: bool,
    netns: Option<String>,
    address: String,
    port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    name: String,
    start_limit: Duration,
    verbose: bool,
    open_files: Option<u64>,
}

impl Launch {
    /// Append `extra` to the command line.
    pub fn args(mut self, extra: &[&str]) -> Launch {
        self.args.extend(extra.iter().map(|s| s.to_string()));
        self
    }

    /// Set an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// `--port PORT` (default 0: any); the start fails unless it listens there.
    pub fn port(mut self, port: u16) -> Launch {
        self.port = port;
        self
    }

    /// `--address ADDR` (default 127.0.0.1).
    pub fn address(mut self, addr: &str) -> Launch {
        self.address = addr.to_string();
        self
    }

    /// No `--address`: pacserve's default, every address of both families.
    pub fn any_address(mut self) -> Launch {
        self.address.clear();
        self
    }

    /// Run inside the network namespace `ns` (by `ip netns exec`, which execs pacserve under
    /// the same pid).
    pub fn in_netns(mut self, ns: &str) -> Launch {
        self.netns = Some(ns.to_string());
        self
    }

    /// Run `binary` (an aarch64 build) under `qemu-aarch64-static`, whose process is the
    /// guest's: its pid is the one killed.
    pub fn under_qemu(mut self, binary: &Path) -> Launch {
        self.program = binary.to_path_buf();
        self.qemu = true;
        self.start_limit = QEMU_START_LIMIT;
        self
    }

    /// What failure messages call it.
    pub fn name(mut self, name: &str) -> Launch {
        self.name = name.to_string();
        self
    }

    /// Without `--verbose`: request lines and errors only, for a test whose traffic would
    /// otherwise log megabytes of lookup detail.
    pub fn not_verbose(mut self) -> Launch {
        self.verbose = false;
        self
    }

    /// Start it with an open-file limit of `n`, soft and hard, so that it cannot raise it:
    /// how a test shows what a flood does to a host whose descriptors are few.
    pub fn open_files(mut self, n: u64) -> Launch {
        self.open_files = Some(n);
        self
    }

    fn command(&self) -> Command {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(ns) = &self.netns {
            argv.extend(["ip", "netns", "exec", ns].map(OsString::from));
        }
        if self.qemu {
            argv.push(QEMU.into());
        }
        argv.push(self.program.clone().into());
        if !self.address.is_empty() {
            argv.extend(["--address", &self.address].map(OsString::from));
        }
        argv.extend(["--port", &self.port.to_string()].map(OsString::from));
        argv.push("--pacman-conf".into());
        argv.push(self.conf.clone().into());
        if self.verbose {
            argv.push("--verbose".into());
        }
        argv.extend(self.args.iter().map(OsString::from));
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).env_remove("NOTIFY_SOCKET");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(n) = self.open_files {
            let limit = Rlimit {
                current: Some(n),
                maximum: Some(n),
            };
            // SAFETY: between fork and exec the child only makes the setrlimit(2) system
            // call, which is async-signal-safe and allocates nothing. `ip netns exec` and
            // pacserve inherit the limit across exec.
            unsafe {
                cmd.pre_exec(move || setrlimit(Resource::Nofile, limit).map_err(io::Error::from));
            }
        }
        cmd
    }

    /// Start it and wait (bounded) for `listening on`; panics with its log otherwise.
    pub fn start(&self) -> Pacserve {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start it and wait (bounded) for `listening on`; Err with its log when it exits or stays
    /// silent instead, or listens elsewhere than it was told.
    pub fn try_start(&self) -> Result<Pacserve, String> {
        preflight::require();
        let mut cmd = self.command();
        let mut process =
            Process::spawn(&mut cmd, false).map_err(|e| format!("spawn {cmd:?}: {e}"))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let reader = drain(process.take_stderr().expect("stderr is piped"), log.clone());
        let mut ps = Pacserve {
            process: Mutex::new(process),
            name: self.name.clone(),
            port: 0,
            netns: self.netns.clone(),
            log,
            reader: Some(reader),
        };
        // Some(0): it exited before saying where it listens.
        let port = wait_for(self.start_limit, || {
            listening_port(&ps.log()).or_else(|| (!ps.is_running()).then_some(0))
        });
        match port {
            Some(0) => {
                // Let the reader pick up the last words.
                wait_until(Duration::from_secs(2), || {
                    ps.reader.as_ref().is_none_or(|r| r.is_finished())
                });
                Err(format!(
                    "{cmd:?} exited ({:?}) before listening; stderr:\n{}",
                    ps.lock().exited(),
                    ps.log()
                ))
            }
            Some(port) if self.port != 0 && port != self.port => Err(format!(
                "{cmd:?} listens on port {port}, not on {}; stderr:\n{}",
                self.port,
                ps.log()
            )),
            Some(port) => {
                ps.port = port;
                Ok(ps)
            }
            None => Err(format!(
                "{cmd:?} printed no `listening on` within {:?}; stderr:\n{}",
                self.start_limit,
                ps.log()
            )),
        }
    }

    /// Start it on a port picked in advance ([`free_port`]), retried if someone takes it first.
    pub fn start_on_free_port(&self) -> Pacserve {
        with_free_ports(1, |p| self.clone().port(p[0]).try_start())
    }
}

/// Call `start` with `n` distinct free ports until it succeeds, at most [`PORT_TRIES`] times:
/// for daemons whose configuration must name a port before they run.
pub fn with_free_ports<T>(n: usize, mut start: impl FnMut(&[u16]) -> Result<T, String>) -> T {
    let mut last = String::from("no ports");
    for _ in 0..PORT_TRIES {
        let mut ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        ports.sort_unstable();
        ports.dedup();
        if ports.len() != n {
            continue;
        }
        match start(&ports) {
            Ok(t) => return t,
            Err(e) => last = e,
        }
    }
    panic!("could not start on free ports in {PORT_TRIES} tries: {last}");
}

/// Spawn a thread that copies `r` into a shared buffer until EOF or error.
fn drain<R: Read + Send + 'static>(mut r: R, buf: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The running daemon

/// A running pacserve, its stderr captured; killed by pid on drop.
pub struct Pacserve {
    process: Mutex<Process>,
    name: String,
    port: u16,
    netns: Option<String>,
    log: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Pacserve {
    /// How to start pacserve with `conf` as its pacman.conf.
    pub fn builder(conf: &Path) -> Launch {
        Launch {
            conf: conf.to_path_buf(),
            program: PathBuf::from(bin()),
            qemu: false,
            netns: None,
            address: "127.0.0.1".to_string(),
            port: 0,
            args: Vec::new(),
            env: Vec::new(),
            name: "pacserve".to_string(),
            start_limit: START_LIMIT,
            verbose: true,
            open_files: None,
        }
    }

    /// pacserve on 127.0.0.1, any port, with `extra` arguments.
    pub fn start(conf: &Path, extra: &[&str]) -> Pacserve {
        Self::builder(conf).args(extra).start()
    }

    /// Run pacserve with exactly `args` (nothing added) and wait (bounded) for it to exit:
    /// for configuration and command-line errors, and the subcommands.
    pub fn run_to_exit(args: &[&str]) -> Ran {
        run_bounded(Command::new(bin()).args(args), EXIT_LIMIT)
    }

    fn lock(&self) -> MutexGuard<'_, Process> {
        self.process.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn pid(&self) -> u32 {
        self.lock().pid()
    }

    /// How many descriptors it holds open now (entries of `/proc/PID/fd`); None once it is
    /// gone.
    pub fn open_fds(&self) -> Option<usize> {
        let dir = std::fs::read_dir(format!("/proc/{}/fd", self.pid())).ok()?;
        Some(dir.count())
    }

    /// Its open-file limit (soft, hard), as `/proc/PID/limits` says; None if unreadable.
    pub fn open_file_limit(&self) -> Option<(String, String)> {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid())).ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        let mut values = line["Max open files".len()..].split_whitespace();
        Some((values.next()?.to_string(), values.next()?.to_string()))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, as `--pacserver` takes it.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    // ---- the log

    /// Everything pacserve wrote to stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// How many lines of the log contain `needle`.
    pub fn lines_with(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Wait (bounded) for `needle` anywhere in the log; false when time runs out or pacserve
    /// exits without having said it.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || self.log().contains(needle) || !self.is_running());
        self.log().contains(needle)
    }

    /// Wait (bounded by [`LOG_WAIT`]) until `needle` is on more than `before` lines.
    pub fn wait_more_lines(&self, needle: &str, before: usize) -> bool {
        wait_until(LOG_WAIT, || self.lines_with(needle) > before)
    }

    /// The request lines of the log, parsed.
    pub fn requests(&self) -> Vec<LogLine> {
        self.log().lines().filter_map(LogLine::parse).collect()
    }

    /// Wait (bounded by [`LOG_WAIT`]) for a request line matching `pred`: lines are written
    /// after the answer, so a client may see the answer a moment before the line.
    pub fn wait_request(&self, pred: impl Fn(&LogLine) -> bool) -> Option<LogLine> {
        wait_for(LOG_WAIT, || self.requests().into_iter().find(|l| pred(l)))
    }

    // ---- HTTP to it

    /// A connection to it (from inside its namespace, when it runs in one).
    pub fn connect(&self) -> std::io::Result<RawConn> {
        match &self.netns {
            None => RawConn::connect(self.port),
            Some(ns) => lan::in_netns(ns, || RawConn::connect(self.port)).and_then(|r| r),
        }
    }

    /// `GET path` on a fresh connection; panics on I/O errors.
    pub fn get(&self, path: &str) -> Response {
        self.connect()
            .and_then(|mut c| {
                c.send(&request_bytes("GET", path, &[]))?;
                c.read_response(false)
            })
            .unwrap_or_else(|e| panic!("GET {path} from {}: {e}\n{}", self.name, self.log()))
    }

    /// `/status.json`, parsed.
    pub fn status_json(&self) -> Json {
        let r = self.get("/status.json");
        assert_eq!(r.status, 200, "/status.json of {}: {}", self.name, r.head);
        let text = r.text();
        Json::parse(&text).unwrap_or_else(|e| panic!("/status.json is not JSON: {e}\n{text}"))
    }

    /// `/metrics`, parsed.
    pub fn metrics(&self) -> Exposition {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "/metrics of {}: {}", self.name, r.head);
        let text = r.text();
        parse_exposition(&text)
            .unwrap_or_else(|e| panic!("/metrics is not the exposition format: {e}\n{text}"))
    }

    /// `requests.OUTCOME` of `/status.json`: how many lookups ended so.
    pub fn counted(&self, outcome: &str) -> u64 {
        self.status_json().field("requests").num(outcome)
    }

    /// `/status.json`'s `recent` as it is: at most the last `RECENT_LOOKUPS`, newest first.
    pub fn recent(&self) -> Vec<Lookup> {
        let status = self.status_json();
        let recent = status
            .field("recent")
            .as_array()
            .expect("recent is an array");
        recent.iter().map(Lookup::of).collect()
    }

    /// Every lookup so far, oldest first. Fails when there were more than `/status.json`
    /// keeps: only a test that stays below that may ask for all of them.
    pub fn lookups(&self) -> Vec<Lookup> {
        let kept = pacserve::limits::RECENT_LOOKUPS;
        // The counters and the list are updated one after the other: wait until they agree.
        let all = wait_for(LOG_WAIT, || {
            let status = self.status_json();
            let counted: u64 = match status.field("requests") {
                Json::Obj(m) => m.iter().map(|(_, v)| v.as_u64().unwrap_or(0)).sum(),
                other => panic!("requests is not an object: {other:?}"),
            };
            assert!(
                counted <= kept as u64,
                "{} had {counted} lookups, more than the {kept} /status.json keeps",
                self.name
            );
            let recent = status
                .field("recent")
                .as_array()
                .expect("recent is an array");
            (recent.len() as u64 == counted).then(|| recent.iter().rev().map(Lookup::of).collect())
        });
        all.unwrap_or_else(|| panic!("{}'s counters and recent lookups disagree", self.name))
    }

    /// Wait (bounded by [`LOG_WAIT`]) for a recent lookup matching `pred`.
    pub fn wait_lookup(&self, pred: impl Fn(&Lookup) -> bool) -> Option<Lookup> {
        wait_for(LOG_WAIT, || self.recent().into_iter().find(|l| pred(l)))
    }

    /// The recent lookup `METHOD path` answered `status`, waited for; a panic naming what was
    /// there instead.
    pub fn expect_lookup(&self, method: &str, path: &str, status: u16) -> Lookup {
        self.wait_lookup(|l| l.method == method && l.path == path && l.status == status)
            .unwrap_or_else(|| {
                let mut seen = String::new();
                for l in self.recent() {
                    let _ = writeln!(seen, "  {l:?}");
                }
                panic!(
                    "no lookup `{method} {path} {status}` in {}'s /status.json; recent:\n{seen}\
                     --- log:\n{}",
                    self.name,
                    self.log()
                )
            })
    }

    /// `/status.json`'s `peers`.
    pub fn peers(&self) -> Vec<PeerState> {
        let status = self.status_json();
        let peers = status.field("peers").as_array().expect("peers is an array");
        peers.iter().map(PeerState::of).collect()
    }

    /// The entry of `peers` for `address` (`host:port`).
    pub fn peer(&self, address: &str) -> Option<PeerState> {
        self.peers().into_iter().find(|p| p.address == address)
    }

    /// Wait (bounded) until `peers` has an entry for `address`.
    pub fn wait_peer(&self, address: &str, limit: Duration) -> Option<PeerState> {
        wait_for(limit, || self.peer(address))
    }

    // ---- the process

    /// True while the process has not exited.
    pub fn is_running(&self) -> bool {
        self.lock().is_running()
    }

    /// Send `sig` by pid; it must still be running.
    pub fn signal(&self, sig: Signal) {
        let sent = self.lock().signal(sig);
        sent.unwrap_or_else(|e| panic!("signal {sig:?} to {}: {e}\n{}", self.name, self.log()));
    }

    /// Wait (bounded) for the process to exit; None if it still runs at `limit`.
    pub fn wait_exit(&self, limit: Duration) -> Option<ExitStatus> {
        wait_until(limit, || !self.is_running());
        self.lock().exited()
    }

    /// Wait (bounded) for it to exit, which it must do with code 0; `after` says after what.
    pub fn assert_exits_0(&self, limit: Duration, after: &str) {
        let status = self.wait_exit(limit);
        assert!(
            status.is_some(),
            "{} still running {limit:?} after {after}; stderr:\n{}",
            self.name,
            self.log()
        );
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{} exit after {after}: {status:?}; stderr:\n{}",
            self.name,
            self.log()
        );
    }

    /// SIGKILL by pid and reap; idempotent.
    pub fn kill(&self) {
        self.lock().kill();
    }
}

impl Drop for Pacserve {
    fn drop(&mut self) {
        self.kill();
        if let Some(r) = self.reader.take() {
            // The pipe closes with the process; don't hang if something else holds it.
            wait_until(Duration::from_secs(5), || r.is_finished());
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

/// Every daemon's log and the mirror's requests, for failure messages.
pub fn logs(daemons: &[&Pacserve], mirror: &Mirror) -> String {
    let mut s = String::new();
    for d in daemons {
        let _ = write!(s, "--- {} (port {}):\n{}", d.name, d.port, d.log());
    }
    let _ = write!(s, "--- mirror:\n{}", mirror.dump());
    s
}
