//! Raw RFC 5322 bytes to a normalised [`ParsedMessage`].
//!
//! Entry point: [`parse`]. It never fails: whatever the input, the caller gets a message with
//! every field it could recover and a list of `warnings` for what it could not. The raw bytes are
//! stored by the caller regardless, so nothing here can lose a message.

use std::borrow::Cow;

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

/// One address of a From/To/Cc header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mailbox {
    pub name: Option<String>,
    /// Lower-cased `local@domain`.
    pub address: String,
}

/// What an attachment is, without its content (the raw message keeps that).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttachmentMeta {
    pub filename: Option<String>,
    pub content_type: String,
    pub size: usize,
}

/// A message as the rest of the pipeline sees it.
#[derive(Debug, Clone, Default)]
pub struct ParsedMessage {
    /// Hex sha256 of the raw bytes as received (before any normalisation).
    pub raw_sha256: String,
    pub size: usize,
    /// Message-ID without angle brackets; synthesised from `raw_sha256` when missing.
    pub message_id: String,
    pub message_id_synthesized: bool,
    /// In-Reply-To ids, without brackets.
    pub in_reply_to: Vec<String>,
    /// References ids, without brackets, in header order (oldest first).
    pub references: Vec<String>,
    pub from: Option<Mailbox>,
    /// Kept for display only: Reply-To never replaces From for identity.
    pub reply_to: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Decoded subject with CR, LF and other control characters removed.
    pub subject: String,
    /// Date header as unix seconds.
    pub date: Option<i64>,
    /// The whole text body (HTML-only mail converted to text).
    pub text: String,
    /// What the sender wrote this time: quoted history and signature removed.
    pub new_text: String,
    pub attachments: Vec<AttachmentMeta>,
    /// Every header as (lower-case name, decoded unfolded value), in order.
    pub headers: Vec<(String, String)>,
    /// Top-level MIME type, lower-case, e.g. "multipart/report".
    pub content_type: String,
    /// `report-type` parameter of a multipart/report, lower-case.
    pub report_type: Option<String>,
    /// Return-Path address; `Some("")` for the null path `<>`.
    pub return_path: Option<String>,
    /// "fr" or "en" when the new text says so clearly.
    pub language: Option<String>,
    /// For delivery reports: Message-IDs of the original message quoted inside the report.
    pub bounced_message_ids: Vec<String>,
    /// For delivery reports: recipients the report says failed, lower-cased.
    pub failed_recipients: Vec<String>,
    /// What could not be recovered, in words, for the operator.
    pub warnings: Vec<String>,
}

impl ParsedMessage {
    /// The first value of header `name` (lower-case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (lower-case).
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The From address, lower-cased, or "" when there is none.
    pub fn from_address(&self) -> &str {
        self.from.as_ref().map(|m| m.address.as_str()).unwrap_or("")
    }
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Turns bare CR line endings into CRLF; mail-parser finds no headers in bare-CR mail.
pub fn normalize_line_endings(raw: &[u8]) -> Cow<'_, [u8]> {
    let has_bare_cr = raw
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && raw.get(i + 1) != Some(&b'\n'));
    if !has_bare_cr {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for (i, &b) in raw.iter().enumerate() {
        out.push(b);
        if b == b'\r' && raw.get(i + 1) != Some(&b'\n') {
            out.push(b'\n');
        }
    }
    Cow::Owned(out)
}

/// Parses `raw`; never fails (see the module doc).
pub fn parse(raw: &[u8]) -> ParsedMessage {
    let mut out = ParsedMessage {
        raw_sha256: sha256_hex(raw),
        size: raw.len(),
        ..Default::default()
    };
    let bytes = normalize_line_endings(raw);
    let Some(msg) = MessageParser::default().parse(bytes.as_ref()) else {
        out.warnings.push("not parseable as a MIME message".into());
        out.message_id = synthesized_id(&out.raw_sha256);
        out.message_id_synthesized = true;
        out.text = String::from_utf8_lossy(raw).into_owned();
        out.new_text = out.text.clone();
        return out;
    };

    match msg.message_id().map(str::trim).filter(|s| !s.is_empty()) {
        Some(id) => out.message_id = id.to_string(),
        None => {
            out.warnings.push("no Message-ID; synthesised one".into());
            out.message_id = synthesized_id(&out.raw_sha256);
            out.message_id_synthesized = true;
        }
    }
    out.in_reply_to = id_list(msg.in_reply_to());
    out.references = id_list(msg.references());
    out.from = first_mailbox(msg.from());
    if out.from.is_none() {
        out.warnings.push("no usable From address".into());
    }
    out.reply_to = first_mailbox(msg.reply_to());
    out.to = all_mailboxes(msg.to());
    out.cc = all_mailboxes(msg.cc());
    out.subject = clean_header_text(msg.subject().unwrap_or(""));
    out.date = msg.date().map(|d| d.to_timestamp());
    out.headers = msg
        .headers()
        .iter()
        .map(|h| {
            let name = h.name().to_ascii_lowercase();
            let value = msg
                .header_raw(h.name())
                .map(|_| header_text(h.value(), &msg, h))
                .unwrap_or_default();
            (name, value)
        })
        .collect();
    if let Some(ct) = msg.root_part().content_type() {
        out.content_type = match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        };
        out.report_type = ct.attribute("report-type").map(str::to_ascii_lowercase);
    } else {
        out.content_type = "text/plain".into();
    }
    out.return_path = match msg.return_path() {
        HeaderValue::Text(t) => Some(t.trim().trim_matches(['<', '>']).to_ascii_lowercase()),
        HeaderValue::TextList(l) => l
            .first()
            .map(|t| t.trim().trim_matches(['<', '>']).to_ascii_lowercase()),
        _ => out
            .headers
            .iter()
            .find(|(n, _)| n == "return-path")
            .map(|(_, v)| v.trim().trim_matches(['<', '>']).trim().to_ascii_lowercase()),
    };
    out.text = msg
        .body_text(0)
        .map(|t| t.into_owned())
        .unwrap_or_default();
    out.new_text = out.text.trim().to_string();
    out.attachments = msg
        .attachments()
        .map(|a| AttachmentMeta {
            filename: a.attachment_name().map(str::to_string),
            content_type: a
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
                    None => ct.ctype().to_ascii_lowercase(),
                })
                .unwrap_or_else(|| "application/octet-stream".into()),
            size: a.len(),
        })
        .collect();
    out
}

fn synthesized_id(sha: &str) -> String {
    format!("{}@sha256.supportd.invalid", &sha[..32])
}

fn header_text(value: &HeaderValue<'_>, _msg: &mail_parser::Message<'_>, h: &mail_parser::Header<'_>) -> String {
    match value {
        HeaderValue::Text(t) => clean_header_text(t),
        HeaderValue::TextList(l) => clean_header_text(&l.join(", ")),
        HeaderValue::Address(a) => clean_header_text(&address_text(a)),
        HeaderValue::DateTime(d) => d.to_rfc3339(),
        HeaderValue::ContentType(ct) => {
            let mut s = match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            };
            for attr in ct.attributes().unwrap_or(&[]) {
                s.push_str(&format!("; {}={}", attr.name, attr.value));
            }
            s
        }
        _ => {
            let _ = h;
            String::new()
        }
    }
}

fn address_text(a: &Address<'_>) -> String {
    a.iter()
        .map(|addr| match (&addr.name, &addr.address) {
            (Some(n), Some(e)) => format!("{n} <{e}>"),
            (None, Some(e)) => e.to_string(),
            (Some(n), None) => n.to_string(),
            (None, None) => String::new(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Removes CR, LF and other control characters and folds runs of white space.
pub fn clean_header_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last_space = true;
    for c in s.chars() {
        if c.is_control() || c.is_whitespace() {
            if !last_space {
                out.push(' ');
                last_space = true;
            }
        } else {
            out.push(c);
            last_space = false;
        }
    }
    out.trim_end().to_string()
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    value
        .as_text_list()
        .map(|l| l.iter().map(|s| s.trim().to_string()).collect())
        .or_else(|| value.as_text().map(|t| vec![t.trim().to_string()]))
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.trim_matches(['<', '>']).to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn to_mailbox(addr: &mail_parser::Addr<'_>) -> Option<Mailbox> {
    let address = addr.address.as_ref()?.trim().to_ascii_lowercase();
    if !address.contains('@') {
        return None;
    }
    Some(Mailbox {
        name: addr
            .name
            .as_ref()
            .map(|n| clean_header_text(n))
            .filter(|n| !n.is_empty()),
        address,
    })
}

fn first_mailbox(a: Option<&Address<'_>>) -> Option<Mailbox> {
    a?.iter().find_map(to_mailbox)
}

fn all_mailboxes(a: Option<&Address<'_>>) -> Vec<Mailbox> {
    a.map(|a| a.iter().filter_map(to_mailbox).collect())
        .unwrap_or_default()
}
