//! `kraftd dev`: a local three-node quorum as child processes, for trying kraftd out.
//!
//! The nodes live in `./kraftd-dev/` (or `--base-dir`): formatted on the first run, reused on
//! later runs, so what was written survives. Ports are fixed by default (API 9093/9193/9293,
//! peer 9094/9194/9294) so the README's commands work as printed; `--port-base` moves them. Ctrl-C (or SIGTERM) stops every
//! node: SIGTERM, a bounded wait, then SIGKILL. A second `kraftd dev` on the same directory
//! (it holds `dev.lock`) or the same ports is refused before it writes anything.

use anyhow::Context;
use std::path::PathBuf;
use std::time::Duration;

use super::local_quorum::{LocalQuorum, QuorumOptions, StopOutcome, STOP_GRACE};

/// `kraftd dev` arguments.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where the nodes keep their data and logs.
    #[arg(long, default_value = "kraftd-dev")]
    pub base_dir: PathBuf,
    /// How long to wait for the quorum to elect a leader and be ready.
    #[arg(long, default_value_t = 60)]
    pub ready_timeout_secs: u64,
    /// First API port: node N listens on API port BASE+100*(N-1) and peer port one above
    /// (the default gives 9093/9094, 9193/9194, 9293/9294).
    #[arg(long, default_value_t = 9093)]
    pub port_base: u16,
    /// TLS on both listeners (mutual TLS between the nodes) and authentication on the API,
    /// with certificates `kraftd certs` makes in BASE_DIR/certs (kept across runs).
    #[arg(long)]
    pub secure: bool,
}

/// `(api, peer)` ports of the three nodes from `base`.
fn dev_ports(base: u16) -> anyhow::Result<Vec<(u16, u16)>> {
    (0..3u16)
        .map(|i| {
            let api = base
                .checked_add(100 * i)
                .filter(|p| *p < u16::MAX)
                .context("--port-base is too high")?;
            Ok((api, api + 1))
        })
        .collect()
}

/// Runs the dev quorum until Ctrl-C.
pub fn run(args: &DevArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(args))
}

/// Holds `BASE_DIR/dev.lock` for as long as this `kraftd dev` runs; a second one in the same
/// directory is refused before it touches anything else.
fn lock_base_dir(base: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(base).with_context(|| format!("creating {}", base.display()))?;
    let path = base.join("dev.lock");
    let mut f = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor this function owns; released when it is closed.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    match (rc == 0)
        .then_some(())
        .ok_or_else(std::io::Error::last_os_error)
    {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            anyhow::bail!(
                "another `kraftd dev` (pid {}) runs in {}: stop it first (Ctrl-C where it runs), \
                 or start this one with another --base-dir and --port-base",
                pid.trim(),
                base.display()
            );
        }
        Err(e) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    f.set_len(0)?;
    f.rewind()?;
    write!(f, "{}", std::process::id())?;
    Ok(f)
}

/// Refuses at once when a port the nodes need is taken (by another `kraftd dev` with
/// another base directory, or another program), before a node is formatted or started.
fn check_ports_free(ports: &[(u16, u16)]) -> anyhow::Result<()> {
    for &(api, peer) in ports {
        for p in [api, peer] {
            if std::net::TcpListener::bind(("127.0.0.1", p)).is_err() {
                anyhow::bail!(
                    "port {p} on 127.0.0.1 is in use (another `kraftd dev`, or another program): \
                     stop it, or move this quorum with --port-base"
                );
            }
        }
    }
    Ok(())
}

async fn run_async(args: &DevArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the kraftd executable")?;
    let ports = dev_ports(args.port_base)?;
    let _lock = lock_base_dir(&args.base_dir)?;
    check_ports_free(&ports)?;
    let opts = QuorumOptions {
        reuse_formatted: true,
        ..QuorumOptions::new(exe, &args.base_dir, ports.len())
    };
    let opts = QuorumOptions {
        ports: Some(ports),
        ..opts
    };
    let certs = args.base_dir.join("certs");
    let opts = if args.secure {
        let made = super::certs::run(&super::certs::CertsArgs {
            dir: certs.clone(),
            controllers: vec![1, 2, 3],
            brokers: vec![1, 2, 3],
            hosts: Vec::new(),
            days: 365,
        })
        .map_err(|e| anyhow::anyhow!("kraftd certs: {e}"))?;
        print!("kraftd dev: {made}");
        opts.secure(&certs)?
    } else {
        opts
    };
    let scheme = if args.secure { "https" } else { "http" };
    let fresh = !args.base_dir.join("node1").join("meta.properties").exists();
    let mut q = LocalQuorum::start(opts).await?;
    println!(
        "kraftd dev: {} three-node quorum in {} (cluster id {})",
        if fresh {
            "formatted a new"
        } else {
            "reusing the"
        },
        args.base_dir.display(),
        q.cluster_id()
    );
    for n in q.nodes() {
        println!(
            "  node {}: API {scheme}://{}  peer {}  data {}  log {}",
            n.id,
            n.api_addr,
            n.peer_addr,
            n.data_dir.display(),
            n.log_path.display()
        );
    }

    // One listener for the whole run, so a signal between two waits is not lost.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let timeout = Duration::from_secs(args.ready_timeout_secs);
    let ready = tokio::select! {
        r = async {
            q.wait_ready_all(timeout).await?;
            q.wait_leader(timeout).await
        } => Some(r),
        _ = &mut shutdown => None,
    };
    match ready {
        None => {
            println!("interrupted before the quorum was ready; stopping");
            return stop(&mut q).await;
        }
        Some(Err(e)) => {
            eprintln!("kraftd dev: the quorum did not come up: {e:#}");
            stop(&mut q).await?;
            return Err(e);
        }
        Some(Ok(leader)) => {
            let api = q.node(leader)?.api_addr;
            println!("ready: node {leader} (API {api}) is the leader. Try:");
            let api_of = |i: u16| args.port_base + 100 * i;
            let first = api_of(0);
            if args.secure {
                let c = certs.display();
                println!(
                    "  export KRAFTD_CA_FILE={c}/ca.pem KRAFTD_CERT_FILE={c}/operator.pem \
                     KRAFTD_KEY_FILE={c}/operator-key.pem"
                );
                println!("  kraftd quorum status --api localhost:{first}");
                println!(
                    "  curl -s --cacert {c}/ca.pem --cert {c}/operator.pem --key \
                     {c}/operator-key.pem https://localhost:{first}/v1/quorum/status"
                );
                println!("  (reader.pem may only read; broker-N.pem may act only as broker N)");
            } else {
                println!("  kraftd quorum status --api localhost:{first}");
                println!("  curl -s localhost:{first}/v1/quorum/status");
                println!(
                    "  curl -s -X PATCH localhost:{first}/v1/configs/broker/1 -H 'content-type: application/json' -d '{{\"set\": {{\"log.retention.ms\": \"60000\"}}}}'"
                );
                println!("  curl -s localhost:{}/v1/configs/broker/1", api_of(1));
                println!(
                    "  curl -s -H 'accept: application/json' 'localhost:{}/v1/metadata/log?offset=0'",
                    api_of(2)
                );
            }
            println!("Ctrl-C stops all three nodes.");
        }
    }

    // Watch the nodes until asked to stop; report any that exits by itself.
    let mut reported: Vec<u64> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                let live = q.live_ids();
                for id in q.ids() {
                    if !live.contains(&id) && !reported.contains(&id) {
                        reported.push(id);
                        eprintln!(
                            "kraftd dev: node {id} exited; last lines of its log:\n{}",
                            q.log_tail(id, 20)
                        );
                    }
                }
                if live.is_empty() {
                    eprintln!("kraftd dev: every node has exited");
                    break;
                }
            }
        }
    }
    println!("stopping the quorum");
    stop(&mut q).await
}

async fn stop(q: &mut LocalQuorum) -> anyhow::Result<()> {
    for (id, outcome) in q.stop_all(STOP_GRACE).await? {
        match outcome {
            StopOutcome::Exited(s) => println!("  node {id} stopped ({s})"),
            StopOutcome::Killed(_) => {
                println!("  node {id} ignored SIGTERM for {STOP_GRACE:?}; killed")
            }
            StopOutcome::AlreadyExited(s) => println!("  node {id} had exited ({s})"),
            StopOutcome::NotRunning => {}
        }
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
