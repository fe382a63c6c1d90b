//! Voter changes must not cost brokers their sessions.
//!
//! A membership change goes through `Controller::exclusive`: the write pipeline drains,
//! the change appends its entries, and meanwhile whatever jobs write is held until the
//! change is over. Heartbeats are still heard (their sessions renewed), but their answers
//! are held too, and a broker sends its next heartbeat only once answered. So a change
//! that held the pipeline for longer than the session timeout, or a controller loop that
//! stopped hearing heartbeats while a change was pending, would fence live brokers: out of
//! every ISR, their leaderships moved, for nothing.
//!
//! The runbook: three controllers with a short broker session timeout, twenty brokers
//! heartbeating through all three, a topic whose partitions they lead; then, for about
//! 25 s, a follower voter is removed and added back, round after round, while the
//! heartbeats go on. Afterwards no broker may have been fenced: by the brokers' states and
//! epochs, by the partitions, by the metadata log over the window, and by the controllers'
//! own logs.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kraftd::client::{BrokerView, Client, CreateTopic, LogRecord, PartitionView};

/// broker.session.timeout.ms: short (Kafka's default is 9 s), so that a change which kept
/// heartbeats unheard for three seconds shows, yet fifteen heartbeat intervals: on a loaded
/// two-core machine a voter change has been seen to hold heartbeat answers for 0.75 s.
const SESSION_TIMEOUT_MS: u64 = 3_000;
const HEARTBEAT_EVERY: Duration = Duration::from_millis(200);
const BROKERS: i32 = 20;
/// How long voters keep changing.
const WINDOW: Duration = Duration::from_secs(25);
/// Bound of the rounds, whatever the window (a round takes some 0.1 s on an idle machine).
const MAX_ROUNDS: usize = 2_000;
/// Longest random pause after each change, so changes meet heartbeats at every phase.
const MAX_PAUSE_MS: u64 = 250;
/// How often the runbook reports progress.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// Bound of one remove or add, retries included.
const CHANGE_LIMIT: Duration = Duration::from_secs(40);
const TOPIC: &str = "orders";

/// Removes voter `victim` through the leader of the moment; returns how long the call that
/// did it took. Retries what is retriable (a leader change); a retry finding the voter
/// already gone means an earlier try whose outcome was unknown took effect.
async fn remove_voter(s: &mut Scenario, victim: u64) -> Duration {
    let deadline = Instant::now() + CHANGE_LIMIT;
    loop {
        let leader = s.leader().await;
        let started = Instant::now();
        match s.client(leader).remove_voter(victim).await {
            Ok(voters) => {
                assert!(
                    !voters.contains(&victim),
                    "voters after removal: {voters:?}"
                );
                return started.elapsed();
            }
            Err(e) if e.code() == Some("VOTER_NOT_FOUND") => return started.elapsed(),
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                eprintln!("    (removing node {victim} via node {leader}: {e}; retrying)");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("removing voter {victim} via node {leader}: {e}"),
        }
    }
}

/// Adds node `id` back as a voter through the leader of the moment (learner, catch up,
/// voter); returns how long the call that did it took.
async fn add_voter(s: &mut Scenario, id: u64) -> Duration {
    let deadline = Instant::now() + CHANGE_LIMIT;
    let voter = s.q.node(id).unwrap().as_new_voter();
    loop {
        let leader = s.leader().await;
        let started = Instant::now();
        match s.client(leader).add_voter(&voter).await {
            Ok(voters) => {
                assert!(voters.contains(&id), "voters after adding {id}: {voters:?}");
                return started.elapsed();
            }
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                eprintln!("    (adding node {id} via node {leader}: {e}; retrying)");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("adding voter {id} via node {leader}: {e}"),
        }
    }
}

/// "median M ms, max N ms" of some durations.
fn spread(v: &mut [Duration]) -> String {
    v.sort_unstable();
    match (v.get(v.len() / 2), v.last()) {
        (Some(m), Some(x)) => format!("median {} ms, max {} ms", m.as_millis(), x.as_millis()),
        _ => "-".into(),
    }
}

/// Every broker as `client` sees it (state, epoch, incarnation, listeners, rack), by id.
async fn brokers(client: &Client) -> BTreeMap<i32, BrokerView> {
    client
        .brokers()
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.id, b))
        .collect()
}

/// A log line without its colour codes.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Lines of every controller's log where the active controller fenced a broker.
fn fence_lines(s: &Scenario) -> Vec<String> {
    let mut out = Vec::new();
    for n in s.q.nodes() {
        let text = std::fs::read_to_string(&n.log_path).unwrap_or_default();
        for line in text.lines().map(plain) {
            if line.contains("fenced broker:") && !line.contains("unfenced broker:") {
                out.push(format!("node {}: {line}", n.id));
            }
        }
    }
    out
}

/// The records of the metadata log from `from` up to `to` (exclusive), read from `client`
/// page by page.
async fn records(client: &Client, from: i64, to: i64) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let mut next = from;
    for _ in 0..10_000 {
        if next >= to {
            break;
        }
        let page = client.fetch_log_json(next, Some(1 << 20)).await.unwrap();
        assert!(
            page.next_offset > next,
            "the log does not move on at offset {next}"
        );
        for r in page.records {
            if r.offset >= from && r.offset < to {
                out.push(r);
            }
        }
        next = page.next_offset;
    }
    assert!(next >= to, "read the log up to {next}, wanted {to}");
    out
}

#[test]
fn no_broker_is_fenced_while_follower_voters_are_removed_and_added_back_over_and_over() {
    run("voter_changes_under_heartbeats", async {
        eprintln!("step 1: three controllers, broker session timeout {SESSION_TIMEOUT_MS} ms");
        let timeout = SESSION_TIMEOUT_MS.to_string();
        let mut s = Scenario::start(3, &[("KRAFTD_BROKER_SESSION_TIMEOUT_MS", &timeout)]).await;
        let all = s.q.ids();

        eprintln!(
            "step 2: {BROKERS} brokers heartbeat every {} ms through all three controllers; \
             a topic of 40 partitions (replication factor 3) on them",
            HEARTBEAT_EVERY.as_millis()
        );
        let ids: Vec<i32> = (1..=BROKERS).collect();
        let (fleet, _) = s
            .start_brokers(&ids, |id| Some(format!("rack-{}", id % 3)), HEARTBEAT_EVERY)
            .await;
        let leader = s.leader().await;
        let before: Vec<PartitionView> = s
            .client(leader)
            .create_topic(&CreateTopic {
                name: TOPIC.into(),
                partitions: Some(40),
                replication_factor: Some(3),
                ..Default::default()
            })
            .await
            .unwrap()
            .partitions;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let registered = brokers(&s.client(leader)).await;
        assert!(
            registered.len() == ids.len() && registered.values().all(|b| b.state == "active"),
            "every broker is active before the window: {registered:?}"
        );
        let fenced_before = fence_lines(&s);
        assert!(
            fenced_before.is_empty(),
            "nobody was fenced before the window: {fenced_before:#?}"
        );
        let from = s.status(leader).await.high_watermark;
        fleet.stats.longest_gap_ms.store(0, Ordering::Relaxed);
        let (hb0, err0) = (
            fleet.stats.heartbeats.load(Ordering::Relaxed),
            fleet.stats.errors.load(Ordering::Relaxed),
        );
        let mut leaders = vec![leader];
        eprintln!(
            "  all {BROKERS} brokers active; leader is node {leader}; window starts at offset {from}"
        );

        eprintln!(
            "step 3: for {} s, remove a follower voter and add it back, round after round, \
             while the heartbeats go on",
            WINDOW.as_secs()
        );
        let window = Instant::now();
        let mut rounds = 0;
        let (mut removes, mut adds) = (Vec::new(), Vec::new());
        let mut report_at = REPORT_EVERY;
        while window.elapsed() < WINDOW && rounds < MAX_ROUNDS {
            let leader = s.leader().await;
            if leaders.last() != Some(&leader) {
                leaders.push(leader);
            }
            let followers: Vec<u64> = all.iter().copied().filter(|&i| i != leader).collect();
            let victim = followers[rounds % followers.len()];
            removes.push(remove_voter(&mut s, victim).await);
            tokio::time::sleep(Duration::from_millis(s.rng.below(MAX_PAUSE_MS))).await;
            adds.push(add_voter(&mut s, victim).await);
            tokio::time::sleep(Duration::from_millis(s.rng.below(MAX_PAUSE_MS))).await;
            rounds += 1;
            if window.elapsed() >= report_at {
                report_at += REPORT_EVERY;
                eprintln!(
                    "  t+{:.1} s: {rounds} rounds (last: node {victim}); {} heartbeats answered \
                     ({} failed), longest gap between two answers of a broker {} ms",
                    window.elapsed().as_secs_f64(),
                    fleet.stats.heartbeats.load(Ordering::Relaxed) - hb0,
                    fleet.stats.errors.load(Ordering::Relaxed) - err0,
                    fleet.stats.longest_gap_ms.load(Ordering::Relaxed),
                );
            }
        }
        let window_took = window.elapsed();
        let answered_in_window = fleet.stats.heartbeats.load(Ordering::Relaxed) - hb0;
        wait_all_report_voters(&s, &all, CONVERGE).await;
        // Heartbeats go on a little past the last change, in case a fence is still held
        // behind it.
        tokio::time::sleep(Duration::from_millis(2 * SESSION_TIMEOUT_MS)).await;
        let leader = s.leader().await;
        if leaders.last() != Some(&leader) {
            leaders.push(leader);
        }
        let to = s.status(leader).await.high_watermark;
        let (answered, failed, gap) = (
            fleet.stats.heartbeats.load(Ordering::Relaxed) - hb0,
            fleet.stats.errors.load(Ordering::Relaxed) - err0,
            fleet.stats.longest_gap_ms.load(Ordering::Relaxed),
        );
        eprintln!(
            "  {rounds} rounds ({} voter changes) in {:.1} s; removing took {}, adding back {}; \
             leaders over the window: {leaders:?}; {answered} heartbeats answered, {failed} failed; \
             the longest any broker went between two answered heartbeats: {gap} ms (session \
             timeout {SESSION_TIMEOUT_MS} ms); window offsets {from}..{to}",
            2 * rounds,
            window_took.as_secs_f64(),
            spread(&mut removes),
            spread(&mut adds),
        );

        eprintln!("step 4: no broker was fenced, by every account");
        let c = s.client(leader);
        let mut problems = Vec::new();
        let log = records(&c, from, to).await;
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &log {
            *kinds.entry(r.kind.as_str()).or_default() += 1;
        }
        eprintln!("  the metadata log over the window: {kinds:?}");
        let fenced_in_log: std::collections::BTreeSet<i64> = log
            .iter()
            .filter(|r| r.kind == "BROKER_REGISTRATION_CHANGE_RECORD" && r.data["fenced"] == 1)
            .filter_map(|r| r.data["brokerId"].as_i64())
            .collect();
        if !fenced_in_log.is_empty() {
            problems.push(format!(
                "the metadata log fenced brokers {fenced_in_log:?} between offsets {from} and {to}"
            ));
        }
        let changes: Vec<_> = log
            .iter()
            .filter(|r| r.kind.contains("BROKER") || r.kind == "PARTITION_CHANGE_RECORD")
            .collect();
        if let Some(first) = changes.first() {
            problems.push(format!(
                "{} broker or partition records in the window, the first at offset {}: {} {}",
                changes.len(),
                first.offset,
                first.kind,
                first.data
            ));
        }
        let lines = fence_lines(&s);
        if !lines.is_empty() {
            problems.push(format!(
                "{} \"fenced broker\" lines in the controllers' logs, the first:\n      {}",
                lines.len(),
                lines[..lines.len().min(3)].join("\n      ")
            ));
        }
        let after = brokers(&c).await;
        let moved: Vec<String> = registered
            .iter()
            .filter(|(id, was)| after.get(id) != Some(was))
            .map(|(id, was)| format!("broker {id}: {was:?} -> {:?}", after.get(id)))
            .collect();
        if !moved.is_empty() {
            problems.push(format!("brokers not as before the window: {moved:?}"));
        }
        let partitions = c.describe_topic(TOPIC).await.unwrap().partitions;
        let changed: Vec<_> = before
            .iter()
            .zip(&partitions)
            .filter(|(b, a)| a != b)
            .collect();
        if let Some((b, a)) = changed.first() {
            problems.push(format!(
                "{} of {} partitions changed, e.g. {b:?} -> {a:?}",
                changed.len(),
                before.len()
            ));
        }
        let told = fleet.stats.fenced_after_unfence.load(Ordering::Relaxed);
        if told > 0 {
            problems.push(format!(
                "{told} heartbeat answers told a broker it was fenced"
            ));
        }
        assert!(
            problems.is_empty(),
            "brokers were fenced during the voter changes:\n  - {}",
            problems.join("\n  - ")
        );
        eprintln!(
            "  every broker active under its old epoch, the topic's {} partitions unchanged, \
             no broker or partition record in the window, no fence in the controllers' logs",
            partitions.len()
        );

        eprintln!("step 5: the window really was busy");
        assert!(
            rounds >= 3,
            "only {rounds} rounds of voter changes in the window"
        );
        // The heartbeats went on: at least as many answers as it takes to keep every
        // session alive (one per broker per session timeout). Fewer than were due is no
        // failure: a change holds heartbeat answers while it runs, so over a window of
        // back-to-back changes the rate drops with the changes' length.
        let due = BROKERS as u64 * (window_took.as_millis() / HEARTBEAT_EVERY.as_millis()) as u64;
        let alive = BROKERS as u64 * (window_took.as_millis() as u64 / SESSION_TIMEOUT_MS);
        assert!(
            answered_in_window >= alive,
            "only {answered_in_window} heartbeats answered over the window, fewer than the \
             {alive} that keep {BROKERS} sessions alive"
        );
        eprintln!(
            "  {rounds} rounds; {answered_in_window} heartbeats answered over the window ({due} \
             due at the brokers' interval, {alive} needed to keep every session alive)"
        );
        fleet.stop().await;
    });
}
