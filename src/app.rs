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
use crate::node::handle::Node;
use crate::node::leadership::{transfer_leadership, TransferError};
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
    let peer_app = crate::raft::peer::server::router(node.peer().clone(), tls.is_some());
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
                tokio::spawn(serve_tls(
                    peer_listener,
                    peer_cfg,
                    identity.clone(),
                    peer_app,
                    "peer",
                )),
                tokio::spawn(serve_tls(
                    api_listener,
                    api_cfg,
                    identity.clone(),
                    api_app,
                    "api",
                )),
            )
        }
    };
    // Always: `systemctl reload` sends SIGHUP, which would otherwise end the process.
    tokio::spawn(watch_credentials(
        tls.clone(),
        node.http().clone(),
        principals,
    ));
    start_duties(&node, gate_members, metrics);

    shutdown_signal().await;
    tracing::info!("stopping");
    hand_over_leadership(&node).await;
    peer_task.abort();
    api_task.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), node.raft().shutdown()).await;
    Ok(())
}

/// Longest a stopping leader waits for another voter to lead (a transfer takes a few ms).
const HAND_OVER_WAIT: Duration = Duration::from_secs(2);

/// A leader that is stopped hands leadership to the voter furthest along first, with both
/// listeners still open, so the others do not wait out an election timeout (a rolling
/// restart). A follower, or a single voter, just stops.
async fn hand_over_leadership(node: &Node) {
    // Bounded as a whole: a Raft core that no longer answers must not hold the stop up.
    let handed = tokio::time::timeout(
        HAND_OVER_WAIT + Duration::from_secs(1),
        transfer_leadership(node, None, HAND_OVER_WAIT),
    )
    .await
    .unwrap_or(Err(TransferError::TimedOut(HAND_OVER_WAIT)));
    match handed {
        Ok(m) if m.to == m.from => {}
        Ok(m) => tracing::info!(
            to = m.to,
            epoch = m.term,
            "stopping: node {} leads now",
            m.to
        ),
        Err(TransferError::NotLeader(_) | TransferError::NoOtherVoter) => {}
        // The others are stopping too (or are cut off): nothing to wait for.
        Err(TransferError::NoneAnswering(_)) => {
            tracing::info!("stopping: no other voter answers to hand leadership to")
        }
        Err(e) => tracing::warn!("stopping without handing leadership over: {e}"),
    }
}

/// Longest a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` over TLS on `listener`: each connection's handshake, then HTTP/1.1 or
/// HTTP/2 on it, every request carrying the [`PeerIdentity`] of the client certificate (as an
/// `Arc`, shared by the connection's requests). A
/// failed handshake is logged with its reason (once a minute per address and reason) and
/// counted (`kraftd_tls_handshake_failures_total{listener}`).
async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    identity: Arc<Identity>,
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
        // Subscribed before the handshake, so a CA reload during it is not missed.
        let mut ca_changes = identity.ca_changes();
        let identity = identity.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return handshake_failed(which, remote, &e.to_string()),
                Err(_) => return handshake_failed(which, remote, "timed out"),
            };
            let chain: Option<Vec<rustls_pki_types::CertificateDer<'static>>> =
                stream.get_ref().1.peer_certificates().map(<[_]>::to_vec);
            let peer = chain
                .as_ref()
                .and_then(|c| c.first())
                .map(|c| Arc::new(PeerIdentity::of(c)))
                .unwrap_or_default();
            // A connection is checked once, at its handshake. It ends when a reloaded CA no
            // longer vouches for its client certificate, or when that certificate expires;
            // the client must then make a new handshake. Connections the new CA still
            // vouches for carry on, so a rotation cuts no request short.
            let expires = peer.not_after.map(|t| {
                t.duration_since(std::time::SystemTime::now())
                    .unwrap_or_default()
            });
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    let mut app = app.clone();
                    async move { tower::Service::call(&mut app, req).await }
                },
            );
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn =
                builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let why = loop {
                tokio::select! {
                    _ = conn.as_mut() => return,
                    Ok(()) = ca_changes.changed() => {
                        if chain.as_deref().is_some_and(|c| !identity.still_vouches_for(c)) {
                            break "the reloaded CA does not vouch for its client certificate";
                        }
                    }
                    _ = sleep_or_never(expires) => break "its client certificate expired",
                }
            };
            tracing::debug!(listener = which, %remote, "closing a TLS connection: {why}");
            conn.as_mut().graceful_shutdown();
            // In-flight requests finish; a client that holds the connection open is cut off.
            let _ = tokio::time::timeout(GRACEFUL_CLOSE, conn).await;
        });
    }
}

/// How long a connection being closed (its CA dropped, its client certificate expired) may take
/// to finish its in-flight requests.
const GRACEFUL_CLOSE: Duration = Duration::from_secs(30);

async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

fn handshake_failed(which: &'static str, remote: std::net::SocketAddr, why: &str) {
    metrics::counter!(TLS_HANDSHAKE_FAILURES, "listener" => which).increment(1);
    // Reasons carry times ("verification time 1796137248"): without the digits, the same
    // failure has the same key from one second to the next.
    let kind = why.chars().filter(|c| !c.is_ascii_digit()).collect();
    let said = HANDSHAKE_LOG
        .get_or_init(Default::default)
        .note((which, remote.ip(), kind), std::time::Instant::now());
    if let Some(repeats) = said {
        tracing::warn!(
            listener = which,
            %remote,
            repeats_since_last_logged = repeats,
            "TLS handshake failed: {why} (the same failure from this address is logged again \
             after {}s at the earliest; kraftd_tls_handshake_failures_total counts each)",
            HANDSHAKE_LOG_QUIET.as_secs()
        );
    }
}

/// How long the same handshake failure from the same address stays unlogged.
const HANDSHAKE_LOG_QUIET: Duration = Duration::from_secs(60);
/// Most (listener, address, reason) entries remembered: a flood from many addresses cannot
/// grow the map past it.
const HANDSHAKE_LOG_ENTRIES: usize = 4096;

static HANDSHAKE_LOG: std::sync::OnceLock<OnceEvery> = std::sync::OnceLock::new();

type FailureKey = (&'static str, std::net::IpAddr, String);

/// Says once per key and quiet period whether to log, so that a client retrying a bad
/// certificate in a loop, or a scanner, cannot flood the log; the counter still counts
/// each failure.
#[derive(Default)]
struct OnceEvery {
    seen: std::sync::Mutex<std::collections::HashMap<FailureKey, (std::time::Instant, u64)>>,
}

impl OnceEvery {
    /// `Some(n)`: log now, `n` repeats went unlogged since the last line for this key.
    /// None: stay quiet.
    fn note(&self, key: FailureKey, now: std::time::Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, repeats)) = seen.get_mut(&key) {
            if now.duration_since(*at) < HANDSHAKE_LOG_QUIET {
                *repeats += 1;
                return None;
            }
            let n = *repeats;
            *at = now;
            *repeats = 0;
            return Some(n);
        }
        if seen.len() >= HANDSHAKE_LOG_ENTRIES {
            seen.retain(|_, (at, _)| now.duration_since(*at) < HANDSHAKE_LOG_QUIET);
            if seen.len() >= HANDSHAKE_LOG_ENTRIES {
                // Every entry is recent: a flood from many addresses. Forget them rather
                // than grow; the worst case is one line per address per reset.
                seen.clear();
            }
        }
        seen.insert(key, (now, 0));
        Some(0)
    }
}

/// Reloads this node's certificate, key and CA, and the principals file, on SIGHUP and
/// when their files change (checked every 5 s), so that a rotation needs no restart. A
/// file that does not load is reported and what was in force stays.
async fn watch_credentials(
    identity: Option<Arc<Identity>>,
    http: crate::raft::peer::client::PeerHttp,
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
        if forced && identity.is_none() && principals.is_none() {
            tracing::info!("SIGHUP: nothing to reload (no TLS files and no principals file)");
        }
        if let Some(identity) = &identity {
            let result = if forced {
                identity.reload()
            } else {
                identity.reload_if_changed()
            };
            match result {
                Ok(r) => {
                    if r.certificate || r.ca {
                        // Outgoing connections made under the old pair go with the old pool.
                        if let Err(e) = http.renew() {
                            tracing::error!("the peer client was not rebuilt: {e}");
                        }
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_handshake_failure_is_logged_once_per_quiet_period_with_its_repeats() {
        let log = OnceEvery::default();
        let t0 = std::time::Instant::now();
        let ip: std::net::IpAddr = [10, 0, 0, 1].into();
        let key = |why: &str| ("api", ip, why.to_string());
        assert_eq!(log.note(key("expired"), t0), Some(0), "the first is logged");
        for i in 1..=5 {
            assert_eq!(log.note(key("expired"), t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(
            log.note(key("unknown CA"), t0),
            Some(0),
            "another reason is logged"
        );
        assert_eq!(
            log.note(("peer", ip, "expired".into()), t0),
            Some(0),
            "another listener is logged"
        );
        assert_eq!(
            log.note(key("expired"), t0 + HANDSHAKE_LOG_QUIET),
            Some(5),
            "after the quiet period, with the repeats it kept back"
        );
        // Many addresses: the map stays bounded.
        for i in 0..(HANDSHAKE_LOG_ENTRIES as u32 + 10) {
            let ip: std::net::IpAddr = std::net::Ipv4Addr::from(i).into();
            assert!(log.note(("api", ip, "x".into()), t0).is_some());
        }
        assert!(log.seen.lock().unwrap().len() <= HANDSHAKE_LOG_ENTRIES);
    }
}
