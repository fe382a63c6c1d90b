//! The first election of a node formatted with `--voters`, and the veto that keeps a wiped
//! disk from starting a new history over an existing one.
//!
//! `--voters` is for a new cluster's first start only (KIP-853). A node formatted with it
//! whose log is still empty does not call `raft.initialize` at once: it asks every other
//! bootstrap voter for its history (`GET /peer/v1/history`) and initializes only when all of
//! them answer and none holds history. Any voter with history vetoes: the node logs what to
//! do and stays up as an observer, with an empty log, until a leader contacts it. A voter
//! that does not answer makes it wait: a survivor that is down, stopped or cut off at that
//! moment is exactly the node whose history a wrong format command would otherwise erase.
//! So a wrong format command can cost availability, never history.
//!
//! A first start needs every bootstrap voter's answer, so every voter has been asked by
//! every voter that initialized. A voter that sees history on a peer which asked it, in
//! this run, while it was itself at bootstrap, sees the first start of its own cluster
//! under way (a slower node), not older history: it does not initialize and waits for the
//! leader, which reaches it within a heartbeat.
//!
//! When this node's directory id was taken from `--voters` (Kafka's `--initial-controllers`
//! with directory ids), the leader of an existing cluster would take the node for the voter
//! it replaced. Such a node refuses every Raft RPC until the gate has decided to initialize;
//! once vetoed it refuses them for good, until it is re-formatted with `--join`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::raft::peer::client::fetch_history;
use crate::raft::peer::gate::Gate;
use crate::raft::{KNode, NodeId, Raft};

/// What a bootstrap voter answered about its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAnswer {
    /// It holds nothing beyond the bootstrap: it may take part in the first election.
    AtBootstrap,
    /// It holds history (log entries, a snapshot): a veto.
    History {
        /// Its last log index.
        last_log_index: Option<u64>,
    },
    /// No usable answer (unreachable, timed out, another node or cluster at that address).
    NoAnswer(String),
}

/// What a bootstrap node does about its first election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every other bootstrap voter answered and none holds history: initialize.
    Initialize,
    /// Every voter answered, and those with history all asked this node while it was at
    /// bootstrap: the first start is under way without it. Do not initialize; the leader
    /// will replicate to this node.
    Underway,
    /// A voter holds history: never initialize here.
    Veto {
        /// The voter with history.
        peer: NodeId,
        /// Its last log index.
        last_log_index: Option<u64>,
    },
    /// Some voters did not answer: ask again.
    Wait {
        /// The voters that did not answer.
        missing: Vec<NodeId>,
    },
}

/// The rule, over what every other bootstrap voter answered and which of them asked this
/// node about its history while it was at bootstrap (`askers`): history from a voter that
/// did not ask vetoes (even when others are silent); otherwise every voter must have
/// answered; then history (from askers only) means the first start is under way.
pub fn decide(answers: &BTreeMap<NodeId, PeerAnswer>, askers: &BTreeSet<NodeId>) -> Decision {
    if let Some((peer, last_log_index)) = answers.iter().find_map(|(id, a)| match a {
        PeerAnswer::History { last_log_index } if !askers.contains(id) => {
            Some((*id, *last_log_index))
        }
        _ => None,
    }) {
        return Decision::Veto {
            peer,
            last_log_index,
        };
    }
    let missing: Vec<NodeId> = answers
        .iter()
        .filter(|(_, a)| matches!(a, PeerAnswer::NoAnswer(_)))
        .map(|(id, _)| *id)
        .collect();
    if !missing.is_empty() {
        Decision::Wait { missing }
    } else if answers
        .values()
        .any(|a| matches!(a, PeerAnswer::History { .. }))
    {
        Decision::Underway
    } else {
        Decision::Initialize
    }
}

/// The error a vetoed node logs: what happened and exactly what to do.
pub fn veto_message(
    node_id: NodeId,
    data_dir: &Path,
    cluster_id: &str,
    peer: NodeId,
    last_log_index: Option<u64>,
    borrowed_identity: bool,
) -> String {
    let dir = data_dir.display();
    let head = format!(
        "node {peer} already holds this cluster's history (its log reaches index {}), so this \
         node, formatted with --voters and holding nothing, will not start a first election: \
         --voters is for a new cluster's first start only; a replaced disk or a new controller \
         is formatted with --join.",
        last_log_index.map_or("?".to_string(), |i| i.to_string())
    );
    let add = format!(
        "`kraftd quorum add-voter --api ANY_CONTROLLER_API --id {node_id} --peer \
         THIS_NODE_PEER_HOST:PORT` (POST /v1/quorum/voters)"
    );
    if borrowed_identity {
        format!(
            "{head} Its directory id, taken from --voters, is the identity of the disk it \
             replaced, so it refuses every Raft request and stays out of the quorum. Do this: \
             stop this node; delete {dir}; run `kraftd format --data-dir {dir} \
             --cluster-id={cluster_id} --node-id {node_id} --join`; start it; then add it with \
             {add}."
        )
    } else {
        format!(
            "{head} It has a new directory id, so it cannot vote or count towards a commit \
             under the old disk's identity: it stays an observer with an empty log until the \
             leader re-admits it under its new directory id once it has caught up. Confirm with \
             {add}; next time format a replaced disk with `kraftd format --data-dir {dir} \
             --cluster-id={cluster_id} --node-id {node_id} --join`."
        )
    }
}

/// What the first-election decision needs of its node.
pub struct FirstElection {
    /// The node's gate, shared with its peer listener.
    pub gate: Arc<Gate>,
    pub raft: Raft,
    pub http: crate::raft::peer::client::PeerHttp,
    pub node_id: NodeId,
    pub cluster_id: String,
    pub data_dir: std::path::PathBuf,
}

impl FirstElection {
    fn id(&self) -> NodeId {
        self.node_id
    }
}

/// Asks every other bootstrap voter for its history, all at once, one second each.
async fn ask_all(
    node: &FirstElection,
    members: &BTreeMap<NodeId, KNode>,
) -> BTreeMap<NodeId, PeerAnswer> {
    let asks = members
        .iter()
        .filter(|(id, _)| **id != node.id())
        .map(|(id, n)| {
            let http = node.http.clone();
            let addr = n.peer_addr.clone();
            let id = *id;
            async move {
                let ask = tokio::time::timeout(
                    Duration::from_secs(1),
                    fetch_history(&http, &addr, node.id(), &node.cluster_id),
                );
                let answer = match ask.await {
                    Err(_) => PeerAnswer::NoAnswer(format!("{addr}: no answer within 1 s")),
                    Ok(Err(e)) => PeerAnswer::NoAnswer(format!("{addr}: {e}")),
                    Ok(Ok(h)) if h.cluster_id != node.cluster_id || h.node_id != id => {
                        PeerAnswer::NoAnswer(format!(
                            "{addr} is node {} of cluster {}, not node {id} of cluster {}",
                            h.node_id, h.cluster_id, node.cluster_id
                        ))
                    }
                    Ok(Ok(h)) if h.has_history => PeerAnswer::History {
                        last_log_index: h.last_log_index,
                    },
                    Ok(Ok(_)) => PeerAnswer::AtBootstrap,
                };
                (id, answer)
            }
        });
    futures_util::future::join_all(asks)
        .await
        .into_iter()
        .collect()
}

/// Runs the gate of a node formatted with bootstrap voters and holding no log: asks the
/// other bootstrap voters until it may initialize, is vetoed, or a leader has given it a
/// log. Each round is bounded (one second per voter, asked at once); rounds repeat every
/// 300 ms while voters are silent.
pub async fn run(node: FirstElection, members: BTreeMap<NodeId, KNode>) {
    let mut last_wait_log: Option<Instant> = None;
    loop {
        if node.raft.is_initialized().await.unwrap_or(false) {
            tracing::info!("a leader gave this node the log: no bootstrap needed here");
            node.gate.open_now();
            return;
        }
        let answers = ask_all(&node, &members).await;
        match decide(&answers, &node.gate.askers()) {
            Decision::Initialize => {
                match node.raft.initialize(members.clone()).await {
                    Ok(()) => tracing::info!(
                        "every bootstrap voter answered and none holds history: initialized the \
                         log with the bootstrap voters"
                    ),
                    Err(e) => tracing::info!("not initializing: {e}"),
                }
                node.gate.open_now();
                return;
            }
            Decision::Underway => {
                tracing::info!(
                    ?answers,
                    "the first start of this cluster is under way on the bootstrap voters that \
                     asked this node: waiting for the leader instead of initializing here"
                );
                node.gate.open_now();
                return;
            }
            Decision::Veto {
                peer,
                last_log_index,
            } => {
                node.gate.veto();
                tracing::error!(
                    "{}",
                    veto_message(
                        node.id(),
                        &node.data_dir,
                        &node.cluster_id,
                        peer,
                        last_log_index,
                        node.gate.borrowed_identity(),
                    )
                );
                return;
            }
            Decision::Wait { missing } => {
                if last_wait_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    last_wait_log = Some(Instant::now());
                    let why: Vec<String> = answers
                        .values()
                        .filter_map(|a| match a {
                            PeerAnswer::NoAnswer(w) => Some(w.clone()),
                            _ => None,
                        })
                        .collect();
                    tracing::warn!(
                        ?missing,
                        reasons = ?why,
                        "first election waits until every bootstrap voter answers that it \
                         holds no history"
                    );
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(a: &[(NodeId, PeerAnswer)]) -> BTreeMap<NodeId, PeerAnswer> {
        a.iter().cloned().collect()
    }

    fn decide(a: &BTreeMap<NodeId, PeerAnswer>) -> Decision {
        super::decide(a, &BTreeSet::new())
    }

    #[test]
    fn a_voter_with_history_vetoes_the_first_election_even_when_others_are_silent() {
        let h = PeerAnswer::History {
            last_log_index: Some(5420),
        };
        for a in [
            answers(&[(2, h.clone()), (3, PeerAnswer::AtBootstrap)]),
            answers(&[(2, PeerAnswer::NoAnswer("down".into())), (3, h.clone())]),
            answers(&[(3, h.clone())]),
        ] {
            assert_eq!(
                decide(&a),
                Decision::Veto {
                    peer: if a.len() == 2 && a[&2] == h { 2 } else { 3 },
                    last_log_index: Some(5420)
                },
                "{a:?}"
            );
        }
    }

    #[test]
    fn the_first_election_waits_for_every_bootstrap_voter_to_answer() {
        let a = answers(&[
            (2, PeerAnswer::AtBootstrap),
            (3, PeerAnswer::NoAnswer("timed out".into())),
            (4, PeerAnswer::NoAnswer("other cluster".into())),
        ]);
        assert_eq!(
            decide(&a),
            Decision::Wait {
                missing: vec![3, 4]
            }
        );
    }

    #[test]
    fn a_new_cluster_initializes_when_every_voter_is_at_bootstrap() {
        let a = answers(&[(1, PeerAnswer::AtBootstrap), (3, PeerAnswer::AtBootstrap)]);
        assert_eq!(decide(&a), Decision::Initialize);
        assert_eq!(
            decide(&BTreeMap::new()),
            Decision::Initialize,
            "a single voter"
        );
    }

    #[test]
    fn history_from_voters_that_asked_this_node_at_bootstrap_is_its_own_first_start() {
        let h = PeerAnswer::History {
            last_log_index: Some(1),
        };
        let askers = BTreeSet::from([2]);
        let a = answers(&[(2, h.clone()), (3, PeerAnswer::AtBootstrap)]);
        assert_eq!(super::decide(&a, &askers), Decision::Underway);
        let a = answers(&[(2, h.clone()), (3, PeerAnswer::NoAnswer("down".into()))]);
        assert_eq!(
            super::decide(&a, &askers),
            Decision::Wait { missing: vec![3] },
            "a silent voter may hold older history"
        );
        let a = answers(&[(2, h.clone()), (3, h.clone())]);
        assert_eq!(
            super::decide(&a, &askers),
            Decision::Veto {
                peer: 3,
                last_log_index: Some(1)
            },
            "node 3 never asked: its history is older than this run"
        );
    }

    #[test]
    fn the_veto_message_says_exactly_what_to_do() {
        let m = veto_message(2, Path::new("/var/lib/kraftd"), "CID", 3, Some(41), true);
        for want in [
            "node 3 already holds",
            "index 41",
            "delete /var/lib/kraftd",
            "kraftd format --data-dir /var/lib/kraftd --cluster-id=CID --node-id 2 --join",
            "kraftd quorum add-voter --api ANY_CONTROLLER_API --id 2",
            "refuses every Raft request",
        ] {
            assert!(m.contains(want), "{want:?} missing from {m}");
        }
        let m = veto_message(2, Path::new("/d"), "CID", 3, None, false);
        for want in [
            "index ?",
            "new directory id",
            "re-admits it",
            "kraftd quorum add-voter --api ANY_CONTROLLER_API --id 2",
            "--node-id 2 --join",
        ] {
            assert!(m.contains(want), "{want:?} missing from {m}");
        }
        assert!(!m.contains("delete"), "{m}");
    }
}
