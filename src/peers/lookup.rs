//! Asking the LAN (I/O): which peer holds a package? All live peers are asked in parallel on their
//! peer route (which answers from its own cache only, so queries never recurse); answers are
//! cached briefly and identical concurrent lookups share one round of queries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::lock::OnceCell;

use crate::error::local_shortage;
use crate::http::client::ask_peer;
use crate::limits::{MAX_CACHED_ANSWERS, NEGATIVE_ANSWER_TTL, POSITIVE_ANSWER_TTL, SIG_GRACE};
use crate::peers::table::{PeerAddr, PeerTable, Source};
use crate::sys::budget;

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
    answers: Mutex<HashMap<String, Entry>>,
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
            answers: Mutex::new(HashMap::new()),
        }
    }

    pub fn table(&self) -> &Arc<Mutex<PeerTable>> {
        &self.table
    }

    /// The peer to send pacman to for the file a peer answers for on `path` (its peer
    /// route, which answers from its own cache only), if any holds it.
    pub async fn find(&self, path: &str) -> Answer {
        let key = path.to_string();
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
        cell.get_or_init(|| self.ask_all(path)).await.clone()
    }

    /// The peer at `host` asked us for the file of `path`: so it does not hold it, whatever
    /// a remembered answer says. Forget such an answer at once (stale answers on two hosts
    /// that name each other would otherwise send pacman back and forth until they expire).
    pub fn forget_holder(&self, path: &str, host: std::net::IpAddr) {
        let mut answers = crate::lock(&self.answers);
        let wrong = answers.get(path).is_some_and(
            |e| matches!(e.cell.get(), Some(Some(hit)) if hit.peer.host.parse() == Ok(host)),
        );
        if wrong {
            answers.remove(path);
        }
    }

    /// Ask every askable peer at once; each answer or failure also updates its backoff.
    async fn ask_all(&self, path: &str) -> Answer {
        let peers = crate::lock(&self.table).askable(Instant::now());
        if peers.is_empty() {
            return None;
        }
        let (tx, rx) = smol::channel::bounded(peers.len());
        for peer in peers {
            let proven = crate::lock(&self.table)
                .get(&peer)
                .is_some_and(|p| p.last_answer.is_some() || p.source == Source::Static);
            // Out of outgoing connections: this peer is not asked this time (and not held
            // responsible); the others, and the mirrors, still are.
            let Some(permit) = budget::try_outgoing() else {
                crate::verbose!("peer {peer} not asked: outgoing connections all in use");
                continue;
            };
            let tx = tx.clone();
            let table = self.table.clone();
            let path = path.to_string();
            let timeout = self.timeout;
            // Detached: a slow peer's answer still updates its backoff after we have moved on.
            crate::sys::rt::spawn(async move {
                let asked = ask_peer(&peer.host, peer.port, &path, timeout).await;
                drop(permit);
                let answer = match asked {
                    Ok((200, has_sig)) => {
                        crate::lock(&table).succeeded(&peer, Instant::now());
                        Some(PeerHit {
                            peer,
                            has_sig,
                            proven,
                        })
                    }
                    Ok((404, _)) => {
                        crate::lock(&table).succeeded(&peer, Instant::now());
                        None
                    }
                    Ok((status, _)) => {
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
