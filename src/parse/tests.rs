//! Whole messages through [`parse`]: the real-mail cases that break helpdesks
//! (`fixtures/cases`, from `../shared/cases`), each beside inputs of the same class written
//! here in another shape.

use proptest::prelude::*;

use super::{HeaderValue, PARSER, ParsedMessage, UnusableFrom, headers, parse};

const CASE_02: &[u8] = include_bytes!("../../fixtures/cases/02-subject-split-base64.eml");
const CASE_08: &[u8] = include_bytes!("../../fixtures/cases/08-forwarded-fr-gmail.eml");
const CASE_11: &[u8] = include_bytes!("../../fixtures/cases/11-empty-plain-alternative.eml");
const CASE_12: &[u8] = include_bytes!("../../fixtures/cases/12-raw-latin1-from-subject.eml");
const CASE_13: &[u8] = include_bytes!("../../fixtures/cases/13-encoded-word-swallows-address.eml");
const CASE_20: &[u8] = include_bytes!("../../fixtures/cases/20-date-zone-z-before-from.eml");

/// `lines` joined with CRLF, as mail arrives over IMAP.
fn crlf(lines: &[&str]) -> Vec<u8> {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s.into_bytes()
}

/// Every text a ticket, an acknowledgement or a notification can show.
fn shown(m: &ParsedMessage) -> Vec<String> {
    let mut out = vec![m.subject.clone(), m.text.clone(), m.new_text.clone()];
    for mb in m
        .from
        .iter()
        .chain(&m.reply_to)
        .chain(&m.sender)
        .chain(&m.to)
        .chain(&m.cc)
    {
        out.extend(mb.name.clone());
        out.push(mb.address.clone());
    }
    out.extend(m.attachments.iter().filter_map(|a| a.filename.clone()));
    out.extend(m.headers.iter().map(|(_, v)| v.clone()));
    out
}

fn assert_no_replacement_char(m: &ParsedMessage) {
    for s in shown(m) {
        assert!(!s.contains('\u{FFFD}'), "U+FFFD in {s:?}");
    }
}

// (b) Headers decode whole.

#[test]
fn case_02_subject_and_name_split_inside_characters_come_out_whole() {
    // See: ../shared/cases/README.md, case 02.
    let m = parse(CASE_02);
    assert_eq!(
        m.subject,
        "Problème de prélèvement après résiliation de l'abonnement"
    );
    let from = m.from.as_ref().unwrap();
    assert_eq!(from.name.as_deref(), Some("Hélène Bérubé"));
    assert_eq!(from.address, "helene.berube@customers.example");
    assert_eq!(
        m.header("from"),
        Some("Hélène Bérubé <helene.berube@customers.example>")
    );
    assert_no_replacement_char(&m);
}

#[test]
fn case_12_raw_latin1_from_and_subject_are_read_in_the_body_charset() {
    // See: ../shared/cases/README.md, case 12.
    let m = parse(CASE_12);
    assert_eq!(m.subject, "Problème d'affichage du module de réservation");
    assert_eq!(
        m.from.as_ref().and_then(|f| f.name.as_deref()),
        Some("François Lemaître")
    );
    assert!(
        m.warnings
            .iter()
            .any(|w| w.starts_with("From has unencoded 8-bit bytes; read as iso-8859-1")),
        "{:?}",
        m.warnings
    );
    assert_no_replacement_char(&m);
}

#[test]
fn split_words_in_every_header_and_file_name_come_out_whole() {
    // Outlook-like: LF line ends, Subject last, Q words split in To and Cc names, a Shift_JIS
    // Reply-To name split inside a character, file names as RFC 2231 sections and as split
    // base64 words.
    let raw = "MIME-Version: 1.0\n\
From: =?utf-8?B?w4lsb8OvcyBEww==?=\n =?utf-8?B?vHJy?= <elois@clients.example>\n\
To: =?UTF-8?Q?Service_Montr=C3?= =?UTF-8?Q?=A9al?= <support@example.test>\n\
Cc: \"=?utf-8?q?Ren=C3?= =?utf-8?q?=A9e?=\" <renee@clients.example>, plain@clients.example\n\
Reply-To: =?shift_jis?B?k/qW?= =?shift_jis?B?e4zq?= <jp@clients.example>\n\
Sender: =?iso-8859-1?q?Jos=E9?= <jose@clients.example>\n\
Message-ID: <split-1@clients.example>\n\
Content-Type: multipart/mixed; boundary=\"b1\"\n\
Subject: =?UTF-8?B?UsOpc2lsaWF0aW9uIGV0IHJlbWJvdXJzZW1lbnQg4oI=?=\n =?UTF-8?B?rCDDoCB2ZW5pcg==?=\n\
\n\
--b1\n\
Content-Type: text/plain; charset=utf-8\n\
\n\
Voir les pièces jointes.\n\
--b1\n\
Content-Type: application/pdf\n\
Content-Disposition: attachment;\n filename*0*=UTF-8''Facture%20r%C3;\n filename*1*=%A9sili%C3%A9e.pdf\n\
\n\
JVBERi0=\n\
--b1\n\
Content-Type: image/png;\n name=\"=?UTF-8?B?Q2FwdHVyZSBk4g==?= =?UTF-8?B?gJnDqWNyYW4ucG5n?=\"\n\
Content-Disposition: attachment\n\
\n\
iVBORw0K\n\
--b1--\n";
    let m = parse(raw.as_bytes());
    assert_eq!(m.subject, "Résiliation et remboursement € à venir");
    assert_eq!(
        m.from.as_ref().and_then(|f| f.name.as_deref()),
        Some("Éloïs Dürr")
    );
    assert_eq!(m.to[0].name.as_deref(), Some("Service Montréal"));
    assert_eq!(m.cc[0].name.as_deref(), Some("Renée"));
    assert_eq!(m.cc[1].address, "plain@clients.example");
    assert_eq!(m.reply_to.as_ref().unwrap().name.as_deref(), Some("日本語"));
    assert_eq!(m.sender.as_ref().unwrap().name.as_deref(), Some("José"));
    let names: Vec<_> = m
        .attachments
        .iter()
        .map(|a| a.filename.as_deref())
        .collect();
    assert_eq!(
        names,
        [Some("Facture résiliée.pdf"), Some("Capture d’écran.png")]
    );
    assert_no_replacement_char(&m);
}

#[test]
fn raw_8bit_headers_use_utf8_then_the_declared_charset_then_windows_1252() {
    // A Polish mailer: raw ISO-8859-2 in Subject and From, charset declared only on the text
    // part of a multipart; a raw UTF-8 name in Reply-To stays UTF-8.
    let mut raw = Vec::new();
    raw.extend_from_slice(b"Subject: Za\xbf\xf3\xb3\xe6 g\xea\xb6l\xb1 ja\xbc\xf1\r\n");
    raw.extend_from_slice(b"From: Pawe\xb3 Nowak <pawel@klienci.example>\r\n");
    raw.extend_from_slice("Reply-To: Łukasz <lukasz@klienci.example>\r\n".as_bytes());
    raw.extend_from_slice(b"Thread-Topic: Za\xbf\xf3\xb3\xe6\r\n");
    raw.extend_from_slice(b"Message-ID: <pl-1@klienci.example>\r\nMIME-Version: 1.0\r\n");
    raw.extend_from_slice(b"Content-Type: multipart/alternative; boundary=x\r\n\r\n");
    raw.extend_from_slice(b"--x\r\nContent-Type: text/plain; charset=\"ISO-8859-2\"\r\n\r\n");
    raw.extend_from_slice(b"Dzie\xf1 dobry\r\n--x--\r\n");
    let m = parse(&raw);
    assert_eq!(m.subject, "Zażółć gęślą jaźń");
    assert_eq!(
        m.from.as_ref().and_then(|f| f.name.as_deref()),
        Some("Paweł Nowak")
    );
    assert_eq!(
        m.reply_to.as_ref().and_then(|f| f.name.as_deref()),
        Some("Łukasz")
    );
    assert_eq!(m.header("thread-topic"), Some("Zażółć"));
    assert!(
        m.warnings
            .iter()
            .any(|w| w == "Subject has unencoded 8-bit bytes; read as ISO-8859-2 like the body"),
        "{:?}",
        m.warnings
    );
    assert_no_replacement_char(&m);

    // No charset declared anywhere: windows-1252.
    let m = parse(b"From: Ren\xe9e <r@x.example>\r\nSubject: \x93Hello\x94 \x80 5\r\n\r\nhi\r\n");
    assert_eq!(m.subject, "\u{201c}Hello\u{201d} € 5");
    assert_eq!(
        m.from.as_ref().and_then(|f| f.name.as_deref()),
        Some("Renée")
    );
    assert!(
        m.warnings
            .iter()
            .any(|w| w == "Subject has unencoded 8-bit bytes; read as windows-1252")
    );
}

// (f) Blank plain alternatives.

#[test]
fn case_11_blank_plain_alternative_falls_back_to_html() {
    // See: ../shared/cases/README.md, case 11.
    let m = parse(CASE_11);
    assert!(m.text.contains("facturés deux fois"), "{:?}", m.text);
    assert!(
        m.new_text.contains("facturés deux fois"),
        "{:?}",
        m.new_text
    );
}

#[test]
fn blank_plain_alternative_deep_in_mixed_and_related_falls_back_to_html() {
    // Apple-Mail-like tree: mixed[alternative[plain (base64 of white space and a no-break
    // space), related[html, png]], pdf].
    let raw = crlf(&[
        "From: Ana <ana@clientes.example>",
        "To: support@example.test",
        "Subject: No puedo entrar",
        "Message-ID: <deep-1@clientes.example>",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed; boundary=m",
        "",
        "--m",
        "Content-Type: multipart/alternative; boundary=a",
        "",
        "--a",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: base64",
        "",
        "ICAKwqAKCg==",
        "--a",
        "Content-Type: multipart/related; boundary=r",
        "",
        "--r",
        "Content-Type: text/html; charset=utf-8",
        "",
        "<div>Desde ayer no puedo entrar en mi cuenta.</div><img src=\"cid:i1\">",
        "--r",
        "Content-Type: image/png",
        "Content-ID: <i1>",
        "Content-Transfer-Encoding: base64",
        "",
        "iVBORw0K",
        "--r--",
        "--a--",
        "--m",
        "Content-Type: application/pdf; name=captura.pdf",
        "Content-Disposition: attachment; filename=captura.pdf",
        "Content-Transfer-Encoding: base64",
        "",
        "JVBERi0=",
        "--m--",
    ]);
    let m = parse(&raw);
    assert_eq!(m.text, "Desde ayer no puedo entrar en mi cuenta.");
    assert!(
        m.attachments
            .iter()
            .any(|a| a.filename.as_deref() == Some("captura.pdf"))
    );
}

#[test]
fn a_plain_alternative_with_text_still_wins_over_html() {
    let raw = crlf(&[
        "From: a@x.example",
        "Subject: s",
        "Content-Type: multipart/alternative; boundary=a",
        "",
        "--a",
        "Content-Type: text/plain",
        "",
        "plain words",
        "--a",
        "Content-Type: text/html",
        "",
        "<p>html words</p>",
        "--a--",
    ]);
    let m = parse(&raw);
    assert_eq!(m.text, "plain words");
}

// (g) Unusable From addresses.

#[test]
fn case_13_address_hidden_in_an_encoded_word_is_recovered() {
    // See: ../shared/cases/README.md, case 13.
    let m = parse(CASE_13);
    let from = m.from.as_ref().unwrap();
    assert_eq!(from.address, "zoe.brunet@customers.example");
    assert_eq!(from.name.as_deref(), Some("Zoé Brunet"));
    assert_eq!(m.from_unusable, None);
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("inside an encoded-word"))
    );
}

#[test]
fn a_whole_mailbox_inside_one_q_word_is_recovered() {
    let raw = "From: =?iso-8859-1?Q?Andr=E9_Pr=E9vost_<andre.prevost@clients.example>?=\r\n\
Subject: x\r\n\r\nx\r\n";
    let m = parse(raw.as_bytes());
    let from = m.from.as_ref().unwrap();
    assert_eq!(from.address, "andre.prevost@clients.example");
    assert_eq!(from.name.as_deref(), Some("André Prévost"));
}

#[test]
fn unusable_from_is_none_with_the_reason_and_reply_to_and_sender_are_kept() {
    let m = parse(
        b"From: Zoe <@customers.example>\r\nReply-To: Zoe <zoe@customers.example>\r\n\
Sender: <>\r\nSubject: x\r\n\r\nx\r\n",
    );
    assert_eq!(m.from, None);
    assert!(matches!(
        m.from_unusable,
        Some(UnusableFrom::EmptyLocalPart(_))
    ));
    assert_eq!(
        m.reply_to.as_ref().unwrap().address,
        "zoe@customers.example"
    );
    assert_eq!(m.sender, None);
    assert!(
        m.warnings
            .iter()
            .any(|w| w.starts_with("no usable From address: From address \"@customers.example\""))
    );

    let m = parse(b"From: jean@\r\nSender: Jean <jean@clients.example>\r\nSubject: x\r\n\r\nx\r\n");
    assert_eq!(m.from, None);
    assert!(matches!(m.from_unusable, Some(UnusableFrom::NoDomain(_))));
    assert_eq!(m.sender.as_ref().unwrap().address, "jean@clients.example");
    assert_eq!(m.from_address(), "");

    let m = parse(b"From: Marc\r\nSubject: x\r\n\r\nx\r\n");
    assert_eq!(m.from_unusable, Some(UnusableFrom::NoAddress));
    let m = parse(b"Subject: x\r\n\r\nx\r\n");
    assert_eq!(m.from_unusable, Some(UnusableFrom::Missing));
    // Unusable To/Cc addresses are dropped, the usable ones kept.
    let m = parse(b"From: a@x.example\r\nTo: @x.example, b@x.example, c@\r\n\r\nx\r\n");
    let to: Vec<&str> = m.to.iter().map(|t| t.address.as_str()).collect();
    assert_eq!(to, ["b@x.example"]);
}

// (j) Headers the parser loses.

#[test]
fn case_20_from_after_a_date_in_zone_z_is_read() {
    // See: ../shared/cases/README.md, case 20.
    let m = parse(CASE_20);
    assert_eq!(m.from_address(), "marc.aubert@customers.example");
    assert_eq!(m.subject, "Impossible de me connecter au tableau de bord");
    assert_eq!(
        m.message_id,
        "20261124091244.GA7712@ws-14.customers.example"
    );
    assert_eq!(m.date, Some(1_795_511_564));
    assert!(m.text.starts_with("Bonjour,"));
}

#[test]
fn a_header_mail_parser_lost_is_read_on_its_own() {
    // Straight through mail-parser, without the Date padding: it loses From; the fallback
    // reads it from the raw bytes.
    let msg = PARSER.parse(CASE_20).unwrap();
    assert!(msg.from().is_none(), "mail-parser no longer loses From");
    let mut warnings = Vec::new();
    let fields = headers::read(&msg, CASE_20, None, &mut warnings);
    let from = headers::find(&fields, "from").unwrap();
    assert!(matches!(from.value, HeaderValue::Address(_)));
    assert_eq!(
        headers::mailbox(&fields, "from").unwrap().address,
        "marc.aubert@customers.example"
    );
    assert_eq!(
        warnings,
        ["From was lost by the MIME parser; read from the raw header"]
    );
    // In raw order: Received, Message-ID, Date, From, ...
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names[..5], ["received", "message-id", "date", "from", "to"]);
}

#[test]
fn a_short_zone_on_the_last_header_keeps_the_body_and_other_headers() {
    let raw = "From: Kai <kai@kunden.example>\nReferences: <r1@example.test>\n\
Auto-Submitted: no\nDate: 24 Nov 2026 09:12 UT\n\nErste Zeile\nzweite Zeile\n";
    let m = parse(raw.as_bytes());
    assert_eq!(m.text, "Erste Zeile\nzweite Zeile");
    assert_eq!(m.references, ["r1@example.test"]);
    assert_eq!(m.header("auto-submitted"), Some("no"));
    assert_eq!(m.date, Some(1_795_511_520));
}

/// The header fields of the property test: (field line, check on the parsed message).
const FIELDS: &[&str] = &[
    "From: Marc Aubert <marc.aubert@customers.example>",
    "To: support@example.test",
    "Subject: Impossible de me connecter",
    "Message-ID: <prop-1@customers.example>",
    "In-Reply-To: <irt-1@example.test>",
    "References: <ref-0@example.test>\r\n <irt-1@example.test>",
    "Auto-Submitted: no",
];

fn date_forms() -> impl Strategy<Value = String> {
    let day = prop_oneof![Just(""), Just("Tue, "), Just("Tue,")];
    let year = prop_oneof![Just("2026"), Just("26")];
    let time = prop_oneof![Just("09:12:44"), Just("09:12")];
    let zone = prop_oneof![
        Just("+0000"),
        Just("-0500"),
        Just("Z"),
        Just("z"),
        Just("UT"),
        Just("GMT"),
        Just("EST"),
        Just("A"),
        Just("+0100 (CET)"),
        Just("Z (UTC)"),
        Just(""),
    ];
    let fold = prop_oneof![Just(" "), Just("\r\n ")];
    (day, year, time, fold, zone)
        .prop_map(|(d, y, t, f, z)| format!("Date: {d}24 Nov {y}{f}{t} {z}"))
}

proptest! {
    #[test]
    fn every_header_survives_any_order_and_date_form(
        order in Just((0..=FIELDS.len()).collect::<Vec<usize>>()).prop_shuffle(),
        date in date_forms(),
        lf in any::<bool>(),
    ) {
        // Index FIELDS.len() is the Date.
        let mut lines: Vec<String> = order
            .iter()
            .map(|&i| FIELDS.get(i).map_or(date.clone(), |f| f.to_string()))
            .collect();
        lines.push(String::new());
        lines.push("Premiere ligne du texte.".into());
        let mut raw = lines.join("\r\n");
        raw.push_str("\r\n");
        if lf {
            raw = raw.replace("\r\n", "\n");
        }
        let m = parse(raw.as_bytes());
        prop_assert_eq!(m.from_address(), "marc.aubert@customers.example");
        prop_assert_eq!(m.subject.as_str(), "Impossible de me connecter");
        prop_assert_eq!(m.message_id.as_str(), "prop-1@customers.example");
        prop_assert_eq!(&m.in_reply_to, &["irt-1@example.test".to_string()]);
        prop_assert_eq!(
            &m.references,
            &["ref-0@example.test".to_string(), "irt-1@example.test".to_string()]
        );
        prop_assert_eq!(m.header("auto-submitted"), Some("no"));
        prop_assert_eq!(m.to.len(), 1);
        prop_assert_eq!(m.text.as_str(), "Premiere ligne du texte.");
        // mail-parser reads a time without seconds only with a numeric zone; with seconds,
        // every form here has a date.
        prop_assert!(m.date.is_some() || !date.contains(":44"), "date {:?} unread", date);
    }
}

// (d) Forwards.

#[test]
fn case_08_gmail_forward_keeps_the_forwarded_request() {
    // See: ../shared/cases/README.md, case 08.
    let m = parse(CASE_08);
    assert!(
        m.new_text
            .starts_with("Bonjour, je vous transfère la demande de notre comptable"),
        "{}",
        m.new_text
    );
    assert!(
        m.new_text.contains("deux factures identiques"),
        "{}",
        m.new_text
    );
    assert!(m.new_text.contains("De : Nadia Benali"), "{}", m.new_text);
}

#[test]
fn outlook_html_forward_keeps_the_forwarded_request_and_a_reply_does_not() {
    let html = |subject: &str| {
        crlf(&[
            "From: Luc <luc@clients.example>",
            "To: support@example.test",
            &format!("Subject: {subject}"),
            "MIME-Version: 1.0",
            "Content-Type: text/html; charset=utf-8",
            "",
            "<div>Pour suite à donner.</div><div><br></div>",
            "<hr style=\"display:inline-block;width:98%\">",
            "<div id=\"divRplyFwdMsg\"><b>De :</b> Anne Roy &lt;anne@clients.example&gt;<br>",
            "<b>Envoyé :</b> lundi 23 novembre 2026 09:00<br>",
            "<b>À :</b> Luc &lt;luc@clients.example&gt;<br>",
            "<b>Objet :</b> Widget absent</div>",
            "<div>Le widget de chat a disparu de notre boutique depuis la mise à jour.</div>",
        ])
    };
    let m = parse(&html("TR: Widget absent"));
    assert!(
        m.new_text.starts_with("Pour suite à donner."),
        "{}",
        m.new_text
    );
    assert!(
        m.new_text.contains("Le widget de chat a disparu"),
        "{}",
        m.new_text
    );
    let m = parse(&html("RE: Widget absent"));
    assert_eq!(m.new_text, "Pour suite à donner.");
}
