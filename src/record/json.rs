//! The JSON form of a log record, as `kraftd dump`, `GET /v1/metadata/log?format=json` and
//! Kafka's `kafka-dump-log --cluster-metadata-decoder` print it:
//! `{"type": ..., "version": ..., "data": {...}}`.

use bytes::Bytes;
use serde_json::{json, Value};

use super::control::ControlRecord;
use super::uuid_fmt::kafka_uuid;
use super::{LogRecord, RecordError};

/// `{"type": ..., "version": ..., "data": {...}}` for any log record.
pub fn record_json(rec: &LogRecord) -> Result<Value, RecordError> {
    let (kind, version, data) = record_parts(rec)?;
    Ok(json!({ "type": kind, "version": version, "data": data }))
}

/// A record's type name (Kafka's spelling), version and fields, as [`record_json`] shows
/// them.
pub fn record_parts(rec: &LogRecord) -> Result<(String, i16, Value), RecordError> {
    Ok(match rec {
        LogRecord::Metadata(m) => (
            kafka_type_name(m.record.type_name()),
            m.version,
            serde_json::to_value(&m.record)
                .map_err(|e| RecordError::invalid("record", e.to_string()))?,
        ),
        LogRecord::Control(c) => (c.type_name().to_string(), 0, control_json(c)),
    })
}

/// Every type name [`record_parts`] can print: the metadata record types in Kafka's
/// `PARTITION_CHANGE_RECORD` spelling, then the control records (`LeaderChangeMessage`, ...).
pub fn type_names() -> Vec<String> {
    let metadata = (0..=u8::MAX as u32)
        .filter_map(super::metadata::type_name_of)
        .map(kafka_type_name);
    let control = (0..=i16::from(u8::MAX))
        .map(super::control::type_name)
        .filter(|n| *n != "UnknownControlRecord")
        .map(str::to_string);
    metadata.chain(control).collect()
}

/// A type name reduced for matching what a person typed: no underscores, lower case, no
/// `record` suffix (`PARTITION_CHANGE_RECORD`, `PartitionChangeRecord` and
/// `partition_change` all give `partitionchange`).
pub fn type_key(name: &str) -> String {
    let key: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match key.strip_suffix("record") {
        Some(k) if !k.is_empty() => k.to_string(),
        _ => key,
    }
}

/// Kafka's MetadataRecordType spelling, e.g. `PartitionChangeRecord` -> `PARTITION_CHANGE_RECORD`,
/// as `kafka-dump-log --cluster-metadata-decoder` prints it.
fn kafka_type_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn tags_json(tags: &std::collections::BTreeMap<i32, Bytes>) -> Value {
    tags.iter()
        .map(|(t, b)| (t.to_string(), json!(hex(b))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn control_json(c: &ControlRecord) -> Value {
    match c {
        ControlRecord::LeaderChange(m) => json!({
            "version": m.version,
            "leaderId": m.leader_id.0,
            "voters": m.voters.iter().map(|v| v.voter_id).collect::<Vec<_>>(),
            "grantingVoters": m.granting_voters.iter().map(|v| v.voter_id).collect::<Vec<_>>(),
        }),
        ControlRecord::SnapshotHeader(h) => json!({
            "version": h.version,
            "lastContainedLogTimestamp": h.last_contained_log_timestamp,
            "unknownTaggedFields": tags_json(&h.unknown_tagged_fields),
        }),
        ControlRecord::SnapshotFooter(f) => json!({ "version": f.version }),
        ControlRecord::KRaftVersion(k) => {
            json!({ "version": k.version, "kRaftVersion": k.k_raft_version })
        }
        ControlRecord::Voters(v) => json!({
            "version": v.version,
            "voters": v.voters.iter().map(|voter| json!({
                "voterId": voter.voter_id.0,
                "voterDirectoryId": kafka_uuid(&voter.voter_directory_id),
                "endpoints": voter.endpoints.iter().map(|e| json!({
                    "name": e.name.as_str(), "host": e.host.as_str(), "port": e.port,
                })).collect::<Vec<_>>(),
                "kRaftVersionFeature": {
                    "minSupportedVersion": voter.k_raft_version_feature.min_supported_version,
                    "maxSupportedVersion": voter.k_raft_version_feature.max_supported_version,
                },
            })).collect::<Vec<_>>(),
        }),
    }
}

#[cfg(test)]
mod type_name_tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_type_reduces_to_one_key() {
        for n in [
            "PARTITION_CHANGE_RECORD",
            "PartitionChangeRecord",
            "partition_change",
            "partition-change",
        ] {
            assert_eq!(type_key(n), "partitionchange", "{n}");
        }
        assert_eq!(type_key("NO_OP_RECORD"), "noop");
        assert_eq!(type_key("LeaderChangeMessage"), "leaderchangemessage");
        let names = type_names();
        assert!(
            names.contains(&"PARTITION_CHANGE_RECORD".to_string()),
            "{names:?}"
        );
        assert!(names.contains(&"NO_OP_RECORD".to_string()), "{names:?}");
        assert!(names.contains(&"VotersRecord".to_string()), "{names:?}");
        assert_eq!(
            type_key("Record"),
            "record",
            "nothing is left to match otherwise"
        );
    }
}
