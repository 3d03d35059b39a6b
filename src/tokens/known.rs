//! What this process knows of token Secrets without asking the API server: the label-scoped
//! watch the lease holder keeps anyway (data included: these are the operator's own Secrets),
//! and the Secrets this process wrote since, which that watch may not show yet.
//!
//! Reading from here is safe because every write is a compare-and-swap on `resourceVersion`:
//! a stale read costs a 409 and a fresh GET, never a lost rotation. A refresh token is sent only
//! after the fence was written against the record it came from (`transition::claim_fence`), and
//! a rejection is judged on a fresh read.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;

use super::cached::{CachedSecret, TokenSecrets};
use crate::api::ObjectRef as SecretRef;
use crate::cache::{secret_ref, Caches};
use crate::config::WatchScope;

/// How long a Secret this process wrote is preferred over the watch's copy. The watch shows a
/// write within milliseconds; past this something else is wrong, and the watch wins.
const WRITTEN_TTL: Duration = Duration::from_secs(30);
/// resourceVersions remembered per Secret as replaced by this process's writes.
const REPLACED_KEPT: usize = 8;

#[derive(Debug)]
struct Written {
    secret: CachedSecret,
    /// Versions this process replaced, oldest first: a watch still showing one is behind.
    replaced: Vec<String>,
    at: Instant,
}

/// Token Secrets as this process knows them.
#[derive(Debug)]
pub struct KnownSecrets {
    /// The lease holder's token-Secret caches, once listed.
    stores: RwLock<Vec<(WatchScope, TokenSecrets)>>,
    written: Mutex<HashMap<SecretRef, Written>>,
    /// Secret metadata of every watched namespace: says whether a Secret missing from the
    /// label-scoped watch exists without the label (someone else's Secret under our name).
    caches: Caches,
}

impl KnownSecrets {
    pub fn new(caches: Caches) -> Self {
        KnownSecrets {
            stores: RwLock::new(Vec::new()),
            written: Mutex::new(HashMap::new()),
            caches,
        }
    }

    /// Adds a listed token-Secret cache (the lease holder's controller, per scope), in place
    /// of any earlier one of that scope.
    pub fn attach(&self, scope: WatchScope, store: TokenSecrets) {
        if let Ok(mut stores) = self.stores.write() {
            stores.retain(|(s, _)| *s != scope);
            stores.push((scope, store));
        }
    }

    /// Detaches every cache when the returned guard is dropped, however the term that
    /// attached them ends (a leadership loss drops the controller's future mid-await): a cache
    /// whose watch no longer runs must never be read.
    pub fn term(self: &std::sync::Arc<Self>) -> impl Drop {
        struct Term(std::sync::Arc<KnownSecrets>);
        impl Drop for Term {
            fn drop(&mut self) {
                self.0.detach_all();
            }
        }
        Term(self.clone())
    }

    /// Forgets every cache (leadership lost: the watches stop).
    pub fn detach_all(&self) {
        if let Ok(mut stores) = self.stores.write() {
            stores.clear();
        }
        if let Ok(mut written) = self.written.lock() {
            written.clear();
        }
    }

    /// The Secret `namespace/name` as far as known without a request: `Some(None)` when it
    /// does not exist, `None` when only the API server can say.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Option<Secret>> {
        let key = SecretRef::new(namespace, name);
        let cached = {
            let stores = self.stores.read().ok()?;
            let (_, store) = stores.iter().find(|(scope, _)| scope.covers(namespace))?;
            store.get(&key)?
        };
        if let Ok(mut written) = self.written.lock() {
            if let Some(w) = written.get(&key) {
                let behind = match &cached {
                    None => true,
                    Some(c) => w.replaced.iter().any(|v| v == c.resource_version()),
                };
                if behind && w.at.elapsed() < WRITTEN_TTL {
                    return Some(Some(w.secret.to_secret(&key)));
                }
                // Caught up with our write, or someone wrote after it.
                written.remove(&key);
            }
        }
        match cached {
            Some(secret) => Some(Some(secret.to_secret(&key))),
            // Missing from the label-scoped watch: absent, unless a Secret of that name
            // exists without our label (then the API server says whose it is).
            None => match self.caches.secret_version(&key) {
                Some(None) => Some(None),
                _ => None,
            },
        }
    }

    /// Records a Secret this process wrote, replacing version `replaced` (None: created).
    pub fn wrote(&self, secret: Secret, replaced: Option<String>) {
        let Some(key) = secret_ref(&secret) else {
            return;
        };
        if let Ok(mut written) = self.written.lock() {
            prune(&mut written, Instant::now());
            let mut versions = written.remove(&key).map(|w| w.replaced).unwrap_or_default();
            versions.extend(replaced);
            if versions.len() > REPLACED_KEPT {
                versions.drain(..versions.len() - REPLACED_KEPT);
            }
            written.insert(
                key,
                Written {
                    secret: CachedSecret::of(&secret),
                    replaced: versions,
                    at: Instant::now(),
                },
            );
        }
    }

    /// The watch shows `secret`: whether that is, to the resourceVersion, what this process
    /// last wrote to it. If so the watch has caught up and the copy kept of the write is
    /// dropped (the watch's is the same); kept, every write of the last [`WRITTEN_TTL`]
    /// would stay in memory, a whole Secret each.
    pub fn caught_up(&self, secret: &Secret) -> bool {
        let (Some(key), Some(version)) = (secret_ref(secret), &secret.metadata.resource_version)
        else {
            return false;
        };
        let Ok(mut written) = self.written.lock() else {
            return false;
        };
        let ours = written
            .get(&key)
            .is_some_and(|w| w.secret.resource_version() == version);
        if ours {
            written.remove(&key);
        }
        ours
    }

    /// Forgets what this process wrote to `namespace/name` (a write failed or conflicted: the
    /// next read asks the API server).
    pub fn forget(&self, namespace: &str, name: &str) {
        if let Ok(mut written) = self.written.lock() {
            written.remove(&SecretRef::new(namespace, name));
        }
    }
}

/// Forgets writes older than [`WRITTEN_TTL`]: past it the watch's copy wins anyway (`get`), and
/// a Secret written once an hour would otherwise stay here, one copy per connection.
fn prune(written: &mut HashMap<SecretRef, Written>, now: Instant) {
    written.retain(|_, w| now.saturating_duration_since(w.at) < WRITTEN_TTL);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher;

    fn secret(rv: &str, token: &str) -> Secret {
        let mut secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "a", "name": "bot-zoom-token", "resourceVersion": rv},
        }))
        .expect("secret");
        secret.data = Some(
            [(
                "accessToken".to_owned(),
                k8s_openapi::ByteString(token.as_bytes().to_vec()),
            )]
            .into(),
        );
        secret
    }

    fn token(s: &Option<Secret>) -> String {
        s.as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get("accessToken"))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .unwrap_or_default()
    }

    /// A token-Secret cache that has listed, and nothing in it.
    fn listed() -> TokenSecrets {
        let tokens = TokenSecrets::default();
        tokens.apply(&watcher::Event::Init);
        tokens.apply(&watcher::Event::InitDone);
        tokens
    }

    #[test]
    fn own_writes_win_until_the_watch_catches_up() {
        let tokens = listed();
        let known = KnownSecrets::new(Caches::of_connections(Vec::new()));
        // Nothing attached yet: only the API server knows.
        assert!(known.get("a", "bot-zoom-token").is_none());
        known.attach(WatchScope::All, tokens.clone());

        tokens.apply(&watcher::Event::Apply(secret("5", "t5")));
        assert_eq!(
            token(&known.get("a", "bot-zoom-token").expect("known")),
            "t5"
        );

        // We replaced 5 with 6; the watch still shows 5.
        known.wrote(secret("6", "t6"), Some("5".into()));
        assert_eq!(
            token(&known.get("a", "bot-zoom-token").expect("known")),
            "t6"
        );
        // And 6 with 7 before the watch showed 6.
        known.wrote(secret("7", "t7"), Some("6".into()));
        tokens.apply(&watcher::Event::Apply(secret("6", "t6")));
        assert_eq!(
            token(&known.get("a", "bot-zoom-token").expect("known")),
            "t7"
        );
        // The watch caught up.
        tokens.apply(&watcher::Event::Apply(secret("7", "t7")));
        assert_eq!(
            token(&known.get("a", "bot-zoom-token").expect("known")),
            "t7"
        );

        // Someone else wrote after us: theirs wins.
        known.wrote(secret("8", "t8"), Some("7".into()));
        tokens.apply(&watcher::Event::Apply(secret("9", "t9")));
        assert_eq!(
            token(&known.get("a", "bot-zoom-token").expect("known")),
            "t9"
        );

        // A failed write forgets ours.
        known.wrote(secret("10", "t10"), Some("9".into()));
        known.forget("a", "bot-zoom-token");
        assert_eq!(
            token(&known.get("a", "bot-zoom-token").expect("known")),
            "t9"
        );

        // Leadership lost: nothing is known any more.
        known.detach_all();
        assert!(known.get("a", "bot-zoom-token").is_none());
    }

    #[test]
    fn the_watch_showing_our_own_write_is_told_apart_from_anyone_elses() {
        let known = KnownSecrets::new(Caches::of_connections(Vec::new()));
        assert!(!known.caught_up(&secret("6", "t6")), "nothing written yet");
        known.wrote(secret("6", "t6"), Some("5".into()));
        assert!(
            !known.caught_up(&secret("5", "t5")),
            "the version we replaced"
        );
        assert!(
            !known.caught_up(&secret("7", "t7")),
            "someone wrote after us"
        );
        assert!(known.caught_up(&secret("6", "t6")));
        assert!(
            known.written.lock().expect("lock").is_empty(),
            "the copy of the write is dropped once the watch shows it"
        );
    }

    #[test]
    fn own_writes_are_not_kept_past_their_ttl() {
        let known = KnownSecrets::new(Caches::of_connections(Vec::new()));
        known.wrote(secret("3", "t3"), None);
        let mut written = known.written.lock().expect("lock");
        prune(&mut written, Instant::now());
        assert_eq!(written.len(), 1, "a fresh write is kept");
        prune(&mut written, Instant::now() + WRITTEN_TTL);
        assert!(written.is_empty(), "a write past its TTL is dropped");
    }

    #[test]
    fn a_secret_the_watch_does_not_show_is_asked_for_unless_known_absent() {
        // No Secret metadata cache covers "a": the API server must say.
        let known = KnownSecrets::new(Caches::of_connections(Vec::new()));
        known.attach(WatchScope::All, listed());
        assert!(known.get("a", "bot-zoom-token").is_none());
        // Created by us: known before the watch shows it.
        known.wrote(secret("3", "t3"), None);
        assert_eq!(
            token(&known.get("a", "bot-zoom-token").expect("known")),
            "t3"
        );

        // With Secret metadata: absent is known; a Secret of that name without our label
        // (someone else's) is asked for.
        let meta = crate::cache::SecretVersions::default();
        // Before the metadata watch has listed, nothing is known absent.
        meta.apply(&watcher::Event::Init);
        meta.apply(&watcher::Event::InitDone);
        let known = KnownSecrets::new(Caches::of_connections(Vec::new()).with_secrets(
            crate::cache::SecretScope::Watch(WatchScope::All),
            meta.clone(),
        ));
        known.attach(WatchScope::All, listed());
        assert_eq!(known.get("a", "bot-zoom-token"), Some(None));
        let foreign: kube::core::PartialObjectMeta<Secret> =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"namespace": "a", "name": "bot-zoom-token", "resourceVersion": "1"},
            }))
            .expect("meta");
        meta.apply(&watcher::Event::Apply(foreign));
        assert_eq!(known.get("a", "bot-zoom-token"), None);
    }
}
