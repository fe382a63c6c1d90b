//! Operators' view of the quorum: `/v1/quorum/*`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};

use crate::api::controller_error;
use crate::contract::int64;
use crate::contract::quorum::{
    HealthStatus, LeaderMoved, NewVoter, QuorumHealth, QuorumStatus, Replica, SnapshotTaken,
    TransferLeader, Voter, VoterAddress, Voters,
};
use crate::contract::ErrorCode;
use openraft::ChangeMembers;

use super::{forward, ApiError, LeaderRequest};
use crate::node::handle::{now_ms, Node};
use crate::node::health::{members, quorum_health, unavailable, MemberView};
use crate::node::leadership::{transfer_leadership, TransferError};
use crate::raft::peer::client::fetch_info;
use crate::raft::{expect_empty_log, leading_term, matched_index, KNode, NodeId, Raft, TypeConfig};
use crate::record::uuid_fmt::kafka_uuid;

pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/quorum/status", get(status))
        .route("/v1/quorum/replication", get(replication))
        .route("/v1/quorum/health", get(health))
        .route("/v1/quorum/snapshot", post(snapshot))
        .route("/v1/quorum/voters", post(add_voter))
        .route(
            "/v1/quorum/voters/{id}",
            delete(remove_voter).patch(update_voter),
        )
        .route("/v1/quorum/transfer-leader", post(transfer_leader))
}

/// Longest `/v1/quorum/status` waits for a new leader's high watermark to be known.
const STATUS_HW_WAIT: Duration = Duration::from_millis(500);

async fn status(State(node): State<Arc<Node>>) -> Json<QuorumStatus> {
    Json(quorum_status(&node).await)
}

/// `/v1/quorum/status` of this node.
pub(crate) async fn quorum_status(node: &Node) -> QuorumStatus {
    // KIP-595: not below what an earlier leader served (waits briefly after a leader change).
    let hw = node.reported_high_watermark(STATUS_HW_WAIT).await;
    let m = node.raft().metrics().borrow_watched().clone();
    let log_start = node.log().log_start().map(|(_, s)| s).unwrap_or(0);
    let membership = m.membership_config.membership().clone();
    let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
    let mut voters = Vec::new();
    for id in &voter_ids {
        let peer = membership
            .get_node(id)
            .map(|n| n.peer_addr.clone())
            .unwrap_or_default();
        let api = node.api_addr_of(*id).await;
        voters.push(Voter { id: *id, peer, api });
    }
    let observers: Vec<NodeId> = membership.learner_ids().collect();
    let (mut max_lag, mut max_lag_ms) = (0u64, 0u64);
    for v in members(node, &m).unwrap_or_default().iter().skip(1) {
        max_lag = max_lag.max(v.lag);
        if let Some(d) = v.last_caught_up {
            max_lag_ms = max_lag_ms.max(d.as_millis() as u64);
        }
    }
    QuorumStatus {
        cluster_id: node.meta().cluster_id.clone(),
        node_id: node.id(),
        leader_id: m.current_leader,
        leader_epoch: int64(m.current_term),
        high_watermark: int64(hw),
        log_start_offset: int64(log_start),
        max_follower_lag: int64(max_lag),
        max_follower_lag_time_ms: int64(max_lag_ms),
        voters,
        observers,
    }
}

async fn replication(
    State(node): State<Arc<Node>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if !node.is_leader() {
        return forward(
            &node,
            method,
            "/v1/quorum/replication",
            &headers,
            Bytes::new(),
        )
        .await;
    }
    Json(replication_rows(&node)).into_response()
}

/// `GET /v1/quorum/health`: the leader's verdict. A follower asks the leader, forwarding
/// the caller's credentials as any forwarded request does; when no leader can be asked (or
/// the request was already forwarded once), it answers `unavailable` itself and says why.
/// 200 while writes can commit, 503 when they cannot.
async fn health(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    let h = health_of(&node, &headers).await;
    let code = if h.status == HealthStatus::Unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(h)).into_response()
}

/// The quorum's health: judged here on the leader, else asked of the leader.
pub(crate) async fn health_of(node: &Node, headers: &HeaderMap) -> QuorumHealth {
    if node.is_leader() {
        return quorum_health(node);
    }
    match ask_leader::<QuorumHealth>(node, "/v1/quorum/health", headers).await {
        Ok((h, _)) => h,
        Err(why) => unavailable(node, &why),
    }
}

/// How long a node waits for the leader's answer to a read it asks on a caller's behalf.
const ASK_LEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks the leader `GET path` on a caller's behalf (forwarded once, with the caller's
/// credentials, as [`forward`] does) and reads its JSON answer, a 503 included (health
/// answers one with a body). The error says why there is no answer, for a page or a
/// verdict to show.
pub(crate) async fn ask_leader<T: serde::de::DeserializeOwned>(
    node: &Node,
    path: &str,
    headers: &HeaderMap,
) -> Result<(T, NodeId), String> {
    let Some(leader) = node.leader().filter(|l| *l != node.id()) else {
        return Err(format!("no leader is known to node {}", node.id()));
    };
    let r = super::forward_within(
        node,
        Method::GET,
        path,
        headers,
        Bytes::new(),
        ASK_LEADER_TIMEOUT,
    )
    .await;
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), 16 << 20)
        .await
        .map_err(|e| format!("reading leader {leader}'s answer: {e}"))?;
    let text = || String::from_utf8_lossy(&body).into_owned();
    if status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE {
        if let Ok(t) = serde_json::from_slice::<T>(&body) {
            return Ok((t, leader));
        }
    }
    Err(format!("asking leader {leader}: {status}: {}", text()))
}

/// `/v1/quorum/replication` as the leader sees it (empty on a node that does not lead).
pub(crate) fn replication_rows(node: &Node) -> Vec<Replica> {
    let now = now_ms();
    let at = |d: Option<Duration>| d.map_or(0, |d| int64(now.saturating_sub(d.as_millis() as u64)));
    let m = node.raft().metrics().borrow_watched().clone();
    members(node, &m)
        .unwrap_or_default()
        .into_iter()
        .map(|v: MemberView| Replica {
            node_id: v.id,
            log_end_offset: int64(v.log_end_offset),
            lag: int64(v.lag),
            last_fetch_timestamp: at(v.last_ack),
            last_caught_up_timestamp: at(v.last_caught_up),
            status: v.role,
            up: Some(v.up),
        })
        .collect()
}

/// Takes a checkpoint of this node now.
async fn snapshot(State(node): State<Arc<Node>>) -> Result<Json<SnapshotTaken>, ApiError> {
    let target = node.sm().applied().index;
    node.sm()
        .set_snapshot_reason("an operator asked for one (POST /v1/quorum/snapshot)");
    node.raft()
        .trigger()
        .snapshot()
        .await
        .map_err(|e| ApiError::internal(format!("cannot trigger a snapshot: {e}")))?;
    node.raft()
        .wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.snapshot.map(|s| s.index) >= target, "snapshot taken")
        .await
        .map_err(|e| ApiError::internal(format!("snapshot not taken: {e}")))?;
    let cur = node.sm().read().current.clone();
    let c = cur.ok_or_else(|| ApiError::internal("no snapshot after taking one"))?;
    Ok(Json(SnapshotTaken {
        end_offset: c.id.end_offset,
        epoch: c.id.epoch,
        file_name: c.id.file_name(),
    }))
}

fn membership_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> ApiError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ApiError::not_controller(f.leader_id)
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::InvalidRequest,
            c.to_string(),
        ),
        // Appended, then replaced by a new leader's log: it may still take effect.
        RaftError::APIError(e @ ClientWriteError::LogEntryDiscarded(_)) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::RequestTimedOut,
            format!("{e}; read GET /v1/quorum/voters before retrying"),
        ),
        RaftError::APIError(e) => ApiError::internal(e.to_string()),
        RaftError::Fatal(f) => ApiError::internal(f.to_string()),
    }
}

fn voters_now(node: &Node) -> Json<Voters> {
    let m = node.raft().metrics().borrow_watched().clone();
    let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
    Json(Voters { voters })
}

/// Adds a controller: learner first (blocking until it has caught up), then voter.
async fn add_voter(State(node): State<Arc<Node>>, req: LeaderRequest) -> Response {
    req.on_leader(&node, |node, body| async move {
        add_voter_here(&node, &body)
            .await
            .map(IntoResponse::into_response)
    })
    .await
}

async fn add_voter_here(node: &Node, body: &[u8]) -> Result<Json<Voters>, ApiError> {
    let req: NewVoter = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("request body: {e}")))?;
    let info = fetch_info(node.http(), &req.peer).await.map_err(|e| {
        ApiError::invalid(format!(
            "cannot reach the new controller's peer listener {}: {e}",
            req.peer
        ))
    })?;
    if info.node_id != req.id {
        return Err(ApiError::invalid(format!(
            "{} is node {}, not node {}",
            req.peer, info.node_id, req.id
        )));
    }
    if info.cluster_id != node.meta().cluster_id {
        return Err(ApiError::invalid(format!(
            "node {} is formatted for cluster {}, not {}",
            req.id,
            info.cluster_id,
            node.meta().cluster_id
        )));
    }
    let kn = KNode {
        peer_addr: req.peer.clone(),
        api_addr: req.api.clone().unwrap_or(info.api_addr),
        directory_id: info.directory_id,
    };
    // The learner entry and the promotion are written while the pipeline hands nothing to
    // Raft (it places records at exact offsets); catching up happens in between.
    admit_as_learner(node, req.id, kn).await?;
    wait_caught_up(node, req.id).await?;
    let id = req.id;
    node.controller()
        .exclusive(2, move |raft: Raft| async move {
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
        })
        .await
        .map_err(controller_error)?
        .map_err(membership_error)?;
    tracing::info!(id = req.id, peer = %req.peer, "added voter");
    Ok(voters_now(node))
}

/// Makes `id` a learner under `kn`'s directory id. A controller the membership knows under
/// another directory id (a replaced disk formatted with `--join`) is first demoted if it is
/// a voter, so that it never votes or counts towards a commit under the identity of the disk
/// it replaced, then given its new directory id. The leader's own directory duty may make
/// the same changes at the same moment: a refused step is retried (bounded: 50 × 100 ms)
/// after reading the membership again.
async fn admit_as_learner(node: &Node, id: NodeId, kn: KNode) -> Result<(), ApiError> {
    let mut last_err = None;
    for _ in 0..50 {
        let m = node.raft().metrics().borrow_watched().clone();
        if leading_term(&m).is_none() {
            return Err(ApiError::not_controller(m.current_leader));
        }
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let step = match membership.get_node(&id) {
            Some(n) if n.directory_id == kn.directory_id => return Ok(()),
            None => node
                .controller()
                .exclusive(1, {
                    let kn = kn.clone();
                    move |raft: Raft| async move { raft.add_learner(id, kn, false).await }
                })
                .await
                .map_err(controller_error)?
                .map(|_| ()),
            Some(n) if voters.contains(&id) => {
                if voters.len() == 1 {
                    return Err(ApiError::invalid(format!(
                        "node {id} is the only voter, under directory {}: it cannot be demoted",
                        n.directory()
                    )));
                }
                tracing::warn!(
                    id,
                    old = %n.directory(),
                    new = %kn.directory(),
                    "adding a voter whose disk was replaced: demoting its old identity first"
                );
                node.controller()
                    .exclusive(2, move |raft: Raft| async move {
                        raft.change_membership(
                            ChangeMembers::RemoveVoters(BTreeSet::from([id])),
                            true,
                        )
                        .await
                    })
                    .await
                    .map_err(controller_error)?
                    .map(|_| ())
            }
            Some(old) => node
                .controller()
                .exclusive(1, {
                    let kn = kn.clone();
                    let new_disk = old.directory_id != [0; 16];
                    move |raft: Raft| async move {
                        if new_disk {
                            expect_empty_log(&raft, id).await;
                        }
                        set_node(&raft, id, kn).await
                    }
                })
                .await
                .map_err(controller_error)?
                .map(|_| ()),
        };
        match step.map_err(membership_error) {
            Ok(()) => {}
            Err(e) if e.status == StatusCode::CONFLICT => {
                last_err = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::InvalidRequest,
            format!("node {id} could not be made a learner under its new directory id: retry"),
        )
    }))
}

/// Records `kn` (addresses and directory id) for member `id`, keeping the voter set: one
/// membership entry.
async fn set_node(
    raft: &Raft,
    id: NodeId,
    kn: KNode,
) -> Result<
    openraft::raft::ClientWriteResponse<TypeConfig>,
    RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
> {
    raft.change_membership(
        ChangeMembers::SetNodes(std::collections::BTreeMap::from([(id, kn)])),
        true,
    )
    .await
}

/// Waits (up to a minute) until learner `id` has replicated the leader's log.
async fn wait_caught_up(node: &Node, id: NodeId) -> Result<(), ApiError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = node.raft().metrics().borrow_watched().clone();
        let last = m.last_log_index;
        let matched = matched_index(&m, id);
        if matched.is_some() && matched >= last {
            return Ok(());
        }
        if leading_term(&m).is_none() {
            return Err(ApiError::not_controller(m.current_leader));
        }
        if std::time::Instant::now() > deadline {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::RequestTimedOut,
                format!("node {id} did not catch up within 60 s; it stays a learner"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The node id a path names (`/v1/quorum/voters/{id}`).
fn node_id_in_path(id: &str) -> Result<NodeId, ApiError> {
    id.parse::<NodeId>()
        .map_err(|_| ApiError::invalid(format!("{id:?} is not a node id")))
}

async fn remove_voter(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    req: LeaderRequest,
) -> Response {
    req.on_leader(&node, |node, _body| async move {
        let id = node_id_in_path(&id)?;
        let m = node.raft().metrics().borrow_watched().clone();
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        if !voters.contains(&id) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::VoterNotFound,
                format!("node {id} is not a voter (voters: {voters:?})"),
            ));
        }
        if voters.len() == 1 {
            return Err(ApiError::invalid("cannot remove the last voter"));
        }
        node.controller()
            .exclusive(2, move |raft: Raft| async move {
                raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                    .await
            })
            .await
            .map_err(controller_error)?
            .map_err(membership_error)?;
        tracing::info!(id, "removed voter");
        Ok(voters_now(&node).into_response())
    })
    .await
}

/// Moves a member (a voter or an observer) to new addresses, with a majority alive (Kafka's
/// UpdateRaftVoter): the node must already answer at the new peer address as itself, of
/// this cluster, with the disk the membership records for it, so a typo or another
/// machine's address cannot take its place. One membership entry that keeps the voter set.
async fn update_voter(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    req: LeaderRequest,
) -> Response {
    req.on_leader(&node, |node, body| async move {
        let id = node_id_in_path(&id)?;
        let req: VoterAddress = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("request body: {e}")))?;
        let m = node.raft().metrics().borrow_watched().clone();
        let membership = m.membership_config.membership().clone();
        let Some(recorded) = membership.get_node(&id).cloned() else {
            let ids: Vec<NodeId> = membership.nodes().map(|(i, _)| *i).collect();
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::VoterNotFound,
                format!("node {id} is not a member (members: {ids:?})"),
            ));
        };
        let info = fetch_info(node.http(), &req.peer).await.map_err(|e| {
            ApiError::invalid(format!(
                "node {id} does not answer at its new peer address {}: {e}; start it there first",
                req.peer
            ))
        })?;
        if info.node_id != id || info.cluster_id != node.meta().cluster_id {
            return Err(ApiError::invalid(format!(
                "{} is node {} of cluster {}, not node {id} of cluster {}",
                req.peer,
                info.node_id,
                info.cluster_id,
                node.meta().cluster_id
            )));
        }
        if recorded.directory_id != [0; 16] && info.directory_id != recorded.directory_id {
            return Err(ApiError::invalid(format!(
                "node {id} at {} runs on another disk (directory {}) than the membership records \
                 ({}): a replaced disk is added with `quorum add-voter`, not moved",
                req.peer,
                kafka_uuid(&uuid::Uuid::from_bytes(info.directory_id)),
                kafka_uuid(&recorded.directory())
            )));
        }
        let kn = KNode {
            peer_addr: req.peer.clone(),
            api_addr: req.api.clone().unwrap_or(info.api_addr),
            directory_id: recorded.directory_id,
        };
        let api = kn.api_addr.clone();
        node.controller()
            .exclusive(
                1,
                move |raft: Raft| async move { set_node(&raft, id, kn).await },
            )
            .await
            .map_err(controller_error)?
            .map_err(membership_error)?;
        node.forget_api_addr(id);
        tracing::info!(id, peer = %req.peer, %api, "moved a member to new addresses");
        Ok(Json(Voter {
            id,
            peer: req.peer,
            api: Some(api),
        })
        .into_response())
    })
    .await
}

/// Longest `POST /v1/quorum/transfer-leader` waits for another voter to lead: a few
/// election rounds.
const TRANSFER_WAIT: Duration = Duration::from_secs(10);

/// Hands leadership to the voter named (or the furthest caught up) and answers once another
/// voter leads; naming the leader itself answers at once with nothing changed.
async fn transfer_leader(State(node): State<Arc<Node>>, req: LeaderRequest) -> Response {
    req.on_leader(&node, |node, body| async move {
        let req: TransferLeader = if body.iter().all(u8::is_ascii_whitespace) {
            TransferLeader::default()
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::invalid(format!("request body: {e}")))?
        };
        let moved = transfer_leadership(&node, req.to, TRANSFER_WAIT)
            .await
            .map_err(|e| match e {
                TransferError::NotLeader(l) => ApiError::not_controller(l),
                TransferError::InProgress(to) => {
                    ApiError::not_controller(Some(to)).with_message(e.to_string())
                }
                e @ TransferError::NotAVoter { .. } => ApiError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::VoterNotFound,
                    e.to_string(),
                ),
                e @ (TransferError::NotAnswering { .. } | TransferError::NoneAnswering(_)) => {
                    ApiError::new(
                        StatusCode::CONFLICT,
                        ErrorCode::IneligibleReplica,
                        e.to_string(),
                    )
                }
                e @ TransferError::NoOtherVoter => ApiError::invalid(e.to_string()),
                e @ TransferError::TimedOut(_) => ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    ErrorCode::RequestTimedOut,
                    e.to_string(),
                ),
                e @ TransferError::Stopped(_) => ApiError::internal(e.to_string()),
            })?;
        Ok(Json(LeaderMoved {
            previous_leader_id: moved.from,
            previous_leader_epoch: moved.from_term as i64,
            leader_id: moved.to,
            leader_epoch: moved.term as i64,
        })
        .into_response())
    })
    .await
}
