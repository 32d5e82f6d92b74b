//! Network namespaces the tests make and remove: a "switch" namespace holding a Linux bridge,
//! hosts plugged into it by veth pairs, a thread's way into a namespace, and the cleanup of
//! what a crashed earlier run left behind.
//!
//! Addresses are `10.231.SUBNET.I/24` inside these namespaces only; each host has `lo` up and
//! a `224.0.0.0/4` route on its veth (so it can join a multicast group) and no default route.
//! A host of another [`Stack`] has IPv6 addresses of the test's choosing instead or as well
//! (`fe80::I`, `fd31:0:0:SUBNET::I`), usable at once.
//! Namespaces are named `psl-PID-TAG-HOST`. A host may get a hosts file of its own
//! (`/etc/netns/NS/hosts`, which `ip netns exec` mounts over `/etc/hosts`), and a test may
//! send datagrams with forged source addresses from inside a namespace ([`RawUdp`]).

use std::cell::RefCell;
use std::fs::{self, File};
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::thread;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use super::preflight;
use super::process::{Ran, run_bounded};
use super::tempdir::TEMP_PREFIX;

/// Prefix of every namespace these tests make (and of their temp dirs' tags).
pub const NETNS_PREFIX: &str = "psl-";
/// Longest one `ip` command may take.
const IP_LIMIT: Duration = Duration::from_secs(10);
/// Where `ip netns exec NS` finds files to mount over `/etc` (`/etc/netns/NS/FILE`).
const NETNS_ETC: &str = "/etc/netns";

/// `ip ARGS`, bounded.
pub fn ip(args: &[&str]) -> Ran {
    run_bounded(Command::new("ip").args(args), IP_LIMIT)
}

/// `ip ARGS`, which must succeed.
pub fn ip_ok(args: &[&str]) {
    let ran = ip(args);
    assert!(
        ran.success(),
        "ip {} failed: {}",
        args.join(" "),
        ran.text()
    );
}

/// Run `f` on a thread of its own that has first moved into the network namespace `ns`
/// (`/run/netns/NS`): sockets it makes stay in that namespace for good, whichever thread uses
/// them later.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let handle = File::open(format!("/run/netns/{ns}"))?;
    thread::scope(|s| {
        s.spawn(|| {
            move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&handle),
                Some(LinkNameSpaceType::Network),
            )?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// The addresses a host gets on its veth `eth0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// `10.231.SUBNET.I/24` (and the kernel's own link-local IPv6 address).
    V4,
    /// `10.231.SUBNET.I/24` and no IPv6 at all.
    V4Only,
    /// IPv6 only: `fe80::I/64` and no other.
    LinkLocal,
    /// IPv6 only: `fe80::I/64` and `fd31:0:0:SUBNET::I/64` (see [`Netns::ula`]).
    Ula,
    /// `10.231.SUBNET.I/24`, `fe80::I/64` and `fd31:0:0:SUBNET::I/64`.
    Dual,
}

/// The namespaces of one test: a switch with a bridge, and hosts plugged into it. All are
/// deleted on drop (which also removes their veths and the bridge).
pub struct Netns {
    prefix: String,
    subnet: u8,
    made: RefCell<Vec<String>>,
    /// `/etc/netns/NS` directories made for hosts files.
    etc: RefCell<Vec<PathBuf>>,
}

impl Netns {
    /// A switch for subnet `10.231.SUBNET.0/24`; `tag` names the test.
    pub fn new(tag: &str, subnet: u8) -> Netns {
        preflight::require();
        remove_leftovers();
        let net = Netns {
            prefix: format!("{NETNS_PREFIX}{}-{tag}-", std::process::id()),
            subnet,
            made: RefCell::new(Vec::new()),
            etc: RefCell::new(Vec::new()),
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

    /// The address of host number `i`.
    pub fn addr(&self, i: u8) -> String {
        format!("10.231.{}.{i}", self.subnet)
    }

    /// A host namespace `host` with address `.i`, plugged into the switch; its name. IPv6 is
    /// left as the kernel makes it: a link-local address, tentative for a second or so.
    pub fn add_host(&self, host: &str, i: u8) -> String {
        self.add_host_with(host, i, Stack::V4)
    }

    /// A host namespace `host`, number `i`, plugged into the switch with the addresses of
    /// `stack`; its name.
    pub fn add_host_with(&self, host: &str, i: u8, stack: Stack) -> String {
        let ns = self.add(host);
        let sw = self.switch();
        let port = format!("v-{host}");
        ip_ok(&["-n", &ns, "link", "set", "lo", "up"]);
        ip_ok(&[
            "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &sw,
        ]);
        ip_ok(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
        if stack != Stack::V4 {
            // Addresses of our choosing, usable at once (no duplicate address detection).
            ip_ok(&["-n", &ns, "link", "set", "eth0", "addrgenmode", "none"]);
        }
        let v4 = matches!(stack, Stack::V4 | Stack::V4Only | Stack::Dual);
        if v4 {
            let cidr = format!("{}/24", self.addr(i));
            ip_ok(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
        }
        ip_ok(&["-n", &ns, "link", "set", "eth0", "up"]);
        if v4 {
            ip_ok(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        }
        let mut v6 = Vec::new();
        if !matches!(stack, Stack::V4 | Stack::V4Only) {
            v6.push(format!("{}/64", self.link_local(i)));
        }
        if matches!(stack, Stack::Ula | Stack::Dual) {
            v6.push(format!("{}/64", self.ula(i)));
        }
        for cidr in v6 {
            ip_ok(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0", "nodad"]);
        }
        ns
    }

    /// The link-local address of host number `i` (hosts of an IPv6 [`Stack`]).
    pub fn link_local(&self, i: u8) -> String {
        format!("fe80::{i:x}")
    }

    /// The unique-local address of host number `i`: `fd31:0:0:SUBNET::I`.
    pub fn ula(&self, i: u8) -> String {
        format!("fd31:0:0:{:x}::{i:x}", self.subnet)
    }

    /// Give the namespace `ns` (one of ours) a hosts file of its own with `text`: programs
    /// started by `ip netns exec NS` see it as `/etc/hosts`. Removed on drop.
    pub fn hosts_file(&self, ns: &str, text: &str) {
        assert!(
            self.made.borrow().iter().any(|n| n == ns),
            "{ns} is not a namespace of this test"
        );
        let dir = Path::new(NETNS_ETC).join(ns);
        self.etc.borrow_mut().push(dir.clone());
        // Another test's drop may remove an empty /etc/netns just as it is made: try again.
        let made = fs::create_dir_all(&dir).or_else(|_| fs::create_dir_all(&dir));
        made.unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let hosts = dir.join("hosts");
        fs::write(&hosts, text).unwrap_or_else(|e| panic!("write {}: {e}", hosts.display()));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in self.made.borrow().iter().rev() {
            let _ = ip(&["netns", "del", name]);
        }
        for dir in self.etc.borrow().iter() {
            let _ = fs::remove_dir_all(dir);
        }
        remove_etc_if_empty();
    }
}

/// `/etc/netns` goes once nothing is left in it (it does not exist on a machine that never
/// gave a namespace files of its own); removing a directory that is not empty fails.
fn remove_etc_if_empty() {
    let _ = fs::remove_dir(NETNS_ETC);
}

// ---------------------------------------------------------------------------------------------
// Forged datagrams

/// A raw IPv4 socket made inside a namespace, which writes whole IP packets: UDP datagrams
/// with any source address, as a hostile host on that LAN could send them.
pub struct RawUdp {
    socket: OwnedFd,
}

impl RawUdp {
    /// A raw socket (IPPROTO_RAW: the IP header is ours) inside the namespace `ns`.
    pub fn open_in(ns: &str) -> RawUdp {
        use rustix::net::{AddressFamily, SocketType, ipproto, socket};
        let socket = in_netns(ns, || {
            socket(AddressFamily::INET, SocketType::RAW, Some(ipproto::RAW))
        })
        .and_then(|r| r.map_err(io::Error::from))
        .unwrap_or_else(|e| panic!("a raw socket in {ns}: {e}"));
        RawUdp { socket }
    }

    /// One UDP datagram with `payload` from `src` to `dst`, TTL 1. The kernel fills in the
    /// IP checksum and id; the UDP checksum is left out (0), which IPv4 allows.
    pub fn send(&self, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> io::Result<()> {
        use rustix::net::{SendFlags, sendto};
        let udp_len = u16::try_from(8 + payload.len()).expect("a small datagram");
        let total = udp_len + 20;
        let mut packet = Vec::with_capacity(usize::from(total));
        // Version 4, 5 words of header; no TOS; length; id 0 (filled in); don't fragment.
        packet.extend_from_slice(&[0x45, 0]);
        packet.extend_from_slice(&total.to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0x40, 0]);
        // TTL 1 (this link only), protocol UDP, checksum 0 (filled in).
        packet.extend_from_slice(&[1, 17, 0, 0]);
        packet.extend_from_slice(&src.ip().octets());
        packet.extend_from_slice(&dst.ip().octets());
        packet.extend_from_slice(&src.port().to_be_bytes());
        packet.extend_from_slice(&dst.port().to_be_bytes());
        packet.extend_from_slice(&udp_len.to_be_bytes());
        packet.extend_from_slice(&[0, 0]);
        packet.extend_from_slice(payload);
        let to = SocketAddrV4::new(*dst.ip(), 0);
        let sent = sendto(&self.socket, &packet, SendFlags::empty(), &to)?;
        if sent != packet.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "packet cut short"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Leftovers of crashed runs

/// True when `pid` still runs, whatever it is: the test binaries of one checkout (or of
/// several, on one machine) run side by side, and each must leave the others' namespaces
/// alone. A crashed run's leftovers go once its PID is free (a PID taken again by another
/// program only delays that).
fn owner_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

/// Remove what a crashed earlier run left behind: namespaces with our prefix whose owner (the
/// PID in the name) is no longer a running test (whatever still runs inside them was started
/// by that run and is killed by pid first), and that run's temporary directories.
fn remove_leftovers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let list = ip(&["netns", "list"]);
        for line in list.stdout.lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
                continue;
            };
            let owner: Option<u32> = rest.split('-').next().and_then(|p| p.parse().ok());
            if owner.is_some_and(owner_alive) {
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
            let _ = fs::remove_dir_all(Path::new(NETNS_ETC).join(name));
        }
        remove_leftover_etc();
        remove_leftover_dirs();
    });
}

/// Hosts files of namespaces whose owner no longer runs (the namespace itself may be gone).
fn remove_leftover_etc() {
    let Ok(entries) = fs::read_dir(NETNS_ETC) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let owner: Option<u32> = rest.split('-').next().and_then(|p| p.parse().ok());
        if owner.is_some_and(|p| !owner_alive(p)) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    remove_etc_if_empty();
}

/// Temporary directories are named `pacserve-test-PID-...-TAG`; a PID whose directories
/// include one tagged `...-psl-TEST` was a LAN test binary, so all its directories (pacman
/// clients too) go once that PID no longer runs it.
fn remove_leftover_dirs() {
    let tmp = std::env::temp_dir();
    let Ok(entries) = fs::read_dir(&tmp) else {
        return;
    };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(TEMP_PREFIX))
        .collect();
    let pid_of =
        |n: &str| -> Option<u32> { n[TEMP_PREFIX.len()..].split('-').next()?.parse().ok() };
    let crashed: Vec<u32> = names
        .iter()
        .filter(|n| n.contains(&format!("-{NETNS_PREFIX}")))
        .filter_map(|n| pid_of(n))
        .filter(|&p| !owner_alive(p))
        .collect();
    for n in &names {
        if pid_of(n).is_some_and(|p| crashed.contains(&p)) {
            let _ = fs::remove_dir_all(tmp.join(n));
        }
    }
}
