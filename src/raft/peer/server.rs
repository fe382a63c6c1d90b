//! The peer listener: openraft's RPCs between controllers (postcard bodies).
//!
//! Every request is checked before Raft sees it: the envelope must name this cluster, this
//! node and this node's directory id (or nil, "not yet known", until the membership records
//! this node's real one), and every normal entry must be a well-formed record batch. A
//! snapshot arrives in chunks into a temporary file and is checked completely (every CRC,
//! header, footer, every record) before it is installed, so a damaged transfer is refused
//! instead of stopping the me. A node still deciding its first election under a directory
//! id taken from `--voters` refuses Raft RPCs until it has decided (see `node::bootstrap`).

use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use openraft::async_runtime::WatchReceiver;
use openraft::error::RaftError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, TransferLeaderRequest, VoteRequest,
};
use openraft::storage::Snapshot;
use openraft::EntryPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::gate::Gate;
use super::wire::{
    check_append_shape, check_terms, ChunkAnswer, History, NodeInfo, PeerRequest, SnapshotChunk,
    MAX_PEER_BODY, PATH_APPEND, PATH_CURRENT_SNAPSHOT, PATH_HISTORY, PATH_INFO, PATH_PRE_VOTE,
    PATH_SNAPSHOT, PATH_TRANSFER_LEADER, PATH_VOTE, POSTCARD,
};
use crate::contract::metadata::RECORD_BATCHES;
use crate::image::load_checkpoint;
use crate::raft::error::{DirectoryRefusal, SnapshotSenderRefusal};
use crate::raft::state_machine::{
    check_snapshot_identity, parse_snapshot_id, CheckpointFile, SmShared,
};
use crate::raft::{KSnapshotMeta, KVote, LogId, NodeId, Raft, TypeConfig};
use crate::record::batch::decode_batch;
use crate::tls::PeerIdentity;

/// What the Raft handlers answer: openraft's result, postcard-encoded.
type RaftResult<T> = Result<T, RaftError<TypeConfig>>;

/// Who this node is, as it tells its peers.
#[derive(Debug, Clone)]
pub struct Me {
    /// Cluster id.
    pub cluster_id: String,
    /// Node id.
    pub node_id: NodeId,
    /// Directory id (meta.properties).
    pub directory_id: [u8; 16],
    /// The API listener's address.
    pub api_addr: String,
    /// The peer listener's address.
    pub peer_addr: String,
}

/// A snapshot transfer being received from the leader.
#[derive(Debug)]
pub struct Receiving {
    /// openraft's snapshot id.
    pub snapshot_id: String,
    /// Temporary file.
    pub path: std::path::PathBuf,
    /// Bytes received so far.
    pub next: u64,
}

/// What the peer listener is served from: Raft, the applied state (for checkpoints), who
/// this node is, its first-election gate, the snapshot transfer under way, and the highest
/// commit a leader reported. The node above holds it and reads the reported commit.
pub struct PeerState {
    raft: Raft,
    sm: Arc<SmShared>,
    me: Me,
    gate: Arc<Gate>,
    max_snapshot_bytes: u64,
    /// Highest commit index a leader told this node, plus one (0 = none).
    seen_commit: AtomicU64,
    receiving: tokio::sync::Mutex<Option<Receiving>>,
}

impl PeerState {
    /// The state of a peer listener that accepts snapshots up to `max_snapshot_bytes`.
    pub fn new(
        raft: Raft,
        sm: Arc<SmShared>,
        me: Me,
        gate: Arc<Gate>,
        max_snapshot_bytes: u64,
    ) -> Self {
        PeerState {
            raft,
            sm,
            me,
            gate,
            max_snapshot_bytes,
            seen_commit: AtomicU64::new(0),
            receiving: tokio::sync::Mutex::new(None),
        }
    }

    fn raft(&self) -> &Raft {
        &self.raft
    }

    fn sm(&self) -> &SmShared {
        &self.sm
    }

    fn id(&self) -> NodeId {
        self.me.node_id
    }

    /// Who this node is.
    pub fn me(&self) -> &Me {
        &self.me
    }

    fn cluster_id(&self) -> &str {
        &self.me.cluster_id
    }

    fn directory_id(&self) -> [u8; 16] {
        self.me.directory_id
    }

    fn max_snapshot_bytes(&self) -> u64 {
        self.max_snapshot_bytes
    }

    fn receiving(&self) -> &tokio::sync::Mutex<Option<Receiving>> {
        &self.receiving
    }

    /// The first-election gate.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// Notes that a leader told this node entry `index` is committed.
    fn note_commit(&self, index: u64) {
        self.seen_commit.fetch_max(index + 1, Ordering::Relaxed);
    }

    /// The highest commit index a leader told this node, if any.
    pub fn seen_commit(&self) -> Option<u64> {
        self.seen_commit.load(Ordering::Relaxed).checked_sub(1)
    }

    /// What this node says of itself to peers.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            cluster_id: self.me.cluster_id.clone(),
            node_id: self.me.node_id,
            directory_id: self.me.directory_id,
            api_addr: self.me.api_addr.clone(),
            peer_addr: self.me.peer_addr.clone(),
            initialized: {
                let m = self.raft.metrics();
                let m = m.borrow_watched();
                m.last_log_index.is_some() || m.snapshot.is_some()
            },
        }
    }

    /// What this node says of its history to bootstrap peers.
    fn history(&self) -> History {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let snapshot_index = m.snapshot.map(|s| s.index);
        let purged_index = m.purged.map(|p| p.index);
        History {
            cluster_id: self.me.cluster_id.clone(),
            node_id: self.me.node_id,
            last_log_index: m.last_log_index,
            snapshot_index,
            current_term: m.current_term,
            has_history: History::holds_history(m.last_log_index, snapshot_index, purged_index),
        }
    }

    /// The directory id this node's membership config records for it, if any.
    fn recorded_directory(&self) -> Option<[u8; 16]> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.membership_config
            .membership()
            .get_node(&self.me.node_id)
            .map(|n| n.directory_id)
    }
}

/// The peer router.
///
/// With `mutual_tls`, every request must come over a connection whose client certificate
/// (checked against the cluster's CA during the handshake) names a controller,
/// `controller-<id>`, and an enveloped request must say it is from that same node: a
/// request from the wrong identity is refused before openraft sees it.
pub fn router(me: Arc<PeerState>, mutual_tls: bool) -> Router {
    let r = Router::new()
        .route(PATH_APPEND, post(append))
        .route(PATH_VOTE, post(vote))
        .route(PATH_PRE_VOTE, post(pre_vote))
        .route(PATH_TRANSFER_LEADER, post(transfer_leader))
        .route(PATH_SNAPSHOT, post(snapshot_chunk))
        .route(PATH_INFO, get(info))
        .route(PATH_HISTORY, get(history))
        .route(PATH_CURRENT_SNAPSHOT, get(current_snapshot))
        .layer(DefaultBodyLimit::max(MAX_PEER_BODY));
    let r = if mutual_tls {
        r.route_layer(axum::middleware::from_fn(require_controller))
    } else {
        r
    };
    r.with_state(me)
}

/// The mutual-TLS check of the peer listener (see [`router`]).
async fn require_controller(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let names = req
        .extensions()
        .get::<Arc<PeerIdentity>>()
        .map(|p| (p.controller_id(), p.names.clone()));
    let cert_node = match names {
        Some((Some(id), _)) => id,
        Some((None, names)) => {
            return refuse(
                StatusCode::FORBIDDEN,
                format!("the client certificate ({names:?}) names no controller-<id>"),
            )
        }
        None => return refuse(StatusCode::FORBIDDEN, "no client certificate"),
    };
    if req.method() != axum::http::Method::POST {
        let from = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("from="))
                .map(|v| v.parse::<NodeId>().ok())
        });
        return match from {
            Some(Some(f)) if f != cert_node => refuse(
                StatusCode::FORBIDDEN,
                format!("a request from node {f} over the certificate of controller-{cert_node}"),
            ),
            Some(None) => refuse(StatusCode::BAD_REQUEST, "from= is not a node id"),
            _ => next.run(req).await,
        };
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_PEER_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("peer request body: {e}"),
            )
        }
    };
    // The envelope starts with the sender's cluster id and node id (PeerRequest).
    match postcard::take_from_bytes::<(String, NodeId)>(&bytes) {
        Ok(((_, from), _)) if from == cert_node => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
        Ok(((_, from), _)) => refuse(
            StatusCode::FORBIDDEN,
            format!("a request from node {from} over the certificate of controller-{cert_node}"),
        ),
        Err(e) => refuse(
            StatusCode::BAD_REQUEST,
            format!("undecodable peer request: {e}"),
        ),
    }
}

fn refuse(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    tracing::warn!(%status, "peer request refused: {msg}");
    (status, msg.to_string()).into_response()
}

fn reply<T: Serialize>(v: &T) -> Response {
    match postcard::to_allocvec(v) {
        Ok(b) => ([(header::CONTENT_TYPE, POSTCARD)], b).into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding: {e}")),
    }
}

/// Decodes and checks the envelope; the request.
fn open<T: DeserializeOwned>(me: &PeerState, body: &[u8]) -> Result<T, Response> {
    open_from(me, body).map(|(_, req)| req)
}

/// Decodes and checks the envelope; the node it says it comes from (under mutual TLS, the
/// one its certificate names), and the request.
fn open_from<T: DeserializeOwned>(me: &PeerState, body: &[u8]) -> Result<(NodeId, T), Response> {
    let env: PeerRequest<T> = postcard::from_bytes(body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("undecodable peer request: {e}"),
        )
    })?;
    if env.cluster_id != me.cluster_id() {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!(
                "request from node {} of cluster {} reached cluster {}",
                env.from,
                env.cluster_id,
                me.cluster_id()
            ),
        ));
    }
    if env.to != me.id() {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("request for node {} reached node {}", env.to, me.id()),
        ));
    }
    let mine = me.directory_id();
    if let Err(msg) = check_to_directory(env.to_directory, mine, me.recorded_directory(), me.id()) {
        return Err(refuse(StatusCode::CONFLICT, msg));
    }
    if let Err(msg) = me.gate().admits_raft() {
        return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, msg));
    }
    Ok((env.from, env.body))
}

/// Checks the directory id an envelope is addressed to (KIP-853). `recorded` is the
/// directory id this node's membership config holds for it, if any. Nil means "not yet
/// known" to the sender: accepted only while this node's own directory id is not recorded;
/// once it is, every current member knows it, and a nil request comes from a sender with a
/// stale view (or a forged one) and is refused, like any other directory id but ours.
pub fn check_to_directory(
    to: [u8; 16],
    mine: [u8; 16],
    recorded: Option<[u8; 16]>,
    node_id: NodeId,
) -> Result<(), DirectoryRefusal> {
    if to == mine {
        return Ok(());
    }
    if to == [0; 16] {
        if recorded == Some(mine) {
            return Err(DirectoryRefusal::StaleNil {
                node: node_id,
                recorded: uuid::Uuid::from_bytes(mine),
            });
        }
        return Ok(());
    }
    Err(DirectoryRefusal::Reformatted {
        node: node_id,
        to: uuid::Uuid::from_bytes(to),
        mine: uuid::Uuid::from_bytes(mine),
    })
}

/// `GET /peer/v1/history?from=ID&cluster=CLUSTER_ID`: does this node hold history? Asked by
/// bootstrap nodes before their first election. A node without history notes who asked (a
/// voter of its own cluster), so that history that voter creates later is known to be this
/// cluster's first start, not an older one.
async fn history(
    State(me): State<Arc<PeerState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let h = me.history();
    if !h.has_history {
        if let Some(from) = history_asker(query.as_deref(), me.cluster_id()) {
            me.gate().note_asker(from);
        }
    }
    reply(&h)
}

/// The asking node's id from `from=ID&cluster=CLUSTER_ID`, if it names this cluster.
pub fn history_asker(query: Option<&str>, cluster_id: &str) -> Option<NodeId> {
    let mut from = None;
    let mut cluster = None;
    for pair in query?.split('&') {
        match pair.split_once('=') {
            Some(("from", v)) => from = v.parse::<NodeId>().ok(),
            Some(("cluster", v)) => cluster = Some(v),
            _ => {}
        }
    }
    (cluster == Some(cluster_id)).then_some(from).flatten()
}

async fn info(State(me): State<Arc<PeerState>>) -> Response {
    reply(&me.info())
}

/// The current checkpoint file, for a peer whose own newest checkpoint is damaged.
async fn current_snapshot(State(me): State<Arc<PeerState>>) -> Response {
    let cur = me.sm().read().current.clone();
    let Some(c) = cur else {
        return refuse(StatusCode::NOT_FOUND, "no snapshot yet");
    };
    match tokio::fs::read(&c.path).await {
        Ok(b) => (
            [
                (header::CONTENT_TYPE, RECORD_BATCHES.to_string()),
                (header::CONTENT_DISPOSITION, c.id.file_name()),
            ],
            b,
        )
            .into_response(),
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading {}: {e}", c.path.display()),
        ),
    }
}

async fn append(State(me): State<Arc<PeerState>>, body: Bytes) -> Response {
    let mut req: AppendEntriesRequest<TypeConfig> = match open(&me, &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Err(e) = check_terms("AppendEntries", &req).and_then(|()| check_append_shape(&req)) {
        return refuse(StatusCode::BAD_REQUEST, e);
    }
    if let Some(first) = req.entries.first() {
        let expected = req.prev_log_id.map(|p| p.index + 1).unwrap_or(0);
        if first.log_id.index != expected {
            // Entries must follow prev_log_id; a gap would leave offsets unknown. Answer
            // "conflict" so the leader searches back and sends a snapshot if it must.
            tracing::warn!(
                prev = ?req.prev_log_id,
                first = %first.log_id,
                "AppendEntries whose entries do not follow prev_log_id: answering conflict"
            );
            let res: RaftResult<AppendEntriesResponse<TypeConfig>> =
                Ok(AppendEntriesResponse::Conflict);
            return reply(&res);
        }
    }
    for e in &mut req.entries {
        if let EntryPayload::Normal(b) = &mut e.payload {
            // Checked in place: the bytes move into a Bytes and back without a copy (the
            // decoded batch, which borrows them, is gone before they move back).
            let buf = Bytes::from(std::mem::take(&mut b.bytes));
            let checked = match decode_batch(&buf) {
                Ok((batch, used)) => used == buf.len() && !batch.header.is_control(),
                Err(err) => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        format!("entry {} holds a bad batch: {err}", e.log_id),
                    )
                }
            };
            b.bytes = Vec::from(buf);
            if !checked {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("entry {} is not exactly one data batch", e.log_id),
                );
            }
        }
    }
    let leader_commit = req.leader_commit;
    let res = me.raft().append_entries(req).await;
    // Only a request Raft accepted tells what is committed: a refused one may come from a
    // deposed leader or carry a commit index this node's log does not match.
    if let (Ok(AppendEntriesResponse::Success), Some(c)) = (&res, leader_commit) {
        me.note_commit(c.index);
    }
    reply(&res)
}

/// The ids of this node's membership: every member (voters and learners), and the voters.
fn membership_ids(me: &PeerState) -> (Vec<NodeId>, Vec<NodeId>) {
    let m = me.raft().metrics();
    let m = m.borrow_watched();
    let ms = m.membership_config.membership();
    (
        ms.nodes().map(|(id, _)| *id).collect(),
        ms.voter_ids().collect(),
    )
}

/// A Vote or PreVote request, opened and its terms checked.
fn open_vote(me: &PeerState, body: &[u8], what: &str) -> Result<VoteRequest<TypeConfig>, Response> {
    let (sender, req): (NodeId, VoteRequest<TypeConfig>) = open_from(me, body)?;
    check_terms(what, &req).map_err(|e| refuse(StatusCode::BAD_REQUEST, e))?;
    let candidate = req.vote.leader_id.node_id;
    let (members, _) = membership_ids(me);
    // A candidate this node's membership does not know is a removed voter, or a controller
    // passed over by recover-quorum that came back with its old disk: its vote could depose
    // the members' leader and truncate their log. A node without a membership yet (still at
    // bootstrap) votes as Raft says, so the first election is not held up.
    if !members.is_empty() && !members.contains(&candidate) {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!(
                "{what} for node {candidate}, which is not a member of this node's \
                 membership {members:?}: a removed or passed-over controller cannot be voted for"
            ),
        ));
    }
    // A candidate asks for its own votes (under mutual TLS, the sender is the certificate's).
    if sender != candidate {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("{what} for node {candidate} sent by node {sender}"),
        ));
    }
    Ok(req)
}

async fn vote(State(me): State<Arc<PeerState>>, body: Bytes) -> Response {
    match open_vote(&me, &body, "Vote") {
        Ok(req) => reply(&me.raft().vote(req).await),
        Err(resp) => resp,
    }
}

/// KIP-996's PreVote: would this node vote for the candidate? Nothing is persisted and the
/// term does not change; a node that hears from a leader within its election timeout says
/// no, so a candidate that was only cut off never raises its term.
async fn pre_vote(State(me): State<Arc<PeerState>>, body: Bytes) -> Response {
    match open_vote(&me, &body, "PreVote") {
        Ok(req) => reply(&me.raft().pre_vote(req).await),
        Err(resp) => resp,
    }
}

/// The leader hands leadership to a voter (`kraftd quorum transfer-leader`, or the leader
/// stopping): every voter drops the leader's lease, and the one named starts its election
/// once its log holds the leader's last entry. Only a member's transfer of its own
/// leadership is heard, and only to a voter; openraft ignores one whose vote is not this
/// node's current one.
async fn transfer_leader(State(me): State<Arc<PeerState>>, body: Bytes) -> Response {
    let (sender, req): (NodeId, TransferLeaderRequest<TypeConfig>) = match open_from(&me, &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Err(e) = check_terms("TransferLeader", &req) {
        return refuse(StatusCode::BAD_REQUEST, e);
    }
    let (members, voters) = membership_ids(&me);
    let from = req.from_leader().leader_id.node_id;
    let to = *req.to_node_id();
    if !members.contains(&from) || !voters.contains(&to) {
        return refuse(
            StatusCode::CONFLICT,
            format!(
                "TransferLeader from node {from} to node {to}: the sender must be a member and \
                 the receiver a voter of this node's membership (members {members:?}, voters \
                 {voters:?})"
            ),
        );
    }
    // Only the leader hands its own leadership over.
    if sender != from {
        return refuse(
            StatusCode::CONFLICT,
            format!("TransferLeader sent by node {sender} on behalf of leader {from}"),
        );
    }
    let res: RaftResult<_> = me
        .raft()
        .handle_transfer_leader(req)
        .await
        .map_err(RaftError::Fatal);
    reply(&res)
}

type ChunkResult = RaftResult<ChunkAnswer>;

fn restart(reason: String) -> ChunkResult {
    Ok(ChunkAnswer::Restart { reason })
}

async fn snapshot_chunk(State(me): State<Arc<PeerState>>, body: Bytes) -> Response {
    let req: SnapshotChunk = match open(&me, &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Err(e) = check_terms("InstallSnapshot", &req) {
        return refuse(StatusCode::BAD_REQUEST, e);
    }
    let cap = me.max_snapshot_bytes();
    let end = req.offset.saturating_add(req.data.len() as u64);
    if end > cap {
        // The transfer so far is dropped: the leader starts again from offset 0 (and is
        // refused again while its snapshot stays larger than the cap).
        let mut g = me.receiving().lock().await;
        if g.as_ref().is_some_and(|r| r.snapshot_id == req.checkpoint) {
            if let Some(old) = g.take() {
                let _ = std::fs::remove_file(&old.path);
            }
        }
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "snapshot {} would reach {end} bytes, above the largest snapshot this node \
                 accepts ({cap} bytes, max_snapshot_bytes)",
                req.checkpoint
            ),
        );
    }
    let res = receive_chunk(&me, req).await;
    reply(&res)
}

/// Checks a snapshot's metadata against the vote it is sent with and this node's committed
/// log, as openraft assumes (and asserts, stopping the node) when it installs one: a real
/// leader's snapshot never ends with an entry of a later leader than itself, and a snapshot
/// past what this node committed ends at a higher index.
pub fn check_snapshot_sender(
    vote: &KVote,
    meta: &KSnapshotMeta,
    local_committed: Option<LogId>,
) -> Result<(), SnapshotSenderRefusal> {
    if !vote.is_committed() {
        return Err(SnapshotSenderRefusal::NotALeadersVote {
            vote: vote.to_string(),
        });
    }
    let Some(last) = meta.last_log_id else {
        return Err(SnapshotSenderRefusal::Empty);
    };
    if last.leader_id > vote.leader_id {
        return Err(SnapshotSenderRefusal::LaterLeaderThanVote {
            last: last.to_string(),
            vote: vote.to_string(),
        });
    }
    if let Some(c) = local_committed {
        if last > c && last.index <= c.index {
            return Err(SnapshotSenderRefusal::ContradictsCommitted {
                last: last.to_string(),
                committed: c.to_string(),
            });
        }
    }
    Ok(())
}

async fn receive_chunk(me: &PeerState, req: SnapshotChunk) -> ChunkResult {
    let (my_vote, committed) = {
        let m = me.raft().metrics();
        let m = m.borrow_watched();
        (m.vote, m.local_committed)
    };
    if req.vote < my_vote {
        return Ok(ChunkAnswer::Accepted { vote: my_vote });
    }
    if let Err(e) = check_snapshot_sender(&req.vote, &req.meta, committed) {
        tracing::error!(snapshot = %req.checkpoint, "refused a snapshot: {e}");
        let mut g = me.receiving().lock().await;
        if let Some(old) = g.take() {
            let _ = std::fs::remove_file(&old.path);
        }
        return restart(e.to_string());
    }
    let id = req.checkpoint.clone();
    let Some(ckpt_id) = parse_snapshot_id(&id) else {
        tracing::error!(snapshot_id = %id, "leader sent a snapshot whose id is not a checkpoint name");
        return restart(format!("snapshot id {id:?} is not a checkpoint name"));
    };
    let mut g = me.receiving().lock().await;
    if req.offset == 0 {
        if let Some(old) = g.take() {
            let _ = std::fs::remove_file(&old.path);
        }
        let path = me
            .sm()
            .dir
            .join(format!("receiving-{}.part", ckpt_id.file_name()));
        if let Err(e) = std::fs::File::create(&path) {
            tracing::error!(error = %e, "cannot create {}", path.display());
            return restart(format!("cannot create {}: {e}", path.display()));
        }
        *g = Some(Receiving {
            snapshot_id: id.clone(),
            path,
            next: 0,
        });
    }
    let Some(recv) = g.as_mut() else {
        return restart(format!(
            "piece at offset {} of snapshot {id} but no transfer is under way",
            req.offset
        ));
    };
    if recv.snapshot_id != id || recv.next != req.offset {
        return restart(format!(
            "expected snapshot {} at offset {}, got {id} at offset {}",
            recv.snapshot_id, recv.next, req.offset
        ));
    }
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(&recv.path)?;
        f.seek(SeekFrom::Start(req.offset))?;
        f.write_all(&req.data)?;
        if req.done {
            f.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        tracing::error!(error = %e, "writing snapshot chunk");
        let path = recv.path.clone();
        *g = None;
        let _ = std::fs::remove_file(path);
        return restart(format!("writing the piece: {e}"));
    }
    recv.next += req.data.len() as u64;
    if !req.done {
        return Ok(ChunkAnswer::Accepted { vote: my_vote });
    }
    let path = recv.path.clone();
    *g = None;
    drop(g);
    // Check the whole file before openraft sees it: an install error would be fatal.
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "reading the received snapshot");
            return restart(format!("reading the received snapshot: {e}"));
        }
    };
    let summary = match load_checkpoint(Bytes::from(bytes), Some(ckpt_id.epoch)) {
        Ok((_, summary)) => summary,
        Err(e) => {
            tracing::error!(snapshot = %id, error = %e, "received snapshot is damaged; refused, the leader will resend it");
            let _ = std::fs::remove_file(&path);
            return restart(format!("the received snapshot is damaged: {e}"));
        }
    };
    if let Err(e) = check_snapshot_identity(&req.meta, &ckpt_id, &summary) {
        tracing::error!(snapshot = %id, error = %e, "received snapshot does not match its own header; refused");
        let _ = std::fs::remove_file(&path);
        return restart(format!("the received snapshot contradicts its header: {e}"));
    }
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "reopening the received snapshot");
            return restart(format!("reopening the received snapshot: {e}"));
        }
    };
    let snapshot = Snapshot {
        meta: req.meta.clone(),
        snapshot: CheckpointFile { id: ckpt_id, file },
    };
    let res = me.raft().install_full_snapshot(req.vote, snapshot).await;
    let _ = std::fs::remove_file(&path);
    match res {
        Ok(r) => Ok(ChunkAnswer::Installed { vote: r.vote }),
        Err(fatal) => Err(RaftError::Fatal(fatal)),
    }
}

#[cfg(test)]
mod tests {
    use super::{check_to_directory, history_asker};
    use crate::raft::error::DirectoryRefusal;

    #[test]
    fn a_snapshot_is_refused_unless_its_leader_could_have_sent_it() {
        use super::check_snapshot_sender;
        use crate::raft::{log_id, KSnapshotMeta, KVote};
        let meta = |term, node, index| KSnapshotMeta {
            last_log_id: Some(log_id(term, node, index)),
            last_membership: Default::default(),
        };
        let leader = KVote::new_committed(5, 2);
        check_snapshot_sender(&leader, &meta(5, 2, 100), None).unwrap();
        check_snapshot_sender(&leader, &meta(4, 3, 100), Some(log_id(4, 3, 50))).unwrap();
        for (what, vote, m, committed) in [
            ("uncommitted vote", KVote::new(5, 2), meta(5, 2, 100), None),
            ("a later term", leader, meta(6, 1, 100), None),
            ("a later leader of the term", leader, meta(5, 3, 100), None),
            ("no entry", leader, KSnapshotMeta::default(), None),
            (
                "newer than committed at a lower index",
                leader,
                meta(5, 2, 40),
                Some(log_id(4, 3, 50)),
            ),
        ] {
            let e = check_snapshot_sender(&vote, &m, committed).unwrap_err();
            eprintln!("{what}: {e}");
        }
    }

    #[test]
    fn a_history_asker_counts_only_with_this_cluster_id_and_a_node_id() {
        assert_eq!(history_asker(Some("from=3&cluster=abc"), "abc"), Some(3));
        assert_eq!(history_asker(Some("cluster=abc&from=2"), "abc"), Some(2));
        assert_eq!(history_asker(Some("from=3&cluster=xyz"), "abc"), None);
        assert_eq!(history_asker(Some("from=x&cluster=abc"), "abc"), None);
        assert_eq!(history_asker(Some("cluster=abc"), "abc"), None);
        assert_eq!(history_asker(None, "abc"), None);
    }

    #[test]
    fn a_nil_directory_is_accepted_only_until_the_membership_records_the_real_one() {
        let mine = [7; 16];
        let nil = [0; 16];
        assert!(check_to_directory(mine, mine, None, 1).is_ok());
        assert!(check_to_directory(mine, mine, Some(mine), 1).is_ok());
        assert!(
            check_to_directory(nil, mine, None, 1).is_ok(),
            "not recorded yet"
        );
        assert!(
            check_to_directory(nil, mine, Some(nil), 1).is_ok(),
            "recorded as unknown"
        );
        assert!(
            check_to_directory(nil, mine, Some([9; 16]), 1).is_ok(),
            "the membership holds another (old) directory: ours is not recorded"
        );
        let err = check_to_directory(nil, mine, Some(mine), 1).unwrap_err();
        assert!(
            matches!(err, DirectoryRefusal::StaleNil { node: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("stale"), "{err}");
        let err = check_to_directory([9; 16], mine, Some(mine), 1).unwrap_err();
        assert!(
            matches!(err, DirectoryRefusal::Reformatted { node: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("re-formatted"), "{err}");
        assert!(check_to_directory([9; 16], mine, None, 1).is_err());
    }
}
