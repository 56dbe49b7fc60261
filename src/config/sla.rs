//! `[sla]`: the business calendar response times are counted on, and when the team is warned.

use std::path::PathBuf;

use serde::Deserialize;

use super::{SupportConfig, WeekHours, values};

/// `[sla]`: the business calendar that response times are counted on (for categories whose
/// rules say `business = true`), and when the team is warned.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaConfig {
    /// The zone working hours are read in; `support.timezone` when unset.
    #[serde(default, deserialize_with = "values::sla_timezone")]
    pub timezone: Option<chrono_tz::Tz>,
    /// Working hours per weekday: `hours = { mon = "09:00-18:00", ..., sun = "" }`. A day left
    /// out, or `""`, is a day off. Default: 09:00-18:00 Monday to Friday.
    #[serde(default)]
    pub hours: WeekHours,
    /// A file of holidays: one `YYYY-MM-DD` a line, or an iCalendar file (all-day events).
    pub holidays: Option<PathBuf>,
    /// The share of its time a ticket has used when the team gets the "at risk" warning,
    /// written `0.8` or `"80%"`; strictly between 0 and 1.
    #[serde(default = "default_at_risk", deserialize_with = "values::share")]
    pub at_risk: f64,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            timezone: None,
            hours: WeekHours::default(),
            holidays: None,
            at_risk: default_at_risk(),
        }
    }
}

impl SlaConfig {
    /// The zone of the working hours: `[sla] timezone`, else `support.timezone`.
    pub fn zone(&self, support: &SupportConfig) -> chrono_tz::Tz {
        self.timezone.unwrap_or(support.timezone)
    }
}

fn default_at_risk() -> f64 {
    0.8
}
