//! The byte layer: Kafka v2 record batches, KRaft control records, metadata records and
//! checkpoint files, all in Apache Kafka's formats (shared/FORMAT.md).

#[cfg(test)]
pub mod arbitrary;
pub mod error;
pub mod metadata;
pub mod uuid_fmt;

pub use error::RecordError;
pub use metadata::{MetadataRecord, VersionedRecord};
