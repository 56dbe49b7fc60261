//! One function per subcommand. Each returns the process exit code; errors that reach `main`
//! are printed with their whole context chain.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::classify::Classifier;
use crate::config::Config;
use crate::mailbox::files::{self, InputError};
use crate::pipeline::{AckDecision, Action, Incoming, Pipeline};
use crate::store::{self, Store, StoreError};

/// sysexits(3) codes the MTA understands: 75 makes it retry later, 65 bounces for good.
pub const EX_DATAERR: u8 = 65;
pub const EX_NOINPUT: u8 = 66;
pub const EX_TEMPFAIL: u8 = 75;

/// Messages per transaction when ingesting files.
const FILE_BATCH: usize = 500;

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
    /// Run the daemon: IMAP intake and the SMTP sender.
    Run,
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

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ingest { inputs, json } => ingest(&cli.config, &inputs, json),
        Command::Classify {
            file,
            explain,
            json,
        } => classify(&cli.config, &file, explain, json),
        Command::Rules {
            command: RulesCommand::Check { dir },
        } => rules_check(&cli.config, dir),
        Command::Tickets { command } => tickets(&cli.config, command),
        Command::Outbox { command } => outbox(&cli.config, command),
        Command::Stats { json } => stats(&cli.config, json),
        Command::Run => crate::daemon::run_blocking(&cli.config),
        Command::Status { json } => status(&cli.config, json),
        Command::Quarantine { command } => quarantine(&cli.config, command),
    }
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(&config.storage.database)
        .with_context(|| format!("opening {}", config.storage.database.display()))
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn ingest(config_path: &Path, inputs: &[String], json: bool) -> anyhow::Result<ExitCode> {
    // Anything that fails before a message is stored is temporary from the MTA's point of view:
    // it keeps the mail and retries, where a permanent code would bounce it to the customer.
    let prepared = (|| {
        let config = load_config(config_path)?;
        let mut store = open_store(&config)?;
        let pipeline = Pipeline::new(&config, &mut store)?;
        anyhow::Ok((store, pipeline))
    })();
    let (mut store, pipeline) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("supportd: nothing stored: {e:#}");
            return Ok(ExitCode::from(EX_TEMPFAIL));
        }
    };
    let (messages, input_errors) = files::collect(inputs);
    let mut outcomes = Vec::new();
    let mut temp_failure = None;
    if messages.len() > FILE_BATCH {
        // A bulk import: checkpoints off the writer, as in the daemon.
        if let Err(e) = store.checkpoint_in_background() {
            tracing::warn!("WAL checkpoints stay on the writer: {e}");
        }
    }
    let mut pending = messages.into_iter();
    // Each batch's analysis starts while the one before it commits.
    let take = |pending: &mut std::vec::IntoIter<Incoming>| {
        let batch: Vec<_> = pending.by_ref().take(FILE_BATCH).collect();
        let sources: Vec<String> = batch.iter().map(|m| m.source.clone()).collect();
        (!batch.is_empty()).then(|| (sources, pipeline.prepare(batch)))
    };
    let mut next = take(&mut pending);
    while let Some((sources, current)) = next.take() {
        let result = pipeline.ingest_prepared(&mut store, current, |_| {
            next = take(&mut pending);
            Ok(())
        });
        match result {
            Ok(o) => outcomes.extend(o),
            Err(e) => {
                for s in &sources {
                    eprintln!("supportd: {s}: not stored: {e}");
                }
                temp_failure = Some(e);
            }
        }
        if next.is_none() {
            next = take(&mut pending);
        }
    }
    if json {
        print_json(&serde_json::json!({
            "messages": outcomes,
            "errors": input_errors.iter().map(|e| serde_json::json!({"input": e.path(), "error": e.to_string()})).collect::<Vec<_>>(),
        }))?;
    } else {
        for o in &outcomes {
            print_outcome(o);
        }
    }
    for e in &input_errors {
        eprintln!("supportd: {e}");
    }
    let code = if let Some(e) = temp_failure {
        if matches!(e, StoreError::Busy(_)) || e.is_temporary() {
            EX_TEMPFAIL
        } else {
            1
        }
    } else if input_errors
        .iter()
        .any(|e| matches!(e, InputError::Unreadable { .. }))
    {
        EX_NOINPUT
    } else if !input_errors.is_empty() {
        EX_DATAERR
    } else {
        0
    };
    Ok(ExitCode::from(code))
}

/// One line per message: ticket, action, category, source, and what became of the ack.
fn print_outcome(o: &crate::pipeline::Outcome) {
    let note = match (&o.ack, o.action) {
        (_, Action::Automated) => {
            format!("not acknowledged: {}", o.automated.as_deref().unwrap_or(""))
        }
        (_, Action::Quarantined) => format!("quarantined: {}", o.error.as_deref().unwrap_or("")),
        (AckDecision::Queued, _) => "ack queued".into(),
        (AckDecision::Suppressed(r), _) => format!("ack suppressed: {r}"),
        (AckDecision::NotApplicable, Action::Reply) => "no ack (reply)".into(),
        (AckDecision::NotApplicable, _) => String::new(),
    };
    println!(
        "{}\t{}\t{}\t{}\t{}",
        o.ticket.as_deref().unwrap_or("-"),
        o.action.as_str(),
        o.category.as_deref().unwrap_or("-"),
        o.source,
        note
    );
}

fn quarantine(config_path: &Path, command: QuarantineCommand) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let mut store = open_store(&config)?;
    match command {
        QuarantineCommand::List { json } => {
            let items = store::quarantine_list(store.conn())?;
            if json {
                print_json(&items)?;
            } else {
                for q in &items {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        q.id,
                        store::rfc3339(q.received_at),
                        q.source,
                        if q.from.is_empty() { "-" } else { &q.from },
                        q.subject,
                        q.error
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Retry { ids, all, json } => {
            let held: Vec<i64> = store::quarantine_list(store.conn())?
                .iter()
                .map(|q| q.id)
                .collect();
            let wanted: Vec<i64> = if all { held.clone() } else { ids };
            let mut code = ExitCode::SUCCESS;
            for id in wanted.iter().filter(|id| !held.contains(id)) {
                eprintln!("supportd: message {id} is not quarantined");
                code = ExitCode::from(1);
            }
            let wanted: Vec<i64> = wanted.into_iter().filter(|id| held.contains(id)).collect();
            let pipeline = Pipeline::new(&config, &mut store)?;
            let mut outcomes = Vec::new();
            for chunk in wanted.chunks(FILE_BATCH) {
                outcomes.extend(
                    pipeline
                        .retry_quarantined(&mut store, chunk)
                        .context("retrying quarantined messages")?,
                );
            }
            if json {
                print_json(&serde_json::json!({ "messages": outcomes }))?;
            } else {
                outcomes.iter().for_each(print_outcome);
            }
            Ok(code)
        }
    }
}

fn classify(
    config_path: &Path,
    file: &Path,
    explain: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let classifier = Classifier::load_dir(&config.rules.dir)
        .with_context(|| format!("loading rules from {}", config.rules.dir.display()))?;
    let raw = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let msg = crate::parse::parse(&raw);
    let result = classifier.classify_message(&msg, &config.support.address);
    if json {
        print_json(&result)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("category: {}", result.category);
    if let Some(hint) = &result.hint {
        println!("decided by explicit hint: {hint}");
    }
    if explain {
        for m in &result.matches {
            println!(
                "  rule {}/{} matched {} {:?} ({:+})",
                m.category, m.rule, m.field, m.matched, m.weight
            );
        }
        for (category, total) in &result.scores {
            println!("  total {category}: {total}");
        }
        if result.matches.is_empty() {
            println!("  no rule matched: fallback category");
        }
    }
    for tip in &result.tips {
        println!("tip: {}", tip.name);
    }
    Ok(ExitCode::SUCCESS)
}

fn rules_check(config_path: &Path, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = match dir {
        Some(d) => d,
        None => load_config(config_path)?.rules.dir,
    };
    let problems = Classifier::check_dir(&dir);
    if problems.is_empty() {
        let classifier = Classifier::load_dir(&dir)?;
        println!(
            "{}: {} categories, all valid",
            dir.display(),
            classifier.categories().len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        eprintln!("{p}");
    }
    Ok(ExitCode::FAILURE)
}

fn tickets(config_path: &Path, command: TicketsCommand) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config)?;
    match command {
        TicketsCommand::List {
            status,
            category,
            json,
        } => {
            let list = store::list_tickets(store.conn(), status.as_deref(), category.as_deref())?;
            if json {
                print_json(&list)?;
            } else {
                for t in &list {
                    println!(
                        "{}\t{}\t{}\t{}\t{} msg\t{}",
                        t.ticket_ref, t.status, t.category, t.customer, t.message_count, t.subject
                    );
                }
            }
        }
        TicketsCommand::Show { ticket, json } => {
            let Some(t) = store::ticket_by_ref(store.conn(), &ticket)? else {
                eprintln!("supportd: no ticket {ticket}");
                return Ok(ExitCode::FAILURE);
            };
            let messages = store::ticket_messages(store.conn(), t.id)?;
            if json {
                let mut value = serde_json::to_value(&t)?;
                value["messages"] = serde_json::to_value(&messages)?;
                print_json(&value)?;
            } else {
                println!(
                    "{} [{}] {} — {} <{}>, due {}",
                    t.ticket_ref,
                    t.status,
                    t.category,
                    t.subject,
                    t.customer,
                    t.due_at.map(store::rfc3339).unwrap_or_else(|| "-".into())
                );
                for m in &messages {
                    println!(
                        "\n--- {} {} {} from {}{}\n{}",
                        m.direction,
                        m.action,
                        m.message_id,
                        m.from,
                        m.automated
                            .as_deref()
                            .map(|a| format!(" (automated: {a})"))
                            .unwrap_or_default(),
                        m.text
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn outbox(config_path: &Path, command: OutboxCommand) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config)?;
    match command {
        OutboxCommand::List { status, json } => {
            let list = store::list_outbox(store.conn(), status.as_deref())?;
            if json {
                print_json(&list)?;
            } else {
                for o in &list {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        o.id,
                        o.kind,
                        o.status,
                        o.ticket.as_deref().unwrap_or("-"),
                        o.to,
                        o.subject
                    );
                }
            }
        }
        OutboxCommand::Show { id, raw } => {
            let Some(bytes) = store::outbox_raw(store.conn(), id)? else {
                eprintln!("supportd: no outbox row {id}");
                return Ok(ExitCode::FAILURE);
            };
            if raw {
                use std::io::Write;
                std::io::stdout().write_all(&bytes)?;
            } else {
                print!("{}", String::from_utf8_lossy(&bytes));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stats(config_path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config)?;
    let s = store::stats(store.conn())?;
    if json {
        print_json(&s)?;
    } else {
        let v = serde_json::to_value(&s)?;
        if let Some(map) = v.as_object() {
            for (k, v) in map {
                println!("{k}: {v}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status(config_path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config)?;
    let mailboxes = store::all_mailboxes(store.conn())?;
    let outbox: serde_json::Map<String, serde_json::Value> = store::outbox_counts(store.conn())?
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    let quarantined = store::quarantined(store.conn(), 20)?;
    let quarantined_count = store::stats(store.conn())?.quarantined;
    if json {
        print_json(&serde_json::json!({
            "mailboxes": mailboxes,
            "outbox": outbox,
            "quarantined": quarantined_count,
            "recent_quarantined": quarantined.iter().map(|(id, source, error)| serde_json::json!({"id": id, "source": source, "error": error})).collect::<Vec<_>>(),
        }))?;
    } else {
        if mailboxes.is_empty() {
            println!("mailboxes: none fetched yet");
        }
        for m in &mailboxes {
            println!(
                "mailbox {}: uidvalidity {}, last uid {}, last fetch {}{}{}",
                m.name,
                m.uidvalidity
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "-".into()),
                m.last_uid,
                m.last_fetch_at
                    .map(store::rfc3339)
                    .unwrap_or_else(|| "never".into()),
                m.last_error
                    .as_deref()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default(),
                if m.auth_failing {
                    " [AUTHENTICATION FAILING]"
                } else {
                    ""
                }
            );
        }
        println!(
            "outbox: {}",
            if outbox.is_empty() {
                "empty".to_string()
            } else {
                outbox
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        println!("quarantined: {quarantined_count}");
        for (id, source, error) in &quarantined {
            println!("  #{id} {source}: {error}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
