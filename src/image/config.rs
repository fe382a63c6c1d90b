//! Dynamic configs of topics and brokers.

use std::fmt;

use serde::Serialize;

use crate::record::metadata::{RESOURCE_BROKER, RESOURCE_TOPIC};

/// What a config belongs to. Brokers order before topics, which is the snapshot order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "type", content = "name", rename_all = "snake_case")]
pub enum ConfigResource {
    /// A broker by decimal id, or `""` for the cluster-wide default.
    Broker(String),
    /// A topic by name.
    Topic(String),
}

impl ConfigResource {
    /// The cluster-wide broker default (`Broker("")`).
    pub fn cluster_default() -> Self {
        ConfigResource::Broker(String::new())
    }

    /// Kafka's ConfigRecord resource type.
    pub fn resource_type(&self) -> i8 {
        match self {
            ConfigResource::Broker(_) => RESOURCE_BROKER,
            ConfigResource::Topic(_) => RESOURCE_TOPIC,
        }
    }

    /// The resource name as a ConfigRecord carries it.
    pub fn name(&self) -> &str {
        match self {
            ConfigResource::Broker(n) | ConfigResource::Topic(n) => n,
        }
    }
}

impl fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigResource::Broker(n) if n.is_empty() => {
                f.write_str("cluster default broker config")
            }
            ConfigResource::Broker(n) => write!(f, "broker {n}"),
            ConfigResource::Topic(n) => write!(f, "topic {n}"),
        }
    }
}
