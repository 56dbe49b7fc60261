//! Agents answer by e-mail, end to end on the real Dovecot + Postfix: the team notification
//! reaches the team's mailbox; an agent answers it as a mail client does (quoting it); the
//! customer's mailbox receives the answer from the support address, threaded on their own
//! message, without the quote; the customer's answer reaches the team; notes, status commands,
//! mistakes, unauthenticated agent mail and strangers behave as the issue says.
//!
//! Authentication: the local Postfix runs no DKIM/DMARC milter, so the agent's mail carries the
//! `Authentication-Results` our receiving server (`mx.example.test`) would have added; the
//! checks on it are the daemon's, unchanged.

use std::time::Duration;

use serde_json::Value;

use crate::e2e::{
    BILLING_SUBJECT, World, billing_mail, body_text, customer, e2e, header, message_id,
    message_id_of, parse, tag,
};
use crate::helpers::mailstack::Stack;

const OURS: &str = "Authentication-Results: mx.example.test; dkim=pass header.d=example.test; dmarc=pass header.from=example.test\r\n";

/// What an agent's mail client sends when answering `note` (a mail the agent received).
fn answer(agent: &str, to: &str, note: &[u8], text: &str, auth: &str) -> (String, Vec<u8>) {
    let id = message_id();
    let quoted: String = body_text(note)
        .lines()
        .map(|l| format!("> {l}\r\n"))
        .collect();
    let note_id = message_id_of(note);
    let raw = format!(
        "{auth}From: Alice Agent <{agent}>\r\nTo: <{to}>\r\nSubject: Re: {subject}\r\n\
         Date: {date}\r\nMessage-ID: <{id}>\r\nIn-Reply-To: <{note_id}>\r\n\
         References: <{note_id}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         {text}\r\n\r\nOn Mon, 30 Nov 2026 at 10:02, Support wrote:\r\n{quoted}",
        subject = crate::e2e::subject(note),
        date = chrono::Utc::now().to_rfc2822(),
    );
    (id, raw.into_bytes())
}

fn status(w: &World, ticket: &str) -> String {
    w.json(&["tickets", "show", ticket, "--json"])["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn an_agent_runs_a_ticket_from_a_mail_client_and_the_customer_sees_one_conversation() {
    e2e("agents", || async {
        let stack = Stack::shared();
        let agent = format!("alice-{}@example.test", tag());
        let mut w = World::with_config("agents", &stack, |c| {
            c.name("Support Chatim")
                .section(&format!(
                    "[agents]\naddresses = [\"{agent}\"]\nnames = {{ \"{agent}\" = \"Alice\" }}"
                ))
                .section("[guard]\nauthserv_id = \"mx.example.test\"")
        });
        w.start_ready().await;

        // A customer writes; the team is told, with the ticket's plus-address to answer to.
        let julie = customer("julie");
        let first = message_id();
        w.send(Some(&julie), &billing_mail(&julie, &w.support, &first))
            .await;
        stack.wait_inbox(&julie, 1, Duration::from_secs(15)).await;
        let team = stack.wait_inbox(&w.team, 1, Duration::from_secs(15)).await;
        let note = &team[0];
        let reply_to = header(note, "Reply-To");
        let plus = w.support.replace('@', "+CHT-1@");
        assert!(reply_to.contains(&plus), "Reply-To: {reply_to}");
        assert!(
            body_text(note).contains("répond au client"),
            "{}",
            body_text(note)
        );

        // The agent answers it, quoting it.
        let (_, raw) = answer(
            &agent,
            &plus,
            note,
            "Bonjour Julie,\n\nLe second prélèvement vous sera remboursé sous 5 jours.\n\nAlice",
            OURS,
        );
        w.send(Some(&agent), &raw).await;
        let inbox = stack.wait_inbox(&julie, 2, Duration::from_secs(15)).await;
        let relayed = &inbox[1];
        let from = parse(relayed)
            .from()
            .and_then(|a| a.first())
            .cloned()
            .expect("From");
        assert_eq!(from.address(), Some(w.support.as_str()));
        assert_eq!(from.name(), Some("Alice (Support Chatim)"));
        assert_eq!(header(relayed, "In-Reply-To"), format!("<{first}>"));
        assert_eq!(
            crate::e2e::subject(relayed),
            format!("[CHT-1] {BILLING_SUBJECT}")
        );
        let text = body_text(relayed);
        assert!(text.contains("remboursé sous 5 jours"), "{text}");
        assert!(!text.contains("Support wrote"), "quote relayed: {text}");
        assert!(!text.contains("> "), "quote relayed: {text}");
        let shown = w.json(&["tickets", "show", "CHT-1", "--json"]);
        let out: Vec<&Value> = shown["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| m["direction"] == "out" && m["action"] == "relayed")
            .collect();
        assert_eq!(out.len(), 1, "{shown:#}");
        assert_eq!(out[0]["from"], agent.as_str());

        // The customer answers the relayed mail: it threads back and reaches the team.
        let customer_answers = |text: &str| {
            crate::e2e::mail(
                &julie,
                "Julie Martin",
                &w.support,
                &format!("Re: [CHT-1] {BILLING_SUBJECT}"),
                &message_id(),
                &format!("In-Reply-To: <{}>\r\n", message_id_of(relayed)),
                text,
            )
        };
        w.send(Some(&julie), &customer_answers("Merci beaucoup !"))
            .await;
        stack.wait_inbox(&w.team, 2, Duration::from_secs(15)).await;
        assert_eq!(w.tickets(), 1);

        // #note reaches no customer; #pending, then the customer's answer sets it open.
        let team = stack.inbox(&w.team).await;
        let (_, raw) = answer(
            &agent,
            &plus,
            &team[1],
            "#note #pending\nRemboursement lancé côté Stripe.",
            OURS,
        );
        w.send(Some(&agent), &raw).await;
        crate::e2e::wait_until("the note stored", Duration::from_secs(15), || {
            status(&w, "CHT-1") == "pending"
        })
        .await;
        let reply = customer_answers("Je confirme avoir bien reçu le remboursement, merci.");
        w.send(Some(&julie), &reply).await;
        crate::e2e::wait_until("pending -> open", Duration::from_secs(15), || {
            status(&w, "CHT-1") == "open"
        })
        .await;

        // #close, then a customer reply reopens it.
        let (_, raw) = answer(&agent, &plus, &team[1], "#close", OURS);
        w.send(Some(&agent), &raw).await;
        crate::e2e::wait_until("closed", Duration::from_secs(15), || {
            status(&w, "CHT-1") == "closed"
        })
        .await;
        let reply =
            customer_answers("Finalement, une seconde question sur la facture de décembre.");
        w.send(Some(&julie), &reply).await;
        crate::e2e::wait_until("reopened", Duration::from_secs(15), || {
            status(&w, "CHT-1") == "open"
        })
        .await;

        // An unknown command is answered to the agent, nothing applied or relayed.
        let (_, raw) = answer(&agent, &plus, &team[1], "#clsoe\nC'est réglé.", OURS);
        w.send(Some(&agent), &raw).await;
        let notices = stack.wait_inbox(&agent, 1, Duration::from_secs(15)).await;
        let notice = body_text(&notices[0]);
        assert!(notice.contains("#clsoe"), "{notice}");
        assert!(notice.contains("#assign"), "{notice}");
        assert_eq!(status(&w, "CHT-1"), "open");

        // Agent mail our server did not vouch for (failing, or another server's header) is a
        // customer's mail: never relayed.
        for auth in [
            "Authentication-Results: mx.example.test; dkim=fail header.d=example.test; dmarc=fail header.from=example.test\r\n",
            "Authentication-Results: mx.forger.example; dmarc=pass header.from=example.test\r\n",
        ] {
            let (_, raw) = answer(&agent, &plus, &team[1], "Remboursement refusé.", auth);
            w.send(Some(&agent), &raw).await;
        }
        // A stranger answering the notification cannot reach the customer either.
        let mallory = customer("mallory");
        let (_, raw) = answer(&mallory, &plus, &team[1], "Votre compte est suspendu.", "");
        w.send(Some(&mallory), &raw).await;
        // Eleven inbound mails in all: the request, four from the agent that count, three
        // customer replies, two unvouched agent mails and the stranger's.
        crate::e2e::wait_until("every mail stored", Duration::from_secs(15), || {
            w.inbound() >= 11
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let inbox = stack.inbox(&julie).await;
        assert_eq!(
            inbox.len(),
            2,
            "only the ack and the one answer reach the customer"
        );
        let relays: Vec<Value> = w
            .app
            .outbox()
            .into_iter()
            .filter(|o| o["kind"] == "relay")
            .collect();
        assert_eq!(relays.len(), 1, "{relays:#?}");
        w.stop().await;
    });
}

/// The same from the command line: each prints what it queued, in JSON too.
#[test]
fn tickets_reply_note_status_and_assign_from_the_command_line() {
    use crate::helpers::app::App;
    let app = App::with(|c| {
        c.support_line("reopen_days = 0").section(
            "[agents]\naddresses = [\"alice@example.test\"]\ndomains = [\"team.example.test\"]\nnames = { \"bob@team.example.test\" = \"Bob\" }",
        )
    });
    let request = app.write(
        "request.eml",
        b"From: Julie <julie@customer.example>\r\nTo: support@example.test\r\nSubject: Facture en double\r\nMessage-ID: <j1@customer.example>\r\n\r\nBonjour, j'ai ete facturee deux fois pour mon abonnement ce mois-ci.\r\n",
    );
    assert_eq!(app.ingest_one(&request)["ticket"], "CHT-1");

    let run = |args: &[&str], stdin: &[u8]| -> Value {
        let out = app.run_stdin(args, stdin);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let replied = run(
        &[
            "tickets",
            "reply",
            "CHT-1",
            "--from",
            "alice@example.test",
            "--json",
        ],
        b"Bonjour Julie,\nle remboursement est en cours.\n",
    );
    assert_eq!(replied["outcome"]["action"], "relayed", "{replied:#}");
    let queued = replied["queued"].as_array().expect("queued");
    assert_eq!(queued.len(), 1, "{replied:#}");
    assert_eq!(queued[0]["kind"], "relay");
    assert_eq!(queued[0]["to"], "julie@customer.example");

    let noted = run(
        &[
            "tickets",
            "note",
            "CHT-1",
            "--from",
            "alice@example.test",
            "--json",
        ],
        b"Client important, suivre de pres.",
    );
    assert_eq!(noted["outcome"]["action"], "note");
    assert!(
        noted["queued"]
            .as_array()
            .expect("queued")
            .iter()
            .all(|o| o["kind"] != "relay"),
        "a note is never relayed: {noted:#}"
    );

    let assigned = run(&["tickets", "assign", "CHT-1", "Bob", "--json"], b"");
    assert_eq!(assigned["assignee"], "bob@team.example.test");
    let refused = app.run(&["tickets", "assign", "CHT-1", "mallory@evil.example"]);
    assert!(!refused.status.success());
    let refused = app.run_stdin(
        &[
            "tickets",
            "reply",
            "CHT-1",
            "--from",
            "julie@customer.example",
        ],
        b"hi",
    );
    assert!(
        !refused.status.success(),
        "a customer cannot answer as an agent"
    );

    assert_eq!(
        run(&["tickets", "pending", "CHT-1", "--json"], b"")["status"],
        "pending"
    );
    assert_eq!(app.ticket("CHT-1")["status"], "pending");
    assert_eq!(app.ticket("CHT-1")["assignee"], "bob@team.example.test");
    run(&["tickets", "close", "CHT-1", "--json"], b"");
    assert_eq!(app.ticket("CHT-1")["status"], "closed");

    // With reopen_days = 0, an answer to a closed ticket opens a new one that names it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let relay_id = queued[0]["message_id"].as_str().expect("id").to_owned();
    let answer = app.write(
        "answer.eml",
        format!("From: Julie <julie@customer.example>\r\nTo: support@example.test\r\nSubject: Re: [CHT-1] Facture en double\r\nMessage-ID: <j2@customer.example>\r\nIn-Reply-To: {relay_id}\r\n\r\nEt pour la facture de decembre, meme probleme.\r\n").as_bytes(),
    );
    let outcome = app.ingest_one(&answer);
    assert_eq!(outcome["ticket"], "CHT-2", "{outcome:#}");
    assert_eq!(app.ticket("CHT-2")["previous"], "CHT-1");
    assert_eq!(app.ticket("CHT-1")["status"], "closed");
}

/// `guard.acknowledge = "authenticated"`: a sender our server did not vouch for still gets a
/// ticket, and the team is told why no acknowledgement went out (no backscatter to a forged
/// address); a vouched sender is acknowledged.
#[test]
fn with_acknowledge_authenticated_only_vouched_senders_are_acknowledged() {
    use crate::helpers::app::App;
    let app = App::with(|c| {
        c.section("[guard]\nauthserv_id = \"mx.example.test\"\nacknowledge = \"authenticated\"")
    });
    let mail = |name: &str, results: &str, id: &str| {
        app.write(
            name,
            format!("{results}From: Ann <ann@customer.example>\r\nTo: support@example.test\r\nSubject: Widget vide\r\nMessage-ID: <{id}@customer.example>\r\n\r\nLe widget ne s'affiche plus sur notre site depuis hier soir.\r\n").as_bytes(),
        )
    };
    let forged = app.ingest_one(&mail("forged.eml", "", "f1"));
    assert_eq!(forged["action"], "new");
    let reason = forged["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("sender not authenticated"), "{forged:#}");
    let vouched = app.ingest_one(&mail(
        "vouched.eml",
        "Authentication-Results: mx.example.test; dkim=pass header.d=customer.example\r\n",
        "v1",
    ));
    assert_eq!(vouched["ack"], "queued", "{vouched:#}");
    let note = app
        .outbox()
        .into_iter()
        .find(|o| o["kind"] == "notification" && o["ticket"] == "CHT-1")
        .expect("the team is notified");
    let raw =
        String::from_utf8_lossy(&app.outbox_raw(note["id"].as_i64().expect("id"))).into_owned();
    let text = crate::e2e::body_text(raw.as_bytes());
    assert!(text.contains("sender not authenticated"), "{text}");
}
