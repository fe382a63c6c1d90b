//! The application: boots a node, mounts the API and peer routers on its listeners, starts
//! its duties, and runs until SIGTERM or Ctrl-C. It sits above `api` and `node`, so neither
//! of them needs the other's way down.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;

use crate::api::auth::PrincipalsWatch;
use crate::node::boot::{boot, Booted};
use crate::node::config::Config;
use crate::node::duties::start_duties;
use crate::telemetry::TLS_HANDSHAKE_FAILURES;
use crate::tls::{server_config, ClientCerts, Identity, PeerIdentity};

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
        path => Some(PrincipalsWatch::load(Path::new(path))?),
    };
    let Booted {
        node,
        api_listener,
        peer_listener,
        gate_members,
        metrics,
        tls,
    } = boot(config).await?;
    let peer_app = crate::api::peer::router(node.clone(), tls.is_some());
    let api_app = crate::api::router(node.clone(), principals.clone());
    tracing::info!(
        node_id = node.id(),
        cluster_id = %node.meta().cluster_id,
        api = %node.api_addr(),
        peer = %node.peer_addr(),
        "kraftd node serving"
    );
    let (peer_task, api_task) = match &tls {
        None => (
            tokio::spawn(async move {
                let _ = axum::serve(peer_listener.tap_io(nodelay), peer_app).await;
            }),
            tokio::spawn(async move {
                let _ = axum::serve(api_listener.tap_io(nodelay), api_app).await;
            }),
        ),
        Some(identity) => {
            let peer_cfg = server_config(identity.clone(), ClientCerts::Required)?;
            let api_cfg = server_config(identity.clone(), ClientCerts::Optional)?;
            (
                tokio::spawn(serve_tls(peer_listener, peer_cfg, peer_app, "peer")),
                tokio::spawn(serve_tls(api_listener, api_cfg, api_app, "api")),
            )
        }
    };
    if tls.is_some() || principals.is_some() {
        tokio::spawn(watch_credentials(tls.clone(), principals));
    }
    start_duties(&node, gate_members, metrics);

    shutdown_signal().await;
    tracing::info!("stopping");
    peer_task.abort();
    api_task.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), node.raft().shutdown()).await;
    Ok(())
}

/// Longest a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` over TLS on `listener`: each connection's handshake, then HTTP/1.1 or
/// HTTP/2 on it, every request carrying the [`PeerIdentity`] of the client certificate. A
/// failed handshake is logged with its reason and counted
/// (`kraftd_tls_handshake_failures_total{listener}`).
async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: axum::Router,
    which: &'static str,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(listener = which, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return handshake_failed(which, remote, &e.to_string()),
                Err(_) => return handshake_failed(which, remote, "timed out"),
            };
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(PeerIdentity::of)
                .unwrap_or_default();
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(identity.clone());
                    let mut app = app.clone();
                    async move { tower::Service::call(&mut app, req).await }
                },
            );
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
        });
    }
}

fn handshake_failed(which: &'static str, remote: std::net::SocketAddr, why: &str) {
    tracing::warn!(listener = which, %remote, "TLS handshake failed: {why}");
    metrics::counter!(TLS_HANDSHAKE_FAILURES, "listener" => which).increment(1);
}

/// Reloads this node's certificate, key and CA, and the principals file, on SIGHUP and
/// when their files change (checked every 5 s), so that a rotation needs no restart. A
/// file that does not load is reported and what was in force stays.
async fn watch_credentials(
    identity: Option<Arc<Identity>>,
    principals: Option<Arc<PrincipalsWatch>>,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        #[cfg(unix)]
        let forced = match hup.as_mut() {
            Some(h) => tokio::select! {
                _ = h.recv() => true,
                _ = tick.tick() => false,
            },
            None => {
                tick.tick().await;
                false
            }
        };
        #[cfg(not(unix))]
        let forced = {
            tick.tick().await;
            false
        };
        if let Some(identity) = &identity {
            let result = if forced {
                identity.reload()
            } else {
                identity.reload_if_changed()
            };
            match result {
                Ok(r) => {
                    if r.certificate {
                        tracing::info!(
                            cert = %identity.files().cert.display(),
                            "TLS certificate reloaded: new handshakes use it"
                        );
                    }
                    if r.ca {
                        tracing::info!(
                            ca = %identity.files().ca.display(),
                            "TLS CA reloaded: new handshakes on both listeners and to peers \
                             trust it"
                        );
                    }
                }
                Err(e) => tracing::error!(
                    "TLS files not reloaded, the certificate and CA in use stay: {e}"
                ),
            }
        }
        if let Some(principals) = &principals {
            let result = if forced {
                principals.reload().map(Some)
            } else {
                principals.reload_if_changed()
            };
            match result {
                Ok(Some(n)) => tracing::info!(
                    file = %principals.path().display(),
                    principals = n,
                    "principals file reloaded: the next request is checked against it"
                ),
                Ok(None) => {}
                Err(e) => tracing::error!(
                    "principals file not reloaded, the principals in force stay: {e}"
                ),
            }
        }
    }
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
