//! Every byte, count and time limit of pacserve, in one place, each with the reason for it.
//!
//! A limit that is not here is a bug: bound every read in bytes, count and time.

use std::time::Duration;

/// Longest request line we accept (`GET /request/core/x86_64/<file> HTTP/1.1`). Package file
/// names are well under 256 bytes; 8 KiB leaves room for odd clients and still stops abuse.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;

/// Largest request or response head (request line + headers + blank line). pacman sends about
/// 200 bytes; mirrors answer HEAD with well under 2 KiB.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most header fields in one head. curl sends 4–6; 64 is generous.
pub const MAX_HEADERS: usize = 64;

/// Time a client has to send a complete request head once it has started one.
pub const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Time an idle keep-alive connection is kept open waiting for the next request. pacman reuses
/// connections within one transaction; anything longer only holds a slot.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Time a single write may make no progress before the connection is dropped. pacman itself
/// aborts a transfer after 10 s under 1 byte/s, so a client stalled longer is gone.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Concurrent client connections. Above this a new connection is answered 503 and closed at
/// once, so a flood cannot exhaust file descriptors or memory. Each connection costs one
/// buffer of `MAX_HEAD_BYTES`.
pub const MAX_CONNECTIONS: usize = 512;

/// Bytes handed to one sendfile(2) call; bounded so one fast client cannot hog the executor.
pub const SENDFILE_CHUNK: usize = 1024 * 1024;

/// Time for a HEAD probe of a mirror (connect + response head). pacman gives up on a server
/// after 10 s of stall; the probe must finish well within that.
pub const MIRROR_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a mirror that failed a probe (refused, timed out, 5xx) is skipped.
pub const DEAD_MIRROR_BACKOFF: Duration = Duration::from_secs(60);

/// Most mirrors remembered as dead; the table is cleared of expired entries before it grows.
pub const MAX_DEAD_MIRRORS: usize = 256;

/// pacman.conf and included files larger than this are rejected (the stock one is 3 KiB, a
/// full mirrorlist 40 KiB).
pub const MAX_CONF_BYTES: u64 = 1024 * 1024;

/// Include nesting depth; stops include loops.
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// Files one Include glob may expand to.
pub const MAX_GLOB_MATCHES: usize = 256;

/// Longest request path and file name we log before truncating.
pub const MAX_LOGGED_PATH: usize = 512;
