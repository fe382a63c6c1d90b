//! A data directory's life as `kraftd format` and `kraftd storage info` show it, on the
//! real binary: a format outside the voter set says the node will wait to be added;
//! `--ignore-formatted` refuses another node's or cluster's directory and changes nothing;
//! `storage info` reads a fresh directory, a running node's (naming the process that holds
//! it) and a damaged one (a problem, exit 1).

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

use common::kraftd_offline as kraftd;

/// `kraftd format --data-dir DIR --cluster-id C --node-id N` and `rest`.
fn format(dir: &str, cluster: &str, node: &str, rest: &[&str]) -> Output {
    let mut args = vec![
        "format",
        "--data-dir",
        dir,
        "--cluster-id",
        cluster,
        "--node-id",
        node,
    ];
    args.extend_from_slice(rest);
    kraftd(&args)
}

/// `kraftd storage info DIR --output json`: its exit code and document.
fn info_json(dir: &Path) -> (i32, Value) {
    let out = kraftd(&["storage", "info", dir.to_str().unwrap(), "--output", "json"]);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code().unwrap_or(-1), doc)
}

#[test]
fn format_and_storage_info_describe_a_directory_and_refuse_the_wrong_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node4");
    let d = dir.to_str().unwrap();
    let cluster = text(&kraftd(&["random-uuid"]).stdout).trim().to_string();

    eprintln!("step 1: a format whose node is not among the voters says it waits to be added");
    let out = format(
        d,
        &cluster,
        "4",
        &[
            "--voters",
            "1@127.0.0.1:9094,2@127.0.0.1:9194,3@127.0.0.1:9294",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(
            "Note: node 4 is not among the --voters. It starts as an observer and waits until the leader adds it"
        ),
        "{}",
        text(&out.stdout)
    );
    let meta = std::fs::read(dir.join("meta.properties")).unwrap();

    eprintln!("step 2: --ignore-formatted with another node id or cluster is an error, and changes nothing");
    let other = text(&kraftd(&["random-uuid"]).stdout).trim().to_string();
    for (cluster_id, node) in [(cluster.as_str(), "5"), (other.as_str(), "4")] {
        let out = format(d, cluster_id, node, &["--join", "--ignore-formatted"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!(
                "kraftd format: {d} is already formatted for cluster {cluster} as node 4, not cluster {cluster_id} as node {node}"
            )),
            "{err}"
        );
        assert_eq!(std::fs::read(dir.join("meta.properties")).unwrap(), meta);
    }
    let out = format(d, &cluster, "4", &["--join", "--ignore-formatted"]);
    assert!(
        out.status.success(),
        "the same ids are kept: {}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(dir.join("meta.properties")).unwrap(), meta);

    eprintln!("step 3: storage info on the fresh directory");
    let (code, doc) = info_json(&dir);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["meta_properties"]["cluster_id"], cluster.as_str());
    assert_eq!(doc["meta_properties"]["node_id"], 4);
    assert_eq!(doc["checkpoints"][0]["end_offset"], 0);
    assert!(doc["raft_log"].is_null(), "never started: {doc}");
    assert_eq!(doc["problems"], serde_json::json!([]));
    let table = kraftd(&["storage", "info", d]);
    assert!(
        text(&table.stdout).contains(&format!(
            "Found metadata: {{cluster.id={cluster}, directory.id="
        )),
        "{}",
        text(&table.stdout)
    );

    eprintln!("step 4: a damaged meta.properties is a problem: exit 1");
    std::fs::write(dir.join("meta.properties"), "node.id=banana\n").unwrap();
    let (code, doc) = info_json(&dir);
    assert_eq!(code, 1, "{doc}");
    let problems = doc["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap_or("").contains("meta.properties")),
        "{doc}"
    );
}

#[test]
fn storage_info_reads_a_running_nodes_log_and_names_the_process_holding_it() {
    run("storage_info_running", async {
        let mut s = Scenario::start(1, &[NO_NOOPS]).await;
        let id = s.leader().await;
        let acked = write_n(&s, &[id], "info", 20).await;
        let end = acked.iter().map(|a| a.offset).max().unwrap() + 1;
        let node = s.q.node(id).unwrap();
        let pid = node.pid().expect("running");
        let (code, doc) = info_json(&node.data_dir);
        assert_eq!(code, 0, "{doc}");
        let raft = &doc["raft_log"];
        assert_eq!(raft["in_use_by_pid"], pid, "{doc}");
        assert!(raft["log_end_offset"].as_i64().unwrap() >= end, "{doc}");
        assert!(raft["entries"].as_u64().unwrap() >= 20, "{doc}");
        assert!(raft["committed"].is_string(), "{doc}");

        eprintln!("  stopped, nobody holds it");
        s.q.stop(id).await.unwrap();
        let (code, doc) = info_json(&s.q.node(id).unwrap().data_dir);
        assert_eq!(code, 0, "{doc}");
        assert!(doc["raft_log"]["in_use_by_pid"].is_null(), "{doc}");
    });
}
