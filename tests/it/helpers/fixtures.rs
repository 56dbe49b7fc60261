//! `fixtures/mail`: 45 raw messages, what each must become (`expected.toml`), and the two
//! placeholders that stand for what supportd decides at test time (see `fixtures/README.md`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{crate_dir, replace_bytes};

/// One table of `expected.toml`.
#[derive(Debug, Deserialize)]
pub struct Expected {
    /// `new`, `reply` or `automated`.
    pub kind: String,
    pub category: Option<String>,
    pub automated: Option<bool>,
    pub new_text_contains: Option<String>,
    pub new_text_excludes: Option<String>,
    /// The new request whose ticket a reply (or the hijack) continues.
    pub reply_to: Option<String>,
    /// The new request whose acknowledgement automated mail is about.
    pub refers_to: Option<String>,
    pub hijack: Option<bool>,
    pub language: Option<String>,
}

impl Expected {
    /// Must never be acknowledged.
    pub fn is_automated(&self) -> bool {
        self.kind == "automated" || self.automated == Some(true)
    }

    /// The fixture that must be ingested first: its ticket and acknowledgement fill in the
    /// placeholders.
    pub fn parent(&self) -> Option<&str> {
        self.reply_to.as_deref().or(self.refers_to.as_deref())
    }
}

/// `fixtures/mail`.
pub fn dir() -> PathBuf {
    crate_dir().join("fixtures/mail")
}

/// `expected.toml`, by file name.
pub fn expected() -> BTreeMap<String, Expected> {
    let path = dir().join("expected.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    toml::from_str(&text).expect("expected.toml parses")
}

/// The raw bytes of fixture `name`.
pub fn raw(name: &str) -> Vec<u8> {
    let path = dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Fills in `@ACK_ID@` (`ack_id` is the acknowledgement's Message-ID with its brackets) and
/// `@REF@` (the number of `ticket`, `CHT-12` → `12`), on the raw bytes.
pub fn substitute(raw: &[u8], ack_id: &str, ticket: &str) -> Vec<u8> {
    let raw = replace_bytes(raw, b"<@ACK_ID@>", ack_id.as_bytes());
    let raw = replace_bytes(
        &raw,
        b"@ACK_ID@",
        ack_id.trim_matches(['<', '>']).as_bytes(),
    );
    let number = ticket.trim_start_matches("CHT-");
    replace_bytes(&raw, b"@REF@", number.as_bytes())
}
