//! Large, reproducible images for benchmarks and tests.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::record::metadata::{BrokerEndpoint, BrokerFeature};

use super::{
    BrokerRegistration, ConfigResource, MetadataImage, Partition, ProducerIdBlock, Topic,
    BOOTSTRAP_METADATA_VERSION, METADATA_VERSION,
};

/// Every synthetic image draws its ids from this seed, so runs are comparable.
const SEED: u64 = 0x6b72_6166_7464_0001;

/// SplitMix64: a few lines, good enough spread for ids, and stable across platforms.
pub(super) struct SplitMix64(u64);

impl SplitMix64 {
    pub(super) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next().to_be_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

impl MetadataImage {
    /// A plausible image of the given size with ids from a fixed seed (identical every run):
    /// brokers `0..brokers` registered and unfenced, topics `topic-000000`.. with replicas
    /// placed round-robin, ISR = replicas, leader = first replica. The replication factor is
    /// capped at the broker count; with no brokers, partitions are offline.
    pub fn synthetic(
        topics: usize,
        partitions_per_topic: usize,
        brokers: usize,
        replication_factor: usize,
    ) -> MetadataImage {
        let brokers = brokers.min(i32::MAX as usize);
        let partitions_per_topic = partitions_per_topic.min(i32::MAX as usize);
        let rf = replication_factor.min(brokers);
        let mut rng = SplitMix64::new(SEED);
        let mut image = MetadataImage::bootstrap();

        for id in 0..brokers as i32 {
            let broker = BrokerRegistration {
                broker_id: id,
                broker_epoch: 100 + i64::from(id),
                incarnation_id: rng.uuid(),
                listeners: vec![BrokerEndpoint {
                    name: "PLAINTEXT".to_string(),
                    host: format!("broker-{id}.kraftd.test"),
                    port: 9092,
                    security_protocol: 0,
                }],
                features: vec![BrokerFeature {
                    name: METADATA_VERSION.to_string(),
                    min_supported_version: 1,
                    max_supported_version: BOOTSTRAP_METADATA_VERSION,
                }],
                rack: Some(format!("rack-{}", id % 3)),
                fenced: false,
                in_controlled_shutdown: false,
                is_migrating_zk_broker: false,
                log_dirs: Vec::new(),
            };
            image.brokers.insert(id, broker);
        }
        if brokers > 0 {
            image.producer_ids = Some(ProducerIdBlock {
                broker_id: 0,
                broker_epoch: 100,
                next_producer_id: 1000,
            });
        }

        let mut replicas = Vec::with_capacity(rf);
        let mut slot = 0usize;
        for t in 0..topics {
            let name = format!("topic-{t:06}");
            let mut id = rng.uuid();
            while image.topics.contains_key(&id.as_u128()) {
                id = rng.uuid();
            }
            let mut partitions = Vec::with_capacity(partitions_per_topic);
            for p in 0..partitions_per_topic {
                replicas.clear();
                if brokers > 0 {
                    let start = slot % brokers;
                    replicas.extend((0..rf).map(|k| ((start + k) % brokers) as i32));
                }
                slot = slot.wrapping_add(1);
                partitions.push(Partition::simple(p as i32, &replicas, 0, 0));
            }
            if t % 10 == 0 {
                let mut keys = BTreeMap::new();
                keys.insert("cleanup.policy".to_string(), "compact".to_string());
                image
                    .configs
                    .insert(ConfigResource::Topic(name.clone()), keys);
            }
            image.topic_ids.insert(name.clone(), id);
            image
                .topics
                .insert(id.as_u128(), Topic::with_partitions(name, id, partitions));
        }
        image
    }
}
