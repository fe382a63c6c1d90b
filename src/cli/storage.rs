//! `kraftd storage info DIR`: what a data directory holds, read offline and read-only, as
//! `kafka-storage info` shows a log directory: its meta.properties, its checkpoints, its
//! Raft log, and whether a kraftd process has it open. Problems are listed last, and make
//! the exit code 1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{json, Value};

use super::Output;
use crate::node::meta::{MetaProperties, METADATA_DIR, RAFT_DIR};
use crate::raft::log_store::LogStore;
use crate::record::checkpoint::list_checkpoints;
use crate::record::uuid_fmt::kafka_uuid;

/// What `storage info` found, gathered before printing.
struct Info {
    dir: PathBuf,
    lines: Vec<String>,
    json: serde_json::Map<String, Value>,
    problems: Vec<String>,
}

/// The pid of the process holding the RocksDB lock of `raft_dir`, if one does (0: a process
/// in another PID namespace, e.g. a container). RocksDB locks `LOCK` with
/// `fcntl(F_SETLK)`; `F_GETLK` names the holder without taking the lock, and works on a
/// descriptor opened read-only, so a reader without write permission is told too.
fn lock_holder(raft_dir: &Path) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(raft_dir.join("LOCK")).ok()?;
    // SAFETY: an all-zero flock is a valid value for every field.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: F_GETLK on an open descriptor with a valid flock; nothing is locked.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) };
    (rc == 0 && fl.l_type != libc::F_UNLCK as libc::c_short).then_some(fl.l_pid)
}

/// "3 min 5 s", "12 s", "2 h 4 min".
fn age(t: SystemTime) -> String {
    let s = SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

fn meta_part(info: &mut Info) {
    match MetaProperties::read(&info.dir) {
        Ok(m) => {
            info.lines.push(format!(
                "Found metadata: {{cluster.id={}, directory.id={}, node.id={}, version=1}}",
                m.cluster_id,
                kafka_uuid(&m.directory_id),
                m.node_id
            ));
            info.json.insert(
                "meta_properties".into(),
                json!({
                    "cluster_id": m.cluster_id,
                    "node_id": m.node_id,
                    "directory_id": kafka_uuid(&m.directory_id),
                }),
            );
        }
        Err(e) => info.problems.push(e.to_string()),
    }
}

fn checkpoint_part(info: &mut Info) {
    let dir = info.dir.join(METADATA_DIR);
    if !dir.is_dir() {
        info.problems
            .push(format!("{} is missing: no checkpoints", dir.display()));
        return;
    }
    match list_checkpoints(&dir) {
        Ok(list) => {
            let mut files = Vec::new();
            for (id, path) in &list {
                let md = std::fs::metadata(path).ok();
                files.push(json!({
                    "file_name": id.file_name(),
                    "end_offset": id.end_offset,
                    "epoch": id.epoch,
                    "size": md.as_ref().map(|m| m.len()),
                }));
            }
            let latest = list.iter().max_by_key(|(id, _)| (id.end_offset, id.epoch));
            match latest {
                Some((id, path)) => {
                    let written = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                    info.lines.push(format!(
                        "Checkpoints: {} in {}; latest {} (end offset {}, epoch {}{})",
                        list.len(),
                        dir.display(),
                        id.file_name(),
                        id.end_offset,
                        id.epoch,
                        written.map_or(String::new(), |t| format!(", written {} ago", age(t)))
                    ));
                }
                None => info.problems.push(format!(
                    "{} holds no checkpoint: not even the one `kraftd format` writes",
                    dir.display()
                )),
            }
            info.json.insert("checkpoints".into(), Value::Array(files));
        }
        Err(e) => info.problems.push(format!("{}: {e}", dir.display())),
    }
}

fn raft_part(info: &mut Info) {
    let dir = info.dir.join(RAFT_DIR);
    if !dir.join("CURRENT").is_file() {
        info.lines.push(format!(
            "Raft log: {} is empty (the node has not started since it was formatted)",
            dir.display()
        ));
        info.json.insert("raft_log".into(), Value::Null);
        return;
    }
    let holder = lock_holder(&dir);
    match LogStore::read_stored(&dir) {
        Ok(log) => {
            let first = log.entries.first();
            let last = log.entries.last();
            let start = log
                .purged
                .and_then(|(_, end)| end)
                .or(first.map(|e| e.base_offset));
            let end = last.map(|e| e.end_offset);
            info.lines.push(format!(
                "Raft log: {} (RocksDB){}: {} entries, offsets {}..{}; last entry {}; last known committed {}; vote {}",
                dir.display(),
                match holder {
                    Some(0) => ", in use by a process in another PID namespace (read as of now)"
                        .to_string(),
                    Some(pid) => format!(", in use by process {pid} (read as of now)"),
                    None => String::new(),
                },
                log.entries.len(),
                start.map_or("-".into(), |s| s.to_string()),
                end.map_or("-".into(), |e| e.to_string()),
                last.map_or("none".into(), |e| e.log_id.to_string()),
                log.committed.map_or("none".into(), |c| c.to_string()),
                log.vote.map_or("none".into(), |v| v.to_string()),
            ));
            info.json.insert(
                "raft_log".into(),
                json!({
                    "directory": dir.display().to_string(),
                    "entries": log.entries.len(),
                    "log_start_offset": start,
                    "log_end_offset": end,
                    "last_entry": last.map(|e| e.log_id.to_string()),
                    "committed": log.committed.map(|c| c.to_string()),
                    "vote": log.vote.map(|v| v.to_string()),
                    "in_use_by_pid": holder,
                }),
            );
        }
        Err(e) => info.problems.push(format!("{}: {e}", dir.display())),
    }
}

/// Prints what `dir` holds; returns whether problems were found.
pub fn info(dir: &Path, output: Output, out: &mut dyn Write) -> std::io::Result<bool> {
    let mut info = Info {
        dir: dir.to_path_buf(),
        lines: Vec::new(),
        json: serde_json::Map::new(),
        problems: Vec::new(),
    };
    if !dir.is_dir() {
        info.problems
            .push(format!("{} is not a directory", dir.display()));
    } else {
        meta_part(&mut info);
        checkpoint_part(&mut info);
        raft_part(&mut info);
    }
    if output == Output::Json {
        info.json
            .insert("directory".into(), json!(dir.display().to_string()));
        info.json.insert("problems".into(), json!(info.problems));
        serde_json::to_writer_pretty(&mut *out, &Value::Object(info.json))?;
        writeln!(out)?;
    } else {
        writeln!(out, "Found log directory:\n  {}\n", dir.display())?;
        for l in &info.lines {
            writeln!(out, "{l}")?;
        }
        for p in &info.problems {
            writeln!(out, "\nFound problem:\n  {p}")?;
        }
    }
    out.flush()?;
    Ok(!info.problems.is_empty())
}
