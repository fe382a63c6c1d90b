//! KRaft control records: the records of a control batch (attribute bit 5).
//!
//! Key: int16 version (0), int16 type. Value: the message body in Kafka's flexible encoding.
//! The message types come from the `kafka-protocol` crate, which also encodes them. Decoding
//! goes through our bounded reader instead of the crate's decoder, because the crate
//! reserves array capacity from the untrusted element count before reading any element.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::leader_change_message::Voter as LeaderChangeVoter;
use kafka_protocol::messages::voters_record::{Endpoint, KRaftVersionFeature, Voter};
use kafka_protocol::messages::{
    BrokerId, KRaftVersionRecord, LeaderChangeMessage, SnapshotFooterRecord, SnapshotHeaderRecord,
    VotersRecord,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use std::collections::BTreeMap;

use super::error::RecordError;
use super::wire::Reader;

/// Control record type of a LeaderChangeMessage.
pub const LEADER_CHANGE: i16 = 2;
/// Control record type of a SnapshotHeaderRecord.
pub const SNAPSHOT_HEADER: i16 = 3;
/// Control record type of a SnapshotFooterRecord.
pub const SNAPSHOT_FOOTER: i16 = 4;
/// Control record type of a KRaftVersionRecord.
pub const KRAFT_VERSION: i16 = 5;
/// Control record type of a VotersRecord.
pub const VOTERS: i16 = 6;

/// A KRaft control record.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlRecord {
    /// A new leader took over (openraft's blank entry).
    LeaderChange(LeaderChangeMessage),
    /// First record of a snapshot.
    SnapshotHeader(SnapshotHeaderRecord),
    /// Last record of a snapshot.
    SnapshotFooter(SnapshotFooterRecord),
    /// The kraft.version feature level.
    KRaftVersion(KRaftVersionRecord),
    /// The voter set (openraft's membership).
    Voters(VotersRecord),
}

impl ControlRecord {
    /// Kafka's control record type.
    pub fn control_type(&self) -> i16 {
        match self {
            ControlRecord::LeaderChange(_) => LEADER_CHANGE,
            ControlRecord::SnapshotHeader(_) => SNAPSHOT_HEADER,
            ControlRecord::SnapshotFooter(_) => SNAPSHOT_FOOTER,
            ControlRecord::KRaftVersion(_) => KRAFT_VERSION,
            ControlRecord::Voters(_) => VOTERS,
        }
    }

    /// Kafka's name of the message type.
    pub fn type_name(&self) -> &'static str {
        type_name(self.control_type())
    }

    /// The record key: version 0, then the type.
    pub fn key(&self) -> Bytes {
        let t = self.control_type().to_be_bytes();
        Bytes::copy_from_slice(&[0, 0, t[0], t[1]])
    }

    /// The record value (message version 0).
    pub fn value(&self) -> Result<Bytes, RecordError> {
        let mut out = BytesMut::new();
        let res = match self {
            ControlRecord::LeaderChange(m) => m.encode(&mut out, 0),
            ControlRecord::SnapshotHeader(m) => m.encode(&mut out, 0),
            ControlRecord::SnapshotFooter(m) => m.encode(&mut out, 0),
            ControlRecord::KRaftVersion(m) => m.encode(&mut out, 0),
            ControlRecord::Voters(m) => m.encode(&mut out, 0),
        };
        res.map_err(|e| RecordError::invalid("control record", e.to_string()))?;
        Ok(out.freeze())
    }

    /// Decodes a control record from its key and value.
    pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Self, RecordError> {
        let key = key.ok_or_else(|| RecordError::invalid("control record", "null key"))?;
        if key.len() != 4 {
            return Err(RecordError::invalid(
                "control record key",
                format!("{} bytes, expected 4", key.len()),
            ));
        }
        let key_version = i16::from_be_bytes([key[0], key[1]]);
        let ty = i16::from_be_bytes([key[2], key[3]]);
        if key_version != 0 {
            return Err(RecordError::invalid(
                "control record key",
                format!("version {key_version}, expected 0"),
            ));
        }
        let value = value.ok_or_else(|| RecordError::invalid("control record", "null value"))?;
        let mut r = Reader::new(value);
        let rec = match ty {
            LEADER_CHANGE => ControlRecord::LeaderChange(read_leader_change(&mut r)?),
            SNAPSHOT_HEADER => {
                let version = r.i16("SnapshotHeaderRecord.Version")?;
                let ts = r.i64("SnapshotHeaderRecord.LastContainedLogTimestamp")?;
                let tags = r.unknown_tagged_fields()?;
                ControlRecord::SnapshotHeader(
                    SnapshotHeaderRecord::default()
                        .with_version(version)
                        .with_last_contained_log_timestamp(ts)
                        .with_unknown_tagged_fields(tags),
                )
            }
            SNAPSHOT_FOOTER => {
                let version = r.i16("SnapshotFooterRecord.Version")?;
                let tags = r.unknown_tagged_fields()?;
                ControlRecord::SnapshotFooter(
                    SnapshotFooterRecord::default()
                        .with_version(version)
                        .with_unknown_tagged_fields(tags),
                )
            }
            KRAFT_VERSION => {
                let version = r.i16("KRaftVersionRecord.Version")?;
                let level = r.i16("KRaftVersionRecord.KRaftVersion")?;
                let tags = r.unknown_tagged_fields()?;
                ControlRecord::KRaftVersion(
                    KRaftVersionRecord::default()
                        .with_version(version)
                        .with_k_raft_version(level)
                        .with_unknown_tagged_fields(tags),
                )
            }
            VOTERS => ControlRecord::Voters(read_voters(&mut r)?),
            0 | 1 => {
                return Err(RecordError::invalid(
                    "control record",
                    format!("transaction marker (type {ty}) has no place in the metadata log"),
                ))
            }
            other => {
                return Err(RecordError::invalid(
                    "control record",
                    format!("unknown type {other}"),
                ))
            }
        };
        r.finish()?;
        Ok(rec)
    }
}

/// Kafka's name of a control record type.
pub fn type_name(ty: i16) -> &'static str {
    match ty {
        0 => "AbortTransactionMarker",
        1 => "CommitTransactionMarker",
        LEADER_CHANGE => "LeaderChangeMessage",
        SNAPSHOT_HEADER => "SnapshotHeaderRecord",
        SNAPSHOT_FOOTER => "SnapshotFooterRecord",
        KRAFT_VERSION => "KRaftVersionRecord",
        VOTERS => "VotersRecord",
        _ => "UnknownControlRecord",
    }
}

fn read_leader_change(r: &mut Reader<'_>) -> Result<LeaderChangeMessage, RecordError> {
    let version = r.i16("LeaderChangeMessage.Version")?;
    let leader = r.i32("LeaderChangeMessage.LeaderId")?;
    let voter_list = |r: &mut Reader<'_>, what| -> Result<Vec<LeaderChangeVoter>, RecordError> {
        r.struct_array(what, 5, |r| {
            let id = r.i32("Voter.VoterId")?;
            let tags = r.unknown_tagged_fields()?;
            Ok(LeaderChangeVoter::default()
                .with_voter_id(id)
                .with_unknown_tagged_fields(tags))
        })
    };
    let voters = voter_list(r, "LeaderChangeMessage.Voters")?;
    let granting = voter_list(r, "LeaderChangeMessage.GrantingVoters")?;
    let tags = r.unknown_tagged_fields()?;
    Ok(LeaderChangeMessage::default()
        .with_version(version)
        .with_leader_id(BrokerId(leader))
        .with_voters(voters)
        .with_granting_voters(granting)
        .with_unknown_tagged_fields(tags))
}

fn read_voters(r: &mut Reader<'_>) -> Result<VotersRecord, RecordError> {
    let version = r.i16("VotersRecord.Version")?;
    let voters = r.struct_array("VotersRecord.Voters", 26, |r| {
        let id = r.i32("Voter.VoterId")?;
        let dir = r.uuid("Voter.VoterDirectoryId")?;
        let endpoints = r.struct_array("Voter.Endpoints", 5, |r| {
            let name = r.string("Endpoint.Name")?;
            let host = r.string("Endpoint.Host")?;
            let port = r.u16("Endpoint.Port")?;
            let tags = r.unknown_tagged_fields()?;
            Ok(Endpoint::default()
                .with_name(StrBytes::from_string(name))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_unknown_tagged_fields(tags))
        })?;
        let min = r.i16("KRaftVersionFeature.MinSupportedVersion")?;
        let max = r.i16("KRaftVersionFeature.MaxSupportedVersion")?;
        let feature_tags = r.unknown_tagged_fields()?;
        let feature = KRaftVersionFeature::default()
            .with_min_supported_version(min)
            .with_max_supported_version(max)
            .with_unknown_tagged_fields(feature_tags);
        let tags = r.unknown_tagged_fields()?;
        Ok(Voter::default()
            .with_voter_id(BrokerId(id))
            .with_voter_directory_id(dir)
            .with_endpoints(endpoints)
            .with_k_raft_version_feature(feature)
            .with_unknown_tagged_fields(tags))
    })?;
    let tags = r.unknown_tagged_fields()?;
    Ok(VotersRecord::default()
        .with_version(version)
        .with_voters(voters)
        .with_unknown_tagged_fields(tags))
}

/// A snapshot header with the given timestamp and extra tagged fields.
pub fn snapshot_header(
    last_contained_log_timestamp: i64,
    tags: BTreeMap<i32, Bytes>,
) -> ControlRecord {
    ControlRecord::SnapshotHeader(
        SnapshotHeaderRecord::default()
            .with_version(0)
            .with_last_contained_log_timestamp(last_contained_log_timestamp)
            .with_unknown_tagged_fields(tags),
    )
}

/// A snapshot footer.
pub fn snapshot_footer() -> ControlRecord {
    ControlRecord::SnapshotFooter(SnapshotFooterRecord::default().with_version(0))
}

/// Listener name written into the voter endpoints.
pub const CONTROLLER_LISTENER: &str = "CONTROLLER";

/// One voter of a VotersRecord: a controller with its directory id, its peer listener as
/// the CONTROLLER endpoint, and kraft.version 0-1.
pub fn controller_voter(id: u64, directory_id: uuid::Uuid, host: &str, port: u16) -> Voter {
    Voter::default()
        .with_voter_id(kafka_protocol::messages::BrokerId(
            i32::try_from(id).unwrap_or(i32::MAX),
        ))
        .with_voter_directory_id(directory_id)
        .with_endpoints(vec![Endpoint::default()
            .with_name(StrBytes::from_static_str(CONTROLLER_LISTENER))
            .with_host(StrBytes::from_string(host.to_string()))
            .with_port(port)])
        .with_k_raft_version_feature(
            KRaftVersionFeature::default()
                .with_min_supported_version(0)
                .with_max_supported_version(1),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn voters() -> VotersRecord {
        let v = |id: i32| {
            Voter::default()
                .with_voter_id(BrokerId(id))
                .with_voter_directory_id(Uuid::from_u128(id as u128 * 77))
                .with_endpoints(vec![Endpoint::default()
                    .with_name(StrBytes::from_static_str("CONTROLLER"))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(9094 + id as u16)])
                .with_k_raft_version_feature(
                    KRaftVersionFeature::default()
                        .with_min_supported_version(0)
                        .with_max_supported_version(1),
                )
        };
        VotersRecord::default().with_voters(vec![v(1), v(2), v(3)])
    }

    fn all_samples() -> Vec<ControlRecord> {
        let lc = |id| LeaderChangeVoter::default().with_voter_id(id);
        vec![
            ControlRecord::LeaderChange(
                LeaderChangeMessage::default()
                    .with_leader_id(BrokerId(2))
                    .with_voters(vec![lc(1), lc(2), lc(3)])
                    .with_granting_voters(vec![lc(2), lc(3)]),
            ),
            snapshot_header(
                1_700_000_000_123,
                BTreeMap::from([(7, Bytes::from_static(b"raft"))]),
            ),
            snapshot_footer(),
            ControlRecord::KRaftVersion(KRaftVersionRecord::default().with_k_raft_version(1)),
            ControlRecord::Voters(voters()),
        ]
    }

    #[test]
    fn every_control_record_type_round_trips() {
        for rec in all_samples() {
            let value = rec.value().unwrap();
            let back = ControlRecord::decode(Some(&rec.key()), Some(&value)).unwrap();
            assert_eq!(back, rec, "{}", rec.type_name());
        }
    }

    #[test]
    fn header_and_footer_values_match_kafka_sizes() {
        // FORMAT.md: a header value is 11 bytes (i16, i64, tag count); a footer is 00 00 00.
        assert_eq!(
            snapshot_header(5, BTreeMap::new()).value().unwrap().len(),
            11
        );
        assert_eq!(&snapshot_footer().value().unwrap()[..], &[0, 0, 0]);
        assert_eq!(&snapshot_footer().key()[..], &[0, 0, 0, 4]);
    }

    #[test]
    fn truncated_or_extended_control_values_are_refused() {
        for rec in all_samples() {
            let value = rec.value().unwrap();
            for cut in 0..value.len() {
                assert!(
                    ControlRecord::decode(Some(&rec.key()), Some(&value[..cut])).is_err(),
                    "{} cut {cut}",
                    rec.type_name()
                );
            }
            let mut longer = value.to_vec();
            longer.push(0);
            assert!(ControlRecord::decode(Some(&rec.key()), Some(&longer)).is_err());
        }
    }

    #[test]
    fn bad_keys_and_transaction_markers_are_refused() {
        let v = snapshot_footer().value().unwrap();
        assert!(ControlRecord::decode(None, Some(&v)).is_err());
        assert!(ControlRecord::decode(Some(&[0, 0, 4]), Some(&v)).is_err());
        assert!(ControlRecord::decode(Some(&[0, 1, 0, 4]), Some(&v)).is_err());
        let err = ControlRecord::decode(Some(&[0, 0, 0, 1]), Some(&v)).unwrap_err();
        assert!(err.to_string().contains("transaction marker"), "{err}");
        assert!(ControlRecord::decode(Some(&[0, 0, 0, 99]), Some(&v)).is_err());
    }

    #[test]
    fn hostile_array_count_is_refused_without_allocating() {
        // VotersRecord: version 0, then a compact array claiming 2^32-2 voters.
        let value = [0u8, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
        let err = ControlRecord::decode(Some(&[0, 0, 0, 6]), Some(&value)).unwrap_err();
        assert!(
            matches!(
                err,
                RecordError::Truncated { .. } | RecordError::Invalid { .. }
            ),
            "{err}"
        );
    }
}
