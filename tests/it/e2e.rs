//! End-to-end tests: the real `supportd run` binary against the real Dovecot + Postfix of
//! `scripts/mailstack`.
//!
//! Customers write through Postfix (or their mail lands in the support INBOX by IMAP APPEND);
//! the daemon takes it in over IMAP, answers over SMTP, and the answers are read back from the
//! customers' own mailboxes. The daemon's state is read with its `--json` commands.
//!
//! Every test uses fresh addresses (`support-<test>-<tag>@example.test`, customers at
//! `boulangerie-martin.fr`, `team-<tag>@example.test`), so nothing here sees another test's
//! mail, nor the mail of the `imap_intake` tests running beside them.
//! The tests of this module take one process-wide lock and so run one at a time: they time
//! things (latency, shutdown), and one of them stops servers. That one stops the servers of a
//! second, private stack (its own directory and ports), never the shared one.
//!
//! A failing test prints the daemon's log (stderr of every run, in order). Other areas' end-to-end
//! tests (`sla`) use this module's world and mail helpers, and so its lock.

use std::fs::OpenOptions;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use mail_parser::MessageParser;
use serde_json::Value;

use crate::helpers::app::App;
use crate::helpers::config::TestConfig;
use crate::helpers::crate_dir;
use crate::helpers::log_filter;
use crate::helpers::mailstack::{PrivateStack, Stack, maildir_files};

// ------------------------------------------------------------------------------ one at a time

/// Taken for the whole of every test in this file.
static LOCK: Mutex<()> = Mutex::new(());

/// Runs one test body on its own runtime while holding [`LOCK`] (a failed test poisons it;
/// the next one goes on regardless).
pub(crate) fn e2e<F: Future<Output = ()>>(name: &str, body: impl FnOnce() -> F) {
    let _one_at_a_time = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    runtime.block_on(body());
    eprintln!("[e2e] {name}: {:.1} s", started.elapsed().as_secs_f64());
}

// -------------------------------------------------------------------------------- addresses

/// A tag no other test, run or process has used: lower case (Dovecot lower-cases user names).
pub(crate) fn tag() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}{:06x}{}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn customer(name: &str) -> String {
    format!("{name}-{}@boulangerie-martin.fr", tag())
}

// ---------------------------------------------------------------------------------- the world

/// One test's daemon: config, database and log in a temp dir, its own addresses.
pub(crate) struct World {
    pub(crate) stack: Stack,
    pub(crate) app: App,
    pub(crate) log: PathBuf,
    pub(crate) support: String,
    pub(crate) team: String,
    child: Option<Child>,
    /// "ready" lines in the log seen so far (one per run).
    readies: usize,
}

impl World {
    pub(crate) fn new(test: &str, stack: &Stack) -> World {
        Self::with_rules(test, stack, &crate_dir().join("rules"))
    }

    pub(crate) fn with_rules(test: &str, stack: &Stack, rules_dir: &Path) -> World {
        Self::with_config(test, stack, |c| c.rules(rules_dir))
    }

    /// A world whose configuration `more` changes further (e.g. an `[agents]` section).
    pub(crate) fn with_config(
        test: &str,
        stack: &Stack,
        more: impl FnOnce(TestConfig) -> TestConfig,
    ) -> World {
        let t = tag();
        let support = format!("support-{test}-{t}@example.test");
        let team = format!("team-{t}@example.test");
        let app = App::with(|c| {
            more(
                c.address(&support)
                    .team(&team)
                    .imap(stack, "poll_interval = \"2s\"")
                    .smtp(stack),
            )
        });
        World {
            stack: stack.clone(),
            log: app.path().join("supportd.log"),
            app,
            support,
            team,
            child: None,
            readies: 0,
        }
    }

    /// Starts `supportd run`, its stderr appended to the log. The daemon logs at `info`
    /// whatever `TEST_LOG` says: the tests read its log.
    pub(crate) fn start(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let child = self
            .app
            .command()
            .arg("run")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn supportd run");
        self.child = Some(child);
    }

    /// Starts the daemon and waits until it said "ready" (connected to the mailbox).
    pub(crate) async fn start_ready(&mut self) {
        self.start();
        self.wait_ready().await;
    }

    pub(crate) async fn wait_ready(&mut self) {
        let want = self.readies + 1;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = self
                .log_text()
                .lines()
                .filter(|l| l.trim_end().ends_with(": ready"))
                .count();
            if n >= want {
                self.readies = n;
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("supportd exited before it was ready: {status}");
            }
            assert!(Instant::now() < deadline, "supportd not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pid(&self) -> String {
        self.child
            .as_ref()
            .expect("daemon running")
            .id()
            .to_string()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGKILL (what `kill -9` sends), then reaps the process.
    fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// Waits for the daemon to exit; returns its status and how long it took.
    async fn wait_exit(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let asked = Instant::now();
        let child = self.child.as_mut().expect("daemon running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return (status, asked.elapsed());
            }
            assert!(
                asked.elapsed() < within,
                "supportd still running {within:?} after the signal"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM and wait (the graceful stop between phases of a test).
    pub(crate) async fn stop(&mut self) {
        self.signal("-TERM");
        let (status, _) = self.wait_exit(Duration::from_secs(10)).await;
        assert!(status.success(), "supportd exited with {status}");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a one-shot subcommand that prints JSON.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        self.app.json(args)
    }

    pub(crate) fn tickets(&self) -> i64 {
        self.app.stats().tickets
    }

    pub(crate) fn inbound(&self) -> i64 {
        self.app.stats().messages
    }

    /// Waits until `n` messages were taken in and nothing is left to send.
    pub(crate) async fn wait_settled(&self, inbound: i64, within: Duration) {
        wait_until(
            &format!("{inbound} messages stored and the outbox sent"),
            within,
            || {
                let stats = self.app.stats();
                stats.messages >= inbound && stats.unsent() == 0
            },
        )
        .await;
    }

    pub(crate) async fn send(&self, from: Option<&str>, raw: &[u8]) -> Instant {
        self.stack.send(from, &self.support, raw).await
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let failed = std::thread::panicking();
        if failed || log_filter().is_some() {
            eprintln!(
                "--- supportd log ({}) ---\n{}--- end of log ---",
                self.log.display(),
                self.log_text(),
            );
        }
        // Config, database and log stay for a post-mortem after a failure, or with E2E_KEEP=1.
        if failed || std::env::var_os("E2E_KEEP").is_some() {
            eprintln!("[e2e] files kept in {}", self.app.keep().display());
        }
    }
}

/// Checks `ok` every 50 ms (it may run the binary: a tighter loop would take a core) until it
/// holds, or fails after `within`.
pub(crate) async fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------------------------------- mail

static MESSAGE_N: AtomicU32 = AtomicU32::new(0);

/// A fresh Message-ID (without brackets).
pub(crate) fn message_id() -> String {
    format!(
        "e2e-{}-{}@boulangerie-martin.fr",
        tag(),
        MESSAGE_N.fetch_add(1, Ordering::Relaxed)
    )
}

/// RFC 2047 for non-ASCII header text.
fn encoded(text: &str) -> String {
    if text.is_ascii() {
        text.to_string()
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(text)
        )
    }
}

/// A plain-text mail as a person's client writes it; `extra` are further header lines
/// (CRLF-terminated), `body` uses `\n` line ends.
pub(crate) fn mail(
    from: &str,
    name: &str,
    to: &str,
    subject: &str,
    id: &str,
    extra: &str,
    body: &str,
) -> Vec<u8> {
    let body = body.replace("\r\n", "\n").replace('\n', "\r\n");
    format!(
        "From: {name} <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
         Date: {date}\r\nMessage-ID: <{id}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\
         {extra}\r\n{body}",
        name = encoded(name),
        subject = encoded(subject),
        date = chrono::Utc::now().to_rfc2822(),
    )
    .into_bytes()
}

pub(crate) const BILLING_SUBJECT: &str = "Prélèvement après résiliation";

pub(crate) fn billing_mail(from: &str, to: &str, id: &str) -> Vec<u8> {
    mail(
        from,
        "Julie Martin",
        to,
        BILLING_SUBJECT,
        id,
        "",
        "Bonjour,\n\n\
         J'ai résilié mon abonnement le 2 novembre, mais vous m'avez encore prélevé 29 € \
         le 5 novembre.\nPourriez-vous me rembourser ce prélèvement et m'envoyer la facture \
         rectifiée ?\n\nMerci d'avance,\nJulie Martin\nBoulangerie Martin\n",
    )
}

pub(crate) fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
    MessageParser::default()
        .parse(raw)
        .expect("a parsable message")
}

pub(crate) fn header(raw: &[u8], name: &str) -> String {
    parse(raw)
        .header_raw(name)
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

pub(crate) fn subject(raw: &[u8]) -> String {
    parse(raw).subject().unwrap_or_default().to_string()
}

pub(crate) fn body_text(raw: &[u8]) -> String {
    parse(raw)
        .body_text(0)
        .map(|t| t.into_owned())
        .unwrap_or_default()
}

pub(crate) fn message_id_of(raw: &[u8]) -> String {
    parse(raw).message_id().unwrap_or_default().to_string()
}

pub(crate) fn ids(value: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    value
        .as_text_list()
        .unwrap_or_default()
        .iter()
        .map(|id| id.to_string())
        .collect()
}

pub(crate) fn acks_in(outbox: &[Value]) -> Vec<&Value> {
    outbox.iter().filter(|o| o["kind"] == "ack").collect()
}

// ------------------------------------------------------------------------------------ tests

#[test]
fn a_customer_mail_gets_a_ticket_and_an_acknowledgement_in_seconds() {
    e2e("ack", || async {
        let stack = Stack::shared();
        let mut w = World::new("ack", &stack);
        w.start_ready().await;

        let julie = customer("julie");
        let id = message_id();
        let accepted = w
            .send(Some(&julie), &billing_mail(&julie, &w.support, &id))
            .await;

        wait_until("a ticket", Duration::from_secs(10), || w.tickets() >= 1).await;
        let tickets = w.json(&["tickets", "list", "--json"]);
        let tickets = tickets.as_array().expect("ticket list");
        assert_eq!(tickets.len(), 1, "{tickets:#?}");
        assert_eq!(tickets[0]["id"], "CHT-1");
        assert_eq!(tickets[0]["customer"], julie.as_str());
        assert_eq!(tickets[0]["category"], "billing");

        let acks = stack.wait_inbox(&julie, 1, Duration::from_secs(10)).await;
        let latency = accepted.elapsed();
        eprintln!("[e2e] ack latency, SMTP accept to the ack in the customer's INBOX: {latency:?}");
        assert_eq!(acks.len(), 1);
        let ack = &acks[0];
        let parsed = parse(ack);
        assert_eq!(ids(parsed.in_reply_to()), vec![id.clone()], "In-Reply-To");
        assert!(ids(parsed.references()).contains(&id), "References");
        assert_eq!(header(ack, "Auto-Submitted"), "auto-replied");
        let subj = subject(ack);
        assert!(subj.contains("[CHT-1]"), "{subj}");
        assert!(subj.contains(BILLING_SUBJECT), "{subj}");
        let body = body_text(ack);
        assert!(body.contains("sous 24 heures"), "{body}");
        assert!(body.contains("CHT-1"), "{body}");
        assert!(latency < Duration::from_secs(10), "ack took {latency:?}");

        let notes = stack.wait_inbox(&w.team, 1, Duration::from_secs(10)).await;
        assert_eq!(notes.len(), 1);
        let note = parse(&notes[0]);
        let note_subject = note.subject().unwrap_or_default();
        assert!(note_subject.contains("[CHT-1]"), "{note_subject}");
        let original = note
            .attachments()
            .find_map(|a| a.message())
            .expect("the original attached as message/rfc822");
        assert_eq!(original.message_id(), Some(id.as_str()));
        assert_eq!(original.subject(), Some(BILLING_SUBJECT));

        w.stop().await;
    });
}

#[test]
fn a_reply_from_the_customer_threads_and_gets_no_second_ack() {
    e2e("reply", || async {
        let stack = Stack::shared();
        let mut w = World::new("reply", &stack);
        w.start_ready().await;

        let julie = customer("julie");
        let first = message_id();
        w.send(Some(&julie), &billing_mail(&julie, &w.support, &first))
            .await;
        let acks = stack.wait_inbox(&julie, 1, Duration::from_secs(10)).await;
        let ack = &acks[0];
        let ack_id = message_id_of(ack);
        let mut refs = ids(parse(ack).references());
        refs.push(ack_id.clone());
        let references: Vec<String> = refs.iter().map(|r| format!("<{r}>")).collect();

        // What a mail client sends: threading headers, "Re:", the ack quoted under an
        // attribution line.
        let quoted: String = body_text(ack).lines().map(|l| format!("> {l}\n")).collect();
        let body = format!(
            "Bonjour,\n\nVoici le numéro de la facture en question : F-2026-1187.\n\
             Le prélèvement apparaît sur mon relevé du 5 novembre.\n\nJulie\n\n\
             Le mar. 24 nov. 2026 à 10:02, Support Chatim <{support}> a écrit :\n{quoted}",
            support = w.support
        );
        let reply_id = message_id();
        let reply = mail(
            &julie,
            "Julie Martin",
            &w.support,
            &format!("Re: [CHT-1] {BILLING_SUBJECT}"),
            &reply_id,
            &format!(
                "In-Reply-To: <{ack_id}>\r\nReferences: {}\r\n",
                references.join(" ")
            ),
            &body,
        );
        w.send(Some(&julie), &reply).await;
        w.wait_settled(2, Duration::from_secs(10)).await;

        let ticket = w.json(&["tickets", "show", "CHT-1", "--json"]);
        let inbound: Vec<&Value> = ticket["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| m["direction"] == "in")
            .collect();
        assert_eq!(inbound.len(), 2, "{ticket:#}");
        assert_eq!(inbound[1]["message_id"], format!("<{reply_id}>"));
        assert_eq!(inbound[1]["action"], "reply");
        let text = inbound[1]["text"].as_str().expect("text");
        assert!(text.contains("F-2026-1187"), "{text}");
        assert!(!text.contains("a écrit"), "quote kept: {text}");
        assert!(!text.contains("Nous avons bien reçu"), "quote kept: {text}");
        assert_eq!(w.tickets(), 1);

        // A few seconds for a second acknowledgement to show up, if one were sent.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(stack.inbox(&julie).await.len(), 1, "a second ack arrived");
        let outbox = w.app.outbox();
        assert_eq!(acks_in(&outbox).len(), 1, "{outbox:#?}");
        w.stop().await;
    });
}

#[test]
fn auto_replies_and_bounces_are_stored_and_never_answered() {
    e2e("automated", || async {
        let stack = Stack::shared();
        let mut w = World::new("automated", &stack);
        w.start_ready().await;

        // An out-of-office from a customer.
        let julie = customer("julie");
        let ooo = mail(
            &julie,
            "Julie Martin",
            &w.support,
            "Absente du bureau : Re: votre message",
            &message_id(),
            "Auto-Submitted: auto-replied\r\nX-Autoreply: yes\r\n",
            "Bonjour,\n\nJe suis absente jusqu'au 2 décembre et n'aurai qu'un accès limité \
             à mes e-mails.\nPour toute urgence, appelez la boutique.\n\nJulie Martin\n",
        );
        w.send(Some(&julie), &ooo).await;

        // A bounce: multipart/report from MAILER-DAEMON, sent with the null reverse-path.
        let t = tag();
        let daemon = format!("mailer-daemon@mx-{t}.example.test");
        let lost = format!("rachel-{t}@lumen-yoga.ca");
        let boundary = format!("bounce-{t}");
        let bounce = format!(
            "From: MAILER-DAEMON@mx-{t}.example.test (Mail Delivery System)\r\n\
             To: {support}\r\nSubject: Undelivered Mail Returned to Sender\r\n\
             Date: {date}\r\nMessage-ID: <bounce-{t}@mx-{t}.example.test>\r\n\
             Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"{boundary}\"\r\n\r\n\
             This is a MIME-encapsulated message.\r\n\r\n\
             --{boundary}\r\nContent-Description: Notification\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\r\n\
             I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients.\r\n\r\n\
             <{lost}>: host mx.lumen-yoga.ca said: 550 5.1.1 User unknown\r\n\r\n\
             --{boundary}\r\nContent-Description: Delivery report\r\n\
             Content-Type: message/delivery-status\r\n\r\n\
             Reporting-MTA: dns; mx-{t}.example.test\r\n\r\n\
             Final-Recipient: rfc822; {lost}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n\
             --{boundary}\r\nContent-Description: Undelivered Message Headers\r\n\
             Content-Type: text/rfc822-headers\r\n\r\n\
             From: Support Chatim <{support}>\r\nTo: <{lost}>\r\n\
             Subject: [CHT-7] Votre demande\r\nMessage-ID: <unknown-{t}@example.test>\r\n\r\n\
             --{boundary}--\r\n",
            support = w.support,
            date = chrono::Utc::now().to_rfc2822(),
        );
        w.send(None, bounce.as_bytes()).await;

        // Two real ones from the fixtures, put in as they are.
        for fixture in [
            "33-auto-postfix-bounce.eml",
            "37-auto-outlook-out-of-office.eml",
        ] {
            let raw = std::fs::read(crate_dir().join("fixtures/mail").join(fixture))
                .expect("read fixture");
            let text = String::from_utf8_lossy(&raw).replace("\r\n", "\n");
            stack
                .append(
                    &w.support,
                    "INBOX",
                    text.replace('\n', "\r\n").as_bytes(),
                    None,
                )
                .await;
        }

        wait_until("4 messages stored", Duration::from_secs(15), || {
            w.inbound() >= 4
        })
        .await;
        let stats = w.app.stats();
        assert_eq!(stats.messages, 4, "{stats:#?}");
        assert!(stats.automated >= 4, "{stats:#?}");
        assert_eq!(stats.quarantined, 0, "{stats:#?}");
        assert_eq!(stats.acks_queued, 0, "{stats:#?}");
        assert_eq!(stats.acks_sent, 0, "{stats:#?}");
        let outbox = w.app.outbox();
        assert!(acks_in(&outbox).is_empty(), "{outbox:#?}");

        // Nothing may reach the senders: wait as long as an ack takes, and more.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(acks_in(&w.app.outbox()).is_empty());
        assert_eq!(stack.status_messages(&julie).await, 0, "mail to {julie}");
        assert_eq!(stack.status_messages(&daemon).await, 0, "mail to {daemon}");
        assert_eq!(stack.status_messages(&lost).await, 0, "mail to {lost}");
        w.stop().await;
    });
}

#[test]
fn kill_9_in_a_backlog_loses_and_doubles_nothing() {
    const N: usize = 500;
    e2e("kill9", || async {
        let stack = Stack::shared();
        let mut w = World::new("kill9", &stack);
        let t = tag();
        let customers: Vec<String> = (0..N)
            .map(|i| format!("client{i:03}-{t}@boulangerie-martin.fr"))
            .collect();

        // The backlog, on one SMTP connection, before the daemon starts.
        let mut smtp = stack.smtp().await;
        let sending = Instant::now();
        for (i, c) in customers.iter().enumerate() {
            let raw = mail(
                c,
                &format!("Client {i}"),
                &w.support,
                &format!("Facture {i} en double"),
                &message_id(),
                "",
                &format!(
                    "Bonjour,\n\nMa facture n°{i} m'a été prélevée deux fois ce mois-ci. \
                     Pouvez-vous me rembourser le second prélèvement ?\n\nMerci,\nClient {i}\n"
                ),
            );
            smtp.send(Some(c), &w.support, &raw).await;
        }
        eprintln!(
            "[e2e] {N} messages accepted by Postfix in {:?}",
            sending.elapsed()
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n = stack.status_messages(&w.support).await as usize;
            if n >= N {
                assert_eq!(n, N);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {n} of {N} delivered in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "[e2e] {N} messages in the support INBOX after {:?}",
            sending.elapsed()
        );

        // Kill it in the middle: the first batch of tickets committed (the intake commits up to
        // 200 messages per transaction), the sender started on their acknowledgements.
        w.start();
        let started = Instant::now();
        wait_until(
            "100 tickets and acknowledgements going out",
            Duration::from_secs(60),
            || {
                w.tickets() >= 100 && {
                    let counts = w.app.outbox_counts();
                    counts.get("sending").or(counts.get("sent")).is_some()
                }
            },
        )
        .await;
        w.kill9();
        let killed_after = started.elapsed();
        let tickets_at_kill = w.tickets();
        let sent_at_kill = w.app.outbox_counts().get("sent").copied().unwrap_or(0);
        let in_flight: Vec<(String, String)> = w
            .app
            .outbox_with_status("sending")
            .iter()
            .map(|o| {
                let text = |key: &str| o[key].as_str().unwrap_or_default().to_string();
                (text("kind"), text("to"))
            })
            .collect();
        eprintln!(
            "[e2e] kill -9 after {killed_after:?}: {tickets_at_kill} tickets, {sent_at_kill} \
             outbox rows sent, {} row(s) in `sending`: {in_flight:?}",
            in_flight.len()
        );
        assert!(
            in_flight.len() <= 1,
            "one message at a time is in flight: {in_flight:?}"
        );

        w.start();
        w.wait_settled(N as i64, Duration::from_secs(120)).await;
        eprintln!(
            "[e2e] backlog done {:?} after the first start",
            started.elapsed()
        );
        assert_eq!(w.tickets(), N as i64);
        assert_eq!(w.inbound(), N as i64, "a message stored twice");
        let mut ticket_customers: Vec<String> = w
            .app
            .tickets()
            .iter()
            .map(|t| t["customer"].as_str().unwrap_or_default().to_string())
            .collect();
        ticket_customers.sort();
        ticket_customers.dedup();
        assert_eq!(ticket_customers.len(), N);
        let outbox = w.app.outbox();
        let sent = |kind: &str| {
            outbox
                .iter()
                .filter(|o| o["kind"] == kind && o["status"] == "sent")
                .count()
        };
        assert_eq!(sent("ack"), N);
        assert_eq!(sent("notification"), N);
        assert_eq!(outbox.iter().filter(|o| o["status"] != "sent").count(), 0);

        // Every customer's mailbox: exactly one ack (1 or 2 for the one caught mid-send).
        let may_double: Vec<&str> = in_flight
            .iter()
            .filter(|(kind, _)| kind == "ack")
            .map(|(_, to)| to.as_str())
            .collect();
        let team_extra = in_flight
            .iter()
            .filter(|(k, _)| k == "notification")
            .count();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let missing = customers
                .iter()
                .filter(|c| maildir_files(&stack.maildir(c)).is_empty())
                .count();
            let team = maildir_files(&stack.maildir(&w.team)).len();
            if missing == 0 && team >= N {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{missing} customers without an ack, team has {team} of {N}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Late duplicates would be delivered by now (Postfix delivers within milliseconds).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut doubled = Vec::new();
        for c in &customers {
            let files = maildir_files(&stack.maildir(c));
            let refs: Vec<String> = files
                .iter()
                .map(|f| {
                    let raw = std::fs::read(f).expect("read mail");
                    assert_eq!(header(&raw, "Auto-Submitted"), "auto-replied");
                    subject(&raw)
                })
                .collect();
            match files.len() {
                1 => {}
                2 if may_double.contains(&c.as_str()) => {
                    assert_eq!(refs[0], refs[1], "two different acks for {c}");
                    doubled.push(c.clone());
                }
                n => panic!("{c} has {n} acknowledgements: {refs:?}"),
            }
        }
        let team_files = maildir_files(&stack.maildir(&w.team));
        assert!(
            team_files.len() >= N && team_files.len() <= N + team_extra,
            "team has {} notifications (expected {N}, +{team_extra} at most)",
            team_files.len()
        );
        let mut refs: Vec<String> = team_files
            .iter()
            .map(|f| {
                let s = subject(&std::fs::read(f).expect("read mail"));
                s.split(']').next().unwrap_or_default().to_string()
            })
            .collect();
        refs.sort();
        refs.dedup();
        assert_eq!(
            refs.len(),
            N,
            "notifications for {} distinct tickets",
            refs.len()
        );
        eprintln!(
            "[e2e] after restart: {N} tickets, {N} customers with one ack each ({} doubled by \
             the kill), {} team notifications",
            doubled.len(),
            team_files.len()
        );
        w.stop().await;
    });
}

#[test]
fn servers_going_down_and_up_lose_nothing() {
    e2e("outage", || async {
        let private = PrivateStack::start();
        let stack = private.stack.clone();
        let mut w = World::new("outage", &stack);
        w.start_ready().await;

        // Dovecot down: Postfix queues the customers' mail; the intake loses its connection.
        stack.script(&["stop-dovecot"]);
        let down = Instant::now();
        let first: Vec<String> = (0..3).map(|i| customer(&format!("dove{i}"))).collect();
        for c in &first {
            let raw = billing_mail(c, &w.support, &message_id());
            w.send(Some(c), &raw).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(w.tickets(), 0);
        stack.script(&["start-dovecot"]);
        let up = Instant::now();
        eprintln!("[e2e] Dovecot was down for {:?}", up - down);
        wait_until(
            "3 tickets after Dovecot came back",
            Duration::from_secs(70),
            || w.tickets() >= 3,
        )
        .await;
        eprintln!("[e2e] 3 tickets {:?} after Dovecot came back", up.elapsed());
        for c in &first {
            stack.wait_inbox(c, 1, Duration::from_secs(15)).await;
        }
        assert!(
            w.log_text().contains("IMAP intake failed"),
            "the outage was not logged"
        );

        // Postfix down: mail put straight into the INBOX is ticketed, the acks wait.
        stack.script(&["stop-postfix"]);
        let down = Instant::now();
        let second: Vec<String> = (0..3).map(|i| customer(&format!("post{i}"))).collect();
        for c in &second {
            stack
                .append(
                    &w.support,
                    "INBOX",
                    &billing_mail(c, &w.support, &message_id()),
                    None,
                )
                .await;
        }
        wait_until("6 tickets", Duration::from_secs(15), || w.tickets() >= 6).await;
        wait_until("a failed send attempt", Duration::from_secs(15), || {
            w.app.outbox().iter().any(|o| {
                o["attempts"].as_i64() >= Some(1)
                    && o["status"] == "queued"
                    && o["last_error"].is_string()
            })
        })
        .await;
        let outbox = w.app.outbox();
        let waiting: Vec<&Value> = acks_in(&outbox)
            .into_iter()
            .filter(|o| second.iter().any(|c| o["to"] == c.as_str()))
            .collect();
        assert_eq!(waiting.len(), 3, "{outbox:#?}");
        for o in &waiting {
            assert_eq!(o["status"], "queued", "{o:#}");
        }
        // The oldest waiting row is the one being retried; it carries the error.
        let oldest = outbox
            .iter()
            .find(|o| o["status"] == "queued")
            .expect("a queued row");
        assert!(oldest["attempts"].as_i64() >= Some(1), "{oldest:#}");
        assert!(oldest["last_error"].is_string(), "{oldest:#}");
        let status = w.json(&["status", "--json"]);
        assert!(status["outbox"]["queued"].as_i64() >= Some(6), "{status:#}");

        stack.script(&["start-postfix"]);
        let up = Instant::now();
        eprintln!("[e2e] Postfix was down for {:?}", up - down);
        for c in &second {
            let acks = stack.wait_inbox(c, 1, Duration::from_secs(70)).await;
            assert_eq!(acks.len(), 1);
        }
        eprintln!(
            "[e2e] acks delivered {:?} after Postfix came back",
            up.elapsed()
        );
        w.wait_settled(6, Duration::from_secs(30)).await;
        assert_eq!(
            stack
                .wait_inbox(&w.team, 6, Duration::from_secs(15))
                .await
                .len(),
            6
        );
        for c in first.iter().chain(&second) {
            assert_eq!(stack.inbox(c).await.len(), 1, "{c}");
        }
        w.stop().await;
        drop(private);
    });
}

#[test]
fn mail_already_read_by_a_person_is_still_ingested() {
    e2e("seen", || async {
        let stack = Stack::shared();
        let mut w = World::new("seen", &stack);
        let before = customer("avant");
        stack
            .append(
                &w.support,
                "INBOX",
                &billing_mail(&before, &w.support, &message_id()),
                Some("(\\Seen)"),
            )
            .await;
        w.start_ready().await;
        wait_until("the read mail as a ticket", Duration::from_secs(10), || {
            w.tickets() >= 1
        })
        .await;

        let during = customer("pendant");
        stack
            .append(
                &w.support,
                "INBOX",
                &billing_mail(&during, &w.support, &message_id()),
                Some("(\\Seen)"),
            )
            .await;
        w.wait_settled(2, Duration::from_secs(10)).await;
        let tickets = w.json(&["tickets", "list", "--json"]);
        let customers: Vec<&str> = tickets
            .as_array()
            .expect("tickets")
            .iter()
            .map(|t| t["customer"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(customers, vec![before.as_str(), during.as_str()]);
        for c in [&before, &during] {
            stack.wait_inbox(c, 1, Duration::from_secs(10)).await;
        }
        w.stop().await;
    });
}

#[test]
fn sighup_with_broken_rules_keeps_the_old_rules_and_a_fixed_file_is_picked_up() {
    e2e("sighup", || async {
        let stack = Stack::shared();
        let rules = tempfile::tempdir().expect("rules dir");
        for entry in std::fs::read_dir(crate_dir().join("rules")).expect("rules") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, rules.path().join(path.file_name().expect("name")))
                .expect("copy rules");
        }
        let mut w = World::with_rules("sighup", &stack, rules.path());
        w.start_ready().await;
        let billing = rules.path().join("billing.toml");
        let good = std::fs::read_to_string(&billing).expect("billing.toml");

        let category_of = |w: &World, customer: &str| -> Option<String> {
            w.app
                .tickets()
                .iter()
                .find(|t| t["customer"] == customer)
                .and_then(|t| t["category"].as_str().map(str::to_string))
        };
        let zorglub = |from: &str, to: &str| {
            mail(
                from,
                "Marc Dupuis",
                to,
                "Question zorglub",
                &message_id(),
                "",
                "Bonjour,\n\nJe voudrais comprendre le zorglub de mon compte.\n\nMarc\n",
            )
        };

        // A broken file: refused, with file:line and the reason; the old rules stay.
        let broken = good.replacen("pattern = '\\b(factur", "pattern = '(\\b(factur", 1);
        assert_ne!(broken, good, "the invoice rule moved: update this test");
        let line = good
            .lines()
            .position(|l| l.starts_with("pattern = '\\b(factur"))
            .expect("invoice rule")
            + 1;
        std::fs::write(&billing, &broken).expect("write broken rules");
        w.signal("-HUP");
        wait_until(
            "the refused reload in the log",
            Duration::from_secs(10),
            || w.log_text().contains("keeping the running rules"),
        )
        .await;
        let log = w.log_text();
        let refused = log
            .lines()
            .find(|l| l.contains("keeping the running rules"))
            .expect("log line");
        assert!(
            refused.contains(&format!("billing.toml:{line}")) && refused.contains("regex"),
            "{refused}"
        );

        let anne = customer("anne");
        w.send(Some(&anne), &billing_mail(&anne, &w.support, &message_id()))
            .await;
        let marc = customer("marc");
        w.send(Some(&marc), &zorglub(&marc, &w.support)).await;
        w.wait_settled(2, Duration::from_secs(10)).await;
        assert_eq!(category_of(&w, &anne).as_deref(), Some("billing"));
        assert_ne!(category_of(&w, &marc).as_deref(), Some("billing"));

        // A valid file with one more rule: taken at the next SIGHUP.
        let fixed = format!(
            "{good}\n[[rule]]\nname = \"zorglub\"\npattern = '\\bzorglub\\b'\nweight = 5\n"
        );
        std::fs::write(&billing, fixed).expect("write fixed rules");
        w.signal("-HUP");
        wait_until("the reload in the log", Duration::from_secs(10), || {
            w.log_text()
                .contains("SIGHUP: rules and templates reloaded")
        })
        .await;
        let paul = customer("paul");
        w.send(Some(&paul), &zorglub(&paul, &w.support)).await;
        w.wait_settled(3, Duration::from_secs(10)).await;
        assert_eq!(category_of(&w, &paul).as_deref(), Some("billing"));
        w.stop().await;
    });
}

#[test]
fn sigterm_stops_within_ten_seconds_with_exit_0() {
    const BACKLOG: usize = 40;
    e2e("sigterm", || async {
        let stack = Stack::shared();
        let mut w = World::new("sigterm", &stack);

        // Idle.
        w.start_ready().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        w.signal("-TERM");
        let (status, took) = w.wait_exit(Duration::from_secs(10)).await;
        eprintln!("[e2e] SIGTERM while idle: {status} after {took:?}");
        assert!(status.success(), "{status}");

        // Draining a backlog.
        let customers: Vec<String> = (0..BACKLOG).map(|i| customer(&format!("c{i}"))).collect();
        let mut smtp = stack.smtp().await;
        for c in &customers {
            smtp.send(
                Some(c),
                &w.support,
                &billing_mail(c, &w.support, &message_id()),
            )
            .await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while (stack.status_messages(&w.support).await as usize) < BACKLOG {
            assert!(Instant::now() < deadline, "backlog not delivered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        w.start();
        wait_until("acks going out", Duration::from_secs(30), || {
            w.app.outbox_counts().get("sent").is_some_and(|&n| n >= 3)
        })
        .await;
        w.signal("-TERM");
        let (status, took) = w.wait_exit(Duration::from_secs(10)).await;
        let counts = w.app.outbox_counts();
        let sent = counts.get("sent").copied().unwrap_or(0);
        eprintln!(
            "[e2e] SIGTERM while draining: {status} after {took:?} ({} tickets, {sent} outbox rows \
             sent of {})",
            w.tickets(),
            counts.values().sum::<i64>()
        );
        assert!(status.success(), "{status}");
        assert_eq!(
            counts.get("sending").copied().unwrap_or(0),
            0,
            "a graceful stop leaves nothing half-sent"
        );

        // Nothing lost: after a restart every customer has exactly one ack.
        w.start_ready().await;
        w.wait_settled(BACKLOG as i64, Duration::from_secs(60))
            .await;
        assert_eq!(w.tickets(), BACKLOG as i64);
        for c in &customers {
            stack.wait_inbox(c, 1, Duration::from_secs(15)).await;
        }
        stack
            .wait_inbox(&w.team, BACKLOG, Duration::from_secs(15))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        for c in &customers {
            assert_eq!(maildir_files(&stack.maildir(c)).len(), 1, "{c}");
        }
        assert_eq!(maildir_files(&stack.maildir(&w.team)).len(), BACKLOG);
        w.stop().await;
    });
}

#[test]
fn status_reports_the_watermark_and_outbox() {
    e2e("status", || async {
        let stack = Stack::shared();
        let mut w = World::new("status", &stack);
        w.start_ready().await;
        let before = supportd::store::now();
        for name in ["lea", "tom"] {
            let c = customer(name);
            w.send(Some(&c), &billing_mail(&c, &w.support, &message_id()))
                .await;
        }
        w.wait_settled(2, Duration::from_secs(10)).await;

        let status = w.json(&["status", "--json"]);
        let mailboxes = status["mailboxes"].as_array().expect("mailboxes");
        assert_eq!(mailboxes.len(), 1, "{status:#}");
        let mailbox = &mailboxes[0];
        assert_eq!(mailbox["name"], format!("{}/INBOX", w.support));
        assert_eq!(mailbox["last_uid"], 2, "{status:#}");
        assert!(
            mailbox["uidvalidity"].as_u64().is_some_and(|v| v > 0),
            "{status:#}"
        );
        let fetched = mailbox["last_fetch_at"].as_str().expect("last_fetch_at");
        let fetched = chrono::DateTime::parse_from_rfc3339(fetched).expect("RFC 3339");
        assert!(fetched.timestamp() >= before - 1, "{status:#}");
        assert!(mailbox["last_error"].is_null(), "{status:#}");
        assert_eq!(mailbox["auth_failing"], false);
        assert_eq!(status["outbox"]["sent"], 4, "{status:#}");
        assert!(status["outbox"].get("queued").is_none(), "{status:#}");
        assert_eq!(status["quarantined"], 0);

        // Also while the daemon is stopped: the state is in the database.
        w.stop().await;
        let again = w.json(&["status", "--json"]);
        assert_eq!(again["mailboxes"][0]["last_uid"], 2);
        assert_eq!(
            again["mailboxes"][0]["name"],
            format!("{}/INBOX", w.support)
        );
    });
}
