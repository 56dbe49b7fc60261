//! SQLite: schema, migrations and every query. The only module that writes SQL.
//!
//! Entry point: [`Store::open`]. The database runs in WAL mode with foreign keys and a busy
//! timeout, so a second process (an MTA pipe beside the daemon) waits for the writer instead of
//! failing. Write paths take `&Connection` so the pipeline can run them inside one transaction:
//! a batch of messages, their tickets and their outbox rows commit together or not at all.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;

/// Errors at the storage boundary. `Busy` is temporary: callers such as the MTA pipe map it to
/// EX_TEMPFAIL so the message is retried rather than lost.
///
/// Each message carries its cause and no variant returns it again from `source()`, so a
/// `{:#}` chain names it once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database is busy or locked: {0}")]
    Busy(rusqlite::Error),
    #[error("cannot create the database folder {path}: {error}")]
    Folder { path: String, error: std::io::Error },
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("cannot start the WAL checkpoint thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Changed(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy(e)
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

impl StoreError {
    /// Returns true if and only if retrying later may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, StoreError::Busy(_) | StoreError::Folder { .. })
            || matches!(self, StoreError::Sqlite(e) if matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure)))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Ordered migrations; the index + 1 is the `user_version` after applying it.
const MIGRATIONS: &[&str] = &[include_str!("schema.sql")];

/// An open database.
pub struct Store {
    conn: Connection,
    checkpointer: Option<Checkpointer>,
}

/// Copies the WAL back into the database file on its own thread and connection, so the
/// writer's commits wait only for their own fsync, not for the checkpoint's.
struct Checkpointer {
    nudge: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after one last checkpoint.
        self.nudge.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Current unix time in seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    ///
    /// # Errors
    /// The folder cannot be created, the file is not a database, or a migration fails.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| StoreError::Folder {
                path: dir.display().to_string(),
                error,
            })?;
        }
        let conn = Connection::open(path)?;
        Self::setup(conn)
    }

    fn setup(mut conn: Connection) -> Result<Store> {
        conn.busy_timeout(Duration::from_secs(30))?;
        // The ingest path uses some 25 distinct statements; rusqlite's default cache of 16 made
        // every message re-prepare most of them.
        conn.set_prepared_statement_cache_capacity(64);
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
        // FULL: a commit survives power loss, which is what "marked done on the server only after
        // it is committed" relies on. Batching keeps the fsync cost per message small.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Raw mail makes the file grow fast; with SQLite's default 2 MB page cache every
        // dedupe and threading lookup went to the OS for its index pages.
        conn.pragma_update(None, "cache_size", -32768)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read under the write lock: another process may have migrated meanwhile.
        let version_now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(version_now.max(version) as usize)
        {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
        Ok(Store {
            conn,
            checkpointer: None,
        })
    }

    /// Moves WAL checkpoints off this connection onto a thread of their own. For the one
    /// long-lived writer (the daemon's intake, a bulk ingest); SQLite's automatic checkpoint
    /// would otherwise run inside every large commit.
    ///
    /// # Errors
    /// The second connection cannot be opened.
    pub fn checkpoint_in_background(&mut self) -> Result<()> {
        if self.checkpointer.is_some() {
            return Ok(());
        }
        let Some(path) = self
            .conn
            .path()
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
        else {
            return Ok(()); // in-memory: nothing to checkpoint
        };
        let conn = Connection::open(&path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        let (nudge, nudged) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                use std::sync::mpsc::RecvTimeoutError;
                loop {
                    // A commit nudges; the timeout is a backstop for writes made elsewhere.
                    let last = match nudged.recv_timeout(Duration::from_secs(5)) {
                        Ok(()) | Err(RecvTimeoutError::Timeout) => false,
                        Err(RecvTimeoutError::Disconnected) => true,
                    };
                    while nudged.try_recv().is_ok() {}
                    // PASSIVE never blocks the writer; a checkpoint cut short by a reader is
                    // finished by the next one.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "background WAL checkpoint failed");
                    }
                    if last {
                        return;
                    }
                }
            })
            .map_err(StoreError::Thread)?;
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        self.checkpointer = Some(Checkpointer {
            nudge: Some(nudge),
            thread: Some(thread),
        });
        Ok(())
    }

    /// Tells the background checkpointer, if any, that a transaction was committed.
    pub fn committed(&self) {
        if let Some(nudge) = self.checkpointer.as_ref().and_then(|c| c.nudge.as_ref()) {
            let _ = nudge.send(());
        }
    }

    /// The connection, for read queries.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Starts a write transaction that takes the write lock at once, so dedupe checks made
    /// inside it cannot race another process.
    pub fn begin(&mut self) -> Result<Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// The HMAC key for our Message-IDs, created on first use and kept in the database.
    pub fn hmac_key(&mut self) -> Result<Vec<u8>> {
        let tx = self.begin()?;
        let key: Option<Vec<u8>> = tx
            .query_row("SELECT value FROM meta WHERE key = 'hmac_key'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let key = match key {
            Some(k) => k,
            None => {
                let k: [u8; 32] = rand::random();
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('hmac_key', ?1)",
                    params![k.to_vec()],
                )?;
                k.to_vec()
            }
        };
        tx.commit()?;
        Ok(key)
    }
}

// ---------------------------------------------------------------- ingest writes and lookups

/// A message already stored that a new one duplicates.
#[derive(Debug, Clone)]
pub struct Existing {
    pub id: i64,
    pub ticket_ref: Option<String>,
    pub category: Option<String>,
}

/// Finds a stored inbound message with the same Message-ID or the same raw bytes.
pub fn find_duplicate(conn: &Connection, message_id: &str, sha: &str) -> Result<Option<Existing>> {
    // Two single-table lookups, each on its own index.
    let row =
        |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?, r.get(2)?));
    let mut found = conn
        .prepare_cached("SELECT id, ticket_id, category FROM messages WHERE message_id = ?1 AND direction = 'in'")?
        .query_row(params![message_id], row)
        .optional()?;
    if found.is_none() {
        found = conn
            .prepare_cached("SELECT id, ticket_id, category FROM messages WHERE raw_sha256 = ?1 AND direction = 'in' LIMIT 1")?
            .query_row(params![sha], row)
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

/// The ticket of the first of `ids` that names a stored message (ours or theirs) on a ticket.
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

/// A ticket as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Ticket {
    #[serde(skip)]
    pub id: i64,
    #[serde(rename = "id")]
    pub ticket_ref: String,
    pub customer: String,
    #[serde(skip)]
    pub customer_name: Option<String>,
    pub subject: String,
    pub category: String,
    pub status: String,
    #[serde(serialize_with = "ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "ser_opt_time")]
    pub due_at: Option<i64>,
    pub language: String,
    pub flags: String,
    pub message_count: i64,
}

/// RFC 3339 in UTC.
pub fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn ser_time<S: serde::Serializer>(t: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn ser_opt_time<S: serde::Serializer>(
    t: &Option<i64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

const TICKET_COLUMNS: &str =
    "t.id, t.ref, t.customer, t.customer_name, t.subject, t.category, t.status,
     t.created_at, t.due_at, t.language, t.flags,
     (SELECT COUNT(*) FROM messages m WHERE m.ticket_id = t.id AND m.direction = 'in')";

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
    })
}

pub fn ticket(conn: &Connection, id: i64) -> Result<Option<Ticket>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets t WHERE t.id = ?1"
        ))?
        .query_row(params![id], ticket_from_row)
        .optional()?)
}

pub fn ticket_by_ref(conn: &Connection, ticket_ref: &str) -> Result<Option<Ticket>> {
    Ok(conn
        .query_row(
            &format!("SELECT {TICKET_COLUMNS} FROM tickets t WHERE t.ref = ?1 COLLATE NOCASE"),
            params![ticket_ref],
            ticket_from_row,
        )
        .optional()?)
}

/// Tickets, newest first, optionally filtered.
pub fn list_tickets(
    conn: &Connection,
    status: Option<&str>,
    category: Option<&str>,
) -> Result<Vec<Ticket>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {TICKET_COLUMNS} FROM tickets t
         WHERE (?1 IS NULL OR t.status = ?1) AND (?2 IS NULL OR t.category = ?2)
         ORDER BY t.id"
    ))?;
    let rows = stmt.query_map(params![status, category], ticket_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Everything needed to open a ticket.
pub struct NewTicket<'a> {
    pub prefix: &'a str,
    pub customer: &'a str,
    pub customer_name: Option<&'a str>,
    pub subject: &'a str,
    pub category: &'a str,
    pub created_at: i64,
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
    add_participant(conn, id, t.customer, "customer")?;
    Ok((id, ticket_ref))
}

pub fn add_participant(conn: &Connection, ticket_id: i64, address: &str, role: &str) -> Result<()> {
    if address.is_empty() {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT OR IGNORE INTO participants (ticket_id, address, role) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![ticket_id, address, role])?;
    Ok(())
}

pub fn participants(conn: &Connection, ticket_id: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT address FROM participants WHERE ticket_id = ?1")?;
    let rows = stmt.query_map(params![ticket_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Marks the ticket updated; reopens it when closed. Returns true if and only if it was reopened.
pub fn touch_ticket(conn: &Connection, ticket_id: i64, at: i64) -> Result<bool> {
    let reopened = conn
        .prepare_cached("UPDATE tickets SET status = 'open', updated_at = ?2 WHERE id = ?1 AND status = 'closed'")?
        .execute(params![ticket_id, at])?
        > 0;
    if !reopened {
        conn.prepare_cached("UPDATE tickets SET updated_at = ?2 WHERE id = ?1")?
            .execute(params![ticket_id, at])?;
    }
    Ok(reopened)
}

pub fn set_ticket_status(conn: &Connection, ticket_id: i64, status: &str) -> Result<()> {
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

/// A message to store, inbound or ours.
pub struct NewMessage<'a> {
    pub ticket_id: Option<i64>,
    pub direction: &'a str,
    pub message_id: &'a str,
    pub raw_sha256: &'a str,
    pub in_reply_to: &'a str,
    pub refs: &'a str,
    pub from_addr: &'a str,
    pub from_name: Option<&'a str>,
    pub to_addrs: &'a str,
    pub subject: &'a str,
    pub date: Option<i64>,
    pub received_at: i64,
    pub action: &'a str,
    pub category: Option<&'a str>,
    pub language: Option<&'a str>,
    pub automated: Option<&'a str>,
    pub new_text: &'a str,
    pub full_text: &'a str,
    /// JSON array of attachment descriptions.
    pub attachments: &'a str,
    pub size: i64,
    pub raw: &'a [u8],
    pub source: &'a str,
    pub warnings: &'a str,
    pub error: Option<&'a str>,
}

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
    pub message_id: String,
    pub direction: String,
    pub from: String,
    pub subject: String,
    #[serde(serialize_with = "ser_opt_time")]
    pub date: Option<i64>,
    pub action: String,
    pub automated: Option<String>,
    pub text: String,
    pub attachments: serde_json::Value,
}

pub fn ticket_messages(conn: &Connection, ticket_id: i64) -> Result<Vec<MessageView>> {
    // What we sent comes from the outbox, interleaved by time with what we received.
    let mut stmt = conn.prepare(
        "SELECT message_id, direction, from_addr, subject, at, action, automated, text, attachments FROM (
             SELECT message_id, direction, from_addr, subject, COALESCE(date, received_at) AS at,
                    action, automated, new_text AS text, attachments, received_at AS sort_at, 0 AS side, id
             FROM messages WHERE ticket_id = ?1
             UNION ALL
             SELECT message_id, 'out', '', subject, COALESCE(sent_at, created_at), kind || ' to ' || to_addr || ' (' || status || ')',
                    NULL, '', '[]', created_at, 1, id
             FROM outbox WHERE ticket_id = ?1)
         ORDER BY sort_at, side, id",
    )?;
    let rows = stmt.query_map(params![ticket_id], |r| {
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

pub fn record_event(
    conn: &Connection,
    kind: &str,
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

/// Counts acknowledgements queued or sent to `address` since `since` (suppressed ones excluded).
pub fn acks_since(conn: &Connection, address: &str, since: i64) -> Result<u32> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM outbox WHERE to_addr = ?1 AND kind = 'ack'
             AND status != 'suppressed' AND created_at >= ?2",
        )?
        .query_row(params![address, since], |r| r.get(0))?)
}

pub fn mark_bouncing(conn: &Connection, address: &str, at: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO addresses (address, bouncing_since, bounce_count) VALUES (?1, ?2, 1)
         ON CONFLICT (address) DO UPDATE SET bounce_count = bounce_count + 1,
             bouncing_since = COALESCE(bouncing_since, ?2)",
    )?
    .execute(params![address, at])?;
    Ok(())
}

/// Returns true if and only if mail to `address` bounced and nothing cleared it since.
pub fn is_bouncing(conn: &Connection, address: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT bouncing_since IS NOT NULL FROM addresses WHERE address = ?1")?
        .query_row(params![address], |r| r.get(0))
        .optional()?
        .unwrap_or(false))
}

/// A mail to queue.
pub struct NewOutgoing<'a> {
    pub kind: &'a str,
    pub ticket_id: Option<i64>,
    pub to_addr: &'a str,
    pub subject: &'a str,
    pub message_id: &'a str,
    pub in_reply_to: Option<&'a str>,
    pub raw: &'a [u8],
    /// "queued", or "suppressed" to keep a record of what we chose not to send.
    pub status: &'a str,
    pub last_error: Option<&'a str>,
    pub at: i64,
}

pub fn enqueue(conn: &Connection, o: &NewOutgoing<'_>) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO outbox (kind, ticket_id, to_addr, subject, message_id, in_reply_to, raw,
                             status, last_error, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
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
        o.at
    ])?;
    Ok(conn.last_insert_rowid())
}

// ---------------------------------------------------------------- outbox

/// An outbox row as `outbox list` prints it, and as the sender needs it.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxItem {
    pub id: i64,
    pub kind: String,
    pub ticket: Option<String>,
    pub to: String,
    pub subject: String,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub status: String,
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

pub fn list_outbox(conn: &Connection, status: Option<&str>) -> Result<Vec<OutboxItem>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox o LEFT JOIN tickets t ON t.id = o.ticket_id
         WHERE (?1 IS NULL OR o.status = ?1) ORDER BY o.id"
    ))?;
    let rows = stmt.query_map(params![status], outbox_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn outbox_raw(conn: &Connection, id: i64) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row("SELECT raw FROM outbox WHERE id = ?1", params![id], |r| {
            r.get(0)
        })
        .optional()?)
}

/// The oldest queued row whose time has come, with its bytes.
pub fn next_due(conn: &Connection, at: i64) -> Result<Option<(OutboxItem, Vec<u8>)>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {OUTBOX_COLUMNS}, o.raw FROM outbox o LEFT JOIN tickets t ON t.id = o.ticket_id
                 WHERE o.status = 'queued' AND o.next_attempt_at <= ?1 ORDER BY o.id LIMIT 1"
            ),
            params![at],
            |r| Ok((outbox_from_row(r)?, r.get(12)?)),
        )
        .optional()?)
}

/// Seconds until the next queued row is due, if any.
pub fn next_due_at(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.query_row(
        "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'queued'",
        [],
        |r| r.get(0),
    )?)
}

pub fn mark_sending(conn: &Connection, id: i64) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET status = 'sending', attempts = attempts + 1 WHERE id = ?1",
        params![id],
    )?;
    Ok(())
}

pub fn mark_sent(conn: &Connection, id: i64, at: i64) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ?2, last_error = NULL WHERE id = ?1",
        params![id, at],
    )?;
    Ok(())
}

pub fn mark_retry(conn: &Connection, id: i64, next_at: i64, error: &str) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET status = 'queued', next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
        params![id, next_at, error],
    )?;
    Ok(())
}

pub fn mark_failed(conn: &Connection, id: i64, error: &str) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET status = 'failed', last_error = ?2 WHERE id = ?1",
        params![id, error],
    )?;
    Ok(())
}

/// After a crash, rows caught in `sending` are sent again: at most one message is doubled.
pub fn requeue_interrupted(conn: &Connection) -> Result<usize> {
    Ok(conn.execute(
        "UPDATE outbox SET status = 'queued' WHERE status = 'sending'",
        [],
    )?)
}

pub fn outbox_counts(conn: &Connection) -> Result<Vec<(String, i64)>> {
    let mut stmt =
        conn.prepare("SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---------------------------------------------------------------- IMAP watermarks

/// What we know of one IMAP mailbox.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MailboxState {
    pub name: String,
    pub uidvalidity: Option<u32>,
    pub last_uid: u32,
    #[serde(serialize_with = "ser_opt_time")]
    pub last_fetch_at: Option<i64>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "ser_opt_time")]
    pub last_error_at: Option<i64>,
    pub auth_failing: bool,
}

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

pub fn record_fetch_ok(conn: &Connection, name: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO mailboxes (name, last_fetch_at) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET last_fetch_at = ?2, last_error = NULL, auth_failing = 0",
        params![name, now()],
    )?;
    Ok(())
}

pub fn record_fetch_error(conn: &Connection, name: &str, error: &str, auth: bool) -> Result<()> {
    conn.execute(
        "INSERT INTO mailboxes (name, last_error, last_error_at, auth_failing) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET last_error = ?2, last_error_at = ?3, auth_failing = ?4",
        params![name, error, now(), auth],
    )?;
    Ok(())
}

// ---------------------------------------------------------------- stats

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub messages: i64,
    pub tickets: i64,
    pub open_tickets: i64,
    pub automated: i64,
    pub duplicates: i64,
    pub quarantined: i64,
    pub acks_queued: i64,
    pub acks_sent: i64,
    pub acks_suppressed: i64,
    pub notifications_queued: i64,
    pub outbox_failed: i64,
}

pub fn stats(conn: &Connection) -> Result<Stats> {
    let one = |sql: &str| -> Result<i64> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
    Ok(Stats {
        messages: one("SELECT COUNT(*) FROM messages WHERE direction = 'in'")?,
        tickets: one("SELECT COUNT(*) FROM tickets")?,
        open_tickets: one("SELECT COUNT(*) FROM tickets WHERE status = 'open'")?,
        automated: one("SELECT COUNT(*) FROM messages WHERE automated IS NOT NULL")?,
        duplicates: one("SELECT COUNT(*) FROM events WHERE kind = 'duplicate'")?,
        quarantined: one("SELECT COUNT(*) FROM messages WHERE action = 'quarantined'")?,
        acks_queued: one(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'ack' AND status IN ('queued', 'sending')",
        )?,
        acks_sent: one("SELECT COUNT(*) FROM outbox WHERE kind = 'ack' AND status = 'sent'")?,
        acks_suppressed: one(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'ack' AND status = 'suppressed'",
        )?,
        notifications_queued: one(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'notification' AND status IN ('queued', 'sending')",
        )?,
        outbox_failed: one("SELECT COUNT(*) FROM outbox WHERE status = 'failed'")?,
    })
}

/// Quarantined messages, newest first: (row id, source, error).
pub fn quarantined(conn: &Connection, limit: i64) -> Result<Vec<(i64, String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT id, source, COALESCE(error, '') FROM messages WHERE action = 'quarantined'
         ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A quarantined message as `quarantine list` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantinedItem {
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
         FROM messages WHERE action = 'quarantined' ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
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
    let mut stmt = conn.prepare_cached(
        "SELECT id, source, raw FROM messages WHERE id = ?1 AND action = 'quarantined'",
    )?;
    let mut found = Vec::new();
    for &id in ids {
        if let Some(row) = stmt
            .query_row(params![id], |r| {
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
pub fn release_quarantined(conn: &Connection, ids: &[i64]) -> Result<()> {
    for &id in ids {
        let deleted: Option<Option<String>> = conn
            .prepare_cached(
                "DELETE FROM messages WHERE id = ?1 AND action = 'quarantined' RETURNING error",
            )?
            .query_row(params![id], |r| r.get(0))
            .optional()?;
        let Some(error) = deleted else {
            return Err(StoreError::Changed(format!(
                "quarantined message {id} was retried or removed meanwhile; nothing changed"
            )));
        };
        record_event(
            conn,
            "requeued",
            None,
            Some(id),
            None,
            &format!("was quarantined: {}", error.unwrap_or_default()),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db/s.sqlite3")).unwrap();
        (dir, store)
    }

    #[test]
    fn the_background_checkpointer_copies_commits_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite3");
        let mut store = Store::open(&path).unwrap();
        store.checkpoint_in_background().unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        let tx = store.begin().unwrap();
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('filler', ?1)",
            params![vec![7u8; 1 << 20]],
        )
        .unwrap();
        tx.commit().unwrap();
        // Without a checkpoint the megabyte lives only in the WAL; the writer's own automatic
        // checkpoint is off, so only the background thread can move it.
        store.committed();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < before + (1 << 20) {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let auto: i64 = store
            .conn()
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(auto, 0);
    }

    #[test]
    fn opening_twice_migrates_once_and_keeps_the_hmac_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite3");
        let key = Store::open(&path).unwrap().hmac_key().unwrap();
        let mut again = Store::open(&path).unwrap();
        assert_eq!(again.hmac_key().unwrap(), key);
        let mode: String = again
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

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
    fn interrupted_sends_are_queued_again() {
        let (_d, mut store) = temp_store();
        let tx = store.begin().unwrap();
        let id = enqueue(
            &tx,
            &NewOutgoing {
                kind: "ack",
                ticket_id: None,
                to_addr: "a@b.fr",
                subject: "s",
                message_id: "m@x",
                in_reply_to: None,
                raw: b"raw",
                status: "queued",
                last_error: None,
                at: 10,
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
}
