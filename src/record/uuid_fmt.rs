//! Kafka prints UUIDs as unpadded URL-safe base64 (`Uuid.toString()`); operators know topic
//! ids in that form, so every human or JSON view of a UUID uses it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serializer;
use uuid::Uuid;

/// The Kafka form of a UUID, e.g. `zXDsE3AbRT6sB28Gx0_Q3A`.
pub fn kafka_uuid(id: &Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Parses the Kafka form (22 base64 characters) or the hyphenated RFC 4122 form.
pub fn parse_kafka_uuid(s: &str) -> Option<Uuid> {
    if let Ok(bytes) = URL_SAFE_NO_PAD.decode(s) {
        if let Ok(arr) = <[u8; 16]>::try_from(bytes.as_slice()) {
            return Some(Uuid::from_bytes(arr));
        }
    }
    Uuid::parse_str(s).ok()
}

/// serde `serialize_with` for one UUID in Kafka form.
pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&kafka_uuid(id))
}

/// serde `serialize_with` for a list of UUIDs in Kafka form.
pub fn serialize_vec<S: Serializer>(ids: &[Uuid], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(kafka_uuid))
}

/// serde `serialize_with` for an optional list of UUIDs in Kafka form.
pub fn serialize_opt_vec<S: Serializer>(ids: &Option<Vec<Uuid>>, s: S) -> Result<S::Ok, S::Error> {
    match ids {
        Some(ids) => s.collect_seq(ids.iter().map(kafka_uuid)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_form_round_trips_and_hyphenated_form_parses() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let k = kafka_uuid(&id);
        assert_eq!(k.len(), 22);
        assert_eq!(parse_kafka_uuid(&k), Some(id));
        assert_eq!(parse_kafka_uuid(&id.hyphenated().to_string()), Some(id));
        assert_eq!(parse_kafka_uuid("not-a-uuid"), None);
    }
}
