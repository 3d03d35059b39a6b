//! The `api.zoom.us/v2` endpoints: `GET /v2/users/me` (what integrations call to
//! learn who authorized them and to check a token), `GET /v2/users/{userId}`, and
//! meetings created through the API (`POST`/`GET /v2/users/{userId}/meetings`,
//! `GET`/`DELETE /v2/meetings/{meetingId}`). With the rate-limit mode on, each call
//! is counted against its Zoom category.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::errors::{bad_body, parse_form, JsonBody};
use crate::meetings::{Meetings, NewMeeting};
use crate::ratelimit::{Category, LimitType, Verdict};
use crate::server::SharedState;
use crate::state::{ApiError, Counters, Principal};

/// The bearer token from `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A stable number with `digits` digits derived from `seed` (PMIs, account numbers).
fn stable_number(seed: &str, digits: u32) -> u64 {
    let digest = Sha256::digest(seed.as_bytes());
    let mut n = 0u64;
    for b in &digest[..8] {
        n = (n << 8) | u64::from(*b);
    }
    let low = 10u64.pow(digits - 1);
    low + n % (9 * low)
}

/// The user object, with the fields of Zoom's "Get a user" answer that
/// integrations commonly read. For S2S tokens this is the account owner.
pub fn user_object(p: &Principal) -> Value {
    let user = &p.user;
    let pmi = stable_number(&format!("pmi:{}", user.user_id), 10);
    json!({
        "id": user.user_id,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "display_name": format!("{} {}", user.first_name, user.last_name),
        "email": user.email,
        "type": 1,
        "role_name": "Owner",
        "role_id": "0",
        "pmi": pmi,
        "use_pmi": false,
        "personal_meeting_url": format!("https://zoom.us/j/{pmi}"),
        "timezone": "America/Los_Angeles",
        "verified": 1,
        "dept": "",
        "created_at": "2024-01-02T03:04:05Z",
        "user_created_at": "2024-01-02T03:04:05Z",
        "last_login_time": "2024-01-02T03:04:05Z",
        "last_client_version": "6.0.0.0(mac)",
        "pic_url": "",
        "language": "en-US",
        "phone_number": "",
        "status": "active",
        "job_title": "",
        "location": "",
        "login_types": [100],
        "group_ids": [],
        "im_group_ids": [],
        "jid": format!("{}@xmpp.zoom.us", user.user_id.to_ascii_lowercase()),
        "account_id": user.account_id,
        "account_number": stable_number(&format!("account:{}", user.account_id), 10),
        "cluster": "us06",
    })
}

/// Zoom stopped accepting tokens in the query string in 2023 and says so.
fn query_token_error(token: Option<&str>, query: Option<&str>) -> Option<ApiError> {
    (token.is_none()
        && parse_form(query.unwrap_or_default().as_bytes()).contains_key("access_token"))
    .then(|| {
        ApiError::new(
            401,
            124,
            "Invalid access token, this access token is not supported as query parameter string.",
        )
    })
}

/// Why a REST call is not served.
enum Refused {
    Api(ApiError),
    RateLimited { verdict: Verdict, retry_after: bool },
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Api(err) => err.into_response(),
            Refused::RateLimited {
                verdict,
                retry_after,
            } => rate_limited(&verdict, retry_after),
        }
    }
}

/// Authenticates a REST call and applies the rate-limit mode: the principal and the
/// verdict whose headers go on the answer, or why it is refused.
fn admit(
    shared: &SharedState,
    headers: &HeaderMap,
    query: Option<&str>,
    category: Category,
    count: impl Fn(&mut Counters),
) -> Result<(Principal, Option<Verdict>), Refused> {
    let token = bearer(headers);
    if let Some(err) = query_token_error(token, query) {
        return Err(Refused::Api(err));
    }
    let now = shared.clock.now_ms();
    let principal = shared
        .sim()
        .api_principal(token, now, count)
        .map_err(Refused::Api)?;
    let verdict = shared
        .rate_limiter()
        .check(principal.account_id(), category, now);
    match verdict {
        Some(v) if v.refused.is_some() => {
            shared
                .sim()
                .count(Some(&principal.app.client_id), |c| c.rate_limited += 1);
            let retry_after = shared.rate_limiter().settings().retry_after;
            Err(Refused::RateLimited {
                verdict: v,
                retry_after,
            })
        }
        other => Ok((principal, other)),
    }
}

fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

/// `X-RateLimit-*` on a successful answer (as Zoom: category, limit, remaining).
fn with_rate_headers(mut response: Response, verdict: Option<&Verdict>) -> Response {
    if let Some(v) = verdict {
        set_header(&mut response, "x-ratelimit-category", v.category.header());
        set_header(&mut response, "x-ratelimit-limit", &v.limit.to_string());
        set_header(
            &mut response,
            "x-ratelimit-remaining",
            &v.remaining.to_string(),
        );
    }
    response
}

/// Zoom's 429: its messages, `X-RateLimit-*`, and `Retry-After` unless switched off.
fn rate_limited(v: &Verdict, send_retry_after: bool) -> Response {
    let (limit_type, message) = match v.refused {
        Some(LimitType::Daily) => (
            LimitType::Daily,
            format!(
                "You have exceeded the daily rate limit ({}) of {} API requests permitted for this account. You may resume these requests at GMT 00:00:00.",
                v.daily_limit.unwrap_or(v.limit),
                v.category.header()
            ),
        ),
        _ => (
            LimitType::Qps,
            "You have reached the maximum per-second rate limit for this API. Try again later."
                .to_owned(),
        ),
    };
    let mut response = ApiError::new(429, 429, message).into_response();
    set_header(&mut response, "x-ratelimit-category", v.category.header());
    set_header(&mut response, "x-ratelimit-type", limit_type.header());
    set_header(&mut response, "x-ratelimit-limit", &v.limit.to_string());
    set_header(&mut response, "x-ratelimit-remaining", "0");
    if send_retry_after {
        if let Some(after) = &v.retry_after {
            set_header(&mut response, "retry-after", after);
        }
    }
    response
}

/// Admits a REST call (see [`admit`]) and answers it with `respond`, with the
/// rate-limit headers on; a refused call gets the refusal.
fn answer(
    shared: &SharedState,
    headers: &HeaderMap,
    query: Option<&str>,
    category: Category,
    count: impl Fn(&mut Counters),
    respond: impl FnOnce(&Principal) -> Response,
) -> Response {
    match admit(shared, headers, query, category, count) {
        Ok((principal, verdict)) => with_rate_headers(respond(&principal), verdict.as_ref()),
        Err(refused) => refused.into_response(),
    }
}

/// `GET /v2/users/me`
pub async fn users_me(
    State(shared): State<SharedState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let count = |c: &mut Counters| c.users_me += 1;
    answer(
        &shared,
        &headers,
        query.as_deref(),
        Category::Light,
        count,
        |p| Json(user_object(p)).into_response(),
    )
}

/// Whether `{userId}` names the token's user: `me`, the user id or the email.
fn is_self(user_id: &str, p: &Principal) -> bool {
    user_id == "me" || p.user.is_named_by(user_id)
}

fn no_such_user(user_id: &str) -> Response {
    // Zoom's code 1001, "User does not exist: {userId}."
    let shown: String = user_id.chars().take(128).collect();
    ApiError::new(404, 1001, format!("User does not exist: {shown}.")).into_response()
}

/// Counts a call other than `/v2/users/me`.
fn api_request(c: &mut Counters) {
    c.api_requests += 1;
}

/// `GET /v2/users/{userId}`: the token's own user (other users, even of the same app and
/// account, are not readable: zoom-sim does not model admin reads of other users).
pub async fn get_user(
    State(shared): State<SharedState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query.as_deref();
    answer(&shared, &headers, q, Category::Light, api_request, |p| {
        if is_self(&user_id, p) {
            Json(user_object(p)).into_response()
        } else {
            no_such_user(&user_id)
        }
    })
}

/// `GET /v2/users/{userId}/meetings`: Zoom's list shape, the meetings created here.
pub async fn list_meetings(
    State(shared): State<SharedState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = query.as_deref();
    answer(&shared, &headers, q, Category::Medium, api_request, |p| {
        if !is_self(&user_id, p) {
            return no_such_user(&user_id);
        }
        let params = parse_form(q.unwrap_or_default().as_bytes());
        let page_size = match params.get("page_size").map(|s| s.parse::<usize>()) {
            None => 30,
            Some(Ok(n)) if (1..=300).contains(&n) => n,
            Some(_) => return bad_body("page_size must be a number from 1 to 300").into_response(),
        };
        let listed = shared.meetings().list(
            p.user_id(),
            page_size,
            params.get("next_page_token").map(String::as_str),
        );
        match listed {
            Ok(body) => (StatusCode::OK, Json(body)).into_response(),
            Err(e) => bad_body(e).into_response(),
        }
    })
}

/// `POST /v2/users/{userId}/meetings`: `201` with Zoom's meeting object.
pub async fn create_meeting(
    State(shared): State<SharedState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    JsonBody(req): JsonBody<NewMeeting>,
) -> Response {
    let q = query.as_deref();
    answer(&shared, &headers, q, Category::Medium, api_request, |p| {
        if !is_self(&user_id, p) {
            return no_such_user(&user_id);
        }
        let now = shared.clock.now_ms();
        let created = shared
            .meetings()
            .create(p.user_id(), &p.user.email, req, now);
        match created {
            Ok(body) => (StatusCode::CREATED, Json(body)).into_response(),
            Err(e) => bad_body(e).into_response(),
        }
    })
}

fn no_such_meeting(meeting_id: &str) -> Response {
    let shown: String = meeting_id.chars().take(32).collect();
    ApiError::new(404, 3001, format!("Meeting does not exist: {shown}.")).into_response()
}

/// A call on one meeting of the token's user: `act` on it, else Zoom's 404 (3001).
fn on_meeting(
    shared: &SharedState,
    meeting_id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    act: impl FnOnce(&mut Meetings, &str, u64) -> Option<Response>,
) -> Response {
    answer(shared, headers, query, Category::Light, api_request, |p| {
        meeting_id
            .parse::<u64>()
            .ok()
            .and_then(|id| act(&mut shared.meetings(), p.user_id(), id))
            .unwrap_or_else(|| no_such_meeting(meeting_id))
    })
}

/// `GET /v2/meetings/{meetingId}`: a meeting of the token's user.
pub async fn get_meeting(
    State(shared): State<SharedState>,
    Path(meeting_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    on_meeting(
        &shared,
        &meeting_id,
        &headers,
        query.as_deref(),
        |m, user, id| m.get(user, id).map(|body| Json(body).into_response()),
    )
}

/// `DELETE /v2/meetings/{meetingId}`: `204` as on Zoom.
pub async fn delete_meeting(
    State(shared): State<SharedState>,
    Path(meeting_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    on_meeting(
        &shared,
        &meeting_id,
        &headers,
        query.as_deref(),
        |m, user, id| {
            m.delete(user, id)
                .then(|| StatusCode::NO_CONTENT.into_response())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn stable_numbers_have_the_right_width() {
        let n = stable_number("x", 10);
        assert_eq!(n.to_string().len(), 10);
        assert_eq!(n, stable_number("x", 10));
    }
}
