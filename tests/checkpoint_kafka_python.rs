//! An independent decoder agrees: kafka-python (no kraftd code) reads a kraftd checkpoint
//! of more than 10,000 records, checks every CRC, the header and footer batches, the
//! offsets, the record count, and that every value is byte-identical to what was written.

use std::path::PathBuf;
use std::process::Command;

use kafka_protocol::messages::voters_record::{Endpoint, KRaftVersionFeature, Voter};
use kafka_protocol::messages::{BrokerId, VotersRecord};
use kafka_protocol::protocol::StrBytes;
use kraftd::image::MetadataImage;
use kraftd::record::checkpoint::{write_checkpoint, CheckpointMeta, SnapshotId};

/// The Python that has kafka-python: $KRAFTD_PYTHON, else the venv `scripts/test` makes.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("KRAFTD_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "kafka-python is needed: run `scripts/test` (it creates .venv) or set KRAFTD_PYTHON"
    );
    venv
}

fn voters() -> VotersRecord {
    let voter = |id: i32| {
        Voter::default()
            .with_voter_id(BrokerId(id))
            .with_voter_directory_id(uuid::Uuid::from_u128(0xd1e0 + id as u128))
            .with_endpoints(vec![Endpoint::default()
                .with_name(StrBytes::from_static_str("CONTROLLER"))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(9094)])
            .with_k_raft_version_feature(
                KRaftVersionFeature::default()
                    .with_min_supported_version(0)
                    .with_max_supported_version(1),
            )
    };
    VotersRecord::default().with_voters(vec![voter(1), voter(2), voter(3)])
}

#[test]
fn kafka_python_reads_a_12k_record_checkpoint_identically() {
    let dir = tempfile::tempdir().unwrap();
    // 100 topics x 120 partitions: 12,000 PartitionRecords plus topics, brokers, features.
    let image = MetadataImage::synthetic(100, 120, 12, 3);
    let id = SnapshotId {
        end_offset: 123_456,
        epoch: 7,
    };
    let meta = CheckpointMeta {
        last_contained_log_timestamp: 1_700_000_000_000,
        voters: Some(voters()),
        ..Default::default()
    };
    let (path, summary) = write_checkpoint(dir.path(), id, &meta, image.records()).unwrap();
    assert!(
        summary.records >= 10_000,
        "only {} records",
        summary.records
    );

    let values: Vec<String> = image
        .records()
        .map(|r| {
            r.to_bytes()
                .unwrap()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .collect();
    assert_eq!(values.len() as u64, summary.records);
    let expected = serde_json::json!({ "epoch": 7, "header_types": [3, 5, 6], "values": values });
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, expected.to_string()).unwrap();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/check_checkpoint.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(&path)
        .arg(&expected_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "kafka-python rejected the checkpoint: {stdout}"
    );
    assert!(stdout.contains(&format!("{} metadata records", summary.records)));
}
