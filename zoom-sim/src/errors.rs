//! Zoom-shaped error responses and request-reading helpers.
//!
//! Every bad input must come back as a 4xx in Zoom's JSON shape, never as axum's
//! plain-text rejections or a panic. So bodies are read by hand (with a size
//! cap) and parsed here rather than through axum's `Json`/`Form`/`Query`
//! extractors.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::state::{ApiError, OAuthError};

/// Request bodies larger than this are refused: nothing Zoom-like needs more.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Serialize)]
struct OAuthErrorBody<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u32>,
}

#[derive(Serialize)]
struct ApiErrorBody<'a> {
    code: u32,
    message: &'a str,
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = OAuthErrorBody {
            reason: &self.reason,
            error: self.error,
            code: self.code,
        };
        (
            status(self.status),
            [(header::CACHE_CONTROL, "no-store")],
            Json(body),
        )
            .into_response()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ApiErrorBody {
            code: self.code,
            message: &self.message,
        };
        (status(self.status), Json(body)).into_response()
    }
}

/// `{"code": <status>, "message": ..}` for the admin API and generic errors.
pub fn api_error(status: u16, message: impl Into<String>) -> ApiError {
    ApiError::new(status, u32::from(status), message)
}

/// Zoom's code 300 means "invalid request body/parameters".
pub fn bad_body(message: impl Into<String>) -> ApiError {
    ApiError::new(400, 300, message)
}

/// A client that announces a body and never sends it would otherwise hold a
/// connection (and a test) forever.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a whole body, capped at [`MAX_BODY_BYTES`] and [`BODY_READ_TIMEOUT`].
pub async fn read_body(body: Body) -> Result<axum::body::Bytes, String> {
    match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await
    {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(format!(
            "request body is unreadable or larger than {MAX_BODY_BYTES} bytes"
        )),
        Err(_) => Err("request body was not received in time".to_owned()),
    }
}

/// A JSON body parsed with Zoom-shaped errors (`{"code":300,...}`) instead of
/// axum's plain-text rejections. An empty body is read as `{}`.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req.into_body()).await.map_err(bad_body)?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text)
            .map(JsonBody)
            .map_err(|e| bad_body(format!("Request body is not valid: {e}")))
    }
}

/// Parses `application/x-www-form-urlencoded` data; the first occurrence of a key wins.
pub fn parse_form(data: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(data) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

/// OAuth parameters from a form body and/or the query string. Zoom accepts
/// both (its own docs show `POST /oauth/token?grant_type=...`); when a name is in
/// both, the body wins. A body that is not form-encoded is ignored.
pub fn oauth_params(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> HashMap<String, String> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let mut params = if is_form {
        parse_form(body)
    } else {
        HashMap::new()
    };
    if let Some(query) = query {
        for (k, v) in parse_form(query.as_bytes()) {
            params.entry(k).or_insert(v);
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn body_params_win_over_query() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let p = oauth_params(
            &headers,
            Some("grant_type=q&code=fromquery"),
            b"grant_type=b&x=%2B1",
        );
        assert_eq!(p.get("grant_type").map(String::as_str), Some("b"));
        assert_eq!(p.get("code").map(String::as_str), Some("fromquery"));
        assert_eq!(p.get("x").map(String::as_str), Some("+1"));
    }

    #[test]
    fn json_bodies_are_not_read_as_forms() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(oauth_params(&headers, None, br#"{"grant_type":"x"}"#).is_empty());
    }
}
