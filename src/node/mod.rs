//! A controller process: its data directory identity and formatting (`meta`).

pub mod meta;
