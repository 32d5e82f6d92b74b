//! The other pacserves of the LAN: who they are ([`table`]), which of them holds a file
//! ([`lookup`], I/O), and how they are found by UDP multicast ([`discovery`], I/O).

pub mod discovery;
pub mod lookup;
pub mod table;
