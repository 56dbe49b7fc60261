//! Requests filed through the HTTP intake (`http_requests`, migration 2): the first answer kept
//! for an `Idempotency-Key`, the per-address rate limit, the account details the dashboard sent;
//! and the few counts `/healthz` and `/metrics` read on every call, each one an index lookup.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Direction, HttpDoor, MessageAction, OutboxKind, OutboxStatus, Result, Ticket, ticket};

/// One filed request, written in the transaction that stored its message.
#[derive(Debug, Clone, Copy)]
pub struct NewHttpRequest<'a> {
    /// The synthesised message's Message-ID, without brackets.
    pub message_id: &'a str,
    pub ticket_id: i64,
    /// Lower-case.
    pub email: &'a str,
    pub door: HttpDoor,
    /// `None` when the request carried no key.
    pub idempotency_key: Option<&'a str>,
    /// Hex SHA-256 of the validated request, to refuse a key reused for another request.
    pub fingerprint: &'a str,
    /// The answer given (JSON), replayed to a retry.
    pub answer: &'a str,
    /// The account's details (JSON object).
    pub account: &'a str,
    /// locale, project_url, page_url, browser (JSON object).
    pub context: &'a str,
    /// Unix seconds.
    pub at: i64,
}

/// Records a filed request; returns its row id.
///
/// # Errors
/// Besides the database's own, the same key already used by the same address, or the same
/// Message-ID recorded twice (both unique).
pub fn insert_http_request(conn: &Connection, r: &NewHttpRequest<'_>) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO http_requests (message_id, ticket_id, email, door, idempotency_key,
                                    fingerprint, answer, account, context, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        r.message_id,
        r.ticket_id,
        r.email,
        r.door,
        r.idempotency_key,
        r.fingerprint,
        r.answer,
        r.account,
        r.context,
        r.at
    ])?;
    Ok(conn.last_insert_rowid())
}

/// The first answer given to `email` for `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// As [`NewHttpRequest::fingerprint`].
    pub fingerprint: String,
    /// JSON.
    pub answer: String,
}

/// The request `email` (lower-case) filed with Idempotency-Key `key`, if any.
pub fn find_http_request(
    conn: &Connection,
    key: &str,
    email: &str,
) -> Result<Option<StoredAnswer>> {
    Ok(conn
        .prepare_cached(
            "SELECT fingerprint, answer FROM http_requests
             WHERE idempotency_key = ?1 AND email = ?2",
        )?
        .query_row(params![key, email], |r| {
            Ok(StoredAnswer {
                fingerprint: r.get(0)?,
                answer: r.get(1)?,
            })
        })
        .optional()?)
}

/// How many requests `email` (lower-case) filed at or after `since` (unix seconds), and when
/// the oldest of them was filed.
pub fn http_requests_since(
    conn: &Connection,
    email: &str,
    since: i64,
) -> Result<(u32, Option<i64>)> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*), MIN(created_at) FROM http_requests
             WHERE email = ?1 AND created_at >= ?2",
        )?
        .query_row(params![email, since], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// What the pipeline made of an inbound message.
#[derive(Debug, Clone)]
pub struct FiledMessage {
    pub action: MessageAction,
    /// Why the guard took it for automated mail, if it did.
    pub automated: Option<String>,
    /// The ticket it opened or joined; `None` for automated mail that threads nowhere, and
    /// for a quarantined message.
    pub ticket: Option<Ticket>,
}

/// The inbound message whose Message-ID (without brackets) is `message_id`, if stored.
pub fn filed_message(conn: &Connection, message_id: &str) -> Result<Option<FiledMessage>> {
    let row: Option<(MessageAction, Option<i64>, Option<String>)> = conn
        .prepare_cached(
            "SELECT action, ticket_id, automated FROM messages
             WHERE message_id = ?1 AND direction = ?2",
        )?
        .query_row(params![message_id, Direction::In], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((action, ticket_id, automated)) = row else {
        return Ok(None);
    };
    let ticket = match ticket_id {
        Some(id) => ticket(conn, id)?,
        None => None,
    };
    Ok(Some(FiledMessage {
        action,
        automated,
        ticket,
    }))
}

/// The status of the acknowledgement answering the message `message_id` (without brackets),
/// if one was queued (or held back).
pub fn ack_status(conn: &Connection, message_id: &str) -> Result<Option<OutboxStatus>> {
    Ok(conn
        .prepare_cached(
            "SELECT status FROM outbox WHERE kind = ?1 AND in_reply_to = ?2
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row(params![OutboxKind::Ack, message_id], |r| r.get(0))
        .optional()?)
}

/// Messages in quarantine. The literal matches the partial index of migration 2 (a bound
/// parameter would not let SQLite use it).
pub fn quarantine_size(conn: &Connection) -> Result<i64> {
    debug_assert_eq!(MessageAction::Quarantined.as_str(), "quarantined");
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM messages WHERE action = 'quarantined'")?
        .query_row([], |r| r.get(0))?)
}

/// When the oldest outbox row still waiting to go out (queued or being sent) was created
/// (unix seconds), if there is one.
pub fn oldest_unsent(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT MIN(created_at) FROM outbox WHERE status IN (?1, ?2)")?
        .query_row(params![OutboxStatus::Queued, OutboxStatus::Sending], |r| {
            r.get(0)
        })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::create_ticket;
    use crate::store::tests::sample_ticket;
    use crate::store::tests::temp_store;

    fn request<'a>(
        key: Option<&'a str>,
        email: &'a str,
        id: &'a str,
        at: i64,
    ) -> NewHttpRequest<'a> {
        NewHttpRequest {
            message_id: id,
            ticket_id: 1,
            email,
            door: HttpDoor::Api,
            idempotency_key: key,
            fingerprint: "f1",
            answer: "{\"ticket\":\"CHT-1\"}",
            account: "{}",
            context: "{}",
            at,
        }
    }

    #[test]
    fn a_key_is_unique_per_address_and_the_window_counts_only_recent_requests() {
        let (_d, mut store) = temp_store();
        let tx = store.begin().unwrap();
        create_ticket(&tx, &sample_ticket("julie@example.test", 0)).unwrap();
        let julie = "julie@example.test";
        insert_http_request(&tx, &request(Some("k1"), julie, "m1", 100)).unwrap();
        insert_http_request(&tx, &request(None, julie, "m2", 200)).unwrap();
        let from_the_form = NewHttpRequest {
            door: HttpDoor::Form,
            ..request(None, julie, "m3", 300)
        };
        insert_http_request(&tx, &from_the_form).unwrap();
        // The same key from someone else is another request.
        insert_http_request(&tx, &request(Some("k1"), "marc@example.test", "m4", 300)).unwrap();
        assert!(insert_http_request(&tx, &request(Some("k1"), julie, "m5", 400)).is_err());
        tx.commit().unwrap();

        let found = find_http_request(store.conn(), "k1", julie)
            .unwrap()
            .unwrap();
        assert_eq!(found.answer, "{\"ticket\":\"CHT-1\"}");
        assert!(
            find_http_request(store.conn(), "k2", julie)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            http_requests_since(store.conn(), julie, 150).unwrap(),
            (2, Some(200))
        );
        assert_eq!(
            http_requests_since(store.conn(), julie, 1000).unwrap(),
            (0, None)
        );
    }

    #[test]
    fn the_quarantine_count_reads_the_partial_index() {
        let (_d, store) = temp_store();
        let plan: String = store
            .conn()
            .query_row(
                "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM messages WHERE action = 'quarantined'",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("messages_quarantined"), "{plan}");
        assert_eq!(quarantine_size(store.conn()).unwrap(), 0);
        assert_eq!(oldest_unsent(store.conn()).unwrap(), None);
    }
}
