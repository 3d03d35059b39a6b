//! Keeps the routing index current on every replica (not only the lease holder): per watched
//! namespace, a reflector over ZoomConnections and a metadata reflector over Secrets (each cut
//! down to name, namespace and resourceVersion) that says when a referenced credentials Secret
//! changed or went away. Only referenced Secrets are read (GET by name), and only their secret
//! token and account ID are kept; the contents of other Secrets are never cached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::ZoomConnection;
use crate::config::WatchScope;

use super::index::{wanted_keys, CachedSecret, IndexSettings, RoutingIndex, SecretRef, Snapshot};

/// Changes arriving within this quiet period are indexed together (a relist of a thousand
/// connections is one rebuild, not a thousand).
const QUIET: Duration = Duration::from_millis(100);
/// ...but a steady trickle of changes cannot delay a rebuild longer than this.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// When a referenced Secret could not be read, try again after this long.
const RETRY: Duration = Duration::from_secs(2);
/// Concurrent GETs of credentials Secrets during a rebuild.
const FETCH_CONCURRENCY: usize = 8;

type ConnectionEvents = BoxStream<
    'static,
    (
        usize,
        Result<watcher::Event<ZoomConnection>, watcher::Error>,
    ),
>;

type SecretMetaEvents = BoxStream<
    'static,
    (
        usize,
        Result<watcher::Event<PartialObjectMeta<Secret>>, watcher::Error>,
    ),
>;

/// Which Secrets one metadata watch covers, so a relist can tell "deleted" from "not mine":
/// a watch scope, or the default app's one Secret outside every scope.
#[derive(Clone, Debug)]
enum Scope {
    Watch(WatchScope),
    One(SecretRef),
}

impl Scope {
    fn covers(&self, secret: &SecretRef) -> bool {
        match self {
            Scope::Watch(scope) => scope.covers(&secret.namespace),
            Scope::One(one) => one == secret,
        }
    }
}

struct IndexSync {
    client: Client,
    settings: IndexSettings,
    index: Arc<RoutingIndex>,
    /// One cache per watched namespace (or one for all namespaces).
    connections: Vec<Store<ZoomConnection>>,
    /// Which of those caches have been listed once.
    listed: Vec<bool>,
    cache: HashMap<SecretRef, CachedSecret>,
    /// Secret metadata (name, namespace, resourceVersion only), one store per Secret watch.
    secrets: Vec<Store<PartialObjectMeta<Secret>>>,
    /// Which of those have been listed once.
    secrets_listed: Vec<bool>,
    scopes: Vec<Scope>,
}

/// Runs until `shutdown`. Publishes a ready snapshot once the connections were listed.
pub async fn maintain(
    index: Arc<RoutingIndex>,
    client: Client,
    settings: IndexSettings,
    shutdown: CancellationToken,
) {
    let watches = Watches::open(&client, &settings);
    let mut connections = stream::select_all(watches.connections);
    let mut secrets = stream::select_all(watches.secrets);
    let mut sync = IndexSync {
        client,
        settings,
        index,
        listed: vec![false; watches.stores.len()],
        connections: watches.stores,
        cache: HashMap::new(),
        secrets_listed: vec![false; watches.secret_stores.len()],
        secrets: watches.secret_stores,
        scopes: watches.scopes,
    };
    // When the index must be rebuilt: set by the first change after a rebuild.
    let mut dirty_since: Option<Instant> = None;
    let mut last_change = Instant::now();
    // When Secrets that could not be read are tried again.
    let mut retry_at: Option<Instant> = None;
    loop {
        let changed_at = dirty_since.map(|since| (last_change + QUIET).min(since + MAX_DELAY));
        let rebuild_at = match (changed_at, retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            event = connections.next() => {
                match event {
                    Some((watch, Ok(watcher::Event::InitDone))) => {
                        if let Some(listed) = sync.listed.get_mut(watch) {
                            *listed = true;
                        }
                    }
                    Some((_, Ok(_))) => {}
                    Some((_, Err(e))) => {
                        tracing::warn!(error = %e, "watching ZoomConnections for webhook routing failed; retrying");
                        continue;
                    }
                    None => {
                        tracing::error!("the ZoomConnection watches for webhook routing ended");
                        return;
                    }
                }
                last_change = Instant::now();
                dirty_since.get_or_insert(last_change);
            }
            event = secrets.next() => {
                match event {
                    Some((watch, Ok(event))) => {
                        if sync.on_secret_event(watch, event) {
                            last_change = Instant::now();
                            dirty_since.get_or_insert(last_change);
                        }
                    }
                    Some((_, Err(e))) => tracing::warn!(error = %e, "watching Secret metadata for webhook routing failed; retrying"),
                    None => {
                        tracing::error!("the Secret metadata watch for webhook routing ended");
                        return;
                    }
                }
            }
            () = sleep_until(rebuild_at) => {
                dirty_since = None;
                retry_at = (!sync.rebuild().await).then(|| Instant::now() + RETRY);
            }
        }
    }
}

/// The watches behind the index: per watched namespace (or for all), a ZoomConnection reflector
/// and a Secret metadata watch, plus the default app's one Secret when it lives elsewhere.
struct Watches {
    stores: Vec<Store<ZoomConnection>>,
    connections: Vec<ConnectionEvents>,
    secrets: Vec<SecretMetaEvents>,
    secret_stores: Vec<Store<PartialObjectMeta<Secret>>>,
    /// What each Secret watch covers, by its position in `secrets`.
    scopes: Vec<Scope>,
}

impl Watches {
    fn open(client: &Client, settings: &IndexSettings) -> Watches {
        // Each watched namespace gets its own ZoomConnection reflector and Secret metadata watch,
        // so nothing outside those namespaces is listed (RBAC can be a Role per namespace). One
        // store per reflector: a relist replaces the whole store, so reflectors cannot share one.
        let watch_scopes = WatchScope::from_namespaces(&settings.watch_namespaces);
        let mut stores = Vec::with_capacity(watch_scopes.len());
        let mut connection_streams: Vec<ConnectionEvents> = Vec::with_capacity(watch_scopes.len());
        // Api<PartialObjectMeta<Secret>> makes metadata-only requests: Secret contents never
        // arrive through the watch.
        let mut secret_streams: Vec<SecretMetaEvents> = Vec::with_capacity(watch_scopes.len() + 1);
        let mut secret_stores = Vec::with_capacity(watch_scopes.len() + 1);
        let mut scopes = Vec::with_capacity(watch_scopes.len() + 1);
        for (i, scope) in watch_scopes.iter().enumerate() {
            let (reader, writer) = reflector::store();
            stores.push(reader);
            connection_streams.push(
                reflector::reflector(
                    writer,
                    watcher(
                        scope.api::<ZoomConnection>(client.clone()),
                        watcher::Config::default(),
                    ),
                )
                .default_backoff()
                .map(move |e| (i, e))
                .boxed(),
            );
            let (stream, store) =
                secret_metadata(scope.api(client.clone()), watcher::Config::default(), i);
            secret_streams.push(stream);
            secret_stores.push(store);
            scopes.push(Scope::Watch(scope.clone()));
        }
        // The default app's Secret usually lives in the platform team's namespace, outside the
        // watched namespaces: watch that one Secret by name.
        if let Some(default_ref) = settings.default_app_secret.clone() {
            let (dns, dname) = (&default_ref.namespace, &default_ref.name);
            if !scopes.iter().any(|s| s.covers(&default_ref)) {
                let cfg = watcher::Config::default().fields(&format!("metadata.name={dname}"));
                let (stream, store) = secret_metadata(
                    Api::namespaced(client.clone(), dns),
                    cfg,
                    secret_streams.len(),
                );
                secret_streams.push(stream);
                secret_stores.push(store);
                scopes.push(Scope::One(default_ref));
            }
        }
        Watches {
            stores,
            connections: connection_streams,
            secrets: secret_streams,
            secret_stores,
            scopes,
        }
    }
}

/// A metadata reflector over Secrets: each object is cut down to its name, namespace and
/// resourceVersion before it enters the store, so unrelated Secrets cost a few bytes each.
fn secret_metadata(
    api: Api<PartialObjectMeta<Secret>>,
    config: watcher::Config,
    watch: usize,
) -> (SecretMetaEvents, Store<PartialObjectMeta<Secret>>) {
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).modify(keep_identity))
        .default_backoff()
        .map(move |e| (watch, e))
        .boxed();
    (stream, reader)
}

fn keep_identity(meta: &mut PartialObjectMeta<Secret>) {
    let m = &mut meta.metadata;
    *m = kube::api::ObjectMeta {
        name: m.name.take(),
        namespace: m.namespace.take(),
        resource_version: m.resource_version.take(),
        ..Default::default()
    };
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn secret_ref(meta: &PartialObjectMeta<Secret>) -> Option<SecretRef> {
    Some(SecretRef {
        namespace: meta.metadata.namespace.clone()?,
        name: meta.metadata.name.clone()?,
    })
}

impl IndexSync {
    /// Whether a Secret event may change the index: the end of a (re)list, or a change of a
    /// Secret that is cached. The reflector keeps the metadata; `rebuild` compares.
    fn on_secret_event(
        &mut self,
        watch: usize,
        event: watcher::Event<PartialObjectMeta<Secret>>,
    ) -> bool {
        match event {
            watcher::Event::Init => false,
            watcher::Event::InitDone => {
                if let Some(listed) = self.secrets_listed.get_mut(watch) {
                    *listed = true;
                }
                true
            }
            watcher::Event::InitApply(meta)
            | watcher::Event::Apply(meta)
            | watcher::Event::Delete(meta) => {
                secret_ref(&meta).is_some_and(|key| self.cache.contains_key(&key))
            }
        }
    }

    /// The resourceVersion of Secret `key` as the metadata reflector has it (None: absent).
    fn stored_version(&self, key: &SecretRef) -> Option<String> {
        let (i, _) = self
            .scopes
            .iter()
            .enumerate()
            .find(|(_, scope)| scope.covers(key))?;
        let reference = reflector::ObjectRef::new(&key.name).within(&key.namespace);
        self.secrets
            .get(i)?
            .get(&reference)
            .and_then(|meta| meta.metadata.resource_version.clone())
    }

    /// Reads the referenced Secrets not cached yet and publishes a new snapshot. False when
    /// some Secret could not be read (what was cached before is kept meanwhile).
    async fn rebuild(&mut self) -> bool {
        // Until every namespace was listed, a snapshot would miss apps: keep answering "not
        // ready" rather than 401 to Zoom's requests for them.
        if !self.listed.iter().all(|l| *l) || !self.secrets_listed.iter().all(|l| *l) {
            return true;
        }
        let connections: Vec<_> = self.connections.iter().flat_map(Store::state).collect();
        let wanted = wanted_keys(&connections, &self.settings);
        // Forget what is no longer wanted, and what changed (or went away) since it was read.
        let current: HashMap<SecretRef, Option<String>> = self
            .cache
            .keys()
            .map(|k| (k.clone(), self.stored_version(k)))
            .collect();
        self.cache.retain(|k, cached| {
            wanted.contains_key(k) && current.get(k) == Some(&cached.resource_version)
        });
        let missing: Vec<_> = wanted
            .iter()
            .filter(|(k, keys)| !self.cache.get(*k).is_some_and(|c| c.has_keys(keys.iter())))
            .map(|(k, keys)| (k.clone(), keys.clone()))
            .collect();
        let client = self.client.clone();
        let fetched: Vec<_> = stream::iter(missing)
            .map(|(key, keys)| {
                let api: Api<Secret> = Api::namespaced(client.clone(), &key.namespace);
                async move {
                    let result = api.get_opt(&key.name).await;
                    (key, keys, result)
                }
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await;
        let mut complete = true;
        for (key, keys, result) in fetched {
            match result {
                Ok(secret) => {
                    self.cache
                        .insert(key, cached_secret(secret.as_ref(), &keys));
                }
                Err(e) => {
                    complete = false;
                    tracing::warn!(secret = %format!("{}/{}", key.namespace, key.name), error = %e, "could not read a credentials Secret for webhook routing; retrying");
                }
            }
        }
        let snapshot = Snapshot::build(&connections, &self.cache, &self.settings);
        tracing::debug!(
            apps = snapshot.app_count(),
            routable = snapshot.routable_count(),
            "webhook routing index updated"
        );
        self.index.publish(snapshot);
        complete
    }
}

/// Keeps only `keys` of a Secret, trimmed like the controller reads credentials.
fn cached_secret<'a>(
    secret: Option<&Secret>,
    keys: impl IntoIterator<Item = &'a String>,
) -> CachedSecret {
    let value = |key: &str| secret.and_then(|s| crate::credentials::secret_value(s, key));
    CachedSecret {
        resource_version: secret.and_then(|s| s.metadata.resource_version.clone()),
        values: keys.into_iter().map(|k| (k.clone(), value(k))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    #[test]
    fn keeps_only_the_keys_asked_for() {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                resource_version: Some("7".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([
                ("clientSecret".to_owned(), ByteString(b"hunter2".to_vec())),
                ("secretToken".to_owned(), ByteString(b" tok\n".to_vec())),
            ])),
            ..Default::default()
        };
        let keys = ["secretToken".to_owned(), "accountId".to_owned()];
        let cached = cached_secret(Some(&secret), keys.iter());
        assert_eq!(cached.resource_version.as_deref(), Some("7"));
        assert_eq!(
            cached.values,
            BTreeMap::from([
                ("accountId".to_owned(), None),
                ("secretToken".to_owned(), Some("tok".to_owned()))
            ])
        );
        let absent = cached_secret(None, keys.iter());
        assert_eq!(absent.resource_version, None);
        assert!(absent.has_keys(keys.iter()));
    }

    #[test]
    fn scopes() {
        let r = SecretRef {
            namespace: "a".into(),
            name: "s".into(),
        };
        assert!(Scope::Watch(WatchScope::All).covers(&r));
        assert!(Scope::Watch(WatchScope::Namespace("a".into())).covers(&r));
        assert!(!Scope::Watch(WatchScope::Namespace("b".into())).covers(&r));
        assert!(Scope::One(r.clone()).covers(&r));
    }
}
