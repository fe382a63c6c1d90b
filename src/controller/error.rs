//! Why the controller did not carry out a request: a closed set of outcomes, each with its
//! Kafka error code where it has one.

use std::time::Duration;

use crate::contract::ErrorCode;
use crate::raft::NodeId;

/// Why a request was not carried out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControllerError {
    /// The request was checked and refused; nothing was written.
    #[error("{message}")]
    Refused {
        /// Kafka's error code, e.g. `TOPIC_ALREADY_EXISTS`.
        code: ErrorCode,
        /// For a person.
        message: String,
    },
    /// This node is not (or no longer) the active controller.
    #[error("this controller is not the active controller")]
    NotController {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// Not committed in time (e.g. the leader lost its majority). It may still commit.
    #[error("the write was not committed within {0:?}; it may still be committed later")]
    Timeout(Duration),
    /// The request reached Raft, but whether it was committed is not known: it may have
    /// been. Clients must not assume nothing happened.
    #[error("the outcome is unknown: {0}; the write may have been committed")]
    OutcomeUnknown(String),
    /// Raft or the controller failed.
    #[error("{0}")]
    Internal(String),
}

impl ControllerError {
    /// A refusal with a Kafka error code.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        ControllerError::Refused {
            code,
            message: message.into(),
        }
    }
}

/// The old name of [`ControllerError`], for the write path's callers.
pub type WriteError = ControllerError;
