//! The process harness the quorum tests stand on, checked on its own: `LocalQuorum` run
//! against a stand-in executable (a shell script whose `serve` is Python's static HTTP
//! server answering /healthz, /readyz and /v1/quorum/status from files). It formats, starts,
//! stops (SIGTERM, then SIGKILL for a node that ignores it), kills, restarts and re-formats
//! nodes, appends their output to per-node logs, and leaves no process behind when dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kraftd::cli::local_quorum::{LocalQuorum, QuorumOptions, StopOutcome};

const FAKE: &str = r#"#!/usr/bin/env bash
set -eu
cmd=$1; shift
dir= api= id= cid=
while [ $# -gt 0 ]; do
  case $1 in
    --data-dir) dir=$2; shift 2 ;;
    --data-dir=*) dir=${1#*=}; shift ;;
    --api-addr) api=$2; shift 2 ;;
    --node-id=*) id=${1#*=}; shift ;;
    --cluster-id=*) cid=${1#*=}; shift ;;
    *) shift ;;
  esac
done
case $cmd in
  format)
    mkdir -p "$dir"
    printf 'version=1\ncluster.id=%s\nnode.id=%s\ndirectory.id=%s\n' "$cid" "$id" "$RANDOM$RANDOM" > "$dir/meta.properties"
    echo "formatted $dir" ;;
  serve)
    mkdir -p "$dir/www/v1/quorum"
    echo ok > "$dir/www/healthz"
    echo ok > "$dir/www/readyz"
    printf '{"cluster_id": "%s", "node_id": %s, "leader_id": 1, "leader_epoch": 1, "high_watermark": 0, "log_start_offset": 0, "max_follower_lag": 0, "max_follower_lag_time_ms": 0, "voters": [], "observers": []}' "$cid" "${id:-1}" > "$dir/www/v1/quorum/status"
    echo "fake node serving on $api" >&2
    if [ "${FAKE_IGNORE_TERM:-}" = 1 ]; then trap '' TERM; fi
    exec python3 -m http.server --bind 127.0.0.1 --directory "$dir/www" "${api##*:}" ;;
esac
"#;

fn fake_exe(dir: &Path) -> PathBuf {
    let path = dir.join("fake-kraftd");
    std::fs::write(&path, FAKE).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn local_quorum_starts_stops_kills_restarts_and_reformats_nodes_and_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let exe = fake_exe(dir.path());
    let base = dir.path().join("quorum");
    let pids = rt().block_on(async {
        let mut q = LocalQuorum::start(QuorumOptions::new(&exe, &base, 3))
            .await
            .unwrap();
        q.wait_ready_all(Duration::from_secs(20)).await.unwrap();
        assert_eq!(q.wait_leader(Duration::from_secs(10)).await.unwrap(), 1);
        let voters = q.voters_arg().to_string();
        for n in q.nodes() {
            assert!(
                voters.contains(&format!("{}@{}", n.id, n.peer_addr)),
                "{voters}"
            );
            assert!(n.data_dir.join("meta.properties").exists());
        }

        // A clean stop, then a restart on the same ports: the log keeps both runs.
        assert!(matches!(q.stop(2).await.unwrap(), StopOutcome::Exited(_)));
        assert_eq!(q.live_ids(), vec![1, 3]);
        q.restart(2).await.unwrap();
        q.wait_ready(2, Duration::from_secs(20)).await.unwrap();
        let log = std::fs::read_to_string(&q.node(2).unwrap().log_path).unwrap();
        assert_eq!(log.matches("fake node serving on").count(), 2, "{log}");

        // kill -9, a wiped and re-formatted directory, a restart.
        q.kill9(3).await.unwrap();
        assert_eq!(q.live_ids(), vec![1, 2]);
        let meta3 = q.node(3).unwrap().data_dir.join("meta.properties");
        let before = std::fs::read_to_string(&meta3).unwrap();
        q.wipe_and_reformat(3).await.unwrap();
        assert!(!q.node(3).unwrap().data_dir.join("www").exists());
        assert_ne!(std::fs::read_to_string(&meta3).unwrap(), before);
        q.restart(3).await.unwrap();
        q.wait_ready(3, Duration::from_secs(20)).await.unwrap();
        assert!(q.wait_ready(3, Duration::from_secs(1)).await.is_ok());
        assert!(
            q.restart(3).await.is_err(),
            "a running node cannot be started twice"
        );

        q.nodes()
            .iter()
            .filter_map(|n| n.pid())
            .collect::<Vec<u32>>()
    });
    // The runtime and the quorum are gone: so are the processes.
    assert_eq!(pids.len(), 3);
    for pid in pids {
        assert!(!alive(pid), "process {pid} outlived its LocalQuorum");
    }
}

#[test]
fn a_node_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let exe = fake_exe(dir.path());
    rt().block_on(async {
        let opts = QuorumOptions::new(&exe, dir.path().join("q"), 1).env("FAKE_IGNORE_TERM", 1);
        let mut q = LocalQuorum::start(opts).await.unwrap();
        q.wait_ready(1, Duration::from_secs(20)).await.unwrap();
        let pid = q.node(1).unwrap().pid().unwrap();
        let outcome = q.stop_with(1, Duration::from_millis(500)).await.unwrap();
        assert!(matches!(outcome, StopOutcome::Killed(_)), "{outcome:?}");
        assert!(!alive(pid));
        assert_eq!(q.stop(1).await.unwrap(), StopOutcome::NotRunning);
        // Waiting for a stopped node fails at once, with its log.
        let err = q.wait_ready(1, Duration::from_secs(5)).await.unwrap_err();
        assert!(err.to_string().contains("fake node serving"), "{err:#}");
    });
}

#[test]
fn a_cluster_id_starting_with_a_dash_formats_with_the_real_binary() {
    // Kafka-style ids are URL-safe base64: about one in 64 starts with '-', which a
    // command line parser takes for a flag unless it is passed as --cluster-id=ID.
    let mut bytes = [0x5au8; 16];
    bytes[0] = 0xf8;
    let id = kraftd::record::uuid_fmt::kafka_uuid(&uuid::Uuid::from_bytes(bytes));
    assert!(id.starts_with('-'), "{id}");
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let opts = QuorumOptions {
            cluster_id: Some(id.clone()),
            ..QuorumOptions::new(env!("CARGO_BIN_EXE_kraftd"), dir.path(), 1)
        };
        let q = LocalQuorum::start(opts).await.unwrap();
        assert_eq!(q.cluster_id(), id);
        let meta =
            std::fs::read_to_string(q.node(1).unwrap().data_dir.join("meta.properties")).unwrap();
        assert!(meta.contains(&format!("cluster.id={id}")), "{meta}");
    });
}
