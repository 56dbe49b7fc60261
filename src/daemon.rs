//! The daemon: IMAP intake, the SMTP sender and the escalation check as tasks, signals, reload,
//! systemd notify.
//!
//! Entry point: [`run`] (with [`run_blocking`] for `main`). Intake, sender and the HTTP server
//! (`[http] listen`) run as tasks; if one dies the process exits non-zero so systemd restarts
//! it. The escalation check runs every minute beside them; a failed check is logged and tried
//! again the next minute. SIGTERM and SIGINT let the current batch or send finish and commit,
//! and the requests in flight be answered, then exit 0 within 10 s. SIGHUP reloads rules and
//! templates (and the form pages); invalid ones are refused with the reason and the running
//! ones stay.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::mailbox::imap::{Intake, Readiness};
use crate::outbox::Sender;
use crate::pipeline::Pipeline;
use crate::sla::escalate::Escalator;
use crate::store::{Shared, Store};

/// READY is sent once the mailbox answered, or after this long in any case.
const READY_AT_THE_LATEST: Duration = Duration::from_secs(30);

/// How often the response clocks are checked.
const ESCALATION_EVERY: Duration = Duration::from_secs(60);

/// How long shutdown may take before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Loads the configuration and runs the daemon on a fresh tokio runtime until a signal stops it.
///
/// # Errors
/// Configuration, database, rules or templates are unusable, or a task died.
pub fn run_blocking(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: finishing the current work"),
                _ = int.recv() => tracing::info!("SIGINT: finishing the current work"),
            }
        };
        run(config, stop).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Runs intake, sender and HTTP server until `shutdown` completes; the HTTP server then
/// answers the requests in flight before it stops.
///
/// # Errors
/// Start-up failed, or a task died (the caller exits non-zero so systemd restarts us).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // First: until a handler is installed, SIGHUP's default action ends the process, and
    // loading rules and templates takes a moment.
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut intake_store = Store::open(&config.storage.database)
        .with_context(|| format!("opening {}", config.storage.database.display()))?;
    intake_store.checkpoint_in_background()?;
    let pipeline = Arc::new(Pipeline::new(&config, &mut intake_store)?);
    let sender_store = Store::open(&config.storage.database)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();

    // The intake says when its mailbox answered; without one there is nothing to wait for.
    let mut intake_ready = match config.imap.clone() {
        Some(imap) => {
            let intake = Intake::new(imap, pipeline.clone(), intake_store, wake.clone());
            let ready = intake.ready();
            let rx = stop_rx.clone();
            tasks.spawn(async move { ("intake", intake.run(rx).await) });
            Some(ready)
        }
        None => {
            tracing::warn!(
                "no [imap] section: nothing is fetched (use `supportd ingest` from an MTA pipe)"
            );
            None
        }
    };
    match &config.smtp {
        Some(_) => {
            let sender = Sender::new(&config, sender_store)?;
            let rx = stop_rx.clone();
            let wake = wake.clone();
            tasks.spawn(async move { ("sender", sender.run(wake, rx).await) });
        }
        None => tracing::warn!("no [smtp] section: acknowledgements stay queued in the outbox"),
    }
    if config.http.as_ref().is_some_and(|h| h.listen.is_some()) {
        let server = crate::http::Server::bind(&config, pipeline.clone(), wake.clone())
            .await
            .context("starting the HTTP server")?;
        let rx = stop_rx.clone();
        tasks.spawn(async move { ("http", server.run(rx).await) });
    }
    if tasks.is_empty() {
        anyhow::bail!(
            "none of [imap], [smtp] or [http] listen is configured: the daemon would have nothing to do"
        );
    }
    let escalation_store = Shared::new(Store::open(&config.storage.database)?);
    let escalator = Escalator::new(&config, pipeline.signer().clone());
    {
        let (pipeline, rx, wake) = (pipeline.clone(), stop_rx.clone(), wake.clone());
        tasks.spawn(async move {
            let checks = escalations(escalator, pipeline, escalation_store, wake, rx);
            ("escalation", checks.await)
        });
    }

    let notifier = SystemdNotifier::from_env();
    let mut ready_sent = false;
    let ready_deadline = tokio::time::Instant::now() + READY_AT_THE_LATEST;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let watchdog_every = notifier.watchdog_interval();
    let mut last_watchdog = tokio::time::Instant::now();
    tokio::pin!(shutdown);

    let result = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            _ = hup.recv() => match pipeline.reload() {
                Ok(()) => {
                    tracing::info!("SIGHUP: rules and templates reloaded");
                    notifier.notify("STATUS=rules and templates reloaded");
                }
                Err(e) => tracing::error!("SIGHUP: keeping the running rules and templates: {e:#}"),
            },
            Some(joined) = tasks.join_next() => {
                break match joined {
                    Ok((name, Ok(()))) => Err(anyhow::anyhow!("the {name} task stopped unexpectedly")),
                    Ok((name, Err(e))) => Err(e.context(format!("the {name} task failed"))),
                    Err(e) => Err(anyhow::anyhow!("a task panicked: {e}")),
                };
            }
            _ = tick.tick() => {
                if let Some(every) = watchdog_every && last_watchdog.elapsed() >= every {
                    notifier.notify("WATCHDOG=1");
                    last_watchdog = tokio::time::Instant::now();
                }
            }
            // READY once the mailbox answered (or at once without IMAP).
            () = answered(intake_ready.as_mut()), if !ready_sent => {
                ready_sent = true;
                tracing::info!("ready");
                notifier.notify("READY=1\nSTATUS=connected; waiting for mail");
            }
            () = tokio::time::sleep_until(ready_deadline), if !ready_sent => {
                // A mailbox that is down at boot must not make systemd kill and restart us in a
                // loop: the intake keeps retrying, and status says why.
                ready_sent = true;
                tracing::warn!("ready, but the mailbox has not answered yet");
                notifier.notify("READY=1\nSTATUS=mailbox not reachable yet; retrying");
            }
        }
    };

    let _ = stop_tx.send(true);
    notifier.notify("STOPPING=1");
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok((name, Err(e))) = joined {
                tracing::warn!("{name} ended with an error during shutdown: {e:#}");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("tasks did not finish within {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    result
}

/// Runs the escalation check at once and then every [`ESCALATION_EVERY`] until shutdown, with
/// the rules' calendar and templates in force (a SIGHUP reload applies from the next check).
/// Mail it queues wakes the sender.
async fn escalations(
    escalator: Escalator,
    pipeline: Arc<Pipeline>,
    store: Shared,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut every = tokio::time::interval(ESCALATION_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return Ok(()),
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        let (escalator, calendar, templates) =
            (escalator.clone(), pipeline.calendar(), pipeline.templates());
        let checked = store
            .run(move |s| escalator.check(s, &calendar, &templates, crate::clock::now()))
            .await;
        match checked {
            Ok(queued) if !queued.is_empty() => wake.notify_one(),
            Ok(_) => {}
            Err(e) => tracing::warn!("escalation check failed; trying again in a minute: {e}"),
        }
    }
}

/// Returns once the intake's mailbox has answered, at once without an intake (`None`). Never
/// returns if the intake is gone before that: its task's end is reported on its own.
async fn answered(intake_ready: Option<&mut watch::Receiver<Readiness>>) {
    let Some(ready) = intake_ready else {
        return;
    };
    if ready.wait_for(|r| *r == Readiness::Answered).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// sd_notify(3) without libsystemd: one datagram per state change to $NOTIFY_SOCKET.
struct SystemdNotifier {
    socket: Option<std::os::unix::net::UnixDatagram>,
    watchdog: Option<Duration>,
}

impl SystemdNotifier {
    fn from_env() -> Self {
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(|us| Duration::from_micros(us / 2));
        let socket = std::env::var("NOTIFY_SOCKET").ok().and_then(|path| {
            let sock = std::os::unix::net::UnixDatagram::unbound().ok()?;
            let connected = if let Some(abstract_name) = path.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
                    .and_then(|addr| sock.connect_addr(&addr))
            } else {
                sock.connect(&path)
            };
            match connected {
                Ok(()) => Some(sock),
                Err(e) => {
                    tracing::warn!("NOTIFY_SOCKET {path}: {e}");
                    None
                }
            }
        });
        Self { socket, watchdog }
    }

    fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref().and(self.watchdog)
    }

    fn notify(&self, state: &str) {
        if let Some(sock) = &self.socket
            && let Err(e) = sock.send(state.as_bytes())
        {
            tracing::debug!("sd_notify: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_waits_for_the_intake_to_answer_but_not_for_a_missing_intake() {
        answered(None).await;
        let (intake, mut ready) = watch::channel(Readiness::Connecting);
        let early = tokio::time::timeout(Duration::from_millis(50), answered(Some(&mut ready)));
        assert!(early.await.is_err(), "ready before the mailbox answered");
        intake.send_replace(Readiness::Answered);
        tokio::time::timeout(Duration::from_secs(5), answered(Some(&mut ready)))
            .await
            .expect("ready once the mailbox answered");
    }

    #[tokio::test]
    async fn an_intake_gone_before_answering_never_makes_us_ready() {
        let (intake, mut ready) = watch::channel(Readiness::Connecting);
        drop(intake);
        let waited = tokio::time::timeout(Duration::from_millis(50), answered(Some(&mut ready)));
        assert!(waited.await.is_err(), "a dead intake counted as answered");
    }
}
