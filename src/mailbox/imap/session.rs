//! The IMAP session up to the authenticated state: TCP and TLS (implicit or STARTTLS), the
//! greeting, LOGIN or AUTHENTICATE XOAUTH2, CAPABILITY; and APPEND, the one authenticated-state
//! command the SMTP sender needs (its copy of a reply in "Sent").
//!
//! Entry points: [`connect`] and [`append`]. Also the error type of the whole IMAP module,
//! [`ImapError`], and the time limits every command runs under ([`timed`]).

use std::fmt;
use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::{ImapConfig, TlsMode};
use crate::credentials::{CredentialError, Credentials};
use crate::net::{self, ConnectError, HandshakeError, MailStream};
use crate::store::StoreError;
use crate::tls::{self, TlsError};

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// For commands whose answer is small (SEARCH, STORE, MOVE, SELECT, LOGIN...).
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_mins(2);
/// A body fetch gets [`COMMAND_TIMEOUT`] plus one second per this many bytes announced, so a
/// batch of large messages over a slow link is not cut off while a hung server still is.
const FETCH_BYTES_PER_SECOND: u64 = 256 * 1024;

/// Everything that can go wrong talking to the IMAP server or recording what came from it.
///
/// Each message carries its cause (it is stored as text for `supportd status`) and no variant
/// returns it again from `source()`, so a `{:#}` chain names it once.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to IMAP server {address}: {error}")]
    Connect { address: String, error: io::Error },
    #[error("TLS with IMAP server {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("TLS configuration: {0}")]
    TlsConfig(TlsError),
    /// The server refused the credentials. Never retried quickly.
    #[error("IMAP authentication failed for {username} at {host}: {reason}")]
    Auth {
        username: String,
        host: String,
        reason: String,
    },
    #[error("IMAP {during} failed: {error}")]
    Protocol {
        during: String,
        error: async_imap::error::Error,
    },
    /// The server answered something we cannot work with.
    #[error("IMAP server: {0}")]
    Server(String),
    #[error("IMAP {during} timed out after {after:?}")]
    Timeout { during: String, after: Duration },
    #[error("IMAP credentials: {0}")]
    Credentials(CredentialError),
    #[error("recording IMAP intake: {0}")]
    Store(StoreError),
    #[error("IMAP intake internal error: {0}")]
    Internal(String),
}

impl ImapError {
    /// Returns true if and only if the credentials are at fault (refused by the server, or the
    /// secret or token could not be obtained): a person has to act, retrying soon will not help.
    #[must_use]
    pub fn is_auth(&self) -> bool {
        matches!(self, ImapError::Auth { .. } | ImapError::Credentials(_))
    }

    pub(super) fn protocol(during: impl Into<String>, error: async_imap::error::Error) -> Self {
        ImapError::Protocol {
            during: during.into(),
            error,
        }
    }
}

impl From<TlsError> for ImapError {
    fn from(e: TlsError) -> Self {
        ImapError::TlsConfig(e)
    }
}

impl From<CredentialError> for ImapError {
    fn from(e: CredentialError) -> Self {
        ImapError::Credentials(e)
    }
}

impl From<StoreError> for ImapError {
    fn from(e: StoreError) -> Self {
        ImapError::Store(e)
    }
}

/// An authenticated IMAP session over plain TCP or TLS.
pub type Session = async_imap::Session<MailStream>;
type Client = async_imap::Client<MailStream>;

/// The server capabilities the intake's behaviour depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Capabilities {
    /// RFC 2177 IDLE: wait for news instead of polling.
    pub(super) idle: bool,
    /// RFC 6851 MOVE: `after = "move"` in one command.
    pub(super) moves: bool,
    /// RFC 4315 UIDPLUS: UID EXPUNGE, which expunges only our own messages.
    pub(super) uidplus: bool,
}

fn port_of(config: &ImapConfig) -> u16 {
    config.port.unwrap_or(match config.tls {
        TlsMode::Implicit => 993,
        TlsMode::Starttls | TlsMode::None => 143,
    })
}

/// Connects and logs in, with TLS as configured ("none" is refused for remote hosts by config
/// validation; nothing here can turn certificate verification off).
///
/// # Errors
/// Connection, TLS (including certificate verification), credentials or authentication.
pub async fn connect(config: &ImapConfig) -> Result<Session, ImapError> {
    connect_with_capabilities(config).await.map(|(s, _)| s)
}

/// [`connect`], also giving the capabilities the server announced after login.
pub(super) async fn connect_with_capabilities(
    config: &ImapConfig,
) -> Result<(Session, Capabilities), ImapError> {
    // Read at every connect: a rotated password or refreshed token is picked up on reconnect.
    let credentials = resolve_credentials(config).await?;
    let host = config.host.as_str();
    let port = port_of(config);
    let address = format!("{host}:{port}");
    let tcp = match net::connect(host, port, CONNECT_TIMEOUT).await {
        Ok(tcp) => tcp,
        Err(ConnectError::Io(error)) => return Err(ImapError::Connect { address, error }),
        Err(ConnectError::Timeout) => {
            return Err(ImapError::Timeout {
                during: format!("connect to {address}"),
                after: CONNECT_TIMEOUT,
            });
        }
    };

    let client = match config.tls {
        TlsMode::Implicit => {
            let mut client = Client::new(start_tls(config, tcp).await?);
            read_greeting(&mut client, &address).await?;
            client
        }
        TlsMode::Starttls => {
            let mut client = Client::new(MailStream::Plain(tcp));
            read_greeting(&mut client, &address).await?;
            timed(
                "STARTTLS",
                COMMAND_TIMEOUT,
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await
            .map_err(|e| ImapError::Tls {
                host: host.to_string(),
                reason: format!("server refused STARTTLS: {e}"),
            })?;
            // into_inner drops anything the server sent after its OK in plaintext: that data
            // could have been injected before the handshake, so it must not be read as TLS data.
            let MailStream::Plain(tcp) = client.into_inner() else {
                return Err(ImapError::Internal("STARTTLS on a TLS stream".into()));
            };
            // No greeting after STARTTLS.
            Client::new(start_tls(config, tcp).await?)
        }
        TlsMode::None => {
            let mut client = Client::new(MailStream::Plain(tcp));
            read_greeting(&mut client, &address).await?;
            client
        }
    };

    let mut session = login(config, client, credentials).await?;
    let caps = timed("CAPABILITY", COMMAND_TIMEOUT, session.capabilities()).await?;
    let capabilities = Capabilities {
        idle: caps.has_str("IDLE"),
        moves: caps.has_str("MOVE"),
        uidplus: caps.has_str("UIDPLUS"),
    };
    Ok((session, capabilities))
}

async fn resolve_credentials(config: &ImapConfig) -> Result<Credentials, ImapError> {
    // The token command is a child process: keep it off the async worker threads.
    let auth = config.auth.clone();
    tokio::task::spawn_blocking(move || Credentials::resolve(&auth))
        .await
        .map_err(|e| ImapError::Internal(format!("credential task: {e}")))?
        .map_err(ImapError::from)
}

/// The TLS handshake, trusting `ca_file` or else the web PKI roots; gives a TLS [`MailStream`].
async fn start_tls(config: &ImapConfig, tcp: TcpStream) -> Result<MailStream, ImapError> {
    let tls_config = tls::client_config(config.ca_file.as_deref())?;
    net::handshake(tls_config, &config.host, tcp, CONNECT_TIMEOUT)
        .await
        .map_err(|e| match e {
            HandshakeError::ServerName(e) => ImapError::Tls {
                host: config.host.clone(),
                reason: format!("not a valid server name: {e}"),
            },
            HandshakeError::Tls(e) => ImapError::Tls {
                host: config.host.clone(),
                reason: e.to_string(),
            },
            HandshakeError::Timeout => ImapError::Timeout {
                during: format!("TLS handshake with {}", config.host),
                after: CONNECT_TIMEOUT,
            },
        })
}

async fn read_greeting(client: &mut Client, address: &str) -> Result<(), ImapError> {
    let greeting = match tokio::time::timeout(CONNECT_TIMEOUT, client.read_response()).await {
        Ok(Ok(Some(g))) => g,
        Ok(Ok(None)) => {
            return Err(ImapError::Server(format!(
                "{address} closed the connection before its greeting"
            )));
        }
        Ok(Err(error)) => {
            return Err(ImapError::Connect {
                address: address.to_string(),
                error,
            });
        }
        Err(_) => {
            return Err(ImapError::Timeout {
                during: format!("greeting from {address}"),
                after: CONNECT_TIMEOUT,
            });
        }
    };
    if let async_imap::imap_proto::Response::Data {
        status: async_imap::imap_proto::Status::Bye,
        outcome,
    } = greeting.parsed()
    {
        return Err(ImapError::Server(format!(
            "{address} refused the connection: {}",
            outcome.information.as_deref().unwrap_or("BYE")
        )));
    }
    Ok(())
}

/// SASL XOAUTH2: the first challenge gets the bearer string; a later one is the server's JSON
/// error, which must be answered with an empty response so that the server sends its NO.
struct XOAuth2 {
    response: String,
    sent: bool,
}

impl async_imap::Authenticator for XOAuth2 {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        if self.sent {
            String::new()
        } else {
            self.sent = true;
            std::mem::take(&mut self.response)
        }
    }
}

impl fmt::Debug for XOAuth2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("XOAuth2(***)")
    }
}

async fn login(
    config: &ImapConfig,
    client: Client,
    credentials: Credentials,
) -> Result<Session, ImapError> {
    let host = config.host.clone();
    let refused = |username: &str, e: async_imap::error::Error| -> ImapError {
        login_error(&host, username, e)
    };
    match credentials {
        Credentials::Password { username, password } => {
            let attempt = client.login(&username, password.expose());
            match tokio::time::timeout(COMMAND_TIMEOUT, attempt).await {
                Ok(Ok(session)) => Ok(session),
                Ok(Err((e, _))) => Err(refused(&username, e)),
                Err(_) => Err(login_timeout()),
            }
        }
        credentials @ Credentials::OAuth2 { .. } => {
            let username = credentials.username().to_string();
            let first = xoauth2(&credentials)?;
            let attempt = client.authenticate("XOAUTH2", first);
            let (error, client) = match tokio::time::timeout(COMMAND_TIMEOUT, attempt).await {
                Ok(Ok(session)) => return Ok(session),
                Ok(Err(pair)) => pair,
                Err(_) => return Err(login_timeout()),
            };
            let error = refused(&username, error);
            if !error.is_auth() {
                return Err(error);
            }
            // The cached token may just have expired: ask the token command once more before
            // the caller backs off for a minute.
            tracing::warn!(%username, "XOAUTH2 refused; running oauth2_token_command again");
            let fresh = resolve_credentials(config).await?;
            let attempt = client.authenticate("XOAUTH2", xoauth2(&fresh)?);
            match tokio::time::timeout(COMMAND_TIMEOUT, attempt).await {
                Ok(Ok(session)) => Ok(session),
                Ok(Err((e, _))) => Err(refused(&username, e)),
                Err(_) => Err(login_timeout()),
            }
        }
    }
}

fn xoauth2(credentials: &Credentials) -> Result<XOAuth2, ImapError> {
    let response = credentials
        .xoauth2()
        .ok_or_else(|| ImapError::Internal("XOAUTH2 without an OAuth2 token".into()))?;
    Ok(XOAuth2 {
        response,
        sent: false,
    })
}

fn login_timeout() -> ImapError {
    ImapError::Timeout {
        during: "login".into(),
        after: COMMAND_TIMEOUT,
    }
}

/// A NO to LOGIN/AUTHENTICATE is a refusal of the credentials, except `[UNAVAILABLE]` (RFC 5530:
/// the server's backend is down), which is worth retrying soon.
fn login_error(host: &str, username: &str, e: async_imap::error::Error) -> ImapError {
    match e {
        async_imap::error::Error::No(reason) if !reason.contains("UNAVAILABLE") => {
            ImapError::Auth {
                username: username.to_string(),
                host: host.to_string(),
                reason,
            }
        }
        other => ImapError::protocol("login", other),
    }
}

/// Runs one IMAP command with a time limit, naming it in the error.
pub(super) async fn timed<T>(
    during: &str,
    limit: Duration,
    fut: impl Future<Output = async_imap::error::Result<T>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(ImapError::protocol(during, source)),
        Err(_) => Err(ImapError::Timeout {
            during: during.to_string(),
            after: limit,
        }),
    }
}

/// Appends `raw` to `mailbox` flagged `\Seen` (the copy of a reply we sent), creating the
/// mailbox when it does not exist.
///
/// # Errors
/// Connecting, logging in, or the APPEND itself failed.
pub async fn append(config: &ImapConfig, mailbox: &str, raw: &[u8]) -> Result<(), ImapError> {
    let mut session = connect(config).await?;
    let limit = COMMAND_TIMEOUT + transfer_allowance(raw.len() as u64);
    let first = timed(
        "APPEND",
        limit,
        session.append(mailbox, Some("(\\Seen)"), None, raw),
    )
    .await;
    let result = match first {
        // A server answers NO [TRYCREATE] instead of the literal's continuation when the mailbox
        // is missing; async-imap reports that as a bare `Append` error, without the code.
        Err(ImapError::Protocol {
            error: async_imap::error::Error::Append | async_imap::error::Error::No(_),
            ..
        }) => {
            match timed("CREATE", COMMAND_TIMEOUT, session.create(mailbox)).await {
                Ok(()) => tracing::info!(%mailbox, "created IMAP mailbox for APPEND"),
                // Exists already: the APPEND failed for another reason, which the retry reports.
                Err(ImapError::Protocol {
                    error: async_imap::error::Error::No(_),
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
            timed(
                "APPEND",
                limit,
                session.append(mailbox, Some("(\\Seen)"), None, raw),
            )
            .await
        }
        other => other,
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
    result
}

/// The time a transfer of `bytes` may take on top of [`COMMAND_TIMEOUT`].
pub(super) fn transfer_allowance(bytes: u64) -> Duration {
    Duration::from_secs(bytes / FETCH_BYTES_PER_SECOND)
}

/// Empties an unsolicited-response channel (async-imap drops new ones once 100 are queued) and
/// tells whether anything in it could mean new mail. A macro because the channel's type comes
/// from a crate we do not depend on directly.
macro_rules! drain_news {
    ($rx:expr) => {{
        use ::async_imap::types::UnsolicitedResponse;
        let mut news = false;
        while let Ok(response) = $rx.try_recv() {
            match response {
                UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_) => news = true,
                other => tracing::trace!(response = ?other, "unsolicited IMAP response"),
            }
        }
        news
    }};
}
pub(super) use drain_news;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_refusals_are_auth_errors_but_unavailable_is_not() {
        let e = login_error(
            "h",
            "u",
            async_imap::error::Error::No("info: Some(\"Authentication failed.\")".into()),
        );
        assert!(e.is_auth(), "{e}");
        let e = login_error(
            "h",
            "u",
            async_imap::error::Error::No("[UNAVAILABLE] backend down".into()),
        );
        assert!(!e.is_auth(), "{e}");
        let e = login_error("h", "u", async_imap::error::Error::ConnectionLost);
        assert!(!e.is_auth(), "{e}");
    }

    #[test]
    fn xoauth2_answers_an_error_challenge_with_nothing() {
        use async_imap::Authenticator;
        let mut a = XOAuth2 {
            response: "user=u\x01auth=Bearer t\x01\x01".into(),
            sent: false,
        };
        assert_eq!(a.process(b""), "user=u\x01auth=Bearer t\x01\x01");
        assert_eq!(a.process(b"{\"status\":\"401\"}"), "");
        assert!(!format!("{a:?}").contains("Bearer"));
    }

    #[test]
    fn default_ports_follow_the_tls_mode() {
        let mut c: ImapConfig = toml_imap("host = \"mail.example.com\"");
        assert_eq!(port_of(&c), 993);
        c.tls = TlsMode::Starttls;
        assert_eq!(port_of(&c), 143);
        c.port = Some(10143);
        assert_eq!(port_of(&c), 10143);
    }

    fn toml_imap(body: &str) -> ImapConfig {
        let text = format!("[support]\naddress = \"s@example.test\"\n[imap]\n{body}\n");
        crate::config::Config::from_toml(&text, std::path::Path::new("/tmp"))
            .expect("config")
            .imap
            .expect("imap section")
    }
}
