//! Settings of `kraftd serve`: defaults, then a TOML file, then `KRAFTD_*` environment
//! variables, then command-line flags; each layer overrides the one before.
//!
//! Every setting has one name: `snapshot_max_bytes` in the file, `KRAFTD_SNAPSHOT_MAX_BYTES`
//! in the environment, `--snapshot-max-bytes` on the command line. Unknown keys in the file
//! are refused, so a typo never silently keeps a default; an unknown `KRAFTD_*` variable is
//! reported as a warning (as etcd does), since environments carry unrelated variables.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Environment variable prefix of every setting.
pub const ENV_PREFIX: &str = "KRAFTD_";

/// Everything `kraftd serve` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Data directory (meta.properties, raft/, __cluster_metadata-0/).
    pub data_dir: PathBuf,
    /// API listener for brokers and operators.
    pub api_addr: String,
    /// Peer listener for Raft RPCs between controllers.
    pub peer_addr: String,
    /// The API address other controllers and clients are told (HOST:PORT, a host name is
    /// fine); empty = the address the API listener is bound to. Needed when binding
    /// 0.0.0.0 (containers): followers forward writes to the leader's advertised address.
    pub advertised_api_addr: String,
    /// Take a snapshot once this many bytes of log were applied since the last one.
    pub snapshot_max_bytes: u64,
    /// ... or once this long has passed with new records since the last one.
    pub snapshot_interval_ms: u64,
    /// Checkpoint files kept (the newest ones).
    pub snapshots_to_keep: usize,
    /// Largest checkpoint this node accepts from the leader; a larger transfer is refused
    /// and its partial file removed.
    pub max_snapshot_bytes: u64,
    /// Log entries kept below the newest snapshot, so short-lagging followers catch up
    /// from the log rather than by a snapshot transfer.
    pub log_tail_entries: u64,
    /// Raft heartbeat interval (also openraft's AppendEntries timeout).
    pub heartbeat_interval_ms: u64,
    /// Raft election timeout, lower bound. A follower stands for election after the
    /// leader lease (openraft: the upper bound) plus a random timeout between the bounds
    /// without hearing from the leader, so failover takes about 0.9-1.2 s by default.
    pub election_timeout_min_ms: u64,
    /// Raft election timeout, upper bound.
    pub election_timeout_max_ms: u64,
    /// Brokers are fenced after this long without a heartbeat (broker.session.timeout.ms).
    pub broker_session_timeout_ms: u64,
    /// The active controller appends a NoOpRecord after this long without a write.
    pub noop_interval_ms: u64,
    /// Log lines as JSON instead of text.
    pub log_json: bool,
    /// The API's principals file (roles and SHA-256 token hashes; README, "Security").
    /// Empty: no authentication on the API listener.
    pub auth_principals_file: String,
    /// This node's certificate chain (PEM). With `tls_key_file` and `tls_ca_file`: TLS on
    /// both listeners, mutual TLS on the peer listener. Empty: plaintext.
    pub tls_cert_file: String,
    /// The private key of `tls_cert_file` (PEM).
    pub tls_key_file: String,
    /// The cluster's CA (PEM): peers and client certificates must chain to it.
    pub tls_ca_file: String,
    /// Serve on addresses other than loopback without TLS or without authentication.
    pub insecure: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("kraftd-data"),
            api_addr: "127.0.0.1:9093".into(),
            peer_addr: "127.0.0.1:9094".into(),
            advertised_api_addr: String::new(),
            snapshot_max_bytes: 20 * 1024 * 1024,
            snapshot_interval_ms: 3_600_000,
            snapshots_to_keep: 3,
            max_snapshot_bytes: 2 * 1024 * 1024 * 1024,
            log_tail_entries: 1_000,
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            broker_session_timeout_ms: 9_000,
            noop_interval_ms: 500,
            log_json: false,
            auth_principals_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_ca_file: String::new(),
            insecure: false,
        }
    }
}

/// Why the settings could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A layer holds an unknown key or a value of the wrong type.
    #[error("{source_name}: {detail}")]
    Invalid { source_name: String, detail: String },
}

impl Config {
    /// Loads defaults <- `file` <- environment (`vars`) <- `overrides` (from flags, as
    /// `setting -> value` strings), then checks the result. Also returns warnings to log.
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let mut table =
            toml::Table::try_from(Config::default()).map_err(|e| invalid("defaults", e))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let from_file: toml::Table =
                toml::from_str(&text).map_err(|e| invalid(&path.display().to_string(), e))?;
            merge(&mut table, from_file, &path.display().to_string())?;
        }
        let mut env = toml::Table::new();
        for (k, v) in vars {
            let Some(name) = k.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = name.to_ascii_lowercase();
            if !table.contains_key(&key) {
                warnings.push(format!(
                    "ignoring environment variable {k}: kraftd has no setting {key:?}"
                ));
                continue;
            }
            env.insert(
                key.clone(),
                typed_like(&table, &key, &v, &format!("environment variable {k}"))?,
            );
        }
        merge(&mut table, env, "environment")?;
        let mut flags = toml::Table::new();
        for (k, v) in overrides {
            flags.insert(
                k.clone(),
                typed_like(&table, k, v, &format!("--{}", k.replace('_', "-")))?,
            );
        }
        merge(&mut table, flags, "command line")?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e| invalid("settings", e))?;
        config.check()?;
        Ok((config, warnings))
    }

    /// Cross-field checks.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |detail: String| {
            Err(ConfigError::Invalid {
                source_name: "settings".into(),
                detail,
            })
        };
        if self.election_timeout_min_ms >= self.election_timeout_max_ms {
            return bad(format!(
                "election_timeout_min_ms ({}) must be below election_timeout_max_ms ({})",
                self.election_timeout_min_ms, self.election_timeout_max_ms
            ));
        }
        if self.heartbeat_interval_ms == 0
            || self.heartbeat_interval_ms * 3 > self.election_timeout_min_ms
        {
            return bad(format!(
                "heartbeat_interval_ms ({}) must be positive and at most a third of election_timeout_min_ms ({})",
                self.heartbeat_interval_ms, self.election_timeout_min_ms
            ));
        }
        if self.snapshots_to_keep == 0 {
            return bad("snapshots_to_keep must be at least 1".into());
        }
        if self.max_snapshot_bytes == 0 {
            return bad("max_snapshot_bytes must be positive".into());
        }
        for (name, addr) in [("api_addr", &self.api_addr), ("peer_addr", &self.peer_addr)] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return bad(format!(
                    "{name} {addr:?} is not HOST:PORT with an IP address"
                ));
            }
        }
        if !self.advertised_api_addr.is_empty() {
            let port = self
                .advertised_api_addr
                .rsplit_once(':')
                .and_then(|(host, port)| (!host.is_empty()).then_some(port))
                .and_then(|p| p.parse::<u16>().ok());
            if port.is_none_or(|p| p == 0) {
                return bad(format!(
                    "advertised_api_addr {:?} is not HOST:PORT",
                    self.advertised_api_addr
                ));
            }
        }
        if self.api_addr == self.peer_addr {
            return bad("api_addr and peer_addr must differ".into());
        }
        let tls = [&self.tls_cert_file, &self.tls_key_file, &self.tls_ca_file];
        if tls.iter().any(|f| f.is_empty()) && tls.iter().any(|f| !f.is_empty()) {
            return bad(
                "tls_cert_file, tls_key_file and tls_ca_file go together: set all three (TLS) \
                 or none (plaintext)"
                    .into(),
            );
        }
        let exposed: Vec<&str> = [&self.api_addr, &self.peer_addr]
            .into_iter()
            .filter(|a| {
                a.parse::<std::net::SocketAddr>()
                    .is_ok_and(|s| !s.ip().is_loopback())
            })
            .map(String::as_str)
            .collect();
        if !exposed.is_empty() && !self.insecure {
            let mut missing = Vec::new();
            if self.tls().is_none() {
                missing.push("TLS (tls_cert_file, tls_key_file, tls_ca_file)");
            }
            if self.auth_principals_file.is_empty() {
                missing.push("authentication (auth_principals_file)");
            }
            if !missing.is_empty() {
                return bad(format!(
                    "{} is not a loopback address and the node has no {}: anyone who can \
                     reach it could write to the cluster. Set those (`kraftd certs` makes a \
                     development set), or pass --insecure (insecure = true) to serve anyway",
                    exposed.join(" and "),
                    missing.join(" and no ")
                ));
            }
        }
        Ok(())
    }

    /// The TLS files, when TLS is on.
    pub fn tls(&self) -> Option<crate::tls::TlsFiles> {
        if self.tls_cert_file.is_empty() {
            return None;
        }
        Some(crate::tls::TlsFiles {
            cert: PathBuf::from(&self.tls_cert_file),
            key: PathBuf::from(&self.tls_key_file),
            ca: PathBuf::from(&self.tls_ca_file),
        })
    }

    /// `https` with TLS, else `http`: the scheme of every URL of this node's listeners.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert_file.is_empty() {
            "http"
        } else {
            "https"
        }
    }
}

fn invalid(source_name: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        source_name: source_name.to_string(),
        detail: e.to_string(),
    }
}

/// Overlays `layer` onto `base`; every key must be a known setting.
fn merge(base: &mut toml::Table, layer: toml::Table, source_name: &str) -> Result<(), ConfigError> {
    for (k, v) in layer {
        if !base.contains_key(&k) {
            return Err(invalid(source_name, format!("unknown setting {k:?}")));
        }
        base.insert(k, v);
    }
    Ok(())
}

/// Parses a string (from the environment or a flag) as the type the setting has.
fn typed_like(
    base: &toml::Table,
    key: &str,
    raw: &str,
    source_name: &str,
) -> Result<toml::Value, ConfigError> {
    let Some(current) = base.get(key) else {
        return Err(invalid(source_name, format!("unknown setting {key:?}")));
    };
    let wrong = |what: &str| invalid(source_name, format!("{key} = {raw:?} is not {what}"));
    Ok(match current {
        toml::Value::Integer(_) => {
            toml::Value::Integer(raw.trim().parse().map_err(|_| wrong("an integer"))?)
        }
        toml::Value::Boolean(_) => {
            toml::Value::Boolean(raw.trim().parse().map_err(|_| wrong("true or false"))?)
        }
        _ => toml::Value::String(raw.to_string()),
    })
}

/// openraft's settings from ours. Snapshots are triggered by kraftd itself (bytes or time
/// since the last one), so openraft's own policy is `Never`.
pub fn openraft_config(c: &Config) -> Result<openraft::Config, openraft::ConfigError> {
    openraft::Config {
        cluster_name: "kraftd".into(),
        heartbeat_interval: c.heartbeat_interval_ms,
        election_timeout_min: c.election_timeout_min_ms,
        election_timeout_max: c.election_timeout_max_ms,
        install_snapshot_timeout: 10_000,
        snapshot_max_chunk_size: 1 << 20,
        max_payload_entries: 300,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: c.log_tail_entries,
        replication_lag_threshold: 1_000,
        purge_batch_size: 1,
        // KIP-996: a node that cannot reach a quorum asks first and never raises its term,
        // so a healed follower cannot depose a healthy leader.
        enable_pre_vote: Some(true),
        // A restarted leader is elected again like any node: the write pipeline builds
        // its view only after its own term's first entry is applied.
        enable_leader_restore: Some(false),
        ..Default::default()
    }
    .validate()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_kafka_like() {
        let (c, warnings) = Config::load(None, env(&[]), &BTreeMap::new()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(c, Config::default());
        assert_eq!(c.snapshot_max_bytes, 20 * 1024 * 1024);
        assert_eq!(c.snapshot_interval_ms, 3_600_000);
        assert_eq!(c.broker_session_timeout_ms, 9_000);
    }

    #[test]
    fn file_then_environment_then_flags_override_in_that_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kraftd.toml");
        std::fs::write(
            &file,
            "snapshot_max_bytes = 1000\nlog_tail_entries = 7\napi_addr = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let vars = env(&[
            ("KRAFTD_LOG_TAIL_ENTRIES", "8"),
            ("KRAFTD_LOG_JSON", "true"),
            ("PATH", "/bin"),
        ]);
        let flags = BTreeMap::from([("api_addr".to_string(), "127.0.0.1:2".to_string())]);
        let (c, _) = Config::load(Some(&file), vars, &flags).unwrap();
        assert_eq!(c.snapshot_max_bytes, 1000, "from the file");
        assert_eq!(c.log_tail_entries, 8, "environment beats file");
        assert!(c.log_json);
        assert_eq!(c.api_addr, "127.0.0.1:2", "flag beats file");
    }

    #[test]
    fn unknown_file_keys_and_mistyped_values_are_refused_unknown_env_vars_warned() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kraftd.toml");
        std::fs::write(&file, "snapshot_max_byte = 1\n").unwrap();
        let err = Config::load(Some(&file), env(&[]), &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("snapshot_max_byte"), "{err}");
        let err = Config::load(
            None,
            env(&[("KRAFTD_SNAPSHOT_MAX_BYTES", "lots")]),
            &BTreeMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("KRAFTD_SNAPSHOT_MAX_BYTES") && err.contains("integer"),
            "{err}"
        );
        let (_, warnings) =
            Config::load(None, env(&[("KRAFTD_NO_SUCH", "1")]), &BTreeMap::new()).unwrap();
        assert!(warnings[0].contains("KRAFTD_NO_SUCH"), "{warnings:?}");
    }

    #[test]
    fn inconsistent_timeouts_and_addresses_are_refused() {
        let load = |pairs: &[(&str, &str)]| Config::load(None, env(pairs), &BTreeMap::new());
        assert!(load(&[("KRAFTD_ELECTION_TIMEOUT_MIN_MS", "3000")]).is_err());
        assert!(load(&[("KRAFTD_HEARTBEAT_INTERVAL_MS", "900")]).is_err());
        assert!(load(&[("KRAFTD_API_ADDR", "localhost")]).is_err());
        assert!(load(&[("KRAFTD_PEER_ADDR", "127.0.0.1:9093")]).is_err());
    }
}
