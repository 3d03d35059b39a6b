//! The `zoom.us/oauth/*` endpoints: authorize (with consent page), token, revoke.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequest, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use serde::Serialize;

use crate::deauthorization;
use crate::errors::{oauth_params, parse_form, read_body};
use crate::html;
use crate::server::SharedState;
use crate::state::{
    AuthorizeOutcome, AuthorizePageError, AuthorizeRequest, ClientAuth, OAuthError, RevokeOutcome,
    Sim, TokenParams,
};

/// Zoom's token answer. Field order follows Zoom's.
#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    expires_in: u64,
    scope: String,
    api_url: String,
}

fn redirect(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => page_error(&AuthorizePageError(
            "The redirect URL cannot be sent as a header.".to_owned(),
        )),
    }
}

fn page_error(err: &AuthorizePageError) -> Response {
    (StatusCode::BAD_REQUEST, Html(html::error_page(&err.0))).into_response()
}

/// `GET /oauth/authorize`
pub async fn authorize(State(shared): State<SharedState>, RawQuery(query): RawQuery) -> Response {
    let q = parse_form(query.unwrap_or_default().as_bytes());
    let get = |k: &str| q.get(k).cloned();
    let req = AuthorizeRequest {
        client_id: get("client_id"),
        response_type: get("response_type"),
        redirect_uri: get("redirect_uri"),
        state: get("state"),
        code_challenge: get("code_challenge"),
        code_challenge_method: get("code_challenge_method"),
        login_hint: get("login_hint"),
    };
    let now = shared.clock.now_ms();
    let outcome = shared.sim().authorize(&req, now);
    match outcome {
        Ok(AuthorizeOutcome::Redirect(url)) => redirect(&url),
        Ok(AuthorizeOutcome::ConsentPage {
            request_id,
            app_name,
            scopes,
            redirect_uri,
            user_email,
        }) => {
            let page =
                html::consent_page(&request_id, &app_name, &scopes, &redirect_uri, &user_email);
            // The page holds a one-time request id: keep it out of caches.
            ([(header::CACHE_CONTROL, "no-store")], Html(page)).into_response()
        }
        Err(err) => page_error(&err),
    }
}

/// `POST /oauth/authorize/decision`: the consent form's Approve/Deny.
pub async fn decision(State(shared): State<SharedState>, body: Body) -> Response {
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(e) => return page_error(&AuthorizePageError(e)),
    };
    let form = parse_form(&body);
    let approve = match form.get("decision").map(String::as_str) {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            return page_error(&AuthorizePageError(
                "decision must be approve or deny.".to_owned(),
            ))
        }
    };
    let Some(request_id) = form.get("request_id").filter(|id| !id.is_empty()) else {
        return page_error(&AuthorizePageError("Missing request_id.".to_owned()));
    };
    let now = shared.clock.now_ms();
    let outcome = shared.sim().decide(request_id, approve, now);
    match outcome {
        Ok(url) => redirect(&url),
        Err(err) => page_error(&err),
    }
}

/// Decodes `application/x-www-form-urlencoded` escapes (`+`, `%XX`) in one value.
/// The value is read as a form holding one bare name; its own `&` and `=` would
/// split that form, so they are escaped first (an escape is never made up by that:
/// `%` is not a hex digit).
fn form_decode(s: &str) -> String {
    let one_name = s.replace('&', "%26").replace('=', "%3D");
    form_urlencoded::parse(one_name.as_bytes())
        .next()
        .map(|(name, _)| name.into_owned())
        .unwrap_or_default()
}

/// The parameters of `/oauth/token` and `/oauth/revoke`, from the form body and the
/// query (see [`oauth_params`]); a body that cannot be read is an invalid_request.
pub struct OAuthParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequest<S> for OAuthParams {
    type Rejection = OAuthError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let body = read_body(body).await.map_err(OAuthError::invalid_request)?;
        Ok(OAuthParams(oauth_params(
            &parts.headers,
            parts.uri.query(),
            &body,
        )))
    }
}

/// Client credentials: HTTP Basic if an Authorization header is present (a
/// malformed one authenticates nobody), else `client_id`/`client_secret`
/// parameters, which Zoom also accepts.
///
/// RFC 6749 §2.3.1 says Basic credentials are form-encoded before base64; many
/// clients (e.g. the `oauth2` crate) do that, many do not. Zoom's ids and secrets
/// are alphanumeric so it never matters there; here we accept either form.
fn credentials(
    sim: &Sim,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Option<ClientAuth> {
    let raw = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let value = value.to_str().ok()?;
            let (scheme, encoded) = value.trim().split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return None;
            }
            let encoded = encoded.trim();
            let decoded = STANDARD
                .decode(encoded)
                .or_else(|_| STANDARD_NO_PAD.decode(encoded))
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (id, secret) = text.split_once(':')?;
            ClientAuth {
                client_id: id.to_owned(),
                client_secret: secret.to_owned(),
            }
        }
        None => ClientAuth {
            client_id: params.get("client_id")?.clone(),
            client_secret: params.get("client_secret")?.clone(),
        },
    };
    // Only picks which decoding to present; the model checks the grace period.
    let matches = |a: &ClientAuth| {
        sim.app(&a.client_id).is_some_and(|app| {
            app.client_secret == a.client_secret
                || app
                    .previous_client_secret
                    .as_ref()
                    .is_some_and(|p| p.value == a.client_secret)
        })
    };
    if matches(&raw) {
        return Some(raw);
    }
    let decoded = ClientAuth {
        client_id: form_decode(&raw.client_id),
        client_secret: form_decode(&raw.client_secret),
    };
    Some(if matches(&decoded) { decoded } else { raw })
}

/// `POST /oauth/token`
pub async fn token(
    State(shared): State<SharedState>,
    headers: HeaderMap,
    OAuthParams(params): OAuthParams,
) -> Response {
    let get = |k: &str| params.get(k).cloned();
    let token_params = TokenParams {
        grant_type: get("grant_type"),
        code: get("code"),
        redirect_uri: get("redirect_uri"),
        code_verifier: get("code_verifier"),
        refresh_token: get("refresh_token"),
        account_id: get("account_id"),
    };
    let now = shared.clock.now_ms();
    let (result, app_api_url) = {
        let mut sim = shared.sim();
        let auth = credentials(&sim, &headers, &params);
        let result = sim.token(auth.as_ref(), &token_params, now);
        // A regional app (api_url=...) reports its own API base, as Zoom does per data centre.
        let api_url = auth
            .as_ref()
            .and_then(|a| sim.app(&a.client_id))
            .and_then(|app| app.api_url.clone());
        (result, api_url)
    };
    match result {
        Ok(issued) => {
            let body = TokenResponse {
                access_token: issued.access_token,
                token_type: "bearer",
                refresh_token: issued.refresh_token,
                expires_in: issued.expires_in,
                scope: issued.scope,
                api_url: app_api_url.unwrap_or_else(|| shared.base_url(&headers)),
            };
            // RFC 6749 §5.1: token answers must not be cached.
            (
                [
                    (header::CACHE_CONTROL, "no-store"),
                    (header::PRAGMA, "no-cache"),
                ],
                Json(body),
            )
                .into_response()
        }
        Err(err) => err.into_response(),
    }
}

/// `POST /oauth/revoke`: revokes the grant the token belongs to.
///
/// Zoom documents only the success answer (`{"status":"success"}`); for a token
/// it does not know we follow RFC 7009 §2.2 and also answer success, since the
/// client's goal (the token no longer works) is met. A token belonging to
/// another app is refused with 400 invalid_request.
///
/// Revoking a user's grant uninstalls the app for that user, so (with
/// `revoke_sends_deauthorization`) `app_deauthorized` follows, after the answer, as on Zoom.
pub async fn revoke(
    State(shared): State<SharedState>,
    headers: HeaderMap,
    OAuthParams(params): OAuthParams,
) -> Response {
    let now = shared.clock.now_ms();
    let result = {
        let mut sim = shared.sim();
        let auth = credentials(&sim, &headers, &params);
        sim.revoke(auth.as_ref(), params.get("token").map(String::as_str), now)
            .map(|outcome| {
                let app = auth.and_then(|a| sim.app(&a.client_id).cloned());
                (outcome, app)
            })
    };
    match result {
        Ok((outcome, app)) => {
            if let (
                RevokeOutcome::Revoked {
                    deauthorized: Some(user),
                },
                Some(app),
            ) = (outcome, app)
            {
                let shared = shared.clone();
                tokio::spawn(async move {
                    deauthorization::notify(&shared, &app, &user).await;
                });
            }
            Json(serde_json::json!({"status": "success"})).into_response()
        }
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decode_handles_escapes() {
        assert_eq!(form_decode("a%2Bb+c%3D"), "a+b c=");
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%zz%4"), "%zz%4");
        assert_eq!(form_decode("a&b=c%&"), "a&b=c%&");
        assert_eq!(form_decode("%2&"), "%2&");
        assert_eq!(form_decode("%C3%A9%FF"), "\u{e9}\u{fffd}");
        assert_eq!(form_decode(""), "");
    }
}
