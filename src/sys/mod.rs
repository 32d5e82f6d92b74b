//! The process's surroundings: the stderr [`log`], systemd's [`notify`] protocol, facts about
//! this [`host`] from /proc, the executor ([`rt`]) and the descriptor [`budget`].

pub mod budget;
pub mod host;
pub mod log;
pub mod notify;
pub mod rt;
