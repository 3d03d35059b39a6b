//! Zoom webhook signing and delivery, shared by `zoom-sim send-event` and the
//! admin API (`/sim/webhooks/send`, `/sim/deauthorize`).
//!
//! As documented by Zoom ("Verify webhook events", "Validate your webhook endpoint"):
//! - `x-zm-request-timestamp` is the Unix time in seconds;
//! - `x-zm-signature` is `v0=` + hex(HMAC-SHA256(secret token, "v0:{timestamp}:{raw body}"));
//! - `endpoint.url_validation` carries `payload.plainToken`; the receiver must answer
//!   200 with `{"plainToken": .., "encryptedToken": hex(HMAC-SHA256(secret token, plainToken))}`.
//!
//! Headers otherwise copy what Zoom sends (per Zoom's webhook sample app): the
//! `Zoom Marketplace/1.0a` user agent, `application/json; charset=utf-8`,
//! `x-zm-trackingid` and, when the app is known, `clientid`. Two more are optional:
//! `x-zm-request-id` (not in Zoom's documentation; some receivers read it) and the
//! legacy `authorization: <verification token>` of the pre-2023 verification scheme.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::clock::{wall_clock_ms, Millis};
use crate::state::App;
use crate::tokens;

pub const USER_AGENT: &str = "Zoom Marketplace/1.0a";
pub const CONTENT_TYPE: &str = "application/json; charset=utf-8";
pub const URL_VALIDATION_EVENT: &str = "endpoint.url_validation";

/// hex(HMAC-SHA256(key, message)).
pub fn hmac_hex(key: &str, message: &[u8]) -> String {
    // HMAC is defined for keys of any length, so new_from_slice cannot fail; the fallback only
    // keeps this function free of panics.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()));
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// The `x-zm-signature` value for a body sent at `timestamp` (Unix seconds, as sent).
pub fn signature(secret_token: &str, timestamp: &str, body: &[u8]) -> String {
    let mut message = format!("v0:{timestamp}:").into_bytes();
    message.extend_from_slice(body);
    format!("v0={}", hmac_hex(secret_token, &message))
}

/// The `encryptedToken` a receiver must answer to `endpoint.url_validation`.
pub fn encrypted_token(secret_token: &str, plain_token: &str) -> String {
    hmac_hex(secret_token, plain_token.as_bytes())
}

/// Builds an event's `payload`: the given JSON object (if any), with
/// `account_id` set when one is given (an explicit account id wins over one in
/// the payload). Zoom puts `account_id` first in most payloads; JSON key order
/// carries no meaning, and the signature covers the bytes we actually send.
pub fn event_payload(
    account_id: Option<&str>,
    payload: Option<Value>,
) -> Result<Map<String, Value>, String> {
    let mut map = match payload {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(format!(
                "the payload must be a JSON object, not {}",
                json_type(&other)
            ))
        }
    };
    if let Some(account_id) = account_id {
        map.insert(
            "account_id".to_owned(),
            Value::String(account_id.to_owned()),
        );
    }
    Ok(map)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The raw body Zoom sends: `{"event": .., "event_ts": <ms>, "payload": {..}}`.
pub fn event_body(event: &str, event_ts_ms: Millis, payload: Map<String, Value>) -> Vec<u8> {
    json!({"event": event, "event_ts": event_ts_ms, "payload": payload})
        .to_string()
        .into_bytes()
}

/// One signed POST.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub url: String,
    pub secret_token: String,
    pub body: Vec<u8>,
    /// Unix seconds for `x-zm-request-timestamp` (and the signature).
    pub timestamp_secs: i64,
    /// Sent as `x-zm-trackingid` (always) and `x-zm-request-id` (if `request_id_header`).
    pub request_id: String,
    /// Also send `x-zm-request-id`, which Zoom's documentation does not name.
    pub request_id_header: bool,
    pub client_id: Option<String>,
    /// Sent verbatim as `authorization` (the legacy verification token), when set.
    pub verification_token: Option<String>,
    /// Sign correctly, then corrupt the signature: for testing receivers' rejection path.
    pub bad_signature: bool,
}

impl Outgoing {
    /// A request signed with the app's secret token, carrying its client id and verification
    /// token (the latter is sent only if that header is switched on).
    pub fn for_app(app: &App, url: &str, body: Vec<u8>) -> Outgoing {
        let mut out = Outgoing::now(url, &app.secret_token, body);
        out.client_id = Some(app.client_id.clone());
        out.verification_token = Some(app.verification_token.clone());
        out
    }

    /// A delivery stamped with the current wall-clock time and a fresh request id.
    pub fn now(url: &str, secret_token: &str, body: Vec<u8>) -> Outgoing {
        Outgoing {
            url: url.to_owned(),
            secret_token: secret_token.to_owned(),
            body,
            timestamp_secs: wall_clock_ms() / 1000,
            request_id: tokens::uuid_like(),
            request_id_header: false,
            client_id: None,
            verification_token: None,
            bad_signature: false,
        }
    }

    pub fn signature(&self) -> String {
        let good = signature(
            &self.secret_token,
            &self.timestamp_secs.to_string(),
            &self.body,
        );
        if self.bad_signature {
            corrupt(&good)
        } else {
            good
        }
    }
}

/// Flips the last hex digit, so the result is well-formed but wrong.
fn corrupt(signature: &str) -> String {
    let mut s = signature.to_owned();
    let flipped = match s.pop() {
        Some('0') => '1',
        Some(_) => '0',
        None => '0',
    };
    s.push(flipped);
    s
}

/// Why a delivery got no HTTP answer at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// No complete answer within the delivery timeout (Zoom waits 3 seconds).
    Timeout,
    /// Connection refused, reset, DNS, TLS: nothing usable came back.
    Connection,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Connection => "connection",
        }
    }
}

/// A delivery that got no HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryError {
    pub kind: FailureKind,
    pub message: String,
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What the receiver answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub status: u16,
    pub body: String,
    pub request_id: String,
}

impl Delivery {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// POSTs the event with Zoom's headers. No answer within `timeout` (or no answer at
/// all) is an error; any HTTP status (including 4xx/5xx) is a delivery with that status.
pub async fn deliver(
    http: &reqwest::Client,
    out: &Outgoing,
    timeout: Duration,
) -> Result<Delivery, DeliveryError> {
    let mut request = http
        .post(&out.url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
        .header(reqwest::header::USER_AGENT, USER_AGENT)
        .header("x-zm-request-timestamp", out.timestamp_secs.to_string())
        .header("x-zm-signature", out.signature())
        .header("x-zm-trackingid", &out.request_id)
        .body(out.body.clone());
    if out.request_id_header {
        request = request.header("x-zm-request-id", &out.request_id);
    }
    if let Some(client_id) = &out.client_id {
        request = request.header("clientid", client_id);
    }
    if let Some(token) = &out.verification_token {
        request = request.header(reqwest::header::AUTHORIZATION, token);
    }
    let failed = |e: reqwest::Error, what: &str| {
        let kind = if e.is_timeout() {
            FailureKind::Timeout
        } else {
            FailureKind::Connection
        };
        let message = match kind {
            FailureKind::Timeout => format!(
                "{} did not answer within {} ms",
                out.url,
                timeout.as_millis()
            ),
            FailureKind::Connection => format!("cannot {what} {}: {e}", out.url),
        };
        DeliveryError { kind, message }
    };
    let response = request.send().await.map_err(|e| failed(e, "deliver to"))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| failed(e, "read the answer from"))?;
    Ok(Delivery {
        status,
        body,
        request_id: out.request_id.clone(),
    })
}

/// The url_validation request body.
pub fn url_validation_body(plain_token: &str, event_ts_ms: Millis) -> Vec<u8> {
    let mut payload = Map::new();
    payload.insert(
        "plainToken".to_owned(),
        Value::String(plain_token.to_owned()),
    );
    event_body(URL_VALIDATION_EVENT, event_ts_ms, payload)
}

/// Checks a receiver's answer to url_validation the way Zoom does.
pub fn check_validation_answer(
    secret_token: &str,
    plain_token: &str,
    delivery: &Delivery,
) -> Result<(), String> {
    if delivery.status != 200 {
        return Err(format!("expected HTTP 200, got {}", delivery.status));
    }
    let answer: Value =
        serde_json::from_str(&delivery.body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    match answer.get("plainToken").and_then(Value::as_str) {
        Some(echoed) if echoed == plain_token => {}
        Some(_) => return Err("plainToken was not echoed unchanged".to_owned()),
        None => return Err("the answer has no plainToken string".to_owned()),
    }
    let expected = encrypted_token(secret_token, plain_token);
    match answer.get("encryptedToken").and_then(Value::as_str) {
        Some(got) if got == expected => Ok(()),
        Some(_) => {
            Err("encryptedToken is not hex(HMAC-SHA256(secret token, plainToken))".to_owned())
        }
        None => Err("the answer has no encryptedToken string".to_owned()),
    }
}

/// What `send-event` should send.
#[derive(Clone, Debug)]
pub enum EventSpec {
    /// A named event with a payload (and optional account id).
    Named {
        event: String,
        account_id: Option<String>,
        payload: Option<Value>,
    },
    /// `endpoint.url_validation` with a random plainToken, answer checked.
    Validate,
}

/// `zoom-sim send-event` options.
#[derive(Clone, Debug)]
pub struct SendEvent {
    pub url: String,
    pub secret_token: String,
    pub spec: EventSpec,
    pub request_id: Option<String>,
    /// Overrides `x-zm-request-timestamp` (Unix seconds), e.g. to test staleness checks.
    pub timestamp_secs: Option<i64>,
    pub bad_signature: bool,
    pub client_id: Option<String>,
    /// Sent as the legacy `authorization` header.
    pub verification_token: Option<String>,
    pub timeout: Duration,
}

/// The outcome of `send-event`.
#[derive(Clone, Debug)]
pub struct SendReport {
    pub delivery: Delivery,
    /// For `--validate`: whether the answer was right.
    pub validation: Option<Result<(), String>>,
}

impl SendReport {
    /// Exit status 0: a 2xx answer, and for `--validate` a correct one.
    pub fn succeeded(&self) -> bool {
        self.delivery.is_success() && self.validation.as_ref().is_none_or(Result::is_ok)
    }
}

pub async fn send_event(http: &reqwest::Client, opts: SendEvent) -> Result<SendReport, String> {
    let timestamp_secs = opts
        .timestamp_secs
        .unwrap_or_else(|| wall_clock_ms() / 1000);
    // event_ts follows the (possibly overridden) timestamp, as a replayed event would.
    let event_ts = match opts.timestamp_secs {
        Some(secs) => secs.saturating_mul(1000),
        None => wall_clock_ms(),
    };
    let (body, plain_token) = match opts.spec {
        EventSpec::Named {
            event,
            account_id,
            payload,
        } => {
            let payload = event_payload(account_id.as_deref(), payload)?;
            (event_body(&event, event_ts, payload), None)
        }
        EventSpec::Validate => {
            let plain = tokens::random_b64(16);
            (url_validation_body(&plain, event_ts), Some(plain))
        }
    };
    let out = Outgoing {
        url: opts.url,
        secret_token: opts.secret_token,
        body,
        timestamp_secs,
        // An explicit request id is also sent as x-zm-request-id (as before that header
        // became optional); a random one only as x-zm-trackingid.
        request_id_header: opts.request_id.is_some(),
        request_id: opts.request_id.unwrap_or_else(tokens::uuid_like),
        client_id: opts.client_id,
        verification_token: opts.verification_token,
        bad_signature: opts.bad_signature,
    };
    let delivery = deliver(http, &out, opts.timeout)
        .await
        .map_err(|e| format!("{}: {e}", e.kind.as_str()))?;
    let validation =
        plain_token.map(|plain| check_validation_answer(&out.secret_token, &plain, &delivery));
    Ok(SendReport {
        delivery,
        validation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_known_answer() {
        // RFC 4231-style well-known vector.
        assert_eq!(
            hmac_hex("key", b"The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn signature_covers_timestamp_and_body() {
        let sig = signature("key", "1700000000", br#"{"a":1}"#);
        assert!(sig.starts_with("v0=") && sig.len() == 3 + 64, "{sig}");
        assert_eq!(
            sig,
            format!("v0={}", hmac_hex("key", br#"v0:1700000000:{"a":1}"#))
        );
        assert_ne!(sig, signature("key", "1700000001", br#"{"a":1}"#));
        assert_ne!(sig, signature("key", "1700000000", br#"{"a":2}"#));
    }

    #[test]
    fn bad_signature_is_well_formed_but_wrong() {
        let mut out = Outgoing::now("http://x.invalid/", "key", b"{}".to_vec());
        let good = out.signature();
        out.bad_signature = true;
        let bad = out.signature();
        assert_eq!(bad.len(), good.len());
        assert_ne!(bad, good);
    }

    #[test]
    fn payload_merging() {
        let p = event_payload(
            Some("A"),
            Some(json!({"object": {"id": 1}, "account_id": "B"})),
        )
        .expect("object");
        assert_eq!(
            Value::Object(p),
            json!({"account_id": "A", "object": {"id": 1}})
        );
        let p = event_payload(None, Some(json!({"account_id": "B"}))).expect("object");
        assert_eq!(p["account_id"], "B");
        assert!(event_payload(None, Some(json!([1]))).is_err());
        let body = event_body(
            "meeting.started",
            5,
            event_payload(Some("A"), None).expect("empty"),
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&body).expect("json"),
            json!({"event": "meeting.started", "event_ts": 5, "payload": {"account_id": "A"}})
        );
    }

    #[test]
    fn validation_answers() {
        let ok = |body: Value| Delivery {
            status: 200,
            body: body.to_string(),
            request_id: "r".to_owned(),
        };
        let right = json!({"plainToken": "p", "encryptedToken": encrypted_token("s", "p")});
        assert!(check_validation_answer("s", "p", &ok(right.clone())).is_ok());
        assert!(check_validation_answer("other", "p", &ok(right.clone())).is_err());
        assert!(check_validation_answer(
            "s",
            "p",
            &ok(json!({"plainToken": "q", "encryptedToken": encrypted_token("s", "p")}))
        )
        .is_err());
        assert!(check_validation_answer("s", "p", &ok(json!({"plainToken": "p"}))).is_err());
        let mut not_200 = ok(right);
        not_200.status = 204;
        assert!(check_validation_answer("s", "p", &not_200).is_err());
    }
}
