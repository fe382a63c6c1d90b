//! Broker heartbeat sessions on the active controller (Kafka's BrokerHeartbeatManager):
//! when each broker must next be heard from, and the controlled shutdown it is in. They
//! live in memory only and are never replicated: a new active controller gives every
//! unfenced broker a fresh session.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::image::MetadataImage;

/// One broker's session on the active controller.
#[derive(Debug, Clone, Copy)]
pub(super) struct Session {
    pub(super) deadline: Instant,
    /// Offset of the last record that moved its leaderships away for a controlled shutdown.
    pub(super) shutdown_offset: Option<u64>,
}

/// Heartbeat sessions of every broker (in memory on the active controller only).
#[derive(Debug)]
pub struct Sessions {
    timeout: Duration,
    map: HashMap<i32, Session>,
}

impl Sessions {
    /// A fresh session for every registered, unfenced broker: a new active controller does
    /// not fence anyone for the time the quorum had no leader.
    pub fn fresh(image: &MetadataImage, now: Instant, timeout: Duration) -> Sessions {
        let map = image
            .brokers()
            .filter(|b| !b.fenced)
            .map(|b| {
                (
                    b.broker_id,
                    Session {
                        deadline: now + timeout,
                        shutdown_offset: None,
                    },
                )
            })
            .collect();
        Sessions { timeout, map }
    }

    pub(super) fn touch(&mut self, id: i32, now: Instant) -> &mut Session {
        let timeout = self.timeout;
        let s = self.map.entry(id).or_insert(Session {
            deadline: now + timeout,
            shutdown_offset: None,
        });
        s.deadline = now + timeout;
        s
    }

    /// Whether `id` heartbeated within the session timeout.
    pub fn is_live(&self, id: i32, now: Instant) -> bool {
        self.map.get(&id).is_some_and(|s| s.deadline > now)
    }

    /// Brokers whose session ran out.
    pub fn expired(&self, now: Instant) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .map
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        v.sort_unstable();
        v
    }

    pub(super) fn remove(&mut self, id: i32) {
        self.map.remove(&id);
    }
}
