//! Handing leadership to another voter (etcd's move-leader): on an operator's request
//! (`POST /v1/quorum/transfer-leader`) and when a leader is stopped with SIGTERM, so that a
//! rolling restart waits for no election timeout.
//!
//! The leader stops taking writes and tells every voter; the one it names starts its
//! election at once, once its log holds everything the leader had. If that voter cannot
//! win, the others' election timeouts run as after a crash, and any up-to-date voter may
//! lead next.

use std::time::Duration;

use openraft::async_runtime::WatchReceiver;

use crate::node::handle::Node;
use crate::raft::{leading_term, KMetrics, NodeId};

/// Where leadership went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// The leader before.
    pub from: NodeId,
    /// Its term (epoch).
    pub from_term: u64,
    /// The leader now.
    pub to: NodeId,
    /// Its term.
    pub term: u64,
}

/// Why leadership was not handed over.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("this node does not lead (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    #[error("node {0} already leads")]
    AlreadyLeads(NodeId),
    #[error("node {to} is not a voter (voters: {voters:?})")]
    NotAVoter { to: NodeId, voters: Vec<NodeId> },
    #[error("there is no other voter to hand leadership to")]
    NoOtherVoter,
    #[error(
        "leadership did not move within {0:?}: the named voter did not win its election; \
         the voters elect a leader after their election timeout"
    )]
    TimedOut(Duration),
    #[error("raft stopped: {0}")]
    Stopped(String),
}

/// The voter, other than the leader, whose log the leader has matched furthest (the lowest
/// id among equals): the one that can win an election soonest.
pub fn furthest_follower(m: &KMetrics) -> Option<NodeId> {
    let matched = |id: &NodeId| {
        m.replication
            .as_ref()
            .and_then(|r| r.get(id).cloned().flatten())
            .map(|l| l.index)
    };
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != m.id)
        // max_by_key keeps the last of equals: iterate from the highest id down.
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .max_by_key(|id| matched(id))
}

/// Hands this leader's leadership to `to` (or to [`furthest_follower`]) and waits, up to
/// `within`, until this node knows a leader of a later term.
pub async fn transfer_leadership(
    node: &Node,
    to: Option<NodeId>,
    within: Duration,
) -> Result<Moved, TransferError> {
    let m = node.raft().metrics().borrow_watched().clone();
    let me = node.id();
    let Some(term) = leading_term(&m) else {
        return Err(TransferError::NotLeader(m.current_leader));
    };
    let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
    let to = match to {
        Some(t) if t == me => return Err(TransferError::AlreadyLeads(me)),
        Some(t) if !voters.contains(&t) => return Err(TransferError::NotAVoter { to: t, voters }),
        Some(t) => t,
        None => furthest_follower(&m).ok_or(TransferError::NoOtherVoter)?,
    };
    tracing::info!(to, term, "handing leadership over");
    node.raft()
        .trigger()
        .transfer_leader(to)
        .await
        .map_err(|e| TransferError::Stopped(e.to_string()))?;
    let after = node
        .raft()
        .wait(Some(within))
        .metrics(
            |m| m.current_term > term && m.current_leader.is_some_and(|l| l != me),
            "another voter leads",
        )
        .await
        .map_err(|_| TransferError::TimedOut(within))?;
    let moved = Moved {
        from: me,
        from_term: term,
        to: after.current_leader.unwrap_or(to),
        term: after.current_term,
    };
    tracing::info!(
        to = moved.to,
        term = moved.term,
        asked = to,
        "leadership handed over"
    );
    Ok(moved)
}
