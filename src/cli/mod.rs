//! Offline operator tools behind the `kraftd` binary: `dump` and `bench`.

pub mod bench;
pub mod dump;

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable lines and tables.
    Table,
    /// One JSON document, for machines.
    Json,
}
