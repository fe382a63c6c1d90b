//! Principals and roles on the API listener (SECURITY.md), on a live three-node quorum with
//! a principals file, twice: in plaintext with bearer tokens, and over TLS with client
//! certificates from `kraftd certs`. Every call is tried by every kind of caller (no
//! credentials, a malformed header, an unknown token, reader, broker:1 acting for itself
//! and for broker 2, operator; over TLS also another CA's certificate and an expired one),
//! on the leader and on a follower (which forwards writes with the caller's credentials, so
//! the leader checks them again). Each gets the status its role allows; every refusal
//! changes nothing in any node's image; each refused write is in the `audit` log.

mod common;

use common::*;
use kraftd::api::auth::token_sha256;
use kraftd::cli::certs::{ca_file, client_tls};
use kraftd::cli::fleet::registration;
use kraftd::client::{Client, CreateTopic};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const OPERATOR: &str = "operator-token-0123456789";
const READER: &str = "reader-token-0123456789";
const BROKER1: &str = "broker1-token-0123456789";
const BROKER2: &str = "broker2-token-0123456789";

/// The principals, by token and by the common names of `kraftd certs`; /healthz closed.
fn principals_file(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for (name, role, token) in [
        ("operator", "operator", OPERATOR),
        ("reader", "reader", READER),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Nobody,
    Malformed,
    UnknownToken,
    Reader,
    Broker1,
    Operator,
    /// TLS only: the operator's certificate from another CA.
    OtherCa,
    /// TLS only: an operator certificate of the cluster's CA that has expired.
    Expired,
}

const PLAIN_CALLERS: [Caller; 6] = [
    Caller::Nobody,
    Caller::Malformed,
    Caller::UnknownToken,
    Caller::Reader,
    Caller::Broker1,
    Caller::Operator,
];

/// How the callers prove who they are.
enum Mode {
    /// Plaintext, bearer tokens.
    Tokens,
    /// TLS from `kraftd certs` in `dir`; `other` holds another CA's, `expired` expired ones.
    Certificates {
        dir: PathBuf,
        other: PathBuf,
        expired: PathBuf,
    },
}

impl Mode {
    fn callers(&self) -> Vec<Caller> {
        let mut all = PLAIN_CALLERS.to_vec();
        if matches!(self, Mode::Certificates { .. }) {
            all.extend([Caller::OtherCa, Caller::Expired]);
        }
        all
    }

    /// The header a caller sends.
    fn header(&self, who: Caller) -> Option<String> {
        match (self, who) {
            (_, Caller::Malformed) => Some(format!("Basic {OPERATOR}")),
            (_, Caller::UnknownToken) => Some("Bearer not-a-known-token".into()),
            (Mode::Certificates { .. }, _) | (_, Caller::Nobody) => None,
            (Mode::Tokens, Caller::Reader) => Some(format!("Bearer {READER}")),
            (Mode::Tokens, Caller::Broker1) => Some(format!("Bearer {BROKER1}")),
            (Mode::Tokens, _) => Some(format!("Bearer {OPERATOR}")),
        }
    }

    /// The HTTP client a caller uses: over TLS, trusting the cluster's CA and presenting
    /// its certificate, if it has one.
    fn http(&self, who: Caller) -> reqwest::Client {
        let b = reqwest::Client::builder();
        let Mode::Certificates {
            dir,
            other,
            expired,
        } = self
        else {
            return b.build().unwrap();
        };
        let (from, name) = match who {
            Caller::Reader => (dir, Some("reader")),
            Caller::Broker1 => (dir, Some("broker-1")),
            Caller::Operator => (dir, Some("operator")),
            Caller::OtherCa => (other, Some("operator")),
            Caller::Expired => (expired, Some("operator")),
            _ => (dir, None),
        };
        let tls = client_tls(&ca_file(dir), from, name).unwrap();
        b.use_preconfigured_tls(tls).build().unwrap()
    }

    fn scheme(&self) -> &'static str {
        match self {
            Mode::Tokens => "http",
            Mode::Certificates { .. } => "https",
        }
    }

    /// A kraftd client acting as broker `id`.
    fn broker_client(&self, api: &str, id: i32) -> Client {
        let c = Client::new(api).unwrap();
        match self {
            Mode::Tokens => c.with_token(if id == 1 { BROKER1 } else { BROKER2 }),
            Mode::Certificates { dir, .. } => {
                let tls = client_tls(&ca_file(dir), dir, Some(&format!("broker-{id}"))).unwrap();
                c.with_tls(tls).unwrap()
            }
        }
    }
}

/// One call; None when the connection failed (a refused handshake).
async fn call(
    mode: &Mode,
    base: &str,
    who: Caller,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Option<(StatusCode, Value)> {
    let mut rb = mode
        .http(who)
        .request(method, format!("{}://{base}{path}", mode.scheme()));
    if let Some(h) = mode.header(who) {
        rb = rb.header("authorization", h);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.ok()?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    Some((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
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
fn every_route_answers_each_role_by_token_as_the_roles_table_says_and_refusals_change_nothing() {
    run("api_auth_tokens", async {
        let scratch = tempfile::tempdir().unwrap();
        let file = principals_file(scratch.path());
        let file = file.to_str().unwrap().to_string();
        eprintln!("step 0: three plaintext nodes with a principals file (tokens)");
        let s = Scenario::start_as(
            3,
            &[
                ("KRAFTD_AUTH_PRINCIPALS_FILE", &file),
                ("KRAFTD_BROKER_SESSION_TIMEOUT_MS", "600000"),
                NO_NOOPS,
            ],
            Some(OPERATOR),
        )
        .await;
        matrix(s, Mode::Tokens).await;
    });
}

#[test]
fn every_route_answers_each_certificate_over_tls_as_the_roles_table_says_and_refusals_change_nothing(
) {
    run("api_auth_tls", async {
        let scratch = tempfile::tempdir().unwrap();
        let (dir, other, expired) = (
            scratch.path().join("certs"),
            scratch.path().join("other"),
            scratch.path().join("expired"),
        );
        eprintln!("step 0: kraftd certs: the cluster's CA, another CA, and expired certificates of the cluster's CA");
        kraftd_certs(&dir, &[]);
        kraftd_certs(&other, &[]);
        expired_certs(&dir, &expired);
        // The principals by common name, with /healthz closed as in the token run.
        principals_file(&dir);
        let s = Scenario::start_secure(
            3,
            &[("KRAFTD_BROKER_SESSION_TIMEOUT_MS", "600000"), NO_NOOPS],
            &dir,
        )
        .await;
        matrix(
            s,
            Mode::Certificates {
                dir,
                other,
                expired,
            },
        )
        .await;
    });
}

async fn matrix(mut s: Scenario, mode: Mode) {
    let leader = s.leader().await;
    let follower = s.q.ids().into_iter().find(|&i| i != leader).unwrap();
    let cluster = s.q.cluster_id().to_string();
    let api = |id: u64| s.q.node(id).unwrap().api_addr.to_string();

    eprintln!(
        "step 1: each broker registers and heartbeats as itself; the operator creates a topic"
    );
    let mut epochs = Vec::new();
    for id in [1, 2] {
        let c = mode.broker_client(&api(leader), id);
        let epoch = c
            .register_broker(id, &registration(&cluster, id, None, uuid::Uuid::new_v4()))
            .await
            .unwrap();
        c.heartbeat(id, &unfencing_heartbeat(epoch)).await.unwrap();
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
    // No NoOps (NO_NOOPS): once the leader's own start-up writes are done, nothing moves
    // the high watermark but an accepted write.
    let hw_before = wait_quiet_log(&s, leader).await;

    eprintln!("step 2: every call by every caller, on the leader and on a follower");
    let (mut refused, mut no_handshake) = (0, 0);
    for node in [leader, follower] {
        let base = api(node);
        for case in cases(&cluster, epochs[1]) {
            for who in mode.callers() {
                let want = match who {
                    Caller::OtherCa | Caller::Expired => None,
                    Caller::Nobody | Caller::Malformed | Caller::UnknownToken => Some(401),
                    Caller::Reader => Some(case.reader),
                    Caller::Broker1 => Some(case.broker1),
                    Caller::Operator => match case.operator {
                        Some(w) => Some(w),
                        None => continue,
                    },
                };
                let got = call(
                    &mode,
                    &base,
                    who,
                    case.method.clone(),
                    case.path,
                    case.body.clone(),
                )
                .await;
                let Some(want) = want else {
                    assert!(
                        got.is_none(),
                        "node {node}: {who:?} {} {} was answered: {got:?}",
                        case.method,
                        case.path
                    );
                    no_handshake += 1;
                    continue;
                };
                let (status, body) = got.unwrap_or_else(|| {
                    panic!(
                        "node {node}: {who:?} {} {}: no answer",
                        case.method, case.path
                    )
                });
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
    eprintln!("  {refused} calls refused with 401 or 403, {no_handshake} refused at the handshake");

    eprintln!("step 3: the refusals changed nothing: every node's image and high watermark");
    let after = wait_same_image(&s, &s.q.ids(), 0).await;
    assert_eq!(before, after, "a refused call changed the image");
    for id in s.q.ids() {
        let hw = s.status(id).await.high_watermark;
        assert_eq!(
            hw, hw_before,
            "node {id}: a refused call moved the high watermark"
        );
    }

    eprintln!("step 4: broker 1 heartbeats for itself through a follower (forwarded with its credentials)");
    mode.broker_client(&api(follower), 1)
        .heartbeat(1, &unfencing_heartbeat(epochs[0]))
        .await
        .unwrap();

    eprintln!("step 5: each refused write is in the audit log, with the principal; an accepted one with its offset");
    let logs = s.q.logs(100_000);
    let lines: Vec<String> = logs
        .lines()
        .filter(|l| l.contains("audit"))
        .map(strip_colours)
        .collect();
    let refused_writes = lines
        .iter()
        .filter(|l| l.contains("principal=reader") && l.contains("refused"))
        .count();
    assert!(
        refused_writes > 0,
        "no audit line for the reader's refused writes:\n{logs}"
    );
    let accepted_with_offset = lines
        .iter()
        .filter(|l| l.contains("principal=operator") && l.contains("accepted"))
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
