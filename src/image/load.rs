//! Loading an image from a checkpoint file.

use bytes::Bytes;
use std::path::Path;

use super::MetadataImage;
use crate::record::checkpoint::{
    read_checkpoint, CheckpointError, CheckpointItem, CheckpointSummary, SnapshotId,
};

/// Reads a checkpoint held in memory into a fresh image. Every check of
/// [`read_checkpoint`] applies, and every record must fit the image; on any error no image
/// is returned, so a corrupt checkpoint is never half-loaded.
pub fn load_checkpoint(
    buf: Bytes,
    expected_epoch: Option<i32>,
) -> Result<(MetadataImage, CheckpointSummary), CheckpointError> {
    let mut image = MetadataImage::default();
    let summary = read_checkpoint(buf, expected_epoch, |item| match item {
        CheckpointItem::Record(_, rec) => image.apply(&rec.record).map_err(|e| e.to_string()),
        CheckpointItem::Batch(_) | CheckpointItem::Control(..) => Ok(()),
    })?;
    Ok((image, summary))
}

/// Reads a checkpoint file into a fresh image, like [`load_checkpoint`]; a file named like a
/// checkpoint must carry the epoch its name says.
pub fn load_checkpoint_file(
    path: &Path,
) -> Result<(MetadataImage, CheckpointSummary), CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let name_epoch = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(SnapshotId::parse_file_name)
        .map(|id| id.epoch);
    load_checkpoint(Bytes::from(bytes), name_epoch)
}
