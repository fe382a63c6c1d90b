//! `kraftd recover-quorum`: the way back after a majority of the voters lost their disks.
//!
//! Raft cannot elect a leader without a majority, and kraftd never lets a re-formatted
//! disk vote under the old identity, so a quorum that lost most of its disks stays without a
//! leader: the history is safe on the controller that kept its disk, but nothing can be
//! written or re-added. This is the operator's act that ends it (etcd's
//! `--force-new-cluster`, for one controller): on the stopped controller that kept its
//! disk, append one membership entry, under a new epoch, that makes it the only voter.
//! When it starts it elects itself and commits its whole log, entries it did not yet know
//! to be committed included; the other controllers are then formatted with `--join` and
//! added back one at a time.
//!
//! Guard rails: it refuses while kraftd runs on the directory (RocksDB's lock), on a node
//! that is not a voter under its own directory id, and when another voter still answers
//! with the disk the membership records for it (the quorum may not be lost: recovering
//! would split the cluster). A voter that does not answer at all could still hold its disk,
//! so it is only passed over with `--force`. Under mutual TLS it asks the peers with the
//! controller's own certificate (the same `tls_*` settings as `serve`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{EntryPayload, RaftLogReader};

use super::meta::{MetaProperties, METADATA_DIR, RAFT_DIR};
use crate::raft::log_store::LogStore;
use crate::raft::peer::client::{fetch_history, fetch_info};
use crate::raft::peer::wire::MAX_TERM;
use crate::raft::state_machine::StateMachine;
use crate::raft::{log_id, Entry, KMembership, KNode, KVote, LogId, NodeId};

/// What another voter of the last membership turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// It answers with the disk the membership records: it may still be in a quorum.
    HoldsItsDisk,
    /// It answers with another directory id: that disk was replaced.
    Reformatted,
    /// It does not answer (or answers for another node or cluster).
    Unreachable(String),
    /// It answers, but whether it kept its disk cannot be told: the membership records no
    /// directory id for it, or it has seen a later epoch or a longer log than this node
    /// (this node's membership may be out of date).
    CannotTell(String),
    /// Something listens at its peer address but could not be asked (it speaks TLS and
    /// this run has no certificate, or refused the one given): it may hold its disk, so
    /// not even `--force` passes it over.
    Unasked(String),
}

/// Whether an error from asking a peer means that nothing listens at its address (the
/// connection refused, the host or network unreachable, or no answer to connect in time),
/// as opposed to something that answered but could not be asked.
fn nobody_listens(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind;
    e.chain().any(|c| {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::TimedOut
            )
        } else if let Some(r) = c.downcast_ref::<reqwest::Error>() {
            r.is_connect() && r.is_timeout()
        } else {
            false
        }
    })
}

/// What `recover` did.
#[derive(Debug)]
pub struct Recovered {
    pub node_id: NodeId,
    /// The voters of the membership it replaced, with what each turned out to be.
    pub voters: BTreeMap<NodeId, Peer>,
    /// The last entry before the new one, and the last one the node knew committed.
    pub last: LogId,
    pub committed: Option<LogId>,
    /// The offset after the last entry's records (the log end), and after the last
    /// known-committed entry's (0: none known).
    pub last_end_offset: u64,
    pub committed_end_offset: u64,
    /// The membership entry written, or that `--yes` would write.
    pub entry: LogId,
    /// Whether it was written (`write` was asked for).
    pub written: bool,
}

/// Why `recover` changed nothing. Every refusal but [`RecoverError::Storage`] and
/// [`RecoverError::Tls`] comes before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The directory has no readable meta.properties.
    #[error("{dir} is not a formatted kraftd data directory: {detail}")]
    NotFormatted { dir: String, detail: String },
    /// RocksDB would not open the log (kraftd still holds its lock, most often).
    #[error(
        "cannot open the log in {dir} ({detail}); is kraftd still running on this directory? \
         Stop it first"
    )]
    LogLocked { dir: String, detail: String },
    /// The checkpoints could not be loaded.
    #[error("loading the checkpoints: {0}")]
    Checkpoints(String),
    /// Reading or writing the log failed at `step`.
    #[error("{step}: {detail}")]
    Storage { step: &'static str, detail: String },
    /// The node has neither log nor checkpoint.
    #[error("node {node} holds no log and no checkpoint: there is nothing to recover from")]
    NothingToRecover { node: NodeId },
    /// A checkpoint was installed past the log's end and not yet purged.
    #[error(
        "node {node}'s checkpoint ends at entry {checkpoint_end} but its log at {log_last}: an \
         installed snapshot has not been purged from the log yet. Start kraftd on it once (it \
         repairs this at start-up), stop it, and run recover-quorum again (nothing was changed)"
    )]
    SnapshotNotPurged {
        node: NodeId,
        checkpoint_end: String,
        log_last: LogId,
    },
    /// The node is not a voter of the last membership it holds.
    #[error(
        "node {node} is not a voter in the last membership its log holds (voters {voters:?}): \
         run recover-quorum on a voter that kept its disk"
    )]
    NotAVoter {
        node: NodeId,
        voters: BTreeSet<NodeId>,
    },
    /// Nothing shows this disk is the one that kept the history (no directory id recorded).
    #[error(
        "the membership records no directory id for node {node}, so nothing shows this is the \
         disk that kept the history. If you are sure it is, run again with --force (nothing \
         was changed)"
    )]
    NoDirectoryRecorded { node: NodeId },
    /// This disk is not the one the membership records for the node.
    #[error(
        "the membership records directory {recorded} for node {node}, but this disk is \
         {this_disk}: this is a replaced disk, not the one that kept the history"
    )]
    ReplacedDisk {
        node: NodeId,
        recorded: uuid::Uuid,
        this_disk: uuid::Uuid,
    },
    /// The controller's certificate could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// Other voters answer with the disks the membership records: the quorum may not be
    /// lost.
    #[error(
        "voter(s) {holding:?} still answer with the disk the membership records: the quorum \
         may not be lost, and making node {node} the only voter would split the cluster. \
         Start the controllers that kept their disks instead (nothing was changed)"
    )]
    PeersHoldDisks { node: NodeId, holding: Vec<NodeId> },
    /// Voters answer but could not be asked; not even `--force` passes them over.
    #[error(
        "{} answer at their peer addresses but could not be asked whether they kept their \
         disks; if one did, the quorum is not lost, so not even --force passes them over. \
         Under mutual TLS give this controller's certificate (--config with its settings \
         file, or --tls-cert-file, --tls-key-file, --tls-ca-file); otherwise stop them first \
         (nothing was changed)",
        .0.join(", ")
    )]
    Unasked(Vec<String>),
    /// Voters do not answer or cannot be told about; only `--force` passes them over.
    #[error(
        "cannot tell whether {} kept their disks: if one did, the quorum is not lost. If they \
         are gone for good, run again with --force (nothing was changed)",
        .0.join(", ")
    )]
    NeedsForce(Vec<String>),
    /// The new epoch would not fit Kafka's epoch type.
    #[error("epoch {0} would exceed the largest Kafka epoch")]
    EpochOverflow(u64),
    /// The offset after the last entry is unknown.
    #[error(
        "the offset after entry {0} is not known (no checkpoint or log entry records it): start \
         the node once so it loads its checkpoint, stop it, and retry"
    )]
    EndOffsetUnknown(LogId),
}

fn storage(step: &'static str) -> impl Fn(String) -> RecoverError {
    move |detail| RecoverError::Storage { step, detail }
}

/// Makes the stopped controller in `data_dir` the only voter; see the module docs. With
/// `force`, voters that do not answer are taken as lost. `tls`, the controller's own
/// certificate, key and CA, is needed to reach peers that serve mutual TLS. Without `write`
/// it runs every check and answers what it would do, writing nothing (the operator's
/// preview before `--yes`).
pub async fn recover(
    data_dir: &Path,
    tls: Option<crate::tls::TlsFiles>,
    force: bool,
    write: bool,
) -> Result<Recovered, RecoverError> {
    let meta = MetaProperties::read(data_dir).map_err(|e| RecoverError::NotFormatted {
        dir: data_dir.display().to_string(),
        detail: e.to_string(),
    })?;
    let me = meta.node_id;
    let raft_dir = data_dir.join(RAFT_DIR);
    let mut log = LogStore::open(&raft_dir).map_err(|e| RecoverError::LogLocked {
        dir: raft_dir.display().to_string(),
        detail: e.to_string(),
    })?;
    // Loads the newest checkpoint: its membership, and the offsets the log continues from.
    let (sm, _) = StateMachine::open(&data_dir.join(METADATA_DIR), log.book(), 1)
        .map_err(RecoverError::Checkpoints)?;
    let state = log
        .get_log_state()
        .await
        .map_err(|e| storage("reading the log state")(e.to_string()))?;
    let last = state
        .last_log_id
        .ok_or(RecoverError::NothingToRecover { node: me })?;
    let applied = sm.shared().read().last_applied;
    if applied.is_some_and(|a| a.index > last.index) {
        return Err(RecoverError::SnapshotNotPurged {
            node: me,
            checkpoint_end: applied.map_or(String::new(), |a| a.to_string()),
            log_last: last,
        });
    }
    let vote = log
        .get_log_reader()
        .await
        .read_vote()
        .await
        .map_err(|e| storage("reading the vote")(e.to_string()))?;
    let seen_term = vote
        .map_or(0, |v| v.leader_id.term)
        .max(last.leader_id.term);
    let entries = log
        .try_get_log_entries(0..=last.index)
        .await
        .map_err(|e| storage("reading the log")(e.to_string()))?;
    let membership: KMembership = entries
        .iter()
        .rev()
        .find_map(|e| match &e.payload {
            EntryPayload::Membership(m) => Some(m.clone()),
            _ => None,
        })
        .unwrap_or_else(|| sm.shared().read().membership.membership().clone());
    let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
    let mine = membership.get_node(&me).cloned();
    let Some(mine) = mine.filter(|_| voter_ids.contains(&me)) else {
        return Err(RecoverError::NotAVoter {
            node: me,
            voters: voter_ids,
        });
    };
    let own_dir = *meta.directory_id.as_bytes();
    if mine.directory_id == [0; 16] && !force {
        return Err(RecoverError::NoDirectoryRecorded { node: me });
    }
    if mine.directory_id != own_dir && mine.directory_id != [0; 16] {
        return Err(RecoverError::ReplacedDisk {
            node: me,
            recorded: uuid::Uuid::from_bytes(mine.directory_id),
            this_disk: meta.directory_id,
        });
    }

    // Under mutual TLS the peers answer only a controller's certificate: this one's.
    let http = match tls {
        None => crate::raft::peer::client::PeerHttp::plain(),
        Some(files) => crate::tls::Identity::load(files)
            .and_then(crate::tls::client_config)
            .map_err(|e| RecoverError::Tls(e.to_string()))
            .and_then(|c| {
                crate::raft::peer::client::PeerHttp::tls(c)
                    .map_err(|e| RecoverError::Tls(format!("client: {e}")))
            })?,
    };
    let mut voters = BTreeMap::new();
    for id in voter_ids.iter().copied().filter(|&id| id != me) {
        let Some(n) = membership.get_node(&id) else {
            voters.insert(id, Peer::Unreachable("no address recorded".into()));
            continue;
        };
        let seen = match fetch_info(&http, &n.peer_addr).await {
            Ok(info) if info.node_id != id || info.cluster_id != meta.cluster_id => {
                Peer::Unreachable(format!(
                    "{} answers as node {} of cluster {}",
                    n.peer_addr, info.node_id, info.cluster_id
                ))
            }
            Ok(_) if n.directory_id == [0; 16] => Peer::CannotTell(format!(
                "{} answers, but the membership records no directory id for it",
                n.peer_addr
            )),
            Ok(info) if info.directory_id == n.directory_id => Peer::HoldsItsDisk,
            Ok(_) => match fetch_history(&http, &n.peer_addr, me, &meta.cluster_id).await {
                Ok(h) if h.current_term > seen_term || h.last_log_index > Some(last.index) => {
                    Peer::CannotTell(format!(
                        "{} has a new disk but has seen epoch {} and log index {:?}, beyond \
                         this node's epoch {seen_term} and last entry {last}: this node's \
                         membership may be out of date",
                        n.peer_addr, h.current_term, h.last_log_index
                    ))
                }
                Ok(_) => Peer::Reformatted,
                Err(e) => Peer::CannotTell(format!("{}: history: {e}", n.peer_addr)),
            },
            Err(e) if nobody_listens(&e) => Peer::Unreachable(format!("{}: {e:#}", n.peer_addr)),
            Err(e) => Peer::Unasked(format!("{}: {e:#}", n.peer_addr)),
        };
        voters.insert(id, seen);
    }
    let holding: Vec<NodeId> = voters
        .iter()
        .filter(|(_, p)| **p == Peer::HoldsItsDisk)
        .map(|(id, _)| *id)
        .collect();
    if !holding.is_empty() {
        return Err(RecoverError::PeersHoldDisks { node: me, holding });
    }
    let unasked: Vec<String> = voters
        .iter()
        .filter_map(|(id, p)| match p {
            Peer::Unasked(why) => Some(format!("node {id} ({why})")),
            _ => None,
        })
        .collect();
    if !unasked.is_empty() {
        return Err(RecoverError::Unasked(unasked));
    }
    let unreachable: Vec<String> = voters
        .iter()
        .filter_map(|(id, p)| match p {
            Peer::Unreachable(why) | Peer::CannotTell(why) => Some(format!("node {id} ({why})")),
            _ => None,
        })
        .collect();
    if !unreachable.is_empty() && !force {
        return Err(RecoverError::NeedsForce(unreachable));
    }

    let term = seen_term + 1;
    if term > MAX_TERM {
        return Err(RecoverError::EpochOverflow(term));
    }
    let committed = log
        .read_committed()
        .await
        .map_err(|e| storage("reading the committed entry")(e.to_string()))?;
    let mut me_node: KNode = mine;
    me_node.directory_id = own_dir;
    let sole = KMembership::new(vec![BTreeSet::from([me])], BTreeMap::from([(me, me_node)]))
        .map_err(|e| storage("building the membership")(e.to_string()))?;
    let entry_id = log_id(term, me, last.index + 1);
    let book = |index: u64| {
        log.end_offset_after(index)
            .map_err(|e| storage("reading the offset book")(e.to_string()))
    };
    let Some(last_end_offset) = book(last.index)? else {
        return Err(RecoverError::EndOffsetUnknown(last));
    };
    let committed_end_offset = match committed {
        Some(c) => book(c.index)?.unwrap_or(0),
        None => 0,
    };
    let plan = Recovered {
        node_id: me,
        voters,
        last,
        committed,
        last_end_offset,
        committed_end_offset,
        entry: entry_id,
        written: false,
    };
    if !write {
        return Ok(plan);
    }
    // The vote first: the entry is of epoch `term`, and no entry may be of a later epoch
    // than the node's vote. A candidate's vote for itself; it elects itself when it starts.
    log.save_vote(&KVote::new(term, me))
        .await
        .map_err(|e| storage("saving the vote")(e.to_string()))?;
    let entry = Entry {
        log_id: entry_id,
        payload: EntryPayload::Membership(sole),
    };
    log.append([entry], IOFlushed::noop())
        .await
        .map_err(|e| storage("appending the membership entry")(e.to_string()))?;
    Ok(Recovered {
        written: true,
        ..plan
    })
}
