//! The writer's bookkeeping: the rows a decision leaves in the store (the inbound message and
//! the ids it cites, copied participants, bounces, quarantine, queued mail). Each function runs
//! inside the batch's transaction.

use std::sync::Arc;

use rusqlite::Connection;

use super::{AckDecision, Action, Incoming, Outcome, Planned};
use crate::guard::AckHistory;
use crate::parse::ParsedMessage;
use crate::reply::{self, Draft};
use crate::store::{self, StoreError};

/// Stores `msg` as an inbound message (on `ticket_id`, if any), with the ids it cites recorded
/// for threading its siblings. Returns the `messages` row id.
#[allow(clippy::too_many_arguments)]
pub(super) fn insert_inbound(
    conn: &Connection,
    incoming: &Incoming,
    msg: &ParsedMessage,
    ticket_id: Option<i64>,
    action: store::MessageAction,
    category: Option<&str>,
    automated: Option<&str>,
    now: i64,
) -> Result<i64, StoreError> {
    let row = store::insert_message(
        conn,
        &store::NewMessage {
            ticket_id,
            direction: store::Direction::In,
            message_id: &msg.message_id,
            raw_sha256: &msg.raw_sha256,
            in_reply_to: &msg.in_reply_to.join(" "),
            refs: &msg.references.join(" "),
            from_addr: msg.from_address(),
            from_name: msg.from.as_ref().and_then(|m| m.name.as_deref()),
            to_addrs: &msg.recipients().join(" "),
            subject: &msg.subject,
            date: msg.date,
            received_at: now,
            action,
            category,
            language: msg.language.as_deref(),
            automated,
            new_text: &msg.new_text,
            full_text: &msg.text,
            attachments: &serde_json::to_string(&msg.attachments).unwrap_or_else(|_| "[]".into()),
            size: msg.size as i64,
            raw: &incoming.raw,
            source: &incoming.source,
            warnings: &msg.warnings.join("\n"),
            error: None,
        },
    )?;
    if let Some(t) = ticket_id {
        let cited: Vec<String> = msg
            .in_reply_to
            .iter()
            .chain(msg.references.iter())
            .filter(|id| **id != msg.message_id)
            .cloned()
            .collect();
        store::record_refs(conn, t, &cited)?;
    }
    Ok(row)
}

/// What tells `msg` apart from another message with its Message-ID.
pub(super) fn fingerprint(msg: &ParsedMessage) -> store::Fingerprint<'_> {
    store::Fingerprint {
        message_id: &msg.message_id,
        raw_sha256: &msg.raw_sha256,
        from_addr: msg.from_address(),
        date: msg.date,
        subject: &msg.subject,
        text: &msg.text,
    }
}

/// `msg`, just stored, carries the Message-ID of the `earlier` rows but is another message:
/// its row gets a warning and the event log says so (the message was handled as any other).
pub(super) fn reused_message_id(
    conn: &Connection,
    msg: &ParsedMessage,
    earlier: &[i64],
    source: &str,
) -> Result<(), StoreError> {
    let Some((row, ticket_id)) = store::latest_with_message_id(conn, &msg.message_id)? else {
        return Ok(());
    };
    let rows: Vec<String> = earlier.iter().map(|id| format!("#{id}")).collect();
    let detail = format!(
        "<{}> was already on message {} with another sender, date, subject or text; stored as a different message ({source})",
        msg.message_id,
        rows.join(", ")
    );
    tracing::warn!(message_id = %msg.message_id, source, "reused Message-ID: {detail}");
    store::note_warning(conn, row, &format!("reused Message-ID: {detail}"))?;
    store::record_event(
        conn,
        store::EventKind::ReusedMessageId,
        ticket_id,
        Some(row),
        Some(msg.from_address()).filter(|a| !a.is_empty()),
        &detail,
    )
}

/// Automated mail (`reason` says why it is) stored as `messages` row `row` on `ticket`: the
/// ticket is marked updated and keeps its status, since no person asked for anything; a
/// closed ticket that stays closed is recorded as a `kept_closed` event.
pub(super) fn automated_on_ticket(
    conn: &Connection,
    ticket: &store::Ticket,
    row: i64,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    if store::touch_ticket_keep_status(conn, ticket.id, now)? == Some(store::TicketStatus::Closed) {
        store::record_event(
            conn,
            store::EventKind::KeptClosed,
            Some(ticket.id),
            Some(row),
            None,
            &format!(
                "automated mail ({reason}) left {} closed",
                ticket.ticket_ref
            ),
        )?;
    }
    Ok(())
}

/// Everyone the customer wrote to, except us (`own_addresses`, and plus-addresses of
/// `support_address`), may take part in the conversation.
pub(super) fn add_cc_participants(
    conn: &Connection,
    ticket_id: i64,
    msg: &ParsedMessage,
    own_addresses: &[String],
    support_address: &str,
) -> Result<(), StoreError> {
    for m in msg.to.iter().chain(msg.cc.iter()) {
        let a = m.address.as_str();
        if own_addresses.iter().any(|o| o == a)
            || crate::thread::plus_tag(a, support_address).is_some()
        {
            continue;
        }
        store::add_participant(conn, ticket_id, a, store::ParticipantRole::Cc)?;
    }
    Ok(())
}

/// Marks the failed recipients of a bounce on `ticket` (or its customer, when the report names
/// none) as bouncing, and flags the ticket.
pub(super) fn record_bounce(
    conn: &Connection,
    msg: &ParsedMessage,
    ticket: Option<&store::Ticket>,
    row: i64,
    now: i64,
) -> Result<(), StoreError> {
    let Some(ticket) = ticket else {
        return Ok(());
    };
    let mut bounced: Vec<&str> = msg.failed_recipients.iter().map(String::as_str).collect();
    if bounced.is_empty() {
        bounced.push(&ticket.customer);
    }
    for address in bounced {
        store::mark_bouncing(conn, address, now)?;
        store::record_event(
            conn,
            store::EventKind::Bounce,
            Some(ticket.id),
            Some(row),
            Some(address),
            &msg.subject,
        )?;
    }
    store::flag_ticket(conn, ticket.id, "bouncing")
}

/// Queues one rendered draft in the outbox, where a reply that cites its Message-ID finds the
/// ticket; a draft that failed to render is recorded as an event instead (and an
/// acknowledgement's outcome says so).
pub(super) fn queue_planned(
    conn: &Connection,
    planned: &Planned<'_>,
    rendered: Result<reply::Outgoing, reply::ReplyError>,
    outcomes: &mut [Outcome],
) -> Result<(), StoreError> {
    let now = store::now();
    match (&planned.draft, rendered) {
        (Draft::Ack(ack), Ok(out)) => queue(
            conn,
            store::OutboxKind::Ack,
            Some(ack.ticket_id),
            &out,
            ack.suppressed.as_deref(),
            now,
        ),
        (Draft::Notification(n), Ok(out)) => queue(
            conn,
            store::OutboxKind::Notification,
            Some(n.ticket.id),
            &out,
            None,
            now,
        ),
        (Draft::Relay(r), Ok(out)) => {
            queue(
                conn,
                store::OutboxKind::Relay,
                Some(r.ticket_id),
                &out,
                None,
                now,
            )?;
            insert_relayed(conn, r, &out, now)
        }
        (Draft::AgentNotice(n), Ok(out)) => queue(
            conn,
            store::OutboxKind::AgentNotice,
            n.ticket_id,
            &out,
            None,
            now,
        ),
        (Draft::Relay(r), Err(e)) => {
            tracing::error!(ticket = %r.ticket_ref, "relayed answer not rendered: {e}");
            store::record_event(
                conn,
                store::EventKind::AgentRefused,
                Some(r.ticket_id),
                None,
                Some(&r.customer.address),
                &format!("the answer could not be built: {e}"),
            )
        }
        (Draft::AgentNotice(n), Err(e)) => {
            tracing::error!(agent = %n.agent, "agent notice not rendered: {e}");
            Ok(())
        }
        (Draft::Ack(ack), Err(e)) => {
            let reason = format!("template error: {e}");
            tracing::error!(ticket = %ack.ticket_ref, "acknowledgement not rendered: {e}");
            store::record_event(
                conn,
                store::EventKind::AckFailed,
                Some(ack.ticket_id),
                None,
                Some(&ack.customer.address),
                &reason,
            )?;
            if let Some(o) = outcomes.get_mut(planned.outcome) {
                o.ack = AckDecision::Suppressed(reason);
            }
            Ok(())
        }
        (Draft::Notification(n), Err(e)) => {
            tracing::error!(ticket = %n.ticket.ticket_ref, "team notification not rendered: {e}");
            store::record_event(
                conn,
                store::EventKind::NotificationFailed,
                Some(n.ticket.id),
                None,
                None,
                &e.to_string(),
            )
        }
    }
}

/// The answer as the customer receives it, on the ticket's history: an outbound message by the
/// agent (the first one is the ticket's first response).
fn insert_relayed(
    conn: &Connection,
    r: &reply::RelayDraft<'_>,
    out: &reply::Outgoing,
    now: i64,
) -> Result<(), StoreError> {
    store::insert_message(
        conn,
        &store::NewMessage {
            ticket_id: Some(r.ticket_id),
            direction: store::Direction::Out,
            message_id: &out.message_id,
            raw_sha256: &crate::parse::sha256_hex(&out.raw),
            in_reply_to: out.in_reply_to.as_deref().unwrap_or_default(),
            refs: &out.references.join(" "),
            from_addr: &r.agent,
            from_name: Some(&r.from_name),
            to_addrs: &out.to,
            subject: &out.subject,
            date: Some(now),
            received_at: now,
            action: store::MessageAction::Relayed,
            category: None,
            language: Some(&r.locale),
            automated: None,
            new_text: &r.text,
            full_text: &r.text,
            attachments: "[]",
            size: out.raw.len() as i64,
            raw: &out.raw,
            source: "relay",
            warnings: "",
            error: None,
        },
    )?;
    Ok(())
}

fn queue(
    conn: &Connection,
    kind: store::OutboxKind,
    ticket_id: Option<i64>,
    out: &reply::Outgoing,
    suppressed: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    store::enqueue(
        conn,
        &store::NewOutgoing {
            kind,
            ticket_id,
            to_addr: &out.to,
            subject: &out.subject,
            message_id: &out.message_id,
            in_reply_to: out.in_reply_to.as_deref(),
            raw: &out.raw,
            status: if suppressed.is_some() {
                store::OutboxStatus::Suppressed
            } else {
                store::OutboxStatus::Queued
            },
            last_error: suppressed,
            at: now,
        },
    )?;
    Ok(())
}

/// Stores a message that failed in the pipeline, raw bytes and error, and reports it.
pub(super) fn quarantine(
    conn: &Connection,
    incoming: &Incoming,
    msg: &ParsedMessage,
    error: &str,
) -> Result<Outcome, StoreError> {
    // A fresh id: the original may be what made the insert fail (and the sha still dedupes a
    // second delivery of the same bytes).
    let qid = format!(
        "q.{}.{}@quarantine.invalid",
        &msg.raw_sha256[..16],
        store::now()
    );
    let id = store::insert_message(
        conn,
        &store::NewMessage {
            ticket_id: None,
            direction: store::Direction::In,
            message_id: &qid,
            raw_sha256: &msg.raw_sha256,
            in_reply_to: "",
            refs: "",
            from_addr: msg.from_address(),
            from_name: None,
            to_addrs: "",
            subject: &msg.subject,
            date: msg.date,
            received_at: store::now(),
            action: store::MessageAction::Quarantined,
            category: None,
            language: None,
            automated: None,
            new_text: "",
            full_text: "",
            attachments: "[]",
            size: incoming.raw.len() as i64,
            raw: &incoming.raw,
            source: &incoming.source,
            warnings: &format!("original Message-ID: <{}>", msg.message_id),
            error: Some(error),
        },
    )?;
    store::record_event(
        conn,
        store::EventKind::Quarantined,
        None,
        Some(id),
        None,
        error,
    )?;
    Ok(Outcome {
        source: incoming.source.clone(),
        ticket: None,
        action: Action::Quarantined,
        category: None,
        message_id: format!("<{}>", msg.message_id),
        automated: None,
        ack: AckDecision::NotApplicable,
        error: Some(error.to_string()),
    })
}

/// Earlier automatic answers of one kind to an address: those in the outbox, and those this
/// batch decided but has not queued yet. Acknowledgements and agent notices are limited alike.
pub(super) struct BatchHistory<'c, 'd, 'a> {
    pub(super) conn: &'c Connection,
    pub(super) drafts: &'d [Arc<Planned<'a>>],
    /// [`store::OutboxKind::Ack`] or [`store::OutboxKind::AgentNotice`].
    pub(super) kind: store::OutboxKind,
}

impl AckHistory for BatchHistory<'_, '_, '_> {
    fn is_bouncing(&self, address: &str) -> Result<bool, StoreError> {
        store::is_bouncing(self.conn, address)
    }

    fn acks_since(&self, address: &str, since: i64) -> Result<u32, StoreError> {
        let in_batch = self
            .drafts
            .iter()
            .filter(|p| match (&p.draft, self.kind) {
                (Draft::Ack(a), store::OutboxKind::Ack) => {
                    a.suppressed.is_none() && a.customer.address == address
                }
                (Draft::AgentNotice(n), store::OutboxKind::AgentNotice) => n.agent == address,
                _ => false,
            })
            .count() as u32;
        Ok(store::sent_since(self.conn, address, self.kind, since)? + in_batch)
    }
}
