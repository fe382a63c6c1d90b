//! proptest strategies for metadata records.
//!
//! A record generated for a version leaves every field that version cannot carry at its
//! default, so it always encodes and round-trips at that version.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::strategy::Union;
use uuid::Uuid;

use super::metadata::*;

fn int8() -> impl Strategy<Value = i8> {
    any::<i8>()
}

fn int16() -> impl Strategy<Value = i16> {
    prop_oneof![1 => Just(i16::MIN), 1 => Just(i16::MAX), 1 => Just(0), 3 => any::<i16>()]
}

fn uint16() -> impl Strategy<Value = u16> {
    prop_oneof![1 => Just(0), 1 => Just(u16::MAX), 3 => any::<u16>()]
}

fn int32() -> impl Strategy<Value = i32> {
    prop_oneof![
        1 => Just(i32::MIN),
        1 => Just(i32::MAX),
        1 => Just(-1),
        1 => Just(0),
        6 => any::<i32>(),
    ]
}

fn int64() -> impl Strategy<Value = i64> {
    prop_oneof![
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => Just(-1),
        1 => Just(0),
        6 => any::<i64>(),
    ]
}

fn uuid() -> impl Strategy<Value = Uuid> {
    prop_oneof![
        1 => Just(Uuid::nil()),
        1 => Just(Uuid::from_u128(u128::MAX)),
        6 => any::<u128>().prop_map(Uuid::from_u128),
    ]
}

/// Any chars (control, multi-byte, astral), plus fixed empty and non-ASCII samples.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        1 => Just("ünïcødé-トピック-🦀".to_string()),
        4 => vec(any::<char>(), 0..12).prop_map(|cs| cs.into_iter().collect()),
    ]
}

fn int32s() -> impl Strategy<Value = Vec<i32>> {
    vec(int32(), 0..6)
}

fn uuids() -> impl Strategy<Value = Vec<Uuid>> {
    vec(uuid(), 0..4)
}

fn register_broker() -> impl Strategy<Value = RegisterBrokerRecord> {
    let end_point = (string(), string(), uint16(), int16()).prop_map(
        |(name, host, port, security_protocol)| BrokerEndpoint {
            name,
            host,
            port,
            security_protocol,
        },
    );
    let feature = (string(), int16(), int16()).prop_map(|(name, min, max)| BrokerFeature {
        name,
        min_supported_version: min,
        max_supported_version: max,
    });
    (
        int32(),
        any::<bool>(),
        uuid(),
        int64(),
        vec(end_point, 0..3),
        vec(feature, 0..3),
        option::of(string()),
        any::<bool>(),
        any::<bool>(),
        uuids(),
    )
        .prop_map(
            |(
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
            )| RegisterBrokerRecord {
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
            },
        )
}

fn partition() -> impl Strategy<Value = PartitionRecord> {
    (
        (int32(), uuid(), int32s(), int32s(), int32s(), int32s()),
        (
            int32(),
            prop_oneof![Just(0i8), int8()],
            int32(),
            int32(),
            uuids(),
            option::of(int32s()),
            option::of(int32s()),
        ),
    )
        .prop_map(
            |(
                (partition_id, topic_id, replicas, isr, removing_replicas, adding_replicas),
                (
                    leader,
                    leader_recovery_state,
                    leader_epoch,
                    partition_epoch,
                    directories,
                    eligible_leader_replicas,
                    last_known_elr,
                ),
            )| PartitionRecord {
                partition_id,
                topic_id,
                replicas,
                isr,
                removing_replicas,
                adding_replicas,
                leader,
                leader_recovery_state,
                leader_epoch,
                partition_epoch,
                directories,
                eligible_leader_replicas,
                last_known_elr,
            },
        )
}

fn partition_change() -> impl Strategy<Value = PartitionChangeRecord> {
    (
        int32(),
        uuid(),
        option::of(int32s()),
        prop_oneof![Just(NO_LEADER_CHANGE), Just(NO_LEADER), int32()],
        option::of(int32s()),
        option::of(int32s()),
        option::of(int32s()),
        prop_oneof![Just(-1i8), int8()],
        option::of(int32s()),
        option::of(int32s()),
        option::of(uuids()),
    )
        .prop_map(
            |(
                partition_id,
                topic_id,
                isr,
                leader,
                replicas,
                removing_replicas,
                adding_replicas,
                leader_recovery_state,
                eligible_leader_replicas,
                last_known_elr,
                directories,
            )| PartitionChangeRecord {
                partition_id,
                topic_id,
                isr,
                leader,
                replicas,
                removing_replicas,
                adding_replicas,
                leader_recovery_state,
                eligible_leader_replicas,
                last_known_elr,
                directories,
            },
        )
}

fn broker_registration_change() -> impl Strategy<Value = BrokerRegistrationChangeRecord> {
    (
        int32(),
        int64(),
        prop_oneof![Just(-1i8), Just(0), Just(1), int8()],
        prop_oneof![Just(0i8), Just(1), int8()],
        uuids(),
    )
        .prop_map(
            |(broker_id, broker_epoch, fenced, in_controlled_shutdown, log_dirs)| {
                BrokerRegistrationChangeRecord {
                    broker_id,
                    broker_epoch,
                    fenced,
                    in_controlled_shutdown,
                    log_dirs,
                }
            },
        )
}

/// Any record of the type with this api key, with every field set freely.
fn any_record_of(api_key: u32) -> BoxedStrategy<MetadataRecord> {
    match api_key {
        0 => register_broker()
            .prop_map(MetadataRecord::RegisterBroker)
            .boxed(),
        1 => (int32(), int64())
            .prop_map(|(broker_id, broker_epoch)| {
                MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
                    broker_id,
                    broker_epoch,
                })
            })
            .boxed(),
        2 => (string(), uuid())
            .prop_map(|(name, topic_id)| MetadataRecord::Topic(TopicRecord { name, topic_id }))
            .boxed(),
        3 => partition().prop_map(MetadataRecord::Partition).boxed(),
        4 => (
            prop_oneof![Just(RESOURCE_TOPIC), Just(RESOURCE_BROKER), int8()],
            string(),
            string(),
            option::of(string()),
        )
            .prop_map(|(resource_type, resource_name, name, value)| {
                MetadataRecord::Config(ConfigRecord {
                    resource_type,
                    resource_name,
                    name,
                    value,
                })
            })
            .boxed(),
        5 => partition_change()
            .prop_map(MetadataRecord::PartitionChange)
            .boxed(),
        9 => uuid()
            .prop_map(|topic_id| MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id }))
            .boxed(),
        12 => (string(), int16())
            .prop_map(|(name, feature_level)| {
                MetadataRecord::FeatureLevel(FeatureLevelRecord {
                    name,
                    feature_level,
                })
            })
            .boxed(),
        15 => (int32(), int64(), int64())
            .prop_map(|(broker_id, broker_epoch, next_producer_id)| {
                MetadataRecord::ProducerIds(ProducerIdsRecord {
                    broker_id,
                    broker_epoch,
                    next_producer_id,
                })
            })
            .boxed(),
        17 => broker_registration_change()
            .prop_map(MetadataRecord::BrokerRegistrationChange)
            .boxed(),
        20 => Just(MetadataRecord::NoOp).boxed(),
        23 => option::of(string())
            .prop_map(|name| MetadataRecord::BeginTransaction(BeginTransactionRecord { name }))
            .boxed(),
        24 => Just(MetadataRecord::EndTransaction).boxed(),
        25 => option::of(string())
            .prop_map(|reason| MetadataRecord::AbortTransaction(AbortTransactionRecord { reason }))
            .boxed(),
        other => panic!("no metadata record type has api key {other}"),
    }
}

/// Resets every field `version` cannot carry to its default.
pub fn restrict_to_version(record: MetadataRecord, version: i16) -> MetadataRecord {
    match record {
        MetadataRecord::RegisterBroker(mut r) => {
            if version < 1 {
                r.in_controlled_shutdown = false;
            }
            if version < 2 {
                r.is_migrating_zk_broker = false;
            }
            if version < 3 {
                r.log_dirs.clear();
            }
            MetadataRecord::RegisterBroker(r)
        }
        MetadataRecord::Partition(mut p) => {
            if version < 1 {
                p.directories.clear();
            }
            if version < 2 {
                p.eligible_leader_replicas = None;
                p.last_known_elr = None;
            }
            MetadataRecord::Partition(p)
        }
        MetadataRecord::PartitionChange(mut p) => {
            if version < 1 {
                p.directories = None;
            }
            if version < 2 {
                p.eligible_leader_replicas = None;
                p.last_known_elr = None;
            }
            MetadataRecord::PartitionChange(p)
        }
        MetadataRecord::BrokerRegistrationChange(mut b) => {
            if version < 1 {
                b.in_controlled_shutdown = 0;
            }
            if version < 2 {
                b.log_dirs.clear();
            }
            MetadataRecord::BrokerRegistrationChange(b)
        }
        other => other,
    }
}

/// Any record of type `api_key` at `version`; panics if kraftd does not read that pair.
pub fn any_record_at(api_key: u32, version: i16) -> impl Strategy<Value = VersionedRecord> {
    let supported =
        supported_versions(api_key).is_some_and(|(min, max)| (min..=max).contains(&version));
    assert!(supported, "api key {api_key} has no version {version}");
    any_record_of(api_key).prop_map(move |record| VersionedRecord {
        version,
        record: restrict_to_version(record, version),
    })
}

/// Every `(api_key, version)` pair kraftd reads.
pub fn all_api_key_versions() -> Vec<(u32, i16)> {
    METADATA_API_KEYS
        .iter()
        .flat_map(|&k| {
            let (min, max) = supported_versions(k).unwrap_or((0, -1));
            (min..=max).map(move |v| (k, v))
        })
        .collect()
}

/// Any record of any type at any supported version, each pair equally likely.
pub fn any_versioned_record() -> impl Strategy<Value = VersionedRecord> {
    Union::new(
        all_api_key_versions()
            .into_iter()
            .map(|(k, v)| any_record_at(k, v).boxed()),
    )
}
