//! Kafka's metadata records (the data records of `__cluster_metadata`), as typed values.
//!
//! A record value is `uvarint frame version (1)`, `uvarint apiKey`, `uvarint version`, then
//! the body in Kafka's flexible encoding. See shared/FORMAT.md for the fields per version.

use serde::Serialize;
use uuid::Uuid;

use super::error::RecordError;
use super::uuid_fmt;

/// A metadata record and the version it was read at (or is to be written at).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionedRecord {
    /// Record schema version.
    pub version: i16,
    /// The record itself.
    pub record: MetadataRecord,
}

/// Every metadata record type kraftd reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum MetadataRecord {
    /// apiKey 0.
    RegisterBroker(RegisterBrokerRecord),
    /// apiKey 1.
    UnregisterBroker(UnregisterBrokerRecord),
    /// apiKey 2.
    Topic(TopicRecord),
    /// apiKey 3.
    Partition(PartitionRecord),
    /// apiKey 4.
    Config(ConfigRecord),
    /// apiKey 5.
    PartitionChange(PartitionChangeRecord),
    /// apiKey 9.
    RemoveTopic(RemoveTopicRecord),
    /// apiKey 12.
    FeatureLevel(FeatureLevelRecord),
    /// apiKey 15.
    ProducerIds(ProducerIdsRecord),
    /// apiKey 17.
    BrokerRegistrationChange(BrokerRegistrationChangeRecord),
    /// apiKey 20: no fields; the active controller writes one when idle.
    NoOp,
}

/// ConfigRecord resource type of a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// ConfigRecord resource type of a broker (empty name = cluster default).
pub const RESOURCE_BROKER: i8 = 4;
/// PartitionChangeRecord.leader meaning "leader unchanged".
pub const NO_LEADER_CHANGE: i32 = -2;
/// Leader id meaning "no leader" (offline partition).
pub const NO_LEADER: i32 = -1;

/// apiKey 0: a broker registered (or re-registered with a new incarnation).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RegisterBrokerRecord {
    pub broker_id: i32,
    /// v2+.
    pub is_migrating_zk_broker: bool,
    #[serde(serialize_with = "uuid_fmt::serialize")]
    pub incarnation_id: Uuid,
    pub broker_epoch: i64,
    pub end_points: Vec<BrokerEndpoint>,
    pub features: Vec<BrokerFeature>,
    pub rack: Option<String>,
    pub fenced: bool,
    /// v1+.
    pub in_controlled_shutdown: bool,
    /// v3+, tagged field 0.
    #[serde(serialize_with = "uuid_fmt::serialize_vec")]
    pub log_dirs: Vec<Uuid>,
}

/// A listener of a registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BrokerEndpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: i16,
}

/// A feature range a broker supports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BrokerFeature {
    pub name: String,
    pub min_supported_version: i16,
    pub max_supported_version: i16,
}

/// apiKey 1: a broker was unregistered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct UnregisterBrokerRecord {
    pub broker_id: i32,
    pub broker_epoch: i64,
}

/// apiKey 2: a topic was created.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct TopicRecord {
    pub name: String,
    #[serde(serialize_with = "uuid_fmt::serialize")]
    pub topic_id: Uuid,
}

/// apiKey 3: the full state of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PartitionRecord {
    pub partition_id: i32,
    #[serde(serialize_with = "uuid_fmt::serialize")]
    pub topic_id: Uuid,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub removing_replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    pub leader: i32,
    /// Tagged field 0 (default 0 = RECOVERED, 1 = RECOVERING).
    pub leader_recovery_state: i8,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// v1+.
    #[serde(serialize_with = "uuid_fmt::serialize_vec")]
    pub directories: Vec<Uuid>,
    /// v2+, tagged field 1, nullable (default null).
    pub eligible_leader_replicas: Option<Vec<i32>>,
    /// v2+, tagged field 2, nullable (default null).
    pub last_known_elr: Option<Vec<i32>>,
}

/// apiKey 4: a config key set (value Some) or deleted (value None).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ConfigRecord {
    /// [`RESOURCE_TOPIC`] or [`RESOURCE_BROKER`].
    pub resource_type: i8,
    pub resource_name: String,
    pub name: String,
    pub value: Option<String>,
}

/// apiKey 5: a change to one partition; every field but the ids is optional (tagged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionChangeRecord {
    pub partition_id: i32,
    #[serde(serialize_with = "uuid_fmt::serialize")]
    pub topic_id: Uuid,
    /// Tag 0; None = unchanged.
    pub isr: Option<Vec<i32>>,
    /// Tag 1; [`NO_LEADER_CHANGE`] (-2, the default) = unchanged, -1 = no leader.
    pub leader: i32,
    /// Tag 2; None = unchanged.
    pub replicas: Option<Vec<i32>>,
    /// Tag 3; None = unchanged.
    pub removing_replicas: Option<Vec<i32>>,
    /// Tag 4; None = unchanged.
    pub adding_replicas: Option<Vec<i32>>,
    /// Tag 5; -1 (the default) = unchanged.
    pub leader_recovery_state: i8,
    /// Tag 6, v2+; None = unchanged.
    pub eligible_leader_replicas: Option<Vec<i32>>,
    /// Tag 7, v2+; None = unchanged.
    pub last_known_elr: Option<Vec<i32>>,
    /// Tag 8, v1+; None = unchanged.
    #[serde(serialize_with = "uuid_fmt::serialize_opt_vec")]
    pub directories: Option<Vec<Uuid>>,
}

impl Default for PartitionChangeRecord {
    fn default() -> Self {
        PartitionChangeRecord {
            partition_id: 0,
            topic_id: Uuid::nil(),
            isr: None,
            leader: NO_LEADER_CHANGE,
            replicas: None,
            removing_replicas: None,
            adding_replicas: None,
            leader_recovery_state: -1,
            eligible_leader_replicas: None,
            last_known_elr: None,
            directories: None,
        }
    }
}

/// apiKey 9: a topic was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RemoveTopicRecord {
    #[serde(serialize_with = "uuid_fmt::serialize")]
    pub topic_id: Uuid,
}

/// apiKey 12: a finalized feature level (0 removes the feature).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FeatureLevelRecord {
    pub name: String,
    pub feature_level: i16,
}

/// apiKey 15: the next producer-id block was handed to a broker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ProducerIdsRecord {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub next_producer_id: i64,
}

/// apiKey 17: a broker's fencing / controlled-shutdown state changed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BrokerRegistrationChangeRecord {
    pub broker_id: i32,
    pub broker_epoch: i64,
    /// Tag 0: -1 unfence, 0 unchanged, 1 fence.
    pub fenced: i8,
    /// Tag 1, v1+: 0 unchanged, 1 in controlled shutdown.
    pub in_controlled_shutdown: i8,
    /// Tag 2, v2+.
    #[serde(serialize_with = "uuid_fmt::serialize_vec")]
    pub log_dirs: Vec<Uuid>,
}

// ---- API (bodies to be written) ----

/// The `(min, max)` versions kraftd reads for an api key, or None for an unknown key.
pub fn supported_versions(api_key: u32) -> Option<(i16, i16)> {
    let _ = api_key;
    unimplemented!()
}

impl MetadataRecord {
    /// Kafka's apiKey of this record type.
    pub fn api_key(&self) -> u32 {
        unimplemented!()
    }

    /// Kafka's name of this record type, e.g. `PartitionChangeRecord`.
    pub fn type_name(&self) -> &'static str {
        unimplemented!()
    }

    /// The version a writer uses: metadata.version 3.7-IV1's version of this type, raised to
    /// the lowest version that can carry every field that is set.
    pub fn writer_version(&self) -> i16 {
        unimplemented!()
    }
}

impl VersionedRecord {
    /// The record at its [`MetadataRecord::writer_version`].
    pub fn new(record: MetadataRecord) -> Self {
        VersionedRecord {
            version: record.writer_version(),
            record,
        }
    }

    /// Appends the full record value (frame version, apiKey, version, body) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        let _ = out;
        unimplemented!()
    }

    /// The full record value as a new buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RecordError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Decodes a full record value; rejects frame version 0, unknown apiKeys, unsupported
    /// versions, malformed fields and trailing bytes.
    pub fn decode(value: &[u8]) -> Result<Self, RecordError> {
        let _ = value;
        unimplemented!()
    }
}
