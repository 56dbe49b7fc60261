//! `GET /healthz`: 200 with a small JSON body when the database answers and the intake is
//! not failing, 503 with the reasons otherwise. For a load balancer, systemd, or a monitor.
//!
//! Reasons, each checked only where it applies:
//! - the database does not answer;
//! - `[imap]`: the server refuses our credentials, or no successful fetch for longer than
//!   `[http] max_fetch_age` (default 15 min; not before the server has run that long);
//! - `[smtp]`: mail has waited in the outbox longer than `[http] outbox_stuck_after`
//!   (default 30 min).
//!
//! ```json
//! {"status": "ok", "reasons": [], "quarantined": 0,
//!  "outbox": {"queued": 0, "oldest_unsent_seconds": 0},
//!  "mailboxes": [{"name": "support@example.test/INBOX", "seconds_since_last_fetch": 12,
//!                 "auth_failing": false, "last_error": null}]}
//! ```

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::store::{self, MailboxState, OutboxStatus, StoreError};

/// What the database says, read in one call.
#[derive(Debug, Clone)]
pub(super) struct DbState {
    /// Unix seconds, when it was read.
    pub now: i64,
    pub outbox: Vec<(OutboxStatus, i64)>,
    /// Unix seconds.
    pub oldest_unsent: Option<i64>,
    pub quarantined: i64,
    pub mailboxes: Vec<MailboxState>,
}

/// The verdict: healthy when there is no reason.
#[derive(Debug, Clone)]
pub(super) struct Health {
    /// `None` when the database did not answer.
    pub database: Option<DbState>,
    pub reasons: Vec<String>,
}

impl Health {
    pub fn healthy(&self) -> bool {
        self.reasons.is_empty()
    }
}

fn read(conn: &rusqlite::Connection) -> Result<DbState, StoreError> {
    Ok(DbState {
        now: store::now(),
        outbox: store::outbox_counts(conn)?,
        oldest_unsent: store::oldest_unsent(conn)?,
        quarantined: store::quarantine_size(conn)?,
        mailboxes: store::all_mailboxes(conn)?,
    })
}

/// Reads the database (on its own connection, so a long commit elsewhere does not hold it
/// up) and judges it.
pub(super) async fn assess(state: &AppState) -> Health {
    let db = match state.reader.run(|s| read(s.conn())).await {
        Ok(db) => db,
        Err(e) => {
            return Health {
                database: None,
                reasons: vec![format!("database unavailable: {e}")],
            };
        }
    };
    let mut reasons = Vec::new();
    if let Some(key) = &state.imap_mailbox {
        let mailbox = db.mailboxes.iter().find(|m| &m.name == key);
        if mailbox.is_some_and(|m| m.auth_failing) {
            let error = mailbox.and_then(|m| m.last_error.as_deref()).unwrap_or("");
            reasons.push(format!("IMAP authentication failing for {key}: {error}"));
        }
        let limit = state.config.max_fetch_age.as_secs() as i64;
        let last = mailbox.and_then(|m| m.last_fetch_at);
        let running = db.now - state.started_at;
        let since = last.map(|at| db.now - at);
        if running > limit && since.is_none_or(|s| s > limit) {
            reasons.push(match since {
                Some(s) => format!("no successful fetch from {key} for {s} s (limit {limit} s)"),
                None => format!("no successful fetch from {key} since the start {running} s ago"),
            });
        }
    }
    if state.smtp_configured
        && let Some(at) = db.oldest_unsent
    {
        let limit = state.config.outbox_stuck_after.as_secs() as i64;
        let waited = db.now - at;
        if waited > limit {
            reasons.push(format!(
                "outbox stuck: mail waiting for {waited} s (limit {limit} s)"
            ));
        }
    }
    Health {
        database: Some(db),
        reasons,
    }
}

/// `GET /healthz`.
pub(super) async fn check(State(state): State<AppState>) -> Response {
    let health = assess(&state).await;
    let status = if health.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "status": if health.healthy() { "ok" } else { "failing" },
        "reasons": health.reasons,
    });
    if let Some(db) = &health.database {
        let mut outbox: serde_json::Map<String, serde_json::Value> = db
            .outbox
            .iter()
            .map(|(s, n)| (s.to_string(), (*n).into()))
            .collect();
        outbox.insert(
            "oldest_unsent_seconds".into(),
            db.oldest_unsent.map_or(0, |at| (db.now - at).max(0)).into(),
        );
        body["outbox"] = outbox.into();
        body["quarantined"] = db.quarantined.into();
        body["mailboxes"] = db
            .mailboxes
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "seconds_since_last_fetch": m.last_fetch_at.map(|at| (db.now - at).max(0)),
                    "auth_failing": m.auth_failing,
                    "last_error": m.last_error,
                })
            })
            .collect();
    }
    (status, Json(body)).into_response()
}
