//! Customer accounts: the CSV import, and finding the account a request comes from.
//!
//! The import ([`read_csv`]) reads a file with a header row naming at least `email`; the
//! known columns are `name`, `plan`, `project_url`, `company` and `created_at`, and any other
//! column is kept and shown as it is. The whole file is read and checked before anything is
//! written, so a malformed row (reported with its line number) imports nothing.
//!
//! A request is matched ([`find`]) on the sender's address first, then on an account e-mail
//! written in the message, then on a project URL written in it (the help page asks customers
//! writing from another address for both). When nothing matches, the e-mails and URLs the
//! message holds are kept to show the team.

use std::sync::LazyLock;

use regex::Regex;
use rusqlite::Connection;
use serde::Serialize;

use crate::store::{self, Account, AccountMatch, NewAccount, StoreError};

/// Columns with a meaning of their own; any other column is kept as extra.
const KNOWN: [&str; 6] = [
    "email",
    "name",
    "plan",
    "project_url",
    "company",
    "created_at",
];

/// Candidates read from one message, at most this many of each kind.
const MAX_CANDIDATES: usize = 20;

/// Why a CSV file cannot be imported; nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {reason}")]
    Row { line: u64, reason: String },
    #[error("the header row has no `email` column (it has: {0})")]
    NoEmailColumn(String),
    #[error("the header row names column `{0}` twice")]
    DuplicateColumn(String),
    #[error("{0}")]
    Csv(String),
}

/// Reads every account of a CSV file (UTF-8, comma-separated, a header row first). Cells are
/// trimmed; e-mails are lower-cased.
///
/// # Errors
/// The first malformed row (a wrong number of cells, an e-mail that is not one, an e-mail
/// already on an earlier line, bytes that are not UTF-8) with its line number, or a header
/// without `email`.
pub fn read_csv(input: impl std::io::Read) -> Result<Vec<NewAccount>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(&e))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
        .collect();
    for (i, h) in header.iter().enumerate() {
        if header[..i].contains(h) {
            return Err(ImportError::DuplicateColumn(h.clone()));
        }
    }
    let column = |name: &str| header.iter().position(|h| h == name);
    let Some(email_at) = column("email") else {
        return Err(ImportError::NoEmailColumn(header.join(", ")));
    };
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut accounts = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(&e))?;
        let line = record.position().map_or(0, csv::Position::line);
        let cell = |name: &str| {
            column(name)
                .and_then(|i| record.get(i))
                .unwrap_or_default()
                .to_string()
        };
        let email = record
            .get(email_at)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !looks_like_email(&email) {
            return Err(ImportError::Row {
                line,
                reason: format!("{email:?} is not an e-mail address"),
            });
        }
        if let Some(first) = seen.insert(email.clone(), line) {
            return Err(ImportError::Row {
                line,
                reason: format!("{email} is already on line {first}"),
            });
        }
        let extra = header
            .iter()
            .zip(record.iter())
            .filter(|(h, _)| !KNOWN.contains(&h.as_str()))
            .map(|(h, v)| (h.clone(), v.to_string()))
            .collect();
        let project_url = cell("project_url");
        accounts.push(NewAccount {
            project_key: project_key(&project_url),
            account: Account {
                email,
                name: cell("name"),
                plan: cell("plan"),
                project_url,
                company: cell("company"),
                created_at: cell("created_at"),
                extra,
            },
        });
    }
    Ok(accounts)
}

fn csv_error(e: &csv::Error) -> ImportError {
    let reason = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} cells where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
        _ => e.to_string(),
    };
    match e.position() {
        Some(pos) => ImportError::Row {
            line: pos.line(),
            reason,
        },
        None => ImportError::Csv(reason),
    }
}

fn looks_like_email(s: &str) -> bool {
    matches!(s.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.')
        && !d.starts_with('.') && !d.ends_with('.') && !s.contains(char::is_whitespace))
}

/// The key a project URL is matched on: host and path, lower-case, without scheme, user,
/// `www.`, port, query, fragment or trailing slash (`https://www.Example.fr/p/1/?x` ->
/// `example.fr/p/1`); empty for an empty URL.
pub fn project_key(url: &str) -> String {
    let url = url.trim().to_lowercase();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next().unwrap_or_default();
    let host = host.strip_prefix("www.").unwrap_or(host);
    let path = path.trim_end_matches(['/', '.', ',', ';', ':', '!', ')']);
    if path.is_empty() {
        host.trim_end_matches('.').to_string()
    } else {
        format!("{host}/{path}")
    }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}\b")
        .expect("the e-mail pattern compiles")
});

/// A URL with a scheme, or a host name starting `www.`, or a bare host under a common top-level
/// domain (so that "fichier.pdf" or "M.Dupont" are not taken for sites), with its path.
static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\bhttps?://[^\s<>"'\])]+|\b(?:www\.)?(?:[a-z0-9-]+\.)+(?:com|fr|net|org|io|app|co|eu|be|ch|ca|de|uk|es|it|nl|dev|ai|shop|site|store|online|info|biz|me)\b(?:/[^\s<>"'\])]*)?"#,
    )
    .expect("the URL pattern compiles")
});

/// The e-mails and project URLs a message names (lower-case, each once, in order), leaving
/// out the sender and `ignore` (our own addresses).
pub fn candidates(text: &str, sender: &str, ignore: &[String]) -> (Vec<String>, Vec<String>) {
    let mut emails: Vec<String> = Vec::new();
    for m in EMAIL.find_iter(text) {
        let e = m.as_str().to_ascii_lowercase();
        if e != sender && !ignore.contains(&e) && !emails.contains(&e) {
            emails.push(e);
        }
    }
    let mut urls: Vec<String> = Vec::new();
    for m in URL.find_iter(text) {
        // The domain of an e-mail is not a URL the customer wrote.
        if text[..m.start()].ends_with('@') || text[..m.start()].ends_with('.') {
            continue;
        }
        let u = m.as_str().trim_end_matches(['.', ',', ';', ':', '!', '?']);
        let u = u.to_string();
        if !urls.contains(&u) {
            urls.push(u);
        }
    }
    emails.truncate(MAX_CANDIDATES);
    urls.truncate(MAX_CANDIDATES);
    (emails, urls)
}

/// What is known of a request's account, for the team's notification and the acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "matched", rename_all = "snake_case")]
pub enum Lookup {
    /// An account matched.
    Found { account: Account, by: AccountMatch },
    /// None did. `emails` and `urls` are what the message named; `accounts_known` is false when
    /// no account was ever imported.
    NotFound {
        emails: Vec<String>,
        urls: Vec<String>,
        accounts_known: bool,
    },
}

/// Finds the account of a request from `sender` whose text is `text`: the sender's address,
/// else an account e-mail in the text, else a project URL in it (a deeper path of an account's
/// project URL counts). `ignore`: our own addresses.
///
/// # Errors
/// Database errors.
pub fn find(
    conn: &Connection,
    sender: &str,
    text: &str,
    ignore: &[String],
) -> Result<Lookup, StoreError> {
    let sender = sender.to_ascii_lowercase();
    if !sender.is_empty()
        && let Some(account) = store::account(conn, &sender)?
    {
        return Ok(Lookup::Found {
            account,
            by: AccountMatch::Sender,
        });
    }
    let (emails, urls) = candidates(text, &sender, ignore);
    for e in &emails {
        if let Some(account) = store::account(conn, e)? {
            return Ok(Lookup::Found {
                account,
                by: AccountMatch::EmailInMessage,
            });
        }
    }
    for u in &urls {
        // example.fr/p/1/settings, then example.fr/p/1, then example.fr.
        let mut key = project_key(u);
        loop {
            if let Some(account) = store::account_by_project(conn, &key)? {
                return Ok(Lookup::Found {
                    account,
                    by: AccountMatch::ProjectUrl,
                });
            }
            match key.rsplit_once('/') {
                Some((shorter, _)) => key = shorter.to_string(),
                None => break,
            }
        }
    }
    Ok(Lookup::NotFound {
        emails,
        urls,
        accounts_known: store::has_accounts(conn)?,
    })
}

/// The account of ticket `ticket_id`: the one it was matched to, else one [`find`] finds from
/// this message of `sender` (`text`), which is then recorded for the ticket. A customer who
/// was asked for their account e-mail and answers with it is matched on that answer.
///
/// # Errors
/// Database errors.
pub fn match_ticket(
    conn: &Connection,
    ticket_id: i64,
    sender: &str,
    text: &str,
    ignore: &[String],
) -> Result<Lookup, StoreError> {
    if let Some((_, by, Some(account))) = store::ticket_account(conn, ticket_id)? {
        return Ok(Lookup::Found { account, by });
    }
    let lookup = find(conn, sender, text, ignore)?;
    if let Lookup::Found { account, by } = &lookup {
        store::link_account(conn, ticket_id, &account.email, *by)?;
    }
    Ok(lookup)
}

/// The account of ticket `ticket_id` as recorded, without matching anything new; when there
/// is none, the e-mails and URLs its customer's messages named.
///
/// # Errors
/// Database errors.
pub fn of_ticket(
    conn: &Connection,
    ticket_id: i64,
    customer: &str,
    ignore: &[String],
) -> Result<Lookup, StoreError> {
    if let Some((_, by, Some(account))) = store::ticket_account(conn, ticket_id)? {
        return Ok(Lookup::Found { account, by });
    }
    let text: Vec<String> = store::ticket_messages(conn, ticket_id)?
        .into_iter()
        .filter(|m| m.direction == store::Direction::In)
        .map(|m| format!("{}\n{}", m.subject, m.text))
        .collect();
    let (emails, urls) = candidates(&text.join("\n"), customer, ignore);
    Ok(Lookup::NotFound {
        emails,
        urls,
        accounts_known: store::has_accounts(conn)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (tempfile::TempDir, store::Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = store::Store::open(&dir.path().join("s.sqlite3")).unwrap();
        (dir, store)
    }

    const CSV: &str = "email,name,plan,project_url,company,created_at,seats\n\
        Julie@Boulangerie-Martin.fr,Julie Martin,pro,https://www.boulangerie-martin.fr/,Boulangerie Martin,2024-03-01,3\n\
        paul@garage.example,Paul,free,app.chatim.io/p/garage,,2025-01-10,1\n";

    #[test]
    fn a_file_is_read_with_its_known_and_extra_columns() {
        let accounts = read_csv(CSV.as_bytes()).unwrap();
        assert_eq!(accounts.len(), 2);
        let julie = &accounts[0];
        assert_eq!(julie.account.email, "julie@boulangerie-martin.fr");
        assert_eq!(julie.account.plan, "pro");
        assert_eq!(julie.project_key, "boulangerie-martin.fr");
        assert_eq!(
            julie.account.extra,
            vec![("seats".to_string(), "3".to_string())]
        );
        assert_eq!(accounts[1].project_key, "app.chatim.io/p/garage");
    }

    #[test]
    fn a_bad_row_is_reported_with_its_line_and_nothing_is_read() {
        let text = format!("{CSV}not-an-address,X,free,,,,\n");
        let err = read_csv(text.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("line 4:"), "{err}");
        assert!(err.contains("not-an-address"), "{err}");
        let text = format!("{CSV}short@row.fr,only two\n");
        let err = read_csv(text.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("line 4:"), "{err}");
        assert!(err.contains("cells"), "{err}");
        let text = format!("{CSV}JULIE@boulangerie-martin.fr,,,,,,\n");
        let err = read_csv(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("already on line 2"), "{err}");
        let err = read_csv("name,plan\nJulie,pro\n".as_bytes()).unwrap_err();
        assert!(matches!(err, ImportError::NoEmailColumn(_)), "{err}");
    }

    #[test]
    fn project_keys_drop_what_does_not_name_the_project() {
        assert_eq!(
            project_key("https://www.Example.fr:443/p/1/?x=2#top"),
            "example.fr/p/1"
        );
        assert_eq!(project_key("example.fr"), "example.fr");
        assert_eq!(project_key(""), "");
    }

    #[test]
    fn candidates_leave_out_the_sender_our_addresses_and_e_mail_domains() {
        let text = "Mon compte : Julie@Boulangerie-Martin.fr, projet https://app.chatim.io/p/garage.\n\
                    Voir aussi www.boulangerie-martin.fr et fichier.pdf ; écrit à support@example.test";
        let (emails, urls) = candidates(
            text,
            "julie.perso@gmail.com",
            &["support@example.test".to_string()],
        );
        assert_eq!(emails, vec!["julie@boulangerie-martin.fr"]);
        assert_eq!(
            urls,
            vec![
                "https://app.chatim.io/p/garage",
                "www.boulangerie-martin.fr"
            ]
        );
    }

    #[test]
    fn the_three_ways_of_matching_come_in_order() {
        let (_d, mut store) = temp_store();
        let tx = store.begin().unwrap();
        store::upsert_accounts(&tx, &read_csv(CSV.as_bytes()).unwrap(), 1).unwrap();
        let by = |sender: &str, text: &str| match find(&tx, sender, text, &[]).unwrap() {
            Lookup::Found { account, by } => Some((account.email, by)),
            Lookup::NotFound { .. } => None,
        };
        assert_eq!(
            by("paul@garage.example", "julie@boulangerie-martin.fr"),
            Some(("paul@garage.example".into(), AccountMatch::Sender))
        );
        assert_eq!(
            by("other@gmail.com", "c'est Paul@Garage.example ici"),
            Some(("paul@garage.example".into(), AccountMatch::EmailInMessage))
        );
        assert_eq!(
            by(
                "other@gmail.com",
                "https://app.chatim.io/p/garage/settings ne marche pas"
            ),
            Some(("paul@garage.example".into(), AccountMatch::ProjectUrl))
        );
        let lookup = find(&tx, "other@gmail.com", "rien, voir example.org", &[]).unwrap();
        assert_eq!(
            lookup,
            Lookup::NotFound {
                emails: vec![],
                urls: vec!["example.org".into()],
                accounts_known: true
            }
        );
    }
}
