//! What agents change on a ticket (status, assignee, category) and what the relay needs to
//! thread an answer into the customer's conversation.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Direction, EventKind, Result, TicketStatus, record_event};

/// Sets the ticket's status at `at` (unix seconds) and records a `status_changed` event
/// (`open -> pending`) by `by`. Closing remembers when, for `support.reopen_days`. Returns
/// the previous status when it changed, None when it already was `to`.
pub fn change_status(
    conn: &Connection,
    ticket_id: i64,
    to: TicketStatus,
    at: i64,
    by: Option<&str>,
) -> Result<Option<TicketStatus>> {
    let from: TicketStatus = conn
        .prepare_cached("SELECT status FROM tickets WHERE id = ?1")?
        .query_row(params![ticket_id], |r| r.get(0))?;
    if from == to {
        return Ok(None);
    }
    conn.prepare_cached(
        "UPDATE tickets SET status = ?2, updated_at = ?3,
                closed_at = CASE WHEN ?2 = ?4 THEN ?3 ELSE closed_at END
         WHERE id = ?1",
    )?
    .execute(params![ticket_id, to, at, TicketStatus::Closed])?;
    record_event(
        conn,
        EventKind::StatusChanged,
        Some(ticket_id),
        None,
        by,
        &format!("{from} -> {to}"),
    )?;
    Ok(Some(from))
}

/// Gives the ticket to `agent` (lower-case address) and records it, by `by`.
pub fn assign(conn: &Connection, ticket_id: i64, agent: &str, by: Option<&str>) -> Result<()> {
    conn.prepare_cached("UPDATE tickets SET assignee = ?2 WHERE id = ?1")?
        .execute(params![ticket_id, agent])?;
    record_event(conn, EventKind::Assigned, Some(ticket_id), None, by, agent)
}

/// Moves the ticket to `category` and records it, by `by`.
pub fn recategorise(
    conn: &Connection,
    ticket_id: i64,
    category: &str,
    by: Option<&str>,
) -> Result<()> {
    let from: String = conn
        .prepare_cached("SELECT category FROM tickets WHERE id = ?1")?
        .query_row(params![ticket_id], |r| r.get(0))?;
    conn.prepare_cached("UPDATE tickets SET category = ?2 WHERE id = ?1")?
        .execute(params![ticket_id, category])?;
    record_event(
        conn,
        EventKind::Recategorised,
        Some(ticket_id),
        None,
        by,
        &format!("{from} -> {category}"),
    )
}

/// Notes which closed ticket a new one continues.
pub fn set_previous(conn: &Connection, ticket_id: i64, previous_ref: &str) -> Result<()> {
    conn.prepare_cached("UPDATE tickets SET previous_ref = ?2 WHERE id = ?1")?
        .execute(params![ticket_id, previous_ref])?;
    Ok(())
}

/// The conversation as the customer's mail client knows it: the Message-IDs (without
/// brackets) of the customer's messages on the ticket and of what we sent them
/// (acknowledgements, relayed answers), oldest first; and the customer's latest message id,
/// the one an answer replies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    pub ids: Vec<String>,
    pub latest_from_customer: Option<String>,
}

/// The [`Conversation`] of ticket `ticket_id` with `customer`.
pub fn conversation(conn: &Connection, ticket_id: i64, customer: &str) -> Result<Conversation> {
    let mut stmt = conn.prepare_cached(
        "SELECT message_id, from_addr = ?2 AND direction = ?3 AS theirs FROM (
             SELECT message_id, from_addr, direction, received_at AS at, id, 0 AS side
               FROM messages
              WHERE ticket_id = ?1 AND automated IS NULL AND error IS NULL
                AND ((direction = ?3 AND from_addr = ?2) OR direction = ?4)
             UNION ALL
             SELECT message_id, '', ?4, created_at, id, 1 FROM outbox
              WHERE ticket_id = ?1 AND to_addr = ?2 AND kind = 'ack' AND status != 'suppressed')
         ORDER BY at, side, id",
    )?;
    let rows = stmt.query_map(
        params![ticket_id, customer, Direction::In, Direction::Out],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)),
    )?;
    let mut conversation = Conversation::default();
    for row in rows {
        let (id, theirs) = row?;
        if theirs {
            conversation.latest_from_customer = Some(id.clone());
        }
        if !conversation.ids.contains(&id) {
            conversation.ids.push(id);
        }
    }
    Ok(conversation)
}

/// The ticket's assignee, if any.
pub fn assignee(conn: &Connection, ticket_id: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT assignee FROM tickets WHERE id = ?1")?
        .query_row(params![ticket_id], |r| r.get(0))
        .optional()?
        .flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_ticket;
    use crate::store::tests::temp_store;
    use crate::store::{NewTicket, create_ticket, ticket};

    #[test]
    fn status_changes_are_recorded_once_and_closing_remembers_when() {
        let (_d, store) = temp_store();
        let conn = store.conn();
        let (id, _) = create_ticket(
            conn,
            &NewTicket {
                category: "other",
                ..sample_ticket("a@b.fr", 10)
            },
        )
        .unwrap();
        assert_eq!(
            change_status(conn, id, TicketStatus::Pending, 20, Some("alice@x")).unwrap(),
            Some(TicketStatus::Open)
        );
        assert_eq!(
            change_status(conn, id, TicketStatus::Pending, 21, None).unwrap(),
            None
        );
        change_status(conn, id, TicketStatus::Closed, 30, None).unwrap();
        let t = ticket(conn, id).unwrap().unwrap();
        assert_eq!(t.status, TicketStatus::Closed);
        assert_eq!(t.closed_at, Some(30));
        let events: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM events WHERE kind = 'status_changed' AND ticket_id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(events, 2);
    }
}
