//! `kraftd serve`: one controller node. Opens the log store and the state machine, starts
//! Raft, the peer and API listeners, the controller's writer and the background duties
//! (idle NoOps, snapshots by size or age, replication tracking), and stops on SIGTERM or
//! Ctrl-C.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use metrics_exporter_prometheus::PrometheusHandle;
use openraft::async_runtime::WatchReceiver;
use openraft::{ChangeMembers, ServerState};
use tokio::net::TcpListener;

use crate::controller::{Controller, LoopDeps};
use crate::node::bootstrap::Gate;
use crate::node::config::openraft_config;
use crate::node::config::Config;
use crate::node::meta::{MetaProperties, METADATA_DIR, RAFT_DIR};
use crate::raft::log_store::LogStore;
use crate::raft::network::{fetch_info, http_client, History, Network, NodeInfo, PeerBook};
use crate::raft::state_machine::{SmShared, StateMachine};
use crate::raft::{KNode, NodeId, Raft};
use crate::record::checkpoint::{list_checkpoints, read_checkpoint, CheckpointItem};
use crate::record::metadata::{FeatureLevelRecord, MetadataRecord, VersionedRecord};

/// Per-follower replication as the leader sees it.
#[derive(Debug, Clone, Default)]
pub struct FollowerTrack {
    /// Last time its matched entry advanced or was confirmed, ms since the epoch.
    pub last_fetch_ms: u64,
    /// Last time it had everything the leader had, ms since the epoch.
    pub last_caught_up_ms: u64,
    /// Matched entry index.
    pub matched: Option<u64>,
}

/// A snapshot transfer being received from the leader.
#[derive(Debug)]
pub struct Receiving {
    /// openraft's snapshot id.
    pub snapshot_id: String,
    /// Temporary file.
    pub path: std::path::PathBuf,
    /// Bytes received so far.
    pub next: u64,
}

/// Everything the listeners and background tasks share.
pub struct Node {
    /// Raft.
    pub raft: Raft,
    /// The state machine's shared state (image, applied offset, snapshots).
    pub sm: Arc<SmShared>,
    /// The log store (reads for brokers).
    pub log: LogStore,
    /// meta.properties.
    pub meta: MetaProperties,
    /// Settings.
    pub config: Config,
    /// Pooled HTTP client (peers, forwarding).
    pub http: reqwest::Client,
    /// The API listener's address.
    pub api_addr: String,
    /// The peer listener's address.
    pub peer_addr: String,
    /// Highest commit index a leader told this node, plus one (0 = none).
    pub seen_commit: AtomicU64,
    /// API addresses learned from peers.
    pub api_addrs: Mutex<BTreeMap<NodeId, String>>,
    /// Snapshot being received.
    pub receiving: tokio::sync::Mutex<Option<Receiving>>,
    /// The write path.
    pub controller: Arc<Controller>,
    /// Followers, as the leader tracks them.
    pub followers: Mutex<BTreeMap<NodeId, FollowerTrack>>,
    /// Voters demoted for a re-formatted disk, to promote once caught up.
    pub readmit: Mutex<BTreeSet<NodeId>>,
    /// The first-election gate of a node formatted with bootstrap voters.
    pub bootstrap: Arc<Gate>,
}

/// ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Node {
    /// End offset of entry `index` on the leader's log (None: not stored, e.g. purged).
    pub fn end_of(&self, index: Option<u64>) -> Option<u64> {
        match index {
            None => Some(0),
            Some(i) => self.log.entry_offsets(i).ok().flatten().map(|(_, end)| end),
        }
    }

    /// This node's high watermark for a report (`/v1/quorum/status`, `/metrics`): the served
    /// one, waiting up to `wait` for it to be known; then the applied end offset, this node's
    /// own last known high watermark.
    pub async fn reported_high_watermark(&self, wait: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.sm.subscribe();
        let mut metrics = self.raft.metrics();
        loop {
            let term = metrics.borrow_and_update().current_term;
            let applied = *rx.borrow_and_update();
            if let Some(h) = crate::raft::state_machine::served_high_watermark(applied, term) {
                return h;
            }
            if tokio::time::Instant::now() >= deadline {
                return applied.end_offset;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return applied.end_offset },
                r = metrics.changed() => if r.is_err() { return applied.end_offset },
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.meta.node_id
    }

    /// What this node says of itself to peers.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            cluster_id: self.meta.cluster_id.clone(),
            node_id: self.meta.node_id,
            directory_id: *self.meta.directory_id.as_bytes(),
            api_addr: self.api_addr.clone(),
            peer_addr: self.peer_addr.clone(),
            initialized: {
                let m = self.raft.metrics();
                let m = m.borrow_watched();
                m.last_log_index.is_some() || m.snapshot.is_some()
            },
        }
    }

    /// What this node says of its history to bootstrap peers.
    pub fn history(&self) -> History {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let snapshot_index = m.snapshot.map(|s| s.index);
        let purged_index = m.purged.map(|p| p.index);
        History {
            cluster_id: self.meta.cluster_id.clone(),
            node_id: self.meta.node_id,
            last_log_index: m.last_log_index,
            snapshot_index,
            current_term: m.current_term,
            has_history: History::holds_history(m.last_log_index, snapshot_index, purged_index),
        }
    }

    /// The directory id this node's membership config records for it, if any.
    pub fn recorded_directory(&self) -> Option<[u8; 16]> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.membership_config
            .membership()
            .get_node(&self.meta.node_id)
            .map(|n| n.directory_id)
    }

    /// The current leader, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// Is this node the leader?
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.state == ServerState::Leader && m.current_leader == Some(self.id())
    }

    /// The API address of `id`: from the membership, a cache, or by asking its peer
    /// listener.
    pub async fn api_addr_of(&self, id: NodeId) -> Option<String> {
        if id == self.id() {
            return Some(self.api_addr.clone());
        }
        let node = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            m.membership_config.membership().get_node(&id).cloned()
        }?;
        if !node.api_addr.is_empty() {
            return Some(node.api_addr);
        }
        if let Some(a) = self.api_addrs.lock().ok()?.get(&id) {
            return Some(a.clone());
        }
        let info = fetch_info(&self.http, &node.peer_addr).await.ok()?;
        if info.node_id != id || info.cluster_id != self.meta.cluster_id {
            return None;
        }
        self.api_addrs
            .lock()
            .ok()?
            .insert(id, info.api_addr.clone());
        Some(info.api_addr)
    }
}

/// The bootstrap voters from the checkpoint `kraftd format` wrote (end offset 0); none for
/// a directory formatted with `--join`.
fn bootstrap_members(dir: &Path) -> anyhow::Result<BTreeMap<NodeId, KNode>> {
    let list = list_checkpoints(dir)?;
    let (_, path) = list
        .iter()
        .find(|(id, _)| id.end_offset == 0)
        .ok_or_else(|| {
            anyhow!(
                "no bootstrap checkpoint in {}: run kraftd format",
                dir.display()
            )
        })?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let summary = read_checkpoint(bytes::Bytes::from(bytes), None, |_: CheckpointItem<'_>| {
        Ok(())
    })
    .with_context(|| format!("reading {}", path.display()))?;
    let Some(voters) = summary.meta.voters else {
        // Formatted with --join.
        return Ok(BTreeMap::new());
    };
    // Directory ids go into the first membership entry only when --voters gave one for
    // every voter (then every node was formatted with the same ids and writes the same
    // entry); otherwise they start as "not yet known" and the leader fills them in.
    let all_known = voters.voters.iter().all(|v| !v.voter_directory_id.is_nil());
    let mut out = BTreeMap::new();
    for v in voters.voters {
        let id = u64::try_from(v.voter_id.0).map_err(|_| anyhow!("voter id {}", v.voter_id.0))?;
        let ep = v
            .endpoints
            .first()
            .ok_or_else(|| anyhow!("voter {id} has no endpoint"))?;
        out.insert(
            id,
            KNode {
                peer_addr: format!("{}:{}", ep.host.as_str(), ep.port),
                api_addr: String::new(),
                directory_id: if all_known {
                    *v.voter_directory_id.as_bytes()
                } else {
                    [0; 16]
                },
            },
        );
    }
    Ok(out)
}

/// When the loaded checkpoint ends before the log starts (the newest checkpoint was
/// damaged and the log was purged past the older one), the log cannot be replayed: fetch the
/// current checkpoint of a peer, check it, keep it, and load again.
async fn bridge_log_gap(
    sm: StateMachine,
    mut log: LogStore,
    ckpt_dir: &Path,
    config: &Config,
    meta: &MetaProperties,
) -> anyhow::Result<(StateMachine, LogStore)> {
    use openraft::storage::RaftLogStorage;
    let purged = log
        .get_log_state()
        .await
        .map_err(|e| anyhow!("reading the log state: {e}"))?
        .last_purged_log_id;
    let (applied, membership) = {
        let st = sm.shared();
        let st = st.read();
        (st.last_applied, st.membership.clone())
    };
    let Some(purged) = purged else {
        return Ok((sm, log));
    };
    if applied.map(|a| a.index) >= Some(purged.index) {
        return Ok((sm, log));
    }
    tracing::error!(
        purged = %purged,
        applied = ?applied,
        "the newest usable checkpoint ends before the log starts: fetching the current checkpoint from a peer"
    );
    let mut peers: BTreeMap<NodeId, String> = membership
        .membership()
        .nodes()
        .map(|(id, n)| (*id, n.peer_addr.clone()))
        .collect();
    if let Ok(b) = bootstrap_members(ckpt_dir) {
        for (id, n) in b {
            peers.entry(id).or_insert(n.peer_addr);
        }
    }
    peers.remove(&meta.node_id);
    let http = http_client();
    for (id, addr) in peers {
        let url = format!(
            "http://{addr}{}",
            crate::raft::network::PATH_CURRENT_SNAPSHOT
        );
        let resp = match http.get(&url).timeout(Duration::from_secs(60)).send().await {
            Ok(r) if r.status().is_success() => r,
            _ => continue,
        };
        let name = resp
            .headers()
            .get(reqwest::header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::record::checkpoint::SnapshotId::parse_file_name);
        let (Some(sid), Ok(bytes)) = (name, resp.bytes().await) else {
            continue;
        };
        match crate::image::load_checkpoint(bytes.clone(), Some(sid.epoch)) {
            Ok((_, summary)) => {
                let rm = crate::raft::state_machine::raft_meta_of(&summary);
                if rm.and_then(|r| r.last_log_id).map(|l| l.index) < Some(purged.index) {
                    tracing::warn!(
                        peer = id,
                        "peer's checkpoint is also older than our log start"
                    );
                    continue;
                }
                let path = match crate::record::checkpoint::write_checkpoint_bytes(
                    ckpt_dir, sid, &bytes,
                ) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "keeping the fetched checkpoint");
                        continue;
                    }
                };
                tracing::info!(peer = id, file = %path.display(), "fetched a checkpoint from a peer");
                drop(sm);
                let (sm, notes) =
                    StateMachine::open(ckpt_dir, log.book(), config.snapshots_to_keep)
                        .map_err(|e| anyhow!(e))?;
                for n in notes {
                    tracing::info!("{n}");
                }
                return Ok((sm, log));
            }
            Err(e) => tracing::warn!(peer = id, error = %e, "peer's checkpoint is damaged"),
        }
    }
    bail!(
        "cannot start: the newest usable checkpoint ends before the log starts at {purged}, and \
         no peer could provide a newer checkpoint; start the other controllers and retry"
    )
}

/// A node opened and started (Raft, the controller loop), with its listeners bound but not
/// yet serving: `app::serve` mounts the routers on them and starts the duties.
pub struct Booted {
    pub node: Arc<Node>,
    pub api_listener: TcpListener,
    pub peer_listener: TcpListener,
    /// The bootstrap voters, when this node still decides its first election.
    pub gate_members: Option<BTreeMap<NodeId, KNode>>,
    pub metrics: &'static PrometheusHandle,
}

/// Opens the data directory and starts the node: log store, state machine, Raft, the
/// controller loop; binds both listeners.
pub async fn boot(config: Config) -> anyhow::Result<Booted> {
    let data_dir = config.data_dir.clone();
    let meta = MetaProperties::read(&data_dir).with_context(|| {
        format!(
            "{} is not a formatted kraftd data directory (run kraftd format first)",
            data_dir.display()
        )
    })?;
    let metrics = crate::telemetry::install();
    let ckpt_dir = data_dir.join(METADATA_DIR);
    let log = LogStore::open(&data_dir.join(RAFT_DIR)).with_context(|| {
        format!(
            "opening the log store in {}",
            data_dir.join(RAFT_DIR).display()
        )
    })?;
    let (sm, notes) = StateMachine::open(&ckpt_dir, log.book(), config.snapshots_to_keep)
        .map_err(|e| anyhow!(e))?;
    for n in notes {
        if n.contains("damaged") {
            tracing::error!("{n}");
        } else {
            tracing::info!("{n}");
        }
    }
    let (sm, log) = bridge_log_gap(sm, log, &ckpt_dir, &config, &meta).await?;
    let shared = sm.shared();
    let api_listener = TcpListener::bind(&config.api_addr)
        .await
        .with_context(|| format!("binding the API listener {}", config.api_addr))?;
    let peer_listener = TcpListener::bind(&config.peer_addr)
        .await
        .with_context(|| format!("binding the peer listener {}", config.peer_addr))?;
    let bound_api = api_listener.local_addr()?;
    let api_addr = if config.advertised_api_addr.is_empty() {
        if bound_api.ip().is_unspecified() {
            tracing::warn!(
                bound = %bound_api,
                "the API listener is bound to a wildcard address and advertised_api_addr is not set: followers cannot forward writes to this node when it leads"
            );
        }
        bound_api.to_string()
    } else {
        config.advertised_api_addr.clone()
    };
    let peer_addr = peer_listener.local_addr()?.to_string();

    let http = http_client();
    let raft_config = Arc::new(openraft_config(&config).map_err(|e| anyhow!(e))?);
    let network = Network::new(http.clone(), meta.cluster_id.clone(), meta.node_id);
    let peer_book = network.book();
    let raft = Raft::new(meta.node_id, raft_config, network, log.clone(), sm)
        .await
        .map_err(|e| anyhow!("starting raft: {e}"))?;
    tokio::spawn(keep_peer_book(raft.clone(), peer_book));
    // A node with an empty log: a joiner waits to be added; a bootstrap voter decides its
    // first election once the listeners serve (its peers ask it the same question).
    let mut gate_members = None;
    let gate = if raft.is_initialized().await.map_err(|e| anyhow!("{e}"))? {
        Gate::open()
    } else {
        let members = bootstrap_members(&ckpt_dir)?;
        match members.get(&meta.node_id) {
            None if members.is_empty() => {
                tracing::info!(
                    "formatted to join (--join): an observer with an empty log until the leader \
                     adds this node as a voter (kraftd quorum add-voter, POST /v1/quorum/voters)"
                );
                Gate::open()
            }
            None => {
                tracing::info!("not a bootstrap voter: waiting to be added by the leader");
                Gate::open()
            }
            Some(me) => {
                let borrowed = me.directory_id != [0; 16];
                gate_members = Some(members);
                Gate::pending(borrowed)
            }
        }
    };
    let controller = Controller::start(LoopDeps {
        raft: raft.clone(),
        sm: shared.clone(),
        log: log.clone(),
        node_id: meta.node_id,
        cluster_id: meta.cluster_id.clone(),
        session_timeout: Duration::from_millis(config.broker_session_timeout_ms),
    });
    let node = Arc::new(Node {
        raft: raft.clone(),
        sm: shared,
        log,
        meta,
        config: config.clone(),
        http,
        api_addr: api_addr.clone(),
        peer_addr: peer_addr.clone(),
        seen_commit: AtomicU64::new(0),
        api_addrs: Mutex::new(BTreeMap::new()),
        receiving: tokio::sync::Mutex::new(None),
        controller,
        followers: Mutex::new(BTreeMap::new()),
        readmit: Mutex::new(BTreeSet::new()),
        bootstrap: Arc::new(gate),
    });

    Ok(Booted {
        node,
        api_listener,
        peer_listener,
        gate_members,
        metrics,
    })
}

/// Starts the node's background duties: the 100 ms ticks, the first-election decision of a
/// bootstrap voter, and the leadership watch.
pub fn start_duties(
    node: &Arc<Node>,
    gate_members: Option<BTreeMap<NodeId, KNode>>,
    metrics: &'static PrometheusHandle,
) {
    tokio::spawn(background(node.clone(), metrics));
    if let Some(members) = gate_members {
        let first = crate::node::bootstrap::FirstElection {
            gate: node.bootstrap.clone(),
            raft: node.raft.clone(),
            http: node.http.clone(),
            node_id: node.id(),
            cluster_id: node.meta.cluster_id.clone(),
            data_dir: node.config.data_dir.clone(),
        };
        tokio::spawn(crate::node::bootstrap::run(first, members));
    }
    tokio::spawn(watch_leadership(node.raft.clone()));
}

/// Background duties, every 100 ms: idle NoOps and directory ids (leader), replication
/// tracking (leader), snapshots by size or age (every node).
async fn background(node: Arc<Node>, metrics: &'static PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let noop_every = Duration::from_millis(node.config.noop_interval_ms.max(1));
    let snapshot_every = Duration::from_millis(node.config.snapshot_interval_ms.max(1));
    let mut last_snapshot_request: Option<Instant> = None;
    let mut last_dir_fill: Option<Instant> = None;
    let mut features_written_in_term: Option<u64> = None;
    let mut last_upkeep = Instant::now();
    loop {
        tick.tick().await;
        if last_upkeep.elapsed() > Duration::from_secs(5) {
            // Bounds the recorder's histogram buffers when nobody scrapes.
            last_upkeep = Instant::now();
            metrics.run_upkeep();
        }
        if node.raft.metrics().borrow_watched().running_state.is_err() {
            tracing::error!("raft stopped with a fatal error; exiting");
            std::process::exit(70);
        }
        if node.is_leader() {
            write_bootstrap_features(&node, &mut features_written_in_term);
            node.controller.noop_if_idle(noop_every);
            track_followers(&node);
            if last_dir_fill.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
                last_dir_fill = Some(Instant::now());
                reconcile_directories(&node).await;
            }
        }
        let due = {
            let st = node.sm.read();
            if st.bytes_since_snapshot >= node.config.snapshot_max_bytes {
                Some(format!(
                    "{} bytes of log applied since the last checkpoint (snapshot_max_bytes {})",
                    st.bytes_since_snapshot, node.config.snapshot_max_bytes
                ))
            } else {
                st.new_records_since
                    .filter(|t| t.elapsed() >= snapshot_every)
                    .map(|t| {
                        format!(
                            "new records for {} ms since the last checkpoint (snapshot_interval_ms {})",
                            t.elapsed().as_millis(),
                            node.config.snapshot_interval_ms
                        )
                    })
            }
        };
        if let Some(reason) = due
            .filter(|_| last_snapshot_request.is_none_or(|t| t.elapsed() > Duration::from_secs(1)))
        {
            last_snapshot_request = Some(Instant::now());
            node.sm.set_snapshot_reason(reason);
            if let Err(e) = node.raft.trigger().snapshot().await {
                tracing::warn!(error = %e, "cannot trigger a snapshot");
            }
        }
    }
}

/// Keeps the peer connections' member records (addresses, directory ids) equal to the
/// current membership.
async fn keep_peer_book(raft: Raft, book: PeerBook) {
    let mut rx = raft.metrics();
    // The metrics change with every applied entry; the membership only with its own entry.
    let mut seen = None;
    loop {
        {
            let m = rx.borrow_watched();
            let at = Some(*m.membership_config.log_id());
            if at != seen {
                seen = at;
                book.set_all(
                    m.membership_config
                        .membership()
                        .nodes()
                        .map(|(id, n)| (*id, n.clone())),
                );
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Logs every leadership change once, with the term, the previous leader and the reason,
/// and records the election latency: from this node losing its known leader (it stood for
/// election, or saw a higher term) to knowing the next one. It follows Raft's metrics
/// channel rather than the 100 ms tick because an election on a quiet quorum takes a few
/// milliseconds, so the leaderless moment falls between two ticks.
async fn watch_leadership(raft: Raft) {
    let mut rx = raft.metrics();
    let (mut leader, mut term, mut state) = {
        let m = rx.borrow_watched();
        (m.current_leader, m.current_term, m.state)
    };
    let me = rx.borrow_watched().id;
    let mut lost_at: Option<(Instant, Option<NodeId>)> = None;
    while rx.changed().await.is_ok() {
        let (new_leader, new_term, new_state) = {
            let m = rx.borrow_watched();
            (m.current_leader, m.current_term, m.state)
        };
        if state == ServerState::Leader && new_state != ServerState::Leader {
            let reason = if new_state == ServerState::Shutdown {
                "this node is shutting down".to_string()
            } else if new_term > term {
                format!("a higher term {new_term} was seen")
            } else if let Some(l) = new_leader.filter(|l| *l != me) {
                // openraft orders the leaders of one term by node id.
                format!("node {l} won the same term with a higher vote")
            } else {
                "this node is no longer a voter".to_string()
            };
            tracing::warn!(term, new_term, new_leader, reason = %reason, "lost leadership");
        }
        if new_leader != leader || new_term != term {
            match new_leader {
                None => {
                    if lost_at.is_none() {
                        lost_at = Some((Instant::now(), leader));
                    }
                    if leader.is_some() && new_state == ServerState::Candidate {
                        tracing::info!(
                            term = new_term,
                            previous_leader = leader,
                            "standing for election: no word from the leader within the election timeout"
                        );
                    }
                }
                Some(l) => {
                    let seen_lost = lost_at.take();
                    let (since, previous) = seen_lost.unwrap_or((Instant::now(), leader));
                    let elapsed = since.elapsed();
                    let election_ms = seen_lost.map(|_| elapsed.as_millis() as u64);
                    // Counted when a known leader was lost first: not the first leader after
                    // start-up, nor a leader replaced with no leaderless moment seen here.
                    if seen_lost.is_some() && previous.is_some() {
                        crate::telemetry::election_latency(elapsed);
                    }
                    if l == me {
                        tracing::info!(
                            term = new_term,
                            previous_leader = previous,
                            election_ms,
                            "gained leadership: won the election"
                        );
                    } else {
                        tracing::info!(
                            leader = l,
                            term = new_term,
                            previous_leader = previous,
                            election_ms,
                            "new leader known"
                        );
                    }
                }
            }
        }
        (leader, term, state) = (new_leader, new_term, new_state);
    }
}

/// On a new cluster the feature levels (metadata.version) exist only in the bootstrap
/// checkpoint; the leader writes them into the log once (once per term at most, and only
/// after it applied its own first entry, so it sees what earlier leaders wrote).
fn write_bootstrap_features(node: &Arc<Node>, written_in_term: &mut Option<u64>) {
    let term = node.raft.metrics().borrow_watched().current_term;
    if *written_in_term == Some(term) || node.sm.applied().epoch as u64 != term {
        return;
    }
    let records: Vec<VersionedRecord> = {
        let st = node.sm.read();
        if st.features_in_log {
            return;
        }
        st.image
            .features()
            .iter()
            .map(|(name, level)| {
                VersionedRecord::new(MetadataRecord::FeatureLevel(FeatureLevelRecord {
                    name: name.clone(),
                    feature_level: *level,
                }))
            })
            .collect()
    };
    *written_in_term = Some(term);
    if records.is_empty() {
        return;
    }
    let node = node.clone();
    tokio::spawn(async move {
        match node.controller.write(&records).await {
            Ok(ack) => tracing::info!(
                offset = ack.offset,
                "wrote the bootstrap feature levels into the log"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot write the bootstrap feature levels"),
        }
    });
}

fn track_followers(node: &Node) {
    let m = node.raft.metrics().borrow_watched().clone();
    let Some(repl) = m.replication else {
        return;
    };
    let now = now_ms();
    let last = m.last_log_index;
    let Ok(mut f) = node.followers.lock() else {
        return;
    };
    f.retain(|id, _| repl.contains_key(id));
    for (id, matched) in repl {
        let t = f.entry(id).or_default();
        let idx = matched.map(|l| l.index);
        if idx != t.matched || t.last_fetch_ms == 0 {
            t.last_fetch_ms = now;
        }
        if idx >= last {
            t.last_caught_up_ms = now;
            t.last_fetch_ms = now;
        }
        t.matched = idx;
    }
}

/// Keeps the membership's directory ids true (KIP-853), on the leader:
/// - a voter whose directory id is still nil (a bootstrap voter) gets the one its peer
///   listener reports, in one membership entry that keeps the voter set;
/// - a voter whose disk was wiped and re-formatted (its peer listener reports another
///   directory id) is demoted to a learner under its new directory id: it stops counting
///   towards commits and votes, catches up (by snapshot if need be), and is promoted back
///   once it has caught up.
async fn reconcile_directories(node: &Node) {
    let m = node.raft.metrics().borrow_watched().clone();
    let membership = m.membership_config.membership().clone();
    if membership.get_joint_config().len() > 1 {
        return;
    }
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let mut fill = BTreeMap::new();
    let mut demote = BTreeMap::new();
    for (id, n) in membership.nodes() {
        let info = if *id == node.id() {
            node.info()
        } else {
            match fetch_info(&node.http, &n.peer_addr).await {
                Ok(i) => i,
                Err(_) => continue,
            }
        };
        if info.node_id != *id || info.cluster_id != node.meta.cluster_id {
            tracing::warn!(id, peer = %n.peer_addr, "peer listener answers for another node or cluster");
            continue;
        }
        if n.directory_id == info.directory_id {
            continue;
        }
        let updated = KNode {
            peer_addr: n.peer_addr.clone(),
            api_addr: if n.api_addr.is_empty() {
                info.api_addr
            } else {
                n.api_addr.clone()
            },
            directory_id: info.directory_id,
        };
        if n.directory_id == [0; 16] || !voters.contains(id) {
            fill.insert(*id, updated);
        } else if *id != node.id() {
            tracing::warn!(
                id,
                old = %n.directory(),
                new = %uuid::Uuid::from_bytes(info.directory_id),
                "voter came back with a re-formatted disk: demoting it to a learner until it has caught up"
            );
            demote.insert(*id, updated);
        }
    }
    if !demote.is_empty() {
        let ids: BTreeSet<NodeId> = demote.keys().copied().collect();
        if voters.len() > ids.len() {
            match node
                .controller
                .exclusive(2, {
                    let ids = ids.clone();
                    move |raft: Raft| async move {
                        raft.change_membership(ChangeMembers::RemoveVoters(ids), true)
                            .await
                    }
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                Ok(_) => {
                    if let Ok(mut r) = node.readmit.lock() {
                        r.extend(ids.iter().copied());
                    }
                    fill.extend(demote);
                }
                Err(e) => tracing::warn!(error = %e, "cannot demote re-formatted voters"),
            }
        }
    }
    if !fill.is_empty() {
        let ids: BTreeSet<_> = fill.keys().copied().collect();
        // Members whose recorded directory id was a real one are replaced disks: their
        // logs start empty again.
        let replaced: Vec<NodeId> = fill
            .keys()
            .copied()
            .filter(|id| {
                membership
                    .get_node(id)
                    .is_some_and(|n| n.directory_id != [0; 16])
            })
            .collect();
        match node
            .controller
            .exclusive(1, move |raft: Raft| async move {
                for id in replaced {
                    crate::raft::expect_empty_log(&raft, id).await;
                }
                raft.change_membership(ChangeMembers::SetNodes(fill), true)
                    .await
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            Ok(_) => tracing::info!(?ids, "recorded directory ids"),
            Err(e) => tracing::warn!(error = %e, "cannot record directory ids"),
        }
    }
    // Promote demoted voters that have caught up.
    let pending: Vec<NodeId> = node
        .readmit
        .lock()
        .map(|r| r.iter().copied().collect())
        .unwrap_or_default();
    if pending.is_empty() {
        return;
    }
    let m = node.raft.metrics().borrow_watched().clone();
    let learners: BTreeSet<NodeId> = m.membership_config.membership().learner_ids().collect();
    let last = m.last_log_index.unwrap_or(0);
    for id in pending {
        if !learners.contains(&id) {
            if let Ok(mut r) = node.readmit.lock() {
                r.remove(&id);
            }
            continue;
        }
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map(|l| l.index);
        if matched.is_some_and(|i| i + 16 >= last) {
            match node
                .controller
                .exclusive(2, move |raft: Raft| async move {
                    raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                        .await
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                Ok(_) => {
                    tracing::info!(id, "re-formatted voter caught up and is a voter again");
                    if let Ok(mut r) = node.readmit.lock() {
                        r.remove(&id);
                    }
                }
                Err(e) => tracing::warn!(id, error = %e, "cannot promote caught-up learner"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::meta::{format, parse_voters, random_id};
    use crate::record::uuid_fmt::kafka_uuid;
    use uuid::Uuid;

    #[test]
    fn bootstrap_membership_carries_directory_ids_only_when_all_were_given() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let with = parse_voters(&format!(
            "1@127.0.0.1:9094:{},2@127.0.0.1:9194:{}",
            kafka_uuid(&a),
            kafka_uuid(&b)
        ))
        .unwrap();
        let without = parse_voters("1@127.0.0.1:9094,2@127.0.0.1:9194").unwrap();
        let cluster = random_id();
        for (voters, expect) in [(with, [a, b]), (without, [Uuid::nil(), Uuid::nil()])] {
            for node in [1u64, 2] {
                let dir = tempfile::tempdir().unwrap();
                format(dir.path(), &cluster, node, &voters, false).unwrap();
                let m = bootstrap_members(&dir.path().join(METADATA_DIR)).unwrap();
                let got: Vec<Uuid> = m.values().map(|n| n.directory()).collect();
                assert_eq!(got, expect, "node {node} writes the same first membership");
                assert_eq!(m[&2].peer_addr, "127.0.0.1:9194");
            }
        }
    }

    #[test]
    fn a_directory_formatted_to_join_has_no_bootstrap_members() {
        let dir = tempfile::tempdir().unwrap();
        crate::node::meta::format_mode(
            dir.path(),
            &random_id(),
            3,
            &crate::node::meta::FormatMode::Join,
            false,
        )
        .unwrap();
        let m = bootstrap_members(&dir.path().join(METADATA_DIR)).unwrap();
        assert!(m.is_empty(), "{m:?}");
    }

    #[test]
    fn history_is_anything_beyond_the_bootstrap_membership_entry() {
        assert!(!History::holds_history(None, None, None), "empty");
        assert!(
            !History::holds_history(Some(0), None, None),
            "only the bootstrap membership entry"
        );
        assert!(History::holds_history(Some(1), None, None), "an election");
        assert!(History::holds_history(None, Some(41), None), "a snapshot");
        assert!(
            History::holds_history(Some(0), None, Some(0)),
            "a purged prefix"
        );
    }
}
