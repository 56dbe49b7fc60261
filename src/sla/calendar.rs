//! The business calendar: working hours per weekday in one time zone, holidays, and the
//! arithmetic of business time over it.
//!
//! Times are unix seconds; working hours are local wall-clock times, turned into instants day
//! by day, so a daylight-saving change moves them with the clock on the wall: 09:00-18:00 is
//! nine hours on the day the clocks change too. A local time that does not exist (inside the
//! spring-forward gap) is taken as the first instant after the gap; one that happens twice (the
//! autumn fold) as the first of the two.
//!
//! Everything here is pure: the configuration's text is parsed by [`parse_day`], holiday files
//! are read by `sla::holidays`.

use std::collections::BTreeSet;

use chrono::{Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// One working range of a day: minutes after local midnight, `[start, end)`, `end` at most
/// 1440 (24:00).
pub type Span = (u16, u16);

/// Searching further than this for working time gives up (a calendar of holidays only).
const MAX_DAYS: u32 = 3660;

/// Minutes in a day; also 24:00 as a range end.
const DAY_MINUTES: u16 = 1440;

/// Parses one day's working hours: `"09:00-18:00"`, several ranges separated by commas
/// (`"09:00-12:30,13:30-18:00"`), or `""` for a day off. `24:00` may end a range.
///
/// # Errors
/// A range that is not `HH:MM-HH:MM`, ends before it starts, or overlaps or precedes the one
/// before it; the message quotes the text.
pub fn parse_day(text: &str) -> Result<Vec<Span>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut spans: Vec<Span> = Vec::new();
    for part in text.split(',') {
        let bad = || format!("{:?} is not a range like \"09:00-18:00\"", part.trim());
        let (start, end) = part.split_once('-').ok_or_else(bad)?;
        let (start, end) = (
            minutes(start).ok_or_else(bad)?,
            minutes(end).ok_or_else(bad)?,
        );
        if start >= end || start == DAY_MINUTES {
            return Err(format!("{:?} ends before it starts", part.trim()));
        }
        if let Some(&(_, last_end)) = spans.last()
            && start < last_end
        {
            return Err(format!(
                "{:?} overlaps or comes before the range before it",
                part.trim()
            ));
        }
        spans.push((start, end));
    }
    Ok(spans)
}

/// `HH:MM` as minutes after midnight, up to `24:00`.
fn minutes(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(DAY_MINUTES),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// Why a calendar cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("no working hours on any day of the week")]
    NoWorkingTime,
}

/// Working hours per weekday (Monday first) in a time zone, and the dates that are holidays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    tz: Tz,
    week: [Vec<Span>; 7],
    holidays: BTreeSet<NaiveDate>,
}

impl Calendar {
    /// A calendar with `week[0]` the Monday's ranges (as [`parse_day`] gives them).
    ///
    /// # Errors
    /// [`CalendarError::NoWorkingTime`] when every day is a day off: business time would never
    /// pass.
    pub fn new(
        tz: Tz,
        week: [Vec<Span>; 7],
        holidays: BTreeSet<NaiveDate>,
    ) -> Result<Calendar, CalendarError> {
        if week.iter().all(Vec::is_empty) {
            return Err(CalendarError::NoWorkingTime);
        }
        Ok(Calendar { tz, week, holidays })
    }

    /// The time zone working hours are read in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The working ranges of each weekday, Monday first.
    pub fn week(&self) -> &[Vec<Span>; 7] {
        &self.week
    }

    /// The holidays.
    pub fn holidays(&self) -> &BTreeSet<NaiveDate> {
        &self.holidays
    }

    /// The working intervals of local date `date` as `[start, end)` instants, in order; none
    /// on a holiday or a day off.
    fn intervals(&self, date: NaiveDate) -> Vec<(i64, i64)> {
        if self.holidays.contains(&date) {
            return Vec::new();
        }
        let day = date.weekday().num_days_from_monday() as usize;
        self.week[day]
            .iter()
            .map(|&(start, end)| (self.instant(date, start), self.instant(date, end)))
            .filter(|(a, b)| a < b)
            .collect()
    }

    /// The instant of local `date` at `minute` after midnight (1440: the next midnight).
    fn instant(&self, date: NaiveDate, minute: u16) -> i64 {
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or(NaiveDateTime::MIN);
        let local = midnight + Duration::minutes(i64::from(minute));
        // Gaps are whole quarter hours in every zone in use; 16 steps cover any of them.
        for step in 0..=16 {
            match self
                .tz
                .from_local_datetime(&(local + Duration::minutes(15 * step)))
            {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => return t.timestamp(),
                LocalResult::None => {}
            }
        }
        local.and_utc().timestamp()
    }

    /// The local date of instant `at`.
    fn date_of(&self, at: i64) -> NaiveDate {
        match self.tz.timestamp_opt(at, 0) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.date_naive(),
            LocalResult::None => NaiveDate::MIN,
        }
    }

    /// The instant `secs` seconds of working time after `from`. Time before `from` on its day
    /// does not count; a result exactly at the end of a range is that end (18:00 on the day,
    /// not 09:00 the next). `secs <= 0` gives `from`. Should there be no working time in the
    /// ten years after `from` (every day a holiday), the wall-clock sum.
    pub fn add(&self, from: i64, secs: i64) -> i64 {
        if secs <= 0 {
            return from;
        }
        let mut left = secs;
        let mut date = self.date_of(from);
        for _ in 0..MAX_DAYS {
            for (a, b) in self.intervals(date) {
                if b <= from {
                    continue;
                }
                let a = a.max(from);
                if b - a >= left {
                    return a + left;
                }
                left -= b - a;
            }
            let Some(next) = date.succ_opt() else { break };
            date = next;
        }
        from + secs
    }

    /// Seconds of working time in `[from, to)`; 0 when `to <= from`.
    pub fn between(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        let (mut date, last) = (self.date_of(from), self.date_of(to));
        let mut total = 0;
        while date <= last {
            for (a, b) in self.intervals(date) {
                let (a, b) = (a.max(from), b.min(to));
                if a < b {
                    total += b - a;
                }
            }
            let Some(next) = date.succ_opt() else { break };
            date = next;
        }
        total
    }

    /// Returns true if and only if `at` is inside working hours (not on a holiday).
    pub fn is_open(&self, at: i64) -> bool {
        self.intervals(self.date_of(at))
            .iter()
            .any(|&(a, b)| a <= at && at < b)
    }

    /// The first instant at or after `at` inside working hours (`at` itself when open).
    pub fn next_open(&self, at: i64) -> i64 {
        let mut date = self.date_of(at);
        for _ in 0..MAX_DAYS {
            if let Some(&(a, _)) = self.intervals(date).iter().find(|&&(_, b)| b > at) {
                return a.max(at);
            }
            let Some(next) = date.succ_opt() else { break };
            date = next;
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARIS: Tz = Tz::Europe__Paris;
    const HOUR: i64 = 3600;

    fn office(holidays: &[&str]) -> Calendar {
        let day = parse_day("09:00-18:00").unwrap();
        let week = [
            day.clone(),
            day.clone(),
            day.clone(),
            day.clone(),
            day,
            Vec::new(),
            Vec::new(),
        ];
        let holidays = holidays.iter().map(|d| d.parse().unwrap()).collect();
        Calendar::new(PARIS, week, holidays).unwrap()
    }

    /// Unix seconds of a Paris wall-clock time `YYYY-MM-DDTHH:MM`.
    fn paris(local: &str) -> i64 {
        let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M").unwrap();
        PARIS.from_local_datetime(&naive).unwrap().timestamp()
    }

    #[test]
    fn a_friday_evening_request_for_24_business_hours_is_due_on_wednesday_at_15() {
        // 2025-11-28 is a Friday: Monday 9 h, Tuesday 9 h, Wednesday 6 h.
        let cal = office(&[]);
        let due = cal.add(paris("2025-11-28T19:00"), 24 * HOUR);
        assert_eq!(due, paris("2025-12-03T15:00"));
        assert!(!cal.is_open(paris("2025-11-28T19:00")));
        assert_eq!(
            cal.next_open(paris("2025-11-28T19:00")),
            paris("2025-12-01T09:00")
        );
    }

    #[test]
    fn a_weekend_request_starts_counting_on_monday_morning() {
        let cal = office(&[]);
        let saturday = paris("2025-11-29T11:00");
        assert_eq!(cal.add(saturday, 9 * HOUR), paris("2025-12-01T18:00"));
        assert_eq!(cal.add(saturday, 10 * HOUR), paris("2025-12-02T10:00"));
        // Nothing of the weekend counts.
        assert_eq!(cal.between(saturday, paris("2025-12-01T09:00")), 0);
        assert_eq!(cal.between(saturday, paris("2025-12-01T10:30")), 90 * 60);
    }

    #[test]
    fn a_holiday_is_skipped_like_a_weekend() {
        // Thursday 2025-12-25 is Christmas.
        let cal = office(&["2025-12-25"]);
        let due = cal.add(paris("2025-12-24T14:00"), 9 * HOUR);
        assert_eq!(due, paris("2025-12-26T14:00"));
        assert_eq!(
            cal.between(paris("2025-12-24T14:00"), paris("2025-12-26T14:00")),
            9 * HOUR
        );
        assert!(!cal.is_open(paris("2025-12-25T10:00")));
    }

    #[test]
    fn working_hours_follow_the_wall_clock_across_a_dst_change() {
        // Clocks go back on Sunday 2025-10-26: Friday 17:00 is 15:00 UTC, Monday 17:00 is
        // 16:00 UTC. Nine business hours are one hour on Friday and eight on Monday.
        let cal = office(&[]);
        let friday = paris("2025-10-24T17:00");
        let due = cal.add(friday, 9 * HOUR);
        assert_eq!(due, paris("2025-10-27T17:00"));
        assert_eq!(due - friday, (3 * 24 + 1) * HOUR);
        // Round the clock, the spring-forward night has 23 hours: 24 hours of working time
        // from Saturday noon end on Sunday at 13:00 on the wall.
        let always = parse_day("00:00-24:00").unwrap();
        let cal = Calendar::new(
            PARIS,
            std::array::from_fn(|_| always.clone()),
            BTreeSet::new(),
        )
        .unwrap();
        let saturday = paris("2025-03-29T12:00");
        assert_eq!(cal.add(saturday, 24 * HOUR), paris("2025-03-30T13:00"));
        assert_eq!(cal.between(saturday, paris("2025-03-30T13:00")), 24 * HOUR);
    }

    #[test]
    fn a_range_of_hours_is_due_at_its_later_bound() {
        // "24 to 48 hours" promises the later bound: 48 business hours from Monday 09:00 is
        // the end of the following Monday (five days of nine hours, then three).
        let cal = office(&[]);
        let due = cal.add(paris("2025-12-01T09:00"), 48 * HOUR);
        assert_eq!(due, paris("2025-12-08T12:00"));
        assert_eq!(
            cal.add(paris("2025-12-01T09:00"), 9 * HOUR),
            paris("2025-12-01T18:00")
        );
    }

    #[test]
    fn split_days_and_lunch_breaks_count_only_their_ranges() {
        let day = parse_day("09:00-12:30,13:30-18:00").unwrap();
        assert_eq!(day, vec![(540, 750), (810, 1080)]);
        let mut week: [Vec<Span>; 7] = Default::default();
        week[0] = day;
        let cal = Calendar::new(PARIS, week, BTreeSet::new()).unwrap();
        // Monday 12:00 + 1 h: half an hour before lunch, half an hour after.
        assert_eq!(
            cal.add(paris("2025-12-01T12:00"), HOUR),
            paris("2025-12-01T14:00")
        );
        // Monday 18:00 + 1 h: the next Monday.
        assert_eq!(
            cal.add(paris("2025-12-01T18:00"), HOUR),
            paris("2025-12-08T10:00")
        );
    }

    #[test]
    fn day_texts_are_checked() {
        assert_eq!(parse_day("").unwrap(), vec![]);
        assert_eq!(parse_day(" 08:30-24:00 ").unwrap(), vec![(510, 1440)]);
        for bad in [
            "9-18",
            "09:00",
            "18:00-09:00",
            "09:00-12:00,11:00-13:00",
            "25:00-26:00",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
        let err = parse_day("09:00-18:00,lunch").unwrap_err();
        assert!(err.contains("\"lunch\""), "{err}");
        let none: [Vec<Span>; 7] = Default::default();
        assert_eq!(
            Calendar::new(PARIS, none, BTreeSet::new()),
            Err(CalendarError::NoWorkingTime)
        );
    }

    #[test]
    fn a_calendar_of_holidays_only_falls_back_to_wall_clock_time() {
        let mut week: [Vec<Span>; 7] = Default::default();
        week[0] = parse_day("09:00-10:00").unwrap();
        let mondays: BTreeSet<NaiveDate> = (0..600)
            .map(|w| NaiveDate::from_ymd_opt(2025, 12, 1).unwrap() + Duration::weeks(w))
            .collect();
        let cal = Calendar::new(PARIS, week, mondays).unwrap();
        let from = paris("2025-12-01T08:00");
        assert_eq!(cal.add(from, HOUR), from + HOUR);
    }
}
