//! SMTP delivery of queued mail, oldest first, with retries.
//!
//! Entry point: [`Sender::run`] (or [`Sender::send_due`] for one pass). A row is marked
//! `sending` before the SMTP transaction and `sent` after the server's reply, so a crash in
//! between resends at most that one message on restart ([`crate::store::requeue_interrupted`]).
//! A temporary failure (4xx, connection refused, timeout) is retried with backoff from 1 minute
//! doubling to 1 hour, for up to 3 days; a permanent one (5xx) fails the row at once and flags
//! the ticket so an agent sees the customer did not get our mail.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use lettre::address::Envelope;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials as SmtpCredentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::{Notify, watch};

use crate::config::{Config, ImapConfig, SmtpConfig, TlsMode};
use crate::credentials::Credentials;
use crate::store::{self, OutboxItem, Store};

/// First retry delay after a temporary failure.
const FIRST_RETRY: Duration = Duration::from_secs(60);
/// Longest delay between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// After this long in the queue a row is given up as failed.
const GIVE_UP_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);
/// Even with nothing due and no wake-up, look at the queue this often (rows whose retry time
/// came, rows queued by another process such as the MTA pipe).
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
}

/// Sends the outbox over one reused SMTP connection.
pub struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    store: Arc<Mutex<Store>>,
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
    pub fn new(config: &Config, store: Arc<Mutex<Store>>) -> anyhow::Result<Sender> {
        let smtp = config
            .smtp
            .as_ref()
            .context("no [smtp] section in the configuration")?;
        let transport = build_transport(smtp)?;
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
            transport,
            store,
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
        let store = self.store.clone();
        let requeued = tokio::task::spawn_blocking(move || {
            let s = store.lock().unwrap_or_else(|p| p.into_inner());
            store::requeue_interrupted(s.conn())
        })
        .await??;
        if requeued > 0 {
            tracing::warn!(
                requeued,
                "mail interrupted mid-send by a crash is sent again"
            );
        }
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let report = self.send_due(&shutdown).await?;
            if report != SendReport::default() {
                tracing::debug!(?report, "outbox pass");
            }
            let wait = self.next_wait().await?;
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn next_wait(&self) -> anyhow::Result<Duration> {
        let store = self.store.clone();
        let next = tokio::task::spawn_blocking(move || {
            let s = store.lock().unwrap_or_else(|p| p.into_inner());
            store::next_due_at(s.conn())
        })
        .await??;
        let now = store::now();
        Ok(match next {
            Some(at) if at <= now => Duration::ZERO,
            Some(at) => Duration::from_secs((at - now) as u64).min(IDLE_CHECK),
            None => IDLE_CHECK,
        })
    }

    /// Sends every row that is due, oldest first, one at a time; stops early on shutdown
    /// (between two messages, never inside one).
    ///
    /// # Errors
    /// Only database errors.
    pub async fn send_due(&self, shutdown: &watch::Receiver<bool>) -> anyhow::Result<SendReport> {
        let mut report = SendReport::default();
        let mut smtp_down = false;
        while !*shutdown.borrow() && !smtp_down {
            let store = self.store.clone();
            let next = tokio::task::spawn_blocking(move || {
                let s = store.lock().unwrap_or_else(|p| p.into_inner());
                let next = store::next_due(s.conn(), store::now())?;
                if let Some((item, _)) = &next {
                    store::mark_sending(s.conn(), item.id)?;
                }
                anyhow::Ok(next)
            })
            .await??;
            let Some((item, raw)) = next else {
                break;
            };
            match self.send_one(&item, &raw).await {
                Ok(()) => {
                    self.finish(item.id, Finish::Sent).await?;
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
                Err(SendError::Temporary(reason)) => {
                    let attempts = item.attempts as u32 + 1;
                    let age = store::now() - item.created_at;
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
                        let delay = retry_delay(attempts);
                        tracing::warn!(outbox = item.id, to = %item.to, retry_in_s = delay.as_secs(), "temporary failure: {reason}");
                        self.finish(
                            item.id,
                            Finish::Retry(store::now() + delay.as_secs() as i64, reason),
                        )
                        .await?;
                        report.retried += 1;
                    }
                    // The server is down or refusing for now: the rest would fail the same way.
                    smtp_down = true;
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
        // whatever it provokes (a bounce, another auto-reply) goes nowhere.
        let from = if item.kind == "ack" {
            None
        } else {
            Some(self.support_address.clone())
        };
        let envelope =
            Envelope::new(from, vec![to]).map_err(|e| SendError::Permanent(e.to_string()))?;
        self.transport
            .send_raw(&envelope, raw)
            .await
            .map(|_| ())
            .map_err(|e| {
                if e.is_permanent() {
                    SendError::Permanent(e.to_string())
                } else {
                    SendError::Temporary(e.to_string())
                }
            })
    }

    async fn finish(&self, id: i64, how: Finish) -> anyhow::Result<()> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let s = store.lock().unwrap_or_else(|p| p.into_inner());
            match how {
                Finish::Sent => store::mark_sent(s.conn(), id, store::now()),
                Finish::Retry(at, e) => store::mark_retry(s.conn(), id, at, &e),
                Finish::Failed(e, ticket) => {
                    store::mark_failed(s.conn(), id, &e)?;
                    if let Some(t) = ticket {
                        store::flag_ticket(s.conn(), t, "delivery_failed")?;
                    }
                    Ok(())
                }
            }
        })
        .await??;
        Ok(())
    }
}

enum Finish {
    Sent,
    Retry(i64, String),
    Failed(String, Option<i64>),
}

/// How a send failed: a permanent failure (5xx, unusable address) is never retried.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Permanent(String),
    #[error("{0}")]
    Temporary(String),
}

fn build_transport(smtp: &SmtpConfig) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let port = smtp.port.unwrap_or(match smtp.tls {
        TlsMode::Implicit => 465,
        TlsMode::Starttls => 587,
        TlsMode::None => 25,
    });
    let tls_params = || -> anyhow::Result<TlsParameters> {
        let mut b = TlsParameters::builder(smtp.host.clone());
        if let Some(ca) = &smtp.ca_file {
            let pem = std::fs::read(ca)
                .with_context(|| format!("reading smtp.ca_file {}", ca.display()))?;
            b = b
                .certificate_store(lettre::transport::smtp::client::CertificateStore::None)
                .add_root_certificate(
                    Certificate::from_pem(&pem).context("smtp.ca_file is not a PEM certificate")?,
                );
        }
        Ok(b.build_rustls()?)
    };
    let tls = match smtp.tls {
        TlsMode::Implicit => Tls::Wrapper(tls_params()?),
        TlsMode::Starttls => Tls::Required(tls_params()?),
        TlsMode::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
        .port(port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(30)))
        // One connection, reused: Postfix and providers rate-limit connection churn.
        .pool_config(PoolConfig::new().max_size(1).min_idle(0));
    if smtp.auth.username.is_some() {
        let creds = Credentials::resolve(&smtp.auth).context("smtp credentials")?;
        builder = match creds {
            Credentials::Password { username, password } => builder
                .credentials(SmtpCredentials::new(
                    username,
                    password.expose().to_string(),
                ))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]),
            Credentials::OAuth2 { username, token } => builder
                .credentials(SmtpCredentials::new(username, token.expose().to_string()))
                .authentication(vec![Mechanism::Xoauth2]),
        };
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_from_a_minute_to_an_hour() {
        let secs: Vec<u64> = (1..=9).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(secs, vec![60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
    }
}
