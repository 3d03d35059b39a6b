//! Wiring: shared state, the router, startup and shutdown.
//!
//! Zoom splits these endpoints between `zoom.us` (OAuth) and `api.zoom.us`
//! (REST); here one listener serves both, plus the `/sim` admin API.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::SimClock;
use crate::delivery::{self, RetryQueue, WebhookSettings};
use crate::errors::api_error;
use crate::faults::FaultQueue;
use crate::meetings::Meetings;
use crate::ratelimit::{RateLimitSettings, RateLimiter};
use crate::state::{App, Settings, Sim};
use crate::{admin, api, faults, oauth};

/// A hard ceiling on any webhook request; the real limit is per request
/// (`webhook_timeout_ms`, 3 s by default as on Zoom).
const WEBHOOK_CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

/// State shared by all handlers.
pub struct Shared {
    sim: Mutex<Sim>,
    faults: Mutex<FaultQueue>,
    webhook_settings: Mutex<WebhookSettings>,
    retries: Mutex<RetryQueue>,
    rate_limiter: Mutex<RateLimiter>,
    meetings: Mutex<Meetings>,
    /// Wakes the retry loop: the clock moved or a retry was queued.
    pub retry_wake: tokio::sync::Notify,
    pub clock: SimClock,
    pub http: reqwest::Client,
    bound: SocketAddr,
    public_url: Option<String>,
}

pub type SharedState = Arc<Shared>;

/// A poisoned lock only means another handler panicked mid-update; the model
/// has no invariants that a half-finished counter bump could break, so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn sim(&self) -> MutexGuard<'_, Sim> {
        lock(&self.sim)
    }

    pub fn faults(&self) -> MutexGuard<'_, FaultQueue> {
        lock(&self.faults)
    }

    /// A copy of the current delivery settings.
    pub fn webhook_settings(&self) -> WebhookSettings {
        *lock(&self.webhook_settings)
    }

    pub fn webhook_settings_mut(&self) -> MutexGuard<'_, WebhookSettings> {
        lock(&self.webhook_settings)
    }

    pub fn retries(&self) -> MutexGuard<'_, RetryQueue> {
        lock(&self.retries)
    }

    pub fn rate_limiter(&self) -> MutexGuard<'_, RateLimiter> {
        lock(&self.rate_limiter)
    }

    pub fn meetings(&self) -> MutexGuard<'_, Meetings> {
        lock(&self.meetings)
    }

    /// The base URL clients should use for us (`api_url` in token answers):
    /// `--public-url` if given, else the Host the client used, else the bound address.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| h.parse::<axum::http::uri::Authority>().is_ok());
        match host {
            Some(host) => format!("http://{host}"),
            None => format!("http://{}", self.bound),
        }
    }
}

/// Everything needed to start a server.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub settings: Settings,
    pub apps: Vec<App>,
    /// Overrides the base URL reported as `api_url` (e.g. behind a proxy).
    pub public_url: Option<String>,
    pub webhooks: WebhookSettings,
    pub rate_limit: RateLimitSettings,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            settings: Settings::default(),
            apps: Vec::new(),
            public_url: None,
            webhooks: WebhookSettings::default(),
            rate_limit: RateLimitSettings::default(),
        }
    }
}

/// A started server; drop it or call [`RunningServer::shutdown`] to stop.
pub struct RunningServer {
    addr: SocketAddr,
    shared: SharedState,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    retry_task: JoinHandle<()>,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR:PORT`, the form printed on startup.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state, for in-process tests that want to reach past HTTP.
    pub fn shared(&self) -> &SharedState {
        &self.shared
    }

    /// Stops accepting connections, lets in-flight requests finish, and waits.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Pending retries die with the process, as everything else here does.
        self.retry_task.abort();
        (&mut self.task)
            .await
            .context("server task failed")?
            .context("server error")
    }
}

/// Binds the listener, registers the apps and starts serving in the background.
pub async fn start(opts: ServeOptions) -> anyhow::Result<RunningServer> {
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;

    let mut sim = Sim::new(opts.settings);
    for app in opts.apps {
        sim.register_app(app).map_err(anyhow::Error::msg)?;
    }
    opts.webhooks.validate().map_err(anyhow::Error::msg)?;
    opts.rate_limit.validate().map_err(anyhow::Error::msg)?;
    let http = reqwest::Client::builder()
        .timeout(WEBHOOK_CLIENT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the webhook HTTP client")?;
    let shared = Arc::new(Shared {
        sim: Mutex::new(sim),
        faults: Mutex::new(FaultQueue::default()),
        webhook_settings: Mutex::new(opts.webhooks),
        retries: Mutex::new(RetryQueue::default()),
        rate_limiter: Mutex::new(RateLimiter::new(opts.rate_limit)),
        meetings: Mutex::new(Meetings::default()),
        retry_wake: tokio::sync::Notify::new(),
        clock: SimClock::new(),
        http,
        bound: addr,
        public_url: opts.public_url,
    });

    let app = router(shared.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    let retry_task = tokio::spawn(delivery::run_retries(shared.clone()));
    Ok(RunningServer {
        addr,
        shared,
        shutdown: Some(tx),
        task,
        retry_task,
    })
}

/// All routes. Fault injection wraps everything except `/sim/*` and `/healthz`
/// (the middleware itself skips those), so faults also hit unknown paths.
pub fn router(shared: SharedState) -> Router {
    Router::new()
        .route("/oauth/authorize", get(oauth::authorize))
        .route("/oauth/authorize/decision", post(oauth::decision))
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/v2/users/me", get(api::users_me))
        .route("/v2/users/{user_id}", get(api::get_user))
        .route(
            "/v2/users/{user_id}/meetings",
            get(api::list_meetings).post(api::create_meeting),
        )
        .route(
            "/v2/meetings/{meeting_id}",
            get(api::get_meeting).delete(api::delete_meeting),
        )
        .route("/healthz", get(healthz))
        .merge(admin::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            faults::inject,
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(shared)
}

async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn not_found() -> Response {
    api_error(404, "zoom-sim does not simulate this path.").into_response()
}

async fn method_not_allowed() -> Response {
    api_error(405, "Method not allowed for this path.").into_response()
}

/// One log line per request on stderr. Only the path is logged: query strings
/// carry codes, tokens and states.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    let elapsed_ms = started.elapsed().as_millis();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        tracing::warn!(%method, %path, status = status.as_u16(), elapsed_ms, "request");
    } else {
        tracing::info!(%method, %path, status = status.as_u16(), elapsed_ms, "request");
    }
    response
}
