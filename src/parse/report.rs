//! Delivery reports: which of our messages bounced, and for whom.
//!
//! Structured reports (RFC 3464 multipart/report) say it in a message/delivery-status part and
//! return the original as message/rfc822 or text/rfc822-headers. Many MTAs mark nothing and
//! paste the original headers into a plain-text body; for those the body is searched for
//! `Message-ID:` lines, but only when the message otherwise looks like a bounce, so that a
//! human forwarding a mail with its headers is never read as a bounce of it. The recipients
//! that failed come from the delivery-status fields, `X-Failed-Recipients`, or else the words
//! of the report (qmail, Exim, Postfix, sendmail, Exchange, Notes and the like).

use std::borrow::Cow;
use std::sync::LazyLock;

use mail_parser::{Message, MimeHeaders, PartType};
use regex::Regex;

use super::ParsedMessage;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static regex")
}

/// Subjects of non-delivery reports, in the exact wording of MTAs, gateways (antivirus relays,
/// Exchange, Domino, MailMarshal, InterScan, MessageLabs) and providers, in English, French and
/// the other languages Exchange and the big providers localise into; gathered from real reports
/// (sisimai's and Mail::DeliveryStatus::BounceParser's sets) and the subject lists of published
/// bounce parsers (sisimai's `Order`, PHP-Bounce-Handler's `bouncesubj`).
///
/// Anchored at the start (after optional `[tag]`s, `*`s, or the reporting host's name), so that
/// "Re: Undeliverable: …" or "Fwd: Returned mail" from a person is not matched; phrases a
/// customer could use for a parcel or a chat message ("Undelivered package", "Delivery failed
/// for order 12", "Message not delivered") are in [`FAILURE_SUBJECT_WORDING`] and
/// [`WEAK_BOUNCE_SUBJECT`], which the guard uses only together with other evidence.
pub static BOUNCE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)^\s*(?:\[[^\]]*\]\s*|\{[^}]*\}\s*|\*+\s*)*(?:[\w-]+(?:\.[\w-]+)+\s+)?(?:",
        r"undelivered mail returned to sender|undeliverable(?: mail| message)?\s*:",
        r"|undeliverable (?:mail|message)(?-u:\b)|undelivered (?:mail|message)(?-u:\b)",
        r"|delivery status notification\s*(?:\((?:failure|delay)|:\s*(?:fail|error|delay))",
        r"|mail delivery failed|returned mail\s*:|failure notice(?-u:\b)|postmaster notify",
        r"|delivery notification: delivery has failed|mail system error - returned mail",
        r"|warning: could not send message for past|delayed mail \(still being retried\)",
        r"|warning: message \S+ delayed|non remis\s*:|non distribuable\s*:|non recapitabile\s*:",
        r"|unzustellbar\s*:|nicht zustellbar\s*:|onbestelbaar\s*:|no se puede entregar\s*:",
        r"|n[ãa]o entregue\s*:|niedostarczalne\s*:",
        r"|permanent delivery failure|message delivery has failed|mail could not be delivered",
        r"|(?:sorry, )?your message could not be delivered|message you sent blocked",
        r"|non[- ]delivery report\s*:|delivery failure\s*:|mail failed, returning to sender",
        r"|there was an error sending your mail|failed delivery\s*$|failure delivery\s*$",
        r"|undeliverable mail notification|message status - undeliverable|nondeliverable mail",
        r"|notification d['’][ée]tat de (?:la )?(?:remise|distribution) \([ée]chec",
        r"|(?:rapport|avis|notification) de non[- ](?:remise|distribution)",
        r"|[ée]chec de (?:la )?(?:remise|distribution) du (?:message|courrier)",
        r"|votre message n['’]a pas (?:pu [êe]tre|[ée]t[ée]) (?:remis|distribu[ée]|d[ée]livr[ée])",
        r"|недоставленное сообщение|ваше сообщение не доставлено",
        r")"
    ))
});

/// Delivery-failure wording for subjects, unanchored: what [`BOUNCE_SUBJECT`] knows, plus
/// wording a person could use about a parcel or a chat message. The guard looks for it
/// anywhere in a subject that is not a forward ("RE: Undeliverable: …", "Kerio: Delivery
/// failed", "[SPAM] mail.example.net: returned mail"), and counts it only together with a
/// report in the body or a machine sender.
pub const FAILURE_SUBJECT_WORDING: &str = concat!(
    r"undelivered mail returned to sender|undeliverable|undelivered (?:mail|message|e-?mail)",
    r"|non-?deliverable|non[- ]delivery|delivery status notification|mail delivery (?:fail|error|problem)",
    r"|returned (?:e-?)?mail|failure notice|postmaster notif|delivery (?:has )?failed|delivery failure",
    r"|(?:message|mail) delivery (?:has )?failed|could not be delivered|couldn't be delivered",
    r"|(?:was|were|has|have|had)(?:n't| not)(?: been)? delivered|(?:message|mail|e-?mail) not delivered",
    r"|returned to sender|returning (?:message )?to sender|mail transaction failed|delivery errors?(?-u:\b)",
    r"|message you sent blocked|mail system error|error sending your mail|delivery status report",
    r"|non remis|non distribuable|non (?:d[ée]livr[ée]|distribu[ée])|n['’]a pas (?:pu [êe]tre|[ée]t[ée]) (?:remis|distribu[ée]|d[ée]livr[ée])",
    r"|[ée]chec (?:de (?:la )?|d['’])(?:remise|distribution|envoi)|non[- ](?:remise|distribution)",
    r"|erreur de distribution|courrier non|unzustellbar|nicht zustellbar|zustellung fehlgeschlagen",
    r"|non recapitabile|mancata consegna|no se puede entregar|no entregado|n[ãa]o entregue",
    r"|onbestelbaar|niet bezorgd|niedostarczalne|недоставленное|не доставлено"
);

/// Bounce wording that a person could also use; counts only with a machine hint.
pub static WEAK_BOUNCE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)^\s*(?:\[[^\]]*\]\s*|\*+\s*)*(?:",
        r"delivery status|delivery report|delivery failure|mail delivery|returned mail",
        r"|undeliver|undelivered|notice: mail delivery|rejected|could not send|dsn(?-u:\b)|ndn(?-u:\b)",
        r"|nds(?-u:\b)|ndr(?-u:\b)|mail not delivered|message not delivered|delivery problem|delivery notification",
        r"|mail status|mail(?:er)? (?:error|failure)|message status|notification d['’][ée]tat",
        r"|rapport de remise|remise du message|distribution du message|mail system",
        r")"
    ))
});

/// Delivery-delay warnings and success notices: reports, not failures.
pub static DELAY_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)^\s*(?:\[[^\]]*\]\s*)*(?:",
        r"warning: could not send message for past|delayed mail|delivery delayed",
        r"|delivery status notification \((?:delay|success)\)|message delivery (?:has been )?delayed",
        r"|delivery (?:notification|report): (?:delay|delivered|success)|remise diff[ée]r[ée]e",
        r"|zustellung verzögert|warning: message .* delayed|delivery delay",
        r"|delivered: |relayed: |successful mail delivery report|return receipt",
        r"|delivery status notification \(mail delivery delayed\)|notification d['’][ée]tat de (?:la )?remise \((?:retard|d[ée]lai|remis)",
        r"|remis\s*:|distribu[ée]\s*:|retard de (?:remise|distribution|livraison)",
        r")"
    ))
});

/// Senders that only ever send delivery reports: `MAILER-DAEMON`, `postmaster` and Exchange's
/// system mailbox (`MicrosoftExchange` and 32 hex digits), however the local part
/// is quoted, escaped or spelt (`"MAILER-DAEMON"`, `mailer\-daemon`, `Mailer_Daemon`,
/// `"mailer-daemon@mx.example"@relay`, `relay!MAILER-DAEMON`, `postmaster+tag`).
pub fn is_mailer_local_part(local: &str) -> bool {
    let cleaned: String = local
        .chars()
        .filter(|c| !matches!(c, '"' | '\'' | '\\' | '<' | '>') && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let last_hop = cleaned.rsplit('!').next().unwrap_or("");
    let mailbox = last_hop.split(['@', '%']).next().unwrap_or("");
    let mailbox = mailbox.split('+').next().unwrap_or("");
    let squeezed: String = mailbox
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .collect();
    if let Some(hex) = squeezed.strip_prefix("microsoftexchange") {
        return hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    matches!(
        squeezed.as_str(),
        "mailerdaemon" | "maildaemon" | "mailerdeamon" | "postmaster"
    )
}

static BODY_MESSAGE_ID: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?im)^[\s>|]*(?:original-)?message-id\s*:\s*<?\s*([^\s<>@]+@[^\s<>]+?)\s*>?\s*$")
});

/// The first bytes of a text body searched for quoted Message-IDs. Bounces quote the original
/// headers near the top; a returned 20 MB attachment needs no reading.
const BODY_SCAN_LIMIT: usize = 64 * 1024;

fn local_part(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(l, _)| l)
}

/// Whether `out` (already parsed up to its bodies) is plausibly a delivery report.
fn looks_like_report(out: &ParsedMessage) -> bool {
    out.content_type == "multipart/report"
        || out.return_path.as_deref() == Some("")
        || is_mailer_local_part(local_part(out.from_address()))
        || out.header("x-failed-recipients").is_some()
        || BOUNCE_SUBJECT.is_match(&out.subject)
}

fn push_unique(list: &mut Vec<String>, value: String) {
    if !value.is_empty() && !list.contains(&value) {
        list.push(value);
    }
}

/// The address of a `Final-Recipient: rfc822; user@host` value, lower-cased, brackets removed.
fn recipient_address(value: &str) -> String {
    let addr = value.split_once(';').map_or(value, |(_, a)| a);
    addr.trim()
        .trim_matches(['<', '>', '"'])
        .trim()
        .to_ascii_lowercase()
}

/// Fields of a delivery-status body, unfolded, grouped per recipient (blank-line separated).
fn status_groups(body: &str) -> Vec<Vec<(String, String)>> {
    let mut groups: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in body.lines() {
        if line.trim().is_empty() {
            if groups.last().is_some_and(|g| !g.is_empty()) {
                groups.push(Vec::new());
            }
            continue;
        }
        let Some(group) = groups.last_mut() else {
            continue;
        };
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = group.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            group.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    groups
}

fn read_delivery_status(body: &str, out: &mut ParsedMessage) {
    for group in status_groups(body) {
        let field = |n: &str| group.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let Some(recipient) = field("final-recipient").or_else(|| field("original-recipient"))
        else {
            continue;
        };
        let action = field("action").map(|a| a.trim().to_ascii_lowercase());
        // Some MTAs omit Action; a recipient block without one is a failure report.
        let failed = action.as_deref().is_none_or(|a| a.starts_with("fail"));
        if let Some(a) = action {
            out.delivery_actions.push(a);
        }
        if failed {
            push_unique(&mut out.failed_recipients, recipient_address(recipient));
            if let Some(orig) = field("original-recipient") {
                push_unique(&mut out.failed_recipients, recipient_address(orig));
            }
        }
    }
}

/// An address as delivery reports print it: a local part, then a dotted domain; no trailing
/// dot, so the end of a sentence is not taken in.
const ADDRESS: &str = r#"[^\s<>"'(),;:@\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"#;

/// Where the returned copy of our message starts in a plain-text report (qmail's "--- Below
/// this line is a copy of the message.", Exim's "------ This is a copy of the message",
/// sendmail's "----- Unsent message follows -----", Exchange's "Original message headers:",
/// Notes' "------- Returned Message --------", ...): the addresses after it are the returned
/// message's own To and From, not the ones that failed.
static RETURNED_COPY: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?im)^[\s>*=_-]*(?:",
        r"-{2,}[\s-]*(?:original|returned|unsent|undelivered|rejected) (?:message|mail)\b",
        r"|below this line is a copy of the message|this is a copy of the message",
        r"|(?:original|unsent|returned|undelivered|rejected) message follows",
        r"|message headers? follows?|original message headers|headers? of the (?:original|returned) message",
        r"|copy of the (?:original )?message headers?\b|below is a copy of|a copy of the original message",
        r"|(?:message|e-mail) d'origine|nachricht im original|original-nachricht",
        r")"
    ))
});

/// The first header of a returned copy pasted without any separator.
static RETURNED_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?m)^(?:Return-Path|Received|Message-I[Dd]|Delivered-To|DKIM-Signature",
        r"|Authentication-Results|MIME-Version|X-[A-Za-z0-9-]+):[ \t]"
    ))
});

/// How plain-text reports name the recipients that failed, each with the address as group 1,
/// in tiers from the most to the least certain: a report's own recipient lines, then inline
/// wording, then the SMTP dialogue it quotes (which may also name the sender, when it was the
/// sender that was refused). The first tier that finds an address is the answer.
static PLAIN_RECIPIENT: LazyLock<[Vec<Regex>; 3]> = LazyLock::new(|| {
    let compile = |patterns: &[String]| patterns.iter().map(|p| re(p)).collect::<Vec<_>>();
    [
        compile(&[
            // A line that starts with the address: qmail and Yahoo `<a@b>:`, Postfix `<a@b>:
            // host ... said`, OpenSMTPD `a@b: 550 ...`, Exim and Notes `  a@b`, Exchange
            // `a@b (a@b)` or `a@b on <date>`, sendmail `<a@b>... User unknown`, bullets,
            // quotes.
            format!(
                r#"(?m)^[ \t>*•-]*["<]?({ADDRESS})[">]?[ \t]*(?:[:;(]|\.\.\.|on[ \t]|\.?[ \t]*\r?$)"#
            ),
            // Delivery-status fields pasted into the text.
            format!(r"(?im)^\s*(?:final|original)-recipient\s*:\s*(?:rfc822\s*;)?\s*<?({ADDRESS})"),
        ]),
        // Inline, after the failed delivery, on one line: "error delivering your mail to
        // <a@b>", "Your message to a@b couldn't be delivered", "was not delivered to: a@b",
        // "Votre message à a@b", "Ihre Nachricht an a@b". (Not Exchange's "Your message\n To:
        // a@b": that lists every recipient of the original.)
        compile(&[format!(
            r"(?i)\b(?:deliver(?:ing|ed|y)?|remise?|zugestellt|message|mail|e-?mail|nachricht)[ \t]+(?:(?:of|for)[ \t]+)?(?:(?:your|the|this|votre|le)[ \t]+(?:message|mail|e-?mail)[ \t]+)?(?:to|à|an|for)[ \t]*:?\s*<?({ADDRESS})"
        )]),
        // The SMTP dialogue: `RCPT TO:<a@b>`, `550 5.1.1 <a@b>: ...`, `<a@b>... User unknown`,
        // "Unknown user: a@b".
        compile(&[
            format!(r"(?i)RCPT TO:\s*<({ADDRESS})>"),
            format!(r"\b[45]\d\d[ -](?:[45]\.\d{{1,3}}\.\d{{1,3}}[ \t]+)?<({ADDRESS})>"),
            format!(r"<({ADDRESS})>\.\.\."),
            format!(
                r"(?i)(?:unknown user|user unknown|no such user|invalid (?:recipient|mailbox)|mailbox (?:unavailable|full|not found))\s*:?\s*<?({ADDRESS})"
            ),
        ]),
    ]
});

/// The envelope sender in a quoted SMTP dialogue.
static MAIL_FROM: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"(?i)MAIL FROM:\s*<({ADDRESS})>")));

/// The recipients a plain-text delivery report says failed, lower-cased, in the order found:
/// read from its prose, before the returned copy of the message. Mailer addresses
/// (postmaster, MAILER-DAEMON) that reports give for help are left out.
pub fn plain_text_recipients(text: &str) -> Vec<String> {
    let end = text.floor_char_boundary(BODY_SCAN_LIMIT);
    let mut prose = &text[..end];
    for cut in [&*RETURNED_COPY, &*RETURNED_HEADER] {
        if let Some(m) = cut.find(prose) {
            prose = &prose[..m.start()];
        }
    }
    // A quoted dialogue may show the sender refused (`MAIL FROM:<a@b>` then `501 <a@b>...`).
    let senders: Vec<String> = MAIL_FROM
        .captures_iter(prose)
        .filter_map(|c| c.get(1))
        .map(|m| m.as_str().to_ascii_lowercase())
        .collect();
    for tier in PLAIN_RECIPIENT.iter() {
        let mut found: Vec<(usize, String)> = Vec::new();
        for cap in tier.iter().flat_map(|p| p.captures_iter(prose)) {
            if let Some(m) = cap.get(1) {
                let address = m.as_str().to_ascii_lowercase();
                if !is_mailer_local_part(local_part(&address))
                    && !senders.contains(&address)
                    && !found.iter().any(|(_, a)| *a == address)
                {
                    found.push((m.start(), address));
                }
            }
        }
        if !found.is_empty() {
            found.sort_by_key(|(at, _)| *at);
            return found.into_iter().map(|(_, a)| a).collect();
        }
    }
    Vec::new()
}

fn ids_in_text(text: &str, own_id: &str, ids: &mut Vec<String>) {
    let end = text.floor_char_boundary(BODY_SCAN_LIMIT);
    for cap in BODY_MESSAGE_ID.captures_iter(&text[..end]) {
        if let Some(id) = cap.get(1) {
            let id = id.as_str().trim_matches(['<', '>']);
            if id != own_id {
                push_unique(ids, id.to_string());
            }
        }
    }
}

/// Fills `bounced_message_ids`, `failed_recipients` and `delivery_actions` of `out`.
pub fn fill(msg: &Message<'_>, out: &mut ParsedMessage) {
    for value in out
        .header_all("x-failed-recipients")
        .flat_map(|v| v.split(','))
        .map(recipient_address)
        .collect::<Vec<_>>()
    {
        push_unique(&mut out.failed_recipients, value);
    }
    let has_status_part = msg.parts.iter().any(|p| {
        p.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct
                    .subtype()
                    .is_some_and(|s| s.to_ascii_lowercase().ends_with("delivery-status"))
        })
    });
    if !has_status_part && !looks_like_report(out) {
        return;
    }
    let own_id = out.message_id.clone();
    let mut ids: Vec<String> = Vec::new();
    let mut texts: Vec<Cow<'_, str>> = Vec::new();
    // Parts of nested messages live inside the nested message, so this sees the report's own
    // parts and each returned original as one part.
    for part in msg.parts.iter().skip(1) {
        // A returned original pasted after a boundary without MIME headers of its own: its
        // headers become the part's headers.
        if let Some(id) = part
            .headers
            .iter()
            .find(|h| matches!(h.name, mail_parser::HeaderName::MessageId))
            .and_then(|h| h.value.as_text())
        {
            let id = id.trim().trim_matches(['<', '>']);
            if id != own_id {
                push_unique(&mut ids, id.to_string());
            }
        }
        let ctype = part
            .content_type()
            .map(|ct| {
                (
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype()
                        .map(str::to_ascii_lowercase)
                        .unwrap_or_default(),
                )
            })
            .unwrap_or_default();
        match (ctype.0.as_str(), ctype.1.as_str(), &part.body) {
            (_, _, PartType::Message(nested)) => match nested.message_id() {
                Some(id) => {
                    let id = id.trim().trim_matches(['<', '>']);
                    if id != own_id {
                        push_unique(&mut ids, id.to_string());
                    }
                }
                // mail-parser sometimes parses a returned original without finding its
                // headers (odd charset parameters on the part); they are still text.
                None => texts.push(String::from_utf8_lossy(nested.raw_message())),
            },
            ("message", "delivery-status" | "global-delivery-status", _) => {
                let body = String::from_utf8_lossy(part.contents());
                read_delivery_status(&body, out);
                // A report whose next boundary is broken carries the returned headers
                // inside this part.
                texts.push(body);
            }
            ("message", "disposition-notification" | "global-disposition-notification", _)
            | ("text", "rfc822-headers" | "global-headers", _) => {
                ids_in_text(&String::from_utf8_lossy(part.contents()), &own_id, &mut ids);
            }
            // A returned original that mail-parser could not parse as a message, or only a
            // fragment of it: its headers are still readable text.
            ("message", "rfc822" | "global" | "partial", _) => {
                ids_in_text(&String::from_utf8_lossy(part.contents()), &own_id, &mut ids);
            }
            (_, _, PartType::Text(t)) => texts.push(Cow::Borrowed(t.as_ref())),
            _ => {}
        }
    }
    if ids.is_empty() {
        ids_in_text(&out.text, &own_id, &mut ids);
        for t in &texts {
            ids_in_text(t, &own_id, &mut ids);
        }
    }
    out.bounced_message_ids = ids;
    // Neither a delivery-status part nor `X-Failed-Recipients`: the MTA said it in words. (A
    // delivery-status part that names no failure means none: a delay, a success.)
    if out.failed_recipients.is_empty() && !has_status_part && out.delivery_actions.is_empty() {
        out.failed_recipients = plain_text_recipients(&out.text);
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::parse;

    const DSN: &str = "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n\
To: support@example.test\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <bounce-1@mx.example.net>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain\r\n\
\r\n\
This is the mail system at host mx.example.net.\r\n\
--b\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.net\r\n\
\r\n\
Final-Recipient: rfc822; <Bob@Example.NET>\r\n\
Original-Recipient: rfc822;bob.alias@example.net\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
\r\n\
Final-Recipient: rfc822; carol@example.net\r\n\
Action: delayed\r\n\
Status: 4.4.1\r\n\
\r\n\
--b\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: support@example.test\r\n\
To: bob@example.net\r\n\
Message-ID: <sd.abc@example.test>\r\n\
Subject: Your request\r\n\
\r\n\
Hello\r\n\
--b--\r\n";

    #[test]
    fn structured_dsn_gives_the_original_id_and_only_failed_recipients() {
        let m = parse(DSN.as_bytes());
        assert_eq!(m.bounced_message_ids, vec!["sd.abc@example.test"]);
        assert_eq!(
            m.failed_recipients,
            vec!["bob@example.net", "bob.alias@example.net"]
        );
        assert_eq!(m.delivery_actions, vec!["failed", "delayed"]);
        assert_eq!(m.report_type.as_deref(), Some("delivery-status"));
    }

    #[test]
    fn unstructured_bounce_quoting_headers_gives_the_original_id() {
        let raw = "From: MAILER-DAEMON@old.example.net\r\nSubject: failure notice\r\nMessage-ID: <q1@old.example.net>\r\nX-Failed-Recipients: Bob@Example.net\r\n\r\nSorry, we were unable to deliver your message.\r\n\r\n--- Below this line is a copy of the message.\r\n\r\nFrom: support@example.test\r\nMessage-ID:\r\n <sd.xyz@example.test>\r\n\r\nHello\r\n";
        let m = parse(raw.as_bytes());
        assert_eq!(m.failed_recipients, vec!["bob@example.net"]);
        // A quoted header keeps its folding: the id on the next line is found too.
        assert_eq!(m.bounced_message_ids, vec!["sd.xyz@example.test"]);
        let one_line = raw.replace("Message-ID:\r\n <sd.xyz", "Message-ID: <sd.xyz");
        assert_eq!(
            parse(one_line.as_bytes()).bounced_message_ids,
            vec!["sd.xyz@example.test"]
        );
    }

    /// A report from `from` with subject `subject` and plain-text `body`, CRLF line ends.
    fn plain_report(from: &str, subject: &str, body: &str) -> String {
        format!(
            "From: {from}\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <r1@mx.example.net>\r\n\r\n{}",
            body.replace('\n', "\r\n")
        )
    }

    #[test]
    fn qmail_names_the_failed_address_in_its_own_words_not_the_returned_to() {
        let raw = plain_report(
            "MAILER-DAEMON@mx.example.test",
            "failure notice",
            "Hi. This is the qmail-send program at mx.example.test.\n\
I'm afraid I wasn't able to deliver your message to the following addresses.\n\
This is a permanent error; I've given up. Sorry it didn't work out.\n\n\
<team@example.test>:\n\
The users mailfolder is over the allowed quota (size). (#5.2.2)\n\n\
--- Below this line is a copy of the message.\n\n\
Return-Path: <support@example.test>\n\
From: Support <support@example.test>\n\
Message-ID: <sd.note.1@example.test>\n\
To: team@example.test, paul@customers.example\n\n\
Nouvelle demande\n",
        );
        let m = parse(raw.as_bytes());
        assert_eq!(m.failed_recipients, vec!["team@example.test"]);
        assert_eq!(m.bounced_message_ids, vec!["sd.note.1@example.test"]);
    }

    #[test]
    fn exim_postfix_and_sendmail_texts_without_a_status_part_name_their_recipients() {
        let exim = plain_report(
            "Mail Delivery System <Mailer-Daemon@mx.example.net>",
            "Mail delivery failed: returning message to sender",
            "This message was created automatically by mail delivery software.\n\n\
A message that you sent could not be delivered to one or more of its\n\
recipients. This is a permanent error. The following address(es) failed:\n\n\
  Alice.Durand@Example.NET\n\
    host mx.example.net [192.0.2.1]\n\
    SMTP error from remote mail server after RCPT TO:<alice.durand@example.net>:\n\
    550 5.1.1 User unknown\n\n\
------ This is a copy of the message, including all the headers. ------\n\n\
Return-path: <support@example.test>\n\
To: alice.durand@example.net, bob@example.net\n",
        );
        assert_eq!(
            parse(exim.as_bytes()).failed_recipients,
            vec!["alice.durand@example.net"]
        );
        let postfix = plain_report(
            "MAILER-DAEMON@mx.example.org (Mail Delivery System)",
            "Undelivered Mail Returned to Sender",
            "This is the mail system at host mx.example.org.\n\n\
I'm sorry to have to inform you that your message could not\n\
be delivered to one or more recipients.\n\n\
For further assistance, please send mail to postmaster.\n\n\
                   The mail system\n\n\
<carol@example.org> (expanded from <sales@example.org>): host\n\
    mail.example.org[192.0.2.2] said: 550 5.2.2 <carol@example.org>: Mailbox full\n",
        );
        assert_eq!(
            parse(postfix.as_bytes()).failed_recipients,
            vec!["carol@example.org"]
        );
        // A sendmail transcript that also shows the sender refused: only recipients count.
        let sendmail = plain_report(
            "Mail Delivery Subsystem <MAILER-DAEMON@old.example.edu>",
            "Returned mail: User unknown",
            "   ----- Transcript of session follows -----\n\
>>> MAIL From:<support@example.test>\n\
<<< 501 <support@example.test>... sender refused for a while\n\
>>> RCPT To:<dave@example.edu>\n\
<<< 550 <dave@example.edu>... User unknown\n\
550 <dave@example.edu>... User unknown\n\
   ----- Unsent message follows -----\n\
From: support@example.test\n\
To: dave@example.edu\n",
        );
        assert_eq!(
            parse(sendmail.as_bytes()).failed_recipients,
            vec!["dave@example.edu"]
        );
    }

    #[test]
    fn exchange_reports_in_english_and_french_name_the_recipient_not_the_original_to_list() {
        let exchange_2003 = plain_report(
            "System Administrator <postmaster@corp.example.com>",
            "Undeliverable: Your request",
            "Your message\n\n  To:      erin@corp.example.com; frank@corp.example.com\n\
  Subject: Your request\n  Sent:    Mon, 1 Dec 2026 10:00:00 +0100\n\n\
did not reach the following recipient(s):\n\n\
erin@corp.example.com on Mon, 1 Dec 2026 10:00:05 +0100\n\
    The recipient name is not recognized\n",
        );
        assert_eq!(
            parse(exchange_2003.as_bytes()).failed_recipients,
            vec!["erin@corp.example.com"]
        );
        let exchange_fr = plain_report(
            "Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@corp.example.fr>",
            "Non remis : [CHT-4] Votre demande",
            "Votre message à gisele.martin@corp.example.fr n'a pas pu être remis.\n\n\
gisele.martin n'a pas été trouvé sur corp.example.fr.\n\n\
Informations de diagnostic pour les administrateurs :\n\n\
Serveur de génération : PR1P264MB.FRAP264.PROD.OUTLOOK.COM\n\n\
Remote server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound'\n\n\
En-têtes de message d'origine :\n\n\
To: gisele.martin@corp.example.fr, henri@corp.example.fr\n",
        );
        assert_eq!(
            parse(exchange_fr.as_bytes()).failed_recipients,
            vec!["gisele.martin@corp.example.fr"]
        );
    }

    #[test]
    fn a_status_part_that_names_no_failure_is_not_read_again_as_text() {
        let delayed = DSN.replace("Action: failed", "Action: delayed").replace(
            "This is the mail system at host mx.example.net.",
            "<bob@example.net>: delayed",
        );
        let m = parse(delayed.as_bytes());
        assert!(m.failed_recipients.is_empty(), "{:?}", m.failed_recipients);
    }

    #[test]
    fn a_person_forwarding_headers_is_not_a_bounce_report() {
        let raw = "From: bob@example.net\r\nSubject: Fwd: your mail\r\nMessage-ID: <p1@example.net>\r\n\r\nSee below\r\n\r\nMessage-ID: <other@example.org>\r\n";
        let m = parse(raw.as_bytes());
        assert!(m.bounced_message_ids.is_empty());
    }
}
