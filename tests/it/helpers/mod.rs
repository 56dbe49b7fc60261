//! The one harness of the integration tests.
//!
//! - [`config::TestConfig`] writes the configuration every test runs with;
//! - [`app::App`] runs the real `supportd` binary on it and parses its `--json` answers;
//! - [`mailstack::Stack`] is the local Dovecot + Postfix of `scripts/mailstack` (the only reader
//!   of its settings), with the customer's side of it: SMTP sending, IMAP reading;
//! - [`fixtures`] reads `fixtures/mail` and fills in its placeholders;
//! - [`db`] is the only place a test reaches into the SQLite file, each time for something no
//!   command shows.
//!
//! Logs are off unless `TEST_LOG` is set (see [`log_filter`]).

pub mod app;
pub mod config;
pub mod db;
pub mod fixtures;
pub mod mailstack;

use std::path::PathBuf;
use std::sync::Once;

/// The crate's folder: `rules/`, `templates/`, `fixtures/` and `scripts/` are under it.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tracing filter asked for with `TEST_LOG`, or `None` (logs off) when it is unset.
/// `TEST_LOG=1` (or `true`, or empty) means `info`; anything else is an `EnvFilter` directive
/// such as `debug` or `supportd::pipeline=trace`.
pub fn log_filter() -> Option<String> {
    let value = std::env::var("TEST_LOG").ok()?;
    Some(match value.trim() {
        "" | "1" | "true" => "info".to_string(),
        other => other.to_string(),
    })
}

/// Sends the library's logs to the test's output when `TEST_LOG` is set, for tests that run
/// the pipeline in this process; idempotent.
pub fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Some(filter) = log_filter() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// Byte-level replace: fixtures hold 8-bit text in legacy charsets that must stay untouched.
pub fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// Folds runs of white space, so that an expected phrase matches across a line wrap.
pub fn fold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
