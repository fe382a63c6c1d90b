//! The API contract shared by the server, the client and the CLI. So far: the closed set
//! of error codes.

pub mod error;

pub use error::ErrorCode;
