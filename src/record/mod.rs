//! The byte layer: Kafka v2 record batches, KRaft control records, metadata records and
//! checkpoint files, all in Apache Kafka's formats (shared/FORMAT.md).

#[cfg(test)]
pub mod arbitrary;
pub mod batch;
pub mod checkpoint;
pub mod control;
pub mod error;
pub mod json;
pub mod metadata;
pub mod uuid_fmt;
pub mod wire;

pub use error::RecordError;
pub use metadata::{MetadataRecord, VersionedRecord};

use batch::RawRecord;
use control::ControlRecord;

/// A record of the metadata log, typed: a control record or a metadata record.
#[derive(Debug, Clone, PartialEq)]
pub enum LogRecord {
    /// From a control batch.
    Control(ControlRecord),
    /// From a data batch.
    Metadata(VersionedRecord),
}

impl LogRecord {
    /// Decodes a record of a batch whose control bit is `control`.
    pub fn decode(control: bool, raw: &RawRecord) -> Result<Self, RecordError> {
        if control {
            return ControlRecord::decode(raw.key.as_deref(), raw.value.as_deref())
                .map(LogRecord::Control);
        }
        let value = raw
            .value
            .as_deref()
            .ok_or_else(|| RecordError::invalid("metadata record", "null value"))?;
        VersionedRecord::decode(value).map(LogRecord::Metadata)
    }
}
