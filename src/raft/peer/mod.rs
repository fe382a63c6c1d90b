//! The peer transport between controllers, both sides of it.
//!
//! Every request carries an envelope naming the cluster, the sender, the target and the
//! directory id the sender believes the target has. A node refuses an envelope meant for
//! another cluster, node or directory (KIP-853: a re-formatted disk must not vote or count
//! towards a commit under the identity of the voter it replaced).
//!
//! The Raft RPCs live under `/peer/v2/` since openraft 0.10 (its messages changed shape):
//! a controller of the older build answers them 404, so a mixed quorum during a rolling
//! upgrade never misreads a message; it only cannot count the other build's votes.
//!
//! - `wire`: paths, envelope, messages, and the checks of a message's shape;
//! - `client`: openraft's network over HTTP, and the reads a node makes of its peers;
//! - `server`: the peer listener, served from `PeerState` (what this node says of itself,
//!   the snapshot being received, the commit a leader reported);
//! - `gate`: the first-election gate of a node formatted with bootstrap voters, which the
//!   listener consults before handing a Raft RPC to Raft.

pub mod client;
pub mod gate;
pub mod server;
pub mod wire;
