//! HTTP/1.1, hand-written: pure parsing (`parse`, `date`, `range`, `url`), the messages
//! (`message`), and the socket shell (`server`, `client`).

pub mod client;
pub mod date;
pub mod head;
pub mod message;
pub mod parse;
pub mod range;
pub mod server;
pub mod url;
