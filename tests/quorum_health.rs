//! `GET /v1/quorum/health` and `kraftd quorum health` on a real three-node quorum whose
//! followers are frozen with SIGSTOP, one and then both, and thawed again. A frozen voter
//! has replicated everything, so its lag stays 0: the test checks that it shows as `down`
//! all the same, in the health verdict, in `quorum replication` and in the leader's
//! `/metrics`, and that the verdict, the HTTP status and the CLI's exit code move from
//! healthy to degraded to unavailable and back.

mod common;

use common::*;
use std::time::Duration;

use kraftd::client::{Client, HealthStatus, QuorumHealth};

/// What one run of the binary gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `kraftd quorum health --api API [extra]` (bounded).
async fn health_cli(api: &str, extra: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kraftd"));
    cmd.args(["quorum", "health", "--api", api])
        .args(extra)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(40), cmd.output())
        .await
        .expect("kraftd quorum health finishes within 40 s")
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The HTTP status and verdict of `GET /v1/quorum/health` on `c`.
async fn health_http(c: &Client) -> Result<(u16, QuorumHealth), String> {
    let url = format!("{}/v1/quorum/health", c.base_url());
    let r = reqwest::get(&url).await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let h = r.json::<QuorumHealth>().await.map_err(|e| e.to_string())?;
    Ok((status, h))
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child process this test started; no memory is shared.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Asks `c` `times` times over about `times` × 250 ms: the verdict must be `summary` every
/// time (a member that flaps between up and down, or caught up and behind, fails this).
async fn holds(c: &Client, summary: &str, times: usize) {
    for i in 0..times {
        let (_, h) = health_http(c).await.unwrap();
        assert_eq!(h.summary, summary, "ask {i} of {times}: {h:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the verdict asked of `c` has `status`, and returns it.
async fn wait_verdict(c: &Client, status: HealthStatus, what: &str) -> (u16, QuorumHealth) {
    eventually(what, CONVERGE, || async {
        let (code, h) = health_http(c).await?;
        if h.status == status {
            Ok((code, h))
        } else {
            Err(format!("{code} {}", h.summary))
        }
    })
    .await
}

#[test]
fn a_frozen_follower_shows_down_not_caught_up_and_health_follows_what_can_still_commit() {
    run("quorum_health", async {
        // No idle NoOps: a frozen follower then stays at lag 0, the case that must not
        // read as caught up.
        let mut s = Scenario::start(3, &[NO_NOOPS]).await;
        let leader = s.leader().await;
        let ids = s.q.ids();
        let followers: Vec<u64> = ids.iter().copied().filter(|&i| i != leader).collect();
        let (frozen, other) = (followers[0], followers[1]);
        let api = |id: u64| s.q.node(id).unwrap().api_addr.to_string();

        eprintln!("step 1: all three up: healthy, can lose 1, from every node");
        for &id in &ids {
            let (code, h) = wait_verdict(
                &s.client(id),
                HealthStatus::Healthy,
                &format!("node {id} says healthy"),
            )
            .await;
            assert_eq!(code, 200);
            assert_eq!(h.summary, "healthy, can lose 1");
            assert_eq!(
                (
                    h.voters,
                    h.voters_up,
                    h.voters_caught_up,
                    h.majority,
                    h.can_lose
                ),
                (3, 3, 3, 2, 1)
            );
            assert_eq!(
                h.reported_by, leader,
                "the leader judges, node {id} asks it"
            );
            assert!(h.members.iter().all(|m| m.up && m.caught_up), "{h:?}");
        }
        let r = health_cli(&api(other), &[]).await;
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stdout.starts_with("healthy, can lose 1\n"), "{r:?}");
        eprintln!(
            "  under writes, for 3 s, it stays healthy (no follower flaps to down or behind)"
        );
        let writer = Writer::spawn("healthy", s.clients(&ids));
        holds(&s.client(other), "healthy, can lose 1", 12).await;
        writer.stop().await;

        eprintln!("step 2: node {frozen} is frozen (SIGSTOP) with every record replicated");
        let pid = s.q.node(frozen).unwrap().pid().expect("running");
        signal(pid, libc::SIGSTOP);
        let (code, h) = wait_verdict(
            &s.client(other),
            HealthStatus::Degraded,
            "the quorum is degraded",
        )
        .await;
        eprintln!("  {}", h.summary);
        assert_eq!(code, 200, "writes still commit");
        assert_eq!(h.summary, format!("degraded (down: {frozen}), can lose 0"));
        holds(&s.client(other), &h.summary, 12).await;
        assert_eq!((h.voters_up, h.can_lose), (2, 0));
        let m = h.members.iter().find(|m| m.node_id == frozen).unwrap();
        assert!(!m.up && !m.caught_up, "{m:?}");
        assert!(
            m.last_ack_ms_ago.unwrap_or(i64::MAX) > h.down_after_ms,
            "{m:?}"
        );
        eprintln!("  node {frozen}: lag {} records, yet down", m.lag);

        eprintln!("  quorum replication marks it down, whatever its lag");
        let rows = s.client(leader).replication().await.unwrap();
        let row = rows.iter().find(|r| r.node_id == frozen).unwrap();
        assert!(row.up == Some(false) && row.lag == 0, "{row:?}");
        assert!(rows
            .iter()
            .filter(|r| r.node_id != frozen)
            .all(|r| r.up == Some(true)));

        eprintln!("  the leader's /metrics says 0 for it and 1 for the others");
        let url = format!("{}/metrics", s.client(leader).base_url());
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        for &id in &ids {
            let line = format!("kraftd_quorum_member_up{{node_id=\"{id}\",role=\"voter\"}} ");
            let want = if id == frozen { "0" } else { "1" };
            assert!(
                text.lines().any(|l| l == format!("{line}{want}")),
                "no `{line}{want}` in:\n{text}"
            );
        }

        eprintln!("  the CLI prints the verdict and exits 5");
        let r = health_cli(&api(other), &[]).await;
        assert_eq!(r.code, 5, "{r:?}");
        assert!(
            r.stderr
                .starts_with("kraftd: QUORUM_DEGRADED: degraded (down: "),
            "{r:?}"
        );
        let row = r
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&frozen.to_string()))
            .unwrap_or_else(|| panic!("no row for node {frozen}: {r:?}"));
        assert_eq!(
            row.split_whitespace().take(4).collect::<Vec<_>>(),
            [frozen.to_string().as_str(), "Follower", "down", "no"],
            "{r:?}"
        );
        let j = health_cli(&api(other), &["--output", "json"]).await;
        assert_eq!(j.code, 5, "{j:?}");
        let parsed: QuorumHealth = serde_json::from_str(&j.stdout).unwrap();
        assert_eq!(parsed.status, HealthStatus::Degraded);

        eprintln!("  writes still commit through the other follower");
        write_n(&s, &[other], "degraded", 10).await;

        eprintln!("step 3: node {other} is frozen too: no majority, unavailable, 503, exit 1");
        let pid2 = s.q.node(other).unwrap().pid().expect("running");
        signal(pid2, libc::SIGSTOP);
        let (code, h) = wait_verdict(
            &s.client(leader),
            HealthStatus::Unavailable,
            "the quorum is unavailable",
        )
        .await;
        eprintln!("  {}", h.summary);
        assert_eq!(code, 503);
        assert_eq!(h.can_lose, 0);
        let r = health_cli(&api(leader), &[]).await;
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stderr
                .starts_with("kraftd: QUORUM_UNAVAILABLE: unavailable: "),
            "{r:?}"
        );

        eprintln!("step 4: both thawed (SIGCONT): healthy again on every node");
        signal(pid, libc::SIGCONT);
        signal(pid2, libc::SIGCONT);
        for &id in &ids {
            wait_verdict(
                &s.client(id),
                HealthStatus::Healthy,
                &format!("node {id} says healthy again"),
            )
            .await;
        }
        let acked = write_n(&s, &ids, "after", 10).await;
        // A follower's reads may trail what it forwarded: wait until all have applied it.
        let last = acked.iter().map(|a| a.offset).max().unwrap();
        wait_same_image(&s, &ids, last + 1).await;
        assert_acked_present(&s, &ids, &acked).await;
    });
}
