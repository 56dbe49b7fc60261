//! The configuration every test runs with, built in one place.

use std::path::{Path, PathBuf};

use supportd::config::Config;

use super::crate_dir;
use super::mailstack::Stack;

/// A `supportd.toml` for a test: the crate's rules and templates, a database in the test's
/// folder, and what the test adds.
///
/// ```ignore
/// let config = TestConfig::new(dir)
///     .address("support-x@example.test")
///     .team("team@example.test")
///     .imap(&stack, "batch_size = 2")
///     .write();
/// ```
#[derive(Debug, Clone)]
pub struct TestConfig {
    dir: PathBuf,
    address: String,
    name: Option<String>,
    team: Option<String>,
    rules: PathBuf,
    /// The stack to log in to as `address`, and extra lines for `[imap]`.
    imap: Option<(Stack, String)>,
    smtp: Option<Stack>,
    /// Extra `key = value` lines for `[support]`.
    support_extra: Vec<String>,
    /// Whole sections (`[agents]\n...`) appended as they are.
    sections: Vec<String>,
    /// The lines of an `[http]` section, if any.
    http: Option<String>,
}

impl TestConfig {
    /// Support address `support@example.test`, database `data/supportd.sqlite3` under `dir`
    /// (also the folder relative paths are resolved from), no team address, no IMAP or SMTP.
    pub fn new(dir: &Path) -> TestConfig {
        TestConfig {
            dir: dir.to_path_buf(),
            address: "support@example.test".into(),
            name: None,
            team: None,
            rules: crate_dir().join("rules"),
            imap: None,
            smtp: None,
            support_extra: Vec::new(),
            sections: Vec::new(),
            http: None,
        }
    }

    /// Appends a whole section, e.g. `"[agents]\naddresses = [\"a@b\"]"`.
    pub fn section(mut self, text: &str) -> Self {
        self.sections.push(text.into());
        self
    }

    /// The support address; with [`TestConfig::imap`], also the IMAP user name.
    pub fn address(mut self, address: &str) -> Self {
        self.address = address.into();
        self
    }

    /// The display name on outgoing mail.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Where team notifications go.
    pub fn team(mut self, team: &str) -> Self {
        self.team = Some(team.into());
        self
    }

    /// A rules folder other than the crate's.
    pub fn rules(mut self, dir: &Path) -> Self {
        self.rules = dir.to_path_buf();
        self
    }

    /// An `[imap]` section logging in to `stack` as the support address over STARTTLS with
    /// the stack's CA; `extra` lines (`batch_size = 2`, `idle = false`, ...) are added to it.
    pub fn imap(mut self, stack: &Stack, extra: &str) -> Self {
        self.imap = Some((stack.clone(), extra.into()));
        self
    }

    /// An `[smtp]` section sending through `stack`'s Postfix over STARTTLS.
    pub fn smtp(mut self, stack: &Stack) -> Self {
        self.smtp = Some(stack.clone());
        self
    }

    /// One more `key = value` line in `[support]` (e.g. an unknown key).
    pub fn support_line(mut self, line: &str) -> Self {
        self.support_extra.push(line.into());
        self
    }

    /// An `[http]` section with these `key = value` lines (`listen = "127.0.0.1:0"`, ...).
    pub fn http(mut self, lines: &str) -> Self {
        self.http = Some(lines.into());
        self
    }

    /// Where the configuration file goes.
    pub fn path(&self) -> PathBuf {
        self.dir.join("supportd.toml")
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.dir.join("data/supportd.sqlite3")
    }

    /// The TOML text.
    pub fn text(&self) -> String {
        let mut support = format!("address = \"{}\"\n", self.address);
        if let Some(name) = &self.name {
            support.push_str(&format!("name = \"{name}\"\n"));
        }
        if let Some(team) = &self.team {
            support.push_str(&format!("team_address = \"{team}\"\n"));
        }
        for line in &self.support_extra {
            support.push_str(line);
            support.push('\n');
        }
        let mut text = format!(
            "[support]\n{support}\
             [storage]\ndatabase = \"data/supportd.sqlite3\"\n\
             [rules]\ndir = \"{rules}\"\n\
             [templates]\ndir = \"{templates}\"\n",
            rules = self.rules.display(),
            templates = crate_dir().join("templates").display(),
        );
        if let Some((stack, extra)) = &self.imap {
            text.push_str(&format!(
                "[imap]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"starttls\"\n\
                 ca_file = \"{ca}\"\nusername = \"{user}\"\npassword = \"{password}\"\n{extra}\n",
                port = stack.imap_port,
                ca = stack.ca_file.display(),
                user = self.address,
                password = stack.password,
            ));
        }
        if let Some(stack) = &self.smtp {
            text.push_str(&format!(
                "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"starttls\"\n\
                 ca_file = \"{ca}\"\n",
                port = stack.smtp_port,
                ca = stack.ca_file.display(),
            ));
        }
        for section in &self.sections {
            text.push_str(section);
            text.push('\n');
        }
        if let Some(lines) = &self.http {
            text.push_str(&format!("[http]\n{lines}\n"));
        }
        text
    }

    /// Writes the file; returns its path.
    pub fn write(&self) -> PathBuf {
        let path = self.path();
        std::fs::write(&path, self.text())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The configuration as the library reads it, without writing a file.
    pub fn load(&self) -> Config {
        let text = self.text();
        Config::from_toml(&text, &self.dir).unwrap_or_else(|e| panic!("config: {e}\n{text}"))
    }
}
