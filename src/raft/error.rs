//! The closed error types of the Raft layer. Each names what was wrong; the peer listener
//! answers a refusal with 400 and the error's text, and the text is what a log shows.

use crate::record::batch::BatchErrorKind;
use crate::record::error::RecordError;

/// Why a peer message is refused before openraft sees it: no real leader or voter sends
/// it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefusal {
    /// A term above the largest Kafka epoch.
    #[error("{what} carries term {term}, above the largest Kafka epoch {max}")]
    TermTooLarge {
        /// The message, e.g. `AppendEntries`.
        what: String,
        /// The highest term it carries.
        term: u64,
        /// The largest term a Kafka epoch can hold.
        max: u64,
    },
    /// AppendEntries under a vote that is not a leader's.
    #[error("AppendEntries under vote {vote}, which is not a leader's (not committed)")]
    NotALeadersVote {
        /// The sender's vote.
        vote: String,
    },
    /// A log id of a later leader than the sender's vote.
    #[error("AppendEntries {what} {id} is of a later leader than the sender's vote {vote}")]
    LaterLeaderThanVote {
        /// `prev_log_id`, `leader_commit` or `entry`.
        what: &'static str,
        /// The log id.
        id: String,
        /// The sender's vote.
        vote: String,
    },
    /// The first entry is of an earlier leader than the entry it follows.
    #[error("AppendEntries entry {first} is of an earlier leader than prev_log_id {prev}")]
    EarlierLeaderThanPrev {
        /// The first entry's log id.
        first: String,
        /// `prev_log_id`.
        prev: String,
    },
    /// Entries with a gap or a repeat between them.
    #[error("AppendEntries entries are not consecutive: {a} is followed by {b}")]
    NotConsecutive {
        /// The earlier entry.
        a: String,
        /// The entry after it.
        b: String,
    },
    /// An entry of an earlier leader than the entry before it.
    #[error("AppendEntries entry {b} is of an earlier leader than the entry {a} before it")]
    LeaderGoesBack {
        /// The earlier entry.
        a: String,
        /// The entry after it.
        b: String,
    },
}

/// A v2 batch that cannot be a log entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a batch header.
    #[error("batch of {len} bytes is shorter than a header")]
    ShorterThanHeader {
        /// Its length.
        len: usize,
    },
    /// A record count that is not positive.
    #[error("batch holds {count} records")]
    RecordCount {
        /// The count it gives.
        count: i32,
    },
    /// The records could not be encoded.
    #[error("cannot encode the batch: {0}")]
    Encode(String),
}

impl From<RecordError> for BatchError {
    fn from(e: RecordError) -> Self {
        BatchError::Encode(e.to_string())
    }
}

impl From<BatchErrorKind> for BatchError {
    fn from(e: BatchErrorKind) -> Self {
        BatchError::Encode(e.to_string())
    }
}

/// A snapshot whose name, openraft metadata and SnapshotHeaderRecord do not agree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotIdentityError {
    /// The header carries no raft metadata kraftd can read.
    #[error("snapshot {name} carries no readable raft metadata in its SnapshotHeaderRecord")]
    NoRaftMetadata {
        /// The snapshot's name.
        name: String,
    },
    /// Sent as ending at another entry than its header says.
    #[error("snapshot {name} is sent as ending at entry {sent}, but its header says {header}")]
    LastEntry {
        /// The snapshot's name.
        name: String,
        /// What the sender said.
        sent: String,
        /// What the header says.
        header: String,
    },
    /// Sent with another membership than its header says.
    #[error("snapshot {name} is sent with membership {sent}, but its header says {header}")]
    Membership {
        /// The snapshot's name.
        name: String,
        /// What the sender said.
        sent: String,
        /// What the header says.
        header: String,
    },
    /// Named for another epoch than its last entry's.
    #[error(
        "snapshot {name} is named for epoch {named}, but its last entry {last} is of epoch {epoch}"
    )]
    Epoch {
        /// The snapshot's name.
        name: String,
        /// The epoch in the name.
        named: i32,
        /// Its last entry.
        last: String,
        /// That entry's epoch.
        epoch: i32,
    },
    /// Named for a negative end offset.
    #[error("snapshot {name} is named for a negative end offset")]
    NegativeEndOffset {
        /// The snapshot's name.
        name: String,
    },
}

/// Why a peer request is refused for the directory (disk) it is addressed to (KIP-853).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryRefusal {
    /// Addressed to an unknown (nil) directory, though the membership records ours.
    #[error(
        "request for an unknown (nil) directory of node {node}, but the membership records \
         its directory {recorded}: the sender's view is stale"
    )]
    StaleNil {
        /// This node.
        node: crate::raft::NodeId,
        /// Its directory id, as the membership records it.
        recorded: uuid::Uuid,
    },
    /// Addressed to another directory: this disk replaced the one the sender knows.
    #[error(
        "request for directory {to} reached directory {mine} of node {node}: this disk was \
         re-formatted and must be re-added as a voter"
    )]
    Reformatted {
        /// This node.
        node: crate::raft::NodeId,
        /// The directory the request is for.
        to: uuid::Uuid,
        /// This disk's directory.
        mine: uuid::Uuid,
    },
}

/// Why a snapshot is refused for what its sender claims, before openraft (which would
/// assert, stopping the node) installs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotSenderRefusal {
    /// Sent under a vote that is not a leader's.
    #[error("snapshot sent under vote {vote}, which is not a leader's (not committed)")]
    NotALeadersVote {
        /// The sender's vote.
        vote: String,
    },
    /// A snapshot that ends at no entry.
    #[error("snapshot that contains no entry")]
    Empty,
    /// It ends with an entry of a later leader than its sender.
    #[error("snapshot ending at entry {last}, of a later leader than its sender's vote {vote}")]
    LaterLeaderThanVote {
        /// Its last entry.
        last: String,
        /// The sender's vote.
        vote: String,
    },
    /// It contradicts what this node has committed.
    #[error("snapshot ending at entry {last} contradicts this node's committed entry {committed}")]
    ContradictsCommitted {
        /// Its last entry.
        last: String,
        /// This node's committed entry.
        committed: String,
    },
}
