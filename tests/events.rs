//! Zoom webhooks end to end against the real local control plane: URL validation, signature
//! and transport refusals, CloudEvent forwarding (byte for byte), sink failures, routing by
//! app and account, secret token rotation, deauthorization and the SSRF policy for sinks.

mod common;

use std::time::Duration;

use common::sink::RecordingSink;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use zoom_operator::api::ZoomConnection;
use zoom_operator::zoom::webhook::sign;

// ----- helpers ------------------------------------------------------------------------------

/// `zoom-sim send-event ...`: (exit ok, stdout).
async fn sim_send(op: &Operator, token: &str, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(zoom_sim_binary())
        .arg("send-event")
        .arg(format!("--url={}/zoom/event", op.public_url))
        .arg(format!("--secret-token={token}"))
        .args(args)
        .output()
        .await
        .expect("run zoom-sim send-event");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// A Server-to-Server app of `account` whose secret token is `token`.
fn s2s_app(id: &str, token: &str, account: &str) -> ZoomApp {
    ZoomApp::s2s(id, account).secret_token(token)
}

/// A Server-to-Server connection using credentials Secret `secret`, forwarding to `sink`.
fn s2s(name: &str, secret: &str, sink: Option<&str>) -> Zc {
    let zc = Zc::s2s(name).credentials(secret);
    match sink {
        Some(uri) => zc.sink_uri(uri),
        None => zc,
    }
}

/// The app, its Secret `zoom-app`, `connections` applied, and an operator that advertises
/// `http://zoom-operator.test` (and allows sinks on 127.0.0.1 with `sinks`), ready.
async fn setup(prefix: &str, app: ZoomApp, connections: &[Zc], sinks: bool, extra: &[&str]) -> Env {
    let mut env = Env::new(prefix)
        .app(app)
        .operator(&["--public-url=http://zoom-operator.test"])
        .operator(extra);
    if sinks {
        env = env.operator(&["--allow-sink-host=127.0.0.1"]);
    }
    let env = connections
        .iter()
        .fold(env, |env, zc| env.connection(zc.clone()))
        .start()
        .await;
    env.op.wait_ready().await;
    env
}

/// POSTs `body` signed with `token` and Zoom's request id `request_id`.
async fn post_with_id(op: &Operator, token: &str, body: &[u8], request_id: &str) -> Answer {
    try_post_signed(op, token, body, Some(request_id))
        .await
        .expect("POST /zoom/event")
}

/// Streams a `total`-byte body with chunked transfer encoding (no Content-Length) and
/// well-formed signature headers, reading the answer while still writing; returns the status.
async fn post_chunked(op: &Operator, total: usize) -> u16 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(&op.listen)
        .await
        .expect("connect");
    let (read, mut write) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        // Fresh, well-formed signature headers: without them the body is never read (401).
        let ts = now_secs().to_string();
        let head = format!(
            "POST /zoom/event HTTP/1.1\r\nHost: zoom-operator\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nx-zm-request-timestamp: {ts}\r\nx-zm-signature: {}\r\n\r\n",
            sign(b"any", &ts, b"")
        );
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            write
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            write.write_all(&chunk).await?;
            write.write_all(b"\r\n").await?;
            sent += chunk.len();
        }
        write.write_all(b"0\r\n\r\n").await?;
        Ok::<_, std::io::Error>(())
    });
    let mut status_line = String::new();
    let mut reader = BufReader::new(read);
    tokio::time::timeout(Duration::from_secs(15), reader.read_line(&mut status_line))
        .await
        .expect("an answer in time")
        .expect("read status line");
    writer.abort();
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"))
}

// ----- tests --------------------------------------------------------------------------------

#[tokio::test]
async fn url_validation_and_refusals() {
    let app = s2s_app("cid-v", "tok-v", "acc-v");
    let env = setup(
        "ev-validate",
        app,
        &[s2s("bot", "zoom-app", None)],
        false,
        &[],
    )
    .await;
    let op = &env.op;

    // URL validation, signed and answered with the app's secret token, through zoom-sim.
    let out = eventually("url validation", Duration::from_secs(30), || async {
        match sim_send(op, "tok-v", &["--validate"]).await {
            (true, out) => Ok(out),
            (false, out) => Err(out),
        }
    })
    .await;
    assert!(out.contains("validation: ok"), "{out}");

    // A token that no connection's app has: 401.
    let (ok, out) = sim_send(op, "some-other-token", &["--validate"]).await;
    assert!(!ok && out.contains("status: 401"), "{out}");

    // Bad signature and stale timestamp: 401 with a reason.
    let (ok, out) = sim_send(
        op,
        "tok-v",
        &[
            "--event=meeting.started",
            "--account-id=acc-v",
            "--bad-signature",
        ],
    )
    .await;
    assert!(
        !ok && out.contains("status: 401") && out.contains("bad_signature"),
        "{out}"
    );
    let stale = (now_secs() - 600).to_string();
    let (ok, out) = sim_send(
        op,
        "tok-v",
        &[
            "--event=meeting.started",
            "--account-id=acc-v",
            &format!("--timestamp={stale}"),
        ],
    )
    .await;
    assert!(
        !ok && out.contains("status: 401") && out.contains("stale"),
        "{out}"
    );

    // Missing headers: 401.
    let r = http()
        .post(format!("{}/zoom/event", op.public_url))
        .header("content-type", "application/json")
        .body(event_body("meeting.started", "acc-v"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 401);
    let answer: Value = r.json().await.expect("json error body");
    assert_eq!(answer["error"], "missing_headers");

    // Over 1 MiB: 413, whether declared or not.
    let mut big = b"{\"event\":\"meeting.started\",\"payload\":{\"x\":\"".to_vec();
    big.resize(1024 * 1024 + 100, b'x');
    big.extend_from_slice(b"\"}}");
    let answer = post_signed(op, "tok-v", &big).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(answer.body.contains("too_large"), "{}", answer.body);
    assert_eq!(post_chunked(op, big.len()).await, 413);

    // Not JSON: 415; signed but invalid JSON: 400.
    let r = http()
        .post(format!("{}/zoom/event", op.public_url))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 415);
    let answer = post_signed(op, "tok-v", b"{not json").await;
    assert_eq!(answer.status, 400, "{}", answer.body);

    // An event for the connection's account (no sink): accepted.
    let answer = post_until(op, "tok-v", &event_body("meeting.started", "acc-v"), 200).await;
    assert!(answer.body.contains("accepted"), "{}", answer.body);

    let m = op.metrics_text().await;
    for want in [
        r#"zoom_operator_webhook_requests_total{result="verified"} "#,
        r#"zoom_operator_webhook_requests_total{result="bad_signature"} "#,
        r#"zoom_operator_webhook_requests_total{result="stale"} "#,
    ] {
        assert!(m.contains(want), "metrics lack {want}:\n{m}");
    }
    assert!(!m.contains("tok-v"), "a secret token leaked into metrics");
    assert!(
        !op.process.logs().contains("tok-v"),
        "a secret token leaked into the log"
    );
}

#[tokio::test]
async fn forwards_cloudevents_byte_for_byte_and_sets_last_event_time() {
    let sink = RecordingSink::start("127.0.0.1").await;
    let app = s2s_app("cid-f", "tok-f", "acc-f");
    let bot = s2s("bot", "zoom-app", Some(&sink.url));
    let env = setup("ev-forward", app, &[bot], true, &[]).await;
    let (client, ns, op) = (&env.client, &env.ns, &env.op);
    env.wait("bot", "EventsReady", "True", "Ready").await;

    // Odd whitespace and key order: a re-serialised body would differ.
    let body = br#"{ "payload" : {"object":{"id":"85 123"},  "account_id":"acc-f"},"event":"meeting.started", "event_ts": 1700000000123 }"#;
    let answer = eventually(
        "the event is forwarded",
        Duration::from_secs(30),
        || async {
            let a = post_with_id(op, "tok-f", body, "req-123").await;
            if a.status == 200 && a.body.contains("\"forwarded\":1") {
                Ok(a)
            } else {
                Err(format!("{} {}", a.status, a.body))
            }
        },
    )
    .await;
    assert!(answer.elapsed < Duration::from_secs(3));
    let got = sink.received();
    let first = got.first().expect("the sink got the event");
    assert_eq!(first.body, body.to_vec(), "body unchanged, byte for byte");
    assert_eq!(first.header("ce-specversion"), Some("1.0"));
    // ce-id is the body's SHA-256 even when Zoom sends x-zm-request-id (undocumented).
    let body_hash = hex::encode(Sha256::digest(body));
    assert_eq!(first.header("ce-id"), Some(body_hash.as_str()));
    assert_eq!(
        first.header("ce-source"),
        Some(format!("zoom-operator.io/{ns}/bot").as_str())
    );
    assert_eq!(first.header("ce-type"), Some("us.zoom.meeting.started"));
    assert_eq!(first.header("ce-time"), Some("2023-11-14T22:13:20.123Z"));
    assert_eq!(
        first.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(
        first.header("x-zm-signature").is_none(),
        "Zoom's signature is not passed on"
    );

    // Without x-zm-request-id: the same id, so a sink sees Zoom's retry as a duplicate.
    let before = sink.received().len();
    let answer = post_signed(op, "tok-f", body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let got = sink.received();
    assert_eq!(got.len(), before + 1);
    assert_eq!(got[before].header("ce-id"), Some(body_hash.as_str()));

    // A real zoom-sim event goes through as well.
    let (ok, out) = sim_send(
        op,
        "tok-f",
        &[
            "--event=meeting.ended",
            "--account-id=acc-f",
            "--request-id=sim-1",
        ],
    )
    .await;
    assert!(ok, "{out}");
    let last = sink.received().pop().expect("sim event");
    assert_eq!(last.header("ce-type"), Some("us.zoom.meeting.ended"));
    assert_eq!(
        last.header("ce-id").map(str::to_owned),
        Some(hex::encode(Sha256::digest(&last.body)))
    );
    let parsed: Value = serde_json::from_slice(&last.body).expect("json");
    assert_eq!(parsed["payload"]["account_id"], "acc-f");

    // lastEventTime lands, written by its own field manager.
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), ns);
    let zc = eventually("lastEventTime", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let zc = api.get("bot").await.map_err(|e| e.to_string())?;
            match zc.status.as_ref().and_then(|s| s.last_event_time.as_ref()) {
                Some(_) => Ok(zc),
                None => Err("no lastEventTime".to_owned()),
            }
        }
    })
    .await;
    let managers: Vec<String> = zc
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == "zoom-operator-events"),
        "{managers:?}"
    );
    // The controller's status apply does not remove it.
    assert!(zc.condition("Ready").is_some());

    // Events inside the 10s window are coalesced, and the trailing write still lands the
    // newest time.
    let sent_at = now_secs();
    let answer = post_signed(op, "tok-f", &event_body("meeting.updated", "acc-f")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    eventually(
        "the trailing lastEventTime write",
        Duration::from_secs(20),
        || {
            let api = api.clone();
            async move {
                let zc = api.get("bot").await.map_err(|e| e.to_string())?;
                let last = zc
                    .status
                    .as_ref()
                    .and_then(|s| s.last_event_time.as_ref())
                    .map(|t| t.0.as_second());
                match last {
                    Some(t) if t >= sent_at => Ok(()),
                    other => Err(format!("lastEventTime {other:?}, want >= {sent_at}")),
                }
            }
        },
    )
    .await;
    let m = op.metrics_text().await;
    assert!(
        m.contains(r#"zoom_operator_webhook_requests_total{result="forwarded"} "#)
            && m.contains(r#"zoom_operator_events_delivered_total{result="delivered"} "#)
            && m.contains("zoom_operator_events_pending 0"),
        "{m}"
    );
}

#[tokio::test]
async fn without_storage_failing_sinks_get_503_and_sink_unreachable_until_they_recover() {
    let flaky = RecordingSink::start("127.0.0.1").await;
    let steady = RecordingSink::start("127.0.0.1").await;
    // Nothing listens on this port.
    let dead = format!("http://127.0.0.1:{}/hook", free_port());
    let connections = [
        s2s("flaky", "zoom-app", Some(&flaky.url)),
        s2s("steady", "zoom-app", Some(&steady.url)),
        s2s("dead", "zoom-app", Some(&dead)),
    ];
    // No storage for redelivery (tests/delivery.rs covers it): what Zoom alone gets, a 503 so
    // that it retries.
    let no_storage = ["--max-pending-events=0"];
    let app = s2s_app("cid-d", "tok-d", "acc-d");
    let env = setup("ev-down", app, &connections, true, &no_storage).await;
    let (client, ns, op) = (&env.client, &env.ns, &env.op);

    // A sink that refuses connections: 503 so Zoom retries, and the condition says why.
    let answer = post_until(op, "tok-d", &event_body("meeting.started", "acc-d"), 503).await;
    assert!(answer.body.contains("sink_failed"), "{}", answer.body);
    let zc = env
        .wait("dead", "EventsReady", "False", "SinkUnreachable")
        .await;
    let message = condition_message(&zc, "EventsReady");
    assert!(message.contains("could not be reached"), "{message}");
    env.wait("steady", "EventsReady", "True", "Ready").await;
    let token_secret: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = token_secret
        .get("dead-zoom-token")
        .await
        .expect("token secret");
    let ann = s.metadata.annotations.unwrap_or_default();
    assert!(
        ann.contains_key("zoom-operator.io/sink-unreachable"),
        "{ann:?}"
    );
    api_delete(client, ns, "dead").await;

    // A sink answering 500: 503.
    flaky.answer(500, Duration::ZERO);
    let answer = post_until(op, "tok-d", &event_body("meeting.started", "acc-d"), 503).await;
    assert!(answer.body.contains("sink_failed"), "{}", answer.body);
    env.wait("flaky", "EventsReady", "False", "SinkUnreachable")
        .await;

    // Still failing, for another reason: not a change of state, so no write.
    let version = |s: Secret| s.metadata.resource_version.unwrap_or_default();
    let before = version(
        token_secret
            .get("flaky-zoom-token")
            .await
            .expect("token secret"),
    );

    // A slow sink: 503 within Zoom's budget, and the fast sink still got the event.
    flaky.answer(200, Duration::from_secs(10));
    let steady_before = steady.received().len();
    let answer = post_signed(op, "tok-d", &event_body("meeting.started", "acc-d")).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer.elapsed < Duration::from_secs(3),
        "answered after {:?}",
        answer.elapsed
    );
    assert_eq!(steady.received().len(), steady_before + 1);
    let zc = env
        .wait("flaky", "EventsReady", "False", "SinkUnreachable")
        .await;
    let message = condition_message(&zc, "EventsReady");
    assert!(
        message.contains("answered HTTP 500") || message.contains("within"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = version(
        token_secret
            .get("flaky-zoom-token")
            .await
            .expect("token secret"),
    );
    assert_eq!(
        before, after,
        "the token Secret is written only when sink health changes"
    );

    // Recovered: 200 and the condition clears.
    flaky.answer(200, Duration::ZERO);
    let answer = post_signed(op, "tok-d", &event_body("meeting.started", "acc-d")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    env.wait("flaky", "EventsReady", "True", "Ready").await;
    let m = op.metrics_text().await;
    assert!(
        m.contains(r#"zoom_operator_webhook_requests_total{result="sink_failed"} "#)
            && m.contains(r#"zoom_operator_events_delivered_total{result="failed"} "#),
        "{m}"
    );
}

async fn api_delete(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), ns);
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete connection");
}

#[tokio::test]
async fn routes_by_app_and_account_and_stops_for_deleted_connections() {
    let sinks = [
        RecordingSink::start("127.0.0.1").await,
        RecordingSink::start("127.0.0.1").await,
        RecordingSink::start("127.0.0.1").await,
    ];
    // App 1 is installed in two accounts (same secret token, two credentials Secrets).
    let env = Env::new("ev-route")
        .app_in("app-1", s2s_app("cid-1", "tok-1", "acc-1"))
        .app_in("app-2", s2s_app("cid-2", "tok-2", "acc-2"))
        .app_in("app-1b", s2s_app("cid-3", "tok-1", "acc-3"))
        .connection(s2s("one", "app-1", Some(&sinks[0].url)))
        .connection(s2s("two", "app-2", Some(&sinks[1].url)))
        .connection(s2s("three", "app-1b", Some(&sinks[2].url)))
        .operator(&[
            "--public-url=http://zoom-operator.test",
            "--allow-sink-host=127.0.0.1",
        ])
        .start()
        .await;
    env.op.wait_ready().await;
    let (client, ns, op) = (&env.client, &env.ns, &env.op);

    let counts = || sinks.iter().map(|s| s.received().len()).collect::<Vec<_>>();
    post_until(op, "tok-1", &event_body("meeting.started", "acc-1"), 200).await;
    assert_eq!(counts(), [1, 0, 0]);
    post_until(op, "tok-2", &event_body("meeting.started", "acc-2"), 200).await;
    assert_eq!(counts(), [1, 1, 0]);
    post_until(op, "tok-1", &event_body("meeting.started", "acc-3"), 200).await;
    assert_eq!(counts(), [1, 1, 1]);
    assert_eq!(
        sinks[2].received()[0].header("ce-source"),
        Some(format!("zoom-operator.io/{ns}/three").as_str())
    );

    // Signed by app 1 for app 2's account: nobody's. 200 so Zoom does not retry.
    let answer = post_signed(op, "tok-1", &event_body("meeting.started", "acc-2")).await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("unroutable"), "{}", answer.body);
    // An account no connection has.
    let answer = post_signed(op, "tok-1", &event_body("meeting.started", "acc-unknown")).await;
    assert!(answer.body.contains("unroutable"), "{}", answer.body);
    assert_eq!(counts(), [1, 1, 1]);
    let m = op.metrics_text().await;
    assert!(
        m.contains(r#"zoom_operator_webhook_requests_total{result="unroutable"} "#),
        "{m}"
    );

    // A deleted connection stops receiving.
    api_delete(client, ns, "one").await;
    eventually(
        "the deleted connection is unrouted",
        Duration::from_secs(30),
        || async {
            let a = post_signed(op, "tok-1", &event_body("meeting.started", "acc-1")).await;
            if a.body.contains("unroutable") {
                Ok(())
            } else {
                Err(format!("{} {}", a.status, a.body))
            }
        },
    )
    .await;
    let delivered_to_one = sinks[0].received().len();
    let answer = post_signed(op, "tok-1", &event_body("meeting.started", "acc-1")).await;
    assert!(answer.body.contains("unroutable"), "{}", answer.body);
    assert_eq!(sinks[0].received().len(), delivered_to_one);
}

#[tokio::test]
async fn a_rotated_secret_token_takes_effect_without_a_restart() {
    let app = s2s_app("cid-r", "tok-old", "acc-r");
    let env = setup(
        "ev-rotate",
        app.clone(),
        &[s2s("bot", "zoom-app", None)],
        false,
        &[],
    )
    .await;
    let (client, ns, op) = (&env.client, &env.ns, &env.op);
    post_until(op, "tok-old", &event_body("meeting.started", "acc-r"), 200).await;

    app.clone()
        .secret_token("tok-new")
        .secret("zoom-app")
        .put(client, ns)
        .await;
    post_until(op, "tok-new", &event_body("meeting.started", "acc-r"), 200).await;
    let (ok, out) = sim_send(op, "tok-new", &["--validate"]).await;
    assert!(ok, "{out}");
    let answer = post_signed(op, "tok-old", &event_body("meeting.started", "acc-r")).await;
    assert_eq!(answer.status, 401, "{}", answer.body);

    // The token key removed: no app to verify against any more.
    ZoomApp::s2s("cid-r", "acc-r")
        .secret("zoom-app")
        .put(client, ns)
        .await;
    post_until(op, "tok-new", &event_body("meeting.started", "acc-r"), 401).await;
}

#[tokio::test]
async fn refused_sinks_are_never_called() {
    // A listener on another loopback address: reachable, but not in --allow-sink-host.
    let other = RecordingSink::start("127.0.0.2").await;
    let connections = [
        s2s("metadata", "zoom-app", Some("http://169.254.169.254/")),
        s2s("loopback", "zoom-app", Some(&other.url)),
    ];
    let app = s2s_app("cid-s", "tok-s", "acc-s");
    let env = setup("ev-ssrf", app, &connections, true, &[]).await;
    let op = &env.op;
    let zc = env
        .wait("metadata", "EventsReady", "False", "SinkNotAllowed")
        .await;
    assert!(condition_message(&zc, "EventsReady").contains("169.254.169.254"));
    env.wait("loopback", "EventsReady", "False", "SinkNotAllowed")
        .await;

    // Verified and routed, not forwarded, and not a reason for Zoom to retry.
    let answer = post_until(op, "tok-s", &event_body("meeting.started", "acc-s"), 200).await;
    assert!(answer.body.contains("\"forwarded\":0"), "{}", answer.body);
    assert!(answer.elapsed < Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(other.received().is_empty(), "a refused sink was called");
}

/// Whether a token Secret still holds a token.
fn has_tokens(s: &Secret) -> bool {
    let data = s.data.clone().unwrap_or_default();
    data.contains_key("access_token") || data.contains_key("refresh_token")
}

/// Connection `bot`'s token Secret.
async fn bot_token(env: &Env) -> Secret {
    Api::<Secret>::namespaced(env.client.clone(), &env.ns)
        .get("bot-zoom-token")
        .await
        .expect("token secret")
}

/// Authorizes `bot` through the browser flow, the operator's public URL
/// (`http://zoom-operator.test`) mapped to its listener; waits for its account.
async fn authorize_through_public_url(env: &Env) {
    let zc = env
        .wait("bot", "Authorized", "False", "AwaitingAuthorization")
        .await;
    let authorize = zc
        .status
        .as_ref()
        .and_then(|s| s.authorize_url.clone())
        .expect("authorizeURL");
    let local = |public: &str| public.replacen("http://zoom-operator.test", &env.op.public_url, 1);
    let hops = web::through_zoom(&local(&authorize)).await;
    let (status, page) = web::open(&local(&hops.callback)).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{page}");
    env.wait("bot", "Authorized", "True", "Authorized").await;
    wait_zc(
        &env.client,
        &env.ns,
        "bot",
        "status.account",
        Duration::from_secs(30),
        |zc| match zc
            .status
            .as_ref()
            .and_then(|s| s.account.as_ref())
            .and_then(|a| a.account_id.clone())
        {
            Some(a) if a == "acc-o" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
}

/// The user removes the app: zoom-sim revokes the grant and sends app_deauthorized, until
/// the operator answers 200 and `accepted`.
async fn deauthorize_at_zoom(sim: &ZoomSim, client_id: &str) {
    let webhook: Value = eventually(
        "app_deauthorized accepted",
        Duration::from_secs(30),
        || async {
            let r = http()
                .post(format!("{}/sim/deauthorize", sim.url))
                .json(&json!({ "client_id": client_id }))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let v: Value = r.json().await.map_err(|e| e.to_string())?;
            let accepted = v["webhook"]["body"]
                .as_str()
                .is_some_and(|b| b.contains("accepted"));
            if v["webhook"]["status"] == 200 && accepted {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        },
    )
    .await;
    assert!(
        webhook["webhook"]["body"]
            .as_str()
            .unwrap_or_default()
            .contains("accepted"),
        "{webhook}"
    );
}

#[tokio::test]
async fn app_deauthorized_deletes_the_tokens() {
    let sink = RecordingSink::start("127.0.0.1").await;
    let app = ZoomApp::oauth("cid-o", "oauth-secret")
        .secret_token("tok-o")
        .account("acc-o")
        .user("user-o", "o@example.com");
    // The app is registered at zoom-sim once the operator's event URL is known.
    let env = Env::new("ev-deauth")
        .sim(&["--consent=approve"])
        .credentials("zoom-app", app.clone())
        .connection(Zc::private_oauth("bot").sink_uri(&sink.url))
        .operator(&[
            "--public-url=http://zoom-operator.test",
            "--allow-sink-host=127.0.0.1",
        ])
        .start()
        .await;
    let (client, ns, op, sim) = (&env.client, &env.ns, &env.op, &env.sim);
    op.wait_ready().await;
    // Zoom delivers app_deauthorized to the app's event URL: this operator.
    let mut registration = app.sim_json();
    registration["event_url"] = json!(format!("{}/zoom/event", op.public_url));
    sim.admin("/sim/apps", registration).await;

    authorize_through_public_url(&env).await;
    assert!(has_tokens(&bot_token(&env).await));

    deauthorize_at_zoom(sim, "cid-o").await;
    assert!(
        !has_tokens(&bot_token(&env).await),
        "tokens must be gone once Zoom got 200"
    );
    let zc = env.wait("bot", "Authorized", "False", "Deauthorized").await;
    let status = zc.status.clone().unwrap_or_default();
    assert!(status.authorize_url.is_some(), "ready to authorize again");
    wait_event(client, ns, "a Deauthorized event", |e| {
        e.reason.as_deref() == Some("Deauthorized")
            && e.type_.as_deref() == Some("Warning")
            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("bot")
    })
    .await;
    // Forwarded like any other event.
    let got = sink.received();
    assert!(
        got.iter()
            .any(|r| r.header("ce-type") == Some("us.zoom.app_deauthorized")),
        "{:?}",
        got.iter()
            .map(|r| r.header("ce-type").map(str::to_owned))
            .collect::<Vec<_>>()
    );
    // Still deauthorized a little later (no refresh with a deleted grant).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!has_tokens(&bot_token(&env).await));
    for leaked in ["tok-o", "oauth-secret"] {
        assert!(
            !op.process.logs().contains(leaked),
            "{leaked} leaked into the log"
        );
    }
}
