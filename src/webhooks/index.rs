//! The routing index: the apps that have connections, each known by its webhook secret token,
//! and for each app the connections that receive an event for a given Zoom account.
//!
//! Pure: a [`Snapshot`] is built from the cached ZoomConnections and what the index keeps of
//! the credentials Secrets they reference ([`CachedSecret`]); `sync` keeps it current and
//! publishes it through a [`RoutingIndex`]. Request handlers read one snapshot per request.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;
use url::Url;

use crate::api::{AuthType, ZoomConnection};
use crate::sink::{self, SinkProblem};

/// An app's webhook secret token. Never printed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretToken(String);

impl SecretToken {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

/// A Secret by namespace and name.
pub type SecretRef = crate::api::ObjectRef;

/// What the index keeps of one credentials Secret: its resourceVersion (to notice changes)
/// and the values of the keys connections route by (secret token, account ID) or verify with
/// first (client ID, which Zoom sends in the `clientid` header and is not a secret). Client
/// secrets are never kept here.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CachedSecret {
    /// None when the Secret did not exist at the last read.
    pub resource_version: Option<String>,
    /// Each key that was asked for, with its trimmed value if the Secret has one.
    pub values: BTreeMap<String, Option<String>>,
}

impl CachedSecret {
    pub fn has_keys<'a>(&self, keys: impl IntoIterator<Item = &'a String>) -> bool {
        keys.into_iter().all(|k| self.values.contains_key(k))
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(Option::as_deref)
    }
}

impl fmt::Debug for CachedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedSecret")
            .field("resource_version", &self.resource_version)
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where a connection's app keeps its webhook secret token and account ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSource {
    pub secret: SecretRef,
    pub secret_token_key: String,
    pub account_id_key: String,
    pub client_id_key: String,
}

/// The operator settings the index depends on.
#[derive(Clone, Debug, Default)]
pub struct IndexSettings {
    /// Empty means all namespaces.
    pub watch_namespaces: Vec<String>,
    pub default_app_secret: Option<crate::api::ObjectRef>,
    pub allow_sink_hosts: Vec<String>,
}

impl IndexSettings {
    pub fn from_config(config: &crate::config::OperatorConfig) -> Self {
        IndexSettings {
            watch_namespaces: config.watch_namespaces.clone(),
            default_app_secret: config.default_app_secret.clone(),
            allow_sink_hosts: config.allow_sink_hosts.clone(),
        }
    }

    pub fn watches(&self, namespace: &str) -> bool {
        self.watch_namespaces.is_empty() || self.watch_namespaces.iter().any(|n| n == namespace)
    }

    /// The credentials Secret (and its key names) a connection's app lives in: its own
    /// `credentialsRef`, or the operator-wide default app for DefaultOAuth.
    pub fn app_source(&self, zc: &ZoomConnection) -> Option<AppSource> {
        let (secret, reference) =
            crate::credentials::app_secret(zc, self.default_app_secret.as_ref()).ok()?;
        Some(AppSource {
            secret,
            secret_token_key: reference.secret_token_key,
            account_id_key: reference.account_id_key,
            client_id_key: reference.client_id_key,
        })
    }
}

/// One connection that can receive events.
#[derive(Clone, Debug)]
pub struct Route {
    /// The connection as last seen by the index (for writes that need its UID and owner ref).
    pub zc: Arc<ZoomConnection>,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub account_id: String,
    /// Who authorized an OAuth connection; deauthorizations of other users leave it alone.
    pub user_id: Option<String>,
    /// `spec.events.sink` resolved under the SSRF policy; None without a sink.
    pub sink: Option<Result<Url, SinkProblem>>,
}

/// One Zoom app (one secret token) and its connections by account ID.
#[derive(Debug)]
struct App {
    token: SecretToken,
    /// Client IDs of the Secrets that carry this token (one, unless apps share a token).
    client_ids: BTreeSet<String>,
    by_account: HashMap<String, Vec<Arc<Route>>>,
    connections: usize,
}

/// What one connection adds to the index: its app (secret token and client ID) and, once its
/// Zoom account is known, its route.
struct Entry<'a> {
    token: &'a str,
    client_id: Option<&'a str>,
    route: Option<Route>,
}

impl<'a> Entry<'a> {
    /// None for a connection that is being deleted, outside the watched namespaces, or whose
    /// app's Secret (or its secret token) is not there.
    fn of(
        zc: &Arc<ZoomConnection>,
        secrets: &'a HashMap<SecretRef, CachedSecret>,
        settings: &IndexSettings,
    ) -> Option<Entry<'a>> {
        let meta = &zc.metadata;
        let (namespace, name, uid) = (
            meta.namespace.as_deref()?,
            meta.name.as_deref()?,
            meta.uid.as_deref()?,
        );
        if meta.deletion_timestamp.is_some() || !settings.watches(namespace) {
            return None;
        }
        let source = settings.app_source(zc)?;
        let cached = secrets.get(&source.secret)?;
        let token = cached.value(&source.secret_token_key)?;
        let account = zc.status.as_ref().and_then(|s| s.account.as_ref());
        let (account_id, user_id) = match zc.spec.auth_type {
            AuthType::ServerToServer => (
                cached.value(&source.account_id_key).map(str::to_owned),
                None,
            ),
            _ => (
                account.and_then(|a| a.account_id.clone()),
                account.and_then(|a| a.user_id.clone()),
            ),
        };
        let route = account_id
            .filter(|a| !a.is_empty())
            .map(|account_id| Route {
                zc: zc.clone(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                uid: uid.to_owned(),
                account_id,
                user_id,
                sink: zc
                    .spec
                    .events
                    .as_ref()
                    .map(|e| sink::resolve(&e.sink, namespace, &settings.allow_sink_hosts)),
            });
        Some(Entry {
            token,
            client_id: cached.value(&source.client_id_key),
            route,
        })
    }
}

/// The index at one moment. Cheap to share (`Arc`), never mutated once published.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// False until the first complete list of connections was indexed: until then a failed
    /// signature check might only mean "not loaded yet".
    pub ready: bool,
    apps: Vec<App>,
    /// App indices by client ID, for the `clientid` header.
    by_client_id: HashMap<String, Vec<usize>>,
}

impl Snapshot {
    /// Indexes `connections` by the secret token of their app and their Zoom account.
    ///
    /// A connection counts for verification as soon as its app's Secret has a secret token
    /// (so `endpoint.url_validation` works before anyone authorized), and receives events once
    /// its account is known: OAuth from `status.account.accountId`, Server-to-Server from the
    /// credentials Secret. Connections being deleted receive nothing.
    pub fn build(
        connections: &[Arc<ZoomConnection>],
        secrets: &HashMap<SecretRef, CachedSecret>,
        settings: &IndexSettings,
    ) -> Snapshot {
        let mut apps: Vec<App> = Vec::new();
        let mut by_token: HashMap<SecretToken, usize> = HashMap::new();
        for zc in connections {
            let Some(entry) = Entry::of(zc, secrets, settings) else {
                continue;
            };
            let token = SecretToken(entry.token.to_owned());
            let app = *by_token.entry(token.clone()).or_insert_with(|| {
                apps.push(App {
                    token,
                    client_ids: BTreeSet::new(),
                    by_account: HashMap::new(),
                    connections: 0,
                });
                apps.len() - 1
            });
            let app = &mut apps[app];
            if let Some(client_id) = entry.client_id {
                app.client_ids.insert(client_id.to_owned());
            }
            if let Some(route) = entry.route {
                app.connections += 1;
                app.by_account
                    .entry(route.account_id.clone())
                    .or_default()
                    .push(Arc::new(route));
            }
        }
        // Stable order per account, so deliveries and tests do not depend on cache order.
        for app in &mut apps {
            for routes in app.by_account.values_mut() {
                routes.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            }
        }
        let mut by_client_id: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, app) in apps.iter().enumerate() {
            for client_id in &app.client_ids {
                by_client_id
                    .entry(client_id.clone())
                    .or_default()
                    .push(index);
            }
        }
        Snapshot {
            ready: true,
            apps,
            by_client_id,
        }
    }

    /// Every app's secret token, in app order: what signatures are checked against.
    pub fn secret_tokens(&self) -> impl Iterator<Item = &[u8]> {
        self.apps.iter().map(|a| a.token.as_bytes())
    }

    /// The apps whose client ID is `client_id` (Zoom's `clientid` header): the tokens to try
    /// first. Usually one; none for an unknown ID.
    pub fn apps_with_client_id(&self, client_id: &str) -> &[usize] {
        self.by_client_id
            .get(client_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn secret_token(&self, app: usize) -> Option<&SecretToken> {
        self.apps.get(app).map(|a| &a.token)
    }

    /// The connections of `app` (an index from signature verification) for `account_id`.
    pub fn route(&self, app: usize, account_id: &str) -> &[Arc<Route>] {
        self.apps
            .get(app)
            .and_then(|a| a.by_account.get(account_id))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn app_count(&self) -> usize {
        self.apps.len()
    }

    /// Connections that can receive events (their account is known).
    pub fn routable_count(&self) -> usize {
        self.apps.iter().map(|a| a.connections).sum()
    }
}

/// The connections an `app_deauthorized` applies to. For OAuth apps Zoom names the user who
/// removed the app; a connection another user authorized keeps its (still valid) grant.
pub fn deauthorization_targets<'a>(
    routes: &'a [Arc<Route>],
    user_id: Option<&str>,
) -> Vec<&'a Arc<Route>> {
    routes
        .iter()
        .filter(|r| match (r.user_id.as_deref(), user_id) {
            (Some(ours), Some(theirs)) => ours == theirs,
            _ => true,
        })
        .collect()
}

/// The key names each referenced credentials Secret must be read for.
pub fn wanted_keys(
    connections: &[Arc<ZoomConnection>],
    settings: &IndexSettings,
) -> BTreeMap<SecretRef, BTreeSet<String>> {
    let mut wanted: BTreeMap<SecretRef, BTreeSet<String>> = BTreeMap::new();
    for zc in connections {
        let in_scope = zc
            .metadata
            .namespace
            .as_deref()
            .is_some_and(|ns| settings.watches(ns));
        if !in_scope || zc.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(source) = settings.app_source(zc) {
            let keys = wanted.entry(source.secret).or_default();
            keys.insert(source.secret_token_key);
            keys.insert(source.account_id_key);
            keys.insert(source.client_id_key);
        }
    }
    wanted
}

/// The current snapshot, shared by the request handlers and replaced by `sync`.
pub struct RoutingIndex {
    current: watch::Sender<Arc<Snapshot>>,
}

impl Default for RoutingIndex {
    fn default() -> Self {
        RoutingIndex {
            current: watch::Sender::new(Arc::new(Snapshot::default())),
        }
    }
}

impl RoutingIndex {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.borrow().clone()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        self.current.send_replace(Arc::new(snapshot));
    }

    /// Resolves once the first complete snapshot is published.
    pub async fn wait_ready(&self) {
        let mut rx = self.current.subscribe();
        let _ = rx.wait_for(|s| s.ready).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        CredentialsRef, EventsSpec, SinkSpec, ZoomAccount, ZoomConnectionSpec, ZoomConnectionStatus,
    };

    pub fn connection(
        ns: &str,
        name: &str,
        auth_type: AuthType,
        secret: Option<&str>,
    ) -> ZoomConnection {
        let mut zc = ZoomConnection::new(
            name,
            ZoomConnectionSpec::new(auth_type, secret.map(CredentialsRef::with_name)),
        );
        zc.metadata.namespace = Some(ns.into());
        zc.metadata.uid = Some(format!("uid-{ns}-{name}"));
        zc
    }

    pub fn authorized(mut zc: ZoomConnection, account: &str, user: &str) -> ZoomConnection {
        zc.status = Some(ZoomConnectionStatus {
            account: Some(ZoomAccount {
                account_id: Some(account.into()),
                user_id: Some(user.into()),
                email: None,
            }),
            ..Default::default()
        });
        zc
    }

    pub fn with_sink(mut zc: ZoomConnection, uri: &str) -> ZoomConnection {
        zc.spec.events = Some(EventsSpec {
            delivery: None,
            sink: SinkSpec {
                uri: Some(uri.into()),
                service_ref: None,
            },
        });
        zc
    }

    pub fn cached(pairs: &[(&str, &str)]) -> CachedSecret {
        let mut values: BTreeMap<String, Option<String>> = [
            ("secretToken", None),
            ("accountId", None),
            ("clientId", None),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into();
        for (k, v) in pairs {
            values.insert((*k).to_owned(), Some((*v).to_owned()));
        }
        CachedSecret {
            resource_version: Some("1".into()),
            values,
        }
    }

    fn sref(ns: &str, name: &str) -> SecretRef {
        SecretRef {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn names(routes: &[Arc<Route>]) -> Vec<String> {
        routes
            .iter()
            .map(|r| format!("{}/{}", r.namespace, r.name))
            .collect()
    }

    fn app_of(snapshot: &Snapshot, token: &str) -> usize {
        snapshot
            .secret_tokens()
            .position(|t| t == token.as_bytes())
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn routes_by_signing_app_and_account() {
        let settings = IndexSettings::default();
        let zcs: Vec<Arc<ZoomConnection>> = vec![
            Arc::new(connection(
                "a",
                "s2s-1",
                AuthType::ServerToServer,
                Some("app1"),
            )),
            Arc::new(connection(
                "a",
                "s2s-2",
                AuthType::ServerToServer,
                Some("app2"),
            )),
            Arc::new(authorized(
                connection("b", "oauth", AuthType::PrivateOAuth, Some("app1")),
                "acc-o",
                "u1",
            )),
            // Same Zoom app in another namespace, same account: both receive.
            Arc::new(connection(
                "c",
                "s2s-1-copy",
                AuthType::ServerToServer,
                Some("app1"),
            )),
            // No account yet: counts for verification only.
            Arc::new(connection(
                "b",
                "pending",
                AuthType::PrivateOAuth,
                Some("app3"),
            )),
        ];
        let secrets = HashMap::from([
            (
                sref("a", "app1"),
                cached(&[("secretToken", "tok-1"), ("accountId", "acc-1")]),
            ),
            (
                sref("a", "app2"),
                cached(&[("secretToken", "tok-2"), ("accountId", "acc-2")]),
            ),
            (sref("b", "app1"), cached(&[("secretToken", "tok-1")])),
            (
                sref("c", "app1"),
                cached(&[("secretToken", "tok-1"), ("accountId", "acc-1")]),
            ),
            (sref("b", "app3"), cached(&[("secretToken", "tok-3")])),
        ]);
        let s = Snapshot::build(&zcs, &secrets, &settings);
        assert!(s.ready);
        assert_eq!(s.app_count(), 3, "one app per distinct secret token");
        assert_eq!(s.routable_count(), 4);
        let (t1, t2, t3) = (
            app_of(&s, "tok-1"),
            app_of(&s, "tok-2"),
            app_of(&s, "tok-3"),
        );
        assert_eq!(names(s.route(t1, "acc-1")), ["a/s2s-1", "c/s2s-1-copy"]);
        assert_eq!(names(s.route(t1, "acc-o")), ["b/oauth"]);
        assert_eq!(names(s.route(t2, "acc-2")), ["a/s2s-2"]);
        // The account matches but the app that signed is another one: nothing.
        assert!(s.route(t2, "acc-1").is_empty());
        assert!(s.route(t3, "acc-1").is_empty());
        assert!(s.route(99, "acc-1").is_empty());
    }

    #[test]
    fn missing_tokens_deleted_and_foreign_connections_are_left_out() {
        let settings = IndexSettings {
            watch_namespaces: vec!["a".into()],
            ..Default::default()
        };
        let mut deleting = connection("a", "deleting", AuthType::ServerToServer, Some("app"));
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let zcs = vec![
            Arc::new(deleting),
            Arc::new(connection(
                "a",
                "no-token",
                AuthType::ServerToServer,
                Some("bare"),
            )),
            Arc::new(connection(
                "a",
                "no-secret",
                AuthType::ServerToServer,
                Some("missing"),
            )),
            Arc::new(connection(
                "other",
                "elsewhere",
                AuthType::ServerToServer,
                Some("app"),
            )),
        ];
        let secrets = HashMap::from([
            (
                sref("a", "app"),
                cached(&[("secretToken", "tok"), ("accountId", "acc")]),
            ),
            (
                sref("other", "app"),
                cached(&[("secretToken", "tok"), ("accountId", "acc")]),
            ),
            (sref("a", "bare"), cached(&[("accountId", "acc")])),
        ]);
        let s = Snapshot::build(&zcs, &secrets, &settings);
        assert_eq!(s.app_count(), 0);
        assert_eq!(s.secret_tokens().count(), 0);
        let wanted = wanted_keys(&zcs, &settings);
        assert_eq!(
            wanted.keys().cloned().collect::<Vec<_>>(),
            [sref("a", "bare"), sref("a", "missing")]
        );
    }

    #[test]
    fn default_oauth_uses_the_default_app_secret() {
        let settings = IndexSettings {
            default_app_secret: Some(crate::api::ObjectRef::new("platform", "zoom-default")),
            ..Default::default()
        };
        let zcs = vec![Arc::new(authorized(
            connection("a", "d", AuthType::DefaultOAuth, None),
            "acc",
            "u",
        ))];
        let wanted = wanted_keys(&zcs, &settings);
        assert_eq!(
            wanted
                .get(&sref("platform", "zoom-default"))
                .map(|k| k.iter().cloned().collect::<Vec<_>>()),
            Some(vec![
                "accountId".to_owned(),
                "clientId".to_owned(),
                "secretToken".to_owned()
            ])
        );
        let secrets = HashMap::from([(
            sref("platform", "zoom-default"),
            cached(&[("secretToken", "dt")]),
        )]);
        let s = Snapshot::build(&zcs, &secrets, &settings);
        assert_eq!(names(s.route(app_of(&s, "dt"), "acc")), ["a/d"]);
        // Without --default-app-secret there is no app to verify against.
        let s = Snapshot::build(&zcs, &secrets, &IndexSettings::default());
        assert_eq!(s.app_count(), 0);
    }

    #[test]
    fn sinks_are_resolved_under_the_ssrf_policy() {
        let settings = IndexSettings {
            allow_sink_hosts: vec!["127.0.0.1".into()],
            ..Default::default()
        };
        let zcs = vec![
            Arc::new(with_sink(
                connection("a", "ok", AuthType::ServerToServer, Some("app")),
                "http://127.0.0.1:9/x",
            )),
            Arc::new(with_sink(
                connection("a", "meta", AuthType::ServerToServer, Some("app")),
                "http://169.254.169.254/",
            )),
            Arc::new(connection(
                "a",
                "none",
                AuthType::ServerToServer,
                Some("app"),
            )),
        ];
        let secrets = HashMap::from([(
            sref("a", "app"),
            cached(&[("secretToken", "t"), ("accountId", "acc")]),
        )]);
        let s = Snapshot::build(&zcs, &secrets, &settings);
        let routes = s.route(0, "acc");
        let sinks: Vec<_> = routes
            .iter()
            .map(|r| r.sink.as_ref().map(Result::is_ok))
            .collect();
        assert_eq!(names(routes), ["a/meta", "a/none", "a/ok"]);
        assert_eq!(sinks, [Some(false), None, Some(true)]);
    }

    #[test]
    fn deauthorization_spares_other_users_grants() {
        let zcs = vec![
            Arc::new(authorized(
                connection("a", "alice", AuthType::PrivateOAuth, Some("app")),
                "acc",
                "alice",
            )),
            Arc::new(authorized(
                connection("a", "bob", AuthType::PrivateOAuth, Some("app")),
                "acc",
                "bob",
            )),
            Arc::new(connection(
                "a",
                "s2s",
                AuthType::ServerToServer,
                Some("app"),
            )),
        ];
        let secrets = HashMap::from([(
            sref("a", "app"),
            cached(&[("secretToken", "t"), ("accountId", "acc")]),
        )]);
        let s = Snapshot::build(&zcs, &secrets, &IndexSettings::default());
        let routes = s.route(0, "acc");
        let pick = |user| {
            deauthorization_targets(routes, user)
                .into_iter()
                .map(|r| r.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(Some("alice")), ["alice", "s2s"]);
        assert_eq!(pick(None), ["alice", "bob", "s2s"]);
    }

    #[test]
    fn debug_output_never_shows_tokens() {
        let c = cached(&[("secretToken", "hunter2")]);
        let shown = format!("{c:?} {:?}", SecretToken("hunter2".into()));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
