//! Rack-aware replica placement for new partitions.
//!
//! The rules (as Kafka's placer keeps them): no two replicas of a partition on one broker;
//! a partition's replicas spread over as many racks as there are; the first replica (the
//! preferred leader) is an unfenced broker; and the preferred leaders of a topic's
//! partitions rotate over the unfenced brokers, so leader counts differ by at most one.
//!
//! Brokers are ordered rack by rack in turn (`r1-b1, r2-b1, r3-b1, r1-b2, ...`); partition
//! `p`'s first replica is the `(start + p)`-th unfenced broker of that order, and the other
//! replicas follow it in the order, skipping racks already used until every rack is used.
//! The followers' distance from the leader grows every full rotation, so a broker's
//! followers are not always the same brokers.

use std::collections::BTreeMap;

/// A broker that can hold new replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Broker id.
    pub id: i32,
    /// Rack, if the broker named one (brokers without a rack share one unnamed rack).
    pub rack: Option<String>,
    /// Fenced brokers only take follower replicas, and only when unfenced ones run out.
    pub fenced: bool,
}

/// Why no placement exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Fewer usable brokers than replicas.
    #[error("the replication factor {wanted} is larger than the {usable} broker(s) available (registered and not shutting down)")]
    NotEnoughBrokers { wanted: usize, usable: usize },
    /// Nobody can lead.
    #[error("no unfenced broker is available to lead the new partitions")]
    NoUnfencedBroker,
    /// A replication factor below one.
    #[error("the replication factor must be at least 1")]
    ZeroReplicationFactor,
}

/// Brokers interleaved rack by rack; racks and brokers each in id order.
fn rack_alternating(brokers: &[&Candidate]) -> Vec<i32> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for b in brokers {
        by_rack.entry(b.rack.as_deref()).or_default().push(b.id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(brokers.len());
    for i in 0..longest {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(i) {
                out.push(*id);
            }
        }
    }
    out
}

/// Replica lists for partitions `first_partition..first_partition + count`, starting the
/// leader rotation at `start` (callers pass a random number, as Kafka does).
pub fn place(
    brokers: &[Candidate],
    first_partition: u32,
    count: u32,
    replication_factor: usize,
    start: u32,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if replication_factor == 0 {
        return Err(PlacementError::ZeroReplicationFactor);
    }
    if brokers.len() < replication_factor {
        return Err(PlacementError::NotEnoughBrokers {
            wanted: replication_factor,
            usable: brokers.len(),
        });
    }
    let unfenced: Vec<&Candidate> = brokers.iter().filter(|b| !b.fenced).collect();
    if unfenced.is_empty() {
        return Err(PlacementError::NoUnfencedBroker);
    }
    let leaders = rack_alternating(&unfenced);
    // Followers: the unfenced brokers first (rack-alternating), the fenced ones after.
    let fenced: Vec<&Candidate> = brokers.iter().filter(|b| b.fenced).collect();
    let mut order = leaders.clone();
    order.extend(rack_alternating(&fenced));
    // Racks as small numbers, looked up by position in `order`.
    let mut rack_ids: BTreeMap<Option<&str>, usize> = BTreeMap::new();
    let by_id: std::collections::HashMap<i32, &Candidate> =
        brokers.iter().map(|b| (b.id, b)).collect();
    let rack_at: Vec<usize> = order
        .iter()
        .map(|id| {
            let rack = by_id.get(id).and_then(|b| b.rack.as_deref());
            let n = rack_ids.len();
            *rack_ids.entry(rack).or_insert(n)
        })
        .collect();
    let racks = rack_ids.len();
    let pos_of: std::collections::HashMap<i32, usize> =
        order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let unfenced_n = leaders.len();
    let n = order.len();
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        let p = (first_partition + i) as usize;
        let turn = start as usize + p;
        let leader = leaders[turn % unfenced_n];
        let pos = pos_of.get(&leader).copied().unwrap_or(0);
        let mut replicas = Vec::with_capacity(replication_factor);
        let mut chosen = vec![pos];
        replicas.push(leader);
        let mut used_racks = vec![rack_at[pos]];
        // Start the followers further from the leader on every full rotation.
        let shift = if unfenced_n > 1 {
            1 + (turn / unfenced_n) % (unfenced_n - 1)
        } else {
            1
        };
        // Pass 0: unfenced brokers on new racks; 1: unfenced on any rack; 2: anyone.
        for pass in 0..3 {
            let mut k = 0;
            while replicas.len() < replication_factor && k < n {
                let idx = (pos + shift + k) % n;
                k += 1;
                if chosen.contains(&idx) {
                    continue;
                }
                let is_unfenced = idx < unfenced_n;
                let rack = rack_at[idx];
                let ok = match pass {
                    0 => is_unfenced && (!used_racks.contains(&rack) || used_racks.len() >= racks),
                    1 => is_unfenced,
                    _ => true,
                };
                if ok {
                    chosen.push(idx);
                    replicas.push(order[idx]);
                    if !used_racks.contains(&rack) {
                        used_racks.push(rack);
                    }
                }
            }
        }
        out.push(replicas);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn cands(spec: &[(i32, &str, bool)]) -> Vec<Candidate> {
        spec.iter()
            .map(|&(id, rack, fenced)| Candidate {
                id,
                rack: (!rack.is_empty()).then(|| rack.to_string()),
                fenced,
            })
            .collect()
    }

    #[test]
    fn five_brokers_in_three_racks_get_distinct_racks_and_even_leaders() {
        let b = cands(&[
            (1, "a", false),
            (2, "a", false),
            (3, "b", false),
            (4, "b", false),
            (5, "c", false),
        ]);
        for start in [0u32, 1, 7, 12345] {
            let placed = place(&b, 0, 100, 3, start).unwrap();
            let rack = |id: i32| b.iter().find(|c| c.id == id).unwrap().rack.clone();
            let mut leaders: HashMap<i32, usize> = HashMap::new();
            for r in &placed {
                assert_eq!(r.len(), 3);
                assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3, "{r:?}");
                let racks: BTreeSet<_> = r.iter().map(|&id| rack(id)).collect();
                assert_eq!(racks.len(), 3, "replicas {r:?} share a rack");
                *leaders.entry(r[0]).or_default() += 1;
            }
            assert_eq!(leaders.len(), 5);
            let (min, max) = (
                leaders.values().min().unwrap(),
                leaders.values().max().unwrap(),
            );
            assert!(max - min <= 1, "leaders {leaders:?}");
        }
    }

    #[test]
    fn fenced_brokers_never_lead_and_follow_only_when_needed() {
        let b = cands(&[(1, "", false), (2, "", true), (3, "", false)]);
        let two = place(&b, 0, 30, 2, 3).unwrap();
        for r in &two {
            assert_ne!(r[0], 2);
            assert!(!r.contains(&2), "unfenced brokers were enough: {r:?}");
        }
        let three = place(&b, 0, 30, 3, 3).unwrap();
        for r in &three {
            assert_ne!(r[0], 2);
            assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3);
        }
    }

    #[test]
    fn impossible_placements_are_refused() {
        let b = cands(&[(1, "", false), (2, "", true)]);
        assert_eq!(
            place(&b, 0, 1, 3, 0),
            Err(PlacementError::NotEnoughBrokers {
                wanted: 3,
                usable: 2
            })
        );
        assert_eq!(
            place(&cands(&[(2, "", true)]), 0, 1, 1, 0),
            Err(PlacementError::NoUnfencedBroker)
        );
        assert_eq!(
            place(&b, 0, 1, 0, 0),
            Err(PlacementError::ZeroReplicationFactor)
        );
    }

    #[test]
    fn more_replicas_than_racks_uses_every_rack() {
        let b = cands(&[
            (1, "a", false),
            (2, "a", false),
            (3, "a", false),
            (4, "b", false),
        ]);
        for r in place(&b, 0, 20, 3, 0).unwrap() {
            assert!(r.contains(&4), "rack b unused in {r:?}");
        }
    }
}
