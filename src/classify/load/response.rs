//! A category's `response` table: the promise its acknowledgement makes.
//!
//! `response = { min_hours = 24, max_hours = 48, business = true }`: an answer within 24 to
//! 48 hours, counted in working hours (`[sla]`) when `business` is true, in wall-clock hours
//! otherwise; the later bound is the one the ticket is due by. `confirm_only = true` promises
//! a confirmation that the acknowledgement itself gives (feature requests): the hours, if
//! written, are what the acknowledgement says, and no response clock runs.

use toml::Spanned;
use toml::de::DeValue;

use super::{Ctx, ResponsePromise, has_key};

const KEYS: &str = "min_hours, max_hours, business, confirm_only";

/// Reads `v` as a `response` table, reporting every problem in it.
pub(super) fn response(cx: &mut Ctx<'_>, v: &Spanned<DeValue<'_>>) -> Option<ResponsePromise> {
    let DeValue::Table(table) = v.get_ref() else {
        cx.wrong_type(
            "`response`",
            "a table like { min_hours = 24, max_hours = 48, business = true }",
            v,
        );
        return None;
    };
    let (mut min, mut max) = (None, None);
    let (mut business, mut confirm_only) = (false, false);
    let mut ok = true;
    for (k, v) in table.iter() {
        match k.get_ref().as_ref() {
            "min_hours" => min = hours(cx, "`response.min_hours`", v),
            "max_hours" => max = hours(cx, "`response.max_hours`", v),
            "business" => match cx.boolean("`response.business`", v) {
                Some(b) => business = b,
                None => ok = false,
            },
            "confirm_only" => match cx.boolean("`response.confirm_only`", v) {
                Some(b) => confirm_only = b,
                None => ok = false,
            },
            other => {
                let at = k.span().start;
                cx.report(
                    at,
                    format!("unknown key `response.{other}` (expected {KEYS})"),
                );
                ok = false;
            }
        }
    }
    // A confirmation needs no hours: the acknowledgement is it.
    if !confirm_only {
        for (key, value) in [("min_hours", min), ("max_hours", max)] {
            if value.is_none() && !has_key(table, key) {
                cx.report(v.span().start, format!("`response` lacks `{key}`"));
                ok = false;
            }
        }
    }
    let written = |h: Option<(u32, usize)>, key: &str| {
        h.map(Some)
            .or_else(|| (confirm_only && !has_key(table, key)).then_some(None))
    };
    let (min, max) = (written(min, "min_hours")?, written(max, "max_hours")?);
    let (min, max) = match (min, max) {
        (Some(min), Some(max)) => (min, max),
        (Some(only), None) | (None, Some(only)) => (only, only),
        (None, None) => ((0, 0), (0, 0)),
    };
    let ((min, min_at), (max, _)) = (min, max);
    if min > max {
        cx.report(
            min_at,
            format!("`response.min_hours` ({min}) is more than `max_hours` ({max})"),
        );
        return None;
    }
    ok.then_some(ResponsePromise {
        min_hours: min,
        max_hours: max,
        business,
        confirm_only,
    })
}

fn hours(cx: &mut Ctx<'_>, what: &str, v: &Spanned<DeValue<'_>>) -> Option<(u32, usize)> {
    let n = cx.integer(what, v)?;
    match u32::try_from(n) {
        Ok(n) => Some((n, v.span().start)),
        Err(_) => {
            cx.report(v.span().start, format!("{what} must be 0 or more hours"));
            None
        }
    }
}
