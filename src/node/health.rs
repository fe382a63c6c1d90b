//! The leader's view of each member: **up** when it acknowledged the leader (a heartbeat or
//! an append) within [`down_after`], **caught up** when it held the leader's whole log
//! within that time. One home for what `GET /v1/quorum/health`, `/v1/quorum/replication`,
//! `/ui` and `/metrics` say about a voter, so that a stopped voter never shows as a
//! follower with lag 0.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;

use super::config::Config;
use super::handle::{now_ms, FollowerTrack, Node};
use crate::contract::int64;
use crate::contract::quorum::{HealthStatus, MemberHealth, QuorumHealth, ReplicaRole};
use crate::raft::{leading_term, NodeId};

/// How long a member may stay silent before it counts as down: four of the longest election
/// timeouts, and never under 2 s (Kafka's `controller.quorum.fetch.timeout.ms`), so that one
/// slow round trip does not flap it.
pub fn down_after(cfg: &Config) -> Duration {
    Duration::from_millis(cfg.election_timeout_max_ms.saturating_mul(4).max(2000))
}

/// Whether `at` (ms since the epoch; 0: never) is within `window` of `now`.
fn within(at: u64, now: u64, window: Duration) -> bool {
    at > 0 && now.saturating_sub(at) <= window.as_millis() as u64
}

/// Milliseconds from `at` (ms since the epoch; 0: never) to `now`.
fn ago(at: u64, now: u64) -> Option<i64> {
    (at > 0).then(|| int64(now.saturating_sub(at)))
}

/// Whether a follower acknowledged the leader within `window`.
pub fn is_up(t: &FollowerTrack, now: u64, window: Duration) -> bool {
    within(t.last_fetch_ms, now, window)
}

/// Whether a follower held the leader's whole log within `window`.
pub fn is_caught_up(t: &FollowerTrack, now: u64, window: Duration) -> bool {
    within(t.last_caught_up_ms, now, window)
}

/// Voters needed for a majority of `voters`.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
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
pub async fn quorum_health(node: &Node) -> QuorumHealth {
    let m = node.raft().metrics().borrow_watched().clone();
    if leading_term(&m).is_none() {
        let why = match m.current_leader {
            Some(l) => format!("node {} does not lead (node {l} does)", node.id()),
            None => format!("no leader is known to node {}", node.id()),
        };
        return unavailable(node, &why);
    }
    let window = down_after(node.config());
    let now = now_ms();
    let membership = m.membership_config.membership().clone();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let tracks = node.follower_tracks();
    let last_end = node.end_of(m.last_log_index).unwrap_or(0);
    let mut members = vec![MemberHealth {
        node_id: node.id(),
        role: ReplicaRole::Leader,
        up: true,
        caught_up: true,
        log_end_offset: int64(last_end),
        lag: 0,
        last_ack_ms_ago: Some(0),
        last_caught_up_ms_ago: Some(0),
        api: node.api_addr_of(node.id()).await,
    }];
    let mut others: Vec<NodeId> = membership
        .nodes()
        .map(|(id, _)| *id)
        .filter(|id| *id != node.id())
        .collect();
    // Voters first, then learners, each by id.
    others.sort_by_key(|id| (!voters.contains(id), *id));
    for id in others {
        let t = tracks.get(&id).cloned().unwrap_or_default();
        let end = node.end_of(t.matched).unwrap_or(0);
        members.push(MemberHealth {
            node_id: id,
            role: if voters.contains(&id) {
                ReplicaRole::Follower
            } else {
                ReplicaRole::Observer
            },
            up: is_up(&t, now, window),
            caught_up: is_caught_up(&t, now, window),
            log_end_offset: int64(end),
            lag: int64(last_end.saturating_sub(end)),
            last_ack_ms_ago: ago(t.last_fetch_ms, now),
            last_caught_up_ms_ago: ago(t.last_caught_up_ms, now),
            api: node.api_addr_of(id).await,
        });
    }
    judge(
        node.id(),
        (m.current_leader, m.current_term),
        voters.len(),
        members,
        window,
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

    #[test]
    fn silence_past_the_window_is_down() {
        let w = Duration::from_secs(2);
        let t = FollowerTrack {
            last_fetch_ms: 10_000,
            last_caught_up_ms: 9_000,
            matched: Some(5),
        };
        assert!(is_up(&t, 12_000, w));
        assert!(!is_up(&t, 12_001, w));
        assert!(!is_caught_up(&t, 11_001, w));
        assert!(
            !is_up(&FollowerTrack::default(), 1, w),
            "never heard from is down"
        );
    }
}
