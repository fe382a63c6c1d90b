//! The API listener (`/v1`, shared/API.md): JSON in and out, Kafka-style error codes.
//! Followers serve reads from their committed image and forward writes to the leader.

// Handlers return openraft's large error types and axum responses as errors.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod auth;
pub mod brokers;
pub mod metadata;
pub mod metrics;
pub mod openapi;
pub mod quorum;
pub mod topics;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use openraft::async_runtime::WatchReceiver;

use crate::contract::metadata::SnapshotRef;
use crate::contract::{ErrorBody, ErrorCode};
use crate::controller::ControllerError;
use crate::node::handle::Node;
use crate::raft::NodeId;

/// Largest request body.
pub const MAX_BODY: usize = 1024 * 1024;
/// Header marking a request a follower forwarded (forwarded once at most).
pub const FORWARDED: &str = "kraft-forwarded";

/// An error answer, sent as an [`ErrorBody`].
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Kafka-style code.
    pub code: ErrorCode,
    /// For a person.
    pub message: String,
    /// The leader, where it helps.
    pub leader_id: Option<NodeId>,
    /// The snapshot to fetch instead (410 below the log start).
    pub snapshot: Option<SnapshotRef>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            leader_id: None,
            snapshot: None,
        }
    }

    /// 400 INVALID_REQUEST.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    /// 503 NOT_CONTROLLER.
    pub fn not_controller(leader_id: Option<NodeId>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotController,
            match leader_id {
                Some(l) => format!("this controller is not the active controller; node {l} is"),
                None => "no active controller is known right now; retry shortly".into(),
            },
        );
        e.leader_id = leader_id;
        e
    }

    /// 500 for failures inside the node.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::UnknownServerError,
            message,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: self.message,
            leader_id: self.leader_id,
            snapshot: self.snapshot,
        };
        (self.status, Json(body)).into_response()
    }
}

/// A raw body with the contract's errors (413 over [`MAX_BODY`]); for handlers that may
/// forward the body to the leader unparsed.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(body_rejection)
    }
}

fn body_rejection(rej: axum::extract::rejection::BytesRejection) -> ApiError {
    if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidRequest,
            format!("request body is over {MAX_BODY} bytes"),
        )
    } else {
        ApiError::invalid(format!("cannot read the request body: {rej}"))
    }
}

/// The API router; with `principals`, every call is authenticated and authorized
/// ([`auth`]).
pub fn router(node: Arc<Node>, principals: Option<Arc<auth::PrincipalsWatch>>) -> Router {
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi::serve))
        .merge(quorum::routes())
        .merge(metadata::routes())
        .merge(admin::routes())
        .merge(brokers::routes())
        .merge(topics::routes())
        .route("/metrics", get(metrics))
        .route("/ui", get(ui::page));
    // Route layers see the matched route template; unknown paths are not counted. The
    // check runs inside the metrics layer, so refusals are counted by status too.
    let routes = match principals {
        Some(p) => routes.route_layer(axum::middleware::from_fn_with_state(p, auth::check)),
        None => routes,
    };
    routes
        .route_layer(axum::middleware::from_fn(crate::telemetry::track_http))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(node)
}

/// Prometheus text format (version 0.0.4).
async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let body = metrics::render(&node);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: a leader is known and this node has applied what it knows to be committed (a
/// leader: its own first entry of the term).
async fn readyz(State(node): State<Arc<Node>>) -> Response {
    let m = node.raft().metrics().borrow_watched().clone();
    let applied = node.sm().applied();
    let ready = match (m.current_leader, crate::raft::leading_term(&m).is_some()) {
        (None, _) => Err("no leader is known".to_string()),
        (Some(_), true) => {
            let lease = node.config().election_timeout_max_ms;
            let voters = m.membership_config.membership().voter_ids().count();
            let stale = m.last_quorum_acked.as_ref().is_none_or(|at| {
                openraft::Instant::elapsed(&**at) > std::time::Duration::from_millis(lease)
            });
            if voters > 1 && stale {
                Err(format!(
                    "leader has not heard from a majority for over {lease} ms"
                ))
            } else if applied.epoch as u64 == m.current_term {
                Ok(())
            } else {
                Err("leader has not applied an entry of its term yet".into())
            }
        }
        (Some(_), _) => {
            // Counts of entries: the seen commit index plus one, the applied one plus one.
            let seen = node.seen_commit().map_or(0, |i| i + 1);
            let done = applied.index.map(|i| i + 1).unwrap_or(0);
            if seen > 0 && done >= seen {
                Ok(())
            } else {
                Err(format!("applied {done} of {seen} committed entries"))
            }
        }
    };
    match ready {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotReady, why).into_response()
        }
    }
}

/// How long a follower waits for the leader's answer to a forwarded request (above the
/// longest a handler may take, e.g. adding a voter that must catch up first).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(65);

/// Forwards a request to the leader's API listener (once: a forwarded request that reaches
/// a non-leader gets NOT_CONTROLLER).
pub async fn forward(
    node: &Node,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    forward_within(node, method, path_and_query, headers, body, FORWARD_TIMEOUT).await
}

/// [`forward`], waiting at most `timeout` for the leader's whole answer.
pub async fn forward_within(
    node: &Node,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Response {
    let leader = node.leader();
    let Some(leader) = leader.filter(|l| *l != node.id()) else {
        return ApiError::not_controller(None).into_response();
    };
    if headers.contains_key(FORWARDED) {
        return ApiError::not_controller(Some(leader)).into_response();
    }
    let Some(addr) = node.api_addr_of(leader).await else {
        return ApiError::not_controller(Some(leader)).into_response();
    };
    let to = Upstream {
        http: node.http(),
        from: node.id(),
        leader,
        addr: &addr,
        timeout,
    };
    relay(to, method, path_and_query, headers, body).await
}

/// The leader a request is forwarded to, and how.
struct Upstream<'a> {
    http: &'a crate::raft::peer::client::PeerHttp,
    /// This node (named in the [`FORWARDED`] header).
    from: NodeId,
    leader: NodeId,
    /// The leader's API listener.
    addr: &'a str,
    /// How long to wait for the whole answer.
    timeout: Duration,
}

/// Sends a request to the leader and relays its answer. A failure before anything was sent
/// (no connection) is NOT_CONTROLLER; a write that failed after it was sent is
/// REQUEST_TIMED_OUT, since the leader may have carried it out.
async fn relay(
    to: Upstream<'_>,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let Upstream {
        http,
        from,
        leader,
        addr,
        timeout,
    } = to;
    // Once a write has been sent, a failure says nothing of whether the leader carried it
    // out: the client is told the outcome is unknown, not that nothing happened.
    let write = method != Method::GET && method != Method::HEAD;
    let unknown = move |e: String| {
        if write {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::RequestTimedOut,
                format!("{e}; the leader may have carried the request out"),
            )
        } else {
            ApiError::not_controller(Some(leader)).with_message(e)
        }
    };
    let mut req = http
        .client()
        .request(method, http.url(addr, path_and_query))
        .header(FORWARDED, from.to_string())
        .timeout(timeout)
        .body(body);
    // The leader authenticates and authorizes the forwarded call again.
    for h in [
        header::CONTENT_TYPE,
        header::ACCEPT,
        header::RANGE,
        header::AUTHORIZATION,
        axum::http::HeaderName::from_static(auth::FORWARDED_PRINCIPAL),
    ] {
        if let Some(v) = headers.get(&h) {
            req = req.header(h, v);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
            match resp.bytes().await {
                Ok(b) => {
                    let mut r = Response::new(Body::from(b));
                    *r.status_mut() = status;
                    if let Some(ct) = ct {
                        r.headers_mut().insert(header::CONTENT_TYPE, ct);
                    }
                    r.headers_mut()
                        .insert("kraft-served-by", HeaderValue::from(leader));
                    r
                }
                Err(e) => unknown(format!(
                    "reading the answer of the leader {leader} failed: {}",
                    with_causes(&e)
                ))
                .into_response(),
            }
        }
        // Not connected: the request never reached the leader.
        Err(e) if e.is_connect() => ApiError::not_controller(Some(leader))
            .with_message(format!(
                "forwarding to the leader {leader} at {addr} failed: {}",
                with_causes(&e)
            ))
            .into_response(),
        Err(e) => unknown(format!(
            "forwarding to the leader {leader} at {addr} failed: {}",
            with_causes(&e)
        ))
        .into_response(),
    }
}

/// `e` and its causes, `a: b: c`. reqwest's own text names only the URL, not what went
/// wrong (refused, reset, closed, timed out), which is what an operator needs to know.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

impl ApiError {
    /// The same error with another message.
    pub fn with_message(mut self, m: String) -> Self {
        self.message = m;
        self
    }
}

/// The HTTP status of a Kafka error code the controller refuses with.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Maps a controller failure to its answer.
pub fn controller_error(e: ControllerError) -> ApiError {
    match e {
        ControllerError::Refused { code, message } => ApiError::new(status_of(code), code, message),
        ControllerError::NotController { leader } => ApiError::not_controller(leader),
        e @ ControllerError::Timeout(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::RequestTimedOut,
            e.to_string(),
        ),
        e @ ControllerError::OutcomeUnknown(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::RequestTimedOut,
            e.to_string(),
        ),
        ControllerError::Internal(m) => ApiError::internal(m),
    }
}

/// Where a write was committed; carried on its answer for the `audit` line.
#[derive(Debug, Clone, Copy)]
pub struct Committed(pub crate::controller::WriteAck);

/// `resp`, marked with where its write was committed.
pub(crate) fn committed(mut resp: Response, ack: crate::controller::WriteAck) -> Response {
    resp.extensions_mut().insert(Committed(ack));
    resp
}

/// Parses a JSON body; unknown fields and type errors are 400 INVALID_REQUEST.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("request body: {e}")))
}

/// A write request as it arrived (method, path, headers, body within [`MAX_BODY`]), so a
/// follower can forward it to the active controller unchanged. Must be the last extractor.
pub struct LeaderRequest {
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for LeaderRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let method = req.method().clone();
        let uri = req
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .map(|u| u.0.clone())
            .unwrap_or_else(|| req.uri().clone());
        let headers = req.headers().clone();
        let RawBody(body) = RawBody::from_request(req, state).await?;
        Ok(LeaderRequest {
            method,
            uri,
            headers,
            body,
        })
    }
}

impl LeaderRequest {
    /// On the leader, runs `handle` with the body; on a follower, forwards the request to
    /// the active controller and returns its answer.
    pub async fn on_leader<F, Fut>(self, node: &Arc<Node>, handle: F) -> Response
    where
        F: FnOnce(Arc<Node>, Bytes) -> Fut,
        Fut: std::future::Future<Output = Result<Response, ApiError>>,
    {
        if !node.is_leader() {
            let path = self
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or_else(|| self.uri.path());
            return forward(node, self.method, path, &self.headers, self.body).await;
        }
        handle(node.clone(), self.body)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    }
}

#[cfg(test)]
mod tests {
    //! What a follower answers when forwarding a request to the leader fails: a write the
    //! leader may have taken is REQUEST_TIMED_OUT (outcome unknown), never NOT_CONTROLLER
    //! (which tells the client nothing happened and invites a blind retry). Each test puts
    //! a fake leader on loopback that takes the request and then misbehaves, and calls the
    //! forwarding code with the node's real HTTP client.

    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpSocket, TcpStream};

    /// The forwarded request: a broker heartbeat, as a follower forwards it.
    const PATH: &str = "/v1/brokers/7/heartbeat";
    const BODY: &str = r#"{"broker_epoch":7,"current_metadata_offset":9}"#;
    /// The fake leader's node id, and the follower's.
    const LEADER: NodeId = 1;
    const FOLLOWER: NodeId = 2;
    /// Bound of everything a fake leader waits for.
    const BOUND: Duration = Duration::from_secs(20);

    /// What the fake leader does once it has read the whole request.
    #[derive(Debug, Clone, Copy)]
    enum Leader {
        /// Closes the connection without answering (FIN).
        ClosesAfterReading,
        /// Resets the connection (RST) without answering.
        ResetsAfterReading,
        /// Never answers (holds the connection until the follower gives up).
        NeverAnswers,
        /// Sends the status line and headers, then closes half-way through the body.
        ClosesMidAnswer,
        /// Answers 200 with a JSON body.
        Answers,
    }

    /// Reads one HTTP/1.1 request (headers, then a Content-Length body) and returns it.
    async fn read_request(s: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return String::from_utf8_lossy(&buf).into_owned();
                }
            }
            let n = s.read(&mut chunk).await.expect("reading the request");
            assert!(
                n > 0,
                "the follower closed before sending the whole request"
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A fake leader on loopback that takes one request and then acts as `how`; the task
    /// returns the request exactly as it arrived.
    async fn fake_leader(how: Leader) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = tokio::time::timeout(BOUND, listener.accept())
                .await
                .expect("the follower connects")
                .unwrap();
            let req = tokio::time::timeout(BOUND, read_request(&mut s))
                .await
                .expect("the follower sends the request");
            match how {
                Leader::ClosesAfterReading => drop(s),
                Leader::ResetsAfterReading => {
                    s.set_zero_linger().unwrap();
                    drop(s);
                }
                Leader::NeverAnswers => {
                    // Until the follower gives up and closes its end.
                    let mut rest = [0u8; 64];
                    let _ = tokio::time::timeout(BOUND, s.read(&mut rest)).await;
                }
                Leader::ClosesMidAnswer => {
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                content-length: 100\r\n\r\n{\"is_fenced\":";
                    s.write_all(head.as_bytes()).await.unwrap();
                    s.flush().await.unwrap();
                    drop(s);
                }
                Leader::Answers => {
                    let body = r#"{"is_caught_up":true,"is_fenced":false,"should_shutdown":false}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    s.write_all(answer.as_bytes()).await.unwrap();
                    s.flush().await.unwrap();
                }
            }
            req
        });
        (addr, task)
    }

    /// What the follower answered: status, `kraft-served-by`, JSON body.
    struct Answer {
        status: StatusCode,
        served_by: Option<String>,
        body: serde_json::Value,
    }

    /// Forwards [`BODY`] to `addr` as the follower does (the node's own HTTP client), with
    /// `timeout` for the leader's answer.
    async fn forward_to(addr: SocketAddr, method: Method, timeout: Duration) -> Answer {
        let http = crate::raft::peer::client::PeerHttp::plain();
        let addr = addr.to_string();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let to = Upstream {
            http: &http,
            from: FOLLOWER,
            leader: LEADER,
            addr: &addr,
            timeout,
        };
        let body = if method == Method::GET {
            Bytes::new()
        } else {
            Bytes::from_static(BODY.as_bytes())
        };
        let r = tokio::time::timeout(BOUND, relay(to, method, PATH, &headers, body))
            .await
            .expect("forwarding ends within its bound");
        let status = r.status();
        let served_by = r
            .headers()
            .get("kraft-served-by")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = axum::body::to_bytes(r.into_body(), MAX_BODY).await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "the follower's answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Answer {
            status,
            served_by,
            body,
        }
    }

    /// The leader took the whole request: the request line, the forwarded mark, the body.
    fn assert_taken(req: &str, method: &str) {
        assert!(
            req.starts_with(&format!("{method} {PATH} HTTP/1.1\r\n")),
            "{req}"
        );
        assert!(
            req.to_ascii_lowercase()
                .contains(&format!("{FORWARDED}: {FOLLOWER}\r\n")),
            "{req}"
        );
        if method != "GET" {
            assert!(req.ends_with(BODY), "{req}");
        }
    }

    /// 504 REQUEST_TIMED_OUT whose message names the leader, what went wrong (`cause`) and
    /// says the request may have been carried out.
    fn assert_outcome_unknown(a: &Answer, case: &str, cause: &str) {
        eprintln!("{case}: {} {}", a.status, a.body);
        assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT, "{case}: {}", a.body);
        assert_eq!(a.body["error"], "REQUEST_TIMED_OUT", "{case}: {}", a.body);
        let message = a.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("leader {LEADER}"))
                && message.contains("the leader may have carried the request out"),
            "{case}: the message says who was asked and that the outcome is unknown: {message}"
        );
        assert!(
            message.contains(cause),
            "{case}: the message says what went wrong ({cause:?}): {message}"
        );
        assert_eq!(a.served_by, None, "{case}");
    }

    /// 503 NOT_CONTROLLER naming the leader, and what went wrong (`cause`).
    fn assert_not_controller(a: &Answer, case: &str, cause: &str) {
        eprintln!("{case}: {} {}", a.status, a.body);
        assert_eq!(
            a.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{case}: {}",
            a.body
        );
        assert_eq!(a.body["error"], "NOT_CONTROLLER", "{case}: {}", a.body);
        assert_eq!(a.body["leader_id"], LEADER, "{case}: {}", a.body);
        let message = a.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("forwarding to the leader {LEADER}"))
                && message.contains(cause),
            "{case}: the message says who was asked and what went wrong ({cause:?}): {message}"
        );
    }

    #[tokio::test]
    async fn a_forwarded_write_whose_connection_closes_after_the_leader_read_it_is_request_timed_out(
    ) {
        let (addr, leader) = fake_leader(Leader::ClosesAfterReading).await;
        let a = forward_to(addr, Method::POST, FORWARD_TIMEOUT).await;
        assert_taken(&leader.await.unwrap(), "POST");
        assert_outcome_unknown(
            &a,
            "closed after reading",
            "connection closed before message completed",
        );
    }

    #[tokio::test]
    async fn a_forwarded_write_whose_connection_is_reset_after_the_leader_read_it_is_request_timed_out(
    ) {
        let (addr, leader) = fake_leader(Leader::ResetsAfterReading).await;
        let a = forward_to(addr, Method::POST, FORWARD_TIMEOUT).await;
        assert_taken(&leader.await.unwrap(), "POST");
        assert_outcome_unknown(&a, "reset after reading", "reset");
    }

    #[tokio::test]
    async fn a_forwarded_write_the_leader_never_answers_is_request_timed_out_when_the_wait_ends() {
        let (addr, leader) = fake_leader(Leader::NeverAnswers).await;
        let wait = Duration::from_millis(1_500);
        let started = std::time::Instant::now();
        let a = forward_to(addr, Method::POST, wait).await;
        let took = started.elapsed();
        assert_taken(&leader.await.unwrap(), "POST");
        assert_outcome_unknown(&a, "never answered", "timed out");
        assert!(
            took >= wait && took < wait + Duration::from_secs(5),
            "the follower gave up after {took:?}, its wait being {wait:?}"
        );
    }

    #[tokio::test]
    async fn a_forwarded_write_whose_answer_is_cut_off_is_request_timed_out() {
        let (addr, leader) = fake_leader(Leader::ClosesMidAnswer).await;
        let a = forward_to(addr, Method::POST, FORWARD_TIMEOUT).await;
        assert_taken(&leader.await.unwrap(), "POST");
        assert_outcome_unknown(
            &a,
            "answer cut off",
            "end of file before message length reached",
        );
    }

    #[tokio::test]
    async fn a_forwarded_write_to_a_closed_port_is_not_controller_as_nothing_was_sent() {
        // A port that was just free: connecting is refused.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let a = forward_to(addr, Method::POST, FORWARD_TIMEOUT).await;
        assert_not_controller(&a, "connection refused", "Connection refused");
    }

    #[tokio::test]
    async fn a_forwarded_write_that_cannot_connect_in_time_is_not_controller_as_nothing_was_sent() {
        // A leader whose accept queue is full: the kernel drops further SYNs, so connecting
        // hangs until the client's connect timeout. That timeout, unlike one while waiting
        // for an answer, comes before anything was sent.
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
            {
                fillers.push(s);
            }
        }
        assert!(!fillers.is_empty(), "the accept queue takes one connection");
        let started = std::time::Instant::now();
        let a = forward_to(addr, Method::POST, FORWARD_TIMEOUT).await;
        eprintln!("connect timed out after {:?}", started.elapsed());
        assert_not_controller(&a, "connect timed out", "(Connect)");
        // The connect timeout reaches us in two wordings, depending on where it fires
        // (hyper's connector: "tcp connect error: deadline has elapsed"; the socket:
        // "operation timed out"); either way the message says the connect timed out.
        let message = a.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("deadline has elapsed") || message.contains("timed out"),
            "the message says the connect timed out: {message}"
        );
        drop(listener);
    }

    #[tokio::test]
    async fn a_forwarded_read_whose_answer_is_lost_is_not_controller_since_a_read_can_be_retried() {
        let (addr, leader) = fake_leader(Leader::ClosesAfterReading).await;
        let a = forward_to(addr, Method::GET, FORWARD_TIMEOUT).await;
        assert_taken(&leader.await.unwrap(), "GET");
        assert_not_controller(
            &a,
            "read, closed after reading",
            "connection closed before message completed",
        );
    }

    #[tokio::test]
    async fn a_forwarded_write_the_leader_answers_is_relayed_with_the_leader_named() {
        let (addr, leader) = fake_leader(Leader::Answers).await;
        let a = forward_to(addr, Method::POST, FORWARD_TIMEOUT).await;
        assert_taken(&leader.await.unwrap(), "POST");
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.body["is_fenced"], false, "{}", a.body);
        assert_eq!(a.served_by.as_deref(), Some("1"));
    }
}
