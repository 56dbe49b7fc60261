//! The real-mail cases of issue 8 (`fixtures/cases`, copied from `../shared/cases`), each run
//! through the CLI as its README says, and for each class at least one input of another shape
//! written here.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::helpers::app::App;
use crate::helpers::{crate_dir, db, fold, replace_bytes};

/// `fixtures/cases/NAME`.
fn case(name: &str) -> PathBuf {
    crate_dir().join("fixtures/cases").join(name)
}

/// The first outbox row of `kind` (`ack`, `notification`), by id.
fn first_of(outbox: &[Value], kind: &str) -> Value {
    outbox
        .iter()
        .filter(|o| o["kind"] == kind)
        .min_by_key(|o| o["id"].as_i64())
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} in the outbox: {outbox:#?}"))
}

/// Fills `@ACK_ID@`, `@ACK_SUBJECT@`, `@NOTE_ID@` and `@NOTE_SUBJECT@` in `raw` from the first
/// acknowledgement and notification in the outbox (ids keep their angle brackets), as
/// `../shared/cases/README.md` does; writes the result to the app's folder as `name`.
fn filled(app: &App, raw: &[u8], name: &str) -> PathBuf {
    let outbox = app.outbox();
    let mut raw = raw.to_vec();
    for (placeholder, kind, field) in [
        ("@ACK_ID@", "ack", "message_id"),
        ("@ACK_SUBJECT@", "ack", "subject"),
        ("@NOTE_ID@", "notification", "message_id"),
        ("@NOTE_SUBJECT@", "notification", "subject"),
    ] {
        if memchr::memmem::find(&raw, placeholder.as_bytes()).is_some() {
            let row = first_of(&outbox, kind);
            let value = row[field].as_str().expect("a string field");
            raw = replace_bytes(&raw, placeholder.as_bytes(), value.as_bytes());
        }
    }
    app.write(name, &raw)
}

/// [`filled`] for case file `name`.
fn filled_case(app: &App, name: &str) -> PathBuf {
    let raw = std::fs::read(case(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    filled(app, &raw, name)
}

/// The inbound texts of ticket `reference`, each with its white space folded.
fn ticket_texts(app: &App, reference: &str) -> Vec<String> {
    let ticket = app.ticket(reference);
    ticket["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{reference} has no messages: {ticket:#}"))
        .iter()
        .filter(|m| m["direction"] == "in")
        .map(|m| fold(m["text"].as_str().unwrap_or_default()))
        .collect()
}

/// The outbox rows of `kind` for ticket `reference`.
fn outbox_for(app: &App, kind: &str, reference: &str) -> Vec<Value> {
    app.outbox()
        .into_iter()
        .filter(|o| o["kind"] == kind && o["ticket"] == reference)
        .collect()
}

/// Ingests `path` from `processes` processes started together on a fresh database, half of them reading the message on stdin as an MTA pipe does. Panics naming any
/// process that did not exit 0.
fn ingest_at_once(app: &App, path: &Path, processes: usize) {
    let raw = std::fs::read(path).expect("message");
    let children: Vec<_> = (0..processes)
        .map(|n| {
            let mut cmd = app.command();
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            if n % 2 == 0 {
                cmd.arg("ingest").arg(path).stdin(Stdio::null());
            } else {
                cmd.args(["ingest", "-"]).stdin(Stdio::piped());
            }
            let mut child = cmd.spawn().expect("spawn supportd");
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                stdin.write_all(&raw).expect("write stdin");
            }
            child
        })
        .collect();
    for (n, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "process {n} of {processes} exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ------------------------------------------------------------------ (13) concurrent first open

#[test]
fn processes_starting_together_on_a_database_that_does_not_exist_all_succeed() {
    let message = case("03-reused-message-id.1.eml");
    for round in 0..6 {
        let app = App::new();
        assert!(!app.database.exists());
        ingest_at_once(&app, &message, 4);
        // The same bytes four times: one ticket, three duplicates, whoever came first.
        let stats = app.stats();
        assert_eq!(
            (stats.messages, stats.tickets, stats.duplicates),
            (1, 1, 3),
            "round {round}"
        );
    }
}

// ------------------------------------------------------------------ (c) reused Message-IDs

#[test]
fn case_03_a_second_mail_under_a_reused_message_id_is_stored_and_handled() {
    let app = App::new();
    let first = app.ingest_one(&case("03-reused-message-id.1.eml"));
    assert_eq!(first["action"], "new", "{first:#}");
    let second = app.ingest_one(&case("03-reused-message-id.2.eml"));
    assert_eq!(second["action"], "new", "{second:#}");
    let reference = second["ticket"].as_str().expect("a ticket");
    assert_ne!(second["ticket"], first["ticket"]);
    assert_eq!(app.stats().messages, 2);
    assert!(
        ticket_texts(&app, reference)
            .iter()
            .any(|t| t.contains("erreur 500 lors du chargement")),
        "{:#}",
        app.ticket(reference)
    );
    assert_eq!(outbox_for(&app, "notification", reference).len(), 1);
    let conn = db::open(&app.database);
    assert_eq!(db::events(&conn, "reused_message_id"), 1);
    let warnings = db::messages_from(&conn, "%03-reused-message-id.2.eml");
    assert!(
        warnings[0].warnings.contains("reused Message-ID"),
        "{warnings:?}"
    );

    // The same file again changes nothing.
    let (stats, outbox) = (app.stats(), app.outbox().len());
    let again = app.ingest_one(&case("03-reused-message-id.2.eml"));
    assert_eq!(again["action"], "duplicate", "{again:#}");
    assert_eq!(again["ticket"], second["ticket"]);
    let after = app.stats();
    assert_eq!(
        (after.messages, after.tickets, after.duplicates),
        (stats.messages, stats.tickets, stats.duplicates + 1)
    );
    assert_eq!(app.outbox().len(), outbox);
    assert_eq!(db::events(&conn, "reused_message_id"), 1);
}

/// A web form that stamps one Message-ID on every mail it relays, for two customers.
fn web_form(from: &str, subject: &str, received: &str, body: &str) -> Vec<u8> {
    format!(
        "Received: from forms.example.net ({received})\r\n\
         From: {from}\r\n\
         To: support@example.test\r\n\
         Subject: {subject}\r\n\
         Date: Mon, 01 Dec 2026 08:00:00 +0000\r\n\
         Message-ID: <contact-form@forms.example.net>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         {body}\r\n"
    )
    .into_bytes()
}

#[test]
fn a_form_reusing_one_id_for_two_customers_opens_two_tickets_and_threads_each_reply_home() {
    let app = App::new();
    let alice = web_form(
        "Alice <alice@customers.example>",
        "Login fails on the mobile app",
        "10.0.0.1",
        "Since the update I cannot log in on the mobile app, the password is refused.",
    );
    let bob = web_form(
        "Bob <bob@customers.example>",
        "Wrong VAT number on the invoice",
        "10.0.0.2",
        "Our invoice carries the VAT number of another company, please correct it.",
    );
    let a = app.ingest_one(&app.write("alice.eml", &alice));
    let b = app.ingest_one(&app.write("bob.eml", &bob));
    assert_eq!(
        (a["action"].as_str(), b["action"].as_str()),
        (Some("new"), Some("new"))
    );
    assert_ne!(a["ticket"], b["ticket"]);
    // Bob's message relayed again by another host: other bytes, the same message.
    let relayed = app.write(
        "bob-again.eml",
        &web_form(
            "Bob <bob@customers.example>",
            "Wrong VAT number on the invoice",
            "10.0.0.9",
            "Our invoice carries the VAT number of another company, please correct it.",
        ),
    );
    let again = app.ingest_one(&relayed);
    assert_eq!(again["action"], "duplicate", "{again:#}");
    assert_eq!(again["ticket"], b["ticket"]);
    // Alice answers citing the shared id: her ticket, though Bob's is the newer one with it.
    let reply = app.write(
        "alice-reply.eml",
        b"From: Alice <alice@customers.example>\r\n\
To: support@example.test\r\n\
Subject: Re: Login fails on the mobile app\r\n\
Date: Mon, 01 Dec 2026 09:00:00 +0000\r\n\
Message-ID: <alice-reply-1@customers.example>\r\n\
In-Reply-To: <contact-form@forms.example.net>\r\n\
References: <contact-form@forms.example.net>\r\n\
\r\n\
It still fails this morning, on Android 15.\r\n",
    );
    let r = app.ingest_one(&reply);
    assert_eq!(r["action"], "reply", "{r:#}");
    assert_eq!(r["ticket"], a["ticket"]);
    let stats = app.stats();
    assert_eq!((stats.messages, stats.tickets), (3, 2));
    assert_eq!(db::events(&db::open(&app.database), "reused_message_id"), 1);
}

// ------------------------------------------------------------------ (h) automated mail on a closed ticket

/// Status of ticket `reference` from `tickets show`.
fn status(app: &App, reference: &str) -> String {
    app.ticket(reference)["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn case_17_an_out_of_office_answering_our_ack_leaves_the_closed_ticket_closed() {
    let app = App::new();
    let first = app.ingest_one(&case("17-oof-reopens-closed-ticket.1.eml"));
    assert_eq!(first["ticket"], "CHT-1", "{first:#}");
    let conn = db::open(&app.database);
    db::set_ticket_status(&conn, "CHT-1", "closed");
    let acks = app.stats().acks_queued;
    let oof = app.ingest_one(&filled_case(&app, "17-oof-reopens-closed-ticket.2.eml"));
    assert_eq!(oof["action"], "automated", "{oof:#}");
    assert_eq!(oof["ticket"], "CHT-1");
    assert_eq!(oof["ack"], "not_applicable");
    assert_eq!(status(&app, "CHT-1"), "closed");
    let stats = app.stats();
    assert_eq!((stats.messages, stats.tickets), (2, 1));
    assert_eq!(stats.acks_queued, acks);
    assert_eq!(app.ticket("CHT-1")["message_count"], 2);
    assert_eq!(db::events(&conn, "kept_closed"), 1);
    assert_eq!(db::events(&conn, "reopened"), 0);
}

#[test]
fn read_receipts_delay_notices_and_bounces_on_a_closed_ticket_leave_it_closed_but_a_person_reopens_it()
 {
    let app = App::new();
    let request = app.write(
        "request.eml",
        b"From: Tom Baker <tom.baker@customers.example>\r\n\
To: support@example.test\r\n\
Subject: Cannot export my invoices\r\n\
Date: Mon, 01 Dec 2026 08:00:00 +0000\r\n\
Message-ID: <tb-1@customers.example>\r\n\
\r\n\
The export button on the invoices page does nothing, I need last year's invoices.\r\n",
    );
    assert_eq!(app.ingest_one(&request)["ticket"], "CHT-1");
    let conn = db::open(&app.database);
    db::set_ticket_status(&conn, "CHT-1", "closed");
    // A Thunderbird read receipt (MDN) of our acknowledgement.
    let receipt = b"From: Tom Baker <tom.baker@customers.example>\r\n\
To: support@example.test\r\n\
Subject: Return Receipt (displayed) - @ACK_SUBJECT@\r\n\
Date: Mon, 01 Dec 2026 09:00:00 +0000\r\n\
Message-ID: <mdn-1@customers.example>\r\n\
In-Reply-To: @ACK_ID@\r\n\
References: @ACK_ID@\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=disposition-notification; boundary=\"mdn\"\r\n\
\r\n\
--mdn\r\n\
Content-Type: text/plain; charset=UTF-8\r\n\
\r\n\
This is a Return Receipt for the mail that you sent to tom.baker@customers.example.\r\n\
--mdn\r\n\
Content-Type: message/disposition-notification\r\n\
\r\n\
Reporting-UA: customers.example; Thunderbird\r\n\
Final-Recipient: rfc822;tom.baker@customers.example\r\n\
Original-Message-ID: @ACK_ID@\r\n\
Disposition: manual-action/MDN-sent-manually; displayed\r\n\
--mdn--\r\n";
    // A Postfix delay notice for our acknowledgement.
    let delay = b"From: MAILER-DAEMON@mx.customers.example (Mail Delivery System)\r\n\
To: support@example.test\r\n\
Subject: Delayed Mail (still being retried)\r\n\
Date: Mon, 01 Dec 2026 12:00:00 +0000\r\n\
Message-ID: <delay-1@mx.customers.example>\r\n\
Auto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"d\"\r\n\
\r\n\
--d\r\n\
Content-Type: text/plain\r\n\
\r\n\
This is the mail system at host mx.customers.example. Your message could not be delivered\r\n\
for 4 hours. It will be retried until it is 5 days old.\r\n\
--d\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.customers.example\r\n\
\r\n\
Final-Recipient: rfc822; tom.baker@customers.example\r\n\
Action: delayed\r\n\
Status: 4.4.1\r\n\
\r\n\
--d\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: Support <support@example.test>\r\n\
To: tom.baker@customers.example\r\n\
Message-ID: @ACK_ID@\r\n\
--d--\r\n";
    // An Exim bounce of our acknowledgement.
    let bounce = b"From: Mail Delivery System <Mailer-Daemon@mx.customers.example>\r\n\
To: support@example.test\r\n\
Subject: Mail delivery failed: returning message to sender\r\n\
Date: Tue, 02 Dec 2026 08:00:00 +0000\r\n\
Message-ID: <exim-1@mx.customers.example>\r\n\
X-Failed-Recipients: tom.baker@customers.example\r\n\
Auto-Submitted: auto-replied\r\n\
\r\n\
This message was created automatically by mail delivery software.\r\n\
\r\n\
A message that you sent could not be delivered to one or more of its\r\n\
recipients. This is a permanent error. The following address(es) failed:\r\n\
\r\n\
  tom.baker@customers.example\r\n\
    mailbox is full\r\n\
\r\n\
------ This is a copy of the message, including all the headers. ------\r\n\
\r\n\
From: Support <support@example.test>\r\n\
Message-ID: @ACK_ID@\r\n\
Subject: @ACK_SUBJECT@\r\n";
    for (name, raw) in [
        ("receipt.eml", &receipt[..]),
        ("delay.eml", &delay[..]),
        ("bounce.eml", &bounce[..]),
    ] {
        let outcome = app.ingest_one(&filled(&app, raw, name));
        assert_eq!(outcome["action"], "automated", "{name}: {outcome:#}");
        assert_eq!(outcome["ticket"], "CHT-1", "{name}: {outcome:#}");
        assert_eq!(status(&app, "CHT-1"), "closed", "{name}");
    }
    assert_eq!(db::events(&conn, "kept_closed"), 3);
    let stats = app.stats();
    assert_eq!(
        (stats.messages, stats.tickets, stats.acks_queued),
        (4, 1, 1)
    );
    // The customer writing again, as a person, does reopen it.
    let reply = filled(
        &app,
        b"From: Tom Baker <tom.baker@customers.example>\r\n\
To: support@example.test\r\n\
Subject: Re: @ACK_SUBJECT@\r\n\
Date: Wed, 03 Dec 2026 08:00:00 +0000\r\n\
Message-ID: <tb-2@customers.example>\r\n\
In-Reply-To: @ACK_ID@\r\n\
References: <tb-1@customers.example> @ACK_ID@\r\n\
\r\n\
The export still does nothing today, could someone look at it?\r\n",
        "reply.eml",
    );
    assert_eq!(app.ingest_one(&reply)["action"], "reply");
    assert_eq!(status(&app, "CHT-1"), "open");
}

// ------------------------------------------------------------------ (e) bounces blame who failed

/// The flags of ticket `reference`, from `tickets list`.
fn flags(app: &App, reference: &str) -> String {
    app.tickets()
        .into_iter()
        .find(|t| t["id"] == reference)
        .unwrap_or_else(|| panic!("no ticket {reference}"))["flags"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn case_09_a_bounce_of_the_team_notification_blames_the_team_not_the_customer() {
    let app = App::new();
    let first = app.ingest_one(&case("09-bounce-of-team-notification.1.eml"));
    assert_eq!(first["ticket"], "CHT-1", "{first:#}");
    let bounce = app.ingest_one(&filled_case(&app, "09-bounce-of-team-notification.2.eml"));
    assert_eq!(bounce["action"], "automated", "{bounce:#}");
    assert_eq!(bounce["ack"], "not_applicable");
    assert_ne!(bounce["ticket"], "CHT-2");
    let stats = app.stats();
    assert_eq!(
        (stats.messages, stats.tickets, stats.acks_queued),
        (2, 1, 1)
    );
    assert!(
        !flags(&app, "CHT-1").contains("bouncing"),
        "{:#?}",
        app.tickets()
    );
    let conn = db::open(&app.database);
    assert_eq!(
        db::event_addresses(&conn, "bounce"),
        vec![Some("team@example.test".to_string())]
    );
    let next = app.ingest_one(&case("09-bounce-of-team-notification.3.eml"));
    assert_eq!(next["action"], "new", "{next:#}");
    assert_eq!(next["ticket"], "CHT-2");
    assert_eq!(next["ack"], "queued", "{next:#}");
    assert_eq!(outbox_for(&app, "ack", "CHT-2")[0]["status"], "queued");
}

#[test]
fn an_exim_bounce_of_the_ack_marks_the_customer_until_they_write_again_as_a_person() {
    let app = App::new();
    let request = app.write(
        "request.eml",
        b"From: Ines Garcia <ines.garcia@customers.example>\r\n\
To: support@example.test\r\n\
Subject: Change of billing address\r\n\
Date: Mon, 01 Dec 2026 08:00:00 +0000\r\n\
Message-ID: <ig-1@customers.example>\r\n\
\r\n\
Please send our invoices to the new office address from January on.\r\n",
    );
    assert_eq!(app.ingest_one(&request)["ticket"], "CHT-1");
    // Exim's words only: no X-Failed-Recipients, no delivery-status part; the quoted copy
    // of our acknowledgement also names the team in Cc, which must not count.
    let bounce = filled(
        &app,
        b"From: Mail Delivery System <Mailer-Daemon@mx.customers.example>\r\n\
To: support@example.test\r\n\
Subject: Mail delivery failed: returning message to sender\r\n\
Date: Mon, 01 Dec 2026 08:05:00 +0000\r\n\
Message-ID: <exim-bounce-1@mx.customers.example>\r\n\
Auto-Submitted: auto-replied\r\n\
\r\n\
This message was created automatically by mail delivery software.\r\n\
\r\n\
A message that you sent could not be delivered to one or more of its\r\n\
recipients. This is a permanent error. The following address(es) failed:\r\n\
\r\n\
  Ines.Garcia@customers.example\r\n\
    mailbox is full: retry timeout exceeded\r\n\
\r\n\
------ This is a copy of the message, including all the headers. ------\r\n\
\r\n\
From: Support <support@example.test>\r\n\
To: ines.garcia@customers.example\r\n\
Cc: team@example.test\r\n\
Message-ID: @ACK_ID@\r\n\
Subject: @ACK_SUBJECT@\r\n",
        "bounce.eml",
    );
    let b = app.ingest_one(&bounce);
    assert_eq!(
        (b["action"].as_str(), b["ticket"].as_str()),
        (Some("automated"), Some("CHT-1"))
    );
    assert!(
        flags(&app, "CHT-1").contains("bouncing"),
        "{:#?}",
        app.tickets()
    );
    let conn = db::open(&app.database);
    assert_eq!(
        db::event_addresses(&conn, "bounce"),
        vec![Some("ines.garcia@customers.example".to_string())]
    );
    // She writes again, a person with a new request: the mark clears, the old ticket's flag
    // follows, and the new request is acknowledged.
    let again = app.write(
        "again.eml",
        b"From: Ines Garcia <ines.garcia@customers.example>\r\n\
To: support@example.test\r\n\
Subject: Our mailbox is fixed, and a question on the VAT\r\n\
Date: Tue, 02 Dec 2026 08:00:00 +0000\r\n\
Message-ID: <ig-2@customers.example>\r\n\
\r\n\
Our mailbox was full, it is fixed. Is VAT included in the yearly price?\r\n",
    );
    let a = app.ingest_one(&again);
    assert_eq!(
        (a["ticket"].as_str(), a["ack"].as_str()),
        (Some("CHT-2"), Some("queued")),
        "{a:#}"
    );
    assert!(
        !flags(&app, "CHT-1").contains("bouncing"),
        "{:#?}",
        app.tickets()
    );
    assert_eq!(db::events(&conn, "bounce_cleared"), 1);
}

#[test]
fn a_dsn_for_the_team_address_leaves_the_ticket_unflagged_and_the_customer_acknowledged() {
    let app = App::new();
    let request = app.write(
        "request.eml",
        b"From: Jon Keller <jon.keller@customers.example>\r\n\
To: support@example.test\r\n\
Subject: API key rotation\r\n\
Date: Mon, 01 Dec 2026 08:00:00 +0000\r\n\
Message-ID: <jk-1@customers.example>\r\n\
\r\n\
How do we rotate our API key without downtime for the widget?\r\n",
    );
    assert_eq!(app.ingest_one(&request)["ticket"], "CHT-1");
    // A Postfix DSN whose returned headers are those of our notification.
    let dsn = filled(
        &app,
        b"From: MAILER-DAEMON@mx.example.test (Mail Delivery System)\r\n\
To: support@example.test\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Date: Mon, 01 Dec 2026 08:01:00 +0000\r\n\
Message-ID: <dsn-1@mx.example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain\r\n\
\r\n\
<team@example.test>: host mail.example.test said: 552 5.2.2 Mailbox full\r\n\
--b\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.test\r\n\
\r\n\
Final-Recipient: rfc822; team@example.test\r\n\
Action: failed\r\n\
Status: 5.2.2\r\n\
\r\n\
--b\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: Support <support@example.test>\r\n\
To: team@example.test\r\n\
Message-ID: @NOTE_ID@\r\n\
Subject: @NOTE_SUBJECT@\r\n\
--b--\r\n",
        "dsn.eml",
    );
    let d = app.ingest_one(&dsn);
    assert_eq!(
        (d["action"].as_str(), d["ticket"].as_str()),
        (Some("automated"), Some("CHT-1"))
    );
    assert!(!flags(&app, "CHT-1").contains("bouncing"));
    let next = app.write(
        "next.eml",
        b"From: Jon Keller <jon.keller@customers.example>\r\n\
To: support@example.test\r\n\
Subject: Invoice for November\r\n\
Date: Tue, 02 Dec 2026 08:00:00 +0000\r\n\
Message-ID: <jk-2@customers.example>\r\n\
\r\n\
Could you send me the invoice for November again please?\r\n",
    );
    assert_eq!(app.ingest_one(&next)["ack"], "queued");
}

// ------------------------------------------------------------------ (14) Outlook conversations

/// A `Thread-Index` as Outlook writes it: reserved byte, five bytes of time, a GUID made of
/// `seed`, then `children` blocks of five bytes.
fn thread_index(seed: u8, children: usize) -> String {
    use base64::Engine;
    let mut bytes = vec![0x01, 0x01, 0xdb, 0x5e, 0x39, 0x82];
    bytes.extend((0u8..16).map(|i| seed.wrapping_mul(31).wrapping_add(i)));
    for n in 0..children {
        bytes.extend_from_slice(&[0x00, 0x00, 0x10 + n as u8, 0x42, 0x07]);
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bytes of the `Thread-Index` header of `raw`, and its `Thread-Topic`.
fn outlook_headers(raw: &[u8]) -> (Vec<u8>, String) {
    use base64::Engine;
    let parsed = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("parsable mail");
    let text = |name: &str| {
        parsed
            .header_raw(name)
            .unwrap_or_else(|| panic!("no {name} in {}", String::from_utf8_lossy(raw)))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let index = base64::engine::general_purpose::STANDARD
        .decode(text("Thread-Index").replace(' ', ""))
        .expect("base64 Thread-Index");
    let topic = parsed
        .header("Thread-Topic")
        .and_then(|h| h.as_text())
        .unwrap_or_default()
        .to_string();
    (index, topic)
}

/// A message from Outlook: `index` in `Thread-Index`, no In-Reply-To or References.
fn outlook(from: &str, subject: &str, id: &str, index: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.test\r\nSubject: {subject}\r\n\
         Date: Mon, 01 Dec 2026 08:00:00 +0000\r\nMessage-ID: <{id}>\r\n\
         Thread-Topic: {topic}\r\nThread-Index: {index}\r\n\
         X-MS-Has-Attach: \r\nContent-Language: en-US\r\n\
         Content-Type: text/plain; charset=\"us-ascii\"\r\n\r\n{body}\r\n",
        topic = supportd::thread::topic(subject),
    )
    .into_bytes()
}

#[test]
fn outlook_replies_without_in_reply_to_thread_by_thread_index_and_acks_continue_the_conversation() {
    let app = App::new();
    let kim = "Kim Lee <kim.lee@customers.example>";
    let first = app.write(
        "first.eml",
        &outlook(
            kim,
            "Webhook retries",
            "kim-1@customers.example",
            &thread_index(7, 0),
            "Our webhook endpoint gets each event three times, how are retries configured?",
        ),
    );
    let a = app.ingest_one(&first);
    assert_eq!(
        (a["ticket"].as_str(), a["ack"].as_str()),
        (Some("CHT-1"), Some("queued"))
    );
    // The acknowledgement joins Kim's conversation: her index plus one block, her topic.
    let ack = first_of(&app.outbox(), "ack");
    let (index, topic) = outlook_headers(&app.outbox_raw(ack["id"].as_i64().expect("id")));
    use base64::Engine;
    let hers = base64::engine::general_purpose::STANDARD
        .decode(thread_index(7, 0))
        .expect("base64");
    assert_eq!(index.len(), 27);
    assert_eq!(index[..22], hers[..]);
    assert_eq!(topic, "Webhook retries");

    // Kim answers her own sent mail from Outlook: no In-Reply-To, no References, no token.
    let follow_up = app.write(
        "follow-up.eml",
        &outlook(
            kim,
            "RE: Webhook retries",
            "kim-2@customers.example",
            &thread_index(7, 1),
            "I forgot: the endpoint answers within 200 ms, so it is not a timeout.",
        ),
    );
    let r = app.ingest_one(&follow_up);
    assert_eq!(
        (r["action"].as_str(), r["ticket"].as_str()),
        (Some("reply"), Some("CHT-1")),
        "{r:#}"
    );
    // A colleague forwarding from the same conversation is not a participant: own ticket.
    let colleague = app.write(
        "colleague.eml",
        &outlook(
            "Sam Ortiz <sam.ortiz@customers.example>",
            "FW: Webhook retries",
            "sam-1@customers.example",
            &thread_index(7, 2),
            "Forwarding Kim's question, we see the same thing on our staging account.",
        ),
    );
    let c = app.ingest_one(&colleague);
    assert_eq!(
        (c["action"].as_str(), c["ticket"].as_str()),
        (Some("new"), Some("CHT-2")),
        "{c:#}"
    );
    assert!(db::events(&db::open(&app.database), "link_refused") >= 1);
}

#[test]
fn a_reply_from_outlook_to_an_ack_that_started_the_conversation_finds_its_ticket() {
    let app = App::new();
    // From Gmail: no Thread-Index; the acknowledgement starts a conversation.
    let request = app.write(
        "request.eml",
        b"From: Lou Martin <lou.martin@customers.example>\r\n\
To: support@example.test\r\n\
Subject: Widget colours\r\n\
Date: Mon, 01 Dec 2026 08:00:00 +0000\r\n\
Message-ID: <CAF-lou-1@mail.gmail.com>\r\n\
\r\n\
Can the chat widget use our brand colours instead of the default blue?\r\n",
    );
    assert_eq!(app.ingest_one(&request)["ticket"], "CHT-1");
    let ack = first_of(&app.outbox(), "ack");
    let (index, topic) = outlook_headers(&app.outbox_raw(ack["id"].as_i64().expect("id")));
    assert_eq!((index.len(), index[0]), (22, 0x01));
    assert_eq!(topic, "Widget colours");
    // Lou answers from Outlook on another machine, which keeps only Thread-Index (ours plus a
    // block) and writes its own subject.
    use base64::Engine;
    let mut answer = index.clone();
    answer.extend_from_slice(&[0x00, 0x00, 0x2a, 0x10, 0x05]);
    let reply = app.write(
        "reply.eml",
        &outlook(
            "Lou Martin <lou.martin@customers.example>",
            "About the widget",
            "lou-2@customers.example",
            &base64::engine::general_purpose::STANDARD.encode(&answer),
            "Our brand colour is #2a7f62, with white text.",
        ),
    );
    let r = app.ingest_one(&reply);
    assert_eq!(
        (r["action"].as_str(), r["ticket"].as_str()),
        (Some("reply"), Some("CHT-1")),
        "{r:#}"
    );
}

#[test]
fn an_outlook_recall_joins_the_recalled_messages_ticket_and_is_never_acknowledged() {
    let app = App::new();
    let kim = "Kim Lee <kim.lee@customers.example>";
    let first = app.write(
        "first.eml",
        &outlook(
            kim,
            "Invoice sent to the wrong department",
            "kim-1@customers.example",
            &thread_index(9, 0),
            "Please send our invoices to accounting, not to the sales department.",
        ),
    );
    assert_eq!(app.ingest_one(&first)["ticket"], "CHT-1");
    let acks = app.stats().acks_queued;
    // The recall Exchange sends outside its organisation, in the same conversation.
    let recall = app.write(
        "recall.eml",
        &outlook(
            kim,
            "Recall: Invoice sent to the wrong department",
            "kim-recall@customers.example",
            &thread_index(9, 1),
            "Kim Lee would like to recall the message, \"Invoice sent to the wrong department\".",
        ),
    );
    let r = app.ingest_one(&recall);
    assert_eq!(
        (r["ticket"].as_str(), r["action"].as_str()),
        (Some("CHT-1"), Some("reply")),
        "{r:#}"
    );
    // A French one without any Thread-Index, found by the recalled subject.
    let rappel = app.write(
        "rappel.eml",
        "From: Kim Lee <kim.lee@customers.example>\r\n\
To: support@example.test\r\n\
Subject: Rappel : Invoice sent to the wrong department\r\n\
Date: Mon, 01 Dec 2026 08:05:00 +0000\r\n\
Message-ID: <kim-rappel@customers.example>\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Kim Lee souhaite rappeler le message « Invoice sent to the wrong department ».\r\n"
            .as_bytes(),
    );
    let f = app.ingest_one(&rappel);
    assert_eq!(
        (f["ticket"].as_str(), f["action"].as_str()),
        (Some("CHT-1"), Some("reply")),
        "{f:#}"
    );
    // The recall of a message that never reached us opens a ticket, unacknowledged.
    let orphan = app.write(
        "orphan.eml",
        &outlook(
            kim,
            "Recall: Quarterly figures",
            "kim-orphan@customers.example",
            &thread_index(11, 1),
            "Kim Lee would like to recall the message, \"Quarterly figures\".",
        ),
    );
    let o = app.ingest_one(&orphan);
    assert_eq!(o["action"], "new", "{o:#}");
    assert_eq!(o["ack"], "suppressed", "{o:#}");
    assert_eq!(app.stats().acks_queued, acks);
}

// ------------------------------------------------------------------ the other cases, by class

/// No U+FFFD anywhere a person reads: listings, the acknowledgement and the notification.
fn assert_no_replacement_characters(app: &App) {
    let listings = [
        app.json(&["tickets", "list", "--json"]),
        app.json(&["outbox", "list", "--json"]),
    ];
    for listing in &listings {
        assert!(!listing.to_string().contains('\u{FFFD}'), "{listing:#}");
    }
    for row in app.outbox() {
        let raw = app.outbox_raw(row["id"].as_i64().expect("id"));
        let parsed = mail_parser::MessageParser::default()
            .parse(&raw)
            .expect("our own mail parses");
        let text = format!(
            "{:?} {:?} {}",
            parsed.subject(),
            parsed.to(),
            parsed.body_text(0).unwrap_or_default()
        );
        assert!(!text.contains('\u{FFFD}'), "{text}");
    }
}

/// The display name of the first acknowledgement's To.
fn ack_to_name(app: &App) -> String {
    let ack = first_of(&app.outbox(), "ack");
    let raw = app.outbox_raw(ack["id"].as_i64().expect("id"));
    let parsed = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("parses");
    parsed
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.name())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn case_01_an_outlook_request_asking_for_no_auto_reply_still_opens_a_ticket() {
    let app = App::with(|c| c.support_line("aliases = [\"contact@example.test\"]"));
    let outcome = app.ingest_one(&case("01-xars-outlook-request.eml"));
    assert_eq!(outcome["action"], "new", "{outcome:#}");
    assert_eq!(outcome["category"], "billing");
    let ticket = app.ticket("CHT-1");
    assert_eq!(ticket["customer"], "claire.martin@customers.example");
    let text = ticket_texts(&app, "CHT-1").join("\n");
    for wanted in ["49 €", "C’est la même", "comptabilité – Boulangeries"] {
        assert!(text.contains(wanted), "{wanted:?} missing from {text}");
    }
    assert_eq!(outbox_for(&app, "notification", "CHT-1").len(), 1);
}

#[test]
fn case_01b_an_outlook_reply_asking_for_no_auto_reply_joins_its_ticket() {
    let app = App::new();
    app.ingest_one(&case("01b-xars-outlook-reply.1.eml"));
    let reply = app.ingest_one(&filled_case(&app, "01b-xars-outlook-reply.2.eml"));
    assert_eq!(reply["action"], "reply", "{reply:#}");
    assert_eq!(reply["ticket"], "CHT-1");
    assert_eq!(app.stats().tickets, 1);
    assert_eq!(outbox_for(&app, "notification", "CHT-1").len(), 2);
}

#[test]
fn case_02_a_subject_and_a_name_split_inside_characters_decode_whole() {
    let app = App::new();
    let outcome = app.ingest_one(&case("02-subject-split-base64.eml"));
    assert_eq!(outcome["category"], "billing");
    assert_eq!(
        app.ticket("CHT-1")["subject"],
        "Problème de prélèvement après résiliation de l'abonnement"
    );
    assert_eq!(ack_to_name(&app), "Hélène Bérubé");
    assert_no_replacement_characters(&app);
}

#[test]
fn case_08_a_forwarded_request_is_the_request() {
    let app = App::new();
    let outcome = app.ingest_one(&case("08-forwarded-fr-gmail.eml"));
    assert_eq!(outcome["category"], "billing", "{outcome:#}");
    let text = ticket_texts(&app, "CHT-1").join("\n");
    assert!(text.contains("deux factures identiques"), "{text}");
    let note = outbox_for(&app, "notification", "CHT-1");
    let raw = app.outbox_raw(note[0]["id"].as_i64().expect("id"));
    let body = crate::e2e::body_text(&raw);
    assert!(body.contains("deux factures identiques"), "{body}");
}

#[test]
fn case_11_a_blank_plain_alternative_falls_back_to_the_html_request() {
    let app = App::new();
    let outcome = app.ingest_one(&case("11-empty-plain-alternative.eml"));
    assert_eq!(outcome["category"], "billing", "{outcome:#}");
    let text = ticket_texts(&app, "CHT-1").join("\n");
    assert!(text.contains("facturés deux fois"), "{text}");
}

#[test]
fn case_12_raw_latin1_in_from_and_subject_reads_as_latin1() {
    let app = App::new();
    let outcome = app.ingest_one(&case("12-raw-latin1-from-subject.eml"));
    assert_eq!(outcome["category"], "technical", "{outcome:#}");
    assert_eq!(
        app.ticket("CHT-1")["subject"],
        "Problème d'affichage du module de réservation"
    );
    assert_eq!(ack_to_name(&app), "François Lemaître");
    assert_no_replacement_characters(&app);
}

#[test]
fn case_15_a_google_group_in_front_of_the_support_address_is_a_person_writing() {
    let app = App::with(|c| c.support_line("aliases = [\"help@example.test\"]"));
    let outcome = app.ingest_one(&case("15-google-group-front-address.eml"));
    assert_eq!(outcome["action"], "new", "{outcome:#}");
    assert_eq!(outcome["category"], "billing");
    assert_eq!(
        app.ticket("CHT-1")["customer"],
        "denis.vasseur@customers.example"
    );
    assert_eq!(outbox_for(&app, "notification", "CHT-1").len(), 1);
    for ack in outbox_for(&app, "ack", "CHT-1") {
        assert_ne!(ack["to"], "help@example.test");
        assert_ne!(ack["to"], "support@example.test");
    }
}

#[test]
fn case_19_a_pasted_10_mb_log_is_one_ticket_and_the_notification_a_bounded_excerpt() {
    let app = App::new();
    let path = app.path().join("19.eml");
    let made = std::process::Command::new("python3")
        .arg(case("make-19-pasted-log.py"))
        .arg(&path)
        .status()
        .expect("python3");
    assert!(made.success());
    let outcome = app.ingest_one(&path);
    assert_eq!(outcome["action"], "new");
    let note = outbox_for(&app, "notification", "CHT-1");
    let raw = app.outbox_raw(note[0]["id"].as_i64().expect("id"));
    let size = std::fs::metadata(&path).expect("size").len() as usize;
    // The original is attached once; the body adds a bounded excerpt, not a second copy.
    assert!(
        raw.len() < size + size / 4,
        "{} for a {size}-byte original",
        raw.len()
    );
}

#[test]
fn case_20_a_from_after_a_z_zoned_date_is_read() {
    let app = App::new();
    let outcome = app.ingest_one(&case("20-date-zone-z-before-from.eml"));
    assert_eq!(
        outcome["message_id"],
        "<20261124091244.GA7712@ws-14.customers.example>"
    );
    assert_eq!(outcome["ack"], "queued", "{outcome:#}");
    let ticket = app.ticket("CHT-1");
    assert_eq!(ticket["customer"], "marc.aubert@customers.example");
    assert_eq!(
        ticket["subject"],
        "Impossible de me connecter au tableau de bord"
    );
}
