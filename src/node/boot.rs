//! Start-up of one controller process: opens the data directory (log store, state
//! machine, Raft), bridges a log gap from a peer's checkpoint, starts the controller loop
//! and binds both listeners. `app::serve` mounts the routers and starts the duties.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::controller::{Controller, LoopDeps};
use crate::node::config::openraft_config;
use crate::node::config::Config;
use crate::node::meta::{MetaProperties, METADATA_DIR, RAFT_DIR};
use crate::raft::log_store::LogStore;
use crate::raft::peer::client::{Network, PeerHttp};
use crate::raft::peer::gate::Gate;
use crate::raft::peer::server::{Me, PeerState};
use crate::raft::state_machine::StateMachine;
use crate::raft::{KNode, NodeId, Raft};
use crate::record::checkpoint::{list_checkpoints, read_checkpoint, CheckpointItem};
use crate::tls::{client_config, Identity};

use super::handle::Node;

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
    http: &PeerHttp,
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
    for (id, addr) in peers {
        let url = http.url(&addr, crate::raft::peer::wire::PATH_CURRENT_SNAPSHOT);
        let resp = match http
            .client()
            .get(&url)
            .timeout(Duration::from_secs(60))
            .send()
            .await
        {
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
    /// With TLS: this node's certificate and the cluster's CA, both rotated in place.
    pub tls: Option<Arc<Identity>>,
}

/// Opens the data directory and starts the node: log store, state machine, Raft, the
/// controller loop; binds both listeners.
pub async fn boot(config: Config) -> anyhow::Result<Booted> {
    let data_dir = config.data_dir.clone();
    // TLS files are read first: a bad one stops the node before it opens anything.
    let tls = match config.tls() {
        Some(files) => Some(Identity::load(files)?),
        None => None,
    };
    let http = match &tls {
        Some(identity) => PeerHttp::tls(client_config(identity.clone())?)?,
        None => PeerHttp::plain(),
    };
    // Its errors name the directory and, when it is not formatted, the command to run.
    let meta = MetaProperties::read(&data_dir)?;
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
    let (sm, log) = bridge_log_gap(sm, log, &ckpt_dir, &config, &meta, &http).await?;
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

    let raft_config = Arc::new(openraft_config(&config)?);
    let network = Network::new(http.clone(), meta.cluster_id.clone(), meta.node_id);
    let peer_book = network.book();
    let raft = Raft::new(meta.node_id, raft_config, network, log.clone(), sm)
        .await
        .map_err(|e| anyhow!("starting raft: {e}"))?;
    tokio::spawn(super::duties::keep_peer_book(raft.clone(), peer_book));
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
    let peer = Arc::new(PeerState::new(
        raft.clone(),
        shared.clone(),
        Me {
            cluster_id: meta.cluster_id.clone(),
            node_id: meta.node_id,
            directory_id: *meta.directory_id.as_bytes(),
            api_addr,
            peer_addr,
        },
        Arc::new(gate),
        config.max_snapshot_bytes,
    ));
    let node = Arc::new(Node {
        raft: raft.clone(),
        sm: shared,
        log,
        meta,
        config: config.clone(),
        http,
        api_addrs: Mutex::new(BTreeMap::new()),
        controller,
        followers: Mutex::new(super::tracker::Tracker::default()),
        readmit: Mutex::new(BTreeSet::new()),
        transferring: Mutex::new(None),
        peer,
    });

    Ok(Booted {
        node,
        api_listener,
        peer_listener,
        gate_members,
        metrics,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::meta::{format, parse_voters, random_id};
    use crate::raft::peer::wire::History;
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
