//! Drafts: the mail the pipeline decided to send, described while its transaction runs and
//! rendered afterwards (on the worker threads, see `pipeline::pool`), so the single SQLite writer
//! never waits for Handlebars or the MIME builder.
//!
//! Entry point: [`Draft::render`]. A draft borrows the parsed message it answers; it owns
//! everything the decision added (ticket, category label, promise, the signed Message-ID).

use chrono::{DateTime, Utc};

use super::{
    AckInput, AgentNoticeInput, Identity, NoticeReason, NotificationInput, Outgoing, RelayInput,
    ReplyError, Templates,
};
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
    /// The notification to the team (or the ticket's assignee).
    Notification(Box<NotificationDraft<'a>>),
    /// An agent's answer, to the customer.
    Relay(RelayDraft<'a>),
    /// Why an agent's mail was not relayed, to the agent.
    AgentNotice(AgentNoticeDraft),
}

/// An agent's answer to relay to the ticket's customer.
#[derive(Debug)]
pub struct RelayDraft<'a> {
    pub ticket_id: i64,
    /// The agent's address: the author of the answer.
    pub agent: String,
    pub ticket_ref: String,
    pub ticket_subject: String,
    pub customer: Mailbox,
    /// `Alice (Support Chatim)`.
    pub from_name: String,
    /// The agent's new text, commands removed.
    pub text: String,
    /// The agent's mail as received: its attachments go with the answer.
    pub agent_raw: &'a [u8],
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// Our signed Message-ID, without brackets.
    pub message_id: String,
    pub locale: String,
}

/// The answer to an agent whose mail was not relayed.
#[derive(Debug)]
pub struct AgentNoticeDraft {
    pub ticket_id: Option<i64>,
    pub ticket_ref: Option<String>,
    pub agent: String,
    pub reason: NoticeReason,
    pub original_subject: String,
    pub original_message_id: String,
    /// Our signed Message-ID, without brackets.
    pub message_id: String,
    pub locale: String,
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
    /// The promise counts working hours.
    pub business: bool,
    /// The promise is a confirmation, which this acknowledgement gives.
    pub confirm_only: bool,
    pub due_at: Option<DateTime<Utc>>,
    /// The working hours (Monday first), when the request arrived outside them.
    pub out_of_hours: Option<[Vec<crate::sla::calendar::Span>; 7]>,
    /// Ask for the account e-mail and project URL: accounts are known and none matched.
    pub ask_for_account: bool,
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
    /// The team address, or the ticket's assignee.
    pub to: String,
    /// The ticket's plus-address, where an agent's reply goes.
    pub reply_to: Option<String>,
    /// The closed ticket this one continues.
    pub previous: Option<String>,
    /// Why the customer got no acknowledgement, when they got none.
    pub ack_withheld: Option<String>,
    /// When From was unusable: who stands for the customer, or that nobody does.
    pub sender_note: Option<String>,
    /// Our signed Message-ID, without brackets.
    pub message_id: String,
    /// The customer's account, or what the message named when none matched.
    pub account: crate::accounts::Lookup,
    /// The request came through the HTTP intake.
    pub from_form: bool,
    /// The account's details the dashboard sent, as (name, value).
    pub form_account: &'a [(String, String)],
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
                    customer_thread_index: a.msg.header("thread-index"),
                    customer_thread_topic: a.msg.header("thread-topic"),
                    category_label: &a.category_label,
                    promise: a.promise,
                    business: a.business,
                    confirm_only: a.confirm_only,
                    due_at: a.due_at,
                    out_of_hours: a.out_of_hours.as_ref(),
                    ask_for_account: a.ask_for_account,
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
                        reply_to: n.reply_to.as_deref(),
                        previous: n.previous.as_deref(),
                        ack_withheld: n.ack_withheld.as_deref(),
                        sender_note: n.sender_note.as_deref(),
                        account: &n.account,
                        from_form: n.from_form,
                        form_account: n.form_account,
                        context: n.context,
                    },
                )
            }
            Draft::Relay(r) => {
                let attachments = crate::parse::attachments::attachments(r.agent_raw);
                templates.render_relay(
                    identity,
                    &RelayInput {
                        ticket_ref: &r.ticket_ref,
                        ticket_subject: &r.ticket_subject,
                        customer: &r.customer,
                        from_name: &r.from_name,
                        text: &r.text,
                        attachments: &attachments,
                        in_reply_to: r.in_reply_to.as_deref(),
                        references: &r.references,
                        message_id: &r.message_id,
                        locale: &r.locale,
                    },
                )
            }
            Draft::AgentNotice(n) => templates.render_agent_notice(
                identity,
                &AgentNoticeInput {
                    agent: &n.agent,
                    ticket_ref: n.ticket_ref.as_deref(),
                    reason: &n.reason,
                    original_subject: &n.original_subject,
                    original_message_id: &n.original_message_id,
                    message_id: &n.message_id,
                    locale: &n.locale,
                },
            ),
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
