//! Customer accounts through the real binary: the CSV import (a bad row imports nothing; a
//! second import reports what changed), `accounts show`, and the three ways a request finds its
//! account, as the team notification, the acknowledgement and `tickets show` tell it.

use serde_json::Value;

use crate::helpers::app::App;
use crate::helpers::fold;

const ACCOUNTS: &str = "email,name,plan,project_url,company,created_at,seats\n\
    julie@boulangerie-martin.fr,Julie Martin,pro,https://www.boulangerie-martin.fr/,Boulangerie Martin,2024-03-01,3\n\
    paul@garage.example,Paul Durand,free,https://app.chatim.io/p/garage,Garage Durand,2025-01-10,1\n";

fn import(app: &App, name: &str, text: &str) -> std::process::Output {
    let path = app.write(name, text.as_bytes());
    app.run(&["accounts", "import", &path.display().to_string(), "--json"])
}

/// A new request from `from` saying `text`; returns its ticket reference.
fn request(app: &App, id: &str, from: &str, text: &str) -> String {
    let raw = format!(
        "From: {from}\r\nTo: support@example.test\r\nSubject: Le widget ne s'affiche plus\r\n\
         Message-ID: <{id}@client.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    );
    let outcome = app.ingest_one(&app.write(&format!("{id}.eml"), raw.as_bytes()));
    outcome["ticket"].as_str().expect("a ticket").to_string()
}

/// The body of the ticket's outbox mail of `kind`.
fn mail(app: &App, ticket: &str, kind: &str) -> String {
    let row = app
        .outbox()
        .into_iter()
        .find(|o| o["ticket"] == ticket && o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} for {ticket}"));
    let raw = app.outbox_raw(row["id"].as_i64().expect("id"));
    let parsed = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("a message");
    fold(&parsed.body_text(0).expect("a text body"))
}

#[test]
fn a_file_with_a_bad_row_imports_nothing_and_a_second_import_reports_what_changed() {
    let app = App::new();
    let bad = format!("{ACCOUNTS}marc-at-example.fr,Marc,free,,,,\n");
    let out = import(&app, "bad.csv", &bad);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4"), "{err}");
    assert!(err.contains("nothing imported"), "{err}");
    let missing = app.run(&["accounts", "show", "julie@boulangerie-martin.fr"]);
    assert!(
        !missing.status.success(),
        "the good rows of a bad file were imported"
    );

    let out = import(&app, "accounts.csv", ACCOUNTS);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        counts,
        serde_json::json!({"added": 2, "updated": 0, "unchanged": 0})
    );
    let again = ACCOUNTS.replace("Paul Durand,free", "Paul Durand,team")
        + "marc@example.fr,Marc,free,,,,\n";
    let out = import(&app, "again.csv", &again);
    let counts: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        counts,
        serde_json::json!({"added": 1, "updated": 1, "unchanged": 1})
    );

    let paul = app.json(&["accounts", "show", "Paul@Garage.example", "--json"]);
    assert_eq!(paul["plan"], "team");
    assert_eq!(paul["extra"], serde_json::json!([["seats", "1"]]));
    let out = app.run(&["accounts", "show", "paul@garage.example"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("company: Garage Durand"), "{text}");
    assert!(text.contains("seats: 1"), "{text}");
}

#[test]
fn a_request_finds_its_account_by_sender_by_an_e_mail_or_by_a_project_url() {
    let app = App::new();
    assert!(import(&app, "accounts.csv", ACCOUNTS).status.success());

    let by_sender = request(
        &app,
        "s",
        "julie@boulangerie-martin.fr",
        "Il a disparu hier.",
    );
    let by_email = request(
        &app,
        "e",
        "julie.perso@gmail.com",
        "Il a disparu. Mon compte : Julie@Boulangerie-Martin.fr",
    );
    let by_url = request(
        &app,
        "u",
        "contact@garage-durand.fr",
        "Il a disparu de https://app.chatim.io/p/garage/settings depuis ce matin.",
    );
    for (ticket, email, how) in [
        (&by_sender, "julie@boulangerie-martin.fr", "sender"),
        (&by_email, "julie@boulangerie-martin.fr", "email_in_message"),
        (&by_url, "paul@garage.example", "project_url"),
    ] {
        let shown = app.ticket(ticket);
        assert_eq!(shown["account"]["matched"], "found", "{shown:#}");
        assert_eq!(shown["account"]["account"]["email"], email, "{shown:#}");
        assert_eq!(shown["account"]["by"], how, "{shown:#}");
        let note = mail(&app, ticket, "notification");
        assert!(note.contains(&format!("E-mail: {email}")), "{note}");
        let ack = mail(&app, ticket, "ack");
        assert!(!ack.contains("l'adresse e-mail de votre compte"), "{ack}");
    }
    let note = mail(&app, &by_url, "notification");
    assert!(
        note.contains("(trouvé par une URL de projet citée dans le message)"),
        "{note}"
    );
    assert!(note.contains("Offre: free"), "{note}");
}

#[test]
fn when_no_account_matches_the_team_is_told_and_the_customer_is_asked() {
    let app = App::new();
    assert!(import(&app, "accounts.csv", ACCOUNTS).status.success());
    let ticket = request(
        &app,
        "none",
        "inconnu@fleuriste.fr",
        "Il a disparu de www.fleuriste.fr ; écrivez-moi à contact@fleuriste.fr",
    );
    let note = mail(&app, &ticket, "notification");
    assert!(note.contains("AUCUN COMPTE NE CORRESPOND"), "{note}");
    assert!(
        note.contains("Adresses e-mail dans le message : contact@fleuriste.fr"),
        "{note}"
    );
    assert!(
        note.contains("URL dans le message : www.fleuriste.fr"),
        "{note}"
    );
    let ack = mail(&app, &ticket, "ack");
    assert!(
        ack.contains("l'adresse e-mail de votre compte et l'URL de votre projet"),
        "{ack}"
    );
    let shown = app.ticket(&ticket);
    assert_eq!(shown["account"]["matched"], "not_found");
    let out = app.run(&["tickets", "show", &ticket]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("account: none matched"), "{text}");
}
