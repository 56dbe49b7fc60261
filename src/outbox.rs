//! SMTP delivery of queued mail, oldest first, with retries.
//!
//! Entry point: [`Sender::run`] (or [`Sender::send_due`] for one pass). A row is marked
//! `sending` before the SMTP transaction and `sent` after the server's reply, so a crash in
//! between resends at most that one message on restart ([`crate::store::requeue_interrupted`]).
//! A temporary failure (4xx, connection lost mid-message) is retried with backoff from 1 minute
//! doubling to 1 hour, for up to 3 days; a permanent one (5xx) fails the row at once and flags
//! the ticket so an agent sees the customer did not get our mail. While the server cannot be
//! reached at all (connection refused, timeout, TLS) it is probed every 10 s instead (see
//! [`UNREACHABLE_RETRY`]). After any temporary failure the whole queue pauses: one probe at a
//! time, not one per queued row.
//!
//! One connection is kept open and reused (Postfix and providers rate-limit connection churn),
//! checked with NOOP before each message and closed after a minute without use. It is opened
//! here rather than by lettre's pool so that it can have `TCP_NODELAY` (see [`Server::connect`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use lettre::Address;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials as SmtpCredentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_rustls::rustls::ClientConfig;

use crate::config::{AuthConfig, Config, ImapConfig, SmtpConfig, TlsMode};
use crate::credentials::Credentials;
use crate::net::{self, ConnectError, HandshakeError, MailStream};
use crate::store::{self, OutboxItem, Shared};

/// First retry delay after a temporary failure.
const FIRST_RETRY: Duration = Duration::from_secs(60);
/// Longest delay between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// After this long in the queue a row is given up as failed.
const GIVE_UP_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);
/// Even with nothing due and no wake-up, look at the queue this often (rows whose retry time
/// came, rows queued by another process such as the MTA pipe).
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// While the server cannot be reached at all, it is probed this often.
///
/// Why not the 1-minute schedule: when the connection itself fails (refused, timed out, TLS
/// handshake, greeting), the server never saw the message and said nothing about it; it is
/// simply away, typically for a restart. Probing every 10 s costs one connection attempt (only
/// one: the whole queue pauses meanwhile, see [`SendReport::pause`]) and gets the
/// acknowledgements out within seconds of the server's return instead of up to a minute or an
/// hour later. A server that answers with a 4xx did look at the message and asked us to come
/// back later: that keeps the 1-minute-doubling schedule.
const UNREACHABLE_RETRY: Duration = Duration::from_secs(10);
/// After a temporary failure inside a transaction (4xx, connection lost mid-message) the queue
/// pauses this long before the next row is tried: the failure is often server-wide (full disk,
/// rate limit), and the failed row's own retry follows the schedule anyway.
const PAUSE_AFTER_DEFERRAL: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Greeting, EHLO, STARTTLS, AUTH, NOOP, QUIT.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// One whole transaction gets this plus one second per [`BYTES_PER_SECOND`] of message.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(120);
const BYTES_PER_SECOND: u64 = 256 * 1024;
/// A connection idle longer than this is closed (QUIT) instead of kept open.
const CLOSE_AFTER_IDLE: Duration = Duration::from_secs(60);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
    /// Set when the pass stopped on a temporary failure: send nothing for this long (the
    /// server is away or deferring; the other rows would fare the same).
    pub pause: Option<Duration>,
}

/// Sends the outbox over one reused SMTP connection.
pub struct Sender {
    server: Server,
    /// The open connection between messages, and when it was last used.
    connection: Mutex<Option<(AsyncSmtpConnection, Instant)>>,
    store: Shared,
    support_address: Address,
    append_sent: Option<ImapConfig>,
}

/// Delay before attempt `attempts + 1`, after `attempts` failures (1 min, 2, 4 … capped at 1 h).
pub fn retry_delay(attempts: u32) -> Duration {
    let factor = 1u64 << attempts.saturating_sub(1).min(16);
    (FIRST_RETRY * factor as u32).min(MAX_RETRY)
}

impl Sender {
    /// Builds the sender from `[smtp]`.
    ///
    /// # Errors
    /// No `[smtp]` section, unreadable credentials or CA file, or an invalid support address.
    pub fn new(config: &Config, store: impl Into<Shared>) -> anyhow::Result<Sender> {
        let smtp = config
            .smtp
            .as_ref()
            .context("no [smtp] section in the configuration")?;
        let server = Server::new(smtp)?;
        let support_address: Address = config
            .support
            .address
            .parse()
            .with_context(|| format!("support.address {:?}", config.support.address))?;
        let append_sent = if smtp.append_sent {
            Some(
                config
                    .imap
                    .clone()
                    .context("smtp.append_sent needs an [imap] section")?,
            )
        } else {
            None
        };
        Ok(Sender {
            server,
            connection: Mutex::new(None),
            store: store.into(),
            support_address,
            append_sent,
        })
    }

    /// Sends whatever is due until `shutdown` becomes true; `wake` is notified when new rows
    /// are queued so acknowledgements leave within moments of the customer's mail arriving.
    ///
    /// # Errors
    /// Only database errors; SMTP errors are retried.
    pub async fn run(
        self,
        wake: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let requeued = self
            .store
            .run(|s| store::requeue_interrupted(s.conn()))
            .await?;
        if requeued > 0 {
            tracing::warn!(
                requeued,
                "mail interrupted mid-send by a crash is sent again"
            );
        }
        let result = loop {
            if *shutdown.borrow() {
                break Ok(());
            }
            let report = match self.send_due(&shutdown).await {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
            if report != SendReport::default() {
                tracing::debug!(?report, "outbox pass");
            }
            self.close_if_idle().await;
            if let Some(pause) = report.pause {
                // New rows wait too: the server is away or deferring.
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let wait = match self.next_wait().await {
                Ok(w) => w,
                Err(e) => break Err(e),
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        };
        self.quit().await;
        result
    }

    async fn next_wait(&self) -> anyhow::Result<Duration> {
        let next = self.store.run(|s| store::next_due_at(s.conn())).await?;
        let now = store::now();
        Ok(match next {
            Some(at) if at <= now => Duration::ZERO,
            Some(at) => Duration::from_secs((at - now) as u64).min(IDLE_CHECK),
            None => IDLE_CHECK,
        })
    }

    /// Sends every row that is due, oldest first, one at a time; stops early on shutdown
    /// (between two messages, never inside one) and at the first temporary failure.
    ///
    /// # Errors
    /// Only database errors.
    pub async fn send_due(&self, shutdown: &watch::Receiver<bool>) -> anyhow::Result<SendReport> {
        let mut report = SendReport::default();
        while !*shutdown.borrow() && report.pause.is_none() {
            let next = self
                .store
                .run(|s| {
                    let next = store::next_due(s.conn(), store::now())?;
                    if let Some((item, _)) = &next {
                        store::mark_sending(s.conn(), item.id)?;
                    }
                    Ok(next)
                })
                .await?;
            let Some((item, raw)) = next else {
                break;
            };
            match self.send_one(&item, &raw).await {
                Ok(()) => {
                    self.finish(item.id, Finish::Sent).await?;
                    crate::http::metrics::record_sent(item.kind);
                    report.sent += 1;
                    tracing::info!(outbox = item.id, kind = %item.kind, to = %item.to, ticket = item.ticket.as_deref().unwrap_or("-"), message_id = %item.message_id, "sent");
                    if let Some(imap) = &self.append_sent
                        && let Err(e) = crate::mailbox::imap::append(imap, "Sent", &raw).await
                    {
                        tracing::warn!(
                            outbox = item.id,
                            "could not copy the sent mail to the Sent folder: {e}"
                        );
                    }
                }
                Err(SendError::Permanent(reason)) => {
                    tracing::error!(outbox = item.id, to = %item.to, "rejected for good: {reason}");
                    self.finish(item.id, Finish::Failed(reason, item.ticket_id))
                        .await?;
                    report.failed += 1;
                }
                Err(e) => {
                    let attempts = item.attempts as u32 + 1;
                    let age = store::now() - item.created_at;
                    let (delay, pause) = e.delays(attempts);
                    let reason = e.to_string();
                    if age >= GIVE_UP_AFTER.as_secs() as i64 {
                        tracing::error!(outbox = item.id, to = %item.to, "giving up after 3 days: {reason}");
                        self.finish(
                            item.id,
                            Finish::Failed(
                                format!("gave up after 3 days: {reason}"),
                                item.ticket_id,
                            ),
                        )
                        .await?;
                        report.failed += 1;
                    } else {
                        if matches!(e, SendError::Unavailable { refused: true, .. }) {
                            tracing::error!(outbox = item.id, to = %item.to, retry_in_s = delay.as_secs(), "SMTP server refuses us, nothing is being sent: {reason}");
                        } else {
                            tracing::warn!(outbox = item.id, to = %item.to, retry_in_s = delay.as_secs(), "temporary failure: {reason}");
                        }
                        self.finish(
                            item.id,
                            Finish::Retry(store::now() + delay.as_secs() as i64, reason),
                        )
                        .await?;
                        report.retried += 1;
                    }
                    report.pause = Some(pause);
                }
            }
        }
        Ok(report)
    }

    async fn send_one(&self, item: &OutboxItem, raw: &[u8]) -> Result<(), SendError> {
        let to: Address = item
            .to
            .parse()
            .map_err(|e| SendError::Permanent(format!("invalid recipient {:?}: {e}", item.to)))?;
        // RFC 3834 §3.3: an automatic response goes out with a null reverse-path, so that
        // whatever it provokes (a bounce, another auto-reply) goes nowhere. A relayed answer is
        // a person's: its bounce must come back to us, to be blamed on its recipient.
        let from = if matches!(
            item.kind,
            store::OutboxKind::Ack | store::OutboxKind::AgentNotice
        ) {
            None
        } else {
            Some(self.support_address.clone())
        };
        let envelope =
            Envelope::new(from, vec![to]).map_err(|e| SendError::Permanent(e.to_string()))?;
        let mut conn = self.connection().await?;
        let limit = TRANSACTION_TIMEOUT + Duration::from_secs(raw.len() as u64 / BYTES_PER_SECOND);
        match tokio::time::timeout(limit, conn.send(&envelope, raw)).await {
            Ok(Ok(_)) => {
                self.keep(conn);
                Ok(())
            }
            // lettre closes the connection after any error; a new one is opened next time.
            Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Ok(Err(e)) => Err(SendError::Temporary(e.to_string())),
            Err(_) => Err(SendError::Temporary(format!(
                "no answer from the SMTP server within {limit:?}"
            ))),
        }
    }

    /// The kept connection if it is still good, else a new one.
    async fn connection(&self) -> Result<AsyncSmtpConnection, SendError> {
        let kept = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // Checked before every message, even one right after another: a server that went away
        // meanwhile (a restart, an idle timeout) is found here, where it is a plain connection
        // failure probed again in seconds, rather than in the middle of a transaction, where it
        // would count as a deferral on the 1-minute schedule. One round trip per message.
        if let Some((mut conn, _)) = kept
            && let Ok(true) = tokio::time::timeout(COMMAND_TIMEOUT, conn.test_connected()).await
        {
            return Ok(conn);
        }
        self.server.connect().await
    }

    fn keep(&self, conn: AsyncSmtpConnection) {
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((conn, Instant::now()));
    }

    /// Says goodbye on a connection nobody used for a while.
    async fn close_if_idle(&self) {
        let idle = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|(_, used)| used.elapsed() >= CLOSE_AFTER_IDLE);
        if idle {
            self.quit().await;
        }
    }

    async fn quit(&self) {
        let kept = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((mut conn, _)) = kept {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.quit()).await;
        }
    }

    async fn finish(&self, id: i64, how: Finish) -> anyhow::Result<()> {
        self.store
            .run(move |s| match how {
                Finish::Sent => store::mark_sent(s.conn(), id, store::now()),
                Finish::Retry(at, e) => store::mark_retry(s.conn(), id, at, &e),
                Finish::Failed(e, ticket) => {
                    store::mark_failed(s.conn(), id, &e)?;
                    if let Some(t) = ticket {
                        store::flag_ticket(s.conn(), t, "delivery_failed")?;
                    }
                    Ok(())
                }
            })
            .await?;
        Ok(())
    }
}

enum Finish {
    Sent,
    Retry(i64, String),
    Failed(String, Option<i64>),
}

/// How a send failed.
#[derive(Debug, thiserror::Error)]
enum SendError {
    /// 5xx in the transaction or an unusable address: never retried.
    #[error("{0}")]
    Permanent(String),
    /// 4xx in the transaction, or the connection broke in the middle of it.
    #[error("{0}")]
    Temporary(String),
    /// No transaction was started: the server could not be reached (refused, timeout, TLS,
    /// greeting, EHLO) or, `refused`, it turned us away with a 5xx there or at AUTH.
    #[error("{reason}")]
    Unavailable { reason: String, refused: bool },
}

impl SendError {
    /// When to retry this row (after its `attempts`-th failure), and how long the whole queue
    /// pauses.
    fn delays(&self, attempts: u32) -> (Duration, Duration) {
        let scheduled = retry_delay(attempts);
        match self {
            SendError::Unavailable { refused: false, .. } => {
                let d = scheduled.min(UNREACHABLE_RETRY);
                (d, d)
            }
            // Bad credentials: retrying fast would get the account locked.
            SendError::Unavailable { refused: true, .. } => (scheduled, scheduled),
            SendError::Temporary(_) | SendError::Permanent(_) => {
                (scheduled, scheduled.min(PAUSE_AFTER_DEFERRAL))
            }
        }
    }
}

/// Where and how to connect, from `[smtp]`.
struct Server {
    host: String,
    port: u16,
    tls: TlsMode,
    /// For STARTTLS (lettre upgrades the connection itself).
    starttls: Option<TlsParameters>,
    /// For implicit TLS (the handshake comes before the greeting).
    implicit: Option<Arc<ClientConfig>>,
    auth: Option<AuthConfig>,
    hello: ClientId,
}

impl Server {
    fn new(smtp: &SmtpConfig) -> anyhow::Result<Server> {
        let port = smtp.port.unwrap_or(match smtp.tls {
            TlsMode::Implicit => 465,
            TlsMode::Starttls => 587,
            TlsMode::None => 25,
        });
        let starttls = match smtp.tls {
            TlsMode::Starttls => {
                let mut b = TlsParameters::builder(smtp.host.clone());
                if let Some(ca) = &smtp.ca_file {
                    let pem = std::fs::read(ca)
                        .with_context(|| format!("reading smtp.ca_file {}", ca.display()))?;
                    b = b
                        .certificate_store(CertificateStore::None)
                        .add_root_certificate(
                            Certificate::from_pem(&pem)
                                .context("smtp.ca_file is not a PEM certificate")?,
                        );
                }
                Some(b.build_rustls()?)
            }
            _ => None,
        };
        let implicit = match smtp.tls {
            TlsMode::Implicit => Some(crate::tls::client_config(smtp.ca_file.as_deref())?),
            _ => None,
        };
        let auth = if smtp.auth.username.is_some() {
            // Checked now so that a broken setting stops the start; read again at every
            // connection so that a rotated password or refreshed token is picked up.
            Credentials::resolve(&smtp.auth).context("smtp credentials")?;
            Some(smtp.auth.clone())
        } else {
            None
        };
        Ok(Server {
            host: smtp.host.clone(),
            port,
            tls: smtp.tls,
            starttls,
            implicit,
            auth,
            hello: ClientId::default(),
        })
    }

    /// Opens a connection: TCP, TLS as configured, greeting, EHLO, AUTH.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let address = format!("{}:{}", self.host, self.port);
        let unreachable = |reason: String| SendError::Unavailable {
            reason,
            refused: false,
        };
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        // `net::connect` sets TCP_NODELAY: lettre writes a message and its final "\r\n.\r\n"
        // separately, and with Nagle's algorithm every message took 40 ms more.
        let tcp = match net::connect(host, self.port, CONNECT_TIMEOUT).await {
            Ok(tcp) => tcp,
            Err(ConnectError::Io(e)) => {
                return Err(unreachable(format!("cannot connect to {address}: {e}")));
            }
            Err(ConnectError::Timeout) => {
                return Err(unreachable(format!(
                    "connecting to {address} timed out after {CONNECT_TIMEOUT:?}"
                )));
            }
        };
        let stream = match (&self.tls, &self.implicit) {
            (TlsMode::Implicit, Some(config)) => {
                match net::handshake(config.clone(), host, tcp, CONNECT_TIMEOUT).await {
                    Ok(tls) => tls,
                    Err(HandshakeError::ServerName(e)) => {
                        return Err(unreachable(format!(
                            "{host} is not a valid server name: {e}"
                        )));
                    }
                    Err(HandshakeError::Tls(e)) => {
                        return Err(unreachable(format!("TLS with {address} failed: {e}")));
                    }
                    Err(HandshakeError::Timeout) => {
                        return Err(unreachable(format!(
                            "TLS handshake with {address} timed out"
                        )));
                    }
                }
            }
            _ => MailStream::Plain(tcp),
        };
        let connected = async {
            let mut conn =
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello).await?;
            if let Some(params) = &self.starttls {
                conn.starttls(params.clone(), &self.hello).await?;
            }
            Ok::<_, lettre::transport::smtp::Error>(conn)
        };
        let mut conn = match tokio::time::timeout(COMMAND_TIMEOUT, connected).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(SendError::Unavailable {
                    reason: format!("SMTP server {address}: {e}"),
                    refused: e.is_permanent(),
                });
            }
            Err(_) => {
                return Err(unreachable(format!(
                    "SMTP server {address} did not greet within {COMMAND_TIMEOUT:?}"
                )));
            }
        };
        if let Some(auth) = &self.auth {
            let auth = auth.clone();
            // The token command is a child process: keep it off the async worker threads.
            let credentials = tokio::task::spawn_blocking(move || Credentials::resolve(&auth))
                .await
                .map_err(|e| unreachable(format!("credential task: {e}")))?
                .map_err(|e| SendError::Unavailable {
                    reason: format!("SMTP credentials: {e}"),
                    refused: true,
                })?;
            let (credentials, mechanisms) = match credentials {
                Credentials::Password { username, password } => (
                    SmtpCredentials::new(username, password.expose().to_string()),
                    vec![Mechanism::Plain, Mechanism::Login],
                ),
                Credentials::OAuth2 { username, token } => (
                    SmtpCredentials::new(username, token.expose().to_string()),
                    vec![Mechanism::Xoauth2],
                ),
            };
            match tokio::time::timeout(COMMAND_TIMEOUT, conn.auth(&mechanisms, &credentials)).await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    conn.abort().await;
                    return Err(SendError::Unavailable {
                        reason: format!("SMTP authentication at {address}: {e}"),
                        refused: !e.is_transient(),
                    });
                }
                Err(_) => {
                    return Err(unreachable(format!(
                        "SMTP authentication at {address} timed out"
                    )));
                }
            }
        }
        Ok(conn)
    }
}

/// lettre takes any stream for a connection it did not open itself.
impl AsyncTokioStream for MailStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match self {
            MailStream::Plain(s) => s.peer_addr(),
            MailStream::Tls(s) => s.get_ref().0.peer_addr(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_from_a_minute_to_an_hour() {
        let secs: Vec<u64> = (1..=9).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(secs, vec![60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
    }

    #[test]
    fn an_unreachable_server_is_probed_every_ten_seconds_and_a_deferral_keeps_the_schedule() {
        let secs = |e: SendError, attempts| {
            let (row, pause) = e.delays(attempts);
            (row.as_secs(), pause.as_secs())
        };
        let away = || SendError::Unavailable {
            reason: "connection refused".into(),
            refused: false,
        };
        assert_eq!(secs(away(), 1), (10, 10));
        assert_eq!(secs(away(), 9), (10, 10));
        let refused = || SendError::Unavailable {
            reason: "535 authentication failed".into(),
            refused: true,
        };
        assert_eq!(secs(refused(), 1), (60, 60));
        assert_eq!(secs(refused(), 3), (240, 240));
        let deferred = || SendError::Temporary("451 try again later".into());
        assert_eq!(secs(deferred(), 1), (60, 10));
        assert_eq!(secs(deferred(), 7), (3600, 10));
    }
}
