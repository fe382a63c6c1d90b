//! The end checks, run after every fault is healed: every acknowledged write is in the
//! image of every controller that must hold it, and the controllers' logs are identical on
//! their common prefix.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kraftd::client::Client;
use kraftd::raft::log_store::LogStore;
use kraftd::record::batch::BatchIter;
use serde_json::Value;

use super::procs::Cluster;
use super::workload::{Answer, Outcome, Write};

/// What one node's image holds, by topic name.
#[derive(Debug, Default)]
pub struct ImageTopics {
    pub offset: i64,
    /// Where it was read, when not a node's image (at `offset`).
    pub source: Option<String>,
    pub partitions: BTreeMap<String, usize>,
    pub configs: BTreeMap<String, BTreeMap<String, String>>,
}

pub async fn image_topics(c: &Client) -> Result<ImageTopics, String> {
    let v = c.image().await.map_err(|e| e.to_string())?;
    Ok(topics_of(v.offset, &Value::Object(v.image)))
}

/// What a node's disk holds, committed or not: its newest checkpoint, then every record of
/// every entry in its Raft log after it (a transaction's records once its end is logged).
/// Without a leader nothing says which of a follower's entries were committed, so this,
/// not its image, is what an acknowledged write must be in. Read while the node runs
/// (RocksDB read-only); returns the image and the offset after the last stored entry.
pub fn durable_topics(data_dir: &Path) -> Result<(ImageTopics, u64), String> {
    use kraftd::record::{metadata::MetadataRecord, LogRecord};
    let meta_dir = data_dir.join(kraftd::node::meta::METADATA_DIR);
    let checkpoints =
        kraftd::record::checkpoint::list_checkpoints(&meta_dir).map_err(|e| e.to_string())?;
    let (mut image, from) = match checkpoints.first() {
        Some((id, path)) => {
            let (img, _) = kraftd::image::load_checkpoint_file(path).map_err(|e| e.to_string())?;
            (img, id.end_offset as u64)
        }
        None => (kraftd::image::MetadataImage::default(), 0),
    };
    let log = LogStore::read_stored(&data_dir.join(kraftd::node::meta::RAFT_DIR))
        .map_err(|e| e.to_string())?;
    let mut end = from;
    let mut txn: Option<Vec<MetadataRecord>> = None;
    for e in log.entries.iter().filter(|e| e.base_offset >= from) {
        end = e.end_offset;
        for batch in BatchIter::new(Bytes::from(e.batch.clone())) {
            let batch = batch.map_err(|err| format!("entry {}: {err}", e.log_id))?;
            for r in &batch.records {
                let rec = LogRecord::decode(batch.header.is_control(), r)
                    .map_err(|err| format!("entry {}: {err}", e.log_id))?;
                let LogRecord::Metadata(m) = rec else {
                    continue;
                };
                match m.record {
                    MetadataRecord::BeginTransaction(_) => txn = Some(Vec::new()),
                    MetadataRecord::EndTransaction => {
                        for r in txn.take().unwrap_or_default() {
                            let _ = image.apply(&r);
                        }
                    }
                    MetadataRecord::AbortTransaction(_) => txn = None,
                    r => match &mut txn {
                        Some(held) => held.push(r),
                        None => {
                            let _ = image.apply(&r);
                        }
                    },
                }
            }
        }
    }
    let v = serde_json::to_value(&image).map_err(|e| e.to_string())?;
    let mut topics = topics_of(from as i64, &v);
    topics.source = Some(format!(
        "its disk: checkpoint at offset {from}, log through offset {end}{}",
        log.committed.map_or(String::new(), |c| format!(
            ", entry {c} last known committed"
        ))
    ));
    Ok((topics, end))
}

fn topics_of(offset: i64, image: &Value) -> ImageTopics {
    let mut out = ImageTopics {
        offset,
        ..Default::default()
    };
    for t in image["topics"].as_array().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or_default().to_string();
        let n = t["partitions"].as_array().map_or(0, Vec::len);
        out.partitions.insert(name, n);
    }
    if let Some(Value::Object(m)) = image["configs"].get("topics") {
        for (name, kv) in m {
            let kv: BTreeMap<String, String> = kv
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            out.configs.insert(name.clone(), kv);
        }
    }
    out
}

/// What of `w` is missing from `img` (None: all there).
fn missing(w: &Write, img: &ImageTopics) -> Option<String> {
    match w {
        Write::CreateTopic {
            topic,
            partitions,
            configs,
        } => {
            let Some(&n) = img.partitions.get(topic) else {
                return Some("the topic does not exist".into());
            };
            let have = img.configs.get(topic);
            let lacking = configs
                .iter()
                .filter(|(k, v)| have.and_then(|h| h.get(*k)) != Some(v))
                .count();
            if n < *partitions as usize || lacking > 0 {
                return Some(format!(
                    "{n} of {partitions} partitions, {lacking} of {} configs missing",
                    configs.len()
                ));
            }
            None
        }
        Write::SetTopicConfigs { topic, set } => {
            let have = img.configs.get(topic);
            let lacking: Vec<&String> = set
                .iter()
                .filter(|(k, v)| have.and_then(|h| h.get(*k)) != Some(v))
                .map(|(k, _)| k)
                .collect();
            (!lacking.is_empty()).then(|| format!("configs {lacking:?} missing"))
        }
        Write::GrowTopic { topic, count } => match img.partitions.get(topic) {
            None => Some("the topic does not exist".into()),
            Some(&n) if n < *count as usize => Some(format!("{n} of {count} partitions")),
            Some(_) => None,
        },
    }
}

/// Every acknowledged write present in `img`; returns one line per missing write.
pub fn acknowledged_writes_missing(
    node: u64,
    img: &ImageTopics,
    outcomes: &[Outcome],
) -> Vec<String> {
    let mut out = Vec::new();
    for o in outcomes {
        if let Answer::Acked { offset } = &o.answer {
            if let Some(what) = missing(&o.write, img) {
                out.push(format!(
                    "node {node} ({}) lacks acknowledged write \"{}\" by {} via node {} at {:.1} s{}: {what}",
                    img.source
                        .clone()
                        .unwrap_or_else(|| format!("image at offset {}", img.offset)),
                    o.write.short(),
                    o.writer,
                    o.via,
                    o.at.as_secs_f64(),
                    offset.map_or_else(String::new, |x| format!(" (offset {x})"))
                ));
            }
        }
    }
    out
}

/// One batch of a node's log.
#[derive(Debug, Clone)]
pub struct LogBatch {
    pub base: i64,
    pub next: i64,
    pub epoch: i32,
    pub bytes: Bytes,
}

/// Node `c`'s log from its start to its high watermark, batch by batch (bounded).
pub async fn read_whole_log(c: &Client) -> Result<(i64, Vec<LogBatch>), String> {
    let st = c.quorum_status().await.map_err(|e| e.to_string())?;
    let mut start = st.log_start_offset;
    let hw = st.high_watermark;
    // The log start may move (a checkpoint purges the head) while we read: start over.
    'attempt: for _ in 0..5 {
        let mut out: Vec<LogBatch> = Vec::new();
        let mut next = start;
        let deadline = Instant::now() + Duration::from_secs(60);
        while next < hw {
            if Instant::now() > deadline {
                return Err(format!("{}: reading the log took over 60 s", c.base_url()));
            }
            let f = match c.fetch_log(next, Some(1 << 20), None).await {
                Ok(f) => f,
                Err(e) if e.status().map(|s| s.as_u16()) == Some(410) => {
                    let st = c.quorum_status().await.map_err(|e| e.to_string())?;
                    start = st.log_start_offset;
                    continue 'attempt;
                }
                Err(e) => return Err(e.to_string()),
            };
            if f.batches.is_empty() {
                return Err(format!(
                    "{}: empty answer at offset {next} below {hw}",
                    c.base_url()
                ));
            }
            let mut iter = BatchIter::new(f.batches.clone());
            let mut moved = false;
            loop {
                let at = iter.position();
                let Some(b) = iter.next() else { break };
                let b = b.map_err(|e| format!("{}: bad batch at {next}: {e}", c.base_url()))?;
                let h = b.header;
                if h.next_offset() <= next {
                    continue;
                }
                if h.base_offset >= hw {
                    break;
                }
                out.push(LogBatch {
                    base: h.base_offset,
                    next: h.next_offset(),
                    epoch: h.partition_leader_epoch,
                    bytes: f.batches.slice(at..iter.position()),
                });
                next = h.next_offset();
                moved = true;
            }
            if !moved {
                return Err(format!("{}: no progress at offset {next}", c.base_url()));
            }
        }
        return Ok((start, out));
    }
    Err(format!("{}: the log start kept moving", c.base_url()))
}

/// Compares the logs of every pair of nodes on their common offsets; one line per
/// divergence (the first offset where two logs differ).
pub fn logs_differ_on_common_prefix(logs: &BTreeMap<u64, (i64, Vec<LogBatch>)>) -> Vec<String> {
    let mut out = Vec::new();
    let ids: Vec<u64> = logs.keys().copied().collect();
    for (i, &a) in ids.iter().enumerate() {
        for &b in &ids[i + 1..] {
            let (sa, la) = &logs[&a];
            let (sb, lb) = &logs[&b];
            let from = (*sa).max(*sb);
            let to = la
                .last()
                .map_or(*sa, |x| x.next)
                .min(lb.last().map_or(*sb, |x| x.next));
            let pick = |l: &Vec<LogBatch>| -> Vec<LogBatch> {
                l.iter()
                    .filter(|x| x.base >= from && x.next <= to)
                    .cloned()
                    .collect()
            };
            let (pa, pb) = (pick(la), pick(lb));
            for (x, y) in pa.iter().zip(pb.iter()) {
                if x.base != y.base || x.next != y.next || x.epoch != y.epoch || x.bytes != y.bytes
                {
                    out.push(format!(
                        "logs of nodes {a} and {b} differ in [{from}, {to}): node {a} has offsets {}..{} epoch {}, node {b} has {}..{} epoch {}{}",
                        x.base, x.next, x.epoch, y.base, y.next, y.epoch,
                        if x.base == y.base && x.next == y.next && x.epoch == y.epoch { " (same offsets and epoch, other bytes)" } else { "" }
                    ));
                    break;
                }
            }
        }
    }
    out
}

/// Fetches every node's log (bounded); nodes that cannot answer are left out and named.
pub async fn fetch_logs(ids: &[u64]) -> (BTreeMap<u64, (i64, Vec<LogBatch>)>, Vec<String>) {
    let mut logs = BTreeMap::new();
    let mut skipped = Vec::new();
    for &id in ids {
        let c = Cluster::client(id, Duration::from_secs(10));
        match read_whole_log(&c).await {
            Ok(l) => {
                logs.insert(id, l);
            }
            Err(e) => skipped.push(format!("node {id}: {e}")),
        }
    }
    (logs, skipped)
}
