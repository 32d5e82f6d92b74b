//! The real pacman through pacserve: packages from the cache and from mirrors, databases,
//! resumes, self-pointing Server lines, misses, and the HTTP details pacman relies on.
//!
//! Each test builds its own world: a mirror (a real HTTP server on 127.0.0.1) holding a repo
//! database made by `repo-add` and real packages, pacserve with its own cache dir, and a pacman
//! client with a private root whose only `Server` is pacserve. What pacserve answered is read
//! back from its `/status.json`.

mod common;

use std::fs;
use std::path::PathBuf;

use common::*;

/// A mirror with repo `core` (packages `cachedpkg`, `fetchedpkg`; `ghostpkg` is in the
/// database only), and pacserve's cache dir holding `cachedpkg`.
struct World {
    host: Host,
    repo: Repo,
}

impl World {
    fn new(tag: &str) -> World {
        let repo = Repo::new(
            tag,
            &[
                ("cachedpkg", 300_000),
                ("fetchedpkg", 200_000),
                ("ghostpkg", 1_000),
            ],
        );
        repo.remove_from_mirror(repo.pkg("ghostpkg"));
        let host = repo.host("server");
        host.hold(repo.pkg("cachedpkg"));
        World { host, repo }
    }

    fn cached(&self) -> &Pkg {
        self.repo.pkg("cachedpkg")
    }

    fn uncached(&self) -> &Pkg {
        self.repo.pkg("fetchedpkg")
    }

    fn ghost(&self) -> &Pkg {
        self.repo.pkg("ghostpkg")
    }

    fn mirror(&self) -> &Mirror {
        &self.repo.mirror
    }

    /// pacserve.conf with `servers` for `[core]`.
    fn conf(&self, servers: &[String]) -> PathBuf {
        self.host.set_servers(servers)
    }

    /// pacserve whose `[core]` lists just the mirror.
    fn pacserve(&self) -> Pacserve {
        self.host.start(&[])
    }

    /// A pacman client whose only server is `ps` under `/PREFIX/$repo/$arch`, after its first
    /// `-Sy`.
    fn synced_client(&self, ps: &Pacserve, prefix: &str) -> PacmanClient {
        let client = client_of(ps, prefix);
        client.sync().assert_ok("-Sy", &self.logs(ps));
        client
    }

    /// pacserve's log and the mirror's, for failure messages.
    fn logs(&self, ps: &Pacserve) -> String {
        logs(&[ps], self.mirror())
    }
}

/// A pacman client whose only server is pacserve, under `/PREFIX/$repo/$arch`.
fn client_of(ps: &Pacserve, prefix: &str) -> PacmanClient {
    PacmanClient::new("core", &[ps.url(&format!("/{prefix}/$repo/$arch"))])
}

/// Write the first `len` bytes of `pkg` as the `.part` pacman resumes from.
fn write_part(client: &PacmanClient, pkg: &Pkg, len: usize) -> PathBuf {
    let part = client.cache_dir().join(format!("{}.part", pkg.file));
    fs::write(&part, &pkg.bytes[..len]).expect("write .part");
    part
}

// ---------------------------------------------------------------------------------------------
// The harness itself (no pacserve): proves packages, repo-add, the client config and the mirror.

both_pacmans! {
fn harness_pacman_against_mirror_directly() {
    let w = World::new("harness");
    let client = PacmanClient::new("core", &[w.repo.server()]);
    let ran = client.sync();
    assert!(ran.success(), "{}\n{}", ran.text(), w.mirror().dump());
    assert_eq!(fs::read(client.sync_db()).ok(), Some(w.repo.db()));
    w.mirror().assert_served("/core/os/x86_64/core.db", 1);
    // The pacman under test is the one the test is named for.
    let agent = match client.pacman() {
        Pacman::Debian6 => "pacman/6.0.2 ",
        Pacman::Arch7 => "pacman/7.1.0 ",
    };
    let agents: Vec<Option<String>> = w.mirror().requests().into_iter().map(|r| r.user_agent).collect();
    assert!(
        agents.iter().all(|a| a.as_deref().is_some_and(|a| a.starts_with(agent))),
        "User-Agents {agents:?}, want {agent}..."
    );

    let ran = client.sync_again();
    assert!(ran.success(), "{}", ran.text());
    let revalidated = w.mirror().count(|r| {
        r.path == "/core/os/x86_64/core.db" && r.status == 304 && r.if_modified_since.is_some()
    });
    assert_eq!(revalidated, 1, "mirror log:\n{}", w.mirror().dump());

    let ran = client.download(&w.uncached().name);
    assert!(ran.success(), "{}", ran.text());
    assert_eq!(
        client.cached(&w.uncached().file),
        Some(w.uncached().bytes.clone())
    );

    // Resume from a .part: pacman asks for the rest with a Range header.
    let part = 12_345;
    write_part(&client, w.cached(), part);
    let ran = client.download(&w.cached().name);
    assert!(ran.success(), "{}", ran.text());
    assert_eq!(
        client.cached(&w.cached().file),
        Some(w.cached().bytes.clone())
    );
    let ranged = w.mirror().count(|r| {
        r.path == w.cached().mirror_path()
            && r.status == 206
            && r.range.as_deref() == Some(&format!("bytes={part}-"))
    });
    assert_eq!(ranged, 1, "mirror log:\n{}", w.mirror().dump());

    // A package nobody has: pacman fails, within its time limit.
    let ran = client.download(&w.ghost().name);
    assert!(!ran.success() && !ran.timed_out, "{}", ran.text());
}
}

// ---------------------------------------------------------------------------------------------
// pacman through pacserve

both_pacmans! {
fn cached_package_comes_from_pacserve_byte_identical() {
    let w = World::new("cached");
    let ps = w.pacserve();
    let client = w.synced_client(&ps, "request");
    client.fetch(w.cached(), || w.logs(&ps));

    w.mirror().assert_asked(&w.cached().file, 0);
    let lookup = ps.expect_lookup("GET", &w.cached().request_path(), 200);
    assert_eq!(lookup.outcome, "local");
    assert_eq!(lookup.bytes, w.cached().size());
}
}

both_pacmans! {
fn uncached_package_comes_via_the_mirror() {
    let w = World::new("uncached");
    let ps = w.pacserve();
    let client = w.synced_client(&ps, "request");
    client.fetch(w.uncached(), || w.logs(&ps));

    w.mirror().assert_served(&w.uncached().mirror_path(), 1);
    let lookup = ps.expect_lookup("GET", &w.uncached().request_path(), 307);
    assert_eq!(lookup.outcome, "mirror");
    // pacserve only redirects; it never stores what it did not serve.
    assert!(!w.host.cache.join(&w.uncached().file).exists());
}
}

both_pacmans! {
/// `CacheServer = pacserve/cache/…` before the mirror's `Server`: pacman 7.1 takes a cached
/// package from pacserve, and on a miss hears a plain 404 and goes quietly to the mirror
/// (databases never come from a CacheServer). pacman 6.0.2 does not know the directive: it
/// warns and takes everything from the mirror.
fn cache_server_line_takes_hits_from_pacserve_and_misses_from_the_mirror() {
    let w = World::new("cacheserver");
    let ps = w.pacserve();
    let client = PacmanClient::with_cache_servers(
        "core",
        &[ps.url("/cache/$repo/$arch")],
        &[w.repo.server()],
    );
    let synced = client.sync();
    synced.assert_ok("-Sy", &w.logs(&ps));
    w.mirror().assert_served("/core/os/x86_64/core.db", 1);
    let hit = client.fetch(w.cached(), || w.logs(&ps));
    let miss = client.fetch(w.uncached(), || w.logs(&ps));
    match client.pacman() {
        Pacman::Arch7 => {
            ps.expect_lookup("GET", &w.cached().on("cache"), 200);
            w.mirror().assert_asked(&w.cached().mirror_path(), 0);
            assert_eq!(ps.expect_lookup("GET", &w.uncached().on("cache"), 404).outcome, "miss");
            w.mirror().assert_served(&w.uncached().mirror_path(), 1);
            for ran in [&hit, &miss] {
                assert!(!ran.text().contains("error"), "a CacheServer miss is quiet:\n{}", ran.text());
            }
            assert!(
                ps.lookups().iter().all(|l| !l.path.contains(".db")),
                "no database from a CacheServer"
            );
        }
        Pacman::Debian6 => {
            assert!(
                synced.text().contains("CacheServer"),
                "6.0.2 warns about the directive:\n{}",
                synced.text()
            );
            w.mirror().assert_served(&w.cached().mirror_path(), 1);
            w.mirror().assert_served(&w.uncached().mirror_path(), 1);
            assert!(ps.lookups().is_empty(), "6.0.2 never asks a CacheServer");
        }
    }
}
}

both_pacmans! {
fn db_sync_goes_through_redirect_and_repeat_gets_304() {
    let w = World::new("dbsync");
    let ps = w.pacserve();
    let client = w.synced_client(&ps, "request");
    assert_eq!(fs::read(client.sync_db()).ok(), Some(w.repo.db()));
    w.mirror().assert_served("/core/os/x86_64/core.db", 1);
    let lookup = ps.expect_lookup("GET", "/request/core/x86_64/core.db", 307);
    assert_eq!(lookup.outcome, "mirror");

    client.sync_again().assert_ok("second -Sy", &w.logs(&ps));
    let revalidated = w.mirror().count(|r| {
        r.method == "GET"
            && r.path == "/core/os/x86_64/core.db"
            && r.status == 304
            && r.if_modified_since.is_some()
    });
    assert_eq!(revalidated, 1, "mirror log:\n{}", w.mirror().dump());
    w.mirror().assert_served("/core/os/x86_64/core.db", 1);
    assert_eq!(fs::read(client.sync_db()).ok(), Some(w.repo.db()));
}
}

both_pacmans! {
fn pacman_path_prefix_works_like_request() {
    let w = World::new("pacmanpath");
    let ps = w.pacserve();
    let client = w.synced_client(&ps, "pacman");
    client.fetch(w.cached(), || w.logs(&ps));
    client.fetch(w.uncached(), || w.logs(&ps));
    w.mirror().assert_asked(&w.cached().file, 0);
    let path = w.cached().on("pacman");
    assert_eq!(ps.expect_lookup("GET", &path, 200).outcome, "local");
    let path = w.uncached().on("pacman");
    assert_eq!(ps.expect_lookup("GET", &path, 307).outcome, "mirror");
}
}

both_pacmans! {
fn resume_from_part_file_gets_206_from_the_cache() {
    let w = World::new("resume");
    let ps = w.pacserve();
    let client = w.synced_client(&ps, "request");
    let part = 100_000;
    let part_file = write_part(&client, w.cached(), part);
    client.fetch(w.cached(), || w.logs(&ps));

    assert!(!part_file.exists());
    let lookup = ps.expect_lookup("GET", &w.cached().request_path(), 206);
    assert_eq!(lookup.outcome, "local");
    assert_eq!(lookup.bytes, w.cached().size() - part as u64);
    w.mirror().assert_asked(&w.cached().file, 0);
}
}

both_pacmans! {
fn resume_of_uncached_package_keeps_range_through_redirect() {
    let w = World::new("resume-mirror");
    let ps = w.pacserve();
    let client = w.synced_client(&ps, "request");
    let part = 54_321;
    write_part(&client, w.uncached(), part);
    client.fetch(w.uncached(), || w.logs(&ps));

    let ranged = w.mirror().count(|r| {
        r.method == "GET"
            && r.path == w.uncached().mirror_path()
            && r.status == 206
            && r.range.as_deref() == Some(&format!("bytes={part}-"))
    });
    assert_eq!(ranged, 1, "mirror log:\n{}", w.mirror().dump());
    assert_eq!(
        ps.expect_lookup("GET", &w.uncached().request_path(), 307)
            .outcome,
        "mirror"
    );
}
}

both_pacmans! {
fn self_pointing_server_lines_are_skipped() {
    let w = World::new("selfpoint");
    // The port is picked first so the config can name it.
    let ps = with_free_ports(1, |p| {
        let servers = [
            format!("http://127.0.0.1:{}/request/$repo/$arch", p[0]),
            format!("http://localhost:{}/pacman/$repo/$arch", p[0]),
            w.repo.server(),
        ];
        Pacserve::builder(&w.conf(&servers)).port(p[0]).try_start()
    });

    let client = w.synced_client(&ps, "request");
    client.fetch(w.uncached(), || w.logs(&ps));
    assert_eq!(fs::read(client.sync_db()).ok(), Some(w.repo.db()));
    w.mirror().assert_served("/core/os/x86_64/core.db", 1);
    w.mirror().assert_served(&w.uncached().mirror_path(), 1);

    let r = get(ps.port(), "/request/core/x86_64/core.db");
    assert_eq!(r.status, 307);
    assert_eq!(
        r.header("location"),
        Some(&*w.mirror().url("/core/os/x86_64/core.db"))
    );
    let r = get(ps.port(), &w.uncached().request_path());
    assert_eq!(r.status, 307);
    assert_eq!(
        r.header("location"),
        Some(&*w.mirror().url(&w.uncached().mirror_path()))
    );

    // Everything pacserve was asked came from pacman (one GET each) or from us (one more
    // each): a self-probe would show as a HEAD, a self-redirect as a /pacman/ path or as
    // extra GETs.
    let lookups = ps.lookups();
    assert!(
        lookups
            .iter()
            .all(|l| l.method == "GET" && l.path.starts_with("/request/")),
        "pacserve asked itself: {lookups:?}"
    );
    for path in [
        "/request/core/x86_64/core.db".to_string(),
        w.uncached().request_path(),
    ] {
        let n = lookups.iter().filter(|l| l.path == path).count();
        assert_eq!(n, 2, "{path} requested {n} times: {lookups:?}");
    }
}
}

both_pacmans! {
fn parallel_downloads_mix_cache_and_mirror() {
    let names = [
        "par-a", "par-b", "par-c", "par-d", "par-e", "par-f", "par-g",
    ];
    let specs: Vec<(&str, usize)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, 50_000 + i * 7_919))
        .collect();
    let repo = Repo::new("parallel", &specs);
    let host = repo.host("server");
    // Every other package is in pacserve's cache.
    let in_cache = |i: usize| i % 2 == 0;
    for (i, p) in repo.pkgs.iter().enumerate() {
        if in_cache(i) {
            host.hold(p);
        }
    }
    let ps = host.start(&[]);
    let client = PacmanClient::with_options(
        "core",
        &[ps.url("/request/$repo/$arch")],
        "ParallelDownloads = 5",
    );
    let context = || logs(&[&ps], &repo.mirror);
    client.sync().assert_ok("-Sy", &context());
    let mut args = vec!["-Sw", "--noconfirm"];
    args.extend(names);
    client.run(&args).assert_ok("-Sw (parallel)", &context());
    for (i, p) in repo.pkgs.iter().enumerate() {
        assert!(
            client.cached(&p.file).as_deref() == Some(&p.bytes[..]),
            "{} differs",
            p.file
        );
        let from_mirror = repo.mirror.served(&p.file);
        assert_eq!(
            from_mirror,
            usize::from(!in_cache(i)),
            "{} served {from_mirror} times by the mirror:\n{}",
            p.file,
            repo.mirror.dump()
        );
    }
}
}

both_pacmans! {
fn miss_everywhere_is_404_and_pacman_fails_in_bounded_time() {
    let w = World::new("miss");
    let ps = w.pacserve();
    let client = w.synced_client(&ps, "request");
    let ran = client.download(&w.ghost().name);
    assert!(!ran.timed_out, "pacman hung:\n{}", ran.text());
    assert!(
        !ran.success(),
        "pacman succeeded without a package:\n{}",
        ran.text()
    );
    assert!(
        ran.text().contains(&w.ghost().file),
        "pacman did not name the missing file:\n{}",
        ran.text()
    );
    assert_eq!(client.cached(&w.ghost().file), None);
    assert_eq!(
        ps.expect_lookup("GET", &w.ghost().request_path(), 404)
            .outcome,
        "miss"
    );
    w.mirror().assert_served(&w.ghost().file, 0);
    assert!(
        w.mirror().asked(&w.ghost().file) >= 1,
        "mirror was never probed:\n{}",
        w.mirror().dump()
    );

    let r = get(ps.port(), &w.ghost().request_path());
    assert_eq!(r.status, 404);
    let r = head(ps.port(), &w.ghost().request_path());
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
}
}

// ---------------------------------------------------------------------------------------------
// HTTP details, with the raw client

#[test]
fn head_matches_get_without_a_body() {
    let w = World::new("head");
    let ps = w.pacserve();
    let path = w.cached().request_path();
    let len = w.cached().size();
    let mtime = mtime_secs(&w.host.cache.join(&w.cached().file));

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
    assert_eq!(g.body, w.cached().bytes);

    // On one kept-alive connection a HEAD leaves no stray body before the next answer.
    let mut c = RawConn::connect(ps.port()).expect("connect");
    let h2 = c.ask("HEAD", &path).expect("HEAD response");
    assert_eq!(h2.status, 200);
    assert_eq!(h2.content_length(), Some(len));
    c.send(&request_bytes("GET", &path, &[])).expect("send GET");
    let g2 = c.read_response(false).expect("GET response after HEAD");
    assert_eq!(g2.status, 200, "{}", g2.head);
    assert_eq!(g2.body, w.cached().bytes);
}

#[test]
fn range_requests_give_206_or_416_with_the_right_bytes() {
    let w = World::new("range");
    let ps = w.pacserve();
    let path = w.cached().request_path();
    let data = &w.cached().bytes;
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
    assert_eq!(ps.expect_lookup("GET", &path, 206).outcome, "local");
    w.mirror().assert_asked(&w.cached().file, 0);
}

#[test]
fn if_modified_since_on_a_cached_package() {
    let w = World::new("ims");
    let ps = w.pacserve();
    let path = w.cached().request_path();
    let mtime = mtime_secs(&w.host.cache.join(&w.cached().file));

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let cases = [
        (http_date_secs(mtime), 304),
        (http_date_secs(now.max(mtime)), 304),
        (http_date_secs(784_111_777), 200),
        (http_date_secs(mtime - 1), 200),
        // A date later than the server's clock is ignored (RFC 9110 §13.1.3).
        (http_date_secs(now + 86_400), 200),
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
            assert_eq!(r.body, w.cached().bytes);
        }
    }
    assert_eq!(ps.expect_lookup("GET", &path, 304).outcome, "local");
}

#[test]
fn database_requests_redirect_to_the_first_mirror() {
    let w = World::new("dbredirect");
    let dead = dead_port();
    let servers = [
        format!("http://127.0.0.1:{dead}/$repo/os/$arch"),
        w.repo.server(),
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
    w.mirror().assert_asked("core.db", 0);
}

both_pacmans! {
fn mirror_probe_skips_dead_hung_and_missing_mirrors() {
    let w = World::new("probe");
    let empty = Mirror::start(&w.repo.dir.mkdir("empty"));
    let hung = HungServer::start();
    let dead = dead_port();
    let servers = [
        format!("http://127.0.0.1:{dead}/$repo/os/$arch"),
        hung.url("/$repo/os/$arch"),
        empty.url("/$repo/os/$arch"),
        w.repo.server(),
    ];
    let ps = Pacserve::start(&w.conf(&servers), &[]);

    let r = get(ps.port(), &w.uncached().request_path());
    assert_eq!(r.status, 307, "{}\n{}", r.head, ps.log());
    assert_eq!(
        r.header("location"),
        Some(&*w.repo.mirror_url(w.uncached()))
    );
    assert!(empty.asked(&w.uncached().file) >= 1, "{}", empty.dump());
    assert_eq!(empty.served(&w.uncached().file), 0);
    assert!(hung.accepted() >= 1, "the hung mirror was never tried");
    // The winning mirror was probed, not downloaded from.
    w.mirror().assert_served(&w.uncached().file, 0);

    let r = get(ps.port(), &w.ghost().request_path());
    assert_eq!(r.status, 404, "{}", r.head);

    // pacman gets the package through the survivor.
    let client = PacmanClient::new("core", &[ps.url("/request/$repo/$arch"), w.repo.server()]);
    // The database redirect goes to the dead first mirror; pacman falls back to its own second
    // Server for it.
    client.sync().assert_ok("-Sy", &w.logs(&ps));
    client.fetch(w.uncached(), || w.logs(&ps));
}
}

#[test]
fn https_mirror_is_redirected_to_unprobed() {
    let w = World::new("https");
    let empty = Mirror::start(&w.repo.dir.mkdir("empty"));
    let dead = dead_port();
    let servers = [
        empty.url("/$repo/os/$arch"),
        format!("https://127.0.0.1:{dead}/$repo/os/$arch"),
        w.repo.server(),
    ];
    let ps = Pacserve::start(&w.conf(&servers), &[]);
    let r = get(ps.port(), &w.uncached().request_path());
    assert_eq!(r.status, 307, "{}", r.head);
    assert_eq!(
        r.header("location"),
        Some(&*format!(
            "https://127.0.0.1:{dead}/core/os/x86_64/{}",
            w.uncached().file
        ))
    );
    assert!(empty.asked(&w.uncached().file) >= 1);
    w.mirror().assert_asked(&w.uncached().file, 0);
}
