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
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use crate::cache::Caches;
use crate::config::WatchScope;

/// How long a Secret this process wrote is preferred over the watch's copy. The watch shows a
/// write within milliseconds; past this something else is wrong, and the watch wins.
const WRITTEN_TTL: Duration = Duration::from_secs(30);
/// resourceVersions remembered per Secret as replaced by this process's writes.
const REPLACED_KEPT: usize = 8;

#[derive(Debug)]
struct Written {
    secret: Secret,
    /// Versions this process replaced, oldest first: a watch still showing one is behind.
    replaced: Vec<String>,
    at: Instant,
}

/// Token Secrets as this process knows them.
#[derive(Debug)]
pub struct KnownSecrets {
    /// The lease holder's token-Secret caches, once listed.
    stores: RwLock<Vec<(WatchScope, Store<Secret>)>>,
    written: Mutex<HashMap<ObjectRef<Secret>, Written>>,
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
    pub fn attach(&self, scope: WatchScope, store: Store<Secret>) {
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
        let key = ObjectRef::new(name).within(namespace);
        let cached = {
            let stores = self.stores.read().ok()?;
            let (_, store) = stores.iter().find(|(scope, _)| scope.covers(namespace))?;
            store.get(&key)
        };
        let cached_version = cached.as_ref().and_then(|s| s.resource_version());
        if let Ok(mut written) = self.written.lock() {
            if let Some(w) = written.get(&key) {
                let behind = match &cached_version {
                    None => true,
                    Some(v) => w.replaced.contains(v),
                };
                if behind && w.at.elapsed() < WRITTEN_TTL {
                    return Some(Some(w.secret.clone()));
                }
                // Caught up with our write, or someone wrote after it.
                written.remove(&key);
            }
        }
        match cached {
            Some(secret) => Some(Some((*secret).clone())),
            // Missing from the label-scoped watch: absent, unless a Secret of that name
            // exists without our label (then the API server says whose it is).
            None => match self
                .caches
                .secret_version(&crate::api::ObjectRef::new(namespace, name))
            {
                Some(None) => Some(None),
                _ => None,
            },
        }
    }

    /// Records a Secret this process wrote, replacing version `replaced` (None: created).
    pub fn wrote(&self, mut secret: Secret, replaced: Option<String>) {
        let (Some(namespace), Some(name)) = (secret.namespace(), Some(secret.name_any())) else {
            return;
        };
        secret.managed_fields_mut().clear();
        let key = ObjectRef::new(&name).within(&namespace);
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
                    secret,
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
        let (Some(namespace), Some(version)) = (secret.namespace(), secret.resource_version())
        else {
            return false;
        };
        let key = ObjectRef::new(&secret.name_any()).within(&namespace);
        let Ok(mut written) = self.written.lock() else {
            return false;
        };
        let ours = written
            .get(&key)
            .is_some_and(|w| w.secret.resource_version().as_deref() == Some(version.as_str()));
        if ours {
            written.remove(&key);
        }
        ours
    }

    /// Forgets what this process wrote to `namespace/name` (a write failed or conflicted: the
    /// next read asks the API server).
    pub fn forget(&self, namespace: &str, name: &str) {
        if let Ok(mut written) = self.written.lock() {
            written.remove(&ObjectRef::new(name).within(namespace));
        }
    }
}

/// Forgets writes older than [`WRITTEN_TTL`]: past it the watch's copy wins anyway (`get`), and
/// a Secret written once an hour would otherwise stay here, one copy per connection.
fn prune(written: &mut HashMap<ObjectRef<Secret>, Written>, now: Instant) {
    written.retain(|_, w| now.saturating_duration_since(w.at) < WRITTEN_TTL);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::{reflector, watcher};

    fn secret(rv: &str, token: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "a", "name": "bot-zoom-token", "resourceVersion": rv},
            "stringData": {"accessToken": token},
        }))
        .expect("secret")
    }

    fn token(s: &Option<Secret>) -> String {
        s.as_ref()
            .and_then(|s| s.string_data.as_ref())
            .and_then(|d| d.get("accessToken").cloned())
            .unwrap_or_default()
    }

    #[test]
    fn own_writes_win_until_the_watch_catches_up() {
        let (reader, mut writer) = reflector::store();
        let known = KnownSecrets::new(Caches::of_connections(Vec::new()));
        // Nothing attached yet: only the API server knows.
        assert!(known.get("a", "bot-zoom-token").is_none());
        known.attach(WatchScope::All, reader);

        writer.apply_watcher_event(&watcher::Event::Apply(secret("5", "t5")));
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
        writer.apply_watcher_event(&watcher::Event::Apply(secret("6", "t6")));
        assert_eq!(
            token(&known.get("a", "bot-zoom-token").expect("known")),
            "t7"
        );
        // The watch caught up.
        writer.apply_watcher_event(&watcher::Event::Apply(secret("7", "t7")));
        assert_eq!(
            token(&known.get("a", "bot-zoom-token").expect("known")),
            "t7"
        );

        // Someone else wrote after us: theirs wins.
        known.wrote(secret("8", "t8"), Some("7".into()));
        writer.apply_watcher_event(&watcher::Event::Apply(secret("9", "t9")));
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
        let (reader, _writer) = reflector::store::<Secret>();
        // No Secret metadata cache covers "a": the API server must say.
        let known = KnownSecrets::new(Caches::of_connections(Vec::new()));
        known.attach(WatchScope::All, reader);
        assert!(known.get("a", "bot-zoom-token").is_none());
        // Created by us: known before the watch shows it.
        known.wrote(secret("3", "t3"), None);
        assert_eq!(
            token(&known.get("a", "bot-zoom-token").expect("known")),
            "t3"
        );

        // With Secret metadata: absent is known; a Secret of that name without our label
        // (someone else's) is asked for.
        let (reader, _writer) = reflector::store::<Secret>();
        let meta = crate::cache::SecretVersions::default();
        // Before the metadata watch has listed, nothing is known absent.
        meta.apply(&watcher::Event::Init);
        meta.apply(&watcher::Event::InitDone);
        let known = KnownSecrets::new(Caches::of_connections(Vec::new()).with_secrets(
            crate::cache::SecretScope::Watch(WatchScope::All),
            meta.clone(),
        ));
        known.attach(WatchScope::All, reader);
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
