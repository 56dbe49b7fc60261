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
    /// Testing aid: take "now" to be this RFC 3339 time, in every command and in the daemon.
    #[arg(
        long,
        global = true,
        env = "SUPPORTD_NOW",
        hide = true,
        value_name = "RFC3339",
        value_parser = crate::clock::parse_rfc3339
    )]
    pub now: Option<i64>,
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
    /// Response times: open tickets by due time (overdue first), then per category how often
    /// the promise was kept; `sla escalate` runs the escalation check once.
    #[command(args_conflicts_with_subcommands = true)]
    Sla {
        #[command(subcommand)]
        command: Option<SlaCommand>,
        /// Start of the period of the per-category figures: a date (2025-11-01) or an RFC 3339
        /// time. Default: 30 days ago.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Customer accounts: import them from CSV, show one.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SlaCommand {
    /// Check every response clock once: queue the "at risk" and "breached" notifications due
    /// (each once per ticket), as the daemon does every minute. For cron and tests.
    Escalate {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Import (add or update) accounts from a CSV file with a header row naming at least
    /// `email`; a malformed row imports nothing of the file.
    Import {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// One account, with every column of its import.
    Show {
        email: String,
        #[arg(long)]
        json: bool,
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
    /// Answer the customer as AGENT, exactly as if the agent had mailed the text (commands
    /// at its top apply); the text from FILE, or standard input.
    Reply {
        #[arg(value_name = "REF")]
        ticket: String,
        /// The agent's address (listed in [agents]).
        #[arg(long = "from", value_name = "AGENT")]
        agent: String,
        #[arg(value_name = "FILE", default_value = "-")]
        file: String,
        #[arg(long)]
        json: bool,
    },
    /// Add an internal note as AGENT: stored and shown to the team, never sent to the customer.
    Note {
        #[arg(value_name = "REF")]
        ticket: String,
        #[arg(long = "from", value_name = "AGENT")]
        agent: String,
        #[arg(value_name = "FILE", default_value = "-")]
        file: String,
        #[arg(long)]
        json: bool,
    },
    /// Close the ticket.
    Close {
        #[arg(value_name = "REF")]
        ticket: String,
        #[arg(long)]
        json: bool,
    },
    /// Open the ticket again.
    Open {
        #[arg(value_name = "REF")]
        ticket: String,
        #[arg(long)]
        json: bool,
    },
    /// Waiting on the customer: the response clock pauses until they answer.
    Pending {
        #[arg(value_name = "REF")]
        ticket: String,
        #[arg(long)]
        json: bool,
    },
    /// Give the ticket to an agent (address, or a name from [agents] names).
    Assign {
        #[arg(value_name = "REF")]
        ticket: String,
        agent: String,
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
