//! A controller process: its settings (`config`), its data directory identity and
//! formatting (`meta`), the `Node` handle the listeners share (`handle`), start-up
//! (`boot`), the background duties (`duties`), the first-election gate (`bootstrap`),
//! the offline way back from a lost quorum (`recover`), and handing leadership to another
//! voter (`leadership`).

pub mod boot;
pub mod bootstrap;
pub mod config;
pub mod duties;
pub mod handle;
pub mod health;
pub mod leadership;
pub mod meta;
pub mod recover;
pub mod tracker;
