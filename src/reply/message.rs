//! The RFC 5322 side: headers, MIME structure and the bytes handed to the outbox.

use lettre::message::header::{
    ContentDisposition, ContentTransferEncoding, ContentType, HeaderName, HeaderValue,
};
use lettre::message::{Body, Mailbox, Message, MessageBuilder, MultiPart, SinglePart};
use rand::Rng;

use super::{
    AckInput, AgentNoticeInput, Identity, LOOP_HEADER, NotificationInput, Outgoing, RelayInput,
    ReplyError, ack_subject, header_text, truncate_chars,
};
use crate::thread::{self, ConversationIndex};

/// RFC 5322 advises keeping the thread root plus the most recent ids; beyond this many the
/// header only grows without helping any client thread better.
const MAX_REFERENCES: usize = 20;

/// Longest id we copy into a header; real ones are well under 100 octets.
const MAX_ID_LEN: usize = 250;

/// Longest line (without CRLF) that 7bit/8bit transfer encodings allow (RFC 5322 2.1.1).
const MAX_LINE: usize = 998;

pub(super) fn build_ack(
    identity: &Identity,
    input: &AckInput<'_>,
    locale: &str,
    body: String,
) -> Result<Outgoing, ReplyError> {
    const WHAT: &str = "acknowledgement";
    let message_id = our_id(input.message_id, WHAT)?;
    let in_reply_to = clean_id(input.customer_message_id);
    let references = references(input.customer_references, in_reply_to.as_deref());
    let subject = ack_subject(input.ticket_ref, input.original_subject);
    let to = mailbox(
        input.customer.name.as_deref(),
        &input.customer.address,
        WHAT,
    )?;
    let to_address = to.email.to_string();

    let (index, topic) = outlook_conversation(input, chrono::Utc::now().timestamp_millis());

    let builder = common(identity, locale, &message_id, WHAT)?
        .to(to)
        .subject(subject.clone())
        .raw_header(raw("Auto-Submitted", "auto-replied"))
        // RFC 3834 discourages Precedence, but older autoresponders only look at it.
        .raw_header(raw("Precedence", "auto_reply"))
        .raw_header(raw("Thread-Topic", &topic))
        .raw_header(raw("Thread-Index", &index.to_header()));
    let message = threading(builder, in_reply_to.as_deref(), &references)
        .singlepart(text_part(body))
        .map_err(|e| build_error(WHAT, e))?;

    Ok(Outgoing {
        to: to_address,
        subject,
        message_id,
        in_reply_to,
        references,
        raw: message.formatted(),
        conversation: Some(index.key()),
    })
}

/// The `Thread-Index` and `Thread-Topic` of our answer, written at `now_ms` (unix
/// milliseconds), so that Outlook files it in the customer's conversation: their index with
/// one child block appended, or a fresh one when they sent none (or one we cannot read); their
/// topic, or their subject without its reply prefixes.
fn outlook_conversation(input: &AckInput<'_>, now_ms: i64) -> (ConversationIndex, String) {
    let index = input
        .customer_thread_index
        .and_then(ConversationIndex::parse)
        .map(|i| i.reply(now_ms))
        .unwrap_or_else(|| ConversationIndex::fresh(now_ms));
    // A topic still in RFC 2047 encoded-words is left for the decoded subject.
    let topic = input
        .customer_thread_topic
        .map(header_text)
        .filter(|t| !t.trim().is_empty() && !t.contains("=?"))
        .unwrap_or_else(|| thread::topic(&header_text(input.original_subject)));
    (index, topic)
}

pub(super) fn build_notification(
    identity: &Identity,
    input: &NotificationInput<'_>,
    locale: &str,
    subject: String,
    body: String,
) -> Result<Outgoing, ReplyError> {
    const WHAT: &str = "notification";
    let message_id = our_id(input.message_id, WHAT)?;
    // Threading on the customer's message groups the notifications of one ticket in the
    // team's mail client, and an agent's reply to a notification can be traced back.
    let in_reply_to = clean_id(input.customer_message_id);
    let references: Vec<String> = in_reply_to.iter().cloned().collect();
    let to = mailbox(None, input.to, WHAT)?;
    let to_address = to.email.to_string();

    let text = text_part(body);
    let mut parts = MultiPart::mixed()
        .boundary(boundary(input.original_raw))
        .singlepart(text);
    if !input.original_raw.is_empty() {
        parts = parts.singlepart(original_part(input.original_raw));
    }

    let mut builder = common(identity, locale, &message_id, WHAT)?
        .to(to)
        .subject(subject.clone())
        .raw_header(raw("Auto-Submitted", "auto-generated"));
    if let Some(reply_to) = input.reply_to {
        builder = builder.reply_to(mailbox(Some(&identity.name), reply_to, WHAT)?);
    }
    let message = threading(builder, in_reply_to.as_deref(), &references)
        .multipart(parts)
        .map_err(|e| build_error(WHAT, e))?;

    Ok(Outgoing {
        to: to_address,
        subject,
        message_id,
        in_reply_to,
        references,
        raw: message.formatted(),
        conversation: None,
    })
}

/// An agent's answer: a human reply on the agent's behalf, so no Auto-Submitted, but our loop
/// header and signed id like everything we send.
pub(super) fn build_relay(
    identity: &Identity,
    input: &RelayInput<'_>,
    body: String,
) -> Result<Outgoing, ReplyError> {
    const WHAT: &str = "relayed answer";
    let message_id = our_id(input.message_id, WHAT)?;
    let in_reply_to = input.in_reply_to.and_then(clean_id);
    let references = references(input.references, in_reply_to.as_deref());
    let subject = ack_subject(input.ticket_ref, input.ticket_subject);
    let to = mailbox(
        input.customer.name.as_deref(),
        &input.customer.address,
        WHAT,
    )?;
    let to_address = to.email.to_string();
    let builder = common_as(identity, input.from_name, input.locale, &message_id, WHAT)?
        .to(to)
        .subject(subject.clone());
    let builder = threading(builder, in_reply_to.as_deref(), &references);
    let text = text_part(body);
    let message = if input.attachments.is_empty() {
        builder.singlepart(text)
    } else {
        let mut parts = MultiPart::mixed().singlepart(text);
        for a in input.attachments {
            parts = parts.singlepart(
                SinglePart::builder()
                    .header(content_type(&a.content_type))
                    .header(ContentDisposition::attachment(&header_text(&a.filename)))
                    .body(a.contents.clone()),
            );
        }
        builder.multipart(parts)
    }
    .map_err(|e| build_error(WHAT, e))?;
    Ok(Outgoing {
        to: to_address,
        subject,
        message_id,
        in_reply_to,
        references,
        raw: message.formatted(),
        conversation: None,
    })
}

/// The answer to an agent whose mail was not relayed: an automatic reply (RFC 3834).
pub(super) fn build_agent_notice(
    identity: &Identity,
    input: &AgentNoticeInput<'_>,
    subject: &str,
    body: String,
) -> Result<Outgoing, ReplyError> {
    const WHAT: &str = "agent notice";
    let message_id = our_id(input.message_id, WHAT)?;
    let in_reply_to = clean_id(input.original_message_id);
    let references: Vec<String> = in_reply_to.iter().cloned().collect();
    let to = mailbox(None, input.agent, WHAT)?;
    let to_address = to.email.to_string();
    let subject = truncate_chars(&header_text(subject), 200);
    let builder = common(identity, input.locale, &message_id, WHAT)?
        .to(to)
        .subject(subject.clone())
        .raw_header(raw("Auto-Submitted", "auto-replied"));
    let message = threading(builder, in_reply_to.as_deref(), &references)
        .singlepart(text_part(body))
        .map_err(|e| build_error(WHAT, e))?;
    Ok(Outgoing {
        to: to_address,
        subject,
        message_id,
        in_reply_to,
        references,
        raw: message.formatted(),
        conversation: None,
    })
}

/// A mail to the team with a text body only (an escalation).
pub(super) struct TeamMail<'a> {
    /// What it is, for errors ("escalation").
    pub what: &'static str,
    pub locale: &'a str,
    pub to: &'a str,
    pub subject: String,
    pub body: String,
    /// Our signed Message-ID, without brackets.
    pub message_id: &'a str,
    /// The customer's request it is about, to thread on; empty for none.
    pub customer_message_id: &'a str,
}

pub(super) fn build_team_mail(
    identity: &Identity,
    mail: &TeamMail<'_>,
) -> Result<Outgoing, ReplyError> {
    let message_id = our_id(mail.message_id, mail.what)?;
    // Threaded on the customer's message, like the ticket's notifications.
    let in_reply_to = clean_id(mail.customer_message_id);
    let references: Vec<String> = in_reply_to.iter().cloned().collect();
    let to = mailbox(None, mail.to, mail.what)?;
    let to_address = to.email.to_string();
    let builder = common(identity, mail.locale, &message_id, mail.what)?
        .to(to)
        .subject(mail.subject.clone())
        .raw_header(raw("Auto-Submitted", "auto-generated"));
    let message = threading(builder, in_reply_to.as_deref(), &references)
        .singlepart(text_part(mail.body.clone()))
        .map_err(|e| build_error(mail.what, e))?;
    Ok(Outgoing {
        to: to_address,
        subject: mail.subject.clone(),
        message_id,
        in_reply_to,
        references,
        raw: message.formatted(),
        conversation: None,
    })
}

/// Headers every mail shares.
fn common(
    identity: &Identity,
    locale: &str,
    message_id: &str,
    what: &'static str,
) -> Result<MessageBuilder, ReplyError> {
    common_as(identity, &identity.name, locale, message_id, what)
}

/// [`common`] with another display name before our address (an agent's answer).
fn common_as(
    identity: &Identity,
    display_name: &str,
    locale: &str,
    message_id: &str,
    what: &'static str,
) -> Result<MessageBuilder, ReplyError> {
    Ok(Message::builder()
        .from(mailbox(Some(display_name), &identity.address, what)?)
        .date_now()
        .message_id(Some(format!("<{message_id}>")))
        .raw_header(raw("X-Auto-Response-Suppress", "All"))
        .raw_header(raw(LOOP_HEADER, &identity.address))
        .raw_header(raw("Content-Language", &locale.replace('_', "-"))))
}

fn threading(
    builder: MessageBuilder,
    in_reply_to: Option<&str>,
    references: &[String],
) -> MessageBuilder {
    let builder = match in_reply_to {
        Some(id) => builder.in_reply_to(format!("<{id}>")),
        None => builder,
    };
    if references.is_empty() {
        return builder;
    }
    let joined: Vec<String> = references.iter().map(|id| format!("<{id}>")).collect();
    builder.references(joined.join(" "))
}

/// A header whose value is forced onto one line; lettre folds and RFC 2047-encodes it.
fn raw(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), header_text(value))
}

fn mailbox(name: Option<&str>, address: &str, what: &'static str) -> Result<Mailbox, ReplyError> {
    let email = address.trim().parse().map_err(|e| ReplyError::Build {
        what,
        reason: format!("address {address:?}: {e}"),
    })?;
    let name = name
        .map(|n| truncate_chars(&header_text(n), 100))
        .filter(|n| !n.is_empty());
    Ok(Mailbox::new(name, email))
}

fn build_error(what: &'static str, e: lettre::error::Error) -> ReplyError {
    ReplyError::Build {
        what,
        reason: e.to_string(),
    }
}

/// Our own Message-ID must be usable: without it the customer's reply cannot be threaded.
fn our_id(id: &str, what: &'static str) -> Result<String, ReplyError> {
    clean_id(id).ok_or_else(|| ReplyError::Build {
        what,
        reason: format!("unusable Message-ID {id:?}"),
    })
}

/// An id fit for a header, without brackets; ids that are not plain printable ASCII are
/// dropped rather than repaired, since a repaired id would match nothing.
fn clean_id(id: &str) -> Option<String> {
    let id = id.trim();
    let id = id
        .strip_prefix('<')
        .and_then(|i| i.strip_suffix('>'))
        .unwrap_or(id);
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    ok.then(|| id.to_owned())
}

/// The customer's chain plus their message, each once, bounded to the root and the most
/// recent ids.
fn references(chain: &[String], customer_id: Option<&str>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for id in chain.iter().filter_map(|id| clean_id(id)) {
        if Some(id.as_str()) != customer_id && !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids.extend(customer_id.map(str::to_owned));
    if ids.len() > MAX_REFERENCES {
        ids.drain(1..ids.len() - (MAX_REFERENCES - 1));
    }
    ids
}

/// A multipart boundary that cannot occur in the attached original, which the customer wrote.
fn boundary(original: &[u8]) -> String {
    loop {
        let random: String = rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let candidate = format!("supportd-{random}");
        if !contains(original, candidate.as_bytes()) {
            return candidate;
        }
    }
}

/// Linear in the size of `haystack`: the original may be many megabytes.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// The customer's message as `message/rfc822`. RFC 2046 allows only 7bit, 8bit or binary for
/// that type, and SMTP without BINARYMIME carries only the first two, so a message that does
/// not fit them (NUL bytes, lines over 998 octets) goes as a base64 `application/octet-stream`
/// instead: the team still gets every byte.
fn original_part(raw: &[u8]) -> SinglePart {
    let canonical = crlf(raw);
    let fits = !canonical.contains(&0)
        && canonical
            .split(|&b| b == b'\n')
            .all(|line| line.strip_suffix(b"\r").unwrap_or(line).len() <= MAX_LINE);
    let disposition = ContentDisposition::attachment("original.eml");
    if fits {
        let encoding = if canonical.is_ascii() {
            ContentTransferEncoding::SevenBit
        } else {
            ContentTransferEncoding::EightBit
        };
        SinglePart::builder()
            .header(content_type("message/rfc822"))
            .header(disposition)
            // Checked above: no NUL, no over-long line, CRLF only.
            .body(Body::dangerous_pre_encoded(canonical, encoding))
    } else {
        SinglePart::builder()
            .header(content_type("application/octet-stream"))
            .header(disposition)
            .body(raw.to_vec())
    }
}

/// Our text as UTF-8 `text/plain`: 7bit when it is short-lined ASCII, else quoted-printable,
/// which keeps French readable in raw form and needs no 8BITMIME. Choosing here spares lettre
/// from encoding every body both as quoted-printable and as base64 to keep the shorter.
fn text_part(body: String) -> SinglePart {
    let encoding = if body.is_ascii() && body.lines().all(|l| l.len() <= 76) {
        ContentTransferEncoding::SevenBit
    } else {
        ContentTransferEncoding::QuotedPrintable
    };
    let body = Body::new_with_encoding(body, encoding).unwrap_or_else(Body::new);
    SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(body)
}

fn content_type(mime: &str) -> ContentType {
    // A type lettre cannot parse (an odd one from an agent's attachment) goes as bytes.
    ContentType::parse(mime).unwrap_or_else(|_| {
        ContentType::parse("application/octet-stream").unwrap_or(ContentType::TEXT_PLAIN)
    })
}

/// Bare LF or CR to CRLF: the canonical form on the wire, and SMTP servers reject bare LF.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut bytes = raw.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'\r' => {
                bytes.next_if_eq(&b'\n');
                out.extend_from_slice(b"\r\n");
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_keep_the_root_and_the_most_recent_ids() {
        let chain: Vec<String> = (0..30).map(|i| format!("m{i}@x")).collect();
        let refs = references(&chain, Some("last@x"));
        assert_eq!(refs.len(), MAX_REFERENCES);
        assert_eq!(refs[0], "m0@x");
        assert_eq!(refs[1], "m12@x");
        assert_eq!(refs.last().map(String::as_str), Some("last@x"));
    }

    #[test]
    fn references_skip_duplicates_and_unusable_ids() {
        let chain = vec![
            "<a@x>".to_owned(),
            "a@x".to_owned(),
            "bad id@x".to_owned(),
            "c@x".to_owned(),
        ];
        assert_eq!(references(&chain, Some("a@x")), vec!["c@x", "a@x"]);
    }

    #[test]
    fn ids_with_line_breaks_are_dropped_not_repaired() {
        assert_eq!(clean_id("a@x\r\nBcc: evil@x"), None);
        assert_eq!(clean_id(" <a@x> "), Some("a@x".to_owned()));
        assert_eq!(clean_id(""), None);
    }

    #[test]
    fn text_is_7bit_when_it_can_be_and_quoted_printable_otherwise() {
        let encoding = |body: &str| {
            let raw = String::from_utf8(text_part(body.to_owned()).formatted()).unwrap();
            let header = raw
                .lines()
                .find(|l| l.starts_with("Content-Transfer-Encoding:"))
                .unwrap_or_default()
                .to_owned();
            (header, raw)
        };
        assert!(encoding("Hello\nWorld").0.ends_with("7bit"));
        let (header, raw) = encoding("Bonjour, votre demande a été reçue.");
        assert!(header.ends_with("quoted-printable"), "{raw}");
        assert!(raw.contains("=C3=A9t=C3=A9 re=C3=A7ue"), "{raw}");
        assert!(encoding(&"x".repeat(200)).0.ends_with("quoted-printable"));
    }

    fn input<'a>(index: Option<&'a str>, topic: Option<&'a str>) -> AckInput<'a> {
        static CUSTOMER: std::sync::LazyLock<crate::parse::Mailbox> =
            std::sync::LazyLock::new(|| crate::parse::Mailbox {
                name: None,
                address: "a@b.fr".into(),
            });
        AckInput {
            locale: "fr",
            ticket_ref: "CHT-1",
            customer: &CUSTOMER,
            original_subject: "RE: TR: Facture",
            customer_message_id: "m@b.fr",
            customer_references: &[],
            customer_thread_index: index,
            customer_thread_topic: topic,
            category_label: "Facturation",
            promise: None,
            business: false,
            confirm_only: false,
            due_at: None,
            out_of_hours: None,
            ask_for_account: false,
            tips: &[],
            short: false,
            message_id: "sd.ack.1@example.test",
        }
    }

    #[test]
    fn the_ack_continues_the_customers_outlook_conversation_or_starts_one() {
        let now = 1_796_112_000_000;
        let theirs = ConversationIndex::fresh(now - 60_000);
        let header = theirs.to_header();
        let (index, topic) = outlook_conversation(&input(Some(&header), Some("Facture")), now);
        assert_eq!(index.key(), theirs.key());
        assert_eq!(index.depth(), 1);
        assert_eq!(topic, "Facture");
        let encoded = input(None, Some("=?UTF-8?B?RmFjdHVyZQ==?="));
        assert_eq!(outlook_conversation(&encoded, now).1, "Facture");
        // No index (or one that is not an index), no topic: a fresh conversation, and the
        // subject without its prefixes.
        for none in [None, Some("AdtdjjwqGxRwmMUcTxM8p0==")] {
            let (index, topic) = outlook_conversation(&input(none, None), now);
            assert_eq!(index.depth(), 0);
            assert_ne!(index.key(), theirs.key());
            assert_eq!(topic, "Facture");
        }
    }

    #[test]
    fn bare_line_ends_become_crlf() {
        assert_eq!(crlf(b"a\nb\rc\r\nd"), b"a\r\nb\r\nc\r\nd");
    }
}
