//! The `kraftd` command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use kraftd::cli::{self, Output};
use kraftd::node::meta;

/// kraftd: a KRaft-style controller quorum for a Kafka-like broker fleet.
#[derive(Parser)]
#[command(name = "kraftd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Format a data directory: meta.properties and the bootstrap voter set (like
    /// kafka-storage format --initial-controllers).
    Format {
        /// The data directory to format.
        #[arg(long)]
        data_dir: PathBuf,
        /// Cluster id in Kafka's form (see `kraftd random-uuid`).
        #[arg(long)]
        cluster_id: String,
        /// This controller's node id.
        #[arg(long)]
        node_id: u64,
        /// The bootstrap voters: ID@HOST:PEER_PORT,...
        #[arg(long)]
        voters: String,
        /// Leave an already formatted directory as it is instead of failing.
        #[arg(long)]
        ignore_formatted: bool,
    },
    /// Print a new random id in Kafka's form, for --cluster-id.
    RandomUuid,
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
    /// Run a local three-node quorum as child processes in ./kraftd-dev/ until Ctrl-C.
    Dev(cli::dev::DevArgs),
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
    /// Start a local three-node quorum; print write latency, throughput and failover time.
    Quorum(cli::bench_quorum::QuorumArgs),
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
        Some(Command::Format {
            data_dir,
            cluster_id,
            node_id,
            voters,
            ignore_formatted,
        }) => {
            let res = meta::parse_voters(&voters)
                .and_then(|v| meta::format(&data_dir, &cluster_id, node_id, &v, ignore_formatted));
            match res {
                Ok(meta::Formatted::New(m)) => {
                    println!(
                        "Formatted {} for cluster {} as node {} (directory id {})",
                        data_dir.display(),
                        m.cluster_id,
                        m.node_id,
                        kraftd::record::uuid_fmt::kafka_uuid(&m.directory_id)
                    );
                    ExitCode::SUCCESS
                }
                Ok(meta::Formatted::Kept(_)) => {
                    println!(
                        "{} is already formatted; left as it is (--ignore-formatted)",
                        data_dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kraftd format: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::RandomUuid) => {
            println!("{}", meta::random_id());
            ExitCode::SUCCESS
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
        Some(Command::Bench {
            bench: BenchCommand::Quorum(a),
        }) => match cli::bench_quorum::quorum(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kraftd bench quorum: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Dev(a)) => match cli::dev::run(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kraftd dev: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
