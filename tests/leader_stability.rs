//! Issue 17: a controller that was cut off never deposes a healthy leader.
//!
//! The promise (pre-vote: the Raft thesis, section 9.6, and KIP-996): a follower that
//! stops hearing from the leader may stand for election as often as it likes, but it does
//! not raise the epoch by doing so. It first asks whether the others would vote for it; they
//! would not, since they still hear from the leader. Back on the network, it follows the
//! same leader in the same epoch and catches up. Without pre-vote the follower returns with
//! an epoch above the leader's, the leader's next append to it meets that epoch, the leader
//! steps down, and the quorum holds an election nobody needed.
//!
//! Three real `kraftd` controllers, each in a network namespace of its own on a bridge the
//! test builds (the nemesis' lab, tests/nemesis/net.rs and procs.rs), with a light writer
//! creating a topic through the leader every [`WRITE_EVERY`] so the log moves:
//!
//! 1. [`an_isolated_follower_never_deposes_the_leader`]: [`TRIALS`] times, a follower is
//!    cut off from both peers for [`CUT_OFF`], healed, and waited for until it has applied
//!    what the leader had committed; the leader and its epoch must be those of before.
//! 2. [`a_follower_losing_half_its_packets_forces_at_most_one_election`]: a follower loses
//!    [`LOSS_PERCENT`]% of its packets, both ways, for [`LOSSY_FOR`]; the epoch every
//!    controller reports, sampled every [`SAMPLE_EVERY`] during the window and until the
//!    follower caught up after it, rose by at most one.
//!
//! Both end by checking that every topic whose creation was acknowledged exists on every
//! controller.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables). Without them each test says why and
//! passes, unless `CI` is set: then it fails. The two tests use the same namespace names
//! (`kn-<pid>-*`), so they take turns ([`LAB_TURN`]); together they take about two minutes.

#[path = "nemesis/net.rs"]
#[allow(dead_code)]
mod net;
#[path = "nemesis/procs.rs"]
#[allow(dead_code)]
mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kraftd::cli::fleet::Fleet;
use kraftd::client::{ClientError, CreateTopic, QuorumStatus};

use net::Lab;
use procs::Cluster;

/// Controllers.
const IDS: [u64; 3] = [1, 2, 3];
/// Test 1: how many times a follower is cut off.
const TRIALS: usize = 10;
/// Test 1: how long each cut lasts (many election timeouts: 300-600 ms plus the lease).
const CUT_OFF: Duration = Duration::from_secs(5);
/// Test 2: how long the follower loses packets, and how many of them.
const LOSSY_FOR: Duration = Duration::from_secs(10);
const LOSS_PERCENT: u32 = 50;
/// Test 2: how often every controller is asked for its leader and epoch.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// The writer creates one topic this often.
const WRITE_EVERY: Duration = Duration::from_millis(250);
/// Bound of "some controller leads".
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// Bound of "the healed follower applied what the leader had committed".
const CATCH_UP_WAIT: Duration = Duration::from_secs(15);
/// After the follower caught up: time for a disruption to show before the leader is read.
const QUIET: Duration = Duration::from_secs(1);

/// The lab's namespaces are named after the process: one lab at a time.
static LAB_TURN: Mutex<()> = Mutex::new(());

#[test]
fn an_isolated_follower_never_deposes_the_leader() {
    in_lab(
        "an isolated follower never deposes the leader",
        Duration::from_secs(170),
        isolated_follower_trials,
    );
}

#[test]
fn a_follower_losing_half_its_packets_forces_at_most_one_election() {
    in_lab(
        "a follower losing half its packets forces at most one election",
        Duration::from_secs(120),
        lossy_follower_window,
    );
}

/// Test 1, step by step.
async fn isolated_follower_trials(lab: Arc<Lab>) -> Result<String, String> {
    let t0 = Instant::now();
    step(
        t0,
        "start three controllers, register three brokers, wait for a leader",
    );
    let quorum = Quorum::start(&lab).await?;
    let first = wait_reign(LEADER_WAIT).await?;
    eprintln!("  {first}");

    step(
        t0,
        "start the writer: one topic creation through the leader every 250 ms",
    );
    let writer = Writer::start(first.leader, WRITE_EVERY);

    step(
        t0,
        &format!(
            "{TRIALS} trials: cut a follower off for {} s, heal, wait until it caught up, \
             compare the leader and its epoch",
            CUT_OFF.as_secs()
        ),
    );
    let mut trials: Vec<Trial> = Vec::new();
    for n in 1..=TRIALS {
        let before = wait_reign(LEADER_WAIT)
            .await
            .map_err(|e| format!("before trial {n}: {e}"))?;
        // The two followers take turns.
        let followers: Vec<u64> = IDS
            .iter()
            .copied()
            .filter(|&i| i != before.leader)
            .collect();
        let cut = followers[n % followers.len()];

        lab.isolate(cut)?;
        tokio::time::sleep(CUT_OFF).await;
        lab.unisolate(cut)?;
        // The epoch it comes back with (its own view; the answer may take up to 0.5 s, so
        // an election the return caused may already show).
        let returned = status(cut, Duration::from_secs(2))
            .await
            .map(|s| s.leader_epoch);
        let caught_up = wait_caught_up(cut, CATCH_UP_WAIT).await;
        tokio::time::sleep(QUIET).await;
        let after = wait_reign(LEADER_WAIT).await;

        let trial = Trial {
            n,
            cut,
            before,
            returned,
            caught_up,
            after,
        };
        eprintln!("  {trial}");
        let lost = trial.after.is_err();
        trials.push(trial);
        if lost {
            break;
        }
    }

    step(
        t0,
        "stop the writer; every acknowledged topic exists on every controller",
    );
    let tally = writer.stop().await;
    let missing = acknowledged_topics_missing(&tally).await;

    step(t0, "summary");
    let bad: Vec<&Trial> = trials.iter().filter(|t| !t.passed()).collect();
    let mut report = vec![
        format!(
            "{} of {} trials kept the leader and its epoch ({:.1} s in all)",
            trials.len() - bad.len(),
            trials.len(),
            t0.elapsed().as_secs_f64()
        ),
        tally.summary(),
        quorum.elections_logged(),
    ];
    report.extend(missing.iter().cloned());
    let report = report.join("\n  ");
    if bad.is_empty() && missing.is_empty() && trials.len() == TRIALS {
        return Ok(report);
    }
    let mut failure = vec![format!(
        "a follower cut off for {} s deposed the leader or did not come back in {} of {} trials:",
        CUT_OFF.as_secs(),
        bad.len(),
        trials.len()
    )];
    failure.extend(bad.iter().map(|t| format!("  {t}")));
    failure.push(format!("  {report}"));
    Err(failure.join("\n"))
}

/// Test 2, step by step.
async fn lossy_follower_window(lab: Arc<Lab>) -> Result<String, String> {
    let t0 = Instant::now();
    step(
        t0,
        "start three controllers, register three brokers, wait for a leader",
    );
    let quorum = Quorum::start(&lab).await?;
    let first = wait_reign(LEADER_WAIT).await?;
    eprintln!("  {first}");

    step(
        t0,
        "start the writer: one topic creation through the leader every 250 ms",
    );
    let writer = Writer::start(first.leader, WRITE_EVERY);

    step(
        t0,
        "read every controller's epoch before (all agree, bounded)",
    );
    let before = wait_agreed(LEADER_WAIT).await?;
    let flaky = IDS
        .iter()
        .copied()
        .find(|&i| i != before.leader)
        .unwrap_or(1);
    eprintln!("  {before}; node {flaky} will lose packets");

    step(
        t0,
        &format!(
            "sample every controller's leader and epoch every {} ms",
            SAMPLE_EVERY.as_millis()
        ),
    );
    let sampler = Sampler::start(SAMPLE_EVERY);

    step(
        t0,
        &format!(
            "node {flaky} drops {LOSS_PERCENT}% of its packets, both ways, for {} s; then heal",
            LOSSY_FOR.as_secs()
        ),
    );
    lab.lossy(flaky, LOSS_PERCENT)?;
    tokio::time::sleep(LOSSY_FOR).await;
    lab.unlossy(flaky)?;

    step(t0, "wait until it caught up, then a quiet second");
    let caught_up = wait_caught_up(flaky, CATCH_UP_WAIT).await;
    tokio::time::sleep(QUIET).await;
    let samples = sampler.stop().await;

    step(
        t0,
        "read every controller's epoch after (all agree, bounded)",
    );
    let after = wait_agreed(LEADER_WAIT).await;

    step(
        t0,
        "stop the writer; every acknowledged topic exists on every controller",
    );
    let tally = writer.stop().await;
    let missing = acknowledged_topics_missing(&tally).await;

    step(t0, "summary");
    let highest = samples.highest();
    let after_epoch = after.as_ref().map_or(before.epoch, |a| a.epoch);
    let top = highest.map_or(after_epoch, |h| h.epoch.max(after_epoch));
    let mut report = vec![
        format!(
            "before: {before}; after: {}; highest epoch seen: {}; node {flaky} caught up: {}",
            after
                .as_ref()
                .map_or_else(|e| format!("unknown ({e})"), |a| a.to_string()),
            highest.map_or_else(|| "none (no answers)".into(), |h| h.to_string()),
            match &caught_up {
                Ok(d) => format!("after {:.1} s", d.as_secs_f64()),
                Err(e) => format!("no: {e}"),
            },
        ),
        samples.answered(),
        format!(
            "epoch changes seen:\n    {}",
            samples.timeline().join("\n    ")
        ),
        tally.summary(),
        quorum.elections_logged(),
    ];
    report.extend(missing.iter().cloned());
    let report = report.join("\n  ");
    let rose = top - before.epoch;
    if rose <= 1 && after.is_ok() && caught_up.is_ok() && missing.is_empty() {
        return Ok(format!(
            "the epoch rose by {rose} ({:.1} s in all)\n  {report}",
            t0.elapsed().as_secs_f64()
        ));
    }
    Err(format!(
        "node {flaky} losing {LOSS_PERCENT}% of its packets for {} s raised the epoch by {rose} \
         (at most 1 allowed): from {} to {top}\n  {report}",
        LOSSY_FOR.as_secs(),
        before.epoch
    ))
}

// ---------------------------------------------------------------------------------------
// The lab: prerequisites, namespaces, the runtime whose threads live in the hub namespace.

/// Runs `scenario` on a lab of its own (after the other test's lab is gone), bounded by
/// `limit`; every process and namespace is gone before the verdict is given.
fn in_lab<F, Fut>(what: &str, limit: Duration, scenario: F)
where
    F: FnOnce(Arc<Lab>) -> Fut,
    Fut: Future<Output = Result<String, String>> + Send + 'static,
{
    if let Some(why) = net::missing_prerequisite() {
        if std::env::var_os("CI").is_some() {
            panic!("\"{what}\" cannot run: {why}; under CI (CI is set) it must run");
        }
        eprintln!("SKIPPED \"{what}\": {why} (it would fail under CI)");
        return;
    }
    // A test that failed while holding the turn leaves nothing behind: take it anyway.
    let _turn = LAB_TURN.lock().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "{what}: build the network (a hub namespace with a bridge, one namespace per controller)"
    );
    let lab = Arc::new(Lab::build(&IDS).unwrap_or_else(|e| panic!("building the network: {e}")));
    // The scenario's cluster (every controller killed) is gone before the namespaces go
    // with the lab.
    let outcome = lab.run_in_hub(limit, scenario);
    drop(lab);
    match outcome {
        Err(e) => panic!("\"{what}\": {e}"),
        Ok(Err(failure)) => panic!("{failure}"),
        Ok(Ok(summary)) => eprintln!("{what}: passed\n  {summary}"),
    }
}

fn step(t0: Instant, what: &str) {
    eprintln!("[{:5.1} s] {what}", t0.elapsed().as_secs_f64());
}

/// Three controllers and three registered brokers (topic creation needs them).
struct Quorum {
    cluster: Cluster,
    _fleet: Fleet,
    _dir: tempfile::TempDir,
}

impl Quorum {
    async fn start(lab: &Lab) -> Result<Quorum, String> {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_kraftd"));
        let dir = tempfile::Builder::new()
            .prefix("kraftd-stability-")
            .tempdir()
            .map_err(|e| format!("a scratch directory: {e}"))?;
        // Brokers registered once stay unfenced whatever happens to heartbeats.
        let env = [("KRAFTD_BROKER_SESSION_TIMEOUT_MS", "3600000")];
        let cluster = Cluster::start(&exe, dir.path(), lab, &IDS, &env)
            .map_err(|e| format!("starting the controllers: {e}"))?;
        let leader = wait_reign(LEADER_WAIT).await?;
        let clients: Vec<_> = IDS
            .iter()
            .map(|&i| Cluster::client(i, Duration::from_secs(5)))
            .collect();
        let (fleet, _) = Fleet::start(
            &clients,
            &cluster.cluster_id,
            &[1, 2, 3],
            |_| None,
            Duration::from_secs(1),
        )
        .await
        .map_err(|e| format!("registering brokers: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let active = Cluster::client(leader.leader, Duration::from_secs(2))
                .brokers()
                .await
                .map(|b| b.iter().filter(|b| b.state == "active").count())
                .unwrap_or(0);
            if active >= 3 {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{active} of 3 brokers active after 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(Quorum {
            cluster,
            _fleet: fleet,
            _dir: dir,
        })
    }

    /// What the controllers' own logs say about leadership changes.
    fn elections_logged(&self) -> String {
        let per_node: Vec<String> = IDS
            .iter()
            .map(|&i| {
                format!(
                    "node {i}: stood for election after losing a leader {}, won {}, lost leadership {}",
                    self.cluster
                        .log_count(i, "standing for election: no word from the leader"),
                    self.cluster.log_count(i, "gained leadership"),
                    self.cluster.log_count(i, "lost leadership"),
                )
            })
            .collect();
        format!("controller logs: {}", per_node.join("; "))
    }
}

// ---------------------------------------------------------------------------------------
// Who leads, in which epoch, and how far a controller got.

/// A leader and its epoch, as the leader itself reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reign {
    leader: u64,
    epoch: i64,
}

impl fmt::Display for Reign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} leads epoch {}", self.leader, self.epoch)
    }
}

/// Controller `id`'s `GET /v1/quorum/status`.
async fn status(id: u64, timeout: Duration) -> Result<QuorumStatus, String> {
    Cluster::client(id, timeout)
        .quorum_status()
        .await
        .map_err(|e| e.to_string())
}

/// Every controller's status, asked at once.
async fn statuses(timeout: Duration) -> BTreeMap<u64, Result<QuorumStatus, String>> {
    let answers = futures_util::future::join_all(IDS.iter().map(|&i| status(i, timeout))).await;
    IDS.iter().copied().zip(answers).collect()
}

/// The controller that names itself leader, with its epoch (the highest, should a deposed
/// leader not know yet).
fn reign_of(all: &BTreeMap<u64, Result<QuorumStatus, String>>) -> Option<(Reign, i64)> {
    all.iter()
        .filter_map(|(&id, st)| {
            let st = st.as_ref().ok()?;
            (st.leader_id == Some(id)).then_some((
                Reign {
                    leader: id,
                    epoch: st.leader_epoch,
                },
                st.high_watermark,
            ))
        })
        .max_by_key(|(r, _)| r.epoch)
}

/// The current leader (bounded).
async fn wait_reign(limit: Duration) -> Result<Reign, String> {
    let deadline = Instant::now() + limit;
    loop {
        let all = statuses(Duration::from_secs(1)).await;
        if let Some((r, _)) = reign_of(&all) {
            return Ok(r);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no controller led within {limit:?}: {}",
                views(&all)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The current leader, once every controller answers naming it in its epoch (bounded).
async fn wait_agreed(limit: Duration) -> Result<Reign, String> {
    let deadline = Instant::now() + limit;
    loop {
        let all = statuses(Duration::from_secs(1)).await;
        if let Some((r, _)) = reign_of(&all) {
            let agreed = all.values().all(|st| {
                st.as_ref()
                    .is_ok_and(|s| s.leader_id == Some(r.leader) && s.leader_epoch == r.epoch)
            });
            if agreed {
                return Ok(r);
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the controllers did not agree on a leader within {limit:?}: {}",
                views(&all)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// "node 1: leader 2 epoch 4, hw 120; node 2: ..." for a failure message.
fn views(all: &BTreeMap<u64, Result<QuorumStatus, String>>) -> String {
    all.iter()
        .map(|(id, st)| match st {
            Ok(s) => format!(
                "node {id}: leader {:?} epoch {}, hw {}",
                s.leader_id, s.leader_epoch, s.high_watermark
            ),
            Err(e) => format!("node {id}: {e}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits until controller `id` has applied everything the leader had committed when the
/// wait began (its high watermark reaches the leader's of then); how long that took.
async fn wait_caught_up(id: u64, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let deadline = started + limit;
    let mut target: Option<i64> = None;
    let mut last = String::new();
    loop {
        if target.is_none() {
            let all = statuses(Duration::from_secs(1)).await;
            match reign_of(&all) {
                Some((_, hw)) => target = Some(hw),
                None => last = format!("no leader: {}", views(&all)),
            }
        }
        if let Some(t) = target {
            match status(id, Duration::from_secs(1)).await {
                Ok(s) if s.high_watermark >= t => return Ok(started.elapsed()),
                Ok(s) => last = format!("at {} of the leader's {t}", s.high_watermark),
                Err(e) => last = e,
            }
        }
        if Instant::now() > deadline {
            return Err(format!("node {id} not caught up within {limit:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One cut of test 1.
struct Trial {
    n: usize,
    cut: u64,
    before: Reign,
    /// The epoch the healed follower's first answer named.
    returned: Result<i64, String>,
    caught_up: Result<Duration, String>,
    after: Result<Reign, String>,
}

impl Trial {
    fn passed(&self) -> bool {
        self.caught_up.is_ok() && self.after.as_ref() == Ok(&self.before)
    }
}

impl fmt::Display for Trial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trial {}: node {} cut off; before: {}; after: {}; its first answer after the heal named epoch {}; {}; {}",
            self.n,
            self.cut,
            self.before,
            match &self.after {
                Ok(a) => a.to_string(),
                Err(e) => format!("no leader ({e})"),
            },
            match &self.returned {
                Ok(e) => e.to_string(),
                Err(e) => format!("? ({e})"),
            },
            match &self.caught_up {
                Ok(d) => format!("caught up in {:.1} s", d.as_secs_f64()),
                Err(e) => e.clone(),
            },
            if self.passed() { "ok" } else { "FAILED" }
        )
    }
}

// ---------------------------------------------------------------------------------------
// Test 2's sampler: every controller's leader and epoch, every SAMPLE_EVERY.

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    node: u64,
    epoch: i64,
    leader: Option<u64>,
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "epoch {} (node {}'s view at {:.1} s, leader {:?})",
            self.epoch,
            self.node,
            self.at.as_secs_f64(),
            self.leader
        )
    }
}

struct Sampler {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(u64, Vec<Sample>, usize)>>,
}

struct Samples {
    /// Per controller: its answers in order, and how many asks got none.
    by_node: BTreeMap<u64, (Vec<Sample>, usize)>,
}

impl Sampler {
    fn start(every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks = IDS
            .iter()
            .map(|&id| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    // Shorter than the window by far: a lossy controller's slow answer
                    // must not stop the sampling of it.
                    let c = Cluster::client(id, Duration::from_secs(1));
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let (mut seen, mut missed) = (Vec::new(), 0usize);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        match c.quorum_status().await {
                            Ok(s) => seen.push(Sample {
                                at: started.elapsed(),
                                node: id,
                                epoch: s.leader_epoch,
                                leader: s.leader_id,
                            }),
                            Err(_) => missed += 1,
                        }
                    }
                    (id, seen, missed)
                })
            })
            .collect();
        Sampler { stop, tasks }
    }

    async fn stop(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        let mut by_node = BTreeMap::new();
        for t in self.tasks {
            // Bounded: one request of at most 1 s is in flight.
            if let Ok(Ok((id, seen, missed))) =
                tokio::time::timeout(Duration::from_secs(5), t).await
            {
                by_node.insert(id, (seen, missed));
            }
        }
        Samples { by_node }
    }
}

impl Samples {
    fn highest(&self) -> Option<Sample> {
        self.by_node
            .values()
            .flat_map(|(s, _)| s.iter().copied())
            .max_by_key(|s| s.epoch)
    }

    fn answered(&self) -> String {
        let per: Vec<String> = self
            .by_node
            .iter()
            .map(|(id, (s, missed))| format!("node {id} {} ({missed} unanswered)", s.len()))
            .collect();
        format!("samples answered: {}", per.join(", "))
    }

    /// Per controller, every change of (epoch, leader) it reported (at most 12 each).
    fn timeline(&self) -> Vec<String> {
        self.by_node
            .iter()
            .map(|(id, (seen, _))| {
                let mut changes: Vec<String> = Vec::new();
                let mut prev: Option<(i64, Option<u64>)> = None;
                for s in seen {
                    if prev != Some((s.epoch, s.leader)) {
                        changes.push(format!(
                            "{:.1} s: epoch {} leader {}",
                            s.at.as_secs_f64(),
                            s.epoch,
                            s.leader.map_or("none".into(), |l| l.to_string())
                        ));
                        prev = Some((s.epoch, s.leader));
                    }
                }
                let more = changes.len().saturating_sub(12);
                changes.truncate(12);
                let tail = if more > 0 {
                    format!(", ... {more} more")
                } else {
                    String::new()
                };
                format!("node {id}: {}{tail}", changes.join(", "))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// The writer: topics created through the leader, and the end check of every acknowledged one.

#[derive(Default)]
struct Tally {
    acked: Vec<String>,
    /// No answer, or an ambiguous one (it may or may not have happened).
    maybe: usize,
    /// Definite refusals (nothing happened), with the first reason.
    refused: usize,
    first_refusal: Option<String>,
}

impl Tally {
    fn summary(&self) -> String {
        format!(
            "writes: {} acknowledged, {} maybe, {} refused{}",
            self.acked.len(),
            self.maybe,
            self.refused,
            self.first_refusal
                .as_ref()
                .map_or_else(String::new, |r| format!(" (first: {r})"))
        )
    }
}

struct Writer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Tally>,
}

impl Writer {
    /// Creates topic `stable-N` every `every` through `leader` (followers would forward; after
    /// a failed write the writer asks who leads now).
    fn start(leader: u64, every: Duration) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut via = leader;
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let name = format!("stable-{n}");
                n += 1;
                let req = CreateTopic {
                    name: name.clone(),
                    partitions: Some(1),
                    replication_factor: Some(3),
                    configs: BTreeMap::new(),
                    assignments: None,
                };
                let c = Cluster::client(via, Duration::from_secs(3));
                match c.create_topic(&req).await {
                    Ok(_) => tally.acked.push(name),
                    Err(e) => {
                        if ambiguous(&e) {
                            tally.maybe += 1;
                        } else {
                            tally.refused += 1;
                            tally.first_refusal.get_or_insert_with(|| e.to_string());
                        }
                        let all = statuses(Duration::from_secs(1)).await;
                        if let Some((r, _)) = reign_of(&all) {
                            via = r.leader;
                        }
                    }
                }
                tokio::time::sleep(every).await;
            }
            tally
        });
        Writer { stop, task }
    }

    async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        // Bounded: one request of at most 3 s, and one round of statuses, in flight.
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(t)) => t,
            _ => Tally {
                first_refusal: Some("the writer did not stop within 10 s".into()),
                ..Tally::default()
            },
        }
    }
}

/// A timeout, a lost connection, a 5xx or REQUEST_TIMED_OUT: the write may have happened.
fn ambiguous(e: &ClientError) -> bool {
    match e {
        ClientError::Api(a) => {
            a.status.is_server_error() || a.code == "REQUEST_TIMED_OUT" || a.status.as_u16() == 408
        }
        _ => true,
    }
}

/// Every controller, once caught up with the leader (bounded), lists every topic whose
/// creation was acknowledged; one line per controller that does not.
async fn acknowledged_topics_missing(tally: &Tally) -> Vec<String> {
    let mut out = Vec::new();
    if tally.acked.is_empty() {
        out.push("no topic creation was acknowledged at all".into());
    }
    for id in IDS {
        if let Err(e) = wait_caught_up(id, CATCH_UP_WAIT).await {
            out.push(e);
            continue;
        }
        let names: BTreeSet<String> =
            match Cluster::client(id, Duration::from_secs(10)).topics().await {
                Ok(t) => t.into_iter().map(|t| t.name).collect(),
                Err(e) => {
                    out.push(format!("node {id} did not list its topics: {e}"));
                    continue;
                }
            };
        let lacking: Vec<&String> = tally.acked.iter().filter(|t| !names.contains(*t)).collect();
        if let Some(first) = lacking.first() {
            out.push(format!(
                "node {id} lacks {} of {} acknowledged topics (first: {first})",
                lacking.len(),
                tally.acked.len()
            ));
        }
    }
    out
}
