//! The outbox (mail we queue, send, retry or hold back) and the addresses it must not go to.
//!
//! A row's life is [`OutboxStatus`]: the pipeline queues it inside the batch's transaction,
//! the sender takes it (`sending`), then marks it `sent`, `queued` again for a retry, or
//! `failed`. Replies cite our Message-IDs, which is why the rows stay after sending.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{OutboxKind, OutboxStatus, Result, ser_time};

/// A mail to queue.
pub struct NewOutgoing<'a> {
    pub kind: OutboxKind,
    pub ticket_id: Option<i64>,
    pub to_addr: &'a str,
    pub subject: &'a str,
    /// Without angle brackets.
    pub message_id: &'a str,
    /// Without angle brackets.
    pub in_reply_to: Option<&'a str>,
    /// The complete message as it will be sent.
    pub raw: &'a [u8],
    /// [`OutboxStatus::Queued`], or [`OutboxStatus::Suppressed`] to keep a record of what we
    /// chose not to send.
    pub status: OutboxStatus,
    /// For a suppressed row, why.
    pub last_error: Option<&'a str>,
    /// Unix seconds: created, and first due.
    pub at: i64,
    /// The Outlook conversation of the `Thread-Index` we set (header block, hex), if any.
    pub conversation: Option<&'a str>,
}

/// Writes a row to the outbox; returns its id.
///
/// # Errors
/// Besides the database's own, a Message-ID already in the outbox.
pub fn enqueue(conn: &Connection, o: &NewOutgoing<'_>) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO outbox (kind, ticket_id, to_addr, subject, message_id, in_reply_to, raw,
                             status, last_error, created_at, next_attempt_at, conversation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
    )?
    .execute(params![
        o.kind,
        o.ticket_id,
        o.to_addr,
        o.subject,
        o.message_id,
        o.in_reply_to,
        o.raw,
        o.status,
        o.last_error,
        o.at,
        o.conversation
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Counts acknowledgements queued or sent to `address` since `since` (unix seconds;
/// suppressed ones excluded).
pub fn acks_since(conn: &Connection, address: &str, since: i64) -> Result<u32> {
    sent_since(conn, address, OutboxKind::Ack, since)
}

/// How many mails of `kind` to `address` were queued (not suppressed) at or after `since`.
pub fn sent_since(conn: &Connection, address: &str, kind: OutboxKind, since: i64) -> Result<u32> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM outbox WHERE to_addr = ?1 AND kind = ?3
             AND status != ?4 AND created_at >= ?2",
        )?
        .query_row(
            params![address, since, kind, OutboxStatus::Suppressed],
            |r| r.get(0),
        )?)
}

/// An outbox row as `outbox list` prints it, and as the sender needs it.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxItem {
    pub id: i64,
    pub kind: OutboxKind,
    /// The ticket's `PREFIX-n`.
    pub ticket: Option<String>,
    pub to: String,
    pub subject: String,
    /// With angle brackets.
    pub message_id: String,
    /// With angle brackets.
    pub in_reply_to: Option<String>,
    pub status: OutboxStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    #[serde(serialize_with = "ser_time")]
    pub created_at: i64,
    #[serde(skip)]
    pub ticket_id: Option<i64>,
}

const OUTBOX_COLUMNS: &str =
    "o.id, o.kind, t.ref, o.to_addr, o.subject, o.message_id, o.in_reply_to,
     o.status, o.attempts, o.last_error, o.created_at, o.ticket_id";

fn outbox_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxItem> {
    let mid: String = r.get(5)?;
    let irt: Option<String> = r.get(6)?;
    Ok(OutboxItem {
        id: r.get(0)?,
        kind: r.get(1)?,
        ticket: r.get(2)?,
        to: r.get(3)?,
        subject: r.get(4)?,
        message_id: format!("<{mid}>"),
        in_reply_to: irt.map(|i| format!("<{i}>")),
        status: r.get(7)?,
        attempts: r.get(8)?,
        last_error: r.get(9)?,
        created_at: r.get(10)?,
        ticket_id: r.get(11)?,
    })
}

/// Outbox rows, oldest first. The filter is the operator's text as typed: one that names no
/// status matches nothing.
pub fn list_outbox(conn: &Connection, status: Option<&str>) -> Result<Vec<OutboxItem>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox o LEFT JOIN tickets t ON t.id = o.ticket_id
         WHERE (?1 IS NULL OR o.status = ?1) ORDER BY o.id"
    ))?;
    let rows = stmt.query_map(params![status], outbox_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The bytes of outbox row `id`, if there is one.
pub fn outbox_raw(conn: &Connection, id: i64) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row("SELECT raw FROM outbox WHERE id = ?1", params![id], |r| {
            r.get(0)
        })
        .optional()?)
}

/// The oldest queued row whose time has come (`at`, unix seconds), with its bytes.
pub fn next_due(conn: &Connection, at: i64) -> Result<Option<(OutboxItem, Vec<u8>)>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {OUTBOX_COLUMNS}, o.raw FROM outbox o LEFT JOIN tickets t ON t.id = o.ticket_id
                 WHERE o.status = ?2 AND o.next_attempt_at <= ?1 ORDER BY o.id LIMIT 1"
            ),
            params![at, OutboxStatus::Queued],
            |r| Ok((outbox_from_row(r)?, r.get(12)?)),
        )
        .optional()?)
}

/// When (unix seconds) the next queued row is due, if any.
pub fn next_due_at(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.query_row(
        "SELECT MIN(next_attempt_at) FROM outbox WHERE status = ?1",
        params![OutboxStatus::Queued],
        |r| r.get(0),
    )?)
}

/// Takes the row for sending: counts the attempt.
pub fn mark_sending(conn: &Connection, id: i64) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET status = ?2, attempts = attempts + 1 WHERE id = ?1",
        params![id, OutboxStatus::Sending],
    )?;
    Ok(())
}

/// The server took the message at `at` (unix seconds).
pub fn mark_sent(conn: &Connection, id: i64, at: i64) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET status = ?3, sent_at = ?2, last_error = NULL WHERE id = ?1",
        params![id, at, OutboxStatus::Sent],
    )?;
    Ok(())
}

/// A temporary failure: queued again, due at `next_at` (unix seconds).
pub fn mark_retry(conn: &Connection, id: i64, next_at: i64, error: &str) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET status = ?4, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
        params![id, next_at, error, OutboxStatus::Queued],
    )?;
    Ok(())
}

/// A permanent failure, or retries given up: never sent.
pub fn mark_failed(conn: &Connection, id: i64, error: &str) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET status = ?3, last_error = ?2 WHERE id = ?1",
        params![id, error, OutboxStatus::Failed],
    )?;
    Ok(())
}

/// After a crash, rows caught in `sending` are sent again: at most one message is doubled.
/// Returns how many.
pub fn requeue_interrupted(conn: &Connection) -> Result<usize> {
    Ok(conn.execute(
        "UPDATE outbox SET status = ?1 WHERE status = ?2",
        params![OutboxStatus::Queued, OutboxStatus::Sending],
    )?)
}

/// How many rows are in each status, for the statuses that have any, in the order of their
/// text.
pub fn outbox_counts(conn: &Connection) -> Result<Vec<(OutboxStatus, i64)>> {
    let mut stmt =
        conn.prepare("SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---------------------------------------------------------------- addresses

/// Records a bounce from `address` at `at` (unix seconds).
pub fn mark_bouncing(conn: &Connection, address: &str, at: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO addresses (address, bouncing_since, bounce_count) VALUES (?1, ?2, 1)
         ON CONFLICT (address) DO UPDATE SET bounce_count = bounce_count + 1,
             bouncing_since = COALESCE(bouncing_since, ?2)",
    )?
    .execute(params![address, at])?;
    Ok(())
}

/// The outbox rows (what we sent) whose Message-ID (without brackets) is one of `ids`, in
/// the order of `ids`: the mail a delivery report answers.
pub fn outbox_by_message_ids(conn: &Connection, ids: &[String]) -> Result<Vec<OutboxItem>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox o LEFT JOIN tickets t ON t.id = o.ticket_id
         WHERE o.message_id = ?1"
    ))?;
    let mut rows = Vec::new();
    for id in ids {
        if let Some(row) = stmt.query_row(params![id], outbox_from_row).optional()? {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Returns true if and only if we queued mail to `address` about ticket `ticket_id`.
pub fn wrote_to(conn: &Connection, ticket_id: i64, address: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE ticket_id = ?1 AND to_addr = ?2)",
        )?
        .query_row(params![ticket_id, address], |r| r.get(0))?)
}

/// Mail from `address` came in as a person's: it no longer counts as bouncing (its bounce
/// count stays). Returns true if and only if it was bouncing.
pub fn clear_bouncing(conn: &Connection, address: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE addresses SET bouncing_since = NULL
             WHERE address = ?1 AND bouncing_since IS NOT NULL",
        )?
        .execute(params![address])?
        > 0)
}

/// Returns true if and only if mail to `address` bounced and nothing cleared it since.
pub fn is_bouncing(conn: &Connection, address: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT bouncing_since IS NOT NULL FROM addresses WHERE address = ?1")?
        .query_row(params![address], |r| r.get(0))
        .optional()?
        .unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_store;

    #[test]
    fn interrupted_sends_are_queued_again() {
        let (_d, mut store) = temp_store();
        let tx = store.begin().unwrap();
        let id = enqueue(
            &tx,
            &NewOutgoing {
                kind: OutboxKind::Ack,
                ticket_id: None,
                to_addr: "a@b.fr",
                subject: "s",
                message_id: "m@x",
                in_reply_to: None,
                raw: b"raw",
                status: OutboxStatus::Queued,
                last_error: None,
                at: 10,
                conversation: None,
            },
        )
        .unwrap();
        tx.commit().unwrap();
        let (item, raw) = next_due(store.conn(), 10).unwrap().unwrap();
        assert_eq!((item.id, raw.as_slice()), (id, &b"raw"[..]));
        mark_sending(store.conn(), id).unwrap();
        assert!(next_due(store.conn(), 10).unwrap().is_none());
        assert_eq!(requeue_interrupted(store.conn()).unwrap(), 1);
        assert!(next_due(store.conn(), 10).unwrap().is_some());
        assert_eq!(acks_since(store.conn(), "a@b.fr", 0).unwrap(), 1);
    }

    #[test]
    fn suppressed_acks_do_not_count_against_the_rate_limit() {
        let (_d, mut store) = temp_store();
        let tx = store.begin().unwrap();
        for (n, status) in [OutboxStatus::Suppressed, OutboxStatus::Queued]
            .into_iter()
            .enumerate()
        {
            enqueue(
                &tx,
                &NewOutgoing {
                    kind: OutboxKind::Ack,
                    ticket_id: None,
                    to_addr: "a@b.fr",
                    subject: "s",
                    message_id: &format!("m{n}@x"),
                    in_reply_to: None,
                    raw: b"raw",
                    status,
                    last_error: None,
                    at: 10,
                    conversation: None,
                },
            )
            .unwrap();
        }
        tx.commit().unwrap();
        assert_eq!(acks_since(store.conn(), "a@b.fr", 0).unwrap(), 1);
        assert_eq!(
            outbox_counts(store.conn()).unwrap(),
            vec![(OutboxStatus::Queued, 1), (OutboxStatus::Suppressed, 1)]
        );
    }
}
