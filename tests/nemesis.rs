//! The nemesis: three real `kraftd` controllers, each in its own network namespace on a
//! bridge this test builds, with writers running while a seeded schedule of faults hits
//! them: kill -9 and restart, SIGSTOP/SIGCONT, isolating one controller, a bridge
//! partition (one against two), and disk replacement by the runbook, once of one disk and
//! once of two disks in quick succession.
//!
//! After healing every fault it checks, as the runbook promises:
//! 1. every acknowledged write is in every controller's image;
//! 2. the controllers' logs are identical on their common prefix;
//! 3. at most one leader per epoch;
//! 4. the high watermark a client sees never decreases, and no leader of a later epoch
//!    serves less than a leader of an earlier epoch served;
//! 5. no step of a dependent chain is refused because the topic whose creation was
//!    acknowledged does not exist.
//!
//! After two quick replacements the quorum may stay unavailable until an operator acts;
//! that is allowed, but nothing acknowledged may be lost on the survivor.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables). Without them the test says why and
//! passes, unless `CI` is set: then it fails. Settings: `NEMESIS_SEED` (default
//! [`DEFAULT_SEED`]; printed), `NEMESIS_SECS` (seconds of faults, default
//! [`DEFAULT_SECS`]), `NEMESIS_WRITERS=D,L,I` (dependent, large, independent writers,
//! default 4,2,6). `scripts/nemesis --runs N --seed S` runs many seeds.

#[path = "nemesis/checks.rs"]
mod checks;
#[path = "nemesis/net.rs"]
mod net;
#[path = "nemesis/observe.rs"]
mod observe;
#[path = "nemesis/procs.rs"]
mod procs;
#[path = "nemesis/workload.rs"]
mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kraftd::cli::fleet::Fleet;

use net::Lab;
use procs::{readmit, Cluster, Runbook};
use workload::{Answer, Writers};

/// The seed CI runs.
const DEFAULT_SEED: u64 = 20_261_201;
/// Seconds of faults in CI (the whole test stays within about four minutes).
const DEFAULT_SECS: u64 = 90;
/// Controllers.
const IDS: [u64; 3] = [1, 2, 3];
/// Bound of "a leader is elected" after start and after healing.
const LEADER_WAIT: Duration = Duration::from_secs(60);
/// Bound of "a replaced disk is a voter again".
const READMIT_WAIT: Duration = Duration::from_secs(30);

/// A tiny deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A duration between `lo` and `hi` milliseconds.
    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// `NEMESIS_WRITERS=D,L,I`: dependent, large and independent writers (default 4,2,6).
fn writer_counts() -> (usize, usize, usize) {
    let v = std::env::var("NEMESIS_WRITERS").unwrap_or_else(|_| "4,2,6".into());
    let n: Vec<usize> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
    match n[..] {
        [d, l, i] => (d, l, i),
        _ => panic!("NEMESIS_WRITERS={v:?}: want three numbers, e.g. 4,2,6"),
    }
}

#[test]
fn nemesis_loses_no_acknowledged_write_under_kills_pauses_partitions_and_disk_replacements() {
    if let Some(why) = net::missing_prerequisite() {
        if std::env::var_os("CI").is_some() {
            panic!("the nemesis test cannot run: {why}; under CI (CI is set) it must run");
        }
        eprintln!("SKIPPED the nemesis test: {why} (it would fail under CI)");
        return;
    }
    let seed = env_u64("NEMESIS_SEED", DEFAULT_SEED);
    let secs = env_u64("NEMESIS_SECS", DEFAULT_SECS);
    eprintln!("nemesis: seed {seed} (NEMESIS_SEED={seed} repeats the fault schedule), {secs} s of faults (NEMESIS_SECS)");

    eprintln!(
        "step 1: build the network: a hub namespace with a bridge, one namespace per controller"
    );
    let lab = Arc::new(Lab::build(&IDS).unwrap_or_else(|e| panic!("building the network: {e}")));
    let limit = Duration::from_secs(secs + 240);
    // The run (and its cluster: every process is killed) is gone before the namespaces go
    // with `lab`.
    let outcome = lab.run_in_hub(limit, |lab| run(lab, seed, secs));
    drop(lab);
    let summary = outcome.unwrap_or_else(|e| panic!("the nemesis run: {e}"));
    assert!(
        summary.violations.is_empty(),
        "seed {seed}: {} violation(s):\n  {}",
        summary.violations.len(),
        summary.violations.join("\n  ")
    );
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill(u64),
    Pause(u64),
    Isolate(u64),
    Partition(u64),
    ReplaceDisk(u64),
    ReplaceTwoDisks(u64, u64),
}

#[derive(Default)]
struct Summary {
    violations: Vec<String>,
}

/// Everything after the network exists; runs on the hub-namespace runtime.
async fn run(lab: Arc<Lab>, seed: u64, secs: u64) -> Summary {
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_kraftd"));
    let runbook = Runbook::detect(&exe);
    let dir = tempfile::Builder::new()
        .prefix("kraftd-nemesis-")
        .tempdir()
        .expect("a scratch directory");
    eprintln!(
        "step 2: format and start three controllers ({runbook:?} runbook for replaced disks; data and logs in {})",
        dir.path().display()
    );
    let env = [
        // Brokers registered once stay unfenced through the faults: topic creation needs them.
        ("KRAFTD_BROKER_SESSION_TIMEOUT_MS", "3600000"),
    ];
    let mut cluster = Cluster::start(&exe, dir.path(), &lab, &IDS, &env)
        .unwrap_or_else(|e| panic!("starting the cluster: {e}"));
    let mut rng = Rng::new(seed);
    let mut violations: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut faults: Vec<String> = Vec::new();
    let t0 = Instant::now();
    let stamp = |t0: Instant| format!("{:6.1} s", t0.elapsed().as_secs_f64());

    let first = wait_leader(&IDS, LEADER_WAIT).await;
    let Some(first) = first else {
        dump_logs(&cluster);
        panic!("no leader within {LEADER_WAIT:?} of the first start");
    };
    eprintln!("  node {first} leads");

    eprintln!("step 3: register three brokers (topics need them) and heartbeat them");
    let clients: Vec<_> = IDS
        .iter()
        .map(|&i| Cluster::client(i, Duration::from_secs(5)))
        .collect();
    let (fleet, _) = Fleet::start(
        &clients,
        &cluster.cluster_id,
        &[1, 2, 3],
        |_| None,
        Duration::from_millis(1000),
    )
    .await
    .unwrap_or_else(|e| panic!("registering brokers: {e}"));
    let active = wait_brokers_active(3, Duration::from_secs(30)).await;
    assert!(active, "three brokers not active within 30 s");

    eprintln!("step 4: start the watchers (leaders, high watermarks) and the writers");
    let watchers = observe::Watchers::start(&IDS);
    let (dep, large, ind) = writer_counts();
    eprintln!("  writers: {dep} dependent, {large} large, {ind} independent (NEMESIS_WRITERS={dep},{large},{ind})");
    let writers = Writers::start(seed, &IDS, dep, large, ind);

    eprintln!("step 5: inject faults for {secs} s");
    let faults_until = Instant::now() + Duration::from_secs(secs);
    // The two quick replacements come once, late in the run (what follows may find the
    // quorum unavailable).
    let double_at =
        Instant::now() + Duration::from_secs(secs).mul_f64(0.55 + rng.below(30) as f64 / 100.0);
    let mut double_done = false;
    let mut replaced: Vec<u64> = Vec::new();
    let mut quorum_lost_after_double = false;
    let mut readmissions = Vec::new();
    // The two quick replacements happen in every run, late if the schedule ran over.
    while (Instant::now() < faults_until || !double_done) && !quorum_lost_after_double {
        // Half of the faults hit whoever leads now (leader changes are where high
        // watermarks and epochs go wrong); the others a node drawn from the seed.
        let random_node = IDS[rng.below(3) as usize];
        let node = if rng.below(2) == 0 {
            current_leader(&IDS).await.unwrap_or(random_node)
        } else {
            random_node
        };
        let late = Instant::now() >= double_at || Instant::now() >= faults_until;
        let fault = if !double_done && late {
            let a = node;
            let b = IDS[((a as usize) + rng.below(2) as usize) % 3];
            Fault::ReplaceTwoDisks(a, b)
        } else {
            match rng.below(5) {
                0 => Fault::Kill(node),
                1 => Fault::Pause(node),
                2 => Fault::Isolate(node),
                3 => Fault::Partition(node),
                _ => Fault::ReplaceDisk(node),
            }
        };
        let hold = rng.ms(500, 5000);
        let line = format!("{} {fault:?}, held {hold:?}", stamp(t0));
        eprintln!("  fault: {line}");
        match fault {
            Fault::Kill(id) => {
                watchers.new_generation(id, 0);
                cluster.kill9(id).await.unwrap_or_else(|e| panic!("{e}"));
                tokio::time::sleep(hold).await;
                cluster.restart(id).await.unwrap_or_else(|e| panic!("{e}"));
                watchers.new_generation(id, cluster.procs[&id].generation);
            }
            Fault::Pause(id) => {
                cluster.pause(id);
                tokio::time::sleep(hold).await;
                cluster.resume(id);
            }
            Fault::Isolate(id) => {
                lab.isolate(id).unwrap_or_else(|e| panic!("{e}"));
                tokio::time::sleep(hold).await;
                lab.unisolate(id).unwrap_or_else(|e| panic!("{e}"));
            }
            Fault::Partition(id) => {
                lab.partition(&[id]).unwrap_or_else(|e| panic!("{e}"));
                tokio::time::sleep(hold).await;
                lab.heal_partition().unwrap_or_else(|e| panic!("{e}"));
            }
            Fault::ReplaceDisk(id) => {
                // The runbook: only while the other voters are up and have a leader.
                if let Err(e) = wait_healthy(&IDS, Duration::from_secs(20)).await {
                    eprintln!("    skipped: the quorum is not healthy ({e})");
                    faults.push(format!("{line} (skipped: quorum not healthy)"));
                    continue;
                }
                replace_disk(&mut cluster, &watchers, runbook, id).await;
                replaced.push(id);
                // Re-admission goes on in the background (the next disk replacement waits
                // for a healthy quorum anyway); other faults may come meanwhile.
                let mut h = tokio::spawn(readmit(runbook, id, &IDS, READMIT_WAIT));
                match tokio::time::timeout(Duration::from_secs(10), &mut h).await {
                    Ok(Ok(Ok(d))) => eprintln!(
                        "    node {id} is a voter again after {:.1} s",
                        d.as_secs_f64()
                    ),
                    Ok(Ok(Err(e))) => notes.push(format!("{} {e}", stamp(t0))),
                    Ok(Err(e)) => panic!("re-admission of node {id} panicked: {e}"),
                    Err(_) => readmissions.push((id, stamp(t0), h)),
                }
            }
            Fault::ReplaceTwoDisks(a, b) => {
                double_done = true;
                if let Err(e) = wait_healthy(&IDS, Duration::from_secs(20)).await {
                    notes.push(format!(
                        "{} the two quick replacements started on an unhealthy quorum: {e}",
                        stamp(t0)
                    ));
                }
                replace_disk(&mut cluster, &watchers, runbook, a).await;
                tokio::time::sleep(hold.min(Duration::from_secs(4))).await;
                replace_disk(&mut cluster, &watchers, runbook, b).await;
                replaced.extend([a, b]);
                let (ra, rb) = tokio::join!(
                    readmit(runbook, a, &IDS, READMIT_WAIT),
                    readmit(runbook, b, &IDS, READMIT_WAIT)
                );
                if let (Err(ea), Err(eb)) = (&ra, &rb) {
                    notes.push(format!(
                        "{} after two quick replacements neither node was re-admitted within the wait (allowed): {ea}; {eb}",
                        stamp(t0)
                    ));
                    quorum_lost_after_double = true;
                } else {
                    eprintln!(
                        "    after two quick replacements: node {a}: {ra:?}, node {b}: {rb:?}"
                    );
                }
            }
        }
        faults.push(line);
        tokio::time::sleep(rng.ms(500, 2000)).await;
    }

    for (id, when, h) in readmissions {
        match tokio::time::timeout(READMIT_WAIT, h).await {
            Ok(Ok(Ok(d))) => eprintln!(
                "  node {id} (disk replaced at {when}) was a voter again after {:.1} s",
                d.as_secs_f64()
            ),
            Ok(Ok(Err(e))) => notes.push(format!("{when} {e}")),
            Ok(Err(e)) => panic!("re-admission of node {id} panicked: {e}"),
            Err(_) => notes.push(format!("{when} re-admission of node {id} never returned")),
        }
    }

    eprintln!("step 6: heal every fault (rules removed, every process running)");
    lab.heal_all().unwrap_or_else(|e| panic!("healing: {e}"));
    for id in IDS {
        if !cluster.is_running(id) {
            watchers.new_generation(id, 0);
        }
    }
    cluster.resume_all().await.unwrap_or_else(|e| panic!("{e}"));
    for id in IDS {
        watchers.new_generation(id, cluster.procs[&id].generation);
    }

    eprintln!(
        "step 7: stop the writers; wait (bounded) for a leader and for the nodes to converge"
    );
    let history = writers.stop().await;
    // A leader that cannot commit is no leader for the operator: after two quick
    // replacements one can be elected with the old disk's last vote and then never hear from
    // a majority again (its health verdict is `unavailable`).
    let mut leader = wait_working_leader(&IDS, LEADER_WAIT).await;
    let mut recovered = None;
    if leader.is_none() && quorum_lost_after_double {
        // The operator acts (deploy/README.md, "Recovering a lost quorum"): the node whose
        // disk was not among the last two replaced becomes the only voter and commits its
        // whole log; the replaced nodes are added back below.
        let keeper = IDS
            .into_iter()
            .find(|id| !replaced.iter().rev().take(2).any(|r| r == id))
            .expect("two of three replaced leaves one");
        eprintln!(
            "step 7b: no leader: the operator runs kraftd recover-quorum on node {keeper}, which kept its disk"
        );
        watchers.new_generation(keeper, 0);
        cluster.stop(keeper).await.unwrap_or_else(|e| panic!("{e}"));
        match cluster.recover_quorum(keeper) {
            Ok(out) => {
                for line in out.lines() {
                    eprintln!("    {line}");
                }
                notes.push(format!(
                    "the quorum was lost after the two quick replacements; the operator recovered it with recover-quorum on node {keeper}"
                ));
                recovered = Some(keeper);
            }
            Err(e) => violations.push(format!(
                "the quorum was lost and recover-quorum on node {keeper} failed: {e}"
            )),
        }
        cluster
            .restart(keeper)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        watchers.new_generation(keeper, cluster.procs[&keeper].generation);
        if recovered.is_some() {
            leader = wait_leader(&[keeper], LEADER_WAIT).await;
            if leader.is_none() {
                violations.push(format!(
                    "node {keeper} elected no leader within {LEADER_WAIT:?} after recover-quorum"
                ));
            }
        }
    }
    let mut converged = false;
    if leader.is_some() {
        // Every replaced node at once, 20 s in all.
        let mut ids = replaced.clone();
        ids.sort_unstable();
        ids.dedup();
        let waits: Vec<_> = ids
            .iter()
            .map(|&id| tokio::spawn(readmit(runbook, id, &IDS, Duration::from_secs(20))))
            .collect();
        for w in waits {
            match tokio::time::timeout(Duration::from_secs(30), w).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(e))) => notes.push(format!("at the end: {e}")),
                Ok(Err(e)) => panic!("a re-admission wait panicked: {e}"),
                Err(_) => notes.push("at the end: a re-admission wait never returned".into()),
            }
        }
        converged = wait_same_high_watermark(&IDS, Duration::from_secs(30))
            .await
            .is_ok();
    } else {
        notes.push(format!(
            "no leader within {LEADER_WAIT:?} after healing (allowed only after the two quick replacements: {quorum_lost_after_double}; recovered by the operator: {recovered:?})"
        ));
        if !quorum_lost_after_double {
            violations.push(format!(
                "no leader within {LEADER_WAIT:?} after healing every fault"
            ));
        }
    }
    let obs = watchers.stop().await;
    fleet.stop().await;

    eprintln!(
        "step 8: check every acknowledged write, the logs, the leaders and the high watermarks"
    );
    let outcomes = history.outcomes.lock().unwrap().clone();
    let leader_status = match leader {
        Some(l) => {
            // With a leader, its status decides who must hold every write; the leaderless
            // rules (which credit a node's unconfirmed log tail) must not stand in for it.
            let mut st = None;
            for _ in 0..10 {
                match Cluster::client(l, Duration::from_secs(5))
                    .quorum_status()
                    .await
                {
                    Ok(s) => {
                        st = Some(s);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
            if st.is_none() {
                violations.push(format!(
                    "leader {l} did not answer /v1/quorum/status: the writes cannot be checked"
                ));
            }
            st
        }
        None => None,
    };
    for id in IDS {
        let c = Cluster::client(id, Duration::from_secs(30));
        let img = match checks::image_topics(&c).await {
            Ok(i) => i,
            Err(e) => {
                notes.push(format!("node {id}: no image: {e}"));
                continue;
            }
        };
        // Who must hold every acknowledged write: with a leader, the leader and every voter
        // that caught up with it (the writers stopped long ago: a few no-ops of margin);
        // without one, the nodes whose disks were not just replaced. A voter still behind
        // after the bounded wait is a liveness matter, reported as a note.
        let must = match &leader_status {
            Some(st) => {
                st.voter_ids().contains(&id)
                    && !st.observers.contains(&id)
                    && img.offset + 100 >= st.high_watermark
            }
            None => !replaced.iter().rev().take(2).any(|&r| r == id),
        };
        let mut missing = checks::acknowledged_writes_missing(id, &img, &outcomes);
        if must && leader.is_none() && !missing.is_empty() {
            // No leader is left to tell this node what was committed: its log may hold
            // committed entries past what its image applied. What it must hold is on disk.
            match checks::durable_topics(&cluster.procs[&id].data_dir) {
                Ok((durable, end)) => {
                    let on_disk = checks::acknowledged_writes_missing(id, &durable, &outcomes);
                    notes.push(format!(
                        "node {id}: no leader is left to commit past its image (offset {}); {} of the {} acknowledged write(s) its image lacks are in its log on disk (through offset {end})",
                        img.offset,
                        missing.len() - on_disk.len().min(missing.len()),
                        missing.len()
                    ));
                    missing = on_disk;
                }
                Err(e) => notes.push(format!("node {id}: its log on disk is unreadable: {e}")),
            }
        }
        if must {
            if !missing.is_empty() {
                violations.push(format!(
                    "node {id} lacks {} acknowledged write(s); first: {}",
                    missing.len(),
                    missing[0]
                ));
                for m in missing.iter().take(5) {
                    eprintln!("    {m}");
                }
            }
        } else if !missing.is_empty() {
            notes.push(format!(
                "node {id} (not required: not a caught-up voter; image at offset {}, leader at {:?}) lacks {} acknowledged write(s)",
                img.offset,
                leader_status.as_ref().map(|s| s.high_watermark),
                missing.len()
            ));
        }
    }
    let (logs, skipped) = checks::fetch_logs(&IDS).await;
    notes.extend(
        skipped
            .into_iter()
            .map(|s| format!("log not compared: {s}")),
    );
    let log_diffs = checks::logs_differ_on_common_prefix(&logs);
    violations.extend(log_diffs);
    violations.extend(history.dependent_refusals.lock().unwrap().iter().cloned());
    violations.extend(obs.two_leaders_in_one_epoch());
    violations.extend(obs.hw_decreases_per_client());
    violations.extend(obs.hw_decreases_across_leaders());
    for id in IDS {
        let refused = cluster.log_count(id, "record refused by the image");
        if refused > 0 {
            notes.push(format!(
                "node {id} logged \"record refused by the image\" {refused} times"
            ));
        }
    }

    let count = |f: fn(&Answer) -> bool| outcomes.iter().filter(|o| f(&o.answer)).count();
    let acked = count(|a| matches!(a, Answer::Acked { .. }));
    let maybe = count(|a| matches!(a, Answer::Maybe(_)));
    let refused = count(|a| matches!(a, Answer::Refused(_)));
    let by_kind = |prefix: &str| {
        outcomes
            .iter()
            .filter(|o| o.writer.starts_with(prefix) && matches!(o.answer, Answer::Acked { .. }))
            .count()
    };
    let misses = history.readback_misses.lock().unwrap().len();
    let logs_line: Vec<String> = logs
        .iter()
        .map(|(id, (start, b))| {
            format!(
                "node {id} [{start}, {})",
                b.last().map_or(*start, |x| x.next)
            )
        })
        .collect();
    eprintln!("step 9: summary");
    eprintln!(
        "  seed {seed}, {secs} s of faults, runbook {runbook:?}, {:.1} s in all",
        t0.elapsed().as_secs_f64()
    );
    eprintln!("  faults injected ({}):", faults.len());
    for f in &faults {
        eprintln!("    {f}");
    }
    eprintln!(
        "  writes: {acked} acknowledged (dependent {}, large {}, independent {}), {maybe} maybe, {refused} refused; {misses} read-backs lagged",
        by_kind("dep"),
        by_kind("large"),
        by_kind("ind")
    );
    eprintln!(
        "  watchers: {} answers; high watermarks leaders served, by epoch: {}",
        *obs.samples.lock().unwrap(),
        obs.leader_hw_ranges()
    );
    eprintln!(
        "  logs compared: {}; converged at the end: {converged}",
        logs_line.join(", ")
    );
    for n in &notes {
        eprintln!("  note: {n}");
    }
    eprintln!("  violations: {}", violations.len());
    for v in &violations {
        eprintln!("    VIOLATION {v}");
    }
    for (what, maybe) in [("maybe", true), ("refused", false)] {
        let kinds: BTreeMap<String, usize> = outcomes
            .iter()
            .filter_map(|o| match &o.answer {
                Answer::Maybe(e) if maybe => Some(error_kind(e)),
                Answer::Refused(e) if !maybe => Some(error_kind(e)),
                _ => None,
            })
            .fold(BTreeMap::new(), |mut m, k| {
                *m.entry(k).or_insert(0) += 1;
                m
            });
        if !kinds.is_empty() {
            eprintln!("  {what} answers by kind: {kinds:?}");
        }
    }
    eprintln!(
        "NEMESIS-SUMMARY seed={seed} secs={secs} acked={acked} maybe={maybe} refused={refused} faults={} violations={}",
        faults.len(),
        violations.len()
    );
    if !violations.is_empty() {
        dump_logs(&cluster);
        // NEMESIS_KEEP_DATA=0 (scripts/nemesis) drops it: many runs would fill the disk.
        if std::env::var("NEMESIS_KEEP_DATA").as_deref() != Ok("0") {
            eprintln!("  (data kept for inspection in {})", dir.keep().display());
        }
    }
    Summary { violations }
}

/// Disk replacement, by the runbook in use.
async fn replace_disk(
    cluster: &mut Cluster,
    watchers: &observe::Watchers,
    runbook: Runbook,
    id: u64,
) {
    let args = runbook.format_args(
        &cluster.procs[&id].data_dir,
        &cluster.cluster_id,
        id,
        &cluster.voters_arg,
    );
    watchers.new_generation(id, 0);
    cluster
        .replace_disk(id, &args)
        .await
        .unwrap_or_else(|e| panic!("replacing node {id}'s disk: {e}"));
    watchers.new_generation(id, cluster.procs[&id].generation);
}

/// The leader some node names, once one does (bounded).
async fn wait_leader(ids: &[u64], limit: Duration) -> Option<u64> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        for &id in ids {
            if let Ok(st) = Cluster::client(id, Duration::from_secs(2))
                .quorum_status()
                .await
            {
                if let Some(l) = st.leader_id {
                    // Confirmed by the leader itself.
                    if let Ok(ls) = Cluster::client(l, Duration::from_secs(2))
                        .quorum_status()
                        .await
                    {
                        if ls.leader_id == Some(l) {
                            return Some(l);
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// [`wait_leader`], for a leader that can commit: its `GET /v1/quorum/health` verdict is
/// healthy or degraded, not `unavailable`.
async fn wait_working_leader(ids: &[u64], limit: Duration) -> Option<u64> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let l = wait_leader(ids, left).await?;
        if let Ok(h) = Cluster::client(l, Duration::from_secs(2))
            .quorum_health()
            .await
        {
            if h.status != kraftd::client::HealthStatus::Unavailable {
                return Some(l);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// The leader, if some node names one that confirms it (one quick round).
async fn current_leader(ids: &[u64]) -> Option<u64> {
    wait_leader(ids, Duration::from_millis(1)).await
}

/// A leader whose replication shows every node a voter and close behind it (bounded).
async fn wait_healthy(ids: &[u64], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some(l) = wait_leader(ids, Duration::from_secs(2)).await {
            let c = Cluster::client(l, Duration::from_secs(2));
            match (c.quorum_status().await, c.replication().await) {
                (Ok(st), Ok(rows)) => {
                    let all_voters =
                        ids.iter().all(|i| st.voter_ids().contains(i)) && st.observers.is_empty();
                    let close = ids
                        .iter()
                        .all(|i| rows.iter().any(|r| r.node_id == *i && r.lag <= 50));
                    if all_voters && close {
                        return Ok(());
                    }
                    last = format!(
                        "leader {l}: voters {:?}, observers {:?}, rows {rows:?}",
                        st.voter_ids(),
                        st.observers
                    );
                }
                (a, b) => last = format!("leader {l}: {:?} {:?}", a.err(), b.err()),
            }
        } else {
            last = "no leader".into();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

/// Every node reports the same high watermark (bounded).
async fn wait_same_high_watermark(ids: &[u64], limit: Duration) -> Result<i64, String> {
    let deadline = Instant::now() + limit;
    let mut last = BTreeMap::new();
    while Instant::now() < deadline {
        last.clear();
        for &id in ids {
            let hw = Cluster::client(id, Duration::from_secs(2))
                .quorum_status()
                .await
                .map(|s| s.high_watermark)
                .map_err(|e| e.to_string());
            last.insert(id, hw);
        }
        let hws: Vec<i64> = last.values().filter_map(|v| v.clone().ok()).collect();
        if hws.len() == ids.len() && hws.iter().all(|&h| h == hws[0]) {
            return Ok(hws[0]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "no common high watermark within {limit:?}: {last:?}"
    ))
}

async fn wait_brokers_active(n: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(l) = wait_leader(&IDS, Duration::from_secs(5)).await {
            if let Ok(b) = Cluster::client(l, Duration::from_secs(2)).brokers().await {
                if b.iter().filter(|b| b.state == "active").count() >= n {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The part of an error that names its kind (status and code, or the transport error),
/// without the URL.
fn error_kind(e: &str) -> String {
    // "METHOD URL: rest" -> "rest"; "error sending request for url (URL): x" -> "error sending request: x".
    let mut tail = e
        .split_once(" http://")
        .map_or(e, |(_, rest)| {
            rest.split_once(": ").map_or(rest, |(_, r)| r)
        })
        .to_string();
    if let Some(i) = tail.find(" for url (") {
        if let Some(j) = tail[i..].find("): ") {
            tail.replace_range(i..i + j + 1, "");
        }
    }
    tail.chars().take(90).collect()
}

fn dump_logs(cluster: &Cluster) {
    for id in cluster.ids() {
        eprintln!(
            "---- node {id} log (last 60 lines) ----\n{}",
            cluster.log_tail(id, 60)
        );
    }
}

/// The end checks themselves, on made-up histories: each one reports what it is there to
/// see (a check that cannot fail would prove nothing), and stays quiet otherwise.
#[test]
fn nemesis_checks_report_lost_writes_diverging_logs_two_leaders_and_falling_high_watermarks() {
    use checks::{
        acknowledged_writes_missing, logs_differ_on_common_prefix, ImageTopics, LogBatch,
    };
    use observe::{HwSeen, Observations};
    use workload::{Outcome, Write};

    // 1. Acknowledged writes: a created topic missing configs, a grow not applied.
    let acked = |write: Write| Outcome {
        writer: "w".into(),
        write,
        via: 1,
        answer: Answer::Acked { offset: Some(7) },
        at: Duration::ZERO,
    };
    let configs: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
    let outcomes = vec![
        acked(Write::CreateTopic {
            topic: "t".into(),
            partitions: 2,
            configs: configs.clone(),
        }),
        acked(Write::GrowTopic {
            topic: "t".into(),
            count: 4,
        }),
        Outcome {
            answer: Answer::Maybe("timeout".into()),
            ..acked(Write::CreateTopic {
                topic: "maybe".into(),
                partitions: 1,
                configs: BTreeMap::new(),
            })
        },
    ];
    let mut img = ImageTopics::default();
    img.partitions.insert("t".into(), 2);
    let missing = acknowledged_writes_missing(1, &img, &outcomes);
    assert_eq!(missing.len(), 2, "{missing:?}");
    img.partitions.insert("t".into(), 4);
    img.configs.insert("t".into(), configs);
    assert!(acknowledged_writes_missing(1, &img, &outcomes).is_empty());

    // 2. Logs: same prefix passes; other bytes at the same offsets are reported.
    let batch = |base: i64, epoch: i32, b: &'static [u8]| LogBatch {
        base,
        next: base + 1,
        epoch,
        bytes: bytes::Bytes::from_static(b),
    };
    let mut logs = BTreeMap::new();
    logs.insert(1, (0, vec![batch(0, 1, b"x"), batch(1, 1, b"y")]));
    logs.insert(2, (0, vec![batch(0, 1, b"x")]));
    assert!(logs_differ_on_common_prefix(&logs).is_empty());
    logs.insert(3, (0, vec![batch(0, 1, b"x"), batch(1, 2, b"z")]));
    let d = logs_differ_on_common_prefix(&logs);
    assert_eq!(d.len(), 1, "{d:?}");

    // 3. Leaders and high watermarks.
    let seen = |node: u64, generation: u32, hw: i64, epoch: i64, leader: u64| HwSeen {
        at: Duration::ZERO,
        node,
        generation,
        hw,
        epoch,
        leader: Some(leader),
        source: "status",
    };
    let obs = Observations::default();
    obs.note(seen(1, 1, 100, 5, 1));
    obs.note(seen(2, 1, 90, 5, 1));
    obs.note(seen(1, 2, 50, 5, 1)); // restarted: a new series
    obs.note(seen(2, 1, 120, 6, 2));
    assert!(obs.two_leaders_in_one_epoch().is_empty());
    assert!(obs.hw_decreases_per_client().is_empty());
    assert!(obs.hw_decreases_across_leaders().is_empty());
    obs.note(seen(3, 1, 130, 6, 3)); // epoch 6 named two leaders
    obs.note(seen(2, 1, 110, 6, 2)); // node 2's client sees 120 -> 110
    obs.note(seen(3, 2, 41, 7, 3)); // restarted, leads epoch 7, serves less than epoch 6 did
    assert_eq!(obs.two_leaders_in_one_epoch().len(), 1);
    assert_eq!(obs.hw_decreases_per_client().len(), 1);
    assert_eq!(obs.hw_decreases_across_leaders().len(), 1);
}
