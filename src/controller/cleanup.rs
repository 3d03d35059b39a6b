//! Finalizer handling for `revokeOnDelete`: add it when asked for, and on deletion revoke the
//! grant at Zoom with bounded retries before letting go, so deletion never hangs on Zoom.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::{ZoomConnection, FINALIZER};

use super::{Context, Error};

/// Adds or removes the finalizer to match `spec.revokeOnDelete`.
pub async fn ensure_finalizer(
    zc: &ZoomConnection,
    api: &Api<ZoomConnection>,
) -> Result<(), kube::Error> {
    let has = zc.finalizers().iter().any(|f| f == FINALIZER);
    let want = zc.spec.revoke_on_delete;
    if has == want {
        return Ok(());
    }
    set_finalizer(zc, api, want).await
}

/// Puts our finalizer on `zc` (`want`) or takes it off, leaving other finalizers alone.
async fn set_finalizer(
    zc: &ZoomConnection,
    api: &Api<ZoomConnection>,
    want: bool,
) -> Result<(), kube::Error> {
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

const REVOKE_ATTEMPTS: usize = 5;

/// Deletion with `revokeOnDelete`: revoke the grant at Zoom, with bounded retries, then let go.
pub async fn cleanup(
    zc: &ZoomConnection,
    ctx: &Context,
    api: &Api<ZoomConnection>,
) -> Result<Action, Error> {
    if !zc.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let creds = ctx.app_credentials(zc).await?.credentials;
    let (_, record) = ctx.token_store(zc).read(zc).await?;
    let token = record.grant.as_ref().and_then(|g| {
        g.refresh_token
            .clone()
            .or_else(|| Some(g.access_token.clone()))
    });
    if token.is_some() {
        let user = record.account.as_ref().and_then(|a| a.user_id.as_deref());
        warn_if_shared(ctx, zc, user).await;
    }
    let failure = match (&creds, token) {
        (Ok(app), Some(token)) => revoke(ctx, app, &token).await.err(),
        (Err(problem), _) => Some(problem.message()),
        (Ok(_), None) => None,
    };
    publish(ctx, zc, &revoke_event(failure.as_deref())).await;
    remove_finalizer(zc, api).await?;
    ctx.set_retry_state(&zc.uid().unwrap_or_default(), None);
    Ok(Action::await_change())
}

/// Revoking uninstalls the app for this connection's Zoom user: every grant of that user ends,
/// so other connections sharing it are named in a Warning.
async fn warn_if_shared(ctx: &Context, zc: &ZoomConnection, user: Option<&str>) {
    let shared = super::shared_grant::sharing_in_cache(ctx, zc, user);
    if shared.is_empty() {
        return;
    }
    let warning = KubeEvent {
        type_: EventType::Warning,
        reason: "SharedGrantRevoked".to_owned(),
        note: Some(format!(
            "revokeOnDelete uninstalls the app for this connection's Zoom user, which also ends the authorization of {}",
            shared.join(", ")
        )),
        action: "Revoke".to_owned(),
        secondary: None,
    };
    publish(ctx, zc, &warning).await;
}

/// Revokes `token` at Zoom, retrying what may pass (not Zoom's refusals) with backoff.
async fn revoke(
    ctx: &Context,
    app: &crate::credentials::AppCredentials,
    token: &str,
) -> Result<(), String> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_times(REVOKE_ATTEMPTS - 1);
    (|| ctx.zoom.revoke(app, token))
        .retry(backoff)
        .when(|e| !matches!(e, crate::zoom::client::ZoomError::Rejected { .. }))
        .notify(|e, _| tracing::warn!(error = %e, "revoke failed"))
        .await
        .map_err(|e| e.to_string())
}

/// `Revoked`, or `RevokeFailed` saying why. Pure.
fn revoke_event(failure: Option<&str>) -> KubeEvent {
    match failure {
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
    }
}

async fn publish(ctx: &Context, zc: &ZoomConnection, event: &KubeEvent) {
    ctx.recorder.publish(event, &zc.object_ref(&())).await;
}

async fn remove_finalizer(zc: &ZoomConnection, api: &Api<ZoomConnection>) -> Result<(), Error> {
    Ok(set_finalizer(zc, api, false).await?)
}
