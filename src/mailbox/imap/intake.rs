//! The intake loop: connect, take in what is new, then wait for more (IDLE, RFC 2177, or
//! polling), reconnecting with a bounded backoff, until shutdown; and telling the daemon when the
//! mailbox first answered.
//!
//! Entry points: [`Intake::run`] (the daemon's task), [`Intake::poll_once`] (one pass, for tests
//! and the benchmark), [`Intake::ready`] (the daemon's READY). What happens inside a pass, with
//! the mailbox selected, is in [`super::selected`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::selected::Selected;
use super::session::{COMMAND_TIMEOUT, ImapError, Session, drain_news, timed};
use crate::config::ImapConfig;
use crate::pipeline::Pipeline;
use crate::store::{self, Shared};

/// RFC 2177: servers may drop an idle client after 30 minutes, so IDLE is re-issued before that.
const IDLE_REISSUE: Duration = Duration::from_mins(29);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_mins(1);

/// Whether the intake's mailbox has answered yet (see [`Intake::ready`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Not yet: connecting, or waiting to retry after a failure.
    Connecting,
    /// A connection reached the selected state at least once.
    Answered,
}

/// Takes mail from one IMAP mailbox into the pipeline.
///
/// The fields the selected-mailbox half (`selected.rs`) works with are visible to the `imap`
/// module; the store is reached only through [`Shared::run`].
pub struct Intake {
    pub(super) config: ImapConfig,
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) store: Shared,
    /// Woken after each commit: the acknowledgements are in the outbox.
    pub(super) wake_sender: Arc<Notify>,
    /// `"{username}/{mailbox}"`, the key of the watermark row.
    pub(super) key: String,
    /// The connection, when there is one and its state is known.
    pub(super) live: Option<Selected>,
    /// Set to [`Readiness::Answered`] once the mailbox answered; see [`Intake::ready`].
    ready: watch::Sender<Readiness>,
}

impl fmt::Debug for Intake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Intake")
            .field("key", &self.key)
            .field("host", &self.config.host)
            .field("connected", &self.live.is_some())
            .field("ready", &*self.ready.borrow())
            .finish_non_exhaustive()
    }
}

impl Intake {
    /// An intake for `config`'s mailbox, committing through `pipeline` into `store` and waking
    /// the SMTP sender through `wake_sender` after each commit. Connects only when run.
    #[must_use]
    pub fn new(
        config: ImapConfig,
        pipeline: Arc<Pipeline>,
        store: impl Into<Shared>,
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
            store: store.into(),
            wake_sender,
            key,
            live: None,
            ready: watch::channel(Readiness::Connecting).0,
        }
    }

    /// Tells when the mailbox has answered: [`Readiness::Answered`] once a connection got as
    /// far as a selected mailbox (login, SELECT, UIDVALIDITY checked, catch-up marked), for the
    /// first time in this intake's life. It never goes back, and it is not a health signal:
    /// `supportd status` has the mailbox's last error. The daemon sends systemd `READY=1` on it.
    pub(crate) fn ready(&self) -> watch::Receiver<Readiness> {
        self.ready.subscribe()
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
                Some(live) => self.opened(live?),
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
            .store
            .run(move |s| store::record_fetch_error(s.conn(), &key, &text, auth))
            .await
        {
            tracing::error!(mailbox = %self.key, "cannot record the IMAP error: {err}");
        }
    }

    /// Keeps a fresh connection, and tells whoever watches [`Self::ready`] that the mailbox
    /// answered.
    fn opened(&mut self, live: Selected) {
        self.live = Some(live);
        self.ready.send_replace(Readiness::Answered);
    }

    /// Connects if needed, then takes in everything new; records success.
    async fn pass(&mut self, stop: Option<&watch::Receiver<bool>>) -> Result<usize, ImapError> {
        if self.live.is_none() {
            let live = self.open().await?;
            self.opened(live);
        }
        let count = self.sync(stop).await?;
        let key = self.key.clone();
        self.store
            .run(move |s| store::record_fetch_ok(s.conn(), &key))
            .await?;
        Ok(count)
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
        live: &mut Selected,
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

/// Reconnect delays: 1 s doubling to 60 s, back to 1 s after a success.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    #[must_use]
    pub(crate) fn new() -> Self {
        Self {
            next: BACKOFF_FIRST,
        }
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    /// Back to the first delay, after a success.
    pub(crate) fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }

    /// Authentication failures wait the longest: hammering a server with a bad password gets
    /// the account locked.
    #[must_use]
    pub(crate) fn longest() -> Duration {
        BACKOFF_MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_and_resets() {
        let mut b = Backoff::new();
        let secs: Vec<u64> = (0..9).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        assert_eq!(Backoff::longest(), Duration::from_secs(60));
    }
}
