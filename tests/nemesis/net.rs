//! The test's own network: one namespace per controller plus a hub namespace holding a
//! bridge, all created with `ip netns` / `ip link` and cut with nftables. Nothing is added
//! to the namespace the test runs in: the clients' sockets are made on threads that entered
//! the hub namespace ([`Lab::enter_hub`]), whose bridge address is [`CLIENT_ADDR`].
//!
//! Topology (subnet [`SUBNET`], private to these namespaces):
//!
//! ```text
//!   kn-<pid>-1 (eth0 10.213.7.1) --veth-- n1 \
//!   kn-<pid>-2 (eth0 10.213.7.2) --veth-- n2 -+- br0 10.213.7.254  (kn-<pid>-hub: the clients)
//!   kn-<pid>-3 (eth0 10.213.7.3) --veth-- n3 /
//! ```
//!
//! Faults: [`Lab::isolate`] drops everything in and out of one controller's namespace
//! (clients included); [`Lab::partition`] drops frames the bridge forwards between a
//! minority and the rest (clients still reach everyone); [`Lab::lossy`] drops a share of
//! one controller's packets at random. Dropping the [`Lab`] deletes every
//! namespace it made, and with them the veths, the bridge and the nftables tables.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The test subnet; it exists only inside the lab's namespaces.
pub const SUBNET: &str = "10.213.7";
/// The clients' address: the bridge's own address in the hub namespace.
pub const CLIENT_ADDR: &str = "10.213.7.254";
/// Every controller listens on these ports of its own address.
pub const API_PORT: u16 = 9093;
pub const PEER_PORT: u16 = 9094;

/// Why the lab cannot be built on this machine (not root, `ip` or `nft` missing).
pub fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the nemesis test needs root (network namespaces, nftables)".into());
    }
    for (tool, arg) in [("ip", "-V"), ("nft", "--version")] {
        match Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => {}
            Ok(s) => return Some(format!("`{tool} {arg}` failed ({s})")),
            Err(e) => {
                return Some(format!(
                    "`{tool}` is not installed ({e}); apt-get install iproute2 nftables"
                ))
            }
        }
    }
    None
}

/// Runs a short command; its output on failure.
pub fn sh(args: &[&str]) -> Result<String, String> {
    sh_input(args, None)
}

/// [`sh`] with `input` on stdin.
pub fn sh_input(args: &[&str], input: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{}: cannot start: {e}", args.join(" ")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("{}: writing stdin: {e}", args.join(" ")))?;
    }
    // Bounded: `ip` and `nft` return at once; a hung one is killed.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{}: did not finish within 20 s", args.join(" ")));
            }
            Err(e) => return Err(format!("{}: {e}", args.join(" "))),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{} failed ({}): {text}",
            args.join(" "),
            out.status
        ))
    }
}

/// The namespaces, veths and bridge of one test run.
pub struct Lab {
    prefix: String,
    nodes: Vec<u64>,
    made: Vec<String>,
}

impl Lab {
    /// Builds the topology for controllers `nodes` (ids 1..=9).
    pub fn build(nodes: &[u64]) -> Result<Lab, String> {
        let prefix = format!("kn-{}", std::process::id());
        let mut lab = Lab {
            prefix,
            nodes: nodes.to_vec(),
            made: Vec::new(),
        };
        // A run killed without unwinding may have left namespaces under a reused pid.
        for ns in std::iter::once(lab.hub()).chain(nodes.iter().map(|&i| lab.ns(i))) {
            if std::path::Path::new(&format!("/run/netns/{ns}")).exists() {
                let _ = sh(&["ip", "netns", "del", &ns]);
            }
        }
        let hub = lab.hub();
        sh(&["ip", "netns", "add", &hub])?;
        lab.made.push(hub.clone());
        sh(&["ip", "-n", &hub, "link", "set", "lo", "up"])?;
        sh(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        sh(&[
            "ip",
            "-n",
            &hub,
            "addr",
            "add",
            &format!("{CLIENT_ADDR}/24"),
            "dev",
            "br0",
        ])?;
        sh(&["ip", "-n", &hub, "link", "set", "br0", "up"])?;
        for &id in nodes {
            let ns = lab.ns(id);
            sh(&["ip", "netns", "add", &ns])?;
            lab.made.push(ns.clone());
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            let port = format!("n{id}");
            sh(&[
                "ip", "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            sh(&["ip", "-n", &hub, "link", "set", &port, "master", "br0"])?;
            sh(&["ip", "-n", &hub, "link", "set", &port, "up"])?;
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", Self::addr(id)),
                "dev",
                "eth0",
            ])?;
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(lab)
    }

    /// The hub namespace (bridge, clients).
    pub fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// Controller `id`'s namespace.
    pub fn ns(&self, id: u64) -> String {
        format!("{}-{id}", self.prefix)
    }

    /// Controller `id`'s address.
    pub fn addr(id: u64) -> String {
        format!("{SUBNET}.{id}")
    }

    pub fn api(id: u64) -> String {
        format!("{}:{API_PORT}", Self::addr(id))
    }

    pub fn peer(id: u64) -> String {
        format!("{}:{PEER_PORT}", Self::addr(id))
    }

    /// Moves the calling thread into the hub namespace (for the clients' runtime threads).
    pub fn enter_hub(hub: &str) -> Result<(), String> {
        use std::os::fd::AsRawFd;
        let path = format!("/run/netns/{hub}");
        let f = std::fs::File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
        // SAFETY: setns on an fd we own; it changes only this thread's network namespace.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(format!(
                "setns({path}): {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// Runs `task` to its end, at most `limit`, on a runtime whose threads live in the hub
    /// namespace, so every client socket the task makes is on the bridge. The runtime, and
    /// with it everything the task owns (its controllers are killed), is gone before this
    /// returns; the namespaces go when the caller drops the lab. Err says why the task did
    /// not give its answer: the threads could not enter the hub, it panicked, or it ran
    /// out of time.
    pub fn run_in_hub<T, Fut>(
        self: &std::sync::Arc<Self>,
        limit: Duration,
        task: impl FnOnce(std::sync::Arc<Lab>) -> Fut,
    ) -> Result<T, String>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        let hub = self.hub();
        let setns_failed = std::sync::Arc::new(AtomicBool::new(false));
        let flag = setns_failed.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                if let Err(e) = Lab::enter_hub(&hub) {
                    eprintln!("  entering the hub namespace: {e}");
                    flag.store(true, Ordering::SeqCst);
                }
            })
            .build()
            .map_err(|e| format!("a tokio runtime: {e}"))?;
        let lab = self.clone();
        let outcome = rt.block_on(async move {
            // The runtime's threads start lazily: make sure they are up and in the hub
            // before the task makes its first socket.
            tokio::task::spawn(async {}).await.ok();
            if setns_failed.load(Ordering::SeqCst) {
                return Err("the client threads could not enter the hub namespace".to_string());
            }
            match tokio::time::timeout(limit, tokio::spawn(task(lab))).await {
                Err(_) => Err(format!("did not finish within {limit:?}")),
                Ok(Err(e)) => Err(format!("panicked: {e}")),
                Ok(Ok(v)) => Ok(v),
            }
        });
        drop(rt);
        outcome
    }

    /// Drops every packet into and out of controller `id` (loopback aside).
    pub fn isolate(&self, id: u64) -> Result<(), String> {
        let rules = "table inet kn_isolate {\n\
             chain input { type filter hook input priority -10; policy drop; iifname \"lo\" accept; }\n\
             chain output { type filter hook output priority -10; policy drop; oifname \"lo\" accept; }\n\
             }\n";
        sh_input(
            &["ip", "netns", "exec", &self.ns(id), "nft", "-f", "-"],
            Some(rules),
        )
        .map(drop)
    }

    /// Removes [`Lab::isolate`]'s rules (if any).
    pub fn unisolate(&self, id: u64) -> Result<(), String> {
        let ns = self.ns(id);
        let tables = sh(&["ip", "netns", "exec", &ns, "nft", "list", "tables"])?;
        if tables.contains("kn_isolate") {
            sh(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "nft",
                "delete",
                "table",
                "inet",
                "kn_isolate",
            ])?;
        }
        Ok(())
    }

    /// Drops `percent`% of the packets into and out of controller `id` (loopback aside),
    /// each packet drawn on its own (nftables `numgen random`): a flaky link, not a cut.
    #[allow(dead_code)] // used by tests/leader_stability.rs, not by the nemesis
    pub fn lossy(&self, id: u64, percent: u32) -> Result<(), String> {
        let rules = format!(
            "table inet kn_lossy {{\n\
             chain input {{ type filter hook input priority -10; policy accept; iifname \"lo\" accept; numgen random mod 100 < {percent} drop; }}\n\
             chain output {{ type filter hook output priority -10; policy accept; oifname \"lo\" accept; numgen random mod 100 < {percent} drop; }}\n\
             }}\n"
        );
        sh_input(
            &["ip", "netns", "exec", &self.ns(id), "nft", "-f", "-"],
            Some(&rules),
        )
        .map(drop)
    }

    /// Removes [`Lab::lossy`]'s rules (if any).
    pub fn unlossy(&self, id: u64) -> Result<(), String> {
        let ns = self.ns(id);
        let tables = sh(&["ip", "netns", "exec", &ns, "nft", "list", "tables"])?;
        if tables.contains("kn_lossy") {
            sh(&[
                "ip", "netns", "exec", &ns, "nft", "delete", "table", "inet", "kn_lossy",
            ])?;
        }
        Ok(())
    }

    /// The bridge stops forwarding between `minority` and every other controller, both ways.
    pub fn partition(&self, minority: &[u64]) -> Result<(), String> {
        let inside: Vec<String> = minority.iter().map(|i| format!("\"n{i}\"")).collect();
        let outside: Vec<String> = self
            .nodes
            .iter()
            .filter(|i| !minority.contains(i))
            .map(|i| format!("\"n{i}\""))
            .collect();
        let (a, b) = (inside.join(", "), outside.join(", "));
        let rules = format!(
            "table bridge kn_partition {{\n\
             chain forward {{ type filter hook forward priority 0; policy accept;\n\
             iifname {{ {a} }} oifname {{ {b} }} drop\n\
             iifname {{ {b} }} oifname {{ {a} }} drop\n\
             }}\n}}\n"
        );
        sh_input(
            &["ip", "netns", "exec", &self.hub(), "nft", "-f", "-"],
            Some(&rules),
        )
        .map(drop)
    }

    /// Removes [`Lab::partition`]'s rules (if any).
    pub fn heal_partition(&self) -> Result<(), String> {
        let hub = self.hub();
        let tables = sh(&["ip", "netns", "exec", &hub, "nft", "list", "tables"])?;
        if tables.contains("kn_partition") {
            sh(&[
                "ip",
                "netns",
                "exec",
                &hub,
                "nft",
                "delete",
                "table",
                "bridge",
                "kn_partition",
            ])?;
        }
        Ok(())
    }

    /// Heals every cut.
    pub fn heal_all(&self) -> Result<(), String> {
        self.heal_partition()?;
        for &id in &self.nodes {
            self.unisolate(id)?;
            self.unlossy(id)?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends, the bridge and its nftables tables.
        for ns in self.made.iter().rev() {
            if let Err(e) = sh(&["ip", "netns", "del", ns]) {
                eprintln!("  cleanup: {e}");
            }
        }
    }
}
