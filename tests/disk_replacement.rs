//! Replacing disks on real processes (KIP-853 identities, deploy/README.md's runbook).
//!
//! - The runbook: two disks replaced one right after the other, each formatted with
//!   `--join` and added back with add-voter; no acknowledged write is lost and the quorum
//!   ends with three voters.
//! - The wrong command: wiped disks formatted with the ORIGINAL `--voters`. A wiped node
//!   never starts a first election while a bootstrap voter holds history (veto), nor while
//!   one is silent; the history on the survivor stays whole.
//! - The operator's way back from that lost quorum: `kraftd recover-quorum` on the survivor
//!   (refused while it runs, and while its peers still hold their disks) makes it the only
//!   voter with every acknowledged write; the others are formatted to join and added.

mod common;

use common::*;
use std::time::Duration;

const VETO: &str = "already holds this cluster's history";
const INITIALIZED: &str = "initialized the log with the bootstrap voters";

fn log_of(s: &Scenario, id: u64) -> String {
    std::fs::read_to_string(&s.q.node(id).unwrap().log_path).unwrap_or_default()
}

/// Node `id`'s log lines from the current run (after the last clean stop: every stop in
/// these tests is a SIGTERM, which logs "stopping").
fn current_run_log(s: &Scenario, id: u64) -> String {
    let log = log_of(s, id);
    match log.rfind("stopping\n") {
        Some(i) => log[i..].to_string(),
        None => log,
    }
}

/// The closing step of a replacement scenario: every node reports voters `ids`, takes
/// more writes, and every node holds every acknowledged write in the same image.
async fn all_voters_hold_every_write(s: &Scenario, ids: &[u64], acked: &mut Vec<Acked>) {
    wait_all_report_voters(s, ids, CONVERGE).await;
    acked.extend(write_n(s, ids, "after", 10).await);
    let last = acked.iter().map(|a| a.offset).max().unwrap();
    wait_same_image(s, ids, last + 1).await;
    assert_acked_present(s, ids, acked).await;
}

#[test]
fn replacing_two_disks_in_quick_succession_by_the_runbook_keeps_every_acknowledged_write() {
    run("two_disk_replacements_by_the_runbook", async {
        let mut s = Scenario::start(3, &[NO_NOOPS]).await;
        let ids = s.q.ids();
        let mut acked = write_n(&s, &ids, "before", 30).await;

        // A follower first, then the leader of the moment: two replacements back to back.
        let leader = s.leader().await;
        let first = ids.iter().copied().find(|&i| i != leader).unwrap();
        for (round, victim) in [first, leader].into_iter().enumerate() {
            let survivors: Vec<u64> = ids.iter().copied().filter(|&i| i != victim).collect();
            eprintln!(
                "  round {round}: replacing node {victim}'s disk (runbook: --join, add-voter)"
            );
            s.q.stop(victim).await.unwrap();
            s.q.wipe_and_reformat(victim).await.unwrap();
            s.q.restart(victim).await.unwrap();
            s.q.wait_healthy(victim, READY).await.unwrap();
            let joined = current_run_log(&s, victim);
            assert!(joined.contains("formatted to join (--join)"), "{joined}");
            let new_voter = s.q.node(victim).unwrap().as_new_voter();
            let via = s.q.wait_leader_among(&survivors, ELECTION).await.unwrap();
            let mut voters = s.client(via).add_voter(&new_voter).await.unwrap();
            voters.sort_unstable();
            assert_eq!(voters, ids, "add-voter answers the voters");
            let log = current_run_log(&s, victim);
            assert!(
                !log.contains(INITIALIZED),
                "a joining node never initializes a log of its own:\n{log}"
            );
            // Right away (no settling time) a few more writes, then the next replacement.
            acked.extend(write_n(&s, &survivors, &format!("round{round}"), 10).await);
        }

        all_voters_hold_every_write(&s, &ids, &mut acked).await;
    });
}

#[test]
fn formatting_wiped_disks_with_the_original_voters_cannot_erase_history() {
    run(
        "wrong_format_command_costs_availability_not_history",
        async {
            let mut s = Scenario::start(3, &[NO_NOOPS]).await;
            let ids = s.q.ids();
            let acked = write_n(&s, &ids, "before", 30).await;
            let last = acked.iter().map(|a| a.offset).max().unwrap();
            wait_same_image(&s, &ids, last + 1).await;

            // 0. recover-quorum refuses while the quorum is not lost: a stopped voter whose
            //    peers still answer with their recorded disks is left as it was.
            let leader = s.leader().await;
            s.q.stop(leader).await.unwrap();
            let out = recover_quorum(&s, leader, false);
            assert!(!out.status.success(), "{}", text(&out.stdout));
            assert!(
                text(&out.stderr).contains("still answer with the disk the membership records"),
                "{}",
                text(&out.stderr)
            );
            s.q.restart(leader).await.unwrap();
            s.q.wait_healthy(leader, READY).await.unwrap();
            wait_same_image(&s, &ids, last + 1).await;

            // 1. One wiped node, the survivors up: it is vetoed (never initializes); under its
            //    new directory id the leader takes it back once it has caught up.
            let leader = s.leader().await;
            let x = ids.iter().copied().find(|&i| i != leader).unwrap();
            eprintln!("  wiping node {x}, formatting it with the original --voters");
            s.q.stop(x).await.unwrap();
            s.q.wipe_and_reformat_with_voters(x).await.unwrap();
            s.q.restart(x).await.unwrap();
            s.q.wait_healthy(x, READY).await.unwrap();
            eventually(&format!("node {x} logs the veto"), CONVERGE, || {
                let log = current_run_log(&s, x);
                async move {
                    if log.contains(VETO) {
                        Ok(())
                    } else {
                        Err(log)
                    }
                }
            })
            .await;
            let log = current_run_log(&s, x);
            assert!(!log.contains(INITIALIZED), "{log}");
            assert!(log.contains("--join"), "the veto says what to do: {log}");
            wait_all_report_voters(&s, &ids, CONVERGE).await;
            wait_same_image(&s, &ids, last + 1).await;
            assert_acked_present(&s, &ids, &acked).await;

            // 2. The case that erased history before: two wiped nodes formatted with the
            //    original --voters while the only node with the history is down. They reach
            //    each other, both at bootstrap, but not the third: no first election.
            let keeper = ids[2];
            let wiped = [ids[0], ids[1]];
            let hw_before = s.status(keeper).await.high_watermark;
            let log_before = read_log(&s.client(keeper), 0, hw_before, 1 << 20).await;
            eprintln!("  stopping node {keeper} (keeps the history); wiping nodes {wiped:?}");
            s.q.stop(keeper).await.unwrap();
            for w in wiped {
                s.q.stop(w).await.unwrap();
                s.q.wipe_and_reformat_with_voters(w).await.unwrap();
            }
            for w in wiped {
                s.q.restart(w).await.unwrap();
            }
            for w in wiped {
                s.q.wait_healthy(w, READY).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            for w in wiped {
                let log = current_run_log(&s, w);
                assert!(!log.contains(INITIALIZED), "node {w} initialized:\n{log}");
                assert!(
                    log.contains("first election waits until every bootstrap voter answers"),
                    "node {w}:\n{log}"
                );
                let st = s.status(w).await;
                assert_eq!(st.leader_id, None, "node {w}: {st:?}");
            }

            // 3. The keeper comes back: both wiped nodes are vetoed; the keeper's history is
            //    whole (the quorum may stay unavailable until an operator acts).
            s.q.restart(keeper).await.unwrap();
            s.q.wait_healthy(keeper, READY).await.unwrap();
            for w in wiped {
                eventually(&format!("node {w} logs the veto"), CONVERGE, || {
                    let log = current_run_log(&s, w);
                    async move {
                        if log.contains(VETO) {
                            Ok(())
                        } else {
                            Err(log)
                        }
                    }
                })
                .await;
            }
            // Long enough for two wiped nodes that had started a history of their own to
            // out-term the keeper and overwrite its log (a few elections).
            let watch = std::time::Instant::now();
            while watch.elapsed() < Duration::from_secs(5) {
                let st = s.status(keeper).await;
                assert!(
                    st.high_watermark >= hw_before,
                    "node {keeper}'s log went back: {hw_before} -> {}",
                    st.high_watermark
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            for w in wiped {
                let log = current_run_log(&s, w);
                assert!(!log.contains(INITIALIZED), "node {w} initialized:\n{log}");
            }
            let st = s.status(keeper).await;
            eprintln!("  keeper node {keeper}: {st:?}");
            assert!(
                st.high_watermark >= hw_before && st.high_watermark > last,
                "node {keeper}'s log went back: {} -> {}",
                hw_before,
                st.high_watermark
            );
            assert_acked_present(&s, &[keeper], &acked).await;
            // With both other voters vetoed the keeper may have no quorum, and then no high
            // watermark it may serve (KIP-595): its log is compared only when it serves one.
            match try_read_log(
                &s.client(keeper),
                0,
                hw_before,
                1 << 20,
                Duration::from_secs(10),
            )
            .await
            {
                Ok(log_after) => {
                    assert!(
                        log_after == log_before,
                        "node {keeper}'s log changed below offset {hw_before}"
                    );
                    eprintln!("  node {keeper}'s log is unchanged up to offset {hw_before}");
                }
                Err(e) => eprintln!(
                    "  node {keeper} serves no log without a quorum ({e}); its high watermark and acknowledged writes were checked above"
                ),
            }

            // 4. The operator acts (deploy/README.md, "Recovering a lost quorum"): refused while
            //    the keeper runs; once it is stopped, its peers answer with new directory ids,
            //    so recover-quorum makes it the only voter. It elects itself with every
            //    acknowledged write; the wiped nodes are formatted to join and added back.
            let out = recover_quorum(&s, keeper, false);
            assert!(!out.status.success());
            assert!(
                text(&out.stderr).contains("still running"),
                "{}",
                text(&out.stderr)
            );
            s.q.stop(keeper).await.unwrap();
            // A voter that does not answer might still hold its disk: only --force passes it.
            let silent = wiped[0];
            s.q.stop(silent).await.unwrap();
            let out = recover_quorum(&s, keeper, false);
            assert!(!out.status.success());
            let err = text(&out.stderr);
            assert!(
                err.contains(&format!("node {silent} (")) && err.contains("--force"),
                "{err}"
            );
            let out = recover_quorum(&s, silent, false);
            assert!(
                !out.status.success(),
                "a wiped node has nothing to recover from"
            );
            assert!(
                text(&out.stderr).contains("holds no log"),
                "{}",
                text(&out.stderr)
            );
            // Without --yes: what it would do, the offsets it knows, and nothing written.
            let before = storage_info(&s, keeper);
            let out = recover_quorum_with(&s, keeper, &["--force"]);
            let said = text(&out.stdout);
            eprintln!("  kraftd recover-quorum --force (no --yes) on node {keeper}:\n{said}");
            assert_eq!(out.status.code(), Some(1), "{said}");
            assert!(
                text(&out.stderr).contains("nothing written; run it again with --yes"),
                "{}",
                text(&out.stderr)
            );
            assert!(said.contains("would become the only voter"), "{said}");
            assert!(
                said.contains("the last entry it knows committed is T"),
                "{said}"
            );
            assert!(
                said.contains("May be lost: writes that only the lost voters held"),
                "{said}"
            );
            assert_eq!(
                storage_info(&s, keeper),
                before,
                "the preview wrote nothing"
            );
            let out = recover_quorum(&s, keeper, true);
            assert!(
                out.status.success(),
                "{}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
            let said = text(&out.stdout);
            eprintln!("  kraftd recover-quorum on node {keeper}:\n{said}");
            assert!(said.contains("is now the only voter"), "{said}");
            assert!(said.contains("disk replaced"), "{said}");
            assert!(said.contains("not answering"), "{said}");
            s.q.restart(keeper).await.unwrap();
            s.q.wait_healthy(keeper, READY).await.unwrap();
            let alone = s.q.wait_leader_among(&[keeper], ELECTION).await.unwrap();
            assert_eq!(alone, keeper);
            wait_voters(
                &s.client(keeper),
                &[keeper],
                "the keeper is the only voter",
                CONVERGE,
            )
            .await;
            assert_acked_present(&s, &[keeper], &acked).await;
            let mut acked = acked;
            acked.extend(write_n(&s, &[keeper], "recovered", 5).await);
            for w in wiped {
                if w != silent {
                    s.q.stop(w).await.unwrap();
                }
                s.q.wipe_and_reformat(w).await.unwrap();
                s.q.restart(w).await.unwrap();
                s.q.wait_healthy(w, READY).await.unwrap();
                let new_voter = s.q.node(w).unwrap().as_new_voter();
                s.client(keeper).add_voter(&new_voter).await.unwrap();
            }
            all_voters_hold_every_write(&s, &ids, &mut acked).await;
        },
    );
}

/// `kraftd recover-quorum --yes` on node `id`'s data directory (and `--force`).
fn recover_quorum(s: &Scenario, id: u64, force: bool) -> std::process::Output {
    let force: &[&str] = if force {
        &["--yes", "--force"]
    } else {
        &["--yes"]
    };
    recover_quorum_with(s, id, force)
}

/// `kraftd recover` (the short name) on node `id`'s data directory with `args`.
fn recover_quorum_with(s: &Scenario, id: u64, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kraftd"))
        .arg("recover")
        .arg("--data-dir")
        .arg(&s.q.node(id).unwrap().data_dir)
        .args(args)
        .output()
        .unwrap()
}

/// `kraftd storage info` of node `id`'s Raft log: its entries, end offset, last entry,
/// commit and vote.
fn storage_info(s: &Scenario, id: u64) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kraftd"))
        .args(["storage", "info", "--output", "json"])
        .arg(&s.q.node(id).unwrap().data_dir)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["raft_log"].clone()
}

/// `kraftd format` of node `id`'s (empty) data directory with `--voters` carrying every
/// voter's directory id as it is now: Kafka's `--initial-controllers` form re-used on a
/// wiped disk, which hands the disk the identity of the one it replaced.
fn format_with_directory_ids(s: &Scenario, id: u64, voters_with_ids: &str) {
    let n = s.q.node(id).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kraftd"))
        .arg("format")
        .arg(format!("--data-dir={}", n.data_dir.display()))
        .arg(format!("--cluster-id={}", s.q.cluster_id()))
        .arg(format!("--node-id={id}"))
        .arg(format!("--voters={voters_with_ids}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_wiped_disk_given_its_old_directory_id_by_voters_refuses_raft_until_reformatted_to_join() {
    run("voters_with_directory_ids_on_a_wiped_disk", async {
        let mut s = Scenario::start(3, &[NO_NOOPS]).await;
        let ids = s.q.ids();
        let mut acked = write_n(&s, &ids, "before", 20).await;
        let leader = s.leader().await;
        let victim = ids.iter().copied().find(|&i| i != leader).unwrap();
        let survivors: Vec<u64> = ids.iter().copied().filter(|&i| i != victim).collect();
        let voters_with_ids: Vec<String> =
            s.q.nodes()
                .iter()
                .map(|n| {
                    let m = kraftd::node::meta::MetaProperties::read(&n.data_dir).unwrap();
                    format!(
                        "{}@{}:{}",
                        n.id,
                        n.peer_addr,
                        kraftd::record::uuid_fmt::kafka_uuid(&m.directory_id)
                    )
                })
                .collect();
        let voters_with_ids = voters_with_ids.join(",");
        let old_dir = kraftd::node::meta::MetaProperties::read(&s.q.node(victim).unwrap().data_dir)
            .unwrap()
            .directory_id;

        eprintln!("  wiping node {victim}; formatting it with --voters {voters_with_ids}");
        s.q.stop(victim).await.unwrap();
        std::fs::remove_dir_all(&s.q.node(victim).unwrap().data_dir).unwrap();
        format_with_directory_ids(&s, victim, &voters_with_ids);
        let reused = kraftd::node::meta::MetaProperties::read(&s.q.node(victim).unwrap().data_dir)
            .unwrap()
            .directory_id;
        assert_eq!(
            reused, old_dir,
            "the wrong command re-uses the old identity"
        );
        s.q.restart(victim).await.unwrap();
        s.q.wait_healthy(victim, READY).await.unwrap();
        eventually(&format!("node {victim} logs the veto"), CONVERGE, || {
            let log = current_run_log(&s, victim);
            async move {
                if log.contains(VETO) && log.contains("refuses every Raft request") {
                    Ok(())
                } else {
                    Err(log)
                }
            }
        })
        .await;

        // The two survivors still make the quorum; the old identity takes no part: the node
        // under it refuses every append and vote, so it holds nothing.
        acked.extend(write_n(&s, &survivors, "vetoed", 20).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let st = s.status(victim).await;
        assert_eq!(st.high_watermark, 0, "node {victim} took entries: {st:?}");
        let log = current_run_log(&s, victim);
        assert!(!log.contains(INITIALIZED), "{log}");

        // The runbook repairs it: --join, then add-voter.
        s.q.stop(victim).await.unwrap();
        s.q.wipe_and_reformat(victim).await.unwrap();
        s.q.restart(victim).await.unwrap();
        s.q.wait_healthy(victim, READY).await.unwrap();
        let new_voter = s.q.node(victim).unwrap().as_new_voter();
        let mut voters = s.client(survivors[0]).add_voter(&new_voter).await.unwrap();
        voters.sort_unstable();
        assert_eq!(voters, ids);
        all_voters_hold_every_write(&s, &ids, &mut acked).await;
    });
}
