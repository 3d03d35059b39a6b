//! The Zoom account behind an OAuth connection, from `GET /v2/users/me`.
//!
//! Events are routed by account ID, so a connection whose account is unknown receives none,
//! `app_deauthorized` included. The OAuth callback reads the account once, best effort; when
//! that failed (a missing `user:read:user` scope, Zoom unavailable), the reconciler reads it
//! again every [`RETRY`] and as soon as there is a new access token (a refresh, a new
//! authorization after the app's scopes changed), and `EventsReady` says why in the meantime
//! (api.md section 2, `AccountUnknown`).
//!
//! What was tried is kept in memory, one entry per connection: a new leader simply tries once
//! more.

use jiff::{SignedDuration, Timestamp};

use crate::api::{ZoomAccount, ZoomConnection};
use crate::tokens::secret::TokenRecord;
use crate::tokens::transition;
use crate::zoom::client::ZoomError;

use super::Context;

/// How often an unknown account is read again while the grant's scopes stay the same.
pub const RETRY: SignedDuration = SignedDuration::from_secs(300);

/// The last failed read of a connection's account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRead {
    pub at: Timestamp,
    /// Which access token was tried (a SHA-256 prefix, never the token): a new token (a
    /// refresh, or a new authorization after the app gained a scope) is read with at once.
    pub token: String,
    /// Why the account is unknown, for people (no token, no response body).
    pub problem: String,
}

/// Why events cannot be routed to a connection yet, and when the account is read again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountUnknown {
    pub problem: String,
    pub retry_at: Option<Timestamp>,
}

impl AccountUnknown {
    /// The `EventsReady=False/AccountUnknown` message.
    pub fn message(&self) -> String {
        format!(
            "Events for this connection cannot be routed: its Zoom account is unknown because {}. \
             The operator reads /v2/users/me again every {} minutes and with every new access token",
            self.problem,
            RETRY.as_secs() / 60
        )
    }
}

/// True when the connection needs its account read: an OAuth grant in use whose account ID
/// is not known. (Server-to-Server connections route by the app's `accountId`.)
pub fn is_missing(zc: &ZoomConnection, record: &TokenRecord) -> bool {
    let known = record
        .account
        .as_ref()
        .and_then(|a| a.account_id.as_deref())
        .is_some_and(|id| !id.is_empty());
    zc.spec.auth_type.is_oauth()
        && record.grant.is_some()
        && record.grant_problem.is_none()
        && !known
}

/// Reads the account when it is missing and a read is due; stores it in the token Secret
/// (and so in status, which the routing index reads) when Zoom answers. `record` is updated
/// to what was written. None: the account is known, or the connection needs none.
pub async fn ensure(
    ctx: &Context,
    zc: &ZoomConnection,
    uid: &str,
    record: &mut TokenRecord,
    now: Timestamp,
) -> Option<AccountUnknown> {
    if !is_missing(zc, record) {
        ctx.set_account_read(uid, None);
        return None;
    }
    let grant = record.grant.clone()?;
    let token = fingerprint(&grant.access_token);
    if let Some(last) = ctx.account_read(uid) {
        let retry_at = last.at.checked_add(RETRY).unwrap_or(Timestamp::MAX);
        if last.token == token && retry_at > now {
            return Some(AccountUnknown {
                problem: last.problem,
                retry_at: Some(retry_at),
            });
        }
    }
    let problem = if grant.expires_at <= now {
        // The next refresh brings a usable token; the read follows it.
        "the access token is expired".to_owned()
    } else {
        match ctx.zoom.users_me(&grant.access_token).await {
            Ok(user) => match user.account_id.filter(|a| !a.is_empty()) {
                Some(account_id) => {
                    let account = ZoomAccount {
                        account_id: Some(account_id),
                        user_id: Some(user.id),
                        email: user.email,
                    };
                    match store(ctx, zc, &grant.access_token, account).await {
                        Ok(written) => {
                            tracing::info!(connection = %who(zc), "read the connection's Zoom account");
                            *record = written;
                            ctx.set_account_read(uid, None);
                            return None;
                        }
                        Err(why) => why,
                    }
                }
                None => "Zoom's /v2/users/me answered without an account_id".to_owned(),
            },
            Err(e) => describe(&e),
        }
    };
    tracing::warn!(connection = %who(zc), problem = %problem, "the connection's Zoom account is unknown");
    let retry_at = now.checked_add(RETRY).ok();
    ctx.set_account_read(
        uid,
        Some(AccountRead {
            at: now,
            token,
            problem: problem.clone(),
        }),
    );
    Some(AccountUnknown { problem, retry_at })
}

/// Writes the account, unless the grant changed meanwhile (then the next pass reads again
/// with the new token).
async fn store(
    ctx: &Context,
    zc: &ZoomConnection,
    access_token: &str,
    account: ZoomAccount,
) -> Result<TokenRecord, String> {
    let written = ctx
        .token_store(zc)
        .update(zc, |current| {
            Ok::<_, ()>(transition::account_read(current, access_token, &account))
        })
        .await;
    match written {
        Ok(Ok(record)) if record.account.as_ref() == Some(&account) => Ok(record),
        Ok(_) => Err("the grant changed while its account was read".to_owned()),
        Err(e) => Err(format!(
            "the account was read but could not be stored in the token Secret ({e})"
        )),
    }
}

/// Why a users/me read failed, in words that say what to do.
pub fn describe(e: &ZoomError) -> String {
    if e.is_missing_scope() {
        "the grant lacks the user:read:user scope (Zoom answered 4711); add the scope to the Zoom app and authorize the connection again".to_owned()
    } else {
        format!("reading /v2/users/me failed: {e}")
    }
}

fn fingerprint(access_token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(access_token.as_bytes())[..8])
}

fn who(zc: &ZoomConnection) -> String {
    format!(
        "{}/{}",
        zc.metadata.namespace.as_deref().unwrap_or_default(),
        zc.metadata.name.as_deref().unwrap_or_default()
    )
}
