//! Simulated brokers for the tests and benchmarks: each registers with a real quorum over
//! HTTP and heartbeats on its own task, reporting the metadata offset it has "applied"
//! (the high watermark the fleet last saw), as a real broker following the log would.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::client::{Client, ClientError, Heartbeat, HeartbeatAnswer, Listener, Registration};

/// The registration a simulated broker sends.
pub fn registration(
    cluster_id: &str,
    id: i32,
    rack: Option<&str>,
    incarnation: Uuid,
) -> Registration {
    Registration {
        cluster_id: cluster_id.to_string(),
        incarnation_id: incarnation.to_string(),
        listeners: vec![Listener {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9092u16.saturating_add(id as u16),
            security_protocol: "PLAINTEXT".into(),
        }],
        rack: rack.map(str::to_string),
        features: Vec::new(),
    }
}

/// Retries `f` while the error is retriable (no leader, forwarding failed, transport),
/// for at most `limit`.
pub async fn retrying<T, F, Fut>(limit: Duration, mut f: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return r,
        }
    }
}

/// Counters of a running fleet.
#[derive(Debug, Default)]
pub struct FleetStats {
    /// Heartbeats answered.
    pub heartbeats: AtomicU64,
    /// Heartbeats that failed (any error).
    pub errors: AtomicU64,
    /// Answers that said "fenced" after the broker had been unfenced once.
    pub fenced_after_unfence: AtomicU64,
    /// Longest time in ms one broker went between two answered heartbeats (pauses
    /// included): how close the fleet came to its session timeout. A test may reset it.
    pub longest_gap_ms: AtomicU64,
}

/// One simulated broker.
#[derive(Debug, Clone)]
pub struct SimBroker {
    /// Broker id.
    pub id: i32,
    /// Its epoch.
    pub epoch: i64,
    /// Its incarnation.
    pub incarnation: Uuid,
}

/// One simulated broker's heartbeat controls.
struct Control {
    broker: SimBroker,
    /// Heartbeats paused (a broker that "goes silent").
    paused: AtomicBool,
    /// Held while a heartbeat is under way, so a pause can wait for it to land.
    beating: tokio::sync::Mutex<()>,
}

/// Brokers that heartbeat until stopped.
pub struct Fleet {
    stop: Arc<AtomicBool>,
    /// The metadata offset every broker reports.
    pub offset: Arc<AtomicI64>,
    /// Counters.
    pub stats: Arc<FleetStats>,
    /// Per broker: its heartbeat controls.
    controls: Vec<Arc<Control>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Fleet {
    /// Registers `ids` (racks by `rack_of`) through `clients` (round robin) and starts
    /// heartbeating every `interval`. Registration retries while no leader is known.
    pub async fn start(
        clients: &[Client],
        cluster_id: &str,
        ids: &[i32],
        rack_of: impl Fn(i32) -> Option<String>,
        interval: Duration,
    ) -> Result<(Fleet, Vec<SimBroker>), ClientError> {
        let mut brokers = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            let c = &clients[i % clients.len()];
            let incarnation = Uuid::new_v4();
            let reg = registration(cluster_id, id, rack_of(id).as_deref(), incarnation);
            let epoch = retrying(Duration::from_secs(30), || c.register_broker(id, &reg)).await?;
            brokers.push(SimBroker {
                id,
                epoch,
                incarnation,
            });
        }
        // The offset the brokers report having fetched: every registration was acknowledged,
        // so the committed log reaches past each one's record (its epoch). A follower's high
        // watermark read now may still lag the last of them, and a broker reporting less than
        // its epoch would stay fenced.
        let hw = clients[0].quorum_status().await?.high_watermark as i64;
        let registered = brokers.iter().map(|b| b.epoch + 1).max().unwrap_or(0);
        let mut fleet = Fleet {
            stop: Arc::new(AtomicBool::new(false)),
            offset: Arc::new(AtomicI64::new(hw.max(registered))),
            stats: Arc::new(FleetStats::default()),
            controls: Vec::new(),
            tasks: Vec::new(),
        };
        for (i, b) in brokers.iter().enumerate() {
            let control = Arc::new(Control {
                broker: b.clone(),
                paused: AtomicBool::new(false),
                beating: tokio::sync::Mutex::new(()),
            });
            fleet.controls.push(control.clone());
            let clients = clients.to_vec();
            let mut at = i % clients.len();
            let (stop, offset, stats) = (
                fleet.stop.clone(),
                fleet.offset.clone(),
                fleet.stats.clone(),
            );
            let b = b.clone();
            // Spread the first heartbeats over one interval.
            let phase = interval.mul_f64(i as f64 / brokers.len().max(1) as f64);
            fleet.tasks.push(tokio::spawn(async move {
                tokio::time::sleep(phase).await;
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut unfenced_once = false;
                let mut last_answer: Option<Instant> = None;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let _beating = control.beating.lock().await;
                    if control.paused.load(Ordering::Relaxed) {
                        continue;
                    }
                    let hb = Heartbeat {
                        broker_epoch: b.epoch,
                        current_metadata_offset: offset.load(Ordering::Relaxed),
                        want_fence: false,
                        want_shutdown: false,
                    };
                    match clients[at].heartbeat(b.id, &hb).await {
                        Ok(HeartbeatAnswer { is_fenced, .. }) => {
                            stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                            let now = Instant::now();
                            if let Some(last) = last_answer.replace(now) {
                                let gap = now.duration_since(last).as_millis() as u64;
                                stats.longest_gap_ms.fetch_max(gap, Ordering::Relaxed);
                            }
                            if is_fenced && unfenced_once {
                                stats.fenced_after_unfence.fetch_add(1, Ordering::Relaxed);
                            }
                            unfenced_once |= !is_fenced;
                        }
                        Err(e) => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                            // As a broker does: try another controller next time.
                            if e.is_transport() || e.is_retriable() {
                                at = (at + 1) % clients.len();
                            }
                        }
                    }
                }
            }));
        }
        Ok((fleet, brokers))
    }

    /// Stops (or resumes) broker `id`'s heartbeats.
    pub fn pause(&self, id: i32, paused: bool) {
        if let Some(c) = self.control(id) {
            c.paused.store(paused, Ordering::Relaxed);
        }
    }

    fn control(&self, id: i32) -> Option<&Arc<Control>> {
        self.controls.iter().find(|c| c.broker.id == id)
    }

    /// Pauses broker `id`, waits until no heartbeat of it is under way (one landing later
    /// would unfence it again), then asks `via` to fence it (`want_fence`). None: `id` is
    /// not one of this fleet's brokers.
    pub async fn fence(
        &self,
        via: &Client,
        id: i32,
    ) -> Option<Result<HeartbeatAnswer, ClientError>> {
        let c = self.control(id)?;
        c.paused.store(true, Ordering::Relaxed);
        let _landed = c.beating.lock().await;
        let hb = Heartbeat {
            broker_epoch: c.broker.epoch,
            current_metadata_offset: i64::MAX,
            want_fence: true,
            want_shutdown: false,
        };
        Some(via.heartbeat(id, &hb).await)
    }

    /// Sets the metadata offset the brokers report.
    pub fn set_offset(&self, offset: i64) {
        self.offset.store(offset, Ordering::Relaxed);
    }

    /// Stops every heartbeat task.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.tasks) {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
