//! Kafka's metadata records (the data records of `__cluster_metadata`), as typed values.
//!
//! A record value is `uvarint frame version (1)`, `uvarint apiKey`, `uvarint version`, then
//! the body in Kafka's flexible encoding. See shared/FORMAT.md for the fields per version.

use serde::Serialize;
use uuid::Uuid;

use super::error::RecordError;
use super::uuid_fmt;
use super::wire::Reader;
pub use super::wire::MAX_STRING_BYTES;

/// A metadata record and the version it was read at (or is to be written at).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
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
    /// apiKey 23 (KIP-868): the records up to the matching EndTransactionRecord are one
    /// atomic change; replay applies them only when it reaches the end.
    BeginTransaction(BeginTransactionRecord),
    /// apiKey 24 (KIP-868): ends the open metadata transaction; its records apply now.
    EndTransaction,
    /// apiKey 25 (KIP-868): drops the open metadata transaction's records.
    AbortTransaction(AbortTransactionRecord),
}

/// apiKey 23: starts a metadata transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BeginTransactionRecord {
    /// Tagged field 0: what the transaction is for.
    pub name: Option<String>,
}

/// apiKey 25: aborts a metadata transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortTransactionRecord {
    /// Tagged field 0: why it was aborted.
    pub reason: Option<String>,
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
#[serde(rename_all = "camelCase")]
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
#[serde(rename_all = "camelCase")]
pub struct BrokerEndpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: i16,
}

/// A feature range a broker supports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerFeature {
    pub name: String,
    pub min_supported_version: i16,
    pub max_supported_version: i16,
}

/// apiKey 1: a broker was unregistered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnregisterBrokerRecord {
    pub broker_id: i32,
    pub broker_epoch: i64,
}

/// apiKey 2: a topic was created.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRecord {
    pub name: String,
    #[serde(serialize_with = "uuid_fmt::serialize")]
    pub topic_id: Uuid,
}

/// apiKey 3: the full state of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
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
#[serde(rename_all = "camelCase")]
pub struct ConfigRecord {
    /// [`RESOURCE_TOPIC`] or [`RESOURCE_BROKER`].
    pub resource_type: i8,
    pub resource_name: String,
    pub name: String,
    pub value: Option<String>,
}

/// apiKey 5: a change to one partition; every field but the ids is optional (tagged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
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
#[serde(rename_all = "camelCase")]
pub struct RemoveTopicRecord {
    #[serde(serialize_with = "uuid_fmt::serialize")]
    pub topic_id: Uuid,
}

/// apiKey 12: a finalized feature level (0 removes the feature).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureLevelRecord {
    pub name: String,
    pub feature_level: i16,
}

/// apiKey 15: the next producer-id block was handed to a broker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerIdsRecord {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub next_producer_id: i64,
}

/// apiKey 17: a broker's fencing / controlled-shutdown state changed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
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

// ---- API ----

/// Every api key kraftd reads and writes, ascending.
pub const METADATA_API_KEYS: [u32; 14] = [0, 1, 2, 3, 4, 5, 9, 12, 15, 17, 20, 23, 24, 25];

/// The `(min, max)` versions kraftd reads for an api key, or None for an unknown key.
pub fn supported_versions(api_key: u32) -> Option<(i16, i16)> {
    match api_key {
        0 => Some((0, 3)),
        3 | 5 | 17 => Some((0, 2)),
        1 | 2 | 4 | 9 | 12 | 15 | 20 | 23 | 24 | 25 => Some((0, 0)),
        _ => None,
    }
}

/// Kafka's name of the record type with this api key, or None for an unknown key.
pub fn type_name_of(api_key: u32) -> Option<&'static str> {
    Some(match api_key {
        0 => "RegisterBrokerRecord",
        1 => "UnregisterBrokerRecord",
        2 => "TopicRecord",
        3 => "PartitionRecord",
        4 => "ConfigRecord",
        5 => "PartitionChangeRecord",
        9 => "RemoveTopicRecord",
        12 => "FeatureLevelRecord",
        15 => "ProducerIdsRecord",
        17 => "BrokerRegistrationChangeRecord",
        20 => "NoOpRecord",
        23 => "BeginTransactionRecord",
        24 => "EndTransactionRecord",
        25 => "AbortTransactionRecord",
        _ => return None,
    })
}

impl MetadataRecord {
    /// Kafka's apiKey of this record type.
    pub fn api_key(&self) -> u32 {
        match self {
            MetadataRecord::RegisterBroker(_) => 0,
            MetadataRecord::UnregisterBroker(_) => 1,
            MetadataRecord::Topic(_) => 2,
            MetadataRecord::Partition(_) => 3,
            MetadataRecord::Config(_) => 4,
            MetadataRecord::PartitionChange(_) => 5,
            MetadataRecord::RemoveTopic(_) => 9,
            MetadataRecord::FeatureLevel(_) => 12,
            MetadataRecord::ProducerIds(_) => 15,
            MetadataRecord::BrokerRegistrationChange(_) => 17,
            MetadataRecord::NoOp => 20,
            MetadataRecord::BeginTransaction(_) => 23,
            MetadataRecord::EndTransaction => 24,
            MetadataRecord::AbortTransaction(_) => 25,
        }
    }

    /// Kafka's name of this record type, e.g. `PartitionChangeRecord`.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetadataRecord::RegisterBroker(_) => "RegisterBrokerRecord",
            MetadataRecord::UnregisterBroker(_) => "UnregisterBrokerRecord",
            MetadataRecord::Topic(_) => "TopicRecord",
            MetadataRecord::Partition(_) => "PartitionRecord",
            MetadataRecord::Config(_) => "ConfigRecord",
            MetadataRecord::PartitionChange(_) => "PartitionChangeRecord",
            MetadataRecord::RemoveTopic(_) => "RemoveTopicRecord",
            MetadataRecord::FeatureLevel(_) => "FeatureLevelRecord",
            MetadataRecord::ProducerIds(_) => "ProducerIdsRecord",
            MetadataRecord::BrokerRegistrationChange(_) => "BrokerRegistrationChangeRecord",
            MetadataRecord::NoOp => "NoOpRecord",
            MetadataRecord::BeginTransaction(_) => "BeginTransactionRecord",
            MetadataRecord::EndTransaction => "EndTransactionRecord",
            MetadataRecord::AbortTransaction(_) => "AbortTransactionRecord",
        }
    }

    /// The version a writer uses: metadata.version 3.7-IV1's version of this type, raised to
    /// the lowest version that can carry every field that is set.
    pub fn writer_version(&self) -> i16 {
        let base = match self {
            MetadataRecord::RegisterBroker(_) => 2,
            MetadataRecord::BrokerRegistrationChange(_) => 1,
            _ => 0,
        };
        base.max(self.lowest_version_carrying_fields().0)
    }

    /// The lowest version that carries every non-default field, and the field that forces it
    /// (the one named when a lower version is asked for).
    fn lowest_version_carrying_fields(&self) -> (i16, &'static str) {
        match self {
            MetadataRecord::RegisterBroker(r) => {
                if !r.log_dirs.is_empty() {
                    (3, "LogDirs")
                } else if r.is_migrating_zk_broker {
                    (2, "IsMigratingZkBroker")
                } else if r.in_controlled_shutdown {
                    (1, "InControlledShutdown")
                } else {
                    (0, "")
                }
            }
            MetadataRecord::Partition(p) => {
                if p.eligible_leader_replicas.is_some() {
                    (2, "EligibleLeaderReplicas")
                } else if p.last_known_elr.is_some() {
                    (2, "LastKnownElr")
                } else if !p.directories.is_empty() {
                    (1, "Directories")
                } else {
                    (0, "")
                }
            }
            MetadataRecord::PartitionChange(p) => {
                if p.eligible_leader_replicas.is_some() {
                    (2, "EligibleLeaderReplicas")
                } else if p.last_known_elr.is_some() {
                    (2, "LastKnownElr")
                } else if p.directories.is_some() {
                    (1, "Directories")
                } else {
                    (0, "")
                }
            }
            MetadataRecord::BrokerRegistrationChange(b) => {
                if !b.log_dirs.is_empty() {
                    (2, "LogDirs")
                } else if b.in_controlled_shutdown != 0 {
                    (1, "InControlledShutdown")
                } else {
                    (0, "")
                }
            }
            _ => (0, ""),
        }
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
    ///
    /// On error `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        let name = self.record.type_name();
        let api_key = self.record.api_key();
        let (min, max) = supported_versions(api_key).unwrap_or((0, -1));
        let version = self.version;
        if !(min..=max).contains(&version) {
            return Err(RecordError::UnsupportedVersion {
                record: name,
                version,
                min,
                max,
            });
        }
        // Kafka's generated writers throw UnsupportedVersionException rather than silently
        // dropping a set field the version has no room for; so do we.
        let (needed, field) = self.record.lowest_version_carrying_fields();
        if version < needed {
            return Err(RecordError::FieldNotInVersion {
                record: name,
                version,
                field,
            });
        }
        let start = out.len();
        put_uvarint(out, 1);
        put_uvarint(out, api_key);
        put_uvarint(out, version as u32);
        let body = write_body(out, &self.record, version);
        if body.is_err() {
            out.truncate(start);
        }
        body
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
        let mut r = Reader::new(value);
        let frame = r.uvarint("frame version")?;
        if frame != 1 {
            return Err(RecordError::FrameVersion(frame));
        }
        let api_key = r.uvarint("api key")?;
        let (Some((min, max)), Some(name)) = (supported_versions(api_key), type_name_of(api_key))
        else {
            return Err(RecordError::UnknownApiKey(api_key));
        };
        let raw_version = r.uvarint("version")?;
        // Kafka reads the version as an unsigned varint that must fit an int16; a larger one
        // is not a version at all, and the error type has no room for it.
        let version = i16::try_from(raw_version).map_err(|_| {
            RecordError::invalid("version", format!("{raw_version} does not fit an int16"))
        })?;
        if !(min..=max).contains(&version) {
            return Err(RecordError::UnsupportedVersion {
                record: name,
                version,
                min,
                max,
            });
        }
        let record = match api_key {
            0 => MetadataRecord::RegisterBroker(read_register_broker(&mut r, version)?),
            1 => MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
                broker_id: r.i32("UnregisterBrokerRecord.BrokerId")?,
                broker_epoch: r.i64("UnregisterBrokerRecord.BrokerEpoch")?,
            }),
            2 => MetadataRecord::Topic(TopicRecord {
                name: r.string("TopicRecord.Name")?,
                topic_id: r.uuid("TopicRecord.TopicId")?,
            }),
            3 => MetadataRecord::Partition(read_partition(&mut r, version)?),
            4 => MetadataRecord::Config(ConfigRecord {
                resource_type: r.i8("ConfigRecord.ResourceType")?,
                resource_name: r.string("ConfigRecord.ResourceName")?,
                name: r.string("ConfigRecord.Name")?,
                value: r.opt_string("ConfigRecord.Value")?,
            }),
            5 => MetadataRecord::PartitionChange(read_partition_change(&mut r, version)?),
            9 => MetadataRecord::RemoveTopic(RemoveTopicRecord {
                topic_id: r.uuid("RemoveTopicRecord.TopicId")?,
            }),
            12 => MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: r.string("FeatureLevelRecord.Name")?,
                feature_level: r.i16("FeatureLevelRecord.FeatureLevel")?,
            }),
            15 => MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: r.i32("ProducerIdsRecord.BrokerId")?,
                broker_epoch: r.i64("ProducerIdsRecord.BrokerEpoch")?,
                next_producer_id: r.i64("ProducerIdsRecord.NextProducerId")?,
            }),
            17 => MetadataRecord::BrokerRegistrationChange(read_broker_registration_change(
                &mut r, version,
            )?),
            20 => MetadataRecord::NoOp,
            23 => MetadataRecord::BeginTransaction(BeginTransactionRecord {
                name: read_tagged_opt_string(&mut r, "BeginTransactionRecord.Name")?,
            }),
            24 => MetadataRecord::EndTransaction,
            25 => MetadataRecord::AbortTransaction(AbortTransactionRecord {
                reason: read_tagged_opt_string(&mut r, "AbortTransactionRecord.Reason")?,
            }),
            _ => return Err(RecordError::UnknownApiKey(api_key)),
        };
        if !has_own_tagged_fields(api_key) {
            r.tagged_fields(skip_unknown)?;
        }
        match r.remaining() {
            0 => Ok(VersionedRecord { version, record }),
            n => Err(RecordError::TrailingBytes(n)),
        }
    }
}

// ---- writing ----

fn write_body(out: &mut Vec<u8>, record: &MetadataRecord, version: i16) -> Result<(), RecordError> {
    match record {
        MetadataRecord::RegisterBroker(r) => write_register_broker(out, r, version)?,
        MetadataRecord::UnregisterBroker(r) => {
            out.extend_from_slice(&r.broker_id.to_be_bytes());
            out.extend_from_slice(&r.broker_epoch.to_be_bytes());
        }
        MetadataRecord::Topic(r) => {
            put_str(out, "TopicRecord.Name", &r.name)?;
            out.extend_from_slice(r.topic_id.as_bytes());
        }
        MetadataRecord::Partition(r) => write_partition(out, r, version)?,
        MetadataRecord::Config(r) => {
            out.push(r.resource_type as u8);
            put_str(out, "ConfigRecord.ResourceName", &r.resource_name)?;
            put_str(out, "ConfigRecord.Name", &r.name)?;
            put_opt_str(out, "ConfigRecord.Value", r.value.as_deref())?;
        }
        MetadataRecord::PartitionChange(r) => write_partition_change(out, r)?,
        MetadataRecord::RemoveTopic(r) => out.extend_from_slice(r.topic_id.as_bytes()),
        MetadataRecord::FeatureLevel(r) => {
            put_str(out, "FeatureLevelRecord.Name", &r.name)?;
            out.extend_from_slice(&r.feature_level.to_be_bytes());
        }
        MetadataRecord::ProducerIds(r) => {
            out.extend_from_slice(&r.broker_id.to_be_bytes());
            out.extend_from_slice(&r.broker_epoch.to_be_bytes());
            out.extend_from_slice(&r.next_producer_id.to_be_bytes());
        }
        MetadataRecord::BrokerRegistrationChange(r) => write_broker_registration_change(out, r)?,
        MetadataRecord::NoOp | MetadataRecord::EndTransaction => {}
        MetadataRecord::BeginTransaction(r) => {
            put_tagged_opt_string(out, "BeginTransactionRecord.Name", r.name.as_deref())?
        }
        MetadataRecord::AbortTransaction(r) => {
            put_tagged_opt_string(out, "AbortTransactionRecord.Reason", r.reason.as_deref())?
        }
    }
    if !has_own_tagged_fields(record.api_key()) {
        out.push(0);
    }
    Ok(())
}

/// Whether the record's body code handles its tagged-field section; the rest have no tagged
/// fields but still end with an (empty) section.
fn has_own_tagged_fields(api_key: u32) -> bool {
    matches!(api_key, 0 | 3 | 5 | 17 | 23 | 25)
}

/// A struct whose only field is a nullable string in tag 0 (left out when null, its
/// default): the body of Begin- and AbortTransactionRecord.
fn put_tagged_opt_string(
    out: &mut Vec<u8>,
    field: &'static str,
    s: Option<&str>,
) -> Result<(), RecordError> {
    let Some(s) = s else {
        out.push(0);
        return Ok(());
    };
    let mut payload = Vec::with_capacity(s.len() + 5);
    put_str(&mut payload, field, s)?;
    let size = u32::try_from(payload.len())
        .map_err(|_| RecordError::invalid(field, "longer than a tagged field can be"))?;
    out.push(1);
    put_uvarint(out, 0);
    put_uvarint(out, size);
    out.extend_from_slice(&payload);
    Ok(())
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn uvarint_size(v: u32) -> u32 {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0x0fff_ffff => 4,
        _ => 5,
    }
}

/// The compact length prefix (`len + 1`); Kafka reads lengths into an int32.
fn compact_len(field: &'static str, len: usize) -> Result<u32, RecordError> {
    if len < i32::MAX as usize {
        Ok(len as u32 + 1)
    } else {
        Err(RecordError::invalid(
            field,
            format!("{len} elements do not fit Kafka's int32 length"),
        ))
    }
}

/// Payload size of a tagged compact array of fixed-size elements.
fn array_size(field: &'static str, len: usize, elem: usize) -> Result<u32, RecordError> {
    let prefix = uvarint_size(compact_len(field, len)?) as usize;
    match len.checked_mul(elem).and_then(|b| b.checked_add(prefix)) {
        Some(total) if total <= i32::MAX as usize => Ok(total as u32),
        _ => Err(RecordError::invalid(
            field,
            format!("{len} elements do not fit a tagged field"),
        )),
    }
}

fn put_str(out: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), RecordError> {
    if s.len() > MAX_STRING_BYTES {
        return Err(RecordError::invalid(
            field,
            format!(
                "{} bytes; Kafka strings hold at most {MAX_STRING_BYTES}",
                s.len()
            ),
        ));
    }
    put_uvarint(out, s.len() as u32 + 1);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_opt_str(out: &mut Vec<u8>, field: &'static str, s: Option<&str>) -> Result<(), RecordError> {
    match s {
        None => {
            out.push(0);
            Ok(())
        }
        Some(s) => put_str(out, field, s),
    }
}

fn put_i32s(out: &mut Vec<u8>, field: &'static str, v: &[i32]) -> Result<(), RecordError> {
    put_uvarint(out, compact_len(field, v.len())?);
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_be_bytes());
    }
    Ok(())
}

fn put_uuids(out: &mut Vec<u8>, field: &'static str, v: &[Uuid]) -> Result<(), RecordError> {
    put_uvarint(out, compact_len(field, v.len())?);
    out.reserve(v.len() * 16);
    for x in v {
        out.extend_from_slice(x.as_bytes());
    }
    Ok(())
}

fn put_tagged_i8(out: &mut Vec<u8>, tag: u32, v: i8) {
    put_uvarint(out, tag);
    out.push(1);
    out.push(v as u8);
}

fn put_tagged_i32s(
    out: &mut Vec<u8>,
    field: &'static str,
    tag: u32,
    v: &[i32],
) -> Result<(), RecordError> {
    let size = array_size(field, v.len(), 4)?;
    put_uvarint(out, tag);
    put_uvarint(out, size);
    put_i32s(out, field, v)
}

fn put_tagged_uuids(
    out: &mut Vec<u8>,
    field: &'static str,
    tag: u32,
    v: &[Uuid],
) -> Result<(), RecordError> {
    let size = array_size(field, v.len(), 16)?;
    put_uvarint(out, tag);
    put_uvarint(out, size);
    put_uuids(out, field, v)
}

fn write_register_broker(
    out: &mut Vec<u8>,
    r: &RegisterBrokerRecord,
    version: i16,
) -> Result<(), RecordError> {
    out.extend_from_slice(&r.broker_id.to_be_bytes());
    if version >= 2 {
        out.push(r.is_migrating_zk_broker as u8);
    }
    out.extend_from_slice(r.incarnation_id.as_bytes());
    out.extend_from_slice(&r.broker_epoch.to_be_bytes());
    put_uvarint(
        out,
        compact_len("RegisterBrokerRecord.EndPoints", r.end_points.len())?,
    );
    for e in &r.end_points {
        put_str(out, "RegisterBrokerRecord.EndPoints.Name", &e.name)?;
        put_str(out, "RegisterBrokerRecord.EndPoints.Host", &e.host)?;
        out.extend_from_slice(&e.port.to_be_bytes());
        out.extend_from_slice(&e.security_protocol.to_be_bytes());
        out.push(0);
    }
    put_uvarint(
        out,
        compact_len("RegisterBrokerRecord.Features", r.features.len())?,
    );
    for f in &r.features {
        put_str(out, "RegisterBrokerRecord.Features.Name", &f.name)?;
        out.extend_from_slice(&f.min_supported_version.to_be_bytes());
        out.extend_from_slice(&f.max_supported_version.to_be_bytes());
        out.push(0);
    }
    put_opt_str(out, "RegisterBrokerRecord.Rack", r.rack.as_deref())?;
    out.push(r.fenced as u8);
    if version >= 1 {
        out.push(r.in_controlled_shutdown as u8);
    }
    if r.log_dirs.is_empty() {
        out.push(0);
        Ok(())
    } else {
        out.push(1);
        put_tagged_uuids(out, "RegisterBrokerRecord.LogDirs", 0, &r.log_dirs)
    }
}

fn write_partition(
    out: &mut Vec<u8>,
    r: &PartitionRecord,
    version: i16,
) -> Result<(), RecordError> {
    out.reserve(
        64 + 4 * (r.replicas.len() + r.isr.len() + r.removing_replicas.len())
            + 4 * r.adding_replicas.len()
            + 16 * r.directories.len(),
    );
    out.extend_from_slice(&r.partition_id.to_be_bytes());
    out.extend_from_slice(r.topic_id.as_bytes());
    put_i32s(out, "PartitionRecord.Replicas", &r.replicas)?;
    put_i32s(out, "PartitionRecord.Isr", &r.isr)?;
    put_i32s(
        out,
        "PartitionRecord.RemovingReplicas",
        &r.removing_replicas,
    )?;
    put_i32s(out, "PartitionRecord.AddingReplicas", &r.adding_replicas)?;
    out.extend_from_slice(&r.leader.to_be_bytes());
    out.extend_from_slice(&r.leader_epoch.to_be_bytes());
    out.extend_from_slice(&r.partition_epoch.to_be_bytes());
    if version >= 1 {
        put_uuids(out, "PartitionRecord.Directories", &r.directories)?;
    }
    let count = (r.leader_recovery_state != 0) as u8
        + r.eligible_leader_replicas.is_some() as u8
        + r.last_known_elr.is_some() as u8;
    out.push(count);
    if r.leader_recovery_state != 0 {
        put_tagged_i8(out, 0, r.leader_recovery_state);
    }
    if let Some(elr) = &r.eligible_leader_replicas {
        put_tagged_i32s(out, "PartitionRecord.EligibleLeaderReplicas", 1, elr)?;
    }
    if let Some(lke) = &r.last_known_elr {
        put_tagged_i32s(out, "PartitionRecord.LastKnownElr", 2, lke)?;
    }
    Ok(())
}

fn write_partition_change(out: &mut Vec<u8>, r: &PartitionChangeRecord) -> Result<(), RecordError> {
    out.extend_from_slice(&r.partition_id.to_be_bytes());
    out.extend_from_slice(r.topic_id.as_bytes());
    let set_lists = [
        &r.isr,
        &r.replicas,
        &r.removing_replicas,
        &r.adding_replicas,
        &r.eligible_leader_replicas,
        &r.last_known_elr,
    ];
    let count = set_lists.iter().filter(|l| l.is_some()).count() as u8
        + (r.leader != NO_LEADER_CHANGE) as u8
        + (r.leader_recovery_state != -1) as u8
        + r.directories.is_some() as u8;
    out.push(count);
    // Kafka writes tagged fields in tag order, not declaration order (Directories is
    // declared before the ELR fields but has the higher tag).
    if let Some(v) = &r.isr {
        put_tagged_i32s(out, "PartitionChangeRecord.Isr", 0, v)?;
    }
    if r.leader != NO_LEADER_CHANGE {
        put_uvarint(out, 1);
        out.push(4);
        out.extend_from_slice(&r.leader.to_be_bytes());
    }
    if let Some(v) = &r.replicas {
        put_tagged_i32s(out, "PartitionChangeRecord.Replicas", 2, v)?;
    }
    if let Some(v) = &r.removing_replicas {
        put_tagged_i32s(out, "PartitionChangeRecord.RemovingReplicas", 3, v)?;
    }
    if let Some(v) = &r.adding_replicas {
        put_tagged_i32s(out, "PartitionChangeRecord.AddingReplicas", 4, v)?;
    }
    if r.leader_recovery_state != -1 {
        put_tagged_i8(out, 5, r.leader_recovery_state);
    }
    if let Some(v) = &r.eligible_leader_replicas {
        put_tagged_i32s(out, "PartitionChangeRecord.EligibleLeaderReplicas", 6, v)?;
    }
    if let Some(v) = &r.last_known_elr {
        put_tagged_i32s(out, "PartitionChangeRecord.LastKnownElr", 7, v)?;
    }
    if let Some(v) = &r.directories {
        put_tagged_uuids(out, "PartitionChangeRecord.Directories", 8, v)?;
    }
    Ok(())
}

fn write_broker_registration_change(
    out: &mut Vec<u8>,
    r: &BrokerRegistrationChangeRecord,
) -> Result<(), RecordError> {
    out.extend_from_slice(&r.broker_id.to_be_bytes());
    out.extend_from_slice(&r.broker_epoch.to_be_bytes());
    let count = (r.fenced != 0) as u8
        + (r.in_controlled_shutdown != 0) as u8
        + (!r.log_dirs.is_empty()) as u8;
    out.push(count);
    if r.fenced != 0 {
        put_tagged_i8(out, 0, r.fenced);
    }
    if r.in_controlled_shutdown != 0 {
        put_tagged_i8(out, 1, r.in_controlled_shutdown);
    }
    if !r.log_dirs.is_empty() {
        put_tagged_uuids(
            out,
            "BrokerRegistrationChangeRecord.LogDirs",
            2,
            &r.log_dirs,
        )?;
    }
    Ok(())
}

// ---- reading ----

/// Minimum wire size of one RegisterBrokerRecord.EndPoints entry (two empty strings, port,
/// protocol, tag count); bounds how much an untrusted count may pre-allocate.
const ENDPOINT_MIN_BYTES: usize = 7;
/// Minimum wire size of one RegisterBrokerRecord.Features entry.
const FEATURE_MIN_BYTES: usize = 6;

fn skip_unknown(_tag: u32, _payload: &mut Reader<'_>) -> Result<bool, RecordError> {
    Ok(false)
}

/// Reads a tagged-field section whose tag 0 is a nullable string (absent = null).
fn read_tagged_opt_string(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<Option<String>, RecordError> {
    let mut value = None;
    r.tagged_fields(|tag, sub| match tag {
        0 => {
            value = sub.opt_string(field)?;
            Ok(true)
        }
        _ => Ok(false),
    })?;
    Ok(value)
}

/// Kafka's readers throw on a tag they know for a version that does not have the field,
/// rather than skipping it as unknown.
fn tag_not_in_version(what: &'static str, tag: u32, version: i16) -> RecordError {
    RecordError::invalid(what, format!("tag {tag} is not valid at version {version}"))
}

fn read_register_broker(
    r: &mut Reader<'_>,
    version: i16,
) -> Result<RegisterBrokerRecord, RecordError> {
    let broker_id = r.i32("RegisterBrokerRecord.BrokerId")?;
    let is_migrating_zk_broker = if version >= 2 {
        r.bool("RegisterBrokerRecord.IsMigratingZkBroker")?
    } else {
        false
    };
    let incarnation_id = r.uuid("RegisterBrokerRecord.IncarnationId")?;
    let broker_epoch = r.i64("RegisterBrokerRecord.BrokerEpoch")?;
    let n = r.struct_count("RegisterBrokerRecord.EndPoints", ENDPOINT_MIN_BYTES)?;
    let mut end_points = Vec::with_capacity(n);
    for _ in 0..n {
        end_points.push(BrokerEndpoint {
            name: r.string("RegisterBrokerRecord.EndPoints.Name")?,
            host: r.string("RegisterBrokerRecord.EndPoints.Host")?,
            port: r.u16("RegisterBrokerRecord.EndPoints.Port")?,
            security_protocol: r.i16("RegisterBrokerRecord.EndPoints.SecurityProtocol")?,
        });
        r.tagged_fields(skip_unknown)?;
    }
    let n = r.struct_count("RegisterBrokerRecord.Features", FEATURE_MIN_BYTES)?;
    let mut features = Vec::with_capacity(n);
    for _ in 0..n {
        features.push(BrokerFeature {
            name: r.string("RegisterBrokerRecord.Features.Name")?,
            min_supported_version: r.i16("RegisterBrokerRecord.Features.MinSupportedVersion")?,
            max_supported_version: r.i16("RegisterBrokerRecord.Features.MaxSupportedVersion")?,
        });
        r.tagged_fields(skip_unknown)?;
    }
    let rack = r.opt_string("RegisterBrokerRecord.Rack")?;
    let fenced = r.bool("RegisterBrokerRecord.Fenced")?;
    let in_controlled_shutdown = if version >= 1 {
        r.bool("RegisterBrokerRecord.InControlledShutdown")?
    } else {
        false
    };
    let mut log_dirs = Vec::new();
    r.tagged_fields(|tag, sub| match tag {
        0 if version < 3 => Err(tag_not_in_version(
            "RegisterBrokerRecord.LogDirs",
            tag,
            version,
        )),
        0 => {
            log_dirs = sub.uuids("RegisterBrokerRecord.LogDirs")?;
            Ok(true)
        }
        _ => Ok(false),
    })?;
    Ok(RegisterBrokerRecord {
        broker_id,
        is_migrating_zk_broker,
        incarnation_id,
        broker_epoch,
        end_points,
        features,
        rack,
        fenced,
        in_controlled_shutdown,
        log_dirs,
    })
}

fn read_partition(r: &mut Reader<'_>, version: i16) -> Result<PartitionRecord, RecordError> {
    let mut p = PartitionRecord {
        partition_id: r.i32("PartitionRecord.PartitionId")?,
        topic_id: r.uuid("PartitionRecord.TopicId")?,
        replicas: r.i32s("PartitionRecord.Replicas")?,
        isr: r.i32s("PartitionRecord.Isr")?,
        removing_replicas: r.i32s("PartitionRecord.RemovingReplicas")?,
        adding_replicas: r.i32s("PartitionRecord.AddingReplicas")?,
        leader: r.i32("PartitionRecord.Leader")?,
        leader_recovery_state: 0,
        leader_epoch: r.i32("PartitionRecord.LeaderEpoch")?,
        partition_epoch: r.i32("PartitionRecord.PartitionEpoch")?,
        directories: Vec::new(),
        eligible_leader_replicas: None,
        last_known_elr: None,
    };
    if version >= 1 {
        p.directories = r.uuids("PartitionRecord.Directories")?;
    }
    r.tagged_fields(|tag, sub| {
        match tag {
            0 => p.leader_recovery_state = sub.i8("PartitionRecord.LeaderRecoveryState")?,
            1 | 2 if version < 2 => {
                return Err(tag_not_in_version(
                    "PartitionRecord tagged field",
                    tag,
                    version,
                ))
            }
            1 => {
                p.eligible_leader_replicas =
                    sub.opt_i32s("PartitionRecord.EligibleLeaderReplicas")?
            }
            2 => p.last_known_elr = sub.opt_i32s("PartitionRecord.LastKnownElr")?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

fn read_partition_change(
    r: &mut Reader<'_>,
    version: i16,
) -> Result<PartitionChangeRecord, RecordError> {
    let mut p = PartitionChangeRecord {
        partition_id: r.i32("PartitionChangeRecord.PartitionId")?,
        topic_id: r.uuid("PartitionChangeRecord.TopicId")?,
        ..PartitionChangeRecord::default()
    };
    r.tagged_fields(|tag, sub| {
        match tag {
            0 => p.isr = sub.opt_i32s("PartitionChangeRecord.Isr")?,
            1 => p.leader = sub.i32("PartitionChangeRecord.Leader")?,
            2 => p.replicas = sub.opt_i32s("PartitionChangeRecord.Replicas")?,
            3 => p.removing_replicas = sub.opt_i32s("PartitionChangeRecord.RemovingReplicas")?,
            4 => p.adding_replicas = sub.opt_i32s("PartitionChangeRecord.AddingReplicas")?,
            5 => p.leader_recovery_state = sub.i8("PartitionChangeRecord.LeaderRecoveryState")?,
            6 | 7 if version < 2 => {
                return Err(tag_not_in_version(
                    "PartitionChangeRecord tagged field",
                    tag,
                    version,
                ))
            }
            6 => {
                p.eligible_leader_replicas =
                    sub.opt_i32s("PartitionChangeRecord.EligibleLeaderReplicas")?
            }
            7 => p.last_known_elr = sub.opt_i32s("PartitionChangeRecord.LastKnownElr")?,
            8 if version < 1 => {
                return Err(tag_not_in_version(
                    "PartitionChangeRecord.Directories",
                    tag,
                    version,
                ))
            }
            8 => p.directories = sub.opt_uuids("PartitionChangeRecord.Directories")?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

fn read_broker_registration_change(
    r: &mut Reader<'_>,
    version: i16,
) -> Result<BrokerRegistrationChangeRecord, RecordError> {
    let mut b = BrokerRegistrationChangeRecord {
        broker_id: r.i32("BrokerRegistrationChangeRecord.BrokerId")?,
        broker_epoch: r.i64("BrokerRegistrationChangeRecord.BrokerEpoch")?,
        ..BrokerRegistrationChangeRecord::default()
    };
    r.tagged_fields(|tag, sub| {
        match tag {
            0 => b.fenced = sub.i8("BrokerRegistrationChangeRecord.Fenced")?,
            1 if version < 1 => {
                return Err(tag_not_in_version(
                    "BrokerRegistrationChangeRecord.InControlledShutdown",
                    tag,
                    version,
                ))
            }
            1 => {
                b.in_controlled_shutdown =
                    sub.i8("BrokerRegistrationChangeRecord.InControlledShutdown")?
            }
            2 if version < 2 => {
                return Err(tag_not_in_version(
                    "BrokerRegistrationChangeRecord.LogDirs",
                    tag,
                    version,
                ))
            }
            2 => b.log_dirs = sub.uuids("BrokerRegistrationChangeRecord.LogDirs")?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::arbitrary::{all_api_key_versions, any_record_at, any_versioned_record};
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::{select, Index};

    /// Parses space-separated hex ("01 14 00 00"); `NNxK` repeats byte NN K times.
    fn hex(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for tok in s.split_whitespace() {
            match tok.split_once('x') {
                Some((b, n)) => out.extend(std::iter::repeat_n(
                    u8::from_str_radix(b, 16).expect("hex byte"),
                    n.parse().expect("repeat count"),
                )),
                None => out.push(u8::from_str_radix(tok, 16).expect("hex byte")),
            }
        }
        out
    }

    fn enc(r: &VersionedRecord) -> Vec<u8> {
        r.to_bytes().expect("encodes")
    }

    fn at(version: i16, record: MetadataRecord) -> VersionedRecord {
        VersionedRecord { version, record }
    }

    fn uuid_of(byte: u8) -> Uuid {
        Uuid::from_bytes([byte; 16])
    }

    /// Encodes, checks the hand-computed bytes, and checks they decode back to the record.
    fn assert_golden(record: VersionedRecord, expected: &str) {
        let expected = hex(expected);
        assert_eq!(enc(&record), expected, "{}", record.record.type_name());
        assert_eq!(VersionedRecord::decode(&expected), Ok(record));
    }

    fn full_partition() -> PartitionRecord {
        PartitionRecord {
            partition_id: 3,
            topic_id: uuid_of(0x44),
            replicas: vec![1, 2, 3],
            isr: vec![1, 2],
            removing_replicas: vec![3],
            adding_replicas: vec![],
            leader: 1,
            leader_recovery_state: 1,
            leader_epoch: 9,
            partition_epoch: 10,
            directories: vec![uuid_of(1), uuid_of(2), uuid_of(3)],
            eligible_leader_replicas: Some(vec![2]),
            last_known_elr: Some(vec![]),
        }
    }

    fn full_register_broker() -> RegisterBrokerRecord {
        RegisterBrokerRecord {
            broker_id: 4,
            is_migrating_zk_broker: true,
            incarnation_id: uuid_of(0x55),
            broker_epoch: 77,
            end_points: vec![BrokerEndpoint {
                name: "EXTERNAL".into(),
                host: "bröker-4.example".into(),
                port: 9093,
                security_protocol: 1,
            }],
            features: vec![BrokerFeature {
                name: "metadata.version".into(),
                min_supported_version: 1,
                max_supported_version: 21,
            }],
            rack: Some("rack-1".into()),
            fenced: true,
            in_controlled_shutdown: true,
            log_dirs: vec![uuid_of(6)],
        }
    }

    /// Valid values exercising every record shape: nested structs, tags, nullables.
    fn sample_values() -> Vec<Vec<u8>> {
        let change = PartitionChangeRecord {
            isr: Some(vec![1]),
            leader: 1,
            replicas: Some(vec![1, 2]),
            removing_replicas: Some(vec![]),
            adding_replicas: Some(vec![2]),
            leader_recovery_state: 0,
            eligible_leader_replicas: Some(vec![2]),
            last_known_elr: Some(vec![3]),
            directories: Some(vec![uuid_of(9), uuid_of(8)]),
            ..PartitionChangeRecord::default()
        };
        [
            VersionedRecord::new(MetadataRecord::NoOp),
            VersionedRecord::new(MetadataRecord::Topic(TopicRecord {
                name: "tøpic".into(),
                topic_id: uuid_of(7),
            })),
            VersionedRecord::new(MetadataRecord::Partition(full_partition())),
            VersionedRecord::new(MetadataRecord::PartitionChange(change)),
            VersionedRecord::new(MetadataRecord::RegisterBroker(full_register_broker())),
            VersionedRecord::new(MetadataRecord::Config(ConfigRecord {
                resource_type: RESOURCE_TOPIC,
                resource_name: "t".into(),
                name: "retention.ms".into(),
                value: None,
            })),
            VersionedRecord::new(MetadataRecord::BrokerRegistrationChange(
                BrokerRegistrationChangeRecord {
                    broker_id: 1,
                    broker_epoch: 2,
                    fenced: -1,
                    in_controlled_shutdown: 1,
                    log_dirs: vec![uuid_of(1)],
                },
            )),
        ]
        .iter()
        .map(enc)
        .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn every_type_at_every_version_round_trips(record in any_versioned_record()) {
            let bytes = enc(&record);
            let decoded = VersionedRecord::decode(&bytes);
            prop_assert_eq!(decoded.as_ref(), Ok(&record));
            prop_assert_eq!(decoded.map(|d| enc(&d)), Ok(bytes));
        }
    }

    /// The union above picks pairs at random; this pins that each pair is reachable and
    /// round-trips on its own.
    #[test]
    fn each_api_key_version_pair_round_trips() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        for (key, version) in all_api_key_versions() {
            let strategy = any_record_at(key, version);
            for _ in 0..64 {
                let record = strategy.new_tree(&mut runner).expect("tree").current();
                assert_eq!((record.record.api_key(), record.version), (key, version));
                let bytes = enc(&record);
                assert_eq!(VersionedRecord::decode(&bytes), Ok(record));
            }
        }
    }

    #[test]
    fn noop_is_01_14_00_00() {
        assert_golden(VersionedRecord::new(MetadataRecord::NoOp), "01 14 00 00");
    }

    #[test]
    fn topic_record_golden_bytes() {
        let id = Uuid::from_bytes([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        // frame 1, apiKey 2, v0 | name "foo" (len 3 + 1) | uuid | no tags
        assert_golden(
            at(
                0,
                MetadataRecord::Topic(TopicRecord {
                    name: "foo".into(),
                    topic_id: id,
                }),
            ),
            "01 02 00  04 66 6f 6f  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  00",
        );
        // "é" is two UTF-8 bytes; the compact length counts bytes, not chars.
        assert_golden(
            at(
                0,
                MetadataRecord::Topic(TopicRecord {
                    name: "é".into(),
                    topic_id: id,
                }),
            ),
            "01 02 00  03 c3 a9  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  00",
        );
    }

    #[test]
    fn partition_change_record_golden_bytes_with_tagged_fields() {
        let v0 = PartitionChangeRecord {
            partition_id: 7,
            topic_id: uuid_of(0x11),
            isr: Some(vec![1, 2]),
            leader: 2,
            ..PartitionChangeRecord::default()
        };
        // frame 1, apiKey 5, v0 | partition 7 | topic id | 2 tags:
        // tag 0 (Isr) size 9 = array len 2+1, two int32 | tag 1 (Leader) size 4, int32 2
        assert_golden(
            at(0, MetadataRecord::PartitionChange(v0)),
            "01 05 00  00 00 00 07  11x16  02  00 09 03 00 00 00 01 00 00 00 02  01 04 00 00 00 02",
        );
        let v2 = PartitionChangeRecord {
            leader: NO_LEADER,
            leader_recovery_state: 1,
            eligible_leader_replicas: Some(vec![]),
            directories: Some(vec![uuid_of(0x22)]),
            ..PartitionChangeRecord::default()
        };
        // 4 tags in tag order, not declaration order: Leader (1) = -1, LeaderRecoveryState
        // (5) = 1, EligibleLeaderReplicas (6) = empty array (len 0+1), Directories (8) = one
        // uuid (size 1 + 16 = 0x11).
        assert_golden(
            at(2, MetadataRecord::PartitionChange(v2)),
            "01 05 02  00 00 00 00  00x16  04  01 04 ff ff ff ff  05 01 01  06 01 01  08 11 02 22x16",
        );
    }

    #[test]
    fn partition_record_v0_golden_bytes() {
        let p = PartitionRecord {
            partition_id: 0,
            topic_id: uuid_of(0x33),
            replicas: vec![1, 2, 3],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 5,
            partition_epoch: 6,
            ..PartitionRecord::default()
        };
        // Replicas, Isr, empty Removing/Adding (01), Leader, LeaderEpoch, PartitionEpoch; the
        // tagged LeaderRecoveryState is at its default 0, so the tag section is empty.
        assert_golden(
            at(0, MetadataRecord::Partition(p)),
            "01 03 00  00 00 00 00  33x16  04 00 00 00 01 00 00 00 02 00 00 00 03  \
             03 00 00 00 01 00 00 00 02  01  01  00 00 00 01  00 00 00 05  00 00 00 06  00",
        );
    }

    #[test]
    fn register_broker_record_v2_golden_bytes() {
        let r = RegisterBrokerRecord {
            broker_id: 1,
            broker_epoch: 5,
            end_points: vec![BrokerEndpoint {
                name: "EXT".into(),
                host: "h".into(),
                port: 9092,
                security_protocol: 0,
            }],
            features: vec![BrokerFeature {
                name: "mv".into(),
                min_supported_version: 1,
                max_supported_version: 16,
            }],
            rack: None,
            fenced: true,
            ..RegisterBrokerRecord::default()
        };
        // BrokerId | IsMigratingZkBroker (v2+) | IncarnationId | BrokerEpoch |
        // 1 endpoint {"EXT", "h", port 0x2384, protocol 0, no tags} |
        // 1 feature {"mv", 1, 16, no tags} | Rack null | Fenced | InControlledShutdown | no tags
        assert_golden(
            at(2, MetadataRecord::RegisterBroker(r)),
            "01 00 02  00 00 00 01  00  00x16  00 00 00 00 00 00 00 05  \
             02 04 45 58 54 02 68 23 84 00 00 00  02 03 6d 76 00 01 00 10 00  00  01  00  00",
        );
    }

    #[test]
    fn broker_registration_change_v1_golden_bytes() {
        let b = BrokerRegistrationChangeRecord {
            broker_id: 1,
            broker_epoch: 5,
            fenced: -1,
            ..BrokerRegistrationChangeRecord::default()
        };
        // apiKey 17 = 0x11 | BrokerId | BrokerEpoch | 1 tag: Fenced (0) size 1 = -1
        assert_golden(
            at(1, MetadataRecord::BrokerRegistrationChange(b)),
            "01 11 01  00 00 00 01  00 00 00 00 00 00 00 05  01 00 01 ff",
        );
    }

    #[test]
    fn writer_version_is_3_7_iv1_raised_when_fields_need_it() {
        use MetadataRecord as M;
        let v = |r: M| r.writer_version();
        assert_eq!(v(M::RegisterBroker(RegisterBrokerRecord::default())), 2);
        let with_dirs = RegisterBrokerRecord {
            log_dirs: vec![uuid_of(1)],
            ..Default::default()
        };
        assert_eq!(v(M::RegisterBroker(with_dirs)), 3);
        let migrating = RegisterBrokerRecord {
            is_migrating_zk_broker: true,
            ..Default::default()
        };
        assert_eq!(v(M::RegisterBroker(migrating)), 2);

        assert_eq!(v(M::Partition(PartitionRecord::default())), 0);
        let dirs = PartitionRecord {
            directories: vec![uuid_of(1)],
            ..Default::default()
        };
        assert_eq!(v(M::Partition(dirs)), 1);
        let elr = PartitionRecord {
            eligible_leader_replicas: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(v(M::Partition(elr)), 2);
        let lke = PartitionRecord {
            last_known_elr: Some(vec![1]),
            ..Default::default()
        };
        assert_eq!(v(M::Partition(lke)), 2);
        let recovering = PartitionRecord {
            leader_recovery_state: 1,
            ..Default::default()
        };
        assert_eq!(v(M::Partition(recovering)), 0);

        assert_eq!(v(M::PartitionChange(PartitionChangeRecord::default())), 0);
        let dirs = PartitionChangeRecord {
            directories: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(v(M::PartitionChange(dirs)), 1);
        let elr = PartitionChangeRecord {
            eligible_leader_replicas: Some(vec![1]),
            ..Default::default()
        };
        assert_eq!(v(M::PartitionChange(elr)), 2);
        let lke = PartitionChangeRecord {
            last_known_elr: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(v(M::PartitionChange(lke)), 2);

        assert_eq!(v(M::BrokerRegistrationChange(Default::default())), 1);
        let dirs = BrokerRegistrationChangeRecord {
            log_dirs: vec![uuid_of(1)],
            ..Default::default()
        };
        assert_eq!(v(M::BrokerRegistrationChange(dirs)), 2);

        for r in [
            M::UnregisterBroker(Default::default()),
            M::Topic(Default::default()),
            M::Config(Default::default()),
            M::RemoveTopic(Default::default()),
            M::FeatureLevel(Default::default()),
            M::ProducerIds(Default::default()),
            M::NoOp,
        ] {
            assert_eq!(v(r), 0);
        }
        let rec = VersionedRecord::new(M::Partition(full_partition()));
        assert_eq!(rec.version, 2);
    }

    #[test]
    fn transaction_markers_encode_as_kafka_4_writes_them() {
        // Name and Reason are nullable strings in tag 0, left out when null (their default).
        assert_golden(
            VersionedRecord::new(MetadataRecord::BeginTransaction(BeginTransactionRecord {
                name: None,
            })),
            "01 17 00 00",
        );
        assert_golden(
            VersionedRecord::new(MetadataRecord::BeginTransaction(BeginTransactionRecord {
                name: Some("ab".into()),
            })),
            "01 17 00 01 00 03 03 61 62",
        );
        assert_golden(
            VersionedRecord::new(MetadataRecord::EndTransaction),
            "01 18 00 00",
        );
        assert_golden(
            VersionedRecord::new(MetadataRecord::AbortTransaction(AbortTransactionRecord {
                reason: Some("x".into()),
            })),
            "01 19 00 01 00 02 02 78",
        );
    }

    #[test]
    fn api_keys_names_and_ranges_match_kafka() {
        let names: Vec<_> = METADATA_API_KEYS
            .iter()
            .map(|&k| (k, type_name_of(k).unwrap_or("?"), supported_versions(k)))
            .collect();
        assert_eq!(
            names,
            [
                (0, "RegisterBrokerRecord", Some((0, 3))),
                (1, "UnregisterBrokerRecord", Some((0, 0))),
                (2, "TopicRecord", Some((0, 0))),
                (3, "PartitionRecord", Some((0, 2))),
                (4, "ConfigRecord", Some((0, 0))),
                (5, "PartitionChangeRecord", Some((0, 2))),
                (9, "RemoveTopicRecord", Some((0, 0))),
                (12, "FeatureLevelRecord", Some((0, 0))),
                (15, "ProducerIdsRecord", Some((0, 0))),
                (17, "BrokerRegistrationChangeRecord", Some((0, 2))),
                (20, "NoOpRecord", Some((0, 0))),
                (23, "BeginTransactionRecord", Some((0, 0))),
                (24, "EndTransactionRecord", Some((0, 0))),
                (25, "AbortTransactionRecord", Some((0, 0))),
            ]
        );
        for k in [6, 7, 8, 10, 11, 13, 14, 16, 18, 19, 21, 22, 26, 1000] {
            assert_eq!((supported_versions(k), type_name_of(k)), (None, None));
        }
        assert_eq!(MetadataRecord::NoOp.type_name(), "NoOpRecord");
        assert_eq!(MetadataRecord::NoOp.api_key(), 20);
    }

    #[test]
    fn decode_rejects_frame_versions_other_than_1() {
        assert_eq!(
            VersionedRecord::decode(&hex("00 14 00 00")),
            Err(RecordError::FrameVersion(0))
        );
        assert_eq!(
            VersionedRecord::decode(&hex("02 14 00 00")),
            Err(RecordError::FrameVersion(2))
        );
    }

    #[test]
    fn decode_rejects_unknown_api_keys() {
        assert_eq!(
            VersionedRecord::decode(&hex("01 06 00 00")),
            Err(RecordError::UnknownApiKey(6))
        );
        assert_eq!(
            VersionedRecord::decode(&hex("01 15 00 00")),
            Err(RecordError::UnknownApiKey(21))
        );
        assert_eq!(
            VersionedRecord::decode(&hex("01 80 01 00 00")),
            Err(RecordError::UnknownApiKey(128))
        );
    }

    #[test]
    fn decode_rejects_versions_out_of_range() {
        let unsupported = |record, version, max| RecordError::UnsupportedVersion {
            record,
            version,
            min: 0,
            max,
        };
        assert_eq!(
            VersionedRecord::decode(&hex("01 14 01 00")),
            Err(unsupported("NoOpRecord", 1, 0))
        );
        assert_eq!(
            VersionedRecord::decode(&hex("01 03 03")),
            Err(unsupported("PartitionRecord", 3, 2))
        );
        assert_eq!(
            VersionedRecord::decode(&hex("01 00 04")),
            Err(unsupported("RegisterBrokerRecord", 4, 3))
        );
        // 65535 does not fit Kafka's int16 version at all.
        assert!(matches!(
            VersionedRecord::decode(&hex("01 14 ff ff 03 00")),
            Err(RecordError::Invalid {
                what: "version",
                ..
            })
        ));
    }

    #[test]
    fn decode_rejects_trailing_bytes() {
        assert_eq!(
            VersionedRecord::decode(&hex("01 14 00 00 00")),
            Err(RecordError::TrailingBytes(1))
        );
        for mut value in sample_values() {
            value.extend_from_slice(&[0, 0, 0]);
            assert_eq!(
                VersionedRecord::decode(&value),
                Err(RecordError::TrailingBytes(3))
            );
        }
    }

    #[test]
    fn decode_rejects_truncation_at_every_byte_position() {
        for value in sample_values() {
            assert!(VersionedRecord::decode(&value).is_ok());
            for cut in 0..value.len() {
                let got = VersionedRecord::decode(&value[..cut]);
                assert!(
                    matches!(got, Err(RecordError::Truncated { .. })),
                    "cut at {cut} of {value:02x?}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn encode_rejects_non_default_field_at_a_version_that_cannot_carry_it() {
        use MetadataRecord as M;
        let cases: Vec<(M, i16, &str)> = vec![
            (
                M::Partition(PartitionRecord {
                    directories: vec![uuid_of(1)],
                    ..Default::default()
                }),
                0,
                "Directories",
            ),
            (
                M::Partition(PartitionRecord {
                    eligible_leader_replicas: Some(vec![]),
                    ..Default::default()
                }),
                1,
                "EligibleLeaderReplicas",
            ),
            (
                M::Partition(PartitionRecord {
                    last_known_elr: Some(vec![]),
                    ..Default::default()
                }),
                1,
                "LastKnownElr",
            ),
            (
                M::PartitionChange(PartitionChangeRecord {
                    directories: Some(vec![]),
                    ..Default::default()
                }),
                0,
                "Directories",
            ),
            (
                M::PartitionChange(PartitionChangeRecord {
                    eligible_leader_replicas: Some(vec![1]),
                    ..Default::default()
                }),
                1,
                "EligibleLeaderReplicas",
            ),
            (
                M::PartitionChange(PartitionChangeRecord {
                    last_known_elr: Some(vec![1]),
                    ..Default::default()
                }),
                1,
                "LastKnownElr",
            ),
            (
                M::RegisterBroker(RegisterBrokerRecord {
                    log_dirs: vec![uuid_of(1)],
                    ..Default::default()
                }),
                2,
                "LogDirs",
            ),
            (
                M::RegisterBroker(RegisterBrokerRecord {
                    is_migrating_zk_broker: true,
                    ..Default::default()
                }),
                1,
                "IsMigratingZkBroker",
            ),
            (
                M::RegisterBroker(RegisterBrokerRecord {
                    in_controlled_shutdown: true,
                    ..Default::default()
                }),
                0,
                "InControlledShutdown",
            ),
            (
                M::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                    log_dirs: vec![uuid_of(1)],
                    ..Default::default()
                }),
                1,
                "LogDirs",
            ),
            (
                M::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                    in_controlled_shutdown: 1,
                    ..Default::default()
                }),
                0,
                "InControlledShutdown",
            ),
        ];
        for (record, version, field) in cases {
            let name = record.type_name();
            let mut out = vec![0xaa];
            let got = at(version, record).encode(&mut out);
            assert_eq!(
                got,
                Err(RecordError::FieldNotInVersion {
                    record: name,
                    version,
                    field
                })
            );
            assert_eq!(out, [0xaa], "a failed encode leaves the buffer as it was");
        }
    }

    #[test]
    fn encode_rejects_versions_out_of_range() {
        let unsupported = |record, version, max| {
            Err(RecordError::UnsupportedVersion {
                record,
                version,
                min: 0,
                max,
            })
        };
        assert_eq!(
            at(1, MetadataRecord::NoOp).to_bytes(),
            unsupported("NoOpRecord", 1, 0)
        );
        assert_eq!(
            at(-1, MetadataRecord::NoOp).to_bytes(),
            unsupported("NoOpRecord", -1, 0)
        );
        let p = MetadataRecord::Partition(PartitionRecord::default());
        assert_eq!(at(3, p).to_bytes(), unsupported("PartitionRecord", 3, 2));
    }

    #[test]
    fn strings_longer_than_kafkas_limit_are_rejected_both_ways() {
        let long = "x".repeat(MAX_STRING_BYTES + 1);
        let topic = |name: String| {
            at(
                0,
                MetadataRecord::Topic(TopicRecord {
                    name,
                    topic_id: Uuid::nil(),
                }),
            )
        };
        let mut out = Vec::new();
        assert!(matches!(
            topic(long).encode(&mut out),
            Err(RecordError::Invalid { .. })
        ));
        assert!(
            out.is_empty(),
            "a failed encode leaves the buffer as it was"
        );
        let at_limit = enc(&topic("x".repeat(MAX_STRING_BYTES)));
        assert!(VersionedRecord::decode(&at_limit).is_ok());
        // Length 0x8000 (uvarint 0x8001 = 81 80 02) followed by enough bytes.
        let mut over = hex("01 02 00 81 80 02");
        over.extend(std::iter::repeat_n(b'x', 0x8000 + 17));
        assert!(matches!(
            VersionedRecord::decode(&over),
            Err(RecordError::Invalid { .. })
        ));
    }

    #[test]
    fn decode_rejects_malformed_fields() {
        let invalid = |s: &str| {
            let got = VersionedRecord::decode(&hex(s));
            assert!(
                matches!(got, Err(RecordError::Invalid { .. })),
                "{s}: {got:?}"
            );
        };
        // A bool byte other than 0/1 (RegisterBrokerRecord v0 Fenced = 02).
        invalid("01 00 00  00 00 00 01  00x16  00x8  01 01 00 02 00");
        // Null where the schema is not nullable: TopicRecord.Name, PartitionRecord.Replicas,
        // RegisterBrokerRecord.EndPoints, a BrokerRegistrationChangeRecord.LogDirs tag.
        invalid("01 02 00  00  00x16 00");
        invalid("01 03 00  00 00 00 00  00x16  00 01 01 01  00x12 00");
        invalid("01 00 00  00 00 00 01  00x16  00x8  00 01 00 01 00");
        invalid("01 11 02  00 00 00 01  00x8  01 02 01 00");
        // Invalid UTF-8 in a string.
        invalid("01 02 00  02 ff  00x16 00");
        // A varint running past 5 bytes, and a fifth byte overflowing 32 bits.
        invalid("81 80 80 80 80 00 14 00 00");
        invalid("01 02 00  ff ff ff ff 1f");
        // A length above int32 (uvarint 0xffffffff - 1).
        invalid("01 03 00  00 00 00 00  00x16  ff ff ff ff 0f");
    }

    #[test]
    fn decode_rejects_tags_out_of_order_or_repeated() {
        let body = "01 05 00  00 00 00 00  00x16";
        let got = VersionedRecord::decode(&hex(&format!("{body} 02  01 04 00 00 00 01  00 01 01")));
        assert!(
            matches!(
                got,
                Err(RecordError::Invalid {
                    what: "tagged fields",
                    ..
                })
            ),
            "{got:?}"
        );
        let got = VersionedRecord::decode(&hex(&format!(
            "{body} 02  01 04 00 00 00 01  01 04 00 00 00 02"
        )));
        assert!(
            matches!(
                got,
                Err(RecordError::Invalid {
                    what: "tagged fields",
                    ..
                })
            ),
            "{got:?}"
        );
    }

    #[test]
    fn decode_skips_unknown_tags() {
        // Kafka keeps unknown tags as raw bytes and moves on; we drop them.
        assert_eq!(
            VersionedRecord::decode(&hex("01 14 00  02  03 02 aa bb  40 00")),
            Ok(at(0, MetadataRecord::NoOp))
        );
        let p = PartitionChangeRecord {
            leader: 5,
            ..Default::default()
        };
        assert_eq!(
            VersionedRecord::decode(&hex(
                "01 05 00  00 00 00 00  00x16  02  01 04 00 00 00 05  09 01 ff"
            )),
            Ok(at(0, MetadataRecord::PartitionChange(p)))
        );
        // An unknown tag inside a nested RegisterBrokerRecord.EndPoints entry.
        let value =
            hex("01 00 00  00 00 00 01  00x16  00x8  02 01 01 00 00 00 00 01 07 00  01 00 01 00");
        let got = VersionedRecord::decode(&value).expect("decodes");
        let MetadataRecord::RegisterBroker(r) = got.record else {
            panic!("wrong type")
        };
        assert_eq!(r.end_points, [BrokerEndpoint::default()]);
        assert!(r.fenced);
    }

    #[test]
    fn decode_rejects_known_tag_at_a_version_without_the_field() {
        // As Kafka's generated readers do ("Tag N is not valid for version V").
        let cases = [
            "01 03 00  00 00 00 00  00x16  01 01 01 01  00x12  01  01 01 00",
            "01 03 01  00 00 00 00  00x16  01 01 01 01  00x12  01  01  02 01 00",
            "01 05 00  00 00 00 00  00x16  01  08 01 01",
            "01 05 01  00 00 00 00  00x16  01  06 01 01",
            "01 00 02  00 00 00 01  00  00x16  00x8  01 01 00 01 00  01  00 01 01",
            "01 11 00  00 00 00 01  00x8  01  01 01 01",
            "01 11 01  00 00 00 01  00x8  01  02 01 01",
        ];
        for case in cases {
            let got = VersionedRecord::decode(&hex(case));
            assert!(
                matches!(&got, Err(RecordError::Invalid { detail, .. }) if detail.contains("not valid at version")),
                "{case}: {got:?}"
            );
        }
    }

    #[test]
    fn decode_rejects_tag_payload_size_that_does_not_match_the_field() {
        let body = "01 05 00  00 00 00 00  00x16  01";
        for tag in [
            "01 05 00 00 00 01 00",
            "01 03 00 00 00",
            "05 02 01 00",
            "00 06 02 00 00 00 01 00",
        ] {
            let got = VersionedRecord::decode(&hex(&format!("{body} {tag}")));
            assert!(
                matches!(&got, Err(RecordError::Invalid { detail, .. }) if detail.contains("size")),
                "{tag}: {got:?}"
            );
        }
    }

    #[test]
    fn decode_rejects_huge_counts_without_allocating_them() {
        // Replicas claims 2^31 - 1 elements in a few bytes of input.
        let got = VersionedRecord::decode(&hex("01 03 00  00 00 00 00  00x16  80 80 80 80 08 00"));
        assert!(matches!(got, Err(RecordError::Truncated { .. })), "{got:?}");
        // EndPoints claims 2^31 - 1 entries.
        let got = VersionedRecord::decode(&hex(
            "01 00 00  00 00 00 01  00x16  00x8  80 80 80 80 08 00",
        ));
        assert!(matches!(got, Err(RecordError::Truncated { .. })), "{got:?}");
        // A tag count of 2^32 - 1 with no tags behind it.
        let got = VersionedRecord::decode(&hex("01 14 00  ff ff ff ff 0f"));
        assert!(matches!(got, Err(RecordError::Truncated { .. })), "{got:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn decoder_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..128)) {
            let _ = VersionedRecord::decode(&bytes);
        }

        #[test]
        fn decoder_never_panics_on_a_known_header_and_random_body(
            key in select(METADATA_API_KEYS.to_vec()),
            version in 0u8..5,
            body in vec(any::<u8>(), 0..128),
        ) {
            let mut value = vec![1, key as u8, version];
            value.extend_from_slice(&body);
            let _ = VersionedRecord::decode(&value);
        }

        /// Random bytes rarely get deep into a record; corrupting valid values does. Whatever
        /// decodes must also re-encode and decode to itself.
        #[test]
        fn decoder_never_panics_on_corrupted_valid_values(
            record in any_versioned_record(),
            edits in vec((any::<Index>(), any::<u8>()), 1..4),
            cut in any::<Index>(),
        ) {
            let mut value = enc(&record);
            for (i, b) in edits {
                let i = i.index(value.len());
                value[i] = b;
            }
            let keep = cut.index(value.len() + 1);
            for bytes in [&value[..], &value[..keep]] {
                if let Ok(decoded) = VersionedRecord::decode(bytes) {
                    let again = decoded.to_bytes();
                    prop_assert!(again.is_ok(), "{:?}", again);
                    let again = again.unwrap_or_default();
                    prop_assert_eq!(VersionedRecord::decode(&again), Ok(decoded));
                }
            }
        }
    }

    /// Run with `--ignored --nocapture`: prints the time to encode and decode a million
    /// PartitionRecords (a large checkpoint).
    #[test]
    #[ignore]
    fn time_a_million_partition_records() {
        use std::time::Instant;
        let records: Vec<VersionedRecord> = (0..1_000_000)
            .map(|i: i32| {
                VersionedRecord::new(MetadataRecord::Partition(PartitionRecord {
                    partition_id: i % 1000,
                    topic_id: Uuid::from_u128(i as u128 / 1000),
                    replicas: vec![i % 7, (i + 1) % 7, (i + 2) % 7],
                    isr: vec![i % 7, (i + 1) % 7, (i + 2) % 7],
                    leader: i % 7,
                    leader_epoch: 3,
                    partition_epoch: 4,
                    ..PartitionRecord::default()
                }))
            })
            .collect();
        let start = Instant::now();
        let mut buf = Vec::new();
        let mut ends = Vec::with_capacity(records.len());
        for r in &records {
            r.encode(&mut buf).expect("encodes");
            ends.push(buf.len());
        }
        let encode = start.elapsed();
        let start = Instant::now();
        let mut from = 0;
        let mut decoded = Vec::with_capacity(records.len());
        for &end in &ends {
            decoded.push(VersionedRecord::decode(&buf[from..end]).expect("decodes"));
            from = end;
        }
        let decode_collect = start.elapsed();
        assert_eq!(decoded, records);
        drop(decoded);
        // Collecting a million ~200-byte records first-touches ~200 MB; this pass shows the
        // codec's own cost.
        let start = Instant::now();
        let mut from = 0;
        for &end in &ends {
            std::hint::black_box(VersionedRecord::decode(&buf[from..end]).expect("decodes"));
            from = end;
        }
        let decode_drop = start.elapsed();
        println!(
            "1,000,000 PartitionRecords ({} bytes): encode {encode:?}, decode into a Vec \
             {decode_collect:?}, decode and drop {decode_drop:?}",
            buf.len()
        );
    }
}
