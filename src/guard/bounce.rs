//! Delivery reports that mark nothing: gateways, antivirus relays, Exchange, GroupWise and
//! Domino often send their non-delivery reports as plain mail, with no DSN part, no null
//! sender and no robot local part. What gives them away is their wording, in the subject and
//! at the top of the body, and senders whose names say what they are.
//!
//! The wording comes from real reports (sisimai's and Mail::DeliveryStatus::BounceParser's
//! sets in `../shared/corpora`) and from the patterns published bounce parsers match
//! (sisimai's `Lhost` modules, flufl.bounce's `simplematch`, PHP-Bounce-Handler), in English,
//! French and the languages Exchange localises into.
//!
//! A person who writes that their own mail bounced is still a person: a report's sentence
//! counts only at the top of what the sender wrote (above any quoted or forwarded text), with
//! nothing a person would write before it ("I", "my", "nous", a question, "see below");
//! failure wording a person could use counts only in a lead with nothing personal at all; and
//! wording in the subject counts alone only where MTAs put it ([`BOUNCE_SUBJECT`]), elsewhere
//! in a subject it needs the body or the sender to agree.

use std::sync::LazyLock;

use regex::Regex;

use crate::parse::ParsedMessage;
use crate::parse::report::{BOUNCE_SUBJECT, FAILURE_SUBJECT_WORDING};

use super::re;

/// Sentences MTAs and gateways open their failure reports with; not what a person writes in
/// their own words. Matched on the body's lead with white space collapsed and lower-cased.
static FAILURE_BODY: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:this is the (?:mail system|mail delivery (?:system|agent|subsystem|service)",
        r"|mail transport (?:system|agent)|postfix program|qmail-send program|mail ?server|e-?mail server",
        r"|deliver program|email delivery system|machine generated message from mail service)(?-u:\b)",
        r"|i'm sorry to have to inform you that (?:your|the) message",
        r"|i'm afraid i wasn't able to deliver|this is a permanent error; i've given up",
        r"|(?:this|the) message was created automatically by (?:the )?mail delivery software",
        r"|(?:this is an|an) automatically generated delivery status notification",
        r"|a message that you sent could not be delivered",
        r"|delivery to the following recipients? (?:failed|was aborted|has failed)",
        r"|delivery has failed to these recipients(?-u:\b)",
        r"|your message did not reach some or all of the intended recipients",
        r"|did not reach the following recipient",
        r"|your (?:e-?mail |mail )?message (?:to (?:[^.!?]|\.\w)*? )?(?:wasn't|was not|couldn't be|could not be|cannot be|can't be|has not been) delivered",
        r"|your message to (?:[^.!?]|\.\w)*? (?:couldn't|could not|can't|cannot) be delivered",
        r"|the following message to (?:[^.!?]|\.\w)*? was undeliverable",
        r"|the message (?:that )?you sent (?:to (?:[^.!?]|\.\w)*? )?(?:was undeliverable|couldn't be delivered|could not be delivered)",
        r"|unable to deliver (?:your |the )?message to the following",
        r"|sorry,? (?:we were |i was )?unable to deliver your message",
        r"|the original message was received at (?:mon|tue|wed|thu|fri|sat|sun)",
        r"|the following addresses had (?:permanent fatal errors|delivery problems)",
        r"|-+ ?transcript of session follows ?-+",
        r"|your message could not be sent(?-u:\b)|could not be delivered because of",
        r"|the following recipients were affected|was not delivered to ?:|-+ failure reasons",
        r"|here is your list of failed recipients|failed addresses follow ?:",
        r"|the following addresses did not receive a copy of your message",
        r"|the e-?mail below could not be delivered|a message could not be delivered to ?:",
        r"|message not delivered to the following addresses|your message has encountered delivery problems",
        r"|could not deliver (?:the )?message to the following recipient",
        r"|the following recipient\(s\) could not be reached|the following address(?:es)? failed ?:",
        r"|we're writing to let you know that the group you tried to contact",
        r"|there was a (?:temporary )?problem delivering your message to",
        r"|your message to (?:[^.!?]|\.\w)*? (?:has been|was) (?:blocked|rejected)",
        r"|this message was undeliverable due to the following reason",
        r"|permanent failure for one or more recipients",
        r"|the mail server could not deliver (?:mail|the message) to",
        r"|(?:failed|unable) to deliver (?:the )?(?:message )?to ['<][\w.+-]+@",
        r"|message from interscan (?:e-mail viruswall|messaging security)",
        r"|mail could not be delivered to the following recipient",
        r"|delivery failed for the following recipient",
        r"|a message that you sent contained one or more recipient addresses that were incorrectly",
        r"|a message from <[^>]*> to: (?:[^.!?]|\.\w)*? was (?:considered unsolicited bulk e-?mail|blocked|rejected|quarantined)",
        r"|\\?\x22notificationtype\\?\x22 ?: ?\\?\x22bounce",
        r"|sent <<< rcpt to:|received >>> [45]\d\d(?-u:\b)",
        r"|your mail sent on(?-u:\b)(?:[^.!?]|\.\w)*? could not be delivered",
        r"|this is the mailer-daemon(?-u:\b)|transcript of session follows",
        r"|this report relates to (?:a|your) message you sent",
        r"|these recipients of your message have been processed by the mail server",
        r"|this is a delivery status notification(?-u:\b)",
        r"|you sent mail to \S+ that's not a valid user",
        r"|i'm sorry to have to tell you that your message",
        r"|we had trouble delivering your message|there was an error delivering your mail to",
        r"|this is the (?:[a-z0-9.-]+ ){0,6}?(?:mail agent|mail server|mta|mail gateway|security gateway|mailer) (?:v[\d.]+ )?at(?-u:\b)",
        r"|this is an automatically generated message from (?:[a-z0-9-]+ ?){1,4}\. i'm sorry",
        r"|this message wasn't delivered to anyone because",
        r"|il recapito non (?:è|e') riuscito per i seguenti destinatari",
        r"|sie erhalten diese e-mail, weil die gruppe, die sie kontaktieren",
        r"|queremos informarte de que el grupo con el que has intentado",
        r"|il se peut que le groupe que vous avez essay[ée] de contacter",
        r"|was blocked by our (?:spam|bulk|virus)",
        r"|an error occurred while trying to deliver the (?:mail|message) to the following recipient",
        r"|each of the following recipients was rejected by a remote mail server",
        r"|\*\* ?(?:message not delivered|address not found|message blocked) ?\*\*",
        r"|(?:^|\. )(?:unknown user|user mailbox exceeds allowed size|invalid final delivery userid|delivery failed \d+ attempts) ?: ?<?[\w.+-]+@",
        r"|delivery failed for the following reason|unable to deliver message to ?: ?<",
        r"|this message could not be delivered(?:\.| due to)",
        r"|(?:this|the) message was created automatically by (?:the )?(?:mail (?:system|server)|e-?mail (?:system|server)|facebook)",
        r"|the following addresses had permanent (?:fatal|delivery) errors",
        r"|your (?:message|mail) to (?:[^.!?]|\.\w)*? was automatically rejected",
        r"|your mail to the following recipients could not be delivered",
        r"|<<< no message collected >>>|the message was not relayed to",
        r"|ваше письмо не может быть доставлено|это письмо создано автоматически",
        // French: Exchange, Outlook.com, Gmail, Orange, Free, Postfix and Exim translations.
        r"|(?:la remise|[ée]chec de la remise) (?:du message )?(?:à|a|pour) ces destinataires",
        r"|votre (?:e-?mail |courriel |message )?(?:message )?(?:(?:à|a|pour) (?:[^.!?]|\.\w)*? )?n'a (?:pas )?pu (?:[êe]tre )?(?:remis|distribu[ée]|d[ée]livr[ée]|achemin[ée])",
        r"|votre message (?:(?:à|a|pour) (?:[^.!?]|\.\w)*? )?n'a pas [ée]t[ée] (?:remis|distribu[ée]|d[ée]livr[ée])",
        r"|le message (?:suivant |ci-dessous )?n'a pas pu [êe]tre (?:remis|distribu[ée]|d[ée]livr[ée])",
        r"|votre message n'est pas parvenu (?:à|a) (?:certains|tous|un ou plusieurs)",
        r"|n'a pas atteint (?:le\(s\) |les |le )?destinataire",
        r"|ce message a [ée]t[ée] (?:cr[ée][ée]|g[ée]n[ée]r[ée]) automatiquement par (?:le |un )?(?:logiciel|syst[èe]me|programme) de (?:distribution|remise|messagerie|livraison)",
        r"|ceci est (?:le syst[èe]me de messagerie|le programme (?:de distribution|qmail-send)|le serveur de messagerie)",
        r"|impossible de (?:remettre|distribuer|d[ée]livrer) (?:le|votre|ce) message",
        r"|je suis d[ée]sol[ée] de vous informer que votre message",
        r"|les destinataires suivants n'ont pas (?:pu [êe]tre atteints|re[çc]u)",
        r"|le message que vous avez envoy[ée] (?:(?:à|a) (?:[^.!?]|\.\w)*? )?(?:n'a pas pu|ne peut pas) [êe]tre (?:remis|distribu[ée]|d[ée]livr[ée])",
        r"|(?:la )?(?:remise|distribution) (?:du message|de votre message) (?:(?:à|a) (?:[^.!?]|\.\w)*? )?a [ée]chou[ée]",
        r"|(?:rapport|avis|notification) de non[- ](?:remise|distribution)",
        // German, Spanish, Italian, Dutch, Portuguese.
        r"|ihre nachricht (?:an (?:[^.!?]|\.\w)*? )?konnte nicht zugestellt werden",
        r"|die zustellung an (?:folgende|diese) empf[äa]nger(?: oder gruppen)? ist fehlgeschlagen",
        r"|su mensaje (?:a (?:[^.!?]|\.\w)*? )?no (?:se )?(?:pudo|ha podido) (?:ser )?entregar",
        r"|no se (?:pudo|puede) entregar el mensaje|la entrega a estos destinatarios o grupos",
        r"|impossibile recapitare il messaggio|il messaggio non (?:è|e') stato recapitato",
        r"|uw bericht (?:aan (?:[^.!?]|\.\w)*? )?kon niet worden bezorgd",
        r"|n[ãa]o foi poss[íi]vel entregar (?:a |sua )?mensagem",
        r")"
    ))
});

/// Sentences of delay warnings: the report says the mail is still on its way.
static DELAY_BODY: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:delivery (?:to the following recipients? )?has been delayed",
        r"|(?:has|have) not yet been delivered|this is (?:just )?a warning(?: message)?,? (?:only|you do not need)",
        r"|delivery attempts will continue to be made|this is an advisory-only e-?mail",
        r"|will (?:continue to )?(?:retry|try to deliver|attempt delivery) (?:for|until|over)",
        r"|la remise (?:de ce message )?(?:est|a [ée]t[ée]) retard[ée]e|n'a pas encore (?:pu )?[êe]tre (?:remis|distribu[ée])",
        r")"
    ))
});

/// What failed deliveries say in passing: SMTP replies and the reasons MTAs give. Counts only
/// in a lead with nothing personal in it, and with failure wording in the subject or a machine
/// sender.
static FAILURE_EVIDENCE: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:(?-u:\b)[45]\d\d[ -]#?[45]\.\d{1,3}\.\d{1,3}(?-u:\b)|#[45]\.\d{1,3}\.\d{1,3}(?-u:\b)",
        r"|(?-u:\b)(?:user|recipient|mailbox|address|destinataire|adresse|utilisateur) (?:unknown|not found|unavailable|inconnue?|introuvable)",
        r"|no such (?:user|mailbox|recipient|address)|mailbox (?:is )?(?:full|unavailable|over quota)",
        r"|quota exceeded|recipient address rejected|host (?:not found|unknown)",
        r"|relay(?:ing)? (?:access )?denied|undeliverable|undelivered|could not be delivered",
        r"|couldn't be delivered|was not delivered|wasn't delivered|delivery (?:has )?failed",
        r"|non remis|non distribuable|n'a pas pu [êe]tre (?:remis|distribu[ée]|d[ée]livr[ée])",
        r"|bo[îi]te (?:aux lettres |mail )?pleine|[ée]chec de (?:la )?(?:remise|distribution))"
    ))
});

/// Failure wording anywhere in a subject; see [`FAILURE_SUBJECT_WORDING`].
static FAILURE_SUBJECT: LazyLock<Regex> =
    LazyLock::new(|| re(&format!("(?i)(?:{FAILURE_SUBJECT_WORDING})")));

/// Subjects of forwards ("Fwd:", "TR:", "WG:", "RV:", "I:", "Doorst:"): a person passing
/// something on, whatever it says after.
static FORWARD_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^\s*(?:\[[^\]]*\]\s*)*(?:fwd?|fw|tr|wg|rv|i|enc|vs|vl|doorst|pd|fs|rif)\s*:")
});

/// Where what the sender wrote ends: quoted lines, forward and reply separators, and the
/// header block clients put above a forwarded or quoted message (unindented: reports indent
/// the `To:`/`Subject:` of the original they describe).
static QUOTE_START: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)^(?:\s*>|\s*-{2,}\s*(?:original message|forwarded message|message d['’]origine",
        r"|message transf[ée]r[ée]|mensaje (?:original|reenviado)|urspr[üu]ngliche nachricht",
        r"|weitergeleitete nachricht|messaggio (?:originale|inoltrato)|oorspronkelijk bericht",
        r"|doorgestuurd bericht)|\s*begin forwarded message|\s*d[ée]but du message (?:r[ée]exp[ée]di[ée]|transf[ée]r[ée])",
        r"|(?:from|de|von|da|van)\s?:\s*\S|(?:on|le|am) .+(?:wrote|a [ée]crit|schrieb)\s*:?\s*$)"
    ))
});

/// What a person writes before pasting a report: first-person words, a question, the words
/// that introduce a paste, or a greeting with more of their own words after it on the line (a
/// bare "Hi!" is how OpenSMTPD and PowerMTA open their reports too).
static HUMAN: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:^(?:hello|hi|hey|dear|bonjour|bonsoir|salut|coucou|cher|ch[èe]re|madame|monsieur",
        r"|good (?:morning|afternoon|evening)|hallo|guten (?:tag|morgen)|hola|buongiorno|ciao)(?-u:\b)",
        r"[\s,!.]*\w+\W+\w+\W+\w+|(?:^|[\s,.;:!(])(?:i|i'm|i've|i'd|i'll|my|me|we|we've|our|us|je|j'|moi|mon|ma",
        r"|mes|nous|notre|nos|ich|mein|meine|wir|unser|unsere|here is|here's|see below|below is|voici",
        r"|ci-dessous|ci-joint|got this|getting this|this error|cette erreur|message d'erreur",
        r"|error message|re[çc]u)(?:$|[\s,.;:!?)])|\?(?:\s|$))"
    ))
});

/// First-person words, for the rest of a report's sentence ("… to my accountant").
static FIRST_PERSON: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:^|[\s,:(])(?:i|i'm|i've|my|we|our|us|je|j'|moi|mon|ma|mes|nous|notre|nos|can you",
        r"|could you|would you|pouvez-vous|pourriez-vous|merci de)(?:$|[\s,:)])"
    ))
});

/// How people sign off; reports do not.
static SIGN_OFF: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:^|[\s,.;:!])(?:thanks|thank you|thx|regards|cheers|best wishes|kind regards|merci",
        r"|cordialement|bien [àa] vous|bonne journ[ée]e|salutations|danke|gr[üu][ßs]e|saludos|grazie)(?-u:\b)"
    ))
});

/// A greeting gateways use for the sender: not a person.
static MACHINE_GREETING: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:hello|hi|dear|bonjour|cher|ch[èe]re)\s+(?:user|sender|customer|client|utilisateur|exp[ée]diteur|correspondant|sir or madam)(?-u:\b)",
    )
});

/// A line that is a header field of the message a report describes (`  Subject: …`).
static FIELD_LINE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\s*(?:to|subject|sent|date|from|cc|objet|envoy[ée]|[àa]|de|betreff|an|gesendet|asunto|para|oggetto|onderwerp|aan)\s?:",
    )
});

/// Display names of senders that are mail systems, not people.
static SYSTEM_NAME: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)^[\s'\x22]*(?:mail delivery (?:sub)?system|mail delivery service|mail(?:er)?[- _]?daemon",
        r"|post ?master|mail administrator|system administrator|mail system|e-?mail system",
        r"|mail gateway|microsoft outlook|microsoft exchange|internet mail delivery",
        r"|interscan (?:mss|messaging security suite|notification)|groupwise internet agent",
        r"|administrateur (?:syst[èe]me|de messagerie|du syst[èe]me)|syst[èe]me de (?:messagerie|remise du courrier)",
        r"|service de messagerie|serveur de messagerie)[\s'\x22]*$"
    ))
});

/// The first 16 KiB of the body, enough for any report's opening; a pasted log needs none of
/// the rest read.
const LEAD_SCAN_LIMIT: usize = 16 * 1024;

/// Lines of the lead looked at, and how far into it a report's opening sentence may stand
/// (gateways put a banner or a logo's alternative text first).
const LEAD_LINES: usize = 80;
const TOP_LINES: usize = 10;

/// What the sender wrote, above any quoted or forwarded text: non-blank lines, trimmed.
fn lead(text: &str) -> Vec<&str> {
    let text = &text[..text.floor_char_boundary(LEAD_SCAN_LIMIT)];
    text.lines()
        .take_while(|l| !QUOTE_START.is_match(l))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(LEAD_LINES)
        .collect()
}

/// The lead joined into one lower-case string with white space collapsed and curly
/// apostrophes straightened, with the byte range each line has in it.
fn joined(lines: &[&str]) -> (String, Vec<(usize, usize)>) {
    let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    let mut spans = Vec::with_capacity(lines.len());
    for line in lines {
        if !out.is_empty() {
            out.push(' ');
        }
        let start = out.len();
        for (i, word) in line.split_whitespace().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            if word.is_ascii() {
                out.extend(word.bytes().map(|b| char::from(b.to_ascii_lowercase())));
            } else {
                out.push_str(&word.to_lowercase().replace('’', "'"));
            }
        }
        spans.push((start, out.len()));
    }
    (out, spans)
}

/// Mail addresses, which say nothing of who wrote the text around them.
static ADDRESS: LazyLock<Regex> = LazyLock::new(|| re(r"<?[^\s<>@]+@[^\s<>@]+>?"));

/// Whether `text` reads like a person, addresses left out ("Hello kijitora@example.jp," is a
/// template's salutation).
fn personal(text: &str) -> bool {
    HUMAN.is_match(text) && HUMAN.is_match(&ADDRESS.replace_all(text, ""))
}

/// Whether the text before byte `at` of the joined lead reads like a person (the fields of a
/// described message and gateways' "Dear user" aside), or the rest of the line on which a
/// report sentence found at `at..end` ends does ("The message could not be delivered to my
/// accountant").
fn person_around(
    lines: &[&str],
    joined: &str,
    spans: &[(usize, usize)],
    at: usize,
    end: usize,
) -> bool {
    let after = spans
        .iter()
        .find(|&&(start, stop)| start <= end && end < stop)
        .and_then(|&(_, stop)| joined.get(end..stop))
        .is_some_and(|rest| {
            // The rest of the sentence: a question, or first-person words.
            let stop = rest.find(['.', '!', '?', ';']).unwrap_or(rest.len());
            rest[stop..].starts_with('?')
                || FIRST_PERSON.is_match(&ADDRESS.replace_all(&rest[..stop], ""))
        });
    after
        || lines.iter().zip(spans).any(|(line, &(start, stop))| {
            start < at
                && !FIELD_LINE.is_match(line)
                && !MACHINE_GREETING.is_match(line)
                && joined.get(start..stop.min(at)).is_some_and(personal)
        })
}

/// Whether anything before byte `at` of the joined lead reads like a person.
fn person_before(lines: &[&str], joined: &str, spans: &[(usize, usize)], at: usize) -> bool {
    person_around(lines, joined, spans, at, joined.len())
}

/// The index of the lead's line that byte `at` of the joined lead falls in.
fn line_of(spans: &[(usize, usize)], at: usize) -> usize {
    spans
        .iter()
        .take_while(|&&(start, _)| start <= at)
        .count()
        .saturating_sub(1)
}

/// What the body says about delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodySays {
    Nothing,
    /// A report's failure sentence opens what the sender wrote.
    Failure,
    /// A report's delay sentence opens it, and no failure sentence does.
    Delay,
    /// Failure wording or an SMTP error, with nothing a person wrote before it, but not in a
    /// report's own sentence.
    Evidence,
    /// Report wording after a person's own words: a person talking about a bounce.
    Quoted,
}

/// Reads the lead of `text` for report wording.
pub(super) fn body_says(text: &str) -> BodySays {
    let lines = lead(text);
    if lines.is_empty() {
        return BodySays::Nothing;
    }
    let (joined, spans) = joined(&lines);
    let failure = FAILURE_BODY.find(&joined).map(|m| (m.start(), m.end()));
    let delay = DELAY_BODY.find(&joined).map(|m| (m.start(), m.end()));
    let first = match (failure, delay) {
        (Some(f), Some(d)) => Some(f.min(d)),
        (f, d) => f.or(d),
    };
    if let Some((at, end)) = first {
        if person_around(&lines, &joined, &spans, at, end) {
            return BodySays::Quoted;
        }
        if line_of(&spans, at) < TOP_LINES {
            return if failure.is_some() {
                BodySays::Failure
            } else {
                BodySays::Delay
            };
        }
    }
    // Wording a person could use counts only when nothing in the lead reads like one.
    if !FAILURE_EVIDENCE.is_match(&joined) {
        BodySays::Nothing
    } else if person_before(&lines, &joined, &spans, joined.len()) || SIGN_OFF.is_match(&joined) {
        BodySays::Quoted
    } else {
        BodySays::Evidence
    }
}

/// Whether what the sender wrote reads like a person (first-person words, a question, a
/// sign-off) with no report's sentence at its top.
pub(super) fn reads_like_person(text: &str) -> bool {
    let lines = lead(text);
    let (joined, spans) = joined(&lines);
    !matches!(body_says(text), BodySays::Failure | BodySays::Delay)
        && (person_before(&lines, &joined, &spans, joined.len()) || SIGN_OFF.is_match(&joined))
}

/// Whether a subject reads like a person's ("… when I write to billing", a question).
pub(super) fn subject_is_personal(subject: &str) -> bool {
    personal(&subject.to_lowercase())
}

/// Whether the subject is a forward.
pub(super) fn is_forward(subject: &str) -> bool {
    FORWARD_SUBJECT.is_match(subject)
}

/// Whether the subject carries failure wording somewhere other than where [`BOUNCE_SUBJECT`]
/// looks (after a "RE:", a product name, a tag), and is no forward.
pub(super) fn subject_mentions_failure(subject: &str) -> bool {
    !is_forward(subject) && !BOUNCE_SUBJECT.is_match(subject) && FAILURE_SUBJECT.is_match(subject)
}

/// Whether a display name (or, with no usable address, the whole From header) names a mail
/// system: "Mail Delivery System", "Microsoft Outlook", "Administrateur système".
pub(super) fn system_name(msg: &ParsedMessage) -> bool {
    let name = match &msg.from {
        Some(m) => m.name.as_deref().unwrap_or(""),
        None => msg.header("from").unwrap_or(""),
    };
    let name = name.split('<').next().unwrap_or("").trim();
    !name.is_empty() && SYSTEM_NAME.is_match(name)
}
