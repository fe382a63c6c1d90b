//! A controller process: its settings (`config`), its data directory identity and
//! formatting (`meta`).

pub mod config;
pub mod meta;
