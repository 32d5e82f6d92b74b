//! A LAN of network namespaces with a mirror: the switch, mirror host M (`.100`) serving
//! repository `core` with packages made at test time, and hosts with a pacserve (a cache and
//! a pacman.conf listing the mirror) or without one (an attacker, a client).

use std::net::{Ipv4Addr, SocketAddr};

use super::lan::{NETNS_PREFIX, Netns};
use super::mirror::Mirror;
use super::packages::Pkg;
use super::pacman::Pacman;
use super::repo::{Host, Repo};
use super::{Pacserve, logs};

/// The mirror host's address on every test LAN, and its port.
pub const M: u8 = 100;
pub const MIRROR_PORT: u16 = 8080;
/// The size of every package the LAN's repository holds.
pub const PAYLOAD: usize = 4096;

/// The switch and mirror M serving repo `core`. Fields drop in order: the mirror and its
/// directory first, then the namespaces.
pub struct MirrorLan {
    pub repo: Repo,
    pub net: Netns,
}

/// A host with a pacserve: its namespace, address, cache and pacman.conf.
pub struct LanHost {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    pub host: Host,
}

/// A host without a pacserve: its namespace and address.
pub struct Bare {
    pub ns: String,
    pub ip: Ipv4Addr,
}

/// `tag` told apart for each pacman: a test that runs with both at once needs namespaces of
/// its own for each.
pub fn per_pacman(tag: &str) -> String {
    match Pacman::current() {
        Pacman::Debian6 => format!("{tag}6"),
        Pacman::Arch7 => format!("{tag}7"),
    }
}

impl MirrorLan {
    /// Mirror M holding repo `core` with `names` (all in its database).
    pub fn new(tag: &str, subnet: u8, names: &[&str]) -> MirrorLan {
        let net = Netns::new(tag, subnet);
        let ns = net.add_host("m", M);
        let addr: SocketAddr = format!("{}:{MIRROR_PORT}", net.addr(M))
            .parse()
            .expect("the mirror's address");
        let pkgs: Vec<(&str, usize)> = names.iter().map(|n| (*n, PAYLOAD)).collect();
        let repo = Repo::served_by(&format!("{NETNS_PREFIX}{tag}"), &pkgs, |root| {
            Mirror::start_in(&ns, addr, root)
        });
        MirrorLan { repo, net }
    }

    pub fn pkg(&self, name: &str) -> &Pkg {
        self.repo.pkg(name)
    }

    pub fn mirror(&self) -> &Mirror {
        &self.repo.mirror
    }

    pub fn ip(&self, i: u8) -> Ipv4Addr {
        self.net.addr(i).parse().expect("an IPv4 address")
    }

    /// Host `name` with address `.i`: an empty cache and a pacman.conf listing the mirror.
    pub fn host(&self, name: &str, i: u8) -> LanHost {
        LanHost {
            name: name.to_string(),
            ns: self.net.add_host(name, i),
            ip: self.ip(i),
            host: self.repo.host(name),
        }
    }

    /// A host without pacserve, with address `.i`.
    pub fn bare(&self, name: &str, i: u8) -> Bare {
        Bare {
            ns: self.net.add_host(name, i),
            ip: self.ip(i),
        }
    }

    /// Requests of any method for the mirror path of `pkg`.
    pub fn mirror_asked(&self, pkg: &Pkg) -> usize {
        let path = pkg.mirror_path();
        self.mirror().count(|r| r.path == path)
    }

    /// Everything a failure message needs.
    pub fn dump(&self, daemons: &[&Pacserve]) -> String {
        logs(daemons, self.mirror())
    }
}
