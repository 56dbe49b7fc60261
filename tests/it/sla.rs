//! Response times on the business calendar, driven through the real binary with
//! `SUPPORTD_NOW`: the due time a Friday-evening request is promised, the escalations queued
//! once each, a pause while the ticket waits on the customer, a first answer stopping the
//! clock, holidays from the configured file, and the `supportd sla` report.
//!
//! What the agents' side writes (an answer relayed to the customer, a status change, an
//! assignment) is written here with the store functions that side calls
//! (`store::insert_message` with `Direction::Out`, `store::assign`); tests/it/agents.rs drives
//! the same through agents' mail and `supportd tickets`.

use serde_json::Value;
use supportd::store::{self, Direction, MessageAction, NewMessage, Store};

use crate::helpers::app::App;
use crate::helpers::{db, fold};

/// Friday 28 November 2025, 19:00 in Paris: after working hours.
const FRIDAY_EVENING: &str = "2025-11-28T19:00:00+01:00";

/// A billing request (24 business hours) from Julie.
fn billing(app: &App, id: &str) -> std::path::PathBuf {
    let raw = format!(
        "From: Julie Martin <julie@boulangerie-martin.fr>\r\nTo: support@example.test\r\n\
         Subject: Prélèvement en double\r\nMessage-ID: <{id}@boulangerie-martin.fr>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Bonjour, vous m'avez prélevé deux fois l'abonnement de novembre. Pouvez-vous me \
         rembourser ?\r\n"
    );
    app.write(&format!("{id}.eml"), raw.as_bytes())
}

/// Unix seconds of an RFC 3339 time.
fn at(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("an RFC 3339 time")
        .timestamp()
}

fn open(app: &App) -> Store {
    Store::open(&app.database).expect("open the test database")
}

fn ticket_id(store: &Store, reference: &str) -> i64 {
    store::ticket_by_ref(store.conn(), reference)
        .expect("query")
        .expect("the ticket")
        .id
}

/// An agent's answer relayed to the customer at `when`, as the agents' side stores it.
fn answer(app: &App, reference: &str, when: &str) {
    let mut store = open(app);
    let id = ticket_id(&store, reference);
    let tx = store.begin().expect("begin");
    let message_id = format!("answer-{reference}@example.test");
    store::insert_message(
        &tx,
        &NewMessage {
            ticket_id: Some(id),
            direction: Direction::Out,
            message_id: &message_id,
            raw_sha256: "answer",
            in_reply_to: "",
            refs: "",
            from_addr: "alice@example.test",
            from_name: None,
            to_addrs: "julie@boulangerie-martin.fr",
            subject: "Re: Prélèvement en double",
            date: Some(at(when)),
            received_at: at(when),
            action: MessageAction::Reply,
            category: None,
            language: None,
            automated: None,
            new_text: "Nous vous remboursons.",
            full_text: "Nous vous remboursons.",
            attachments: "[]",
            size: 0,
            raw: b"",
            source: "test",
            warnings: "",
            error: None,
            conversation: None,
        },
    )
    .expect("store the answer");
    tx.commit().expect("commit");
}

/// The ticket's status went `from -> to` at `when`, as the agents' side records it.
fn status_change(app: &App, reference: &str, from: &str, to: &str, when: &str) {
    let store = open(app);
    let id = ticket_id(&store, reference);
    store::record_status_change(
        store.conn(),
        id,
        from,
        to,
        at(when),
        Some("alice@example.test"),
    )
    .expect("record the status change");
}

/// `sla escalate --json` at `now`: one entry per escalation queued.
fn escalate(app: &App, now: &str) -> Vec<Value> {
    app.set_now(now);
    match app.json(&["sla", "escalate", "--json"]) {
        Value::Array(items) => items,
        other => panic!("not an array: {other:#}"),
    }
}

fn escalations(app: &App) -> Vec<Value> {
    app.outbox()
        .into_iter()
        .filter(|o| o["kind"] == "escalation")
        .collect()
}

fn body(app: &App, outbox_row: &Value) -> String {
    let raw = app.outbox_raw(outbox_row["id"].as_i64().expect("id"));
    let parsed = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("a message");
    fold(&parsed.body_text(0).expect("a text body"))
}

#[test]
fn a_friday_evening_request_is_due_on_wednesday_at_15_and_the_acknowledgement_says_so() {
    let app = App::new();
    app.set_now(FRIDAY_EVENING);
    let outcome = app.ingest_one(&billing(&app, "fri"));
    assert_eq!(outcome["category"], "billing");
    assert_eq!(app.ticket("CHT-1")["due_at"], "2025-12-03T14:00:00Z");
    let ack = app
        .outbox()
        .into_iter()
        .find(|o| o["kind"] == "ack")
        .expect("an acknowledgement");
    let text = body(&app, &ack);
    assert!(
        text.contains(
            "sous 24 heures ouvrées, d'ici le mercredi 3 décembre à 15:00 (heure de Paris)."
        ),
        "{text}"
    );
    assert!(
        text.contains("en dehors de nos heures d'ouverture (du lundi au vendredi, 09:00-18:00)"),
        "{text}"
    );
}

#[test]
fn a_holiday_from_the_configured_file_moves_the_due_time() {
    let app = App::with(|c| c.section("[sla]\nholidays = \"holidays.txt\"\nat_risk = \"90%\""));
    app.write("holidays.txt", b"# Lundi off\n2025-12-01\n");
    app.set_now(FRIDAY_EVENING);
    app.ingest_one(&billing(&app, "holiday"));
    assert_eq!(app.ticket("CHT-1")["due_at"], "2025-12-04T14:00:00Z");
    // 90 %: Thursday at 12:36 is 21.6 of 24 hours.
    assert!(escalate(&app, "2025-12-04T12:30:00+01:00").is_empty());
    assert_eq!(escalate(&app, "2025-12-04T12:40:00+01:00").len(), 1);
}

#[test]
fn at_risk_then_breached_are_queued_once_each_to_the_team_and_the_assignee() {
    let app = App::new();
    app.set_now(FRIDAY_EVENING);
    app.ingest_one(&billing(&app, "esc"));
    // Tuesday noon: 12 of 24 hours.
    assert!(escalate(&app, "2025-12-02T12:00:00+01:00").is_empty());
    {
        let store = open(&app);
        let id = ticket_id(&store, "CHT-1");
        store::assign(
            store.conn(),
            id,
            "alice@example.test",
            Some("lead@example.test"),
        )
        .expect("assign");
    }
    // Wednesday 11:00: 20 of 24 hours, 83 %.
    let queued = escalate(&app, "2025-12-03T11:00:00+01:00");
    assert_eq!(queued.len(), 1, "{queued:#?}");
    assert_eq!(queued[0]["level"], "at_risk");
    assert_eq!(
        queued[0]["to"],
        serde_json::json!(["team@example.test", "alice@example.test"])
    );
    assert!(escalate(&app, "2025-12-03T11:30:00+01:00").is_empty());
    let mail = escalations(&app);
    assert_eq!(mail.len(), 2);
    let text = body(&app, &mail[0]);
    assert!(
        text.contains("83 % du délai de réponse promis est écoulé"),
        "{text}"
    );
    assert!(text.contains("Responsable : alice@example.test"), "{text}");
    assert!(
        text.contains("Échéance : mercredi 3 décembre à 15:00 (heure de Paris)"),
        "{text}"
    );
    // Past 15:00: breached, once.
    let queued = escalate(&app, "2025-12-03T16:00:00+01:00");
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["level"], "breached");
    assert!(escalate(&app, "2025-12-05T09:00:00+01:00").is_empty());
    assert_eq!(escalations(&app).len(), 4);
    let conn = db::open(&app.database);
    assert_eq!(db::events(&conn, "sla_at_risk"), 1);
    assert_eq!(db::events(&conn, "sla_breached"), 1);

    let report = app.json(&["sla", "--json", "--since", "2025-11-01"]);
    let open = report["open"].as_array().expect("open tickets");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["ticket"], "CHT-1");
    assert_eq!(open[0]["overdue"], true);
    assert_eq!(open[0]["assignee"], "alice@example.test");
    assert_eq!(report["categories"][0]["breached"], 1);
}

#[test]
fn a_ticket_found_breached_gets_only_the_breached_notification() {
    let app = App::new();
    app.set_now(FRIDAY_EVENING);
    app.ingest_one(&billing(&app, "late"));
    let queued = escalate(&app, "2025-12-08T09:00:00+01:00");
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["level"], "breached");
    assert!(escalate(&app, "2025-12-08T10:00:00+01:00").is_empty());
    assert_eq!(escalations(&app).len(), 1);
}

#[test]
fn pending_pauses_the_clock_until_the_customer_answers() {
    let app = App::new();
    app.set_now(FRIDAY_EVENING);
    app.ingest_one(&billing(&app, "pending"));
    // Pending from Monday 10:00 (1 hour used) to Wednesday 10:00.
    status_change(
        &app,
        "CHT-1",
        "open",
        "pending",
        "2025-12-01T10:00:00+01:00",
    );
    app.set_now("2025-12-02T17:00:00+01:00");
    let report = app.json(&["sla", "--json"]);
    let ticket = &report["open"][0];
    assert_eq!(ticket["state"], "paused");
    assert_eq!(ticket["due"], Value::Null);
    assert_eq!(app.ticket("CHT-1")["response"]["state"], "paused");
    assert!(escalate(&app, "2025-12-03T09:30:00+01:00").is_empty());
    status_change(
        &app,
        "CHT-1",
        "pending",
        "open",
        "2025-12-03T10:00:00+01:00",
    );
    // Wednesday 16:00: 1 + 6 of 24 hours, where without the pause the time was up at 15:00.
    assert!(escalate(&app, "2025-12-03T16:00:00+01:00").is_empty());
    app.set_now("2025-12-03T16:00:00+01:00");
    let report = app.json(&["sla", "--json"]);
    let ticket = &report["open"][0];
    assert_eq!(ticket["state"], "running");
    assert_eq!(ticket["used_percent"], 29.2);
    // 17 hours left: Wednesday until 18:00, Thursday, then Friday until 15:00.
    assert_eq!(ticket["due"], "2025-12-05T14:00:00Z");
}

#[test]
fn the_first_answer_stops_the_clock_and_counts_as_met() {
    let app = App::new();
    app.set_now(FRIDAY_EVENING);
    app.ingest_one(&billing(&app, "answered"));
    // Monday 11:30: 2.5 business hours after the weekend.
    answer(&app, "CHT-1", "2025-12-01T11:30:00+01:00");
    assert!(escalate(&app, "2025-12-05T09:00:00+01:00").is_empty());
    let response = &app.ticket("CHT-1")["response"];
    assert_eq!(response["state"], "met", "{response:#}");
    assert_eq!(response["business_used"], 9000);
    let report = app.json(&["sla", "--json", "--since", "2025-11-28"]);
    assert_eq!(report["open"], serde_json::json!([]));
    let billing = &report["categories"][0];
    assert_eq!(billing["category"], "billing");
    assert_eq!(
        (billing["tickets"].as_i64(), billing["met"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(billing["median_hours"], 2.5);
    assert_eq!(billing["p90_hours"], 2.5);
    // The text report fits a terminal and names the figures.
    let out = app.run(&["sla", "--since", "2025-11-28"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Waiting for a first answer"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("billing") && l.contains("2.5 h")),
        "{text}"
    );
    assert!(text.lines().all(|l| l.chars().count() <= 120), "{text}");
}

#[test]
fn a_feature_request_is_confirmed_by_its_acknowledgement() {
    let app = App::new();
    app.set_now(FRIDAY_EVENING);
    let raw = "From: Paul <paul@garage.example>\r\nTo: support@example.test\r\n\
               Subject: Suggestion : export CSV\r\nMessage-ID: <feature@garage.example>\r\n\r\n\
               Bonjour, ce serait bien d'avoir une fonctionnalité d'export CSV des conversations.\r\n";
    let outcome = app.ingest_one(&app.write("feature.eml", raw.as_bytes()));
    assert_eq!(outcome["category"], "feature");
    assert_eq!(app.ticket("CHT-1")["due_at"], Value::Null);
    let ack = app
        .outbox()
        .into_iter()
        .find(|o| o["kind"] == "ack")
        .expect("an acknowledgement");
    assert!(body(&app, &ack).contains("Ce message vous confirme"));
    assert!(escalate(&app, "2025-12-31T09:00:00+01:00").is_empty());
    let report = app.json(&["sla", "--json", "--since", "2025-11-28"]);
    assert_eq!(report["open"], serde_json::json!([]));
    assert_eq!(report["categories"][0]["met"], 1);
}

// ------------------------------------------------------------------ through the real stack

/// `supportd run` with `[smtp]` delivers the warning into the team's mailbox, then, after a
/// restart two hours later, the breach; a third run sends nothing again.
#[test]
fn the_daemon_mails_the_team_the_warning_then_the_breach_once_each_across_restarts() {
    use crate::e2e::{World, billing_mail, customer, e2e, message_id, subject};
    use crate::helpers::mailstack::{Stack, maildir_files};
    use std::time::Duration;

    e2e("sla", || async {
        let stack = Stack::shared();
        let mut w = World::new("sla", &stack);
        let julie = customer("julie");
        // The request came in on Friday evening, by the MTA pipe.
        w.app.set_now(FRIDAY_EVENING);
        let raw = billing_mail(&julie, &w.support, &message_id());
        w.app.ingest_one(&w.app.write("request.eml", &raw));

        // Wednesday 11:00: 83 % of the 24 business hours are used.
        w.app.set_now("2025-12-03T11:00:00+01:00");
        w.start_ready().await;
        let team = stack.wait_inbox(&w.team, 2, Duration::from_secs(30)).await;
        w.wait_settled(1, Duration::from_secs(30)).await;
        w.stop().await;
        let subjects: Vec<String> = team.iter().map(|m| subject(m)).collect();
        let warnings: Vec<&String> = subjects
            .iter()
            .filter(|s| s.contains("Délai bientôt dépassé"))
            .collect();
        assert_eq!(warnings.len(), 1, "{subjects:#?}");
        assert!(warnings[0].starts_with("[CHT-1] "), "{subjects:#?}");
        let warning = team
            .iter()
            .find(|m| subject(m).contains("Délai bientôt dépassé"))
            .expect("the warning");
        let text = fold(&crate::e2e::body_text(warning));
        assert!(
            text.contains("83 % du délai de réponse promis est écoulé"),
            "{text}"
        );
        assert!(text.contains(&format!("Client : {julie}")), "{text}");

        // Restarted after 15:00: the breach, and the warning is not sent again.
        w.app.set_now("2025-12-03T16:00:00+01:00");
        w.start_ready().await;
        let team = stack.wait_inbox(&w.team, 3, Duration::from_secs(30)).await;
        w.wait_settled(1, Duration::from_secs(30)).await;
        w.stop().await;
        assert!(
            team.iter().any(|m| subject(m).contains("Délai dépassé")),
            "{:#?}",
            team.iter().map(|m| subject(m)).collect::<Vec<_>>()
        );

        // Once more: nothing new to say.
        w.start_ready().await;
        w.wait_settled(1, Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        w.stop().await;
        assert_eq!(maildir_files(&stack.maildir(&w.team)).len(), 3);
        assert_eq!(stack.inbox(&julie).await.len(), 1, "one acknowledgement");
    });
}
