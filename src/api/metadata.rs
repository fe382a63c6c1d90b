//! Following the metadata log: `/v1/metadata/{log,snapshots,image}`.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use openraft::async_runtime::WatchReceiver;
use serde::Deserialize;
use serde_json::Value;

use super::{forward, ApiError};
use crate::contract::metadata::{
    Image, LogJson, LogRecord as JsonRecord, SnapshotFile, SnapshotRef, RECORD_BATCHES,
};
use crate::contract::{int64, ErrorCode};
use crate::node::handle::Node;
use crate::record::batch::{decode_batch, BatchIter};
use crate::record::checkpoint::{list_checkpoints, SnapshotId};
use crate::record::control::ControlRecord;
use crate::record::json::record_parts;
use crate::record::LogRecord;

/// Default and largest `max_bytes`.
const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
const MAX_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Longest long poll.
const MAX_WAIT_MS: u64 = 30_000;

pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/metadata/log", get(log))
        .route("/v1/metadata/snapshots", get(snapshots))
        .route("/v1/metadata/snapshots/{id}", get(snapshot_file))
        .route("/v1/metadata/image", get(image))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    offset: u64,
    max_bytes: Option<usize>,
    max_wait_ms: Option<u64>,
}

fn snapshot_gone(node: &Node, offset: u64, log_start: u64) -> ApiError {
    let cur = node.sm().read().current.as_ref().map(|c| c.id);
    let newest = cur.or_else(|| {
        list_checkpoints(&node.sm().dir)
            .ok()
            .and_then(|l| l.first().map(|(id, _)| *id))
    });
    let mut e = ApiError::new(
        StatusCode::GONE,
        ErrorCode::OffsetOutOfRange,
        format!(
            "offset {offset} is below the log start offset {log_start}: load the snapshot, then \
             follow the log from its end offset"
        ),
    );
    e.snapshot = newest.map(|id| SnapshotRef {
        end_offset: id.end_offset,
        epoch: id.epoch,
    });
    e
}

async fn log(
    State(node): State<Arc<Node>>,
    q: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid(format!("query: {e}")))?;
    let json_out = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let max_bytes = q
        .max_bytes
        .unwrap_or(DEFAULT_MAX_BYTES)
        .clamp(1, MAX_MAX_BYTES);
    let wait = Duration::from_millis(q.max_wait_ms.unwrap_or(0).min(MAX_WAIT_MS));
    let hw = wait_high_watermark(&node, q.offset, wait).await?;
    let log_start = node
        .log()
        .log_start()
        .map_err(|e| ApiError::internal(e.to_string()))?
        .1;
    if q.offset < log_start {
        return Err(snapshot_gone(&node, q.offset, log_start));
    }
    let batches = if q.offset < hw {
        let store = node.log().clone();
        let offset = q.offset;
        tokio::task::spawn_blocking(move || store.read_batches(offset, max_bytes, hw))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(e.to_string()))?
    } else {
        Vec::new()
    };
    if batches.is_empty() && q.offset < hw {
        // Purged between the checks.
        let log_start = node.log().log_start().map(|s| s.1).unwrap_or(q.offset + 1);
        return Err(snapshot_gone(&node, q.offset, log_start));
    }
    let next = batches.last().map(|b| b.end_offset).unwrap_or(q.offset);
    let m = node.raft().metrics().borrow_watched().clone();
    let mut resp = if json_out {
        let mut records = Vec::new();
        for b in batches {
            let buf = Bytes::from(b.bytes);
            let (batch, _) =
                decode_batch(&buf).map_err(|e| ApiError::internal(format!("stored batch: {e}")))?;
            let control = batch.header.is_control();
            for raw in &batch.records {
                let rec = LogRecord::decode(control, raw)
                    .map_err(|e| ApiError::internal(format!("stored record: {e}")))?;
                let (kind, version, data) =
                    record_parts(&rec).map_err(|e| ApiError::internal(e.to_string()))?;
                records.push(JsonRecord {
                    offset: raw.offset,
                    epoch: batch.header.partition_leader_epoch,
                    kind,
                    version,
                    data,
                });
            }
        }
        Json(LogJson {
            records,
            high_watermark: int64(hw),
            next_offset: int64(next),
        })
        .into_response()
    } else {
        let mut body = Vec::with_capacity(batches.iter().map(|b| b.bytes.len()).sum());
        for b in &batches {
            body.extend_from_slice(&b.bytes);
        }
        ([(header::CONTENT_TYPE, RECORD_BATCHES)], body).into_response()
    };
    let h = resp.headers_mut();
    h.insert("kraft-high-watermark", HeaderValue::from(hw));
    h.insert("kraft-log-start-offset", HeaderValue::from(log_start));
    h.insert(
        "kraft-leader-id",
        HeaderValue::from(m.current_leader.map(|l| l as i64).unwrap_or(-1)),
    );
    h.insert("kraft-leader-epoch", HeaderValue::from(m.current_term));
    h.insert("kraft-next-offset", HeaderValue::from(next));
    Ok(resp)
}

/// Least time a fetch waits for this node's high watermark to be known (after a leader
/// change) or to reach an offset that is in its log, even without `max_wait_ms`: a new
/// leader's first entry commits within a round trip, and an answer then beats an error.
const HW_GRACE: Duration = Duration::from_millis(500);

/// What a fetch at `offset` may be answered with now, given this node's served high
/// watermark `hw` (None: not known in this term yet) and the end offset of its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchGate {
    /// Answer with batches below this high watermark.
    Serve(u64),
    /// Nothing new at `offset` yet (it is the high watermark): a long poll waits.
    AtEnd(u64),
    /// The offset was never committed as far as anyone could have served: 416.
    Beyond(u64),
    /// Not known yet whether the offset is committed (a new leader has not applied an
    /// entry of its term, or this node lags): wait, do not say 416.
    Unknown,
}

fn fetch_gate(offset: u64, hw: Option<u64>, log_end: u64) -> FetchGate {
    match hw {
        Some(h) if offset < h => FetchGate::Serve(h),
        Some(h) if offset == h => FetchGate::AtEnd(h),
        // Every entry anyone could have served is in a leader's log (and below its high
        // watermark once it is known); beyond this node's log it is beyond the commit.
        Some(h) if offset > log_end => FetchGate::Beyond(h),
        _ => FetchGate::Unknown,
    }
}

/// Waits, up to `wait` (at least [`HW_GRACE`] while the high watermark is unknown or
/// below an offset in this node's log), until a fetch at `offset` can be answered; returns
/// the high watermark to serve. KIP-595: the high watermark served never goes below what an
/// earlier leader served, so a new leader serves nothing until an entry of its own term is
/// applied, and an offset between its applied end and its log end waits instead of 416.
async fn wait_high_watermark(node: &Node, offset: u64, wait: Duration) -> Result<u64, ApiError> {
    let started = tokio::time::Instant::now();
    let mut rx = node.sm().subscribe();
    let mut metrics = node.raft().metrics();
    loop {
        let (term, last_index) = {
            let m = metrics.borrow_and_update();
            (m.current_term, m.last_log_index)
        };
        let applied = *rx.borrow_and_update();
        let hw = crate::raft::state_machine::served_high_watermark(applied, term);
        // The log's end matters only for an offset above the high watermark (or while it
        // is unknown); a steady long poll at the high watermark skips the look-up.
        let log_end = match hw {
            Some(h) if offset <= h => h,
            _ => node.end_of(last_index).unwrap_or(applied.end_offset),
        };
        let gate = fetch_gate(offset, hw, log_end.max(applied.end_offset));
        let deadline = started
            + match gate {
                FetchGate::Unknown => wait.max(HW_GRACE),
                _ => wait,
            };
        let timed_out = tokio::time::Instant::now() >= deadline;
        match gate {
            FetchGate::Serve(h) => return Ok(h),
            FetchGate::AtEnd(h) if timed_out => return Ok(h),
            FetchGate::Beyond(h) => {
                return Err(ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    ErrorCode::OffsetOutOfRange,
                    format!("offset {offset} is beyond the high watermark {h}"),
                ))
            }
            FetchGate::Unknown if timed_out => {
                let why = match hw {
                    None => format!(
                        "this node has not yet applied an entry of epoch {term}, so its high \
                         watermark is not known (a leader change is in progress)"
                    ),
                    Some(h) => format!(
                        "offset {offset} is in this node's log but not yet known to be \
                         committed here (high watermark {h})"
                    ),
                };
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::OffsetNotAvailable,
                    format!("{why}; retry"),
                ));
            }
            FetchGate::AtEnd(_) | FetchGate::Unknown => {}
        }
        // Waiting at the high watermark, only a newly applied entry can change the answer
        // (the term is read afresh then); Raft's metrics, which change with every
        // replication round, are watched only while the high watermark is unknown.
        let unknown = gate == FetchGate::Unknown;
        tokio::select! {
            r = rx.changed() => if r.is_err() { tokio::time::sleep_until(deadline).await },
            r = metrics.changed(), if unknown => {
                if r.is_err() { tokio::time::sleep_until(deadline).await }
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// The SnapshotHeaderRecord's timestamp, from the first batch alone.
fn header_timestamp(path: &std::path::Path) -> Option<i64> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 12];
    f.read_exact(&mut head).ok()?;
    let len = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    let len = usize::try_from(len).ok().filter(|l| *l <= 1 << 20)?;
    let mut buf = head.to_vec();
    buf.resize(12 + len, 0);
    f.read_exact(&mut buf[12..]).ok()?;
    let batch = BatchIter::new(Bytes::from(buf)).next()?.ok()?;
    let raw = batch.records.first()?;
    match ControlRecord::decode(raw.key.as_deref(), raw.value.as_deref()).ok()? {
        ControlRecord::SnapshotHeader(h) => Some(h.last_contained_log_timestamp),
        _ => None,
    }
}

async fn snapshots(State(node): State<Arc<Node>>) -> Result<Json<Vec<SnapshotFile>>, ApiError> {
    let dir = node.sm().dir.clone();
    let list = tokio::task::spawn_blocking(move || -> Result<Vec<SnapshotFile>, String> {
        let mut out = Vec::new();
        for (id, path) in list_checkpoints(&dir).map_err(|e| e.to_string())? {
            let Ok(md) = std::fs::metadata(&path) else {
                continue;
            };
            out.push(SnapshotFile {
                end_offset: id.end_offset,
                epoch: id.epoch,
                file_name: id.file_name(),
                size: md.len(),
                last_contained_log_timestamp: header_timestamp(&path),
            });
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(ApiError::internal)?;
    Ok(Json(list))
}

fn parse_id(s: &str) -> Option<SnapshotId> {
    let s = s.trim_end_matches(".checkpoint");
    let (a, b) = s.split_once('-')?;
    if a.is_empty() || b.is_empty() || !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(SnapshotId {
        end_offset: a.parse().ok()?,
        epoch: b.parse().ok()?,
    })
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` against a file of `size` bytes: the inclusive range,
/// or None when unsatisfiable.
fn parse_range(v: &str, size: u64) -> Result<(u64, u64), ()> {
    let spec = v.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size.checked_sub(1).ok_or(())?)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            size.checked_sub(1).ok_or(())?
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        (start, end)
    };
    if range.0 > range.1 || range.0 >= size {
        return Err(());
    }
    Ok(range)
}

async fn snapshot_file(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let sid = parse_id(&id).ok_or_else(|| {
        ApiError::invalid(format!("{id:?} is not a snapshot id (END_OFFSET-EPOCH)"))
    })?;
    let path = node.sm().dir.join(sid.file_name());
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::SnapshotNotFound,
            format!("no snapshot {}-{} on this node", sid.end_offset, sid.epoch),
        )
    };
    let file = std::fs::File::open(&path).map_err(|_| not_found())?;
    let size = file
        .metadata()
        .map_err(|e| ApiError::internal(e.to_string()))?
        .len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let Some(range) = range else {
        let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
        let mut r = Response::new(Body::from_stream(stream));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(RECORD_BATCHES),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        return Ok(r);
    };
    let Ok((start, end)) = parse_range(range, size) else {
        let mut r = ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::InvalidRequest,
            format!("range {range:?} does not fit a file of {size} bytes"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return Ok(r);
    };
    let data = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut f = file;
        f.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0u8; (end - start + 1) as usize];
        f.read_exact(&mut buf)?;
        Ok(buf)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut r = Response::new(Body::from(data));
    *r.status_mut() = StatusCode::PARTIAL_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(RECORD_BATCHES),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(r)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageQuery {
    consistency: Option<String>,
}

async fn image(
    State(node): State<Arc<Node>>,
    q: Result<Query<ImageQuery>, axum::extract::rejection::QueryRejection>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid(format!("query: {e}")))?;
    match q.consistency.as_deref() {
        None | Some("local") => {}
        Some("linearizable") => {
            if !node.is_leader() {
                return Ok(forward(
                    &node,
                    method,
                    "/v1/metadata/image?consistency=linearizable",
                    &headers,
                    Bytes::new(),
                )
                .await);
            }
            node.raft()
                .ensure_linearizable(openraft::ReadPolicy::ReadIndex)
                .await
                .map_err(|e| ApiError::not_controller(node.leader()).with_message(e.to_string()))?;
        }
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "consistency {other:?} is neither \"local\" nor \"linearizable\""
            )))
        }
    }
    let (pos, image) = {
        let st = node.sm().read();
        let v = serde_json::to_value(&st.image).map_err(|e| ApiError::internal(e.to_string()))?;
        (node.sm().applied(), v)
    };
    let Value::Object(image) = image else {
        return Err(ApiError::internal(
            "the image does not serialize to a JSON object",
        ));
    };
    Ok(Json(Image {
        offset: int64(pos.end_offset),
        epoch: pos.epoch,
        image,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_between_the_applied_end_and_the_log_end_waits_instead_of_416() {
        use FetchGate::*;
        // A new leader (applied end 1908, its log ends at 1911: the predecessor may have
        // served up to 1910) has no high watermark yet: every fetch waits.
        for offset in [0, 1908, 1909, 1910, 1911, 5000] {
            assert_eq!(fetch_gate(offset, None, 1911), Unknown, "offset {offset}");
        }
        // Once known (its own entry applied at 1911).
        assert_eq!(fetch_gate(1905, Some(1911), 1911), Serve(1911));
        assert_eq!(fetch_gate(1911, Some(1911), 1911), AtEnd(1911));
        assert_eq!(fetch_gate(1912, Some(1911), 1911), Beyond(1911));
        // A follower whose log holds entries it does not know committed yet.
        assert_eq!(fetch_gate(1910, Some(1908), 1911), Unknown);
        assert_eq!(fetch_gate(1912, Some(1908), 1911), Beyond(1908));
    }

    #[test]
    fn ranges_follow_rfc_7233() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Ok((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Ok((90, 99)));
        assert_eq!(parse_range("bytes=50-1000", 100), Ok((50, 99)));
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("bytes=9-3", 100).is_err());
        assert!(parse_range("bytes=0-1,5-6", 100).is_err());
        assert!(parse_range("items=0-1", 100).is_err());
        assert!(parse_range("bytes=0-", 0).is_err());
    }

    #[test]
    fn snapshot_ids_parse_plain_and_padded() {
        let id = SnapshotId {
            end_offset: 120,
            epoch: 3,
        };
        assert_eq!(parse_id("120-3"), Some(id));
        assert_eq!(
            parse_id("00000000000000000120-00000000000000000003"),
            Some(id)
        );
        assert_eq!(
            parse_id("00000000000000000120-00000000000000000003.checkpoint"),
            Some(id)
        );
        assert_eq!(parse_id("12a-3"), None);
        assert_eq!(parse_id("-3"), None);
        assert_eq!(parse_id("../etc"), None);
    }
}
