//! The in-memory metadata image: what replaying `__cluster_metadata` up to some offset gives.
//!
//! [`MetadataImage::apply`] replays one record with Kafka's semantics and refuses records
//! that do not fit, leaving the image untouched; [`MetadataImage::records`] writes the image
//! back out as the records of a snapshot. Replaying those into an empty image gives the same
//! image, which is what lets a node start from a checkpoint instead of the whole log.
//!
//! Beyond the checks of Kafka's replay (unknown topic, partition or broker, stale broker
//! epoch, duplicate topic, producer ids going back), `apply` also refuses states Kafka's
//! controller never writes: a partition whose leader is not a replica or -1, whose ISR is not
//! a set of replicas, with duplicate or negative replicas, or with as many directories as
//! neither zero nor the replicas; configs of a topic that does not exist or of a resource
//! type other than topic and broker; and removing metadata.version.

mod broker;
mod config;
mod error;
mod load;
mod records;
mod synthetic;
mod topic;

#[cfg(test)]
mod tests;

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::record::metadata::{
    BrokerRegistrationChangeRecord, ConfigRecord, FeatureLevelRecord, MetadataRecord,
    PartitionChangeRecord, PartitionRecord, ProducerIdsRecord, RegisterBrokerRecord,
    RemoveTopicRecord, TopicRecord, UnregisterBrokerRecord, RESOURCE_BROKER, RESOURCE_TOPIC,
};

pub use broker::{BrokerRegistration, ProducerIdBlock};
pub use config::ConfigResource;
pub use error::ImageError;
pub use load::{load_checkpoint, load_checkpoint_file};
pub use topic::{Partition, Topic, DIRECTORY_UNASSIGNED};

/// Name of the feature that fixes the record versions in use.
pub const METADATA_VERSION: &str = "metadata.version";

/// metadata.version of a freshly formatted cluster (Kafka 3.7-IV1).
pub const BOOTSTRAP_METADATA_VERSION: i16 = 16;

/// Finalized features, brokers, topics with partitions, configs and the producer-id block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    features: BTreeMap<String, i16>,
    brokers: BTreeMap<i32, BrokerRegistration>,
    producer_ids: Option<ProducerIdBlock>,
    /// Keyed by the id as an integer, which compares without a memcmp call: replaying a
    /// snapshot looks up the topic once per partition.
    topics: BTreeMap<u128, Topic>,
    /// Name index of `topics`; also gives snapshots and JSON their order by name.
    topic_ids: BTreeMap<String, Uuid>,
    configs: BTreeMap<ConfigResource, BTreeMap<String, String>>,
}

/// Headline numbers of an image (controller metrics, `metadata` CLI).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImageCounts {
    /// Live topics.
    pub topics: usize,
    /// Partitions over all topics.
    pub partitions: usize,
    /// Partitions without a leader.
    pub offline_partitions: usize,
    /// Partitions whose ISR is smaller than their replica set.
    pub under_replicated_partitions: usize,
    /// Registered brokers.
    pub brokers: usize,
    /// Registered brokers that are fenced.
    pub fenced_brokers: usize,
    /// Registered brokers that are unfenced.
    pub active_brokers: usize,
    /// Registered brokers in controlled shutdown.
    pub brokers_in_controlled_shutdown: usize,
}

impl MetadataImage {
    /// What a freshly formatted cluster starts with: only `metadata.version` = 16.
    pub fn bootstrap() -> Self {
        let mut image = MetadataImage::default();
        image
            .features
            .insert(METADATA_VERSION.to_string(), BOOTSTRAP_METADATA_VERSION);
        image
    }

    /// Replays one record. On error nothing changed: every check runs before any mutation.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ImageError> {
        match record {
            MetadataRecord::RegisterBroker(r) => self.register_broker(r),
            MetadataRecord::UnregisterBroker(r) => self.unregister_broker(r),
            MetadataRecord::Topic(r) => self.create_topic(r),
            MetadataRecord::Partition(r) => self.put_partition(r),
            MetadataRecord::Config(r) => self.set_config(r),
            MetadataRecord::PartitionChange(r) => self.change_partition(r),
            MetadataRecord::RemoveTopic(r) => self.remove_topic(r),
            MetadataRecord::FeatureLevel(r) => self.set_feature(r),
            MetadataRecord::ProducerIds(r) => self.set_producer_ids(r),
            MetadataRecord::BrokerRegistrationChange(r) => self.change_broker(r),
            // Transaction markers change nothing themselves; the replay of the log (the
            // state machine) holds a transaction's records back until its end.
            MetadataRecord::NoOp
            | MetadataRecord::BeginTransaction(_)
            | MetadataRecord::EndTransaction
            | MetadataRecord::AbortTransaction(_) => Ok(()),
        }
    }

    fn register_broker(&mut self, r: &RegisterBrokerRecord) -> Result<(), ImageError> {
        if r.broker_id < 0 {
            return Err(ImageError::invalid(
                "RegisterBrokerRecord",
                "broker_id",
                format!("{} is negative", r.broker_id),
            ));
        }
        self.brokers
            .insert(r.broker_id, BrokerRegistration::from_record(r));
        Ok(())
    }

    /// The registration a record refers to, if its epoch is the current one.
    fn registered(
        &self,
        record: &'static str,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<&BrokerRegistration, ImageError> {
        let broker = self
            .brokers
            .get(&broker_id)
            .ok_or(ImageError::UnknownBroker { record, broker_id })?;
        if broker.broker_epoch != broker_epoch {
            return Err(ImageError::BrokerEpochMismatch {
                record,
                broker_id,
                current: broker.broker_epoch,
                given: broker_epoch,
            });
        }
        Ok(broker)
    }

    fn unregister_broker(&mut self, r: &UnregisterBrokerRecord) -> Result<(), ImageError> {
        self.registered("UnregisterBrokerRecord", r.broker_id, r.broker_epoch)?;
        self.brokers.remove(&r.broker_id);
        Ok(())
    }

    fn change_broker(&mut self, r: &BrokerRegistrationChangeRecord) -> Result<(), ImageError> {
        const RECORD: &str = "BrokerRegistrationChangeRecord";
        self.registered(RECORD, r.broker_id, r.broker_epoch)?;
        let fenced = match r.fenced {
            -1 => Some(false),
            0 => None,
            1 => Some(true),
            v => {
                return Err(ImageError::invalid(
                    RECORD,
                    "fenced",
                    format!(
                        "{v} for broker {} (allowed: -1 unfence, 0 unchanged, 1 fence)",
                        r.broker_id
                    ),
                ))
            }
        };
        // Kafka has no "leave controlled shutdown" change: only a new registration ends it.
        let in_controlled_shutdown = match r.in_controlled_shutdown {
            0 => None,
            1 => Some(true),
            v => {
                return Err(ImageError::invalid(
                    RECORD,
                    "in_controlled_shutdown",
                    format!(
                        "{v} for broker {} (allowed: 0 unchanged, 1 in controlled shutdown)",
                        r.broker_id
                    ),
                ))
            }
        };
        if let Some(broker) = self.brokers.get_mut(&r.broker_id) {
            if let Some(fenced) = fenced {
                broker.fenced = fenced;
            }
            if let Some(ics) = in_controlled_shutdown {
                broker.in_controlled_shutdown = ics;
            }
            // An empty list means "unchanged", as in Kafka.
            if !r.log_dirs.is_empty() {
                broker.log_dirs = r.log_dirs.clone();
            }
        }
        Ok(())
    }

    fn create_topic(&mut self, r: &TopicRecord) -> Result<(), ImageError> {
        const RECORD: &str = "TopicRecord";
        if r.name.is_empty() {
            return Err(ImageError::invalid(
                RECORD,
                "name",
                "a topic name cannot be empty",
            ));
        }
        if r.topic_id.is_nil() {
            return Err(ImageError::invalid(
                RECORD,
                "topic_id",
                format!("topic {} has the zero UUID, which Kafka reserves", r.name),
            ));
        }
        if let Some(existing) = self.topic_ids.get(&r.name) {
            return Err(ImageError::DuplicateTopicName {
                name: r.name.clone(),
                existing_id: *existing,
                topic_id: r.topic_id,
            });
        }
        if let Some(existing) = self.topics.get(&r.topic_id.as_u128()) {
            return Err(ImageError::DuplicateTopicId {
                topic_id: r.topic_id,
                existing_name: existing.name().to_string(),
                name: r.name.clone(),
            });
        }
        self.topic_ids.insert(r.name.clone(), r.topic_id);
        self.topics
            .insert(r.topic_id.as_u128(), Topic::new(r.name.clone(), r.topic_id));
        Ok(())
    }

    fn remove_topic(&mut self, r: &RemoveTopicRecord) -> Result<(), ImageError> {
        let topic =
            self.topics
                .remove(&r.topic_id.as_u128())
                .ok_or(ImageError::UnknownTopicId {
                    record: "RemoveTopicRecord",
                    topic_id: r.topic_id,
                })?;
        self.topic_ids.remove(topic.name());
        self.configs
            .remove(&ConfigResource::Topic(topic.name().to_string()));
        Ok(())
    }

    /// The topic a partition record names, or the error naming that record.
    fn topic_mut(
        &mut self,
        topic_id: Uuid,
        record: &'static str,
    ) -> Result<&mut Topic, ImageError> {
        self.topics
            .get_mut(&topic_id.as_u128())
            .ok_or(ImageError::UnknownTopicId { record, topic_id })
    }

    fn put_partition(&mut self, r: &PartitionRecord) -> Result<(), ImageError> {
        const RECORD: &str = "PartitionRecord";
        let topic = self.topic_mut(r.topic_id, RECORD)?;
        let partition =
            Partition::from_record(r).map_err(|detail| ImageError::InvalidPartition {
                record: RECORD,
                topic: topic.name().to_string(),
                partition: r.partition_id,
                detail,
            })?;
        topic.upsert(partition);
        Ok(())
    }

    fn change_partition(&mut self, r: &PartitionChangeRecord) -> Result<(), ImageError> {
        const RECORD: &str = "PartitionChangeRecord";
        let topic = self.topic_mut(r.topic_id, RECORD)?;
        let current =
            topic
                .partition(r.partition_id)
                .ok_or_else(|| ImageError::UnknownPartition {
                    record: RECORD,
                    topic: topic.name().to_string(),
                    topic_id: r.topic_id,
                    partition: r.partition_id,
                })?;
        let next = current
            .merged(r)
            .map_err(|detail| ImageError::InvalidPartition {
                record: RECORD,
                topic: topic.name().to_string(),
                partition: r.partition_id,
                detail,
            })?;
        topic.replace(next);
        Ok(())
    }

    fn set_config(&mut self, r: &ConfigRecord) -> Result<(), ImageError> {
        const RECORD: &str = "ConfigRecord";
        let resource = match r.resource_type {
            RESOURCE_TOPIC => {
                if !self.topic_ids.contains_key(&r.resource_name) {
                    return Err(ImageError::ConfigForUnknownTopic {
                        topic: r.resource_name.clone(),
                    });
                }
                ConfigResource::Topic(r.resource_name.clone())
            }
            RESOURCE_BROKER => {
                let name = &r.resource_name;
                // The canonical decimal form only, so one broker never has two resources.
                let is_broker_id = name
                    .parse::<i32>()
                    .is_ok_and(|id| id >= 0 && id.to_string() == *name);
                if !name.is_empty() && !is_broker_id {
                    return Err(ImageError::invalid(
                        RECORD,
                        "resource_name",
                        format!("broker resource {name:?} is neither \"\" (cluster default) nor a broker id"),
                    ));
                }
                ConfigResource::Broker(name.clone())
            }
            other => {
                return Err(ImageError::invalid(
                    RECORD,
                    "resource_type",
                    format!(
                        "{other} (supported: {RESOURCE_TOPIC} topic, {RESOURCE_BROKER} broker)"
                    ),
                ))
            }
        };
        if r.name.is_empty() {
            return Err(ImageError::invalid(
                RECORD,
                "name",
                format!("empty config name for {resource}"),
            ));
        }
        match &r.value {
            Some(value) => {
                self.configs
                    .entry(resource)
                    .or_default()
                    .insert(r.name.clone(), value.clone());
            }
            None => {
                if let Entry::Occupied(mut entry) = self.configs.entry(resource) {
                    entry.get_mut().remove(&r.name);
                    if entry.get().is_empty() {
                        entry.remove();
                    }
                }
            }
        }
        Ok(())
    }

    fn set_feature(&mut self, r: &FeatureLevelRecord) -> Result<(), ImageError> {
        const RECORD: &str = "FeatureLevelRecord";
        if r.name.is_empty() {
            return Err(ImageError::invalid(
                RECORD,
                "name",
                "a feature name cannot be empty",
            ));
        }
        if r.feature_level < 0 {
            return Err(ImageError::invalid(
                RECORD,
                "feature_level",
                format!("{} for feature {} is negative", r.feature_level, r.name),
            ));
        }
        if r.feature_level == 0 {
            // Every record version depends on metadata.version, so it can change but not vanish.
            if r.name == METADATA_VERSION {
                return Err(ImageError::invalid(
                    RECORD,
                    "feature_level",
                    "metadata.version cannot be removed (level 0)",
                ));
            }
            self.features.remove(&r.name);
        } else {
            self.features.insert(r.name.clone(), r.feature_level);
        }
        Ok(())
    }

    fn set_producer_ids(&mut self, r: &ProducerIdsRecord) -> Result<(), ImageError> {
        if r.next_producer_id < 0 {
            return Err(ImageError::invalid(
                "ProducerIdsRecord",
                "next_producer_id",
                format!("{} is negative", r.next_producer_id),
            ));
        }
        if let Some(current) = &self.producer_ids {
            if r.next_producer_id <= current.next_producer_id {
                return Err(ImageError::ProducerIdNotIncreasing {
                    current: current.next_producer_id,
                    given: r.next_producer_id,
                });
            }
        }
        self.producer_ids = Some(ProducerIdBlock::from_record(r));
        Ok(())
    }

    // ---- lookups ----

    /// Finalized feature levels by name (metadata.version included).
    pub fn features(&self) -> &BTreeMap<String, i16> {
        &self.features
    }

    /// One finalized feature level.
    pub fn feature_level(&self, name: &str) -> Option<i16> {
        self.features.get(name).copied()
    }

    /// The finalized metadata.version, or None for an image that never got one.
    pub fn metadata_version(&self) -> Option<i16> {
        self.feature_level(METADATA_VERSION)
    }

    /// One broker registration.
    pub fn broker(&self, broker_id: i32) -> Option<&BrokerRegistration> {
        self.brokers.get(&broker_id)
    }

    /// All broker registrations, by id.
    pub fn brokers(&self) -> impl ExactSizeIterator<Item = &BrokerRegistration> + '_ {
        self.brokers.values()
    }

    /// One topic by id.
    pub fn topic(&self, topic_id: &Uuid) -> Option<&Topic> {
        self.topics.get(&topic_id.as_u128())
    }

    /// One topic by name.
    pub fn topic_by_name(&self, name: &str) -> Option<&Topic> {
        self.topic_ids
            .get(name)
            .and_then(|id| self.topics.get(&id.as_u128()))
    }

    /// The id of a topic name.
    pub fn topic_id(&self, name: &str) -> Option<Uuid> {
        self.topic_ids.get(name).copied()
    }

    /// All topics, by name.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> + '_ {
        self.topic_ids
            .values()
            .filter_map(|id| self.topics.get(&id.as_u128()))
    }

    /// One partition.
    pub fn partition(&self, topic_id: &Uuid, partition: i32) -> Option<&Partition> {
        self.topic(topic_id).and_then(|t| t.partition(partition))
    }

    /// The config keys of one resource (None when it has none).
    pub fn config(&self, resource: &ConfigResource) -> Option<&BTreeMap<String, String>> {
        self.configs.get(resource)
    }

    /// One config value of one resource.
    pub fn config_value(&self, resource: &ConfigResource, key: &str) -> Option<&str> {
        self.configs
            .get(resource)
            .and_then(|c| c.get(key))
            .map(String::as_str)
    }

    /// Every resource with configs, brokers first, then topics, each by name.
    pub fn configs(
        &self,
    ) -> impl Iterator<Item = (&ConfigResource, &BTreeMap<String, String>)> + '_ {
        self.configs.iter()
    }

    /// State of the last producer-id block handed out, if any.
    pub fn producer_ids(&self) -> Option<&ProducerIdBlock> {
        self.producer_ids.as_ref()
    }

    /// Number of live topics.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Number of partitions over all topics (sums per topic: O(topics)).
    pub fn partition_count(&self) -> usize {
        self.topics.values().map(Topic::partition_count).sum()
    }

    /// Number of partitions without a leader (scans every partition).
    pub fn offline_partition_count(&self) -> usize {
        self.topics
            .values()
            .flat_map(|t| t.partitions())
            .filter(|p| !p.has_leader())
            .count()
    }

    /// Number of registered brokers.
    pub fn broker_count(&self) -> usize {
        self.brokers.len()
    }

    /// Number of registered brokers that are fenced.
    pub fn fenced_broker_count(&self) -> usize {
        self.brokers.values().filter(|b| b.fenced).count()
    }

    /// Number of registered brokers that are unfenced.
    pub fn active_broker_count(&self) -> usize {
        self.brokers.values().filter(|b| !b.fenced).count()
    }

    /// All counts at once (one pass over the partitions).
    pub fn counts(&self) -> ImageCounts {
        let fenced = self.fenced_broker_count();
        ImageCounts {
            topics: self.topic_count(),
            partitions: self.partition_count(),
            offline_partitions: self.offline_partition_count(),
            under_replicated_partitions: self
                .topics
                .values()
                .flat_map(|t| t.partitions())
                .filter(|p| p.isr().len() < p.replicas().len())
                .count(),
            brokers: self.brokers.len(),
            fenced_brokers: fenced,
            active_brokers: self.brokers.len() - fenced,
            brokers_in_controlled_shutdown: self
                .brokers
                .values()
                .filter(|b| b.in_controlled_shutdown)
                .count(),
        }
    }
}

/// JSON for `GET /v1/metadata/image`: topics by name, configs split by resource type.
impl Serialize for MetadataImage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Seq<'a, T>(Vec<&'a T>);
        impl<T: Serialize> Serialize for Seq<'_, T> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(&self.0)
            }
        }
        struct Configs<'a>(&'a BTreeMap<ConfigResource, BTreeMap<String, String>>);
        impl Serialize for Configs<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let of = |topics: bool| {
                    ByName(
                        self.0
                            .iter()
                            .filter(|(r, _)| matches!(r, ConfigResource::Topic(_)) == topics)
                            .map(|(r, kv)| (r.name(), kv))
                            .collect(),
                    )
                };
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("brokers", &of(false))?;
                m.serialize_entry("topics", &of(true))?;
                m.end()
            }
        }
        struct ByName<'a>(Vec<(&'a str, &'a BTreeMap<String, String>)>);
        impl Serialize for ByName<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().copied())
            }
        }

        let mut st = s.serialize_struct("MetadataImage", 5)?;
        st.serialize_field("features", &self.features)?;
        st.serialize_field("brokers", &Seq(self.brokers.values().collect()))?;
        st.serialize_field("producer_ids", &self.producer_ids)?;
        st.serialize_field("topics", &Seq(self.topics().collect()))?;
        st.serialize_field("configs", &Configs(&self.configs))?;
        st.end()
    }
}
