//! What every reconcile and every HTTP handler shares: clients, configuration, the signing key,
//! the current public URLs, and the in-memory backoff of failed renewals.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::recorder::Recorder;
use jiff::Timestamp;
use kube::Client;
use tokio::sync::watch;

use crate::api::ZoomConnection;
use crate::config::OperatorConfig;
use crate::credentials;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::signing::SigningKey;
use crate::tokens::{PendingGrant, TokenStore};
use crate::urls::{PublicUrls, UrlProblem};
use crate::zoom::client::ZoomClient;

pub use crate::urls::UrlState;

/// When a failed renewal may be tried again, remembered per connection UID.
#[derive(Clone, Debug)]
pub struct RetryState {
    pub not_before: Timestamp,
    /// resourceVersion of the credentials Secret at the time of the failure.
    pub credentials_version: Option<String>,
}

/// Shared by every reconcile and by the HTTP servers.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub config: OperatorConfig,
    pub zoom: ZoomClient,
    pub signing: SigningKey,
    pub urls: watch::Receiver<UrlState>,
    pub retries: Mutex<HashMap<String, RetryState>>,
    /// When each connection (by UID) was last renewed on request, for the forced-refresh rate
    /// limit. In memory on purpose: the token Secret's annotations are tenant-writable.
    pub forced_refreshes: Mutex<HashMap<String, Timestamp>>,
    /// The shared caches of connections and Secret metadata (`crate::cache`).
    pub caches: crate::cache::Caches,
    /// App Secrets read, by reference: kept until the metadata cache shows another version.
    pub app_secrets: super::app_secrets::AppSecrets,
    /// The last status write per connection UID, until the cache shows it.
    pub applied: Mutex<HashMap<String, OwnWrite>>,
    /// Token Secrets as known without a request (the lease holder's watch, its own writes).
    pub tokens: Arc<crate::tokens::KnownSecrets>,
    /// Whether this replica leads; checked right before a refresh token is sent.
    pub leadership: Leadership,
    /// Grants Zoom issued whose write to the token Secret failed, by connection UID. Kept
    /// until stored (api.md section 4): nothing else holds them.
    pub pending: Mutex<HashMap<String, PendingGrant>>,
    /// The last failed read of each OAuth connection's Zoom account, by UID (see
    /// `account.rs`); gone once the account is known or the connection is deleted.
    pub account_reads: Mutex<HashMap<String, super::account::AccountRead>>,
    /// The webhook path's services; the controller reads its stored events and, on the
    /// leader, runs their redelivery.
    pub webhooks: Arc<crate::webhooks::Services>,
    /// Connections to reconcile because of another one (a shared grant found); each
    /// controller subscribes.
    pub nudges: tokio::sync::broadcast::Sender<kube::runtime::reflector::ObjectRef<ZoomConnection>>,
}

impl Context {
    pub fn token_store(&self, zc: &ZoomConnection) -> TokenStore {
        TokenStore::for_connection(self.client.clone(), zc).with_known(self.tokens.clone())
    }

    pub fn current_urls(&self) -> Result<PublicUrls, UrlProblem> {
        crate::urls::current(&self.urls)
    }

    /// The credentials a connection uses: its own Secret, or the operator-wide default app.
    /// Read once per resourceVersion the Secret metadata cache shows; a Secret the cache knows
    /// to be absent is not asked for.
    pub async fn app_credentials(
        &self,
        zc: &ZoomConnection,
    ) -> Result<credentials::AppRead, kube::Error> {
        let default_app = self.config.default_app_secret.as_ref();
        let Ok((secret_ref, _)) = credentials::app_secret(zc, default_app) else {
            return Ok(credentials::app_from(zc, default_app, None));
        };
        let version = match self.caches.secret_version(&secret_ref) {
            Some(None) => {
                self.app_secrets.forget(&secret_ref);
                return Ok(credentials::app_from(zc, default_app, None));
            }
            Some(Some(version)) => Some(version),
            None => None,
        };
        let secret = self
            .app_secrets
            .read(&self.client, &secret_ref, version.as_deref())
            .await?;
        Ok(credentials::app_from(zc, default_app, secret.as_deref()))
    }

    /// Whether the cache still shows `zc` as it was before this process's last status write
    /// to it (a pass now would work from the old status). For a few seconds at most: a cache
    /// that shows nothing newer by then is not waited for.
    pub(super) fn behind_own_write(&self, zc: &ZoomConnection) -> bool {
        let (Some(uid), Some(version)) = (
            zc.metadata.uid.as_deref(),
            zc.metadata.resource_version.as_deref(),
        ) else {
            return false;
        };
        let Ok(mut applied) = self.applied.lock() else {
            return false;
        };
        match applied.get(uid) {
            Some(w) if w.over == version => w.at.elapsed() < OWN_WRITE_WAIT,
            Some(_) => {
                applied.remove(uid);
                false
            }
            None => false,
        }
    }

    /// Records a status write that moved `zc` from `over` to another resourceVersion.
    pub(super) fn applied(&self, uid: &str, over: &str) {
        if let Ok(mut applied) = self.applied.lock() {
            // Entries past the wait mean nothing (`behind_own_write`): without this the map
            // would keep one per connection until its next pass, an hour later.
            applied.retain(|_, w| w.at.elapsed() < OWN_WRITE_WAIT);
            applied.insert(
                uid.to_owned(),
                OwnWrite {
                    over: over.to_owned(),
                    at: std::time::Instant::now(),
                },
            );
        }
    }

    pub(super) fn forget_applied(&self, uid: &str) {
        if let Ok(mut applied) = self.applied.lock() {
            applied.remove(uid);
        }
    }
}

/// A status write this process made: the resourceVersion it replaced, and when.
#[derive(Debug)]
pub struct OwnWrite {
    over: String,
    at: std::time::Instant,
}

/// How long a pass waits for the cache to show this process's own status write.
const OWN_WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Context {
    pub(super) fn retry_state(&self, uid: &str) -> Option<RetryState> {
        self.retries.lock().ok()?.get(uid).cloned()
    }

    pub(super) fn last_forced_refresh(&self, uid: &str) -> Option<Timestamp> {
        self.forced_refreshes.lock().ok()?.get(uid).copied()
    }

    pub(super) fn note_forced_refresh(&self, uid: &str, at: Timestamp) {
        if let Ok(mut map) = self.forced_refreshes.lock() {
            // Only entries still inside the interval matter: the map stays as small as the
            // number of connections forced in the last minute, deleted ones included.
            let horizon = at
                .checked_sub(super::schedule::FORCED_REFRESH_INTERVAL)
                .unwrap_or(Timestamp::MIN);
            map.retain(|_, last| *last > horizon);
            map.insert(uid.to_owned(), at);
        }
    }

    pub(super) fn account_read(&self, uid: &str) -> Option<super::account::AccountRead> {
        self.account_reads.lock().ok()?.get(uid).cloned()
    }

    pub(super) fn set_account_read(&self, uid: &str, read: Option<super::account::AccountRead>) {
        if let Ok(mut map) = self.account_reads.lock() {
            match read {
                Some(r) => map.insert(uid.to_owned(), r),
                None => map.remove(uid),
            };
        }
    }

    pub(super) fn pending_grant(&self, uid: &str) -> Option<PendingGrant> {
        self.pending.lock().ok()?.get(uid).cloned()
    }

    pub(super) fn set_pending_grant(&self, uid: &str, pending: Option<PendingGrant>) {
        if let Ok(mut map) = self.pending.lock() {
            match pending {
                Some(p) => map.insert(uid.to_owned(), p),
                None => map.remove(uid),
            };
        }
    }

    pub(super) fn set_retry_state(&self, uid: &str, state: Option<RetryState>) {
        if let Ok(mut map) = self.retries.lock() {
            match state {
                Some(s) => map.insert(uid.to_owned(), s),
                None => map.remove(uid),
            };
        }
    }
}
