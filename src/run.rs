//! `zoom-operator run`: wires the controller (behind leader election), the public server and
//! the admin server together, and shuts all of them down cleanly on SIGTERM/SIGINT.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::OperatorConfig;
use crate::controller::{self, Context};
use crate::leader::{LeaderElector, Leadership};
use crate::metrics::{ConnectionCollector, Metrics};
use crate::server::admin::{self, AdminState};
use crate::server::events::EventReceiver;
use crate::server::public;
use crate::signing::SigningKey;
use crate::webhooks::delivery::EventStore;
use crate::webhooks::index::{IndexSettings, RoutingIndex};
use crate::zoom::client::ZoomClient;

pub const SIGNING_KEY_SECRET: &str = "zoom-operator-signing-key";
const SIGNING_KEY_FIELD: &str = "key";

/// The key that signs tickets and OAuth state, shared by all replicas through a Secret in the
/// operator's namespace; created by whichever replica gets there first.
pub async fn load_signing_key(client: Client, namespace: &str) -> anyhow::Result<SigningKey> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    for _ in 0..5 {
        if let Some(secret) = api.get_opt(SIGNING_KEY_SECRET).await? {
            let key = secret
                .data
                .as_ref()
                .and_then(|d| d.get(SIGNING_KEY_FIELD))
                .map(|b| b.0.clone())
                .filter(|k| k.len() >= 32)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "Secret {namespace}/{SIGNING_KEY_SECRET} has no key {SIGNING_KEY_FIELD} of at least 32 bytes; delete it and the operator will create a new one"
                    )
                })?;
            return Ok(SigningKey::new(key));
        }
        let key = SigningKey::generate();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(SIGNING_KEY_SECRET.to_owned()),
                labels: Some(BTreeMap::from([(
                    crate::api::MANAGED_BY_LABEL.to_owned(),
                    "zoom-operator".to_owned(),
                )])),
                ..Default::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(BTreeMap::from([(
                SIGNING_KEY_FIELD.to_owned(),
                ByteString(key.bytes().to_vec()),
            )])),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => return Ok(key),
            // Another replica created it first: read theirs.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("could not create or read Secret {namespace}/{SIGNING_KEY_SECRET}")
}

pub async fn run(config: OperatorConfig) -> anyhow::Result<()> {
    let client = kube_client().await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_handler(shutdown.clone()));

    let (parts, caches) = Parts::build(client.clone(), &config, &shutdown).await?;
    tokio::spawn(trim_heap(shutdown.clone()));
    let tasks = Tasks {
        caches: tokio::spawn(caches),
        stored_events: tokio::spawn(
            parts
                .webhooks
                .events
                .clone()
                .watch(parts.ctx.metrics.clone(), shutdown.clone()),
        ),
        // The webhook routing index runs on every replica, independent of the leader-only
        // controller: any replica may receive Zoom's requests.
        index: tokio::spawn(crate::webhooks::sync::maintain(
            parts.index.clone(),
            client.clone(),
            IndexSettings::from_config(&config),
            parts.ctx.caches.clone(),
            shutdown.clone(),
        )),
        urls: tokio::spawn(controller::watch_public_urls(
            client.clone(),
            config.url_source.clone(),
            parts.url_tx.clone(),
            shutdown.clone(),
        )),
    };
    let servers = Servers::start(&parts, &config, &shutdown).await?;

    // Serve requests only once the public URLs are known and the webhook routing index has
    // loaded (otherwise Zoom's URL validation could hit a replica that knows no apps yet).
    let mut url_ready = parts.ctx.urls.clone();
    tokio::select! {
        () = shutdown.cancelled() => {}
        _ = async { let _ = url_ready.wait_for(Option::is_some).await; parts.index.wait_ready().await } => {}
    }
    parts.admin.ready.store(true, Ordering::Relaxed);
    let controller = tokio::spawn(run_leader_part(
        parts.ctx.clone(),
        parts.leading_tx,
        shutdown.clone(),
    ));

    shutdown.cancelled().await;
    parts.admin.shutting_down.store(true, Ordering::Relaxed);
    let outcome = match controller.await {
        Ok(result) => result,
        Err(e) => Err(anyhow::anyhow!("the controller task failed: {e}")),
    };
    tasks.join().await;
    servers.stop().await;
    outcome?;
    tracing::info!("stopped");
    Ok(())
}

/// How often freed heap pages are handed back to the kernel.
const HEAP_TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// glibc keeps the pages a burst freed (the first list of thousands of objects, a relist, a
/// restart's reconciles) inside its arenas, so the resident size would stay near the burst's
/// peak rather than what is in use. Handing free pages back now and then keeps the two close
/// (docs/benchmarks.md: 5,000 connections).
async fn trim_heap(shutdown: CancellationToken) {
    let mut every = tokio::time::interval(HEAP_TRIM_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        // It locks each arena in turn: off the async workers.
        let _ = tokio::task::spawn_blocking(release_free_heap).await;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_heap() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim takes no pointers, touches only the allocator's own state (under its
    // locks) and may be called from any thread at any time.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() {}

/// The API-server client (kubeconfig as kubectl finds it, else in-cluster), identifying itself
/// as `zoom-operator/VERSION` so that audit logs and API-server metrics can tell its requests
/// apart.
async fn kube_client() -> anyhow::Result<Client> {
    let mut config = kube::Config::infer().await?;
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static(concat!("zoom-operator/", env!("CARGO_PKG_VERSION"))),
    ));
    Ok(Client::try_from(config)?)
}

/// What the process is made of: the controller's context, the webhook path's services and
/// index, the admin state, and the channels between them.
struct Parts {
    ctx: Arc<Context>,
    webhooks: Arc<crate::webhooks::Services>,
    index: Arc<RoutingIndex>,
    admin: Arc<AdminState>,
    url_tx: watch::Sender<crate::urls::UrlState>,
    leading_tx: Option<watch::Sender<bool>>,
}

impl Parts {
    /// Also returns the future that drives the shared caches' watches.
    async fn build(
        client: Client,
        config: &OperatorConfig,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<(
        Parts,
        impl std::future::Future<Output = ()> + Send + 'static,
    )> {
        let signing = load_signing_key(client.clone(), &config.operator_namespace).await?;
        let metrics = Metrics::new();
        let zoom = ZoomClient::new(config.zoom_oauth_url.clone(), config.zoom_api_url.clone())?
            .with_metrics(metrics.clone());
        let (caches, drive_caches) = crate::cache::Caches::open(
            &client,
            &config.watch_namespaces,
            config.default_app_secret.as_ref(),
            shutdown.clone(),
        );
        let (leading_tx, leadership) = if config.leader_election {
            let (tx, rx) = Leadership::channel();
            (Some(tx), rx)
        } else {
            metrics.leader.set(1);
            (None, Leadership::always())
        };
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        registry.register_collector(Box::new(ConnectionCollector {
            caches: caches.clone(),
            leadership: leadership.clone(),
        }));
        let (url_tx, url_rx) = watch::channel(None);
        let recorder =
            crate::recorder::Recorder::new(client.clone(), "zoom-operator", &config.identity);
        let webhooks = Arc::new(crate::webhooks::Services {
            client: client.clone(),
            recorder: recorder.clone(),
            metrics: metrics.clone(),
            allow_sink_hosts: config.allow_sink_hosts.clone(),
            events: EventStore::new(
                client.clone(),
                &config.operator_namespace,
                config.pending_event_limits,
            ),
        });
        let ctx = Arc::new(Context {
            client,
            recorder,
            metrics,
            config: config.clone(),
            zoom,
            signing,
            urls: url_rx,
            retries: Mutex::new(Default::default()),
            forced_refreshes: Mutex::new(Default::default()),
            account_reads: Mutex::new(Default::default()),
            webhooks: webhooks.clone(),
            nudges: tokio::sync::broadcast::channel(256).0,
            app_secrets: Default::default(),
            applied: Mutex::new(Default::default()),
            tokens: Arc::new(crate::tokens::KnownSecrets::new(caches.clone())),
            caches,
            leadership,
            pending: Mutex::new(Default::default()),
        });
        let parts = Parts {
            ctx,
            webhooks,
            index: Arc::new(RoutingIndex::default()),
            admin: Arc::new(AdminState {
                registry,
                ready: Default::default(),
                shutting_down: Default::default(),
            }),
            url_tx,
            leading_tx,
        };
        Ok((parts, drive_caches))
    }
}

/// Background work every replica runs until shutdown.
struct Tasks {
    caches: tokio::task::JoinHandle<()>,
    stored_events: tokio::task::JoinHandle<()>,
    index: tokio::task::JoinHandle<()>,
    urls: tokio::task::JoinHandle<()>,
}

impl Tasks {
    async fn join(self) {
        let _ = self.urls.await;
        let _ = self.index.await;
        let _ = self.stored_events.await;
        let _ = self.caches.await;
    }
}

type ServerTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// The public and the admin listener.
struct Servers {
    public: ServerTask,
    admin: ServerTask,
    admin_stop: CancellationToken,
}

impl Servers {
    async fn start(
        parts: &Parts,
        config: &OperatorConfig,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Servers> {
        let public_listener = TcpListener::bind(config.listen).await?;
        let admin_listener = TcpListener::bind(config.metrics_listen).await?;
        tracing::info!(listen = %config.listen, metrics = %config.metrics_listen, "serving");
        let events = Arc::new(EventReceiver::new(
            parts.webhooks.clone(),
            parts.index.clone(),
        )?);
        let ctx = &parts.ctx;
        let oauth = Arc::new(crate::server::oauth::OAuthState {
            client: ctx.client.clone(),
            zoom: ctx.zoom.clone(),
            signing: ctx.signing.clone(),
            metrics: ctx.metrics.clone(),
            urls: ctx.urls.clone(),
            default_app_secret: config.default_app_secret.clone(),
        });
        let public = serve(
            public_listener,
            public::router(oauth, events),
            shutdown.clone(),
        );
        // The admin server stops last, so that /readyz answers 503 (not "connection refused",
        // and never 200) for the whole of the shutdown.
        let admin_stop = CancellationToken::new();
        let admin = serve(
            admin_listener,
            admin::router(parts.admin.clone()),
            admin_stop.clone(),
        );
        Ok(Servers {
            public,
            admin,
            admin_stop,
        })
    }

    async fn stop(self) {
        if let Ok(Err(e)) = self.public.await {
            tracing::warn!(error = %e, "public server stopped with an error");
        }
        self.admin_stop.cancel();
        if let Ok(Err(e)) = self.admin.await {
            tracing::warn!(error = %e, "admin server stopped with an error");
        }
    }
}

fn serve(listener: TcpListener, router: axum::Router, stop: CancellationToken) -> ServerTask {
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    })
}

/// The controller, behind leader election when it is on. A controller that stops by itself
/// (a panic in a reconcile, say) stops the whole process with an error, after releasing the
/// Lease: a replica that serves HTTP but renews nothing must not look healthy.
async fn run_leader_part(
    ctx: Arc<Context>,
    leading: Option<watch::Sender<bool>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let result = match leading {
        Some(leading) => {
            let elector = LeaderElector::new(
                ctx.client.clone(),
                &ctx.config.operator_namespace,
                &ctx.config.identity,
                leading,
                ctx.metrics.leader.clone(),
            );
            let lead_ctx = ctx.clone();
            elector
                .run(shutdown.clone(), move |term| {
                    controller::run_controller(lead_ctx.clone(), term)
                })
                .await
                .map_err(anyhow::Error::from)
        }
        None => {
            let task = tokio::spawn(controller::run_controller(ctx, shutdown.clone()));
            match task.await {
                Ok(()) if shutdown.is_cancelled() => Ok(()),
                Ok(()) => Err(anyhow::anyhow!("the controller stopped by itself")),
                Err(e) => Err(anyhow::anyhow!("the controller task failed: {e}")),
            }
        }
    };
    if result.is_err() {
        // Stop the servers too; the process exits non-zero.
        shutdown.cancel();
    }
    result
}

async fn signal_handler(shutdown: CancellationToken) {
    let terminate = async {
        #[cfg(unix)]
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
