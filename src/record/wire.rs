//! A bounded reader for Kafka's flexible-version encoding.
//!
//! Every read checks the bytes that remain; nothing reserves memory from a count it has not
//! seen the bytes for. Errors name the field being read.

use bytes::Bytes;
use std::collections::BTreeMap;
use uuid::Uuid;

use super::error::RecordError;

/// Kafka's generated readers and writers refuse longer strings (`length > 0x7fff`).
pub const MAX_STRING_BYTES: usize = 0x7fff;

/// A bounds-checked cursor over untrusted bytes; every read returns an error instead of
/// panicking when the input runs out.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(RecordError::Truncated { what })?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(RecordError::Truncated { what })?;
        self.pos = end;
        Ok(s)
    }

    pub fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], RecordError> {
        let s = self.take(N, what)?;
        <[u8; N]>::try_from(s).map_err(|_| RecordError::Truncated { what })
    }

    pub fn i8(&mut self, what: &'static str) -> Result<i8, RecordError> {
        Ok(i8::from_be_bytes(self.fixed(what)?))
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, RecordError> {
        match self.fixed::<1>(what)? {
            [0] => Ok(false),
            [1] => Ok(true),
            [b] => Err(RecordError::invalid(
                what,
                format!("bool byte {b:#04x} is neither 0 nor 1"),
            )),
        }
    }

    pub fn i16(&mut self, what: &'static str) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.fixed(what)?))
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, RecordError> {
        Ok(u16::from_be_bytes(self.fixed(what)?))
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.fixed(what)?))
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.fixed(what)?))
    }

    pub fn uuid(&mut self, what: &'static str) -> Result<Uuid, RecordError> {
        Ok(Uuid::from_bytes(self.fixed(what)?))
    }

    pub fn uvarint(&mut self, what: &'static str) -> Result<u32, RecordError> {
        let mut value = 0u32;
        let mut shift = 0u32;
        loop {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(RecordError::Truncated { what })?;
            self.pos += 1;
            if shift == 28 {
                if b & 0x80 != 0 {
                    return Err(RecordError::invalid(
                        what,
                        "unsigned varint longer than 5 bytes",
                    ));
                }
                // The fifth byte may only carry the top four bits of a u32.
                if b > 0x0f {
                    return Err(RecordError::invalid(
                        what,
                        "unsigned varint overflows 32 bits",
                    ));
                }
                return Ok(value | (u32::from(b) << 28));
            }
            value |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// A compact length: None for null, else the element (or byte) count.
    pub fn compact_len(&mut self, what: &'static str) -> Result<Option<usize>, RecordError> {
        match self.uvarint(what)? {
            0 => Ok(None),
            // Kafka holds lengths in an int32; anything above is malformed, not merely long.
            v if v - 1 > i32::MAX as u32 => Err(RecordError::invalid(
                what,
                format!("length {} overflows int32", v - 1),
            )),
            v => Ok(Some((v - 1) as usize)),
        }
    }

    pub fn str_body(&mut self, what: &'static str, len: usize) -> Result<String, RecordError> {
        if len > MAX_STRING_BYTES {
            return Err(RecordError::invalid(
                what,
                format!("string length {len} exceeds Kafka's {MAX_STRING_BYTES}"),
            ));
        }
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(RecordError::invalid(what, format!("not UTF-8: {e}"))),
        }
    }

    pub fn string(&mut self, what: &'static str) -> Result<String, RecordError> {
        match self.compact_len(what)? {
            Some(len) => self.str_body(what, len),
            None => Err(null_in_non_nullable(what)),
        }
    }

    pub fn opt_string(&mut self, what: &'static str) -> Result<Option<String>, RecordError> {
        match self.compact_len(what)? {
            Some(len) => self.str_body(what, len).map(Some),
            None => Ok(None),
        }
    }

    pub fn i32s_body(&mut self, what: &'static str, n: usize) -> Result<Vec<i32>, RecordError> {
        // Checking the bytes first bounds the allocation by the input actually present.
        let bytes = n.checked_mul(4).ok_or(RecordError::Truncated { what })?;
        let s = self.take(bytes, what)?;
        Ok(s.chunks_exact(4)
            .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    pub fn i32s(&mut self, what: &'static str) -> Result<Vec<i32>, RecordError> {
        match self.compact_len(what)? {
            Some(n) => self.i32s_body(what, n),
            None => Err(null_in_non_nullable(what)),
        }
    }

    pub fn opt_i32s(&mut self, what: &'static str) -> Result<Option<Vec<i32>>, RecordError> {
        match self.compact_len(what)? {
            Some(n) => self.i32s_body(what, n).map(Some),
            None => Ok(None),
        }
    }

    pub fn uuids_body(&mut self, what: &'static str, n: usize) -> Result<Vec<Uuid>, RecordError> {
        let bytes = n.checked_mul(16).ok_or(RecordError::Truncated { what })?;
        let s = self.take(bytes, what)?;
        let mut out = Vec::with_capacity(n);
        for c in s.chunks_exact(16) {
            let arr = <[u8; 16]>::try_from(c).map_err(|_| RecordError::Truncated { what })?;
            out.push(Uuid::from_bytes(arr));
        }
        Ok(out)
    }

    pub fn uuids(&mut self, what: &'static str) -> Result<Vec<Uuid>, RecordError> {
        match self.compact_len(what)? {
            Some(n) => self.uuids_body(what, n),
            None => Err(null_in_non_nullable(what)),
        }
    }

    pub fn opt_uuids(&mut self, what: &'static str) -> Result<Option<Vec<Uuid>>, RecordError> {
        match self.compact_len(what)? {
            Some(n) => self.uuids_body(what, n).map(Some),
            None => Ok(None),
        }
    }

    /// The count of a non-nullable struct array, checked against the bytes left so that
    /// `Vec::with_capacity(count)` is bounded by the input, not by the claim.
    pub fn struct_count(
        &mut self,
        what: &'static str,
        min_elem: usize,
    ) -> Result<usize, RecordError> {
        match self.compact_len(what)? {
            Some(n) if n.saturating_mul(min_elem) <= self.remaining() => Ok(n),
            Some(_) => Err(RecordError::Truncated { what }),
            None => Err(null_in_non_nullable(what)),
        }
    }

    /// Reads a tagged-field section. `known` parses the payload of a tag it knows and
    /// returns true, or returns false to skip a tag it does not know (as Kafka does).
    pub fn tagged_fields(
        &mut self,
        mut known: impl FnMut(u32, &mut Reader<'a>) -> Result<bool, RecordError>,
    ) -> Result<BTreeMap<i32, Bytes>, RecordError> {
        let count = self.uvarint("tagged field count")?;
        let mut unknown = BTreeMap::new();
        let mut prev: Option<u32> = None;
        // Each iteration consumes at least two bytes or fails, so a huge count cannot spin.
        for _ in 0..count {
            let tag = self.uvarint("tag")?;
            if prev.is_some_and(|p| tag <= p) {
                return Err(RecordError::invalid(
                    "tagged fields",
                    format!(
                        "tag {tag} follows tag {}; tags must ascend",
                        prev.unwrap_or(0)
                    ),
                ));
            }
            prev = Some(tag);
            let size = self.uvarint("tagged field size")? as usize;
            let payload = self.take(size, "tagged field")?;
            let mut sub = Reader::new(payload);
            match known(tag, &mut sub) {
                Ok(true) if sub.remaining() != 0 => {
                    return Err(RecordError::invalid(
                        "tagged fields",
                        format!("tag {tag} has size {size} but its field uses {}", sub.pos),
                    ))
                }
                Ok(true) => {}
                Ok(false) => {
                    let tag = i32::try_from(tag).map_err(|_| {
                        RecordError::invalid("tagged fields", format!("tag {tag} too large"))
                    })?;
                    unknown.insert(tag, Bytes::copy_from_slice(payload));
                }
                // The payload is whole (it was taken above), so running out inside it means
                // the size lied, not that the input was cut short.
                Err(RecordError::Truncated { what }) => {
                    return Err(RecordError::invalid(
                        what,
                        format!("tag {tag} has size {size}, too small for its field"),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(unknown)
    }

    /// Fails with [`RecordError::TrailingBytes`] unless everything was read.
    pub fn finish(&self) -> Result<(), RecordError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(RecordError::TrailingBytes(n)),
        }
    }

    /// A non-nullable array of structs, each read by `item`; `min_elem` is the smallest
    /// encoded size of one element, which bounds the count by the bytes present.
    pub fn struct_array<T>(
        &mut self,
        what: &'static str,
        min_elem: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, RecordError>,
    ) -> Result<Vec<T>, RecordError> {
        let n = self.struct_count(what, min_elem)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// A tagged-field section of a struct that defines no tags: every field is unknown.
    pub fn unknown_tagged_fields(&mut self) -> Result<BTreeMap<i32, Bytes>, RecordError> {
        self.tagged_fields(|_, _| Ok(false))
    }
}

/// The error for a null in a field Kafka declares non-nullable.
pub fn null_in_non_nullable(what: &'static str) -> RecordError {
    RecordError::invalid(what, "null in a non-nullable field")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarint_reads_kafka_encoding_and_refuses_overlong() {
        assert_eq!(Reader::new(&[0x00]).uvarint("x"), Ok(0));
        assert_eq!(Reader::new(&[0x96, 0x01]).uvarint("x"), Ok(150));
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f]).uvarint("x"),
            Ok(u32::MAX)
        );
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x1f])
            .uvarint("x")
            .is_err());
        assert!(Reader::new(&[0x80]).uvarint("x").is_err());
    }

    #[test]
    fn tags_out_of_order_are_refused() {
        // two tags: 1 (size 0) then 0 (size 0)
        let mut r = Reader::new(&[2, 1, 0, 0, 0]);
        assert!(r.unknown_tagged_fields().is_err());
    }
}
