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

/// Empty lines skipped before a request line (RFC 9112 §2.2 asks servers to skip at least one;
/// some clients send a stray CRLF after a body). More than this is not a client, it is noise.
pub const MAX_LEADING_EMPTY_LINES: usize = 4;

/// A connection's head buffer to begin with (it grows to `MAX_HEAD_BYTES` only for a head
/// that needs it): pacman sends about 200 bytes, curl a little more.
pub const HEAD_BUFFER_START: usize = 1024;

/// A response head's buffer to begin with, for the hub's pulls (it grows to
/// `MAX_HEAD_BYTES` only for a head that needs it); and the size of the reads that drain
/// what a closing client still sends.
pub const READ_BUFFER_START: usize = 4096;

/// Most header fields in one head. curl sends 4–6; 64 is generous.
pub const MAX_HEADERS: usize = 64;

/// Time a client has to send a complete request head once it has started one.
pub const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Time an idle keep-alive connection is kept open waiting for the next request. pacman reuses
/// connections within one transaction; anything longer only holds a slot.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// After answering a request it did not read whole (431, 400), how long and how many bytes
/// the server reads and drops before it closes, so the kernel does not reset the connection
/// under the client's feet (a client then may lose the answer).
pub const LINGER_TIME: Duration = Duration::from_secs(1);
pub const LINGER_BYTES: usize = 64 * 1024;

/// Time a single write may make no progress before the connection is dropped. pacman itself
/// aborts a transfer after 10 s under 1 byte/s, so a client stalled longer is gone.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Concurrent client connections. Above this a new connection is answered 503 and closed at
/// once, so a flood cannot exhaust file descriptors or memory. Each connection costs one
/// buffer of `MAX_HEAD_BYTES` (16 MiB at the cap) and up to two descriptors (socket and
/// package file); pacserve raises its open-file limit to fit. A LAN of a thousand hosts
/// downloading at once still fits.
pub const MAX_CONNECTIONS: usize = 1024;

/// Outgoing connections open at once, over all lookups and probes. A healthy lookup asks a
/// few peers for a millisecond; a flood of forged peers must not exhaust the descriptors
/// (256 spoofed hellos and 40 clients once took 2111 of 2112, and cached files got 404s).
pub const MAX_OUTGOING_CONNECTIONS: usize = 256;

/// Outgoing connections lookups may not take: kept for mirror probes, which a request falls
/// back on when the LAN fails it.
pub const PROBE_RESERVE: usize = 32;

/// How often a probe waiting for the outgoing budget looks again.
pub const OUTGOING_WAIT_POLL: Duration = Duration::from_millis(20);

/// Descriptors beyond connections, their files, the open-file cache and the outgoing budget
/// that the open-file limit must leave room for: the listener, discovery, the executor's
/// own, stderr.
pub const SPARE_FDS: usize = 64;

/// Connections one source address may hold at once, well below `MAX_CONNECTIONS`: pacman's
/// ParallelDownloads is 5, and a host's pacserve asks a few more; 1024 idle connections from
/// one host once locked every other client out. Loopback may use them all.
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 64;

/// Connections a configured peer (`--pacserver` address) may hold at once: a hub serving a
/// LAN behind it, say.
pub const MAX_CONNECTIONS_PER_TRUSTED: usize = 256;

/// Idle client connections kept for the next HEAD to the same peer or mirror: per server,
/// in all, and for how long (pacserve closes idle ones after [`IDLE_TIMEOUT`], nginx after
/// 65 s, Apache after 5 s).
pub const CLIENT_IDLE_PER_SERVER: usize = 4;
pub const CLIENT_IDLE_MAX: usize = 16;
pub const CLIENT_IDLE_TIME: Duration = Duration::from_secs(2);

/// Bytes handed to one sendfile(2) call; bounded so one fast client cannot hog the executor.
pub const SENDFILE_CHUNK: usize = 1024 * 1024;

/// Time for a HEAD probe of a mirror (connect + response head). pacman gives up on a server
/// after 10 s of stall; the probe must finish well within that.
pub const MIRROR_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The whole walk over a repository's mirrors for one package, however many are hung: well
/// inside pacman's 10 s stall limit, so pacman hears a 404 and moves on to its own next
/// Server before it gives up on pacserve (four hung mirrors once took 12 s).
pub const MIRROR_WALK_TIMEOUT: Duration = Duration::from_secs(5);

/// Most mirrors probed for one package: a config of thousands of refusing mirrors must not
/// cost thousands of connections per request.
pub const MAX_PROBES_PER_WALK: usize = 16;

/// How long a mirror that failed a probe (refused, timed out, 5xx) is skipped.
pub const DEAD_MIRROR_BACKOFF: Duration = Duration::from_secs(60);

/// Least number of mirrors remembered as dead (more when the configuration has more); the
/// table is cleared of expired entries before it grows.
pub const MAX_DEAD_MIRRORS: usize = 256;

/// pacman.conf and included files larger than this are rejected (the stock one is 3 KiB, a
/// full mirrorlist 40 KiB).
pub const MAX_CONF_BYTES: u64 = 1024 * 1024;

/// Include nesting depth; stops include loops.
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// Files one load of pacman.conf may parse, each inclusion counted: Arch's stock config
/// includes one mirrorlist from about ten sections. Without it a few small files that
/// include each other many times fan out to thousands of reads (5 files × 30 Includes made
/// 27,000 Server lines, 8 s and 132 MB).
pub const MAX_INCLUDED_FILES: usize = 256;

/// Bytes one load may parse over all its files (a full mirrorlist is 40 KiB).
pub const MAX_CONF_TOTAL_BYTES: usize = 8 * 1024 * 1024;

/// Server lines one repository may have: the full Arch mirrorlist, every line uncommented,
/// has about 900; pacman only ever gets to the first few.
pub const MAX_SERVERS_PER_REPO: usize = 1024;

/// Files one Include glob may expand to.
pub const MAX_GLOB_MATCHES: usize = 256;

/// Longest request path and file name we log before truncating.
pub const MAX_LOGGED_PATH: usize = 512;

/// On SIGTERM/SIGINT, how long responses in flight may go on before pacserve exits anyway.
/// systemd's default stop timeout is 90 s; a package download on a LAN rarely needs more.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the drain checks whether the last connection has closed.
pub const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Longest host name of a peer (`--pacserver NAME:PORT`): the DNS limit (RFC 1035).
pub const MAX_HOST_NAME: usize = 253;

/// Most peers (static + discovered) in the table; announcements beyond it are dropped, so a
/// flood of forged datagrams cannot grow memory.
pub const MAX_PEERS: usize = 256;

/// First wait after a peer fails a query; doubled on each further failure.
pub const PEER_BACKOFF_BASE: Duration = Duration::from_secs(2);

/// Longest wait between retries of a failing peer.
pub const PEER_BACKOFF_MAX: Duration = Duration::from_secs(120);

/// Default `--peer-timeout`: how long one peer may take to answer a lookup (connect +
/// response). Peers are on the LAN: a healthy one answers in a millisecond.
pub const PEER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);

/// How long "peer X has it" is believed without asking again. pacman fetches a package and
/// its signature within seconds; a peer's cache rarely loses a package (paccache).
pub const POSITIVE_ANSWER_TTL: Duration = Duration::from_secs(10);

/// How long "no peer has it" is believed: short, so a package a peer has just downloaded
/// is found soon.
pub const NEGATIVE_ANSWER_TTL: Duration = Duration::from_secs(2);

/// Most remembered lookup answers; bounds memory under a flood of distinct names.
pub const MAX_CACHED_ANSWERS: usize = 4096;

/// Largest multicast announcement, sent or accepted. A hello is about 70 bytes, 210 with the
/// seal of a shared secret, and the longest valid one (16 long architecture names, sealed)
/// under 600; 1024 stays below any LAN MTU (1472 bytes of UDP payload on Ethernet), so an
/// announcement is never fragmented.
pub const MAX_ANNOUNCE_BYTES: usize = 1024;

/// Receive buffer for announcements. Larger than `MAX_ANNOUNCE_BYTES`, so that an oversize
/// datagram (which the kernel truncates to the buffer) is recognised as oversize.
pub const ANNOUNCE_RECV_BUFFER: usize = 2048;

/// Most architectures in one announcement. pacman hosts have one or two plus `any`.
pub const MAX_ANNOUNCE_ARCHS: usize = 16;

/// Longest architecture name anywhere (pacman.conf, requests, announcements): `x86_64_v3`,
/// `armv7h`, `pentium4` are all under 12 bytes. With `MAX_ANNOUNCE_ARCHS` it keeps every
/// valid hello under `MAX_ANNOUNCE_BYTES`.
pub const MAX_ARCH_NAME: usize = 24;

/// Longest repository name anywhere: Arch's are under 20 bytes (`core-testing`,
/// `multilib-staging`); third-party ones a little longer.
pub const MAX_REPO_NAME: usize = 64;

/// Longest package file name in a request: the limit of a file name on Linux filesystems.
pub const MAX_FILE_NAME: usize = 255;

/// Default `--multicast-interval`: how often a hello is repeated. Peers also answer a query
/// at once, so a new host finds the others in a round trip; the interval only bounds how
/// long a peer that vanished without a goodbye is still asked (see
/// `MISSED_HELLOS_BEFORE_EXPIRY`). The 2013 pacserve used 300 s; multipkg expires after 60 s.
pub const MULTICAST_INTERVAL_DEFAULT: Duration = Duration::from_secs(60);

/// Shortest accepted multicast interval: below one hello a second pacserve becomes noise.
pub const MULTICAST_INTERVAL_MIN: Duration = Duration::from_secs(1);

/// Default multicast TTL: 1 keeps announcements on the local link, which is where peers
/// that can serve packages quickly are, and matches the kernel's default.
pub const MULTICAST_TTL_DEFAULT: u32 = 1;

/// Interfaces one discovery socket may join the group on. Linux allows 20 memberships per
/// socket by default (net.ipv4.igmp_max_memberships).
pub const MAX_MULTICAST_INTERFACES: usize = 20;

/// A discovered peer is forgotten after this many intervals without a hello: one lost
/// datagram must not drop a healthy peer, and a dead one costs peer timeouts meanwhile.
pub const MISSED_HELLOS_BEFORE_EXPIRY: u32 = 3;

/// Least time between two hellos sent in answer to queries. A query flood (even with forged
/// sources) then makes us send at most one datagram a second: we are no amplifier. A query
/// that arrives during the pause is answered when it ends.
pub const QUERY_ANSWER_MIN_GAP: Duration = Duration::from_secs(1);

/// Most addresses a hello lists (`addrs=`): the sender's unique-local and global IPv6
/// addresses, so that a receiver that heard it from a link-local address can reach it without
/// a zone. A host has one or two per LAN; a hello that would grow past `MAX_ANNOUNCE_BYTES`
/// (many architectures) lists fewer.
pub const MAX_ANNOUNCE_ADDRS: usize = 4;

/// An answer to a query waits a random time in this range (as mDNS answers shared records,
/// RFC 6762 §6), so that the answers of a whole LAN do not arrive as one burst, and queries
/// heard meanwhile (the same querier on its other address family, other hosts starting at
/// the same moment) are answered by the same hello.
pub const ANSWER_JITTER_MIN: Duration = Duration::from_millis(20);
pub const ANSWER_JITTER_MAX: Duration = Duration::from_millis(120);

/// The query a starting pacserve sends waits a random time up to this after its first hello;
/// a query from another host heard meanwhile makes it unnecessary (the answers to that one
/// are multicast and reach this host too, RFC 6762 §7.3), so a LAN starting at once sends a
/// few queries, not one per host.
pub const QUERY_DELAY_MAX: Duration = Duration::from_millis(100);

/// How long a querier (its instance id) counts as answered: its query arrives once per
/// address family within milliseconds, and one answer does for both.
pub const ANSWERED_MEMORY: Duration = Duration::from_secs(2);

/// Queriers remembered as answered at once; a flood of forged queries only pushes out the
/// oldest (each of which then costs at most one merged, rate-limited answer).
pub const MAX_ANSWERED: usize = 256;

/// Peers (instance ids) whose address families are remembered, to know which families the
/// periodic hello needs; beyond it the oldest are forgotten. Twice the peer table: forged
/// hellos that never make it into the table take room here too.
pub const MAX_HEARD_INSTANCES: usize = 2 * MAX_PEERS;

/// Backlog of the listening socket: as many connections as may be open at once can wait to be
/// accepted (the kernel caps it at net.core.somaxconn).
pub const LISTEN_BACKLOG: i32 = MAX_CONNECTIONS as i32;

/// A start-up query that could not be sent on a family (at boot an IPv6 link-local address
/// stays tentative for about a second, and nothing can be sent from it) is sent again after
/// this pause, at most this many times: five seconds cover slow duplicate address detection.
pub const STARTUP_QUERY_RETRY_PAUSE: Duration = Duration::from_secs(1);
pub const STARTUP_QUERY_RETRIES: u32 = 5;

/// Time one announcement may wait for room in the socket's send buffer.
pub const ANNOUNCE_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause after a failed receive (ENOMEM and the like), so that a persistent error does not
/// spin the discovery task.
pub const DISCOVERY_RECV_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Longest accepted multicast interval. A peer that vanished without a goodbye is asked for
/// `MISSED_HELLOS_BEFORE_EXPIRY` intervals; longer than 3 hours is never what anyone wants.
pub const MULTICAST_INTERVAL_MAX: Duration = Duration::from_secs(3600);

/// Lookups kept for the status page.
pub const RECENT_LOOKUPS: usize = 30;

/// Skipped copies (a peer's or this host's copy that is not the file the sync database
/// describes) kept for the status page.
pub const RECENT_SKIPPED: usize = 30;

/// After a peer without the package's `.sig` says it has the package, how long other peers
/// may still offer both. Healthy LAN peers answer within a millisecond or two; waiting the
/// whole `--peer-timeout` would let one hung peer delay every such hit.
pub const SIG_GRACE: Duration = Duration::from_millis(25);

/// Most threads running the executor (one per core up to this). Serving is mostly sendfile
/// in the kernel; beyond a few threads they only cost memory on small boards.
pub const MAX_EXECUTOR_THREADS: usize = 4;

/// How long an opened cache file is reused without looking at the disk again. pacman asks
/// for a package and then its `.sig` (or HEAD then GET) within this; a replaced file is
/// seen after it.
pub const OPEN_CACHE_TTL: Duration = Duration::from_secs(2);

/// Most open cache files kept for reuse: bounds the descriptors they hold.
pub const OPEN_CACHE_MAX: usize = 128;

/// Stack of each extra executor thread. Tasks keep their state on the heap; the threads need
/// little stack, and small boards have little memory.
pub const EXECUTOR_STACK_BYTES: usize = 256 * 1024;

/// Largest `/proc` file read (fib_trie, if_inet6, hostname: a few KiB): only guards against a
/// kernel or a bind mount handing us something endless.
pub const MAX_PROC_FILE_BYTES: u64 = 1024 * 1024;

/// How long `pacserve pacsrv` waits to see whether a pacserve listens on localhost before it
/// runs pacman unchanged; a local listener answers a connect at once.
pub const PACSRV_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Shortest and longest time an option in seconds may give (`--peer-timeout`,
/// `--multicast-interval`): below 10 ms nothing on a network finishes, above a day is a typo.
pub const MIN_OPTION_TIME: Duration = Duration::from_millis(10);
pub const MAX_OPTION_TIME: Duration = Duration::from_secs(86_400);

/// Longest a SIGHUP reload may take to read pacman.conf (and its Includes) before the old
/// configuration is kept: local files read in milliseconds; this only bounds a hung NFS.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Repeated error lines from one place: at most `LOG_BURST` per `LOG_WINDOW`, then counted
/// (a flood of refused connections once wrote 381,000 lines in 40 s).
pub const LOG_BURST: u32 = 5;
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Pause after a failed accept (EMFILE, ENFILE, ENOBUFS): the error lasts until some
/// connection closes, so trying again at once would only spin the accept loop.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// `Retry-After` of the 503 sent over `MAX_CONNECTIONS`: slots free up as soon as downloads
/// end, and pacman moves on to its next server anyway, so a client need not wait long.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long start and reload may spend looking up the names in Server lines that carry
/// pacserve's own port (to recognise a name for this host), all at once, and how many such
/// names are looked up at most. A name not resolved in time is taken as not this host; the
/// hop rule (requests from a pacserve are answered locally) keeps even that from looping.
pub const NAME_RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
pub const MAX_RESOLVED_NAMES: usize = 32;

/// Largest sync database file read (as it lies in DBPath/sync, compressed or not). Arch's
/// extra, the largest official one (about 15,000 packages), is a few MB gzipped and about
/// 35 MB as a plain tar; 64 MiB is well above either and stops a runaway file early.
pub const MAX_DB_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Most bytes of tar one database may inflate to. Bounds the work of a gzip bomb (deflate
/// expands up to about 1000:1) the way [`MAX_DB_FILE_BYTES`] bounds a plain tar; a real
/// database of 15,000 packages is about 35 MB.
pub const MAX_DB_TAR_BYTES: u64 = 256 * 1024 * 1024;

/// Most packages in one database's index: four times Arch's extra. It bounds the index's
/// memory even for a hostile database, at most 65,536 × (48 + 255) bytes, about 19 MiB; a
/// real one of 15,000 packages costs about 1.4 MiB.
pub const MAX_DB_PACKAGES: usize = 65_536;

/// Most tar entries in one database: each package has two (its folder and its `desc`), and
/// an archiver may add an extended header to either.
pub const MAX_DB_TAR_ENTRIES: usize = 4 * MAX_DB_PACKAGES;

/// Largest `desc` file collected whole for parsing. repo-add writes 0.5–4 KiB; the biggest
/// in Arch (long `%PROVIDES%` or `%DEPENDS%` lists, an embedded `%PGPSIG%`) stay far below
/// this. A larger one fails the database rather than silently leaving its package out.
pub const MAX_DESC_BYTES: usize = 256 * 1024;

/// Most `%KEY%` blocks in one `desc`: repo-add writes at most about 25 different keys. The
/// duplicate check compares each key with those before it, so this also bounds its work.
pub const MAX_DESC_KEYS: usize = 64;

/// Largest pax extended header (`x`) or GNU long name (`L`) collected in a database: bsdtar
/// writes one only for a path over 100 bytes or odd metadata, a few hundred bytes at most.
pub const MAX_TAR_EXTENDED_BYTES: usize = 64 * 1024;

/// Longest FNAME or FCOMMENT in a gzip header: repo-add's `gzip -n` writes neither, plain
/// gzip writes the file name (at most 255 bytes on Linux). They are skipped, never kept;
/// the limit only stops a header that never ends from being read as one.
pub const MAX_GZIP_HEADER_TEXT: usize = 4096;

/// Bytes read from a database file at once, and the buffer the inflated bytes go to: large
/// enough that a 35 MB tar takes about a thousand reads, small next to the inflate state's
/// own 32 KiB window. Both are freed when the load ends.
pub const DB_READ_CHUNK: usize = 64 * 1024;
pub const DB_INFLATE_CHUNK: usize = 32 * 1024;

/// Reads of a database in a row that a signal may interrupt before the load gives up: a
/// regular file practically never returns EINTR; this only keeps the retry loop bounded.
pub const MAX_INTERRUPTED_READS: usize = 16;

/// Bytes read at a time while hashing a cached package.
pub const HASH_CHUNK: usize = 256 * 1024;

/// Largest package whose SHA-256 a request waits for when it is not known yet (it is hashed
/// in the background otherwise): 64 MiB take about 40 ms with SHA instructions and about half
/// a second on a Raspberry Pi 4 without them, well inside pacman's patience.
pub const HASH_INLINE_MAX: u64 = 64 * 1024 * 1024;

/// Cached files whose SHA-256 is remembered (about 100 bytes each).
pub const MAX_REMEMBERED_HASHES: usize = 65_536;

/// How often the sync databases are looked at again (pacman -Sy rewrites them) and the
/// background hashing of cached packages takes another step.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(2);

/// Cached packages hashed per upkeep step, one after the other: the sweep finishes a large
/// cache in the background without hogging the disk or the CPU.
pub const SWEEP_FILES_PER_ROUND: usize = 4;

/// Cached packages hashed at once.
pub const MAX_HASHING: usize = 2;

/// Largest package a peer's question waits for the hash of (an answer carries its SHA-256):
/// 8 MiB take about 5 ms with SHA instructions, under 100 ms on a Raspberry Pi 4, well
/// inside the asker's peer timeout; a larger one is hashed in the background and its SHA-256
/// told from the next question on.
pub const HASH_PEER_WAIT_MAX: u64 = 8 * 1024 * 1024;

/// Default `--hub-interval`: how often the hub polls its peers' listings. An unchanged
/// listing costs a 304; a file a peer asked for brings the next poll forward.
pub const HUB_INTERVAL_DEFAULT: Duration = Duration::from_secs(60);

/// Most pulls at once (`--hub-pulls`): one or two keep a board's disk busy.
pub const HUB_MAX_PULLS: usize = 8;

/// Most versions of one package the hub may be told to keep (`--hub-keep`).
pub const HUB_MAX_KEEP: usize = 100;

/// A partial pull this old (by its last write) is removed at start instead of resumed:
/// the version it was is likely gone from the LAN.
pub const HUB_STALE_PARTIAL: Duration = Duration::from_secs(24 * 3600);

/// Time to connect to a peer for a listing or a pull: peers are on the LAN.
pub const HUB_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Time one read or write of a listing or a pull may make no progress before the peer is
/// given up for this round (what came stays for a resume).
pub const HUB_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest peer listing read: `NAME SIZE` lines of about 60 bytes; 32 MiB is half a million
/// files.
pub const HUB_MAX_LISTING_BYTES: u64 = 32 * 1024 * 1024;

/// Largest file size a peer's listing may give (a larger entry is skipped): no package
/// comes near 1 TiB, and the sums of such sizes in the budget and free-space checks cannot
/// overflow.
pub const HUB_MAX_FILE_BYTES: u64 = 1 << 40;

/// Bytes read from a peer and written at a time by a pull.
pub const HUB_PULL_CHUNK: usize = 256 * 1024;

/// Chunks of a pull in hand at once: read and written on one thread while the ones before
/// are hashed on another (so at most this many chunks of memory per pull).
pub const HUB_PULL_BUFFERS: usize = 3;

/// Stack of a pull's hashing thread (SHA-256 needs a few hundred bytes of it).
pub const HUB_HASH_STACK: usize = 64 * 1024;

/// Every this many bytes written, a pull asks the kernel to start writing them to disk, so
/// the sync before the rename finds little left to do.
pub const HUB_WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

/// Files peers asked for and the hub lacked, remembered to be pulled once a peer holds
/// them, and for how long: the asking host fetches the file from a mirror within minutes.
pub const HUB_MAX_MISSED: usize = 256;
pub const HUB_MISSED_TTL: Duration = Duration::from_secs(15 * 60);

/// After a miss, the next poll comes this much later (the asking host is downloading the
/// file from a mirror meanwhile), not a whole interval; and again so while files missed
/// are still to be pulled (at most [`HUB_MISSED_TTL`]).
pub const HUB_MISS_DELAY: Duration = Duration::from_secs(3);

/// A peer that served a wrong copy of a file is not asked for that file again for this long.
pub const HUB_WRONG_COPY_BACKOFF: Duration = Duration::from_secs(3600);

/// Most (peer, file) pairs remembered as wrong copies.
pub const HUB_MAX_AVOIDED: usize = 1024;

/// Files evicted for room, remembered so they are not pulled again at once (only a miss
/// brings one back).
pub const HUB_MAX_FORGOTTEN: usize = 4096;

/// Recent pulls and evictions kept for the status page.
pub const HUB_RECENT: usize = 20;

/// Peers whose failed pulls are counted for the status page.
pub const HUB_MAX_FAILING_PEERS: usize = 64;
/// How far a signed datagram's or request's timestamp may be from this host's clock, either
/// way, and still be taken: enough for clocks that NTP keeps within a second and for a
/// datagram that queued a while; short enough that a capture is soon worthless. A message
/// can be replayed only inside it, so the replay caches remember messages this long.
pub const AUTH_WINDOW: Duration = Duration::from_secs(120);

/// Signed messages remembered against replay, in each of the two caches (datagrams, and
/// requests between pacserves), about 16 bytes each. A LAN of 256 peers announcing every
/// 60 s sends about 1000 datagrams per window; lookups ask each peer once per package. When
/// full, the oldest is dropped and nothing older is taken any more, so nothing forgotten can
/// be replayed.
pub const MAX_REPLAY_ENTRIES: usize = 4096;

/// Largest key file read: one key, 65 bytes as `pacserve gen-secret` writes it.
pub const MAX_SECRET_FILE_BYTES: usize = 4096;

/// A key file of hex digits needs this many (256 bits); anything else is taken byte for byte
/// and needs `MIN_SECRET_RAW_BYTES`. HMAC-SHA-256 gains nothing from more than 32 random
/// bytes, and fewer make a guessable key.
pub const MIN_SECRET_HEX_DIGITS: usize = 64;
pub const MIN_SECRET_RAW_BYTES: usize = 32;

/// Most `--secret-file` options: the signing key and the keys of a rotation in progress.
pub const MAX_SECRET_FILES: usize = 8;

/// Most `--allow` ranges.
pub const MAX_ALLOW_RANGES: usize = 64;

/// Addresses remembered as having proved that they hold the key (a signed request or hello),
/// so that pacman on those hosts, redirected here by its own pacserve, is answered: at most
/// this many (only key holders can add one), each for `PROVEN_CLIENT_TTL` after its last
/// proof. pacman follows a redirect within milliseconds, and a peer's answers are
/// remembered for seconds, so ten minutes is ample.
pub const MAX_PROVEN_CLIENTS: usize = 1024;
pub const PROVEN_CLIENT_TTL: Duration = Duration::from_secs(600);
