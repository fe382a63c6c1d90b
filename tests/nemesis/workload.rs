//! The writers that run while faults are injected, and the record of every answer they got.
//!
//! - dependent: create topic T, then patch T's configs, then grow T, then read T back;
//! - large: topics with [`BIG_CONFIGS`] configs, and topics with [`WIDE_PARTITIONS`]
//!   partitions;
//! - independent: many small topics, one request each.
//!
//! Every request goes to a node picked at random (followers forward to the leader). A 2xx
//! answer is an acknowledged write; a timeout, a lost connection, a 5xx or
//! REQUEST_TIMED_OUT is a "maybe" write (it may or may not have happened); any other
//! 4xx is a refusal (nothing happened).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kraftd::client::{Client, ClientError, ConfigKind, ConfigPatch, CreateTopic};

use super::procs::Cluster;
use super::Rng;

/// Configs of one large topic (the observed loss was with 6,000).
pub const BIG_CONFIGS: usize = 6_000;
/// Partitions of one wide topic.
pub const WIDE_PARTITIONS: i32 = 1_000;
/// Partitions of a dependent topic at creation and after growing it.
pub const DEP_PARTITIONS: (i32, i32) = (2, 4);

/// One write as it was sent.
#[derive(Debug, Clone)]
pub enum Write {
    CreateTopic {
        topic: String,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    SetTopicConfigs {
        topic: String,
        set: BTreeMap<String, String>,
    },
    GrowTopic {
        topic: String,
        count: i32,
    },
}

impl Write {
    pub fn short(&self) -> String {
        match self {
            Write::CreateTopic {
                topic,
                partitions,
                configs,
            } => format!(
                "create {topic} ({partitions} partitions, {} configs)",
                configs.len()
            ),
            Write::SetTopicConfigs { topic, set } => {
                format!("set {} configs of {topic}", set.len())
            }
            Write::GrowTopic { topic, count } => format!("grow {topic} to {count} partitions"),
        }
    }
}

/// What the answer said.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 2xx; the log offset when the answer carries one.
    Acked { offset: Option<i64> },
    /// No answer or an ambiguous one.
    Maybe(String),
    /// A definite refusal.
    Refused(String),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub writer: String,
    pub write: Write,
    pub via: u64,
    pub answer: Answer,
    pub at: Duration,
}

/// Every answer every writer got, in the order they arrived.
#[derive(Default)]
pub struct History {
    pub outcomes: Mutex<Vec<Outcome>>,
    /// Read-backs (after a dependent chain) that did not show what was acknowledged
    /// within their bound. Not a violation by itself (the end check decides).
    pub readback_misses: Mutex<Vec<String>>,
    /// A step of a dependent chain answered that the topic it depends on, whose creation
    /// was acknowledged, does not exist: the leader acted on a state without it.
    pub dependent_refusals: Mutex<Vec<String>>,
}

fn classify(r: Result<Option<i64>, ClientError>) -> Answer {
    match r {
        Ok(offset) => Answer::Acked { offset },
        Err(e) => {
            let ambiguous = match &e {
                ClientError::Api(a) => {
                    a.status.is_server_error()
                        || a.code == "REQUEST_TIMED_OUT"
                        || a.status.as_u16() == 408
                }
                // A 2xx we could not read: it happened, but we do not know the details.
                _ => true,
            };
            if ambiguous {
                Answer::Maybe(e.to_string())
            } else {
                Answer::Refused(e.to_string())
            }
        }
    }
}

pub struct Writers {
    stop: Arc<AtomicBool>,
    pub history: Arc<History>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Ctx {
    name: String,
    ids: Vec<u64>,
    rng: Rng,
    history: Arc<History>,
    started: Instant,
    timeout: Duration,
}

impl Ctx {
    fn pick(&mut self) -> (u64, Client) {
        let id = self.ids[self.rng.below(self.ids.len() as u64) as usize];
        (id, Cluster::client(id, self.timeout))
    }

    fn record(&self, write: Write, via: u64, answer: Answer) -> bool {
        let acked = matches!(answer, Answer::Acked { .. });
        if let (
            Answer::Refused(e),
            Write::SetTopicConfigs { topic, .. } | Write::GrowTopic { topic, .. },
        ) = (&answer, &write)
        {
            // Only dependent steps come here, each after its topic's acknowledged create.
            if e.contains("UNKNOWN_TOPIC") {
                self.history.dependent_refusals.lock().unwrap().push(format!(
                    "\"{}\" by {} via node {} at {:.1} s was refused although the creation of {topic} was acknowledged: {e}",
                    write.short(),
                    self.name,
                    via,
                    self.started.elapsed().as_secs_f64()
                ));
            }
        }
        self.history.outcomes.lock().unwrap().push(Outcome {
            writer: self.name.clone(),
            write,
            via,
            answer,
            at: self.started.elapsed(),
        });
        acked
    }

    async fn create(
        &mut self,
        topic: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> bool {
        let (via, c) = self.pick();
        let req = CreateTopic {
            name: topic.to_string(),
            partitions: Some(partitions),
            replication_factor: Some(3),
            configs: configs.clone(),
            assignments: None,
        };
        let answer = classify(c.create_topic(&req).await.map(|_| None));
        self.record(
            Write::CreateTopic {
                topic: topic.to_string(),
                partitions,
                configs,
            },
            via,
            answer,
        )
    }
}

impl Writers {
    /// Starts `dependent` + `large` + `independent` writers against nodes `ids`.
    pub fn start(
        seed: u64,
        ids: &[u64],
        dependent: usize,
        large: usize,
        independent: usize,
    ) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(History::default());
        let started = Instant::now();
        let mut tasks = Vec::new();
        let ctx = |name: String, k: u64, timeout: Duration| Ctx {
            name,
            ids: ids.to_vec(),
            rng: Rng::new(seed.wrapping_mul(31).wrapping_add(k)),
            history: history.clone(),
            started,
            timeout,
        };
        for w in 0..dependent {
            let mut cx = ctx(format!("dep{w}"), 100 + w as u64, Duration::from_secs(8));
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if !dependent_chain(&mut cx, &format!("dep{w}-{i}")).await {
                        // No leader answers fast: do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    i += 1;
                }
            }));
        }
        for w in 0..large {
            let mut cx = ctx(format!("large{w}"), 200 + w as u64, Duration::from_secs(20));
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if i % 2 == 0 {
                        let topic = format!("big{w}-{i}");
                        let configs = (0..BIG_CONFIGS)
                            .map(|j| (format!("nemesis.c{j:05}"), format!("{topic}/{j}")))
                            .collect();
                        cx.create(&topic, 1, configs).await;
                    } else {
                        cx.create(&format!("wide{w}-{i}"), WIDE_PARTITIONS, BTreeMap::new())
                            .await;
                    }
                    i += 1;
                    // Paced: each one is thousands of records, and the log must stay small
                    // enough for a replaced disk to catch up within the runbook's wait.
                    tokio::time::sleep(Duration::from_millis(3000)).await;
                }
            }));
        }
        for w in 0..independent {
            let mut cx = ctx(format!("ind{w}"), 300 + w as u64, Duration::from_secs(8));
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if !cx.create(&format!("ind{w}-{i}"), 1, BTreeMap::new()).await {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    i += 1;
                }
            }));
        }
        Writers {
            stop,
            history,
            tasks,
        }
    }

    /// Stops every writer; requests in flight get their own timeout to answer.
    pub async fn stop(self) -> Arc<History> {
        self.stop.store(true, Ordering::Relaxed);
        // Bounded: the longest request timeout is 20 s, plus a read-back.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
        for t in self.tasks {
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                eprintln!("  a writer did not stop within 45 s (left to the runtime)");
            }
        }
        self.history
    }
}

/// Create T, then set configs on T, then grow T, each only after the previous step was
/// acknowledged, then read T back from a node. Whether every step was acknowledged.
async fn dependent_chain(cx: &mut Ctx, topic: &str) -> bool {
    if !cx.create(topic, DEP_PARTITIONS.0, BTreeMap::new()).await {
        return false;
    }
    let set: BTreeMap<String, String> = (0..3)
        .map(|k| (format!("nemesis.dep{k}"), format!("{topic}/{k}")))
        .collect();
    let (via, c) = cx.pick();
    let change = ConfigPatch {
        set: set.clone(),
        delete: Vec::new(),
    };
    let answer = classify(
        c.alter_config(ConfigKind::Topic, topic, &change)
            .await
            .map(|a| Some(a.offset)),
    );
    let write = Write::SetTopicConfigs {
        topic: topic.to_string(),
        set: set.clone(),
    };
    if !cx.record(write, via, answer) {
        return false;
    }
    let (via, c) = cx.pick();
    let answer = classify(
        c.add_partitions(topic, DEP_PARTITIONS.1)
            .await
            .map(|_| None),
    );
    let write = Write::GrowTopic {
        topic: topic.to_string(),
        count: DEP_PARTITIONS.1,
    };
    if !cx.record(write, via, answer) {
        return false;
    }
    // Read back (bounded): followers serve their committed image, which may lag a little.
    let (via, c) = cx.pick();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = String::new();
    while Instant::now() < deadline {
        match c.describe_topic(topic).await {
            Ok(d) => {
                let configs_ok = set.iter().all(|(k, v)| d.configs.get(k) == Some(v));
                if configs_ok && d.partitions.len() as i32 >= DEP_PARTITIONS.1 {
                    return true;
                }
                last = format!("{} partitions, configs {:?}", d.partitions.len(), d.configs);
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cx.history
        .readback_misses
        .lock()
        .unwrap()
        .push(format!("{topic} via node {via}: {last}"));
    true
}
