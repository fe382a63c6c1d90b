//! Credentials change on a live TLS quorum without a restart, as deploy/README.md's
//! runbook does it: the cluster moves to a new CA (trust a bundle of both, move every
//! certificate to the new CA, drop the old one) while writes run, none failing; and the
//! principals file is edited under the running nodes, which pick it up on their own. A
//! file that does not load changes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kraftd::api::auth::token_sha256;
use kraftd::cli::certs::client_tls;
use kraftd::cli::fleet::registration;
use kraftd::client::{Client, ConfigKind, ConfigPatch, CreateTopic};
use kraftd::tls::client_config_from_files;

/// A client of `api` presenting `who`'s certificate from `dir`, trusting the CAs in `ca`.
fn client_as(api: &str, ca: &Path, dir: &Path, who: &str) -> Client {
    let tls = client_tls(ca, dir, Some(who)).unwrap();
    Client::new(api).unwrap().with_tls(tls).unwrap()
}

/// Replaces `path` the way an operator's tooling should: a temp file, then a rename.
fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("next");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `GET /healthz` over a fresh TLS connection made with `tls` (whose session store
/// remembers earlier sessions): the status line, or why the connection failed.
async fn raw_healthz(api: &str, tls: &Arc<rustls::ClientConfig>) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(api)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let kind = conn.get_ref().1.handshake_kind();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: kraftd\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("{kind:?} handshake, then: {e}"))?;
    let mut out = Vec::new();
    conn.read_to_end(&mut out)
        .await
        .map_err(|e| format!("{kind:?} handshake, then: {e}"))?;
    let text = String::from_utf8_lossy(&out);
    match text.lines().next() {
        Some(status) if status.contains(" 200 ") => Ok(format!("{kind:?}: {status}")),
        _ => Err(format!("{kind:?} handshake, then: {text}")),
    }
}

fn sighup_all(s: &Scenario) {
    for id in s.q.ids() {
        let pid = s.q.node(id).unwrap().pid().unwrap();
        // SAFETY: signalling a child process this test started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
    }
}

/// How many times the nodes' logs hold `line`.
fn logged(s: &Scenario, line: &str) -> usize {
    s.q.logs(100_000).matches(line).count()
}

/// Waits, at most 15 s, until the nodes' logs hold `line` at least `n` times.
async fn wait_logged(s: &Scenario, line: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let logs = s.q.logs(100_000);
        if logs.matches(line).count() >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{line:?} logged fewer than {n} times:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn the_cluster_moves_to_a_new_ca_and_new_principals_without_a_restart_or_a_failed_write() {
    run("tls_rotation", async {
        let scratch = tempfile::tempdir().unwrap();
        let dir: PathBuf = scratch.path().join("certs");
        let next: PathBuf = scratch.path().join("next-ca");
        eprintln!("step 0: the cluster's CA (old) and, for later, a new CA with its certificates");
        kraftd_certs(&dir, &[]);
        kraftd_certs(&next, &[]);
        let ca = dir.join("ca.pem");
        let old_ca = std::fs::read(&ca).unwrap();
        let new_ca = std::fs::read(next.join("ca.pem")).unwrap();
        let bundle = scratch.path().join("bundle.pem");
        std::fs::write(&bundle, [old_ca.clone(), new_ca.clone()].concat()).unwrap();

        eprintln!("step 1: three nodes serve TLS under the old CA");
        let mut s =
            Scenario::start_secure(3, &[("KRAFTD_BROKER_SESSION_TIMEOUT_MS", "600000")], &dir)
                .await;
        let leader = s.leader().await;
        let follower = s.q.ids().into_iter().find(|&i| i != leader).unwrap();
        let addrs: std::collections::HashMap<u64, String> =
            s.q.nodes()
                .iter()
                .map(|n| (n.id, n.api_addr.to_string()))
                .collect();
        let api = |id: u64| addrs[&id].clone();
        let new_operator = |id| client_as(&api(id), &bundle, &next, "operator");
        let old_operator = |id| client_as(&api(id), &bundle, &dir, "operator");

        eprintln!("step 2: before the nodes trust it, the new CA's operator fails the handshake");
        let e = new_operator(leader).quorum_status().await.unwrap_err();
        assert!(e.is_transport(), "the new CA was trusted early: {e}");

        eprintln!("step 3: every node trusts the bundle of both CAs after SIGHUP");
        replace_file(&ca, &std::fs::read(&bundle).unwrap());
        sighup_all(&s);
        wait_logged(&s, "TLS CA reloaded", 3).await;
        for id in s.q.ids() {
            new_operator(id)
                .quorum_status()
                .await
                .unwrap_or_else(|e| panic!("node {id} refused the new CA's operator: {e}"));
            old_operator(id)
                .quorum_status()
                .await
                .unwrap_or_else(|e| panic!("node {id} refused the old CA's operator: {e}"));
        }

        eprintln!("step 4: writers start, a new connection per write, as the new CA's operator");
        let cluster = s.q.cluster_id().to_string();
        let op = new_operator(follower);
        let epoch = op
            .register_broker(1, &registration(&cluster, 1, None, uuid::Uuid::new_v4()))
            .await
            .unwrap();
        op.heartbeat(1, &unfencing_heartbeat(epoch)).await.unwrap();
        new_operator(follower)
            .create_topic(&CreateTopic {
                name: "orders".into(),
                partitions: Some(1),
                replication_factor: Some(1),
                ..Default::default()
            })
            .await
            .unwrap();
        let apis = (0..4).map(|w| api(s.q.ids()[w % 3])).collect();
        let tls = client_tls(&bundle, &next, Some("operator")).unwrap();
        let writers = HandshakeWriters::start(apis, tls, "orders");
        tokio::time::sleep(Duration::from_secs(1)).await;

        eprintln!("step 5: every controller gets its certificate from the new CA (SIGHUP)");
        for id in s.q.ids() {
            for suffix in ["", "-key"] {
                let name = format!("controller-{id}{suffix}.pem");
                replace_file(&dir.join(&name), &std::fs::read(next.join(&name)).unwrap());
            }
        }
        sighup_all(&s);
        wait_logged(&s, "TLS certificate reloaded", 3).await;
        tokio::time::sleep(Duration::from_secs(1)).await;

        // A client of the old CA whose connection is open when its CA is dropped.
        let kept = old_operator(leader);
        kept.quorum_status().await.unwrap();

        eprintln!("step 6: the nodes drop the old CA (SIGHUP)");
        replace_file(&ca, &new_ca);
        sighup_all(&s);
        wait_logged(&s, "TLS CA reloaded", 6).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (ok, failed) = writers.stop().await;
        eprintln!("  {ok} writes acknowledged during the CA rotation, {failed} failed");
        assert!(ok > 20, "too few writes to say anything: {ok}");
        assert_eq!(failed, 0, "writes failed during the CA rotation");

        eprintln!("step 7: the old CA's operator is refused at the handshake; the controllers still replicate under the new CA");
        let e = kept.quorum_status().await.unwrap_err();
        assert!(
            e.is_transport(),
            "an old-CA client kept its open connection after its CA was dropped: {e}"
        );
        for id in s.q.ids() {
            let e = old_operator(id).quorum_status().await.unwrap_err();
            assert!(e.is_transport(), "node {id} still trusts the old CA: {e}");
        }
        let only_new = |id| client_as(&api(id), &next.join("ca.pem"), &next, "operator");
        only_new(follower)
            .create_topic(&CreateTopic {
                name: "after-rotation".into(),
                partitions: Some(1),
                replication_factor: Some(1),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("a write through a follower under the new CA: {e}"));
        let mut ends = Vec::new();
        for id in s.q.ids() {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let topics = only_new(id).topics().await.unwrap();
                if topics.iter().any(|t| t.name == "after-rotation") {
                    break;
                }
                assert!(Instant::now() < deadline, "node {id} never saw the topic");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ends.push(only_new(id).quorum_status().await.unwrap().high_watermark);
        }
        eprintln!("  high watermarks {ends:?}");

        eprintln!("step 7b: a controller killed and restarted makes every handshake anew, under the new CA alone, and catches up");
        let third =
            s.q.ids()
                .into_iter()
                .find(|&i| i != leader && i != follower)
                .unwrap();
        s.q.kill9(third).await.unwrap();
        only_new(follower)
            .create_topic(&CreateTopic {
                name: "while-down".into(),
                partitions: Some(1),
                replication_factor: Some(1),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("a write with node {third} down: {e}"));
        s.q.restart(third).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = only_new(third).topics().await.ok();
            if seen.is_some_and(|t| t.iter().any(|t| t.name == "while-down")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {third} did not catch up under the new CA"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        eprintln!("step 8: the principals file is edited in place: a bearer-token operator is added and the reader removed; no signal");
        let principals = dir.join("principals.toml");
        let text = std::fs::read_to_string(&principals).unwrap();
        let reader_entry = "\n[[principal]]\nname = \"reader\"\nrole = \"reader\"\n";
        assert!(text.contains(reader_entry), "{text}");
        let token = "rotation-test-token-0123456789";
        let edited = format!(
            "{}\n[[principal]]\nname = \"ci-bot\"\nrole = \"operator\"\ntoken_sha256 = \"{}\"\n",
            text.replace(reader_entry, ""),
            token_sha256(token)
        );
        let reloads = logged(&s, "principals file reloaded");
        replace_file(&principals, edited.as_bytes());
        let anonymous_tls = client_config_from_files(&next.join("ca.pem"), None).unwrap();
        let bot = |id| {
            Client::new(&api(id))
                .unwrap()
                .with_tls(anonymous_tls.clone())
                .unwrap()
                .with_token(token)
        };
        wait_logged(&s, "principals file reloaded", reloads + 3).await;
        for id in s.q.ids() {
            bot(id)
                .alter_config(
                    ConfigKind::Topic,
                    "orders",
                    &ConfigPatch::set_one("retention.ms", "4242"),
                )
                .await
                .unwrap_or_else(|e| panic!("node {id}: the added principal was refused: {e}"));
            let e = client_as(&api(id), &next.join("ca.pem"), &next, "reader")
                .topics()
                .await
                .unwrap_err();
            assert_eq!(e.status().map(|s| s.as_u16()), Some(401), "node {id}: {e}");
            assert_eq!(e.code(), Some("SASL_AUTHENTICATION_FAILED"), "{e}");
        }

        eprintln!("step 9: a principals file that does not parse is reported and changes nothing");
        replace_file(&principals, b"[[principal]\nname = ");
        sighup_all(&s);
        wait_logged(&s, "principals file not reloaded", 3).await;
        for id in s.q.ids() {
            bot(id)
                .quorum_status()
                .await
                .unwrap_or_else(|e| panic!("node {id} lost its principals: {e}"));
        }

        eprintln!(
            "step 10: a client that kept its TLS sessions cannot resume one once its CA is dropped"
        );
        // One configuration, so one session store, per node: the nodes share the server
        // name 127.0.0.1, and a ticket must go back to the node that issued it.
        let remembered: std::collections::HashMap<u64, Arc<rustls::ClientConfig>> =
            s.q.ids()
                .into_iter()
                .map(|id| {
                    let tls = client_tls(&next.join("ca.pem"), &next, Some("operator")).unwrap();
                    (id, Arc::new(tls))
                })
                .collect();
        for id in s.q.ids() {
            for _ in 0..2 {
                let status = raw_healthz(&api(id), &remembered[&id]).await;
                eprintln!("  node {id}, a client keeping its sessions: {status:?}");
                assert!(status.is_ok(), "node {id}: {status:?}");
            }
        }
        // The nodes now trust only a CA that did not sign this client's certificate.
        let reloads = logged(&s, "TLS CA reloaded");
        replace_file(&ca, &old_ca);
        sighup_all(&s);
        wait_logged(&s, "TLS CA reloaded", reloads + 3).await;
        for id in s.q.ids() {
            let resumed = raw_healthz(&api(id), &remembered[&id]).await;
            eprintln!("  node {id}, the same client after: {resumed:?}");
            assert!(
                resumed.is_err(),
                "node {id} let a client in with a session from before its CA was dropped: \
                 {resumed:?}"
            );
        }
    });
}

#[test]
fn a_node_without_tls_or_principals_takes_sighup_as_a_reload_not_an_exit() {
    run("sighup_plaintext", async {
        // `systemctl reload` sends SIGHUP whatever the node's settings.
        let mut s = Scenario::start(1, &[]).await;
        let id = s.leader().await;
        sighup_all(&s);
        wait_logged(&s, "SIGHUP: nothing to reload", 1).await;
        s.status(id).await;
        assert!(s.q.live_ids().contains(&id), "the node exited on SIGHUP");
    });
}
