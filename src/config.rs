//! The typed configuration tree, read once from TOML.
//!
//! Entry point: [`Config::load`]. Unknown keys are an error that names the key, so a typo in an
//! admin's file never silently falls back to a default. Relative paths are resolved against the
//! folder of the config file, so the daemon behaves the same whatever its working directory.
//!
//! Values are parsed into what the code uses, not checked and kept as text: the time zone is a
//! `chrono_tz::Tz`, the robot pattern a compiled regex, the secret one [`SecretSource`], and
//! durations and sizes fit their types. So `supportd run` refuses a bad value at start rather
//! than failing on it later, and the TOML error shows the key's line (see `config/values.rs`).

mod agents;
mod http;
mod sla;
mod values;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use agents::AgentsConfig;
pub use http::HttpConfig;
pub use sla::SlaConfig;
pub use values::{KeySource, LocalPartPattern, Secret, WeekHours, parse_duration, parse_size};

/// Everything that can go wrong while reading the configuration.
///
/// Each message carries its cause and no variant returns it again from `source()`, so a
/// `{:#}` chain names it once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
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
    #[serde(default)]
    pub agents: AgentsConfig,
    #[serde(default)]
    pub sla: SlaConfig,
    pub imap: Option<ImapConfig>,
    pub smtp: Option<SmtpConfig>,
    /// The HTTP intake, health and metrics; see [`HttpConfig`].
    pub http: Option<HttpConfig>,
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
    /// IANA zone used to word due times in acknowledgements, e.g. "Europe/Paris".
    #[serde(default = "default_timezone", deserialize_with = "values::timezone")]
    pub timezone: chrono_tz::Tz,
    /// Further addresses that are ours (aliases): mail from them is never acknowledged.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Agent addresses: the older spelling of `[agents] addresses`, merged into it.
    #[serde(default)]
    pub agents: Vec<String>,
    /// A customer's reply to a ticket closed less than this many days ago reopens it; later, it
    /// opens a new ticket that names the old one.
    #[serde(default = "default_reopen_days")]
    pub reopen_days: u32,
}

fn default_reopen_days() -> u32 {
    14
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
    #[serde(default)]
    pub robot_local_parts: LocalPartPattern,
    /// At most this many acknowledgements to one address per rolling hour.
    #[serde(default = "default_acks_per_hour")]
    pub max_acks_per_hour: u32,
    /// At most this many acknowledgements to one address per rolling day.
    #[serde(default = "default_acks_per_day")]
    pub max_acks_per_day: u32,
    /// Mail the IMAP server received longer ago than this (its INTERNALDATE) is stored and
    /// notified but not acknowledged: a first start on a mailbox with history, or a long
    /// outage, must not answer months-old requests. 0 turns it off.
    #[serde(default = "default_max_ack_age", with = "values::duration_text")]
    pub max_ack_age: Duration,
    /// The authserv-id our own receiving server writes in `Authentication-Results` (RFC 8601
    /// §2.5). Only those headers are believed: any other could have been written by the
    /// sender. Unset: no mail counts as authenticated.
    pub authserv_id: Option<String>,
    /// Who gets an acknowledgement: everyone (`always`), or only senders whose mail passed
    /// DMARC, or aligned DKIM or SPF, at our server (`authenticated`; needs `authserv_id`).
    #[serde(default)]
    pub acknowledge: AcknowledgeMode,
}

/// `guard.acknowledge`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcknowledgeMode {
    #[default]
    Always,
    /// A forged sender gets no acknowledgement: no backscatter to the forged address.
    Authenticated,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            robot_local_parts: LocalPartPattern::default(),
            max_acks_per_hour: default_acks_per_hour(),
            max_acks_per_day: default_acks_per_day(),
            max_ack_age: default_max_ack_age(),
            authserv_id: None,
            acknowledge: AcknowledgeMode::default(),
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

/// Credentials shared by IMAP and SMTP, written as `username` plus at most one of the keys
/// `password`, `password_file`, `password_env` and `oauth2_token_command`.
///
/// A file that sets two of them is refused when it is read, naming both keys: guessing which
/// one wins would only show at the first login. No secret at all is allowed here (an SMTP relay
/// on loopback needs none); logging in without one fails in
/// [`Credentials::resolve`](crate::credentials::Credentials::resolve).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "RawAuth")]
pub struct AuthConfig {
    pub username: Option<String>,
    pub secret: Option<SecretSource>,
}

/// Where the password or token is read from: the one secret key set in the section.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// `password`: written in the config file itself.
    Password(Secret),
    /// `password_file`: a file holding the password (a trailing newline is dropped); read at
    /// every connection, so a rotated password is picked up on reconnect. Relative paths are
    /// resolved against the config file's folder.
    File(PathBuf),
    /// `password_env`: the name of an environment variable holding the password.
    Env(String),
    /// `oauth2_token_command`: a `sh -c` command whose stdout is an OAuth2 access token
    /// (SASL XOAUTH2); run at every connection.
    TokenCommand(String),
}

impl SecretSource {
    /// The configuration key this source is written with.
    pub fn key(&self) -> &'static str {
        match self {
            SecretSource::Password(_) => "password",
            SecretSource::File(_) => "password_file",
            SecretSource::Env(_) => "password_env",
            SecretSource::TokenCommand(_) => "oauth2_token_command",
        }
    }
}

/// The keys of an `[imap]` or `[smtp]` section as written, before the secret keys are merged
/// into one [`SecretSource`]. Unknown keys are refused by the enclosing section.
#[derive(Deserialize)]
struct RawAuth {
    username: Option<String>,
    password: Option<Secret>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    oauth2_token_command: Option<String>,
}

impl TryFrom<RawAuth> for AuthConfig {
    type Error = String;

    fn try_from(raw: RawAuth) -> Result<Self, String> {
        let sources: Vec<SecretSource> = [
            raw.password.map(SecretSource::Password),
            raw.password_file.map(SecretSource::File),
            raw.password_env.map(SecretSource::Env),
            raw.oauth2_token_command.map(SecretSource::TokenCommand),
        ]
        .into_iter()
        .flatten()
        .collect();
        if sources.len() > 1 {
            let keys: Vec<&str> = sources.iter().map(SecretSource::key).collect();
            let how_many = if keys.len() == 2 { "both" } else { "all" };
            return Err(format!(
                "{} are {how_many} set: keep one of password, password_file, password_env, \
                 oauth2_token_command",
                keys.join(" and ")
            ));
        }
        Ok(AuthConfig {
            username: raw.username,
            secret: sources.into_iter().next(),
        })
    }
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
    #[serde(default = "default_poll_interval", with = "values::duration_text")]
    pub poll_interval: Duration,
    #[serde(default = "default_max_message_size", with = "values::size_text")]
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
fn default_timezone() -> chrono_tz::Tz {
    chrono_tz::Tz::Europe__Paris
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
    /// The file cannot be read, is not valid TOML, has an unknown key, or a value does not parse
    /// (a duration or size too large, a time zone or regex that is not one, two secret sources
    /// in one section) or is out of range. TOML errors give the line and column of the value.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
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
        let legacy = config.support.agents.clone();
        config.agents.normalise(&legacy);
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
        if let Some(p) = self.sla.holidays.as_mut() {
            fix(p);
        }
        for auth in [
            self.imap.as_mut().map(|i| &mut i.auth),
            self.smtp.as_mut().map(|s| &mut s.auth),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(SecretSource::File(p)) = auth.secret.as_mut() {
                fix(p);
            }
        }
        if let Some(p) = self.imap.as_mut().and_then(|i| i.ca_file.as_mut()) {
            fix(p);
        }
        if let Some(p) = self.smtp.as_mut().and_then(|s| s.ca_file.as_mut()) {
            fix(p);
        }
        if let Some(http) = self.http.as_mut() {
            for p in [&mut http.api_token_file, &mut http.link_secret_file]
                .into_iter()
                .flatten()
            {
                fix(p);
            }
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
        if self.guard.acknowledge == AcknowledgeMode::Authenticated
            && self.guard.authserv_id.is_none()
        {
            return Err(
                "guard.acknowledge = \"authenticated\" needs guard.authserv_id (the id our own \
                 receiving server writes in Authentication-Results)"
                    .into(),
            );
        }
        if self.agents.require_authentication == Some(true) && self.guard.authserv_id.is_none() {
            return Err("agents.require_authentication = true needs guard.authserv_id".into());
        }
        if let Some(http) = &self.http {
            http.validate()?;
        }
        Ok(())
    }

    /// Returns true if and only if agent mail must carry our server's authentication results
    /// to be taken as the agent's.
    pub fn agents_need_authentication(&self) -> bool {
        self.agents
            .require_authentication
            .unwrap_or(self.guard.authserv_id.is_some())
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
    fn two_secret_sources_are_refused_when_the_file_is_read_naming_both_keys() {
        let text = format!(
            "{MINIMAL}[imap]\nhost = \"127.0.0.1\"\nusername = \"u\"\n\
             password = \"p\"\npassword_env = \"IMAP_PASSWORD\"\n"
        );
        let err = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert!(err.contains("[imap]"), "{err}");
        assert!(err.contains("password and password_env"), "{err}");
        let text = format!(
            "{MINIMAL}[smtp]\nhost = \"127.0.0.1\"\npassword_file = \"pw\"\n\
             oauth2_token_command = \"get-token\"\n"
        );
        let err = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert!(err.contains("[smtp]"), "{err}");
        assert!(
            err.contains("password_file and oauth2_token_command"),
            "{err}"
        );
    }

    #[test]
    fn one_secret_source_becomes_the_secret_with_its_path_resolved() {
        let text = format!(
            "{MINIMAL}[imap]\nhost = \"127.0.0.1\"\nusername = \"u\"\npassword_file = \"pw\"\n\
             [smtp]\nhost = \"127.0.0.1\"\n"
        );
        let c = Config::from_toml(&text, Path::new("/etc/supportd")).unwrap();
        let imap = c.imap.unwrap();
        assert_eq!(imap.auth.username.as_deref(), Some("u"));
        match imap.auth.secret {
            Some(SecretSource::File(p)) => assert_eq!(p, PathBuf::from("/etc/supportd/pw")),
            other => panic!("{other:?}"),
        }
        assert!(c.smtp.unwrap().auth.secret.is_none());
    }

    #[test]
    fn unknown_keys_beside_the_credentials_are_still_refused() {
        let text = format!(
            "{MINIMAL}[imap]\nhost = \"127.0.0.1\"\npassword = \"p\"\npasword_env = \"X\"\n"
        );
        let err = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert!(err.contains("pasword_env"), "{err}");
    }

    #[test]
    fn an_overflowing_duration_is_an_error_naming_the_key_not_a_panic() {
        let text = format!(
            "{MINIMAL}[imap]\nhost = \"127.0.0.1\"\npoll_interval = \"999999999999999999d\"\n"
        );
        let err = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert!(err.contains("poll_interval"), "{err}");
        assert!(err.contains("too long"), "{err}");
        let text = format!("{MINIMAL}[guard]\nmax_ack_age = \"9999999999999999h\"\n");
        let err = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert!(err.contains("max_ack_age"), "{err}");
        assert!(err.contains("too long"), "{err}");
        assert!(parse_duration("18446744073709551615s").is_ok());
        assert!(parse_duration("18446744073709551615m").is_err());
    }

    #[test]
    fn a_negative_duration_is_an_error_naming_the_key() {
        let text = format!("{MINIMAL}[guard]\nmax_ack_age = -5\n");
        let err = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert!(err.contains("max_ack_age"), "{err}");
        assert!(err.contains("expected a duration"), "{err}");
    }

    #[test]
    fn an_overflowing_size_is_an_error_naming_the_key_not_a_panic() {
        let text = format!(
            "{MINIMAL}[imap]\nhost = \"127.0.0.1\"\nmax_message_size = \"99999999999GB\"\n"
        );
        let err = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert!(err.contains("max_message_size"), "{err}");
        assert!(err.contains("too large"), "{err}");
        assert!(parse_size("18446744073709551615").is_ok());
        assert!(parse_size("18446744073709551615KiB").is_err());
    }

    #[test]
    fn a_bad_timezone_is_an_error_naming_the_key() {
        let text = "[support]\naddress = \"s@example.test\"\ntimezone = \"Mars/Olympus\"\n";
        let err = Config::from_toml(text, Path::new(".")).unwrap_err();
        assert!(err.contains("support.timezone"), "{err}");
        assert!(err.contains("Mars/Olympus"), "{err}");
        let text = "[support]\naddress = \"s@example.test\"\ntimezone = \"America/Montreal\"\n";
        let c = Config::from_toml(text, Path::new(".")).unwrap();
        assert_eq!(c.support.timezone, chrono_tz::Tz::America__Montreal);
        let c = Config::from_toml(MINIMAL, Path::new(".")).unwrap();
        assert_eq!(c.support.timezone, chrono_tz::Tz::Europe__Paris);
    }

    #[test]
    fn the_robot_pattern_is_compiled_anchored_and_checked_as_written() {
        let text = format!("{MINIMAL}[guard]\nrobot_local_parts = \"bot|daemon\"\n");
        let c = Config::from_toml(&text, Path::new(".")).unwrap();
        let re = c.guard.robot_local_parts.regex();
        assert!(re.is_match("BOT"));
        assert!(!re.is_match("robot"));
        let text = format!("{MINIMAL}[guard]\nrobot_local_parts = \"(\"\n");
        let err = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert!(err.contains("guard.robot_local_parts"), "{err}");
        // Valid only once wrapped in `^(?:...)$`, where it would match every local part.
        let text = format!("{MINIMAL}[guard]\nrobot_local_parts = \"x)|(.*\"\n");
        assert!(Config::from_toml(&text, Path::new(".")).is_err());
        let default = LocalPartPattern::default();
        assert!(default.regex().is_match("No-Reply"));
        assert!(!default.regex().is_match("julie"));
    }

    #[test]
    fn sla_defaults_to_office_hours_in_the_support_zone_and_reads_what_is_written() {
        let c = Config::from_toml(MINIMAL, Path::new("/etc/supportd")).unwrap();
        assert_eq!(c.sla.zone(&c.support), chrono_tz::Tz::Europe__Paris);
        assert_eq!(c.sla.hours.days()[0], vec![(540, 1080)]);
        assert!(c.sla.hours.days()[5].is_empty() && c.sla.hours.days()[6].is_empty());
        assert_eq!(c.sla.at_risk, 0.8);
        let text = format!(
            "{MINIMAL}[sla]\ntimezone = \"America/Montreal\"\nholidays = \"holidays.ics\"\n\
             at_risk = \"75%\"\nhours = {{ mon = \"09:00-12:30,13:30-18:00\", sat = \"\" }}\n"
        );
        let c = Config::from_toml(&text, Path::new("/etc/supportd")).unwrap();
        assert_eq!(c.sla.zone(&c.support), chrono_tz::Tz::America__Montreal);
        assert_eq!(c.sla.hours.days()[0], vec![(540, 750), (810, 1080)]);
        assert!(
            c.sla.hours.days()[1].is_empty(),
            "a day left out is a day off"
        );
        assert_eq!(c.sla.at_risk, 0.75);
        assert_eq!(
            c.sla.holidays,
            Some(PathBuf::from("/etc/supportd/holidays.ics"))
        );
    }

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../supportd.example.toml");
        let c = Config::from_toml(text, Path::new("/etc/supportd")).unwrap();
        assert_eq!(c.sla.hours.days()[4], vec![(540, 1080)]);
        assert_eq!(c.sla.at_risk, 0.8);
    }

    #[test]
    fn bad_sla_values_are_errors_naming_the_key() {
        for (line, key) in [
            ("hours = { mon = \"9h-18h\" }", "9h-18h"),
            ("hours = { monday = \"09:00-18:00\" }", "monday"),
            ("hours = { mon = \"\", tue = \"\" }", "no working hours"),
            ("at_risk = 1.5", "at_risk"),
            ("at_risk = \"often\"", "at_risk"),
            ("timezone = \"Paris\"", "sla.timezone"),
        ] {
            let text = format!("{MINIMAL}[sla]\n{line}\n");
            let err = Config::from_toml(&text, Path::new(".")).unwrap_err();
            assert!(err.contains(key), "{line}: {err}");
        }
    }

    #[test]
    fn an_unreadable_file_names_its_cause_once_in_the_chain() {
        let err = Config::load(Path::new("/nonexistent/supportd.toml")).unwrap_err();
        let cause = std::fs::read("/nonexistent/supportd.toml")
            .unwrap_err()
            .to_string();
        let chain = format!(
            "{:#}",
            anyhow::Error::new(err).context("loading the config")
        );
        assert_eq!(chain.matches(&cause).count(), 1, "{chain}");
        assert!(chain.contains("/nonexistent/supportd.toml"), "{chain}");
    }
}
