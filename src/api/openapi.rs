//! `GET /openapi.json`: the API listener's contract, generated with utoipa from the request
//! and answer types of [`crate::contract`], which the handlers and the client both use.
//! The operations are declared on stand-in functions (one per route) so the handlers stay
//! plain; `tests/openapi_schemathesis.rs` runs
//! schemathesis against a live node to check that every answer matches this document.

#![allow(dead_code)] // the stand-in functions exist only for their attributes

use axum::response::IntoResponse;
use axum::Json;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{ContentBuilder, RefOr};
use utoipa::{Modify, OpenApi};

use crate::contract::brokers::{
    BrokerEpoch, BrokerView, FeatureRange, Heartbeat, HeartbeatAnswer, Listener, Registration,
};
use crate::contract::configs::ConfigPatch;
use crate::contract::metadata::{Image, LogJson, SnapshotFile, SnapshotRef, WriteAck};
use crate::contract::partitions::{
    AlterPartition, AlterPartitionAnswer, AlterPartitionData, AlterPartitionResult, AlterTopic,
    AlterTopicResult, ElectionRequest, Elections, TopicPartition,
};
use crate::contract::quorum::{
    LeaderMoved, NewVoter, QuorumHealth, QuorumStatus, Replica, SnapshotTaken, TransferLeader,
    Voter, VoterAddress, Voters,
};
use crate::contract::topics::{
    AddPartitions, CreateTopic, CreatedTopic, Partitions, TopicDescription, TopicSummary,
};
use crate::contract::ErrorBody;

// ---- operations (stand-ins carrying the attributes) ----

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers", body = String, content_type = "text/plain")))]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "A leader is known and this node has applied what it saw committed", body = String, content_type = "text/plain")))]
fn readyz() {}

#[utoipa::path(get, path = "/v1/quorum/status", tag = "quorum",
    responses((status = 200, body = QuorumStatus)))]
fn quorum_status() {}

#[utoipa::path(get, path = "/v1/quorum/replication", tag = "quorum",
    responses((status = 200, description = "Served (or forwarded to) the leader", body = Vec<Replica>)))]
fn quorum_replication() {}

#[utoipa::path(get, path = "/v1/quorum/health", tag = "quorum",
    responses(
        (status = 200, description = "Writes commit: healthy, or degraded (a voter down or behind); judged by the leader", body = QuorumHealth),
        (status = 503, description = "Writes cannot commit: no leader, or fewer than a majority of voters up", body = QuorumHealth)))]
fn quorum_health() {}

#[utoipa::path(post, path = "/v1/quorum/snapshot", tag = "quorum",
    responses((status = 200, description = "This node took a checkpoint", body = SnapshotTaken)))]
fn quorum_snapshot() {}

#[utoipa::path(post, path = "/v1/quorum/voters", tag = "quorum", request_body = NewVoter,
    responses((status = 200, description = "Added: a learner until caught up, then a voter", body = Voters)))]
fn add_voter() {}

#[utoipa::path(delete, path = "/v1/quorum/voters/{id}", tag = "quorum",
    params(("id" = u64, Path, description = "Node id of the voter")),
    responses((status = 200, body = Voters)))]
fn remove_voter() {}

#[utoipa::path(patch, path = "/v1/quorum/voters/{id}", tag = "quorum", request_body = VoterAddress,
    params(("id" = u64, Path, description = "Node id of the member")),
    responses((status = 200, description = "The member's addresses now (Kafka's UpdateRaftVoter)", body = Voter)))]
fn update_voter() {}

#[utoipa::path(post, path = "/v1/quorum/transfer-leader", tag = "quorum",
    request_body(content = Option<TransferLeader>, description = "Optional: an empty body names the voter whose log is furthest along"),
    responses((status = 200, description = "Another voter leads (the one named, unless another won the election)", body = LeaderMoved)))]
fn transfer_leader() {}

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
                (LogJson = "application/json"),
            )),
    ))]
fn metadata_log() {}

#[utoipa::path(get, path = "/v1/metadata/snapshots", tag = "metadata",
    responses((status = 200, description = "Newest first", body = Vec<SnapshotFile>)))]
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
    responses((status = 200, body = Image)))]
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
    responses((status = 200, description = "Committed", body = WriteAck)))]
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
    responses((status = 200, body = BrokerEpoch)))]
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

#[utoipa::path(post, path = "/v1/topics/{name}/partitions", tag = "topics", request_body = AddPartitions,
    params(("name" = String, Path, description = "Topic name")),
    responses((status = 200, body = Partitions)))]
fn add_partitions() {}

#[utoipa::path(post, path = "/v1/elections", tag = "topics", request_body = ElectionRequest,
    responses((status = 200, description = "Per-partition results", body = Elections)))]
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

/// Declares how a caller proves who it is (README, "Security"): a bearer token, or a client
/// certificate over TLS. The node asks for either only when it has a principals file.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of the principals file (`kraftd new-token`), which keeps only \
                         its SHA-256. Needed when the node has `auth_principals_file`; \
                         without valid credentials a call gets 401 \
                         SASL_AUTHENTICATION_FAILED, and a call the principal's role does not \
                         grant gets 403 CLUSTER_AUTHORIZATION_FAILED.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "mutualTLS",
            SecurityScheme::MutualTls {
                description: Some(
                    "A client certificate from the cluster's CA (with TLS on); its common \
                     name is the principal. The same rules as a bearer token."
                        .into(),
                ),
                extensions: None,
            },
        );
        openapi.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("mutualTLS", Vec::<String>::new()),
        ]);
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
        quorum_status, quorum_replication, quorum_health, quorum_snapshot, add_voter, remove_voter, update_voter, transfer_leader,
        metadata_log, snapshots, snapshot_file, metadata_image,
        get_config, patch_config,
        list_brokers, get_broker, unregister_broker, register_broker, heartbeat, alter_partition,
        list_topics, create_topic, describe_topic, delete_topic, add_partitions, elections,
    ),
    components(schemas(
        ErrorBody, crate::contract::ErrorCode, SnapshotRef, Listener, FeatureRange, AlterTopic, AlterPartitionData,
        AlterPartitionResult, AlterTopicResult, TopicPartition,
    )),
    modifiers(&ErrorAnswers, &Credentials)
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn serve() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
