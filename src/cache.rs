//! The caches every replica keeps: per watched namespace (or one for all), a reflector over
//! ZoomConnections and a metadata reflector over Secrets, plus the default app's one Secret
//! when it lives outside them. One store per kind, shared by every reader: the webhook routing
//! index and the metrics on every replica, the controller on the lease holder. Objects are cut
//! down before they enter a store (no `managedFields`, no last-applied copy), and of Secrets
//! only the resourceVersion is kept, by namespace and name ([`SecretVersions`]), so memory
//! grows by what is read, and unrelated Secrets cost about 150 bytes each.
//!
//! The one task that drives the watches tells readers what changed on a broadcast channel; a
//! reader that falls behind is told so and looks at everything again.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::api::{ObjectRef as SecretRef, ZoomConnection};
use crate::config::WatchScope;

/// How many changes a reader may fall behind before it is told it lagged.
const CHANGES_BUFFER: usize = 4096;

/// What changed in the caches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A connection was added, changed or deleted; `status_only` when nothing but its status
    /// did (the operator's own status writes, which need no reconcile).
    Connection {
        object: ObjectRef<ZoomConnection>,
        status_only: bool,
    },
    /// A Secret's metadata changed, or it went away.
    Secret(SecretRef),
    /// A watch finished listing (the first time, or after a gap): look at everything again.
    Listed,
}

/// Which Secrets one metadata watch covers, so a lookup knows which store to ask and a
/// relist can tell "deleted" from "not mine": a watch scope, or the default app's one Secret.
#[derive(Clone, Debug)]
pub enum SecretScope {
    Watch(WatchScope),
    One(SecretRef),
}

impl SecretScope {
    pub fn covers(&self, secret: &SecretRef) -> bool {
        match self {
            SecretScope::Watch(scope) => scope.covers(&secret.namespace),
            SecretScope::One(one) => one == secret,
        }
    }
}

/// The caches of one watched namespace (or of all namespaces).
#[derive(Clone, Debug)]
pub struct ScopeCache {
    pub scope: WatchScope,
    pub connections: Store<ZoomConnection>,
}

/// Readers' side of the caches. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Caches {
    pub scopes: Vec<ScopeCache>,
    secrets: Vec<(SecretScope, SecretVersions)>,
    changes: broadcast::Sender<Change>,
}

impl Caches {
    /// Opens the watches; the returned future drives them until `shutdown`.
    pub fn open(
        client: &Client,
        watch_namespaces: &[String],
        default_app: Option<&SecretRef>,
        shutdown: CancellationToken,
    ) -> (
        Caches,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let mut scopes = Vec::new();
        let mut connection_streams = Vec::new();
        let mut secrets = Vec::new();
        let mut secret_streams = Vec::new();
        for scope in WatchScope::from_namespaces(watch_namespaces) {
            let (reader, writer) = reflector::store();
            let watch = watcher(scope.api::<ZoomConnection>(client.clone()), watch_config())
                .modify(strip_connection);
            connection_streams.push(
                reflector::reflector(writer, watch)
                    .default_backoff()
                    .map(move |e| e.map(ConnectionEvent::from))
                    .boxed(),
            );
            scopes.push(ScopeCache {
                scope: scope.clone(),
                connections: reader,
            });
            let (stream, store) = secret_metadata(scope.api(client.clone()), watch_config());
            secret_streams.push(stream);
            secrets.push((SecretScope::Watch(scope), store));
        }
        // The default app's Secret usually lives in the platform team's namespace, outside the
        // watched namespaces: that one Secret is watched by name (a list/watch with the field
        // selector metadata.name is authorized against resourceNames).
        if let Some(default) = default_app {
            if !secrets.iter().any(|(s, _)| s.covers(default)) {
                let cfg = watch_config().fields(&format!("metadata.name={}", default.name));
                let (stream, store) =
                    secret_metadata(Api::namespaced(client.clone(), &default.namespace), cfg);
                secret_streams.push(stream);
                secrets.push((SecretScope::One(default.clone()), store));
            }
        }
        let changes = broadcast::channel(CHANGES_BUFFER).0;
        let driver = drive(
            scopes.iter().map(|s| s.connections.clone()).collect(),
            stream::select_all(connection_streams),
            stream::select_all(secret_streams),
            changes.clone(),
            shutdown,
        );
        let caches = Caches {
            scopes,
            secrets,
            changes,
        };
        (caches, driver)
    }

    /// Caches over the given connection stores only, for tests of readers.
    #[cfg(test)]
    pub fn of_connections(stores: Vec<(WatchScope, Store<ZoomConnection>)>) -> Caches {
        Caches {
            scopes: stores
                .into_iter()
                .map(|(scope, connections)| ScopeCache { scope, connections })
                .collect(),
            secrets: Vec::new(),
            changes: broadcast::channel(1).0,
        }
    }

    /// These caches plus a Secret metadata store, for tests of readers.
    #[cfg(test)]
    pub fn with_secrets(mut self, scope: SecretScope, store: SecretVersions) -> Caches {
        self.secrets.push((scope, store));
        self
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Waits until every watch has listed once.
    pub async fn wait_ready(&self) {
        for s in &self.scopes {
            let _ = s.connections.wait_until_ready().await;
        }
        for (_, versions) in &self.secrets {
            versions.wait_ready().await;
        }
    }

    /// Every cached connection, across scopes.
    pub fn connections(&self) -> Vec<std::sync::Arc<ZoomConnection>> {
        self.scopes
            .iter()
            .flat_map(|s| s.connections.state())
            .collect()
    }

    /// A cached connection by namespace and name.
    pub fn connection(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<std::sync::Arc<ZoomConnection>> {
        let key = ObjectRef::new(name).within(namespace);
        self.scopes
            .iter()
            .filter(|s| s.scope.covers(namespace))
            .find_map(|s| s.connections.get(&key))
    }

    /// What the cache knows of Secret `key`: `None` when no watch covers it or it has not
    /// listed yet, `Some(None)` when it does not exist, else its resourceVersion.
    pub fn secret_version(&self, key: &SecretRef) -> Option<Option<String>> {
        let (_, versions) = self.secrets.iter().find(|(s, _)| s.covers(key))?;
        versions.get(key)
    }
}

/// The resourceVersions of the Secrets one metadata watch shows, by namespace and name: all
/// a reader asks of a Secret it does not own (has it changed, does it still exist). A
/// reflector store of the same metadata took about 800 bytes per Secret.
#[derive(Clone, Debug, Default)]
pub struct SecretVersions(Arc<SecretMap<String>>);

impl SecretVersions {
    /// The resourceVersion of `key`: `Some(None)` when the watch does not show it, `None`
    /// before it has listed once (only the API server knows then).
    pub fn get(&self, key: &SecretRef) -> Option<Option<String>> {
        self.0.get(key)
    }

    /// Applies a watch event, as a reflector's writer does.
    pub fn apply(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        self.0.apply(event, secret_ref, |m| {
            m.metadata.resource_version.clone().unwrap_or_default()
        });
    }

    /// Waits until the watch has listed once.
    pub async fn wait_ready(&self) {
        self.0.wait_ready().await;
    }
}

/// A value per Secret of one watch, by namespace and name: what a reflector store keeps, but
/// of each Secret only what its readers need ([`SecretVersions`], `tokens::known`).
#[derive(Debug)]
pub struct SecretMap<V> {
    state: RwLock<SecretMapState<V>>,
    listed: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug)]
struct SecretMapState<V> {
    current: HashMap<SecretRef, V>,
    /// A list in progress: replaces `current` when it is done (what it lacks was deleted).
    relisting: Option<HashMap<SecretRef, V>>,
}

impl<V> Default for SecretMap<V> {
    fn default() -> Self {
        SecretMap {
            state: RwLock::new(SecretMapState {
                current: HashMap::new(),
                relisting: None,
            }),
            listed: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl<V: Clone> SecretMap<V> {
    /// The value of `key`: `Some(None)` when the watch does not show it, `None` before it has
    /// listed once (only the API server knows then).
    pub fn get(&self, key: &SecretRef) -> Option<Option<V>> {
        if !*self.listed.borrow() {
            return None;
        }
        Some(self.state.read().ok()?.current.get(key).cloned())
    }

    /// Applies a watch event, as a reflector's writer does: `key` names the object (None: one
    /// without a namespace or name, ignored) and `value` is what is kept of it.
    pub fn apply<K>(
        &self,
        event: &watcher::Event<K>,
        key: impl Fn(&K) -> Option<SecretRef>,
        value: impl Fn(&K) -> V,
    ) {
        let Ok(mut state) = self.state.write() else {
            return;
        };
        match event {
            watcher::Event::Init => state.relisting = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                if let Some(key) = key(object) {
                    let value = value(object);
                    match state.relisting.as_mut() {
                        Some(list) => list.insert(key, value),
                        None => state.current.insert(key, value),
                    };
                }
            }
            watcher::Event::InitDone => {
                if let Some(mut list) = state.relisting.take() {
                    list.shrink_to_fit();
                    state.current = list;
                }
                drop(state);
                self.listed.send_replace(true);
            }
            watcher::Event::Apply(object) => {
                if let Some(key) = key(object) {
                    state.current.insert(key, value(object));
                }
            }
            watcher::Event::Delete(object) => {
                if let Some(key) = key(object) {
                    state.current.remove(&key);
                }
            }
        }
    }

    /// Waits until the watch has listed once.
    pub async fn wait_ready(&self) {
        let _ = self.listed.subscribe().wait_for(|listed| *listed).await;
    }
}

fn watch_config() -> watcher::Config {
    // kube-apiserver 1.20 refuses streaming lists: list, then watch.
    watcher::Config::default()
}

/// What a ZoomConnection watch event means for readers: an object applied (with the hash of
/// everything but its status), or a list finished.
enum ConnectionEvent {
    Applied(ObjectRef<ZoomConnection>, u64),
    Deleted(ObjectRef<ZoomConnection>),
    Listed,
    Other,
}

impl From<watcher::Event<ZoomConnection>> for ConnectionEvent {
    fn from(event: watcher::Event<ZoomConnection>) -> Self {
        match event {
            watcher::Event::Apply(zc) | watcher::Event::InitApply(zc) => {
                ConnectionEvent::Applied(ObjectRef::from_obj(&zc), desired_hash(&zc))
            }
            watcher::Event::Delete(zc) => ConnectionEvent::Deleted(ObjectRef::from_obj(&zc)),
            watcher::Event::InitDone => ConnectionEvent::Listed,
            watcher::Event::Init => ConnectionEvent::Other,
        }
    }
}

/// A hash of what a reconcile acts on: everything but the status (and the resourceVersion,
/// which every status write changes).
fn desired_hash(zc: &ZoomConnection) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    zc.metadata.generation.hash(&mut h);
    zc.metadata.uid.hash(&mut h);
    zc.metadata.labels.hash(&mut h);
    zc.metadata.annotations.hash(&mut h);
    zc.metadata.finalizers.hash(&mut h);
    zc.metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut h);
    h.finish()
}

type SecretMetaEvents = BoxStream<'static, Result<Option<SecretRef>, watcher::Error>>;

/// A metadata watch over Secrets, kept as [`SecretVersions`]. Yields the Secret an event was
/// about, or None for the end of a list.
fn secret_metadata(
    api: Api<PartialObjectMeta<Secret>>,
    config: watcher::Config,
) -> (SecretMetaEvents, SecretVersions) {
    let versions = SecretVersions::default();
    let writer = versions.clone();
    let stream = watcher(api, config)
        .default_backoff()
        .inspect(move |event| {
            if let Ok(event) = event {
                writer.apply(event);
            }
        })
        // The first list's Secrets are no change: readers wait for the list, or look at
        // everything once it is done (the `Listed` below).
        .filter_map(without_first_list())
        .filter_map(|event| async move {
            match event {
                Ok(watcher::Event::InitDone) => Some(Ok(None)),
                Ok(watcher::Event::Init) => None,
                Ok(
                    watcher::Event::Apply(m)
                    | watcher::Event::InitApply(m)
                    | watcher::Event::Delete(m),
                ) => Some(Ok(secret_ref(&m))),
                Err(e) => Some(Err(e)),
            }
        })
        .boxed();
    (stream, versions)
}

type WatchEvent<K> = Result<watcher::Event<K>, watcher::Error>;

/// A watch's events without the objects of its first list (its `Init` and `InitDone` stay):
/// for readers that look at everything once the first list is done, so that the list is not
/// also one change per object, each arriving before the store shows it. The objects of a later
/// relist (after a gap) do pass: they may have changed meanwhile.
pub fn without_first_list<K: Send + 'static>(
) -> impl FnMut(WatchEvent<K>) -> std::future::Ready<Option<WatchEvent<K>>> {
    let mut listed = false;
    move |event| {
        std::future::ready(match event {
            Ok(watcher::Event::InitApply(_)) if !listed => None,
            Ok(watcher::Event::InitDone) => {
                listed = true;
                Some(Ok(watcher::Event::InitDone))
            }
            other => Some(other),
        })
    }
}

/// What no reader of a cached ZoomConnection looks at.
pub fn strip_connection(zc: &mut ZoomConnection) {
    zc.managed_fields_mut().clear();
    if let Some(a) = zc.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The namespace and name of a namespaced object (None when it lacks either).
pub fn secret_ref(object: &impl kube::Resource) -> Option<SecretRef> {
    let meta = object.meta();
    Some(SecretRef::new(
        meta.namespace.as_deref()?,
        meta.name.as_deref()?,
    ))
}

/// Drives the watches and tells readers what changed.
async fn drive(
    stores: Vec<Store<ZoomConnection>>,
    mut connections: stream::SelectAll<BoxStream<'static, Result<ConnectionEvent, watcher::Error>>>,
    mut secrets: stream::SelectAll<SecretMetaEvents>,
    changes: broadcast::Sender<Change>,
    shutdown: CancellationToken,
) {
    // The last desired-state hash per connection, to tell a status write from a change.
    let mut hashes: HashMap<ObjectRef<ZoomConnection>, u64> = HashMap::new();
    loop {
        let change = tokio::select! {
            () = shutdown.cancelled() => return,
            event = connections.next() => match event {
                Some(Ok(ConnectionEvent::Applied(object, hash))) => {
                    let status_only = hashes.insert(object.clone(), hash) == Some(hash);
                    Change::Connection { object, status_only }
                }
                Some(Ok(ConnectionEvent::Deleted(object))) => {
                    // Readers that list the store (webhook routing) must see it go; the
                    // controller finds nothing to reconcile.
                    hashes.remove(&object);
                    Change::Connection { object, status_only: false }
                }
                Some(Ok(ConnectionEvent::Listed)) => Change::Listed,
                Some(Ok(ConnectionEvent::Other)) => continue,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching ZoomConnections failed; retrying");
                    continue;
                }
                None => return,
            },
            event = secrets.next() => match event {
                Some(Ok(Some(secret))) => Change::Secret(secret),
                Some(Ok(None)) => Change::Listed,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching Secret metadata failed; retrying");
                    continue;
                }
                None => return,
            },
        };
        if change == Change::Listed {
            // A relist drops objects deleted during a gap without a Delete event.
            hashes.retain(|k, _| stores.iter().any(|s| s.get(k).is_some()));
        }
        // No receiver (no reader subscribed yet) is fine: readers look at the stores.
        let _ = changes.send(change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_scopes() {
        let r = SecretRef::new("a", "s");
        assert!(SecretScope::Watch(WatchScope::All).covers(&r));
        assert!(SecretScope::Watch(WatchScope::Namespace("a".into())).covers(&r));
        assert!(!SecretScope::Watch(WatchScope::Namespace("b".into())).covers(&r));
        assert!(SecretScope::One(r.clone()).covers(&r));
        assert!(!SecretScope::One(r).covers(&SecretRef::new("a", "t")));
    }

    fn zc(json: serde_json::Value) -> ZoomConnection {
        serde_json::from_value(json).expect("connection")
    }

    #[test]
    fn a_status_write_is_not_a_change_of_what_to_do() {
        let base = serde_json::json!({
            "apiVersion": "zoom-operator.io/v1alpha1",
            "kind": "ZoomConnection",
            "metadata": {"namespace": "a", "name": "bot", "uid": "u1", "generation": 1, "resourceVersion": "5"},
            "spec": {"authType": "DefaultOAuth"},
        });
        let mut status_written = base.clone();
        status_written["metadata"]["resourceVersion"] = "6".into();
        status_written["status"] = serde_json::json!({"observedGeneration": 1});
        assert_eq!(
            desired_hash(&zc(base.clone())),
            desired_hash(&zc(status_written))
        );

        for (path, value) in [
            ("generation", serde_json::json!(2)),
            (
                "annotations",
                serde_json::json!({"zoom-operator.io/refresh-requested": "1"}),
            ),
            ("finalizers", serde_json::json!(["zoom-operator.io/revoke"])),
            (
                "deletionTimestamp",
                serde_json::json!("2026-12-03T09:00:00Z"),
            ),
            ("labels", serde_json::json!({"team": "x"})),
        ] {
            let mut changed = base.clone();
            changed["metadata"][path] = value;
            assert_ne!(
                desired_hash(&zc(base.clone())),
                desired_hash(&zc(changed)),
                "{path}"
            );
        }
    }

    fn meta(name: &str, version: &str) -> PartialObjectMeta<Secret> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"namespace": "a", "name": name, "resourceVersion": version},
        }))
        .expect("metadata")
    }

    #[tokio::test]
    async fn a_first_list_is_no_change_but_later_events_and_relists_are() {
        use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
        let events: Vec<Result<watcher::Event<&str>, watcher::Error>> = vec![
            Ok(Init),
            Ok(InitApply("listed")),
            Ok(InitDone),
            Ok(Apply("changed")),
            Ok(Delete("deleted")),
            // A relist after a gap: what it shows may have changed meanwhile.
            Ok(Init),
            Ok(InitApply("relisted")),
            Ok(InitDone),
        ];
        let touched: Vec<&str> = stream::iter(events)
            .filter_map(without_first_list())
            .touched_objects()
            .map(|r| r.expect("no error"))
            .collect()
            .await;
        assert_eq!(touched, ["changed", "deleted", "relisted"]);
    }

    #[tokio::test]
    async fn secret_versions_follow_the_watch_and_a_relist_drops_what_went_away() {
        let versions = SecretVersions::default();
        let (app, gone) = (SecretRef::new("a", "app"), SecretRef::new("a", "gone"));
        versions.apply(&watcher::Event::Init);
        versions.apply(&watcher::Event::InitApply(meta("app", "1")));
        versions.apply(&watcher::Event::InitApply(meta("gone", "2")));
        // Not listed yet: unknown (not absent), and readiness waits.
        assert_eq!(versions.get(&app), None);
        versions.apply(&watcher::Event::InitDone);
        versions.wait_ready().await;
        assert_eq!(versions.get(&app), Some(Some("1".to_owned())));

        versions.apply(&watcher::Event::Apply(meta("app", "3")));
        assert_eq!(versions.get(&app), Some(Some("3".to_owned())));
        // A relist after a gap: "gone" was deleted meanwhile, without a Delete event.
        versions.apply(&watcher::Event::Init);
        versions.apply(&watcher::Event::InitApply(meta("app", "4")));
        assert_eq!(
            versions.get(&app),
            Some(Some("3".to_owned())),
            "the old list serves until done"
        );
        versions.apply(&watcher::Event::InitDone);
        assert_eq!(versions.get(&app), Some(Some("4".to_owned())));
        assert_eq!(versions.get(&gone), Some(None));

        versions.apply(&watcher::Event::Delete(meta("app", "4")));
        assert_eq!(versions.get(&app), Some(None));
    }

    #[tokio::test]
    async fn a_deleted_connection_is_a_change() {
        // Webhook routing rebuilds on changes only: a connection deleted without a finalizer
        // (no update before the delete) must still be one, or it would keep its events.
        let object = ObjectRef::<ZoomConnection>::new("bot").within("a");
        let events: Vec<Result<ConnectionEvent, watcher::Error>> = vec![
            Ok(ConnectionEvent::Applied(object.clone(), 1)),
            Ok(ConnectionEvent::Applied(object.clone(), 1)),
            Ok(ConnectionEvent::Deleted(object.clone())),
        ];
        let (tx, mut rx) = broadcast::channel(16);
        drive(
            Vec::new(),
            stream::select_all([stream::iter(events).boxed()]),
            // Secret metadata that never changes (an ended stream would end the driver).
            stream::select_all([stream::pending().boxed() as SecretMetaEvents]),
            tx,
            CancellationToken::new(),
        )
        .await;
        let seen: Vec<Change> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        let change = |status_only| Change::Connection {
            object: object.clone(),
            status_only,
        };
        assert_eq!(seen, [change(false), change(true), change(false)]);
    }

    #[test]
    fn cached_connections_keep_nothing_unread() {
        let mut c = zc(serde_json::json!({
            "apiVersion": "zoom-operator.io/v1alpha1",
            "kind": "ZoomConnection",
            "metadata": {
                "namespace": "a", "name": "bot",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                    "zoom-operator.io/refresh-requested": "1"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]
            },
            "spec": {"authType": "DefaultOAuth"},
        }));
        strip_connection(&mut c);
        assert!(c.metadata.managed_fields.unwrap_or_default().is_empty());
        let annotations = c.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["zoom-operator.io/refresh-requested"]
        );
    }
}
