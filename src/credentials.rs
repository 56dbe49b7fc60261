//! Secrets for IMAP and SMTP: a password from the config, a file or the environment, or an
//! OAuth2 access token printed by a command (how Gmail and Microsoft 365 mailboxes are reached).
//!
//! Entry point: [`Credentials::resolve`]. Secrets are never logged: they live in
//! [`Secret`], whose `Debug` prints stars.

use std::process::Command;

use crate::config::{AuthConfig, Secret};

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("no username configured")]
    NoUsername,
    #[error(
        "no credentials configured: set one of password, password_file, password_env, oauth2_token_command"
    )]
    NoSecret,
    #[error("set only one of password, password_file, password_env, oauth2_token_command")]
    Ambiguous,
    #[error("cannot read password_file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
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
    /// No or several secret sources, or the source cannot be read.
    pub fn resolve(auth: &AuthConfig) -> Result<Credentials, CredentialError> {
        let username = auth.username.clone().ok_or(CredentialError::NoUsername)?;
        let sources = [
            auth.password.is_some(),
            auth.password_file.is_some(),
            auth.password_env.is_some(),
            auth.oauth2_token_command.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        match sources {
            0 => return Err(CredentialError::NoSecret),
            1 => {}
            _ => return Err(CredentialError::Ambiguous),
        }
        if let Some(p) = &auth.password {
            return Ok(Credentials::Password {
                username,
                password: p.clone(),
            });
        }
        if let Some(path) = &auth.password_file {
            let text = std::fs::read_to_string(path).map_err(|source| CredentialError::File {
                path: path.display().to_string(),
                source,
            })?;
            return Ok(Credentials::Password {
                username,
                password: Secret::new(text.trim_end_matches(['\r', '\n'])),
            });
        }
        if let Some(var) = &auth.password_env {
            let value = std::env::var(var).map_err(|_| CredentialError::Env(var.clone()))?;
            return Ok(Credentials::Password {
                username,
                password: Secret::new(value),
            });
        }
        let command = auth
            .oauth2_token_command
            .as_deref()
            .ok_or(CredentialError::NoSecret)?;
        Ok(Credentials::OAuth2 {
            username,
            token: run_token_command(command)?,
        })
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

    #[test]
    fn exactly_one_secret_source_is_required() {
        assert!(matches!(
            Credentials::resolve(&auth()),
            Err(CredentialError::NoSecret)
        ));
        let mut a = auth();
        a.password = Some(Secret::new("x"));
        a.password_env = Some("X".into());
        assert!(matches!(
            Credentials::resolve(&a),
            Err(CredentialError::Ambiguous)
        ));
    }

    #[test]
    fn password_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "secret\n").unwrap();
        let mut a = auth();
        a.password_file = Some(f);
        match Credentials::resolve(&a).unwrap() {
            Credentials::Password { password, .. } => assert_eq!(password.expose(), "secret"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn token_command_output_becomes_an_xoauth2_response() {
        let mut a = auth();
        a.oauth2_token_command = Some("echo tok123".into());
        let c = Credentials::resolve(&a).unwrap();
        assert_eq!(
            c.xoauth2().unwrap(),
            "user=support@example.test\x01auth=Bearer tok123\x01\x01"
        );
        a.oauth2_token_command = Some("exit 3".into());
        assert!(matches!(
            Credentials::resolve(&a),
            Err(CredentialError::TokenCommand(_))
        ));
    }
}
