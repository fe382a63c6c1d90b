//! `kraftd metadata image|ls|cat|tail`: the image (from --api, or a checkpoint file
//! offline) as a summary, as JSON or browsed by path, and the committed log followed live.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::common::{write_json, CliError, Conn, Failure};
use super::shell;
use super::table::{write_fields, Table};
use super::Output;
use crate::record::checkpoint::{CheckpointError, SnapshotId};
use crate::record::json::{type_key, type_names};

/// Longest wait of one `metadata tail` long poll.
const TAIL_POLL: Duration = Duration::from_secs(10);

/// `kraftd metadata ...`.
#[derive(Subcommand, Debug)]
pub enum MetadataCommand {
    /// The whole image (JSON), or a summary with brokers and topics (table).
    Image {
        /// Read this checkpoint file instead of asking --api.
        #[arg(long)]
        snapshot: Option<PathBuf>,
    },
    /// Browse the image by path: /, /topics, /topics/NAME, /topics/NAME/0, /brokers/1,
    /// /configs/topics/NAME.
    Ls {
        /// Path in the image.
        #[arg(default_value = "/")]
        path: String,
        /// Read this checkpoint file instead of asking --api.
        #[arg(long)]
        snapshot: Option<PathBuf>,
    },
    /// Print the node at a path as JSON (a leaf as its value).
    Cat {
        /// Path in the image.
        path: String,
        /// Read this checkpoint file instead of asking --api.
        #[arg(long)]
        snapshot: Option<PathBuf>,
    },
    /// Follow the committed log, one record a line: OFFSET EPOCH TYPE {data}.
    Tail {
        /// First offset (default: the current high watermark, i.e. new records only).
        #[arg(long)]
        from: Option<i64>,
        /// Stop after this many records (default: follow until Ctrl-C).
        #[arg(long)]
        max_records: Option<u64>,
        /// Only records of these types (repeat, or separate with commas), spelled as
        /// printed (`PARTITION_CHANGE_RECORD`, `LeaderChangeMessage`) or shorter
        /// (`partition_change`, `PartitionChange`).
        #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
        types: Vec<String>,
        /// Leave out the NoOp records an idle leader writes every 500 ms.
        #[arg(long)]
        skip_noop: bool,
    },
}

/// Which records `metadata tail` prints.
struct TailFilter {
    /// Type keys to keep (empty: all).
    keep: BTreeSet<String>,
    skip_noop: bool,
}

impl TailFilter {
    /// Checks each `--type` against the types kraftd can print.
    fn new(types: &[String], skip_noop: bool) -> Result<Self, CliError> {
        let known: BTreeSet<String> = type_names().iter().map(|n| type_key(n)).collect();
        let mut keep = BTreeSet::new();
        for t in types {
            let k = type_key(t.trim());
            if !known.contains(&k) {
                return Err(CliError::usage(format!(
                    "--type {t:?} is not a record type; the types are: {}",
                    type_names().join(", ")
                )));
            }
            keep.insert(k);
        }
        Ok(TailFilter { keep, skip_noop })
    }

    fn wants(&self, kind: &str) -> bool {
        let k = type_key(kind);
        !(self.skip_noop && k == "noop") && (self.keep.is_empty() || self.keep.contains(&k))
    }
}

/// The image as `GET /v1/metadata/image` answers it (`offset`, `epoch`, then the image's
/// fields), from --api or from a checkpoint file.
async fn load_image(conn: &Conn, snapshot: Option<PathBuf>) -> Result<Value, CliError> {
    let (offset, epoch, image) = match snapshot {
        None => {
            let v = conn.client().await?.image().await?;
            (v.offset, v.epoch, Value::Object(v.image))
        }
        Some(path) => {
            let shown = path.display().to_string();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(SnapshotId::parse_file_name);
            let image = tokio::task::spawn_blocking(move || {
                let (img, _) = crate::image::load_checkpoint_file(&path).map_err(|e| match e {
                    CheckpointError::Io { .. } => {
                        CliError::new(Failure::Failed, "IO_ERROR", e.to_string())
                    }
                    _ => {
                        CliError::new(Failure::Failed, "CORRUPT_SNAPSHOT", format!("{shown}: {e}"))
                    }
                })?;
                serde_json::to_value(&img)
                    .map_err(|e| CliError::new(Failure::Failed, "IO_ERROR", e.to_string()))
            })
            .await
            .map_err(|e| CliError::new(Failure::Failed, "IO_ERROR", e.to_string()))??;
            (
                id.map_or(-1, |i| i.end_offset),
                id.map_or(-1, |i| i.epoch),
                image,
            )
        }
    };
    let mut all = Map::new();
    all.insert("offset".into(), json!(offset));
    all.insert("epoch".into(), json!(epoch));
    if let Value::Object(fields) = shell::in_order(image) {
        all.extend(fields);
    }
    Ok(Value::Object(all))
}

/// The image's sections only (what `ls /` shows).
fn image_fields(all: &Value) -> Value {
    match all {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "offset" && *k != "epoch")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn broker_state(b: &Value) -> &'static str {
    if b.get("fenced").and_then(Value::as_bool) == Some(true) {
        "fenced"
    } else if b.get("in_controlled_shutdown").and_then(Value::as_bool) == Some(true) {
        "controlled_shutdown"
    } else {
        "active"
    }
}

fn write_image_summary(all: &Value, out: &mut dyn Write) -> Result<(), CliError> {
    let brokers = array(all, "brokers");
    let topics = array(all, "topics");
    let partitions: Vec<&Value> = topics.iter().flat_map(|t| array(t, "partitions")).collect();
    let offline = partitions
        .iter()
        .filter(|p| p.get("leader").and_then(Value::as_i64) == Some(-1))
        .count();
    let count = |state: &str| brokers.iter().filter(|b| broker_state(b) == state).count();
    let features: Vec<String> = all
        .get("features")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    write_fields(
        out,
        &[
            ("Offset", text(all, "offset")),
            ("Epoch", text(all, "epoch")),
            ("Features", features.join(",")),
            (
                "Brokers",
                format!(
                    "{} (active {}, fenced {}, controlled_shutdown {})",
                    brokers.len(),
                    count("active"),
                    count("fenced"),
                    count("controlled_shutdown")
                ),
            ),
            ("Topics", topics.len().to_string()),
            ("Partitions", partitions.len().to_string()),
            ("OfflinePartitions", offline.to_string()),
        ],
    )?;
    writeln!(out)?;
    let mut t = Table::new(&["BrokerId", "Epoch", "State", "Rack"]);
    for b in brokers {
        t.row(vec![
            text(b, "broker_id"),
            text(b, "broker_epoch"),
            broker_state(b).to_string(),
            text(b, "rack"),
        ]);
    }
    t.write(out)?;
    writeln!(out)?;
    let mut t = Table::new(&["Topic", "TopicId", "PartitionCount"]);
    for topic in topics {
        t.row(vec![
            text(topic, "name"),
            text(topic, "topic_id"),
            array(topic, "partitions").len().to_string(),
        ]);
    }
    t.write(out)?;
    Ok(())
}

/// Runs a `kraftd metadata` command.
pub async fn run(conn: &Conn, cmd: MetadataCommand, out: &mut dyn Write) -> Result<(), CliError> {
    let json_out = conn.output == Output::Json;
    match cmd {
        MetadataCommand::Image { snapshot } => {
            let all = load_image(conn, snapshot).await?;
            if json_out {
                return write_json(out, &all);
            }
            write_image_summary(&all, out)
        }
        MetadataCommand::Ls { path, snapshot } => {
            let all = load_image(conn, snapshot).await?;
            let tree = shell::tree(&image_fields(&all));
            let node = find(&tree, &path)?;
            if json_out {
                return write_json(out, node);
            }
            for line in shell::listing(node) {
                writeln!(out, "{line}")?;
            }
            Ok(())
        }
        MetadataCommand::Cat { path, snapshot } => {
            let all = load_image(conn, snapshot).await?;
            let tree = shell::tree(&image_fields(&all));
            match find(&tree, &path)? {
                Value::String(s) if !json_out => writeln!(out, "{s}")?,
                node => write_json(out, node)?,
            }
            Ok(())
        }
        MetadataCommand::Tail {
            from,
            max_records,
            types,
            skip_noop,
        } => {
            let filter = TailFilter::new(&types, skip_noop)?;
            tail(conn, from, max_records, &filter, out).await
        }
    }
}

fn find<'a>(tree: &'a Value, path: &str) -> Result<&'a Value, CliError> {
    shell::resolve(tree, path).map_err(|missing| {
        CliError::new(
            Failure::Refused,
            "PATH_NOT_FOUND",
            format!("the image has no {missing}"),
        )
    })
}

/// Follows the log with long polls; below the log start, continues from the end of the
/// snapshot the node names (its records are in the snapshot, not the log).
async fn tail(
    conn: &Conn,
    from: Option<i64>,
    max_records: Option<u64>,
    filter: &TailFilter,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let c = conn.client().await?;
    let mut next = match from {
        Some(o) => o,
        None => c.quorum_status().await?.high_watermark,
    };
    let mut printed = 0u64;
    while max_records.is_none_or(|m| printed < m) {
        let fetch = match c.follow_log_json(next, None, Some(TAIL_POLL)).await {
            Ok(f) => f,
            Err(e) if e.status() == Some(reqwest::StatusCode::GONE) => {
                let snap = e.api().and_then(|a| a.snapshot);
                match snap {
                    // Moving forward only: a snapshot at or below `next` would loop.
                    Some(s) if s.end_offset > next => {
                        eprintln!(
                            "note: offset {next} is below the log start; records before {} are in snapshot {}-{} (kraftd snapshot fetch); continuing from {}",
                            s.end_offset, s.end_offset, s.epoch, s.end_offset
                        );
                        next = s.end_offset;
                        continue;
                    }
                    _ => return Err(e.into()),
                }
            }
            // A leader change in progress (KIP-595: the new leader's high watermark is not
            // known yet): retry, as a broker does.
            Err(e) if e.code() == Some("OFFSET_NOT_AVAILABLE") => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for r in fetch.records {
            // An answer starts at the batch holding `next`.
            if r.offset < next
                || max_records.is_some_and(|m| printed >= m)
                || !filter.wants(&r.kind)
            {
                continue;
            }
            if conn.output == Output::Json {
                serde_json::to_writer(&mut *out, &r)
                    .map_err(|e| CliError::new(Failure::Failed, "IO_ERROR", e.to_string()))?;
                writeln!(out)?;
            } else {
                writeln!(out, "{} {} {} {}", r.offset, r.epoch, r.kind, r.data)?;
            }
            printed += 1;
        }
        out.flush()?;
        next = next.max(fetch.next_offset);
    }
    Ok(())
}
