//! Checkpoint (snapshot) files: `<end-offset>-<epoch>.checkpoint` in Kafka's layout.
//!
//! A checkpoint is a sequence of v2 batches with offsets from 0: a control batch starting
//! with SnapshotHeaderRecord (then, for a dynamic quorum, KRaftVersionRecord and
//! VotersRecord), data batches holding the image as metadata records, and a final control
//! batch holding only SnapshotFooterRecord. It is written as `<name>.part`, fsynced, renamed
//! and the directory fsynced, so a crash leaves either the whole file or none of it.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::VotersRecord;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

use super::batch::{
    encode_batch, BatchError, BatchIter, BatchSpec, RecordBatch, MAX_BATCH_BYTES, MAX_BATCH_RECORDS,
};
use super::control::{self, ControlRecord};
use super::error::RecordError;
use super::metadata::VersionedRecord;
use super::LogRecord;

/// File name suffix of a finished checkpoint.
pub const SUFFIX: &str = ".checkpoint";
/// Suffix of a checkpoint being written.
pub const PART_SUFFIX: &str = ".checkpoint.part";
/// kraft.version written with a voter set (KIP-853 dynamic quorum).
pub const KRAFT_VERSION_DYNAMIC: i16 = 1;

/// Names a snapshot: the offset after its last record, and that record's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId {
    /// Exclusive end offset.
    pub end_offset: i64,
    /// Epoch of the last contained record.
    pub epoch: i32,
}

impl SnapshotId {
    /// `<end-offset, 20 digits>-<epoch, 20 digits>.checkpoint`.
    pub fn file_name(&self) -> String {
        format!("{:020}-{:020}{SUFFIX}", self.end_offset, self.epoch)
    }

    /// Parses a checkpoint file name; accepts Kafka's 10-digit epoch form too.
    pub fn parse_file_name(name: &str) -> Option<SnapshotId> {
        let stem = name.strip_suffix(SUFFIX)?;
        let (offset, epoch) = stem.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if offset.len() != 20
            || !(epoch.len() == 20 || epoch.len() == 10)
            || !digits(offset)
            || !digits(epoch)
        {
            return None;
        }
        Some(SnapshotId {
            end_offset: offset.parse().ok()?,
            epoch: epoch.parse().ok()?,
        })
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.end_offset, self.epoch)
    }
}

/// What a checkpoint says about itself besides the image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckpointMeta {
    /// Append time of the last record the snapshot contains (header field).
    pub last_contained_log_timestamp: i64,
    /// Tagged fields of the header that Kafka does not define (openraft's state travels here).
    pub header_tags: BTreeMap<i32, Bytes>,
    /// The voter set, written with KRaftVersionRecord(1) after the header when present.
    pub voters: Option<VotersRecord>,
}

/// Why a checkpoint could not be written or read.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A batch is corrupt (CRC, magic, truncation, ...).
    #[error("{0}")]
    Batch(#[from] BatchError),
    /// The batches are sound but do not form a checkpoint.
    #[error("batch #{index} at byte {position} (base offset {base_offset}): {detail}")]
    Structure {
        index: usize,
        position: usize,
        base_offset: i64,
        detail: String,
    },
    /// A record inside a sound batch could not be decoded.
    #[error("batch #{index} at byte {position} (base offset {base_offset}), record at offset {offset}: {source}")]
    Record {
        index: usize,
        position: usize,
        base_offset: i64,
        offset: i64,
        source: RecordError,
    },
    /// The file does not end with a footer batch.
    #[error("no SnapshotFooterRecord: the checkpoint ends after {batches} batches at byte {position} (truncated?)")]
    MissingFooter { batches: usize, position: usize },
    /// The reader's consumer refused a record (e.g. it does not fit the image).
    #[error("record at offset {offset}: {detail}")]
    Rejected { offset: i64, detail: String },
    /// The records cannot be written as a checkpoint.
    #[error("cannot encode checkpoint: {0}")]
    Encode(String),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CheckpointError + 'a {
    move |source| CheckpointError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Figures of a checkpoint that was written or read.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointSummary {
    /// Size in bytes.
    pub bytes: u64,
    /// Batches, header and footer included.
    pub batches: usize,
    /// Metadata records (control records excluded).
    pub records: u64,
    /// Header, voters and tags.
    pub meta: CheckpointMeta,
}

/// Encodes checkpoints batch by batch into any writer.
struct Encoder<W: Write> {
    out: W,
    id: SnapshotId,
    timestamp: i64,
    next_offset: i64,
    batches: usize,
    records: u64,
    bytes: u64,
    pending: Vec<(Option<Bytes>, Bytes)>,
    pending_bytes: usize,
    buf: BytesMut,
    value_buf: Vec<u8>,
}

/// Per-record bytes on top of the value, at most: the varints and attribute byte.
const RECORD_OVERHEAD_MAX: usize = 21;

impl<W: Write> Encoder<W> {
    fn new(out: W, id: SnapshotId, timestamp: i64) -> Self {
        Encoder {
            out,
            id,
            timestamp,
            next_offset: 0,
            batches: 0,
            records: 0,
            bytes: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            buf: BytesMut::new(),
            value_buf: Vec::new(),
        }
    }

    fn emit(
        &mut self,
        control: bool,
        records: &[(Option<Bytes>, Bytes)],
    ) -> Result<(), CheckpointError> {
        self.buf.clear();
        let spec = BatchSpec {
            base_offset: self.next_offset,
            epoch: self.id.epoch,
            timestamp: self.timestamp,
            control,
        };
        let size = encode_batch(&mut self.buf, spec, records)
            .map_err(|e| CheckpointError::Encode(e.to_string()))?;
        self.out
            .write_all(&self.buf)
            .map_err(|source| CheckpointError::Io {
                op: "write",
                path: PathBuf::new(),
                source,
            })?;
        self.next_offset += records.len() as i64;
        self.bytes += size as u64;
        self.batches += 1;
        Ok(())
    }

    fn control_batch(&mut self, recs: &[ControlRecord]) -> Result<(), CheckpointError> {
        let encoded = recs
            .iter()
            .map(|r| Ok((Some(r.key()), r.value()?)))
            .collect::<Result<Vec<_>, RecordError>>()
            .map_err(|e| CheckpointError::Encode(e.to_string()))?;
        self.emit(true, &encoded)
    }

    fn header(&mut self, meta: &CheckpointMeta) -> Result<(), CheckpointError> {
        let mut recs = vec![control::snapshot_header(
            meta.last_contained_log_timestamp,
            meta.header_tags.clone(),
        )];
        if let Some(voters) = &meta.voters {
            recs.push(ControlRecord::KRaftVersion(
                kafka_protocol::messages::KRaftVersionRecord::default()
                    .with_k_raft_version(KRAFT_VERSION_DYNAMIC),
            ));
            recs.push(ControlRecord::Voters(voters.clone()));
        }
        self.control_batch(&recs)
    }

    fn record(&mut self, rec: &VersionedRecord) -> Result<(), CheckpointError> {
        self.value_buf.clear();
        rec.encode(&mut self.value_buf)
            .map_err(|e| CheckpointError::Encode(e.to_string()))?;
        let cost = self.value_buf.len() + RECORD_OVERHEAD_MAX;
        if !self.pending.is_empty()
            && (self.pending.len() == MAX_BATCH_RECORDS
                || self.pending_bytes + cost > MAX_BATCH_BYTES)
        {
            self.flush_data()?;
        }
        self.pending
            .push((None, Bytes::copy_from_slice(&self.value_buf)));
        self.pending_bytes += cost;
        self.records += 1;
        Ok(())
    }

    fn flush_data(&mut self) -> Result<(), CheckpointError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.emit(false, &pending)?;
        self.pending = pending;
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    fn footer(&mut self) -> Result<(), CheckpointError> {
        self.flush_data()?;
        self.control_batch(&[control::snapshot_footer()])
    }
}

/// Encodes a whole checkpoint into `out`; returns batches, records and bytes written.
pub fn encode_checkpoint<W: Write>(
    out: W,
    id: SnapshotId,
    meta: &CheckpointMeta,
    records: impl IntoIterator<Item = VersionedRecord>,
) -> Result<CheckpointSummary, CheckpointError> {
    let mut enc = Encoder::new(out, id, meta.last_contained_log_timestamp);
    enc.header(meta)?;
    for rec in records {
        enc.record(&rec)?;
    }
    enc.footer()?;
    enc.out.flush().map_err(|source| CheckpointError::Io {
        op: "write",
        path: PathBuf::new(),
        source,
    })?;
    Ok(CheckpointSummary {
        bytes: enc.bytes,
        batches: enc.batches,
        records: enc.records,
        meta: meta.clone(),
    })
}

/// Writes `<dir>/<id>.checkpoint` durably: temp file, fsync, rename, fsync of the directory.
/// Returns the final path and the figures.
pub fn write_checkpoint(
    dir: &Path,
    id: SnapshotId,
    meta: &CheckpointMeta,
    records: impl IntoIterator<Item = VersionedRecord>,
) -> Result<(PathBuf, CheckpointSummary), CheckpointError> {
    fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    let (path, part) = paths(dir, id);
    let file = File::create(&part).map_err(io_err("create", &part))?;
    let mut writer = io::BufWriter::with_capacity(1 << 20, file);
    let summary = encode_checkpoint(&mut writer, id, meta, records).map_err(|e| match e {
        CheckpointError::Io { op, source, .. } => CheckpointError::Io {
            op,
            path: part.clone(),
            source,
        },
        other => other,
    });
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            let _ = fs::remove_file(&part);
            return Err(e);
        }
    };
    let file = writer.into_inner().map_err(|e| CheckpointError::Io {
        op: "write",
        path: part.clone(),
        source: e.into_error(),
    })?;
    publish(file, &part, &path, dir)?;
    Ok((path, summary))
}

/// Keeps a checkpoint received whole (from the leader or a peer) as `<dir>/<id>.checkpoint`,
/// as durably as [`write_checkpoint`]. The caller has checked the bytes.
pub fn write_checkpoint_bytes(
    dir: &Path,
    id: SnapshotId,
    bytes: &[u8],
) -> Result<PathBuf, CheckpointError> {
    let (path, part) = paths(dir, id);
    let mut file = File::create(&part).map_err(io_err("create", &part))?;
    file.write_all(bytes).map_err(io_err("write", &part))?;
    publish(file, &part, &path, dir)?;
    Ok(path)
}

/// The final and the temporary path of checkpoint `id` in `dir`.
fn paths(dir: &Path, id: SnapshotId) -> (PathBuf, PathBuf) {
    let name = id.file_name();
    let part = dir.join(format!("{}{}", name.trim_end_matches(SUFFIX), PART_SUFFIX));
    (dir.join(name), part)
}

/// fsync the temporary file, rename it to its final name, fsync the directory.
fn publish(file: File, part: &Path, path: &Path, dir: &Path) -> Result<(), CheckpointError> {
    file.sync_all().map_err(io_err("fsync", part))?;
    drop(file);
    fs::rename(part, path).map_err(io_err("rename", part))?;
    sync_dir(dir)
}

/// fsyncs a directory so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// One record of a checkpoint as the reader hands it out.
#[derive(Debug)]
pub enum CheckpointItem<'a> {
    /// A batch was read (before its records are handed out).
    Batch(&'a RecordBatch),
    /// A control record of the header batch (header, kraft version, voters).
    Control(i64, ControlRecord),
    /// A metadata record of a data batch.
    Record(i64, VersionedRecord),
}

/// Reads and checks a whole checkpoint held in memory, handing every batch and record to
/// `visit` in order. Checks every CRC and the magic of every batch, header first, footer
/// last, offsets contiguous from 0, record counts, every batch carrying the same epoch
/// (`expected_epoch`, from the file name, when given), and that nothing follows the footer.
/// A `visit` error stops the read.
pub fn read_checkpoint(
    buf: Bytes,
    expected_epoch: Option<i32>,
    mut visit: impl FnMut(CheckpointItem<'_>) -> Result<(), String>,
) -> Result<CheckpointSummary, CheckpointError> {
    let total = buf.len() as u64;
    let mut iter = BatchIter::new(buf);
    let mut meta = CheckpointMeta::default();
    let mut expected_offset = 0i64;
    let mut batches = 0usize;
    let mut records = 0u64;
    let mut footer_seen = false;
    let mut file_epoch = expected_epoch;
    loop {
        let position = iter.position();
        let Some(batch) = iter.next() else { break };
        let batch = batch?;
        let index = batches;
        batches += 1;
        let h = batch.header;
        let structure = |detail: String| CheckpointError::Structure {
            index,
            position,
            base_offset: h.base_offset,
            detail,
        };
        if footer_seen {
            return Err(structure(
                "data after the SnapshotFooterRecord batch".into(),
            ));
        }
        if index == 0 && !h.is_control() {
            return Err(structure(
                "first batch is a data batch: the SnapshotHeaderRecord is missing".into(),
            ));
        }
        // Every batch of a snapshot carries the snapshot's epoch. The epoch lies outside the
        // CRC, so this is what catches a damaged epoch field.
        let epoch = *file_epoch.get_or_insert(h.partition_leader_epoch);
        if h.partition_leader_epoch != epoch {
            return Err(structure(format!(
                "partition leader epoch {} differs from the snapshot's epoch {epoch}",
                h.partition_leader_epoch
            )));
        }
        if h.base_offset != expected_offset {
            return Err(structure(format!(
                "base offset should be {expected_offset}: offsets must run on from 0 without gaps"
            )));
        }
        expected_offset = h.next_offset();
        visit(CheckpointItem::Batch(&batch)).map_err(|detail| CheckpointError::Rejected {
            offset: h.base_offset,
            detail,
        })?;
        let record_err = |offset: i64, source: RecordError| CheckpointError::Record {
            index,
            position,
            base_offset: h.base_offset,
            offset,
            source,
        };
        if h.is_control() {
            let mut decoded = Vec::with_capacity(batch.records.len());
            for r in &batch.records {
                let c = ControlRecord::decode(r.key.as_deref(), r.value.as_deref())
                    .map_err(|e| record_err(r.offset, e))?;
                decoded.push((r.offset, c));
            }
            let first_type = decoded.first().map(|(_, c)| c.control_type());
            if index == 0 {
                if first_type != Some(control::SNAPSHOT_HEADER) {
                    return Err(structure(
                        "first batch does not start with a SnapshotHeaderRecord".into(),
                    ));
                }
            } else if first_type == Some(control::SNAPSHOT_FOOTER) {
                if decoded.len() != 1 {
                    return Err(structure(
                        "the footer batch must hold only the SnapshotFooterRecord".into(),
                    ));
                }
                footer_seen = true;
            } else {
                return Err(structure(format!(
                    "unexpected control batch starting with {}",
                    first_type.map(control::type_name).unwrap_or("nothing")
                )));
            }
            for (i, (offset, c)) in decoded.into_iter().enumerate() {
                match &c {
                    ControlRecord::SnapshotHeader(hdr) if i == 0 && index == 0 => {
                        meta.last_contained_log_timestamp = hdr.last_contained_log_timestamp;
                        meta.header_tags = hdr.unknown_tagged_fields.clone();
                    }
                    ControlRecord::Voters(v) if index == 0 => meta.voters = Some(v.clone()),
                    ControlRecord::KRaftVersion(_) if index == 0 => {}
                    ControlRecord::SnapshotFooter(_) if footer_seen => {}
                    other => {
                        return Err(structure(format!(
                            "{} out of place at offset {offset}",
                            other.type_name()
                        )));
                    }
                }
                visit(CheckpointItem::Control(offset, c))
                    .map_err(|detail| CheckpointError::Rejected { offset, detail })?;
            }
        } else {
            for r in &batch.records {
                let rec = match LogRecord::decode(false, r).map_err(|e| record_err(r.offset, e))? {
                    LogRecord::Metadata(rec) => rec,
                    LogRecord::Control(c) => {
                        return Err(structure(format!("{} in a data batch", c.type_name())))
                    }
                };
                records += 1;
                visit(CheckpointItem::Record(r.offset, rec)).map_err(|detail| {
                    CheckpointError::Rejected {
                        offset: r.offset,
                        detail,
                    }
                })?;
            }
        }
    }
    if batches == 0 {
        return Err(CheckpointError::Structure {
            index: 0,
            position: 0,
            base_offset: 0,
            detail: "empty file: no SnapshotHeaderRecord".into(),
        });
    }
    if !footer_seen {
        return Err(CheckpointError::MissingFooter {
            batches,
            position: total as usize,
        });
    }
    Ok(CheckpointSummary {
        bytes: total,
        batches,
        records,
        meta,
    })
}

/// The finished checkpoints in `dir`, newest (largest id) first. Ignores other files.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<(SnapshotId, PathBuf)>, CheckpointError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(CheckpointError::Io {
                op: "list",
                path: dir.to_path_buf(),
                source: e,
            })
        }
    };
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(SnapshotId::parse_file_name)
        {
            out.push((id, entry.path()));
        }
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_20_digit_and_kafka_10_digit_epochs_parse() {
        let id = SnapshotId {
            end_offset: 5_120_793,
            epoch: 2,
        };
        assert_eq!(
            id.file_name(),
            "00000000000005120793-00000000000000000002.checkpoint"
        );
        assert_eq!(SnapshotId::parse_file_name(&id.file_name()), Some(id));
        assert_eq!(
            SnapshotId::parse_file_name("00000000000005120793-0000000002.checkpoint"),
            Some(id)
        );
        for bad in [
            "00000000000005120793-00000000000000000002.checkpoint.part",
            "5120793-2.checkpoint",
            "00000000000005120793-000002.checkpoint",
            "0000000000000512079x-0000000002.checkpoint",
            "00000000000005120793.checkpoint",
        ] {
            assert_eq!(SnapshotId::parse_file_name(bad), None, "{bad}");
        }
    }
}
