//! Mail on an agent's behalf: the answer relayed to the customer, and the short notice to an
//! agent whose mail could not be relayed.
//!
//! Entry points: [`Templates::render_relay`], [`Templates::render_agent_notice`]. Neither uses
//! an admin template: a relayed answer is the agent's own text, and a notice is a few fixed
//! sentences (`wording`).

use super::{Identity, Outgoing, ReplyError, Templates, message, tidy_body, wording};
use crate::parse::Mailbox;
use crate::parse::attachments::Attachment;
use wording::Lang;

/// An agent's answer to send to the ticket's customer.
#[derive(Debug, Clone, Copy)]
pub struct RelayInput<'a> {
    pub ticket_ref: &'a str,
    /// The ticket's subject: the relay's subject is `[REF] <subject>`.
    pub ticket_subject: &'a str,
    pub customer: &'a Mailbox,
    /// The From display name, e.g. `Alice (Support Chatim)`; the address is ours.
    pub from_name: &'a str,
    /// The agent's new text, commands removed.
    pub text: &'a str,
    pub attachments: &'a [Attachment],
    /// The customer's latest message (without brackets), answered by this one.
    pub in_reply_to: Option<&'a str>,
    /// The conversation so far, oldest first (without brackets).
    pub references: &'a [String],
    /// Our signed Message-ID (without brackets).
    pub message_id: &'a str,
    /// `Content-Language` of the answer.
    pub locale: &'a str,
}

/// Why an agent's mail was not relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeReason {
    /// It threads onto no ticket.
    NoTicket,
    /// Unknown commands or bad arguments, one message each.
    Commands(Vec<String>),
}

/// The answer to an agent whose mail was not relayed.
#[derive(Debug, Clone, Copy)]
pub struct AgentNoticeInput<'a> {
    pub agent: &'a str,
    pub ticket_ref: Option<&'a str>,
    pub reason: &'a NoticeReason,
    /// The agent's subject and Message-ID (without brackets), to answer in their thread.
    pub original_subject: &'a str,
    pub original_message_id: &'a str,
    pub message_id: &'a str,
    pub locale: &'a str,
}

impl Templates {
    /// The agent's answer as the customer receives it: from the support address under the
    /// agent's name, threaded on the customer's latest message, the agent's attachments
    /// attached.
    ///
    /// # Errors
    /// An address or id that cannot go in a header.
    pub fn render_relay(
        &self,
        identity: &Identity,
        input: &RelayInput<'_>,
    ) -> Result<Outgoing, ReplyError> {
        let body = tidy_body(input.text);
        message::build_relay(identity, input, body)
    }

    /// A short answer to an agent: why nothing was sent, and the commands.
    ///
    /// # Errors
    /// An address or id that cannot go in a header.
    pub fn render_agent_notice(
        &self,
        identity: &Identity,
        input: &AgentNoticeInput<'_>,
    ) -> Result<Outgoing, ReplyError> {
        let lang = Lang::of(input.locale);
        let mut text = String::new();
        match input.reason {
            NoticeReason::NoTicket => {
                text.push_str(&wording::notice_opening(lang, None, true));
                text.push('\n');
            }
            NoticeReason::Commands(problems) => {
                text.push_str(&wording::notice_opening(lang, input.ticket_ref, false));
                text.push('\n');
                for p in problems {
                    text.push_str(&format!("  - {p}\n"));
                }
            }
        }
        text.push('\n');
        text.push_str(wording::notice_commands(lang));
        text.push('\n');
        text.push_str(&crate::agent::command_help());
        text.push('\n');
        let subject = format!(
            "{}{}",
            wording::notice_prefix(lang),
            super::subject_or_placeholder(input.original_subject)
        );
        message::build_agent_notice(identity, input, &subject, tidy_body(&text))
    }
}
