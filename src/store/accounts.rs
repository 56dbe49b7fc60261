//! Customer accounts (imported from CSV) and the account each ticket was matched to.
//!
//! E-mails are stored lower-case. A project URL is kept as written and as a key for matching
//! (host and path, lower-case, without scheme, `www.`, query or trailing slash), which
//! `accounts::project_key` computes before it reaches here.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{AccountMatch, Result};

/// One customer account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Lower-case.
    pub email: String,
    pub name: String,
    pub plan: String,
    pub project_url: String,
    pub company: String,
    /// As written in the file.
    pub created_at: String,
    /// Other columns of the file, `(column, value)` in file order.
    pub extra: Vec<(String, String)>,
}

/// An account as the import writes it, with its matching key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub account: Account,
    /// See the module documentation; empty when the account has no project URL.
    pub project_key: String,
}

/// What an import changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportCounts {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
}

const ACCOUNT_COLUMNS: &str = "email, name, plan, project_url, company, created_at, extra";

fn account_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    let extra: String = r.get(6)?;
    Ok(Account {
        email: r.get(0)?,
        name: r.get(1)?,
        plan: r.get(2)?,
        project_url: r.get(3)?,
        company: r.get(4)?,
        created_at: r.get(5)?,
        extra: serde_json::from_str(&extra).unwrap_or_default(),
    })
}

/// Adds or updates `accounts` (by e-mail) at `now` (unix seconds); the caller's transaction
/// makes the import all or nothing.
pub fn upsert_accounts(
    conn: &Connection,
    accounts: &[NewAccount],
    now: i64,
) -> Result<ImportCounts> {
    let mut counts = ImportCounts::default();
    for new in accounts {
        let a = &new.account;
        let existing = account(conn, &a.email)?;
        match existing {
            Some(old) if old == *a => {
                counts.unchanged += 1;
                continue;
            }
            Some(_) => counts.updated += 1,
            None => counts.added += 1,
        }
        conn.prepare_cached(
            "INSERT INTO accounts (email, name, plan, project_url, project_key, company,
                                   created_at, extra, imported_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (email) DO UPDATE SET name = ?2, plan = ?3, project_url = ?4,
                 project_key = ?5, company = ?6, created_at = ?7, extra = ?8, imported_at = ?9",
        )?
        .execute(params![
            a.email,
            a.name,
            a.plan,
            a.project_url,
            new.project_key,
            a.company,
            a.created_at,
            serde_json::to_string(&a.extra).unwrap_or_else(|_| "[]".into()),
            now
        ])?;
    }
    Ok(counts)
}

/// The account whose e-mail is `email` (any case).
pub fn account(conn: &Connection, email: &str) -> Result<Option<Account>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = lower(?1)"
        ))?
        .query_row(params![email], account_from_row)
        .optional()?)
}

/// The account whose project key is `key`, the oldest import first when several share it.
pub fn account_by_project(conn: &Connection, key: &str) -> Result<Option<Account>> {
    if key.is_empty() {
        return Ok(None);
    }
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE project_key = ?1
             ORDER BY imported_at, email LIMIT 1"
        ))?
        .query_row(params![key], account_from_row)
        .optional()?)
}

/// Returns true if and only if any account was imported.
pub fn has_accounts(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM accounts)")?
        .query_row([], |r| r.get(0))?)
}

/// Records the account a ticket was matched to (the first match stays).
pub fn link_account(
    conn: &Connection,
    ticket_id: i64,
    email: &str,
    matched_by: AccountMatch,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO ticket_accounts (ticket_id, email, matched_by) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![ticket_id, email, matched_by])?;
    Ok(())
}

/// The account matched to a ticket and how: `(e-mail, how, the account if it is still
/// there)`.
pub fn ticket_account(
    conn: &Connection,
    ticket_id: i64,
) -> Result<Option<(String, AccountMatch, Option<Account>)>> {
    let linked: Option<(String, AccountMatch)> = conn
        .prepare_cached("SELECT email, matched_by FROM ticket_accounts WHERE ticket_id = ?1")?
        .query_row(params![ticket_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((email, how)) = linked else {
        return Ok(None);
    };
    let found = account(conn, &email)?;
    Ok(Some((email, how, found)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_store;

    fn new(email: &str, plan: &str, key: &str) -> NewAccount {
        NewAccount {
            account: Account {
                email: email.into(),
                name: "Julie".into(),
                plan: plan.into(),
                project_url: format!("https://{key}"),
                company: String::new(),
                created_at: String::new(),
                extra: vec![("seats".into(), "3".into())],
            },
            project_key: key.into(),
        }
    }

    #[test]
    fn a_second_import_counts_added_updated_and_unchanged() {
        let (_d, mut store) = temp_store();
        let tx = store.begin().unwrap();
        assert!(!has_accounts(&tx).unwrap());
        let first = [new("a@x.fr", "pro", "a.fr"), new("b@x.fr", "free", "b.fr")];
        let counts = upsert_accounts(&tx, &first, 1).unwrap();
        assert_eq!((counts.added, counts.updated, counts.unchanged), (2, 0, 0));
        let second = [
            new("a@x.fr", "pro", "a.fr"),
            new("b@x.fr", "team", "b.fr"),
            new("c@x.fr", "free", "c.fr"),
        ];
        let counts = upsert_accounts(&tx, &second, 2).unwrap();
        assert_eq!((counts.added, counts.updated, counts.unchanged), (1, 1, 1));
        assert_eq!(account(&tx, "B@X.FR").unwrap().unwrap().plan, "team");
        assert_eq!(
            account(&tx, "a@x.fr").unwrap().unwrap().extra,
            vec![("seats".to_string(), "3".to_string())]
        );
        assert_eq!(
            account_by_project(&tx, "c.fr").unwrap().map(|a| a.email),
            Some("c@x.fr".into())
        );
        assert!(account_by_project(&tx, "").unwrap().is_none());
    }
}
