//! IMAP mailboxes: the UID watermark and the health of the last fetch.
//!
//! A mailbox is keyed `"{username}/{mailbox}"`. The watermark (UIDVALIDITY and the highest
//! UID committed, RFC 3501 §2.3.1.1) is written in the same transaction as the messages it
//! covers, so a crash never skips nor repeats one.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Result, now, ser_opt_time};

/// What we know of one IMAP mailbox.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MailboxState {
    /// `"{username}/{mailbox}"`.
    pub name: String,
    pub uidvalidity: Option<u32>,
    /// The highest UID committed.
    pub last_uid: u32,
    #[serde(serialize_with = "ser_opt_time")]
    pub last_fetch_at: Option<i64>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "ser_opt_time")]
    pub last_error_at: Option<i64>,
    /// The server refused our credentials the last time.
    pub auth_failing: bool,
}

/// The mailbox's state; a mailbox never seen has the default one.
pub fn mailbox_state(conn: &Connection, name: &str) -> Result<MailboxState> {
    Ok(conn
        .query_row(
            "SELECT name, uidvalidity, last_uid, last_fetch_at, last_error, last_error_at, auth_failing
             FROM mailboxes WHERE name = ?1",
            params![name],
            mailbox_from_row,
        )
        .optional()?
        .unwrap_or_else(|| MailboxState {
            name: name.to_string(),
            ..Default::default()
        }))
}

fn mailbox_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MailboxState> {
    Ok(MailboxState {
        name: r.get(0)?,
        uidvalidity: r.get(1)?,
        last_uid: r.get(2)?,
        last_fetch_at: r.get(3)?,
        last_error: r.get(4)?,
        last_error_at: r.get(5)?,
        auth_failing: r.get(6)?,
    })
}

/// Every mailbox fetched from, by name.
pub fn all_mailboxes(conn: &Connection) -> Result<Vec<MailboxState>> {
    let mut stmt = conn.prepare(
        "SELECT name, uidvalidity, last_uid, last_fetch_at, last_error, last_error_at, auth_failing
         FROM mailboxes ORDER BY name",
    )?;
    let rows = stmt.query_map([], mailbox_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records the watermark; call inside the transaction that stored the messages up to `last_uid`.
pub fn set_watermark(conn: &Connection, name: &str, uidvalidity: u32, last_uid: u32) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO mailboxes (name, uidvalidity, last_uid, last_fetch_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET uidvalidity = ?2, last_uid = ?3, last_fetch_at = ?4",
    )?
    .execute(params![name, uidvalidity, last_uid, now()])?;
    Ok(())
}

/// A fetch succeeded now: clears the last error.
pub fn record_fetch_ok(conn: &Connection, name: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO mailboxes (name, last_fetch_at) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET last_fetch_at = ?2, last_error = NULL, auth_failing = 0",
        params![name, now()],
    )?;
    Ok(())
}

/// A fetch failed now; `auth` when the server refused the credentials.
pub fn record_fetch_error(conn: &Connection, name: &str, error: &str, auth: bool) -> Result<()> {
    conn.execute(
        "INSERT INTO mailboxes (name, last_error, last_error_at, auth_failing) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET last_error = ?2, last_error_at = ?3, auth_failing = ?4",
        params![name, error, now(), auth],
    )?;
    Ok(())
}
