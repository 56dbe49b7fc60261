//! Tickets and their participants: opening, reading, touching, flagging.
//!
//! A ticket's number is the `n` of its `PREFIX-n` reference, taken inside the batch's
//! IMMEDIATE transaction so no other writer can take the same one.

use rusqlite::{Connection, OptionalExtension, named_params, params};
use serde::Serialize;

use super::{Direction, ParticipantRole, Result, TicketStatus, now, ser_opt_time, ser_time};

/// A ticket as stored, as `tickets list --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Ticket {
    #[serde(skip)]
    pub id: i64,
    /// `PREFIX-n`.
    #[serde(rename = "id")]
    pub ticket_ref: String,
    pub customer: String,
    #[serde(skip)]
    pub customer_name: Option<String>,
    pub subject: String,
    pub category: String,
    pub status: TicketStatus,
    /// Unix seconds; printed as RFC 3339.
    #[serde(serialize_with = "ser_time")]
    pub created_at: i64,
    /// When the promised answer is due (unix seconds), if the category promises one.
    #[serde(serialize_with = "ser_opt_time")]
    pub due_at: Option<i64>,
    pub language: String,
    /// Space-separated: `bouncing`, `delivery_failed`, `oversized`.
    pub flags: String,
    /// Inbound messages on the ticket.
    pub message_count: i64,
    /// The agent who owns the ticket, if one was assigned.
    pub assignee: Option<String>,
    /// When it was last closed (unix seconds).
    #[serde(serialize_with = "ser_opt_time")]
    pub closed_at: Option<i64>,
    /// The closed ticket this one continues (a customer answered it after
    /// `support.reopen_days`).
    pub previous: Option<String>,
}

/// The columns [`ticket_from_row`] reads; the query binds `:inbound` to [`Direction::In`].
const TICKET_COLUMNS: &str =
    "t.id, t.ref, t.customer, t.customer_name, t.subject, t.category, t.status,
     t.created_at, t.due_at, t.language, t.flags,
     (SELECT COUNT(*) FROM messages m WHERE m.ticket_id = t.id AND m.direction = :inbound),
     t.assignee, t.closed_at, t.previous_ref";

fn ticket_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Ticket> {
    Ok(Ticket {
        id: r.get(0)?,
        ticket_ref: r.get(1)?,
        customer: r.get(2)?,
        customer_name: r.get(3)?,
        subject: r.get(4)?,
        category: r.get(5)?,
        status: r.get(6)?,
        created_at: r.get(7)?,
        due_at: r.get(8)?,
        language: r.get(9)?,
        flags: r.get(10)?,
        message_count: r.get(11)?,
        assignee: r.get(12)?,
        closed_at: r.get(13)?,
        previous: r.get(14)?,
    })
}

/// The ticket with row id `id`, if any.
pub fn ticket(conn: &Connection, id: i64) -> Result<Option<Ticket>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets t WHERE t.id = :id"
        ))?
        .query_row(
            named_params! {":id": id, ":inbound": Direction::In},
            ticket_from_row,
        )
        .optional()?)
}

/// The ticket whose reference is `ticket_ref`, in any case (`cht-1` finds `CHT-1`).
pub fn ticket_by_ref(conn: &Connection, ticket_ref: &str) -> Result<Option<Ticket>> {
    Ok(conn
        .query_row(
            &format!("SELECT {TICKET_COLUMNS} FROM tickets t WHERE t.ref = :ref COLLATE NOCASE"),
            named_params! {":ref": ticket_ref, ":inbound": Direction::In},
            ticket_from_row,
        )
        .optional()?)
}

/// Tickets, oldest first, optionally filtered. The filters are the operator's text as typed:
/// one that names no status or category matches nothing.
pub fn list_tickets(
    conn: &Connection,
    status: Option<&str>,
    category: Option<&str>,
) -> Result<Vec<Ticket>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {TICKET_COLUMNS} FROM tickets t
         WHERE (:status IS NULL OR t.status = :status)
           AND (:category IS NULL OR t.category = :category)
         ORDER BY t.id"
    ))?;
    let rows = stmt.query_map(
        named_params! {":status": status, ":category": category, ":inbound": Direction::In},
        ticket_from_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Everything needed to open a ticket.
pub struct NewTicket<'a> {
    /// The reference prefix, e.g. `CHT`.
    pub prefix: &'a str,
    pub customer: &'a str,
    pub customer_name: Option<&'a str>,
    pub subject: &'a str,
    pub category: &'a str,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub due_at: Option<i64>,
    pub language: &'a str,
}

/// Opens a ticket and makes its customer a participant. Returns (id, ref).
pub fn create_ticket(conn: &Connection, t: &NewTicket<'_>) -> Result<(i64, String)> {
    // Inside an IMMEDIATE transaction nobody else can take the same number.
    let id: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(id), 0) + 1 FROM tickets")?
        .query_row([], |r| r.get(0))?;
    let ticket_ref = format!("{}-{id}", t.prefix);
    conn.prepare_cached(
        "INSERT INTO tickets (id, ref, customer, customer_name, subject, category, created_at,
                              updated_at, due_at, language)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9)",
    )?
    .execute(params![
        id,
        ticket_ref,
        t.customer,
        t.customer_name,
        t.subject,
        t.category,
        t.created_at,
        t.due_at,
        t.language
    ])?;
    add_participant(conn, id, t.customer, ParticipantRole::Customer)?;
    Ok((id, ticket_ref))
}

/// Adds `address` to the ticket's participants, unless it is empty or already one (its first
/// role stays).
pub fn add_participant(
    conn: &Connection,
    ticket_id: i64,
    address: &str,
    role: ParticipantRole,
) -> Result<()> {
    if address.is_empty() {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT OR IGNORE INTO participants (ticket_id, address, role) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![ticket_id, address, role])?;
    Ok(())
}

/// The addresses taking part in the ticket, in no particular order.
pub fn participants(conn: &Connection, ticket_id: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT address FROM participants WHERE ticket_id = ?1")?;
    let rows = stmt.query_map(params![ticket_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Marks the ticket updated; reopens it when closed. Returns true if and only if it was reopened.
pub fn touch_ticket(conn: &Connection, ticket_id: i64, at: i64) -> Result<bool> {
    let reopened =
        conn.prepare_cached(
            "UPDATE tickets SET status = ?3, updated_at = ?2 WHERE id = ?1 AND status = ?4",
        )?
        .execute(params![
            ticket_id,
            at,
            TicketStatus::Open,
            TicketStatus::Closed
        ])? > 0;
    if !reopened {
        conn.prepare_cached("UPDATE tickets SET updated_at = ?2 WHERE id = ?1")?
            .execute(params![ticket_id, at])?;
    }
    Ok(reopened)
}

/// Marks the ticket updated at `at` (unix seconds) and leaves its status as it is, for mail
/// that must not reopen it (automated mail); returns that status, or `None` when there is no
/// such ticket.
pub fn touch_ticket_keep_status(
    conn: &Connection,
    ticket_id: i64,
    at: i64,
) -> Result<Option<TicketStatus>> {
    Ok(conn
        .prepare_cached("UPDATE tickets SET updated_at = ?2 WHERE id = ?1 RETURNING status")?
        .query_row(params![ticket_id, at], |r| r.get(0))
        .optional()?)
}

/// Sets the ticket's status, marking it updated now.
pub fn set_ticket_status(conn: &Connection, ticket_id: i64, status: TicketStatus) -> Result<()> {
    conn.execute(
        "UPDATE tickets SET status = ?2, updated_at = ?3 WHERE id = ?1",
        params![ticket_id, status, now()],
    )?;
    Ok(())
}

/// Adds `flag` to the ticket's flags once.
pub fn flag_ticket(conn: &Connection, ticket_id: i64, flag: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE tickets SET flags = TRIM(flags || ' ' || ?2)
         WHERE id = ?1 AND (' ' || flags || ' ') NOT LIKE ('% ' || ?2 || ' %')",
    )?
    .execute(params![ticket_id, flag])?;
    Ok(())
}

/// The tickets `address` takes part in, as `(row id, subject)`, most recently updated
/// first, at most `limit`.
pub fn tickets_of(conn: &Connection, address: &str, limit: u32) -> Result<Vec<(i64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.id, t.subject FROM tickets t JOIN participants p ON p.ticket_id = t.id
         WHERE p.address = ?1 ORDER BY t.updated_at DESC, t.id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![address, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Removes `flag` from the ticket's flags, if it has it.
pub fn unflag_ticket(conn: &Connection, ticket_id: i64, flag: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE tickets SET flags = TRIM(REPLACE(' ' || flags || ' ', ' ' || ?2 || ' ', ' '))
         WHERE id = ?1 AND (' ' || flags || ' ') LIKE ('% ' || ?2 || ' %')",
    )?
    .execute(params![ticket_id, flag])?;
    Ok(())
}

/// The tickets flagged `flag` that `address` takes part in, oldest first.
pub fn flagged_tickets_of(conn: &Connection, address: &str, flag: &str) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.id FROM tickets t JOIN participants p ON p.ticket_id = t.id
         WHERE p.address = ?1 AND (' ' || t.flags || ' ') LIKE ('% ' || ?2 || ' %')
         ORDER BY t.id",
    )?;
    let rows = stmt.query_map(params![address, flag], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Returns true if and only if one of the ticket's participants is marked bouncing.
pub fn has_bouncing_participant(conn: &Connection, ticket_id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM participants p JOIN addresses a ON a.address = p.address
                            WHERE p.ticket_id = ?1 AND a.bouncing_since IS NOT NULL)",
        )?
        .query_row(params![ticket_id], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_ticket;
    use crate::store::tests::temp_store;

    #[test]
    fn ticket_refs_count_up_and_flags_are_added_once() {
        let (_d, mut store) = temp_store();
        let tx = store.begin().unwrap();
        let t = NewTicket {
            prefix: "CHT",
            customer: "a@b.fr",
            customer_name: None,
            subject: "s",
            category: "billing",
            created_at: 1,
            due_at: None,
            language: "fr",
        };
        assert_eq!(create_ticket(&tx, &t).unwrap(), (1, "CHT-1".into()));
        assert_eq!(create_ticket(&tx, &t).unwrap(), (2, "CHT-2".into()));
        flag_ticket(&tx, 1, "bouncing").unwrap();
        flag_ticket(&tx, 1, "bouncing").unwrap();
        flag_ticket(&tx, 1, "oversized").unwrap();
        tx.commit().unwrap();
        let t1 = ticket_by_ref(store.conn(), "cht-1").unwrap().unwrap();
        assert_eq!(t1.flags, "bouncing oversized");
        assert_eq!(participants(store.conn(), 1).unwrap(), vec!["a@b.fr"]);
    }

    #[test]
    fn a_closed_ticket_is_reopened_by_a_touch() {
        let (_d, mut store) = temp_store();
        let tx = store.begin().unwrap();
        let (id, _) = create_ticket(&tx, &sample_ticket("a@b.fr", 1)).unwrap();
        assert!(!touch_ticket(&tx, id, 2).unwrap());
        set_ticket_status(&tx, id, TicketStatus::Closed).unwrap();
        assert_eq!(list_tickets(&tx, Some("closed"), None).unwrap().len(), 1);
        assert!(touch_ticket(&tx, id, 3).unwrap());
        assert_eq!(ticket(&tx, id).unwrap().unwrap().status, TicketStatus::Open);
        assert!(list_tickets(&tx, Some("Closed"), None).unwrap().is_empty());
    }

    #[test]
    fn a_touch_that_keeps_the_status_leaves_a_closed_ticket_closed() {
        let (_d, mut store) = temp_store();
        let tx = store.begin().unwrap();
        let (id, _) = create_ticket(&tx, &sample_ticket("a@b.fr", 1)).unwrap();
        set_ticket_status(&tx, id, TicketStatus::Closed).unwrap();
        assert_eq!(
            touch_ticket_keep_status(&tx, id, 5).unwrap(),
            Some(TicketStatus::Closed)
        );
        assert_eq!(
            ticket(&tx, id).unwrap().unwrap().status,
            TicketStatus::Closed
        );
        let updated: i64 = tx
            .query_row("SELECT updated_at FROM tickets WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(updated, 5);
        assert_eq!(touch_ticket_keep_status(&tx, id + 1, 5).unwrap(), None);
    }
}
