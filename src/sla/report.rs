//! What `supportd sla` reports: the open tickets still waiting for a first answer, by due
//! time, overdue first; then per category, over a period, how often the promise was kept and
//! how long first responses took in business hours.
//!
//! Percentiles are nearest-rank: the median of 1, 2, 3, 4 hours is 2.

use chrono::{NaiveDate, TimeZone};
use rusqlite::Connection;
use serde::Serialize;

use super::Calendar;
use super::clock::{self, State};
use crate::store::{self, ClockFilter, StoreError};

/// The whole report, as `supportd sla --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When it was made (unix seconds; RFC 3339 in JSON).
    #[serde(serialize_with = "ser_time")]
    pub now: i64,
    /// The start of the period of the per-category figures.
    #[serde(serialize_with = "ser_time")]
    pub since: i64,
    /// Unanswered tickets, overdue first, then by due time; paused ones last.
    pub open: Vec<OpenTicket>,
    /// One entry per category with tickets opened in the period, by name.
    pub categories: Vec<CategoryFigures>,
}

/// An open ticket waiting for its first answer.
#[derive(Debug, Clone, Serialize)]
pub struct OpenTicket {
    pub ticket: String,
    pub category: String,
    pub customer: String,
    pub subject: String,
    /// The ticket's status (`open`, `pending`).
    pub status: String,
    /// `running`, `paused` or `breached`.
    pub state: State,
    /// The share of the promised time used, in percent.
    pub used_percent: f64,
    /// When the time runs (or ran) out; null while paused.
    #[serde(serialize_with = "ser_opt_time")]
    pub due: Option<i64>,
    pub overdue: bool,
    pub assignee: Option<String>,
}

/// First responses of one category's tickets opened in the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CategoryFigures {
    pub category: String,
    /// Tickets with a response promise opened in the period.
    pub tickets: usize,
    /// Answered in time, or confirmed by the acknowledgement.
    pub met: usize,
    /// Answered late, or still unanswered with the time up.
    pub breached: usize,
    /// Unanswered and still open, with time left (or paused).
    pub waiting: usize,
    /// Closed without an answer (spam, a duplicate): neither kept nor broken.
    pub closed_unanswered: usize,
    /// Median first-response time in business hours, over the answered tickets.
    pub median_hours: Option<f64>,
    /// 90th percentile of the same.
    pub p90_hours: Option<f64>,
}

/// Builds the report at `now` for the period from `since` (unix seconds).
///
/// # Errors
/// Database errors.
pub fn build(
    conn: &Connection,
    calendar: &Calendar,
    now: i64,
    since: i64,
) -> Result<Report, StoreError> {
    let mut open: Vec<OpenTicket> = store::clocks(conn, ClockFilter::Unanswered)?
        .iter()
        .map(|c| {
            let s = clock::standing(calendar, c, now);
            OpenTicket {
                ticket: c.ticket_ref.clone(),
                category: c.category.clone(),
                customer: c.customer.clone(),
                subject: c.subject.clone(),
                status: c.status.clone(),
                state: s.state,
                used_percent: (s.share * 1000.0).round() / 10.0,
                due: s.due,
                overdue: s.state == State::Breached,
                assignee: c.assignee.clone(),
            }
        })
        .collect();
    open.sort_by_key(|t| (!t.overdue, t.due.is_none(), t.due, t.ticket.clone()));

    let mut by_category: std::collections::BTreeMap<String, (CategoryFigures, Vec<i64>)> =
        std::collections::BTreeMap::new();
    for c in store::clocks(conn, ClockFilter::OpenedSince(since))? {
        let s = clock::standing(calendar, &c, now);
        let (figures, times) = by_category.entry(c.category.clone()).or_default();
        figures.tickets += 1;
        let closed = c.status == store::TicketStatus::Closed.as_str();
        if closed && !s.state.is_stopped() {
            figures.closed_unanswered += 1;
            continue;
        }
        match s.state {
            State::Met | State::Confirmed => figures.met += 1,
            State::Missed | State::Breached => figures.breached += 1,
            State::Running | State::Paused => figures.waiting += 1,
        }
        if s.state.is_stopped() {
            times.push(s.business_used);
        }
    }
    let categories = by_category
        .into_iter()
        .map(|(category, (figures, mut times))| {
            times.sort_unstable();
            CategoryFigures {
                category,
                median_hours: percentile(&times, 50).map(hours),
                p90_hours: percentile(&times, 90).map(hours),
                ..figures
            }
        })
        .collect();
    Ok(Report {
        now,
        since,
        open,
        categories,
    })
}

/// The `p`th percentile (nearest rank) of `sorted`.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// Seconds as hours, to a tenth.
fn hours(secs: i64) -> f64 {
    (secs as f64 / 360.0).round() / 10.0
}

/// Reads `--since`: a date (`2025-11-01`, midnight in the calendar's zone) or an RFC 3339 time.
///
/// # Errors
/// Neither.
pub fn parse_since(text: &str, calendar: &Calendar) -> Result<i64, String> {
    if let Ok(t) = crate::clock::parse_rfc3339(text) {
        return Ok(t);
    }
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("--since {text:?} is not a date like 2025-11-01"))?;
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    calendar
        .timezone()
        .from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.timestamp())
        .ok_or_else(|| format!("--since {text:?}: that midnight does not exist in the zone"))
}

/// Unix seconds as RFC 3339, as every command prints times.
pub(super) fn ser_time<S: serde::Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&store::rfc3339(*t))
}

/// Optional unix seconds as RFC 3339 or null.
pub(super) fn ser_opt_time<S: serde::Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&store::rfc3339(*t)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[5], 90), Some(5));
        assert_eq!(percentile(&[1, 2, 3, 4], 50), Some(2));
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 90), Some(9));
        assert_eq!(percentile(&ten, 50), Some(5));
        assert_eq!(hours(5400), 1.5);
    }
}
