//! What the controller's in-process tests share: a fresh view over the bootstrap image
//! (clock and randomness fixed), a broker registration, and a heartbeat that catches a
//! broker up.

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::brokers;
use super::sessions::Sessions;
use super::{PartitionIndex, View};
use crate::contract::brokers::{Heartbeat, Listener, Registration};
use crate::image::MetadataImage;

pub fn view() -> View {
    let image = MetadataImage::bootstrap();
    let now = Instant::now();
    View {
        sessions: Sessions::fresh(&image, now, Duration::from_secs(9)),
        index: PartitionIndex::build(&image),
        image,
        next_offset: 100,
        term: 1,
        staged: Vec::new(),
        now,
        cluster_id: "cluster".into(),
        random: 7,
    }
}

pub fn reg(rack: &str) -> Registration {
    Registration {
        cluster_id: "cluster".into(),
        incarnation_id: Uuid::new_v4().to_string(),
        listeners: vec![Listener {
            name: "PLAINTEXT".into(),
            host: "h".into(),
            port: 9092,
            security_protocol: "PLAINTEXT".into(),
        }],
        rack: Some(rack.into()),
        features: Vec::new(),
    }
}

pub fn caught_up(v: &mut View, id: i32, epoch: i64) {
    let hb = Heartbeat {
        broker_epoch: epoch,
        current_metadata_offset: i64::MAX,
        want_fence: false,
        want_shutdown: false,
    };
    assert!(!brokers::heartbeat(v, id, &hb).unwrap().is_fenced);
}
