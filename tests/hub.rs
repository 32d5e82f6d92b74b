//! The hub (`--hub DIR`) on a LAN of network namespaces: it collects what its peers already
//! downloaded and serves it when they are gone, with the real pacman as the client.
//!
//! Hosts: a laptop L and a desktop D (each a pacserve with the pacman of the test), the hub
//! H, a mirror M, and where a test needs a peer that misbehaves, a test HTTP server F
//! playing a pacserve ([`FakePeer`]: it drips, lies about sizes or checksums, logs every
//! request head, and counts the files it is sending at once). Peers are given by
//! `--pacserver`. What the hub holds is read from its directory and its `/status.json`;
//! what a peer was asked, from its log.
//!
//! - L's pacman downloads P from the mirror; H pulls P and its `.sig` from L; L dies; D's
//!   pacman gets P from H and the mirror never served P to D (both pacmans).
//! - A file a peer asked the hub for and it lacked is pulled as soon as a peer holds it.
//! - A hub whose pacman.conf says aarch64 collects, with `--hub-arch x86_64`, L's x86_64
//!   packages (not its armv7h one) and D's pacman gets one from it.
//! - Retention: `--hub-keep 2` of 1.0-1, 1.0-2 and 2:0.9-1 keeps the two newest by pacman's
//!   version order; a byte budget evicts older versions first, then the least recently
//!   served.
//! - A pull interrupted by the hub's death resumes with a Range after a restart, the
//!   temporary never served meanwhile, and the stored file byte-identical.
//! - A copy of another size or SHA-256 (the peer's own word, or the hub's sync database) is
//!   never stored, and that peer is not asked for that file again.
//! - On a LAN with a shared secret the hub signs its requests; a hub without the key gets
//!   nothing.
//! - A full filesystem (a small tmpfs as DIR) stops pulls, leaves nothing partial, and says
//!   why on the status page.
//! - `--hub-pulls` 1, 2 and its default (2): a slow peer is never asked for more files at
//!   once than that, and is asked for that many.
//! - `--hub-rate`: the bytes two pulls together wrote by any time after they began stay
//!   under the rate times that time, plus a chunk and a response head per pull.
//! - `--hub-min-free` at its default, 5 %: pulls stop before the free space of a small tmpfs
//!   would drop below it, leave nothing partial, and the status says why.
//! - `--hub-max-size` counts the pulls under way: with room for two files and two held
//!   under way, no third is asked for; later rounds evict the least recently used for the
//!   next, and the directory never holds more than the budget, stored and partial.
//! - A pull that would not fit in `--hub-max-size` (beside the pulls under way, or bigger
//!   than the budget) evicts nothing.
//! - A listed size no file has (2^64 - 1) is never asked for, and the hub goes on.
//!
//! Tests with a pacman client run with both pacmans; those without run once (they start
//! no pacman: the hub and its peers alone).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::lan::{NETNS_PREFIX, Netns, in_netns};
use common::*;

/// pacserve's HTTP port on every host (each host has its own network stack).
const PORT: u16 = 15678;
const MIRROR_PORT: u16 = 8080;
/// The fake peer's port.
const FAKE_PORT: u16 = 15679;
/// Host numbers: the last byte of each address.
const L: u8 = 11;
const D: u8 = 12;
const H: u8 = 13;
const F: u8 = 14;
const M: u8 = 100;
/// Payload of the test packages.
const PAYLOAD: usize = 64 * 1024;
/// How often the hub polls in these tests.
const INTERVAL: &str = "0.3";
/// How long the hub may take to pull what a peer offers (a few rounds, a few files).
const PULL_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The LAN

/// The switch, mirror M with repo `core`, and the packages. The mirror and the directory drop
/// before the namespaces.
struct Lan {
    repo: Repo,
    net: Netns,
}

struct LanHost {
    ns: String,
    ip: String,
    host: Host,
}

impl Lan {
    fn new(tag: &str, subnet: u8, pkgs: &[(&str, usize)]) -> Lan {
        let tag = match Pacman::current() {
            Pacman::Debian6 => format!("{tag}6"),
            Pacman::Arch7 => format!("{tag}7"),
        };
        let net = Netns::new(&tag, subnet);
        let ns = net.add_host("m", M);
        let addr: SocketAddr = format!("{}:{MIRROR_PORT}", net.addr(M)).parse().unwrap();
        let repo = Repo::served_by(&format!("{NETNS_PREFIX}{tag}"), pkgs, |root| {
            Mirror::start_in(&ns, addr, root)
        });
        Lan { repo, net }
    }

    fn host(&self, name: &str, i: u8) -> LanHost {
        LanHost {
            ns: self.net.add_host(name, i),
            ip: self.net.addr(i),
            host: self.repo.host(name),
        }
    }

    fn mirror(&self) -> &Mirror {
        &self.repo.mirror
    }
}

impl LanHost {
    fn authority(&self) -> String {
        format!("{}:{PORT}", self.ip)
    }

    /// pacserve on all addresses of this host, port 15678, with `extra`.
    fn start(&self, extra: &[&str]) -> Pacserve {
        self.launch(extra).start()
    }

    fn launch(&self, extra: &[&str]) -> Launch {
        self.host
            .pacserve()
            .in_netns(&self.ns)
            .address("0.0.0.0")
            .port(PORT)
            .args(extra)
    }

    /// A pacman inside this host whose server is this host's pacserve.
    fn client(&self) -> PacmanClient {
        PacmanClient::new(
            "core",
            &[format!("http://127.0.0.1:{PORT}/request/$repo/$arch")],
        )
        .in_netns(&self.ns)
    }

    /// pacserve on this host sharing `client`'s cache, as pacman and pacserve do on a
    /// laptop, with the LAN's mirror for `core`.
    fn sharing_cache(
        &self,
        lan: &Lan,
        name: &str,
        client: &PacmanClient,
        extra: &[&str],
    ) -> Pacserve {
        let conf = write_server_conf(
            &self.host.dir,
            &[client.cache_dir()],
            &[("core", &[lan.repo.server()])],
        );
        Pacserve::builder(&conf)
            .name(name)
            .in_netns(&self.ns)
            .address("0.0.0.0")
            .port(PORT)
            .args(extra)
            .start()
    }

    /// The hub's directory on this host (made by pacserve).
    fn hub_dir(&self) -> PathBuf {
        self.host.dir.join("hub")
    }

    /// pacserve as a hub into [`Self::hub_dir`], polling every [`INTERVAL`], with `extra`.
    fn hub(&self, extra: &[&str]) -> Pacserve {
        self.hub_launch(extra).start()
    }

    fn hub_launch(&self, extra: &[&str]) -> Launch {
        self.hub_every(INTERVAL, extra)
    }

    /// pacserve as a hub polling every `interval` seconds.
    fn hub_every(&self, interval: &str, extra: &[&str]) -> Launch {
        let dir = self.hub_dir();
        let dir = dir.to_str().unwrap();
        self.launch(&["--hub", dir, "--hub-interval", interval])
            .args(extra)
    }
}

/// pacman on D (its pacserve `ps_d`, the hub `ps_h` its peer) syncs and fetches `p`: D's
/// pacserve asks the hub, which lacks it (404), and sends pacman to the mirror.
fn fetch_past_the_hub(lan: &Lan, client: &PacmanClient, ps_d: &Pacserve, ps_h: &Pacserve, p: &Pkg) {
    let dump = || logs(&[ps_d, ps_h], lan.mirror());
    client.sync().assert_ok("-Sy on D", &dump());
    client.fetch(p, dump);
    assert_eq!(
        ps_d.expect_lookup("GET", &p.request_path(), 307).outcome,
        "mirror"
    );
    ps_h.wait_request(|r| r.path == p.peer_path() && r.status == 404)
        .unwrap_or_else(|| panic!("D did not ask the hub, or the hub had it\n{}", dump()));
}

/// The complete files in a hub's directory, sorted (its `.partial` aside).
fn held(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The pulls under way in a hub's directory.
fn partials(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = fs::read_dir(dir.join(".partial"))
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| {
                    let len = e.metadata().map_or(0, |m| m.len());
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The `hub` object of `/status.json`.
fn hub_status(h: &Pacserve) -> Json {
    h.status_json().field("hub").clone()
}

/// The `hub` object of `/status.json` once `cond` holds of it (bounded): what the directory
/// shows is recorded just after.
fn wait_hub_status(h: &Pacserve, cond: impl Fn(&Json) -> bool) -> Json {
    let mut last = None;
    let ok = wait_until(LOG_WAIT, || {
        let st = hub_status(h);
        let ok = cond(&st);
        last = Some(st);
        ok
    });
    let last = last.unwrap();
    assert!(ok, "the hub's status: {last:?}\n{}", h.log());
    last
}

/// `(file, why)` of the hub's recent evictions, newest first.
fn evictions(st: &Json) -> Vec<(String, String)> {
    st.field("evicted")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e.text("file").to_string(), e.text("why").to_string()))
        .collect()
}

/// Wait (bounded) until the hub's directory holds exactly `want`.
fn wait_held<S: AsRef<str> + std::fmt::Debug>(h: &Pacserve, dir: &Path, want: &[S]) {
    let want: Vec<&str> = want.iter().map(|s| s.as_ref()).collect();
    let ok = wait_until(PULL_LIMIT, || held(dir) == want);
    assert!(
        ok,
        "the hub holds {:?}, not {want:?}\n{}",
        held(dir),
        h.log()
    );
}

/// A file named like a package, `NAME-VERSION-ARCH.pkg.tar.zst`, of `len` bytes seeded by
/// its name: the hub judges a copy by its size and SHA-256, not by what is inside.
fn named(name: &str, version: &str, arch: &str, len: usize) -> (String, Vec<u8>) {
    let file = format!("{name}-{version}-{arch}.pkg.tar.zst");
    let bytes = pseudo_random(&file, len);
    (file, bytes)
}

// ---------------------------------------------------------------------------------------------
// A peer that misbehaves

/// One file the fake peer offers: what its listing says, what it sends, and how.
#[derive(Clone)]
struct Offered {
    file: String,
    /// The size in its `/info`.
    listed: u64,
    /// The bytes it sends.
    body: Vec<u8>,
    /// `X-Pacserve-Sha256` it sends.
    sha256: String,
    /// Bytes per write and the pause after each: a slow link.
    drip: Option<(usize, Duration)>,
    /// A whole answer (not a resumed one) stops after this many bytes until the flag is
    /// set: a pull caught in the middle.
    hold: Option<(usize, Arc<AtomicBool>)>,
}

impl Offered {
    fn honest(file: &str, body: Vec<u8>) -> Offered {
        Offered {
            file: file.to_string(),
            listed: body.len() as u64,
            sha256: sha256_hex(&body),
            body,
            drip: None,
            hold: None,
        }
    }

    /// Sent 16 KiB at a time with a pause after each: a slow link.
    fn dripped(mut self) -> Offered {
        self.drip = Some((16 * 1024, Duration::from_millis(5)));
        self
    }

    /// Dripped, and held after `after` bytes of a whole answer until the flag is set.
    fn held_after(self, after: usize, release: &Arc<AtomicBool>) -> Offered {
        let mut o = self.dripped();
        o.hold = Some((after, release.clone()));
        o
    }

    /// Sent as fast as the link goes, but not a byte of its body before the flag is set.
    fn held_until(mut self, release: &Arc<AtomicBool>) -> Offered {
        self.hold = Some((0, release.clone()));
        self
    }
}

/// A request head the fake peer read: its request line and its Range, if any.
#[derive(Clone, Debug)]
struct Asked {
    line: String,
    range: Option<String>,
    /// When its head had been read: before any byte of the answer was sent.
    at: Instant,
}

/// Answers to `GET /info/FILE` under way: read, and their last piece not yet sent. A pull
/// counted here is under way at the hub too (it sent the request and cannot have all of
/// the file), so this never counts more pulls at once than the hub has.
#[derive(Default)]
struct Sending {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// One answer counted in [`Sending`] until dropped.
struct Counted<'a>(&'a Sending);

impl Sending {
    fn start(&self) -> Counted<'_> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        Counted(self)
    }

    /// The most answers of files at once so far.
    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A test HTTP server inside a namespace playing a pacserve: `/info` lists what it offers,
/// `/info/NAME` sends it (honouring `Range: bytes=N-`). Stopped on drop.
struct FakePeer {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Asked>>>,
    sending: Arc<Sending>,
    stop: Arc<AtomicBool>,
    wake: TcpListener,
    thread: Option<JoinHandle<()>>,
}

impl FakePeer {
    fn start(ns: &str, ip: &str, offers: Vec<Offered>) -> FakePeer {
        let addr: SocketAddr = format!("{ip}:{FAKE_PORT}").parse().unwrap();
        let listener = in_netns(ns, || TcpListener::bind(addr))
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("bind the fake peer in {ns}: {e}"));
        let wake = listener.try_clone().unwrap();
        let (offers, log, stop) = (
            Arc::new(Mutex::new(offers)),
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicBool::new(false)),
        );
        let sending = Arc::new(Sending::default());
        let thread = {
            let (offers, log, stop) = (offers.clone(), log.clone(), stop.clone());
            let sending = sending.clone();
            thread::spawn(move || {
                let mut conns: Vec<JoinHandle<()>> = Vec::new();
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    conns.retain(|c| !c.is_finished());
                    if conns.len() >= 32 {
                        continue;
                    }
                    let (offers, log, stop) = (offers.clone(), log.clone(), stop.clone());
                    let sending = sending.clone();
                    conns.push(thread::spawn(move || {
                        let _ = fake_conn(conn, &offers, &log, &sending, &stop);
                    }));
                }
                for c in conns {
                    let _ = c.join();
                }
            })
        };
        FakePeer {
            addr,
            log,
            sending,
            stop,
            wake,
            thread: Some(thread),
        }
    }

    fn authority(&self) -> String {
        self.addr.to_string()
    }

    fn asked(&self) -> Vec<Asked> {
        self.log.lock().unwrap().clone()
    }

    /// Requests for `/info/FILE`.
    fn pulls_of(&self, file: &str) -> Vec<Asked> {
        let line = format!("GET /info/{file} HTTP/1.1");
        self.asked()
            .into_iter()
            .filter(|a| a.line == line)
            .collect()
    }

    /// Polls of `/info`.
    fn polls(&self) -> usize {
        self.asked()
            .iter()
            .filter(|a| a.line == "GET /info HTTP/1.1")
            .count()
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocked accept (from any namespace).
        let _ = rustix::net::shutdown(&self.wake, rustix::net::Shutdown::Read);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sha256_hex(b: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

fn fake_conn(
    mut s: TcpStream,
    offers: &Mutex<Vec<Offered>>,
    log: &Mutex<Vec<Asked>>,
    sending: &Sending,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while find_head_end(&head).is_none() && head.len() < 16 * 1024 {
        let n = s.read(&mut b)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&b[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let line = text.lines().next().unwrap_or_default().to_string();
    let range = text
        .lines()
        .find_map(|l| l.strip_prefix("Range: "))
        .map(str::to_string);
    log.lock().unwrap().push(Asked {
        line: line.clone(),
        range: range.clone(),
        at: Instant::now(),
    });
    let path = line.split(' ').nth(1).unwrap_or_default();
    let offers = offers.lock().unwrap().clone();
    if path == "/info" {
        let body: String = offers
            .iter()
            .map(|o| format!("{} {}\n", o.file, o.listed))
            .collect();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes())?;
        return s.write_all(body.as_bytes());
    }
    let Some(o) = path
        .strip_prefix("/info/")
        .and_then(|f| offers.iter().find(|o| o.file == f))
    else {
        return s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    };
    let from: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
        .min(o.body.len());
    let len = o.body.len();
    let head = match range {
        Some(_) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{len}\r\n",
            len - 1
        ),
        None => "HTTP/1.1 200 OK\r\n".to_string(),
    };
    let head = format!(
        "{head}Content-Length: {}\r\nX-Pacserve-Sha256: {}\r\nX-Pacserve-Sig: no\r\n\
         Connection: close\r\n\r\n",
        len - from,
        o.sha256
    );
    let mut counted = Some(sending.start());
    s.write_all(head.as_bytes())?;
    let (chunk, pause) = o.drip.unwrap_or((o.body.len().max(1), Duration::ZERO));
    let hold = o.hold.as_ref().filter(|_| from == 0);
    let mut sent = from;
    for piece in o.body[from..].chunks(chunk) {
        if let Some((after, release)) = hold {
            if sent >= *after {
                // Bounded: a test that never releases fails on its own deadline first.
                wait_until(Duration::from_secs(60), || {
                    release.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst)
                });
            }
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if sent + piece.len() == len {
            // Before the last piece: once it is sent, the hub may be done with this pull.
            drop(counted.take());
        }
        s.write_all(piece)?;
        sent += piece.len();
        thread::sleep(pause);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A small filesystem

/// A tmpfs of `bytes` mounted at a directory of its own; unmounted (lazily, so a process
/// still inside cannot keep it) on drop.
struct SmallFs {
    at: PathBuf,
}

impl SmallFs {
    fn mount(at: PathBuf, bytes: u64) -> SmallFs {
        fs::create_dir_all(&at).unwrap();
        let fs = SmallFs { at };
        let ran = run_bounded(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                .arg(&fs.at),
            Duration::from_secs(10),
        );
        assert!(ran.success(), "mount a tmpfs: {}", ran.text());
        fs
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = run_bounded(
            Command::new("umount").arg("-l").arg(&self.at),
            Duration::from_secs(10),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

both_pacmans! {
/// L's pacman downloads P from the mirror; the hub pulls P and its `.sig` from L; L is
/// killed; D's pacman gets P from the hub, and the mirror never served P to D.
fn a_hub_keeps_what_a_laptop_downloaded_after_it_is_gone() {
    let lan = Lan::new("keep", 41, &[("hubp", PAYLOAD)]);
    let p = lan.repo.pkg("hubp");
    let (l, d, h) = (lan.host("l", L), lan.host("d", D), lan.host("h", H));
    // L's pacman and pacserve share the cache, as on a laptop.
    let l_client = l.client();
    let ps_l = l.sharing_cache(&lan, "laptop", &l_client, &[]);
    let ps_h = h.hub(&["--pacserver", &l.authority()]);
    let dump = || logs(&[&ps_l, &ps_h], lan.mirror());
    l_client.sync().assert_ok("-Sy on L", &dump());
    l_client.fetch(p, dump);
    lan.mirror().assert_served(&p.mirror_path(), 1);
    // A pacman that checks signatures leaves the .sig beside the package.
    let sig = format!("{}.sig", p.file);
    let sig_bytes = pseudo_random("a signature", 566);
    fs::write(l_client.cache_dir().join(&sig), &sig_bytes).unwrap();

    wait_held(&ps_h, &h.hub_dir(), &[p.file.as_str(), sig.as_str()]);
    assert_same_bytes(&fs::read(h.hub_dir().join(&p.file)).unwrap(), &p.bytes, "P on H");
    assert_same_bytes(&fs::read(h.hub_dir().join(&sig)).unwrap(), &sig_bytes, ".sig on H");
    let st = wait_hub_status(&ps_h, |st| st.num("files") == 2);
    assert_eq!(st.num("bytes"), p.size() + 566);
    // One pull brought both: the .sig came along with its package.
    let pulls: Vec<(String, u64)> = st
        .field("pulled")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r.text("file").to_string(), r.num("bytes")))
        .collect();
    assert_eq!(pulls, [(p.file.clone(), p.size() + 566)], "{st:?}");
    assert_eq!(st.num("pulled_files"), 2, "{st:?}");
    let m = ps_h.metrics();
    assert_eq!(m.value("pacserve_hub_files", &[]), Some(2.0), "{}", ps_h.log());
    assert!(ps_h.get("/").text().contains("<h2>Hub</h2>"));

    ps_l.kill();
    let ps_d = d.start(&["--pacserver", &l.authority(), "--pacserver", &h.authority()]);
    let d_client = d.client();
    let dump = || logs(&[&ps_d, &ps_h], lan.mirror());
    d_client.sync().assert_ok("-Sy on D", &dump());
    d_client.fetch(p, dump);
    let lookup = ps_d.expect_lookup("GET", &p.request_path(), 307);
    assert_eq!(lookup.outcome, "peer", "{}", dump());
    let served = ps_h
        .wait_request(|r| r.from.ip().to_string() == d.ip && r.path == p.lan_path())
        .unwrap_or_else(|| panic!("H did not serve P to D\n{}", dump()));
    assert_eq!((served.status, served.bytes), (200, p.size()));
    let to_d = lan
        .mirror()
        .count(|r| r.path == p.mirror_path() && r.from.to_string() == d.ip);
    assert_eq!(to_d, 0, "the mirror served P to D\n{}", dump());
    lan.mirror().assert_served(&p.mirror_path(), 1);
}
}

both_pacmans! {
/// A file a peer asked the hub for and the hub lacked is pulled as soon as a peer holds it,
/// not an interval later: D's pacserve asks the hub for P (a miss), D's pacman gets P from
/// the mirror, and the hub, polling only hourly, pulls P from D within seconds.
fn a_file_asked_for_and_missed_is_pulled_as_soon_as_a_peer_holds_it() {
    let lan = Lan::new("miss", 48, &[("hubm", PAYLOAD)]);
    let p = lan.repo.pkg("hubm");
    let (d, h) = (lan.host("d", D), lan.host("h", H));
    let client = d.client();
    let ps_d = d.sharing_cache(&lan, "desktop", &client, &["--pacserver", &h.authority()]);
    let ps_h = h
        .hub_every("3600", &["--pacserver", &d.authority()])
        .start();
    // The hub's first round, at start, found D empty.
    assert!(ps_d.wait_request(|r| r.path == "/info").is_some(), "{}", ps_d.log());
    fetch_past_the_hub(&lan, &client, &ps_d, &ps_h, p);
    wait_held(&ps_h, &h.hub_dir(), &[&p.file]);
    assert_same_bytes(&fs::read(h.hub_dir().join(&p.file)).unwrap(), &p.bytes, "P on H");
}
}

both_pacmans! {
/// A hub whose pacman.conf says aarch64 and that collects x86_64 (`--hub-arch`) holds L's
/// x86_64 package but not its armv7h one, and D's pacman (x86_64) gets it from the hub.
fn a_hub_of_another_architecture_collects_and_serves_the_ones_it_is_told() {
    let lan = Lan::new("arch", 42, &[("hubx", PAYLOAD)]);
    let x = lan.repo.pkg("hubx");
    let (l, d, h) = (lan.host("l", L), lan.host("d", D), lan.host("h", H));
    write_server_conf_for(
        &h.host.dir,
        "aarch64",
        &[&h.host.cache],
        &[("core", &[lan.repo.server()])],
    );
    l.host.hold(x);
    let (arm, arm_bytes) = named("armonly", "1.0-1", "armv7h", 5000);
    l.host.put(&arm, &arm_bytes);
    let ps_l = l.start(&[]);
    let ps_h = h.hub(&["--hub-arch", "x86_64", "--pacserver", &l.authority()]);
    wait_held(&ps_h, &h.hub_dir(), &[x.file.as_str()]);
    // Three more polls of L: the armv7h package is still not pulled.
    let polls = |ps: &Pacserve| ps.requests().iter().filter(|r| r.path == "/info").count();
    let before = polls(&ps_l);
    assert!(
        wait_until(PULL_LIMIT, || polls(&ps_l) >= before + 3),
        "{}",
        ps_l.log()
    );
    assert_eq!(held(&h.hub_dir()), [x.file.as_str()]);
    assert_eq!(
        hub_status(&ps_h).field("archs").as_array().map(|a| a.len()),
        Some(1)
    );

    ps_l.kill();
    let ps_d = d.start(&["--pacserver", &h.authority()]);
    let client = d.client();
    let dump = || logs(&[&ps_d, &ps_h], lan.mirror());
    client.sync().assert_ok("-Sy on D", &dump());
    client.fetch(x, dump);
    assert_eq!(
        ps_d.expect_lookup("GET", &x.request_path(), 307).outcome,
        "peer",
        "{}",
        dump()
    );
    ps_h.wait_request(|r| r.path == x.lan_path() && r.status == 200)
        .unwrap_or_else(|| panic!("H did not serve X\n{}", dump()));
    lan.mirror().assert_served(&x.mirror_path(), 0);
}
}

/// `--hub-keep 2`: of 1.0-1, 1.0-2 and 2:0.9-1 the hub ends with the two newest by pacman's
/// version order (the epoch wins), the oldest evicted when the newest arrives.
#[test]
fn retention_keeps_the_newest_versions() {
    Pacman::Debian6.run_test(|| {
        let lan = Lan::new("keepn", 43, &[]);
        let (l, h) = (lan.host("l", L), lan.host("h", H));
        let v: Vec<(String, Vec<u8>)> = ["1.0-1", "1.0-2", "2:0.9-1"]
            .iter()
            .map(|ver| named("multi", ver, "x86_64", 3000))
            .collect();
        l.host.put(&v[0].0, &v[0].1);
        l.host.put(&v[1].0, &v[1].1);
        let ps_l = l.start(&[]);
        let ps_h = h.hub(&["--hub-keep", "2", "--pacserver", &l.authority()]);
        wait_held(&ps_h, &h.hub_dir(), &[v[0].0.as_str(), v[1].0.as_str()]);
        l.host.put(&v[2].0, &v[2].1);
        // Sorted by name: 1.0-2 before 2:0.9-1.
        wait_held(&ps_h, &h.hub_dir(), &[v[1].0.as_str(), v[2].0.as_str()]);
        let st = wait_hub_status(&ps_h, |st| !evictions(st).is_empty());
        assert_eq!(evictions(&st), [(v[0].0.clone(), "versions".to_string())]);
        drop(ps_l);
    });
}

/// `--hub-max-size`: over budget the older versions go first (even one served just now),
/// then the least recently served.
#[test]
fn over_budget_older_versions_go_first_then_the_least_recently_served() {
    Pacman::Debian6.run_test(|| {
        let lan = Lan::new("budget", 44, &[]);
        let (l, h) = (lan.host("l", L), lan.host("h", H));
        let f = |name: &str, ver: &str| named(name, ver, "x86_64", 10_000);
        let (a1, a2, b, c, d) = (
            f("alpha", "1-1"),
            f("alpha", "2-1"),
            f("beta", "1-1"),
            f("gamma", "1-1"),
            f("delta", "1-1"),
        );
        for (file, bytes) in [&a1, &a2, &b] {
            l.host.put(file, bytes);
        }
        let ps_l = l.start(&[]);
        let ps_h = h.hub(&[
            "--hub-keep",
            "5",
            "--hub-max-size",
            "30000",
            "--pacserver",
            &l.authority(),
        ]);
        wait_held(&ps_h, &h.hub_dir(), &[&a1.0, &a2.0, &b.0]);
        // Served now, after beta was pulled: alpha 1 (an older version) and alpha 2.
        for file in [&a1.0, &a2.0] {
            let r = ps_h.get(&format!("/lan/core/x86_64/{file}"));
            assert_eq!(r.status, 200, "{}", ps_h.log());
        }
        l.host.put(&c.0, &c.1);
        wait_held(&ps_h, &h.hub_dir(), &[&a2.0, &b.0, &c.0]);
        l.host.put(&d.0, &d.1);
        wait_held(&ps_h, &h.hub_dir(), &[&a2.0, &d.0, &c.0]);
        let st = wait_hub_status(&ps_h, |st| evictions(st).len() >= 2);
        // Newest first.
        assert_eq!(
            evictions(&st),
            [
                (b.0.clone(), "budget".to_string()),
                (a1.0.clone(), "budget".to_string())
            ]
        );
        assert!(st.num("bytes") <= 30_000);
        drop(ps_l);
    });
}

both_pacmans! {
/// A pull caught in the middle: the temporary is never served (D's pacman goes to the
/// mirror meanwhile), the hub is killed and restarted, the pull resumes with a Range, and
/// the stored file is byte-identical.
fn an_interrupted_pull_resumes_with_a_range_and_is_never_served_half() {
    let lan = Lan::new("resume", 45, &[("hubbig", 2 * 1024 * 1024)]);
    let big = lan.repo.pkg("hubbig");
    let (d, h) = (lan.host("d", D), lan.host("h", H));
    let f_ns = lan.net.add_host("f", F);
    let release = Arc::new(AtomicBool::new(false));
    let held_at = 512 * 1024;
    let fake = FakePeer::start(
        &f_ns,
        &lan.net.addr(F),
        vec![Offered::honest(&big.file, big.bytes.clone()).held_after(held_at, &release)],
    );
    let ps_h = h.hub(&["--pacserver", &fake.authority()]);
    let part = || partials(&h.hub_dir());
    assert!(
        wait_until(PULL_LIMIT, || part()
            == [(big.file.clone(), held_at as u64)]),
        "{:?}\n{}",
        part(),
        ps_h.log()
    );
    // Meanwhile: not listed, not offered to a peer, and D's pacman goes to the mirror.
    assert!(!ps_h.get("/info").text().contains(&big.file));
    let ps_d = d.start(&["--pacserver", &h.authority()]);
    let client = d.client();
    fetch_past_the_hub(&lan, &client, &ps_d, &ps_h, big);
    let pulling = hub_status(&ps_h).field("pulling").clone();
    assert_eq!(pulling.as_array().map(|p| p.len()), Some(1), "{pulling:?}");

    // Killed in the middle; restarted, it asks for the rest only.
    ps_h.kill();
    drop(ps_h);
    assert_eq!(part(), [(big.file.clone(), held_at as u64)]);
    assert!(held(&h.hub_dir()).is_empty());
    release.store(true, Ordering::SeqCst);
    let ps_h = h.hub(&["--pacserver", &fake.authority()]);
    wait_held(&ps_h, &h.hub_dir(), &[&big.file]);
    assert_same_bytes(
        &fs::read(h.hub_dir().join(&big.file)).unwrap(),
        &big.bytes,
        "the resumed pull",
    );
    let ranges: Vec<Option<String>> = fake
        .pulls_of(&big.file)
        .into_iter()
        .map(|a| a.range)
        .collect();
    assert_eq!(
        ranges,
        [None, Some(format!("bytes={held_at}-"))],
        "{}",
        ps_h.log()
    );
    assert!(part().is_empty());
}
}

/// Copies that are not the file: a peer that sends fewer bytes than it listed, one whose
/// bytes are not the SHA-256 it names, and a real pacserve whose copy differs from the
/// hub's sync database. None is stored, nothing partial stays, and no such peer is asked
/// for that file again; an honest file from the same peer is stored.
#[test]
fn a_copy_that_does_not_match_is_never_stored() {
    Pacman::Debian6.run_test(|| {
        let lan = Lan::new("wrong", 46, &[("hubver", 20_000)]);
        let ver = lan.repo.pkg("hubver");
        let (l, h) = (lan.host("l", L), lan.host("h", H));
        let f_ns = lan.net.add_host("f", F);
        let (honest, honest_bytes) = named("honest", "1-1", "x86_64", 4000);
        let (short, short_bytes) = named("short", "1-1", "x86_64", 4000);
        let (forged, forged_bytes) = named("forged", "1-1", "x86_64", 4000);
        let mut lie_size = Offered::honest(&short, short_bytes);
        lie_size.listed = 5000;
        let mut lie_sha = Offered::honest(&forged, forged_bytes);
        lie_sha.sha256 = sha256_hex(b"another file");
        let fake = FakePeer::start(
            &f_ns,
            &lan.net.addr(F),
            vec![Offered::honest(&honest, honest_bytes), lie_size, lie_sha],
        );
        let mut corrupted = ver.bytes.clone();
        corrupted[10_000] ^= 0x5a;
        l.host.put(&ver.file, &corrupted);
        let ps_l = l.start(&[]);
        h.host.learn(&lan.repo.db());
        let ps_h = h.hub(&[
            "--pacserver",
            &fake.authority(),
            "--pacserver",
            &l.authority(),
        ]);
        wait_held(&ps_h, &h.hub_dir(), &[&honest]);
        let before = fake.polls();
        assert!(wait_until(PULL_LIMIT, || fake.polls() >= before + 4));
        assert_eq!(held(&h.hub_dir()), [honest.as_str()], "{}", ps_h.log());
        assert!(partials(&h.hub_dir()).is_empty());
        for file in [&short, &forged] {
            assert_eq!(
                fake.pulls_of(file).len(),
                1,
                "{file}: asked again\n{}",
                ps_h.log()
            );
        }
        let from_l = ps_l
            .requests()
            .iter()
            .filter(|r| r.path == format!("/info/{}", ver.file))
            .count();
        assert_eq!(from_l, 1, "{}", ps_l.log());
        let st = wait_hub_status(&ps_h, |st| st.num("wrong_copies") >= 3);
        assert_eq!(st.num("wrong_copies"), 3, "{st:?}");
        let failing: Vec<String> = st
            .field("failures")
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.text("peer").to_string())
            .collect();
        assert!(failing.contains(&fake.authority()) && failing.contains(&l.authority()));
    });
}

/// A hub on a small filesystem: a pull that meets a full disk is dropped (nothing partial
/// left), what was stored stays, pulls stop, and the status says why.
#[test]
fn a_full_filesystem_stops_pulls_and_leaves_nothing_partial() {
    Pacman::Debian6.run_test(|| {
        let lan = Lan::new("full", 47, &[]);
        let h = lan.host("h", H);
        let f_ns = lan.net.add_host("f", F);
        let small_fs = SmallFs::mount(h.hub_dir(), 2 * 1024 * 1024);
        let (small, small_bytes) = named("aaasmall", "1-1", "x86_64", 100_000);
        let (big, big_bytes) = named("bigfull", "1-1", "x86_64", 1536 * 1024);
        let release = Arc::new(AtomicBool::new(false));
        let fake = FakePeer::start(
            &f_ns,
            &lan.net.addr(F),
            vec![
                Offered::honest(&small, small_bytes.clone()),
                Offered::honest(&big, big_bytes).held_after(256 * 1024, &release),
            ],
        );
        let ps_h = h.hub(&["--hub-min-free", "0", "--pacserver", &fake.authority()]);
        assert!(
            wait_until(PULL_LIMIT, || partials(&h.hub_dir())
                == [(big.clone(), 256 * 1024)]
                && held(&h.hub_dir()) == [small.as_str()]),
            "{:?} {:?}\n{}",
            held(&h.hub_dir()),
            partials(&h.hub_dir()),
            ps_h.log()
        );
        // Someone else fills the filesystem.
        let mut filler = fs::File::create(small_fs.at.join("filler")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut full = false;
        for _ in 0..64 {
            if filler
                .write_all(&chunk)
                .and_then(|_| filler.sync_all())
                .is_err()
            {
                full = true;
                break;
            }
        }
        assert!(full, "the tmpfs did not fill up");
        release.store(true, Ordering::SeqCst);
        let stopped = wait_for(PULL_LIMIT, || {
            let st = hub_status(&ps_h);
            st.get("stopped")?.as_str().map(str::to_string)
        });
        let stopped = stopped.unwrap_or_else(|| panic!("no reason given\n{}", ps_h.log()));
        assert!(stopped.contains("space"), "{stopped}");
        assert!(ps_h.wait_log("no space left", LOG_WAIT), "{}", ps_h.log());
        assert!(wait_until(LOG_WAIT, || partials(&h.hub_dir()).is_empty()));
        assert_eq!(
            held(&h.hub_dir()),
            ["aaasmall-1-1-x86_64.pkg.tar.zst", "filler"]
        );
        assert_same_bytes(
            &fs::read(h.hub_dir().join(&small)).unwrap(),
            &small_bytes,
            "kept",
        );
        let page = ps_h.get("/").text();
        assert!(page.contains("Pulls stopped"), "{page}");
        // Later rounds do not start it again while the disk is full.
        let before = fake.pulls_of(&big).len();
        let polls = fake.polls();
        assert!(wait_until(PULL_LIMIT, || fake.polls() >= polls + 3));
        assert_eq!(fake.pulls_of(&big).len(), before, "{}", ps_h.log());
        assert!(
            hub_status(&ps_h)
                .get("stopped")
                .and_then(|s| s.as_str())
                .is_some()
        );
        drop(ps_h);
        drop(small_fs);
    });
}

/// Pulls under way in a hub's status.
fn in_flight(st: &Json) -> usize {
    st.field("pulling").as_array().map_or(0, |p| p.len())
}

/// Four files of 1 MiB dripped by a slow peer and held after 64 KiB until the hub has as
/// many pulls under way as `pulls` says (given as `--hub-pulls` when Some): the peer sees
/// exactly `want` files asked for at once (never more, and that many), and the status
/// never shows more pulls under way; then all four are stored, byte-identical.
fn pulls_at_once(tag: &str, subnet: u8, pulls: Option<&str>, want: usize) {
    Pacman::Debian6.run_test(|| {
        let lan = Lan::new(tag, subnet, &[]);
        let h = lan.host("h", H);
        let f_ns = lan.net.add_host("f", F);
        let release = Arc::new(AtomicBool::new(false));
        let files: Vec<(String, Vec<u8>)> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| named(&format!("pulls{n}"), "1-1", "x86_64", 1024 * 1024))
            .collect();
        let offers = files
            .iter()
            .map(|(f, b)| Offered::honest(f, b.clone()).held_after(64 * 1024, &release))
            .collect();
        let fake = FakePeer::start(&f_ns, &lan.net.addr(F), offers);
        let peer = fake.authority();
        let mut args = vec!["--pacserver", peer.as_str()];
        if let Some(n) = pulls {
            args.extend(["--hub-pulls", n]);
        }
        let ps_h = h.hub(&args);
        // As many as it may, all held: none can end before the release.
        assert!(
            wait_until(PULL_LIMIT, || fake.sending.most() >= want),
            "the peer saw {} at once\n{}",
            fake.sending.most(),
            ps_h.log()
        );
        let mut most_shown = in_flight(&wait_hub_status(&ps_h, |st| in_flight(st) >= want));
        release.store(true, Ordering::SeqCst);
        let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
        let stored = wait_until(PULL_LIMIT, || {
            most_shown = most_shown.max(in_flight(&hub_status(&ps_h)));
            held(&h.hub_dir()) == names
        });
        assert!(stored, "{:?}\n{}", held(&h.hub_dir()), ps_h.log());
        assert_eq!(fake.sending.most(), want, "files asked for at once");
        assert_eq!(most_shown, want, "pulls under way at once on the status");
        for (file, bytes) in &files {
            assert_same_bytes(&fs::read(h.hub_dir().join(file)).unwrap(), bytes, file);
            assert_eq!(fake.pulls_of(file).len(), 1, "{file}\n{}", ps_h.log());
        }
    });
}

/// `--hub-pulls 1`: one pull at a time.
#[test]
fn one_pull_at_a_time_with_hub_pulls_1() {
    pulls_at_once("pulls1", 50, Some("1"), 1);
}

/// `--hub-pulls 2`: two pulls at once, never three.
#[test]
fn two_pulls_at_once_with_hub_pulls_2() {
    pulls_at_once("pulls2", 51, Some("2"), 2);
}

/// Without `--hub-pulls`: two at once, never three.
#[test]
fn two_pulls_at_once_by_default() {
    pulls_at_once("pullsd", 52, None, 2);
}

/// `--hub-rate`: two files of 3 MiB that a peer sends as fast as the link goes, pulled at
/// once (the peer holds both until both were asked for), are on the hub's disk no faster
/// than the rate allows both together: at any time `t` after the first request, the bytes
/// written (temporaries and stored files) are at most `rate * t`, plus what each pull may
/// have read and not yet paid for (one chunk) and what came with each response's head
/// (never counted by the limiter, at most a head's size). A slow machine only makes this
/// slower. Both are then stored, byte-identical.
#[test]
fn all_pulls_together_keep_to_the_rate() {
    Pacman::Debian6.run_test(|| {
        use pacserve::limits::{HUB_PULL_CHUNK, MAX_HEAD_BYTES};
        const RATE: u64 = 1024 * 1024;
        let lan = Lan::new("rate", 53, &[]);
        let h = lan.host("h", H);
        let f_ns = lan.net.add_host("f", F);
        let release = Arc::new(AtomicBool::new(false));
        let files: Vec<(String, Vec<u8>)> = ["a", "b"]
            .iter()
            .map(|n| named(&format!("rate{n}"), "1-1", "x86_64", 3 * 1024 * 1024))
            .collect();
        let offers = files
            .iter()
            .map(|(f, b)| Offered::honest(f, b.clone()).held_until(&release))
            .collect();
        let fake = FakePeer::start(&f_ns, &lan.net.addr(F), offers);
        let ps_h = h.hub(&["--hub-rate", "1M", "--pacserver", &fake.authority()]);
        let asked = || files.iter().all(|(f, _)| !fake.pulls_of(f).is_empty());
        assert!(wait_until(PULL_LIMIT, asked), "{}", ps_h.log());
        let start = files
            .iter()
            .flat_map(|(f, _)| fake.pulls_of(f))
            .map(|a| a.at)
            .min()
            .unwrap();
        release.store(true, Ordering::SeqCst);
        let dir = h.hub_dir();
        let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
        // Stored files first, then temporaries: a file renamed in between is missed, never
        // counted twice.
        let on_disk = || {
            let stored: u64 = files
                .iter()
                .filter_map(|(f, _)| fs::metadata(dir.join(f)).ok())
                .map(|m| m.len())
                .sum();
            let partial: u64 = partials(&dir).iter().map(|(_, n)| n).sum();
            (stored + partial, Instant::now())
        };
        // Two pulls at once by default: each may hold a chunk read and not yet paid for.
        let slack = (2 * HUB_PULL_CHUNK + files.len() * MAX_HEAD_BYTES) as u64;
        let mut samples: Vec<(u64, Duration)> = Vec::new();
        let done = wait_until(PULL_LIMIT, || {
            let (bytes, at) = on_disk();
            samples.push((bytes, at - start));
            bytes == total && held(&dir).len() == files.len()
        });
        assert!(done, "{:?}\n{}", samples.last(), ps_h.log());
        let over: Vec<&(u64, Duration)> = samples
            .iter()
            .filter(|(bytes, t)| {
                let allowed = RATE as u128 * t.as_nanos() / 1_000_000_000 + slack as u128;
                *bytes as u128 > allowed
            })
            .collect();
        assert!(
            over.is_empty(),
            "bytes on disk over {RATE} B/s * t + {slack} (bytes, t): {over:?}\n{}",
            ps_h.log()
        );
        for (file, bytes) in &files {
            assert_same_bytes(&fs::read(dir.join(file)).unwrap(), bytes, file);
        }
        assert!(partials(&dir).is_empty());
    });
}

/// A filesystem's size and free bytes (for an unprivileged user), and its block size.
fn fs_space(dir: &Path) -> (u64, u64, u64) {
    let s = rustix::fs::statvfs(dir).unwrap();
    (s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize, s.f_frsize)
}

/// `--hub-min-free` at its default, 5 %, on a tmpfs of 4 MiB offered five files of 1 MiB by
/// a slow peer: the hub starts a pull only while the free space covers it, the pulls under
/// way and 5 % of the filesystem; so it stores three, never asks for the fourth and fifth,
/// leaves nothing partial, the free space never drops below 5 % (but for the rounding of
/// the two files under way to whole blocks), and the status says why it stopped.
#[test]
fn pulls_stop_at_the_default_min_free_and_say_so() {
    Pacman::Debian6.run_test(|| {
        let lan = Lan::new("minfree", 54, &[]);
        let h = lan.host("h", H);
        let f_ns = lan.net.add_host("f", F);
        let small_fs = SmallFs::mount(h.hub_dir(), 4 * 1024 * 1024);
        let files: Vec<(String, Vec<u8>)> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| named(&format!("free{n}"), "1-1", "x86_64", 1024 * 1024))
            .collect();
        let offers = files
            .iter()
            .map(|(f, b)| Offered::honest(f, b.clone()).dripped())
            .collect();
        let fake = FakePeer::start(&f_ns, &lan.net.addr(F), offers);
        let dir = h.hub_dir();
        let (total, free_at_start, block) = fs_space(&dir);
        assert_eq!(total, 4 * 1024 * 1024);
        assert_eq!(free_at_start, total, "the tmpfs is not empty");
        // src/hub/mod.rs: a pull starts only if free >= need + reserve + what the pulls
        // under way still have to write.
        let reserve = total / 100 * 5;
        let ps_h = h.hub(&["--pacserver", &fake.authority()]);
        let mut least_free = free_at_start;
        let stopped = wait_for(PULL_LIMIT, || {
            least_free = least_free.min(fs_space(&dir).1);
            let st = hub_status(&ps_h);
            let why = st.get("stopped")?.as_str()?.to_string();
            (in_flight(&st) == 0).then_some((why, st))
        });
        let (why, st) = stopped.unwrap_or_else(|| panic!("pulls did not stop\n{}", ps_h.log()));
        let (_, free, _) = fs_space(&dir);
        least_free = least_free.min(free);
        let names: Vec<&str> = files[..3].iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(held(&dir), names, "{why}\n{}", ps_h.log());
        assert!(partials(&dir).is_empty(), "{:?}", partials(&dir));
        // Kept free: 5 %, less at most a block for each of the two pulls under way.
        assert!(
            least_free + 2 * block >= reserve,
            "{least_free} bytes free at the least, {reserve} to keep\n{}",
            ps_h.log()
        );
        // And stopped only when the next file did not fit above it.
        let next = &files[3];
        assert!(free < next.1.len() as u64 + reserve, "{free} free: {why}");
        assert!(
            why.contains(&next.0) && why.contains("5% of the filesystem kept free"),
            "{why}"
        );
        assert_eq!(st.num("min_free_percent"), 5);
        let page = ps_h.get("/").text();
        assert!(
            page.contains("<b>Pulls stopped:</b>")
                && page.contains("5% of the filesystem kept free"),
            "{page}"
        );
        // Later rounds do not start them either.
        let polls = fake.polls();
        assert!(wait_until(PULL_LIMIT, || fake.polls() >= polls + 3));
        for (file, _) in &files[3..] {
            assert!(fake.pulls_of(file).is_empty(), "{file}\n{}", ps_h.log());
        }
        assert_eq!(held(&dir), names);
        assert!(partials(&dir).is_empty());
        let st = hub_status(&ps_h);
        assert!(
            st.get("stopped").and_then(|s| s.as_str()).is_some(),
            "{st:?}"
        );
        for (file, bytes) in &files[..3] {
            assert_same_bytes(&fs::read(dir.join(file)).unwrap(), bytes, file);
        }
        drop(ps_h);
        drop(small_fs);
    });
}

/// The complete files in a hub's directory with their sizes, sorted (its `.partial` aside).
fn stored(dir: &Path) -> Vec<(String, u64)> {
    held(dir)
        .into_iter()
        .filter_map(|f| {
            let len = fs::metadata(dir.join(&f)).ok()?.len();
            Some((f, len))
        })
        .collect()
}

/// The bytes in a hub's directory, stored and partial, never more than it held at one
/// moment: a stored file counts if it is there both before and after the temporaries are
/// read (one evicted meanwhile is left out, one renamed into place meanwhile counts once,
/// as a temporary).
fn bytes_in(dir: &Path) -> u64 {
    let before = stored(dir);
    let partial: u64 = partials(dir).iter().map(|(_, n)| n).sum();
    let after = stored(dir);
    let kept: u64 = before
        .iter()
        .filter(|f| after.contains(f))
        .map(|(_, n)| n)
        .sum();
    kept + partial
}

/// `--hub-max-size` counts the pulls under way, not only the files held: with room for
/// two of four files of 1 MiB (2.5 MiB) and two pulls at once, the peer holds the first
/// two (a, b) after 64 KiB. Neither c nor d is asked for while both are under way; once a
/// is stored and b still under way (held), the hub says c and d do not fit and still asks
/// for neither. After b, later rounds make room for c and d by evicting a, then b, for the
/// budget (least recently used first), each file asked for once, a and b not again. The
/// bytes in the directory, stored and partial, never exceed the budget when sampled;
/// nothing partial is left and c and d are byte-identical.
#[test]
fn the_budget_counts_the_pulls_under_way() {
    Pacman::Debian6.run_test(|| {
        const MIB: usize = 1024 * 1024;
        const BUDGET: u64 = 5 * MIB as u64 / 2;
        const HELD_AT: usize = 64 * 1024;
        let lan = Lan::new("inflight", 55, &[]);
        let h = lan.host("h", H);
        let f_ns = lan.net.add_host("f", F);
        let files: Vec<(String, Vec<u8>)> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| named(&format!("budget{n}"), "1-1", "x86_64", MIB))
            .collect();
        let (a, b, c, d) = (&files[0].0, &files[1].0, &files[2].0, &files[3].0);
        let (release_a, release_b) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let offers = vec![
            Offered::honest(a, files[0].1.clone()).held_after(HELD_AT, &release_a),
            Offered::honest(b, files[1].1.clone()).held_after(HELD_AT, &release_b),
            Offered::honest(c, files[2].1.clone()).dripped(),
            Offered::honest(d, files[3].1.clone()).dripped(),
        ];
        let fake = FakePeer::start(&f_ns, &lan.net.addr(F), offers);
        let dir = h.hub_dir();
        let budget = BUDGET.to_string();
        let ps_h = h.hub(&[
            "--hub-max-size",
            &budget,
            "--hub-pulls",
            "2",
            "--pacserver",
            &fake.authority(),
        ]);
        // The most bytes in the directory seen, and what it held then.
        let mut most = (0u64, Vec::new(), Vec::new());
        let mut sample = || {
            let n = bytes_in(&dir);
            if n > most.0 {
                most = (n, stored(&dir), partials(&dir));
            }
        };
        let not_asked = |files: &[&String]| files.iter().all(|f| fake.pulls_of(f).is_empty());

        // Both first pulls under way, held: neither can end.
        let both = [(a.clone(), HELD_AT as u64), (b.clone(), HELD_AT as u64)];
        let under_way = wait_until(PULL_LIMIT, || {
            sample();
            partials(&dir) == both
        });
        assert!(under_way, "{:?}\n{}", partials(&dir), ps_h.log());
        assert_eq!(fake.sending.most(), 2, "files asked for at once");
        assert!(not_asked(&[c, d]), "c or d asked for\n{}", ps_h.log());

        // a stored, b under way: c and d do not fit, and are not asked for.
        release_a.store(true, Ordering::SeqCst);
        let refused = |f: &str| ps_h.lines_with(&format!("{f} does not fit in --hub-max-size")) > 0;
        let decided = wait_until(PULL_LIMIT, || {
            sample();
            (refused(c) && refused(d)) || !not_asked(&[c, d])
        });
        assert!(
            not_asked(&[c, d]),
            "asked for c or d with a held and b under way: {:?}\n{}",
            fake.asked(),
            ps_h.log()
        );
        assert!(decided, "{}", ps_h.log());
        assert_eq!(held(&dir), [a.as_str()]);
        assert_eq!(partials(&dir), [(b.clone(), HELD_AT as u64)]);
        let st = hub_status(&ps_h);
        assert_eq!(in_flight(&st), 1, "{st:?}");

        // Later rounds: c and d in place of a and b.
        release_b.store(true, Ordering::SeqCst);
        let done = wait_until(PULL_LIMIT, || {
            sample();
            held(&dir) == [c.as_str(), d.as_str()] && partials(&dir).is_empty()
        });
        assert!(
            done,
            "{:?} {:?}\n{}",
            held(&dir),
            partials(&dir),
            ps_h.log()
        );
        let st = wait_hub_status(&ps_h, |st| evictions(st).len() >= 2);
        // Newest first; each once (two workers may both decide to evict the same file).
        let mut gone = evictions(&st);
        gone.dedup();
        let budget_why = "budget".to_string();
        assert_eq!(
            gone,
            [(b.clone(), budget_why.clone()), (a.clone(), budget_why)],
            "{st:?}"
        );
        // And so it stays: a and b are not asked for again.
        let polls = fake.polls();
        assert!(wait_until(PULL_LIMIT, || {
            sample();
            fake.polls() >= polls + 3
        }));
        assert_eq!(held(&dir), [c.as_str(), d.as_str()], "{}", ps_h.log());
        assert!(partials(&dir).is_empty(), "{:?}", partials(&dir));
        for (file, _) in &files {
            assert_eq!(fake.pulls_of(file).len(), 1, "{file}\n{}", ps_h.log());
        }
        let st = hub_status(&ps_h);
        assert_eq!((st.num("files"), st.num("bytes")), (2, 2 * MIB as u64));
        assert!(
            most.0 <= BUDGET,
            "{} bytes in the directory, {BUDGET} allowed: {:?} {:?}\n{}",
            most.0,
            most.1,
            most.2,
            ps_h.log()
        );
        for (file, bytes) in &files[2..] {
            assert_same_bytes(&fs::read(dir.join(file)).unwrap(), bytes, file);
        }
    });
}

/// A pull that cannot fit in `--hub-max-size` evicts nothing: room is made for a file only
/// if it then fits, with the pulls under way. Budget 2.5 MiB, two pulls at once, a and b
/// of 1 MiB (b held after 64 KiB), y of 2 MiB and z of 3 MiB (more than the budget). With
/// a stored and b under way, y and z do not fit and a stays (evicting it would not make
/// room for y while b comes). Once b is stored, a later round evicts a and b for y, the
/// least recently used first; z, refused every round, never takes y, and is never asked
/// for.
#[test]
fn a_pull_that_does_not_fit_evicts_nothing() {
    Pacman::Debian6.run_test(|| {
        const MIB: usize = 1024 * 1024;
        const HELD_AT: usize = 64 * 1024;
        let lan = Lan::new("nofit", 56, &[]);
        let h = lan.host("h", H);
        let f_ns = lan.net.add_host("f", F);
        let files: Vec<(String, Vec<u8>)> =
            [("a", MIB), ("b", MIB), ("y", 2 * MIB), ("z", 3 * MIB)]
                .iter()
                .map(|(n, len)| named(&format!("nofit{n}"), "1-1", "x86_64", *len))
                .collect();
        let (a, b, y, z) = (&files[0].0, &files[1].0, &files[2].0, &files[3].0);
        let release_b = Arc::new(AtomicBool::new(false));
        let offers = vec![
            Offered::honest(a, files[0].1.clone()),
            Offered::honest(b, files[1].1.clone()).held_after(HELD_AT, &release_b),
            Offered::honest(y, files[2].1.clone()),
            Offered::honest(z, files[3].1.clone()),
        ];
        let fake = FakePeer::start(&f_ns, &lan.net.addr(F), offers);
        let dir = h.hub_dir();
        let budget = (5 * MIB / 2).to_string();
        let ps_h = h.hub(&[
            "--hub-max-size",
            &budget,
            "--hub-pulls",
            "2",
            "--pacserver",
            &fake.authority(),
        ]);
        let refused = |f: &str| ps_h.lines_with(&format!("{f} does not fit in --hub-max-size"));

        // a stored, b under way: neither y nor z fits, and a stays.
        assert!(
            wait_until(PULL_LIMIT, || refused(y) > 0 && refused(z) > 0),
            "{}",
            ps_h.log()
        );
        assert_eq!(held(&dir), [a.as_str()], "{}", ps_h.log());
        assert_eq!(partials(&dir), [(b.clone(), HELD_AT as u64)]);
        let st = hub_status(&ps_h);
        assert!(evictions(&st).is_empty(), "{st:?}\n{}", ps_h.log());
        assert_eq!(st.num("evicted_files"), 0, "{st:?}");

        // b stored: a later round makes room for y.
        release_b.store(true, Ordering::SeqCst);
        wait_held(&ps_h, &dir, &[y]);
        let st = wait_hub_status(&ps_h, |st| evictions(st).len() >= 2);
        let budget_why = "budget".to_string();
        assert_eq!(
            evictions(&st),
            [(b.clone(), budget_why.clone()), (a.clone(), budget_why)],
            "{st:?}"
        );
        // z, refused round after round, never takes y.
        let (polls, before) = (fake.polls(), refused(z));
        assert!(wait_until(PULL_LIMIT, || fake.polls() >= polls + 3));
        assert!(refused(z) > before, "{}", ps_h.log());
        assert_eq!(held(&dir), [y.as_str()], "{}", ps_h.log());
        assert!(partials(&dir).is_empty(), "{:?}", partials(&dir));
        let st = hub_status(&ps_h);
        assert_eq!(st.num("evicted_files"), 2, "{st:?}");
        assert!(fake.pulls_of(z).is_empty(), "{}", ps_h.log());
        for (file, _) in &files[..3] {
            assert_eq!(fake.pulls_of(file).len(), 1, "{file}\n{}", ps_h.log());
        }
        assert_same_bytes(&fs::read(dir.join(y)).unwrap(), &files[2].1, y);
    });
}

/// A peer that lists a file of a size no file has (2^64 - 1 bytes): the hub never asks for
/// it, and the sums of its budget and free-space checks cannot overflow (they would wrap
/// past `--hub-max-size` and `--hub-min-free`, or stop the hub). It stores the peer's
/// honest file and goes on polling.
#[test]
fn a_listed_size_no_file_has_is_never_asked_for() {
    Pacman::Debian6.run_test(|| {
        let lan = Lan::new("huge", 57, &[]);
        let h = lan.host("h", H);
        let f_ns = lan.net.add_host("f", F);
        let (ok, ok_bytes) = named("aok", "1-1", "x86_64", 4000);
        let (huge, huge_bytes) = named("huge", "1-1", "x86_64", 4000);
        let mut lie = Offered::honest(&huge, huge_bytes);
        lie.listed = u64::MAX;
        let fake = FakePeer::start(
            &f_ns,
            &lan.net.addr(F),
            vec![Offered::honest(&ok, ok_bytes.clone()), lie],
        );
        let dir = h.hub_dir();
        let ps_h = h.hub(&["--hub-max-size", "1M", "--pacserver", &fake.authority()]);
        wait_held(&ps_h, &dir, &[&ok]);
        let polls = fake.polls();
        assert!(
            wait_until(PULL_LIMIT, || fake.polls() >= polls + 3),
            "the hub stopped polling\n{}",
            ps_h.log()
        );
        assert!(fake.pulls_of(&huge).is_empty(), "{}", ps_h.log());
        assert_eq!(held(&dir), [ok.as_str()]);
        assert!(partials(&dir).is_empty(), "{:?}", partials(&dir));
        let st = hub_status(&ps_h);
        assert_eq!((st.num("files"), st.num("bytes")), (1, 4000), "{st:?}");
        assert_eq!(in_flight(&st), 0, "{st:?}");
        assert_same_bytes(&fs::read(dir.join(&ok)).unwrap(), &ok_bytes, &ok);
    });
}

/// On a LAN with a shared secret the hub signs its requests: with the key it pulls from L;
/// a hub without it gets 403 from L and stores nothing.
#[test]
fn a_hub_on_an_authenticated_lan_signs_its_pulls() {
    Pacman::Debian6.run_test(|| {
        let lan = Lan::new("auth", 49, &[]);
        let (l, h, stranger) = (lan.host("l", L), lan.host("h", H), lan.host("s", D));
        let key = l.host.dir.join("lan.key");
        let made = Pacserve::run_to_exit(&["gen-secret"]);
        made.assert_ok("pacserve gen-secret", "");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key)
                .unwrap();
            f.write_all(made.stdout.as_bytes()).unwrap();
        }
        let key = key.to_str().unwrap();
        let (file, bytes) = named("signed", "1-1", "x86_64", 5000);
        l.host.put(&file, &bytes);
        let ps_l = l.start(&["--secret-file", key]);
        let ps_s = stranger.hub(&["--pacserver", &l.authority()]);
        let ps_h = h.hub(&["--secret-file", key, "--pacserver", &l.authority()]);
        wait_held(&ps_h, &h.hub_dir(), &[&file]);
        assert_same_bytes(
            &fs::read(h.hub_dir().join(&file)).unwrap(),
            &bytes,
            "signed pull",
        );
        // The stranger's polls were refused; it holds nothing.
        let refused = |ps: &Pacserve| {
            ps.requests()
                .iter()
                .filter(|r| r.from.ip().to_string() == stranger.ip && r.status == 403)
                .count()
        };
        assert!(
            wait_until(PULL_LIMIT, || refused(&ps_l) >= 2),
            "{}",
            ps_l.log()
        );
        assert!(held(&stranger.hub_dir()).is_empty(), "{}", ps_s.log());
    });
}
