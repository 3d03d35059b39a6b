//! Renewing a grant at Zoom: refresh (OAuth) or account credentials (Server-to-Server).
//!
//! Zoom rotates the refresh token on every refresh, so (api.md section 4):
//! 1. before sending a refresh token, the refresher records a fence in the token Secret by
//!    compare-and-swap; a live fence of anyone else means "do nothing";
//! 2. the leader is asked once more, right before the send, whether it still leads;
//! 3. the send and the write run in their own task, so that losing leadership (which cancels
//!    reconciles at once) cannot drop Zoom's answer between the two;
//! 4. a grant whose write fails stays in memory (`Context::pending`) and a writer task
//!    retries until it is stored; nothing is sent to Zoom for that connection meanwhile.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use jiff::Timestamp;

use crate::api::{AuthType, ZoomConnection, REFRESH_REQUESTED_ANNOTATION};
use crate::credentials::AppCredentials;
use crate::tokens::secret::{TokenGrant, TokenRecord};
use crate::tokens::transition::{self, NoClaim, RefreshFailure};
use crate::tokens::{
    self, GrantProblem, GrantReason, PendingFit, PendingGrant, StoreError, APP_DISABLED,
};
use crate::zoom::client::ZoomError;
use crate::zoom::rejection::{Rejection, RequestProblem};

use super::Context;

/// What a renewal attempt came to.
#[derive(Debug)]
pub enum Renewal {
    Renewed,
    /// Another writer rotated the grant while we were asking, or leadership moved before
    /// anything was sent; nothing was lost.
    Superseded,
    /// Zoom or the network failed; try again later.
    Failed {
        retry_after: Option<std::time::Duration>,
    },
    /// Zoom refused for good; a person must act (recorded in the Secret).
    Refused,
    /// Another refresher's fence is live: look again at `until`.
    Fenced {
        until: Timestamp,
    },
    /// Zoom issued a grant that could not be written; it is pending in memory.
    NotStored,
}

fn requested(zc: &ZoomConnection) -> Option<String> {
    zc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REFRESH_REQUESTED_ANNOTATION))
        .cloned()
}

pub async fn renew(
    ctx: &Arc<Context>,
    zc: &ZoomConnection,
    app: &AppCredentials,
    record: &TokenRecord,
) -> Result<Renewal, StoreError> {
    let used = record.grant.as_ref().and_then(|g| g.refresh_token.clone());
    let auth_type = zc.spec.auth_type;
    match (auth_type.is_oauth(), used.as_deref()) {
        (false, _) => {}
        // decide() never asks to refresh an OAuth grant without a refresh token.
        (true, None) => return Ok(Renewal::Superseded),
        (true, Some(token)) => match claim_fence(ctx, zc, token).await? {
            Ok(_) => {}
            Err(NoClaim::Held { until }) => return Ok(Renewal::Fenced { until }),
            Err(NoClaim::Spent { holder, since }) => {
                return record_spent(ctx, zc, token, &tokens::spent_message(&holder, since)).await
            }
            Err(NoClaim::Rotated) => return Ok(Renewal::Superseded),
        },
    }
    if !ctx.leadership.is_leader() {
        // Leadership moved while we wrote the fence: send nothing, and say so by lifting it.
        release_fence(ctx, zc).await;
        return Ok(Renewal::Superseded);
    }
    let attempt = Attempt {
        ctx: ctx.clone(),
        zc: zc.clone(),
        app: app.clone(),
        used,
        requested: requested(zc),
        account_known: record.account.is_some(),
    };
    match tokio::spawn(attempt.run()).await {
        Ok(result) => result,
        // The task cannot be aborted by anyone; a panic in it would be a bug.
        Err(e) => Err(StoreError::Task(e.to_string())),
    }
}

/// Records our fence, unless someone else's is live or the grant rotated under us.
async fn claim_fence(
    ctx: &Context,
    zc: &ZoomConnection,
    refresh_token: &str,
) -> Result<Result<TokenRecord, NoClaim>, StoreError> {
    let identity = ctx.config.identity.as_str();
    ctx.token_store(zc)
        .update(zc, |current| {
            transition::claim_fence(current, refresh_token, identity, crate::clock::now())
        })
        .await
}

/// The stored refresh token was sent by a refresher that never stored the answer. Sending it
/// again would break "never sent twice" (and Zoom would refuse it if it rotated): record the
/// truth instead, so the status tells people to authorize again and why.
async fn record_spent(
    ctx: &Context,
    zc: &ZoomConnection,
    refresh_token: &str,
    message: &str,
) -> Result<Renewal, StoreError> {
    tracing::error!(connection = %name(zc), why = %message, "the grant is lost");
    let recorded = ctx
        .token_store(zc)
        .update(zc, |current| {
            transition::refresh_token_spent(current, refresh_token, message)
        })
        .await?;
    Ok(match recorded {
        Ok(_) => Renewal::Refused,
        Err(transition::Rotated) => Renewal::Superseded,
    })
}

/// Lifts our own fence (best effort: an expired fence for a token that was never sent only
/// makes the successor try it once, which succeeds).
async fn release_fence(ctx: &Context, zc: &ZoomConnection) {
    let identity = ctx.config.identity.as_str();
    let result = ctx
        .token_store(zc)
        .update(zc, |current| {
            Ok::<_, ()>(transition::release_fence(current, identity))
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(connection = %name(zc), error = %e, "could not lift the refresh fence; it expires by itself");
    }
}

/// One send to Zoom and the write of its answer, owned by its own task.
struct Attempt {
    ctx: Arc<Context>,
    zc: ZoomConnection,
    app: AppCredentials,
    used: Option<String>,
    requested: Option<String>,
    account_known: bool,
}

impl Attempt {
    async fn run(self) -> Result<Renewal, StoreError> {
        let ctx = &self.ctx;
        let auth_type = self.zc.spec.auth_type;
        let label = auth_type.to_string();
        let result = match (auth_type, &self.used) {
            (AuthType::ServerToServer, _) => {
                let account = self.app.account_id.as_deref().unwrap_or_default();
                ctx.zoom.account_credentials(&self.app, account).await
            }
            (_, Some(refresh_token)) => ctx.zoom.refresh(&self.app, refresh_token).await,
            (_, None) => return Ok(Renewal::Superseded),
        };
        match result {
            Ok(grant) => {
                ctx.metrics.token_request(&label, "ok");
                let account = self.server_to_server_account(&grant).await;
                let pending = PendingGrant {
                    grant,
                    used_refresh_token: self.used.clone(),
                    client_id: self.app.client_id.clone(),
                    account,
                    requested: self.requested.clone(),
                    issued_at: crate::clock::now(),
                    last_error: None,
                };
                Ok(keep_until_stored(ctx, &self.zc, pending).await)
            }
            Err(err) => {
                ctx.metrics.token_request(&label, error_label(&err));
                handle_failure(ctx, &self.zc, err, &self.used, &self.requested).await
            }
        }
    }

    /// A Server-to-Server grant has no browser step to learn the account from: ask users/me
    /// once (best effort; the token is stored either way). Its token does not rotate, so
    /// asking before storing it risks nothing.
    async fn server_to_server_account(
        &self,
        grant: &TokenGrant,
    ) -> Option<crate::api::ZoomAccount> {
        if self.zc.spec.auth_type != AuthType::ServerToServer || self.account_known {
            return None;
        }
        match self.ctx.zoom.users_me(&grant.access_token).await {
            Ok(user) => Some(crate::api::ZoomAccount {
                account_id: user.account_id.or_else(|| self.app.account_id.clone()),
                user_id: Some(user.id),
                email: user.email,
            }),
            Err(e) => {
                tracing::warn!(connection = %name(&self.zc), error = %e, "reading /v2/users/me failed");
                None
            }
        }
    }
}

/// Writes a grant Zoom issued; if that fails, keeps it in memory and starts a writer that
/// retries until it is stored (whether or not this replica still leads: the write is a
/// compare-and-swap that only lands while the Secret holds the grant we refreshed).
pub async fn keep_until_stored(
    ctx: &Arc<Context>,
    zc: &ZoomConnection,
    mut pending: PendingGrant,
) -> Renewal {
    let uid = zc.metadata.uid.clone().unwrap_or_default();
    match store_pending(ctx, zc, &pending).await {
        Ok(PendingFit::Store) => {
            ctx.set_pending_grant(&uid, None);
            Renewal::Renewed
        }
        Ok(PendingFit::Superseded) => {
            tracing::info!(connection = %name(zc), "a newer grant was stored meanwhile; the refreshed one is not needed");
            ctx.set_pending_grant(&uid, None);
            Renewal::Superseded
        }
        Err(e) => {
            pending.write_failed(&write_error(&e));
            let why = pending.last_error.as_deref().unwrap_or_default();
            tracing::error!(connection = %name(zc), error = %why, "could not store the rotated token; keeping it in memory and retrying");
            let first = ctx.pending_grant(&uid).is_none();
            ctx.set_pending_grant(&uid, Some(pending));
            if first {
                tokio::spawn(write_until_stored(ctx.clone(), zc.clone(), uid));
            }
            Renewal::NotStored
        }
    }
}

/// Retries the write of a pending grant with exponential backoff (1 s to 10 s, jittered) until
/// it is stored, superseded, or forgotten (the connection was deleted).
async fn write_until_stored(ctx: Arc<Context>, zc: ZoomConnection, uid: String) {
    let delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build();
    for delay in delays {
        tokio::time::sleep(delay).await;
        let Some(mut pending) = ctx.pending_grant(&uid) else {
            return;
        };
        match store_pending(&ctx, &zc, &pending).await {
            Ok(_) => {
                tracing::info!(connection = %name(&zc), "stored the kept grant");
                ctx.set_pending_grant(&uid, None);
                return;
            }
            Err(e) => {
                pending.write_failed(&write_error(&e));
                // Only if it is still there: a pass may have stored it meanwhile.
                if ctx.pending_grant(&uid).is_some() {
                    ctx.set_pending_grant(&uid, Some(pending));
                }
            }
        }
    }
}

/// The API server's own reason, without the wire-level detail a person cannot act on.
fn write_error(e: &StoreError) -> String {
    match e {
        StoreError::Kube(kube::Error::Api(status)) => {
            format!(
                "the API server answered {}: {}",
                status.code, status.message
            )
        }
        other => other.to_string(),
    }
}

/// One compare-and-swap write of a pending grant (with the store's own conflict retries).
async fn store_pending(
    ctx: &Context,
    zc: &ZoomConnection,
    pending: &PendingGrant,
) -> Result<PendingFit, StoreError> {
    let oauth = zc.spec.auth_type.is_oauth();
    let written = ctx
        .token_store(zc)
        .update(zc, |current| {
            transition::refresh_issued(current, pending, oauth)
        })
        .await?;
    Ok(match written {
        Ok(_) => PendingFit::Store,
        Err(fit) => fit,
    })
}

fn name(zc: &ZoomConnection) -> String {
    format!(
        "{}/{}",
        zc.metadata.namespace.as_deref().unwrap_or_default(),
        zc.metadata.name.as_deref().unwrap_or_default()
    )
}

fn error_label(err: &ZoomError) -> &'static str {
    match err {
        ZoomError::Rejected { rejection, .. } => rejection.label(),
        ZoomError::Unavailable { .. } => "unavailable",
        ZoomError::Protocol(_) => "protocol_error",
    }
}

/// A grant problem a person must fix. Pure: decided by what Zoom's refusal means
/// (zoom::rejection), never by its exact words, which Zoom has changed over the years.
pub fn classify_failure(err: &ZoomError, auth_type: AuthType) -> Option<GrantProblem> {
    let rejection = err.rejection()?;
    let s2s = auth_type == AuthType::ServerToServer;
    let reason = match rejection {
        Rejection::ClientRejected => GrantReason::InvalidClientCredentials,
        Rejection::AppDisabled => {
            return Some(GrantProblem::new(
                GrantReason::InvalidClientCredentials,
                format!("{APP_DISABLED} ({err})"),
            ))
        }
        // A Server-to-Server grant is only its account: any other refusal is about that.
        _ if s2s => GrantReason::AccountCredentialsRejected,
        Rejection::GrantRejected => GrantReason::RefreshTokenRejected,
        Rejection::AccessTokenRejected
        | Rejection::ScopeMissing
        | Rejection::Request(
            RequestProblem::UnsupportedGrantType
            | RequestProblem::RedirectUriMismatch
            | RequestProblem::MissingParameter
            | RequestProblem::Other,
        ) => return None,
    };
    Some(GrantProblem::new(reason, err.to_string()))
}

async fn handle_failure(
    ctx: &Context,
    zc: &ZoomConnection,
    err: ZoomError,
    used_refresh_token: &Option<String>,
    requested: &Option<String>,
) -> Result<Renewal, StoreError> {
    let auth_type = zc.spec.auth_type;
    tracing::warn!(connection = %name(zc), auth_type = %auth_type, error = %err, "token renewal failed");
    let failure = RefreshFailure {
        used_refresh_token: used_refresh_token.clone(),
        problem: classify_failure(&err, auth_type),
        error: err.to_string(),
        answer_lost: err.answer_lost(),
        holder: ctx.config.identity.clone(),
        requested: requested.clone(),
        oauth: auth_type.is_oauth(),
    };
    let outcome = ctx
        .token_store(zc)
        // Judged on a fresh read: another writer may have rotated the grant already.
        .update_from(tokens::store::Base::Fresh, zc, |current| {
            transition::refresh_failed(current, &failure)
        })
        .await?;
    Ok(match (&failure.problem, err) {
        // Another writer rotated the token while we were asking: nothing of ours was lost.
        _ if outcome.is_err() => Renewal::Superseded,
        (Some(p), _) if p.reason.refresh_token_dead() => Renewal::Refused,
        (_, ZoomError::Unavailable { retry_after, .. }) => Renewal::Failed { retry_after },
        _ => Renewal::Failed { retry_after: None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, error: &str) -> ZoomError {
        refused(
            status,
            &format!(r#"{{"reason":"Invalid Token!","error":"{error}"}}"#),
        )
    }

    /// What the client makes of a refresh answer, body and all.
    fn refused(status: u16, body: &str) -> ZoomError {
        let parsed = crate::zoom::rejection::ErrorBody::parse(body.as_bytes());
        ZoomError::Rejected {
            status,
            error: "as Zoom said".into(),
            reason: "as Zoom said".into(),
            rejection: crate::zoom::rejection::classify_token_error(
                crate::zoom::rejection::GrantType::RefreshToken,
                status,
                parsed.as_ref(),
            ),
        }
    }

    fn check_classified(table: Vec<(&str, ZoomError, AuthType, Option<GrantReason>)>) {
        for (what, err, auth, want) in table {
            assert_eq!(
                classify_failure(&err, auth).map(|p| p.reason),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn refusals_of_a_refresh_are_classified() {
        let oauth = AuthType::PrivateOAuth;
        check_classified(vec![
            (
                "dead refresh token",
                rejected(400, "invalid_grant"),
                oauth,
                Some(GrantReason::RefreshTokenRejected),
            ),
            (
                "dead refresh token, 401",
                rejected(401, "invalid_grant"),
                oauth,
                Some(GrantReason::RefreshTokenRejected),
            ),
            (
                "dead refresh token, invalid_request",
                rejected(400, "invalid_request"),
                oauth,
                Some(GrantReason::RefreshTokenRejected),
            ),
            (
                "dead refresh token, no reason",
                refused(401, r#"{"error":"invalid_request"}"#),
                oauth,
                Some(GrantReason::RefreshTokenRejected),
            ),
            (
                "dead refresh token, no reason, 400",
                refused(400, r#"{"error":"invalid_grant"}"#),
                oauth,
                Some(GrantReason::RefreshTokenRejected),
            ),
            (
                "bad client",
                refused(
                    401,
                    r#"{"reason":"Invalid client_id or client_secret","error":"invalid_client"}"#,
                ),
                oauth,
                Some(GrantReason::InvalidClientCredentials),
            ),
            (
                "bad client, said in words",
                refused(401, r#"{"reason":"Invalid client_id or client_secret"}"#),
                oauth,
                Some(GrantReason::InvalidClientCredentials),
            ),
        ]);
    }

    #[test]
    fn other_failures_are_classified() {
        let unavailable = ZoomError::Unavailable {
            detail: "HTTP 503".into(),
            retry_after: None,
        };
        let oauth = AuthType::PrivateOAuth;
        let s2s = AuthType::ServerToServer;
        check_classified(vec![
            (
                "app disabled",
                refused(400, r#"{"reason":"The app has been disabled","code":4717}"#),
                oauth,
                Some(GrantReason::InvalidClientCredentials),
            ),
            (
                "s2s refused",
                rejected(400, "invalid_request"),
                s2s,
                Some(GrantReason::AccountCredentialsRejected),
            ),
            (
                "s2s bad client",
                refused(401, r#"{"error":"invalid_client"}"#),
                s2s,
                Some(GrantReason::InvalidClientCredentials),
            ),
            (
                "s2s wrong grant type",
                refused(400, r#"{"error":"unsupported_grant_type"}"#),
                s2s,
                Some(GrantReason::AccountCredentialsRejected),
            ),
            ("a proxy's page", refused(400, "<html>"), oauth, None),
            (
                "a missing parameter is our bug",
                refused(
                    400,
                    r#"{"reason":"Missing parameter: refresh_token","error":"invalid_request"}"#,
                ),
                oauth,
                None,
            ),
            ("zoom down", unavailable, oauth, None),
        ]);
        let disabled =
            classify_failure(&refused(400, r#"{"code":4717}"#), oauth).expect("classified");
        assert!(disabled.app_disabled(), "{disabled:?}");
    }

    #[test]
    fn answers_lost_on_the_network_are_told_apart() {
        let lost = ZoomError::Unavailable {
            detail: "request timed out".into(),
            retry_after: None,
        };
        let answered = ZoomError::Unavailable {
            detail: "HTTP 503".into(),
            retry_after: None,
        };
        let refused = ZoomError::Unavailable {
            detail: "could not connect".into(),
            retry_after: None,
        };
        assert!(lost.answer_lost());
        assert!(!answered.answer_lost());
        assert!(!refused.answer_lost());
    }
}
