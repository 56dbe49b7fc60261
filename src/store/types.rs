//! The values the schema constrains, as enums: a renamed status is a compile error rather than
//! a query that silently matches nothing.
//!
//! Each enum is stored as the same lower-case `snake_case` text it always was (the `CHECK`
//! constraints in `schema.sql` list them), and serialises to that text too, so the CLI's
//! `--json` output does not change. Each has [`as_str`](OutboxStatus::as_str), `Display`,
//! `FromStr` and rusqlite's `ToSql`/`FromSql`; `ALL` lists the variants, for tests.

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// Text that names no variant of the enum it was parsed as: a row written by a newer version,
/// or a typo on the command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    /// The enum's role, e.g. "outbox status".
    pub what: &'static str,
    pub value: String,
}

/// Declares a fieldless enum stored as text, with its conversions. One table of
/// variant => text, so the text is written once.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored in the database and printed by the CLI.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, not `write_str`: width and alignment apply as they did to the string.
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(UnknownValue {
                        what: $what,
                        value: s.to_string(),
                    }),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.as_str().as_bytes())))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e: UnknownValue| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

text_enum! {
    /// What an outbox row is (`outbox.kind`).
    OutboxKind ("outbox kind") {
        /// The acknowledgement to the customer; sent with a null reverse-path (RFC 3834 §3.3).
        Ack => "ack",
        /// The notice to the team address (or the ticket's assignee).
        Notification => "notification",
        /// An agent's answer, sent to the customer from the support address.
        Relay => "relay",
        /// A short answer to an agent: a command it could not run, or mail that named no ticket.
        AgentNotice => "agent_notice",
        /// A response clock at risk or breached, to the team and the ticket's assignee.
        Escalation => "escalation",
    }
}

text_enum! {
    /// Where an outbox row is in its life (`outbox.status`): `Queued` → `Sending` → `Sent`, or
    /// back to `Queued` for a retry, or `Failed`. `Suppressed` rows were never meant to go out;
    /// they keep what we chose not to send, with the reason in `last_error`.
    OutboxStatus ("outbox status") {
        Queued => "queued",
        /// Handed to SMTP; found in this state after a crash, the row is sent again.
        Sending => "sending",
        Sent => "sent",
        /// Refused permanently, or too old to retry.
        Failed => "failed",
        Suppressed => "suppressed",
    }
}

text_enum! {
    /// Which way a message went (`messages.direction`). Stored messages are inbound; `Out`
    /// appears where what we sent (the outbox) is listed beside them.
    Direction ("message direction") {
        In => "in",
        Out => "out",
    }
}

text_enum! {
    /// Why an address takes part in a ticket (`participants.role`).
    ParticipantRole ("participant role") {
        /// Who opened the ticket.
        Customer => "customer",
        /// Someone the customer wrote to as well.
        Cc => "cc",
        /// One of the team.
        Agent => "agent",
    }
}

text_enum! {
    /// Whether a ticket is being worked on (`tickets.status`). A customer's reply sets a
    /// pending ticket open, and reopens a closed one (within `support.reopen_days`).
    TicketStatus ("ticket status") {
        Open => "open",
        /// Waiting on the customer: the response clock pauses.
        Pending => "pending",
        Closed => "closed",
    }
}

text_enum! {
    /// What the pipeline did with a stored message (`messages.action`; not constrained by the
    /// schema, whose comment also names values older versions wrote).
    MessageAction ("message action") {
        /// Opened a ticket.
        New => "new",
        /// Added to an existing ticket.
        Reply => "reply",
        /// Machine-generated mail, stored and never answered.
        Automated => "automated",
        /// Failed in the pipeline: raw bytes kept with the error.
        Quarantined => "quarantined",
        /// An agent's answer, relayed to the customer (the inbound copy of the agent's mail).
        AgentReply => "agent_reply",
        /// An agent's internal note: stored and shown to the team, never sent to the customer.
        Note => "note",
        /// Agent mail that only ran commands, or that named no ticket or a bad command: nothing
        /// was relayed.
        AgentCommand => "agent_command",
        /// What we sent the customer on an agent's behalf (`direction = 'out'`).
        Relayed => "relayed",
    }
}

text_enum! {
    /// What an `events` row records (`events.kind`): the pipeline's decisions an operator may
    /// want to audit.
    EventKind ("event kind") {
        /// A message already stored came again; nothing changed.
        Duplicate => "duplicate",
        /// A different message came with the Message-ID of one already stored; it was stored
        /// and handled as any other.
        ReusedMessageId => "reused_message_id",
        /// A reply reopened a closed ticket.
        Reopened => "reopened",
        /// Automated mail (an out-of-office, a delay notice, a read receipt, a bounce) was
        /// stored on a closed ticket and left it closed.
        KeptClosed => "kept_closed",
        /// A delivery failure report for mail we sent; the address is marked bouncing.
        Bounce => "bounce",
        /// Mail from a bouncing address came in as a person's: the mark (and the flag of a
        /// ticket it was on) is cleared.
        BounceCleared => "bounce_cleared",
        /// An acknowledgement was held back (rate limit, bouncing address, no sender ...).
        AckSuppressed => "ack_suppressed",
        /// The acknowledgement could not be rendered.
        AckFailed => "ack_failed",
        /// The team notification could not be rendered.
        NotificationFailed => "notification_failed",
        /// A message cited an id shaped like ours that we did not sign.
        ForgedReference => "forged_reference",
        /// A message pointed at a ticket its sender may not join.
        LinkRefused => "link_refused",
        /// A message failed in the pipeline and was stored raw.
        Quarantined => "quarantined",
        /// A quarantined message was taken out to run through the pipeline again.
        Requeued => "requeued",
        /// A ticket's status changed (`open -> pending` in the detail); the address is who did it.
        StatusChanged => "status_changed",
        /// A ticket was assigned to an agent (the detail), by the address.
        Assigned => "assigned",
        /// A ticket's category was changed by an agent (`billing -> technical`).
        Recategorised => "recategorised",
        /// An agent's answer was relayed to the customer.
        Relayed => "relayed",
        /// An agent's mail relayed nothing (unknown command, bad argument, no ticket); the detail
        /// says why.
        AgentRefused => "agent_refused",
        /// A customer answered a ticket closed longer than `support.reopen_days` ago; a new
        /// ticket names the old one.
        Continued => "continued",
        /// A request's From gave no usable address: Reply-To or Sender stood for the customer,
        /// or nobody could (the detail says which).
        UnusableFrom => "unusable_from",
        /// A response clock used its `[sla] at_risk` share: the team was warned (the detail
        /// names the clock and the recipients, or why nothing was sent).
        SlaAtRisk => "sla_at_risk",
        /// A response clock ran out before the answer: the team was told.
        SlaBreached => "sla_breached",
    }
}

text_enum! {
    /// Which promise a response clock keeps (`sla_clocks.clock`).
    SlaClock ("response clock") {
        /// From the request's arrival to the first answer relayed to the customer.
        FirstResponse => "first_response",
    }
}

text_enum! {
    /// How a ticket's request was matched to a customer account (`ticket_accounts.matched_by`).
    AccountMatch ("account match") {
        /// The sender's address is an account's e-mail.
        Sender => "sender",
        /// The message names an account's e-mail.
        EmailInMessage => "email_in_message",
        /// The message names an account's project URL.
        ProjectUrl => "project_url",
    }
}

text_enum! {
    /// Which door of the HTTP intake a request came through (`http_requests.door`).
    HttpDoor ("http door") {
        /// `POST /api/v1/requests`, the dashboard's backend.
        Api => "api",
        /// `POST /support`, the form page.
        Form => "form",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use rusqlite::params;

    fn fresh() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.sqlite3")).unwrap();
        (dir, store)
    }

    /// Inserts one row per value through `sql` (which takes the value as ?1); returns true if
    /// and only if every insert passed the schema's CHECK constraint.
    fn all_accepted<T: ToSql>(store: &Store, sql: &str, values: &[T]) -> bool {
        values
            .iter()
            .all(|v| store.conn().execute(sql, params![v]).is_ok())
    }

    fn ticket(store: &Store) {
        store
            .conn()
            .execute(
                "INSERT INTO tickets (id, ref, customer, subject, category, created_at, updated_at, language)
                 VALUES (1, 'T-1', 'a@b.fr', 's', 'c', 0, 0, 'en')",
                [],
            )
            .unwrap();
    }

    #[test]
    fn every_outbox_kind_and_status_passes_the_schema_checks() {
        let (_d, store) = fresh();
        let insert = |id: &str, kind: &dyn ToSql, status: &dyn ToSql| {
            store.conn().execute(
                "INSERT INTO outbox (kind, to_addr, subject, message_id, raw, status, created_at, next_attempt_at)
                 VALUES (?1, 'a@b.fr', 's', ?3, x'', ?2, 0, 0)",
                params![kind, status, id],
            )
        };
        for &kind in OutboxKind::ALL {
            for &status in OutboxStatus::ALL {
                insert(&format!("{kind}.{status}"), &kind, &status).unwrap();
            }
        }
        // The checks are live: a value outside the enums is refused.
        assert!(insert("x", &OutboxKind::Ack, &"mislaid").is_err());
        assert!(insert("y", &"reminder", &OutboxStatus::Queued).is_err());
    }

    #[test]
    fn every_direction_passes_the_schema_check() {
        let (_d, store) = fresh();
        let sql = "INSERT INTO messages (direction, message_id, raw_sha256, received_at, action, size, raw)
                   VALUES (?1, 'm', 'h', 0, 'new', 0, x'')";
        assert!(all_accepted(&store, sql, Direction::ALL));
        assert!(!all_accepted(&store, sql, &["sideways"]));
    }

    #[test]
    fn every_participant_role_passes_the_schema_check() {
        let (_d, store) = fresh();
        ticket(&store);
        let sql =
            "INSERT INTO participants (ticket_id, address, role) VALUES (1, ?1 || '@b.fr', ?1)";
        assert!(all_accepted(&store, sql, ParticipantRole::ALL));
        assert!(!all_accepted(&store, sql, &["bystander"]));
    }

    #[test]
    fn every_ticket_status_passes_the_schema_check() {
        let (_d, store) = fresh();
        ticket(&store);
        let sql = "UPDATE tickets SET status = ?1 WHERE id = 1";
        assert!(all_accepted(&store, sql, TicketStatus::ALL));
        assert!(!all_accepted(&store, sql, &["archived"]));
    }

    #[test]
    fn every_clock_and_account_match_passes_the_schema_checks() {
        let (_d, store) = fresh();
        ticket(&store);
        let sql = "INSERT OR REPLACE INTO sla_clocks (ticket_id, clock, started_at, budget, business, due_at)
                   VALUES (1, ?1, 0, 0, 0, 0)";
        assert!(all_accepted(&store, sql, SlaClock::ALL));
        assert!(!all_accepted(&store, sql, &["resolution"]));
        let sql = "INSERT OR REPLACE INTO ticket_accounts (ticket_id, email, matched_by)
                   VALUES (1, 'a@b.fr', ?1)";
        assert!(all_accepted(&store, sql, AccountMatch::ALL));
        assert!(!all_accepted(&store, sql, &["guess"]));
    }

    #[test]
    fn unconstrained_kinds_are_stored_and_read_back_as_themselves() {
        let (_d, store) = fresh();
        for &kind in EventKind::ALL {
            store
                .conn()
                .execute(
                    "INSERT INTO events (at, kind) VALUES (0, ?1)",
                    params![kind],
                )
                .unwrap();
        }
        let mut stmt = store
            .conn()
            .prepare("SELECT kind FROM events ORDER BY id")
            .unwrap();
        let read: Vec<EventKind> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(read, EventKind::ALL);
        for &action in MessageAction::ALL {
            let back: MessageAction = store
                .conn()
                .query_row("SELECT ?1", params![action], |r| r.get(0))
                .unwrap();
            assert_eq!(back, action);
        }
    }

    #[test]
    fn text_round_trips_and_unknown_text_is_an_error() {
        for &s in OutboxStatus::ALL {
            assert_eq!(s.as_str().parse::<OutboxStatus>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(EventKind::AckSuppressed.as_str(), "ack_suppressed");
        assert_eq!(format!("[{:<6}]", TicketStatus::Open), "[open  ]");
        let err = "Queued".parse::<OutboxStatus>().unwrap_err();
        assert_eq!(err.to_string(), "unknown outbox status \"Queued\"");
        let read: rusqlite::Result<OutboxKind> =
            fresh()
                .1
                .conn()
                .query_row("SELECT 'memo'", [], |r| r.get(0));
        assert!(read.is_err());
    }
}
