//! Response clocks: started when a ticket opens, read with what stops or pauses them, marked
//! when an escalation was queued.
//!
//! What stops and pauses a clock is read from rows other stages write: the first response is
//! the earliest outbound message on the ticket (`messages.direction = 'out'`, its
//! `received_at` the time the answer was decided), and a pause runs from a `status_changed`
//! event `… -> pending` to the next one `pending -> …` ([`record_status_change`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::{Direction, EventKind, Result, SlaClock, TicketStatus};

/// The status text during which a ticket's clocks stand still (waiting on the customer).
pub const PENDING: &str = "pending";

/// A clock to start.
#[derive(Debug, Clone)]
pub struct NewClock {
    pub ticket_id: i64,
    pub clock: SlaClock,
    /// Unix seconds: the request's arrival.
    pub started_at: i64,
    /// Seconds promised (the later bound), counted in working hours when `business`.
    pub budget: i64,
    pub business: bool,
    /// Unix seconds: the due time the acknowledgement states.
    pub due_at: i64,
    /// Unix seconds: for a promise the acknowledgement itself keeps, when it was queued.
    pub satisfied_at: Option<i64>,
}

/// Starts a clock (once per ticket and clock: a second start changes nothing).
pub fn start_clock(conn: &Connection, c: &NewClock) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO sla_clocks
             (ticket_id, clock, started_at, budget, business, due_at, satisfied_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        c.ticket_id,
        c.clock,
        c.started_at,
        c.budget,
        c.business,
        c.due_at,
        c.satisfied_at
    ])?;
    Ok(())
}

/// Records that the ticket's status went from `from` to `to` at `at` (unix seconds), by `by`
/// (an agent's address, or `None` for supportd itself), as a `status_changed` event with the
/// detail `from -> to`. Statuses are their stored text (`open`, [`PENDING`], `closed`). The
/// ticket's own status column is the caller's to set.
pub fn record_status_change(
    conn: &Connection,
    ticket_id: i64,
    from: &str,
    to: &str,
    at: i64,
    by: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (at, kind, ticket_id, address, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        at,
        EventKind::StatusChanged,
        ticket_id,
        by,
        format!("{from} -> {to}")
    ])?;
    Ok(())
}

/// A clock with everything that decides where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockRow {
    pub ticket_id: i64,
    /// `PREFIX-n`.
    pub ticket_ref: String,
    pub clock: SlaClock,
    pub category: String,
    pub customer: String,
    pub subject: String,
    /// The ticket's status text (`open`, `pending`, `closed`).
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
    pub started_at: i64,
    /// Seconds.
    pub budget: i64,
    pub business: bool,
    pub due_at: i64,
    pub satisfied_at: Option<i64>,
    pub at_risk_at: Option<i64>,
    pub breached_at: Option<i64>,
    /// When the first answer was relayed to the customer.
    pub first_response_at: Option<i64>,
    /// The agent the ticket was last assigned to.
    pub assignee: Option<String>,
    /// Intervals the ticket was pending, `[from, to)`; `to` is `None` while it still is.
    pub pauses: Vec<(i64, Option<i64>)>,
}

/// Which clocks [`clocks`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockFilter {
    /// Clocks still running or paused: the ticket is not closed, nothing answered it yet, and
    /// its promise is not one the acknowledgement kept.
    Unanswered,
    /// Every clock of a ticket opened at or after this time (unix seconds).
    OpenedSince(i64),
}

/// The clocks `filter` selects, by ticket.
pub fn clocks(conn: &Connection, filter: ClockFilter) -> Result<Vec<ClockRow>> {
    let (condition, bound): (&str, (&str, &dyn rusqlite::ToSql)) = match &filter {
        ClockFilter::Unanswered => (
            "t.status != :closed AND c.satisfied_at IS NULL AND NOT EXISTS
                 (SELECT 1 FROM messages m WHERE m.ticket_id = t.id AND m.direction = :out)",
            (":closed", &TicketStatus::Closed),
        ),
        ClockFilter::OpenedSince(since) => ("t.created_at >= :since", (":since", since)),
    };
    let sql = format!(
        "SELECT t.id, t.ref, c.clock, t.category, t.customer, t.subject, t.status, t.created_at,
                c.started_at, c.budget, c.business, c.due_at, c.satisfied_at, c.at_risk_at,
                c.breached_at,
                (SELECT MIN(m.received_at) FROM messages m
                  WHERE m.ticket_id = t.id AND m.direction = :out),
                t.assignee
         FROM sla_clocks c JOIN tickets t ON t.id = c.ticket_id
         WHERE {condition}
         ORDER BY t.id, c.clock"
    );
    let mut stmt = conn.prepare(&sql)?;
    let named: [(&str, &dyn rusqlite::ToSql); 2] = [(":out", &Direction::Out), bound];
    let rows = stmt.query_map(named.as_slice(), |r| {
        Ok(ClockRow {
            ticket_id: r.get(0)?,
            ticket_ref: r.get(1)?,
            clock: r.get(2)?,
            category: r.get(3)?,
            customer: r.get(4)?,
            subject: r.get(5)?,
            status: r.get(6)?,
            created_at: r.get(7)?,
            started_at: r.get(8)?,
            budget: r.get(9)?,
            business: r.get(10)?,
            due_at: r.get(11)?,
            satisfied_at: r.get(12)?,
            at_risk_at: r.get(13)?,
            breached_at: r.get(14)?,
            first_response_at: r.get(15)?,
            assignee: r.get(16)?,
            pauses: Vec::new(),
        })
    })?;
    let mut clocks: Vec<ClockRow> = rows.collect::<rusqlite::Result<_>>()?;
    for c in &mut clocks {
        c.pauses = pauses(conn, c.ticket_id)?;
    }
    Ok(clocks)
}

/// The intervals the ticket was pending, from its `status_changed` events in time order.
pub fn pauses(conn: &Connection, ticket_id: i64) -> Result<Vec<(i64, Option<i64>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, detail FROM events WHERE ticket_id = ?1 AND kind = ?2 ORDER BY at, id",
    )?;
    let changes = stmt.query_map(params![ticket_id, EventKind::StatusChanged], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out: Vec<(i64, Option<i64>)> = Vec::new();
    for change in changes {
        let (at, detail) = change?;
        let Some((_, to)) = detail.split_once("->") else {
            continue;
        };
        let paused = out.last().is_some_and(|(_, end)| end.is_none());
        match (to.trim() == PENDING, paused) {
            (true, false) => out.push((at, None)),
            (false, true) => {
                if let Some(last) = out.last_mut() {
                    last.1 = Some(at);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Marks that the "at risk" warning of a clock was queued (or deliberately skipped) at `at`.
/// Returns false when it already was: another process got there first, nothing to send.
pub fn mark_at_risk(conn: &Connection, ticket_id: i64, clock: SlaClock, at: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE sla_clocks SET at_risk_at = ?3
             WHERE ticket_id = ?1 AND clock = ?2 AND at_risk_at IS NULL",
        )?
        .execute(params![ticket_id, clock, at])?
        > 0)
}

/// Marks that the "breached" notification of a clock was queued at `at`. Returns false when
/// it already was.
pub fn mark_breached(conn: &Connection, ticket_id: i64, clock: SlaClock, at: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE sla_clocks SET breached_at = ?3
             WHERE ticket_id = ?1 AND clock = ?2 AND breached_at IS NULL",
        )?
        .execute(params![ticket_id, clock, at])?
        > 0)
}

/// The ticket's first-response clock as `tickets show` reports it, if it has one.
pub fn ticket_clock(conn: &Connection, ticket_id: i64) -> Result<Option<ClockRow>> {
    let since = conn
        .query_row(
            "SELECT created_at FROM tickets WHERE id = ?1",
            params![ticket_id],
            |r| r.get::<_, i64>(0),
        )
        .optional()?;
    let Some(since) = since else {
        return Ok(None);
    };
    Ok(clocks(conn, ClockFilter::OpenedSince(since))?
        .into_iter()
        .find(|c| c.ticket_id == ticket_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_ticket;
    use crate::store::tests::temp_store;
    use crate::store::{NewTicket, create_ticket};

    fn ticket(conn: &Connection, created_at: i64) -> i64 {
        let (id, _) = create_ticket(
            conn,
            &NewTicket {
                due_at: Some(created_at + 100),
                ..sample_ticket("a@b.fr", created_at)
            },
        )
        .unwrap();
        start_clock(
            conn,
            &NewClock {
                ticket_id: id,
                clock: SlaClock::FirstResponse,
                started_at: created_at,
                budget: 100,
                business: false,
                due_at: created_at + 100,
                satisfied_at: None,
            },
        )
        .unwrap();
        id
    }

    #[test]
    fn pauses_run_from_pending_to_the_next_change() {
        let (_d, mut store) = temp_store();
        let tx = store.begin().unwrap();
        let id = ticket(&tx, 10);
        record_status_change(&tx, id, "open", PENDING, 20, Some("agent@x.fr")).unwrap();
        record_status_change(&tx, id, PENDING, PENDING, 25, None).unwrap();
        record_status_change(&tx, id, PENDING, "open", 30, None).unwrap();
        record_status_change(&tx, id, "open", PENDING, 40, None).unwrap();
        assert_eq!(pauses(&tx, id).unwrap(), vec![(20, Some(30)), (40, None)]);
    }

    #[test]
    fn an_answered_or_closed_ticket_has_no_unanswered_clock_and_marks_are_taken_once() {
        let (_d, mut store) = temp_store();
        let tx = store.begin().unwrap();
        let waiting = ticket(&tx, 10);
        let closed = ticket(&tx, 11);
        crate::store::set_ticket_status(&tx, closed, TicketStatus::Closed).unwrap();
        let unanswered = clocks(&tx, ClockFilter::Unanswered).unwrap();
        assert_eq!(
            unanswered.iter().map(|c| c.ticket_id).collect::<Vec<_>>(),
            vec![waiting]
        );
        assert_eq!(unanswered[0].first_response_at, None);
        assert!(mark_at_risk(&tx, waiting, SlaClock::FirstResponse, 50).unwrap());
        assert!(!mark_at_risk(&tx, waiting, SlaClock::FirstResponse, 51).unwrap());
        assert!(mark_breached(&tx, waiting, SlaClock::FirstResponse, 60).unwrap());
        assert!(!mark_breached(&tx, waiting, SlaClock::FirstResponse, 61).unwrap());
        let all = clocks(&tx, ClockFilter::OpenedSince(0)).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].at_risk_at, all[0].breached_at),
            (Some(50), Some(60))
        );
        assert!(clocks(&tx, ClockFilter::OpenedSince(11)).unwrap().len() == 1);
        assert_eq!(
            ticket_clock(&tx, closed).unwrap().map(|c| c.ticket_id),
            Some(closed)
        );
    }
}
