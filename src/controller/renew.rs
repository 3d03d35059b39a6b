//! Renewing a grant at Zoom: refresh (OAuth) or account credentials (Server-to-Server).
//!
//! Zoom rotates the refresh token on every refresh, so the new pair is written to the token
//! Secret before anything else happens, and a refresh token that was sent once is never sent
//! again: if the write fails for good, the grant is lost, loudly, rather than reused.

use jiff::Timestamp;

use crate::api::{AuthType, ZoomConnection, REFRESH_REQUESTED_ANNOTATION};
use crate::credentials::AppCredentials;
use crate::token_secret::{TokenGrant, TokenRecord};
use crate::zoom::client::ZoomError;

use super::schedule::{
    ACCOUNT_CREDENTIALS_REJECTED, AUTHORIZATION_FAILED, INVALID_CLIENT_CREDENTIALS,
    REFRESH_TOKEN_REJECTED,
};
use super::store::{Change, StoreError};
use super::Context;

/// What a renewal attempt came to.
#[derive(Debug)]
pub enum Renewal {
    Renewed,
    /// Another writer rotated the grant while we were asking; nothing was lost.
    Superseded,
    /// Zoom or the network failed; try again later.
    Failed {
        retry_after: Option<std::time::Duration>,
    },
    /// Zoom refused for good; a person must act (recorded in the Secret).
    Refused,
}

fn requested(zc: &ZoomConnection) -> Option<String> {
    zc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REFRESH_REQUESTED_ANNOTATION))
        .cloned()
}

pub async fn renew(
    ctx: &Context,
    zc: &ZoomConnection,
    app: &AppCredentials,
    record: &TokenRecord,
) -> Result<Renewal, StoreError> {
    let store = ctx.token_store(zc);
    let auth_type = zc.spec.auth_type;
    let label = auth_type.to_string();
    let used_refresh_token = record.grant.as_ref().and_then(|g| g.refresh_token.clone());

    let result = match (auth_type, &used_refresh_token) {
        (AuthType::ServerToServer, _) => {
            let account = app.account_id.as_deref().unwrap_or_default();
            ctx.zoom.account_credentials(app, account).await
        }
        (_, Some(refresh_token)) => ctx.zoom.refresh(app, refresh_token).await,
        // decide() never asks to refresh an OAuth grant without a refresh token.
        (_, None) => return Ok(Renewal::Superseded),
    };
    let now = Timestamp::now();
    let requested = requested(zc);

    match result {
        Ok(grant) => {
            ctx.metrics.token_request(&label, "ok");
            let client_id = app.client_id.clone();
            // A Server-to-Server grant has no browser step to learn the account from: ask
            // users/me once (best effort; the token is stored either way). Its token does not
            // rotate, so asking before storing it risks nothing.
            let account = match (auth_type, &record.account) {
                (AuthType::ServerToServer, None) => {
                    match ctx.zoom.users_me(&grant.access_token).await {
                        Ok(user) => Some(crate::api::ZoomAccount {
                            account_id: user.account_id.or_else(|| app.account_id.clone()),
                            user_id: Some(user.id),
                            email: user.email,
                        }),
                        Err(e) => {
                            tracing::warn!(connection = %name(zc), error = %e, "reading /v2/users/me failed");
                            None
                        }
                    }
                }
                _ => None,
            };
            let written = store
                .update(zc, |current| {
                    if auth_type.is_oauth() && current_refresh_token(current) != used_refresh_token
                    {
                        // A callback stored a newer grant meanwhile: it wins, ours is dropped.
                        return Ok::<_, ()>(Change::Keep);
                    }
                    store_grant(current, grant.clone(), &client_id, now);
                    if account.is_some() {
                        current.account = account.clone();
                    }
                    if requested.is_some() {
                        current.refresh_handled = requested.clone();
                    }
                    Ok(Change::Write)
                })
                .await;
            match written {
                Ok(Ok(_)) => Ok(Renewal::Renewed),
                Ok(Err(())) => Ok(Renewal::Superseded),
                Err(e) => {
                    tracing::error!(
                        connection = %name(zc),
                        error = %e,
                        "could not store the rotated token; the grant may be lost and need re-authorization"
                    );
                    Err(e)
                }
            }
        }
        Err(err) => {
            ctx.metrics.token_request(&label, error_label(&err));
            handle_failure(ctx, zc, err, used_refresh_token, requested).await
        }
    }
}

/// Records a fresh grant and clears failure bookkeeping; shared by refresh, mint and callback.
pub fn store_grant(record: &mut TokenRecord, grant: TokenGrant, client_id: &str, now: Timestamp) {
    record.grant = Some(grant);
    record.last_refresh_time = Some(now);
    record.client_id = Some(client_id.to_owned());
    record.grant_problem = None;
    record.failed_refresh_attempts = 0;
    record.last_failure = None;
}

fn current_refresh_token(record: &TokenRecord) -> Option<String> {
    record.grant.as_ref().and_then(|g| g.refresh_token.clone())
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
        _ if err.is_invalid_grant() => "invalid_grant",
        _ if err.is_invalid_client() => "invalid_client",
        ZoomError::Rejected { .. } => "rejected",
        ZoomError::Unavailable { .. } => "unavailable",
        ZoomError::Protocol(_) => "protocol_error",
    }
}

async fn handle_failure(
    ctx: &Context,
    zc: &ZoomConnection,
    err: ZoomError,
    used_refresh_token: Option<String>,
    requested: Option<String>,
) -> Result<Renewal, StoreError> {
    let store = ctx.token_store(zc);
    let auth_type = zc.spec.auth_type;
    tracing::warn!(connection = %name(zc), auth_type = %auth_type, error = %err, "token renewal failed");

    // A permanent refusal is recorded as a grant problem; anything else counts as a failed
    // attempt and is retried with backoff.
    let permanent: Option<(&'static str, String)> = if err.is_invalid_client() {
        Some((INVALID_CLIENT_CREDENTIALS, err.to_string()))
    } else if auth_type == AuthType::ServerToServer && matches!(err, ZoomError::Rejected { .. }) {
        Some((ACCOUNT_CREDENTIALS_REJECTED, err.to_string()))
    } else if err.is_invalid_grant() {
        Some((REFRESH_TOKEN_REJECTED, err.to_string()))
    } else {
        None
    };

    let outcome = store
        .update(zc, |current| {
            if auth_type.is_oauth() && current_refresh_token(current) != used_refresh_token {
                // Re-read from the API server: another writer rotated the token while we were
                // asking Zoom, so Zoom's "invalid_grant" was about a token we no longer hold.
                return Ok::<_, ()>(Change::Keep);
            }
            match &permanent {
                Some((REFRESH_TOKEN_REJECTED, message)) => {
                    // The refresh token is dead; the access token may still work until it
                    // expires, so it stays.
                    if let Some(g) = current.grant.as_mut() {
                        g.refresh_token = None;
                    }
                    current.grant_problem =
                        Some((REFRESH_TOKEN_REJECTED.to_owned(), message.clone()));
                    current.failed_refresh_attempts = 0;
                    current.last_failure = None;
                }
                Some((reason, message)) => {
                    current.grant_problem = Some(((*reason).to_owned(), message.clone()));
                    current.failed_refresh_attempts =
                        current.failed_refresh_attempts.saturating_add(1);
                    current.last_failure = Some(message.clone());
                }
                None => {
                    if current
                        .grant_problem
                        .as_ref()
                        .is_some_and(|(r, _)| r == AUTHORIZATION_FAILED)
                    {
                        current.grant_problem = None;
                    }
                    current.failed_refresh_attempts =
                        current.failed_refresh_attempts.saturating_add(1);
                    current.last_failure = Some(err.to_string());
                }
            }
            if requested.is_some() {
                // A requested refresh that failed is not retried in a loop; the backoff does that.
                current.refresh_handled = requested.clone();
            }
            Ok(Change::Write)
        })
        .await?;

    Ok(match outcome {
        Err(()) => Renewal::Superseded,
        Ok(_) => match (&permanent, err) {
            (Some((REFRESH_TOKEN_REJECTED, _)), _) => Renewal::Refused,
            (_, ZoomError::Unavailable { retry_after, .. }) => Renewal::Failed { retry_after },
            _ => Renewal::Failed { retry_after: None },
        },
    })
}
