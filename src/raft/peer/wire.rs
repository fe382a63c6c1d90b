//! What travels between controllers: the paths of the peer listener, the envelope every
//! request carries, the messages that are not openraft's own, and the checks both sides
//! make of a message before Raft sees it (terms in range, an append that a leader could
//! have sent, a body within the limit).

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, TransferLeaderError, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::raft::error::PeerRefusal;
use crate::raft::{KSnapshotMeta, KVote, LogId, NodeId, TypeConfig};

/// Content type of peer bodies.
pub const POSTCARD: &str = "application/x-postcard";
/// Peer path of AppendEntries.
pub const PATH_APPEND: &str = "/peer/v2/append";
/// Peer path of Vote.
pub const PATH_VOTE: &str = "/peer/v2/vote";
/// Peer path of PreVote (KIP-996): "would you vote for me?", which changes nothing on the
/// receiver, asked before a candidate raises its term.
pub const PATH_PRE_VOTE: &str = "/peer/v2/pre-vote";
/// Peer path of TransferLeader: the leader names the voter to lead next, which starts its
/// election at once; the others stop waiting out the leader's lease.
pub const PATH_TRANSFER_LEADER: &str = "/peer/v2/transfer-leader";
/// Peer path of a snapshot chunk.
pub const PATH_SNAPSHOT: &str = "/peer/v2/snapshot";
/// Peer path of the node's identity.
pub const PATH_INFO: &str = "/peer/v1/info";
/// Peer path of the current checkpoint file.
pub const PATH_CURRENT_SNAPSHOT: &str = "/peer/v1/current-snapshot";
/// Peer path of a leader's read index (linearizable reads on followers).
pub const PATH_READ_INDEX: &str = "/peer/v1/read-index";
/// Peer path of the node's history: does it hold anything beyond the bootstrap?
pub const PATH_HISTORY: &str = "/peer/v1/history";

/// Largest peer body a node accepts (an AppendEntries of many batches, a snapshot chunk).
/// The client splits AppendEntries to stay below it.
pub const MAX_PEER_BODY: usize = 256 * 1024 * 1024;

/// Room left in a body for the envelope (cluster id, ids, directory id) and the request's
/// own fields (vote, prev log id, leader commit) around the entries.
const ENVELOPE_SLACK: usize = 4096;

/// Highest Raft term a peer message may carry: a term is a Kafka leader epoch, an i32.
pub const MAX_TERM: u64 = i32::MAX as u64;

/// The Raft terms a peer message carries (its vote and every log id in it).
pub trait Terms {
    /// The highest of them (0 when it carries none).
    fn highest_term(&self) -> u64;
}

fn vote_term(v: &KVote) -> u64 {
    v.leader_id.term
}

fn log_term(l: &Option<LogId>) -> u64 {
    l.as_ref().map(|l| l.leader_id.term).unwrap_or(0)
}

impl Terms for VoteRequest<TypeConfig> {
    fn highest_term(&self) -> u64 {
        vote_term(&self.vote).max(log_term(&self.last_log_id))
    }
}

impl Terms for VoteResponse<TypeConfig> {
    fn highest_term(&self) -> u64 {
        vote_term(&self.vote).max(log_term(&self.last_log_id))
    }
}

impl Terms for AppendEntriesRequest<TypeConfig> {
    fn highest_term(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| e.log_id.leader_id.term)
            .chain([
                vote_term(&self.vote),
                log_term(&self.prev_log_id),
                log_term(&self.leader_commit),
            ])
            .max()
            .unwrap_or(0)
    }
}

impl Terms for AppendEntriesResponse<TypeConfig> {
    fn highest_term(&self) -> u64 {
        match self {
            AppendEntriesResponse::Success | AppendEntriesResponse::Conflict => 0,
            AppendEntriesResponse::PartialSuccess(l) => log_term(l),
            AppendEntriesResponse::HigherVote(v) => vote_term(v),
        }
    }
}

impl Terms for TransferLeaderRequest<TypeConfig> {
    fn highest_term(&self) -> u64 {
        vote_term(self.from_leader()).max(log_term(&self.last_log_id().cloned()))
    }
}

impl Terms for TransferLeaderResponse<TypeConfig> {
    fn highest_term(&self) -> u64 {
        match self {
            Ok(()) => 0,
            Err(TransferLeaderError::VoteChanged { expected, actual }) => {
                vote_term(expected).max(vote_term(actual))
            }
            Err(TransferLeaderError::LogNotFlushed { expected, actual }) => {
                log_term(expected).max(log_term(actual))
            }
        }
    }
}

impl Terms for SnapshotChunk {
    fn highest_term(&self) -> u64 {
        vote_term(&self.vote)
            .max(log_term(&self.meta.last_log_id))
            .max(log_term(self.meta.last_membership.log_id()))
    }
}

impl Terms for ChunkAnswer {
    fn highest_term(&self) -> u64 {
        match self {
            ChunkAnswer::Accepted { vote } | ChunkAnswer::Installed { vote } => vote_term(vote),
            ChunkAnswer::Restart { .. } => 0,
        }
    }
}

/// One piece of a snapshot on its way to a follower. The leader sends the checkpoint file
/// in order, from offset 0; the follower writes it to a scratch file, checks the whole file
/// when `done`, and only then hands it to openraft.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The leader's vote.
    pub vote: KVote,
    /// The checkpoint's name, `<end-offset>-<epoch>` (openraft's metadata has no name).
    pub checkpoint: String,
    /// openraft's metadata of the snapshot.
    pub meta: KSnapshotMeta,
    /// Where `data` starts in the file.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
    /// Is this the last piece?
    pub done: bool,
}

/// What a follower answers a [`SnapshotChunk`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkAnswer {
    /// Written; send the next piece. `vote` is the follower's (higher: stop).
    Accepted {
        /// The follower's vote.
        vote: KVote,
    },
    /// The whole file was checked and installed.
    Installed {
        /// The follower's vote after installing.
        vote: KVote,
    },
    /// The follower dropped the transfer (out of order, damaged, cannot write): start again.
    Restart {
        /// Why.
        reason: String,
    },
}

/// Refuses a peer message with a term above [`MAX_TERM`]: Kafka epochs are i32, and a
/// larger term would make every batch's leader epoch wrong.
pub fn check_terms(what: &str, m: &impl Terms) -> Result<(), PeerRefusal> {
    let t = m.highest_term();
    if t > MAX_TERM {
        return Err(PeerRefusal::TermTooLarge {
            what: what.to_string(),
            term: t,
            max: MAX_TERM,
        });
    }
    Ok(())
}

/// Refuses an AppendEntries no leader sends, before openraft sees it (openraft assumes, and
/// in places asserts, these of a real leader): the vote must be a leader's (committed); no
/// log id in it may be of a later leader than that vote; the entries must be consecutive
/// and their leaders never go back. Whether the first entry follows `prev_log_id` is
/// answered as a conflict by the handler instead, so the leader searches back.
pub fn check_append_shape(req: &AppendEntriesRequest<TypeConfig>) -> Result<(), PeerRefusal> {
    let vote = &req.vote;
    if !vote.is_committed() {
        return Err(PeerRefusal::NotALeadersVote {
            vote: vote.to_string(),
        });
    }
    let ids = req
        .prev_log_id
        .iter()
        .map(|l| ("prev_log_id", l))
        .chain(req.leader_commit.iter().map(|l| ("leader_commit", l)))
        .chain(req.entries.iter().map(|e| ("entry", &e.log_id)));
    for (what, id) in ids {
        if id.leader_id > vote.leader_id {
            return Err(PeerRefusal::LaterLeaderThanVote {
                what,
                id: id.to_string(),
                vote: vote.to_string(),
            });
        }
    }
    if let (Some(prev), Some(first)) = (&req.prev_log_id, req.entries.first()) {
        if prev.leader_id > first.log_id.leader_id {
            return Err(PeerRefusal::EarlierLeaderThanPrev {
                first: first.log_id.to_string(),
                prev: prev.to_string(),
            });
        }
    }
    for w in req.entries.windows(2) {
        let (a, b) = (&w[0].log_id, &w[1].log_id);
        if a.index.checked_add(1) != Some(b.index) {
            return Err(PeerRefusal::NotConsecutive {
                a: a.to_string(),
                b: b.to_string(),
            });
        }
        if a.leader_id > b.leader_id {
            return Err(PeerRefusal::LeaderGoesBack {
                a: a.to_string(),
                b: b.to_string(),
            });
        }
    }
    Ok(())
}

/// How many of `rpc`'s first entries fit one body of `limit` bytes (None: all of them).
/// Some(0) means the first entry alone is too large.
pub fn entries_that_fit(rpc: &AppendEntriesRequest<TypeConfig>, limit: usize) -> Option<usize> {
    let budget = limit.saturating_sub(ENVELOPE_SLACK);
    let total = postcard::experimental::serialized_size(rpc).unwrap_or(usize::MAX);
    if total <= budget {
        return None;
    }
    let mut used = 0usize;
    for (i, e) in rpc.entries.iter().enumerate() {
        // A varint length prefix may grow by a few bytes with more entries: counted in the
        // slack.
        used =
            used.saturating_add(postcard::experimental::serialized_size(e).unwrap_or(usize::MAX));
        if used > budget {
            return Some(i);
        }
    }
    // Only the fields around the entries are too large: cannot happen with the slack, but
    // send half rather than fail.
    Some(rpc.entries.len() / 2)
}

/// The envelope of every peer request.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerRequest<T> {
    /// Cluster id of the sender.
    pub cluster_id: String,
    /// Sender.
    pub from: NodeId,
    /// Intended receiver.
    pub to: NodeId,
    /// The receiver's directory id as the sender knows it; nil when not known.
    pub to_directory: [u8; 16],
    /// The RPC.
    pub body: T,
}

/// What a node says of itself on `GET /peer/v1/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Cluster id.
    pub cluster_id: String,
    /// Node id.
    pub node_id: NodeId,
    /// Directory id.
    pub directory_id: [u8; 16],
    /// API listener.
    pub api_addr: String,
    /// Peer listener.
    pub peer_addr: String,
    /// Does the node hold a log (or a snapshot) already?
    pub initialized: bool,
}

/// What a node says of its history on `GET /peer/v1/history`. A node formatted with the
/// bootstrap voters asks every other bootstrap voter before its first election; any
/// answer with `has_history` vetoes it (a wiped disk must never start a new history over
/// an existing one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Cluster id.
    pub cluster_id: String,
    /// Node id.
    pub node_id: NodeId,
    /// Index of the last log entry, if any.
    pub last_log_index: Option<u64>,
    /// Last log index the newest snapshot covers, if any.
    pub snapshot_index: Option<u64>,
    /// Current term (the vote's).
    pub current_term: u64,
    /// Anything beyond the bootstrap membership entry (index 0, term 0): an entry at index
    /// 1 or more, a snapshot, or a purged log prefix.
    pub has_history: bool,
}

impl History {
    /// Does a node with this log state hold history? The first membership entry
    /// `raft.initialize` writes is index 0; every election appends at least one more entry.
    pub fn holds_history(
        last_log_index: Option<u64>,
        snapshot_index: Option<u64>,
        purged_index: Option<u64>,
    ) -> bool {
        last_log_index.is_some_and(|i| i > 0)
            || snapshot_index.is_some_and(|i| i > 0)
            || purged_index.is_some()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::raft::{Batch, Entry};
    use openraft::{EntryPayload, SnapshotMeta};

    pub(crate) const BIG: u64 = MAX_TERM + 1;

    pub(crate) fn log_id(term: u64, index: u64) -> LogId {
        crate::raft::log_id(term, 1, index)
    }

    pub(crate) fn entries(n: u64, size: usize) -> Vec<Entry> {
        (1..=n)
            .map(|i| Entry {
                log_id: log_id(1, i),
                payload: EntryPayload::Normal(Batch {
                    bytes: vec![7u8; size],
                }),
            })
            .collect()
    }

    pub(crate) fn append(entries: Vec<Entry>) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: KVote::new_committed(1, 1),
            prev_log_id: Some(log_id(1, 0)),
            entries,
            leader_commit: None,
        }
    }

    #[test]
    fn an_append_no_leader_would_send_is_refused_with_what_is_wrong() {
        let ok = append(entries(3, 8));
        check_append_shape(&ok).unwrap();
        check_append_shape(&append(vec![])).unwrap();
        let mut later = append(entries(3, 8));
        later.vote = KVote::new_committed(2, 1);
        later.entries[2].log_id = log_id(2, 3);
        later.leader_commit = Some(log_id(2, 3));
        check_append_shape(&later).unwrap();

        let mut uncommitted = append(entries(1, 8));
        uncommitted.vote = KVote::new(1, 1);
        let mut future_entry = append(entries(3, 8));
        future_entry.entries[1].log_id = log_id(2, 2);
        let mut future_commit = append(vec![]);
        future_commit.leader_commit = Some(log_id(3, 9));
        let mut future_prev = append(vec![]);
        future_prev.prev_log_id = Some(log_id(2, 0));
        let mut gap = append(entries(3, 8));
        gap.entries[2].log_id = log_id(1, 5);
        let mut duplicate = append(entries(3, 8));
        duplicate.entries[1].log_id = log_id(1, 1);
        let mut backwards = append(entries(3, 8));
        backwards.vote = KVote::new_committed(3, 1);
        backwards.entries[0].log_id = log_id(3, 1);
        let mut before_prev = append(entries(1, 8));
        before_prev.vote = KVote::new_committed(3, 1);
        before_prev.prev_log_id = Some(log_id(3, 0));
        for (what, req, says) in [
            ("uncommitted vote", uncommitted, "not a leader's"),
            ("entry of a later leader", future_entry, "later leader"),
            ("commit of a later leader", future_commit, "leader_commit"),
            ("prev of a later leader", future_prev, "prev_log_id"),
            ("gap", gap, "not consecutive"),
            ("duplicate index", duplicate, "not consecutive"),
            ("leaders going back", backwards, "earlier leader"),
            (
                "first entry before prev",
                before_prev,
                "earlier leader than prev_log_id",
            ),
        ] {
            let err = check_append_shape(&req).expect_err(what);
            assert!(err.to_string().contains(says), "{what}: {err}");
        }
    }

    #[test]
    fn terms_above_the_largest_kafka_epoch_are_refused_wherever_they_are() {
        let ok = append(entries(2, 8));
        check_terms("AppendEntries", &ok).unwrap();
        let mut at_max = append(entries(1, 8));
        at_max.vote = KVote::new_committed(MAX_TERM, 1);
        check_terms("AppendEntries", &at_max).unwrap();

        let mut v = append(vec![]);
        v.vote = KVote::new_committed(BIG, 1);
        let mut prev = append(vec![]);
        prev.prev_log_id = Some(log_id(BIG, 0));
        let mut commit = append(vec![]);
        commit.leader_commit = Some(log_id(BIG, 0));
        let mut entry = append(entries(3, 8));
        entry.entries[2].log_id = log_id(BIG, 3);
        for (what, req) in [
            ("vote", v),
            ("prev", prev),
            ("commit", commit),
            ("entry", entry),
        ] {
            let e = check_terms("AppendEntries", &req).unwrap_err();
            assert!(matches!(e, PeerRefusal::TermTooLarge { .. }), "{what}: {e}");
        }

        let vote = VoteRequest::new(KVote::new(BIG, 2), Some(log_id(1, 3)));
        assert!(check_terms("Vote", &vote).is_err());
        let vote = VoteRequest::new(KVote::new(2, 2), Some(log_id(BIG, 3)));
        assert!(check_terms("Vote", &vote).is_err());
        let vote = VoteRequest::new(KVote::new(2, 2), Some(log_id(1, 3)));
        check_terms("Vote", &vote).unwrap();

        let snap = |vote: KVote, last: Option<LogId>| SnapshotChunk {
            vote,
            checkpoint: "1-1".into(),
            meta: SnapshotMeta {
                last_log_id: last,
                last_membership: Default::default(),
            },
            offset: 0,
            data: vec![],
            done: false,
        };
        check_terms(
            "snap",
            &snap(KVote::new_committed(1, 1), Some(log_id(1, 1))),
        )
        .unwrap();
        assert!(check_terms("snap", &snap(KVote::new_committed(BIG, 1), None)).is_err());
        assert!(check_terms(
            "snap",
            &snap(KVote::new_committed(1, 1), Some(log_id(BIG, 1)))
        )
        .is_err());

        let higher: AppendEntriesResponse<TypeConfig> =
            AppendEntriesResponse::HigherVote(KVote::new(BIG, 3));
        assert!(check_terms("resp", &higher).is_err());
        let partial: AppendEntriesResponse<TypeConfig> =
            AppendEntriesResponse::PartialSuccess(Some(log_id(BIG, 3)));
        assert!(check_terms("resp", &partial).is_err());
        let vr = VoteResponse::<TypeConfig>::new(KVote::new(BIG, 3), None, false);
        assert!(check_terms("resp", &vr).is_err());
    }
}
