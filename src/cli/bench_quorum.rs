//! `kraftd bench quorum`: starts a local three-node quorum of this executable in a scratch
//! directory and prints what a client sees: write latency, write throughput under
//! concurrency, write latency while the leader hands leadership over (`quorum
//! transfer-leader`), and the time from `kill -9` of the leader to the next acknowledged
//! write.
//! It prints figures and never asserts them; every phase is bounded.

use anyhow::{bail, Context};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::local_quorum::{LocalQuorum, QuorumOptions};
use crate::client::{Client, ClientError};

/// `kraftd bench quorum` arguments.
#[derive(Debug, clap::Args)]
pub struct QuorumArgs {
    /// Sequential single-client writes for the latency figures (sent to the leader).
    #[arg(long, default_value_t = 2_000)]
    pub writes: usize,
    /// Sequential writes sent to a follower (forwarded to the leader); 0 skips this phase.
    #[arg(long, default_value_t = 500)]
    pub follower_writes: usize,
    /// Concurrent clients for the throughput figure.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds the throughput phase runs.
    #[arg(long, default_value_t = 10)]
    pub throughput_secs: u64,
    /// Leadership transfers under concurrent writes, for the latency writes see during one;
    /// 0 skips this phase.
    #[arg(long, default_value_t = 5)]
    pub transfer_trials: usize,
    /// Leader kill -9 trials for the failover figures; 0 skips this phase.
    #[arg(long, default_value_t = 10)]
    pub failover_trials: usize,
    /// Give up on one failover trial after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub failover_timeout_secs: u64,
    /// Keep the nodes' data and logs in this directory (it must not hold a quorum already);
    /// otherwise a scratch directory is removed at the end.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// TLS on both listeners and mutual TLS between the nodes, with certificates `kraftd
    /// certs` makes in the directory; the clients are the operator, by certificate.
    #[arg(long)]
    pub tls: bool,
}

/// Runs the benchmark and prints its figures.
pub fn quorum(args: &QuorumArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(args))
}

const READY_TIMEOUT: Duration = Duration::from_secs(60);

async fn run(args: &QuorumArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the kraftd executable")?;
    let scratch;
    let base = match &args.keep {
        Some(d) => d.clone(),
        None => {
            scratch = tempfile::tempdir().context("creating a scratch directory")?;
            scratch.path().to_path_buf()
        }
    };
    let mut opts = QuorumOptions::new(exe, &base, 3);
    if args.tls {
        let certs = base.join("certs");
        super::certs::run(&super::certs::CertsArgs {
            dir: certs.clone(),
            controllers: vec![1, 2, 3],
            brokers: Vec::new(),
            hosts: Vec::new(),
            days: 1,
        })
        .map_err(|e| anyhow::anyhow!("kraftd certs: {e}"))?;
        opts = opts.secure(&certs)?;
    }
    let mut q = LocalQuorum::start(opts).await?;
    let res = phases(&mut q, args).await;
    if let Err(e) = &res {
        eprintln!("kraftd bench quorum failed: {e:#}\n{}", q.logs(30));
    }
    q.stop_all(Duration::from_secs(10)).await?;
    if args.keep.is_some() {
        println!("  kept: {} (node data and logs)", base.display());
    }
    res
}

async fn phases(q: &mut LocalQuorum, args: &QuorumArgs) -> anyhow::Result<()> {
    let t = Instant::now();
    q.wait_ready_all(READY_TIMEOUT).await?;
    let leader = q.wait_leader(READY_TIMEOUT).await?;
    println!(
        "kraftd bench quorum: 3 local nodes{} in {} (cluster {}), leader node {leader} after {:.0} ms",
        if args.tls { " over TLS" } else { "" },
        q.base_dir().display(),
        q.cluster_id(),
        t.elapsed().as_secs_f64() * 1e3
    );

    let leader_client = q.client(leader)?;
    if args.writes > 0 {
        let s = sequential_writes(&leader_client, args.writes, "lat").await;
        s.print(&format!(
            "write latency, 1 client -> leader ({} writes)",
            args.writes
        ));
    }
    if args.follower_writes > 0 {
        let follower = q
            .ids()
            .into_iter()
            .find(|&id| id != leader)
            .context("no follower")?;
        let s = sequential_writes(&q.client(follower)?, args.follower_writes, "fwd").await;
        s.print(&format!(
            "write latency, 1 client -> follower, forwarded ({} writes)",
            args.follower_writes
        ));
    }
    if args.clients > 0 && args.throughput_secs > 0 {
        throughput(
            &leader_client,
            args.clients,
            Duration::from_secs(args.throughput_secs),
        )
        .await;
    }
    if args.transfer_trials > 0 {
        transfers(q, args.transfer_trials).await?;
    }
    if args.failover_trials > 0 {
        failover(
            q,
            args.failover_trials,
            Duration::from_secs(args.failover_timeout_secs),
        )
        .await?;
    }
    Ok(())
}

/// Latencies of successful calls and a count of failed ones.
#[derive(Default)]
struct Samples {
    ok: Vec<Duration>,
    failed: usize,
    first_error: Option<String>,
}

impl Samples {
    fn record(&mut self, took: Duration, res: Result<(), ClientError>) {
        match res {
            Ok(()) => self.ok.push(took),
            Err(e) => {
                self.failed += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e.to_string());
                }
            }
        }
    }

    fn merge(&mut self, other: Samples) {
        self.ok.extend(other.ok);
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn print(mut self, title: &str) {
        let pad = " ".repeat(title.len() - title.trim_start().len());
        println!("  {title}:");
        self.ok.sort_unstable();
        if self.ok.is_empty() {
            println!("    {pad}no write succeeded");
        } else {
            println!(
                "    {pad}p50 {}  p99 {}  max {}",
                ms(percentile(&self.ok, 0.50)),
                ms(percentile(&self.ok, 0.99)),
                ms(self.ok[self.ok.len() - 1]),
            );
        }
        if self.failed > 0 {
            println!(
                "    {pad}{} failed (first: {})",
                self.failed,
                self.first_error.as_deref().unwrap_or("?")
            );
        }
    }
}

/// What kind of failure a write met, in a few words.
fn short_error(e: &ClientError) -> String {
    match e {
        ClientError::Api(a) => format!("{} {}", a.status.as_u16(), a.code),
        ClientError::Transport { source, .. } if source.is_timeout() => "timed out".into(),
        ClientError::Transport { source, .. } if source.is_connect() => "connect failed".into(),
        ClientError::Transport { .. } => "transport error".into(),
        ClientError::Decode { .. } => "undecodable answer".into(),
    }
}

/// The `q`-quantile of sorted samples (nearest rank).
pub(crate) fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn sequential_writes(client: &Client, n: usize, prefix: &str) -> Samples {
    let mut s = Samples::default();
    for i in 0..n {
        let key = format!("bench.{prefix}{}", i % 100);
        let t = Instant::now();
        let res = client
            .set_broker_config("1", &key, &i.to_string())
            .await
            .map(drop);
        s.record(t.elapsed(), res);
    }
    s
}

async fn throughput(client: &Client, clients: usize, duration: Duration) {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    let client = Arc::new(client.clone());
    for c in 0..clients {
        let client = Arc::clone(&client);
        tasks.push(tokio::spawn(async move {
            let mut s = Samples::default();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let res = client
                    .set_broker_config("1", &format!("bench.tp{c}"), &i.to_string())
                    .await
                    .map(drop);
                s.record(t.elapsed(), res);
                i += 1;
            }
            s
        }));
    }
    let mut all = Samples::default();
    for t in tasks {
        match t.await {
            Ok(s) => all.merge(s),
            Err(e) => {
                all.failed += 1;
                all.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let elapsed = started.elapsed();
    let acked = all.ok.len();
    println!(
        "  write throughput, {clients} concurrent clients -> leader, {:.1} s: {acked} records acknowledged = {:.0} records/s",
        elapsed.as_secs_f64(),
        acked as f64 / elapsed.as_secs_f64()
    );
    all.print("  latency under that load");
}

/// Writers in the transfer phase: two per node, so some write to the old leader (forwarded
/// once it follows), some to the new one, some to the third.
const TRANSFER_WRITERS: usize = 6;
/// A transfer-phase writer retries a write answered NOT_CONTROLLER this often, for up to
/// this long, as a client should; its latency is the whole time.
const TRANSFER_RETRY_EVERY: Duration = Duration::from_millis(5);
const TRANSFER_RETRY_FOR: Duration = Duration::from_secs(5);
/// How long the writers run before a transfer starts and after it has finished.
const TRANSFER_MARGIN: Duration = Duration::from_millis(300);

/// `trials` times: writers through every node, and the leader asked to hand leadership to
/// the voter furthest along. Prints each transfer's time and the latency of every write
/// sent from just before it started to just after it finished, retries included.
async fn transfers(q: &mut LocalQuorum, trials: usize) -> anyhow::Result<()> {
    let clients: Vec<Client> = q
        .ids()
        .into_iter()
        .map(|id| q.client(id))
        .collect::<anyhow::Result<_>>()?;
    let mut all = Samples::default();
    let mut times = Vec::with_capacity(trials);
    let mut retries = 0;
    println!("  leadership transfer under {TRANSFER_WRITERS} concurrent writers (through every node), {trials} trials:");
    for trial in 1..=trials {
        let leader = q.wait_leader(READY_TIMEOUT).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..TRANSFER_WRITERS)
            .map(|w| {
                let (c, stop) = (clients[w % clients.len()].clone(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut s = Samples::default();
                    let mut i = 0u64;
                    let mut retried = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let key = format!("bench.tl{w}");
                        let res = loop {
                            let res = c.set_broker_config("1", &key, &i.to_string()).await;
                            match res {
                                Err(ClientError::Api(a))
                                    if a.code == "NOT_CONTROLLER"
                                        && t.elapsed() < TRANSFER_RETRY_FOR =>
                                {
                                    retried += 1;
                                    tokio::time::sleep(TRANSFER_RETRY_EVERY).await;
                                }
                                res => break res.map(drop),
                            }
                        };
                        s.record(t.elapsed(), res);
                        i += 1;
                    }
                    (s, retried)
                })
            })
            .collect();
        tokio::time::sleep(TRANSFER_MARGIN).await;
        let t = Instant::now();
        let res = q.client(leader)?.transfer_leader(None).await;
        let took = t.elapsed();
        tokio::time::sleep(TRANSFER_MARGIN).await;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            match task.await {
                Ok((s, r)) => {
                    all.merge(s);
                    retries += r;
                }
                Err(e) => {
                    all.failed += 1;
                    all.first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        match res {
            Ok(m) => {
                println!(
                    "    trial {trial}: node {} -> node {} (epoch {} -> {}) in {}",
                    m.previous_leader_id,
                    m.leader_id,
                    m.previous_leader_epoch,
                    m.leader_epoch,
                    ms(took)
                );
                times.push(took);
            }
            Err(e) => println!("    trial {trial}: transfer from node {leader} failed: {e}"),
        }
    }
    times.sort_unstable();
    if let (Some(first), Some(last)) = (times.first(), times.last()) {
        println!(
            "    transfer took: median {}  min {}  max {}",
            ms(percentile(&times, 0.5)),
            ms(*first),
            ms(*last)
        );
    }
    all.print(&format!(
        "  write latency around the transfers, NOT_CONTROLLER retried every {} ms ({retries} retries)",
        TRANSFER_RETRY_EVERY.as_millis()
    ));
    Ok(())
}

async fn failover(q: &mut LocalQuorum, trials: usize, limit: Duration) -> anyhow::Result<()> {
    let mut times = Vec::with_capacity(trials);
    let mut failed = 0;
    for trial in 1..=trials {
        let leader = q.wait_leader(READY_TIMEOUT).await?;
        let survivors: Vec<Client> = q
            .ids()
            .into_iter()
            .filter(|&id| id != leader)
            .map(|id| Ok(q.client(id)?.with_call_timeout(Duration::from_secs(2))))
            .collect::<anyhow::Result<_>>()?;
        if survivors.is_empty() {
            bail!("failover needs at least two nodes");
        }
        let killed_at = Instant::now();
        q.kill9(leader).await?;
        let mut attempt = 0usize;
        let mut errors: Vec<(Duration, String)> = Vec::new();
        let took = loop {
            let c = &survivors[attempt % survivors.len()];
            attempt += 1;
            let sent = killed_at.elapsed();
            let res = c
                .set_broker_config("1", "bench.failover", &trial.to_string())
                .await;
            match res {
                Ok(_) => break Some(killed_at.elapsed()),
                Err(e) => errors.push((sent, short_error(&e))),
            }
            if killed_at.elapsed() >= limit {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        match took {
            Some(d) => {
                println!(
                    "    trial {trial}: killed leader node {leader}; first acknowledged write after {} ({} failed attempts{})",
                    ms(d),
                    errors.len(),
                    errors
                        .last()
                        .map(|(at, e)| format!(", the last sent at {}: {e}", ms(*at)))
                        .unwrap_or_default()
                );
                times.push(d);
            }
            None => {
                failed += 1;
                println!(
                    "    trial {trial}: killed leader node {leader}; no write acknowledged within {limit:?}"
                );
            }
        }
        q.restart(leader).await?;
        q.wait_ready(leader, READY_TIMEOUT).await?;
    }
    times.sort_unstable();
    println!(
        "  failover (kill -9 of the leader -> first acknowledged write through a survivor), {} trials:",
        trials
    );
    if times.is_empty() {
        println!("    no trial saw a write acknowledged");
    } else {
        println!(
            "    median {}  min {}  max {}{}",
            ms(percentile(&times, 0.5)),
            ms(times[0]),
            ms(times[times.len() - 1]),
            if failed > 0 {
                format!("  ({failed} trials gave up)")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&v[..1], 0.99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
