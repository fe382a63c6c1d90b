//! Quorum calls (`/v1/quorum/*`), as `kafka-metadata-quorum` shows them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::metadata::SnapshotRef;

/// A voter as `GET /v1/quorum/status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Voter {
    /// Node id.
    pub id: u64,
    /// Peer listener, HOST:PORT.
    pub peer: String,
    /// API listener, HOST:PORT, when known.
    pub api: Option<String>,
}

/// `GET /v1/quorum/status` (`kafka-metadata-quorum describe --status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuorumStatus {
    /// Cluster id.
    pub cluster_id: String,
    /// The node answering.
    pub node_id: u64,
    /// The leader this node knows, if any.
    pub leader_id: Option<u64>,
    /// The current epoch (Raft term).
    pub leader_epoch: i64,
    /// Offset after the last committed record this node applied.
    pub high_watermark: i64,
    /// First offset still in the log (older ones are in snapshots only).
    pub log_start_offset: i64,
    /// Largest follower lag in records (leader only; 0 elsewhere).
    pub max_follower_lag: i64,
    /// Longest time since a follower was caught up, ms (leader only; 0 elsewhere).
    pub max_follower_lag_time_ms: i64,
    /// Voters.
    pub voters: Vec<Voter>,
    /// Ids of non-voting members (learners, Kafka's observers).
    pub observers: Vec<u64>,
}

impl QuorumStatus {
    /// Voter ids, sorted.
    pub fn voter_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.voters.iter().map(|v| v.id).collect();
        ids.sort_unstable();
        ids
    }
}

/// Where a replica stands, as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ReplicaRole {
    /// The node answering.
    Leader,
    /// A voter.
    Follower,
    /// A learner.
    Observer,
}

/// One row of `GET /v1/quorum/replication` (`describe --replication`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Replica {
    /// Node id.
    pub node_id: u64,
    /// Offset after its last replicated record.
    pub log_end_offset: i64,
    /// Records behind the leader.
    pub lag: i64,
    /// Last time the leader heard from it (ms since the epoch; 0: never).
    pub last_fetch_timestamp: i64,
    /// Last time it was caught up (ms since the epoch; 0: never).
    pub last_caught_up_timestamp: i64,
    /// Leader, Follower or Observer.
    pub status: ReplicaRole,
    /// Whether it acknowledged the leader within the down timeout (`down_after_ms` of
    /// `GET /v1/quorum/health`). A stopped voter keeps the lag it had, often 0: this says
    /// that it is gone. Absent from versions before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up: Option<bool>,
}

/// `POST /v1/quorum/snapshot`: the checkpoint just written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotTaken {
    /// Offset after the last record it holds.
    pub end_offset: i64,
    /// Epoch of that record.
    pub epoch: i32,
    /// The checkpoint file name.
    pub file_name: String,
}

impl SnapshotTaken {
    /// The `{end_offset, epoch}` pair naming it.
    pub fn id(&self) -> SnapshotRef {
        SnapshotRef {
            end_offset: self.end_offset,
            epoch: self.epoch,
        }
    }
}

/// `POST /v1/quorum/voters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVoter {
    /// The new controller's node id.
    pub id: u64,
    /// Its peer listener, HOST:PORT.
    pub peer: String,
    /// Its API listener (default: what it reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

/// `PATCH /v1/quorum/voters/{id}` (Kafka's UpdateRaftVoter): where a controller listens
/// now. The node must already answer there, as itself, with the disk the membership records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoterAddress {
    /// Its peer listener, HOST:PORT.
    pub peer: String,
    /// Its API listener (default: what it reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

/// The voter ids after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Voters {
    /// Voter ids.
    pub voters: Vec<u64>,
}

/// `POST /v1/quorum/transfer-leader` (etcd's move-leader). An empty body, or no `to`,
/// names the voter whose log is furthest along.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferLeader {
    /// The voter to lead next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

/// The answer of `POST /v1/quorum/transfer-leader`, once another voter leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaderMoved {
    /// The leader before the transfer.
    pub previous_leader_id: u64,
    /// Its epoch.
    pub previous_leader_epoch: i64,
    /// The leader now (the voter asked for, unless another won the election).
    pub leader_id: u64,
    /// The new leader's epoch.
    pub leader_epoch: i64,
}

/// The verdict of `GET /v1/quorum/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Every voter is up and caught up.
    Healthy,
    /// A majority of voters is up, so writes commit, but some voter is down or behind.
    Degraded,
    /// No leader, or fewer than a majority of voters up: writes cannot commit.
    Unavailable,
}

/// One member in `GET /v1/quorum/health`, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberHealth {
    /// Node id.
    pub node_id: u64,
    /// Leader, Follower (a voter) or Observer (a learner).
    pub role: ReplicaRole,
    /// It acknowledged the leader within `down_after_ms` (the leader is always up).
    pub up: bool,
    /// It held everything the leader had within `down_after_ms`.
    pub caught_up: bool,
    /// Offset after its last replicated record.
    pub log_end_offset: i64,
    /// Records behind the leader.
    pub lag: i64,
    /// Milliseconds since it last acknowledged the leader (absent: never).
    pub last_ack_ms_ago: Option<i64>,
    /// Milliseconds since it last held everything the leader had (absent: never).
    pub last_caught_up_ms_ago: Option<i64>,
    /// Its API listener, HOST:PORT, when known.
    pub api: Option<String>,
}

/// `GET /v1/quorum/health` (`kraftd quorum health`): how many voters are up and caught up,
/// and how many more can fail before writes stop. 200 while writes can commit (healthy or
/// degraded), 503 when they cannot; the body is this either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuorumHealth {
    /// The verdict.
    pub status: HealthStatus,
    /// One line for people and probes, e.g. "healthy, can lose 1".
    pub summary: String,
    /// The node that judged: the leader, or the node answering when no leader could be asked.
    pub reported_by: u64,
    /// The leader, if one is known.
    pub leader_id: Option<u64>,
    /// Its epoch.
    pub leader_epoch: i64,
    /// Number of voters.
    pub voters: u32,
    /// Voters up (the leader counts).
    pub voters_up: u32,
    /// Voters up and caught up.
    pub voters_caught_up: u32,
    /// Voters needed for a majority.
    pub majority: u32,
    /// How many more voters can fail before writes stop (0 when none can; 0 when
    /// unavailable).
    pub can_lose: u32,
    /// A voter silent for this long counts as down.
    pub down_after_ms: i64,
    /// Every member, voters first. Empty when no leader could be asked.
    pub members: Vec<MemberHealth>,
}
