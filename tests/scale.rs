//! Discovery on a LAN of many hosts: each a pacserve in a network namespace of its own, all on
//! one bridge, dual stack (IPv4, and IPv6 link-local plus a unique-local prefix), so that
//! every announcement can go on two families. The datagram counters of each `/status.json`
//! (`multicast_datagrams`) say what was sent.
//!
//! What the tests show:
//! - 20 hosts started at once all come to know each other; a 21st joining later costs at most
//!   2 datagrams per host of the LAN (its hello and query, and one answer from each host on
//!   one family: the same querier heard on both families is answered once);
//! - in the steady state each host sends one hello per interval (on one family, taking turns,
//!   when every peer is heard on both), not one per family.
//!
//! No timing is asserted: waits are bounded polls, and a count of periodic hellos is bounded
//! from above by the time that actually passed.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::lan::{NETNS_PREFIX, Netns, Stack};
use common::*;

/// pacserve's HTTP port on every host.
const PORT: u16 = 15678;
/// How long a LAN started at once may take until every host knows every other.
const CONVERGE_LIMIT: Duration = Duration::from_secs(60);
/// How long the counters may take to stop moving after the last answer.
const SETTLE_LIMIT: Duration = Duration::from_secs(15);
/// Time between two looks at the counters that must agree for them to have settled: longer
/// than an answer can be held back (one a second, after up to 120 ms of jitter).
const SETTLE_GAP: Duration = Duration::from_millis(1500);

struct ScaleLan {
    // Fields drop in order: the daemons first, then the directory, then the namespaces.
    daemons: Vec<Pacserve>,
    repo: Repo,
    net: Netns,
}

impl ScaleLan {
    fn new(tag: &str, subnet: u8) -> ScaleLan {
        let net = Netns::new(tag, subnet);
        let repo = Repo::new(&format!("{NETNS_PREFIX}{tag}"), &[("scalex", 1024)]);
        ScaleLan {
            daemons: Vec::new(),
            repo,
            net,
        }
    }

    /// Make hosts `first..first + n` and start a pacserve on each at once, every `interval`
    /// seconds; the daemons in order.
    fn start(&mut self, first: u8, n: u8, interval: u32) {
        let hosts: Vec<(String, Host)> = (first..first + n)
            .map(|i| {
                let name = format!("h{i}");
                let ns = self.net.add_host_with(&name, i, Stack::Dual);
                (ns, self.repo.host(&name))
            })
            .collect();
        let interval = interval.to_string();
        let started: Vec<Pacserve> = thread::scope(|s| {
            let handles: Vec<_> = hosts
                .iter()
                .map(|(ns, host)| {
                    let interval = interval.clone();
                    s.spawn(move || {
                        host.pacserve()
                            .in_netns(ns)
                            .any_address()
                            .port(PORT)
                            .not_verbose()
                            .args(&["--multicast", "--multicast-interval", &interval])
                            .start()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        self.daemons.extend(started);
    }

    /// Wait (bounded) until every daemon lists every other one.
    fn assert_all_know_all(&self) {
        let want = self.daemons.len() - 1;
        let mut counts = Vec::new();
        let ok = wait_until(CONVERGE_LIMIT, || {
            counts = self.daemons.iter().map(|d| d.peers().len()).collect();
            counts.iter().all(|&c| c == want)
        });
        assert!(
            ok,
            "after {CONVERGE_LIMIT:?} the hosts know {counts:?} peers, not {want} each\n{}",
            self.daemons[0].log()
        );
    }

    /// Every daemon's `multicast_datagrams.KIND`.
    fn counters(&self, kind: &str) -> Vec<u64> {
        self.daemons
            .iter()
            .map(|d| d.status_json().field("multicast_datagrams").num(kind))
            .collect()
    }

    /// The `sent` counters, once two looks `SETTLE_GAP` apart agree (bounded).
    fn settled_sent(&self) -> Vec<u64> {
        let mut last = self.counters("sent");
        let end = Instant::now() + SETTLE_LIMIT;
        while Instant::now() < end {
            thread::sleep(SETTLE_GAP);
            let now = self.counters("sent");
            if now == last {
                return now;
            }
            last = now;
        }
        panic!("the datagram counters still move after {SETTLE_LIMIT:?}: {last:?}");
    }
}

/// Sum of `after - before`, host by host (hosts missing from `before` count from 0).
fn sent_since(before: &[u64], after: &[u64]) -> u64 {
    after
        .iter()
        .enumerate()
        .map(|(i, a)| a - before.get(i).copied().unwrap_or(0))
        .sum()
}

/// 20 hosts started at once all know each other; a 21st joining costs at most 2N datagrams.
#[test]
fn twenty_hosts_at_once_know_each_other_and_a_join_costs_at_most_two_per_host() {
    let mut lan = ScaleLan::new("scale", 44);
    // No periodic hello within the test: what is counted is the start and the join.
    lan.start(1, 20, 600);
    lan.assert_all_know_all();
    let before = lan.settled_sent();
    let received = lan.counters("received");
    eprintln!(
        "20 hosts started at once: {} datagrams sent, {} received",
        before.iter().sum::<u64>(),
        received.iter().sum::<u64>()
    );

    lan.start(21, 1, 600);
    lan.assert_all_know_all();
    let after = lan.settled_sent();
    let n = lan.daemons.len() as u64;
    let join = sent_since(&before, &after);
    eprintln!("the 21st host's join: {join} datagrams sent on the LAN of {n}");
    assert!(
        join <= 2 * n,
        "a join cost {join} datagrams, more than 2 per host ({n} hosts): {before:?} → {after:?}"
    );
    // Each old host answered the join, on one family.
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(
            a - b,
            1,
            "host {} sent {} datagrams for the join: {:?}",
            i + 1,
            a - b,
            [
                "sent_hello",
                "sent_query",
                "sent_answer",
                "received_query",
                "suppressed_answer"
            ]
            .map(|k| (
                k,
                lan.daemons[i]
                    .status_json()
                    .field("multicast_datagrams")
                    .num(k)
            ))
        );
    }
}

/// Six dual-stack hosts that know each other send one hello each per interval, not one per
/// family.
#[test]
fn steady_state_is_one_hello_per_host_per_interval() {
    const INTERVAL: u64 = 1;
    let mut lan = ScaleLan::new("steady", 45);
    lan.start(1, 6, INTERVAL as u32);
    lan.assert_all_know_all();
    let hosts = lan.daemons.len() as u64;
    // Answers to the start-up queries are over within a second or two.
    thread::sleep(Duration::from_secs(3));
    let queries = lan.counters("sent_query");
    let before = lan.counters("sent");
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs(8 * INTERVAL));
    let after = lan.counters("sent");
    let elapsed = t0.elapsed().as_secs_f64();
    assert_eq!(
        lan.counters("sent_query"),
        queries,
        "no query in the steady state"
    );
    // A host sends at most one periodic hello per interval started in the window, plus one.
    let intervals = (elapsed / INTERVAL as f64).ceil() as u64;
    let sent = sent_since(&before, &after);
    eprintln!("steady state: {sent} datagrams from {hosts} hosts in {elapsed:.1} s");
    assert!(
        sent <= hosts * (intervals + 1),
        "{sent} datagrams from {hosts} hosts in {intervals} intervals: more than one hello per \
         host per interval ({before:?} → {after:?})"
    );
    assert!(sent > 0, "no hello at all in {elapsed:.1} s");
}
