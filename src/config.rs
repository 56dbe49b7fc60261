//! The typed configuration tree, read once from TOML.
//!
//! Entry point: [`Config::load`]. Unknown keys are an error that names the key, so a typo in an
//! admin's file never silently falls back to a default. Relative paths are resolved against the
//! folder of the config file, so the daemon behaves the same whatever its working directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Everything that can go wrong while reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub support: SupportConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub rules: RulesConfig,
    #[serde(default)]
    pub templates: TemplatesConfig,
    #[serde(default)]
    pub guard: GuardConfig,
    pub imap: Option<ImapConfig>,
    pub smtp: Option<SmtpConfig>,
    /// Folder of the config file; relative paths were resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Who we are on the wire and how tickets are named.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportConfig {
    /// The support mailbox address customers write to.
    pub address: String,
    #[serde(default = "default_name")]
    pub name: String,
    /// Ticket references are `<prefix>-<n>`; the subject token is `[<prefix>-<n>]`.
    #[serde(default = "default_prefix")]
    pub ticket_prefix: String,
    #[serde(default = "default_locale")]
    pub default_locale: String,
    /// Where team notifications go; none are queued when unset.
    pub team_address: Option<String>,
    /// IANA zone used to word due times in acknowledgements.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Further addresses that are ours (aliases): mail from them is never acknowledged.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Agent addresses: they may post on any ticket.
    #[serde(default)]
    pub agents: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default = "default_database")]
    pub database: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            database: default_database(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    #[serde(default = "default_rules_dir")]
    pub dir: PathBuf,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            dir: default_rules_dir(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    #[serde(default = "default_templates_dir")]
    pub dir: PathBuf,
}

impl Default for TemplatesConfig {
    fn default() -> Self {
        Self {
            dir: default_templates_dir(),
        }
    }
}

/// Loop protection and acknowledgement limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// Local parts (regex, case-insensitive, whole local part) that are machines, never people.
    #[serde(default = "default_robot_local_parts")]
    pub robot_local_parts: String,
    /// At most this many acknowledgements to one address per rolling hour.
    #[serde(default = "default_acks_per_hour")]
    pub max_acks_per_hour: u32,
    /// At most this many acknowledgements to one address per rolling day.
    #[serde(default = "default_acks_per_day")]
    pub max_acks_per_day: u32,
    /// Mail the IMAP server received longer ago than this (its INTERNALDATE) is stored and
    /// notified but not acknowledged: a first start on a mailbox with history, or a long
    /// outage, must not answer months-old requests. 0 turns it off.
    #[serde(default = "default_max_ack_age", with = "duration_text")]
    pub max_ack_age: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            robot_local_parts: default_robot_local_parts(),
            max_acks_per_hour: default_acks_per_hour(),
            max_acks_per_day: default_acks_per_day(),
            max_ack_age: default_max_ack_age(),
        }
    }
}

/// How a mail server connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS before authentication.
    Starttls,
    /// No TLS at all; only accepted for loopback hosts.
    None,
}

/// What to do on the server with a message once it is committed to SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterIngest {
    /// Set the `$Ticketed` keyword.
    Keyword,
    /// Move to `processed_mailbox`.
    Move,
    /// Leave it; the UID watermark alone prevents a second ingest.
    None,
}

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Credentials shared by IMAP and SMTP; exactly one source is used.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// Command whose stdout is an OAuth2 access token (XOAUTH2).
    pub oauth2_token_command: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    pub host: String,
    pub port: Option<u16>,
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
    #[serde(flatten)]
    pub auth: AuthConfig,
    #[serde(default = "default_mailbox")]
    pub mailbox: String,
    #[serde(default = "default_after")]
    pub after: AfterIngest,
    pub processed_mailbox: Option<String>,
    #[serde(default = "default_true")]
    pub idle: bool,
    #[serde(default = "default_poll_interval", with = "duration_text")]
    pub poll_interval: Duration,
    #[serde(default = "default_max_message_size", with = "size_text")]
    pub max_message_size: u64,
    /// Messages fetched and committed per transaction.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: Option<u16>,
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
    #[serde(flatten)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub append_sent: bool,
}

fn default_name() -> String {
    "Support".into()
}
fn default_prefix() -> String {
    "CHT".into()
}
fn default_locale() -> String {
    "fr".into()
}
fn default_timezone() -> String {
    "Europe/Paris".into()
}
fn default_database() -> PathBuf {
    "data/supportd.sqlite3".into()
}
fn default_rules_dir() -> PathBuf {
    "rules".into()
}
fn default_templates_dir() -> PathBuf {
    "templates".into()
}
fn default_robot_local_parts() -> String {
    r"mailer-daemon|postmaster|abuse|root|noreply|no[-_.]?reply(?:[-_.+].*)?|do[-_.]?not[-_.]?reply(?:[-_.+].*)?|bounces?(?:[-_.+].*)?|notifications?".into()
}
fn default_max_ack_age() -> Duration {
    Duration::from_secs(7 * 86400)
}
fn default_acks_per_hour() -> u32 {
    3
}
fn default_acks_per_day() -> u32 {
    10
}
fn default_tls() -> TlsMode {
    TlsMode::Implicit
}
fn default_mailbox() -> String {
    "INBOX".into()
}
fn default_after() -> AfterIngest {
    AfterIngest::Keyword
}
fn default_true() -> bool {
    true
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_max_message_size() -> u64 {
    25 * 1000 * 1000
}
fn default_batch_size() -> u32 {
    200
}

impl Config {
    /// Reads and validates the file at `path`, resolving relative paths against its folder.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML, has an unknown key, or a value is out of range.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Self::from_toml(&text, &base).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses `text` as if it were a file in `base_dir`.
    ///
    /// # Errors
    /// A human-readable reason, naming the key where the TOML parser knows it.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Config, String> {
        let mut config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.base_dir = base_dir.to_path_buf();
        config.resolve_paths();
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self) {
        let base = self.base_dir.clone();
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.storage.database);
        fix(&mut self.rules.dir);
        fix(&mut self.templates.dir);
        for auth in [
            self.imap.as_mut().map(|i| &mut i.auth),
            self.smtp.as_mut().map(|s| &mut s.auth),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(p) = auth.password_file.as_mut() {
                fix(p);
            }
        }
        if let Some(p) = self.imap.as_mut().and_then(|i| i.ca_file.as_mut()) {
            fix(p);
        }
        if let Some(p) = self.smtp.as_mut().and_then(|s| s.ca_file.as_mut()) {
            fix(p);
        }
    }

    fn validate(&self) -> Result<(), String> {
        if !looks_like_address(&self.support.address) {
            return Err(format!(
                "support.address {:?} is not an e-mail address",
                self.support.address
            ));
        }
        if let Some(team) = &self.support.team_address
            && !looks_like_address(team)
        {
            return Err(format!(
                "support.team_address {team:?} is not an e-mail address"
            ));
        }
        let prefix = &self.support.ticket_prefix;
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "support.ticket_prefix {prefix:?} must be letters and digits only"
            ));
        }
        if self.support.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(format!(
                "support.timezone {:?} is not an IANA time zone",
                self.support.timezone
            ));
        }
        regex::Regex::new(&self.guard.robot_local_parts)
            .map_err(|e| format!("guard.robot_local_parts is not a valid regex: {e}"))?;
        if let Some(imap) = &self.imap {
            check_tls("imap", &imap.host, imap.tls)?;
            if imap.after == AfterIngest::Move && imap.processed_mailbox.is_none() {
                return Err("imap.after = \"move\" needs imap.processed_mailbox".into());
            }
            if imap.batch_size == 0 {
                return Err("imap.batch_size must be at least 1".into());
            }
        }
        if let Some(smtp) = &self.smtp {
            check_tls("smtp", &smtp.host, smtp.tls)?;
        }
        Ok(())
    }

    /// The support address, lower-cased, and every alias: mail from these is ours.
    pub fn own_addresses(&self) -> Vec<String> {
        std::iter::once(&self.support.address)
            .chain(self.support.aliases.iter())
            .map(|a| a.to_ascii_lowercase())
            .collect()
    }

    /// The domain of the support address; our Message-IDs end with it.
    pub fn support_domain(&self) -> &str {
        self.support
            .address
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or("localhost")
    }
}

fn check_tls(section: &str, host: &str, tls: TlsMode) -> Result<(), String> {
    if tls == TlsMode::None && !is_loopback(host) {
        return Err(format!(
            "{section}.tls = \"none\" is only allowed for a loopback host, not {host:?}"
        ));
    }
    Ok(())
}

/// Returns true if and only if `host` names this machine (so plaintext cannot leave it).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn looks_like_address(s: &str) -> bool {
    matches!(s.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !s.contains(char::is_whitespace))
}

/// Durations written as "30s", "5m", "1h" or a bare number of seconds.
mod duration_text {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => super::parse_duration(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Sizes written as "25MB", "512KB", "1GB" or a bare number of bytes.
mod size_text {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(b) => Ok(b),
            Raw::Text(t) => super::parse_size(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Parses "30s", "5m", "2h", "1d", "250ms" or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    let secs = |m: u64| Ok(Duration::from_secs(n * m));
    match unit.trim() {
        "" | "s" => secs(1),
        "ms" => Ok(Duration::from_millis(n)),
        "m" | "min" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        other => Err(format!("invalid duration unit {other:?} in {text:?}")),
    }
}

/// Parses "25MB", "512KB", "1GB" (decimal units; KiB/MiB/GiB binary) or plain bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {text:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" => 1000,
        "MB" | "M" => 1000 * 1000,
        "GB" | "G" => 1000 * 1000 * 1000,
        "KIB" => 1024,
        "MIB" => 1024 * 1024,
        "GIB" => 1024 * 1024 * 1024,
        other => return Err(format!("invalid size unit {other:?} in {text:?}")),
    };
    Ok(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[support]\naddress = \"support@example.test\"\n";

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = Config::from_toml(MINIMAL, Path::new("/etc/supportd")).unwrap();
        assert_eq!(c.support.ticket_prefix, "CHT");
        assert_eq!(c.support.default_locale, "fr");
        assert_eq!(
            c.storage.database,
            PathBuf::from("/etc/supportd/data/supportd.sqlite3")
        );
        assert_eq!(c.rules.dir, PathBuf::from("/etc/supportd/rules"));
        assert_eq!(c.guard.max_acks_per_hour, 3);
    }

    #[test]
    fn unknown_key_is_an_error_naming_the_key() {
        let err = Config::from_toml(
            "[support]\naddress = \"s@example.test\"\nticket_prefx = \"X\"\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(err.contains("ticket_prefx"), "{err}");
    }

    #[test]
    fn missing_address_is_an_error() {
        let err = Config::from_toml("[support]\nname = \"x\"\n", Path::new(".")).unwrap_err();
        assert!(err.contains("address"), "{err}");
    }

    #[test]
    fn plaintext_to_a_remote_host_is_refused() {
        let text = format!("{MINIMAL}[imap]\nhost = \"imap.example.com\"\ntls = \"none\"\n");
        let err = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        let ok = format!("{MINIMAL}[imap]\nhost = \"127.0.0.1\"\ntls = \"none\"\n");
        assert!(Config::from_toml(&ok, Path::new(".")).is_ok());
    }

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("25MB").unwrap(), 25_000_000);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
