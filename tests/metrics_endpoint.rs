//! `GET /metrics` on a live three-node quorum: every line is Prometheus text, and the named
//! figures move when the state they describe moves: HTTP requests, brokers registering and
//! being fenced by session expiry, a checkpoint being taken, and the leader being killed.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

use kraftd::cli::fleet::Fleet;

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses Prometheus' text format strictly enough for our output: comments (`# HELP`,
/// `# TYPE`) and blank lines are skipped; every other line must be
/// `name{label="value",...} value` (labels optional). Panics naming the bad line.
fn parse(text: &str) -> Vec<Sample> {
    try_parse(text).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}"))
}

fn try_parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(s) =
            parse_line(line).map_err(|why| format!("line {}: {why}: {line:?}", n + 1))?
        {
            out.push(s);
        }
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Option<Sample>, String> {
    if line.is_empty() || line.starts_with('#') {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let kind = rest.split_whitespace().nth(1);
            if !matches!(
                kind,
                Some("counter" | "gauge" | "histogram" | "summary" | "untyped")
            ) {
                return Err("bad TYPE".into());
            }
        }
        return Ok(None);
    }
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("bad metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let end = loop {
            let &(start, c) = chars.peek().ok_or("unterminated labels")?;
            if c == '}' {
                break start + 1;
            }
            let mut key = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == '=' {
                    break;
                }
                if !(c.is_ascii_alphanumeric() || c == '_') {
                    return Err("bad label name".into());
                }
                key.push(c);
                chars.next();
            }
            chars.next(); // '='
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        _ => return Err("bad escape".into()),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            }
            labels.insert(key, value);
            match chars.next() {
                Some((_, ',')) => {}
                Some((i, '}')) => break i + 1,
                _ => return Err("expected , or } after a label".into()),
            }
        };
        rest = &r[end..];
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut parts = rest.split(' ');
    let value = match parts.next() {
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(v) => v.parse::<f64>().map_err(|_| "value is not a number")?,
        None => return Err("no value".into()),
    };
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| "timestamp is not an integer")?;
    }
    if parts.next().is_some() {
        return Err("trailing text".into());
    }
    Ok(Some(Sample {
        name: name.to_string(),
        labels,
        value,
    }))
}

struct Scrape(Vec<Sample>);

impl Scrape {
    /// The value of the one sample named `name` whose labels include `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let hits: Vec<&Sample> = self
            .0
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(hits.len() <= 1, "{name} {labels:?} matches {hits:?}");
        hits.first().map(|s| s.value)
    }

    /// An unlabelled figure that must be present.
    fn val(&self, name: &str) -> f64 {
        self.get(name, &[])
            .unwrap_or_else(|| panic!("{name} is missing from /metrics"))
    }

    /// A histogram's observation count (0 if it has none yet).
    fn count(&self, histogram: &str) -> f64 {
        self.get(&format!("{histogram}_count"), &[]).unwrap_or(0.0)
    }
}

/// Runs `promtool check metrics` (Debian's `prometheus` package; CI installs it) on
/// `text`: the format and Prometheus' naming rules (no `_count` on a gauge, `_total` on a
/// counter, help on every family). Fails, rather than skips, without promtool.
fn promtool_check(text: &str, what: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is needed to check /metrics ({e}): install it with \
                 `apt-get install -y prometheus` (scripts/prereqs --test does)"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refuses {what}'s /metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The raw `/metrics` text of node `id`.
async fn scrape_text(s: &Scenario, id: u64) -> String {
    let url = format!("{}/metrics", s.client(id).base_url());
    reqwest::get(&url).await.unwrap().text().await.unwrap()
}

async fn scrape(s: &Scenario, id: u64) -> Result<Scrape, String> {
    let url = format!("{}/metrics", s.client(id).base_url());
    let resp = reqwest::get(&url).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("{url}: {}", resp.status()));
    }
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ct.starts_with("text/plain"), "content type {ct}");
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok(Scrape(parse(&text)))
}

const ACTIVE: &str = "kraftd_active_controller";
const LEADER: &str = "kraftd_current_leader_id";
const EPOCH: &str = "kraftd_current_epoch";
const HW: &str = "kraftd_high_watermark";
const APPLIED: &str = "kraftd_last_applied_record_offset";
const COMMITTED: &str = "kraftd_last_committed_record_offset";
const LOG_START: &str = "kraftd_log_start_offset";
const COMMIT_LATENCY: &str = "kraftd_commit_latency_seconds";
const ELECTION_LATENCY: &str = "kraftd_election_latency_seconds";
const FENCED: &str = "kraftd_fenced_brokers";
const ACTIVE_BROKERS: &str = "kraftd_active_brokers";
const TOPICS: &str = "kraftd_global_topics";
const PARTITIONS: &str = "kraftd_global_partitions";
const OFFLINE: &str = "kraftd_offline_partitions";
const TIMED_OUT: &str = "kraftd_timed_out_broker_heartbeats_total";
const SNAPSHOT_SIZE: &str = "kraftd_snapshot_size_bytes";
const SNAPSHOT_AGE: &str = "kraftd_snapshot_age_seconds";
const HTTP: &str = "kraftd_http_requests_total";
const UNDER_REPLICATED: &str = "kraftd_under_replicated_partitions";
const MEMBER_UP: &str = "kraftd_quorum_member_up";
const MEMBER_LAG: &str = "kraftd_quorum_member_lag_records";

#[test]
fn metrics_follow_requests_brokers_snapshots_and_leadership() {
    run("metrics_endpoint", async {
        let mut s = Scenario::start(3, &[("KRAFTD_BROKER_SESSION_TIMEOUT_MS", "1500")]).await;
        let ids = s.q.ids();
        // A first election can still be settling on a busy machine: start from the leader
        // every node names in its metrics.
        let leader = eventually("every node names one leader", CONVERGE, || async {
            let mut named = Vec::new();
            for &id in &ids {
                named.push(scrape(&s, id).await?.val(LEADER));
            }
            match named.first() {
                Some(&l) if l >= 1.0 && named.iter().all(|&n| n == l) => Ok(l as u64),
                _ => Err(format!("{named:?}")),
            }
        })
        .await;
        let followers: Vec<u64> = ids.iter().copied().filter(|&i| i != leader).collect();

        eprintln!("step 1: every node's /metrics parses (promtool checks it in step 6); they agree on the leader and epoch");
        let mut saved: Vec<(String, String)> = Vec::new();
        let first = scrape(&s, leader).await.unwrap();
        let epoch = first.val(EPOCH);
        eventually("the leader hears from every member", CONVERGE, || async {
            let m = scrape(&s, leader).await?;
            let all = ids.iter().all(|id| {
                let l = id.to_string();
                m.get(MEMBER_UP, &[("node_id", l.as_str())]) == Some(1.0)
            });
            if all {
                Ok(())
            } else {
                Err("a member reads down".to_string())
            }
        })
        .await;
        for &id in &ids {
            let text = scrape_text(&s, id).await;
            // promtool runs at the end: its start-up is a burst of CPU that, on two cores,
            // can delay the nodes' heartbeats past an election timeout mid-test.
            saved.push((format!("node {id}"), text.clone()));
            let m = Scrape(parse(&text));
            assert_eq!(
                m.get(
                    "kraftd_build_info",
                    &[("version", env!("CARGO_PKG_VERSION"))]
                ),
                Some(1.0)
            );
            assert!(m.val("process_resident_memory_bytes") > 0.0, "node {id}");
            assert!(m.val("process_open_fds") > 0.0, "node {id}");
            assert!(m.val("process_start_time_seconds") > 1.7e9, "node {id}");
            assert_eq!(m.val(UNDER_REPLICATED), 0.0, "node {id}");
            // Only the leader hears from every member.
            for &member in &ids {
                let l = member.to_string();
                let labels = [("node_id", l.as_str()), ("role", "voter")];
                if id == leader {
                    assert_eq!(m.get(MEMBER_UP, &labels), Some(1.0), "node {member} up");
                    assert!(m.get(MEMBER_LAG, &labels).is_some(), "node {member} lag");
                } else {
                    assert_eq!(
                        m.get(MEMBER_UP, &labels),
                        None,
                        "a follower reports no members"
                    );
                }
            }
            assert_eq!(
                m.val(ACTIVE),
                if id == leader { 1.0 } else { 0.0 },
                "node {id}"
            );
            assert_eq!(m.val(LEADER), leader as f64, "node {id}");
            assert_eq!(m.val(EPOCH), epoch, "node {id}");
            for name in [
                HW,
                APPLIED,
                COMMITTED,
                LOG_START,
                FENCED,
                ACTIVE_BROKERS,
                TOPICS,
                PARTITIONS,
                OFFLINE,
                TIMED_OUT,
            ] {
                m.val(name);
            }
            assert!(
                m.val(HW) > 0.0 && m.val(APPLIED) <= m.val(COMMITTED),
                "node {id}"
            );
        }
        assert!(
            first.count(COMMIT_LATENCY) > 0.0,
            "the leader committed batches"
        );

        eprintln!("step 2: the HTTP request counter of a route grows, labelled by route template");
        let route = [
            ("route", "/v1/quorum/status"),
            ("method", "GET"),
            ("status", "200"),
        ];
        let before = first.get(HTTP, &route).unwrap_or(0.0);
        for _ in 0..3 {
            s.client(leader).quorum_status().await.unwrap();
        }
        let _ = s.client(leader).describe_topic("no-such-topic").await;
        let m = scrape(&s, leader).await.unwrap();
        assert!(
            m.get(HTTP, &route).unwrap_or(0.0) >= before + 3.0,
            "{before} -> {:?}",
            m.get(HTTP, &route)
        );
        assert_eq!(
            m.get(HTTP, &[("route", "/v1/topics/{name}"), ("status", "404")]),
            Some(1.0),
            "the template, not the raw path, and the status"
        );

        eprintln!(
            "step 3: three brokers register and become active; one goes silent and is fenced"
        );
        let clients = vec![s.client(leader)];
        let (fleet, _) = Fleet::start(
            &clients,
            s.q.cluster_id(),
            &[1, 2, 3],
            |_| None,
            Duration::from_millis(200),
        )
        .await
        .unwrap();
        let timed_out_before = scrape(&s, leader).await.unwrap().val(TIMED_OUT);
        eventually("three active brokers on every node", CONVERGE, || async {
            for &id in &ids {
                let m = scrape(&s, id).await?;
                if (m.val(ACTIVE_BROKERS), m.val(FENCED)) != (3.0, 0.0) {
                    return Err(format!(
                        "node {id}: active {} fenced {}",
                        m.val(ACTIVE_BROKERS),
                        m.val(FENCED)
                    ));
                }
            }
            Ok(())
        })
        .await;
        s.client(leader)
            .create_topic(&kraftd::client::CreateTopic {
                name: "urp".into(),
                partitions: Some(3),
                replication_factor: Some(3),
                ..Default::default()
            })
            .await
            .unwrap();
        fleet.pause(3, true);
        let m = eventually("broker 3 fenced by session expiry", CONVERGE, || async {
            let m = scrape(&s, leader).await?;
            // Fencing broker 3 takes it out of every ISR of topic `urp`.
            if m.val(FENCED) == 1.0
                && m.val(TIMED_OUT) >= timed_out_before + 1.0
                && m.val(UNDER_REPLICATED) == 3.0
            {
                Ok(m)
            } else {
                Err(format!(
                    "fenced {} timed out {} under-replicated {}",
                    m.val(FENCED),
                    m.val(TIMED_OUT),
                    m.val(UNDER_REPLICATED)
                ))
            }
        })
        .await;
        assert_eq!(m.val(ACTIVE_BROKERS), 2.0);
        eprintln!(
            "  leader: fenced {} active {} timed-out heartbeats {}",
            m.val(FENCED),
            m.val(ACTIVE_BROKERS),
            m.val(TIMED_OUT)
        );
        for &id in &followers {
            eventually(
                &format!("node {id} counts the fenced broker"),
                CONVERGE,
                || async {
                    let m = scrape(&s, id).await?;
                    if m.val(FENCED) == 1.0 {
                        Ok(())
                    } else {
                        Err(format!("fenced {}", m.val(FENCED)))
                    }
                },
            )
            .await;
        }
        fleet.stop().await;

        eprintln!("step 4: a checkpoint taken now shows its size and a small age");
        let snap = s.client(leader).take_snapshot().await.unwrap();
        let listed = s.client(leader).list_snapshots().await.unwrap();
        let size = listed
            .iter()
            .find(|l| l.file_name == snap.file_name)
            .map(|l| l.size)
            .expect("the new checkpoint is listed with its size");
        let m = scrape(&s, leader).await.unwrap();
        assert_eq!(m.val(SNAPSHOT_SIZE), size as f64);
        assert!(m.val(SNAPSHOT_SIZE) > 0.0);
        assert!(m.val(SNAPSHOT_AGE) < 5.0, "age {}", m.val(SNAPSHOT_AGE));
        eprintln!(
            "  checkpoint {}: {} bytes, age {:.3} s",
            snap.file_name,
            m.val(SNAPSHOT_SIZE),
            m.val(SNAPSHOT_AGE)
        );

        eprintln!("step 5: kill -9 the leader: a new leader reports itself, a higher epoch, and an election it timed");
        let mut elections_before = BTreeMap::new();
        for &id in &followers {
            elections_before.insert(id, scrape(&s, id).await.unwrap().count(ELECTION_LATENCY));
        }
        s.q.kill9(leader).await.unwrap();
        let new_leader = s.leader().await;
        assert_ne!(new_leader, leader);
        let m = eventually("the new leader's metrics", CONVERGE, || async {
            let m = scrape(&s, new_leader).await?;
            if m.val(ACTIVE) == 1.0 && m.val(LEADER) == new_leader as f64 {
                Ok(m)
            } else {
                Err(format!("active {} leader {}", m.val(ACTIVE), m.val(LEADER)))
            }
        })
        .await;
        assert!(m.val(EPOCH) > epoch, "epoch {} after {epoch}", m.val(EPOCH));
        assert!(
            m.count(ELECTION_LATENCY) > elections_before[&new_leader],
            "election latency count {} (was {})",
            m.count(ELECTION_LATENCY),
            elections_before[&new_leader]
        );
        let sum = m
            .get(&format!("{ELECTION_LATENCY}_sum"), &[])
            .unwrap_or(0.0);
        eprintln!(
            "  node {new_leader} leads in epoch {} (was {epoch}); elections timed: {}, total {:.3} s",
            m.val(EPOCH),
            m.count(ELECTION_LATENCY),
            sum
        );
        eprintln!("  the new leader reports the killed node {leader} down, and passes promtool");
        let old = leader.to_string();
        let labels = [("node_id", old.as_str()), ("role", "voter")];
        eventually("the killed leader reported down", CONVERGE, || async {
            let m = scrape(&s, new_leader).await?;
            match m.get(MEMBER_UP, &labels) {
                Some(0.0) => Ok(()),
                other => Err(format!("{MEMBER_UP} {other:?}")),
            }
        })
        .await;
        saved.push((
            "the new leader".to_string(),
            scrape_text(&s, new_leader).await,
        ));
        let other = followers
            .iter()
            .copied()
            .find(|&i| i != new_leader)
            .unwrap();
        eventually(
            "the other survivor names the new leader",
            CONVERGE,
            || async {
                let m = scrape(&s, other).await?;
                if m.val(LEADER) == new_leader as f64 && m.val(ACTIVE) == 0.0 {
                    Ok(())
                } else {
                    Err(format!("leader {} active {}", m.val(LEADER), m.val(ACTIVE)))
                }
            },
        )
        .await;

        eprintln!("step 6: every /metrics text saved above passes promtool check metrics");
        for (what, text) in &saved {
            promtool_check(text, what);
        }
    });
}

#[test]
fn the_parser_refuses_malformed_lines() {
    let ok = parse(
        "# HELP a x\n# TYPE a counter\na 1\nb{x=\"1\",y=\"a\\\"b\"} 2.5\nc_bucket{le=\"+Inf\"} 3\n\n",
    );
    assert_eq!(ok.len(), 3);
    assert_eq!(ok[1].labels["y"], "a\"b");
    for bad in ["a", "a{x=1} 2", "a{x=\"1\" 2", "a 1 2 3", "a x", "1a 2"] {
        assert!(try_parse(bad).is_err(), "{bad:?} was accepted");
    }
}
