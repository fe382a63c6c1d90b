//! The `kraftd` binary: the command line is `kraftd::cli::command`.

fn main() -> std::process::ExitCode {
    kraftd::cli::command::main()
}
