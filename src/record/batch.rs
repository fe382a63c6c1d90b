//! Kafka record batches, log format v2 (magic 2, CRC-32C).
//!
//! Encoding and record decoding go through the `kafka-protocol` crate. In front of its
//! decoder sits our own header check, for two reasons: errors must name the batch and what
//! was wrong in words an operator can act on, and the crate trusts the declared record
//! count when it reserves memory, so a hostile header could make it allocate gigabytes.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};
use thiserror::Error;

/// The only batch format kraftd reads and writes.
pub const MAGIC: i8 = 2;
/// Bytes before the first record: base offset through record count.
pub const BATCH_OVERHEAD: usize = 61;
/// Bytes in front of the length field (base offset, length); Kafka's LOG_OVERHEAD.
pub const LOG_OVERHEAD: usize = 12;
/// Writers put at most this many records in one batch (Kafka's controller limit).
pub const MAX_BATCH_RECORDS: usize = 10_000;
/// Writers keep a batch at most this big (Kafka's KRaft limit).
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Attribute bit of a control batch.
pub const ATTR_CONTROL: i16 = 1 << 5;
/// Attribute bit of a transactional batch.
pub const ATTR_TRANSACTIONAL: i16 = 1 << 4;
/// The smallest possible encoded record: one byte each for length, attributes, timestamp
/// delta, offset delta, key length, value length and header count.
const MIN_RECORD_BYTES: usize = 7;
/// Offset of the CRC-covered region inside a batch.
const CRC_START: usize = 21;

/// The fixed-size header of a v2 batch, exactly as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the length field.
    pub length: i32,
    /// Raft term of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version; always 2 here.
    pub magic: i8,
    /// CRC-32C as stored.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// Offset of the last record minus the base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// -1 for metadata batches.
    pub producer_id: i64,
    /// -1 for metadata batches.
    pub producer_epoch: i16,
    /// -1 for metadata batches.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

impl BatchHeader {
    /// Whether the batch holds control records.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Size of the whole batch in bytes.
    pub fn size(&self) -> usize {
        LOG_OVERHEAD + self.length as usize
    }
}

/// One record of a batch, with its absolute offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Absolute offset.
    pub offset: i64,
    /// Absolute timestamp.
    pub timestamp: i64,
    /// Control records carry their type here; metadata records have none.
    pub key: Option<Bytes>,
    /// The record value.
    pub value: Option<Bytes>,
}

/// A decoded, CRC-checked batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    /// The header as stored.
    pub header: BatchHeader,
    /// Its records, in offset order.
    pub records: Vec<RawRecord>,
}

/// What is wrong with a batch.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchErrorKind {
    /// Fewer bytes remain than the batch needs.
    #[error("truncated: {0}")]
    Truncated(String),
    /// The length field is impossible.
    #[error("invalid batch length {0}")]
    Length(i32),
    /// Not a v2 batch.
    #[error("wrong magic {0} (kraftd reads only v2 batches, magic 2)")]
    Magic(i8),
    /// Stored and computed checksums differ.
    #[error("CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    /// A header field holds an impossible value.
    #[error("invalid header: {0}")]
    Header(String),
    /// The records section does not match the header.
    #[error("invalid records: {0}")]
    Records(String),
}

/// A batch that could not be read, named by its position and base offset.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("batch #{index} at byte {position}{}: {kind}", base_offset_text(.base_offset))]
pub struct BatchError {
    /// Index of the batch in the input, from 0.
    pub index: usize,
    /// Byte position of the batch in the input.
    pub position: usize,
    /// Its base offset, when enough bytes were there to read it.
    pub base_offset: Option<i64>,
    /// What was wrong.
    pub kind: BatchErrorKind,
}

fn base_offset_text(base: &Option<i64>) -> String {
    match base {
        Some(b) => format!(" (base offset {b})"),
        None => String::new(),
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Reads and checks the header of the batch at the start of `buf` (which must hold at least
/// the whole batch). Checks length, magic, CRC, compression and the record count bounds.
fn check_header(buf: &[u8]) -> Result<BatchHeader, BatchErrorKind> {
    if buf.len() < LOG_OVERHEAD {
        return Err(BatchErrorKind::Truncated(format!(
            "{} bytes left, a batch needs at least {BATCH_OVERHEAD}",
            buf.len()
        )));
    }
    let base_offset = be_i64(buf, 0);
    let length = be_i32(buf, 8);
    if length < (BATCH_OVERHEAD - LOG_OVERHEAD) as i32 {
        return Err(BatchErrorKind::Length(length));
    }
    let size = LOG_OVERHEAD + length as usize;
    if buf.len() < size {
        return Err(BatchErrorKind::Truncated(format!(
            "batch length says {size} bytes, only {} remain",
            buf.len()
        )));
    }
    let b = &buf[..size];
    let magic = b[16] as i8;
    if magic != MAGIC {
        return Err(BatchErrorKind::Magic(magic));
    }
    let crc = u32::from_be_bytes([b[17], b[18], b[19], b[20]]);
    let computed = crc32c::crc32c(&b[CRC_START..]);
    if crc != computed {
        return Err(BatchErrorKind::Crc {
            stored: crc,
            computed,
        });
    }
    let header = BatchHeader {
        base_offset,
        length,
        partition_leader_epoch: be_i32(b, 12),
        magic,
        crc,
        attributes: be_i16(b, 21),
        last_offset_delta: be_i32(b, 23),
        base_timestamp: be_i64(b, 27),
        max_timestamp: be_i64(b, 35),
        producer_id: be_i64(b, 43),
        producer_epoch: be_i16(b, 51),
        base_sequence: be_i32(b, 53),
        record_count: be_i32(b, 57),
    };
    let codec = header.attributes & 0x7;
    if codec != 0 {
        return Err(BatchErrorKind::Header(format!(
            "compressed batch (codec {codec}); the metadata log is never compressed"
        )));
    }
    if base_offset < 0 {
        return Err(BatchErrorKind::Header(format!(
            "negative base offset {base_offset}"
        )));
    }
    let max_records = (size - BATCH_OVERHEAD) / MIN_RECORD_BYTES;
    if header.record_count < 1 || header.record_count as usize > max_records {
        return Err(BatchErrorKind::Header(format!(
            "record count {} impossible for a batch of {size} bytes",
            header.record_count
        )));
    }
    if header.last_offset_delta != header.record_count - 1 {
        return Err(BatchErrorKind::Header(format!(
            "last offset delta {} does not match record count {}",
            header.last_offset_delta, header.record_count
        )));
    }
    if base_offset
        .checked_add(i64::from(header.last_offset_delta))
        .is_none()
    {
        return Err(BatchErrorKind::Header("offsets overflow".into()));
    }
    Ok(header)
}

/// Walks the record length prefixes, so a records section with bytes left over (which the
/// crate's decoder would ignore) is caught.
fn check_record_framing(records: &[u8], count: usize) -> Result<(), BatchErrorKind> {
    let mut pos = 0usize;
    for i in 0..count {
        let (len, used) = read_varint(&records[pos.min(records.len())..]).ok_or_else(|| {
            BatchErrorKind::Records(format!("record {i}: bad or truncated length"))
        })?;
        if len < 0 {
            return Err(BatchErrorKind::Records(format!(
                "record {i}: negative length {len}"
            )));
        }
        pos = pos
            .checked_add(used + len as usize)
            .filter(|&p| p <= records.len())
            .ok_or_else(|| {
                BatchErrorKind::Records(format!("record {i}: length {len} runs past the batch"))
            })?;
    }
    if pos != records.len() {
        return Err(BatchErrorKind::Records(format!(
            "{} bytes after the last of {count} records",
            records.len() - pos
        )));
    }
    Ok(())
}

/// Zig-zag varint (at most 5 bytes), as Kafka's record fields use.
fn read_varint(b: &[u8]) -> Option<(i32, usize)> {
    let mut raw: u32 = 0;
    for (i, &byte) in b.iter().take(5).enumerate() {
        raw |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((raw >> 1) as i32) ^ -((raw & 1) as i32), i + 1));
        }
    }
    None
}

/// Decodes the batch at the start of `buf`; returns it and its size in bytes.
pub fn decode_batch(buf: &Bytes) -> Result<(RecordBatch, usize), BatchErrorKind> {
    let header = check_header(buf)?;
    let size = header.size();
    let count = header.record_count as usize;
    check_record_framing(&buf[BATCH_OVERHEAD..size], count)?;
    let mut slice = buf.slice(..size);
    let set = RecordBatchDecoder::decode(&mut slice)
        .map_err(|e| BatchErrorKind::Records(e.to_string()))?;
    if set.records.len() != count {
        return Err(BatchErrorKind::Records(format!(
            "header says {count} records, found {}",
            set.records.len()
        )));
    }
    let mut records = Vec::with_capacity(count);
    for (i, r) in set.records.into_iter().enumerate() {
        let expected = header.base_offset + i as i64;
        if r.offset != expected {
            return Err(BatchErrorKind::Records(format!(
                "record {i} has offset {}, expected {expected} (offsets must be contiguous)",
                r.offset
            )));
        }
        records.push(RawRecord {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
        });
    }
    Ok((RecordBatch { header, records }, size))
}

/// Iterates over the batches of a buffer, stopping after the first error.
pub struct BatchIter {
    buf: Bytes,
    position: usize,
    index: usize,
    failed: bool,
}

impl BatchIter {
    /// Batches of `buf`, which must hold whole batches only.
    pub fn new(buf: Bytes) -> Self {
        BatchIter {
            buf,
            position: 0,
            index: 0,
            failed: false,
        }
    }

    /// Byte position of the next batch.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl Iterator for BatchIter {
    type Item = Result<RecordBatch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.buf.len() {
            return None;
        }
        let rest = self.buf.slice(self.position..);
        let base_offset = (rest.len() >= 8).then(|| be_i64(&rest, 0));
        match decode_batch(&rest) {
            Ok((batch, size)) => {
                self.position += size;
                self.index += 1;
                Some(Ok(batch))
            }
            Err(kind) => {
                self.failed = true;
                Some(Err(BatchError {
                    index: self.index,
                    position: self.position,
                    base_offset,
                    kind,
                }))
            }
        }
    }
}

/// What to put in one batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchSpec {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Raft term, stored as the partition leader epoch.
    pub epoch: i32,
    /// Timestamp of every record in the batch.
    pub timestamp: i64,
    /// A control batch?
    pub control: bool,
}

/// Appends one v2 batch holding `records` (key, value) to `out`; returns its size in bytes.
/// Fails on an empty or oversized record list.
pub fn encode_batch(
    out: &mut BytesMut,
    spec: BatchSpec,
    records: &[(Option<Bytes>, Bytes)],
) -> Result<usize, BatchErrorKind> {
    if records.is_empty() || records.len() > MAX_BATCH_RECORDS {
        return Err(BatchErrorKind::Header(format!(
            "a batch holds 1 to {MAX_BATCH_RECORDS} records, not {}",
            records.len()
        )));
    }
    let before = out.len();
    // The crate keeps records in one batch while offset minus sequence stays constant, and
    // derives the base sequence from the first record: sequences -1, 0, 1, ... give one
    // batch with base sequence -1, as a non-idempotent writer's batch has.
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: spec.control,
            delete_horizon: false,
            partition_leader_epoch: spec.epoch,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: spec.base_offset + i as i64,
            sequence: i as i32 - 1,
            timestamp: spec.timestamp,
            key: key.clone(),
            value: Some(value.clone()),
            headers: Default::default(),
        })
        .collect();
    let options = RecordEncodeOptions {
        version: MAGIC,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(out, &recs, &options)
        .map_err(|e| BatchErrorKind::Records(e.to_string()))?;
    Ok(out.len() - before)
}

/// Overwrites the base offset and partition leader epoch of the batch at the start of
/// `batch`. Both lie outside the CRC, so the checksum stays valid.
pub fn stamp_batch(batch: &mut [u8], base_offset: i64, epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(control: bool, n: usize) -> Bytes {
        let recs: Vec<(Option<Bytes>, Bytes)> = (0..n)
            .map(|i| {
                let key = control.then(|| Bytes::from_static(&[0, 0, 0, 3]));
                (key, Bytes::from(format!("value-{i}")))
            })
            .collect();
        let mut out = BytesMut::new();
        let spec = BatchSpec {
            base_offset: 100,
            epoch: 7,
            timestamp: 1_700_000_000_000,
            control,
        };
        encode_batch(&mut out, spec, &recs).unwrap();
        out.freeze()
    }

    #[test]
    fn encoded_batch_has_kafka_v2_header_fields() {
        let b = sample(false, 3);
        assert_eq!(be_i64(&b, 0), 100, "base offset");
        assert_eq!(be_i32(&b, 8) as usize, b.len() - 12, "length");
        assert_eq!(be_i32(&b, 12), 7, "partition leader epoch");
        assert_eq!(b[16], 2, "magic");
        assert_eq!(be_i16(&b, 21), 0, "attributes");
        assert_eq!(be_i32(&b, 23), 2, "last offset delta");
        assert_eq!(be_i64(&b, 43), -1, "producer id");
        assert_eq!(be_i16(&b, 51), -1, "producer epoch");
        assert_eq!(be_i32(&b, 53), -1, "base sequence");
        assert_eq!(be_i32(&b, 57), 3, "record count");
        let crc = u32::from_be_bytes([b[17], b[18], b[19], b[20]]);
        assert_eq!(crc, crc32c::crc32c(&b[21..]));
    }

    #[test]
    fn batch_round_trips_with_offsets_and_values() {
        let b = sample(true, 5);
        let (batch, size) = decode_batch(&b).unwrap();
        assert_eq!(size, b.len());
        assert!(batch.header.is_control());
        assert_eq!(batch.header.last_offset(), 104);
        let offsets: Vec<i64> = batch.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![100, 101, 102, 103, 104]);
        assert_eq!(batch.records[2].value.as_deref(), Some(&b"value-2"[..]));
        assert_eq!(batch.records[2].key.as_deref(), Some(&[0u8, 0, 0, 3][..]));
    }

    #[test]
    fn stamping_offset_and_epoch_keeps_the_crc_valid() {
        let mut b = sample(false, 2).to_vec();
        stamp_batch(&mut b, 5000, 42);
        let (batch, _) = decode_batch(&Bytes::from(b)).unwrap();
        assert_eq!(batch.header.base_offset, 5000);
        assert_eq!(batch.header.partition_leader_epoch, 42);
        assert_eq!(batch.records[1].offset, 5001);
    }

    #[test]
    fn every_flipped_byte_is_refused_or_only_changes_uncovered_fields() {
        let b = sample(false, 4);
        for i in 0..b.len() {
            let mut c = b.to_vec();
            c[i] ^= 0x40;
            let res = decode_batch(&Bytes::from(c));
            // Base offset and epoch are outside the CRC by design; everything else is caught.
            if i < 8 || (12..16).contains(&i) {
                continue;
            }
            assert!(res.is_err(), "flip at byte {i} was accepted");
        }
    }

    #[test]
    fn truncation_at_every_position_is_refused() {
        let b = sample(false, 4);
        for cut in 0..b.len() {
            let err = decode_batch(&b.slice(..cut)).unwrap_err();
            assert!(
                matches!(
                    err,
                    BatchErrorKind::Truncated(_) | BatchErrorKind::Length(_)
                ),
                "{cut}: {err}"
            );
        }
    }

    #[test]
    fn wrong_magic_is_named_in_the_error() {
        let mut c = sample(false, 1).to_vec();
        c[16] = 1;
        let err = decode_batch(&Bytes::from(c)).unwrap_err();
        assert_eq!(err, BatchErrorKind::Magic(1));
        assert!(err.to_string().contains("magic 1"));
    }

    #[test]
    fn iterator_error_names_batch_index_position_and_base_offset() {
        let mut all = BytesMut::new();
        let one = sample(false, 2);
        all.extend_from_slice(&one);
        let mut second = one.to_vec();
        stamp_batch(&mut second, 102, 7);
        let last = second.len() - 1;
        second[last] ^= 1;
        all.extend_from_slice(&second);
        let results: Vec<_> = BatchIter::new(all.freeze()).collect();
        assert_eq!(results.len(), 2);
        let err = results[1].as_ref().unwrap_err();
        assert_eq!(
            (err.index, err.position, err.base_offset),
            (1, one.len(), Some(102))
        );
        let text = err.to_string();
        assert!(
            text.contains("batch #1") && text.contains("base offset 102") && text.contains("CRC"),
            "{text}"
        );
    }

    #[test]
    fn hostile_record_count_with_valid_crc_is_refused_without_allocating() {
        let mut c = sample(false, 1).to_vec();
        c[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        c[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        let crc = crc32c::crc32c(&c[21..]);
        c[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode_batch(&Bytes::from(c)),
            Err(BatchErrorKind::Header(_))
        ));
    }

    #[test]
    fn bytes_left_after_the_last_record_are_refused() {
        let mut c = sample(false, 1).to_vec();
        c.push(0);
        let len = be_i32(&c, 8) + 1;
        c[8..12].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c(&c[21..]);
        c[17..21].copy_from_slice(&crc.to_be_bytes());
        let err = decode_batch(&Bytes::from(c)).unwrap_err();
        assert!(err.to_string().contains("after the last"), "{err}");
    }
}
