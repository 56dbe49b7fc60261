//! The local mail stack (`scripts/mailstack`: Dovecot and Postfix on 127.0.0.1) and the
//! customer's side of it: sending through Postfix, reading and filling mailboxes over IMAP.
//!
//! Every address is a mailbox of its own on the stack (one password for all), so a test that
//! makes up fresh addresses sees no other test's mail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_imap::types::{Fetch, Flag};
use futures::TryStreamExt;
use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use supportd::config::ImapConfig;
use supportd::mailbox::imap;

use super::config::TestConfig;
use super::crate_dir;

/// The settings a test needs, as `scripts/mailstack env` and `start` print them.
const KEYS: [&str; 6] = [
    "MAILSTACK_DIR",
    "MAILSTACK_IMAP_PORT",
    "MAILSTACK_IMAPS_PORT",
    "MAILSTACK_SMTP_PORT",
    "MAILSTACK_PASSWORD",
    "MAILSTACK_CA_FILE",
];

/// A running mail stack: where it lives and how to reach it.
#[derive(Debug, Clone)]
pub struct Stack {
    /// `MAILSTACK_DIR`: configs, Maildirs (`mail/DOMAIN/USER/Maildir`), logs.
    pub dir: PathBuf,
    /// IMAP with STARTTLS.
    pub imap_port: u16,
    /// IMAP over TLS.
    pub imaps_port: u16,
    /// Postfix; relays for 127.0.0.0/8, STARTTLS offered.
    pub smtp_port: u16,
    /// Every user's password.
    pub password: String,
    /// The CA that signed the servers' certificate.
    pub ca_file: PathBuf,
    /// Environment the script needs to address this stack (empty: the inherited one).
    env: Vec<(String, String)>,
}

impl Stack {
    /// The shared stack, read once per process: from the `MAILSTACK_*` environment when all of
    /// it is set (`scripts/test` exports it after starting the stack), else from what
    /// `scripts/mailstack start` prints (idempotent: it starts what is not running).
    pub fn shared() -> Stack {
        static SHARED: OnceLock<Stack> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                if KEYS.iter().all(|k| std::env::var_os(k).is_some()) {
                    Stack::from_settings(|k| std::env::var(k).ok(), Vec::new())
                } else {
                    Stack::start(Vec::new())
                }
            })
            .clone()
    }

    /// Starts (or finds running) the stack that `env` addresses and reads its settings.
    fn start(env: Vec<(String, String)>) -> Stack {
        let text = run_script(&env, &["start"]);
        let printed = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim().trim_matches('\'').to_string())
        };
        Stack::from_settings(printed, env)
    }

    /// The one reader of the settings: `get` looks a `MAILSTACK_*` key up.
    fn from_settings(get: impl Fn(&str) -> Option<String>, env: Vec<(String, String)>) -> Stack {
        let get =
            |key: &str| get(key).unwrap_or_else(|| panic!("mail stack setting {key} missing"));
        let port = |key: &str| {
            get(key)
                .parse::<u16>()
                .unwrap_or_else(|e| panic!("{key}: not a port number: {e}"))
        };
        Stack {
            dir: get("MAILSTACK_DIR").into(),
            imap_port: port("MAILSTACK_IMAP_PORT"),
            imaps_port: port("MAILSTACK_IMAPS_PORT"),
            smtp_port: port("MAILSTACK_SMTP_PORT"),
            password: get("MAILSTACK_PASSWORD"),
            ca_file: get("MAILSTACK_CA_FILE").into(),
            env,
        }
    }

    /// Runs `scripts/mailstack ARGS` on this stack (e.g. `stop-dovecot`).
    pub fn script(&self, args: &[&str]) {
        run_script(&self.env, args);
    }

    /// IMAP settings to log in as `user` (every address is a mailbox; one password for all).
    pub fn imap(&self, user: &str) -> ImapConfig {
        TestConfig::new(&std::env::temp_dir())
            .address(user)
            .imap(self, "")
            .load()
            .imap
            .expect("[imap]")
    }

    /// Dovecot's Maildir of `address` (`home = <dir>/mail/%d/%n`, user names lower-cased).
    pub fn maildir(&self, address: &str) -> PathBuf {
        let address = address.to_ascii_lowercase();
        let (user, domain) = address.split_once('@').expect("an address");
        self.dir
            .join("mail")
            .join(domain)
            .join(user)
            .join("Maildir")
    }

    /// A plain SMTP connection to Postfix, reusable for many messages. TCP_NODELAY: lettre
    /// writes a message and its final dot separately, and with Nagle's algorithm each message
    /// would wait ~40 ms for a delayed ACK.
    pub async fn smtp(&self) -> Smtp {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.smtp_port))
            .await
            .expect("connect to Postfix");
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        Smtp(
            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &ClientId::default())
                .await
                .expect("SMTP greeting and EHLO"),
        )
    }

    /// Sends one message through Postfix on a connection of its own; returns when Postfix
    /// accepted it. `from` None is the null reverse-path of bounces.
    pub async fn send(&self, from: Option<&str>, to: &str, raw: &[u8]) -> Instant {
        let mut smtp = self.smtp().await;
        let accepted = smtp.send(from, to, raw).await;
        let _ = smtp.0.quit().await;
        accepted
    }

    /// Puts `raw` into `user`'s `mailbox` as a mail client would, with `flags` (e.g.
    /// `(\Seen)`): synchronous, unlike a delivery.
    pub async fn append(&self, user: &str, mailbox: &str, raw: &[u8], flags: Option<&str>) {
        let mut session = imap::connect(&self.imap(user)).await.expect("IMAP login");
        session
            .append(mailbox, flags, None, raw)
            .await
            .expect("APPEND");
        let _ = session.logout().await;
    }

    /// Messages in `user`'s `mailbox` (EXAMINE).
    pub async fn exists(&self, user: &str, mailbox: &str) -> u32 {
        let mut session = imap::connect(&self.imap(user)).await.expect("IMAP login");
        let n = session.examine(mailbox).await.expect("EXAMINE").exists;
        let _ = session.logout().await;
        n
    }

    /// Messages in `user`'s INBOX per IMAP STATUS.
    pub async fn status_messages(&self, user: &str) -> u32 {
        let mut session = imap::connect(&self.imap(user)).await.expect("IMAP login");
        let n = session
            .status("INBOX", "(MESSAGES)")
            .await
            .expect("STATUS")
            .exists;
        let _ = session.logout().await;
        n
    }

    /// UID → flags of every message in `user`'s `mailbox`, by UID.
    pub async fn flags(&self, user: &str, mailbox: &str) -> Vec<(u32, Vec<String>)> {
        let mut session = imap::connect(&self.imap(user)).await.expect("IMAP login");
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
        let _ = session.logout().await;
        out.sort();
        out
    }

    /// Every message in `user`'s INBOX, oldest first, without marking anything read.
    pub async fn inbox(&self, user: &str) -> Vec<Vec<u8>> {
        let mut session = imap::connect(&self.imap(user)).await.expect("IMAP login");
        let all = fetch_inbox(&mut session).await;
        let _ = session.logout().await;
        all
    }

    /// Waits until `user`'s INBOX holds at least `n` messages, then returns them all.
    pub async fn wait_inbox(&self, user: &str, n: usize, within: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut session = imap::connect(&self.imap(user)).await.expect("IMAP login");
        loop {
            let exists = session.examine("INBOX").await.expect("EXAMINE").exists as usize;
            if exists >= n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{user}: {exists} of {n} messages after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let all = fetch_inbox(&mut session).await;
        let _ = session.logout().await;
        all
    }
}

/// Every message in the session's INBOX, oldest first, without marking anything read.
async fn fetch_inbox(session: &mut imap::Session) -> Vec<Vec<u8>> {
    let selected = session.examine("INBOX").await.expect("EXAMINE");
    if selected.exists == 0 {
        return Vec::new();
    }
    let fetches: Vec<Fetch> = session
        .fetch("1:*", "BODY.PEEK[]")
        .await
        .expect("FETCH")
        .try_collect()
        .await
        .expect("FETCH answers");
    fetches
        .iter()
        .filter_map(|f| f.body().map(<[u8]>::to_vec))
        .collect()
}

/// Files in a Maildir's new/ and cur/ (none when it does not exist yet).
pub fn maildir_files(maildir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(maildir.join(sub)) {
            out.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
        }
    }
    out.sort();
    out
}

/// An SMTP connection to Postfix.
pub struct Smtp(pub AsyncSmtpConnection);

impl Smtp {
    /// Sends `raw` from `from` (None: the null reverse-path of bounces) to `to`; returns when
    /// Postfix accepted it.
    pub async fn send(&mut self, from: Option<&str>, to: &str, raw: &[u8]) -> Instant {
        let envelope = Envelope::new(
            from.map(|f| f.parse().expect("sender address")),
            vec![to.parse().expect("recipient address")],
        )
        .expect("envelope");
        self.0
            .send(&envelope, raw)
            .await
            .expect("Postfix accepts the mail");
        Instant::now()
    }
}

fn run_script(env: &[(String, String)], args: &[&str]) -> String {
    let script = crate_dir().join("scripts/mailstack");
    let out = Command::new(&script)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "mailstack {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A second stack with its own directory and ports, for a test that stops servers; stopped
/// and deleted when dropped, also when the test fails (its logs printed then).
pub struct PrivateStack {
    pub stack: Stack,
}

impl PrivateStack {
    pub fn start() -> PrivateStack {
        let ports = free_ports(4);
        let dir = format!("/tmp/sd-e2e-{}", std::process::id());
        let env: Vec<(String, String)> = [
            ("MAILSTACK_DIR", dir),
            ("MAILSTACK_IMAP_PORT", ports[0].to_string()),
            ("MAILSTACK_IMAPS_PORT", ports[1].to_string()),
            ("MAILSTACK_SMTP_PORT", ports[2].to_string()),
            ("MAILSTACK_LMTP_PORT", ports[3].to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        PrivateStack {
            stack: Stack::start(env),
        }
    }
}

impl Drop for PrivateStack {
    fn drop(&mut self) {
        let script = crate_dir().join("scripts/mailstack");
        let env = self.stack.env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        if std::thread::panicking()
            && let Ok(out) = Command::new(&script).arg("logs").envs(env.clone()).output()
        {
            eprintln!(
                "--- private mailstack logs ---\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // `clean` is `stop --fast` and then the directory goes.
        let _ = Command::new(&script)
            .arg("clean")
            .envs(env)
            .stdin(Stdio::null())
            .output();
    }
}

/// `n` distinct ports nobody listens on right now.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}
