//! TLS on both listeners, on a live three-node quorum with certificates from `kraftd
//! certs`: clients prove who they are with client certificates; whatever does not chain to
//! the cluster's CA, or speaks plaintext, fails its handshake (logged and counted); a peer
//! with a valid certificate cannot speak for another node; and the certificates are
//! rotated under a stream of writes without one failing.

mod common;

use std::path::{Path, PathBuf};

use std::time::Duration;

use common::*;
use kraftd::cli::certs::client_tls;
use kraftd::cli::fleet::registration;
use kraftd::client::{Client, ConfigKind, ConfigPatch, CreateTopic};
use kraftd::raft::peer::wire::PATH_APPEND;

/// A client of `api` presenting `who`'s certificate from `dir`, trusting `ca`.
fn client_as(api: &str, ca: &Path, dir: &Path, who: &str) -> Client {
    let tls = client_tls(ca, dir, Some(who)).unwrap();
    Client::new(api).unwrap().with_tls(tls).unwrap()
}

/// A raw HTTPS client for the peer listener, presenting `who`'s certificate from `dir`.
fn peer_client(ca: &Path, dir: &Path, who: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_tls(ca, dir, Some(who)).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A peer envelope's first fields (cluster id, sender) and a body no handler can decode.
fn envelope(cluster: &str, from: u64) -> Vec<u8> {
    let mut b = postcard::to_allocvec(&(cluster.to_string(), from)).unwrap();
    b.extend_from_slice(&[0xff; 8]);
    b
}

fn handshake_failures(metrics: &str, listener: &str) -> f64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("kraftd_tls_handshake_failures_total")
                && l.contains(&format!("listener=\"{listener}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_tls_quorum_admits_only_its_ca_and_the_right_identities_and_rotates_without_a_failed_write() {
    run("tls_quorum", async {
        let scratch = tempfile::tempdir().unwrap();
        let dir: PathBuf = scratch.path().join("certs");
        let other: PathBuf = scratch.path().join("other-ca");
        eprintln!("step 0: kraftd certs makes the cluster's CA and certificates, and another CA");
        kraftd_certs(&dir, &[]);
        kraftd_certs(&other, &[]);
        let ca = dir.join("ca.pem");

        eprintln!("step 1: three nodes serve TLS, mutual TLS between them");
        let mut s =
            Scenario::start_secure(3, &[("KRAFTD_BROKER_SESSION_TIMEOUT_MS", "600000")], &dir)
                .await;
        let leader = s.leader().await;
        let follower = s.q.ids().into_iter().find(|&i| i != leader).unwrap();
        let api = |id: u64| s.q.node(id).unwrap().api_addr.to_string();
        let peer = |id: u64| s.q.node(id).unwrap().peer_addr.to_string();
        let cluster = s.q.cluster_id().to_string();

        eprintln!("step 2: principals by client certificate: broker-1 registers as broker 1 only; operator writes (through a follower too); reader only reads");
        let broker1 = client_as(&api(follower), &ca, &dir, "broker-1");
        let reg = |id| registration(&cluster, id, None, uuid::Uuid::new_v4());
        let epoch = broker1.register_broker(1, &reg(1)).await.unwrap();
        broker1
            .heartbeat(1, &unfencing_heartbeat(epoch))
            .await
            .unwrap();
        let e = broker1.register_broker(2, &reg(2)).await.unwrap_err();
        assert_eq!(e.status().map(|s| s.as_u16()), Some(403), "{e}");
        let operator = client_as(&api(follower), &ca, &dir, "operator");
        operator
            .create_topic(&CreateTopic {
                name: "orders".into(),
                partitions: Some(1),
                replication_factor: Some(1),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("operator by certificate, forwarded: {e}"));
        let reader = client_as(&api(leader), &ca, &dir, "reader");
        reader.topics().await.unwrap();
        // A follower asks the leader for the health verdict on the reader's behalf: the
        // leader must see the reader (by certificate), not the follower's own certificate.
        let health = client_as(&api(follower), &ca, &dir, "reader")
            .quorum_health()
            .await
            .unwrap();
        // Judged by the leader (a refused forward would be the follower's own
        // `unavailable`); healthy or degraded depends on the moment, not on the forwarding.
        assert_eq!(health.reported_by, leader, "{health:?}");
        assert_ne!(
            health.status,
            kraftd::client::HealthStatus::Unavailable,
            "{health:?}"
        );
        let e = reader
            .alter_config(
                ConfigKind::Topic,
                "orders",
                &ConfigPatch::set_one("retention.ms", "1"),
            )
            .await
            .unwrap_err();
        assert_eq!(e.status().map(|s| s.as_u16()), Some(403), "{e}");
        assert_eq!(e.code(), Some("CLUSTER_AUTHORIZATION_FAILED"), "{e}");
        let before = wait_same_image(&s, &s.q.ids(), 0).await;

        eprintln!("step 3: plaintext, another CA's client certificate, an expired one, and a client that trusts another CA all fail the handshake");
        let metrics_of = |id| {
            let c = client_as(&api(id), &ca, &dir, "operator");
            async move { c.metrics().await.unwrap() }
        };
        let failures_before = handshake_failures(&metrics_of(leader).await, "api");
        let plain = Client::new(&api(leader)).unwrap();
        assert!(
            plain.quorum_status().await.is_err(),
            "plaintext was answered"
        );
        let stranger = client_as(&api(leader), &ca, &other, "operator");
        let e = stranger.quorum_status().await.unwrap_err();
        assert!(
            e.is_transport(),
            "another CA's certificate got an answer: {e}"
        );
        let wrong_trust = client_as(&api(leader), &other.join("ca.pem"), &dir, "operator");
        assert!(wrong_trust.quorum_status().await.is_err());
        // The cluster's own CA, but a certificate that has expired.
        let expired = scratch.path().join("expired");
        expired_certs(&dir, &expired);
        let e = client_as(&api(leader), &ca, &expired, "operator")
            .quorum_status()
            .await
            .unwrap_err();
        assert!(
            e.is_transport(),
            "an expired certificate got an answer: {e}"
        );
        let failures_after = handshake_failures(&metrics_of(leader).await, "api");
        assert!(
            failures_after >= failures_before + 3.0,
            "handshake failures counted {failures_before} -> {failures_after}"
        );
        // A client that retries a bad certificate in a loop: each failure is counted, the
        // log says it once.
        for _ in 0..10 {
            let e = client_as(&api(leader), &ca, &expired, "operator")
                .quorum_status()
                .await
                .unwrap_err();
            assert!(e.is_transport(), "{e}");
        }
        let failures_looped = handshake_failures(&metrics_of(leader).await, "api");
        assert!(
            failures_looped >= failures_after + 10.0,
            "handshake failures counted {failures_after} -> {failures_looped}"
        );
        let expired_lines =
            s.q.log_tail(leader, 100_000)
                .lines()
                .filter(|l| l.contains("TLS handshake failed") && l.contains("certificate expired"))
                .count();
        assert_eq!(
            expired_lines, 1,
            "eleven expired-certificate handshakes from one address are logged once"
        );

        eprintln!("step 4: on the peer listener, another CA cannot connect; a broker's or another controller's certificate cannot speak for node {leader}");
        let hw_before = s.status(follower).await.high_watermark;
        let url = format!(
            "https://{}{}",
            peer(follower),
            kraftd::raft::peer::wire::PATH_APPEND
        );
        let foreign = peer_client(&ca, &other, &format!("controller-{leader}"));
        assert!(
            foreign
                .post(&url)
                .body(envelope(&cluster, leader))
                .send()
                .await
                .is_err(),
            "a certificate of another CA reached the peer listener"
        );
        let broker = peer_client(&ca, &dir, "broker-1");
        let r = broker
            .post(&url)
            .body(envelope(&cluster, leader))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            403,
            "broker certificate: {:?}",
            r.text().await
        );
        let third =
            s.q.ids()
                .into_iter()
                .find(|&i| i != leader && i != follower)
                .unwrap();
        let impostor = peer_client(&ca, &dir, &format!("controller-{third}"));
        use kraftd::raft::peer::wire::{PATH_PRE_VOTE, PATH_SNAPSHOT, PATH_VOTE};
        for path in [PATH_APPEND, PATH_VOTE, PATH_PRE_VOTE, PATH_SNAPSHOT] {
            let url = format!("https://{}{path}", peer(follower));
            for (who, c) in [("another CA", &foreign), ("broker-1", &broker)] {
                match c.post(&url).body(envelope(&cluster, leader)).send().await {
                    Err(_) => assert_eq!(who, "another CA", "{path}: {who} failed to connect"),
                    Ok(r) => assert_eq!(r.status().as_u16(), 403, "{path}: {who}"),
                }
            }
            let r = impostor
                .post(&url)
                .body(envelope(&cluster, leader))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status().as_u16(),
                403,
                "{path}: controller-{third} as node {leader}"
            );
            // The same certificate speaking for itself passes the identity check (and the
            // handler then refuses the undecodable body).
            let r = impostor
                .post(&url)
                .body(envelope(&cluster, third))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status().as_u16(),
                400,
                "{path}: controller-{third} as itself"
            );
        }
        let st = s.status(follower).await;
        assert!(st.high_watermark >= hw_before);
        let after = wait_same_image(&s, &s.q.ids(), 0).await;
        assert_eq!(
            before, after,
            "a refused peer or API call changed the image"
        );

        eprintln!("step 5: rotation: new certificates under the same CA while writes run, each on a new connection");
        let apis = (0..4).map(|w| api(s.q.ids()[w % 3])).collect();
        // The operator's own files are read once: they are rewritten below too.
        let tls = client_tls(&ca, &dir, Some("operator")).unwrap();
        let writers = HandshakeWriters::start(apis, tls, "orders");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let old_cert = std::fs::read(dir.join(format!("controller-{leader}.pem"))).unwrap();
        kraftd_certs(&dir, &[]);
        for id in s.q.ids() {
            let pid = s.q.node(id).unwrap().pid().unwrap();
            // SAFETY: signalling a child process this test started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (ok, failed) = writers.stop().await;
        eprintln!("  {ok} writes acknowledged during the rotation, {failed} failed");
        assert!(ok > 20, "too few writes to say anything: {ok}");
        assert_eq!(failed, 0, "writes failed during the rotation");

        eprintln!("step 6: every node now serves the new certificate");
        let new_cert = std::fs::read(dir.join(format!("controller-{leader}.pem"))).unwrap();
        assert_ne!(old_cert, new_cert);
        let logs = s.q.logs(100_000);
        let reloaded = logs.matches("TLS certificate reloaded").count();
        assert!(reloaded >= 3, "{reloaded} nodes logged a reload:\n{logs}");

        eprintln!("step 7: recover-quorum on a stopped controller asks the others over mutual TLS with its own certificate, finds them holding their disks, and refuses");
        s.q.stop(follower).await.unwrap();
        let me = format!("controller-{follower}");
        let (cert, key) = (
            dir.join(format!("{me}.pem")),
            dir.join(format!("{me}-key.pem")),
        );
        let settings = scratch.path().join("kraftd.toml");
        std::fs::write(
            &settings,
            format!("tls_cert_file = {cert:?}\ntls_key_file = {key:?}\ntls_ca_file = {ca:?}\n"),
        )
        .unwrap();
        let recover = |args: &[&std::ffi::OsStr]| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_kraftd"))
                .arg("recover-quorum")
                .arg("--data-dir")
                .arg(&s.q.node(follower).unwrap().data_dir)
                .args(args)
                .env_remove("KRAFTD_TLS_CERT_FILE")
                .env_remove("KRAFTD_TLS_KEY_FILE")
                .env_remove("KRAFTD_TLS_CA_FILE")
                .output()
                .unwrap();
            assert!(!out.status.success());
            String::from_utf8_lossy(&out.stderr).into_owned()
        };
        let err = recover(&[
            "--tls-cert-file".as_ref(),
            cert.as_os_str(),
            "--tls-key-file".as_ref(),
            key.as_os_str(),
            "--tls-ca-file".as_ref(),
            ca.as_os_str(),
        ]);
        assert!(
            err.contains("still answer with the disk the membership records"),
            "{err}"
        );
        let err = recover(&["--config".as_ref(), settings.as_os_str()]);
        assert!(
            err.contains("still answer with the disk the membership records"),
            "with the settings file: {err}"
        );
        eprintln!("  without its certificate it cannot ask them, and not even --force passes over voters that answer");
        for args in [&[][..], &["--force".as_ref()][..]] {
            let err = recover(args);
            assert!(
                err.contains("could not be asked") && err.contains("not even --force"),
                "{err}"
            );
        }
        let err = recover(&["--tls-cert-file".as_ref(), cert.as_os_str()]);
        assert!(err.contains("required"), "a certificate alone: {err}");
    });
}
