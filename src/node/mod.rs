//! A controller process: its settings (`config`), its data directory identity and
//! formatting (`meta`), the serving node (`server`), and the offline way back from a lost
//! quorum (`recover`).

pub mod bootstrap;
pub mod config;
pub mod meta;
pub mod recover;
pub mod server;
