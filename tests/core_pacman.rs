//! The real pacman through pacserve: packages from the cache and from mirrors, databases,
//! resumes, self-pointing Server lines, misses, and the HTTP details pacman relies on.
//!
//! Each test builds its own world: a mirror (a real HTTP server on 127.0.0.1) holding a repo
//! database made by `repo-add` and real packages, pacserve with its own cache dir, and a pacman
//! client with a private root whose only `Server` is pacserve.

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

const LOG_WAIT: Duration = Duration::from_secs(5);

struct Pkg {
    name: &'static str,
    file: String,
    bytes: Vec<u8>,
}

impl Pkg {
    fn new(path: PathBuf, name: &'static str) -> Pkg {
        let bytes = fs::read(&path).expect("read built package");
        let file = path
            .file_name()
            .expect("package has a file name")
            .to_string_lossy()
            .into_owned();
        Pkg { name, file, bytes }
    }

    /// The path pacman asks pacserve for.
    fn request_path(&self) -> String {
        format!("/request/core/x86_64/{}", self.file)
    }

    /// The path on the mirror.
    fn mirror_path(&self) -> String {
        format!("/core/os/x86_64/{}", self.file)
    }
}

/// A mirror with repo `core` (packages `cachedpkg`, `fetchedpkg`; `ghostpkg` is in the
/// database only), and pacserve's cache dir holding `cachedpkg`.
/// Fields drop in order: the mirror first, the directory it serves last.
struct World {
    mirror: Mirror,
    cache: PathBuf,
    cached: Pkg,
    uncached: Pkg,
    ghost: Pkg,
    dir: TempDir,
}

impl World {
    fn new(tag: &str) -> World {
        let dir = TempDir::new(tag);
        let repo_dir = dir.mkdir("mirror/core/os/x86_64");
        let cache = dir.mkdir("cache");
        let build = dir.mkdir("build");
        let cached = make_package(&repo_dir, "cachedpkg", "1.0-1", 300_000);
        let uncached = make_package(&repo_dir, "fetchedpkg", "2.0-1", 200_000);
        let ghost = make_package(&build, "ghostpkg", "3.0-1", 1_000);
        repo_add(
            &repo_dir.join("core.db.tar.gz"),
            &[cached.clone(), uncached.clone(), ghost.clone()],
        );
        let cached = Pkg::new(cached, "cachedpkg");
        fs::write(cache.join(&cached.file), &cached.bytes).expect("fill pacserve's cache");
        let mirror = Mirror::start(&dir.join("mirror"));
        World {
            mirror,
            cache,
            cached,
            uncached: Pkg::new(uncached, "fetchedpkg"),
            ghost: Pkg::new(ghost, "ghostpkg"),
            dir,
        }
    }

    /// The mirror's `Server =` line.
    fn mirror_server(&self) -> String {
        self.mirror.url("/$repo/os/$arch")
    }

    fn mirror_db(&self) -> Vec<u8> {
        fs::read(self.dir.join("mirror/core/os/x86_64/core.db.tar.gz")).expect("read repo db")
    }

    /// pacserve.conf with `servers` for `[core]`.
    fn conf(&self, servers: &[String]) -> PathBuf {
        write_server_conf(self.dir.path(), &[&self.cache], &[("core", servers)])
    }

    /// pacserve whose `[core]` lists just the mirror.
    fn pacserve(&self) -> Pacserve {
        Pacserve::start(&self.conf(&[self.mirror_server()]), &[])
    }
}

/// A pacman client whose only server is pacserve, under `/PREFIX/$repo/$arch`.
fn client_of(ps: &Pacserve, prefix: &str) -> PacmanClient {
    PacmanClient::new("core", &[ps.url(&format!("/{prefix}/$repo/$arch"))])
}

fn assert_ok(ran: &Ran, what: &str, ps: &Pacserve, mirror: &Mirror) {
    assert!(
        ran.success(),
        "{what} failed ({:?}, timed out: {}):\n{}\n--- pacserve log:\n{}\n--- mirror log:\n{}",
        ran.status,
        ran.timed_out,
        ran.text(),
        ps.log(),
        mirror.dump()
    );
}

fn wait_line(ps: &Pacserve, method: &str, path: &str, status: u16) -> LogLine {
    ps.wait_request(LOG_WAIT, |l| {
        l.method == method && l.path == path && l.status == status
    })
    .unwrap_or_else(|| {
        panic!(
            "no `{method} {path} {status}` line in pacserve's log:\n{}",
            ps.log()
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The harness itself (no pacserve): proves packages, repo-add, the client config and the mirror.

#[test]
fn harness_http_date_matches_rfc_example() {
    assert_eq!(http_date_secs(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(
        parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(http_date_secs(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(http_date_secs(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    for t in [0, 784_111_777, 951_782_400, 1_700_000_000, 4_102_444_799] {
        assert_eq!(parse_http_date(&http_date_secs(t)), Some(t));
    }
    assert_eq!(parse_http_date("yesterday"), None);
}

#[test]
fn harness_pacman_against_mirror_directly() {
    let w = World::new("harness");
    let client = PacmanClient::new("core", &[w.mirror_server()]);
    let ran = client.sync();
    assert!(ran.success(), "{}\n{}", ran.text(), w.mirror.dump());
    assert_eq!(fs::read(client.sync_db()).ok(), Some(w.mirror_db()));
    assert_eq!(w.mirror.served("/core/os/x86_64/core.db"), 1);

    let ran = client.sync_again();
    assert!(ran.success(), "{}", ran.text());
    let revalidated = w.mirror.count(|r| {
        r.path == "/core/os/x86_64/core.db" && r.status == 304 && r.if_modified_since.is_some()
    });
    assert_eq!(revalidated, 1, "mirror log:\n{}", w.mirror.dump());

    let ran = client.download(w.uncached.name);
    assert!(ran.success(), "{}", ran.text());
    assert_eq!(
        client.cached(&w.uncached.file),
        Some(w.uncached.bytes.clone())
    );

    // Resume from a .part: pacman asks for the rest with a Range header.
    let part = 12_345;
    fs::write(
        client.cache_dir().join(format!("{}.part", w.cached.file)),
        &w.cached.bytes[..part],
    )
    .expect("write .part");
    let ran = client.download(w.cached.name);
    assert!(ran.success(), "{}", ran.text());
    assert_eq!(client.cached(&w.cached.file), Some(w.cached.bytes.clone()));
    let ranged = w.mirror.count(|r| {
        r.path == w.cached.mirror_path()
            && r.status == 206
            && r.range.as_deref() == Some(&format!("bytes={part}-"))
    });
    assert_eq!(ranged, 1, "mirror log:\n{}", w.mirror.dump());

    // A package nobody has: pacman fails, within its time limit.
    let ran = client.download(w.ghost.name);
    assert!(!ran.success() && !ran.timed_out, "{}", ran.text());
}

// ---------------------------------------------------------------------------------------------
// pacman through pacserve

#[test]
fn cached_package_comes_from_pacserve_byte_identical() {
    let w = World::new("cached");
    let ps = w.pacserve();
    let client = client_of(&ps, "request");
    assert_ok(&client.sync(), "-Sy", &ps, &w.mirror);
    assert_ok(&client.download(w.cached.name), "-Sw", &ps, &w.mirror);

    assert_eq!(
        client.cached(&w.cached.file).as_deref(),
        Some(&w.cached.bytes[..]),
        "pacman's copy differs from the cached package"
    );
    assert_eq!(
        w.mirror.asked(&w.cached.file),
        0,
        "the mirror was asked for a cached package:\n{}",
        w.mirror.dump()
    );
    let line = wait_line(&ps, "GET", &w.cached.request_path(), 200);
    assert_eq!(line.outcome, "local");
    assert_eq!(line.bytes, w.cached.bytes.len() as u64);
}

#[test]
fn uncached_package_comes_via_the_mirror() {
    let w = World::new("uncached");
    let ps = w.pacserve();
    let client = client_of(&ps, "request");
    assert_ok(&client.sync(), "-Sy", &ps, &w.mirror);
    assert_ok(&client.download(w.uncached.name), "-Sw", &ps, &w.mirror);

    assert_eq!(
        client.cached(&w.uncached.file).as_deref(),
        Some(&w.uncached.bytes[..])
    );
    assert_eq!(
        w.mirror.served(&w.uncached.mirror_path()),
        1,
        "{}",
        w.mirror.dump()
    );
    let line = wait_line(&ps, "GET", &w.uncached.request_path(), 307);
    assert_eq!(line.outcome, "mirror");
    // pacserve only redirects; it never stores what it did not serve.
    assert!(!w.cache.join(&w.uncached.file).exists());
}

#[test]
fn db_sync_goes_through_redirect_and_repeat_gets_304() {
    let w = World::new("dbsync");
    let ps = w.pacserve();
    let client = client_of(&ps, "request");
    assert_ok(&client.sync(), "-Sy", &ps, &w.mirror);
    assert_eq!(fs::read(client.sync_db()).ok(), Some(w.mirror_db()));
    assert_eq!(
        w.mirror.served("/core/os/x86_64/core.db"),
        1,
        "{}",
        w.mirror.dump()
    );
    let line = wait_line(&ps, "GET", "/request/core/x86_64/core.db", 307);
    assert_eq!(line.outcome, "mirror");

    assert_ok(&client.sync_again(), "second -Sy", &ps, &w.mirror);
    let revalidated = w.mirror.count(|r| {
        r.method == "GET"
            && r.path == "/core/os/x86_64/core.db"
            && r.status == 304
            && r.if_modified_since.is_some()
    });
    assert_eq!(revalidated, 1, "mirror log:\n{}", w.mirror.dump());
    assert_eq!(w.mirror.served("/core/os/x86_64/core.db"), 1);
    assert_eq!(fs::read(client.sync_db()).ok(), Some(w.mirror_db()));
}

#[test]
fn pacman_path_prefix_works_like_request() {
    let w = World::new("pacmanpath");
    let ps = w.pacserve();
    let client = client_of(&ps, "pacman");
    assert_ok(&client.sync(), "-Sy", &ps, &w.mirror);
    assert_ok(
        &client.download(w.cached.name),
        "-Sw cached",
        &ps,
        &w.mirror,
    );
    assert_ok(
        &client.download(w.uncached.name),
        "-Sw uncached",
        &ps,
        &w.mirror,
    );
    assert_eq!(
        client.cached(&w.cached.file).as_deref(),
        Some(&w.cached.bytes[..])
    );
    assert_eq!(
        client.cached(&w.uncached.file).as_deref(),
        Some(&w.uncached.bytes[..])
    );
    assert_eq!(w.mirror.asked(&w.cached.file), 0, "{}", w.mirror.dump());
    let path = format!("/pacman/core/x86_64/{}", w.cached.file);
    assert_eq!(wait_line(&ps, "GET", &path, 200).outcome, "local");
    let path = format!("/pacman/core/x86_64/{}", w.uncached.file);
    assert_eq!(wait_line(&ps, "GET", &path, 307).outcome, "mirror");
}

#[test]
fn resume_from_part_file_gets_206_from_the_cache() {
    let w = World::new("resume");
    let ps = w.pacserve();
    let client = client_of(&ps, "request");
    assert_ok(&client.sync(), "-Sy", &ps, &w.mirror);
    let part = 100_000;
    fs::write(
        client.cache_dir().join(format!("{}.part", w.cached.file)),
        &w.cached.bytes[..part],
    )
    .expect("write .part");
    assert_ok(
        &client.download(w.cached.name),
        "-Sw (resume)",
        &ps,
        &w.mirror,
    );

    assert_eq!(
        client.cached(&w.cached.file).as_deref(),
        Some(&w.cached.bytes[..])
    );
    assert!(
        !client
            .cache_dir()
            .join(format!("{}.part", w.cached.file))
            .exists()
    );
    let line = wait_line(&ps, "GET", &w.cached.request_path(), 206);
    assert_eq!(line.outcome, "local");
    assert_eq!(line.bytes, (w.cached.bytes.len() - part) as u64);
    assert_eq!(w.mirror.asked(&w.cached.file), 0, "{}", w.mirror.dump());
}

#[test]
fn resume_of_uncached_package_keeps_range_through_redirect() {
    let w = World::new("resume-mirror");
    let ps = w.pacserve();
    let client = client_of(&ps, "request");
    assert_ok(&client.sync(), "-Sy", &ps, &w.mirror);
    let part = 54_321;
    fs::write(
        client.cache_dir().join(format!("{}.part", w.uncached.file)),
        &w.uncached.bytes[..part],
    )
    .expect("write .part");
    assert_ok(
        &client.download(w.uncached.name),
        "-Sw (resume)",
        &ps,
        &w.mirror,
    );

    assert_eq!(
        client.cached(&w.uncached.file).as_deref(),
        Some(&w.uncached.bytes[..])
    );
    let ranged = w.mirror.count(|r| {
        r.method == "GET"
            && r.path == w.uncached.mirror_path()
            && r.status == 206
            && r.range.as_deref() == Some(&format!("bytes={part}-"))
    });
    assert_eq!(ranged, 1, "mirror log:\n{}", w.mirror.dump());
    assert_eq!(
        wait_line(&ps, "GET", &w.uncached.request_path(), 307).outcome,
        "mirror"
    );
}

#[test]
fn self_pointing_server_lines_are_skipped() {
    let w = World::new("selfpoint");
    // Pick the port first so the config can name it; retry if someone takes it meanwhile.
    let mut last_err = String::new();
    let mut started = None;
    for _ in 0..3 {
        let port = free_port();
        let servers = [
            format!("http://127.0.0.1:{port}/request/$repo/$arch"),
            format!("http://localhost:{port}/pacman/$repo/$arch"),
            w.mirror_server(),
        ];
        match Pacserve::try_start(&w.conf(&servers), &["--port", &port.to_string()]) {
            Ok(ps) => {
                started = Some((ps, port));
                break;
            }
            Err(e) => last_err = e,
        }
    }
    let (ps, port) = started.unwrap_or_else(|| panic!("pacserve did not start: {last_err}"));
    assert_eq!(ps.port(), port);

    let client = client_of(&ps, "request");
    assert_ok(&client.sync(), "-Sy", &ps, &w.mirror);
    assert_ok(&client.download(w.uncached.name), "-Sw", &ps, &w.mirror);
    assert_eq!(fs::read(client.sync_db()).ok(), Some(w.mirror_db()));
    assert_eq!(
        client.cached(&w.uncached.file).as_deref(),
        Some(&w.uncached.bytes[..])
    );
    assert_eq!(w.mirror.served("/core/os/x86_64/core.db"), 1);
    assert_eq!(w.mirror.served(&w.uncached.mirror_path()), 1);

    let r = get(ps.port(), "/request/core/x86_64/core.db");
    assert_eq!(r.status, 307);
    assert_eq!(
        r.header("location"),
        Some(&*w.mirror.url("/core/os/x86_64/core.db"))
    );
    let r = get(ps.port(), &w.uncached.request_path());
    assert_eq!(r.status, 307);
    assert_eq!(
        r.header("location"),
        Some(&*w.mirror.url(&w.uncached.mirror_path()))
    );

    // Everything pacserve was asked came from pacman (one GET each) or from us (one more
    // each): a self-probe would show as a HEAD, a self-redirect as a /pacman/ path or as
    // extra GETs.
    let twice = |path: &str| {
        wait_until(LOG_WAIT, || {
            ps.requests().iter().filter(|l| l.path == path).count() >= 2
        })
    };
    assert!(twice("/request/core/x86_64/core.db"), "{}", ps.log());
    assert!(twice(&w.uncached.request_path()), "{}", ps.log());
    let reqs = ps.requests();
    assert!(
        reqs.iter()
            .all(|l| l.method == "GET" && l.path.starts_with("/request/")),
        "pacserve asked itself:\n{}",
        ps.log()
    );
    for path in [
        "/request/core/x86_64/core.db".to_string(),
        w.uncached.request_path(),
    ] {
        let n = reqs.iter().filter(|l| l.path == path).count();
        assert_eq!(n, 2, "{path} requested {n} times:\n{}", ps.log());
    }
}

#[test]
fn parallel_downloads_mix_cache_and_mirror() {
    let dir = TempDir::new("parallel");
    let repo_dir = dir.mkdir("mirror/core/os/x86_64");
    let cache = dir.mkdir("cache");
    let names = [
        "par-a", "par-b", "par-c", "par-d", "par-e", "par-f", "par-g",
    ];
    let pkgs: Vec<PathBuf> = names
        .iter()
        .enumerate()
        .map(|(i, n)| make_package(&repo_dir, n, "1.0-1", 50_000 + i * 7_919))
        .collect();
    repo_add(&repo_dir.join("core.db.tar.gz"), &pkgs);
    // Every other package is in pacserve's cache.
    let in_cache = |i: usize| i % 2 == 0;
    for (i, p) in pkgs.iter().enumerate() {
        if in_cache(i) {
            fs::copy(p, cache.join(p.file_name().unwrap())).expect("fill cache");
        }
    }
    let mirror = Mirror::start(&dir.join("mirror"));
    let conf = write_server_conf(
        dir.path(),
        &[&cache],
        &[("core", &[mirror.url("/$repo/os/$arch")])],
    );
    let ps = Pacserve::start(&conf, &[]);
    let client = PacmanClient::with_options(
        "core",
        &[ps.url("/request/$repo/$arch")],
        "ParallelDownloads = 5",
    );
    assert_ok(&client.sync(), "-Sy", &ps, &mirror);
    let mut args = vec!["-Sw", "--noconfirm"];
    args.extend(names);
    assert_ok(&client.run(&args), "-Sw (parallel)", &ps, &mirror);
    for (i, p) in pkgs.iter().enumerate() {
        let file = p.file_name().unwrap().to_string_lossy().into_owned();
        let want = fs::read(p).expect("read package");
        assert!(
            client.cached(&file).as_deref() == Some(&want[..]),
            "{file} differs"
        );
        let from_mirror = mirror.served(&file);
        assert_eq!(
            from_mirror,
            usize::from(!in_cache(i)),
            "{file} served {from_mirror} times by the mirror:\n{}",
            mirror.dump()
        );
    }
}

#[test]
fn miss_everywhere_is_404_and_pacman_fails_in_bounded_time() {
    let w = World::new("miss");
    let ps = w.pacserve();
    let client = client_of(&ps, "request");
    assert_ok(&client.sync(), "-Sy", &ps, &w.mirror);
    let ran = client.download(w.ghost.name);
    assert!(!ran.timed_out, "pacman hung:\n{}", ran.text());
    assert!(
        !ran.success(),
        "pacman succeeded without a package:\n{}",
        ran.text()
    );
    assert!(
        ran.text().contains(&w.ghost.file),
        "pacman did not name the missing file:\n{}",
        ran.text()
    );
    assert_eq!(client.cached(&w.ghost.file), None);
    assert_eq!(
        wait_line(&ps, "GET", &w.ghost.request_path(), 404).outcome,
        "miss"
    );
    assert_eq!(w.mirror.served(&w.ghost.file), 0);
    assert!(
        w.mirror.asked(&w.ghost.file) >= 1,
        "mirror was never probed:\n{}",
        w.mirror.dump()
    );

    let r = get(ps.port(), &w.ghost.request_path());
    assert_eq!(r.status, 404);
    let r = head(ps.port(), &w.ghost.request_path());
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
}

// ---------------------------------------------------------------------------------------------
// HTTP details, with the raw client

#[test]
fn head_matches_get_without_a_body() {
    let w = World::new("head");
    let ps = w.pacserve();
    let path = w.cached.request_path();
    let len = w.cached.bytes.len() as u64;
    let mtime = mtime_secs(&w.cache.join(&w.cached.file));

    let h = head(ps.port(), &path);
    assert_eq!(h.status, 200, "{}", h.head);
    assert_eq!(h.content_length(), Some(len));
    assert_eq!(h.header("last-modified"), Some(&*http_date_secs(mtime)));
    assert_eq!(h.header("accept-ranges"), Some("bytes"));
    assert!(h.body.is_empty());

    let g = get(ps.port(), &path);
    assert_eq!(g.status, 200, "{}", g.head);
    assert_eq!(g.content_length(), Some(len));
    assert_eq!(g.header("last-modified"), h.header("last-modified"));
    assert_eq!(g.header("accept-ranges"), Some("bytes"));
    assert_eq!(g.body, w.cached.bytes);

    // On one kept-alive connection a HEAD leaves no stray body before the next answer.
    let mut c = RawConn::connect(ps.port()).expect("connect");
    let keep = format!("HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    c.send(keep.as_bytes()).expect("send HEAD");
    let h2 = c.read_response(true).expect("HEAD response");
    assert_eq!(h2.status, 200);
    assert_eq!(h2.content_length(), Some(len));
    c.send(&request_bytes("GET", &path, &[])).expect("send GET");
    let g2 = c.read_response(false).expect("GET response after HEAD");
    assert_eq!(g2.status, 200, "{}", g2.head);
    assert_eq!(g2.body, w.cached.bytes);
}

#[test]
fn range_requests_give_206_or_416_with_the_right_bytes() {
    let w = World::new("range");
    let ps = w.pacserve();
    let path = w.cached.request_path();
    let data = &w.cached.bytes;
    let len = data.len() as u64;
    // (Range header, expected (start, end) or None for 416)
    let cases: Vec<(String, Option<(u64, u64)>)> = vec![
        ("bytes=0-".into(), Some((0, len - 1))),
        ("bytes=1000-".into(), Some((1000, len - 1))),
        ("bytes=10-19".into(), Some((10, 19))),
        ("bytes=0-0".into(), Some((0, 0))),
        ("bytes=-100".into(), Some((len - 100, len - 1))),
        (format!("bytes={}-", len - 1), Some((len - 1, len - 1))),
        (format!("bytes=5-{}", len + 1000), Some((5, len - 1))),
        (format!("bytes=-{}", len + 10), Some((0, len - 1))),
        (format!("bytes={len}-"), None),
        (format!("bytes={}-{}", len + 5, len + 10), None),
    ];
    // GET only: Range is defined for GET alone (RFC 9110 14.2).
    for (range, want) in cases {
        let r = request(ps.port(), "GET", &path, &[("Range", &range)]);
        match want {
            Some((a, b)) => {
                assert_eq!(r.status, 206, "Range: {range}\n{}", r.head);
                assert_eq!(
                    r.header("content-range"),
                    Some(&*format!("bytes {a}-{b}/{len}")),
                    "Range: {range}"
                );
                assert_eq!(r.content_length(), Some(b - a + 1), "Range: {range}");
                assert!(
                    r.body == data[a as usize..=b as usize],
                    "wrong bytes for Range: {range}"
                );
            }
            None => {
                assert_eq!(r.status, 416, "Range: {range}\n{}", r.head);
                assert_eq!(
                    r.header("content-range"),
                    Some(&*format!("bytes */{len}")),
                    "Range: {range}"
                );
                assert!(!contains_bytes(&r.body, &data[..64]));
            }
        }
    }
    assert_eq!(wait_line(&ps, "GET", &path, 206).outcome, "local");
    assert_eq!(w.mirror.asked(&w.cached.file), 0);
}

#[test]
fn if_modified_since_on_a_cached_package() {
    let w = World::new("ims");
    let ps = w.pacserve();
    let path = w.cached.request_path();
    let mtime = mtime_secs(&w.cache.join(&w.cached.file));

    let cases = [
        (http_date_secs(mtime), 304),
        (http_date_secs(mtime + 86_400), 304),
        (http_date_secs(784_111_777), 200),
        (http_date_secs(mtime - 1), 200),
    ];
    for (date, want) in cases {
        let r = request(ps.port(), "GET", &path, &[("If-Modified-Since", &date)]);
        assert_eq!(
            r.status, want,
            "If-Modified-Since: {date} (mtime {mtime})\n{}",
            r.head
        );
        if want == 304 {
            assert!(r.body.is_empty());
        } else {
            assert_eq!(r.body, w.cached.bytes);
        }
    }
    assert_eq!(wait_line(&ps, "GET", &path, 304).outcome, "local");
}

#[test]
fn database_requests_redirect_to_the_first_mirror() {
    let w = World::new("dbredirect");
    let dead = dead_port();
    let servers = [
        format!("http://127.0.0.1:{dead}/$repo/os/$arch"),
        w.mirror_server(),
    ];
    let ps = Pacserve::start(&w.conf(&servers), &[]);
    for file in ["core.db", "core.files", "core.db.sig", "core.db.tar.gz"] {
        let r = get(ps.port(), &format!("/request/core/x86_64/{file}"));
        assert_eq!(r.status, 307, "{file}\n{}", r.head);
        assert_eq!(
            r.header("location"),
            Some(&*format!("http://127.0.0.1:{dead}/core/os/x86_64/{file}")),
            "{file}"
        );
    }
    assert_eq!(w.mirror.asked("core.db"), 0, "{}", w.mirror.dump());
}

#[test]
fn mirror_probe_skips_dead_hung_and_missing_mirrors() {
    let w = World::new("probe");
    let empty_dir = w.dir.mkdir("empty");
    let empty = Mirror::start(&empty_dir);
    let hung = HungServer::start();
    let dead = dead_port();
    let servers = [
        format!("http://127.0.0.1:{dead}/$repo/os/$arch"),
        hung.url("/$repo/os/$arch"),
        empty.url("/$repo/os/$arch"),
        w.mirror_server(),
    ];
    let ps = Pacserve::start(&w.conf(&servers), &[]);

    let r = get(ps.port(), &w.uncached.request_path());
    assert_eq!(r.status, 307, "{}\n{}", r.head, ps.log());
    assert_eq!(
        r.header("location"),
        Some(&*w.mirror.url(&w.uncached.mirror_path()))
    );
    assert!(empty.asked(&w.uncached.file) >= 1, "{}", empty.dump());
    assert_eq!(empty.served(&w.uncached.file), 0);
    assert!(hung.accepted() >= 1, "the hung mirror was never tried");
    // The winning mirror was probed, not downloaded from.
    assert_eq!(w.mirror.served(&w.uncached.file), 0, "{}", w.mirror.dump());

    let r = get(ps.port(), &w.ghost.request_path());
    assert_eq!(r.status, 404, "{}", r.head);

    // pacman gets the package through the survivor.
    let client = PacmanClient::new("core", &[ps.url("/request/$repo/$arch"), w.mirror_server()]);
    // The database redirect goes to the dead first mirror; pacman falls back to its own second
    // Server for it.
    assert_ok(&client.sync(), "-Sy", &ps, &w.mirror);
    assert_ok(&client.download(w.uncached.name), "-Sw", &ps, &w.mirror);
    assert_eq!(
        client.cached(&w.uncached.file).as_deref(),
        Some(&w.uncached.bytes[..])
    );
}

#[test]
fn https_mirror_is_redirected_to_unprobed() {
    let w = World::new("https");
    let empty_dir = w.dir.mkdir("empty");
    let empty = Mirror::start(&empty_dir);
    let dead = dead_port();
    let servers = [
        empty.url("/$repo/os/$arch"),
        format!("https://127.0.0.1:{dead}/$repo/os/$arch"),
        w.mirror_server(),
    ];
    let ps = Pacserve::start(&w.conf(&servers), &[]);
    let r = get(ps.port(), &w.uncached.request_path());
    assert_eq!(r.status, 307, "{}", r.head);
    assert_eq!(
        r.header("location"),
        Some(&*format!(
            "https://127.0.0.1:{dead}/core/os/x86_64/{}",
            w.uncached.file
        ))
    );
    assert!(empty.asked(&w.uncached.file) >= 1);
    assert_eq!(w.mirror.asked(&w.uncached.file), 0, "{}", w.mirror.dump());
}
