//! `/openapi.json` is the contract a live node keeps: schemathesis generates requests from
//! it against a node holding brokers, topics, configs and a snapshot, and checks that no
//! answer is a 5xx and every answer matches the documented status, content type and schema.
//! The run is bounded (examples per operation, and a timeout) and its seed is printed.

mod common;

use common::*;
use std::path::PathBuf;
use std::time::Duration;

use kraftd::client::{ConfigKind, ConfigPatch, CreateTopic};

/// schemathesis: $KRAFTD_SCHEMATHESIS, else the venv `scripts/test` makes.
fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("KRAFTD_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/schemathesis");
    assert!(
        p.exists(),
        "schemathesis is needed: run `scripts/test` (it prepares .venv) or set KRAFTD_SCHEMATHESIS"
    );
    p
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_mismatch() {
    let exe = schemathesis();
    run("openapi_schemathesis", async move {
        let mut s = Scenario::start(1, &[]).await;
        let id = s.leader().await;
        let c = s.client(id);
        let api = s.q.node(id).unwrap().api_addr;

        eprintln!("step 1: the node holds brokers, a topic with configs, and a snapshot");
        let (fleet, _) = s
            .start_brokers(
                &[1, 2, 3],
                |b| Some(format!("r{b}")),
                Duration::from_millis(500),
            )
            .await;
        c.create_topic(&CreateTopic {
            name: "orders".into(),
            partitions: Some(6),
            replication_factor: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
        c.alter_config(
            ConfigKind::Topic,
            "orders",
            &ConfigPatch::set_one("retention.ms", "1000"),
        )
        .await
        .unwrap();
        c.take_snapshot().await.unwrap();

        eprintln!("step 2: the document is served and names every call of the contract");
        let doc: serde_json::Value = reqwest::get(format!("http://{api}/openapi.json"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        for p in [
            "/v1/brokers/{id}/registration",
            "/v1/brokers/{id}/heartbeat",
            "/v1/brokers",
            "/v1/brokers/{id}",
            "/v1/partitions/alter",
            "/v1/topics",
            "/v1/topics/{name}",
            "/v1/topics/{name}/partitions",
            "/v1/configs/{kind}/{name}",
            "/v1/elections",
            "/v1/metadata/log",
            "/v1/metadata/snapshots",
            "/v1/metadata/snapshots/{id}",
            "/v1/metadata/image",
            "/v1/quorum/status",
            "/v1/quorum/replication",
            "/v1/quorum/voters",
            "/v1/quorum/voters/{id}",
            "/v1/quorum/transfer-leader",
            "/v1/quorum/snapshot",
            "/healthz",
            "/readyz",
        ] {
            assert!(
                paths.iter().any(|x| *x == p),
                "{p} is not documented: {paths:?}"
            );
        }

        let seed = s.rng.next() % 1_000_000;
        eprintln!("step 3: schemathesis against the live node (seed {seed})");
        // POST /v1/quorum/voters is left out: it would make the node dial whatever address
        // schemathesis invents, and tests only talk to loopback.
        // schemathesis keeps a cache in its working directory: keep it out of the repo.
        let scratch = tempfile::tempdir().unwrap();
        let out = tokio::process::Command::new(&exe)
            .current_dir(scratch.path())
            .args(["run", &format!("http://{api}/openapi.json")])
            .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
            .args(["--max-examples", "30", "--request-timeout", "40"])
            .args(["--exclude-operation-id", "add_voter"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--seed", &seed.to_string()])
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output();
        // --max-examples bounds the run (about 10 s here); this bounds it for certain.
        let out = tokio::time::timeout(Duration::from_secs(100), out)
            .await
            .expect("schemathesis did not finish within 100 s")
            .expect("running schemathesis");
        let text = String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = text
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        eprintln!(
            "{}\n{}",
            tail.join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "schemathesis found problems (seed {seed}); see above"
        );
        fleet.stop().await;
    });
}
