//! Which ticket a message belongs to, and whether its sender may join it.
//!
//! Entry point: [`Threading::resolve`] decides which ticket a message continues, if any, and
//! says how ([`LinkReason`]). It collects every link the message offers
//! ([`ThreadHints::from_message`], strongest first: In-Reply-To and References, nearest first;
//! then Outlook's conversation (`Thread-Index`, see [`ConversationIndex`]) and recall; then the
//! ids other messages on a ticket cite; then the subject token `[CHT-12]`; then the
//! plus-address `support+CHT-12@`), looks each up in the store, and keeps the first ticket the
//! sender may join ([`may_join`]), so that knowing a ticket number is not enough to hijack it.
//! [`MessageIdSigner`] makes and checks our own Message-IDs; a forged one is refused.

use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use regex::Regex;
use sha2::Sha256;

use rusqlite::Connection;

use crate::parse::ParsedMessage;
use crate::store::{self, StoreError};

mod conversation;

pub use conversation::{
    ConversationIndex, conversation_key, recalled_subject, thread_index, topic,
};

/// Every link a message offers to an existing ticket, strongest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadHints {
    /// In-Reply-To then References (nearest parent first), without duplicates.
    pub parent_ids: Vec<String>,
    /// Ticket number from a `[PREFIX-n]` subject token.
    pub subject_ticket: Option<i64>,
    /// Ticket number from a `support+PREFIX-n@` recipient.
    pub plus_ticket: Option<i64>,
}

impl ThreadHints {
    /// Collects the hints of `msg` for tickets named `<prefix>-<n>` at `support_address`.
    pub fn from_message(msg: &ParsedMessage, prefix: &str, support_address: &str) -> ThreadHints {
        let mut parent_ids: Vec<String> = Vec::new();
        for id in msg.in_reply_to.iter().chain(msg.references.iter().rev()) {
            if id != &msg.message_id && !parent_ids.contains(id) {
                parent_ids.push(id.clone());
            }
        }
        let recipients = msg
            .to
            .iter()
            .chain(msg.cc.iter())
            .map(|m| m.address.as_str());
        ThreadHints {
            parent_ids,
            subject_ticket: subject_ticket(&msg.subject, prefix),
            plus_ticket: recipients
                .filter_map(|a| plus_ticket(a, prefix, support_address))
                .next(),
        }
    }
}

/// The ticket number in the first `[PREFIX-n]` token of `subject`, case-insensitively.
pub fn subject_ticket(subject: &str, prefix: &str) -> Option<i64> {
    static TOKEN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\[\s*#?([A-Za-z0-9]+)-(\d{1,12})\s*\]").expect("static regex")
    });
    TOKEN
        .captures_iter(subject)
        .find(|c| c[1].eq_ignore_ascii_case(prefix))
        .and_then(|c| c[2].parse().ok())
}

/// The ticket number of `local+PREFIX-n@domain` when `address` is our support address plus a tag.
pub fn plus_ticket(address: &str, prefix: &str, support_address: &str) -> Option<i64> {
    let (tag, _) = plus_tag(address, support_address)?;
    let (p, n) = tag.split_once('-')?;
    if !p.eq_ignore_ascii_case(prefix) {
        return None;
    }
    n.parse().ok()
}

/// For `local+tag@domain` where `local@domain` is `support_address`, returns `(tag, address)`.
pub fn plus_tag<'a>(address: &'a str, support_address: &str) -> Option<(&'a str, &'a str)> {
    let (local, domain) = address.rsplit_once('@')?;
    let (s_local, s_domain) = support_address.rsplit_once('@')?;
    let (base, tag) = local.split_once('+')?;
    (base.eq_ignore_ascii_case(s_local) && domain.eq_ignore_ascii_case(s_domain) && !tag.is_empty())
        .then_some((tag, address))
}

/// Who may post on a ticket: the customer, anyone already a participant, and agents.
///
/// Returns true if and only if `from` is among `participants` (all lower-case) or is a
/// recognised agent (`is_agent`: listed, and authenticated where that is required).
pub fn may_join(from: &str, participants: &[String], is_agent: bool) -> bool {
    !from.is_empty() && (is_agent || participants.iter().any(|p| p == from))
}

/// How a message was found to continue a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkReason {
    /// In-Reply-To or References names a message stored on the ticket (`id` without brackets);
    /// `ours` when it is one of our signed ids.
    References { id: String, ours: bool },
    /// The parent never reached us, but another message on the ticket cites the same id.
    SharedReference { id: String },
    /// Outlook's `Thread-Index` names a conversation a message on the ticket (or our mail
    /// about it) belongs to; `key` is its header block in hex.
    Conversation { key: String },
    /// An Outlook recall of a message the sender wrote on the ticket, with this subject.
    Recall { subject: String },
    /// A `[PREFIX-n]` token in the subject.
    SubjectToken { prefix: String, number: i64 },
    /// Sent to `support+PREFIX-n@domain`.
    PlusAddress { address: String },
}

impl std::fmt::Display for LinkReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkReason::References { id, .. } => write!(f, "references <{id}>"),
            LinkReason::SharedReference { id } => write!(f, "shares the reference <{id}>"),
            LinkReason::Conversation { key } => write!(f, "Outlook conversation {key}"),
            LinkReason::Recall { subject } => write!(f, "recalls the message {subject:?}"),
            LinkReason::SubjectToken { prefix, number } => {
                write!(f, "subject token [{prefix}-{number}]")
            }
            LinkReason::PlusAddress { address } => write!(f, "plus address {address}"),
        }
    }
}

/// The ticket a message continues, and how it was found.
#[derive(Debug, Clone)]
pub struct Link {
    pub ticket: store::Ticket,
    pub reason: LinkReason,
}

/// What threading needs to know about us: the ticket prefix and the support address.
#[derive(Debug, Clone)]
pub struct Threading {
    /// Ticket prefix, e.g. `CHT` for `CHT-12`.
    pub prefix: String,
    /// The support address, lower-cased.
    pub support_address: String,
}

impl Threading {
    /// Threading as `[support]` configures it.
    pub fn from_config(config: &crate::config::Config) -> Threading {
        Threading {
            prefix: config.support.ticket_prefix.clone(),
            support_address: config.support.address.to_ascii_lowercase(),
        }
    }

    /// `support+CHT-12@domain`: where mail about ticket `ticket_ref` goes to thread onto it.
    pub fn plus_address(&self, ticket_ref: &str) -> String {
        match self.support_address.split_once('@') {
            Some((local, domain)) => format!("{local}+{ticket_ref}@{domain}"),
            None => self.support_address.clone(),
        }
    }

    /// The ticket `msg` continues, or `None` for a new request.
    ///
    /// Candidates are tried strongest first (see the module doc); the first one whose ticket
    /// the sender may join wins (an agent, `is_agent`, may join any). A report from a mail
    /// server (`from_a_mailer`: a bounce, a delay notice) about one of our signed messages joins
    /// without the participant check: it comes from a mailer, not a participant. A cited id
    /// shaped like ours with a wrong signature is ignored and recorded as `forged_reference`;
    /// a candidate the sender may not join is recorded as `link_refused`.
    ///
    /// # Errors
    /// Database errors only.
    pub fn resolve(
        &self,
        conn: &Connection,
        signer: &MessageIdSigner,
        msg: &ParsedMessage,
        from_a_mailer: bool,
        is_agent: bool,
    ) -> Result<Option<Link>, StoreError> {
        let hints = ThreadHints::from_message(msg, &self.prefix, &self.support_address);
        let from = msg.from_address();
        let mut ids: Vec<String> = Vec::new();
        for id in hints
            .parent_ids
            .iter()
            .chain(msg.bounced_message_ids.iter())
        {
            if signer.origin(id) == IdOrigin::Forged {
                store::record_event(
                    conn,
                    store::EventKind::ForgedReference,
                    None,
                    None,
                    Some(from),
                    &format!("<{id}>"),
                )?;
            } else {
                ids.push(id.clone());
            }
        }
        let mut candidates: Vec<(i64, LinkReason)> = Vec::new();
        let referenced = store::tickets_by_message_ids(conn, &ids)?;
        let by_reference = referenced.is_some();
        if let Some((tickets, id)) = referenced {
            // Several tickets when the id was reused by different messages: newest first.
            let ours = signer.origin(&id) == IdOrigin::Ours;
            for t in tickets {
                let id = id.clone();
                candidates.push((t, LinkReason::References { id, ours }));
            }
        }
        self.outlook_candidates(conn, msg, &mut candidates)?;
        if !by_reference && let Some((t, id)) = store::ticket_by_shared_ref(conn, &ids)? {
            candidates.push((t, LinkReason::SharedReference { id }));
        }
        if let Some(number) = hints.subject_ticket {
            let prefix = self.prefix.clone();
            candidates.push((number, LinkReason::SubjectToken { prefix, number }));
        }
        if let Some(number) = hints.plus_ticket {
            let address = match self.support_address.split_once('@') {
                Some((local, domain)) => format!("{local}+{}-{number}@{domain}", self.prefix),
                None => self.support_address.clone(),
            };
            candidates.push((number, LinkReason::PlusAddress { address }));
        }
        for (ticket_id, reason) in candidates {
            let Some(ticket) = store::ticket(conn, ticket_id)? else {
                continue;
            };
            let ours = matches!(reason, LinkReason::References { ours: true, .. });
            if (from_a_mailer && ours)
                || may_join(from, &store::participants(conn, ticket_id)?, is_agent)
            {
                return Ok(Some(Link { ticket, reason }));
            }
            let who = if from.is_empty() { "(no sender)" } else { from };
            store::record_event(
                conn,
                store::EventKind::LinkRefused,
                Some(ticket_id),
                None,
                Some(from),
                &format!(
                    "{who} is not a participant of {} ({reason})",
                    ticket.ticket_ref
                ),
            )?;
        }
        Ok(None)
    }
}

impl Threading {
    /// The tickets Outlook's own threading points at: those of the message's conversation
    /// (`Thread-Index`), newest first, and for a recall those of the sender's messages with
    /// the recalled subject.
    fn outlook_candidates(
        &self,
        conn: &Connection,
        msg: &ParsedMessage,
        candidates: &mut Vec<(i64, LinkReason)>,
    ) -> Result<(), StoreError> {
        if let Some(key) = conversation_key(msg) {
            for t in store::tickets_by_conversation(conn, &key)? {
                let key = key.clone();
                candidates.push((t, LinkReason::Conversation { key }));
            }
        }
        if let Some(subject) = recalled_subject(msg) {
            // The recalled message was the sender's: on one of their tickets, under the
            // ticket's subject (give or take "RE:" and our token).
            let recalled = topic(&subject).to_lowercase();
            for (t, ticket_subject) in store::tickets_of(conn, msg.from_address(), 50)? {
                if topic(&ticket_subject).to_lowercase() == recalled {
                    let subject = subject.clone();
                    candidates.push((t, LinkReason::Recall { subject }));
                }
            }
        }
        Ok(())
    }
}

type HmacSha256 = Hmac<Sha256>;

/// Makes and verifies our own Message-IDs: `sd.<kind>.<nonce>.<sig>@<domain>`.
///
/// The signature is an HMAC over kind and nonce with a secret kept in the database, so a reply
/// that cites an id looking like ours but not signed by us is recognised as forged (osTicket does
/// the same; the other helpdesks accept any id they once stored).
#[derive(Clone)]
pub struct MessageIdSigner {
    key: Vec<u8>,
    domain: String,
}

/// What a Message-ID turns out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdOrigin {
    /// Signed by us.
    Ours,
    /// Shaped like ours, at our domain, with a wrong signature.
    Forged,
    /// Somebody else's.
    Foreign,
}

impl MessageIdSigner {
    pub fn new(key: &[u8], domain: &str) -> Self {
        Self {
            key: key.to_vec(),
            domain: domain.to_ascii_lowercase(),
        }
    }

    fn signature(&self, kind: &str, nonce: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(kind.as_bytes());
        mac.update(b".");
        mac.update(nonce.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..10])
    }

    /// A fresh signed id (without brackets) for an outgoing mail of `kind` ("ack", "note").
    pub fn generate(&self, kind: &str) -> String {
        let nonce: u128 = rand::random();
        let nonce = format!("{nonce:032x}");
        let sig = self.signature(kind, &nonce);
        format!("sd.{kind}.{nonce}.{sig}@{}", self.domain)
    }

    /// Classifies `id` (without brackets).
    pub fn origin(&self, id: &str) -> IdOrigin {
        let Some((local, domain)) = id.rsplit_once('@') else {
            return IdOrigin::Foreign;
        };
        let Some(rest) = local.strip_prefix("sd.") else {
            return IdOrigin::Foreign;
        };
        if !domain.eq_ignore_ascii_case(&self.domain) {
            return IdOrigin::Foreign;
        }
        let mut parts = rest.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(kind), Some(nonce), Some(sig), None) => {
                let expected = self.signature(kind, nonce);
                // Constant-time compare: the signature is a secret-derived value.
                let same = expected.len() == sig.len()
                    && expected
                        .bytes()
                        .zip(sig.bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0;
                if same {
                    IdOrigin::Ours
                } else {
                    IdOrigin::Forged
                }
            }
            _ => IdOrigin::Forged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Mailbox;

    fn mb(a: &str) -> Mailbox {
        Mailbox {
            name: None,
            address: a.into(),
        }
    }

    #[test]
    fn nearest_parent_comes_first() {
        let msg = ParsedMessage {
            message_id: "m4@x".into(),
            in_reply_to: vec!["m3@x".into()],
            references: vec!["m1@x".into(), "m2@x".into(), "m3@x".into()],
            ..Default::default()
        };
        let h = ThreadHints::from_message(&msg, "CHT", "support@example.test");
        assert_eq!(h.parent_ids, vec!["m3@x", "m2@x", "m1@x"]);
    }

    #[test]
    fn subject_token_is_found_after_reply_prefixes() {
        assert_eq!(subject_ticket("Re: RE: [CHT-12] Widget", "CHT"), Some(12));
        assert_eq!(subject_ticket("TR: [cht-7] x", "CHT"), Some(7));
        assert_eq!(subject_ticket("[ABC-3] [CHT-9]", "CHT"), Some(9));
        assert_eq!(subject_ticket("[ABC-3] nothing of ours", "CHT"), None);
        assert_eq!(subject_ticket("CHT-12 without brackets", "CHT"), None);
    }

    #[test]
    fn plus_address_names_a_ticket_only_at_our_address() {
        let s = "support@example.test";
        assert_eq!(
            plus_ticket("support+CHT-12@example.test", "CHT", s),
            Some(12)
        );
        assert_eq!(plus_ticket("support+billing@example.test", "CHT", s), None);
        assert_eq!(plus_ticket("other+CHT-12@example.test", "CHT", s), None);
        let msg = ParsedMessage {
            to: vec![mb("support+cht-5@example.test")],
            ..Default::default()
        };
        assert_eq!(
            ThreadHints::from_message(&msg, "CHT", s).plus_ticket,
            Some(5)
        );
    }

    #[test]
    fn signed_ids_verify_and_forgeries_do_not() {
        let signer = MessageIdSigner::new(b"secret-key", "example.test");
        let id = signer.generate("ack");
        assert!(id.starts_with("sd.ack.") && id.ends_with("@example.test"));
        assert_eq!(signer.origin(&id), IdOrigin::Ours);
        let forged = format!("{}0@example.test", id.split('@').next().unwrap_or_default());
        assert_eq!(signer.origin(&forged), IdOrigin::Forged);
        let other = MessageIdSigner::new(b"another-key", "example.test");
        assert_eq!(other.origin(&id), IdOrigin::Forged);
        assert_eq!(signer.origin("CAF00@mail.gmail.com"), IdOrigin::Foreign);
    }

    #[test]
    fn only_participants_and_agents_may_join() {
        let parts = vec!["julie@example.fr".to_string()];
        assert!(may_join("julie@example.fr", &parts, false));
        assert!(may_join("agent@example.test", &parts, true));
        assert!(!may_join("mallory@evil.test", &parts, false));
        assert!(!may_join("", &parts, true));
    }
}
