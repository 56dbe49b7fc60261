//! The command line as clap reads it: global options, subcommands and their flags. The help
//! text comes from these doc comments.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "supportd",
    version,
    about = "E-mail-first support ticketing daemon"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "SUPPORTD_CONFIG",
        default_value = "supportd.toml"
    )]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest messages from files, Maildirs, folders, or stdin (`-`, for an MTA pipe).
    Ingest {
        #[arg(required = true)]
        inputs: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show which category a message would get, without writing anything.
    Classify {
        file: PathBuf,
        /// Every rule that matched, its field, the matched text and the totals.
        #[arg(long)]
        explain: bool,
        #[arg(long)]
        json: bool,
    },
    /// Rules files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Tickets.
    Tickets {
        #[command(subcommand)]
        command: TicketsCommand,
    },
    /// Queued, sent, failed and suppressed mail.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Counts of messages, tickets and acknowledgements.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon: IMAP intake, the SMTP sender, and the HTTP server when `[http] listen`
    /// is set (with neither [imap] nor [smtp], the HTTP server alone).
    Run,
    /// The HTTP intake's helpers.
    Http {
        #[command(subcommand)]
        command: HttpCommand,
    },
    /// Mailbox watermarks, last fetch and errors, outbox counts, quarantined messages.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Messages that failed in the pipeline (stored raw with the error): list them, or run
    /// them through it again once the cause is fixed.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    /// Ingest quarantined messages again; one that fails again stays quarantined.
    Retry {
        /// Message ids, as `quarantine list` prints them.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<i64>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum HttpCommand {
    /// Print a signed link to the form page for a customer, as the dashboard makes them
    /// (HMAC-SHA256 with `[http] link_secret_file`).
    SignLink {
        /// The customer's e-mail address.
        email: String,
        /// Their name, shown on the page and used in the mail.
        #[arg(long)]
        name: Option<String>,
        /// How long the link stays valid: "30m", "1h", "7d".
        #[arg(long, default_value = "1h", value_parser = crate::config::parse_duration)]
        ttl: std::time::Duration,
        /// Print `{url, token, expires_at}`.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Lint the rules folder (default: the configured one); prints file:line: reason.
    Check { dir: Option<PathBuf> },
}

#[derive(Debug, Subcommand)]
pub enum TicketsCommand {
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        json: bool,
    },
    Show {
        #[arg(value_name = "REF")]
        ticket: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    Show {
        id: i64,
        /// Print the exact bytes that will be sent.
        #[arg(long)]
        raw: bool,
    },
}
