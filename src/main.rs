//! The `supportd` command: parses the command line, sets up logging and calls the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use supportd::cli::{self, Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon reports every message; one-shot commands print their own results and only
    // need warnings on stderr.
    let default_level = if matches!(cli.command, Command::Run) {
        "info"
    } else {
        "warn"
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colour only for a person at a terminal, never into a log file or the journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Not eprintln!, which panics when standard error is a closed pipe.
            let _ = writeln!(std::io::stderr(), "supportd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
