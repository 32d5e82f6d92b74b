//! Attacks from this host's side, at a small and bounded scale on 127.0.0.1: a cache listing
//! asked for by many at once, pacman.conf files that would freeze a start or a reload, mirror
//! lists full of hung and refusing servers, heads that outgrow their buffer. Each test asserts
//! what pacserve does instead of falling over: answers that come, counts that stay bounded,
//! memory that stays small.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use rustix::fs::inotify;

use common::*;
use pacserve::limits::MAX_HEAD_BYTES;

// ---------------------------------------------------------------------------------------------
// Helpers of this file

/// `VmRSS` or `VmHWM` of process `pid`, in bytes.
fn vm_bytes(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad {field} line: {line}"));
    kib * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Run `f(i)` for `i` in `0..n`, each on its own thread, all released at once.
fn concurrently<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let start = Barrier::new(n);
    thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (start, f) = (&start, &f);
                s.spawn(move || {
                    start.wait();
                    f(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Make a FIFO at `path`.
fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// Set the modification time of `path` (without opening it, so a watch sees no open).
fn set_mtime(path: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::empty())
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// Opens in one directory, counted by inotify: of the directory itself (a listing: every
/// `read_dir` opens it) and of the files in it, by name. The kernel queues the event at the
/// open, so once an answer that needed the open is in, its event is there to read.
///
/// The kernel merges an event into an identical one at the tail of the queue: opens that
/// overlap (several scans at once) count as one. Closes are watched too, so opens one after
/// another are never merged: the count is exact for work done one at a time, and a lower
/// bound otherwise (which is why the listing test also measures memory).
struct OpenWatch {
    fd: OwnedFd,
    dir: PathBuf,
}

/// What an [`OpenWatch`] saw since it was last read.
#[derive(Debug, Default)]
struct Opens {
    /// Opens of the watched directory itself.
    listings: usize,
    files: HashMap<String, usize>,
    /// The kernel's queue overflowed: more opens than it holds (16384 by default).
    overflowed: bool,
}

impl Opens {
    fn of(&self, name: &str) -> usize {
        self.files.get(name).copied().unwrap_or(0)
    }
}

impl OpenWatch {
    fn new(dir: &Path) -> OpenWatch {
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .expect("inotify_init");
        inotify::add_watch(
            &fd,
            dir,
            inotify::WatchFlags::OPEN | inotify::WatchFlags::CLOSE_NOWRITE,
        )
        .unwrap_or_else(|e| panic!("inotify watch {}: {e}", dir.display()));
        OpenWatch {
            fd,
            dir: dir.to_path_buf(),
        }
    }

    /// Every event queued so far (the queue is bounded by the kernel, so this loop is too).
    fn take(&self) -> Opens {
        let mut opens = Opens::default();
        let mut buf = [MaybeUninit::<u8>::uninit(); 64 * 1024];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        loop {
            match reader.next() {
                Ok(event) => {
                    let flags = event.events();
                    if flags.contains(inotify::ReadFlags::QUEUE_OVERFLOW) {
                        opens.overflowed = true;
                    } else if !flags.contains(inotify::ReadFlags::OPEN) {
                        continue;
                    }
                    match event.file_name() {
                        None => opens.listings += 1,
                        Some(name) => {
                            let name = name.to_string_lossy().into_owned();
                            *opens.files.entry(name).or_default() += 1;
                        }
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return opens,
                Err(e) => panic!("inotify read on {}: {e}", self.dir.display()),
            }
        }
    }
}

/// `n` package files of one byte each in `dir`, named `fillNNNNNN-1.0-1-x86_64.pkg.tar.zst`:
/// the listing cares about names and sizes, not contents.
fn fill_cache(dir: &Path, n: usize) {
    for i in 0..n {
        let p = dir.join(format!("fill{i:06}-1.0-1-x86_64.pkg.tar.zst"));
        fs::write(&p, b"x").unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The cache listing

/// Package files in the cache of the listing test. A scan lists about 40 bytes a package in
/// `/info` (0.8 MB here) and holds about twice that while it builds the listing (names, sizes,
/// a sorted map): a scan per request in flight, the old behaviour, took this daemon past
/// 100 MiB with 40 requests at once; one scan at a time stays within a few MiB.
const LISTING_PACKAGES: usize = 20_000;
/// The package a normal client asks for while the listing is hammered.
const SERVED: &str = "served-1.0-1-x86_64.pkg.tar.zst";

#[test]
fn the_listing_is_scanned_once_however_many_ask() {
    let dir = TempDir::new("listing");
    let cache = dir.mkdir("cache");
    fill_cache(&cache, LISTING_PACKAGES);
    let served = pseudo_random("served", 50_000);
    fs::write(cache.join(SERVED), &served).expect("write the served package");
    let packages = (LISTING_PACKAGES + 1) as u64;
    // A CacheDir that does not exist (pacman has not made it yet): a state, not a change.
    let missing = dir.join("not-made-yet");
    let dead = dead_port();
    let conf = write_server_conf(
        dir.path(),
        &[&cache, &missing],
        &[("core", &[format!("http://127.0.0.1:{dead}/$repo/os/$arch")])],
    );
    let ps = Pacserve::start(&conf, &[]);
    let pid = ps.pid();
    // Watched from when it listens (its start-up check of the cache dirs is done by then);
    // the first listing may be its own upkeep's or this /info's, one scan either way.
    let watch = OpenWatch::new(&cache);

    // The first listing: one scan, and what it costs.
    let info = ps.get("/info");
    assert_eq!(info.status, 200, "{}", info.head);
    let listed = info.text().lines().filter(|l| !l.starts_with('#')).count() as u64;
    assert_eq!(listed, packages, "/info lists every package once");
    assert_eq!(
        watch.take().listings,
        1,
        "the cache is scanned once by the time of the first /info"
    );
    let body = info.body.len() as u64;
    let after_first = vm_bytes(pid, "VmHWM");
    // One scan at a time holds one listing being built next to the current one, and the
    // answers share the current body. Ten bodies' worth above the peak of the first scan is
    // generous for that, and far below a scan per request in flight (the old behaviour:
    // over 100 MiB here).
    let bound = after_first + 10 * body;
    let check_memory = |after: &str| {
        let hwm = vm_bytes(pid, "VmHWM");
        eprintln!(
            "listing of {packages} packages, body {body} bytes: VmHWM {:.1} MiB after the \
             first scan, {:.1} MiB after {after} (VmRSS {:.1} MiB); bound {:.1} MiB",
            mib(after_first),
            mib(hwm),
            mib(vm_bytes(pid, "VmRSS")),
            mib(bound)
        );
        assert!(
            hwm <= bound,
            "after {after}: VmHWM {:.1} MiB, over the bound {:.1} MiB",
            mib(hwm),
            mib(bound)
        );
    };

    // 40 at once, of the three pages that need the listing, and a download among them.
    let pages = ["/metrics", "/status.json", "/info"];
    let download = format!("/request/core/x86_64/{SERVED}");
    let mut answers = concurrently(41, |i| match i {
        40 => ("download", ps.get(&download)),
        _ => (pages[i % pages.len()], ps.get(pages[i % pages.len()])),
    });
    let (_, normal) = answers.pop().expect("41 answers");
    assert_eq!(
        normal.status, 200,
        "the download among them: {}",
        normal.head
    );
    assert_same_bytes(&normal.body, &served, "the package served meanwhile");
    for (page, r) in &answers {
        assert_eq!(r.status, 200, "{page}: {}", r.head);
        assert_eq!(count_in(page, &r.text()), packages, "{page} under load");
    }
    check_memory("40 requests at once");
    let opens = watch.take();
    assert_eq!(
        opens.listings, 0,
        "nothing changed, yet 40 requests scanned the cache {} times",
        opens.listings
    );

    // The cache dir changes: 30 at once ask for /metrics, which must not wait for the rescan.
    set_mtime(&cache, 1_000_000_000);
    let answers = concurrently(30, |_| ps.get("/metrics"));
    for r in &answers {
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(
            count_in("/metrics", &r.text()),
            packages,
            "/metrics after a touch"
        );
    }
    // The rescan the touch asked for runs once, in the background; wait (bounded) for it.
    let mut rescans = 0;
    assert!(
        wait_until(LOG_WAIT, || {
            rescans += watch.take().listings;
            rescans >= 1
        }),
        "no rescan after the cache dir changed"
    );
    let info = ps.get("/info");
    assert_eq!(count_in("/info", &info.text()), packages);
    thread::sleep(SETTLE);
    rescans += watch.take().listings;
    check_memory("a touch, 30 requests at once and the rescan");
    assert_eq!(rescans, 1, "one change, {rescans} scans");
}

/// The package count a page shows: `/info` lines, `/status.json` `packages`, or the metric
/// `pacserve_cached_packages`.
fn count_in(page: &str, text: &str) -> u64 {
    match page {
        "/info" => text.lines().filter(|l| !l.starts_with('#')).count() as u64,
        "/status.json" => Json::parse(text)
            .unwrap_or_else(|e| panic!("/status.json: {e}"))
            .num("packages"),
        "/metrics" => {
            let m = common::prometheus::parse_exposition(text)
                .unwrap_or_else(|e| panic!("/metrics: {e}"));
            m.value("pacserve_cached_packages", &[])
                .unwrap_or_else(|| panic!("no pacserve_cached_packages in /metrics"))
                as u64
        }
        other => panic!("no count on {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 2. pacman.conf files that would freeze a start or a reload

/// Arguments that start pacserve on `conf` and nothing else.
fn start_args(conf: &Path) -> Vec<String> {
    ["--address", "127.0.0.1", "--port", "0", "--pacman-conf"]
        .iter()
        .map(|s| s.to_string())
        .chain([conf.display().to_string()])
        .collect()
}

/// Start pacserve on `conf`, which must make it exit (bounded), not 0, without listening,
/// with an error that says each of `needles`. Its stderr.
fn assert_refused(conf: &Path, needles: &[&str], what: &str) -> String {
    let args = start_args(conf);
    let ran = Pacserve::run_to_exit(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !ran.timed_out,
        "{what}: pacserve still ran at its time limit (hung, or started):\n{}",
        ran.stderr
    );
    assert!(!ran.success(), "{what}: exit 0\n{}", ran.stderr);
    assert!(
        !ran.stderr.contains("listening on"),
        "{what}: it listened:\n{}",
        ran.stderr
    );
    for needle in needles {
        assert!(
            ran.stderr.contains(needle),
            "{what}: the error does not say `{needle}`:\n{}",
            ran.stderr
        );
    }
    ran.stderr
}

const NOT_REGULAR: &str = "not a regular file";

/// A pacman.conf with a cache dir and `[core]`, then `core_extra` lines in that section;
/// `{DIR}` in them stands for `dir`.
fn small_conf(dir: &Path, cache: &Path, core_extra: &str) -> String {
    format!(
        "[options]\nArchitecture = x86_64\nCacheDir = {}/\n\n[core]\n\
         Server = http://127.0.0.1:9/$repo/os/$arch\n{core_extra}",
        cache.display()
    )
    .replace("{DIR}", &dir.display().to_string())
}

#[test]
fn a_fifo_as_pacman_conf_or_include_is_refused_at_start() {
    let dir = TempDir::new("fifo-start");
    let cache = dir.mkdir("cache");
    let fifo = dir.join("pacman.conf.fifo");
    mkfifo(&fifo);
    let fifo_s = fifo.display().to_string();
    // Nobody ever writes into it: an open or read that waits for a writer waits for good.
    assert_refused(
        &fifo,
        &[&fifo_s, NOT_REGULAR],
        "--pacman-conf naming a FIFO",
    );

    let include = dir.join("mirrorlist");
    mkfifo(&include);
    let conf = dir.join("pacman.conf");
    // Line 7: the Include after [core] and its Server line.
    fs::write(
        &conf,
        small_conf(dir.path(), &cache, "Include = {DIR}/mirrorlist\n"),
    )
    .expect("write pacman.conf");
    let at = format!("{}:7:", conf.display());
    let include_s = include.display().to_string();
    assert_refused(
        &conf,
        &[&at, &include_s, NOT_REGULAR],
        "an Include naming a FIFO",
    );
}

/// A daemon serving one cached package from `[core]`, for the reload tests.
struct Reloadable {
    ps: Pacserve,
    conf: PathBuf,
    cache: PathBuf,
    pkg: Vec<u8>,
    dir: TempDir,
    /// Where the notify socket is, if any: kept (and removed) with the daemon.
    _notify_dir: Option<TempDir>,
}

const RELOAD_PKG: &str = "kept-1.0-1-x86_64.pkg.tar.zst";

impl Reloadable {
    fn new(tag: &str) -> Reloadable {
        Self::launched(tag, |l| l)
    }

    /// With its `NOTIFY_SOCKET` on a socket of the test's: the daemon says `RELOADING=1`
    /// there as a reload begins.
    fn notifying(tag: &str) -> (Reloadable, UnixDatagram) {
        let sock_dir = TempDir::new(&format!("{tag}-notify"));
        let path = sock_dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        sock.set_read_timeout(Some(POLL))
            .expect("notify socket timeout");
        let d = Self::launched(tag, |l| l.env("NOTIFY_SOCKET", &path.display().to_string()));
        // The socket's directory lives as long as the daemon.
        let d = Reloadable {
            _notify_dir: Some(sock_dir),
            ..d
        };
        (d, sock)
    }

    fn launched(tag: &str, launch: impl FnOnce(Launch) -> Launch) -> Reloadable {
        let dir = TempDir::new(tag);
        let cache = dir.mkdir("cache");
        let pkg = pseudo_random(tag, 30_000);
        fs::write(cache.join(RELOAD_PKG), &pkg).expect("write package");
        let conf = dir.join("pacman.conf");
        fs::write(&conf, small_conf(dir.path(), &cache, "")).expect("write pacman.conf");
        let ps = launch(Pacserve::builder(&conf)).start();
        Reloadable {
            ps,
            conf,
            cache,
            pkg,
            dir,
            _notify_dir: None,
        }
    }

    /// The cached package is served whole, and `[extra]` (which only a new configuration
    /// would bring) is not a repository here.
    fn assert_serves_the_old_config(&self, after: &str) {
        let r = self.ps.get(&format!("/request/core/x86_64/{RELOAD_PKG}"));
        assert_eq!(
            r.status,
            200,
            "after {after}: {}\n{}",
            r.head,
            self.ps.log()
        );
        assert_same_bytes(&r.body, &self.pkg, after);
        let r = self.ps.get("/request/extra/x86_64/extra.db");
        assert_eq!(
            r.status, 404,
            "after {after}, [extra] is served: {}",
            r.head
        );
    }

    /// Rewrite pacman.conf: `[core]` includes a FIFO, and an `[extra]` follows. Returns the
    /// FIFO's path.
    fn include_a_fifo(&self) -> PathBuf {
        let fifo = self.dir.join("mirrorlist");
        mkfifo(&fifo);
        let text = small_conf(
            self.dir.path(),
            &self.cache,
            "Include = {DIR}/mirrorlist\n\n[extra]\nServer = http://127.0.0.1:9/$repo/os/$arch\n",
        );
        fs::write(&self.conf, text).expect("rewrite pacman.conf");
        fifo
    }
}

#[test]
fn a_fifo_included_on_reload_fails_the_reload_and_keeps_the_daemon() {
    let d = Reloadable::new("fifo-reload");
    d.assert_serves_the_old_config("start");
    let fifo = d.include_a_fifo();
    let failed = d.ps.lines_with("reload failed");
    d.ps.signal(Signal::HUP);
    assert!(
        d.ps.wait_more_lines("reload failed", failed),
        "no `reload failed` line after SIGHUP with a FIFO Include:\n{}",
        d.ps.log()
    );
    let log = d.ps.log();
    let line = log
        .lines()
        .find(|l| l.contains("reload failed"))
        .expect("the line waited for");
    let at = format!("{}:7:", d.conf.display());
    for needle in [&at, &fifo.display().to_string(), NOT_REGULAR] {
        assert!(line.contains(needle), "`{needle}` not in: {line}");
    }
    assert_eq!(d.ps.lines_with("reloaded"), 0, "{log}");
    d.assert_serves_the_old_config("the failed reload");
    d.ps.signal(Signal::TERM);
    d.ps.assert_exits_0(Duration::from_secs(20), "SIGTERM after a failed reload");
}

#[test]
fn include_fan_out_is_an_error_naming_file_and_line() {
    use pacserve::limits::MAX_INCLUDED_FILES;
    const FAN: usize = 30;
    let dir = TempDir::new("fan-out");
    let cache = dir.mkdir("cache");
    let confs = dir.mkdir("conf.d");
    let includes = |name: &str| format!("Include = {}\n", confs.join(name).display()).repeat(FAN);
    // top -> 30 × a -> 30 × b -> 30 × c: 27,000 reads of c.conf if nothing stops it, and only
    // a comment in each, so neither the Server nor the byte limit would.
    fs::write(confs.join("a.conf"), includes("b.conf")).expect("write a.conf");
    fs::write(confs.join("b.conf"), includes("c.conf")).expect("write b.conf");
    fs::write(confs.join("c.conf"), "# a mirrorlist with nothing in it\n").expect("write c.conf");
    let conf = dir.join("pacman.conf");
    fs::write(&conf, small_conf(dir.path(), &cache, &includes("a.conf"))).expect("write conf");

    let watch = OpenWatch::new(&confs);
    let limit = format!("more than {MAX_INCLUDED_FILES} files");
    let stderr = assert_refused(&conf, &[&limit], "Include fan-out");
    // `FILE:LINE: Include = ...`, naming one of the included files.
    let b = format!("{}:", confs.join("b.conf").display());
    let after = stderr
        .split(&b)
        .nth(1)
        .unwrap_or_else(|| panic!("the error does not name {b}LINE:\n{stderr}"));
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    assert!(
        !digits.is_empty() && after[digits.len()..].starts_with(": Include"),
        "no line number after {b}:\n{stderr}"
    );
    let opens = watch.take();
    assert!(
        !opens.overflowed,
        "more opens than inotify queues: thousands of reads"
    );
    // The file that takes the count over the limit is read before it is counted: one more.
    let read = opens.of("a.conf") + opens.of("b.conf") + opens.of("c.conf");
    assert!(
        read <= MAX_INCLUDED_FILES + 1,
        "{read} included files opened, more than {MAX_INCLUDED_FILES}: {opens:?}"
    );
}

#[test]
fn sigterm_right_after_sighup_stops_with_exit_0() {
    // A reload that succeeds.
    let d = Reloadable::new("hup-term");
    d.ps.signal(Signal::HUP);
    d.ps.signal(Signal::TERM);
    d.ps.assert_exits_0(Duration::from_secs(20), "SIGHUP then SIGTERM");
    assert!(d.ps.log().contains("stopped"), "{}", d.ps.log());

    // A reload that meets a FIFO, and SIGTERM as soon as the reload has begun: a reload that
    // waited for the FIFO's writer where the signals are handled would never see the stop.
    let (d, notify) = Reloadable::notifying("hup-fifo-term");
    assert!(
        wait_for_state(&notify, "READY=1"),
        "no READY=1\n{}",
        d.ps.log()
    );
    d.include_a_fifo();
    d.ps.signal(Signal::HUP);
    assert!(
        wait_for_state(&notify, "RELOADING=1"),
        "no RELOADING=1 after SIGHUP\n{}",
        d.ps.log()
    );
    d.ps.signal(Signal::TERM);
    d.ps.assert_exits_0(
        Duration::from_secs(20),
        "SIGTERM during a reload onto a FIFO Include",
    );
    let log = d.ps.log();
    assert!(log.contains("stopped"), "{log}");
    assert_eq!(log.matches("reloaded").count(), 0, "{log}");
}

/// Wait (bounded by [`LOG_WAIT`]) for the datagram `state` on a notify socket.
fn wait_for_state(sock: &UnixDatagram, state: &str) -> bool {
    let mut buf = [0u8; 4096];
    wait_until(LOG_WAIT, || match sock.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == state),
        Err(_) => false,
    })
}

// ---------------------------------------------------------------------------------------------
// 3. The mirror walk

/// The package the walk tests ask for, on a real mirror behind four hung ones.
struct Walk {
    hung: Vec<HungServer>,
    host: Host,
    repo: Repo,
}

impl Walk {
    fn new(tag: &str) -> Walk {
        let repo = Repo::new(tag, &[("walkpkg", 20_000)]);
        let hung: Vec<HungServer> = (0..4).map(|_| HungServer::start()).collect();
        let host = repo.host("pacserve");
        let mut servers: Vec<String> = hung.iter().map(|h| h.url("/$repo/os/$arch")).collect();
        servers.push(repo.server());
        host.set_servers(&servers);
        Walk { hung, host, repo }
    }

    fn pkg(&self) -> &Pkg {
        self.repo.pkg("walkpkg")
    }

    fn accepted(&self) -> Vec<usize> {
        self.hung.iter().map(HungServer::accepted).collect()
    }

    fn logs(&self, ps: &Pacserve) -> String {
        format!(
            "hung mirrors accepted {:?}\n{}",
            self.accepted(),
            logs(&[ps], &self.repo.mirror)
        )
    }
}

/// Hung mirrors one walk can reach before its deadline: each probe may take
/// `MIRROR_PROBE_TIMEOUT`, the walk `MIRROR_WALK_TIMEOUT` in all.
fn hung_reachable_in_one_walk() -> usize {
    use pacserve::limits::{MIRROR_PROBE_TIMEOUT, MIRROR_WALK_TIMEOUT};
    MIRROR_WALK_TIMEOUT
        .as_millis()
        .div_ceil(MIRROR_PROBE_TIMEOUT.as_millis()) as usize
}

#[test]
fn hung_mirrors_cost_one_deadline_and_pacman_moves_on() {
    let w = Walk::new("walk-pacman");
    let ps = w.host.start(&[]);
    let client = PacmanClient::new("core", &[ps.url("/request/$repo/$arch"), w.repo.server()]);
    // The database straight from the repo: this is about the package's walk.
    fs::write(client.sync_db(), w.repo.db()).expect("put the sync database in place");
    let ran = client.fetch(w.pkg(), || w.logs(&ps));
    // pacserve answered: a miss, which pacman takes to its next Server, not a stall it would
    // give up on after 10 s ("Operation too slow").
    let path = w.pkg().request_path();
    let lookup = ps
        .wait_lookup(|l| l.path == path)
        .unwrap_or_else(|| panic!("pacserve never answered {path}\n{}", w.logs(&ps)));
    assert!(
        matches!(lookup.status, 404 | 307),
        "{lookup:?}\n{}",
        w.logs(&ps)
    );
    assert!(
        !ran.text().contains("too slow"),
        "pacman gave up on pacserve as stalled:\n{}\n{}",
        ran.report(),
        w.logs(&ps)
    );
    thread::sleep(SETTLE);
    let contacted: usize = w.accepted().iter().sum();
    assert!(
        contacted <= hung_reachable_in_one_walk(),
        "one walk contacted {contacted} hung mirrors\n{}",
        w.logs(&ps)
    );
    w.repo.mirror.assert_served(&w.pkg().file, 1);
}

#[test]
fn concurrent_requests_for_one_file_share_each_probe() {
    const CLIENTS: usize = 12;
    let w = Walk::new("walk-merge");
    let ps = w.host.start(&[]);
    let path = w.pkg().request_path();
    let answers = concurrently(CLIENTS, |_| ps.get(&path));
    for r in &answers {
        assert!(matches!(r.status, 404 | 307), "{}\n{}", r.head, w.logs(&ps));
    }
    thread::sleep(SETTLE);
    let accepted = w.accepted();
    assert!(
        accepted.iter().all(|&n| n <= 1),
        "{CLIENTS} requests for one file: connections per hung mirror {accepted:?}, not one \
         each\n{}",
        w.logs(&ps)
    );
    assert!(
        accepted.iter().sum::<usize>() >= 1,
        "no hung mirror was tried"
    );
}

/// Mirrors that refuse connections, before the one that has the file: more than the least
/// size of the dead-mirror table (256).
const REFUSING: usize = 300;

#[test]
fn refusing_mirrors_are_probed_once_and_their_errors_throttled() {
    use pacserve::limits::{LOG_BURST, LOG_WINDOW, MAX_PROBES_PER_WALK};
    let dir = TempDir::new("refusing");
    let cache = dir.mkdir("cache");
    let file = "far-1.0-1-x86_64.pkg.tar.zst";
    let on_mirror = dir.mkdir("mirror/core/os/x86_64");
    fs::write(on_mirror.join(file), b"a package far down the list").expect("write file");
    let mirror = Mirror::start(&dir.join("mirror"));
    let dead: Vec<DeadPort> = (0..REFUSING).map(|_| dead_port()).collect();
    let mut servers: Vec<String> = dead
        .iter()
        .map(|d| format!("http://127.0.0.1:{d}/$repo/os/$arch"))
        .collect();
    servers.push(mirror.url("/$repo/os/$arch"));
    let conf = write_server_conf(dir.path(), &[&cache], &[("core", &servers)]);
    let ps = Pacserve::start(&conf, &[]);
    let path = format!("/request/core/x86_64/{file}");
    let base = |d: &DeadPort| format!("http://127.0.0.1:{d}/");
    let skipped = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.ends_with(": skipped, failed recently"))
            .map(|l| l.trim_start_matches("pacserve: ").to_string())
            .collect()
    };

    let asked = std::cell::Cell::new(0);
    let ask = || {
        let n = asked.get() + 1;
        asked.set(n);
        let before = ps.log().len();
        let r = ps.get(&path);
        // The walk's lines come before the request's own line, which is written after the
        // answer: once that is in, so are they.
        assert!(
            wait_until(LOG_WAIT, || ps
                .requests()
                .iter()
                .filter(|l| l.path == path)
                .count()
                >= n),
            "no log line for request {n}"
        );
        (r, ps.log()[before..].to_string())
    };

    // The first walk: MAX_PROBES_PER_WALK refusals, then it gives up.
    let (r, log1) = ask();
    assert_eq!(r.status, 404, "{}\n{log1}", r.head);
    let give_up = format!(
        "mirror walk given up at {}",
        base(&dead[MAX_PROBES_PER_WALK])
    );
    assert!(log1.contains(&give_up), "no `{give_up}`:\n{log1}");
    assert!(skipped(&log1).is_empty(), "{log1}");

    // After the throttle's window, the second walk skips exactly those the first found dead.
    thread::sleep(LOG_WINDOW + SETTLE);
    let (r, log2) = ask();
    assert_eq!(r.status, 404, "{}\n{log2}", r.head);
    let skips = skipped(&log2);
    assert_eq!(skips.len(), MAX_PROBES_PER_WALK, "{log2}");
    for (line, d) in skips.iter().zip(&dead) {
        assert!(line.starts_with(&base(d)), "{line}: not {}", base(d));
    }
    let left_out = MAX_PROBES_PER_WALK - LOG_BURST as usize;
    let summary = format!("... and {left_out} more like the next in the last");
    assert!(log2.contains(&summary), "no `{summary}`:\n{log2}");

    // On until the walk reaches the mirror, each walk probing only mirrors not tried yet.
    let walks = REFUSING.div_ceil(MAX_PROBES_PER_WALK) + 2;
    let mut found = None;
    for _ in 0..walks {
        let (r, log) = ask();
        if r.status == 307 {
            found = Some(r);
            break;
        }
        assert_eq!(r.status, 404, "{}\n{log}", r.head);
    }
    let r = found.unwrap_or_else(|| panic!("no walk reached the mirror\n{}", ps.log()));
    let location = mirror.url(&format!("/core/os/x86_64/{file}"));
    assert_eq!(r.header("location"), Some(&*location));
    assert_eq!(
        asked.get(),
        REFUSING.div_ceil(MAX_PROBES_PER_WALK),
        "{}",
        ps.log()
    );

    // Every refusing mirror is remembered (the table is as large as the config): the next
    // walk skips all of them and goes straight to the mirror.
    let (r, log) = ask();
    assert_eq!(r.status, 307, "{}\n{log}", r.head);
    assert_eq!(r.header("location"), Some(&*location));
    assert_eq!(skipped(&log).len(), REFUSING, "{log}");
    assert!(!log.contains("given up"), "{log}");

    // 300 mirrors failed, in two windows of the throttle: a few lines.
    let log = ps.log();
    let failed = log
        .lines()
        .filter(|l| l.contains("pacserve: mirror http://127.0.0.1:") && l.contains(" failed: "))
        .count();
    assert!(
        (1..=2 * LOG_BURST as usize).contains(&failed),
        "{failed} lines about {REFUSING} failing mirrors:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Heads

/// A daemon with one cached package.
fn one_package(tag: &str) -> (Pacserve, Vec<u8>, String, TempDir) {
    let dir = TempDir::new(tag);
    let cache = dir.mkdir("cache");
    let bytes = pseudo_random(tag, 20_000);
    let file = "head-1.0-1-x86_64.pkg.tar.zst";
    fs::write(cache.join(file), &bytes).expect("write package");
    let conf = write_server_conf(
        dir.path(),
        &[&cache],
        &[("core", &["http://127.0.0.1:9/$repo/os/$arch".to_string()])],
    );
    let ps = Pacserve::start(&conf, &[]);
    (ps, bytes, format!("/request/core/x86_64/{file}"), dir)
}

/// A connection whose receive buffer is as small as the kernel allows, set before the
/// handshake so the window never opens wider: what pacserve sends beyond it waits in
/// pacserve's send queue until this client reads, as it would on a slow link.
fn narrow_conn(port: u16) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType, connect, socket, sockopt};
    let s = socket(AddressFamily::INET, SocketType::STREAM, None).expect("a TCP socket");
    sockopt::set_socket_recv_buffer_size(&s, 4096).expect("SO_RCVBUF");
    connect(&s, &SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
    let s = TcpStream::from(s);
    s.set_read_timeout(Some(CLIENT_IO_TIMEOUT))
        .expect("read timeout");
    s.set_write_timeout(Some(CLIENT_IO_TIMEOUT))
        .expect("write timeout");
    s
}

/// The responses at the start of `bytes`, each as (status, body length), as far as they are
/// whole (`Content-Length` bodies only, which is what pacserve sends).
fn whole_responses(mut bytes: &[u8]) -> Vec<(u16, usize)> {
    let mut out = Vec::new();
    while let Some(head_len) = find_head_end(bytes) {
        let head = String::from_utf8_lossy(&bytes[..head_len]).to_ascii_lowercase();
        let (Some(status), Some(len)) = (
            status_of(bytes),
            head.lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok()),
        ) else {
            break;
        };
        if bytes.len() < head_len + len {
            break;
        }
        out.push((status, len));
        bytes = &bytes[head_len + len..];
    }
    out
}

#[test]
fn an_oversized_head_gets_its_whole_431_without_a_half_close() {
    let (ps, bytes, path, _dir) = one_package("431");
    // 40 KiB of header: pacserve reads 16 KiB, answers 431, and the rest stays unread.
    let oversized = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "b".repeat(40 * 1024)
    );
    // A plain client that reads a moment after it has sent everything.
    for round in 0..3 {
        let mut c = ps.connect().expect("connect");
        c.send(oversized.as_bytes()).expect("send the head");
        thread::sleep(SETTLE);
        let r = c
            .read_response(false)
            .unwrap_or_else(|e| panic!("round {round}: the 431 was lost: {e}\n{}", ps.log()));
        assert_eq!(r.status, 431, "round {round}: {}", r.head);
        assert_eq!(r.content_length(), Some(r.body.len() as u64));
        assert!(c.closed_within(Duration::from_secs(10)), "round {round}");
    }
    // A client on a narrow window that pipelines a download and then the oversized head,
    // and reads a moment later: the package and the 431 are still in pacserve's send queue
    // when it is done with the connection. Closed with the unread head bytes, the kernel
    // would reset the connection and drop that queue: the client would lose both.
    for round in 0..3 {
        let mut s = narrow_conn(ps.port());
        let mut pipelined = keep_alive_request("GET", &path);
        pipelined.extend_from_slice(oversized.as_bytes());
        s.write_all(&pipelined).expect("send both requests");
        thread::sleep(SETTLE);
        let mut got = Vec::new();
        let ended = s.read_to_end(&mut got);
        let responses = whole_responses(&got);
        assert_eq!(
            responses,
            [
                (200, bytes.len()),
                (431, responses.get(1).map_or(0, |r| r.1))
            ],
            "round {round}: {} bytes then {ended:?}; {}\n{}",
            got.len(),
            preview(&got),
            ps.log()
        );
        assert!(
            ended.is_ok(),
            "round {round}: ended with {ended:?}, not a close"
        );
    }
    let r = ps.get(&path);
    assert_eq!(r.status, 200, "{}", r.head);
    assert_same_bytes(&r.body, &bytes, "after the 431s");
}

#[test]
fn a_user_agent_that_is_not_utf8_is_served() {
    let (ps, bytes, path, _dir) = one_package("ua");
    let mut raw = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n").into_bytes();
    raw.extend_from_slice(b"User-Agent: caf\xe9-client/1.0 \xff\xfe (Linux)\r\n");
    raw.extend_from_slice(b"Connection: close\r\n\r\n");
    let r = exchange(ps.port(), &raw, false).expect("exchange");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_same_bytes(&r.body, &bytes, "with a Latin-1 User-Agent");
}

/// Descriptors process `pid` holds.
fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
}

/// Connections in one wave, all held open (idle, kept alive) at once: below
/// `MAX_CONNECTIONS` (1024), which loopback may use all of.
const WAVE: usize = 500;
const WAVES: usize = 3;
/// Header bytes in each request: more than the head buffer's 1 KiB start, less than its
/// 16 KiB cap, so every connection's buffer grows to 16 KiB for its one request.
const PAD: usize = 12 * 1024;

#[test]
fn idle_keep_alive_connections_give_their_head_room_back() {
    let (ps, bytes, path, _dir) = one_package("keepalive");
    let pid = ps.pid();
    let raw = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(PAD)
    );
    let ask = |c: &mut RawConn| {
        c.send(raw.as_bytes()).expect("send");
        let r = c.read_response(false).expect("response");
        assert_eq!(r.status, 200, "{}", r.head);
        assert_same_bytes(&r.body, &bytes, "keep-alive answer");
    };
    // Warm up: one connection of the kind the waves open, closed.
    {
        let mut c = ps.connect().expect("connect");
        ask(&mut c);
    }
    let fds = open_fds(pid);
    assert!(wait_until(LOG_WAIT, || open_fds(pid) <= fds));
    let baseline = vm_bytes(pid, "VmRSS");
    let mut held_max = 0;
    for wave in 0..WAVES {
        let mut held = Vec::with_capacity(WAVE);
        for _ in 0..WAVE {
            let mut c = ps.connect().expect("connect");
            ask(&mut c);
            held.push(c);
        }
        // All of them idle now, between requests, as pacman leaves a connection it reuses.
        thread::sleep(SETTLE);
        let rss = vm_bytes(pid, "VmRSS");
        eprintln!(
            "wave {wave}: {WAVE} idle connections, VmRSS {:.2} MiB",
            mib(rss)
        );
        held_max = held_max.max(rss);
        drop(held);
        assert!(
            wait_until(LOG_WAIT, || open_fds(pid) <= fds),
            "pacserve still holds {} descriptors, {fds} before the wave",
            open_fds(pid)
        );
    }
    let after = vm_bytes(pid, "VmRSS");
    // An idle connection costs its task, its socket's registration and its slot (about 9 KiB
    // in this debug build) and a 1 KiB head buffer. One that kept the 16 KiB its request
    // grew the buffer to costs more than a whole head buffer; one that gave it back, less.
    let bound = baseline + (WAVE * MAX_HEAD_BYTES) as u64;
    eprintln!(
        "keep-alive: VmRSS {:.2} MiB before, at most {:.2} MiB with {WAVE} idle, {:.2} MiB after \
         {} connections (bound {:.2} MiB); VmHWM {:.2} MiB",
        mib(baseline),
        mib(held_max),
        mib(after),
        WAVE * WAVES,
        mib(bound),
        mib(vm_bytes(pid, "VmHWM"))
    );
    assert!(
        held_max <= bound,
        "{WAVE} idle connections: VmRSS {:.2} MiB, over {:.2} MiB",
        mib(held_max),
        mib(bound)
    );
    // Waves do not add up: after all of them, no more than one wave's worth.
    assert!(
        after <= bound,
        "after {} connections: VmRSS {:.2} MiB, over {:.2} MiB",
        WAVE * WAVES,
        mib(after),
        mib(bound)
    );
    let r = ps.get(&path);
    assert_eq!(r.status, 200, "{}", r.head);
}
