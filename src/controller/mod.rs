//! The active controller: turns requests into metadata records and commits them.
//!
//! One task, the controller loop, owns everything a request is checked against: the
//! **view** (the committed image plus every record this controller has appended but not yet
//! seen committed) and the brokers' heartbeat sessions. Requests reach it as jobs, which it
//! feeds to the write pipeline ([`pipeline`]): a job checks its request against the view,
//! emits records (which the view applies at once, so the next job sees them) and names its
//! answer; the pipeline batches, orders and commits them, and answers each job once its
//! records are committed.
//!
//! The view is cloned from the committed image once per leadership, when the new leader has
//! applied its own first entry; it is never cloned per request. When a batch fails or the
//! view and the log disagree, the view is dropped and rebuilt from the committed image.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::error::ClientWriteError;
use openraft::impls::ProgressResponder;
use openraft::vote::RaftLeaderId;
use tokio::sync::{mpsc, oneshot};

use crate::image::MetadataImage;
use crate::raft::log_store::LogStore;
use crate::raft::state_machine::SmShared;
use crate::raft::{data_batch, epoch_of, leading_term, NodeId, Raft};
use crate::record::metadata::{MetadataRecord, VersionedRecord};

pub mod brokers;
pub mod configs;
pub mod error;
pub mod partitions;
pub mod pipeline;
pub mod placement;
pub mod sessions;
pub mod state;
pub mod topics;

#[cfg(test)]
mod rules_tests;
#[cfg(test)]
pub(crate) mod testkit;

pub use error::{ControllerError, WriteError};
use pipeline::{Committed, Done, Job, Outcome, Pipeline, RaftLog};
pub use state::{PartitionIndex, PartitionKey, View};

/// A committed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteAck {
    /// Offset of the request's last record (or of the last record committed before its
    /// answer, when it wrote none).
    pub offset: u64,
    /// Epoch it was written in.
    pub epoch: i32,
}

/// How long a write waits for its commit before the caller is told it timed out (Kafka's
/// request.timeout.ms is 30 s; a controller write that takes this long has lost its quorum).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// The old name of the pipeline's batch limit, for callers that size requests by it.
pub use pipeline::MAX_BATCH_RECORDS;

/// Jobs queued before callers wait.
const QUEUE_DEPTH: usize = 16_384;
/// How often sessions are checked for expiry.
const TICK: Duration = Duration::from_millis(50);
/// How long a membership change may hold the pipeline before it is let go.
const EXCLUSIVE_LIMIT: Duration = Duration::from_secs(60);

/// A membership change that wants the pipeline to itself while it appends its entries.
struct ExclusiveReq {
    /// Entries it will append.
    entries: u64,
    go: oneshot::Sender<()>,
    done: oneshot::Receiver<()>,
}

/// The write path of a node.
pub struct Controller {
    raft: Raft,
    tx: mpsc::Sender<Job>,
    exclusive_tx: mpsc::Sender<ExclusiveReq>,
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
        let (exclusive_tx, exclusive_rx) = mpsc::channel(16);
        let last_append_ms = Arc::new(AtomicU64::new(now_ms()));
        let c = Arc::new(Controller {
            raft: deps.raft.clone(),
            tx,
            exclusive_tx,
            last_append_ms: last_append_ms.clone(),
        });
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (batch_tx, batch_rx) = mpsc::unbounded_channel();
        tokio::spawn(submitter(
            deps.raft.clone(),
            deps.node_id,
            batch_rx,
            done_tx,
        ));
        let sm = deps.sm.clone();
        let port = RaftPort {
            raft: deps.raft,
            sm: deps.sm,
            log: deps.log,
            batches: batch_tx,
            last_append_ms,
        };
        let pipeline = Pipeline::new(port, deps.cluster_id.as_str().into(), deps.session_timeout);
        tokio::spawn(run(pipeline, sm, rx, exclusive_rx, done_rx));
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
            .send(job)
            .await
            .map_err(|_| ControllerError::Internal("the controller has stopped".into()))?;
        match tokio::time::timeout(WRITE_TIMEOUT, rx).await {
            Ok(r) => r.map_err(|_| {
                ControllerError::OutcomeUnknown("the controller dropped the request".into())
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

    /// Runs `change` (a membership change that appends `entries` entries) while the
    /// pipeline hands nothing to Raft. Jobs keep running (heartbeats are heard); what they
    /// write is placed after the change's entries and goes out when it is over. The change
    /// runs in its own task, so the pipeline resumes only once it has really finished, even
    /// if the caller goes away. Err: the pipeline did not drain within its limit (the quorum
    /// is not committing), and the change did not run.
    pub async fn exclusive<T, F, Fut>(&self, entries: u64, change: F) -> Result<T, ControllerError>
    where
        F: FnOnce(Raft) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (go_tx, go_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let req = ExclusiveReq {
            entries,
            go: go_tx,
            done: done_rx,
        };
        self.exclusive_tx
            .send(req)
            .await
            .map_err(|_| ControllerError::Internal("the controller has stopped".into()))?;
        go_rx
            .await
            .map_err(|_| ControllerError::Timeout(EXCLUSIVE_LIMIT))?;
        let fut = change(self.raft.clone());
        let task = tokio::spawn(async move {
            let out = fut.await;
            let _ = done_tx.send(());
            out
        });
        task.await
            .map_err(|e| ControllerError::Internal(format!("the membership change failed: {e}")))
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
        let _ = self.tx.try_send(job);
    }
}

/// The node's openraft instance, as the pipeline sees it.
struct RaftPort {
    raft: Raft,
    sm: Arc<SmShared>,
    log: LogStore,
    batches: mpsc::UnboundedSender<(u64, u64, Vec<Bytes>)>,
    last_append_ms: Arc<AtomicU64>,
}

impl RaftLog for RaftPort {
    fn leadership(&self) -> (Option<NodeId>, Option<u64>) {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        (m.current_leader, leading_term(&m))
    }

    fn applied_epoch(&self) -> i32 {
        self.sm.applied().epoch
    }

    fn committed(&self) -> (MetadataImage, u64) {
        let st = self.sm.read();
        (st.image.clone(), st.end_offset)
    }

    fn appended_end(&self) -> Option<u64> {
        self.log.appended_end()
    }

    fn open_transaction(&self) -> bool {
        self.sm.read().txn.is_some()
    }

    fn append(&mut self, seq: u64, term: u64, values: Vec<Bytes>) {
        self.last_append_ms.store(now_ms(), Ordering::Relaxed);
        // The submitter is one task reading one channel: batches reach Raft in this order.
        let _ = self.batches.send((seq, term, values));
    }
}

/// Hands batches to Raft one at a time, in the order the pipeline made them, each only
/// while this node still leads the term its view was built in (openraft checks that in the
/// step that appends); a waiter per batch reports its outcome.
async fn submitter(
    raft: Raft,
    node_id: NodeId,
    mut batches: mpsc::UnboundedReceiver<(u64, u64, Vec<Bytes>)>,
    done: mpsc::UnboundedSender<Done>,
) {
    while let Some((seq, term, values)) = batches.recv().await {
        let (leader, leads) = {
            let m = raft.metrics();
            let m = m.borrow_watched();
            let leads = leading_term(&m) == Some(term);
            (m.current_leader, leads)
        };
        if !leads {
            let _ = done.send(Done {
                seq,
                result: Err(ControllerError::NotController { leader }),
            });
            continue;
        }
        let batch = match data_batch(&values, now_ms() as i64) {
            Ok(b) => b,
            Err(e) => {
                let _ = done.send(Done {
                    seq,
                    result: Err(ControllerError::Internal(format!(
                        "encoding the batch: {e}"
                    ))),
                });
                continue;
            }
        };
        let (responder, pending) = ProgressResponder::complete_only();
        // The check above is only a fast path: leadership may change between it and the
        // append. openraft checks the expected leader (this node, in the view's term) in the
        // same step as it appends, and refuses the batch unwritten otherwise.
        let expected = crate::raft::KLeaderId::new(term, node_id);
        match raft
            .write(batch)
            .with_leader(expected)
            .responder(responder)
            .await
        {
            Ok(()) => {}
            Err(e) => {
                // Raft stopped before it took the batch.
                let _ = done.send(Done {
                    seq,
                    result: Err(ControllerError::Internal(format!("raft stopped: {e}"))),
                });
                continue;
            }
        };
        let done = done.clone();
        tokio::spawn(async move {
            let result = match pending.await {
                Ok(Ok(resp)) => Ok(Committed {
                    base_offset: resp.data.base_offset,
                    epoch: epoch_of(&resp.log_id),
                    rejected_offsets: resp.data.rejected_offsets,
                }),
                // Refused before it was appended: not written.
                Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                    Err(ControllerError::NotController {
                        leader: f.leader_id,
                    })
                }
                // Appended here, then replaced by a new leader's log: another node may still
                // hold it, and a later leader may commit it. Nobody knows yet.
                Ok(Err(ClientWriteError::LogEntryDiscarded(f))) => {
                    Err(ControllerError::OutcomeUnknown(format!(
                        "the batch was appended, then a new leader ({:?}) replaced this node's \
                         log; it may still be committed",
                        f.leader_id
                    )))
                }
                Ok(Err(e)) => Err(ControllerError::Internal(e.to_string())),
                Err(_) => Err(ControllerError::OutcomeUnknown(
                    "raft stopped before the batch's outcome was known".into(),
                )),
            };
            let _ = done.send(Done { seq, result });
        });
    }
}

/// A random number for a job (placement).
fn random_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

/// Runs the jobs already queued, while the pipeline accepts them.
fn take_queued(p: &mut Pipeline<RaftPort>, rx: &mut mpsc::Receiver<Job>) {
    while p.accepting() {
        match rx.try_recv() {
            Ok(job) => p.submit(job, Instant::now(), random_u32()),
            Err(_) => break,
        }
    }
}

/// The controller loop: feeds jobs, batch outcomes, ticks and membership changes to the
/// pipeline, one at a time.
async fn run(
    mut p: Pipeline<RaftPort>,
    sm: Arc<SmShared>,
    mut rx: mpsc::Receiver<Job>,
    mut exclusive_rx: mpsc::Receiver<ExclusiveReq>,
    mut done_rx: mpsc::UnboundedReceiver<Done>,
) {
    let mut applied = sm.subscribe();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The membership change under way: its go signal (until sent), its end, its deadline.
    let mut change: Option<(Option<oneshot::Sender<()>>, oneshot::Receiver<()>, Instant)> = None;
    loop {
        let accepting = p.accepting();
        let idle = change.is_none();
        let changing = change.as_ref().is_some_and(|c| c.0.is_none());
        let draining = change.as_ref().is_some_and(|c| c.0.is_some());
        let deadline = change.as_ref().map(|c| c.2).unwrap_or_else(Instant::now);
        tokio::select! {
            job = rx.recv(), if accepting => {
                let Some(job) = job else { return };
                p.submit(job, Instant::now(), random_u32());
                // Group commit: take whatever else has queued up.
                take_queued(&mut p, &mut rx);
            }
            req = exclusive_rx.recv(), if idle => {
                let Some(req) = req else { return };
                p.begin_exclusive(req.entries);
                change = Some((Some(req.go), req.done, Instant::now() + EXCLUSIVE_LIMIT));
            }
            // A change that started is waited for to the end: its entries must be in the log
            // before anything placed after them goes out (it runs in its own task, so a
            // caller that goes away does not end it early).
            _ = async {
                if let Some((_, done, _)) = change.as_mut() {
                    let _ = done.await;
                }
            }, if changing => {
                change = None;
                p.end_exclusive();
            }
            // The batches in flight did not commit in time (no quorum): the change gives up
            // before it starts (its caller is told), and what was placed after it is refused.
            _ = tokio::time::sleep_until(deadline.into()), if draining => {
                tracing::warn!("a membership change gave up waiting for the batches in flight to commit");
                change = None;
                p.end_exclusive();
            }
            Some(d) = done_rx.recv() => p.completed(d, Instant::now(), random_u32()),
            _ = tick.tick() => {
                // Heartbeats already queued are heard before sessions are judged: a broker
                // is never fenced because its heartbeat waited behind other work.
                take_queued(&mut p, &mut rx);
                p.tick(Instant::now(), random_u32(), rx.is_empty());
            }
            r = applied.changed() => {
                if r.is_err() { return; }
                p.retry_deferred(Instant::now(), random_u32());
            }
        }
        if let Some((go, _, _)) = change.as_mut() {
            if go.is_some() && p.drained() {
                if let Some(go) = go.take() {
                    let _ = go.send(());
                }
            }
        }
        p.flush();
    }
}
