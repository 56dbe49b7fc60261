//! IMAP intake: finds new mail by UID, commits it to SQLite, and only then marks it on the server.
//!
//! Entry points: [`Intake::run`] (the daemon's task), [`Intake::poll_once`] (tests, benchmarks),
//! [`connect`] and [`append`] (the SMTP sender's copy to "Sent").
//!
//! # Layout
//! Split by protocol state, as the IMAP state machine of RFC 3501 §3 goes:
//! - `session`: up to the authenticated state: TCP and TLS (through [`crate::net`]), greeting,
//!   STARTTLS, LOGIN or XOAUTH2, CAPABILITY; APPEND; [`ImapError`] and the command time limits.
//! - `selected`: the selected state: UIDVALIDITY against the watermark, catch-up, fetch, commit,
//!   and marking after the commit.
//! - `intake`: the loop around them: IDLE or polling, reconnect backoff, readiness.
//! - `uid`: UID sets and batch cutting, pure.
//!
//! # Why it is built this way
//! - New mail is what lies above a `(UIDVALIDITY, UID)` watermark kept in SQLite, never what
//!   lacks `\Seen`: a person reading the mailbox in a mail client must not make tickets vanish.
//! - The watermark is written inside the same transaction as the messages
//!   ([`Pipeline::ingest_batch`](crate::pipeline::Pipeline::ingest_batch)'s `before_commit`),
//!   and the server is changed (keyword `$Ticketed` or a move) only after that commit. A crash
//!   in between leaves committed but unmarked mail, which the catch-up on every connect marks;
//!   nothing is ever marked that is not stored.
//! - A UIDVALIDITY change rescans the mailbox from UID 1; the pipeline dedupes by Message-ID and
//!   by the raw bytes' sha256, so nothing is stored twice.
//! - Bodies are fetched with `BODY.PEEK[]` so the intake never sets `\Seen` itself.
//! - An authentication failure is logged as an error on every attempt and recorded for
//!   `supportd status`: expired OAuth tokens must not go unnoticed for days.

mod intake;
mod selected;
mod session;
mod uid;

pub use intake::Intake;
pub(crate) use intake::Readiness;
pub use session::{ImapError, Session, append, connect};
