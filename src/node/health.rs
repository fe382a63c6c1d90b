//! The leader's view of each member, one home for what `GET /v1/quorum/health`,
//! `/v1/quorum/replication`, `/ui` and `/metrics` say about it:
//! - **up**: it acknowledged the leader (a heartbeat or an append) within [`down_after`].
//!   Read from openraft's per-follower acknowledgement instants when asked, so no
//!   background loop can make a live follower look silent, and a stopped one never reads
//!   as a follower with lag 0.
//! - **caught up**: it held the leader's whole log as it was at some moment within that
//!   window (Kafka's last-caught-up time). [`Tracker`] samples the leader's last index every
//!   100 ms in a task of its own; a follower's matched index at or past a sample means it
//!   had everything the leader had then, so steady writes do not make it look behind.
//!
//! Times are kept as monotonic instants and turned into wall-clock figures only when shown.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;

use super::config::Config;
use super::handle::Node;
use crate::contract::int64;
use crate::contract::quorum::{HealthStatus, MemberHealth, QuorumHealth, ReplicaRole};
use crate::raft::{last_ack, leading_term, matched_index, KMetrics, NodeId};

/// How long a member may stay silent before it counts as down: four of the longest election
/// timeouts, and never under 2 s (Kafka's `controller.quorum.fetch.timeout.ms`), so that one
/// slow round trip does not flap it.
pub fn down_after(cfg: &Config) -> Duration {
    Duration::from_millis(cfg.election_timeout_max_ms.saturating_mul(4).max(2000))
}

/// Voters needed for a majority of `voters`.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// Samples the leader's log end every 100 ms while this node leads, in a task of its own
/// (nothing else it does can delay a sample).
pub async fn track_followers(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let m = node.raft().metrics().borrow_watched().clone();
        if m.running_state.is_err() {
            return;
        }
        let Some(term) = leading_term(&m) else {
            continue;
        };
        let now = Instant::now();
        let followers: BTreeMap<NodeId, (Option<u64>, Option<Instant>)> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| *id != m.id)
            .map(|id| (id, (matched_index(&m, id), acked_at(&m, id, now))))
            .collect();
        if let Ok(mut t) = node.followers.lock() {
            t.sample(now, term, m.last_log_index, &followers);
        }
    }
}

/// When follower `id` last acknowledged the leader, as an instant of ours.
fn acked_at(m: &KMetrics, id: NodeId, now: Instant) -> Option<Instant> {
    last_ack(m, id).and_then(|ago| now.checked_sub(ago))
}

/// One member as the leader sees it now.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub id: NodeId,
    pub role: ReplicaRole,
    /// Acknowledged the leader within the down window (the leader itself: always).
    pub up: bool,
    /// Up, and held the leader's whole log within the down window before its last
    /// acknowledgement (the leader itself: always).
    pub caught_up: bool,
    /// Offset after its last replicated record (0: nothing).
    pub log_end_offset: u64,
    /// Records behind the leader's log end.
    pub lag: u64,
    /// Since its last acknowledgement (None: none in this term).
    pub last_ack: Option<Duration>,
    /// Since it last held the leader's whole log (None: not in this term).
    pub last_caught_up: Option<Duration>,
}

/// Every member as this node, the leader, sees it in Raft's metrics `m`: itself first, then
/// the other voters, then the learners, each by id. None when this node does not lead.
pub fn members(node: &Node, m: &KMetrics) -> Option<Vec<MemberView>> {
    let term = leading_term(m)?;
    let window = down_after(node.config());
    let membership = m.membership_config.membership().clone();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let last_end = node.end_of(m.last_log_index).unwrap_or(0);
    let now = Instant::now();
    let mut out = vec![MemberView {
        id: node.id(),
        role: ReplicaRole::Leader,
        up: true,
        caught_up: true,
        log_end_offset: last_end,
        lag: 0,
        last_ack: Some(Duration::ZERO),
        last_caught_up: Some(Duration::ZERO),
    }];
    let mut others: Vec<NodeId> = membership
        .nodes()
        .map(|(id, _)| *id)
        .filter(|id| *id != node.id())
        .collect();
    others.sort_by_key(|id| (!voters.contains(id), *id));
    let tracker = node.followers.lock().ok();
    for id in others {
        let last_ack = last_ack(m, id);
        let sampled = tracker
            .as_ref()
            .and_then(|t| t.caught_up_at(term, id))
            .map(|at| now.saturating_duration_since(at));
        let end = node.end_of(matched_index(m, id)).unwrap_or(0);
        // What it acknowledged last already holds the leader's whole log as it is now: it
        // was caught up then, whatever the samples say (they need a round to show it, e.g.
        // right after an election).
        let last_caught_up = match (last_ack, sampled) {
            (Some(ack), s) if end >= last_end => Some(s.map_or(ack, |s| s.min(ack))),
            (_, s) => s,
        };
        out.push(MemberView {
            id,
            role: if voters.contains(&id) {
                ReplicaRole::Follower
            } else {
                ReplicaRole::Observer
            },
            up: last_ack.is_some_and(|d| d <= window),
            // Judged as of its last acknowledgement: a follower that stops answering goes
            // from caught up to down at once, not through "behind" while it ages.
            caught_up: matches!(
                (last_ack, last_caught_up),
                (Some(ack), Some(c)) if ack <= window && c.saturating_sub(ack) <= window
            ),
            log_end_offset: end,
            lag: last_end.saturating_sub(end),
            last_ack,
            last_caught_up,
        });
    }
    Some(out)
}

/// Milliseconds in a figure the contract carries.
fn ms(d: Option<Duration>) -> Option<i64> {
    d.map(|d| int64(d.as_millis() as u64))
}

/// The verdict when no leader can judge: `why` says what is missing.
pub fn unavailable(node: &Node, why: &str) -> QuorumHealth {
    let m = node.raft().metrics().borrow_watched().clone();
    let voters = m.membership_config.membership().voter_ids().count();
    QuorumHealth {
        status: HealthStatus::Unavailable,
        summary: format!("unavailable: {why}"),
        reported_by: node.id(),
        leader_id: m.current_leader,
        leader_epoch: int64(m.current_term),
        voters: voters as u32,
        voters_up: 0,
        voters_caught_up: 0,
        majority: majority(voters) as u32,
        can_lose: 0,
        down_after_ms: int64(down_after(node.config()).as_millis() as u64),
        members: Vec::new(),
    }
}

/// The quorum's health as this node, the leader, sees it. On a node that does not lead it is
/// [`unavailable`]: only the leader hears from every voter.
pub fn quorum_health(node: &Node) -> QuorumHealth {
    let m = node.raft().metrics().borrow_watched().clone();
    let Some(views) = members(node, &m) else {
        let why = match m.current_leader {
            Some(l) => format!("node {} does not lead (node {l} does)", node.id()),
            None => format!("no leader is known to node {}", node.id()),
        };
        return unavailable(node, &why);
    };
    let voters = m.membership_config.membership().voter_ids().count();
    let members = views
        .into_iter()
        .map(|v| MemberHealth {
            node_id: v.id,
            role: v.role,
            up: v.up,
            caught_up: v.caught_up,
            log_end_offset: int64(v.log_end_offset),
            lag: int64(v.lag),
            last_ack_ms_ago: ms(v.last_ack),
            last_caught_up_ms_ago: ms(v.last_caught_up),
            // Never asked of a peer here: a hung member must not slow the verdict.
            api: node.known_api_addr(v.id),
        })
        .collect();
    judge(
        node.id(),
        (m.current_leader, m.current_term),
        voters,
        members,
        down_after(node.config()),
    )
}

/// Counts the voters among `members` and gives the verdict.
fn judge(
    me: NodeId,
    (leader_id, term): (Option<NodeId>, u64),
    voters: usize,
    members: Vec<MemberHealth>,
    window: Duration,
) -> QuorumHealth {
    let is_voter = |h: &&MemberHealth| h.role != ReplicaRole::Observer;
    let up = members.iter().filter(is_voter).filter(|h| h.up).count();
    let caught_up = members
        .iter()
        .filter(is_voter)
        .filter(|h| h.up && h.caught_up)
        .count();
    let need = majority(voters);
    let down: Vec<String> = members
        .iter()
        .filter(is_voter)
        .filter(|h| !h.up)
        .map(|h| h.node_id.to_string())
        .collect();
    let behind: Vec<String> = members
        .iter()
        .filter(is_voter)
        .filter(|h| h.up && !h.caught_up)
        .map(|h| h.node_id.to_string())
        .collect();
    let can_lose = caught_up.saturating_sub(need);
    let (status, summary) = if up < need {
        (
            HealthStatus::Unavailable,
            format!(
                "unavailable: {up} of {voters} voters up, {need} needed (down: {})",
                down.join(", ")
            ),
        )
    } else if down.is_empty() && behind.is_empty() {
        (
            HealthStatus::Healthy,
            format!("healthy, can lose {can_lose}"),
        )
    } else {
        let mut what = Vec::new();
        if !down.is_empty() {
            what.push(format!("down: {}", down.join(", ")));
        }
        if !behind.is_empty() {
            what.push(format!("behind: {}", behind.join(", ")));
        }
        (
            HealthStatus::Degraded,
            format!("degraded ({}), can lose {can_lose}", what.join("; ")),
        )
    };
    QuorumHealth {
        status,
        summary,
        reported_by: me,
        leader_id,
        leader_epoch: int64(term),
        voters: voters as u32,
        voters_up: up as u32,
        voters_caught_up: caught_up as u32,
        majority: need as u32,
        can_lose: if status == HealthStatus::Unavailable {
            0
        } else {
            can_lose as u32
        },
        down_after_ms: int64(window.as_millis() as u64),
        members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, role: ReplicaRole, up: bool, caught_up: bool) -> MemberHealth {
        MemberHealth {
            node_id: id,
            role,
            up,
            caught_up,
            log_end_offset: 7,
            lag: 0,
            last_ack_ms_ago: up.then_some(10),
            last_caught_up_ms_ago: caught_up.then_some(10),
            api: None,
        }
    }

    fn verdict(voters: usize, members: Vec<MemberHealth>) -> QuorumHealth {
        judge(1, (Some(1), 3), voters, members, Duration::from_secs(2))
    }

    #[test]
    fn three_voters_all_up_can_lose_one() {
        let h = verdict(
            3,
            vec![
                member(1, ReplicaRole::Leader, true, true),
                member(2, ReplicaRole::Follower, true, true),
                member(3, ReplicaRole::Follower, true, true),
            ],
        );
        assert_eq!(h.status, HealthStatus::Healthy);
        assert_eq!((h.voters_up, h.voters_caught_up, h.can_lose), (3, 3, 1));
        assert_eq!(h.summary, "healthy, can lose 1");
    }

    #[test]
    fn a_down_voter_degrades_and_one_more_loss_stops_writes() {
        let h = verdict(
            3,
            vec![
                member(1, ReplicaRole::Leader, true, true),
                // A stopped voter keeps the lag it had (0) and its caught-up time is old.
                member(2, ReplicaRole::Follower, false, false),
                member(3, ReplicaRole::Follower, true, true),
            ],
        );
        assert_eq!(h.status, HealthStatus::Degraded);
        assert_eq!((h.voters_up, h.can_lose), (2, 0));
        assert_eq!(h.summary, "degraded (down: 2), can lose 0");
    }

    #[test]
    fn fewer_than_a_majority_up_is_unavailable() {
        let h = verdict(
            3,
            vec![
                member(1, ReplicaRole::Leader, true, true),
                member(2, ReplicaRole::Follower, false, true),
                member(3, ReplicaRole::Follower, false, false),
            ],
        );
        assert_eq!(h.status, HealthStatus::Unavailable);
        assert_eq!((h.voters_up, h.majority, h.can_lose), (1, 2, 0));
        assert!(
            h.summary.starts_with("unavailable: 1 of 3 voters up"),
            "{}",
            h.summary
        );
    }

    #[test]
    fn a_voter_up_but_behind_does_not_count_towards_what_can_be_lost() {
        let h = verdict(
            5,
            vec![
                member(1, ReplicaRole::Leader, true, true),
                member(2, ReplicaRole::Follower, true, true),
                member(3, ReplicaRole::Follower, true, true),
                member(4, ReplicaRole::Follower, true, true),
                member(5, ReplicaRole::Follower, true, false),
            ],
        );
        assert_eq!(h.status, HealthStatus::Degraded);
        assert_eq!((h.voters_up, h.voters_caught_up, h.can_lose), (5, 4, 1));
        assert_eq!(h.summary, "degraded (behind: 5), can lose 1");
    }

    #[test]
    fn a_down_learner_does_not_change_the_verdict() {
        let h = verdict(
            1,
            vec![
                member(1, ReplicaRole::Leader, true, true),
                member(4, ReplicaRole::Observer, false, false),
            ],
        );
        assert_eq!(h.status, HealthStatus::Healthy);
        assert_eq!(h.summary, "healthy, can lose 0");
    }
}
