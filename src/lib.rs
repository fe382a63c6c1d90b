//! kraftd: a standalone KRaft-style controller quorum.
//!
//! Layout (see README, "Architecture"): `record` is the byte layer (v2 batches, control and
//! metadata records, checkpoint files); `image` is the in-memory metadata image; `raft` the
//! replicated log (openraft, RocksDB, checkpoints as snapshots, the peer client);
//! `controller` turns requests into records; `api` holds the HTTP routers (API and peer);
//! `node` the data directory, settings and the serving node; `cli` the operator tools.

pub mod api;
pub mod app;
pub mod cli;
pub mod client;
pub mod contract;
pub mod controller;
pub mod image;
pub mod node;
pub mod raft;
pub mod record;
pub mod telemetry;
pub mod tls;
