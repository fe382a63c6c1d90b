//! Partition calls: AlterPartition (ISR changes from partition leaders) and elections on
//! request.

use serde::{Deserialize, Serialize};

/// `POST /v1/partitions/alter`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlterPartition {
    /// The partition leader asking.
    pub broker_id: i32,
    /// Its epoch.
    pub broker_epoch: i64,
    /// Changes by topic.
    pub topics: Vec<AlterTopic>,
}

/// The changes of one topic.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlterTopic {
    /// Topic id (Kafka's base64 form or a hyphenated UUID).
    pub topic_id: String,
    /// Changes by partition.
    pub partitions: Vec<AlterPartitionData>,
}

/// An ISR member and the broker epoch the leader knows it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IsrMember {
    /// Broker id.
    pub broker_id: i32,
    /// Its broker epoch, or -1 when not known.
    pub broker_epoch: i64,
}

/// One partition's requested ISR.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlterPartitionData {
    /// Partition id.
    pub partition: i32,
    /// The leader epoch the leader knows.
    pub leader_epoch: i32,
    /// The partition epoch the leader knows.
    pub partition_epoch: i32,
    /// The ISR it asks for, as broker ids (left empty when `new_isr_with_epochs` is given).
    #[serde(default)]
    pub new_isr: Vec<i32>,
    /// The ISR with each member's broker epoch (KIP-903): a member whose epoch is not its
    /// current registration's (a broker restarted as a new incarnation) is INELIGIBLE_REPLICA.
    /// Epoch -1 means unknown and is not checked, as in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_isr_with_epochs: Option<Vec<IsrMember>>,
    /// 0 recovered, 1 recovering (an unclean leader reports 0 once recovered).
    #[serde(default)]
    pub leader_recovery_state: Option<i8>,
}

/// The answer for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlterPartitionResult {
    /// Partition id.
    pub partition: i32,
    /// Kafka error code when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The partition's state after the change (when accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<i32>,
    /// Leader epoch after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_epoch: Option<i32>,
    /// Partition epoch after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_epoch: Option<i32>,
    /// ISR after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isr: Option<Vec<i32>>,
    /// Leader recovery state after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_recovery_state: Option<i8>,
}

/// The answer for one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlterTopicResult {
    /// Topic id as given.
    pub topic_id: String,
    /// Results by partition.
    pub partitions: Vec<AlterPartitionResult>,
}

/// The answer to AlterPartition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlterPartitionAnswer {
    /// Results by topic.
    pub topics: Vec<AlterTopicResult>,
}

/// `POST /v1/elections`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ElectionRequest {
    /// `preferred` or `unclean`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The partitions; absent means every partition.
    #[serde(default)]
    pub partitions: Option<Vec<TopicPartition>>,
}

/// A topic name and partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition id.
    pub partition: i32,
}

/// The result of one partition's election.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ElectionResult {
    /// Topic name.
    pub topic: String,
    /// Partition id.
    pub partition: i32,
    /// Kafka error code when nothing was elected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The leader after the election.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<i32>,
    /// The leader epoch after the election.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_epoch: Option<i32>,
}

/// `POST /v1/elections` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Elections {
    /// Per-partition results.
    pub partitions: Vec<ElectionResult>,
}
