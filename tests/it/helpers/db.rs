//! The only place a test reaches into the SQLite file, each time for something no `supportd`
//! command shows or does: provoking a failure inside the database (the only way to make a
//! well-formed message fail on purpose), the event log, and a stored message's source, raw
//! bytes and parse warnings. Everything a command shows is asked of the command
//! ([`super::app::App`]) or, in tests that run the pipeline in-process, of `supportd::store`.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// A connection to a test's database file, waiting up to 10 s for a writer.
pub fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    conn
}

/// From now on, storing a message whose subject is `subject` fails inside the database with
/// "provoked failure"; its quarantine record still gets in. For every connection to the file.
pub fn fail_subject(conn: &Connection, subject: &str) {
    let subject = subject.replace('\'', "''");
    let sql = format!(
        "CREATE TRIGGER boom BEFORE INSERT ON messages
         WHEN NEW.subject = '{subject}' AND NEW.action != 'quarantined'
         BEGIN SELECT RAISE(ABORT, 'provoked failure'); END;"
    );
    conn.execute_batch(&sql).expect("create trigger boom");
}

/// Undoes [`fail_subject`].
pub fn stop_failing_subject(conn: &Connection) {
    conn.execute_batch("DROP TRIGGER boom")
        .expect("drop trigger boom");
}

/// From now on, every message insert on this connection (only: a TEMP trigger) fails with
/// "disk on fire", quarantine records included: the database refuses the whole batch.
pub fn refuse_everything(conn: &Connection) {
    conn.execute_batch(
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON messages \
         BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
    )
    .expect("create trigger refuse");
}

/// Undoes [`refuse_everything`].
pub fn stop_refusing(conn: &Connection) {
    conn.execute_batch("DROP TRIGGER refuse;")
        .expect("drop trigger refuse");
}

/// Events of `kind` in the event log (`requeued`, `duplicate`, ...); no command lists them.
pub fn events(conn: &Connection, kind: &str) -> i64 {
    conn.query_row("SELECT count(*) FROM events WHERE kind = ?1", [kind], |r| {
        r.get(0)
    })
    .unwrap_or_else(|e| panic!("events {kind}: {e}"))
}

/// A stored message as no command shows it: where it came from, its bytes as stored, and what
/// the parser warned about.
pub struct Stored {
    pub source: String,
    pub raw: Vec<u8>,
    pub warnings: String,
}

impl std::fmt::Debug for Stored {
    /// The raw bytes as text, not as a list of numbers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("source", &self.source)
            .field("raw", &String::from_utf8_lossy(&self.raw))
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// Stored messages whose source (`imap:INBOX:<uidvalidity>:<uid>`, a file path, ...) matches
/// the SQL LIKE `pattern`.
pub fn messages_from(conn: &Connection, pattern: &str) -> Vec<Stored> {
    let mut stmt = conn
        .prepare("SELECT source, raw, warnings FROM messages WHERE source LIKE ?1 ORDER BY id")
        .expect("prepare");
    stmt.query_map([pattern], |r| {
        Ok(Stored {
            source: r.get(0)?,
            raw: r.get(1)?,
            warnings: r.get(2)?,
        })
    })
    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
    .unwrap_or_else(|e| panic!("messages from {pattern}: {e}"))
}

/// Sets the status (`open`, `closed`) of ticket `reference`, as an agent would once
/// `tickets close` exists; panics when there is no such ticket.
pub fn set_ticket_status(conn: &Connection, reference: &str, status: &str) {
    let changed = conn
        .execute(
            "UPDATE tickets SET status = ?2 WHERE ref = ?1",
            [reference, status],
        )
        .unwrap_or_else(|e| panic!("set {reference} {status}: {e}"));
    assert_eq!(changed, 1, "no ticket {reference}");
}

/// The addresses of the events of `kind`, in order (`bounce`: who was marked bouncing).
pub fn event_addresses(conn: &Connection, kind: &str) -> Vec<Option<String>> {
    let mut stmt = conn
        .prepare("SELECT address FROM events WHERE kind = ?1 ORDER BY id")
        .expect("prepare");
    stmt.query_map([kind], |r| r.get(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .unwrap_or_else(|e| panic!("events {kind}: {e}"))
}
