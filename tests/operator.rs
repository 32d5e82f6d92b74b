//! The operator's side of pacserve, end to end: the status page in a real headless browser,
//! `/status.json` and `/metrics` parsed and checked against known traffic, the `/cache/` route
//! for pacman's `CacheServer`, `pacserve pacsrv` driving the real pacman, and
//! `pacserve print-pacman-conf` read back by pacserve's own pacman.conf reader.
//!
//! Everything talks to 127.0.0.1 only: the harness mirror, real pacserve processes, the real
//! pacman with private configs, and chromium with its background networking turned off and
//! every host name mapped to nothing.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::browser::{
    SHOT_HEIGHT, SHOT_WIDTH, by_id, card_count, check_png, chromium, html_text, table_rows,
};
use common::prometheus::{parse_exposition, parse_sample};
use common::*;

/// Longest wait for a dead peer's backoff to end (the third failure backs off for 8 s).
const BACKOFF_WAIT: Duration = Duration::from_secs(30);
/// Pause between two status polls.
const STATUS_POLL: Duration = Duration::from_millis(100);
/// The port print-pacman-conf is told to use (nothing listens on it; nothing connects).
const PRINT_PORT: u16 = 15678;

// ---------------------------------------------------------------------------------------------
// A small LAN with known traffic: A holds three packages, static peer B holds one, a static
// peer on a dead port never answers; one package is only on the mirror, one nowhere.

/// One request of the known traffic, as pacserve should count it.
struct Sent {
    path: String,
    status: u16,
    outcome: &'static str,
    bytes: u64,
}

/// Fields drop in order: the daemons first, then the mirror, then the directories.
struct Scene {
    a: Pacserve,
    b: Pacserve,
    dead: DeadPort,
    a_cache: PathBuf,
    repo: Repo,
}

const LOCAL_NAMES: [&str; 3] = ["alpha", "bravo", "charlie"];
const PEER_NAME: &str = "delta";
const MIRROR_NAME: &str = "echo";
const GHOST_FILE: &str = "ghost-1.0-1-x86_64.pkg.tar.zst";

impl Scene {
    fn new(tag: &str) -> Scene {
        // Different sizes, so a byte count that mixes them up shows.
        let repo = Repo::new(
            tag,
            &[
                ("alpha", 3000),
                ("bravo", 5000),
                ("charlie", 9000),
                (PEER_NAME, 4096),
                (MIRROR_NAME, 4096),
            ],
        );
        let (host_a, host_b) = (repo.host("a"), repo.host("b"));
        for name in LOCAL_NAMES {
            host_a.hold(repo.pkg(name));
        }
        host_b.hold(repo.pkg(PEER_NAME));
        let b = host_b.start(&[]);
        let dead = dead_port();
        let a = host_a.start(&[
            "--pacserver",
            &b.authority(),
            "--pacserver",
            &dead.authority(),
        ]);
        Scene {
            a,
            b,
            dead,
            a_cache: host_a.cache,
            repo,
        }
    }

    fn b_addr(&self) -> String {
        self.b.authority()
    }

    fn dead_addr(&self) -> String {
        self.dead.authority()
    }

    fn local_pkgs(&self) -> Vec<&Pkg> {
        LOCAL_NAMES.iter().map(|n| self.repo.pkg(n)).collect()
    }

    fn logs(&self) -> String {
        logs(&[&self.a, &self.b], &self.repo.mirror)
    }

    /// The known traffic: 3 local hits, 1 peer redirect, 1 mirror redirect, 1 miss, each
    /// answer checked as it comes. Each lookup that reaches the LAN finds the dead peer askable
    /// again first, so it fails three times in all and ends backed off for 8 s: long enough
    /// for whatever reads the status next. Returns the requests in the order sent.
    fn traffic(&self) -> Vec<Sent> {
        let mut sent = Vec::new();
        for pkg in self.local_pkgs() {
            let r = get(self.a.port(), &pkg.on("request"));
            assert_eq!(
                r.status,
                200,
                "local hit {}: {}\n{}",
                pkg.file,
                r.head,
                self.logs()
            );
            assert!(r.body == pkg.bytes, "local hit {}: bytes differ", pkg.file);
            sent.push(Sent {
                path: pkg.on("request"),
                status: 200,
                outcome: "local",
                bytes: pkg.size(),
            });
        }

        let peer_pkg = self.repo.pkg(PEER_NAME);
        let r = get(self.a.port(), &peer_pkg.on("request"));
        assert_eq!(r.status, 307, "peer redirect: {}\n{}", r.head, self.logs());
        assert_eq!(
            r.header("location"),
            Some(self.b.url(&peer_pkg.on("lan")).as_str()),
            "peer redirect goes to B\n{}",
            self.logs()
        );
        sent.push(Sent {
            path: peer_pkg.on("request"),
            status: 307,
            outcome: "peer",
            bytes: r.body.len() as u64,
        });

        self.wait_dead_askable();
        let mirror_pkg = self.repo.pkg(MIRROR_NAME);
        let r = get(self.a.port(), &mirror_pkg.on("request"));
        assert_eq!(
            r.status,
            307,
            "mirror redirect: {}\n{}",
            r.head,
            self.logs()
        );
        assert_eq!(
            r.header("location"),
            Some(self.repo.mirror.url(&mirror_pkg.mirror_path()).as_str()),
            "mirror redirect goes to the mirror\n{}",
            self.logs()
        );
        sent.push(Sent {
            path: mirror_pkg.on("request"),
            status: 307,
            outcome: "mirror",
            bytes: r.body.len() as u64,
        });

        self.wait_dead_askable();
        let ghost = format!("/request/core/x86_64/{GHOST_FILE}");
        let r = get(self.a.port(), &ghost);
        assert_eq!(r.status, 404, "miss: {}\n{}", r.head, self.logs());
        assert_eq!(r.header("location"), None, "a miss redirects nowhere");
        sent.push(Sent {
            path: ghost,
            status: 404,
            outcome: "miss",
            bytes: r.body.len() as u64,
        });

        self.wait_counted(sent.len());
        sent
    }

    /// Wait (bounded) until A would ask the dead peer again.
    fn wait_dead_askable(&self) {
        let dead = self.dead_addr();
        for _ in 0..(BACKOFF_WAIT.as_millis() / STATUS_POLL.as_millis()) {
            let state = self.a.peer(&dead).map(|p| p.state);
            if state.as_deref() != Some("backed off") {
                return;
            }
            thread::sleep(STATUS_POLL);
        }
        panic!(
            "the dead peer stayed backed off for {BACKOFF_WAIT:?}\n{}",
            self.logs()
        );
    }

    /// Wait (bounded) until A's counters include `n` lookups; the asserts come after.
    fn wait_counted(&self, n: usize) {
        let _ = wait_until(LOG_WAIT, || self.a.recent().len() >= n);
    }
}

/// The entry of `/status.json`'s `peers` whose address is `addr`.
fn peer_entry<'a>(status: &'a Json, addr: &str) -> Option<&'a Json> {
    status
        .get("peers")?
        .as_array()?
        .iter()
        .find(|p| p.get("address").and_then(Json::as_str) == Some(addr))
}

// ---------------------------------------------------------------------------------------------
// 1. The status page in a real browser

#[test]
fn status_page_renders_in_a_headless_browser() {
    let scene = Scene::new("browser");
    let sent = scene.traffic();
    let shots = TempDir::new("chromium");
    let url = scene.a.url("/");

    // The DOM first: the dead peer's backoff (8 s) must still run when the page is read.
    let run = chromium(&shots, "dom", "--dump-dom", &url);
    assert!(
        run.success(),
        "chromium --dump-dom failed:\n{}",
        run.report()
    );
    let dom = run.stdout.clone();
    let why = || format!("--- DOM:\n{dom}\n{}", scene.logs());
    assert!(
        dom.contains("<h1>pacserve "),
        "not the status page\n{}",
        why()
    );

    for (id, want) in [
        ("count-local", 3),
        ("count-peer", 1),
        ("count-mirror", 1),
        ("count-miss", 1),
    ] {
        assert_eq!(card_count(&dom, id), Some(want), "card {id}\n{}", why());
    }

    let peers = by_id(&dom, "peers", "</table>")
        .unwrap_or_else(|| panic!("no table id=\"peers\"\n{}", why()));
    let rows = table_rows(peers);
    assert_eq!(rows.len(), 2, "two peer rows: {rows:?}\n{}", why());
    let row = |addr: &str| {
        rows.iter()
            .find(|r| r.first().map(String::as_str) == Some(addr))
            .unwrap_or_else(|| panic!("no row for {addr} in {rows:?}\n{}", why()))
    };
    // Columns: address, source, last seen, state, backoff.
    let b = row(&scene.b_addr());
    assert_eq!(b[1], "static", "B's source: {b:?}");
    assert_eq!(b[3], "ok", "B answered, so it is ok: {b:?}");
    let dead = row(&scene.dead_addr());
    assert_eq!(dead[1], "static", "the dead peer's source: {dead:?}");
    assert_eq!(dead[2], "never", "the dead peer never answered: {dead:?}");
    // Backed off, or (on a slow machine, once the backoff ran out) failing: never ok.
    assert!(
        dead[3] == "backed off" || dead[3] == "failing",
        "the dead peer's state: {dead:?}"
    );
    assert!(
        dead[4].starts_with("3 failures"),
        "the dead peer's backoff: {dead:?}"
    );

    let recent = by_id(&dom, "recent", "</table>")
        .unwrap_or_else(|| panic!("no table id=\"recent\"\n{}", why()));
    let recent_text = html_text(recent);
    for s in &sent {
        assert!(
            recent_text.contains(&s.path),
            "{} not among the recent lookups\n{}",
            s.path,
            why()
        );
    }

    // Then a picture of the same page (its counters now include the DOM run's /favicon.ico).
    let png_path = shots.join("status.png");
    let run = chromium(
        &shots,
        "screenshot",
        &format!("--screenshot={}", png_path.display()),
        &url,
    );
    assert!(
        run.success(),
        "chromium --screenshot failed:\n{}",
        run.report()
    );
    let png = fs::read(&png_path).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {}: {e}\n{}",
            png_path.display(),
            run.report()
        )
    });
    assert!(!png.is_empty(), "the screenshot is empty");
    let size = check_png(&png).unwrap_or_else(|e| panic!("the screenshot is no valid PNG: {e}"));
    assert_eq!(size, (SHOT_WIDTH, SHOT_HEIGHT), "screenshot size");
    if let Some(keep) = std::env::var_os("PACSERVE_KEEP_SCREENSHOT") {
        // For a human to look at; never inside the repository unless asked.
        fs::write(&keep, &png).expect("copy the screenshot");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. /status.json

#[test]
fn status_json_counts_the_known_traffic() {
    let scene = Scene::new("json");
    let sent = scene.traffic();
    let r = get(scene.a.port(), "/status.json");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let text = String::from_utf8(r.body).expect("UTF-8");
    let status = Json::parse(&text).unwrap_or_else(|e| panic!("not JSON: {e}\n{text}"));
    let why = || format!("--- status.json:\n{text}\n{}", scene.logs());

    assert_eq!(
        status.text("version"),
        env!("CARGO_PKG_VERSION"),
        "{}",
        why()
    );
    assert_eq!(
        status.num("packages"),
        3,
        "A holds three packages\n{}",
        why()
    );
    assert_eq!(status.field("multicast"), &Json::Null, "{}", why());
    assert_eq!(
        status.field("cache_dirs"),
        &Json::Arr(vec![Json::Str(format!("{}/", scene.a_cache.display()))]),
        "A's cache dir as pacman.conf names it\n{}",
        why()
    );
    assert!(status.field("uptime_secs").as_u64().is_some(), "{}", why());

    let requests = status.field("requests");
    for (outcome, want) in [
        ("local", 3),
        ("peer", 1),
        ("mirror", 1),
        ("miss", 1),
        ("bad", 0),
    ] {
        assert_eq!(requests.num(outcome), want, "requests.{outcome}\n{}", why());
    }
    let local_bytes: u64 = scene.local_pkgs().iter().map(|p| p.size()).sum();
    assert_eq!(
        status.num("bytes_saved"),
        local_bytes,
        "bytes_saved is what the local hits sent\n{}",
        why()
    );
    assert!(
        status.num("bytes_served") >= local_bytes,
        "bytes_served includes the local hits\n{}",
        why()
    );

    let peers = status.field("peers").as_array().expect("peers is an array");
    assert_eq!(peers.len(), 2, "{}", why());
    let b =
        peer_entry(&status, &scene.b_addr()).unwrap_or_else(|| panic!("no entry for B\n{}", why()));
    assert_eq!(b.text("source"), "static");
    assert_eq!(b.text("state"), "ok", "B answered\n{}", why());
    assert_eq!(b.num("failures"), 0);
    assert_eq!(b.field("retry_in_secs"), &Json::Null);
    assert!(
        b.field("last_seen_secs").as_u64().is_some(),
        "B was heard from\n{}",
        why()
    );
    let dead = peer_entry(&status, &scene.dead_addr())
        .unwrap_or_else(|| panic!("no entry for the dead peer\n{}", why()));
    assert_eq!(dead.text("source"), "static");
    assert!(
        ["backed off", "failing"].contains(&dead.text("state")),
        "{}",
        why()
    );
    assert_eq!(
        dead.num("failures"),
        3,
        "it failed each LAN lookup\n{}",
        why()
    );
    assert_eq!(dead.field("last_seen_secs"), &Json::Null, "never answered");
    let retry = dead.num("retry_in_secs");
    assert!(
        (1..=8).contains(&retry),
        "the third failure backs off for 8 s, not {retry}\n{}",
        why()
    );

    let recent = status
        .field("recent")
        .as_array()
        .expect("recent is an array");
    let got: Vec<(String, u64, String, u64, String)> = recent
        .iter()
        .map(|r| {
            (
                r.text("path").to_string(),
                r.num("status"),
                r.text("outcome").to_string(),
                r.num("bytes"),
                r.text("method").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, u64, String, u64, String)> = sent
        .iter()
        .rev()
        .map(|s| {
            (
                s.path.clone(),
                u64::from(s.status),
                s.outcome.to_string(),
                s.bytes,
                "GET".to_string(),
            )
        })
        .collect();
    assert_eq!(got, want, "recent: the lookups, newest first\n{}", why());
    let times: Vec<u64> = recent.iter().map(|r| r.num("at")).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "recent is newest first: {times:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. /metrics

#[test]
fn metrics_follow_the_exposition_format_and_count_the_traffic() {
    let scene = Scene::new("metrics");
    scene.traffic();
    let r = get(scene.a.port(), "/metrics");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain") && t.contains("version=0.0.4")),
        "Content-Type: {:?}",
        r.header("content-type")
    );
    let text = String::from_utf8(r.body).expect("UTF-8");
    let why = || format!("--- metrics:\n{text}\n{}", scene.logs());
    for line in text.lines() {
        assert!(
            line.starts_with("# HELP pacserve_")
                || line.starts_with("# TYPE pacserve_")
                || (line.starts_with("pacserve_") && parse_sample(line).is_ok()),
            "line {line:?} is none of HELP, TYPE or a pacserve sample\n{}",
            why()
        );
    }
    let m = parse_exposition(&text)
        .unwrap_or_else(|e| panic!("not the exposition format: {e}\n{}", why()));

    for (name, kind) in [
        ("pacserve_requests_total", "counter"),
        ("pacserve_bytes_served_total", "counter"),
        ("pacserve_bytes_saved_total", "counter"),
        ("pacserve_uptime_seconds", "gauge"),
        ("pacserve_cached_packages", "gauge"),
        ("pacserve_peers", "gauge"),
        ("pacserve_peer_up", "gauge"),
    ] {
        let f = m
            .family(name)
            .unwrap_or_else(|| panic!("no family {name}\n{}", why()));
        assert_eq!(f.kind.as_deref(), Some(kind), "TYPE of {name}");
        assert!(
            f.help.as_deref().is_some_and(|h| !h.trim().is_empty()),
            "HELP of {name} says something"
        );
        assert!(f.samples > 0, "{name} has samples\n{}", why());
    }

    for (outcome, want) in [
        ("local", 3.0),
        ("peer", 1.0),
        ("mirror", 1.0),
        ("miss", 1.0),
        ("bad", 0.0),
    ] {
        assert_eq!(
            m.value("pacserve_requests_total", &[("outcome", outcome)]),
            Some(want),
            "pacserve_requests_total{{outcome=\"{outcome}\"}}\n{}",
            why()
        );
    }
    let local_bytes: u64 = scene.local_pkgs().iter().map(|p| p.size()).sum();
    assert_eq!(
        m.value("pacserve_bytes_saved_total", &[]),
        Some(local_bytes as f64),
        "{}",
        why()
    );
    assert_eq!(m.value("pacserve_cached_packages", &[]), Some(3.0));
    assert_eq!(m.value("pacserve_peers", &[]), Some(2.0));
    let b = scene.b_addr();
    let dead = scene.dead_addr();
    assert_eq!(
        m.value(
            "pacserve_peer_up",
            &[("peer", b.as_str()), ("source", "static")]
        ),
        Some(1.0),
        "B is up\n{}",
        why()
    );
    assert_eq!(
        m.value(
            "pacserve_peer_up",
            &[("peer", dead.as_str()), ("source", "static")]
        ),
        Some(0.0),
        "the dead peer is backed off\n{}",
        why()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. /cache/ for pacman's CacheServer

#[test]
fn cache_route_serves_the_lan_and_never_the_mirrors() {
    let repo = Repo::new(
        "cache-route",
        &[("kilo", 4096), ("lima", 4096), ("mike", 4096)],
    );
    let (host_a, host_b) = (repo.host("a"), repo.host("b"));
    let (local, held, remote) = (repo.pkg("kilo"), repo.pkg("lima"), repo.pkg("mike"));
    host_a.hold(local);
    host_b.hold(held);
    let b = host_b.start(&[]);
    let a = host_a.start(&["--pacserver", &b.authority()]);
    let logs = || logs(&[&a, &b], &repo.mirror);

    // A LAN miss of a file the mirror has: a plain 404, and the mirror is not asked.
    let r = get(a.port(), &remote.on("cache"));
    assert_eq!(r.status, 404, "LAN miss: {}\n{}", r.head, logs());
    assert_eq!(r.header("location"), None, "a miss redirects nowhere");
    assert!(
        b.wait_lookup(|l| l.path == remote.on("peer") && l.status == 404)
            .is_some(),
        "A asked B before answering 404\n{}",
        logs()
    );
    thread::sleep(SETTLE);
    assert_eq!(
        repo.mirror.asked(&remote.file),
        0,
        "the mirror was probed for a /cache/ miss\n{}",
        logs()
    );
    // The same file on /request/ does go to the mirror: the 404 above is the route's doing.
    let r = get(a.port(), &remote.on("request"));
    assert_eq!(r.status, 307, "{}\n{}", r.head, logs());
    assert_eq!(
        r.header("location"),
        Some(repo.mirror.url(&remote.mirror_path()).as_str())
    );

    // A local hit: 200 and the same bytes.
    let r = get(a.port(), &local.on("cache"));
    assert_eq!(r.status, 200, "local hit: {}\n{}", r.head, logs());
    assert_eq!(r.content_length(), Some(local.size()));
    assert!(r.body == local.bytes, "local hit: bytes differ");

    // Held by peer B: 307 to B's /lan/ URL, which serves the same bytes.
    let r = get(a.port(), &held.on("cache"));
    assert_eq!(r.status, 307, "peer hit: {}\n{}", r.head, logs());
    let want = b.url(&held.on("lan"));
    assert_eq!(r.header("location"), Some(want.as_str()), "{}", logs());
    let r = get(b.port(), &held.on("lan"));
    assert_eq!(r.status, 200, "B serves its package: {}", r.head);
    assert!(r.body == held.bytes, "B's copy: bytes differ");

    // Databases are not a CacheServer's business: 404 without asking anyone.
    for db in ["core.db", "core.files", "core.db.sig"] {
        let path = format!("/cache/core/x86_64/{db}");
        let r = get(a.port(), &path);
        assert_eq!(r.status, 404, "{path}: {}\n{}", r.head, logs());
        assert_eq!(r.header("location"), None, "{path} redirects nowhere");
    }
    thread::sleep(SETTLE);
    assert_eq!(repo.mirror.asked("core.db"), 0, "{}", logs());
    assert_eq!(repo.mirror.asked("core.files"), 0, "{}", logs());
    assert_eq!(repo.mirror.asked("core.db.sig"), 0, "{}", logs());
    assert!(
        !b.lookups()
            .iter()
            .any(|l| l.path.starts_with("/peer/core/x86_64/core.")),
        "a database was asked of a peer\n{}",
        logs()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. pacsrv with the real pacman

/// A `$PACMAN` for pacsrv that notes its arguments, the temp dir's listing and a copy of the
/// config it was given, then runs the real pacman with the same arguments.
fn recording_pacman(dir: &TempDir) -> (PathBuf, PathBuf) {
    let rec = dir.mkdir("record");
    let script = dir.join("pacman-recorder");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             rec='{}'\n\
             printf '%s\\n' \"$@\" > \"$rec/args\"\n\
             ls -1A \"$TMPDIR\" > \"$rec/tmpdir\"\n\
             prev=\n\
             for a in \"$@\"; do\n\
             \x20   if [ \"$prev\" = --config ]; then cp \"$a\" \"$rec/config\"; fi\n\
             \x20   prev=$a\n\
             done\n\
             exec '{}' \"$@\"\n",
            rec.display(),
            Pacman::current().binary()
        ),
    )
    .expect("write the recorder");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod the recorder");
    (script, rec)
}

/// `pacserve pacsrv --port PORT ARGS…` with a private TMPDIR, bounded, in a process group of
/// its own (pacman runs as its child).
fn pacsrv(port: u16, args: &[&str], tmp: &Path, pacman: Option<&Path>) -> Ran {
    let mut cmd = Command::new(bin());
    cmd.arg("pacsrv")
        .arg("--port")
        .arg(port.to_string())
        .args(args)
        .env("TMPDIR", tmp)
        .env("LC_ALL", "C");
    // Without one given, the pacman of the test: the system's, or 7.1 named in $PACMAN.
    match (pacman, Pacman::current()) {
        (Some(p), _) => cmd.env("PACMAN", p),
        (None, Pacman::Debian6) => cmd.env_remove("PACMAN"),
        (None, Pacman::Arch7) => cmd.env("PACMAN", Pacman::Arch7.binary()),
    };
    run_grouped(&mut cmd, PACMAN_LIMIT)
}

/// The pacsrv-*.conf files in `dir`.
fn temp_confs(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("read the temp dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pacsrv-") && n.ends_with(".conf"))
        .collect()
}

both_pacmans! {
fn pacsrv_runs_the_real_pacman_through_pacserve() {
    let repo = Repo::new("pacsrv", &[("xray", 6000), ("yankee", 4096)]);
    let x = repo.pkg("xray");
    let host = repo.host("server");
    host.hold(x);
    let ps = host.pacserve().start_on_free_port();
    let port = ps.port();
    let work = TempDir::new("pacsrv-work");
    let tmp = work.mkdir("tmp");
    let (recorder, rec) = recording_pacman(&work);
    let client = PacmanClient::new("core", &[repo.server()]);
    let client_conf = client.conf_path().display().to_string();
    let logs = || logs(&[&ps], &repo.mirror);

    // -Sy: the database comes from the mirror, by way of pacserve's redirect.
    let run = pacsrv(
        port,
        &[
            "--config",
            &client_conf,
            "--noprogressbar",
            "-Sy",
            "--noconfirm",
        ],
        &tmp,
        None,
    );
    assert_eq!(
        run.code(),
        Some(0),
        "pacsrv -Sy\n{}\n{}",
        run.report(),
        logs()
    );
    assert!(
        ps.wait_lookup(|l| l.path == "/request/core/x86_64/core.db"
            && l.status == 307
            && l.outcome == "mirror")
            .is_some(),
        "pacman asked pacserve for the database\n{}",
        logs()
    );
    assert!(
        client.sync_db().is_file(),
        "the database arrived\n{}",
        logs()
    );
    assert!(repo.mirror.served("/core.db") >= 1, "{}", logs());

    // -Sw X: X comes from pacserve's cache, byte for byte; the mirror never serves it.
    let run = pacsrv(
        port,
        &[
            "--config",
            &client_conf,
            "--noprogressbar",
            "-Sw",
            "--noconfirm",
            "xray",
        ],
        &tmp,
        Some(&recorder),
    );
    assert_eq!(
        run.code(),
        Some(0),
        "pacsrv -Sw\n{}\n{}",
        run.report(),
        logs()
    );
    let got = client
        .cached(&x.file)
        .unwrap_or_else(|| panic!("{} not in the client's cache\n{}", x.file, logs()));
    assert!(
        got == x.bytes,
        "the downloaded package differs from the original"
    );
    assert!(
        ps.wait_lookup(|l| l.method == "GET"
            && l.path == x.on("request")
            && l.status == 200
            && l.outcome == "local"
            && l.bytes == x.size())
            .is_some(),
        "pacserve's log lacks the local 200 for {}\n{}",
        x.file,
        logs()
    );
    assert_eq!(
        repo.mirror.asked(&x.file),
        0,
        "the mirror saw {}\n{}",
        x.file,
        logs()
    );

    // What pacman was given: a temporary config named after pacsrv's pid, in TMPDIR, with
    // pacserve first and the mirror after it; gone once pacsrv is done.
    let args = fs::read_to_string(rec.join("args")).expect("the recorder ran");
    let args: Vec<&str> = args.lines().collect();
    let at = args
        .iter()
        .position(|a| *a == "--config")
        .unwrap_or_else(|| panic!("no --config in {args:?}"));
    let temp_conf = PathBuf::from(args[at + 1]);
    let temp_name = temp_conf
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert_eq!(temp_conf.parent(), Some(tmp.as_path()), "{args:?}");
    assert!(
        temp_name.starts_with(&format!("pacsrv-{}-", run.pid)) && temp_name.ends_with(".conf"),
        "temp config {temp_name:?} is not pacsrv-{}-*.conf",
        run.pid
    );
    let listing = fs::read_to_string(rec.join("tmpdir")).expect("the recorder listed TMPDIR");
    assert!(
        listing.lines().any(|l| l == temp_name),
        "{temp_name} was not in TMPDIR while pacman ran: {listing:?}"
    );
    let mut rest: Vec<&str> = args.clone();
    rest.drain(at..at + 2);
    assert_eq!(
        rest,
        ["--noprogressbar", "-Sw", "--noconfirm", "xray"],
        "pacman's other arguments are passed unchanged"
    );
    let used = pacserve::config::pacman_conf::load(&rec.join("config"))
        .unwrap_or_else(|e| panic!("the temp config does not parse: {e}"));
    assert_eq!(
        used.repo("core").map(|r| r.servers.clone()),
        Some(vec![
            format!("http://localhost:{port}/request/core/$arch"),
            repo.mirror.url("/core/os/$arch"),
        ]),
        "pacserve first, then the client's own mirror"
    );
    assert!(
        !temp_conf.exists(),
        "{} is left behind",
        temp_conf.display()
    );
    assert_eq!(temp_confs(&tmp), Vec::<String>::new(), "temp configs left");

    // pacman's exit code is pacsrv's: compare with pacman run directly.
    let direct = client.run(&["-S", "--noconfirm", "doesnotexist"]);
    let run = pacsrv(
        port,
        &[
            "--config",
            &client_conf,
            "--noprogressbar",
            "-S",
            "--noconfirm",
            "doesnotexist",
        ],
        &tmp,
        None,
    );
    assert!(
        direct.code().is_some_and(|c| c != 0),
        "pacman fails on an unknown target: {direct:?}"
    );
    assert_eq!(
        run.code(),
        direct.code(),
        "pacsrv passes pacman's exit code on\n{}",
        run.report()
    );
    assert!(
        run.stderr.contains("target not found: doesnotexist"),
        "pacman's own message\n{}",
        run.report()
    );
    assert_eq!(temp_confs(&tmp), Vec::<String>::new(), "temp configs left");

    // No pacserve on the port: pacsrv says so and runs pacman unchanged.
    let fresh = PacmanClient::new("core", &[repo.server()]);
    let fresh_conf = fresh.conf_path().display().to_string();
    let nobody = dead_port();
    let plain = [
        "--config",
        fresh_conf.as_str(),
        "--noprogressbar",
        "-Sy",
        "--noconfirm",
    ];
    let run = pacsrv(nobody.port(), &plain, &tmp, Some(&recorder));
    assert_eq!(
        run.code(),
        Some(0),
        "pacsrv without pacserve\n{}",
        run.report()
    );
    assert!(
        run.stderr
            .contains(&format!("not running on localhost:{nobody}")),
        "pacsrv says pacserve is not running\n{}",
        run.report()
    );
    let args = fs::read_to_string(rec.join("args")).expect("the recorder ran");
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        plain,
        "pacman got exactly the arguments given"
    );
    assert!(
        fresh.sync_db().is_file(),
        "the database arrived from the mirror"
    );
    assert_eq!(temp_confs(&tmp), Vec::<String>::new(), "temp configs left");
}
}

// ---------------------------------------------------------------------------------------------
// 6. print-pacman-conf

#[test]
fn print_pacman_conf_puts_pacserve_first_in_every_repo() {
    let dir = TempDir::new("print-conf");
    let mirrorlist = dir.join("mirrorlist");
    fs::write(
        &mirrorlist,
        "## A mirror list\n\
         #Server = http://commented.example.invalid/$repo/os/$arch\n\
         Server = http://127.0.0.1:9/archlinux/$repo/os/$arch\n\
         Server = https://mirror.example.invalid/archlinux/$repo/os/$arch\n",
    )
    .expect("write mirrorlist");
    let original = format!(
        "# pacman.conf for print-pacman-conf\n\
         [options]\n\
         # comments stay\n\
         HoldPkg = pacman glibc\n\
         Architecture = x86_64\n\
         CacheDir = {cache}/\n\
         SigLevel = Never\n\
         \n\
         # The official repository, through the mirror list\n\
         [core]\n\
         Include = {mirrorlist}\n\
         \n\
         #[testing]\n\
         #Include = {mirrorlist}\n\
         \n\
         [custom]\n\
         # its own servers, in this order\n\
         SigLevel = Optional TrustAll\n\
         Server = http://10.0.0.5:8080/custom/$arch\n\
         Server = https://repo.example.invalid/$repo/os/$arch\n",
        cache = dir.join("cache").display(),
        mirrorlist = mirrorlist.display(),
    );
    let conf = dir.join("pacman.conf");
    fs::write(&conf, &original).expect("write pacman.conf");

    let print = |from: &Path| {
        Pacserve::run_to_exit(&[
            "print-pacman-conf",
            "--port",
            &PRINT_PORT.to_string(),
            "--pacman-conf",
            &from.display().to_string(),
        ])
    };
    let ran = print(&conf);
    assert!(ran.success(), "print-pacman-conf failed: {ran:?}");
    assert_eq!(ran.stderr, "", "nothing on stderr");
    let printed = dir.join("printed.conf");
    fs::write(&printed, &ran.stdout).expect("write the printed config");

    let ours = format!("http://localhost:{PRINT_PORT}/request/$repo/$arch");
    let inserted = format!("Server = {ours}");
    // The text: the original, with exactly one line added after each repo header.
    let lines: Vec<&str> = ran.stdout.lines().collect();
    let added: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == inserted).collect();
    assert_eq!(added.len(), 2, "one line per repo:\n{}", ran.stdout);
    for i in &added {
        assert!(
            *i > 0 && ["[core]", "[custom]"].contains(&lines[i - 1]),
            "the line follows a repo header:\n{}",
            ran.stdout
        );
    }
    let without: Vec<&str> = lines.iter().copied().filter(|l| *l != inserted).collect();
    assert_eq!(
        without,
        original.lines().collect::<Vec<_>>(),
        "everything else, comments included, is kept"
    );

    // Read back by pacserve's own reader: pacserve first, then the original servers in order.
    let before = pacserve::config::pacman_conf::load(&conf).expect("the original parses");
    let after = pacserve::config::pacman_conf::load(&printed)
        .unwrap_or_else(|e| panic!("the printed config does not parse: {e}\n{}", ran.stdout));
    let names = |c: &pacserve::config::pacman_conf::PacmanConf| {
        c.repos.iter().map(|r| r.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&after), ["core", "custom"]);
    assert_eq!(names(&before), names(&after));
    let want = [
        (
            "core",
            vec![
                "http://localhost:15678/request/core/$arch",
                "http://127.0.0.1:9/archlinux/core/os/$arch",
                "https://mirror.example.invalid/archlinux/core/os/$arch",
            ],
        ),
        (
            "custom",
            vec![
                "http://localhost:15678/request/custom/$arch",
                "http://10.0.0.5:8080/custom/$arch",
                "https://repo.example.invalid/custom/os/$arch",
            ],
        ),
    ];
    for (name, servers) in want {
        let got = &after.repo(name).expect("repo is there").servers;
        assert_eq!(got, &servers, "[{name}] servers");
        assert_eq!(
            got[1..],
            before.repo(name).expect("repo is there").servers[..],
            "[{name}]: the original servers follow in order"
        );
    }
    assert_eq!(after.cache_dirs, before.cache_dirs, "options are kept");

    // Applying it again changes nothing.
    let again = print(&printed);
    assert!(again.success(), "{again:?}");
    assert_eq!(again.stdout, ran.stdout, "print-pacman-conf is idempotent");
}

/// Malformed discovery datagrams are dropped and counted, and the count shows in /metrics.
#[test]
fn malformed_multicast_datagrams_are_counted_in_metrics() {
    let dir = TempDir::new("mc-metrics");
    let cache = dir.mkdir("cache");
    let mirror_root = dir.mkdir("mirror");
    let mirror = Mirror::start(&mirror_root);
    let conf = write_server_conf(
        dir.path(),
        &[&cache],
        &[("core", &[mirror.url("/$repo/os/$arch")])],
    );
    let udp_port = free_udp_port();
    let port_arg = udp_port.to_string();
    let ps = Pacserve::start(
        &conf,
        &[
            "--multicast",
            "--multicast-interface",
            "127.0.0.1",
            "--multicast-port",
            &port_arg,
        ],
    );
    let malformed = || {
        ps.metrics().value(
            "pacserve_multicast_datagrams_total",
            &[("kind", "malformed")],
        )
    };
    assert_eq!(malformed(), Some(0.0), "metrics before any garbage");
    // The discovery socket is bound to 0.0.0.0:PORT, so unicast garbage reaches it too.
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp sender");
    for garbage in [
        &b"pacserve 9 hello id=1 port=1\n"[..],
        b"\x00\xffjunk",
        b"GET / HTTP/1.1\r\n",
    ] {
        sender
            .send_to(garbage, ("127.0.0.1", udp_port))
            .expect("send garbage");
    }
    let _ = wait_until(LOG_WAIT, || malformed() >= Some(3.0));
    assert_eq!(malformed(), Some(3.0), "{}", ps.log());
    let status = ps.status_json();
    assert_eq!(
        status.field("multicast_datagrams").num("malformed"),
        3,
        "{}",
        ps.log()
    );
    assert!(ps.is_running(), "still serving");
}
