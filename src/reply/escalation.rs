//! The team's escalation mail: a ticket's response clock is at risk, or breached.
//!
//! Rendered from `escalation.hbs` in the team's locale (the variables are in
//! templates/README.md), sent from the support address to the team and to the ticket's
//! assignee, threaded on the customer's request like the notifications of the same ticket.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    AccountContext, Identity, Outgoing, ReplyError, Templates, account_context, header_text,
    message, subject_or_placeholder, tidy_body, wording, wording::Lang,
};
use crate::accounts::Lookup;

/// How far a clock has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// It used the `[sla] at_risk` share of its time.
    AtRisk,
    /// Its time is up and nobody answered.
    Breached,
}

impl Level {
    /// `at_risk` or `breached`, as templates test it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::AtRisk => "at_risk",
            Level::Breached => "breached",
        }
    }
}

/// Everything an escalation mail says.
#[derive(Debug, Clone, Copy)]
pub struct EscalationInput<'a> {
    /// The team's locale.
    pub locale: &'a str,
    pub level: Level,
    pub ticket_ref: &'a str,
    pub customer: &'a str,
    pub original_subject: &'a str,
    pub category_id: &'a str,
    /// The ticket's status text (`open`, `pending`).
    pub status: &'a str,
    /// Response promise in hours, `(min, max)`, and whether they are working hours.
    pub promise: (u32, u32),
    pub business: bool,
    /// The share of the promised time used (0.8 is 80 %).
    pub share: f64,
    pub due_at: Option<DateTime<Utc>>,
    pub arrived_at: Option<DateTime<Utc>>,
    pub assignee: Option<&'a str>,
    pub account: &'a Lookup,
    pub to: &'a str,
    /// Our signed Message-ID, without brackets.
    pub message_id: &'a str,
    /// The customer's request, to thread on (without brackets; empty for none).
    pub customer_message_id: &'a str,
}

/// Variables of `escalation.hbs`; templates/README.md documents them.
#[derive(Serialize)]
struct EscalationContext<'a> {
    level: &'static str,
    level_label: &'static str,
    ticket_ref: String,
    customer_email: &'a str,
    subject: String,
    category_id: &'a str,
    status: &'a str,
    promise: String,
    used_percent: u32,
    due: String,
    arrived: String,
    assignee: &'a str,
    #[serde(flatten)]
    account: AccountContext<'a>,
    support_name: &'a str,
    support_address: &'a str,
}

fn context<'a>(
    identity: &'a Identity,
    input: &EscalationInput<'a>,
    lang: Lang,
) -> EscalationContext<'a> {
    let when = |at: Option<DateTime<Utc>>| {
        at.map(|at| wording::due(lang, at, identity.timezone))
            .unwrap_or_default()
    };
    EscalationContext {
        level: input.level.as_str(),
        level_label: wording::level_label(lang, input.level),
        ticket_ref: header_text(input.ticket_ref),
        customer_email: input.customer,
        subject: subject_or_placeholder(input.original_subject),
        category_id: input.category_id,
        status: input.status,
        promise: wording::promise(lang, Some(input.promise), input.business),
        used_percent: (input.share * 100.0).clamp(0.0, 9999.0).floor() as u32,
        due: when(input.due_at),
        arrived: when(input.arrived_at),
        assignee: input.assignee.unwrap_or_default(),
        account: account_context(lang, input.account),
        support_name: &identity.name,
        support_address: &identity.address,
    }
}

impl Templates {
    /// Renders the escalation mail in the team's locale.
    ///
    /// # Errors
    /// The template fails on these values, or the mail cannot be built (an unusable address).
    pub fn render_escalation(
        &self,
        identity: &Identity,
        input: &EscalationInput<'_>,
    ) -> Result<Outgoing, ReplyError> {
        let locale = self.resolve(input.locale);
        let lang = Lang::of(locale);
        let ctx = context(identity, input, lang);
        let text = self.render(locale, "escalation", &ctx)?;
        let subject = format!(
            "[{}] {}: {}",
            ctx.ticket_ref,
            ctx.level_label,
            super::bare_subject(&format!("[{}]", ctx.ticket_ref), input.original_subject)
        );
        message::build_team_mail(
            identity,
            &message::TeamMail {
                what: "escalation",
                locale,
                to: input.to,
                subject,
                body: tidy_body(&text),
                message_id: input.message_id,
                customer_message_id: input.customer_message_id,
            },
        )
    }

    /// Renders `escalation.hbs` of `locale` at both levels, with and without an account, so
    /// strict mode sees every variable it names.
    pub(super) fn validate_escalation(&self, locale: &str) -> Result<(), ReplyError> {
        let identity = Identity {
            address: "support@example.test".to_owned(),
            name: "Support".to_owned(),
            timezone: chrono_tz::Tz::Europe__Paris,
        };
        let lang = Lang::of(locale);
        let none = Lookup::NotFound {
            emails: vec!["julie@example.test".to_owned()],
            urls: Vec::new(),
            accounts_known: true,
        };
        let found = super::sample_account();
        for (level, account, assignee) in [
            (Level::AtRisk, &found, Some("alice@example.test")),
            (Level::Breached, &none, None),
        ] {
            let input = EscalationInput {
                locale,
                level,
                ticket_ref: "CHT-1",
                customer: "julie@example.test",
                original_subject: "Le widget ne s'affiche pas",
                category_id: "technical",
                status: "open",
                promise: (24, 48),
                business: true,
                share: 0.8,
                due_at: Some(Utc::now()),
                arrived_at: Some(Utc::now()),
                assignee,
                account,
                to: "team@example.test",
                message_id: "sample-escalation@example.test",
                customer_message_id: "sample@example.test",
            };
            let ctx = context(&identity, &input, lang);
            self.registry
                .render(&format!("{locale}/escalation"), &ctx)
                .map_err(|e| ReplyError::Template {
                    path: self.dir.join(locale).join("escalation.hbs"),
                    reason: super::describe_render_error(&e),
                })?;
        }
        Ok(())
    }
}
