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

/// What makes two inbound messages the same one: the same raw bytes, or the same Message-ID
/// with the same sender, date, subject and text.
#[derive(Debug, Clone, Copy)]
pub struct Fingerprint<'a> {
    /// Without angle brackets.
    pub message_id: &'a str,
    /// Hex SHA-256 of the raw bytes.
    pub raw_sha256: &'a str,
    /// Lower-cased, "" when there is none.
    pub from_addr: &'a str,
    /// The Date header, unix seconds.
    pub date: Option<i64>,
    pub subject: &'a str,
    /// The whole text body, as stored in `full_text`.
    pub text: &'a str,
}

/// What the store already holds of a new inbound message.
#[derive(Debug, Clone)]
pub enum Known {
    /// Neither its bytes nor its Message-ID.
    New,
    /// The same message came again: nothing is to change.
    Duplicate(Existing),
    /// A different message carries the same Message-ID (a CRM or a web form that stamps one id
    /// on everything): it is stored and handled as any other. `earlier` are the `messages` row
    /// ids of the others, oldest first.
    ReusedId { earlier: Vec<i64> },
}

/// Looks the inbound message `m` up: the same id with the same sender, date, subject and text,
/// or the same raw bytes, is a [`Known::Duplicate`]; the same id on anything else is a
/// [`Known::ReusedId`].
pub fn find_duplicate(conn: &Connection, m: &Fingerprint<'_>) -> Result<Known> {
    let row =
        |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?, r.get(2)?));
    // Each lookup runs on its own index; the text is compared only on rows with the same id.
    let mut found = conn
        .prepare_cached(
            "SELECT id, ticket_id, category FROM messages
             WHERE message_id = ?1 AND direction = ?2 AND from_addr = ?3 AND date IS ?4
               AND subject = ?5 AND full_text = ?6
             ORDER BY id LIMIT 1",
        )?
        .query_row(
            params![
                m.message_id,
                Direction::In,
                m.from_addr,
                m.date,
                m.subject,
                m.text
            ],
            row,
        )
        .optional()?;
    if found.is_none() {
        found = conn
            .prepare_cached("SELECT id, ticket_id, category FROM messages WHERE raw_sha256 = ?1 AND direction = ?2 LIMIT 1")?
            .query_row(params![m.raw_sha256, Direction::In], row)
            .optional()?;
    }
    let Some((id, ticket_id, category)) = found else {
        let earlier: Vec<i64> = conn
            .prepare_cached(
                "SELECT id FROM messages WHERE message_id = ?1 AND direction = ?2 ORDER BY id",
            )?
            .query_map(params![m.message_id, Direction::In], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        return Ok(if earlier.is_empty() {
            Known::New
        } else {
            Known::ReusedId { earlier }
        });
    };
    let ticket_ref = match ticket_id {
        Some(t) => conn
            .prepare_cached("SELECT ref FROM tickets WHERE id = ?1")?
            .query_row(params![t], |r| r.get(0))
            .optional()?,
        None => None,
    };
    Ok(Known::Duplicate(Existing {
        id,
        ticket_ref,
        category,
    }))
}

/// The newest inbound `messages` row with `message_id`, and its ticket: `(row id, ticket id)`.
pub fn latest_with_message_id(
    conn: &Connection,
    message_id: &str,
) -> Result<Option<(i64, Option<i64>)>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, ticket_id FROM messages WHERE message_id = ?1 AND direction = ?2
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row(params![message_id, Direction::In], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?)
}

/// Adds one line to the parse warnings kept with `messages` row `id`.
pub fn note_warning(conn: &Connection, id: i64, warning: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE messages SET warnings = CASE WHEN warnings = '' THEN ?2
                                             ELSE warnings || char(10) || ?2 END
         WHERE id = ?1",
    )?
    .execute(params![id, warning])?;
    Ok(())
}

/// The tickets (row ids) of the first of `ids` that names a stored message (ours or theirs) on
/// a ticket, with that id. One of our ids names one message; someone else's may be on several
/// rows (a reused id), so its tickets come newest first, for the caller to pick the one the
/// sender may join.
pub fn tickets_by_message_ids(
    conn: &Connection,
    ids: &[String],
) -> Result<Option<(Vec<i64>, String)>> {
    let mut theirs = conn.prepare_cached(
        "SELECT ticket_id FROM messages WHERE message_id = ?1 AND ticket_id IS NOT NULL
         GROUP BY ticket_id ORDER BY MAX(id) DESC",
    )?;
    let mut ours = conn.prepare_cached(
        "SELECT ticket_id FROM outbox WHERE message_id = ?1 AND ticket_id IS NOT NULL",
    )?;
    for id in ids {
        let tickets: Vec<i64> = match ours.query_row(params![id], |r| r.get(0)).optional()? {
            Some(t) => vec![t],
            None => theirs
                .query_map(params![id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?,
        };
        if !tickets.is_empty() {
            return Ok(Some((tickets, id.clone())));
        }
    }
    Ok(None)
}

/// The tickets (row ids) with a message in Outlook conversation `key` (see
/// `thread::ConversationIndex::key`), theirs or ours, most recent first.
pub fn tickets_by_conversation(conn: &Connection, key: &str) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT ticket_id FROM (
             SELECT ticket_id, created_at AS at FROM outbox
             WHERE conversation = ?1 AND ticket_id IS NOT NULL
             UNION ALL
             SELECT ticket_id, received_at FROM messages
             WHERE conversation = ?1 AND ticket_id IS NOT NULL AND direction = ?2)
         GROUP BY ticket_id ORDER BY MAX(at) DESC, ticket_id DESC",
    )?;
    let rows = stmt.query_map(params![key, Direction::In], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
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
    /// Its Outlook conversation (`Thread-Index` header block, hex), if it has one.
    pub conversation: Option<&'a str>,
}

/// Stores a message; returns its row id.
///
/// # Errors
/// The database's own. Two messages may share a Message-ID ([`Known::ReusedId`]).
pub fn insert_message(conn: &Connection, m: &NewMessage<'_>) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO messages (ticket_id, direction, message_id, raw_sha256, in_reply_to, refs,
            from_addr, from_name, to_addrs, subject, date, received_at, action, category, language,
            automated, new_text, full_text, attachments, size, raw, source, warnings, error,
            conversation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                 ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
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
        m.error,
        m.conversation
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::create_ticket;
    use crate::store::tests::sample_ticket;
    use crate::store::tests::temp_store;

    fn stored<'a>(
        ticket_id: Option<i64>,
        id: &'a str,
        sha: &'a str,
        text: &'a str,
    ) -> NewMessage<'a> {
        NewMessage {
            ticket_id,
            direction: Direction::In,
            message_id: id,
            raw_sha256: sha,
            in_reply_to: "",
            refs: "",
            from_addr: "a@b.fr",
            from_name: None,
            to_addrs: "",
            subject: "Invoice",
            date: Some(100),
            received_at: 100,
            action: MessageAction::New,
            category: None,
            language: None,
            automated: None,
            new_text: text,
            full_text: text,
            attachments: "[]",
            size: 1,
            raw: b"raw",
            source: "test",
            warnings: "",
            error: None,
            conversation: None,
        }
    }

    fn print<'a>(id: &'a str, sha: &'a str, text: &'a str) -> Fingerprint<'a> {
        Fingerprint {
            message_id: id,
            raw_sha256: sha,
            from_addr: "a@b.fr",
            date: Some(100),
            subject: "Invoice",
            text,
        }
    }

    #[test]
    fn only_the_same_bytes_or_the_same_message_under_its_id_is_a_duplicate() {
        let (_d, store) = temp_store();
        let conn = store.conn();
        let first = insert_message(conn, &stored(None, "m@x", "sha1", "twelve users")).unwrap();
        assert!(matches!(
            find_duplicate(conn, &print("other@x", "sha9", "x")).unwrap(),
            Known::New
        ));
        // Delivered again along another path: other bytes, the same message.
        let again = find_duplicate(conn, &print("m@x", "sha2", "twelve users")).unwrap();
        assert!(matches!(again, Known::Duplicate(e) if e.id == first));
        // The same bytes under any id.
        let bytes = find_duplicate(conn, &print("q@x", "sha1", "")).unwrap();
        assert!(matches!(bytes, Known::Duplicate(e) if e.id == first));
        // The id reused on another text, then on another sender: stored beside it.
        let reused = find_duplicate(conn, &print("m@x", "sha3", "error 500")).unwrap();
        assert!(matches!(&reused, Known::ReusedId { earlier } if earlier == &[first]));
        let second = insert_message(conn, &stored(None, "m@x", "sha3", "error 500")).unwrap();
        let other_sender = Fingerprint {
            from_addr: "c@d.fr",
            ..print("m@x", "sha4", "twelve users")
        };
        assert!(matches!(
            find_duplicate(conn, &other_sender).unwrap(),
            Known::ReusedId { earlier } if earlier == [first, second]
        ));
        assert_eq!(
            latest_with_message_id(conn, "m@x").unwrap(),
            Some((second, None))
        );
        note_warning(conn, second, "one").unwrap();
        note_warning(conn, second, "two").unwrap();
        let warnings: String = conn
            .query_row(
                "SELECT warnings FROM messages WHERE id = ?1",
                [second],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(warnings, "one\ntwo");
    }

    #[test]
    fn a_reused_id_names_each_of_its_tickets_newest_first() {
        let (_d, mut store) = temp_store();
        let tx = store.begin().unwrap();
        let ticket = |n: &str| create_ticket(&tx, &sample_ticket(n, 1)).unwrap().0;
        let (one, two) = (ticket("a@b.fr"), ticket("c@d.fr"));
        insert_message(&tx, &stored(Some(one), "m@x", "sha1", "first")).unwrap();
        insert_message(&tx, &stored(Some(two), "m@x", "sha2", "second")).unwrap();
        insert_message(&tx, &stored(Some(one), "n@x", "sha3", "third")).unwrap();
        let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            tickets_by_message_ids(&tx, &ids(&["unknown@x", "m@x", "n@x"])).unwrap(),
            Some((vec![two, one], "m@x".to_string()))
        );
        assert_eq!(
            tickets_by_message_ids(&tx, &ids(&["n@x"])).unwrap(),
            Some((vec![one], "n@x".to_string()))
        );
        assert_eq!(tickets_by_message_ids(&tx, &ids(&["z@x"])).unwrap(), None);
    }

    #[test]
    fn a_conversation_names_the_tickets_of_its_messages_and_of_our_mail_most_recent_first() {
        let (_d, mut store) = temp_store();
        let tx = store.begin().unwrap();
        let ticket = |n: &str| create_ticket(&tx, &sample_ticket(n, 1)).unwrap().0;
        let (one, two) = (ticket("a@b.fr"), ticket("c@d.fr"));
        let inbound = |t: i64, sha: &str, at: i64| {
            let mut m = stored(Some(t), sha, sha, "text");
            m.received_at = at;
            m.conversation = Some("c0ffee");
            insert_message(&tx, &m).unwrap();
        };
        inbound(one, "m1", 10);
        inbound(two, "m2", 20);
        assert_eq!(
            tickets_by_conversation(&tx, "c0ffee").unwrap(),
            vec![two, one]
        );
        // Our acknowledgement on ticket one, later: one comes first now.
        crate::store::enqueue(
            &tx,
            &crate::store::NewOutgoing {
                kind: crate::store::OutboxKind::Ack,
                ticket_id: Some(one),
                to_addr: "a@b.fr",
                subject: "s",
                message_id: "ack@x",
                in_reply_to: None,
                raw: b"raw",
                status: crate::store::OutboxStatus::Queued,
                last_error: None,
                at: 30,
                conversation: Some("c0ffee"),
            },
        )
        .unwrap();
        assert_eq!(
            tickets_by_conversation(&tx, "c0ffee").unwrap(),
            vec![one, two]
        );
        assert!(tickets_by_conversation(&tx, "other").unwrap().is_empty());
    }
}
