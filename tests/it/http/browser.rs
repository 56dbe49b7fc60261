//! The form page in a real browser: Debian's `chromium`, headless, driven over WebDriver by
//! Debian's `chromedriver` from Rust (fantoccini). `scripts/test` installs both and sets
//! `SUPPORTD_BROWSER_TESTS=required`; without them a plain `cargo test` skips these two tests
//! with a message, unless that variable asks for them.
//!
//! Each test signs an account link with the CLI, opens it, fills the form as a person would
//! and reads what the page shows; a screenshot of each screen goes to `target/test-output/`.
//! The machine has no network: the browser runs with background networking, updates and sync
//! off, in a fresh profile.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use super::Daemon;
use crate::helpers::crate_dir;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser at a time: two Chromiums on two cores only slow each other down.
static LOCK: Mutex<()> = Mutex::new(());

/// Whether the browser tests can run; panics when they must and cannot.
fn browser_installed() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let required = std::env::var("SUPPORTD_BROWSER_TESTS").is_ok_and(|v| v == "required");
    assert!(
        !required,
        "{CHROMIUM} or {CHROMEDRIVER} is missing: scripts/test installs the Debian packages \
         chromium and chromium-driver"
    );
    eprintln!(
        "[browser] skipped: {CHROMIUM} or {CHROMEDRIVER} is missing \
         (apt-get install chromium chromium-driver, or run scripts/test)"
    );
    false
}

/// chromedriver on a free port, with its log and a fresh browser profile; killed when dropped.
struct Driver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
    log: PathBuf,
}

impl Driver {
    fn start() -> Driver {
        let profile = tempfile::tempdir().expect("profile folder");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = profile.path().join("chromedriver.log");
        let out = File::create(&log).expect("chromedriver log");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver not listening within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile,
            log,
        }
    }

    /// A headless Chromium session in this driver's fresh profile.
    async fn session(&self) -> Client {
        let user_data = self.profile.path().join("chromium");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--window-size=1000,1400",
                    format!("--user-data-dir={}", user_data.display()),
                ],
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no WebDriver session: {e}\n--- chromedriver log ---\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Saves the page as `target/test-output/http-<name>.png`; returns the path.
async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.expect("screenshot");
    let dir = crate_dir().join("target/test-output");
    std::fs::create_dir_all(&dir).expect("test output folder");
    let path = dir.join(format!("http-{name}.png"));
    std::fs::write(&path, png).expect("write the screenshot");
    eprintln!("[browser] screenshot: {}", path.display());
    path
}

/// The form's address for Julie, signed by the CLI as the dashboard would.
fn signed_link(d: &Daemon, lang: &str) -> String {
    let signed: Value = d.app.json(&[
        "http",
        "sign-link",
        "julie@boulangerie-martin.fr",
        "--name",
        "Julie Martin",
        "--ttl",
        "10m",
        "--json",
    ]);
    let token = signed["token"].as_str().expect("token");
    format!("{}/support?account={token}&lang={lang}", d.base)
}

/// Runs `body` with a browser session on a fresh daemon, then ends the session.
fn in_browser<F>(body: impl FnOnce(Daemon, Client) -> F)
where
    F: std::future::Future<Output = ()>,
{
    if !browser_installed() {
        return;
    }
    let _one_browser = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let driver = Driver::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let daemon = Daemon::start("", |c| c);
        let client = driver.session().await;
        let ender = client.clone();
        body(daemon, client).await;
        let _ = ender.close().await;
    });
}

async fn text_of(client: &Client, id: &str) -> String {
    client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .text()
        .await
        .expect("text")
}

#[test]
fn a_customer_with_a_signed_link_fills_the_form_and_reads_the_confirmation() {
    in_browser(|d, client| async move {
        client
            .goto(&signed_link(&d, "fr"))
            .await
            .expect("open the link");
        let who = client
            .find(Locator::Css("p.who"))
            .await
            .expect("who")
            .text()
            .await
            .expect("text");
        assert!(
            who.contains("Julie Martin <julie@boulangerie-martin.fr>"),
            "{who}"
        );

        client
            .find(Locator::Css("input[name=category][value=technical]"))
            .await
            .expect("the Technique choice")
            .click()
            .await
            .expect("choose Technique");
        let text = "Le widget ne s'affiche plus sur https://boulangerie-martin.fr depuis hier, \
                    sous Firefox 140. L'ID du projet est p-4417.";
        client
            .find(Locator::Id("message"))
            .await
            .expect("the message")
            .send_keys(text)
            .await
            .expect("type the message");
        // The counter is the page's own script, allowed by the CSP.
        let counted = text_of(&client, "message-count").await;
        assert_eq!(
            counted,
            format!("{} / 5000 caractères", text.chars().count())
        );
        screenshot(&client, "form-filled").await;

        client
            .find(Locator::Id("submit"))
            .await
            .expect("the button")
            .click()
            .await
            .expect("submit");
        client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Id("ticket"))
            .await
            .expect("the confirmation screen");
        assert_eq!(text_of(&client, "ticket").await, "CHT-1");
        assert_eq!(text_of(&client, "category").await, "Technique");
        let promise = text_of(&client, "promise").await;
        assert!(promise.contains("sous 24 à 48 heures"), "{promise}");
        let ack = text_of(&client, "acknowledgement").await;
        assert!(ack.contains("e-mail de confirmation"), "{ack}");
        assert!(ack.contains("julie@boulangerie-martin.fr"), "{ack}");
        screenshot(&client, "confirmation").await;

        let ticket = d.app.ticket("CHT-1");
        assert_eq!(ticket["category"], "technical");
        assert_eq!(ticket["customer"], "julie@boulangerie-martin.fr");

        // Reloading the answer (the browser posts the form again) files nothing new.
        client.refresh().await.expect("reload");
        client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Id("ticket"))
            .await
            .expect("the confirmation again");
        assert_eq!(text_of(&client, "ticket").await, "CHT-1");
        assert_eq!(d.app.stats().tickets, 1);
    });
}

#[test]
fn nine_characters_come_back_with_the_error_next_to_the_message_and_the_text_kept() {
    in_browser(|d, client| async move {
        client
            .goto(&signed_link(&d, "fr"))
            .await
            .expect("open the link");
        client
            .find(Locator::Css("input[name=category][value=billing]"))
            .await
            .expect("the Facturation choice")
            .click()
            .await
            .expect("choose Facturation");
        client
            .find(Locator::Id("message"))
            .await
            .expect("the message")
            .send_keys("Facture ?")
            .await
            .expect("type nine characters");
        client
            .find(Locator::Id("submit"))
            .await
            .expect("the button")
            .click()
            .await
            .expect("submit");
        client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Id("message-error"))
            .await
            .expect("the error next to the message");
        let error = text_of(&client, "message-error").await;
        assert_eq!(
            error,
            "Votre message doit contenir au moins 10 caractères (il en a 9)."
        );
        // Next to its field: inside the message's fieldset, just above the text area.
        let in_field = client
            .find(Locator::Css(
                "#message-field #message-error + textarea#message",
            ))
            .await;
        assert!(in_field.is_ok(), "the error is not next to the message");
        let kept = client
            .find(Locator::Id("message"))
            .await
            .expect("the message")
            .prop("value")
            .await
            .expect("its value");
        assert_eq!(kept.as_deref(), Some("Facture ?"));
        let checked = client
            .find(Locator::Css("input[name=category][value=billing]"))
            .await
            .expect("the choice")
            .prop("checked")
            .await
            .expect("checked");
        assert_eq!(checked.as_deref(), Some("true"));
        screenshot(&client, "too-short").await;
        assert_eq!(d.app.stats().tickets, 0);
    });
}
