//! The process's surroundings: the stderr [`log`], systemd's [`notify`] protocol, facts about
//! this [`host`] from /proc, and the executor ([`rt`]).

pub mod host;
pub mod log;
pub mod notify;
pub mod rt;
