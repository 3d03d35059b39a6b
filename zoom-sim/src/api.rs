//! The `api.zoom.us/v2` endpoints. Only `GET /v2/users/me` is simulated: it is
//! what integrations call to learn who authorized them and to check a token.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::errors::parse_form;
use crate::server::SharedState;
use crate::state::{ApiError, Principal};

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
    let app = &p.app;
    let pmi = stable_number(&format!("pmi:{}", p.user_id), 10);
    json!({
        "id": p.user_id,
        "first_name": app.first_name,
        "last_name": app.last_name,
        "display_name": format!("{} {}", app.first_name, app.last_name),
        "email": app.email,
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
        "jid": format!("{}@xmpp.zoom.us", p.user_id.to_ascii_lowercase()),
        "account_id": p.account_id,
        "account_number": stable_number(&format!("account:{}", p.account_id), 10),
        "cluster": "us06",
    })
}

/// `GET /v2/users/me`
pub async fn users_me(
    State(shared): State<SharedState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let token = bearer(&headers);
    // Zoom stopped accepting tokens in the query string in 2023 and says so.
    if token.is_none()
        && parse_form(query.unwrap_or_default().as_bytes()).contains_key("access_token")
    {
        return ApiError::new(
            401,
            124,
            "Invalid access token, this access token is not supported as query parameter string.",
        )
        .into_response();
    }
    let now = shared.clock.now_ms();
    let result = shared.sim().users_me(token, now);
    match result {
        Ok(principal) => Json(user_object(&principal)).into_response(),
        Err(err) => err.into_response(),
    }
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
