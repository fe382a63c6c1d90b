//! Every example configuration in deploy/ loads with `kraftd serve --check-config`, with
//! the environment each deployment gives it, and without a warning; the Kubernetes
//! ConfigMap carries exactly deploy/kubernetes/kraftd.toml; the voter lists parse.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `kraftd serve --check-config` with only `env` set; returns (exit code, stdout, stderr).
fn check(config: Option<&Path>, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kraftd"));
    cmd.env_clear().arg("serve").arg("--check-config");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running kraftd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_clean(what: &str, r: (i32, String, String)) -> String {
    let (code, stdout, stderr) = r;
    assert_eq!(code, 0, "{what}: exit {code}\n{stderr}");
    assert!(!stderr.contains("warning"), "{what} warns:\n{stderr}");
    eprintln!("  {what}: ok");
    stdout
}

/// The environment the container image sets, with what its entrypoint exports from the
/// mounted certificates (KRAFTD_TLS_DIR).
const IMAGE_ENV: [(&str, &str); 7] = [
    ("KRAFTD_DATA_DIR", "/var/lib/kraftd"),
    ("KRAFTD_API_ADDR", "0.0.0.0:9093"),
    ("KRAFTD_PEER_ADDR", "0.0.0.0:9094"),
    ("KRAFTD_TLS_CERT_FILE", "/etc/kraftd/tls/controller-1.pem"),
    (
        "KRAFTD_TLS_KEY_FILE",
        "/etc/kraftd/tls/controller-1-key.pem",
    ),
    ("KRAFTD_TLS_CA_FILE", "/etc/kraftd/tls/ca.pem"),
    (
        "KRAFTD_AUTH_PRINCIPALS_FILE",
        "/etc/kraftd/tls/principals.toml",
    ),
];

#[test]
fn a_listener_past_loopback_without_tls_or_authentication_is_refused_naming_the_fix() {
    for (missing, env) in [
        ("TLS", &IMAGE_ENV[..3]),
        ("authentication", &IMAGE_ENV[..6]),
    ] {
        let (code, _, stderr) = check(None, env);
        assert_eq!(code, 2, "without {missing}: {stderr}");
        assert!(stderr.contains("--insecure"), "{stderr}");
        assert!(stderr.contains(&missing.to_string()), "{stderr}");
    }
    let mut env = IMAGE_ENV[..3].to_vec();
    env.push(("KRAFTD_INSECURE", "true"));
    assert_clean("--insecure", check(None, &env));
}

#[test]
fn the_host_example_config_loads_without_warnings() {
    let out = assert_clean(
        "deploy/kraftd.toml",
        check(Some(&repo().join("deploy/kraftd.toml")), &[]),
    );
    assert!(out.contains("data_dir = \"/var/lib/kraftd\""), "{out}");
}

#[test]
fn the_kubernetes_config_loads_alone_and_with_the_pod_environment() {
    let file = repo().join("deploy/kubernetes/kraftd.toml");
    assert_clean("kubernetes kraftd.toml alone", check(Some(&file), &[]));
    let mut env = IMAGE_ENV.to_vec();
    env.push((
        "KRAFTD_ADVERTISED_API_ADDR",
        "kraftd-0.kraftd-peers.kraftd.svc.cluster.local:9093",
    ));
    let out = assert_clean("kubernetes kraftd.toml + pod env", check(Some(&file), &env));
    assert!(out.contains("api_addr = \"0.0.0.0:9093\""), "{out}");
}

#[test]
fn the_configmap_carries_exactly_the_kubernetes_toml_file() {
    let manifest = std::fs::read_to_string(repo().join("deploy/kubernetes/kraftd.yaml")).unwrap();
    let file = std::fs::read_to_string(repo().join("deploy/kubernetes/kraftd.toml")).unwrap();
    let mut lines = manifest.lines().skip_while(|l| *l != "  kraftd.toml: |");
    assert!(
        lines.next().is_some(),
        "no `  kraftd.toml: |` in the ConfigMap"
    );
    let embedded: Vec<&str> = lines
        .take_while(|l| *l != "---")
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect();
    assert_eq!(embedded.join("\n").trim_end(), file.trim_end());
}

#[test]
fn the_compose_environment_loads_without_warnings() {
    let mut env = IMAGE_ENV.to_vec();
    env.push(("KRAFTD_LOG_JSON", "false"));
    env.push(("KRAFTD_ADVERTISED_API_ADDR", "kraftd-1:9093"));
    assert_clean("compose environment", check(None, &env));
}

#[test]
fn a_config_with_an_unknown_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "snapshot_max_byte = 1\n").unwrap();
    let (code, _, stderr) = check(Some(&bad), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("snapshot_max_byte"), "{stderr}");
}

#[test]
fn the_voter_lists_in_deploy_parse() {
    for voters in [
        "1@kraftd-1:9094,2@kraftd-2:9094,3@kraftd-3:9094",
        "1@kraftd-0.kraftd-peers.kraftd.svc.cluster.local:9094,2@kraftd-1.kraftd-peers.kraftd.svc.cluster.local:9094,3@kraftd-2.kraftd-peers.kraftd.svc.cluster.local:9094",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_kraftd"))
            .args(["format", "--cluster-id", "kHQr2KBHQ8KIjQWTXPKCZQ", "--node-id", "1"])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--voters", voters])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{voters}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
