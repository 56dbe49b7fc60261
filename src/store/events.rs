//! Events (the audit trail of the pipeline's decisions), the counts `stats` and `status`
//! report, and quarantine: messages that failed in the pipeline, kept raw to be retried.

use rusqlite::{Connection, OptionalExtension, ToSql, params};
use serde::Serialize;

use super::{
    Direction, EventKind, MessageAction, OutboxKind, OutboxStatus, Result, StoreError,
    TicketStatus, now, ser_time,
};

/// Records an event now. `message_row` is a `messages` row id; `detail` is for the operator.
pub fn record_event(
    conn: &Connection,
    kind: EventKind,
    ticket_id: Option<i64>,
    message_row: Option<i64>,
    address: Option<&str>,
    detail: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (at, kind, ticket_id, message_id, address, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now(),
        kind,
        ticket_id,
        message_row,
        address,
        detail
    ])?;
    Ok(())
}

/// Counts over the whole database, as `stats --json` prints them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Inbound messages stored (quarantined ones included).
    pub messages: i64,
    pub tickets: i64,
    pub open_tickets: i64,
    pub automated: i64,
    /// Deliveries of a message already stored.
    pub duplicates: i64,
    pub quarantined: i64,
    /// Queued or being sent.
    pub acks_queued: i64,
    pub acks_sent: i64,
    pub acks_suppressed: i64,
    /// Queued or being sent.
    pub notifications_queued: i64,
    /// "At risk" and "breached" mail to the team, queued or being sent.
    pub escalations_queued: i64,
    pub outbox_failed: i64,
}

/// The counts of [`Stats`].
pub fn stats(conn: &Connection) -> Result<Stats> {
    let one = |sql: &str, params: &[&dyn ToSql]| -> Result<i64> {
        Ok(conn.query_row(sql, params, |r| r.get(0))?)
    };
    use OutboxKind::{Ack, Escalation, Notification};
    use OutboxStatus::{Failed, Queued, Sending, Sent, Suppressed};
    Ok(Stats {
        messages: one(
            "SELECT COUNT(*) FROM messages WHERE direction = ?1",
            params![Direction::In],
        )?,
        tickets: one("SELECT COUNT(*) FROM tickets", params![])?,
        open_tickets: one(
            "SELECT COUNT(*) FROM tickets WHERE status = ?1",
            params![TicketStatus::Open],
        )?,
        automated: one(
            "SELECT COUNT(*) FROM messages WHERE automated IS NOT NULL",
            params![],
        )?,
        duplicates: one(
            "SELECT COUNT(*) FROM events WHERE kind = ?1",
            params![EventKind::Duplicate],
        )?,
        quarantined: one(
            "SELECT COUNT(*) FROM messages WHERE action = ?1",
            params![MessageAction::Quarantined],
        )?,
        acks_queued: one(
            "SELECT COUNT(*) FROM outbox WHERE kind = ?1 AND status IN (?2, ?3)",
            params![Ack, Queued, Sending],
        )?,
        acks_sent: one(
            "SELECT COUNT(*) FROM outbox WHERE kind = ?1 AND status = ?2",
            params![Ack, Sent],
        )?,
        acks_suppressed: one(
            "SELECT COUNT(*) FROM outbox WHERE kind = ?1 AND status = ?2",
            params![Ack, Suppressed],
        )?,
        notifications_queued: one(
            "SELECT COUNT(*) FROM outbox WHERE kind = ?1 AND status IN (?2, ?3)",
            params![Notification, Queued, Sending],
        )?,
        escalations_queued: one(
            "SELECT COUNT(*) FROM outbox WHERE kind = ?1 AND status IN (?2, ?3)",
            params![Escalation, Queued, Sending],
        )?,
        outbox_failed: one(
            "SELECT COUNT(*) FROM outbox WHERE status = ?1",
            params![Failed],
        )?,
    })
}

/// Quarantined messages, newest first: (row id, source, error).
pub fn quarantined(conn: &Connection, limit: i64) -> Result<Vec<(i64, String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT id, source, COALESCE(error, '') FROM messages WHERE action = ?2
         ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit, MessageAction::Quarantined], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A quarantined message as `quarantine list` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantinedItem {
    /// Its `messages` row id, which `quarantine retry` takes.
    pub id: i64,
    #[serde(serialize_with = "ser_time")]
    pub received_at: i64,
    pub source: String,
    pub from: String,
    pub subject: String,
    pub error: String,
}

/// Every quarantined message, oldest first.
pub fn quarantine_list(conn: &Connection) -> Result<Vec<QuarantinedItem>> {
    let mut stmt = conn.prepare(
        "SELECT id, received_at, source, from_addr, subject, COALESCE(error, '')
         FROM messages WHERE action = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![MessageAction::Quarantined], |r| {
        Ok(QuarantinedItem {
            id: r.get(0)?,
            received_at: r.get(1)?,
            source: r.get(2)?,
            from: r.get(3)?,
            subject: r.get(4)?,
            error: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The raw bytes of a quarantined message, to run it through the pipeline again.
pub struct QuarantinedRaw {
    pub id: i64,
    pub source: String,
    pub raw: Vec<u8>,
}

/// The quarantined messages among `ids`, in the order given.
pub fn quarantined_raw(conn: &Connection, ids: &[i64]) -> Result<Vec<QuarantinedRaw>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, source, raw FROM messages WHERE id = ?1 AND action = ?2")?;
    let mut found = Vec::new();
    for &id in ids {
        if let Some(row) = stmt
            .query_row(params![id, MessageAction::Quarantined], |r| {
                Ok(QuarantinedRaw {
                    id: r.get(0)?,
                    source: r.get(1)?,
                    raw: r.get(2)?,
                })
            })
            .optional()?
        {
            found.push(row);
        }
    }
    Ok(found)
}

/// Removes quarantined rows about to be ingested again, recording why each had been held;
/// inside the transaction that ingests them, so a message is never in neither place.
///
/// # Errors
/// [`StoreError::Changed`] when one of `ids` is no longer quarantined (another process retried
/// it meanwhile).
pub fn release_quarantined(conn: &Connection, ids: &[i64]) -> Result<()> {
    for &id in ids {
        let deleted: Option<Option<String>> = conn
            .prepare_cached("DELETE FROM messages WHERE id = ?1 AND action = ?2 RETURNING error")?
            .query_row(params![id, MessageAction::Quarantined], |r| r.get(0))
            .optional()?;
        let Some(error) = deleted else {
            return Err(StoreError::Changed(format!(
                "quarantined message {id} was retried or removed meanwhile; nothing changed"
            )));
        };
        record_event(
            conn,
            EventKind::Requeued,
            None,
            Some(id),
            None,
            &format!("was quarantined: {}", error.unwrap_or_default()),
        )?;
    }
    Ok(())
}
