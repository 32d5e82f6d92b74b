//! The hub (`--hub DIR`) on a LAN of network namespaces: it collects what its peers already
//! downloaded and serves it when they are gone, with the real pacman as the client.
//!
//! Hosts: a laptop L and a desktop D (each a pacserve with the pacman of the test), the hub
//! H, a mirror M, and where a test needs a peer that misbehaves, a test HTTP server F
//! playing a pacserve ([`FakePeer`]: it drips, lies about sizes or checksums, and logs every
//! request head). Peers are given by `--pacserver`. What the hub holds is read from its
//! directory and its `/status.json`; what a peer was asked, from its log.
//!
//! - L's pacman downloads P from the mirror; H pulls P and its `.sig` from L; L dies; D's
//!   pacman gets P from H and the mirror never served P to D (both pacmans).
//! - A hub whose pacman.conf says aarch64 collects, with `--hub-arch x86_64`, L's x86_64
//!   packages (not its armv7h one) and D's pacman gets one from it (pacman 6 only: the hub's
//!   side does not depend on the client, and two pacmans double the time).
//! - Retention: `--hub-keep 2` of 1.0-1, 1.0-2 and 2:0.9-1 keeps the two newest by pacman's
//!   version order; a byte budget evicts older versions first, then the least recently
//!   served.
//! - A pull interrupted by the hub's death resumes with a Range after a restart, the
//!   temporary never served meanwhile, and the stored file byte-identical.
//! - A copy of another size or SHA-256 (the peer's own word, or the hub's sync database) is
//!   never stored, and that peer is not asked for that file again.
//! - A full filesystem (a small tmpfs as DIR) stops pulls, leaves nothing partial, and says
//!   why on the status page.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

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

    /// The hub's directory on this host (made by pacserve).
    fn hub_dir(&self) -> PathBuf {
        self.host.dir.join("hub")
    }

    /// pacserve as a hub into [`Self::hub_dir`], polling every [`INTERVAL`], with `extra`.
    fn hub(&self, extra: &[&str]) -> Pacserve {
        self.hub_launch(extra).start()
    }

    fn hub_launch(&self, extra: &[&str]) -> Launch {
        let dir = self.hub_dir();
        let dir = dir.to_str().unwrap();
        self.launch(&["--hub", dir, "--hub-interval", INTERVAL])
            .args(extra)
    }
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

/// Wait (bounded) until the hub's directory holds exactly `want`.
fn wait_held(h: &Pacserve, dir: &Path, want: &[&str]) {
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
}

impl Offered {
    fn honest(file: &str, body: Vec<u8>) -> Offered {
        Offered {
            file: file.to_string(),
            listed: body.len() as u64,
            sha256: sha256_hex(&body),
            body,
            drip: None,
        }
    }
}

/// A request head the fake peer read: its request line and its Range, if any.
#[derive(Clone, Debug)]
struct Asked {
    line: String,
    range: Option<String>,
}

/// A test HTTP server inside a namespace playing a pacserve: `/info` lists what it offers,
/// `/info/NAME` sends it (honouring `Range: bytes=N-`). Stopped on drop.
struct FakePeer {
    addr: SocketAddr,
    offers: Arc<Mutex<Vec<Offered>>>,
    log: Arc<Mutex<Vec<Asked>>>,
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
        let thread = {
            let (offers, log, stop) = (offers.clone(), log.clone(), stop.clone());
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
                    conns.push(thread::spawn(move || {
                        let _ = fake_conn(conn, &offers, &log, &stop);
                    }));
                }
                for c in conns {
                    let _ = c.join();
                }
            })
        };
        FakePeer {
            addr,
            offers,
            log,
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

    /// Send at full speed from now on.
    fn stop_dripping(&self) {
        for o in self.offers.lock().unwrap().iter_mut() {
            o.drip = None;
        }
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
    s.write_all(head.as_bytes())?;
    let rest = &o.body[from..];
    match o.drip {
        None => s.write_all(rest)?,
        Some((n, pause)) => {
            for chunk in rest.chunks(n) {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                s.write_all(chunk)?;
                thread::sleep(pause);
            }
        }
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
    let l_conf = write_server_conf(
        &l.host.dir,
        &[l_client.cache_dir()],
        &[("core", &[lan.repo.server()])],
    );
    let ps_l = Pacserve::builder(&l_conf)
        .name("laptop")
        .in_netns(&l.ns)
        .address("0.0.0.0")
        .port(PORT)
        .start();
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
    let st = hub_status(&ps_h);
    assert_eq!(st.num("files"), 2, "{st:?}");
    assert_eq!(st.num("bytes"), p.size() + 566);
    assert!(st.num("pulled_files") >= 2, "{st:?}");
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
