//! The operators' CLI on a real three-node quorum: every command run as the real binary,
//! in table and JSON output, checked against the API; failures exit with their code and
//! print `kraftd: CODE: message`.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

use kraftd::cli::fleet::Fleet;
use kraftd::client::{AlterPartition, AlterPartitionData, AlterTopic, Client, ConfigKind};
use serde_json::{json, Value};

/// What one run of the binary gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `kraftd ARGS --api API` (bounded).
async fn kraftd(api: &str, args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kraftd"));
    cmd.args(args).arg("--api").arg(api).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(40), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("kraftd {args:?} did not finish within 40 s"))
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The offset and type of each `metadata tail` line (`OFFSET EPOCH TYPE {data}`).
fn lines_of(out: &str) -> Vec<(i64, String)> {
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            (f[0].parse().unwrap(), f[2].to_string())
        })
        .collect()
}

/// Runs a command that must succeed; returns its stdout.
async fn ok(api: &str, args: &[&str]) -> String {
    let r = kraftd(api, args).await;
    assert_eq!(r.code, 0, "kraftd {args:?} failed: {r:?}");
    r.stdout
}

/// `kraftd metadata tail --from 0` and `extra`, which must succeed; returns its stdout.
async fn tail_from_0(api: &str, extra: &[&str]) -> String {
    let mut args = vec!["metadata", "tail", "--from", "0"];
    args.extend_from_slice(extra);
    ok(api, &args).await
}

/// Runs a command with `--output json` that must succeed; returns its JSON.
async fn json_of(api: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let out = ok(api, &all).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kraftd {args:?}: {e}: {out}"))
}

/// Runs a command that must fail with exit code `code` and `kraftd: CODE:` on stderr.
async fn fails(api: &str, args: &[&str], code: i32, error: &str) -> Run {
    let r = kraftd(api, args).await;
    assert_eq!(r.code, code, "kraftd {args:?}: {r:?}");
    assert!(
        r.stderr.starts_with(&format!("kraftd: {error}: ")),
        "kraftd {args:?}: stderr {:?}",
        r.stderr
    );
    r
}

fn assert_has(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "{p:?} not in:\n{text}");
    }
}

/// The value of a `Name: value` line.
fn field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name}: line in:\n{text}"))
        .trim()
        .to_string()
}

/// `api_addr` of a node as a URL.
fn url(s: &Scenario, id: u64) -> String {
    s.client(id).base_url().to_string()
}

#[test]
fn topics_configs_brokers_and_elections_through_the_cli() {
    run("cli_topics_configs_elections", async {
        let mut s = Scenario::start(3, &[]).await;
        let leader = s.leader().await;
        let follower = s.q.ids().into_iter().find(|&i| i != leader).unwrap();
        let c = s.client(leader);
        // Reads go to the leader, which has applied every write it acknowledged; a
        // follower (as host:port, not a URL) forwards the writes sent to it, and its reads
        // may trail the leader's.
        let api = url(&s, leader);
        let via_follower = url(&s, follower).trim_start_matches("http://").to_string();
        let fc = s.client(follower);

        eprintln!("step 1: three brokers heartbeat; brokers list shows them active");
        let clients: Vec<Client> = s.q.ids().iter().map(|&i| s.client(i)).collect();
        let (fleet, brokers) = Fleet::start(
            &clients,
            s.q.cluster_id(),
            &[1, 2, 3],
            |id| Some(format!("rack-{id}")),
            Duration::from_millis(300),
        )
        .await
        .unwrap();
        let epoch = |id: i32| brokers.iter().find(|b| b.id == id).unwrap().epoch;
        eventually("three active brokers", Duration::from_secs(10), || async {
            let b = fc.brokers().await.map_err(err_text)?;
            if b.len() == 3 && b.iter().all(|b| b.state == "active") {
                Ok(())
            } else {
                Err(format!("{b:?}"))
            }
        })
        .await;
        let table = ok(&via_follower, &["brokers", "list"]).await;
        assert_has(
            &table,
            &[
                "Id",
                "Epoch",
                "State",
                "Rack",
                "Listeners",
                "rack-2",
                "active",
            ],
        );
        let listed = json_of(&api, &["brokers", "list"]).await;
        assert_eq!(
            listed,
            serde_json::to_value(c.brokers().await.unwrap()).unwrap()
        );

        eprintln!("step 2: topics create, by count and by explicit assignments");
        let table = ok(
            &via_follower,
            &[
                "topics",
                "create",
                "orders",
                "--partitions",
                "3",
                "--replication-factor",
                "2",
                "--config",
                "retention.ms=60000",
            ],
        )
        .await;
        assert_has(&table, &["Created topic orders", "Partition", "Replicas"]);
        let created = json_of(
            &api,
            &["topics", "create", "pinned", "--assignments", "1:2:3"],
        )
        .await;
        assert_eq!(created["name"], "pinned");
        assert_eq!(created["partitions"][0]["replicas"], json!([1, 2, 3]));
        assert_eq!(created["partitions"][0]["leader"], 1);

        eprintln!("step 2b: metadata tail --type and --skip-noop pick records by type");
        // Idle NoOps (one every 500 ms), then one more record after them, so the records
        // --skip-noop must print span NoOps it must leave out.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        write_config(&c, "log.retention.ms", "7200000").await;
        let out = tail_from_0(&api, &["--type", "topic,partition", "--max-records", "3"]).await;
        let log = c.fetch_log_json(0, None).await.unwrap();
        let picked = |keep: &dyn Fn(&str) -> bool, most: usize| -> Vec<(i64, String)> {
            log.records
                .iter()
                .filter(|r| keep(&r.kind))
                .take(most)
                .map(|r| (r.offset, r.kind.clone()))
                .collect()
        };
        let wanted = picked(&|k| k != "NO_OP_RECORD", usize::MAX);
        let last = wanted.last().unwrap().0;
        assert!(
            log.records
                .iter()
                .any(|r| r.kind == "NO_OP_RECORD" && r.offset < last),
            "the log has no NoOp among the records: the check below would prove nothing: {:?}",
            log.records
                .iter()
                .map(|r| (r.offset, r.kind.as_str()))
                .collect::<Vec<_>>()
        );
        let of_type = picked(&|k| k == "TOPIC_RECORD" || k == "PARTITION_RECORD", 3);
        assert_eq!(lines_of(&out), of_type, "{out}");
        assert_eq!(of_type[0].1, "TOPIC_RECORD");
        let n = wanted.len().to_string();
        let out = tail_from_0(&api, &["--skip-noop", "--max-records", &n]).await;
        assert_eq!(lines_of(&out), wanted, "{out}");
        let r = fails(&api, &["metadata", "tail", "--type", "bogus"], 2, "USAGE").await;
        assert!(
            r.stderr
                .contains("\"bogus\" is not a record type; the types are: "),
            "{r:?}"
        );

        eprintln!("step 3: topics list and describe, table and JSON, match the API");
        let table = ok(&api, &["topics", "list"]).await;
        assert_has(
            &table,
            &[
                "Topic",
                "PartitionCount",
                "ReplicationFactor",
                "orders",
                "pinned",
            ],
        );
        let list = json_of(&api, &["topics", "list"]).await;
        assert_eq!(
            list,
            serde_json::to_value(c.topics().await.unwrap()).unwrap()
        );
        let d = c.describe_topic("orders").await.unwrap();
        let table = ok(&api, &["topics", "describe", "orders"]).await;
        assert_has(
            &table,
            &[
                "Topic: orders",
                &format!("TopicId: {}", d.topic_id),
                "PartitionCount: 3",
                "ReplicationFactor: 2",
                "Configs: retention.ms=60000",
                "\tPartition: 2\tLeader: ",
                "Replicas: ",
                "Isr: ",
                "LeaderEpoch: 0",
                "PartitionEpoch: 0",
            ],
        );
        let described = json_of(&api, &["topics", "describe", "orders"]).await;
        assert_eq!(described, serde_json::to_value(&d).unwrap());

        eprintln!("step 4: an unknown topic exits 1 with Kafka's code; bad flags exit 2");
        let r = fails(
            &api,
            &["topics", "describe", "nope"],
            1,
            "UNKNOWN_TOPIC_OR_PARTITION",
        )
        .await;
        assert!(r.stdout.is_empty(), "{r:?}");
        fails(
            &api,
            &[
                "topics",
                "create",
                "orders",
                "--partitions",
                "1",
                "--replication-factor",
                "1",
            ],
            1,
            "TOPIC_ALREADY_EXISTS",
        )
        .await;
        let r = kraftd(&api, &["topics", "create", "x", "--config", "novalue"]).await;
        assert_eq!(r.code, 2, "{r:?}");

        eprintln!("step 5: topics add-partitions");
        let table = ok(
            &api,
            &["topics", "add-partitions", "orders", "--count", "5"],
        )
        .await;
        assert_has(&table, &["orders has 5 partitions; added 2", "Partition"]);
        let added = json_of(
            &api,
            &["topics", "add-partitions", "orders", "--count", "6"],
        )
        .await;
        assert_eq!(added["added"][0]["partition"], 5);
        assert_eq!(
            c.describe_topic("orders").await.unwrap().partitions.len(),
            6
        );

        eprintln!("step 6: configs set, get, delete on a topic and the cluster default");
        let table = ok(
            &api,
            &[
                "configs",
                "set",
                "topic",
                "orders",
                "cleanup.policy=compact",
                "segment.ms=1000",
            ],
        )
        .await;
        assert_has(
            &table,
            &["Updated topic orders", "set cleanup.policy", "offset "],
        );
        let ack = json_of(
            &api,
            &["configs", "delete", "topic", "orders", "segment.ms"],
        )
        .await;
        assert!(ack["offset"].as_i64().unwrap() > 0, "{ack}");
        let got = json_of(&api, &["configs", "get", "topic", "orders"]).await;
        assert_eq!(
            got,
            json!({"cleanup.policy": "compact", "retention.ms": "60000"})
        );
        let ack = json_of(
            &api,
            &[
                "configs",
                "set",
                "broker",
                "default",
                "log.retention.ms=3600000",
            ],
        )
        .await;
        assert!(ack["epoch"].as_i64().unwrap() > 0, "{ack}");
        let table = ok(&api, &["configs", "get", "broker", "default"]).await;
        assert_has(&table, &["Key", "Value", "log.retention.ms", "3600000"]);
        assert_eq!(
            c.get_config(ConfigKind::Broker, "default").await.unwrap()["log.retention.ms"],
            "3600000"
        );
        fails(
            &api,
            &["configs", "get", "topic", "nope"],
            1,
            "UNKNOWN_TOPIC_OR_PARTITION",
        )
        .await;

        eprintln!("step 7: broker 1 is fenced, comes back and rejoins pinned's ISR; a preferred election makes it leader again");
        // fence() waits for a heartbeat already under way to land first.
        let fenced = fleet.fence(&c, 1).await.unwrap().unwrap();
        assert!(fenced.is_fenced);
        let p = c.describe_topic("pinned").await.unwrap();
        assert_eq!(
            (p.partitions[0].leader, p.partitions[0].isr.clone()),
            (2, vec![2, 3])
        );
        fleet.pause(1, false);
        eventually(
            "broker 1 is active again",
            Duration::from_secs(10),
            || async {
                let b = c.brokers().await.map_err(err_text)?;
                match b.iter().find(|b| b.id == 1) {
                    Some(b) if b.state == "active" => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
        let part = &p.partitions[0];
        let rejoin = c
            .alter_partition(&AlterPartition {
                broker_id: 2,
                broker_epoch: epoch(2),
                topics: vec![AlterTopic {
                    topic_id: p.topic_id.clone(),
                    partitions: vec![AlterPartitionData {
                        partition: 0,
                        leader_epoch: part.leader_epoch,
                        partition_epoch: part.partition_epoch,
                        new_isr: vec![2, 3, 1],
                        new_isr_with_epochs: None,
                        leader_recovery_state: None,
                    }],
                }],
            })
            .await
            .unwrap();
        assert!(rejoin.topics[0].partitions[0].error.is_none(), "{rejoin:?}");
        let table = ok(
            &api,
            &[
                "elect",
                "--preferred",
                "--topic",
                "pinned",
                "--partition",
                "0",
            ],
        )
        .await;
        assert_has(&table, &["Topic", "Result", "pinned", "ELECTED"]);
        let p = c.describe_topic("pinned").await.unwrap();
        assert_eq!(p.partitions[0].leader, 1);

        eprintln!("step 8: elections that are not needed succeed; an unknown partition exits 1");
        let all = json_of(&api, &["elect", "--preferred"]).await;
        assert!(all.is_array(), "{all}");
        let unclean = json_of(
            &api,
            &[
                "elect",
                "--unclean",
                "--topic",
                "pinned",
                "--partition",
                "0",
            ],
        )
        .await;
        assert_eq!(unclean[0]["error"], "ELECTION_NOT_NEEDED");
        fails(
            &api,
            &[
                "elect",
                "--preferred",
                "--topic",
                "pinned",
                "--partition",
                "9",
            ],
            1,
            "UNKNOWN_TOPIC_OR_PARTITION",
        )
        .await;
        fails(&api, &["elect", "--unclean"], 2, "USAGE").await;

        eprintln!("step 9: brokers unregister, topics delete");
        fleet.pause(3, true);
        let table = ok(&api, &["brokers", "unregister", "3"]).await;
        assert_has(&table, &["Unregistered broker 3"]);
        let gone = json_of(&api, &["brokers", "unregister", "2"]).await;
        assert_eq!(gone, json!({"unregistered": 2}));
        fleet.pause(2, true);
        let ids: Vec<i32> = c.brokers().await.unwrap().iter().map(|b| b.id).collect();
        assert_eq!(ids, vec![1]);
        let table = ok(&api, &["topics", "delete", "orders"]).await;
        assert_has(&table, &["Deleted topic orders"]);
        assert_eq!(
            json_of(&api, &["topics", "delete", "pinned"]).await,
            json!({"deleted": "pinned"})
        );
        assert!(c.topics().await.unwrap().is_empty());
        fleet.stop().await;
    });
}

#[test]
fn quorum_snapshots_and_the_metadata_view_through_the_cli() {
    run("cli_quorum_snapshots_metadata", async {
        // No idle no-ops: the log moves only with our writes. No log tail: a checkpoint
        // purges the log below it, so `metadata tail --from 0` meets the 410.
        let mut s = Scenario::start(3, &[NO_NOOPS, ("KRAFTD_LOG_TAIL_ENTRIES", "0")]).await;
        let leader = s.leader().await;
        let c = s.client(leader);
        let api = url(&s, leader);

        eprintln!(
            "step 1: quorum status, table with Kafka's field names and JSON, from a follower too"
        );
        let st = c.quorum_status().await.unwrap();
        let table = ok(&api, &["quorum", "status"]).await;
        assert_eq!(field(&table, "ClusterId"), s.q.cluster_id());
        assert_eq!(field(&table, "LeaderId"), leader.to_string());
        assert_eq!(field(&table, "LeaderEpoch"), st.leader_epoch.to_string());
        assert!(field(&table, "HighWatermark").parse::<i64>().unwrap() >= st.high_watermark);
        assert!(field(&table, "MaxFollowerLag").parse::<i64>().is_ok());
        assert!(field(&table, "MaxFollowerLagTimeMs").parse::<i64>().is_ok());
        assert_eq!(field(&table, "CurrentVoters"), "[1,2,3]");
        assert_eq!(field(&table, "CurrentObservers"), "[]");
        let follower = s.q.ids().into_iter().find(|&i| i != leader).unwrap();
        let j = json_of(&url(&s, follower), &["quorum", "status"]).await;
        assert_eq!(j["leader_id"], leader);
        assert_eq!(j["node_id"], leader, "the leader's view is shown: {j}");
        assert_eq!(j["cluster_id"], st.cluster_id);
        assert!(j["max_follower_lag"].is_i64(), "{j}");

        eprintln!("step 2: quorum replication");
        let table = ok(&api, &["quorum", "replication"]).await;
        assert_has(
            &table,
            &[
                "NodeId",
                "LogEndOffset",
                "Lag",
                "LastFetchTimestamp",
                "LastCaughtUpTimestamp",
                "Status",
                "State",
                "up",
                "Leader",
                "Follower",
            ],
        );
        let rows = json_of(&api, &["quorum", "replication"]).await;
        let mut nodes: Vec<u64> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["node_id"].as_u64().unwrap())
            .collect();
        nodes.sort_unstable();
        assert_eq!(nodes, vec![1, 2, 3]);

        eprintln!("step 3: metadata tail from offset 0 (the bootstrap records), bounded");
        let lines = ok(
            &api,
            &["metadata", "tail", "--from", "0", "--max-records", "3"],
        )
        .await;
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        for (i, l) in lines.iter().enumerate() {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            assert_eq!(f[0], i.to_string(), "{l}");
            assert!(f[1].parse::<i64>().is_ok() && f[3].starts_with('{'), "{l}");
        }
        let out = ok(
            &api,
            &[
                "metadata",
                "tail",
                "--from",
                "0",
                "--max-records",
                "3",
                "--output",
                "json",
            ],
        )
        .await;
        let recs: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let log = c.fetch_log_json(0, None).await.unwrap();
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r["offset"], log.records[i].offset);
            assert_eq!(r["type"], log.records[i].kind);
        }

        eprintln!(
            "step 4: brokers and a topic; metadata image (JSON equals the API's, table summarizes)"
        );
        let (fleet, _) = s
            .start_brokers(&[1, 2, 3], |_| None, Duration::from_millis(300))
            .await;
        ok(
            &api,
            &[
                "topics",
                "create",
                "orders",
                "--partitions",
                "2",
                "--replication-factor",
                "3",
            ],
        )
        .await;
        ok(
            &api,
            &["configs", "set", "topic", "orders", "retention.ms=1"],
        )
        .await;
        let view = c.image().await.unwrap();
        let image = json_of(&api, &["metadata", "image"]).await;
        assert_eq!(image["topics"], view.image["topics"]);
        assert_eq!(image["brokers"], view.image["brokers"]);
        assert_eq!(image["configs"], view.image["configs"]);
        assert!(image["offset"].as_i64().unwrap() >= view.offset);
        let table = ok(&api, &["metadata", "image"]).await;
        assert_eq!(field(&table, "Topics"), "1");
        assert_eq!(field(&table, "Partitions"), "2");
        assert!(
            field(&table, "Brokers").starts_with("3 (active 3"),
            "{table}"
        );
        assert!(
            field(&table, "Features").contains("metadata.version="),
            "{table}"
        );
        assert_has(&table, &["BrokerId", "State", "TopicId", "orders"]);

        eprintln!("step 5: metadata ls and cat browse the image by path");
        let topic_id = c.describe_topic("orders").await.unwrap().topic_id;
        let root = ok(&api, &["metadata", "ls"]).await;
        let root: Vec<&str> = root.lines().collect();
        assert_eq!(
            root[..4],
            ["features/", "brokers/", "topics/", "configs/"],
            "{root:?}"
        );
        assert!(root[4].starts_with("producer_ids"), "{root:?}");
        assert_eq!(ok(&api, &["metadata", "ls", "/topics"]).await, "orders/\n");
        let t = ok(&api, &["metadata", "ls", "/topics/orders"]).await;
        assert_has(
            &t,
            &["name: orders", &format!("topic_id: {topic_id}"), "0/", "1/"],
        );
        let p0 = json_of(&api, &["metadata", "ls", "/topics/orders/0"]).await;
        let api_p0 = &c.describe_topic("orders").await.unwrap().partitions[0];
        assert_eq!(p0["leader"], api_p0.leader);
        assert_eq!(p0["replicas"], json!(api_p0.replicas));
        let p0 = ok(&api, &["metadata", "ls", "/topics/orders/0"]).await;
        assert_has(&p0, &["partition: 0", "leader: ", "isr: ["]);
        let b1 = ok(&api, &["metadata", "ls", "/brokers/1"]).await;
        assert_has(&b1, &["broker_id: 1", "fenced: false", "listeners: ["]);
        let cfg = ok(&api, &["metadata", "ls", "/configs/topics/orders"]).await;
        assert_eq!(cfg, "retention.ms: 1\n");
        let id = ok(&api, &["metadata", "cat", "/topics/orders/topic_id"]).await;
        assert_eq!(id.trim(), topic_id);
        fails(
            &api,
            &["metadata", "ls", "/topics/nope"],
            1,
            "PATH_NOT_FOUND",
        )
        .await;

        eprintln!("step 6: snapshot take and list");
        let table = ok(&api, &["snapshot", "take"]).await;
        assert_has(&table, &["Took snapshot", ".checkpoint"]);
        let list = json_of(&api, &["snapshot", "list"]).await;
        let newest = &c.list_snapshots().await.unwrap()[0];
        assert_eq!(list[0]["end_offset"], newest.end_offset);
        assert_eq!(list[0]["file_name"], newest.file_name.as_str());
        let table = ok(&api, &["snapshot", "list"]).await;
        assert_has(
            &table,
            &["EndOffset", "Epoch", "Size", "FileName", &newest.file_name],
        );

        eprintln!("step 7: snapshot fetch latest into a directory, then resume a cut-short copy");
        let dir = tempfile::tempdir().unwrap();
        let dir_s = dir.path().to_str().unwrap();
        let table = ok(&api, &["snapshot", "fetch", "--to", dir_s]).await;
        assert_has(&table, &["Fetched snapshot", "checkpoint valid"]);
        let file = dir.path().join(&newest.file_name);
        let whole = std::fs::read(&file).unwrap();
        assert_eq!(whole.len() as u64, newest.size);
        let half = whole.len() / 2;
        let part = dir.path().join("part.checkpoint");
        std::fs::write(&part, &whole[..half]).unwrap();
        let id = format!("{}-{}", newest.end_offset, newest.epoch);
        let fetched = json_of(
            &api,
            &["snapshot", "fetch", &id, "--to", part.to_str().unwrap()],
        )
        .await;
        assert_eq!(fetched["resumed_from"], half as u64);
        assert_eq!(std::fs::read(&part).unwrap(), whole);
        fails(
            &api,
            &["snapshot", "fetch", "1-99", "--to", dir_s],
            1,
            "SNAPSHOT_NOT_FOUND",
        )
        .await;

        eprintln!("step 8: offline: metadata ls/image --snapshot read the fetched checkpoint");
        let f = file.to_str().unwrap();
        assert_eq!(
            ok(&api, &["metadata", "ls", "/topics", "--snapshot", f]).await,
            "orders/\n"
        );
        let offline = json_of(&api, &["metadata", "image", "--snapshot", f]).await;
        assert_eq!(offline["topics"], view.image["topics"]);
        assert_eq!(offline["offset"], newest.end_offset);
        check_offline_path(f, &topic_id).await;

        eprintln!("step 9: metadata tail from 0 after the log was purged: a note, then the records after the snapshot");
        for i in 0..3 {
            ok(
                &api,
                &["configs", "set", "broker", "1", &format!("tail.k{i}=v")],
            )
            .await;
        }
        let log_start = c.fetch_log(newest.end_offset, None, None).await.unwrap();
        eprintln!("  log start offset now {:?}", log_start.log_start_offset);
        let r = kraftd(
            &api,
            &["metadata", "tail", "--from", "0", "--max-records", "3"],
        )
        .await;
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stderr.contains("below the log start"), "{r:?}");
        let first: i64 = r.stdout.split(' ').next().unwrap().parse().unwrap();
        assert!(first >= newest.end_offset, "{r:?}");
        assert_eq!(r.stdout.lines().count(), 3, "{r:?}");

        eprintln!("step 9a: a reader that leaves (`| head`) ends the command quietly, exit 0");
        for args in [vec!["metadata", "image"], vec!["topics", "list"]] {
            let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kraftd"));
            cmd.args(&args)
                .args(["--api", &api])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true);
            let mut child = cmd.spawn().unwrap();
            // The reader goes before the command has its first answer to print.
            drop(child.stdout.take());
            let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
                .await
                .unwrap_or_else(|_| panic!("kraftd {args:?} kept running after its reader left"))
                .unwrap();
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "kraftd {args:?} with its reader gone: {:?}, stderr {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }

        eprintln!("step 9b: metadata tail with no --from waits (long poll) for new records");
        let mut follow = tokio::process::Command::new(env!("CARGO_BIN_EXE_kraftd"));
        follow
            .args([
                "metadata",
                "tail",
                "--max-records",
                "2",
                "--output",
                "json",
                "--api",
            ])
            .arg(&api)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let hw = c.quorum_status().await.unwrap().high_watermark;
        let child = follow.spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        // A third write in case the tail started late and missed the first.
        let mut acked = Vec::new();
        for (k, v) in [("live.a", "1"), ("live.b", "2"), ("live.c", "3")] {
            acked.push(write_config(&c, k, v).await.offset);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
            .await
            .expect("tail stops after two records")
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let recs: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(recs.len(), 2, "{recs:?}");
        for r in &recs {
            assert!(r["offset"].as_i64().unwrap() >= hw, "{recs:?}");
            assert!(
                acked.contains(&r["offset"].as_i64().unwrap()),
                "{recs:?} {acked:?}"
            );
            assert_eq!(r["type"], "CONFIG_RECORD");
        }

        eprintln!("step 10: quorum add-voter and remove-voter with a fourth node");
        s.q.add_node(4).await.unwrap();
        s.q.wait_healthy(4, READY).await.unwrap();
        let four = s.q.node(4).unwrap().as_new_voter();
        let table = ok(
            &api,
            &[
                "quorum",
                "add-voter",
                "--id",
                "4",
                "--peer",
                &four.peer,
                "--api-addr",
                four.api.as_deref().unwrap_or_default(),
            ],
        )
        .await;
        assert_has(&table, &["Node 4 is a voter", "CurrentVoters: [1,2,3,4]"]);
        let j = json_of(&api, &["quorum", "status"]).await;
        assert_eq!(j["voters"].as_array().unwrap().len(), 4, "{j}");
        let j = json_of(&api, &["quorum", "remove-voter", "--id", "4"]).await;
        assert_eq!(j, json!({"voters": [1, 2, 3]}));
        s.q.stop(4).await.unwrap();
        fails(
            &api,
            &["quorum", "remove-voter", "--id", "9"],
            1,
            "VOTER_NOT_FOUND",
        )
        .await;

        eprintln!(
            "step 10b: quorum transfer-leader, to a voter named and to the one furthest along"
        );
        let before = json_of(&api, &["quorum", "status"]).await;
        let old = before["leader_id"].as_u64().unwrap();
        let to = [1u64, 2, 3].into_iter().find(|&i| i != old).unwrap();
        let table = ok(
            &api,
            &["quorum", "transfer-leader", "--to", &to.to_string()],
        )
        .await;
        assert_has(
            &table,
            &[
                &format!("Node {to} leads at epoch"),
                &format!("(was node {old} at epoch"),
            ],
        );
        // Without --to: the voter furthest along of those that answered the new leader (a
        // leader that has heard no follower yet refuses with INELIGIBLE_REPLICA: retried).
        let c = s.client(to);
        let m = eventually("an automatic transfer", Duration::from_secs(10), || async {
            c.transfer_leader(None).await.map_err(err_text)
        })
        .await;
        assert_eq!(m.previous_leader_id, to, "{m:?}");
        assert_ne!(m.leader_id, to, "{m:?}");
        fails(
            &api,
            &["quorum", "transfer-leader", "--to", "9"],
            1,
            "VOTER_NOT_FOUND",
        )
        .await;

        eprintln!("step 11: an unreachable --api exits 3");
        let port = kraftd::cli::local_quorum::free_ports(1).unwrap()[0];
        let nobody = format!("127.0.0.1:{port}");
        fails(&nobody, &["quorum", "status"], 3, "NETWORK_EXCEPTION").await;
        fails(
            &nobody,
            &["topics", "list", "--output", "json"],
            3,
            "NETWORK_EXCEPTION",
        )
        .await;

        eprintln!(
            "step 11a: several endpoints, from --api or KRAFTD_API: the first that answers is used"
        );
        let live = url(&s, leader);
        let both = format!("{nobody},{live}");
        let st = json_of(&both, &["quorum", "status"]).await;
        assert_eq!(st["cluster_id"], s.q.cluster_id());
        let port2 = kraftd::cli::local_quorum::free_ports(1).unwrap()[0];
        let nobody2 = format!("127.0.0.1:{port2}");
        let r = fails(
            &format!("{nobody},{nobody2}"),
            &["quorum", "status"],
            3,
            "NETWORK_EXCEPTION",
        )
        .await;
        assert!(
            r.stderr.contains("no --api endpoint answered: ")
                && r.stderr.contains(&nobody)
                && r.stderr.contains(&nobody2),
            "{r:?}"
        );
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kraftd"))
            .args(["quorum", "status", "--output", "json"])
            .env("KRAFTD_API", &both)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let st: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(st["cluster_id"], s.q.cluster_id());
        fleet.stop().await;
    });
}

/// `metadata cat` offline reaches a leaf of the checkpoint's image.
async fn check_offline_path(file: &str, topic_id: &str) {
    assert!(Path::new(file).exists());
    let r = kraftd(
        "127.0.0.1:1",
        &[
            "metadata",
            "cat",
            "/topics/orders/topic_id",
            "--snapshot",
            file,
        ],
    )
    .await;
    assert_eq!((r.code, r.stdout.trim()), (0, topic_id), "{r:?}");
    let missing = format!("{file}.gone");
    fails(
        "127.0.0.1:1",
        &["metadata", "ls", "--snapshot", &missing],
        4,
        "IO_ERROR",
    )
    .await;
}
