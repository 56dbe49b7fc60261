//! The text of a message: which MIME parts hold it, their charsets, HTML to text.

use std::borrow::Cow;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{Encoding, Message, MessagePart, MimeHeaders, PartType};

use super::encoded;

/// Every inline text body part, converted and joined. Apple Mail splits one message into
/// several text parts around inline images, so taking only the first would lose text.
///
/// A blank text/plain alternative (webmails and CRMs send one line of white space beside the
/// real HTML) is replaced by the HTML parts of the same multipart/alternative, however deep
/// they sit in it (multipart/related around the HTML and its images, for one).
pub(super) fn body_text(msg: &Message<'_>, warnings: &mut Vec<String>) -> String {
    let mut out = String::new();
    let mut push = |text: &str| {
        let text = text.trim_end();
        if text.trim().is_empty() {
            return;
        }
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(text);
    };
    let parents = parents(msg);
    let mut used: Vec<usize> = Vec::new();
    for (i, &id) in msg.text_body.iter().enumerate() {
        let id = id as usize;
        let Some(part) = msg.parts.get(id) else {
            continue;
        };
        if used.contains(&id) {
            continue;
        }
        let text = part_text(msg, part, i, warnings);
        if !text.trim().is_empty() {
            push(&text);
            continue;
        }
        let Some(alt) = alternative_ancestor(msg, &parents, id) else {
            continue;
        };
        for &html in &msg.html_body {
            let html = html as usize;
            if html == id || used.contains(&html) || !descends_from(&parents, html, alt) {
                continue;
            }
            if let Some(part) = msg.parts.get(html)
                && matches!(part.body, PartType::Html(_))
            {
                used.push(html);
                let text = part_text(msg, part, i, warnings);
                if !text.trim().is_empty() {
                    warnings.push(format!(
                        "text part {i}: blank plain-text alternative; the HTML part was read instead"
                    ));
                }
                push(&text);
            }
        }
    }
    out
}

/// The parent of every part (None for the root), from the multipart child lists.
fn parents(msg: &Message<'_>) -> Vec<Option<usize>> {
    let mut out = vec![None; msg.parts.len()];
    for (i, part) in msg.parts.iter().enumerate() {
        if let PartType::Multipart(children) = &part.body {
            for &c in children {
                if let Some(slot) = out.get_mut(c as usize) {
                    *slot = Some(i);
                }
            }
        }
    }
    out
}

/// The nearest multipart/alternative that holds part `id`.
fn alternative_ancestor(msg: &Message<'_>, parents: &[Option<usize>], id: usize) -> Option<usize> {
    let mut at = parents.get(id).copied().flatten();
    // Bounded by the depth of the tree; the bound only guards against a cycle.
    for _ in 0..parents.len() {
        let p = at?;
        if msg.parts.get(p).is_some_and(|part| {
            part.content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("multipart")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("alternative"))
            })
        }) {
            return Some(p);
        }
        at = parents.get(p).copied().flatten();
    }
    None
}

/// Returns true if and only if part `id` sits somewhere below part `ancestor`.
fn descends_from(parents: &[Option<usize>], id: usize, ancestor: usize) -> bool {
    let mut at = parents.get(id).copied().flatten();
    for _ in 0..parents.len() {
        match at {
            Some(p) if p == ancestor => return true,
            Some(p) => at = parents.get(p).copied().flatten(),
            None => return false,
        }
    }
    false
}

/// A multipart message whose boundary never occurs has no parts at all for mail-parser, yet its
/// body is often a perfectly readable bounce or note; keep it as plain text.
pub(super) fn unsplit_multipart_body(msg: &Message<'_>, warnings: &mut Vec<String>) -> String {
    let root = msg.root_part();
    let text = match &root.body {
        PartType::Multipart(children) if children.is_empty() => msg
            .raw_message
            .get(root.offset_body as usize..)
            .map(|b| encoded::decode_raw(b, None).0.trim().to_string())
            .unwrap_or_default(),
        // With no boundary found, mail-parser keeps the body as one text "attachment".
        PartType::Text(t) => t.trim().to_string(),
        PartType::Html(h) => html_to_text(h),
        _ => String::new(),
    };
    if !text.is_empty() {
        warnings.push("multipart body without its boundary; kept as plain text".into());
    }
    text
}

/// The text of one body part. mail-parser decodes unknown or missing charsets as lossy UTF-8;
/// when that produced replacement characters, decode the part again as windows-1252, which
/// never fails and is right for most unlabelled Western mail.
fn part_text<'a>(
    msg: &'a Message<'a>,
    part: &'a MessagePart<'a>,
    index: usize,
    warnings: &mut Vec<String>,
) -> Cow<'a, str> {
    let (text, is_html) = match &part.body {
        PartType::Text(t) => (t, false),
        PartType::Html(h) => (h, true),
        _ => return Cow::Borrowed(""),
    };
    let charset = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .map(|c| c.trim().trim_matches(['"', '\'', ';']).trim());
    // UTF-8 is mail-parser's native case and so absent from its table of decoders.
    let utf8_label =
        charset.is_some_and(|c| c.eq_ignore_ascii_case("utf-8") || c.eq_ignore_ascii_case("utf8"));
    let known = utf8_label || charset.is_some_and(|c| charset_decoder(c.as_bytes()).is_some());
    let mut text: Cow<'a, str> = Cow::Borrowed(text.as_ref());
    if text.contains('\u{FFFD}') {
        let label = charset.unwrap_or("none");
        if (!known || utf8_label)
            && !mostly_utf8(&text)
            && let Some(bytes) = transfer_decoded(msg, part)
            && std::str::from_utf8(&bytes).is_err()
        {
            warnings.push(format!(
                "text part {index}: charset {label:?} does not fit its bytes; read as windows-1252"
            ));
            text = Cow::Owned(encoded::windows_1252(&bytes));
        } else if !known {
            warnings.push(format!(
                "text part {index}: unknown charset {label:?}; undecodable bytes replaced"
            ));
        }
    } else if let Some(label) = charset.filter(|_| !known) {
        warnings.push(format!(
            "text part {index}: unknown charset {label:?}; read as UTF-8"
        ));
    }
    if is_html {
        Cow::Owned(html_to_text(&text))
    } else {
        text
    }
}

/// Whether lossily decoded text is UTF-8 with a few broken bytes rather than another
/// encoding: then its correctly decoded non-ASCII characters outnumber the replacements, and
/// re-reading it all as windows-1252 would garble the good part.
fn mostly_utf8(text: &str) -> bool {
    let (mut good, mut bad) = (0usize, 0usize);
    for c in text.chars().filter(|c| !c.is_ascii()) {
        if c == '\u{FFFD}' {
            bad += 1;
        } else {
            good += 1;
        }
    }
    good > bad
}

/// The part's body bytes with the transfer encoding undone, before any charset decoding.
fn transfer_decoded(msg: &Message<'_>, part: &MessagePart<'_>) -> Option<Vec<u8>> {
    let raw = msg
        .raw_message
        .get(part.offset_body as usize..part.offset_end as usize)?;
    match part.encoding {
        Encoding::None => Some(raw.to_vec()),
        Encoding::QuotedPrintable => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(raw)
        }
        Encoding::Base64 => mail_parser::decoders::base64::base64_decode(raw),
    }
}

/// HTML to readable text. mail-parser's converter drops tags, styles, scripts and entities but
/// breaks lines only at `<br>` and `</p>`; Outlook and webmail lay text out in `<div>`s, table
/// cells and list items, which would otherwise run together on one line and hide the reply
/// header blocks the quote stripper looks for. So block-level tags become line breaks first.
pub fn html_to_text(html: &str) -> String {
    static BLOCK: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)<(?:/?(?:div|tr|li|h[1-6]|blockquote|table|ul|ol|pre|hr|dt|dd)\b[^>]*|br\s*/?)>",
        )
        .expect("static regex")
    });
    let marked = BLOCK.replace_all(html, "<br>");
    let text = mail_parser::decoders::html::html_to_text(&marked);
    // Collapse the runs of empty lines nested blocks leave behind.
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line.trim_start_matches('\u{a0}'));
        out.push('\n');
    }
    out.truncate(out.trim_end().len());
    out
}
