//! Partition leadership and ISR (Kafka's ReplicationControlManager and
//! PartitionChangeBuilder): leader elections, ISR changes from fencing, AlterPartition, and
//! preferred and unclean elections on request.
//!
//! A broker may lead or join an ISR when it is registered, unfenced and not in controlled
//! shutdown. The leader is the first replica, in replica order, that is in the ISR and may
//! lead. A fenced broker leaves every ISR, except that the last member stays (Kafka's
//! KIP-841): the partition then has no leader (-1) until that broker returns, or until an
//! unclean election picks another live replica with ISR = [it] and LeaderRecoveryState
//! RECOVERING.

use uuid::Uuid;

use super::{ControllerError, View};
use crate::contract::partitions::{
    AlterPartition, AlterPartitionAnswer, AlterPartitionData, AlterPartitionResult,
    AlterTopicResult, ElectionRequest, ElectionResult, TopicPartition,
};
use crate::contract::ErrorCode;
use crate::image::{ConfigResource, MetadataImage, Partition};
use crate::record::metadata::{MetadataRecord, PartitionChangeRecord, NO_LEADER, NO_LEADER_CHANGE};

/// Topic config that allows unclean leader election.
pub const UNCLEAN: &str = "unclean.leader.election.enable";

/// LeaderRecoveryState: recovered.
pub const RECOVERED: i8 = 0;
/// LeaderRecoveryState: an unclean leader that has not reported recovery yet.
pub const RECOVERING: i8 = 1;

/// May `b` lead or be in an ISR?
pub fn eligible(image: &MetadataImage, b: i32) -> bool {
    image
        .broker(b)
        .is_some_and(|r| !r.fenced && !r.in_controlled_shutdown)
}

/// Is unclean election enabled for `topic` (topic config, else the cluster default)?
pub fn unclean_allowed(image: &MetadataImage, topic: &str) -> bool {
    let v = image
        .config_value(&ConfigResource::Topic(topic.to_string()), UNCLEAN)
        .or_else(|| image.config_value(&ConfigResource::cluster_default(), UNCLEAN));
    v == Some("true")
}

/// How a change picks the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// Keep the leader if it may still lead, else the first eligible ISR member.
    Keep,
    /// The first replica if it may lead, else as `Keep`.
    Preferred,
    /// As `Keep`; with no eligible ISR member, the first live replica (ISR = [it]).
    Unclean,
}

/// The PartitionChangeRecord that moves `p` to `target_isr` with the leader `election`
/// picks, never choosing `exclude`; None when nothing would change.
pub fn build_change(
    image: &MetadataImage,
    topic_id: Uuid,
    p: &Partition,
    target_isr: &[i32],
    election: Election,
    exclude: Option<i32>,
) -> Option<PartitionChangeRecord> {
    let ok = |b: i32| b >= 0 && Some(b) != exclude && eligible(image, b);
    let in_isr_ok = |b: i32| ok(b) && target_isr.contains(&b);
    let replicas = p.replicas();
    let first_in_isr = replicas.iter().copied().find(|&b| in_isr_ok(b));
    let mut leader = match election {
        Election::Preferred if replicas.first().is_some_and(|&b| in_isr_ok(b)) => replicas[0],
        _ if in_isr_ok(p.leader()) => p.leader(),
        _ => first_in_isr.unwrap_or(NO_LEADER),
    };
    let mut isr = target_isr.to_vec();
    let mut recovery = p.leader_recovery_state();
    if leader == NO_LEADER && election == Election::Unclean {
        if let Some(b) = replicas.iter().copied().find(|&b| ok(b)) {
            leader = b;
            isr = vec![b];
            recovery = RECOVERING;
        }
    }
    let isr_changed = isr.as_slice() != p.isr();
    let leader_changed = leader != p.leader();
    let recovery_changed = recovery != p.leader_recovery_state();
    if !isr_changed && !leader_changed && !recovery_changed {
        return None;
    }
    Some(PartitionChangeRecord {
        partition_id: p.id(),
        topic_id,
        isr: isr_changed.then_some(isr),
        leader: if leader_changed {
            leader
        } else {
            NO_LEADER_CHANGE
        },
        leader_recovery_state: if recovery_changed { recovery } else { -1 },
        ..PartitionChangeRecord::default()
    })
}

/// Takes broker `id` out of every ISR (but a last place) and moves its leaderships.
/// Returns the number of partitions changed.
pub fn remove_broker(view: &mut View, id: i32) -> Result<usize, ControllerError> {
    let mut changes = Vec::new();
    for key in view.index.isr_of(id) {
        let Some((t, p)) = view.partition_at(key) else {
            continue;
        };
        let image = view.image();
        let election = if unclean_allowed(image, t.name()) {
            Election::Unclean
        } else {
            Election::Keep
        };
        let mut isr: Vec<i32> = p.isr().iter().copied().filter(|&b| b != id).collect();
        if isr.is_empty() {
            isr = p.isr().to_vec();
        }
        if let Some(c) = build_change(image, t.id(), p, &isr, election, Some(id)) {
            changes.push(c);
        }
    }
    emit_all(view, changes)
}

/// Elects leaders for leaderless partitions where someone may now lead (after a broker was
/// unfenced). Returns the number of partitions changed.
pub fn elect_leaderless(view: &mut View) -> Result<usize, ControllerError> {
    let mut changes = Vec::new();
    for key in view.index.leaderless() {
        let Some((t, p)) = view.partition_at(key) else {
            continue;
        };
        let image = view.image();
        let election = if unclean_allowed(image, t.name()) {
            Election::Unclean
        } else {
            Election::Keep
        };
        if let Some(c) = build_change(image, t.id(), p, p.isr(), election, None) {
            changes.push(c);
        }
    }
    emit_all(view, changes)
}

fn emit_all(
    view: &mut View,
    changes: Vec<PartitionChangeRecord>,
) -> Result<usize, ControllerError> {
    let n = changes.len();
    for c in changes {
        view.emit(MetadataRecord::PartitionChange(c))?;
    }
    Ok(n)
}

/// Unclean elections for the leaderless partitions of `topic` (after unclean election was
/// enabled for it).
pub fn elect_unclean_in_topic(view: &mut View, topic: &str) -> Result<usize, ControllerError> {
    let image = view.image();
    let Some(t) = image.topic_by_name(topic) else {
        return Ok(0);
    };
    let changes: Vec<_> = t
        .partitions()
        .iter()
        .filter(|p| !p.has_leader())
        .filter_map(|p| build_change(image, t.id(), p, p.isr(), Election::Unclean, None))
        .collect();
    emit_all(view, changes)
}

/// Number of partitions broker `id` leads.
pub fn leaderships(view: &View, id: i32) -> usize {
    view.index
        .isr_of(id)
        .into_iter()
        .filter_map(|k| view.partition_at(k))
        .filter(|(_, p)| p.leader() == id)
        .count()
}

// ---- AlterPartition ----

impl AlterPartitionResult {
    fn error(partition: i32, code: ErrorCode, message: String) -> Self {
        AlterPartitionResult {
            partition,
            error: Some(code.name().to_string()),
            message: Some(message),
            leader: None,
            leader_epoch: None,
            partition_epoch: None,
            isr: None,
            leader_recovery_state: None,
        }
    }

    fn state(p: &Partition) -> Self {
        AlterPartitionResult {
            partition: p.id(),
            error: None,
            message: None,
            leader: Some(p.leader()),
            leader_epoch: Some(p.leader_epoch()),
            partition_epoch: Some(p.partition_epoch()),
            isr: Some(p.isr().to_vec()),
            leader_recovery_state: Some(p.leader_recovery_state()),
        }
    }
}

/// Parses a topic id in Kafka's base64 form or as a hyphenated UUID.
pub fn parse_topic_id(s: &str) -> Option<Uuid> {
    crate::record::uuid_fmt::parse_kafka_uuid(s).or_else(|| Uuid::parse_str(s).ok())
}

/// Checks one partition's change in Kafka's order; Ok holds the record (None: no change).
fn check_alter(
    image: &MetadataImage,
    broker: i32,
    topic_id: Uuid,
    p: &Partition,
    d: &AlterPartitionData,
) -> Result<Option<PartitionChangeRecord>, (ErrorCode, String)> {
    let part = p.id();
    let with_epochs;
    let new_isr: &[i32] = match &d.new_isr_with_epochs {
        None => &d.new_isr,
        Some(members) => {
            with_epochs = members.iter().map(|m| m.broker_id).collect::<Vec<_>>();
            if !d.new_isr.is_empty() && d.new_isr != with_epochs {
                return Err((
                    ErrorCode::InvalidRequest,
                    format!(
                        "partition {part}: new_isr {:?} and new_isr_with_epochs {:?} disagree; send one",
                        d.new_isr, with_epochs
                    ),
                ));
            }
            &with_epochs
        }
    };
    if d.leader_epoch != p.leader_epoch() {
        return Err((
            ErrorCode::FencedLeaderEpoch,
            format!(
                "partition {part}: leader epoch {} is not the current {}",
                d.leader_epoch,
                p.leader_epoch()
            ),
        ));
    }
    if p.leader() != broker {
        return Err((
            ErrorCode::InvalidRequest,
            format!(
                "partition {part}: broker {broker} is not its leader (the leader is {})",
                p.leader()
            ),
        ));
    }
    if d.partition_epoch != p.partition_epoch() {
        return Err((
            ErrorCode::InvalidUpdateVersion,
            format!(
                "partition {part}: partition epoch {} is not the current {}",
                d.partition_epoch,
                p.partition_epoch()
            ),
        ));
    }
    let recovery = d.leader_recovery_state.unwrap_or(p.leader_recovery_state());
    if !(RECOVERED..=RECOVERING).contains(&recovery) {
        return Err((
            ErrorCode::InvalidRequest,
            format!("partition {part}: leader_recovery_state {recovery} is neither 0 nor 1"),
        ));
    }
    if recovery == RECOVERING && p.leader_recovery_state() == RECOVERED {
        return Err((
            ErrorCode::InvalidRequest,
            format!("partition {part}: a recovered partition cannot go back to RECOVERING"),
        ));
    }
    if recovery == RECOVERING && new_isr.len() > 1 {
        return Err((
            ErrorCode::InvalidRequest,
            format!("partition {part}: the ISR cannot grow while the leader is RECOVERING"),
        ));
    }
    let mut seen = Vec::with_capacity(new_isr.len());
    for &b in new_isr {
        if seen.contains(&b) {
            return Err((
                ErrorCode::InvalidRequest,
                format!("partition {part}: broker {b} is listed twice in new_isr"),
            ));
        }
        seen.push(b);
        if !p.replicas().contains(&b) {
            return Err((
                ErrorCode::InvalidRequest,
                format!(
                    "partition {part}: new_isr member {b} is not a replica {:?}",
                    p.replicas()
                ),
            ));
        }
    }
    if !new_isr.contains(&broker) {
        return Err((
            ErrorCode::InvalidRequest,
            format!(
                "partition {part}: new_isr {:?} leaves out the leader {broker}",
                new_isr
            ),
        ));
    }
    // KIP-903: a member known by an epoch that is not its registration's is another
    // incarnation of that broker, which may have lost what the ISR promises.
    for m in d.new_isr_with_epochs.iter().flatten() {
        let current = image.broker(m.broker_id).map(|r| r.broker_epoch);
        if m.broker_epoch != -1 && current.is_some_and(|e| e != m.broker_epoch) {
            return Err((
                ErrorCode::IneligibleReplica,
                format!(
                    "partition {part}: broker {} is known by epoch {}, but its registration has epoch {}",
                    m.broker_id,
                    m.broker_epoch,
                    current.unwrap_or(-1)
                ),
            ));
        }
    }
    if let Some(&b) = new_isr
        .iter()
        .find(|&&b| b != broker && !eligible(image, b))
    {
        let why = match image.broker(b) {
            None => "not registered",
            Some(r) if r.fenced => "fenced",
            Some(_) => "in controlled shutdown",
        };
        return Err((
            ErrorCode::IneligibleReplica,
            format!("partition {part}: broker {b} cannot join the ISR: it is {why}"),
        ));
    }
    let isr_changed = new_isr != p.isr();
    let recovery_changed = recovery != p.leader_recovery_state();
    if !isr_changed && !recovery_changed {
        return Ok(None);
    }
    Ok(Some(PartitionChangeRecord {
        partition_id: part,
        topic_id,
        isr: isr_changed.then(|| new_isr.to_vec()),
        leader_recovery_state: if recovery_changed { recovery } else { -1 },
        ..PartitionChangeRecord::default()
    }))
}

/// AlterPartition: checks every partition in Kafka's order and changes the valid ones.
/// A wrong broker epoch refuses the whole request.
pub fn alter(
    view: &mut View,
    req: &AlterPartition,
) -> Result<AlterPartitionAnswer, ControllerError> {
    match view.image().broker(req.broker_id) {
        Some(b) if b.broker_epoch == req.broker_epoch => {}
        Some(b) => {
            return Err(ControllerError::refused(
                ErrorCode::StaleBrokerEpoch,
                format!(
                    "broker {} has epoch {}, not {}",
                    req.broker_id, b.broker_epoch, req.broker_epoch
                ),
            ))
        }
        None => {
            return Err(ControllerError::refused(
                ErrorCode::StaleBrokerEpoch,
                format!("broker {} is not registered", req.broker_id),
            ))
        }
    }
    let mut out = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let mut results = Vec::with_capacity(t.partitions.len());
        let topic_id = parse_topic_id(&t.topic_id).filter(|id| view.image().topic(id).is_some());
        for (i, d) in t.partitions.iter().enumerate() {
            let Some(topic_id) = topic_id else {
                results.push(AlterPartitionResult::error(
                    d.partition,
                    ErrorCode::UnknownTopicId,
                    format!("no topic has id {}", t.topic_id),
                ));
                continue;
            };
            if t.partitions[..i].iter().any(|o| o.partition == d.partition) {
                results.push(AlterPartitionResult::error(
                    d.partition,
                    ErrorCode::InvalidRequest,
                    format!("partition {} is given twice", d.partition),
                ));
                continue;
            }
            let image = view.image();
            let Some(p) = image.partition(&topic_id, d.partition) else {
                results.push(AlterPartitionResult::error(
                    d.partition,
                    ErrorCode::UnknownTopicOrPartition,
                    format!("topic {} has no partition {}", t.topic_id, d.partition),
                ));
                continue;
            };
            match check_alter(image, req.broker_id, topic_id, p, d) {
                Err((code, msg)) => {
                    results.push(AlterPartitionResult::error(d.partition, code, msg))
                }
                Ok(change) => {
                    if let Some(c) = change {
                        view.emit(MetadataRecord::PartitionChange(c))?;
                    }
                    let p = view
                        .image()
                        .partition(&topic_id, d.partition)
                        .ok_or_else(|| {
                            ControllerError::Internal("the partition vanished".into())
                        })?;
                    results.push(AlterPartitionResult::state(p));
                }
            }
        }
        out.push(AlterTopicResult {
            topic_id: t.topic_id.clone(),
            partitions: results,
        });
    }
    Ok(AlterPartitionAnswer { topics: out })
}

// ---- elections on request ----

/// Runs preferred or unclean elections.
pub fn elect(
    view: &mut View,
    req: &ElectionRequest,
) -> Result<Vec<ElectionResult>, ControllerError> {
    let election = match req.kind.as_str() {
        "preferred" => Election::Preferred,
        "unclean" => Election::Unclean,
        other => {
            return Err(ControllerError::refused(
                ErrorCode::InvalidRequest,
                format!("election type {other:?} is neither \"preferred\" nor \"unclean\""),
            ))
        }
    };
    let all = req.partitions.is_none();
    let targets: Vec<TopicPartition> = match &req.partitions {
        Some(v) => v.clone(),
        None => view
            .image()
            .topics()
            .flat_map(|t| {
                t.partitions().iter().map(|p| TopicPartition {
                    topic: t.name().to_string(),
                    partition: p.id(),
                })
            })
            .collect(),
    };
    let mut out = Vec::new();
    for tp in targets {
        let err = |code: ErrorCode, msg: String| ElectionResult {
            topic: tp.topic.clone(),
            partition: tp.partition,
            error: Some(code.name().to_string()),
            message: Some(msg),
            leader: None,
            leader_epoch: None,
        };
        let image = view.image();
        let Some(t) = image.topic_by_name(&tp.topic) else {
            out.push(err(
                ErrorCode::UnknownTopicOrPartition,
                format!("topic {:?} does not exist", tp.topic),
            ));
            continue;
        };
        let topic_id = t.id();
        let Some(p) = t.partition(tp.partition) else {
            out.push(err(
                ErrorCode::UnknownTopicOrPartition,
                format!("topic {:?} has no partition {}", tp.topic, tp.partition),
            ));
            continue;
        };
        let needed = match election {
            Election::Preferred => p.replicas().first() != Some(&p.leader()),
            _ => !p.has_leader(),
        };
        if !needed {
            if !all {
                out.push(err(
                    ErrorCode::ElectionNotNeeded,
                    format!("leader {} is already the {} choice", p.leader(), req.kind),
                ));
            }
            continue;
        }
        let change = build_change(image, topic_id, p, p.isr(), election, None);
        let wanted_leader = |c: &PartitionChangeRecord| match election {
            Election::Preferred => p.replicas().first() == Some(&c.leader),
            _ => c.leader >= 0,
        };
        match change.filter(wanted_leader) {
            None => {
                let code = if election == Election::Preferred {
                    ErrorCode::PreferredLeaderNotAvailable
                } else {
                    ErrorCode::EligibleLeadersNotAvailable
                };
                if !all {
                    out.push(err(code, "no replica that may lead is available".into()));
                }
            }
            Some(c) => {
                view.emit(MetadataRecord::PartitionChange(c))?;
                let p = view
                    .image()
                    .partition(&topic_id, tp.partition)
                    .ok_or_else(|| ControllerError::Internal("the partition vanished".into()))?;
                out.push(ElectionResult {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    error: None,
                    message: None,
                    leader: Some(p.leader()),
                    leader_epoch: Some(p.leader_epoch()),
                });
            }
        }
    }
    Ok(out)
}
