//! The model's vocabulary: apps, settings, counters and the errors the
//! endpoints answer with (as plain data; the HTTP layer renders them).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// Authorization codes live 5 minutes, as on Zoom.
pub const CODE_LIFETIME_MS: Millis = 5 * 60 * 1000;
/// A consent page left open longer than this must be reloaded.
pub const CONSENT_LIFETIME_MS: Millis = 10 * 60 * 1000;
/// Zoom's access tokens last an hour; its token endpoint answers 3599.
pub const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 3599;
/// 90 days: the figure integrations commonly work with. Zoom's own support article says 15
/// years (devsupport.zoom.us 360060332931); see the README's "Choices".
pub const DEFAULT_REFRESH_TOKEN_LIFETIME_SECS: u64 = 90 * 24 * 3600;
/// Users one app may have besides its own (`POST /sim/apps/{client_id}/users`): bounds memory.
pub const MAX_USERS_PER_APP: usize = 1000;
/// Upper bound for configurable lifetimes (ten years): keeps arithmetic far from overflow.
pub const MAX_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;

/// What `GET /oauth/authorize` does once the request is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentMode {
    /// Redirect straight back with a code, as if the user clicked "Allow".
    Approve,
    /// Redirect back with `error=access_denied`, as when the user declines.
    Deny,
    /// Show an HTML consent page with Approve and Deny buttons.
    Page,
}

impl FromStr for ConsentMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "approve" => Ok(ConsentMode::Approve),
            "deny" => Ok(ConsentMode::Deny),
            "page" => Ok(ConsentMode::Page),
            other => Err(format!(
                "consent must be approve, deny or page, not {other:?}"
            )),
        }
    }
}

impl fmt::Display for ConsentMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConsentMode::Approve => "approve",
            ConsentMode::Deny => "deny",
            ConsentMode::Page => "page",
        })
    }
}

/// Zoom's two app types that matter here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    /// A user-authorized ("General"/OAuth) app: authorization_code + refresh_token.
    Oauth,
    /// A Server-to-Server OAuth app: account_credentials only.
    S2s,
}

impl FromStr for AppKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "oauth" => Ok(AppKind::Oauth),
            "s2s" => Ok(AppKind::S2s),
            other => Err(format!("kind must be oauth or s2s, not {other:?}")),
        }
    }
}

/// A Zoom user who can authorize an app: the app's own user (from the app spec) or one
/// registered later with `POST /sim/apps/{client_id}/users`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    pub user_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub account_id: String,
}

impl User {
    /// Whether `key` names this user: its id, or its email in any case.
    pub fn is_named_by(&self, key: &str) -> bool {
        key == self.user_id || key.eq_ignore_ascii_case(&self.email)
    }
}

/// A registered Marketplace app and its own user/account (more users can be registered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    pub kind: AppKind,
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
    /// Webhook secret token: signs `x-zm-signature` and url_validation answers.
    pub secret_token: String,
    pub account_id: String,
    pub user_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub scopes: Vec<String>,
    /// Where `app_deauthorized` (and `/sim/webhooks/send` by default) is delivered.
    pub event_url: Option<String>,
    /// The app's registered redirect URLs, matched exactly. With `allow_list`, both empty
    /// means any absolute http(s) URL is accepted.
    pub redirect_urls: Vec<String>,
    /// Zoom Marketplace's "OAuth allow list": base URLs (any path) or URLs (that path and
    /// below), see [`allow_list_admits`].
    pub allow_list: Vec<String>,
    /// Where `app_deauthorized` goes when set (Zoom's separate "Deauthorization Notification
    /// Endpoint URL" of older apps); otherwise `event_url`.
    pub deauthorization_url: Option<String>,
    /// Disabled at Zoom (`POST /sim/apps/{client_id}/disable`): everything answers 4717.
    pub disabled: bool,
    /// The legacy webhook verification token, sent as `authorization` when that header is on.
    pub verification_token: String,
    /// The regional API base URL reported as `api_url` in token answers (e.g.
    /// `https://api-eu.zoom.us`); None: the URL the client reached us at.
    pub api_url: Option<String>,
    /// After a rotation: the old client secret, still accepted until its grace period ends.
    pub previous_client_secret: Option<PreviousSecret>,
    /// After a rotation: the old webhook secret token, still accepted in url_validation answers.
    pub previous_secret_token: Option<PreviousSecret>,
}

/// The two secrets of an app that `POST /sim/apps/{client_id}/rotate-*` replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppSecret {
    /// `client_secret`, presented at `/oauth/token` and `/oauth/revoke`.
    ClientSecret,
    /// `secret_token`, which signs webhooks and url_validation answers.
    SecretToken,
}

impl AppSecret {
    /// The field's name, as in the app's config and the rotate answer.
    pub fn name(self) -> &'static str {
        match self {
            AppSecret::ClientSecret => "client_secret",
            AppSecret::SecretToken => "secret_token",
        }
    }

    /// The other one.
    pub fn other(self) -> AppSecret {
        match self {
            AppSecret::ClientSecret => AppSecret::SecretToken,
            AppSecret::SecretToken => AppSecret::ClientSecret,
        }
    }

    /// How many random bytes a made-up value has.
    pub(crate) fn random_len(self) -> usize {
        match self {
            AppSecret::ClientSecret => 24,
            AppSecret::SecretToken => 16,
        }
    }

    /// The app's current value and rotated-out one.
    pub(crate) fn slots(self, app: &mut App) -> (&mut String, &mut Option<PreviousSecret>) {
        match self {
            AppSecret::ClientSecret => (&mut app.client_secret, &mut app.previous_client_secret),
            AppSecret::SecretToken => (&mut app.secret_token, &mut app.previous_secret_token),
        }
    }
}

/// A rotated-out secret and the end of its grace period (simulated time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousSecret {
    pub value: String,
    pub valid_until_ms: Millis,
}

impl PreviousSecret {
    pub fn matches(&self, candidate: &str, now: Millis) -> bool {
        now < self.valid_until_ms && self.value == candidate
    }

    pub fn live(&self, now: Millis) -> Option<&str> {
        (now < self.valid_until_ms).then_some(self.value.as_str())
    }
}

/// An app as listed by `GET /sim/apps`: everything but the secrets.
#[derive(Clone, Debug, Serialize)]
pub struct PublicApp {
    pub kind: AppKind,
    pub name: String,
    pub client_id: String,
    pub account_id: String,
    pub user_id: String,
    pub email: String,
    pub scopes: Vec<String>,
    pub event_url: Option<String>,
    pub api_url: Option<String>,
    /// Set while a rotated-out client secret is still accepted.
    pub previous_client_secret_valid_until_ms: Option<Millis>,
    /// Set while a rotated-out secret token is still accepted.
    pub previous_secret_token_valid_until_ms: Option<Millis>,
    pub redirect_urls: Vec<String>,
    pub allow_list: Vec<String>,
    pub deauthorization_url: Option<String>,
    pub disabled: bool,
}

impl App {
    pub fn public(&self) -> PublicApp {
        PublicApp {
            kind: self.kind,
            name: self.name.clone(),
            client_id: self.client_id.clone(),
            account_id: self.account_id.clone(),
            user_id: self.user_id.clone(),
            email: self.email.clone(),
            scopes: self.scopes.clone(),
            event_url: self.event_url.clone(),
            redirect_urls: self.redirect_urls.clone(),
            allow_list: self.allow_list.clone(),
            deauthorization_url: self.deauthorization_url.clone(),
            disabled: self.disabled,
            api_url: self.api_url.clone(),
            previous_client_secret_valid_until_ms: self
                .previous_client_secret
                .as_ref()
                .map(|p| p.valid_until_ms),
            previous_secret_token_valid_until_ms: self
                .previous_secret_token
                .as_ref()
                .map(|p| p.valid_until_ms),
        }
    }

    /// Whether `redirect_uri` is one the app registered or its allow list admits (any, when
    /// it has neither).
    pub fn accepts_redirect(&self, redirect_uri: &str) -> bool {
        if self.redirect_urls.is_empty() && self.allow_list.is_empty() {
            return true;
        }
        self.redirect_urls.iter().any(|u| u == redirect_uri)
            || self
                .allow_list
                .iter()
                .any(|entry| allow_list_admits(entry, redirect_uri))
    }

    /// The app's own user, described by the app spec.
    pub fn own_user(&self) -> User {
        User {
            user_id: self.user_id.clone(),
            email: self.email.clone(),
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            account_id: self.account_id.clone(),
        }
    }

    /// Where `app_deauthorized` is delivered: `deauthorization_url`, else `event_url`.
    pub fn deauthorization_target(&self) -> Option<&str> {
        self.deauthorization_url
            .as_deref()
            .or(self.event_url.as_deref())
    }

    /// Whether the app's scopes let a token read `/v2/users/me`.
    pub fn can_read_own_user(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| USERS_ME_SCOPES.contains(&s.as_str()))
    }

    /// The current client secret, or the previous one within its grace period.
    pub fn accepts_client_secret(&self, candidate: &str, now: Millis) -> bool {
        self.client_secret == candidate
            || self
                .previous_client_secret
                .as_ref()
                .is_some_and(|p| p.matches(candidate, now))
    }

    pub fn scope_string(&self) -> String {
        self.scopes.join(" ")
    }
}

/// Whether an allow-list entry admits a redirect URI. Zoom documents two kinds of entry, "a
/// complete URL" and "a base URL without a path or query parameters", but not how they match;
/// ours: scheme, host (any case) and port must be equal; a base URL admits any path and query;
/// an entry with a path admits that path and the paths below it (at a `/` boundary, so
/// `/cb` admits `/cb` and `/cb/x` but not `/cbx`), with any query unless the entry has one,
/// which must then be equal.
pub fn allow_list_admits(entry: &str, redirect_uri: &str) -> bool {
    let (Ok(entry), Ok(uri)) = (url::Url::parse(entry), url::Url::parse(redirect_uri)) else {
        return false;
    };
    if entry.scheme() != uri.scheme()
        || entry.host_str() != uri.host_str()
        || entry.port_or_known_default() != uri.port_or_known_default()
        || uri.fragment().is_some()
    {
        return false;
    }
    let base = entry.path().trim_end_matches('/');
    let path = uri.path();
    let path_ok = base.is_empty()
        || path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'));
    path_ok && entry.query().is_none_or(|q| uri.query() == Some(q))
}

/// Scopes any one of which lets a token read `GET /v2/users/me`: granular (user-level and
/// admin) and classic.
pub const USERS_ME_SCOPES: &[&str] = &[
    "user:read:user",
    "user:read:user:admin",
    "user:read",
    "user:read:admin",
];

/// How a dead refresh token (unknown, rotated out, revoked, expired) is answered. Zoom has used
/// each of these forms over the years; `invalid_grant_400` is today's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefreshRejection {
    /// `400 {"reason":"Invalid Token!","error":"invalid_grant"}` (Zoom since 2022).
    #[default]
    #[serde(rename = "invalid_grant_400")]
    InvalidGrant400,
    /// `401 {"reason":"Invalid Token!","error":"invalid_grant"}` (Zoom before 2022).
    #[serde(rename = "invalid_grant_401")]
    InvalidGrant401,
    /// `400 {"reason":"Invalid Token!","error":"invalid_request"}` (seen in 2021).
    #[serde(rename = "invalid_request_400")]
    InvalidRequest400,
    /// `400 {"error":"invalid_grant"}`: no reason (seen in 2024).
    #[serde(rename = "no_reason_400")]
    NoReason400,
    /// `401 {"error":"invalid_request"}`: no reason, and a 401 that is not about the client.
    #[serde(rename = "no_reason_401")]
    NoReason401,
}

impl RefreshRejection {
    pub const ALL: [RefreshRejection; 5] = [
        RefreshRejection::InvalidGrant400,
        RefreshRejection::InvalidGrant401,
        RefreshRejection::InvalidRequest400,
        RefreshRejection::NoReason400,
        RefreshRejection::NoReason401,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RefreshRejection::InvalidGrant400 => "invalid_grant_400",
            RefreshRejection::InvalidGrant401 => "invalid_grant_401",
            RefreshRejection::InvalidRequest400 => "invalid_request_400",
            RefreshRejection::NoReason400 => "no_reason_400",
            RefreshRejection::NoReason401 => "no_reason_401",
        }
    }
}

impl FromStr for RefreshRejection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|r| r.name()).collect();
                format!(
                    "refresh rejection must be one of {}, not {s:?}",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for RefreshRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a bad authorization code (used, expired, unknown, mismatched) is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeRejection {
    /// `400 {"reason":"Invalid authorization code abcd…","error":"invalid_grant"}`: only the
    /// code's first 4 characters, so logs of failing tests never hold a usable code.
    #[default]
    Redacted,
    /// Zoom's own answer: `400 {"reason":"Invalid authorization code <the whole code>",
    /// "error":"invalid_request"}`, for testing that clients keep it out of their logs.
    Echoed,
}

impl FromStr for CodeRejection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "redacted" => Ok(CodeRejection::Redacted),
            "echoed" => Ok(CodeRejection::Echoed),
            other => Err(format!(
                "code rejection must be redacted or echoed, not {other:?}"
            )),
        }
    }
}

/// How long a refresh token given by a refresh lives (`refresh_token_lifetime_secs` = N).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefreshTokenExpiry {
    /// Each refresh token is valid for N from when it was issued: a grant that is refreshed
    /// in time lives for ever.
    #[default]
    Sliding,
    /// No refresh token outlives N from the original authorization: the user must authorize
    /// again by then, however often the grant was refreshed.
    Absolute,
}

impl FromStr for RefreshTokenExpiry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sliding" => Ok(RefreshTokenExpiry::Sliding),
            "absolute" => Ok(RefreshTokenExpiry::Absolute),
            other => Err(format!(
                "refresh_token_expiry must be sliding or absolute, not {other:?}"
            )),
        }
    }
}

/// Runtime-adjustable behaviour (flags at startup, `POST /sim/config` later).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub consent: ConsentMode,
    pub token_lifetime_secs: u64,
    pub refresh_token_lifetime_secs: u64,
    pub refresh_rejection: RefreshRejection,
    pub code_rejection: CodeRejection,
    /// How many live grants one Zoom user may hold for one app: 1 is Zoom (authorizing again
    /// invalidates the earlier grant); 0 means no limit (zoom-sim's default, see the README).
    #[serde(default)]
    pub grant_tolerance: u32,
    pub refresh_token_expiry: RefreshTokenExpiry,
    /// `POST /oauth/revoke` of a user grant uninstalls the app for that user, and Zoom then
    /// sends `app_deauthorized` (a Zoom engineer on devforum.zoom.us/t/18432).
    pub revoke_sends_deauthorization: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            consent: ConsentMode::Page,
            token_lifetime_secs: DEFAULT_TOKEN_LIFETIME_SECS,
            refresh_token_lifetime_secs: DEFAULT_REFRESH_TOKEN_LIFETIME_SECS,
            refresh_rejection: RefreshRejection::default(),
            code_rejection: CodeRejection::default(),
            grant_tolerance: 0,
            refresh_token_expiry: RefreshTokenExpiry::Sliding,
            revoke_sends_deauthorization: true,
        }
    }
}

/// An OAuth endpoint error, rendered as Zoom does: `{"reason": .., "error": ..}`, plus Zoom's
/// numeric `code` where its documentation gives one. An empty `reason` is left out, as Zoom
/// has done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub reason: String,
    pub code: Option<u32>,
}

impl OAuthError {
    pub(super) fn new(status: u16, error: &'static str, reason: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            reason: reason.into(),
            code: None,
        }
    }

    fn with_code(mut self, code: u32) -> Self {
        self.code = Some(code);
        self
    }

    pub fn invalid_client() -> Self {
        Self::new(401, "invalid_client", "Invalid client_id or client_secret")
    }

    /// Zoom's 4717 (its "OAuth error messages" table); the status and `error` are our choice.
    pub fn app_disabled() -> Self {
        Self::new(401, "invalid_client", "The app has been disabled").with_code(4717)
    }

    /// Zoom's 4709 (its "OAuth error messages" table): the redirect_uri is not registered.
    pub fn redirect_uri_mismatch() -> Self {
        Self::invalid_request("Redirect URI mismatch.").with_code(4709)
    }

    pub fn invalid_request(reason: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", reason)
    }

    pub(super) fn missing(param: &str) -> Self {
        Self::invalid_request(format!("Missing parameter: {param}"))
    }

    /// Zoom's answer for an unknown, rotated-out, revoked or expired refresh token, in the
    /// chosen dialect.
    pub fn invalid_refresh_token(dialect: RefreshRejection) -> Self {
        match dialect {
            RefreshRejection::InvalidGrant400 => Self::new(400, "invalid_grant", "Invalid Token!"),
            RefreshRejection::InvalidGrant401 => Self::new(401, "invalid_grant", "Invalid Token!"),
            RefreshRejection::InvalidRequest400 => {
                Self::new(400, "invalid_request", "Invalid Token!")
            }
            RefreshRejection::NoReason400 => Self::new(400, "invalid_grant", ""),
            RefreshRejection::NoReason401 => Self::new(401, "invalid_request", ""),
        }
    }

    /// Zoom names the whole code in this message (`echoed`); by default we show only a prefix
    /// so that logs of failing tests never carry a usable credential.
    pub(super) fn invalid_code(code: &str, why: Option<&str>, dialect: CodeRejection) -> Self {
        let (error, shown) = match dialect {
            CodeRejection::Redacted => (
                "invalid_grant",
                format!("{}…", code.chars().take(4).collect::<String>()),
            ),
            CodeRejection::Echoed => ("invalid_request", code.to_owned()),
        };
        let reason = match why {
            None => format!("Invalid authorization code {shown}"),
            Some(why) => format!("Invalid authorization code {shown}: {why}"),
        };
        Self::new(400, error, reason)
    }

    /// Zoom's literal answer for a grant type the app cannot use.
    pub fn unsupported_grant_type() -> Self {
        Self::new(400, "unsupported_grant_type", "unsupported grant type")
    }
}

/// A REST API error, rendered as Zoom does: `{"code": .., "message": ..}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: u32,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid_access_token() -> Self {
        Self::new(401, 124, "Invalid access token.")
    }

    pub fn expired_access_token() -> Self {
        Self::new(401, 124, "Access token is expired.")
    }

    /// Zoom's 4711, worded as Zoom words it (devforum.zoom.us/t/108207): the scopes that
    /// would do, user-level and admin. The 400 is our choice.
    pub fn missing_scopes(scopes: &[&str]) -> Self {
        Self::new(
            400,
            4711,
            format!(
                "Invalid access token, does not contain scopes:[{}].",
                scopes.join(", ")
            ),
        )
    }

    /// Zoom's 4717 on the REST API; the 401 is our choice.
    pub fn app_disabled() -> Self {
        Self::new(401, 4717, "The app has been disabled")
    }
}

/// Counters, kept in total and per app. Field names are the `/sim/stats` keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Grants invalidated because the same user authorized the same app again.
    pub superseded_grants: u64,
    pub authorize_requests: u64,
    pub authorization_code_grants: u64,
    pub refreshes: u64,
    pub reused_refresh_tokens: u64,
    pub account_credentials_grants: u64,
    pub revokes: u64,
    pub token_requests: u64,
    pub failed_token_requests: u64,
    pub users_me: u64,
    pub deauthorizations: u64,
    /// Other REST API calls (`/v2/users/{id}`, `/v2/users/{id}/meetings`).
    pub api_requests: u64,
    /// REST requests answered 429 by the rate-limit mode.
    pub rate_limited: u64,
    /// Every webhook POST: first attempts, retries and duplicates.
    pub webhook_deliveries: u64,
    /// POSTs that were retries of a failed delivery.
    pub webhook_retries: u64,
    /// POSTs that got no answer within the delivery timeout.
    pub webhook_timeouts: u64,
    /// POSTs answered with a non-2xx status.
    pub webhook_failures: u64,
    /// POSTs that got no HTTP answer at all (refused, reset, DNS).
    pub webhook_connection_errors: u64,
    /// Extra copies sent on purpose (at-least-once delivery).
    pub webhook_duplicates: u64,
    /// Events given up: retries exhausted, or pushed out of the full pending queue.
    pub webhooks_dropped: u64,
    /// Of those, the ones pushed out of the full pending queue.
    pub webhooks_evicted: u64,
}

/// `GET /sim/stats`: the counters plus the number of live grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StatsView {
    #[serde(flatten)]
    pub counters: Counters,
    pub active_grants: u64,
}
