//! `POST /zoom/event`: Zoom webhooks (see api.md section 5).
//!
//! This layer only translates: size, media type and body checks, the signature check against
//! the routing index's secret tokens, `endpoint.url_validation`, and then the dispatcher for
//! everything else. Every answer is a short JSON body; nothing here answers 500.
//!
//! What an unauthenticated request can cost is bounded: without fresh signature headers it is
//! refused before a byte of the body is read; with them, the app named by Zoom's `clientid`
//! header is tried first (inline for small bodies), and only if it did not sign the request is
//! every app's token tried, on the blocking pool, at most [`MAX_CONCURRENT_VERIFICATIONS`] at
//! a time. Forged requests queue for those permits, not in front of genuine ones.

use std::sync::Arc;

use tokio::sync::Semaphore;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::webhooks::dispatch::{Dispatcher, VerifiedEvent};
use crate::webhooks::index::RoutingIndex;
use crate::webhooks::index::Snapshot;
use crate::webhooks::Services;
use crate::webhooks::ZOOM_DEADLINE;
use crate::zoom::webhook::{check_headers, encrypt_plain_token, SignatureHeaders, VerifyError};

/// api.md: bodies over 1 MiB get 413.
pub const BODY_LIMIT: usize = 1024 * 1024;
pub const URL_VALIDATION: &str = "endpoint.url_validation";
/// Signature checks on the blocking pool at once, per stage (the apps `clientid` names; every
/// app): each is one HMAC-SHA256 per candidate over up to 1 MiB. More wait, within Zoom's
/// deadline, for a permit.
pub const MAX_CONCURRENT_VERIFICATIONS: usize = 4;
/// The named apps' check runs on the request's own task when it hashes at most this many
/// bytes (tens of microseconds), sparing the hand-off to the blocking pool.
const INLINE_HMAC_BYTES: usize = 64 * 1024;

/// The webhook endpoint's state: the routing index (every replica keeps one) and the
/// dispatcher that acts on verified events.
pub struct EventReceiver {
    index: Arc<RoutingIndex>,
    dispatcher: Dispatcher,
    metrics: Metrics,
    verifier: Verifier,
}

/// Signature checks, with bounded work per stage (see [`Verifier::signer`]).
struct Verifier {
    /// Permits for checks against the apps `clientid` names, when too large to run inline.
    named_checks: Arc<Semaphore>,
    /// Permits for checks against every app.
    full_scans: Arc<Semaphore>,
}

impl Verifier {
    fn new(permits: usize) -> Self {
        Verifier {
            named_checks: Arc::new(Semaphore::new(permits)),
            full_scans: Arc::new(Semaphore::new(permits)),
        }
    }
}

impl EventReceiver {
    pub fn new(services: Arc<Services>, index: Arc<RoutingIndex>) -> Result<Self, reqwest::Error> {
        Ok(EventReceiver {
            index,
            metrics: services.metrics.clone(),
            dispatcher: Dispatcher::new(services)?,
            verifier: Verifier::new(MAX_CONCURRENT_VERIFICATIONS),
        })
    }
}

/// A refusal: status, a stable reason (also the metric result) and a sentence for people.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

impl Rejection {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status,
            reason,
            message: message.into(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.reason, "message": self.message})),
        )
            .into_response()
    }
}

fn too_large() -> Rejection {
    Rejection::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the body is larger than {BODY_LIMIT} bytes"),
    )
}

/// 413 from `Content-Length` alone, before any of the body is read.
pub fn check_declared_length(content_length: Option<&HeaderValue>) -> Result<(), Rejection> {
    let declared = content_length
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > BODY_LIMIT as u64 => Err(too_large()),
        _ => Ok(()),
    }
}

/// Zoom sends `application/json; charset=utf-8`; any parameters are accepted, other types
/// (or none) are not. Returns the header as received, to pass on to sinks.
pub fn json_content_type(content_type: Option<&HeaderValue>) -> Result<String, Rejection> {
    let unsupported = || {
        Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
        )
    };
    let value = content_type
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unsupported)?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(value.to_owned())
    } else {
        Err(unsupported())
    }
}

/// Reads at most `limit` bytes; a longer body is refused as soon as it passes the limit.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, Rejection> {
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                "the body could not be read",
            )
        })?;
        if buf.len().saturating_add(chunk.len()) > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// The parts of Zoom's envelope the operator uses.
#[derive(Debug, PartialEq)]
pub struct Envelope {
    pub event: String,
    pub event_ts_ms: Option<i64>,
    pub payload: Value,
}

/// `{"event": "...", "event_ts": <ms>, "payload": {...}}`. The event name becomes a
/// CloudEvent header, so it must be printable ASCII.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, Rejection> {
    let invalid =
        |why: &str| Rejection::new(StatusCode::BAD_REQUEST, "invalid_json", why.to_owned());
    let value: Value =
        serde_json::from_slice(body).map_err(|_| invalid("the body is not valid JSON"))?;
    let event = value
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("the body has no \"event\" string"))?;
    let printable =
        !event.is_empty() && event.len() <= 128 && event.bytes().all(|b| b.is_ascii_graphic());
    if !printable {
        return Err(invalid("\"event\" is not a valid event name"));
    }
    Ok(Envelope {
        event: event.to_owned(),
        event_ts_ms: value.get("event_ts").and_then(Value::as_i64),
        payload: value.get("payload").cloned().unwrap_or(Value::Null),
    })
}

fn unauthorized(e: VerifyError) -> Rejection {
    Rejection::new(StatusCode::UNAUTHORIZED, e.label(), e.to_string())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub async fn receive(
    State(receiver): State<Arc<EventReceiver>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let deadline = Instant::now() + ZOOM_DEADLINE;
    let (result, response) = match receiver.handle(&headers, body, deadline).await {
        Ok(answer) => (answer.result, answer.into_response()),
        Err(rejection) => (rejection.reason, rejection.into_response()),
    };
    receiver.metrics.webhook(result);
    response
}

/// A 200 answer to Zoom: the metric result (a fixed word) and the JSON body.
#[derive(Debug)]
pub struct Answer {
    pub result: &'static str,
    pub body: Value,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (StatusCode::OK, Json(self.body)).into_response()
    }
}

/// A request whose signature verified: which app signed it, and what it carries.
struct Verified {
    app: usize,
    snapshot: Arc<Snapshot>,
    content_type: String,
    body: Bytes,
    envelope: Envelope,
}

impl Verified {
    fn payload_str(&self, key: &str) -> Option<&str> {
        self.envelope.payload.get(key).and_then(Value::as_str)
    }
}

impl Verifier {
    /// Which app signed `body`: first the apps Zoom's `clientid` header names, then, only if
    /// none of them did, every app (a full scan, every token checked). The stages have their
    /// own permits, so a flood of requests no named app signed (each one a full scan) cannot
    /// delay an event its app signed: with a small body the first stage runs right here, one
    /// HMAC per named app; a large one waits for a permit of its own.
    async fn signer(
        &self,
        signature: SignatureHeaders,
        body: Bytes,
        snapshot: Arc<Snapshot>,
        hinted: Vec<usize>,
        deadline: Instant,
    ) -> Result<usize, Rejection> {
        let signature = Arc::new(signature);
        if !hinted.is_empty() {
            let inline = hinted.len().saturating_mul(body.len()) <= INLINE_HMAC_BYTES;
            let named = {
                let (signature, body, snapshot) =
                    (signature.clone(), body.clone(), snapshot.clone());
                move || {
                    hinted.into_iter().find(|&app| {
                        snapshot
                            .secret_token(app)
                            .is_some_and(|token| signature.signed_by(token.as_bytes(), &body))
                    })
                }
            };
            let found = if inline {
                named()
            } else {
                blocking(&self.named_checks, deadline, named).await?
            };
            if let Some(app) = found {
                return Ok(app);
            }
        }
        blocking(&self.full_scans, deadline, move || {
            signature.signer(&body, snapshot.secret_tokens(), &[])
        })
        .await?
        .map_err(unauthorized)
    }
}

impl EventReceiver {
    async fn handle(
        &self,
        headers: &HeaderMap,
        body: Body,
        deadline: Instant,
    ) -> Result<Answer, Rejection> {
        let verified = self.verify(headers, body, deadline).await?;
        if verified.envelope.event == URL_VALIDATION {
            return url_validation(&verified);
        }
        let routes = verified
            .payload_str("account_id")
            .map(|account| verified.snapshot.route(verified.app, account))
            .unwrap_or_default();
        if routes.is_empty() {
            return Ok(Answer {
                result: "unroutable",
                body: json!({"status": "unroutable", "message": "no connection of this app has this account; the event was not forwarded"}),
            });
        }
        let connections = routes.len();
        let event = VerifiedEvent {
            event: verified.envelope.event.clone(),
            user_id: verified.payload_str("user_id").map(str::to_owned),
            deauthorization_time: verified
                .payload_str("deauthorization_time")
                .and_then(|t| t.parse().ok()),
            event_ts_ms: verified.envelope.event_ts_ms,
            content_type: verified.content_type,
            body: verified.body,
        };
        let outcome = self.dispatcher.dispatch(routes, &event, deadline).await;
        dispatched(connections, &outcome)
    }

    /// Size, media type and signature headers (before the body is read), then the body and
    /// the signature over it. Unauthenticated requests end here.
    async fn verify(
        &self,
        headers: &HeaderMap,
        body: Body,
        deadline: Instant,
    ) -> Result<Verified, Rejection> {
        check_declared_length(headers.get(CONTENT_LENGTH))?;
        let content_type = json_content_type(headers.get(CONTENT_TYPE))?;
        let signature = check_headers(
            header(headers, "x-zm-signature"),
            header(headers, "x-zm-request-timestamp"),
            crate::clock::now().as_second(),
        )
        .map_err(unauthorized)?;
        let body = tokio::time::timeout_at(deadline, read_limited(body, BODY_LIMIT))
            .await
            .map_err(|_| {
                Rejection::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "the body did not arrive in time",
                )
            })??;
        let snapshot = self.index.snapshot();
        if !snapshot.ready {
            return Err(Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the operator is still loading its connections; retry",
            ));
        }
        let hinted = header(headers, "clientid")
            .map(|id| snapshot.apps_with_client_id(id.trim()).to_vec())
            .unwrap_or_default();
        let app = self
            .verifier
            .signer(signature, body.clone(), snapshot.clone(), hinted, deadline)
            .await?;
        let envelope = parse_envelope(&body)?;
        Ok(Verified {
            app,
            snapshot,
            content_type,
            body,
            envelope,
        })
    }
}

/// `work` on the blocking pool once a permit is free, or 503 `busy` if none is by `deadline`.
async fn blocking<T: Send + 'static>(
    permits: &Arc<Semaphore>,
    deadline: Instant,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Rejection> {
    let busy = || {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many webhook requests are being verified; retry",
        )
    };
    let permit = match tokio::time::timeout_at(deadline, permits.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        _ => return Err(busy()),
    };
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(|_| busy())
}

/// Zoom's `endpoint.url_validation` challenge, answered with the signing app's secret token.
fn url_validation(verified: &Verified) -> Result<Answer, Rejection> {
    let (Some(plain), Some(token)) = (
        verified.payload_str("plainToken"),
        verified.snapshot.secret_token(verified.app),
    ) else {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "payload.plainToken is missing",
        ));
    };
    Ok(Answer {
        result: "verified",
        body: json!({"plainToken": plain, "encryptedToken": encrypt_plain_token(token.as_bytes(), plain)}),
    })
}

/// What Zoom is told after dispatch. Pure: 200 once every connection has the event (forwarded
/// or stored), 503 only when it could be neither delivered nor stored.
fn dispatched(
    connections: usize,
    outcome: &crate::webhooks::dispatch::Outcome,
) -> Result<Answer, Rejection> {
    if outcome.accepted() {
        let result = if outcome.stored > 0 {
            "stored"
        } else if outcome.forwarded > 0 {
            "forwarded"
        } else {
            "verified"
        };
        return Ok(Answer {
            result,
            body: json!({"status": "accepted", "connections": connections, "forwarded": outcome.forwarded, "stored": outcome.stored}),
        });
    }
    let (reason, message) = if outcome.sink_failures.is_empty() {
        (
            "deauthorization_failed",
            "the tokens could not be deleted yet; retry".to_owned(),
        )
    } else {
        (
            "sink_failed",
            format!(
                "{} of the event's sinks did not accept it in time and it could not be stored for redelivery; retry",
                outcome.sink_failures.len()
            ),
        )
    };
    Err(Rejection::new(
        StatusCode::SERVICE_UNAVAILABLE,
        reason,
        message,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).expect("header value")
    }

    #[test]
    fn content_types() {
        assert_eq!(
            json_content_type(Some(&hv("application/json"))).map_err(|r| r.status),
            Ok("application/json".to_owned())
        );
        assert!(json_content_type(Some(&hv("application/json; charset=utf-8"))).is_ok());
        assert!(json_content_type(Some(&hv("Application/JSON ;charset=UTF-8"))).is_ok());
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonp",
            "",
        ] {
            let err = json_content_type(Some(&hv(bad))).expect_err(bad);
            assert_eq!(
                (err.status, err.reason),
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            );
        }
        assert_eq!(
            json_content_type(None).map_err(|r| r.status),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
    }

    #[test]
    fn declared_length() {
        assert!(check_declared_length(None).is_ok());
        assert!(check_declared_length(Some(&hv("1048576"))).is_ok());
        let err = check_declared_length(Some(&hv("1048577"))).expect_err("too large");
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        // Garbage is hyper's business (it rejects it before we run).
        assert!(check_declared_length(Some(&hv("lots"))).is_ok());
    }

    #[tokio::test]
    async fn body_limit_stops_reading_at_the_limit() {
        let exact = Body::from(vec![b'x'; 16]);
        assert_eq!(read_limited(exact, 16).await.map(|b| b.len()), Ok(16));
        // A streamed body with no Content-Length: refused once it passes the limit, and the
        // rest of the stream is never polled.
        let polled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = polled.clone();
        let chunks = futures::stream::iter(0..1000).map(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1024]))
        });
        let err = read_limited(Body::from_stream(chunks), 10 * 1024)
            .await
            .expect_err("too large");
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(polled.load(std::sync::atomic::Ordering::Relaxed), 11);
    }

    #[test]
    fn envelopes() {
        let ok = parse_envelope(
            br#"{"event":"meeting.started","event_ts":1700000000123,"payload":{"account_id":"a"}}"#,
        )
        .expect("valid");
        assert_eq!(ok.event, "meeting.started");
        assert_eq!(ok.event_ts_ms, Some(1_700_000_000_123));
        assert_eq!(ok.payload["account_id"], "a");
        for (body, why) in [
            (&b"not json"[..], "not valid JSON"),
            (br#"{"payload":{}}"#, "no \"event\""),
            (br#"{"event":7}"#, "no \"event\""),
            (br#"{"event":"a\nb"}"#, "not a valid event name"),
            (br#"{"event":""}"#, "not a valid event name"),
        ] {
            let err = parse_envelope(body).expect_err(why);
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(err.message.contains(why), "{} vs {why}", err.message);
        }
    }

    proptest::proptest! {
        /// Whatever a signer puts in the body, the envelope parses or is a 400 with a reason;
        /// an accepted event name is always a valid header value.
        #[test]
        fn any_body_parses_or_is_a_bad_request(
            event in proptest::option::of(".{0,140}"),
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            ts in proptest::option::of(proptest::prelude::any::<i64>()),
        ) {
            let body = match &event {
                Some(name) => json!({"event": name, "event_ts": ts, "payload": {}}).to_string().into_bytes(),
                None => junk,
            };
            match parse_envelope(&body) {
                Ok(envelope) => {
                    proptest::prop_assert!(HeaderValue::from_str(&envelope.event).is_ok());
                    proptest::prop_assert!(envelope.event.len() <= 128);
                }
                Err(rejection) => proptest::prop_assert_eq!(rejection.status, StatusCode::BAD_REQUEST),
            }
        }
    }

    #[test]
    fn rejections_are_short_json() {
        let response = Rejection::new(StatusCode::UNAUTHORIZED, "stale", "too old").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
    }

    /// A snapshot of `apps` Server-to-Server apps, app `i` with client ID `cid-i` and secret
    /// token `token-i`.
    fn apps(apps: usize) -> Arc<Snapshot> {
        use crate::api::{AuthType, CredentialsRef, ZoomConnection, ZoomConnectionSpec};
        use crate::webhooks::index::{CachedSecret, IndexSettings};
        let connections = (0..apps)
            .map(|i| {
                let mut zc = ZoomConnection::new(
                    &format!("c{i}"),
                    ZoomConnectionSpec::new(
                        AuthType::ServerToServer,
                        Some(CredentialsRef::with_name(format!("app-{i}"))),
                    ),
                );
                zc.metadata.namespace = Some("team".into());
                zc.metadata.uid = Some(format!("uid-{i}"));
                Arc::new(zc)
            })
            .collect::<Vec<_>>();
        let secrets = (0..apps)
            .map(|i| {
                let values = [
                    ("secretToken", format!("token-{i}")),
                    ("accountId", format!("acc-{i}")),
                    ("clientId", format!("cid-{i}")),
                ]
                .map(|(k, v)| (k.to_owned(), Some(v)))
                .into();
                let cached = CachedSecret {
                    resource_version: Some("1".into()),
                    values,
                };
                (
                    crate::api::ObjectRef::new("team", format!("app-{i}")),
                    cached,
                )
            })
            .collect();
        Arc::new(Snapshot::build(
            &connections,
            &secrets,
            &IndexSettings::default(),
        ))
    }

    fn signed(token: &str, body: &[u8]) -> SignatureHeaders {
        let ts = crate::clock::now().as_second().to_string();
        let signature = crate::zoom::webhook::sign(token.as_bytes(), &ts, body);
        check_headers(Some(&signature), Some(&ts), crate::clock::now().as_second())
            .expect("fresh headers")
    }

    #[tokio::test]
    async fn forged_requests_holding_every_full_scan_permit_do_not_delay_a_named_app() {
        let snapshot = apps(100);
        let verifier = Verifier::new(2);
        // Forged traffic (no named app signed it) holds every full-scan permit.
        let _held = verifier.full_scans.clone().acquire_many_owned(2).await;
        let deadline = Instant::now() + std::time::Duration::from_millis(300);
        let named = |client_id: &str| snapshot.apps_with_client_id(client_id).to_vec();
        let small = Bytes::from_static(br#"{"event":"meeting.started"}"#);
        let large = Bytes::from(vec![b' '; 512 * 1024]);

        for body in [small.clone(), large] {
            let app = verifier
                .signer(
                    signed("token-57", &body),
                    body,
                    snapshot.clone(),
                    named("cid-57"),
                    deadline,
                )
                .await;
            assert_eq!(app, Ok(57));
        }
        // Without the header, or with a header naming another app, only a full scan can
        // tell: it waits for a permit until the deadline.
        for hinted in [vec![], named("cid-3")] {
            let rejection = verifier
                .signer(
                    signed("token-57", &small),
                    small.clone(),
                    snapshot.clone(),
                    hinted,
                    deadline,
                )
                .await
                .expect_err("no full-scan permit");
            assert_eq!(rejection.reason, "busy");
        }
    }

    #[tokio::test]
    async fn a_wrong_or_missing_client_id_falls_back_to_every_app() {
        let snapshot = apps(10);
        let verifier = Verifier::new(2);
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let body = Bytes::from_static(br#"{"event":"meeting.started"}"#);
        for hinted in [vec![], snapshot.apps_with_client_id("cid-2").to_vec()] {
            let app = verifier
                .signer(
                    signed("token-7", &body),
                    body.clone(),
                    snapshot.clone(),
                    hinted,
                    deadline,
                )
                .await;
            assert_eq!(app, Ok(7));
        }
        let forged = verifier
            .signer(
                signed("guess", &body),
                body.clone(),
                snapshot.clone(),
                vec![7],
                deadline,
            )
            .await
            .expect_err("forged");
        assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    }
}
