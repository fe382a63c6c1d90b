//! Membership changes on real processes: a fourth controller joins as a voter and one of
//! the original three is removed while a writer keeps writing; no acknowledged write is
//! lost and every node reports the new voter set.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn adding_a_fourth_voter_and_removing_one_under_writes_keeps_every_acknowledged_write() {
    run("add_and_remove_voters_under_writes", async {
        // 1. Three voters and a writer spreading writes over them.
        let mut s = Scenario::start(3, &[NO_NOOPS]).await;
        let ids = s.q.ids();
        let leader = s.leader().await;
        let writer = Writer::spawn("members", s.clients(&ids));
        writer.wait_acked(30, Duration::from_secs(30)).await;

        // 2. Node 4: formatted with the same cluster id and the existing voters, started,
        //    then added through the API (learner first, a voter once caught up).
        s.q.add_node(4).await.unwrap();
        s.q.wait_healthy(4, READY).await.unwrap();
        let four = s.q.node(4).unwrap();
        eprintln!("  node 4: api {} peer {}", four.api_addr, four.peer_addr);
        let new_voter = four.as_new_voter();
        let voters = s.client(leader).add_voter(&new_voter).await.unwrap();
        let mut sorted = voters.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![1, 2, 3, 4]);
        s.q.wait_ready(4, READY).await.unwrap();
        let with_four = vec![1, 2, 3, 4];
        writer.set_targets(s.clients(&with_four));
        let n = writer.acked_count();
        writer.wait_acked(n + 30, Duration::from_secs(30)).await;

        // 3. Remove one of the original followers (sent to node 4, which forwards it).
        let leader = s.leader().await;
        let gone = ids.iter().copied().find(|&i| i != leader).unwrap();
        eprintln!("  removing voter node {gone} (leader is node {leader})");
        let voters = s.client(4).remove_voter(gone).await.unwrap();
        let remaining: Vec<u64> = with_four.iter().copied().filter(|&i| i != gone).collect();
        let mut sorted = voters.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, remaining);
        writer.set_targets(s.clients(&remaining));
        let n = writer.acked_count();
        writer.wait_acked(n + 30, Duration::from_secs(30)).await;
        s.q.stop(gone).await.unwrap();
        let n = writer.acked_count();
        writer.wait_acked(n + 20, Duration::from_secs(30)).await;
        let acked = writer.stop().await;

        // 4. Every remaining node reports the new voter set, holds every acknowledged write,
        //    and the same image.
        wait_all_report_voters(&s, &remaining, Duration::from_secs(20)).await;
        let last = acked.iter().map(|a| a.offset).max().unwrap();
        wait_same_image(&s, &remaining, last + 1).await;
        assert_acked_present(&s, &remaining, &acked).await;
    });
}

#[test]
fn removing_the_leader_moves_leadership_to_a_remaining_voter_and_keeps_every_acknowledged_write() {
    run("remove_the_leader_under_writes", async {
        // 1. Three voters and a writer spreading writes over them.
        let mut s = Scenario::start(3, &[NO_NOOPS]).await;
        let ids = s.q.ids();
        let leader = s.leader().await;
        let writer = Writer::spawn("noleader", s.clients(&ids));
        writer.wait_acked(30, Duration::from_secs(30)).await;

        // 2. Remove the leader itself, asking a follower (which forwards the request).
        let remaining: Vec<u64> = ids.iter().copied().filter(|&i| i != leader).collect();
        eprintln!(
            "  removing the leader, node {leader}, through node {}",
            remaining[0]
        );
        let mut voters = s.client(remaining[0]).remove_voter(leader).await.unwrap();
        voters.sort_unstable();
        assert_eq!(voters, remaining);
        writer.set_targets(s.clients(&remaining));

        // 3. One of the remaining voters leads; writes go on; the removed node is stopped.
        let new = s.q.wait_leader_among(&remaining, ELECTION).await.unwrap();
        eprintln!("  node {new} leads now");
        let n = writer.acked_count();
        writer.wait_acked(n + 30, Duration::from_secs(30)).await;
        s.q.stop(leader).await.unwrap();
        let n = writer.acked_count();
        writer.wait_acked(n + 20, Duration::from_secs(30)).await;
        let acked = writer.stop().await;

        // 4. The remaining nodes agree on the voters, the image and every acknowledged write.
        for &id in &remaining {
            let st = s.status(id).await;
            assert_eq!(st.voter_ids(), remaining, "node {id}: {st:?}");
        }
        let last = acked.iter().map(|a| a.offset).max().unwrap();
        wait_same_image(&s, &remaining, last + 1).await;
        assert_acked_present(&s, &remaining, &acked).await;
    });
}
