//! A bounded reader for Kafka's flexible-version encoding.
//!
//! Every read checks the bytes that remain; nothing reserves memory from a count it has not
//! seen the bytes for. Errors name the field being read.

use bytes::Bytes;
use std::collections::BTreeMap;
use uuid::Uuid;

use super::error::RecordError;

/// Reads fields from a byte slice, front to back.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails with [`RecordError::TrailingBytes`] unless everything was read.
    pub fn finish(&self) -> Result<(), RecordError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(RecordError::TrailingBytes(n)),
        }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if self.remaining() < n {
            return Err(RecordError::Truncated { what });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], RecordError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N, what)?);
        Ok(a)
    }

    /// int8.
    pub fn i8(&mut self, what: &'static str) -> Result<i8, RecordError> {
        Ok(self.array::<1>(what)?[0] as i8)
    }

    /// boolean: exactly 0 or 1.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, RecordError> {
        match self.array::<1>(what)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(RecordError::invalid(what, format!("boolean byte {b}"))),
        }
    }

    /// int16, big-endian.
    pub fn i16(&mut self, what: &'static str) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    /// uint16, big-endian.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, RecordError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// int32, big-endian.
    pub fn i32(&mut self, what: &'static str) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    /// int64, big-endian.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    /// uuid: 16 raw bytes.
    pub fn uuid(&mut self, what: &'static str) -> Result<Uuid, RecordError> {
        Ok(Uuid::from_bytes(self.array(what)?))
    }

    /// Unsigned base-128 varint of at most 5 bytes.
    pub fn uvarint(&mut self, what: &'static str) -> Result<u32, RecordError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.array::<1>(what)?[0];
            if i == 4 && b > 0x0f {
                return Err(RecordError::invalid(what, "varint overflows 32 bits"));
            }
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::invalid(what, "varint longer than 5 bytes"))
    }

    /// Length of a compact string/array: None for null, else the element count.
    pub fn compact_len(&mut self, what: &'static str) -> Result<Option<usize>, RecordError> {
        Ok(match self.uvarint(what)? {
            0 => None,
            n => Some(n as usize - 1),
        })
    }

    /// Nullable compact string.
    pub fn compact_nullable_string(
        &mut self,
        what: &'static str,
    ) -> Result<Option<String>, RecordError> {
        let Some(len) = self.compact_len(what)? else {
            return Ok(None);
        };
        let raw = self.bytes(len, what)?;
        let s = std::str::from_utf8(raw)
            .map_err(|e| RecordError::invalid(what, format!("not UTF-8: {e}")))?;
        Ok(Some(s.to_owned()))
    }

    /// Non-nullable compact string.
    pub fn compact_string(&mut self, what: &'static str) -> Result<String, RecordError> {
        self.compact_nullable_string(what)?
            .ok_or_else(|| RecordError::invalid(what, "null where a string is required"))
    }

    /// Nullable compact array, each element read by `item`.
    pub fn compact_nullable_array<T>(
        &mut self,
        what: &'static str,
        mut item: impl FnMut(&mut Self) -> Result<T, RecordError>,
    ) -> Result<Option<Vec<T>>, RecordError> {
        let Some(n) = self.compact_len(what)? else {
            return Ok(None);
        };
        // Each element takes at least one byte, so the bytes left bound the count.
        if n > self.remaining() {
            return Err(RecordError::Truncated { what });
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(Some(out))
    }

    /// Non-nullable compact array.
    pub fn compact_array<T>(
        &mut self,
        what: &'static str,
        item: impl FnMut(&mut Self) -> Result<T, RecordError>,
    ) -> Result<Vec<T>, RecordError> {
        self.compact_nullable_array(what, item)?
            .ok_or_else(|| RecordError::invalid(what, "null where an array is required"))
    }

    /// A tagged-field section. `known` is called with (tag, reader over exactly the payload)
    /// and returns false for a tag it does not know; such fields are returned unparsed. Tags
    /// must be strictly ascending, and a known field must consume its whole payload.
    pub fn tagged_fields(
        &mut self,
        mut known: impl FnMut(u32, &mut Reader<'a>) -> Result<bool, RecordError>,
    ) -> Result<BTreeMap<i32, Bytes>, RecordError> {
        let count = self.uvarint("tagged field count")?;
        let mut unknown = BTreeMap::new();
        let mut last: Option<u32> = None;
        for _ in 0..count {
            let tag = self.uvarint("tag")?;
            if last.is_some_and(|l| tag <= l) {
                return Err(RecordError::invalid(
                    "tagged fields",
                    format!("tag {tag} out of order"),
                ));
            }
            last = Some(tag);
            let size = self.uvarint("tagged field size")? as usize;
            let payload = self.bytes(size, "tagged field payload")?;
            let mut sub = Reader::new(payload);
            if known(tag, &mut sub)? {
                sub.finish().map_err(|_| {
                    RecordError::invalid(
                        "tagged field",
                        format!("tag {tag} payload has extra bytes"),
                    )
                })?;
            } else {
                let tag = i32::try_from(tag).map_err(|_| {
                    RecordError::invalid("tagged fields", format!("tag {tag} too large"))
                })?;
                unknown.insert(tag, Bytes::copy_from_slice(payload));
            }
        }
        Ok(unknown)
    }

    /// A tagged-field section of a struct that defines no tags.
    pub fn unknown_tagged_fields(&mut self) -> Result<BTreeMap<i32, Bytes>, RecordError> {
        self.tagged_fields(|_, _| Ok(false))
    }
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
