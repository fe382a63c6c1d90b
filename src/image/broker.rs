//! Broker registrations and the producer-id block.

use serde::Serialize;
use uuid::Uuid;

use crate::record::metadata::{
    BrokerEndpoint, BrokerFeature, ProducerIdsRecord, RegisterBrokerRecord,
};
use crate::record::uuid_fmt;

/// A registered broker, as Kafka's `BrokerRegistration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerRegistration {
    /// Broker (node) id.
    pub broker_id: i32,
    /// Offset of the RegisterBrokerRecord; fences requests from an older registration.
    pub broker_epoch: i64,
    /// Random per process start, so a restarted broker is told apart from a stale one.
    #[serde(serialize_with = "uuid_fmt::serialize")]
    pub incarnation_id: Uuid,
    /// Listeners, in registration order.
    pub listeners: Vec<BrokerEndpoint>,
    /// Supported feature ranges, in registration order.
    pub features: Vec<BrokerFeature>,
    /// Rack, for rack-aware replica placement.
    pub rack: Option<String>,
    /// A fenced broker leads no partition and is in no ISR.
    pub fenced: bool,
    /// Set once a controlled shutdown starts; only a new registration clears it.
    pub in_controlled_shutdown: bool,
    /// A ZooKeeper-mode broker during migration.
    pub is_migrating_zk_broker: bool,
    /// Log directory ids the broker reported.
    #[serde(serialize_with = "uuid_fmt::serialize_vec")]
    pub log_dirs: Vec<Uuid>,
}

impl BrokerRegistration {
    pub(crate) fn from_record(r: &RegisterBrokerRecord) -> Self {
        BrokerRegistration {
            broker_id: r.broker_id,
            broker_epoch: r.broker_epoch,
            incarnation_id: r.incarnation_id,
            listeners: r.end_points.clone(),
            features: r.features.clone(),
            rack: r.rack.clone(),
            fenced: r.fenced,
            in_controlled_shutdown: r.in_controlled_shutdown,
            is_migrating_zk_broker: r.is_migrating_zk_broker,
            log_dirs: r.log_dirs.clone(),
        }
    }

    /// This registration, with its current fencing and shutdown state, as a snapshot record.
    pub fn to_record(&self) -> RegisterBrokerRecord {
        RegisterBrokerRecord {
            broker_id: self.broker_id,
            is_migrating_zk_broker: self.is_migrating_zk_broker,
            incarnation_id: self.incarnation_id,
            broker_epoch: self.broker_epoch,
            end_points: self.listeners.clone(),
            features: self.features.clone(),
            rack: self.rack.clone(),
            fenced: self.fenced,
            in_controlled_shutdown: self.in_controlled_shutdown,
            log_dirs: self.log_dirs.clone(),
        }
    }

    /// Unfenced: may lead partitions and be in ISRs (Kafka's "active" broker).
    pub fn is_active(&self) -> bool {
        !self.fenced
    }

    /// The listener with this name.
    pub fn listener(&self, name: &str) -> Option<&BrokerEndpoint> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

/// The state the last ProducerIdsRecord left: producer ids below `next_producer_id` are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProducerIdBlock {
    /// Broker that received the last block (-1 in Kafka's own snapshots).
    pub broker_id: i32,
    /// That broker's epoch when it asked.
    pub broker_epoch: i64,
    /// First producer id not yet handed out.
    pub next_producer_id: i64,
}

impl ProducerIdBlock {
    pub(crate) fn from_record(r: &ProducerIdsRecord) -> Self {
        ProducerIdBlock {
            broker_id: r.broker_id,
            broker_epoch: r.broker_epoch,
            next_producer_id: r.next_producer_id,
        }
    }

    /// This state as a snapshot record.
    pub fn to_record(&self) -> ProducerIdsRecord {
        ProducerIdsRecord {
            broker_id: self.broker_id,
            broker_epoch: self.broker_epoch,
            next_producer_id: self.next_producer_id,
        }
    }
}
