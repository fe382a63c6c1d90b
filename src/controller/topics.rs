//! Topics: create (with rack-aware placement or explicit assignments), delete, add
//! partitions, and the JSON a describe answers with.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::configs::{self, ConfigError};
use super::partitions::{self, UNCLEAN};
use super::placement::{self, Candidate};
use super::{ControllerError, View};
use crate::contract::configs::ConfigPatch;
use crate::contract::topics::{
    CreateTopic, CreatedTopic, PartitionView, TopicDescription, TopicSummary,
};
use crate::contract::ErrorCode;
use crate::image::{ConfigResource, MetadataImage, Topic};
use crate::record::metadata::{
    ConfigRecord, MetadataRecord, PartitionRecord, RemoveTopicRecord, TopicRecord,
};
use crate::record::uuid_fmt;

/// Longest topic name (Kafka's limit).
pub const MAX_TOPIC_NAME: usize = 249;
/// Most partitions one request may create. A request larger than one batch is written as
/// a metadata transaction (KIP-868), so this bounds the work of one request, not a batch.
pub const MAX_NEW_PARTITIONS: usize = 50_000;
/// Most replicas per partition.
pub const MAX_REPLICATION_FACTOR: usize = 64;

/// Describes a topic.
pub fn describe(image: &MetadataImage, t: &Topic) -> TopicDescription {
    TopicDescription {
        name: t.name().to_string(),
        topic_id: uuid_fmt::kafka_uuid(&t.id()),
        configs: image
            .config(&ConfigResource::Topic(t.name().to_string()))
            .cloned()
            .unwrap_or_default(),
        partitions: t.partitions().iter().map(PartitionView::of).collect(),
    }
}

/// Summarizes a topic.
pub fn summary(t: &Topic) -> TopicSummary {
    TopicSummary {
        name: t.name().to_string(),
        topic_id: uuid_fmt::kafka_uuid(&t.id()),
        partitions: t.partition_count(),
        replication_factor: t.partitions().first().map_or(0, |p| p.replicas().len()),
        offline_partitions: t.partitions().iter().filter(|p| !p.has_leader()).count(),
        under_replicated_partitions: t
            .partitions()
            .iter()
            .filter(|p| p.isr().len() < p.replicas().len())
            .count(),
    }
}

/// Kafka's topic name rules: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_name(name: &str) -> Result<(), ControllerError> {
    if name.is_empty() || name.len() > MAX_TOPIC_NAME {
        return Err(ControllerError::refused(
            ErrorCode::InvalidTopicException,
            format!(
                "topic name must be 1-{MAX_TOPIC_NAME} characters, got {}",
                name.len()
            ),
        ));
    }
    if name == "." || name == ".." {
        return Err(ControllerError::refused(
            ErrorCode::InvalidTopicException,
            format!("topic name cannot be {name:?}"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ControllerError::refused(
            ErrorCode::InvalidTopicException,
            format!("topic name {name:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"),
        ));
    }
    Ok(())
}

/// Kafka refuses topics whose names differ only in '.' versus '_' (their metric names
/// collide).
fn collision(image: &MetadataImage, name: &str) -> Option<String> {
    if !name.contains(['.', '_']) {
        return None;
    }
    let norm = name.replace('.', "_");
    image
        .topics()
        .map(|t| t.name())
        .find(|other| *other != name && other.replace('.', "_") == norm)
        .map(str::to_string)
}

fn config_error(e: ConfigError) -> ControllerError {
    match e {
        ConfigError::Invalid(m) => ControllerError::refused(ErrorCode::InvalidRequest, m),
        ConfigError::InvalidConfig(m) => ControllerError::refused(ErrorCode::InvalidConfig, m),
        ConfigError::UnknownTopic(m) => {
            ControllerError::refused(ErrorCode::UnknownTopicOrPartition, m)
        }
    }
}

/// Brokers that can take new replicas (registered, not in controlled shutdown).
fn candidates(image: &MetadataImage) -> Vec<Candidate> {
    image
        .brokers()
        .filter(|b| !b.in_controlled_shutdown)
        .map(|b| Candidate {
            id: b.broker_id,
            rack: b.rack.clone(),
            fenced: b.fenced,
        })
        .collect()
}

fn check_assignments(
    image: &MetadataImage,
    assignments: &[Vec<i32>],
) -> Result<(), ControllerError> {
    let rf = assignments.first().map_or(0, Vec::len);
    for (i, r) in assignments.iter().enumerate() {
        if r.is_empty() {
            return Err(ControllerError::refused(
                ErrorCode::InvalidReplicaAssignment,
                format!("partition {i} has no replicas"),
            ));
        }
        if r.len() != rf {
            return Err(ControllerError::refused(
                ErrorCode::InvalidReplicaAssignment,
                format!(
                    "partition {i} has {} replicas but partition 0 has {rf}; all must have the same number",
                    r.len()
                ),
            ));
        }
        if r.len() > MAX_REPLICATION_FACTOR {
            return Err(ControllerError::refused(
                ErrorCode::InvalidReplicationFactor,
                format!("at most {MAX_REPLICATION_FACTOR} replicas per partition"),
            ));
        }
        for (j, b) in r.iter().enumerate() {
            if r[..j].contains(b) {
                return Err(ControllerError::refused(
                    ErrorCode::InvalidReplicaAssignment,
                    format!("partition {i} lists broker {b} twice"),
                ));
            }
            if image.broker(*b).is_none() {
                return Err(ControllerError::refused(
                    ErrorCode::InvalidReplicaAssignment,
                    format!("partition {i} names broker {b}, which is not registered"),
                ));
            }
        }
    }
    Ok(())
}

/// A new partition record: the ISR is the replicas that may be in it, the leader the first.
fn new_partition(
    image: &MetadataImage,
    topic_id: Uuid,
    id: i32,
    replicas: Vec<i32>,
) -> Result<PartitionRecord, ControllerError> {
    let isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|&b| partitions::eligible(image, b))
        .collect();
    let Some(&leader) = isr.first() else {
        return Err(ControllerError::refused(
            ErrorCode::InvalidReplicationFactor,
            format!("partition {id}: none of the replicas {replicas:?} is unfenced"),
        ));
    };
    Ok(PartitionRecord {
        partition_id: id,
        topic_id,
        replicas,
        isr,
        removing_replicas: Vec::new(),
        adding_replicas: Vec::new(),
        leader,
        leader_recovery_state: 0,
        leader_epoch: 0,
        partition_epoch: 0,
        directories: Vec::new(),
        eligible_leader_replicas: None,
        last_known_elr: None,
    })
}

/// Replica lists for `count` new partitions from `first`.
fn assign(
    view: &View,
    first: usize,
    count: usize,
    rf: usize,
) -> Result<Vec<Vec<i32>>, ControllerError> {
    placement::place(
        &candidates(view.image()),
        first as u32,
        count as u32,
        rf,
        view.random,
    )
    .map_err(|e| ControllerError::refused(ErrorCode::InvalidReplicationFactor, e.to_string()))
}

fn check_configs(cfg: &BTreeMap<String, String>) -> Result<(), ControllerError> {
    let patch = ConfigPatch {
        set: cfg.clone(),
        delete: Vec::new(),
    };
    configs::check_patch(&ConfigResource::Topic(String::new()), &patch).map_err(config_error)
}

/// Creates a topic.
pub fn create(view: &mut View, req: &CreateTopic) -> Result<CreatedTopic, ControllerError> {
    check_name(&req.name)?;
    if view.image().topic_by_name(&req.name).is_some() {
        return Err(ControllerError::refused(
            ErrorCode::TopicAlreadyExists,
            format!("topic {:?} already exists", req.name),
        ));
    }
    if let Some(other) = collision(view.image(), &req.name) {
        return Err(ControllerError::refused(
            ErrorCode::InvalidTopicException,
            format!(
                "topic {:?} collides with existing topic {other:?} ('.' and '_' are treated alike)",
                req.name
            ),
        ));
    }
    check_configs(&req.configs)?;
    let replicas = match &req.assignments {
        Some(a) => {
            if a.is_empty() {
                return Err(ControllerError::refused(
                    ErrorCode::InvalidPartitions,
                    "assignments is empty",
                ));
            }
            if let Some(n) = req.partitions.filter(|&n| n != a.len() as i32 && n != -1) {
                return Err(ControllerError::refused(
                    ErrorCode::InvalidPartitions,
                    format!("partitions is {n} but {} assignments are given", a.len()),
                ));
            }
            if let Some(rf) = req
                .replication_factor
                .filter(|&rf| rf != -1 && a.first().is_some_and(|r| r.len() as i32 != rf))
            {
                return Err(ControllerError::refused(
                    ErrorCode::InvalidReplicationFactor,
                    format!("replication_factor is {rf} but the assignments differ"),
                ));
            }
            if a.len() > MAX_NEW_PARTITIONS {
                return Err(ControllerError::refused(
                    ErrorCode::InvalidPartitions,
                    format!("at most {MAX_NEW_PARTITIONS} partitions per request"),
                ));
            }
            check_assignments(view.image(), a)?;
            a.clone()
        }
        None => {
            let n = req.partitions.ok_or_else(|| {
                ControllerError::refused(
                    ErrorCode::InvalidPartitions,
                    "partitions is required without assignments",
                )
            })?;
            if n < 1 || n as usize > MAX_NEW_PARTITIONS {
                return Err(ControllerError::refused(
                    ErrorCode::InvalidPartitions,
                    format!("partitions must be 1-{MAX_NEW_PARTITIONS}, got {n}"),
                ));
            }
            let rf = req.replication_factor.ok_or_else(|| {
                ControllerError::refused(
                    ErrorCode::InvalidReplicationFactor,
                    "replication_factor is required without assignments",
                )
            })?;
            if rf < 1 || rf as usize > MAX_REPLICATION_FACTOR {
                return Err(ControllerError::refused(
                    ErrorCode::InvalidReplicationFactor,
                    format!("replication_factor must be 1-{MAX_REPLICATION_FACTOR}, got {rf}"),
                ));
            }
            assign(view, 0, n as usize, rf as usize)?
        }
    };
    let topic_id = Uuid::new_v4();
    let mut records = Vec::with_capacity(replicas.len());
    for (i, r) in replicas.into_iter().enumerate() {
        records.push(new_partition(view.image(), topic_id, i as i32, r)?);
    }
    view.emit(MetadataRecord::Topic(TopicRecord {
        name: req.name.clone(),
        topic_id,
    }))?;
    for (k, v) in &req.configs {
        view.emit(MetadataRecord::Config(ConfigRecord {
            resource_type: crate::record::metadata::RESOURCE_TOPIC,
            resource_name: req.name.clone(),
            name: k.clone(),
            value: Some(v.clone()),
        }))?;
    }
    for r in records {
        view.emit(MetadataRecord::Partition(r))?;
    }
    let t = view
        .image()
        .topic(&topic_id)
        .ok_or_else(|| ControllerError::Internal("the new topic vanished".into()))?;
    tracing::info!(topic = %req.name, partitions = t.partition_count(), "topic created");
    Ok(CreatedTopic {
        name: req.name.clone(),
        topic_id: uuid_fmt::kafka_uuid(&topic_id),
        partitions: t.partitions().iter().map(PartitionView::of).collect(),
    })
}

/// Deletes a topic (its configs go with it).
pub fn delete(view: &mut View, name: &str) -> Result<(), ControllerError> {
    let id = view.image().topic_id(name).ok_or_else(|| {
        ControllerError::refused(
            ErrorCode::UnknownTopicOrPartition,
            format!("topic {name:?} does not exist"),
        )
    })?;
    view.emit(MetadataRecord::RemoveTopic(RemoveTopicRecord {
        topic_id: id,
    }))?;
    tracing::info!(topic = %name, "topic deleted");
    Ok(())
}

/// Grows a topic to `count` partitions, placed like a new topic's with its replication
/// factor.
pub fn add_partitions(
    view: &mut View,
    name: &str,
    count: i32,
) -> Result<Vec<PartitionView>, ControllerError> {
    let t = view.image().topic_by_name(name).ok_or_else(|| {
        ControllerError::refused(
            ErrorCode::UnknownTopicOrPartition,
            format!("topic {name:?} does not exist"),
        )
    })?;
    let (topic_id, current) = (t.id(), t.partition_count());
    let rf = t
        .partitions()
        .first()
        .map_or(1, |p| p.replicas().len().max(1));
    if count < 0 || (count as usize) <= current {
        return Err(ControllerError::refused(
            ErrorCode::InvalidPartitions,
            format!("topic {name:?} has {current} partitions; the new count must be larger, got {count}"),
        ));
    }
    let add = count as usize - current;
    if add > MAX_NEW_PARTITIONS {
        return Err(ControllerError::refused(
            ErrorCode::InvalidPartitions,
            format!("at most {MAX_NEW_PARTITIONS} partitions per request"),
        ));
    }
    let next_id = t.partitions().last().map_or(0, |p| p.id() as usize + 1);
    let lists = assign(view, next_id, add, rf)?;
    let mut records = Vec::with_capacity(add);
    for (i, r) in lists.into_iter().enumerate() {
        records.push(new_partition(
            view.image(),
            topic_id,
            (next_id + i) as i32,
            r,
        )?);
    }
    let ids: Vec<i32> = records.iter().map(|r| r.partition_id).collect();
    for r in records {
        view.emit(MetadataRecord::Partition(r))?;
    }
    let t = view
        .image()
        .topic(&topic_id)
        .ok_or_else(|| ControllerError::Internal("the topic vanished".into()))?;
    Ok(ids
        .iter()
        .filter_map(|id| t.partition(*id))
        .map(PartitionView::of)
        .collect())
}

/// Applies a config change; enabling unclean election on a topic (or cluster-wide) also
/// runs unclean elections for its leaderless partitions, in the same batch.
pub fn alter_configs(
    view: &mut View,
    res: &ConfigResource,
    patch: &ConfigPatch,
) -> Result<(), ControllerError> {
    let records = configs::records(view.image(), res, patch).map_err(config_error)?;
    for r in records {
        view.emit(r.record)?;
    }
    if patch.set.get(UNCLEAN).map(String::as_str) == Some("true") {
        let n = match res {
            ConfigResource::Topic(t) => partitions::elect_unclean_in_topic(view, t)?,
            ConfigResource::Broker(b) if b.is_empty() => partitions::elect_leaderless(view)?,
            ConfigResource::Broker(_) => 0,
        };
        if n > 0 {
            tracing::warn!(resource = %res, partitions = n, "unclean leader election: data may have been lost");
        }
    }
    Ok(())
}
