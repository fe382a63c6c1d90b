//! The Raft log in RocksDB.
//!
//! Column family `logs`: key = big-endian entry index, value = the entry's base offset (8
//! bytes, big-endian), its record count (4 bytes), then the postcard-encoded entry, whose
//! batch bytes are the exact v2 batch brokers receive (base offset and epoch stamped).
//! Column family `meta`: the vote, the last committed log id and the last purged log id
//! with the offset after it (the anchor that keeps base offsets right after a purge).
//!
//! Durability: a vote, an append and a truncation return (and an append calls openraft's
//! flush callback) only after a synced RocksDB write. One `append` call is one write batch,
//! so the entries openraft hands over together share one fsync (group commit).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend, RaftLogReader};
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

use super::{
    control_batch_for, epoch_of, record_count, Batch, Entry, KMembership, KVote, LogId,
    StorageError, TypeConfig,
};
use crate::record::batch::stamp_batch;

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
const K_VOTE: &[u8] = b"vote";
const K_COMMITTED: &[u8] = b"committed";
const K_PURGED: &[u8] = b"last_purged";
const PREFIX: usize = 12;

type SResult<T> = Result<T, StorageError>;

/// How an entry is kept.
#[derive(Serialize, Deserialize)]
enum StoredKind {
    Blank,
    Normal,
    Membership(KMembership),
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    log_id: LogId,
    kind: StoredKind,
    batch: Vec<u8>,
}

/// The last purged entry and the offset after it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct PurgedAnchor {
    log_id: LogId,
    /// Unknown when the purge went past the local log (after a snapshot install) and the
    /// state machine has not told us the snapshot's end offset yet.
    end_offset: Option<u64>,
}

/// Offsets the log store and the state machine share: where the next entry starts.
#[derive(Debug, Default)]
pub struct OffsetBook {
    /// Index and end offset of the newest entry appended.
    last: Option<(u64, u64)>,
    /// The last purged entry.
    purged: Option<PurgedAnchor>,
    /// End offsets of snapshots this node built, installed or loaded, by last index.
    snapshots: BTreeMap<u64, u64>,
}

impl OffsetBook {
    /// Records that the snapshot ending with entry `index` ends at `end_offset`.
    pub fn snapshot_anchor(&mut self, index: u64, end_offset: u64) {
        self.snapshots.insert(index, end_offset);
        if let Some(p) = &mut self.purged {
            if p.log_id.index == index && p.end_offset.is_none() {
                p.end_offset = Some(end_offset);
            }
        }
    }
}

/// Shared handle on the offset book.
pub type SharedBook = Arc<Mutex<OffsetBook>>;

/// Locks the book; a poisoned lock only means another thread panicked while holding it,
/// and the book holds plain numbers, so it is still usable.
pub fn lock(book: &SharedBook) -> MutexGuard<'_, OffsetBook> {
    book.lock().unwrap_or_else(|p| p.into_inner())
}

/// The RocksDB log store. Cloning shares the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    book: SharedBook,
}

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    postcard::to_allocvec(v).map_err(|e| write_err(std::io::Error::other(e)))
}

fn dec<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Result<T, StorageError> {
    postcard::from_bytes(b).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("reading the Raft log: undecodable stored value: {e}"),
        )
    })
}

fn synced() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}

fn read_err(e: impl std::fmt::Display) -> StorageError {
    std::io::Error::other(format!("reading the Raft log: {e}"))
}

fn write_err(e: impl std::fmt::Display) -> StorageError {
    std::io::Error::other(format!("writing the Raft log: {e}"))
}

fn other(msg: String) -> StorageError {
    write_err(std::io::Error::other(msg))
}

/// One stored entry's offsets, read from the value prefix.
fn prefix(v: &[u8]) -> Result<(u64, u64), StorageError> {
    if v.len() < PREFIX {
        return Err(read_err(std::io::Error::other(format!(
            "log value of {} bytes is shorter than its prefix",
            v.len()
        ))));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&v[..8]);
    let mut c = [0u8; 4];
    c.copy_from_slice(&v[8..12]);
    Ok((u64::from_be_bytes(b), u64::from(u32::from_be_bytes(c))))
}

fn index_of(k: &[u8]) -> Result<u64, StorageError> {
    let b: [u8; 8] = k
        .try_into()
        .map_err(|_| read_err(std::io::Error::other("log key is not 8 bytes")))?;
    Ok(u64::from_be_bytes(b))
}

/// A committed batch read for a broker.
#[derive(Debug, Clone)]
pub struct LogBatch {
    /// Entry index.
    pub index: u64,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Offset after the last record.
    pub end_offset: u64,
    /// The v2 batch bytes.
    pub bytes: Vec<u8>,
}

/// A Raft log directory as it is on disk, read without taking it over (`kraftd dump`, and
/// the fault tests when no leader is left to say what was committed).
#[derive(Debug)]
pub struct StoredLog {
    /// The vote this node persisted.
    pub vote: Option<KVote>,
    /// The last log id this node knew to be committed (saved without fsync: it may lag).
    pub committed: Option<LogId>,
    /// The last purged entry and the offset after it, when known.
    pub purged: Option<(LogId, Option<u64>)>,
    /// Every stored entry, in index order, committed or not.
    pub entries: Vec<StoredLogEntry>,
}

/// One entry of a [`StoredLog`].
#[derive(Debug)]
pub struct StoredLogEntry {
    pub log_id: LogId,
    /// `blank` (a new leader's no-op), `normal` (metadata records) or `membership`.
    pub kind: &'static str,
    pub base_offset: u64,
    pub end_offset: u64,
    /// The v2 batch as brokers receive it (a control batch for blank and membership).
    pub batch: Vec<u8>,
}

impl LogStore {
    /// Reads the whole log in `path` read-only. RocksDB's read-only mode takes no lock, so
    /// this works while a node runs on the directory (it then sees the log as of the open).
    pub fn read_stored(path: &Path) -> Result<StoredLog, StorageError> {
        if !path.join("CURRENT").is_file() {
            return Err(read_err(format!(
                "{} is not a Raft log directory (no RocksDB CURRENT file)",
                path.display()
            )));
        }
        let db = DB::open_cf_for_read_only(&Options::default(), path, [CF_LOGS, CF_META], false)
            .map_err(|e| read_err(format!("opening {} read-only: {e}", path.display())))?;
        let store = LogStore {
            db: Arc::new(db),
            book: SharedBook::default(),
        };
        let purged = store.get_meta::<PurgedAnchor>(K_PURGED)?;
        let mut entries = Vec::new();
        for kv in store
            .db
            .iterator_cf(store.cf(CF_LOGS)?, IteratorMode::Start)
        {
            let (k, v) = kv.map_err(read_err)?;
            let index = index_of(&k)?;
            let (base, count) = prefix(&v)?;
            let stored: StoredEntry = dec(&v[PREFIX..])?;
            if stored.log_id.index != index {
                return Err(read_err(format!(
                    "the entry stored under index {index} says it is entry {}",
                    stored.log_id
                )));
            }
            entries.push(StoredLogEntry {
                log_id: stored.log_id,
                kind: match stored.kind {
                    StoredKind::Blank => "blank",
                    StoredKind::Normal => "normal",
                    StoredKind::Membership(_) => "membership",
                },
                base_offset: base,
                end_offset: base + count,
                batch: stored.batch,
            });
        }
        Ok(StoredLog {
            vote: store.get_meta(K_VOTE)?,
            committed: store.get_meta::<Option<LogId>>(K_COMMITTED)?.flatten(),
            purged: purged.map(|p| (p.log_id, p.end_offset)),
            entries,
        })
    }
}

impl LogStore {
    /// Opens (or creates) the store in `path`.
    pub fn open(path: &Path) -> Result<Self, rocksdb::Error> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_LOGS, Options::default()),
            ColumnFamilyDescriptor::new(CF_META, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let store = LogStore {
            db: Arc::new(db),
            book: SharedBook::default(),
        };
        if let Ok(Some(p)) = store.get_meta::<PurgedAnchor>(K_PURGED) {
            lock(&store.book).purged = Some(p);
        }
        Ok(store)
    }

    /// The offset book shared with the state machine.
    pub fn book(&self) -> SharedBook {
        self.book.clone()
    }

    /// Offset after the newest appended entry (committed or not), if known.
    pub fn appended_end(&self) -> Option<u64> {
        lock(&self.book).last.map(|(_, end)| end)
    }

    fn cf(&self, name: &str) -> SResult<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| read_err(std::io::Error::other(format!("no column family {name}"))))
    }

    fn get_meta<T: for<'a> Deserialize<'a>>(&self, k: &[u8]) -> SResult<Option<T>> {
        match self.db.get_cf(self.cf(CF_META)?, k).map_err(read_err)? {
            None => Ok(None),
            Some(b) => Ok(Some(dec(&b)?)),
        }
    }

    fn put_meta_synced<T: Serialize>(&self, k: &[u8], v: &T) -> SResult<()> {
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_META)?, k, enc(v)?);
        self.db.write_opt(wb, &synced()).map_err(write_err)
    }

    /// Offsets (base, end) of the entry at `index`, if stored.
    pub fn entry_offsets(&self, index: u64) -> SResult<Option<(u64, u64)>> {
        match self
            .db
            .get_cf(self.cf(CF_LOGS)?, key(index))
            .map_err(read_err)?
        {
            None => Ok(None),
            Some(v) => {
                let (base, count) = prefix(&v)?;
                Ok(Some((base, base + count)))
            }
        }
    }

    /// Where the entry after `index` starts, from whatever knows it: this store, or the
    /// checkpoints loaded into its offset book.
    pub fn end_offset_after(&self, index: u64) -> SResult<Option<u64>> {
        {
            let b = lock(&self.book);
            if let Some((i, end)) = b.last {
                if i == index {
                    return Ok(Some(end));
                }
            }
        }
        if let Some((_, end)) = self.entry_offsets(index)? {
            return Ok(Some(end));
        }
        let b = lock(&self.book);
        if let Some(p) = b.purged {
            if p.log_id.index == index {
                if let Some(end) = p.end_offset {
                    return Ok(Some(end));
                }
            }
        }
        Ok(b.snapshots.get(&index).copied())
    }

    /// First stored index and the offset the stored log starts at (the log start offset).
    pub fn log_start(&self) -> SResult<(Option<u64>, u64)> {
        let cf = self.cf(CF_LOGS)?;
        if let Some(kv) = self.db.iterator_cf(cf, IteratorMode::Start).next() {
            let (k, v) = kv.map_err(read_err)?;
            return Ok((Some(index_of(&k)?), prefix(&v)?.0));
        }
        let b = lock(&self.book);
        let start = b
            .purged
            .and_then(|p| p.end_offset)
            .or_else(|| b.last.map(|l| l.1))
            .unwrap_or(0);
        Ok((None, start))
    }

    /// The stored entry holding `offset`, found by binary search over stored indexes.
    fn index_holding(&self, offset: u64) -> SResult<Option<u64>> {
        let cf = self.cf(CF_LOGS)?;
        let first = match self.db.iterator_cf(cf, IteratorMode::Start).next() {
            None => return Ok(None),
            Some(kv) => index_of(&kv.map_err(read_err)?.0)?,
        };
        let last = match self.db.iterator_cf(cf, IteratorMode::End).next() {
            None => return Ok(None),
            Some(kv) => index_of(&kv.map_err(read_err)?.0)?,
        };
        let (mut lo, mut hi) = (first, last);
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            let Some((base, end)) = self.entry_offsets(mid)? else {
                return Ok(None);
            };
            if offset < base {
                if mid == 0 {
                    return Ok(None);
                }
                hi = mid - 1;
            } else if offset >= end {
                lo = mid + 1;
            } else {
                return Ok(Some(mid));
            }
        }
        Ok(None)
    }

    /// Committed batches from the one holding `offset`, stopping before a batch that ends
    /// past `high_watermark` and once `max_bytes` is reached (at least one batch is given).
    pub fn read_batches(
        &self,
        offset: u64,
        max_bytes: usize,
        high_watermark: u64,
    ) -> SResult<Vec<LogBatch>> {
        let Some(start) = self.index_holding(offset)? else {
            return Ok(Vec::new());
        };
        let cf = self.cf(CF_LOGS)?;
        let mut out = Vec::new();
        let mut size = 0usize;
        for kv in self
            .db
            .iterator_cf(cf, IteratorMode::From(&key(start), Direction::Forward))
        {
            let (k, v) = kv.map_err(read_err)?;
            let (base, count) = prefix(&v)?;
            if base + count > high_watermark {
                break;
            }
            let e: StoredEntry = dec(&v[PREFIX..])?;
            if !out.is_empty() && size + e.batch.len() > max_bytes {
                break;
            }
            size += e.batch.len();
            out.push(LogBatch {
                index: index_of(&k)?,
                base_offset: base,
                end_offset: base + count,
                bytes: e.batch,
            });
            if size >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    fn to_entry(stored: StoredEntry) -> Entry {
        let payload = match stored.kind {
            StoredKind::Blank => EntryPayload::Blank,
            StoredKind::Normal => EntryPayload::Normal(Batch {
                bytes: stored.batch,
            }),
            StoredKind::Membership(m) => EntryPayload::Membership(m),
        };
        Entry {
            log_id: stored.log_id,
            payload,
        }
    }

    /// Encodes `entry` for storage with its base offset; returns the value and its end
    /// offset.
    fn stored_value(entry: Entry, base: u64) -> SResult<(Vec<u8>, u64)> {
        let count = record_count(&entry.payload).map_err(|e| other(e.to_string()))?;
        let epoch = epoch_of(&entry.log_id);
        let control = control_batch_for(&entry).map_err(other)?;
        let (kind, mut batch) = match entry.payload {
            EntryPayload::Blank => (StoredKind::Blank, control.unwrap_or_default()),
            EntryPayload::Normal(b) => (StoredKind::Normal, b.bytes),
            EntryPayload::Membership(m) => (StoredKind::Membership(m), control.unwrap_or_default()),
        };
        let base_i64 =
            i64::try_from(base).map_err(|_| other(format!("offset {base} overflows")))?;
        stamp_batch(&mut batch, base_i64, epoch);
        let stored = StoredEntry {
            log_id: entry.log_id,
            kind,
            batch,
        };
        let count32 = u32::try_from(count).map_err(|_| other(format!("{count} records")))?;
        let mut value = Vec::with_capacity(PREFIX + stored.batch.len() + 64);
        value.extend_from_slice(&base.to_be_bytes());
        value.extend_from_slice(&count32.to_be_bytes());
        value.extend_from_slice(&enc(&stored)?);
        Ok((value, base + count))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> SResult<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let cf = self.cf(CF_LOGS)?;
        let mut out = Vec::new();
        for kv in self
            .db
            .iterator_cf(cf, IteratorMode::From(&key(start), Direction::Forward))
        {
            let (k, v) = kv.map_err(read_err)?;
            if !range.contains(&index_of(&k)?) {
                break;
            }
            out.push(Self::to_entry(dec(&v[PREFIX.min(v.len())..])?));
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> SResult<Option<KVote>> {
        self.get_meta(K_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> SResult<LogState<TypeConfig>> {
        let cf = self.cf(CF_LOGS)?;
        let last = match self.db.iterator_cf(cf, IteratorMode::End).next() {
            None => None,
            Some(kv) => {
                let (_, v) = kv.map_err(read_err)?;
                Some(dec::<StoredEntry>(&v[PREFIX.min(v.len())..])?.log_id)
            }
        };
        let purged = lock(&self.book).purged.map(|p| p.log_id);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &KVote) -> SResult<()> {
        self.put_meta_synced(K_VOTE, vote)
            .map_err(|e| std::io::Error::other(format!("saving the vote {vote}: {e}")))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> SResult<()> {
        // Not synced: losing it only means replaying less at start; the leader re-sends it.
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_META)?, K_COMMITTED, enc(&committed)?);
        self.db.write(wb).map_err(write_err)
    }

    async fn read_committed(&mut self) -> SResult<Option<LogId>> {
        Ok(self.get_meta::<Option<LogId>>(K_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> SResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.cf(CF_LOGS)?;
        let mut wb = WriteBatch::default();
        let mut last: Option<(u64, u64)> = None;
        for e in entries {
            let index = e.log_id.index;
            let base = match (last, index.checked_sub(1)) {
                (Some((i, end)), Some(prev)) if i == prev => end,
                (_, None) => 0,
                (_, Some(prev)) => match self.end_offset_after(prev)? {
                    Some(end) => end,
                    None => {
                        tracing::warn!(
                            index,
                            "no offset known for the entry before; starting at offset 0"
                        );
                        0
                    }
                },
            };
            let (value, end) = Self::stored_value(e, base)?;
            wb.put_cf(cf, key(index), value);
            last = Some((index, end));
        }
        // One synced write: readable on return, durable before the callback fires.
        match self.db.write_opt(wb, &synced()) {
            Ok(()) => {
                if last.is_some() {
                    lock(&self.book).last = last;
                }
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> SResult<()> {
        // Everything after `last_log_id` goes (everything when it is None).
        let from = last_log_id.map(|l| l.index + 1).unwrap_or(0);
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(self.cf(CF_LOGS)?, key(from), key(u64::MAX));
        // delete_range's end is exclusive: the entry at u64::MAX, if one ever existed.
        wb.delete_cf(self.cf(CF_LOGS)?, key(u64::MAX));
        self.db.write_opt(wb, &synced()).map_err(write_err)?;
        let mut b = lock(&self.book);
        if matches!(b.last, Some((i, _)) if i >= from) {
            b.last = None;
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> SResult<()> {
        let end_offset = self.end_offset_after(log_id.index)?;
        let anchor = PurgedAnchor { log_id, end_offset };
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_META)?, K_PURGED, enc(&anchor)?);
        wb.delete_range_cf(self.cf(CF_LOGS)?, key(0), key(log_id.index + 1));
        self.db.write_opt(wb, &synced()).map_err(write_err)?;
        let mut b = lock(&self.book);
        b.purged = Some(anchor);
        if matches!(b.last, Some((i, _)) if i < log_id.index) {
            b.last = end_offset.map(|e| (log_id.index, e));
        }
        b.snapshots = b.snapshots.split_off(&log_id.index);
        Ok(())
    }
}
