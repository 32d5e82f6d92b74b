//! The hub (`--hub DIR`): an always-on pacserve that collects, over plain HTTP on the LAN,
//! the packages its peers already downloaded, and keeps them when those hosts are gone.
//! Its files are served like cache files (by [`crate::app`]), for any repository and
//! architecture.
//!
//! Every `--hub-interval` (sooner after a peer asked for a file the hub lacked) one round:
//! scan the directory ([`store`]), evict what [`retention`] says goes, poll each peer's
//! `/info` (a 304 when unchanged), [`plan`] what to pull, and pull it ([`pull`]), one or
//! two at a time, each checked before it is renamed into place. [`options`] is the command
//! line, [`package`] what a file name says, [`status`] the operator's view. This module is
//! the I/O shell around those: the loop, and what it remembers between rounds.

pub mod options;
pub mod order;
pub mod package;
pub mod plan;
pub mod pull;
pub mod retention;
pub mod status;
pub mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Instant, SystemTime};

use crate::app::local::Lookup;
use crate::app::verify::Verifier;
use crate::auth::Lan;
use crate::error::IoError;
use crate::limits::{
    HUB_MAX_AVOIDED, HUB_MAX_FAILING_PEERS, HUB_MAX_FORGOTTEN, HUB_MAX_MISSED, HUB_MISS_DELAY,
    HUB_MISSED_TTL, HUB_RECENT, HUB_WRONG_COPY_BACKOFF,
};
use crate::peers::table::{PeerAddr, PeerTable};
use crate::sys::budget;
use options::HubArgs;
use plan::{Offer, Pull, Wants};
use pull::{Failure, Job, Limiter};
use status::{EvictedView, FailuresView, HubView, PulledView, PullingView};
use store::{HeldFile, Store};

pub struct Hub {
    args: HubArgs,
    /// The LAN's key, when it has one: peers answer `/info` only to signed requests.
    lan: Option<Arc<Lan>>,
    store: Store,
    limiter: Limiter,
    state: Mutex<State>,
    /// A peer asked for a file the hub lacks: poll soon.
    wake: (Mutex<bool>, Condvar),
}

/// A pull under way: file, peer, size, bytes so far.
type Pulling = (String, String, u64, Arc<AtomicU64>);

/// What the hub remembers between rounds (the directory aside).
#[derive(Default)]
struct State {
    files: u64,
    bytes: u64,
    stopped: Option<String>,
    /// Files asked for on `/peer/` that the hub lacked, and when; oldest first.
    missed: Vec<(String, Instant)>,
    pulling: Vec<Pulling>,
    pulled: Vec<PulledView>,
    evicted: Vec<EvictedView>,
    failures: Vec<FailuresView>,
    /// (peer, file) that served a wrong copy, until when.
    avoid: Vec<(String, String, Instant)>,
    /// Files evicted for room.
    forgotten: Vec<String>,
    /// By peer (`host:port`): its listing's validator, and the files in it the hub lacked.
    listings: Listings,
    pulled_files: u64,
    pulled_bytes: u64,
    evicted_files: u64,
    evicted_bytes: u64,
    failed_pulls: u64,
    wrong_copies: u64,
}

struct Listing {
    etag: Option<String>,
    offers: Vec<(Box<str>, u64)>,
}

/// The listings by peer: a few, so a list.
#[derive(Default)]
struct Listings(Vec<(String, Listing)>);

impl Listings {
    fn get(&self, peer: &str) -> Option<&Listing> {
        self.0.iter().find(|(p, _)| p == peer).map(|(_, l)| l)
    }

    fn get_mut(&mut self, peer: &str) -> Option<&mut Listing> {
        self.0.iter_mut().find(|(p, _)| p == peer).map(|(_, l)| l)
    }

    fn insert(&mut self, peer: String, listing: Listing) {
        self.remove(&peer);
        self.0.push((peer, listing));
    }

    fn remove(&mut self, peer: &str) {
        self.0.retain(|(p, _)| p != peer);
    }
}

/// One round's work, shared by its pull workers.
struct Round {
    peers: Vec<PeerAddr>,
    /// What the directory holds, kept up to date through the round.
    held: Mutex<Vec<HeldFile>>,
    /// What is left to pull, the next last.
    queue: Mutex<Vec<Pull>>,
    /// Why pulls stopped in this round.
    stop: Mutex<Option<String>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The bytes of `held`.
fn held_bytes(held: &[HeldFile]) -> u64 {
    let mut n = 0;
    for h in held {
        n += h.size;
    }
    n
}

/// Push onto a ring of at most `cap`.
fn ring<T>(q: &mut Vec<T>, cap: usize, item: T) {
    if q.len() == cap {
        q.remove(0);
    }
    q.push(item);
}

impl Hub {
    /// Take the directory (blocking: at start, before the first request).
    pub fn open(args: HubArgs, lan: Option<Arc<Lan>>) -> Result<Hub, IoError> {
        let store = Store::open(&args.dir)?;
        Ok(Hub {
            lan,
            limiter: Limiter::new(args.rate),
            args,
            store,
            state: Mutex::default(),
            wake: (Mutex::new(false), Condvar::new()),
        })
    }

    pub fn dir(&self) -> &std::path::Path {
        self.store.dir()
    }

    /// `file` from the hub, to be sent (blocking).
    pub fn serve(&self, file: &str) -> Lookup {
        self.store.serve(file)
    }

    /// A peer asked for `file` and the hub lacks it: pull it as soon as a peer holds it.
    pub fn missed(&self, file: &str) {
        if package::parse(file).is_none_or(|p| p.sig) {
            return;
        }
        let mut st = crate::lock(&self.state);
        if st.missed.iter().any(|(f, _)| f == file) {
            return;
        }
        ring(
            &mut st.missed,
            HUB_MAX_MISSED,
            (file.to_string(), Instant::now()),
        );
        drop(st);
        *crate::lock(&self.wake.0) = true;
        self.wake.1.notify_one();
    }

    /// The status page's view.
    pub fn view(&self) -> HubView {
        let st = crate::lock(&self.state);
        let mut pulling = Vec::new();
        for (file, peer, total, done) in &st.pulling {
            pulling.push(PullingView {
                file: file.clone(),
                peer: peer.clone(),
                done: done.load(Ordering::Relaxed),
                total: *total,
            });
        }
        // Newest first.
        let mut pulled = st.pulled.clone();
        pulled.reverse();
        let mut evicted = st.evicted.clone();
        evicted.reverse();
        HubView {
            dir: self.store.dir().display().to_string(),
            files: st.files,
            bytes: st.bytes,
            max_bytes: self.args.max_size,
            keep: self.args.keep,
            archs: self.args.archs.clone(),
            min_free_percent: self.args.min_free,
            space: self.store.space(),
            stopped: st.stopped.clone(),
            missed: st.missed.len(),
            pulling,
            pulled,
            evicted,
            failures: st.failures.clone(),
            pulled_files: st.pulled_files,
            pulled_bytes: st.pulled_bytes,
            evicted_files: st.evicted_files,
            evicted_bytes: st.evicted_bytes,
            failed_pulls: st.failed_pulls,
            wrong_copies: st.wrong_copies,
        }
    }

    /// The hub, forever: a round now, then one every interval; soon after a miss, and
    /// while files missed are still to be pulled, one every [`HUB_MISS_DELAY`] (their
    /// askers are downloading them meanwhile; an unchanged listing costs a 304).
    /// Blocking: it runs on a thread of its own, so that its disk and socket work never
    /// waits for the executor, nor the executor for it.
    pub fn run(self: Arc<Self>, peers: Arc<Mutex<PeerTable>>, verify: Arc<Verifier>) {
        loop {
            self.round(&peers, &verify);
            let waiting = !crate::lock(&self.state).missed.is_empty();
            let wait = match waiting {
                true => HUB_MISS_DELAY.min(self.args.interval),
                false => self.args.interval,
            };
            let (woken, bell) = &self.wake;
            let rung = *bell
                .wait_timeout_while(crate::lock(woken), wait, |rung| !*rung)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            if rung {
                std::thread::sleep(HUB_MISS_DELAY);
                *crate::lock(woken) = false;
            }
        }
    }

    fn round(&self, table: &Mutex<PeerTable>, verify: &Verifier) {
        let peers = crate::lock(table).askable(Instant::now());
        let held = self.store.scan();
        let round = Round {
            peers,
            held: Mutex::new(held),
            queue: Mutex::default(),
            stop: Mutex::default(),
        };
        self.recount(&round);
        self.evict(&round, 0);
        crate::lock(&self.state)
            .listings
            .0
            .retain(|(k, _)| round.peers.iter().any(|p| p.authority() == *k));
        for peer in &round.peers {
            self.poll(peer, &round);
        }
        let mut queue = self.plan(&round);
        queue.reverse();
        *crate::lock(&round.queue) = queue;
        std::thread::scope(|scope| {
            for _ in 0..self.args.pulls {
                scope.spawn(|| self.worker(&round, verify));
            }
        });
        crate::lock(&self.state).stopped = crate::lock(&round.stop).take();
    }

    /// The held counts for the status page.
    fn recount(&self, round: &Round) {
        let held = crate::lock(&round.held);
        let mut st = crate::lock(&self.state);
        st.files = held.len() as u64;
        st.bytes = held_bytes(&held);
    }

    /// Remove what retention says goes, `incoming` bytes to come beside the pulls under way.
    fn evict(&self, round: &Round, incoming: u64) {
        let mut gone: Vec<(Vec<String>, u64, retention::Why)> = Vec::new();
        {
            let held = crate::lock(&round.held);
            // Read with the files held: a stored file leaves the pulls under way in the
            // step that counts it held.
            let under_way: u64 = crate::lock(&self.state).pulling.iter().map(|x| x.2).sum();
            let mut files: Vec<retention::Held<'_>> = Vec::with_capacity(held.len());
            for h in held.iter() {
                files.push(retention::Held {
                    file: &h.file,
                    size: h.size,
                    used: h.used,
                    busy: self.store.busy(&h.file),
                });
            }
            let keep = self.args.keep;
            let max = self.args.max_size;
            for e in retention::evictions(&files, keep, max, incoming, under_way) {
                let mut names = Vec::new();
                for f in e.files {
                    names.push(f.to_string());
                }
                gone.push((names, e.bytes, e.why));
            }
        }
        if gone.is_empty() {
            return;
        }
        let mut held = crate::lock(&round.held);
        let mut st = crate::lock(&self.state);
        for (files, bytes, why) in gone {
            // Another worker may have evicted it between the two locks: counted once.
            if !held.iter().any(|h| files.contains(&h.file)) {
                continue;
            }
            match self.store.evict(&files) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    crate::error!("hub: cannot evict {}: {e}", files.join(", "));
                    continue;
                }
            }
            held.retain(|h| !files.contains(&h.file));
            let file = files.last().cloned().unwrap_or_default();
            crate::info!("hub: evicted {file} ({}, {bytes} bytes)", why.as_str());
            st.evicted_files += files.len() as u64;
            st.evicted_bytes += bytes;
            if why == retention::Why::Budget {
                for f in &files {
                    ring(&mut st.forgotten, HUB_MAX_FORGOTTEN, f.clone());
                }
            }
            ring(
                &mut st.evicted,
                HUB_RECENT,
                EvictedView {
                    at: unix_now(),
                    file,
                    bytes,
                    why: why.as_str(),
                },
            );
        }
        st.files = held.len() as u64;
        st.bytes = held_bytes(&held);
    }

    /// Ask `peer` for its listing (a 304 when it has not changed) and keep what in it the
    /// hub lacks; a peer that does not answer has nothing to offer this round.
    fn poll(&self, peer: &PeerAddr, round: &Round) {
        let key = peer.authority();
        let etag = crate::lock(&self.state)
            .listings
            .get(&key)
            .and_then(|l| l.etag.clone());
        let Some(permit) = budget::try_outgoing() else {
            return;
        };
        let got = pull::listing(&peer.host, peer.port, etag.as_deref(), self.lan.as_deref());
        drop(permit);
        let held = crate::lock(&round.held);
        let lacks = |f: &str| held.binary_search_by(|h| h.file.as_str().cmp(f)).is_err();
        let mut st = crate::lock(&self.state);
        match got {
            Ok(None) => {
                if let Some(l) = st.listings.get_mut(&key) {
                    l.offers.retain(|(f, _)| lacks(f));
                }
            }
            Ok(Some(pull::Fresh { body, etag })) => {
                let archs = &self.args.archs;
                let mut offers = Vec::new();
                for (f, n) in plan::listing(&body) {
                    let collected = package::parse(f).is_some_and(|p| {
                        p.sig
                            || archs.is_empty()
                            || p.arch == "any"
                            || archs.iter().any(|a| a == p.arch)
                    });
                    if collected && lacks(f) {
                        offers.push((Box::from(f), n));
                    }
                }
                st.listings.insert(key, Listing { etag, offers });
            }
            Err(e) => {
                crate::verbose!("hub: no listing from {key}: {e}");
                st.listings.remove(&key);
            }
        }
    }

    /// What to pull this round.
    fn plan(&self, round: &Round) -> Vec<Pull> {
        let now = Instant::now();
        let held = crate::lock(&round.held);
        let mut st = crate::lock(&self.state);
        st.missed
            .retain(|(_, at)| now.saturating_duration_since(*at) < HUB_MISSED_TTL);
        st.avoid.retain(|(_, _, until)| *until > now);
        // Plain loops: each iterator chain is code of its own on the board.
        let mut offers: Vec<Offer<'_>> = Vec::new();
        for (i, p) in round.peers.iter().enumerate() {
            if let Some(l) = st.listings.get(&p.authority()) {
                for (f, n) in &l.offers {
                    offers.push(Offer {
                        file: f,
                        size: *n,
                        peer: i,
                    });
                }
            }
        }
        let mut held_names: Vec<&str> = Vec::with_capacity(held.len());
        for h in held.iter() {
            held_names.push(&h.file);
        }
        let mut missed: Vec<&str> = Vec::new();
        for (f, _) in &st.missed {
            missed.push(f);
        }
        let mut skip: Vec<(&str, &str)> = Vec::new();
        for (f, _, _, _) in &st.pulling {
            // Being pulled: from no peer.
            skip.push(("", f));
        }
        for (p, f, _) in &st.avoid {
            skip.push((p, f));
        }
        let mut forgotten: Vec<&str> = Vec::new();
        for f in &st.forgotten {
            forgotten.push(f);
        }
        order::sort_by(&mut forgotten, |a, b| a.cmp(b));
        let mut authorities: Vec<String> = Vec::new();
        for p in &round.peers {
            authorities.push(p.authority());
        }
        let wants = Wants {
            held: &held_names,
            offers: &offers,
            missed: &missed,
            archs: &self.args.archs,
            keep: self.args.keep,
        };
        plan::plan(
            &wants,
            |peer, file| {
                skip.iter()
                    .any(|&(p, f)| f == file && (p.is_empty() || p == authorities[peer]))
            },
            |file| forgotten.binary_search(&file).is_ok(),
        )
    }

    fn worker(&self, round: &Round, verify: &Verifier) {
        loop {
            if crate::lock(&round.stop).is_some() {
                return;
            }
            let Some(p) = crate::lock(&round.queue).pop() else {
                return;
            };
            self.pull(round, p, verify);
        }
    }

    /// Stop pulling for this round, and say why.
    fn stop(&self, round: &Round, why: String) {
        crate::error!("hub: pulls stopped: {why}");
        crate::lock(&self.state).stopped = Some(why.clone());
        *crate::lock(&round.stop) = Some(why);
    }

    /// One pull: make room, check the free space, pull the file (and its `.sig`), store it.
    fn pull(&self, round: &Round, p: Pull, verify: &Verifier) {
        let peer = round.peers[p.peer].clone();
        let auth = peer.authority();
        let have = self.store.partial_len(&p.file);
        let need = p.size.saturating_sub(have) + p.sig.unwrap_or(0);
        if self.args.max_size.is_some() {
            self.evict(round, need);
        }
        let progress = Arc::new(AtomicU64::new(have));
        // The checks and the pull's place among those under way in one step: two workers
        // checking at once would each count on the budget and the free space the other is
        // about to use.
        let held = crate::lock(&round.held);
        let mut st = crate::lock(&self.state);
        if let Some(max) = self.args.max_size {
            let coming: u64 = st.pulling.iter().map(|x| x.2).sum();
            if held_bytes(&held) + coming + need > max {
                drop((st, held));
                crate::verbose!("hub: {} does not fit in --hub-max-size now", p.file);
                return;
            }
        }
        drop(held);
        if let Some(why) = self.no_room(&st.pulling, &p.file, need) {
            drop(st);
            self.stop(round, why);
            return;
        }
        st.pulling
            .push((p.file.clone(), auth.clone(), p.size, progress.clone()));
        drop(st);
        let want = |f: &str| verify.repo_of(f).and_then(|r| verify.want(&r, f));
        let mut got = self.fetch(&peer, &p.file, p.size, want(&p.file), &progress);
        let mut files = vec![p.file.clone()];
        let mut bytes = p.size;
        if let (Ok(_), Some(sig_size)) = (&got, p.sig) {
            let sig = format!("{}.sig", p.file);
            let progress = Arc::new(AtomicU64::new(0));
            match self.fetch(&peer, &sig, sig_size, None, &progress) {
                Ok(_) => {
                    files.insert(0, sig);
                    bytes += sig_size;
                }
                Err(e) => crate::verbose!("hub: {sig} from {auth}: {e}; the package comes alone"),
            }
        }
        if got.is_ok() {
            if let Err(e) = self.store.commit(&files) {
                got = Err(Failure::Local(e));
            }
        }
        self.record(round, &p, &auth, files, bytes, got);
        crate::lock(&self.state).pulling.retain(|x| x.0 != p.file);
    }

    /// Why `file`, `need` bytes to come, may not start now: the free space must cover it,
    /// what the pulls under way still have to write, and `--hub-min-free` of the filesystem.
    fn no_room(&self, pulling: &[Pulling], file: &str, need: u64) -> Option<String> {
        // What the others still have to write first, the free space after: a byte written
        // in between is counted twice, never not at all.
        let mut others = 0;
        for (_, _, size, done) in pulling {
            others += size.saturating_sub(done.load(Ordering::Relaxed));
        }
        let (total, free) = self.store.space()?;
        let reserve = total / 100 * u64::from(self.args.min_free);
        (free < need + reserve + others).then(|| {
            format!(
                "not enough free space in {} for {file} ({free} bytes free, {need} needed, \
                 {}% of the filesystem kept free)",
                self.store.dir().display(),
                self.args.min_free
            )
        })
    }

    /// Pull one file into its temporary, holding an outgoing connection.
    fn fetch(
        &self,
        peer: &PeerAddr,
        file: &str,
        size: u64,
        want: Option<crate::peers::lookup::Want>,
        progress: &AtomicU64,
    ) -> Result<[u8; 32], Failure> {
        let Some(_permit) = budget::try_outgoing() else {
            return Err(Failure::Peer("outgoing connections all in use".into()));
        };
        let temp = self.store.partial(file);
        let job = Job {
            host: &peer.host,
            port: peer.port,
            file,
            size,
            want,
            temp: &temp,
            progress,
            lan: self.lan.as_deref(),
        };
        pull::pull(&job, &self.limiter)
    }

    /// How a pull ended: the directory, the counters, the log and the status page.
    fn record(
        &self,
        round: &Round,
        p: &Pull,
        auth: &str,
        files: Vec<String>,
        bytes: u64,
        got: Result<[u8; 32], Failure>,
    ) {
        let error = match got {
            Ok(_) => {
                crate::info!("hub: stored {} ({bytes} bytes) from {auth}", p.file);
                let mut held = crate::lock(&round.held);
                for f in &files {
                    let i = held.partition_point(|h| h.file < *f);
                    // The pulled file, and the .sig that came along with a package.
                    let size = match *f == p.file {
                        true => p.size,
                        false => bytes - p.size,
                    };
                    // Now, in nanoseconds (seconds are enough to order it after the rest).
                    let used = unix_now().saturating_mul(1_000_000_000);
                    held.insert(
                        i,
                        HeldFile {
                            file: f.clone(),
                            size,
                            used,
                        },
                    );
                }
                let mut st = crate::lock(&self.state);
                // Held now, no longer under way: counted once by the budget check.
                st.pulling.retain(|x| x.0 != p.file);
                st.files = held.len() as u64;
                st.bytes = held_bytes(&held);
                st.pulled_files += files.len() as u64;
                st.pulled_bytes += bytes;
                st.missed.retain(|(f, _)| *f != p.file);
                None
            }
            Err(Failure::NoHash) => {
                crate::verbose!("hub: {auth} has not hashed {} yet: next round", p.file);
                return;
            }
            Err(e) => {
                let why = e.to_string();
                crate::error!("hub: pulling {} from {auth}: {why}", p.file);
                match e {
                    Failure::Wrong(_) => {
                        let mut st = crate::lock(&self.state);
                        st.wrong_copies += 1;
                        let until = Instant::now() + HUB_WRONG_COPY_BACKOFF;
                        ring(
                            &mut st.avoid,
                            HUB_MAX_AVOIDED,
                            (auth.to_string(), p.file.clone(), until),
                        );
                    }
                    Failure::Full(_) => {
                        self.store.discard(&p.file);
                        let pulling: Vec<String> = crate::lock(&self.state)
                            .pulling
                            .iter()
                            .map(|x| x.0.clone())
                            .collect();
                        self.store.discard_all_but(&pulling);
                        self.stop(
                            round,
                            format!("no space left in {}: {why}", self.store.dir().display()),
                        );
                    }
                    Failure::Local(_) => {
                        self.stop(
                            round,
                            format!("cannot write to {}: {why}", self.store.dir().display()),
                        );
                    }
                    _ => {}
                }
                let mut st = crate::lock(&self.state);
                st.failed_pulls += 1;
                match st.failures.iter().position(|f| f.peer == auth) {
                    Some(i) => {
                        st.failures[i].count += 1;
                        st.failures[i].last = why.clone();
                    }
                    None if st.failures.len() < HUB_MAX_FAILING_PEERS => {
                        st.failures.push(FailuresView {
                            peer: auth.to_string(),
                            count: 1,
                            last: why.clone(),
                        })
                    }
                    None => {}
                }
                Some(why)
            }
        };
        let mut st = crate::lock(&self.state);
        ring(
            &mut st.pulled,
            HUB_RECENT,
            PulledView {
                at: unix_now(),
                file: p.file.clone(),
                peer: auth.to_string(),
                bytes,
                error,
            },
        );
    }
}
