//! What the user configured: the command line ([`cli`]) and pacman.conf ([`pacman_conf`],
//! with [`glob`] for its Includes). Parsers are pure; one loader reads files.

pub mod cli;
pub mod glob;
pub mod pacman_conf;
