//! supportd: an e-mail-first inbound ticketing daemon.
//!
//! # Layout
//! The modules follow the path a message takes:
//! - [`mailbox`]: where raw messages come from (IMAP with IDLE, files, Maildir, stdin).
//! - [`parse`]: raw bytes to a normalised message; never fails.
//! - [`guard`]: is this mail automated (bounce, auto-reply, list, loop), and may we answer it.
//! - [`agent`]: is it an agent's mail (listed and authenticated), and the commands at its top.
//! - [`thread`]: which ticket a message belongs to, and whether its sender may join it.
//! - [`classify`]: admin-edited regex rules pick the category and the known-problem tips.
//! - [`store`]: SQLite, the only module that writes SQL.
//! - [`reply`]: acknowledgement, team notification and relayed answers, rendered.
//! - [`outbox`]: SMTP delivery of queued mail with retries.
//! - [`pipeline`]: one batch of raw messages in, one committed transaction out.
//! - [`daemon`]: intake and sender as tasks, signals, reload, systemd notify.
//! - [`sla`]: response times on a business calendar, escalations and the report.
//! - [`http`]: the HTTP intake (the dashboard's API, the form page) into the same pipeline,
//!   `/healthz` and `/metrics`.
//!
//! [`accounts`] imports customer accounts and finds the one a request comes from; [`clock`]
//! is "now" for the whole process (the system clock, or `SUPPORTD_NOW`); [`config`] is the
//! typed configuration; [`cli`] has one function per subcommand; [`net`] and [`tls`] open the
//! connections to the mail servers that [`mailbox`] and [`outbox`] talk to.

pub mod accounts;
pub mod agent;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod guard;
pub mod http;
pub mod mailbox;
pub mod net;
pub mod outbox;
pub mod parse;
pub mod pipeline;
pub mod reply;
pub mod sla;
pub mod store;
pub mod thread;
pub mod tls;
