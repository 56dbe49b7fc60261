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

#[cfg(test)]
mod tests {
    use crate::classify::{Classifier, ResponsePromise, RuleProblem};

    /// A valid category file with `response = <text>`.
    fn category(id: &str, order: i64, fallback: bool, response: Option<&str>) -> String {
        let response = response
            .map(|r| format!("response = {r}\n"))
            .unwrap_or_default();
        format!(
            "id = \"{id}\"\nlabel = {{ en = \"{id} label\" }}\norder = {order}\n\
             fallback = {fallback}\n{response}"
        )
    }

    #[test]
    fn a_response_says_whether_hours_are_business_hours_and_whether_the_ack_is_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("other.toml", &category("other", 90, true, None));
        let response = |text: &str| -> Vec<RuleProblem> {
            write("feature.toml", &category("feature", 40, false, Some(text)));
            Classifier::check_dir(dir.path())
        };
        let load = || Classifier::load_dir(dir.path()).unwrap();
        assert!(response("{ confirm_only = true }").is_empty());
        let rules = load();
        let promise = rules.category("feature").and_then(|c| c.response);
        assert_eq!(
            promise,
            Some(ResponsePromise {
                min_hours: 0,
                max_hours: 0,
                business: false,
                confirm_only: true,
            })
        );
        assert!(response("{ min_hours = 8, max_hours = 16, business = true }").is_empty());
        let rules = load();
        let promise = rules.category("feature").and_then(|c| c.response);
        assert_eq!(promise.map(|p| (p.max_hours, p.business)), Some((16, true)));
        let problems = response("{ min_hours = 8, max_hours = 16, business = \"yes\" }");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].reason.contains("response.business"),
            "{problems:?}"
        );
        let problems = response("{ max_hours = 16, confirm = true }");
        let reasons: Vec<&str> = problems.iter().map(|p| p.reason.as_str()).collect();
        assert!(
            reasons.iter().any(|r| r.contains("response.confirm`")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("lacks `min_hours`")),
            "{reasons:?}"
        );
    }
}
