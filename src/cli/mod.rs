//! Offline operator tools behind the `kraftd` binary.
