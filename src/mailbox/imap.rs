//! IMAP intake: finds new mail by UID, commits it to SQLite, and only then marks it on the server.
//!
//! Entry points: [`Intake::run`] (the daemon's task), [`Intake::poll_once`] (tests, benchmarks),
//! [`connect`] and [`append`] (the SMTP sender's copy to "Sent").
//!
//! # Why it is built this way
//! - New mail is what lies above a `(UIDVALIDITY, UID)` watermark kept in SQLite, never what
//!   lacks `\Seen`: a person reading the mailbox in a mail client must not make tickets vanish.
//! - The watermark is written inside the same transaction as the messages
//!   ([`Pipeline::ingest_batch`]'s `before_commit`), and the server is changed (keyword `$Ticketed`
//!   or a move) only after that commit. A crash in between leaves committed but unmarked mail,
//!   which the catch-up on every connect marks; nothing is ever marked that is not stored.
//! - A UIDVALIDITY change rescans the mailbox from UID 1; the pipeline dedupes by Message-ID and
//!   by the raw bytes' sha256, so nothing is stored twice.
//! - Bodies are fetched with `BODY.PEEK[]` so the intake never sets `\Seen` itself.
//! - An authentication failure is logged as an error on every attempt and recorded for
//!   `supportd status`: expired OAuth tokens must not go unnoticed for days.

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Write as _};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::types::{Fetch, Flag, UnsolicitedResponse};
use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::config::{AfterIngest, ImapConfig, TlsMode};
use crate::credentials::{CredentialError, Credentials};
use crate::pipeline::{Action, Incoming, Pipeline};
use crate::store::{self, Store, StoreError};
use crate::tls::{self, TlsError};

/// The keyword set on a message once it is committed (after = "keyword").
pub const TICKETED: &str = "$Ticketed";

/// RFC 2177: servers may drop an idle client after 30 minutes, so IDLE is re-issued before that.
const IDLE_REISSUE: Duration = Duration::from_mins(29);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// For commands whose answer is small (SEARCH, STORE, MOVE, SELECT, LOGIN...).
const COMMAND_TIMEOUT: Duration = Duration::from_mins(2);
/// A body fetch gets [`COMMAND_TIMEOUT`] plus one second per this many bytes announced, so a
/// batch of large messages over a slow link is not cut off while a hung server still is.
const FETCH_BYTES_PER_SECOND: u64 = 256 * 1024;
/// Bytes of mail fetched into one batch, unless a single message is larger.
const BATCH_BYTES: u64 = 64 * 1024 * 1024;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_mins(1);

// ------------------------------------------------------------------------------------ errors

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

    fn protocol(during: impl Into<String>, error: async_imap::error::Error) -> Self {
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

// ------------------------------------------------------------------------------------ stream

/// The connection under a [`Session`]: plain TCP (loopback only, or before STARTTLS) or TLS.
#[derive(Debug)]
pub enum MailStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for MailStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MailStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MailStream::Plain(s) => s.is_write_vectored(),
            MailStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An authenticated IMAP session over plain TCP or TLS.
pub type Session = async_imap::Session<MailStream>;
type Client = async_imap::Client<MailStream>;

// ------------------------------------------------------------------------------- connecting

/// The server capabilities the intake's behaviour depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub idle: bool,
    pub moves: bool,
    pub uidplus: bool,
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

async fn connect_with_capabilities(
    config: &ImapConfig,
) -> Result<(Session, Capabilities), ImapError> {
    // Read at every connect: a rotated password or refreshed token is picked up on reconnect.
    let credentials = resolve_credentials(config).await?;
    let host = config.host.as_str();
    let port = port_of(config);
    let address = format!("{host}:{port}");
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => return Err(ImapError::Connect { address, error }),
        Err(_) => {
            return Err(ImapError::Timeout {
                during: format!("connect to {address}"),
                after: CONNECT_TIMEOUT,
            });
        }
    };
    // IMAP is request/response with small commands: Nagle only adds latency.
    let _ = tcp.set_nodelay(true);

    let client = match config.tls {
        TlsMode::Implicit => {
            let tls = start_tls(config, tcp).await?;
            let mut client = Client::new(MailStream::Tls(Box::new(tls)));
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
            let tls = start_tls(config, tcp).await?;
            // No greeting after STARTTLS.
            Client::new(MailStream::Tls(Box::new(tls)))
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

async fn start_tls(config: &ImapConfig, tcp: TcpStream) -> Result<TlsStream<TcpStream>, ImapError> {
    let tls_config = tls::client_config(config.ca_file.as_deref())?;
    let host = config.host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string()).map_err(|e| ImapError::Tls {
        host: config.host.clone(),
        reason: format!("not a valid server name: {e}"),
    })?;
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TlsConnector::from(tls_config).connect(name, tcp),
    )
    .await
    {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(ImapError::Tls {
            host: config.host.clone(),
            reason: e.to_string(),
        }),
        Err(_) => Err(ImapError::Timeout {
            during: format!("TLS handshake with {}", config.host),
            after: CONNECT_TIMEOUT,
        }),
    }
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
async fn timed<T>(
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

fn transfer_allowance(bytes: u64) -> Duration {
    Duration::from_secs(bytes / FETCH_BYTES_PER_SECOND)
}

// ----------------------------------------------------------------------------- pure helpers

/// The IMAP sequence-set for `uids`, runs compressed: `[1,2,3,4,5,7,9,10,11,12]` → `1:5,7,9:12`.
/// Order and repeats in the input do not matter. Empty input gives an empty string.
#[must_use]
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        // Writing to a String cannot fail.
        let _ = if start == end {
            write!(out, "{start}")
        } else {
            write!(out, "{start}:{end}")
        };
        i += 1;
    }
    out
}

/// The UIDs above `last_uid`, ascending. `UID SEARCH UID n:*` always answers at least the
/// highest UID in the mailbox even when it is below `n` (RFC 3501 §6.4.8: `*` is the largest
/// UID in use, and `n:*` is the range between the two), so the answer has to be filtered.
pub fn uids_above(found: impl IntoIterator<Item = u32>, last_uid: u32) -> Vec<u32> {
    let mut uids: Vec<u32> = found.into_iter().filter(|&u| u > last_uid).collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// Reconnect delays: 1 s doubling to 60 s, back to 1 s after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    #[must_use]
    pub fn new() -> Self {
        Self {
            next: BACKOFF_FIRST,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }

    /// Authentication failures wait the longest: hammering a server with a bad password gets
    /// the account locked.
    #[must_use]
    pub fn longest() -> Duration {
        BACKOFF_MAX
    }
}

// ---------------------------------------------------------------------------------- intake

/// Empties an unsolicited-response channel (async-imap drops new ones once 100 are queued) and
/// tells whether anything in it could mean new mail. A macro because the channel's type comes
/// from a crate we do not depend on directly.
macro_rules! drain_news {
    ($rx:expr) => {{
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

/// A connected session with the intake mailbox selected.
struct Live {
    session: Session,
    caps: Capabilities,
    uidvalidity: u32,
    /// Highest UID committed (mirrors the stored watermark for this UIDVALIDITY).
    last_uid: u32,
}

/// Why a wait for new mail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// The server reported a change (or one was pending): look now.
    Changed,
    /// Backstop poll: look anyway.
    Timeout,
    Shutdown,
}

/// Takes mail from one IMAP mailbox into the pipeline.
pub struct Intake {
    config: ImapConfig,
    pipeline: Arc<Pipeline>,
    store: Arc<Mutex<Store>>,
    wake_sender: Arc<Notify>,
    /// `"{username}/{mailbox}"`, the key of the watermark row.
    key: String,
    live: Option<Live>,
}

impl fmt::Debug for Intake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Intake")
            .field("key", &self.key)
            .field("host", &self.config.host)
            .field("connected", &self.live.is_some())
            .finish_non_exhaustive()
    }
}

impl Intake {
    pub fn new(
        config: ImapConfig,
        pipeline: Arc<Pipeline>,
        store: Arc<Mutex<Store>>,
        wake_sender: Arc<Notify>,
    ) -> Self {
        let key = format!(
            "{}/{}",
            config.auth.username.as_deref().unwrap_or(""),
            config.mailbox
        );
        Self {
            config,
            pipeline,
            store,
            wake_sender,
            key,
            live: None,
        }
    }

    /// Runs until `shutdown` becomes true: connect, catch up, then IDLE (or poll), forever,
    /// reconnecting with bounded exponential backoff (1 s doubling to 60 s; 60 s at once after
    /// an authentication failure). A batch in progress (fetch, commit, mark) is always finished
    /// before returning.
    ///
    /// # Errors
    /// None at present: every failure is logged, recorded and retried.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut backoff = Backoff::new();
        tracing::info!(
            mailbox = %self.key,
            host = %self.config.host,
            after = ?self.config.after,
            "IMAP intake starting"
        );
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.cycle(&mut shutdown, &mut backoff).await {
                Ok(Wake::Shutdown) => break,
                Ok(Wake::Changed | Wake::Timeout) => {}
                Err(e) => {
                    let delay = if e.is_auth() {
                        Backoff::longest()
                    } else {
                        backoff.next_delay()
                    };
                    self.failed(&e, delay).await;
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stopped(&mut shutdown) => break,
                    }
                }
            }
        }
        if let Some(mut live) = self.live.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), live.session.logout()).await;
        }
        tracing::info!(mailbox = %self.key, "IMAP intake stopped");
        Ok(())
    }

    /// One round of `run`: connect if needed, take in what is new, wait for more.
    async fn cycle(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Result<Wake, ImapError> {
        if self.live.is_none() {
            // Connecting (and the catch-up marking in it) is safe to abandon: nothing is
            // committed there, and marking is idempotent. A dead server must not delay shutdown.
            let opened = tokio::select! {
                r = self.open() => Some(r),
                () = stopped(shutdown) => None,
            };
            match opened {
                Some(live) => self.live = Some(live?),
                None => return Ok(Wake::Shutdown),
            }
        }
        self.pass(Some(shutdown)).await?;
        backoff.reset();
        if *shutdown.borrow() {
            return Ok(Wake::Shutdown);
        }
        self.wait_for_change(shutdown).await
    }

    /// Connects if needed and ingests everything above the watermark once.
    ///
    /// Returns how many messages were committed (duplicates included).
    ///
    /// # Errors
    /// Any [`ImapError`]; the connection is dropped and the error recorded for `supportd status`.
    pub async fn poll_once(&mut self) -> anyhow::Result<usize> {
        match self.pass(None).await {
            Ok(n) => Ok(n),
            Err(e) => {
                self.failed(&e, Duration::ZERO).await;
                Err(e.into())
            }
        }
    }

    /// Logs and records a failed pass, and forgets the connection (its state is unknown).
    async fn failed(&mut self, e: &ImapError, retry_in: Duration) {
        self.live = None;
        if e.is_auth() {
            tracing::error!(
                mailbox = %self.key,
                retry_in_secs = retry_in.as_secs(),
                "IMAP AUTHENTICATION FAILING, no mail is being taken in: {e}"
            );
        } else {
            tracing::warn!(
                mailbox = %self.key,
                retry_in_secs = retry_in.as_secs(),
                "IMAP intake failed: {e}"
            );
        }
        let key = self.key.clone();
        let text = e.to_string();
        let auth = e.is_auth();
        if let Err(err) = self
            .with_store(move |s| store::record_fetch_error(s.conn(), &key, &text, auth))
            .await
        {
            tracing::error!(mailbox = %self.key, "cannot record the IMAP error: {err}");
        }
    }

    /// Connects if needed, then takes in everything new; records success.
    async fn pass(&mut self, stop: Option<&watch::Receiver<bool>>) -> Result<usize, ImapError> {
        if self.live.is_none() {
            self.live = Some(self.open().await?);
        }
        let count = self.sync(stop).await?;
        let key = self.key.clone();
        self.with_store(move |s| store::record_fetch_ok(s.conn(), &key))
            .await?;
        Ok(count)
    }

    /// Connects, selects the mailbox, checks UIDVALIDITY against the watermark and marks what
    /// was committed but not marked before (a crash between commit and marking).
    async fn open(&self) -> Result<Live, ImapError> {
        let (mut session, caps) = connect_with_capabilities(&self.config).await?;
        let mailbox = self.config.mailbox.clone();
        if self.config.after == AfterIngest::Move {
            self.ensure_processed_mailbox(&mut session).await?;
        }
        // EXAMINE (read-only) when we never change anything on the server.
        let selected = if self.config.after == AfterIngest::None {
            timed("EXAMINE", COMMAND_TIMEOUT, session.examine(&mailbox)).await?
        } else {
            timed("SELECT", COMMAND_TIMEOUT, session.select(&mailbox)).await?
        };
        let uidvalidity = selected
            .uid_validity
            .ok_or_else(|| ImapError::Server(format!("SELECT {mailbox} gave no UIDVALIDITY")))?;
        tracing::info!(
            mailbox = %self.key,
            host = %self.config.host,
            cap_idle = caps.idle,
            cap_move = caps.moves,
            cap_uidplus = caps.uidplus,
            uidvalidity,
            exists = selected.exists,
            uid_next = selected.uid_next.unwrap_or(0),
            "IMAP connected"
        );
        if self.config.after == AfterIngest::Keyword
            && !selected.permanent_flags.iter().any(|f| {
                matches!(f, Flag::MayCreate)
                    || matches!(f, Flag::Custom(k) if k.eq_ignore_ascii_case(TICKETED))
            })
        {
            tracing::warn!(
                mailbox = %self.key,
                "the server does not keep custom keywords here: {TICKETED} will not stick \
                 (the UID watermark still prevents a second ingest); consider after = \"move\""
            );
        }
        if self.config.idle && !caps.idle {
            tracing::warn!(
                mailbox = %self.key,
                poll_interval_secs = self.config.poll_interval.as_secs(),
                "the server does not offer IDLE: polling instead"
            );
        }
        if self.config.after == AfterIngest::Move && !caps.moves && !caps.uidplus {
            tracing::warn!(
                mailbox = %self.key,
                "the server has neither MOVE nor UIDPLUS: processed mail is copied and flagged \
                 \\Deleted but left for a person to expunge (a plain EXPUNGE would also remove \
                 what people deleted)"
            );
        }

        let key = self.key.clone();
        let state = self
            .with_store(move |s| store::mailbox_state(s.conn(), &key))
            .await?;
        let last_uid = match state.uidvalidity {
            Some(v) if v == uidvalidity => state.last_uid,
            stored => {
                if let Some(old) = stored {
                    tracing::warn!(
                        mailbox = %self.key,
                        old_uidvalidity = old,
                        new_uidvalidity = uidvalidity,
                        "UIDVALIDITY changed: rescanning the whole mailbox (stored messages are \
                         recognised by Message-ID and content, nothing is taken twice)"
                    );
                }
                // Recorded at once so that a rescan interrupted by a crash resumes where it was.
                let key = self.key.clone();
                self.with_store(move |s| store::set_watermark(s.conn(), &key, uidvalidity, 0))
                    .await?;
                0
            }
        };
        let mut live = Live {
            session,
            caps,
            uidvalidity,
            last_uid,
        };
        self.catch_up(&mut live).await?;
        Ok(live)
    }

    async fn ensure_processed_mailbox(&self, session: &mut Session) -> Result<(), ImapError> {
        let Some(target) = self.config.processed_mailbox.as_deref() else {
            return Err(ImapError::Internal(
                "after = \"move\" without processed_mailbox".into(),
            ));
        };
        // CREATE answers NO when the mailbox exists; any other problem shows at the first MOVE.
        match timed("CREATE", COMMAND_TIMEOUT, session.create(target)).await {
            Ok(()) => tracing::info!(mailbox = %target, "created the processed mailbox"),
            Err(ImapError::Protocol {
                error: async_imap::error::Error::No(reason),
                ..
            }) => tracing::debug!(mailbox = %target, "CREATE: {reason}"),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Marks committed messages that are still unmarked on the server.
    async fn catch_up(&self, live: &mut Live) -> Result<(), ImapError> {
        if live.last_uid == 0 {
            return Ok(());
        }
        let query = match self.config.after {
            AfterIngest::None => return Ok(()),
            AfterIngest::Keyword => format!("UID 1:{} NOT KEYWORD {TICKETED}", live.last_uid),
            // NOT DELETED: copied already when the server lacks MOVE and UIDPLUS, or deleted by
            // a person; neither should be copied again.
            AfterIngest::Move => format!("UID 1:{} NOT DELETED", live.last_uid),
        };
        let found = timed(
            "UID SEARCH (catch-up)",
            COMMAND_TIMEOUT,
            live.session.uid_search(&query),
        )
        .await?;
        let mut pending: Vec<u32> = found.into_iter().filter(|&u| u <= live.last_uid).collect();
        if pending.is_empty() {
            return Ok(());
        }
        pending.sort_unstable();
        tracing::info!(
            mailbox = %self.key,
            count = pending.len(),
            first_uid = pending[0],
            last_uid = pending[pending.len() - 1],
            "marking messages committed before but not marked (interrupted run)"
        );
        for chunk in pending.chunks(self.batch_size()) {
            self.mark(live, chunk).await?;
        }
        Ok(())
    }

    fn batch_size(&self) -> usize {
        usize::try_from(self.config.batch_size.max(1)).unwrap_or(usize::MAX)
    }

    /// Takes in everything above the watermark, batch by batch, until a search finds nothing
    /// new. With `stop`, returns early between batches once it is set.
    async fn sync(&mut self, stop: Option<&watch::Receiver<bool>>) -> Result<usize, ImapError> {
        let mut live = self
            .live
            .take()
            .ok_or_else(|| ImapError::Internal("sync without a connection".into()))?;
        let result = self.sync_live(&mut live, stop).await;
        // On error the session's state is unknown: reconnect next time.
        if result.is_ok() {
            self.live = Some(live);
        }
        result
    }

    async fn sync_live(
        &self,
        live: &mut Live,
        stop: Option<&watch::Receiver<bool>>,
    ) -> Result<usize, ImapError> {
        let mut total = 0;
        loop {
            // Dovecot (like most servers) answers a SEARCH from the session's current view and
            // announces newer mail only after it; the NOOP brings the view up to date first.
            // It is also where a session learns of a UIDVALIDITY change (BYE).
            timed("NOOP", COMMAND_TIMEOUT, live.session.noop()).await?;
            drain_news!(live.session.unsolicited_responses);
            let Some(next) = live.last_uid.checked_add(1) else {
                return Ok(total);
            };
            let found = timed(
                "UID SEARCH",
                COMMAND_TIMEOUT,
                live.session.uid_search(format!("UID {next}:*")),
            )
            .await?;
            let uids = uids_above(found, live.last_uid);
            if uids.is_empty() {
                return Ok(total);
            }
            // While one batch is committed, the session marks the batch before it and fetches
            // the one after it: the network and the database each wait less for the other. A
            // prefetched batch that is never committed (an error, a stop) is fetched again
            // later; a committed one whose marking fails is marked by the catch-up.
            let (batches, sizes) = self.batches(live, &uids).await?;
            let mut chunks = batches.iter().map(Vec::as_slice);
            let mut fetched = match chunks.next() {
                Some(chunk) => Some(self.fetch_prepared(live, chunk, &sizes).await?),
                None => None,
            };
            let mut to_mark: Vec<u32> = Vec::new();
            while let Some(current) = fetched.take() {
                let stopping = stop.is_some_and(|s| *s.borrow());
                let next = chunks.next().filter(|_| !stopping);
                let marking = std::mem::take(&mut to_mark);
                let session_work = async {
                    if !marking.is_empty() {
                        self.mark(live, &marking).await?;
                    }
                    match next {
                        Some(next) => Ok(Some(self.fetch_prepared(live, next, &sizes).await?)),
                        None => Ok::<_, ImapError>(None),
                    }
                };
                let high = current.high;
                let (committed, prefetched) = tokio::join!(self.commit(current), session_work);
                let present = committed?;
                live.last_uid = high;
                total += present.len();
                to_mark = present;
                fetched = prefetched?;
            }
            if !to_mark.is_empty() {
                self.mark(live, &to_mark).await?;
            }
            if stop.is_some_and(|s| *s.borrow()) {
                return Ok(total);
            }
        }
    }

    /// `uids` (ascending) cut into batches of at most `batch_size` messages and, unless one
    /// message alone is larger, [`BATCH_BYTES`]: with two batches in memory at once (one
    /// committing, one fetched ahead), a backlog of large attachments must not exhaust memory
    /// and crash-loop the daemon on the same batch. Also returns each message's size, which
    /// [`Self::fetch`] needs.
    async fn batches(
        &self,
        live: &mut Live,
        uids: &[u32],
    ) -> Result<(Vec<Vec<u32>>, BTreeMap<u32, u64>), ImapError> {
        drain_news!(live.session.unsolicited_responses);
        let answers = timed(
            "UID FETCH (RFC822.SIZE)",
            COMMAND_TIMEOUT,
            collect_fetch(&mut live.session, &uid_set(uids), "(UID RFC822.SIZE)"),
        )
        .await?;
        let mut sizes: BTreeMap<u32, u64> = BTreeMap::new();
        for f in &answers {
            // An unsolicited FETCH (another client changing flags) may carry no size: it must
            // neither drop the message nor hide a large size.
            if let Some(uid) = f.uid.filter(|u| uids.binary_search(u).is_ok()) {
                let size = f.size.map_or(0, u64::from);
                sizes
                    .entry(uid)
                    .and_modify(|s| *s = (*s).max(size))
                    .or_insert(size);
            }
        }
        // Over-limit mail is fetched headers only: it weighs little in a batch.
        let max = self.config.max_message_size;
        let weights: BTreeMap<u32, u64> = sizes.iter().map(|(&u, &s)| (u, s.min(max))).collect();
        Ok((
            cut_batches(uids, &weights, self.batch_size(), BATCH_BYTES),
            sizes,
        ))
    }

    /// Fetches a batch of UIDs (ascending) and starts its analysis on the worker pool.
    async fn fetch_prepared(
        &self,
        live: &mut Live,
        uids: &[u32],
        sizes: &BTreeMap<u32, u64>,
    ) -> Result<Fetched, ImapError> {
        let raws = self.fetch(live, uids, sizes).await?;
        let mailbox = &self.config.mailbox;
        let validity = live.uidvalidity;
        let present: Vec<u32> = raws.keys().copied().collect();
        let batch: Vec<Incoming> = raws
            .into_iter()
            .map(|(uid, (raw, oversized, delivered_at))| Incoming {
                raw,
                source: format!("imap:{mailbox}:{validity}:{uid}"),
                oversized,
                delivered_at,
            })
            .collect();
        Ok(Fetched {
            first: uids.first().copied().unwrap_or_default(),
            high: uids.last().copied().unwrap_or_default(),
            validity,
            present,
            prepared: self.pipeline.prepare(batch),
        })
    }

    /// Commits one fetched batch with the watermark; returns the UIDs that were present (not
    /// expunged meanwhile), for marking.
    async fn commit(&self, fetched: Fetched) -> Result<Vec<u32>, ImapError> {
        let Fetched {
            first,
            high,
            validity,
            present,
            prepared,
        } = fetched;
        let count = prepared.len();

        let pipeline = self.pipeline.clone();
        let key = self.key.clone();
        let outcomes = self
            .with_store(move |s| {
                pipeline.ingest_prepared(s, prepared, |conn| {
                    store::set_watermark(conn, &key, validity, high)
                })
            })
            .await?;
        // The acknowledgements are in the outbox now: the sender need not wait for the marking.
        self.wake_sender.notify_one();

        let tally = |a: Action| outcomes.iter().filter(|o| o.action == a).count();
        tracing::info!(
            mailbox = %self.key,
            count,
            first_uid = first,
            last_uid = high,
            new = tally(Action::New),
            reply = tally(Action::Reply),
            duplicate = tally(Action::Duplicate),
            automated = tally(Action::Automated),
            quarantined = tally(Action::Quarantined),
            "IMAP batch committed"
        );
        Ok(present)
    }

    /// The raw bytes of `uids` (ascending) by UID, whether only the headers were taken
    /// (over `max_message_size`, by `known_sizes`) and when the server received each. UIDs
    /// expunged meanwhile are absent.
    async fn fetch(
        &self,
        live: &mut Live,
        uids: &[u32],
        known_sizes: &BTreeMap<u32, u64>,
    ) -> Result<BTreeMap<u32, RawMail>, ImapError> {
        // Keeps the bounded channel from overflowing during a long catch-up; the NOOP and
        // SEARCH before the next round find whatever these announced.
        drain_news!(live.session.unsolicited_responses);
        // A UID without a size was expunged before the size FETCH: nothing to fetch, and
        // `check_nothing_skipped` makes sure it is really gone.
        let sizes: BTreeMap<u32, u64> = uids
            .iter()
            .filter_map(|u| known_sizes.get(u).map(|&s| (*u, s)))
            .collect();

        let max = self.config.max_message_size;
        let small: Vec<(u32, u64)> = sizes
            .iter()
            .map(|(&u, &s)| (u, s))
            .filter(|&(_, s)| s <= max)
            .collect();
        let large: Vec<(u32, u64)> = sizes
            .iter()
            .map(|(&u, &s)| (u, s))
            .filter(|&(_, s)| s > max)
            .collect();
        let mut raws: BTreeMap<u32, RawMail> = BTreeMap::new();
        let delivered = |f: &Fetch| f.internal_date().map(|d| d.timestamp());
        if !small.is_empty() {
            let small_uids: Vec<u32> = small.iter().map(|&(u, _)| u).collect();
            let bytes: u64 = small.iter().map(|&(_, s)| s).sum();
            let fetched = timed(
                "UID FETCH (BODY.PEEK[])",
                COMMAND_TIMEOUT + transfer_allowance(bytes),
                collect_fetch(
                    &mut live.session,
                    &uid_set(&small_uids),
                    "(UID INTERNALDATE BODY.PEEK[])",
                ),
            )
            .await?;
            for f in &fetched {
                if let (Some(uid), Some(body)) = (f.uid, f.body())
                    && sizes.contains_key(&uid)
                {
                    raws.insert(uid, (body.to_vec(), false, delivered(f)));
                }
            }
        }
        if !large.is_empty() {
            for &(uid, size) in &large {
                tracing::warn!(
                    mailbox = %self.key,
                    uid,
                    size,
                    max_message_size = max,
                    "message over max_message_size: taking its headers only"
                );
            }
            let large_uids: Vec<u32> = large.iter().map(|&(u, _)| u).collect();
            let fetched = timed(
                "UID FETCH (BODY.PEEK[HEADER])",
                COMMAND_TIMEOUT,
                collect_fetch(
                    &mut live.session,
                    &uid_set(&large_uids),
                    "(UID INTERNALDATE BODY.PEEK[HEADER])",
                ),
            )
            .await?;
            for f in &fetched {
                if let (Some(uid), Some(header)) = (f.uid, f.header())
                    && sizes.contains_key(&uid)
                {
                    raws.insert(uid, (header.to_vec(), true, delivered(f)));
                }
            }
        }
        self.check_nothing_skipped(live, uids, &raws).await?;
        Ok(raws)
    }

    /// A UID the search found but the fetches did not return must be gone (expunged
    /// meanwhile); if it still exists the server is misbehaving, and moving the watermark past
    /// it would lose it.
    async fn check_nothing_skipped(
        &self,
        live: &mut Live,
        uids: &[u32],
        raws: &BTreeMap<u32, RawMail>,
    ) -> Result<(), ImapError> {
        let missing: Vec<u32> = uids
            .iter()
            .copied()
            .filter(|u| !raws.contains_key(u))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let still = timed(
            "UID SEARCH (missing bodies)",
            COMMAND_TIMEOUT,
            live.session
                .uid_search(format!("UID {}", uid_set(&missing))),
        )
        .await?;
        let still: HashSet<u32> = still.into_iter().filter(|u| missing.contains(u)).collect();
        if still.is_empty() {
            tracing::info!(
                mailbox = %self.key,
                uids = %uid_set(&missing),
                "messages expunged while being fetched; skipped"
            );
            return Ok(());
        }
        let mut still: Vec<u32> = still.into_iter().collect();
        still.sort_unstable();
        Err(ImapError::Server(format!(
            "no content returned for UID {} although the message exists",
            uid_set(&still)
        )))
    }

    /// Marks committed messages on the server as configured.
    async fn mark(&self, live: &mut Live, uids: &[u32]) -> Result<(), ImapError> {
        let set = uid_set(uids);
        match self.config.after {
            AfterIngest::None => {}
            AfterIngest::Keyword => {
                let query = format!("+FLAGS.SILENT ({TICKETED})");
                timed("UID STORE", COMMAND_TIMEOUT, async {
                    live.session
                        .uid_store(&set, &query)
                        .await?
                        .try_collect::<Vec<Fetch>>()
                        .await
                })
                .await?;
            }
            AfterIngest::Move => {
                let target = self.config.processed_mailbox.as_deref().ok_or_else(|| {
                    ImapError::Internal("after = \"move\" without processed_mailbox".into())
                })?;
                if live.caps.moves {
                    timed(
                        "UID MOVE",
                        COMMAND_TIMEOUT,
                        live.session.uid_mv(&set, target),
                    )
                    .await?;
                } else {
                    timed(
                        "UID COPY",
                        COMMAND_TIMEOUT,
                        live.session.uid_copy(&set, target),
                    )
                    .await?;
                    timed("UID STORE", COMMAND_TIMEOUT, async {
                        live.session
                            .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                            .await?
                            .try_collect::<Vec<Fetch>>()
                            .await
                    })
                    .await?;
                    // Only UID EXPUNGE limits the expunge to our set; a plain EXPUNGE would
                    // also remove whatever a person flagged \Deleted.
                    if live.caps.uidplus {
                        timed("UID EXPUNGE", COMMAND_TIMEOUT, async {
                            live.session
                                .uid_expunge(&set)
                                .await?
                                .try_collect::<Vec<u32>>()
                                .await
                        })
                        .await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits for new mail: IDLE when the server and the config allow it, else sleeps
    /// `poll_interval`. Either way it returns at least every `poll_interval` (a backstop for
    /// missed notifications) and at once on shutdown.
    async fn wait_for_change(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Wake, ImapError> {
        let mut live = self
            .live
            .take()
            .ok_or_else(|| ImapError::Internal("wait without a connection".into()))?;
        // EXISTS that arrived during our own commands is only in the channel: IDLE would not
        // report it again.
        if drain_news!(live.session.unsolicited_responses) {
            self.live = Some(live);
            return Ok(Wake::Changed);
        }
        let limit = self
            .config
            .poll_interval
            .clamp(Duration::from_secs(1), IDLE_REISSUE);
        let wake = if self.config.idle && live.caps.idle {
            let (session, wake) = idle(live.session, limit, shutdown).await?;
            live.session = session;
            wake
        } else {
            self.sleep_polling(&mut live, shutdown).await?
        };
        self.live = Some(live);
        Ok(wake)
    }

    /// Sleeps `poll_interval`, with a NOOP at least every 29 minutes so the server does not
    /// log us out as inactive.
    async fn sleep_polling(
        &self,
        live: &mut Live,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Wake, ImapError> {
        let mut remaining = self.config.poll_interval.max(Duration::from_secs(1));
        loop {
            let slice = remaining.min(IDLE_REISSUE);
            tokio::select! {
                () = tokio::time::sleep(slice) => {}
                () = stopped(shutdown) => return Ok(Wake::Shutdown),
            }
            remaining = remaining.saturating_sub(slice);
            if remaining.is_zero() {
                return Ok(Wake::Timeout);
            }
            timed("NOOP", COMMAND_TIMEOUT, live.session.noop()).await?;
            if drain_news!(live.session.unsolicited_responses) {
                return Ok(Wake::Changed);
            }
        }
    }

    /// Runs `f` with the store on a blocking thread: SQLite calls block, and the connection
    /// must never be held across an await.
    async fn with_store<T, F>(&self, f: F) -> Result<T, ImapError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = store.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| ImapError::Internal(format!("database task: {e}")))?
        .map_err(ImapError::Store)
    }
}

/// A message's bytes (or only its headers when over the size limit), and when the server
/// received it.
type RawMail = (Vec<u8>, bool, Option<i64>);

/// A batch fetched from the server, its analysis under way.
struct Fetched {
    first: u32,
    /// The highest UID asked for: the watermark once committed, even if it was expunged.
    high: u32,
    validity: u32,
    present: Vec<u32>,
    prepared: crate::pipeline::Prepared,
}

/// One IDLE round: returns the session (after DONE) and why the wait ended.
async fn idle(
    session: Session,
    limit: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(Session, Wake), ImapError> {
    let unsolicited = session.unsolicited_responses.clone();
    let mut handle = session.idle();
    timed("IDLE", COMMAND_TIMEOUT, handle.init()).await?;
    let wake = if drain_news!(unsolicited) {
        Wake::Changed
    } else if *shutdown.borrow() {
        Wake::Shutdown
    } else {
        // The StopSource must stay alive while waiting: dropping it ends the wait at once.
        let (wait, _stop) = handle.wait_with_timeout(limit);
        // The crate's own timeout restarts on every server keepalive ("* OK Still here"), so
        // it alone would never fire on a server that sends them more often than `limit`.
        tokio::select! {
            r = wait => match r {
                Ok(async_imap::extensions::idle::IdleResponse::NewData(_)) => Wake::Changed,
                Ok(_) => Wake::Timeout,
                Err(e) => return Err(ImapError::protocol("IDLE", e)),
            },
            () = tokio::time::sleep(limit) => Wake::Timeout,
            () = stopped(shutdown) => Wake::Shutdown,
        }
    };
    let session = timed("DONE (end of IDLE)", COMMAND_TIMEOUT, handle.done()).await?;
    Ok((session, wake))
}

/// Returns once shutdown is requested, or when its sender is gone (the daemon is exiting).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// Consecutive runs of `uids` of at most `max_count` messages and `max_bytes` (by `sizes`; an
/// unknown size counts as nothing, the fetch finds it again), each holding at least one UID.
fn cut_batches(
    uids: &[u32],
    sizes: &BTreeMap<u32, u64>,
    max_count: usize,
    max_bytes: u64,
) -> Vec<Vec<u32>> {
    let mut batches: Vec<Vec<u32>> = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    let mut bytes = 0u64;
    for &uid in uids {
        let size = sizes.get(&uid).copied().unwrap_or(0);
        if !current.is_empty() && (current.len() >= max_count || bytes + size > max_bytes) {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(uid);
        bytes += size;
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

async fn collect_fetch(
    session: &mut Session,
    set: &str,
    query: &str,
) -> async_imap::error::Result<Vec<Fetch>> {
    session.uid_fetch(set, query).await?.try_collect().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_by_count_and_by_bytes_but_never_empty() {
        let uids: Vec<u32> = (1..=10).collect();
        let sizes: BTreeMap<u32, u64> = uids.iter().map(|&u| (u, 10)).collect();
        assert_eq!(
            cut_batches(&uids, &sizes, 4, 1000),
            vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10]]
        );
        assert_eq!(
            cut_batches(&uids, &sizes, 100, 25),
            vec![vec![1, 2], vec![3, 4], vec![5, 6], vec![7, 8], vec![9, 10]]
        );
        // A message larger than the byte budget travels alone; unknown sizes count as nothing.
        let mut big = sizes.clone();
        big.insert(3, 500);
        big.remove(&6);
        assert_eq!(
            cut_batches(&uids, &big, 100, 30),
            vec![vec![1, 2], vec![3], vec![4, 5, 6, 7], vec![8, 9, 10]]
        );
        assert!(cut_batches(&[], &sizes, 4, 10).is_empty());
    }

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 4, 5, 7, 9, 10, 11, 12]), "1:5,7,9:12");
        assert_eq!(uid_set(&[12, 9, 7, 11, 10, 1, 3, 2, 5, 4, 5]), "1:5,7,9:12");
        assert_eq!(uid_set(&[42]), "42");
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[1, 3, 5]), "1,3,5");
        assert_eq!(
            uid_set(&[u32::MAX - 1, u32::MAX]),
            format!("{}:{}", u32::MAX - 1, u32::MAX)
        );
    }

    #[test]
    fn star_range_answers_are_filtered_to_new_uids() {
        // `UID SEARCH UID 8:*` on a mailbox whose highest UID is 7 answers 7.
        assert_eq!(uids_above([7], 7), Vec::<u32>::new());
        assert_eq!(uids_above([3], 7), Vec::<u32>::new());
        assert_eq!(uids_above([9, 8, 12, 7], 7), vec![8, 9, 12]);
        assert_eq!(uids_above([1, 2], 0), vec![1, 2]);
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets() {
        let mut b = Backoff::new();
        let secs: Vec<u64> = (0..9).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        assert_eq!(Backoff::longest(), Duration::from_secs(60));
    }

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
