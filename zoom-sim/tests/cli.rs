//! Tests of the built `zoom-sim` binary: `serve` startup contract and `send-event`.

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use common::{get_json, get_status, http, independent_hmac, json_of, ok, Receiver, Validation};

const BIN: &str = env!("CARGO_BIN_EXE_zoom-sim");

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("ZOOM_SIM_SECRET_TOKEN")
        .env_remove("ZOOM_SIM_LISTEN")
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("zoom-sim finished in time")
        .expect("zoom-sim runs");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `run` with the arguments of a command line (split at white space).
async fn words(line: &str) -> Output {
    run(&line.split_whitespace().collect::<Vec<_>>()).await
}

/// `zoom-sim send-event --url URL --secret-token TOKEN` and the arguments in `rest`.
async fn send_event(url: &str, token: &str, rest: &str) -> Output {
    words(&format!(
        "send-event --url {url} --secret-token {token} {rest}"
    ))
    .await
}

#[tokio::test]
async fn serve_prints_one_listening_line_and_serves() {
    let (mut child, mut lines, base) = spawn_serve(&[
        "--listen",
        "127.0.0.1:0",
        "--token-lifetime",
        "30",
        "--consent",
        "approve",
        "--app",
        "kind=s2s,client_id=cli-s2s,client_secret=sec,secret_token=tok,account_id=ACCT",
    ])
    .await;
    let port: u16 = base
        .strip_prefix("http://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not http://127.0.0.1:PORT: {base:?}"));
    assert_ne!(port, 0, "the actual bound port is printed");

    assert_eq!(get_status(&base, "/healthz").await, 200);
    let resp = http()
        .post(format!("{base}/oauth/token"))
        .basic_auth("cli-s2s", Some("sec"))
        .form(&[
            ("grant_type", "account_credentials"),
            ("account_id", "ACCT"),
        ])
        .send()
        .await
        .expect("token");
    let (status, body) = json_of(resp).await;
    assert_eq!(
        (status, body["expires_in"].as_u64()),
        (200, Some(30)),
        "{body}"
    );
    assert_eq!(body["api_url"], base);

    // Nothing else is printed on stdout.
    child.start_kill().expect("stop zoom-sim");
    let rest = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("stdout closes");
    assert_eq!(rest.expect("read stdout"), None);
}

#[tokio::test]
async fn serve_rejects_incomplete_app_specs() {
    let out = run(&["serve", "--app", "kind=oauth,client_id=x"]).await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("client_secret"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let out = run(&["serve", "--app", "kind=s2s,client_id=x,client_secret=y"]).await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("account_id"), "{}", out.stderr);
}

#[tokio::test]
async fn serve_rejects_unknown_dialects() {
    let out = run(&["serve", "--refresh-rejection", "teapot"]).await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("no_reason_401"),
        "names the choices: {}",
        out.stderr
    );
    let out = run(&["serve", "--code-rejection", "loud"]).await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("echoed"), "{}", out.stderr);
}

#[tokio::test]
async fn send_event_signs_like_zoom() {
    let receiver = Receiver::start("sekret", Validation::Correct).await;
    let out = send_event(
        &receiver.url(),
        "sekret",
        r#"--event meeting.started --account-id ACC --request-id req-42 --payload {"object":{"id":"123","topic":"Standup"}}"#,
    )
    .await;
    assert_eq!(
        out.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.starts_with("status: 200\n"), "{}", out.stdout);

    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    // Recompute the signature from the raw bytes received, independently.
    let ts = req
        .header("x-zm-request-timestamp")
        .expect("timestamp header");
    let mut message = format!("v0:{ts}:").into_bytes();
    message.extend_from_slice(&req.body);
    assert_eq!(
        req.header("x-zm-signature"),
        Some(format!("v0={}", independent_hmac("sekret", &message)))
    );
    assert!(req.signature_valid && !req.stale);
    assert_eq!(req.header("x-zm-request-id").as_deref(), Some("req-42"));
    assert_eq!(
        req.header("user-agent").as_deref(),
        Some("Zoom Marketplace/1.0a")
    );
    assert!(req
        .header("content-type")
        .expect("content type")
        .starts_with("application/json"));

    let body = req.json();
    assert_eq!(body["event"], "meeting.started");
    let event_ts = body["event_ts"].as_i64().expect("event_ts");
    let ts: i64 = ts.parse().expect("numeric timestamp");
    assert!(
        (event_ts / 1000 - ts).abs() <= 2,
        "event_ts is in ms: {event_ts} vs {ts}"
    );
    assert_eq!(
        body["payload"],
        json!({"account_id": "ACC", "object": {"id": "123", "topic": "Standup"}})
    );
}

#[tokio::test]
async fn send_event_bad_signature_and_stale_timestamp_are_rejected_by_a_receiver() {
    let receiver = Receiver::start("sekret", Validation::Correct).await;
    let url = receiver.url();

    let out = send_event(&url, "sekret", "--event meeting.ended --bad-signature").await;
    assert_eq!(out.code, Some(1));
    assert!(out.stdout.starts_with("status: 401\n"), "{}", out.stdout);

    let out = send_event(
        &url,
        "sekret",
        "--event meeting.ended --timestamp 1000000000",
    )
    .await;
    assert_eq!(out.code, Some(1), "a 2001 timestamp is stale");
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    assert!(!got[0].signature_valid, "--bad-signature must not verify");
    assert!(
        got[1].signature_valid,
        "a stale request is still correctly signed"
    );
    assert!(got[1].stale);
    assert_eq!(
        got[1].header("x-zm-request-timestamp").as_deref(),
        Some("1000000000")
    );
}

#[tokio::test]
async fn validate_checks_the_receivers_answer() {
    let good = Receiver::start("sekret", Validation::Correct).await;
    let out = send_event(&good.url(), "sekret", "--validate").await;
    assert_eq!(
        out.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("validation: ok"), "{}", out.stdout);
    let sent = good.received()[0].json();
    assert_eq!(sent["event"], "endpoint.url_validation");
    assert!(sent["payload"]["plainToken"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));

    let bad = Receiver::start("sekret", Validation::WrongSecret).await;
    let out = send_event(&bad.url(), "sekret", "--validate").await;
    assert_eq!(out.code, Some(1));
    assert!(out.stdout.contains("validation: failed"), "{}", out.stdout);

    // A receiver that rejects the request outright also fails validation.
    let out = send_event(&good.url(), "other", "--validate").await;
    assert_eq!(out.code, Some(1));
}

#[tokio::test]
async fn send_event_usage_errors() {
    let out = send_event("http://127.0.0.1:9/", "t", "--event e --payload [1]").await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("JSON object"), "{}", out.stderr);
    let out = send_event(
        "http://127.0.0.1:9/",
        "t",
        "--event e --payload-file /nonexistent/x.json",
    )
    .await;
    assert_eq!(out.code, Some(2));
    let out = send_event("not-a-url", "t", "--event e").await;
    assert_eq!(out.code, Some(2));
    let out = send_event("http://127.0.0.1:9/", "t", "").await;
    assert_eq!(out.code, Some(2), "--event or --validate is required");
    // Nothing listening: a delivery failure, not a usage error.
    let out = send_event("http://127.0.0.1:1/", "t", "--event e").await;
    assert_eq!(out.code, Some(1));
}

/// Starts `zoom-sim serve ARGS`; the child, the rest of its stdout and its base URL (from
/// the one listening line).
async fn spawn_serve(args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .env_remove("ZOOM_SIM_LISTEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn zoom-sim serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("listening line in time")
        .expect("read stdout")
        .expect("a line");
    let base = line
        .strip_prefix("zoom-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected line: {line:?}"))
        .to_owned();
    (child, lines, base)
}

/// Starts `zoom-sim serve ARGS` and returns the child and its base URL.
async fn serve(args: &[&str]) -> (Child, String) {
    let (child, _, base) = spawn_serve(args).await;
    (child, base)
}

async fn sim_config(base: &str) -> serde_json::Value {
    ok(get_json(base, "/sim/config", None).await)
}

#[tokio::test]
async fn serve_takes_delivery_and_rate_limit_flags() {
    let (mut child, base) = serve(&[
        "--webhook-timeout-ms",
        "500",
        "--retry-timestamp",
        "fresh",
        "--webhook-request-id",
        "--legacy-authorization",
        "--duplicate-rate",
        "0.25",
        "--max-pending-webhooks",
        "7",
        "--no-webhook-retries",
        "--rate-limit",
        "--no-retry-after",
        "--app",
        "client_id=eu,client_secret=s,api_url=https://api-eu.zoom.us",
    ])
    .await;
    let cfg = sim_config(&base).await;
    assert_eq!(
        (
            &cfg["webhook_timeout_ms"],
            &cfg["retry_timestamp"],
            &cfg["webhook_request_id_header"],
            &cfg["legacy_authorization_header"],
            &cfg["duplicate_rate"],
            &cfg["max_pending_webhooks"],
            &cfg["webhook_retries"],
            &cfg["rate_limit"]["enabled"],
            &cfg["rate_limit"]["retry_after"],
        ),
        (
            &json!(500),
            &json!("fresh"),
            &json!(true),
            &json!(true),
            &json!(0.25),
            &json!(7),
            &json!(false),
            &json!(true),
            &json!(false),
        ),
        "{cfg}"
    );
    child.start_kill().expect("stop zoom-sim");
}

#[tokio::test]
async fn serve_reads_delivery_settings_from_the_config_file_and_defaults_are_zooms() {
    let (mut child, base) = serve(&[]).await;
    let cfg = sim_config(&base).await;
    assert_eq!(
        (
            &cfg["webhook_timeout_ms"],
            &cfg["retry_timestamp"],
            &cfg["webhook_request_id_header"],
            &cfg["webhook_retries"],
            &cfg["max_pending_webhooks"],
            &cfg["rate_limit"]["enabled"],
        ),
        (
            &json!(3000),
            &json!("original"),
            &json!(false),
            &json!(true),
            &json!(10_000),
            &json!(false)
        ),
        "{cfg}"
    );
    child.start_kill().expect("stop zoom-sim");

    let (dir, file) = config_file(
        "zoom-sim-cli",
        json!({
            "webhook_timeout_ms": 1500,
            "retry_timestamp": "fresh",
            "duplicate_rate": 1,
            "rate_limit": {"enabled": true, "medium": {"rate": 5}},
        }),
    );
    let path = file.to_str().expect("utf-8 path");
    // A flag wins over the file.
    let (mut child, base) = serve(&["--config", path, "--webhook-timeout-ms", "900"]).await;
    let cfg = sim_config(&base).await;
    assert_eq!(cfg["webhook_timeout_ms"], 900);
    assert_eq!(cfg["retry_timestamp"], "fresh");
    assert_eq!(cfg["duplicate_rate"], 1.0);
    assert_eq!(cfg["rate_limit"]["medium"]["rate"], 5);
    assert_eq!(cfg["rate_limit"]["light"]["rate"], 30, "Zoom Pro defaults");
    child.start_kill().expect("stop zoom-sim");

    std::fs::write(&file, r#"{"duplicate_rate": 2}"#).expect("write config");
    let out = run(&["serve", "--config", path]).await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("duplicate_rate"), "{}", out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn serve_rejects_bad_delivery_flags() {
    for args in [
        &["serve", "--retry-timestamp", "later"][..],
        &["serve", "--duplicate-rate", "3"],
        &["serve", "--webhook-timeout-ms", "0"],
        &["serve", "--max-pending-webhooks", "0"],
        &["serve", "--no-retry-after"],
        &[
            "serve",
            "--app",
            "client_id=a,client_secret=s,api_url=ftp://x",
        ],
    ] {
        let out = run(args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty());
    }
}

#[tokio::test]
async fn send_event_sends_the_legacy_authorization_header_on_request() {
    let receiver = Receiver::start("sekret", Validation::Correct).await;
    let out = send_event(
        &receiver.url(),
        "sekret",
        "--event meeting.ended --verification-token old-vt",
    )
    .await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let got = receiver.received();
    assert_eq!(got[0].header("authorization").as_deref(), Some("old-vt"));
    assert!(got[0].header("x-zm-trackingid").is_some());
    assert_eq!(
        got[0].header("x-zm-request-id"),
        None,
        "only with an explicit --request-id"
    );
}

/// A config file `config.json` with `config` in a fresh directory named after `name` and this
/// process; the directory (for removal) and the file.
fn config_file(name: &str, config: serde_json::Value) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("config.json");
    std::fs::write(&file, config.to_string()).expect("write config");
    (dir, file)
}

/// `refresh_token_expiry` and `revoke_sends_deauthorization` of `/sim/config`.
async fn expiry_and_revoke(base: &str) -> (serde_json::Value, serde_json::Value) {
    let cfg = sim_config(base).await;
    (
        cfg["refresh_token_expiry"].clone(),
        cfg["revoke_sends_deauthorization"].clone(),
    )
}

#[tokio::test]
async fn serve_takes_refresh_expiry_revoke_and_app_url_settings_from_flags_and_file() {
    let (mut child, base) = serve(&[]).await;
    assert_eq!(
        expiry_and_revoke(&base).await,
        (json!("sliding"), json!(true))
    );
    child.start_kill().expect("stop zoom-sim");

    let (mut child, base) = serve(&[
        "--refresh-token-expiry",
        "absolute",
        "--revoke-sends-deauthorization",
        "false",
        "--app",
        "client_id=a,client_secret=s,allow_list=https://a.example+https://b.example/cb,deauthorization_url=https://a.example/deauth",
    ])
    .await;
    assert_eq!(
        expiry_and_revoke(&base).await,
        (json!("absolute"), json!(false))
    );
    let (_, apps) = get_json(&base, "/sim/apps", None).await;
    assert_eq!(
        apps["apps"][0]["allow_list"],
        json!(["https://a.example", "https://b.example/cb"])
    );
    assert_eq!(
        apps["apps"][0]["deauthorization_url"],
        "https://a.example/deauth"
    );
    child.start_kill().expect("stop zoom-sim");

    let (dir, file) = config_file(
        "zoom-sim-cli-expiry",
        json!({"refresh_token_expiry": "absolute", "revoke_sends_deauthorization": false}),
    );
    let path = file.to_str().expect("utf-8 path");
    let (mut child, base) =
        serve(&["--config", path, "--revoke-sends-deauthorization", "true"]).await;
    assert_eq!(
        expiry_and_revoke(&base).await,
        (json!("absolute"), json!(true))
    );
    child.start_kill().expect("stop zoom-sim");
    let _ = std::fs::remove_dir_all(&dir);

    for args in [
        &["serve", "--refresh-token-expiry", "forever"][..],
        &["serve", "--revoke-sends-deauthorization", "maybe"],
        &[
            "serve",
            "--app",
            "client_id=a,client_secret=s,allow_list=/relative",
        ],
        &[
            "serve",
            "--app",
            "client_id=a,client_secret=s,deauthorization_url=x",
        ],
    ] {
        let out = run(args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
    }
}
