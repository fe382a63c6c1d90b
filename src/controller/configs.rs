//! Dynamic configs: `PATCH /v1/configs/{topic|broker}/{name}` as ConfigRecords.

use crate::contract::configs::ConfigPatch;
use crate::image::ConfigResource;
use crate::image::MetadataImage;
use crate::record::metadata::{ConfigRecord, MetadataRecord, VersionedRecord};

/// Longest config name accepted.
pub const MAX_NAME: usize = 255;
/// Longest value accepted (Kafka's string limit).
pub const MAX_VALUE: usize = 32_767;

/// Why a config change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A config name or value is not acceptable.
    #[error("{0}")]
    InvalidConfig(String),
    /// The topic does not exist.
    #[error("{0}")]
    UnknownTopic(String),
}

/// The resource a path names: `topic/{name}` or `broker/{id}` (`broker/` alone is not
/// routable, so the cluster default is `broker/default`).
pub fn resource(kind: &str, name: &str) -> Result<ConfigResource, ConfigError> {
    match kind {
        "topic" => {
            if name.is_empty() || name.len() > 249 {
                return Err(ConfigError::Invalid(format!(
                    "topic name {name:?} is not valid"
                )));
            }
            Ok(ConfigResource::Topic(name.to_string()))
        }
        "broker" => {
            if name == "default" {
                return Ok(ConfigResource::cluster_default());
            }
            match name.parse::<i32>() {
                Ok(id) if id >= 0 => Ok(ConfigResource::Broker(id.to_string())),
                _ => Err(ConfigError::Invalid(format!(
                    "broker config name {name:?} is neither a broker id nor \"default\""
                ))),
            }
        }
        other => Err(ConfigError::Invalid(format!(
            "config resource type {other:?} is neither \"topic\" nor \"broker\""
        ))),
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NAME
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// A topic resource must name an existing topic (broker resources need no broker).
pub fn require_topic(image: &MetadataImage, res: &ConfigResource) -> Result<(), ConfigError> {
    match res {
        ConfigResource::Topic(t) if image.topic_by_name(t).is_none() => Err(
            ConfigError::UnknownTopic(format!("topic {t:?} does not exist")),
        ),
        _ => Ok(()),
    }
}

/// Values kraftd itself acts on must parse: booleans and positive integers.
fn check_value(k: &str, v: &str) -> Result<(), ConfigError> {
    let boolean = ["unclean.leader.election.enable"];
    let positive = ["min.insync.replicas"];
    if boolean.contains(&k) && v != "true" && v != "false" {
        return Err(ConfigError::InvalidConfig(format!(
            "{k} must be \"true\" or \"false\", got {v:?}"
        )));
    }
    if positive.contains(&k) && v.parse::<u32>().map_or(true, |n| n == 0) {
        return Err(ConfigError::InvalidConfig(format!(
            "{k} must be a positive integer, got {v:?}"
        )));
    }
    Ok(())
}

/// Checks names and values of `patch` (not whether the resource exists).
pub fn check_patch(_res: &ConfigResource, patch: &ConfigPatch) -> Result<(), ConfigError> {
    for (k, v) in &patch.set {
        if !valid_name(k) {
            return Err(ConfigError::InvalidConfig(format!(
                "config name {k:?} is not valid (letters, digits, '.', '_', '-'; 1-{MAX_NAME})"
            )));
        }
        if v.len() > MAX_VALUE {
            return Err(ConfigError::InvalidConfig(format!(
                "value of {k} is {} bytes; the limit is {MAX_VALUE}",
                v.len()
            )));
        }
        check_value(k, v)?;
    }
    for k in &patch.delete {
        if !valid_name(k) {
            return Err(ConfigError::InvalidConfig(format!(
                "config name {k:?} is not valid"
            )));
        }
        if patch.set.contains_key(k) {
            return Err(ConfigError::Invalid(format!("{k} is both set and deleted")));
        }
    }
    Ok(())
}

/// The ConfigRecords for `patch` on `res`, checked against `image`.
pub fn records(
    image: &MetadataImage,
    res: &ConfigResource,
    patch: &ConfigPatch,
) -> Result<Vec<VersionedRecord>, ConfigError> {
    if patch.set.is_empty() && patch.delete.is_empty() {
        return Err(ConfigError::Invalid("nothing to set or delete".into()));
    }
    require_topic(image, res)?;
    check_patch(res, patch)?;
    let sets = patch
        .set
        .iter()
        .map(|(k, v)| record(res, k, Some(v.clone())));
    let deletes = patch.delete.iter().map(|k| record(res, k, None));
    Ok(sets.chain(deletes).collect())
}

fn record(res: &ConfigResource, name: &str, value: Option<String>) -> VersionedRecord {
    VersionedRecord::new(MetadataRecord::Config(ConfigRecord {
        resource_type: res.resource_type(),
        resource_name: res.name().to_string(),
        name: name.to_string(),
        value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_and_topic_paths_name_their_resources() {
        assert_eq!(
            resource("broker", "3").unwrap(),
            ConfigResource::Broker("3".into())
        );
        assert_eq!(
            resource("broker", "default").unwrap(),
            ConfigResource::cluster_default()
        );
        assert!(resource("broker", "x").is_err());
        assert!(resource("broker", "-1").is_err());
        assert!(resource("cluster", "a").is_err());
        assert_eq!(
            resource("topic", "t").unwrap(),
            ConfigResource::Topic("t".into())
        );
    }

    #[test]
    fn patches_become_config_records_and_bad_ones_are_refused() {
        let image = MetadataImage::bootstrap();
        let res = ConfigResource::Broker("1".into());
        let mut p = ConfigPatch::default();
        assert!(records(&image, &res, &p).is_err());
        p.set.insert("log.retention.ms".into(), "1000".into());
        p.delete.push("min.insync.replicas".into());
        let recs = records(&image, &res, &p).unwrap();
        assert_eq!(recs.len(), 2);
        p.delete.push("log.retention.ms".into());
        assert!(records(&image, &res, &p).is_err());
        let mut bad = ConfigPatch::default();
        bad.set.insert("a b".into(), "1".into());
        assert!(matches!(
            records(&image, &res, &bad),
            Err(ConfigError::InvalidConfig(_))
        ));
        let topic = ConfigResource::Topic("missing".into());
        let mut ok = ConfigPatch::default();
        ok.set.insert("retention.ms".into(), "1".into());
        assert!(matches!(
            records(&image, &topic, &ok),
            Err(ConfigError::UnknownTopic(_))
        ));
    }
}
