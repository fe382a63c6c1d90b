//! Why a record was refused by the image.

use thiserror::Error;
use uuid::Uuid;

use crate::record::uuid_fmt::kafka_uuid;

/// A record that does not fit the image; the image was left exactly as it was.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImageError {
    /// The record names a topic id that no TopicRecord created (or one already removed).
    #[error("{record}: no topic has id {}", kafka_uuid(.topic_id))]
    UnknownTopicId {
        record: &'static str,
        topic_id: Uuid,
    },

    /// A PartitionChangeRecord for a partition that no PartitionRecord created.
    #[error("{record}: topic {topic} (id {}) has no partition {partition}", kafka_uuid(.topic_id))]
    UnknownPartition {
        record: &'static str,
        topic: String,
        topic_id: Uuid,
        partition: i32,
    },

    /// A TopicRecord whose name is taken by a live topic.
    #[error(
        "TopicRecord: topic {name} already exists with id {} (new id {})",
        kafka_uuid(.existing_id),
        kafka_uuid(.topic_id)
    )]
    DuplicateTopicName {
        name: String,
        existing_id: Uuid,
        topic_id: Uuid,
    },

    /// A TopicRecord whose id is taken by a live topic.
    #[error("TopicRecord: topic id {} is already used by topic {existing_name} (new name {name})", kafka_uuid(.topic_id))]
    DuplicateTopicId {
        topic_id: Uuid,
        existing_name: String,
        name: String,
    },

    /// The record names a broker id that is not registered.
    #[error("{record}: broker {broker_id} is not registered")]
    UnknownBroker {
        record: &'static str,
        broker_id: i32,
    },

    /// The record's broker epoch is not that of the broker's current registration.
    #[error("{record}: broker {broker_id} is registered with epoch {current}, not {given}")]
    BrokerEpochMismatch {
        record: &'static str,
        broker_id: i32,
        current: i64,
        given: i64,
    },

    /// A ProducerIdsRecord that would hand out producer ids again.
    #[error(
        "ProducerIdsRecord: next producer id {given} is not greater than the current {current}"
    )]
    ProducerIdNotIncreasing { current: i64, given: i64 },

    /// A topic ConfigRecord for a topic that does not exist.
    #[error("ConfigRecord: topic {topic} does not exist")]
    ConfigForUnknownTopic { topic: String },

    /// The record would leave a partition in a state Kafka's controller never produces.
    #[error("{record}: partition {topic}-{partition}: {detail}")]
    InvalidPartition {
        record: &'static str,
        topic: String,
        partition: i32,
        detail: String,
    },

    /// A field holds a value the record type does not allow.
    #[error("{record}: invalid {field}: {detail}")]
    InvalidField {
        record: &'static str,
        field: &'static str,
        detail: String,
    },
}

impl ImageError {
    /// Shorthand for [`ImageError::InvalidField`].
    pub(crate) fn invalid(
        record: &'static str,
        field: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ImageError::InvalidField {
            record,
            field,
            detail: detail.into(),
        }
    }
}
