//! Operator tools behind the `kraftd` binary: `dump`, `storage` (info), `bench`, `dev`, the admin commands
//! (`ops`: quorum, snapshot, topics, brokers, configs, elect; `metadata`), and the local
//! multi-process quorum they and the tests run.

pub mod bench;
pub mod bench_controller;
pub mod bench_quorum;
pub mod certs;
pub mod command;
pub mod common;
pub mod dev;
pub mod dump;
pub mod fleet;
pub mod local_quorum;
pub mod metadata;
pub mod ops;
pub mod shell;
pub mod storage;
pub mod table;
pub mod token;

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable lines and tables.
    Table,
    /// One JSON document, for machines.
    Json,
}
