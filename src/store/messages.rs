//! Messages: dedupe, the threading lookups by Message-ID, storing, and a ticket's history.
//!
//! Message-IDs are stored without angle brackets (as mail-parser returns them) and printed
//! with them.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Direction, MessageAction, Result, ser_opt_time};

/// A message already stored that a new one duplicates.
#[derive(Debug, Clone)]
pub struct Existing {
    /// Its `messages` row id.
    pub id: i64,
    pub ticket_ref: Option<String>,
    pub category: Option<String>,
}

/// Finds a stored inbound message with the same Message-ID or the same raw bytes (`sha` is
/// the hex SHA-256 of the raw message).
pub fn find_duplicate(conn: &Connection, message_id: &str, sha: &str) -> Result<Option<Existing>> {
    // Two single-table lookups, each on its own index.
    let row =
        |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?, r.get(2)?));
    let mut found = conn
        .prepare_cached(
            "SELECT id, ticket_id, category FROM messages WHERE message_id = ?1 AND direction = ?2",
        )?
        .query_row(params![message_id, Direction::In], row)
        .optional()?;
    if found.is_none() {
        found = conn
            .prepare_cached("SELECT id, ticket_id, category FROM messages WHERE raw_sha256 = ?1 AND direction = ?2 LIMIT 1")?
            .query_row(params![sha, Direction::In], row)
            .optional()?;
    }
    let Some((id, ticket_id, category)) = found else {
        return Ok(None);
    };
    let ticket_ref = match ticket_id {
        Some(t) => conn
            .prepare_cached("SELECT ref FROM tickets WHERE id = ?1")?
            .query_row(params![t], |r| r.get(0))
            .optional()?,
        None => None,
    };
    Ok(Some(Existing {
        id,
        ticket_ref,
        category,
    }))
}

/// The ticket (row id) of the first of `ids` that names a stored message (ours or theirs) on a
/// ticket, with that id.
pub fn ticket_by_message_ids(conn: &Connection, ids: &[String]) -> Result<Option<(i64, String)>> {
    let mut theirs = conn.prepare_cached(
        "SELECT ticket_id FROM messages WHERE message_id = ?1 AND ticket_id IS NOT NULL LIMIT 1",
    )?;
    let mut ours = conn.prepare_cached(
        "SELECT ticket_id FROM outbox WHERE message_id = ?1 AND ticket_id IS NOT NULL",
    )?;
    for id in ids {
        let found = match ours.query_row(params![id], |r| r.get(0)).optional()? {
            Some(t) => Some(t),
            None => theirs.query_row(params![id], |r| r.get(0)).optional()?,
        };
        if let Some(t) = found {
            return Ok(Some((t, id.clone())));
        }
    }
    Ok(None)
}

/// Remembers the ids a message on `ticket_id` cites.
pub fn record_refs(conn: &Connection, ticket_id: i64, ids: &[String]) -> Result<()> {
    let mut stmt = conn
        .prepare_cached("INSERT OR IGNORE INTO message_refs (ref_id, ticket_id) VALUES (?1, ?2)")?;
    for id in ids {
        stmt.execute(params![id, ticket_id])?;
    }
    Ok(())
}

/// The oldest ticket with a message that cites one of `ids` too (nearest id first).
pub fn ticket_by_shared_ref(conn: &Connection, ids: &[String]) -> Result<Option<(i64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT ticket_id FROM message_refs WHERE ref_id = ?1 ORDER BY ticket_id LIMIT 1",
    )?;
    for id in ids {
        if let Some(t) = stmt.query_row(params![id], |r| r.get(0)).optional()? {
            return Ok(Some((t, id.clone())));
        }
    }
    Ok(None)
}

/// A message to store, inbound or ours.
pub struct NewMessage<'a> {
    pub ticket_id: Option<i64>,
    pub direction: Direction,
    /// Without angle brackets.
    pub message_id: &'a str,
    /// Hex SHA-256 of the raw bytes.
    pub raw_sha256: &'a str,
    /// Space-separated ids, without brackets.
    pub in_reply_to: &'a str,
    /// Space-separated ids, without brackets.
    pub refs: &'a str,
    pub from_addr: &'a str,
    pub from_name: Option<&'a str>,
    /// Space-separated addresses.
    pub to_addrs: &'a str,
    pub subject: &'a str,
    /// The Date header, unix seconds.
    pub date: Option<i64>,
    /// Unix seconds.
    pub received_at: i64,
    pub action: MessageAction,
    pub category: Option<&'a str>,
    pub language: Option<&'a str>,
    /// Why it counts as machine-generated; None for human mail.
    pub automated: Option<&'a str>,
    pub new_text: &'a str,
    pub full_text: &'a str,
    /// JSON array of attachment descriptions.
    pub attachments: &'a str,
    /// Bytes.
    pub size: i64,
    pub raw: &'a [u8],
    /// File path, `stdin`, or `imap:<mailbox>:<uidvalidity>:<uid>`.
    pub source: &'a str,
    /// Newline-separated parse warnings.
    pub warnings: &'a str,
    /// Why it was quarantined.
    pub error: Option<&'a str>,
}

/// Stores a message; returns its row id.
///
/// # Errors
/// Besides the database's own, a second inbound message with the same Message-ID (the unique
/// index on (message_id, direction)).
pub fn insert_message(conn: &Connection, m: &NewMessage<'_>) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO messages (ticket_id, direction, message_id, raw_sha256, in_reply_to, refs,
            from_addr, from_name, to_addrs, subject, date, received_at, action, category, language,
            automated, new_text, full_text, attachments, size, raw, source, warnings, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                 ?19, ?20, ?21, ?22, ?23, ?24)",
    )?
    .execute(params![
        m.ticket_id,
        m.direction,
        m.message_id,
        m.raw_sha256,
        m.in_reply_to,
        m.refs,
        m.from_addr,
        m.from_name,
        m.to_addrs,
        m.subject,
        m.date,
        m.received_at,
        m.action,
        m.category,
        m.language,
        m.automated,
        m.new_text,
        m.full_text,
        m.attachments,
        m.size,
        m.raw,
        m.source,
        m.warnings,
        m.error
    ])?;
    Ok(conn.last_insert_rowid())
}

/// A message as `tickets show` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// With angle brackets.
    pub message_id: String,
    pub direction: Direction,
    pub from: String,
    pub subject: String,
    #[serde(serialize_with = "ser_opt_time")]
    pub date: Option<i64>,
    /// The stored [`MessageAction`] for what we received; for what we sent, a description
    /// such as `ack to a@b.fr (sent)`.
    pub action: String,
    pub automated: Option<String>,
    pub text: String,
    pub attachments: serde_json::Value,
}

/// What was received on the ticket and what we sent about it, in time order.
pub fn ticket_messages(conn: &Connection, ticket_id: i64) -> Result<Vec<MessageView>> {
    // What we sent comes from the outbox, interleaved by time with what we received.
    let mut stmt = conn.prepare(
        "SELECT message_id, direction, from_addr, subject, at, action, automated, text, attachments FROM (
             SELECT message_id, direction, from_addr, subject, COALESCE(date, received_at) AS at,
                    action, automated, new_text AS text, attachments, received_at AS sort_at, 0 AS side, id
             FROM messages WHERE ticket_id = ?1
             UNION ALL
             SELECT message_id, ?2, '', subject, COALESCE(sent_at, created_at), kind || ' to ' || to_addr || ' (' || status || ')',
                    NULL, '', '[]', created_at, 1, id
             FROM outbox WHERE ticket_id = ?1)
         ORDER BY sort_at, side, id",
    )?;
    let rows = stmt.query_map(params![ticket_id, Direction::Out], |r| {
        let id: String = r.get(0)?;
        Ok(MessageView {
            message_id: format!("<{id}>"),
            direction: r.get(1)?,
            from: r.get(2)?,
            subject: r.get(3)?,
            date: r.get(4)?,
            action: r.get(5)?,
            automated: r.get(6)?,
            text: r.get(7)?,
            attachments: serde_json::from_str(&r.get::<_, String>(8)?).unwrap_or_default(),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
