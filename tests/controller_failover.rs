//! The active controller under failover and concurrency, on a real three-node quorum:
//! killing the quorum leader fences no broker, and concurrent topic creation with clashing
//! names creates each name exactly once.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kraftd::cli::fleet::Fleet;
use kraftd::client::{Client, CreateTopic};

#[test]
fn killing_the_quorum_leader_fences_no_broker_and_topic_creation_resumes() {
    run("leader_killed_under_heartbeats", async {
        let mut s = Scenario::start(3, &[("KRAFTD_BROKER_SESSION_TIMEOUT_MS", "3000")]).await;
        let leader = s.leader().await;
        let clients: Vec<Client> = s.q.ids().iter().map(|&i| s.client(i)).collect();
        let ids: Vec<i32> = (1..=20).collect();

        eprintln!("step 1: 20 brokers heartbeat every 500 ms through all three controllers (session timeout 3 s)");
        let (fleet, _) = Fleet::start(
            &clients,
            s.q.cluster_id(),
            &ids,
            |id| Some(format!("rack-{}", id % 3)),
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        let c = s.client(leader);
        eventually(
            "all 20 brokers are active",
            Duration::from_secs(15),
            || async {
                let b = c.brokers().await.map_err(err_text)?;
                let active = b.iter().filter(|b| b.state == "active").count();
                if active == 20 {
                    Ok(())
                } else {
                    Err(format!("{active} active"))
                }
            },
        )
        .await;
        c.create_topic(&CreateTopic {
            name: "before".into(),
            partitions: Some(30),
            replication_factor: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
        let from = c.quorum_status().await.unwrap().high_watermark;
        fleet.set_offset(from);

        eprintln!(
            "step 2: kill -9 the quorum leader (node {leader}); create a topic until it works"
        );
        s.q.kill9(leader).await.unwrap();
        let killed_at = Instant::now();
        let survivors: Vec<Client> =
            s.q.ids()
                .into_iter()
                .filter(|&i| i != leader)
                .map(|i| s.client(i))
                .collect();
        let mut attempt = 0usize;
        let created_after = loop {
            let via = &survivors[attempt % survivors.len()];
            attempt += 1;
            let r = via
                .create_topic(&CreateTopic {
                    name: "after".into(),
                    partitions: Some(30),
                    replication_factor: Some(3),
                    ..Default::default()
                })
                .await;
            match r {
                Ok(_) => break killed_at.elapsed(),
                Err(e) if e.code() == Some("TOPIC_ALREADY_EXISTS") => break killed_at.elapsed(),
                Err(e) => {
                    assert!(e.is_retriable(), "topic creation failed for good: {e}");
                    assert!(
                        killed_at.elapsed() < Duration::from_secs(20),
                        "no topic creation within 20 s: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        eprintln!(
            "  topic creation worked again {:.2} s after the kill ({attempt} attempts)",
            created_after.as_secs_f64()
        );

        eprintln!(
            "step 3: brokers keep heartbeating for two more session timeouts; none is fenced"
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        let new_leader = s.leader().await;
        let nc = s.client(new_leader);
        let brokers = nc.brokers().await.unwrap();
        let fenced: Vec<i32> = brokers
            .iter()
            .filter(|b| b.state != "active")
            .map(|b| b.id)
            .collect();
        assert!(
            fenced.is_empty(),
            "brokers fenced by the failover: {fenced:?}"
        );
        assert_eq!(fleet.stats.fenced_after_unfence.load(Ordering::Relaxed), 0);
        let log = nc.fetch_log_json(from, Some(8 << 20)).await.unwrap();
        let fences: Vec<_> = log
            .records
            .iter()
            .filter(|r| r.kind == "BROKER_REGISTRATION_CHANGE_RECORD" && r.data["fenced"] == 1)
            .collect();
        assert!(
            fences.is_empty(),
            "fence records after the kill: {fences:?}"
        );
        eprintln!(
            "  heartbeats answered {}, failed {} (while no leader was known)",
            fleet.stats.heartbeats.load(Ordering::Relaxed),
            fleet.stats.errors.load(Ordering::Relaxed)
        );
        fleet.stop().await;
    });
}

#[test]
fn sixty_four_clients_creating_clashing_topics_create_each_name_exactly_once() {
    run("concurrent_topic_creation", async {
        let mut s = Scenario::start(3, &[]).await;
        let leader = s.leader().await;
        let clients: Vec<Client> = s.q.ids().iter().map(|&i| s.client(i)).collect();
        let (fleet, _) = s
            .start_brokers(&[1, 2, 3, 4], |_| None, Duration::from_millis(500))
            .await;
        let c = s.client(leader);
        let seed = s.rng.next();
        eprintln!("step 1: 64 clients create 8 topics each from a pool of 100 names, through every controller (seed {seed})");
        let results = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for client_no in 0..64u64 {
            let via = clients[(client_no as usize) % clients.len()].clone();
            let results = results.clone();
            tasks.push(tokio::spawn(async move {
                let mut x = seed ^ (client_no.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
                for _ in 0..8 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let name = format!("clash-{}", x % 100);
                    let r = via
                        .create_topic(&CreateTopic {
                            name: name.clone(),
                            partitions: Some(3),
                            replication_factor: Some(2),
                            ..Default::default()
                        })
                        .await;
                    let outcome = match r {
                        Ok(_) => "created".to_string(),
                        Err(e) => e.code().unwrap_or("(transport)").to_string(),
                    };
                    results.lock().unwrap().push((name, outcome));
                }
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .unwrap()
                .unwrap();
        }
        let results = results.lock().unwrap().clone();
        assert_eq!(results.len(), 64 * 8);

        eprintln!(
            "step 2: every answer is success or TOPIC_ALREADY_EXISTS; each name was created once"
        );
        let mut created: BTreeMap<String, usize> = BTreeMap::new();
        for (name, outcome) in &results {
            match outcome.as_str() {
                "created" => *created.entry(name.clone()).or_default() += 1,
                "TOPIC_ALREADY_EXISTS" => {
                    created.entry(name.clone()).or_default();
                }
                other => panic!("creating {name}: {other}"),
            }
        }
        for (name, n) in &created {
            assert_eq!(*n, 1, "{name} was created {n} times");
        }
        let listed: Vec<String> = c
            .topics()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(listed, created.keys().cloned().collect::<Vec<_>>());
        eprintln!("  {} names, {} requests", created.len(), results.len());

        eprintln!("step 3: the image on every controller is identical");
        let hw = c.quorum_status().await.unwrap().high_watermark;
        let ids = s.q.ids();
        wait_same_image(&s, &ids, hw).await;
        fleet.stop().await;
    });
}
