//! kraftd: a standalone KRaft-style controller quorum.
//!
//! Layout (see README, "Architecture"): `record` is the byte layer (v2 batches, control and
//! metadata records, checkpoint files); `image` is the in-memory metadata image; `cli` holds
//! the offline operator tools (`dump`, `bench`).

pub mod cli;
pub mod client;
pub mod image;
pub mod node;
pub mod record;
