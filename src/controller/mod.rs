//! The active controller: turns requests into metadata records and commits them.
//!
//! Writes go through one queue. The writer drains whatever has queued up into one record
//! batch (group commit) and hands it to Raft; a small number of batches may be in flight at
//! once, so while one is being made durable the next one fills up. Each request is answered
//! when its batch is committed and applied, with the offset of its last record.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use openraft::error::ClientWriteError;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::raft::{data_batch, epoch_of, NodeId, Raft};
use crate::record::metadata::{MetadataRecord, VersionedRecord};

pub mod configs;

/// Batches in flight at once: one being made durable while the next fills up.
const IN_FLIGHT_BATCHES: usize = 2;
/// Records in one batch, at most.
const MAX_BATCH_RECORDS: usize = 5_000;
/// Bytes of record values in one batch, at most.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Requests queued before callers wait.
const QUEUE_DEPTH: usize = 16_384;

/// A committed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteAck {
    /// Offset of the request's last record.
    pub offset: u64,
    /// Epoch it was written in.
    pub epoch: i32,
}

/// Why a write was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// This node is not (or no longer) the active controller.
    #[error("this controller is not the active controller")]
    NotController {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// Not committed in time (e.g. the leader lost its majority). It may still commit.
    #[error("the write was not committed within {0:?}; it may still be committed later")]
    Timeout(Duration),
    /// Raft failed.
    #[error("{0}")]
    Internal(String),
}

/// How long a write waits for its commit before the caller is told it timed out (Kafka's
/// request.timeout.ms is 30 s; a controller write that takes this long has lost its quorum).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

struct WriteReq {
    values: Vec<Bytes>,
    reply: Option<oneshot::Sender<Result<WriteAck, WriteError>>>,
}

/// The write path of a node.
pub struct Controller {
    tx: mpsc::Sender<WriteReq>,
    last_submit_ms: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Controller {
    /// Starts the writer task for `raft`.
    pub fn start(raft: Raft) -> Arc<Controller> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let c = Arc::new(Controller {
            tx,
            last_submit_ms: AtomicU64::new(now_ms()),
        });
        tokio::spawn(writer(raft, rx));
        c
    }

    /// Commits `records` as part of one batch; answers once they are applied here.
    pub async fn write(&self, records: &[VersionedRecord]) -> Result<WriteAck, WriteError> {
        let values = records
            .iter()
            .map(|r| r.to_bytes().map(Bytes::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| WriteError::Internal(format!("encoding records: {e}")))?;
        let (tx, rx) = oneshot::channel();
        self.last_submit_ms.store(now_ms(), Ordering::Relaxed);
        self.tx
            .send(WriteReq {
                values,
                reply: Some(tx),
            })
            .await
            .map_err(|_| WriteError::Internal("the writer has stopped".into()))?;
        match tokio::time::timeout(WRITE_TIMEOUT, rx).await {
            Ok(r) => {
                r.map_err(|_| WriteError::Internal("the writer dropped the request".into()))?
            }
            Err(_) => Err(WriteError::Timeout(WRITE_TIMEOUT)),
        }
    }

    /// Appends a NoOpRecord if nothing was submitted for `idle`; does not wait for it.
    pub fn noop_if_idle(&self, idle: Duration) {
        let last = self.last_submit_ms.load(Ordering::Relaxed);
        if now_ms().saturating_sub(last) < idle.as_millis() as u64 {
            return;
        }
        let Ok(v) = VersionedRecord::new(MetadataRecord::NoOp).to_bytes() else {
            return;
        };
        self.last_submit_ms.store(now_ms(), Ordering::Relaxed);
        let _ = self.tx.try_send(WriteReq {
            values: vec![Bytes::from(v)],
            reply: None,
        });
    }
}

async fn writer(raft: Raft, mut rx: mpsc::Receiver<WriteReq>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT_BATCHES));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut reqs = vec![first];
        let mut records = reqs[0].values.len();
        let mut bytes: usize = reqs[0].values.iter().map(|v| v.len()).sum();
        while records < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    records += r.values.len();
                    bytes += r.values.iter().map(|v| v.len()).sum::<usize>();
                    reqs.push(r);
                }
                Err(_) => break,
            }
        }
        let values: Vec<Bytes> = reqs.iter().flat_map(|r| r.values.iter().cloned()).collect();
        let batch = match data_batch(&values, now_ms() as i64) {
            Ok(b) => b,
            Err(e) => {
                fail_all(
                    reqs,
                    WriteError::Internal(format!("encoding the batch: {e}")),
                );
                continue;
            }
        };
        let pending = match raft.client_write_ff(batch).await {
            Ok(p) => p,
            Err(e) => {
                fail_all(reqs, WriteError::Internal(format!("raft stopped: {e}")));
                continue;
            }
        };
        tokio::spawn(async move {
            let _permit = permit;
            match pending.await {
                Ok(Ok(resp)) => {
                    let epoch = epoch_of(&resp.log_id);
                    let mut end = resp.data.base_offset;
                    for r in reqs {
                        end += r.values.len() as u64;
                        if let Some(tx) = r.reply {
                            let _ = tx.send(Ok(WriteAck {
                                offset: end.saturating_sub(1),
                                epoch,
                            }));
                        }
                    }
                }
                Ok(Err(ClientWriteError::ForwardToLeader(f))) => fail_all(
                    reqs,
                    WriteError::NotController {
                        leader: f.leader_id,
                    },
                ),
                Ok(Err(e)) => fail_all(reqs, WriteError::Internal(e.to_string())),
                Err(_) => fail_all(reqs, WriteError::NotController { leader: None }),
            }
        });
    }
}

fn fail_all(reqs: Vec<WriteReq>, e: WriteError) {
    for r in reqs {
        if let Some(tx) = r.reply {
            let _ = tx.send(Err(e.clone()));
        }
    }
}
