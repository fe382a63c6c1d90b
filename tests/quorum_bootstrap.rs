//! A new cluster's log is complete from offset 0: a broker that follows it from the start,
//! without any snapshot, sees the voters, the first leader and metadata.version (which
//! `kraftd format` put only in the bootstrap checkpoint; the first leader writes it).

mod common;

use common::*;
use std::time::Duration;

#[test]
fn a_broker_following_a_new_cluster_from_offset_0_sees_metadata_version() {
    run("new_cluster_log_has_bootstrap_records", async {
        let mut s = Scenario::start(3, &[NO_NOOPS]).await;
        let leader = s.leader().await;
        let client = s.client(leader);
        let kinds = eventually(
            "the log from offset 0 holds a FeatureLevelRecord for metadata.version",
            Duration::from_secs(20),
            || {
                let c = client.clone();
                async move {
                    let got = c.fetch_log_json(0, Some(1 << 20)).await.map_err(err_text)?;
                    let kinds: Vec<String> = got.records.iter().map(|r| r.kind.clone()).collect();
                    let mv = got.records.iter().find(|r| {
                        r.kind == "FEATURE_LEVEL_RECORD" && r.data["name"] == "metadata.version"
                    });
                    match mv {
                        Some(r) if r.data["featureLevel"].as_i64() > Some(0) => Ok(kinds),
                        _ => Err(format!("records so far: {kinds:?}")),
                    }
                }
            },
        )
        .await;
        eprintln!("  log from offset 0: {kinds:?}");
        assert_eq!(kinds.first().map(String::as_str), Some("VotersRecord"));
        assert!(kinds.iter().any(|k| k == "LeaderChangeMessage"));
        let written = kinds
            .iter()
            .filter(|k| *k == "FEATURE_LEVEL_RECORD")
            .count();
        assert_eq!(
            written, 1,
            "the bootstrap feature levels are written once: {kinds:?}"
        );
    });
}
