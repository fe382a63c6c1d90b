//! The active controller: turns requests into metadata records and commits them.
//!
//! One task, the controller loop, owns everything a request is checked against: the
//! **view** (the committed image plus every record this controller has appended but not yet
//! seen committed) and the brokers' heartbeat sessions. Requests reach it as jobs. A job
//! checks its request against the view, emits records (which the view applies at once, so
//! the next job sees them) and names its answer. The loop puts the records of every job
//! that arrived together into one record batch (group commit), keeps up to two batches in
//! flight, and answers each job once its batch is committed. A job that emits nothing is
//! answered once everything before it is committed, so no answer reports uncommitted state.
//!
//! The view is cloned from the committed image once per leadership, when the new leader has
//! applied its own first entry; it is never cloned per request. When a batch fails (the
//! leader lost its leadership) the view is dropped and every pending job is answered
//! NOT_CONTROLLER; the next leadership starts from the committed image again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use openraft::error::ClientWriteError;
use openraft::ServerState;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::image::MetadataImage;
use crate::raft::log_store::LogStore;
use crate::raft::state_machine::SmShared;
use crate::raft::{data_batch, epoch_of, NodeId, Raft};
use crate::record::metadata::{MetadataRecord, VersionedRecord};

pub mod brokers;
pub mod configs;
pub mod partitions;
pub mod placement;
pub mod topics;

use brokers::Sessions;

/// Batches in flight at once: one being made durable while the next fills up.
const IN_FLIGHT_BATCHES: usize = 2;
/// Records in one batch, at most (Kafka's limit is 10,000).
pub const MAX_BATCH_RECORDS: usize = 5_000;
/// Bytes of record values in one batch, at most (Kafka's limit is 8 MiB).
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Jobs queued before callers wait.
const QUEUE_DEPTH: usize = 16_384;
/// How long a job waits for this leader's view before it is answered NOT_CONTROLLER.
const VIEW_WAIT: Duration = Duration::from_secs(5);
/// How often sessions are checked for expiry.
const TICK: Duration = Duration::from_millis(50);

/// A committed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteAck {
    /// Offset of the request's last record (or of the last record committed before its
    /// answer, when it wrote none).
    pub offset: u64,
    /// Epoch it was written in.
    pub epoch: i32,
}

/// Why a request was not carried out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControllerError {
    /// The request was checked and refused; nothing was written.
    #[error("{message}")]
    Refused {
        /// Kafka's error code, e.g. `TOPIC_ALREADY_EXISTS`.
        code: &'static str,
        /// For a person.
        message: String,
    },
    /// This node is not (or no longer) the active controller.
    #[error("this controller is not the active controller")]
    NotController {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// Not committed in time (e.g. the leader lost its majority). It may still commit.
    #[error("the write was not committed within {0:?}; it may still be committed later")]
    Timeout(Duration),
    /// Raft or the controller failed.
    #[error("{0}")]
    Internal(String),
}

impl ControllerError {
    /// A refusal with a Kafka error code.
    pub fn refused(code: &'static str, message: impl Into<String>) -> Self {
        ControllerError::Refused {
            code,
            message: message.into(),
        }
    }
}

/// The old name of [`ControllerError`], for the write path's callers.
pub type WriteError = ControllerError;

/// How long a write waits for its commit before the caller is told it timed out (Kafka's
/// request.timeout.ms is 30 s; a controller write that takes this long has lost its quorum).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// A partition: topic id (as an integer) and partition id.
pub type PartitionKey = (u128, i32);

/// Which partitions each broker is in the ISR of, and which partitions have no leader (as
/// Kafka's BrokersToIsrs), so fencing or unfencing a broker touches only its partitions
/// instead of scanning the cluster.
#[derive(Debug, Default)]
pub struct PartitionIndex {
    isr: std::collections::HashMap<i32, std::collections::HashSet<PartitionKey>>,
    leaderless: std::collections::HashSet<PartitionKey>,
}

impl PartitionIndex {
    fn build(image: &MetadataImage) -> Self {
        let mut ix = PartitionIndex::default();
        for t in image.topics() {
            for p in t.partitions() {
                ix.add(t.id().as_u128(), p);
            }
        }
        ix
    }

    fn add(&mut self, topic: u128, p: &crate::image::Partition) {
        let key = (topic, p.id());
        for b in p.isr() {
            self.isr.entry(*b).or_default().insert(key);
        }
        if !p.has_leader() {
            self.leaderless.insert(key);
        }
    }

    fn remove(&mut self, topic: u128, p: &crate::image::Partition) {
        let key = (topic, p.id());
        for b in p.isr() {
            if let Some(set) = self.isr.get_mut(b) {
                set.remove(&key);
                if set.is_empty() {
                    self.isr.remove(b);
                }
            }
        }
        self.leaderless.remove(&key);
    }

    /// Partitions whose ISR holds `broker`, sorted.
    pub fn isr_of(&self, broker: i32) -> Vec<PartitionKey> {
        let mut v: Vec<_> = self
            .isr
            .get(&broker)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Partitions without a leader, sorted.
    pub fn leaderless(&self) -> Vec<PartitionKey> {
        let mut v: Vec<_> = self.leaderless.iter().copied().collect();
        v.sort_unstable();
        v
    }
}

/// What the active controller checks requests against.
pub struct View {
    image: MetadataImage,
    /// Partitions by ISR member, and the leaderless ones.
    pub index: PartitionIndex,
    /// Offset the next emitted record will get.
    next_offset: u64,
    term: u64,
    /// Records emitted by the job being run.
    staged: Vec<VersionedRecord>,
    /// Broker heartbeat sessions (in memory, never replicated).
    pub sessions: Sessions,
    /// When the job runs.
    pub now: Instant,
    /// This cluster's id.
    pub cluster_id: Arc<str>,
    /// A random number per job, for placement.
    pub random: u32,
}

impl View {
    /// The committed image plus every record emitted so far.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// The offset the next emitted record will have.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The epoch (term) of this leadership.
    pub fn epoch(&self) -> i32 {
        i32::try_from(self.term).unwrap_or(i32::MAX)
    }

    /// Emits a record: the view applies it now, and it is written with the job's batch.
    /// Returns its offset. Jobs check their request before emitting, so a record the image
    /// refuses is a controller bug; the loop then drops the view.
    pub fn emit(&mut self, record: MetadataRecord) -> Result<u64, ControllerError> {
        self.stage(VersionedRecord::new(record)).map_err(|e| {
            ControllerError::Internal(format!(
                "the controller built a record its image refuses: {e}"
            ))
        })
    }

    /// Applies `record` and stages it for the job's batch; returns its offset.
    fn stage(&mut self, record: VersionedRecord) -> Result<u64, crate::image::ImageError> {
        self.apply(&record.record)?;
        let offset = self.next_offset;
        self.next_offset += 1;
        self.staged.push(record);
        Ok(offset)
    }

    /// Applies a record to the image and keeps the partition index in step.
    fn apply(&mut self, record: &MetadataRecord) -> Result<(), crate::image::ImageError> {
        let touched: Vec<(Uuid, i32)> = match record {
            MetadataRecord::Partition(r) => vec![(r.topic_id, r.partition_id)],
            MetadataRecord::PartitionChange(r) => vec![(r.topic_id, r.partition_id)],
            MetadataRecord::RemoveTopic(r) => self
                .image
                .topic(&r.topic_id)
                .map(|t| {
                    t.partitions()
                        .iter()
                        .map(|p| (r.topic_id, p.id()))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        for (t, p) in &touched {
            if let Some(old) = self.image.partition(t, *p) {
                self.index.remove(t.as_u128(), old);
            }
        }
        let res = self.image.apply(record);
        for (t, p) in &touched {
            if let Some(new) = self.image.partition(t, *p) {
                self.index.add(t.as_u128(), new);
            }
        }
        res
    }

    /// The topic and partition a key names.
    pub fn partition_at(
        &self,
        key: PartitionKey,
    ) -> Option<(&crate::image::Topic, &crate::image::Partition)> {
        let id = Uuid::from_u128(key.0);
        let t = self.image.topic(&id)?;
        Some((t, t.partition(key.1)?))
    }

    /// Emits records already in versioned form (the raw write path).
    fn emit_versioned(&mut self, records: &[VersionedRecord]) -> Result<(), ControllerError> {
        for r in records {
            self.stage(r.clone()).map_err(|e| {
                ControllerError::refused("INVALID_REQUEST", format!("record refused: {e}"))
            })?;
        }
        Ok(())
    }
}

type Completion = Box<dyn FnOnce(Result<WriteAck, ControllerError>) + Send>;

/// What running a job left to do.
enum Outcome {
    /// The job answered already (a refusal).
    Answered,
    /// Answer once the job's records (or, with none, everything before it) are committed.
    Await(Completion),
}

type Job = Box<dyn FnOnce(Result<&mut View, ControllerError>) -> Outcome + Send>;

enum Event {
    Job(Job),
    /// Run something that appends entries of its own (a membership change) with no batch
    /// in flight, then re-read where the log ends: broker epochs are offsets, so the
    /// controller must know exactly where its next record lands.
    Exclusive {
        go: oneshot::Sender<()>,
        done: oneshot::Receiver<()>,
    },
}

/// The write path of a node.
pub struct Controller {
    tx: mpsc::Sender<Event>,
    /// When a batch was last handed to Raft (ms since the epoch). Requests that write
    /// nothing, such as heartbeats, do not count: the idle NoOp must still go out.
    last_append_ms: Arc<AtomicU64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the loop needs from the node.
pub struct LoopDeps {
    /// Raft.
    pub raft: Raft,
    /// The committed image.
    pub sm: Arc<SmShared>,
    /// The log store (where the next entry starts).
    pub log: LogStore,
    /// This node.
    pub node_id: NodeId,
    /// The cluster id brokers must name.
    pub cluster_id: String,
    /// broker.session.timeout.ms.
    pub session_timeout: Duration,
}

impl Controller {
    /// Starts the controller loop.
    pub fn start(deps: LoopDeps) -> Arc<Controller> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let last_append_ms = Arc::new(AtomicU64::new(now_ms()));
        let c = Arc::new(Controller {
            tx,
            last_append_ms: last_append_ms.clone(),
        });
        let (lp, done_rx) = Loop::new(deps, last_append_ms);
        tokio::spawn(lp.run(rx, done_rx));
        c
    }

    /// Runs `op` against the view; answers with its result once its records are committed.
    pub async fn submit<T, F>(&self, op: F) -> Result<(T, WriteAck), ControllerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut View) -> Result<T, ControllerError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |view| match view.and_then(op) {
            Ok(t) => Outcome::Await(Box::new(move |r| {
                let _ = tx.send(r.map(|ack| (t, ack)));
            })),
            Err(e) => {
                let _ = tx.send(Err(e));
                Outcome::Answered
            }
        });
        self.tx
            .send(Event::Job(job))
            .await
            .map_err(|_| ControllerError::Internal("the controller has stopped".into()))?;
        match tokio::time::timeout(WRITE_TIMEOUT, rx).await {
            Ok(r) => r.map_err(|_| {
                ControllerError::Internal("the controller dropped the request".into())
            })?,
            Err(_) => Err(ControllerError::Timeout(WRITE_TIMEOUT)),
        }
    }

    /// Commits `records` as they are (checked only by the image's replay rules).
    pub async fn write(&self, records: &[VersionedRecord]) -> Result<WriteAck, ControllerError> {
        let records = records.to_vec();
        self.submit(move |v| v.emit_versioned(&records))
            .await
            .map(|((), ack)| ack)
    }

    /// Runs `fut` (a membership change) while the controller writes nothing.
    pub async fn exclusive<T, Fut: std::future::Future<Output = T>>(&self, fut: Fut) -> T {
        let (go_tx, go_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let ev = Event::Exclusive {
            go: go_tx,
            done: done_rx,
        };
        if self.tx.send(ev).await.is_ok() {
            let _ = go_rx.await;
        }
        let out = fut.await;
        let _ = done_tx.send(());
        out
    }

    /// Appends a NoOpRecord if nothing was submitted for `idle`; does not wait for it.
    pub fn noop_if_idle(&self, idle: Duration) {
        let last = self.last_append_ms.load(Ordering::Relaxed);
        if now_ms().saturating_sub(last) < idle.as_millis() as u64 {
            return;
        }
        // Counted now, so the next tick does not queue a second one.
        self.last_append_ms.store(now_ms(), Ordering::Relaxed);
        let job: Job = Box::new(
            |view| match view.and_then(|v| v.emit(MetadataRecord::NoOp)) {
                Ok(_) => Outcome::Await(Box::new(|_| {})),
                Err(_) => Outcome::Answered,
            },
        );
        let _ = self.tx.try_send(Event::Job(job));
    }
}

/// A batch being filled or waiting for a slot.
#[derive(Default)]
struct Open {
    values: Vec<Bytes>,
    bytes: usize,
    /// (records of the batch up to and including the job's last one, answer).
    replies: Vec<(usize, Completion)>,
    predicted_base: u64,
}

struct InFlight {
    seq: u64,
    /// When the batch went to Raft (commit latency).
    submitted: Instant,
    replies: Vec<(usize, Completion)>,
    records: usize,
    predicted_base: u64,
}

struct Done {
    seq: u64,
    result: Result<(u64, i32), ControllerError>,
}

struct Loop {
    deps: LoopDeps,
    view: Option<View>,
    open: Open,
    ready: VecDeque<Open>,
    in_flight: VecDeque<InFlight>,
    deferred: VecDeque<(Instant, Job)>,
    seq: u64,
    done_tx: mpsc::UnboundedSender<Done>,
    cluster_id: Arc<str>,
    last_append_ms: Arc<AtomicU64>,
}

impl Loop {
    /// The loop, and the receiver of its batches' outcomes (which `run` owns).
    fn new(
        deps: LoopDeps,
        last_append_ms: Arc<AtomicU64>,
    ) -> (Loop, mpsc::UnboundedReceiver<Done>) {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let cluster_id: Arc<str> = deps.cluster_id.as_str().into();
        let l = Loop {
            deps,
            view: None,
            open: Open::default(),
            ready: VecDeque::new(),
            in_flight: VecDeque::new(),
            deferred: VecDeque::new(),
            seq: 0,
            done_tx,
            cluster_id,
            last_append_ms,
        };
        (l, done_rx)
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Event>,
        mut done_rx: mpsc::UnboundedReceiver<Done>,
    ) {
        let mut applied = self.deps.sm.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let accepting = self.ready.is_empty();
            tokio::select! {
                ev = rx.recv(), if accepting => {
                    let Some(ev) = ev else { return };
                    self.handle(ev, &mut done_rx).await;
                    // Group commit: take whatever else has queued up.
                    while self.ready.is_empty() {
                        match rx.try_recv() {
                            Ok(ev) => self.handle(ev, &mut done_rx).await,
                            Err(_) => break,
                        }
                    }
                }
                Some(d) = done_rx.recv() => self.completed(d),
                _ = tick.tick() => self.on_tick(),
                r = applied.changed() => {
                    if r.is_err() { return; }
                    self.retry_deferred();
                }
            }
            self.flush();
        }
    }

    /// The leader now, and whether it is us in a term we can build a view for.
    fn leadership(&self) -> (Option<NodeId>, Option<u64>) {
        let m = self.deps.raft.metrics();
        let m = m.borrow();
        let ours = m.state == ServerState::Leader && m.current_leader == Some(self.deps.node_id);
        (m.current_leader, ours.then_some(m.current_term))
    }

    /// Makes sure the view belongs to the current leadership. Err: not the leader. Ok(false):
    /// the leader, but not ready yet (its first entry is not applied, or batches of an
    /// earlier leadership are still in flight).
    fn ensure_view(&mut self) -> Result<bool, ControllerError> {
        let (leader, term) = self.leadership();
        let Some(term) = term else {
            if self.view.is_some() {
                self.drop_view(leader);
            }
            return Err(ControllerError::NotController { leader });
        };
        if self.view.as_ref().is_some_and(|v| v.term == term) {
            return Ok(true);
        }
        if self.view.is_some() {
            self.drop_view(Some(self.deps.node_id));
        }
        if !self.in_flight.is_empty() || self.deps.sm.applied().epoch as u64 != term {
            return Ok(false);
        }
        let (image, applied_end) = {
            let st = self.deps.sm.read();
            (st.image.clone(), st.end_offset)
        };
        let next_offset = self
            .deps
            .log
            .appended_end()
            .unwrap_or(applied_end)
            .max(applied_end);
        let now = Instant::now();
        let sessions = Sessions::fresh(&image, now, self.deps.session_timeout);
        let index = PartitionIndex::build(&image);
        tracing::info!(
            term,
            next_offset,
            brokers = image.broker_count(),
            "active controller: built the view from the committed image; every broker gets a fresh session"
        );
        self.view = Some(View {
            image,
            index,
            next_offset,
            term,
            staged: Vec::new(),
            sessions,
            now,
            cluster_id: self.cluster_id.clone(),
            random: 0,
        });
        Ok(true)
    }

    async fn handle(&mut self, ev: Event, done_rx: &mut mpsc::UnboundedReceiver<Done>) {
        match ev {
            Event::Exclusive { go, done } => {
                // Everything staged goes out now; wait until none of it is in flight.
                let open = std::mem::take(&mut self.open);
                if !open.values.is_empty() {
                    self.ready.push_back(open);
                }
                while let Some(b) = self.ready.pop_front() {
                    self.submit(b);
                }
                while !self.in_flight.is_empty() {
                    match tokio::time::timeout(WRITE_TIMEOUT, done_rx.recv()).await {
                        Ok(Some(d)) => self.completed(d),
                        _ => break,
                    }
                }
                let _ = go.send(());
                let _ = tokio::time::timeout(Duration::from_secs(60), done).await;
                if let (Some(v), Some(end)) = (self.view.as_mut(), self.deps.log.appended_end()) {
                    v.next_offset = end;
                }
            }
            Event::Job(job) => match self.ensure_view() {
                Ok(true) => {
                    self.retry_deferred();
                    self.run_job(job);
                }
                Ok(false) => self.deferred.push_back((Instant::now(), job)),
                Err(e) => {
                    if let Outcome::Await(c) = job(Err(e.clone())) {
                        c(Err(e));
                    }
                }
            },
        }
    }

    fn run_job(&mut self, job: Job) {
        let Some(view) = self.view.as_mut() else {
            return;
        };
        view.now = Instant::now();
        view.random = uuid::Uuid::new_v4().as_u128() as u32;
        let outcome = job(Ok(view));
        let staged = std::mem::take(&mut view.staged);
        match outcome {
            Outcome::Answered => {
                if !staged.is_empty() {
                    // A job that emitted and then failed left the view ahead of the log.
                    tracing::error!("a refused request had emitted records; rebuilding the view");
                    let leader = Some(self.deps.node_id);
                    self.drop_view(leader);
                }
            }
            Outcome::Await(c) => {
                if staged.is_empty() {
                    self.attach(c);
                } else {
                    self.stage(staged, c);
                }
            }
        }
    }

    /// Adds a job's records to the open batch (starting new batches when full) and its
    /// answer to the batch that holds its last record.
    fn stage(&mut self, records: Vec<VersionedRecord>, c: Completion) {
        let first_offset = self
            .view
            .as_ref()
            .map(|v| v.next_offset - records.len() as u64)
            .unwrap_or(0);
        for (i, r) in records.iter().enumerate() {
            let value = match r.to_bytes() {
                Ok(v) => Bytes::from(v),
                Err(e) => {
                    c(Err(ControllerError::Internal(format!(
                        "encoding a record: {e}"
                    ))));
                    let leader = Some(self.deps.node_id);
                    self.drop_view(leader);
                    return;
                }
            };
            if self.open.values.len() >= MAX_BATCH_RECORDS
                || self.open.bytes + value.len() > MAX_BATCH_BYTES
            {
                let full = std::mem::take(&mut self.open);
                self.ready.push_back(full);
            }
            if self.open.values.is_empty() {
                self.open.predicted_base = first_offset + i as u64;
            }
            self.open.bytes += value.len();
            self.open.values.push(value);
        }
        let n = self.open.values.len();
        self.open.replies.push((n, c));
    }

    /// Answers a job that emitted nothing once everything before it is committed.
    fn attach(&mut self, c: Completion) {
        if !self.open.values.is_empty() {
            let n = self.open.values.len();
            self.open.replies.push((n, c));
        } else if let Some(b) = self.ready.back_mut() {
            let n = b.values.len();
            b.replies.push((n, c));
        } else if let Some(b) = self.in_flight.back_mut() {
            b.replies.push((b.records, c));
        } else {
            let (offset, epoch) = match &self.view {
                Some(v) => (v.next_offset.saturating_sub(1), v.epoch()),
                None => (0, 0),
            };
            c(Ok(WriteAck { offset, epoch }));
        }
    }

    /// Hands ready batches to Raft while slots are free.
    fn flush(&mut self) {
        if !self.open.values.is_empty() && self.ready.is_empty() {
            let b = std::mem::take(&mut self.open);
            self.ready.push_back(b);
        }
        while self.in_flight.len() < IN_FLIGHT_BATCHES {
            let Some(b) = self.ready.pop_front() else {
                break;
            };
            self.submit(b);
        }
    }

    fn submit(&mut self, b: Open) {
        self.last_append_ms.store(now_ms(), Ordering::Relaxed);
        let batch = match data_batch(&b.values, now_ms() as i64) {
            Ok(batch) => batch,
            Err(e) => {
                for (_, c) in b.replies {
                    c(Err(ControllerError::Internal(format!(
                        "encoding the batch: {e}"
                    ))));
                }
                let leader = Some(self.deps.node_id);
                self.drop_view(leader);
                return;
            }
        };
        self.seq += 1;
        let seq = self.seq;
        self.in_flight.push_back(InFlight {
            seq,
            submitted: Instant::now(),
            replies: b.replies,
            records: b.values.len(),
            predicted_base: b.predicted_base,
        });
        let raft = self.deps.raft.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let result = match raft.client_write_ff(batch).await {
                Err(e) => Err(ControllerError::Internal(format!("raft stopped: {e}"))),
                Ok(pending) => match pending.await {
                    Ok(Ok(resp)) => Ok((resp.data.base_offset, epoch_of(&resp.log_id))),
                    Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                        Err(ControllerError::NotController {
                            leader: f.leader_id,
                        })
                    }
                    Ok(Err(e)) => Err(ControllerError::Internal(e.to_string())),
                    Err(_) => Err(ControllerError::NotController { leader: None }),
                },
            };
            let _ = done.send(Done { seq, result });
        });
    }

    fn completed(&mut self, d: Done) {
        let Some(pos) = self.in_flight.iter().position(|b| b.seq == d.seq) else {
            return;
        };
        let Some(b) = self.in_flight.remove(pos) else {
            return;
        };
        match d.result {
            Ok((base, epoch)) => {
                crate::telemetry::commit_latency(b.submitted.elapsed());
                if base != b.predicted_base {
                    // Another entry (a membership change) went in first: later offsets move
                    // by the same amount.
                    let delta = base as i64 - b.predicted_base as i64;
                    tracing::debug!(
                        predicted = b.predicted_base,
                        actual = base,
                        "a batch landed at another offset than predicted"
                    );
                    if let Some(v) = self.view.as_mut() {
                        v.next_offset = (v.next_offset as i64 + delta).max(0) as u64;
                    }
                    for o in self.in_flight.iter_mut() {
                        o.predicted_base = (o.predicted_base as i64 + delta).max(0) as u64;
                    }
                    for o in self.ready.iter_mut().chain(std::iter::once(&mut self.open)) {
                        o.predicted_base = (o.predicted_base as i64 + delta).max(0) as u64;
                    }
                }
                for (n, c) in b.replies {
                    c(Ok(WriteAck {
                        offset: base + n as u64 - 1,
                        epoch,
                    }));
                }
            }
            Err(e) => {
                for (_, c) in b.replies {
                    c(Err(e.clone()));
                }
                let leader = match &e {
                    ControllerError::NotController { leader } => *leader,
                    _ => None,
                };
                if self.view.is_some() {
                    tracing::warn!(error = %e, "a batch was not committed; dropping the controller's view");
                    self.drop_view(leader);
                }
            }
        }
        self.retry_deferred();
    }

    /// Drops the view and answers every job whose records are not in flight NOT_CONTROLLER.
    fn drop_view(&mut self, leader: Option<NodeId>) {
        self.view = None;
        let e = ControllerError::NotController { leader };
        let open = std::mem::take(&mut self.open);
        for b in self.ready.drain(..).chain(std::iter::once(open)) {
            for (_, c) in b.replies {
                c(Err(e.clone()));
            }
        }
    }

    fn retry_deferred(&mut self) {
        if self.deferred.is_empty() {
            return;
        }
        match self.ensure_view() {
            Ok(true) => {
                while let Some((_, job)) = self.deferred.pop_front() {
                    self.run_job(job);
                }
            }
            Ok(false) => {}
            Err(e) => {
                for (_, job) in self.deferred.drain(..) {
                    if let Outcome::Await(c) = job(Err(e.clone())) {
                        c(Err(e.clone()));
                    }
                }
            }
        }
    }

    fn on_tick(&mut self) {
        // Jobs that waited too long for this leader's view give up.
        while self
            .deferred
            .front()
            .is_some_and(|(t, _)| t.elapsed() > VIEW_WAIT)
        {
            if let Some((_, job)) = self.deferred.pop_front() {
                let e = ControllerError::NotController { leader: None };
                if let Outcome::Await(c) = job(Err(e.clone())) {
                    c(Err(e));
                }
            }
        }
        self.retry_deferred();
        match self.ensure_view() {
            Ok(true) => {}
            _ => return,
        }
        let Some(view) = self.view.as_mut() else {
            return;
        };
        view.now = Instant::now();
        let expired = view.sessions.expired(view.now);
        if expired.is_empty() {
            return;
        }
        let result = brokers::fence_expired(view, &expired);
        let staged = std::mem::take(&mut view.staged);
        match result {
            Ok(()) if !staged.is_empty() => self.stage(staged, Box::new(|_| {})),
            Ok(()) => {}
            Err(e) => {
                tracing::error!(error = %e, "fencing expired brokers failed; rebuilding the view");
                let leader = Some(self.deps.node_id);
                self.drop_view(leader);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::brokers::{self, Heartbeat, Listener, Registration};
    use super::partitions::{self, AlterPartition, AlterPartitionData, AlterTopic};
    use super::topics::{self, CreateTopic};
    use super::*;

    fn view() -> View {
        let image = MetadataImage::bootstrap();
        let now = Instant::now();
        View {
            sessions: Sessions::fresh(&image, now, Duration::from_secs(9)),
            index: PartitionIndex::build(&image),
            image,
            next_offset: 100,
            term: 1,
            staged: Vec::new(),
            now,
            cluster_id: "cluster".into(),
            random: 7,
        }
    }

    fn reg(rack: &str) -> Registration {
        Registration {
            cluster_id: "cluster".into(),
            incarnation_id: Uuid::new_v4().to_string(),
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: "h".into(),
                port: 9092,
                security_protocol: "PLAINTEXT".into(),
            }],
            rack: Some(rack.into()),
            features: Vec::new(),
        }
    }

    fn sorted_index(ix: &PartitionIndex) -> (Vec<(i32, Vec<PartitionKey>)>, Vec<PartitionKey>) {
        let mut brokers: Vec<i32> = ix.isr.keys().copied().collect();
        brokers.sort_unstable();
        (
            brokers.iter().map(|b| (*b, ix.isr_of(*b))).collect(),
            ix.leaderless(),
        )
    }

    fn assert_index_fresh(v: &View) {
        assert_eq!(
            sorted_index(&v.index),
            sorted_index(&PartitionIndex::build(&v.image)),
            "the kept index differs from one built from the image"
        );
    }

    #[test]
    fn the_partition_index_follows_every_emitted_record() {
        let mut v = view();
        let mut epochs = Vec::new();
        for (id, rack) in [(1, "a"), (2, "b"), (3, "c"), (4, "a")] {
            let e = brokers::register(&mut v, id, &reg(rack)).unwrap();
            assert_eq!(
                e as u64,
                v.next_offset() - 1,
                "epoch = offset of the record"
            );
            let hb = Heartbeat {
                broker_epoch: e,
                current_metadata_offset: e,
                want_fence: false,
                want_shutdown: false,
            };
            assert!(!brokers::heartbeat(&mut v, id, &hb).unwrap().is_fenced);
            epochs.push(e);
        }
        topics::create(
            &mut v,
            &CreateTopic {
                name: "t".into(),
                partitions: Some(20),
                replication_factor: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
        assert_index_fresh(&v);
        // Fence broker 1 by expiry: it leaves every ISR, leaderships move.
        brokers::fence_expired(&mut v, &[1]).unwrap();
        assert_index_fresh(&v);
        let t = v.image().topic_by_name("t").unwrap();
        assert!(t
            .partitions()
            .iter()
            .all(|p| !p.isr().contains(&1) && p.leader() != 1));
        // Shrink one ISR to its leader, then fence that leader: offline, ISR keeps it.
        let p = t.partitions()[0].clone();
        let topic_id = crate::record::uuid_fmt::kafka_uuid(&t.id());
        let leader = p.leader();
        let le = epochs[(leader - 1) as usize];
        let req = AlterPartition {
            broker_id: leader,
            broker_epoch: le,
            topics: vec![AlterTopic {
                topic_id,
                partitions: vec![AlterPartitionData {
                    partition: 0,
                    leader_epoch: p.leader_epoch(),
                    partition_epoch: p.partition_epoch(),
                    new_isr: vec![leader],
                    leader_recovery_state: None,
                }],
            }],
        };
        let a = partitions::alter(&mut v, &req).unwrap();
        assert_eq!(a.topics[0].partitions[0].isr, Some(vec![leader]));
        brokers::fence_expired(&mut v, &[leader]).unwrap();
        assert_index_fresh(&v);
        let p0 = v.image().topic_by_name("t").unwrap().partitions()[0].clone();
        assert_eq!((p0.leader(), p0.isr()), (-1, &[leader][..]));
        assert_eq!(v.index.leaderless().len(), 1);
        // Unfencing it (a caught-up heartbeat) elects it again.
        let hb = Heartbeat {
            broker_epoch: le,
            current_metadata_offset: i64::MAX,
            want_fence: false,
            want_shutdown: false,
        };
        brokers::heartbeat(&mut v, leader, &hb).unwrap();
        assert_index_fresh(&v);
        assert!(v.index.leaderless().is_empty());
        topics::delete(&mut v, "t").unwrap();
        assert_index_fresh(&v);
        assert!(v.index.isr.is_empty());
    }
}
