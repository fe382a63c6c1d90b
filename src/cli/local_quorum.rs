//! A quorum of real `kraftd serve` processes on loopback, for `kraftd dev`,
//! `kraftd bench quorum` and the multi-process tests.
//!
//! Node `N` keeps its data in `<base>/nodeN` and appends its stdout and stderr to
//! `<base>/nodeN.log` across restarts, so a failing test can print what each node said.
//! Every wait is bounded and says what it waited for when it gives up. Dropping the quorum
//! kills every node it started; the nodes are also started with a parent-death signal, so
//! they die with the thread that started them even when the owner is killed without
//! unwinding (a test harness timeout, `kill -9` of the bench).

use anyhow::{anyhow, bail, Context};
use std::fs::{self, OpenOptions};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::client::{Client, ClientError, NewVoter, QuorumStatus};
use crate::node::meta::{self, MetaProperties};

/// How long a node gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long `kraftd format` may take.
const FORMAT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long reaping a SIGKILLed process may take.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between polls.
const POLL: Duration = Duration::from_millis(50);

/// How to build a [`LocalQuorum`].
#[derive(Debug, Clone)]
pub struct QuorumOptions {
    /// The `kraftd` executable to run.
    pub exe: PathBuf,
    /// Directory holding `nodeN/` and `nodeN.log`.
    pub base_dir: PathBuf,
    /// Number of nodes; ids are 1..=nodes, all bootstrap voters.
    pub nodes: usize,
    /// Extra environment variables for every node (e.g. `KRAFTD_SNAPSHOT_MAX_BYTES`).
    pub env: Vec<(String, String)>,
    /// Fixed `(api, peer)` ports per node; `None` allocates free loopback ports.
    pub ports: Option<Vec<(u16, u16)>>,
    /// Keep already formatted data directories (`kraftd dev`) instead of failing.
    pub reuse_formatted: bool,
    /// The cluster id to format with; `None` picks a random one.
    pub cluster_id: Option<String>,
    /// Bearer token the quorum's clients send (when the nodes have a principals file).
    pub token: Option<String>,
    /// TLS of the quorum's clients (when the nodes serve TLS).
    pub client_tls: Option<rustls::ClientConfig>,
    /// A directory made by `kraftd certs`: each node serves TLS with its
    /// `controller-<id>.pem` and authenticates with `principals.toml`; the quorum's clients
    /// are the `operator` (see [`QuorumOptions::secure`]).
    pub certs_dir: Option<PathBuf>,
}

impl QuorumOptions {
    /// `nodes` nodes of `exe` under `base_dir`, free ports, no extra settings.
    pub fn new(exe: impl Into<PathBuf>, base_dir: impl Into<PathBuf>, nodes: usize) -> Self {
        QuorumOptions {
            exe: exe.into(),
            base_dir: base_dir.into(),
            nodes,
            env: Vec::new(),
            ports: None,
            reuse_formatted: false,
            cluster_id: None,
            token: None,
            client_tls: None,
            certs_dir: None,
        }
    }

    /// TLS and authentication from `certs_dir` (made by `kraftd certs`): every node serves
    /// with its controller certificate and the CA, and checks principals.toml; the quorum's
    /// clients present `operator.pem`.
    pub fn secure(mut self, certs_dir: &Path) -> anyhow::Result<Self> {
        let ca = super::certs::ca_file(certs_dir);
        self.client_tls = Some(super::certs::client_tls(&ca, certs_dir, Some("operator"))?);
        self.certs_dir = Some(certs_dir.to_path_buf());
        Ok(self)
    }

    /// Adds an environment variable for every node.
    pub fn env(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.env.push((key.into(), value.to_string()));
        self
    }
}

/// One node of the quorum.
#[derive(Debug)]
pub struct LocalNode {
    /// Node id.
    pub id: u64,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The file its stdout and stderr are appended to.
    pub log_path: PathBuf,
    /// API listener.
    pub api_addr: SocketAddr,
    /// Peer listener.
    pub peer_addr: SocketAddr,
    client: Client,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
}

impl LocalNode {
    /// A client of its API listener.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether a process was started and not yet seen to exit.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) | Some(Err(_)) | None => false,
        }
    }

    /// The `POST /v1/quorum/voters` body that adds this node.
    pub fn as_new_voter(&self) -> NewVoter {
        NewVoter {
            id: self.id,
            peer: self.peer_addr.to_string(),
            api: Some(self.api_addr.to_string()),
        }
    }
}

/// N real `kraftd serve` processes.
#[derive(Debug)]
pub struct LocalQuorum {
    exe: PathBuf,
    base_dir: PathBuf,
    cluster_id: String,
    /// `--voters` given to `kraftd format`: the bootstrap voters.
    voters_arg: String,
    env: Vec<(String, String)>,
    nodes: Vec<LocalNode>,
    token: Option<String>,
    client_tls: Option<rustls::ClientConfig>,
    certs_dir: Option<PathBuf>,
}

impl LocalQuorum {
    /// Formats (or, with `reuse_formatted`, keeps) every node's directory and starts every
    /// node. Does not wait for them: see [`LocalQuorum::wait_ready_all`].
    pub async fn start(opts: QuorumOptions) -> anyhow::Result<LocalQuorum> {
        if opts.nodes == 0 {
            bail!("a quorum needs at least one node");
        }
        fs::create_dir_all(&opts.base_dir)
            .with_context(|| format!("creating {}", opts.base_dir.display()))?;
        let ports = match &opts.ports {
            Some(p) if p.len() == opts.nodes => p.clone(),
            Some(p) => bail!("{} port pairs given for {} nodes", p.len(), opts.nodes),
            None => {
                let free = free_ports(opts.nodes * 2)?;
                free.chunks(2).map(|c| (c[0], c[1])).collect()
            }
        };
        let mut nodes = Vec::with_capacity(opts.nodes);
        for (i, (api, peer)) in ports.iter().enumerate() {
            let id = i as u64 + 1;
            nodes.push(new_node(
                &opts.base_dir,
                id,
                *api,
                *peer,
                &opts.token,
                &opts.client_tls,
            )?);
        }
        let voters_arg = nodes
            .iter()
            .map(|n| format!("{}@{}", n.id, n.peer_addr))
            .collect::<Vec<_>>()
            .join(",");

        // A reused quorum keeps the cluster id its directories were formatted with.
        let mut cluster_id = None;
        if opts.reuse_formatted {
            for n in &nodes {
                if let Ok(m) = MetaProperties::read(&n.data_dir) {
                    cluster_id = Some(m.cluster_id);
                    break;
                }
            }
        }
        let cluster_id = cluster_id
            .or(opts.cluster_id)
            .unwrap_or_else(meta::random_id);
        let mut q = LocalQuorum {
            exe: opts.exe,
            base_dir: opts.base_dir,
            cluster_id,
            voters_arg,
            env: opts.env,
            nodes,
            token: opts.token,
            client_tls: opts.client_tls,
            certs_dir: opts.certs_dir,
        };
        for i in 0..q.nodes.len() {
            let id = q.nodes[i].id;
            let formatted = MetaProperties::read(&q.nodes[i].data_dir).ok();
            match formatted {
                Some(m) if opts.reuse_formatted => {
                    if m.cluster_id != q.cluster_id || m.node_id != id {
                        bail!(
                            "{} belongs to cluster {} node {}, not cluster {} node {id}",
                            q.nodes[i].data_dir.display(),
                            m.cluster_id,
                            m.node_id,
                            q.cluster_id
                        );
                    }
                }
                _ => q.format(id).await?,
            }
        }
        for id in q.ids() {
            q.spawn(id)?;
        }
        Ok(q)
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The directory holding the nodes' data and logs.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The `--voters` argument the bootstrap voters were formatted with.
    pub fn voters_arg(&self) -> &str {
        &self.voters_arg
    }

    /// Every node id, in order.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Ids of the nodes whose process runs.
    pub fn live_ids(&mut self) -> Vec<u64> {
        self.nodes
            .iter_mut()
            .filter_map(|n| n.is_running().then_some(n.id))
            .collect()
    }

    /// The node with this id.
    pub fn node(&self, id: u64) -> anyhow::Result<&LocalNode> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| anyhow!("no node {id} in this quorum"))
    }

    fn node_mut(&mut self, id: u64) -> anyhow::Result<&mut LocalNode> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .ok_or_else(|| anyhow!("no node {id} in this quorum"))
    }

    /// Every node.
    pub fn nodes(&self) -> &[LocalNode] {
        &self.nodes
    }

    /// A client of node `id`.
    pub fn client(&self, id: u64) -> anyhow::Result<Client> {
        Ok(self.node(id)?.client.clone())
    }

    /// Runs `kraftd format` for node `id` with the quorum's cluster id and bootstrap voters.
    async fn format(&self, id: u64) -> anyhow::Result<()> {
        self.format_as(id, false).await
    }

    /// Runs `kraftd format` for node `id` with the quorum's cluster id: with the bootstrap
    /// voters, or `--join` (a replaced disk or a new controller).
    async fn format_as(&self, id: u64, join: bool) -> anyhow::Result<()> {
        let n = self.node(id)?;
        let mut cmd = Command::new(&self.exe);
        // `--flag=value`: a Kafka-style cluster id may start with '-' ("-V3x..."), which
        // clap would take for a flag if it came as a separate argument.
        let mut data_dir = std::ffi::OsString::from("--data-dir=");
        data_dir.push(&n.data_dir);
        cmd.arg("format")
            .arg(data_dir)
            .arg(format!("--cluster-id={}", self.cluster_id))
            .arg(format!("--node-id={id}"));
        if join {
            cmd.arg("--join");
        } else {
            cmd.arg(format!("--voters={}", self.voters_arg));
        }
        let (status, out) = run_bounded(cmd, FORMAT_TIMEOUT)
            .await
            .with_context(|| format!("kraftd format of node {id}"))?;
        if !status.success() {
            bail!("kraftd format of node {id} failed ({status}): {out}");
        }
        Ok(())
    }

    /// Starts node `id`'s process (it must not be running).
    fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let exe = self.exe.clone();
        let mut env = self.env.clone();
        if let Some(dir) = &self.certs_dir {
            let shown = |p: PathBuf| p.display().to_string();
            let (cert, key) = super::certs::cert_files(dir, &format!("controller-{id}"));
            env.extend([
                ("KRAFTD_TLS_CERT_FILE".into(), shown(cert)),
                ("KRAFTD_TLS_KEY_FILE".into(), shown(key)),
                (
                    "KRAFTD_TLS_CA_FILE".into(),
                    shown(super::certs::ca_file(dir)),
                ),
                (
                    "KRAFTD_AUTH_PRINCIPALS_FILE".into(),
                    shown(dir.join("principals.toml")),
                ),
            ]);
        }
        let n = self.node_mut(id)?;
        if n.is_running() {
            bail!("node {id} is already running");
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log_path)
            .with_context(|| format!("opening {}", n.log_path.display()))?;
        let log2 = log.try_clone().context("duplicating the log file handle")?;
        n.starts += 1;
        let mut cmd = Command::new(&exe);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&n.data_dir)
            .arg("--api-addr")
            .arg(n.api_addr.to_string())
            .arg("--peer-addr")
            .arg(n.peer_addr.to_string())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} serve for node {id}", exe.display()))?;
        n.child = Some(child);
        Ok(())
    }

    /// Moves stopped node `id` to new API and peer ports on loopback, for its next start:
    /// the same directory, new listeners. The membership still names the old ones until
    /// `quorum update-voter`.
    pub fn move_to(&mut self, id: u64, api_port: u16, peer_port: u16) -> anyhow::Result<()> {
        let n = self.node_mut(id)?;
        if n.is_running() {
            bail!("node {id} must be stopped before it moves");
        }
        n.api_addr = SocketAddr::from(([127, 0, 0, 1], api_port));
        n.peer_addr = SocketAddr::from(([127, 0, 0, 1], peer_port));
        n.client = n.client.at(&n.api_addr.to_string());
        Ok(())
    }

    /// Starts node `id` again with the same directory and ports (it must be stopped).
    pub async fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        self.spawn(id)
    }

    /// SIGTERM, then up to `grace` for it to exit, then SIGKILL. Returns how it ended.
    pub async fn stop_with(&mut self, id: u64, grace: Duration) -> anyhow::Result<StopOutcome> {
        let n = self.node_mut(id)?;
        let Some(mut child) = n.child.take() else {
            return Ok(StopOutcome::NotRunning);
        };
        if let Some(status) = child.try_wait().context("checking the node process")? {
            return Ok(StopOutcome::AlreadyExited(status));
        }
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().context("waiting for the node to exit")? {
                return Ok(StopOutcome::Exited(status));
            }
            tokio::time::sleep(POLL).await;
        }
        let status = kill_and_reap(&mut child).await?;
        Ok(StopOutcome::Killed(status))
    }

    /// [`LocalQuorum::stop_with`] with [`STOP_GRACE`].
    pub async fn stop(&mut self, id: u64) -> anyhow::Result<StopOutcome> {
        self.stop_with(id, STOP_GRACE).await
    }

    /// `kill -9`: the node gets no chance to flush or say goodbye.
    pub async fn kill9(&mut self, id: u64) -> anyhow::Result<()> {
        let n = self.node_mut(id)?;
        if let Some(mut child) = n.child.take() {
            kill_and_reap(&mut child).await?;
        }
        Ok(())
    }

    /// Kills every running node with SIGKILL.
    pub async fn kill9_all(&mut self) -> anyhow::Result<()> {
        for id in self.ids() {
            self.kill9(id).await?;
        }
        Ok(())
    }

    /// Stops every running node (SIGTERM, bounded wait, SIGKILL), all at once.
    pub async fn stop_all(&mut self, grace: Duration) -> anyhow::Result<Vec<(u64, StopOutcome)>> {
        let mut signalled = Vec::new();
        for n in &mut self.nodes {
            if n.is_running() {
                if let Some(child) = n.child.as_ref() {
                    signal(child, libc::SIGTERM);
                    signalled.push(n.id);
                }
            }
        }
        let mut out = Vec::new();
        for id in self.ids() {
            let outcome = match self.stop_with(id, grace).await? {
                // It exited on the SIGTERM sent above, while an earlier node was awaited.
                StopOutcome::AlreadyExited(s) if signalled.contains(&id) => StopOutcome::Exited(s),
                other => other,
            };
            out.push((id, outcome));
        }
        Ok(out)
    }

    /// Deletes node `id`'s data directory (the node must be stopped) and formats it again
    /// the way the runbook replaces a disk: same node id, `--join` (a new directory id, no
    /// bootstrap voters). Once started it is an observer until added as a voter.
    pub async fn wipe_and_reformat(&mut self, id: u64) -> anyhow::Result<()> {
        self.wipe(id)?;
        self.format_as(id, true).await
    }

    /// Deletes node `id`'s data directory and formats it again with the ORIGINAL bootstrap
    /// `--voters`: the wrong command for a replaced disk, for tests that show it cannot
    /// erase history.
    pub async fn wipe_and_reformat_with_voters(&mut self, id: u64) -> anyhow::Result<()> {
        self.wipe(id)?;
        self.format_as(id, false).await
    }

    fn wipe(&mut self, id: u64) -> anyhow::Result<()> {
        let n = self.node_mut(id)?;
        if n.is_running() {
            bail!("node {id} must be stopped before its disk is wiped");
        }
        if n.data_dir.exists() {
            fs::remove_dir_all(&n.data_dir)
                .with_context(|| format!("removing {}", n.data_dir.display()))?;
        }
        Ok(())
    }

    /// Adds node `id` (not yet in the quorum) on free ports, formats it with the quorum's
    /// cluster id and `--join`, and starts it. It is not a voter until
    /// `POST /v1/quorum/voters` makes it one ([`LocalNode::as_new_voter`]).
    pub async fn add_node(&mut self, id: u64) -> anyhow::Result<()> {
        if self.nodes.iter().any(|n| n.id == id) {
            bail!("node {id} already exists");
        }
        let p = free_ports(2)?;
        let node = new_node(
            &self.base_dir,
            id,
            p[0],
            p[1],
            &self.token,
            &self.client_tls,
        )?;
        self.nodes.push(node);
        self.format_as(id, true).await?;
        self.spawn(id)
    }

    /// Waits until node `id` answers `/healthz`, then `/readyz`. Fails early if the process
    /// exits.
    pub async fn wait_ready(&mut self, id: u64, timeout: Duration) -> anyhow::Result<()> {
        self.wait_up(id, timeout, true).await
    }

    /// Waits until node `id` answers `/healthz` (the process serves; it may not know a
    /// leader yet, e.g. a node not yet added to the quorum). Fails early if it exits.
    pub async fn wait_healthy(&mut self, id: u64, timeout: Duration) -> anyhow::Result<()> {
        self.wait_up(id, timeout, false).await
    }

    async fn wait_up(&mut self, id: u64, timeout: Duration, ready: bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let client = self.client(id)?;
        let mut healthy = false;
        let mut last: Option<ClientError> = None;
        loop {
            if !self.node_mut(id)?.is_running() {
                bail!(
                    "node {id} is not running (waiting for it to be {}); its log:\n{}",
                    if ready { "ready" } else { "healthy" },
                    self.log_tail(id, 40)
                );
            }
            let res = if healthy {
                client.readyz().await
            } else {
                client.healthz().await
            };
            match res {
                Ok(()) if healthy || !ready => return Ok(()),
                Ok(()) => healthy = true,
                Err(e) => last = Some(e),
            }
            if Instant::now() >= deadline {
                bail!(
                    "node {id} not {} after {timeout:?} (last error: {}); its log:\n{}",
                    if healthy { "ready" } else { "healthy" },
                    last.map_or_else(|| "none".into(), |e| e.to_string()),
                    self.log_tail(id, 40)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every running node is ready.
    pub async fn wait_ready_all(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for id in self.live_ids() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_ready(id, left.max(POLL)).await?;
        }
        Ok(())
    }

    /// Waits until every running node names the same leader, itself one of them; returns
    /// the leader's id.
    pub async fn wait_leader(&mut self, timeout: Duration) -> anyhow::Result<u64> {
        let ids = self.live_ids();
        self.wait_leader_among(&ids, timeout).await
    }

    /// Waits until the nodes `ids` all answer `/v1/quorum/status` naming the same leader,
    /// which must be one of `ids`; returns the leader's id.
    pub async fn wait_leader_among(
        &mut self,
        ids: &[u64],
        timeout: Duration,
    ) -> anyhow::Result<u64> {
        if ids.is_empty() {
            bail!("no node to ask for the leader");
        }
        let deadline = Instant::now() + timeout;
        let clients: Vec<(u64, Client)> = ids
            .iter()
            .map(|&id| self.client(id).map(|c| (id, c)))
            .collect::<anyhow::Result<_>>()?;
        let mut seen: Vec<String> = Vec::new();
        loop {
            seen.clear();
            let mut agreed: Option<Option<u64>> = None;
            let mut all = true;
            for (id, c) in &clients {
                match c.quorum_status().await {
                    Ok(s) => {
                        seen.push(format!("node {id}: leader {:?}", s.leader_id));
                        match agreed {
                            None => agreed = Some(s.leader_id),
                            Some(l) if l == s.leader_id => {}
                            Some(_) => all = false,
                        }
                    }
                    Err(e) => {
                        seen.push(format!("node {id}: {e}"));
                        all = false;
                    }
                }
            }
            if let (true, Some(Some(leader))) = (all, agreed) {
                if ids.contains(&leader) {
                    return Ok(leader);
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "nodes {ids:?} did not agree on a leader among them within {timeout:?}: {}",
                    seen.join("; ")
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `GET /v1/quorum/status` of every running node.
    pub async fn statuses(&mut self) -> Vec<(u64, Result<QuorumStatus, ClientError>)> {
        let mut out = Vec::new();
        for id in self.live_ids() {
            if let Ok(c) = self.client(id) {
                out.push((id, c.quorum_status().await));
            }
        }
        out
    }

    /// The last `lines` lines of node `id`'s log file.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let Ok(n) = self.node(id) else {
            return format!("(no node {id})");
        };
        match fs::read(&n.log_path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("({}: {e})", n.log_path.display()),
        }
    }

    /// Every node's log tail, headed by node id, for a failing test to print.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!(
                "===== node {} ({}, api {}, peer {}, started {} times) =====\n{}\n",
                n.id,
                n.log_path.display(),
                n.api_addr,
                n.peer_addr,
                n.starts,
                self.log_tail(n.id, lines)
            ));
        }
        out
    }
}

impl Drop for LocalQuorum {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                // Reaping a SIGKILLed process takes milliseconds; never block for long.
                let deadline = Instant::now() + Duration::from_secs(2);
                while Instant::now() < deadline {
                    match child.try_wait() {
                        Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                        Ok(Some(_)) | Err(_) => break,
                    }
                }
            }
        }
    }
}

/// How [`LocalQuorum::stop_with`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Nothing was running.
    NotRunning,
    /// It had exited by itself before.
    AlreadyExited(ExitStatus),
    /// It exited after SIGTERM.
    Exited(ExitStatus),
    /// It ignored SIGTERM for the whole grace period and was killed.
    Killed(ExitStatus),
}

fn new_node(
    base: &Path,
    id: u64,
    api: u16,
    peer: u16,
    token: &Option<String>,
    tls: &Option<rustls::ClientConfig>,
) -> anyhow::Result<LocalNode> {
    let api_addr = SocketAddr::from(([127, 0, 0, 1], api));
    let peer_addr = SocketAddr::from(([127, 0, 0, 1], peer));
    let mut client = Client::new(&api_addr.to_string())?;
    if let Some(t) = token {
        client = client.with_token(t.clone());
    }
    if let Some(t) = tls {
        client = client.with_tls(t.clone())?;
    }
    Ok(LocalNode {
        id,
        data_dir: base.join(format!("node{id}")),
        log_path: base.join(format!("node{id}.log")),
        api_addr,
        peer_addr,
        client,
        child: None,
        starts: 0,
    })
}

/// `n` distinct free loopback ports: all bound at once (so they differ), then released.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0"))
        .collect::<anyhow::Result<_>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr().context("reading a bound port")?.port()))
        .collect()
}

/// Makes the child die with the thread that spawns it (Linux), so no node outlives a
/// killed test or bench.
pub fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl, getppid and _exit are async-signal-safe; the closure touches no
        // memory of the parent besides the copied pid.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    // Ctrl-C in a terminal goes to the whole foreground process group; the owner decides
    // how its nodes stop, so they get their own group.
    cmd.process_group(0);
}

fn signal(child: &Child, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with the pid of a child we have not reaped yet.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

async fn kill_and_reap(child: &mut Child) -> anyhow::Result<ExitStatus> {
    signal(child, libc::SIGKILL);
    let deadline = Instant::now() + REAP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("reaping a killed node")? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            bail!(
                "process {} did not exit within {REAP_TIMEOUT:?} of SIGKILL",
                child.id()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs a short command with a deadline; returns its status and its output (stdout and
/// stderr, for error messages).
async fn run_bounded(mut cmd: Command, timeout: Duration) -> anyhow::Result<(ExitStatus, String)> {
    let out = tempfile::tempfile().context("creating a scratch file for command output")?;
    let err = out.try_clone().context("duplicating a file handle")?;
    let mut reader = out.try_clone().context("duplicating a file handle")?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().context("starting the command")?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().context("waiting for the command")? {
            break s;
        }
        if Instant::now() >= deadline {
            kill_and_reap(&mut child).await?;
            bail!("did not finish within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    use std::io::{Read, Seek};
    let mut text = String::new();
    reader.rewind().context("rewinding the command output")?;
    reader
        .read_to_string(&mut text)
        .context("reading the command output")?;
    Ok((status, text))
}
