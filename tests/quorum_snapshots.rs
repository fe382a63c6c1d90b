//! Snapshots on real processes: a follower that was away while the others snapshotted and
//! purged their logs catches up (from its own disk, or from nothing after its disk was
//! wiped), and a broker that starts after a purge rebuilds the leader's image from a
//! downloaded (and resumed) checkpoint plus the log after it.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use kraftd::client::{ClientError, SnapshotRef};
use kraftd::image::load_checkpoint;
use kraftd::record::batch::BatchIter;
use kraftd::record::LogRecord;
use reqwest::StatusCode;
use std::time::Duration;

/// Small snapshots and a short log tail, so a few hundred writes take two snapshots and
/// purge the log below them.
const SNAPSHOT_ENV: [(&str, &str); 3] = [
    NO_NOOPS,
    ("KRAFTD_SNAPSHOT_MAX_BYTES", "16384"),
    ("KRAFTD_LOG_TAIL_ENTRIES", "10"),
];

/// With one follower away, writes through the others past two snapshots (size-triggered,
/// and asked for with `POST /v1/quorum/snapshot` on each live node), until the leader's log
/// no longer starts at 0.
async fn write_past_two_snapshots(s: &Scenario, live: &[u64], leader: u64) -> PastSnapshots {
    let mut acked = Vec::new();
    let mut snapshots = Vec::new();
    for round in 0..2 {
        acked.extend(write_n(s, live, &format!("away{round}"), 150).await);
        for &id in live {
            let snap = s.client(id).take_snapshot().await.unwrap();
            eprintln!(
                "  node {id} took snapshot {} (end offset {}, epoch {})",
                snap.file_name, snap.end_offset, snap.epoch
            );
            if id == leader {
                snapshots.push(snap);
            }
        }
    }
    assert!(snapshots[1].end_offset > snapshots[0].end_offset);
    acked.extend(write_n(s, live, "tail", 20).await);

    let listed = s.client(leader).list_snapshots().await.unwrap();
    for snap in &snapshots {
        assert!(
            listed.iter().any(|l| l.id() == snap.id()),
            "leader's snapshot list {listed:?} lacks {snap:?}"
        );
    }
    // The log below the newest snapshot (minus the tail) is purged.
    let client = s.client(leader);
    let log_start = eventually("the leader purges its log", Duration::from_secs(20), || {
        let client = client.clone();
        async move {
            let st = client.quorum_status().await.map_err(err_text)?;
            if st.log_start_offset > 0 {
                return Ok(st.log_start_offset);
            }
            match client.fetch_log(0, Some(1), None).await {
                Err(e) if e.status() == Some(StatusCode::GONE) => Ok(st.log_start_offset.max(1)),
                other => Err(format!(
                    "log_start_offset {}, offset 0 gives {:?}",
                    st.log_start_offset,
                    other.map(|f| f.high_watermark)
                )),
            }
        }
    })
    .await;
    eprintln!("  leader node {leader}'s log now starts at {log_start}");
    PastSnapshots { acked, log_start }
}

/// What writing past two snapshots left.
struct PastSnapshots {
    /// Every acknowledged write.
    acked: Vec<Acked>,
    /// The leader's log start offset afterwards (above 0).
    log_start: i64,
}

#[test]
fn a_stopped_follower_restarts_after_two_snapshots_and_purges_and_converges() {
    run(
        "stopped_follower_converges_after_snapshots_and_purge",
        async {
            let mut s = Scenario::start(3, &SNAPSHOT_ENV).await;
            let ids = s.q.ids();
            let leader = s.leader().await;
            let mut acked = write_n(&s, &ids, "before", 30).await;

            let followers: Vec<u64> = ids.iter().copied().filter(|&i| i != leader).collect();
            let away = followers[s.rng.below(followers.len() as u64) as usize];
            let hw_away = s.status(away).await.high_watermark;
            eprintln!("  stopping follower node {away} (SIGTERM) at high watermark {hw_away}");
            s.q.stop(away).await.unwrap();
            let live: Vec<u64> = ids.iter().copied().filter(|&i| i != away).collect();

            let more = write_past_two_snapshots(&s, &live, leader).await.acked;
            acked.extend(more);
            // The purge goes on in steps after it starts: wait until it has passed where
            // the follower stopped (bounded).
            let client = s.client(leader);
            let log_start: i64 = eventually(
                &format!("the purge reaches past where node {away} stopped"),
                Duration::from_secs(20),
                || {
                    let client = client.clone();
                    async move {
                        let st = client.quorum_status().await.map_err(err_text)?;
                        if st.log_start_offset > hw_away {
                            Ok(st.log_start_offset)
                        } else {
                            Err(format!("log start {} <= {hw_away}", st.log_start_offset))
                        }
                    }
                },
            )
            .await;
            eprintln!("  the leader's log now starts at {log_start}, past {hw_away}");

            eprintln!("  restarting node {away}");
            s.q.restart(away).await.unwrap();
            s.q.wait_ready(away, READY).await.unwrap();
            let last = acked.iter().map(|a| a.offset).max().unwrap();
            wait_same_image(&s, &ids, last + 1).await;
            assert_acked_present(&s, &ids, &acked).await;
        },
    );
}

#[test]
fn a_follower_with_a_wiped_disk_converges_through_a_snapshot_transfer() {
    run(
        "wiped_follower_converges_through_snapshot_transfer",
        async {
            let mut s = Scenario::start(3, &SNAPSHOT_ENV).await;
            let ids = s.q.ids();
            let leader = s.leader().await;
            let mut acked = write_n(&s, &ids, "before", 30).await;

            let followers: Vec<u64> = ids.iter().copied().filter(|&i| i != leader).collect();
            let away = followers[s.rng.below(followers.len() as u64) as usize];
            eprintln!("  stopping follower node {away} (SIGTERM)");
            s.q.stop(away).await.unwrap();
            let live: Vec<u64> = ids.iter().copied().filter(|&i| i != away).collect();
            let PastSnapshots {
                acked: more,
                log_start,
            } = write_past_two_snapshots(&s, &live, leader).await;
            acked.extend(more);

            eprintln!(
                "  wiping node {away}'s data directory and formatting it again (new directory id)"
            );
            s.q.wipe_and_reformat(away).await.unwrap();
            s.q.restart(away).await.unwrap();
            let last = acked.iter().map(|a| a.offset).max().unwrap();

            // KIP-853: a re-formatted node is a new disk; if the quorum does not take it back by
            // itself, the operator re-adds it, as after a disk replacement.
            let by_itself = try_same_image(&s, &ids, last + 1, Duration::from_secs(20)).await;
            if let Err(e) = by_itself {
                eprintln!(
                "  node {away} did not converge by itself ({e}); re-adding it with POST /v1/quorum/voters"
            );
                let voter = s.q.node(away).unwrap().as_new_voter();
                let voters = s.client(leader).add_voter(&voter).await.unwrap();
                assert!(voters.contains(&away), "voters after re-adding: {voters:?}");
            }
            s.q.wait_ready(away, READY).await.unwrap();
            wait_same_image(&s, &ids, last + 1).await;
            assert_acked_present(&s, &ids, &acked).await;

            // Caught up, it is a voter again (re-admitted with its new directory id).
            let leader_client = s.client(leader);
            eventually(
                &format!("node {away} is a voter again"),
                Duration::from_secs(20),
                || {
                    let c = leader_client.clone();
                    async move {
                        let st = c.quorum_status().await.map_err(err_text)?;
                        if st.voter_ids() == [1, 2, 3] && !st.observers.contains(&away) {
                            Ok(())
                        } else {
                            Err(format!("{st:?}"))
                        }
                    }
                },
            )
            .await;

            // The records below the leader's log start exist only in snapshots: the wiped node
            // holds them, so it received a snapshot.
            let st = s.status(away).await;
            let snaps = s.client(away).list_snapshots().await.unwrap();
            eprintln!(
                "  node {away}: log starts at {}, snapshots {:?}",
                st.log_start_offset,
                snaps.iter().map(|x| &x.file_name).collect::<Vec<_>>()
            );
            assert!(
            snaps.iter().any(|x| x.end_offset >= log_start) || st.log_start_offset >= log_start,
            "node {away} shows no snapshot at or past the leader's log start {log_start}: status {st:?}, snapshots {snaps:?}"
        );
        },
    );
}

#[test]
fn a_broker_starting_after_a_purge_rebuilds_the_image_from_a_resumed_snapshot_download_and_the_log()
{
    run("broker_rebuilds_image_from_snapshot_and_log", async {
        let mut s = Scenario::start(3, &[NO_NOOPS, ("KRAFTD_LOG_TAIL_ENTRIES", "5")]).await;
        let ids = s.q.ids();
        let leader = s.leader().await;
        let client = s.client(leader);

        // 1. Some history, a snapshot on the leader, more history after it.
        write_n(&s, &ids, "early", 80).await;
        let taken = client.take_snapshot().await.unwrap();
        eprintln!(
            "  leader node {leader} took {} ({} .. {})",
            taken.file_name, taken.end_offset, taken.epoch
        );
        let later = write_n(&s, &ids, "late", 40).await;
        let hw = client.quorum_status().await.unwrap().high_watermark;
        assert!(hw > later.last().unwrap().offset);

        // 2. A broker starting from offset 0 is told to fetch a snapshot instead.
        let named: SnapshotRef = eventually(
            "offset 0 answers 410 naming a snapshot",
            Duration::from_secs(20),
            || {
                let client = client.clone();
                async move {
                    match client.fetch_log(0, None, None).await {
                        Err(ClientError::Api(e)) if e.status == StatusCode::GONE => {
                            assert_eq!(e.code, "OFFSET_OUT_OF_RANGE", "{e}");
                            e.snapshot
                                .ok_or_else(|| format!("410 without a snapshot: {e}"))
                        }
                        other => Err(format!("{:?}", other.map(|f| f.high_watermark))),
                    }
                }
            },
        )
        .await;
        eprintln!(
            "  offset 0: 410, fetch snapshot {}-{}",
            named.end_offset, named.epoch
        );
        assert!(named.end_offset >= taken.end_offset);
        let listed = client.list_snapshots().await.unwrap();
        let entry = listed
            .iter()
            .find(|l| l.id() == named)
            .unwrap_or_else(|| panic!("{named:?} not in the listing {listed:?}"));
        let size = entry.size;

        // 3. The download is interrupted after a third and resumed with a Range request.
        let cut = size / 3;
        let part1 = client
            .fetch_snapshot(named, Some((0, Some(cut))))
            .await
            .unwrap();
        assert_eq!(part1.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(part1.bytes.len() as u64, cut + 1);
        assert_eq!(
            part1.content_range.as_deref(),
            Some(&format!("bytes 0-{cut}/{size}")[..])
        );
        let part2 = client
            .fetch_snapshot(named, Some((cut + 1, None)))
            .await
            .unwrap();
        assert_eq!(part2.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(part2.bytes.len() as u64, size - cut - 1);
        let mut file = BytesMut::with_capacity(size as usize);
        file.extend_from_slice(&part1.bytes);
        file.extend_from_slice(&part2.bytes);
        let file: Bytes = file.freeze();
        let whole = client.fetch_snapshot(named, None).await.unwrap();
        assert_eq!(whole.status, StatusCode::OK);
        assert!(
            whole.bytes == file,
            "resumed download differs from the whole file"
        );
        eprintln!(
            "  downloaded {size} bytes in two ranges (0-{cut}, {}-)",
            cut + 1
        );

        // 4. Load it, then follow the log from its end offset to the high watermark.
        let (mut image, summary) = load_checkpoint(file, Some(named.epoch)).unwrap();
        eprintln!(
            "  loaded the checkpoint: {} batches, {} records",
            summary.batches, summary.records
        );
        let mut next = named.end_offset;
        let mut applied = 0usize;
        for _ in 0..=(hw - next) {
            if next >= hw {
                break;
            }
            let fetch = client.fetch_log(next, Some(1024), None).await.unwrap();
            assert!(!fetch.batches.is_empty(), "empty answer at {next} < {hw}");
            assert_eq!(fetch.high_watermark, hw);
            for batch in BatchIter::new(fetch.batches) {
                let batch = batch.unwrap();
                let control = batch.header.is_control();
                for r in &batch.records {
                    if r.offset < next {
                        continue;
                    }
                    if let LogRecord::Metadata(v) = LogRecord::decode(control, r).unwrap() {
                        image.apply(&v.record).unwrap();
                        applied += 1;
                    }
                }
                next = next.max(batch.header.next_offset());
            }
        }
        assert_eq!(next, hw, "followed the log to the high watermark");
        eprintln!(
            "  applied {applied} records from offset {} to {hw}",
            named.end_offset
        );

        // 5. The rebuilt image is the leader's.
        let view = client.image().await.unwrap();
        assert_eq!(
            client.quorum_status().await.unwrap().high_watermark,
            hw,
            "nothing was written meanwhile"
        );
        assert_eq!(
            serde_json::to_value(&image).unwrap(),
            serde_json::Value::Object(view.image),
            "the image rebuilt from snapshot + log differs from the leader's"
        );

        // 6. Past the high watermark: 416; at it: a long poll that answers empty.
        let beyond = client.fetch_log(hw + 1000, None, None).await.unwrap_err();
        assert_eq!(
            beyond.status(),
            Some(StatusCode::RANGE_NOT_SATISFIABLE),
            "{beyond}"
        );
        let idle = client
            .fetch_log(hw, None, Some(Duration::from_millis(300)))
            .await
            .unwrap();
        assert!(idle.batches.is_empty());
        assert_eq!(idle.high_watermark, hw);
    });
}
