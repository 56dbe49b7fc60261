//! The `supportd` command line: `args` defines it, [`run`] dispatches each subcommand to its
//! function in `commands`, and `print` writes the results. Errors that reach `main` are printed
//! with their whole context chain.
//!
//! Output never goes through `println!`: a reader that closes early (`supportd tickets list |
//! head -1`) ends a command quietly with its own exit code, where `println!` would panic.

mod agent;
mod args;
mod commands;
mod print;

use std::io::Write;
use std::process::ExitCode;

pub use args::{
    AccountsCommand, Cli, Command, HttpCommand, LogFormat, OutboxCommand, QuarantineCommand,
    RulesCommand, SlaCommand, TicketsCommand,
};
use print::Out;

/// sysexits(3) codes the MTA understands: 75 makes it retry later, 65 bounces for good.
pub const EX_DATAERR: u8 = 65;
pub const EX_NOINPUT: u8 = 66;
pub const EX_TEMPFAIL: u8 = 75;

/// Runs the parsed command line, writing results on standard output.
///
/// # Errors
/// Whatever stopped the command (configuration, database, input), with its context; also a
/// failure to write the results, except a reader that closed early, which is not one.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Read once here; everything below takes the time from the installed clock.
    crate::clock::install(
        cli.now
            .map_or(crate::clock::Clock::System, crate::clock::Clock::Fixed),
    );
    let mut out = Out::stdout();
    let config = cli.config.as_path();
    let code = match cli.command {
        Command::Ingest { inputs, json } => commands::ingest(config, &inputs, json, &mut out),
        Command::Classify {
            file,
            explain,
            json,
        } => commands::classify(config, &file, explain, json, &mut out),
        Command::Rules {
            command: RulesCommand::Check { dir },
        } => commands::rules_check(config, dir, &mut out),
        Command::Tickets { command } => commands::tickets(config, command, &mut out),
        Command::Outbox { command } => commands::outbox(config, command, &mut out),
        Command::Stats { json } => commands::stats(config, json, &mut out),
        Command::Run => crate::daemon::run_blocking(config),
        Command::Status { json } => commands::status(config, json, &mut out),
        Command::Quarantine { command } => commands::quarantine(config, command, &mut out),
        Command::Sla {
            command: Some(SlaCommand::Escalate { json }),
            ..
        } => commands::sla_escalate(config, json, &mut out),
        Command::Sla {
            command: None,
            since,
            json,
        } => commands::sla(config, since.as_deref(), json, &mut out),
        Command::Accounts { command } => commands::accounts(config, command, &mut out),
        Command::Http { command } => commands::http(config, command, &mut out),
    }?;
    out.flush()?;
    Ok(code)
}
