//! The operator's offline tools, run as the real binary: `kraftd bench snapshot --keep`
//! leaves a checkpoint, `kraftd dump` decodes it (table and JSON), and a damaged file makes
//! `dump` name the bad batch and exit non-zero.

mod common;

use common::{kraftd_offline as kraftd, text};
use std::path::{Path, PathBuf};

/// Runs the benchmark on a small image and returns the checkpoint it kept.
fn bench_checkpoint(dir: &Path) -> PathBuf {
    let out = kraftd(&[
        "bench",
        "snapshot",
        "--topics",
        "3",
        "--partitions-per-topic",
        "4",
        "--brokers",
        "5",
        "--replication-factor",
        "3",
        "--keep",
        dir.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {stdout}{}",
        text(&out.stderr)
    );
    for figure in [
        "write checkpoint:",
        "bytes per partition",
        "read + load image:",
        "peak memory:",
        "equals image written: yes",
    ] {
        assert!(
            stdout.contains(figure),
            "bench output lacks {figure:?}: {stdout}"
        );
    }
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn dump_prints_snapshot_batches_and_decoded_records() {
    let dir = tempfile::tempdir().unwrap();
    let file = bench_checkpoint(dir.path());
    let out = kraftd(&["dump", file.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let name = file.file_name().unwrap().to_str().unwrap();
    let end: i64 = name[..20].parse().unwrap();
    assert!(
        stdout.contains(&format!("Snapshot end offset {end}, epoch 1")),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "baseOffset: 0 lastOffset: 0 count: 1 partitionLeaderEpoch: 1 isControl: true"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("isvalid: true"), "{stdout}");
    for needle in [
        "SnapshotHeaderRecord",
        "FEATURE_LEVEL_RECORD",
        "REGISTER_BROKER_RECORD",
        "TOPIC_RECORD",
        "PARTITION_RECORD",
        "SnapshotFooterRecord",
    ] {
        assert!(stdout.contains(needle), "dump lacks {needle}: {stdout}");
    }
    assert!(stdout.contains("\"metadata.version\""), "{stdout}");
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("Checkpoint valid: 3 batches"),
        "{stdout}"
    );
}

#[test]
fn dump_json_is_one_document_with_batches_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let file = bench_checkpoint(dir.path());
    let out = kraftd(&["dump", "--output", "json", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let f = &doc["files"][0];
    assert!(f["error"].is_null(), "{f}");
    assert_eq!(f["snapshot"]["epoch"], 1);
    let batches = f["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0]["control"], true);
    assert_eq!(batches[0]["records"][0]["type"], "SnapshotHeaderRecord");
    assert_eq!(batches[1]["records"][0]["data"]["name"], "metadata.version");
    assert_eq!(batches[1]["records"][0]["data"]["featureLevel"], 16);
    let last = batches[2]["records"].as_array().unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["type"], "SnapshotFooterRecord");
    // Offsets run on from 0 across batches.
    let offsets: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["offset"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
}

#[test]
fn dump_of_a_damaged_file_names_the_batch_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = bench_checkpoint(dir.path());
    let mut bytes = std::fs::read(&file).unwrap();
    let header_size = 12 + i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
    bytes[header_size + 70] ^= 0xff; // inside the data batch's records
    std::fs::write(&file, &bytes).unwrap();

    let out = kraftd(&["dump", file.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("SnapshotHeaderRecord"),
        "what came before the damage is still shown: {stdout}"
    );
    let err_line = stdout
        .lines()
        .find(|l| l.starts_with("ERROR:"))
        .expect("an ERROR line");
    assert!(
        err_line.contains(&format!("batch #1 at byte {header_size} (base offset 1)")),
        "{err_line}"
    );
    assert!(err_line.contains("CRC-32C mismatch"), "{err_line}");

    let json = kraftd(&["dump", "--output", "json", file.to_str().unwrap()]);
    assert_eq!(json.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(doc["files"][0]["error"]
        .as_str()
        .unwrap()
        .contains("CRC-32C mismatch"));
}

#[test]
fn dump_of_a_missing_file_fails_clearly() {
    let out = kraftd(&[
        "dump",
        "/nonexistent/00000000000000000001-00000000000000000001.checkpoint",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("cannot read"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn bench_refuses_a_replication_factor_above_the_broker_count() {
    let out = kraftd(&[
        "bench",
        "snapshot",
        "--topics",
        "1",
        "--brokers",
        "2",
        "--replication-factor",
        "3",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--replication-factor"),
        "{}",
        text(&out.stderr)
    );
}
