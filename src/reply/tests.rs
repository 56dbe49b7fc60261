use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use mail_parser::{MessageParser, MimeHeaders};

use super::*;
use crate::parse::Mailbox;

pub(super) fn shipped() -> Templates {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    match Templates::load(&dir) {
        Ok(t) => t,
        Err(e) => panic!("shipped templates must load: {e}"),
    }
}

pub(super) fn identity() -> Identity {
    Identity {
        address: "support@example.test".to_owned(),
        name: "Support".to_owned(),
        timezone: chrono_tz::Tz::Europe__Paris,
    }
}

pub(super) fn julie() -> Mailbox {
    Mailbox {
        name: Some("Julie Martin".to_owned()),
        address: "julie@example.test".to_owned(),
    }
}

/// 14:30 in Paris (UTC+1 in November).
pub(super) fn due() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 13, 30, 0)
        .single()
        .expect("valid date")
}

pub(super) fn ack_input<'a>(customer: &'a Mailbox, locale: &'a str) -> AckInput<'a> {
    AckInput {
        locale,
        ticket_ref: "CHT-12",
        customer,
        original_subject: "Problème de facture",
        customer_message_id: "abc@mail.example.test",
        customer_references: &[],
        customer_thread_index: None,
        customer_thread_topic: None,
        category_label: "Facturation",
        promise: Some((24, 24)),
        business: false,
        confirm_only: false,
        due_at: Some(due()),
        out_of_hours: None,
        ask_for_account: false,
        tips: &[],
        short: false,
        message_id: "ack-1.sig@supportd.example.test",
    }
}

/// A request no account matched, naming one address; accounts were imported.
static NO_ACCOUNT: std::sync::LazyLock<crate::accounts::Lookup> =
    std::sync::LazyLock::new(|| crate::accounts::Lookup::NotFound {
        emails: vec!["julie.pro@example.test".to_owned()],
        urls: vec!["https://boulangerie.example.test".to_owned()],
        accounts_known: true,
    });

pub(super) fn notification_input<'a>(
    customer: &'a Mailbox,
    raw: &'a [u8],
) -> NotificationInput<'a> {
    NotificationInput {
        locale: "en",
        ticket_ref: "CHT-12",
        customer,
        original_subject: "Re: [CHT-12] Invoice",
        category_label: "Billing",
        category_id: "billing",
        matched_rules: &[],
        tips: &[],
        due_at: Some(due()),
        new_text: "I was charged twice.\nCan you refund one?",
        action: "new",
        automated: None,
        original_raw: raw,
        to: "team@example.test",
        message_id: "note-1@supportd.example.test",
        customer_message_id: "abc@mail.example.test",
        reply_to: Some("support+CHT-12@example.test"),
        previous: None,
        ack_withheld: None,
        sender_note: None,
        account: &NO_ACCOUNT,
        from_form: false,
        form_account: &[],
        context: &[],
    }
}

pub(super) const ORIGINAL: &[u8] = b"From: Julie Martin <julie@example.test>\r\n\
To: support@example.test\r\n\
Subject: Invoice\r\n\
Message-ID: <abc@mail.example.test>\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
J'ai \xc3\xa9t\xc3\xa9 factur\xc3\xa9e deux fois.\r\n";

pub(super) fn ack(input: &AckInput<'_>) -> Outgoing {
    match shipped().render_ack(&identity(), input) {
        Ok(out) => out,
        Err(e) => panic!("ack must render: {e}"),
    }
}

fn header_block(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let end = text.find("\r\n\r\n").expect("a header/body separator");
    format!("\r\n{}\r\n", &text[..end])
}

pub(super) fn body_text(raw: &[u8]) -> String {
    let message = MessageParser::default().parse(raw).expect("parsable mail");
    message
        .body_text(0)
        .expect("a text body")
        .replace("\r\n", "\n")
}

fn write_set(dir: &Path, locale: &str, ack: &str) {
    let folder = dir.join(locale);
    std::fs::create_dir_all(&folder).expect("mkdir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/en");
    for name in ["ack_short", "notification", "escalation"] {
        std::fs::copy(
            shipped.join(format!("{name}.hbs")),
            folder.join(format!("{name}.hbs")),
        )
        .expect("copy");
    }
    std::fs::write(folder.join("ack.hbs"), ack).expect("write");
}

fn load_error(ack: &str) -> (String, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    write_set(dir.path(), "en", ack);
    match Templates::load(dir.path()) {
        Ok(_) => panic!("template {ack:?} must be refused"),
        Err(e) => (e.to_string(), dir.path().join("en/ack.hbs")),
    }
}

#[test]
fn french_ack_has_the_ref_the_label_the_promise_and_the_due_time_in_paris() {
    let customer = julie();
    let body = body_text(&ack(&ack_input(&customer, "fr")).raw);
    assert!(body.contains("CHT-12"), "{body}");
    assert!(body.contains("Facturation"), "{body}");
    assert!(body.contains("sous 24 heures"), "{body}");
    assert!(
        body.contains("mercredi 25 novembre à 14:30 (heure de Paris)"),
        "{body}"
    );
    assert!(body.contains("Bonjour Julie Martin,"), "{body}");
}

#[test]
fn english_ack_has_the_ref_the_label_the_promise_and_the_due_time_in_paris() {
    let customer = julie();
    let input = AckInput {
        category_label: "Technical",
        promise: Some((24, 48)),
        ..ack_input(&customer, "en")
    };
    let body = body_text(&ack(&input).raw);
    assert!(body.contains("CHT-12"), "{body}");
    assert!(body.contains("Technical"), "{body}");
    assert!(body.contains("within 24 to 48 hours"), "{body}");
    assert!(
        body.contains("Wednesday, November 25, 2:30 pm Paris time"),
        "{body}"
    );
}

#[test]
fn ack_without_a_promise_uses_the_help_page_general_wording() {
    let customer = julie();
    let input = AckInput {
        promise: None,
        due_at: None,
        ..ack_input(&customer, "fr")
    };
    let body = body_text(&ack(&input).raw);
    assert!(
        body.contains("généralement dans les 24 à 48 heures"),
        "{body}"
    );
    assert!(!body.contains("Réponse prévue"), "{body}");
}

#[test]
fn tips_are_offered_as_a_possible_solution_when_present() {
    let customer = julie();
    let tips = vec!["Accédez aux factures via Facturation > Gérer l'abonnement.".to_owned()];
    let input = AckInput {
        tips: &tips,
        ..ack_input(&customer, "fr")
    };
    let body = body_text(&ack(&input).raw);
    assert!(body.contains("pourrait déjà résoudre"), "{body}");
    assert!(
        body.contains("  - Accédez aux factures via Facturation > Gérer l'abonnement."),
        "{body}"
    );
    assert!(!body.contains("captures d'écran"), "{body}");
}

#[test]
fn the_faster_answer_list_is_shown_when_there_are_no_tips() {
    let customer = julie();
    let body = body_text(&ack(&ack_input(&customer, "en")).raw);
    for item in [
        "your project name or URL",
        "the steps to reproduce the problem",
        "the browser and device you are using",
        "any error messages you see",
        "screenshots, as links in your message",
    ] {
        assert!(body.contains(item), "{item} missing from {body}");
    }
    assert!(!body.contains("may already solve"), "{body}");
}

#[test]
fn a_very_short_request_gets_the_short_variant_asking_for_details() {
    let customer = julie();
    let input = AckInput {
        short: true,
        ..ack_input(&customer, "fr")
    };
    let body = body_text(&ack(&input).raw);
    assert!(body.contains("très court"), "{body}");
    assert!(body.contains("ce qui s'est passé"), "{body}");
    assert!(body.contains("l'URL de votre projet"), "{body}");
    assert!(body.contains("CHT-12"), "{body}");
    assert!(body.starts_with(REPLY_ABOVE_MARKER), "{body}");
}

#[test]
fn the_ack_body_starts_with_the_reply_above_marker_then_a_blank_line() {
    let customer = julie();
    let body = body_text(&ack(&ack_input(&customer, "en")).raw);
    let mut lines = body.lines();
    assert_eq!(lines.next(), Some(REPLY_ABOVE_MARKER));
    assert_eq!(lines.next(), Some(""));
    assert_eq!(lines.next(), Some("Hello Julie Martin,"));
}

#[test]
fn the_shipped_texts_never_repeat_the_marker_phrases_the_quote_stripper_cuts_at() {
    let customer = julie();
    for locale in ["fr", "en"] {
        for short in [false, true] {
            let input = AckInput {
                short,
                ..ack_input(&customer, locale)
            };
            let body = body_text(&ack(&input).raw).to_lowercase();
            let own = body.matches("reply above this line").count()
                + body.matches("pondez au-dessus de cette ligne").count();
            assert_eq!(own, 2, "{body}");
        }
    }
}

#[test]
fn ack_headers_mark_an_auto_reply_and_thread_on_the_customer_message() {
    let customer = julie();
    let refs = vec!["root@x.test".to_owned(), "mid@x.test".to_owned()];
    let input = AckInput {
        customer_references: &refs,
        ..ack_input(&customer, "fr")
    };
    let out = ack(&input);
    let headers = header_block(&out.raw);
    for expected in [
        "\r\nFrom: Support <support@example.test>\r\n",
        "\r\nTo: \"Julie Martin\" <julie@example.test>\r\n",
        "\r\nMessage-ID: <ack-1.sig@supportd.example.test>\r\n",
        "\r\nIn-Reply-To: <abc@mail.example.test>\r\n",
        "\r\nReferences: <root@x.test> <mid@x.test> <abc@mail.example.test>\r\n",
        "\r\nAuto-Submitted: auto-replied\r\n",
        "\r\nX-Auto-Response-Suppress: All\r\n",
        "\r\nPrecedence: auto_reply\r\n",
        "\r\nX-Supportd-Loop: support@example.test\r\n",
        "\r\nContent-Language: fr\r\n",
        "\r\nMIME-Version: 1.0\r\n",
        "\r\nContent-Type: text/plain; charset=utf-8\r\n",
        "\r\nDate: ",
    ] {
        assert!(
            headers.contains(expected),
            "{expected:?} missing from {headers}"
        );
    }
    assert_eq!(out.to, "julie@example.test");
    assert_eq!(out.message_id, "ack-1.sig@supportd.example.test");
    assert_eq!(out.in_reply_to.as_deref(), Some("abc@mail.example.test"));
    assert_eq!(
        out.references,
        ["root@x.test", "mid@x.test", "abc@mail.example.test"]
    );

    let parsed = MessageParser::default().parse(&out.raw).expect("parsable");
    assert_eq!(parsed.subject(), Some("[CHT-12] Problème de facture"));
    assert_eq!(parsed.message_id(), Some("ack-1.sig@supportd.example.test"));
    let references: Vec<&str> = parsed
        .references()
        .as_text_list()
        .map(|ids| ids.iter().map(|id| id.as_ref()).collect())
        .unwrap_or_default();
    assert_eq!(
        references,
        ["root@x.test", "mid@x.test", "abc@mail.example.test"]
    );
}

#[test]
fn the_ack_subject_carries_the_ticket_token_once() {
    let customer = julie();
    let input = AckInput {
        original_subject: "Re: [CHT-12] Problème de facture",
        ..ack_input(&customer, "fr")
    };
    let out = ack(&input);
    assert_eq!(out.subject, "[CHT-12] Problème de facture");
    let parsed = MessageParser::default().parse(&out.raw).expect("parsable");
    assert_eq!(parsed.subject(), Some("[CHT-12] Problème de facture"));
}

#[test]
fn ack_subject_drops_reply_prefixes_line_breaks_and_control_characters() {
    assert_eq!(ack_subject("CHT-12", "Facture"), "[CHT-12] Facture");
    assert_eq!(
        ack_subject("CHT-12", "RE: TR: Fwd: Facture"),
        "[CHT-12] Facture"
    );
    assert_eq!(
        ack_subject("CHT-12", "AW: Re[2]: [cht-12] Facture"),
        "[CHT-12] Facture"
    );
    assert_eq!(
        ack_subject("CHT-12", "Facture\r\n\tdu\x07 mois"),
        "[CHT-12] Facture du mois"
    );
    // A different ticket's token is the customer's text, not ours.
    assert_eq!(
        ack_subject("CHT-12", "[CHT-123] Facture"),
        "[CHT-12] [CHT-123] Facture"
    );
    assert_eq!(
        ack_subject("CHT-12", "Retour sur la facture"),
        "[CHT-12] Retour sur la facture"
    );
    assert_eq!(
        ack_subject("CHT-12", "Facture\u{2028}X-Evil: 1"),
        "[CHT-12] Facture X-Evil: 1"
    );
    assert_eq!(
        ack_subject("CHT-12", "Re:\u{a0}« Facture\u{a0}»"),
        "[CHT-12] « Facture\u{a0}»"
    );
}

#[test]
fn an_empty_subject_becomes_no_subject() {
    assert_eq!(ack_subject("CHT-12", ""), "[CHT-12] (no subject)");
    assert_eq!(ack_subject("CHT-12", " Re: \r\n"), "[CHT-12] (no subject)");
}

#[test]
fn header_injection_through_names_subjects_ids_or_labels_is_impossible() {
    let customer = Mailbox {
        name: Some("Julie\r\nBcc: victim@evil.test".to_owned()),
        address: "julie@example.test".to_owned(),
    };
    let refs = vec![
        "ok@x.test".to_owned(),
        "x@y\r\nBcc: victim@evil.test".to_owned(),
    ];
    let input = AckInput {
        original_subject: "Hello\r\nBcc: victim@evil.test\nX-Evil: 1",
        customer_message_id: "abc@x.test>\r\nBcc: victim@evil.test",
        customer_references: &refs,
        ticket_ref: "CHT-12\r\nX-Evil: 1",
        ..ack_input(&customer, "en")
    };
    let out = ack(&input);
    let mut identity = identity();
    identity.name = "Support\r\nBcc: victim@evil.test".to_owned();
    let notification = NotificationInput {
        original_subject: input.original_subject,
        category_label: "Billing\r\nBcc: victim@evil.test",
        customer_message_id: input.customer_message_id,
        ..notification_input(&customer, ORIGINAL)
    };
    let note = match shipped().render_notification(&identity, &notification) {
        Ok(out) => out,
        Err(e) => panic!("notification must render: {e}"),
    };
    for raw in [&out.raw, &note.raw] {
        let headers = header_block(raw);
        assert!(!headers.contains("\nBcc:"), "{headers}");
        assert!(!headers.contains("\nX-Evil:"), "{headers}");
        let parsed = MessageParser::default().parse(raw).expect("parsable");
        assert!(parsed.header("Bcc").is_none());
        assert!(parsed.header("X-Evil").is_none());
    }
    assert!(!out.subject.contains(['\r', '\n']));
    assert_eq!(out.in_reply_to, None);
    assert_eq!(out.references, ["ok@x.test"]);
}

#[test]
fn template_text_stays_in_the_body_even_when_it_looks_like_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_set(dir.path(), "en", "Bcc: victim@evil.test\r\n\r\nX-Evil: 1\n");
    let templates = Templates::load(dir.path()).expect("valid template");
    let customer = julie();
    let out = templates
        .render_ack(&identity(), &ack_input(&customer, "en"))
        .expect("renders");
    let headers = header_block(&out.raw);
    assert!(!headers.contains("\nBcc:"), "{headers}");
    assert!(!headers.contains("\nX-Evil:"), "{headers}");
    assert!(body_text(&out.raw).contains("Bcc: victim@evil.test"));
}

#[test]
fn the_notification_parses_back_and_its_attachment_is_the_original_message() {
    let customer = julie();
    let rules = vec!["billing/invoice or refund (subject: \"facture\")".to_owned()];
    let tips = vec!["Invoices are under Billing > Manage subscription.".to_owned()];
    let input = NotificationInput {
        matched_rules: &rules,
        tips: &tips,
        ..notification_input(&customer, ORIGINAL)
    };
    let out = shipped()
        .render_notification(&identity(), &input)
        .expect("renders");
    let headers = header_block(&out.raw);
    for expected in [
        "\r\nTo: team@example.test\r\n",
        "\r\nAuto-Submitted: auto-generated\r\n",
        "\r\nX-Auto-Response-Suppress: All\r\n",
        "\r\nX-Supportd-Loop: support@example.test\r\n",
        "\r\nMIME-Version: 1.0\r\n",
    ] {
        assert!(
            headers.contains(expected),
            "{expected:?} missing from {headers}"
        );
    }
    // Answering the notification answers the customer, through the ticket's plus-address.
    assert!(
        headers.contains("\r\nReply-To: Support <support+CHT-12@example.test>\r\n"),
        "{headers}"
    );

    let parsed = MessageParser::default().parse(&out.raw).expect("parsable");
    assert_eq!(
        parsed.subject(),
        Some("[CHT-12] [Billing] New request from julie@example.test: Invoice")
    );
    assert_eq!(parsed.content_type().map(|c| c.ctype()), Some("multipart"));
    let body = parsed
        .body_text(0)
        .expect("text part")
        .replace("\r\n", "\n");
    for expected in [
        "Julie Martin <julie@example.test>",
        "Billing (billing)",
        "billing/invoice or refund (subject: \"facture\")",
        "Invoices are under Billing > Manage subscription.",
        "Wednesday, November 25, 2:30 pm Paris time",
        "I was charged twice.\nCan you refund one?",
        "original message is attached",
    ] {
        assert!(body.contains(expected), "{expected:?} missing from {body}");
    }

    assert_eq!(parsed.attachment_count(), 1);
    let attachment = parsed.attachment(0).expect("attachment");
    let content_type = attachment.content_type().expect("content type");
    assert_eq!(
        (content_type.ctype(), content_type.subtype()),
        ("message", Some("rfc822"))
    );
    assert_eq!(attachment.contents(), ORIGINAL);
    let nested = attachment.message().expect("a nested message");
    assert_eq!(nested.message_id(), Some("abc@mail.example.test"));
    assert_eq!(
        nested.body_text(0).as_deref(),
        Some("J'ai été facturée deux fois.\r\n")
    );
}

#[test]
fn a_reply_notification_in_french_says_reponse_and_shows_the_automated_reason() {
    let customer = julie();
    let input = NotificationInput {
        locale: "fr",
        action: "reply",
        category_label: "Facturation",
        automated: Some("auto-submitted: auto-replied"),
        ..notification_input(&customer, ORIGINAL)
    };
    let out = shipped()
        .render_notification(&identity(), &input)
        .expect("renders");
    assert_eq!(
        out.subject,
        "[CHT-12] [Facturation] Réponse de julie@example.test: Invoice"
    );
    let body = body_text(&out.raw);
    assert!(body.contains("auto-submitted: auto-replied"), "{body}");
    assert!(
        body.contains("mercredi 25 novembre à 14:30 (heure de Paris)"),
        "{body}"
    );
    assert!(body.contains("message d'origine est joint"), "{body}");
}

#[test]
fn an_original_that_cannot_travel_as_rfc822_is_still_attached_byte_for_byte() {
    let customer = julie();
    let mut raw = b"Subject: long\r\n\r\n".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 2000));
    raw.extend_from_slice(b"\r\n");
    let out = shipped()
        .render_notification(&identity(), &notification_input(&customer, &raw))
        .expect("renders");
    assert!(
        out.raw
            .split(|&b| b == b'\n')
            .all(|line| line.len() <= 1000)
    );
    let parsed = MessageParser::default().parse(&out.raw).expect("parsable");
    let attachment = parsed.attachment(0).expect("attachment");
    assert_eq!(attachment.contents(), &raw[..]);
}

#[test]
fn bare_line_feeds_in_the_original_are_sent_as_crlf() {
    let customer = julie();
    let raw = b"Subject: lf\n\nbody\n";
    let out = shipped()
        .render_notification(&identity(), &notification_input(&customer, raw))
        .expect("renders");
    assert!(!out.raw.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    let parsed = MessageParser::default().parse(&out.raw).expect("parsable");
    let attachment = parsed.attachment(0).expect("attachment");
    assert_eq!(attachment.contents(), b"Subject: lf\r\n\r\nbody\r\n");
}

#[test]
fn a_notification_without_an_original_says_so_and_attaches_nothing() {
    let customer = julie();
    let out = shipped()
        .render_notification(&identity(), &notification_input(&customer, b""))
        .expect("renders");
    let parsed = MessageParser::default().parse(&out.raw).expect("parsable");
    assert_eq!(parsed.attachment_count(), 0);
    assert!(body_text(&out.raw).contains("not attached"));
}

#[test]
fn an_unclosed_if_is_refused_at_load_naming_the_file_and_line() {
    let (error, file) = load_error("Hello\n{{#if has_tips}}\nTips\n");
    assert!(error.contains(&file.display().to_string()), "{error}");
    assert!(error.contains("line"), "{error}");
}

#[test]
fn an_unknown_variable_is_refused_at_load_under_strict_mode() {
    let (error, file) = load_error("Hello {{customer_nmae}}\n");
    assert!(error.contains(&file.display().to_string()), "{error}");
    assert!(error.contains("customer_nmae"), "{error}");
}

#[test]
fn a_misspelt_condition_is_refused_at_load() {
    let (error, file) = load_error("{{#if has_tip}}x{{/if}}\n");
    assert!(error.contains(&file.display().to_string()), "{error}");
    assert!(error.contains("has_tip"), "{error}");
}

#[test]
fn an_unknown_variable_inside_a_closed_branch_is_refused_too() {
    let (error, _) = load_error("{{#if due}}{{due_date}}{{/if}}\n");
    assert!(error.contains("due_date"), "{error}");
}

#[test]
fn a_locale_folder_missing_a_template_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_set(dir.path(), "en", "Hello\n");
    std::fs::remove_file(dir.path().join("en/notification.hbs")).expect("rm");
    let error = Templates::load(dir.path())
        .expect_err("incomplete set")
        .to_string();
    assert!(error.contains("notification.hbs"), "{error}");
}

#[test]
fn a_directory_without_locale_folders_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join(".git")).expect("mkdir");
    assert!(matches!(
        Templates::load(dir.path()),
        Err(ReplyError::NoLocale(_))
    ));
}

#[test]
fn the_shipped_locales_are_french_and_english() {
    let templates = shipped();
    assert_eq!(templates.locales(), ["en", "fr"]);
    assert!(templates.has_locale("fr"));
    assert!(templates.has_locale("EN"));
    assert!(!templates.has_locale("de"));
}

#[test]
fn an_unknown_locale_falls_back_to_english_then_to_any_loaded_one() {
    let templates = shipped();
    assert_eq!(templates.resolve("de"), "en");
    assert_eq!(templates.resolve("fr-CA"), "fr");
    let dir = tempfile::tempdir().expect("tempdir");
    write_set(dir.path(), "fr", "Bonjour {{customer_name}}\n");
    let only_fr = Templates::load(dir.path()).expect("loads");
    assert_eq!(only_fr.resolve("en"), "fr");
    let customer = julie();
    let out = only_fr
        .render_ack(&identity(), &ack_input(&customer, "en"))
        .expect("renders");
    assert!(body_text(&out.raw).contains("Bonjour Julie Martin"));
}

#[test]
fn templates_can_be_shared_across_tasks() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<Templates>();
}

#[test]
fn promises_are_worded_from_hours() {
    use wording::{Lang, promise};
    assert_eq!(promise(Lang::Fr, Some((24, 24)), false), "sous 24 heures");
    assert_eq!(
        promise(Lang::Fr, Some((24, 48)), false),
        "sous 24 à 48 heures"
    );
    assert_eq!(
        promise(Lang::En, Some((24, 48)), false),
        "within 24 to 48 hours"
    );
    assert_eq!(promise(Lang::En, Some((48, 48)), false), "within 48 hours");
    assert_eq!(
        promise(Lang::En, Some((48, 24)), false),
        "within 24 to 48 hours"
    );
    assert_eq!(
        promise(Lang::En, None, false),
        "generally within 24 to 48 hours"
    );
    assert_eq!(
        promise(Lang::Fr, Some((24, 24)), true),
        "sous 24 heures ouvrées"
    );
    assert_eq!(
        promise(Lang::En, Some((24, 48)), true),
        "within 24 to 48 business hours"
    );
}

#[test]
fn due_times_follow_the_zone_and_french_ordinals() {
    use wording::{Lang, due};
    let summer = Utc
        .with_ymd_and_hms(2026, 7, 1, 8, 5, 0)
        .single()
        .expect("date");
    assert_eq!(
        due(Lang::Fr, summer, chrono_tz::Tz::Europe__Paris),
        "mercredi 1er juillet à 10:05 (heure de Paris)"
    );
    assert_eq!(
        due(Lang::En, summer, chrono_tz::Tz::UTC),
        "Wednesday, July 1, 8:05 am UTC"
    );
}

#[test]
fn a_customer_address_lettre_cannot_write_is_a_build_error_not_a_panic() {
    let customer = Mailbox {
        name: None,
        address: "not an address".to_owned(),
    };
    let result = shipped().render_ack(&identity(), &ack_input(&customer, "en"));
    assert!(
        matches!(result, Err(ReplyError::Build { .. })),
        "{result:?}"
    );
}

#[test]
fn deeply_nested_blocks_are_refused_before_they_can_overflow_the_stack() {
    let blocks = format!("{}x{}", "{{#if due}}".repeat(1000), "{{/if}}".repeat(1000));
    let (error, file) = load_error(&blocks);
    assert!(error.contains(&file.display().to_string()), "{error}");
    assert!(error.contains("nested"), "{error}");
    let parens = format!(
        "{{{{#if {}due{}}}}}x{{{{/if}}}}",
        "(not ".repeat(1000),
        ")".repeat(1000)
    );
    let (error, _) = load_error(&parens);
    assert!(error.contains("nested"), "{error}");
}

#[test]
fn reasonable_nesting_and_comments_are_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = format!(
        "{{{{!-- {{{{#if}}}} in a comment --}}}}{}x{}{{{{! {{{{#each}}}} }}}}\n",
        // Each repetition leaves one block open and briefly opens a second.
        "{{#if due}}{{~#unless has_tips}}y{{else}}z{{/unless}}".repeat(MAX_NESTING - 1),
        "{{/if}}".repeat(MAX_NESTING - 1)
    );
    write_set(dir.path(), "en", &nested);
    if let Err(e) = Templates::load(dir.path()) {
        panic!("{nested}: {e}");
    }
}

#[test]
fn partials_that_include_each_other_are_refused_instead_of_overflowing_the_stack() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_set(
        dir.path(),
        "en",
        "Hello\n{{#if due}}{{> en/ack_short}}{{/if}}\n",
    );
    std::fs::write(dir.path().join("en/ack_short.hbs"), "{{> en/ack}}").expect("write");
    let error = Templates::load(dir.path())
        .expect_err("partials refused")
        .to_string();
    assert!(error.contains("partials"), "{error}");
    assert!(error.contains("ack.hbs"), "{error}");
}

// See: the real-mail issue, class (i): a pasted 10 MB log made rendering quadratic.
#[test]
fn a_huge_request_shows_a_bounded_excerpt_and_the_whole_original_is_attached() {
    let customer = julie();
    let lines: Vec<String> = (0..50_000)
        .map(|i| {
            format!(
                "2026-11-28 10:00:{:02} edge-{} GET /v2/chat-widget.js?req={i} status=502",
                i % 60,
                i % 9
            )
        })
        .collect();
    let text = format!("Please look at this log:\n\n{}", lines.join("\n"));
    let original = format!(
        "From: Julie Martin <julie@example.test>\r\nTo: support@example.test\r\nSubject: Log\r\n\r\n{}",
        text.replace('\n', "\r\n")
    );
    let mut input = notification_input(&customer, original.as_bytes());
    input.new_text = &text;
    let note = shipped()
        .render_notification(&identity(), &input)
        .expect("the notification renders");
    let body = body_text(&note.raw);
    assert!(body.contains("Please look at this log:"), "{body}");
    assert!(
        body.contains(&lines[10]),
        "the excerpt starts with the request"
    );
    assert!(!body.contains(&lines[49_999]), "the excerpt is bounded");
    assert!(
        body.contains("more line(s) not shown: the whole message is attached (original.eml)"),
        "{body}"
    );
    assert!(
        body.lines().count() < MAX_EXCERPT_LINES + 60,
        "{}",
        body.lines().count()
    );
    // The attachment is every byte of the original, and the body adds little beside it.
    let parsed = MessageParser::default().parse(&note.raw).expect("parsable");
    let attached = parsed.attachment(0).expect("the original is attached");
    assert_eq!(attached.contents().len(), original.len());
    assert!(note.raw.len() < original.len() + 2 * MAX_EXCERPT_CHARS + 8192);
}

#[test]
fn the_excerpt_keeps_short_requests_whole_and_cuts_one_endless_line() {
    let short = "One line.\nTwo lines.";
    assert!(matches!(
        excerpt(wording::Lang::En, short, true),
        std::borrow::Cow::Borrowed(s) if s == short
    ));
    let endless = "é".repeat(MAX_EXCERPT_CHARS * 2);
    let cut = excerpt(wording::Lang::Fr, &endless, false);
    assert!(cut.starts_with(&"é".repeat(MAX_EXCERPT_CHARS)));
    assert!(
        cut.ends_with("[… 1 ligne(s) de plus non affichée(s)]\n"),
        "{}",
        &cut[cut.len() - 80..]
    );
}

#[test]
fn a_relayed_answer_comes_from_the_support_address_under_the_agents_name_threaded_on_the_customer()
{
    let customer = julie();
    let attachment = crate::parse::attachments::Attachment {
        filename: "steps.pdf".into(),
        content_type: "application/pdf".into(),
        contents: b"%PDF-1.4 tiny".to_vec(),
    };
    let refs = vec![
        "first@mail.example.test".to_owned(),
        "sd.ack.1@example.test".to_owned(),
    ];
    let out = shipped()
        .render_relay(
            &identity(),
            &RelayInput {
                ticket_ref: "CHT-12",
                ticket_subject: "Re: Invoice",
                customer: &customer,
                from_name: "Alice (Support Chatim)",
                text: "Hello Julie,\n\nThe refund is on its way.\n\nAlice",
                attachments: std::slice::from_ref(&attachment),
                in_reply_to: Some("second@mail.example.test"),
                references: &refs,
                message_id: "sd.relay.1@example.test",
                locale: "fr",
            },
        )
        .expect("renders");
    let headers = header_block(&out.raw);
    for expected in [
        "\r\nSubject: [CHT-12] Invoice\r\n",
        "\r\nIn-Reply-To: <second@mail.example.test>\r\n",
        "\r\nX-Supportd-Loop: support@example.test\r\n",
    ] {
        assert!(
            headers.contains(expected),
            "{expected:?} missing from {headers}"
        );
    }
    let references: Vec<String> = MessageParser::default()
        .parse(&out.raw)
        .expect("parsable")
        .references()
        .as_text_list()
        .unwrap_or_default()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(
        references,
        [
            "first@mail.example.test",
            "sd.ack.1@example.test",
            "second@mail.example.test"
        ]
    );
    // A person's answer, not an automatic one.
    assert!(!headers.contains("Auto-Submitted"), "{headers}");
    let parsed = MessageParser::default().parse(&out.raw).expect("parsable");
    assert_eq!(
        parsed
            .body_text(0)
            .map(|t| t.replace("\r\n", "\n"))
            .as_deref(),
        Some("Hello Julie,\n\nThe refund is on its way.\n\nAlice\n")
    );
    let attached = parsed.attachment(0).expect("the agent's attachment");
    assert_eq!(attached.attachment_name(), Some("steps.pdf"));
    assert_eq!(attached.contents(), b"%PDF-1.4 tiny");
    assert_eq!(out.to, "julie@example.test");
}

#[test]
fn an_agent_notice_lists_what_was_wrong_and_the_commands() {
    let reason = NoticeReason::Commands(vec!["#clsoe: unknown command".into()]);
    let out = shipped()
        .render_agent_notice(
            &identity(),
            &AgentNoticeInput {
                agent: "alice@example.test",
                ticket_ref: Some("CHT-12"),
                reason: &reason,
                original_subject: "Re: [CHT-12] Invoice",
                original_message_id: "agent-1@example.test",
                message_id: "sd.notice.1@example.test",
                locale: "en",
            },
        )
        .expect("renders");
    let headers = header_block(&out.raw);
    assert!(
        headers.contains("\r\nAuto-Submitted: auto-replied\r\n"),
        "{headers}"
    );
    assert!(
        headers.contains("\r\nIn-Reply-To: <agent-1@example.test>\r\n"),
        "{headers}"
    );
    assert_eq!(out.subject, "Not sent: Re: [CHT-12] Invoice");
    let body = body_text(&out.raw);
    assert!(
        body.contains("Your answer on ticket CHT-12 was not sent"),
        "{body}"
    );
    assert!(body.contains("  - #clsoe: unknown command"), "{body}");
    assert!(body.contains("#assign WHO"), "{body}");
}

#[test]
fn a_form_request_shows_the_account_and_its_details_to_the_team() {
    let customer = julie();
    let account = vec![
        ("plan".to_owned(), "Pro".to_owned()),
        ("company".to_owned(), "Boulangerie\r\nMartin".to_owned()),
    ];
    let context = vec![("browser".to_owned(), "Firefox 140".to_owned())];
    let input = NotificationInput {
        from_form: true,
        form_account: &account,
        context: &context,
        ..notification_input(&customer, ORIGINAL)
    };
    for (locale, expected) in [
        (
            "en",
            [
                "support form",
                "plan: Pro",
                "company: Boulangerie Martin",
                "browser: Firefox 140",
            ],
        ),
        (
            "fr",
            [
                "formulaire de support",
                "plan : Pro",
                "company : Boulangerie Martin",
                "browser : Firefox 140",
            ],
        ),
    ] {
        let out = shipped()
            .render_notification(&identity(), &NotificationInput { locale, ..input })
            .expect("renders");
        let body = body_text(&out.raw);
        for line in expected {
            assert!(
                body.contains(line),
                "{locale}: {line:?} missing from {body}"
            );
        }
    }
    // Mail that came by e-mail has none of it.
    let body = body_text(
        &shipped()
            .render_notification(&identity(), &notification_input(&customer, ORIGINAL))
            .expect("renders")
            .raw,
    );
    assert!(!body.contains("Account"), "{body}");
}

#[test]
fn only_folders_shaped_like_a_language_tag_are_locales() {
    for name in ["fr", "en", "pt-BR", "pt_BR", "gsw", "zh-Hant-TW"] {
        assert!(is_locale_name(name), "{name}");
    }
    // `http` holds the form page's templates; four-letter primary subtags are reserved.
    for name in ["http", ".git", "old1", "x", "e", "fr.bak"] {
        assert!(!is_locale_name(name), "{name}");
    }
}
