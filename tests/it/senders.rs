//! Class (g) of the real-mail issue: an unusable From is never a customer. Reply-To, then
//! Sender, stands for the customer (flagged, the team told); with nobody to answer, the message
//! is stored, the team is told, and no acknowledgement is attempted.

use serde_json::Value;

use crate::helpers::app::App;
use crate::helpers::crate_dir;

fn notification_text(app: &App, ticket: &str) -> String {
    let note = app
        .outbox()
        .into_iter()
        .find(|o| o["kind"] == "notification" && o["ticket"] == ticket)
        .unwrap_or_else(|| panic!("no notification for {ticket}"));
    let raw = app.outbox_raw(note["id"].as_i64().expect("id"));
    crate::e2e::body_text(&raw)
}

#[test]
fn an_address_hidden_in_an_encoded_word_is_recovered_as_the_customer() {
    // See: ../shared/cases 13.
    let app = App::new();
    let case = crate_dir().join("fixtures/cases/13-encoded-word-swallows-address.eml");
    let outcome = app.ingest_one(&case);
    let ticket = app.ticket(outcome["ticket"].as_str().expect("a ticket"));
    assert_eq!(
        ticket["customer"], "zoe.brunet@customers.example",
        "{ticket:#}"
    );
    assert_eq!(outcome["ack"], "queued");
}

#[test]
fn with_an_unusable_from_reply_to_stands_for_the_customer_and_the_team_is_told() {
    let app = App::new();
    // Outlook-style: the From is only a domain, the answer address is in Reply-To.
    let mail = app.write(
        "m.eml",
        b"From: \"Service compta\" <@boulangerie-martin.fr>\r\nReply-To: Claire <compta@boulangerie-martin.fr>\r\nTo: support@example.test\r\nSubject: Facture en double\r\nMessage-ID: <g1@boulangerie-martin.fr>\r\n\r\nBonjour, nous avons ete factures deux fois pour novembre.\r\n",
    );
    let outcome = app.ingest_one(&mail);
    assert_eq!(outcome["ack"], "queued", "{outcome:#}");
    let ticket = app.ticket("CHT-1");
    assert_eq!(ticket["customer"], "compta@boulangerie-martin.fr");
    assert!(
        ticket["flags"]
            .as_str()
            .unwrap_or_default()
            .contains("sender_fallback")
    );
    let ack = app
        .outbox()
        .into_iter()
        .find(|o| o["kind"] == "ack")
        .expect("an ack");
    assert_eq!(ack["to"], "compta@boulangerie-martin.fr");
    let text = notification_text(&app, "CHT-1");
    assert!(
        text.contains("Reply-To compta@boulangerie-martin.fr stands for the customer"),
        "{text}"
    );
}

#[test]
fn with_no_usable_address_at_all_the_team_is_told_and_nobody_is_answered() {
    let app = App::new();
    let mail = app.write(
        "m.eml",
        b"From: Marc Aubert\r\nTo: support@example.test\r\nSubject: Widget vide\r\nMessage-ID: <g2@ws-14.customers.example>\r\n\r\nLe widget ne s'affiche plus sur notre site depuis hier.\r\n",
    );
    let outcome = app.ingest_one(&mail);
    assert_ne!(outcome["ack"], "queued", "{outcome:#}");
    let tickets: Vec<Value> = app.tickets();
    for t in &tickets {
        let customer = t["customer"].as_str().unwrap_or_default();
        assert!(!customer.is_empty() && !customer.starts_with('@'), "{t:#}");
    }
    assert!(app.outbox().iter().all(|o| o["kind"] != "ack"));
    let ticket = outcome["ticket"].as_str().expect("a ticket for the team");
    let text = notification_text(&app, ticket);
    assert!(text.contains("no usable sender address"), "{text}");
}

/// Class (a): our own Google Group rewrote From to itself (DMARC); the person is in
/// X-Original-From, and becomes the customer.
#[test]
fn a_from_rewritten_by_our_own_group_is_the_person_in_x_original_from() {
    let app = App::with(|c| c.support_line("aliases = [\"help@example.test\"]"));
    let mail = app.write(
        "m.eml",
        b"From: 'Denis Vasseur' via Help <help@example.test>\r\nX-Original-From: Denis Vasseur <denis.vasseur@customers.example>\r\nReply-To: Denis Vasseur <denis.vasseur@customers.example>\r\nTo: Help <help@example.test>\r\nSubject: Facture introuvable dans l'espace client\r\nMessage-ID: <dmarc-1@customers.example>\r\nList-ID: <help.example.test>\r\nPrecedence: list\r\nX-BeenThere: help@example.test\r\n\r\nBonjour, je ne trouve pas ma facture de novembre dans mon espace client.\r\n",
    );
    let outcome = app.ingest_one(&mail);
    assert_eq!(outcome["action"], "new", "{outcome:#}");
    let ticket = app.ticket(outcome["ticket"].as_str().expect("ticket"));
    assert_eq!(
        ticket["customer"], "denis.vasseur@customers.example",
        "{ticket:#}"
    );
    for ack in app.outbox().iter().filter(|o| o["kind"] == "ack") {
        assert_eq!(ack["to"], "denis.vasseur@customers.example");
    }
}
