//! The top-level header fields, each read whole.
//!
//! mail-parser's reading is kept where it is right, and replaced from the raw bytes where it
//! is not: a run of encoded-words split inside a character, raw 8-bit bytes that are not
//! UTF-8 ([`encoded`]), an address a client hid inside an encoded-word, and a field it lost
//! altogether behind an odd Date ([`fields`]).

use mail_parser::{Address, HeaderValue, Message};

use super::address::{self, UnusableFrom};
use super::{Mailbox, PARSER, encoded, fields};

/// One header field: mail-parser's value (or ours, where we read it again) and the raw bytes.
pub(super) struct Field<'a> {
    /// Lower-case name.
    pub name: String,
    pub value: HeaderValue<'a>,
    /// The raw bytes after the colon, folding included.
    pub raw: &'a [u8],
}

impl Field<'_> {
    fn address(&self) -> Option<&Address<'_>> {
        match &self.value {
            HeaderValue::Address(a) => Some(a),
            _ => None,
        }
    }
}

/// Returns true if and only if `raw` holds something mail-parser may read wrongly: an
/// encoded-word or a byte that is not ASCII.
fn suspicious(raw: &[u8]) -> bool {
    raw.windows(2).any(|w| w == b"=?") || !raw.is_ascii()
}

/// The value of `name: value` parsed on its own by our mail-parser configuration.
fn reparse(name: &str, value: &[u8]) -> Option<HeaderValue<'static>> {
    let value = encoded::unfold(value);
    let mut buf = Vec::with_capacity(name.len() + value.len() + 6);
    buf.extend_from_slice(name.as_bytes());
    buf.push(b':');
    buf.extend_from_slice(&value);
    buf.extend_from_slice(b"\r\n\r\n");
    let msg = PARSER.parse(&buf)?;
    msg.headers()
        .first()
        .map(|h| h.value.clone().into_owned())
        .filter(|v| !matches!(v, HeaderValue::Empty))
}

/// The top-level fields in raw order: mail-parser's, with address values read again where
/// their raw bytes need it, and with each field mail-parser lost read on its own (`bytes` is
/// what mail-parser was given).
pub(super) fn read<'a>(
    msg: &'a Message<'a>,
    bytes: &'a [u8],
    hint: Option<&str>,
    warnings: &mut Vec<String>,
) -> Vec<Field<'a>> {
    let mut out: Vec<Field<'a>> = msg
        .headers()
        .iter()
        .map(|h| {
            let raw = msg
                .raw_message
                .get(h.offset_start as usize..h.offset_end as usize)
                .unwrap_or_default();
            let name = h.name().to_ascii_lowercase();
            let mut value = h.value.clone();
            if matches!(value, HeaderValue::Address(_)) && suspicious(raw) {
                let decoded = encoded::decode(raw, hint);
                warn_8bit(&name, &decoded, hint, warnings);
                if decoded.differs_from_per_word()
                    && let Some(again) = reparse(&name, &encoded::normalize(raw, hint))
                {
                    value = again;
                }
            }
            Field { name, value, raw }
        })
        .collect();
    let parsed: Vec<String> = out.iter().map(|f| f.name.clone()).collect();
    let raw_fields = fields::scan(bytes);
    for (at, f) in fields::lost(&raw_fields, &parsed) {
        let name = f.name.to_ascii_lowercase();
        let Some(value) = reparse(f.name, f.value) else {
            continue;
        };
        warnings.push(format!(
            "{} was lost by the MIME parser; read from the raw header",
            f.name
        ));
        let at = at.min(out.len());
        out.insert(
            at,
            Field {
                name,
                value,
                raw: f.value,
            },
        );
    }
    out
}

/// The last field called `name` (lower-case): mail-parser's choice for a repeated field,
/// kept so that the Subject or Message-ID of a message does not change under us.
pub(super) fn find<'f, 'a>(fields: &'f [Field<'a>], name: &str) -> Option<&'f Field<'a>> {
    fields.iter().rev().find(|f| f.name == name)
}

/// The text of a Text-valued field: mail-parser's, or our decoding when the raw bytes hold
/// encoded-words or 8-bit bytes (mail-parser leaves encoded-words in fields it does not
/// know, decodes split runs per word, and reads raw 8-bit as lossy UTF-8). A warning names
/// the charset raw 8-bit bytes were read in.
pub(super) fn text(
    field: &Field<'_>,
    parsed: &str,
    hint: Option<&str>,
    warnings: &mut Vec<String>,
) -> String {
    if !suspicious(field.raw) {
        return parsed.to_string();
    }
    let decoded = encoded::decode(field.raw, hint);
    warn_8bit(&field.name, &decoded, hint, warnings);
    decoded.text
}

/// The warning for raw 8-bit bytes that were not UTF-8, once per header name.
fn warn_8bit(
    name: &str,
    decoded: &encoded::Decoded,
    hint: Option<&str>,
    warnings: &mut Vec<String>,
) {
    let Some(label) = &decoded.eight_bit else {
        return;
    };
    let how = if Some(label.as_str()) == hint {
        " like the body"
    } else {
        ""
    };
    let w = format!(
        "{} has unencoded 8-bit bytes; read as {label}{how}",
        display_name(name)
    );
    if !warnings.contains(&w) {
        warnings.push(w);
    }
}

/// `content-type` -> `Content-Type`, for warnings.
fn display_name(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The sender as From gives it: the first usable mailbox, or why there is none. An address a
/// client hid inside an encoded-word together with the name
/// (`=?UTF-8?B?…?=@customers.example`, the word holding `"Zoé Brunet" <zoe.brunet`) is
/// recovered the way Thunderbird and Gmail show it: the whole header decoded first, then
/// read as an address.
pub(super) fn from_mailbox(
    fields: &[Field<'_>],
    hint: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<Mailbox, UnusableFrom> {
    let Some(field) = find(fields, "from") else {
        return Err(UnusableFrom::Missing);
    };
    if let Some(m) = address::first_mailbox(field.address()) {
        return Ok(m);
    }
    let why = address::why_unusable(field.address());
    if field.raw.windows(2).any(|w| w == b"=?") {
        let decoded = encoded::decode(field.raw, hint).text;
        if let Some(HeaderValue::Address(a)) = reparse("From", decoded.as_bytes())
            && let Some(m) = address::first_mailbox(Some(&a))
        {
            warnings.push(format!(
                "From: the address was inside an encoded-word; recovered {}",
                m.address
            ));
            return Ok(m);
        }
    }
    Err(why)
}

/// The first usable mailbox of the (last) address field `name` (lower-case).
pub(super) fn mailbox(fields: &[Field<'_>], name: &str) -> Option<Mailbox> {
    address::first_mailbox(find(fields, name).and_then(Field::address))
}

/// Every usable mailbox of the last field called `name` (lower-case).
pub(super) fn mailboxes(fields: &[Field<'_>], name: &str) -> Vec<Mailbox> {
    address::all_mailboxes(find(fields, name).and_then(Field::address))
}
