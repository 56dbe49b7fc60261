//! What the writer does with one message once it knows what it is: an automated message is
//! stored (and a bounce recorded), a reply joins its ticket, a new request opens one. The
//! decisions come from the stages (`thread`, `guard`, `classify`); this file records them and
//! drafts the mail they call for.

use std::sync::Arc;

use anyhow::Context;
use rusqlite::Connection;

use super::pool::Analysed;
use super::{AckDecision, Incoming, Outcome, Pipeline, Planned, record};
use crate::classify::Classifier;
use crate::guard::{self, Automated, AutomatedKind};
use crate::parse::ParsedMessage;
use crate::reply::{self, AckDraft, Draft, NotificationDraft, Templates};
use crate::store::{self, StoreError};
use crate::thread::Link;

/// One message as the writer decides it.
pub(super) struct Turn<'t, 'a> {
    pub(super) conn: &'t Connection,
    pub(super) classifier: &'t Classifier,
    pub(super) templates: &'t Templates,
    pub(super) incoming: &'a Incoming,
    pub(super) msg: &'a ParsedMessage,
    pub(super) analysed: &'a Analysed,
    /// The index its outcome will have in the batch.
    pub(super) at: usize,
    /// Unix seconds.
    pub(super) now: i64,
}

impl Pipeline {
    /// Stores an automated message on the ticket it answers, if any, leaving the ticket's status
    /// alone; a bounce marks the failed recipients.
    pub(super) fn store_automated(
        &self,
        t: &Turn<'_, '_>,
        auto: &Automated,
        link: Option<Link>,
        outcome: &mut Outcome,
    ) -> anyhow::Result<()> {
        let ticket = link.as_ref().map(|l| &l.ticket);
        let row = record::insert_inbound(
            t.conn,
            t.incoming,
            t.msg,
            ticket.map(|ticket| ticket.id),
            "automated",
            None,
            Some(&auto.reason),
            t.now,
        )?;
        if let Some(ticket) = ticket {
            outcome.ticket = Some(ticket.ticket_ref.clone());
            outcome.category = Some(ticket.category.clone());
            store::touch_ticket(t.conn, ticket.id, t.now)?;
        }
        if auto.kind == AutomatedKind::Bounce {
            record::record_bounce(t.conn, t.msg, ticket, row, t.now)?;
        }
        Ok(())
    }

    /// Adds a reply to its ticket (reopening it when closed) and tells the team.
    pub(super) fn continue_ticket<'a>(
        &self,
        t: &Turn<'_, 'a>,
        link: Link,
        outcome: &mut Outcome,
        drafts: &mut Vec<Arc<Planned<'a>>>,
    ) -> anyhow::Result<()> {
        let Link { ticket, reason } = link;
        outcome.ticket = Some(ticket.ticket_ref.clone());
        outcome.category = Some(ticket.category.clone());
        record::insert_inbound(
            t.conn,
            t.incoming,
            t.msg,
            Some(ticket.id),
            "reply",
            Some(&ticket.category),
            None,
            t.now,
        )?;
        if store::touch_ticket(t.conn, ticket.id, t.now)? {
            let how = reason.to_string();
            store::record_event(
                t.conn,
                "reopened",
                Some(ticket.id),
                None,
                Some(t.msg.from_address()),
                &how,
            )?;
        }
        self.record_participants(t.conn, ticket.id, t.msg, t.incoming)?;
        let notification = self.draft_notification(
            t.classifier,
            ticket,
            t.msg,
            t.incoming,
            (Vec::new(), Vec::new()),
            "reply",
        );
        if let Some(draft) = notification {
            drafts.push(Arc::new(Planned {
                outcome: t.at,
                draft,
            }));
        }
        Ok(())
    }

    /// Opens a ticket for a new request, classified, with its acknowledgement (or the guard's
    /// reason for withholding it) and the team notification.
    pub(super) fn open_ticket<'a>(
        &self,
        t: &Turn<'_, 'a>,
        outcome: &mut Outcome,
        drafts: &mut Vec<Arc<Planned<'a>>>,
    ) -> anyhow::Result<()> {
        let from = t.msg.from_address();
        let classification = &t.analysed.classification;
        let category = t
            .classifier
            .category(&classification.category)
            .unwrap_or_else(|| t.classifier.fallback());
        let promise = category.response.map(|r| (r.min_hours, r.max_hours));
        let due_at = promise.map(|(_, max)| t.now + i64::from(max) * 3600);
        let locale = self.locale_for(t.msg, t.templates);
        let (ticket_id, ticket_ref) = store::create_ticket(
            t.conn,
            &store::NewTicket {
                prefix: &self.threading.prefix,
                customer: from,
                customer_name: t.msg.from.as_ref().and_then(|m| m.name.as_deref()),
                subject: &t.msg.subject,
                category: &category.id,
                created_at: t.now,
                due_at,
                language: &locale,
            },
        )?;
        record::insert_inbound(
            t.conn,
            t.incoming,
            t.msg,
            Some(ticket_id),
            "new",
            Some(&category.id),
            None,
            t.now,
        )?;
        self.record_participants(t.conn, ticket_id, t.msg, t.incoming)?;
        outcome.ticket = Some(ticket_ref.clone());
        outcome.category = Some(category.id.clone());
        let ticket =
            store::ticket(t.conn, ticket_id)?.context("the ticket just created is not there")?;
        let tips = reply::tips_in(&classification.tips, &locale);

        let history = record::BatchHistory {
            conn: t.conn,
            drafts: drafts.as_slice(),
        };
        let decision = guard::may_acknowledge(
            &self.acks,
            &history,
            from,
            t.analysed.verdict.withhold.as_deref(),
            t.incoming.delivered_at,
            t.now,
        )?;
        let refusal = decision.err().map(|r| r.to_string());
        if let Some(reason) = &refusal {
            let address = t.msg.from.as_ref().map(|_| from);
            store::record_event(
                t.conn,
                "ack_suppressed",
                Some(ticket_id),
                None,
                address,
                reason,
            )?;
        }
        outcome.ack = match &refusal {
            None => AckDecision::Queued,
            Some(reason) => AckDecision::Suppressed(reason.clone()),
        };
        if let Some(customer) = &t.msg.from {
            let draft = Draft::Ack(AckDraft {
                ticket_id,
                ticket_ref: ticket_ref.clone(),
                suppressed: refusal,
                locale: locale.clone(),
                customer: customer.clone(),
                msg: t.msg,
                category_label: category.label_for(&locale).to_string(),
                promise,
                due_at: due_at.and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
                tips: tips.clone(),
                message_id: self.signer.generate("ack"),
            });
            drafts.push(Arc::new(Planned {
                outcome: t.at,
                draft,
            }));
        }
        let matched: Vec<String> = classification
            .matches
            .iter()
            .map(|m| {
                format!(
                    "{}/{} ({}: {:?}, +{})",
                    m.category, m.rule, m.field, m.matched, m.weight
                )
            })
            .collect();
        let action = if t.incoming.oversized {
            "oversized"
        } else {
            "new"
        };
        if let Some(draft) = self.draft_notification(
            t.classifier,
            ticket,
            t.msg,
            t.incoming,
            (matched, tips),
            action,
        ) {
            drafts.push(Arc::new(Planned {
                outcome: t.at,
                draft,
            }));
        }
        Ok(())
    }

    /// The people the customer copied join the ticket; an oversized message flags it.
    fn record_participants(
        &self,
        conn: &Connection,
        ticket_id: i64,
        msg: &ParsedMessage,
        incoming: &Incoming,
    ) -> Result<(), StoreError> {
        record::add_cc_participants(
            conn,
            ticket_id,
            msg,
            &self.own_addresses,
            &self.support_address,
        )?;
        if incoming.oversized {
            store::flag_ticket(conn, ticket_id, "oversized")?;
        }
        Ok(())
    }

    fn locale_for(&self, msg: &ParsedMessage, templates: &Templates) -> String {
        msg.language
            .as_deref()
            .filter(|l| templates.has_locale(l))
            .unwrap_or(&self.default_locale)
            .to_string()
    }

    /// The team notification for `ticket`, when a team address is configured: `(matched rules,
    /// tips)` for a new request, `action` is the template's wording (`new`, `reply`,
    /// `oversized`).
    fn draft_notification<'a>(
        &self,
        classifier: &Classifier,
        ticket: store::Ticket,
        msg: &'a ParsedMessage,
        incoming: &'a Incoming,
        (matched, tips): (Vec<String>, Vec<String>),
        action: &'static str,
    ) -> Option<Draft<'a>> {
        let team = self.team_address.as_ref()?;
        let category_label = classifier
            .category(&ticket.category)
            .map(|c| c.label_for(&self.default_locale).to_string())
            .unwrap_or_else(|| ticket.category.clone());
        Some(Draft::Notification(NotificationDraft {
            ticket,
            msg,
            original_raw: &incoming.raw,
            matched,
            tips,
            action,
            category_label,
            to: team.clone(),
            message_id: self.signer.generate("note"),
        }))
    }
}
