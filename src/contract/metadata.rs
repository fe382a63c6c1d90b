//! Metadata calls: the log, the checkpoints and the image (`/v1/metadata/*`), and the
//! answer to a config write.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Content type of raw v2 record batches (`GET /v1/metadata/log` without JSON).
pub const RECORD_BATCHES: &str = "application/vnd.kafka.record-batches";

/// Names a checkpoint: `{end_offset, epoch}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotRef {
    /// Offset after the last record it holds.
    pub end_offset: i64,
    /// Epoch of that record.
    pub epoch: i32,
}

/// One checkpoint in `GET /v1/metadata/snapshots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotFile {
    /// Offset after the last record it holds.
    pub end_offset: i64,
    /// Epoch of that record.
    pub epoch: i32,
    /// File name in `__cluster_metadata-0/`.
    pub file_name: String,
    /// Bytes.
    pub size: u64,
    /// The header's LastContainedLogTimestamp, if readable.
    pub last_contained_log_timestamp: Option<i64>,
}

impl SnapshotFile {
    /// The `{end_offset, epoch}` pair naming it.
    pub fn id(&self) -> SnapshotRef {
        SnapshotRef {
            end_offset: self.end_offset,
            epoch: self.epoch,
        }
    }
}

/// One record of `GET /v1/metadata/log` with `Accept: application/json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogRecord {
    /// Offset.
    pub offset: i64,
    /// Epoch of its batch.
    pub epoch: i32,
    /// Kafka's record type name, e.g. `TOPIC_RECORD`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Record version.
    pub version: i16,
    /// The fields, as Kafka's JSON spells them.
    pub data: Value,
}

/// `GET /v1/metadata/log` with `Accept: application/json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogJson {
    /// The records.
    pub records: Vec<LogRecord>,
    /// Offset after the last committed record.
    pub high_watermark: i64,
    /// Where to continue.
    pub next_offset: i64,
}

/// `GET /v1/metadata/image`: the image at the answering node's applied offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Image {
    /// Offset after the last applied record.
    pub offset: i64,
    /// Its epoch.
    pub epoch: i32,
    /// The image: `features` (finalized levels), `brokers`, `producer_ids`, `topics` with
    /// their partitions, and `configs` (`{"brokers": {name: {k: v}}, "topics": ...}`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub image: Map<String, Value>,
}

/// A committed write: the offset of its last record and its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WriteAck {
    /// Offset of the last record written.
    pub offset: i64,
    /// Epoch it was written in.
    pub epoch: i32,
}
