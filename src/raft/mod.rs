//! The replicated log: openraft's type configuration, the RocksDB log store, the state
//! machine (the metadata image, snapshotted into checkpoint files) and the peer network.
//!
//! Mapping (DESIGN.md): one openraft entry is one Kafka record batch. A normal entry carries
//! the batch the active controller encoded; openraft's blank entry (a new leader's first
//! entry) becomes a `LeaderChange` control batch and a membership entry a `Voters` control
//! batch, so the log reads like Kafka's `__cluster_metadata`. The Raft term is the batch's
//! leader epoch, and base offsets count records from the start of the log; the log store
//! stamps both when it appends.

// openraft's error types (StorageError, RaftError) are large by design; the trait
// signatures fix them, so boxing ours would only add conversions.
#![allow(clippy::result_large_err)]

pub mod error;
pub mod log_store;
pub mod peer;
pub mod state_machine;

use std::collections::BTreeSet;
use std::fmt;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::BrokerId;
use openraft::type_config::alias;
use openraft::vote::RaftLeaderId;
use openraft::{EntryPayload, Membership};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::batch::{encode_batch, BatchSpec};
use crate::record::control::controller_voter;
use crate::record::control::ControlRecord;
use error::BatchError;

pub use kafka_protocol::messages::leader_change_message::LeaderChangeMessage;
pub use kafka_protocol::messages::voters_record::VotersRecord;

/// A controller's id (Kafka's node.id).
pub type NodeId = u64;

/// What the cluster knows of a controller: where its listeners are and the directory id of
/// its data directory (KIP-853: a wiped and re-formatted disk is a different voter).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KNode {
    /// Peer listener, `host:port`.
    pub peer_addr: String,
    /// API listener, `host:port`; empty when not known yet (bootstrap voters).
    pub api_addr: String,
    /// Directory id; nil when not known yet.
    pub directory_id: [u8; 16],
}

impl KNode {
    /// The directory id as a UUID.
    pub fn directory(&self) -> Uuid {
        Uuid::from_bytes(self.directory_id)
    }
}

/// A normal entry: one v2 record batch of metadata records, encoded by the active
/// controller. Its base offset and leader epoch are stamped by the log store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The batch bytes.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Batch({} bytes)", self.bytes.len())
    }
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch of {} bytes", self.bytes.len())
    }
}

/// What applying an entry gave: the offsets its records took.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Offset of the entry's first record.
    pub base_offset: u64,
    /// Offset after its last record.
    pub end_offset: u64,
    /// Records the image refused (a well-behaved controller never writes any).
    pub rejected: u32,
    /// Offsets of the refused records (of a whole transaction when this entry ended one).
    pub rejected_offsets: Vec<u64>,
}

openraft::declare_raft_types!(
    /// kraftd's openraft types.
    pub TypeConfig:
        D = Batch,
        R = Applied,
        NodeId = NodeId,
        Node = KNode,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;
/// One log entry.
pub type Entry = alias::EntryOf<TypeConfig>;
/// A log id (term, leader, index).
pub type LogId = alias::LogIdOf<TypeConfig>;
/// A vote (term, candidate, committed).
pub type KVote = alias::VoteOf<TypeConfig>;
/// The leader id a log id carries (term and node).
pub type KLeaderId = alias::CommittedLeaderIdOf<TypeConfig>;
/// A membership with our node type.
pub type KMembership = Membership<NodeId, KNode>;
/// A membership and the log id that set it.
pub type KStoredMembership = alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type KSnapshotMeta = alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot: its metadata and its checkpoint file.
pub type KSnapshot = alias::SnapshotOf<TypeConfig, state_machine::CheckpointFile>;
/// The error of the storage traits (openraft 0.10 wraps it in its own StorageError).
pub type StorageError = std::io::Error;
/// openraft's metrics of this node.
pub type KMetrics = openraft::RaftMetrics<TypeConfig>;

/// The term this node leads, if it is the leader: the one test of "am I the leader" on a
/// metrics snapshot (in state Leader, and itself the leader it knows of).
pub fn leading_term(m: &KMetrics) -> Option<u64> {
    (m.state == openraft::ServerState::Leader && m.current_leader == Some(m.id))
        .then_some(m.current_term)
}

/// On a leader, the index of the last entry it has matched on follower or learner `id`
/// (None if it has matched none yet, or is not the leader).
pub fn matched_index(m: &KMetrics, id: NodeId) -> Option<u64> {
    m.replication
        .as_ref()
        .and_then(|r| r.get(&id).cloned().flatten())
        .map(|l| l.index)
}

/// How long ago follower `id` last acknowledged this leader, a heartbeat or an append
/// (None: not in this term, or this node does not lead).
pub fn last_ack(m: &KMetrics, id: NodeId) -> Option<std::time::Duration> {
    use openraft::Instant as _;
    m.heartbeat
        .as_ref()
        .and_then(|h| h.get(&id).cloned().flatten())
        .map(|at| at.elapsed())
}

/// A log id of `term` led by `node` at `index`.
pub fn log_id(term: u64, node: NodeId, index: u64) -> LogId {
    openraft::LogId::new(KLeaderId::new(term, node), index)
}

/// Tells the leader that `id`'s log may be about to look shorter than what it had matched:
/// its disk was replaced and it is re-added under a new directory id, with an empty log.
/// openraft never moves a follower's replication progress backwards on its own, and would
/// wait forever for the old disk's position. Call it before the membership records the new
/// directory id (until then the new disk refuses every Raft request). The permission is
/// used once, and only if the follower's log really is behind what it had matched.
pub async fn expect_empty_log(raft: &Raft, id: NodeId) {
    match raft.trigger().allow_next_revert(&id, true).await {
        Ok(Ok(())) => {
            tracing::info!(
                id,
                "replaced disk: its replication restarts from its (empty) log"
            )
        }
        Ok(Err(e)) => tracing::warn!(
            id,
            error = %e,
            "cannot reset the replication progress of a replaced disk"
        ),
        Err(e) => tracing::warn!(
            id,
            error = %e,
            "cannot reset the replication progress of a replaced disk"
        ),
    }
}

/// Kafka's "no timestamp", used for the control batches openraft's own entries become (they
/// must encode identically on every replica, so they cannot carry a local clock).
pub const NO_TIMESTAMP: i64 = -1;

/// Tagged field of the SnapshotHeaderRecord that carries openraft's snapshot metadata (last
/// log id and membership, postcard-encoded). Kafka's readers skip unknown tags.
pub const HEADER_TAG_RAFT_META: i32 = 10_000;

/// The openraft view of a Kafka epoch: the term of a log id.
pub fn epoch_of(log_id: &LogId) -> i32 {
    i32::try_from(log_id.leader_id.term).unwrap_or(i32::MAX)
}

/// Number of records an entry occupies: normal batches their record count, openraft's
/// blank and membership entries one control record each.
pub fn record_count(payload: &alias::EntryPayloadOf<TypeConfig>) -> Result<u64, BatchError> {
    match payload {
        EntryPayload::Blank | EntryPayload::Membership(_) => Ok(1),
        EntryPayload::Normal(b) => batch_record_count(&b.bytes),
    }
}

/// The record count field of a v2 batch, with the length checks a header read needs.
pub fn batch_record_count(bytes: &[u8]) -> Result<u64, BatchError> {
    if bytes.len() < crate::record::batch::BATCH_OVERHEAD {
        return Err(BatchError::ShorterThanHeader { len: bytes.len() });
    }
    let count = i32::from_be_bytes([bytes[57], bytes[58], bytes[59], bytes[60]]);
    if count <= 0 {
        return Err(BatchError::RecordCount { count });
    }
    Ok(count as u64)
}

/// The VotersRecord for a membership: every voter of every (joint) config, with its
/// directory id and peer endpoint. Learners are not voters and are not listed.
pub fn voters_record(m: &KMembership) -> VotersRecord {
    let ids: BTreeSet<NodeId> = m.voter_ids().collect();
    let voters = ids
        .into_iter()
        .map(|id| {
            let node = m.get_node(&id).cloned().unwrap_or_default();
            let (host, port) = split_host_port(&node.peer_addr);
            controller_voter(id, node.directory(), &host, port)
        })
        .collect();
    VotersRecord::default().with_version(0).with_voters(voters)
}

/// `host:port` into its parts (port 0 when absent or unparsable).
pub fn split_host_port(addr: &str) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().unwrap_or(0),
        ),
        None => (addr.to_string(), 0),
    }
}

/// The control batch for one of openraft's own entries (blank or membership). `None` for
/// normal entries, whose batch the controller encoded.
pub fn control_batch_for(entry: &Entry) -> Result<Option<Vec<u8>>, String> {
    let record = match &entry.payload {
        EntryPayload::Normal(_) => return Ok(None),
        EntryPayload::Blank => ControlRecord::LeaderChange(
            LeaderChangeMessage::default()
                .with_version(0)
                .with_leader_id(BrokerId(
                    i32::try_from(entry.log_id.leader_id.node_id).unwrap_or(i32::MAX),
                )),
        ),
        EntryPayload::Membership(m) => ControlRecord::Voters(voters_record(m)),
    };
    let value = record.value().map_err(|e| e.to_string())?;
    let mut out = BytesMut::new();
    encode_batch(
        &mut out,
        BatchSpec {
            base_offset: 0,
            epoch: epoch_of(&entry.log_id),
            timestamp: NO_TIMESTAMP,
            control: true,
        },
        &[(Some(record.key()), value)],
    )
    .map_err(|e| e.to_string())?;
    Ok(Some(out.to_vec()))
}

/// Encodes metadata record values as one data batch, ready to be a normal entry.
pub fn data_batch(values: &[Bytes], timestamp: i64) -> Result<Batch, BatchError> {
    let records: Vec<(Option<Bytes>, Bytes)> = values.iter().map(|v| (None, v.clone())).collect();
    let mut out = BytesMut::new();
    encode_batch(
        &mut out,
        BatchSpec {
            base_offset: 0,
            epoch: 0,
            timestamp,
            control: false,
        },
        &records,
    )?;
    Ok(Batch {
        bytes: out.to_vec(),
    })
}
