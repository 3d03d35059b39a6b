//! What drives reconciles: the `--ingress` Ingress (feeding the public URLs), changes of the
//! ZoomConnections themselves and of the metadata of credentials Secrets (both from the shared
//! caches, `crate::cache`), the token Secrets they own, and stored events. Each watched
//! namespace gets its own set, so nothing is listed or watched outside the namespaces the
//! operator was given.

use std::sync::Arc;

use futures::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::api::{ZoomConnection, MANAGED_BY_LABEL};
use crate::cache::{Change, ScopeCache};
use crate::config::WatchScope;
use crate::tokens::TokenSecrets;
use crate::urls::{derive_public_urls, UrlSource};

use super::{error_policy, reconcile, Context, UrlState};

/// Watches the `--ingress` Ingress and publishes the derived public URLs.
pub async fn watch_public_urls(
    client: Client,
    source: UrlSource,
    tx: watch::Sender<UrlState>,
    shutdown: CancellationToken,
) {
    let UrlSource::Ingress(crate::api::ObjectRef { namespace, name }) = &source else {
        let _ = tx.send(Some(derive_public_urls(&source, None)));
        return;
    };
    let api: Api<Ingress> = Api::namespaced(client, namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, cfg).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut current: Option<Ingress> = None;
    let mut init: Option<Ingress> = None;
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = stream.next() => e,
        };
        let Some(event) = event else { return };
        match event {
            Ok(watcher::Event::Apply(ing)) => current = Some(ing),
            Ok(watcher::Event::Delete(_)) => current = None,
            Ok(watcher::Event::Init) => init = None,
            Ok(watcher::Event::InitApply(ing)) => init = Some(ing),
            Ok(watcher::Event::InitDone) => current = init.take(),
            Err(e) => {
                tracing::warn!(error = %e, "watching the Ingress failed; retrying");
                continue;
            }
        }
        let derived = Some(derive_public_urls(&source, current.as_ref()));
        tx.send_if_modified(|old| {
            if *old == derived {
                false
            } else {
                *old = derived.clone();
                true
            }
        });
    }
}

/// Runs the controller until `shutdown` fires. Called by the lease holder.
///
/// One controller per watched namespace (or one for all namespaces), all under the same
/// shutdown token and context, each reading the shared cache of its scope (`crate::cache`):
/// becoming leader opens no second watch of ZoomConnections or of Secret metadata.
pub async fn run_controller(ctx: Arc<Context>, shutdown: CancellationToken) {
    // The token-Secret caches this term attaches are its own: gone with it.
    let _term = ctx.tokens.term();
    let controllers = futures::future::join_all(
        ctx.caches
            .scopes
            .clone()
            .into_iter()
            .map(|scope| run_for(ctx.clone(), scope, shutdown.clone())),
    );
    // The leader also redelivers stored events; it returns only at `shutdown`, so a
    // controller that ends by itself still ends this function.
    let redelivery = crate::webhooks::delivery::redeliver(
        ctx.webhooks.clone(),
        ctx.webhooks.events.clone(),
        shutdown.clone(),
    );
    tokio::select! {
        _ = controllers => {}
        () = redelivery => {}
    }
}

/// The controller for one scope: its ZoomConnections (from the shared cache), the token
/// Secrets it owns there, changes of the credentials Secrets they use (from the shared
/// metadata cache: never their contents), stored events, and the public URLs. Every list and
/// watch stays inside `scope`.
async fn run_for(ctx: Arc<Context>, cache: ScopeCache, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let scope = cache.scope.clone();
    let store: Store<ZoomConnection> = cache.connections.clone();
    tracing::info!(%scope, "controller watching");

    let credential_changes = credential_changes(
        cache.clone(),
        ctx.caches.subscribe(),
        ctx.config.default_app_secret.clone(),
    );
    let (token_secrets, tokens) = token_secrets(&scope, client.clone(), ctx.tokens.clone());
    let url_changes =
        tokio_stream::wrappers::WatchStream::from_changes(ctx.urls.clone()).map(|_| ());
    // Stored events (in the operator's namespace) change a connection's pendingEvents.
    let stored_events = metadata_changes::<k8s_openapi::api::core::v1::ConfigMap>(
        Api::namespaced(client.clone(), &ctx.config.operator_namespace),
        watcher::Config::default().labels(&format!(
            "{}=true",
            crate::webhooks::delivery::PENDING_LABEL
        )),
    );
    let stored_scope = scope.clone();
    let nudges = nudges_in(&ctx, scope.clone());
    let config = kube::runtime::controller::Config::default()
        .concurrency(ctx.config.max_concurrent_reconciles);
    let (attach, first_pass) = caches_listed(&ctx, scope.clone(), tokens);
    // What happens before the first pass is in it: triggers before it would only start
    // reconciles early, without the caches.
    let (passed_tx, passed) = watch::channel(false);
    let first_pass = async move {
        first_pass.await;
        passed_tx.send_replace(true);
    };
    let triggers = connection_triggers(cache.clone(), ctx.caches.subscribe(), first_pass);
    let credential_changes = after(&passed, credential_changes);
    let url_changes = after(&passed, url_changes);
    let nudges = after(&passed, nudges);

    let controller = Controller::for_shared_stream(triggers, store)
        .with_config(config)
        .owns_stream(token_secrets)
        .watches_stream(stored_events, move |event| {
            crate::webhooks::delivery::connection_of(&event).filter(|r| {
                r.namespace
                    .as_deref()
                    .is_some_and(|ns| stored_scope.covers(ns))
            })
        })
        .reconcile_on(credential_changes)
        .reconcile_all_on(url_changes)
        .reconcile_on(nudges)
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            let scope = &scope;
            async move {
                match result {
                    Ok(_) => {}
                    // Reconcile errors are logged by error_policy; a deleted object's queued
                    // retry finding nothing is expected.
                    Err(kube::runtime::controller::Error::ReconcilerFailed(..))
                    | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                    Err(e) => tracing::warn!(%scope, error = %e, "controller error"),
                }
            }
        });
    tokio::select! {
        () = controller => {}
        // Never ends by itself.
        () = attach => {}
    }
}

/// The token Secrets a scope's connections own, data included (they are ours): a reconcile
/// reads them from the returned store (`KnownSecrets`) instead of asking the API server. The
/// stream wakes the owning connection of a Secret that changed, unless this process made the
/// change (the pass that wrote it has seen it).
fn token_secrets(
    scope: &WatchScope,
    client: kube::Client,
    known: Arc<crate::tokens::KnownSecrets>,
) -> (
    impl futures::Stream<Item = Result<Secret, watcher::Error>>,
    TokenSecrets,
) {
    let tokens = TokenSecrets::default();
    let cache = tokens.clone();
    let stream = watcher(
        scope.api::<Secret>(client),
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}=zoom-operator")),
    )
    .map_ok(move |event| {
        cache.apply(&event);
        event
    })
    .default_backoff()
    // The first pass over every connection follows the first list (`caches_listed`).
    .filter_map(crate::cache::without_first_list())
    .touched_objects()
    .predicate_filter(
        kube::runtime::predicates::resource_version,
        Default::default(),
    )
    // A Secret as this process wrote it is the echo of a pass that already saw it.
    .filter(move |secret| std::future::ready(!matches!(secret, Ok(s) if known.caught_up(s))));
    (stream, tokens)
}

/// Two futures: `attach` hands this scope's token-Secret store to `ctx.tokens` once it is
/// listed (and then never ends), and `first_pass` ends when both it and the shared Secret
/// metadata are listed.
///
/// The first pass over every connection waits for `first_pass`: started earlier, each
/// reconcile would GET its connection's token Secret and its app's Secret (hundreds of GETs
/// on a restart with thousands of connections). It waits at most TOKEN_LIST_WAIT: a list
/// that keeps failing must not stop reconciles.
fn caches_listed(
    ctx: &Context,
    scope: WatchScope,
    tokens: TokenSecrets,
) -> (
    impl std::future::Future<Output = ()> + use<>,
    impl std::future::Future<Output = ()> + use<>,
) {
    let (attached_tx, mut attached) = watch::channel(false);
    let known = ctx.tokens.clone();
    let attach = async move {
        tokens.wait_ready().await;
        known.attach(scope, tokens);
        attached_tx.send_replace(true);
        std::future::pending::<()>().await;
    };
    let caches = ctx.caches.clone();
    let first_pass = async move {
        let wait = async {
            let _ = attached.wait_for(|attached| *attached).await;
            caches.wait_ready().await;
        };
        if tokio::time::timeout(TOKEN_LIST_WAIT, wait).await.is_err() {
            tracing::warn!("the Secrets are not listed yet; reconciling without the caches");
        }
    };
    (attach, first_pass)
}

/// `stream` without what it yields before `passed` is true.
fn after<S: Stream>(passed: &watch::Receiver<bool>, stream: S) -> impl Stream<Item = S::Item> {
    let passed = passed.clone();
    stream.filter(move |_| std::future::ready(*passed.borrow()))
}

/// How long the first pass waits for the Secret lists.
const TOKEN_LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What wakes a connection's reconcile: every cached connection once (the new leader looks at
/// all of them) when `first` is done, then each change of more than its status (its own
/// status writes need no pass). A subscriber that fell behind looks at all of them again.
fn connection_triggers(
    cache: ScopeCache,
    changes: broadcast::Receiver<Change>,
    first: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = Arc<ZoomConnection>> + Send + 'static {
    let store = cache.connections.clone();
    let initial = stream::once(async move {
        first.await;
        let _ = store.wait_until_ready().await;
        stream::iter(store.state())
    })
    .flatten();
    let later = changes_in(cache, changes, |cache, change| match change {
        Some(Change::Connection {
            object,
            status_only: false,
        }) => cache.connections.get(&object).into_iter().collect(),
        // A relist (after a gap): what it found is in the store only now, not when its
        // objects' changes were sent, so look at everything.
        Some(Change::Listed) | None => cache.connections.state(),
        Some(_) => Vec::new(),
    });
    initial.chain(later)
}

/// Changes of credentials Secrets: each re-reconciles the connections of `cache` that use the
/// Secret (their own `credentialsRef`, or the default app's Secret for DefaultOAuth).
fn credential_changes(
    cache: ScopeCache,
    changes: broadcast::Receiver<Change>,
    default_app: Option<crate::api::ObjectRef>,
) -> impl Stream<Item = ObjectRef<ZoomConnection>> + Send + 'static {
    changes_in(cache, changes, move |cache, change| match change {
        Some(Change::Secret(secret)) => connections_using_secret(
            &cache.connections.state(),
            &secret.namespace,
            &secret.name,
            default_app.as_ref(),
        ),
        _ => Vec::new(),
    })
}

/// Maps each change (None: the subscriber lagged, so anything may have changed) to the items
/// it yields.
fn changes_in<T: Send + 'static>(
    cache: ScopeCache,
    changes: broadcast::Receiver<Change>,
    map: impl Fn(&ScopeCache, Option<Change>) -> Vec<T> + Send + Sync + 'static,
) -> impl Stream<Item = T> + Send + 'static {
    let map = Arc::new(map);
    stream::unfold(changes, move |mut rx| {
        let (cache, map) = (cache.clone(), map.clone());
        async move {
            loop {
                let change = match rx.recv().await {
                    Ok(change) => Some(change),
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                let items = map(&cache, change);
                if !items.is_empty() {
                    return Some((stream::iter(items), rx));
                }
            }
        }
    })
    .flatten()
}

/// Reconciles asked for by other connections' passes (a shared grant) in `scope`; a lagging
/// subscriber only misses nudges, which the periodic requeue makes up for.
fn nudges_in(
    ctx: &Context,
    scope: WatchScope,
) -> impl futures::Stream<Item = ObjectRef<ZoomConnection>> {
    tokio_stream::wrappers::BroadcastStream::new(ctx.nudges.subscribe()).filter_map(move |r| {
        let r = r.ok().filter(|r: &ObjectRef<ZoomConnection>| {
            r.namespace.as_deref().is_some_and(|ns| scope.covers(ns))
        });
        async move { r }
    })
}

type MetadataChanges<K> = BoxStream<'static, Result<PartialObjectMeta<K>, watcher::Error>>;

/// Metadata of `K` that changed (a relist repeats nothing already seen).
fn metadata_changes<K>(api: Api<PartialObjectMeta<K>>, cfg: watcher::Config) -> MetadataChanges<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    watcher(api, cfg)
        .default_backoff()
        .touched_objects()
        .predicate_filter(
            kube::runtime::predicates::resource_version,
            Default::default(),
        )
        .boxed()
}

/// The connections among `connections` that a change of Secret `namespace/name` affects: those
/// whose `credentialsRef` names it in their own namespace, and every DefaultOAuth connection
/// when it is the default app's Secret.
fn connections_using_secret(
    connections: &[Arc<ZoomConnection>],
    namespace: &str,
    name: &str,
    default_app: Option<&crate::api::ObjectRef>,
) -> Vec<ObjectRef<ZoomConnection>> {
    connections
        .iter()
        .filter(|zc| {
            crate::credentials::app_secret(zc, default_app)
                .is_ok_and(|(secret, _)| secret.namespace == namespace && secret.name == name)
        })
        .map(|zc| ObjectRef::from_obj(&**zc))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AuthType, CredentialsRef, ZoomConnectionSpec};

    fn zc(ns: &str, name: &str, auth_type: AuthType, secret: Option<&str>) -> Arc<ZoomConnection> {
        let mut spec: ZoomConnectionSpec = serde_json::from_value(serde_json::json!({
            "authType": auth_type.to_string(),
        }))
        .expect("spec");
        spec.credentials_ref = secret.map(|s| CredentialsRef::with_name(s.to_owned()));
        let mut zc = ZoomConnection::new(name, spec);
        zc.metadata.namespace = Some(ns.to_owned());
        Arc::new(zc)
    }

    #[test]
    fn a_secret_change_reaches_the_connections_that_use_it() {
        let connections = [
            zc("a", "own", AuthType::PrivateOAuth, Some("app")),
            zc("a", "other", AuthType::ServerToServer, Some("other-app")),
            zc("b", "same-name", AuthType::PrivateOAuth, Some("app")),
            zc("a", "shared", AuthType::DefaultOAuth, None),
            zc("b", "shared", AuthType::DefaultOAuth, None),
        ];
        let default_app = crate::api::ObjectRef::new("platform", "zoom-default");
        // (Secret namespace, Secret name, default app configured, connections to reconcile)
        let cases: &[(&str, &str, bool, &[&str])] = &[
            // Only the same namespace: references never cross namespaces.
            ("a", "app", true, &["a/own"]),
            ("b", "app", true, &["b/same-name"]),
            ("a", "unrelated", true, &[]),
            // The default app reaches DefaultOAuth connections in every namespace.
            ("platform", "zoom-default", true, &["a/shared", "b/shared"]),
            ("platform", "zoom-default", false, &[]),
            ("platform", "other", true, &[]),
        ];
        for (ns, name, configured, want) in cases {
            let got: Vec<String> = connections_using_secret(
                &connections,
                ns,
                name,
                configured.then_some(&default_app),
            )
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect();
            assert_eq!(got, *want, "{ns}/{name}");
        }
    }
}
