//! A typed async HTTP client for the kraftd API listener (`shared/API.md`), used by the CLI,
//! the multi-process tests and `kraftd bench quorum`.
//!
//! Every call has a timeout (the client's default, or a longer one where the call may
//! legitimately take time: adding a voter, a long poll). Every non-2xx answer becomes
//! [`ClientError::Api`] with the status and the `error` / `message` / `leader_id` of the JSON
//! error body; a body that is not the documented JSON still gives an error, with the raw
//! text as its message. Nothing the server sends is unwrapped.

use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use thiserror::Error;

/// Timeout of an ordinary call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of `POST /v1/quorum/voters`: the new node first catches up as a learner.
pub const ADD_VOTER_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of `POST /v1/quorum/transfer-leader` (the leader waits up to 10 s itself).
pub const TRANSFER_LEADER_TIMEOUT: Duration = Duration::from_secs(15);
pub use crate::contract::brokers::{
    BrokerEpoch, BrokerView, FeatureRange, Heartbeat, HeartbeatAnswer, Listener, Registration,
};
pub use crate::contract::configs::ConfigPatch;
pub use crate::contract::metadata::{
    Image, LogJson, LogRecord, SnapshotFile, SnapshotRef, WriteAck, RECORD_BATCHES,
};
pub use crate::contract::partitions::{
    AlterPartition, AlterPartitionAnswer, AlterPartitionData, AlterPartitionResult, AlterTopic,
    ElectionRequest, ElectionResult, Elections, IsrMember, TopicPartition,
};
pub use crate::contract::quorum::{
    HealthStatus, LeaderMoved, MemberHealth, NewVoter, QuorumHealth, QuorumStatus, Replica,
    ReplicaRole, SnapshotTaken, TransferLeader, Voter, VoterAddress, Voters,
};
pub use crate::contract::topics::{
    AddPartitions, CreateTopic, CreatedTopic, PartitionView, Partitions, TopicDescription,
    TopicSummary,
};

/// What went wrong with a call.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The server answered with a non-2xx status.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The request did not complete: connection refused or reset, timeout, ...
    #[error("{method} {url}: {}", error_chain(source))]
    Transport {
        /// Method of the request.
        method: Method,
        /// The URL called.
        url: String,
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },
    /// A 2xx answer whose body or headers are not what the contract says.
    #[error("{method} {url}: unexpected answer: {detail}")]
    Decode {
        /// Method of the request.
        method: Method,
        /// The URL called.
        url: String,
        /// What did not fit.
        detail: String,
    },
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api(e) => Some(e.status),
            _ => None,
        }
    }

    /// The Kafka-style error code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api(e) => Some(&e.code),
            _ => None,
        }
    }

    /// The error body, when the server answered.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api(e) => Some(e.as_ref()),
            _ => None,
        }
    }

    /// Whether the request never got an answer (connection refused, reset, timed out).
    pub fn is_transport(&self) -> bool {
        matches!(self, ClientError::Transport { .. })
    }

    /// Worth retrying against the same or another node: no answer, no leader (503), or a
    /// timeout answer from the server (504).
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Api(e) => {
                e.status == StatusCode::SERVICE_UNAVAILABLE
                    || e.status == StatusCode::GATEWAY_TIMEOUT
                    || e.status == StatusCode::BAD_GATEWAY
            }
            ClientError::Decode { .. } => false,
        }
    }
}

/// A non-2xx answer: `{"error": CODE, "message": ..., "leader_id"?: n, "snapshot"?: {...}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Method of the request.
    pub method: Method,
    /// The URL called.
    pub url: String,
    /// The HTTP status.
    pub status: StatusCode,
    /// The Kafka-style code (`NOT_CONTROLLER`, `OFFSET_OUT_OF_RANGE`, ...); empty when the
    /// body was not the documented JSON.
    pub code: String,
    /// The message for a person (the raw body when it was not JSON).
    pub message: String,
    /// The leader, when the server named one.
    pub leader_id: Option<u64>,
    /// The snapshot to fetch instead (410 from `GET /v1/metadata/log`).
    pub snapshot: Option<SnapshotRef>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.method, self.url, self.status)?;
        if !self.code.is_empty() {
            write!(f, " {}", self.code)?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(l) = self.leader_id {
            write!(f, " (leader {l})")?;
        }
        Ok(())
    }
}

/// `GET /v1/metadata/log` in its raw form.
#[derive(Debug, Clone)]
pub struct LogFetch {
    /// Whole v2 batches, from the batch holding the requested offset (empty after a long
    /// poll that saw nothing new).
    pub batches: Bytes,
    /// `Kraft-High-Watermark`.
    pub high_watermark: i64,
    /// `Kraft-Log-Start-Offset`.
    pub log_start_offset: Option<i64>,
    /// `Kraft-Leader-Id` (absent or negative: unknown).
    pub leader_id: Option<u64>,
    /// `Kraft-Leader-Epoch`.
    pub leader_epoch: Option<i64>,
}

/// A part of a snapshot file, as `GET /v1/metadata/snapshots/{id}` answered it.
#[derive(Debug, Clone)]
pub struct SnapshotBytes {
    /// The HTTP status: 200 (whole file) or 206 (a range).
    pub status: StatusCode,
    /// `Content-Range`, if any.
    pub content_range: Option<String>,
    /// The bytes.
    pub bytes: Bytes,
}

/// A client of one node's API listener.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    /// Sent as `Authorization: Bearer` with every call.
    token: Option<String>,
}

impl Client {
    /// A client of `addr` (`HOST:PORT`, or a URL starting with `http://`).
    pub fn new(addr: &str) -> Result<Client, ClientError> {
        Self::with_timeout(addr, DEFAULT_TIMEOUT)
    }

    /// A client whose ordinary calls time out after `timeout`.
    pub fn with_timeout(addr: &str, timeout: Duration) -> Result<Client, ClientError> {
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{addr}")
        };
        let http = Self::builder()
            .build()
            .map_err(|source| ClientError::Transport {
                method: Method::GET,
                url: base.clone(),
                source,
            })?;
        Ok(Client {
            http,
            base,
            timeout,
            token: None,
        })
    }

    /// This client over TLS with `tls` (the cluster's CA, and a client certificate when the
    /// principal proves who it is that way; `kraftd::tls::client_config_from_files` makes
    /// one): `http://` becomes `https://`.
    pub fn with_tls(mut self, tls: rustls::ClientConfig) -> Result<Client, ClientError> {
        if let Some(rest) = self.base.strip_prefix("http://") {
            self.base = format!("https://{rest}");
        }
        self.http = Self::builder()
            .use_preconfigured_tls(tls)
            .build()
            .map_err(|source| ClientError::Transport {
                method: Method::GET,
                url: self.base.clone(),
                source,
            })?;
        Ok(self)
    }

    /// The same client (TLS, token, pool) for another node's API listener, `HOST:PORT`.
    pub fn at(&self, addr: &str) -> Client {
        let scheme = if self.base.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        let host = addr
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        Client {
            base: format!("{scheme}://{host}"),
            ..self.clone()
        }
    }

    /// The same client with another timeout for ordinary calls.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    fn builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(30))
    }

    /// This client, sending `token` as `Authorization: Bearer` with every call (the API's
    /// principals file names who it is).
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    /// The base URL, e.g. `http://127.0.0.1:9093`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The timeout of ordinary calls.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn request(&self, method: Method, path: &str) -> (RequestBuilder, Method, String) {
        let url = format!("{}{}", self.base, path);
        let mut rb = self
            .http
            .request(method.clone(), &url)
            .timeout(self.timeout);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        (rb, method, url)
    }

    async fn send(rb: RequestBuilder, method: &Method, url: &str) -> Result<Response, ClientError> {
        let resp = rb.send().await.map_err(|source| ClientError::Transport {
            method: method.clone(),
            url: url.to_string(),
            source,
        })?;
        Self::check(resp, method, url).await
    }

    /// The answer if it is a success, else the API error it carries.
    async fn check(resp: Response, method: &Method, url: &str) -> Result<Response, ClientError> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(ClientError::Api(Box::new(
            Self::error_from(resp, method.clone(), url.to_string()).await,
        )))
    }

    async fn error_from(resp: Response, method: Method, url: String) -> ApiError {
        let status = resp.status();
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => format!("(error body unreadable: {e})"),
        };
        Self::error_of(status, text, method, url)
    }

    /// The API error an answer of `status` with body `text` carries.
    fn error_of(status: StatusCode, text: String, method: Method, url: String) -> ApiError {
        let mut err = ApiError {
            method,
            url,
            status,
            code: String::new(),
            message: text.clone(),
            leader_id: None,
            snapshot: None,
        };
        if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&text) {
            if let Some(code) = m.get("error").and_then(Value::as_str) {
                err.code = code.to_string();
            }
            if let Some(msg) = m.get("message").and_then(Value::as_str) {
                err.message = msg.to_string();
            }
            err.leader_id = m.get("leader_id").and_then(Value::as_u64);
            err.snapshot = m
                .get("snapshot")
                .and_then(|s| serde_json::from_value(s.clone()).ok());
        }
        err
    }

    async fn json<T: DeserializeOwned>(
        rb: RequestBuilder,
        method: Method,
        url: String,
    ) -> Result<T, ClientError> {
        let resp = Self::send(rb, &method, &url).await?;
        Self::decode(resp, method, url).await
    }

    /// The JSON body of a successful answer.
    async fn decode<T: DeserializeOwned>(
        resp: Response,
        method: Method,
        url: String,
    ) -> Result<T, ClientError> {
        let bytes = Self::body(resp, &method, &url).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            method,
            url,
            detail: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
        })
    }

    /// The whole body of an answer.
    async fn body(resp: Response, method: &Method, url: &str) -> Result<Bytes, ClientError> {
        resp.bytes().await.map_err(|source| ClientError::Transport {
            method: method.clone(),
            url: url.to_string(),
            source,
        })
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (rb, m, u) = self.request(Method::GET, path);
        Self::json(rb, m, u).await
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let (rb, m, u) = self.request(Method::GET, "/metrics");
        let resp = Self::send(rb, &m, &u).await?;
        resp.text().await.map_err(|source| ClientError::Transport {
            method: m,
            url: u,
            source,
        })
    }

    /// `GET /healthz`: whether the process answers.
    pub async fn healthz(&self) -> Result<(), ClientError> {
        let (rb, m, u) = self.request(Method::GET, "/healthz");
        Self::send(rb, &m, &u).await.map(drop)
    }

    /// `GET /readyz`: whether the node knows a leader and applied what it saw committed.
    pub async fn readyz(&self) -> Result<(), ClientError> {
        let (rb, m, u) = self.request(Method::GET, "/readyz");
        Self::send(rb, &m, &u).await.map(drop)
    }

    /// `GET /v1/quorum/status`.
    pub async fn quorum_status(&self) -> Result<QuorumStatus, ClientError> {
        self.get_json("/v1/quorum/status").await
    }

    /// `GET /v1/quorum/health`: the leader's verdict, which a follower asks for. A 503 with
    /// the verdict in its body (writes cannot commit) is an answer, not an error.
    pub async fn quorum_health(&self) -> Result<QuorumHealth, ClientError> {
        let (rb, method, url) = self.request(Method::GET, "/v1/quorum/health");
        let resp = rb.send().await.map_err(|source| ClientError::Transport {
            method: method.clone(),
            url: url.clone(),
            source,
        })?;
        if resp.status() != StatusCode::SERVICE_UNAVAILABLE {
            let resp = Self::check(resp, &method, &url).await?;
            return Self::decode(resp, method, url).await;
        }
        let bytes = Self::body(resp, &method, &url).await?;
        // A 503 of another kind (a proxy, a node shutting down) is an API error.
        serde_json::from_slice::<QuorumHealth>(&bytes).map_err(|_| {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            ClientError::Api(Box::new(Self::error_of(
                StatusCode::SERVICE_UNAVAILABLE,
                text,
                method,
                url,
            )))
        })
    }

    /// `GET /v1/quorum/replication`.
    pub async fn replication(&self) -> Result<Vec<Replica>, ClientError> {
        self.get_json("/v1/quorum/replication").await
    }

    /// `POST /v1/quorum/snapshot`: this node takes a checkpoint now.
    pub async fn take_snapshot(&self) -> Result<SnapshotTaken, ClientError> {
        let (rb, m, u) = self.request(Method::POST, "/v1/quorum/snapshot");
        Self::json(rb, m, u).await
    }

    /// `POST /v1/quorum/voters`; answers once the node is a voter (up to
    /// [`ADD_VOTER_TIMEOUT`]). Returns the voter ids.
    pub async fn add_voter(&self, voter: &NewVoter) -> Result<Vec<u64>, ClientError> {
        let (rb, m, u) = self.request(Method::POST, "/v1/quorum/voters");
        let rb = rb.timeout(ADD_VOTER_TIMEOUT.max(self.timeout)).json(voter);
        let a: Voters = Self::json(rb, m, u).await?;
        Ok(a.voters)
    }

    /// `DELETE /v1/quorum/voters/{id}`. Returns the voter ids.
    pub async fn remove_voter(&self, id: u64) -> Result<Vec<u64>, ClientError> {
        let (rb, m, u) = self.request(Method::DELETE, &format!("/v1/quorum/voters/{id}"));
        let rb = rb.timeout(ADD_VOTER_TIMEOUT.max(self.timeout));
        let a: Voters = Self::json(rb, m, u).await?;
        Ok(a.voters)
    }

    /// `PATCH /v1/quorum/voters/{id}` (Kafka's UpdateRaftVoter): member `id` listens at
    /// new addresses; it must already answer there.
    pub async fn update_voter(&self, id: u64, to: &VoterAddress) -> Result<Voter, ClientError> {
        let (rb, m, u) = self.request(Method::PATCH, &format!("/v1/quorum/voters/{id}"));
        Self::json(rb.json(to), m, u).await
    }

    /// `POST /v1/quorum/transfer-leader`: hands leadership to voter `to` (or to the one
    /// furthest along) and answers once another voter leads.
    pub async fn transfer_leader(&self, to: Option<u64>) -> Result<LeaderMoved, ClientError> {
        let (rb, m, u) = self.request(Method::POST, "/v1/quorum/transfer-leader");
        let rb = rb
            .timeout(TRANSFER_LEADER_TIMEOUT.max(self.timeout))
            .json(&TransferLeader { to });
        Self::json(rb, m, u).await
    }

    async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let (rb, m, u) = self.request(Method::POST, path);
        Self::json(rb.json(body), m, u).await
    }

    async fn delete_path(&self, path: &str) -> Result<(), ClientError> {
        let (rb, m, u) = self.request(Method::DELETE, path);
        Self::send(rb, &m, &u).await.map(drop)
    }

    /// `POST /v1/brokers/{id}/registration`: returns the broker epoch.
    pub async fn register_broker(&self, id: i32, r: &Registration) -> Result<i64, ClientError> {
        let a: BrokerEpoch = self
            .post_json(&format!("/v1/brokers/{id}/registration"), r)
            .await?;
        Ok(a.broker_epoch)
    }

    /// `POST /v1/brokers/{id}/heartbeat`.
    pub async fn heartbeat(&self, id: i32, hb: &Heartbeat) -> Result<HeartbeatAnswer, ClientError> {
        self.post_json(&format!("/v1/brokers/{id}/heartbeat"), hb)
            .await
    }

    /// `GET /v1/brokers` from this node's committed image.
    pub async fn brokers(&self) -> Result<Vec<BrokerView>, ClientError> {
        self.get_json("/v1/brokers").await
    }

    /// `DELETE /v1/brokers/{id}`: unregisters a broker.
    pub async fn unregister_broker(&self, id: i32) -> Result<(), ClientError> {
        self.delete_path(&format!("/v1/brokers/{id}")).await
    }

    /// `POST /v1/partitions/alter`.
    pub async fn alter_partition(
        &self,
        req: &AlterPartition,
    ) -> Result<AlterPartitionAnswer, ClientError> {
        self.post_json("/v1/partitions/alter", req).await
    }

    /// `POST /v1/topics`.
    pub async fn create_topic(&self, req: &CreateTopic) -> Result<CreatedTopic, ClientError> {
        self.post_json("/v1/topics", req).await
    }

    /// `GET /v1/topics` from this node's committed image.
    pub async fn topics(&self) -> Result<Vec<TopicSummary>, ClientError> {
        self.get_json("/v1/topics").await
    }

    /// `GET /v1/topics/{name}` from this node's committed image.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, ClientError> {
        self.get_json(&format!("/v1/topics/{}", encode_segment(name)))
            .await
    }

    /// `DELETE /v1/topics/{name}`.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        self.delete_path(&format!("/v1/topics/{}", encode_segment(name)))
            .await
    }

    /// `POST /v1/topics/{name}/partitions`: grows the topic to `count` partitions.
    pub async fn add_partitions(
        &self,
        name: &str,
        count: i32,
    ) -> Result<Vec<PartitionView>, ClientError> {
        let a: Partitions = self
            .post_json(
                &format!("/v1/topics/{}/partitions", encode_segment(name)),
                &AddPartitions { count },
            )
            .await?;
        Ok(a.partitions)
    }

    /// `POST /v1/elections`.
    pub async fn elect(&self, req: &ElectionRequest) -> Result<Vec<ElectionResult>, ClientError> {
        let a: Elections = self.post_json("/v1/elections", req).await?;
        Ok(a.partitions)
    }

    fn config_path(kind: ConfigKind, name: &str) -> String {
        format!("/v1/configs/{}/{}", kind.as_str(), encode_segment(name))
    }

    /// `PATCH /v1/configs/{kind}/{name}`: answered once committed.
    pub async fn alter_config(
        &self,
        kind: ConfigKind,
        name: &str,
        change: &ConfigPatch,
    ) -> Result<WriteAck, ClientError> {
        let (rb, m, u) = self.request(Method::PATCH, &Self::config_path(kind, name));
        Self::json(rb.json(change), m, u).await
    }

    /// Sets one key of a broker's config.
    pub async fn set_broker_config(
        &self,
        broker: &str,
        key: &str,
        value: &str,
    ) -> Result<WriteAck, ClientError> {
        self.alter_config(
            ConfigKind::Broker,
            broker,
            &ConfigPatch::set_one(key, value),
        )
        .await
    }

    /// `GET /v1/configs/{kind}/{name}` from this node's committed image.
    pub async fn get_config(
        &self,
        kind: ConfigKind,
        name: &str,
    ) -> Result<BTreeMap<String, String>, ClientError> {
        self.get_json(&Self::config_path(kind, name)).await
    }

    /// `GET /v1/metadata/log` raw: batches from the one holding `offset`. `max_wait` makes
    /// it a long poll; the call's timeout is the client's plus `max_wait`.
    pub async fn fetch_log(
        &self,
        offset: i64,
        max_bytes: Option<u64>,
        max_wait: Option<Duration>,
    ) -> Result<LogFetch, ClientError> {
        let (rb, m, u) = self.log_request(offset, max_bytes, max_wait, RECORD_BATCHES);
        let resp = Self::send(rb, &m, &u).await?;
        let headers = resp.headers().clone();
        let decode = |detail: String| ClientError::Decode {
            method: m.clone(),
            url: u.clone(),
            detail,
        };
        let high_watermark = header_i64(&headers, "kraft-high-watermark")
            .map_err(&decode)?
            .ok_or_else(|| decode("no Kraft-High-Watermark header".into()))?;
        let log_start_offset = header_i64(&headers, "kraft-log-start-offset").map_err(&decode)?;
        let leader_id = header_i64(&headers, "kraft-leader-id")
            .map_err(&decode)?
            .and_then(|l| u64::try_from(l).ok());
        let leader_epoch = header_i64(&headers, "kraft-leader-epoch").map_err(&decode)?;
        let batches = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                method: m.clone(),
                url: u.clone(),
                source,
            })?;
        Ok(LogFetch {
            batches,
            high_watermark,
            log_start_offset,
            leader_id,
            leader_epoch,
        })
    }

    /// `GET /v1/metadata/log` with `Accept: application/json`.
    pub async fn fetch_log_json(
        &self,
        offset: i64,
        max_bytes: Option<u64>,
    ) -> Result<LogJson, ClientError> {
        self.follow_log_json(offset, max_bytes, None).await
    }

    /// [`Client::fetch_log_json`] as a long poll: waits up to `max_wait` when nothing is
    /// new; the call's timeout is the client's plus `max_wait`.
    pub async fn follow_log_json(
        &self,
        offset: i64,
        max_bytes: Option<u64>,
        max_wait: Option<Duration>,
    ) -> Result<LogJson, ClientError> {
        let (rb, m, u) = self.log_request(offset, max_bytes, max_wait, "application/json");
        Self::json(rb, m, u).await
    }

    /// `GET /v1/metadata/log` in the form `accept` names; a long poll's wait is added to
    /// the call's timeout.
    fn log_request(
        &self,
        offset: i64,
        max_bytes: Option<u64>,
        max_wait: Option<Duration>,
        accept: &str,
    ) -> (RequestBuilder, Method, String) {
        let mut path = format!("/v1/metadata/log?offset={offset}");
        if let Some(b) = max_bytes {
            path.push_str(&format!("&max_bytes={b}"));
        }
        if let Some(w) = max_wait {
            path.push_str(&format!("&max_wait_ms={}", w.as_millis()));
        }
        let (rb, m, u) = self.request(Method::GET, &path);
        let rb = rb
            .timeout(self.timeout + max_wait.unwrap_or_default())
            .header(ACCEPT, accept);
        (rb, m, u)
    }

    /// `GET /v1/metadata/snapshots`, newest first.
    pub async fn list_snapshots(&self) -> Result<Vec<SnapshotFile>, ClientError> {
        self.get_json("/v1/metadata/snapshots").await
    }

    /// `GET /v1/metadata/snapshots/{end_offset}-{epoch}`, the whole file or, with `range`
    /// = `(first, Some(last))` / `(first, None)`, the bytes `first..=last` / `first..`.
    pub async fn fetch_snapshot(
        &self,
        id: SnapshotRef,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<SnapshotBytes, ClientError> {
        let path = format!("/v1/metadata/snapshots/{}-{}", id.end_offset, id.epoch);
        let (rb, m, u) = self.request(Method::GET, &path);
        // A file download can be large: allow more than an ordinary call.
        let mut rb = rb.timeout(self.timeout * 6);
        if let Some((first, last)) = range {
            let spec = match last {
                Some(l) => format!("bytes={first}-{l}"),
                None => format!("bytes={first}-"),
            };
            rb = rb.header(RANGE, spec);
        }
        let resp = Self::send(rb, &m, &u).await?;
        let status = resp.status();
        let content_range = resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                method: m.clone(),
                url: u.clone(),
                source,
            })?;
        Ok(SnapshotBytes {
            status,
            content_range,
            bytes,
        })
    }

    /// `GET /v1/metadata/image` at this node's applied offset.
    pub async fn image(&self) -> Result<Image, ClientError> {
        self.get_json("/v1/metadata/image").await
    }

    /// Any other JSON call, for what this client has no typed method for.
    pub async fn raw_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (mut rb, m, u) = self.request(method, path);
        if let Some(b) = body {
            rb = rb.header(CONTENT_TYPE, "application/json").json(b);
        }
        let resp = Self::send(rb, &m, &u).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                method: m.clone(),
                url: u.clone(),
                source,
            })?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            method: m,
            url: u,
            detail: e.to_string(),
        })
    }
}

/// An error and its causes, "a: b: c" (reqwest's own text stops at "error sending
/// request", which hides whether it was a refused connection or a timeout).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    // Bounded: error chains are short, but never trust a cycle.
    for _ in 0..8 {
        let Some(c) = cause else { break };
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Which kind of resource a config belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// A broker (by id) or the cluster default.
    Broker,
    /// A topic (by name).
    Topic,
}

impl ConfigKind {
    fn as_str(self) -> &'static str {
        match self {
            ConfigKind::Broker => "broker",
            ConfigKind::Topic => "topic",
        }
    }
}

/// Percent-encodes what a path segment cannot hold as it is.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn header_i64(headers: &HeaderMap, name: &str) -> Result<Option<i64>, String> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    let text = v
        .to_str()
        .map_err(|_| format!("header {name} is not text"))?;
    text.trim()
        .parse::<i64>()
        .map(Some)
        .map_err(|_| format!("header {name} is {text:?}, not an integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode_segment("topic-1.a_b"), "topic-1.a_b");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(encode_segment(""), "");
    }
}
