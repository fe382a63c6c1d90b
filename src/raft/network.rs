//! The client side of the peer transport: openraft's RPCs as HTTP POSTs with postcard
//! bodies to the target's peer listener, over one pooled connection set.
//!
//! Every request carries an envelope naming the cluster, the sender, the target and the
//! directory id the sender believes the target has. A node refuses an envelope meant for
//! another cluster, node or directory (KIP-853: a re-formatted disk must not vote or count
//! towards a commit under the identity of the voter it replaced).
//!
//! The Raft RPCs live under `/peer/v2/` since openraft 0.10 (its messages changed shape):
//! a controller of the older build answers them 404, so a mixed quorum during a rolling
//! upgrade never misreads a message; it only cannot count the other build's votes.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{RaftNetworkFactory, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::error::PeerRefusal;
use super::state_machine::{snapshot_id_string, CheckpointFile};
use super::{KNode, KSnapshot, KSnapshotMeta, KVote, LogId, NodeId, TypeConfig};

/// Content type of peer bodies.
pub const POSTCARD: &str = "application/x-postcard";
/// Peer path of AppendEntries.
pub const PATH_APPEND: &str = "/peer/v2/append";
/// Peer path of Vote.
pub const PATH_VOTE: &str = "/peer/v2/vote";
/// Peer path of PreVote (KIP-996): "would you vote for me?", which changes nothing on the
/// receiver, asked before a candidate raises its term.
pub const PATH_PRE_VOTE: &str = "/peer/v2/pre-vote";
/// Peer path of a snapshot chunk.
pub const PATH_SNAPSHOT: &str = "/peer/v2/snapshot";
/// Peer path of the node's identity.
pub const PATH_INFO: &str = "/peer/v1/info";
/// Peer path of the current checkpoint file.
pub const PATH_CURRENT_SNAPSHOT: &str = "/peer/v1/current-snapshot";
/// Peer path of a leader's read index (linearizable reads on followers).
pub const PATH_READ_INDEX: &str = "/peer/v1/read-index";
/// Peer path of the node's history: does it hold anything beyond the bootstrap?
pub const PATH_HISTORY: &str = "/peer/v1/history";

/// Largest peer body a node accepts (an AppendEntries of many batches, a snapshot chunk).
/// The client splits AppendEntries to stay below it.
pub const MAX_PEER_BODY: usize = 256 * 1024 * 1024;

/// Room left in a body for the envelope (cluster id, ids, directory id) and the request's
/// own fields (vote, prev log id, leader commit) around the entries.
const ENVELOPE_SLACK: usize = 4096;

/// Highest Raft term a peer message may carry: a term is a Kafka leader epoch, an i32.
pub const MAX_TERM: u64 = i32::MAX as u64;

/// The Raft terms a peer message carries (its vote and every log id in it).
pub trait Terms {
    /// The highest of them (0 when it carries none).
    fn highest_term(&self) -> u64;
}

fn vote_term(v: &KVote) -> u64 {
    v.leader_id.term
}

fn log_term(l: &Option<LogId>) -> u64 {
    l.as_ref().map(|l| l.leader_id.term).unwrap_or(0)
}

impl Terms for VoteRequest<TypeConfig> {
    fn highest_term(&self) -> u64 {
        vote_term(&self.vote).max(log_term(&self.last_log_id))
    }
}

impl Terms for VoteResponse<TypeConfig> {
    fn highest_term(&self) -> u64 {
        vote_term(&self.vote).max(log_term(&self.last_log_id))
    }
}

impl Terms for AppendEntriesRequest<TypeConfig> {
    fn highest_term(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| e.log_id.leader_id.term)
            .chain([
                vote_term(&self.vote),
                log_term(&self.prev_log_id),
                log_term(&self.leader_commit),
            ])
            .max()
            .unwrap_or(0)
    }
}

impl Terms for AppendEntriesResponse<TypeConfig> {
    fn highest_term(&self) -> u64 {
        match self {
            AppendEntriesResponse::Success | AppendEntriesResponse::Conflict => 0,
            AppendEntriesResponse::PartialSuccess(l) => log_term(l),
            AppendEntriesResponse::HigherVote(v) => vote_term(v),
        }
    }
}

impl Terms for SnapshotChunk {
    fn highest_term(&self) -> u64 {
        vote_term(&self.vote)
            .max(log_term(&self.meta.last_log_id))
            .max(log_term(self.meta.last_membership.log_id()))
    }
}

impl Terms for ChunkAnswer {
    fn highest_term(&self) -> u64 {
        match self {
            ChunkAnswer::Accepted { vote } | ChunkAnswer::Installed { vote } => vote_term(vote),
            ChunkAnswer::Restart { .. } => 0,
        }
    }
}

/// One piece of a snapshot on its way to a follower. The leader sends the checkpoint file
/// in order, from offset 0; the follower writes it to a scratch file, checks the whole file
/// when `done`, and only then hands it to openraft.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The leader's vote.
    pub vote: KVote,
    /// The checkpoint's name, `<end-offset>-<epoch>` (openraft's metadata has no name).
    pub checkpoint: String,
    /// openraft's metadata of the snapshot.
    pub meta: KSnapshotMeta,
    /// Where `data` starts in the file.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
    /// Is this the last piece?
    pub done: bool,
}

/// What a follower answers a [`SnapshotChunk`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkAnswer {
    /// Written; send the next piece. `vote` is the follower's (higher: stop).
    Accepted {
        /// The follower's vote.
        vote: KVote,
    },
    /// The whole file was checked and installed.
    Installed {
        /// The follower's vote after installing.
        vote: KVote,
    },
    /// The follower dropped the transfer (out of order, damaged, cannot write): start again.
    Restart {
        /// Why.
        reason: String,
    },
}

/// Refuses a peer message with a term above [`MAX_TERM`]: Kafka epochs are i32, and a
/// larger term would make every batch's leader epoch wrong.
pub fn check_terms(what: &str, m: &impl Terms) -> Result<(), PeerRefusal> {
    let t = m.highest_term();
    if t > MAX_TERM {
        return Err(PeerRefusal::TermTooLarge {
            what: what.to_string(),
            term: t,
            max: MAX_TERM,
        });
    }
    Ok(())
}

/// Refuses an AppendEntries no leader sends, before openraft sees it (openraft assumes, and
/// in places asserts, these of a real leader): the vote must be a leader's (committed); no
/// log id in it may be of a later leader than that vote; the entries must be consecutive
/// and their leaders never go back. Whether the first entry follows `prev_log_id` is
/// answered as a conflict by the handler instead, so the leader searches back.
pub fn check_append_shape(req: &AppendEntriesRequest<TypeConfig>) -> Result<(), PeerRefusal> {
    let vote = &req.vote;
    if !vote.is_committed() {
        return Err(PeerRefusal::NotALeadersVote {
            vote: vote.to_string(),
        });
    }
    let ids = req
        .prev_log_id
        .iter()
        .map(|l| ("prev_log_id", l))
        .chain(req.leader_commit.iter().map(|l| ("leader_commit", l)))
        .chain(req.entries.iter().map(|e| ("entry", &e.log_id)));
    for (what, id) in ids {
        if id.leader_id > vote.leader_id {
            return Err(PeerRefusal::LaterLeaderThanVote {
                what,
                id: id.to_string(),
                vote: vote.to_string(),
            });
        }
    }
    if let (Some(prev), Some(first)) = (&req.prev_log_id, req.entries.first()) {
        if prev.leader_id > first.log_id.leader_id {
            return Err(PeerRefusal::EarlierLeaderThanPrev {
                first: first.log_id.to_string(),
                prev: prev.to_string(),
            });
        }
    }
    for w in req.entries.windows(2) {
        let (a, b) = (&w[0].log_id, &w[1].log_id);
        if a.index.checked_add(1) != Some(b.index) {
            return Err(PeerRefusal::NotConsecutive {
                a: a.to_string(),
                b: b.to_string(),
            });
        }
        if a.leader_id > b.leader_id {
            return Err(PeerRefusal::LeaderGoesBack {
                a: a.to_string(),
                b: b.to_string(),
            });
        }
    }
    Ok(())
}

/// How many of `rpc`'s first entries fit one body of `limit` bytes (None: all of them).
/// Some(0) means the first entry alone is too large.
pub fn entries_that_fit(rpc: &AppendEntriesRequest<TypeConfig>, limit: usize) -> Option<usize> {
    let budget = limit.saturating_sub(ENVELOPE_SLACK);
    let total = postcard::experimental::serialized_size(rpc).unwrap_or(usize::MAX);
    if total <= budget {
        return None;
    }
    let mut used = 0usize;
    for (i, e) in rpc.entries.iter().enumerate() {
        // A varint length prefix may grow by a few bytes with more entries: counted in the
        // slack.
        used =
            used.saturating_add(postcard::experimental::serialized_size(e).unwrap_or(usize::MAX));
        if used > budget {
            return Some(i);
        }
    }
    // Only the fields around the entries are too large: cannot happen with the slack, but
    // send half rather than fail.
    Some(rpc.entries.len() / 2)
}

/// The envelope of every peer request.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerRequest<T> {
    /// Cluster id of the sender.
    pub cluster_id: String,
    /// Sender.
    pub from: NodeId,
    /// Intended receiver.
    pub to: NodeId,
    /// The receiver's directory id as the sender knows it; nil when not known.
    pub to_directory: [u8; 16],
    /// The RPC.
    pub body: T,
}

/// What a node says of itself on `GET /peer/v1/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Cluster id.
    pub cluster_id: String,
    /// Node id.
    pub node_id: NodeId,
    /// Directory id.
    pub directory_id: [u8; 16],
    /// API listener.
    pub api_addr: String,
    /// Peer listener.
    pub peer_addr: String,
    /// Does the node hold a log (or a snapshot) already?
    pub initialized: bool,
}

/// What a node says of its history on `GET /peer/v1/history`. A node formatted with the
/// bootstrap voters asks every other bootstrap voter before its first election; any
/// answer with `has_history` vetoes it (a wiped disk must never start a new history over
/// an existing one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Cluster id.
    pub cluster_id: String,
    /// Node id.
    pub node_id: NodeId,
    /// Index of the last log entry, if any.
    pub last_log_index: Option<u64>,
    /// Last log index the newest snapshot covers, if any.
    pub snapshot_index: Option<u64>,
    /// Current term (the vote's).
    pub current_term: u64,
    /// Anything beyond the bootstrap membership entry (index 0, term 0): an entry at index
    /// 1 or more, a snapshot, or a purged log prefix.
    pub has_history: bool,
}

impl History {
    /// Does a node with this log state hold history? The first membership entry
    /// `raft.initialize` writes is index 0; every election appends at least one more entry.
    pub fn holds_history(
        last_log_index: Option<u64>,
        snapshot_index: Option<u64>,
        purged_index: Option<u64>,
    ) -> bool {
        last_log_index.is_some_and(|i| i > 0)
            || snapshot_index.is_some_and(|i| i > 0)
            || purged_index.is_some()
    }
}

/// How a node reaches the other nodes' listeners (peer and API): one pooled client and
/// the scheme of their URLs. With TLS the client presents this node's certificate and
/// checks theirs against the cluster's CA. Clones share the pool.
#[derive(Debug, Clone)]
pub struct PeerHttp {
    pooled: Arc<std::sync::RwLock<reqwest::Client>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `http` or `https`.
    pub scheme: &'static str,
}

impl PeerHttp {
    /// Plaintext.
    pub fn plain() -> PeerHttp {
        PeerHttp {
            pooled: Arc::new(std::sync::RwLock::new(
                Self::builder()
                    .build()
                    .unwrap_or_else(|_| reqwest::Client::new()),
            )),
            tls: None,
            scheme: "http",
        }
    }

    /// TLS with `tls` (this node's identity and the cluster's CA).
    pub fn tls(tls: rustls::ClientConfig) -> anyhow::Result<PeerHttp> {
        let tls = Arc::new(tls);
        Ok(PeerHttp {
            pooled: Arc::new(std::sync::RwLock::new(Self::build_tls(&tls)?)),
            tls: Some(tls),
            scheme: "https",
        })
    }

    fn build_tls(tls: &rustls::ClientConfig) -> anyhow::Result<reqwest::Client> {
        Ok(Self::builder().use_preconfigured_tls(tls.clone()).build()?)
    }

    /// The pooled client.
    pub fn client(&self) -> reqwest::Client {
        self.pooled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A new pool, after this node's certificate or CA changed: requests from now on open
    /// connections that present the new certificate, and the old pool's connections close
    /// once their requests are done (on this side, so none is cut off mid-request).
    pub fn renew(&self) -> anyhow::Result<()> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        let fresh = Self::build_tls(tls)?;
        *self.pooled.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    fn builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .connect_timeout(Duration::from_millis(500))
    }

    /// The URL of `path` on the listener at `addr`.
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }
}

/// The newest record of every member (peer address, directory id), shared by all of a
/// node's peer connections. openraft keeps a replication stream, and the connection it was
/// given, across a membership change that only updates a node's record (the leader
/// recording the voters' directory ids), so each request reads the record from here.
#[derive(Clone, Default)]
pub struct PeerBook(Arc<RwLock<BTreeMap<NodeId, KNode>>>);

impl PeerBook {
    /// Replaces the records with those of the current membership.
    pub fn set_all(&self, nodes: impl IntoIterator<Item = (NodeId, KNode)>) {
        let new: BTreeMap<NodeId, KNode> = nodes.into_iter().collect();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = new;
    }

    /// The current record of `id`, if it is a member.
    pub fn get(&self, id: NodeId) -> Option<KNode> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }
}

/// openraft's network factory.
#[derive(Clone)]
pub struct Network {
    book: PeerBook,
    client: PeerHttp,
    cluster_id: String,
    me: NodeId,
    /// Largest body the receivers accept ([`MAX_PEER_BODY`]).
    max_body: usize,
    /// Size of the pieces a snapshot is sent in.
    chunk_size: usize,
}

impl Network {
    /// A factory for node `me` of `cluster_id`.
    pub fn new(client: PeerHttp, cluster_id: String, me: NodeId) -> Self {
        Network {
            book: PeerBook::default(),
            client,
            cluster_id,
            me,
            max_body: MAX_PEER_BODY,
            chunk_size: 1 << 20,
        }
    }

    /// The member records every connection reads; the node keeps them current.
    pub fn book(&self) -> PeerBook {
        self.book.clone()
    }

    /// The same with another body limit (tests).
    pub fn with_max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// The same with another snapshot piece size.
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size.max(1);
        self
    }
}

/// A connection to one peer (cheap: the pool is shared).
pub struct PeerConn {
    net: Network,
    target: NodeId,
    node: KNode,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConn;

    async fn new_client(&mut self, target: NodeId, node: &KNode) -> PeerConn {
        PeerConn {
            net: self.clone(),
            target,
            node: node.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

type RpcErr = RPCError<TypeConfig>;

fn net_err(msg: String) -> RpcErr {
    RPCError::Network(NetworkError::new(&Msg(msg)))
}

/// A peer's answer, or its refusal of the body as too large (HTTP 413).
enum Sent<T> {
    Answer(T),
    TooLarge(String),
}

impl PeerConn {
    async fn call<Req, Resp>(
        &self,
        path: &str,
        action: RPCTypes,
        body: &Req,
        ttl: Duration,
    ) -> Result<Resp, RpcErr>
    where
        Req: Serialize,
        Resp: DeserializeOwned + Terms,
    {
        match self.call_or_too_large(path, action, body, ttl).await? {
            Sent::Answer(a) => Ok(a),
            Sent::TooLarge(msg) => Err(net_err(msg)),
        }
    }

    async fn call_or_too_large<Req, Resp>(
        &self,
        path: &str,
        action: RPCTypes,
        body: &Req,
        ttl: Duration,
    ) -> Result<Sent<Resp>, RpcErr>
    where
        Req: Serialize,
        Resp: DeserializeOwned + Terms,
    {
        // The record given when openraft made this connection may be older than the
        // membership: the book has the current one.
        let node = self
            .net
            .book
            .get(self.target)
            .unwrap_or_else(|| self.node.clone());
        let env = PeerRequest {
            cluster_id: self.net.cluster_id.clone(),
            from: self.net.me,
            to: self.target,
            to_directory: node.directory_id,
            body,
        };
        let bytes =
            postcard::to_allocvec(&env).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let url = self.net.client.url(&node.peer_addr, path);
        let res = self
            .net
            .client
            .client()
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, POSTCARD)
            .timeout(ttl)
            .body(bytes)
            .send()
            .await;
        // Connection refused: Unreachable (openraft backs off); out of time: Timeout;
        // anything else: Network (retried at once).
        let transport = |e: reqwest::Error| {
            if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else if e.is_timeout() {
                RPCError::Timeout(Timeout {
                    action,
                    id: self.net.me,
                    target: self.target,
                    timeout: ttl,
                })
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        };
        let resp = res.map_err(transport)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).to_string();
            let msg = format!("node {} refused {path}: {status}: {text}", self.target);
            if status == reqwest::StatusCode::PAYLOAD_TOO_LARGE {
                return Ok(Sent::TooLarge(msg));
            }
            return Err(net_err(msg));
        }
        let result: Result<Resp, RaftError<TypeConfig>> =
            postcard::from_bytes(&body).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // The remote's Raft failed (it stopped): retried like a network error.
        let answer = result
            .map_err(|e| net_err(format!("node {} could not handle {path}: {e}", self.target)))?;
        check_terms(path, &answer).map_err(|e| net_err(e.to_string()))?;
        Ok(Sent::Answer(answer))
    }

    /// Sends one snapshot piece; the follower's answer.
    async fn send_chunk(&self, chunk: SnapshotChunk, ttl: Duration) -> Result<ChunkAnswer, RpcErr> {
        self.call(PATH_SNAPSHOT, RPCTypes::InstallSnapshot, &chunk, ttl)
            .await
    }
}

fn streaming(e: RpcErr) -> StreamingError<TypeConfig> {
    match e {
        RPCError::Timeout(t) => StreamingError::Timeout(t),
        RPCError::Unreachable(u) => StreamingError::Unreachable(u),
        RPCError::Network(n) => StreamingError::Network(n),
        RPCError::RemoteError(r) => StreamingError::Network(NetworkError::new(&r)),
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConn {
    type SnapshotData = CheckpointFile;

    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RpcErr> {
        let n = rpc.entries.len();
        // A request larger than a peer body is cut: the first entries that fit are sent,
        // and openraft is told how far they reached (PartialSuccess); it sends the rest next.
        let partial = match entries_that_fit(&rpc, self.net.max_body) {
            None => None,
            Some(0) => {
                // One entry alone cannot be sent: an error (retried at the next heartbeat,
                // logged each time).
                let first = rpc.entries.first().map(|e| e.log_id);
                let msg = format!(
                    "entry {} alone is larger than a peer body may be ({} bytes): node {} \
                     cannot be sent it",
                    first.map(|l| l.to_string()).unwrap_or_default(),
                    self.net.max_body,
                    self.target
                );
                tracing::error!("{msg}");
                return Err(net_err(msg));
            }
            Some(k) => {
                tracing::debug!(
                    target_node = self.target,
                    entries = n,
                    fit = k,
                    "AppendEntries larger than a peer body: sending the first entries only"
                );
                rpc.entries.truncate(k);
                rpc.entries.last().map(|e| e.log_id)
            }
        };
        let mut partial = partial;
        loop {
            let sent = self
                .call_or_too_large(
                    PATH_APPEND,
                    RPCTypes::AppendEntries,
                    &rpc,
                    option.hard_ttl(),
                )
                .await?;
            match sent {
                Sent::Answer(res) => {
                    return Ok(match (res, partial) {
                        (AppendEntriesResponse::Success, Some(last)) => {
                            AppendEntriesResponse::PartialSuccess(Some(last))
                        }
                        (other, _) => other,
                    })
                }
                // The receiver's body limit is lower than ours: half as many entries.
                Sent::TooLarge(msg) if rpc.entries.len() > 1 => {
                    tracing::warn!(
                        target_node = self.target,
                        entries = rpc.entries.len(),
                        "the receiver refused an AppendEntries as too large: sending half as many entries: {msg}"
                    );
                    let k = rpc.entries.len() / 2;
                    rpc.entries.truncate(k);
                    partial = rpc.entries.last().map(|e| e.log_id);
                }
                Sent::TooLarge(msg) => {
                    let first = rpc.entries.first().map(|e| e.log_id);
                    let msg = format!(
                        "node {} refused entry {} alone as too large: {msg}",
                        self.target,
                        first.map(|l| l.to_string()).unwrap_or_default()
                    );
                    tracing::error!("{msg}");
                    return Err(net_err(msg));
                }
            }
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RpcErr> {
        self.call(PATH_VOTE, RPCTypes::Vote, &rpc, option.hard_ttl())
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RpcErr> {
        self.call(PATH_PRE_VOTE, RPCTypes::Vote, &rpc, option.hard_ttl())
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: KVote,
        snapshot: KSnapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let send = async {
            let meta = snapshot.meta;
            let checkpoint = snapshot_id_string(&snapshot.snapshot.id);
            let mut file = snapshot.snapshot.file;
            let mut offset = 0u64;
            let mut buf = vec![0u8; self.net.chunk_size];
            loop {
                // Fill a whole piece (or reach the end).
                let mut filled = 0;
                while filled < buf.len() {
                    let got = file.read(&mut buf[filled..]).await.map_err(|e| {
                        StreamingError::Network(NetworkError::new(&Msg(format!(
                            "reading snapshot {checkpoint}: {e}"
                        ))))
                    })?;
                    if got == 0 {
                        break;
                    }
                    filled += got;
                }
                let done = filled < buf.len();
                let chunk = SnapshotChunk {
                    vote,
                    checkpoint: checkpoint.clone(),
                    meta: meta.clone(),
                    offset,
                    data: buf[..filled].to_vec(),
                    done,
                };
                let answer = self
                    .send_chunk(chunk, option.hard_ttl())
                    .await
                    .map_err(streaming)?;
                match answer {
                    ChunkAnswer::Installed { vote } => return Ok(SnapshotResponse::new(vote)),
                    ChunkAnswer::Accepted { vote: theirs } if theirs > vote => {
                        // The follower saw a newer leader: openraft must hear of it.
                        return Ok(SnapshotResponse::new(theirs));
                    }
                    ChunkAnswer::Accepted { .. } if done => {
                        // Every piece was taken but nothing was installed: never report
                        // the follower as caught up.
                        return Err(StreamingError::Network(NetworkError::new(&Msg(format!(
                            "node {} took every piece of snapshot {checkpoint} but did not \
                             install it",
                            self.target
                        )))));
                    }
                    ChunkAnswer::Accepted { .. } => {}
                    ChunkAnswer::Restart { reason } => {
                        return Err(StreamingError::Network(NetworkError::new(&Msg(format!(
                            "node {} dropped snapshot {checkpoint} at offset {offset}: {reason}",
                            self.target
                        )))));
                    }
                }
                offset += filled as u64;
            }
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = send => res,
        }
    }
}

/// Asks a peer listener who it is.
pub async fn fetch_info(http: &PeerHttp, peer_addr: &str) -> anyhow::Result<NodeInfo> {
    peer_get(http, peer_addr, http.url(peer_addr, PATH_INFO)).await
}

/// Asks a peer listener for its history, as node `me` of `cluster_id` (a node at bootstrap
/// notes who asked it).
pub async fn fetch_history(
    http: &PeerHttp,
    peer_addr: &str,
    me: NodeId,
    cluster_id: &str,
) -> anyhow::Result<History> {
    let url = http.url(
        peer_addr,
        &format!("{PATH_HISTORY}?from={me}&cluster={cluster_id}"),
    );
    peer_get(http, peer_addr, url).await
}

/// A GET on a peer listener whose answer is postcard.
async fn peer_get<T: serde::de::DeserializeOwned>(
    http: &PeerHttp,
    peer_addr: &str,
    url: String,
) -> anyhow::Result<T> {
    let resp = http
        .client()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await?;
    if !resp.status().is_success() {
        anyhow::bail!("{peer_addr} answered {}", resp.status());
    }
    let body = resp.bytes().await?;
    Ok(postcard::from_bytes(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Batch, Entry};
    use axum::body::Bytes;
    use axum::extract::{DefaultBodyLimit, State};
    use openraft::{EntryPayload, SnapshotMeta};
    use std::sync::{Arc, Mutex};

    const BIG: u64 = MAX_TERM + 1;

    fn log_id(term: u64, index: u64) -> LogId {
        crate::raft::log_id(term, 1, index)
    }

    fn entries(n: u64, size: usize) -> Vec<Entry> {
        (1..=n)
            .map(|i| Entry {
                log_id: log_id(1, i),
                payload: EntryPayload::Normal(Batch {
                    bytes: vec![7u8; size],
                }),
            })
            .collect()
    }

    fn append(entries: Vec<Entry>) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: KVote::new_committed(1, 1),
            prev_log_id: Some(log_id(1, 0)),
            entries,
            leader_commit: None,
        }
    }

    #[test]
    fn an_append_no_leader_would_send_is_refused_with_what_is_wrong() {
        let ok = append(entries(3, 8));
        check_append_shape(&ok).unwrap();
        check_append_shape(&append(vec![])).unwrap();
        let mut later = append(entries(3, 8));
        later.vote = KVote::new_committed(2, 1);
        later.entries[2].log_id = log_id(2, 3);
        later.leader_commit = Some(log_id(2, 3));
        check_append_shape(&later).unwrap();

        let mut uncommitted = append(entries(1, 8));
        uncommitted.vote = KVote::new(1, 1);
        let mut future_entry = append(entries(3, 8));
        future_entry.entries[1].log_id = log_id(2, 2);
        let mut future_commit = append(vec![]);
        future_commit.leader_commit = Some(log_id(3, 9));
        let mut future_prev = append(vec![]);
        future_prev.prev_log_id = Some(log_id(2, 0));
        let mut gap = append(entries(3, 8));
        gap.entries[2].log_id = log_id(1, 5);
        let mut duplicate = append(entries(3, 8));
        duplicate.entries[1].log_id = log_id(1, 1);
        let mut backwards = append(entries(3, 8));
        backwards.vote = KVote::new_committed(3, 1);
        backwards.entries[0].log_id = log_id(3, 1);
        let mut before_prev = append(entries(1, 8));
        before_prev.vote = KVote::new_committed(3, 1);
        before_prev.prev_log_id = Some(log_id(3, 0));
        for (what, req, says) in [
            ("uncommitted vote", uncommitted, "not a leader's"),
            ("entry of a later leader", future_entry, "later leader"),
            ("commit of a later leader", future_commit, "leader_commit"),
            ("prev of a later leader", future_prev, "prev_log_id"),
            ("gap", gap, "not consecutive"),
            ("duplicate index", duplicate, "not consecutive"),
            ("leaders going back", backwards, "earlier leader"),
            (
                "first entry before prev",
                before_prev,
                "earlier leader than prev_log_id",
            ),
        ] {
            let err = check_append_shape(&req).expect_err(what);
            assert!(err.to_string().contains(says), "{what}: {err}");
        }
    }

    #[test]
    fn terms_above_the_largest_kafka_epoch_are_refused_wherever_they_are() {
        let ok = append(entries(2, 8));
        check_terms("AppendEntries", &ok).unwrap();
        let mut at_max = append(entries(1, 8));
        at_max.vote = KVote::new_committed(MAX_TERM, 1);
        check_terms("AppendEntries", &at_max).unwrap();

        let mut v = append(vec![]);
        v.vote = KVote::new_committed(BIG, 1);
        let mut prev = append(vec![]);
        prev.prev_log_id = Some(log_id(BIG, 0));
        let mut commit = append(vec![]);
        commit.leader_commit = Some(log_id(BIG, 0));
        let mut entry = append(entries(3, 8));
        entry.entries[2].log_id = log_id(BIG, 3);
        for (what, req) in [
            ("vote", v),
            ("prev", prev),
            ("commit", commit),
            ("entry", entry),
        ] {
            let e = check_terms("AppendEntries", &req).unwrap_err();
            assert!(matches!(e, PeerRefusal::TermTooLarge { .. }), "{what}: {e}");
        }

        let vote = VoteRequest::new(KVote::new(BIG, 2), Some(log_id(1, 3)));
        assert!(check_terms("Vote", &vote).is_err());
        let vote = VoteRequest::new(KVote::new(2, 2), Some(log_id(BIG, 3)));
        assert!(check_terms("Vote", &vote).is_err());
        let vote = VoteRequest::new(KVote::new(2, 2), Some(log_id(1, 3)));
        check_terms("Vote", &vote).unwrap();

        let snap = |vote: KVote, last: Option<LogId>| SnapshotChunk {
            vote,
            checkpoint: "1-1".into(),
            meta: SnapshotMeta {
                last_log_id: last,
                last_membership: Default::default(),
            },
            offset: 0,
            data: vec![],
            done: false,
        };
        check_terms(
            "snap",
            &snap(KVote::new_committed(1, 1), Some(log_id(1, 1))),
        )
        .unwrap();
        assert!(check_terms("snap", &snap(KVote::new_committed(BIG, 1), None)).is_err());
        assert!(check_terms(
            "snap",
            &snap(KVote::new_committed(1, 1), Some(log_id(BIG, 1)))
        )
        .is_err());

        let higher: AppendEntriesResponse<TypeConfig> =
            AppendEntriesResponse::HigherVote(KVote::new(BIG, 3));
        assert!(check_terms("resp", &higher).is_err());
        let partial: AppendEntriesResponse<TypeConfig> =
            AppendEntriesResponse::PartialSuccess(Some(log_id(BIG, 3)));
        assert!(check_terms("resp", &partial).is_err());
        let vr = VoteResponse::<TypeConfig>::new(KVote::new(BIG, 3), None, false);
        assert!(check_terms("resp", &vr).is_err());
    }

    /// A peer listener stand-in: answers AppendEntries with success (or a Vote with a
    /// term too large) and records the size and entry count of every body it accepted.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<(usize, usize)>>>);

    async fn accept_append(State(seen): State<Seen>, body: Bytes) -> Vec<u8> {
        let env: PeerRequest<AppendEntriesRequest<TypeConfig>> =
            postcard::from_bytes(&body).unwrap();
        seen.0
            .lock()
            .unwrap()
            .push((body.len(), env.body.entries.len()));
        let res: Result<AppendEntriesResponse<TypeConfig>, RaftError<TypeConfig>> =
            Ok(AppendEntriesResponse::Success);
        postcard::to_allocvec(&res).unwrap()
    }

    async fn huge_vote(_body: Bytes) -> Vec<u8> {
        let res: Result<VoteResponse<TypeConfig>, RaftError<TypeConfig>> =
            Ok(VoteResponse::new(KVote::new(BIG, 3), None, true));
        postcard::to_allocvec(&res).unwrap()
    }

    async fn peer(limit: usize) -> (String, Seen) {
        let seen = Seen::default();
        let app = axum::Router::new()
            .route(PATH_APPEND, axum::routing::post(accept_append))
            .route(PATH_VOTE, axum::routing::post(huge_vote))
            .layer(DefaultBodyLimit::max(limit))
            .with_state(seen.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(l, app).await });
        (addr, seen)
    }

    fn conn(addr: &str, max_body: usize) -> PeerConn {
        PeerConn {
            net: Network::new(PeerHttp::plain(), "c".into(), 1).with_max_body(max_body),
            target: 2,
            node: KNode {
                peer_addr: addr.to_string(),
                ..Default::default()
            },
        }
    }

    fn opt() -> RPCOption {
        RPCOption::new(Duration::from_secs(5))
    }

    /// Sends `all` (indexes 1..) as openraft's replication does: after a PartialSuccess,
    /// the rest from the entry after the one it names. Returns the number of RPCs, or the
    /// first error.
    async fn replicate(c: &mut PeerConn, all: Vec<Entry>) -> Result<usize, String> {
        let mut next = 0usize;
        for rpcs in 1..=100 {
            let req = append(all[next..].to_vec());
            match c.append_entries(req, opt()).await {
                Ok(AppendEntriesResponse::Success) => return Ok(rpcs),
                Ok(AppendEntriesResponse::PartialSuccess(Some(l))) => {
                    let reached = usize::try_from(l.index).unwrap_or(usize::MAX);
                    if reached <= next {
                        return Err(format!("no progress past entry {next}"));
                    }
                    next = reached;
                }
                Ok(other) => return Err(format!("answer {other:?}")),
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("not done in 100 RPCs".into())
    }

    #[tokio::test]
    async fn append_entries_larger_than_a_peer_body_are_split_not_retried_forever() {
        let limit = 64 * 1024;
        let (addr, seen) = peer(limit).await;
        // The client knows the receiver's limit: it never sends a body over it.
        let mut c = conn(&addr, limit);
        let rpcs = replicate(&mut c, entries(10, 10_000)).await.unwrap();
        let got = seen.0.lock().unwrap().clone();
        assert!(rpcs >= 2, "10 x 10 kB need two bodies of 64 KiB: {got:?}");
        assert!(got.len() >= 2, "{got:?}");
        assert_eq!(got.iter().map(|(_, n)| n).sum::<usize>(), 10, "{got:?}");
        assert!(got.iter().all(|(b, _)| *b <= limit), "{got:?}");

        // One entry larger than a body: an error at once, nothing sent.
        seen.0.lock().unwrap().clear();
        let err = c
            .append_entries(append(entries(1, 100_000)), opt())
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Network(_)), "{err:?}");
        assert!(err.to_string().contains("alone is larger"), "{err}");
        assert!(seen.0.lock().unwrap().is_empty());
        let err = replicate(&mut c, entries(1, 100_000)).await.unwrap_err();
        assert!(err.contains("alone is larger"), "{err}");
    }

    #[tokio::test]
    async fn a_receivers_413_makes_the_client_send_fewer_entries() {
        let limit = 64 * 1024;
        let (addr, seen) = peer(limit).await;
        // The client believes bodies may be larger: the receiver's 413 must be understood.
        let mut c = conn(&addr, MAX_PEER_BODY);
        let first = c
            .append_entries(append(entries(10, 10_000)), opt())
            .await
            .unwrap();
        assert_eq!(
            first,
            AppendEntriesResponse::PartialSuccess(Some(log_id(1, 5))),
            "half of the entries were sent"
        );
        seen.0.lock().unwrap().clear();
        let rpcs = replicate(&mut c, entries(10, 10_000)).await.unwrap();
        assert!(rpcs >= 2, "{rpcs}");
        let got = seen.0.lock().unwrap().clone();
        assert_eq!(got.iter().map(|(_, n)| n).sum::<usize>(), 10, "{got:?}");
        // A single entry the receiver refuses: an error, not a hint openraft loops on.
        let err = c
            .append_entries(append(entries(1, 100_000)), opt())
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Network(_)), "{err:?}");
        assert!(err.to_string().contains("alone as too large"), "{err}");
    }

    #[tokio::test]
    async fn a_peer_answer_with_a_term_above_an_i32_is_refused() {
        let (addr, _) = peer(1 << 20).await;
        let mut c = conn(&addr, MAX_PEER_BODY);
        let err = c
            .vote(VoteRequest::new(KVote::new(2, 1), None), opt())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("above the largest Kafka epoch"),
            "{err}"
        );
    }
}
