//! The `pulse` binary: parses the command line, sets up logging, and glues the library crates
//! together (spec → plan → runtime → run store → tables). No experiment logic lives here.

mod aggregate;
mod assets_cmd;
mod cli;
mod commands;
mod plugin_cmd;
mod rationales;
mod sync;
mod table;

use clap::Parser;
use std::process::ExitCode;

// glibc's allocator returns the large training buffers to the OS after every step and faults
// them back in on the next one; measured on SASRec/ml-100k this cost a third of each epoch.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes documented in `pulse --help`.
pub mod exit {
    pub const OK: u8 = 0;
    pub const RUN_FAILED: u8 = 1;
    pub const INVALID: u8 = 2;
    pub const INTERNAL: u8 = 3;
    /// Interrupted by Ctrl-C (128 + SIGINT), SIGTERM or SIGHUP.
    pub const INTERRUPTED: u8 = 130;
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = std::env::var("PULSE_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            // Third-party crates stay at warn unless asked for.
            EnvFilter::new(format!("warn,pulse={default},pulse_runtime={default},pulse_datasets={default},pulse_assets={default},pulse_recommenders={default},pulse_data={default}"))
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(verbose > 0)
        .without_time()
        .init();
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    match commands::dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::INTERNAL)
        }
    }
}
