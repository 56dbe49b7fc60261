//! Drafts: the mail the pipeline decided to send, described while its transaction runs and
//! rendered afterwards (on the worker threads, see `pipeline::pool`), so the single SQLite writer
//! never waits for Handlebars or the MIME builder.
//!
//! Entry point: [`Draft::render`]. A draft borrows the parsed message it answers; it owns
//! everything the decision added (ticket, category label, promise, the signed Message-ID).

use chrono::{DateTime, Utc};

use super::{AckInput, Identity, NotificationInput, Outgoing, ReplyError, Templates};
use crate::parse::{Mailbox, ParsedMessage};
use crate::store;

/// Requests shorter than this (in characters of new text) get the "tell us more"
/// acknowledgement (`ack_short`).
pub const MIN_REQUEST_CHARS: usize = 10;

/// One mail decided by the pipeline, not yet rendered.
#[derive(Debug)]
pub enum Draft<'a> {
    /// The acknowledgement to the customer.
    Ack(AckDraft<'a>),
    /// The notification to the team.
    Notification(NotificationDraft<'a>),
}

/// The acknowledgement of a new request.
#[derive(Debug)]
pub struct AckDraft<'a> {
    pub ticket_id: i64,
    pub ticket_ref: String,
    /// Why the guard withheld it; it is still rendered and kept as `suppressed` so an admin sees
    /// what was held back.
    pub suppressed: Option<String>,
    /// Template locale (`fr`, `en`).
    pub locale: String,
    pub customer: Mailbox,
    pub msg: &'a ParsedMessage,
    pub category_label: String,
    /// Response promise in hours, `(min, max)`.
    pub promise: Option<(u32, u32)>,
    pub due_at: Option<DateTime<Utc>>,
    /// Known answers for the request, in `locale`.
    pub tips: Vec<String>,
    /// Our signed Message-ID, without brackets.
    pub message_id: String,
}

/// The team's notification of a new request or of a reply on a ticket.
#[derive(Debug)]
pub struct NotificationDraft<'a> {
    pub ticket: store::Ticket,
    pub msg: &'a ParsedMessage,
    /// The message as received, attached as `message/rfc822`.
    pub original_raw: &'a [u8],
    /// Rules that matched, as `category/rule (field: "text", +weight)`.
    pub matched: Vec<String>,
    pub tips: Vec<String>,
    /// `new`, `reply` or `oversized`: which wording the template uses.
    pub action: &'static str,
    pub category_label: String,
    /// The team address.
    pub to: String,
    /// Our signed Message-ID, without brackets.
    pub message_id: String,
    /// The request came through the HTTP intake.
    pub from_form: bool,
    /// The account's details the dashboard sent, as (name, value).
    pub account: &'a [(String, String)],
    /// Project URL, page, browser, as (name, value).
    pub context: &'a [(String, String)],
}

impl AckDraft<'_> {
    /// Returns true if and only if the request is too short to act on, so the acknowledgement
    /// asks for more.
    pub fn is_short(&self) -> bool {
        self.msg.new_text.trim().chars().count() < MIN_REQUEST_CHARS
    }
}

impl Draft<'_> {
    /// The ticket the mail belongs to (its `tickets.id`).
    pub fn ticket_id(&self) -> i64 {
        match self {
            Draft::Ack(a) => a.ticket_id,
            Draft::Notification(n) => n.ticket.id,
        }
    }

    /// Renders the draft into the exact bytes the outbox will send. A panic in a template
    /// helper or in the MIME builder becomes an error for this mail alone, so a worker thread
    /// the writer waits for is never lost.
    ///
    /// # Errors
    /// A template that fails on these values, or a mail that cannot be built.
    pub fn render(
        &self,
        templates: &Templates,
        identity: &Identity,
        team_locale: &str,
    ) -> Result<Outgoing, ReplyError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.render_unguarded(templates, identity, team_locale)
        }))
        .unwrap_or_else(|_| {
            Err(ReplyError::Build {
                what: "mail",
                reason: "rendering panicked".into(),
            })
        })
    }

    fn render_unguarded(
        &self,
        templates: &Templates,
        identity: &Identity,
        team_locale: &str,
    ) -> Result<Outgoing, ReplyError> {
        match self {
            Draft::Ack(a) => templates.render_ack(
                identity,
                &AckInput {
                    locale: &a.locale,
                    ticket_ref: &a.ticket_ref,
                    customer: &a.customer,
                    original_subject: &a.msg.subject,
                    customer_message_id: customer_id(a.msg),
                    customer_references: &a.msg.references,
                    category_label: &a.category_label,
                    promise: a.promise,
                    due_at: a.due_at,
                    tips: &a.tips,
                    short: a.is_short(),
                    message_id: &a.message_id,
                },
            ),
            Draft::Notification(n) => {
                let customer = n.msg.from.clone().unwrap_or(Mailbox {
                    name: None,
                    address: n.ticket.customer.clone(),
                });
                templates.render_notification(
                    identity,
                    &NotificationInput {
                        locale: team_locale,
                        ticket_ref: &n.ticket.ticket_ref,
                        customer: &customer,
                        original_subject: &n.msg.subject,
                        category_label: &n.category_label,
                        category_id: &n.ticket.category,
                        matched_rules: &n.matched,
                        tips: &n.tips,
                        due_at: n.ticket.due_at.and_then(|t| DateTime::from_timestamp(t, 0)),
                        new_text: &n.msg.new_text,
                        action: n.action,
                        automated: None,
                        original_raw: n.original_raw,
                        to: &n.to,
                        message_id: &n.message_id,
                        customer_message_id: customer_id(n.msg),
                        from_form: n.from_form,
                        account: n.account,
                        context: n.context,
                    },
                )
            }
        }
    }
}

/// The tip texts in `locale`, else English, else any language the tip has.
pub fn tips_in(tips: &[crate::classify::TipMatch], locale: &str) -> Vec<String> {
    tips.iter()
        .filter_map(|t| {
            t.text
                .get(locale)
                .or_else(|| t.text.get("en"))
                .or_else(|| t.text.values().next())
                .cloned()
        })
        .collect()
}

/// The customer's Message-ID for In-Reply-To, or "" (none) when we made it up: their mail
/// client never saw a synthesised id, so citing it would thread nothing.
fn customer_id(msg: &ParsedMessage) -> &str {
    if msg.message_id_synthesized {
        ""
    } else {
        &msg.message_id
    }
}
