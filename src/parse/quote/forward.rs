//! Forwarded requests: "here is the mail from our accountant" is the forwarder's line, the
//! request itself is below the forward marker, and it must not be stripped as quoted history.
//!
//! What counts as a forward is decided by forward markers only:
//! - a separator line that says "forwarded" in the body: Gmail's `---------- Forwarded
//!   message ---------` and its translations, Thunderbird's `-------- Forwarded Message
//!   --------`, Apple Mail's `Begin forwarded message:`, Lotus' `----- Forwarded by … -----`;
//! - or a subject whose first prefix is a forward one (`Fwd:`, `FW:`, `TR:`, `WG:`, `RV:`,
//!   `Doorst:`, …): then Outlook's header block (From:/De:/Von: … Sent:/Envoyé: …, usually
//!   under a rule), `-----Original Message-----` or an attribution opens the forwarded content.
//!
//! A reply (`Re:`, `AW:`, …) quoting history is still stripped, and a marker that only appears
//! inside the history of a reply (below its first history cut) is history too.

use std::sync::LazyLock;

use regex::Regex;

use super::{
    HEADER_FROM, HEADER_OTHER, ORIGINAL_MESSAGE, attribution_len, ends_with_colon, is_quoted, re,
};

/// Forwards nested deeper than this are kept as they are, not searched further: the bound
/// keeps a text made of thousands of markers linear.
pub(super) const MAX_DEPTH: usize = 4;

/// Gmail, Thunderbird, Yahoo and Lotus separators, in the languages their users write in.
static DASHED: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)^-{2,}\s*(?:",
        r"forwarded message|forwarded e-?mail|forwarded by\b.*|begin forwarded message",
        r"|message transf[ée]r[ée]|courriel transf[ée]r[ée]|message r[ée]exp[ée]di[ée]",
        r"|weitergeleitete (?:nachricht|e-mail)|mensaje reenviado|messaggio inoltrato",
        r"|doorgestuurd bericht|mensagem encaminhada|mensagem reencaminhada",
        r"|vidarebefordrat meddelande|videresendt meddelelse|videresendt melding",
        r"|przekazana wiadomo[śs][ćc]|välitetty viesti",
        r")\s*:?\s*-*\s*$"
    ))
});

/// Apple Mail's line (plain forwards put the forwarded message under it, often `>`-quoted).
static APPLE: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)^(?:begin forwarded message|d[ée]but du message r[ée]exp[ée]di[ée]",
        r"|anfang der weitergeleiteten (?:nachricht|e-mail)|inicio del mensaje reenviado",
        r"|inizio messaggio inoltrato|begin doorgestuurd bericht",
        r"|in[íi]cio da mensagem reencaminhada|mensagem encaminhada",
        r"|vidarebefordrat brev|videresendt besked|videresendt melding)\s*:\s*$"
    ))
});

/// The forward prefixes Outlook, Gmail and others put before a subject, in several languages.
static SUBJECT_PREFIX: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^\s*(?:\[[^\]]*\]\s*)*([\p{L}]{1,8})(?:\[\d+\])?\s*:"));

/// A line of a forwarded header block: a short label, a colon, a value ("De : x",
/// "*Sent:* y", "Date: jeu. 27 nov. 2026 à 17:12").
static HEADER_LINE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\s*\*?\p{L}[\p{L}\p{M}'-]*(?: [\p{L}\p{M}'-]+){0,2}\s*\*?\s*:\*?(?:\s|$)")
});

/// Returns true if and only if the first prefix of `subject` (after `[tags]`) is a forward
/// prefix: `Fwd: Re: x` is a forward, `Re: Fwd: x` a reply.
pub fn subject_is_forward(subject: &str) -> bool {
    let Some(c) = SUBJECT_PREFIX.captures(subject) else {
        return false;
    };
    let p = c.get(1).map_or("", |m| m.as_str()).to_lowercase();
    matches!(
        p.as_str(),
        "fwd" | "fw" | "tr" | "wg" | "rv" | "doorst" | "enc" | "vl" | "vb" | "pd" | "továbbítás"
    )
}

/// Returns true if and only if `line` (not `>`-quoted) is a separator that says "forwarded".
/// Cheap byte tests first: this runs on every line of every message.
pub(super) fn is_separator(line: &str) -> bool {
    let t = line.trim();
    if t.starts_with("--") {
        return DASHED.is_match(t);
    }
    ends_with_colon(t) && t.len() <= 80 && APPLE.is_match(t)
}

/// The forwarded content, from its marker (`lines[0]`) down: the marker line and the
/// forwarded header block as they are, then the forwarded body as `body` makes it (the
/// caller strips its own quoted history). A forward quoted with `>` (Apple Mail) is unquoted
/// one level first.
pub(super) fn content(lines: &[&str], body: impl FnOnce(&[&str]) -> String) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut i = 0;
    let first = lines.first().map_or("", |l| l.trim());
    if is_separator(first) || (first.starts_with("--") && ORIGINAL_MESSAGE.is_match(first)) {
        out.push(first);
        i = 1;
    } else if let Some(len) = attribution_len(lines, 0) {
        out.extend(lines[..len].iter().map(|l| l.trim()));
        i = len;
    }
    let rest = &lines[i.min(lines.len())..];
    let quoted = rest
        .iter()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| is_quoted(l));
    let rest: Vec<&str> = if quoted {
        rest.iter().map(|l| unquote(l)).collect()
    } else {
        rest.to_vec()
    };
    // The forwarded message's own header block.
    let mut j = 0;
    while j < rest.len() && rest[j].trim().is_empty() {
        j += 1;
    }
    let header_start = j;
    while j < rest.len() {
        let l = rest[j];
        let header = HEADER_LINE.is_match(l) || HEADER_FROM.is_match(l) || HEADER_OTHER.is_match(l);
        let continuation = j > header_start && l.starts_with([' ', '\t']) && !l.trim().is_empty();
        if !(header || continuation) {
            break;
        }
        j += 1;
    }
    out.extend(rest[header_start..j].iter().map(|l| l.trim_end()));
    let text = body(&rest[j..]);
    let mut s = out.join("\n");
    if !text.is_empty() {
        if !s.is_empty() {
            s.push_str("\n\n");
        }
        s.push_str(&text);
    }
    s.trim().to_string()
}

/// `line` with one level of `>` quoting removed.
fn unquote(line: &str) -> &str {
    let t = line.trim_start();
    match t.strip_prefix('>') {
        Some(rest) => rest.strip_prefix(' ').unwrap_or(rest),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{new_text, new_text_for};
    use super::subject_is_forward;

    #[test]
    fn forward_prefixes_are_read_from_the_first_prefix_only() {
        for s in [
            "Fwd: x",
            "FW: x",
            "TR: Facture",
            "WG: Rechnung",
            "RV: Factura",
            "Doorst: factuur",
            "[EXT] Fwd: Re: x",
            "Fw : x",
        ] {
            assert!(subject_is_forward(s), "{s}");
        }
        for s in [
            "Re: Fwd: x",
            "AW: WG: x",
            "RE: TR: x",
            "Forward planning",
            "x",
            "",
        ] {
            assert!(!subject_is_forward(s), "{s}");
        }
    }

    #[test]
    fn thunderbird_forward_keeps_the_forwarded_request() {
        let body = "See below, thanks.\n\n-------- Forwarded Message --------\nSubject: \tInvoice 2026-118 charged twice\nDate: \tMon, 23 Nov 2026 09:00:00 +0100\nFrom: \tAnna <anna@customers.example>\nTo: \tBob <bob@customers.example>\n\nHi Bob,\n\nWe were charged twice for invoice 2026-118.\n\nAnna\n";
        let out = new_text(body);
        assert!(out.starts_with("See below, thanks."), "{out}");
        assert!(out.contains("charged twice for invoice 2026-118"), "{out}");
        assert!(out.contains("From: \tAnna"), "{out}");
    }

    #[test]
    fn apple_mail_forward_is_unquoted_and_kept() {
        let body = "FYI\n\nSent from my iPhone\n\nBegin forwarded message:\n\n> From: Anna <anna@customers.example>\n> Date: 23 November 2026 at 09:00:00 CET\n> To: Bob <bob@customers.example>\n> Subject: Login broken\n> \n> The login page shows error 500 since this morning.\n";
        let out = new_text_for(body, "Fwd: Login broken");
        assert!(out.starts_with("FYI\n\nBegin forwarded message:"), "{out}");
        assert!(
            out.ends_with("The login page shows error 500 since this morning."),
            "{out}"
        );
    }

    #[test]
    fn outlook_forward_needs_the_subject_and_keeps_the_block() {
        let body = "Bitte um Prüfung.\n\n________________________________\nVon: Anna Schmidt <anna@kunden.example>\nGesendet: Montag, 23. November 2026 09:00\nAn: Bob <bob@kunden.example>\nBetreff: Doppelte Abbuchung\n\nHallo Bob,\nuns wurde der Betrag zweimal abgebucht.\n";
        let out = new_text_for(body, "WG: Doppelte Abbuchung");
        assert!(out.starts_with("Bitte um Prüfung.\n\nVon: Anna"), "{out}");
        assert!(out.contains("zweimal abgebucht"), "{out}");
        // The same body as a reply: the block is history.
        assert_eq!(
            new_text_for(body, "AW: Doppelte Abbuchung"),
            "Bitte um Prüfung."
        );
        assert_eq!(new_text(body), "Bitte um Prüfung.");
    }

    #[test]
    fn outlook_original_message_under_a_forward_subject_is_kept() {
        let body = "Voir ci-dessous.\r\n\r\n-----Original Message-----\r\nFrom: Anna\r\nSent: Monday\r\nTo: Bob\r\nSubject: x\r\n\r\nLe widget ne charge plus.\r\n";
        let out = new_text_for(body, "TR: x");
        assert!(out.contains("-----Original Message-----"), "{out}");
        assert!(out.ends_with("Le widget ne charge plus."), "{out}");
    }

    #[test]
    fn gmail_forwards_in_other_languages_and_nested_history() {
        let body = "Os lo reenvío.\n\n---------- Mensaje reenviado ---------\nDe: Ana <ana@clientes.example>\nDate: lun, 23 nov 2026 a las 9:00\nSubject: Factura duplicada\nTo: <pablo@clientes.example>\n\n\nNos habéis cobrado dos veces.\n\nEl dom, 22 nov 2026 a las 18:00, Soporte (<soporte@x.example>) escribió:\n> ¿Algo más?\n";
        let out = new_text(body);
        assert!(out.starts_with("Os lo reenvío."), "{out}");
        assert!(out.ends_with("Nos habéis cobrado dos veces."), "{out}");
    }

    #[test]
    fn the_forwarders_signature_does_not_hide_the_forward() {
        let body = "Please help.\n-- \nBob, ACME\n\n---------- Forwarded message ---------\nFrom: Anna <anna@customers.example>\nDate: Mon, Nov 23, 2026 at 9:00 AM\nSubject: Refund\nTo: <bob@customers.example>\n\nWe need a refund for order 55.\n";
        let out = new_text(body);
        assert!(out.starts_with("Please help.\n\n----------"), "{out}");
        assert!(out.ends_with("We need a refund for order 55."), "{out}");
    }

    #[test]
    fn a_forward_marker_inside_reply_history_stays_history() {
        let body = "Thanks, all good now.\n\n________________________________\nFrom: Support <support@example.test>\nSent: Tuesday\nTo: Bob\nSubject: RE: [CHT-3] Fwd: Refund\n\nWe refunded it.\n\n---------- Forwarded message ---------\nFrom: Anna\nSubject: Refund\n\nold request\n";
        assert_eq!(
            new_text_for(body, "RE: [CHT-3] Fwd: Refund"),
            "Thanks, all good now."
        );
        let quoted = "Thanks.\n\nOn Tue, 24 Nov 2026 at 10:00, Support <support@example.test> wrote:\n> ---------- Forwarded message ---------\n> old\n";
        assert_eq!(new_text_for(quoted, "Re: Fwd: Refund"), "Thanks.");
    }

    #[test]
    fn a_forward_with_nothing_of_the_forwarders_own_starts_with_the_marker() {
        let body =
            "---------- Forwarded message ---------\nFrom: Anna\nSubject: x\n\nThe export fails.\n";
        assert_eq!(new_text(body), body.trim());
    }
}
