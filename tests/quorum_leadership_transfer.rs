//! Moving leadership on purpose, on a real three-node quorum: `POST
//! /v1/quorum/transfer-leader` (`kraftd quorum transfer-leader`) hands it to the voter
//! named, and SIGTERM on a leader hands it over before the process exits. Writes run the
//! whole time; afterwards every acknowledged write is on every node and the images agree.
//! A request that names no voter, or a voter that is down, is refused and changes nothing;
//! one that names the leader itself succeeds with nothing changed.
//! Write latency during a transfer is a figure of `kraftd bench quorum`, not asserted here.

mod common;

use common::*;
use std::time::Duration;

use kraftd::cli::local_quorum::StopOutcome;
use kraftd::client::{Client, ClientError};

/// The refusal of a transfer request: its HTTP status and code.
fn refusal(r: Result<kraftd::client::LeaderMoved, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api(a)) => (a.status.as_u16(), a.code.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn leader_and_epoch(c: &Client) -> (Option<u64>, i64) {
    let st = c.quorum_status().await.unwrap();
    (st.leader_id, st.leader_epoch)
}

#[test]
fn transfer_leader_hands_leadership_to_the_named_voter_under_writes_and_loses_no_acknowledged_write(
) {
    run("transfer_leader_to_named_voter", async {
        let mut s = Scenario::start(3, &[]).await;
        let ids = s.q.ids();
        let old = s.leader().await;
        let old_epoch = s.status(old).await.leader_epoch;
        let others: Vec<u64> = ids.iter().copied().filter(|&i| i != old).collect();
        let to = others[s.rng.below(others.len() as u64) as usize];
        let via = others.iter().copied().find(|&i| i != to).unwrap_or(to);

        eprintln!("step 1: a writer sets config keys through all three nodes");
        let writer = Writer::spawn("transfer", s.clients(&ids));
        writer.wait_acked(100, Duration::from_secs(30)).await;

        eprintln!("step 2: requests that could not move leadership change nothing");
        let c = s.client(via);
        eprintln!("  a node that is no voter: 404");
        assert_eq!(
            refusal(c.transfer_leader(Some(99)).await),
            (404, "VOTER_NOT_FOUND".to_string())
        );
        eprintln!("  the leader itself: done already");
        let same = c.transfer_leader(Some(old)).await.unwrap();
        assert_eq!(
            (same.previous_leader_id, same.leader_id, same.leader_epoch),
            (old, old, old_epoch)
        );
        eprintln!("  a voter that is stopped (node {via}): 409, the leader does not stall");
        s.q.stop(via).await.unwrap();
        // Its last answer to the leader grows older than an election timeout (300 ms).
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            refusal(s.client(old).transfer_leader(Some(via)).await),
            (409, "INELIGIBLE_REPLICA".to_string())
        );
        assert_eq!(
            leader_and_epoch(&s.client(old)).await,
            (Some(old), old_epoch),
            "a refused transfer moved leadership"
        );
        s.q.restart(via).await.unwrap();
        s.q.wait_ready(via, Duration::from_secs(30)).await.unwrap();

        eprintln!("step 3: node {via} is asked to hand leadership from node {old} to node {to}");
        let moved = c.transfer_leader(Some(to)).await.unwrap();
        eprintln!("  answer: {moved:?}");
        assert_eq!(moved.previous_leader_id, old);
        assert_eq!(moved.previous_leader_epoch, old_epoch);
        assert_eq!(moved.leader_id, to, "the voter named leads");
        assert!(moved.leader_epoch > old_epoch);
        for &id in &ids {
            let c = s.client(id);
            eventually(
                &format!("node {id} follows node {to}"),
                Duration::from_secs(10),
                || async {
                    let (leader, epoch) = leader_and_epoch(&c).await;
                    if leader == Some(to) && epoch == moved.leader_epoch
                        || epoch > moved.leader_epoch
                    {
                        Ok(())
                    } else {
                        Err(format!("leader {leader:?} at epoch {epoch}"))
                    }
                },
            )
            .await;
        }

        eprintln!("step 4: writes go on under the new leader");
        let before = writer.acked_count();
        writer
            .wait_acked(before + 100, Duration::from_secs(30))
            .await;
        let acked = writer.stop().await;

        eprintln!("step 5: every acknowledged write is on every node; the images agree");
        assert_acked_present(&s, &ids, &acked).await;
        let end = acked.iter().map(|a| a.offset).max().unwrap_or(0);
        wait_same_image(&s, &ids, end + 1).await;
    });
}

#[test]
fn sigterm_on_the_leader_hands_leadership_over_before_the_process_exits() {
    run("sigterm_hands_leadership_over", async {
        let mut s = Scenario::start(3, &[]).await;
        let ids = s.q.ids();
        let old = s.leader().await;
        let old_epoch = s.status(old).await.leader_epoch;
        let survivors: Vec<u64> = ids.iter().copied().filter(|&i| i != old).collect();

        eprintln!("step 1: a writer sets config keys through the two followers");
        let writer = Writer::spawn("sigterm", s.clients(&survivors));
        writer.wait_acked(100, Duration::from_secs(30)).await;

        eprintln!("step 2: SIGTERM to leader {old}; it exits by itself");
        let outcome = s.q.stop(old).await.unwrap();
        assert!(
            matches!(outcome, StopOutcome::Exited(st) if st.success()),
            "the leader did not exit cleanly after SIGTERM: {outcome:?}"
        );
        let log = s.q.log_tail(old, 200);
        let handed = log
            .lines()
            .find(|l| l.contains("stopping: node") && l.contains("leads now"))
            .unwrap_or_else(|| panic!("the stopped leader's log tells no hand-over:\n{log}"));
        eprintln!("  {handed}");
        let next = survivors
            .iter()
            .copied()
            .find(|id| handed.contains(&format!("stopping: node {id} leads now")))
            .unwrap_or_else(|| panic!("the hand-over names no surviving voter: {handed}"));

        eprintln!("step 3: the survivors follow node {next}, at a later epoch");
        for &id in &survivors {
            let (leader, epoch) = leader_and_epoch(&s.client(id)).await;
            assert!(
                epoch > old_epoch && (leader == Some(next) || leader.is_none()),
                "node {id} sees leader {leader:?} at epoch {epoch} after node {old} (epoch {old_epoch}) handed over to node {next}"
            );
        }
        let before = writer.acked_count();
        writer
            .wait_acked(before + 100, Duration::from_secs(30))
            .await;

        eprintln!("step 4: node {old} comes back; every acknowledged write is on all three");
        s.q.restart(old).await.unwrap();
        s.q.wait_ready(old, Duration::from_secs(30)).await.unwrap();
        let acked = writer.stop().await;
        let end = acked.iter().map(|a| a.offset).max().unwrap_or(0);
        wait_same_image(&s, &ids, end + 1).await;
        assert_acked_present(&s, &ids, &acked).await;
    });
}
