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
            conversation: crate::thread::conversation_key(msg).as_deref(),
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

/// Why an Outlook recall is never acknowledged, even when it opens a ticket (the recalled
/// message never reached us): it asks for nothing. `None` for any other message.
pub(super) fn recall_refusal(msg: &ParsedMessage) -> Option<String> {
    crate::thread::recalled_subject(msg)
        .map(|subject| format!("an Outlook recall of {subject:?}: nothing to acknowledge"))
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

/// Records a bounce (`messages` row `row`), blaming the address that failed: the recipients
/// the report names (delivery-status fields, `X-Failed-Recipients`, the MTA's words), or else
/// the recipient of the outbox row it answers (an acknowledgement goes to the customer, a
/// notification to the team). Each is marked bouncing. A ticket (the one the bounce was
/// stored on, or one an answered row belongs to) is flagged `bouncing` only when a blamed
/// address is its customer, or a participant we wrote to about it; mail to the team that
/// bounced says nothing about the customer. A report that names no recipient and answers
/// none of our messages blames nobody: the event says so.
pub(super) fn record_bounce(
    conn: &Connection,
    msg: &ParsedMessage,
    ticket: Option<&store::Ticket>,
    row: i64,
    now: i64,
) -> Result<(), StoreError> {
    let answered = store::outbox_by_message_ids(conn, &msg.bounced_message_ids)?;
    let mut blamed: Vec<String> = msg.failed_recipients.clone();
    if blamed.is_empty() {
        for item in &answered {
            if !blamed.contains(&item.to) {
                blamed.push(item.to.clone());
            }
        }
    }
    let mut tickets: Vec<store::Ticket> = ticket.into_iter().cloned().collect();
    for item in &answered {
        if let Some(id) = item
            .ticket_id
            .filter(|id| tickets.iter().all(|t| t.id != *id))
            && let Some(t) = store::ticket(conn, id)?
        {
            tickets.push(t);
        }
    }
    if blamed.is_empty() {
        return store::record_event(
            conn,
            store::EventKind::Bounce,
            tickets.first().map(|t| t.id),
            Some(row),
            None,
            &format!(
                "{}: names no failed recipient and answers none of our messages; nobody marked",
                msg.subject
            ),
        );
    }
    for address in &blamed {
        store::mark_bouncing(conn, address, now)?;
        let about = answered
            .iter()
            .find(|item| item.to == *address)
            .and_then(|item| item.ticket_id)
            .or(tickets.first().map(|t| t.id));
        store::record_event(
            conn,
            store::EventKind::Bounce,
            about,
            Some(row),
            Some(address),
            &msg.subject,
        )?;
    }
    for t in &tickets {
        let mut ours = false;
        for address in &blamed {
            if *address == t.customer
                || (store::participants(conn, t.id)?.contains(address)
                    && store::wrote_to(conn, t.id, address)?)
            {
                ours = true;
                break;
            }
        }
        if ours {
            store::flag_ticket(conn, t.id, "bouncing")?;
        }
    }
    Ok(())
}

/// Mail from `address` was accepted as a person's: if it was marked bouncing, the mark is
/// cleared, and so is the `bouncing` flag of each ticket it takes part in that has no other
/// bouncing participant left.
pub(super) fn clear_bouncing(conn: &Connection, address: &str) -> Result<(), StoreError> {
    if address.is_empty() || !store::clear_bouncing(conn, address)? {
        return Ok(());
    }
    let flagged = store::flagged_tickets_of(conn, address, "bouncing")?;
    let mut cleared = Vec::new();
    for ticket_id in flagged {
        if !store::has_bouncing_participant(conn, ticket_id)? {
            store::unflag_ticket(conn, ticket_id, "bouncing")?;
            cleared.push(ticket_id);
        }
    }
    if cleared.is_empty() {
        return store::record_event(
            conn,
            store::EventKind::BounceCleared,
            None,
            None,
            Some(address),
            "mail from this address came in as a person's",
        );
    }
    for ticket_id in cleared {
        store::record_event(
            conn,
            store::EventKind::BounceCleared,
            Some(ticket_id),
            None,
            Some(address),
            "mail from this address came in as a person's; the ticket's bouncing flag is cleared",
        )?;
    }
    Ok(())
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
            conversation: None,
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
            conversation: out.conversation.as_deref(),
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
            conversation: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_ticket;

    fn store() -> (tempfile::TempDir, store::Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = store::Store::open(&dir.path().join("s.sqlite3")).unwrap();
        (dir, store)
    }

    /// Ticket 1 of `customer` with `cc` taking part, and an acknowledgement `ack@x` to the
    /// customer on it.
    fn ticket_with_ack(conn: &Connection, customer: &str, cc: &str) -> store::Ticket {
        let (id, _) = store::create_ticket(
            conn,
            &store::NewTicket {
                language: "en",
                ..sample_ticket(customer, 1)
            },
        )
        .unwrap();
        store::add_participant(conn, id, cc, store::ParticipantRole::Cc).unwrap();
        store::enqueue(
            conn,
            &store::NewOutgoing {
                kind: store::OutboxKind::Ack,
                ticket_id: Some(id),
                to_addr: customer,
                subject: "s",
                message_id: "ack@x",
                in_reply_to: None,
                raw: b"raw",
                status: store::OutboxStatus::Queued,
                last_error: None,
                at: 1,
                conversation: None,
            },
        )
        .unwrap();
        store::ticket(conn, id).unwrap().unwrap()
    }

    fn bounce(ids: &[&str], failed: &[&str]) -> ParsedMessage {
        ParsedMessage {
            subject: "failure notice".into(),
            bounced_message_ids: ids.iter().map(|s| s.to_string()).collect(),
            failed_recipients: failed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_recipient_of_the_answered_row_is_blamed_when_the_report_names_nobody() {
        let (_d, mut s) = store();
        let tx = s.begin().unwrap();
        let t = ticket_with_ack(&tx, "a@b.fr", "c@b.fr");
        record_bounce(&tx, &bounce(&["ack@x"], &[]), Some(&t), 1, 5).unwrap();
        assert!(store::is_bouncing(&tx, "a@b.fr").unwrap());
        assert_eq!(store::ticket(&tx, t.id).unwrap().unwrap().flags, "bouncing");
        // A person's mail from the address clears the mark and the flag.
        clear_bouncing(&tx, "a@b.fr").unwrap();
        assert!(!store::is_bouncing(&tx, "a@b.fr").unwrap());
        assert_eq!(store::ticket(&tx, t.id).unwrap().unwrap().flags, "");
    }

    #[test]
    fn a_report_naming_nobody_about_nothing_of_ours_marks_nobody() {
        let (_d, mut s) = store();
        let tx = s.begin().unwrap();
        let t = ticket_with_ack(&tx, "a@b.fr", "c@b.fr");
        record_bounce(&tx, &bounce(&["theirs@y"], &[]), Some(&t), 1, 5).unwrap();
        assert!(!store::is_bouncing(&tx, "a@b.fr").unwrap());
        assert_eq!(store::ticket(&tx, t.id).unwrap().unwrap().flags, "");
    }

    #[test]
    fn only_the_customer_or_a_participant_we_wrote_to_flags_the_ticket() {
        let (_d, mut s) = store();
        let tx = s.begin().unwrap();
        let t = ticket_with_ack(&tx, "a@b.fr", "c@b.fr");
        // A copied participant we never wrote to: marked, ticket not flagged.
        record_bounce(&tx, &bounce(&["ack@x"], &["c@b.fr"]), Some(&t), 1, 5).unwrap();
        assert!(store::is_bouncing(&tx, "c@b.fr").unwrap());
        assert_eq!(store::ticket(&tx, t.id).unwrap().unwrap().flags, "");
        // Once we wrote to them about the ticket, their bounce flags it.
        store::enqueue(
            &tx,
            &store::NewOutgoing {
                kind: store::OutboxKind::Notification,
                ticket_id: Some(t.id),
                to_addr: "c@b.fr",
                subject: "s",
                message_id: "relay@x",
                in_reply_to: None,
                raw: b"raw",
                status: store::OutboxStatus::Queued,
                last_error: None,
                at: 1,
                conversation: None,
            },
        )
        .unwrap();
        record_bounce(&tx, &bounce(&["relay@x"], &[]), None, 2, 6).unwrap();
        assert_eq!(store::ticket(&tx, t.id).unwrap().unwrap().flags, "bouncing");
        // The customer writing again does not clear a flag another participant still causes.
        store::mark_bouncing(&tx, "a@b.fr", 7).unwrap();
        clear_bouncing(&tx, "a@b.fr").unwrap();
        assert_eq!(store::ticket(&tx, t.id).unwrap().unwrap().flags, "bouncing");
        clear_bouncing(&tx, "c@b.fr").unwrap();
        assert_eq!(store::ticket(&tx, t.id).unwrap().unwrap().flags, "");
    }
}
