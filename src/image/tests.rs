use std::hint::black_box;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use uuid::Uuid;

use super::synthetic::SplitMix64;
use super::*;
use crate::record::checkpoint::{write_checkpoint, CheckpointMeta, SnapshotId};
use crate::record::metadata::{
    BrokerEndpoint, BrokerFeature, VersionedRecord, NO_LEADER, NO_LEADER_CHANGE,
};

// ---- helpers ----

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn register(broker_id: i32, broker_epoch: i64) -> RegisterBrokerRecord {
    RegisterBrokerRecord {
        broker_id,
        broker_epoch,
        incarnation_id: id(1000 + broker_id as u128),
        end_points: vec![BrokerEndpoint {
            name: "PLAINTEXT".into(),
            host: "localhost".into(),
            port: 9092,
            security_protocol: 0,
        }],
        features: vec![BrokerFeature {
            name: METADATA_VERSION.into(),
            min_supported_version: 1,
            max_supported_version: 16,
        }],
        rack: Some("r1".into()),
        fenced: true,
        ..Default::default()
    }
}

fn topic(name: &str, topic_id: Uuid) -> MetadataRecord {
    MetadataRecord::Topic(TopicRecord {
        name: name.into(),
        topic_id,
    })
}

fn partition(topic_id: Uuid, partition_id: i32, replicas: &[i32]) -> PartitionRecord {
    PartitionRecord {
        partition_id,
        topic_id,
        replicas: replicas.to_vec(),
        isr: replicas.to_vec(),
        leader: replicas.first().copied().unwrap_or(NO_LEADER),
        ..Default::default()
    }
}

fn change(topic_id: Uuid, partition_id: i32) -> PartitionChangeRecord {
    PartitionChangeRecord {
        topic_id,
        partition_id,
        ..Default::default()
    }
}

fn config(
    resource_type: i8,
    resource_name: &str,
    name: &str,
    value: Option<&str>,
) -> MetadataRecord {
    MetadataRecord::Config(ConfigRecord {
        resource_type,
        resource_name: resource_name.into(),
        name: name.into(),
        value: value.map(Into::into),
    })
}

const ORDERS: u128 = 0xA1;
const PAYMENTS: u128 = 0xB2;

/// Three brokers (0 and 1 unfenced), topics `orders` (2 partitions) and `payments`
/// (1 partition), configs of both kinds and a producer-id block.
fn small_image() -> MetadataImage {
    let mut image = MetadataImage::bootstrap();
    let records = vec![
        MetadataRecord::RegisterBroker(register(0, 10)),
        MetadataRecord::RegisterBroker(register(1, 11)),
        MetadataRecord::RegisterBroker(register(2, 12)),
        MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
            broker_id: 0,
            broker_epoch: 10,
            fenced: -1,
            ..Default::default()
        }),
        MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
            broker_id: 1,
            broker_epoch: 11,
            fenced: -1,
            ..Default::default()
        }),
        topic("orders", id(ORDERS)),
        MetadataRecord::Partition(partition(id(ORDERS), 0, &[0, 1, 2])),
        MetadataRecord::Partition(partition(id(ORDERS), 1, &[1, 2, 0])),
        topic("payments", id(PAYMENTS)),
        MetadataRecord::Partition(partition(id(PAYMENTS), 0, &[2, 0, 1])),
        config(RESOURCE_TOPIC, "orders", "retention.ms", Some("1000")),
        config(
            RESOURCE_TOPIC,
            "payments",
            "cleanup.policy",
            Some("compact"),
        ),
        config(RESOURCE_BROKER, "", "log.retention.hours", Some("24")),
        config(RESOURCE_BROKER, "1", "log.cleaner.threads", Some("2")),
        MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id: 0,
            broker_epoch: 10,
            next_producer_id: 1000,
        }),
        MetadataRecord::FeatureLevel(FeatureLevelRecord {
            name: "kraft.version".into(),
            feature_level: 1,
        }),
    ];
    for r in &records {
        image.apply(r).unwrap_or_else(|e| panic!("{r:?}: {e}"));
    }
    image
}

/// Applies a record that must be refused; checks the image did not change.
fn assert_rejected(image: &MetadataImage, record: MetadataRecord) -> ImageError {
    let mut after = image.clone();
    let err = after
        .apply(&record)
        .expect_err("record should have been rejected");
    assert_eq!(&after, image, "a rejected record changed the image ({err})");
    err
}

fn replay(records: impl IntoIterator<Item = VersionedRecord>) -> MetadataImage {
    let mut image = MetadataImage::default();
    for r in records {
        image
            .apply(&r.record)
            .unwrap_or_else(|e| panic!("replaying {r:?}: {e}"));
    }
    image
}

fn assert_round_trips(image: &MetadataImage) {
    let records: Vec<VersionedRecord> = image.records().collect();
    assert_eq!(records.len(), image.record_count());
    let replayed = replay(records.iter().cloned());
    assert_eq!(&replayed, image);
    assert!(
        replayed.records().eq(records),
        "a replayed image writes different records"
    );
}

// ---- bootstrap and snapshot order ----

#[test]
fn bootstrap_image_holds_only_metadata_version_16() {
    let image = MetadataImage::bootstrap();
    assert_eq!(image.metadata_version(), Some(16));
    assert_eq!(image.features().len(), 1);
    assert_eq!(image.counts(), ImageCounts::default());
    assert_eq!(MetadataImage::default().metadata_version(), None);
}

#[test]
fn empty_image_is_written_as_metadata_version_16_and_replays_to_bootstrap() {
    let records: Vec<_> = MetadataImage::default().records().collect();
    assert_eq!(
        records,
        vec![VersionedRecord {
            version: 0,
            record: MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: METADATA_VERSION.into(),
                feature_level: 16
            })
        }]
    );
    assert_eq!(replay(records), MetadataImage::bootstrap());
    assert_round_trips(&MetadataImage::bootstrap());
}

#[test]
fn records_come_in_snapshot_order() {
    let mut image = small_image();
    image
        .apply(&MetadataRecord::FeatureLevel(FeatureLevelRecord {
            name: "aaa.first".into(),
            feature_level: 2,
        }))
        .unwrap();
    let kinds: Vec<String> = image
        .records()
        .map(|r| match r.record {
            MetadataRecord::FeatureLevel(f) => format!("feature {}", f.name),
            MetadataRecord::RegisterBroker(b) => format!("broker {}", b.broker_id),
            MetadataRecord::ProducerIds(_) => "producer ids".into(),
            MetadataRecord::Topic(t) => format!("topic {}", t.name),
            MetadataRecord::Partition(p) => format!("partition {}", p.partition_id),
            MetadataRecord::Config(c) => {
                format!("config {} {} {}", c.resource_type, c.resource_name, c.name)
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "feature metadata.version",
            "feature aaa.first",
            "feature kraft.version",
            "broker 0",
            "broker 1",
            "broker 2",
            "producer ids",
            "topic orders",
            "partition 0",
            "partition 1",
            "topic payments",
            "partition 0",
            "config 4  log.retention.hours",
            "config 4 1 log.cleaner.threads",
            "config 2 orders retention.ms",
            "config 2 payments cleanup.policy",
        ]
    );
}

#[test]
fn records_carry_current_broker_state_and_writer_versions() {
    let mut image = small_image();
    image
        .apply(&MetadataRecord::BrokerRegistrationChange(
            BrokerRegistrationChangeRecord {
                broker_id: 1,
                broker_epoch: 11,
                in_controlled_shutdown: 1,
                log_dirs: vec![id(77)],
                ..Default::default()
            },
        ))
        .unwrap();
    let mut elr = partition(id(PAYMENTS), 0, &[2, 0, 1]);
    elr.last_known_elr = Some(vec![]);
    image.apply(&MetadataRecord::Partition(elr)).unwrap();
    let mut dirs = partition(id(ORDERS), 1, &[1, 2, 0]);
    dirs.directories = vec![id(7), id(8), id(9)];
    image.apply(&MetadataRecord::Partition(dirs)).unwrap();

    for r in image.records() {
        match &r.record {
            MetadataRecord::RegisterBroker(b) => {
                assert_eq!(b.fenced, b.broker_id == 2);
                assert_eq!(b.in_controlled_shutdown, b.broker_id == 1);
                assert_eq!(r.version, if b.broker_id == 1 { 3 } else { 2 });
            }
            MetadataRecord::Partition(p) if p.topic_id == id(PAYMENTS) => assert_eq!(r.version, 2),
            MetadataRecord::Partition(p) if p.partition_id == 1 => assert_eq!(r.version, 1),
            MetadataRecord::Partition(_) => assert_eq!(r.version, 0),
            _ => assert_eq!(r.version, 0),
        }
    }
    assert_round_trips(&image);
}

#[test]
fn small_image_round_trips_through_records() {
    assert_round_trips(&small_image());
}

// ---- rejections ----

#[test]
fn partition_change_for_unknown_topic_is_rejected_and_image_unchanged() {
    let err = assert_rejected(
        &small_image(),
        MetadataRecord::PartitionChange(change(id(0xDEAD), 0)),
    );
    assert!(matches!(err, ImageError::UnknownTopicId { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&crate::record::uuid_fmt::kafka_uuid(&id(0xDEAD))),
        "{err}"
    );
}

#[test]
fn partition_change_for_unknown_partition_is_rejected_and_image_unchanged() {
    let err = assert_rejected(
        &small_image(),
        MetadataRecord::PartitionChange(change(id(ORDERS), 7)),
    );
    assert!(
        matches!(err, ImageError::UnknownPartition { partition: 7, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("orders") && err.to_string().contains('7'),
        "{err}"
    );
}

#[test]
fn partition_record_for_unknown_topic_is_rejected_and_image_unchanged() {
    let err = assert_rejected(
        &small_image(),
        MetadataRecord::Partition(partition(id(0xDEAD), 0, &[0])),
    );
    assert!(matches!(err, ImageError::UnknownTopicId { .. }), "{err}");
}

#[test]
fn topic_record_with_taken_name_is_rejected_and_image_unchanged() {
    let err = assert_rejected(&small_image(), topic("orders", id(0xC3)));
    assert!(
        matches!(err, ImageError::DuplicateTopicName { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("orders"), "{err}");
    // The same record again (same name and id) is a duplicate too.
    assert_rejected(&small_image(), topic("orders", id(ORDERS)));
}

#[test]
fn topic_record_with_taken_id_is_rejected_and_image_unchanged() {
    let err = assert_rejected(&small_image(), topic("invoices", id(ORDERS)));
    assert!(matches!(err, ImageError::DuplicateTopicId { .. }), "{err}");
    assert!(
        err.to_string().contains("orders") && err.to_string().contains("invoices"),
        "{err}"
    );
}

#[test]
fn topic_record_with_empty_name_or_zero_id_is_rejected_and_image_unchanged() {
    assert_rejected(&small_image(), topic("", id(0xC3)));
    assert_rejected(&small_image(), topic("invoices", Uuid::nil()));
}

#[test]
fn remove_topic_for_unknown_id_is_rejected_and_image_unchanged() {
    let err = assert_rejected(
        &small_image(),
        MetadataRecord::RemoveTopic(RemoveTopicRecord {
            topic_id: id(0xDEAD),
        }),
    );
    assert!(
        matches!(
            err,
            ImageError::UnknownTopicId {
                record: "RemoveTopicRecord",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn unregister_unknown_broker_is_rejected_and_image_unchanged() {
    let err = assert_rejected(
        &small_image(),
        MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
            broker_id: 9,
            broker_epoch: 10,
        }),
    );
    assert!(
        matches!(err, ImageError::UnknownBroker { broker_id: 9, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("broker 9"), "{err}");
}

#[test]
fn unregister_with_stale_broker_epoch_is_rejected_and_image_unchanged() {
    let err = assert_rejected(
        &small_image(),
        MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
            broker_id: 1,
            broker_epoch: 10,
        }),
    );
    assert_eq!(
        err,
        ImageError::BrokerEpochMismatch {
            record: "UnregisterBrokerRecord",
            broker_id: 1,
            current: 11,
            given: 10
        }
    );
}

#[test]
fn registration_change_for_unknown_broker_or_stale_epoch_is_rejected_and_image_unchanged() {
    let image = small_image();
    let unknown = BrokerRegistrationChangeRecord {
        broker_id: 9,
        broker_epoch: 10,
        fenced: 1,
        ..Default::default()
    };
    let err = assert_rejected(&image, MetadataRecord::BrokerRegistrationChange(unknown));
    assert!(
        matches!(err, ImageError::UnknownBroker { broker_id: 9, .. }),
        "{err}"
    );
    let stale = BrokerRegistrationChangeRecord {
        broker_id: 0,
        broker_epoch: 9,
        fenced: 1,
        ..Default::default()
    };
    let err = assert_rejected(&image, MetadataRecord::BrokerRegistrationChange(stale));
    assert!(
        matches!(
            err,
            ImageError::BrokerEpochMismatch {
                broker_id: 0,
                current: 10,
                given: 9,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn registration_change_with_out_of_range_flags_is_rejected_and_image_unchanged() {
    let image = small_image();
    for (fenced, in_controlled_shutdown) in [(2, 0), (-2, 0), (i8::MIN, 0), (0, -1), (0, 2), (1, 5)]
    {
        let r = BrokerRegistrationChangeRecord {
            broker_id: 0,
            broker_epoch: 10,
            fenced,
            in_controlled_shutdown,
            ..Default::default()
        };
        let err = assert_rejected(&image, MetadataRecord::BrokerRegistrationChange(r));
        assert!(matches!(err, ImageError::InvalidField { .. }), "{err}");
        assert!(err.to_string().contains("broker 0"), "{err}");
    }
}

#[test]
fn partition_change_with_leader_below_minus_two_is_rejected_and_image_unchanged() {
    let mut c = change(id(ORDERS), 0);
    c.leader = -3;
    let err = assert_rejected(&small_image(), MetadataRecord::PartitionChange(c));
    assert!(
        matches!(err, ImageError::InvalidPartition { partition: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("orders-0"), "{err}");
}

#[test]
fn partition_change_with_unknown_leader_recovery_state_is_rejected_and_image_unchanged() {
    let mut c = change(id(ORDERS), 0);
    c.leader_recovery_state = 2;
    assert_rejected(&small_image(), MetadataRecord::PartitionChange(c));
}

#[test]
fn partition_changes_that_break_replica_invariants_are_rejected_and_image_unchanged() {
    let image = small_image();
    let mut leader_not_replica = change(id(ORDERS), 0);
    leader_not_replica.leader = 5;
    let mut isr_not_replicas = change(id(ORDERS), 0);
    isr_not_replicas.isr = Some(vec![0, 5]);
    let mut shrink_without_isr = change(id(ORDERS), 0);
    shrink_without_isr.replicas = Some(vec![0, 1]);
    let mut duplicate_replica = change(id(ORDERS), 0);
    duplicate_replica.replicas = Some(vec![0, 1, 1]);
    duplicate_replica.isr = Some(vec![0]);
    let mut wrong_dirs = change(id(ORDERS), 0);
    wrong_dirs.directories = Some(vec![id(1)]);
    for c in [
        leader_not_replica,
        isr_not_replicas,
        shrink_without_isr,
        duplicate_replica,
        wrong_dirs,
    ] {
        let err = assert_rejected(&image, MetadataRecord::PartitionChange(c));
        assert!(matches!(err, ImageError::InvalidPartition { .. }), "{err}");
    }
}

#[test]
fn malformed_partition_records_are_rejected_and_image_unchanged() {
    let image = small_image();
    let mut negative_id = partition(id(ORDERS), -1, &[0]);
    negative_id.partition_id = -1;
    let mut negative_replica = partition(id(ORDERS), 2, &[0, -4]);
    negative_replica.leader = 0;
    let mut bad_leader = partition(id(ORDERS), 2, &[0, 1]);
    bad_leader.leader = -2;
    let mut bad_lrs = partition(id(ORDERS), 2, &[0, 1]);
    bad_lrs.leader_recovery_state = -1;
    let mut bad_dirs = partition(id(ORDERS), 2, &[0, 1]);
    bad_dirs.directories = vec![id(1), id(2), id(3)];
    for p in [negative_id, negative_replica, bad_leader, bad_lrs, bad_dirs] {
        assert_rejected(&image, MetadataRecord::Partition(p));
    }
}

#[test]
fn producer_ids_that_do_not_increase_are_rejected_and_image_unchanged() {
    let image = small_image();
    for next in [1000, 999, 0] {
        let r = ProducerIdsRecord {
            broker_id: 1,
            broker_epoch: 11,
            next_producer_id: next,
        };
        let err = assert_rejected(&image, MetadataRecord::ProducerIds(r));
        assert_eq!(
            err,
            ImageError::ProducerIdNotIncreasing {
                current: 1000,
                given: next
            }
        );
    }
    let negative = ProducerIdsRecord {
        broker_id: 1,
        broker_epoch: 11,
        next_producer_id: -1,
    };
    assert_rejected(
        &MetadataImage::bootstrap(),
        MetadataRecord::ProducerIds(negative),
    );
    let mut image = image;
    image
        .apply(&MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id: 1,
            broker_epoch: 11,
            next_producer_id: 2000,
        }))
        .unwrap();
    assert_eq!(image.producer_ids().map(|p| p.next_producer_id), Some(2000));
}

#[test]
fn bad_configs_are_rejected_and_image_unchanged() {
    let image = small_image();
    for r in [
        config(RESOURCE_TOPIC, "nope", "retention.ms", Some("1")),
        config(RESOURCE_TOPIC, "nope", "retention.ms", None),
        config(8, "0", "kafka.server", Some("DEBUG")),
        config(RESOURCE_BROKER, "broker-1", "x", Some("1")),
        config(RESOURCE_BROKER, "-1", "x", Some("1")),
        config(RESOURCE_BROKER, "01", "x", Some("1")),
        config(RESOURCE_BROKER, "", "", Some("1")),
    ] {
        assert_rejected(&image, r);
    }
}

#[test]
fn bad_feature_levels_are_rejected_and_image_unchanged() {
    let image = small_image();
    for (name, level) in [(METADATA_VERSION, 0), ("kraft.version", -1), ("", 1)] {
        let r = FeatureLevelRecord {
            name: name.into(),
            feature_level: level,
        };
        assert_rejected(&image, MetadataRecord::FeatureLevel(r));
    }
}

#[test]
fn epoch_overflow_is_rejected_instead_of_wrapping() {
    let mut image = small_image();
    let mut p = partition(id(ORDERS), 0, &[0, 1, 2]);
    p.leader_epoch = i32::MAX;
    image.apply(&MetadataRecord::Partition(p)).unwrap();
    let mut c = change(id(ORDERS), 0);
    c.leader = 1;
    assert_rejected(&image, MetadataRecord::PartitionChange(c));
}

// ---- replay semantics ----

#[test]
fn leader_change_bumps_leader_epoch_and_partition_epoch() {
    let mut image = small_image();
    let mut c = change(id(ORDERS), 0);
    c.leader = 1;
    image.apply(&MetadataRecord::PartitionChange(c)).unwrap();
    let p = image.partition(&id(ORDERS), 0).unwrap();
    assert_eq!(
        (p.leader(), p.leader_epoch(), p.partition_epoch()),
        (1, 1, 1)
    );
    assert_eq!(p.isr(), [0, 1, 2], "fields absent from the change are kept");

    let mut none = change(id(ORDERS), 0);
    none.leader = NO_LEADER;
    none.isr = Some(vec![]);
    image.apply(&MetadataRecord::PartitionChange(none)).unwrap();
    let p = image.partition(&id(ORDERS), 0).unwrap();
    assert_eq!(
        (p.leader(), p.leader_epoch(), p.partition_epoch()),
        (-1, 2, 2)
    );
    assert!(!p.has_leader());
    assert_eq!(image.offline_partition_count(), 1);
}

#[test]
fn isr_only_change_bumps_only_partition_epoch() {
    let mut image = small_image();
    let mut c = change(id(ORDERS), 1);
    c.isr = Some(vec![1, 2]);
    image.apply(&MetadataRecord::PartitionChange(c)).unwrap();
    let p = image.partition(&id(ORDERS), 1).unwrap();
    assert_eq!(p.isr(), [1, 2]);
    assert_eq!(p.replicas(), [1, 2, 0]);
    assert_eq!(
        (p.leader(), p.leader_epoch(), p.partition_epoch()),
        (1, 0, 1)
    );
}

#[test]
fn empty_partition_change_still_bumps_partition_epoch() {
    let mut image = small_image();
    let before = image.partition(&id(ORDERS), 0).unwrap().clone();
    image
        .apply(&MetadataRecord::PartitionChange(change(id(ORDERS), 0)))
        .unwrap();
    let after = image.partition(&id(ORDERS), 0).unwrap();
    assert_eq!(after.partition_epoch(), before.partition_epoch() + 1);
    assert_eq!(after.leader_epoch(), before.leader_epoch());
    assert_eq!(
        after.leader_recovery_state(),
        0,
        "-1 leaves the recovery state alone"
    );
}

#[test]
fn leader_recovery_state_changes_only_when_given() {
    let mut image = small_image();
    let mut c = change(id(ORDERS), 0);
    c.leader_recovery_state = 1;
    c.leader = 2;
    c.isr = Some(vec![2]);
    image.apply(&MetadataRecord::PartitionChange(c)).unwrap();
    assert_eq!(
        image
            .partition(&id(ORDERS), 0)
            .unwrap()
            .leader_recovery_state(),
        1
    );
    image
        .apply(&MetadataRecord::PartitionChange(change(id(ORDERS), 0)))
        .unwrap();
    assert_eq!(
        image
            .partition(&id(ORDERS), 0)
            .unwrap()
            .leader_recovery_state(),
        1
    );
}

#[test]
fn reassignment_change_sets_lists_and_carries_directories_by_replica() {
    let mut image = small_image();
    let mut p = partition(id(ORDERS), 0, &[0, 1, 2]);
    p.directories = vec![id(10), id(11), id(12)];
    image.apply(&MetadataRecord::Partition(p)).unwrap();
    let mut c = change(id(ORDERS), 0);
    c.replicas = Some(vec![2, 0, 3]);
    c.isr = Some(vec![2, 0]);
    c.adding_replicas = Some(vec![3]);
    c.removing_replicas = Some(vec![1]);
    c.leader = 2;
    image.apply(&MetadataRecord::PartitionChange(c)).unwrap();
    let p = image.partition(&id(ORDERS), 0).unwrap();
    assert_eq!(p.replicas(), [2, 0, 3]);
    assert_eq!(p.directories(), [id(12), id(10), DIRECTORY_UNASSIGNED]);
    assert_eq!(
        (p.adding_replicas(), p.removing_replicas()),
        (&[3][..], &[1][..])
    );
    assert!(p.is_reassigning());
    assert_round_trips(&image);
}

#[test]
fn elr_fields_are_replaced_when_given_and_kept_otherwise() {
    let mut image = small_image();
    let mut c = change(id(ORDERS), 0);
    c.eligible_leader_replicas = Some(vec![1]);
    c.last_known_elr = Some(vec![]);
    image.apply(&MetadataRecord::PartitionChange(c)).unwrap();
    image
        .apply(&MetadataRecord::PartitionChange(change(id(ORDERS), 0)))
        .unwrap();
    let p = image.partition(&id(ORDERS), 0).unwrap();
    assert_eq!(p.eligible_leader_replicas(), Some(&[1][..]));
    assert_eq!(p.last_known_elr(), Some(&[][..]));
    assert_round_trips(&image);
}

#[test]
fn partition_record_for_existing_partition_replaces_it() {
    let mut image = small_image();
    let mut p = partition(id(ORDERS), 1, &[2, 1]);
    p.leader_epoch = 7;
    p.partition_epoch = 9;
    image.apply(&MetadataRecord::Partition(p.clone())).unwrap();
    assert_eq!(
        image
            .partition(&id(ORDERS), 1)
            .unwrap()
            .to_record(id(ORDERS)),
        p
    );
    assert_eq!(image.topic(&id(ORDERS)).unwrap().partition_count(), 2);
}

#[test]
fn partition_stays_compact() {
    // A million of these live in memory; growing the struct is a deliberate decision.
    assert!(
        std::mem::size_of::<Partition>() <= 48,
        "{}",
        std::mem::size_of::<Partition>()
    );
}

#[test]
fn partitions_arriving_out_of_order_are_kept_sorted() {
    let mut image = MetadataImage::bootstrap();
    image.apply(&topic("t", id(1))).unwrap();
    for pid in [5, 1, 3, 0, 4, 2, 3] {
        image
            .apply(&MetadataRecord::Partition(partition(id(1), pid, &[0])))
            .unwrap();
    }
    let ids: Vec<i32> = image
        .topic(&id(1))
        .unwrap()
        .partitions()
        .iter()
        .map(Partition::id)
        .collect();
    assert_eq!(ids, [0, 1, 2, 3, 4, 5]);
    assert_eq!(image.partition(&id(1), 4).unwrap().id(), 4);
    assert_round_trips(&image);
}

#[test]
fn remove_topic_drops_its_partitions_and_configs() {
    let mut image = small_image();
    image
        .apply(&MetadataRecord::RemoveTopic(RemoveTopicRecord {
            topic_id: id(ORDERS),
        }))
        .unwrap();
    assert!(image.topic(&id(ORDERS)).is_none());
    assert!(image.topic_by_name("orders").is_none());
    assert!(image.partition(&id(ORDERS), 0).is_none());
    assert!(image
        .config(&ConfigResource::Topic("orders".into()))
        .is_none());
    assert_eq!(
        image.config_value(&ConfigResource::Topic("payments".into()), "cleanup.policy"),
        Some("compact")
    );
    assert_eq!(image.partition_count(), 1);
    // The name is free again, with no configs carried over.
    image.apply(&topic("orders", id(0xC3))).unwrap();
    assert!(image
        .config(&ConfigResource::Topic("orders".into()))
        .is_none());
    assert_round_trips(&image);
}

#[test]
fn config_value_none_deletes_the_key_and_an_emptied_resource() {
    let mut image = small_image();
    let orders = ConfigResource::Topic("orders".into());
    image
        .apply(&config(RESOURCE_TOPIC, "orders", "segment.ms", Some("5")))
        .unwrap();
    image
        .apply(&config(
            RESOURCE_TOPIC,
            "orders",
            "retention.ms",
            Some("2000"),
        ))
        .unwrap();
    assert_eq!(image.config(&orders).unwrap().len(), 2);
    assert_eq!(image.config_value(&orders, "retention.ms"), Some("2000"));
    image
        .apply(&config(RESOURCE_TOPIC, "orders", "retention.ms", None))
        .unwrap();
    assert_eq!(image.config_value(&orders, "retention.ms"), None);
    image
        .apply(&config(RESOURCE_TOPIC, "orders", "segment.ms", None))
        .unwrap();
    assert!(image.config(&orders).is_none());
    // Deleting a key that is not set is allowed and changes nothing.
    let before = image.clone();
    image
        .apply(&config(RESOURCE_BROKER, "7", "x", None))
        .unwrap();
    assert_eq!(image, before);
    assert_eq!(
        image.config_value(&ConfigResource::cluster_default(), "log.retention.hours"),
        Some("24")
    );
}

#[test]
fn feature_level_zero_removes_the_feature() {
    let mut image = small_image();
    image
        .apply(&MetadataRecord::FeatureLevel(FeatureLevelRecord {
            name: "kraft.version".into(),
            feature_level: 0,
        }))
        .unwrap();
    assert_eq!(image.feature_level("kraft.version"), None);
    image
        .apply(&MetadataRecord::FeatureLevel(FeatureLevelRecord {
            name: METADATA_VERSION.into(),
            feature_level: 19,
        }))
        .unwrap();
    assert_eq!(image.metadata_version(), Some(19));
    assert_eq!(image.records().next().unwrap().record, {
        MetadataRecord::FeatureLevel(FeatureLevelRecord {
            name: METADATA_VERSION.into(),
            feature_level: 19,
        })
    });
}

#[test]
fn register_broker_replaces_an_existing_registration() {
    let mut image = small_image();
    let mut again = register(0, 42);
    again.rack = None;
    again.incarnation_id = id(4242);
    image
        .apply(&MetadataRecord::RegisterBroker(again.clone()))
        .unwrap();
    let b = image.broker(0).unwrap();
    assert_eq!(b.to_record(), again);
    assert!(
        b.fenced,
        "a new registration starts with its own fencing state"
    );
    assert_eq!(image.broker_count(), 3);
    assert_eq!(b.listener("PLAINTEXT").map(|l| l.port), Some(9092));
}

#[test]
fn fence_unfence_and_controlled_shutdown_follow_kafka() {
    let mut image = small_image();
    let apply_change = |image: &mut MetadataImage, fenced: i8, ics: i8| {
        image
            .apply(&MetadataRecord::BrokerRegistrationChange(
                BrokerRegistrationChangeRecord {
                    broker_id: 2,
                    broker_epoch: 12,
                    fenced,
                    in_controlled_shutdown: ics,
                    ..Default::default()
                },
            ))
            .unwrap();
        let b = image.broker(2).unwrap();
        (b.fenced, b.in_controlled_shutdown)
    };
    assert_eq!(apply_change(&mut image, -1, 0), (false, false));
    assert_eq!(apply_change(&mut image, 0, 1), (false, true));
    // 0 means "unchanged" for both flags: controlled shutdown only ends with a new registration.
    assert_eq!(apply_change(&mut image, 0, 0), (false, true));
    assert_eq!(apply_change(&mut image, 1, 0), (true, true));
    let counts = image.counts();
    assert_eq!(
        (
            counts.fenced_brokers,
            counts.active_brokers,
            counts.brokers_in_controlled_shutdown
        ),
        (1, 2, 1)
    );
    assert_round_trips(&image);
}

#[test]
fn registration_change_replaces_log_dirs_only_when_non_empty() {
    let mut image = small_image();
    let dirs = vec![id(5), id(6)];
    for log_dirs in [dirs.clone(), vec![]] {
        image
            .apply(&MetadataRecord::BrokerRegistrationChange(
                BrokerRegistrationChangeRecord {
                    broker_id: 1,
                    broker_epoch: 11,
                    log_dirs,
                    ..Default::default()
                },
            ))
            .unwrap();
        assert_eq!(image.broker(1).unwrap().log_dirs, dirs);
    }
}

#[test]
fn unregister_broker_removes_the_registration() {
    let mut image = small_image();
    image
        .apply(&MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
            broker_id: 2,
            broker_epoch: 12,
        }))
        .unwrap();
    assert!(image.broker(2).is_none());
    assert_eq!(image.fenced_broker_count(), 0);
    assert_eq!(image.active_broker_count(), 2);
    assert_round_trips(&image);
}

#[test]
fn noop_changes_nothing() {
    let mut image = small_image();
    image.apply(&MetadataRecord::NoOp).unwrap();
    assert_eq!(image, small_image());
}

#[test]
fn lookups_and_counts_describe_the_image() {
    let image = small_image();
    let orders = image.topic_by_name("orders").unwrap();
    assert_eq!(orders.id(), id(ORDERS));
    assert_eq!(image.topic_id("payments"), Some(id(PAYMENTS)));
    assert_eq!(image.topic(&id(PAYMENTS)).unwrap().name(), "payments");
    let names: Vec<&str> = image.topics().map(Topic::name).collect();
    assert_eq!(names, ["orders", "payments"]);
    let broker_ids: Vec<i32> = image.brokers().map(|b| b.broker_id).collect();
    assert_eq!(broker_ids, [0, 1, 2]);
    assert_eq!(
        image.counts(),
        ImageCounts {
            topics: 2,
            partitions: 3,
            offline_partitions: 0,
            under_replicated_partitions: 0,
            brokers: 3,
            fenced_brokers: 1,
            active_brokers: 2,
            brokers_in_controlled_shutdown: 0,
        }
    );
    let resources: Vec<String> = image.configs().map(|(r, _)| r.to_string()).collect();
    assert_eq!(
        resources,
        [
            "cluster default broker config",
            "broker 1",
            "topic orders",
            "topic payments"
        ]
    );
}

#[test]
fn image_serializes_to_the_documented_json_shape() {
    let mut image = small_image();
    let mut p = partition(id(PAYMENTS), 0, &[2, 0, 1]);
    p.directories = vec![id(1), id(2), id(3)];
    image.apply(&MetadataRecord::Partition(p)).unwrap();
    let json = serde_json::to_value(&image).unwrap();
    let kafka = |n: u128| serde_json::Value::String(crate::record::uuid_fmt::kafka_uuid(&id(n)));
    assert_eq!(json["features"]["metadata.version"], 16);
    assert_eq!(json["brokers"][1]["broker_id"], 1);
    assert_eq!(json["brokers"][1]["fenced"], false);
    assert_eq!(json["brokers"][0]["incarnation_id"], kafka(1000));
    assert_eq!(json["producer_ids"]["next_producer_id"], 1000);
    assert_eq!(json["topics"][0]["name"], "orders");
    assert_eq!(json["topics"][0]["topic_id"], kafka(ORDERS));
    let p0 = &json["topics"][0]["partitions"][1];
    assert_eq!(p0["partition"], 1);
    assert_eq!(p0["replicas"], serde_json::json!([1, 2, 0]));
    assert_eq!(p0["isr"], serde_json::json!([1, 2, 0]));
    assert_eq!(p0["leader"], 1);
    assert_eq!(p0["leader_epoch"], 0);
    assert_eq!(p0["partition_epoch"], 0);
    assert_eq!(p0["eligible_leader_replicas"], serde_json::Value::Null);
    assert_eq!(
        json["topics"][1]["partitions"][0]["directories"][2],
        kafka(3)
    );
    assert_eq!(json["configs"]["brokers"][""]["log.retention.hours"], "24");
    assert_eq!(json["configs"]["brokers"]["1"]["log.cleaner.threads"], "2");
    assert_eq!(json["configs"]["topics"]["orders"]["retention.ms"], "1000");
}

#[test]
fn synthetic_image_is_plausible_reproducible_and_round_trips() {
    let image = MetadataImage::synthetic(12, 7, 5, 3);
    assert_eq!(image, MetadataImage::synthetic(12, 7, 5, 3));
    let counts = image.counts();
    assert_eq!(
        (
            counts.topics,
            counts.partitions,
            counts.brokers,
            counts.active_brokers
        ),
        (12, 84, 5, 5)
    );
    assert_eq!(counts.offline_partitions, 0);
    let t = image.topic_by_name("topic-000003").unwrap();
    for p in t.partitions() {
        assert_eq!(p.replicas().len(), 3);
        assert_eq!(p.isr(), p.replicas());
        assert_eq!(p.leader(), p.replicas()[0]);
    }
    assert_eq!(image.metadata_version(), Some(16));
    assert!(image.broker(4).unwrap().rack.is_some());
    assert_round_trips(&image);
    // The replication factor is capped by the broker count; no brokers means offline.
    let capped = MetadataImage::synthetic(1, 2, 2, 3);
    assert!(capped
        .topics()
        .flat_map(Topic::partitions)
        .all(|p| p.replicas().len() == 2));
    assert_eq!(
        MetadataImage::synthetic(1, 2, 0, 3).offline_partition_count(),
        2
    );
}

// ---- property tests ----

/// Case counts kept small so the suite stays fast; PROPTEST_CASES raises them, and a
/// failing case is saved under proptest-regressions/ and replayed first on the next run.
fn proptest_config(default_cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config
}

/// One step of a random but valid history; [`realize`] turns it into records that fit the
/// image at that point (or nothing, when the step does not apply, e.g. no broker to fence).
#[derive(Debug, Clone)]
enum Op {
    Register {
        broker: i32,
        seed: u64,
    },
    Unregister {
        pick: usize,
    },
    ChangeBroker {
        pick: usize,
        fenced: i8,
        shutdown: i8,
        seed: u64,
    },
    CreateTopic {
        name: u8,
        partitions: u8,
        seed: u64,
    },
    DeleteTopic {
        pick: usize,
    },
    PutPartition {
        pick: usize,
        partition: u8,
        seed: u64,
    },
    ChangePartition {
        pick: usize,
        partition: usize,
        seed: u64,
    },
    Config {
        topic: bool,
        pick: usize,
        key: u8,
        value: Option<u8>,
    },
    Feature {
        name: u8,
        level: i16,
    },
    ProducerIds {
        step: u16,
    },
    Idle,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0i32..6, any::<u64>()).prop_map(|(broker, seed)| Op::Register { broker, seed }),
        1 => any::<usize>().prop_map(|pick| Op::Unregister { pick }),
        3 => (any::<usize>(), -1i8..=1, 0i8..=1, any::<u64>())
            .prop_map(|(pick, fenced, shutdown, seed)| Op::ChangeBroker { pick, fenced, shutdown, seed }),
        2 => (0u8..6, 0u8..5, any::<u64>()).prop_map(|(name, partitions, seed)| Op::CreateTopic { name, partitions, seed }),
        1 => any::<usize>().prop_map(|pick| Op::DeleteTopic { pick }),
        1 => (any::<usize>(), 0u8..6, any::<u64>()).prop_map(|(pick, partition, seed)| Op::PutPartition { pick, partition, seed }),
        6 => (any::<usize>(), any::<usize>(), any::<u64>())
            .prop_map(|(pick, partition, seed)| Op::ChangePartition { pick, partition, seed }),
        2 => (any::<bool>(), any::<usize>(), 0u8..4, proptest::option::of(0u8..4))
            .prop_map(|(topic, pick, key, value)| Op::Config { topic, pick, key, value }),
        1 => (0u8..3, 0i16..4).prop_map(|(name, level)| Op::Feature { name, level }),
        1 => (1u16..1000).prop_map(|step| Op::ProducerIds { step }),
        1 => Just(Op::Idle),
    ]
}

struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }
    fn below(&mut self, n: usize) -> usize {
        (self.0.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn replicas(&mut self) -> Vec<i32> {
        let rf = 1 + self.below(3);
        let mut out = Vec::new();
        while out.len() < rf {
            let b = self.below(6) as i32;
            if !out.contains(&b) {
                out.push(b);
            }
        }
        out
    }
    fn subset(&mut self, of: &[i32]) -> Vec<i32> {
        of.iter().copied().filter(|_| self.chance(2)).collect()
    }
    fn pick_or_none(&mut self, of: &[i32]) -> i32 {
        if of.is_empty() || self.chance(4) {
            NO_LEADER
        } else {
            of[self.below(of.len())]
        }
    }
    fn uuids(&mut self, n: usize) -> Vec<Uuid> {
        (0..n).map(|_| self.0.uuid()).collect()
    }
}

fn random_partition(rng: &mut Rng, topic_id: Uuid, partition_id: i32) -> PartitionRecord {
    let replicas = rng.replicas();
    let isr = rng.subset(&replicas);
    PartitionRecord {
        partition_id,
        topic_id,
        leader: rng.pick_or_none(&replicas),
        removing_replicas: if rng.chance(4) {
            rng.subset(&replicas)
        } else {
            vec![]
        },
        adding_replicas: if rng.chance(4) {
            rng.subset(&replicas)
        } else {
            vec![]
        },
        leader_recovery_state: rng.below(2) as i8,
        leader_epoch: rng.below(50) as i32,
        partition_epoch: rng.below(50) as i32,
        directories: if rng.chance(3) {
            rng.uuids(replicas.len())
        } else {
            vec![]
        },
        eligible_leader_replicas: rng.chance(3).then(|| rng.subset(&replicas)),
        last_known_elr: rng.chance(3).then(|| rng.subset(&replicas)),
        isr,
        replicas,
    }
}

fn random_change(rng: &mut Rng, topic_id: Uuid, current: &Partition) -> PartitionChangeRecord {
    let mut c = PartitionChangeRecord {
        topic_id,
        partition_id: current.id(),
        ..Default::default()
    };
    if rng.chance(4) {
        c.replicas = Some(rng.replicas());
    }
    let replicas = c
        .replicas
        .clone()
        .unwrap_or_else(|| current.replicas().to_vec());
    if rng.chance(2) {
        c.isr = Some(rng.subset(&replicas));
    } else if c.replicas.is_some() {
        c.isr = Some(
            current
                .isr()
                .iter()
                .copied()
                .filter(|r| replicas.contains(r))
                .collect(),
        );
    }
    let leader_must_move = current.leader() != NO_LEADER && !replicas.contains(&current.leader());
    if leader_must_move || rng.chance(3) {
        c.leader = rng.pick_or_none(&replicas);
    }
    c.leader_recovery_state = rng.below(3) as i8 - 1;
    if rng.chance(5) {
        c.removing_replicas = Some(rng.subset(&replicas));
        c.adding_replicas = Some(rng.subset(&replicas));
    }
    if rng.chance(4) {
        c.eligible_leader_replicas = Some(rng.subset(&replicas));
    }
    if rng.chance(4) {
        c.last_known_elr = Some(rng.subset(&replicas));
    }
    match rng.below(6) {
        0 => c.directories = Some(rng.uuids(replicas.len())),
        1 => c.directories = Some(vec![]),
        _ => {}
    }
    c
}

fn nth<T>(items: impl ExactSizeIterator<Item = T>, pick: usize) -> Option<T> {
    let n = items.len();
    let mut items = items;
    if n == 0 {
        None
    } else {
        items.nth(pick % n)
    }
}

fn realize(op: &Op, image: &MetadataImage, epoch: &mut i64) -> Vec<MetadataRecord> {
    let topics: Vec<&Topic> = image.topics().collect();
    match *op {
        Op::Register { broker, seed } => {
            let mut rng = Rng::new(seed);
            *epoch += 1;
            let mut r = register(broker, *epoch);
            r.incarnation_id = rng.0.uuid();
            r.fenced = rng.chance(2);
            r.in_controlled_shutdown = rng.chance(4);
            r.is_migrating_zk_broker = rng.chance(8);
            r.rack = (!rng.chance(3)).then(|| format!("rack-{}", rng.below(3)));
            let dirs = rng.below(3);
            r.log_dirs = rng.uuids(dirs);
            vec![MetadataRecord::RegisterBroker(r)]
        }
        Op::Unregister { pick } => nth(image.brokers(), pick)
            .map(|b| {
                MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
                    broker_id: b.broker_id,
                    broker_epoch: b.broker_epoch,
                })
            })
            .into_iter()
            .collect(),
        Op::ChangeBroker {
            pick,
            fenced,
            shutdown,
            seed,
        } => nth(image.brokers(), pick)
            .map(|b| {
                let mut rng = Rng::new(seed);
                let dirs = if rng.chance(3) { rng.below(3) } else { 0 };
                MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                    broker_id: b.broker_id,
                    broker_epoch: b.broker_epoch,
                    fenced,
                    in_controlled_shutdown: shutdown,
                    log_dirs: rng.uuids(dirs),
                })
            })
            .into_iter()
            .collect(),
        Op::CreateTopic {
            name,
            partitions,
            seed,
        } => {
            let name = format!("t{name}");
            let topic_id = Uuid::from_u64_pair(seed, 1 + u64::from(partitions));
            if image.topic_by_name(&name).is_some() || image.topic(&topic_id).is_some() {
                return vec![];
            }
            let mut rng = Rng::new(seed);
            let mut out = vec![topic(&name, topic_id)];
            out.extend(
                (0..i32::from(partitions))
                    .map(|p| MetadataRecord::Partition(random_partition(&mut rng, topic_id, p))),
            );
            out
        }
        Op::DeleteTopic { pick } => nth(topics.iter(), pick)
            .map(|t| MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id: t.id() }))
            .into_iter()
            .collect(),
        Op::PutPartition {
            pick,
            partition,
            seed,
        } => nth(topics.iter(), pick)
            .map(|t| {
                MetadataRecord::Partition(random_partition(
                    &mut Rng::new(seed),
                    t.id(),
                    i32::from(partition),
                ))
            })
            .into_iter()
            .collect(),
        Op::ChangePartition {
            pick,
            partition,
            seed,
        } => nth(topics.iter(), pick)
            .and_then(|t| nth(t.partitions().iter(), partition).map(|p| (t, p)))
            .map(|(t, p)| {
                MetadataRecord::PartitionChange(random_change(&mut Rng::new(seed), t.id(), p))
            })
            .into_iter()
            .collect(),
        Op::Config {
            topic,
            pick,
            key,
            value,
        } => {
            let (resource_type, name) = if topic {
                match nth(topics.iter(), pick) {
                    Some(t) => (RESOURCE_TOPIC, t.name().to_string()),
                    None => return vec![],
                }
            } else {
                let brokers = ["", "0", "1", "2"];
                (RESOURCE_BROKER, brokers[pick % brokers.len()].to_string())
            };
            let value = value.map(|v| format!("v{v}"));
            vec![config(
                resource_type,
                &name,
                &format!("k{key}"),
                value.as_deref(),
            )]
        }
        Op::Feature { name, level } => {
            let (name, level) = match name {
                0 => (METADATA_VERSION, 14 + level),
                1 => ("kraft.version", level),
                _ => ("group.version", level),
            };
            vec![MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: name.into(),
                feature_level: level,
            })]
        }
        Op::ProducerIds { step } => {
            let next = image.producer_ids().map_or(0, |p| p.next_producer_id) + i64::from(step);
            vec![MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: 0,
                broker_epoch: *epoch,
                next_producer_id: next,
            })]
        }
        Op::Idle => vec![MetadataRecord::NoOp],
    }
}

/// Mostly the ids of the base image's topics, so that many partition records are valid.
fn uuid_strategy() -> impl Strategy<Value = Uuid> {
    prop_oneof![
        1 => Just(Uuid::nil()),
        6 => (1u128..3).prop_map(Uuid::from_u128),
        1 => (3u128..5).prop_map(Uuid::from_u128),
    ]
}

/// Mostly the base image's brokers, sometimes an id that is not a broker id.
fn broker_id() -> impl Strategy<Value = i32> {
    prop_oneof![8 => 0i32..3, 1 => 3i32..5, 1 => -3i32..0]
}

fn ids() -> impl Strategy<Value = Vec<i32>> {
    proptest::collection::vec(broker_id(), 0..4)
}

/// (replicas, isr, leader): usually consistent, so that many records are accepted.
fn replica_set() -> impl Strategy<Value = (Vec<i32>, Vec<i32>, i32)> {
    let consistent = (
        Just(vec![0, 1, 2]).prop_shuffle(),
        1usize..=3,
        0usize..=3,
        any::<bool>(),
    )
        .prop_map(|(all, n, isr_len, led)| {
            let replicas = all[..n].to_vec();
            let isr = replicas[..isr_len.min(n)].to_vec();
            let leader = if led {
                isr.first().copied().unwrap_or(NO_LEADER)
            } else {
                NO_LEADER
            };
            (replicas, isr, leader)
        });
    let arbitrary = (ids(), ids(), prop_oneof![broker_id(), -4i32..-1]);
    prop_oneof![3 => consistent, 1 => arbitrary]
}

fn opt_ids() -> impl Strategy<Value = Option<Vec<i32>>> {
    proptest::option::of(ids())
}

fn uuids() -> impl Strategy<Value = Vec<Uuid>> {
    proptest::collection::vec(uuid_strategy(), 0..4)
}

/// Any record, valid or not, drawn from small domains so that some of them hit live
/// brokers, topics and partitions.
fn any_record() -> impl Strategy<Value = MetadataRecord> {
    let names = || {
        prop_oneof![
            Just(String::new()),
            Just("a".to_string()),
            Just("b".to_string()),
            Just("c".to_string())
        ]
    };
    let register = (
        -1i32..4,
        0i64..3,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        uuids(),
    )
        .prop_map(
            |(broker_id, broker_epoch, fenced, in_controlled_shutdown, zk, log_dirs)| {
                MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                    broker_id,
                    broker_epoch,
                    fenced,
                    in_controlled_shutdown,
                    is_migrating_zk_broker: zk,
                    log_dirs,
                    ..Default::default()
                })
            },
        );
    let unregister = (-1i32..4, 0i64..3).prop_map(|(broker_id, broker_epoch)| {
        MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
            broker_id,
            broker_epoch,
        })
    });
    let topic = (names(), uuid_strategy()).prop_map(|(name, topic_id)| topic(&name, topic_id));
    let partition = (
        (-1i32..4, uuid_strategy(), replica_set()),
        (ids(), ids(), prop_oneof![4 => 0i8..2, 1 => -2i8..3]),
        (
            -1i32..3,
            prop_oneof![Just(i32::MAX), -1i32..3],
            prop_oneof![3 => Just(vec![]), 1 => uuids()],
            opt_ids(),
            opt_ids(),
        ),
    )
        .prop_map(
            |(
                (partition_id, topic_id, (replicas, isr, leader)),
                (removing_replicas, adding_replicas, leader_recovery_state),
                (
                    leader_epoch,
                    partition_epoch,
                    directories,
                    eligible_leader_replicas,
                    last_known_elr,
                ),
            )| {
                MetadataRecord::Partition(PartitionRecord {
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
                })
            },
        );
    let change = (
        (
            -1i32..4,
            uuid_strategy(),
            replica_set(),
            (0u8..4, any::<bool>(), any::<bool>()),
        ),
        (
            opt_ids(),
            opt_ids(),
            prop_oneof![4 => -1i8..2, 1 => -3i8..3],
        ),
        (opt_ids(), opt_ids(), proptest::option::of(uuids())),
    )
        .prop_map(
            |(
                (
                    partition_id,
                    topic_id,
                    (new_replicas, new_isr, new_leader),
                    (set_replicas, set_isr, set_leader),
                ),
                (removing_replicas, adding_replicas, leader_recovery_state),
                (eligible_leader_replicas, last_known_elr, directories),
            )| {
                let replicas = (set_replicas == 0).then_some(new_replicas);
                let isr = set_isr.then_some(new_isr);
                let leader = if set_leader {
                    new_leader
                } else {
                    NO_LEADER_CHANGE
                };
                MetadataRecord::PartitionChange(PartitionChangeRecord {
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
                })
            },
        );
    let config = (
        prop_oneof![
            Just(0i8),
            Just(RESOURCE_TOPIC),
            Just(RESOURCE_BROKER),
            Just(8)
        ],
        prop_oneof![
            names(),
            Just("0".to_string()),
            Just("01".to_string()),
            Just("-1".to_string())
        ],
        prop_oneof![
            Just(String::new()),
            Just("k1".to_string()),
            Just("k2".to_string())
        ],
        proptest::option::of(Just("v".to_string())),
    )
        .prop_map(|(resource_type, resource_name, name, value)| {
            MetadataRecord::Config(ConfigRecord {
                resource_type,
                resource_name,
                name,
                value,
            })
        });
    let remove = uuid_strategy()
        .prop_map(|topic_id| MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id }));
    let feature = (
        prop_oneof![
            Just(String::new()),
            Just(METADATA_VERSION.to_string()),
            Just("f".to_string())
        ],
        -2i16..4,
    )
        .prop_map(|(name, feature_level)| {
            MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name,
                feature_level,
            })
        });
    let producer_ids =
        (-1i32..3, -1i64..3, -3i64..6).prop_map(|(broker_id, broker_epoch, next_producer_id)| {
            MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id,
                broker_epoch,
                next_producer_id,
            })
        });
    let broker_change = (
        broker_id(),
        0i64..3,
        prop_oneof![4 => -1i8..2, 1 => -3i8..3],
        prop_oneof![4 => 0i8..2, 1 => -2i8..3],
        uuids(),
    )
        .prop_map(
            |(broker_id, broker_epoch, fenced, in_controlled_shutdown, log_dirs)| {
                MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                    broker_id,
                    broker_epoch,
                    fenced,
                    in_controlled_shutdown,
                    log_dirs,
                })
            },
        );
    prop_oneof![
        1 => register,
        1 => unregister,
        1 => topic,
        6 => partition,
        8 => change,
        1 => config,
        1 => remove,
        1 => feature,
        1 => producer_ids,
        1 => broker_change,
        1 => Just(MetadataRecord::NoOp),
    ]
}

/// A base for the random-record test whose ids overlap [`any_record`]'s domains.
fn random_record_base() -> MetadataImage {
    let mut image = MetadataImage::bootstrap();
    let mut records = vec![
        MetadataRecord::RegisterBroker(register(0, 0)),
        MetadataRecord::RegisterBroker(register(1, 1)),
        MetadataRecord::RegisterBroker(register(2, 2)),
        topic("a", id(1)),
        topic("b", id(2)),
        config(RESOURCE_TOPIC, "a", "k1", Some("v")),
    ];
    for t in [1, 2] {
        for p in 0..3 {
            records.push(MetadataRecord::Partition(partition(id(t), p, &[0, 1, 2])));
        }
    }
    for r in &records {
        image.apply(r).unwrap();
    }
    image
}

proptest! {
    #![proptest_config(proptest_config(256))]

    #[test]
    fn valid_histories_round_trip_through_records(ops in proptest::collection::vec(op(), 0..80)) {
        let mut image = MetadataImage::bootstrap();
        let mut epoch = 0i64;
        for op in &ops {
            for record in realize(op, &image, &mut epoch) {
                if let Err(e) = image.apply(&record) {
                    return Err(TestCaseError::fail(format!("valid record {record:?} from {op:?} rejected: {e}")));
                }
            }
        }
        let records: Vec<VersionedRecord> = image.records().collect();
        prop_assert_eq!(records.len(), image.record_count());
        let mut replayed = MetadataImage::default();
        for r in &records {
            if let Err(e) = replayed.apply(&r.record) {
                return Err(TestCaseError::fail(format!("snapshot record {r:?} rejected: {e}")));
            }
        }
        prop_assert_eq!(&replayed, &image);
        prop_assert!(replayed.records().eq(records));
    }

    /// Whole images through a real checkpoint file: write (fsync, rename), read back with
    /// every check, and the image loaded equals the image written.
    #[test]
    fn valid_histories_round_trip_through_a_checkpoint_file(ops in proptest::collection::vec(op(), 0..60)) {
        let mut image = MetadataImage::bootstrap();
        let mut epoch = 0i64;
        for op in &ops {
            for record in realize(op, &image, &mut epoch) {
                prop_assert!(image.apply(&record).is_ok());
            }
        }
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let id = SnapshotId { end_offset: image.record_count() as i64 + 1, epoch: 3 };
        let meta = CheckpointMeta { last_contained_log_timestamp: 42, ..Default::default() };
        let (path, written) = write_checkpoint(dir.path(), id, &meta, image.records())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let name = id.file_name();
        prop_assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(name.as_str()));
        let (loaded, read) = load_checkpoint_file(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&loaded, &image);
        prop_assert_eq!(read.records, written.records);
        prop_assert_eq!(read.bytes, written.bytes);
        prop_assert_eq!(read.meta.last_contained_log_timestamp, 42);
    }

    #[test]
    fn arbitrary_records_never_panic_and_errors_leave_the_image_unchanged(
        records in proptest::collection::vec(any_record(), 1..60)
    ) {
        let mut image = random_record_base();
        for record in &records {
            let before = image.clone();
            if let Err(e) = image.apply(record) {
                prop_assert_eq!(&image, &before, "{:?} was rejected ({}) but changed the image", record, e);
                prop_assert!(!e.to_string().is_empty());
            }
        }
        // Whatever mix was accepted still writes a snapshot that replays to the same image.
        let replayed = replay(image.records());
        prop_assert_eq!(replayed, image);
    }
}

// ---- scale ----

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
#[ignore = "scale measurement; run with --ignored --nocapture in release"]
fn million_partition_image_timings() {
    let mib = |kib: Option<u64>| kib.map_or(f64::NAN, |k| k as f64 / 1024.0);
    let rss0 = proc_status_kib("VmRSS:");

    let t = Instant::now();
    let image = MetadataImage::synthetic(10_000, 100, 100, 3);
    let build = t.elapsed();
    let rss_image = proc_status_kib("VmRSS:");
    assert_eq!(image.partition_count(), 1_000_000);

    let t = Instant::now();
    let mut n = 0usize;
    for r in image.records() {
        black_box(&r);
        n += 1;
    }
    let write = t.elapsed();
    assert_eq!(n, image.record_count());

    let records: Vec<VersionedRecord> = image.records().collect();
    let rss_records = proc_status_kib("VmRSS:");
    let t = Instant::now();
    let mut replayed = MetadataImage::default();
    for r in &records {
        replayed.apply(&r.record).unwrap();
    }
    let replay_time = t.elapsed();
    let rss_replayed = proc_status_kib("VmRSS:");
    assert_eq!(replayed, image);

    println!("synthetic(10000, 100, 100, 3): {build:?} ({} records)", n);
    println!("records() over it:            {write:?}");
    println!("replay into empty image:      {replay_time:?}");
    println!(
        "memory: synthetic image ~{:.0} MiB RSS, replayed image ~{:.0} MiB RSS, VmHWM {:.0} MiB \
         (includes {:.0} MiB of materialized records)",
        mib(rss_image.zip(rss0).map(|(a, b)| a - b)),
        mib(rss_replayed.zip(rss_records).map(|(a, b)| a - b)),
        mib(proc_status_kib("VmHWM:")),
        mib(rss_records.zip(rss_image).map(|(a, b)| a - b)),
    );
}
