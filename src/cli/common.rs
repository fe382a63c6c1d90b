//! What every command of the CLI shares: the connection flags, the error a command fails
//! with (and its exit code), and the JSON writer.

use std::io::{self, Write};

use clap::Args;
use serde::Serialize;

use super::Output;
use crate::client::{Client, ClientError};

/// Default `--api`: the API listener of a controller started with the defaults.
pub const DEFAULT_API: &str = "http://127.0.0.1:9093";

/// Why a command failed; decides its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The API answered with an error, or what was asked for does not exist (exit 1).
    Refused,
    /// The command line is wrong (exit 2, as clap's own errors).
    Usage,
    /// No answer: connection refused, reset or timed out (exit 3).
    Unreachable,
    /// A local file, or an answer that is not what the contract says (exit 4).
    Failed,
    /// `quorum health`: writes commit, but a voter is down or behind (exit 5).
    Degraded,
}

impl Failure {
    /// The process exit code; the only mapping from failures to exit codes.
    pub fn exit_code(self) -> u8 {
        match self {
            Failure::Refused => 1,
            Failure::Usage => 2,
            Failure::Unreachable => 3,
            Failure::Failed => 4,
            Failure::Degraded => 5,
        }
    }
}

/// A failed command: `kraftd: CODE: message` on stderr.
#[derive(Debug, Clone)]
pub struct CliError {
    /// What kind of failure (the exit code).
    pub failure: Failure,
    /// Kafka-style code: the API's own, or one naming the local failure.
    pub code: String,
    /// For a person.
    pub message: String,
}

impl CliError {
    pub fn new(failure: Failure, code: &str, message: impl Into<String>) -> Self {
        CliError {
            failure,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Failure::Usage, "USAGE", message)
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match &e {
            ClientError::Api(a) => {
                let code = if a.code.is_empty() {
                    format!("HTTP_{}", a.status.as_u16())
                } else {
                    a.code.clone()
                };
                CliError {
                    failure: Failure::Refused,
                    code,
                    message: a.message.clone(),
                }
            }
            ClientError::Transport { source, .. } => {
                let code = if source.is_timeout() {
                    "REQUEST_TIMED_OUT"
                } else {
                    "NETWORK_EXCEPTION"
                };
                CliError::new(Failure::Unreachable, code, e.to_string())
            }
            ClientError::Decode { .. } => {
                CliError::new(Failure::Failed, "UNEXPECTED_ANSWER", e.to_string())
            }
        }
    }
}

/// The code of a write to a stdout whose reader has gone (`kraftd ... | head`): the command
/// ends quietly with exit 0, as `cat` does.
pub const CLOSED_PIPE: &str = "CLOSED_PIPE";

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return CliError::new(Failure::Failed, CLOSED_PIPE, e.to_string());
        }
        CliError::new(Failure::Failed, "IO_ERROR", e.to_string())
    }
}

/// Where to send requests and how to print answers (accepted after any subcommand).
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// API listener of any controller: a URL or HOST:PORT. Several, separated by commas,
    /// are tried in order and the first that answers is used (like etcdctl's
    /// --endpoints).
    #[arg(
        long,
        global = true,
        env = "KRAFTD_API",
        default_value = DEFAULT_API,
        value_delimiter = ','
    )]
    pub api: Vec<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub output: Output,
    /// Bearer token of a principal of the API (when the cluster has a principals file).
    #[arg(long, global = true, env = "KRAFTD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The cluster's CA (PEM): talk TLS to the API and check its certificate against it.
    #[arg(long, global = true, env = "KRAFTD_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// A client certificate (PEM) proving who this is (with --key-file and --ca-file).
    #[arg(long, global = true, env = "KRAFTD_CERT_FILE", requires = "key_file")]
    pub cert_file: Option<std::path::PathBuf>,
    /// The key of --cert-file (PEM).
    #[arg(long, global = true, env = "KRAFTD_KEY_FILE", requires = "cert_file")]
    pub key_file: Option<std::path::PathBuf>,
}

/// How long `--api` waits for each endpoint's `/healthz` when it was given several.
const PICK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Conn {
    /// A client of the first `--api` endpoint that answers `/healthz`; with one endpoint,
    /// of that one, unasked (its own errors then say what is wrong).
    pub async fn client(&self) -> Result<Client, CliError> {
        let endpoints: Vec<&str> = self
            .api
            .iter()
            .map(|a| a.trim())
            .filter(|a| !a.is_empty())
            .collect();
        match endpoints.as_slice() {
            [] => Err(CliError::usage("--api names no endpoint")),
            [one] => self.client_of(one),
            many => {
                let mut why = Vec::new();
                for a in many {
                    let c = self.client_of(a)?;
                    match c.clone().with_call_timeout(PICK_TIMEOUT).healthz().await {
                        Ok(()) => return Ok(c),
                        Err(e) => why.push(format!("{a}: {e}")),
                    }
                }
                Err(CliError::new(
                    Failure::Unreachable,
                    "NETWORK_EXCEPTION",
                    format!("no --api endpoint answered: {}", why.join("; ")),
                ))
            }
        }
    }

    /// A client of `api` with this command's TLS settings and token.
    fn client_of(&self, api: &str) -> Result<Client, CliError> {
        let mut c = Client::new(api)?;
        if let Some(ca) = &self.ca_file {
            let pair = self.cert_file.as_deref().zip(self.key_file.as_deref());
            let tls = crate::tls::client_config_from_files(ca, pair)
                .map_err(|e| CliError::new(Failure::Failed, "TLS_CONFIG", e.to_string()))?;
            c = c.with_tls(tls)?;
        } else if self.cert_file.is_some() {
            return Err(CliError::usage(
                "--cert-file needs --ca-file (the CA the server's certificate is checked against)",
            ));
        }
        Ok(match &self.token {
            Some(t) => c.with_token(t.clone()),
            None => c,
        })
    }
}

/// Pretty JSON and a newline: every command's `--output json`.
pub fn write_json(out: &mut dyn Write, v: &impl Serialize) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, v)
        .map_err(|e| CliError::new(Failure::Failed, "IO_ERROR", e.to_string()))?;
    writeln!(out)?;
    Ok(())
}
