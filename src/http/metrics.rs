//! `GET /metrics`: the Prometheus text format (version 0.0.4), written by
//! `metrics-exporter-prometheus` from the `metrics` facade.
//!
//! Counters count what this process did since it started (`supportd ingest` from an MTA pipe
//! is another process and counts nothing here); gauges are read from the database at each
//! scrape, so they cover every process that writes it. Names:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `supportd_messages_ingested_total` | counter | `action`: new, reply, duplicate, automated, quarantined |
//! | `supportd_acks_sent_total` | counter | |
//! | `supportd_acks_suppressed_total` | counter | `reason`: hourly_limit, daily_limit, bouncing, own_address, no_sender, too_old, template_error, other |
//! | `supportd_notifications_sent_total` | counter | |
//! | `supportd_http_requests_total` | counter | `route` (`/api/v1/requests`, `/support`, ..., `unmatched`), `status` |
//! | `supportd_outbox_rows` | gauge | `status`: queued, sending, sent, failed, suppressed |
//! | `supportd_outbox_oldest_unsent_seconds` | gauge | age of the oldest queued or sending row (0: none) |
//! | `supportd_quarantined_messages` | gauge | |
//! | `supportd_imap_seconds_since_last_fetch` | gauge | `mailbox` |
//! | `supportd_imap_connected` | gauge | `mailbox`: 1 when the last attempt succeeded |
//! | `supportd_imap_auth_failing` | gauge | `mailbox` |
//! | `supportd_healthy` | gauge | 1 when `/healthz` would answer 200 |
//!
//! The recording functions are called where things happen (the pipeline after a commit, the
//! sender after the server accepted a mail); without an installed recorder (every command
//! but `supportd run` with `[http] listen`) they do nothing.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::AppState;
use super::health::{self, Health};
use crate::pipeline::{AckDecision, Outcome};
use crate::store::{OutboxKind, OutboxStatus};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder, once; returns its handle, or `None` when another
/// recorder was installed first (then `/metrics` answers 503).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => {
                describe();
                Some(handle)
            }
            Err(e) => {
                tracing::warn!("metrics: cannot install the Prometheus recorder: {e}");
                None
            }
        })
        .as_ref()
}

fn describe() {
    describe_counter!(
        "supportd_messages_ingested_total",
        "Messages committed by the pipeline, by what it did with them."
    );
    describe_counter!(
        "supportd_acks_sent_total",
        "Acknowledgements the SMTP server accepted."
    );
    describe_counter!(
        "supportd_acks_suppressed_total",
        "Acknowledgements held back, by reason."
    );
    describe_counter!(
        "supportd_notifications_sent_total",
        "Team notifications the SMTP server accepted."
    );
    describe_counter!(
        "supportd_http_requests_total",
        "HTTP requests answered, by route and status."
    );
    describe_gauge!("supportd_outbox_rows", "Outbox rows by status.");
    describe_gauge!(
        "supportd_outbox_oldest_unsent_seconds",
        "Age of the oldest outbox row still to send (0 when none)."
    );
    describe_gauge!(
        "supportd_quarantined_messages",
        "Messages in quarantine (supportd quarantine list)."
    );
    describe_gauge!(
        "supportd_imap_seconds_since_last_fetch",
        "Seconds since the mailbox's last successful fetch."
    );
    describe_gauge!(
        "supportd_imap_connected",
        "1 when the mailbox's last connection attempt succeeded."
    );
    describe_gauge!(
        "supportd_imap_auth_failing",
        "1 when the IMAP server refused our credentials the last time."
    );
    describe_gauge!("supportd_healthy", "1 when /healthz answers 200.");
}

/// Counts a committed batch: each message by action, each acknowledgement held back by
/// reason.
pub fn record_outcomes(outcomes: &[Outcome]) {
    for o in outcomes {
        counter!("supportd_messages_ingested_total", "action" => o.action.as_str()).increment(1);
        if let AckDecision::Suppressed(reason) = &o.ack {
            counter!("supportd_acks_suppressed_total", "reason" => suppression_reason(reason))
                .increment(1);
        }
    }
}

/// Counts a mail the SMTP server accepted.
pub fn record_sent(kind: OutboxKind) {
    match kind {
        OutboxKind::Ack => counter!("supportd_acks_sent_total").increment(1),
        OutboxKind::Notification => counter!("supportd_notifications_sent_total").increment(1),
        OutboxKind::Relay => counter!("supportd_relays_sent_total").increment(1),
        OutboxKind::AgentNotice => counter!("supportd_agent_notices_sent_total").increment(1),
        OutboxKind::Escalation => counter!("supportd_escalations_sent_total").increment(1),
    }
}

/// Counts an answered HTTP request.
pub(super) fn record_http(route: String, status: StatusCode) {
    counter!("supportd_http_requests_total", "route" => route, "status" => status.as_u16().to_string())
        .increment(1);
}

/// A bounded label for an acknowledgement's suppression reason, as `guard::Refusal` and the
/// pipeline word it.
fn suppression_reason(text: &str) -> &'static str {
    if text.starts_with("rate limit") && text.ends_with("per hour") {
        "hourly_limit"
    } else if text.starts_with("rate limit") && text.ends_with("per day") {
        "daily_limit"
    } else if text == "address is bouncing" {
        "bouncing"
    } else if text == "sender is our own address" {
        "own_address"
    } else if text == "no sender address" {
        "no_sender"
    } else if text.contains("max_ack_age") {
        "too_old"
    } else if text.starts_with("template error") {
        "template_error"
    } else {
        "other"
    }
}

/// `GET /metrics`.
pub(super) async fn render(State(state): State<AppState>) -> Response {
    let Some(handle) = state.metrics else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no metrics recorder\n").into_response();
    };
    let health = health::assess(&state).await;
    set_gauges(&health);
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn set_gauges(health: &Health) {
    gauge!("supportd_healthy").set(if health.healthy() { 1.0 } else { 0.0 });
    let Some(db) = &health.database else {
        return;
    };
    for &status in OutboxStatus::ALL {
        let n = db
            .outbox
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        gauge!("supportd_outbox_rows", "status" => status.as_str()).set(n as f64);
    }
    let oldest = db.oldest_unsent.map_or(0, |at| (db.now - at).max(0));
    gauge!("supportd_outbox_oldest_unsent_seconds").set(oldest as f64);
    gauge!("supportd_quarantined_messages").set(db.quarantined as f64);
    for m in &db.mailboxes {
        let mailbox = m.name.clone();
        if let Some(at) = m.last_fetch_at {
            gauge!("supportd_imap_seconds_since_last_fetch", "mailbox" => mailbox.clone())
                .set((db.now - at).max(0) as f64);
        }
        let connected = m.last_fetch_at.is_some() && m.last_error.is_none();
        gauge!("supportd_imap_connected", "mailbox" => mailbox.clone()).set(if connected {
            1.0
        } else {
            0.0
        });
        gauge!("supportd_imap_auth_failing", "mailbox" => mailbox).set(if m.auth_failing {
            1.0
        } else {
            0.0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::Refusal;

    #[test]
    fn every_refusal_has_a_label_of_its_own() {
        let cases = [
            (Refusal::HourlyLimit(3), "hourly_limit"),
            (Refusal::DailyLimit(10), "daily_limit"),
            (Refusal::Bouncing, "bouncing"),
            (Refusal::OwnAddress, "own_address"),
            (Refusal::NoSender, "no_sender"),
            (
                Refusal::TooOld {
                    age_secs: 86_400 * 9,
                },
                "too_old",
            ),
        ];
        for (refusal, label) in cases {
            assert_eq!(suppression_reason(&refusal.to_string()), label, "{refusal}");
        }
        assert_eq!(
            suppression_reason("template error: rendering en/ack.hbs: x"),
            "template_error"
        );
        assert_eq!(suppression_reason("something new"), "other");
    }
}
