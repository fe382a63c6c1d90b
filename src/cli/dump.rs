//! `kraftd dump FILE...`: an offline decoder for checkpoints, raw batch files and Raft log
//! directories, in the spirit of Kafka's `kafka-dump-log --cluster-metadata-decoder`.
//!
//! A directory is read as the node's RocksDB Raft log (`DATA_DIR/raft`, or the data
//! directory itself), read-only, so it works on a running node: every stored entry with its
//! epoch and leader, whether this node knows it is committed, and its records.
//! A `.checkpoint` file is read with every checkpoint rule (header first, footer last, ...);
//! any other file is read as a plain sequence of v2 batches. The first problem stops the
//! file and is printed where it was found, so the operator sees what came before it.

use bytes::Bytes;
use serde_json::{json, Value};
use std::io::{self, Write};
use std::path::Path;

use super::Output;
use crate::raft::log_store::LogStore;
use crate::record::batch::{BatchHeader, BatchIter, RecordBatch};
use crate::record::checkpoint::{read_checkpoint, CheckpointItem, SnapshotId};
use crate::record::json::record_json;
use crate::record::LogRecord;

/// Dumps each file to `out`; returns how many files had an error.
pub fn run(files: &[std::path::PathBuf], output: Output, out: &mut dyn Write) -> io::Result<usize> {
    let mut failed = 0;
    let mut docs = Vec::new();
    for path in files {
        let mut doc = FileDump::new(path);
        let res = dump_file(path, &mut doc, output, out);
        if let Err(e) = res {
            failed += 1;
            if output == Output::Table {
                writeln!(out, "ERROR: {e}")?;
            }
            doc.error = Some(e);
        }
        if output == Output::Json {
            docs.push(doc.into_json());
        }
    }
    if output == Output::Json {
        serde_json::to_writer_pretty(&mut *out, &json!({ "files": docs }))?;
        writeln!(out)?;
    }
    Ok(failed)
}

/// What `--output json` collects for one file.
struct FileDump {
    file: String,
    snapshot: Option<SnapshotId>,
    batches: Vec<Value>,
    /// For a Raft log directory: its vote, commit point and purge point.
    raft: Option<Value>,
    error: Option<String>,
}

impl FileDump {
    fn new(path: &Path) -> Self {
        FileDump {
            file: path.display().to_string(),
            snapshot: None,
            batches: Vec::new(),
            raft: None,
            error: None,
        }
    }

    fn into_json(self) -> Value {
        json!({
            "file": self.file,
            "snapshot": self.snapshot.map(|s| json!({"end_offset": s.end_offset, "epoch": s.epoch})),
            "raft_log": self.raft,
            "batches": self.batches,
            "error": self.error,
        })
    }
}

fn dump_file(
    path: &Path,
    doc: &mut FileDump,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), String> {
    if path.is_dir() {
        return dump_raft_log(path, doc, output, out);
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let table = output == Output::Table;
    let w = |out: &mut dyn Write, line: String| writeln!(out, "{line}").map_err(|e| e.to_string());
    if table {
        w(out, format!("Dumping {}", path.display()))?;
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let snapshot = SnapshotId::parse_file_name(name);
    doc.snapshot = snapshot;
    let bytes = Bytes::from(bytes);
    if let Some(id) = snapshot {
        if table {
            w(
                out,
                format!("Snapshot end offset {}, epoch {}", id.end_offset, id.epoch),
            )?;
        }
        let mut position = 0usize;
        let mut current: Option<Value> = None;
        let res = read_checkpoint(bytes, Some(id.epoch), |item| {
            match item {
                CheckpointItem::Batch(b) => {
                    if let Some(done) = current.take() {
                        doc.batches.push(done);
                    }
                    if table {
                        writeln!(out, "{}", batch_line(&b.header, position))
                            .map_err(|e| e.to_string())?;
                    } else {
                        current = Some(batch_json(&b.header, position));
                    }
                    position += b.header.size();
                }
                CheckpointItem::Control(offset, c) => {
                    emit_record(out, &mut current, offset, &LogRecord::Control(c), table)?
                }
                CheckpointItem::Record(offset, r) => {
                    emit_record(out, &mut current, offset, &LogRecord::Metadata(r), table)?
                }
            }
            Ok(())
        });
        if let Some(done) = current.take() {
            doc.batches.push(done);
        }
        let summary = res.map_err(|e| e.to_string())?;
        if table {
            w(
                out,
                format!(
                    "Checkpoint valid: {} batches, {} metadata records, {} bytes",
                    summary.batches, summary.records, summary.bytes
                ),
            )?;
        }
        return Ok(());
    }
    // Not a checkpoint: a plain sequence of batches, e.g. a log segment or a fetch response.
    let mut iter = BatchIter::new(bytes);
    loop {
        let position = iter.position();
        let Some(batch) = iter.next() else { break };
        let batch = batch.map_err(|e| e.to_string())?;
        dump_batch(&batch, position, doc, table, out)?;
    }
    Ok(())
}

/// A Raft log directory (`DATA_DIR/raft`, or the data directory itself): every stored
/// entry, committed or not, with where the node's knowledge of the commit point ends.
fn dump_raft_log(
    path: &Path,
    doc: &mut FileDump,
    output: Output,
    out: &mut dyn Write,
) -> Result<(), String> {
    let nested = path.join(crate::node::meta::RAFT_DIR);
    let dir = if nested.join("CURRENT").is_file() {
        nested
    } else {
        path.to_path_buf()
    };
    let log = LogStore::read_stored(&dir).map_err(|e| e.to_string())?;
    let table = output == Output::Table;
    let committed = log.committed.map(|c| c.index);
    let known_committed = |index: u64| committed.is_some_and(|c| index <= c);
    if table {
        let w =
            |out: &mut dyn Write, line: String| writeln!(out, "{line}").map_err(|e| e.to_string());
        w(
            out,
            format!("Dumping the Raft log in {} (read-only)", dir.display()),
        )?;
        w(
            out,
            format!(
                "Vote: {}; last entry known committed: {}; last purged: {}",
                log.vote.map_or("none".into(), |v| format!(
                    "epoch {}, for node {}{}",
                    v.leader_id.term,
                    v.leader_id.node_id,
                    if v.is_committed() {
                        " (a leader was elected with it)"
                    } else {
                        " (no leader known to be elected with it)"
                    }
                )),
                log.committed.map_or("none".into(), |c| c.to_string()),
                log.purged.map_or("none".into(), |(id, end)| match end {
                    Some(e) => format!("{id} (the log starts at offset {e})"),
                    None => format!("{id}"),
                }),
            ),
        )?;
    }
    doc.raft = Some(json!({
        "directory": dir.display().to_string(),
        "vote": log.vote.map(|v| v.to_string()),
        "committed": log.committed.map(|c| c.to_string()),
        "purged": log.purged.map(|(id, _)| id.to_string()),
        "log_start_offset": log.purged.and_then(|(_, end)| end),
    }));
    let mut first_error = None;
    let mut beyond = 0usize;
    for e in &log.entries {
        let known = known_committed(e.log_id.index);
        if !known {
            beyond += 1;
        }
        if table {
            writeln!(
                out,
                "entry: {} epoch: {} leader: {} kind: {} offsets: {}..{} committed: {}",
                e.log_id.index,
                e.log_id.leader_id.term,
                e.log_id.leader_id.node_id,
                e.kind,
                e.base_offset,
                e.end_offset,
                if known { "yes" } else { "not known" }
            )
            .map_err(|e| e.to_string())?;
        }
        let before = doc.batches.len();
        let mut iter = BatchIter::new(Bytes::from(e.batch.clone()));
        loop {
            let position = iter.position();
            let Some(batch) = iter.next() else { break };
            let res = batch
                .map_err(|err| err.to_string())
                .and_then(|b| dump_batch(&b, position, doc, table, out));
            if let Err(err) = res {
                let msg = format!("entry {}: {err}", e.log_id.index);
                if table {
                    writeln!(out, "ERROR: {msg}").map_err(|e| e.to_string())?;
                }
                first_error.get_or_insert(msg);
                break;
            }
        }
        for b in &mut doc.batches[before..] {
            b["entry"] = json!({
                "index": e.log_id.index,
                "epoch": e.log_id.leader_id.term,
                "leader": e.log_id.leader_id.node_id,
                "kind": e.kind,
                "committed_known": known,
            });
        }
    }
    if table {
        writeln!(
            out,
            "Raft log: {} entries{}; {beyond} not known to be committed by this node{}",
            log.entries.len(),
            match (log.entries.first(), log.entries.last()) {
                (Some(a), Some(b)) => format!(
                    " (indexes {}..={}, offsets {}..{})",
                    a.log_id.index, b.log_id.index, a.base_offset, b.end_offset
                ),
                _ => String::new(),
            },
            // Raft's order (epoch, then index) decides which of two logs is the later one.
            log.entries
                .last()
                .map_or(String::new(), |e| format!("; last entry {}", e.log_id))
        )
        .map_err(|e| e.to_string())?;
    }
    first_error.map_or(Ok(()), Err)
}

fn dump_batch(
    batch: &RecordBatch,
    position: usize,
    doc: &mut FileDump,
    table: bool,
    out: &mut dyn Write,
) -> Result<(), String> {
    let mut current = (!table).then(|| batch_json(&batch.header, position));
    if table {
        writeln!(out, "{}", batch_line(&batch.header, position)).map_err(|e| e.to_string())?;
    }
    let mut first_error = None;
    for r in &batch.records {
        match LogRecord::decode(batch.header.is_control(), r) {
            Ok(rec) => emit_record(out, &mut current, r.offset, &rec, table)?,
            Err(e) => {
                let msg = format!("record at offset {}: {e}", r.offset);
                if table {
                    writeln!(out, "| offset: {} ERROR: {e}", r.offset)
                        .map_err(|e| e.to_string())?;
                }
                first_error.get_or_insert(msg);
            }
        }
    }
    if let Some(c) = current {
        doc.batches.push(c);
    }
    first_error.map_or(Ok(()), Err)
}

fn batch_line(h: &BatchHeader, position: usize) -> String {
    format!(
        "baseOffset: {} lastOffset: {} count: {} partitionLeaderEpoch: {} isControl: {} position: {} CreateTime: {} size: {} magic: {} crc: {} isvalid: true",
        h.base_offset,
        h.last_offset(),
        h.record_count,
        h.partition_leader_epoch,
        h.is_control(),
        position,
        h.max_timestamp,
        h.size(),
        h.magic,
        h.crc
    )
}

fn batch_json(h: &BatchHeader, position: usize) -> Value {
    json!({
        "base_offset": h.base_offset,
        "last_offset": h.last_offset(),
        "count": h.record_count,
        "epoch": h.partition_leader_epoch,
        "control": h.is_control(),
        "position": position,
        "size": h.size(),
        "max_timestamp": h.max_timestamp,
        "crc": h.crc,
        "crc_valid": true,
        "records": [],
    })
}

fn emit_record(
    out: &mut dyn Write,
    current: &mut Option<Value>,
    offset: i64,
    rec: &LogRecord,
    table: bool,
) -> Result<(), String> {
    let payload = record_json(rec).map_err(|e| e.to_string())?;
    if table {
        writeln!(out, "| offset: {offset} {}", payload).map_err(|e| e.to_string())
    } else {
        if let Some(records) = current
            .as_mut()
            .and_then(|b| b.get_mut("records"))
            .and_then(Value::as_array_mut)
        {
            let mut entry = payload;
            entry["offset"] = json!(offset);
            records.push(entry);
        }
        Ok(())
    }
}
