//! Fault injection: make the next N requests to a path fail (or stall) the way
//! Zoom does when it is overloaded, rate limiting or down.
//!
//! Faults form one ordered queue. A request takes the first fault whose path
//! matches (exact path, or `*` for any simulated path); when its count runs out
//! the next fault for that path takes over. `/sim/*` and `/healthz` are never
//! faulted so a test can always clean up.

use std::collections::VecDeque;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::server::SharedState;

/// Longest delay a fault may add: long enough to trip any client timeout,
/// short enough that a forgotten fault does not hang a test run.
pub const MAX_DELAY_MS: u64 = 120_000;

/// `POST /sim/faults` body.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub path: String,
    /// HTTP status to answer with; 0 or absent means "delay only, then serve normally".
    pub status: Option<u16>,
    /// How many requests this fault applies to (default 1).
    pub count: Option<u32>,
    /// Sent verbatim as `Retry-After` (seconds or an HTTP date).
    pub retry_after: Option<String>,
    pub delay_ms: Option<u64>,
    /// Serve the request normally, then hold the answer back this long: Zoom acted (a refresh
    /// token rotated) but the client has not heard yet. Only without a status.
    #[serde(default)]
    pub delay_after_ms: Option<u64>,
    /// Replaces the Zoom-shaped error body.
    pub body: Option<Value>,
}

/// A queued fault, as listed by `GET /sim/faults`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fault {
    pub path: String,
    pub status: Option<u16>,
    pub remaining: u32,
    pub retry_after: Option<String>,
    pub delay_ms: u64,
    pub delay_after_ms: u64,
    pub body: Option<Value>,
}

/// What to do with one request.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultAction {
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    pub delay_ms: u64,
    pub delay_after_ms: u64,
    pub body: Option<Value>,
}

#[derive(Debug, Default)]
pub struct FaultQueue {
    faults: VecDeque<Fault>,
    injected: u64,
}

/// Paths that faults never apply to.
pub fn is_exempt(path: &str) -> bool {
    path == "/healthz" || path == "/sim" || path.starts_with("/sim/")
}

impl FaultSpec {
    pub fn validate(self) -> Result<Fault, String> {
        if self.path != "*" && !self.path.starts_with('/') {
            return Err("path must start with / (or be * for every simulated path)".to_owned());
        }
        if is_exempt(&self.path) {
            return Err("/sim and /healthz cannot be faulted".to_owned());
        }
        let status = match self.status {
            None | Some(0) => None,
            Some(s) if (400..=599).contains(&s) => Some(s),
            Some(s) => {
                return Err(format!(
                    "status must be 400..=599 (or 0 for delay only), not {s}"
                ))
            }
        };
        let count = self.count.unwrap_or(1);
        if count == 0 {
            return Err("count must be at least 1".to_owned());
        }
        let delay_ms = self.delay_ms.unwrap_or(0);
        if delay_ms > MAX_DELAY_MS {
            return Err(format!("delay_ms must be at most {MAX_DELAY_MS}"));
        }
        let delay_after_ms = self.delay_after_ms.unwrap_or(0);
        if delay_after_ms > MAX_DELAY_MS {
            return Err(format!("delay_after_ms must be at most {MAX_DELAY_MS}"));
        }
        if delay_after_ms > 0 && status.is_some() {
            return Err("delay_after_ms delays a served answer; it takes no status".to_owned());
        }
        if status.is_none() && delay_ms == 0 && delay_after_ms == 0 {
            return Err("a fault needs a status, a delay_ms or a delay_after_ms".to_owned());
        }
        if let Some(value) = &self.retry_after {
            HeaderValue::from_str(value)
                .map_err(|_| "retry_after is not a valid header value".to_owned())?;
        }
        if status.is_none() && (self.retry_after.is_some() || self.body.is_some()) {
            return Err("retry_after and body need a status".to_owned());
        }
        Ok(Fault {
            path: self.path,
            status,
            remaining: count,
            retry_after: self.retry_after,
            delay_ms,
            delay_after_ms,
            body: self.body,
        })
    }
}

impl FaultQueue {
    pub fn push(&mut self, fault: Fault) {
        self.faults.push_back(fault);
    }

    /// Consumes one use of the first fault matching `path`.
    pub fn take(&mut self, path: &str) -> Option<FaultAction> {
        let index = self
            .faults
            .iter()
            .position(|f| f.path == path || f.path == "*")?;
        let fault = self.faults.get_mut(index)?;
        fault.remaining = fault.remaining.saturating_sub(1);
        let action = FaultAction {
            status: fault.status,
            retry_after: fault.retry_after.clone(),
            delay_ms: fault.delay_ms,
            delay_after_ms: fault.delay_after_ms,
            body: fault.body.clone(),
        };
        if fault.remaining == 0 {
            self.faults.remove(index);
        }
        self.injected += 1;
        Some(action)
    }

    pub fn clear(&mut self) -> usize {
        let n = self.faults.len();
        self.faults.clear();
        n
    }

    pub fn pending(&self) -> Vec<Fault> {
        self.faults.iter().cloned().collect()
    }

    /// How many requests have been faulted (delayed or failed) so far.
    pub fn injected(&self) -> u64 {
        self.injected
    }
}

/// The error body Zoom would send on this path: OAuth endpoints answer
/// `{"reason","error"}`, the REST API `{"code","message"}` (fields in Zoom's order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ZoomErrorBody {
    OAuth { reason: String, error: &'static str },
    Api { code: u16, message: String },
}

pub fn zoom_error_body(path: &str, status: StatusCode) -> ZoomErrorBody {
    let phrase = status.canonical_reason().unwrap_or("Error");
    if path.starts_with("/oauth/") {
        let error = match status.as_u16() {
            429 => "too_many_requests",
            503 => "temporarily_unavailable",
            s if s >= 500 => "server_error",
            401 => "invalid_client",
            _ => "invalid_request",
        };
        ZoomErrorBody::OAuth {
            reason: phrase.to_owned(),
            error,
        }
    } else {
        let message = match status.as_u16() {
            429 => {
                "You have reached the maximum per-second rate limit for this API. Try again later."
                    .to_owned()
            }
            _ => format!("{phrase} (injected by zoom-sim)"),
        };
        ZoomErrorBody::Api {
            code: status.as_u16(),
            message,
        }
    }
}

/// Middleware: applies the next matching fault, if any.
pub async fn inject(State(shared): State<SharedState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if is_exempt(&path) {
        return next.run(req).await;
    }
    // Take the fault and drop the lock before sleeping.
    let action = shared.faults().take(&path);
    let Some(action) = action else {
        return next.run(req).await;
    };
    if action.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(action.delay_ms)).await;
    }
    let Some(code) = action.status else {
        let response = next.run(req).await;
        if action.delay_after_ms > 0 {
            tracing::info!(%path, delay_ms = action.delay_after_ms, "holding a served answer back");
            tokio::time::sleep(Duration::from_millis(action.delay_after_ms)).await;
        }
        return response;
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    tracing::info!(%path, status = code, "injecting fault");
    let mut response = match action.body {
        Some(body) => (status, Json(body)).into_response(),
        None => (status, Json(zoom_error_body(&path, status))).into_response(),
    };
    if let Some(value) = action
        .retry_after
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str, status: Option<u16>, count: Option<u32>) -> FaultSpec {
        FaultSpec {
            path: path.to_owned(),
            status,
            count,
            retry_after: None,
            delay_ms: None,
            delay_after_ms: None,
            body: None,
        }
    }

    #[test]
    fn faults_apply_in_order_and_run_out() {
        let mut q = FaultQueue::default();
        q.push(
            spec("/oauth/token", Some(503), Some(2))
                .validate()
                .expect("valid"),
        );
        q.push(
            spec("/oauth/token", Some(429), None)
                .validate()
                .expect("valid"),
        );
        q.push(
            spec("/v2/users/me", Some(500), None)
                .validate()
                .expect("valid"),
        );
        let statuses: Vec<Option<u16>> = (0..4)
            .map(|_| q.take("/oauth/token").and_then(|a| a.status))
            .collect();
        assert_eq!(statuses, vec![Some(503), Some(503), Some(429), None]);
        assert_eq!(q.take("/v2/users/me").and_then(|a| a.status), Some(500));
        assert_eq!(q.injected(), 4);
        assert!(q.pending().is_empty());
    }

    #[test]
    fn wildcard_matches_any_path() {
        let mut q = FaultQueue::default();
        q.push(spec("*", Some(502), None).validate().expect("valid"));
        assert!(q.take("/anything").is_some());
        assert!(q.take("/anything").is_none());
    }

    #[test]
    fn validation() {
        assert!(spec("oauth/token", Some(503), None).validate().is_err());
        assert!(spec("/sim/stats", Some(503), None).validate().is_err());
        assert!(spec("/healthz", Some(503), None).validate().is_err());
        assert!(spec("/x", Some(200), None).validate().is_err());
        assert!(spec("/x", Some(503), Some(0)).validate().is_err());
        assert!(spec("/x", None, None).validate().is_err(), "does nothing");
        let mut delay_only = spec("/x", Some(0), None);
        delay_only.delay_ms = Some(10);
        assert_eq!(delay_only.validate().expect("valid").status, None);
        let mut after = spec("/x", None, None);
        after.delay_after_ms = Some(10);
        assert_eq!(after.validate().expect("valid").delay_after_ms, 10);
        let mut after_with_status = spec("/x", Some(503), None);
        after_with_status.delay_after_ms = Some(10);
        assert!(after_with_status.validate().is_err());
        let mut bad_header = spec("/x", Some(503), None);
        bad_header.retry_after = Some("two\nseconds".to_owned());
        assert!(bad_header.validate().is_err());
    }

    #[test]
    fn error_bodies_follow_zoom_shapes() {
        let oauth = zoom_error_body("/oauth/token", StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            serde_json::to_string(&oauth).expect("serializes"),
            r#"{"reason":"Service Unavailable","error":"temporarily_unavailable"}"#
        );
        let api = zoom_error_body("/v2/users/me", StatusCode::TOO_MANY_REQUESTS);
        assert!(matches!(api, ZoomErrorBody::Api { code: 429, .. }));
    }
}
