//! What every mail to the team shows beside the request: the customer's account (matched from
//! the imported CSV, or what the message named when none matched) and the details a form
//! request came with.

use serde::Serialize;

use super::wording::{self, Lang};
use super::{header_text, truncate_chars};

/// The account variables every team mail shares; templates/README.md documents them.
#[derive(Serialize)]
pub(super) struct AccountContext<'a> {
    account_found: bool,
    /// `label: value` lines.
    account: Vec<String>,
    account_matched_by: &'static str,
    accounts_known: bool,
    found_emails: &'a [String],
    found_urls: &'a [String],
}

/// A matched account, to render templates with before a set is accepted.
pub(super) fn sample_account() -> crate::accounts::Lookup {
    crate::accounts::Lookup::Found {
        account: crate::store::Account {
            email: "julie@example.test".to_owned(),
            name: "Julie Martin".to_owned(),
            plan: "pro".to_owned(),
            project_url: "https://example.test/p/1".to_owned(),
            company: String::new(),
            created_at: String::new(),
            extra: vec![("seats".to_owned(), "3".to_owned())],
        },
        by: crate::store::AccountMatch::Sender,
    }
}

pub(super) fn account_context(lang: Lang, lookup: &crate::accounts::Lookup) -> AccountContext<'_> {
    use crate::accounts::Lookup;
    match lookup {
        Lookup::Found { account, by } => AccountContext {
            account_found: true,
            account: wording::account_lines(lang, account),
            account_matched_by: wording::matched_by(lang, *by),
            accounts_known: true,
            found_emails: &[],
            found_urls: &[],
        },
        Lookup::NotFound {
            emails,
            urls,
            accounts_known,
        } => AccountContext {
            account_found: false,
            account: Vec::new(),
            account_matched_by: "",
            accounts_known: *accounts_known,
            found_emails: emails,
            found_urls: urls,
        },
    }
}

/// One (name, value) pair of `account` or `context` in `notification.hbs`, each on one line
/// and at most [`MAX_DETAIL_CHARS`] characters.
#[derive(Serialize)]
pub(super) struct Detail {
    name: String,
    value: String,
}

/// A detail's name or value is cut to this many characters: the dashboard's account object
/// is shown to the team, not archived.
const MAX_DETAIL_CHARS: usize = 300;

pub(super) fn details(pairs: &[(String, String)]) -> Vec<Detail> {
    pairs
        .iter()
        .map(|(name, value)| Detail {
            name: truncate_chars(&header_text(name), MAX_DETAIL_CHARS),
            value: truncate_chars(&header_text(value), MAX_DETAIL_CHARS),
        })
        .collect()
}
