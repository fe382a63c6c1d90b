//! The API contract: every JSON request and answer of the API listener (serde + utoipa),
//! the closed set of error codes and the content types. The server, the client and the
//! CLI all use these types, so a field is defined once. Depends only on `record` and
//! `image`.

pub mod brokers;
pub mod configs;
pub mod error;
pub mod metadata;
pub mod partitions;
pub mod quorum;
pub mod topics;

pub use error::{ErrorBody, ErrorCode};

/// An offset, count or epoch as the contract carries it (Kafka's int64): saturates at
/// `i64::MAX`, never wraps.
pub fn int64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
