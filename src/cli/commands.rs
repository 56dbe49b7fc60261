//! One function per subcommand. Each gathers what to show or does the work, hands the result to
//! `print`, and returns the process exit code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::args::{AccountsCommand, HttpCommand, OutboxCommand, QuarantineCommand, TicketsCommand};
use super::print::{self, Out, problem};
use super::{EX_DATAERR, EX_NOINPUT, EX_TEMPFAIL};
use crate::classify::Classifier;
use crate::config::Config;
use crate::mailbox::files::{self, InputError};
use crate::pipeline::{Incoming, Pipeline};
use crate::store::{self, Store, StoreError, TicketStatus};

/// Messages per transaction when ingesting files.
const FILE_BATCH: usize = 500;

pub(super) fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

pub(super) fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(&config.storage.database)
        .with_context(|| format!("opening {}", config.storage.database.display()))
}

pub fn ingest(
    config_path: &Path,
    inputs: &[String],
    json: bool,
    out: &mut Out,
) -> anyhow::Result<ExitCode> {
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
            problem(format_args!("nothing stored: {e:#}"));
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
                    problem(format_args!("{s}: not stored: {e}"));
                }
                temp_failure = Some(e);
            }
        }
        if next.is_none() {
            next = take(&mut pending);
        }
    }
    if json {
        print::json(
            out,
            &serde_json::json!({
                "messages": outcomes,
                "errors": input_errors.iter().map(|e| serde_json::json!({"input": e.path(), "error": e.to_string()})).collect::<Vec<_>>(),
            }),
        )?;
    } else {
        print::outcomes(out, &outcomes)?;
    }
    for e in &input_errors {
        problem(e);
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

pub fn quarantine(
    config_path: &Path,
    command: QuarantineCommand,
    out: &mut Out,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let mut store = open_store(&config)?;
    match command {
        QuarantineCommand::List { json } => {
            let items = store::quarantine_list(store.conn())?;
            if json {
                print::json(out, &items)?;
            } else {
                print::quarantined(out, &items)?;
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
                problem(format_args!("message {id} is not quarantined"));
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
                print::json(out, &serde_json::json!({ "messages": outcomes }))?;
            } else {
                print::outcomes(out, &outcomes)?;
            }
            Ok(code)
        }
    }
}

pub fn classify(
    config_path: &Path,
    file: &Path,
    explain: bool,
    json: bool,
    out: &mut Out,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let classifier = Classifier::load_dir(&config.rules.dir)
        .with_context(|| format!("loading rules from {}", config.rules.dir.display()))?;
    let raw = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let msg = crate::parse::parse(&raw);
    let choice = form_choice(&config, &msg)?;
    let result = classifier.classify_message_as(&msg, &config.support.address, choice.as_deref());
    if json {
        print::json(out, &result)?;
    } else {
        print::classification(out, &result, explain)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The category the customer chose, for a message the HTTP intake made from a request (its
/// `X-Supportd-Form-Category`, trusted only under a Message-ID we signed as `sd.form.…`, as the
/// pipeline took it from the request itself). On any other message the header is ignored,
/// and said so.
///
/// # Errors
/// The database cannot be read.
fn form_choice(
    config: &Config,
    msg: &crate::parse::ParsedMessage,
) -> anyhow::Result<Option<String>> {
    let name = crate::http::CATEGORY_HEADER.to_ascii_lowercase();
    let Some(chosen) = msg.header(&name) else {
        return Ok(None);
    };
    let key = if config.storage.database.exists() {
        open_store(config)?.existing_hmac_key()?
    } else {
        None
    };
    let ours = key.is_some_and(|key| {
        let signer = crate::thread::MessageIdSigner::new(&key, config.support_domain());
        msg.message_id.starts_with("sd.form.")
            && signer.origin(&msg.message_id) == crate::thread::IdOrigin::Ours
    });
    if ours {
        Ok(Some(chosen.trim().to_string()))
    } else {
        problem(format_args!(
            "{} ignored: this message is not a request filed through the HTTP intake",
            crate::http::CATEGORY_HEADER
        ));
        Ok(None)
    }
}

pub fn rules_check(
    config_path: &Path,
    dir: Option<PathBuf>,
    out: &mut Out,
) -> anyhow::Result<ExitCode> {
    let dir = match dir {
        Some(d) => d,
        None => load_config(config_path)?.rules.dir,
    };
    let problems = Classifier::check_dir(&dir);
    if problems.is_empty() {
        let classifier = Classifier::load_dir(&dir)?;
        writeln!(
            out,
            "{}: {} categories, all valid",
            dir.display(),
            classifier.categories().len()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    print::lint(&problems);
    Ok(ExitCode::FAILURE)
}

pub fn tickets(
    config_path: &Path,
    command: TicketsCommand,
    out: &mut Out,
) -> anyhow::Result<ExitCode> {
    use super::agent;
    match command {
        TicketsCommand::List {
            status,
            category,
            json,
        } => tickets_list(
            config_path,
            status.as_deref(),
            category.as_deref(),
            json,
            out,
        ),
        TicketsCommand::Show { ticket, json } => ticket_show(config_path, &ticket, json, out),
        TicketsCommand::Reply {
            ticket,
            agent,
            file,
            json,
        } => agent::write(config_path, &ticket, &agent, &file, false, json, out),
        TicketsCommand::Note {
            ticket,
            agent,
            file,
            json,
        } => agent::write(config_path, &ticket, &agent, &file, true, json, out),
        TicketsCommand::Close { ticket, json } => {
            agent::set_status(config_path, &ticket, TicketStatus::Closed, json, out)
        }
        TicketsCommand::Open { ticket, json } => {
            agent::set_status(config_path, &ticket, TicketStatus::Open, json, out)
        }
        TicketsCommand::Pending { ticket, json } => {
            agent::set_status(config_path, &ticket, TicketStatus::Pending, json, out)
        }
        TicketsCommand::Assign {
            ticket,
            agent,
            json,
        } => agent::assign(config_path, &ticket, &agent, json, out),
    }
}

fn tickets_list(
    config_path: &Path,
    status: Option<&str>,
    category: Option<&str>,
    json: bool,
    out: &mut Out,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config)?;
    let list = store::list_tickets(store.conn(), status, category)?;
    if json {
        print::json(out, &list)?;
    } else {
        print::tickets(out, &list)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn ticket_show(
    config_path: &Path,
    ticket: &str,
    json: bool,
    out: &mut Out,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config)?;
    let Some(t) = store::ticket_by_ref(store.conn(), ticket)? else {
        problem(format_args!("no ticket {ticket}"));
        return Ok(ExitCode::FAILURE);
    };
    let messages = store::ticket_messages(store.conn(), t.id)?;
    let account =
        crate::accounts::of_ticket(store.conn(), t.id, &t.customer, &config.own_addresses())?;
    let response = response_clock(&config, store.conn(), t.id)?;
    if json {
        let mut value = serde_json::to_value(&t)?;
        value["account"] = serde_json::to_value(&account)?;
        value["response"] = serde_json::to_value(response)?;
        value["messages"] = serde_json::to_value(&messages)?;
        print::json(out, &value)?;
    } else {
        print::ticket(out, &t, &messages)?;
        print::ticket_account(out, &account)?;
        if let Some(clock) = &response {
            print::response_clock(out, clock)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the ticket's first-response clock stands now, if it has one. A calendar that cannot
/// be read (a broken holidays file) leaves it out with a warning: the ticket is still shown.
fn response_clock(
    config: &Config,
    conn: &rusqlite::Connection,
    ticket_id: i64,
) -> anyhow::Result<Option<crate::sla::clock::Standing>> {
    let Some(clock) = store::ticket_clock(conn, ticket_id)? else {
        return Ok(None);
    };
    match crate::sla::calendar(&config.sla, config.support.timezone) {
        Ok(calendar) => Ok(Some(crate::sla::clock::standing(
            &calendar,
            &clock,
            store::now(),
        ))),
        Err(e) => {
            problem(format_args!("response clock left out: {e}"));
            Ok(None)
        }
    }
}

pub fn outbox(
    config_path: &Path,
    command: OutboxCommand,
    out: &mut Out,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config)?;
    match command {
        OutboxCommand::List { status, json } => {
            let list = store::list_outbox(store.conn(), status.as_deref())?;
            if json {
                print::json(out, &list)?;
            } else {
                print::outbox(out, &list)?;
            }
        }
        OutboxCommand::Show { id, raw } => {
            let Some(bytes) = store::outbox_raw(store.conn(), id)? else {
                problem(format_args!("no outbox row {id}"));
                return Ok(ExitCode::FAILURE);
            };
            print::outgoing(out, &bytes, raw)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stats(config_path: &Path, json: bool, out: &mut Out) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config)?;
    let s = store::stats(store.conn())?;
    if json {
        print::json(out, &s)?;
    } else {
        print::stats(out, &s)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(config_path: &Path, json: bool, out: &mut Out) -> anyhow::Result<ExitCode> {
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
        print::json(
            out,
            &serde_json::json!({
                "mailboxes": mailboxes,
                "outbox": outbox,
                "quarantined": quarantined_count,
                "recent_quarantined": quarantined.iter().map(|(id, source, error)| serde_json::json!({"id": id, "source": source, "error": error})).collect::<Vec<_>>(),
            }),
        )?;
    } else {
        print::status(
            out,
            &print::Status {
                mailboxes: &mailboxes,
                outbox: &outbox,
                quarantined_count,
                recent_quarantined: &quarantined,
            },
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sla(
    config_path: &Path,
    since: Option<&str>,
    json: bool,
    out: &mut Out,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let calendar = crate::sla::calendar(&config.sla, config.support.timezone)?;
    let now = store::now();
    let since = match since {
        Some(text) => {
            crate::sla::report::parse_since(text, &calendar).map_err(anyhow::Error::msg)?
        }
        None => now - 30 * 86400,
    };
    let store = open_store(&config)?;
    let report = crate::sla::report::build(store.conn(), &calendar, now, since)?;
    if json {
        print::json(out, &report)?;
    } else {
        print::sla(out, &report, calendar.timezone())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sla_escalate(config_path: &Path, json: bool, out: &mut Out) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let calendar = crate::sla::calendar(&config.sla, config.support.timezone)?;
    let templates = crate::reply::Templates::load(&config.templates.dir)
        .with_context(|| format!("loading templates from {}", config.templates.dir.display()))?;
    let mut store = open_store(&config)?;
    let key = store.hmac_key().context("reading the Message-ID key")?;
    let signer = crate::thread::MessageIdSigner::new(&key, config.support_domain());
    let escalator = crate::sla::escalate::Escalator::new(&config, signer);
    let queued = escalator
        .check(&mut store, &calendar, &templates, store::now())
        .context("checking the response clocks")?;
    if json {
        print::json(out, &queued)?;
    } else {
        print::escalated(out, &queued)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn accounts(
    config_path: &Path,
    command: AccountsCommand,
    out: &mut Out,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let mut store = open_store(&config)?;
    match command {
        AccountsCommand::Import { file, json } => {
            let input = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let accounts = match crate::accounts::read_csv(std::io::BufReader::new(input)) {
                Ok(a) => a,
                Err(e) => {
                    problem(format_args!("{}: {e}; nothing imported", file.display()));
                    return Ok(ExitCode::from(EX_DATAERR));
                }
            };
            let tx = store.begin()?;
            let counts = store::upsert_accounts(&tx, &accounts, store::now())?;
            tx.commit()?;
            if json {
                print::json(out, &counts)?;
            } else {
                writeln!(
                    out,
                    "{}: {} added, {} updated, {} unchanged",
                    file.display(),
                    counts.added,
                    counts.updated,
                    counts.unchanged
                )?;
            }
        }
        AccountsCommand::Show { email, json } => {
            let Some(account) = store::account(store.conn(), &email)? else {
                problem(format_args!("no account {email}"));
                return Ok(ExitCode::FAILURE);
            };
            if json {
                print::json(out, &account)?;
            } else {
                print::account(out, &account)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn http(config_path: &Path, command: HttpCommand, out: &mut Out) -> anyhow::Result<ExitCode> {
    let HttpCommand::SignLink {
        email,
        name,
        ttl,
        json,
    } = command;
    let config = load_config(config_path)?;
    let http = config
        .http
        .as_ref()
        .context("no [http] section: set link_secret_file (and listen or public_url)")?;
    let secret = http
        .link_secret()
        .context("no [http] link_secret_file or link_secret_env")?
        .read()
        .map_err(|e| anyhow::anyhow!("[http] link secret: {e}"))?;
    let email = email.trim().to_string();
    if email.parse::<lettre::Address>().is_err() {
        anyhow::bail!("{email:?} is not an e-mail address");
    }
    let name = name.unwrap_or_default();
    if name.contains(['\n', '\r']) {
        anyhow::bail!("the name must be on one line");
    }
    let ttl = i64::try_from(ttl.as_secs()).context("--ttl is too long")?;
    let expires = store::now().saturating_add(ttl);
    let token = crate::http::link::sign_account(secret.expose().as_bytes(), &email, &name, expires);
    let base = match (&http.public_url, http.listen) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(addr)) => format!("http://{addr}"),
        (None, None) => String::new(),
    };
    let url = format!("{base}/support?account={token}");
    if json {
        print::json(
            out,
            &serde_json::json!({
                "url": url,
                "token": token,
                "expires_at": store::rfc3339(expires),
            }),
        )?;
    } else {
        writeln!(out, "{url}")?;
    }
    Ok(ExitCode::SUCCESS)
}
