//! The state machine: the metadata image, snapshotted into Kafka checkpoint files.
//!
//! A snapshot is a checkpoint file `<end-offset>-<epoch>.checkpoint` in
//! `<data-dir>/__cluster_metadata-0/`; openraft's snapshot metadata (last log id and
//! membership) rides in a tagged field of its SnapshotHeaderRecord, which Kafka's readers
//! skip. The file is what openraft streams to a lagging follower and what brokers download.
//! On start the newest checkpoint that passes every check is loaded; a damaged one is
//! reported and an older one is used.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use super::error::SnapshotIdentityError;
use super::log_store::{lock, SharedBook};
use super::{
    epoch_of, voters_record, Applied, Entry, KSnapshot, KSnapshotMeta, KStoredMembership, LogId,
    StorageError, TypeConfig, HEADER_TAG_RAFT_META,
};
use crate::image::load_checkpoint;
use crate::image::MetadataImage;
use crate::record::batch::decode_batch;
use crate::record::checkpoint::{
    list_checkpoints, write_checkpoint, write_checkpoint_bytes, CheckpointMeta, CheckpointSummary,
    SnapshotId,
};
use crate::record::{LogRecord, MetadataRecord};

type SResult<T> = Result<T, StorageError>;

/// openraft's part of a snapshot, kept in the header's tagged field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RaftSnapMeta {
    /// Last entry the snapshot contains.
    pub last_log_id: Option<LogId>,
    /// The membership in force at that entry.
    pub last_membership: KStoredMembership,
}

/// The snapshot openraft knows as current.
#[derive(Debug, Clone)]
pub struct CurrentSnapshot {
    /// openraft's metadata.
    pub meta: KSnapshotMeta,
    /// File name id.
    pub id: SnapshotId,
    /// The checkpoint file.
    pub path: PathBuf,
}

/// Where the state machine is: what brokers see as the high watermark of this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppliedPos {
    /// Offset after the last applied record.
    pub end_offset: u64,
    /// Index of the last applied entry.
    pub index: Option<u64>,
    /// Epoch of the last applied entry.
    pub epoch: i32,
}

/// The state machine's state.
#[derive(Debug)]
pub struct SmState {
    /// The committed metadata image.
    pub image: MetadataImage,
    /// Last applied entry.
    pub last_applied: Option<LogId>,
    /// Offset after the last applied record.
    pub end_offset: u64,
    /// Membership of the last applied membership entry.
    pub membership: KStoredMembership,
    /// Newest record timestamp applied.
    pub last_timestamp: i64,
    /// The current snapshot.
    pub current: Option<CurrentSnapshot>,
    /// Batch bytes applied since the current snapshot.
    pub bytes_since_snapshot: u64,
    /// When the first record after the current snapshot was applied.
    pub new_records_since: Option<Instant>,
    /// Are the feature levels (metadata.version) in the log or a snapshot of it? Not when
    /// they come only from the bootstrap checkpoint `kraftd format` wrote: the first leader
    /// then writes them, so a broker following the log from offset 0 sees them (as Kafka
    /// writes its bootstrap records).
    pub features_in_log: bool,
    /// The metadata transaction (KIP-868) replay is inside: its records wait for its end.
    pub txn: Option<OpenTxn>,
}

impl SmState {
    /// The state of a node that has applied nothing: the bootstrap image at offset 0.
    pub fn fresh() -> Self {
        SmState {
            image: MetadataImage::bootstrap(),
            last_applied: None,
            end_offset: 0,
            membership: KStoredMembership::default(),
            last_timestamp: -1,
            current: None,
            bytes_since_snapshot: 0,
            new_records_since: None,
            features_in_log: false,
            txn: None,
        }
    }
}

/// A metadata transaction whose end has not been applied yet.
#[derive(Debug)]
pub struct OpenTxn {
    /// Offset of its BeginTransactionRecord.
    pub begin_offset: u64,
    /// Its records so far, with their offsets.
    pub records: Vec<(u64, MetadataRecord)>,
    /// The last entry applied before the one that began it: a snapshot taken while the
    /// transaction is open is a snapshot of that point (the image holds none of its records).
    pub before: Option<LogId>,
    /// The offset after that entry.
    pub before_end_offset: u64,
    /// The membership at that point: a voter change applied while the transaction is open
    /// is after the point a snapshot taken now is of.
    pub membership_before: KStoredMembership,
}

/// The high watermark a node may serve (KIP-595): its applied end offset, but only once it
/// has applied an entry of the current term (a new leader's blank entry, or for a follower
/// any entry of its leader's term). Every entry that a leader of an earlier term could
/// have served lies below that entry, so what is served never goes below what an earlier
/// leader served. `None`: not known yet; a reader waits rather than see it go back.
pub fn served_high_watermark(applied: AppliedPos, current_term: u64) -> Option<u64> {
    let epoch = u64::try_from(applied.epoch).unwrap_or(0);
    (epoch >= current_term).then_some(applied.end_offset)
}

/// Checks a snapshot's id (file name: end offset and epoch) and openraft metadata against
/// the raft metadata its own SnapshotHeaderRecord carries (the batches' epoch is checked
/// against the name by the checkpoint reader). A snapshot that names another position than
/// its header is refused: installing it would put the image at the wrong entry.
pub fn check_snapshot_identity(
    meta: &KSnapshotMeta,
    id: &SnapshotId,
    summary: &CheckpointSummary,
) -> Result<(), SnapshotIdentityError> {
    let name = snapshot_id_string(id);
    let rm = raft_meta_of(summary)
        .ok_or_else(|| SnapshotIdentityError::NoRaftMetadata { name: name.clone() })?;
    if rm.last_log_id != meta.last_log_id {
        return Err(SnapshotIdentityError::LastEntry {
            name,
            sent: format!("{:?}", meta.last_log_id),
            header: format!("{:?}", rm.last_log_id),
        });
    }
    if rm.last_membership != meta.last_membership {
        return Err(SnapshotIdentityError::Membership {
            name,
            sent: format!("{:?}", meta.last_membership),
            header: format!("{:?}", rm.last_membership),
        });
    }
    let epoch = rm.last_log_id.as_ref().map(epoch_of).unwrap_or(0);
    if id.epoch != epoch {
        return Err(SnapshotIdentityError::Epoch {
            name,
            named: id.epoch,
            last: format!("{:?}", rm.last_log_id),
            epoch,
        });
    }
    // The end offset is in the name only (a checkpoint's batches count from 0, and entries
    // need not start at offset 0 after a log gap): a negative one names no position.
    if id.end_offset < 0 {
        return Err(SnapshotIdentityError::NegativeEndOffset { name });
    }
    Ok(())
}

/// State shared by the state machine, the API and the snapshot policy.
#[derive(Debug)]
pub struct SmShared {
    state: RwLock<SmState>,
    applied: watch::Sender<AppliedPos>,
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// Checkpoints kept.
    pub snapshots_to_keep: usize,
    /// Why the next checkpoint is taken (logged with it), set by whoever triggers it.
    snapshot_reason: std::sync::Mutex<Option<String>>,
}

impl SmShared {
    /// Reads the state.
    pub fn read(&self) -> RwLockReadGuard<'_, SmState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, SmState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Records why the next checkpoint is taken; it is logged when it is written.
    pub fn set_snapshot_reason(&self, reason: impl Into<String>) {
        if let Ok(mut r) = self.snapshot_reason.lock() {
            *r = Some(reason.into());
        }
    }

    /// Watches the applied position (long polls, readiness).
    pub fn subscribe(&self) -> watch::Receiver<AppliedPos> {
        self.applied.subscribe()
    }

    /// The applied position now.
    pub fn applied(&self) -> AppliedPos {
        *self.applied.borrow()
    }

    /// The high watermark this node may serve now in `current_term`
    /// ([`served_high_watermark`]).
    pub fn high_watermark(&self, current_term: u64) -> Option<u64> {
        served_high_watermark(self.applied(), current_term)
    }

    fn publish(&self, st: &SmState) {
        let pos = AppliedPos {
            end_offset: st.end_offset,
            index: st.last_applied.map(|l| l.index),
            epoch: st.last_applied.as_ref().map(epoch_of).unwrap_or(0),
        };
        self.applied.send_if_modified(|p| {
            let changed = *p != pos;
            *p = pos;
            changed
        });
    }
}

/// A snapshot as openraft hands it around: the checkpoint file and its name (end offset
/// and epoch), which openraft's own metadata does not carry.
#[derive(Debug)]
pub struct CheckpointFile {
    /// The checkpoint's id (`<end-offset>-<epoch>`).
    pub id: SnapshotId,
    /// The open file.
    pub file: tokio::fs::File,
}

/// The openraft state machine.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<SmShared>,
    book: SharedBook,
}

fn snap_err(meta: Option<&KSnapshotMeta>, e: impl std::fmt::Display) -> StorageError {
    match meta {
        Some(m) => io_other(format!("snapshot {m}: {e}")),
        None => io_other(format!("snapshot: {e}")),
    }
}

fn io_other(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

/// The openraft metadata of a checkpoint, if it has any (the bootstrap checkpoint written
/// by `kraftd format` has none).
pub fn raft_meta_of(summary: &CheckpointSummary) -> Option<RaftSnapMeta> {
    let raw = summary.meta.header_tags.get(&HEADER_TAG_RAFT_META)?;
    postcard::from_bytes(raw).ok()
}

/// A snapshot id for a checkpoint file id.
pub fn snapshot_id_string(id: &SnapshotId) -> String {
    id.file_name().trim_end_matches(".checkpoint").to_string()
}

/// Parses the id openraft carries back into a checkpoint id.
pub fn parse_snapshot_id(s: &str) -> Option<SnapshotId> {
    SnapshotId::parse_file_name(&format!("{s}.checkpoint"))
}

impl StateMachine {
    /// Opens the state machine in the checkpoint directory `dir`: loads the newest valid
    /// checkpoint (falling back past damaged ones). Returns the machine and what it found,
    /// for the node's log.
    pub fn open(
        dir: &Path,
        book: SharedBook,
        snapshots_to_keep: usize,
    ) -> Result<(Self, Vec<String>), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut notes = Vec::new();
        // Leftovers of interrupted writes or transfers.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".part") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let mut state = SmState::fresh();
        let list = list_checkpoints(dir).map_err(|e| e.to_string())?;
        let mut loaded = false;
        for (id, path) in list {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    notes.push(format!("cannot read checkpoint {}: {e}", path.display()));
                    continue;
                }
            };
            match load_checkpoint(Bytes::from(bytes), Some(id.epoch)) {
                Ok((image, summary)) => {
                    state.image = image;
                    state.end_offset = u64::try_from(id.end_offset).unwrap_or(0);
                    state.last_timestamp = summary.meta.last_contained_log_timestamp;
                    if let Some(rm) = raft_meta_of(&summary) {
                        state.features_in_log = true;
                        state.last_applied = rm.last_log_id;
                        state.membership = rm.last_membership.clone();
                        if let Some(l) = rm.last_log_id {
                            lock(&book).snapshot_anchor(l.index, state.end_offset);
                        }
                        state.current = Some(CurrentSnapshot {
                            meta: SnapshotMeta {
                                last_log_id: rm.last_log_id,
                                last_membership: rm.last_membership,
                            },
                            id,
                            path: path.clone(),
                        });
                    }
                    notes.push(format!(
                        "loaded checkpoint {} ({} records, end offset {})",
                        path.display(),
                        summary.records,
                        id.end_offset
                    ));
                    loaded = true;
                    break;
                }
                Err(e) => notes.push(format!(
                    "checkpoint {} is damaged and is not used: {e}; trying an older one",
                    path.display()
                )),
            }
        }
        if !loaded {
            notes.push("no usable checkpoint: starting from the bootstrap image".into());
        }
        let (tx, _) = watch::channel(AppliedPos::default());
        let shared = Arc::new(SmShared {
            state: RwLock::new(state),
            applied: tx,
            dir: dir.to_path_buf(),
            snapshots_to_keep: snapshots_to_keep.max(1),
            snapshot_reason: std::sync::Mutex::new(None),
        });
        shared.publish(&shared.read());
        Ok((StateMachine { shared, book }, notes))
    }

    /// The shared state.
    pub fn shared(&self) -> Arc<SmShared> {
        self.shared.clone()
    }

    /// Makes `c` the current snapshot; the size and age counters of the snapshot policy
    /// start again from it.
    fn set_current(st: &mut SmState, c: CurrentSnapshot) {
        st.current = Some(c);
        st.bytes_since_snapshot = 0;
        st.new_records_since = None;
    }

    /// After a new current snapshot (ending with entry `last` at offset `end`): tell the log
    /// store where the entry after it starts, and delete checkpoints beyond retention.
    fn anchor_and_retain(&self, last: Option<LogId>, end: u64) {
        if let Some(l) = last {
            lock(&self.book).snapshot_anchor(l.index, end);
        }
        self.retain();
    }

    /// Deletes checkpoints beyond the newest `snapshots_to_keep`, never the current one.
    fn retain(&self) {
        let current = self.shared.read().current.as_ref().map(|c| c.id);
        let Ok(list) = list_checkpoints(&self.shared.dir) else {
            return;
        };
        for (i, (id, path)) in list.into_iter().enumerate() {
            if i >= self.shared.snapshots_to_keep && Some(id) != current {
                match std::fs::remove_file(&path) {
                    Ok(()) => tracing::info!(file = %path.display(), "deleted old checkpoint"),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "cannot delete old checkpoint")
                    }
                }
            }
        }
    }

    /// Applies one committed entry to `st` (the state machine's replay; the pipeline
    /// simulation runs it too).
    pub(crate) fn apply_one(st: &mut SmState, entry: Entry) -> Applied {
        let base = st.end_offset;
        let mut rejected = Vec::new();
        let count = match entry.payload {
            EntryPayload::Blank => {
                // A new leader's first entry: a transaction its predecessor left open can no
                // longer end (Kafka's image loader drops it the same way).
                if let Some(t) = st.txn.take() {
                    tracing::warn!(
                        begin_offset = t.begin_offset,
                        records = t.records.len(),
                        "dropped a metadata transaction the previous leader did not finish"
                    );
                }
                1
            }
            EntryPayload::Membership(m) => {
                st.membership = KStoredMembership::new(Some(entry.log_id), m);
                1
            }
            EntryPayload::Normal(batch) => {
                let len = batch.bytes.len() as u64;
                let buf = Bytes::from(batch.bytes);
                match decode_batch(&buf) {
                    Ok((b, _)) => {
                        if b.header.base_offset != base as i64 {
                            tracing::error!(
                                stamped = b.header.base_offset,
                                expected = base,
                                index = entry.log_id.index,
                                "batch base offset differs from the applied offset"
                            );
                        }
                        st.last_timestamp = st.last_timestamp.max(b.header.max_timestamp);
                        let before = st.last_applied;
                        for (i, raw) in b.records.iter().enumerate() {
                            let offset = base + i as u64;
                            match LogRecord::decode(false, raw) {
                                Ok(LogRecord::Metadata(v)) => {
                                    Self::replay(st, offset, v.record, before, base, &mut rejected)
                                }
                                Ok(LogRecord::Control(_)) => {}
                                Err(e) => {
                                    rejected.push(offset);
                                    tracing::error!(offset, error = %e, "undecodable record");
                                }
                            }
                        }
                        st.bytes_since_snapshot += len;
                        if st.new_records_since.is_none() {
                            st.new_records_since = Some(Instant::now());
                        }
                        b.records.len() as u64
                    }
                    Err(e) => {
                        tracing::error!(index = entry.log_id.index, error = %e, "undecodable batch");
                        let n = super::batch_record_count(&buf).unwrap_or(1);
                        // The count comes from a header that failed its checks: bound what
                        // is listed (no honest batch holds more than Kafka's 10,000).
                        rejected.extend(base..base + n.min(10_000));
                        n
                    }
                }
            }
        };
        st.last_applied = Some(entry.log_id);
        st.end_offset = base + count;
        Applied {
            base_offset: base,
            end_offset: st.end_offset,
            rejected: u32::try_from(rejected.len()).unwrap_or(u32::MAX),
            rejected_offsets: rejected,
        }
    }

    /// Replays one metadata record: transaction markers open, end or drop a transaction;
    /// other records apply now, or at their transaction's end.
    fn replay(
        st: &mut SmState,
        offset: u64,
        record: MetadataRecord,
        before: Option<LogId>,
        entry_base: u64,
        rejected: &mut Vec<u64>,
    ) {
        match record {
            MetadataRecord::BeginTransaction(_) => {
                if let Some(t) = st.txn.take() {
                    tracing::error!(
                        offset,
                        open_since = t.begin_offset,
                        "a transaction began inside another; the open one is dropped"
                    );
                    rejected.extend(t.records.iter().map(|(o, _)| *o));
                }
                st.txn = Some(OpenTxn {
                    begin_offset: offset,
                    records: Vec::new(),
                    before,
                    before_end_offset: entry_base,
                    membership_before: st.membership.clone(),
                });
            }
            MetadataRecord::EndTransaction => match st.txn.take() {
                Some(t) => {
                    for (o, r) in t.records {
                        Self::apply_record(st, o, &r, rejected);
                    }
                }
                None => {
                    tracing::error!(offset, "EndTransactionRecord without a transaction");
                    rejected.push(offset);
                }
            },
            MetadataRecord::AbortTransaction(a) => match st.txn.take() {
                Some(t) => tracing::info!(
                    offset,
                    begin_offset = t.begin_offset,
                    reason = a.reason.as_deref().unwrap_or(""),
                    "metadata transaction aborted"
                ),
                None => {
                    tracing::error!(offset, "AbortTransactionRecord without a transaction");
                    rejected.push(offset);
                }
            },
            r => match st.txn.as_mut() {
                Some(t) => t.records.push((offset, r)),
                None => Self::apply_record(st, offset, &r, rejected),
            },
        }
    }

    fn apply_record(st: &mut SmState, offset: u64, r: &MetadataRecord, rejected: &mut Vec<u64>) {
        if matches!(r, MetadataRecord::FeatureLevel(_)) {
            st.features_in_log = true;
        }
        if let Err(e) = st.image.apply(r) {
            rejected.push(offset);
            tracing::error!(offset, error = %e, "record refused by the image");
        }
    }
}

impl StateMachine {
    /// Writes a checkpoint of the applied state (not yet current): the snapshot and the
    /// end offset it covers.
    async fn write_built(&self) -> SResult<(CurrentSnapshot, u64)> {
        let (image, last_applied, end, membership, ts) = {
            let st = self.shared.read();
            // Inside an open transaction the image holds none of its records: it is the
            // image of the point before the transaction began, so the snapshot is of that
            // point and replay after it meets the BeginTransactionRecord again.
            let (last, end, membership) = match &st.txn {
                Some(t) => (t.before, t.before_end_offset, t.membership_before.clone()),
                None => (st.last_applied, st.end_offset, st.membership.clone()),
            };
            (st.image.clone(), last, end, membership, st.last_timestamp)
        };
        let id = SnapshotId {
            end_offset: i64::try_from(end).unwrap_or(i64::MAX),
            epoch: last_applied.as_ref().map(epoch_of).unwrap_or(0),
        };
        let rm = RaftSnapMeta {
            last_log_id: last_applied,
            last_membership: membership.clone(),
        };
        let tag = postcard::to_allocvec(&rm).map_err(|e| snap_err(None, e))?;
        let meta = CheckpointMeta {
            last_contained_log_timestamp: ts,
            header_tags: BTreeMap::from([(HEADER_TAG_RAFT_META, Bytes::from(tag))]),
            voters: Some(voters_record(membership.membership())),
        };
        let dir = self.shared.dir.clone();
        let started = Instant::now();
        let (path, summary) =
            tokio::task::spawn_blocking(move || write_checkpoint(&dir, id, &meta, image.records()))
                .await
                .map_err(|e| snap_err(None, io_other(e.to_string())))?
                .map_err(|e| snap_err(None, io_other(e.to_string())))?;
        let reason = self
            .shared
            .snapshot_reason
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .unwrap_or_else(|| "requested by raft".into());
        tracing::info!(
            file = %path.display(),
            bytes = summary.bytes,
            records = summary.records,
            ms = started.elapsed().as_millis() as u64,
            reason = %reason,
            "wrote checkpoint"
        );
        let smeta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
        };
        Ok((
            CurrentSnapshot {
                meta: smeta,
                id,
                path,
            },
            end,
        ))
    }

    /// Makes a checkpoint just built current, unless a newer snapshot was installed while
    /// it was being written: then the built file is removed and the installed one stays.
    /// Returns the snapshot that is current.
    fn adopt_built(&self, built: CurrentSnapshot, end: u64) -> CurrentSnapshot {
        let mut st = self.shared.write();
        if let Some(cur) = st.current.clone() {
            if cur.meta.last_log_id > built.meta.last_log_id {
                drop(st);
                if cur.path != built.path {
                    if let Err(e) = std::fs::remove_file(&built.path) {
                        tracing::warn!(file = %built.path.display(), error = %e, "cannot delete the superseded checkpoint");
                    }
                }
                tracing::info!(
                    built = %built.id.file_name(),
                    current = %cur.id.file_name(),
                    "a newer snapshot was installed while this checkpoint was written: the newer one stays current"
                );
                return cur;
            }
        }
        Self::set_current(&mut st, built.clone());
        drop(st);
        self.anchor_and_retain(built.meta.last_log_id, end);
        built
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = CheckpointFile;

    async fn build_snapshot(&mut self) -> SResult<KSnapshot> {
        let (built, end) = self.write_built().await?;
        let cur = self.adopt_built(built, end);
        let f = tokio::fs::File::open(&cur.path)
            .await
            .map_err(|e| snap_err(Some(&cur.meta), e))?;
        Ok(Snapshot {
            meta: cur.meta,
            snapshot: CheckpointFile {
                id: cur.id,
                file: f,
            },
        })
    }
}

impl StateMachine {
    /// A nameless scratch file in the checkpoint directory for a snapshot being received
    /// from the leader (same file system as the checkpoints, gone if the node dies).
    pub async fn receiving_file(&self) -> SResult<tokio::fs::File> {
        let path = self
            .shared
            .dir
            .join(format!("receiving-{}.part", uuid::Uuid::new_v4().simple()));
        let f = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| snap_err(None, e))?;
        // The name is only needed while the handle is open.
        let _ = tokio::fs::remove_file(&path).await;
        Ok(f)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = CheckpointFile;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> SResult<(Option<LogId>, KStoredMembership)> {
        let st = self.shared.read();
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> SResult<()>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, std::io::Error>>
            + Unpin
            + OptionalSend,
    {
        // Everything openraft hands over at once is applied under one lock and published
        // once; the answers go out after the image is published.
        let batch: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        let mut answers = Vec::with_capacity(batch.len());
        {
            let mut st = self.shared.write();
            for (entry, responder) in batch {
                let applied = Self::apply_one(&mut st, entry);
                answers.push((responder, applied));
            }
            self.shared.publish(&st);
        }
        for (responder, applied) in answers {
            if let Some(r) = responder {
                r.send(applied);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &KSnapshotMeta,
        snapshot: CheckpointFile,
    ) -> SResult<()> {
        let CheckpointFile {
            id,
            file: mut snapshot,
        } = snapshot;
        // The handle may be at its end (openraft's receiver) or someone else's: rewind.
        let mut buf = Vec::new();
        snapshot
            .seek(SeekFrom::Start(0))
            .await
            .map_err(|e| snap_err(Some(meta), e))?;
        snapshot
            .read_to_end(&mut buf)
            .await
            .map_err(|e| snap_err(Some(meta), e))?;
        let bytes = Bytes::from(buf);
        let (image, summary) = load_checkpoint(bytes.clone(), Some(id.epoch))
            .map_err(|e| snap_err(Some(meta), io_other(e.to_string())))?;
        // The peer listener checks this before openraft sees a transfer; checked again here
        // so nothing installs a snapshot whose name or metadata contradicts its header.
        check_snapshot_identity(meta, &id, &summary)
            .map_err(|e| snap_err(Some(meta), io_other(e.to_string())))?;
        let dir = self.shared.dir.clone();
        let path = tokio::task::spawn_blocking(move || write_checkpoint_bytes(&dir, id, &bytes))
            .await
            .map_err(|e| snap_err(Some(meta), io_other(e.to_string())))?
            .map_err(|e| snap_err(Some(meta), io_other(e.to_string())))?;
        let end = u64::try_from(id.end_offset).unwrap_or(0);
        {
            let mut st = self.shared.write();
            st.image = image;
            st.last_applied = meta.last_log_id;
            st.end_offset = end;
            st.membership = meta.last_membership.clone();
            st.last_timestamp = summary.meta.last_contained_log_timestamp;
            st.features_in_log = true;
            st.txn = None;
            Self::set_current(
                &mut st,
                CurrentSnapshot {
                    meta: meta.clone(),
                    id,
                    path: path.clone(),
                },
            );
            self.shared.publish(&st);
        }
        tracing::info!(
            file = %path.display(),
            records = summary.records,
            reason = "the leader sent its checkpoint: this node lacked log entries the leader no longer holds",
            "installed snapshot"
        );
        self.anchor_and_retain(meta.last_log_id, end);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> SResult<Option<KSnapshot>> {
        let cur = self.shared.read().current.clone();
        match cur {
            None => Ok(None),
            Some(c) => {
                let f = tokio::fs::File::open(&c.path)
                    .await
                    .map_err(|e| snap_err(Some(&c.meta), e))?;
                Ok(Some(Snapshot {
                    meta: c.meta,
                    snapshot: CheckpointFile { id: c.id, file: f },
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::log_store::LogStore;
    use crate::raft::KMembership;
    use std::collections::BTreeSet;

    fn open(dir: &Path) -> (StateMachine, LogStore) {
        let log = LogStore::open(&dir.join("raft")).unwrap();
        let (sm, _) = StateMachine::open(&dir.join("__cluster_metadata-0"), log.book(), 3).unwrap();
        (sm, log)
    }

    fn log_id(term: u64, index: u64) -> LogId {
        crate::raft::log_id(term, 1, index)
    }

    async fn apply_blanks(sm: &mut StateMachine, term: u64, from: u64, to: u64) {
        let entries: Vec<Entry> = (from..=to)
            .map(|i| Entry {
                log_id: log_id(term, i),
                payload: EntryPayload::Blank,
            })
            .collect();
        let stream = futures_util::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
        sm.apply(stream).await.unwrap();
    }

    fn checkpoints(sm: &StateMachine) -> Vec<SnapshotId> {
        list_checkpoints(&sm.shared.dir)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    #[test]
    fn the_high_watermark_is_served_only_after_an_entry_of_the_current_term_is_applied() {
        let pos = |end, epoch| AppliedPos {
            end_offset: end,
            index: Some(end - 1),
            epoch,
        };
        // A new leader of term 4 whose applied end (1908) is below what the leader of term
        // 3 served (1910): nothing is served until its own entry is applied.
        assert_eq!(served_high_watermark(pos(1908, 3), 4), None);
        assert_eq!(served_high_watermark(pos(1911, 4), 4), Some(1911));
        // A follower: the same rule, and never above what it applied.
        assert_eq!(served_high_watermark(pos(1905, 4), 4), Some(1905));
        // Metrics may lag the state machine: an entry of a newer term is just as good.
        assert_eq!(served_high_watermark(pos(1912, 5), 4), Some(1912));
        // An empty, uninitialized node.
        assert_eq!(served_high_watermark(AppliedPos::default(), 0), Some(0));
    }

    #[tokio::test]
    async fn a_checkpoint_built_while_a_newer_snapshot_was_installed_is_discarded() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut a, _la) = open(da.path());
        let (mut b, _lb) = open(db.path());
        apply_blanks(&mut a, 1, 0, 2).await;
        apply_blanks(&mut b, 1, 0, 5).await;
        let newer = b.build_snapshot().await.unwrap();
        assert_eq!(newer.meta.last_log_id, Some(log_id(1, 5)));

        // `a` writes its checkpoint of entry 2 ...
        let (built, end) = a.write_built().await.unwrap();
        assert!(built.path.exists());
        assert_eq!(end, 3);
        // ... while the leader's newer snapshot is installed.
        a.install_snapshot(&newer.meta, newer.snapshot)
            .await
            .unwrap();
        let cur = a.adopt_built(built.clone(), end);
        assert_eq!(cur.meta.last_log_id, Some(log_id(1, 5)));
        let st_cur = a.shared.read().current.clone().unwrap();
        assert_eq!(st_cur.meta.last_log_id, Some(log_id(1, 5)));
        assert!(st_cur.path.exists());
        assert!(!built.path.exists(), "the superseded checkpoint is removed");
        assert_eq!(a.shared.applied().end_offset, 6);
        assert_eq!(
            checkpoints(&a),
            vec![SnapshotId {
                end_offset: 6,
                epoch: 1
            }]
        );

        // A build that is not overtaken becomes current as before.
        apply_blanks(&mut a, 2, 6, 7).await;
        let snap = a.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(2, 7)));
        assert_eq!(
            a.shared.read().current.as_ref().unwrap().meta.last_log_id,
            Some(log_id(2, 7))
        );
    }

    #[tokio::test]
    async fn a_snapshot_whose_id_contradicts_its_own_header_is_refused_and_changes_nothing() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut a, _la) = open(da.path());
        let (mut b, _lb) = open(db.path());
        apply_blanks(&mut a, 1, 0, 2).await;
        apply_blanks(&mut b, 1, 0, 5).await;
        let good = b.build_snapshot().await.unwrap();
        let path = b.shared.read().current.clone().unwrap().path;
        let bytes = std::fs::read(&path).unwrap();
        let (_, summary) = load_checkpoint(Bytes::from(bytes), Some(1)).unwrap();
        let good_id = good.snapshot.id;
        check_snapshot_identity(&good.meta, &good_id, &summary).unwrap();

        let mut later_entry = good.meta.clone();
        later_entry.last_log_id = Some(log_id(1, 9));
        let mut other_membership = good.meta.clone();
        other_membership.last_membership = KStoredMembership::new(
            Some(log_id(1, 3)),
            KMembership::new_with_defaults(vec![BTreeSet::from([1])], []),
        );
        let mut other_epoch = good_id;
        other_epoch.epoch += 1;
        for (what, meta, id) in [
            ("a later last entry", later_entry, good_id),
            ("another membership", other_membership, good_id),
            ("a name of another epoch", good.meta.clone(), other_epoch),
        ] {
            let e = check_snapshot_identity(&meta, &id, &summary).unwrap_err();
            eprintln!("{what}: {e}");
            let file = tokio::fs::File::open(&path).await.unwrap();
            let r = a.install_snapshot(&meta, CheckpointFile { id, file }).await;
            assert!(r.is_err(), "{what}: installed");
            assert_eq!(a.shared.applied().end_offset, 3, "{what}");
            assert_eq!(a.shared.read().last_applied, Some(log_id(1, 2)), "{what}");
            assert!(a.shared.read().current.is_none(), "{what}");
            assert!(checkpoints(&a).is_empty(), "{what}: {:?}", checkpoints(&a));
        }
        // The true one installs.
        let file = tokio::fs::File::open(&path).await.unwrap();
        a.install_snapshot(&good.meta, CheckpointFile { id: good_id, file })
            .await
            .unwrap();
        assert_eq!(a.shared.applied().end_offset, 6);
    }
}

#[cfg(test)]
mod transaction_tests {
    use super::*;
    use crate::raft::{data_batch, Batch};
    use crate::record::batch::stamp_batch;
    use crate::record::metadata::{
        BeginTransactionRecord, ConfigRecord, TopicRecord, VersionedRecord, RESOURCE_TOPIC,
    };

    fn state() -> SmState {
        SmState::fresh()
    }

    fn entry(st: &SmState, index: u64, records: &[MetadataRecord]) -> Entry {
        let values: Vec<Bytes> = records
            .iter()
            .map(|r| Bytes::from(VersionedRecord::new(r.clone()).to_bytes().unwrap()))
            .collect();
        let mut b: Batch = data_batch(&values, 0).unwrap();
        stamp_batch(&mut b.bytes, st.end_offset as i64, 1);
        Entry {
            log_id: crate::raft::log_id(1, 1, index),
            payload: EntryPayload::Normal(b),
        }
    }

    fn blank(index: u64) -> Entry {
        Entry {
            log_id: crate::raft::log_id(2, 2, index),
            payload: EntryPayload::Blank,
        }
    }

    fn begin() -> MetadataRecord {
        MetadataRecord::BeginTransaction(BeginTransactionRecord { name: None })
    }

    fn topic(name: &str) -> MetadataRecord {
        MetadataRecord::Topic(TopicRecord {
            name: name.into(),
            topic_id: uuid::Uuid::new_v4(),
        })
    }

    fn config(topic: &str) -> MetadataRecord {
        MetadataRecord::Config(ConfigRecord {
            resource_type: RESOURCE_TOPIC,
            resource_name: topic.into(),
            name: "k".into(),
            value: Some("v".into()),
        })
    }

    #[test]
    fn a_transaction_applies_only_at_its_end_and_a_snapshot_inside_it_is_of_the_point_before() {
        let mut st = state();
        let e0 = entry(&st, 0, &[MetadataRecord::NoOp]);
        let first = e0.log_id;
        StateMachine::apply_one(&mut st, e0);
        let e1 = entry(&st, 1, &[begin(), topic("t")]);
        StateMachine::apply_one(&mut st, e1);
        let e2 = entry(&st, 2, &[config("t")]);
        StateMachine::apply_one(&mut st, e2);
        assert!(
            st.image.topic_by_name("t").is_none(),
            "nothing applies before the end"
        );
        let t = st.txn.as_ref().expect("a transaction is open");
        assert_eq!(
            (t.before, t.before_end_offset, t.begin_offset),
            (Some(first), 1, 1)
        );
        let e3 = entry(&st, 3, &[MetadataRecord::EndTransaction]);
        let applied = StateMachine::apply_one(&mut st, e3);
        assert_eq!(applied.rejected_offsets, Vec::<u64>::new());
        assert!(
            st.image.topic_by_name("t").is_some(),
            "the end applies it whole"
        );
        assert!(st.txn.is_none());
        assert_eq!(st.end_offset, 5);
    }

    #[tokio::test]
    async fn a_snapshot_inside_a_transaction_records_the_membership_of_the_point_before() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::raft::log_store::LogStore::open(&dir.path().join("raft")).unwrap();
        let (sm, _) = StateMachine::open(&dir.path().join("ckpt"), log.book(), 3).unwrap();
        let m1 = crate::raft::KMembership::new_with_defaults(
            vec![std::collections::BTreeSet::from([1])],
            [],
        );
        let m2 = crate::raft::KMembership::new_with_defaults(
            vec![std::collections::BTreeSet::from([1, 2])],
            [],
        );
        let before = {
            let mut st = sm.shared.write();
            let m = Entry {
                log_id: crate::raft::log_id(1, 1, 0),
                payload: EntryPayload::Membership(m1.clone()),
            };
            StateMachine::apply_one(&mut st, m);
            let e1 = entry(&st, 1, &[begin(), topic("t")]);
            StateMachine::apply_one(&mut st, e1);
            // A voter change lands between the transaction's batches.
            let change = Entry {
                log_id: crate::raft::log_id(1, 1, 2),
                payload: EntryPayload::Membership(m2.clone()),
            };
            StateMachine::apply_one(&mut st, change);
            assert_eq!(st.membership.membership(), &m2);
            st.txn.as_ref().unwrap().before
        };
        let (built, end) = sm.write_built().await.unwrap();
        assert_eq!(built.meta.last_log_id, before);
        assert_eq!(end, 1, "the snapshot ends where the transaction began");
        assert_eq!(
            built.meta.last_membership.membership(),
            &m1,
            "the membership of that point, not the one applied after it"
        );
        assert!(built.meta.last_membership.log_id() <= &built.meta.last_log_id);
    }

    #[test]
    fn a_new_leaders_entry_drops_an_unfinished_transaction() {
        let mut st = state();
        let e0 = entry(&st, 0, &[begin(), topic("t"), config("t")]);
        StateMachine::apply_one(&mut st, e0);
        StateMachine::apply_one(&mut st, blank(1));
        assert!(st.txn.is_none());
        let e2 = entry(&st, 2, &[MetadataRecord::EndTransaction]);
        let applied = StateMachine::apply_one(&mut st, e2);
        assert!(
            st.image.topic_by_name("t").is_none(),
            "the dropped records never apply"
        );
        assert_eq!(applied.rejected_offsets, vec![4], "a stray end is reported");
    }

    #[test]
    fn a_refused_record_is_reported_with_its_offset() {
        let mut st = state();
        let e0 = entry(&st, 0, &[topic("a"), config("missing"), topic("b")]);
        let applied = StateMachine::apply_one(&mut st, e0);
        assert_eq!(applied.rejected_offsets, vec![1]);
        assert_eq!(applied.rejected, 1);
    }
}
