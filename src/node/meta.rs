//! `meta.properties` and `kraftd format`: the identity of a data directory.
//!
//! The file has Kafka's v1 layout (`version`, `cluster.id`, `node.id`, `directory.id`), so an
//! operator reads it as they read a Kafka log directory's. Formatting also writes the
//! bootstrap checkpoint `__cluster_metadata-0/<0>-<0>.checkpoint`: the voter set and
//! metadata.version, the way Kafka's `kafka-storage format --initial-controllers` does.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use kafka_protocol::messages::VotersRecord;
use thiserror::Error;
use uuid::Uuid;

use crate::image::MetadataImage;
use crate::record::checkpoint::{sync_dir, write_checkpoint, CheckpointMeta, SnapshotId};
use crate::record::control::controller_voter;
pub use crate::record::control::CONTROLLER_LISTENER;
use crate::record::uuid_fmt::{kafka_uuid, parse_kafka_uuid};

/// File name of the identity file in the data directory.
pub const META_PROPERTIES: &str = "meta.properties";
/// Directory of the metadata log's checkpoints.
pub const METADATA_DIR: &str = "__cluster_metadata-0";
/// Directory of the Raft log (RocksDB).
pub const RAFT_DIR: &str = "raft";

/// What `meta.properties` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    /// The cluster this directory belongs to (Kafka's base64 UUID form).
    pub cluster_id: String,
    /// This controller's node id.
    pub node_id: u64,
    /// Random per format: a wiped and re-formatted disk gets a new one (KIP-853).
    pub directory_id: Uuid,
}

/// Why a data directory cannot be formatted or used.
#[derive(Debug, Error)]
pub enum MetaError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The directory was formatted before.
    #[error("{0} is already formatted (meta.properties exists); pass --ignore-formatted to keep it as it is")]
    AlreadyFormatted(PathBuf),
    /// The directory has no meta.properties.
    #[error("{0} is not formatted: run `kraftd format --data-dir {0} --cluster-id ID --node-id N --voters ...` (a new cluster's first start) or `... --join` (a replaced disk or a new controller) first")]
    NotFormatted(PathBuf),
    /// meta.properties is malformed.
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
    /// An argument is malformed.
    #[error("{0}")]
    Argument(String),
    /// Writing the bootstrap checkpoint failed.
    #[error("writing the bootstrap checkpoint: {0}")]
    Checkpoint(#[from] crate::record::checkpoint::CheckpointError),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> MetaError + 'a {
    move |source| MetaError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks a cluster id: Kafka's form, 22 characters of URL-safe base64 encoding a UUID.
pub fn validate_cluster_id(id: &str) -> Result<(), MetaError> {
    match parse_kafka_uuid(id) {
        Some(u) if id.len() == 22 && !u.is_nil() => Ok(()),
        _ => Err(MetaError::Argument(format!(
            "cluster id {id:?} is not a Kafka cluster id (22 characters of URL-safe base64, e.g. from `kraftd random-uuid`)"
        ))),
    }
}

/// A new random id in Kafka's form.
pub fn random_id() -> String {
    kafka_uuid(&Uuid::new_v4())
}

impl MetaProperties {
    /// The file's text, in Kafka's key order.
    pub fn to_properties(&self) -> String {
        format!(
            "#\n#Written by kraftd format\nversion=1\ncluster.id={}\nnode.id={}\ndirectory.id={}\n",
            self.cluster_id,
            self.node_id,
            kafka_uuid(&self.directory_id)
        )
    }

    /// Parses the file's text; every key must be present and valid.
    pub fn parse(text: &str, path: &Path) -> Result<Self, MetaError> {
        let invalid = |detail: String| MetaError::Invalid {
            path: path.to_path_buf(),
            detail,
        };
        let mut kv = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| invalid(format!("line {line:?} is not key=value")))?;
            kv.insert(k.trim().to_string(), v.trim().to_string());
        }
        let get = |k: &str| kv.get(k).ok_or_else(|| invalid(format!("missing {k}")));
        if get("version")? != "1" {
            return Err(invalid(format!(
                "version {} (kraftd reads version 1)",
                get("version")?
            )));
        }
        let cluster_id = get("cluster.id")?.clone();
        validate_cluster_id(&cluster_id).map_err(|e| invalid(e.to_string()))?;
        let node_id = get("node.id")?
            .parse()
            .map_err(|e| invalid(format!("node.id: {e}")))?;
        let dir = get("directory.id")?;
        let directory_id = parse_kafka_uuid(dir)
            .ok_or_else(|| invalid(format!("directory.id {dir:?} is not a UUID")))?;
        Ok(MetaProperties {
            cluster_id,
            node_id,
            directory_id,
        })
    }

    /// Reads `<dir>/meta.properties`.
    pub fn read(dir: &Path) -> Result<Self, MetaError> {
        let path = dir.join(META_PROPERTIES);
        match fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(MetaError::NotFormatted(dir.to_path_buf()))
            }
            Err(e) => Err(MetaError::Io {
                op: "read",
                path,
                source: e,
            }),
        }
    }

    /// Writes `<dir>/meta.properties` durably (temp file, fsync, rename, fsync directory).
    pub fn write(&self, dir: &Path) -> Result<(), MetaError> {
        let path = dir.join(META_PROPERTIES);
        let tmp = dir.join(format!("{META_PROPERTIES}.tmp"));
        let mut f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(self.to_properties().as_bytes())
            .map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io("rename", &tmp))?;
        sync_dir(dir)?;
        Ok(())
    }
}

/// One bootstrap voter: `ID@HOST:PORT` (the peer listener), optionally with its directory
/// id as `ID@HOST:PORT:DIRECTORY_ID` (Kafka's `--initial-controllers` form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterSpec {
    /// Node id.
    pub id: u64,
    /// Host of the peer listener.
    pub host: String,
    /// Port of the peer listener.
    pub port: u16,
    /// Directory id, when given.
    pub directory_id: Option<Uuid>,
}

/// Parses `1@127.0.0.1:9094,2@host:9094,...`: ids unique, at least one voter.
pub fn parse_voters(s: &str) -> Result<Vec<VoterSpec>, MetaError> {
    let bad = |part: &str, why: &str| {
        MetaError::Argument(format!("voter {part:?}: {why} (expected ID@HOST:PORT)"))
    };
    let mut out: Vec<VoterSpec> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, mut addr) = part.split_once('@').ok_or_else(|| bad(part, "no '@'"))?;
        let id: u64 = id.parse().map_err(|_| bad(part, "id is not a number"))?;
        let mut directory_id = None;
        if let Some((rest, last)) = addr.rsplit_once(':') {
            if last.len() == 22 && last.parse::<u16>().is_err() {
                let dir = crate::record::uuid_fmt::parse_kafka_uuid(last)
                    .filter(|u| !u.is_nil())
                    .ok_or_else(|| bad(part, "directory id is not a Kafka UUID"))?;
                directory_id = Some(dir);
                addr = rest;
            }
        }
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad(part, "no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| bad(part, "port is not a number 0-65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(bad(part, "empty host or port 0"));
        }
        if out.iter().any(|v| v.id == id) {
            return Err(bad(part, "id appears twice"));
        }
        out.push(VoterSpec {
            id,
            host: host.to_string(),
            port,
            directory_id,
        });
    }
    if out.is_empty() {
        return Err(MetaError::Argument("--voters names no voter".into()));
    }
    let with_ids = out.iter().filter(|v| v.directory_id.is_some()).count();
    if with_ids != 0 && with_ids != out.len() {
        return Err(MetaError::Argument(
            "--voters gives directory ids for some voters only: give one for every voter or for none"
                .into(),
        ));
    }
    Ok(out)
}

/// The bootstrap VotersRecord. Directory ids of the other voters are not known at format
/// time and are written as the nil UUID ("not yet known"); this node's is its own.
pub fn bootstrap_voters(voters: &[VoterSpec], me: &MetaProperties) -> VotersRecord {
    let voters = voters
        .iter()
        .map(|v| {
            let dir = match v.directory_id {
                Some(d) => d,
                None if v.id == me.node_id => me.directory_id,
                None => Uuid::nil(),
            };
            controller_voter(v.id, dir, &v.host, v.port)
        })
        .collect();
    VotersRecord::default().with_voters(voters)
}

/// What `kraftd format` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formatted {
    /// The directory was formatted now.
    New(MetaProperties),
    /// It was formatted before and left as it was (`--ignore-formatted`).
    Kept(MetaProperties),
}

/// How a directory is formatted: for a new cluster's first start, or to join one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatMode {
    /// `--voters`: the initial controllers of a NEW cluster (Kafka's
    /// `--initial-controllers`). Written into the bootstrap checkpoint; used once, for the
    /// first election, and only when no reachable voter already holds history.
    Bootstrap(Vec<VoterSpec>),
    /// `--join`: a replaced disk or a new controller of an existing cluster. A fresh
    /// directory id, no bootstrap voters: the node starts as an observer with an empty log
    /// and becomes a voter only when the leader adds it (KIP-853's
    /// `--no-initial-controllers`).
    Join,
}

/// Formats a data directory for a new cluster's first start: `meta.properties`, the
/// `raft/` and checkpoint directories, and the bootstrap checkpoint holding the voters and
/// metadata.version. See [`format_mode`].
pub fn format(
    data_dir: &Path,
    cluster_id: &str,
    node_id: u64,
    voters: &[VoterSpec],
    ignore_formatted: bool,
) -> Result<Formatted, MetaError> {
    format_mode(
        data_dir,
        cluster_id,
        node_id,
        &FormatMode::Bootstrap(voters.to_vec()),
        ignore_formatted,
    )
}

/// Formats a data directory in either mode. The directory id is always new, except that a
/// `--voters` entry for this node that carries a directory id gives it (Kafka's
/// `--initial-controllers`): that identity is for the cluster's first bootstrap only, and a
/// node that finds history on its peers at start refuses to use it (see
/// `node::bootstrap`'s gate).
pub fn format_mode(
    data_dir: &Path,
    cluster_id: &str,
    node_id: u64,
    mode: &FormatMode,
    ignore_formatted: bool,
) -> Result<Formatted, MetaError> {
    validate_cluster_id(cluster_id)?;
    if node_id > i32::MAX as u64 {
        return Err(MetaError::Argument(format!(
            "node id {node_id} is larger than Kafka's int32 ids allow"
        )));
    }
    let voters: &[VoterSpec] = match mode {
        FormatMode::Bootstrap(v) => v,
        FormatMode::Join => &[],
    };
    if let Some(v) = voters.iter().find(|v| v.id > i32::MAX as u64) {
        return Err(MetaError::Argument(format!(
            "voter id {} is larger than Kafka's int32 ids allow",
            v.id
        )));
    }
    match MetaProperties::read(data_dir) {
        // Kept only when it is the directory asked for: another cluster's or another
        // node's disk would otherwise start under the wrong identity.
        Ok(existing)
            if ignore_formatted
                && (existing.cluster_id != cluster_id || existing.node_id != node_id) =>
        {
            return Err(MetaError::Argument(format!(
                "{} is already formatted for cluster {} as node {}, not cluster {cluster_id} \
                 as node {node_id}; --ignore-formatted keeps only a directory formatted with \
                 the same cluster and node id (to re-use the disk, empty it first)",
                data_dir.display(),
                existing.cluster_id,
                existing.node_id
            )));
        }
        Ok(existing) if ignore_formatted => return Ok(Formatted::Kept(existing)),
        Ok(_) => return Err(MetaError::AlreadyFormatted(data_dir.to_path_buf())),
        Err(MetaError::NotFormatted(_)) => {}
        Err(e) => return Err(e),
    }
    // A node outside the bootstrap voters is allowed: it joins later as a learner.
    fs::create_dir_all(data_dir).map_err(io("create directory", data_dir))?;
    let meta = MetaProperties {
        cluster_id: cluster_id.to_string(),
        node_id,
        directory_id: voters
            .iter()
            .find(|v| v.id == node_id)
            .and_then(|v| v.directory_id)
            .unwrap_or_else(Uuid::new_v4),
    };
    let metadata_dir = data_dir.join(METADATA_DIR);
    fs::create_dir_all(data_dir.join(RAFT_DIR)).map_err(io("create directory", data_dir))?;
    let checkpoint_meta = CheckpointMeta {
        last_contained_log_timestamp: 0,
        header_tags: BTreeMap::new(),
        voters: match mode {
            FormatMode::Bootstrap(v) => Some(bootstrap_voters(v, &meta)),
            FormatMode::Join => None,
        },
    };
    let bootstrap = MetadataImage::bootstrap();
    write_checkpoint(
        &metadata_dir,
        SnapshotId {
            end_offset: 0,
            epoch: 0,
        },
        &checkpoint_meta,
        bootstrap.records(),
    )?;
    // meta.properties last: a directory that has it is completely formatted.
    meta.write(data_dir)?;
    Ok(Formatted::New(meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> String {
        random_id()
    }

    #[test]
    fn voters_may_carry_directory_ids_for_all_or_none() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let k = crate::record::uuid_fmt::kafka_uuid;
        let v = parse_voters(&format!(
            "1@127.0.0.1:9094:{},2@[::1]:9194:{}",
            k(&a),
            k(&b)
        ))
        .unwrap();
        assert_eq!(v[0].directory_id, Some(a));
        assert_eq!(
            (v[1].host.as_str(), v[1].port, v[1].directory_id),
            ("::1", 9194, Some(b))
        );
        assert!(
            parse_voters(&format!("1@h:1:{},2@h:2", k(&a))).is_err(),
            "some only"
        );
        assert!(
            parse_voters("1@h:1:AAAAAAAAAAAAAAAAAAAAAA").is_err(),
            "nil id"
        );
        assert!(
            parse_voters("1@h:1:not-a-uuid-at-all-xx").is_err(),
            "bad id"
        );

        let dir = tempfile::tempdir().unwrap();
        let f = format(dir.path(), &cluster(), 2, &v, false).unwrap();
        let Formatted::New(m) = f else {
            panic!("not formatted")
        };
        assert_eq!(
            m.directory_id, b,
            "this node's directory id is the one given"
        );
    }

    #[test]
    fn meta_properties_round_trip_in_kafka_layout() {
        let m = MetaProperties {
            cluster_id: cluster(),
            node_id: 3,
            directory_id: Uuid::new_v4(),
        };
        let text = m.to_properties();
        assert!(
            text.contains("version=1\n") && text.contains("node.id=3\n"),
            "{text}"
        );
        assert_eq!(MetaProperties::parse(&text, Path::new("x")).unwrap(), m);
    }

    #[test]
    fn malformed_meta_properties_are_refused_with_the_reason() {
        let p = Path::new("meta.properties");
        let good = MetaProperties {
            cluster_id: cluster(),
            node_id: 1,
            directory_id: Uuid::new_v4(),
        }
        .to_properties();
        for (bad, why) in [
            (good.replace("version=1", "version=0"), "version"),
            (good.replace("node.id=1", "node.id=x"), "node.id"),
            (
                good.lines()
                    .filter(|l| !l.starts_with("cluster.id"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                "missing cluster.id",
            ),
            (
                good.replace("directory.id=", "directory.id=zz"),
                "directory.id",
            ),
            (format!("{good}garbage line\n"), "not key=value"),
        ] {
            let err = MetaProperties::parse(&bad, p).unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn voters_parse_and_bad_voters_are_refused() {
        let v = parse_voters("1@127.0.0.1:9094, 2@localhost:9095,3@[::1]:9096").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[2],
            VoterSpec {
                id: 3,
                host: "::1".into(),
                port: 9096,
                directory_id: None,
            }
        );
        for bad in [
            "",
            "1@h",
            "x@h:1",
            "1@h:99999",
            "1@:9094",
            "1@h:1,1@h:2",
            "1h:1",
        ] {
            assert!(parse_voters(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn format_writes_identity_and_bootstrap_checkpoint_and_refuses_a_second_time() {
        let dir = tempfile::tempdir().unwrap();
        let voters = parse_voters("1@127.0.0.1:9094,2@127.0.0.1:9194").unwrap();
        let id = cluster();
        let Formatted::New(meta) = format(dir.path(), &id, 1, &voters, false).unwrap() else {
            panic!()
        };
        assert_eq!(MetaProperties::read(dir.path()).unwrap(), meta);
        assert!(dir.path().join(RAFT_DIR).is_dir());
        let boot = dir.path().join(METADATA_DIR).join(
            SnapshotId {
                end_offset: 0,
                epoch: 0,
            }
            .file_name(),
        );
        let (image, summary) = crate::image::load_checkpoint_file(&boot).unwrap();
        assert_eq!(image, MetadataImage::bootstrap());
        let vr = summary.meta.voters.unwrap();
        assert_eq!(vr.voters.len(), 2);
        assert_eq!(vr.voters[0].voter_directory_id, meta.directory_id);
        assert!(vr.voters[1].voter_directory_id.is_nil());

        let err = format(dir.path(), &id, 1, &voters, false).unwrap_err();
        assert!(matches!(err, MetaError::AlreadyFormatted(_)), "{err}");
        assert_eq!(
            format(dir.path(), &id, 1, &voters, true).unwrap(),
            Formatted::Kept(meta)
        );
    }

    #[test]
    fn format_refuses_bad_cluster_ids_and_unformatted_dirs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let voters = parse_voters("1@127.0.0.1:9094").unwrap();
        assert!(format(dir.path(), "not-a-cluster-id", 1, &voters, false).is_err());
        assert!(
            format(dir.path(), "AAAAAAAAAAAAAAAAAAAAAA", 1, &voters, false).is_err(),
            "nil uuid"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "a refused format writes nothing"
        );
        let err = MetaProperties::read(dir.path()).unwrap_err();
        assert!(err.to_string().contains("is not formatted"), "{err}");
    }

    #[test]
    fn join_mode_gets_a_fresh_directory_id_and_writes_no_bootstrap_voters() {
        let id = cluster();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let dir = tempfile::tempdir().unwrap();
            let Formatted::New(meta) =
                format_mode(dir.path(), &id, 2, &FormatMode::Join, false).unwrap()
            else {
                panic!("not formatted")
            };
            assert_eq!(MetaProperties::read(dir.path()).unwrap(), meta);
            assert!(!meta.directory_id.is_nil());
            let boot = dir.path().join(METADATA_DIR).join(
                SnapshotId {
                    end_offset: 0,
                    epoch: 0,
                }
                .file_name(),
            );
            let (image, summary) = crate::image::load_checkpoint_file(&boot).unwrap();
            assert_eq!(image, MetadataImage::bootstrap());
            assert!(
                summary.meta.voters.is_none(),
                "a joining node holds no bootstrap membership: {:?}",
                summary.meta.voters
            );
            seen.push(meta.directory_id);
        }
        assert_ne!(
            seen[0], seen[1],
            "every --join format draws a new directory id"
        );
    }

    #[test]
    fn formatting_a_wiped_directory_again_with_the_same_voters_draws_a_new_directory_id() {
        let voters = parse_voters("1@127.0.0.1:9094,2@127.0.0.1:9194").unwrap();
        let id = cluster();
        let dir = tempfile::tempdir().unwrap();
        let Formatted::New(first) = format(dir.path(), &id, 1, &voters, false).unwrap() else {
            panic!()
        };
        std::fs::remove_dir_all(dir.path()).unwrap();
        let Formatted::New(again) = format(dir.path(), &id, 1, &voters, false).unwrap() else {
            panic!()
        };
        assert_ne!(first.directory_id, again.directory_id);
    }
}
