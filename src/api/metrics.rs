//! `GET /metrics`: the state gauges set from the node (Raft's metrics, the image, the
//! current checkpoint), then every metric in Prometheus' text format. The metric names and
//! the counters the lower layers bump live in `telemetry`.

use std::time::SystemTime;

use metrics::gauge;
use openraft::async_runtime::WatchReceiver;

use crate::contract::quorum::ReplicaRole;
use crate::node::handle::Node;
use crate::node::health::{down_after, members};
use crate::telemetry::{
    ACTIVE_BROKERS, ACTIVE_CONTROLLER, CURRENT_EPOCH, CURRENT_LEADER, FENCED_BROKERS,
    HIGH_WATERMARK, LAST_APPLIED, LAST_COMMITTED, LOG_START, OFFLINE_PARTITIONS, PARTITIONS,
    QUORUM_MEMBER_LAG, QUORUM_MEMBER_UP, SNAPSHOT_AGE, SNAPSHOT_SIZE, TOPICS,
    UNDER_REPLICATED_PARTITIONS,
};

/// The highest entry index this node knows to be committed: on the leader the index a
/// majority of voters has matched, on a follower what the leader last told it.
fn committed_index(node: &Node, m: &crate::raft::KMetrics) -> Option<u64> {
    if crate::raft::leading_term(m).is_some() {
        let repl = m.replication.as_ref()?;
        let mut matched: Vec<Option<u64>> = m
            .membership_config
            .membership()
            .voter_ids()
            .map(|id| {
                if id == node.id() {
                    m.last_log_index
                } else {
                    repl.get(&id).cloned().flatten().map(|l| l.index)
                }
            })
            .collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        matched.get(matched.len() / 2).copied().flatten()
    } else {
        node.seen_commit()
    }
}

/// Sets the state gauges from Raft's metrics, the image and the current checkpoint, then
/// renders every metric in Prometheus' text format.
pub fn render(node: &Node) -> String {
    let m = node.raft().metrics().borrow_watched().clone();
    let applied = node.sm().applied();
    gauge!(ACTIVE_CONTROLLER).set(if node.is_leader() { 1.0 } else { 0.0 });
    gauge!(CURRENT_LEADER).set(m.current_leader.map_or(-1.0, |l| l as f64));
    gauge!(CURRENT_EPOCH).set(m.current_term as f64);
    // What is applied is committed; a commit newer than that counts once it is in our log.
    let committed = committed_index(node, &m)
        .and_then(|i| node.end_of(Some(i)))
        .unwrap_or(0)
        .max(applied.end_offset);
    // The high watermark is what this node serves (KIP-595): its applied end once it has
    // applied an entry of the current term, never a commit it has not applied.
    let hw = node
        .sm()
        .high_watermark(m.current_term)
        .unwrap_or(applied.end_offset);
    gauge!(HIGH_WATERMARK).set(hw as f64);
    gauge!(LAST_COMMITTED).set(committed as f64 - 1.0);
    gauge!(LAST_APPLIED).set(applied.end_offset as f64 - 1.0);
    let log_start = node.log().log_start().map(|(_, s)| s).unwrap_or(0);
    gauge!(LOG_START).set(log_start as f64);
    let (counts, current) = {
        let st = node.sm().read();
        (
            st.image.counts(),
            st.current.as_ref().map(|c| c.path.clone()),
        )
    };
    gauge!(FENCED_BROKERS).set(counts.fenced_brokers as f64);
    gauge!(ACTIVE_BROKERS).set(counts.active_brokers as f64);
    gauge!(TOPICS).set(counts.topics as f64);
    gauge!(PARTITIONS).set(counts.partitions as f64);
    gauge!(OFFLINE_PARTITIONS).set(counts.offline_partitions as f64);
    gauge!(UNDER_REPLICATED_PARTITIONS).set(counts.under_replicated_partitions as f64);
    if let Some(md) = current.and_then(|p| std::fs::metadata(p).ok()) {
        gauge!(SNAPSHOT_SIZE).set(md.len() as f64);
        let age = md
            .modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        gauge!(SNAPSHOT_AGE).set(age.as_secs_f64());
    }
    crate::telemetry::collect_process();
    let mut text = crate::telemetry::install().render();
    voter_lines(node, &m, &mut text);
    text
}

/// Per-member up and lag, on the leader only (only it hears from every member), for the
/// members of now: written at each scrape rather than kept in the recorder, so a removed
/// voter or a former leader leaves no stale series behind.
fn voter_lines(node: &Node, m: &crate::raft::KMetrics, out: &mut String) {
    use std::fmt::Write;
    let Some(views) = members(node, m) else {
        return;
    };
    let mut up = String::new();
    let mut lag = String::new();
    for v in &views {
        let role = if v.role == ReplicaRole::Observer {
            "observer"
        } else {
            "voter"
        };
        let labels = format!("node_id=\"{}\",role=\"{role}\"", v.id);
        let _ = writeln!(up, "{QUORUM_MEMBER_UP}{{{labels}}} {}", u8::from(v.up));
        let _ = writeln!(lag, "{QUORUM_MEMBER_LAG}{{{labels}}} {}", v.lag);
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let _ = write!(
        out,
        "# HELP {QUORUM_MEMBER_UP} 1 if the member acknowledged the leader within the down timeout ({} ms), else 0; reported by the leader only\n\
         # TYPE {QUORUM_MEMBER_UP} gauge\n{up}\n\
         # HELP {QUORUM_MEMBER_LAG} Records the member is behind the leader's log end; reported by the leader only\n\
         # TYPE {QUORUM_MEMBER_LAG} gauge\n{lag}\n",
        down_after(node.config()).as_millis()
    );
}
