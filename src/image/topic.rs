//! Topics and their partitions.
//!
//! A cluster can hold millions of partitions, so a [`Partition`] is packed: replicas and ISR
//! share one allocation, and the fields that are empty on almost every partition (reassignment
//! lists, directories, ELR) live behind one optional box that is only allocated when used.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::record::metadata::{
    PartitionChangeRecord, PartitionRecord, NO_LEADER, NO_LEADER_CHANGE,
};
use crate::record::uuid_fmt;

/// Kafka's directory id of a replica that has not been placed in a log directory yet.
pub const DIRECTORY_UNASSIGNED: Uuid = Uuid::from_u64_pair(0, 1);

/// A live topic: its name, id and partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topic {
    name: String,
    #[serde(rename = "topic_id", serialize_with = "uuid_fmt::serialize")]
    id: Uuid,
    /// Sorted by partition id (usually dense, so the id is also the index).
    partitions: Vec<Partition>,
}

impl Topic {
    pub(crate) fn new(name: String, id: Uuid) -> Self {
        Topic {
            name,
            id,
            partitions: Vec::new(),
        }
    }

    pub(crate) fn with_partitions(name: String, id: Uuid, partitions: Vec<Partition>) -> Self {
        debug_assert!(partitions.windows(2).all(|w| w[0].id < w[1].id));
        Topic {
            name,
            id,
            partitions,
        }
    }

    /// The topic name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The partitions, ordered by partition id.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    /// One partition by id.
    pub fn partition(&self, partition: i32) -> Option<&Partition> {
        self.position(partition).ok().map(|i| &self.partitions[i])
    }

    fn position(&self, partition: i32) -> Result<usize, usize> {
        // Partition ids are dense in practice, so the id is normally the index.
        if let Ok(i) = usize::try_from(partition) {
            if self.partitions.get(i).is_some_and(|p| p.id == partition) {
                return Ok(i);
            }
        }
        self.partitions.binary_search_by_key(&partition, |p| p.id)
    }

    /// Inserts or replaces; appending in id order (the order snapshots use) is O(1).
    pub(crate) fn upsert(&mut self, partition: Partition) {
        if self
            .partitions
            .last()
            .is_none_or(|last| last.id < partition.id)
        {
            self.partitions.push(partition);
            return;
        }
        match self.position(partition.id) {
            Ok(i) => self.partitions[i] = partition,
            Err(i) => self.partitions.insert(i, partition),
        }
    }

    /// Replaces an existing partition (the caller found it with [`Topic::partition`]).
    pub(crate) fn replace(&mut self, partition: Partition) {
        if let Ok(i) = self.position(partition.id) {
            self.partitions[i] = partition;
        }
    }
}

/// The state of one partition, as Kafka's `PartitionRegistration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// `replicas` followed by `isr`: one allocation instead of two.
    lists: Box<[i32]>,
    /// None whenever every rarely-used field is empty, so equal states compare equal.
    extra: Option<Box<Extra>>,
    id: i32,
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    replica_count: u32,
    leader_recovery_state: i8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Extra {
    removing_replicas: Box<[i32]>,
    adding_replicas: Box<[i32]>,
    directories: Box<[Uuid]>,
    eligible_leader_replicas: Option<Box<[i32]>>,
    last_known_elr: Option<Box<[i32]>>,
}

/// Every field of a partition, borrowed; validated and packed by [`Parts::build`].
struct Parts<'a> {
    id: i32,
    replicas: &'a [i32],
    isr: &'a [i32],
    removing_replicas: &'a [i32],
    adding_replicas: &'a [i32],
    leader: i32,
    leader_recovery_state: i8,
    leader_epoch: i32,
    partition_epoch: i32,
    directories: &'a [Uuid],
    eligible_leader_replicas: Option<&'a [i32]>,
    last_known_elr: Option<&'a [i32]>,
}

impl Parts<'_> {
    /// Checks the invariants Kafka's controller keeps for every partition, then packs.
    fn build(self) -> Result<Partition, String> {
        if self.id < 0 {
            return Err(format!("partition id {} is negative", self.id));
        }
        if let Some(r) = self.replicas.iter().find(|&&r| r < 0) {
            return Err(format!("replica {r} is not a broker id"));
        }
        if let Some(r) = first_duplicate(self.replicas) {
            return Err(format!(
                "replica {r} is listed twice in replicas {:?}",
                self.replicas
            ));
        }
        if let Some(r) = first_duplicate(self.isr) {
            return Err(format!("replica {r} is listed twice in isr {:?}", self.isr));
        }
        if let Some(r) = first_missing(self.isr, self.replicas) {
            return Err(format!(
                "isr member {r} is not in replicas {:?}",
                self.replicas
            ));
        }
        if self.leader != NO_LEADER && !self.replicas.contains(&self.leader) {
            return Err(format!(
                "leader {} is neither -1 (none) nor in replicas {:?}",
                self.leader, self.replicas
            ));
        }
        if !(0..=1).contains(&self.leader_recovery_state) {
            return Err(format!(
                "leader recovery state {} is neither 0 (recovered) nor 1 (recovering)",
                self.leader_recovery_state
            ));
        }
        if !self.directories.is_empty() && self.directories.len() != self.replicas.len() {
            return Err(format!(
                "{} directories for {} replicas",
                self.directories.len(),
                self.replicas.len()
            ));
        }
        let replica_count =
            u32::try_from(self.replicas.len()).map_err(|_| "too many replicas".to_string())?;
        let mut lists = Vec::with_capacity(self.replicas.len() + self.isr.len());
        lists.extend_from_slice(self.replicas);
        lists.extend_from_slice(self.isr);
        let used = !self.removing_replicas.is_empty()
            || !self.adding_replicas.is_empty()
            || !self.directories.is_empty()
            || self.eligible_leader_replicas.is_some()
            || self.last_known_elr.is_some();
        let extra = used.then(|| {
            Box::new(Extra {
                removing_replicas: self.removing_replicas.into(),
                adding_replicas: self.adding_replicas.into(),
                directories: self.directories.into(),
                eligible_leader_replicas: self.eligible_leader_replicas.map(Into::into),
                last_known_elr: self.last_known_elr.map(Into::into),
            })
        });
        Ok(Partition {
            lists: lists.into_boxed_slice(),
            extra,
            id: self.id,
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            replica_count,
            leader_recovery_state: self.leader_recovery_state,
        })
    }
}

/// The first value that occurs twice; quadratic for the usual handful of replicas.
fn first_duplicate(xs: &[i32]) -> Option<i32> {
    if xs.len() <= 16 {
        return xs
            .iter()
            .enumerate()
            .find(|(i, x)| xs[..*i].contains(x))
            .map(|(_, &x)| x);
    }
    let mut sorted = xs.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// The first value of `xs` that is not in `of`.
fn first_missing(xs: &[i32], of: &[i32]) -> Option<i32> {
    if of.len() <= 16 {
        return xs.iter().copied().find(|x| !of.contains(x));
    }
    let mut sorted = of.to_vec();
    sorted.sort_unstable();
    xs.iter()
        .copied()
        .find(|x| sorted.binary_search(x).is_err())
}

impl Partition {
    /// A validated partition from a PartitionRecord.
    pub(crate) fn from_record(r: &PartitionRecord) -> Result<Partition, String> {
        Parts {
            id: r.partition_id,
            replicas: &r.replicas,
            isr: &r.isr,
            removing_replicas: &r.removing_replicas,
            adding_replicas: &r.adding_replicas,
            leader: r.leader,
            leader_recovery_state: r.leader_recovery_state,
            leader_epoch: r.leader_epoch,
            partition_epoch: r.partition_epoch,
            directories: &r.directories,
            eligible_leader_replicas: r.eligible_leader_replicas.as_deref(),
            last_known_elr: r.last_known_elr.as_deref(),
        }
        .build()
    }

    /// A fully replicated, led, recovered partition with nothing else set (synthetic images).
    pub(crate) fn simple(
        id: i32,
        replicas: &[i32],
        leader_epoch: i32,
        partition_epoch: i32,
    ) -> Partition {
        let mut lists = Vec::with_capacity(2 * replicas.len());
        lists.extend_from_slice(replicas);
        lists.extend_from_slice(replicas);
        Partition {
            lists: lists.into_boxed_slice(),
            extra: None,
            id,
            leader: replicas.first().copied().unwrap_or(NO_LEADER),
            leader_epoch,
            partition_epoch,
            replica_count: replicas.len() as u32,
            leader_recovery_state: 0,
        }
    }

    /// This partition after a PartitionChangeRecord, as Kafka's `PartitionRegistration.merge`:
    /// absent fields are kept, a leader change bumps the leader epoch, and every change bumps
    /// the partition epoch.
    pub(crate) fn merged(&self, c: &PartitionChangeRecord) -> Result<Partition, String> {
        if c.leader < NO_LEADER_CHANGE {
            return Err(format!(
                "leader {} is neither a broker id, -1 (none) nor -2 (unchanged)",
                c.leader
            ));
        }
        if !(-1..=1).contains(&c.leader_recovery_state) {
            return Err(format!(
                "leader recovery state {} is not -1 (unchanged), 0 or 1",
                c.leader_recovery_state
            ));
        }
        let replicas = c.replicas.as_deref().unwrap_or(self.replicas());
        // A replica keeps its directory when the replica set changes without new directories;
        // a new replica's directory is unassigned, as in Kafka.
        let carried: Vec<Uuid>;
        let directories = match (&c.directories, &c.replicas) {
            (Some(d), _) if !d.is_empty() => d.as_slice(),
            (_, Some(new)) if !self.directories().is_empty() => {
                let old = self.replicas();
                let old_dirs = self.directories();
                carried = new
                    .iter()
                    .map(|r| {
                        old.iter()
                            .position(|o| o == r)
                            .and_then(|i| old_dirs.get(i))
                            .copied()
                            .unwrap_or(DIRECTORY_UNASSIGNED)
                    })
                    .collect();
                &carried
            }
            _ => self.directories(),
        };
        let (leader, leader_epoch) = if c.leader == NO_LEADER_CHANGE {
            (self.leader, self.leader_epoch)
        } else {
            let epoch = self
                .leader_epoch
                .checked_add(1)
                .ok_or("leader epoch would overflow")?;
            (c.leader, epoch)
        };
        let partition_epoch = self
            .partition_epoch
            .checked_add(1)
            .ok_or("partition epoch would overflow")?;
        Parts {
            id: self.id,
            replicas,
            isr: c.isr.as_deref().unwrap_or(self.isr()),
            removing_replicas: c
                .removing_replicas
                .as_deref()
                .unwrap_or(self.removing_replicas()),
            adding_replicas: c
                .adding_replicas
                .as_deref()
                .unwrap_or(self.adding_replicas()),
            leader,
            leader_recovery_state: if c.leader_recovery_state == -1 {
                self.leader_recovery_state
            } else {
                c.leader_recovery_state
            },
            leader_epoch,
            partition_epoch,
            directories,
            eligible_leader_replicas: match &c.eligible_leader_replicas {
                Some(v) => Some(v.as_slice()),
                None => self.eligible_leader_replicas(),
            },
            last_known_elr: match &c.last_known_elr {
                Some(v) => Some(v.as_slice()),
                None => self.last_known_elr(),
            },
        }
        .build()
    }

    /// This partition as the PartitionRecord a snapshot holds.
    pub fn to_record(&self, topic_id: Uuid) -> PartitionRecord {
        PartitionRecord {
            partition_id: self.id,
            topic_id,
            replicas: self.replicas().to_vec(),
            isr: self.isr().to_vec(),
            removing_replicas: self.removing_replicas().to_vec(),
            adding_replicas: self.adding_replicas().to_vec(),
            leader: self.leader,
            leader_recovery_state: self.leader_recovery_state,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            directories: self.directories().to_vec(),
            eligible_leader_replicas: self.eligible_leader_replicas().map(<[i32]>::to_vec),
            last_known_elr: self.last_known_elr().map(<[i32]>::to_vec),
        }
    }

    /// The partition id.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// Assigned replicas, preferred leader first.
    pub fn replicas(&self) -> &[i32] {
        &self.lists[..self.replica_count as usize]
    }

    /// In-sync replicas.
    pub fn isr(&self) -> &[i32] {
        &self.lists[self.replica_count as usize..]
    }

    /// Replicas being removed by a reassignment.
    pub fn removing_replicas(&self) -> &[i32] {
        self.extra.as_ref().map_or(&[], |e| &e.removing_replicas)
    }

    /// Replicas being added by a reassignment.
    pub fn adding_replicas(&self) -> &[i32] {
        self.extra.as_ref().map_or(&[], |e| &e.adding_replicas)
    }

    /// The leader's broker id, or -1 when the partition is offline.
    pub fn leader(&self) -> i32 {
        self.leader
    }

    /// 0 = recovered, 1 = recovering (after an unclean election).
    pub fn leader_recovery_state(&self) -> i8 {
        self.leader_recovery_state
    }

    /// Bumped on every leader change.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// Bumped on every change.
    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    /// Log directory of each replica (same order), or empty when not tracked.
    pub fn directories(&self) -> &[Uuid] {
        self.extra.as_ref().map_or(&[], |e| &e.directories)
    }

    /// Eligible leader replicas (KIP-966), None when never set.
    pub fn eligible_leader_replicas(&self) -> Option<&[i32]> {
        self.extra
            .as_ref()
            .and_then(|e| e.eligible_leader_replicas.as_deref())
    }

    /// Last known ELR (KIP-966), None when never set.
    pub fn last_known_elr(&self) -> Option<&[i32]> {
        self.extra
            .as_ref()
            .and_then(|e| e.last_known_elr.as_deref())
    }

    /// Whether the partition has a leader (Kafka counts the others as offline).
    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }

    /// Whether a reassignment is in progress.
    pub fn is_reassigning(&self) -> bool {
        !self.removing_replicas().is_empty() || !self.adding_replicas().is_empty()
    }
}

impl Serialize for Partition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Dirs<'a>(&'a [Uuid]);
        impl Serialize for Dirs<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                uuid_fmt::serialize_vec(self.0, s)
            }
        }
        let mut st = s.serialize_struct("Partition", 12)?;
        st.serialize_field("partition", &self.id)?;
        st.serialize_field("replicas", self.replicas())?;
        st.serialize_field("isr", self.isr())?;
        st.serialize_field("removing_replicas", self.removing_replicas())?;
        st.serialize_field("adding_replicas", self.adding_replicas())?;
        st.serialize_field("leader", &self.leader)?;
        st.serialize_field("leader_recovery_state", &self.leader_recovery_state)?;
        st.serialize_field("leader_epoch", &self.leader_epoch)?;
        st.serialize_field("partition_epoch", &self.partition_epoch)?;
        st.serialize_field("directories", &Dirs(self.directories()))?;
        st.serialize_field("eligible_leader_replicas", &self.eligible_leader_replicas())?;
        st.serialize_field("last_known_elr", &self.last_known_elr())?;
        st.end()
    }
}
