//! IMAP intake against the real local Dovecot + Postfix of `scripts/mailstack`.
//!
//! Every test uses its own support address (the stack delivers any address to its own mailbox),
//! its own SQLite file, and puts mail in over SMTP (through Postfix and LMTP, as in production) or
//! IMAP APPEND, so the tests run in parallel without seeing each other's mail.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use supportd::config::ImapConfig;
use supportd::mailbox::imap::{self, ImapError, Intake};
use supportd::pipeline::Pipeline;
use supportd::store::{self, Store};

use crate::helpers::config::TestConfig;
use crate::helpers::db;
use crate::helpers::init_logs;
use crate::helpers::mailstack::Stack;

/// A fresh address: a mailbox no other test (or earlier run) has touched.
fn unique_address(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "support-{test}-{}-{nanos}-{}@example.test",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test's world: a support address, a database, a pipeline.
struct Env {
    dir: tempfile::TempDir,
    stack: Stack,
    address: String,
    store: Arc<Mutex<Store>>,
    pipeline: Arc<Pipeline>,
    wake: Arc<tokio::sync::Notify>,
}

impl Env {
    fn new(test: &str) -> Env {
        init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let stack = Stack::shared();
        let address = unique_address(test);
        Env {
            store: open_store(dir.path()),
            dir,
            stack,
            address,
            pipeline: pipeline(),
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// This test's configuration; `imap_extra` lines go into `[imap]` (STARTTLS by default).
    fn config(&self, imap_extra: &str) -> TestConfig {
        TestConfig::new(self.dir.path())
            .address(&self.address)
            .imap(&self.stack, imap_extra)
    }

    fn imap(&self, imap_extra: &str) -> ImapConfig {
        self.config(imap_extra).load().imap.expect("[imap]")
    }

    fn intake(&self, imap_extra: &str) -> Intake {
        Intake::new(
            self.imap(imap_extra),
            self.pipeline.clone(),
            self.store.clone(),
            self.wake.clone(),
        )
    }

    /// An intake as a restarted daemon would have it: its own Store on the same file.
    fn reopened_intake(&self, imap_extra: &str) -> Intake {
        Intake::new(
            self.imap(imap_extra),
            pipeline(),
            open_store(self.dir.path()),
            self.wake.clone(),
        )
    }

    fn key(&self) -> String {
        format!("{}/INBOX", self.address)
    }

    fn state(&self) -> store::MailboxState {
        let s = self.store.lock().expect("store lock");
        store::mailbox_state(s.conn(), &self.key()).expect("mailbox state")
    }

    fn stats(&self) -> store::Stats {
        let s = self.store.lock().expect("store lock");
        store::stats(s.conn()).expect("stats")
    }

    /// Messages stored.
    fn inbound(&self) -> i64 {
        self.stats().messages
    }

    /// Runs `f` on the test's own connection (for [`db`]'s reach-ins).
    fn with_conn<R>(&self, f: impl FnOnce(&rusqlite::Connection) -> R) -> R {
        let s = self.store.lock().expect("store lock");
        f(s.conn())
    }

    /// Puts `raw` straight into INBOX, unflagged (like a delivery, but synchronous).
    async fn put(&self, raw: &[u8]) {
        self.stack.append(&self.address, "INBOX", raw, None).await;
    }

    /// Sends `raw` to the support address through Postfix.
    async fn send_smtp(&self, raw: &[u8]) {
        self.stack
            .send(Some("julie@boulangerie-martin.example"), &self.address, raw)
            .await;
    }

    /// UID → flags of every message in `mailbox`.
    async fn flags(&self, mailbox: &str) -> Vec<(u32, Vec<String>)> {
        self.stack.flags(&self.address, mailbox).await
    }

    async fn exists(&self, mailbox: &str) -> u32 {
        self.stack.exists(&self.address, mailbox).await
    }

    /// Waits until INBOX holds `n` messages (SMTP delivery is asynchronous).
    async fn wait_delivered(&self, n: u32) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.exists("INBOX").await < n {
            assert!(Instant::now() < deadline, "mail not delivered within 15 s");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The store of the database in `dir`, for an intake.
fn open_store(dir: &std::path::Path) -> Arc<Mutex<Store>> {
    let store = Store::open(&TestConfig::new(dir).database()).expect("open store");
    Arc::new(Mutex::new(store))
}

/// One pipeline for the whole file: building it (rules and templates) takes seconds in a debug
/// build, and nothing in it depends on the test's database or address as far as intake goes.
fn pipeline() -> Arc<Pipeline> {
    static PIPELINE: OnceLock<Arc<Pipeline>> = OnceLock::new();
    PIPELINE
        .get_or_init(|| {
            let config = TestConfig::new(&std::env::temp_dir()).load();
            let mut store = Store::open(std::path::Path::new(":memory:")).expect("in-memory store");
            Arc::new(Pipeline::new(&config, &mut store).expect("pipeline"))
        })
        .clone()
}

/// A customer's request, with a unique Message-ID; `body` repeats `fill` bytes of text.
fn message(to: &str, subject: &str, fill: usize) -> Vec<u8> {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut body = String::from(
        "Bonjour,\r\nmy invoice for last month shows the wrong amount, could you check it?\r\n",
    );
    while body.len() < fill {
        body.push_str("Lorem ipsum dolor sit amet, consectetur adipiscing elit sed do.\r\n");
    }
    format!(
        "From: Julie Martin <julie.{n}@boulangerie-martin.example>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: Tue, 24 Nov 2026 10:00:00 +0100\r\n\
         Message-ID: <imap-test-{pid}-{n}-{subject_id}@boulangerie-martin.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n{body}",
        pid = std::process::id(),
        subject_id = subject.len(),
    )
    .into_bytes()
}

fn has(flags: &[String], flag: &str) -> bool {
    flags.iter().any(|f| f == flag)
}

fn imap_error(e: &anyhow::Error) -> &ImapError {
    e.downcast_ref::<ImapError>()
        .unwrap_or_else(|| panic!("not an ImapError: {e:#}"))
}

// -------------------------------------------------------------------------------------- tests

#[tokio::test]
async fn messages_are_ingested_once_and_the_watermark_survives_a_restart() {
    let env = Env::new("once");
    for i in 0..3 {
        env.put(&message(
            &env.address,
            &format!("Invoice question {i}"),
            300,
        ))
        .await;
    }
    // Two batches (2 + 1): each commits its own watermark.
    let mut first = env.intake("batch_size = 2");
    assert_eq!(first.poll_once().await.expect("first poll"), 3);
    assert_eq!(first.poll_once().await.expect("second poll"), 0);
    assert_eq!(env.inbound(), 3);
    drop(first);

    // A restarted daemon: new Store and Pipeline on the same file.
    let mut second = env.reopened_intake("");
    assert_eq!(second.poll_once().await.expect("after restart"), 0);
    env.put(&message(&env.address, "One more", 300)).await;
    assert_eq!(second.poll_once().await.expect("new mail"), 1);
    assert_eq!(env.inbound(), 4);

    let state = env.state();
    assert_eq!(state.last_uid, 4);
    assert!(state.last_fetch_at.is_some());
    assert_eq!(state.last_error, None);
    let validity = state.uidvalidity.expect("uidvalidity recorded");
    let fourth = format!("imap:INBOX:{validity}:4");
    let stored = env.with_conn(|c| db::messages_from(c, &fourth));
    assert_eq!(stored.len(), 1, "one message from {fourth}: {stored:?}");
    assert_eq!(stored[0].source, fourth);
    // BODY.PEEK: taking mail in never marks it read for the people using the mailbox.
    for (uid, f) in env.flags("INBOX").await {
        assert!(!has(&f, "\\Seen"), "UID {uid} was marked \\Seen: {f:?}");
        assert!(has(&f, "$Ticketed"), "UID {uid} not marked: {f:?}");
    }
}

#[tokio::test]
async fn mail_a_person_already_read_is_still_ingested() {
    let env = Env::new("seen");
    // What a colleague's mail client leaves behind: read before supportd saw it.
    imap::append(
        &env.imap(""),
        "INBOX",
        &message(&env.address, "Read already", 300),
    )
    .await
    .expect("append \\Seen");
    env.send_smtp(&message(&env.address, "Unread one", 300))
        .await;
    env.wait_delivered(2).await;
    let f = env.flags("INBOX").await;
    assert!(has(&f[0].1, "\\Seen"), "{f:?}");

    let mut intake = env.intake("");
    assert_eq!(intake.poll_once().await.expect("poll"), 2);
    assert_eq!(env.inbound(), 2);

    // The sender's copy of a reply: the mailbox is created when missing.
    imap::append(
        &env.imap(""),
        "Sent copies",
        &message(&env.address, "Our reply", 300),
    )
    .await
    .expect("append to a new mailbox");
    let f = env.flags("Sent copies").await;
    assert_eq!(f.len(), 1);
    assert!(has(&f[0].1, "\\Seen"), "{f:?}");
}

#[tokio::test]
async fn keyword_is_set_only_after_commit_and_catch_up_marks_committed_mail() {
    let env = Env::new("keyword");
    env.put(&message(&env.address, "First", 300)).await;
    env.put(&message(&env.address, "Second", 300)).await;

    // The database refuses every message: nothing may be marked, the watermark must not move.
    env.with_conn(db::refuse_everything);
    let mut intake = env.intake("");
    let err = intake.poll_once().await.expect_err("database error");
    assert!(!imap_error(&err).is_auth(), "{err:#}");
    for (uid, f) in env.flags("INBOX").await {
        assert!(!has(&f, "$Ticketed"), "UID {uid} marked without a commit");
    }
    let state = env.state();
    assert_eq!(state.last_uid, 0);
    assert!(state.last_error.is_some(), "error not recorded");
    assert!(!state.auth_failing);

    env.with_conn(db::stop_refusing);
    assert_eq!(intake.poll_once().await.expect("retry"), 2);
    assert!(
        env.flags("INBOX")
            .await
            .iter()
            .all(|(_, f)| has(f, "$Ticketed"))
    );
    assert_eq!(env.state().last_error, None);

    // A crash between commit and marking, played by an intake that never marks.
    env.put(&message(&env.address, "Third", 300)).await;
    env.put(&message(&env.address, "Fourth", 300)).await;
    let mut unmarking = env.intake("after = \"none\"");
    assert_eq!(unmarking.poll_once().await.expect("commit only"), 2);
    let marked = |f: &[(u32, Vec<String>)]| f.iter().filter(|(_, f)| has(f, "$Ticketed")).count();
    assert_eq!(marked(&env.flags("INBOX").await), 2);

    // The next connect marks what was committed but left unmarked, and takes in nothing twice.
    let mut restarted = env.reopened_intake("");
    assert_eq!(restarted.poll_once().await.expect("catch-up"), 0);
    assert_eq!(marked(&env.flags("INBOX").await), 4);
    assert_eq!(env.inbound(), 4);
}

#[tokio::test]
async fn move_leaves_the_inbox_empty_and_processed_holds_the_mail() {
    let env = Env::new("move");
    let moving = "after = \"move\"\nprocessed_mailbox = \"Processed\"";
    for i in 0..3 {
        env.put(&message(&env.address, &format!("Move me {i}"), 300))
            .await;
    }
    let mut intake = env.intake(moving);
    assert_eq!(intake.poll_once().await.expect("poll"), 3);
    assert_eq!(env.exists("INBOX").await, 0);
    assert_eq!(env.exists("Processed").await, 3);

    // Committed but not moved (a crash): the next connect moves it.
    env.put(&message(&env.address, "Left behind", 300)).await;
    let mut unmarking = env.intake("after = \"none\"");
    assert_eq!(unmarking.poll_once().await.expect("commit only"), 1);
    assert_eq!(env.exists("INBOX").await, 1);
    let mut restarted = env.reopened_intake(moving);
    assert_eq!(restarted.poll_once().await.expect("catch-up"), 0);
    assert_eq!(env.exists("INBOX").await, 0);
    assert_eq!(env.exists("Processed").await, 4);
    assert_eq!(env.inbound(), 4);
    // Moving never reads the mail on anyone's behalf.
    assert!(
        env.flags("Processed")
            .await
            .iter()
            .all(|(_, f)| !has(f, "\\Seen"))
    );
}

#[tokio::test]
async fn a_uidvalidity_change_rescans_without_duplicates() {
    let env = Env::new("validity");
    env.put(&message(&env.address, "Before the reset", 300))
        .await;
    env.put(&message(&env.address, "Also before", 300)).await;
    let mut intake = env.intake("");
    assert_eq!(intake.poll_once().await.expect("poll"), 2);
    let old = env.state().uidvalidity.expect("uidvalidity");

    let new = old.wrapping_add(1000).max(1);
    let conf = env.stack.dir.join("dovecot/dovecot.conf");
    let out = Command::new("doveadm")
        .arg("-c")
        .arg(&conf)
        .args(["mailbox", "update", "-u", &env.address, "--uid-validity"])
        .arg(new.to_string())
        .arg("INBOX")
        .output()
        .expect("run doveadm");
    assert!(
        out.status.success(),
        "doveadm: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The open session is told to log in again (BYE) on one of its next commands, not always
    // the first: poll until the intake has seen the new UIDVALIDITY, counting what it re-read.
    let mut seen_again = 0;
    for _ in 0..25 {
        if let Ok(n) = intake.poll_once().await {
            seen_again += n;
        }
        if env.state().uidvalidity == Some(new) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(seen_again, 2, "both messages seen again");
    assert_eq!(env.inbound(), 2, "nothing stored twice");
    let state = env.state();
    assert_eq!(state.uidvalidity, Some(new));
    assert_eq!(state.last_uid, 2);
    assert_eq!(intake.poll_once().await.expect("steady"), 0);
}

#[tokio::test]
async fn an_oversized_message_is_stored_with_its_headers_only_and_flagged() {
    let env = Env::new("oversized");
    env.put(&message(&env.address, "Small one", 300)).await;
    let big = message(&env.address, "Huge attachment", 20_000);
    env.put(&big).await;
    let mut intake = env.intake("max_message_size = 4000");
    assert_eq!(intake.poll_once().await.expect("poll"), 2);

    let stored = env.with_conn(|c| db::messages_from(c, "imap:INBOX:%:2"));
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (raw, warnings) = (&stored[0].raw, &stored[0].warnings);
    assert!(raw.len() < 1000, "{} bytes kept", raw.len());
    assert!(raw.ends_with(b"\r\n\r\n"), "headers end with a blank line");
    assert!(String::from_utf8_lossy(raw).contains("Subject: Huge attachment"));
    assert!(warnings.contains("max_message_size"), "{warnings:?}");
    // Its ticket: the only one with its subject.
    let tickets = env.with_conn(|c| store::list_tickets(c, None, None).expect("tickets"));
    let ticket = tickets
        .iter()
        .find(|t| t.subject == "Huge attachment")
        .expect("ticket of the oversized message");
    assert!(ticket.flags.contains("oversized"), "{ticket:?}");
    let small = env.with_conn(|c| db::messages_from(c, "imap:INBOX:%:1"));
    assert_eq!(small.len(), 1, "{small:?}");
    let small = &small[0].raw;
    assert!(small.len() > 300, "the small one is whole");
}

#[tokio::test]
async fn implicit_tls_and_starttls_verify_the_generated_ca() {
    let env = Env::new("tls");
    let st = &env.stack;
    let mut config = env.imap("");
    config.tls = supportd::config::TlsMode::Implicit;
    config.port = Some(st.imaps_port);
    imap::connect(&config)
        .await
        .expect("IMAPS with the CA")
        .logout()
        .await
        .expect("logout");
    imap::connect(&env.imap(""))
        .await
        .expect("STARTTLS with the CA")
        .logout()
        .await
        .expect("logout");

    // A CA that did not sign the server's certificate.
    let wrong = env.dir.path().join("wrong-ca.crt");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=Not the mailstack CA"])
        .arg("-keyout")
        .arg(env.dir.path().join("wrong-ca.key"))
        .arg("-out")
        .arg(&wrong)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for tls in [
        supportd::config::TlsMode::Implicit,
        supportd::config::TlsMode::Starttls,
    ] {
        let mut bad = env.imap("");
        bad.tls = tls;
        if tls == supportd::config::TlsMode::Implicit {
            bad.port = Some(st.imaps_port);
        }
        bad.ca_file = Some(wrong.clone());
        let err = imap::connect(&bad).await.expect_err("wrong CA must fail");
        assert!(matches!(err, ImapError::Tls { .. }), "{tls:?}: {err}");
        assert!(!err.is_auth());
        assert!(err.to_string().contains("certificate"), "{tls:?}: {err}");
        // Without a CA file the web PKI roots are used, and they do not know the test CA either.
        bad.ca_file = None;
        let err = imap::connect(&bad).await.expect_err("web PKI must fail");
        assert!(matches!(err, ImapError::Tls { .. }), "{tls:?}: {err}");
    }
}

#[tokio::test]
async fn a_wrong_password_is_an_authentication_error() {
    let env = Env::new("auth");
    let wrong = "not-the-password-4711";
    let mut config = env.imap("");
    config.auth.secret = Some(supportd::config::SecretSource::Password(
        supportd::config::Secret::new(wrong),
    ));
    let err = imap::connect(&config).await.expect_err("refused");
    assert!(err.is_auth(), "{err}");
    assert!(matches!(err, ImapError::Auth { .. }), "{err}");
    assert!(
        !err.to_string().contains(wrong),
        "password in the error: {err}"
    );

    // Through the intake: recorded for `supportd status` as an authentication failure.
    let mut intake = Intake::new(
        config,
        env.pipeline.clone(),
        env.store.clone(),
        env.wake.clone(),
    );
    let err = intake.poll_once().await.expect_err("refused");
    assert!(imap_error(&err).is_auth(), "{err:#}");
    let state = env.state();
    assert!(state.auth_failing);
    assert!(!state.last_error.unwrap_or_default().contains(wrong));
}

#[tokio::test]
async fn a_refused_oauth2_token_is_fetched_again_once() {
    let env = Env::new("oauth");
    let counter = env.dir.path().join("token-runs");
    let mut config = env.imap("");
    config.auth.secret = Some(supportd::config::SecretSource::TokenCommand(format!(
        "echo run >> '{}'; echo token-$$",
        counter.display()
    )));
    // The test Dovecot offers no XOAUTH2, so every token is refused: exactly what an expired one
    // looks like to the client.
    let err = imap::connect(&config).await.expect_err("refused");
    assert!(err.is_auth(), "{err}");
    let runs = std::fs::read_to_string(&counter).expect("token command ran");
    assert_eq!(runs.lines().count(), 2, "token command runs: {runs:?}");
    assert!(
        !err.to_string().contains("token-"),
        "token in the error: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_picks_up_a_delivery_within_two_seconds() {
    let env = Env::new("idle");
    // A long poll interval: only IDLE can explain a fast pickup.
    let intake = env.intake("idle = true\npoll_interval = \"10m\"");
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(intake.run(shutdown));

    // Connected and done with the first pass once success was recorded; then IDLE starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.state().last_fetch_at.is_none() {
        assert!(Instant::now() < deadline, "intake never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let woken = env.wake.clone();
    let notified = tokio::spawn(async move { woken.notified().await });
    let sent = Instant::now();
    env.send_smtp(&message(&env.address, "Pushed by IDLE", 300))
        .await;
    let deadline = sent + Duration::from_secs(5);
    while env.inbound() < 1 {
        assert!(Instant::now() < deadline, "not picked up within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let latency = sent.elapsed();
    eprintln!("IDLE pickup latency (SMTP accept → committed): {latency:?}");
    assert!(latency < Duration::from_millis(2500), "took {latency:?}");
    tokio::time::timeout(Duration::from_secs(2), notified)
        .await
        .expect("sender woken")
        .expect("notify task");

    // Shutdown is prompt even in the middle of IDLE.
    let asked = Instant::now();
    stop.send(true).expect("send shutdown");
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("run() returns promptly")
        .expect("task")
        .expect("run() is Ok on shutdown");
    eprintln!("shutdown took {:?}", asked.elapsed());
    let f = env.flags("INBOX").await;
    assert!(has(&f[0].1, "$Ticketed"), "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idle_run_polls_every_interval() {
    let env = Env::new("poll");
    let intake = env.intake("idle = false\npoll_interval = \"1s\"");
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(intake.run(shutdown));
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.state().last_fetch_at.is_none() {
        assert!(Instant::now() < deadline, "intake never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.put(&message(&env.address, "Found by polling", 300))
        .await;
    let put_at = Instant::now();
    while env.inbound() < 1 {
        assert!(
            put_at.elapsed() < Duration::from_secs(4),
            "not polled within 4 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "poll pickup latency with poll_interval = 1s: {:?}",
        put_at.elapsed()
    );
    stop.send(true).expect("send shutdown");
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("run() returns promptly")
        .expect("task")
        .expect("run() is Ok on shutdown");
}

#[tokio::test]
async fn mail_the_server_received_long_ago_is_stored_but_not_acknowledged() {
    let env = Env::new("old");
    // A first start on a mailbox with history: INTERNALDATE is when the server received it.
    let mut session = imap::connect(&env.imap("")).await.expect("connect");
    session
        .append(
            "INBOX",
            None,
            Some("\"01-Jan-2026 10:00:00 +0000\""),
            &message(&env.address, "Old request", 300),
        )
        .await
        .expect("APPEND old");
    session
        .append(
            "INBOX",
            None,
            None,
            &message(&env.address, "New request", 300),
        )
        .await
        .expect("APPEND new");
    session.logout().await.expect("logout");

    let mut intake = env.intake("");
    assert_eq!(intake.poll_once().await.expect("poll"), 2);
    assert_eq!(env.inbound(), 2);
    let stats = env.stats();
    assert_eq!(stats.tickets, 2);
    assert_eq!(stats.acks_queued, 1);
    let suppressed = env.with_conn(|c| store::list_outbox(c, Some("suppressed")).expect("outbox"));
    let too_old: Vec<_> = suppressed
        .iter()
        .filter(|o| {
            let reason = o.last_error.as_deref().unwrap_or_default();
            o.kind == store::OutboxKind::Ack
                && reason.starts_with("received ")
                && reason.ends_with(" days ago, over guard.max_ack_age")
        })
        .collect();
    assert_eq!(too_old.len(), 1, "{suppressed:?}");
}
