//! The `Node` handle: what the listeners and the background duties of one controller
//! process share (Raft, the state machine, the log store, the controller's write path),
//! behind accessors; and the answers every layer above asks of it (its id, the leader,
//! whether it leads, a peer's API address, the reported high watermark).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::async_runtime::WatchReceiver;

use crate::controller::Controller;
use crate::node::config::Config;
use crate::node::meta::MetaProperties;
use crate::raft::log_store::LogStore;
use crate::raft::peer::client::{fetch_info, PeerHttp};
use crate::raft::peer::server::PeerState;
use crate::raft::peer::wire::NodeInfo;
use crate::raft::state_machine::SmShared;
use crate::raft::{NodeId, Raft};

/// Everything the listeners and background tasks share.
pub struct Node {
    /// Raft.
    pub(super) raft: Raft,
    /// The state machine's shared state (image, applied offset, snapshots).
    pub(super) sm: Arc<SmShared>,
    /// The log store (reads for brokers).
    pub(super) log: LogStore,
    /// meta.properties.
    pub(super) meta: MetaProperties,
    /// Settings.
    pub(super) config: Config,
    /// Pooled HTTP client (peers, forwarding).
    pub(super) http: PeerHttp,
    /// API addresses learned from peers.
    pub(super) api_addrs: Mutex<BTreeMap<NodeId, String>>,
    /// The write path.
    pub(super) controller: Arc<Controller>,
    /// Followers, as the leader tracks them.
    pub(super) followers: Mutex<super::tracker::Tracker>,
    /// Voters demoted for a re-formatted disk, to promote once caught up.
    pub(super) readmit: Mutex<BTreeSet<NodeId>>,
    /// The voter a transfer of leadership started here is handing over to, while it runs.
    pub(super) transferring: Mutex<Option<NodeId>>,
    /// What the peer listener serves from (who this node is, with its two addresses, its
    /// first-election gate, the snapshot being received, the commit a leader reported).
    pub(super) peer: Arc<PeerState>,
}

/// ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Node {
    /// Raft.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The state machine's shared state (image, applied offset, snapshots).
    pub fn sm(&self) -> &Arc<SmShared> {
        &self.sm
    }

    /// The log store (reads for brokers).
    pub fn log(&self) -> &LogStore {
        &self.log
    }

    /// This node's meta.properties.
    pub fn meta(&self) -> &MetaProperties {
        &self.meta
    }

    /// Its settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How this node reaches other nodes' listeners (peers, forwarding).
    pub fn http(&self) -> &PeerHttp {
        &self.http
    }

    /// The API listener's address.
    pub fn api_addr(&self) -> &str {
        &self.peer.me().api_addr
    }

    /// The peer listener's address.
    pub fn peer_addr(&self) -> &str {
        &self.peer.me().peer_addr
    }

    /// The write path.
    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    /// The highest commit index a leader told this node, if any.
    pub fn seen_commit(&self) -> Option<u64> {
        self.peer.seen_commit()
    }

    /// What the peer listener is served from.
    pub fn peer(&self) -> &Arc<PeerState> {
        &self.peer
    }

    /// End offset of entry `index` on the leader's log (None: not stored, e.g. purged).
    pub fn end_of(&self, index: Option<u64>) -> Option<u64> {
        match index {
            None => Some(0),
            Some(i) => self.log.entry_offsets(i).ok().flatten().map(|(_, end)| end),
        }
    }

    /// This node's high watermark for a report (`/v1/quorum/status`, `/metrics`): the served
    /// one, waiting up to `wait` for it to be known; then the applied end offset, this node's
    /// own last known high watermark.
    pub async fn reported_high_watermark(&self, wait: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.sm.subscribe();
        let mut metrics = self.raft.metrics();
        loop {
            let term = metrics.borrow_and_update().current_term;
            let applied = *rx.borrow_and_update();
            if let Some(h) = crate::raft::state_machine::served_high_watermark(applied, term) {
                return h;
            }
            if tokio::time::Instant::now() >= deadline {
                return applied.end_offset;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return applied.end_offset },
                r = metrics.changed() => if r.is_err() { return applied.end_offset },
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.meta.node_id
    }

    /// What this node says of itself to peers.
    pub fn info(&self) -> NodeInfo {
        self.peer.info()
    }

    /// The current leader, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// Is this node the leader?
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        crate::raft::leading_term(&m).is_some()
    }

    /// The API address of `id` as far as it is known without asking anyone: from the
    /// membership or the cache.
    pub fn known_api_addr(&self, id: NodeId) -> Option<String> {
        if id == self.id() {
            return Some(self.api_addr().to_string());
        }
        let recorded = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.api_addr.clone())
        }?;
        if !recorded.is_empty() {
            return Some(recorded);
        }
        self.api_addrs.lock().ok()?.get(&id).cloned()
    }

    /// Drops the API address learned from node `id`'s peer listener (it moved).
    pub fn forget_api_addr(&self, id: NodeId) {
        if let Ok(mut a) = self.api_addrs.lock() {
            a.remove(&id);
        }
    }

    /// The API address of `id`: from the membership, a cache, or by asking its peer
    /// listener.
    pub async fn api_addr_of(&self, id: NodeId) -> Option<String> {
        if let Some(known) = self.known_api_addr(id) {
            return Some(known);
        }
        let node = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            m.membership_config.membership().get_node(&id).cloned()
        }?;
        let info = fetch_info(&self.http, &node.peer_addr).await.ok()?;
        if info.node_id != id || info.cluster_id != self.meta.cluster_id {
            return None;
        }
        self.api_addrs
            .lock()
            .ok()?
            .insert(id, info.api_addr.clone());
        Some(info.api_addr)
    }
}
