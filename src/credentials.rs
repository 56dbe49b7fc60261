//! Secrets for IMAP and SMTP: a password from the config, a file or the environment, or an
//! OAuth2 access token printed by a command (how Gmail and Microsoft 365 mailboxes are reached).
//!
//! Entry point: [`Credentials::resolve`]. Secrets are never logged: they live in
//! [`Secret`], whose `Debug` prints stars.

use std::process::Command;

use crate::config::{AuthConfig, Secret, SecretSource};

/// Why no credentials could be had. Two secret sources cannot happen here: the configuration
/// refuses them when it is read.
///
/// Each message carries its cause and no variant returns it again from `source()`, so a
/// `{:#}` chain names it once.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("no username configured")]
    NoUsername,
    #[error(
        "no credentials configured: set one of password, password_file, password_env, oauth2_token_command"
    )]
    NoSecret,
    #[error("cannot read password_file {path}: {error}")]
    File { path: String, error: std::io::Error },
    #[error("environment variable {0} (password_env) is not set")]
    Env(String),
    #[error("oauth2_token_command failed: {0}")]
    TokenCommand(String),
}

/// How to log in.
#[derive(Debug, Clone)]
pub enum Credentials {
    Password { username: String, password: Secret },
    OAuth2 { username: String, token: Secret },
}

impl Credentials {
    /// Reads the configured secret now (files and commands are read at every connection, so a
    /// rotated password or a refreshed token is picked up on reconnect).
    ///
    /// # Errors
    /// No username or no secret configured, or the secret's source cannot be read.
    pub fn resolve(auth: &AuthConfig) -> Result<Credentials, CredentialError> {
        let username = auth.username.clone().ok_or(CredentialError::NoUsername)?;
        match auth.secret.as_ref().ok_or(CredentialError::NoSecret)? {
            SecretSource::Password(password) => Ok(Credentials::Password {
                username,
                password: password.clone(),
            }),
            SecretSource::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|error| CredentialError::File {
                        path: path.display().to_string(),
                        error,
                    })?;
                Ok(Credentials::Password {
                    username,
                    password: Secret::new(text.trim_end_matches(['\r', '\n'])),
                })
            }
            SecretSource::Env(var) => {
                let value = std::env::var(var).map_err(|_| CredentialError::Env(var.clone()))?;
                Ok(Credentials::Password {
                    username,
                    password: Secret::new(value),
                })
            }
            SecretSource::TokenCommand(command) => Ok(Credentials::OAuth2 {
                username,
                token: run_token_command(command)?,
            }),
        }
    }

    pub fn username(&self) -> &str {
        match self {
            Credentials::Password { username, .. } | Credentials::OAuth2 { username, .. } => {
                username
            }
        }
    }

    /// The SASL XOAUTH2 initial response (before base64), for OAuth2 credentials.
    pub fn xoauth2(&self) -> Option<String> {
        match self {
            Credentials::OAuth2 { username, token } => Some(format!(
                "user={username}\x01auth=Bearer {}\x01\x01",
                token.expose()
            )),
            Credentials::Password { .. } => None,
        }
    }
}

/// Runs `command` with `sh -c` and takes its trimmed stdout as the token.
fn run_token_command(command: &str) -> Result<Secret, CredentialError> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .map_err(|e| CredentialError::TokenCommand(e.to_string()))?;
    if !out.status.success() {
        return Err(CredentialError::TokenCommand(format!(
            "exit {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if token.is_empty() {
        return Err(CredentialError::TokenCommand("printed no token".into()));
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> AuthConfig {
        AuthConfig {
            username: Some("support@example.test".into()),
            ..Default::default()
        }
    }

    // Two sources at once are refused when the configuration is read: see
    // config::tests::two_secret_sources_are_refused_when_the_file_is_read_naming_both_keys.
    #[test]
    fn exactly_one_secret_source_is_required() {
        assert!(matches!(
            Credentials::resolve(&auth()),
            Err(CredentialError::NoSecret)
        ));
        let mut a = auth();
        a.secret = Some(SecretSource::Password(Secret::new("x")));
        assert!(Credentials::resolve(&a).is_ok());
        a.username = None;
        assert!(matches!(
            Credentials::resolve(&a),
            Err(CredentialError::NoUsername)
        ));
    }

    #[test]
    fn password_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "secret\n").unwrap();
        let mut a = auth();
        a.secret = Some(SecretSource::File(f));
        match Credentials::resolve(&a).unwrap() {
            Credentials::Password { password, .. } => assert_eq!(password.expose(), "secret"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unreadable_password_file_names_its_cause_once_in_the_chain() {
        let mut a = auth();
        a.secret = Some(SecretSource::File("/nonexistent/pw".into()));
        let err = Credentials::resolve(&a).unwrap_err();
        let cause = std::fs::read("/nonexistent/pw").unwrap_err().to_string();
        // As the daemon reports it: the IMAP error around it, the task's context on top.
        let imap = crate::mailbox::imap::ImapError::from(err);
        let chain = format!("{:#}", anyhow::Error::new(imap).context("IMAP intake"));
        assert_eq!(chain.matches(&cause).count(), 1, "{chain}");
        assert!(chain.contains("/nonexistent/pw"), "{chain}");
    }

    #[test]
    fn token_command_output_becomes_an_xoauth2_response() {
        let mut a = auth();
        a.secret = Some(SecretSource::TokenCommand("echo tok123".into()));
        let c = Credentials::resolve(&a).unwrap();
        assert_eq!(
            c.xoauth2().unwrap(),
            "user=support@example.test\x01auth=Bearer tok123\x01\x01"
        );
        a.secret = Some(SecretSource::TokenCommand("exit 3".into()));
        assert!(matches!(
            Credentials::resolve(&a),
            Err(CredentialError::TokenCommand(_))
        ));
    }
}
