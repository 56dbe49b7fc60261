//! Holiday files: a list of dates, or an iCalendar file (RFC 5545) whose all-day events are
//! the holidays.
//!
//! The list has one `YYYY-MM-DD` a line; `#` starts a comment, anywhere on a line. The
//! iCalendar file is read with the `icalendar` crate: each `VEVENT` whose `DTSTART` is a date
//! (an all-day event) makes its days holidays, from `DTSTART` up to the day before `DTEND`
//! (RFC 5545 §3.6.1: an all-day `DTEND` is exclusive), recurrences (`RRULE`, `RDATE`, `EXDATE`)
//! expanded up to 2100. Events with a time of day are not holidays and are skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{Days, NaiveDate, TimeZone};
use icalendar::{Component, DatePerhapsTime};

/// Occurrences of one recurring event read at most; a yearly holiday from 1970 needs 131.
const MAX_OCCURRENCES: u16 = 1000;

/// Longest all-day event taken as holidays (a closing for the summer is a few weeks).
const MAX_EVENT_DAYS: u64 = 366;

/// Why a holiday file cannot be used.
///
/// Each message carries its cause and no variant returns it again from `source()`, so a
/// `{:#}` chain names it once.
#[derive(Debug, thiserror::Error)]
pub enum HolidayError {
    #[error("cannot read the holidays file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: not a valid iCalendar file: {reason}")]
    Calendar { path: PathBuf, reason: String },
}

/// Reads the holidays in the file at `path`: iCalendar when it starts with `BEGIN:VCALENDAR`,
/// else a list of dates.
///
/// # Errors
/// The file cannot be read, a line of the list is not a date, or the iCalendar file does not
/// parse (or has a recurrence rule that does not).
pub fn load(path: &Path) -> Result<BTreeSet<NaiveDate>, HolidayError> {
    let text = std::fs::read_to_string(path).map_err(|error| HolidayError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let text = text.trim_start_matches('\u{feff}');
    if text
        .trim_start()
        .get(..15)
        .is_some_and(|s| s.eq_ignore_ascii_case("BEGIN:VCALENDAR"))
    {
        from_icalendar(text).map_err(|reason| HolidayError::Calendar {
            path: path.to_path_buf(),
            reason,
        })
    } else {
        from_list(text).map_err(|(line, reason)| HolidayError::Line {
            path: path.to_path_buf(),
            line,
            reason,
        })
    }
}

/// The dates of a list, one `YYYY-MM-DD` a line.
///
/// # Errors
/// `(line number, reason)` of the first line that is neither a date, blank, nor a comment.
pub fn from_list(text: &str) -> Result<BTreeSet<NaiveDate>, (usize, String)> {
    let mut dates = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let date = NaiveDate::parse_from_str(line, "%Y-%m-%d")
            .map_err(|_| (n + 1, format!("{line:?} is not a date like 2025-12-25")))?;
        dates.insert(date);
    }
    Ok(dates)
}

/// The days of every all-day event of an iCalendar text.
///
/// # Errors
/// The text does not parse, or an event's recurrence does not.
pub fn from_icalendar(text: &str) -> Result<BTreeSet<NaiveDate>, String> {
    let mut calendar: icalendar::Calendar = text.parse()?;
    if calendar.get_timezone().is_none() {
        // All-day recurrences are anchored to the calendar's zone; without one the crate would
        // use the machine's, and a date is a date wherever it is read.
        calendar.timezone("UTC");
    }
    let until = chrono::Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).single();
    let mut dates = BTreeSet::new();
    for event in calendar.calendar_events() {
        let Some(DatePerhapsTime::Date(start)) = event.get_start() else {
            continue;
        };
        let days = match event.get_end() {
            Some(DatePerhapsTime::Date(end)) if end > start => {
                (end - start).num_days().unsigned_abs().min(MAX_EVENT_DAYS)
            }
            _ => 1,
        };
        let mut firsts = vec![start];
        let recurs = ["RRULE", "RDATE"].iter().any(|&k| {
            event.properties().contains_key(k) || event.multi_properties().contains_key(k)
        });
        if recurs {
            let mut set = event.get_recurrence().map_err(|e| {
                format!(
                    "event {:?}: {e}",
                    event.get_summary().unwrap_or("(no summary)")
                )
            })?;
            if let Some(until) = until {
                set = set.before(until.with_timezone(&icalendar::rrule::Tz::UTC));
            }
            firsts = set
                .all(MAX_OCCURRENCES)
                .dates
                .iter()
                .map(|d| d.date_naive())
                .collect();
        }
        for first in firsts {
            for d in 0..days {
                if let Some(day) = first.checked_add_days(Days::new(d)) {
                    dates.insert(day);
                }
            }
        }
    }
    Ok(dates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_list_takes_dates_comments_and_blank_lines_and_names_a_bad_line() {
        let text = "# France 2025\n2025-12-25  # Noël\n\n2025-11-11\n";
        let dates = from_list(text).unwrap();
        assert_eq!(
            dates.into_iter().collect::<Vec<_>>(),
            vec![date("2025-11-11"), date("2025-12-25")]
        );
        let (line, reason) = from_list("2025-12-25\n25/12/2025\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(reason.contains("25/12/2025"), "{reason}");
    }

    #[test]
    fn all_day_events_are_holidays_and_timed_events_are_not() {
        let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n\
            BEGIN:VEVENT\r\nUID:1\r\nSUMMARY:Noël\r\nDTSTART;VALUE=DATE:20251225\r\n\
            DTEND;VALUE=DATE:20251226\r\nEND:VEVENT\r\n\
            BEGIN:VEVENT\r\nUID:2\r\nSUMMARY:Fermeture\r\nDTSTART;VALUE=DATE:20251229\r\n\
            DTEND;VALUE=DATE:20251231\r\nEND:VEVENT\r\n\
            BEGIN:VEVENT\r\nUID:3\r\nSUMMARY:Réunion\r\nDTSTART:20251222T100000Z\r\n\
            DTEND:20251222T110000Z\r\nEND:VEVENT\r\n\
            END:VCALENDAR\r\n";
        let dates: Vec<NaiveDate> = from_icalendar(text).unwrap().into_iter().collect();
        assert_eq!(
            dates,
            vec![date("2025-12-25"), date("2025-12-29"), date("2025-12-30")]
        );
    }

    #[test]
    fn a_yearly_holiday_recurs() {
        let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n\
            BEGIN:VEVENT\r\nUID:1\r\nSUMMARY:Fête du Travail\r\nDTSTART;VALUE=DATE:20240501\r\n\
            RRULE:FREQ=YEARLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let dates = from_icalendar(text).unwrap();
        for year in [2024, 2025, 2030, 2099] {
            assert!(
                dates.contains(&NaiveDate::from_ymd_opt(year, 5, 1).unwrap()),
                "{year}"
            );
        }
        assert!(!dates.contains(&date("2025-05-02")));
    }

    #[test]
    fn files_are_told_apart_by_their_first_line_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("holidays.txt");
        std::fs::write(&list, "2025-12-25\nnoel\n").unwrap();
        let err = load(&list).unwrap_err().to_string();
        assert!(err.contains("holidays.txt:2:"), "{err}");
        let ics = dir.path().join("holidays.ics");
        std::fs::write(&ics, "BEGIN:VCALENDAR\r\nnot really\r\n").unwrap();
        assert!(matches!(load(&ics), Err(HolidayError::Calendar { .. })));
        let missing = load(&dir.path().join("none.txt")).unwrap_err().to_string();
        assert!(missing.contains("none.txt"), "{missing}");
    }
}
