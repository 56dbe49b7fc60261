//! Outlook's conversations: `Thread-Index`, `Thread-Topic`, and recall messages.
//!
//! Outlook and Exchange clients often drop In-Reply-To and References but keep `Thread-Index`
//! (MS-OXOMSG 2.2.1.3, PidTagConversationIndex, base64 in the header): a 22-byte header block
//! (one reserved byte 0x01, five bytes of a FILETIME, a 16-byte GUID) that names the
//! conversation, then one 5-byte child block per reply or forward. The header block is the
//! conversation's key ([`ConversationIndex::key`]); we store it for every inbound message and
//! for our own mail, so a later message of the conversation finds its ticket. Our
//! acknowledgements carry the customer's index with one child block appended
//! ([`ConversationIndex::reply`]), or a fresh one ([`ConversationIndex::fresh`]), so Outlook
//! shows them in the customer's conversation.
//!
//! A recall ("Recall: Subject", "Rappel : Objet") is what Exchange sends outside its
//! organisation when the sender recalls a message: a plain mail saying so
//! ([`recalled_subject`]).

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use regex::Regex;

use crate::parse::ParsedMessage;

/// Bytes of the header block: reserved byte, 5 bytes of FILETIME, 16 bytes of GUID.
const HEADER_LEN: usize = 22;

/// Bytes of one child block (one reply or forward).
const CHILD_LEN: usize = 5;

/// Longest index we read or extend: Outlook stops growing it long before (a conversation
/// 100 replies deep), and a header of ours must stay short.
const MAX_LEN: usize = HEADER_LEN + 100 * CHILD_LEN;

/// 100-nanosecond intervals between 1601-01-01 (FILETIME's epoch) and 1970-01-01.
const FILETIME_UNIX_EPOCH: i64 = 116_444_736_000_000_000;

/// Standard base64, with or without padding: clients differ.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A decoded `Thread-Index`: the header block and its child blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationIndex {
    bytes: Vec<u8>,
}

impl ConversationIndex {
    /// Decodes a `Thread-Index` value (base64, white space ignored). `None` when it is not
    /// base64 or shorter than the 22-byte header block; bytes after the last whole child
    /// block are dropped.
    pub fn parse(value: &str) -> Option<ConversationIndex> {
        let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        let mut bytes = BASE64.decode(compact.as_bytes()).ok()?;
        if bytes.len() < HEADER_LEN {
            return None;
        }
        let whole = HEADER_LEN + (bytes.len() - HEADER_LEN) / CHILD_LEN * CHILD_LEN;
        bytes.truncate(whole.min(MAX_LEN));
        Some(ConversationIndex { bytes })
    }

    /// A new conversation started at `now_ms` (unix milliseconds), with a random GUID.
    pub fn fresh(now_ms: i64) -> ConversationIndex {
        let mut bytes = Vec::with_capacity(HEADER_LEN);
        bytes.push(0x01);
        // The 40 bits of the FILETIME above its 24 lowest, most significant first.
        let filetime = filetime(now_ms);
        bytes.extend_from_slice(&filetime.to_be_bytes()[..5]);
        let guid: [u8; 16] = rand::random();
        bytes.extend_from_slice(&guid);
        ConversationIndex { bytes }
    }

    /// This index with one child block for a message written at `now_ms` (unix
    /// milliseconds) in reply to it. An index already at its longest is kept as it is.
    pub fn reply(&self, now_ms: i64) -> ConversationIndex {
        if self.bytes.len() + CHILD_LEN > MAX_LEN {
            return self.clone();
        }
        // The header's time, to 2^24 intervals (1.7 s); the child block holds the time since.
        let mut start = [0u8; 8];
        start[..5].copy_from_slice(&self.bytes[1..6]);
        let start = u64::from_be_bytes(start);
        let delta = filetime(now_ms).saturating_sub(start);
        // Under 2^49 intervals (about 1.8 years) the delta is kept to 2^18 intervals (26 ms),
        // beyond to 2^23, with the first bit saying which (MS-OXOMSG 2.2.1.3).
        let (code, time) = if delta < 1 << 49 {
            (0u64, (delta >> 18) & 0x7FFF_FFFF)
        } else {
            (1u64, (delta >> 23) & 0x7FFF_FFFF)
        };
        let block = (((code << 31) | time) << 8) | u64::from(rand::random::<u8>());
        let mut bytes = self.bytes.clone();
        bytes.extend_from_slice(&block.to_be_bytes()[3..]);
        ConversationIndex { bytes }
    }

    /// The conversation this index belongs to: its header block, in lower-case hex (44
    /// characters). The same for every message of the conversation.
    pub fn key(&self) -> String {
        hex::encode(&self.bytes[..HEADER_LEN])
    }

    /// How many replies and forwards deep the message is (its child blocks).
    pub fn depth(&self) -> usize {
        (self.bytes.len() - HEADER_LEN) / CHILD_LEN
    }

    /// The `Thread-Index` header value: base64, padded.
    pub fn to_header(&self) -> String {
        BASE64.encode(&self.bytes)
    }
}

/// FILETIME (100-nanosecond intervals since 1601-01-01 UTC) of `unix_ms`.
fn filetime(unix_ms: i64) -> u64 {
    u64::try_from(
        unix_ms
            .saturating_mul(10_000)
            .saturating_add(FILETIME_UNIX_EPOCH),
    )
    .unwrap_or(0)
}

/// The `Thread-Index` of `msg`, when it has a usable one.
pub fn thread_index(msg: &ParsedMessage) -> Option<ConversationIndex> {
    msg.header("thread-index")
        .and_then(ConversationIndex::parse)
}

/// The conversation key ([`ConversationIndex::key`]) of `msg`, when it has a usable
/// `Thread-Index`.
pub fn conversation_key(msg: &ParsedMessage) -> Option<String> {
    thread_index(msg).map(|i| i.key())
}

/// Reply and forward prefixes of the usual clients and languages, stacked, with `[tags]`.
static SUBJECT_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)^(?:\s*(?:re|fwd?|tr|wg|aw|sv|vs|antw|rif|r|réf|ref|odp|enc|res)\s*(?:\[\d+\])?\s*:",
        r"|\s*\[[^\]]*\])+\s*"
    ))
    .expect("static regex")
});

/// The conversation's topic as Outlook writes it in `Thread-Topic`: the subject without its
/// reply and forward prefixes.
pub fn topic(subject: &str) -> String {
    SUBJECT_PREFIX.replace(subject, "").trim().to_string()
}

/// The start of a recall's subject in the languages Outlook writes it in.
static RECALL_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)^\s*(?:\[[^\]]*\]\s*)*(?:recall|rappel|rückruf|richiamo|recuperar|recuperación",
        r"|terugroepen|intrekken|återkalla|tilbakekall|tilbagekald|odwołanie|odwołaj|recolha",
        r"|retirada)\s*:\s*(.+)$"
    ))
    .expect("static regex")
});

/// What Exchange writes in the body of a recall sent outside its organisation.
static RECALL_BODY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)would like to recall the message|(?:souhaite(?:rait)?|voudrait) rappeler le message",
        r"|möchte die nachricht\b.{0,200}?\bzurückrufen|(?:desidera|vorrebbe) richiamare il messaggio",
        r"|(?:desea|quiere|querría|deseja) (?:recuperar|recolher) (?:el|a) mensa(?:je|gem)",
        r"|wil het bericht\b.{0,200}?\b(?:terughalen|intrekken)|vill återkalla meddelandet",
    ))
    .expect("static regex")
});

/// For an Outlook recall, the subject of the message it recalls; `None` for anything else.
///
/// "Rappel :" is also French for a reminder, so the subject alone is not enough: the body
/// must say it is a recall, or the message's `Thread-Topic` must be the recalled subject
/// (a recall belongs to the recalled message's conversation).
pub fn recalled_subject(msg: &ParsedMessage) -> Option<String> {
    let recalled = RECALL_SUBJECT
        .captures(&msg.subject)?
        .get(1)?
        .as_str()
        .trim();
    let said = RECALL_BODY.is_match(&msg.text.chars().take(2000).collect::<String>());
    let same_topic = msg
        .header("thread-topic")
        .is_some_and(|t| topic(t).eq_ignore_ascii_case(&topic(recalled)));
    (said || same_topic).then(|| recalled.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01T08:00:00Z in unix milliseconds.
    const DEC_1: i64 = 1_796_112_000_000;

    fn with_headers(subject: &str, headers: &[(&str, &str)], text: &str) -> ParsedMessage {
        ParsedMessage {
            subject: subject.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            text: text.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_fresh_index_is_a_header_block_of_now_and_a_reply_appends_one_child_block() {
        let fresh = ConversationIndex::fresh(DEC_1);
        assert_eq!(fresh.bytes.len(), 22);
        assert_eq!(fresh.bytes[0], 0x01);
        assert_eq!(fresh.depth(), 0);
        let header = fresh.to_header();
        assert_eq!(ConversationIndex::parse(&header), Some(fresh.clone()));
        // An hour later: one more block, the same conversation, a delta of an hour.
        let reply = fresh.reply(DEC_1 + 3_600_000);
        assert_eq!(reply.bytes.len(), 27);
        assert_eq!(reply.bytes[..22], fresh.bytes[..]);
        assert_eq!(reply.key(), fresh.key());
        assert_eq!(reply.depth(), 1);
        let block = u64::from_be_bytes([
            0,
            0,
            0,
            reply.bytes[22],
            reply.bytes[23],
            reply.bytes[24],
            reply.bytes[25],
            reply.bytes[26],
        ]);
        assert_eq!(block >> 39, 0, "delta code: under 1.8 years");
        let delta = ((block >> 8) & 0x7FFF_FFFF) << 18;
        let hour = 36_000_000_000u64;
        // The header keeps the start to 2^24 intervals, the block the delta to 2^18.
        assert!(delta.abs_diff(hour) < 1 << 25, "{delta} vs {hour}");
        // Two fresh conversations are two keys.
        assert_ne!(ConversationIndex::fresh(DEC_1).key(), fresh.key());
    }

    #[test]
    fn outlook_values_are_read_and_what_is_not_an_index_is_refused() {
        // 22 bytes then one child block, as Outlook writes them (base64 of 27 bytes).
        let header: Vec<u8> = (0u8..22)
            .map(|b| b.wrapping_mul(7).wrapping_add(1))
            .collect();
        let mut reply = header.clone();
        reply.extend_from_slice(&[0x00, 0x00, 0x12, 0x34, 0x56]);
        let value = BASE64.encode(&reply);
        let index = ConversationIndex::parse(&value).unwrap();
        assert_eq!(index.key(), hex::encode(&header));
        assert_eq!(index.depth(), 1);
        // Unpadded, folded, or with a torn last block: the same conversation.
        let unpadded = value.trim_end_matches('=');
        assert_eq!(
            ConversationIndex::parse(unpadded).unwrap().key(),
            index.key()
        );
        let folded = format!("{}\r\n {}", &value[..10], &value[10..]);
        assert_eq!(
            ConversationIndex::parse(&folded).unwrap().key(),
            index.key()
        );
        let mut torn = reply.clone();
        torn.extend_from_slice(&[1, 2]);
        assert_eq!(
            ConversationIndex::parse(&BASE64.encode(&torn))
                .unwrap()
                .depth(),
            1
        );
        // Too short for a header block, or not base64.
        assert_eq!(ConversationIndex::parse("AdtdjjwqGxRwmMUcTxM8p0=="), None);
        assert_eq!(ConversationIndex::parse("not base64 at all!"), None);
        assert_eq!(ConversationIndex::parse(""), None);
    }

    #[test]
    fn the_topic_is_the_subject_without_reply_and_forward_prefixes() {
        assert_eq!(topic("RE: TR: [CHT-4] Facture"), "Facture");
        assert_eq!(topic("AW: Wg: Rechnung"), "Rechnung");
        assert_eq!(topic("Invoice"), "Invoice");
    }

    #[test]
    fn recalls_are_told_from_reminders() {
        let recall = with_headers(
            "Rappel : Changement d'adresse",
            &[],
            "Isabelle Noel souhaite rappeler le message « Changement d'adresse ».",
        );
        assert_eq!(
            recalled_subject(&recall).as_deref(),
            Some("Changement d'adresse")
        );
        let english = with_headers(
            "Recall: Wrong invoice attached",
            &[("thread-topic", "Wrong invoice attached")],
            "",
        );
        assert_eq!(
            recalled_subject(&english).as_deref(),
            Some("Wrong invoice attached")
        );
        // A French reminder is not a recall.
        let reminder = with_headers(
            "Rappel : facture impayée",
            &[("thread-topic", "Rappel : facture impayée")],
            "Bonjour, je vous rappelle que la facture 2026-11 reste impayée.",
        );
        assert_eq!(recalled_subject(&reminder), None);
        assert_eq!(recalled_subject(&with_headers("Invoice", &[], "")), None);
    }
}
