//! HTTP/1.1, hand-written: pure parsing (`parse`, `date`, `range`, `url`), the messages
//! (`message`), and the socket shell: `head` (reading one head, for both sides), `conn` (one
//! server connection), `listen` (the dual-stack socket), `server` (accept loop, cap, drain)
//! and `client`.

pub mod client;
pub mod conn;
pub mod date;
pub mod handler;
pub mod head;
pub mod listen;
pub mod message;
pub mod parse;
pub mod pool;
pub mod range;
pub mod server;
pub mod slots;
#[cfg(test)]
mod testing;
pub mod url;
