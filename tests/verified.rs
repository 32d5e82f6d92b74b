//! Verified copies, with the real pacman and databases made by `repo-add`: a copy that is not
//! the file this host's sync database describes (another size, or another SHA-256) is never
//! where pacman is sent, whether it is a peer's or this host's own; an `any` package may come
//! from a peer of another architecture when its SHA-256 matches; a database pacman rewrote is
//! read again, and a broken one keeps the previous checksums.

mod common;

use std::fs;
use std::path::PathBuf;

use common::*;

/// The package of these tests: big enough to be worth sharing, small enough to hash at once.
const PAYLOAD: usize = 300_000;

/// A repository holding `verpkg`, and the database that describes it.
struct World {
    repo: Repo,
}

impl World {
    fn new(tag: &str) -> World {
        World {
            repo: Repo::new(tag, &[("verpkg", PAYLOAD)]),
        }
    }

    fn pkg(&self) -> &Pkg {
        self.repo.pkg("verpkg")
    }

    /// A host whose pacman has synced the repository (pacserve verifies against that db).
    fn synced_host(&self, name: &str) -> Host {
        let h = self.repo.host(name);
        h.learn(&self.repo.db());
        h
    }

    /// The same name, with its size changed.
    fn truncated(&self) -> Vec<u8> {
        let b = &self.pkg().bytes;
        b[..b.len() - 1000].to_vec()
    }

    /// The same name and size, one byte changed.
    fn corrupted(&self) -> Vec<u8> {
        let mut b = self.pkg().bytes.clone();
        let mid = b.len() / 2;
        b[mid] ^= 0x5a;
        b
    }
}

fn client_of(ps: &Pacserve) -> PacmanClient {
    PacmanClient::new("core", &[ps.url("/request/$repo/$arch")])
}

/// `verification.skipped` of `ps`'s status: (holder, file, why) of each.
fn skipped(ps: &Pacserve) -> Vec<(String, String, String)> {
    copies(ps, "skipped")
}

/// `verification.bad_local`: (holder dir, file, why) of each.
fn bad_local(ps: &Pacserve) -> Vec<(String, String, String)> {
    copies(ps, "bad_local")
}

fn copies(ps: &Pacserve, key: &str) -> Vec<(String, String, String)> {
    let status = ps.status_json();
    let list = status
        .field("verification")
        .field(key)
        .as_array()
        .unwrap_or_else(|| panic!("verification.{key} is not an array"))
        .to_vec();
    list.iter()
        .map(|c| {
            let s = |k: &str| c.field(k).as_str().unwrap_or_default().to_string();
            (s("holder"), s("file"), s("why"))
        })
        .collect()
}

/// Wait (bounded) until `f` holds for `ps`'s skipped copies.
fn wait_skipped(ps: &Pacserve, f: impl Fn(&[(String, String, String)]) -> bool) -> bool {
    wait_until(LOG_WAIT, || f(&skipped(ps)))
}

both_pacmans! {
/// Two peers hold a wrong `verpkg` (one shorter, one of the same size with a byte changed):
/// pacman on A gets it from the mirror, and A's status names both copies and why; with a
/// third peer holding the right one after them, that one is used.
fn wrong_copies_on_peers_are_skipped_and_named() {
    let w = World::new("wrongpeer");
    let pkg = w.pkg();
    let short = w.repo.host("short");
    short.put(&pkg.file, &w.truncated());
    let flipped = w.repo.host("flipped");
    flipped.put(&pkg.file, &w.corrupted());
    let good = w.repo.host("good");
    good.hold(pkg);
    let (s, f, g) = (short.start(&[]), flipped.start(&[]), good.start(&[]));

    // Without the good peer: the mirror.
    let a = w.synced_host("a");
    let ps = a.start(&["--pacserver", &s.authority(), "--pacserver", &f.authority()]);
    let client = client_of(&ps);
    client.sync().assert_ok("-Sy", &logs(&[&ps, &s, &f], &w.repo.mirror));
    client.fetch(pkg, || logs(&[&ps, &s, &f], &w.repo.mirror));
    w.repo.mirror.assert_served(&pkg.mirror_path(), 1);
    assert_eq!(ps.expect_lookup("GET", &pkg.request_path(), 307).outcome, "mirror");
    assert!(
        wait_skipped(&ps, |sk| sk.len() == 2),
        "two skipped copies: {:?}",
        skipped(&ps)
    );
    let mut got = skipped(&ps);
    got.sort();
    let mut want = vec![
        (s.authority(), pkg.file.clone(), "size".to_string()),
        (f.authority(), pkg.file.clone(), "sha256".to_string()),
    ];
    want.sort();
    assert_eq!(got, want);
    let by = ps.status_json().field("verification").field("skipped_by").clone();
    assert_eq!((by.num("size"), by.num("sha256")), (1, 1));
    drop(ps);

    // With the good peer listed after them: it is used, and the mirror not asked again.
    let a2 = w.synced_host("a2");
    let ps = a2.start(&[
        "--pacserver",
        &s.authority(),
        "--pacserver",
        &f.authority(),
        "--pacserver",
        &g.authority(),
    ]);
    let client = client_of(&ps);
    client.sync().assert_ok("-Sy", &logs(&[&ps, &g], &w.repo.mirror));
    client.fetch(pkg, || logs(&[&ps, &s, &f, &g], &w.repo.mirror));
    assert_eq!(ps.expect_lookup("GET", &pkg.request_path(), 307).outcome, "peer");
    g.expect_lookup("GET", &pkg.lan_path(), 200);
    w.repo.mirror.assert_served(&pkg.mirror_path(), 1);
}
}

both_pacmans! {
/// B's own cache holds a shorter `verpkg` and a same-size corrupted `corrupt`: neither ever
/// reaches pacman, on A (B's peer) or on B itself; both come from the mirror, and B's status
/// names them as wrong local copies.
fn wrong_copies_in_the_cache_are_never_served() {
    let repo = Repo::new("wronglocal", &[("verpkg", PAYLOAD), ("corrupt", PAYLOAD)]);
    let (short, corrupt) = (repo.pkg("verpkg"), repo.pkg("corrupt"));
    let b = repo.host("b");
    b.learn(&repo.db());
    b.put(&short.file, &short.bytes[..short.bytes.len() - 1000]);
    let mut flipped = corrupt.bytes.clone();
    flipped[1000] ^= 0xff;
    b.put(&corrupt.file, &flipped);
    let pb = b.start(&[]);
    let a = repo.host("a");
    a.learn(&repo.db());
    let pa = a.start(&["--pacserver", &pb.authority()]);
    let context = || logs(&[&pa, &pb], &repo.mirror);

    let client = client_of(&pa);
    client.sync().assert_ok("-Sy", &context());
    client.fetch(short, context);
    client.fetch(corrupt, context);
    repo.mirror.assert_served(&short.mirror_path(), 1);
    repo.mirror.assert_served(&corrupt.mirror_path(), 1);
    // B never offered its short copy; its same-size one A refused by its SHA-256.
    assert_eq!(pb.expect_lookup("HEAD", &short.peer_path(), 404).outcome, "miss");
    assert!(
        wait_skipped(&pa, |sk| sk
            .iter()
            .any(|(h, f, why)| *h == pb.authority() && *f == corrupt.file && why == "sha256")
            || pb.recent().iter().any(|l| l.path == corrupt.peer_path() && l.status == 404)),
        "B's corrupted copy was neither refused by B nor skipped by A:\n{}",
        context()
    );

    // B's own pacman: the cache copies are not served, the mirror's are.
    let own = client_of(&pb);
    own.sync().assert_ok("-Sy", &context());
    own.fetch(short, context);
    own.fetch(corrupt, context);
    repo.mirror.assert_served(&short.mirror_path(), 2);
    repo.mirror.assert_served(&corrupt.mirror_path(), 2);
    assert_eq!(pb.expect_lookup("GET", &short.request_path(), 307).outcome, "mirror");
    assert_eq!(pb.expect_lookup("GET", &corrupt.request_path(), 307).outcome, "mirror");
    // Each wrong copy was looked at more than once (A's lookup asked B, then B's own pacman
    // asked B): one log line each.
    for f in [&short.file, &corrupt.file] {
        assert_eq!(
            pb.lines_with(&format!("{f}: not served")),
            1,
            "one log line for {f}:\n{}",
            pb.log()
        );
    }
    let cache: PathBuf = b.cache.clone();
    let mut bad = bad_local(&pb);
    bad.sort();
    let dir = cache.display().to_string();
    assert_eq!(
        bad,
        [
            (dir.clone(), corrupt.file.clone(), "sha256".to_string()),
            (dir, short.file.clone(), "size".to_string()),
        ]
    );
    assert_eq!(
        pb.status_json().field("verification").num("bad_local_total"),
        2
    );
}
}

/// A group and port for loopback multicast of one test (tests of one file run at once).
fn multicast_args(group_last: u8) -> Vec<String> {
    let port = free_udp_port();
    vec![
        "--multicast".into(),
        "--multicast-interface".into(),
        "127.0.0.1".into(),
        "--multicast-group".into(),
        format!("239.255.157.{group_last}"),
        "--multicast-port".into(),
        port.to_string(),
        "--multicast-interval".into(),
        "1".into(),
    ]
}

/// One board (aarch64) holding `board_copy` of the `any` package and one desk (x86_64, with
/// or without its sync database) on a loopback multicast group of their own; pacman on the
/// desk downloads the package. What the desk answered, and the desk and board themselves.
struct AnyWorld {
    dir: TempDir,
    any: Pkg,
    db: Vec<u8>,
    mirror: Mirror,
}

fn any_case(
    w: &AnyWorld,
    tag: &str,
    group: u8,
    board_copy: &[u8],
    with_db: bool,
) -> (String, Pacserve, Pacserve) {
    let (dir, any, mirror) = (&w.dir, &w.any, &w.mirror);
    let server = mirror.url("/$repo/os/$arch");
    let db = with_db.then_some(&w.db[..]);
    let mc = multicast_args(group);
    let mc: Vec<&str> = mc.iter().map(String::as_str).collect();
    let servers = [server];
    let board_dir = dir.mkdir(format!("{tag}-board"));
    let board_cache = dir.mkdir(format!("{tag}-board/cache"));
    let board_conf = write_server_conf_for(
        &board_dir,
        "aarch64",
        &[&board_cache],
        &[("core", &servers)],
    );
    fs::write(board_cache.join(&any.file), board_copy).expect("the board's copy");
    let board = Pacserve::builder(&board_conf)
        .name("board")
        .args(&mc)
        .start();
    let desk_dir = dir.mkdir(format!("{tag}-desk"));
    let desk_cache = dir.mkdir(format!("{tag}-desk/cache"));
    let desk_conf = write_server_conf(&desk_dir, &[&desk_cache], &[("core", &servers)]);
    if let Some(db) = db {
        let sync = desk_dir.join("db/sync");
        fs::create_dir_all(&sync).expect("mkdir sync");
        fs::write(sync.join("core.db"), db).expect("write db");
    }
    let desk = Pacserve::builder(&desk_conf).name("desk").args(&mc).start();
    assert!(
        desk.wait_peer(&board.authority(), LOG_WAIT).is_some(),
        "the desk discovers the board:\n{}",
        desk.log()
    );
    let client = client_of(&desk);
    client
        .sync()
        .assert_ok("-Sy", &logs(&[&desk, &board], mirror));
    client.fetch(any, || logs(&[&desk, &board], mirror));
    let outcome = desk.expect_lookup("GET", &any.request_path(), 307).outcome;
    (outcome, desk, board)
}

both_pacmans! {
/// An `any` package held only by a peer that announces another architecture (aarch64): with
/// a SHA-256 that matches the desk's database it reaches pacman on the desk from that peer;
/// a copy with another SHA-256 does not, and without a database on the desk there is nothing
/// to check the peer's copy against, so the foreign peer is not used either.
fn any_packages_cross_architectures_only_when_checked() {
    let dir = TempDir::new("anyarch");
    let repo_dir = dir.mkdir("mirror/core/os/x86_64");
    let any = Pkg::build_as(&repo_dir, "noarchpkg", PAYLOAD, "any", "");
    repo_add(&repo_dir.join("core.db.tar.gz"), &[&any]);
    let db = fs::read(repo_dir.join("core.db.tar.gz")).expect("read db");
    let mirror = Mirror::start(&dir.join("mirror"));
    let on_mirror = format!("/core/os/x86_64/{}", any.file);
    let bytes = any.bytes.clone();
    let w = AnyWorld {
        dir,
        any,
        db,
        mirror,
    };
    let (any, mirror) = (&w.any, &w.mirror);
    // Groups apart for the two pacmans, whose tests run at once.
    let base = if Pacman::current() == Pacman::Arch7 { 20 } else { 10 };

    let (outcome, _desk, board) =
        any_case(&w, "match", base, &bytes, true);
    assert_eq!(outcome, "peer", "a checked copy from the aarch64 board");
    board.expect_lookup("GET", &any.lan_path(), 200);
    mirror.assert_served(&on_mirror, 0);

    let mut other = bytes.clone();
    other[500] ^= 1;
    let (outcome, desk, _board) = any_case(&w, "differs", base + 1, &other, true);
    assert_eq!(outcome, "mirror", "another SHA-256: not used");
    mirror.assert_served(&on_mirror, 1);
    assert!(
        wait_skipped(&desk, |sk| sk.iter().any(|(_, _, why)| why == "sha256")),
        "{:?}",
        skipped(&desk)
    );

    let (outcome, _desk, _board) =
        any_case(&w, "unchecked", base + 2, &bytes, false);
    assert_eq!(outcome, "mirror", "nothing to check against: the foreign peer is not used");
    mirror.assert_served(&on_mirror, 2);
}
}

both_pacmans! {
/// The database changes under a running pacserve: `verpkg` is rebuilt under the same name
/// (new bytes), pacman -Sy brings the new database, and a peer still holding the old build
/// is skipped from then on; a truncated database file then keeps those new checksums.
fn a_database_pacman_rewrote_is_read_again_and_a_broken_one_is_not() {
    let w = World::new("dbchange");
    let old = w.pkg();
    let b = w.repo.host("b");
    b.hold(old);
    let pb = b.start(&[]);
    let a = w.synced_host("a");
    let pa = a.start(&["--pacserver", &pb.authority()]);
    let reads = |n: usize| {
        wait_until(LOG_WAIT, || pa.lines_with("packages to verify against") >= n)
    };
    assert!(reads(1), "A reads its database:\n{}", pa.log());

    // The old build, from B: it matches A's database.
    let client = client_of(&pa);
    client.sync().assert_ok("-Sy", &logs(&[&pa, &pb], &w.repo.mirror));
    client.fetch(old, || logs(&[&pa, &pb], &w.repo.mirror));
    assert_eq!(pa.expect_lookup("GET", &old.request_path(), 307).outcome, "peer");

    // Rebuilt under the same name; the mirror gets the new file and database.
    let repo_dir = w.repo.dir.join("mirror/core/os/x86_64");
    let scratch = w.repo.dir.mkdir("rebuild");
    let new = Pkg::build_as(&scratch, "verpkg", PAYLOAD, "x86_64", "-rebuilt");
    assert_ne!(new.bytes, old.bytes);
    fs::copy(&new.path, repo_dir.join(&new.file)).expect("replace on the mirror");
    for f in ["core.db", "core.db.tar.gz", "core.files", "core.files.tar.gz"] {
        let _ = fs::remove_file(repo_dir.join(f));
    }
    let new_on_mirror = Pkg {
        path: repo_dir.join(&new.file),
        ..new
    };
    repo_add(&repo_dir.join("core.db.tar.gz"), &[&new_on_mirror]);
    a.learn(&w.repo.db());
    assert!(reads(2), "A reads the new database:\n{}", pa.log());

    let fresh = client_of(&pa);
    fresh.sync().assert_ok("-Sy", &logs(&[&pa, &pb], &w.repo.mirror));
    fresh.fetch(&new_on_mirror, || logs(&[&pa, &pb], &w.repo.mirror));
    w.repo.mirror.assert_served(&new_on_mirror.mirror_path(), 1);
    assert!(
        wait_skipped(&pa, |sk| sk.iter().any(|(h, _, _)| *h == pb.authority())),
        "B's old build is skipped: {:?}",
        skipped(&pa)
    );

    // A truncated database: the warning, and the new checksums stay.
    let db = w.repo.db();
    a.learn(&db[..db.len() / 2]);
    assert!(
        pa.wait_log("keeping what was known of [core]", LOG_WAIT),
        "a broken database is reported:\n{}",
        pa.log()
    );
    let third = client_of(&pa);
    third.sync().assert_ok("-Sy", &logs(&[&pa, &pb], &w.repo.mirror));
    third.fetch(&new_on_mirror, || logs(&[&pa, &pb], &w.repo.mirror));
    w.repo.mirror.assert_served(&new_on_mirror.mirror_path(), 2);
    assert!(
        pa.status_json()
            .field("verification")
            .field("repos")
            .num("core")
            >= 1,
        "core is still verified"
    );
}
}

/// A database in a compression pacserve does not read (zstd, as `repo-add` writes with
/// `.db.tar.zst`): one warning that names the file, and that repository goes unchecked (a
/// cached copy of another size is served by its name, as without a database).
#[test]
fn a_database_in_another_compression_is_named_and_that_repo_is_unchecked() {
    let w = World::new("zstddb");
    let h = w.repo.host("a");
    let tar = w.repo.dir.join("core.db.tar");
    let zst = w.repo.dir.join("core.db.tar.zst");
    let gz = w.repo.dir.join("core.db.tar.gz");
    fs::write(&gz, w.repo.db()).expect("write the gzip db");
    let ran = run_bounded(
        std::process::Command::new("sh").args([
            "-c",
            "gzip -dc \"$1\" >\"$2\" && zstd -q -f -o \"$3\" \"$2\"",
            "sh",
            &gz.display().to_string(),
            &tar.display().to_string(),
            &zst.display().to_string(),
        ]),
        std::time::Duration::from_secs(30),
    );
    assert!(ran.success(), "gzip -d | zstd: {}", ran.text());
    h.learn(&fs::read(&zst).expect("read the zstd db"));
    h.put(&w.pkg().file, &w.truncated());
    let ps = h.start(&[]);
    let db = h.dir.join("db/sync/core.db");
    let warning = format!("{}: zstd-compressed databases are not read", db.display());
    assert!(
        ps.wait_log(&warning, LOG_WAIT),
        "no warning naming the database:\n{}",
        ps.log()
    );
    // Three rounds of the upkeep later (every 2 s), the unchanged file was not read again.
    let started = ps.status_json().num("uptime_secs");
    assert!(
        wait_until(LOG_WAIT, || ps.status_json().num("uptime_secs")
            >= started + 6),
        "uptime does not advance"
    );
    assert_eq!(ps.lines_with(&warning), 1, "one warning:\n{}", ps.log());
    let status = ps.status_json();
    assert!(
        status
            .field("verification")
            .field("repos")
            .get("core")
            .is_none(),
        "[core] is not verified: {status:?}"
    );
    let got = get(ps.port(), &w.pkg().request_path());
    assert_eq!(got.status, 200, "unchecked, names alone: {}", ps.log());
    assert_eq!(got.body.len(), w.truncated().len());
}

/// A peer's question about a file over 8 MiB whose SHA-256 is not known yet is answered at
/// once, with its size and without a checksum; the hash is made in the background and later
/// answers carry it. (No database here: nothing else would hash the file.)
#[test]
fn a_peer_never_waits_for_the_hash_of_a_large_file() {
    let w = World::new("bighash");
    let h = w.repo.host("b");
    let name = "bigfile-1.0-1-x86_64.pkg.tar.zst";
    let bytes: Vec<u8> = (0..9 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    h.put(name, &bytes);
    let ps = h.start(&[]);
    let path = format!("/peer/core/x86_64/{name}");
    let first = head(ps.port(), &path);
    assert_eq!(first.status, 200, "{}", ps.log());
    assert_eq!(first.content_length(), Some(bytes.len() as u64));
    assert_eq!(
        first.header("x-pacserve-sha256"),
        None,
        "the first answer waited for the hash"
    );
    let want = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&bytes);
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let mut later = None;
    wait_until(LOG_WAIT, || {
        later = head(ps.port(), &path)
            .header("x-pacserve-sha256")
            .map(str::to_string);
        later.is_some()
    });
    assert_eq!(later.as_deref(), Some(want.as_str()), "{}", ps.log());
}
