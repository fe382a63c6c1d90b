//! The controller's rules, each checked in process against a view over a built image and
//! named after the Kafka rule it keeps: broker registration and sessions, fencing, topic
//! names and placement, AlterPartition validation, elections. (Placement's racks are in
//! `placement.rs`.)

use super::testkit::{caught_up, reg, view};
use super::{brokers, partitions, topics};
use super::{ControllerError, View};
use crate::contract::brokers::Heartbeat;
use crate::contract::partitions::{
    AlterPartition, AlterPartitionData, AlterTopic, ElectionRequest, IsrMember, TopicPartition,
};
use crate::contract::topics::CreateTopic;
use crate::contract::ErrorCode;

/// The code a refusal carries (panics on anything else).
fn code_of<T: std::fmt::Debug>(r: Result<T, ControllerError>) -> ErrorCode {
    match r {
        Err(ControllerError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn heartbeat(epoch: i64, offset: i64) -> Heartbeat {
    Heartbeat {
        broker_epoch: epoch,
        current_metadata_offset: offset,
        want_fence: false,
        want_shutdown: false,
    }
}

/// Brokers 1..=n registered in racks a, b, c, ... and caught up; their epochs.
fn brokers(v: &mut View, n: i32) -> Vec<i64> {
    (1..=n)
        .map(|id| {
            let rack = ((b'a' + (id - 1) as u8) as char).to_string();
            let e = brokers::register(v, id, &reg(&rack)).unwrap();
            caught_up(v, id, e);
            e
        })
        .collect()
}

/// Creates a topic whose partitions are placed on `replicas` (preferred leader first).
fn topic(
    v: &mut View,
    name: &str,
    replicas: Vec<Vec<i32>>,
) -> Result<crate::contract::topics::CreatedTopic, ControllerError> {
    topics::create(
        v,
        &CreateTopic {
            name: name.into(),
            assignments: Some(replicas),
            ..Default::default()
        },
    )
}

// ---------------------------------------------------------------------------------------
// Registration and sessions (Kafka's ClusterControlManager / BrokerHeartbeatManager).

#[test]
fn a_registration_naming_another_cluster_is_inconsistent_cluster_id() {
    let mut v = view();
    let mut r = reg("a");
    r.cluster_id = "another".into();
    assert_eq!(
        code_of(brokers::register(&mut v, 1, &r)),
        ErrorCode::InconsistentClusterId
    );
    assert!(v.image().broker(1).is_none(), "nothing was written");
}

#[test]
fn a_new_incarnation_registers_fenced_and_its_epoch_is_its_records_offset() {
    let mut v = view();
    let at = v.next_offset() as i64;
    let epoch = brokers::register(&mut v, 1, &reg("a")).unwrap();
    assert_eq!(
        epoch, at,
        "broker epoch = offset of its RegisterBrokerRecord"
    );
    let b = v.image().broker(1).unwrap();
    assert!(b.fenced, "a new registration starts fenced");
    assert_eq!(b.broker_epoch, epoch);
}

#[test]
fn the_same_incarnation_registering_again_keeps_its_epoch_and_writes_nothing() {
    let mut v = view();
    let r = reg("a");
    let epoch = brokers::register(&mut v, 1, &r).unwrap();
    let next = v.next_offset();
    assert_eq!(brokers::register(&mut v, 1, &r).unwrap(), epoch);
    assert_eq!(
        v.next_offset(),
        next,
        "a retried registration is not a new record"
    );
}

#[test]
fn another_incarnation_while_the_live_one_holds_its_session_is_duplicate_broker_registration() {
    let mut v = view();
    brokers(&mut v, 1);
    assert_eq!(
        code_of(brokers::register(&mut v, 1, &reg("a"))),
        ErrorCode::DuplicateBrokerRegistration
    );
}

#[test]
fn another_incarnation_after_the_old_session_expired_gets_a_new_epoch() {
    let mut v = view();
    let old = brokers(&mut v, 1)[0];
    brokers::fence_expired(&mut v, &[1]).unwrap();
    let new = brokers::register(&mut v, 1, &reg("a")).unwrap();
    assert!(new > old, "new epoch {new} after {old}");
    assert!(v.image().broker(1).unwrap().fenced);
}

#[test]
fn a_heartbeat_with_another_epoch_is_stale_broker_epoch_and_an_unknown_id_is_not_registered() {
    let mut v = view();
    let epoch = brokers(&mut v, 1)[0];
    assert_eq!(
        code_of(brokers::heartbeat(
            &mut v,
            1,
            &heartbeat(epoch - 1, i64::MAX)
        )),
        ErrorCode::StaleBrokerEpoch
    );
    assert_eq!(
        code_of(brokers::heartbeat(&mut v, 2, &heartbeat(epoch, i64::MAX))),
        ErrorCode::BrokerIdNotRegistered
    );
}

#[test]
fn a_fenced_broker_is_unfenced_only_once_it_has_caught_up_to_its_registration() {
    let mut v = view();
    let epoch = brokers::register(&mut v, 1, &reg("a")).unwrap();
    let behind = brokers::heartbeat(&mut v, 1, &heartbeat(epoch, epoch - 1)).unwrap();
    assert!(behind.is_fenced && !behind.is_caught_up);
    assert!(v.image().broker(1).unwrap().fenced);
    let there = brokers::heartbeat(&mut v, 1, &heartbeat(epoch, epoch)).unwrap();
    assert!(!there.is_fenced && there.is_caught_up);
    assert!(!v.image().broker(1).unwrap().fenced);
}

#[test]
fn an_expired_session_fences_the_broker_moves_its_leaderships_and_keeps_the_last_isr_place() {
    let mut v = view();
    brokers(&mut v, 3);
    topic(&mut v, "t", vec![vec![1, 2, 3]]).unwrap();
    topic(&mut v, "solo", vec![vec![1]]).unwrap();
    brokers::fence_expired(&mut v, &[1]).unwrap();
    assert!(v.image().broker(1).unwrap().fenced);
    let p0 = &v.image().topic_by_name("t").unwrap().partitions()[0];
    let p1 = &v.image().topic_by_name("solo").unwrap().partitions()[0];
    assert_eq!(p0.leader(), 2, "leadership moves to the next ISR member");
    assert!(!p0.isr().contains(&1), "a fenced broker leaves the ISR");
    // KIP-841: the last ISR member stays in the ISR; the partition goes offline.
    assert_eq!(p1.isr(), &[1][..]);
    assert!(!p1.has_leader());
}

// ---------------------------------------------------------------------------------------
// Topics (Kafka's ReplicationControlManager and Topic.validate).

#[test]
fn topic_names_follow_kafkas_rules() {
    for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250)] {
        assert_eq!(
            code_of(topics::check_name(bad)),
            ErrorCode::InvalidTopicException,
            "{bad:?}"
        );
    }
    for good in ["a", "a.b_c-D9", &"x".repeat(249)] {
        topics::check_name(good).unwrap();
    }
}

#[test]
fn names_that_differ_only_by_dot_and_underscore_collide() {
    let mut v = view();
    brokers(&mut v, 1);
    topic(&mut v, "a.b", vec![vec![1]]).unwrap();
    assert_eq!(
        code_of(topic(&mut v, "a_b", vec![vec![1]])),
        ErrorCode::InvalidTopicException
    );
}

#[test]
fn creating_an_existing_topic_is_topic_already_exists() {
    let mut v = view();
    brokers(&mut v, 1);
    topic(&mut v, "t", vec![vec![1]]).unwrap();
    assert_eq!(
        code_of(topic(&mut v, "t", vec![vec![1]])),
        ErrorCode::TopicAlreadyExists
    );
}

#[test]
fn a_replication_factor_above_the_unfenced_brokers_is_invalid_replication_factor() {
    let mut v = view();
    brokers(&mut v, 2);
    let next = v.next_offset();
    let r = topics::create(
        &mut v,
        &CreateTopic {
            name: "t".into(),
            partitions: Some(1),
            replication_factor: Some(3),
            ..Default::default()
        },
    );
    assert_eq!(code_of(r), ErrorCode::InvalidReplicationFactor);
    assert_eq!(v.next_offset(), next, "nothing was written");
}

// ---------------------------------------------------------------------------------------
// AlterPartition (KIP-497 validation order) and elections.

fn alter_one(v: &View, epochs: &[i64], leader_epoch: i32, partition_epoch: i32) -> AlterPartition {
    let t = v.image().topic_by_name("t").unwrap();
    AlterPartition {
        broker_id: 1,
        broker_epoch: epochs[0],
        topics: vec![AlterTopic {
            topic_id: crate::record::uuid_fmt::kafka_uuid(&t.id()),
            partitions: vec![AlterPartitionData {
                partition: 0,
                leader_epoch,
                partition_epoch,
                new_isr: vec![1, 2],
                new_isr_with_epochs: None,
                leader_recovery_state: None,
            }],
        }],
    }
}

#[test]
fn alter_partition_with_an_old_leader_epoch_is_fenced_leader_epoch_and_changes_nothing() {
    let mut v = view();
    let epochs = brokers(&mut v, 3);
    topic(&mut v, "t", vec![vec![1, 2, 3]]).unwrap();
    let p = v.image().topic_by_name("t").unwrap().partitions()[0].clone();
    let req = alter_one(&v, &epochs, p.leader_epoch() - 1, p.partition_epoch());
    let answer = partitions::alter(&mut v, &req).unwrap();
    let r = &answer.topics[0].partitions[0];
    assert_eq!(
        r.error.as_deref(),
        Some(ErrorCode::FencedLeaderEpoch.name())
    );
    let after = &v.image().topic_by_name("t").unwrap().partitions()[0];
    assert_eq!(after.isr(), p.isr(), "the ISR is unchanged");
}

#[test]
fn alter_partition_with_an_old_partition_epoch_is_invalid_update_version() {
    let mut v = view();
    let epochs = brokers(&mut v, 3);
    topic(&mut v, "t", vec![vec![1, 2, 3]]).unwrap();
    let p = v.image().topic_by_name("t").unwrap().partitions()[0].clone();
    let stale = alter_one(&v, &epochs, p.leader_epoch(), p.partition_epoch() - 1);
    let r = &partitions::alter(&mut v, &stale).unwrap().topics[0].partitions[0];
    assert_eq!(
        r.error.as_deref(),
        Some(ErrorCode::InvalidUpdateVersion.name())
    );
    // The current epochs shrink the ISR, and the partition epoch moves on.
    let ok = alter_one(&v, &epochs, p.leader_epoch(), p.partition_epoch());
    let r = &partitions::alter(&mut v, &ok).unwrap().topics[0].partitions[0];
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.isr.as_deref(), Some(&[1, 2][..]));
    assert!(r.partition_epoch > Some(p.partition_epoch()));
}

#[test]
fn a_preferred_election_where_the_preferred_replica_leads_is_election_not_needed() {
    let mut v = view();
    brokers(&mut v, 2);
    topic(&mut v, "t", vec![vec![1, 2]]).unwrap();
    let req = ElectionRequest {
        kind: "preferred".into(),
        partitions: Some(vec![TopicPartition {
            topic: "t".into(),
            partition: 0,
        }]),
    };
    let r = partitions::elect(&mut v, &req).unwrap();
    assert_eq!(
        r[0].error.as_deref(),
        Some(ErrorCode::ElectionNotNeeded.name())
    );
    let unknown = ElectionRequest {
        kind: "sideways".into(),
        partitions: None,
    };
    assert_eq!(
        code_of(partitions::elect(&mut v, &unknown)),
        ErrorCode::InvalidRequest
    );
}

#[test]
fn kip_903_an_isr_member_known_by_a_stale_broker_epoch_is_an_ineligible_replica() {
    let mut v = view();
    let mut epochs = std::collections::BTreeMap::new();
    for (id, rack) in [(1, "a"), (2, "b"), (3, "c")] {
        let e = brokers::register(&mut v, id, &reg(rack)).unwrap();
        caught_up(&mut v, id, e);
        epochs.insert(id, e);
    }
    topics::create(
        &mut v,
        &CreateTopic {
            name: "t".into(),
            partitions: Some(1),
            replication_factor: Some(3),
            assignments: Some(vec![vec![1, 2, 3]]),
            ..Default::default()
        },
    )
    .unwrap();
    // Broker 3 dies and comes back as a new incarnation, with a new epoch.
    brokers::fence_expired(&mut v, &[3]).unwrap();
    let new3 = brokers::register(&mut v, 3, &reg("c")).unwrap();
    caught_up(&mut v, 3, new3);
    assert_ne!(new3, epochs[&3]);
    let t = v.image().topic_by_name("t").unwrap();
    let p = t.partitions()[0].clone();
    let topic_id = crate::record::uuid_fmt::kafka_uuid(&t.id());
    let ask = |members: Vec<(i32, i64)>| AlterPartition {
        broker_id: 1,
        broker_epoch: epochs[&1],
        topics: vec![AlterTopic {
            topic_id: topic_id.clone(),
            partitions: vec![AlterPartitionData {
                partition: 0,
                leader_epoch: p.leader_epoch(),
                partition_epoch: p.partition_epoch(),
                new_isr: Vec::new(),
                new_isr_with_epochs: Some(
                    members
                        .into_iter()
                        .map(|(broker_id, broker_epoch)| IsrMember {
                            broker_id,
                            broker_epoch,
                        })
                        .collect(),
                ),
                leader_recovery_state: None,
            }],
        }],
    };
    let stale = partitions::alter(&mut v, &ask(vec![(1, epochs[&1]), (3, epochs[&3])])).unwrap();
    let r = &stale.topics[0].partitions[0];
    assert_eq!(r.error.as_deref(), Some("INELIGIBLE_REPLICA"), "{r:?}");
    assert_eq!(
        v.image().topic_by_name("t").unwrap().partitions()[0],
        p,
        "a refused change leaves the partition as it was"
    );
    let fresh = partitions::alter(&mut v, &ask(vec![(1, epochs[&1]), (3, new3)])).unwrap();
    let r = &fresh.topics[0].partitions[0];
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.isr, Some(vec![1, 3]));
}
