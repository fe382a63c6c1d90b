//! Handing leadership to another voter (etcd's move-leader): on an operator's request
//! (`POST /v1/quorum/transfer-leader`) and when a leader is stopped with SIGTERM, so that a
//! rolling restart waits for no election timeout.
//!
//! The leader stops taking writes and tells every voter; the one it names starts its
//! election at once, once its log holds everything the leader had. Only a voter that
//! answered the leader within an election timeout is asked: one that is down could not take
//! over, and the quorum would wait out an election timeout, the outage this avoids. If the
//! voter asked still cannot win, the others' election timeouts run as after a crash, and any
//! up-to-date voter may lead next.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::metrics::WaitError;

use crate::node::handle::Node;
use crate::raft::{last_ack, leading_term, matched_index, KMetrics, NodeId};

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
    #[error("node {to} is not a voter (voters: {voters:?})")]
    NotAVoter { to: NodeId, voters: Vec<NodeId> },
    #[error(
        "node {to} has not answered the leader within {fresh:?}: it could not take over, and \
         the quorum would wait out an election timeout"
    )]
    NotAnswering { to: NodeId, fresh: Duration },
    #[error("there is no other voter to hand leadership to")]
    NoOtherVoter,
    #[error(
        "no other voter has answered the leader within {0:?}: none could take over, and the \
         quorum would wait out an election timeout"
    )]
    NoneAnswering(Duration),
    #[error("leadership is being handed to node {0} already")]
    InProgress(NodeId),
    #[error(
        "leadership did not move within {0:?}: the named voter did not win its election; \
         the voters elect a leader after their election timeout"
    )]
    TimedOut(Duration),
    #[error("raft stopped: {0}")]
    Stopped(String),
}

/// The voters other than the leader that acknowledged it within `fresh` (an append or a
/// heartbeat), with the index the leader has matched on each.
fn answering(m: &KMetrics, fresh: Duration) -> BTreeMap<NodeId, Option<u64>> {
    let acked = |id: &NodeId| last_ack(m, *id).is_some_and(|ago| ago <= fresh);
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != m.id && acked(id))
        .map(|id| (id, matched_index(m, id)))
        .collect()
}

/// Of the voters that answered the leader within `fresh`, the one whose log it has matched
/// furthest (the lowest id among equals): the one that can win an election soonest.
pub fn furthest_follower(m: &KMetrics, fresh: Duration) -> Option<NodeId> {
    answering(m, fresh)
        .into_iter()
        .rev()
        // max_by_key keeps the last of equals: from the highest id down, that is the lowest.
        .max_by_key(|(_, matched)| *matched)
        .map(|(id, _)| id)
}

/// Marks a transfer under way on a node until dropped.
struct Underway<'a>(&'a Node);

impl Drop for Underway<'_> {
    fn drop(&mut self) {
        if let Ok(mut t) = self.0.transferring.lock() {
            *t = None;
        }
    }
}

/// Hands this leader's leadership to `to` (or to [`furthest_follower`]) and waits, up to
/// `within`, until this node knows a leader of a later term. Only a voter that answered the
/// leader within an election timeout is asked, and one transfer runs at a time. Naming the
/// leader itself changes nothing and succeeds.
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
    let fresh = Duration::from_millis(node.config().election_timeout_min_ms);
    let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
    let to = match to {
        Some(t) if t == me => {
            return Ok(Moved {
                from: me,
                from_term: term,
                to: me,
                term,
            })
        }
        Some(t) if !voters.contains(&t) => return Err(TransferError::NotAVoter { to: t, voters }),
        Some(t) if !answering(&m, fresh).contains_key(&t) => {
            return Err(TransferError::NotAnswering { to: t, fresh })
        }
        Some(t) => t,
        None if voters.iter().all(|v| *v == me) => return Err(TransferError::NoOtherVoter),
        None => furthest_follower(&m, fresh).ok_or(TransferError::NoneAnswering(fresh))?,
    };
    let _underway = {
        let mut t = node
            .transferring
            .lock()
            .map_err(|e| TransferError::Stopped(e.to_string()))?;
        if let Some(other) = *t {
            return Err(TransferError::InProgress(other));
        }
        *t = Some(to);
        Underway(node)
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
        .map_err(|e| match e {
            WaitError::Timeout(..) => TransferError::TimedOut(within),
            e @ WaitError::ShuttingDown => TransferError::Stopped(e.to_string()),
        })?;
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
