//! The `kraftd` command line: its arguments and what each command runs. `src/main.rs` only
//! calls [`main`]. It lives in the library so that the binary does not compile again the
//! generic code (the runtime, the server, the node's futures) the library already holds: in
//! release builds rustc shares no generic instances between crates, and the binary was
//! about 70 CPU-seconds of a first build.

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{self, Output};
use crate::node::meta;

/// kraftd: a KRaft-style controller quorum for a Kafka-like broker fleet.
#[derive(Parser)]
#[command(name = "kraftd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a controller node (the default: a self-formatting single node in ./kraftd-data).
    Serve(ServeArgs),
    /// Format a data directory: meta.properties and, for a new cluster, the bootstrap voter
    /// set (like kafka-storage format --initial-controllers / --no-initial-controllers).
    Format {
        /// The data directory to format.
        #[arg(long)]
        data_dir: PathBuf,
        /// Cluster id in Kafka's form (see `kraftd random-uuid`); may start with '-'.
        #[arg(long, allow_hyphen_values = true)]
        cluster_id: String,
        /// This controller's node id.
        #[arg(long)]
        node_id: u64,
        /// The bootstrap voters of a NEW cluster, for its first start only:
        /// ID@HOST:PEER_PORT[:DIRECTORY_ID],... Never for a replaced disk: use --join.
        #[arg(long, required_unless_present = "join", conflicts_with = "join")]
        voters: Option<String>,
        /// Join an existing cluster (a replaced disk or a new controller): a fresh
        /// directory id and no bootstrap voters. The node starts as an observer with an
        /// empty log and becomes a voter when added (`kraftd quorum add-voter`).
        #[arg(long)]
        join: bool,
        /// Leave an already formatted directory as it is instead of failing.
        #[arg(long)]
        ignore_formatted: bool,
    },
    /// After a majority of the voters lost their disks: make this stopped controller,
    /// which kept its disk, the only voter (like etcd's --force-new-cluster). It commits
    /// its whole log when it starts; then format the others with --join and add them back.
    /// Refused while kraftd runs on the directory or while another voter still answers
    /// with its recorded disk. Without --yes it only prints what it would do.
    #[command(visible_alias = "recover")]
    RecoverQuorum {
        /// The data directory of the controller that kept its disk (kraftd stopped).
        #[arg(long)]
        data_dir: PathBuf,
        /// Take voters that do not answer as lost (if one kept its disk and comes back, it
        /// is no longer a voter: re-format it with --join and add it).
        #[arg(long)]
        force: bool,
        /// Write the new membership. Without it the command checks everything, prints the
        /// last committed offset it knows, its log end and what may have been lost, writes
        /// nothing and exits 1.
        #[arg(long)]
        yes: bool,
        /// The settings file the controller runs with: its `tls_*` settings are used to
        /// ask the other voters under mutual TLS.
        #[arg(long, conflicts_with_all = ["tls_cert_file", "tls_key_file", "tls_ca_file"])]
        config: Option<PathBuf>,
        /// Under mutual TLS: this controller's certificate (its `tls_cert_file`), to ask
        /// the other voters about their disks.
        #[arg(long, env = "KRAFTD_TLS_CERT_FILE", requires_all = ["tls_key_file", "tls_ca_file"])]
        tls_cert_file: Option<PathBuf>,
        /// Its key (`tls_key_file`).
        #[arg(long, env = "KRAFTD_TLS_KEY_FILE", requires_all = ["tls_cert_file", "tls_ca_file"])]
        tls_key_file: Option<PathBuf>,
        /// The cluster's CA (`tls_ca_file`).
        #[arg(long, env = "KRAFTD_TLS_CA_FILE", requires_all = ["tls_cert_file", "tls_key_file"])]
        tls_ca_file: Option<PathBuf>,
    },
    /// Print a new random id in Kafka's form, for --cluster-id.
    RandomUuid,
    /// Print a new random API token, and the [[principal]] entry (its SHA-256, never the
    /// token) to add to the principals file (`auth_principals_file`).
    NewToken {
        /// The principal's name, e.g. `alice` or `broker-1`.
        #[arg(long)]
        name: String,
        /// Its role: operator, reader or broker:<id>.
        #[arg(long)]
        role: String,
    },
    /// Decode checkpoint files, raw batch files or a node's Raft log directory offline
    /// (like kafka-dump-log --cluster-metadata-decoder). A directory (DATA_DIR or
    /// DATA_DIR/raft) is opened read-only, so a running node's log can be read too.
    Dump {
        /// Files (or Raft log directories) to decode.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Data directories, offline (like kafka-storage).
    Storage {
        #[command(subcommand)]
        cmd: StorageCommand,
    },
    /// Make a development CA and certificates for controllers, brokers, an operator and a
    /// reader, with principals.toml (TLS and authentication in one command).
    Certs(cli::certs::CertsArgs),
    /// Run a local three-node quorum as child processes in ./kraftd-dev/ until Ctrl-C.
    Dev(cli::dev::DevArgs),
    /// Benchmarks that print their figures.
    Bench {
        #[command(subcommand)]
        bench: BenchCommand,
    },
    #[command(flatten)]
    Admin(cli::ops::AdminCommand),
}

/// `kraftd storage ...`.
#[derive(Subcommand, Debug)]
enum StorageCommand {
    /// What a data directory holds (like kafka-storage info): meta.properties, the
    /// checkpoints, the Raft log (read-only; a running node's too) and whether a process
    /// has it open. Exit 1 when it finds a problem.
    Info {
        /// The data directory.
        dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
}

/// `kraftd serve`: every setting also comes from `--config FILE` (TOML) and `KRAFTD_*`.
#[derive(clap::Args, Default)]
struct ServeArgs {
    /// Data directory (formatted by `kraftd format`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// API listener HOST:PORT (brokers, operators).
    #[arg(long)]
    api_addr: Option<String>,
    /// Peer listener HOST:PORT (Raft between controllers).
    #[arg(long)]
    peer_addr: Option<String>,
    /// Brokers are fenced after this long without a heartbeat (broker.session.timeout.ms).
    #[arg(long)]
    broker_session_timeout_ms: Option<u64>,
    /// Serve on a non-loopback address without TLS or without authentication (the
    /// setting `insecure`; refused otherwise).
    #[arg(long)]
    insecure: bool,
    /// Settings file (TOML; keys as in the README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Load and check the settings, print them as TOML, and exit without starting.
    #[arg(long)]
    check_config: bool,
    /// Any other setting: --set key=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Build a synthetic image, write it as a checkpoint, read it back; print the figures.
    Snapshot(cli::bench::SnapshotArgs),
    /// Start a local three-node quorum; print write latency, throughput and failover time.
    Quorum(cli::bench_quorum::QuorumArgs),
    /// Start a local three-node quorum; print topic creations/s, the heartbeat load of
    /// simulated brokers, and commit propagation to long-polling brokers.
    Controller(cli::bench_controller::ControllerArgs),
}

fn recover_quorum(
    data_dir: &std::path::Path,
    tls: Option<crate::tls::TlsFiles>,
    force: bool,
    yes: bool,
) -> ExitCode {
    use crate::node::recover::{recover, Peer};
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kraftd recover-quorum: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(recover(data_dir, tls, force, yes)) {
        Ok(r) => {
            let me = r.node_id;
            let lost: Vec<String> = r
                .voters
                .iter()
                .map(|(id, p)| match p {
                    Peer::Reformatted => format!("node {id} (disk replaced)"),
                    Peer::Unreachable(why) => format!("node {id} (not answering: {why})"),
                    Peer::CannotTell(why) => format!("node {id} (passed over with --force: {why})"),
                    Peer::HoldsItsDisk | Peer::Unasked(_) => format!("node {id}"),
                })
                .collect();
            let committed = r.committed.map_or("none".into(), |c| c.to_string());
            if !r.written {
                println!(
                    "Node {me} in {} would become the only voter, with membership entry {} after \
                     its last entry {}.",
                    data_dir.display(),
                    r.entry,
                    r.last
                );
                println!(
                    "Its log ends at offset {}; the last entry it knows committed is {committed} \
                     (records before offset {}).",
                    r.last_end_offset, r.committed_end_offset
                );
                println!(
                    "Kept: every record up to offset {}, the {} past the last known commit \
                     included (they are committed when it starts).",
                    r.last_end_offset,
                    r.last_end_offset.saturating_sub(r.committed_end_offset)
                );
                println!(
                    "May be lost: writes that only the lost voters held, acknowledged or not, \
                     beyond offset {}. Voters passed over: {}.",
                    r.last_end_offset,
                    lost.join(", ")
                );
                eprintln!(
                    "kraftd recover-quorum: nothing written; run it again with --yes to write it"
                );
                return ExitCode::FAILURE;
            }
            println!(
                "Node {me} in {} is now the only voter: wrote membership entry {} after its last \
                 entry {} (last known committed: {committed}; the log ends at offset {}).",
                data_dir.display(),
                r.entry,
                r.last,
                r.last_end_offset
            );
            println!("Voters passed over: {}.", lost.join(", "));
            println!(
                "Every entry in its log, up to {}, is committed when it starts. Writes that only \
                 the lost voters held are gone.",
                r.last
            );
            println!(
                "Before starting it: a passed-over controller must not come back with its old \
                 disk (wipe it, or keep it stopped until it is formatted with --join); one that \
                 did could take leadership back and undo writes made after the recovery."
            );
            println!(
                "Next: start kraftd on this directory (it elects itself). Then, one at a time, \
                 format each other controller's disk with --join, start it, and add it: \
                 kraftd quorum add-voter --api <node {me}'s API> --id N --peer HOST:PORT --api-addr HOST:PORT"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kraftd recover-quorum: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the process arguments and runs the command; the binary's whole `main`.
pub fn main() -> ExitCode {
    let args = Cli::parse();
    match args.command {
        None => serve(ServeArgs::default(), true),
        Some(Command::Serve(a)) => serve(a, false),
        Some(Command::Format {
            data_dir,
            cluster_id,
            node_id,
            voters,
            join,
            ignore_formatted,
        }) => {
            let mode = match voters {
                Some(v) if !join => meta::parse_voters(&v).map(meta::FormatMode::Bootstrap),
                _ => Ok(meta::FormatMode::Join),
            };
            // A bootstrap voter set without this node: it can only join later.
            let outside = matches!(&mode, Ok(meta::FormatMode::Bootstrap(v))
                if !v.iter().any(|x| x.id == node_id));
            let res = mode.and_then(|mode| {
                meta::format_mode(&data_dir, &cluster_id, node_id, &mode, ignore_formatted)
            });
            match res {
                Ok(meta::Formatted::New(m)) => {
                    println!(
                        "Formatted {} for cluster {} as node {} (directory id {}){}",
                        data_dir.display(),
                        m.cluster_id,
                        m.node_id,
                        crate::record::uuid_fmt::kafka_uuid(&m.directory_id),
                        if join {
                            "; it joins as an observer: start it, then add it with \
                             `kraftd quorum add-voter`"
                        } else {
                            ""
                        }
                    );
                    if outside {
                        println!(
                            "Note: node {node_id} is not among the --voters. It starts as an \
                             observer and waits until the leader adds it \
                             (`kraftd quorum add-voter --id {node_id} --peer HOST:PORT`); it \
                             takes no part in the first election."
                        );
                    }
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
        Some(Command::RecoverQuorum {
            data_dir,
            force,
            yes,
            config,
            tls_cert_file,
            tls_key_file,
            tls_ca_file,
        }) => {
            let tls = match (config, tls_cert_file, tls_key_file, tls_ca_file) {
                (Some(path), ..) => {
                    // The settings file alone, as serve reads it before the environment.
                    match crate::node::config::Config::load(
                        Some(&path),
                        std::iter::empty(),
                        &Default::default(),
                    ) {
                        Ok((c, _)) => c.tls(),
                        Err(e) => {
                            eprintln!("kraftd recover-quorum: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
                (None, Some(cert), Some(key), Some(ca)) => {
                    Some(crate::tls::TlsFiles { cert, key, ca })
                }
                _ => None,
            };
            recover_quorum(&data_dir, tls, force, yes)
        }
        Some(Command::Certs(a)) => match cli::certs::run(&a) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kraftd certs: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::RandomUuid) => {
            println!("{}", meta::random_id());
            ExitCode::SUCCESS
        }
        Some(Command::NewToken { name, role }) => match cli::token::new_token(&name, &role) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kraftd new-token: {e}");
                ExitCode::from(2)
            }
        },
        Some(Command::Storage {
            cmd: StorageCommand::Info { dir, output },
        }) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match cli::storage::info(&dir, output, &mut out) {
                Ok(false) => ExitCode::SUCCESS,
                Ok(true) => ExitCode::FAILURE,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kraftd storage info: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Dump { files, output }) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match cli::dump::run(&files, output, &mut out) {
                Ok(0) => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                // `| head` read what it wanted and left.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kraftd dump: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Bench {
            bench: BenchCommand::Snapshot(a),
        }) => finish("bench snapshot", cli::bench::snapshot(&a)),
        Some(Command::Bench {
            bench: BenchCommand::Quorum(a),
        }) => finish("bench quorum", cli::bench_quorum::quorum(&a)),
        Some(Command::Bench {
            bench: BenchCommand::Controller(a),
        }) => finish("bench controller", cli::bench_controller::controller(&a)),
        Some(Command::Admin(cmd)) => cli::ops::main(cmd),
        Some(Command::Dev(a)) => finish("dev", cli::dev::run(&a)),
    }
}

/// The exit of a command that either succeeds or fails with one error, printed as
/// `kraftd COMMAND: error: causes`.
fn finish(command: &str, res: anyhow::Result<()>) -> ExitCode {
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kraftd {command}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the settings, sets up logging and runs the node. `single_node_default` is plain
/// `kraftd`: it formats `./kraftd-data` as node 1, the only voter, on first start.
fn serve(a: ServeArgs, single_node_default: bool) -> ExitCode {
    let mut overrides = std::collections::BTreeMap::new();
    if let Some(d) = &a.data_dir {
        overrides.insert("data_dir".to_string(), d.display().to_string());
    }
    if let Some(v) = &a.api_addr {
        overrides.insert("api_addr".to_string(), v.clone());
    }
    if let Some(v) = &a.peer_addr {
        overrides.insert("peer_addr".to_string(), v.clone());
    }
    if a.insecure {
        overrides.insert("insecure".to_string(), "true".to_string());
    }
    if let Some(v) = a.broker_session_timeout_ms {
        overrides.insert("broker_session_timeout_ms".to_string(), v.to_string());
    }
    for kv in &a.set {
        match kv.split_once('=') {
            Some((k, v)) => {
                overrides.insert(k.trim().replace('-', "_"), v.trim().to_string());
            }
            None => {
                eprintln!("kraftd serve: --set {kv:?} is not KEY=VALUE");
                return ExitCode::from(2);
            }
        }
    }
    let (config, warnings) = match crate::node::config::Config::load(
        a.config.as_deref(),
        std::env::vars(),
        &overrides,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kraftd serve: {e}");
            return ExitCode::from(2);
        }
    };
    if a.check_config {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        match toml::to_string(&config) {
            Ok(t) => {
                print!("{t}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("kraftd serve: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    init_logging(config.log_json);
    for w in warnings {
        tracing::warn!("{w}");
    }
    if single_node_default && meta::MetaProperties::read(&config.data_dir).is_err() {
        let voters = match meta::parse_voters(&format!("1@{}", config.peer_addr)) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("kraftd: {e}");
                return ExitCode::FAILURE;
            }
        };
        match meta::format(&config.data_dir, &meta::random_id(), 1, &voters, false) {
            Ok(f) => tracing::info!(
                "formatted {} as a single-node cluster: {:?}",
                config.data_dir.display(),
                f
            ),
            Err(e) => {
                eprintln!("kraftd: formatting {}: {e}", config.data_dir.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kraftd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(crate::app::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        // One line: the log's own copy of it would say the same again on the same stderr.
        Err(e) => {
            eprintln!("kraftd serve: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    // Colour only on a terminal: a log file or journald gets plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}
