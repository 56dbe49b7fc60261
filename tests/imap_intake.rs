//! IMAP intake against the real local Dovecot + Postfix of `scripts/mailstack`.
//!
//! Every test uses its own support address (the stack delivers any address to its own mailbox),
//! its own SQLite file, and puts mail in over SMTP (through Postfix and LMTP, as in production) or
//! IMAP APPEND, so the tests run in parallel without seeing each other's mail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_imap::types::Flag;
use futures::TryStreamExt;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor, address::Envelope};
use supportd::config::{Config, ImapConfig};
use supportd::mailbox::imap::{self, ImapError, Intake};
use supportd::pipeline::Pipeline;
use supportd::store::{self, Store};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The running stack's settings (`scripts/mailstack start` prints them as KEY=value).
struct Stack {
    dir: PathBuf,
    imap_port: u16,
    imaps_port: u16,
    smtp_port: u16,
    password: String,
    ca_file: PathBuf,
}

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let script = crate_dir().join("scripts/mailstack");
        let out = Command::new(&script)
            .arg("start")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} start failed ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let get = |key: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim().trim_matches('\'').to_string())
                .unwrap_or_else(|| panic!("mailstack printed no {key}:\n{text}"))
        };
        let port = |key: &str| get(key).parse().expect("port number");
        Stack {
            dir: get("MAILSTACK_DIR").into(),
            imap_port: port("MAILSTACK_IMAP_PORT"),
            imaps_port: port("MAILSTACK_IMAPS_PORT"),
            smtp_port: port("MAILSTACK_SMTP_PORT"),
            password: get("MAILSTACK_PASSWORD"),
            ca_file: get("MAILSTACK_CA_FILE").into(),
        }
    })
}

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
    address: String,
    store: Arc<Mutex<Store>>,
    pipeline: Arc<Pipeline>,
    wake: Arc<tokio::sync::Notify>,
}

impl Env {
    fn new(test: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let address = unique_address(test);
        let (store, pipeline) = open(dir.path(), &address);
        Env {
            dir,
            address,
            store,
            pipeline,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Config text for this test; `imap_extra` lines go into `[imap]` (STARTTLS by default).
    fn config(&self, imap_extra: &str) -> Config {
        config_text(self.dir.path(), &self.address, imap_extra)
    }

    fn imap(&self, imap_extra: &str) -> ImapConfig {
        self.config(imap_extra).imap.expect("[imap]")
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
        let (store, pipeline) = open(self.dir.path(), &self.address);
        Intake::new(self.imap(imap_extra), pipeline, store, self.wake.clone())
    }

    fn key(&self) -> String {
        format!("{}/INBOX", self.address)
    }

    fn state(&self) -> store::MailboxState {
        let s = self.store.lock().expect("store lock");
        store::mailbox_state(s.conn(), &self.key()).expect("mailbox state")
    }

    fn count(&self, sql: &str) -> i64 {
        let s = self.store.lock().expect("store lock");
        s.conn().query_row(sql, [], |r| r.get(0)).expect(sql)
    }

    fn inbound(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM messages WHERE direction = 'in'")
    }

    fn execute(&self, sql: &str) {
        let s = self.store.lock().expect("store lock");
        s.conn().execute_batch(sql).expect(sql);
    }
}

fn config_text(dir: &Path, address: &str, imap_extra: &str) -> Config {
    let st = stack();
    let text = format!(
        "[support]\naddress = \"{address}\"\n\
         [storage]\ndatabase = \"{db}\"\n\
         [rules]\ndir = \"{rules}\"\n\
         [templates]\ndir = \"{templates}\"\n\
         [imap]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"starttls\"\nca_file = \"{ca}\"\n\
         username = \"{address}\"\npassword = \"{password}\"\n{imap_extra}\n",
        db = dir.join("db.sqlite3").display(),
        rules = crate_dir().join("rules").display(),
        templates = crate_dir().join("templates").display(),
        port = st.imap_port,
        ca = st.ca_file.display(),
        password = st.password,
    );
    Config::from_toml(&text, dir).unwrap_or_else(|e| panic!("config: {e}\n{text}"))
}

fn open(dir: &Path, address: &str) -> (Arc<Mutex<Store>>, Arc<Pipeline>) {
    let config = config_text(dir, address, "");
    let store = Store::open(&config.storage.database).expect("open store");
    (Arc::new(Mutex::new(store)), pipeline())
}

/// One pipeline for the whole file: building it (rules and templates) takes seconds in a debug
/// build, and nothing in it depends on the test's database or address as far as intake goes.
fn pipeline() -> Arc<Pipeline> {
    static PIPELINE: OnceLock<Arc<Pipeline>> = OnceLock::new();
    PIPELINE
        .get_or_init(|| {
            let dir = crate_dir();
            let config = config_text(&dir, "support@example.test", "");
            let mut store = Store::open(Path::new(":memory:")).expect("in-memory store");
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

/// Puts `raw` straight into INBOX, unflagged (like a delivery, but synchronous).
async fn put(env: &Env, raw: &[u8]) {
    let mut session = imap::connect(&env.imap("")).await.expect("connect");
    session
        .append("INBOX", None, None, raw)
        .await
        .expect("APPEND");
    session.logout().await.expect("logout");
}

/// Sends `raw` to the support address through Postfix.
async fn send_smtp(env: &Env, raw: &[u8]) {
    let smtp: AsyncSmtpTransport<Tokio1Executor> =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(stack().smtp_port)
            .build();
    let envelope = Envelope::new(
        Some("julie@boulangerie-martin.example".parse().expect("from")),
        vec![env.address.parse().expect("to")],
    )
    .expect("envelope");
    smtp.send_raw(&envelope, raw).await.expect("SMTP send");
}

/// UID → flags of every message in `mailbox`.
async fn flags(env: &Env, mailbox: &str) -> Vec<(u32, Vec<String>)> {
    let mut session = imap::connect(&env.imap("")).await.expect("connect");
    let selected = session.examine(mailbox).await.expect("EXAMINE");
    let mut out = Vec::new();
    if selected.exists > 0 {
        let fetches: Vec<_> = session
            .uid_fetch("1:*", "(UID FLAGS)")
            .await
            .expect("FETCH")
            .try_collect()
            .await
            .expect("FETCH stream");
        for f in &fetches {
            let names = f
                .flags()
                .map(|fl| match fl {
                    Flag::Seen => "\\Seen".to_string(),
                    Flag::Deleted => "\\Deleted".to_string(),
                    Flag::Custom(c) => c.to_string(),
                    other => format!("{other:?}"),
                })
                .collect();
            out.push((f.uid.expect("UID"), names));
        }
    }
    session.logout().await.expect("logout");
    out.sort();
    out
}

async fn exists(env: &Env, mailbox: &str) -> u32 {
    let mut session = imap::connect(&env.imap("")).await.expect("connect");
    let n = session.examine(mailbox).await.expect("EXAMINE").exists;
    session.logout().await.expect("logout");
    n
}

/// Waits until `mailbox` holds `n` messages (SMTP delivery is asynchronous).
async fn wait_delivered(env: &Env, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while exists(env, "INBOX").await < n {
        assert!(Instant::now() < deadline, "mail not delivered within 15 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
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
        put(
            &env,
            &message(&env.address, &format!("Invoice question {i}"), 300),
        )
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
    put(&env, &message(&env.address, "One more", 300)).await;
    assert_eq!(second.poll_once().await.expect("new mail"), 1);
    assert_eq!(env.inbound(), 4);

    let state = env.state();
    assert_eq!(state.last_uid, 4);
    assert!(state.last_fetch_at.is_some());
    assert_eq!(state.last_error, None);
    let validity = state.uidvalidity.expect("uidvalidity recorded");
    assert_eq!(
        env.count(&format!(
            "SELECT COUNT(*) FROM messages WHERE source = 'imap:INBOX:{validity}:4'"
        )),
        1
    );
    // BODY.PEEK: taking mail in never marks it read for the people using the mailbox.
    for (uid, f) in flags(&env, "INBOX").await {
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
    send_smtp(&env, &message(&env.address, "Unread one", 300)).await;
    wait_delivered(&env, 2).await;
    let f = flags(&env, "INBOX").await;
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
    let f = flags(&env, "Sent copies").await;
    assert_eq!(f.len(), 1);
    assert!(has(&f[0].1, "\\Seen"), "{f:?}");
}

#[tokio::test]
async fn keyword_is_set_only_after_commit_and_catch_up_marks_committed_mail() {
    let env = Env::new("keyword");
    put(&env, &message(&env.address, "First", 300)).await;
    put(&env, &message(&env.address, "Second", 300)).await;

    // The database refuses every message: nothing may be marked, the watermark must not move.
    env.execute(
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON messages \
         BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
    );
    let mut intake = env.intake("");
    let err = intake.poll_once().await.expect_err("database error");
    assert!(!imap_error(&err).is_auth(), "{err:#}");
    for (uid, f) in flags(&env, "INBOX").await {
        assert!(!has(&f, "$Ticketed"), "UID {uid} marked without a commit");
    }
    let state = env.state();
    assert_eq!(state.last_uid, 0);
    assert!(state.last_error.is_some(), "error not recorded");
    assert!(!state.auth_failing);

    env.execute("DROP TRIGGER refuse;");
    assert_eq!(intake.poll_once().await.expect("retry"), 2);
    assert!(
        flags(&env, "INBOX")
            .await
            .iter()
            .all(|(_, f)| has(f, "$Ticketed"))
    );
    assert_eq!(env.state().last_error, None);

    // A crash between commit and marking, played by an intake that never marks.
    put(&env, &message(&env.address, "Third", 300)).await;
    put(&env, &message(&env.address, "Fourth", 300)).await;
    let mut unmarking = env.intake("after = \"none\"");
    assert_eq!(unmarking.poll_once().await.expect("commit only"), 2);
    let marked = |f: &[(u32, Vec<String>)]| f.iter().filter(|(_, f)| has(f, "$Ticketed")).count();
    assert_eq!(marked(&flags(&env, "INBOX").await), 2);

    // The next connect marks what was committed but left unmarked, and takes in nothing twice.
    let mut restarted = env.reopened_intake("");
    assert_eq!(restarted.poll_once().await.expect("catch-up"), 0);
    assert_eq!(marked(&flags(&env, "INBOX").await), 4);
    assert_eq!(env.inbound(), 4);
}

#[tokio::test]
async fn move_leaves_the_inbox_empty_and_processed_holds_the_mail() {
    let env = Env::new("move");
    let moving = "after = \"move\"\nprocessed_mailbox = \"Processed\"";
    for i in 0..3 {
        put(&env, &message(&env.address, &format!("Move me {i}"), 300)).await;
    }
    let mut intake = env.intake(moving);
    assert_eq!(intake.poll_once().await.expect("poll"), 3);
    assert_eq!(exists(&env, "INBOX").await, 0);
    assert_eq!(exists(&env, "Processed").await, 3);

    // Committed but not moved (a crash): the next connect moves it.
    put(&env, &message(&env.address, "Left behind", 300)).await;
    let mut unmarking = env.intake("after = \"none\"");
    assert_eq!(unmarking.poll_once().await.expect("commit only"), 1);
    assert_eq!(exists(&env, "INBOX").await, 1);
    let mut restarted = env.reopened_intake(moving);
    assert_eq!(restarted.poll_once().await.expect("catch-up"), 0);
    assert_eq!(exists(&env, "INBOX").await, 0);
    assert_eq!(exists(&env, "Processed").await, 4);
    assert_eq!(env.inbound(), 4);
    // Moving never reads the mail on anyone's behalf.
    assert!(
        flags(&env, "Processed")
            .await
            .iter()
            .all(|(_, f)| !has(f, "\\Seen"))
    );
}

#[tokio::test]
async fn a_uidvalidity_change_rescans_without_duplicates() {
    let env = Env::new("validity");
    put(&env, &message(&env.address, "Before the reset", 300)).await;
    put(&env, &message(&env.address, "Also before", 300)).await;
    let mut intake = env.intake("");
    assert_eq!(intake.poll_once().await.expect("poll"), 2);
    let old = env.state().uidvalidity.expect("uidvalidity");

    let new = old.wrapping_add(1000).max(1);
    let conf = stack().dir.join("dovecot/dovecot.conf");
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
    put(&env, &message(&env.address, "Small one", 300)).await;
    let big = message(&env.address, "Huge attachment", 20_000);
    put(&env, &big).await;
    let mut intake = env.intake("max_message_size = 4000");
    assert_eq!(intake.poll_once().await.expect("poll"), 2);

    let s = env.store.lock().expect("store");
    let (raw, warnings): (Vec<u8>, String) = s
        .conn()
        .query_row(
            "SELECT raw, warnings FROM messages WHERE source LIKE 'imap:INBOX:%:2'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("oversized row");
    assert!(raw.len() < 1000, "{} bytes kept", raw.len());
    assert!(raw.ends_with(b"\r\n\r\n"), "headers end with a blank line");
    assert!(String::from_utf8_lossy(&raw).contains("Subject: Huge attachment"));
    assert!(warnings.contains("max_message_size"), "{warnings:?}");
    let flags: String = s
        .conn()
        .query_row(
            "SELECT t.flags FROM tickets t JOIN messages m ON m.ticket_id = t.id
             WHERE m.source LIKE 'imap:INBOX:%:2'",
            [],
            |r| r.get(0),
        )
        .expect("ticket of the oversized message");
    assert!(flags.contains("oversized"), "{flags:?}");
    let small: Vec<u8> = s
        .conn()
        .query_row(
            "SELECT raw FROM messages WHERE source LIKE 'imap:INBOX:%:1'",
            [],
            |r| r.get(0),
        )
        .expect("small row");
    assert!(small.len() > 300, "the small one is whole");
}

#[tokio::test]
async fn implicit_tls_and_starttls_verify_the_generated_ca() {
    let env = Env::new("tls");
    let st = stack();
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
    send_smtp(&env, &message(&env.address, "Pushed by IDLE", 300)).await;
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
    let f = flags(&env, "INBOX").await;
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
    put(&env, &message(&env.address, "Found by polling", 300)).await;
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
    assert_eq!(env.count("SELECT count(*) FROM tickets"), 2);
    assert_eq!(
        env.count("SELECT count(*) FROM outbox WHERE kind = 'ack' AND status = 'queued'"),
        1
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM outbox WHERE kind = 'ack' AND status = 'suppressed'
             AND last_error LIKE 'received % days ago, over guard.max_ack_age'"
        ),
        1
    );
}
