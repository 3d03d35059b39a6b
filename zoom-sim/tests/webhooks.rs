//! Webhook delivery like Zoom's, observed from a local receiver: retries on Zoom's
//! schedule driven by `/sim/clock`, timeouts, duplicates, optional headers and the
//! bounded pending queue.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use common::{app, get_json, http, independent_hmac, json_of, ok, post_json};
use zoom_sim::server::{start, RunningServer, ServeOptions};
use zoom_sim::state::App;

const SECRET: &str = "hooktoken";

/// How the receiver answers one request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// Answer 200, but only after this long.
    Slow(Duration),
    /// Answer url_validation with this secret token (signature not checked, as by a
    /// receiver that accepts both tokens while it rotates).
    ValidateWith(&'static str),
}

/// One request as received.
#[derive(Clone, Debug)]
struct Hit {
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Hit {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    fn timestamp(&self) -> i64 {
        self.header("x-zm-request-timestamp")
            .and_then(|t| t.parse().ok())
            .expect("numeric x-zm-request-timestamp")
    }

    /// The signature checked with our own HMAC over the raw bytes.
    fn signature_valid(&self) -> bool {
        let mut message = format!("v0:{}:", self.timestamp()).into_bytes();
        message.extend_from_slice(&self.body);
        self.header("x-zm-signature") == Some(format!("v0={}", independent_hmac(SECRET, &message)))
    }
}

#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    fallback: Arc<Mutex<Option<Answer>>>,
    hits: Arc<Mutex<Vec<Hit>>>,
}

/// A receiver that answers from a script (then with the fallback, default 200).
struct ScriptedReceiver {
    addr: SocketAddr,
    script: Script,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedReceiver {
    async fn start(answers: &[Answer], fallback: Answer) -> Self {
        let script = Script::default();
        script
            .answers
            .lock()
            .expect("lock")
            .extend(answers.iter().copied());
        *script.fallback.lock().expect("lock") = Some(fallback);
        let app = Router::new()
            .route("/hook", post(scripted))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        ScriptedReceiver { addr, script, task }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.script.hits.lock().expect("lock").clone()
    }

    /// Waits (up to 5 s) until `n` requests arrived.
    async fn wait_for(&self, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let hits = self.hits();
            if hits.len() >= n || Instant::now() > deadline {
                return hits;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ScriptedReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn scripted(State(script): State<Script>, headers: HeaderMap, body: Bytes) -> Response {
    script.hits.lock().expect("lock").push(Hit {
        headers,
        body: body.to_vec(),
    });
    let next = script.answers.lock().expect("lock").pop_front();
    let answer = next
        .or(*script.fallback.lock().expect("lock"))
        .unwrap_or(Answer::Status(200));
    match answer {
        Answer::Status(code) => {
            (StatusCode::from_u16(code).expect("status"), "answer").into_response()
        }
        Answer::Slow(delay) => {
            tokio::time::sleep(delay).await;
            (StatusCode::OK, "late").into_response()
        }
        Answer::ValidateWith(secret) => {
            let event: Value = serde_json::from_slice(&body).unwrap_or_default();
            let plain = event["payload"]["plainToken"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let encrypted = independent_hmac(secret, plain.as_bytes());
            axum::Json(json!({"plainToken": plain, "encryptedToken": encrypted})).into_response()
        }
    }
}

fn hook_app(url: &str) -> App {
    app(&format!(
        "kind=oauth,client_id=hookid,client_secret=hooksecret,secret_token={SECRET},account_id=HACC,verification_token=legacy-vt,event_url={url}"
    ))
}

async fn sim(url: &str) -> RunningServer {
    start(ServeOptions {
        apps: vec![hook_app(url)],
        ..ServeOptions::default()
    })
    .await
    .expect("server starts")
}

async fn get_ok(base: &str, path: &str) -> Value {
    ok(get_json(base, path, None).await)
}

async fn send(base: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"client_id": "hookid", "event": "meeting.started", "payload": {"object": {"id": "1"}}});
    if let (Some(obj), Value::Object(more)) = (body.as_object_mut(), extra) {
        obj.extend(more);
    }
    post_json(base, "/sim/webhooks/send", body).await
}

async fn advance(base: &str, secs: i64) {
    let (status, body) = post_json(base, "/sim/clock", json!({"advance_secs": secs})).await;
    assert_eq!(status, 200, "{body}");
}

async fn stats(base: &str) -> Value {
    get_ok(base, "/sim/stats?client_id=hookid").await
}

/// Nothing more arrives within `wait`.
async fn assert_quiet(receiver: &ScriptedReceiver, n: usize, wait: Duration) {
    tokio::time::sleep(wait).await;
    assert_eq!(receiver.hits().len(), n, "no further delivery expected yet");
}

#[tokio::test]
async fn failed_delivery_is_retried_on_zooms_schedule_by_the_simulated_clock() {
    let receiver = ScriptedReceiver::start(
        &[Answer::Status(500), Answer::Status(503)],
        Answer::Status(200),
    )
    .await;
    let srv = sim(&receiver.url()).await;
    let base = srv.base_url();

    let (status, answer) = send(&base, json!({})).await;
    assert_eq!(
        (status, answer["status"].as_u64()),
        (200, Some(500)),
        "{answer}"
    );
    assert_eq!(answer["error"], Value::Null);
    let due = answer["retry"]["due_in_secs"]
        .as_i64()
        .expect("retry scheduled");
    assert!(
        (298..=300).contains(&due),
        "first retry after 5 minutes: {due}"
    );

    let pending = get_ok(&base, "/sim/webhooks/pending").await;
    assert_eq!(pending["count"], 1, "{pending}");
    assert_eq!(pending["max"], 10_000);
    let entry = &pending["pending"][0];
    assert_eq!(
        (&entry["event"], &entry["attempts"], &entry["last_result"]),
        (&json!("meeting.started"), &json!(1), &json!("status 500"))
    );

    // 4 min 57 s later: not yet.
    advance(&base, 297).await;
    assert_quiet(&receiver, 1, Duration::from_millis(500)).await;
    // Real time carries it the rest of the way (the due time is < 3 s away).
    let hits = receiver.wait_for(2).await;
    assert_eq!(
        hits.len(),
        2,
        "the first retry goes out when its time comes"
    );

    // The second retry is 20 minutes after the first retry.
    assert_eq!(get_ok(&base, "/sim/webhooks/pending").await["count"], 1);
    advance(&base, 19 * 60).await;
    assert_quiet(&receiver, 2, Duration::from_millis(500)).await;
    advance(&base, 61).await;
    let hits = receiver.wait_for(3).await;
    assert_eq!(hits.len(), 3);
    // 200 at last: nothing left to retry.
    assert_eq!(get_ok(&base, "/sim/webhooks/pending").await["count"], 0);

    // Retries are the same request: body and tracking id. With retry_timestamp
    // "original" (the default) the timestamp is the first one, moved back by the
    // simulated time that passed, so a receiver sees the retry as old as it is.
    for hit in &hits {
        assert_eq!(hit.body, hits[0].body);
        assert_eq!(
            hit.header("x-zm-trackingid"),
            hits[0].header("x-zm-trackingid")
        );
        assert!(hit.signature_valid(), "retries stay verifiable");
    }
    let ts: Vec<i64> = hits.iter().map(Hit::timestamp).collect();
    assert_eq!(
        ts[0] - ts[1],
        297,
        "moved back by the clock advance: {ts:?}"
    );
    assert_eq!(ts[0] - ts[2], 297 + 19 * 60 + 61, "{ts:?}");

    let s = stats(&base).await;
    assert_eq!(
        (
            &s["webhook_deliveries"],
            &s["webhook_retries"],
            &s["webhook_failures"],
            &s["webhooks_dropped"],
            &s["webhooks_pending"]
        ),
        (&json!(3), &json!(2), &json!(2), &json!(0), &json!(0)),
        "{s}"
    );
}

#[tokio::test]
async fn after_the_third_retry_the_event_is_dropped_and_fresh_mode_re_signs() {
    let receiver = ScriptedReceiver::start(&[], Answer::Status(503)).await;
    let srv = sim(&receiver.url()).await;
    let base = srv.base_url();
    let (status, cfg) = post_json(&base, "/sim/config", json!({"retry_timestamp": "fresh"})).await;
    assert_eq!(
        (status, &cfg["retry_timestamp"]),
        (200, &json!("fresh")),
        "{cfg}"
    );

    send(&base, json!({})).await;
    for (n, secs) in [(2, 300), (3, 20 * 60), (4, 60 * 60)] {
        advance(&base, secs).await;
        assert_eq!(receiver.wait_for(n).await.len(), n, "attempt {n}");
    }
    advance(&base, 24 * 3600).await;
    assert_quiet(&receiver, 4, Duration::from_millis(700)).await;

    let hits = receiver.hits();
    for hit in &hits[1..] {
        assert!(hit.timestamp() >= hits[0].timestamp(), "fresh timestamps");
        assert!(hit.signature_valid(), "re-signed with the fresh timestamp");
        assert_eq!(hit.body, hits[0].body);
    }
    let s = stats(&base).await;
    assert_eq!(
        (
            &s["webhook_deliveries"],
            &s["webhook_retries"],
            &s["webhooks_dropped"]
        ),
        (&json!(4), &json!(3), &json!(1)),
        "{s}"
    );
    assert_eq!(get_ok(&base, "/sim/webhooks/pending").await["count"], 0);
}

#[tokio::test]
async fn slow_receivers_time_out_and_timeouts_are_reported_apart() {
    let receiver =
        ScriptedReceiver::start(&[Answer::Slow(Duration::from_secs(2))], Answer::Status(200)).await;
    let srv = sim(&receiver.url()).await;
    let base = srv.base_url();

    let cfg = get_ok(&base, "/sim/config").await;
    assert_eq!(
        cfg["webhook_timeout_ms"], 3000,
        "Zoom waits 3 seconds: {cfg}"
    );
    assert_eq!(cfg["webhook_request_id_header"], false);
    assert_eq!(cfg["retry_timestamp"], "original");
    assert_eq!(cfg["rate_limit"]["enabled"], false);

    post_json(&base, "/sim/config", json!({"webhook_timeout_ms": 300})).await;
    let started = Instant::now();
    let (status, answer) = send(&base, json!({})).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "gave up after the timeout"
    );
    assert_eq!(status, 502, "{answer}");
    assert_eq!(
        (&answer["status"], &answer["error"]),
        (&Value::Null, &json!("timeout"))
    );
    assert!(
        answer["retry"]["id"].is_u64(),
        "a timeout is retried: {answer}"
    );

    // Nothing listening at all: a connection error, also apart from statuses.
    let (status, answer) = send(&base, json!({"url": "http://127.0.0.1:1/"})).await;
    assert_eq!(
        (status, &answer["error"]),
        (502, &json!("connection")),
        "{answer}"
    );
    assert_eq!(answer["code"], 502);

    let s = stats(&base).await;
    assert_eq!(
        (
            &s["webhook_timeouts"],
            &s["webhook_connection_errors"],
            &s["webhook_failures"]
        ),
        (&json!(1), &json!(1), &json!(0)),
        "{s}"
    );
    // The timed-out event is retried (the receiver is fast now).
    advance(&base, 300).await;
    let pending = receiver.wait_for(2).await;
    assert_eq!(pending.len(), 2);
}

#[tokio::test]
async fn duplicates_repeat_the_same_body_and_headers() {
    let receiver = ScriptedReceiver::start(&[], Answer::Status(200)).await;
    let srv = sim(&receiver.url()).await;
    let base = srv.base_url();

    let (status, answer) = send(&base, json!({"duplicate": true})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["duplicate"]["status"], 200, "{answer}");
    let hits = receiver.wait_for(2).await;
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].body, hits[1].body);
    for name in [
        "x-zm-request-timestamp",
        "x-zm-signature",
        "x-zm-trackingid",
        "clientid",
    ] {
        assert!(hits[0].header(name).is_some(), "{name}");
        assert_eq!(hits[0].header(name), hits[1].header(name), "{name}");
    }

    // duplicate_rate 1: every event twice; an explicit false wins.
    post_json(&base, "/sim/config", json!({"duplicate_rate": 1.0})).await;
    send(&base, json!({})).await;
    assert_eq!(receiver.wait_for(4).await.len(), 4);
    send(&base, json!({"duplicate": false})).await;
    assert_quiet(&receiver, 5, Duration::from_millis(300)).await;

    let s = stats(&base).await;
    assert_eq!(
        (&s["webhook_deliveries"], &s["webhook_duplicates"]),
        (&json!(5), &json!(2)),
        "{s}"
    );
}

#[tokio::test]
async fn optional_headers_request_id_and_legacy_authorization() {
    let receiver = ScriptedReceiver::start(&[], Answer::Status(200)).await;
    let srv = sim(&receiver.url()).await;
    let base = srv.base_url();

    send(&base, json!({})).await;
    let (status, cfg) = post_json(
        &base,
        "/sim/config",
        json!({"webhook_request_id_header": true, "legacy_authorization_header": true}),
    )
    .await;
    assert_eq!(status, 200, "{cfg}");
    send(&base, json!({})).await;
    let hits = receiver.wait_for(2).await;

    let plain = &hits[0];
    assert!(plain.header("x-zm-trackingid").is_some());
    assert_eq!(plain.header("x-zm-request-id"), None, "off by default");
    assert_eq!(plain.header("authorization"), None, "off by default");
    assert_eq!(
        plain.header("user-agent").as_deref(),
        Some("Zoom Marketplace/1.0a")
    );

    let with = &hits[1];
    assert_eq!(
        with.header("x-zm-request-id"),
        with.header("x-zm-trackingid")
    );
    assert_eq!(with.header("authorization").as_deref(), Some("legacy-vt"));
    assert!(with.signature_valid());
}

#[tokio::test]
async fn the_pending_queue_is_bounded_and_drops_the_oldest() {
    let receiver = ScriptedReceiver::start(&[], Answer::Status(500)).await;
    let srv = sim(&receiver.url()).await;
    let base = srv.base_url();
    post_json(&base, "/sim/config", json!({"max_pending_webhooks": 2})).await;

    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, answer) = send(&base, json!({})).await;
        ids.push(answer["retry"]["id"].as_u64().expect("queued"));
    }
    let pending = get_ok(&base, "/sim/webhooks/pending").await;
    let listed: Vec<u64> = pending["pending"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["id"].as_u64())
        .collect();
    assert_eq!(
        listed,
        ids[1..].to_vec(),
        "the oldest was dropped: {pending}"
    );
    let s = stats(&base).await;
    assert_eq!(
        (
            &s["webhooks_evicted"],
            &s["webhooks_dropped"],
            &s["webhooks_pending"]
        ),
        (&json!(1), &json!(1), &json!(2)),
        "{s}"
    );

    // retry:false opts one event out; DELETE forgets the queue.
    let (_, answer) = send(&base, json!({"retry": false})).await;
    assert_eq!(answer["retry"], Value::Null);
    let cleared: Value = http()
        .delete(format!("{base}/sim/webhooks/pending"))
        .send()
        .await
        .expect("delete")
        .json()
        .await
        .expect("json");
    assert_eq!(cleared["cleared"], 2);
    advance(&base, 3600).await;
    assert_quiet(&receiver, 4, Duration::from_millis(500)).await;
}

#[tokio::test]
async fn deauthorize_failures_are_retried_too() {
    let receiver = ScriptedReceiver::start(&[Answer::Status(500)], Answer::Status(200)).await;
    let srv = sim(&receiver.url()).await;
    let base = srv.base_url();
    let (status, answer) =
        post_json(&base, "/sim/deauthorize", json!({"client_id": "hookid"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["webhook"]["status"], 500);
    assert!(answer["webhook"]["retry"]["id"].is_u64(), "{answer}");
    advance(&base, 300).await;
    let hits = receiver.wait_for(2).await;
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].body, hits[0].body);
}

#[tokio::test]
async fn bad_delivery_settings_are_refused_with_zoom_shaped_400s() {
    let srv = sim("http://127.0.0.1:1/hook").await;
    let base = srv.base_url();
    for body in [
        json!({"duplicate_rate": 2}),
        json!({"duplicate_rate": -0.1}),
        json!({"retry_timestamp": "later"}),
        json!({"webhook_timeout_ms": 0}),
        json!({"webhook_timeout_ms": 10_000_000}),
        json!({"max_pending_webhooks": 0}),
        json!({"webhook_retries": "yes"}),
        json!({"rate_limit": {"enabled": true, "light": {"rate": 0}}}),
        json!({"rate_limit": {"enabled": true, "bogus": 1}}),
        json!({"retry_schedule": [1]}),
    ] {
        let (status, answer) = post_json(&base, "/sim/config", body.clone()).await;
        assert_eq!(
            (status, answer["code"].as_u64()),
            (400, Some(300)),
            "{body} -> {answer}"
        );
    }
    // Nothing was applied by the refused requests.
    let cfg = get_ok(&base, "/sim/config").await;
    assert_eq!(
        (&cfg["duplicate_rate"], &cfg["webhook_timeout_ms"]),
        (&json!(0.0), &json!(3000))
    );
    let (status, answer) = send(&base, json!({"event": ""})).await;
    assert_eq!(
        (status, answer["code"].as_u64()),
        (400, Some(300)),
        "{answer}"
    );
    let (status, _) = send(&base, json!({"duplicate": "twice"})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_rotated_secret_token_signs_at_once_and_the_old_one_validates_for_a_while() {
    let receiver = ScriptedReceiver::start(&[], Answer::Status(200)).await;
    let srv = sim(&receiver.url()).await;
    let base = srv.base_url();

    let (status, rotated) = post_json(
        &base,
        "/sim/apps/hookid/rotate-secret-token",
        json!({"secret_token": "newtoken", "grace_secs": 600}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["secret_token"], "newtoken");
    assert!(rotated["previous_valid_until_ms"].is_i64(), "{rotated}");

    send(&base, json!({})).await;
    let hit = &receiver.wait_for(1).await[0];
    let mut message = format!("v0:{}:", hit.timestamp()).into_bytes();
    message.extend_from_slice(&hit.body);
    assert_eq!(
        hit.header("x-zm-signature"),
        Some(format!("v0={}", independent_hmac("newtoken", &message))),
        "signed with the new token"
    );
    assert!(!hit.signature_valid(), "not with the old one");

    // A receiver still answering with the old token passes url_validation during the
    // grace period only.
    let old = ScriptedReceiver::start(&[], Answer::ValidateWith(SECRET)).await;
    let (_, verdict) = post_json(
        &base,
        "/sim/webhooks/validate",
        json!({"client_id": "hookid", "url": old.url()}),
    )
    .await;
    assert_eq!(
        (&verdict["valid"], &verdict["secret_token"]),
        (&json!(true), &json!("previous")),
        "{verdict}"
    );
    let new = ScriptedReceiver::start(&[], Answer::ValidateWith("newtoken")).await;
    let (_, verdict) = post_json(
        &base,
        "/sim/webhooks/validate",
        json!({"client_id": "hookid", "url": new.url()}),
    )
    .await;
    assert_eq!(verdict["secret_token"], "current", "{verdict}");
    advance(&base, 601).await;
    let (_, verdict) = post_json(
        &base,
        "/sim/webhooks/validate",
        json!({"client_id": "hookid", "url": old.url()}),
    )
    .await;
    assert_eq!(verdict["valid"], false, "{verdict}");

    for (path, body, want) in [
        ("/sim/apps/nope/rotate-secret-token", json!({}), 404),
        (
            "/sim/apps/hookid/rotate-secret-token",
            json!({"grace_secs": 999_999_999}),
            400,
        ),
        (
            "/sim/apps/hookid/rotate-secret-token",
            json!({"secret_token": ""}),
            400,
        ),
        (
            "/sim/apps/hookid/rotate-secret-token",
            json!({"client_secret": "x"}),
            400,
        ),
        (
            "/sim/apps/hookid/rotate-secret-token",
            json!({"colour": "red"}),
            400,
        ),
    ] {
        let (status, answer) = post_json(&base, path, body.clone()).await;
        assert_eq!(status, want, "{path} {body}: {answer}");
    }
    // Each rotation names the other one's route when given the other's value.
    for (path, body, message) in [
        (
            "/sim/apps/hookid/rotate-secret-token",
            json!({"client_secret": "x"}),
            "this rotates the secret_token; use rotate-client-secret for the client_secret",
        ),
        (
            "/sim/apps/hookid/rotate-client-secret",
            json!({"secret_token": "x"}),
            "this rotates the client_secret; use rotate-secret-token for the secret_token",
        ),
    ] {
        let (status, answer) = post_json(&base, path, body).await;
        assert_eq!(
            (status, &answer["message"]),
            (400, &json!(message)),
            "{path}"
        );
    }
}

/// Authorizes hookid (consent switched to approve) and returns its refresh token.
async fn user_grant(base: &str) -> String {
    post_json(base, "/sim/config", json!({"consent": "approve"})).await;
    let redirect = "https://client.example/cb";
    let resp = common::authorize(base, "hookid", redirect, &[]).await;
    let code = common::location_param(&resp, "code").expect("code");
    let (status, body) =
        common::exchange_code(base, ("hookid", "hooksecret"), &code, redirect).await;
    assert_eq!(status, 200, "{body}");
    body["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned()
}

async fn revoke(base: &str, token: &str) {
    let resp = http()
        .post(format!("{base}/oauth/revoke"))
        .basic_auth("hookid", Some("hooksecret"))
        .form(&[("token", token)])
        .send()
        .await
        .expect("revoke");
    assert_eq!(json_of(resp).await, (200, json!({"status": "success"})));
}

#[tokio::test]
async fn revoking_a_grant_sends_app_deauthorized_retried_like_any_event() {
    let receiver = ScriptedReceiver::start(&[Answer::Status(503)], Answer::Status(200)).await;
    let srv = sim(&receiver.url()).await;
    let base = srv.base_url();
    let refresh_token = user_grant(&base).await;
    revoke(&base, &refresh_token).await;

    let hits = receiver.wait_for(1).await;
    assert_eq!(hits.len(), 1, "app_deauthorized after the revoke");
    assert!(hits[0].signature_valid());
    let event: Value = serde_json::from_slice(&hits[0].body).expect("json");
    assert_eq!(event["event"], "app_deauthorized");
    let own_user = hook_app(&receiver.url()).user_id;
    assert_eq!(event["payload"]["user_id"], own_user.as_str());
    assert_eq!(
        (
            &event["payload"]["account_id"],
            &event["payload"]["client_id"]
        ),
        (&json!("HACC"), &json!("hookid"))
    );
    // The 503 is retried on Zoom's schedule, like /sim/deauthorize's event (queued once the
    // answer is in, a moment after the receiver saw the request).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut pending = get_ok(&base, "/sim/webhooks/pending").await;
    while pending["count"] == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        pending = get_ok(&base, "/sim/webhooks/pending").await;
    }
    assert_eq!(
        pending["pending"][0]["event"], "app_deauthorized",
        "{pending}"
    );
    advance(&base, 300).await;
    let hits = receiver.wait_for(2).await;
    assert_eq!((hits.len(), &hits[1].body), (2, &hits[0].body));
    let counted = stats(&base).await;
    assert_eq!(
        (&counted["revokes"], &counted["deauthorizations"]),
        (&json!(1), &json!(1)),
        "{counted}"
    );

    // A token zoom-sim does not know revokes nothing and sends nothing.
    revoke(&base, "not-a-token").await;
    assert_quiet(&receiver, 2, Duration::from_millis(300)).await;

    // Switched off, a revoke is only a revoke.
    let (status, config) = post_json(
        &base,
        "/sim/config",
        json!({"revoke_sends_deauthorization": false}),
    )
    .await;
    assert_eq!(
        (status, &config["revoke_sends_deauthorization"]),
        (200, &json!(false))
    );
    let refresh_token = user_grant(&base).await;
    revoke(&base, &refresh_token).await;
    assert_quiet(&receiver, 2, Duration::from_millis(300)).await;
    assert_eq!(stats(&base).await["deauthorizations"], 1);
}

#[tokio::test]
async fn a_deauthorization_url_takes_app_deauthorized_and_nothing_else() {
    let events = ScriptedReceiver::start(&[], Answer::Status(200)).await;
    let deauth = ScriptedReceiver::start(&[], Answer::Status(200)).await;
    let mut app = hook_app(&events.url());
    app.deauthorization_url = Some(deauth.url());
    let srv = start(ServeOptions {
        apps: vec![app],
        ..ServeOptions::default()
    })
    .await
    .expect("server starts");
    let base = srv.base_url();

    let (status, answer) =
        post_json(&base, "/sim/deauthorize", json!({"client_id": "hookid"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["webhook"]["url"], deauth.url().as_str());
    assert_eq!(answer["webhooks"].as_array().map(Vec::len), Some(1));
    let refresh_token = user_grant(&base).await;
    revoke(&base, &refresh_token).await;
    let hits = deauth.wait_for(2).await;
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(Hit::signature_valid));
    // Other events still go to the event_url.
    let (status, sent) = send(&base, json!({})).await;
    assert_eq!((status, &sent["url"]), (200, &json!(events.url())));
    assert_eq!(events.wait_for(1).await.len(), 1);
    assert_eq!(deauth.hits().len(), 2);

    // Listed by /sim/apps; set through the CLI spec and JSON alike.
    let apps = get_ok(&base, "/sim/apps").await;
    assert_eq!(
        apps["apps"][0]["deauthorization_url"],
        deauth.url().as_str()
    );
    let (status, created) = post_json(
        &base,
        "/sim/apps",
        json!({"client_id": "other", "client_secret": "s", "deauthorization_url": "ftp://x.example/"}),
    )
    .await;
    assert_eq!((status, &created["code"]), (400, &json!(300)), "{created}");
}
