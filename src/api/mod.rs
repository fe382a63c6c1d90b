//! The API listener (`/v1`, shared/API.md): JSON in and out, Kafka-style error codes.
//! Followers serve reads from their committed image and forward writes to the leader.

// Handlers return openraft's large error types and axum responses as errors.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod brokers;
pub mod metadata;
pub mod openapi;
pub mod peer;
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
use openraft::ServerState;
use serde_json::json;

use crate::controller::ControllerError;
use crate::node::server::Node;
use crate::raft::NodeId;

/// Largest request body.
pub const MAX_BODY: usize = 1024 * 1024;
/// Header marking a request a follower forwarded (forwarded once at most).
pub const FORWARDED: &str = "kraft-forwarded";

/// An error answer: `{"error": CODE, "message": ..., "leader_id"?: n}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Kafka-style code.
    pub code: &'static str,
    /// For a person.
    pub message: String,
    /// The leader, where it helps.
    pub leader_id: Option<NodeId>,
    /// Extra fields (e.g. the snapshot to fetch on 410).
    pub extra: Option<(&'static str, serde_json::Value)>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            leader_id: None,
            extra: None,
        }
    }

    /// 400 INVALID_REQUEST.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    /// 503 NOT_CONTROLLER.
    pub fn not_controller(leader_id: Option<NodeId>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "NOT_CONTROLLER",
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
            "UNKNOWN_SERVER_ERROR",
            message,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "message": self.message });
        if let Some(l) = self.leader_id {
            body["leader_id"] = json!(l);
        }
        if let Some((k, v)) = self.extra {
            body[k] = v;
        }
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
            "INVALID_REQUEST",
            format!("request body is over {MAX_BODY} bytes"),
        )
    } else {
        ApiError::invalid(format!("cannot read the request body: {rej}"))
    }
}

/// The API router.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi::serve))
        .merge(quorum::routes())
        .merge(metadata::routes())
        .merge(admin::routes())
        .merge(brokers::routes())
        .merge(topics::routes())
        .route("/metrics", get(metrics))
        .route("/ui", get(ui::page))
        // A route layer sees the matched route template; unknown paths are not counted.
        .route_layer(axum::middleware::from_fn(crate::telemetry::track_http))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(node)
}

/// Prometheus text format (version 0.0.4).
async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let body = crate::telemetry::render(&node);
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
    let m = node.raft.metrics().borrow_watched().clone();
    let applied = node.sm.applied();
    let ready = match (m.current_leader, m.state) {
        (None, _) => Err("no leader is known".to_string()),
        (Some(_), ServerState::Leader) => {
            let lease = node.config.election_timeout_max_ms;
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
            let seen = node.seen_commit.load(std::sync::atomic::Ordering::Relaxed);
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
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NOT_READY", why).into_response()
        }
    }
}

/// Forwards a request to the leader's API listener (once: a forwarded request that reaches
/// a non-leader gets NOT_CONTROLLER).
pub async fn forward(
    node: &Node,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
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
    // Once a write has been sent, a failure says nothing of whether the leader carried it
    // out: the client is told the outcome is unknown, not that nothing happened.
    let write = method != Method::GET && method != Method::HEAD;
    let unknown = move |e: String| {
        if write {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "REQUEST_TIMED_OUT",
                format!("{e}; the leader may have carried the request out"),
            )
        } else {
            ApiError::not_controller(Some(leader)).with_message(e)
        }
    };
    let mut req = node
        .http
        .request(method, format!("http://{addr}{path_and_query}"))
        .header(FORWARDED, node.id().to_string())
        .timeout(Duration::from_secs(65))
        .body(body);
    for h in [header::CONTENT_TYPE, header::ACCEPT, header::RANGE] {
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
                    "reading the answer of the leader {leader} failed: {e}"
                ))
                .into_response(),
            }
        }
        // Not connected: the request never reached the leader.
        Err(e) if e.is_connect() => ApiError::not_controller(Some(leader))
            .with_message(format!(
                "forwarding to the leader {leader} at {addr} failed: {e}"
            ))
            .into_response(),
        Err(e) => unknown(format!(
            "forwarding to the leader {leader} at {addr} failed: {e}"
        ))
        .into_response(),
    }
}

impl ApiError {
    /// The same error with another message.
    pub fn with_message(mut self, m: String) -> Self {
        self.message = m;
        self
    }
}

/// The HTTP status of a Kafka error code the controller refuses with.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "UNKNOWN_TOPIC_OR_PARTITION" | "UNKNOWN_TOPIC_ID" | "BROKER_ID_NOT_REGISTERED" => {
            StatusCode::NOT_FOUND
        }
        "TOPIC_ALREADY_EXISTS"
        | "DUPLICATE_BROKER_REGISTRATION"
        | "STALE_BROKER_EPOCH"
        | "FENCED_LEADER_EPOCH"
        | "INVALID_UPDATE_VERSION"
        | "INELIGIBLE_REPLICA" => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Maps a controller failure to its answer.
pub fn controller_error(e: ControllerError) -> ApiError {
    match e {
        ControllerError::Refused { code, message } => ApiError::new(status_of(code), code, message),
        ControllerError::NotController { leader } => ApiError::not_controller(leader),
        e @ ControllerError::Timeout(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "REQUEST_TIMED_OUT",
            e.to_string(),
        ),
        e @ ControllerError::OutcomeUnknown(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "REQUEST_TIMED_OUT",
            e.to_string(),
        ),
        ControllerError::Internal(m) => ApiError::internal(m),
    }
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
