//! Corrupt checkpoints are refused with an error that says where and what, and never load:
//! a flipped byte anywhere, truncation at every byte, a missing footer or header, a wrong
//! magic, and a record value that is not a metadata record.

use bytes::{Bytes, BytesMut};
use kraftd::image::{load_checkpoint, load_checkpoint_file, MetadataImage};
use kraftd::record::batch::{encode_batch, BatchIter, BatchSpec};
use kraftd::record::checkpoint::{write_checkpoint, CheckpointError, CheckpointMeta, SnapshotId};
use kraftd::record::control;

const EPOCH: i32 = 4;

/// A small but complete checkpoint: header batch, one data batch, footer batch.
fn small_checkpoint() -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let image = MetadataImage::synthetic(2, 2, 3, 2);
    let id = SnapshotId {
        end_offset: 50,
        epoch: EPOCH,
    };
    let meta = CheckpointMeta {
        last_contained_log_timestamp: 1_700_000_000_000,
        ..Default::default()
    };
    let (path, _) = write_checkpoint(dir.path(), id, &meta, image.records()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (dir, path, bytes)
}

/// Byte ranges of each batch in the file.
fn batch_ranges(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut iter = BatchIter::new(Bytes::copy_from_slice(bytes));
    loop {
        let start = iter.position();
        match iter.next() {
            Some(Ok(b)) => out.push(start..start + b.header.size()),
            Some(Err(e)) => panic!("{e}"),
            None => return out,
        }
    }
}

/// The (key, value) pairs of the data batch (the file's second batch), and its base offset.
fn data_batch_records(bytes: &[u8]) -> (i64, Vec<(Option<Bytes>, Bytes)>) {
    let ranges = batch_ranges(bytes);
    let data = BatchIter::new(Bytes::copy_from_slice(&bytes[ranges[1].clone()]))
        .next()
        .unwrap()
        .unwrap();
    let recs = data
        .records
        .iter()
        .map(|r| (None, r.value.clone().unwrap()))
        .collect();
    (data.header.base_offset, recs)
}

/// A data batch of the snapshot's epoch holding `recs` from `base_offset`.
fn data_batch(base_offset: i64, recs: &[(Option<Bytes>, Bytes)]) -> BytesMut {
    let mut out = BytesMut::new();
    let spec = BatchSpec {
        base_offset,
        epoch: EPOCH,
        timestamp: 0,
        control: false,
    };
    encode_batch(&mut out, spec, recs).unwrap();
    out
}

fn load(bytes: &[u8]) -> Result<MetadataImage, CheckpointError> {
    load_checkpoint(Bytes::copy_from_slice(bytes), Some(EPOCH)).map(|(img, _)| img)
}

#[test]
fn the_pristine_checkpoint_loads() {
    let (_dir, path, bytes) = small_checkpoint();
    assert_eq!(batch_ranges(&bytes).len(), 3);
    let (image, summary) = load_checkpoint_file(&path).unwrap();
    assert_eq!(image, MetadataImage::synthetic(2, 2, 3, 2));
    assert_eq!(summary.batches, 3);
}

#[test]
fn a_flipped_byte_anywhere_in_any_batch_is_refused() {
    let (_dir, _path, bytes) = small_checkpoint();
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80] {
            let mut c = bytes.clone();
            c[i] ^= mask;
            let err = load(&c).expect_err(&format!("flip {mask:#04x} at byte {i} was accepted"));
            let text = err.to_string();
            assert!(
                text.contains("batch #") || text.contains("SnapshotFooterRecord"),
                "byte {i}: {text}"
            );
        }
    }
}

#[test]
fn truncation_at_every_byte_position_is_refused() {
    let (_dir, _path, bytes) = small_checkpoint();
    for cut in 0..bytes.len() {
        let err = load(&bytes[..cut]).expect_err(&format!("cut at {cut} was accepted"));
        let text = err.to_string();
        assert!(
            text.contains("truncated")
                || text.contains("empty file")
                || text.contains("no SnapshotFooterRecord"),
            "cut at {cut}: {text}"
        );
    }
}

#[test]
fn a_missing_footer_is_refused_and_named() {
    let (_dir, _path, bytes) = small_checkpoint();
    let ranges = batch_ranges(&bytes);
    let without_footer = &bytes[..ranges[2].start];
    let err = load(without_footer).unwrap_err();
    assert!(
        matches!(err, CheckpointError::MissingFooter { batches: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no SnapshotFooterRecord"), "{err}");
}

#[test]
fn a_missing_header_is_refused_and_named() {
    let (_dir, _path, bytes) = small_checkpoint();
    // Re-encode the data batch at offset 0 so only the header is missing, not the offsets.
    let ranges = batch_ranges(&bytes);
    let (_, recs) = data_batch_records(&bytes);
    let mut out = data_batch(0, &recs);
    out.extend_from_slice(&bytes[ranges[2].clone()]);
    let err = load(&out).unwrap_err();
    assert!(
        err.to_string().contains("SnapshotHeaderRecord is missing"),
        "{err}"
    );
    // And simply dropping the header batch is refused too.
    assert!(load(&bytes[ranges[1].start..]).is_err());
}

#[test]
fn a_wrong_magic_is_refused_and_named() {
    let (_dir, _path, bytes) = small_checkpoint();
    let ranges = batch_ranges(&bytes);
    let mut c = bytes.clone();
    c[ranges[1].start + 16] = 1;
    let err = load(&c).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("batch #1") && text.contains("wrong magic 1"),
        "{text}"
    );
    assert!(
        text.contains(&format!("at byte {}", ranges[1].start)),
        "{text}"
    );
}

#[test]
fn a_bad_record_value_is_refused_naming_its_offset() {
    let (_dir, _path, bytes) = small_checkpoint();
    let ranges = batch_ranges(&bytes);
    // A valid batch (good CRC) whose second record is not a metadata record (frame version 0).
    let (data_base, mut recs) = data_batch_records(&bytes);
    recs[1].1 = Bytes::from_static(&[0x00, 0x02, 0x00, 0x00]);
    let mut out = BytesMut::from(&bytes[ranges[0].clone()]);
    out.extend_from_slice(&data_batch(data_base, &recs));
    out.extend_from_slice(&bytes[ranges[2].clone()]);
    let err = load(&out).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, CheckpointError::Record { offset: 2, .. }),
        "{text}"
    );
    assert!(text.contains("frame version 0"), "{text}");
}

#[test]
fn a_footer_that_is_not_last_or_not_alone_is_refused() {
    let (_dir, _path, bytes) = small_checkpoint();
    let ranges = batch_ranges(&bytes);
    // Footer, then the data batch again (renumbered after the footer).
    let mut c = bytes.clone();
    let footer_end = ranges[2].end;
    let mut extra = bytes[ranges[1].clone()].to_vec();
    let next = i64::from_be_bytes(
        bytes[ranges[2].start..ranges[2].start + 8]
            .try_into()
            .unwrap(),
    ) + 1;
    extra[0..8].copy_from_slice(&next.to_be_bytes());
    c.truncate(footer_end);
    c.extend_from_slice(&extra);
    let err = load(&c).unwrap_err();
    assert!(
        err.to_string().contains("after the SnapshotFooterRecord"),
        "{err}"
    );

    // A footer batch that also holds a header.
    let mut out = BytesMut::from(&bytes[..ranges[2].start]);
    let footer_offset = i64::from_be_bytes(
        bytes[ranges[2].start..ranges[2].start + 8]
            .try_into()
            .unwrap(),
    );
    let recs = [
        control::snapshot_footer(),
        control::snapshot_header(0, Default::default()),
    ]
    .iter()
    .map(|c| (Some(c.key()), c.value().unwrap()))
    .collect::<Vec<_>>();
    let spec = BatchSpec {
        base_offset: footer_offset,
        epoch: EPOCH,
        timestamp: 0,
        control: true,
    };
    encode_batch(&mut out, spec, &recs).unwrap();
    let err = load(&out).unwrap_err();
    assert!(
        err.to_string().contains("only the SnapshotFooterRecord"),
        "{err}"
    );
}

#[test]
fn a_file_whose_epoch_differs_from_its_name_is_refused() {
    let (dir, path, bytes) = small_checkpoint();
    let renamed = dir.path().join(
        SnapshotId {
            end_offset: 50,
            epoch: EPOCH + 1,
        }
        .file_name(),
    );
    std::fs::write(&renamed, &bytes).unwrap();
    let err = load_checkpoint_file(&renamed).unwrap_err();
    assert!(err.to_string().contains("epoch"), "{err}");
    assert!(load_checkpoint_file(&path).is_ok());
}

#[test]
fn writing_leaves_only_the_finished_file_behind() {
    let (dir, path, _) = small_checkpoint();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![path.file_name().unwrap().to_str().unwrap().to_string()]
    );
}

#[test]
fn a_failed_write_leaves_neither_part_file_nor_checkpoint() {
    use kraftd::record::metadata::{MetadataRecord, TopicRecord, VersionedRecord};
    let dir = tempfile::tempdir().unwrap();
    // Kafka strings hold at most 32767 bytes: this record cannot be encoded.
    let bad = VersionedRecord::new(MetadataRecord::Topic(TopicRecord {
        name: "x".repeat(40_000),
        topic_id: uuid::Uuid::from_u128(1),
    }));
    let id = SnapshotId {
        end_offset: 1,
        epoch: 1,
    };
    let err = write_checkpoint(dir.path(), id, &CheckpointMeta::default(), [bad]).unwrap_err();
    assert!(matches!(err, CheckpointError::Encode(_)), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
