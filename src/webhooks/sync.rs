//! Keeps the routing index current on every replica (not only the lease holder), from the
//! shared caches (`crate::cache`): connections, and the metadata of Secrets, which says when a
//! referenced credentials Secret changed or went away. Only referenced Secrets are read (GET by
//! name, once per resourceVersion), and only their secret token, account ID and client ID are
//! kept; the contents of other Secrets are never cached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::Client;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cache::{Caches, Change};

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

struct IndexSync {
    client: Client,
    settings: IndexSettings,
    index: Arc<RoutingIndex>,
    caches: Caches,
    cache: HashMap<SecretRef, CachedSecret>,
}

/// Runs until `shutdown`. Publishes a ready snapshot once every watch listed.
pub async fn maintain(
    index: Arc<RoutingIndex>,
    client: Client,
    settings: IndexSettings,
    caches: Caches,
    shutdown: CancellationToken,
) {
    let mut changes = caches.subscribe();
    // Until every namespace was listed, a snapshot would miss apps: keep answering "not
    // ready" rather than 401 to Zoom's requests for them.
    tokio::select! {
        () = shutdown.cancelled() => return,
        () = caches.wait_ready() => {}
    }
    let mut sync = IndexSync {
        client,
        settings,
        index,
        caches,
        cache: HashMap::new(),
    };
    // When the index must be rebuilt: set by the first change after a rebuild.
    let mut dirty_since: Option<Instant> = Some(Instant::now());
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
            change = changes.recv() => {
                let relevant = match change {
                    Ok(Change::Secret(secret)) => sync.cache.contains_key(&secret),
                    // Status changes too: connections are routed by their account.
                    Ok(Change::Connection { .. } | Change::Listed) | Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => {
                        tracing::error!("the watches behind webhook routing ended");
                        return;
                    }
                };
                if relevant {
                    last_change = Instant::now();
                    dirty_since.get_or_insert(last_change);
                }
            }
            () = sleep_until(rebuild_at) => {
                dirty_since = None;
                retry_at = (!sync.rebuild().await).then(|| Instant::now() + RETRY);
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl IndexSync {
    /// Reads the referenced Secrets not cached yet and publishes a new snapshot. False when
    /// some Secret could not be read (what was cached before is kept meanwhile).
    async fn rebuild(&mut self) -> bool {
        let connections = self.caches.connections();
        let wanted = wanted_keys(&connections, &self.settings);
        // Forget what is no longer wanted, and what changed (or went away) since it was read.
        // Before the Secret metadata is listed nobody knows: what was read stays (a rebuild
        // every 100 ms while thousands of connections load would read it again each time).
        let caches = &self.caches;
        self.cache.retain(|k, cached| {
            wanted.contains_key(k)
                && caches
                    .secret_version(k)
                    .is_none_or(|version| version == cached.resource_version)
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
}
