//! Shared runbook steps of the multi-process quorum tests: a scenario owns a
//! [`LocalQuorum`] of the real `kraftd` binary in a scratch directory, prints where
//! everything is (directory, ports, seed), and prints every node's log when the test fails.
//!
//! Scenarios run one at a time within a test binary (cargo runs binaries one after the
//! other): three controllers fsyncing on a two-core machine are load enough.

#![allow(dead_code)] // each test binary uses a different subset

use bytes::Bytes;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kraftd::cli::fleet::{Fleet, SimBroker};
use kraftd::cli::local_quorum::{LocalQuorum, QuorumOptions};
use kraftd::client::{Client, ClientError, ConfigKind, QuorumStatus};
use kraftd::record::batch::BatchIter;
use serde_json::Value;

/// Hard bound of one scenario; each is meant to take well under a minute.
pub const SCENARIO_LIMIT: Duration = Duration::from_secs(150);
/// Bound of "the quorum comes up".
pub const READY: Duration = Duration::from_secs(60);
/// Bound of "a leader is (re-)elected".
pub const ELECTION: Duration = Duration::from_secs(30);
/// Bound of "the nodes converge".
pub const CONVERGE: Duration = Duration::from_secs(40);
/// Idle no-ops off, so the high watermark only moves with our writes and nodes can be
/// compared at an exact offset.
pub const NO_NOOPS: (&str, &str) = ("KRAFTD_NOOP_INTERVAL_MS", "3600000");
/// The broker whose config the writers fill.
pub const BROKER: &str = "1";

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs one scenario: one at a time, on a fresh runtime, within [`SCENARIO_LIMIT`].
pub fn run<F: Future<Output = ()>>(name: &str, body: F) {
    let _one_at_a_time: MutexGuard<'_, ()> = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    eprintln!("=== scenario {name}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    rt.block_on(async {
        if tokio::time::timeout(SCENARIO_LIMIT, body).await.is_err() {
            panic!("scenario {name} did not finish within {SCENARIO_LIMIT:?}");
        }
    });
    eprintln!(
        "=== scenario {name} passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A tiny deterministic generator (xorshift64*), seeded from `KRAFTD_TEST_SEED` or the
/// clock; the seed is printed so a run can be repeated.
pub struct Rng(u64);

impl Rng {
    pub fn from_env() -> (Rng, u64) {
        let seed = std::env::var("KRAFTD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        (Rng(seed.max(1)), seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A quorum of the real binary in a scratch directory; prints every node's log if the
/// test panics while it lives.
pub struct Scenario {
    pub q: LocalQuorum,
    pub rng: Rng,
    dir: Option<tempfile::TempDir>,
}

impl Scenario {
    /// Formats and starts `nodes` nodes with `env`, waits until all are ready and agree on
    /// a leader.
    pub async fn start(nodes: usize, env: &[(&str, &str)]) -> Scenario {
        Self::start_as(nodes, env, None).await
    }

    /// [`Scenario::start`] on nodes with a principals file: the quorum's own clients send
    /// `token`.
    pub async fn start_as(nodes: usize, env: &[(&str, &str)], token: Option<&str>) -> Scenario {
        Self::start_opts(nodes, env, |mut o| {
            o.token = token.map(str::to_string);
            o
        })
        .await
    }

    /// [`Scenario::start`] with TLS and authentication from `certs` (made by `kraftd
    /// certs`); the quorum's own clients are the operator.
    pub async fn start_secure(
        nodes: usize,
        env: &[(&str, &str)],
        certs: &std::path::Path,
    ) -> Scenario {
        Self::start_opts(nodes, env, |o| o.secure(certs).unwrap()).await
    }

    async fn start_opts(
        nodes: usize,
        env: &[(&str, &str)],
        adjust: impl FnOnce(QuorumOptions) -> QuorumOptions,
    ) -> Scenario {
        let dir = tempfile::Builder::new()
            .prefix("kraftd-quorum-test-")
            .tempdir()
            .unwrap();
        let mut opts = QuorumOptions::new(env!("CARGO_BIN_EXE_kraftd"), dir.path(), nodes);
        for (k, v) in env {
            opts = opts.env(*k, v);
        }
        let opts = adjust(opts);
        let q = LocalQuorum::start(opts).await.unwrap();
        let (rng, seed) = Rng::from_env();
        eprintln!(
            "  base dir {}, cluster id {}, seed {seed} (KRAFTD_TEST_SEED={seed} repeats it), env {env:?}",
            dir.path().display(),
            q.cluster_id()
        );
        for n in q.nodes() {
            eprintln!("  node {}: api {} peer {}", n.id, n.api_addr, n.peer_addr);
        }
        let mut s = Scenario {
            q,
            rng,
            dir: Some(dir),
        };
        s.q.wait_ready_all(READY).await.unwrap();
        let leader = s.q.wait_leader(ELECTION).await.unwrap();
        eprintln!("  all nodes ready; leader is node {leader}");
        s
    }

    pub fn client(&self, id: u64) -> Client {
        self.q.client(id).unwrap()
    }

    /// Clients of the nodes `ids`, with their ids.
    pub fn clients(&self, ids: &[u64]) -> Vec<(u64, Client)> {
        ids.iter().map(|&id| (id, self.client(id))).collect()
    }

    pub async fn leader(&mut self) -> u64 {
        self.q.wait_leader(ELECTION).await.unwrap()
    }

    pub async fn status(&self, id: u64) -> QuorumStatus {
        self.client(id).quorum_status().await.unwrap()
    }

    /// Registers brokers `ids` (racks by `rack_of`) through every node in turn, heartbeats
    /// them every `interval`, and waits until the leader sees all of them active.
    pub async fn start_brokers(
        &mut self,
        ids: &[i32],
        rack_of: impl Fn(i32) -> Option<String>,
        interval: Duration,
    ) -> (Fleet, Vec<SimBroker>) {
        let clients: Vec<Client> = self.q.ids().iter().map(|&i| self.client(i)).collect();
        let (fleet, brokers) = Fleet::start(&clients, self.q.cluster_id(), ids, rack_of, interval)
            .await
            .unwrap();
        let leader = self.leader().await;
        let c = self.client(leader);
        let want: Vec<i32> = ids.to_vec();
        eventually("the brokers are active", CONVERGE, || async {
            let b = c.brokers().await.map_err(err_text)?;
            let active: Vec<i32> = b
                .iter()
                .filter(|b| b.state == "active")
                .map(|b| b.id)
                .collect();
            if want.iter().all(|id| active.contains(id)) {
                Ok(())
            } else {
                Err(format!("{b:?}"))
            }
        })
        .await;
        (fleet, brokers)
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- the scenario failed; node logs ----\n{}",
                self.q.logs(150)
            );
            if let Some(dir) = self.dir.take() {
                eprintln!("  (data kept for inspection in {})", dir.keep().display());
            }
        }
    }
}

/// A write the cluster acknowledged.
#[derive(Debug, Clone)]
pub struct Acked {
    pub key: String,
    pub value: String,
    pub offset: i64,
    pub via: u64,
}

/// A background writer: sets broker [`BROKER`]'s config key `<prefix>.k<i>` = `v<i>`,
/// spreading the writes over its target nodes in turn and moving on to the next node after
/// an error. It stops when told, after `max_writes`, or after `max_time`.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
    errors: Arc<AtomicUsize>,
    targets: Arc<Mutex<Vec<(u64, Client)>>>,
    task: tokio::task::JoinHandle<Option<String>>,
}

impl Writer {
    pub fn spawn(prefix: &str, targets: Vec<(u64, Client)>) -> Writer {
        Self::spawn_bounded(prefix, targets, 50_000, Duration::from_secs(120))
    }

    pub fn spawn_bounded(
        prefix: &str,
        targets: Vec<(u64, Client)>,
        max_writes: usize,
        max_time: Duration,
    ) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicUsize::new(0));
        let targets = Arc::new(Mutex::new(targets));
        let prefix = prefix.to_string();
        let task = {
            let (stop, acked, errors, targets) =
                (stop.clone(), acked.clone(), errors.clone(), targets.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let mut last_error = None;
                for i in 0..max_writes {
                    if stop.load(Ordering::SeqCst) || started.elapsed() >= max_time {
                        break;
                    }
                    let target = {
                        let t = targets.lock().unwrap();
                        if t.is_empty() {
                            None
                        } else {
                            Some(t[i % t.len()].clone())
                        }
                    };
                    let Some((id, client)) = target else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let (key, value) = (format!("{prefix}.k{i}"), format!("v{i}"));
                    match client.set_broker_config(BROKER, &key, &value).await {
                        Ok(ack) => acked.lock().unwrap().push(Acked {
                            key,
                            value,
                            offset: ack.offset,
                            via: id,
                        }),
                        Err(e) => {
                            errors.fetch_add(1, Ordering::SeqCst);
                            last_error = Some(format!("via node {id}: {e}"));
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                last_error
            })
        };
        Writer {
            stop,
            acked,
            errors,
            targets,
            task,
        }
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    pub fn set_targets(&self, targets: Vec<(u64, Client)>) {
        *self.targets.lock().unwrap() = targets;
    }

    /// Waits until at least `n` writes were acknowledged in all.
    pub async fn wait_acked(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.acked_count() < n {
            assert!(
                Instant::now() < deadline && !self.task.is_finished(),
                "the writer got {} of {n} writes acknowledged within {timeout:?} ({} errors)",
                self.acked_count(),
                self.errors.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the writer; returns what was acknowledged.
    pub async fn stop(self) -> Vec<Acked> {
        self.stop.store(true, Ordering::SeqCst);
        let last_error = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the writer stops within 30 s")
            .expect("the writer task does not panic");
        let acked = std::mem::take(&mut *self.acked.lock().unwrap());
        eprintln!(
            "  writer: {} writes acknowledged, {} failed{}",
            acked.len(),
            self.errors.load(Ordering::SeqCst),
            last_error.map_or_else(String::new, |e| format!(" (last error: {e})"))
        );
        acked
    }
}

/// Sets one key through `client`, retrying retriable errors (no leader yet) for up to 20 s.
pub async fn write_config(client: &Client, key: &str, value: &str) -> kraftd::client::WriteAck {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.set_broker_config(BROKER, key, value).await {
            Ok(a) => return a,
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("writing {key}={value} via {}: {e}", client.base_url()),
        }
    }
}

/// Waits until every node of `ids` has applied at least up to `min_end` (exclusive) and all
/// report the same high watermark; returns it.
pub async fn wait_same_high_watermark(s: &Scenario, ids: &[u64], min_end: i64) -> i64 {
    match try_same_high_watermark(s, ids, min_end, CONVERGE).await {
        Ok(hw) => hw,
        Err(e) => panic!("{e}"),
    }
}

/// [`wait_same_high_watermark`] that reports instead of panicking.
pub async fn try_same_high_watermark(
    s: &Scenario,
    ids: &[u64],
    min_end: i64,
    timeout: Duration,
) -> Result<i64, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut hws = BTreeMap::new();
        for &id in ids {
            match s.client(id).quorum_status().await {
                Ok(st) => {
                    hws.insert(id, Ok(st.high_watermark));
                }
                Err(e) => {
                    hws.insert(id, Err(e.to_string()));
                }
            }
        }
        let values: Vec<i64> = hws.values().filter_map(|v| v.clone().ok()).collect();
        if values.len() == ids.len()
            && values.iter().all(|&h| h == values[0])
            && values[0] >= min_end
        {
            return Ok(values[0]);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "nodes {ids:?} did not reach one high watermark >= {min_end} within {timeout:?}: {hws:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every node's image (minus offset and epoch), once all of `ids` report the same one at
/// the same offset (bounded); returns it.
pub async fn wait_same_image(s: &Scenario, ids: &[u64], min_end: i64) -> Value {
    match try_same_image(s, ids, min_end, CONVERGE).await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// [`wait_same_image`] that reports instead of panicking.
pub async fn try_same_image(
    s: &Scenario,
    ids: &[u64],
    min_end: i64,
    timeout: Duration,
) -> Result<Value, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let hw = try_same_high_watermark(s, ids, min_end, left).await?;
        let mut images = Vec::new();
        for &id in ids {
            let view = s
                .client(id)
                .image()
                .await
                .map_err(|e| format!("image of node {id}: {e}"))?;
            images.push((id, view));
        }
        let same = images
            .iter()
            .all(|(_, v)| v.image == images[0].1.image && v.offset == images[0].1.offset);
        if same {
            eprintln!(
                "  nodes {ids:?} hold the same image at high watermark {hw} (image offset {})",
                images[0].1.offset
            );
            return Ok(serde_json::Value::Object(images.swap_remove(0).1.image));
        }
        if Instant::now() >= deadline {
            let (first_id, first) = &images[0];
            for (id, v) in &images[1..] {
                if v.image != first.image {
                    return Err(format!(
                        "node {id}'s image (offset {}) differs from node {first_id}'s (offset {}):\n{}\nvs\n{}",
                        v.offset,
                        first.offset,
                        serde_json::to_string(&v.image).unwrap_or_default(),
                        serde_json::to_string(&first.image).unwrap_or_default()
                    ));
                }
            }
            return Err(format!("images kept differing in offset: {images:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sets `n` keys `<prefix>.k<i>` one after the other, through the nodes `via` in turn.
pub async fn write_n(s: &Scenario, via: &[u64], prefix: &str, n: usize) -> Vec<Acked> {
    let mut acked = Vec::with_capacity(n);
    for i in 0..n {
        let id = via[i % via.len()];
        let (key, value) = (format!("{prefix}.k{i}"), format!("v{i}"));
        let ack = write_config(&s.client(id), &key, &value).await;
        acked.push(Acked {
            key,
            value,
            offset: ack.offset,
            via: id,
        });
    }
    acked
}

/// Asserts every acknowledged write is in every node's committed config of [`BROKER`].
pub async fn assert_acked_present(s: &Scenario, ids: &[u64], acked: &[Acked]) {
    for &id in ids {
        let configs = s
            .client(id)
            .get_config(ConfigKind::Broker, BROKER)
            .await
            .unwrap();
        let missing: Vec<&Acked> = acked
            .iter()
            .filter(|a| configs.get(&a.key) != Some(&a.value))
            .collect();
        assert!(
            missing.is_empty(),
            "node {id} lacks {} of {} acknowledged writes, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
    }
    eprintln!(
        "  all {} acknowledged writes are present on nodes {ids:?}",
        acked.len()
    );
}

/// The batches of node `client`'s log holding offsets `from..to`, as (base offset, bytes),
/// fetched in pieces of at most `max_bytes`; every batch is checked (CRC, framing).
pub async fn read_log(client: &Client, from: i64, to: i64, max_bytes: u64) -> Vec<(i64, Bytes)> {
    try_read_log(client, from, to, max_bytes, CONVERGE)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`read_log`] that reports instead of panicking when a fetch keeps failing for `wait`
/// (a node that just changed leader, or has no quorum and so no high watermark it may
/// serve, answers 503 OFFSET_NOT_AVAILABLE: retried until then).
pub async fn try_read_log(
    client: &Client,
    from: i64,
    to: i64,
    max_bytes: u64,
    wait: Duration,
) -> Result<Vec<(i64, Bytes)>, String> {
    let mut out: Vec<(i64, Bytes)> = Vec::new();
    let mut next = from;
    // Each answer holds at least one batch, so this many fetches always suffice.
    let max_fetches = (to - from).max(0) as usize + 1;
    for _ in 0..max_fetches {
        if next >= to {
            break;
        }
        let deadline = Instant::now() + wait;
        let fetch = loop {
            match client.fetch_log(next, Some(max_bytes), None).await {
                Ok(f) => break f,
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    return Err(format!(
                        "{}: fetching the log at {next}: {e}",
                        client.base_url()
                    ))
                }
            }
        };
        assert!(
            !fetch.batches.is_empty(),
            "{}: empty answer at offset {next} below high watermark {} (wanted up to {to})",
            client.base_url(),
            fetch.high_watermark
        );
        let mut iter = BatchIter::new(fetch.batches.clone());
        loop {
            let start = iter.position();
            let Some(batch) = iter.next() else { break };
            let batch = batch.unwrap_or_else(|e| panic!("{}: bad batch: {e}", client.base_url()));
            let raw = fetch.batches.slice(start..iter.position());
            let h = batch.header;
            if h.next_offset() <= next {
                continue; // the answer starts with the batch holding `next`
            }
            if h.base_offset >= to {
                break;
            }
            out.push((h.base_offset, raw));
            next = h.next_offset();
        }
    }
    assert!(
        next >= to,
        "log of {} ends at {next}, wanted {to}",
        client.base_url()
    );
    Ok(out)
}

/// Waits until `check` holds (bounded); panics with `what` and the last observation.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                assert!(
                    Instant::now() < deadline,
                    "{what}: not within {timeout:?}; last seen: {last}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded by `timeout`) until node `client` reports exactly the voters `want`
/// (sorted) and knows a leader.
pub async fn wait_voters(client: &Client, want: &[u64], what: &str, timeout: Duration) {
    let want = want.to_vec();
    eventually(what, timeout, || {
        let client = client.clone();
        let want = want.clone();
        async move {
            let st = client.quorum_status().await.map_err(err_text)?;
            if st.voter_ids() == want && st.leader_id.is_some() {
                Ok(())
            } else {
                Err(format!("{st:?}"))
            }
        }
    })
    .await;
}

/// Waits (bounded by `timeout` each) until every node of `ids` reports exactly the voters
/// `ids` and knows a leader.
pub async fn wait_all_report_voters(s: &Scenario, ids: &[u64], timeout: Duration) {
    for &id in ids {
        wait_voters(
            &s.client(id),
            ids,
            &format!("node {id} reports voters {ids:?}"),
            timeout,
        )
        .await;
    }
}

/// Short text of a client error, for `eventually` observations.
pub fn err_text(e: ClientError) -> String {
    e.to_string()
}

/// Follows every node's log the way brokers do and checks KIP-595's promise: the high
/// watermark a leader serves never goes below one an earlier leader served, and a fetch at
/// an offset a leader served never gets 416 from the node that leads next.
///
/// Per node, one poller fetches at offset 0 without waiting and records the high
/// watermark of every answer from a node that names itself the leader; another long-polls
/// at the highest high watermark seen so far and records every 416.
pub struct HwWatch {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<HwState>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
struct HwState {
    /// Highest high watermark a self-named leader served.
    max_hw: i64,
    samples: usize,
    violations: Vec<String>,
    /// 416 answers: node, offset asked, when.
    refusals: Vec<(u64, i64, Instant)>,
    /// 503 OFFSET_NOT_AVAILABLE answers (a wait that ran out, allowed).
    not_available: usize,
}

impl HwWatch {
    pub fn spawn(targets: Vec<(u64, Client)>) -> HwWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(HwState::default()));
        let mut tasks = Vec::new();
        for (id, client) in targets {
            let (stop1, state1, c1) = (stop.clone(), state.clone(), client.clone());
            tasks.push(tokio::spawn(async move {
                while !stop1.load(Ordering::SeqCst) {
                    let bound = state1.lock().unwrap().max_hw;
                    match c1.fetch_log(0, Some(1), None).await {
                        Ok(f) if f.leader_id == Some(id) => {
                            let mut st = state1.lock().unwrap();
                            st.samples += 1;
                            if f.high_watermark < bound {
                                st.violations.push(format!(
                                    "node {id}, leader in epoch {:?}, served high watermark {} after a leader had served {bound}",
                                    f.leader_epoch, f.high_watermark
                                ));
                            }
                            st.max_hw = st.max_hw.max(f.high_watermark);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if e.code() == Some("OFFSET_NOT_AVAILABLE") {
                                state1.lock().unwrap().not_available += 1;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(4)).await;
                }
            }));
            let (stop2, state2, c2) = (stop.clone(), state.clone(), client);
            tasks.push(tokio::spawn(async move {
                while !stop2.load(Ordering::SeqCst) {
                    let at = state2.lock().unwrap().max_hw;
                    let r = c2
                        .fetch_log(at, Some(1), Some(Duration::from_millis(200)))
                        .await;
                    if let Err(e) = r {
                        {
                            let mut st = state2.lock().unwrap();
                            if e.code() == Some("OFFSET_NOT_AVAILABLE") {
                                st.not_available += 1;
                            } else if e.status().map(|s| s.as_u16()) == Some(416) {
                                st.refusals.push((id, at, Instant::now()));
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(4)).await;
                }
            }));
        }
        HwWatch { stop, state, tasks }
    }

    /// Stops polling; panics on a high watermark that went back, or on a 416 from node
    /// `next_leader` after `since` (when it held every offset a leader had served).
    pub async fn stop_and_check(self, next_leader: u64, since: Instant) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let st = self.state.lock().unwrap();
        let refused: Vec<(u64, i64)> = st
            .refusals
            .iter()
            .filter(|(id, _, at)| *id == next_leader && *at >= since)
            .map(|(id, off, _)| (*id, *off))
            .collect();
        eprintln!(
            "  high watermark watch: {} answers from leaders, highest {}, {} waits ran out (503), {} 416s from node {next_leader} after the failover",
            st.samples,
            st.max_hw,
            st.not_available,
            refused.len()
        );
        assert!(st.samples > 0, "no leader answered the watch");
        assert!(
            st.violations.is_empty(),
            "the high watermark went back: {:?}",
            st.violations
        );
        assert!(
            refused.is_empty(),
            "fetches at offsets a leader had served got 416 (node, offset): {refused:?}"
        );
    }
}

/// The high watermark of node `id` once it has not moved for 2.5 s (a new leader still
/// writes on its own for a moment: the bootstrap feature levels, the voters' directory ids,
/// checked every 2 s). Needs NoOps off (NO_NOOPS).
pub async fn wait_quiet_log(s: &Scenario, id: u64) -> i64 {
    eventually("the log is quiet", Duration::from_secs(20), || async {
        let a = s.status(id).await.high_watermark;
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let b = s.status(id).await.high_watermark;
        if a == b {
            Ok(b)
        } else {
            Err(format!("high watermark moved {a} -> {b}"))
        }
    })
    .await
}

/// Runs the binary under test's `kraftd certs --dir DIR EXTRA...`.
pub fn kraftd_certs(dir: &std::path::Path, extra: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kraftd"))
        .args(["certs", "--dir"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kraftd certs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Certificates in `expired` that `dir`'s CA issued and that expired an hour ago.
pub fn expired_certs(dir: &std::path::Path, expired: &std::path::Path) {
    std::fs::create_dir_all(expired).unwrap();
    for f in ["ca.pem", "ca-key.pem"] {
        std::fs::copy(dir.join(f), expired.join(f)).unwrap();
    }
    kraftd_certs(expired, &["--days", "0"]);
}

/// A heartbeat that asks to be unfenced, from a broker that claims to have caught up.
pub fn unfencing_heartbeat(broker_epoch: i64) -> kraftd::client::Heartbeat {
    kraftd::client::Heartbeat {
        broker_epoch,
        current_metadata_offset: i64::MAX / 2,
        want_fence: false,
        want_shutdown: false,
    }
}

/// Concurrent writers for a certificate rotation: each sets `retention.ms` of `topic`
/// over and over through its API address, every write from a new client (so over a new
/// TLS handshake with the server), until stopped.
pub struct HandshakeWriters {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl HandshakeWriters {
    /// One writer per address in `apis`, each with `tls` (read once, so its files may be
    /// rewritten while the writers run).
    pub fn start(apis: Vec<String>, tls: rustls::ClientConfig, topic: &str) -> HandshakeWriters {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks = apis
            .into_iter()
            .enumerate()
            .map(|(w, addr)| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                let (tls, topic) = (tls.clone(), topic.to_string());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let c = Client::new(&addr).unwrap().with_tls(tls.clone()).unwrap();
                        let patch = kraftd::client::ConfigPatch::set_one(
                            "retention.ms",
                            format!("{}", 1000 + i),
                        );
                        match c.alter_config(ConfigKind::Topic, &topic, &patch).await {
                            Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                eprintln!("  writer {w}: {e}");
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                        i += 1;
                    }
                })
            })
            .collect();
        HandshakeWriters {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    /// Stops the writers; returns (writes acknowledged, writes failed).
    pub async fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Runs the real binary with `args` to the end (the offline commands: format, dump,
/// storage, bench).
pub fn kraftd_offline(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kraftd"))
        .args(args)
        .output()
        .expect("run kraftd")
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
