//! End-to-end tests against an in-process server on 127.0.0.1:0, driven over HTTP.

mod common;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use common::{
    app, get_json, get_status, http, independent_hmac, json_of, location_param, ok, post_json,
    str_of, Receiver, Validation,
};
use zoom_sim::server::{start, RunningServer, ServeOptions};
use zoom_sim::state::{App, ConsentMode, Settings};

const REDIRECT: &str = "https://client.example/oauth/redirect/zoom";
const VERIFIER: &str = "M25iVXpKU3puUjFaYWg3T1NDTDQtcW1ROUY5YXlwalNoc0hhakxifmZHag";

fn web_app() -> App {
    app("kind=oauth,client_id=webid,client_secret=websecret,secret_token=webtoken,account_id=ACC1,user_id=USER1,email=owner@example.com")
}

fn s2s_app() -> App {
    app("kind=s2s,client_id=s2sid,client_secret=s2ssecret,secret_token=s2stoken,account_id=ACC2,user_id=OWNER2,email=admin@example.com")
}

async fn server(consent: ConsentMode, token_lifetime_secs: u64, apps: Vec<App>) -> RunningServer {
    start(ServeOptions {
        settings: Settings {
            consent,
            token_lifetime_secs,
            ..Settings::default()
        },
        apps,
        ..ServeOptions::default()
    })
    .await
    .expect("server starts")
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Runs /oauth/authorize in approve mode and returns the code.
async fn authorize(base: &str, challenge: Option<&str>) -> String {
    let mut extra = vec![("state", "st-123")];
    if let Some(c) = challenge {
        extra.push(("code_challenge", c));
        extra.push(("code_challenge_method", "S256"));
    }
    let resp = common::authorize(base, "webid", REDIRECT, &extra).await;
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().expect("ascii location");
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(location_param(&resp, "state").as_deref(), Some("st-123"));
    location_param(&resp, "code").expect("code in redirect")
}

async fn token(base: &str, id: &str, secret: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = http()
        .post(format!("{base}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .expect("token request");
    json_of(resp).await
}

async fn exchange(base: &str, code: &str, redirect: &str, verifier: &str) -> (u16, Value) {
    token(
        base,
        "webid",
        "websecret",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// Authorizes webid (approve mode, PKCE) and returns (access token, refresh token).
async fn grant(base: &str) -> (String, String) {
    let code = authorize(base, Some(&s256(VERIFIER))).await;
    let (status, body) = exchange(base, &code, REDIRECT, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    let get = |k: &str| body[k].as_str().expect("token").to_owned();
    (get("access_token"), get("refresh_token"))
}

async fn refresh(base: &str, refresh_token: &str) -> (u16, Value) {
    token(
        base,
        "webid",
        "websecret",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// Zoom's answer to a dead refresh token (the default dialect).
fn invalid_grant() -> (u16, Value) {
    (
        400,
        json!({"reason": "Invalid Token!", "error": "invalid_grant"}),
    )
}

async fn users_me(base: &str, access_token: &str) -> (u16, Value) {
    get_json(base, "/v2/users/me", Some(access_token)).await
}

async fn stats(base: &str, client_id: Option<&str>) -> Value {
    let path = match client_id {
        Some(id) => format!("/sim/stats?client_id={id}"),
        None => "/sim/stats".to_owned(),
    };
    ok(get_json(base, &path, None).await)
}

#[tokio::test]
async fn authorization_code_flow_with_rotation_reuse_and_revoke() {
    let srv = server(ConsentMode::Approve, 3599, vec![web_app()]).await;
    let base = srv.base_url();

    let code = authorize(&base, Some(&s256(VERIFIER))).await;
    let resp = http()
        .post(format!("{base}/oauth/token"))
        .basic_auth("webid", Some("websecret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("exchange");
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let (status, first) = json_of(resp).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["token_type"], "bearer");
    assert_eq!(first["expires_in"], 3599);
    assert_eq!(first["scope"], "meeting:read:meeting user:read:user");
    assert_eq!(first["api_url"], base.as_str());
    let access1 = str_of(&first, "access_token");
    let refresh1 = str_of(&first, "refresh_token");
    assert!(
        access1.len() > 100 && access1.split('.').count() == 3,
        "JWT-shaped: {access1}"
    );

    let (status, me) = users_me(&base, &access1).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], "USER1");
    assert_eq!(me["email"], "owner@example.com");
    assert_eq!(me["account_id"], "ACC1");
    assert_eq!(me["type"], 1);
    assert_eq!(me["status"], "active");
    assert!(
        me["display_name"].is_string()
            && me["account_number"].is_number()
            && me["timezone"].is_string()
    );

    // Refresh rotates both tokens.
    let (status, second) = refresh(&base, &refresh1).await;
    assert_eq!(status, 200, "{second}");
    let access2 = str_of(&second, "access_token");
    let refresh2 = str_of(&second, "refresh_token");
    assert_ne!(access1, access2);
    assert_ne!(refresh1, refresh2);
    assert_eq!(
        users_me(&base, &access1).await,
        (
            401,
            json!({"code": 124, "message": "Invalid access token."})
        )
    );
    assert_eq!(users_me(&base, &access2).await.0, 200);

    // Reusing the rotated-out refresh token is refused and counted.
    let reuse = refresh(&base, &refresh1).await;
    assert_eq!(reuse, invalid_grant());
    let s = stats(&base, Some("webid")).await;
    assert_eq!(s["reused_refresh_tokens"], 1);
    assert_eq!(s["refreshes"], 1);
    assert_eq!(s["authorization_code_grants"], 1);
    assert_eq!(s["active_grants"], 1);

    // Revoking the refresh token kills the whole grant, access token included.
    let resp = http()
        .post(format!("{base}/oauth/revoke"))
        .basic_auth("webid", Some("websecret"))
        .form(&[("token", &refresh2)])
        .send()
        .await
        .expect("revoke");
    assert_eq!(json_of(resp).await, (200, json!({"status": "success"})));
    assert_eq!(users_me(&base, &access2).await.0, 401);
    let after = refresh(&base, &refresh2).await;
    assert_eq!(after, invalid_grant());

    let s = stats(&base, None).await;
    assert_eq!(s["revokes"], 1);
    assert_eq!(s["active_grants"], 0);
    assert_eq!(s["token_requests"], 4);
    assert_eq!(s["failed_token_requests"], 2);
    assert_eq!(s["users_me"], 4);
    srv.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn code_is_single_use_and_bound_to_redirect_and_verifier() {
    let srv = server(ConsentMode::Approve, 3599, vec![web_app()]).await;
    let base = srv.base_url();
    let code = authorize(&base, Some(&s256(VERIFIER))).await;
    let wrong_verifier = "x".repeat(43);
    let (status, body) = exchange(&base, &code, REDIRECT, &wrong_verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let reason = body["reason"].as_str().expect("reason");
    assert!(reason.starts_with("Invalid authorization code"), "{reason}");
    assert!(
        !reason.contains(&code),
        "the code must not be echoed: {reason}"
    );
    // The failed attempt consumed the code.
    assert_eq!(
        exchange(&base, &code, REDIRECT, VERIFIER).await.1["error"],
        "invalid_grant"
    );

    let code = authorize(&base, Some(&s256(VERIFIER))).await;
    let (status, body) = exchange(&base, &code, "https://client.example/other", VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let code = authorize(&base, Some(&s256(VERIFIER))).await;
    assert_eq!(exchange(&base, &code, REDIRECT, VERIFIER).await.0, 200);
    assert_eq!(
        exchange(&base, &code, REDIRECT, VERIFIER).await.0,
        400,
        "second use"
    );

    // Missing parameter: invalid_request.
    let (status, body) = token(
        &base,
        "webid",
        "websecret",
        &[("grant_type", "authorization_code")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn consent_deny_and_runtime_switch() {
    let srv = server(ConsentMode::Deny, 3599, vec![web_app()]).await;
    let base = srv.base_url();
    let state = [("state", "s1")];
    let resp = common::authorize(&base, "webid", REDIRECT, &state).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        location_param(&resp, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(location_param(&resp, "state").as_deref(), Some("s1"));
    assert_eq!(location_param(&resp, "code"), None);

    let (status, settings) = post_json(&base, "/sim/config", json!({"consent": "approve"})).await;
    assert_eq!((status, &settings["consent"]), (200, &json!("approve")));
    let resp = common::authorize(&base, "webid", REDIRECT, &state).await;
    assert!(location_param(&resp, "code").is_some());

    let (status, body) = post_json(&base, "/sim/config", json!({"consent": "maybe"})).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(300)), "{body}");
}

#[tokio::test]
async fn consent_page_posts_a_request_id_not_a_code() {
    let srv = server(ConsentMode::Page, 3599, vec![web_app()]).await;
    let base = srv.base_url();
    let state = [("state", "s2")];
    let page_for = || async {
        let resp = common::authorize(&base, "webid", REDIRECT, &state).await;
        assert_eq!(resp.status(), 200);
        let html = resp.text().await.expect("html");
        assert!(html.contains("Approve") && html.contains("Deny"), "{html}");
        assert!(html.contains(r#"action="/oauth/authorize/decision""#));
        assert!(!html.contains("code="), "the page must not carry a code");
        let marker = r#"name="request_id" value=""#;
        let start = html.find(marker).expect("request_id field") + marker.len();
        let len = html[start..].find('"').expect("closing quote");
        html[start..start + len].to_owned()
    };
    let decide = |id: String, decision: &'static str| {
        let base = base.clone();
        async move {
            http()
                .post(format!("{base}/oauth/authorize/decision"))
                .form(&[("request_id", id.as_str()), ("decision", decision)])
                .send()
                .await
                .expect("decision")
        }
    };

    let id = page_for().await;
    let resp = decide(id.clone(), "approve").await;
    assert_eq!(resp.status(), 302);
    assert_eq!(location_param(&resp, "state").as_deref(), Some("s2"));
    let code = location_param(&resp, "code").expect("code after approval");
    let (status, _) = token(
        &base,
        "webid",
        "websecret",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(status, 200);
    // The pending request was single use.
    assert_eq!(decide(id, "approve").await.status(), 400);

    let resp = decide(page_for().await, "deny").await;
    assert_eq!(
        location_param(&resp, "error").as_deref(),
        Some("access_denied")
    );
}

#[tokio::test]
async fn client_errors_have_zoom_shapes() {
    let srv = server(ConsentMode::Approve, 3599, vec![web_app(), s2s_app()]).await;
    let base = srv.base_url();
    let invalid_client =
        json!({"reason": "Invalid client_id or client_secret", "error": "invalid_client"});
    assert_eq!(
        token(&base, "webid", "nope", &[("grant_type", "refresh_token")]).await,
        (401, invalid_client.clone())
    );
    let no_auth = http()
        .post(format!("{base}/oauth/token"))
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await;
    assert_eq!(
        json_of(no_auth.expect("request")).await,
        (401, invalid_client)
    );
    let garbage = http()
        .post(format!("{base}/oauth/token"))
        .header("authorization", "Basic !!!not-base64")
        .send()
        .await
        .expect("request");
    assert_eq!(garbage.status(), 401);

    assert_eq!(
        token(&base, "webid", "websecret", &[("grant_type", "password")]).await,
        (
            400,
            json!({"reason": "unsupported grant type", "error": "unsupported_grant_type"})
        )
    );
    assert_eq!(
        token(&base, "webid", "websecret", &[]).await.1["error"],
        "invalid_request"
    );

    // Zoom accepts the parameters in the query string too.
    let resp = http()
        .post(format!(
            "{base}/oauth/token?grant_type=account_credentials&account_id=ACC2"
        ))
        .basic_auth("s2sid", Some("s2ssecret"))
        .send()
        .await
        .expect("query params");
    assert_eq!(resp.status(), 200);

    // Unknown client at authorize: an HTML error page, no redirect.
    let resp = common::authorize(&base, "who", REDIRECT, &[]).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/html"));
    // A relative redirect_uri is refused the same way.
    let resp = common::authorize(&base, "webid", "/cb", &[]).await;
    assert_eq!(resp.status(), 400);

    // Tokens in the query string are refused with Zoom's message.
    let (status, body) = get_json(&base, "/v2/users/me?access_token=x", None).await;
    assert_eq!((status, body["code"].as_u64()), (401, Some(124)));
    assert!(body["message"]
        .as_str()
        .expect("message")
        .contains("query parameter"));
    assert_eq!(
        users_me(&base, "garbage").await,
        (
            401,
            json!({"code": 124, "message": "Invalid access token."})
        )
    );
}

#[tokio::test]
async fn faults_with_retry_after_and_delay() {
    let srv = server(ConsentMode::Approve, 3599, vec![s2s_app()]).await;
    let base = srv.base_url();
    let s2s = [
        ("grant_type", "account_credentials"),
        ("account_id", "ACC2"),
    ];

    let (status, body) = post_json(
        &base,
        "/sim/faults",
        json!({"path": "/oauth/token", "status": 503, "count": 2, "retry_after": "2"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) =
        post_json(&base, "/sim/faults", json!({"path": "/oauth/token", "status": 429, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"}))
            .await;
    assert_eq!(status, 201);

    for _ in 0..2 {
        let resp = http()
            .post(format!("{base}/oauth/token"))
            .basic_auth("s2sid", Some("s2ssecret"))
            .form(&s2s)
            .send()
            .await;
        let resp = resp.expect("faulted request");
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("2")
        );
        assert_eq!(
            json_of(resp).await,
            (
                503,
                json!({"reason": "Service Unavailable", "error": "temporarily_unavailable"})
            )
        );
    }
    let resp = http()
        .post(format!("{base}/oauth/token"))
        .basic_auth("s2sid", Some("s2ssecret"))
        .form(&s2s)
        .send()
        .await;
    let resp = resp.expect("faulted request");
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("Wed, 21 Oct 2015 07:28:00 GMT")
    );
    // Faults ran out: served normally again.
    let (status, issued) = token(&base, "s2sid", "s2ssecret", &s2s).await;
    assert_eq!(status, 200, "{issued}");
    let access = str_of(&issued, "access_token");

    // A REST API fault uses the {code, message} shape.
    post_json(
        &base,
        "/sim/faults",
        json!({"path": "/v2/users/me", "status": 429}),
    )
    .await;
    let (status, body) = users_me(&base, &access).await;
    assert_eq!((status, body["code"].as_u64()), (429, Some(429)), "{body}");

    // Delay-only: slow, then served normally.
    post_json(
        &base,
        "/sim/faults",
        json!({"path": "/v2/users/me", "status": 0, "delay_ms": 400}),
    )
    .await;
    let started = Instant::now();
    assert_eq!(users_me(&base, &access).await.0, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    let (status, listed) = get_json(&base, "/sim/faults", None).await;
    assert_eq!(
        (status, listed["injected"].as_u64()),
        (200, Some(5)),
        "{listed}"
    );
    // Faults are not counted as token requests: they never reached the OAuth server.
    assert_eq!(stats(&base, None).await["token_requests"], 1);

    post_json(
        &base,
        "/sim/faults",
        json!({"path": "*", "status": 500, "count": 5}),
    )
    .await;
    let (status, cleared) = json_of(
        http()
            .delete(format!("{base}/sim/faults"))
            .send()
            .await
            .expect("clear"),
    )
    .await;
    assert_eq!((status, cleared["cleared"].as_u64()), (200, Some(1)));
    assert_eq!(users_me(&base, &access).await.0, 200);

    let (status, body) = post_json(
        &base,
        "/sim/faults",
        json!({"path": "/sim/stats", "status": 500}),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(300)));
}

#[tokio::test]
async fn token_lifetime_is_configurable() {
    let srv = server(ConsentMode::Approve, 30, vec![s2s_app()]).await;
    let base = srv.base_url();
    let s2s = [
        ("grant_type", "account_credentials"),
        ("account_id", "ACC2"),
    ];
    let (status, issued) = token(&base, "s2sid", "s2ssecret", &s2s).await;
    assert_eq!((status, issued["expires_in"].as_u64()), (200, Some(30)));
    assert!(
        issued.get("refresh_token").is_none(),
        "account_credentials has no refresh token: {issued}"
    );

    let (status, _) = post_json(&base, "/sim/config", json!({"token_lifetime_secs": 45})).await;
    assert_eq!(status, 200);
    assert_eq!(
        token(&base, "s2sid", "s2ssecret", &s2s).await.1["expires_in"],
        45
    );
    assert_eq!(
        post_json(&base, "/sim/config", json!({"token_lifetime_secs": 0}))
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn expired_tokens_get_code_124() {
    let srv = server(ConsentMode::Approve, 1, vec![s2s_app()]).await;
    let base = srv.base_url();
    let s2s = [
        ("grant_type", "account_credentials"),
        ("account_id", "ACC2"),
    ];

    // Real time: a 1-second token, checked after it lapses.
    let access = str_of(
        &token(&base, "s2sid", "s2ssecret", &s2s).await.1,
        "access_token",
    );
    assert_eq!(users_me(&base, &access).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        users_me(&base, &access).await,
        (
            401,
            json!({"code": 124, "message": "Access token is expired."})
        )
    );

    // Simulated time: an hour-long token, then the clock jumps an hour.
    post_json(&base, "/sim/config", json!({"token_lifetime_secs": 3600})).await;
    let access = str_of(
        &token(&base, "s2sid", "s2ssecret", &s2s).await.1,
        "access_token",
    );
    let (status, me) = users_me(&base, &access).await;
    assert_eq!(
        (status, &me["id"]),
        (200, &json!("OWNER2")),
        "S2S tokens act as the account owner"
    );
    let (status, clock) = post_json(&base, "/sim/clock", json!({"advance_secs": 3600})).await;
    assert_eq!((status, clock["offset_secs"].as_i64()), (200, Some(3600)));
    assert_eq!(
        users_me(&base, &access).await.1["message"],
        "Access token is expired."
    );
}

#[tokio::test]
async fn account_credentials_checks_account_and_app_kind() {
    let srv = server(ConsentMode::Approve, 3599, vec![web_app(), s2s_app()]).await;
    let base = srv.base_url();
    let wrong = token(
        &base,
        "s2sid",
        "s2ssecret",
        &[
            ("grant_type", "account_credentials"),
            ("account_id", "ACC1"),
        ],
    )
    .await;
    assert_eq!(
        wrong,
        (
            400,
            json!({"reason": "Invalid account_id", "error": "invalid_request"})
        )
    );
    let oauth = token(
        &base,
        "webid",
        "websecret",
        &[
            ("grant_type", "account_credentials"),
            ("account_id", "ACC1"),
        ],
    )
    .await;
    assert_eq!(oauth.1["error"], "unsupported_grant_type");
    let (status, issued) = token(
        &base,
        "s2sid",
        "s2ssecret",
        &[
            ("grant_type", "account_credentials"),
            ("account_id", "ACC2"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        issued["scope"],
        "meeting:read:meeting:admin user:read:user:admin"
    );
    let s = stats(&base, Some("s2sid")).await;
    assert_eq!(
        (
            s["account_credentials_grants"].as_u64(),
            s["failed_token_requests"].as_u64()
        ),
        (Some(1), Some(1))
    );
}

#[tokio::test]
async fn deauthorize_revokes_and_sends_a_signed_app_deauthorized_event() {
    let receiver = Receiver::start("webtoken", Validation::Correct).await;
    let mut app = web_app();
    app.event_url = Some(receiver.url());
    let srv = server(ConsentMode::Approve, 3599, vec![app]).await;
    let base = srv.base_url();

    let code = authorize(&base, None).await;
    let issued = token(
        &base,
        "webid",
        "websecret",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await
    .1;
    let access = str_of(&issued, "access_token");

    let (status, answer) =
        post_json(&base, "/sim/deauthorize", json!({"client_id": "webid"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["revoked_grants"], 1);
    assert_eq!(answer["webhook"]["status"], 200);
    assert_eq!(users_me(&base, &access).await.0, 401);

    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let event = &got[0];
    assert!(
        event.signature_valid,
        "signature must verify with an independent HMAC"
    );
    assert!(!event.stale);
    assert_eq!(
        event.header("user-agent").as_deref(),
        Some("Zoom Marketplace/1.0a")
    );
    assert_eq!(event.header("clientid").as_deref(), Some("webid"));
    assert!(event
        .header("content-type")
        .expect("content-type")
        .starts_with("application/json"));
    // Zoom documents x-zm-trackingid; x-zm-request-id is off unless switched on.
    assert!(event.header("x-zm-trackingid").is_some());
    assert_eq!(event.header("x-zm-request-id"), None);
    assert_eq!(event.header("authorization"), None);
    let body = event.json();
    assert_eq!(body["event"], "app_deauthorized");
    assert!(
        body["event_ts"].as_i64().expect("event_ts") > 1_600_000_000_000,
        "milliseconds"
    );
    let payload = &body["payload"];
    assert_eq!(
        (
            &payload["account_id"],
            &payload["user_id"],
            &payload["client_id"]
        ),
        (&json!("ACC1"), &json!("USER1"), &json!("webid"))
    );
    assert!(payload["signature"].as_str().is_some_and(|s| s.len() == 64));
    assert!(payload["deauthorization_time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(stats(&base, Some("webid")).await["deauthorizations"], 1);
}

#[tokio::test]
async fn admin_webhook_send_and_validate() {
    let good = Receiver::start("webtoken", Validation::Correct).await;
    let bad = Receiver::start("webtoken", Validation::WrongSecret).await;
    let srv = server(ConsentMode::Approve, 3599, vec![web_app()]).await;
    let base = srv.base_url();
    let b = base.as_str();
    let send = move |body: Value| post_json(b, "/sim/webhooks/send", body);
    let validate = move |body: Value| post_json(b, "/sim/webhooks/validate", body);

    let (status, answer) = send(json!({
        "url": good.url(),
        "client_id": "webid",
        "event": "meeting.started",
        "payload": {"object": {"id": "85746065432"}}
    }))
    .await;
    assert_eq!(
        (status, answer["status"].as_u64()),
        (200, Some(200)),
        "{answer}"
    );
    let got = good.received();
    assert!(got[0].signature_valid);
    let body = got[0].json();
    assert_eq!(
        body["payload"],
        json!({"account_id": "ACC1", "object": {"id": "85746065432"}})
    );

    let (_, answer) =
        send(json!({"url": good.url(), "client_id": "webid", "event": "x", "bad_signature": true}))
            .await;
    assert_eq!(
        answer["status"], 401,
        "the receiver rejects a bad signature"
    );

    let (_, verdict) = validate(json!({"url": good.url(), "client_id": "webid"})).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    let (_, verdict) = validate(json!({"url": bad.url(), "client_id": "webid"})).await;
    assert_eq!(verdict["valid"], false, "{verdict}");

    // No URL and no event_url on the app.
    let (status, body) = send(json!({"client_id": "webid", "event": "x"})).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(300)));
    // Nothing listening: 502.
    let (status, _) =
        send(json!({"url": "http://127.0.0.1:1/", "client_id": "webid", "event": "x"})).await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn admin_apps_and_bad_input() {
    let srv = server(ConsentMode::Approve, 3599, vec![web_app()]).await;
    let base = srv.base_url();

    let (status, created) = post_json(
        &base,
        "/sim/apps",
        json!({"kind": "s2s", "client_id": "rt", "client_secret": "rts", "account_id": "A9"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert!(
        created["secret_token"].is_string(),
        "a generated secret token is returned once"
    );
    let (status, _) = post_json(
        &base,
        "/sim/apps",
        json!({"client_id": "rt", "client_secret": "x"}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(
        post_json(&base, "/sim/apps", json!({"client_id": "y"}))
            .await
            .0,
        400
    );
    assert_eq!(
        post_json(
            &base,
            "/sim/apps",
            json!({"client_id": "y", "client_secret": "s", "colour": "red"})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        token(
            &base,
            "rt",
            "rts",
            &[("grant_type", "account_credentials"), ("account_id", "A9")]
        )
        .await
        .0,
        200
    );

    let (status, listed) = get_json(&base, "/sim/apps", None).await;
    assert_eq!(status, 200);
    let text = listed.to_string();
    assert!(
        !text.contains("websecret") && !text.contains("webtoken") && !text.contains("rts\""),
        "{text}"
    );
    assert_eq!(listed["apps"].as_array().map(Vec::len), Some(2));

    let resp = http()
        .post(format!("{base}/sim/config"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("bad json");
    assert_eq!(json_of(resp).await.1["code"], 300);
    let resp = http()
        .get(format!("{base}/sim/stats?client_id=nobody"))
        .send()
        .await
        .expect("stats");
    assert_eq!(resp.status(), 404);
    let (status, body) = get_json(&base, "/v2/meetings", None).await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(404)));
    let resp = http()
        .get(format!("{base}/oauth/token"))
        .send()
        .await
        .expect("wrong method");
    assert_eq!(resp.status(), 405);
    assert_eq!(get_status(&base, "/healthz").await, 200);
}

/// The receiver's HMAC helper itself must agree with a published vector, or the
/// signature checks above would prove nothing.
#[test]
fn independent_hmac_matches_known_vector() {
    assert_eq!(
        independent_hmac("key", b"The quick brown fox jumps over the lazy dog"),
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );
}

// ----- dialects: Zoom's answers as Zoom has given them ------------------------------------

#[tokio::test]
async fn dead_refresh_tokens_are_answered_in_the_chosen_dialect() {
    let srv = server(ConsentMode::Approve, 3599, vec![web_app()]).await;
    let base = srv.base_url();
    let (_, settings) = post_json(&base, "/sim/config", json!({})).await;
    assert_eq!(
        settings["refresh_rejection"], "invalid_grant_400",
        "the default"
    );
    let dialects = [
        (
            "invalid_grant_400",
            400,
            json!({"reason": "Invalid Token!", "error": "invalid_grant"}),
        ),
        (
            "invalid_grant_401",
            401,
            json!({"reason": "Invalid Token!", "error": "invalid_grant"}),
        ),
        (
            "invalid_request_400",
            400,
            json!({"reason": "Invalid Token!", "error": "invalid_request"}),
        ),
        ("no_reason_400", 400, json!({"error": "invalid_grant"})),
        ("no_reason_401", 401, json!({"error": "invalid_request"})),
    ];
    for (dialect, want_status, want_body) in dialects {
        let (status, settings) =
            post_json(&base, "/sim/config", json!({"refresh_rejection": dialect})).await;
        assert_eq!(
            (status, &settings["refresh_rejection"]),
            (200, &json!(dialect))
        );
        let (_, first) = grant(&base).await;
        let (status, rotated) = refresh(&base, &first).await;
        assert_eq!(status, 200, "{rotated}");
        // Reused (rotated out), unknown, and expired on purpose: all answered alike.
        assert_eq!(
            refresh(&base, &first).await,
            (want_status, want_body.clone()),
            "{dialect}: reused"
        );
        assert_eq!(
            refresh(&base, "never-issued").await,
            (want_status, want_body.clone()),
            "{dialect}: unknown"
        );
        let (status, expired) = post_json(
            &base,
            "/sim/tokens/expire-refresh",
            json!({"client_id": "webid"}),
        )
        .await;
        assert_eq!(status, 200, "{expired}");
        assert!(
            expired["expired"].as_u64().is_some_and(|n| n >= 1),
            "{expired}"
        );
        let current = rotated["refresh_token"].as_str().expect("rt");
        assert_eq!(
            refresh(&base, current).await,
            (want_status, want_body),
            "{dialect}: expired"
        );
        // The access token still works: only the refresh token was expired.
        let access = rotated["access_token"].as_str().expect("at");
        assert_eq!(users_me(&base, access).await.0, 200);
    }
    let (status, body) =
        post_json(&base, "/sim/config", json!({"refresh_rejection": "teapot"})).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(300)), "{body}");
    let (status, _) = post_json(
        &base,
        "/sim/tokens/expire-refresh",
        json!({"client_id": "nope"}),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_bad_code_can_be_echoed_whole_as_zoom_does() {
    let srv = server(ConsentMode::Approve, 3599, vec![web_app()]).await;
    let base = srv.base_url();
    let code = authorize(&base, Some(&s256(VERIFIER))).await;
    assert_eq!(exchange(&base, &code, REDIRECT, VERIFIER).await.0, 200);
    let (status, body) = exchange(&base, &code, REDIRECT, VERIFIER).await;
    let short: String = code.chars().take(4).collect();
    assert_eq!(
        (status, body),
        (
            400,
            json!({"reason": format!("Invalid authorization code {short}…"), "error": "invalid_grant"})
        ),
        "the default keeps the code out of logs"
    );

    let (_, settings) = post_json(&base, "/sim/config", json!({"code_rejection": "echoed"})).await;
    assert_eq!(settings["code_rejection"], "echoed");
    let code = authorize(&base, Some(&s256(VERIFIER))).await;
    assert_eq!(exchange(&base, &code, REDIRECT, VERIFIER).await.0, 200);
    let (status, body) = exchange(&base, &code, REDIRECT, VERIFIER).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"reason": format!("Invalid authorization code {code}"), "error": "invalid_request"})
        ),
        "Zoom's own form (devforum.zoom.us/t/12302)"
    );
}

#[tokio::test]
async fn redirect_urls_are_enforced_when_registered() {
    let registered = app(&format!(
        "kind=oauth,client_id=webid,client_secret=websecret,secret_token=t,redirect_urls={REDIRECT}+https://client.example/other"
    ));
    let srv = server(ConsentMode::Approve, 3599, vec![registered]).await;
    let base = srv.base_url();
    // A registered URL works as before.
    let code = authorize(&base, Some(&s256(VERIFIER))).await;
    // The exchange names an unregistered URL: 4709, and the code is not burned by it.
    let (status, body) = exchange(&base, &code, "https://evil.example/cb", VERIFIER).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"reason": "Redirect URI mismatch.", "error": "invalid_request", "code": 4709})
        )
    );
    assert_eq!(exchange(&base, &code, REDIRECT, VERIFIER).await.0, 200);
    // The authorize step refuses with a page, never redirecting to an unregistered URL.
    let resp =
        common::authorize(&base, "webid", "https://evil.example/cb", &[("state", "s")]).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
    let page = resp.text().await.expect("page");
    assert!(page.contains("4709"), "{page}");

    // The apps API takes the same field and lists it.
    assert_eq!(
        create_api_app(
            &base,
            "redirect_urls",
            "https://a.example/cb https://b.example/cb"
        )
        .await,
        json!(["https://a.example/cb", "https://b.example/cb"])
    );
}

/// Creates app `api-app` through `POST /sim/apps` with `field: value`; the field as listed.
async fn create_api_app(base: &str, field: &str, value: &str) -> Value {
    let (status, created) = post_json(
        base,
        "/sim/apps",
        json!({"client_id": "api-app", "client_secret": "s", field: value}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created[field].clone()
}

#[tokio::test]
async fn users_me_needs_a_user_read_scope() {
    let narrow = app("kind=oauth,client_id=webid,client_secret=websecret,secret_token=t,scopes=meeting:read:meeting");
    let srv = server(ConsentMode::Approve, 3599, vec![narrow]).await;
    let base = srv.base_url();
    let (access, _) = grant(&base).await;
    assert_eq!(
        users_me(&base, &access).await,
        (
            400,
            json!({"code": 4711, "message": "Invalid access token, does not contain scopes:[user:read:user, user:read:user:admin]."})
        )
    );
    // Classic and admin scopes do as well as the granular user one.
    for scopes in ["user:read", "user:read:user:admin"] {
        let srv = server(
            ConsentMode::Approve,
            3599,
            vec![app(&format!(
                "kind=oauth,client_id=webid,client_secret=websecret,secret_token=t,scopes={scopes}"
            ))],
        )
        .await;
        let base = srv.base_url();
        let (access, _) = grant(&base).await;
        assert_eq!(users_me(&base, &access).await.0, 200, "{scopes}");
    }
}

#[tokio::test]
async fn a_disabled_app_answers_4717_everywhere_until_enabled() {
    let srv = server(ConsentMode::Approve, 3599, vec![web_app()]).await;
    let base = srv.base_url();
    let (access, refresh_token) = grant(&base).await;
    let (status, body) = post_json(&base, "/sim/apps/webid/disable", json!({})).await;
    assert_eq!((status, &body["disabled"]), (200, &json!(true)), "{body}");

    let disabled =
        json!({"reason": "The app has been disabled", "error": "invalid_client", "code": 4717});
    assert_eq!(
        refresh(&base, &refresh_token).await,
        (401, disabled.clone())
    );
    assert_eq!(
        users_me(&base, &access).await,
        (
            401,
            json!({"code": 4717, "message": "The app has been disabled"})
        )
    );
    let resp = common::authorize(&base, "webid", REDIRECT, &[]).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.expect("page").contains("4717"));
    // A wrong secret is still a wrong secret.
    let (status, body) = token(
        &base,
        "webid",
        "wrong",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert_eq!(body.get("code"), None, "{body}");
    let (_, apps) = get_json(&base, "/sim/apps", None).await;
    assert_eq!(apps["apps"][0]["disabled"], true);

    let (status, _) = post_json(&base, "/sim/apps/webid/enable", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        refresh(&base, &refresh_token).await.0,
        200,
        "the grant survived"
    );
    let (status, _) = post_json(&base, "/sim/apps/nope/disable", json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_undecodable_client_id_path_gets_a_json_error() {
    let srv = server(ConsentMode::Approve, 3599, vec![web_app()]).await;
    let base = srv.base_url();
    let (status, body) = json_of(
        http()
            .post(format!("{base}/sim/apps/%FF%FE/disable"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(300)), "{body}");
}

/// `/oauth/authorize` for webid with this redirect URI (approve mode): the status and the code.
async fn authorize_to(base: &str, redirect: &str) -> (u16, Option<String>) {
    let resp = common::authorize(base, "webid", redirect, &[]).await;
    (resp.status().as_u16(), location_param(&resp, "code"))
}

#[tokio::test]
async fn the_allow_list_admits_base_urls_and_paths_below_an_entry() {
    let listed = app(&format!(
        "kind=oauth,client_id=webid,client_secret=websecret,secret_token=t,redirect_urls={REDIRECT},allow_list=https://tenant.example+https://client.example/oauth/cb"
    ));
    let srv = server(ConsentMode::Approve, 3599, vec![listed]).await;
    let base = srv.base_url();
    for (redirect, admitted) in [
        (REDIRECT, true),
        ("https://tenant.example/any/path?team=a", true),
        ("https://client.example/oauth/cb/team-a", true),
        ("https://client.example/oauth/cbx", false),
        ("http://tenant.example/cb", false),
        ("https://tenant.example:8443/cb", false),
        ("https://sub.tenant.example/cb", false),
    ] {
        let (status, code) = authorize_to(&base, redirect).await;
        if !admitted {
            assert_eq!((status, code), (400, None), "{redirect}");
            let (status, body) = exchange(&base, "any-code", redirect, VERIFIER).await;
            assert_eq!(
                (status, &body["code"]),
                (400, &json!(4709)),
                "{redirect}: {body}"
            );
            continue;
        }
        assert_eq!(status, 302, "{redirect}");
        let code = code.expect("a code");
        let (status, body) =
            common::exchange_code(&base, ("webid", "websecret"), &code, redirect).await;
        assert_eq!(status, 200, "{redirect}: {body}");
    }

    // The apps API takes and lists the allow list.
    assert_eq!(
        create_api_app(
            &base,
            "allow_list",
            "https://a.example http://127.0.0.1:8080/cb"
        )
        .await,
        json!(["https://a.example", "http://127.0.0.1:8080/cb"])
    );
    let (status, body) = post_json(
        &base,
        "/sim/apps",
        json!({"client_id": "bad-app", "client_secret": "s", "allow_list": "https://a.example/#frag"}),
    )
    .await;
    assert_eq!((status, &body["code"]), (400, &json!(300)), "{body}");
}

#[tokio::test]
async fn refresh_token_expiry_is_sliding_or_absolute_on_the_simulated_clock() {
    let srv = server(ConsentMode::Approve, 3599, vec![web_app()]).await;
    let base = srv.base_url();
    let advance = |secs: i64| {
        let base = base.clone();
        async move {
            let (status, body) =
                post_json(&base, "/sim/clock", json!({"advance_secs": secs})).await;
            assert_eq!(status, 200, "{body}");
        }
    };
    // N = 10 days; refreshed every 4 days.
    let (status, config) = post_json(
        &base,
        "/sim/config",
        json!({"refresh_token_lifetime_secs": 864000}),
    )
    .await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["refresh_token_expiry"], "sliding");

    // Sliding: every refresh gives 10 more days, so the grant outlives the first 10.
    let (_, mut refresh_token) = grant(&base).await;
    for _ in 0..3 {
        advance(4 * 86400).await;
        let (status, body) = refresh(&base, &refresh_token).await;
        assert_eq!(status, 200, "{body}");
        refresh_token = str_of(&body, "refresh_token");
    }

    // Absolute: the same rhythm ends 10 days after the authorization.
    let (status, config) = post_json(
        &base,
        "/sim/config",
        json!({"refresh_token_expiry": "absolute"}),
    )
    .await;
    assert_eq!(
        (status, &config["refresh_token_expiry"]),
        (200, &json!("absolute"))
    );
    let (_, mut refresh_token) = grant(&base).await;
    for _ in 0..2 {
        advance(4 * 86400).await;
        let (status, body) = refresh(&base, &refresh_token).await;
        assert_eq!(status, 200, "{body}");
        refresh_token = str_of(&body, "refresh_token");
    }
    // The token given at day 8 carries the day-10 end in its exp claim.
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(refresh_token.split('.').nth(1).expect("claims"))
            .expect("base64"),
    )
    .expect("json");
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert!((2 * 86400 - 5..=2 * 86400).contains(&lifetime), "{claims}");
    advance(4 * 86400).await;
    let (status, body) = refresh(&base, &refresh_token).await;
    assert_eq!((status, body), invalid_grant());

    let (status, body) = post_json(
        &base,
        "/sim/config",
        json!({"refresh_token_expiry": "forever"}),
    )
    .await;
    assert_eq!((status, &body["code"]), (400, &json!(300)), "{body}");
}
