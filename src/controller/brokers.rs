//! Broker lifecycle on the active controller: registration, heartbeats, fencing, controlled
//! shutdown and unregistration (Kafka's ClusterControlManager and BrokerHeartbeatManager).
//!
//! Heartbeats only touch the in-memory session; a record is written only when a broker's
//! state changes (registered, unfenced, fenced, entering controlled shutdown, unregistered).

use uuid::Uuid;

use super::partitions;
use super::{ControllerError, View};
use crate::contract::brokers::{Heartbeat, HeartbeatAnswer, Registration, SECURITY_PROTOCOLS};
use crate::contract::ErrorCode;
use crate::image::MetadataImage;
use crate::record::metadata::{
    BrokerEndpoint, BrokerFeature, BrokerRegistrationChangeRecord, MetadataRecord,
    RegisterBrokerRecord, UnregisterBrokerRecord,
};

fn parse_incarnation(s: &str) -> Result<Uuid, ControllerError> {
    if let Ok(u) = Uuid::parse_str(s) {
        return Ok(u);
    }
    crate::record::uuid_fmt::parse_kafka_uuid(s).ok_or_else(|| {
        ControllerError::refused(
            ErrorCode::InvalidRequest,
            format!("incarnation_id {s:?} is neither a UUID nor Kafka's base64 form"),
        )
    })
}

fn check_registration(
    image: &MetadataImage,
    cluster_id: &str,
    id: i32,
    r: &Registration,
) -> Result<(Uuid, Vec<BrokerEndpoint>, Vec<BrokerFeature>), ControllerError> {
    if r.cluster_id != cluster_id {
        return Err(ControllerError::refused(
            ErrorCode::InconsistentClusterId,
            format!(
                "the broker names cluster {:?}, but this is cluster {cluster_id:?}",
                r.cluster_id
            ),
        ));
    }
    if id < 0 {
        return Err(ControllerError::refused(
            ErrorCode::InvalidRequest,
            format!("broker id {id} is negative"),
        ));
    }
    let incarnation = parse_incarnation(&r.incarnation_id)?;
    if incarnation.is_nil() {
        return Err(ControllerError::refused(
            ErrorCode::InvalidRequest,
            "incarnation_id must not be the zero UUID",
        ));
    }
    if r.listeners.is_empty() {
        return Err(ControllerError::refused(
            ErrorCode::InvalidRequest,
            "a broker must register at least one listener",
        ));
    }
    let mut endpoints = Vec::with_capacity(r.listeners.len());
    for l in &r.listeners {
        if l.name.is_empty() || l.name.len() > 255 || l.host.is_empty() || l.host.len() > 255 {
            return Err(ControllerError::refused(
                ErrorCode::InvalidRequest,
                format!(
                    "listener {:?} needs a name and a host of 1-255 bytes",
                    l.name
                ),
            ));
        }
        if l.port == 0 {
            return Err(ControllerError::refused(
                ErrorCode::InvalidRequest,
                format!("listener {} has port 0", l.name),
            ));
        }
        if endpoints.iter().any(|e: &BrokerEndpoint| e.name == l.name) {
            return Err(ControllerError::refused(
                ErrorCode::InvalidRequest,
                format!("listener {} is given twice", l.name),
            ));
        }
        let sp = SECURITY_PROTOCOLS
            .iter()
            .find(|(n, _)| *n == l.security_protocol)
            .map(|(_, i)| *i)
            .ok_or_else(|| {
                ControllerError::refused(
                    ErrorCode::InvalidRequest,
                    format!(
                        "listener {}: security_protocol {:?} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
                        l.name, l.security_protocol
                    ),
                )
            })?;
        endpoints.push(BrokerEndpoint {
            name: l.name.clone(),
            host: l.host.clone(),
            port: l.port,
            security_protocol: sp,
        });
    }
    if let Some(rack) = &r.rack {
        if rack.is_empty() || rack.len() > 255 {
            return Err(ControllerError::refused(
                ErrorCode::InvalidRequest,
                "rack must be 1-255 bytes when given",
            ));
        }
    }
    let mut features = Vec::with_capacity(r.features.len());
    for f in &r.features {
        if f.name.is_empty() || f.min < 0 || f.min > f.max {
            return Err(ControllerError::refused(
                ErrorCode::InvalidRequest,
                format!(
                    "feature {:?}: range {}..={} is not valid",
                    f.name, f.min, f.max
                ),
            ));
        }
        if let Some(level) = image.feature_level(&f.name) {
            if level < f.min || level > f.max {
                return Err(ControllerError::refused(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "the cluster's {} is {level}, outside the broker's supported range {}..={}",
                        f.name, f.min, f.max
                    ),
                ));
            }
        }
        features.push(BrokerFeature {
            name: f.name.clone(),
            min_supported_version: f.min,
            max_supported_version: f.max,
        });
    }
    Ok((incarnation, endpoints, features))
}

/// Registers broker `id`: a new incarnation gets a new epoch (the offset of its
/// RegisterBrokerRecord) and starts fenced; the same incarnation keeps its epoch.
pub fn register(view: &mut View, id: i32, r: &Registration) -> Result<i64, ControllerError> {
    let (incarnation, end_points, features) =
        check_registration(view.image(), &view.cluster_id.clone(), id, r)?;
    let now = view.now;
    let mut was_active = false;
    if let Some(existing) = view.image().broker(id) {
        if existing.incarnation_id == incarnation {
            let epoch = existing.broker_epoch;
            view.sessions.touch(id, now);
            return Ok(epoch);
        }
        if !existing.fenced && view.sessions.is_live(id, now) {
            return Err(ControllerError::refused(
                ErrorCode::DuplicateBrokerRegistration,
                format!(
                    "broker {id} is registered by another live incarnation ({}) whose session has not expired",
                    crate::record::uuid_fmt::kafka_uuid(&existing.incarnation_id)
                ),
            ));
        }
        was_active = !existing.fenced;
    }
    if was_active {
        // The old incarnation is gone: move its leaderships and ISR places first.
        partitions::remove_broker(view, id)?;
    }
    let epoch = view.next_offset() as i64;
    view.emit(MetadataRecord::RegisterBroker(RegisterBrokerRecord {
        broker_id: id,
        is_migrating_zk_broker: false,
        incarnation_id: incarnation,
        broker_epoch: epoch,
        end_points,
        features,
        rack: r.rack.clone(),
        fenced: true,
        in_controlled_shutdown: false,
        log_dirs: Vec::new(),
    }))?;
    let s = view.sessions.touch(id, now);
    s.shutdown_offset = None;
    tracing::info!(
        broker = id,
        epoch,
        "broker registered (fenced until caught up)"
    );
    Ok(epoch)
}

fn change(id: i32, epoch: i64, fenced: i8, in_controlled_shutdown: i8) -> MetadataRecord {
    MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
        broker_id: id,
        broker_epoch: epoch,
        fenced,
        in_controlled_shutdown,
        log_dirs: Vec::new(),
    })
}

/// Fences an unfenced broker: out of every ISR (but the last place, as Kafka's KIP-841),
/// its leaderships moved, then the fence record.
fn fence(view: &mut View, id: i32, epoch: i64, why: &str) -> Result<(), ControllerError> {
    let changed = partitions::remove_broker(view, id)?;
    view.emit(change(id, epoch, 1, 0))?;
    tracing::info!(
        broker = id,
        partitions_changed = changed,
        "fenced broker: {why}"
    );
    Ok(())
}

/// Handles a heartbeat of broker `id`.
pub fn heartbeat(
    view: &mut View,
    id: i32,
    hb: &Heartbeat,
) -> Result<HeartbeatAnswer, ControllerError> {
    let reg = view.image().broker(id).ok_or_else(|| {
        ControllerError::refused(
            ErrorCode::BrokerIdNotRegistered,
            format!("broker {id} is not registered"),
        )
    })?;
    if reg.broker_epoch != hb.broker_epoch {
        return Err(ControllerError::refused(
            ErrorCode::StaleBrokerEpoch,
            format!(
                "broker {id} heartbeat carries epoch {}, but its registration has epoch {}",
                hb.broker_epoch, reg.broker_epoch
            ),
        ));
    }
    let (epoch, fenced, in_cs) = (reg.broker_epoch, reg.fenced, reg.in_controlled_shutdown);
    let caught_up = hb.current_metadata_offset >= epoch;
    let now = view.now;
    let shutdown_offset = view.sessions.touch(id, now).shutdown_offset;
    let mut should_shutdown = false;
    if in_cs {
        if fenced {
            should_shutdown = true;
        } else {
            let leads = partitions::leaderships(view, id);
            let seen = shutdown_offset.is_none_or(|o| hb.current_metadata_offset >= o as i64);
            if leads == 0 && seen {
                fence(view, id, epoch, "controlled shutdown complete")?;
                view.sessions.remove(id);
                should_shutdown = true;
            }
        }
    } else if hb.want_shutdown {
        if fenced {
            should_shutdown = true;
        } else {
            view.emit(change(id, epoch, 0, 1))?;
            partitions::remove_broker(view, id)?;
            let last = view.next_offset().saturating_sub(1);
            view.sessions.touch(id, now).shutdown_offset = Some(last);
            tracing::info!(
                broker = id,
                "broker entered controlled shutdown; leaderships moved"
            );
        }
    } else if fenced {
        if !hb.want_fence && caught_up {
            view.emit(change(id, epoch, -1, 0))?;
            let elected = partitions::elect_leaderless(view)?;
            tracing::info!(
                broker = id,
                leaders_elected = elected,
                "unfenced broker: caught up to its registration"
            );
        }
    } else if hb.want_fence {
        fence(view, id, epoch, "the broker asked to be fenced")?;
    }
    let b = view.image().broker(id);
    Ok(HeartbeatAnswer {
        is_caught_up: caught_up,
        is_fenced: b.is_none_or(|b| b.fenced),
        should_shutdown,
    })
}

/// Fences every broker in `ids` that is still unfenced (their sessions expired).
pub fn fence_expired(view: &mut View, ids: &[i32]) -> Result<(), ControllerError> {
    for &id in ids {
        view.sessions.remove(id);
        let Some(b) = view.image().broker(id) else {
            continue;
        };
        if b.fenced {
            continue;
        }
        let epoch = b.broker_epoch;
        fence(
            view,
            id,
            epoch,
            "session expired (no heartbeat within broker.session.timeout.ms)",
        )?;
        crate::telemetry::heartbeat_timed_out();
    }
    Ok(())
}

/// Unregisters broker `id` (operator): leaderships and ISR places first, then the record.
pub fn unregister(view: &mut View, id: i32) -> Result<(), ControllerError> {
    let epoch = view
        .image()
        .broker(id)
        .ok_or_else(|| {
            ControllerError::refused(
                ErrorCode::BrokerIdNotRegistered,
                format!("broker {id} is not registered"),
            )
        })?
        .broker_epoch;
    partitions::remove_broker(view, id)?;
    view.emit(MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
        broker_id: id,
        broker_epoch: epoch,
    }))?;
    view.sessions.remove(id);
    tracing::info!(broker = id, "broker unregistered by an operator");
    Ok(())
}
