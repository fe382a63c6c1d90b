//! The error codes the API answers with: one closed set, each with its Kafka name (the
//! `error` field of every error answer) and the HTTP status it is answered with unless a
//! route says otherwise (416 for a byte range, 413 for a body, ...).

use std::fmt;

/// A Kafka-named error code.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The broker id has no registration. (404)
    BrokerIdNotRegistered,
    /// Another incarnation of the broker holds its registration. (409)
    DuplicateBrokerRegistration,
    /// The principal may not make this call. (403)
    ClusterAuthorizationFailed,
    /// The partition already has the leader the election would choose. (400)
    ElectionNotNeeded,
    /// No replica may lead the partition. (400)
    EligibleLeadersNotAvailable,
    /// The partition leader epoch in the request is not the current one. (409)
    FencedLeaderEpoch,
    /// The request names another cluster. (400)
    InconsistentClusterId,
    /// A replica in the new ISR may not join it (fenced, unknown, or another incarnation; KIP-903). (409)
    IneligibleReplica,
    /// A config key or value is not valid. (400)
    InvalidConfig,
    /// A partition count is not valid. (400)
    InvalidPartitions,
    /// The replication factor cannot be met. (400)
    InvalidReplicationFactor,
    /// A manual replica assignment is not valid. (400)
    InvalidReplicaAssignment,
    /// The request is malformed or breaks a rule of the API. (400)
    InvalidRequest,
    /// The topic name is not valid. (400)
    InvalidTopicException,
    /// The partition epoch in the request is not the current one. (409)
    InvalidUpdateVersion,
    /// This node is not the active controller, or none is known. (503)
    NotController,
    /// No such endpoint. (404)
    NotFound,
    /// This node is not ready to serve. (503)
    NotReady,
    /// The high watermark is not known yet (a leader change is in progress). (503)
    OffsetNotAvailable,
    /// The offset is outside the log. (416)
    OffsetOutOfRange,
    /// The preferred replica may not lead. (400)
    PreferredLeaderNotAvailable,
    /// The outcome is not known in time; the write may still be committed. (504)
    RequestTimedOut,
    /// No such checkpoint. (404)
    SnapshotNotFound,
    /// The broker epoch in the request is not the registration's. (409)
    StaleBrokerEpoch,
    /// A topic of that name exists. (409)
    TopicAlreadyExists,
    /// The server failed. (500)
    UnknownServerError,
    /// No topic has that id. (404)
    UnknownTopicId,
    /// No such topic or partition. (404)
    UnknownTopicOrPartition,
    /// The request carries no valid credentials. (401)
    SaslAuthenticationFailed,
    /// The request asks for a version this controller does not support. (400)
    UnsupportedVersion,
    /// No such voter. (404)
    VoterNotFound,
}

impl ErrorCode {
    /// Every code, in name order.
    pub const ALL: [ErrorCode; 31] = [
        ErrorCode::BrokerIdNotRegistered,
        ErrorCode::ClusterAuthorizationFailed,
        ErrorCode::DuplicateBrokerRegistration,
        ErrorCode::ElectionNotNeeded,
        ErrorCode::EligibleLeadersNotAvailable,
        ErrorCode::FencedLeaderEpoch,
        ErrorCode::InconsistentClusterId,
        ErrorCode::IneligibleReplica,
        ErrorCode::InvalidConfig,
        ErrorCode::InvalidPartitions,
        ErrorCode::InvalidReplicationFactor,
        ErrorCode::InvalidReplicaAssignment,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidTopicException,
        ErrorCode::InvalidUpdateVersion,
        ErrorCode::NotController,
        ErrorCode::NotFound,
        ErrorCode::NotReady,
        ErrorCode::OffsetNotAvailable,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::PreferredLeaderNotAvailable,
        ErrorCode::RequestTimedOut,
        ErrorCode::SaslAuthenticationFailed,
        ErrorCode::SnapshotNotFound,
        ErrorCode::StaleBrokerEpoch,
        ErrorCode::TopicAlreadyExists,
        ErrorCode::UnknownServerError,
        ErrorCode::UnknownTopicId,
        ErrorCode::UnknownTopicOrPartition,
        ErrorCode::UnsupportedVersion,
        ErrorCode::VoterNotFound,
    ];

    /// Kafka's name, e.g. `TOPIC_ALREADY_EXISTS`.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCode::BrokerIdNotRegistered => "BROKER_ID_NOT_REGISTERED",
            ErrorCode::ClusterAuthorizationFailed => "CLUSTER_AUTHORIZATION_FAILED",
            ErrorCode::DuplicateBrokerRegistration => "DUPLICATE_BROKER_REGISTRATION",
            ErrorCode::ElectionNotNeeded => "ELECTION_NOT_NEEDED",
            ErrorCode::EligibleLeadersNotAvailable => "ELIGIBLE_LEADERS_NOT_AVAILABLE",
            ErrorCode::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
            ErrorCode::InconsistentClusterId => "INCONSISTENT_CLUSTER_ID",
            ErrorCode::IneligibleReplica => "INELIGIBLE_REPLICA",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::InvalidPartitions => "INVALID_PARTITIONS",
            ErrorCode::InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
            ErrorCode::InvalidReplicaAssignment => "INVALID_REPLICA_ASSIGNMENT",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::InvalidTopicException => "INVALID_TOPIC_EXCEPTION",
            ErrorCode::InvalidUpdateVersion => "INVALID_UPDATE_VERSION",
            ErrorCode::NotController => "NOT_CONTROLLER",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::NotReady => "NOT_READY",
            ErrorCode::OffsetNotAvailable => "OFFSET_NOT_AVAILABLE",
            ErrorCode::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            ErrorCode::PreferredLeaderNotAvailable => "PREFERRED_LEADER_NOT_AVAILABLE",
            ErrorCode::RequestTimedOut => "REQUEST_TIMED_OUT",
            ErrorCode::SaslAuthenticationFailed => "SASL_AUTHENTICATION_FAILED",
            ErrorCode::SnapshotNotFound => "SNAPSHOT_NOT_FOUND",
            ErrorCode::StaleBrokerEpoch => "STALE_BROKER_EPOCH",
            ErrorCode::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
            ErrorCode::UnknownServerError => "UNKNOWN_SERVER_ERROR",
            ErrorCode::UnknownTopicId => "UNKNOWN_TOPIC_ID",
            ErrorCode::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::VoterNotFound => "VOTER_NOT_FOUND",
        }
    }

    /// The HTTP status it is answered with by default.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::ElectionNotNeeded
            | ErrorCode::EligibleLeadersNotAvailable
            | ErrorCode::InconsistentClusterId
            | ErrorCode::InvalidConfig
            | ErrorCode::InvalidPartitions
            | ErrorCode::InvalidReplicationFactor
            | ErrorCode::InvalidReplicaAssignment
            | ErrorCode::InvalidRequest
            | ErrorCode::InvalidTopicException
            | ErrorCode::PreferredLeaderNotAvailable
            | ErrorCode::UnsupportedVersion => 400,
            ErrorCode::SaslAuthenticationFailed => 401,
            ErrorCode::ClusterAuthorizationFailed => 403,
            ErrorCode::BrokerIdNotRegistered
            | ErrorCode::NotFound
            | ErrorCode::SnapshotNotFound
            | ErrorCode::UnknownTopicId
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::VoterNotFound => 404,
            ErrorCode::DuplicateBrokerRegistration
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::IneligibleReplica
            | ErrorCode::InvalidUpdateVersion
            | ErrorCode::StaleBrokerEpoch
            | ErrorCode::TopicAlreadyExists => 409,
            ErrorCode::OffsetOutOfRange => 416,
            ErrorCode::UnknownServerError => 500,
            ErrorCode::NotController | ErrorCode::NotReady | ErrorCode::OffsetNotAvailable => 503,
            ErrorCode::RequestTimedOut => 504,
        }
    }

    /// The code of a Kafka name, if it is one of ours.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn every_code_has_one_name_that_maps_back_and_an_error_status() {
        let mut names = std::collections::BTreeSet::new();
        for c in ErrorCode::ALL {
            assert!(names.insert(c.name()), "{c:?}: name used twice");
            assert_eq!(ErrorCode::from_name(c.name()), Some(c));
            assert!((400..600).contains(&c.http_status()), "{c:?}");
            assert!(c
                .name()
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'_'));
        }
        assert_eq!(ErrorCode::from_name("NO_SUCH_CODE"), None);
        // The JSON form (and the OpenAPI enum) is the name.
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.name());
        }
    }
}

/// Every error answer: `{"error": CODE, "message": ..., "leader_id"?: n, "snapshot"?: {...}}`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Kafka-style error code, e.g. `NOT_CONTROLLER`: one of a closed set.
    pub error: ErrorCode,
    /// What was wrong, for a person.
    pub message: String,
    /// The active controller, when known and useful.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<u64>,
    /// On 410 below the log start: the snapshot to load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<super::metadata::SnapshotRef>,
}
