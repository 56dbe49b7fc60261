//! What the writer does with one message once it knows what it is: an automated message is
//! stored (and a bounce recorded), a reply joins its ticket, a new request opens one. The
//! decisions come from the stages (`thread`, `guard`, `classify`); this file records them and
//! drafts the mail they call for.

use std::sync::Arc;

use anyhow::Context;
use rusqlite::Connection;

use super::pool::Analysed;
use super::{AckDecision, Action, Incoming, Outcome, Pipeline, Planned, record};
use crate::accounts;
use crate::classify::Classifier;
use crate::guard::{self, Automated, AutomatedKind};
use crate::parse::ParsedMessage;
use crate::reply::{self, AckDraft, Draft, NotificationDraft, Templates};
use crate::sla;
use crate::store::{self, StoreError, TicketStatus};
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
            store::MessageAction::Automated,
            None,
            Some(&auto.reason),
            t.now,
        )?;
        if let Some(ticket) = ticket {
            outcome.ticket = Some(ticket.ticket_ref.clone());
            outcome.category = Some(ticket.category.clone());
            record::automated_on_ticket(t.conn, ticket, row, &auto.reason, t.now)?;
        }
        if auto.kind == AutomatedKind::Bounce {
            record::record_bounce(t.conn, t.msg, ticket, row, t.now)?;
        }
        Ok(())
    }

    /// Adds a customer's reply to its ticket and tells the team (or the assignee). A pending
    /// ticket becomes open; a closed one reopens, unless it was closed more than
    /// `support.reopen_days` ago: then the reply opens a new ticket that names it.
    pub(super) fn continue_ticket<'a>(
        &self,
        t: &Turn<'_, 'a>,
        link: Link,
        outcome: &mut Outcome,
        drafts: &mut Vec<Arc<Planned<'a>>>,
    ) -> anyhow::Result<()> {
        let Link { ticket, reason } = link;
        let from = t.msg.from_address();
        if ticket.status == TicketStatus::Closed
            && ticket
                .closed_at
                .is_some_and(|at| t.now.saturating_sub(at) > self.reopen_window)
        {
            outcome.action = Action::New;
            let previous = ticket.ticket_ref.clone();
            let detail = format!("{previous} was closed too long ago ({reason})");
            store::record_event(
                t.conn,
                store::EventKind::Continued,
                Some(ticket.id),
                None,
                Some(from),
                &detail,
            )?;
            return self.open_ticket(t, Some(&previous), outcome, drafts);
        }
        outcome.ticket = Some(ticket.ticket_ref.clone());
        outcome.category = Some(ticket.category.clone());
        record::insert_inbound(
            t.conn,
            t.incoming,
            t.msg,
            Some(ticket.id),
            store::MessageAction::Reply,
            Some(&ticket.category),
            None,
            t.now,
        )?;
        if ticket.status == TicketStatus::Open {
            store::touch_ticket_keep_status(t.conn, ticket.id, t.now)?;
        } else {
            store::change_status(t.conn, ticket.id, TicketStatus::Open, t.now, Some(from))?;
            if ticket.status == TicketStatus::Closed {
                let how = reason.to_string();
                store::record_event(
                    t.conn,
                    store::EventKind::Reopened,
                    Some(ticket.id),
                    None,
                    Some(from),
                    &how,
                )?;
            }
        }
        self.record_participants(t.conn, ticket.id, t.msg, t.incoming)?;
        let account = accounts::match_ticket(
            t.conn,
            ticket.id,
            t.msg.from_address(),
            &t.msg.new_text,
            &self.own_addresses,
        )?;
        let notification = self.draft_notification(
            t.classifier,
            ticket,
            (t.msg, t.incoming),
            (Vec::new(), Vec::new()),
            "reply",
            account,
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
        previous: Option<&str>,
        outcome: &mut Outcome,
        drafts: &mut Vec<Arc<Planned<'a>>>,
    ) -> anyhow::Result<()> {
        // Who the customer is: From, else (From unusable) Reply-To, else Sender.
        let (customer, sender_note) = customer_of(t.msg, t.analysed.verdict.person.as_ref());
        let from = customer.map_or(NO_SENDER, |m| m.address.as_str());
        let classification = &t.analysed.classification;
        let category = t
            .classifier
            .category(&classification.category)
            .unwrap_or_else(|| t.classifier.fallback());
        let response = category.response;
        let promise = response.map(|r| (r.min_hours, r.max_hours));
        // The clock starts when the mail server received the request (INTERNALDATE), not when
        // we got round to it; never later than now.
        let arrival = t.incoming.delivered_at.map_or(t.now, |d| d.min(t.now));
        let calendar = self.calendar();
        let locale = self.locale_for(t.incoming, t.msg, t.templates);

        let history = record::BatchHistory {
            conn: t.conn,
            drafts: drafts.as_slice(),
            kind: store::OutboxKind::Ack,
        };
        let decision = match self.acks.unauthenticated(t.msg) {
            Some(refusal) => Err(refusal),
            None => {
                let to = customer.map_or("", |m| m.address.as_str());
                guard::may_acknowledge(
                    &self.acks,
                    &history,
                    to,
                    t.analysed.verdict.withhold.as_deref(),
                    t.incoming.delivered_at,
                    t.now,
                )?
            }
        };
        let refusal =
            record::recall_refusal(t.msg).or_else(|| decision.err().map(|r| r.to_string()));
        let withheld = refusal.clone();
        // A promise of a confirmation is kept by the acknowledgement, when one goes out.
        let confirmed =
            response.is_some_and(|r| r.confirm_only) && refusal.is_none() && customer.is_some();
        let clock = response.map(|r| {
            let budget = sla::clock::budget(&r);
            (
                r,
                budget,
                sla::clock::due(&calendar, r.business, arrival, budget),
            )
        });
        let due_at = clock.filter(|_| !confirmed).map(|(_, _, due)| due);
        let (ticket_id, ticket_ref) = store::create_ticket(
            t.conn,
            &store::NewTicket {
                prefix: &self.threading.prefix,
                customer: from,
                customer_name: customer.and_then(|m| m.name.as_deref()),
                subject: &t.msg.subject,
                category: &category.id,
                created_at: t.now,
                due_at,
                language: &locale,
            },
        )?;
        if let Some(previous) = previous {
            store::set_previous(t.conn, ticket_id, previous)?;
        }
        if let Some(note) = &sender_note {
            let flag = if customer.is_some() {
                "sender_fallback"
            } else {
                "no_sender"
            };
            store::flag_ticket(t.conn, ticket_id, flag)?;
            store::record_event(
                t.conn,
                store::EventKind::UnusableFrom,
                Some(ticket_id),
                None,
                customer.map(|m| m.address.as_str()),
                note,
            )?;
        }
        if let Some((r, budget, due)) = clock {
            store::start_clock(
                t.conn,
                &store::NewClock {
                    ticket_id,
                    clock: store::SlaClock::FirstResponse,
                    started_at: arrival,
                    budget,
                    business: r.business,
                    due_at: due,
                    satisfied_at: confirmed.then_some(t.now),
                },
            )?;
        }
        record::insert_inbound(
            t.conn,
            t.incoming,
            t.msg,
            Some(ticket_id),
            store::MessageAction::New,
            Some(&category.id),
            None,
            t.now,
        )?;
        self.record_participants(t.conn, ticket_id, t.msg, t.incoming)?;
        let account = accounts::match_ticket(
            t.conn,
            ticket_id,
            from,
            &format!("{}\n{}", t.msg.subject, t.msg.text),
            &self.own_addresses,
        )?;
        let ask_for_account = matches!(
            account,
            accounts::Lookup::NotFound {
                accounts_known: true,
                ..
            }
        );
        outcome.ticket = Some(ticket_ref.clone());
        outcome.category = Some(category.id.clone());
        let ticket =
            store::ticket(t.conn, ticket_id)?.context("the ticket just created is not there")?;
        let tips = reply::tips_in(&classification.tips, &locale);

        if let Some(reason) = &refusal {
            let address = customer.map(|m| m.address.as_str());
            store::record_event(
                t.conn,
                store::EventKind::AckSuppressed,
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
        if let Some(customer) = customer {
            let business = response.is_some_and(|r| r.business);
            let out_of_hours = (business && due_at.is_some() && !calendar.is_open(arrival))
                .then(|| calendar.week().clone());
            let draft = Draft::Ack(AckDraft {
                ticket_id,
                ticket_ref: ticket_ref.clone(),
                suppressed: refusal,
                locale: locale.clone(),
                customer: customer.clone(),
                msg: t.msg,
                category_label: category.label_for(&locale).to_string(),
                promise,
                business,
                confirm_only: confirmed,
                due_at: due_at.and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
                out_of_hours,
                ask_for_account,
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
        if let Some(mut draft) = self.draft_notification(
            t.classifier,
            ticket,
            (t.msg, t.incoming),
            (matched, tips),
            action,
            account,
        ) {
            if let Draft::Notification(n) = &mut draft {
                // The team learns why the customer heard nothing from us.
                n.ack_withheld = withheld;
                n.sender_note = sender_note;
            }
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

    /// The acknowledgement's locale: the one the customer uses the dashboard in, for a
    /// request of the HTTP intake; else the one the text is written in; else the default.
    fn locale_for(
        &self,
        incoming: &Incoming,
        msg: &ParsedMessage,
        templates: &Templates,
    ) -> String {
        let chosen = incoming.form.as_ref().and_then(|f| f.locale.as_deref());
        chosen
            .filter(|l| templates.has_locale(l))
            .or(msg.language.as_deref().filter(|l| templates.has_locale(l)))
            .unwrap_or(&self.default_locale)
            .to_string()
    }

    /// The team notification for `ticket`: `(matched rules, tips)` for a new request, `action`
    /// is the template's wording (`new`, `reply`, `oversized`, `note`). A customer's reply goes
    /// to the ticket's assignee when it has one, everything else to the team address; None when
    /// there is nobody to tell.
    pub(super) fn draft_notification<'a>(
        &self,
        classifier: &Classifier,
        ticket: store::Ticket,
        (msg, incoming): (&'a ParsedMessage, &'a Incoming),
        (matched, tips): (Vec<String>, Vec<String>),
        action: &'static str,
        account: accounts::Lookup,
    ) -> Option<Draft<'a>> {
        let to = match (action, &ticket.assignee) {
            ("reply", Some(agent)) => agent.clone(),
            _ => self.team_address.clone()?,
        };
        let category_label = classifier
            .category(&ticket.category)
            .map(|c| c.label_for(&self.default_locale).to_string())
            .unwrap_or_else(|| ticket.category.clone());
        Some(Draft::Notification(Box::new(NotificationDraft {
            msg,
            original_raw: &incoming.raw,
            matched,
            tips,
            action,
            category_label,
            to,
            reply_to: Some(self.threading.plus_address(&ticket.ticket_ref)),
            previous: ticket.previous.clone(),
            ack_withheld: None,
            sender_note: None,
            ticket,
            message_id: self.signer.generate("note"),
            account,
            from_form: incoming.form.is_some(),
            form_account: incoming.form.as_ref().map_or(&[], |f| &f.account[..]),
            context: incoming.form.as_ref().map_or(&[], |f| &f.context[..]),
        })))
    }
}

/// What stands in the customer column of a ticket nobody can be answered on.
const NO_SENDER: &str = "(no usable sender)";

/// The customer of a new request: the person our own group relayed (`person`, the guard's
/// reading of a DMARC From rewrite), else From, else Reply-To, else Sender (RFC 5322 §3.6.2:
/// where answers go, then who sent it), with a note for the team when From could not be used.
fn customer_of<'m>(
    msg: &'m ParsedMessage,
    person: Option<&'m crate::parse::Mailbox>,
) -> (Option<&'m crate::parse::Mailbox>, Option<String>) {
    if let Some(person) = person {
        return (Some(person), None);
    }
    if let Some(from) = &msg.from {
        return (Some(from), None);
    }
    let why = msg
        .from_unusable
        .as_ref()
        .map_or_else(|| "no From".to_owned(), ToString::to_string);
    for (header, mailbox) in [("Reply-To", &msg.reply_to), ("Sender", &msg.sender)] {
        if let Some(m) = mailbox {
            let note = format!(
                "From unusable ({why}): {header} {} stands for the customer",
                m.address
            );
            return (Some(m), Some(note));
        }
    }
    (
        None,
        Some(format!(
            "no usable sender address ({why}): nobody can be answered"
        )),
    )
}
