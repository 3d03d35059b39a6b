//! The `/sim/*` admin API: steer the simulator from tests and demos.
//!
//! It is unauthenticated by design: zoom-sim is a test tool and listens on
//! 127.0.0.1 unless told otherwise. Do not expose it where untrusted clients
//! can reach it. All bodies and answers are JSON; errors use Zoom's REST shape
//! `{"code": .., "message": ..}` (code 300 for an invalid body, as Zoom does).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clock::wall_clock_ms;
use crate::config::{parse_scopes, AppSpec, UserSpec};
use crate::deauthorization;
use crate::delivery::{self, RetryTimestamp, SendOptions, WebhookSettings};
use crate::errors::{api_error, bad_body, parse_form, JsonBody};
use crate::faults::FaultSpec;
use crate::ratelimit::RateLimitSettings;
use crate::server::SharedState;
use crate::state::Settings;
use crate::state::{
    ApiError, App, AppSecret, CodeRejection, ConsentMode, RefreshRejection, RefreshTokenExpiry,
    UserError, MAX_LIFETIME_SECS,
};
use crate::tokens;
use crate::webhook::{self, Outgoing};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route(
            "/sim/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/sim/config", get(get_config).post(set_config))
        .route("/sim/apps", get(list_apps).post(add_app))
        .route(
            "/sim/apps/{client_id}/rotate-client-secret",
            post(rotate_client_secret),
        )
        .route(
            "/sim/apps/{client_id}/rotate-secret-token",
            post(rotate_secret_token),
        )
        .route("/sim/apps/{client_id}/disable", post(disable_app))
        .route("/sim/apps/{client_id}/enable", post(enable_app))
        .route(
            "/sim/apps/{client_id}/users",
            get(list_users).post(add_user),
        )
        .route(
            "/sim/apps/{client_id}/consenting-user",
            post(set_consenting_user),
        )
        .route("/sim/apps/{client_id}/scopes", post(set_scopes))
        .route("/sim/tokens/expire-refresh", post(expire_refresh))
        .route("/sim/stats", get(stats))
        .route("/sim/clock", get(get_clock).post(advance_clock))
        .route("/sim/deauthorize", post(deauthorize))
        .route("/sim/webhooks/send", post(send_webhook))
        .route("/sim/webhooks/validate", post(validate_webhook))
        .route(
            "/sim/webhooks/pending",
            get(list_pending).delete(clear_pending),
        )
}

// ----- faults -----------------------------------------------------------------

async fn add_fault(
    State(shared): State<SharedState>,
    JsonBody(spec): JsonBody<FaultSpec>,
) -> Response {
    match spec.validate() {
        Ok(fault) => {
            let mut faults = shared.faults();
            faults.push(fault);
            (
                StatusCode::CREATED,
                Json(json!({"queued": faults.pending().len()})),
            )
                .into_response()
        }
        Err(e) => bad_body(e).into_response(),
    }
}

async fn list_faults(State(shared): State<SharedState>) -> Response {
    let faults = shared.faults();
    Json(json!({"pending": faults.pending(), "injected": faults.injected()})).into_response()
}

async fn clear_faults(State(shared): State<SharedState>) -> Response {
    Json(json!({"cleared": shared.faults().clear()})).into_response()
}

// ----- config & clock -----------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigPatch {
    consent: Option<ConsentMode>,
    token_lifetime_secs: Option<u64>,
    refresh_token_lifetime_secs: Option<u64>,
    webhook_timeout_ms: Option<u64>,
    webhook_retries: Option<bool>,
    retry_timestamp: Option<RetryTimestamp>,
    duplicate_rate: Option<f64>,
    webhook_request_id_header: Option<bool>,
    legacy_authorization_header: Option<bool>,
    max_pending_webhooks: Option<usize>,
    /// Replaces the rate-limit settings; omitted fields take their defaults.
    rate_limit: Option<RateLimitSettings>,
    refresh_rejection: Option<RefreshRejection>,
    grant_tolerance: Option<u32>,
    code_rejection: Option<CodeRejection>,
    refresh_token_expiry: Option<RefreshTokenExpiry>,
    revoke_sends_deauthorization: Option<bool>,
}

fn check_lifetime(name: &str, value: Option<u64>) -> Result<(), String> {
    match value {
        Some(v) if v == 0 || v > MAX_LIFETIME_SECS => {
            Err(format!("{name} must be 1..={MAX_LIFETIME_SECS}"))
        }
        _ => Ok(()),
    }
}

/// Every setting in one object: OAuth, webhook delivery and `rate_limit`.
fn config_view(shared: &SharedState) -> Value {
    let mut view = json!(shared.sim().settings());
    let webhooks = json!(shared.webhook_settings());
    let rate_limit = json!(shared.rate_limiter().settings());
    if let (Some(obj), Value::Object(more)) = (view.as_object_mut(), webhooks) {
        obj.extend(more);
        obj.insert("rate_limit".to_owned(), rate_limit);
    }
    view
}

async fn get_config(State(shared): State<SharedState>) -> Response {
    Json(config_view(&shared)).into_response()
}

impl ConfigPatch {
    /// Sets the OAuth settings this patch names.
    fn apply_to(&self, settings: &mut Settings) {
        if let Some(consent) = self.consent {
            settings.consent = consent;
        }
        if let Some(secs) = self.token_lifetime_secs {
            settings.token_lifetime_secs = secs;
        }
        if let Some(secs) = self.refresh_token_lifetime_secs {
            settings.refresh_token_lifetime_secs = secs;
        }
        if let Some(dialect) = self.refresh_rejection {
            settings.refresh_rejection = dialect;
        }
        if let Some(n) = self.grant_tolerance {
            settings.grant_tolerance = n;
        }
        if let Some(dialect) = self.code_rejection {
            settings.code_rejection = dialect;
        }
        if let Some(model) = self.refresh_token_expiry {
            settings.refresh_token_expiry = model;
        }
        if let Some(on) = self.revoke_sends_deauthorization {
            settings.revoke_sends_deauthorization = on;
        }
    }

    /// Sets the webhook settings this patch names.
    fn apply_to_webhooks(&self, webhooks: &mut WebhookSettings) {
        if let Some(ms) = self.webhook_timeout_ms {
            webhooks.webhook_timeout_ms = ms;
        }
        if let Some(on) = self.webhook_retries {
            webhooks.webhook_retries = on;
        }
        if let Some(mode) = self.retry_timestamp {
            webhooks.retry_timestamp = mode;
        }
        if let Some(rate) = self.duplicate_rate {
            webhooks.duplicate_rate = rate;
        }
        if let Some(on) = self.webhook_request_id_header {
            webhooks.webhook_request_id_header = on;
        }
        if let Some(on) = self.legacy_authorization_header {
            webhooks.legacy_authorization_header = on;
        }
        if let Some(max) = self.max_pending_webhooks {
            webhooks.max_pending_webhooks = max;
        }
    }
}

async fn set_config(
    State(shared): State<SharedState>,
    JsonBody(patch): JsonBody<ConfigPatch>,
) -> Response {
    let checks = check_lifetime("token_lifetime_secs", patch.token_lifetime_secs).and_then(|()| {
        check_lifetime(
            "refresh_token_lifetime_secs",
            patch.refresh_token_lifetime_secs,
        )
    });
    if let Err(e) = checks {
        return bad_body(e).into_response();
    }
    let mut webhooks = shared.webhook_settings();
    patch.apply_to_webhooks(&mut webhooks);
    if let Err(e) = webhooks.validate() {
        return bad_body(e).into_response();
    }
    if let Some(limits) = &patch.rate_limit {
        if let Err(e) = limits.validate() {
            return bad_body(e).into_response();
        }
    }
    // Everything is valid: apply it all.
    {
        let mut sim = shared.sim();
        patch.apply_to(sim.settings_mut());
    }
    *shared.webhook_settings_mut() = webhooks;
    let evicted = shared.retries().shrink_to(webhooks.max_pending_webhooks);
    delivery::count_evicted(&shared, &evicted);
    if let Some(limits) = patch.rate_limit {
        shared.rate_limiter().set_settings(limits);
    }
    let view = config_view(&shared);
    tracing::info!(settings = %view, "settings changed");
    Json(view).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockAdvance {
    advance_secs: i64,
}

async fn get_clock(State(shared): State<SharedState>) -> Response {
    Json(json!({"offset_secs": shared.clock.offset_secs(), "now_ms": shared.clock.now_ms()}))
        .into_response()
}

/// Moves simulated time (token and code expiry) without touching webhook timestamps.
async fn advance_clock(
    State(shared): State<SharedState>,
    JsonBody(body): JsonBody<ClockAdvance>,
) -> Response {
    const TEN_YEARS: i64 = 10 * 365 * 24 * 3600;
    if body.advance_secs.abs() > TEN_YEARS {
        return bad_body("advance_secs must be within ten years").into_response();
    }
    let offset = shared.clock.advance(body.advance_secs);
    // Retries now due go out at once.
    shared.retry_wake.notify_one();
    Json(json!({"offset_secs": offset, "now_ms": shared.clock.now_ms()})).into_response()
}

// ----- apps & stats ---------------------------------------------------------------

async fn list_apps(State(shared): State<SharedState>) -> Response {
    let apps: Vec<_> = shared.sim().apps().map(App::public).collect();
    Json(json!({"apps": apps})).into_response()
}

async fn add_app(State(shared): State<SharedState>, JsonBody(spec): JsonBody<AppSpec>) -> Response {
    let built = match spec.into_app() {
        Ok(built) => built,
        Err(e) => return bad_body(e).into_response(),
    };
    let public = built.app.public();
    // A made-up secret token is returned once, or the caller could never verify webhooks.
    let generated = built
        .generated_secret_token
        .then(|| built.app.secret_token.clone());
    if let Err(e) = shared.sim().register_app(built.app) {
        return api_error(409, e).into_response();
    }
    let mut body = json!(public);
    if let (Some(secret), Some(obj)) = (generated, body.as_object_mut()) {
        obj.insert("secret_token".to_owned(), Value::String(secret));
    }
    (StatusCode::CREATED, Json(body)).into_response()
}

/// Longest grace period for a rotated-out secret (30 days).
const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;
/// Default grace period: Zoom does not document one.
const DEFAULT_GRACE_SECS: u64 = 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    /// The new value [default: random].
    client_secret: Option<String>,
    secret_token: Option<String>,
    /// How long the old value keeps working (simulated time); 0: not at all.
    grace_secs: Option<u64>,
}

fn grace_ms(grace_secs: Option<u64>) -> Result<i64, ApiError> {
    let secs = grace_secs.unwrap_or(DEFAULT_GRACE_SECS);
    if secs > MAX_GRACE_SECS {
        return Err(bad_body(format!(
            "grace_secs must be at most {MAX_GRACE_SECS}"
        )));
    }
    Ok(i64::try_from(secs).unwrap_or(0).saturating_mul(1000))
}

fn check_secret(value: Option<&String>, name: &str) -> Result<(), ApiError> {
    match value {
        Some(v) if v.is_empty() || v.len() > 512 || v.chars().any(char::is_control) => Err(
            bad_body(format!("{name} must be 1 to 512 printable characters")),
        ),
        _ => Ok(()),
    }
}

/// A new client secret; the old one keeps working for the grace period.
async fn rotate_client_secret(
    State(shared): State<SharedState>,
    Path(client_id): Path<String>,
    JsonBody(req): JsonBody<RotateRequest>,
) -> Response {
    rotate(&shared, &client_id, req, AppSecret::ClientSecret)
}

/// A new webhook secret token: webhooks are signed with it at once; url_validation
/// answers made with the old one are accepted for the grace period.
async fn rotate_secret_token(
    State(shared): State<SharedState>,
    Path(client_id): Path<String>,
    JsonBody(req): JsonBody<RotateRequest>,
) -> Response {
    rotate(&shared, &client_id, req, AppSecret::SecretToken)
}

/// Rotates `which`; a value for the other secret in the request is refused.
fn rotate(shared: &SharedState, client_id: &str, req: RotateRequest, which: AppSecret) -> Response {
    let (name, other) = (which.name(), which.other().name());
    let (new, other_value) = match which {
        AppSecret::ClientSecret => (req.client_secret, req.secret_token),
        AppSecret::SecretToken => (req.secret_token, req.client_secret),
    };
    if other_value.is_some() {
        let route = other.replace('_', "-");
        return bad_body(format!(
            "this rotates the {name}; use rotate-{route} for the {other}"
        ))
        .into_response();
    }
    let grace =
        match grace_ms(req.grace_secs).and_then(|g| check_secret(new.as_ref(), name).map(|()| g)) {
            Ok(g) => g,
            Err(e) => return e.into_response(),
        };
    let now = shared.clock.now_ms();
    let rotated = shared
        .sim()
        .rotate_secret(client_id, which, new, grace, now);
    match rotated {
        Some((value, until)) => Json(json!({
            "client_id": client_id,
            name: value,
            "previous_valid_until_ms": until,
        }))
        .into_response(),
        None => api_error(404, "No app with that client_id.").into_response(),
    }
}

/// The path's client_id; a path axum cannot decode gets Zoom's JSON shape, not plain text.
type ClientIdPath = Result<Path<String>, PathRejection>;

async fn disable_app(State(shared): State<SharedState>, client_id: ClientIdPath) -> Response {
    set_disabled(&shared, client_id, true)
}

async fn enable_app(State(shared): State<SharedState>, client_id: ClientIdPath) -> Response {
    set_disabled(&shared, client_id, false)
}

fn set_disabled(shared: &SharedState, client_id: ClientIdPath, disabled: bool) -> Response {
    let client_id = match client_id_of(client_id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let client_id = client_id.as_str();
    if shared.sim().set_disabled(client_id, disabled) {
        tracing::info!(client_id, disabled, "app status changed");
        Json(json!({"client_id": client_id, "disabled": disabled})).into_response()
    } else {
        api_error(404, "No app with that client_id.").into_response()
    }
}

// ----- users & scopes ---------------------------------------------------------------

fn client_id_of(client_id: ClientIdPath) -> Result<String, ApiError> {
    client_id
        .map(|Path(id)| id)
        .map_err(|e| bad_body(format!("Invalid client_id in the path: {e}")))
}

fn user_error(e: &UserError) -> ApiError {
    let status = match e {
        UserError::UnknownApp | UserError::UnknownUser(_) => 404,
        UserError::Duplicate(_) => 409,
        UserError::NotAnOauthApp | UserError::Full => 400,
    };
    match status {
        400 => bad_body(e.to_string()),
        _ => api_error(status, e.to_string()),
    }
}

/// The app's users, its own first: `{"users": [..]}`.
async fn list_users(State(shared): State<SharedState>, client_id: ClientIdPath) -> Response {
    let client_id = match client_id_of(client_id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match shared.sim().users(&client_id) {
        Some(users) => Json(json!({"users": users})).into_response(),
        None => user_error(&UserError::UnknownApp).into_response(),
    }
}

/// Registers one more user who can authorize the app → 201 with the user.
async fn add_user(
    State(shared): State<SharedState>,
    client_id: ClientIdPath,
    JsonBody(spec): JsonBody<UserSpec>,
) -> Response {
    let client_id = match client_id_of(client_id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let added = {
        let mut sim = shared.sim();
        let Some(app) = sim.app(&client_id).cloned() else {
            return user_error(&UserError::UnknownApp).into_response();
        };
        let n = sim.registered_user_count(&client_id) + 1;
        match spec.into_user(&app, n) {
            Ok(user) => sim.add_user(&client_id, user).map_err(|e| user_error(&e)),
            Err(e) => Err(bad_body(e)),
        }
    };
    match added {
        Ok(user) => (StatusCode::CREATED, Json(json!(user))).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentingUserRequest {
    /// A user id or email; null or absent: the app's own user.
    user: Option<String>,
}

/// Chooses who consents to the app's next authorizations that carry no `login_hint`.
async fn set_consenting_user(
    State(shared): State<SharedState>,
    client_id: ClientIdPath,
    JsonBody(req): JsonBody<ConsentingUserRequest>,
) -> Response {
    let client_id = match client_id_of(client_id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let chosen = shared
        .sim()
        .set_consenting_user(&client_id, req.user.as_deref().filter(|u| !u.is_empty()));
    match chosen {
        Ok(user) => Json(json!({"client_id": client_id, "user": user})).into_response(),
        Err(e) => user_error(&e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopesRequest {
    /// Space- (or `+`-) separated, as in `--app scopes=...`.
    scopes: String,
}

/// Replaces the app's scopes; every token of the app has the new ones at once.
async fn set_scopes(
    State(shared): State<SharedState>,
    client_id: ClientIdPath,
    JsonBody(req): JsonBody<ScopesRequest>,
) -> Response {
    let client_id = match client_id_of(client_id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let scopes = match parse_scopes(&req.scopes) {
        Ok(scopes) => scopes,
        Err(e) => return bad_body(e).into_response(),
    };
    if shared.sim().set_scopes(&client_id, scopes.clone()) {
        Json(json!({"client_id": client_id, "scopes": scopes})).into_response()
    } else {
        user_error(&UserError::UnknownApp).into_response()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpireRefreshRequest {
    client_id: String,
    user_id: Option<String>,
}

/// "This refresh token expired just now": the app's grants keep their access tokens, but
/// presenting their refresh tokens gets the configured refresh rejection.
async fn expire_refresh(
    State(shared): State<SharedState>,
    JsonBody(req): JsonBody<ExpireRefreshRequest>,
) -> Response {
    let now = shared.clock.now_ms();
    let expired = shared
        .sim()
        .expire_refresh(&req.client_id, req.user_id.as_deref(), now);
    match expired {
        Some(n) => Json(json!({"expired": n})).into_response(),
        None => api_error(404, "No app with that client_id.").into_response(),
    }
}

async fn stats(State(shared): State<SharedState>, RawQuery(query): RawQuery) -> Response {
    let q = parse_form(query.unwrap_or_default().as_bytes());
    let client_id = q
        .get("client_id")
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    let now = shared.clock.now_ms();
    let view = shared.sim().stats(client_id, now);
    let Some(view) = view else {
        return api_error(404, "No app with that client_id.").into_response();
    };
    let pending = {
        let retries = shared.retries();
        match client_id {
            Some(id) => retries.count_for(id),
            None => retries.len(),
        }
    };
    let mut body = json!(view);
    if let Some(obj) = body.as_object_mut() {
        obj.insert("webhooks_pending".to_owned(), json!(pending));
    }
    Json(body).into_response()
}

// ----- webhooks ---------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeauthorizeRequest {
    client_id: String,
    user_id: Option<String>,
}

/// The user uninstalls the app: its grants are revoked and, if the app has a
/// deauthorization_url or event_url, Zoom's `app_deauthorized` event is delivered there,
/// one per user who deauthorized.
async fn deauthorize(
    State(shared): State<SharedState>,
    JsonBody(req): JsonBody<DeauthorizeRequest>,
) -> Response {
    let found = shared
        .sim()
        .deauthorize(&req.client_id, req.user_id.as_deref());
    let Some((app, revoked, users)) = found else {
        return api_error(404, "No app with that client_id.").into_response();
    };
    let mut webhooks = Vec::new();
    for user in &users {
        if let Some(report) = deauthorization::notify(&shared, &app, user).await {
            webhooks.push(report.to_json(shared.clock.now_ms()));
        }
    }
    let first = webhooks.first().cloned().unwrap_or(Value::Null);
    Json(json!({"revoked_grants": revoked, "webhook": first, "webhooks": webhooks})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendWebhookRequest {
    client_id: String,
    event: String,
    url: Option<String>,
    payload: Option<Value>,
    account_id: Option<String>,
    #[serde(default)]
    bad_signature: bool,
    /// Deliver twice (true) or once (false) whatever `duplicate_rate` says.
    duplicate: Option<bool>,
    /// false: no retries for this event even when retries are on.
    retry: Option<bool>,
}

/// The app and where to send to: `explicit`, else its event_url (an absolute http(s) URL).
fn app_and_target(
    shared: &SharedState,
    client_id: &str,
    explicit: Option<String>,
) -> Result<(App, String), ApiError> {
    let app = shared
        .sim()
        .app(client_id)
        .cloned()
        .ok_or_else(|| api_error(404, "No app with that client_id."))?;
    let url = explicit
        .or_else(|| app.event_url.clone())
        .ok_or_else(|| bad_body("no url given and the app has no event_url"))?;
    match url::Url::parse(&url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok((app, url)),
        _ => Err(bad_body("url must be an absolute http(s) URL")),
    }
}

/// Sends any event, signed with the app's secret token.
async fn send_webhook(
    State(shared): State<SharedState>,
    JsonBody(req): JsonBody<SendWebhookRequest>,
) -> Response {
    let (app, url) = match app_and_target(&shared, &req.client_id, req.url) {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    // The app's account unless the caller set one, here or inside the payload.
    let payload_has_account = req
        .payload
        .as_ref()
        .is_some_and(|p| p.get("account_id").is_some());
    let account_id = req
        .account_id
        .or_else(|| (!payload_has_account).then(|| app.account_id.clone()));
    let payload = match webhook::event_payload(account_id.as_deref(), req.payload) {
        Ok(p) => p,
        Err(e) => return bad_body(e).into_response(),
    };
    if req.event.is_empty() || req.event.len() > 256 {
        return bad_body("event must be 1 to 256 characters").into_response();
    }
    let now = wall_clock_ms();
    let mut out = Outgoing::for_app(&app, &url, webhook::event_body(&req.event, now, payload));
    out.bad_signature = req.bad_signature;
    let opts = SendOptions {
        duplicate: req.duplicate,
        no_retry: req.retry == Some(false),
    };
    let report = delivery::send_event(&shared, &app.client_id, &req.event, out, opts).await;
    let mut body = report.to_json(shared.clock.now_ms());
    match &report.result {
        delivery::AttemptResult::Answered(_) => Json(body).into_response(),
        // Undeliverable: 502 with Zoom's error shape, plus the delivery fields.
        delivery::AttemptResult::NoAnswer(e) => {
            if let Some(obj) = body.as_object_mut() {
                obj.insert("code".to_owned(), json!(502));
                obj.insert("message".to_owned(), json!(e.message));
            }
            (StatusCode::BAD_GATEWAY, Json(body)).into_response()
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateRequest {
    client_id: String,
    url: Option<String>,
}

/// Runs Zoom's endpoint.url_validation challenge against a receiver.
async fn validate_webhook(
    State(shared): State<SharedState>,
    JsonBody(req): JsonBody<ValidateRequest>,
) -> Response {
    let (app, url) = match app_and_target(&shared, &req.client_id, req.url) {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let plain = tokens::random_b64(16);
    let settings = shared.webhook_settings();
    let mut out = Outgoing::for_app(
        &app,
        &url,
        webhook::url_validation_body(&plain, wall_clock_ms()),
    );
    out.request_id_header = settings.webhook_request_id_header;
    if !settings.legacy_authorization_header {
        out.verification_token = None;
    }
    // Zoom does not retry a validation challenge: one attempt, the delivery timeout.
    match webhook::deliver(&shared.http, &out, settings.timeout()).await {
        Ok(d) => {
            let mut verdict = webhook::check_validation_answer(&app.secret_token, &plain, &d);
            let mut signed_with = verdict.is_ok().then_some("current");
            // Mid-rotation a receiver may still answer with the previous token.
            let previous = app
                .previous_secret_token
                .as_ref()
                .and_then(|p| p.live(shared.clock.now_ms()));
            if let (Err(_), Some(old)) = (&verdict, previous) {
                if webhook::check_validation_answer(old, &plain, &d).is_ok() {
                    verdict = Ok(());
                    signed_with = Some("previous");
                }
            }
            Json(json!({
                "url": url,
                "status": d.status,
                "valid": verdict.is_ok(),
                "problem": verdict.err(),
                "secret_token": signed_with,
            }))
            .into_response()
        }
        Err(e) => {
            let body = json!({"code": 502, "message": e.message, "url": url, "status": null, "error": e.kind.as_str()});
            (StatusCode::BAD_GATEWAY, Json(body)).into_response()
        }
    }
}

// ----- pending retries ------------------------------------------------------------

fn client_filter(query: Option<String>) -> Option<String> {
    parse_form(query.unwrap_or_default().as_bytes())
        .remove("client_id")
        .filter(|s| !s.is_empty())
}

/// Deliveries waiting for a retry, oldest first.
async fn list_pending(State(shared): State<SharedState>, RawQuery(query): RawQuery) -> Response {
    let client_id = client_filter(query);
    let now = shared.clock.now_ms();
    let max = shared.webhook_settings().max_pending_webhooks;
    let pending = shared.retries().views(client_id.as_deref(), now);
    Json(json!({"count": pending.len(), "max": max, "pending": pending})).into_response()
}

/// Forgets pending retries (all, or one app's); they are not counted as dropped.
async fn clear_pending(State(shared): State<SharedState>, RawQuery(query): RawQuery) -> Response {
    let client_id = client_filter(query);
    let cleared = shared.retries().clear(client_id.as_deref());
    Json(json!({"cleared": cleared})).into_response()
}
