//! Moving a controller to new ports with a majority alive (`kraftd quorum update-voter`,
//! Kafka's UpdateRaftVoter), on a real three-node quorum under writes: the follower is
//! stopped, started on new ports with the same disk, and the membership is updated
//! through the CLI. It catches up at its new address, the leader's health verdict is healthy
//! again, and every acknowledged write is on every node. Requests that name a node that is
//! not a member, or an address where another node answers, are refused and change nothing.

mod common;

use common::*;
use std::time::Duration;

use kraftd::cli::local_quorum::free_ports;
use kraftd::client::{ClientError, HealthStatus, VoterAddress};

fn refusal<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api(a)) => (a.status.as_u16(), a.message.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn update_voter_moves_a_follower_to_new_ports_under_writes_and_loses_no_acknowledged_write() {
    run("update_voter_new_ports", async {
        let mut s = Scenario::start(3, &[]).await;
        let ids = s.q.ids();
        let leader = s.leader().await;
        let moved = ids.iter().copied().find(|&i| i != leader).unwrap();
        let other = ids
            .iter()
            .copied()
            .find(|&i| i != leader && i != moved)
            .unwrap();

        eprintln!("step 1: a writer sets config keys through the leader and node {other}");
        let writer = Writer::spawn("move", s.clients(&[leader, other]));
        writer.wait_acked(50, Duration::from_secs(30)).await;

        eprintln!("step 2: refusals change nothing");
        let c = s.client(other);
        let before = s.status(leader).await.voters;
        let peer_of = |id: u64| s.q.node(id).unwrap().peer_addr.to_string();
        let (code, msg) = refusal(
            c.update_voter(
                9,
                &VoterAddress {
                    peer: peer_of(moved),
                    api: None,
                },
            )
            .await,
        );
        assert_eq!(code, 404, "{msg}");
        eprintln!("  a node that is no member: 404 ({msg})");
        let (code, msg) = refusal(
            c.update_voter(
                moved,
                &VoterAddress {
                    peer: peer_of(other),
                    api: None,
                },
            )
            .await,
        );
        assert_eq!(code, 400, "{msg}");
        assert!(
            msg.contains(&format!("is node {other} of cluster")),
            "{msg}"
        );
        eprintln!("  another node's address: 400 ({msg})");
        assert_eq!(s.status(leader).await.voters, before);

        eprintln!("step 3: node {moved} stops and starts again on new ports, with its disk");
        s.q.stop(moved).await.unwrap();
        let ports = free_ports(2).unwrap();
        s.q.move_to(moved, ports[0], ports[1]).unwrap();
        s.q.restart(moved).await.unwrap();
        let n = s.q.node(moved).unwrap();
        let (new_api, new_peer) = (n.api_addr.to_string(), n.peer_addr.to_string());
        eprintln!("  node {moved}: api {new_api} peer {new_peer}");
        let n = writer.acked_count();
        writer.wait_acked(n + 30, Duration::from_secs(30)).await;

        eprintln!("step 4: kraftd quorum update-voter, through node {other}");
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kraftd"))
            .args(["quorum", "update-voter", "--id", &moved.to_string()])
            .args(["--peer", &new_peer, "--api", c.base_url()])
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            said.trim(),
            format!("Node {moved} now listens at peer {new_peer} and API {new_api}.")
        );

        eprintln!("step 5: node {moved} catches up at its new address; the quorum is healthy");
        eventually("the leader reports the new address", CONVERGE, || async {
            let st = s.client(leader).quorum_status().await.map_err(err_text)?;
            match st.voters.iter().find(|v| v.id == moved) {
                Some(v) if v.peer == new_peer && v.api.as_deref() == Some(new_api.as_str()) => {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        s.q.wait_ready(moved, READY).await.unwrap();
        eventually("healthy, node caught up", CONVERGE, || async {
            let h = s.client(moved).quorum_health().await.map_err(err_text)?;
            if h.status == HealthStatus::Healthy {
                Ok(())
            } else {
                Err(h.summary)
            }
        })
        .await;
        writer.set_targets(s.clients(&ids));
        let n = writer.acked_count();
        writer.wait_acked(n + 30, Duration::from_secs(30)).await;
        let acked = writer.stop().await;

        eprintln!("step 6: every node holds every acknowledged write and the same image");
        wait_all_report_voters(&s, &ids, Duration::from_secs(20)).await;
        let last = acked.iter().map(|a| a.offset).max().unwrap();
        wait_same_image(&s, &ids, last + 1).await;
        assert_acked_present(&s, &ids, &acked).await;
    });
}
