//! `kraftd dev`: a local three-node quorum as child processes, for trying kraftd out.
//!
//! The nodes live in `./kraftd-dev/` (or `--base-dir`): formatted on the first run, reused on
//! later runs, so what was written survives. Ports are fixed by default (API 9093/9193/9293,
//! peer 9094/9194/9294) so the README's commands work as printed; `--port-base` moves them. Ctrl-C (or SIGTERM) stops every
//! node: SIGTERM, a bounded wait, then SIGKILL.

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

async fn run_async(args: &DevArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the kraftd executable")?;
    let ports = dev_ports(args.port_base)?;
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
