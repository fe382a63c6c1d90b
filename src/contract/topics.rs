//! Topic calls: create, describe, list, add partitions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::image::Partition;

/// `POST /v1/topics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    /// Topic name.
    pub name: String,
    /// Number of partitions (may be left out when `assignments` is given).
    #[serde(default)]
    pub partitions: Option<i32>,
    /// Replicas per partition (may be left out when `assignments` is given).
    #[serde(default)]
    pub replication_factor: Option<i32>,
    /// Topic configs.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// Explicit replica lists, one per partition, preferred leader first.
    #[serde(default)]
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// One partition as the topic calls show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartitionView {
    /// Partition id.
    pub partition: i32,
    /// Replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Leader, -1 when offline.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Partition epoch.
    pub partition_epoch: i32,
    /// 0 recovered, 1 recovering.
    pub leader_recovery_state: i8,
}

impl PartitionView {
    /// The view of a partition.
    pub fn of(p: &Partition) -> Self {
        PartitionView {
            partition: p.id(),
            replicas: p.replicas().to_vec(),
            isr: p.isr().to_vec(),
            leader: p.leader(),
            leader_epoch: p.leader_epoch(),
            partition_epoch: p.partition_epoch(),
            leader_recovery_state: p.leader_recovery_state(),
        }
    }
}

/// The answer to a topic creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedTopic {
    /// Topic name.
    pub name: String,
    /// The new topic id (Kafka's base64 form).
    pub topic_id: String,
    /// The partitions.
    pub partitions: Vec<PartitionView>,
}

/// One topic with every partition (`GET /v1/topics/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopicDescription {
    /// Topic name.
    pub name: String,
    /// Topic id (Kafka's base64 form).
    pub topic_id: String,
    /// Topic configs set on it.
    pub configs: BTreeMap<String, String>,
    /// The partitions.
    pub partitions: Vec<PartitionView>,
}

/// One line of `GET /v1/topics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopicSummary {
    /// Topic name.
    pub name: String,
    /// Topic id (Kafka's base64 form).
    pub topic_id: String,
    /// Number of partitions.
    pub partitions: usize,
    /// Replicas of partition 0.
    pub replication_factor: usize,
    /// Partitions without a leader.
    pub offline_partitions: usize,
    /// Partitions whose ISR is smaller than their replica set.
    pub under_replicated_partitions: usize,
}

/// `POST /v1/topics/{name}/partitions` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddPartitions {
    /// The new total number of partitions.
    pub count: i32,
}

/// Partitions created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Partitions {
    /// The new partitions.
    pub partitions: Vec<PartitionView>,
}
