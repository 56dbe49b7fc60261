//! The escalation check: warns the team before a promise is broken, and tells it when it was.
//!
//! Entry point: [`Escalator::check`], which the daemon runs every minute and `supportd sla
//! escalate` runs once. In one write transaction it reads every unanswered clock, and for each
//! that has used its `[sla] at_risk` share (default 80 %) or run out, queues one mail to the
//! team and one to the ticket's assignee (kind `escalation`), records an event, and marks the
//! clock. The mark is taken only if it was not taken before, inside the transaction that
//! queues the mail, so each level is sent once per ticket and clock, across restarts and
//! processes. A clock found already breached gets the "breached" mail only; its "at risk"
//! mark is taken without a mail.

use crate::accounts;
use crate::config::Config;
use crate::reply::{EscalationInput, Identity, Level, Templates};
use crate::store::{self, ClockFilter, ClockRow, EventKind, Store, StoreError};
use crate::thread::MessageIdSigner;

use super::Calendar;
use super::clock::{self, State};

/// What one check queued for one ticket.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Escalated {
    /// `PREFIX-n`.
    pub ticket: String,
    pub level: Level,
    /// The share of the promised time used.
    pub share: f64,
    /// Addresses mailed (none without a team address or an assignee).
    pub to: Vec<String>,
}

/// Everything the check needs that does not change between runs.
#[derive(Clone)]
pub struct Escalator {
    team: Option<String>,
    team_locale: String,
    at_risk: f64,
    identity: Identity,
    signer: MessageIdSigner,
    own_addresses: Vec<String>,
}

impl Escalator {
    /// The check for `config`, signing its mail's Message-IDs with `signer`.
    pub fn new(config: &Config, signer: MessageIdSigner) -> Escalator {
        Escalator {
            team: config.support.team_address.clone(),
            team_locale: config.support.default_locale.clone(),
            at_risk: config.sla.at_risk,
            identity: Identity::from_config(config),
            signer,
            own_addresses: config.own_addresses(),
        }
    }

    /// Runs the check at `now` (unix seconds) on `calendar` with `templates`; returns what it
    /// queued. A mail that fails to render is logged and its level left unmarked, to be tried
    /// again at the next check.
    ///
    /// # Errors
    /// Database errors; nothing of this check was kept.
    pub fn check(
        &self,
        store: &mut Store,
        calendar: &Calendar,
        templates: &Templates,
        now: i64,
    ) -> Result<Vec<Escalated>, StoreError> {
        let tx = store.begin()?;
        let mut done = Vec::new();
        for c in store::clocks(&tx, ClockFilter::Unanswered)? {
            let standing = clock::standing(calendar, &c, now);
            let level = match standing.state {
                State::Breached if c.breached_at.is_none() => Level::Breached,
                State::Running | State::Paused
                    if c.at_risk_at.is_none() && standing.share >= self.at_risk =>
                {
                    Level::AtRisk
                }
                _ => continue,
            };
            if let Some(escalated) = self.escalate(&tx, templates, &c, level, standing, now)? {
                done.push(escalated);
            }
        }
        tx.commit()?;
        store.committed();
        Ok(done)
    }

    /// Queues the mail of `level` for clock `c`, records it and marks the clock; `None` when a
    /// mail failed to render (nothing kept for this clock).
    fn escalate(
        &self,
        conn: &rusqlite::Connection,
        templates: &Templates,
        c: &ClockRow,
        level: Level,
        standing: clock::Standing,
        now: i64,
    ) -> Result<Option<Escalated>, StoreError> {
        let mut to: Vec<String> = self.team.iter().cloned().collect();
        if let Some(assignee) = c.assignee.as_deref().map(str::to_ascii_lowercase)
            && assignee.contains('@')
            && !to.iter().any(|t| t.eq_ignore_ascii_case(&assignee))
        {
            to.push(assignee);
        }
        let account = accounts::of_ticket(conn, c.ticket_id, &c.customer, &self.own_addresses)?;
        let request = store::ticket_messages(conn, c.ticket_id)?
            .into_iter()
            .find(|m| m.direction == store::Direction::In)
            .map(|m| m.message_id.trim_matches(['<', '>']).to_string())
            .unwrap_or_default();
        let time = |t: i64| chrono::DateTime::from_timestamp(t, 0);
        let hours = u32::try_from(c.budget / 3600).unwrap_or(u32::MAX);
        let mut rendered = Vec::new();
        for recipient in &to {
            let message_id = self.signer.generate("esc");
            let input = EscalationInput {
                locale: &self.team_locale,
                level,
                ticket_ref: &c.ticket_ref,
                customer: &c.customer,
                original_subject: &c.subject,
                category_id: &c.category,
                status: &c.status,
                promise: (hours, hours),
                business: c.business,
                share: standing.share,
                due_at: standing.due.and_then(time),
                arrived_at: time(c.started_at),
                assignee: c.assignee.as_deref(),
                account: &account,
                to: recipient,
                message_id: &message_id,
                customer_message_id: &request,
            };
            match templates.render_escalation(&self.identity, &input) {
                Ok(out) => rendered.push(out),
                Err(e) => {
                    tracing::error!(ticket = %c.ticket_ref, to = %recipient, "escalation not rendered: {e}");
                    return Ok(None);
                }
            }
        }
        for out in &rendered {
            store::enqueue(
                conn,
                &store::NewOutgoing {
                    kind: store::OutboxKind::Escalation,
                    ticket_id: Some(c.ticket_id),
                    to_addr: &out.to,
                    subject: &out.subject,
                    message_id: &out.message_id,
                    in_reply_to: out.in_reply_to.as_deref(),
                    raw: &out.raw,
                    status: store::OutboxStatus::Queued,
                    last_error: None,
                    at: now,
                    conversation: None,
                },
            )?;
        }
        let (kind, marked) = match level {
            Level::AtRisk => (
                EventKind::SlaAtRisk,
                store::mark_at_risk(conn, c.ticket_id, c.clock, now)?,
            ),
            Level::Breached => {
                // Past the warning already: it is not sent any more.
                store::mark_at_risk(conn, c.ticket_id, c.clock, now)?;
                (
                    EventKind::SlaBreached,
                    store::mark_breached(conn, c.ticket_id, c.clock, now)?,
                )
            }
        };
        if !marked {
            // Read unmarked inside this transaction, so this cannot happen; were it to, the
            // transaction's mail must not go out twice.
            return Err(StoreError::Changed(format!(
                "{}: escalation already recorded",
                c.ticket_ref
            )));
        }
        let detail = format!(
            "{}: {:.0} % used; {}",
            c.clock,
            standing.share * 100.0,
            if to.is_empty() {
                "no team address and no assignee: nothing sent".to_string()
            } else {
                format!("to {}", to.join(", "))
            }
        );
        store::record_event(conn, kind, Some(c.ticket_id), None, None, &detail)?;
        tracing::info!(ticket = %c.ticket_ref, level = level.as_str(), share = standing.share, to = %to.join(","), "escalated");
        Ok(Some(Escalated {
            ticket: c.ticket_ref.clone(),
            level,
            share: standing.share,
            to,
        }))
    }
}
