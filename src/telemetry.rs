//! Prometheus metrics (`GET /metrics`), through the `metrics` facade and
//! `metrics-exporter-prometheus`'s recorder, rendered by the API listener.
//!
//! Events (a batch committed, a broker's session expired, an election ended, an HTTP
//! request answered) are recorded where they happen. Figures that are state (who leads, the
//! offsets, broker and partition counts, the current checkpoint) are set from Raft's metrics
//! and the image when `/metrics` is scraped, so nothing is counted per record.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// 1 on the active controller (Kafka: `ActiveControllerCount`).
pub const ACTIVE_CONTROLLER: &str = "kraftd_active_controller";
/// Leader id, -1 when none is known (Kafka raft-metrics `current-leader`).
pub const CURRENT_LEADER: &str = "kraftd_current_leader_id";
/// Current epoch = Raft term (Kafka raft-metrics `current-epoch`).
pub const CURRENT_EPOCH: &str = "kraftd_current_epoch";
/// Offset after the last committed record (Kafka raft-metrics `high-watermark`).
pub const HIGH_WATERMARK: &str = "kraftd_high_watermark";
/// Offset of the last applied record (Kafka: `LastAppliedRecordOffset`).
pub const LAST_APPLIED: &str = "kraftd_last_applied_record_offset";
/// Offset of the last committed record (Kafka: `LastCommittedRecordOffset`).
pub const LAST_COMMITTED: &str = "kraftd_last_committed_record_offset";
/// First offset still in the log (Kafka: `LogStartOffset`).
pub const LOG_START: &str = "kraftd_log_start_offset";
/// Batch submission to commit (Kafka raft-metrics `commit-latency-avg/max`).
pub const COMMIT_LATENCY: &str = "kraftd_commit_latency_seconds";
/// Leader lost to leader known (Kafka raft-metrics `election-latency-avg/max`).
pub const ELECTION_LATENCY: &str = "kraftd_election_latency_seconds";
/// Kafka: `FencedBrokerCount`.
pub const FENCED_BROKERS: &str = "kraftd_fenced_brokers";
/// Kafka: `ActiveBrokerCount`.
pub const ACTIVE_BROKERS: &str = "kraftd_active_brokers";
/// Kafka: `GlobalTopicCount`.
pub const TOPICS: &str = "kraftd_global_topics";
/// Kafka: `GlobalPartitionCount`.
pub const PARTITIONS: &str = "kraftd_global_partitions";
/// Kafka: `OfflinePartitionsCount`.
pub const OFFLINE_PARTITIONS: &str = "kraftd_offline_partitions";
/// Partitions whose ISR is smaller than their replicas (Kafka:
/// `UnderReplicatedPartitions`, there per broker; here over the whole image).
pub const UNDER_REPLICATED_PARTITIONS: &str = "kraftd_under_replicated_partitions";
/// Per member of the quorum, on the leader: 1 if it answered within the down timeout.
pub const QUORUM_MEMBER_UP: &str = "kraftd_quorum_member_up";
/// Per member of the quorum, on the leader: records behind the leader's log end.
pub const QUORUM_MEMBER_LAG: &str = "kraftd_quorum_member_lag_records";
/// 1, labelled with the version that runs (the Prometheus build-info idiom).
pub const BUILD_INFO: &str = "kraftd_build_info";
/// Kafka: `TimedOutBrokerHeartbeatCount`.
pub const TIMED_OUT_HEARTBEATS: &str = "kraftd_timed_out_broker_heartbeats_total";
/// Kafka SnapshotEmitter: `latest-snapshot-generated-bytes`.
pub const SNAPSHOT_SIZE: &str = "kraftd_snapshot_size_bytes";
/// Kafka SnapshotEmitter: `latest-snapshot-generated-age-ms` (here in seconds).
pub const SNAPSHOT_AGE: &str = "kraftd_snapshot_age_seconds";
/// HTTP requests answered, by route, method and status.
pub const HTTP_REQUESTS: &str = "kraftd_http_requests_total";
/// HTTP request latency, by route, method and status.
pub const HTTP_LATENCY: &str = "kraftd_http_request_duration_seconds";
/// TLS handshakes that failed, by listener (`api`, `peer`).
pub const TLS_HANDSHAKE_FAILURES: &str = "kraftd_tls_handshake_failures_total";

/// Histogram buckets (seconds): 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static STARTED: OnceLock<Instant> = OnceLock::new();

/// The process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds`, `process_start_time_seconds`, ...), read from /proc at each scrape.
fn process() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Sets the process metrics from /proc; called at each scrape.
pub fn collect_process() {
    process().collect();
}

/// Time since the recorder was installed, at start-up.
pub fn uptime() -> Duration {
    STARTED.get_or_init(Instant::now).elapsed()
}

/// Installs the process-wide recorder once and returns its handle. If another recorder
/// was set first (e.g. a test harness in the same process), the handle renders only what
/// this module's own scrape-time gauges cannot reach: it stays valid, it just sees less.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        STARTED.get_or_init(Instant::now);
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets(&BUCKETS) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "histogram buckets refused; using summaries");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::debug!("a metrics recorder was already installed in this process");
        }
        describe();
        handle
    })
}

fn describe() {
    describe_gauge!(
        ACTIVE_CONTROLLER,
        "1 if this node is the active controller (Raft leader), else 0 (Kafka: kafka.controller:type=KafkaController,name=ActiveControllerCount)"
    );
    describe_gauge!(
        CURRENT_LEADER,
        "Id of the current quorum leader, -1 if unknown (Kafka: kafka.server:type=raft-metrics current-leader)"
    );
    describe_gauge!(
        CURRENT_EPOCH,
        "Current quorum epoch, the Raft term (Kafka: kafka.server:type=raft-metrics current-epoch)"
    );
    describe_gauge!(
        HIGH_WATERMARK,
        "Offset after the last committed record this node knows of (Kafka: kafka.server:type=raft-metrics high-watermark)"
    );
    describe_gauge!(
        LAST_APPLIED,
        "Offset of the last record applied to this node's image, -1 if none (Kafka: kafka.controller:type=KafkaController,name=LastAppliedRecordOffset)"
    );
    describe_gauge!(
        LAST_COMMITTED,
        "Offset of the last committed record this node knows of, -1 if none (Kafka: kafka.controller:type=KafkaController,name=LastCommittedRecordOffset)"
    );
    describe_gauge!(
        LOG_START,
        "First offset still in this node's log; older records are only in checkpoints (Kafka: kafka.log:type=Log,name=LogStartOffset)"
    );
    describe_histogram!(
        COMMIT_LATENCY,
        metrics::Unit::Seconds,
        "Time from the active controller submitting a record batch to its commit (Kafka: kafka.server:type=raft-metrics commit-latency-avg/max)"
    );
    describe_histogram!(
        ELECTION_LATENCY,
        metrics::Unit::Seconds,
        "Time from this node losing its known leader (standing for election, or seeing a higher term) to knowing a new one; the election timeout before that is not included (Kafka: kafka.server:type=raft-metrics election-latency-avg/max)"
    );
    describe_gauge!(
        FENCED_BROKERS,
        "Registered brokers that are fenced (Kafka: kafka.controller:type=KafkaController,name=FencedBrokerCount)"
    );
    describe_gauge!(
        ACTIVE_BROKERS,
        "Registered brokers that are not fenced (Kafka: kafka.controller:type=KafkaController,name=ActiveBrokerCount)"
    );
    describe_gauge!(
        TOPICS,
        "Topics in the metadata image (Kafka: kafka.controller:type=KafkaController,name=GlobalTopicCount)"
    );
    describe_gauge!(
        PARTITIONS,
        "Partitions in the metadata image (Kafka: kafka.controller:type=KafkaController,name=GlobalPartitionCount)"
    );
    describe_gauge!(
        OFFLINE_PARTITIONS,
        "Partitions without a leader (Kafka: kafka.controller:type=KafkaController,name=OfflinePartitionsCount)"
    );
    describe_gauge!(
        UNDER_REPLICATED_PARTITIONS,
        "Partitions whose in-sync replica set is smaller than their replica set, over the whole image (Kafka: kafka.server:type=ReplicaManager,name=UnderReplicatedPartitions, per broker)"
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label names the kraftd build that runs"
    );
    process().describe();
    describe_counter!(
        TIMED_OUT_HEARTBEATS,
        "Brokers this node fenced as active controller because their session expired (Kafka: kafka.controller:type=KafkaController,name=TimedOutBrokerHeartbeatCount)"
    );
    describe_gauge!(
        SNAPSHOT_SIZE,
        metrics::Unit::Bytes,
        "Size of this node's current checkpoint file (Kafka: kafka.server:type=SnapshotEmitter latest-snapshot-generated-bytes)"
    );
    describe_gauge!(
        SNAPSHOT_AGE,
        metrics::Unit::Seconds,
        "Time since this node's current checkpoint was written or installed (Kafka: kafka.server:type=SnapshotEmitter latest-snapshot-generated-age-ms)"
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        "TLS handshakes that failed (wrong CA, expired or missing client certificate, not TLS), by listener"
    );
    describe_counter!(
        HTTP_REQUESTS,
        "API requests answered, by route template, method and status"
    );
    describe_histogram!(
        HTTP_LATENCY,
        metrics::Unit::Seconds,
        "API request latency, by route template, method and status"
    );
    // Present from the start, so a scrape shows 0 rather than nothing.
    counter!(TIMED_OUT_HEARTBEATS).increment(0);
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let _ = (histogram!(COMMIT_LATENCY), histogram!(ELECTION_LATENCY));
}

/// A controller batch was committed `elapsed` after its submission.
pub fn commit_latency(elapsed: Duration) {
    histogram!(COMMIT_LATENCY).record(elapsed.as_secs_f64());
}

/// A new leader became known `elapsed` after the previous one was lost.
pub fn election_latency(elapsed: Duration) {
    histogram!(ELECTION_LATENCY).record(elapsed.as_secs_f64());
}

/// A broker was fenced because its session expired.
pub fn heartbeat_timed_out() {
    counter!(TIMED_OUT_HEARTBEATS).increment(1);
}

/// Middleware (a route layer, so the route template is known): counts requests and their
/// latency by route template (`/v1/brokers/{id}/heartbeat`, never the raw path), method
/// and status.
pub async fn track_http(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    let labels = [
        ("route", route),
        ("method", method),
        ("status", resp.status().as_u16().to_string()),
    ];
    counter!(HTTP_REQUESTS, &labels).increment(1);
    histogram!(HTTP_LATENCY, &labels).record(started.elapsed().as_secs_f64());
    resp
}
