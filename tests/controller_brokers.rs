//! The active controller as brokers use it, on a real three-node quorum: registration and
//! fencing until caught up, rack-aware topic placement, fencing a silent broker, the
//! AlterPartition checks, offline partitions and unclean election, controlled shutdown.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kraftd::cli::fleet::{registration, Fleet};
use kraftd::client::{
    AlterPartition, AlterPartitionData, AlterPartitionResult, AlterTopic, Client, ConfigKind,
    ConfigPatch, CreateTopic, ElectionRequest, Heartbeat, PartitionView, TopicPartition,
};
use uuid::Uuid;

const RACKS: [(i32, &str); 5] = [
    (1, "rack-a"),
    (2, "rack-a"),
    (3, "rack-b"),
    (4, "rack-b"),
    (5, "rack-c"),
];

fn rack_of(id: i32) -> Option<String> {
    RACKS
        .iter()
        .find(|(b, _)| *b == id)
        .map(|(_, r)| r.to_string())
}

fn hb(epoch: i64, offset: i64) -> Heartbeat {
    Heartbeat {
        broker_epoch: epoch,
        current_metadata_offset: offset,
        want_fence: false,
        want_shutdown: false,
    }
}

fn code(r: Result<impl std::fmt::Debug, kraftd::client::ClientError>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().unwrap_or("(no code)").to_string(),
    }
}

async fn topic(c: &Client, name: &str) -> Vec<PartitionView> {
    c.describe_topic(name).await.unwrap().partitions
}

async fn create(c: &Client, name: &str, partitions: i32, rf: i32) -> Vec<PartitionView> {
    c.create_topic(&CreateTopic {
        name: name.into(),
        partitions: Some(partitions),
        replication_factor: Some(rf),
        ..Default::default()
    })
    .await
    .unwrap()
    .partitions
}

async fn create_assigned(c: &Client, name: &str, assignments: Vec<Vec<i32>>) -> Vec<PartitionView> {
    c.create_topic(&CreateTopic {
        name: name.into(),
        assignments: Some(assignments),
        ..Default::default()
    })
    .await
    .unwrap()
    .partitions
}

async fn broker_states(c: &Client) -> BTreeMap<i32, String> {
    c.brokers()
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.id, b.state))
        .collect()
}

async fn wait_state(c: &Client, id: i32, state: &str, within: Duration) -> Duration {
    let started = Instant::now();
    eventually(&format!("broker {id} is {state}"), within, || async {
        let s = broker_states(c).await;
        if s.get(&id).map(String::as_str) == Some(state) {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    started.elapsed()
}

fn alter(
    broker: i32,
    epoch: i64,
    topic_id: &str,
    p: &PartitionView,
    isr: Vec<i32>,
) -> AlterPartition {
    AlterPartition {
        broker_id: broker,
        broker_epoch: epoch,
        topics: vec![AlterTopic {
            topic_id: topic_id.to_string(),
            partitions: vec![AlterPartitionData {
                partition: p.partition,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: isr,
                new_isr_with_epochs: None,
                leader_recovery_state: None,
            }],
        }],
    }
}

async fn alter_one(c: &Client, req: &AlterPartition) -> AlterPartitionResult {
    let a = c.alter_partition(req).await.unwrap();
    a.topics[0].partitions[0].clone()
}

#[test]
fn five_brokers_in_three_racks_are_fenced_until_caught_up_and_a_topic_is_placed_by_rack() {
    run("registration_and_placement", async {
        let mut s = Scenario::start(3, &[]).await;
        let leader = s.leader().await;
        let follower = s.q.ids().into_iter().find(|&i| i != leader).unwrap();
        let (c, f) = (s.client(leader), s.client(follower));
        let cluster = s.q.cluster_id().to_string();

        eprintln!(
            "step 1: five brokers register (through a follower: forwarded); each starts fenced"
        );
        let mut epochs = BTreeMap::new();
        let mut incarnations = BTreeMap::new();
        for (id, rack) in RACKS {
            let inc = Uuid::new_v4();
            let epoch = f
                .register_broker(id, &registration(&cluster, id, Some(rack), inc))
                .await
                .unwrap();
            epochs.insert(id, epoch);
            incarnations.insert(id, inc);
        }
        let states = broker_states(&c).await;
        assert!(states.values().all(|s| s == "fenced"), "{states:?}");

        eprintln!("step 2: each broker epoch is the offset of its RegisterBrokerRecord");
        let hw = c.quorum_status().await.unwrap().high_watermark;
        let log = c.fetch_log_json(0, Some(4 << 20)).await.unwrap();
        for (id, epoch) in &epochs {
            let rec = log
                .records
                .iter()
                .find(|r| r.kind == "REGISTER_BROKER_RECORD" && r.data["brokerId"] == *id)
                .unwrap_or_else(|| panic!("no RegisterBrokerRecord for broker {id}"));
            assert_eq!(rec.offset, *epoch, "broker {id}");
            assert_eq!(rec.data["brokerEpoch"].as_i64(), Some(*epoch));
        }

        eprintln!("step 3: registration rules: same incarnation keeps its epoch; a wrong cluster id and unknown brokers are refused");
        let again = c
            .register_broker(
                1,
                &registration(&cluster, 1, Some("rack-a"), incarnations[&1]),
            )
            .await
            .unwrap();
        assert_eq!(again, epochs[&1]);
        let wrong = registration("AAAAAAAAAAAAAAAAAAAAAA", 1, None, Uuid::new_v4());
        assert_eq!(
            code(c.register_broker(1, &wrong).await),
            "INCONSISTENT_CLUSTER_ID"
        );
        assert_eq!(
            code(c.heartbeat(99, &hb(1, 0)).await),
            "BROKER_ID_NOT_REGISTERED"
        );
        assert_eq!(
            code(c.heartbeat(1, &hb(epochs[&1] + 1, hw)).await),
            "STALE_BROKER_EPOCH"
        );

        eprintln!(
            "step 4: a heartbeat behind the registration stays fenced; caught up, it is unfenced"
        );
        let behind = c
            .heartbeat(1, &hb(epochs[&1], epochs[&1] - 1))
            .await
            .unwrap();
        assert!(behind.is_fenced && !behind.is_caught_up, "{behind:?}");
        for (id, epoch) in &epochs {
            let a = f.heartbeat(*id, &hb(*epoch, hw)).await.unwrap();
            assert!(!a.is_fenced && a.is_caught_up, "broker {id}: {a:?}");
        }
        let states = broker_states(&c).await;
        assert!(states.values().all(|s| s == "active"), "{states:?}");

        eprintln!("step 5: another live incarnation of broker 1 is refused");
        let dup = registration(&cluster, 1, Some("rack-a"), Uuid::new_v4());
        assert_eq!(
            code(c.register_broker(1, &dup).await),
            "DUPLICATE_BROKER_REGISTRATION"
        );

        eprintln!("step 6: a 100-partition topic with replication factor 3 is placed by the rules");
        let parts = create(&f, "orders", 100, 3).await;
        assert_eq!(parts.len(), 100);
        let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
        for p in &parts {
            let distinct: BTreeSet<_> = p.replicas.iter().collect();
            assert_eq!(
                distinct.len(),
                3,
                "partition {} replicas {:?}",
                p.partition,
                p.replicas
            );
            let racks: BTreeSet<_> = p.replicas.iter().map(|b| rack_of(*b)).collect();
            assert_eq!(
                racks.len(),
                3,
                "partition {} replicas {:?} share a rack",
                p.partition,
                p.replicas
            );
            assert_eq!(p.leader, p.replicas[0]);
            assert_eq!(p.isr, p.replicas);
            assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
            *leaders.entry(p.leader).or_default() += 1;
        }
        eprintln!("  leaders per broker: {leaders:?}");
        assert_eq!(leaders.len(), 5);
        let (min, max) = (
            leaders.values().min().unwrap(),
            leaders.values().max().unwrap(),
        );
        assert!(max - min <= 1, "{leaders:?}");

        eprintln!("step 7: a follower serves the same description; bad topics are refused");
        eventually("the follower describes the topic", CONVERGE, || async {
            match f.describe_topic("orders").await {
                Ok(d) if d.partitions == parts => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert_eq!(
            code(
                c.create_topic(&CreateTopic {
                    name: "orders".into(),
                    partitions: Some(1),
                    replication_factor: Some(1),
                    ..Default::default()
                })
                .await
            ),
            "TOPIC_ALREADY_EXISTS"
        );
        assert_eq!(
            code(
                c.create_topic(&CreateTopic {
                    name: "bad name".into(),
                    partitions: Some(1),
                    replication_factor: Some(1),
                    ..Default::default()
                })
                .await
            ),
            "INVALID_TOPIC_EXCEPTION"
        );
        assert_eq!(
            code(
                c.create_topic(&CreateTopic {
                    name: "wide".into(),
                    partitions: Some(1),
                    replication_factor: Some(6),
                    ..Default::default()
                })
                .await
            ),
            "INVALID_REPLICATION_FACTOR"
        );
        assert_eq!(
            code(
                c.create_topic(&CreateTopic {
                    name: "none".into(),
                    partitions: Some(0),
                    replication_factor: Some(1),
                    ..Default::default()
                })
                .await
            ),
            "INVALID_PARTITIONS"
        );
        assert_eq!(
            code(create_assigned_err(&c, "dup-replica", vec![vec![1, 1]]).await),
            "INVALID_REPLICA_ASSIGNMENT"
        );

        eprintln!("step 8: add partitions, delete the topic");
        let added = c.add_partitions("orders", 110).await.unwrap();
        assert_eq!(added.len(), 10);
        assert_eq!(added[0].partition, 100);
        c.delete_topic("orders").await.unwrap();
        assert_eq!(
            code(c.describe_topic("orders").await),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(
            code(c.delete_topic("orders").await),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
    });
}

async fn create_assigned_err(
    c: &Client,
    name: &str,
    assignments: Vec<Vec<i32>>,
) -> Result<kraftd::client::CreatedTopic, kraftd::client::ClientError> {
    c.create_topic(&CreateTopic {
        name: name.into(),
        assignments: Some(assignments),
        ..Default::default()
    })
    .await
}

#[test]
fn a_silent_broker_is_fenced_taken_out_of_every_isr_and_its_leaderships_move() {
    run("silent_broker_is_fenced", async {
        let timeout_ms = 3_000u64;
        let mut s = Scenario::start(3, &[("KRAFTD_BROKER_SESSION_TIMEOUT_MS", "3000")]).await;
        let leader = s.leader().await;
        let c = s.client(leader);
        let clients: Vec<Client> = s.q.ids().iter().map(|&i| s.client(i)).collect();
        let ids: Vec<i32> = RACKS.iter().map(|(b, _)| *b).collect();

        eprintln!("step 1: five brokers heartbeat every 500 ms (session timeout {timeout_ms} ms)");
        let (fleet, _) = Fleet::start(
            &clients,
            s.q.cluster_id(),
            &ids,
            rack_of,
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        for id in &ids {
            wait_state(&c, *id, "active", Duration::from_secs(10)).await;
        }
        let before = create(&c, "payments", 40, 3).await;
        let topic_id = c.describe_topic("payments").await.unwrap().topic_id;
        let from = c.quorum_status().await.unwrap().high_watermark;

        eprintln!("step 2: broker 2 stops heartbeating");
        fleet.pause(2, true);
        let took = wait_state(&c, 2, "fenced", Duration::from_millis(timeout_ms + 5_000)).await;
        eprintln!(
            "  broker 2 fenced {:.2} s after its heartbeats stopped",
            took.as_secs_f64()
        );
        assert!(
            took < Duration::from_millis(timeout_ms + 1_000),
            "fenced after {took:?}"
        );

        eprintln!("step 3: broker 2 is in no ISR; each partition it led has a new leader, leader epoch + 1");
        let after = topic(&c, "payments").await;
        let mut expect_changed = BTreeSet::new();
        for (b, a) in before.iter().zip(&after) {
            assert!(
                !a.isr.contains(&2),
                "partition {} isr {:?}",
                a.partition,
                a.isr
            );
            if b.isr.contains(&2) {
                expect_changed.insert(a.partition);
                assert_eq!(a.partition_epoch, b.partition_epoch + 1);
            } else {
                assert_eq!(a, b);
            }
            if b.leader == 2 {
                assert_ne!(a.leader, 2);
                assert!(a.isr.contains(&a.leader));
                assert_eq!(
                    a.leader_epoch,
                    b.leader_epoch + 1,
                    "partition {}",
                    a.partition
                );
            } else {
                assert_eq!((a.leader, a.leader_epoch), (b.leader, b.leader_epoch));
            }
        }
        let states = broker_states(&c).await;
        assert!(
            states.iter().all(|(id, s)| (*id == 2) == (s == "fenced")),
            "{states:?}"
        );

        eprintln!("step 4: a client following the log sees exactly those PartitionChangeRecords");
        let log = c.fetch_log_json(from, Some(4 << 20)).await.unwrap();
        let changes: Vec<_> = log
            .records
            .iter()
            .filter(|r| r.kind == "PARTITION_CHANGE_RECORD")
            .collect();
        let seen: BTreeSet<i32> = changes
            .iter()
            .map(|r| r.data["partitionId"].as_i64().unwrap() as i32)
            .collect();
        assert_eq!(seen, expect_changed);
        assert_eq!(changes.len(), expect_changed.len());
        for r in &changes {
            assert_eq!(r.data["topicId"].as_str(), Some(topic_id.as_str()));
            let p = r.data["partitionId"].as_i64().unwrap() as usize;
            assert_eq!(r.data["isr"], serde_json::json!(after[p].isr), "{r:?}");
        }
        assert!(log
            .records
            .iter()
            .any(|r| r.kind == "BROKER_REGISTRATION_CHANGE_RECORD"
                && r.data["brokerId"] == 2
                && r.data["fenced"] == 1));
        assert_eq!(
            fleet
                .stats
                .fenced_after_unfence
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        fleet.stop().await;
    });
}

#[test]
fn alter_partition_refuses_stale_and_ineligible_changes_and_applies_valid_ones() {
    run("alter_partition", async {
        let mut s = Scenario::start(3, &[]).await;
        let leader = s.leader().await;
        let c = s.client(leader);
        let (fleet, brokers) = s
            .start_brokers(&[1, 2, 3], |_| None, Duration::from_millis(300))
            .await;
        let epoch = |id: i32| brokers.iter().find(|b| b.id == id).unwrap().epoch;
        create_assigned(&c, "isr", vec![vec![1, 2, 3]]).await;
        let topic_id = c.describe_topic("isr").await.unwrap().topic_id;
        let p = topic(&c, "isr").await[0].clone();
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1, 2, 3]));

        eprintln!("step 1: broker 3 asks to be fenced: it leaves the ISR (partition epoch + 1)");
        let a = fleet.fence(&c, 3).await.unwrap().unwrap();
        assert!(a.is_fenced);
        let p = topic(&c, "isr").await[0].clone();
        assert_eq!((p.isr.clone(), p.partition_epoch), (vec![1, 2], 1));

        eprintln!("step 2: refused changes, in Kafka's order; none changes the partition");
        let mut stale_leader = alter(1, epoch(1), &topic_id, &p, vec![1]);
        stale_leader.topics[0].partitions[0].leader_epoch = p.leader_epoch + 5;
        let mut stale_version = alter(1, epoch(1), &topic_id, &p, vec![1]);
        stale_version.topics[0].partitions[0].partition_epoch = p.partition_epoch - 1;
        let cases = [
            ("stale leader epoch", stale_leader, "FENCED_LEADER_EPOCH"),
            (
                "stale partition epoch",
                stale_version,
                "INVALID_UPDATE_VERSION",
            ),
            (
                "a fenced broker in the ISR",
                alter(1, epoch(1), &topic_id, &p, vec![1, 2, 3]),
                "INELIGIBLE_REPLICA",
            ),
            (
                "not the leader",
                alter(2, epoch(2), &topic_id, &p, vec![2]),
                "INVALID_REQUEST",
            ),
            (
                "the leader left out",
                alter(1, epoch(1), &topic_id, &p, vec![2]),
                "INVALID_REQUEST",
            ),
            (
                "not a replica",
                alter(1, epoch(1), &topic_id, &p, vec![1, 7]),
                "INVALID_REQUEST",
            ),
            (
                "unknown topic id",
                alter(1, epoch(1), "AAAAAAAAAAAAAAAAAAAAAA", &p, vec![1]),
                "UNKNOWN_TOPIC_ID",
            ),
        ];
        for (what, req, want) in cases {
            let r = alter_one(&c, &req).await;
            eprintln!("  {what}: {:?} {:?}", r.error, r.message);
            assert_eq!(r.error.as_deref(), Some(want), "{what}");
        }
        assert_eq!(
            code(
                c.alter_partition(&alter(1, epoch(1) + 1, &topic_id, &p, vec![1]))
                    .await
            ),
            "STALE_BROKER_EPOCH"
        );
        assert_eq!(
            topic(&c, "isr").await[0],
            p,
            "a refused request changed the partition"
        );

        eprintln!("step 3: a valid shrink and a valid expand each bump the partition epoch by one");
        let shrunk = alter_one(&c, &alter(1, epoch(1), &topic_id, &p, vec![1])).await;
        assert_eq!(
            (
                shrunk.isr.clone(),
                shrunk.partition_epoch,
                shrunk.leader_epoch
            ),
            (
                Some(vec![1]),
                Some(p.partition_epoch + 1),
                Some(p.leader_epoch)
            )
        );
        let p2 = topic(&c, "isr").await[0].clone();
        assert_eq!(p2.isr, vec![1]);
        let grown = alter_one(&c, &alter(1, epoch(1), &topic_id, &p2, vec![1, 2])).await;
        assert_eq!(
            (grown.isr, grown.partition_epoch),
            (Some(vec![1, 2]), Some(p.partition_epoch + 2))
        );
        assert_eq!(topic(&c, "isr").await[0].isr, vec![1, 2]);
        fleet.stop().await;
    });
}

#[test]
fn a_partition_whose_last_isr_member_is_fenced_goes_offline_until_an_unclean_election() {
    run("offline_and_unclean", async {
        let mut s = Scenario::start(3, &[]).await;
        let leader = s.leader().await;
        let c = s.client(leader);
        let (fleet, brokers) = s
            .start_brokers(&[1, 2, 3], |_| None, Duration::from_millis(300))
            .await;
        let epoch = |id: i32| brokers.iter().find(|b| b.id == id).unwrap().epoch;
        for name in ["by-request", "by-config"] {
            create_assigned(&c, name, vec![vec![1, 2, 3]]).await;
            let d = c.describe_topic(name).await.unwrap();
            eprintln!("step 1 ({name}): the leader shrinks the ISR to itself");
            let r = alter_one(
                &c,
                &alter(1, epoch(1), &d.topic_id, &d.partitions[0], vec![1]),
            )
            .await;
            assert_eq!(r.isr, Some(vec![1]));
        }

        eprintln!("step 2: broker 1, the last ISR member, is fenced: both partitions go offline (leader -1), ISR keeps it");
        fleet.fence(&c, 1).await.unwrap().unwrap();
        for name in ["by-request", "by-config"] {
            let p = topic(&c, name).await[0].clone();
            assert_eq!((p.leader, p.isr.clone()), (-1, vec![1]), "{name}");
        }
        let offline = c.topics().await.unwrap();
        assert!(
            offline.iter().all(|t| t.offline_partitions == 1),
            "{offline:?}"
        );

        eprintln!(
            "step 3: a preferred election cannot help; an unclean election picks a live replica"
        );
        let tp = vec![TopicPartition {
            topic: "by-request".into(),
            partition: 0,
        }];
        let pref = c
            .elect(&ElectionRequest {
                kind: "preferred".into(),
                partitions: Some(tp.clone()),
            })
            .await
            .unwrap();
        assert_eq!(
            pref[0].error.as_deref(),
            Some("PREFERRED_LEADER_NOT_AVAILABLE")
        );
        let before = topic(&c, "by-request").await[0].clone();
        let unclean = c
            .elect(&ElectionRequest {
                kind: "unclean".into(),
                partitions: Some(tp),
            })
            .await
            .unwrap();
        assert_eq!(unclean[0].leader, Some(2), "{unclean:?}");
        let p = topic(&c, "by-request").await[0].clone();
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_recovery_state),
            (2, vec![2], 1)
        );
        assert_eq!(p.leader_epoch, before.leader_epoch + 1);

        eprintln!("step 4: enabling unclean.leader.election.enable on a topic elects its offline partition");
        c.alter_config(
            ConfigKind::Topic,
            "by-config",
            &ConfigPatch::set_one("unclean.leader.election.enable", "true"),
        )
        .await
        .unwrap();
        let p = topic(&c, "by-config").await[0].clone();
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_recovery_state),
            (2, vec![2], 1)
        );

        eprintln!("step 5: the new leader reports recovery; then the ISR may grow");
        let d = c.describe_topic("by-config").await.unwrap();
        let mut rec = alter(2, epoch(2), &d.topic_id, &d.partitions[0], vec![2, 3]);
        let grow_early = alter_one(&c, &rec).await;
        assert_eq!(
            grow_early.error.as_deref(),
            Some("INVALID_REQUEST"),
            "{grow_early:?}"
        );
        rec.topics[0].partitions[0].new_isr = vec![2];
        rec.topics[0].partitions[0].leader_recovery_state = Some(0);
        let recovered = alter_one(&c, &rec).await;
        assert_eq!(recovered.leader_recovery_state, Some(0), "{recovered:?}");
        fleet.stop().await;
    });
}

#[test]
fn controlled_shutdown_moves_leaderships_away_before_should_shutdown() {
    run("controlled_shutdown", async {
        let mut s = Scenario::start(3, &[]).await;
        let leader = s.leader().await;
        let c = s.client(leader);
        let (fleet, brokers) = s
            .start_brokers(&[1, 2, 3], |_| None, Duration::from_millis(300))
            .await;
        let epoch1 = brokers[0].epoch;
        let parts = create(&c, "shutdown", 12, 3).await;
        let led = parts.iter().filter(|p| p.leader == 1).count();
        eprintln!(
            "step 1: broker 1 leads {led} of 12 partitions and asks for a controlled shutdown"
        );
        assert!(led > 0);
        fleet.pause(1, true);
        let offset = c.quorum_status().await.unwrap().high_watermark;
        let first = c
            .heartbeat(
                1,
                &Heartbeat {
                    broker_epoch: epoch1,
                    current_metadata_offset: offset,
                    want_fence: false,
                    want_shutdown: true,
                },
            )
            .await
            .unwrap();
        assert!(!first.should_shutdown, "{first:?}");
        assert_eq!(broker_states(&c).await[&1], "controlled_shutdown");

        eprintln!("step 2: its leaderships have moved before should_shutdown is true");
        let mut answered_true_at = None;
        for round in 0..50 {
            let offset = c.quorum_status().await.unwrap().high_watermark;
            let parts = topic(&c, "shutdown").await;
            let a = c
                .heartbeat(
                    1,
                    &Heartbeat {
                        broker_epoch: epoch1,
                        current_metadata_offset: offset,
                        want_fence: false,
                        want_shutdown: true,
                    },
                )
                .await
                .unwrap();
            if a.should_shutdown {
                let now = topic(&c, "shutdown").await;
                assert!(
                    parts.iter().chain(&now).all(|p| p.leader != 1),
                    "still leading: {now:?}"
                );
                answered_true_at = Some(round);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            answered_true_at.is_some(),
            "should_shutdown never became true"
        );
        let now = topic(&c, "shutdown").await;
        assert!(
            now.iter().all(|p| p.leader != 1 && p.leader >= 0),
            "{now:?}"
        );
        assert_eq!(broker_states(&c).await[&1], "fenced");
        fleet.stop().await;
    });
}

#[test]
fn the_high_watermark_keeps_moving_while_brokers_only_heartbeat() {
    run("noops_under_heartbeats", async {
        let mut s = Scenario::start(3, &[]).await;
        let leader = s.leader().await;
        let c = s.client(leader);
        eprintln!("step 1: three brokers heartbeat every 100 ms and nothing else is written");
        let (fleet, _) = s
            .start_brokers(&[1, 2, 3], |_| None, Duration::from_millis(100))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let from = c.quorum_status().await.unwrap().high_watermark;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let to = c.quorum_status().await.unwrap().high_watermark;
        eprintln!("step 2: the idle NoOps still move the high watermark: {from} -> {to}");
        assert!(to >= from + 2, "high watermark {from} -> {to} in 3 s");
        let log = c.fetch_log_json(from, Some(1 << 20)).await.unwrap();
        let kinds: Vec<&str> = log
            .records
            .iter()
            .filter(|r| r.offset < to)
            .map(|r| r.kind.as_str())
            .collect();
        // The leader may also record the voters' directory ids once (a VotersRecord).
        let noops = kinds.iter().filter(|k| **k == "NO_OP_RECORD").count();
        assert!(noops >= 2, "{kinds:?}");
        assert!(
            kinds
                .iter()
                .all(|k| *k == "NO_OP_RECORD" || *k == "VotersRecord"),
            "{kinds:?}"
        );
        fleet.stop().await;
    });
}
