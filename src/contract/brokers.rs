//! Broker calls: registration, heartbeats and the broker list.

use serde::{Deserialize, Serialize};

use crate::image::BrokerRegistration;
use crate::record::uuid_fmt;

/// Kafka's security protocols, by their wire id.
pub const SECURITY_PROTOCOLS: [(&str, i16); 4] = [
    ("PLAINTEXT", 0),
    ("SSL", 1),
    ("SASL_PLAINTEXT", 2),
    ("SASL_SSL", 3),
];

/// The name of a security protocol id (or the number, for ids Kafka does not define).
pub fn security_protocol_name(id: i16) -> String {
    SECURITY_PROTOCOLS
        .iter()
        .find(|(_, i)| *i == id)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| id.to_string())
}

/// A listener in a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Listener name, e.g. `PLAINTEXT`.
    pub name: String,
    /// Host brokers and clients connect to.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub security_protocol: String,
}

/// A supported feature range in a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureRange {
    /// Feature name, e.g. `metadata.version`.
    pub name: String,
    /// Lowest supported level.
    pub min: i16,
    /// Highest supported level.
    pub max: i16,
}

/// `POST /v1/brokers/{id}/registration`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Must be this cluster's id.
    pub cluster_id: String,
    /// Random per broker process start (Kafka's form or a hyphenated UUID).
    pub incarnation_id: String,
    /// The broker's listeners.
    pub listeners: Vec<Listener>,
    /// Rack, for replica placement.
    #[serde(default)]
    pub rack: Option<String>,
    /// Supported feature ranges.
    #[serde(default)]
    pub features: Vec<FeatureRange>,
}

/// `POST /v1/brokers/{id}/heartbeat`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The epoch registration returned.
    pub broker_epoch: i64,
    /// The offset the broker has applied the metadata log up to.
    pub current_metadata_offset: i64,
    /// The broker asks to be (or stay) fenced.
    #[serde(default)]
    pub want_fence: bool,
    /// The broker asks for a controlled shutdown.
    #[serde(default)]
    pub want_shutdown: bool,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatAnswer {
    /// The broker has applied the log up to its own registration.
    pub is_caught_up: bool,
    /// The broker is fenced (leads nothing, in no ISR).
    pub is_fenced: bool,
    /// The controlled shutdown is done: the broker may stop.
    pub should_shutdown: bool,
}

/// One broker as `GET /v1/brokers` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BrokerView {
    /// Broker id.
    pub id: i32,
    /// Broker epoch (offset of its registration).
    pub epoch: i64,
    /// Incarnation id (Kafka's base64 form).
    pub incarnation_id: String,
    /// `fenced`, `active` or `controlled_shutdown`.
    pub state: String,
    /// Listeners.
    pub listeners: Vec<Listener>,
    /// Rack.
    pub rack: Option<String>,
}

impl BrokerView {
    /// The view of a registration.
    pub fn of(b: &BrokerRegistration) -> Self {
        BrokerView {
            id: b.broker_id,
            epoch: b.broker_epoch,
            incarnation_id: uuid_fmt::kafka_uuid(&b.incarnation_id),
            state: if b.fenced {
                "fenced"
            } else if b.in_controlled_shutdown {
                "controlled_shutdown"
            } else {
                "active"
            }
            .to_string(),
            listeners: b
                .listeners
                .iter()
                .map(|l| Listener {
                    name: l.name.clone(),
                    host: l.host.clone(),
                    port: l.port,
                    security_protocol: security_protocol_name(l.security_protocol),
                })
                .collect(),
            rack: b.rack.clone(),
        }
    }
}

/// `POST /v1/brokers/{id}/registration` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BrokerEpoch {
    /// The broker epoch (the offset of its RegisterBrokerRecord).
    pub broker_epoch: i64,
}
