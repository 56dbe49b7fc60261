//! `supportd tickets reply|note|close|open|pending|assign`: what an agent does by mail, from
//! the command line. A reply or note goes through the pipeline as the agent's mail would (so
//! it is threaded, relayed and recorded the same way); the command line vouches for the sender
//! in place of `Authentication-Results`.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::commands::{load_config, open_store};
use super::print::{self, Out, problem};
use crate::agent::Agents;
use crate::config::Config;
use crate::pipeline::{Incoming, Outcome, Pipeline};
use crate::store::{self, OutboxItem, Store, TicketStatus};

/// What a command did: the message's outcome (reply, note) and the mail it queued.
#[derive(Debug, Serialize)]
struct Done {
    ticket: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<TicketStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    assignee: Option<String>,
    queued: Vec<OutboxItem>,
}

/// `tickets reply` (`note = false`) and `tickets note`.
pub fn write(
    config_path: &Path,
    reference: &str,
    agent: &str,
    file: &str,
    note: bool,
    json: bool,
    out: &mut Out,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let mut store = open_store(&config)?;
    let agent = agent.trim().to_ascii_lowercase();
    if !Agents::from_config(&config).is_agent(&agent) {
        problem(format_args!(
            "{agent} is not an agent: list it in [agents] addresses or domains"
        ));
        return Ok(ExitCode::FAILURE);
    }
    let Some(ticket) = store::ticket_by_ref(store.conn(), reference)? else {
        problem(format_args!("no ticket {reference}"));
        return Ok(ExitCode::FAILURE);
    };
    let mut text = String::new();
    if file == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the text from standard input")?;
    } else {
        text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    }
    if text.trim().is_empty() {
        problem("the text is empty: nothing to send");
        return Ok(ExitCode::FAILURE);
    }
    if note {
        text = format!("#note\n{text}");
    }
    let raw = agent_mail(&config, &ticket, &agent, &text);
    let pipeline = Pipeline::new(&config, &mut store)?;
    let before = last_outbox_id(&store)?;
    let mut incoming = Incoming::new(raw, "cli");
    incoming.trusted_sender = true;
    let outcome = pipeline
        .ingest_batch(&mut store, vec![incoming], |_| Ok(()))?
        .pop();
    let done = Done {
        ticket: ticket.ticket_ref.clone(),
        outcome,
        status: None,
        assignee: None,
        queued: queued_since(&store, before)?,
    };
    report(out, &done, json)
}

/// `tickets close|open|pending`.
pub fn set_status(
    config_path: &Path,
    reference: &str,
    status: TicketStatus,
    json: bool,
    out: &mut Out,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let mut store = open_store(&config)?;
    let Some(ticket) = store::ticket_by_ref(store.conn(), reference)? else {
        problem(format_args!("no ticket {reference}"));
        return Ok(ExitCode::FAILURE);
    };
    let tx = store.begin()?;
    store::change_status(&tx, ticket.id, status, store::now(), None)?;
    tx.commit()?;
    let done = Done {
        ticket: ticket.ticket_ref,
        outcome: None,
        status: Some(status),
        assignee: None,
        queued: Vec::new(),
    };
    report(out, &done, json)
}

/// `tickets assign REF AGENT`.
pub fn assign(
    config_path: &Path,
    reference: &str,
    agent: &str,
    json: bool,
    out: &mut Out,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let mut store = open_store(&config)?;
    let Some(address) = Agents::from_config(&config).find(agent) else {
        problem(format_args!(
            "{agent} is not an agent address or a name in [agents] names"
        ));
        return Ok(ExitCode::FAILURE);
    };
    let Some(ticket) = store::ticket_by_ref(store.conn(), reference)? else {
        problem(format_args!("no ticket {reference}"));
        return Ok(ExitCode::FAILURE);
    };
    let tx = store.begin()?;
    store::assign(&tx, ticket.id, &address, None)?;
    tx.commit()?;
    let done = Done {
        ticket: ticket.ticket_ref,
        outcome: None,
        status: None,
        assignee: Some(address),
        queued: Vec::new(),
    };
    report(out, &done, json)
}

fn report(out: &mut Out, done: &Done, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        print::json(out, done)?;
    } else {
        if let Some(o) = &done.outcome {
            print::outcomes(out, std::slice::from_ref(o))?;
        }
        if let Some(s) = done.status {
            print::line(out, format_args!("{}\t{s}", done.ticket))?;
        }
        if let Some(a) = &done.assignee {
            print::line(out, format_args!("{}\tassigned to {a}", done.ticket))?;
        }
        print::outbox(out, &done.queued)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The agent's text as a mail to the ticket's plus-address, citing nothing: the plus-address
/// threads it.
fn agent_mail(config: &Config, ticket: &store::Ticket, agent: &str, text: &str) -> Vec<u8> {
    let (local, domain) = config
        .support
        .address
        .rsplit_once('@')
        .unwrap_or((config.support.address.as_str(), "localhost"));
    let nonce: u64 = rand::random();
    let date = chrono::Utc::now().to_rfc2822();
    let subject = ticket.subject.replace(['\r', '\n'], " ");
    let body = text.replace("\r\n", "\n").replace('\n', "\r\n");
    format!(
        "From: <{agent}>\r\nTo: <{local}+{}@{domain}>\r\nSubject: Re: [{}] {subject}\r\n\
         Date: {date}\r\nMessage-ID: <cli.{nonce:016x}@{domain}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n",
        ticket.ticket_ref, ticket.ticket_ref
    )
    .into_bytes()
}

fn last_outbox_id(store: &Store) -> anyhow::Result<i64> {
    Ok(store::list_outbox(store.conn(), None)?
        .iter()
        .map(|o| o.id)
        .max()
        .unwrap_or(0))
}

fn queued_since(store: &Store, after: i64) -> anyhow::Result<Vec<OutboxItem>> {
    Ok(store::list_outbox(store.conn(), None)?
        .into_iter()
        .filter(|o| o.id > after)
        .collect())
}
