//! Where a response clock stands: how much of its promised time it has used, when it runs
//! out, and whether the promise was kept.
//!
//! A clock runs from the request's arrival until the first answer relayed to the customer,
//! except while the ticket is pending (waiting on the customer). Its time counts in working
//! hours on the [`Calendar`] when the promise says `business = true`, on the wall clock
//! otherwise. A promise the acknowledgement itself keeps (`confirm_only`) is confirmed at once.
//! Everything here is pure: the rows come from `store::clocks`, "now" is a parameter.

use serde::Serialize;

use super::Calendar;
use crate::classify::ResponsePromise;
use crate::store::ClockRow;

/// The seconds a promise gives: its later bound ("24 to 48 hours" is due after 48).
pub fn budget(promise: &ResponsePromise) -> i64 {
    i64::from(promise.max_hours) * 3600
}

/// When a clock started at `start` with `budget` seconds runs out, if nothing pauses it.
pub fn due(cal: &Calendar, business: bool, start: i64, budget: i64) -> i64 {
    advance(cal, business, start, budget)
}

/// `secs` of counted time after `from`.
fn advance(cal: &Calendar, business: bool, from: i64, secs: i64) -> i64 {
    if business {
        cal.add(from, secs)
    } else {
        from + secs.max(0)
    }
}

/// Counted seconds in `[from, to)`.
fn measure(cal: &Calendar, business: bool, from: i64, to: i64) -> i64 {
    if business {
        cal.between(from, to)
    } else {
        (to - from).max(0)
    }
}

/// What became of a clock, or where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for the answer, with time left.
    Running,
    /// The ticket waits on the customer: no time passes.
    Paused,
    /// No answer yet and the time is up.
    Breached,
    /// Answered within the promise.
    Met,
    /// Answered, late.
    Missed,
    /// The acknowledgement was the promised answer.
    Confirmed,
}

impl State {
    /// Returns true if and only if the clock has stopped (answered or confirmed).
    pub fn is_stopped(self) -> bool {
        matches!(self, State::Met | State::Missed | State::Confirmed)
    }
}

/// A clock's standing at some instant (`tickets show --json` prints it as `response`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Standing {
    pub state: State,
    /// Counted seconds used: until the answer, or until now.
    pub used: i64,
    /// `used` over the promised seconds (1.0 and more: the time is up).
    pub share: f64,
    /// When the time runs out (or ran out); `None` while paused with time left, and for a
    /// confirmed promise. RFC 3339 in JSON.
    #[serde(serialize_with = "super::report::ser_opt_time")]
    pub due: Option<i64>,
    /// Seconds of working time on the calendar until the answer (or now), pauses left out,
    /// whatever the promise counts in: what the report compares across categories.
    pub business_used: i64,
}

/// Where `clock` stands at `now`.
pub fn standing(cal: &Calendar, clock: &ClockRow, now: i64) -> Standing {
    if clock.satisfied_at.is_some() {
        return Standing {
            state: State::Confirmed,
            used: 0,
            share: 0.0,
            due: None,
            business_used: 0,
        };
    }
    let end = clock.first_response_at.unwrap_or(now).max(clock.started_at);
    let spans = running(clock.started_at, end, &clock.pauses);
    let business = clock.business;
    let mut used = 0;
    let mut crossed = None;
    for &(a, b) in &spans {
        let counted = measure(cal, business, a, b);
        if crossed.is_none() && used + counted >= clock.budget {
            crossed = Some(advance(cal, business, a, clock.budget - used));
        }
        used += counted;
    }
    let business_used = spans.iter().map(|&(a, b)| cal.between(a, b)).sum();
    let paused = clock.first_response_at.is_none()
        && clock
            .pauses
            .last()
            .is_some_and(|&(from, to)| to.is_none() && from <= now);
    let state = match (clock.first_response_at, used >= clock.budget) {
        (Some(_), false) => State::Met,
        // Exactly on time is on time.
        (Some(_), true) if used == clock.budget => State::Met,
        (Some(_), true) => State::Missed,
        (None, true) => State::Breached,
        (None, false) if paused => State::Paused,
        (None, false) => State::Running,
    };
    let due = match (crossed, state) {
        (Some(at), _) => Some(at),
        (None, State::Paused) => None,
        (None, _) => Some(advance(cal, business, end, clock.budget - used)),
    };
    let share = if clock.budget > 0 {
        used as f64 / clock.budget as f64
    } else {
        1.0
    };
    Standing {
        state,
        used,
        share,
        due,
        business_used,
    }
}

/// `[start, end)` less the pauses (sorted by start; an open one runs to the end).
fn running(start: i64, end: i64, pauses: &[(i64, Option<i64>)]) -> Vec<(i64, i64)> {
    let mut spans = Vec::new();
    let mut cursor = start;
    for &(from, to) in pauses {
        let to = to.unwrap_or(i64::MAX);
        if to <= cursor {
            continue;
        }
        if from >= end {
            break;
        }
        if from > cursor {
            spans.push((cursor, from));
        }
        cursor = to;
        if cursor >= end {
            return spans;
        }
    }
    if cursor < end {
        spans.push((cursor, end));
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::calendar::parse_day;
    use crate::store::SlaClock;
    use chrono::{NaiveDateTime, TimeZone};
    use chrono_tz::Tz;

    const HOUR: i64 = 3600;

    fn paris(local: &str) -> i64 {
        let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M").unwrap();
        Tz::Europe__Paris
            .from_local_datetime(&naive)
            .unwrap()
            .timestamp()
    }

    fn office() -> Calendar {
        let day = parse_day("09:00-18:00").unwrap();
        let week = std::array::from_fn(|d| if d < 5 { day.clone() } else { Vec::new() });
        Calendar::new(Tz::Europe__Paris, week, Default::default()).unwrap()
    }

    fn clock(started_at: i64, hours: i64) -> ClockRow {
        ClockRow {
            ticket_id: 1,
            ticket_ref: "CHT-1".into(),
            clock: SlaClock::FirstResponse,
            category: "billing".into(),
            customer: "a@b.fr".into(),
            subject: "s".into(),
            status: "open".into(),
            created_at: started_at,
            started_at,
            budget: hours * HOUR,
            business: true,
            due_at: 0,
            satisfied_at: None,
            at_risk_at: None,
            breached_at: None,
            first_response_at: None,
            assignee: None,
            pauses: Vec::new(),
        }
    }

    #[test]
    fn a_friday_evening_clock_runs_out_on_wednesday_at_15() {
        let cal = office();
        let c = clock(paris("2025-11-28T19:00"), 24);
        assert_eq!(
            due(&cal, true, c.started_at, c.budget),
            paris("2025-12-03T15:00")
        );
        // Tuesday 12:00: Monday's 9 h and Tuesday's 3 h of 24.
        let s = standing(&cal, &c, paris("2025-12-02T12:00"));
        assert_eq!((s.state, s.used, s.share), (State::Running, 12 * HOUR, 0.5));
        assert_eq!(s.due, Some(paris("2025-12-03T15:00")));
        let s = standing(&cal, &c, paris("2025-12-03T16:00"));
        assert_eq!(s.state, State::Breached);
        assert_eq!(s.due, Some(paris("2025-12-03T15:00")));
        assert!(s.share > 1.0);
    }

    #[test]
    fn a_pending_ticket_stops_the_clock_and_the_customer_answer_restarts_it() {
        let cal = office();
        let mut c = clock(paris("2025-12-01T09:00"), 9);
        // Pending from Monday 12:00 to Tuesday 10:00: Monday's 6 h after noon do not count.
        c.pauses = vec![(paris("2025-12-01T12:00"), None)];
        let s = standing(&cal, &c, paris("2025-12-02T09:30"));
        assert_eq!((s.state, s.used, s.due), (State::Paused, 3 * HOUR, None));
        c.pauses = vec![(paris("2025-12-01T12:00"), Some(paris("2025-12-02T10:00")))];
        let s = standing(&cal, &c, paris("2025-12-02T11:00"));
        assert_eq!((s.state, s.used), (State::Running, 4 * HOUR));
        // Five hours left at 11:00; without the pause it would have run out on Monday at 18:00.
        assert_eq!(s.due, Some(paris("2025-12-02T16:00")));
    }

    #[test]
    fn the_first_answer_stops_the_clock_met_or_missed() {
        let cal = office();
        let mut c = clock(paris("2025-12-01T09:00"), 9);
        c.first_response_at = Some(paris("2025-12-01T18:00"));
        let s = standing(&cal, &c, paris("2025-12-10T09:00"));
        assert_eq!(
            (s.state, s.used, s.business_used),
            (State::Met, 9 * HOUR, 9 * HOUR)
        );
        assert!(s.state.is_stopped());
        c.first_response_at = Some(paris("2025-12-02T10:00"));
        let s = standing(&cal, &c, paris("2025-12-10T09:00"));
        assert_eq!((s.state, s.used), (State::Missed, 10 * HOUR));
        assert_eq!(s.due, Some(paris("2025-12-01T18:00")));
    }

    #[test]
    fn wall_clock_promises_count_every_hour_and_confirmations_are_kept_at_once() {
        let cal = office();
        let mut c = clock(paris("2025-11-28T19:00"), 24);
        c.business = false;
        let s = standing(&cal, &c, paris("2025-11-29T19:00"));
        assert_eq!((s.state, s.used), (State::Breached, 24 * HOUR));
        assert_eq!(s.business_used, 0, "a Saturday has no working time");
        c.satisfied_at = Some(c.started_at);
        let s = standing(&cal, &c, paris("2025-12-29T19:00"));
        assert_eq!((s.state, s.due), (State::Confirmed, None));
    }

    #[test]
    fn pauses_are_cut_to_the_running_span() {
        assert_eq!(running(10, 100, &[]), vec![(10, 100)]);
        assert_eq!(
            running(10, 100, &[(0, Some(20)), (50, Some(60)), (90, None)]),
            vec![(20, 50), (60, 90)]
        );
        assert_eq!(running(10, 100, &[(5, None)]), vec![]);
        assert_eq!(running(10, 100, &[(150, Some(160))]), vec![(10, 100)]);
    }
}
