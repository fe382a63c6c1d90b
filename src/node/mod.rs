//! A controller process: its settings (`config`), its data directory identity and
//! formatting (`meta`), and the serving node (`server`).

pub mod bootstrap;
pub mod config;
pub mod meta;
pub mod server;
