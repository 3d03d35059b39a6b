//! The browser side of the authorization-code flow: `GET /oauth/start/zoom/{ns}/{name}` and
//! `GET /oauth/redirect/zoom`. Every failure is a short HTML page with a 4xx (or 502 when Zoom
//! is down) and, where a connection is known, a condition; tokens never appear in a URL, a log
//! line or a page.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kube::api::Api;
use serde::Deserialize;

use crate::api::ObjectRef;
use crate::api::ZoomConnection;
use crate::credentials::{self, AppRead};
use crate::metrics::HttpLabels;
use crate::metrics::Metrics;
use crate::signing::SigningKey;
use crate::signing::{pkce_challenge, Claims, SignatureError};
use crate::tokens::transition::{self, Replayed};
use crate::tokens::TokenStore;
use crate::tokens::{GrantProblem, GrantReason, StoreError, APP_DISABLED};
use crate::urls::{PublicUrls, UrlProblem, UrlState};
use crate::zoom::client::ZoomClient;
use crate::zoom::client::ZoomError;
use crate::zoom::rejection::{Rejection, RequestProblem};

/// What the OAuth handlers need: the API server, Zoom, the signing key, the public URLs and
/// the default app. Nothing of the controller's.
pub struct OAuthState {
    pub client: kube::Client,
    pub zoom: ZoomClient,
    pub signing: SigningKey,
    pub metrics: Metrics,
    pub urls: tokio::sync::watch::Receiver<UrlState>,
    pub default_app_secret: Option<ObjectRef>,
}

impl OAuthState {
    fn token_store(&self, zc: &ZoomConnection) -> TokenStore {
        TokenStore::for_connection(self.client.clone(), zc)
    }

    async fn app_credentials(&self, zc: &ZoomConnection) -> Result<AppRead, kube::Error> {
        credentials::read_app(&self.client, zc, self.default_app_secret.as_ref()).await
    }

    fn current_urls(&self) -> Result<PublicUrls, UrlProblem> {
        crate::urls::current(&self.urls)
    }
}

#[derive(Deserialize)]
pub struct StartQuery {
    ticket: Option<String>,
}

#[derive(Deserialize)]
pub struct RedirectQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// A small HTML page; every dynamic part is escaped.
pub fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}}\
         h1{{font-size:1.4em}}</style></head><body><h1>{t}</h1><p>{m}</p></body></html>",
        t = escape(title),
        m = escape(message)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

pub fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

fn count(ctx: &OAuthState, route: &str, response: Response) -> Response {
    ctx.metrics
        .oauth_requests
        .get_or_create(&HttpLabels {
            route: route.to_owned(),
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// An error page: what went wrong, as the browser is told it. Every handler step returns
/// `Result<_, Refusal>`, so the handlers read as `?` chains and this is the one mapping from
/// an error to a page.
struct Refusal {
    status: StatusCode,
    title: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            title,
            message: message.into(),
        }
    }

    /// The API server (or another dependency) did not answer; nothing was changed.
    fn unavailable(what: &str) -> Refusal {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again in a moment",
            format!("The operator could not reach {what}. Nothing was changed; please retry."),
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        page(self.status, self.title, &self.message)
    }
}

const RESTART: &str = "Start again from the connection's status.authorizeURL.";

pub async fn start(
    State(ctx): State<Arc<OAuthState>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<StartQuery>,
) -> Response {
    let response = start_inner(&ctx, &namespace, &name, query.ticket.as_deref()).await;
    count(&ctx, "start", response.into_response())
}

async fn start_inner(
    ctx: &OAuthState,
    namespace: &str,
    name: &str,
    ticket: Option<&str>,
) -> Result<Response, Refusal> {
    let now = crate::clock::now();
    let claims = verify_ticket(ctx, namespace, name, ticket, now)?;
    let zc = connection(ctx, &claims).await?;
    if !zc.spec.auth_type.is_oauth() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "Nothing to authorize",
            "This connection uses a Server-to-Server app, which needs no browser authorization.",
        ));
    }
    let app = app_credentials(ctx, &zc, "The connection is not ready to authorize").await?;
    let urls = public_urls(ctx)?;
    let (state, state_claims) = ctx.signing.issue_state(namespace, name, &claims.uid, now);
    let verifier = ctx
        .signing
        .pkce_verifier(state_claims.n.as_deref().unwrap_or_default());
    let location = ctx.zoom.authorize_url(
        &app.client_id,
        &urls.redirect_url(),
        &state,
        &pkce_challenge(&verifier),
    );
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response())
}

/// The start link's ticket, checked against the connection the path names.
fn verify_ticket(
    ctx: &OAuthState,
    namespace: &str,
    name: &str,
    ticket: Option<&str>,
    now: jiff::Timestamp,
) -> Result<Claims, Refusal> {
    let forbidden = |why: &str| {
        Refusal::new(
            StatusCode::FORBIDDEN,
            "This link cannot start an authorization",
            format!("{why} Copy the current link from the connection's status.authorizeURL (kubectl get zc {name} -n {namespace} -o jsonpath='{{.status.authorizeURL}}')."),
        )
    };
    let claims = match ticket.map(|t| ctx.signing.verify_ticket(t, now)) {
        None => return Err(forbidden("The link has no ticket.")),
        Some(Err(SignatureError::Expired)) => return Err(forbidden("The link has expired.")),
        Some(Err(_)) => return Err(forbidden("The link's ticket is not valid.")),
        Some(Ok(claims)) => claims,
    };
    if claims.ns != namespace || claims.name != name {
        return Err(forbidden(
            "The link's ticket was issued for another connection.",
        ));
    }
    Ok(claims)
}

/// The connection a ticket or state names, if it still exists as the same object.
async fn connection(ctx: &OAuthState, claims: &Claims) -> Result<ZoomConnection, Refusal> {
    let api: Api<ZoomConnection> = Api::namespaced(ctx.client.clone(), &claims.ns);
    match api.get_opt(&claims.name).await {
        Ok(Some(zc)) if zc.metadata.uid.as_deref() == Some(claims.uid.as_str()) => Ok(zc),
        Ok(_) => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "Connection not found",
            format!(
                "ZoomConnection {}/{} no longer exists (or was re-created); start again from its current status.authorizeURL.",
                claims.ns, claims.name
            ),
        )),
        Err(_) => Err(Refusal::unavailable("Kubernetes")),
    }
}

/// The connection's app credentials, or why they cannot be used (`title` says for what).
async fn app_credentials(
    ctx: &OAuthState,
    zc: &ZoomConnection,
    title: &'static str,
) -> Result<crate::credentials::AppCredentials, Refusal> {
    match ctx.app_credentials(zc).await {
        Ok(read) => read
            .credentials
            .map_err(|problem| Refusal::new(StatusCode::CONFLICT, title, problem.message())),
        Err(_) => Err(Refusal::unavailable("Kubernetes")),
    }
}

fn public_urls(ctx: &OAuthState) -> Result<PublicUrls, Refusal> {
    ctx.current_urls().map_err(|problem| {
        Refusal::new(
            StatusCode::CONFLICT,
            "The operator's public URL is not known",
            problem.message(),
        )
    })
}

pub async fn redirect(
    State(ctx): State<Arc<OAuthState>>,
    Query(query): Query<RedirectQuery>,
) -> Response {
    let response = redirect_inner(&ctx, query).await;
    count(&ctx, "redirect", response.into_response())
}

async fn redirect_inner(ctx: &OAuthState, query: RedirectQuery) -> Result<Response, Refusal> {
    let now = crate::clock::now();
    let claims = verify_state(ctx, query.state.as_deref(), now)?;
    let zc = connection(ctx, &claims).await?;
    if let Some(error) = query.error.as_deref() {
        return Err(zoom_refused(ctx, &zc, error, query.error_description.as_deref()).await);
    }
    let code = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "Missing code",
                format!("Zoom's answer carries no authorization code. {RESTART}"),
            )
        })?;
    let app = app_credentials(ctx, &zc, "The connection's credentials are not usable").await?;
    let urls = public_urls(ctx)?;
    valid_spec(&zc)?;
    consume_state(ctx, &zc, &claims, now).await?;
    let grant = exchange(ctx, &zc, &app, code, &urls, &claims).await?;
    let account = who_authorized(ctx, &zc, &grant).await;
    store_callback(ctx, &zc, &app, grant, account).await
}

/// The callback's state, issued by this operator less than 10 minutes ago.
fn verify_state(
    ctx: &OAuthState,
    state: Option<&str>,
    now: jiff::Timestamp,
) -> Result<Claims, Refusal> {
    let bad =
        |title, why: &str| Refusal::new(StatusCode::BAD_REQUEST, title, format!("{why} {RESTART}"));
    match state.map(|s| ctx.signing.verify_state(s, now)) {
        None => Err(bad(
            "Missing state",
            "Zoom's answer carries no state parameter.",
        )),
        Some(Err(SignatureError::Expired)) => Err(bad(
            "This authorization has expired",
            "Authorizations must finish within 10 minutes.",
        )),
        Some(Err(_)) => Err(bad(
            "Invalid state",
            "The state parameter was not issued by this operator.",
        )),
        Some(Ok(claims)) => Ok(claims),
    }
}

fn who(zc: &ZoomConnection) -> String {
    format!(
        "{}/{}",
        zc.metadata.namespace.as_deref().unwrap_or_default(),
        zc.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Zoom sent the user back with an error (denied, or something else): recorded, and said.
async fn zoom_refused(
    ctx: &OAuthState,
    zc: &ZoomConnection,
    error: &str,
    description: Option<&str>,
) -> Refusal {
    let error = crate::zoom::client::scrub(error);
    let detail = description
        .map(crate::zoom::client::scrub)
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    record_failure(
        ctx,
        zc,
        GrantProblem::new(
            GrantReason::AuthorizationFailed,
            format!("Zoom returned {error}{detail}"),
        ),
    )
    .await;
    let (status, title) = if error == "access_denied" {
        (StatusCode::FORBIDDEN, "Authorization was denied")
    } else {
        (StatusCode::BAD_REQUEST, "Zoom did not authorize the app")
    };
    Refusal::new(
        status,
        title,
        format!(
            "Zoom answered {error}{detail} for connection {}. {RESTART}",
            who(zc)
        ),
    )
}

/// A bad spec (say, a template the token Secret cannot carry) would lose the grant at the
/// write after the exchange: refuse before the code is spent.
fn valid_spec(zc: &ZoomConnection) -> Result<(), Refusal> {
    crate::validation::validate_spec(&zc.spec)
        .map(|_| ())
        .map_err(|problem| {
            Refusal::new(
                StatusCode::CONFLICT,
                "The connection's spec is not valid",
                format!(
                    "{problem}. Fix the ZoomConnection, then {}",
                    RESTART.to_lowercase()
                ),
            )
        })
}

/// Single use across all replicas: the state's nonce is recorded in the token Secret with a
/// compare-and-swap before the code is exchanged, and only then: a callback without a code
/// costs no memory, and what is remembered is bounded (tokens::secret::remember_state).
async fn consume_state(
    ctx: &OAuthState,
    zc: &ZoomConnection,
    claims: &Claims,
    now: jiff::Timestamp,
) -> Result<(), Refusal> {
    let nonce = claims.n.clone().unwrap_or_default();
    let consumed = ctx
        .token_store(zc)
        .update(zc, |record| {
            transition::state_consumed(record, &nonce, claims.expires_at(), now)
        })
        .await;
    match consumed {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(Replayed)) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "This authorization was already used",
            format!("Each authorization link works once. {RESTART}"),
        )),
        Err(StoreError::NotOwned(secret)) => Err(Refusal::new(
            StatusCode::CONFLICT,
            "The token Secret belongs to someone else",
            format!(
                "Secret {secret} exists and is not owned by ZoomConnection {}; delete it or set spec.tokenSecretName.",
                who(zc)
            ),
        )),
        Err(_) => Err(Refusal::unavailable("Kubernetes")),
    }
}

/// Exchanges the code at Zoom; a refusal is recorded on the connection and said.
async fn exchange(
    ctx: &OAuthState,
    zc: &ZoomConnection,
    app: &crate::credentials::AppCredentials,
    code: &str,
    urls: &PublicUrls,
    claims: &Claims,
) -> Result<crate::tokens::secret::TokenGrant, Refusal> {
    let verifier = ctx
        .signing
        .pkce_verifier(claims.n.as_deref().unwrap_or_default());
    let label = zc.spec.auth_type.to_string();
    match ctx
        .zoom
        .exchange_code(app, code, &urls.redirect_url(), &verifier)
        .await
    {
        Ok(grant) => {
            ctx.metrics.token_request(&label, "ok");
            Ok(grant)
        }
        Err(err) => {
            ctx.metrics.token_request(&label, "exchange_failed");
            tracing::warn!(connection = %who(zc), error = %err, "authorization code exchange failed");
            let (reason, status, why) = exchange_failure(&err);
            record_failure(ctx, zc, GrantProblem::new(reason, format!("{why}: {err}"))).await;
            Err(Refusal::new(
                status,
                "Zoom did not accept the authorization",
                format!("{why}: {err}. {RESTART}"),
            ))
        }
    }
}

/// Who authorized: best effort; the grant is stored either way.
async fn who_authorized(
    ctx: &OAuthState,
    zc: &ZoomConnection,
    grant: &crate::tokens::secret::TokenGrant,
) -> Option<crate::api::ZoomAccount> {
    match ctx.zoom.users_me(&grant.access_token).await {
        Ok(user) => Some(crate::api::ZoomAccount {
            account_id: user.account_id,
            user_id: Some(user.id),
            email: user.email,
        }),
        Err(err) => {
            tracing::warn!(connection = %who(zc), error = %err, "reading /v2/users/me failed");
            None
        }
    }
}

/// Stores the new grant (it replaces any other) and says where the tokens are.
async fn store_callback(
    ctx: &OAuthState,
    zc: &ZoomConnection,
    app: &crate::credentials::AppCredentials,
    grant: crate::tokens::secret::TokenGrant,
    account: Option<crate::api::ZoomAccount>,
) -> Result<Response, Refusal> {
    let stored = ctx
        .token_store(zc)
        .update(zc, |record| {
            Ok::<_, ()>(transition::callback_stored(
                record,
                &grant,
                &app.client_id,
                account.as_ref(),
                crate::clock::now(),
            ))
        })
        .await;
    if !matches!(stored, Ok(Ok(_))) {
        return Err(Refusal::unavailable(
            "Kubernetes to store the tokens (authorize again)",
        ));
    }
    tracing::info!(connection = %who(zc), "connection authorized");
    let email = account.and_then(|a| a.email);
    Ok(page(
        StatusCode::OK,
        "Connected to Zoom",
        &format!(
            "ZoomConnection {} is authorized{}. Its tokens are in Secret {}/{}. You can close this window.",
            who(zc),
            email.map(|e| format!(" as {e}")).unwrap_or_default(),
            zc.metadata.namespace.as_deref().unwrap_or_default(),
            zc.token_secret_name()
        ),
    ))
}

/// What a failed code exchange means: (grant problem reason, page status, what happened).
/// Pure. A used or expired code is the user's to retry; only Zoom's word on the client (or a
/// disabled app) is a credentials problem.
fn exchange_failure(err: &ZoomError) -> (GrantReason, StatusCode, &'static str) {
    match err.rejection() {
        Some(Rejection::ClientRejected) => (
            GrantReason::InvalidClientCredentials,
            StatusCode::BAD_REQUEST,
            "Zoom does not accept the app's client ID and secret",
        ),
        Some(Rejection::AppDisabled) => (
            GrantReason::InvalidClientCredentials,
            StatusCode::BAD_REQUEST,
            APP_DISABLED,
        ),
        Some(Rejection::GrantRejected) => (
            GrantReason::AuthorizationFailed,
            StatusCode::BAD_REQUEST,
            "the authorization code was refused (it was already used or has expired)",
        ),
        Some(Rejection::Request(RequestProblem::RedirectUriMismatch)) => (
            GrantReason::AuthorizationFailed,
            StatusCode::BAD_REQUEST,
            "Zoom does not accept the redirect URL; add status.redirectURL to the app's redirect URLs in the Zoom Marketplace",
        ),
        Some(_) => (
            GrantReason::AuthorizationFailed,
            StatusCode::BAD_REQUEST,
            "exchanging the authorization code failed",
        ),
        None => (
            GrantReason::AuthorizationFailed,
            StatusCode::BAD_GATEWAY,
            "exchanging the authorization code failed",
        ),
    }
}

async fn record_failure(ctx: &OAuthState, zc: &ZoomConnection, problem: GrantProblem) {
    let result = ctx
        .token_store(zc)
        .update(zc, |record| {
            Ok::<_, ()>(transition::authorization_failed(record, &problem))
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not record the authorization failure");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exchange_refused(status: u16, body: &str) -> ZoomError {
        let parsed = crate::zoom::rejection::ErrorBody::parse(body.as_bytes());
        ZoomError::Rejected {
            status,
            error: String::new(),
            reason: String::new(),
            rejection: crate::zoom::rejection::classify_token_error(
                crate::zoom::rejection::GrantType::AuthorizationCode,
                status,
                parsed.as_ref(),
            ),
        }
    }

    #[test]
    fn a_used_code_is_not_a_client_problem() {
        let table = [
            // devforum.zoom.us/t/12302: Zoom echoes the whole code.
            (
                400,
                r#"{"reason":"Invalid authorization code mk1Cq8Pap6_PatCmZLwQxKCZOUJsBwojQ","error":"invalid_request"}"#,
                GrantReason::AuthorizationFailed,
            ),
            (
                400,
                r#"{"reason":"Invalid authorization code abcd…","error":"invalid_grant"}"#,
                GrantReason::AuthorizationFailed,
            ),
            (
                401,
                r#"{"reason":"Invalid client_id or client_secret","error":"invalid_client"}"#,
                GrantReason::InvalidClientCredentials,
            ),
            (
                400,
                r#"{"reason":"The app has been disabled","code":4717}"#,
                GrantReason::InvalidClientCredentials,
            ),
            (
                400,
                r#"{"reason":"Redirect URI mismatch.","error":"invalid_request","code":4709}"#,
                GrantReason::AuthorizationFailed,
            ),
        ];
        for (status, body, want) in table {
            let (reason, page, _) = exchange_failure(&exchange_refused(status, body));
            assert_eq!((reason, page), (want, StatusCode::BAD_REQUEST), "{body}");
        }
        let (_, _, why) = exchange_failure(&exchange_refused(
            400,
            r#"{"reason":"Redirect URI mismatch.","code":4709}"#,
        ));
        assert!(why.contains("redirect URL"), "{why}");
        let down = ZoomError::Unavailable {
            detail: "HTTP 503".into(),
            retry_after: None,
        };
        assert_eq!(exchange_failure(&down).1, StatusCode::BAD_GATEWAY);
    }

    proptest! {
        /// Whatever a browser (or an attacker) puts in the callback's query, parsing it and
        /// checking its state never panics: a bad state is an error the page explains.
        #[test]
        fn callback_queries_never_panic(query in "[a-z_=&%.0-9A-Z+-]{0,120}") {
            let key = crate::signing::SigningKey::new(b"k".to_vec());
            let uri: axum::http::Uri = match format!("/oauth/redirect/zoom?{query}").parse() {
                Ok(uri) => uri,
                Err(_) => return Ok(()),
            };
            if let Ok(Query(q)) = Query::<RedirectQuery>::try_from_uri(&uri) {
                if let Some(state) = q.state.as_deref() {
                    prop_assert!(key.verify_state(state, jiff::Timestamp::now()).is_err());
                }
                let _ = q.error.as_deref().map(crate::zoom::client::scrub);
                let _ = q.error_description.as_deref().map(crate::zoom::client::scrub);
            }
        }
    }
}
