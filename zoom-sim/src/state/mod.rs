//! The in-memory model of Zoom's OAuth server: registered apps, authorization
//! codes, grants (access + refresh token pairs) and counters.
//!
//! Everything here is pure: no I/O, no clock reads (callers pass `now`), no HTTP
//! types. Errors come back as plain data ([`OAuthError`], [`ApiError`]) that the
//! HTTP layer renders in Zoom's JSON shapes. That keeps the behaviours that
//! matter (single-use codes, PKCE, refresh-token rotation and reuse detection,
//! expiry) testable with a fake clock.
//!
//! Zoom behaviours modelled (from Zoom's OAuth documentation):
//! - authorization codes expire after 5 minutes and can be exchanged once;
//! - each refresh returns a NEW refresh token and the previous one stops working
//!   (thereafter answered in one of the forms Zoom has used, see [`RefreshRejection`]);
//! - `account_credentials` (Server-to-Server apps) returns no refresh token and
//!   several access tokens may be live at once;
//! - access tokens last one hour by default (Zoom answers `expires_in: 3599`).

mod pkce;
mod types;
mod users;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

pub use crate::clock::Millis;
use crate::tokens::{self, TokenKind};
pub use pkce::{s256_challenge, Pkce, PkceMethod};
pub use types::*;
pub use users::UserError;

/// The query of `GET /oauth/authorize`, each parameter as given (if given).
#[derive(Clone, Debug, Default)]
pub struct AuthorizeRequest {
    pub client_id: Option<String>,
    pub response_type: Option<String>,
    pub redirect_uri: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    /// Which of the app's users signs in and consents: a user id or email. Zoom documents no
    /// such parameter; it is zoom-sim's way to pick a user (OpenID Connect's name for it).
    pub login_hint: Option<String>,
}

/// What the authorize endpoint should answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    /// 302 to this URL (a code, or an OAuth error the client should see).
    Redirect(String),
    /// Show the consent page for this pending request.
    ConsentPage {
        request_id: String,
        app_name: String,
        scopes: Vec<String>,
        redirect_uri: String,
        /// The email of the user who is consenting.
        user_email: String,
    },
}

/// Authorize requests that cannot safely redirect anywhere: shown as an HTML error page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizePageError(pub String);

/// Parameters of `POST /oauth/token`, wherever they came from (body or query).
#[derive(Clone, Debug, Default)]
pub struct TokenParams {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub account_id: Option<String>,
}

/// Client credentials as presented (Basic header or form fields).
#[derive(Clone)]
pub struct ClientAuth {
    pub client_id: String,
    pub client_secret: String,
}

/// Never print the secret, even in a failing test's output.
impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// A successful token answer, minus `api_url` (which depends on how we were reached).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: u64,
    pub scope: String,
}

/// What a valid bearer token stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub app: App,
    /// The user who authorized the grant (for S2S tokens, the app's own user: the owner).
    pub user: User,
}

impl Principal {
    pub fn user_id(&self) -> &str {
        &self.user.user_id
    }

    pub fn account_id(&self) -> &str {
        &self.user.account_id
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// The token belonged to a live grant, which is now gone (access and refresh). With
    /// `revoke_sends_deauthorization`, revoking a user grant uninstalls the app for that user:
    /// `deauthorized` names who, for the `app_deauthorized` event.
    Revoked { deauthorized: Option<User> },
    /// Nothing matched; per RFC 7009 §2.2 this still answers success.
    UnknownToken,
}

#[derive(Clone, Debug)]
struct AuthCode {
    client_id: String,
    user_id: String,
    redirect_uri: String,
    pkce: Option<Pkce>,
    expires_at: Millis,
}

#[derive(Clone, Debug)]
struct PendingConsent {
    client_id: String,
    user_id: String,
    redirect_uri: String,
    state: Option<String>,
    pkce: Option<Pkce>,
    expires_at: Millis,
}

type GrantId = u64;

/// One authorization: the current access token and (for user grants) refresh token.
#[derive(Clone, Debug)]
struct Grant {
    client_id: String,
    user_id: String,
    account_id: String,
    access_token: String,
    access_expires_at: Millis,
    refresh: Option<(String, Millis)>,
    /// When the user authorized: the end of an `absolute` refresh-token lifetime counts from here.
    authorized_at: Millis,
}

impl Grant {
    fn is_active(&self, now: Millis) -> bool {
        self.access_expires_at > now || self.refresh.as_ref().is_some_and(|(_, exp)| *exp > now)
    }
}

/// Puts `new` in place of `current`;
/// the old value stays valid as `previous` for `grace_ms`. Returns the new value and the end
/// of the grace period.
fn rotate(
    current: &mut String,
    previous: &mut Option<PreviousSecret>,
    new: String,
    grace_ms: Millis,
    now: Millis,
) -> (String, Option<Millis>) {
    let old = std::mem::replace(current, new.clone());
    *previous = (grace_ms > 0).then(|| PreviousSecret {
        value: old,
        valid_until_ms: now.saturating_add(grace_ms),
    });
    (new, previous.as_ref().map(|p| p.valid_until_ms))
}

/// S2S grants have no refresh token; once expired for this long they are dropped
/// (until then an expired S2S token still gets "Access token is expired.").
const EXPIRED_S2S_RETENTION_MS: Millis = 24 * 3600 * 1000;

/// The whole simulated OAuth server.
#[derive(Debug, Default)]
pub struct Sim {
    settings: Settings,
    apps: BTreeMap<String, App>,
    codes: HashMap<String, AuthCode>,
    pending: HashMap<String, PendingConsent>,
    grants: HashMap<GrantId, Grant>,
    next_grant: GrantId,
    access_index: HashMap<String, GrantId>,
    refresh_index: HashMap<String, GrantId>,
    /// Refresh tokens rotated out by a refresh, with the client they belonged to:
    /// presenting one again is "reuse", which real clients do when they lose the
    /// race to persist the new token. Revoked tokens are not kept here.
    retired_refresh: HashMap<String, String>,
    /// Users registered for an app besides its own, in registration order (at most
    /// [`MAX_USERS_PER_APP`] each).
    users: HashMap<String, Vec<User>>,
    /// Per app: the id of the user who consents when a request names none (`login_hint`).
    consenting: HashMap<String, String>,
    totals: Counters,
    per_client: HashMap<String, Counters>,
}

/// When a refresh token issued by a refresh at `now` expires: N from now (`sliding`), or N from
/// the original authorization (`absolute`), never later than the sliding end.
pub fn next_refresh_expiry(
    expiry: RefreshTokenExpiry,
    lifetime_secs: u64,
    authorized_at: Millis,
    now: Millis,
) -> Millis {
    let sliding = now.saturating_add(secs_to_ms(lifetime_secs));
    match expiry {
        RefreshTokenExpiry::Sliding => sliding,
        RefreshTokenExpiry::Absolute => authorized_at
            .saturating_add(secs_to_ms(lifetime_secs))
            .min(sliding),
    }
}

fn secs_to_ms(secs: u64) -> Millis {
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
}

/// The code flow and PKCE challenge an authorization request asks for, or the OAuth error
/// (code and description) to redirect back with.
fn requested_pkce(req: &AuthorizeRequest) -> Result<Option<Pkce>, (&'static str, String)> {
    if req.response_type.as_deref() != Some("code") {
        return Err((
            "unsupported_response_type",
            "response_type must be code".to_owned(),
        ));
    }
    match non_empty(&req.code_challenge) {
        None if non_empty(&req.code_challenge_method).is_some() => Err((
            "invalid_request",
            "code_challenge_method without code_challenge".to_owned(),
        )),
        None => Ok(None),
        Some(challenge) => Pkce::from_request(challenge, non_empty(&req.code_challenge_method))
            .map(Some)
            .map_err(|why| ("invalid_request", why)),
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// Appends query parameters to an already-validated absolute URL.
fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(base) {
        Ok(mut url) => {
            {
                let mut pairs = url.query_pairs_mut();
                for (k, v) in params {
                    pairs.append_pair(k, v);
                }
            }
            url.into()
        }
        // Unreachable for URIs that passed validate_redirect_uri; keep the base.
        Err(_) => base.to_owned(),
    }
}

/// Zoom checks redirect_uri against the app's allow list; we accept any absolute
/// http(s) URL without a fragment (RFC 6749 §3.1.2) and bind it to the code.
pub fn validate_redirect_uri(raw: &str) -> Result<(), String> {
    let url =
        url::Url::parse(raw).map_err(|e| format!("redirect_uri is not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("redirect_uri must use http or https".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("redirect_uri must name a host".to_owned());
    }
    if url.fragment().is_some() {
        return Err("redirect_uri must not contain a fragment".to_owned());
    }
    Ok(())
}

impl Sim {
    pub fn new(settings: Settings) -> Self {
        Sim {
            settings,
            ..Sim::default()
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    // ----- apps -------------------------------------------------------------

    pub fn register_app(&mut self, app: App) -> Result<(), String> {
        if self.apps.contains_key(&app.client_id) {
            return Err(format!(
                "an app with client_id {:?} is already registered",
                app.client_id
            ));
        }
        self.apps.insert(app.client_id.clone(), app);
        Ok(())
    }

    pub fn app(&self, client_id: &str) -> Option<&App> {
        self.apps.get(client_id)
    }

    pub fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    /// Replaces the app's `which` secret (random if None); the old one keeps working
    /// for `grace_ms` (for the secret token: url_validation answers made with it are
    /// accepted, while webhooks are signed with the new one at once). Returns the new
    /// value and the end of the grace period.
    pub fn rotate_secret(
        &mut self,
        client_id: &str,
        which: AppSecret,
        new: Option<String>,
        grace_ms: Millis,
        now: Millis,
    ) -> Option<(String, Option<Millis>)> {
        let app = self.apps.get_mut(client_id)?;
        let new = new
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| tokens::random_b64(which.random_len()));
        let (current, previous) = which.slots(app);
        Some(rotate(current, previous, new, grace_ms, now))
    }

    // ----- counters ---------------------------------------------------------

    /// Applies `f` to the totals and, when the client is a registered app, to its counters.
    fn bump(&mut self, client_id: Option<&str>, f: impl Fn(&mut Counters)) {
        f(&mut self.totals);
        if let Some(id) = client_id.filter(|id| self.apps.contains_key(*id)) {
            f(self.per_client.entry(id.to_owned()).or_default());
        }
    }

    /// Counts something the HTTP layer observed (webhook deliveries, rate limiting).
    pub fn count(&mut self, client_id: Option<&str>, f: impl Fn(&mut Counters)) {
        self.bump(client_id, f);
    }

    /// Totals, or one app's counters (None if the app is unknown).
    pub fn stats(&self, client_id: Option<&str>, now: Millis) -> Option<StatsView> {
        let (counters, active) = match client_id {
            None => (
                self.totals,
                self.grants.values().filter(|g| g.is_active(now)).count(),
            ),
            Some(id) => {
                self.apps.get(id)?;
                let active = self
                    .grants
                    .values()
                    .filter(|g| g.client_id == id && g.is_active(now))
                    .count();
                (self.per_client.get(id).copied().unwrap_or_default(), active)
            }
        };
        Some(StatsView {
            counters,
            active_grants: active as u64,
        })
    }

    // ----- authorize ----------------------------------------------------------

    /// The app an authorization request is for and its registered redirect URI, or the error
    /// page for a request that cannot safely be redirected back (counted either way).
    fn authorizing_app<'r>(
        &mut self,
        req: &'r AuthorizeRequest,
    ) -> Result<(App, &'r str), AuthorizePageError> {
        let client_id = non_empty(&req.client_id);
        self.bump(client_id, |c| c.authorize_requests += 1);
        let client_id =
            client_id.ok_or_else(|| AuthorizePageError("Missing client_id.".to_owned()))?;
        let app = self
            .apps
            .get(client_id)
            .ok_or_else(|| AuthorizePageError(format!("Invalid client_id: {client_id}")))?
            .clone();
        if app.disabled {
            return Err(AuthorizePageError(
                "The app has been disabled (4717).".to_owned(),
            ));
        }
        if app.kind != AppKind::Oauth {
            return Err(AuthorizePageError(
                "This is a Server-to-Server OAuth app; it cannot be authorized by a user."
                    .to_owned(),
            ));
        }
        let redirect_uri = non_empty(&req.redirect_uri)
            .ok_or_else(|| AuthorizePageError("Missing redirect_uri.".to_owned()))?;
        validate_redirect_uri(redirect_uri).map_err(AuthorizePageError)?;
        if !app.accepts_redirect(redirect_uri) {
            // Zoom shows an error page rather than redirect to a URL the app never registered.
            return Err(AuthorizePageError(
                "Redirect URI mismatch. (4709)".to_owned(),
            ));
        }
        Ok((app, redirect_uri))
    }

    /// `GET /oauth/authorize`. Problems that make redirecting unsafe (unknown
    /// client, bad redirect_uri) are page errors; the rest are redirected back to
    /// the client as OAuth errors (RFC 6749 §4.1.2.1).
    pub fn authorize(
        &mut self,
        req: &AuthorizeRequest,
        now: Millis,
    ) -> Result<AuthorizeOutcome, AuthorizePageError> {
        let (app, redirect_uri) = self.authorizing_app(req)?;
        let user = self
            .consenting_user(&app.client_id, non_empty(&req.login_hint))
            .map_err(|e| AuthorizePageError(format!("{e} (login_hint)")))?;
        let state = non_empty(&req.state);
        let error_redirect = |error: &str, description: &str| {
            let mut params = vec![("error", error), ("error_description", description)];
            if let Some(state) = state {
                params.push(("state", state));
            }
            AuthorizeOutcome::Redirect(with_query(redirect_uri, &params))
        };

        let pkce = match requested_pkce(req) {
            Ok(pkce) => pkce,
            Err((error, description)) => return Ok(error_redirect(error, &description)),
        };

        match self.settings.consent {
            ConsentMode::Approve => Ok(AuthorizeOutcome::Redirect(self.issue_code(
                &app,
                &user.user_id,
                redirect_uri,
                state,
                pkce,
                now,
            ))),
            ConsentMode::Deny => Ok(AuthorizeOutcome::Redirect(denied_redirect(
                redirect_uri,
                state,
            ))),
            ConsentMode::Page => {
                self.pending.retain(|_, p| p.expires_at > now);
                let request_id = tokens::opaque_id();
                self.pending.insert(
                    request_id.clone(),
                    PendingConsent {
                        client_id: app.client_id.clone(),
                        user_id: user.user_id.clone(),
                        redirect_uri: redirect_uri.to_owned(),
                        state: state.map(str::to_owned),
                        pkce,
                        expires_at: now + CONSENT_LIFETIME_MS,
                    },
                );
                Ok(AuthorizeOutcome::ConsentPage {
                    request_id,
                    app_name: app.name.clone(),
                    scopes: app.scopes.clone(),
                    redirect_uri: redirect_uri.to_owned(),
                    user_email: user.email,
                })
            }
        }
    }

    /// `POST /oauth/authorize/decision`: the consent page's answer. The pending
    /// request is single use whatever the decision.
    pub fn decide(
        &mut self,
        request_id: &str,
        approve: bool,
        now: Millis,
    ) -> Result<String, AuthorizePageError> {
        let pending = self
            .pending
            .remove(request_id)
            .filter(|p| p.expires_at > now)
            .ok_or_else(|| {
                AuthorizePageError(
                    "This authorization request has expired or was already answered; start again."
                        .to_owned(),
                )
            })?;
        let app = self
            .apps
            .get(&pending.client_id)
            .cloned()
            .ok_or_else(|| AuthorizePageError("The app is no longer registered.".to_owned()))?;
        let state = pending.state.as_deref();
        if approve {
            Ok(self.issue_code(
                &app,
                &pending.user_id,
                &pending.redirect_uri,
                state,
                pending.pkce,
                now,
            ))
        } else {
            Ok(denied_redirect(&pending.redirect_uri, state))
        }
    }

    fn issue_code(
        &mut self,
        app: &App,
        user_id: &str,
        redirect_uri: &str,
        state: Option<&str>,
        pkce: Option<Pkce>,
        now: Millis,
    ) -> String {
        self.codes.retain(|_, c| c.expires_at > now);
        let code = tokens::opaque_id();
        self.codes.insert(
            code.clone(),
            AuthCode {
                client_id: app.client_id.clone(),
                user_id: user_id.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                pkce,
                expires_at: now + CODE_LIFETIME_MS,
            },
        );
        let mut params = vec![("code", code.as_str())];
        if let Some(state) = state {
            params.push(("state", state));
        }
        with_query(redirect_uri, &params)
    }

    // ----- token --------------------------------------------------------------

    /// `POST /oauth/token`, with request/failure counting in one place.
    pub fn token(
        &mut self,
        auth: Option<&ClientAuth>,
        params: &TokenParams,
        now: Millis,
    ) -> Result<IssuedTokens, OAuthError> {
        let claimed = auth.map(|a| a.client_id.clone());
        self.bump(claimed.as_deref(), |c| c.token_requests += 1);
        let result = self.token_inner(auth, params, now);
        if result.is_err() {
            self.bump(claimed.as_deref(), |c| c.failed_token_requests += 1);
        }
        result
    }

    fn authenticate(&self, auth: Option<&ClientAuth>, now: Millis) -> Result<App, OAuthError> {
        let auth = auth.ok_or_else(OAuthError::invalid_client)?;
        match self.apps.get(&auth.client_id) {
            Some(app) if app.accepts_client_secret(&auth.client_secret, now) && app.disabled => {
                Err(OAuthError::app_disabled())
            }
            Some(app) if app.accepts_client_secret(&auth.client_secret, now) => Ok(app.clone()),
            _ => Err(OAuthError::invalid_client()),
        }
    }

    fn token_inner(
        &mut self,
        auth: Option<&ClientAuth>,
        params: &TokenParams,
        now: Millis,
    ) -> Result<IssuedTokens, OAuthError> {
        let app = self.authenticate(auth, now)?;
        let grant_type = non_empty(&params.grant_type)
            .ok_or_else(|| OAuthError::invalid_request("Missing grant type."))?;
        match (grant_type, app.kind) {
            ("authorization_code", AppKind::Oauth) => self.exchange_code(&app, params, now),
            ("refresh_token", AppKind::Oauth) => self.refresh(&app, params, now),
            ("account_credentials", AppKind::S2s) => self.account_credentials(&app, params, now),
            _ => Err(OAuthError::unsupported_grant_type()),
        }
    }

    fn exchange_code(
        &mut self,
        app: &App,
        params: &TokenParams,
        now: Millis,
    ) -> Result<IssuedTokens, OAuthError> {
        let code = non_empty(&params.code).ok_or_else(|| OAuthError::missing("code"))?;
        let redirect_uri =
            non_empty(&params.redirect_uri).ok_or_else(|| OAuthError::missing("redirect_uri"))?;
        if !app.accepts_redirect(redirect_uri) {
            // Checked before the code is looked at: a mistyped URL does not burn the code.
            return Err(OAuthError::redirect_uri_mismatch());
        }
        let dialect = self.settings.code_rejection;
        // Another client's code is "invalid" to this one, and must not be burned by it.
        match self.codes.get(code) {
            Some(entry) if entry.client_id == app.client_id => {
                if entry.pkce.is_some() && non_empty(&params.code_verifier).is_none() {
                    return Err(OAuthError::missing("code_verifier"));
                }
            }
            _ => return Err(OAuthError::invalid_code(code, None, dialect)),
        }
        // Single use: from here on the code is gone, whether this attempt succeeds or not,
        // so a verifier cannot be brute-forced against one code.
        let entry = self
            .codes
            .remove(code)
            .ok_or_else(|| OAuthError::invalid_code(code, None, dialect))?;
        if entry.expires_at <= now {
            return Err(OAuthError::invalid_code(
                code,
                Some("the code has expired"),
                dialect,
            ));
        }
        if entry.redirect_uri != redirect_uri {
            return Err(OAuthError::invalid_code(
                code,
                Some("redirect_uri does not match the authorization request"),
                dialect,
            ));
        }
        if let Some(pkce) = &entry.pkce {
            let verifier = non_empty(&params.code_verifier).unwrap_or_default();
            if !pkce.verify(verifier) {
                return Err(OAuthError::invalid_code(
                    code,
                    Some("code_verifier does not match code_challenge"),
                    dialect,
                ));
            }
        }
        let user = self
            .user_by_id(&app.client_id, &entry.user_id)
            .unwrap_or_else(|| app.own_user());
        self.supersede_grants(app, &user.user_id);
        let issued = self.new_grant(app, &user, true, now);
        self.bump(Some(&app.client_id), |c| c.authorization_code_grants += 1);
        Ok(issued)
    }

    fn refresh(
        &mut self,
        app: &App,
        params: &TokenParams,
        now: Millis,
    ) -> Result<IssuedTokens, OAuthError> {
        let presented =
            non_empty(&params.refresh_token).ok_or_else(|| OAuthError::missing("refresh_token"))?;
        let dialect = self.settings.refresh_rejection;
        let dead = move || OAuthError::invalid_refresh_token(dialect);
        if let Some(owner) = self.retired_refresh.get(presented) {
            if owner == &app.client_id {
                self.bump(Some(&app.client_id), |c| c.reused_refresh_tokens += 1);
            }
            return Err(dead());
        }
        let grant_id = *self.refresh_index.get(presented).ok_or_else(dead)?;
        let lifetime = self.settings.token_lifetime_secs;
        let refresh_lifetime = self.settings.refresh_token_lifetime_secs;
        let expiry = self.settings.refresh_token_expiry;
        let dead = dead();
        let grant = self.grants.get_mut(&grant_id).ok_or_else(|| dead.clone())?;
        if grant.client_id != app.client_id {
            return Err(dead);
        }
        let refresh_expires_at =
            next_refresh_expiry(expiry, refresh_lifetime, grant.authorized_at, now);
        if grant.refresh.as_ref().is_none_or(|(_, exp)| *exp <= now) || refresh_expires_at <= now {
            return Err(dead);
        }

        // Rotate both tokens: the previous pair stops working at once.
        let access = tokens::jwt_like(TokenKind::Access, &app.client_id, now, lifetime);
        let refresh_secs = u64::try_from((refresh_expires_at - now) / 1000).unwrap_or(0);
        let refresh = tokens::jwt_like(TokenKind::Refresh, &app.client_id, now, refresh_secs);
        let old_access = std::mem::replace(&mut grant.access_token, access.clone());
        grant.access_expires_at = now + secs_to_ms(lifetime);
        let old_refresh = grant.refresh.replace((refresh.clone(), refresh_expires_at));
        self.access_index.remove(&old_access);
        self.access_index.insert(access.clone(), grant_id);
        if let Some((old_refresh, _)) = old_refresh {
            self.refresh_index.remove(&old_refresh);
            self.retired_refresh
                .insert(old_refresh, app.client_id.clone());
        }
        self.refresh_index.insert(refresh.clone(), grant_id);
        self.bump(Some(&app.client_id), |c| c.refreshes += 1);
        Ok(IssuedTokens {
            access_token: access,
            refresh_token: Some(refresh),
            expires_in: lifetime,
            scope: app.scope_string(),
        })
    }

    fn account_credentials(
        &mut self,
        app: &App,
        params: &TokenParams,
        now: Millis,
    ) -> Result<IssuedTokens, OAuthError> {
        let account_id =
            non_empty(&params.account_id).ok_or_else(|| OAuthError::missing("account_id"))?;
        if account_id != app.account_id {
            return Err(OAuthError::invalid_request("Invalid account_id"));
        }
        self.prune_expired_s2s(now);
        let issued = self.new_grant(app, &app.own_user(), false, now);
        self.bump(Some(&app.client_id), |c| c.account_credentials_grants += 1);
        Ok(issued)
    }

    /// One grant per Zoom user and app (with `grant_tolerance` 1, as Zoom): before a new user
    /// grant is issued, the user's oldest grants of the app beyond the tolerance are dropped,
    /// so their access and refresh tokens stop working.
    fn supersede_grants(&mut self, app: &App, user_id: &str) {
        let tolerance = self.settings.grant_tolerance as usize;
        if tolerance == 0 {
            return;
        }
        let mut held: Vec<GrantId> = self
            .grants
            .iter()
            .filter(|(_, g)| {
                g.client_id == app.client_id && g.user_id == user_id && g.refresh.is_some()
            })
            .map(|(id, _)| *id)
            .collect();
        held.sort_unstable();
        let excess = (held.len() + 1).saturating_sub(tolerance);
        for id in held.into_iter().take(excess) {
            if let Some(grant) = self.grants.remove(&id) {
                self.access_index.remove(&grant.access_token);
                if let Some((token, _)) = &grant.refresh {
                    self.refresh_index.remove(token);
                }
                self.bump(Some(&app.client_id), |c| c.superseded_grants += 1);
            }
        }
    }

    fn new_grant(
        &mut self,
        app: &App,
        user: &User,
        with_refresh: bool,
        now: Millis,
    ) -> IssuedTokens {
        let lifetime = self.settings.token_lifetime_secs;
        let access = tokens::jwt_like(TokenKind::Access, &app.client_id, now, lifetime);
        let refresh = with_refresh.then(|| {
            let lifetime = self.settings.refresh_token_lifetime_secs;
            (
                tokens::jwt_like(TokenKind::Refresh, &app.client_id, now, lifetime),
                now + secs_to_ms(lifetime),
            )
        });
        let id = self.next_grant;
        self.next_grant += 1;
        self.access_index.insert(access.clone(), id);
        if let Some((token, _)) = &refresh {
            self.refresh_index.insert(token.clone(), id);
        }
        let refresh_token = refresh.as_ref().map(|(t, _)| t.clone());
        self.grants.insert(
            id,
            Grant {
                client_id: app.client_id.clone(),
                user_id: user.user_id.clone(),
                account_id: user.account_id.clone(),
                access_token: access.clone(),
                access_expires_at: now + secs_to_ms(lifetime),
                refresh,
                authorized_at: now,
            },
        );
        IssuedTokens {
            access_token: access,
            refresh_token,
            expires_in: lifetime,
            scope: app.scope_string(),
        }
    }

    fn prune_expired_s2s(&mut self, now: Millis) {
        let stale: Vec<GrantId> = self
            .grants
            .iter()
            .filter(|(_, g)| {
                g.refresh.is_none() && g.access_expires_at + EXPIRED_S2S_RETENTION_MS <= now
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.remove_grant(id);
        }
    }

    fn remove_grant(&mut self, id: GrantId) -> Option<Grant> {
        let grant = self.grants.remove(&id)?;
        self.access_index.remove(&grant.access_token);
        if let Some((refresh, _)) = &grant.refresh {
            self.refresh_index.remove(refresh);
        }
        Some(grant)
    }

    // ----- revoke / deauthorize -------------------------------------------------

    /// `POST /oauth/revoke`: revokes the whole grant (access and refresh) that the
    /// token belongs to. A token of another app is refused; an unknown one is
    /// "revoked" successfully (RFC 7009 §2.2).
    pub fn revoke(
        &mut self,
        auth: Option<&ClientAuth>,
        token: Option<&str>,
        now: Millis,
    ) -> Result<RevokeOutcome, OAuthError> {
        let app = self.authenticate(auth, now)?;
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::missing("token"))?;
        let found = self
            .access_index
            .get(token)
            .or_else(|| self.refresh_index.get(token))
            .copied();
        let outcome = match found {
            None => RevokeOutcome::UnknownToken,
            Some(id) => {
                if self
                    .grants
                    .get(&id)
                    .is_some_and(|g| g.client_id != app.client_id)
                {
                    return Err(OAuthError::invalid_request("Invalid Token"));
                }
                let grant = self.remove_grant(id);
                // Only a user's grant is an installation; S2S tokens are just tokens.
                let deauthorized = grant
                    .filter(|g| g.refresh.is_some() && self.settings.revoke_sends_deauthorization)
                    .and_then(|g| self.user_by_id(&app.client_id, &g.user_id));
                if deauthorized.is_some() {
                    self.bump(Some(&app.client_id), |c| c.deauthorizations += 1);
                }
                RevokeOutcome::Revoked { deauthorized }
            }
        };
        self.bump(Some(&app.client_id), |c| c.revokes += 1);
        Ok(outcome)
    }

    /// The user (or admin) uninstalls the app: every grant of that app (for that
    /// user, if given) is revoked. Returns the app, the number of grants revoked and who
    /// deauthorized: that user; without one, every user whose grants were revoked, or the
    /// app's own user when none held any.
    pub fn deauthorize(
        &mut self,
        client_id: &str,
        user_id: Option<&str>,
    ) -> Option<(App, usize, Vec<User>)> {
        let app = self.apps.get(client_id)?.clone();
        let mut doomed: Vec<(GrantId, String)> = self
            .grants
            .iter()
            .filter(|(_, g)| g.client_id == client_id && user_id.is_none_or(|u| g.user_id == u))
            .map(|(id, g)| (*id, g.user_id.clone()))
            .collect();
        doomed.sort_unstable();
        for (id, _) in &doomed {
            self.remove_grant(*id);
        }
        let mut users: Vec<User> = match user_id {
            // A user zoom-sim does not know is still named as given, in the app's account.
            Some(id) => vec![self.find_user(client_id, id).unwrap_or_else(|| User {
                user_id: id.to_owned(),
                ..app.own_user()
            })],
            None => self
                .users(client_id)
                .unwrap_or_default()
                .into_iter()
                .filter(|u| doomed.iter().any(|(_, holder)| holder == &u.user_id))
                .collect(),
        };
        if users.is_empty() {
            users.push(app.own_user());
        }
        let n = users.len() as u64;
        self.bump(Some(client_id), |c| c.deauthorizations += n);
        Some((app, doomed.len(), users))
    }

    /// Makes the refresh tokens of an app's grants (of one user, if given) dead now, as if
    /// they had expired; access tokens keep working until their own expiry. Returns the app's
    /// existence and the number of refresh tokens expired.
    pub fn expire_refresh(
        &mut self,
        client_id: &str,
        user_id: Option<&str>,
        now: Millis,
    ) -> Option<usize> {
        self.apps.get(client_id)?;
        let mut expired = 0;
        for grant in self
            .grants
            .values_mut()
            .filter(|g| g.client_id == client_id && user_id.is_none_or(|u| g.user_id == u))
        {
            if let Some((_, exp)) = grant.refresh.as_mut().filter(|(_, exp)| *exp > now) {
                *exp = now;
                expired += 1;
            }
        }
        Some(expired)
    }

    /// Disables (or enables again) an app at "Zoom": while disabled, its token, revoke,
    /// authorize and API requests answer 4717. Returns false for an unknown app.
    pub fn set_disabled(&mut self, client_id: &str, disabled: bool) -> bool {
        match self.apps.get_mut(client_id) {
            Some(app) => {
                app.disabled = disabled;
                true
            }
            None => false,
        }
    }

    /// Replaces the app's scopes. They apply at once to every token of the app, current ones
    /// included (Zoom would have its users authorize again for added scopes). Returns false
    /// for an unknown app.
    pub fn set_scopes(&mut self, client_id: &str, scopes: Vec<String>) -> bool {
        match self.apps.get_mut(client_id) {
            Some(app) => {
                app.scopes = scopes;
                true
            }
            None => false,
        }
    }

    // ----- API --------------------------------------------------------------------

    /// Resolves a bearer token for `GET /v2/users/me`.
    pub fn users_me(&mut self, bearer: Option<&str>, now: Millis) -> Result<Principal, ApiError> {
        self.api_principal(bearer, now, |c| c.users_me += 1)
    }

    /// Resolves a bearer token for a REST call, counting it with `count`.
    pub fn api_principal(
        &mut self,
        bearer: Option<&str>,
        now: Millis,
        count: impl Fn(&mut Counters),
    ) -> Result<Principal, ApiError> {
        let grant = bearer
            .and_then(|t| self.access_index.get(t))
            .and_then(|id| self.grants.get(id))
            .cloned();
        self.bump(grant.as_ref().map(|g| g.client_id.as_str()), count);
        let grant = grant.ok_or_else(ApiError::invalid_access_token)?;
        if grant.access_expires_at <= now {
            return Err(ApiError::expired_access_token());
        }
        let app = self
            .apps
            .get(&grant.client_id)
            .cloned()
            .ok_or_else(ApiError::invalid_access_token)?;
        if app.disabled {
            return Err(ApiError::app_disabled());
        }
        if !app.can_read_own_user() {
            return Err(ApiError::missing_scopes(&USERS_ME_SCOPES[..2]));
        }
        let user = self
            .user_by_id(&app.client_id, &grant.user_id)
            .map(|user| User {
                account_id: grant.account_id,
                ..user
            })
            .unwrap_or_else(|| app.own_user());
        Ok(Principal { app, user })
    }
}

fn denied_redirect(redirect_uri: &str, state: Option<&str>) -> String {
    let mut params = vec![("error", "access_denied")];
    if let Some(state) = state {
        params.push(("state", state));
    }
    with_query(redirect_uri, &params)
}
