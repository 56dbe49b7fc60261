//! The HTTP intake over real HTTP: `supportd run` with an `[http]` section (port 0: the port
//! it chose is read from its log), asked with reqwest as the dashboard's backend would, and
//! the result read back with the `--json` commands. One test goes through the whole mail
//! stack: the confirmation e-mail lands in the customer's Maildir and their reply to it threads
//! onto the ticket. The browser tests are in `http/browser.rs`.

mod browser;

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::app::App;
use crate::helpers::config::TestConfig;
use crate::helpers::log_filter;
use crate::helpers::mailstack::{Stack, maildir_files};

/// The API token the tests' daemons take.
pub const TOKEN: &str = "test-api-token-2c1f";
/// The secret the tests' daemons sign account links with.
pub const LINK_SECRET: &str = "test-link-secret-9e4a";

/// One test's `supportd run` with `[http]`, killed (and its log printed on failure) when
/// dropped.
pub struct Daemon {
    pub app: App,
    child: Option<Child>,
    log: PathBuf,
    /// `http://127.0.0.1:PORT` of `listen`.
    pub base: String,
    /// `http://127.0.0.1:PORT` of `metrics_listen`, when set.
    pub ops_base: Option<String>,
}

impl Daemon {
    /// Starts `supportd run` with `[http]` listening on a free port, the test token and link
    /// secret, and `http_extra` lines; `f` sets the rest of the configuration.
    pub fn start(http_extra: &str, f: impl FnOnce(TestConfig) -> TestConfig) -> Daemon {
        Daemon::start_edited(http_extra, f, |text| text)
    }

    /// [`Daemon::start`], with the configuration file's text changed by `edit` first.
    pub fn start_edited(
        http_extra: &str,
        f: impl FnOnce(TestConfig) -> TestConfig,
        edit: impl FnOnce(String) -> String,
    ) -> Daemon {
        let app = App::with(|c| {
            f(c).http(&format!(
                "listen = \"127.0.0.1:0\"\napi_token_file = \"api-token\"\n\
                 link_secret_file = \"link-secret\"\n{http_extra}"
            ))
        });
        let text = std::fs::read_to_string(&app.config).expect("the config");
        std::fs::write(&app.config, edit(text)).expect("rewrite the config");
        app.write("api-token", format!("{TOKEN}\n").as_bytes());
        app.write("link-secret", format!("{LINK_SECRET}\n").as_bytes());
        let log = app.path().join("supportd.log");
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log");
        let child = app
            .command()
            .arg("run")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("spawn supportd run");
        let mut daemon = Daemon {
            app,
            child: Some(child),
            log,
            base: String::new(),
            ops_base: None,
        };
        let want = if http_extra.contains("metrics_listen") {
            2
        } else {
            1
        };
        let addresses = daemon.wait_listening(want);
        daemon.base = format!("http://{}", addresses[0]);
        daemon.ops_base = addresses.get(1).map(|a| format!("http://{a}"));
        daemon
    }

    /// The addresses the server logged, `listen` first, once there are `n` of them.
    fn wait_listening(&mut self, n: usize) -> Vec<String> {
        const MARK: &str = "HTTP server listening on ";
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found: Vec<String> = self
                .log_text()
                .lines()
                .filter_map(|l| l.split_once(MARK))
                .filter_map(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
                .collect();
            if found.len() >= n {
                return found;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "supportd exited before listening: {status}\n{}",
                    self.log_text()
                );
            }
            assert!(Instant::now() < deadline, "not listening within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and the exit status within 10 s.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running 10 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `POST /api/v1/requests` with the token, `body` and an optional Idempotency-Key.
    pub async fn post(&self, body: &Value, key: Option<&str>) -> (StatusCode, Value) {
        let (status, _, json) = self
            .post_raw(body.to_string().into_bytes(), Some(TOKEN), key)
            .await;
        (status, json)
    }

    /// `POST /api/v1/requests` with these bytes; returns status, headers and the JSON body
    /// (`null` when there is none).
    pub async fn post_raw(
        &self,
        body: Vec<u8>,
        token: Option<&str>,
        key: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = client()
            .post(format!("{}/api/v1/requests", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() || log_filter().is_some() {
            eprintln!(
                "--- supportd log ---\n{}--- end of log ---",
                self.log_text()
            );
        }
        if std::thread::panicking() {
            eprintln!("[http] files kept in {}", self.app.keep().display());
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

fn request(email: &str, category: &str, message: &str) -> Value {
    json!({
        "email": email,
        "name": "Julie Martin",
        "category": category,
        "message": message,
        "locale": "fr",
        "project_url": "https://app.chatim.app/p/boulangerie",
        "browser": "Firefox 140 on Linux",
        "page_url": "https://app.chatim.app/support",
        "account": {"plan": "Pro", "company": "Boulangerie Martin", "seats": 3}
    })
}

const WIDGET: &str = "Le widget ne s'affiche plus sur notre site depuis hier soir, \
                      alors que le code d'installation n'a pas changé.";

#[tokio::test]
async fn a_request_becomes_a_ticket_of_the_chosen_category_with_its_promise() {
    let d = Daemon::start("", |c| c);
    // The words are technical; the customer chose billing, and that wins.
    let (status, answer) = d
        .post(
            &request("julie@boulangerie-martin.fr", "billing", WIDGET),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer:#}");
    assert_eq!(answer["ticket"], "CHT-1");
    assert_eq!(answer["category"], "billing");
    assert_eq!(answer["status"], "open");
    assert_eq!(answer["promise"], "sous 24 heures ouvrées");
    let due = answer["due_at"].as_str().expect("due_at");
    assert!(chrono::DateTime::parse_from_rfc3339(due).is_ok(), "{due}");

    let ticket = d.app.ticket("CHT-1");
    assert_eq!(ticket["category"], "billing");
    assert_eq!(ticket["customer"], "julie@boulangerie-martin.fr");
    assert_eq!(ticket["due_at"], due);
    assert_eq!(ticket["language"], "fr");
    let inbound = ticket["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["direction"] == "in")
        .expect("the request");
    assert!(
        inbound["text"].as_str().unwrap_or("").contains("widget"),
        "{ticket:#}"
    );

    // The same acknowledgement as for mail, and the team sees the account.
    let outbox = d.app.outbox();
    let ack = outbox
        .iter()
        .find(|o| o["kind"] == "ack")
        .expect("an acknowledgement");
    let ack_raw =
        String::from_utf8_lossy(&d.app.outbox_raw(ack["id"].as_i64().unwrap())).into_owned();
    assert!(
        ack_raw.contains("Auto-Submitted: auto-replied"),
        "{ack_raw}"
    );
    let note = outbox
        .iter()
        .find(|o| o["kind"] == "notification")
        .expect("a notification");
    let note_raw = d.app.outbox_raw(note["id"].as_i64().unwrap());
    let note = mail_parser::MessageParser::default()
        .parse(&note_raw)
        .expect("parsable");
    let text = note.body_text(0).expect("text").into_owned();
    for expected in [
        "company : Boulangerie Martin",
        "plan : Pro",
        "seats : 3",
        "project_url : https://app.chatim.app/p/boulangerie",
        "browser : Firefox 140 on Linux",
        "formulaire de support",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from {text}");
    }

    // `classify --explain` on the request as stored shows both: the customer's choice
    // decided, and what the rules found.
    let original = note
        .attachments()
        .find_map(|a| a.message())
        .expect("the request attached")
        .raw_message()
        .to_vec();
    let file = d.app.write("request.eml", &original);
    let out = d
        .app
        .run(&["classify", &file.display().to_string(), "--explain"]);
    let explained = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(explained.starts_with("category: billing\n"), "{explained}");
    assert!(
        explained.contains("decided by explicit hint: form choice billing"),
        "{explained}"
    );
    assert!(explained.contains("rule technical/"), "{explained}");
    // The same header under a Message-ID we did not sign is ignored, and said so.
    let forged = String::from_utf8_lossy(&original).replacen("sd.form.", "sd.form.0", 1);
    let file = d.app.write("forged.eml", forged.as_bytes());
    let out = d.app.run(&["classify", &file.display().to_string()]);
    let explained = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        explained.starts_with("category: technical\n"),
        "{explained}"
    );
    let warned = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        warned.contains("X-Supportd-Form-Category ignored"),
        "{warned}"
    );
}

#[tokio::test]
async fn too_short_too_long_and_unknown_category_are_422_with_one_error_per_field() {
    let d = Daemon::start("", |c| c);
    let julie = "julie@boulangerie-martin.fr";
    // Nine characters once trimmed (accents count as one).
    let (status, body) = d
        .post(&request(julie, "technical", "  Aïe, bugs  "), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["errors"],
        json!([{"field": "message", "code": "too_short",
                "message": "Votre message doit contenir au moins 10 caractères (il en a 9)."}])
    );
    let (status, body) = d
        .post(&request(julie, "technical", &"é".repeat(5_001)), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "message");
    assert_eq!(body["errors"][0]["code"], "too_long");
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(1));
    // Exactly 5,000 is accepted.
    let (status, _) = d
        .post(&request(julie, "technical", &"é".repeat(5_000)), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let mut unknown = request(julie, "refunds", WIDGET);
    unknown["locale"] = json!("en");
    let (status, body) = d.post(&unknown, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "category");
    assert_eq!(body["errors"][0]["code"], "unknown_category");
    let message = body["errors"][0]["message"].as_str().unwrap_or("");
    assert!(message.contains("billing, technical"), "{message}");

    // Several problems at once, each on its field.
    let (status, body) = d
        .post(
            &json!({"email": "nope", "message": 42, "colour": "blue"}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields: Vec<(String, String)> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or("").into(),
                e["code"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            ("colour".into(), "unknown_field".into()),
            ("email".into(), "invalid".into()),
            ("message".into(), "required".into()),
            ("message".into(), "wrong_type".into()),
        ]
    );
    let (status, _, _) = d.post_raw(b"[1, 2]".to_vec(), Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Only the one accepted request was filed.
    assert_eq!(d.app.stats().tickets, 1);
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_401_and_files_nothing() {
    let d = Daemon::start("", |c| c);
    let body = request("julie@boulangerie-martin.fr", "billing", WIDGET).to_string();
    for token in [None, Some("test-api-token-2c1e"), Some(""), Some("x")] {
        let (status, headers, json) = d.post_raw(body.clone().into_bytes(), token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(
            headers.get("www-authenticate").map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        assert_eq!(json["errors"][0]["code"], "unauthorized");
    }
    assert_eq!(d.app.stats().messages, 0);
}

#[tokio::test]
async fn a_body_over_64_kib_is_413_and_files_nothing() {
    let d = Daemon::start("", |c| c);
    let mut big = request("julie@boulangerie-martin.fr", "billing", WIDGET);
    big["account"]["notes"] = json!("x".repeat(64 * 1024));
    let (status, _, json) = d
        .post_raw(big.to_string().into_bytes(), Some(TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json["errors"][0]["code"], "too_large");
    assert_eq!(d.app.stats().messages, 0);
}

#[tokio::test]
async fn an_idempotent_retry_gets_the_first_answer_and_files_nothing_new() {
    let d = Daemon::start("", |c| c);
    let body = request("julie@boulangerie-martin.fr", "technical", WIDGET);
    let (status, first) = d.post(&body, Some("dash-req-7781")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, headers, again) = d
        .post_raw(
            body.to_string().into_bytes(),
            Some(TOKEN),
            Some("dash-req-7781"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again, first);
    assert_eq!(
        headers.get("idempotent-replayed").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let stats = d.app.stats();
    assert_eq!((stats.tickets, stats.messages), (1, 1));
    assert_eq!(
        d.app.outbox().iter().filter(|o| o["kind"] == "ack").count(),
        1
    );

    // The key with another request is refused rather than answered with the first.
    let other = request(
        "julie@boulangerie-martin.fr",
        "technical",
        "Autre chose : ma facture d'octobre.",
    );
    let (status, body) = d.post(&other, Some("dash-req-7781")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(body["errors"][0]["code"], "reused");
    // A new key is a new request.
    let (status, second) = d.post(&other, Some("dash-req-7782")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(second["ticket"], "CHT-2");
}

#[tokio::test]
async fn over_the_per_address_limit_is_429_with_retry_after() {
    let d = Daemon::start("requests_per_hour = 2", |c| c);
    let julie = "julie@boulangerie-martin.fr";
    for n in 0..2 {
        let (status, _) = d
            .post(
                &request(julie, "technical", &format!("{WIDGET} ({n})")),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, headers, body) = d
        .post_raw(
            request(julie, "technical", WIDGET).to_string().into_bytes(),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["errors"][0]["code"], "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&retry), "{retry}");
    // Someone else is not held back.
    let (status, _) = d
        .post(&request("marc@exemple.fr", "technical", WIDGET), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(d.app.stats().tickets, 3);
}

#[tokio::test]
async fn health_and_metrics_answer_without_the_token_and_can_have_their_own_address() {
    let d = Daemon::start("", |c| c);
    let (status, _) = d
        .post(
            &request("julie@boulangerie-martin.fr", "billing", WIDGET),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let health = client()
        .get(format!("{}/healthz", d.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let health: Value = health.json().await.expect("JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["outbox"]["queued"], 2);
    let metrics = client()
        .get(format!("{}/metrics", d.base))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.expect("text");
    for line in [
        "supportd_messages_ingested_total{action=\"new\"} 1",
        "supportd_outbox_rows{status=\"queued\"} 2",
        "supportd_quarantined_messages 0",
        "supportd_http_requests_total{route=\"/api/v1/requests\",status=\"201\"} 1",
        "supportd_healthy 1",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    // The page is there, and says to log in without a link.
    let page = client()
        .get(format!("{}/support", d.base))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(page.text().await.unwrap().contains("id=\"login\""));
    drop(d);

    let d = Daemon::start("metrics_listen = \"127.0.0.1:0\"", |c| c);
    let ops = d.ops_base.clone().expect("a second address");
    let moved = client()
        .get(format!("{}/metrics", d.base))
        .send()
        .await
        .expect("answer");
    assert_eq!(moved.status(), StatusCode::NOT_FOUND);
    let here = client()
        .get(format!("{ops}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(here.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_mailbox_that_cannot_log_in_makes_healthz_fail_with_the_reason() {
    let stack = Stack::shared();
    let d = Daemon::start_edited(
        "",
        |c| {
            c.address("support-http-health@example.test")
                .imap(&stack, "poll_interval = \"1s\"")
        },
        |text| {
            let right = format!("password = \"{}\"", stack.password);
            assert!(text.contains(&right), "{text}");
            text.replace(&right, "password = \"not-the-password\"")
        },
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let answer = client()
            .get(format!("{}/healthz", d.base))
            .send()
            .await
            .expect("answer");
        if answer.status() == StatusCode::SERVICE_UNAVAILABLE {
            break answer.json::<Value>().await.expect("JSON");
        }
        assert!(
            Instant::now() < deadline,
            "healthz still {}",
            answer.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body["status"], "failing");
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("IMAP authentication failing"), "{reasons}");
}

#[test]
fn the_confirmation_lands_in_the_customers_maildir_and_their_reply_threads_onto_the_ticket() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let stack = Stack::shared();
        let tag = format!(
            "{}{:06x}",
            std::process::id(),
            rand::random::<u32>() & 0xff_ffff
        );
        let support = format!("support-http-{tag}@example.test");
        let customer = format!("julie-http-{tag}@boulangerie-martin.fr");
        let mut d = Daemon::start("", |c| {
            c.address(&support)
                .team(&format!("team-http-{tag}@example.test"))
                .imap(&stack, "poll_interval = \"1s\"")
                .smtp(&stack)
        });
        let (status, answer) = d.post(&request(&customer, "technical", WIDGET), None).await;
        assert_eq!(status, StatusCode::CREATED, "{answer:#}");
        let ticket = answer["ticket"].as_str().expect("ticket").to_string();

        // The acknowledgement, delivered by Postfix into Dovecot's Maildir.
        let maildir = stack.maildir(&customer);
        let deadline = Instant::now() + Duration::from_secs(20);
        let ack = loop {
            if let Some(file) = maildir_files(&maildir).first() {
                break std::fs::read(file).expect("read the delivered mail");
            }
            assert!(
                Instant::now() < deadline,
                "no confirmation in {}",
                maildir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let parsed = mail_parser::MessageParser::default()
            .parse(&ack)
            .expect("parsable");
        let subject = parsed.subject().unwrap_or_default().to_string();
        assert!(subject.contains(&format!("[{ticket}]")), "{subject}");
        let text = parsed.body_text(0).expect("text").into_owned();
        assert!(text.contains("sous 24 à 48 heures"), "{text}");
        let ack_id = parsed.message_id().expect("Message-ID").to_string();
        let form_id = parsed
            .in_reply_to()
            .as_text()
            .expect("In-Reply-To the request")
            .to_string();
        assert!(form_id.starts_with("sd.form."), "{form_id}");

        // The customer answers from their mail client.
        let reply = format!(
            "From: Julie Martin <{customer}>\r\nTo: <{support}>\r\nSubject: Re: {subject}\r\n\
             Date: {date}\r\nMessage-ID: <reply-{tag}@boulangerie-martin.fr>\r\n\
             In-Reply-To: <{ack_id}>\r\nReferences: <{form_id}> <{ack_id}>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n\
             Voici une capture : https://img.example/widget.png\r\n",
            date = chrono::Utc::now().to_rfc2822(),
        );
        stack
            .send(Some(&customer), &support, reply.as_bytes())
            .await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let shown = loop {
            let shown = d.app.ticket(&ticket);
            if shown["message_count"].as_i64() >= Some(2) {
                break shown;
            }
            assert!(
                Instant::now() < deadline,
                "the reply never joined {ticket}: {shown:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let inbound: Vec<&Value> = shown["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| m["direction"] == "in")
            .collect();
        assert_eq!(inbound[1]["action"], "reply", "{shown:#}");
        assert!(
            inbound[1]["text"]
                .as_str()
                .unwrap_or("")
                .contains("capture"),
            "{shown:#}"
        );
        assert_eq!(d.app.stats().tickets, 1);
        assert!(d.stop().success());
    });
}
