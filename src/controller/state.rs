//! What the active controller checks requests against: the [`View`] (the committed image
//! plus every record emitted since, the heartbeat sessions, and the job's clock and random
//! number) and the [`PartitionIndex`] that finds a broker's partitions without a scan.

use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use super::sessions::Sessions;
use super::ControllerError;
use crate::contract::ErrorCode;
use crate::image::MetadataImage;
use crate::record::metadata::{MetadataRecord, VersionedRecord};

/// A partition: topic id (as an integer) and partition id.
pub type PartitionKey = (u128, i32);

/// Which partitions each broker is in the ISR of, and which partitions have no leader (as
/// Kafka's BrokersToIsrs), so fencing or unfencing a broker touches only its partitions
/// instead of scanning the cluster.
#[derive(Debug, Default)]
pub struct PartitionIndex {
    isr: std::collections::HashMap<i32, std::collections::HashSet<PartitionKey>>,
    leaderless: std::collections::HashSet<PartitionKey>,
}

impl PartitionIndex {
    pub(super) fn build(image: &MetadataImage) -> Self {
        let mut ix = PartitionIndex::default();
        for t in image.topics() {
            for p in t.partitions() {
                ix.add(t.id().as_u128(), p);
            }
        }
        ix
    }

    pub(super) fn add(&mut self, topic: u128, p: &crate::image::Partition) {
        let key = (topic, p.id());
        for b in p.isr() {
            self.isr.entry(*b).or_default().insert(key);
        }
        if !p.has_leader() {
            self.leaderless.insert(key);
        }
    }

    pub(super) fn remove(&mut self, topic: u128, p: &crate::image::Partition) {
        let key = (topic, p.id());
        for b in p.isr() {
            if let Some(set) = self.isr.get_mut(b) {
                set.remove(&key);
                if set.is_empty() {
                    self.isr.remove(b);
                }
            }
        }
        self.leaderless.remove(&key);
    }

    /// Partitions whose ISR holds `broker`, sorted.
    pub fn isr_of(&self, broker: i32) -> Vec<PartitionKey> {
        let mut v: Vec<_> = self
            .isr
            .get(&broker)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Partitions without a leader, sorted.
    pub fn leaderless(&self) -> Vec<PartitionKey> {
        let mut v: Vec<_> = self.leaderless.iter().copied().collect();
        v.sort_unstable();
        v
    }
}

/// What the active controller checks requests against.
pub struct View {
    pub(super) image: MetadataImage,
    /// Partitions by ISR member, and the leaderless ones.
    pub index: PartitionIndex,
    /// Offset the next emitted record will get.
    pub(super) next_offset: u64,
    pub(super) term: u64,
    /// Records emitted by the job being run.
    pub(super) staged: Vec<VersionedRecord>,
    /// Broker heartbeat sessions (in memory, never replicated).
    pub sessions: Sessions,
    /// When the job runs.
    pub now: Instant,
    /// This cluster's id.
    pub cluster_id: Arc<str>,
    /// A random number per job, for placement.
    pub random: u32,
}

impl View {
    /// The committed image plus every record emitted so far.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// The offset the next emitted record will have.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The epoch (term) of this leadership.
    pub fn epoch(&self) -> i32 {
        i32::try_from(self.term).unwrap_or(i32::MAX)
    }

    /// Emits a record: the view applies it now, and it is written with the job's batch.
    /// Returns its offset. Jobs check their request before emitting, so a record the image
    /// refuses is a controller bug; the loop then drops the view.
    pub fn emit(&mut self, record: MetadataRecord) -> Result<u64, ControllerError> {
        self.stage(VersionedRecord::new(record)).map_err(|e| {
            ControllerError::Internal(format!(
                "the controller built a record its image refuses: {e}"
            ))
        })
    }

    /// Applies `record` and stages it for the job's batch; returns its offset.
    pub(super) fn stage(
        &mut self,
        record: VersionedRecord,
    ) -> Result<u64, crate::image::ImageError> {
        self.apply(&record.record)?;
        let offset = self.next_offset;
        self.next_offset += 1;
        self.staged.push(record);
        Ok(offset)
    }

    /// Applies a record to the image and keeps the partition index in step.
    pub(super) fn apply(
        &mut self,
        record: &MetadataRecord,
    ) -> Result<(), crate::image::ImageError> {
        let touched: Vec<(Uuid, i32)> = match record {
            MetadataRecord::Partition(r) => vec![(r.topic_id, r.partition_id)],
            MetadataRecord::PartitionChange(r) => vec![(r.topic_id, r.partition_id)],
            MetadataRecord::RemoveTopic(r) => self
                .image
                .topic(&r.topic_id)
                .map(|t| {
                    t.partitions()
                        .iter()
                        .map(|p| (r.topic_id, p.id()))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        for (t, p) in &touched {
            if let Some(old) = self.image.partition(t, *p) {
                self.index.remove(t.as_u128(), old);
            }
        }
        let res = self.image.apply(record);
        for (t, p) in &touched {
            if let Some(new) = self.image.partition(t, *p) {
                self.index.add(t.as_u128(), new);
            }
        }
        res
    }

    /// The topic and partition a key names.
    pub fn partition_at(
        &self,
        key: PartitionKey,
    ) -> Option<(&crate::image::Topic, &crate::image::Partition)> {
        let id = Uuid::from_u128(key.0);
        let t = self.image.topic(&id)?;
        Some((t, t.partition(key.1)?))
    }

    /// Emits records already in versioned form (the raw write path).
    pub(super) fn emit_versioned(
        &mut self,
        records: &[VersionedRecord],
    ) -> Result<(), ControllerError> {
        // Transactions are the pipeline's to write: a marker from outside could leave one
        // open or end someone else's.
        if let Some(r) = records.iter().find(|r| {
            matches!(
                r.record,
                MetadataRecord::BeginTransaction(_)
                    | MetadataRecord::EndTransaction
                    | MetadataRecord::AbortTransaction(_)
            )
        }) {
            return Err(ControllerError::refused(
                ErrorCode::InvalidRequest,
                format!(
                    "{} is written by the controller itself, not by clients",
                    r.record.type_name()
                ),
            ));
        }
        for r in records {
            self.stage(r.clone()).map_err(|e| {
                ControllerError::refused(ErrorCode::InvalidRequest, format!("record refused: {e}"))
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::brokers::Heartbeat;
    use crate::contract::partitions::{AlterPartition, AlterPartitionData, AlterTopic};
    use crate::contract::topics::CreateTopic;
    use crate::controller::testkit::{reg, view};
    use crate::controller::{brokers, partitions, topics};

    fn sorted_index(ix: &PartitionIndex) -> (Vec<(i32, Vec<PartitionKey>)>, Vec<PartitionKey>) {
        let mut brokers: Vec<i32> = ix.isr.keys().copied().collect();
        brokers.sort_unstable();
        (
            brokers.iter().map(|b| (*b, ix.isr_of(*b))).collect(),
            ix.leaderless(),
        )
    }

    fn assert_index_fresh(v: &View) {
        assert_eq!(
            sorted_index(&v.index),
            sorted_index(&PartitionIndex::build(&v.image)),
            "the kept index differs from one built from the image"
        );
    }

    #[test]
    fn the_partition_index_follows_every_emitted_record() {
        let mut v = view();
        let mut epochs = Vec::new();
        for (id, rack) in [(1, "a"), (2, "b"), (3, "c"), (4, "a")] {
            let e = brokers::register(&mut v, id, &reg(rack)).unwrap();
            assert_eq!(
                e as u64,
                v.next_offset() - 1,
                "epoch = offset of the record"
            );
            let hb = Heartbeat {
                broker_epoch: e,
                current_metadata_offset: e,
                want_fence: false,
                want_shutdown: false,
            };
            assert!(!brokers::heartbeat(&mut v, id, &hb).unwrap().is_fenced);
            epochs.push(e);
        }
        topics::create(
            &mut v,
            &CreateTopic {
                name: "t".into(),
                partitions: Some(20),
                replication_factor: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
        assert_index_fresh(&v);
        // Fence broker 1 by expiry: it leaves every ISR, leaderships move.
        brokers::fence_expired(&mut v, &[1]).unwrap();
        assert_index_fresh(&v);
        let t = v.image().topic_by_name("t").unwrap();
        assert!(t
            .partitions()
            .iter()
            .all(|p| !p.isr().contains(&1) && p.leader() != 1));
        // Shrink one ISR to its leader, then fence that leader: offline, ISR keeps it.
        let p = t.partitions()[0].clone();
        let topic_id = crate::record::uuid_fmt::kafka_uuid(&t.id());
        let leader = p.leader();
        let le = epochs[(leader - 1) as usize];
        let req = AlterPartition {
            broker_id: leader,
            broker_epoch: le,
            topics: vec![AlterTopic {
                topic_id,
                partitions: vec![AlterPartitionData {
                    partition: 0,
                    leader_epoch: p.leader_epoch(),
                    partition_epoch: p.partition_epoch(),
                    new_isr: vec![leader],
                    new_isr_with_epochs: None,
                    leader_recovery_state: None,
                }],
            }],
        };
        let a = partitions::alter(&mut v, &req).unwrap();
        assert_eq!(a.topics[0].partitions[0].isr, Some(vec![leader]));
        brokers::fence_expired(&mut v, &[leader]).unwrap();
        assert_index_fresh(&v);
        let p0 = v.image().topic_by_name("t").unwrap().partitions()[0].clone();
        assert_eq!((p0.leader(), p0.isr()), (-1, &[leader][..]));
        assert_eq!(v.index.leaderless().len(), 1);
        // Unfencing it (a caught-up heartbeat) elects it again.
        let hb = Heartbeat {
            broker_epoch: le,
            current_metadata_offset: i64::MAX,
            want_fence: false,
            want_shutdown: false,
        };
        brokers::heartbeat(&mut v, leader, &hb).unwrap();
        assert_index_fresh(&v);
        assert!(v.index.leaderless().is_empty());
        topics::delete(&mut v, "t").unwrap();
        assert_index_fresh(&v);
        assert!(v.index.isr.is_empty());
    }
}
