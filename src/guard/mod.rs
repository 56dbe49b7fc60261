//! Is this mail a person's, and may we answer it? Bounces, auto-replies, foreign lists, bulk
//! mail, reports, challenge-response systems, robots and our own mail coming back are not human
//! mail and are never acknowledged (RFC 3834 §2): they are stored and linked, with the reason
//! recorded, but nobody answers them. A person may also ask for no automatic answer
//! (`X-Auto-Response-Suppress`), or write through a group or list that stands in front of the
//! support address: that mail is human, opens or joins a ticket and reaches the team, and only
//! the acknowledgement is withheld. [`inspect`] keeps the two apart in its [`Verdict`].
//!
//! Pure logic over a [`ParsedMessage`]; the first rule that matches gives the kind and reason.
//! Rules go from the most certain (our own loop header) to heuristics (wording of MTAs that
//! mark nothing, see `bounce`). Subject heuristics are anchored at the start of the subject,
//! or need the body to agree, so a person writing "Re: Out of office feature" or that their
//! own mail bounced is still answered.

mod ack;
mod auth;
mod bounce;
mod own;

use std::sync::LazyLock;

use regex::Regex;

use crate::parse::{Mailbox, ParsedMessage};

use crate::parse::report::{
    BOUNCE_SUBJECT, DELAY_SUBJECT, WEAK_BOUNCE_SUBJECT, is_mailer_local_part,
};
pub use ack::{AckHistory, AckPolicy, Refusal, may_acknowledge};
pub use auth::{Authentication, sender_authenticated};
use bounce::BodySays;
use own::ListOwner;

/// What the guard needs to know about us.
#[derive(Debug, Clone)]
pub struct GuardPolicy {
    /// Our own addresses, lower-cased (support address + aliases).
    pub own_addresses: Vec<String>,
    /// Domain of the support address: our own Message-IDs look like `sd.<...>@<own_domain>`.
    pub own_domain: String,
    /// Regex of machine senders' local parts, matched as given; from config
    /// guard.robot_local_parts, which [`LocalPartPattern`](crate::config::LocalPartPattern)
    /// compiles anchored and case-insensitive.
    pub robot_local_parts: Regex,
    /// Value of our loop header `X-Supportd-Loop` (the support address); mail carrying it is
    /// our own coming back.
    pub loop_header_value: String,
}

impl GuardPolicy {
    /// Builds the policy around the already compiled `robot_local_parts`. The loop header value
    /// is the first own address.
    pub fn new(own_addresses: Vec<String>, own_domain: &str, robot_local_parts: Regex) -> Self {
        let own_addresses: Vec<String> = own_addresses
            .into_iter()
            .map(|a| a.trim().to_ascii_lowercase())
            .collect();
        Self {
            loop_header_value: own_addresses.first().cloned().unwrap_or_default(),
            own_addresses,
            own_domain: own_domain.trim().to_ascii_lowercase(),
            robot_local_parts,
        }
    }
}

/// Why a message is automated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AutomatedKind {
    /// A non-delivery report: the recipients in `failed_recipients` (or the ticket's customer)
    /// do not receive mail.
    Bounce,
    /// Vacation and other automatic answers.
    AutoReply,
    MailingList,
    Bulk,
    /// Reports that are not failures: MDN read receipts, ARF feedback, delay warnings,
    /// successful delivery notices.
    Report,
    /// "Verify you are human before I accept your mail" systems (Boxbe, Spam Arrest, ...).
    ChallengeResponse,
    /// noreply and other machine senders.
    Robot,
    /// Our own address or our loop header.
    OwnMail,
}

/// The guard's verdict on an automated message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Automated {
    pub kind: AutomatedKind,
    /// Short machine-readable reason, e.g. "auto-submitted: auto-replied", "precedence: bulk",
    /// "list-id", "null return-path", "multipart/report; report-type=delivery-status".
    pub reason: String,
}

/// The guard's answer for one message: whether it is human mail at all, and if it is, whether
/// it may be acknowledged and who wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Not human mail, and why: stored and linked, never acknowledged, never a ticket of its
    /// own.
    pub automated: Option<Automated>,
    /// Human mail that must not be acknowledged, and why (the sender's
    /// `X-Auto-Response-Suppress`, our own group or list relaying it). It still opens or joins
    /// a ticket and the team is told. Always `None` when `automated` is set.
    pub withhold: Option<String>,
    /// The person who wrote the message when From is our own group's address (the DMARC
    /// rewrite `'Name' via Group <group@...>`): taken from `X-Original-From` or `Reply-To`. The
    /// customer to record instead of From.
    pub person: Option<Mailbox>,
}

fn hit(kind: AutomatedKind, reason: impl Into<String>) -> Option<Automated> {
    Some(Automated {
        kind,
        reason: reason.into(),
    })
}

/// Compiles one of the module's fixed patterns; they are tested, so failure is a bug.
fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static regex")
}

/// Subjects that autoresponders generate, anchored at the start (after optional `[tags]`), or
/// their typical suffix. "Out of office" counts only as a prefix followed by a colon, or as the
/// whole Lotus Notes sentence "X is out of the office.", never as words inside a subject.
static AUTO_REPLY_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)^\s*\[?\s*(?:",
        r"auto\s*:|auto[- ]?reply\b|auto[- ]?response\b|automatic reply|automatic response",
        r"|automated (?:reply|response)|r[ée]ponse automatique|risposta automatica",
        r"|respuesta autom[áa]tica|resposta autom[áa]tica|automatische (?:antwort|beantwoording)",
        r"|automatisch antwoord|automatyczna odpowied[źz]|abwesenheitsnotiz|abwesenheit\s*:",
        r"|out of (?:the )?office\s*(?:auto ?reply|reply|notice|message)?\s*:",
        r"|absence du bureau\s*:|absent\s*:|vacation (?:reply|response|message|notice|auto ?reply)",
        r"|vacation\s*:|on vacation\s*:|away from (?:the )?office\s*:|i am out of the office",
        r"|i'm out of the office|je suis absente?\b|message d'absence|ooo\s*:",
        r")",
        r"|^[^:]+ is out of (?:the )?office\.?\s*(?:\([^)]*\))?\s*$",
        r"|\((?:automatic|auto)[- ]?(?:response|reply)\)\s*$"
    ))
});

/// Abuse reports that predate ARF (Hotmail's JMRP, provider abuse desks).
static COMPLAINT_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\s*(?:complaint about message from|abuse report\b|spamtraphit by|\[?abuse\]? report for)",
    )
});

/// Subjects of challenge-response systems.
static CHALLENGE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)(?:please verify (?:that )?you are (?:a )?human|sender verification",
        r"|verify your (?:e-?mail )?address to (?:deliver|reach)|confirm you are (?:a )?human",
        r"|whitelist request|approve (?:your|my) (?:e-?mail|message)|boxbe|spam ?arrest)"
    ))
});

/// Body phrases of challenge-response systems, looked for only in mail that already carries a
/// machine hint, or in the first lines; a customer asking about sender verification is human.
static CHALLENGE_BODY: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)(?:boxbe guest list|x-boxbe-notice|protected by bluebottle|spam ?arrest",
        r"|please verify (?:that )?you are (?:a )?human|to have your (?:e-?mail )?address added to",
        r"|added to (?:my|the recipient's) (?:allowed|approved|guest|white) ?list",
        r"|i use (?:an? )?(?:anti-?spam|challenge|sender verification)",
        r"|verify (?:that )?you are a (?:real )?(?:person|human)|mailchannels sender verification)"
    ))
});

/// Domains of challenge-response services.
const CHALLENGE_DOMAINS: &[&str] = &[
    "boxbe.com",
    "spamarrest.com",
    "bluebottle.com",
    "mailblocks.com",
    "sanebox.com",
];

/// Opening lines of non-delivery reports from MTAs that mark nothing, neither in headers nor in
/// the subject. Only read in the first lines of the body (a person forwarding a bounce writes
/// above it) and only with a machine hint.
static BOUNCE_BODY: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)(?:this is the mail system at host|i'm sorry to have to inform you that your message",
        r"|this message was created automatically by mail delivery software",
        r"|delivery to the following recipients? (?:failed|has been delayed)",
        r"|your message (?:could not|cannot|was not|wasn't) (?:be )?delivered",
        r"|message could not be delivered|could not be delivered to|the following addresses had permanent fatal errors",
        r"|unable to deliver your message|delivery has failed to these recipients",
        r"|hi\. this is the qmail-send program|the original message was received at",
        r"|your message did not reach some or all of the intended recipients",
        r"|permanent error|undeliverable|returned to sender)"
    ))
});

fn local_part(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(l, _)| l)
}

fn domain(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

/// The value of a structured header before any `;` parameters, lower-case.
fn token(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The first non-blank lines of the body, for the phrase heuristics.
fn opening(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .take(8)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Signs that a machine sent the message; not enough alone for every rule, but enough to let
/// the weaker heuristics (body phrases, weak subjects) decide. `sender` is the author's address
/// (From, or the person behind our group's DMARC rewrite).
fn machine_hint(msg: &ParsedMessage, policy: &GuardPolicy, sender: &str) -> bool {
    let envelope_local = |v: Option<&str>| {
        v.is_some_and(|v| own::addresses_in(v).any(|a| is_mailer_local_part(local_part(&a))))
    };
    msg.return_path.as_deref() == Some("")
        || is_mailer_local_part(local_part(sender))
        || policy.robot_local_parts.is_match(local_part(sender))
        || msg
            .header("auto-submitted")
            .is_some_and(|v| token(v) != "no")
        // A person's From can be unusable (`@domain`); nobody to answer at all is a machine's.
        || (msg.from.is_none() && msg.reply_to.is_none() && msg.sender.is_none())
        || bounce::system_name(msg)
        || envelope_local(msg.return_path.as_deref())
        || envelope_local(msg.header("sender"))
        || msg.header("x-ms-exchange-message-is-ndr").is_some()
        || msg.header("x-ms-embedded-report").is_some()
}

/// Whether `msg` is human mail, may be acknowledged, and who wrote it; see [`Verdict`].
pub fn inspect(msg: &ParsedMessage, policy: &GuardPolicy) -> Verdict {
    let person = own::dmarc_author(msg, policy);
    let list = own::list_owner(msg, policy);
    let automated = automated(msg, policy, person.as_ref(), &list);
    let withhold = match automated {
        Some(_) => None,
        None => withhold(msg, &list),
    };
    Verdict {
        automated,
        withhold,
        person,
    }
}

/// Why a person's mail gets no acknowledgement, if it gets none.
fn withhold(msg: &ParsedMessage, list: &ListOwner) -> Option<String> {
    let mut reasons: Vec<String> = Vec::new();
    // The sender asks for no automatic answer (Exchange and Outlook set it on mail sent by
    // rules, by tools on a person's behalf, and on some people's everyday mail): honour it for
    // the acknowledgement, which is what the header is for, and nothing more.
    if let Some(v) = msg.header("x-auto-response-suppress") {
        reasons.push(format!(
            "the sender asked for no automatic reply (x-auto-response-suppress: {})",
            v.trim()
        ));
    }
    if let ListOwner::Ours(reason) = list {
        reasons.push(format!("relayed by our own list ({reason})"));
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// Whether `msg` is automated, and why; None for mail a person wrote to us. `person` is the
/// author behind our group's DMARC rewrite, `list` who runs the list that relayed it.
fn automated(
    msg: &ParsedMessage,
    policy: &GuardPolicy,
    person: Option<&Mailbox>,
    list: &ListOwner,
) -> Option<Automated> {
    use AutomatedKind::*;
    let from = person.map_or(msg.from_address(), |p| p.address.as_str());
    // "From: MAILER-DAEMON" without a domain, or a quoted `"MAILER-DAEMON"@host` the parser
    // reads as a name and an address without local part, gives no usable local part; the
    // header text still names the sender.
    let from_header = msg.header("from").unwrap_or("").to_ascii_lowercase();
    let from_local = if local_part(from).is_empty() {
        from_header
            .split(|c: char| matches!(c, '<' | '>' | '"' | '(' | ')') || c.is_whitespace())
            .map(local_part)
            .find(|w| is_mailer_local_part(w))
            .unwrap_or("")
    } else {
        local_part(from)
    };
    // A display name that is an MTA's mailbox ("MAILER-DAEMON" <bounces@relay>) says the same.
    let mailer_name = msg
        .from
        .as_ref()
        .and_then(|m| m.name.as_deref())
        .filter(|n| is_mailer_local_part(n))
        .map(str::to_ascii_lowercase);
    let subject = msg.subject.as_str();

    // 1. Our own mail coming back: certain, and the most dangerous loop.
    let mut loop_values = msg.header_all("x-supportd-loop").peekable();
    if loop_values.peek().is_some() {
        if loop_values.any(|v| v.trim().eq_ignore_ascii_case(&policy.loop_header_value)) {
            return hit(OwnMail, "x-supportd-loop");
        }
        // Another supportd (a customer's helpdesk) answering us: still a machine.
        return hit(AutoReply, "x-supportd-loop (other instance)");
    }
    if let Some(reason) = own::loop_naming_us(msg, policy) {
        return hit(OwnMail, reason);
    }
    if !from.is_empty() && policy.is_own(from) {
        return hit(OwnMail, "own address");
    }
    if !msg.message_id_synthesized && !policy.own_domain.is_empty() {
        let id = msg.message_id.to_ascii_lowercase();
        if id.starts_with("sd.") && domain(&id) == policy.own_domain {
            return hit(OwnMail, "own message-id");
        }
    }

    // 2. Challenge-response before reports: Boxbe dresses its challenge as a DSN.
    if CHALLENGE_DOMAINS.contains(&domain(from))
        || msg.header("x-bluebottle-request").is_some()
        || msg.header("x-boxbe-notice").is_some()
    {
        return hit(ChallengeResponse, format!("from: {}", domain(from)));
    }
    if CHALLENGE_SUBJECT.is_match(subject) && machine_hint(msg, policy, from) {
        return hit(ChallengeResponse, "subject: challenge-response");
    }

    // 3. Structured reports (RFC 3462/3464/3798/5965).
    if msg.content_type == "multipart/report" {
        let rt = msg.report_type.as_deref().unwrap_or("");
        let reason = if rt.is_empty() {
            "multipart/report".to_string()
        } else {
            format!("multipart/report; report-type={rt}")
        };
        return match rt {
            "delivery-status" | "global-delivery-status" => {
                if CHALLENGE_BODY.is_match(&opening(&msg.text)) {
                    return hit(ChallengeResponse, reason);
                }
                let any_failed = msg.delivery_actions.iter().any(|a| a.starts_with("fail"));
                if !msg.delivery_actions.is_empty()
                    && !any_failed
                    && msg.failed_recipients.is_empty()
                {
                    // Delayed, relayed or delivered: nobody bounced.
                    hit(Report, format!("{reason} (no failure)"))
                } else {
                    hit(Bounce, reason)
                }
            }
            "disposition-notification" | "feedback-report" => hit(Report, reason),
            _ if DELAY_SUBJECT.is_match(subject) => hit(Report, reason),
            _ => hit(Bounce, reason),
        };
    }
    if msg.header("x-failed-recipients").is_some() {
        return hit(Bounce, "x-failed-recipients");
    }
    // A delivery-status part in a report that does not say it is one (multipart/mixed from
    // McAfee and other gateways); a forward of a report keeps it inside the forwarded message.
    let status_part = !bounce::is_forward(subject) && !msg.delivery_actions.is_empty();
    if status_part && !msg.failed_recipients.is_empty() {
        return hit(Bounce, "message/delivery-status");
    }
    let mailer = if is_mailer_local_part(from_local) {
        Some(from_local.to_ascii_lowercase())
    } else {
        mailer_name
    };
    if let Some(mailer) = mailer {
        let reason = format!("from: {mailer}");
        if DELAY_SUBJECT.is_match(subject) {
            return hit(Report, reason);
        }
        return hit(Bounce, reason);
    }
    if COMPLAINT_SUBJECT.is_match(subject) {
        return hit(Report, format!("subject: {subject}"));
    }
    if DELAY_SUBJECT.is_match(subject) && machine_hint(msg, policy, from) {
        return hit(Report, format!("subject: {subject}"));
    }
    // Where MTAs put it, the subject is enough; unless subject and body both read like a
    // person and nothing else says a machine sent it ("Mail delivery failed when I write to
    // billing?").
    let hint = machine_hint(msg, policy, from);
    let body = bounce::body_says(&msg.text);
    if (BOUNCE_SUBJECT.is_match(subject)
        && (hint || !bounce::subject_is_personal(subject) || !bounce::reads_like_person(&msg.text)))
        || (WEAK_BOUNCE_SUBJECT.is_match(subject) && hint)
    {
        return hit(Bounce, format!("subject: {subject}"));
    }
    if status_part {
        return hit(Report, "message/delivery-status (no failure)");
    }
    if let Some(report) = unmarked_report(subject, body, hint) {
        return Some(report);
    }

    // 4. RFC 3834 and the vendor headers that predate it.
    if let Some(v) = msg.header("auto-submitted") {
        let t = token(v);
        if !t.is_empty() && t != "no" {
            let kind = if t == "auto-replied" {
                AutoReply
            } else if BOUNCE_BODY.is_match(&opening(&msg.text)) {
                Bounce
            } else {
                Robot
            };
            return hit(kind, format!("auto-submitted: {t}"));
        }
    }
    for name in [
        "x-autoreply",
        "x-autorespond",
        "x-autoresponse",
        "x-autoreply-from",
        "x-mail-autoreply",
    ] {
        if let Some(v) = msg.header(name) {
            let t = token(v);
            // "X-Autoreply: no" exists in the wild as an explicit "I am a person".
            if t != "no" && t != "false" {
                return hit(AutoReply, name);
            }
        }
    }
    if msg
        .header("x-autogenerated")
        .is_some_and(|v| token(v) == "reply")
    {
        return hit(AutoReply, "x-autogenerated: reply");
    }
    if msg
        .header("x-fc-machinegenerated")
        .is_some_and(|v| token(v) == "true")
    {
        return hit(Robot, "x-fc-machinegenerated: true");
    }
    if let Some(v) = msg.header("x-otrs-loop").or(msg.header("x-loop"))
        && matches!(token(v).as_str(), "yes" | "true")
    {
        return hit(Robot, "x-loop");
    }
    if msg
        .header("x-amazon-mail-relay-type")
        .is_some_and(|v| token(v) == "notification")
    {
        return hit(Robot, "x-amazon-mail-relay-type: notification");
    }
    // Our own group or list relaying a person's mail carries list headers and Precedence:
    // those say who relayed it, not that a machine wrote it. (Precedence alone names no list,
    // so it keeps its meaning.)
    let our_list = matches!(list, ListOwner::Ours(_));
    for name in ["precedence", "x-precedence"] {
        if let Some(v) = msg.header(name) {
            let t = token(v);
            let kind = match t.as_str() {
                "bulk" | "junk" => Some(Bulk),
                "list" => Some(MailingList),
                "auto_reply" | "auto-reply" => Some(AutoReply),
                _ => None,
            };
            let relayed = our_list && matches!(kind, Some(MailingList | Bulk));
            if let Some(kind) = kind.filter(|_| !relayed) {
                // A list that sets Precedence: bulk is still a list.
                let kind = if kind == Bulk && msg.header("list-id").is_some() {
                    MailingList
                } else {
                    kind
                };
                return hit(kind, format!("{name}: {t}"));
            }
        }
    }
    // RFC 2369/2919 headers, ezmlm's Mailing-List and fml's X-ML-*: list software, and list
    // owners' notices ("you are not a member"), never a person writing to us directly.
    if !our_list {
        if let Some(name) = own::LIST_HEADERS.iter().find(|h| msg.header(h).is_some()) {
            return hit(MailingList, *name);
        }
        // Newsletters and transactional senders carry List-Unsubscribe without being a list.
        if msg.header("list-unsubscribe").is_some() {
            return hit(Bulk, "list-unsubscribe");
        }
    }

    // 5. Senders and envelopes.
    if msg.return_path.as_deref() == Some("") {
        let kind = if AUTO_REPLY_SUBJECT.is_match(subject) {
            AutoReply
        } else if CHALLENGE_BODY.is_match(&opening(&msg.text)) {
            ChallengeResponse
        } else if BOUNCE_BODY.is_match(&opening(&msg.text)) {
            Bounce
        } else {
            // RFC 3834 §3.3 asks autoresponders for the null path; without a failure
            // phrase, treating it as a bounce would mark a live address as dead.
            AutoReply
        };
        return hit(kind, "null return-path");
    }
    if !from_local.is_empty() && policy.robot_local_parts.is_match(from_local) {
        return hit(Robot, format!("from: {}", from_local.to_ascii_lowercase()));
    }

    // 6. Heuristics for systems that mark nothing.
    if AUTO_REPLY_SUBJECT.is_match(subject) {
        return hit(AutoReply, format!("subject: {subject}"));
    }
    if machine_hint(msg, policy, from) {
        let head = opening(&msg.text);
        if CHALLENGE_BODY.is_match(&head) {
            return hit(ChallengeResponse, "body: challenge-response");
        }
        if BOUNCE_BODY.is_match(&head) {
            return hit(Bounce, "body: delivery failure");
        }
    }
    None
}

/// A delivery report that marks nothing (no DSN, no null sender, no MTA sender, no subject an
/// MTA starts with): recognised by the opening of its body, or by failure wording in the
/// subject or body together with a machine sender (`hint`); see `bounce`.
fn unmarked_report(subject: &str, body: BodySays, hint: bool) -> Option<Automated> {
    use AutomatedKind::*;
    if bounce::is_forward(subject) {
        return None;
    }
    let subject_says = bounce::subject_mentions_failure(subject);
    match body {
        BodySays::Failure => return hit(Bounce, "body: delivery failure"),
        BodySays::Delay => return hit(Report, "body: delivery delayed"),
        BodySays::Evidence if subject_says => return hit(Bounce, format!("subject: {subject}")),
        _ => {}
    }
    if hint && (subject_says || matches!(body, BodySays::Evidence)) {
        return hit(Bounce, "machine sender: delivery failure");
    }
    None
}

#[cfg(test)]
mod tests;
