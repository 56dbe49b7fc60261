//! Service levels: the promise each acknowledgement makes, kept on a business calendar,
//! watched, escalated before it is broken, and reported.
//!
//! - `calendar`: working hours, holidays and business-time arithmetic (pure);
//! - `holidays`: reading a holiday file (a list of dates, or iCalendar);
//! - `clock`: where a ticket's response clock stands (used share, due, at risk, breached),
//!   from its promise, its pauses and its first answer;
//! - `escalate`: the check the daemon runs every minute, which queues one "at risk" and one
//!   "breached" notification per ticket and clock;
//! - `report`: what `supportd sla` prints.
//!
//! The promise itself is the category's `response` in its rules file
//! ([`crate::classify::ResponsePromise`]); the calendar is `[sla]` in the configuration.

pub mod calendar;
pub mod clock;
pub mod escalate;
pub mod holidays;
pub mod report;

use std::collections::BTreeSet;

pub use calendar::{Calendar, CalendarError};
pub use holidays::HolidayError;

use crate::config::SlaConfig;

/// Why the configured calendar cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SlaError {
    #[error(transparent)]
    Holidays(#[from] HolidayError),
    #[error("[sla]: {0}")]
    Calendar(#[from] CalendarError),
}

/// The business calendar `[sla]` describes, its holiday file read; `zone` is the one to use
/// when `[sla]` names none (`support.timezone`).
///
/// # Errors
/// The holiday file cannot be read or parsed, or no day has working hours.
pub fn calendar(sla: &SlaConfig, zone: chrono_tz::Tz) -> Result<Calendar, SlaError> {
    let holidays = match &sla.holidays {
        Some(path) => holidays::load(path)?,
        None => BTreeSet::new(),
    };
    Ok(Calendar::new(
        sla.timezone.unwrap_or(zone),
        sla.hours.days().clone(),
        holidays,
    )?)
}
