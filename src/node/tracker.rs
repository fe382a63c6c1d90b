//! When each follower last held the leader's whole log (Kafka's last-caught-up time), from
//! samples of the leader's log end; `health` takes a sample every 100 ms and reads it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::raft::NodeId;

/// Samples of the leader's log end, and when each follower last held it, for the term this
/// node leads in.
#[derive(Debug, Default)]
pub struct Tracker {
    /// The term the samples belong to; a new term starts afresh.
    term: u64,
    /// (when, the leader's last entry index then), oldest first.
    samples: VecDeque<(Instant, u64)>,
    /// The last time each follower held everything the leader had.
    caught_up: BTreeMap<NodeId, Instant>,
}

/// Samples kept: the down window many times over at one per 100 ms.
const MAX_SAMPLES: usize = 256;

impl Tracker {
    /// One sample at `now`: the leader's last index, and for each follower its matched index
    /// and when it last acknowledged the leader (what it reported then is what it held then,
    /// so a follower that stopped answering is never credited with later samples).
    pub(super) fn sample(
        &mut self,
        now: Instant,
        term: u64,
        last: Option<u64>,
        followers: &BTreeMap<NodeId, (Option<u64>, Option<Instant>)>,
    ) {
        if term != self.term {
            *self = Tracker {
                term,
                ..Tracker::default()
            };
        }
        if let Some(last) = last {
            self.samples.push_back((now, last));
            while self.samples.len() > MAX_SAMPLES {
                self.samples.pop_front();
            }
        }
        self.caught_up.retain(|id, _| followers.contains_key(id));
        for (id, (m, acked)) in followers {
            let (Some(m), Some(acked)) = (m, acked) else {
                continue;
            };
            // The latest moment, up to its acknowledgement, at which the leader's log ended
            // at or before what it holds.
            let at = self
                .samples
                .iter()
                .rev()
                .filter(|(t, _)| t <= acked)
                .find(|(_, end)| *end <= *m)
                .map(|(t, _)| *t);
            if let Some(at) = at {
                let e = self.caught_up.entry(*id).or_insert(at);
                *e = (*e).max(at);
            }
        }
    }

    /// When follower `id` last held the leader's whole log, in the current term.
    pub(super) fn caught_up_at(&self, term: u64, id: NodeId) -> Option<Instant> {
        (self.term == term)
            .then(|| self.caught_up.get(&id).copied())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_follower_that_reached_an_earlier_end_of_the_log_was_caught_up_then() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Each sample sees an acknowledgement sent at `acked` ms.
        let follower = |m: u64, acked: u64| BTreeMap::from([(2, (Some(m), Some(at(acked))))]);
        let mut t = Tracker::default();
        // Steady writes: the leader's end moves on at every sample, the follower trails
        // by one sample and never equals the end of the moment.
        t.sample(at(0), 3, Some(10), &follower(8, 0));
        assert_eq!(
            t.caught_up_at(3, 2),
            None,
            "it never had the leader's whole log"
        );
        t.sample(at(100), 3, Some(20), &follower(10, 100));
        assert_eq!(
            t.caught_up_at(3, 2),
            Some(at(0)),
            "it had all the leader had at 0 ms"
        );
        t.sample(at(200), 3, Some(30), &follower(25, 200));
        assert_eq!(t.caught_up_at(3, 2), Some(at(100)));
        // A stopped follower keeps its last time, which ages.
        t.sample(at(300), 3, Some(40), &follower(25, 200));
        t.sample(at(400), 3, Some(50), &follower(25, 200));
        assert_eq!(t.caught_up_at(3, 2), Some(at(100)));
        // Another term starts afresh.
        assert_eq!(t.caught_up_at(4, 2), None);
        t.sample(at(500), 4, Some(60), &follower(25, 500));
        assert_eq!(t.caught_up_at(4, 2), None);
        t.sample(at(600), 4, Some(60), &follower(60, 600));
        assert_eq!(t.caught_up_at(4, 2), Some(at(600)));
    }

    #[test]
    fn on_an_idle_log_a_stopped_follower_is_caught_up_only_as_of_its_last_acknowledgement() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let stopped_at_0 = BTreeMap::from([(2, (Some(10), Some(at(0))))]);
        let mut t = Tracker::default();
        for ms in [0, 100, 900, 5000] {
            t.sample(at(ms), 3, Some(10), &stopped_at_0);
        }
        assert_eq!(t.caught_up_at(3, 2), Some(at(0)));
    }
}
