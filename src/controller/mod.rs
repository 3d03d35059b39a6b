//! The reconcile loop for `ZoomConnection`s.
//!
//! One pass reads top to bottom: validate the spec, dereference (credentials Secret, token
//! Secret, public URLs), renew the token if it is due, build the status (pure), apply it, and
//! publish Events for conditions that changed. Only the lease holder runs this loop.

pub mod renew;
pub mod schedule;
pub mod status;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{AuthType, CredentialsRef, ZoomConnection, FINALIZER, MANAGED_BY_LABEL};
use crate::conditions::{self, Verdict};
use crate::config::OperatorConfig;
use crate::credentials::{self, AppCredentials, CredentialsProblem};
use crate::duration::parse_go_duration;
use crate::metrics::{Metrics, ResultLabels};
use crate::signing::{SigningKey, TICKET_LIFETIME_SECS};
use crate::token_secret::Ownership;
use crate::urls::{derive_public_urls, PublicUrls, UrlProblem, UrlSource};
use crate::zoom::client::ZoomClient;

use schedule::{TokenDecision, TokenInputs};
use store::TokenStore;

pub type UrlState = Option<Result<PublicUrls, UrlProblem>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API error: {0}")]
    KubeError(#[from] kube::Error),
    #[error("token Secret: {0}")]
    TokenSecretError(#[from] store::StoreError),
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::KubeError(_) => "kube_error",
            Error::TokenSecretError(_) => "token_secret_error",
            Error::MissingObjectKey(_) => "missing_object_key",
        }
    }
}

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
    /// The controller's cache, while this replica leads (for scrape-time metrics).
    pub connections: Arc<std::sync::RwLock<Option<Store<ZoomConnection>>>>,
}

impl Context {
    pub fn token_store(&self, zc: &ZoomConnection) -> TokenStore {
        TokenStore::new(
            self.client.clone(),
            zc.metadata.namespace.as_deref().unwrap_or_default(),
        )
    }

    pub fn current_urls(&self) -> Result<PublicUrls, UrlProblem> {
        match &*self.urls.borrow() {
            Some(state) => state.clone(),
            None => Err(UrlProblem::Unconfigured),
        }
    }

    /// The credentials a connection uses: its own Secret, or the operator-wide default app.
    /// Returns the Secret's display name and resourceVersion too.
    pub async fn app_credentials(
        &self,
        zc: &ZoomConnection,
    ) -> Result<
        (
            Result<AppCredentials, CredentialsProblem>,
            String,
            Option<String>,
        ),
        kube::Error,
    > {
        let ns = zc.metadata.namespace.as_deref().unwrap_or_default();
        match (zc.spec.auth_type, &zc.spec.credentials_ref) {
            (AuthType::DefaultOAuth, _) => {
                let Some((dns, dname)) = &self.config.default_app_secret else {
                    return Ok((
                        Err(CredentialsProblem::DefaultAppNotConfigured),
                        "(none)".to_owned(),
                        None,
                    ));
                };
                let secret = Api::<Secret>::namespaced(self.client.clone(), dns)
                    .get_opt(dname)
                    .await?;
                let version = secret
                    .as_ref()
                    .and_then(|s| s.metadata.resource_version.clone());
                let reference = CredentialsRef::with_name(dname.clone());
                let creds = credentials::from_secret(
                    dns,
                    &reference,
                    AuthType::DefaultOAuth,
                    secret.as_ref(),
                )
                .map_err(|p| CredentialsProblem::DefaultAppUnavailable(Box::new(p)));
                Ok((creds, format!("{dns}/{dname}"), version))
            }
            (auth_type, Some(reference)) => {
                let secret = Api::<Secret>::namespaced(self.client.clone(), ns)
                    .get_opt(&reference.name)
                    .await?;
                let version = secret
                    .as_ref()
                    .and_then(|s| s.metadata.resource_version.clone());
                let creds = credentials::from_secret(ns, reference, auth_type, secret.as_ref());
                Ok((creds, format!("{ns}/{}", reference.name), version))
            }
            // Rejected by the CRD schema; kept as a clear condition for older API servers.
            (_, None) => Ok((
                Err(CredentialsProblem::SecretNotFound {
                    namespace: ns.to_owned(),
                    name: "(spec.credentialsRef is not set)".to_owned(),
                }),
                "(none)".to_owned(),
                None,
            )),
        }
    }
}

/// Problems the schema cannot catch on every API server version.
pub fn validate(zc: &ZoomConnection) -> Result<Duration, String> {
    let refresh_before = parse_go_duration(&zc.spec.refresh_before)
        .map_err(|e| format!("spec.refreshBefore: {e}"))?;
    match (zc.spec.auth_type, &zc.spec.credentials_ref) {
        (AuthType::DefaultOAuth, Some(_)) => {
            return Err("spec.credentialsRef must not be set for authType DefaultOAuth: the operator-wide default app is used".to_owned())
        }
        (AuthType::PrivateOAuth | AuthType::ServerToServer, None) => {
            return Err(format!(
                "spec.credentialsRef is required for authType {}",
                zc.spec.auth_type
            ))
        }
        _ => {}
    }
    if let Some(sink) = zc.spec.events.as_ref().map(|e| &e.sink) {
        if sink.uri.is_some() == sink.service_ref.is_some() {
            return Err("spec.events.sink must set exactly one of uri or ref".to_owned());
        }
    }
    Ok(refresh_before)
}

async fn reconcile(zc: Arc<ZoomConnection>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(&zc, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    let label = match &result {
        Ok(_) => "ok",
        Err(e) => e.metric_label(),
    };
    ctx.metrics
        .reconciliations
        .get_or_create(&ResultLabels {
            result: label.to_owned(),
        })
        .inc();
    result
}

async fn reconcile_inner(zc: &ZoomConnection, ctx: &Context) -> Result<Action, Error> {
    let ns = zc.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let uid = zc.uid().ok_or(Error::MissingObjectKey("uid"))?;
    let api: Api<ZoomConnection> = Api::namespaced(ctx.client.clone(), &ns);

    if zc.metadata.deletion_timestamp.is_some() {
        return cleanup(zc, ctx, &api).await;
    }
    ensure_finalizer(zc, &api).await?;

    let validated = validate(zc);
    let (credentials, credentials_secret, credentials_version) = ctx.app_credentials(zc).await?;
    let store = ctx.token_store(zc);
    let (mut ownership, mut record) = store.read(zc).await?;
    let urls = ctx.current_urls();
    let now = Timestamp::now();
    let jitter_seed = schedule::seed(&uid);

    // Renew the token when it is due.
    let mut retry_at = ctx.retry_state(&uid).map(|r| r.not_before);
    let mut next_check = None;
    if let (Ok(refresh_before), Ok(app), Ownership::Ours | Ownership::Absent) =
        (&validated, &credentials, &ownership)
    {
        let retry = ctx.retry_state(&uid);
        let requested = zc
            .annotations()
            .get(crate::api::REFRESH_REQUESTED_ANNOTATION)
            .map(String::as_str);
        let decision = schedule::decide(&TokenInputs {
            auth_type: zc.spec.auth_type,
            record: &record,
            refresh_before: *refresh_before,
            now,
            requested,
            retry_not_before: retry.as_ref().map(|r| r.not_before),
            credentials_changed: retry
                .as_ref()
                .is_none_or(|r| r.credentials_version != credentials_version),
            jitter_seed,
        });
        match decision {
            TokenDecision::Idle { next_check: at } => next_check = at,
            TokenDecision::BackOff { until } => next_check = Some(until),
            TokenDecision::Renew(reason) => {
                tracing::info!(connection = %format!("{ns}/{}", zc.name_any()), reason = reason.as_str(), "renewing token");
                let outcome = renew::renew(ctx, zc, app, &record).await?;
                (ownership, record) = store.read(zc).await?;
                match outcome {
                    renew::Renewal::Failed { retry_after } => {
                        let delay = schedule::backoff(
                            record.failed_refresh_attempts.max(1),
                            retry_after,
                            jitter_seed,
                        );
                        let until = Timestamp::now()
                            .checked_add(jiff::SignedDuration::try_from(delay).unwrap_or_default())
                            .unwrap_or(now);
                        ctx.set_retry_state(
                            &uid,
                            Some(RetryState {
                                not_before: until,
                                credentials_version: credentials_version.clone(),
                            }),
                        );
                        retry_at = Some(until);
                        next_check = Some(until);
                    }
                    _ => {
                        ctx.set_retry_state(&uid, None);
                        retry_at = None;
                        next_check = schedule::renew_at(&record, *refresh_before, jitter_seed);
                    }
                }
            }
        }
    }
    let next_refresh = match (&validated, zc.spec.auth_type) {
        (Ok(rb), _) if record.grant.is_some() && record.grant_problem.is_none() => {
            schedule::renew_at(&record, *rb, jitter_seed).map(|t| t.max(retry_at.unwrap_or(t)))
        }
        _ => None,
    };

    let authorize_url = authorize_url(zc, ctx, &urls, now);
    let events = events_verdict(zc, ctx, &credentials, &record);
    let observation = status::Observation {
        zc,
        now,
        spec_problem: validated.as_ref().err().cloned(),
        credentials: &credentials,
        credentials_secret,
        token_secret: ownership,
        record: &record,
        urls: &urls,
        authorize_url,
        next_refresh,
        retry_at,
        events,
    };
    let new_status = status::build(&observation);
    let old_conditions = zc
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let changed = zc.status.as_ref().is_none_or(|old| {
        let mut comparable = old.clone();
        comparable.last_event_time = None;
        comparable != new_status
    });
    if changed {
        let patch = json!({
            "apiVersion": "zoom-operator.io/v1alpha1",
            "kind": "ZoomConnection",
            "status": new_status,
        });
        api.patch_status(
            &zc.name_any(),
            &PatchParams::apply(crate::api::MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        publish_transitions(ctx, zc, &old_conditions, &new_status.conditions).await;
    }

    // Look again when a renewal or the ticket is due, and at least every 10 minutes so that
    // expiry shows in status even when nothing else happens.
    let now = Timestamp::now();
    let wait = [
        next_check,
        ticket_renewal_at(zc),
        record.grant.as_ref().map(|g| g.expires_at),
    ]
    .into_iter()
    .flatten()
    .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default())
    .fold(Duration::from_secs(600), Duration::min)
    // Never spin: a moment in the past still waits half a second.
    .max(Duration::from_millis(500));
    Ok(Action::requeue(wait))
}

impl Context {
    fn retry_state(&self, uid: &str) -> Option<RetryState> {
        self.retries.lock().ok()?.get(uid).cloned()
    }

    fn set_retry_state(&self, uid: &str, state: Option<RetryState>) {
        if let Ok(mut map) = self.retries.lock() {
            match state {
                Some(s) => map.insert(uid.to_owned(), s),
                None => map.remove(uid),
            };
        }
    }
}

/// The "Start OAuth Flow" link: kept while its ticket has more than half its life left, so the
/// status does not change on every pass; re-issued otherwise.
fn authorize_url(
    zc: &ZoomConnection,
    ctx: &Context,
    urls: &Result<PublicUrls, UrlProblem>,
    now: Timestamp,
) -> Option<String> {
    if !zc.spec.auth_type.is_oauth() {
        return None;
    }
    let urls = urls.as_ref().ok()?;
    let ns = zc.metadata.namespace.as_deref()?;
    let name = zc.metadata.name.as_deref()?;
    let uid = zc.metadata.uid.as_deref()?;
    let existing = zc.status.as_ref().and_then(|s| s.authorize_url.clone());
    if let Some(existing) = existing {
        let keep = url::Url::parse(&existing).ok().and_then(|u| {
            let ticket = u.query_pairs().find(|(k, _)| k == "ticket")?.1.into_owned();
            let claims = ctx.signing.verify_ticket(&ticket, now).ok()?;
            let fresh = claims.exp - now.as_second() > TICKET_LIFETIME_SECS / 2;
            let same = claims.uid == uid && existing == urls.authorize_url(ns, name, &ticket);
            (fresh && same).then_some(existing.clone())
        });
        if keep.is_some() {
            return keep;
        }
    }
    let (ticket, _) = ctx.signing.issue_ticket(ns, name, uid, now);
    Some(urls.authorize_url(ns, name, &ticket))
}

fn ticket_renewal_at(zc: &ZoomConnection) -> Option<Timestamp> {
    let url = url::Url::parse(zc.status.as_ref()?.authorize_url.as_deref()?).ok()?;
    let ticket = url
        .query_pairs()
        .find(|(k, _)| k == "ticket")?
        .1
        .into_owned();
    let payload = ticket.split('.').next()?;
    use base64::Engine;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: crate::signing::Claims = serde_json::from_slice(&json).ok()?;
    Timestamp::from_second(claims.exp - TICKET_LIFETIME_SECS / 2).ok()
}

/// `EventsReady`, present only when events can apply: a sink is configured or the app has a
/// webhook secret token. Sink health comes from the token Secret, where the webhook path
/// (on any replica) records it.
fn events_verdict(
    zc: &ZoomConnection,
    ctx: &Context,
    creds: &Result<AppCredentials, CredentialsProblem>,
    record: &crate::token_secret::TokenRecord,
) -> Option<Verdict> {
    let has_token = creds.as_ref().is_ok_and(|c| c.secret_token.is_some());
    let sink = zc.spec.events.as_ref().map(|e| &e.sink);
    if sink.is_none() && !has_token {
        return None;
    }
    if creds.is_ok() && !has_token {
        let key = zc
            .spec
            .credentials_ref
            .as_ref()
            .map(|r| r.secret_token_key.clone())
            .unwrap_or_else(|| "secretToken".to_owned());
        return Some(Verdict::failed(
            conditions::EVENTS_READY,
            "SecretTokenMissing",
            format!("spec.events is set but the credentials Secret has no key {key}; add the app's webhook secret token to receive events"),
        ));
    }
    if let Some(sink) = sink {
        let ns = zc.metadata.namespace.as_deref().unwrap_or_default();
        let url = match crate::sink::resolve(sink, ns, &ctx.config.allow_sink_hosts) {
            Ok(url) => url,
            Err(problem) => {
                return Some(Verdict::failed(
                    conditions::EVENTS_READY,
                    "SinkNotAllowed",
                    problem.0,
                ))
            }
        };
        // Only a failure of the sink that is configured now counts: after a spec fix the old
        // sink's failure is history.
        let shown = crate::webhooks::forward::display_sink(&url);
        if let Some((failed_sink, why)) = record.sink_problem.as_ref().filter(|(s, _)| *s == shown)
        {
            return Some(Verdict::failed(
                conditions::EVENTS_READY,
                "SinkUnreachable",
                format!(
                    "Forwarding a Zoom event to {failed_sink} failed: {why}. Zoom was answered 503 and retries for a while; make sure the sink runs and answers 2xx within {:.1}s. This clears with the next event the sink accepts",
                    crate::webhooks::ZOOM_DEADLINE.as_secs_f64()
                ),
            ));
        }
        return Some(Verdict::ok(
            conditions::EVENTS_READY,
            "Ready",
            "Verified events are forwarded to the sink",
        ));
    }
    Some(Verdict::ok(
        conditions::EVENTS_READY,
        "Ready",
        "Verified events are received (no sink configured)",
    ))
}

async fn publish_transitions(
    ctx: &Context,
    zc: &ZoomConnection,
    old: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    new: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) {
    let reference = zc.object_ref(&());
    for t in conditions::transitions(old, new) {
        // Ready carries the same reason as the condition that caused it: one Event is enough,
        // except for the Ready=True moment itself.
        if t.type_ == conditions::READY && t.status != "True" {
            continue;
        }
        let event = KubeEvent {
            type_: if t.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: t.reason.clone(),
            note: Some(format!("{}={}: {}", t.type_, t.status, t.message)),
            action: t.type_.clone(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "could not publish event");
        }
    }
}

async fn ensure_finalizer(
    zc: &ZoomConnection,
    api: &Api<ZoomConnection>,
) -> Result<(), kube::Error> {
    let has = zc.finalizers().iter().any(|f| f == FINALIZER);
    let want = zc.spec.revoke_on_delete;
    if has == want {
        return Ok(());
    }
    let finalizers: Vec<String> = zc
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .chain(want.then(|| FINALIZER.to_owned()))
        .collect();
    // A merge patch guarded by resourceVersion, so a concurrent edit of finalizers is not lost.
    let patch = json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": zc.resource_version()}
    });
    api.patch(
        &zc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

const REVOKE_ATTEMPTS: u32 = 5;

/// Deletion with `revokeOnDelete`: revoke the grant at Zoom, with bounded retries, then let go.
async fn cleanup(
    zc: &ZoomConnection,
    ctx: &Context,
    api: &Api<ZoomConnection>,
) -> Result<Action, Error> {
    if !zc.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let uid = zc.uid().unwrap_or_default();
    let (creds, _, _) = ctx.app_credentials(zc).await?;
    let (_, record) = ctx.token_store(zc).read(zc).await?;
    let token = record.grant.as_ref().and_then(|g| {
        g.refresh_token
            .clone()
            .or_else(|| Some(g.access_token.clone()))
    });
    let reference = zc.object_ref(&());
    let mut failure = None;
    if let (Ok(app), Some(token)) = (&creds, token) {
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=REVOKE_ATTEMPTS {
            match ctx.zoom.revoke(app, &token).await {
                Ok(()) => {
                    failure = None;
                    break;
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "revoke failed");
                    failure = Some(e.to_string());
                    if matches!(e, crate::zoom::client::ZoomError::Rejected { .. }) {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    } else if let Err(problem) = &creds {
        failure = Some(problem.message());
    }
    let event = match &failure {
        None => KubeEvent {
            type_: EventType::Normal,
            reason: "Revoked".to_owned(),
            note: Some("The grant was revoked at Zoom".to_owned()),
            action: "Revoke".to_owned(),
            secondary: None,
        },
        Some(why) => KubeEvent {
            type_: EventType::Warning,
            reason: "RevokeFailed".to_owned(),
            note: Some(format!(
                "Could not revoke the grant at Zoom ({why}); removing the finalizer anyway so deletion does not hang. Remove the app in the Zoom Marketplace to revoke it by hand"
            )),
            action: "Revoke".to_owned(),
            secondary: None,
        },
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(error = %e, "could not publish event");
    }
    let finalizers: Vec<String> = zc
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": zc.resource_version()}});
    api.patch(
        &zc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.set_retry_state(&uid, None);
    Ok(Action::await_change())
}

fn error_policy(zc: Arc<ZoomConnection>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(connection = %format!("{}/{}", zc.namespace().unwrap_or_default(), zc.name_any()), error = %error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Watches the `--ingress` Ingress and publishes the derived public URLs.
pub async fn watch_public_urls(
    client: Client,
    source: UrlSource,
    tx: watch::Sender<UrlState>,
    shutdown: CancellationToken,
) {
    let UrlSource::Ingress { namespace, name } = &source else {
        let _ = tx.send(Some(derive_public_urls(&source, None)));
        return;
    };
    let api: Api<Ingress> = Api::namespaced(client, namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, cfg).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut current: Option<Ingress> = None;
    let mut init: Option<Ingress> = None;
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = stream.next() => e,
        };
        let Some(event) = event else { return };
        match event {
            Ok(watcher::Event::Apply(ing)) => current = Some(ing),
            Ok(watcher::Event::Delete(_)) => current = None,
            Ok(watcher::Event::Init) => init = None,
            Ok(watcher::Event::InitApply(ing)) => init = Some(ing),
            Ok(watcher::Event::InitDone) => current = init.take(),
            Err(e) => {
                tracing::warn!(error = %e, "watching the Ingress failed; retrying");
                continue;
            }
        }
        let derived = Some(derive_public_urls(&source, current.as_ref()));
        tx.send_if_modified(|old| {
            if *old == derived {
                false
            } else {
                *old = derived.clone();
                true
            }
        });
    }
}

/// Runs the controller until `shutdown` fires. Called by the lease holder.
pub async fn run_controller(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let namespaces = &ctx.config.watch_namespaces;
    // One namespace: watch just it (RBAC can then be a Role). Several: watch all and skip
    // the others in reconcile, rather than running one cache per namespace.
    let (zcs, secrets): (Api<ZoomConnection>, Api<Secret>) = match namespaces.as_slice() {
        [ns] => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        _ => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let watch_cfg = watcher::Config::default();
    let controller = Controller::new(zcs, watch_cfg.clone());
    let store: Store<ZoomConnection> = controller.store();
    if let Ok(mut slot) = ctx.connections.write() {
        *slot = Some(store.clone());
    }

    // Credentials Secrets: metadata only, so the contents of Secrets we do not manage are never
    // cached; a change re-reconciles the connections that reference the Secret by name.
    let mapper_store = store.clone();
    let default_app = ctx.config.default_app_secret.clone();
    let secret_meta: Api<PartialObjectMeta<Secret>> = match namespaces.as_slice() {
        [ns] => Api::namespaced(client.clone(), ns),
        _ => Api::all(client.clone()),
    };
    let credential_changes = watcher(secret_meta, watch_cfg.clone())
        .default_backoff()
        .touched_objects()
        .predicate_filter(
            kube::runtime::predicates::resource_version,
            Default::default(),
        );
    let token_secrets = watcher(
        secrets,
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}=zoom-operator")),
    )
    .default_backoff()
    .touched_objects()
    .predicate_filter(
        kube::runtime::predicates::resource_version,
        Default::default(),
    );

    let url_changes =
        tokio_stream::wrappers::WatchStream::from_changes(ctx.urls.clone()).map(|_| ());
    let allowed: Vec<String> = namespaces.clone();
    controller
        .owns_stream(token_secrets)
        .watches_stream(credential_changes, move |secret| {
            let ns = secret.metadata.namespace.clone().unwrap_or_default();
            let name = secret.metadata.name.clone().unwrap_or_default();
            let is_default_app = default_app
                .as_ref()
                .is_some_and(|(dns, dname)| *dns == ns && *dname == name);
            mapper_store
                .state()
                .into_iter()
                .filter(|zc| {
                    if is_default_app && zc.spec.auth_type == AuthType::DefaultOAuth {
                        return true;
                    }
                    zc.metadata.namespace.as_deref() == Some(ns.as_str())
                        && zc
                            .spec
                            .credentials_ref
                            .as_ref()
                            .is_some_and(|r| r.name == name)
                })
                .map(|zc| ObjectRef::from_obj(&*zc))
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(url_changes)
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            move |zc, ctx: Arc<Context>| {
                let keep = allowed.is_empty()
                    || allowed
                        .iter()
                        .any(|ns| zc.metadata.namespace.as_deref() == Some(ns.as_str()));
                async move {
                    if keep {
                        reconcile(zc, ctx).await
                    } else {
                        Ok(Action::await_change())
                    }
                }
            },
            error_policy,
            ctx,
        )
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                // Reconcile errors are logged by error_policy; a deleted object's queued
                // retry finding nothing is expected.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..))
                | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!(error = %e, "controller error"),
            }
        })
        .await;
}
