//! The background duties of a running node, every 100 ms: idle NoOps, bootstrap features
//! and directory ids (leader), snapshots by size or age (every node); the follower
//! tracking of `health` (its own task), the first-election decision and the leadership
//! watch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use openraft::async_runtime::WatchReceiver;
use openraft::{ChangeMembers, ServerState};

use crate::raft::peer::client::{fetch_info, PeerBook};
use crate::raft::{matched_index, KNode, NodeId, Raft};
use crate::record::metadata::{FeatureLevelRecord, MetadataRecord, VersionedRecord};

use super::handle::Node;

/// Starts the node's background duties: the 100 ms ticks, the first-election decision of a
/// bootstrap voter, and the leadership watch.
pub fn start_duties(
    node: &Arc<Node>,
    gate_members: Option<BTreeMap<NodeId, KNode>>,
    metrics: &'static PrometheusHandle,
) {
    tokio::spawn(background(node.clone(), metrics));
    tokio::spawn(super::health::track_followers(node.clone()));
    if let Some(members) = gate_members {
        let first = crate::node::bootstrap::FirstElection {
            gate: node.peer.gate().clone(),
            raft: node.raft.clone(),
            http: node.http.clone(),
            node_id: node.id(),
            cluster_id: node.meta.cluster_id.clone(),
            data_dir: node.config.data_dir.clone(),
        };
        tokio::spawn(crate::node::bootstrap::run(first, members));
    }
    tokio::spawn(watch_leadership(node.raft.clone()));
}

/// Background duties, every 100 ms: idle NoOps and directory ids (leader), snapshots by
/// size or age (every node).
async fn background(node: Arc<Node>, metrics: &'static PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let noop_every = Duration::from_millis(node.config.noop_interval_ms.max(1));
    let snapshot_every = Duration::from_millis(node.config.snapshot_interval_ms.max(1));
    let mut last_snapshot_request: Option<Instant> = None;
    let mut last_dir_fill: Option<Instant> = None;
    let mut features_written_in_term: Option<u64> = None;
    let mut last_upkeep = Instant::now();
    loop {
        tick.tick().await;
        if last_upkeep.elapsed() > Duration::from_secs(5) {
            // Bounds the recorder's histogram buffers when nobody scrapes.
            last_upkeep = Instant::now();
            metrics.run_upkeep();
        }
        if node.raft.metrics().borrow_watched().running_state.is_err() {
            tracing::error!("raft stopped with a fatal error; exiting");
            std::process::exit(70);
        }
        if node.is_leader() {
            write_bootstrap_features(&node, &mut features_written_in_term);
            node.controller.noop_if_idle(noop_every);
            if last_dir_fill.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
                last_dir_fill = Some(Instant::now());
                reconcile_directories(&node).await;
            }
        }
        let due = {
            let st = node.sm.read();
            if st.bytes_since_snapshot >= node.config.snapshot_max_bytes {
                Some(format!(
                    "{} bytes of log applied since the last checkpoint (snapshot_max_bytes {})",
                    st.bytes_since_snapshot, node.config.snapshot_max_bytes
                ))
            } else {
                st.new_records_since
                    .filter(|t| t.elapsed() >= snapshot_every)
                    .map(|t| {
                        format!(
                            "new records for {} ms since the last checkpoint (snapshot_interval_ms {})",
                            t.elapsed().as_millis(),
                            node.config.snapshot_interval_ms
                        )
                    })
            }
        };
        if let Some(reason) = due
            .filter(|_| last_snapshot_request.is_none_or(|t| t.elapsed() > Duration::from_secs(1)))
        {
            last_snapshot_request = Some(Instant::now());
            node.sm.set_snapshot_reason(reason);
            if let Err(e) = node.raft.trigger().snapshot().await {
                tracing::warn!(error = %e, "cannot trigger a snapshot");
            }
        }
    }
}

/// Keeps the peer connections' member records (addresses, directory ids) equal to the
/// current membership.
pub(super) async fn keep_peer_book(raft: Raft, book: PeerBook) {
    let mut rx = raft.metrics();
    // The metrics change with every applied entry; the membership only with its own entry.
    let mut seen = None;
    loop {
        {
            let m = rx.borrow_watched();
            let at = Some(*m.membership_config.log_id());
            if at != seen {
                seen = at;
                book.set_all(
                    m.membership_config
                        .membership()
                        .nodes()
                        .map(|(id, n)| (*id, n.clone())),
                );
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Logs every leadership change once, with the term, the previous leader and the reason,
/// and records the election latency: from this node losing its known leader (it stood for
/// election, or saw a higher term) to knowing the next one. It follows Raft's metrics
/// channel rather than the 100 ms tick because an election on a quiet quorum takes a few
/// milliseconds, so the leaderless moment falls between two ticks.
async fn watch_leadership(raft: Raft) {
    let mut rx = raft.metrics();
    let (mut leader, mut term, mut state) = {
        let m = rx.borrow_watched();
        (m.current_leader, m.current_term, m.state)
    };
    let me = rx.borrow_watched().id;
    let mut lost_at: Option<(Instant, Option<NodeId>)> = None;
    while rx.changed().await.is_ok() {
        let (new_leader, new_term, new_state) = {
            let m = rx.borrow_watched();
            (m.current_leader, m.current_term, m.state)
        };
        if state == ServerState::Leader && new_state != ServerState::Leader {
            let reason = if new_state == ServerState::Shutdown {
                "this node is shutting down".to_string()
            } else if new_term > term {
                format!("a higher term {new_term} was seen")
            } else if let Some(l) = new_leader.filter(|l| *l != me) {
                // openraft orders the leaders of one term by node id.
                format!("node {l} won the same term with a higher vote")
            } else {
                "this node is no longer a voter".to_string()
            };
            tracing::warn!(term, new_term, new_leader, reason = %reason, "lost leadership");
        }
        if new_leader != leader || new_term != term {
            match new_leader {
                None => {
                    if lost_at.is_none() {
                        lost_at = Some((Instant::now(), leader));
                    }
                    if leader.is_some() && new_state == ServerState::Candidate {
                        tracing::info!(
                            term = new_term,
                            previous_leader = leader,
                            "standing for election: no word from the leader within the election timeout"
                        );
                    }
                }
                Some(l) => {
                    let seen_lost = lost_at.take();
                    let (since, previous) = seen_lost.unwrap_or((Instant::now(), leader));
                    let elapsed = since.elapsed();
                    let election_ms = seen_lost.map(|_| elapsed.as_millis() as u64);
                    // Counted when a known leader was lost first: not the first leader after
                    // start-up, nor a leader replaced with no leaderless moment seen here.
                    if seen_lost.is_some() && previous.is_some() {
                        crate::telemetry::election_latency(elapsed);
                    }
                    if l == me {
                        tracing::info!(
                            term = new_term,
                            previous_leader = previous,
                            election_ms,
                            "gained leadership: won the election"
                        );
                    } else {
                        tracing::info!(
                            leader = l,
                            term = new_term,
                            previous_leader = previous,
                            election_ms,
                            "new leader known"
                        );
                    }
                }
            }
        }
        (leader, term, state) = (new_leader, new_term, new_state);
    }
}

/// On a new cluster the feature levels (metadata.version) exist only in the bootstrap
/// checkpoint; the leader writes them into the log once (once per term at most, and only
/// after it applied its own first entry, so it sees what earlier leaders wrote).
fn write_bootstrap_features(node: &Arc<Node>, written_in_term: &mut Option<u64>) {
    let term = node.raft.metrics().borrow_watched().current_term;
    if *written_in_term == Some(term) || node.sm.applied().epoch as u64 != term {
        return;
    }
    let records: Vec<VersionedRecord> = {
        let st = node.sm.read();
        if st.features_in_log {
            return;
        }
        st.image
            .features()
            .iter()
            .map(|(name, level)| {
                VersionedRecord::new(MetadataRecord::FeatureLevel(FeatureLevelRecord {
                    name: name.clone(),
                    feature_level: *level,
                }))
            })
            .collect()
    };
    *written_in_term = Some(term);
    if records.is_empty() {
        return;
    }
    let node = node.clone();
    tokio::spawn(async move {
        match node.controller.write(&records).await {
            Ok(ack) => tracing::info!(
                offset = ack.offset,
                "wrote the bootstrap feature levels into the log"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot write the bootstrap feature levels"),
        }
    });
}

/// Keeps the membership's directory ids true (KIP-853), on the leader:
/// - a voter whose directory id is still nil (a bootstrap voter) gets the one its peer
///   listener reports, in one membership entry that keeps the voter set;
/// - a voter whose disk was wiped and re-formatted (its peer listener reports another
///   directory id) is demoted to a learner under its new directory id: it stops counting
///   towards commits and votes, catches up (by snapshot if need be), and is promoted back
///   once it has caught up.
async fn reconcile_directories(node: &Node) {
    let m = node.raft.metrics().borrow_watched().clone();
    let membership = m.membership_config.membership().clone();
    if membership.get_joint_config().len() > 1 {
        return;
    }
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let mut fill = BTreeMap::new();
    let mut demote = BTreeMap::new();
    for (id, n) in membership.nodes() {
        let info = if *id == node.id() {
            node.info()
        } else {
            match fetch_info(&node.http, &n.peer_addr).await {
                Ok(i) => i,
                Err(_) => continue,
            }
        };
        if info.node_id != *id || info.cluster_id != node.meta.cluster_id {
            tracing::warn!(id, peer = %n.peer_addr, "peer listener answers for another node or cluster");
            continue;
        }
        if n.directory_id == info.directory_id {
            continue;
        }
        let updated = KNode {
            peer_addr: n.peer_addr.clone(),
            api_addr: if n.api_addr.is_empty() {
                info.api_addr
            } else {
                n.api_addr.clone()
            },
            directory_id: info.directory_id,
        };
        if n.directory_id == [0; 16] || !voters.contains(id) {
            fill.insert(*id, updated);
        } else if *id != node.id() {
            tracing::warn!(
                id,
                old = %n.directory(),
                new = %uuid::Uuid::from_bytes(info.directory_id),
                "voter came back with a re-formatted disk: demoting it to a learner until it has caught up"
            );
            demote.insert(*id, updated);
        }
    }
    if !demote.is_empty() {
        let ids: BTreeSet<NodeId> = demote.keys().copied().collect();
        if voters.len() > ids.len() {
            match node
                .controller
                .exclusive(2, {
                    let ids = ids.clone();
                    move |raft: Raft| async move {
                        raft.change_membership(ChangeMembers::RemoveVoters(ids), true)
                            .await
                    }
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                Ok(_) => {
                    if let Ok(mut r) = node.readmit.lock() {
                        r.extend(ids.iter().copied());
                    }
                    fill.extend(demote);
                }
                Err(e) => tracing::warn!(error = %e, "cannot demote re-formatted voters"),
            }
        }
    }
    if !fill.is_empty() {
        let ids: BTreeSet<_> = fill.keys().copied().collect();
        // Members whose recorded directory id was a real one are replaced disks: their
        // logs start empty again.
        let replaced: Vec<NodeId> = fill
            .keys()
            .copied()
            .filter(|id| {
                membership
                    .get_node(id)
                    .is_some_and(|n| n.directory_id != [0; 16])
            })
            .collect();
        match node
            .controller
            .exclusive(1, move |raft: Raft| async move {
                for id in replaced {
                    crate::raft::expect_empty_log(&raft, id).await;
                }
                raft.change_membership(ChangeMembers::SetNodes(fill), true)
                    .await
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            Ok(_) => tracing::info!(?ids, "recorded directory ids"),
            Err(e) => tracing::warn!(error = %e, "cannot record directory ids"),
        }
    }
    // Promote demoted voters that have caught up.
    let pending: Vec<NodeId> = node
        .readmit
        .lock()
        .map(|r| r.iter().copied().collect())
        .unwrap_or_default();
    if pending.is_empty() {
        return;
    }
    let m = node.raft.metrics().borrow_watched().clone();
    let learners: BTreeSet<NodeId> = m.membership_config.membership().learner_ids().collect();
    let last = m.last_log_index.unwrap_or(0);
    for id in pending {
        if !learners.contains(&id) {
            if let Ok(mut r) = node.readmit.lock() {
                r.remove(&id);
            }
            continue;
        }
        if matched_index(&m, id).is_some_and(|i| i + 16 >= last) {
            match node
                .controller
                .exclusive(2, move |raft: Raft| async move {
                    raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                        .await
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                Ok(_) => {
                    tracing::info!(id, "re-formatted voter caught up and is a voter again");
                    if let Ok(mut r) = node.readmit.lock() {
                        r.remove(&id);
                    }
                }
                Err(e) => tracing::warn!(id, error = %e, "cannot promote caught-up learner"),
            }
        }
    }
}
