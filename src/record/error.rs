//! Errors of the byte layer.

use thiserror::Error;

/// Why bytes could not be turned into a record (or a record into bytes).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// The input ended before a field was complete.
    #[error("truncated: {what} needs more bytes than remain")]
    Truncated { what: &'static str },
    /// A field holds a value that is not allowed there.
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    /// The frame version of a metadata record value is not 1.
    #[error("unsupported metadata record frame version {0} (only 1 is defined)")]
    FrameVersion(u32),
    /// No metadata record type has this api key.
    #[error("unknown metadata record api key {0}")]
    UnknownApiKey(u32),
    /// The record type exists but not at this version.
    #[error("{record} does not exist at version {version} (supported: {min}-{max})")]
    UnsupportedVersion {
        record: &'static str,
        version: i16,
        min: i16,
        max: i16,
    },
    /// A field is set that the chosen version cannot carry.
    #[error("{record} v{version} cannot carry field {field}")]
    FieldNotInVersion {
        record: &'static str,
        version: i16,
        field: &'static str,
    },
    /// Bytes were left over after the value was decoded.
    #[error("{0} trailing bytes after the record value")]
    TrailingBytes(usize),
}

impl RecordError {
    /// Shorthand for [`RecordError::Invalid`].
    pub fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        RecordError::Invalid {
            what,
            detail: detail.into(),
        }
    }
}
