//! Bad requests get a clear Kafka-style error and change nothing (shared/API.md): a real
//! single-node quorum, every refused request checked for its status and code, and the log
//! checked unchanged afterwards.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;

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
struct Case {
    /// What is wrong with the request.
    what: &'static str,
    method: reqwest::Method,
    path: String,
    body: Option<Vec<u8>>,
    /// A `Range` header.
    range: Option<&'static str>,
    /// The status it must get.
    status: StatusCode,
    /// The error code it must carry.
    code: &'static str,
}

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
        let before = wait_quiet_log(&s, id).await;

        use reqwest::Method as M;
        let big = format!(r#"{{"set":{{"k":"{}"}}}}"#, "x".repeat(2 * 1024 * 1024)).into_bytes();
        let cases: Vec<Case> = vec![
            Case {
                what: "body over 1 MiB",
                method: M::PATCH,
                path: "/v1/configs/broker/1".into(),
                body: Some(big),
                range: None,
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "INVALID_REQUEST",
            },
            Case {
                what: "unknown JSON field",
                method: M::PATCH,
                path: "/v1/configs/broker/1".into(),
                body: Some(br#"{"sett":{"a":"1"}}"#.to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_REQUEST",
            },
            Case {
                what: "not JSON",
                method: M::PATCH,
                path: "/v1/configs/broker/1".into(),
                body: Some(b"{set".to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_REQUEST",
            },
            Case {
                what: "empty change",
                method: M::PATCH,
                path: "/v1/configs/broker/1".into(),
                body: Some(b"{}".to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_REQUEST",
            },
            Case {
                what: "bad config name",
                method: M::PATCH,
                path: "/v1/configs/broker/1".into(),
                body: Some(br#"{"set":{"a b":"1"}}"#.to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_CONFIG",
            },
            Case {
                what: "bad broker name",
                method: M::PATCH,
                path: "/v1/configs/broker/x".into(),
                body: Some(br#"{"set":{"a":"1"}}"#.to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_REQUEST",
            },
            Case {
                what: "unknown topic",
                method: M::PATCH,
                path: "/v1/configs/topic/nope".into(),
                body: Some(br#"{"set":{"a":"1"}}"#.to_vec()),
                range: None,
                status: StatusCode::NOT_FOUND,
                code: "UNKNOWN_TOPIC_OR_PARTITION",
            },
            Case {
                what: "offset not a number",
                method: M::GET,
                path: "/v1/metadata/log?offset=abc".into(),
                body: None,
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_REQUEST",
            },
            Case {
                what: "unknown query parameter",
                method: M::GET,
                path: "/v1/metadata/log?offset=0&foo=1".into(),
                body: None,
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_REQUEST",
            },
            Case {
                what: "offset beyond the high watermark",
                method: M::GET,
                path: format!("/v1/metadata/log?offset={}", before + 1000),
                body: None,
                range: None,
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                code: "OFFSET_OUT_OF_RANGE",
            },
            Case {
                what: "unknown snapshot",
                method: M::GET,
                path: "/v1/metadata/snapshots/999-9".into(),
                body: None,
                range: None,
                status: StatusCode::NOT_FOUND,
                code: "SNAPSHOT_NOT_FOUND",
            },
            Case {
                what: "malformed snapshot id",
                method: M::GET,
                path: "/v1/metadata/snapshots/..%2Fmeta.properties".into(),
                body: None,
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_REQUEST",
            },
            Case {
                what: "unsatisfiable range",
                method: M::GET,
                path: "/v1/metadata/snapshots/0-0".into(),
                body: None,
                range: Some("bytes=999999-"),
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                code: "INVALID_REQUEST",
            },
            Case {
                what: "remove a non-voter",
                method: M::DELETE,
                path: "/v1/quorum/voters/9".into(),
                body: None,
                range: None,
                status: StatusCode::NOT_FOUND,
                code: "VOTER_NOT_FOUND",
            },
            Case {
                what: "add a voter that is not there",
                method: M::POST,
                path: "/v1/quorum/voters".into(),
                body: Some(br#"{"id":9,"peer":"127.0.0.1:1"}"#.to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_REQUEST",
            },
            Case {
                what: "registration with an unknown field",
                method: M::POST,
                path: "/v1/brokers/1/registration".into(),
                body: Some(br#"{"cluster_id":"x","incarnation_id":"y","listeners":[],"extra":1}"#.to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_REQUEST",
            },
            Case {
                what: "registration for another cluster",
                method: M::POST,
                path: "/v1/brokers/1/registration".into(),
                body: Some(br#"{"cluster_id":"AAAAAAAAAAAAAAAAAAAAAA","incarnation_id":"4a2d6c1e-0a47-4f39-9d3c-2f6f8e0b8a11","listeners":[{"name":"PLAINTEXT","host":"h","port":9092,"security_protocol":"PLAINTEXT"}]}"#.to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INCONSISTENT_CLUSTER_ID",
            },
            Case {
                what: "broker id not a number",
                method: M::POST,
                path: "/v1/brokers/x/heartbeat".into(),
                body: Some(br#"{"broker_epoch":1,"current_metadata_offset":0}"#.to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_REQUEST",
            },
            Case {
                what: "heartbeat of an unregistered broker",
                method: M::POST,
                path: "/v1/brokers/7/heartbeat".into(),
                body: Some(br#"{"broker_epoch":1,"current_metadata_offset":0}"#.to_vec()),
                range: None,
                status: StatusCode::NOT_FOUND,
                code: "BROKER_ID_NOT_REGISTERED",
            },
            Case {
                what: "heartbeat with a string epoch",
                method: M::POST,
                path: "/v1/brokers/7/heartbeat".into(),
                body: Some(br#"{"broker_epoch":"1","current_metadata_offset":0}"#.to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_REQUEST",
            },
            Case {
                what: "unregister an unknown broker",
                method: M::DELETE,
                path: "/v1/brokers/7".into(),
                body: None,
                range: None,
                status: StatusCode::NOT_FOUND,
                code: "BROKER_ID_NOT_REGISTERED",
            },
            Case {
                what: "AlterPartition from an unregistered broker",
                method: M::POST,
                path: "/v1/partitions/alter".into(),
                body: Some(br#"{"broker_id":7,"broker_epoch":1,"topics":[]}"#.to_vec()),
                range: None,
                status: StatusCode::CONFLICT,
                code: "STALE_BROKER_EPOCH",
            },
            Case {
                what: "topic with a bad name",
                method: M::POST,
                path: "/v1/topics".into(),
                body: Some(br#"{"name":"a/b","partitions":1,"replication_factor":1}"#.to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_TOPIC_EXCEPTION",
            },
            Case {
                what: "topic with no brokers to place on",
                method: M::POST,
                path: "/v1/topics".into(),
                body: Some(br#"{"name":"t","partitions":1,"replication_factor":1}"#.to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_REPLICATION_FACTOR",
            },
            Case {
                what: "topic with too many partitions",
                method: M::POST,
                path: "/v1/topics".into(),
                body: Some(br#"{"name":"t","partitions":100000000,"replication_factor":1}"#.to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_PARTITIONS",
            },
            Case {
                what: "topic with a negative partition count",
                method: M::POST,
                path: "/v1/topics".into(),
                body: Some(br#"{"name":"t","partitions":-3,"replication_factor":1}"#.to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_PARTITIONS",
            },
            Case {
                what: "topic with a bad config value",
                method: M::POST,
                path: "/v1/topics".into(),
                body: Some(br#"{"name":"t","partitions":1,"replication_factor":1,"configs":{"unclean.leader.election.enable":"yes"}}"#.to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_CONFIG",
            },
            Case {
                what: "describe an unknown topic",
                method: M::GET,
                path: "/v1/topics/nope".into(),
                body: None,
                range: None,
                status: StatusCode::NOT_FOUND,
                code: "UNKNOWN_TOPIC_OR_PARTITION",
            },
            Case {
                what: "delete an unknown topic",
                method: M::DELETE,
                path: "/v1/topics/nope".into(),
                body: None,
                range: None,
                status: StatusCode::NOT_FOUND,
                code: "UNKNOWN_TOPIC_OR_PARTITION",
            },
            Case {
                what: "shrink a topic that does not exist",
                method: M::POST,
                path: "/v1/topics/nope/partitions".into(),
                body: Some(br#"{"count":1}"#.to_vec()),
                range: None,
                status: StatusCode::NOT_FOUND,
                code: "UNKNOWN_TOPIC_OR_PARTITION",
            },
            Case {
                what: "unknown election type",
                method: M::POST,
                path: "/v1/elections".into(),
                body: Some(br#"{"type":"random"}"#.to_vec()),
                range: None,
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_REQUEST",
            },
            Case {
                what: "unknown endpoint",
                method: M::GET,
                path: "/v1/nothing".into(),
                body: None,
                range: None,
                status: StatusCode::NOT_FOUND,
                code: "NOT_FOUND",
            },
        ];
        for Case {
            what,
            method,
            path,
            body,
            range,
            status,
            code,
        } in cases
        {
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
