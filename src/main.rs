//! The `auditship` binary: parse arguments, run the subcommand, map the result to an
//! exit code. Everything else lives in the library.

fn main() -> std::process::ExitCode {
    auditship::cli::main()
}
