//! Black-box tests of the `supportd` binary on real SQLite files, over the fixtures in
//! `fixtures/mail` and their expectations in `fixtures/mail/expected.toml`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::helpers::app::{App, BIN};
use crate::helpers::{crate_dir, db, fixtures, fold};

#[test]
fn every_fixture_is_stored_classified_threaded_and_acknowledged_as_expected() {
    let app = App::new();
    let expected = fixtures::expected();
    let mut tickets: BTreeMap<String, String> = BTreeMap::new();
    let mut failures = Vec::new();

    // Messages that continue nothing first, so that the others have something to refer to.
    for (name, exp) in expected.iter().filter(|(_, e)| e.parent().is_none()) {
        let m = app.ingest_one(&app.write(name, &fixtures::raw(name)));
        let action = m["action"].as_str().unwrap_or_default();
        if exp.is_automated() {
            if action != "automated" {
                failures.push(format!("{name}: expected automated, got {action}"));
            }
            continue;
        }
        if action != "new" {
            failures.push(format!("{name}: expected new, got {action} ({m})"));
            continue;
        }
        if m["ack"] != "queued" {
            failures.push(format!("{name}: acknowledgement not queued: {m}"));
        }
        if let Some(cat) = &exp.category
            && m["category"].as_str() != Some(cat.as_str())
        {
            failures.push(format!(
                "{name}: expected category {cat}, got {}",
                m["category"]
            ));
        }
        let ticket = m["ticket"].as_str().unwrap_or_default().to_string();
        let show = app.ticket(&ticket);
        let text = show["messages"][0]["text"].as_str().unwrap_or_default();
        let attachments = show["messages"][0]["attachments"]
            .as_array()
            .map_or(0, Vec::len);
        if (name.contains("-pdf") || name.contains("-png")) && attachments == 0 {
            failures.push(format!("{name}: attachment not recorded: {show}"));
        }
        if let Some(want) = &exp.new_text_contains
            && !fold(text).contains(&fold(want))
        {
            failures.push(format!("{name}: new text lacks {want:?}: {text:?}"));
        }
        if let Some(lang) = &exp.language
            && show["language"].as_str() != Some(lang.as_str())
        {
            failures.push(format!(
                "{name}: expected language {lang}, got {}",
                show["language"]
            ));
        }
        tickets.insert(name.clone(), ticket);
    }

    let outbox = app.outbox();
    let acks_before = outbox.iter().filter(|o| o["kind"] == "ack").count();

    for (name, exp) in expected.iter() {
        let Some(parent) = exp.parent() else {
            continue;
        };
        let Some(ticket) = tickets.get(parent) else {
            failures.push(format!("{name}: its parent {parent} has no ticket"));
            continue;
        };
        let ack = outbox
            .iter()
            .find(|o| o["kind"] == "ack" && o["ticket"] == ticket.as_str())
            .expect("the parent's acknowledgement");
        let ack_id = ack["message_id"].as_str().unwrap_or_default();
        let raw = fixtures::substitute(&fixtures::raw(name), ack_id, ticket);
        let m = app.ingest_one(&app.write(name, &raw));
        if exp.is_automated() {
            if m["action"] != "automated" {
                failures.push(format!("{name}: expected automated, got {m}"));
            }
            continue;
        }
        if exp.hijack == Some(true) {
            if m["action"] != "new" || m["ticket"] == ticket.as_str() {
                failures.push(format!("{name}: a stranger joined {ticket}: {m}"));
            }
            continue;
        }
        if m["action"] != "reply" || m["ticket"] != ticket.as_str() {
            failures.push(format!("{name}: expected a reply on {ticket}, got {m}"));
            continue;
        }
        let show = app.ticket(ticket);
        let text = show["messages"]
            .as_array()
            .and_then(|ms| ms.iter().rev().find(|x| x["direction"] == "in"))
            .and_then(|x| x["text"].as_str())
            .unwrap_or_default()
            .to_string();
        if let Some(want) = &exp.new_text_contains
            && !fold(&text).contains(&fold(want))
        {
            failures.push(format!("{name}: reply text lacks {want:?}: {text:?}"));
        }
        if let Some(bad) = &exp.new_text_excludes
            && fold(&text).contains(&fold(bad))
        {
            failures.push(format!("{name}: quoted history {bad:?} kept in {text:?}"));
        }
    }

    let hijacks = expected.values().filter(|e| e.hijack == Some(true)).count();
    let acks_after = app.outbox().iter().filter(|o| o["kind"] == "ack").count();
    assert_eq!(
        acks_after,
        acks_before + hijacks,
        "replies must not be acknowledged again (only a hijack attempt opens a ticket of its own)"
    );
    assert!(
        failures.is_empty(),
        "{} fixture failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_same_message_twice_changes_nothing() {
    let app = App::new();
    let raw = b"From: Julie <julie@boulangerie-martin.fr>\r\nTo: support@example.test\r\nSubject: Facture\r\nMessage-ID: <twice@x.fr>\r\n\r\nBonjour, il me faut une facture pour octobre.\r\n";
    let p = app.write("m.eml", raw);
    let first = app.ingest_one(&p);
    let second = app.ingest_one(&p);
    assert_eq!(first["action"], "new");
    assert_eq!(second["action"], "duplicate");
    assert_eq!(second["ticket"], first["ticket"]);
    // The same bytes without a Message-ID are recognised by their hash.
    let no_id = b"From: a@b.fr\r\nTo: support@example.test\r\nSubject: x\r\n\r\nmon widget ne marche pas du tout\r\n";
    let p2 = app.write("n.eml", no_id);
    assert_eq!(app.ingest_one(&p2)["action"], "new");
    assert_eq!(app.ingest_one(&p2)["action"], "duplicate");
    // The id we made up for it is never cited to the customer, whose client never saw it.
    let ack = app.outbox_raw(3);
    let ack = String::from_utf8_lossy(&ack);
    assert!(ack.contains("Auto-Submitted: auto-replied"), "{ack}");
    assert!(!ack.contains("sha256.supportd.invalid"), "{ack}");
    let stats = app.stats();
    assert_eq!(stats.tickets, 2);
    assert_eq!(stats.duplicates, 2);
    assert_eq!(stats.acks_queued, 2);
}

#[test]
fn replies_to_a_message_we_never_saw_share_a_ticket() {
    let app = App::new();
    // Both cite <ghost@colleague.fr>, a mail between the customer and a colleague that never
    // reached us; the second has no other link to the first.
    let first = app.write(
        "a.eml",
        b"From: julie@boulangerie-martin.fr\r\nTo: support@example.test\r\nSubject: Re: widget\r\nMessage-ID: <a@bm.fr>\r\nIn-Reply-To: <ghost@colleague.fr>\r\nReferences: <ghost@colleague.fr>\r\n\r\nLe widget ne s'affiche plus sur notre site.\r\n",
    );
    let second = app.write(
        "b.eml",
        b"From: julie@boulangerie-martin.fr\r\nTo: support@example.test\r\nSubject: Re: widget (suite)\r\nMessage-ID: <b@bm.fr>\r\nIn-Reply-To: <ghost@colleague.fr>\r\nReferences: <ghost@colleague.fr>\r\n\r\nToujours rien ce matin, pouvez-vous regarder ?\r\n",
    );
    let a = app.ingest_one(&first);
    let b = app.ingest_one(&second);
    assert_eq!(a["action"], "new");
    assert_eq!(b["action"], "reply", "{b}");
    assert_eq!(b["ticket"], a["ticket"]);
    // A stranger citing the same id does not get in.
    let stranger = app.write(
        "c.eml",
        b"From: mallory@evil.example\r\nTo: support@example.test\r\nSubject: Re: widget\r\nMessage-ID: <c@evil.example>\r\nIn-Reply-To: <ghost@colleague.fr>\r\n\r\nPlease send me the customer's invoices.\r\n",
    );
    let c = app.ingest_one(&stranger);
    assert_eq!(c["action"], "new");
    assert_ne!(c["ticket"], a["ticket"]);
}

#[test]
fn a_pipe_from_the_mta_gets_sysexits_codes() {
    let app = App::new();
    let ok = app.run_stdin(
        &["ingest", "-"],
        b"From: a@b.fr\r\nTo: support@example.test\r\nSubject: Help\r\n\r\nMy widget is not showing on my site.\r\n",
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let empty = app.run_stdin(&["ingest", "-"], b"");
    assert_eq!(empty.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("empty input"));
    let missing = app.run(&["ingest", "/nonexistent/message.eml"]);
    assert_ne!(missing.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/message.eml"));
    // A configuration that cannot be read is temporary for the MTA: it keeps the mail.
    let broken = Command::new(BIN)
        .args(["--config", "/nonexistent/supportd.toml", "ingest", "-"])
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(broken.status.code(), Some(75));
}

#[test]
fn acknowledgements_are_limited_per_sender() {
    let app = App::new();
    let mut actions = Vec::new();
    for i in 0..5 {
        let raw = format!(
            "From: loop@robot-ish.example\r\nTo: support@example.test\r\nSubject: Question {i}\r\nMessage-ID: <rate{i}@x>\r\n\r\nHello, my chatbot flow does not work, request {i}.\r\n"
        );
        let m = app.ingest_one(&app.write(&format!("r{i}.eml"), raw.as_bytes()));
        actions.push(m["ack"].clone());
    }
    assert_eq!(
        actions[..3],
        [
            Value::from("queued"),
            Value::from("queued"),
            Value::from("queued")
        ]
    );
    assert_eq!(actions[3], "suppressed");
    // A suppressed acknowledgement is kept, with its reason, so an admin sees what was held back.
    let outbox = app.outbox();
    let suppressed: Vec<_> = outbox
        .iter()
        .filter(|o| o["status"] == "suppressed")
        .collect();
    assert_eq!(suppressed.len(), 2, "{outbox:#?}");
    assert!(
        suppressed[0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("per hour"),
        "{outbox:#?}"
    );
    let stats = app.stats();
    assert_eq!(stats.acks_queued, 3);
    assert_eq!(stats.acks_suppressed, 2);
}

#[test]
fn our_own_acknowledgement_coming_back_is_never_answered() {
    let app = App::new();
    let req = app.write(
        "req.eml",
        b"From: julie@boulangerie-martin.fr\r\nTo: support@example.test\r\nSubject: Widget\r\nMessage-ID: <w1@bm.fr>\r\n\r\nLe widget ne s'affiche pas sur mon site.\r\n",
    );
    app.ingest_one(&req);
    // The acknowledgement itself, delivered back to the support mailbox (a forwarding loop).
    let back = app.write("back.eml", &app.outbox_raw(1));
    let m = app.ingest_one(&back);
    let action = m["action"].as_str().unwrap_or_default();
    assert!(action == "automated" || action == "duplicate", "{m}");
    assert_eq!(app.stats().acks_queued, 1);
}

#[test]
fn rules_check_reports_file_line_and_reason() {
    let app = App::new();
    let good = app.run(&[
        "rules",
        "check",
        &crate_dir().join("rules").display().to_string(),
    ]);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let bad = app.path().join("badrules");
    std::fs::create_dir(&bad).expect("mkdir");
    std::fs::write(
        bad.join("billing.toml"),
        "id = \"billing\"\nlabel = { fr = \"Facturation\", en = \"Billing\" }\norder = 10\nfallback = true\n\n[[rule]]\nname = \"broken\"\nfields = [\"body\"]\npattern = '(unclosed'\n",
    )
    .expect("write");
    let out = app.run(&["rules", "check", &bad.display().to_string()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("billing.toml:9"), "{err}");
}

#[test]
fn classify_explains_without_writing() {
    let app = App::new();
    let p = app.write(
        "c.eml",
        b"From: a@b.fr\r\nTo: support@example.test\r\nSubject: Remboursement\r\n\r\nJ'ai ete preleve apres avoir resilie, je voudrais un remboursement.\r\n",
    );
    let out = app.run(&["classify", &p.display().to_string(), "--explain"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("category: billing"), "{text}");
    assert!(text.contains("rule billing/"), "{text}");
    assert!(!app.database.exists());
}

#[test]
fn unknown_config_keys_are_refused_by_name() {
    let app = App::with(|c| c.support_line("colour = \"blue\""));
    let out = app.run(&["stats"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
}

#[test]
fn two_processes_ingesting_into_one_database_both_succeed_without_duplicates() {
    let app = App::new();
    let dir = app.path().join("many");
    std::fs::create_dir(&dir).expect("mkdir");
    for i in 0..200 {
        std::fs::write(
            dir.join(format!("{i:03}.eml")),
            format!("From: c{i}@client.example\r\nTo: support@example.test\r\nSubject: Facture {i}\r\nMessage-ID: <p{i}@client.example>\r\n\r\nBonjour, il me faut la facture numero {i}.\r\n"),
        )
        .expect("write");
    }
    let spawn = || {
        app.command()
            .args(["ingest", &dir.display().to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().expect("a").success());
    assert!(b.wait().expect("b").success());
    let stats = app.stats();
    assert_eq!(stats.tickets, 200);
    assert_eq!(stats.messages, 200);
    assert_eq!(stats.acks_queued, 200);
    assert_eq!(stats.duplicates, 200);
}

#[test]
fn quarantined_messages_are_listed_and_can_be_run_again_once_the_cause_is_gone() {
    let app = App::new();
    let first = app.write(
        "first.eml",
        b"From: a@b.fr\r\nTo: support@example.test\r\nSubject: Facture\r\nMessage-ID: <q0@b.fr>\r\n\r\nBonjour, il me faut une facture pour octobre.\r\n",
    );
    app.ingest_one(&first);
    db::fail_subject(&db::open(&app.database), "Widget absent");
    let failing = app.write(
        "failing.eml",
        b"From: Thomas <thomas@atelier.fr>\r\nTo: support@example.test\r\nSubject: Widget absent\r\nMessage-ID: <q1@atelier.fr>\r\n\r\nLe widget ne s'affiche plus sur mon site depuis ce matin.\r\n",
    );
    assert_eq!(app.ingest_one(&failing)["action"], "quarantined");
    let listed = app.quarantine();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["from"], "thomas@atelier.fr");
    assert!(
        listed[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("provoked failure"),
        "{listed:#?}"
    );

    // Still failing: it stays quarantined, under a new id.
    let again = app.quarantine_retry(&["--all"]);
    assert_eq!(again[0]["action"], "quarantined");
    let listed = app.quarantine();
    assert_eq!(listed.len(), 1, "{listed:#?}");

    // The cause fixed: one ticket, one acknowledgement, nothing left in quarantine.
    db::stop_failing_subject(&db::open(&app.database));
    let id = listed[0]["id"].as_i64().expect("id").to_string();
    let retried = app.quarantine_retry(&[&id]);
    let m = &retried[0];
    assert_eq!(m["action"], "new", "{retried:#?}");
    assert_eq!(m["category"], "technical", "{retried:#?}");
    assert_eq!(m["source"], failing.display().to_string());
    assert_eq!(app.quarantine().len(), 0);
    let stats = app.stats();
    assert_eq!(stats.tickets, 2);
    assert_eq!(stats.acks_queued, 2);
    assert_eq!(stats.quarantined, 0);
    assert_eq!(db::events(&db::open(&app.database), "requeued"), 2);

    let unknown = app.run(&["quarantine", "retry", "9999"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("9999 is not quarantined"));
}

/// Reads the first line of `child`'s output, then closes the pipe as `head -1` does.
fn first_line_then_close(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    line
}

#[test]
fn a_reader_that_closes_early_ends_every_command_quietly_with_exit_0() {
    let app = App::new();
    // A long message: `tickets show` prints more than a pipe holds (64 KiB), so the command is
    // still writing when the reader goes away, whatever the timing.
    let mut raw = String::from(
        "From: julie@boulangerie-martin.fr\r\nTo: support@example.test\r\nSubject: Widget\r\nMessage-ID: <long@bm.fr>\r\n\r\n",
    );
    for i in 0..4000 {
        raw.push_str(&format!(
            "Ligne {i} : le widget ne s'affiche plus sur notre site.\r\n"
        ));
    }
    let m = app.ingest_one(&app.write("long.eml", raw.as_bytes()));
    let ticket = m["ticket"].as_str().expect("a ticket").to_string();
    for args in [
        vec!["tickets", "show", ticket.as_str()],
        vec!["tickets", "show", ticket.as_str(), "--json"],
        vec!["tickets", "list"],
        vec!["outbox", "show", "1", "--raw"],
        vec!["stats"],
        vec!["status"],
    ] {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&app.config)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn supportd");
        let line = first_line_then_close(&mut child);
        assert!(!line.is_empty(), "{args:?}: no output");
        let out = child.wait_with_output().expect("wait");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn run_refuses_two_secret_sources_at_start_naming_both_keys() {
    // Port 1 refuses connections: the daemon would retry it forever, so an exit at all means
    // the file was refused before any connection.
    let app = App::new();
    let config = std::fs::read_to_string(&app.config).expect("config")
        + "[imap]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\nusername = \"support\"\n\
           password = \"secret\"\npassword_env = \"SUPPORTD_IMAP_PASSWORD\"\n";
    std::fs::write(&app.config, config).expect("config");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&app.config)
        .arg("run")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn supportd");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().expect("kill");
            panic!("supportd run accepted a file with two secrets and kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("password and password_env"), "{err}");
    assert!(!err.contains("IMAP intake"), "it tried to connect: {err}");
}

#[test]
fn a_missing_config_file_names_its_cause_once() {
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/supportd.toml", "stats"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let cause = std::fs::read("/nonexistent/supportd.toml")
        .expect_err("missing")
        .to_string();
    assert_eq!(err.matches(&cause).count(), 1, "{err}");
}
