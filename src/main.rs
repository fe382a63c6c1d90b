//! The `kraftd` command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use kraftd::cli::{self, Output};

/// kraftd: a KRaft-style controller quorum for a Kafka-like broker fleet.
#[derive(Parser)]
#[command(name = "kraftd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Decode checkpoint files or raw batch files offline (like kafka-dump-log
    /// --cluster-metadata-decoder).
    Dump {
        /// Files to decode.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Benchmarks that print their figures.
    Bench {
        #[command(subcommand)]
        bench: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Build a synthetic image, write it as a checkpoint, read it back; print the figures.
    Snapshot(cli::bench::SnapshotArgs),
}

fn main() -> ExitCode {
    let args = Cli::parse();
    match args.command {
        None => {
            eprintln!(
                "kraftd: the replicated quorum (serve, format, dev) is not built yet; \
                 available now: `kraftd dump FILE...` and `kraftd bench snapshot`. See --help."
            );
            ExitCode::from(2)
        }
        Some(Command::Dump { files, output }) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match cli::dump::run(&files, output, &mut out) {
                Ok(0) => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("kraftd dump: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Bench {
            bench: BenchCommand::Snapshot(a),
        }) => match cli::bench::snapshot(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kraftd bench snapshot: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
