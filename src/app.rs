//! The application: boots a node, mounts the API and peer routers on its listeners, starts
//! its duties, and runs until SIGTERM or Ctrl-C. It sits above `api` and `node`, so neither
//! of them needs the other's way down.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;

use crate::api::auth::Principals;
use crate::node::boot::{boot, Booted};
use crate::node::config::Config;
use crate::node::duties::start_duties;

/// Runs a node until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // A bad principals file stops the node before it opens anything.
    let principals = match config.auth_principals_file.as_str() {
        "" => {
            tracing::warn!(
                "the API listener authenticates nobody (no auth_principals_file): anyone who \
                 can reach it may write"
            );
            None
        }
        path => Some(Arc::new(Principals::load(Path::new(path))?)),
    };
    let Booted {
        node,
        api_listener,
        peer_listener,
        gate_members,
        metrics,
    } = boot(config).await?;
    let peer_app = crate::api::peer::router(node.clone());
    let api_app = crate::api::router(node.clone(), principals);
    tracing::info!(
        node_id = node.id(),
        cluster_id = %node.meta().cluster_id,
        api = %node.api_addr(),
        peer = %node.peer_addr(),
        "kraftd node serving"
    );
    let peer_task =
        tokio::spawn(async move { axum::serve(peer_listener.tap_io(nodelay), peer_app).await });
    let api_task =
        tokio::spawn(async move { axum::serve(api_listener.tap_io(nodelay), api_app).await });
    start_duties(&node, gate_members, metrics);

    shutdown_signal().await;
    tracing::info!("stopping");
    peer_task.abort();
    api_task.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), node.raft().shutdown()).await;
    Ok(())
}

/// Every accepted socket sets TCP_NODELAY (DESIGN: Nagle adds tens of ms on loopback).
fn nodelay(tcp: &mut tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
