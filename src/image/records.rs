//! Writing the image as the data records of a snapshot.

use std::iter;

use crate::record::metadata::{
    ConfigRecord, FeatureLevelRecord, MetadataRecord, TopicRecord, VersionedRecord,
};

use super::{MetadataImage, BOOTSTRAP_METADATA_VERSION, METADATA_VERSION};

impl MetadataImage {
    /// The image as records, in snapshot order: metadata.version first (a reader needs it to
    /// know the record versions), other features by name, brokers by id, the producer-id
    /// block, each topic by name followed by its partitions by id, then configs (brokers,
    /// then topics, keys sorted). Lazy: nothing is built for records not pulled.
    ///
    /// An image without metadata.version is written as if it had level 16, so replaying the
    /// records gives the image plus that feature; for every other image it gives an equal one.
    pub fn records(&self) -> impl Iterator<Item = VersionedRecord> + '_ {
        let level = self
            .metadata_version()
            .unwrap_or(BOOTSTRAP_METADATA_VERSION);
        let metadata_version = iter::once(feature(METADATA_VERSION, level));
        let features = self
            .features
            .iter()
            .filter(|(name, _)| name.as_str() != METADATA_VERSION)
            .map(|(name, level)| feature(name, *level));
        let brokers = self
            .brokers
            .values()
            .map(|b| MetadataRecord::RegisterBroker(b.to_record()));
        let producer_ids = self
            .producer_ids
            .iter()
            .map(|p| MetadataRecord::ProducerIds(p.to_record()));
        let topics = self.topics().flat_map(|topic| {
            let id = topic.id();
            iter::once(MetadataRecord::Topic(TopicRecord {
                name: topic.name().to_string(),
                topic_id: id,
            }))
            .chain(
                topic
                    .partitions()
                    .iter()
                    .map(move |p| MetadataRecord::Partition(p.to_record(id))),
            )
        });
        let configs = self.configs.iter().flat_map(|(resource, keys)| {
            keys.iter().map(move |(name, value)| {
                MetadataRecord::Config(ConfigRecord {
                    resource_type: resource.resource_type(),
                    resource_name: resource.name().to_string(),
                    name: name.clone(),
                    value: Some(value.clone()),
                })
            })
        });
        metadata_version
            .chain(features)
            .chain(brokers)
            .chain(producer_ids)
            .chain(topics)
            .chain(configs)
            .map(VersionedRecord::new)
    }

    /// How many records [`MetadataImage::records`] yields, without building them.
    pub fn record_count(&self) -> usize {
        let other_features = self
            .features
            .keys()
            .filter(|n| n.as_str() != METADATA_VERSION)
            .count();
        1 + other_features
            + self.brokers.len()
            + usize::from(self.producer_ids.is_some())
            + self.topics.len()
            + self.partition_count()
            + self.configs.values().map(|kv| kv.len()).sum::<usize>()
    }
}

fn feature(name: &str, level: i16) -> MetadataRecord {
    MetadataRecord::FeatureLevel(FeatureLevelRecord {
        name: name.to_string(),
        feature_level: level,
    })
}
