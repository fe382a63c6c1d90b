//! The ordered write path on a real three-controller quorum: dependent and oversized writes
//! from many clients at once, and broker registrations while a voter is added and removed.
//! Afterwards every acknowledged answer is compared with every controller's image and log.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use kraftd::client::{
    Client, ConfigKind, ConfigPatch, CreateTopic, Listener, Registration, TopicDescription,
};
use kraftd::record::batch::decode_batch;
use kraftd::record::{LogRecord, MetadataRecord};

/// What the clients were told.
#[derive(Default)]
struct Answers {
    /// Topic -> configs it was created with (only acknowledged creates).
    created: BTreeMap<String, BTreeMap<String, String>>,
    /// Topic -> partitions acknowledged (created + added).
    partitions: BTreeMap<String, usize>,
    /// Topic -> config keys acknowledged by a patch.
    patched: BTreeMap<String, Vec<(String, String)>>,
    /// Answers that were neither success nor a clean refusal.
    unknown: usize,
    refused: usize,
}

fn configs(n: usize, tag: &str) -> BTreeMap<String, String> {
    (0..n)
        .map(|i| (format!("x.{tag}.{i}"), format!("v{i}")))
        .collect()
}

/// Every record of node `client`'s committed log, as (offset, record).
async fn log_records(client: &Client, hw: i64) -> Vec<(i64, LogRecord)> {
    let mut out = Vec::new();
    for (_, raw) in read_log(client, 0, hw, 4 << 20).await {
        let (batch, _) = decode_batch(&raw).expect("a batch the log served decodes");
        for r in &batch.records {
            let rec = LogRecord::decode(batch.header.is_control(), r).expect("a record decodes");
            out.push((r.offset, rec));
        }
    }
    out
}

/// The logs of `ids` are byte-identical up to `hw`.
async fn assert_same_logs(s: &Scenario, ids: &[u64], hw: i64) {
    let first = read_log(&s.client(ids[0]), 0, hw, 4 << 20).await;
    for &id in &ids[1..] {
        let other = read_log(&s.client(id), 0, hw, 4 << 20).await;
        assert_eq!(
            first.len(),
            other.len(),
            "node {id} has another batch count"
        );
        for ((o1, b1), (o2, b2)) in first.iter().zip(other.iter()) {
            assert_eq!(o1, o2, "node {id}: batch offsets differ");
            assert!(b1 == b2, "node {id}: the batch at offset {o1} differs");
        }
    }
    eprintln!(
        "  the logs of nodes {ids:?} are identical up to offset {hw} ({} batches)",
        first.len()
    );
}

/// No node logged that its image refused a record or that an invariant was violated.
fn assert_no_refusals(s: &Scenario) {
    for id in s.q.ids() {
        let log = s.q.log_tail(id, usize::MAX);
        for bad in ["record refused by the image", "invariant violated"] {
            assert!(
                !log.contains(bad),
                "node {id} logged \"{bad}\":\n{}",
                log.lines()
                    .filter(|l| l.contains(bad))
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

#[test]
fn dependent_and_oversized_writes_from_many_clients_are_each_applied_whole_on_every_controller() {
    run("dependent_and_oversized_writes", async {
        // 1. Three controllers and three brokers to place partitions on.
        let mut s = Scenario::start(3, &[]).await;
        let ids = s.q.ids();
        let (_fleet, _brokers) = s
            .start_brokers(&[1, 2, 3], |_| None, Duration::from_millis(500))
            .await;
        let answers = Arc::new(Mutex::new(Answers::default()));
        let started = Instant::now();
        let mut tasks = Vec::new();

        // 2. Four clients create topics with 6,000 configs each (more than one batch holds:
        //    each is a metadata transaction), and one creates 6,000 partitions at once.
        for c in 0..4u64 {
            let client = s.client(ids[c as usize % ids.len()]);
            let answers = answers.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..2 {
                    let name = format!("big-{c}-{i}");
                    let cfg = configs(6_000, &name);
                    let req = CreateTopic {
                        name: name.clone(),
                        partitions: Some(if c == 0 && i == 0 { 6_000 } else { 3 }),
                        replication_factor: Some(1),
                        configs: cfg.clone(),
                        assignments: None,
                    };
                    record_create(&client, &answers, req).await;
                }
            }));
        }
        // 3. Thirty-two clients create small topics, then patch each and grow it: every
        //    step depends on the one before.
        for c in 0..32u64 {
            let client = s.client(ids[c as usize % ids.len()]);
            let answers = answers.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..4 {
                    let name = format!("small-{c}-{i}");
                    let req = CreateTopic {
                        name: name.clone(),
                        partitions: Some(2),
                        replication_factor: Some(3),
                        configs: configs(3, &name),
                        assignments: None,
                    };
                    if !record_create(&client, &answers, req).await {
                        continue;
                    }
                    let key = format!("patched.{name}");
                    let change = ConfigPatch::set_one(key.clone(), "yes");
                    match client.alter_config(ConfigKind::Topic, &name, &change).await {
                        Ok(_) => answers
                            .lock()
                            .unwrap()
                            .patched
                            .entry(name.clone())
                            .or_default()
                            .push((key, "yes".into())),
                        Err(e) => note_error(&answers, e),
                    }
                    match client.add_partitions(&name, 1).await {
                        Ok(_) => {
                            *answers
                                .lock()
                                .unwrap()
                                .partitions
                                .entry(name.clone())
                                .or_default() += 1
                        }
                        Err(e) => note_error(&answers, e),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("a client task does not panic");
        }
        let (created, unknown, refused) = {
            let a = answers.lock().unwrap();
            (a.created.len(), a.unknown, a.refused)
        };
        eprintln!(
            "  {created} topics acknowledged, {refused} refused, {unknown} with unknown outcome, in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert!(
            created >= 100,
            "too few creates were acknowledged: {created}"
        );

        // 4. Every controller holds every acknowledged answer, whole.
        let leader = s.leader().await;
        let hw = s.status(leader).await.high_watermark;
        wait_same_high_watermark(&s, &ids, hw).await;
        let a = std::mem::take(&mut *answers.lock().unwrap());
        for &id in &ids {
            let c = s.client(id);
            for (name, cfg) in &a.created {
                let d: TopicDescription = c
                    .describe_topic(name)
                    .await
                    .unwrap_or_else(|e| panic!("node {id} lacks acknowledged topic {name}: {e}"));
                let want = a.partitions[name];
                assert_eq!(
                    d.partitions.len(),
                    want,
                    "node {id}: topic {name} has {} partitions, {want} were acknowledged",
                    d.partitions.len()
                );
                let got = c.get_config(ConfigKind::Topic, name).await.unwrap();
                for (k, v) in cfg.iter().chain(
                    a.patched
                        .get(name)
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k, v)),
                ) {
                    assert_eq!(
                        got.get(k),
                        Some(v),
                        "node {id}: topic {name} lacks acknowledged config {k}"
                    );
                }
            }
            eprintln!(
                "  node {id} holds all {} acknowledged topics with their partitions and configs",
                a.created.len()
            );
        }
        wait_same_image(&s, &ids, hw).await;
        assert_same_logs(&s, &ids, hw).await;
        // 5. The transactions are in the log, each closed by its end.
        let records = log_records(&s.client(leader), hw).await;
        let begins = records
            .iter()
            .filter(|(_, r)| matches!(r, LogRecord::Metadata(v) if matches!(v.record, MetadataRecord::BeginTransaction(_))))
            .count();
        let ends = records
            .iter()
            .filter(|(_, r)| matches!(r, LogRecord::Metadata(v) if matches!(v.record, MetadataRecord::EndTransaction)))
            .count();
        eprintln!("  the log holds {begins} transactions, {ends} ended");
        assert!(
            begins >= 8,
            "the oversized creates were not written as transactions"
        );
        assert_eq!(begins, ends, "a transaction was left open");
        assert_no_refusals(&s);
    });
}

/// Creates a topic; records the answer. True when acknowledged.
async fn record_create(client: &Client, answers: &Mutex<Answers>, req: CreateTopic) -> bool {
    let n = req.partitions.unwrap_or(0) as usize;
    match client.create_topic(&req).await {
        Ok(_) => {
            let mut a = answers.lock().unwrap();
            a.created.insert(req.name.clone(), req.configs);
            a.partitions.insert(req.name, n);
            true
        }
        Err(e) => {
            note_error(answers, e);
            false
        }
    }
}

fn note_error(answers: &Mutex<Answers>, e: kraftd::client::ClientError) {
    let mut a = answers.lock().unwrap();
    match e.code() {
        Some("REQUEST_TIMED_OUT") | None => a.unknown += 1,
        _ => a.refused += 1,
    }
}

#[test]
fn brokers_registering_during_a_voter_change_get_the_offset_of_their_record_as_epoch() {
    run("registrations_during_voter_change", async {
        // 1. Three voters, and a fourth controller started as an observer.
        let mut s = Scenario::start(3, &[NO_NOOPS]).await;
        let ids = s.q.ids();
        s.q.add_node(4).await.unwrap();
        s.q.wait_healthy(4, READY).await.unwrap();
        let four = s.q.node(4).unwrap().as_new_voter();
        let cluster = s.q.cluster_id().to_string();

        // 2. Brokers register through all three controllers at once, without pause, from
        //    before the voter change starts until after it ends (at least 200) ...
        let epochs = Arc::new(Mutex::new(BTreeMap::<i32, i64>::new()));
        let next = Arc::new(std::sync::atomic::AtomicI32::new(1));
        let changing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let clients: Vec<Client> = ids.iter().map(|&i| s.client(i)).collect();
            let (epochs, next, changing) = (epochs.clone(), next.clone(), changing.clone());
            let cluster = cluster.clone();
            tasks.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                loop {
                    let b = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if b > 200 && !changing.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    if b > 20_000 {
                        break;
                    }
                    let reg = Registration {
                        cluster_id: cluster.clone(),
                        incarnation_id: uuid::Uuid::new_v4().to_string(),
                        listeners: vec![Listener {
                            name: "PLAINTEXT".into(),
                            host: "127.0.0.1".into(),
                            port: 9092,
                            security_protocol: "PLAINTEXT".into(),
                        }],
                        rack: None,
                        features: Vec::new(),
                    };
                    // Retried while no leader answers; an unknown outcome is retried too
                    // (the same incarnation keeps its epoch).
                    let deadline = Instant::now() + Duration::from_secs(30);
                    loop {
                        let c = &clients[(b as usize) % clients.len()];
                        match c.register_broker(b, &reg).await {
                            Ok(e) => {
                                epochs.lock().unwrap().insert(b, e);
                                break;
                            }
                            Err(e) if Instant::now() < deadline => {
                                failures.push(e.to_string());
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            Err(e) => panic!("broker {b} never registered: {e}"),
                        }
                    }
                }
                failures
            }));
        }
        // 3. ... while node 4 is added as a voter and removed again.
        let leader = s.q.wait_leader_among(&ids, ELECTION).await.unwrap();
        let voters = s.client(leader).add_voter(&four).await.unwrap();
        eprintln!("  voters after adding node 4: {voters:?}");
        let leader = s.leader().await;
        let voters = s.client(leader).remove_voter(4).await.unwrap();
        eprintln!("  voters after removing node 4: {voters:?}");
        changing.store(false, std::sync::atomic::Ordering::SeqCst);
        let during = epochs.lock().unwrap().len();
        s.q.stop(4).await.unwrap();
        let mut retries = 0;
        for t in tasks {
            retries += t.await.expect("a registering task does not panic").len();
        }
        let epochs = epochs.lock().unwrap().clone();
        assert!(epochs.len() >= 200);
        eprintln!(
            "  {} brokers registered, {during} of them before the voter change ended ({retries} retried answers)",
            epochs.len()
        );

        // 4. In every controller's log, each RegisterBrokerRecord's epoch is its own offset,
        //    and each broker was given the epoch of its last registration record.
        let leader = s.leader().await;
        let hw = s.status(leader).await.high_watermark;
        wait_same_high_watermark(&s, &ids, hw).await;
        for &id in &ids {
            let mut last: BTreeMap<i32, i64> = BTreeMap::new();
            for (offset, r) in log_records(&s.client(id), hw).await {
                if let LogRecord::Metadata(v) = r {
                    if let MetadataRecord::RegisterBroker(b) = v.record {
                        assert_eq!(
                            b.broker_epoch, offset,
                            "node {id}: broker {}'s RegisterBrokerRecord at offset {offset} carries epoch {}",
                            b.broker_id, b.broker_epoch
                        );
                        last.insert(b.broker_id, offset);
                    }
                }
            }
            for (b, e) in &epochs {
                assert_eq!(
                    last.get(b),
                    Some(e),
                    "node {id}: broker {b} was given epoch {e}, its record is at {:?}",
                    last.get(b)
                );
            }
            eprintln!(
                "  node {id}: all {} broker epochs equal their record's offset",
                epochs.len()
            );
        }
        assert_same_logs(&s, &ids, hw).await;
        assert_no_refusals(&s);
    });
}
