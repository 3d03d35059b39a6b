//! App Secrets as last read, with at most one read of each in flight.
//!
//! A connection's app Secret is read when the Secret metadata cache shows a resourceVersion
//! this process has not read yet, or when that cache does not know the Secret. Many
//! connections share one app, so many reconciles ask for the same Secret at once (on a
//! restart, every one of them): they wait for one GET instead of each sending their own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta};

use crate::api::ObjectRef;

/// How old a read may be to serve a caller that has no version to compare with: about the
/// lag of a watch.
const UNKNOWN_FRESH: Duration = Duration::from_secs(1);

/// The app Secrets read, by reference.
#[derive(Default)]
pub struct AppSecrets {
    slots: Mutex<HashMap<ObjectRef, Arc<Slot>>>,
}

/// One Secret: its last read, behind a lock held for the length of a read.
#[derive(Default)]
struct Slot {
    last: tokio::sync::Mutex<Option<Read>>,
}

struct Read {
    /// None: the Secret did not exist.
    secret: Option<Arc<Secret>>,
    began: Instant,
}

impl AppSecrets {
    /// Secret `key` as it is now. `version` is the resourceVersion the metadata cache shows,
    /// None when the cache does not know.
    ///
    /// A kept read of that version is current. Without a version (before the metadata cache
    /// has listed), a read that began less than [`UNKNOWN_FRESH`] before this call is shared:
    /// the cache would not have shown anything newer either.
    pub async fn read(
        &self,
        client: &kube::Client,
        key: &ObjectRef,
        version: Option<&str>,
    ) -> Result<Option<Arc<Secret>>, kube::Error> {
        let asked = Instant::now();
        let slot = self.slot(key);
        let mut last = slot.last.lock().await;
        if let Some(read) = last.as_ref() {
            let kept_version = read
                .secret
                .as_ref()
                .and_then(|s| s.metadata.resource_version.as_deref());
            let fresh = asked.saturating_duration_since(read.began) < UNKNOWN_FRESH;
            if (version.is_some() && kept_version == version) || (version.is_none() && fresh) {
                return Ok(read.secret.clone());
            }
        }
        let began = Instant::now();
        let secret = Api::<Secret>::namespaced(client.clone(), &key.namespace)
            .get_opt(&key.name)
            .await?
            .map(|s| Arc::new(kept(s)));
        *last = Some(Read {
            secret: secret.clone(),
            began,
        });
        Ok(secret)
    }

    /// Drops what is kept of `key` (the metadata cache shows it deleted).
    pub fn forget(&self, key: &ObjectRef) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.remove(key);
        }
    }

    fn slot(&self, key: &ObjectRef) -> Arc<Slot> {
        match self.slots.lock() {
            Ok(mut slots) => slots.entry(key.clone()).or_default().clone(),
            // A poisoned map only costs the sharing.
            Err(_) => Arc::default(),
        }
    }
}

/// What is kept of an app Secret: its data and the identity and version that tell whether it
/// changed.
fn kept(secret: Secret) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: secret.metadata.name,
            namespace: secret.metadata.namespace,
            resource_version: secret.metadata.resource_version,
            ..Default::default()
        },
        data: secret.data,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A client whose API server answers every GET with Secret `team/app` at resourceVersion
    /// `version` (slowly, so reads overlap), counting the GETs.
    fn api_server(version: Arc<Mutex<String>>) -> (kube::Client, Arc<AtomicUsize>) {
        let gets = Arc::new(AtomicUsize::new(0));
        let counted = gets.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let (gets, version) = (counted.clone(), version.clone());
            async move {
                assert_eq!(req.uri().path(), "/api/v1/namespaces/team/secrets/app");
                gets.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let version = version.lock().expect("version").clone();
                let body = serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "app", "namespace": "team", "resourceVersion": version},
                    "data": {"clientId": "aWQ="},
                });
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(body.to_string().into_bytes()))
                        .expect("response"),
                )
            }
        });
        (kube::Client::new(service, "team"), gets)
    }

    #[tokio::test]
    async fn many_readers_of_one_app_secret_share_a_get() {
        let version = Arc::new(Mutex::new("1".to_owned()));
        let (client, gets) = api_server(version.clone());
        let secrets = Arc::new(AppSecrets::default());
        let key = ObjectRef::new("team", "app");

        // A restart: the metadata cache has not listed, 64 reconciles ask at once.
        let readers = (0..64).map(|_| {
            let (secrets, client, key) = (secrets.clone(), client.clone(), key.clone());
            tokio::spawn(async move { secrets.read(&client, &key, None).await })
        });
        for reader in futures::future::join_all(readers).await {
            let secret = reader.expect("joined").expect("read").expect("exists");
            assert_eq!(secret.metadata.resource_version.as_deref(), Some("1"));
        }
        assert_eq!(gets.load(Ordering::SeqCst), 1);

        // The cache shows the version read: no request.
        secrets.read(&client, &key, Some("1")).await.expect("read");
        assert_eq!(gets.load(Ordering::SeqCst), 1);

        // The Secret changed: one read, whatever the number of readers.
        *version.lock().expect("version") = "2".to_owned();
        let readers = (0..16).map(|_| {
            let (secrets, client, key) = (secrets.clone(), client.clone(), key.clone());
            tokio::spawn(async move { secrets.read(&client, &key, Some("2")).await })
        });
        for reader in futures::future::join_all(readers).await {
            let secret = reader.expect("joined").expect("read").expect("exists");
            assert_eq!(secret.metadata.resource_version.as_deref(), Some("2"));
        }
        assert_eq!(gets.load(Ordering::SeqCst), 2);

        // Forgotten (deleted): the next reader asks again.
        secrets.forget(&key);
        secrets.read(&client, &key, Some("2")).await.expect("read");
        assert_eq!(gets.load(Ordering::SeqCst), 3);
    }
}
