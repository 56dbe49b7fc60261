//! Values the configuration parses from text: durations, sizes, the time zone, the robot
//! pattern, and secrets. Each refuses what it cannot hold (an overflowing duration, an unknown
//! zone, a pattern that does not compile) while the file is read, so the TOML error points at
//! the key's line.

use std::fmt;
use std::time::Duration;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer};

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a key the HTTP server checks (API token, link secret) is read from: the
/// `*_file` or `*_env` key of `[http]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file holding the key; one trailing newline is dropped.
    File(std::path::PathBuf),
    /// The name of an environment variable holding the key.
    Env(String),
}

impl KeySource {
    /// The source the `file` or `env` key names (the configuration refuses both at once).
    pub(super) fn from_keys(
        file: Option<&std::path::PathBuf>,
        env: Option<&String>,
    ) -> Option<KeySource> {
        file.cloned()
            .map(KeySource::File)
            .or_else(|| env.cloned().map(KeySource::Env))
    }

    /// Reads the key now.
    ///
    /// # Errors
    /// The file cannot be read, the variable is not set, or the key is empty (an empty token
    /// would let anyone in).
    pub fn read(&self) -> Result<Secret, String> {
        let value = match self {
            KeySource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            KeySource::Env(var) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
            }
        };
        if value.trim().is_empty() {
            return Err(match self {
                KeySource::File(path) => format!("{} is empty", path.display()),
                KeySource::Env(var) => format!("environment variable {var} is empty"),
            });
        }
        Ok(Secret::new(value))
    }
}

/// The machines' local parts matched by `guard.robot_local_parts`, compiled once when the
/// file is read.
///
/// The pattern as written is anchored (`^(?:...)$`) and case-insensitive, so `bot` matches
/// `BOT` but not `robot`.
#[derive(Debug, Clone)]
pub struct LocalPartPattern(Regex);

/// The default of `guard.robot_local_parts`.
const DEFAULT_ROBOT_LOCAL_PARTS: &str = r"mailer-daemon|postmaster|abuse|root|noreply|no[-_.]?reply(?:[-_.+].*)?|do[-_.]?not[-_.]?reply(?:[-_.+].*)?|bounces?(?:[-_.+].*)?|notifications?";

impl LocalPartPattern {
    /// Compiles `pattern` to match whole local parts, ignoring case.
    ///
    /// # Errors
    /// `pattern` is not a valid regex (the reason shows where), or compiles too large.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        // Checked as written first (parsed only, not compiled), so the error points into the
        // admin's text, and a pattern that is only valid once wrapped is refused: `a)|(b` would
        // become `^(?:a)|(b)$`, which is no longer anchored and takes people for machines.
        regex_syntax::Parser::new()
            .parse(pattern)
            .map_err(|e| e.to_string())?;
        RegexBuilder::new(&format!("^(?:{pattern})$"))
            .case_insensitive(true)
            .build()
            .map(LocalPartPattern)
            .map_err(|e| e.to_string())
    }

    /// The compiled, anchored regex.
    pub fn regex(&self) -> &Regex {
        &self.0
    }
}

impl Default for LocalPartPattern {
    fn default() -> Self {
        Self::parse(DEFAULT_ROBOT_LOCAL_PARTS).expect("the built-in robot pattern compiles")
    }
}

impl<'de> Deserialize<'de> for LocalPartPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pattern = String::deserialize(d)?;
        Self::parse(&pattern).map_err(|e| {
            serde::de::Error::custom(format!("guard.robot_local_parts is not a valid regex: {e}"))
        })
    }
}

/// `support.timezone`: an IANA zone name such as "Europe/Paris".
pub(super) fn timezone<'de, D: Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    zone("support.timezone", &String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// `sla.timezone`: as `support.timezone`, optional.
pub(super) fn sla_timezone<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<chrono_tz::Tz>, D::Error> {
    zone("sla.timezone", &String::deserialize(d)?)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn zone(key: &str, name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse()
        .map_err(|_| format!("{key} {name:?} is not an IANA time zone (such as \"Europe/Paris\")"))
}

/// `sla.hours`: working ranges per weekday, Monday first, as
/// [`parse_day`](crate::sla::calendar::parse_day) reads each day's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeekHours([Vec<crate::sla::calendar::Span>; 7]);

/// The keys of `sla.hours`, Monday first.
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl WeekHours {
    /// The ranges of each weekday, Monday first.
    pub fn days(&self) -> &[Vec<crate::sla::calendar::Span>; 7] {
        &self.0
    }
}

impl Default for WeekHours {
    /// 09:00-18:00, Monday to Friday.
    fn default() -> Self {
        Self(std::array::from_fn(|d| {
            if d < 5 { vec![(540, 1080)] } else { Vec::new() }
        }))
    }
}

impl<'de> Deserialize<'de> for WeekHours {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let table = std::collections::BTreeMap::<String, String>::deserialize(d)?;
        let mut week: [Vec<crate::sla::calendar::Span>; 7] = Default::default();
        for (key, text) in &table {
            let Some(day) = WEEKDAYS.iter().position(|w| w == key) else {
                return Err(D::Error::custom(format!(
                    "unknown day `sla.hours.{key}` (expected {})",
                    WEEKDAYS.join(", ")
                )));
            };
            week[day] = crate::sla::calendar::parse_day(text)
                .map_err(|e| D::Error::custom(format!("sla.hours.{key}: {e}")))?;
        }
        if week.iter().all(Vec::is_empty) {
            return Err(D::Error::custom(
                "sla.hours has no working hours on any day: response times would never run out",
            ));
        }
        Ok(Self(week))
    }
}

/// `sla.at_risk`: a share strictly between 0 and 1, written `0.8` or `"80%"`.
pub(super) fn share<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Number(f64),
        Text(String),
    }
    let bad = |what: &str| {
        serde::de::Error::custom(format!(
            "sla.at_risk {what} is not a share between 0 and 1 such as 0.8 or \"80%\""
        ))
    };
    let value = match Written::deserialize(d)? {
        Written::Number(n) => n,
        Written::Text(t) => match t.trim().strip_suffix('%') {
            Some(p) => {
                p.trim()
                    .parse::<f64>()
                    .map_err(|_| bad(&format!("{t:?}")))?
                    / 100.0
            }
            None => return Err(bad(&format!("{t:?}"))),
        },
    };
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(bad(&value.to_string()))
    }
}

/// Durations written as "30s", "5m", "1h" or a bare number of seconds.
pub(super) mod duration_text {
    use std::fmt;
    use std::time::Duration;

    use serde::Deserializer;
    use serde::de::{self, Unexpected, Visitor};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(
                "a duration such as \"30s\", \"5m\", \"2h\", \"1d\", or a number of seconds",
            )
        }

        fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(secs))
        }

        fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
            u64::try_from(secs)
                .map(Duration::from_secs)
                .map_err(|_| E::invalid_value(Unexpected::Signed(secs), &self))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            super::parse_duration(text).map_err(E::custom)
        }
    }
}

/// Sizes written as "25MB", "512KB", "1GB" or a bare number of bytes.
pub(super) mod size_text {
    use std::fmt;

    use serde::Deserializer;
    use serde::de::{self, Unexpected, Visitor};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(SizeVisitor)
    }

    struct SizeVisitor;

    impl Visitor<'_> for SizeVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a size such as \"25MB\", \"512KB\", \"1GiB\", or a number of bytes")
        }

        fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<u64, E> {
            Ok(bytes)
        }

        fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<u64, E> {
            u64::try_from(bytes).map_err(|_| E::invalid_value(Unexpected::Signed(bytes), &self))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
            super::parse_size(text).map_err(E::custom)
        }
    }
}

/// Parses "30s", "5m", "2h", "1d", "250ms" or plain seconds.
///
/// # Errors
/// Not a number with one of those units, or longer than a `Duration` holds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    let secs = |m: u64| {
        n.checked_mul(m)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration {text:?} is too long"))
    };
    match unit.trim() {
        "" | "s" => secs(1),
        "ms" => Ok(Duration::from_millis(n)),
        "m" | "min" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        other => Err(format!("invalid duration unit {other:?} in {text:?}")),
    }
}

/// Parses "25MB", "512KB", "1GB" (decimal units; KiB/MiB/GiB binary) or plain bytes.
///
/// # Errors
/// Not a number with one of those units, or more bytes than a `u64` counts.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {text:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" => 1000,
        "MB" | "M" => 1000 * 1000,
        "GB" | "G" => 1000 * 1000 * 1000,
        "KIB" => 1024,
        "MIB" => 1024 * 1024,
        "GIB" => 1024 * 1024 * 1024,
        other => return Err(format!("invalid size unit {other:?} in {text:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("25MB").unwrap(), 25_000_000);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
    }

    #[test]
    fn a_key_file_loses_its_final_newline_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let source = KeySource::File(path.clone());
        assert_eq!(source.read().unwrap().expose(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(source.read().unwrap_err().contains("empty"));
        let missing = KeySource::Env("SUPPORTD_TEST_SURELY_UNSET".into());
        assert!(missing.read().unwrap_err().contains("not set"));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
