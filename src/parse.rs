//! Raw RFC 5322 bytes to a normalised [`ParsedMessage`].
//!
//! Entry point: [`parse`]. It never fails: whatever the input, the caller gets a message with
//! every field it could recover and a list of `warnings` for what it could not. The raw bytes are
//! stored by the caller regardless, so nothing here can lose a message.
//!
//! Submodules: [`quote`] finds what the sender wrote this time, [`lang`] guesses fr/en,
//! [`report`] reads delivery reports. Privately: `headers` reads every header whole from the
//! raw bytes where mail-parser 0.11 gets it wrong (`encoded` for RFC 2047 runs and raw 8-bit,
//! `params` for RFC 2231 file names, `fields` for fields it loses), `address` says which
//! addresses are usable, `body` finds the text.

use std::borrow::Cow;

use mail_parser::{
    Address, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders,
};
use sha2::{Digest, Sha256};

mod address;
pub mod attachments;
mod body;
mod encoded;
mod fields;
mod headers;
pub mod lang;
mod params;
pub mod quote;
pub mod report;
#[cfg(test)]
mod tests;

pub use address::UnusableFrom;
pub use body::html_to_text;

/// One address of a From/To/Cc header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mailbox {
    /// Display name, decoded (RFC 2047 runs decoded whole, raw 8-bit read by charset).
    pub name: Option<String>,
    /// Lower-cased `local@domain`; never with an empty local part or domain.
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
    /// The first usable From mailbox (`local@domain`, both parts present); None when From is
    /// missing or gives no usable address, and then `from_unusable` says why.
    pub from: Option<Mailbox>,
    /// Why `from` is None; None when it is set.
    pub from_unusable: Option<UnusableFrom>,
    /// The first usable Reply-To mailbox. Never replaces a usable From for identity; when From
    /// is unusable, the pipeline may let it stand for the customer.
    pub reply_to: Option<Mailbox>,
    /// The first usable Sender mailbox (RFC 5322 §3.6.2: who sent it on From's behalf); the
    /// next fallback after Reply-To when From is unusable.
    pub sender: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Decoded subject with CR, LF and other control characters removed.
    pub subject: String,
    /// Date header as unix seconds.
    pub date: Option<i64>,
    /// The whole text body (HTML-only mail converted to text; several inline text parts joined
    /// by a blank line).
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
    /// For delivery reports: the `Action` of each recipient in a message/delivery-status part,
    /// lower-case ("failed", "delayed", "delivered", "relayed", "expanded"). A report whose
    /// recipients were only delayed or delivered is not a bounce.
    pub delivery_actions: Vec<String>,
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

    /// To and Cc addresses, lower-cased.
    pub fn recipients(&self) -> Vec<String> {
        self.to
            .iter()
            .chain(self.cc.iter())
            .map(|m| m.address.clone())
            .collect()
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

/// Built once. Received headers are kept raw: nothing here reads their structure, and
/// mail-parser's Received parser costs more than the rest of a typical message together.
/// Any custom entry switches mail-parser's built-in table off, so the table is restated here
/// (as of mail-parser 0.11) with only Received changed.
static PARSER: std::sync::LazyLock<MessageParser> = std::sync::LazyLock::new(|| {
    use HeaderName as H;
    let mut p = MessageParser::new();
    for h in [
        H::Subject,
        H::Comments,
        H::ContentDescription,
        H::ContentLocation,
        H::ContentTransferEncoding,
    ] {
        p = p.header_text(h);
    }
    for h in [
        H::From,
        H::To,
        H::Cc,
        H::Bcc,
        H::ReplyTo,
        H::Sender,
        H::ResentTo,
        H::ResentFrom,
        H::ResentBcc,
        H::ResentCc,
        H::ResentSender,
        H::ListArchive,
        H::ListHelp,
        H::ListId,
        H::ListOwner,
        H::ListPost,
        H::ListSubscribe,
        H::ListUnsubscribe,
    ] {
        p = p.header_address(h);
    }
    for h in [H::Date, H::ResentDate] {
        p = p.header_date(h);
    }
    for h in [
        H::MessageId,
        H::References,
        H::InReplyTo,
        H::ReturnPath,
        H::ContentId,
        H::ResentMessageId,
    ] {
        p = p.header_id(h);
    }
    for h in [H::Keywords, H::ContentLanguage] {
        p = p.header_comma_separated(h);
    }
    for h in [H::ContentType, H::ContentDisposition] {
        p = p.header_content_type(h);
    }
    p.header_raw(H::MimeVersion).header_raw(H::Received)
});

/// Parses `raw`; never fails (see the module doc).
pub fn parse(raw: &[u8]) -> ParsedMessage {
    let mut out = ParsedMessage {
        raw_sha256: sha256_hex(raw),
        size: raw.len(),
        ..Default::default()
    };
    let mut bytes = normalize_line_endings(raw);
    if let Some(padded) = fields::pad_date_zones(&bytes) {
        bytes = Cow::Owned(padded);
    }
    let Some(msg) = PARSER.parse(bytes.as_ref()) else {
        out.warnings.push("not parseable as a MIME message".into());
        out.message_id = synthesized_id(&out.raw_sha256);
        out.message_id_synthesized = true;
        out.text = String::from_utf8_lossy(raw).into_owned();
        out.new_text = out.text.trim().to_string();
        return out;
    };
    let hint = charset_hint(&msg);
    let hint = hint.as_deref();
    let fields = headers::read(&msg, bytes.as_ref(), hint, &mut out.warnings);
    let value = |name: &str| {
        headers::find(&fields, name)
            .map(|f| &f.value)
            .unwrap_or(&HeaderValue::Empty)
    };

    match value("message-id")
        .as_text()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(id) => out.message_id = id.trim_matches(['<', '>']).to_string(),
        None => {
            out.warnings.push("no Message-ID; synthesised one".into());
            out.message_id = synthesized_id(&out.raw_sha256);
            out.message_id_synthesized = true;
        }
    }
    out.in_reply_to = id_list(value("in-reply-to"));
    out.references = id_list(value("references"));
    match headers::from_mailbox(&fields, hint, &mut out.warnings) {
        Ok(m) => out.from = Some(m),
        Err(why) => {
            out.warnings.push(format!("no usable From address: {why}"));
            out.from_unusable = Some(why);
        }
    }
    out.reply_to = headers::mailbox(&fields, "reply-to");
    out.sender = headers::mailbox(&fields, "sender");
    out.to = headers::mailboxes(&fields, "to");
    out.cc = headers::mailboxes(&fields, "cc");
    out.date = match value("date") {
        HeaderValue::DateTime(d) => Some(d.to_timestamp()),
        _ => None,
    };
    out.headers = fields
        .iter()
        .map(|f| {
            let value = header_text(f, hint, &mut out.warnings);
            (f.name.clone(), value)
        })
        .collect();
    // The last Subject, as mail-parser picks a repeated field.
    out.subject = fields
        .iter()
        .rposition(|f| f.name == "subject")
        .map(|i| out.headers[i].1.clone())
        .unwrap_or_default();
    if let Some(ct) = msg.root_part().content_type() {
        out.content_type = mime_type_of(ct);
        out.report_type = ct
            .attribute("report-type")
            .map(|t| t.trim().to_ascii_lowercase());
    } else {
        out.content_type = "text/plain".into();
    }
    out.return_path = return_path(&msg, &out.headers);
    out.text = body::body_text(&msg, &mut out.warnings);
    if out.text.is_empty() {
        out.text = body::unsplit_multipart_body(&msg, &mut out.warnings);
    }
    if out.text.is_empty()
        && msg.attachments().any(|a| {
            a.content_type().is_some_and(|ct| {
                ct.subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("ms-tnef"))
            })
        })
    {
        out.warnings.push(
            "the text is inside a TNEF attachment (winmail.dat), which is not decoded".into(),
        );
    }
    out.new_text = quote::new_text_for(&out.text, &out.subject);
    out.language = lang::detect(&out.new_text).map(str::to_string);
    out.attachments = msg
        .attachments
        .iter()
        // The root is listed only when it is the whole body of a broken multipart.
        .filter(|&&i| i != 0)
        .filter_map(|&i| msg.part(i))
        .map(|a| AttachmentMeta {
            filename: attachment_name(&msg, a, hint),
            content_type: a
                .content_type()
                .map(mime_type_of)
                .unwrap_or_else(|| "application/octet-stream".into()),
            size: a.len(),
        })
        .collect();
    report::fill(&msg, &mut out);
    out
}

/// The charset raw 8-bit header bytes are read in when they are not UTF-8: the message's own
/// (top-level Content-Type), else its text parts' (see [`encoded::charset_hint`]).
fn charset_hint(msg: &Message<'_>) -> Option<String> {
    let root = msg
        .root_part()
        .content_type()
        .and_then(|ct| ct.attribute("charset"));
    let parts = msg
        .text_bodies()
        .chain(msg.html_bodies())
        .filter_map(|p| p.content_type()?.attribute("charset"));
    encoded::charset_hint(root.into_iter().chain(parts))
}

/// An attachment's file name: Content-Disposition `filename`, else Content-Type `name`, read
/// from the raw part header so RFC 2231 sections and encoded-word runs are decoded whole
/// ([`params`]); mail-parser's reading when the raw header gives none.
fn attachment_name(
    msg: &Message<'_>,
    part: &MessagePart<'_>,
    hint: Option<&str>,
) -> Option<String> {
    let raw_param = |name: HeaderName<'_>, param: &str| {
        let h = part.headers.iter().find(|h| h.name == name)?;
        let raw = msg
            .raw_message
            .get(h.offset_start as usize..h.offset_end as usize)?;
        params::param(raw, param, hint)
    };
    raw_param(HeaderName::ContentDisposition, "filename")
        .or_else(|| raw_param(HeaderName::ContentType, "name"))
        .or_else(|| part.attachment_name().map(str::to_string))
        .map(|n| clean_header_text(&n))
        .filter(|n| !n.is_empty())
}

fn synthesized_id(sha: &str) -> String {
    format!("{}@sha256.supportd.invalid", sha.get(..32).unwrap_or(sha))
}

fn mime_type_of(ct: &mail_parser::ContentType<'_>) -> String {
    match ct.subtype() {
        Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
        None => ct.ctype().to_ascii_lowercase(),
    }
}

/// The header's bytes as they stand in the message, unfolded and cleaned; for headers that
/// mail-parser parses into a structure we have no text form for (Received, a Date it could not
/// read), so the guard and the operator still see the value.
fn raw_header_text(raw: &[u8], hint: Option<&str>) -> String {
    clean_header_text(&encoded::decode_raw(raw, hint).0)
}

/// The display text of one field (see [`ParsedMessage::headers`]).
fn header_text(f: &headers::Field<'_>, hint: Option<&str>, warnings: &mut Vec<String>) -> String {
    match &f.value {
        HeaderValue::Text(t) => clean_header_text(&headers::text(f, t, hint, warnings)),
        HeaderValue::TextList(l) => clean_header_text(&l.join(", ")),
        HeaderValue::Address(a) => clean_header_text(&address_text(a)),
        HeaderValue::DateTime(d) => d.to_rfc3339(),
        HeaderValue::ContentType(ct) => {
            let mut s = match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            };
            for attr in ct.attributes().unwrap_or(&[]) {
                s.push_str("; ");
                s.push_str(&attr.name);
                s.push('=');
                s.push_str(&attr.value);
            }
            s
        }
        HeaderValue::Received(_) | HeaderValue::Empty => raw_header_text(f.raw, hint),
    }
}

fn return_path(msg: &Message<'_>, headers: &[(String, String)]) -> Option<String> {
    let clean = |t: &str| {
        t.trim()
            .trim_matches(['<', '>'])
            .trim()
            .to_ascii_lowercase()
    };
    match msg.return_path() {
        HeaderValue::Text(t) => Some(clean(t)),
        HeaderValue::TextList(l) => l.first().map(|t| clean(t)),
        _ => headers
            .iter()
            .find(|(n, _)| n == "return-path")
            .map(|(_, v)| clean(v)),
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
    out.truncate(out.trim_end().len());
    out
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
