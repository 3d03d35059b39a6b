//! Reading and nudging the objects tests look at: token Secrets, the leader Lease, Events,
//! the refresh annotation, and the URLs in a connection's status.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Client;
use serde::de::DeserializeOwned;
use serde_json::json;
use zoom_operator::api::ZoomConnection;

pub use super::lease::lease_holder;
use super::web::eventually;
use super::{wait_condition, Operator};

/// The message of condition `type_` of `zc`, which must have that condition.
pub fn condition_message(zc: &ZoomConnection, type_: &str) -> String {
    zc.condition(type_)
        .unwrap_or_else(|| panic!("no {type_} condition; status: {:?}", zc.status))
        .message
        .clone()
}

/// The keys of the OAuth app `id`/`s` in a credentials Secret, for `put_secret`.
pub const APP_KEYS: &[(&str, &str)] = &[("clientId", "id"), ("clientSecret", "s")];
/// The keys of the default app `default-id`/`s`.
pub const DEFAULT_APP_KEYS: &[(&str, &str)] = &[("clientId", "default-id"), ("clientSecret", "s")];

/// The ZoomConnections of one namespace, so that a wait reads as one line:
/// `zcs.wait("bot", "Ready", "True", "Ready")`.
#[derive(Clone, Copy)]
pub struct Zcs<'a> {
    pub client: &'a Client,
    pub ns: &'a str,
}

impl<'a> Zcs<'a> {
    pub fn new(client: &'a Client, ns: &'a str) -> Zcs<'a> {
        Zcs { client, ns }
    }
}

/// Waits on the connections of a namespace: a `Zcs`, or a test's `Env`.
#[allow(async_fn_in_trait)]
pub trait Connections {
    fn zcs(&self) -> Zcs<'_>;

    /// Waits for condition `type_` of connection `name` to be `status`/`reason`.
    async fn wait(&self, name: &str, type_: &str, status: &str, reason: &str) -> ZoomConnection {
        let Zcs { client, ns } = self.zcs();
        wait_condition(client, ns, name, type_, status, reason).await
    }

    async fn wait_ready(&self, name: &str) -> ZoomConnection {
        self.wait(name, "Ready", "True", "Ready").await
    }

    /// Waits for DefaultOAuth connection `name` to report that the operator has no default app.
    async fn wait_no_default_app(&self, name: &str) -> ZoomConnection {
        self.wait(name, "CredentialsReady", "False", "DefaultAppNotConfigured")
            .await
    }

    /// Waits for `status.redirectURL` of `name` to be `want`.
    async fn wait_redirect_url(&self, name: &str, want: &str) -> ZoomConnection {
        let Zcs { client, ns } = self.zcs();
        wait_redirect_url(client, ns, name, want).await
    }
}

impl Connections for Zcs<'_> {
    fn zcs(&self) -> Zcs<'_> {
        *self
    }
}

/// Connection `name`'s token Secret (`<name>-zoom-token`), if it exists.
pub async fn token_secret(client: &Client, ns: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&format!("{name}-zoom-token"))
        .await
        .expect("get token Secret")
}

/// A Secret's key as text.
pub fn secret_key(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

pub fn annotation(secret: &Secret, key: &str) -> Option<String> {
    secret.metadata.annotations.as_ref()?.get(key).cloned()
}

/// Asks for a refresh of `name` now (`zoom-operator.io/refresh-requested: value`).
pub async fn request_refresh(client: &Client, ns: &str, name: &str, value: &str) {
    Api::<ZoomConnection>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"zoom-operator.io/refresh-requested": value}}}),
            ),
        )
        .await
        .expect("annotate");
}

/// Waits until replica `op` holds the leader Lease in `ns`.
pub async fn wait_leading(client: &Client, ns: &str, op: &Operator, what: &str, within: Duration) {
    let pid = format!("-{}", op.process.child.id());
    eventually(what, within, || {
        let pid = pid.clone();
        async move {
            match lease_holder(client, ns).await {
                Some(h) if h.ends_with(&pid) => Ok(()),
                other => Err(format!("holder {other:?}")),
            }
        }
    })
    .await
}

/// The Events in `ns`.
pub async fn events(client: &Client, ns: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("events")
        .items
}

/// Waits for an Event in `ns` that `matches`.
pub async fn wait_event(
    client: &Client,
    ns: &str,
    what: &str,
    matches: impl Fn(&Event) -> bool,
) -> Event {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    wait_listed(
        &api,
        &ListParams::default(),
        what,
        Duration::from_secs(30),
        |events| {
            events.iter().find(|e| matches(e)).cloned().ok_or_else(|| {
                let reasons: Vec<_> = events.iter().map(|e| e.reason.clone()).collect();
                format!("{reasons:?}")
            })
        },
    )
    .await
}

/// Lists `api` until `check` accepts what it holds (Ok with what the test wants, or Err with
/// what it saw).
pub async fn wait_listed<K, T>(
    api: &Api<K>,
    params: &ListParams,
    what: &str,
    timeout: Duration,
    check: impl Fn(&[K]) -> Result<T, String>,
) -> T
where
    K: Clone + DeserializeOwned + Debug,
{
    let check = &check;
    eventually(what, timeout, || async move {
        let list = api.list(params).await.map_err(|e| e.to_string())?;
        check(&list.items)
    })
    .await
}

/// Waits until connection `name` satisfies `check` (Ok with what the test wants, or Err with
/// what it saw).
pub async fn wait_zc<T>(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    within: Duration,
    check: impl Fn(ZoomConnection) -> Result<T, String>,
) -> T {
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), ns);
    eventually(what, within, || {
        let api = api.clone();
        let check = &check;
        async move { check(api.get(name).await.map_err(|e| e.to_string())?) }
    })
    .await
}

/// Waits for `status.authorizeURL` of `name`.
pub async fn wait_authorize_url(client: &Client, ns: &str, name: &str) -> String {
    wait_zc(
        client,
        ns,
        name,
        "status.authorizeURL",
        Duration::from_secs(60),
        |zc| {
            zc.status
                .and_then(|s| s.authorize_url)
                .ok_or_else(|| "no authorizeURL yet".to_owned())
        },
    )
    .await
}

/// Waits for `status.redirectURL` of `name` to be `want`.
pub async fn wait_redirect_url(
    client: &Client,
    ns: &str,
    name: &str,
    want: &str,
) -> ZoomConnection {
    let what = format!("{ns}/{name} redirectURL {want}");
    wait_zc(client, ns, name, &what, Duration::from_secs(60), |zc| {
        let got = zc.status.as_ref().and_then(|s| s.redirect_url.clone());
        if got.as_deref() == Some(want) {
            Ok(zc)
        } else {
            Err(format!(
                "redirectURL {got:?}, URLsReady {:?}",
                zc.condition("URLsReady")
            ))
        }
    })
    .await
}

/// Waits until condition `type_` of `name` has a message that `matches`; returns the message.
pub async fn wait_message(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    what: &str,
    matches: impl Fn(&Condition) -> bool,
) -> String {
    wait_zc(client, ns, name, what, Duration::from_secs(90), |zc| {
        let c = zc
            .condition(type_)
            .ok_or_else(|| format!("no {type_} condition"))?;
        if matches(c) {
            Ok(c.message.clone())
        } else {
            Err(format!("{}/{}: {}", c.status, c.reason, c.message))
        }
    })
    .await
}

/// The operator's state-signing key, from its Secret in `ns`.
pub async fn signing_key(client: &Client, ns: &str) -> zoom_operator::signing::SigningKey {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get("zoom-operator-signing-key")
        .await
        .expect("signing key Secret");
    zoom_operator::signing::SigningKey::new(secret.data.expect("data")["key"].0.clone())
}
