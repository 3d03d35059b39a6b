//! Token Secrets as this process keeps them between requests: of each Secret only what the
//! writer and the readers use (`super::store`: its resourceVersion, owners, labels,
//! annotations and data), with the operator's own keys shared instead of copied into every
//! Secret. A `Store<Secret>` kept the whole typed object, about 3 KiB per connection; a
//! [`CachedSecret`] takes about the size of its tokens.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use kube::runtime::watcher;

use super::secret::{
    annotations, ACCESS_TOKEN, API_URL, EXPIRES_AT, REFRESH_TOKEN, SCOPE, TOKEN_TYPE,
};
use crate::api::{ObjectRef as SecretRef, CONNECTION_LABEL, MANAGED_BY_LABEL};
use crate::cache::{secret_ref, SecretMap};

/// A label, annotation or data key: the operator's own are shared.
type Key = Cow<'static, str>;

/// The keys every token Secret carries (with the bookkeeping annotations, `annotations::ALL`),
/// kept once for all of them.
const OWN_KEYS: [&str; 9] = [
    ACCESS_TOKEN,
    REFRESH_TOKEN,
    TOKEN_TYPE,
    EXPIRES_AT,
    SCOPE,
    API_URL,
    MANAGED_BY_LABEL,
    CONNECTION_LABEL,
    crate::api::REFRESH_REQUESTED_ANNOTATION,
];

fn key(k: &str) -> Key {
    match OWN_KEYS
        .iter()
        .chain(&annotations::ALL)
        .find(|own| **own == k)
    {
        Some(own) => Cow::Borrowed(own),
        None => Cow::Owned(k.to_owned()),
    }
}

/// One token Secret, as much of it as is ever read back. Its namespace and name are the key
/// it is kept under.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedSecret {
    resource_version: Box<str>,
    owner_references: Box<[OwnerReference]>,
    labels: Box<[(Key, Box<str>)]>,
    annotations: Box<[(Key, Box<str>)]>,
    data: Box<[(Key, Box<[u8]>)]>,
}

impl CachedSecret {
    pub fn of(secret: &Secret) -> CachedSecret {
        let meta = &secret.metadata;
        let strings = |map: &Option<BTreeMap<String, String>>| {
            map.iter()
                .flatten()
                .map(|(k, v)| (key(k), Box::from(v.as_str())))
                .collect()
        };
        CachedSecret {
            resource_version: meta.resource_version.as_deref().unwrap_or_default().into(),
            owner_references: meta.owner_references.clone().unwrap_or_default().into(),
            labels: strings(&meta.labels),
            annotations: strings(&meta.annotations),
            data: secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (key(k), Box::from(v.0.as_slice())))
                .collect(),
        }
    }

    pub fn resource_version(&self) -> &str {
        &self.resource_version
    }

    /// The Secret `at` as kept: every field the writer reads, nothing else.
    pub fn to_secret(&self, at: &SecretRef) -> Secret {
        let strings = |pairs: &[(Key, Box<str>)]| {
            (!pairs.is_empty()).then(|| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
        };
        Secret {
            metadata: ObjectMeta {
                namespace: Some(at.namespace.clone()),
                name: Some(at.name.clone()),
                resource_version: (!self.resource_version.is_empty())
                    .then(|| self.resource_version.to_string()),
                owner_references: (!self.owner_references.is_empty())
                    .then(|| self.owner_references.to_vec()),
                labels: strings(&self.labels),
                annotations: strings(&self.annotations),
                ..ObjectMeta::default()
            },
            data: (!self.data.is_empty()).then(|| {
                self.data
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect()
            }),
            ..Secret::default()
        }
    }
}

/// The token Secrets one label-scoped watch shows.
#[derive(Clone, Debug, Default)]
pub struct TokenSecrets(Arc<SecretMap<Arc<CachedSecret>>>);

impl TokenSecrets {
    /// `key` as the watch shows it: `Some(None)` when it does not, `None` before it has listed.
    pub fn get(&self, key: &SecretRef) -> Option<Option<Arc<CachedSecret>>> {
        self.0.get(key)
    }

    /// Applies a watch event, as a reflector's writer does.
    pub fn apply(&self, event: &watcher::Event<Secret>) {
        self.0.apply(event, secret_ref, |secret| {
            Arc::new(CachedSecret::of(secret))
        });
    }

    /// Waits until the watch has listed once.
    pub async fn wait_ready(&self) {
        self.0.wait_ready().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AuthType, ZoomConnection, ZoomConnectionSpec};
    use crate::tokens::secret::{ownership, read_record};
    use kube::Resource;

    /// A token Secret as the API server returns it, with what other tools add beside ours.
    fn full() -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "namespace": "team", "name": "bot-zoom-token", "resourceVersion": "42",
                "uid": "s-1", "creationTimestamp": "2026-01-01T00:00:00Z",
                "finalizers": ["backup.example.com/keep"],
                "managedFields": [{"manager": "zoom-operator", "operation": "Update"}],
                "labels": {
                    MANAGED_BY_LABEL: "zoom-operator", CONNECTION_LABEL: "bot",
                    "team.example.com/cost-center": "42",
                },
                "annotations": {
                    annotations::CLIENT_ID: "client-a",
                    annotations::ACCOUNT_ID: "acc-1",
                    annotations::LAST_REFRESH_TIME: "2026-01-01T00:00:00Z",
                    annotations::REFRESH_FENCE: "replica-1;2026-01-01T00:01:00Z;abcd",
                    annotations::CONSUMED_STATES: "s1@2026-01-01T00:00:00Z",
                    "reloader.stakater.com/last-hash": "f00",
                },
                "ownerReferences": [{
                    "apiVersion": "zoom-operator.io/v1alpha1", "kind": "ZoomConnection",
                    "name": "bot", "uid": "zc-1", "controller": true,
                    "blockOwnerDeletion": true,
                }],
            },
            "type": "Opaque",
            "data": {
                ACCESS_TOKEN: "YWNjZXNz", REFRESH_TOKEN: "cmVmcmVzaA==",
                TOKEN_TYPE: "YmVhcmVy", EXPIRES_AT: "MjAyNi0wMS0wMVQwMTowMDowMFo=",
                "extra": "eA==",
            },
        }))
        .expect("secret")
    }

    #[test]
    fn the_writer_reads_the_same_from_a_cached_secret_as_from_the_secret() {
        let secret = full();
        let at = SecretRef::new("team", "bot-zoom-token");
        let cached = CachedSecret::of(&secret).to_secret(&at);

        assert_eq!(read_record(&cached), read_record(&secret));
        assert!(read_record(&cached).grant.is_some(), "the tokens are kept");
        let mut zc = ZoomConnection::new(
            "bot",
            ZoomConnectionSpec::new(AuthType::ServerToServer, None),
        );
        zc.meta_mut().uid = Some("zc-1".into());
        assert_eq!(ownership(&zc, Some(&cached)), ownership(&zc, Some(&secret)));
        zc.meta_mut().uid = Some("zc-2".into());
        assert_eq!(ownership(&zc, Some(&cached)), ownership(&zc, Some(&secret)));

        // What the compare-and-swap and the merge of other tools' metadata use.
        assert_eq!(
            cached.metadata.resource_version,
            secret.metadata.resource_version
        );
        assert_eq!(cached.metadata.labels, secret.metadata.labels);
        assert_eq!(cached.metadata.annotations, secret.metadata.annotations);
        assert_eq!(
            cached.metadata.owner_references,
            secret.metadata.owner_references
        );
        assert_eq!(cached.data, secret.data);
        assert_eq!(cached.metadata.namespace, secret.metadata.namespace);
        assert_eq!(cached.metadata.name, secret.metadata.name);
        // The operator's keys are shared, not copied.
        let kept = CachedSecret::of(&secret);
        assert!(kept
            .data
            .iter()
            .all(|(k, _)| matches!(k, Cow::Borrowed(_)) || k == "extra"));
    }

    #[test]
    fn a_relist_drops_what_it_no_longer_shows() {
        let tokens = TokenSecrets::default();
        let at = SecretRef::new("team", "bot-zoom-token");
        assert_eq!(
            tokens.get(&at),
            None,
            "not listed: only the API server knows"
        );
        tokens.apply(&watcher::Event::Init);
        tokens.apply(&watcher::Event::InitApply(full()));
        tokens.apply(&watcher::Event::InitDone);
        let kept = tokens.get(&at).flatten().expect("kept");
        assert_eq!(kept.resource_version(), "42");

        tokens.apply(&watcher::Event::Init);
        tokens.apply(&watcher::Event::InitDone);
        assert_eq!(
            tokens.get(&at),
            Some(None),
            "deleted while the watch was down"
        );
    }
}
