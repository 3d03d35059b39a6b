//! Forwarding a verified Zoom event to a connection's sink as a CloudEvent in HTTP binary mode:
//! `ce-*` headers carry the attributes, the body is Zoom's bytes unchanged.
//!
//! [`CloudEvent`] is pure; [`Forwarder`] does the POST with a client that follows no redirects
//! (a sink could otherwise bounce the operator to an address the SSRF policy refused) and
//! uses no proxy (sinks are in-cluster). Its DNS resolver is the sink policy's
//! [`SinkResolver`]: the addresses it connects to are the ones the policy checked.

use std::fmt;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::{HeaderMap, HeaderName, HeaderValue, InvalidHeaderValue, CONTENT_TYPE};
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use url::Url;

use crate::sink::SinkResolver;

pub const SPEC_VERSION: &str = "1.0";

/// The attributes of one forwarded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    pub type_: String,
    /// From `event_ts` when Zoom sent one.
    pub time: Option<String>,
    pub content_type: String,
}

impl CloudEvent {
    /// `ce-id` is the lowercase hex SHA-256 of Zoom's raw body: Zoom re-sends the same body
    /// when it retries, so sinks can de-duplicate Zoom's retries and the operator's own
    /// redeliveries alike. (Zoom does not document `x-zm-request-id`, so nothing relies on
    /// it.) `ce-source` names the connection.
    pub fn for_zoom_event(
        namespace: &str,
        name: &str,
        event: &str,
        event_ts_ms: Option<i64>,
        content_type: &str,
        body: &[u8],
    ) -> CloudEvent {
        CloudEvent {
            id: hex::encode(Sha256::digest(body)),
            source: format!("zoom-operator.io/{namespace}/{name}"),
            type_: format!("us.zoom.{event}"),
            time: event_ts_ms
                .and_then(|ms| Timestamp::from_millisecond(ms).ok())
                .map(|t| t.to_string()),
            content_type: content_type.to_owned(),
        }
    }

    /// The binary-mode headers. Fails only if an attribute cannot be a header value (an
    /// event name with control characters).
    pub fn headers(&self) -> Result<HeaderMap, InvalidHeaderValue> {
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| -> Result<(), InvalidHeaderValue> {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_str(value)?);
            Ok(())
        };
        put("ce-specversion", SPEC_VERSION)?;
        put("ce-id", &self.id)?;
        put("ce-source", &self.source)?;
        put("ce-type", &self.type_)?;
        if let Some(time) = &self.time {
            put("ce-time", time)?;
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(&self.content_type)?);
        Ok(headers)
    }
}

/// A sink as shown in conditions and recorded with its health: no query string (it could
/// carry a key), no fragment.
pub fn display_sink(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Why a sink did not accept an event. The text goes into a condition: no URLs with queries,
/// no response bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkFailure {
    Status(u16),
    Timeout(Duration),
    Unreachable(String),
}

impl fmt::Display for SinkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkFailure::Status(code) => write!(f, "the sink answered HTTP {code}"),
            SinkFailure::Timeout(d) => {
                write!(f, "the sink did not answer within {:.1}s", d.as_secs_f64())
            }
            SinkFailure::Unreachable(why) => write!(f, "the sink could not be reached ({why})"),
        }
    }
}

pub struct Forwarder {
    http: reqwest::Client,
}

impl Forwarder {
    pub fn new(resolver: std::sync::Arc<SinkResolver>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(resolver)
            .user_agent(concat!("zoom-operator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Forwarder { http })
    }

    /// POSTs one event; anything but a 2xx within `budget` is a failure. The answer's body is
    /// not read.
    pub async fn send(
        &self,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
        budget: Duration,
    ) -> Result<(), SinkFailure> {
        let request = self
            .http
            .post(url.clone())
            .headers(headers)
            .body(body)
            .timeout(budget)
            .send();
        // The outer timeout also bounds DNS and connect, whatever reqwest's internals do.
        match tokio::time::timeout(budget, request).await {
            Err(_) => Err(SinkFailure::Timeout(budget)),
            Ok(Err(e)) if e.is_timeout() => Err(SinkFailure::Timeout(budget)),
            Ok(Err(e)) => Err(SinkFailure::Unreachable(root_cause(&e))),
            Ok(Ok(response)) if response.status().is_success() => Ok(()),
            Ok(Ok(response)) => Err(SinkFailure::Status(response.status().as_u16())),
        }
    }
}

/// The innermost error's text ("Connection refused (os error 111)"), which says what went
/// wrong without repeating the URL.
fn root_cause(e: &reqwest::Error) -> String {
    let mut current: &dyn std::error::Error = e;
    while let Some(next) = current.source() {
        current = next;
    }
    let text = current.to_string();
    if text.is_empty() {
        "connection failed".to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] =
        br#"{"event":"meeting.started","event_ts":1700000000123,"payload":{"account_id":"acc"}}"#;

    fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
        h.get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn binary_mode_headers() {
        let ce = CloudEvent::for_zoom_event(
            "team-a",
            "sales-bot",
            "meeting.started",
            Some(1_700_000_000_123),
            "application/json; charset=utf-8",
            BODY,
        );
        let h = ce.headers().expect("valid headers");
        assert_eq!(header(&h, "ce-specversion"), Some("1.0"));
        assert_eq!(
            header(&h, "ce-id").map(str::to_owned),
            Some(hex::encode(Sha256::digest(BODY)))
        );
        assert_eq!(
            header(&h, "ce-source"),
            Some("zoom-operator.io/team-a/sales-bot")
        );
        assert_eq!(header(&h, "ce-type"), Some("us.zoom.meeting.started"));
        assert_eq!(header(&h, "ce-time"), Some("2023-11-14T22:13:20.123Z"));
        assert_eq!(
            header(&h, "content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(h.len(), 6);
    }

    #[test]
    fn id_is_the_body_hash_and_time_is_optional() {
        let ce = CloudEvent::for_zoom_event("ns", "n", "x", None, "application/json", BODY);
        assert_eq!(ce.id, hex::encode(Sha256::digest(BODY)));
        assert_eq!(ce.id.len(), 64);
        assert_eq!(ce.time, None);
        let h = ce.headers().expect("valid");
        assert!(h.get("ce-time").is_none());
        assert!(ce
            .id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        // Same body, same id: Zoom's retries of one event de-duplicate at the sink.
        let again = CloudEvent::for_zoom_event("ns", "n", "x", Some(5), "application/json", BODY);
        assert_eq!(again.id, ce.id);
    }

    #[test]
    fn an_event_name_that_cannot_be_a_header_is_an_error_not_a_panic() {
        let ce = CloudEvent::for_zoom_event("ns", "n", "bad\nname", None, "application/json", BODY);
        assert!(ce.headers().is_err());
    }

    #[test]
    fn out_of_range_event_ts_is_dropped() {
        let ce =
            CloudEvent::for_zoom_event("ns", "n", "x", Some(i64::MAX), "application/json", BODY);
        assert_eq!(ce.time, None);
    }

    #[test]
    fn sinks_are_shown_without_query() {
        let url = Url::parse("http://h.ns.svc:8080/zoom?key=secret#frag").expect("url");
        assert_eq!(display_sink(&url), "http://h.ns.svc:8080/zoom");
    }

    #[test]
    fn failures_read_well() {
        assert_eq!(
            SinkFailure::Status(502).to_string(),
            "the sink answered HTTP 502"
        );
        assert_eq!(
            SinkFailure::Timeout(Duration::from_millis(2500)).to_string(),
            "the sink did not answer within 2.5s"
        );
    }
}
