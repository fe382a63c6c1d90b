//! The first-election gate of a node formatted with bootstrap voters (`node::bootstrap`
//! decides; the peer listener consults it): until the node knows whether it may take part
//! in the first election, a node whose directory id came from `--voters` keeps Raft RPCs
//! from Raft, and a vetoed one keeps them out for good.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use crate::raft::NodeId;
/// Why the first-election gate keeps Raft requests from Raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GateRefusal {
    /// The node has not yet decided whether it may take part in the first election.
    #[error(
        "this node is still deciding whether it may take part in the first election (its \
         directory id comes from --voters)"
    )]
    Deciding,
    /// The node was formatted with `--voters` for a cluster that already exists.
    #[error(
        "this node was formatted with --voters for an existing cluster and refuses Raft \
         requests under that identity: re-format it with --join"
    )]
    Vetoed,
}

const OPEN: u8 = 0;

const PENDING: u8 = 1;

const VETOED: u8 = 2;

/// The bootstrap gate's state, shared with the peer listener.
#[derive(Debug)]
pub struct Gate {
    state: AtomicU8,
    /// This node's directory id came from `--voters`: Raft RPCs wait for the decision.
    borrowed_identity: bool,
    /// Bootstrap voters that asked this node for its history, in this run, while it held
    /// none.
    askers: Mutex<BTreeSet<NodeId>>,
}

impl Gate {
    /// A gate that is not closed: the node already has a log, or joins.
    pub fn open() -> Self {
        Self::with(OPEN, false)
    }

    /// A gate still deciding the first election.
    pub fn pending(borrowed_identity: bool) -> Self {
        Self::with(PENDING, borrowed_identity)
    }

    fn with(state: u8, borrowed_identity: bool) -> Self {
        Gate {
            state: AtomicU8::new(state),
            borrowed_identity,
            askers: Mutex::new(BTreeSet::new()),
        }
    }

    /// Notes that voter `id` asked for this node's history while this node held none.
    pub fn note_asker(&self, id: NodeId) {
        if let Ok(mut a) = self.askers.lock() {
            a.insert(id);
        }
    }

    /// The bootstrap voters that asked, so far.
    pub fn askers(&self) -> BTreeSet<NodeId> {
        self.askers.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Did this node's directory id come from `--voters`?
    pub fn borrowed_identity(&self) -> bool {
        self.borrowed_identity
    }

    /// Has the node been vetoed?
    pub fn vetoed(&self) -> bool {
        self.state.load(Ordering::Acquire) == VETOED
    }

    /// The decision is made: Raft RPCs reach Raft from now on.
    pub fn open_now(&self) {
        self.state.store(OPEN, Ordering::Release);
    }

    /// Vetoed: under a borrowed identity, Raft RPCs are refused for good.
    pub fn veto(&self) {
        self.state.store(VETOED, Ordering::Release);
    }

    /// May the peer listener hand a Raft RPC (vote, append, snapshot) to Raft? Always,
    /// except for a node whose directory id came from `--voters` before it decided to
    /// initialize: under that id a leader would count it as the voter whose disk it replaced.
    pub fn admits_raft(&self) -> Result<(), GateRefusal> {
        if !self.borrowed_identity {
            return Ok(());
        }
        match self.state.load(Ordering::Acquire) {
            OPEN => Ok(()),
            PENDING => Err(GateRefusal::Deciding),
            _ => Err(GateRefusal::Vetoed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_identity_refuses_raft_until_the_gate_opens_and_for_good_once_vetoed() {
        let g = Gate::pending(true);
        assert_eq!(g.admits_raft(), Err(GateRefusal::Deciding));
        g.open_now();
        assert!(g.admits_raft().is_ok());
        g.veto();
        assert_eq!(g.admits_raft(), Err(GateRefusal::Vetoed));
        assert!(GateRefusal::Vetoed.to_string().contains("--join"));
        assert!(g.vetoed());

        let fresh = Gate::pending(false);
        assert!(
            fresh.admits_raft().is_ok(),
            "a fresh directory id is not gated"
        );
        fresh.veto();
        assert!(fresh.admits_raft().is_ok());
        assert!(Gate::open().admits_raft().is_ok());
    }
}
