//! What goes into the pipeline ([`Incoming`]: raw bytes and where they came from) and what
//! comes out ([`Outcome`]: the committed decision for one message, as `ingest --json` prints it).

use serde::Serialize;

/// A raw message and where it came from.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub raw: Vec<u8>,
    /// File path, `stdin`, `imap:<mailbox>:<uidvalidity>:<uid>`, or `http:api` / `http:form`
    /// (the HTTP intake); kept for the operator.
    pub source: String,
    /// Only the headers were kept because the message was over the size limit.
    pub oversized: bool,
    /// When the mail server received it (IMAP INTERNALDATE, unix seconds), where known.
    pub delivered_at: Option<i64>,
    /// The door it came through vouches for its sender (the command line, run by an admin):
    /// an agent's mail needs no `Authentication-Results` then.
    pub trusted_sender: bool,
    /// Set only by the HTTP intake (`crate::http`), for the message it synthesised from a
    /// request; `None` for mail. Never read from the message itself, so no e-mail can claim it.
    pub form: Option<FormRequest>,
}

impl Incoming {
    pub fn new(raw: Vec<u8>, source: impl Into<String>) -> Self {
        Self {
            raw,
            source: source.into(),
            oversized: false,
            delivered_at: None,
            trusted_sender: false,
            form: None,
        }
    }
}

/// What the HTTP intake knows of a request beyond the message it synthesised from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormRequest {
    /// The category id the customer chose. It wins over the rules and over hints, the way a
    /// plus-address does for mail; the rules still run, and the classification's `hint`
    /// (`form choice billing`) says who decided.
    pub category: Option<String>,
    /// The language the customer uses the dashboard in (`fr`, `en`): the acknowledgement's,
    /// when there are templates for it, rather than the one guessed from the text.
    pub locale: Option<String>,
    /// The account's details the dashboard sent, as (name, value), shown to the team.
    pub account: Vec<(String, String)>,
    /// Project URL, page, browser, as (name, value), shown to the team.
    pub context: Vec<(String, String)>,
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Opened a ticket.
    New,
    /// Added to an existing ticket.
    Reply,
    /// Already stored: nothing changed.
    Duplicate,
    /// Machine-generated: stored, never acknowledged.
    Automated,
    /// An agent's answer, relayed to the customer (with any commands applied).
    Relayed,
    /// An agent's internal note (with any commands applied): never sent to the customer.
    Note,
    /// An agent's commands alone, applied; nothing to relay.
    Commands,
    /// An agent's mail that named no ticket, or a bad command: nothing relayed or applied, the
    /// agent was told why.
    Refused,
    /// Failed in the pipeline: stored raw with the error.
    Quarantined,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::New => "new",
            Action::Reply => "reply",
            Action::Duplicate => "duplicate",
            Action::Automated => "automated",
            Action::Quarantined => "quarantined",
            Action::Relayed => "relayed",
            Action::Note => "note",
            Action::Commands => "commands",
            Action::Refused => "refused",
        }
    }
}

/// Whether an acknowledgement went into the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "ack", content = "reason")]
pub enum AckDecision {
    Queued,
    Suppressed(String),
    NotApplicable,
}

/// The committed decision for one message.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub source: String,
    pub ticket: Option<String>,
    pub action: Action,
    pub category: Option<String>,
    /// As it appears in headers, with angle brackets.
    pub message_id: String,
    pub automated: Option<String>,
    #[serde(flatten)]
    pub ack: AckDecision,
    /// Quarantine reason.
    pub error: Option<String>,
}
