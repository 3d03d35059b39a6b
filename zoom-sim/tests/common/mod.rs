//! Shared test helpers: a webhook receiver that checks Zoom signatures with its
//! own HMAC code (independent of zoom-sim's), and small HTTP utilities.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// x-zm-signature matched our own HMAC over the raw body.
    pub signature_valid: bool,
    /// x-zm-request-timestamp is more than 5 minutes away from now.
    pub stale: bool,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }
}

/// How the receiver answers `endpoint.url_validation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validation {
    /// Correct: echo plainToken, encryptedToken = hex(HMAC(secret, plainToken)).
    Correct,
    /// Wrong: HMAC keyed with a different secret.
    WrongSecret,
}

#[derive(Clone)]
struct ReceiverState {
    secret: String,
    validation: Validation,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A receiver like a careful integration would write: verify the signature
/// and freshness first, then answer url_validation or acknowledge the event.
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(secret: &str, validation: Validation) -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = ReceiverState {
            secret: secret.to_owned(),
            validation,
            received: received.clone(),
        };
        let app = Router::new()
            .route("/zoom/event", post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        Receiver {
            addr,
            received,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/zoom/event", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("receiver lock").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// hex(HMAC-SHA256(key, message)), written here independently of zoom-sim.
pub fn independent_hmac(key: &str, message: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("hmac key");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

async fn receive(State(state): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> Response {
    let timestamp = headers
        .get("x-zm-request-timestamp")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let signature = headers
        .get("x-zm-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut message = format!("v0:{timestamp}:").into_bytes();
    message.extend_from_slice(&body);
    let expected = format!("v0={}", independent_hmac(&state.secret, &message));
    let signature_valid = signature == expected;
    let stale = timestamp
        .parse::<i64>()
        .map(|ts| (now_secs() - ts).abs() > 300)
        .unwrap_or(true);
    state
        .received
        .lock()
        .expect("receiver lock")
        .push(Received {
            headers: headers.clone(),
            body: body.to_vec(),
            signature_valid,
            stale,
        });
    if !signature_valid {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad signature"})),
        )
            .into_response();
    }
    if stale {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "stale timestamp"})),
        )
            .into_response();
    }
    let event: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return (StatusCode::BAD_REQUEST, "not json").into_response(),
    };
    if event["event"] == "endpoint.url_validation" {
        let plain = event["payload"]["plainToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = match state.validation {
            Validation::Correct => state.secret.clone(),
            Validation::WrongSecret => format!("{}-wrong", state.secret),
        };
        let encrypted = independent_hmac(&key, plain.as_bytes());
        return Json(json!({"plainToken": plain, "encryptedToken": encrypted})).into_response();
    }
    Json(json!({"received": event["event"]})).into_response()
}

/// A client that does not follow redirects, so tests can read `Location`.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// A query parameter of the `Location` header of a redirect.
pub fn location_param(resp: &reqwest::Response, name: &str) -> Option<String> {
    let location = resp.headers().get("location")?.to_str().ok()?;
    let url = url::Url::parse(location).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Status and JSON body.
pub async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// `GET /oauth/authorize?response_type=code&client_id=..&redirect_uri=..` plus `extra`
/// parameters; the answer as is (redirects are not followed).
pub async fn authorize(
    base: &str,
    client_id: &str,
    redirect: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect),
    ];
    query.extend_from_slice(extra);
    http()
        .get(format!("{base}/oauth/authorize"))
        .query(&query)
        .send()
        .await
        .expect("authorize")
}

/// `POST /oauth/token` with `grant_type=authorization_code`: status and JSON.
pub async fn exchange_code(
    base: &str,
    (client_id, secret): (&str, &str),
    code: &str,
    redirect: &str,
) -> (u16, Value) {
    let resp = http()
        .post(format!("{base}/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
        ])
        .send()
        .await
        .expect("token request");
    json_of(resp).await
}

/// An app from a `--app` spec (`kind=oauth,client_id=..,...`).
pub fn app(spec: &str) -> zoom_sim::state::App {
    zoom_sim::config::AppSpec::parse_cli(spec)
        .and_then(zoom_sim::config::AppSpec::into_app)
        .expect("valid app spec")
        .app
}

/// `POST {base}{path}` with a JSON body: status and JSON.
pub async fn post_json(base: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = http()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    json_of(resp).await
}

/// `GET {base}{path}`, with a bearer token if given: status and JSON.
pub async fn get_json(base: &str, path: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut req = http().get(format!("{base}{path}"));
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    json_of(
        req.send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}")),
    )
    .await
}

/// The JSON of an answer that must be 200.
pub fn ok((status, body): (u16, Value)) -> Value {
    assert_eq!(status, 200, "{body}");
    body
}

/// A string field of a JSON answer.
pub fn str_of(body: &Value, key: &str) -> String {
    body[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {body}"))
        .to_owned()
}

/// The status of `GET {base}{path}`.
pub async fn get_status(base: &str, path: &str) -> u16 {
    http()
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .status()
        .as_u16()
}
