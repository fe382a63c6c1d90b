//! `kraftd bench controller`: starts a local three-node quorum of this executable and prints
//! what brokers and operators see of the active controller: topic creations per second,
//! the heartbeat load one active controller carries (and its CPU share), and how long a
//! commit takes to reach brokers long-polling the log. Prints figures, asserts nothing;
//! every phase is bounded.

use anyhow::Context;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::bench_quorum::{ms, percentile};
use super::fleet::Fleet;
use super::local_quorum::{LocalQuorum, QuorumOptions};
use crate::client::{Client, ConfigKind, ConfigPatch, CreateTopic};

/// `kraftd bench controller` arguments.
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// Concurrent clients creating topics.
    #[arg(long, default_value_t = 16)]
    pub topic_clients: usize,
    /// Partitions per created topic.
    #[arg(long, default_value_t = 100)]
    pub partitions: i32,
    /// Seconds of topic creation.
    #[arg(long, default_value_t = 10)]
    pub topic_secs: u64,
    /// Simulated brokers heartbeating; 0 skips the phase.
    #[arg(long, default_value_t = 2_000)]
    pub brokers: usize,
    /// Their heartbeat interval, ms.
    #[arg(long, default_value_t = 2_000)]
    pub heartbeat_ms: u64,
    /// Seconds the heartbeat load is measured.
    #[arg(long, default_value_t = 20)]
    pub heartbeat_secs: u64,
    /// Brokers long-polling the log; 0 skips the phase.
    #[arg(long, default_value_t = 500)]
    pub pollers: usize,
    /// Commits whose propagation is timed.
    #[arg(long, default_value_t = 100)]
    pub commits: usize,
}

/// Runs the benchmark and prints its figures.
pub fn controller(args: &ControllerArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(args))
}

async fn run(args: &ControllerArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the kraftd executable")?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let opts = QuorumOptions::new(exe, scratch.path(), 3)
        .env("KRAFTD_BROKER_SESSION_TIMEOUT_MS", 9_000)
        .env("RUST_LOG", "warn");
    let mut q = LocalQuorum::start(opts).await?;
    let res = phases(&mut q, args).await;
    if let Err(e) = &res {
        eprintln!("kraftd bench controller failed: {e:#}\n{}", q.logs(30));
    }
    q.stop_all(Duration::from_secs(10)).await?;
    res
}

async fn phases(q: &mut LocalQuorum, args: &ControllerArgs) -> anyhow::Result<()> {
    q.wait_ready_all(Duration::from_secs(60)).await?;
    let leader = q.wait_leader(Duration::from_secs(60)).await?;
    let lc = q.client(leader)?;
    let clients: Vec<Client> = q
        .ids()
        .iter()
        .map(|&i| q.client(i))
        .collect::<Result<_, _>>()?;
    println!(
        "kraftd bench controller: 3 local nodes (cluster {}), leader node {leader}",
        q.cluster_id()
    );
    // Ten brokers in three racks to place topics on.
    let (placement_fleet, _) = Fleet::start(
        &clients,
        q.cluster_id(),
        &(1..=10).collect::<Vec<_>>(),
        |id| Some(format!("rack-{}", id % 3)),
        Duration::from_millis(1_000),
    )
    .await?;
    wait_active(&lc, 10).await?;
    // Propagation first: the heartbeat phase leaves 2,000 brokers to be fenced later.
    if args.pollers > 0 && args.commits > 0 {
        propagation(&clients, &lc, args).await?;
    }
    if args.brokers > 0 && args.heartbeat_secs > 0 {
        let pid = q.node(leader)?.pid().context("leader pid")?;
        heartbeats(q.cluster_id(), &lc, pid, args).await?;
    }
    if args.topic_clients > 0 && args.topic_secs > 0 {
        topic_creation(&lc, args).await;
    }
    placement_fleet.stop().await;
    Ok(())
}

async fn wait_active(c: &Client, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let active = c
            .brokers()
            .await?
            .iter()
            .filter(|b| b.state == "active")
            .count();
        if active >= n {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {active} of {n} brokers became active"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn topic_creation(c: &Client, args: &ControllerArgs) {
    let next = Arc::new(AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    let end = Instant::now() + Duration::from_secs(args.topic_secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.topic_clients {
        let (c, next, lat, failed) = (c.clone(), next.clone(), lat.clone(), failed.clone());
        let partitions = args.partitions;
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let r = c
                    .create_topic(&CreateTopic {
                        name: format!("bench-{n}"),
                        partitions: Some(partitions),
                        replication_factor: Some(3),
                        ..Default::default()
                    })
                    .await;
                match r {
                    Ok(_) => lat.lock().map(|mut l| l.push(t.elapsed())).unwrap_or(()),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let took = started.elapsed();
    let mut l = lat.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort();
    println!(
        "topic creation, {} clients, {} partitions x RF 3 each, {:.0} s: {} topics, {:.0} topics/s ({:.0} partitions/s); latency p50 {} p99 {}; failed {}",
        args.topic_clients,
        args.partitions,
        took.as_secs_f64(),
        l.len(),
        l.len() as f64 / took.as_secs_f64(),
        l.len() as f64 * args.partitions as f64 / took.as_secs_f64(),
        ms(percentile(&l, 0.5)),
        ms(percentile(&l, 0.99)),
        failed.load(Ordering::Relaxed)
    );
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / hz.max(1.0))
}

async fn heartbeats(
    cluster_id: &str,
    leader: &Client,
    pid: u32,
    args: &ControllerArgs,
) -> anyhow::Result<()> {
    let ids: Vec<i32> = (1_000..1_000 + args.brokers as i32).collect();
    let t = Instant::now();
    let (fleet, _) = Fleet::start(
        std::slice::from_ref(leader),
        cluster_id,
        &ids,
        |id| Some(format!("rack-{}", id % 5)),
        Duration::from_millis(args.heartbeat_ms),
    )
    .await?;
    println!(
        "heartbeats: registered {} brokers in {:.1} s",
        args.brokers,
        t.elapsed().as_secs_f64()
    );
    fleet.set_offset(leader.quorum_status().await?.high_watermark);
    // One interval for every broker to be unfenced, then measure.
    tokio::time::sleep(Duration::from_millis(args.heartbeat_ms * 2)).await;
    let hb0 = fleet.stats.heartbeats.load(Ordering::Relaxed);
    let err0 = fleet.stats.errors.load(Ordering::Relaxed);
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.heartbeat_secs)).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds(pid);
    let hb = fleet.stats.heartbeats.load(Ordering::Relaxed) - hb0;
    let errors = fleet.stats.errors.load(Ordering::Relaxed) - err0;
    let brokers = leader.brokers().await?;
    let fenced = brokers
        .iter()
        .filter(|b| b.id >= 1_000 && b.state != "active")
        .count();
    let share = match (cpu0, cpu1) {
        (Some(a), Some(b)) => format!("{:.1}% of one core", (b - a) / wall * 100.0),
        _ => "unknown (no /proc)".into(),
    };
    println!(
        "heartbeats: {} brokers every {} ms for {:.0} s: {:.0} heartbeats/s answered by the leader, {} failed; fenced now: {}; wrongly fenced after being unfenced: {}; leader CPU {}",
        args.brokers,
        args.heartbeat_ms,
        wall,
        hb as f64 / wall,
        errors,
        fenced,
        fleet.stats.fenced_after_unfence.load(Ordering::Relaxed),
        share
    );
    fleet.stop().await;
    // Unregister them, so the next phase neither places replicas on them nor pays for
    // fencing 2,000 brokers when their sessions run out.
    let ids = Arc::new(Mutex::new(ids));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, ids) = (leader.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(id) = ids.lock().ok().and_then(|mut v| v.pop()) else {
                    return;
                };
                let _ = c.unregister_broker(id).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// When a poller saw the high watermark move, and to what.
type Seen = Mutex<Vec<(Instant, i64)>>;

/// Times from a commit (its writer's acknowledgement) until each long-polling broker has
/// the record. Pollers spread over all three controllers.
async fn propagation(
    clients: &[Client],
    leader: &Client,
    args: &ControllerArgs,
) -> anyhow::Result<()> {
    let start = leader.quorum_status().await?.high_watermark;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen: Arc<Vec<Seen>> =
        Arc::new((0..args.pollers).map(|_| Mutex::new(Vec::new())).collect());
    let mut tasks = Vec::new();
    for i in 0..args.pollers {
        let c = clients[i % clients.len()].clone();
        let (stop, seen) = (stop.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = start;
            while !stop.load(Ordering::Relaxed) {
                match c
                    .fetch_log(next, Some(1 << 20), Some(Duration::from_secs(2)))
                    .await
                {
                    Ok(f) => {
                        let now = Instant::now();
                        if f.high_watermark > next && !f.batches.is_empty() {
                            next = f.high_watermark;
                            if let Ok(mut s) = seen[i].lock() {
                                s.push((now, next));
                            }
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }));
    }
    // Let every poller park in its long poll.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut commits = Vec::with_capacity(args.commits);
    for i in 0..args.commits {
        let ack = leader
            .alter_config(
                ConfigKind::Broker,
                "1",
                &ConfigPatch::set_one("bench.propagation", i.to_string()),
            )
            .await?;
        commits.push((Instant::now(), ack.offset as i64));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let mut all = Vec::new();
    let mut last_of_each = Vec::new();
    let mut missing = 0usize;
    for (at, offset) in &commits {
        let mut worst = Duration::ZERO;
        for s in seen.iter() {
            let s = s.lock().map(|s| s.clone()).unwrap_or_default();
            match s.iter().find(|(_, hw)| *hw > *offset) {
                Some((t, _)) => {
                    let d = t.saturating_duration_since(*at);
                    all.push(d);
                    worst = worst.max(d);
                }
                None => missing += 1,
            }
        }
        last_of_each.push(worst);
    }
    all.sort();
    last_of_each.sort();
    println!(
        "propagation to {} long-polling brokers (over 3 controllers), {} commits: per broker p50 {} p99 {}; until all have it p50 {} p99 {} max {}; never seen {}",
        args.pollers,
        commits.len(),
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
        ms(percentile(&last_of_each, 0.5)),
        ms(percentile(&last_of_each, 0.99)),
        ms(last_of_each.last().copied().unwrap_or_default()),
        missing
    );
    Ok(())
}
