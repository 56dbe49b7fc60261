//! The HTTP intake: the dashboard's API and the form page, which file requests into the same
//! pipeline as mail, and the health and metrics endpoints every service needs.
//!
//! Entry point: [`Server::bind`] then [`Server::run`], which `supportd run` starts as one more
//! task when `[http] listen` is set, on the daemon's tokio runtime (axum), and stops on SIGTERM
//! once the requests in flight are answered.
//!
//! | route | what | file |
//! |---|---|---|
//! | `POST /api/v1/requests` | a request from the dashboard's backend (bearer token) | `api.rs` |
//! | `GET`, `POST /support` | the form page, for a customer with a signed link | `form.rs` |
//! | `GET /support/support.css`, `.js` | its stylesheet and script | here |
//! | `GET /healthz` | 200 or 503 with the reasons | `health.rs` |
//! | `GET /metrics` | Prometheus text format | `metrics.rs` |
//!
//! `/healthz` and `/metrics` move to `[http] metrics_listen` when it is set. A request from
//! either door is checked (`request.rs`), becomes an RFC 5322 message (`message.rs`) and is
//! filed through [`Pipeline::ingest_batch`] with its idempotency record (`file.rs`); account
//! links and CSRF tokens are `link.rs`; the page templates `pages.rs`.

mod api;
mod file;
mod form;
mod health;
pub mod link;
mod message;
pub mod metrics;
mod pages;
mod request;

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};

use crate::config::{Config, HttpConfig, Secret};
use crate::pipeline::Pipeline;
use crate::store::{Shared, Store};
use file::Filer;
pub use message::{CATEGORY_HEADER, REQUEST_HEADER};
use pages::Pages;

/// Largest request body taken, in bytes (then 413): far above a 5,000-character message with
/// its account details.
pub const MAX_BODY: usize = 64 * 1024;

/// Every response's Content-Security-Policy: the page's own stylesheet and script, nothing
/// inline, nothing from elsewhere, never in a frame.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub(crate) struct Inner {
    filer: Filer,
    /// A connection of its own for `/healthz` and `/metrics`, which must answer while a
    /// request commits.
    reader: Shared,
    /// Woken after a commit: the acknowledgement is in the outbox.
    wake: Arc<Notify>,
    /// SHA-256 of the API token; `None`: the API is off.
    api_token: Option<[u8; 32]>,
    link_secret: Option<Secret>,
    pages: RwLock<Arc<Pages>>,
    pages_dir: PathBuf,
    config: HttpConfig,
    support_name: String,
    own_addresses: Vec<String>,
    default_locale: String,
    timezone: chrono_tz::Tz,
    /// `"{username}/{mailbox}"` of the IMAP intake, whose fetches `/healthz` watches.
    imap_mailbox: Option<String>,
    smtp_configured: bool,
    /// Unix seconds.
    started_at: i64,
    metrics: Option<&'static PrometheusHandle>,
}

impl Inner {
    fn pages(&self) -> Arc<Pages> {
        self.pages.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn pipeline(&self) -> &Pipeline {
        &self.filer.pipeline
    }

    fn support_address(&self) -> &str {
        &self.filer.support_address
    }
}

/// The HTTP server, bound and ready to run.
pub struct Server {
    state: AppState,
    listeners: Vec<(TcpListener, Router)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addresses", &self.addresses())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Reads the API token and the link secret, loads the page templates, opens the
    /// database twice (filing, reading), installs the metrics recorder and binds `listen`
    /// (and `metrics_listen`), all before the daemon reports ready.
    ///
    /// # Errors
    /// No `[http] listen`, a key that is configured but unreadable or empty, page templates
    /// that do not load, the database, or an address that cannot be bound.
    pub async fn bind(
        config: &Config,
        pipeline: Arc<Pipeline>,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Server> {
        let http = config.http.clone().context("no [http] section")?;
        let listen = http.listen.context("no [http] listen address")?;
        let api_token = match http.api_token() {
            Some(source) => {
                let token = source
                    .read()
                    .map_err(|e| anyhow::anyhow!("[http] API token: {e}"))?;
                Some(<[u8; 32]>::from(Sha256::digest(token.expose().as_bytes())))
            }
            None => {
                tracing::warn!("no [http] api_token_file or api_token_env: the API is off");
                None
            }
        };
        let link_secret = match http.link_secret() {
            Some(source) => Some(
                source
                    .read()
                    .map_err(|e| anyhow::anyhow!("[http] link secret: {e}"))?,
            ),
            None => {
                tracing::warn!(
                    "no [http] link_secret_file or link_secret_env: the form page takes no account link"
                );
                None
            }
        };
        let pages_dir = config.templates.dir.join("http");
        let pages = Pages::load(&pages_dir)
            .with_context(|| format!("loading the form pages from {}", pages_dir.display()))?;
        let open = || {
            Store::open(&config.storage.database)
                .with_context(|| format!("opening {}", config.storage.database.display()))
        };
        let state = AppState(Arc::new(Inner {
            filer: Filer {
                pipeline,
                store: Shared::new(open()?),
                support_address: config.support.address.to_ascii_lowercase(),
                requests_per_hour: http.requests_per_hour,
            },
            reader: Shared::new(open()?),
            wake,
            api_token,
            link_secret,
            pages: RwLock::new(Arc::new(pages)),
            pages_dir,
            support_name: config.support.name.clone(),
            own_addresses: config.own_addresses(),
            default_locale: config.support.default_locale.clone(),
            timezone: config.support.timezone,
            imap_mailbox: config
                .imap
                .as_ref()
                .map(|i| format!("{}/{}", i.auth.username.as_deref().unwrap_or(""), i.mailbox)),
            smtp_configured: config.smtp.is_some(),
            started_at: crate::store::now(),
            metrics: metrics::install(),
            config: http.clone(),
        }));

        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTP server to {addr}"))
        };
        let mut listeners = vec![(
            bind(listen).await?,
            routes(&state, http.metrics_listen.is_none()),
        )];
        if let Some(addr) = http.metrics_listen {
            listeners.push((bind(addr).await?, ops_routes(&state)));
        }
        Ok(Server { state, listeners })
    }

    /// The bound addresses (the actual port when the configuration said 0): `listen` first.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// Serves until `stop` becomes true, then lets the requests in flight finish. SIGHUP
    /// reloads the page templates (an invalid set is refused and the running one stays).
    ///
    /// # Errors
    /// A listener failed.
    pub async fn run(self, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        for addr in self.addresses() {
            tracing::info!(%addr, "HTTP server listening on {addr}");
        }
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let reload_state = self.state.clone();
        let mut reload_stop = stop.clone();
        let reloader = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = hup.recv() => reload_state.reload_pages(),
                    () = stopped(&mut reload_stop) => return,
                }
            }
        });
        let mut servers = tokio::task::JoinSet::new();
        for (listener, router) in self.listeners {
            let mut stop = stop.clone();
            servers.spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stopped(&mut stop).await })
                    .await
            });
        }
        let mut result = Ok(());
        while let Some(joined) = servers.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(anyhow::Error::new(e).context("the HTTP server failed")),
                Err(e) => result = Err(anyhow::anyhow!("the HTTP server panicked: {e}")),
            }
        }
        reloader.abort();
        tracing::info!("HTTP server stopped");
        result
    }
}

impl AppState {
    fn reload_pages(&self) {
        match Pages::load(&self.pages_dir) {
            Ok(pages) => {
                *self.pages.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pages);
                tracing::info!("SIGHUP: form pages reloaded");
            }
            Err(e) => tracing::error!("SIGHUP: keeping the running form pages: {e}"),
        }
    }
}

/// Returns once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The routes on `listen`; `with_ops`: `/healthz` and `/metrics` too.
fn routes(state: &AppState, with_ops: bool) -> Router {
    let mut router = Router::new()
        .route("/support", get(form::show).post(form::submit))
        .route("/support/support.css", get(stylesheet))
        .route("/support/support.js", get(script));
    if state.api_token.is_some() {
        router = router.route("/api/v1/requests", post(api::create));
    }
    if with_ops {
        router = router
            .route("/healthz", get(health::check))
            .route("/metrics", get(metrics::render));
    }
    finish(router, state)
}

/// The routes on `metrics_listen`.
fn ops_routes(state: &AppState) -> Router {
    let router = Router::new()
        .route("/healthz", get(health::check))
        .route("/metrics", get(metrics::render));
    finish(router, state)
}

fn finish(router: Router<AppState>, state: &AppState) -> Router {
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(track))
        .with_state(state.clone())
}

/// Counts every answer by route and status, and puts the security headers on it.
async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let mut response = next.run(request).await;
    metrics::record_http(route, response.status());
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // The account link is in the page's address: it must not leave in a Referer.
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn stylesheet(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    asset("text/css; charset=utf-8", state.pages().css.clone())
}

async fn script(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    asset("text/javascript; charset=utf-8", state.pages().js.clone())
}

fn asset(content_type: &'static str, body: String) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

/// An HTML page with `status`.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}
