//! Finalizer handling for `revokeOnDelete`: add it when asked for, and on deletion revoke the
//! grant at Zoom with bounded retries before letting go, so deletion never hangs on Zoom.

use std::time::Duration;

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
pub async fn cleanup(
    zc: &ZoomConnection,
    ctx: &Context,
    api: &Api<ZoomConnection>,
) -> Result<Action, Error> {
    if !zc.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let uid = zc.uid().unwrap_or_default();
    let creds = ctx.app_credentials(zc).await?.credentials;
    let (_, record) = ctx.token_store(zc).read(zc).await?;
    let token = record.grant.as_ref().and_then(|g| {
        g.refresh_token
            .clone()
            .or_else(|| Some(g.access_token.clone()))
    });
    let reference = zc.object_ref(&());
    let user = record.account.as_ref().and_then(|a| a.user_id.as_deref());
    let shared = super::shared_grant::sharing_in_cache(ctx, zc, user);
    if token.is_some() && !shared.is_empty() {
        // Revoking uninstalls the app for this Zoom user: every grant of that user ends.
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
        if let Err(e) = ctx.recorder.publish(&warning, &reference).await {
            tracing::warn!(error = %e, "could not publish event");
        }
    }
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
