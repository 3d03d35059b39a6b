//! The reconcile loop for `ZoomConnection`s.
//!
//! One pass reads top to bottom: validate the spec, dereference (credentials Secret, token
//! Secret, public URLs), renew the token if it is due, build the status (pure), apply it, and
//! publish Events for conditions that changed. Only the lease holder runs this loop.

mod account;
mod app_secrets;
mod cleanup;
mod context;
pub mod renew;
pub mod schedule;
mod shared_grant;
pub mod status;
mod watches;

pub use context::{Context, RetryState, UrlState};
pub use watches::{run_controller, watch_public_urls};

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::ZoomConnection;
use crate::conditions::{self, Verdict};
use crate::credentials::{AppCredentials, CredentialsProblem};
use crate::metrics::ResultLabels;
use crate::signing::TICKET_LIFETIME_SECS;
use crate::tokens::secret::{Ownership, SinkUnreachable};
use crate::urls::{PublicUrls, UrlProblem};

use schedule::{TokenDecision, TokenInputs};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API error: {0}")]
    KubeError(#[from] kube::Error),
    #[error("token Secret: {0}")]
    TokenSecretError(#[from] crate::tokens::StoreError),
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

/// Problems the schema cannot catch on every API server version (`crate::validation`).
pub fn validate(zc: &ZoomConnection) -> Result<Duration, String> {
    crate::validation::validate_spec(&zc.spec).map_err(|e| e.0)
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

async fn reconcile_inner(zc: &ZoomConnection, ctx: &Arc<Context>) -> Result<Action, Error> {
    let ns = zc.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let uid = zc.uid().ok_or(Error::MissingObjectKey("uid"))?;
    let api: Api<ZoomConnection> = Api::namespaced(ctx.client.clone(), &ns);

    if zc.metadata.deletion_timestamp.is_some() {
        ctx.set_pending_grant(&uid, None);
        ctx.set_account_read(&uid, None);
        ctx.forget_applied(&uid);
        return cleanup::cleanup(zc, ctx, &api).await;
    }
    cleanup::ensure_finalizer(zc, &api).await?;
    if ctx.behind_own_write(zc) {
        // Woken (by a token Secret write, say) before the cache showed this process's own
        // status write: a pass now would start from the old status and write it again.
        return Ok(Action::requeue(OWN_WRITE_RECHECK));
    }

    let mut pass = dereference(zc, ctx, uid).await?;
    renew_if_due(zc, ctx, &mut pass).await?;
    let seen = observe(zc, ctx, &mut pass).await;
    let new_status = status::build(&seen.observation(zc, &pass));
    apply_status(zc, ctx, &api, &new_status).await?;

    // Look again when a renewal or the ticket is due, and at least every 10 minutes so that
    // expiry shows in status even when nothing else happens.
    let wake = [
        pass.next_check,
        ticket_renewal_at(zc),
        pass.record.grant.as_ref().map(|g| g.expires_at),
    ];
    Ok(Action::requeue(requeue_after(crate::clock::now(), wake)))
}

/// What one pass read (validate, dereference), and what renewal then made of it.
struct Pass {
    uid: String,
    now: Timestamp,
    validated: Result<Duration, String>,
    credentials: Result<AppCredentials, CredentialsProblem>,
    credentials_secret: String,
    credentials_version: Option<String>,
    urls: Result<PublicUrls, UrlProblem>,
    jitter_seed: u64,
    /// Why a grant Zoom issued is still not stored, if one is pending.
    not_stored: Option<String>,
    ownership: Ownership,
    record: crate::tokens::secret::TokenRecord,
    /// When a failed renewal may be tried again.
    retry_at: Option<Timestamp>,
    /// When this pass wants to look again (before the requeue rule's other moments).
    next_check: Option<Timestamp>,
}

/// Validates the spec and reads what the pass decides from: the app's credentials, the
/// public URLs and the token Secret. A grant Zoom issued that is not stored yet is written
/// first: no refresh is sent for this connection until it is.
async fn dereference(zc: &ZoomConnection, ctx: &Arc<Context>, uid: String) -> Result<Pass, Error> {
    let validated = validate(zc);
    let crate::credentials::AppRead {
        credentials,
        secret: credentials_secret,
        version: credentials_version,
    } = ctx.app_credentials(zc).await?;
    let not_stored = store_pending_grant(zc, ctx, &uid).await;
    let (ownership, record) = ctx.token_store(zc).read(zc).await?;
    let now = crate::clock::now();
    Ok(Pass {
        retry_at: ctx.retry_state(&uid).map(|r| r.not_before),
        next_check: not_stored
            .as_ref()
            .and_then(|_| now.checked_add(PENDING_RETRY).ok()),
        jitter_seed: schedule::seed(&uid),
        uid,
        now,
        validated,
        credentials,
        credentials_secret,
        credentials_version,
        urls: ctx.current_urls(),
        not_stored,
        ownership,
        record,
    })
}

/// Decides whether the token is due (pure, `schedule::decide`) and renews it if so.
async fn renew_if_due(
    zc: &ZoomConnection,
    ctx: &Arc<Context>,
    pass: &mut Pass,
) -> Result<(), Error> {
    let (None, Ok(refresh_before), Ok(app), Ownership::Ours | Ownership::Absent) = (
        &pass.not_stored,
        &pass.validated,
        &pass.credentials,
        &pass.ownership,
    ) else {
        return Ok(());
    };
    let refresh_before = *refresh_before;
    let retry = ctx.retry_state(&pass.uid);
    let inputs = TokenInputs {
        auth_type: zc.spec.auth_type,
        record: &pass.record,
        refresh_before,
        now: pass.now,
        requested: zc
            .annotations()
            .get(crate::api::REFRESH_REQUESTED_ANNOTATION)
            .map(String::as_str),
        retry_not_before: retry.as_ref().map(|r| r.not_before),
        credentials_changed: retry
            .as_ref()
            .is_none_or(|r| r.credentials_version != pass.credentials_version),
        jitter_seed: pass.jitter_seed,
        last_forced_refresh: ctx.last_forced_refresh(&pass.uid),
    };
    let decision = schedule::decide(&inputs);
    if let (TokenDecision::Idle { .. }, Some(until)) =
        (decision, schedule::forced_refresh_deferred_until(&inputs))
    {
        publish_refresh_deferred(ctx, zc, until).await;
    }
    let reason = match decision {
        TokenDecision::Idle { next_check } => {
            pass.next_check = next_check;
            return Ok(());
        }
        TokenDecision::BackOff { until } => {
            pass.next_check = Some(until);
            return Ok(());
        }
        TokenDecision::Renew(reason) => reason,
    };
    tracing::info!(connection = %connection_name(zc), reason = reason.as_str(), "renewing token");
    if reason == schedule::RenewReason::Requested {
        ctx.note_forced_refresh(&pass.uid, pass.now);
    }
    let app = app.clone();
    let outcome = renew::renew(ctx, zc, &app, &pass.record).await?;
    (pass.ownership, pass.record) = ctx.token_store(zc).read(zc).await?;
    after_renewal(zc, ctx, pass, outcome, refresh_before);
    Ok(())
}

/// When to look again after a renewal, and the backoff after a failed one.
fn after_renewal(
    zc: &ZoomConnection,
    ctx: &Context,
    pass: &mut Pass,
    outcome: renew::Renewal,
    refresh_before: Duration,
) {
    match outcome {
        renew::Renewal::Failed { retry_after } => {
            let delay = schedule::backoff(
                pass.record.failed_refresh_attempts.max(1),
                retry_after,
                pass.jitter_seed,
            );
            let until = schedule::retry_not_before(
                crate::clock::now(),
                delay,
                pass.record.grant.as_ref().map(|g| g.expires_at),
            );
            ctx.set_retry_state(
                &pass.uid,
                Some(RetryState {
                    not_before: until,
                    credentials_version: pass.credentials_version.clone(),
                }),
            );
            pass.retry_at = Some(until);
            pass.next_check = Some(until);
        }
        renew::Renewal::Fenced { until } => {
            tracing::info!(connection = %connection_name(zc), until = %until, "another refresher holds the grant's fence; waiting");
            pass.next_check = Some(until);
        }
        renew::Renewal::NotStored => {
            pass.next_check = pass.now.checked_add(PENDING_RETRY).ok();
        }
        renew::Renewal::Renewed | renew::Renewal::Superseded | renew::Renewal::Refused => {
            ctx.set_retry_state(&pass.uid, None);
            pass.retry_at = None;
            pass.next_check = schedule::renew_at(&pass.record, refresh_before, pass.jitter_seed);
        }
    }
}

/// What the rest of the status needs besides the pass: the account, the sink, other
/// connections sharing the grant, and events waiting for redelivery.
struct Seen {
    authorize_url: Option<String>,
    /// The `TokenNotStored` message while this process holds a grant it could not write.
    not_stored: Option<String>,
    next_refresh: Option<Timestamp>,
    events: status::EventsVerdict,
    shared_grant: Vec<String>,
    pending_events: usize,
}

impl Seen {
    fn observation<'a>(&self, zc: &'a ZoomConnection, pass: &'a Pass) -> status::Observation<'a> {
        status::Observation {
            zc,
            now: pass.now,
            spec_problem: pass.validated.as_ref().err().cloned(),
            credentials: &pass.credentials,
            credentials_secret: pass.credentials_secret.clone(),
            token_secret: pass.ownership.clone(),
            record: &pass.record,
            urls: &pass.urls,
            authorize_url: self.authorize_url.clone(),
            next_refresh: self.next_refresh,
            retry_at: pass.retry_at,
            events: self.events.clone(),
            not_stored: self.not_stored.clone(),
            shared_grant: self.shared_grant.clone(),
            pending_events: zc
                .spec
                .events
                .as_ref()
                .map(|_| u32::try_from(self.pending_events).unwrap_or(u32::MAX)),
        }
    }
}

async fn observe(zc: &ZoomConnection, ctx: &Arc<Context>, pass: &mut Pass) -> Seen {
    let now = pass.now;
    let next_refresh = match &pass.validated {
        Ok(rb) if pass.record.grant.is_some() && pass.record.grant_problem.is_none() => {
            schedule::renew_at(&pass.record, *rb, pass.jitter_seed)
                .map(|t| t.max(pass.retry_at.unwrap_or(t)))
        }
        _ => None,
    };
    // Events are routed by account: an OAuth connection whose account is unknown reads it.
    let account_unknown = match pass.ownership {
        Ownership::Ours => account::ensure(ctx, zc, &pass.uid, &mut pass.record, now).await,
        _ => None,
    };
    let sink_service = match zc.spec.events.as_ref() {
        Some(e) => {
            let ns = zc.metadata.namespace.as_deref().unwrap_or_default();
            crate::sink::check_sink_service(&ctx.client, &e.sink, ns, &ctx.config.allow_sink_hosts)
                .await
        }
        None => None,
    };
    let shared_grant = shared_grant::sharing_in_cache(
        ctx,
        zc,
        pass.record
            .account
            .as_ref()
            .and_then(|a| a.user_id.as_deref()),
    );
    let shared_soon = shared_grant::nudge_unaware(ctx, zc, &shared_grant)
        .then(|| now.checked_add(SHARED_GRANT_RECHECK).ok())
        .flatten();
    let pending_events = ctx.webhooks.events.pending_for(&pass.uid);
    let dropped_until = pass
        .record
        .events_dropped
        .as_ref()
        .and_then(|d| d.last.checked_add(EVENTS_DROPPED_SHOWN).ok())
        .filter(|until| *until > now);
    // The pending count comes from another watch than the one that woke this pass: look
    // again soon, so that status follows redelivery.
    let events_soon = (pending_events > 0)
        .then(|| now.checked_add(PENDING_EVENTS_RECHECK).ok())
        .flatten();
    let account_retry = account_unknown.as_ref().and_then(|a| a.retry_at);
    pass.next_check = [
        pass.next_check,
        account_retry,
        events_soon,
        dropped_until,
        shared_soon,
    ]
    .into_iter()
    .flatten()
    .min();
    let not_stored = ctx.pending_grant(&pass.uid).map(|p| {
        let ns = zc.metadata.namespace.as_deref().unwrap_or_default();
        crate::tokens::not_stored_message(&p, &format!("{ns}/{}", zc.token_secret_name()))
    });
    Seen {
        authorize_url: authorize_url(zc, ctx, &pass.urls, now),
        not_stored,
        next_refresh,
        events: events_verdict(
            zc,
            ctx,
            &pass.credentials,
            &pass.record,
            sink_service,
            account_unknown.as_ref(),
            dropped_until.is_some(),
        ),
        shared_grant,
        pending_events,
    }
}

/// Applies the status when it changed (server-side apply) and publishes an Event for each
/// condition that changed.
async fn apply_status(
    zc: &ZoomConnection,
    ctx: &Context,
    api: &Api<ZoomConnection>,
    new_status: &crate::api::ZoomConnectionStatus,
) -> Result<(), Error> {
    let changed = zc.status.as_ref().is_none_or(|old| {
        let mut comparable = old.clone();
        comparable.last_event_time = None;
        comparable != *new_status
    });
    if !changed {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": "zoom-operator.io/v1alpha1",
        "kind": "ZoomConnection",
        "status": new_status,
    });
    let written = api
        .patch_status(
            &zc.name_any(),
            &PatchParams::apply(crate::api::MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    if let (Some(uid), Some(over)) = (zc.uid(), zc.resource_version()) {
        // A write that changed nothing leaves the version as it was: nothing to wait for.
        if written.resource_version().as_deref() != Some(over.as_str()) {
            ctx.applied(&uid, &over);
        }
    }
    let old_conditions = zc
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    publish_transitions(ctx, zc, &old_conditions, &new_status.conditions).await;
    Ok(())
}

/// How long to wait before the next pass: until the earliest of `moments` still ahead, at
/// most 10 minutes, at least half a second. Pure. Moments already past need no wake-up (an
/// expired token of a dead grant would otherwise spin the loop); the status of this pass
/// already reflects them.
pub fn requeue_after(now: Timestamp, moments: [Option<Timestamp>; 3]) -> Duration {
    moments
        .into_iter()
        .flatten()
        .filter_map(|at| Duration::try_from(at.duration_since(now)).ok())
        .filter(|d| !d.is_zero())
        .fold(MAX_REQUEUE, Duration::min)
        .max(MIN_REQUEUE)
}

const MAX_REQUEUE: Duration = Duration::from_secs(600);
const MIN_REQUEUE: Duration = Duration::from_millis(500);

fn connection_name(zc: &ZoomConnection) -> String {
    format!(
        "{}/{}",
        zc.metadata.namespace.as_deref().unwrap_or_default(),
        zc.metadata.name.as_deref().unwrap_or_default()
    )
}

/// How soon status looks again while events wait for redelivery.
const PENDING_EVENTS_RECHECK: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);
/// How soon a pass looks again while the cache does not show its own status write yet.
const OWN_WRITE_RECHECK: Duration = Duration::from_millis(250);
/// How soon a connection looks again while another sharing its grant does not name it yet.
const SHARED_GRANT_RECHECK: jiff::SignedDuration = jiff::SignedDuration::from_secs(2);
/// How long `EventsDropped` shows after the last dropped event.
const EVENTS_DROPPED_SHOWN: jiff::SignedDuration = jiff::SignedDuration::from_secs(3600);

/// How often a grant that could not be stored is written again.
const PENDING_RETRY: jiff::SignedDuration = jiff::SignedDuration::from_secs(3);

/// Writes a pending grant of this connection, if there is one. Some(message): still not
/// stored.
async fn store_pending_grant(zc: &ZoomConnection, ctx: &Arc<Context>, uid: &str) -> Option<String> {
    let pending = ctx.pending_grant(uid)?;
    match renew::keep_until_stored(ctx, zc, pending).await {
        renew::Renewal::NotStored => ctx.pending_grant(uid).and_then(|p| p.last_error),
        _ => None,
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
            let fresh = claims.exp.saturating_sub(now.as_second()) > TICKET_LIFETIME_SECS / 2;
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
    // Only the expiry is read, to schedule the renewal; nothing trusts it.
    let claims = crate::signing::Claims::peek(&ticket)?;
    Timestamp::from_second(claims.exp.checked_sub(TICKET_LIFETIME_SECS / 2)?).ok()
}

/// `EventsReady`, present only when events can apply: a sink is configured or the app has a
/// webhook secret token. Sink health comes from the token Secret, where the webhook path
/// (on any replica) records it.
fn events_verdict(
    zc: &ZoomConnection,
    ctx: &Context,
    creds: &Result<AppCredentials, CredentialsProblem>,
    record: &crate::tokens::secret::TokenRecord,
    sink_service: Option<crate::sink::SinkProblem>,
    account_unknown: Option<&account::AccountUnknown>,
    recently_dropped: bool,
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
    let account_unknown = account_unknown
        .map(|a| Verdict::failed(conditions::EVENTS_READY, "AccountUnknown", a.message()));
    let Some(sink) = sink else {
        return account_unknown.or(Some(Verdict::ok(
            conditions::EVENTS_READY,
            "Ready",
            "Verified events are received (no sink configured)",
        )));
    };
    let ns = zc.metadata.namespace.as_deref().unwrap_or_default();
    // The pure policy first, then the Service itself (an ExternalName points anywhere).
    let url = match (
        crate::sink::resolve(sink, ns, &ctx.config.allow_sink_hosts),
        sink_service,
    ) {
        (Err(problem), _) | (Ok(_), Some(problem)) => {
            return Some(Verdict::failed(
                conditions::EVENTS_READY,
                "SinkNotAllowed",
                problem.0,
            ))
        }
        (Ok(url), None) => url,
    };
    if account_unknown.is_some() {
        return account_unknown;
    }
    Some(sink_verdict(zc, record, &url, recently_dropped))
}

/// `EventsReady` of a connection whose sink is allowed: dropped events, then the configured
/// sink's last failure, else Ready. Pure.
fn sink_verdict(
    zc: &ZoomConnection,
    record: &crate::tokens::secret::TokenRecord,
    url: &url::Url,
    recently_dropped: bool,
) -> Verdict {
    if let Some(dropped) = record.events_dropped.as_ref().filter(|_| recently_dropped) {
        return Verdict::failed(
            conditions::EVENTS_READY,
            "EventsDropped",
            format!(
                "{} Zoom event(s) were dropped after their last delivery attempt, the last at {} ({}). Set spec.events.delivery.deadLetterSink to keep such events, or give the sink more retries; this clears an hour after the last drop",
                dropped.count,
                crate::tokens::secret::rfc3339(dropped.last),
                dropped.why
            ),
        );
    }
    // Only a failure of the sink that is configured now counts: after a spec fix the old
    // sink's failure is history.
    let shown = crate::webhooks::forward::display_sink(url);
    if let Some(SinkUnreachable {
        sink: failed_sink,
        message: why,
    }) = record.sink_problem.as_ref().filter(|p| p.sink == shown)
    {
        return Verdict::failed(
            conditions::EVENTS_READY,
            "SinkUnreachable",
            format!(
                "Forwarding a Zoom event to {failed_sink} failed: {why}. Events the sink does not accept are stored and redelivered following spec.events.delivery; make sure the sink runs and answers 2xx within {:.1}s. This clears with the next event the sink accepts at once",
                crate::webhooks::delivery::Policy::of(zc).timeout.as_secs_f64()
            ),
        );
    }
    Verdict::ok(
        conditions::EVENTS_READY,
        "Ready",
        "Verified events are forwarded to the sink",
    )
}

/// Says why a requested refresh has not happened yet (api.md: forced refreshes are limited
/// to one a minute per connection).
async fn publish_refresh_deferred(ctx: &Context, zc: &ZoomConnection, until: Timestamp) {
    let event = KubeEvent {
        type_: EventType::Normal,
        reason: "RefreshRateLimited".to_owned(),
        note: Some(format!(
            "A refresh was requested with {}; forced refreshes are limited to one per minute per connection, so it happens at {}",
            crate::api::REFRESH_REQUESTED_ANNOTATION,
            crate::tokens::secret::rfc3339(until)
        )),
        action: "Refresh".to_owned(),
        secondary: None,
    };
    ctx.recorder.publish(&event, &zc.object_ref(&())).await;
}

async fn publish_transitions(
    ctx: &Context,
    zc: &ZoomConnection,
    old: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    new: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) {
    let reference = zc.object_ref(&());
    for t in conditions::worth_an_event(old, new) {
        let event = KubeEvent {
            type_: if t.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: t.reason.clone(),
            note: Some(event_note(&format!(
                "{}={}: {}",
                t.type_, t.status, t.message
            ))),
            action: t.type_.clone(),
            secondary: None,
        };
        ctx.recorder.publish(&event, &reference).await;
    }
}

/// Kubernetes refuses Event notes over 1024 bytes; cut on a character boundary.
fn event_note(note: &str) -> String {
    const MAX: usize = 1024;
    if note.len() <= MAX {
        return note.to_owned();
    }
    let mut end = MAX - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", note.get(..end).unwrap_or_default())
}

fn error_policy(zc: Arc<ZoomConnection>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(connection = %format!("{}/{}", zc.namespace().unwrap_or_default(), zc.name_any()), error = %error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::{event_note, requeue_after, Duration, Timestamp};

    #[test]
    fn the_next_pass_comes_at_the_earliest_moment_ahead_within_bounds() {
        let now: Timestamp = "2026-11-29T09:00:00Z".parse().expect("ts");
        let at = |secs: i64| now.checked_add(jiff::SignedDuration::from_secs(secs)).ok();
        let table = [
            ("nothing to wait for", [None, None, None], 600_000),
            ("the earliest moment", [at(30), at(5), at(3000)], 5_000),
            (
                "past moments need no wake-up",
                [at(-60), None, at(120)],
                120_000,
            ),
            (
                "never later than ten minutes",
                [at(7200), None, None],
                600_000,
            ),
            ("a moment now is no spin", [at(0), None, None], 600_000),
        ];
        for (what, moments, millis) in table {
            assert_eq!(
                requeue_after(now, moments),
                Duration::from_millis(millis),
                "{what}"
            );
        }
        let soon = now.checked_add(jiff::SignedDuration::from_millis(100)).ok();
        assert_eq!(
            requeue_after(now, [soon, None, None]),
            Duration::from_millis(500),
            "at least half a second"
        );
    }

    #[test]
    fn event_notes_fit_the_api_server_limit() {
        assert_eq!(event_note("short"), "short");
        let long = "é".repeat(1000);
        let cut = event_note(&long);
        assert!(cut.len() <= 1024 && cut.ends_with('…'), "{}", cut.len());
    }
}
