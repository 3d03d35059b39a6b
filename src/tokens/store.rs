//! The one writer of token Secrets. Every write applies a transition (`super::transition`)
//! to the current record and is a compare-and-swap on `resourceVersion`, retried on conflict,
//! so replicas (the controller, an OAuth callback, a webhook) never overwrite each other's
//! rotation of the refresh token. The first attempt starts from what this process already
//! knows (`KnownSecrets`: the lease holder's watch and its own writes); a conflict reads the
//! API server.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::Client;

use super::secret::{build_secret, ownership, read_record, Ownership, TokenRecord};
use crate::api::ZoomConnection;

use super::{Change, KnownSecrets};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Secret {0} exists and is not owned by this ZoomConnection")]
    NotOwned(String),
    #[error("kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error("gave up after repeated write conflicts on Secret {0}")]
    Contended(String),
    #[error("the refresh task failed: {0}")]
    Task(String),
}

pub struct TokenStore {
    api: Api<Secret>,
    namespace: String,
    known: Option<Arc<KnownSecrets>>,
}

/// Where an update's first attempt starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// What this process knows, when it knows it.
    Known,
    /// The API server, always (judging a rejected refresh token, api.md section 7).
    Fresh,
}

impl TokenStore {
    pub fn new(client: Client, namespace: &str) -> Self {
        TokenStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            known: None,
        }
    }

    /// The store of `zc`'s token Secret (in `zc`'s namespace).
    pub fn for_connection(client: Client, zc: &ZoomConnection) -> Self {
        Self::new(client, zc.metadata.namespace.as_deref().unwrap_or_default())
    }

    /// Reads and remembers through `known`.
    pub fn with_known(mut self, known: Arc<KnownSecrets>) -> Self {
        self.known = Some(known);
        self
    }

    /// The Secret `name` as known, else as the API server has it.
    async fn current(&self, name: &str, base: Base) -> Result<Option<Secret>, kube::Error> {
        let known = match (&self.known, base) {
            (Some(known), Base::Known) => known.get(&self.namespace, name),
            _ => None,
        };
        match known {
            Some(secret) => Ok(secret),
            None => self.api.get_opt(name).await,
        }
    }

    fn forget(&self, name: &str) {
        if let Some(known) = &self.known {
            known.forget(&self.namespace, name);
        }
    }

    /// Reads the token Secret as this process knows it, else from the API server.
    pub async fn read(&self, zc: &ZoomConnection) -> Result<(Ownership, TokenRecord), kube::Error> {
        let secret = self.current(&zc.token_secret_name(), Base::Known).await?;
        let owner = ownership(zc, secret.as_ref());
        let record = match (&owner, &secret) {
            (Ownership::Ours, Some(s)) => read_record(s),
            _ => TokenRecord::default(),
        };
        Ok((owner, record))
    }

    /// Applies `mutate` to the current record and writes the result, retrying on conflicts.
    /// Returns the record as written (or as found, for `Change::Keep`).
    pub async fn update<E>(
        &self,
        zc: &ZoomConnection,
        mutate: impl FnMut(&mut TokenRecord) -> Result<Change, E>,
    ) -> Result<Result<TokenRecord, E>, StoreError> {
        self.update_from(Base::Known, zc, mutate).await
    }

    /// [`Self::update`], its first attempt starting from `base`.
    pub async fn update_from<E>(
        &self,
        mut base: Base,
        zc: &ZoomConnection,
        mut mutate: impl FnMut(&mut TokenRecord) -> Result<Change, E>,
    ) -> Result<Result<TokenRecord, E>, StoreError> {
        // Generous: losing a freshly rotated refresh token would break the grant, so a
        // flaky API server gets several seconds before we give up.
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(9)
            .build();
        loop {
            if let Some(done) = self.try_update(base, zc, &mut mutate).await? {
                return Ok(done);
            }
            // What we knew was stale: from now on, ask the API server.
            self.forget(&zc.token_secret_name());
            base = Base::Fresh;
            let Some(delay) = delays.next() else {
                return Err(StoreError::Contended(format!(
                    "{}/{}",
                    zc.metadata.namespace.as_deref().unwrap_or_default(),
                    zc.token_secret_name()
                )));
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// One read, transition and compare-and-swap write. None: try again (a conflict, or an
    /// API server error worth retrying).
    async fn try_update<E>(
        &self,
        base: Base,
        zc: &ZoomConnection,
        mutate: &mut impl FnMut(&mut TokenRecord) -> Result<Change, E>,
    ) -> Result<Option<Result<TokenRecord, E>>, StoreError> {
        let name = zc.token_secret_name();
        let current = match self.current(&name, base).await {
            Ok(current) => current,
            Err(e) if is_transient(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if ownership(zc, current.as_ref()) == Ownership::Foreign {
            return Err(StoreError::NotOwned(format!(
                "{}/{name}",
                zc.metadata.namespace.as_deref().unwrap_or_default()
            )));
        }
        let mut record = current.as_ref().map(read_record).unwrap_or_default();
        match mutate(&mut record) {
            Err(e) => return Ok(Some(Err(e))),
            Ok(Change::Keep) => return Ok(Some(Ok(record))),
            Ok(Change::Write) => {}
        }
        let mut desired = build_secret(zc, &record, crate::clock::now());
        let replaced = current
            .as_ref()
            .and_then(|c| c.metadata.resource_version.clone());
        let result = match current {
            None => self.api.create(&PostParams::default(), &desired).await,
            Some(current) => {
                // Keep what other tools put on the Secret (reloader hashes, backups).
                merge_foreign_metadata(&mut desired, &current);
                desired.metadata.resource_version = current.metadata.resource_version;
                self.api
                    .replace(&name, &PostParams::default(), &desired)
                    .await
            }
        };
        match result {
            Ok(written) => {
                if let Some(known) = &self.known {
                    known.wrote(written, replaced);
                }
                Ok(Some(Ok(record)))
            }
            // 409: someone wrote first (or created it first); 404: it was deleted since.
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => Ok(None),
            Err(e) if is_transient(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn merge_foreign_metadata(desired: &mut Secret, current: &Secret) {
    use super::secret::annotations::ALL;
    if let (Some(want), Some(have)) = (
        desired.metadata.annotations.as_mut(),
        current.metadata.annotations.as_ref(),
    ) {
        for (k, v) in have {
            if !ALL.contains(&k.as_str()) && !k.starts_with("zoom-operator.io/") {
                want.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    if let (Some(want), Some(have)) = (
        desired.metadata.labels.as_mut(),
        current.metadata.labels.as_ref(),
    ) {
        for (k, v) in have {
            want.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}
