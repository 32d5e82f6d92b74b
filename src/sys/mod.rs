//! The process's surroundings: the stderr [`log`], systemd's [`notify`] protocol, facts about
//! this [`host`] from /proc, its IPv6 interfaces ([`ifaces`]), the executor ([`rt`]) and the descriptor [`budget`].

pub mod budget;
pub mod host;
pub mod ifaces;
pub mod log;
pub mod notify;
pub mod rt;
