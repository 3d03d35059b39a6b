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

pub async fn start(
    State(ctx): State<Arc<OAuthState>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<StartQuery>,
) -> Response {
    let response = start_inner(&ctx, &namespace, &name, query.ticket.as_deref()).await;
    count(&ctx, "start", response)
}

async fn start_inner(
    ctx: &OAuthState,
    namespace: &str,
    name: &str,
    ticket: Option<&str>,
) -> Response {
    let now = crate::clock::now();
    let forbidden = |why: &str| {
        page(
            StatusCode::FORBIDDEN,
            "This link cannot start an authorization",
            &format!("{why} Copy the current link from the connection's status.authorizeURL (kubectl get zc {name} -n {namespace} -o jsonpath='{{.status.authorizeURL}}')."),
        )
    };
    let claims = match ticket.map(|t| ctx.signing.verify_ticket(t, now)) {
        None => return forbidden("The link has no ticket."),
        Some(Err(SignatureError::Expired)) => return forbidden("The link has expired."),
        Some(Err(_)) => return forbidden("The link's ticket is not valid."),
        Some(Ok(claims)) => claims,
    };
    if claims.ns != namespace || claims.name != name {
        return forbidden("The link's ticket was issued for another connection.");
    }
    let zc = match connection(ctx, &claims).await {
        Ok(zc) => zc,
        Err(response) => return response,
    };
    if !zc.spec.auth_type.is_oauth() {
        return page(
            StatusCode::BAD_REQUEST,
            "Nothing to authorize",
            "This connection uses a Server-to-Server app, which needs no browser authorization.",
        );
    }
    let app = match ctx.app_credentials(&zc).await {
        Ok(AppRead {
            credentials: Ok(app),
            ..
        }) => app,
        Ok(AppRead {
            credentials: Err(problem),
            ..
        }) => {
            return page(
                StatusCode::CONFLICT,
                "The connection is not ready to authorize",
                &problem.message(),
            )
        }
        Err(_) => return unavailable("Kubernetes"),
    };
    let urls = match ctx.current_urls() {
        Ok(urls) => urls,
        Err(problem) => {
            return page(
                StatusCode::CONFLICT,
                "The operator's public URL is not known",
                &problem.message(),
            )
        }
    };
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
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response()
}

/// The connection a ticket or state names, if it still exists as the same object.
async fn connection(ctx: &OAuthState, claims: &Claims) -> Result<ZoomConnection, Response> {
    let api: Api<ZoomConnection> = Api::namespaced(ctx.client.clone(), &claims.ns);
    match api.get_opt(&claims.name).await {
        Ok(Some(zc)) if zc.metadata.uid.as_deref() == Some(claims.uid.as_str()) => Ok(zc),
        Ok(_) => Err(page(
            StatusCode::NOT_FOUND,
            "Connection not found",
            &format!(
                "ZoomConnection {}/{} no longer exists (or was re-created); start again from its current status.authorizeURL.",
                claims.ns, claims.name
            ),
        )),
        Err(_) => Err(unavailable("Kubernetes")),
    }
}

fn unavailable(what: &str) -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again in a moment",
        &format!("The operator could not reach {what}. Nothing was changed; please retry."),
    )
}

pub async fn redirect(
    State(ctx): State<Arc<OAuthState>>,
    Query(query): Query<RedirectQuery>,
) -> Response {
    let response = redirect_inner(&ctx, query).await;
    count(&ctx, "redirect", response)
}

async fn redirect_inner(ctx: &OAuthState, query: RedirectQuery) -> Response {
    let now = crate::clock::now();
    let restart = "Start again from the connection's status.authorizeURL.";
    let claims = match query
        .state
        .as_deref()
        .map(|s| ctx.signing.verify_state(s, now))
    {
        None => {
            return page(
                StatusCode::BAD_REQUEST,
                "Missing state",
                &format!("Zoom's answer carries no state parameter. {restart}"),
            )
        }
        Some(Err(SignatureError::Expired)) => {
            return page(
                StatusCode::BAD_REQUEST,
                "This authorization has expired",
                &format!("Authorizations must finish within 10 minutes. {restart}"),
            )
        }
        Some(Err(_)) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Invalid state",
                &format!("The state parameter was not issued by this operator. {restart}"),
            )
        }
        Some(Ok(claims)) => claims,
    };
    let zc = match connection(ctx, &claims).await {
        Ok(zc) => zc,
        Err(response) => return response,
    };
    let who = format!("{}/{}", claims.ns, claims.name);
    let nonce = claims.n.clone().unwrap_or_default();
    let store = ctx.token_store(&zc);

    if let Some(error) = query.error.as_deref() {
        let error = crate::zoom::client::scrub(error);
        let detail = query
            .error_description
            .as_deref()
            .map(crate::zoom::client::scrub)
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        record_failure(
            ctx,
            &zc,
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
        return page(
            status,
            title,
            &format!("Zoom answered {error}{detail} for connection {who}. {restart}"),
        );
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Missing code",
            &format!("Zoom's answer carries no authorization code. {restart}"),
        );
    };

    let app = match ctx.app_credentials(&zc).await {
        Ok(AppRead {
            credentials: Ok(app),
            ..
        }) => app,
        Ok(AppRead {
            credentials: Err(problem),
            ..
        }) => {
            return page(
                StatusCode::CONFLICT,
                "The connection's credentials are not usable",
                &problem.message(),
            )
        }
        Err(_) => return unavailable("Kubernetes"),
    };
    let urls = match ctx.current_urls() {
        Ok(urls) => urls,
        Err(problem) => {
            return page(
                StatusCode::CONFLICT,
                "The operator's public URL is not known",
                &problem.message(),
            )
        }
    };
    // A bad spec (say, a template the token Secret cannot carry) would lose the grant at
    // the write after the exchange: refuse before the code is spent.
    if let Err(problem) = crate::validation::validate_spec(&zc.spec) {
        return page(
            StatusCode::CONFLICT,
            "The connection's spec is not valid",
            &format!(
                "{problem}. Fix the ZoomConnection, then {}",
                restart.to_lowercase()
            ),
        );
    }
    // Single use across all replicas: the nonce is recorded in the token Secret with a
    // compare-and-swap before the code is exchanged, and only then: a callback without a code
    // costs no memory, and what is remembered is bounded (tokens::secret::remember_state).
    let consumed = store
        .update(&zc, |record| {
            transition::state_consumed(record, &nonce, claims.expires_at(), now)
        })
        .await;
    match consumed {
        Ok(Ok(_)) => {}
        Ok(Err(Replayed)) => {
            return page(StatusCode::BAD_REQUEST, "This authorization was already used", &format!("Each authorization link works once. {restart}"))
        }
        Err(StoreError::NotOwned(secret)) => {
            return page(
                StatusCode::CONFLICT,
                "The token Secret belongs to someone else",
                &format!("Secret {secret} exists and is not owned by ZoomConnection {who}; delete it or set spec.tokenSecretName."),
            )
        }
        Err(_) => return unavailable("Kubernetes"),
    }
    let verifier = ctx.signing.pkce_verifier(&nonce);
    let label = zc.spec.auth_type.to_string();
    let grant = match ctx
        .zoom
        .exchange_code(&app, code, &urls.redirect_url(), &verifier)
        .await
    {
        Ok(grant) => {
            ctx.metrics.token_request(&label, "ok");
            grant
        }
        Err(err) => {
            ctx.metrics.token_request(&label, "exchange_failed");
            tracing::warn!(connection = %who, error = %err, "authorization code exchange failed");
            let (reason, status, why) = exchange_failure(&err);
            record_failure(ctx, &zc, GrantProblem::new(reason, format!("{why}: {err}"))).await;
            return page(
                status,
                "Zoom did not accept the authorization",
                &format!("{why}: {err}. {restart}"),
            );
        }
    };
    // Who authorized: best effort; the grant is stored either way.
    let account = match ctx.zoom.users_me(&grant.access_token).await {
        Ok(user) => Some(crate::api::ZoomAccount {
            account_id: user.account_id,
            user_id: Some(user.id),
            email: user.email,
        }),
        Err(err) => {
            tracing::warn!(connection = %who, error = %err, "reading /v2/users/me failed");
            None
        }
    };
    let email = account.as_ref().and_then(|a| a.email.clone());
    let stored = store
        .update(&zc, |record| {
            Ok::<_, ()>(transition::callback_stored(
                record,
                &grant,
                &app.client_id,
                account.as_ref(),
                crate::clock::now(),
            ))
        })
        .await;
    match stored {
        Ok(Ok(_)) => {
            tracing::info!(connection = %who, "connection authorized");
            page(
                StatusCode::OK,
                "Connected to Zoom",
                &format!(
                    "ZoomConnection {who} is authorized{}. Its tokens are in Secret {}/{}. You can close this window.",
                    email.map(|e| format!(" as {e}")).unwrap_or_default(),
                    claims.ns,
                    zc.token_secret_name()
                ),
            )
        }
        _ => unavailable("Kubernetes to store the tokens (authorize again)"),
    }
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
