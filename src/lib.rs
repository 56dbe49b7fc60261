//! supportd: an e-mail-first inbound ticketing daemon.
//!
//! # Layout
//! The modules follow the path a message takes:
//! - [`mailbox`]: where raw messages come from (IMAP with IDLE, files, Maildir, stdin).
//! - [`parse`]: raw bytes to a normalised message; never fails.
//! - [`guard`]: is this mail automated (bounce, auto-reply, list, loop), and may we answer it.
//! - [`thread`]: which ticket a message belongs to, and whether its sender may join it.
//! - [`classify`]: admin-edited regex rules pick the category and the known-problem tips.
//! - [`store`]: SQLite, the only module that writes SQL.
//! - [`reply`]: acknowledgement and team notification, rendered from templates.
//! - [`outbox`]: SMTP delivery of queued mail with retries.
//! - [`pipeline`]: one batch of raw messages in, one committed transaction out.
//! - [`daemon`]: intake and sender as tasks, signals, reload, systemd notify.
//! - [`http`]: the HTTP intake (the dashboard's API, the form page) into the same pipeline,
//!   `/healthz` and `/metrics`.
//!
//! [`config`] is the typed configuration; [`cli`] has one function per subcommand; [`net`] and
//! [`tls`] open the connections to the mail servers that [`mailbox`] and [`outbox`] talk to.

pub mod classify;
pub mod cli;
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
pub mod store;
pub mod thread;
pub mod tls;
