//! Operators' view of the quorum: `/v1/quorum/*`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};

use crate::api::controller_error;
use crate::contract::int64;
use crate::contract::quorum::{
    HealthStatus, LeaderMoved, NewVoter, QuorumHealth, QuorumStatus, Replica, ReplicaRole,
    SnapshotTaken, TransferLeader, Voter, Voters,
};
use crate::contract::ErrorCode;
use openraft::ChangeMembers;

use super::{forward, ApiError, LeaderRequest};
use crate::node::handle::{now_ms, Node};
use crate::node::health::{down_after, is_up, quorum_health, unavailable};
use crate::node::leadership::{transfer_leadership, TransferError};
use crate::raft::peer::client::fetch_info;
use crate::raft::{expect_empty_log, leading_term, matched_index, KNode, NodeId, Raft, TypeConfig};

pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/quorum/status", get(status))
        .route("/v1/quorum/replication", get(replication))
        .route("/v1/quorum/health", get(health))
        .route("/v1/quorum/snapshot", post(snapshot))
        .route("/v1/quorum/voters", post(add_voter))
        .route("/v1/quorum/voters/{id}", delete(remove_voter))
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
    let applied = node.sm().applied();
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
    if leading_term(&m).is_some() {
        let last_end = node.end_of(m.last_log_index).unwrap_or(applied.end_offset);
        let now = now_ms();
        for t in node.follower_tracks().values() {
            let fe = node.end_of(t.matched).unwrap_or(0);
            max_lag = max_lag.max(last_end.saturating_sub(fe));
            if t.last_caught_up_ms > 0 {
                max_lag_ms = max_lag_ms.max(now.saturating_sub(t.last_caught_up_ms));
            }
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

/// `GET /v1/quorum/health`: the leader's verdict. A follower asks the leader with the
/// caller's credentials; when no leader can be asked, it answers `unavailable` itself and
/// says why. 200 while writes can commit, 503 when they cannot.
async fn health(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    let h = health_of(&node, headers.get(axum::http::header::AUTHORIZATION)).await;
    let code = if h.status == HealthStatus::Unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(h)).into_response()
}

/// The quorum's health: judged here on the leader, else asked of the leader.
pub(crate) async fn health_of(node: &Node, authorization: Option<&HeaderValue>) -> QuorumHealth {
    if node.is_leader() {
        return quorum_health(node).await;
    }
    match ask_leader::<QuorumHealth>(node, "/v1/quorum/health", authorization).await {
        Ok((h, _)) => h,
        Err(why) => unavailable(node, &why),
    }
}

/// How long a node waits for the leader's answer to a read it asks on a caller's behalf.
const ASK_LEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// Asks the leader `GET path` with the caller's credentials (`authorization`, which the
/// leader checks again), and reads its JSON answer, a 503 included (health answers one with
/// a body). The error says why there is no answer, for a page or a verdict to show.
pub(crate) async fn ask_leader<T: serde::de::DeserializeOwned>(
    node: &Node,
    path: &str,
    authorization: Option<&HeaderValue>,
) -> Result<(T, NodeId), String> {
    let Some(leader) = node.leader().filter(|l| *l != node.id()) else {
        return Err(format!("no leader is known to node {}", node.id()));
    };
    let Some(addr) = node.api_addr_of(leader).await else {
        return Err(format!("the API address of leader {leader} is unknown"));
    };
    let http = node.http();
    let mut ask = http
        .client()
        .get(http.url(&addr, path))
        .timeout(ASK_LEADER_TIMEOUT);
    if let Some(a) = authorization {
        ask = ask.header(axum::http::header::AUTHORIZATION, a);
    }
    match ask.send().await {
        Ok(r) if r.status().is_success() || r.status() == StatusCode::SERVICE_UNAVAILABLE => {
            let status = r.status();
            match r.json::<T>().await {
                Ok(t) => Ok((t, leader)),
                Err(e) => Err(format!("leader {leader} answered {status}: {e}")),
            }
        }
        Ok(r) => Err(format!("leader {leader} answered {}", r.status())),
        Err(e) => Err(format!("cannot ask leader {leader}: {e}")),
    }
}

/// `/v1/quorum/replication` as the leader sees it (call on the leader).
pub(crate) fn replication_rows(node: &Node) -> Vec<Replica> {
    let m = node.raft().metrics().borrow_watched().clone();
    let membership = m.membership_config.membership().clone();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let last_end = node.end_of(m.last_log_index).unwrap_or(0);
    let now = now_ms();
    let window = down_after(node.config());
    let mut out = vec![Replica {
        node_id: node.id(),
        log_end_offset: int64(last_end),
        lag: 0,
        last_fetch_timestamp: int64(now),
        last_caught_up_timestamp: int64(now),
        status: ReplicaRole::Leader,
        up: true,
    }];
    let tracks = node.follower_tracks();
    for (id, _) in membership.nodes() {
        if *id == node.id() {
            continue;
        }
        let t = tracks.get(id).cloned().unwrap_or_default();
        let end = node.end_of(t.matched).unwrap_or(0);
        out.push(Replica {
            node_id: *id,
            log_end_offset: int64(end),
            lag: int64(last_end.saturating_sub(end)),
            last_fetch_timestamp: int64(t.last_fetch_ms),
            last_caught_up_timestamp: int64(t.last_caught_up_ms),
            status: if voters.contains(id) {
                ReplicaRole::Follower
            } else {
                ReplicaRole::Observer
            },
            up: is_up(&t, now, window),
        });
    }
    out
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
                        raft.change_membership(
                            ChangeMembers::SetNodes(std::collections::BTreeMap::from([(id, kn)])),
                            true,
                        )
                        .await
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

async fn remove_voter(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    req: LeaderRequest,
) -> Response {
    req.on_leader(&node, |node, _body| async move {
        let id = id
            .parse::<NodeId>()
            .map_err(|_| ApiError::invalid(format!("{id:?} is not a node id")))?;
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
