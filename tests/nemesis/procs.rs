//! The controllers: real `kraftd serve` processes, each started in its own network
//! namespace with `ip netns exec`, and the operator's steps on them (kill -9, SIGSTOP,
//! restart, disk replacement by the runbook). Dropping the [`Cluster`] kills every process
//! it started.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kraftd::client::{Client, NewVoter};

use super::net::{sh, Lab};

/// How long a stopped node gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How a replaced disk is formatted and let back in. Today's deploy/README.md: format
/// again with the original `--voters` and let the leader re-admit the new directory id by
/// itself. When `kraftd format` knows `--join`: format to join (a fresh directory id,
/// starting as an observer) and ask the leader to add it back with `POST /v1/quorum/voters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runbook {
    ReformatWithOriginalVoters,
    FormatToJoinThenAddVoter,
}

impl Runbook {
    /// The runbook the binary supports: `--join` in `kraftd format --help` selects the
    /// join runbook.
    pub fn detect(exe: &Path) -> Runbook {
        let help = Command::new(exe)
            .args(["format", "--help"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if help.contains("--join") {
            Runbook::FormatToJoinThenAddVoter
        } else {
            Runbook::ReformatWithOriginalVoters
        }
    }

    /// The `kraftd format` arguments of a replaced disk (after `format`).
    pub fn format_args(
        self,
        data_dir: &Path,
        cluster_id: &str,
        id: u64,
        voters: &str,
    ) -> Vec<String> {
        let mut args = vec![
            format!("--data-dir={}", data_dir.display()),
            format!("--cluster-id={cluster_id}"),
            format!("--node-id={id}"),
        ];
        // deploy/README.md: a replaced disk is formatted to join, never with --voters.
        match self {
            Runbook::FormatToJoinThenAddVoter => args.push("--join".into()),
            Runbook::ReformatWithOriginalVoters => args.push(format!("--voters={voters}")),
        }
        args
    }
}

/// One controller.
pub struct Proc {
    pub ns: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
    pub paused: bool,
    /// Incremented at every start: hw series restart with the process.
    pub generation: u32,
    /// How many times its disk was replaced.
    pub replaced: u32,
}

/// Three (or more) controllers of one cluster.
pub struct Cluster {
    pub exe: PathBuf,
    pub cluster_id: String,
    pub voters_arg: String,
    pub env: Vec<(String, String)>,
    pub procs: BTreeMap<u64, Proc>,
}

impl Cluster {
    /// Formats every node with the bootstrap voters (first start) and starts them all.
    pub fn start(
        exe: &Path,
        base: &Path,
        lab: &Lab,
        ids: &[u64],
        env: &[(&str, &str)],
    ) -> Result<Cluster, String> {
        let cluster_id = sh(&[exe.to_str().unwrap_or("kraftd"), "random-uuid"])?
            .trim()
            .to_string();
        let voters_arg = ids
            .iter()
            .map(|&i| format!("{i}@{}", Lab::peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            exe: exe.to_path_buf(),
            cluster_id,
            voters_arg,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            procs: BTreeMap::new(),
        };
        for &id in ids {
            c.procs.insert(
                id,
                Proc {
                    ns: lab.ns(id),
                    data_dir: base.join(format!("node{id}")),
                    log_path: base.join(format!("node{id}.log")),
                    child: None,
                    paused: false,
                    generation: 0,
                    replaced: 0,
                },
            );
        }
        for &id in ids {
            let args = Runbook::ReformatWithOriginalVoters.format_args(
                &c.procs[&id].data_dir,
                &c.cluster_id,
                id,
                &c.voters_arg,
            );
            c.format(id, &args)?;
        }
        for &id in ids {
            c.spawn(id)?;
        }
        Ok(c)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.procs.keys().copied().collect()
    }

    pub fn client(id: u64, timeout: Duration) -> Client {
        Client::with_timeout(&Lab::api(id), timeout).expect("a client of a fixed address")
    }

    /// `kraftd format ARGS` for node `id`, bounded.
    pub fn format(&self, id: u64, args: &[String]) -> Result<(), String> {
        let mut all: Vec<&str> = vec![self.exe.to_str().unwrap_or("kraftd"), "format"];
        all.extend(args.iter().map(String::as_str));
        sh(&all)
            .map(drop)
            .map_err(|e| format!("formatting node {id}: {e}"))
    }

    /// `kraftd recover-quorum` on node `id`'s data directory (the node stopped), bounded;
    /// what it printed. Run from a hub thread, it reaches the other nodes' peer listeners.
    pub fn recover_quorum(&self, id: u64) -> Result<String, String> {
        let p = self.procs.get(&id).ok_or(format!("no node {id}"))?;
        let dir = p.data_dir.to_string_lossy().into_owned();
        let exe = self.exe.to_string_lossy().into_owned();
        sh(&[&exe, "recover-quorum", "--data-dir", &dir, "--yes"])
            .map_err(|e| format!("recover-quorum on node {id}: {e}"))
    }

    fn spawn(&mut self, id: u64) -> Result<(), String> {
        let exe = self.exe.clone();
        let env = self.env.clone();
        let p = self.procs.get_mut(&id).ok_or(format!("no node {id}"))?;
        if p.child.is_some() {
            return Err(format!("node {id} is already running"));
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log_path)
            .map_err(|e| format!("{}: {e}", p.log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("ip");
        // `ip netns exec` execs the command in place (no fork), so the child's pid is
        // kraftd's own and signals reach it directly.
        cmd.args(["netns", "exec", &p.ns])
            .arg(&exe)
            .arg("serve")
            .arg("--data-dir")
            .arg(&p.data_dir)
            .arg("--api-addr")
            .arg(Lab::api(id))
            .arg("--peer-addr")
            .arg(Lab::peer(id))
            // The lab's addresses are not loopback: these scenarios test safety in
            // plaintext, in namespaces only the test can reach (tls_quorum.rs tests TLS).
            .arg("--insecure")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        // The child dies with the thread that started it (a runtime worker, alive for the
        // whole run), so no controller outlives a killed test.
        kraftd::cli::local_quorum::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting node {id}: {e}"))?;
        p.child = Some(child);
        p.paused = false;
        p.generation += 1;
        Ok(())
    }

    fn signal(&mut self, id: u64, sig: libc::c_int) {
        if let Some(pid) = self
            .procs
            .get(&id)
            .and_then(|p| p.child.as_ref())
            .and_then(|c| libc::pid_t::try_from(c.id()).ok())
        {
            // SAFETY: kill(2) on a child we have not reaped.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    pub fn is_running(&mut self, id: u64) -> bool {
        match self.procs.get_mut(&id).and_then(|p| p.child.as_mut()) {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// kill -9, reaped.
    pub async fn kill9(&mut self, id: u64) -> Result<(), String> {
        self.signal(id, libc::SIGKILL);
        self.reap(id, Duration::from_secs(10)).await
    }

    /// SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL.
    pub async fn stop(&mut self, id: u64) -> Result<(), String> {
        if self.procs.get(&id).is_some_and(|p| p.paused) {
            self.signal(id, libc::SIGCONT);
        }
        self.signal(id, libc::SIGTERM);
        if self.reap(id, STOP_GRACE).await.is_err() {
            return self.kill9(id).await;
        }
        Ok(())
    }

    async fn reap(&mut self, id: u64, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let p = self.procs.get_mut(&id).ok_or(format!("no node {id}"))?;
        let Some(child) = p.child.as_mut() else {
            return Ok(());
        };
        loop {
            match child.try_wait() {
                Ok(Some(_)) => {
                    p.child = None;
                    p.paused = false;
                    return Ok(());
                }
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Ok(None) => return Err(format!("node {id} did not exit within {limit:?}")),
                Err(e) => return Err(format!("waiting for node {id}: {e}")),
            }
        }
    }

    pub async fn restart(&mut self, id: u64) -> Result<(), String> {
        self.spawn(id)
    }

    pub fn pause(&mut self, id: u64) {
        self.signal(id, libc::SIGSTOP);
        if let Some(p) = self.procs.get_mut(&id) {
            p.paused = true;
        }
    }

    pub fn resume(&mut self, id: u64) {
        self.signal(id, libc::SIGCONT);
        if let Some(p) = self.procs.get_mut(&id) {
            p.paused = false;
        }
    }

    /// Steps 1-2 of "Replacing a lost or damaged disk": stop the controller, give it an
    /// empty data directory, format it with `format_args`, start it. Re-admission (step 3)
    /// is [`readmit`], separate so two replacements can overlap.
    pub async fn replace_disk(&mut self, id: u64, format_args: &[String]) -> Result<(), String> {
        self.stop(id).await?;
        let dir = self.procs[&id].data_dir.clone();
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| format!("wiping {}: {e}", dir.display()))?;
        }
        self.format(id, format_args)?;
        if let Some(p) = self.procs.get_mut(&id) {
            p.replaced += 1;
        }
        self.spawn(id)
    }

    /// Makes sure every node runs and none is paused.
    pub async fn resume_all(&mut self) -> Result<(), String> {
        for id in self.ids() {
            if self.procs[&id].paused {
                self.resume(id);
            }
            if !self.is_running(id) {
                if let Some(p) = self.procs.get_mut(&id) {
                    p.child = None;
                }
                self.spawn(id)?;
            }
        }
        Ok(())
    }

    /// The last `lines` lines of node `id`'s log.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let text = fs::read_to_string(&self.procs[&id].log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// How many lines of node `id`'s log contain `needle`.
    pub fn log_count(&self, id: u64, needle: &str) -> usize {
        fs::read_to_string(&self.procs[&id].log_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.procs.values_mut() {
            if let Some(mut c) = p.child.take() {
                if let Ok(pid) = libc::pid_t::try_from(c.id()) {
                    // SAFETY: kill(2) on our own unreaped child.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
                let _ = c.wait();
            }
        }
    }
}

/// Step 3 of the runbook: the replaced node is a voter again. With the current runbook the
/// leader re-admits it by itself; with the join runbook we ask the leader to add it.
/// Waits at most `limit`; returns what happened.
pub async fn readmit(
    runbook: Runbook,
    id: u64,
    ids: &[u64],
    limit: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let deadline = started + limit;
    let mut last = String::new();
    // The join runbook's add-voter answers once the node is a voter again under its new
    // directory id (the leader demotes the old identity first).
    let mut added = runbook != Runbook::FormatToJoinThenAddVoter;
    while Instant::now() < deadline {
        // Who leads, by any node that knows.
        let mut leader = None;
        for &i in ids {
            if let Ok(st) = Cluster::client(i, Duration::from_secs(2))
                .quorum_status()
                .await
            {
                if let Some(l) = st.leader_id {
                    leader = Some((l, st));
                    break;
                }
            }
        }
        match leader {
            None => last = "no node knows a leader".into(),
            Some((l, st)) => {
                let lc = Cluster::client(l, Duration::from_secs(2));
                let voter_now = match lc.quorum_status().await {
                    Ok(ls) => ls.voter_ids().contains(&id) && !ls.observers.contains(&id),
                    Err(_) => st.voter_ids().contains(&id),
                };
                let caught_up = match lc.replication().await {
                    Ok(rows) => rows.iter().any(|r| r.node_id == id && r.lag == 0),
                    Err(e) => {
                        last = format!("replication of leader {l}: {e}");
                        false
                    }
                };
                // The current runbook: the leader needs about 2 s to notice the new
                // directory id; until then the old entry still reads as a voter.
                let settled = runbook == Runbook::FormatToJoinThenAddVoter
                    || started.elapsed() >= Duration::from_secs(3);
                if added && voter_now && caught_up && settled {
                    return Ok(started.elapsed());
                }
                if !added {
                    let add = NewVoter {
                        id,
                        peer: Lab::peer(id),
                        api: Some(Lab::api(id)),
                    };
                    let c = Cluster::client(l, Duration::from_secs(30));
                    match c.add_voter(&add).await {
                        Ok(_) => added = true,
                        Err(e) => last = format!("POST /v1/quorum/voters to node {l}: {e}"),
                    }
                } else {
                    last = format!("leader {l}: voter {voter_now}, caught up {caught_up}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!(
        "node {id} not re-admitted within {limit:?}: {last}"
    ))
}
