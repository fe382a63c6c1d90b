//! `GET /openapi.json`: the API listener's contract, generated with utoipa from the request
//! and answer types the handlers use. Answers the handlers build as JSON values are
//! described by the `*Doc` types here. The operations are declared on stand-in functions
//! (one per route) so the handlers stay plain; `tests/openapi_schemathesis.rs` runs
//! schemathesis against a live node to check that every answer matches this document.

#![allow(dead_code)] // the stand-in functions exist only for their attributes

use std::collections::BTreeMap;

use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{ContentBuilder, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::api::brokers::BrokerView;
use crate::controller::brokers::{
    FeatureRange, Heartbeat, HeartbeatAnswer, Listener, Registration,
};
use crate::controller::configs::ConfigPatch;
use crate::controller::partitions::{
    AlterPartition, AlterPartitionAnswer, AlterPartitionData, AlterPartitionResult, AlterTopic,
    AlterTopicResult, ElectionRequest, ElectionResult, TopicPartition,
};
use crate::controller::topics::{
    CreateTopic, CreatedTopic, PartitionView, TopicDescription, TopicSummary,
};

/// Every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Kafka-style error code, e.g. `NOT_CONTROLLER`: one of a closed set.
    pub error: crate::contract::ErrorCode,
    /// What was wrong, for a person.
    pub message: String,
    /// The active controller, when known and useful.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<u64>,
    /// On 410 below the log start: the snapshot to load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotRefDoc>,
}

/// A checkpoint by end offset and epoch.
#[derive(Serialize, ToSchema)]
pub struct SnapshotRefDoc {
    /// Offset after the last record it holds.
    pub end_offset: u64,
    /// Epoch of that record.
    pub epoch: i32,
}

/// A voter in the quorum status.
#[derive(Serialize, ToSchema)]
pub struct VoterDoc {
    /// Node id.
    pub id: u64,
    /// Peer listener.
    pub peer: String,
    /// API listener, if known.
    pub api: Option<String>,
}

/// `GET /v1/quorum/status` (kafka-metadata-quorum describe --status).
#[derive(Serialize, ToSchema)]
pub struct QuorumStatusDoc {
    /// Cluster id.
    pub cluster_id: String,
    /// The node answering.
    pub node_id: u64,
    /// The leader, if known.
    pub leader_id: Option<u64>,
    /// The current epoch (Raft term).
    pub leader_epoch: u64,
    /// Offset after the last committed record this node applied.
    pub high_watermark: u64,
    /// First offset still in the log (older ones are in snapshots only).
    pub log_start_offset: u64,
    /// Largest follower lag in records (leader only; 0 elsewhere).
    pub max_follower_lag: u64,
    /// Longest time since a follower was caught up, ms (leader only).
    pub max_follower_lag_time_ms: u64,
    /// Voters.
    pub voters: Vec<VoterDoc>,
    /// Learners (observers).
    pub observers: Vec<u64>,
}

/// One row of `GET /v1/quorum/replication` (describe --replication).
#[derive(Serialize, ToSchema)]
pub struct ReplicaDoc {
    /// Node id.
    pub node_id: u64,
    /// Offset after its last replicated record.
    pub log_end_offset: u64,
    /// Records behind the leader.
    pub lag: u64,
    /// Last time the leader heard from it (ms since the epoch; 0: never).
    pub last_fetch_timestamp: u64,
    /// Last time it was caught up (ms since the epoch; 0: never).
    pub last_caught_up_timestamp: u64,
    /// `Leader`, `Follower` or `Observer`.
    pub status: String,
}

/// `POST /v1/quorum/snapshot`.
#[derive(Serialize, ToSchema)]
pub struct SnapshotTakenDoc {
    /// End offset.
    pub end_offset: u64,
    /// Epoch.
    pub epoch: i32,
    /// The checkpoint file name.
    pub file_name: String,
}

/// `POST /v1/quorum/voters`.
#[derive(Serialize, ToSchema)]
pub struct AddVoterDoc {
    /// The new controller's node id.
    pub id: u64,
    /// Its peer listener, HOST:PORT.
    pub peer: String,
    /// Its API listener (default: what it reports).
    pub api: Option<String>,
}

/// The voter ids after a change.
#[derive(Serialize, ToSchema)]
pub struct VotersDoc {
    /// Voter ids.
    pub voters: Vec<u64>,
}

/// One record of the JSON log answer.
#[derive(Serialize, ToSchema)]
pub struct LogRecordDoc {
    /// Offset.
    pub offset: u64,
    /// Epoch of its batch.
    pub epoch: i32,
    /// Kafka's record type name, e.g. `TOPIC_RECORD`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Record version.
    pub version: i32,
    /// The fields, as Kafka's JSON spells them.
    pub data: serde_json::Value,
}

/// `GET /v1/metadata/log` with `Accept: application/json`.
#[derive(Serialize, ToSchema)]
pub struct LogJsonDoc {
    /// The records.
    pub records: Vec<LogRecordDoc>,
    /// Offset after the last committed record.
    pub high_watermark: u64,
    /// Where to continue.
    pub next_offset: u64,
}

/// One checkpoint in `GET /v1/metadata/snapshots`.
#[derive(Serialize, ToSchema)]
pub struct SnapshotFileDoc {
    /// End offset.
    pub end_offset: u64,
    /// Epoch.
    pub epoch: i32,
    /// File name.
    pub file_name: String,
    /// Bytes.
    pub size: u64,
    /// The header's LastContainedLogTimestamp, if readable.
    pub last_contained_log_timestamp: Option<i64>,
}

/// `GET /v1/metadata/image`: the image at this node's applied offset.
#[derive(Serialize, ToSchema)]
pub struct ImageDoc {
    /// Offset after the last applied record.
    pub offset: u64,
    /// Its epoch.
    pub epoch: i32,
    /// Finalized feature levels.
    pub features: BTreeMap<String, i16>,
    /// Broker registrations.
    pub brokers: Vec<serde_json::Value>,
    /// The producer-id block, if any.
    pub producer_ids: Option<serde_json::Value>,
    /// Topics with their partitions.
    pub topics: Vec<serde_json::Value>,
    /// Configs: `{"brokers": {name: {k: v}}, "topics": {name: {k: v}}}`.
    pub configs: serde_json::Value,
}

/// A committed config change.
#[derive(Serialize, ToSchema)]
pub struct WriteAckDoc {
    /// Offset of its last record.
    pub offset: u64,
    /// Its epoch.
    pub epoch: i32,
}

/// `POST /v1/brokers/{id}/registration` answer.
#[derive(Serialize, ToSchema)]
pub struct BrokerEpochDoc {
    /// The broker epoch (the offset of its RegisterBrokerRecord).
    pub broker_epoch: i64,
}

/// `POST /v1/topics/{name}/partitions` body.
#[derive(Serialize, ToSchema)]
pub struct AddPartitionsDoc {
    /// The new total number of partitions.
    pub count: i32,
}

/// Partitions created or elected.
#[derive(Serialize, ToSchema)]
pub struct PartitionsDoc {
    /// The new partitions.
    pub partitions: Vec<PartitionView>,
}

/// `POST /v1/elections` answer.
#[derive(Serialize, ToSchema)]
pub struct ElectionsDoc {
    /// Per-partition results.
    pub partitions: Vec<ElectionResult>,
}

// ---- operations (stand-ins carrying the attributes) ----

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers", body = String, content_type = "text/plain")))]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "A leader is known and this node has applied what it saw committed", body = String, content_type = "text/plain")))]
fn readyz() {}

#[utoipa::path(get, path = "/v1/quorum/status", tag = "quorum",
    responses((status = 200, body = QuorumStatusDoc)))]
fn quorum_status() {}

#[utoipa::path(get, path = "/v1/quorum/replication", tag = "quorum",
    responses((status = 200, description = "Served (or forwarded to) the leader", body = Vec<ReplicaDoc>)))]
fn quorum_replication() {}

#[utoipa::path(post, path = "/v1/quorum/snapshot", tag = "quorum",
    responses((status = 200, description = "This node took a checkpoint", body = SnapshotTakenDoc)))]
fn quorum_snapshot() {}

#[utoipa::path(post, path = "/v1/quorum/voters", tag = "quorum", request_body = AddVoterDoc,
    responses((status = 200, description = "Added: a learner until caught up, then a voter", body = VotersDoc)))]
fn add_voter() {}

#[utoipa::path(delete, path = "/v1/quorum/voters/{id}", tag = "quorum",
    params(("id" = u64, Path, description = "Node id of the voter")),
    responses((status = 200, body = VotersDoc)))]
fn remove_voter() {}

#[utoipa::path(get, path = "/v1/metadata/log", tag = "metadata",
    params(
        ("offset" = u64, Query, description = "First offset wanted"),
        ("max_bytes" = Option<u64>, Query, description = "Answer size limit (default 1 MiB)"),
        ("max_wait_ms" = Option<u64>, Query, description = "Long poll: wait up to this long for new records (at most 30000)"),
    ),
    responses(
        (status = 200, description = "Committed batches from the one holding `offset`",
            content(
                (Vec<u8> = "application/vnd.kafka.record-batches"),
                (LogJsonDoc = "application/json"),
            )),
    ))]
fn metadata_log() {}

#[utoipa::path(get, path = "/v1/metadata/snapshots", tag = "metadata",
    responses((status = 200, description = "Newest first", body = Vec<SnapshotFileDoc>)))]
fn snapshots() {}

#[utoipa::path(get, path = "/v1/metadata/snapshots/{id}", tag = "metadata",
    params(("id" = String, Path, description = "END_OFFSET-EPOCH")),
    responses(
        (status = 200, description = "The checkpoint file", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 206, description = "The requested byte range", body = Vec<u8>, content_type = "application/octet-stream"),
    ))]
fn snapshot_file() {}

#[utoipa::path(get, path = "/v1/metadata/image", tag = "metadata",
    params(("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, body = ImageDoc)))]
fn metadata_image() {}

#[utoipa::path(get, path = "/v1/configs/{kind}/{name}", tag = "configs",
    params(
        ("kind" = String, Path, description = "`topic` or `broker`"),
        ("name" = String, Path, description = "Topic name, broker id, or `default` (cluster-wide broker default)"),
    ),
    responses((status = 200, body = BTreeMap<String, String>)))]
fn get_config() {}

#[utoipa::path(patch, path = "/v1/configs/{kind}/{name}", tag = "configs", request_body = ConfigPatch,
    params(
        ("kind" = String, Path, description = "`topic` or `broker`"),
        ("name" = String, Path, description = "Topic name, broker id, or `default`"),
    ),
    responses((status = 200, description = "Committed", body = WriteAckDoc)))]
fn patch_config() {}

#[utoipa::path(get, path = "/v1/brokers", tag = "brokers",
    responses((status = 200, body = Vec<BrokerView>)))]
fn list_brokers() {}

#[utoipa::path(get, path = "/v1/brokers/{id}", tag = "brokers",
    params(("id" = i32, Path, description = "Broker id")),
    responses((status = 200, body = BrokerView)))]
fn get_broker() {}

#[utoipa::path(delete, path = "/v1/brokers/{id}", tag = "brokers",
    params(("id" = i32, Path, description = "Broker id")),
    responses((status = 204, description = "Unregistered")))]
fn unregister_broker() {}

#[utoipa::path(post, path = "/v1/brokers/{id}/registration", tag = "brokers", request_body = Registration,
    params(("id" = i32, Path, description = "Broker id")),
    responses((status = 200, body = BrokerEpochDoc)))]
fn register_broker() {}

#[utoipa::path(post, path = "/v1/brokers/{id}/heartbeat", tag = "brokers", request_body = Heartbeat,
    params(("id" = i32, Path, description = "Broker id")),
    responses((status = 200, body = HeartbeatAnswer)))]
fn heartbeat() {}

#[utoipa::path(post, path = "/v1/partitions/alter", tag = "brokers", request_body = AlterPartition,
    responses((status = 200, description = "Per partition: an error or the new state", body = AlterPartitionAnswer)))]
fn alter_partition() {}

#[utoipa::path(get, path = "/v1/topics", tag = "topics",
    responses((status = 200, body = Vec<TopicSummary>)))]
fn list_topics() {}

#[utoipa::path(post, path = "/v1/topics", tag = "topics", request_body = CreateTopic,
    responses((status = 201, body = CreatedTopic)))]
fn create_topic() {}

#[utoipa::path(get, path = "/v1/topics/{name}", tag = "topics",
    params(("name" = String, Path, description = "Topic name")),
    responses((status = 200, body = TopicDescription)))]
fn describe_topic() {}

#[utoipa::path(delete, path = "/v1/topics/{name}", tag = "topics",
    params(("name" = String, Path, description = "Topic name")),
    responses((status = 204, description = "Deleted")))]
fn delete_topic() {}

#[utoipa::path(post, path = "/v1/topics/{name}/partitions", tag = "topics", request_body = AddPartitionsDoc,
    params(("name" = String, Path, description = "Topic name")),
    responses((status = 200, body = PartitionsDoc)))]
fn add_partitions() {}

#[utoipa::path(post, path = "/v1/elections", tag = "topics", request_body = ElectionRequest,
    responses((status = 200, description = "Per-partition results", body = ElectionsDoc)))]
fn elections() {}

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
fn metrics() {}

#[utoipa::path(get, path = "/ui", tag = "health",
    responses((status = 200, description = "The status page (HTML, refreshes itself)", body = String, content_type = "text/html")))]
fn ui() {}

#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "This document", body = serde_json::Value)))]
fn openapi_json() {}

/// Adds the error answer (every status not listed) to every operation.
struct ErrorAnswers;

impl Modify for ErrorAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let error = ResponseBuilder::new()
            .description("An error: a Kafka-style code and a message")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .insert("default".to_string(), RefOr::T(error.clone()));
            }
        }
    }
}

/// The API listener's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "kraftd",
        description = "A KRaft-style controller quorum: brokers register, heartbeat, report ISR changes and follow the metadata log; operators inspect the quorum, the image and the files."
    ),
    paths(
        healthz, readyz, metrics, ui, openapi_json,
        quorum_status, quorum_replication, quorum_snapshot, add_voter, remove_voter,
        metadata_log, snapshots, snapshot_file, metadata_image,
        get_config, patch_config,
        list_brokers, get_broker, unregister_broker, register_broker, heartbeat, alter_partition,
        list_topics, create_topic, describe_topic, delete_topic, add_partitions, elections,
    ),
    components(schemas(
        ErrorBody, crate::contract::ErrorCode, SnapshotRefDoc, Listener, FeatureRange, AlterTopic, AlterPartitionData,
        AlterPartitionResult, AlterTopicResult, TopicPartition,
    )),
    modifiers(&ErrorAnswers)
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn serve() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
