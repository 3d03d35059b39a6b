//! Zoom's OAuth token endpoint, revoke endpoint and `GET /v2/users/me`, as api.md section 7
//! describes them. One HTTP attempt per call: retry and backoff are the scheduler's decision,
//! so a failing Zoom shows up in status instead of hiding inside a retry loop.

use std::time::Duration;

use jiff::Timestamp;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use crate::credentials::AppCredentials;
use crate::tokens::secret::TokenGrant;

use super::rejection::{self, ErrorBody, GrantType, Rejection};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ZoomError {
    /// Zoom said no (HTTP 4xx): retrying the same request will not help. `rejection` says what
    /// it means; `error` and `reason` are Zoom's words (scrubbed of anything credential-like),
    /// with Zoom's numeric code in `error` when it sent one.
    #[error("Zoom answered HTTP {status} {error}: {reason}")]
    Rejected {
        status: u16,
        error: String,
        reason: String,
        rejection: Rejection,
    },
    /// 429, 5xx, a timeout or a connection error: worth retrying later.
    #[error("Zoom is unavailable: {detail}")]
    Unavailable {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// Zoom answered something we cannot read.
    #[error("unexpected answer from Zoom: {0}")]
    Protocol(String),
}

impl ZoomError {
    /// What Zoom's refusal means, if Zoom refused.
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            ZoomError::Rejected { rejection, .. } => Some(*rejection),
            _ => None,
        }
    }
    /// Zoom's REST API refused the token for a missing scope (code 4711).
    pub fn is_missing_scope(&self) -> bool {
        self.rejection() == Some(Rejection::ScopeMissing)
    }
    /// No answer arrived although the request may have reached Zoom (a timeout, a connection
    /// cut mid-request): Zoom may have acted on it, for a refresh, rotated the grant.
    pub fn answer_lost(&self) -> bool {
        matches!(self, ZoomError::Unavailable { detail, .. } if detail == TIMED_OUT || detail == REQUEST_FAILED)
    }
}

/// The user behind a token, from `GET /v2/users/me`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ZoomUser {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub account_id: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    expires_in: i64,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    api_url: Option<String>,
}

/// Talks to one Zoom (or zoom-sim): OAuth host and API host.
#[derive(Clone, Debug)]
pub struct ZoomClient {
    http: reqwest::Client,
    oauth_url: Url,
    api_url: Url,
    metrics: Option<crate::metrics::Metrics>,
}

impl ZoomClient {
    pub fn new(oauth_url: Url, api_url: Url) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("zoom-operator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ZoomClient {
            http,
            oauth_url,
            api_url,
            metrics: None,
        })
    }

    /// Counts every request in `zoom_operator_zoom_requests_total` and its latency.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sends one request and reads the whole answer; `endpoint` is the metric label.
    async fn send(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, HeaderMap, axum::body::Bytes), ZoomError> {
        let started = std::time::Instant::now();
        let answer = async {
            let response = request.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        }
        .await;
        if let Some(metrics) = &self.metrics {
            let status = answer.as_ref().ok().map(|(status, ..)| status.as_u16());
            metrics.zoom_request(endpoint, status, started.elapsed().as_secs_f64());
        }
        answer.map_err(transport_error)
    }

    pub fn oauth_url(&self) -> &Url {
        &self.oauth_url
    }

    fn endpoint(base: &Url, path: &str) -> String {
        format!("{}{}", base.as_str().trim_end_matches('/'), path)
    }

    /// `<zoom-oauth-url>/oauth/authorize?...` for the browser. No `scope`: the app's
    /// configured scopes apply.
    pub fn authorize_url(
        &self,
        client_id: &str,
        redirect_uri: &str,
        state: &str,
        code_challenge: &str,
    ) -> String {
        let mut url = match Url::parse(&Self::endpoint(&self.oauth_url, "/oauth/authorize")) {
            Ok(url) => url,
            Err(_) => self.oauth_url.clone(),
        };
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    pub async fn exchange_code(
        &self,
        app: &AppCredentials,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<TokenGrant, ZoomError> {
        self.token(
            app,
            GrantType::AuthorizationCode,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", code_verifier),
            ],
        )
        .await
    }

    pub async fn refresh(
        &self,
        app: &AppCredentials,
        refresh_token: &str,
    ) -> Result<TokenGrant, ZoomError> {
        self.token(
            app,
            GrantType::RefreshToken,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    pub async fn account_credentials(
        &self,
        app: &AppCredentials,
        account_id: &str,
    ) -> Result<TokenGrant, ZoomError> {
        self.token(
            app,
            GrantType::AccountCredentials,
            &[
                ("grant_type", "account_credentials"),
                ("account_id", account_id),
            ],
        )
        .await
    }

    async fn token(
        &self,
        app: &AppCredentials,
        grant: GrantType,
        form: &[(&str, &str)],
    ) -> Result<TokenGrant, ZoomError> {
        let sent_at = crate::clock::now();
        let request = self
            .http
            .post(Self::endpoint(&self.oauth_url, "/oauth/token"))
            .basic_auth(&app.client_id, Some(&app.client_secret))
            .form(form);
        let (status, headers, body) = self.send("token", request).await?;
        if !status.is_success() {
            return Err(error_from(status, &headers, &body, |status, parsed| {
                rejection::classify_token_error(grant, status, parsed)
            }));
        }
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            ZoomError::Protocol(format!("token response is not the expected JSON: {e}"))
        })?;
        // Count expiry from when the request was sent: the token may have been minted just
        // before Zoom answered, and erring early is safe.
        let expires_at = sent_at
            .checked_add(jiff::SignedDuration::from_secs(token.expires_in.max(0)))
            .map_err(|_| ZoomError::Protocol("expires_in out of range".to_owned()))?;
        Ok(TokenGrant {
            access_token: token.access_token,
            refresh_token: token.refresh_token.filter(|t| !t.is_empty()),
            token_type: token.token_type.unwrap_or_else(|| "bearer".to_owned()),
            expires_at,
            scope: token.scope.unwrap_or_default(),
            api_url: token
                .api_url
                .unwrap_or_else(|| self.api_url.as_str().trim_end_matches('/').to_owned()),
        })
    }

    /// Revokes a grant. Revoking the refresh token revokes the whole grant.
    pub async fn revoke(&self, app: &AppCredentials, token: &str) -> Result<(), ZoomError> {
        let request = self
            .http
            .post(Self::endpoint(&self.oauth_url, "/oauth/revoke"))
            .basic_auth(&app.client_id, Some(&app.client_secret))
            .form(&[("token", token)]);
        let (status, headers, body) = self.send("revoke", request).await?;
        if status.is_success() {
            Ok(())
        } else {
            // Revoke answers in the OAuth shape; what matters is only whether it is final.
            Err(error_from(status, &headers, &body, |status, parsed| {
                rejection::classify_token_error(GrantType::RefreshToken, status, parsed)
            }))
        }
    }

    pub async fn users_me(&self, access_token: &str) -> Result<ZoomUser, ZoomError> {
        let request = self
            .http
            .get(Self::endpoint(&self.api_url, "/v2/users/me"))
            .bearer_auth(access_token);
        let (status, headers, body) = self.send("users_me", request).await?;
        if !status.is_success() {
            return Err(error_from(
                status,
                &headers,
                &body,
                rejection::classify_api_error,
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|e| ZoomError::Protocol(format!("users/me answer: {e}")))
    }
}

const TIMED_OUT: &str = "request timed out";
const REQUEST_FAILED: &str = "request failed";

fn transport_error(e: reqwest::Error) -> ZoomError {
    // reqwest's Display includes the URL, which never carries a secret here (secrets travel in
    // headers and form bodies only).
    // A connection that was never made carried no request: checked before the timeout,
    // since a connect timeout is both.
    let detail = if e.is_connect() {
        "could not connect".to_owned()
    } else if e.is_timeout() {
        TIMED_OUT.to_owned()
    } else {
        REQUEST_FAILED.to_owned()
    };
    ZoomError::Unavailable {
        detail,
        retry_after: None,
    }
}

fn error_from(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    classify: impl Fn(u16, Option<&ErrorBody>) -> Rejection,
) -> ZoomError {
    if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
    {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, crate::clock::now()));
        return ZoomError::Unavailable {
            detail: format!("HTTP {}", status.as_u16()),
            retry_after,
        };
    }
    let parsed = ErrorBody::parse(body);
    let rejection = classify(status.as_u16(), parsed.as_ref());
    let parsed = parsed.unwrap_or_default();
    let error = match (
        parsed.error.as_deref().filter(|e| !e.is_empty()),
        parsed.code,
    ) {
        (Some(error), Some(code)) => format!("{} (code {code})", scrub(error)),
        (Some(error), None) => scrub(error),
        (None, Some(code)) => format!("code {code}"),
        (None, None) => format!("http_{}", status.as_u16()),
    };
    ZoomError::Rejected {
        status: status.as_u16(),
        error,
        reason: scrub(parsed.text().unwrap_or("no reason given")),
        rejection,
    }
}

/// Zoom's `reason` can quote what it was sent ("Invalid authorization code <code>"): keep the
/// words, drop anything that looks like a credential, and bound the length. A credential is
/// any run of 16 or more token characters (base64, base64url, JWT, hex), wherever it stands:
/// quotes, brackets, commas or a colon next to it do not hide it.
pub fn scrub(reason: &str) -> String {
    const MIN_TOKEN: usize = 16;
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "-_.=+/~".contains(c);
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= MIN_TOKEN {
            out.push_str("<redacted>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in reason.chars() {
        if is_token_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(if c.is_control() { ' ' } else { c });
        }
    }
    flush(&mut run, &mut out);
    let words: Vec<&str> = out.split_whitespace().collect();
    words.join(" ").chars().take(200).collect()
}

/// `Retry-After` as seconds, an HTTP date or an ISO 8601 / RFC 3339 timestamp.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at: Timestamp = value
        .parse()
        .ok()
        .or_else(|| jiff::fmt::rfc2822::parse(value).ok().map(|z| z.timestamp()))
        .or_else(|| {
            // RFC 9110's IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
            jiff::fmt::strtime::parse("%a, %d %b %Y %H:%M:%S GMT", value)
                .ok()
                .and_then(|t| t.to_datetime().ok())
                .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
                .map(|z| z.timestamp())
        })?;
    let wait = at.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn retry_after_never_panics(value in ".{0,40}", secs in proptest::prelude::any::<i64>()) {
            let now = Timestamp::from_second(secs.rem_euclid(253_402_207_200)).unwrap_or(Timestamp::UNIX_EPOCH);
            let _ = parse_retry_after(&value, now);
        }

        #[test]
        fn scrubbed_text_never_holds_a_long_token(
            prefix in "[ -~]{0,20}",
            token in "[A-Za-z0-9_-]{16,40}",
            suffix in "[ -~]{0,20}",
        ) {
            let s = scrub(&format!("{prefix}{token}{suffix}"));
            proptest::prop_assert!(!s.contains(&token));
        }
    }

    #[test]
    fn retry_after_forms() {
        let now: Timestamp = "2026-11-29T09:00:00Z".parse().expect("ts");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 29 Nov 2026 09:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("2026-11-29T09:01:00Z", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("2026-11-29T08:00:00Z", now),
            Some(Duration::ZERO),
            "past dates mean now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    fn refresh_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ZoomError {
        error_from(status, headers, body, |status, parsed| {
            rejection::classify_token_error(GrantType::RefreshToken, status, parsed)
        })
    }

    #[test]
    fn errors_are_classified() {
        let h = HeaderMap::new();
        let e = refresh_error(
            StatusCode::BAD_REQUEST,
            &h,
            br#"{"reason":"Invalid Token!","error":"invalid_grant"}"#,
        );
        assert_eq!(e.rejection(), Some(Rejection::GrantRejected));
        assert_eq!(
            e.to_string(),
            "Zoom answered HTTP 400 invalid_grant: Invalid Token!"
        );
        // A 401 is not the client's fault unless Zoom says so.
        let e = refresh_error(
            StatusCode::UNAUTHORIZED,
            &h,
            br#"{"error":"invalid_grant"}"#,
        );
        assert_eq!(e.rejection(), Some(Rejection::GrantRejected));
        let e = refresh_error(
            StatusCode::UNAUTHORIZED,
            &h,
            br#"{"reason":"Invalid client_id or client_secret","error":"invalid_client"}"#,
        );
        assert_eq!(e.rejection(), Some(Rejection::ClientRejected));
        let e = refresh_error(
            StatusCode::BAD_REQUEST,
            &h,
            br#"{"reason":"The app has been disabled","error":"invalid_request","code":4717}"#,
        );
        assert_eq!(e.rejection(), Some(Rejection::AppDisabled));
        assert_eq!(
            e.to_string(),
            "Zoom answered HTTP 400 invalid_request (code 4717): The app has been disabled"
        );
        let mut h429 = HeaderMap::new();
        h429.insert(RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(
            refresh_error(StatusCode::TOO_MANY_REQUESTS, &h429, b""),
            ZoomError::Unavailable {
                detail: "HTTP 429".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(
            refresh_error(StatusCode::BAD_GATEWAY, &h, b"<html>"),
            ZoomError::Unavailable { .. }
        ));
        let e = refresh_error(StatusCode::BAD_REQUEST, &h, b"not json");
        assert!(matches!(e, ZoomError::Rejected { ref error, .. } if error == "http_400"));
        assert_eq!(
            e.rejection(),
            Some(Rejection::Request(rejection::RequestProblem::Other))
        );
        let e = error_from(
            StatusCode::BAD_REQUEST,
            &h,
            br#"{"code":4711,"message":"Invalid access token, does not contain scopes:[user:read:user, user:read:user:admin]."}"#,
            rejection::classify_api_error,
        );
        assert_eq!(e.rejection(), Some(Rejection::ScopeMissing));
        assert!(e.to_string().contains("user:read:user"), "{e}");
    }

    #[test]
    fn an_echoed_authorization_code_never_reaches_a_message() {
        // Zoom echoes the whole code (devforum.zoom.us/t/12302).
        let code = "mk1Cq8Pap6_PatCmZLwQxKCZOUJsBwojQ";
        let body = format!(
            r#"{{"reason":"Invalid authorization code {code}","error":"invalid_request"}}"#
        );
        let e = error_from(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            body.as_bytes(),
            |s, p| rejection::classify_token_error(GrantType::AuthorizationCode, s, p),
        );
        assert_eq!(e.rejection(), Some(Rejection::GrantRejected));
        assert!(!e.to_string().contains(code), "{e}");
        assert!(!format!("{e:?}").contains(code), "{e:?}");
    }

    #[test]
    fn scrub_drops_credentials() {
        let s = scrub("Invalid authorization code eyJhbGciOiJIUzUxMiJ9.abcdefghijklmnop");
        assert_eq!(s, "Invalid authorization code <redacted>");
        assert_eq!(scrub("Invalid Token!"), "Invalid Token!");
        for next_to_punctuation in [
            "code \"eyJhbGciOiJIUzUxMiJ9.abcdefghijklmnop\" is invalid",
            "code (eyJhbGciOiJIUzUxMiJ9.abcdefghijklmnop), invalid",
            "token:eyJhbGciOiJIUzUxMiJ9.abcdefghijklmnop;",
            "refresh_token=eyJhbGciOiJIUzUxMiJ9abcdefghijklmnop,x",
            "[0123456789abcdef0123]",
        ] {
            let s = scrub(next_to_punctuation);
            assert!(
                !s.contains("abcdefghijklmnop") && !s.contains("0123456789abcdef"),
                "{s}"
            );
            assert!(s.contains("<redacted>"), "{s}");
        }
        assert_eq!(scrub("a\nb\u{7}c"), "a b c");
        assert_eq!(scrub(&"word ".repeat(100)).chars().count(), 200);
    }

    #[test]
    fn authorize_url_has_no_scope() {
        let client = ZoomClient::new(
            Url::parse("https://zoom.us").expect("url"),
            Url::parse("https://api.zoom.us").expect("url"),
        )
        .expect("client");
        let url =
            Url::parse(&client.authorize_url("cid", "https://x/oauth/redirect/zoom", "st", "ch"))
                .expect("url");
        assert_eq!(url.path(), "/oauth/authorize");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "response_type",
                "client_id",
                "redirect_uri",
                "state",
                "code_challenge",
                "code_challenge_method"
            ]
        );
        assert!(pairs.contains(&("code_challenge_method".into(), "S256".into())));
    }
}
