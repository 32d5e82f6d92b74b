//! Asking the LAN (I/O): which peer holds a package? All live peers are asked in parallel on
//! their peer route (which answers from its own cache only, so queries never recurse);
//! answers are cached briefly and identical concurrent lookups share one round of queries.
//!
//! A copy is used only when it can be the right one: when this host's sync database knows
//! the file, a peer whose copy has another size, or another SHA-256 when it says, is skipped
//! (and remembered for the status page), and a peer of another architecture is used for an
//! `any` package only when its SHA-256 matches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::lock::OnceCell;

use crate::auth::Lan;
use crate::error::local_shortage;
use crate::http::client::ask_peer;
use crate::limits::{
    MAX_CACHED_ANSWERS, NEGATIVE_ANSWER_TTL, POSITIVE_ANSWER_TTL, RECENT_SKIPPED, SIG_GRACE,
};
use crate::peers::table::{PeerAddr, PeerTable, Source};
use crate::sys::budget;

/// What the requester knows the file must be, from its own sync database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub size: u64,
    pub sha256: Option<[u8; 32]>,
}

/// What is asked for: the peer route's path, the architecture of the request, whether the
/// file is an `any` package, and what it must be when that is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub path: String,
    pub arch: String,
    pub any_arch: bool,
    pub want: Option<Want>,
}

/// Why a peer's copy was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// Its size is not the sync database's.
    Size { want: u64, got: u64 },
    /// Its SHA-256 (as the peer says) is not the sync database's.
    Sha256,
    /// A peer of another architecture, for an `any` package that cannot be checked here
    /// (no SHA-256 known on one side): not a wrong copy, only one we may not trust.
    Unverified,
}

impl Mismatch {
    pub fn as_str(self) -> &'static str {
        match self {
            Mismatch::Size { .. } => "size",
            Mismatch::Sha256 => "sha256",
            Mismatch::Unverified => "unverified",
        }
    }
}

/// Whether a peer's answer (`length`, `sha256`, and the architectures it announced) is a copy
/// pacman may be sent to for `q`. Pure.
pub fn judge(
    q: &Query,
    peer_archs: &[String],
    length: Option<u64>,
    sha256: Option<[u8; 32]>,
) -> Result<(), Mismatch> {
    if let Some(want) = q.want {
        if let Some(got) = length.filter(|got| *got != want.size) {
            return Err(Mismatch::Size {
                want: want.size,
                got,
            });
        }
        if let (Some(w), Some(g)) = (want.sha256, sha256) {
            if w != g {
                return Err(Mismatch::Sha256);
            }
        }
    }
    // A peer that announced its architectures, none of them this request's: only a checked
    // `any` package is the same file there.
    let foreign = !peer_archs.is_empty() && !peer_archs.contains(&q.arch);
    if foreign {
        let checked = q.any_arch
            && matches!((q.want.and_then(|w| w.sha256), sha256), (Some(w), Some(g)) if w == g);
        if !checked {
            return Err(Mismatch::Unverified);
        }
    }
    Ok(())
}

/// A copy skipped because it was not the one the sync database describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub peer: PeerAddr,
    /// The peer route's path asked.
    pub path: String,
    pub why: Mismatch,
    /// Seconds since the epoch.
    pub at: u64,
}

/// A peer that holds the file, and whether it also holds the file's `.sig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerHit {
    pub peer: PeerAddr,
    pub has_sig: bool,
    /// The peer had answered lookups before this one (a static peer, or a discovered one
    /// that has proved itself), as opposed to one just heard of.
    pub proven: bool,
}

impl PeerHit {
    /// Higher is better: a proven peer before a new one, then one with the `.sig`.
    fn rank(&self) -> (bool, bool) {
        (self.proven, self.has_sig)
    }

    /// Nothing can beat it: no need to wait for the others.
    fn best_possible(&self) -> bool {
        self.rank() == (true, true)
    }
}

type Answer = Option<PeerHit>;

struct Entry {
    cell: Arc<OnceCell<Answer>>,
    created: Instant,
}

impl Entry {
    /// A finished answer past its time-to-live; an unfinished one is always shared.
    fn expired(&self, now: Instant) -> bool {
        let age = now.saturating_duration_since(self.created);
        match self.cell.get() {
            None => false,
            Some(Some(_)) => age > POSITIVE_ANSWER_TTL,
            Some(None) => age > NEGATIVE_ANSWER_TTL,
        }
    }
}

pub struct PeerLookup {
    table: Arc<Mutex<PeerTable>>,
    timeout: Duration,
    /// The shared secret that signs every query, if any.
    lan: Option<Arc<Lan>>,
    answers: Mutex<HashMap<String, Entry>>,
    /// The last skipped copies, newest last, and how many by reason (size, sha256).
    skipped: Arc<Mutex<SkippedCopies>>,
}

/// Copies skipped for not being the file the sync database describes.
#[derive(Debug, Default)]
pub struct SkippedCopies {
    pub recent: std::collections::VecDeque<Skipped>,
    pub by_size: u64,
    pub by_sha256: u64,
}

impl SkippedCopies {
    fn note(&mut self, s: Skipped) {
        match s.why {
            Mismatch::Size { .. } => self.by_size += 1,
            Mismatch::Sha256 => self.by_sha256 += 1,
            Mismatch::Unverified => return,
        }
        if self.recent.len() == RECENT_SKIPPED {
            self.recent.pop_front();
        }
        self.recent.push_back(s);
    }
}

/// Which answer wins: a peer that has answered before over one just discovered (a stranger
/// announcing itself never wins over a peer that served this host), then one that also
/// holds the signature, then the first.
pub fn better(current: &Answer, candidate: &PeerHit) -> bool {
    match current {
        None => true,
        Some(hit) => candidate.rank() > hit.rank(),
    }
}

impl PeerLookup {
    pub fn new(table: Arc<Mutex<PeerTable>>, timeout: Duration) -> PeerLookup {
        PeerLookup {
            table,
            timeout,
            lan: None,
            answers: Mutex::new(HashMap::new()),
            skipped: Arc::default(),
        }
    }

    /// Sign every query with the shared secret of `lan`.
    pub fn signed_by(mut self, lan: Option<Arc<Lan>>) -> PeerLookup {
        self.lan = lan;
        self
    }

    pub fn table(&self) -> &Arc<Mutex<PeerTable>> {
        &self.table
    }

    /// Skipped copies so far (newest last) and their counts: (recent, by size, by sha256).
    pub fn skipped(&self) -> (Vec<Skipped>, u64, u64) {
        let s = crate::lock(&self.skipped);
        (s.recent.iter().cloned().collect(), s.by_size, s.by_sha256)
    }

    /// The peer to send pacman to for `q` (asked on its peer route, which answers from the
    /// peer's own cache only), if any holds a copy that can be the right one.
    pub async fn find(&self, q: &Query) -> Answer {
        // What the file must be is part of the question: when the database changes, an
        // answer remembered for the old checksum is not the answer any more.
        let key = match q.want.and_then(|w| w.sha256) {
            Some(sha) => format!("{} {}", q.path, crate::names::sha256_hex(&sha)),
            None => q.path.clone(),
        };
        let cell = {
            let now = Instant::now();
            let mut answers = crate::lock(&self.answers);
            match answers.get(&key) {
                Some(e) if !e.expired(now) => e.cell.clone(),
                _ => {
                    if answers.len() >= MAX_CACHED_ANSWERS {
                        answers.retain(|_, e| !e.expired(now));
                        if answers.len() >= MAX_CACHED_ANSWERS {
                            answers.retain(|_, e| e.cell.get().is_none());
                        }
                    }
                    let cell = Arc::new(OnceCell::new());
                    answers.insert(
                        key,
                        Entry {
                            cell: cell.clone(),
                            created: now,
                        },
                    );
                    cell
                }
            }
        };
        cell.get_or_init(|| self.ask_all(q)).await.clone()
    }

    /// The peer at `host` asked us for the file of `path`: so it does not hold it, whatever
    /// a remembered answer says. Forget such an answer at once (stale answers on two hosts
    /// that name each other would otherwise send pacman back and forth until they expire).
    pub fn forget_holder(&self, path: &str, host: std::net::IpAddr) {
        let mut answers = crate::lock(&self.answers);
        // Keyed by the path, or the path and a checksum after a space.
        answers.retain(|key, e| {
            let same_file = key.split(' ').next() == Some(path);
            !(same_file && matches!(e.cell.get(), Some(Some(hit)) if hit.peer.ip() == Some(host)))
        });
    }

    /// Ask every askable peer at once; each answer or failure also updates its backoff.
    async fn ask_all(&self, q: &Query) -> Answer {
        let peers = crate::lock(&self.table).askable(Instant::now());
        if peers.is_empty() {
            return None;
        }
        let (tx, rx) = smol::channel::bounded(peers.len());
        let mut not_asked = 0;
        for peer in peers {
            let (proven, archs) = match crate::lock(&self.table).get(&peer) {
                Some(p) => (
                    p.last_answer.is_some() || p.source == Source::Static,
                    p.archs.clone(),
                ),
                None => continue,
            };
            // Out of outgoing connections: this peer is not asked this time (and not held
            // responsible); the others, and the mirrors, still are.
            let Some(permit) = budget::try_outgoing() else {
                not_asked += 1;
                continue;
            };
            let tx = tx.clone();
            let table = self.table.clone();
            let skipped = self.skipped.clone();
            let q = q.clone();
            let timeout = self.timeout;
            let auth = self.lan.as_ref().map(|l| l.sign_request("HEAD", &q.path));
            // Detached: a slow peer's answer still updates its backoff after we have moved on.
            crate::sys::rt::spawn(async move {
                let asked =
                    ask_peer(&peer.host, peer.port, &q.path, timeout, auth.as_deref()).await;
                drop(permit);
                let answer = match asked {
                    Ok(a) if a.status == 200 => {
                        crate::lock(&table).succeeded(&peer, Instant::now());
                        match judge(&q, &archs, a.length, a.sha256) {
                            Ok(()) => Some(PeerHit {
                                peer,
                                has_sig: a.has_sig,
                                proven,
                            }),
                            Err(why) => {
                                crate::verbose!("peer {peer}: {}: copy skipped ({why:?})", q.path);
                                crate::lock(&skipped).note(Skipped {
                                    peer,
                                    path: q.path.clone(),
                                    why,
                                    at: unix_now(),
                                });
                                None
                            }
                        }
                    }
                    Ok(a) if a.status == 404 => {
                        crate::lock(&table).succeeded(&peer, Instant::now());
                        None
                    }
                    Ok(a) => {
                        let status = a.status;
                        crate::verbose!("peer {peer} answered {status}; backing off");
                        crate::lock(&table).failed(&peer, Instant::now());
                        None
                    }
                    Err(e) if local_shortage(&e) => {
                        crate::verbose!("peer {peer} not asked: {e} (on this host)");
                        None
                    }
                    Err(e) => {
                        match crate::lock(&table).failed(&peer, Instant::now()) {
                            Some(wait) => crate::verbose!(
                                "peer {peer} failed: {e}; next try in {}s",
                                wait.as_secs()
                            ),
                            None => crate::verbose!("peer {peer} failed: {e}"),
                        }
                        None
                    }
                };
                let _ = tx.send(answer).await;
            })
            .detach();
        }
        drop(tx);
        if not_asked > 0 {
            crate::verbose!(
                "{}: {not_asked} peer(s) not asked: outgoing connections all in use",
                q.path
            );
        }
        let mut best: Answer = None;
        // Once a peer has the package (but is new, or lacks the .sig), others get a short
        // grace to offer better, not the whole timeout: a hung peer must not hold up a hit.
        let mut grace_until: Option<Instant> = None;
        loop {
            let next = match grace_until {
                None => rx.recv().await.ok(),
                Some(until) => crate::sys::rt::until(until, rx.recv())
                    .await
                    .and_then(Result::ok),
            };
            // None: every task has answered (each bounded by `timeout`), or the grace ended.
            let Some(answer) = next else { break };
            if let Some(hit) = answer {
                if hit.best_possible() {
                    return Some(hit);
                }
                if better(&best, &hit) {
                    best = Some(hit);
                    grace_until.get_or_insert_with(|| Instant::now() + SIG_GRACE);
                }
            }
        }
        best
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::table::parse_peer_addr;

    fn hit(addr: &str, has_sig: bool, proven: bool) -> PeerHit {
        PeerHit {
            peer: parse_peer_addr(addr).unwrap(),
            has_sig,
            proven,
        }
    }

    #[test]
    fn judges_copies_against_the_sync_database() {
        let sha = [7u8; 32];
        let other = [8u8; 32];
        let q = |arch: &str, any: bool, want: Option<Want>| Query {
            path: "/peer/core/x86_64/f".into(),
            arch: arch.into(),
            any_arch: any,
            want,
        };
        let known = Some(Want {
            size: 100,
            sha256: Some(sha),
        });
        let size_only = Some(Want {
            size: 100,
            sha256: None,
        });
        let x86 = vec!["x86_64".to_string()];
        let arm = vec!["aarch64".to_string(), "any".to_string()];
        use Mismatch::*;
        type Case<'a> = (
            Query,
            &'a [String],
            Option<u64>,
            Option<[u8; 32]>,
            Result<(), Mismatch>,
        );
        let cases: &[Case<'_>] = &[
            // Nothing known here: today's rule, any copy of a same-arch peer.
            (q("x86_64", false, None), &x86, Some(5), None, Ok(())),
            (q("x86_64", false, None), &[], Some(5), None, Ok(())),
            // Known: size and (when the peer says) SHA-256 must match.
            (
                q("x86_64", false, known),
                &x86,
                Some(100),
                Some(sha),
                Ok(()),
            ),
            (q("x86_64", false, known), &x86, Some(100), None, Ok(())),
            (
                q("x86_64", false, known),
                &x86,
                Some(99),
                Some(sha),
                Err(Size { want: 100, got: 99 }),
            ),
            (
                q("x86_64", false, known),
                &x86,
                Some(100),
                Some(other),
                Err(Sha256),
            ),
            (
                q("x86_64", false, size_only),
                &x86,
                Some(100),
                Some(other),
                Ok(()),
            ),
            // Another architecture: only a checked `any` package.
            (q("x86_64", true, known), &arm, Some(100), Some(sha), Ok(())),
            (
                q("x86_64", true, known),
                &arm,
                Some(100),
                None,
                Err(Unverified),
            ),
            (
                q("x86_64", true, None),
                &arm,
                Some(100),
                Some(sha),
                Err(Unverified),
            ),
            (
                q("x86_64", false, known),
                &arm,
                Some(100),
                Some(sha),
                Err(Unverified),
            ),
            (
                q("x86_64", true, known),
                &arm,
                Some(100),
                Some(other),
                Err(Sha256),
            ),
        ];
        for (query, archs, len, got, want) in cases {
            assert_eq!(
                judge(query, archs, *len, *got),
                *want,
                "{query:?} {archs:?} {len:?}"
            );
        }
    }

    #[test]
    fn prefers_proven_peers_then_signatures() {
        let a = hit("10.0.0.1:1", false, true);
        let b = hit("10.0.0.2:1", true, true);
        assert!(better(&None, &a));
        assert!(better(&Some(a.clone()), &b));
        assert!(!better(&Some(b.clone()), &a));
        assert!(!better(&Some(a.clone()), &a));
        // A stranger, even one offering the .sig, never wins over a peer that answered.
        let stranger = hit("10.0.0.66:1", true, false);
        assert!(!better(&Some(a.clone()), &stranger));
        assert!(better(&Some(stranger.clone()), &a));
        assert!(b.best_possible() && !stranger.best_possible() && !a.best_possible());
    }
}
