//! Whole-cluster crashes on real processes: all three nodes are killed with `kill -9`
//! while writers are running, then restarted, three times over. What was committed before
//! each crash is still there, byte for byte, and no acknowledged write is missing.

mod common;

use common::*;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;

#[test]
fn all_nodes_killed_mid_write_restart_with_every_committed_record_and_acknowledged_write() {
    run("all_nodes_killed_mid_write_keep_committed_state", async {
        let mut s = Scenario::start(3, &[NO_NOOPS]).await;
        let ids = s.q.ids();
        let mut acked = Vec::new();
        for round in 1..=ROUNDS {
            // 1. Three writers spreading writes over all three nodes.
            let leader = s.leader().await;
            let writers: Vec<Writer> = (0..3)
                .map(|w| Writer::spawn(&format!("crash{round}w{w}"), s.clients(&ids)))
                .collect();
            let target = 100 + s.rng.below(100) as usize;
            eprintln!(
                "  round {round}: writing until {target} writes are acknowledged, then kill -9 every node"
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while writers.iter().map(Writer::acked_count).sum::<usize>() < target {
                assert!(Instant::now() < deadline, "writers too slow");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }

            // 2. What is committed now: the leader's high watermark and its log below it.
            let hw_before = s.status(leader).await.high_watermark;
            let committed = read_log(&s.client(leader), 0, hw_before, 1 << 20).await;

            // 3. kill -9 all three, writes still in flight.
            s.q.kill9_all().await.unwrap();
            for w in writers {
                acked.extend(w.stop().await);
            }
            eprintln!(
                "  killed every node; committed before the kill: {hw_before} offsets in {} batches",
                committed.len()
            );

            // 4. Restart all; a leader is elected again.
            for &id in &ids {
                s.q.restart(id).await.unwrap();
            }
            s.q.wait_ready_all(READY).await.unwrap();
            let leader = s.leader().await;
            eprintln!("  restarted; node {leader} leads");

            // 5. Same high watermark on every node, not below the one before; the same
            //    image; every acknowledged write (of every round so far); and the log
            //    below the old high watermark unchanged.
            let last = acked.iter().map(|a: &Acked| a.offset).max().unwrap_or(0);
            let hw = wait_same_high_watermark(&s, &ids, hw_before.max(last + 1)).await;
            assert!(hw >= hw_before);
            wait_same_image(&s, &ids, hw).await;
            assert_acked_present(&s, &ids, &acked).await;
            for &id in &ids {
                let log = read_log(&s.client(id), 0, hw_before, 1 << 20).await;
                assert_eq!(
                    log.len(),
                    committed.len(),
                    "node {id}: batches below {hw_before}"
                );
                for ((b1, x1), (b2, x2)) in committed.iter().zip(&log) {
                    assert_eq!(b1, b2, "node {id}: base offsets");
                    assert!(
                        x1 == x2,
                        "node {id}: batch at offset {b1} changed across the crash"
                    );
                }
            }
            eprintln!(
                "  the {} batches committed before the crash are unchanged on every node",
                committed.len()
            );
        }
    });
}
