//! The operators' commands (`kraftd quorum|snapshot|topics|brokers|configs|elect|metadata`):
//! clients of the HTTP API (`shared/API.md`) through [`crate::client::Client`], like
//! Kafka's `kafka-metadata-quorum`, `kafka-topics`, `kafka-configs` and
//! `kafka-leader-election` (`metadata`, like `kafka-metadata-shell`, is in
//! [`super::metadata`]). Tables by default, JSON with `--output json`; a failure prints
//! `kraftd: CODE: message` and exits with the code of its [`Failure`].

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::common::{write_json, CliError, Conn, Failure, CLOSED_PIPE};
use super::table::{write_fields, Table};
use super::Output;
use crate::client::{
    Client, ConfigKind, ConfigPatch, CreateTopic, ElectionRequest, ElectionResult, HealthStatus,
    NewVoter, PartitionView, QuorumHealth, TopicPartition, VoterAddress,
};
use crate::record::checkpoint::SnapshotId;

/// Bytes asked for per request by `snapshot fetch`, so an interrupted download leaves a
/// usable prefix to resume from.
const FETCH_CHUNK: u64 = 4 << 20;

/// The operators' commands.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// The controller quorum: status, replication, voters (like kafka-metadata-quorum).
    Quorum {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: QuorumCommand,
    },
    /// Checkpoints: take one now, list them, download one.
    Snapshot {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: SnapshotCommand,
    },
    /// Topics (like kafka-topics).
    Topics {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: TopicsCommand,
    },
    /// Registered brokers.
    Brokers {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: BrokersCommand,
    },
    /// Dynamic configs of topics and brokers (like kafka-configs); broker `default` is the
    /// cluster-wide default.
    Configs {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: ConfigsCommand,
    },
    /// Elect partition leaders (like kafka-leader-election).
    Elect(ElectArgs),
    /// The metadata image and log (like kafka-metadata-shell).
    Metadata {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: super::metadata::MetadataCommand,
    },
}

/// `kraftd quorum ...`.
#[derive(Subcommand, Debug)]
pub enum QuorumCommand {
    /// The leader's view of the quorum (kafka-metadata-quorum describe --status).
    Status,
    /// Every member's log end and lag (kafka-metadata-quorum describe --replication).
    Replication,
    /// How many voters are up and caught up, and how many more can fail: "healthy, can
    /// lose 1". Exit 0 healthy; 5 degraded (writes commit, but a voter is down or behind);
    /// 1 unavailable (writes cannot commit); 3 no node answered.
    Health,
    /// Add a formatted, running controller as a voter (learner first, voter once caught up).
    AddVoter(VoterArgs),
    /// Move a controller to new addresses with a majority alive (Kafka's UpdateRaftVoter):
    /// restart it on the new ones first; it must answer there as itself, with its disk.
    UpdateVoter(VoterArgs),
    /// Remove a voter.
    RemoveVoter {
        /// Its node id.
        #[arg(long)]
        id: u64,
    },
    /// Hand leadership to another voter without waiting for an election timeout (etcd's
    /// move-leader); before restarting the leader in a rolling upgrade.
    TransferLeader {
        /// The voter to lead next (default: the one whose log is furthest along).
        #[arg(long)]
        to: Option<u64>,
    },
}

/// A controller and where it listens: `quorum add-voter` and `quorum update-voter`.
#[derive(clap::Args, Debug)]
pub struct VoterArgs {
    /// Its node id.
    #[arg(long)]
    id: u64,
    /// Its peer listener HOST:PORT.
    #[arg(long)]
    peer: String,
    /// Its API listener HOST:PORT (default: what the node reports).
    #[arg(long)]
    api_addr: Option<String>,
}

/// `kraftd snapshot ...`.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// The node at --api takes a checkpoint now.
    Take,
    /// The node's checkpoints, newest first.
    List,
    /// Download a checkpoint (resuming a partial file) and check it.
    Fetch {
        /// END_OFFSET-EPOCH, a checkpoint file name, or `latest`.
        #[arg(default_value = "latest")]
        id: String,
        /// File to write, or a directory to write the checkpoint's own name in.
        #[arg(long)]
        to: PathBuf,
    },
}

/// `kraftd topics ...`.
#[derive(Subcommand, Debug)]
pub enum TopicsCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions (may be left out with --assignments).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replicas per partition (may be left out with --assignments).
        #[arg(long)]
        replication_factor: Option<i32>,
        /// A topic config KEY=VALUE (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_kv)]
        configs: Vec<(String, String)>,
        /// Replica lists: partitions separated by `,`, replicas by `:` (1:2:3,2:3:1).
        #[arg(long, value_parser = parse_assignments)]
        assignments: Option<Assignments>,
    },
    /// Every topic with its partition counts.
    List,
    /// One topic and its partitions (kafka-topics --describe).
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
    },
    /// Grow a topic to --count partitions.
    AddPartitions {
        /// Topic name.
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        count: i32,
    },
}

/// Replica lists of `topics create --assignments`.
#[derive(Debug, Clone)]
pub struct Assignments(pub Vec<Vec<i32>>);

/// `kraftd brokers ...`.
#[derive(Subcommand, Debug)]
pub enum BrokersCommand {
    /// Registered brokers and their state.
    List,
    /// Unregister a broker.
    Unregister {
        /// Broker id.
        id: i32,
    },
}

/// Which kind of resource a config belongs to.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum Kind {
    /// A topic, by name.
    Topic,
    /// A broker, by id, or `default` for the cluster default.
    Broker,
}

impl Kind {
    fn config_kind(self) -> ConfigKind {
        match self {
            Kind::Topic => ConfigKind::Topic,
            Kind::Broker => ConfigKind::Broker,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Topic => "topic",
            Kind::Broker => "broker",
        }
    }
}

/// `kraftd configs ...`.
#[derive(Subcommand, Debug)]
pub enum ConfigsCommand {
    /// The configs set on a resource.
    Get {
        /// topic or broker.
        kind: Kind,
        /// Topic name, broker id, or `default`.
        name: String,
    },
    /// Set configs: KEY=VALUE...
    Set {
        /// topic or broker.
        kind: Kind,
        /// Topic name, broker id, or `default`.
        name: String,
        /// KEY=VALUE pairs.
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = parse_kv)]
        pairs: Vec<(String, String)>,
    },
    /// Remove configs: KEY...
    Delete {
        /// topic or broker.
        kind: Kind,
        /// Topic name, broker id, or `default`.
        name: String,
        /// Keys to remove.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
}

/// Which election to run.
#[derive(Args, Debug, Clone, Copy)]
#[group(required = true, multiple = false)]
pub struct ElectionType {
    /// Move leadership back to each partition's first replica.
    #[arg(long)]
    preferred: bool,
    /// Elect a leader outside the ISR for leaderless partitions (data may be lost).
    #[arg(long)]
    unclean: bool,
}

/// `kraftd elect --preferred|--unclean [--topic T --partition P]...`.
#[derive(Args, Debug)]
pub struct ElectArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(flatten)]
    kind: ElectionType,
    /// Topic of a partition to elect for (repeatable, paired with --partition in order).
    #[arg(long)]
    topic: Vec<String>,
    /// Partition id (repeatable, paired with --topic). None: every partition (preferred).
    #[arg(long)]
    partition: Vec<i32>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn parse_assignments(s: &str) -> Result<Assignments, String> {
    s.split(',')
        .map(|p| {
            p.split(':')
                .map(|r| {
                    r.trim()
                        .parse::<i32>()
                        .map_err(|_| format!("{r:?} in {s:?} is not a broker id"))
                })
                .collect()
        })
        .collect::<Result<_, _>>()
        .map(Assignments)
}

/// Runs an operator command and prints its answer; failures go to stderr as
/// `kraftd: CODE: message`.
pub fn main(cmd: AdminCommand) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kraftd: IO_ERROR: cannot start the runtime: {e}");
            return ExitCode::from(Failure::Failed.exit_code());
        }
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let res = rt.block_on(run(cmd, &mut out));
    let res = res.and_then(|()| out.flush().map_err(CliError::from));
    match res {
        Ok(()) => ExitCode::SUCCESS,
        // `| head` read what it wanted and left.
        Err(e) if e.code == CLOSED_PIPE => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            eprintln!("kraftd: {}: {}", e.code, e.message);
            ExitCode::from(e.failure.exit_code())
        }
    }
}

/// Runs `cmd`, writing its answer to `out`.
pub async fn run(cmd: AdminCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        AdminCommand::Quorum { conn, cmd } => quorum(&conn, cmd, out).await,
        AdminCommand::Snapshot { conn, cmd } => snapshot(&conn, cmd, out).await,
        AdminCommand::Topics { conn, cmd } => topics(&conn, cmd, out).await,
        AdminCommand::Brokers { conn, cmd } => brokers(&conn, cmd, out).await,
        AdminCommand::Configs { conn, cmd } => configs(&conn, cmd, out).await,
        AdminCommand::Elect(a) => elect(a, out).await,
        AdminCommand::Metadata { conn, cmd } => super::metadata::run(&conn, cmd, out).await,
    }
}

fn ids<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

fn or_minus_one(v: Option<i64>) -> String {
    v.unwrap_or(-1).to_string()
}

/// A timestamp the contract gives as 0 for "never", shown as Kafka's tools show it: -1.
fn never_minus_one(ms: i64) -> String {
    or_minus_one((ms > 0).then_some(ms))
}

async fn quorum(conn: &Conn, cmd: QuorumCommand, out: &mut dyn Write) -> Result<(), CliError> {
    let c = conn.client().await?;
    match cmd {
        QuorumCommand::Status => {
            let mut st = c.quorum_status().await?;
            // The lag figures are the leader's: ask it when a follower answered. Its API
            // address may not be reachable from here; then the follower's answer stands.
            if let Some(leader) = st.leader_id.filter(|l| st.node_id != *l) {
                let api = st
                    .voters
                    .iter()
                    .find(|v| v.id == leader)
                    .and_then(|v| v.api.as_deref());
                if let Some(lc) = api.map(|a| c.at(a)) {
                    if let Ok(ls) = lc.quorum_status().await {
                        st = ls;
                    }
                }
            }
            if conn.output == Output::Json {
                return write_json(out, &st);
            }
            write_fields(
                out,
                &[
                    ("ClusterId", st.cluster_id.clone()),
                    ("LeaderId", or_minus_one(st.leader_id.map(|l| l as i64))),
                    ("LeaderEpoch", st.leader_epoch.to_string()),
                    ("HighWatermark", st.high_watermark.to_string()),
                    ("MaxFollowerLag", st.max_follower_lag.to_string()),
                    (
                        "MaxFollowerLagTimeMs",
                        st.max_follower_lag_time_ms.to_string(),
                    ),
                    ("CurrentVoters", format!("[{}]", ids(&st.voter_ids()))),
                    ("CurrentObservers", format!("[{}]", ids(&st.observers))),
                ],
            )?;
        }
        QuorumCommand::Replication => {
            let rows = c.replication().await?;
            if conn.output == Output::Json {
                return write_json(out, &rows);
            }
            let mut t = Table::new(&[
                "NodeId",
                "LogEndOffset",
                "Lag",
                "LastFetchTimestamp",
                "LastCaughtUpTimestamp",
                "Status",
                "State",
            ]);
            for r in rows {
                t.row(vec![
                    r.node_id.to_string(),
                    r.log_end_offset.to_string(),
                    r.lag.to_string(),
                    never_minus_one(r.last_fetch_timestamp),
                    never_minus_one(r.last_caught_up_timestamp),
                    format!("{:?}", r.status),
                    match r.up {
                        Some(true) => "up",
                        Some(false) => "down",
                        None => "unknown",
                    }
                    .to_string(),
                ]);
            }
            t.write(out)?;
        }
        QuorumCommand::Health => {
            let h = c.quorum_health().await?;
            if conn.output == Output::Json {
                write_json(out, &h)?;
            } else {
                write_health(out, &h)?;
            }
            return match h.status {
                HealthStatus::Healthy => Ok(()),
                HealthStatus::Degraded => Err(CliError::new(
                    Failure::Degraded,
                    "QUORUM_DEGRADED",
                    h.summary,
                )),
                HealthStatus::Unavailable => Err(CliError::new(
                    Failure::Refused,
                    "QUORUM_UNAVAILABLE",
                    h.summary,
                )),
            };
        }
        QuorumCommand::AddVoter(VoterArgs { id, peer, api_addr }) => {
            let voters = c
                .add_voter(&NewVoter {
                    id,
                    peer,
                    api: api_addr,
                })
                .await?;
            print_voters(conn, out, &format!("Node {id} is a voter."), voters)?;
        }
        QuorumCommand::UpdateVoter(VoterArgs { id, peer, api_addr }) => {
            let v = c
                .update_voter(
                    id,
                    &VoterAddress {
                        peer,
                        api: api_addr,
                    },
                )
                .await?;
            if conn.output == Output::Json {
                write_json(out, &v)?;
            } else {
                writeln!(
                    out,
                    "Node {} now listens at peer {} and API {}.",
                    v.id,
                    v.peer,
                    v.api.as_deref().unwrap_or("(unknown)")
                )?;
            }
        }
        QuorumCommand::RemoveVoter { id } => {
            let voters = c.remove_voter(id).await?;
            print_voters(
                conn,
                out,
                &format!("Node {id} is no longer a voter."),
                voters,
            )?;
        }
        QuorumCommand::TransferLeader { to } => {
            let moved = c.transfer_leader(to).await?;
            if conn.output == Output::Json {
                write_json(out, &moved)?;
            } else {
                writeln!(
                    out,
                    "Node {} leads at epoch {} (was node {} at epoch {}).",
                    moved.leader_id,
                    moved.leader_epoch,
                    moved.previous_leader_id,
                    moved.previous_leader_epoch
                )?;
            }
        }
    }
    Ok(())
}

/// `quorum health` as text: the verdict, the counts, then one row per member.
fn write_health(out: &mut dyn Write, h: &QuorumHealth) -> Result<(), CliError> {
    writeln!(out, "{}", h.summary)?;
    let leader = h
        .leader_id
        .map_or("no leader".to_string(), |l| format!("leader {l}"));
    writeln!(
        out,
        "{leader}, epoch {}; {} of {} voters up, {} caught up, majority {}; down after {} ms silent",
        h.leader_epoch, h.voters_up, h.voters, h.voters_caught_up, h.majority, h.down_after_ms
    )?;
    if h.members.is_empty() {
        return Ok(());
    }
    let mut t = Table::new(&[
        "NodeId",
        "Role",
        "State",
        "CaughtUp",
        "Lag",
        "LastHeardMs",
        "Api",
    ]);
    for m in &h.members {
        t.row(vec![
            m.node_id.to_string(),
            format!("{:?}", m.role),
            if m.up { "up" } else { "down" }.to_string(),
            if m.caught_up { "yes" } else { "no" }.to_string(),
            m.lag.to_string(),
            or_minus_one(m.last_ack_ms_ago),
            m.api.clone().unwrap_or_default(),
        ]);
    }
    writeln!(out)?;
    t.write(out)?;
    Ok(())
}

fn print_voters(
    conn: &Conn,
    out: &mut dyn Write,
    what: &str,
    mut voters: Vec<u64>,
) -> Result<(), CliError> {
    voters.sort_unstable();
    if conn.output == Output::Json {
        return write_json(out, &json!({ "voters": voters }));
    }
    writeln!(out, "{what} CurrentVoters: [{}]", ids(&voters))?;
    Ok(())
}

async fn snapshot(conn: &Conn, cmd: SnapshotCommand, out: &mut dyn Write) -> Result<(), CliError> {
    let c = conn.client().await?;
    match cmd {
        SnapshotCommand::Take => {
            let s = c.take_snapshot().await?;
            if conn.output == Output::Json {
                return write_json(out, &s);
            }
            writeln!(
                out,
                "Took snapshot {}-{}: {}",
                s.end_offset, s.epoch, s.file_name
            )?;
        }
        SnapshotCommand::List => {
            let list = c.list_snapshots().await?;
            if conn.output == Output::Json {
                return write_json(out, &list);
            }
            let mut t = Table::new(&[
                "EndOffset",
                "Epoch",
                "Size",
                "LastContainedLogTimestamp",
                "FileName",
            ]);
            for s in list {
                t.row(vec![
                    s.end_offset.to_string(),
                    s.epoch.to_string(),
                    s.size.to_string(),
                    or_minus_one(s.last_contained_log_timestamp),
                    s.file_name,
                ]);
            }
            t.write(out)?;
        }
        SnapshotCommand::Fetch { id, to } => fetch_snapshot(conn, &c, &id, &to, out).await?,
    }
    Ok(())
}

/// `END-EPOCH` or a checkpoint file name.
fn parse_snapshot_id(s: &str) -> Option<SnapshotId> {
    if let Some(id) = SnapshotId::parse_file_name(s) {
        return Some(id);
    }
    let (a, b) = s.split_once('-')?;
    Some(SnapshotId {
        end_offset: a.parse().ok()?,
        epoch: b.parse().ok()?,
    })
}

async fn fetch_snapshot(
    conn: &Conn,
    c: &Client,
    id: &str,
    to: &Path,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let list = c.list_snapshots().await?;
    let info = if id == "latest" {
        list.first()
    } else {
        let want = parse_snapshot_id(id).ok_or_else(|| {
            CliError::usage(format!(
                "{id:?} is neither END_OFFSET-EPOCH, a checkpoint file name nor `latest`"
            ))
        })?;
        list.iter()
            .find(|s| s.end_offset == want.end_offset && s.epoch == want.epoch)
    };
    let info = info.ok_or_else(|| {
        CliError::new(
            Failure::Refused,
            "SNAPSHOT_NOT_FOUND",
            format!("{} has no snapshot {id}", c.base_url()),
        )
    })?;
    let size = info.size;
    let path = if to.is_dir() {
        to.join(&info.file_name)
    } else {
        to.to_path_buf()
    };
    let have = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if have > size {
        return Err(CliError::new(
            Failure::Failed,
            "INVALID_LOCAL_FILE",
            format!(
                "{} holds {have} bytes, more than snapshot {}-{} ({size}): not a part of it",
                path.display(),
                info.end_offset,
                info.epoch
            ),
        ));
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| {
            CliError::from(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        })?;
    let mut pos = have;
    while pos < size {
        let last = (pos + FETCH_CHUNK).min(size) - 1;
        let part = c.fetch_snapshot(info.id(), Some((pos, Some(last)))).await?;
        let len = part.bytes.len() as u64;
        if len == 0 || pos + len > size {
            return Err(CliError::new(
                Failure::Failed,
                "UNEXPECTED_ANSWER",
                format!("asked for bytes {pos}-{last}, got {len} bytes"),
            ));
        }
        file.write_all(&part.bytes)?;
        pos += len;
    }
    file.sync_all()?;
    drop(file);
    let checked = path.clone();
    let summary = tokio::task::spawn_blocking(move || crate::image::load_checkpoint_file(&checked))
        .await
        .map_err(|e| CliError::new(Failure::Failed, "IO_ERROR", e.to_string()))?
        .map_err(|e| {
            CliError::new(
                Failure::Failed,
                "CORRUPT_SNAPSHOT",
                format!("{}: {e} (remove it and fetch again)", path.display()),
            )
        })?
        .1;
    if conn.output == Output::Json {
        return write_json(
            out,
            &json!({
                "path": path.display().to_string(),
                "end_offset": info.end_offset,
                "epoch": info.epoch,
                "size": size,
                "resumed_from": have,
                "batches": summary.batches,
                "records": summary.records,
            }),
        );
    }
    let resumed = if have > 0 {
        format!(", resumed at byte {have}")
    } else {
        String::new()
    };
    writeln!(
        out,
        "Fetched snapshot {}-{} to {} ({size} bytes{resumed}); checkpoint valid: {} batches, {} records",
        info.end_offset,
        info.epoch,
        path.display(),
        summary.batches,
        summary.records
    )?;
    Ok(())
}

fn partitions_table(parts: &[PartitionView]) -> Table {
    let mut t = Table::new(&[
        "Partition",
        "Leader",
        "Replicas",
        "Isr",
        "LeaderEpoch",
        "PartitionEpoch",
    ]);
    for p in parts {
        t.row(vec![
            p.partition.to_string(),
            leader_text(p.leader),
            ids(&p.replicas),
            ids(&p.isr),
            p.leader_epoch.to_string(),
            p.partition_epoch.to_string(),
        ]);
    }
    t
}

/// Kafka prints a missing leader as `none`.
fn leader_text(leader: i32) -> String {
    if leader < 0 {
        "none".into()
    } else {
        leader.to_string()
    }
}

async fn topics(conn: &Conn, cmd: TopicsCommand, out: &mut dyn Write) -> Result<(), CliError> {
    let c = conn.client().await?;
    let json_out = conn.output == Output::Json;
    match cmd {
        TopicsCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            assignments,
        } => {
            let created = c
                .create_topic(&CreateTopic {
                    name,
                    partitions,
                    replication_factor,
                    configs: configs.into_iter().collect(),
                    assignments: assignments.map(|a| a.0),
                })
                .await?;
            if json_out {
                return write_json(out, &created);
            }
            writeln!(
                out,
                "Created topic {} (TopicId {}).",
                created.name, created.topic_id
            )?;
            partitions_table(&created.partitions).write(out)?;
        }
        TopicsCommand::List => {
            let list = c.topics().await?;
            if json_out {
                return write_json(out, &list);
            }
            let mut t = Table::new(&[
                "Topic",
                "TopicId",
                "PartitionCount",
                "ReplicationFactor",
                "OfflinePartitions",
                "UnderReplicatedPartitions",
            ]);
            for s in list {
                t.row(vec![
                    s.name,
                    s.topic_id,
                    s.partitions.to_string(),
                    s.replication_factor.to_string(),
                    s.offline_partitions.to_string(),
                    s.under_replicated_partitions.to_string(),
                ]);
            }
            t.write(out)?;
        }
        TopicsCommand::Describe { name } => {
            let d = c.describe_topic(&name).await?;
            if json_out {
                return write_json(out, &d);
            }
            let rf = d.partitions.first().map_or(0, |p| p.replicas.len());
            let configs: Vec<String> = d.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(
                out,
                "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {rf}\tConfigs: {}",
                d.name,
                d.topic_id,
                d.partitions.len(),
                configs.join(",")
            )?;
            for p in &d.partitions {
                writeln!(
                    out,
                    "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\tLeaderEpoch: {}\tPartitionEpoch: {}",
                    d.name,
                    p.partition,
                    leader_text(p.leader),
                    ids(&p.replicas),
                    ids(&p.isr),
                    p.leader_epoch,
                    p.partition_epoch
                )?;
            }
        }
        TopicsCommand::Delete { name } => {
            c.delete_topic(&name).await?;
            if json_out {
                return write_json(out, &json!({ "deleted": name }));
            }
            writeln!(out, "Deleted topic {name}.")?;
        }
        TopicsCommand::AddPartitions { name, count } => {
            let added = c.add_partitions(&name, count).await?;
            if json_out {
                return write_json(out, &json!({ "topic": name, "added": added }));
            }
            writeln!(
                out,
                "Topic {name} has {count} partitions; added {}:",
                added.len()
            )?;
            partitions_table(&added).write(out)?;
        }
    }
    Ok(())
}

async fn brokers(conn: &Conn, cmd: BrokersCommand, out: &mut dyn Write) -> Result<(), CliError> {
    let c = conn.client().await?;
    match cmd {
        BrokersCommand::List => {
            let list = c.brokers().await?;
            if conn.output == Output::Json {
                return write_json(out, &list);
            }
            let mut t = Table::new(&["Id", "Epoch", "State", "Rack", "Listeners", "IncarnationId"]);
            for b in list {
                let listeners: Vec<String> = b
                    .listeners
                    .iter()
                    .map(|l| format!("{}://{}:{}", l.name, l.host, l.port))
                    .collect();
                t.row(vec![
                    b.id.to_string(),
                    b.epoch.to_string(),
                    b.state,
                    b.rack.unwrap_or_default(),
                    listeners.join(","),
                    b.incarnation_id,
                ]);
            }
            t.write(out)?;
        }
        BrokersCommand::Unregister { id } => {
            c.unregister_broker(id).await?;
            if conn.output == Output::Json {
                return write_json(out, &json!({ "unregistered": id }));
            }
            writeln!(out, "Unregistered broker {id}.")?;
        }
    }
    Ok(())
}

async fn configs(conn: &Conn, cmd: ConfigsCommand, out: &mut dyn Write) -> Result<(), CliError> {
    let c = conn.client().await?;
    let (kind, name, change) = match cmd {
        ConfigsCommand::Get { kind, name } => {
            let map = c.get_config(kind.config_kind(), &name).await?;
            if conn.output == Output::Json {
                return write_json(out, &map);
            }
            let mut t = Table::new(&["Key", "Value"]);
            for (k, v) in map {
                t.row(vec![k, v]);
            }
            return Ok(t.write(out)?);
        }
        ConfigsCommand::Set { kind, name, pairs } => (
            kind,
            name,
            ConfigPatch {
                set: pairs.into_iter().collect::<BTreeMap<_, _>>(),
                delete: Vec::new(),
            },
        ),
        ConfigsCommand::Delete { kind, name, keys } => (
            kind,
            name,
            ConfigPatch {
                set: BTreeMap::new(),
                delete: keys,
            },
        ),
    };
    let ack = c.alter_config(kind.config_kind(), &name, &change).await?;
    if conn.output == Output::Json {
        return write_json(out, &ack);
    }
    let mut what: Vec<String> = change.set.keys().map(|k| format!("set {k}")).collect();
    what.extend(change.delete.iter().map(|k| format!("deleted {k}")));
    writeln!(
        out,
        "Updated {} {name}: {} (offset {}, epoch {}).",
        kind.name(),
        what.join(", "),
        ack.offset,
        ack.epoch
    )?;
    Ok(())
}

async fn elect(a: ElectArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if a.topic.len() != a.partition.len() {
        return Err(CliError::usage(format!(
            "give --topic and --partition in pairs ({} topics, {} partitions)",
            a.topic.len(),
            a.partition.len()
        )));
    }
    if a.kind.unclean && a.topic.is_empty() {
        return Err(CliError::usage(
            "--unclean needs the partitions it may lose data on: --topic T --partition P",
        ));
    }
    let partitions = (!a.topic.is_empty()).then(|| {
        a.topic
            .iter()
            .zip(&a.partition)
            .map(|(t, p)| TopicPartition {
                topic: t.clone(),
                partition: *p,
            })
            .collect()
    });
    let kind = if a.kind.unclean {
        "unclean"
    } else {
        "preferred"
    };
    let c = a.conn.client().await?;
    let results = c
        .elect(&ElectionRequest {
            kind: kind.to_string(),
            partitions,
        })
        .await?;
    if a.conn.output == Output::Json {
        write_json(out, &results)?;
    } else if results.is_empty() {
        writeln!(out, "No partition needed a {kind} election.")?;
    } else {
        let mut t = Table::new(&["Topic", "Partition", "Result", "Leader", "LeaderEpoch"]);
        for r in &results {
            t.row(vec![
                r.topic.clone(),
                r.partition.to_string(),
                r.error.clone().unwrap_or_else(|| "ELECTED".into()),
                r.leader.map_or_else(String::new, |l| l.to_string()),
                r.leader_epoch.map_or_else(String::new, |e| e.to_string()),
            ]);
        }
        t.write(out)?;
    }
    election_failures(&results)
}

/// An election that was not needed is no failure; any other error is.
fn election_failures(results: &[ElectionResult]) -> Result<(), CliError> {
    let failed: Vec<&ElectionResult> = results
        .iter()
        .filter(|r| {
            r.error
                .as_deref()
                .is_some_and(|e| e != "ELECTION_NOT_NEEDED")
        })
        .collect();
    let Some(first) = failed.first() else {
        return Ok(());
    };
    Err(CliError::new(
        Failure::Refused,
        first.error.as_deref().unwrap_or_default(),
        format!(
            "{} of {} elections failed; first {}-{}: {}",
            failed.len(),
            results.len(),
            first.topic,
            first.partition,
            first.message.as_deref().unwrap_or_default()
        ),
    ))
}
