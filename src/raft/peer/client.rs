//! The client side of the peer transport: openraft's RPCs as HTTP POSTs with postcard
//! bodies to the target's peer listener, over one pooled connection set (`PeerHttp`, also
//! used for forwarding to the leader's API), and the reads a node makes of its peers
//! (`fetch_info`, `fetch_history`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{RaftNetworkFactory, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::wire::{
    check_terms, entries_that_fit, ChunkAnswer, History, NodeInfo, PeerRequest, SnapshotChunk,
    Terms, MAX_PEER_BODY, PATH_APPEND, PATH_HISTORY, PATH_INFO, PATH_PRE_VOTE, PATH_SNAPSHOT,
    PATH_TRANSFER_LEADER, PATH_VOTE, POSTCARD,
};
use crate::raft::state_machine::{snapshot_id_string, CheckpointFile};
use crate::raft::{KNode, KSnapshot, KVote, NodeId, TypeConfig};

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

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RpcErr> {
        self.call(
            PATH_TRANSFER_LEADER,
            RPCTypes::TransferLeader,
            &req,
            option.hard_ttl(),
        )
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
    use crate::raft::peer::wire::tests::{append, entries, log_id, BIG};
    use crate::raft::Entry;
    use axum::body::Bytes;
    use axum::extract::{DefaultBodyLimit, State};
    use std::sync::{Arc, Mutex};

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
