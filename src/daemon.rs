//! The daemon: IMAP intake and the SMTP sender as tasks, signals, reload, systemd notify.
//!
//! Entry point: [`run`] (with [`run_blocking`] for `main`). Intake and sender run as tasks; if
//! either dies the process exits non-zero so systemd restarts it. SIGTERM and SIGINT let the
//! current batch or send finish and commit, then exit 0 within 10 s. SIGHUP reloads rules and
//! templates; invalid ones are refused with the reason and the running ones stay.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::mailbox::imap::Intake;
use crate::outbox::Sender;
use crate::pipeline::Pipeline;
use crate::store::{self, Store};

/// READY is sent once the mailbox answered, or after this long in any case.
const READY_AT_THE_LATEST: Duration = Duration::from_secs(30);

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

/// Runs intake and sender until `shutdown` completes.
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
    let status_store = Store::open(&config.storage.database)?;
    let mailbox_key = config.imap.as_ref().map(|i| {
        format!(
            "{}/{}",
            i.auth.username.clone().unwrap_or_default(),
            i.mailbox
        )
    });
    let started_at = start_second(&status_store, mailbox_key.as_deref()).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();

    match config.imap.clone() {
        Some(imap) => {
            let intake = Intake::new(imap, pipeline.clone(), intake_store, wake.clone());
            let rx = stop_rx.clone();
            tasks.spawn(async move { ("intake", intake.run(rx).await) });
        }
        None => tracing::warn!(
            "no [imap] section: nothing is fetched (use `supportd ingest` from an MTA pipe)"
        ),
    }
    match &config.smtp {
        Some(_) => {
            let sender = Sender::new(&config, sender_store)?;
            let rx = stop_rx.clone();
            let wake = wake.clone();
            tasks.spawn(async move { ("sender", sender.run(wake, rx).await) });
        }
        None => tracing::warn!("no [smtp] section: acknowledgements stay queued in the outbox"),
    }
    if tasks.is_empty() {
        anyhow::bail!(
            "neither [imap] nor [smtp] is configured: the daemon would have nothing to do"
        );
    }

    let notifier = SystemdNotifier::from_env();
    let mut ready_sent = false;
    let ready_waited = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let watchdog_every = notifier.watchdog_interval();
    let mut last_watchdog = tokio::time::Instant::now();
    let status_store = store::Shared::new(status_store);
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
                if !ready_sent {
                    // READY once the mailbox answered (or at once without IMAP).
                    let connected = match &mailbox_key {
                        None => true,
                        Some(key) => {
                            let key = key.clone();
                            let state = status_store.run(move |s| store::mailbox_state(s.conn(), &key)).await;
                            state.ok().and_then(|m| m.last_fetch_at).is_some_and(|t| t >= started_at)
                        }
                    };
                    if connected {
                        ready_sent = true;
                        tracing::info!("ready");
                        notifier.notify("READY=1\nSTATUS=connected; waiting for mail");
                    } else if ready_waited.elapsed() >= READY_AT_THE_LATEST {
                        // A mailbox that is down at boot must not make systemd kill and restart
                        // us in a loop: the intake keeps retrying, and status says why.
                        ready_sent = true;
                        tracing::warn!("ready, but the mailbox has not answered yet");
                        notifier.notify("READY=1\nSTATUS=mailbox not reachable yet; retrying");
                    }
                }
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

/// The second this run counts as started in: READY is sent once the mailbox's `last_fetch_at`
/// reaches it. That column has a resolution of one second, so when the previous run's last
/// fetch falls in the current second (a quick restart) this waits for the next one; otherwise
/// the old fetch would pass for ours and READY would go out before the server ever answered.
async fn start_second(status_store: &Store, mailbox_key: Option<&str>) -> anyhow::Result<i64> {
    let Some(key) = mailbox_key else {
        return Ok(store::now());
    };
    let previous = store::mailbox_state(status_store.conn(), key)?.last_fetch_at;
    loop {
        let now = store::now();
        if previous.is_none_or(|t| t < now) {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
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
