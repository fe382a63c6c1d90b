//! Watchers that run during the whole test: one client per controller that alternates
//! `GET /v1/quorum/status` with a long poll of `GET /v1/metadata/log`, recording
//!
//! - which leader each answer names for which epoch (at most one leader per epoch), and
//! - every high watermark it was told, in order (never decreasing for one client while the
//!   process it talks to lives; and no leader of a later epoch serves less than a leader
//!   of an earlier epoch already served).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::procs::Cluster;

/// One high watermark as a client saw it.
#[derive(Debug, Clone, Copy)]
pub struct HwSeen {
    pub at: Duration,
    pub node: u64,
    /// The node's process generation (restarts begin a new series).
    pub generation: u32,
    pub hw: i64,
    /// Epoch and leader the answer named.
    pub epoch: i64,
    pub leader: Option<u64>,
    pub source: &'static str,
}

/// Per epoch: each leader named, with who named it first and when.
pub type LeadersByEpoch = BTreeMap<i64, BTreeMap<u64, (u64, Duration)>>;

#[derive(Default)]
pub struct Observations {
    /// epoch -> leader -> (who said so, first time).
    pub leaders: Mutex<LeadersByEpoch>,
    /// Per node (one client each), in the order seen.
    pub hws: Mutex<BTreeMap<u64, Vec<HwSeen>>>,
    pub samples: Mutex<u64>,
}

pub struct Watchers {
    stop: Arc<AtomicBool>,
    pub obs: Arc<Observations>,
    /// Per node: the process generation, set by the test when it (re)starts a node.
    pub generations: BTreeMap<u64, Arc<AtomicU32>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watchers {
    pub fn start(ids: &[u64]) -> Watchers {
        let stop = Arc::new(AtomicBool::new(false));
        let obs = Arc::new(Observations::default());
        let started = Instant::now();
        let mut generations = BTreeMap::new();
        let mut tasks = Vec::new();
        for &id in ids {
            let generation = Arc::new(AtomicU32::new(1));
            generations.insert(id, generation.clone());
            let (stop, obs) = (stop.clone(), obs.clone());
            tasks.push(tokio::spawn(async move {
                let c = Cluster::client(id, Duration::from_secs(2));
                let mut next: i64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let g = generation.load(Ordering::SeqCst);
                    let answer = c.quorum_status().await;
                    // An answer that spans a restart (generation 0 = being restarted)
                    // belongs to no series.
                    let g = if generation.load(Ordering::SeqCst) == g {
                        g
                    } else {
                        0
                    };
                    if let Ok(st) = answer {
                        obs.note(HwSeen {
                            at: started.elapsed(),
                            node: id,
                            generation: g,
                            hw: st.high_watermark,
                            epoch: st.leader_epoch,
                            leader: st.leader_id,
                            source: "status",
                        });
                        next = st.high_watermark;
                    }
                    let g = generation.load(Ordering::SeqCst);
                    let answer = c
                        .fetch_log(next, Some(1), Some(Duration::from_millis(300)))
                        .await;
                    let g = if generation.load(Ordering::SeqCst) == g {
                        g
                    } else {
                        0
                    };
                    match answer {
                        Ok(f) => {
                            obs.note(HwSeen {
                                at: started.elapsed(),
                                node: id,
                                generation: g,
                                hw: f.high_watermark,
                                epoch: f.leader_epoch.unwrap_or(-1),
                                leader: f.leader_id,
                                source: "log fetch",
                            });
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }));
        }
        Watchers {
            stop,
            obs,
            generations,
            tasks,
        }
    }

    /// Node `id` is about to stop (generation 0) or was started again: its client's
    /// series starts over.
    pub fn new_generation(&self, id: u64, generation: u32) {
        if let Some(g) = self.generations.get(&id) {
            g.store(generation, Ordering::SeqCst);
        }
    }

    pub async fn stop(self) -> Arc<Observations> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        self.obs
    }
}

impl Observations {
    pub fn note(&self, s: HwSeen) {
        *self.samples.lock().unwrap() += 1;
        if let Some(l) = s.leader {
            self.leaders
                .lock()
                .unwrap()
                .entry(s.epoch)
                .or_default()
                .entry(l)
                .or_insert((s.node, s.at));
        }
        if s.generation != 0 {
            self.hws.lock().unwrap().entry(s.node).or_default().push(s);
        }
    }

    /// Epochs for which answers named more than one leader.
    pub fn two_leaders_in_one_epoch(&self) -> Vec<String> {
        self.leaders
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.len() > 1)
            .map(|(e, l)| {
                let who: Vec<String> = l
                    .iter()
                    .map(|(leader, (said_by, at))| {
                        format!(
                            "node {leader} (named by node {said_by} at {:.1} s)",
                            at.as_secs_f64()
                        )
                    })
                    .collect();
                format!("epoch {e} had leaders {}", who.join(" and "))
            })
            .collect()
    }

    /// A client that talks to one node saw the high watermark go down (same process).
    pub fn hw_decreases_per_client(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (node, seen) in self.hws.lock().unwrap().iter() {
            let mut prev: Option<HwSeen> = None;
            for s in seen {
                if let Some(p) = prev.filter(|p| p.generation == s.generation) {
                    if s.hw < p.hw {
                        out.push(format!(
                            "the client of node {node} saw the high watermark go from {} ({} at {:.1} s, epoch {}) to {} ({} at {:.1} s, epoch {}, leader {:?})",
                            p.hw, p.source, p.at.as_secs_f64(), p.epoch,
                            s.hw, s.source, s.at.as_secs_f64(), s.epoch, s.leader
                        ));
                    }
                }
                prev = Some(*s);
            }
        }
        out
    }

    /// A leader of a later epoch served (as leader) a high watermark below what a leader
    /// of an earlier epoch had already served.
    pub fn hw_decreases_across_leaders(&self) -> Vec<String> {
        // epoch -> (min, max) high watermark served by the leader itself.
        let mut by_epoch: BTreeMap<i64, (HwSeen, HwSeen)> = BTreeMap::new();
        for seen in self.hws.lock().unwrap().values() {
            for s in seen.iter().filter(|s| s.leader == Some(s.node)) {
                let e = by_epoch.entry(s.epoch).or_insert((*s, *s));
                if s.hw < e.0.hw {
                    e.0 = *s;
                }
                if s.hw > e.1.hw {
                    e.1 = *s;
                }
            }
        }
        let mut out = Vec::new();
        let mut best: Option<HwSeen> = None;
        for (epoch, (min, max)) in &by_epoch {
            if let Some(b) = best {
                if min.hw < b.hw {
                    out.push(format!(
                        "leader node {} of epoch {epoch} served high watermark {} ({} at {:.1} s) after leader node {} of epoch {} had served {} (at {:.1} s)",
                        min.node, min.hw, min.source, min.at.as_secs_f64(), b.node, b.epoch, b.hw, b.at.as_secs_f64()
                    ));
                }
            }
            if best.is_none_or(|b| max.hw > b.hw) {
                best = Some(*max);
            }
        }
        out
    }

    /// "epoch E: node N served LO..HI" for every epoch a leader answered in.
    pub fn leader_hw_ranges(&self) -> String {
        let mut by_epoch: BTreeMap<i64, (u64, i64, i64)> = BTreeMap::new();
        for seen in self.hws.lock().unwrap().values() {
            for s in seen.iter().filter(|s| s.leader == Some(s.node)) {
                let e = by_epoch.entry(s.epoch).or_insert((s.node, s.hw, s.hw));
                e.1 = e.1.min(s.hw);
                e.2 = e.2.max(s.hw);
            }
        }
        by_epoch
            .iter()
            .map(|(e, (n, lo, hi))| format!("{e}: node {n} {lo}..{hi}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
