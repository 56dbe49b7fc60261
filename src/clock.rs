//! "Now" for the whole process: the system clock, or one fixed instant.
//!
//! A fixed instant comes from `SUPPORTD_NOW` (RFC 3339), which the command line reads once
//! (`cli::args`) and installs here before anything runs. It is a testing and replay aid: a test
//! can place a request on a Friday evening and run the escalation check on the Tuesday after,
//! with the real binary. While it is set the clock stands still at that instant, in every
//! command and in the daemon, so two runs with the same value decide the same things.
//!
//! Everything that stamps a row or compares with "now" goes through [`now`] (the store's
//! `store::now()` is this function); code that computes with the time takes it as a parameter.

use std::sync::OnceLock;

/// Where the process takes the time from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The system clock.
    System,
    /// Always this instant (unix seconds).
    Fixed(i64),
}

impl Clock {
    /// The current time in unix seconds by this clock.
    pub fn now(self) -> i64 {
        match self {
            Clock::System => chrono::Utc::now().timestamp(),
            Clock::Fixed(at) => at,
        }
    }
}

/// `SUPPORTD_NOW` (or any RFC 3339 time) that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an RFC 3339 time such as 2025-11-28T19:00:00+01:00")]
pub struct BadTime {
    pub text: String,
}

/// Parses an RFC 3339 time (`2025-11-28T19:00:00+01:00`, `2025-11-28T18:00:00Z`) into unix
/// seconds.
///
/// # Errors
/// [`BadTime`] when `text` is not one.
pub fn parse_rfc3339(text: &str) -> Result<i64, BadTime> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp())
        .map_err(|_| BadTime {
            text: text.to_string(),
        })
}

static INSTALLED: OnceLock<Clock> = OnceLock::new();

/// Makes `clock` the process's clock. The first call wins: the command line installs it once,
/// before any work starts; later calls change nothing.
pub fn install(clock: Clock) {
    let _ = INSTALLED.set(clock);
}

/// The current time in unix seconds: the installed clock, else the system clock.
pub fn now() -> i64 {
    INSTALLED.get().copied().unwrap_or(Clock::System).now()
}

/// The installed clock (the system clock when none was installed).
pub fn current() -> Clock {
    INSTALLED.get().copied().unwrap_or(Clock::System)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_with_their_offset_and_anything_else_is_refused() {
        assert_eq!(
            parse_rfc3339("2025-11-28T19:00:00+01:00"),
            Ok(1_764_352_800)
        );
        assert_eq!(parse_rfc3339("2025-11-28T18:00:00Z"), Ok(1_764_352_800));
        let err = parse_rfc3339("friday evening").unwrap_err();
        assert!(err.to_string().contains("friday evening"), "{err}");
        assert!(parse_rfc3339("2025-11-28").is_err());
    }

    #[test]
    fn a_fixed_clock_stands_still() {
        let clock = Clock::Fixed(42);
        assert_eq!((clock.now(), clock.now()), (42, 42));
        assert!(Clock::System.now() > 1_700_000_000);
    }
}
