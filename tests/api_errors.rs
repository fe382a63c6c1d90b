//! Bad requests get a clear Kafka-style error and change nothing (shared/API.md): a real
//! single-node quorum, every refused request checked for its status and code, and the log
//! checked unchanged afterwards.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Vec<u8>>,
    range: Option<&str>,
) -> (StatusCode, Value) {
    let mut rb = http.request(method, url);
    if let Some(b) = body {
        rb = rb.header("content-type", "application/json").body(b);
    }
    if let Some(r) = range {
        rb = rb.header("range", r);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// What is sent, and the status and code it must get.
type Case = (
    &'static str,
    reqwest::Method,
    String,
    Option<Vec<u8>>,
    Option<&'static str>,
    StatusCode,
    &'static str,
);

#[test]
fn bad_requests_get_kafka_style_errors_and_change_nothing() {
    run("bad_requests_change_nothing", async {
        let mut s = Scenario::start(1, &[NO_NOOPS]).await;
        let id = s.leader().await;
        let api = s.q.node(id).unwrap().api_addr;
        let base = format!("http://{api}");
        // No pooling: the server closes a connection whose oversized body it did not read.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        // The new leader still writes on its own for a moment (the bootstrap feature levels,
        // the voters' directory ids, checked every 2 s): start once the log is quiet.
        let before = eventually("the log is quiet", Duration::from_secs(20), || async {
            let a = s.status(id).await.high_watermark;
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            let b = s.status(id).await.high_watermark;
            if a == b {
                Ok(b)
            } else {
                Err(format!("high watermark moved {a} -> {b}"))
            }
        })
        .await;

        use reqwest::Method as M;
        let big = format!(r#"{{"set":{{"k":"{}"}}}}"#, "x".repeat(2 * 1024 * 1024)).into_bytes();
        let cases: Vec<Case> = vec![
            (
                "body over 1 MiB",
                M::PATCH,
                "/v1/configs/broker/1".into(),
                Some(big),
                None,
                StatusCode::PAYLOAD_TOO_LARGE,
                "INVALID_REQUEST",
            ),
            (
                "unknown JSON field",
                M::PATCH,
                "/v1/configs/broker/1".into(),
                Some(br#"{"sett":{"a":"1"}}"#.to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
            ),
            (
                "not JSON",
                M::PATCH,
                "/v1/configs/broker/1".into(),
                Some(b"{set".to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
            ),
            (
                "empty change",
                M::PATCH,
                "/v1/configs/broker/1".into(),
                Some(b"{}".to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
            ),
            (
                "bad config name",
                M::PATCH,
                "/v1/configs/broker/1".into(),
                Some(br#"{"set":{"a b":"1"}}"#.to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_CONFIG",
            ),
            (
                "bad broker name",
                M::PATCH,
                "/v1/configs/broker/x".into(),
                Some(br#"{"set":{"a":"1"}}"#.to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
            ),
            (
                "unknown topic",
                M::PATCH,
                "/v1/configs/topic/nope".into(),
                Some(br#"{"set":{"a":"1"}}"#.to_vec()),
                None,
                StatusCode::NOT_FOUND,
                "UNKNOWN_TOPIC_OR_PARTITION",
            ),
            (
                "offset not a number",
                M::GET,
                "/v1/metadata/log?offset=abc".into(),
                None,
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
            ),
            (
                "unknown query parameter",
                M::GET,
                "/v1/metadata/log?offset=0&foo=1".into(),
                None,
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
            ),
            (
                "offset beyond the high watermark",
                M::GET,
                format!("/v1/metadata/log?offset={}", before + 1000),
                None,
                None,
                StatusCode::RANGE_NOT_SATISFIABLE,
                "OFFSET_OUT_OF_RANGE",
            ),
            (
                "unknown snapshot",
                M::GET,
                "/v1/metadata/snapshots/999-9".into(),
                None,
                None,
                StatusCode::NOT_FOUND,
                "SNAPSHOT_NOT_FOUND",
            ),
            (
                "malformed snapshot id",
                M::GET,
                "/v1/metadata/snapshots/..%2Fmeta.properties".into(),
                None,
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
            ),
            (
                "unsatisfiable range",
                M::GET,
                "/v1/metadata/snapshots/0-0".into(),
                None,
                Some("bytes=999999-"),
                StatusCode::RANGE_NOT_SATISFIABLE,
                "INVALID_REQUEST",
            ),
            (
                "remove a non-voter",
                M::DELETE,
                "/v1/quorum/voters/9".into(),
                None,
                None,
                StatusCode::NOT_FOUND,
                "VOTER_NOT_FOUND",
            ),
            (
                "add a voter that is not there",
                M::POST,
                "/v1/quorum/voters".into(),
                Some(br#"{"id":9,"peer":"127.0.0.1:1"}"#.to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
            ),
            (
                "registration with an unknown field",
                M::POST,
                "/v1/brokers/1/registration".into(),
                Some(br#"{"cluster_id":"x","incarnation_id":"y","listeners":[],"extra":1}"#.to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
            ),
            (
                "registration for another cluster",
                M::POST,
                "/v1/brokers/1/registration".into(),
                Some(br#"{"cluster_id":"AAAAAAAAAAAAAAAAAAAAAA","incarnation_id":"4a2d6c1e-0a47-4f39-9d3c-2f6f8e0b8a11","listeners":[{"name":"PLAINTEXT","host":"h","port":9092,"security_protocol":"PLAINTEXT"}]}"#.to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INCONSISTENT_CLUSTER_ID",
            ),
            (
                "broker id not a number",
                M::POST,
                "/v1/brokers/x/heartbeat".into(),
                Some(br#"{"broker_epoch":1,"current_metadata_offset":0}"#.to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
            ),
            (
                "heartbeat of an unregistered broker",
                M::POST,
                "/v1/brokers/7/heartbeat".into(),
                Some(br#"{"broker_epoch":1,"current_metadata_offset":0}"#.to_vec()),
                None,
                StatusCode::NOT_FOUND,
                "BROKER_ID_NOT_REGISTERED",
            ),
            (
                "heartbeat with a string epoch",
                M::POST,
                "/v1/brokers/7/heartbeat".into(),
                Some(br#"{"broker_epoch":"1","current_metadata_offset":0}"#.to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
            ),
            (
                "unregister an unknown broker",
                M::DELETE,
                "/v1/brokers/7".into(),
                None,
                None,
                StatusCode::NOT_FOUND,
                "BROKER_ID_NOT_REGISTERED",
            ),
            (
                "AlterPartition from an unregistered broker",
                M::POST,
                "/v1/partitions/alter".into(),
                Some(br#"{"broker_id":7,"broker_epoch":1,"topics":[]}"#.to_vec()),
                None,
                StatusCode::CONFLICT,
                "STALE_BROKER_EPOCH",
            ),
            (
                "topic with a bad name",
                M::POST,
                "/v1/topics".into(),
                Some(br#"{"name":"a/b","partitions":1,"replication_factor":1}"#.to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_TOPIC_EXCEPTION",
            ),
            (
                "topic with no brokers to place on",
                M::POST,
                "/v1/topics".into(),
                Some(br#"{"name":"t","partitions":1,"replication_factor":1}"#.to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_REPLICATION_FACTOR",
            ),
            (
                "topic with too many partitions",
                M::POST,
                "/v1/topics".into(),
                Some(br#"{"name":"t","partitions":100000000,"replication_factor":1}"#.to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_PARTITIONS",
            ),
            (
                "topic with a negative partition count",
                M::POST,
                "/v1/topics".into(),
                Some(br#"{"name":"t","partitions":-3,"replication_factor":1}"#.to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_PARTITIONS",
            ),
            (
                "topic with a bad config value",
                M::POST,
                "/v1/topics".into(),
                Some(br#"{"name":"t","partitions":1,"replication_factor":1,"configs":{"unclean.leader.election.enable":"yes"}}"#.to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_CONFIG",
            ),
            (
                "describe an unknown topic",
                M::GET,
                "/v1/topics/nope".into(),
                None,
                None,
                StatusCode::NOT_FOUND,
                "UNKNOWN_TOPIC_OR_PARTITION",
            ),
            (
                "delete an unknown topic",
                M::DELETE,
                "/v1/topics/nope".into(),
                None,
                None,
                StatusCode::NOT_FOUND,
                "UNKNOWN_TOPIC_OR_PARTITION",
            ),
            (
                "shrink a topic that does not exist",
                M::POST,
                "/v1/topics/nope/partitions".into(),
                Some(br#"{"count":1}"#.to_vec()),
                None,
                StatusCode::NOT_FOUND,
                "UNKNOWN_TOPIC_OR_PARTITION",
            ),
            (
                "unknown election type",
                M::POST,
                "/v1/elections".into(),
                Some(br#"{"type":"random"}"#.to_vec()),
                None,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
            ),
            (
                "unknown endpoint",
                M::GET,
                "/v1/nothing".into(),
                None,
                None,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
            ),
        ];
        for (what, method, path, body, range, status, code) in cases {
            let (got, v) = call(&http, method, &format!("{base}{path}"), body, range).await;
            eprintln!("  {what}: {got} {v}");
            assert_eq!(got, status, "{what}: {v}");
            assert_eq!(v["error"], code, "{what}: {v}");
            assert!(
                v["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{what}: no message in {v}"
            );
        }
        let after = s.status(id).await.high_watermark;
        assert_eq!(before, after, "refused requests wrote nothing");
    });
}
