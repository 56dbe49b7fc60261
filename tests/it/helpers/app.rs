//! The real `supportd` binary on a test's own configuration and database, asked through its
//! `--json` commands.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_json::Value;

use super::config::TestConfig;
use super::log_filter;

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_supportd");

/// A scratch installation: a temporary folder with `supportd.toml` and the database under it.
pub struct App {
    /// `None` once [`App::keep`] handed the folder over.
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    pub config: PathBuf,
    pub database: PathBuf,
    /// `SUPPORTD_NOW` for every command from now on (RFC 3339), see [`App::set_now`].
    now: std::sync::Mutex<Option<String>>,
}

/// `supportd stats --json`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Stats {
    /// Inbound messages stored.
    pub messages: i64,
    pub tickets: i64,
    pub automated: i64,
    pub duplicates: i64,
    pub quarantined: i64,
    /// Acknowledgements queued or being sent.
    pub acks_queued: i64,
    pub acks_sent: i64,
    pub acks_suppressed: i64,
    /// Team notifications queued or being sent.
    pub notifications_queued: i64,
    /// Escalations ("at risk", "breached") queued or being sent.
    pub escalations_queued: i64,
}

impl Stats {
    /// Outgoing mail not sent yet (queued or being sent): acknowledgements, notifications and
    /// escalations are the kinds there are.
    pub fn unsent(&self) -> i64 {
        self.acks_queued + self.notifications_queued + self.escalations_queued
    }
}

impl App {
    /// The default test installation: `support@example.test` named "Support Chatim", team
    /// `team@example.test`, the crate's rules and templates.
    pub fn new() -> App {
        App::with(|c| c)
    }

    /// The default installation changed by `f` before the file is written.
    pub fn with(f: impl FnOnce(TestConfig) -> TestConfig) -> App {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = f(TestConfig::new(dir.path())
            .name("Support Chatim")
            .team("team@example.test"));
        App {
            root: dir.path().to_path_buf(),
            config: config.write(),
            database: config.database(),
            dir: Some(dir),
            now: std::sync::Mutex::new(None),
        }
    }

    /// Runs every later command (the daemon included) as if it were `rfc3339` (`SUPPORTD_NOW`).
    pub fn set_now(&self, rfc3339: &str) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = Some(rfc3339.to_string());
    }

    /// The temporary folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Keeps the folder after the test (for a post-mortem); returns it.
    pub fn keep(&mut self) -> PathBuf {
        match self.dir.take() {
            Some(dir) => dir.keep(),
            None => self.root.clone(),
        }
    }

    /// Writes `bytes` to `name` in the folder; returns the path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.root.join(name);
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }

    /// `supportd --config CONFIG`, logs off unless `TEST_LOG` is set, with `SUPPORTD_NOW` when
    /// [`App::set_now`] set it.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(&self.config);
        cmd.env("RUST_LOG", log_filter().unwrap_or_else(|| "off".into()));
        match self
            .now
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
        {
            Some(now) => cmd.env("SUPPORTD_NOW", now),
            None => cmd.env_remove("SUPPORTD_NOW"),
        };
        cmd
    }

    /// Runs a command to the end.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command().args(args).output().expect("run supportd");
        echo(args, &out);
        out
    }

    /// Runs a command with `input` on its stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn supportd");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        let out = child.wait_with_output().expect("wait");
        echo(args, &out);
        out
    }

    /// Runs a command that must succeed and print one JSON document.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "supportd {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "supportd {args:?} printed no JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `ingest --json PATH`: the whole document (`messages`: one outcome per message,
    /// `errors`: inputs that could not be read).
    pub fn ingest_json(&self, path: &Path) -> Value {
        self.json(&["ingest", "--json", &path.display().to_string()])
    }

    /// `ingest --json PATH`: one outcome per message (source, ticket, action, category,
    /// message_id, automated, ack, reason, error).
    pub fn ingest(&self, path: &Path) -> Vec<Value> {
        array(self.ingest_json(path)["messages"].take())
    }

    /// The outcome of ingesting a file that holds one message.
    pub fn ingest_one(&self, path: &Path) -> Value {
        let mut outcomes = self.ingest(path);
        assert_eq!(outcomes.len(), 1, "{}: {outcomes:#?}", path.display());
        outcomes.remove(0)
    }

    /// `quarantine retry ARGS --json`: one outcome per message run again.
    pub fn quarantine_retry(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["quarantine", "retry"];
        all.extend_from_slice(args);
        all.push("--json");
        array(self.json(&all)["messages"].take())
    }

    /// `quarantine list --json`.
    pub fn quarantine(&self) -> Vec<Value> {
        array(self.json(&["quarantine", "list", "--json"]))
    }

    /// `tickets list --json`, oldest first.
    pub fn tickets(&self) -> Vec<Value> {
        array(self.json(&["tickets", "list", "--json"]))
    }

    /// `tickets show REF --json`: the ticket, with its `messages` in and out.
    pub fn ticket(&self, reference: &str) -> Value {
        self.json(&["tickets", "show", reference, "--json"])
    }

    /// `outbox list --json`, by id.
    pub fn outbox(&self) -> Vec<Value> {
        array(self.json(&["outbox", "list", "--json"]))
    }

    /// `outbox list --status STATUS --json`.
    pub fn outbox_with_status(&self, status: &str) -> Vec<Value> {
        array(self.json(&["outbox", "list", "--status", status, "--json"]))
    }

    /// `outbox show ID --raw`: the exact bytes that are (or would be) sent.
    pub fn outbox_raw(&self, id: i64) -> Vec<u8> {
        let out = self.run(&["outbox", "show", &id.to_string(), "--raw"]);
        assert!(
            out.status.success(),
            "outbox show {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `stats --json`.
    pub fn stats(&self) -> Stats {
        let v = self.json(&["stats", "--json"]);
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("stats: {e}: {v:#}"))
    }

    /// `status --json`: mailboxes, outbox counts by status, quarantine.
    pub fn status(&self) -> Value {
        self.json(&["status", "--json"])
    }

    /// Outbox rows per status (`queued`, `sending`, `sent`, ...), from `status --json`; a
    /// status with no row is absent.
    pub fn outbox_counts(&self) -> BTreeMap<String, i64> {
        let status = self.status();
        serde_json::from_value(status["outbox"].clone())
            .unwrap_or_else(|e| panic!("status outbox: {e}: {status:#}"))
    }
}

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        other => panic!("not a JSON array: {other:#}"),
    }
}

/// With `TEST_LOG`, what a command wrote on stderr goes to the test's output.
fn echo(args: &[&str], out: &Output) {
    if log_filter().is_some() && !out.stderr.is_empty() {
        eprintln!(
            "supportd {args:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
