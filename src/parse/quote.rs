//! What the sender wrote this time: the body without quoted history, signature and mobile
//! footers.
//!
//! Conservative by design: the result feeds classification and the operator's view, and the full
//! text is always kept beside it, so when in doubt a line stays. A message whose stripping would
//! leave nothing gets its whole text back.

use std::sync::LazyLock;

use regex::Regex;

mod forward;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static regex")
}

/// Our own separator, put above the history in every message we send. Matched anywhere in the
/// line because clients quote it ("> -- Reply above…") or drop the dashes when converting HTML.
static OWN_MARKER: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?:reply above this line|r[ée]pondez au-dessus de cette ligne)"));

/// "On <date>, <name> wrote:" and its translations, on one line. `\s` is Unicode-aware, so the
/// French non-breaking space before the colon matches too.
static ATTRIBUTION: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)^\s*(?:",
        r"on\b.+\bwrote\s*:",
        r"|le\b.+\ba\s+[ée]crit\s*:",
        r"|am\b.+\bschrieb\b.*:",
        r"|el\b.+\bescribi[óo]\s*:",
        r"|il\b.+\bha\s+scritto\s*:",
        r")\s*$"
    ))
});

/// The first line of an attribution that Gmail wrapped over two lines.
static ATTRIBUTION_START: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^\s*(?:on|le|am|el|il)\s+\S.+$"));

/// The second line of a wrapped attribution.
static ATTRIBUTION_END: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^.*\b(?:wrote|a\s+[ée]crit|schrieb|escribi[óo]|ha\s+scritto)\s*:\s*$")
});

/// "<name> wrote:" with no date (old Thunderbird); only taken when quoted lines follow.
static BARE_ATTRIBUTION: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^.+\b(?:wrote|a\s+[ée]crit|schrieb|escribi[óo]|ha\s+scritto)\s*:\s*$")
});

/// Outlook's and Lotus' separators before the quoted original.
static ORIGINAL_MESSAGE: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)^\s*-{2,}\s*(?:original message|message d'origine|ursprüngliche nachricht",
        r"|mensaje original|messaggio originale|oorspronkelijk bericht|mensagem original)\s*-{2,}\s*$"
    ))
});

/// First line of an Outlook reply header block ("From: x" / "De : x" / "Von: x").
static HEADER_FROM: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^\s*\*?(?:from|de|von|van|da|od|fra|från)\s*\*?\s*:\s*\S"));

/// The other lines of such a block: one of them must follow the From line closely.
static HEADER_OTHER: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)^\s*\*?(?:sent|date|envoy[ée]|gesendet|datum|enviado|inviato|verzonden|to|[àa]|an|aan|para|a",
        r"|cc|subject|objet|betreff|asunto|oggetto|onderwerp|assunto)\s*\*?\s*:"
    ))
});

/// The whole block flattened onto one line, as some HTML converters leave it.
static HEADER_ONE_LINE: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)^\s*\*?(?:from|de|von)\s*\*?\s*:.+\b(?:sent|envoy[ée]|gesendet|date)\s*\*?\s*:",
        r".+\b(?:to|[àa]|an|subject|objet|betreff)\s*\*?\s*:"
    ))
});

/// "Sent from my iPhone" and its kin: the whole (short) line, nothing else on it.
static MOBILE_FOOTER: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)^\s*(?:",
        r"sent from my [\w .'-]+",
        r"|sent from (?:outlook|mail|yahoo mail|gmail|aol|proton ?mail|samsung [\w .-]+)(?: for [\w .-]+)?",
        r"|get outlook for [\w .-]+",
        r"|envoy[ée] (?:de|depuis) (?:mon|ma|l'application|outlook|yahoo)[\w .'-]*",
        r"|envoy[ée] [àa] partir de [\w .'-]+",
        r"|t[ée]l[ée]charger outlook pour [\w .-]+",
        r"|von meinem [\w .-]+ gesendet",
        r"|gesendet von [\w .-]+",
        r")\s*(?:<https?://[^>\s]*>)?\s*$"
    ))
});

fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

/// RFC 3676 signature delimiter: exactly dash, dash, space.
fn is_signature_delimiter(line: &str) -> bool {
    line == "-- "
}

/// A line made only of separator characters (what Outlook puts above its header block).
fn is_rule(line: &str) -> bool {
    let t = line.trim();
    t.len() >= 3 && t.chars().all(|c| matches!(c, '_' | '-' | '=' | '—' | '─'))
}

fn is_header_block(lines: &[&str], i: usize) -> bool {
    let line = lines[i];
    if HEADER_ONE_LINE.is_match(line) {
        return true;
    }
    if !HEADER_FROM.is_match(line) {
        return false;
    }
    // Two more header lines among the next five: a customer writing "From: accounting" once
    // in their text is not a reply header.
    lines[i + 1..]
        .iter()
        .take(5)
        .filter(|l| HEADER_OTHER.is_match(l))
        .count()
        >= 2
}

/// What ends the new text at a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The sender's signature or a mobile footer: nothing of theirs below, but a forward may
    /// still follow.
    Signature,
    /// Our own reply marker: everything below is our mail.
    OwnMarker,
    /// Outlook's `-----Original Message-----` or header block: history in a reply, the
    /// forwarded message in a forward.
    Outlook,
}

/// Lines that end the new text for good: everything from here down is history or signature.
/// Cheap byte tests go first: this runs on every line, and most lines are plain prose.
fn cut_at(lines: &[&str], i: usize, has_marker: bool) -> Option<Cut> {
    let line = lines[i];
    if is_signature_delimiter(line) {
        return Some(Cut::Signature);
    }
    if has_marker && OWN_MARKER.is_match(line) {
        return Some(Cut::OwnMarker);
    }
    let t = line.trim();
    if t.is_empty() || is_quoted(t) {
        return None;
    }
    if (t.starts_with("--") && ORIGINAL_MESSAGE.is_match(t))
        || (could_be_header(t) && is_header_block(lines, i))
    {
        return Some(Cut::Outlook);
    }
    (t.len() <= 120 && could_be_footer(t) && MOBILE_FOOTER.is_match(t)).then_some(Cut::Signature)
}

fn is_hard_cut(lines: &[&str], i: usize, has_marker: bool) -> bool {
    cut_at(lines, i, has_marker).is_some()
}

fn starts_with_ci(t: &str, prefix: &str) -> bool {
    t.len() >= prefix.len() && t.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// The opening words of the mobile footers, before the regex checks the rest.
fn could_be_footer(t: &str) -> bool {
    [
        "sent from",
        "envoy",
        "get outlook",
        "t\u{e9}l\u{e9}charger",
        "telecharger",
        "von meinem",
        "gesendet von",
    ]
    .iter()
    .any(|p| starts_with_ci(t, p))
}

/// A short field name before a colon ("From:", "De :", "*Von:*").
fn could_be_header(t: &str) -> bool {
    t.find(':').is_some_and(|i| i <= 10)
}

fn ends_with_colon(line: &str) -> bool {
    line.trim_end().ends_with([':', '：'])
}

/// Number of lines (1 or 2) of an attribution starting at `i`.
fn attribution_len(lines: &[&str], i: usize) -> Option<usize> {
    let line = lines[i];
    // Every attribution ends with a colon, on this line or (wrapped) the next.
    if !ends_with_colon(line) && !lines.get(i + 1).is_some_and(|n| ends_with_colon(n)) {
        return None;
    }
    if line.len() > 600 || is_quoted(line) {
        return None;
    }
    // Every client puts a date (hence a digit) in its attribution; requiring one keeps a
    // sentence such as "On Monday the admin wrote:" in the text.
    let has_digit = |s: &str| s.bytes().any(|b| b.is_ascii_digit());
    if ATTRIBUTION.is_match(line) && has_digit(line) {
        return Some(1);
    }
    if let Some(next) = lines.get(i + 1)
        && ATTRIBUTION_START.is_match(line)
        && !is_quoted(next)
        && ATTRIBUTION_END.is_match(next)
        && (has_digit(line) || has_digit(next))
    {
        return Some(2);
    }
    if BARE_ATTRIBUTION.is_match(line)
        && lines[i + 1..]
            .iter()
            .find(|l| !is_blank(l))
            .is_some_and(|l| is_quoted(l))
    {
        return Some(1);
    }
    None
}

/// After an attribution: is the rest history only (cut here), or a reply written between the
/// quoted lines (keep the unquoted lines)? History that is not `>`-quoted at all (HTML mail
/// converted to text) counts as history.
fn rest_is_history(lines: &[&str], from: usize, has_marker: bool) -> bool {
    let mut saw_quoted = false;
    let mut saw_own = false;
    for (j, line) in lines.iter().enumerate().skip(from) {
        if is_blank(line) {
            continue;
        }
        if is_quoted(line) {
            saw_quoted = true;
            continue;
        }
        if is_hard_cut(lines, j, has_marker) {
            break;
        }
        if saw_quoted {
            saw_own = true;
            break;
        }
        // Unquoted text straight after the attribution: history pasted without quote marks.
        return true;
    }
    !(saw_quoted && saw_own)
}

/// The new text of `text` (see the module doc). A forward marked in the body itself
/// ([`forward`]) keeps its forwarded content; with no subject to go by, an Outlook header
/// block is taken as quoted history.
pub fn new_text(text: &str) -> String {
    new_text_for(text, "")
}

/// The new text of a message with this `subject`: as [`new_text`], except that when the
/// subject says the message is a forward (`Fwd:`, `TR:`, `WG:`, `RV:`, ...), an Outlook
/// header block or `-----Original Message-----` opens the forwarded content instead of
/// history. A forwarded message is the request: its content stays, below the forwarder's
/// own lines.
pub fn new_text_for(text: &str, subject: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    // One scan of the whole text instead of one regex call per line.
    let has_marker = ["this line", "THIS LINE", "cette ligne", "CETTE LIGNE"]
        .iter()
        .any(|needle| text.contains(needle))
        && OWN_MARKER.is_match(text);
    let out = request(&lines, forward::subject_is_forward(subject), has_marker, 0);
    if out.is_empty() {
        text.trim().to_string()
    } else {
        out
    }
}

/// The new text of `lines`, forwarded content included; empty when nothing is left.
/// `has_marker`: whether the whole text holds our own reply marker. `depth` counts the
/// forwards this text is nested in.
fn request(lines: &[&str], subject_forward: bool, has_marker: bool, depth: usize) -> String {
    let look = (depth < forward::MAX_DEPTH).then_some(subject_forward);
    let (keep, found) = scan(lines, has_marker, look);
    let own = join_lines(&keep);
    let Some(at) = found else {
        return own;
    };
    let forwarded = forward::content(&lines[at..], |body| {
        let inner = request(body, false, has_marker, depth + 1);
        if inner.is_empty() {
            join_lines(body)
        } else {
            inner
        }
    });
    match (own.is_empty(), forwarded.is_empty()) {
        (_, true) => own,
        (true, false) => forwarded,
        (false, false) => format!("{own}\n\n{forwarded}"),
    }
}

/// One pass over `lines`: the lines the sender wrote this time (quoted history, signature and
/// footers removed), and where forwarded content starts, if it does. `forward` is None when
/// forwards are not looked for, else whether the subject says the message is one (see
/// [`forward`]). A forward marker counts only above the first mark of reply history, so a
/// marker inside the history of a reply is history too; below the signature it still counts
/// (people sign, then forward).
fn scan<'a>(
    lines: &[&'a str],
    has_marker: bool,
    forward: Option<bool>,
) -> (Vec<&'a str>, Option<usize>) {
    let mut keep: Vec<&str> = Vec::with_capacity(lines.len());
    let mut signed = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if forward.is_some() && forward::is_separator(line) {
            return (keep, Some(i));
        }
        match cut_at(lines, i, has_marker) {
            Some(Cut::Signature) => {
                if forward.is_none() {
                    break;
                }
                signed = true;
                i += 1;
                continue;
            }
            Some(Cut::OwnMarker) => break,
            Some(Cut::Outlook) => return (keep, forward.filter(|&s| s).map(|_| i)),
            None => {}
        }
        if let Some(len) = attribution_len(lines, i) {
            if rest_is_history(lines, i + len, has_marker) {
                return (keep, forward.filter(|&s| s).map(|_| i));
            }
            i += len;
            continue;
        }
        if !signed && !is_quoted(line) {
            keep.push(line);
        }
        i += 1;
    }
    (keep, None)
}

/// `lines` joined, trailing white space and rules removed, blank runs folded to one line.
fn join_lines(lines: &[&str]) -> String {
    let mut keep = lines;
    // Rules and blank lines left at the bottom belonged to the cut block.
    while keep.last().is_some_and(|l| is_blank(l) || is_rule(l)) {
        keep = &keep[..keep.len() - 1];
    }
    let mut out = String::with_capacity(keep.iter().map(|l| l.len() + 1).sum::<usize>().min(4096));
    let mut blank_run = 0;
    for line in keep {
        if is_blank(line) {
            blank_run += 1;
            if blank_run > 1 || out.is_empty() {
                continue;
            }
            out.push('\n');
            continue;
        }
        blank_run = 0;
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::new_text;

    #[test]
    fn gmail_reply_keeps_only_the_new_text() {
        let body = "Thanks, that fixed it.\n\nOn Mon, 24 Nov 2026 at 10:00, Support <support@example.test> wrote:\n> Please try again.\n>\n> -- \n> Support\n";
        assert_eq!(new_text(body), "Thanks, that fixed it.");
    }

    #[test]
    fn gmail_attribution_wrapped_over_two_lines_is_found() {
        let body = "Still broken.\n\nOn Mon, 24 Nov 2026 at 10:00, Very Long Name Support Team <\nsupport@example.test> wrote:\n\n> old\n";
        assert_eq!(new_text(body), "Still broken.");
    }

    #[test]
    fn french_attribution_with_non_breaking_space_is_found() {
        let body = "Ça marche, merci.\n\nLe lun. 24 nov. 2026 à 10:00, Support <support@example.test> a écrit\u{a0}:\n> Essayez encore.\n";
        assert_eq!(new_text(body), "Ça marche, merci.");
        let narrow = "Merci.\n\nLe 24/11/2026 à 10:00, Support a écrit\u{202f}:\n> x\n";
        assert_eq!(new_text(narrow), "Merci.");
    }

    #[test]
    fn apple_mail_attribution_is_found() {
        let body = "Yes please.\n\nSent from my iPhone\n\n> On 24 Nov 2026, at 10:00, Support <support@example.test> wrote:\n>\n> Shall we?\n";
        assert_eq!(new_text(body), "Yes please.");
        let body = "Yes please.\n\nOn 24 Nov 2026, at 10:00, Support <support@example.test> wrote:\n\n> Shall we?\n";
        assert_eq!(new_text(body), "Yes please.");
    }

    #[test]
    fn outlook_original_message_block_is_history() {
        let body = "See attached.\r\n\r\n-----Original Message-----\r\nFrom: Support\r\nSent: Monday\r\nTo: Bob\r\nSubject: x\r\n\r\nold text\r\n";
        assert_eq!(new_text(body), "See attached.");
    }

    #[test]
    fn outlook_underscore_header_block_in_french_is_history() {
        let body = "Voici la facture.\n\n________________________________\nDe : Support <support@example.test>\nEnvoyé : lundi 24 novembre 2026 10:00\nÀ : Client\nObjet : Re: facture\n\nAncien texte\n";
        assert_eq!(new_text(body), "Voici la facture.");
    }

    #[test]
    fn outlook_header_block_without_separator_is_history() {
        let body = "Here it is.\n\nFrom: Support <support@example.test>\nSent: Monday, November 24, 2026 10:00 AM\nTo: Bob\nSubject: RE: x\n\nold\n";
        assert_eq!(new_text(body), "Here it is.");
        let de = "Anbei.\n\nVon: Support\nGesendet: Montag\nAn: Bob\nBetreff: x\n\nalt\n";
        assert_eq!(new_text(de), "Anbei.");
    }

    #[test]
    fn a_single_from_line_in_the_text_is_kept() {
        let body = "The mail says\nFrom: accounting\nand nothing else.\n";
        assert_eq!(new_text(body), body.trim());
    }

    #[test]
    fn signature_after_dash_dash_space_is_dropped() {
        let body = "My printer is on fire.\n-- \nBob\nACME Corp\n";
        assert_eq!(new_text(body), "My printer is on fire.");
        // Only the exact delimiter counts.
        let body = "Price went from 10 -- to 20.\n--\nnot a delimiter\n";
        assert_eq!(new_text(body), body.trim());
    }

    #[test]
    fn mobile_footers_end_the_new_text() {
        for footer in [
            "Sent from my iPhone",
            "Envoyé de mon iPhone",
            "Sent from Outlook for Android",
            "Get Outlook for iOS<https://aka.ms/o0ukef>",
            "Von meinem iPhone gesendet",
        ] {
            let body = format!("Call me.\n\n{footer}\n\nOn Mon, Bob wrote:\n> old\n");
            assert_eq!(new_text(&body), "Call me.", "{footer}");
        }
    }

    #[test]
    fn a_sentence_mentioning_a_phone_is_not_a_footer() {
        let body =
            "I sent from my iPhone the photos you asked for yesterday morning, are they there?";
        assert_eq!(new_text(body), body);
    }

    #[test]
    fn our_reply_marker_cuts_everything_below() {
        let body = "Merci !\n\n-- Répondez au-dessus de cette ligne / Reply above this line --\nVotre demande [CHT-12] a été reçue.\n";
        assert_eq!(new_text(body), "Merci !");
        let quoted = "Thanks\n\n> -- Répondez au-dessus de cette ligne / Reply above this line --\n> Your request\n";
        assert_eq!(new_text(quoted), "Thanks");
    }

    #[test]
    fn interleaved_answers_are_kept_and_quotes_dropped() {
        let body = "On Mon, 24 Nov 2026, Support wrote:\n> What is your version?\n2.3\n> And your OS?\nLinux\n";
        assert_eq!(new_text(body), "2.3\nLinux");
    }

    #[test]
    fn unquoted_history_after_an_attribution_is_cut() {
        let body = "Fine now.\n\nOn Mon, 24 Nov 2026 at 10:00, Support wrote:\nPlease try again.\n";
        assert_eq!(new_text(body), "Fine now.");
    }

    #[test]
    fn a_message_that_is_only_quotes_keeps_its_full_text() {
        let body = "> only a quote\n> nothing new\n";
        assert_eq!(new_text(body), body.trim());
        let sig_only = "-- \nBob\n";
        assert_eq!(new_text(sig_only), sig_only.trim());
    }

    #[test]
    fn a_sentence_starting_with_on_and_ending_in_wrote_stays() {
        let body = "On Monday the admin\nwrote:\nthe server is down.";
        assert_eq!(new_text(body), body);
    }

    #[test]
    fn thunderbird_bare_attribution_is_found() {
        let body = "Agreed.\n\nBob Smith wrote:\n> Shall we?\n";
        assert_eq!(new_text(body), "Agreed.");
        // Without quoted lines after it, a sentence ending in "wrote:" stays.
        let body = "Here is what the manager wrote:\nthe server is down.";
        assert_eq!(new_text(body), body);
    }
}
