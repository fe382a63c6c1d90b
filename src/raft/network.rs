//! The client side of the peer transport: openraft's RPCs as HTTP POSTs with postcard
//! bodies to the target's peer listener, over one pooled connection set.
//!
//! Every request carries an envelope naming the cluster, the sender, the target and the
//! directory id the sender believes the target has. A node refuses an envelope meant for
//! another cluster, node or directory (KIP-853: a re-formatted disk must not vote or count
//! towards a commit under the identity of the voter it replaced).

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{KNode, NodeId, TypeConfig};

/// Content type of peer bodies.
pub const POSTCARD: &str = "application/x-postcard";
/// Peer path of AppendEntries.
pub const PATH_APPEND: &str = "/peer/v1/append";
/// Peer path of Vote.
pub const PATH_VOTE: &str = "/peer/v1/vote";
/// Peer path of a snapshot chunk.
pub const PATH_SNAPSHOT: &str = "/peer/v1/snapshot";
/// Peer path of the node's identity.
pub const PATH_INFO: &str = "/peer/v1/info";
/// Peer path of the current checkpoint file.
pub const PATH_CURRENT_SNAPSHOT: &str = "/peer/v1/current-snapshot";
/// Peer path of a leader's read index (linearizable reads on followers).
pub const PATH_READ_INDEX: &str = "/peer/v1/read-index";
/// Peer path of the node's history: does it hold anything beyond the bootstrap?
pub const PATH_HISTORY: &str = "/peer/v1/history";

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

/// Builds the pooled HTTP client the peers share.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// openraft's network factory.
#[derive(Clone)]
pub struct Network {
    client: reqwest::Client,
    cluster_id: String,
    me: NodeId,
}

impl Network {
    /// A factory for node `me` of `cluster_id`.
    pub fn new(client: reqwest::Client, cluster_id: String, me: NodeId) -> Self {
        Network {
            client,
            cluster_id,
            me,
        }
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

impl PeerConn {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        action: RPCTypes,
        body: Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, KNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let env = PeerRequest {
            cluster_id: self.net.cluster_id.clone(),
            from: self.net.me,
            to: self.target,
            to_directory: self.node.directory_id,
            body,
        };
        let bytes =
            postcard::to_allocvec(&env).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let url = format!("http://{}{}", self.node.peer_addr, path);
        let ttl = option.hard_ttl();
        let res = self
            .net
            .client
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
            return Err(RPCError::Network(NetworkError::new(&Msg(format!(
                "node {} refused {path}: {status}: {text}",
                self.target
            )))));
        }
        let result: Result<Resp, RaftError<NodeId, E>> =
            postcard::from_bytes(&body).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, KNode, RaftError<NodeId>>> {
        self.call(PATH_APPEND, RPCTypes::AppendEntries, rpc, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, KNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(PATH_SNAPSHOT, RPCTypes::InstallSnapshot, rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, KNode, RaftError<NodeId>>> {
        self.call(PATH_VOTE, RPCTypes::Vote, rpc, &option).await
    }

    fn backoff(&self) -> Backoff {
        // An unreachable peer is retried every 200 ms, so a restarted node is back quickly.
        Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
