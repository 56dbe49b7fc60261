//! What the commands print: tab-separated lines for people and `grep`/`cut`, or pretty JSON.
//!
//! Everything goes through [`Out`], never `println!`: a reader that stops early
//! (`supportd tickets list | head -1`) must end the command quietly, not with a panic.

use std::io::{self, Write};

use serde::Serialize;

use crate::classify::Classification;
use crate::pipeline::{AckDecision, Action, Outcome};
use crate::store::{self, MailboxState, MessageView, OutboxItem, QuarantinedItem, Ticket};

/// Standard output for command results, where a reader that leaves early is not an error.
///
/// Rust ignores SIGPIPE, so writing to a pipe whose reader has gone fails with EPIPE, which
/// `println!` turns into a panic (exit 101). Here the first EPIPE means the reader has all it
/// wanted: that write and every later one are dropped, so the command finishes its work and
/// exits with its own code, and says nothing. Any other write error (a full disk) is returned.
#[derive(Debug)]
pub struct Out<W: Write = io::Stdout> {
    inner: W,
    /// A write found the reader gone (EPIPE); nothing more is written.
    reader_gone: bool,
}

impl Out {
    /// The process's standard output.
    pub fn stdout() -> Self {
        Self::new(io::stdout())
    }
}

impl<W: Write> Out<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            reader_gone: false,
        }
    }

    /// Runs one operation on the inner writer unless the reader is gone; EPIPE marks it gone.
    fn guard<T>(&mut self, done: T, op: impl FnOnce(&mut W) -> io::Result<T>) -> io::Result<T> {
        if self.reader_gone {
            return Ok(done);
        }
        match op(&mut self.inner) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.reader_gone = true;
                Ok(done)
            }
            other => other,
        }
    }
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.guard(buf.len(), |w| w.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.guard((), Write::flush)
    }
}

/// Writes `supportd: <message>` on standard error. A failure to write it is ignored: standard
/// error is where failures are reported, so there is nowhere left to report this one (and
/// `eprintln!` would panic instead).
pub fn problem(message: impl std::fmt::Display) {
    let _ = writeln!(io::stderr(), "supportd: {message}");
}

/// One `file:line: reason` line per problem on standard error, as a compiler prints them;
/// write failures are ignored as in [`problem`].
pub fn lint(problems: &[impl std::fmt::Display]) {
    let mut stderr = io::stderr().lock();
    for p in problems {
        let _ = writeln!(stderr, "{p}");
    }
}

/// `value` as pretty JSON and a newline.
/// One line of text.
pub fn line(out: &mut impl Write, text: std::fmt::Arguments<'_>) -> io::Result<()> {
    writeln!(out, "{text}")
}

pub fn json<T: Serialize>(out: &mut impl Write, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// One line per message: ticket, action, category, source, and what became of the ack.
pub fn outcomes(out: &mut impl Write, outcomes: &[Outcome]) -> io::Result<()> {
    for o in outcomes {
        let note = match (&o.ack, o.action) {
            (_, Action::Automated) => {
                format!("not acknowledged: {}", o.automated.as_deref().unwrap_or(""))
            }
            (_, Action::Quarantined) => {
                format!("quarantined: {}", o.error.as_deref().unwrap_or(""))
            }
            (AckDecision::Queued, _) => "ack queued".into(),
            (AckDecision::Suppressed(r), _) => format!("ack suppressed: {r}"),
            (AckDecision::NotApplicable, Action::Reply) => "no ack (reply)".into(),
            (AckDecision::NotApplicable, _) => String::new(),
        };
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}",
            o.ticket.as_deref().unwrap_or("-"),
            o.action.as_str(),
            o.category.as_deref().unwrap_or("-"),
            o.source,
            note
        )?;
    }
    Ok(())
}

/// One line per quarantined message: id, received, source, sender, subject, error.
pub fn quarantined(out: &mut impl Write, items: &[QuarantinedItem]) -> io::Result<()> {
    for q in items {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            q.id,
            store::rfc3339(q.received_at),
            q.source,
            if q.from.is_empty() { "-" } else { &q.from },
            q.subject,
            q.error
        )?;
    }
    Ok(())
}

/// The category, the hint that decided it, and with `explain` every rule that matched and the
/// totals; then the tips.
pub fn classification(
    out: &mut impl Write,
    result: &Classification,
    explain: bool,
) -> io::Result<()> {
    writeln!(out, "category: {}", result.category)?;
    if let Some(hint) = &result.hint {
        writeln!(out, "decided by explicit hint: {hint}")?;
    }
    if explain {
        for m in &result.matches {
            writeln!(
                out,
                "  rule {}/{} matched {} {:?} ({:+})",
                m.category, m.rule, m.field, m.matched, m.weight
            )?;
        }
        for (category, total) in &result.scores {
            writeln!(out, "  total {category}: {total}")?;
        }
        if result.matches.is_empty() {
            writeln!(out, "  no rule matched: fallback category")?;
        }
    }
    for tip in &result.tips {
        writeln!(out, "tip: {}", tip.name)?;
    }
    Ok(())
}

/// One line per ticket: reference, status, category, customer, message count, subject.
pub fn tickets(out: &mut impl Write, tickets: &[Ticket]) -> io::Result<()> {
    for t in tickets {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{} msg\t{}",
            t.ticket_ref, t.status, t.category, t.customer, t.message_count, t.subject
        )?;
    }
    Ok(())
}

/// A ticket's header line, then each message with its direction, action and text.
pub fn ticket(out: &mut impl Write, t: &Ticket, messages: &[MessageView]) -> io::Result<()> {
    writeln!(
        out,
        "{} [{}] {} — {} <{}>, due {}",
        t.ticket_ref,
        t.status,
        t.category,
        t.subject,
        t.customer,
        t.due_at.map(store::rfc3339).unwrap_or_else(|| "-".into())
    )?;
    if let Some(agent) = &t.assignee {
        writeln!(out, "assigned to {agent}")?;
    }
    if let Some(previous) = &t.previous {
        writeln!(out, "continues {previous}")?;
    }
    for m in messages {
        writeln!(
            out,
            "\n--- {} {} {} from {}{}\n{}",
            m.direction,
            m.action,
            m.message_id,
            m.from,
            m.automated
                .as_deref()
                .map(|a| format!(" (automated: {a})"))
                .unwrap_or_default(),
            m.text
        )?;
    }
    Ok(())
}

/// One line per queued mail: id, kind, status, ticket, recipient, subject.
pub fn outbox(out: &mut impl Write, items: &[OutboxItem]) -> io::Result<()> {
    for o in items {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            o.id,
            o.kind,
            o.status,
            o.ticket.as_deref().unwrap_or("-"),
            o.to,
            o.subject
        )?;
    }
    Ok(())
}

/// A queued mail: with `raw` the exact bytes that will be sent, otherwise as text (invalid
/// UTF-8 replaced).
pub fn outgoing(out: &mut impl Write, bytes: &[u8], raw: bool) -> io::Result<()> {
    if raw {
        out.write_all(bytes)
    } else {
        write!(out, "{}", String::from_utf8_lossy(bytes))
    }
}

/// `key: value` per counter, sorted by name.
pub fn stats(out: &mut impl Write, stats: &store::Stats) -> io::Result<()> {
    if let serde_json::Value::Object(map) = serde_json::to_value(stats)? {
        for (k, v) in map {
            writeln!(out, "{k}: {v}")?;
        }
    }
    Ok(())
}

/// What `supportd status` shows.
pub struct Status<'a> {
    pub mailboxes: &'a [MailboxState],
    /// Outbox rows per status.
    pub outbox: &'a serde_json::Map<String, serde_json::Value>,
    pub quarantined_count: i64,
    /// The most recent quarantined messages: (row id, source, error).
    pub recent_quarantined: &'a [(i64, String, String)],
}

/// Each mailbox's watermark, last fetch and error, the outbox counts and the quarantine.
pub fn status(out: &mut impl Write, s: &Status<'_>) -> io::Result<()> {
    if s.mailboxes.is_empty() {
        writeln!(out, "mailboxes: none fetched yet")?;
    }
    for m in s.mailboxes {
        writeln!(
            out,
            "mailbox {}: uidvalidity {}, last uid {}, last fetch {}{}{}",
            m.name,
            m.uidvalidity
                .map(|u| u.to_string())
                .unwrap_or_else(|| "-".into()),
            m.last_uid,
            m.last_fetch_at
                .map(store::rfc3339)
                .unwrap_or_else(|| "never".into()),
            m.last_error
                .as_deref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default(),
            if m.auth_failing {
                " [AUTHENTICATION FAILING]"
            } else {
                ""
            }
        )?;
    }
    let outbox = if s.outbox.is_empty() {
        "empty".to_string()
    } else {
        s.outbox
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(out, "outbox: {outbox}")?;
    writeln!(out, "quarantined: {}", s.quarantined_count)?;
    for (id, source, error) in s.recent_quarantined {
        writeln!(out, "  #{id} {source}: {error}")?;
    }
    Ok(())
}

/// The ticket's account, after `tickets show`'s messages: its details and how it was matched,
/// or that none matched and what the messages named.
pub fn ticket_account(out: &mut impl Write, lookup: &crate::accounts::Lookup) -> io::Result<()> {
    use crate::accounts::Lookup;
    match lookup {
        Lookup::Found { account, by } => {
            writeln!(out, "\naccount: {} (matched: {by})", account.email)?;
            account_details(out, account, "  ")
        }
        Lookup::NotFound {
            emails,
            urls,
            accounts_known,
        } => {
            let why = if *accounts_known {
                "none matched"
            } else {
                "none imported"
            };
            writeln!(out, "\naccount: {why}")?;
            let list = |items: &[String]| {
                if items.is_empty() {
                    "-".to_string()
                } else {
                    items.join(", ")
                }
            };
            writeln!(out, "  e-mails in the messages: {}", list(emails))?;
            writeln!(out, "  URLs in the messages: {}", list(urls))
        }
    }
}

/// The ticket's first-response clock, after `tickets show`'s account.
pub fn response_clock(out: &mut impl Write, s: &crate::sla::clock::Standing) -> io::Result<()> {
    let state = serde_json::to_value(s.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    writeln!(
        out,
        "response: {state}, {:.0} % of the promised time used, due {}",
        s.share * 100.0,
        s.due.map(store::rfc3339).unwrap_or_else(|| "-".into())
    )
}

/// `key: value` per non-empty field of an account, extra columns included.
fn account_details(out: &mut impl Write, a: &store::Account, indent: &str) -> io::Result<()> {
    let known = [
        ("email", &a.email),
        ("name", &a.name),
        ("plan", &a.plan),
        ("project_url", &a.project_url),
        ("company", &a.company),
        ("created_at", &a.created_at),
    ];
    for (k, v) in known
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_str()))
        .chain(a.extra.iter().map(|(k, v)| (k.clone(), v.as_str())))
    {
        if !v.is_empty() {
            writeln!(out, "{indent}{k}: {v}")?;
        }
    }
    Ok(())
}

/// `supportd accounts show`.
pub fn account(out: &mut impl Write, a: &store::Account) -> io::Result<()> {
    account_details(out, a, "")
}

/// One line per escalation queued: ticket, level, share used, recipients.
pub fn escalated(
    out: &mut impl Write,
    queued: &[crate::sla::escalate::Escalated],
) -> io::Result<()> {
    if queued.is_empty() {
        return writeln!(out, "nothing to escalate");
    }
    for e in queued {
        writeln!(
            out,
            "{}\t{}\t{:.0} %\t{}",
            e.ticket,
            e.level.as_str(),
            e.share * 100.0,
            if e.to.is_empty() {
                "(no team address, no assignee)".to_string()
            } else {
                e.to.join(", ")
            }
        )?;
    }
    Ok(())
}

/// `supportd sla`: the open tickets as a table, overdue first, then the figures per category.
pub fn sla(
    out: &mut impl Write,
    report: &crate::sla::report::Report,
    tz: chrono_tz::Tz,
) -> io::Result<()> {
    let local = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|t| t.with_timezone(&tz).format("%a %Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    writeln!(
        out,
        "Waiting for a first answer at {} ({tz}): {}",
        local(report.now),
        report.open.len()
    )?;
    if !report.open.is_empty() {
        writeln!(
            out,
            "{:<10} {:<10} {:<8} {:>6}  {:<26} {:<24} CUSTOMER",
            "TICKET", "CATEGORY", "STATUS", "USED", "DUE", "ASSIGNEE"
        )?;
    }
    for t in &report.open {
        let due = match (t.due, t.overdue) {
            (Some(d), true) => format!("{} LATE", local(d)),
            (Some(d), false) => local(d),
            (None, _) => "paused".to_string(),
        };
        writeln!(
            out,
            "{:<10} {:<10} {:<8} {:>5.0}%  {:<26} {:<24} {}",
            t.ticket,
            t.category,
            t.status,
            t.used_percent,
            due,
            t.assignee.as_deref().unwrap_or("-"),
            t.customer
        )?;
    }
    writeln!(
        out,
        "\nFirst responses of tickets opened since {}, per category (business hours):",
        local(report.since)
    )?;
    writeln!(
        out,
        "{:<12} {:>7} {:>5} {:>8} {:>7} {:>7} {:>8} {:>8}",
        "CATEGORY", "TICKETS", "MET", "BREACHED", "WAITING", "CLOSED", "MEDIAN", "P90"
    )?;
    let h = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} h"));
    for c in &report.categories {
        writeln!(
            out,
            "{:<12} {:>7} {:>5} {:>8} {:>7} {:>7} {:>8} {:>8}",
            c.category,
            c.tickets,
            c.met,
            c.breached,
            c.waiting,
            c.closed_unanswered,
            h(c.median_hours),
            h(c.p90_hours)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `room` bytes, then fails every write and flush with `error`.
    struct Pipe {
        taken: Vec<u8>,
        room: usize,
        error: io::ErrorKind,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.taken.len() >= self.room {
                return Err(self.error.into());
            }
            let n = buf.len().min(self.room - self.taken.len());
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            if self.taken.len() >= self.room {
                return Err(self.error.into());
            }
            Ok(())
        }
    }

    #[test]
    fn a_reader_that_leaves_ends_the_output_quietly() {
        let mut out = Out::new(Pipe {
            taken: Vec::new(),
            room: 8,
            error: io::ErrorKind::BrokenPipe,
        });
        for i in 0..100 {
            writeln!(out, "line {i}").unwrap();
        }
        out.flush().unwrap();
        assert!(out.reader_gone);
        assert_eq!(out.inner.taken, b"line 0\nl");
    }

    #[test]
    fn other_write_errors_are_still_errors() {
        let mut out = Out::new(Pipe {
            taken: Vec::new(),
            room: 0,
            error: io::ErrorKind::StorageFull,
        });
        let err = writeln!(out, "line").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(!out.reader_gone);
    }
}
