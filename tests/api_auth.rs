//! Principals and roles on the API listener (SECURITY.md), on a live three-node quorum with
//! a principals file: every call is tried by every kind of caller (no credentials, a
//! malformed header, an unknown token, reader, broker:1 acting for itself and for broker 2,
//! operator), on the leader and on a follower (which forwards writes with the caller's
//! token, so the leader checks it again). Each gets the status its role allows; every
//! refusal changes nothing in any node's image; each refused write is in the `audit` log.

mod common;

use common::*;
use kraftd::api::auth::token_sha256;
use kraftd::cli::fleet::registration;
use kraftd::client::{Client, CreateTopic, Heartbeat};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const OPERATOR: &str = "operator-token-0123456789";
const READER: &str = "reader-token-0123456789";
const BROKER1: &str = "broker1-token-0123456789";
const BROKER2: &str = "broker2-token-0123456789";

fn principals_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::new();
    for (name, role, token) in [
        ("ops", "operator", OPERATOR),
        ("dashboards", "reader", READER),
        ("broker-1", "broker:1", BROKER1),
        ("broker-2", "broker:2", BROKER2),
    ] {
        text.push_str(&format!(
            "[[principal]]\nname = {name:?}\nrole = {role:?}\ntoken_sha256 = {:?}\n\n",
            token_sha256(token)
        ));
    }
    let path = dir.join("principals.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Who calls.
#[derive(Debug, Clone, Copy)]
enum Caller {
    Nobody,
    Malformed,
    UnknownToken,
    Reader,
    Broker1,
    Operator,
}

impl Caller {
    fn header(self) -> Option<String> {
        match self {
            Caller::Nobody => None,
            Caller::Malformed => Some(format!("Basic {OPERATOR}")),
            Caller::UnknownToken => Some("Bearer not-a-known-token".into()),
            Caller::Reader => Some(format!("Bearer {READER}")),
            Caller::Broker1 => Some(format!("Bearer {BROKER1}")),
            Caller::Operator => Some(format!("Bearer {OPERATOR}")),
        }
    }
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    who: Caller,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut rb = http.request(method, format!("http://{base}{path}"));
    if let Some(h) = who.header() {
        rb = rb.header("authorization", h);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// One call and what each caller gets.
struct Case {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    /// Expected status for Reader, Broker1, Operator (the others always get 401). None:
    /// the operator's call is not made here (it would change the image).
    reader: u16,
    broker1: u16,
    operator: Option<u16>,
}

fn cases(cluster_id: &str, broker2_epoch: i64) -> Vec<Case> {
    let reg =
        serde_json::to_value(registration(cluster_id, 1, None, uuid::Uuid::new_v4())).unwrap();
    let hb2 = json!({"broker_epoch": broker2_epoch, "current_metadata_offset": 0});
    let alter_for_2 = json!({"broker_id": 2, "broker_epoch": broker2_epoch, "topics": []});
    let get = |path, reader, broker1| Case {
        method: Method::GET,
        path,
        body: None,
        reader,
        broker1,
        operator: Some(200),
    };
    let write = |method, path, body| Case {
        method,
        path,
        body,
        reader: 403,
        broker1: 403,
        operator: None,
    };
    vec![
        get("/healthz", 200, 403),
        get("/v1/quorum/status", 200, 403),
        get("/v1/brokers", 200, 403),
        get("/v1/topics", 200, 403),
        get("/v1/metadata/log?offset=0", 200, 200),
        get("/v1/metadata/image", 200, 200),
        get("/v1/metadata/snapshots", 200, 200),
        write(
            Method::POST,
            "/v1/topics",
            Some(json!({"name": "refused", "partitions": 1, "replication_factor": 1})),
        ),
        write(Method::DELETE, "/v1/topics/orders", None),
        write(
            Method::PATCH,
            "/v1/configs/topic/orders",
            Some(json!({"set": {"retention.ms": "1"}})),
        ),
        write(
            Method::POST,
            "/v1/elections",
            Some(json!({"type": "preferred"})),
        ),
        write(Method::POST, "/v1/quorum/snapshot", None),
        write(
            Method::POST,
            "/v1/quorum/voters",
            Some(json!({"id": 9, "peer": "127.0.0.1:1"})),
        ),
        write(Method::DELETE, "/v1/quorum/voters/3", None),
        write(Method::DELETE, "/v1/brokers/2", None),
        // Broker 1 acting for broker 2.
        write(Method::POST, "/v1/brokers/2/heartbeat", Some(hb2)),
        write(Method::POST, "/v1/brokers/2/registration", Some(reg)),
        write(Method::POST, "/v1/partitions/alter", Some(alter_for_2)),
    ]
}

#[test]
fn every_route_answers_each_role_as_the_roles_table_says_and_refusals_change_nothing() {
    run("api_auth", async {
        let scratch = tempfile::tempdir().unwrap();
        let file = principals_file(scratch.path());
        let file = file.to_str().unwrap().to_string();
        eprintln!(
            "step 0: three nodes with a principals file (operator, reader, broker:1, broker:2)"
        );
        let mut s = Scenario::start_as(
            3,
            &[
                ("KRAFTD_AUTH_PRINCIPALS_FILE", &file),
                ("KRAFTD_BROKER_SESSION_TIMEOUT_MS", "600000"),
            ],
            Some(OPERATOR),
        )
        .await;
        let leader = s.leader().await;
        let follower = s.q.ids().into_iter().find(|&i| i != leader).unwrap();
        let cluster = s.q.cluster_id().to_string();

        eprintln!(
            "step 1: each broker registers and heartbeats as itself; the operator creates a topic"
        );
        let mut epochs = Vec::new();
        for (id, token) in [(1, BROKER1), (2, BROKER2)] {
            let c = Client::new(&s.q.node(leader).unwrap().api_addr.to_string())
                .unwrap()
                .with_token(token);
            let epoch = c
                .register_broker(id, &registration(&cluster, id, None, uuid::Uuid::new_v4()))
                .await
                .unwrap();
            c.heartbeat(
                id,
                &Heartbeat {
                    broker_epoch: epoch,
                    current_metadata_offset: i64::MAX / 2,
                    want_fence: false,
                    want_shutdown: false,
                },
            )
            .await
            .unwrap();
            epochs.push(epoch);
        }
        s.client(leader)
            .create_topic(&CreateTopic {
                name: "orders".into(),
                partitions: Some(2),
                replication_factor: Some(2),
                ..Default::default()
            })
            .await
            .unwrap();
        let before = wait_same_image(&s, &s.q.ids(), 0).await;

        eprintln!("step 2: every call by every caller, on the leader and on a follower");
        let http = reqwest::Client::new();
        let mut refused = 0;
        for node in [leader, follower] {
            let base = s.q.node(node).unwrap().api_addr.to_string();
            for case in cases(&cluster, epochs[1]) {
                for who in [
                    Caller::Nobody,
                    Caller::Malformed,
                    Caller::UnknownToken,
                    Caller::Reader,
                    Caller::Broker1,
                    Caller::Operator,
                ] {
                    let want = match who {
                        Caller::Nobody | Caller::Malformed | Caller::UnknownToken => 401,
                        Caller::Reader => case.reader,
                        Caller::Broker1 => case.broker1,
                        Caller::Operator => match case.operator {
                            Some(w) => w,
                            None => continue,
                        },
                    };
                    let (status, body) = call(
                        &http,
                        &base,
                        who,
                        case.method.clone(),
                        case.path,
                        case.body.clone(),
                    )
                    .await;
                    assert_eq!(
                        status.as_u16(),
                        want,
                        "node {node}: {who:?} {} {}: {body}",
                        case.method,
                        case.path
                    );
                    let code = match want {
                        401 => Some("SASL_AUTHENTICATION_FAILED"),
                        403 => Some("CLUSTER_AUTHORIZATION_FAILED"),
                        _ => None,
                    };
                    if let Some(code) = code {
                        assert_eq!(body["error"], code, "{who:?} {}: {body}", case.path);
                        refused += 1;
                    }
                }
            }
        }
        eprintln!("  {refused} calls refused with 401 or 403");

        eprintln!("step 3: the refusals changed nothing in any node's image");
        let after = wait_same_image(&s, &s.q.ids(), 0).await;
        assert_eq!(before, after, "a refused call changed the image");

        eprintln!(
            "step 4: broker 1 heartbeats for itself through a follower (forwarded with its token)"
        );
        let c = Client::new(&s.q.node(follower).unwrap().api_addr.to_string())
            .unwrap()
            .with_token(BROKER1);
        c.heartbeat(
            1,
            &Heartbeat {
                broker_epoch: epochs[0],
                current_metadata_offset: i64::MAX / 2,
                want_fence: false,
                want_shutdown: false,
            },
        )
        .await
        .unwrap();

        eprintln!("step 5: each refused write is in the audit log, with the principal");
        let logs = s.q.logs(100_000);
        let refused_writes = logs
            .lines()
            .filter(|l| l.contains("audit") && l.contains("refused") && l.contains("dashboards"))
            .count();
        assert!(
            refused_writes > 0,
            "no audit line for the reader's refused writes:\n{logs}"
        );
        // The operator's topic creation (on the leader) names the offset it committed at.
        let accepted_with_offset = logs
            .lines()
            .filter(|l| l.contains("audit") && l.contains("accepted") && l.contains("ops"))
            .map(strip_colours)
            .filter(|l| {
                l.rsplit("offset=")
                    .next()
                    .and_then(|rest| rest.split_whitespace().next())
                    .is_some_and(|o| o.parse::<u64>().is_ok())
            })
            .count();
        assert!(
            accepted_with_offset > 0,
            "no audit line gives the operator's committed write its offset:\n{logs}"
        );
    });
}

/// A log line without its terminal colour codes.
fn strip_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
