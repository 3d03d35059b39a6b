//! OAuth end to end against the real control plane and zoom-sim: the browser flow, tickets and
//! state, rotating refresh, outages, Server-to-Server, the default app, revoke on delete, and a
//! scan for leaked tokens.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use kube::api::{Api, DeleteParams};
use reqwest::StatusCode;
use serde_json::json;
use zoom_operator::api::ZoomConnection;

const CLIENT_ID: &str = "oauth-client-id";
const CLIENT_SECRET: &str = "oauth-client-secret-value";

/// The OAuth app at zoom-sim, authorized by user-1 (owner@example.com) of account acc-1.
fn app() -> ZoomApp {
    ZoomApp::oauth(CLIENT_ID, CLIENT_SECRET)
        .account("acc-1")
        .user("user-1", "owner@example.com")
}

/// The OAuth app, its credentials Secret `zoom-app`, zoom-sim with `sim_args` (and
/// `--consent=approve`), and an operator.
async fn setup(prefix: &str, sim_args: &[&str]) -> Env {
    Env::new(prefix)
        .sim(&["--consent=approve"])
        .sim(sim_args)
        .app(app())
        .start()
        .await
}

/// Follows the browser's path: start link -> Zoom's authorize -> back to the redirect URL,
/// checking what the operator asks Zoom for. Returns the redirect URL Zoom sent the browser
/// to, without opening it.
async fn through_zoom(start_url: &str) -> String {
    let hops = web::through_zoom(start_url).await;
    let parsed = url::Url::parse(&hops.to_zoom).expect("authorize URL");
    let params: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(parsed.path(), "/oauth/authorize");
    assert_eq!(get("response_type").as_deref(), Some("code"));
    assert_eq!(get("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(get("code_challenge_method").as_deref(), Some("S256"));
    assert!(get("code_challenge").is_some_and(|c| c.len() == 43));
    assert!(get("state").is_some());
    assert!(
        get("scope").is_none(),
        "no scope parameter: the app's scopes apply"
    );
    assert!(
        hops.callback
            .starts_with(&get("redirect_uri").unwrap_or_default()),
        "{}",
        hops.callback
    );
    hops.callback
}

/// The whole browser flow for `name`: the callback's status and page.
async fn full_flow(env: &Env, name: &str) -> (StatusCode, String) {
    let start = wait_authorize_url(&env.client, &env.ns, name).await;
    web::open(&through_zoom(&start).await).await
}

/// `name` applied and authorized through the browser; waits for Ready.
async fn authorized(env: &Env, zc: Zc) {
    env.apply(&zc).await;
    assert_eq!(full_flow(env, zc.name()).await.0, StatusCode::OK);
    env.wait_ready(zc.name()).await;
}

async fn token(env: &Env, name: &str, key: &str) -> Option<String> {
    secret_key(&token_secret(&env.client, &env.ns, name).await?, key)
}

/// Revokes the grant of `name` at Zoom, as a user removing the app would.
async fn revoke_at_zoom(env: &Env, name: &str) -> reqwest::Response {
    http()
        .post(format!("{}/oauth/revoke", env.sim.url))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[(
            "token",
            token(env, name, "refresh_token").await.expect("rt"),
        )])
        .send()
        .await
        .expect("revoke")
}

#[tokio::test]
async fn browser_flow_writes_the_token_secret_and_status() {
    let env = setup("flow", &[]).await;
    env.apply(&Zc::private_oauth("bot").token_secret_labels(&[("team", "a")]))
        .await;
    env.wait("bot", "Authorized", "False", "AwaitingAuthorization")
        .await;

    let (status, page) = full_flow(&env, "bot").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("Connected to Zoom") && page.contains("owner@example.com"),
        "{page}"
    );

    let zc = env.wait_ready("bot").await;
    let st = zc.status.clone().expect("status");
    let account = st.account.expect("account from /v2/users/me");
    assert_eq!(account.account_id.as_deref(), Some("acc-1"));
    assert_eq!(account.user_id.as_deref(), Some("user-1"));
    assert_eq!(account.email.as_deref(), Some("owner@example.com"));
    assert!(
        st.expires_at.is_some() && st.next_refresh_time.is_some() && st.last_refresh_time.is_some()
    );
    assert!(st.scopes.is_some_and(|s| !s.is_empty()));
    assert!(
        st.authorize_url.is_some(),
        "OAuth connections keep a link to re-authorize"
    );

    let secret = token_secret(&env.client, &env.ns, "bot")
        .await
        .expect("token Secret");
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    for k in [
        "access_token",
        "refresh_token",
        "token_type",
        "expires_at",
        "scope",
        "api_url",
    ] {
        assert!(
            secret_key(&secret, k).is_some_and(|v| !v.is_empty()),
            "missing {k}"
        );
    }
    let labels = secret.metadata.labels.clone().expect("labels");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "zoom-operator");
    assert_eq!(labels["zoom-operator.io/connection"], "bot");
    assert_eq!(labels["team"], "a");
    let owner = &secret.metadata.owner_references.clone().expect("owner")[0];
    assert_eq!(owner.controller, Some(true));
    assert_eq!(Some(owner.uid.clone()), zc.metadata.uid);
    // The token works at Zoom.
    let me = http()
        .get(format!("{}/v2/users/me", env.sim.url))
        .bearer_auth(secret_key(&secret, "access_token").expect("token"))
        .send()
        .await
        .expect("users/me");
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(env.sim.stats().await["authorization_code_grants"], 1);
}

#[tokio::test]
async fn tickets_and_states_are_checked() {
    let env = setup("tickets", &[]).await;
    env.apply(&Zc::private_oauth("bot")).await;
    let start = wait_authorize_url(&env.client, &env.ns, "bot").await;
    let http = http();

    // No ticket, a tampered ticket, a ticket for another connection: 403, no redirect.
    let base = start.split('?').next().expect("base").to_owned();
    let tampered = format!("{start}x");
    let other = start.replace("/bot?", "/other?");
    for url in [&base, &tampered, &other] {
        let r = http.get(url).send().await.expect("start");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{url}");
    }

    // Garbage state and missing state: 400 with a page, never 500.
    let redirect = format!("{}/oauth/redirect/zoom", env.op.public_url);
    for query in [
        "?code=abc&state=garbage",
        "?code=abc",
        "?state=a.b&code=x",
        "",
    ] {
        let r = http
            .get(format!("{redirect}{query}"))
            .send()
            .await
            .expect("redirect");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(r.text().await.unwrap_or_default().contains("<html>"));
    }

    // A state used once cannot be replayed.
    let callback = through_zoom(&start).await;
    assert_eq!(web::open(&callback).await.0, StatusCode::OK);
    let (status, page) = web::open(&callback).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("already used"), "{page}");

    // An expired state (signed with the real key, 11 minutes old) is refused.
    let key = signing_key(&env.client, &env.ns).await;
    let zc: ZoomConnection = Api::namespaced(env.client.clone(), &env.ns)
        .get("bot")
        .await
        .expect("zc");
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(11 * 60);
    let (old_state, _) = key.issue_state(
        &env.ns,
        "bot",
        zc.metadata.uid.as_deref().expect("uid"),
        past,
    );
    let (status, page) = web::open(&format!("{redirect}?code=abc&state={old_state}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("expired"), "{page}");
}

#[tokio::test]
async fn access_denied_is_reported() {
    let env = Env::new("denied")
        .sim(&["--consent=deny"])
        .app(app())
        .start()
        .await;
    env.apply(&Zc::private_oauth("bot")).await;
    let (status, page) = full_flow(&env, "bot").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("denied"), "{page}");
    wait_message(
        &env.client,
        &env.ns,
        "bot",
        "Authorized",
        "the denial in the Authorized condition",
        |c| c.status == "False" && c.message.contains("access_denied"),
    )
    .await;
}

#[tokio::test]
async fn refresh_rotates_without_reuse_and_never_stores_an_expired_token() {
    let env = setup("rotate", &["--token-lifetime=30"]).await;
    authorized(&env, Zc::private_oauth("bot").refresh_before("10s")).await;

    let mut refresh_tokens = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while refresh_tokens.len() < 4 && tokio::time::Instant::now() < deadline {
        if let Some(secret) = token_secret(&env.client, &env.ns, "bot").await {
            let expires: jiff::Timestamp = secret_key(&secret, "expires_at")
                .expect("expires_at")
                .parse()
                .expect("rfc3339");
            assert!(
                expires > jiff::Timestamp::now(),
                "the Secret holds an expired token (expired {expires})"
            );
            refresh_tokens.insert(secret_key(&secret, "refresh_token").expect("refresh_token"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        refresh_tokens.len() >= 4,
        "expected 3 rotations in 2 minutes, saw {} refresh tokens",
        refresh_tokens.len()
    );
    let stats = env.sim.assert_no_reuse().await;
    assert!(stats["refreshes"].as_u64() >= Some(3), "{stats}");
    env.wait("bot", "TokenReady", "True", "Fresh").await;
}

#[tokio::test]
async fn rejected_refresh_token_asks_for_reauthorization() {
    let env = setup("rejected", &[]).await;
    authorized(&env, Zc::private_oauth("bot")).await;

    // Someone revokes the grant at Zoom; the next refresh gets invalid_grant.
    assert!(revoke_at_zoom(&env, "bot").await.status().is_success());
    request_refresh(&env.client, &env.ns, "bot", "1").await;
    let zc = env
        .wait("bot", "Authorized", "False", "RefreshTokenRejected")
        .await;
    assert_eq!(
        zc.condition("Ready").expect("Ready").reason,
        "RefreshTokenRejected"
    );
    assert!(
        zc.status.and_then(|s| s.authorize_url).is_some(),
        "an authorize URL to recover"
    );
    // Re-authorizing recovers.
    assert_eq!(full_flow(&env, "bot").await.0, StatusCode::OK);
    env.wait_ready("bot").await;
}

#[tokio::test]
async fn zoom_outage_is_reported_and_recovers() {
    let env = setup("outage", &[]).await;
    authorized(&env, Zc::private_oauth("bot")).await;
    let before = token(&env, "bot", "refresh_token").await;

    env.sim
        .admin(
            "/sim/faults",
            json!({"path": "/oauth/token", "status": 503, "count": 3}),
        )
        .await;
    env.sim
        .admin(
            "/sim/faults",
            json!({"path": "/oauth/token", "status": 429, "count": 1, "retry_after": "3"}),
        )
        .await;
    request_refresh(&env.client, &env.ns, "bot", "outage").await;
    let zc = env
        .wait("bot", "TokenReady", "False", "RefreshFailing")
        .await;
    let message = condition_message(&zc, "TokenReady");
    assert!(
        message.contains("HTTP 503") || message.contains("HTTP 429"),
        "{message}"
    );
    assert!(
        zc.status
            .and_then(|s| s.failed_refresh_attempts)
            .unwrap_or(0)
            >= 1
    );

    let zc = env.wait("bot", "TokenReady", "True", "Fresh").await;
    assert_eq!(zc.status.and_then(|s| s.failed_refresh_attempts), Some(0));
    assert!(before.is_some());
    assert_ne!(
        before,
        token(&env, "bot", "refresh_token").await,
        "the refresh eventually happened"
    );
    env.sim.assert_no_reuse().await;
}

#[tokio::test]
async fn server_to_server_mints_tokens_without_a_browser() {
    let s2s = ZoomApp::s2s("s2s-id", "acc-9");
    let env = Env::new("s2s")
        .sim(&["--token-lifetime=20"])
        .app(s2s.clone())
        .start()
        .await;
    let (client, ns) = (&env.client, &env.ns);
    env.apply(&Zc::s2s("bot").refresh_before("5s")).await;
    let zc = env.wait_ready("bot").await;
    assert!(
        zc.status
            .as_ref()
            .and_then(|s| s.authorize_url.clone())
            .is_none(),
        "no browser step"
    );
    let account = wait_zc(
        client,
        ns,
        "bot",
        "status.account from /v2/users/me",
        Duration::from_secs(30),
        |zc| {
            zc.status
                .and_then(|s| s.account)
                .ok_or_else(|| "no account yet".to_owned())
        },
    )
    .await;
    assert_eq!(account.account_id.as_deref(), Some("acc-9"));
    let first = token_secret(client, ns, "bot").await.expect("secret");
    assert!(secret_key(&first, "access_token").is_some());
    assert!(
        secret_key(&first, "refresh_token").is_none(),
        "Server-to-Server has no refresh token"
    );
    // Minted again before expiry.
    let first = secret_key(&first, "access_token");
    eventually(
        "a second Server-to-Server token",
        Duration::from_secs(60),
        || async {
            let now = token(&env, "bot", "access_token").await;
            if now != first {
                Ok(())
            } else {
                Err("same token".to_owned())
            }
        },
    )
    .await;

    // Wrong account ID: AccountCredentialsRejected.
    s2s.clone()
        .account("not-mine")
        .secret("bad-app")
        .put(client, ns)
        .await;
    env.apply(&Zc::s2s("wrong").credentials("bad-app")).await;
    env.wait("wrong", "Authorized", "False", "AccountCredentialsRejected")
        .await;

    // Wrong client secret: InvalidClientCredentials; fixing the Secret recovers.
    let mut wrong = s2s.clone();
    wrong.client_secret = "nope".to_owned();
    wrong.secret("bad-client").put(client, ns).await;
    env.apply(&Zc::s2s("badclient").credentials("bad-client"))
        .await;
    env.wait(
        "badclient",
        "CredentialsReady",
        "False",
        "InvalidClientCredentials",
    )
    .await;
    s2s.secret("bad-client").put(client, ns).await;
    env.wait_ready("badclient").await;
}

#[tokio::test]
async fn default_app_is_used_when_configured() {
    let client = client().await;
    let ns = namespace(&client, "default-app").await;
    let zcs = Zcs::new(&client, &ns);
    let sim = start_zoom_sim(&["--consent=approve", &app().sim_flag()]);
    app().secret("platform-zoom-app").put(&client, &ns).await;

    // Without --default-app-secret: a clear condition.
    {
        let _op = sim.operator(&ns, &[]);
        Zc::default_oauth("bot").apply(&client, &ns).await;
        let zc = zcs.wait_no_default_app("bot").await;
        assert!(condition_message(&zc, "CredentialsReady").contains("--default-app-secret"));
    }
    // With it: the tenant only authorizes.
    let op = sim.operator(
        &ns,
        &[&format!("--default-app-secret={ns}/platform-zoom-app")],
    );
    let env = Env {
        client,
        ns,
        sim,
        op,
    };
    env.wait("bot", "CredentialsReady", "True", "Valid").await;
    assert_eq!(full_flow(&env, "bot").await.0, StatusCode::OK);
    env.wait_ready("bot").await;
}

#[tokio::test]
async fn revoke_on_delete_revokes_or_gives_up_with_a_warning() {
    let env = setup("revoke", &[]).await;
    for name in ["bot", "stuck"] {
        env.apply(&Zc::private_oauth(name).revoke_on_delete()).await;
    }
    for name in ["bot", "stuck"] {
        assert_eq!(full_flow(&env, name).await.0, StatusCode::OK);
    }
    for name in ["bot", "stuck"] {
        env.wait_ready(name).await;
    }
    let api: Api<ZoomConnection> = Api::namespaced(env.client.clone(), &env.ns);
    assert!(api
        .get("bot")
        .await
        .expect("zc")
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&"zoom-operator.io/revoke".to_owned()));

    api.delete("bot", &DeleteParams::default())
        .await
        .expect("delete");
    wait_deleted(&api, "bot", "bot to be deleted", Duration::from_secs(90)).await;
    assert_eq!(env.sim.stats().await["revokes"], 1);

    // Zoom down: bounded retries, then the finalizer goes with a Warning Event.
    env.sim
        .admin(
            "/sim/faults",
            json!({"path": "/oauth/revoke", "status": 503, "count": 100}),
        )
        .await;
    api.delete("stuck", &DeleteParams::default())
        .await
        .expect("delete");
    wait_deleted(
        &api,
        "stuck",
        "stuck to be deleted",
        Duration::from_secs(90),
    )
    .await;
    assert!(
        events(&env.client, &env.ns)
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some("RevokeFailed")
                && e.type_.as_deref() == Some("Warning")),
        "a RevokeFailed warning"
    );
}

#[tokio::test]
async fn authorize_command_prints_the_url_and_waits() {
    let env = setup("cli", &[]).await;
    env.apply(&Zc::private_oauth("bot")).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zoom-operator"))
        .args(["authorize", "-n", &env.ns, "bot", "--timeout=90s"])
        .env("KUBECONFIG", kubeconfig())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("authorize");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let url = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("URL printed in time")
        .expect("read")
        .expect("a line");
    assert!(
        url.contains("/oauth/start/zoom/") && url.contains("ticket="),
        "{url}"
    );
    let callback = through_zoom(&url).await;
    assert_eq!(web::open(&callback).await.0, StatusCode::OK);
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("authorize exits once authorized")
        .expect("wait");
    assert!(status.success());

    // A connection that never gets authorized: non-zero exit with a clear message.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_zoom-operator"))
        .args(["authorize", "-n", &env.ns, "missing", "--timeout=2s"])
        .env("KUBECONFIG", kubeconfig())
        .output()
        .await
        .expect("authorize");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[tokio::test]
async fn tokens_never_leak_into_logs_events_or_status() {
    let env = setup("leaks", &["--token-lifetime=30"]).await;
    env.apply(&Zc::private_oauth("bot").refresh_before("10s"))
        .await;
    assert_eq!(full_flow(&env, "bot").await.0, StatusCode::OK);
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    while tokio::time::Instant::now() < deadline {
        if let Some(s) = token_secret(&env.client, &env.ns, "bot").await {
            seen.extend(secret_key(&s, "access_token"));
            seen.extend(secret_key(&s, "refresh_token"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        seen.len() >= 4,
        "expected at least one refresh: {}",
        seen.len()
    );
    seen.insert(CLIENT_SECRET.to_owned());

    let zc: ZoomConnection = Api::namespaced(env.client.clone(), &env.ns)
        .get("bot")
        .await
        .expect("zc");
    let status = serde_json::to_string(&zc.status).expect("json");
    let events = serde_json::to_string(&events(&env.client, &env.ns).await).expect("json");
    let logs = env.op.process.logs();
    assert!(!logs.is_empty());
    for secret in &seen {
        assert!(!status.contains(secret.as_str()), "a token in status");
        assert!(!events.contains(secret.as_str()), "a token in an Event");
        assert!(
            !logs.contains(secret.as_str()),
            "a token in the operator log"
        );
        assert!(!zc
            .status
            .as_ref()
            .and_then(|s| s.authorize_url.clone())
            .unwrap_or_default()
            .contains(secret.as_str()));
    }
}

#[tokio::test]
async fn a_dead_grant_with_an_expired_token_does_not_spin_the_reconciler() {
    let env = setup("idle", &["--token-lifetime=6"]).await;
    authorized(&env, Zc::private_oauth("bot").refresh_before("1s")).await;
    // Kill the grant at Zoom: the next refresh is rejected and the access token runs out.
    revoke_at_zoom(&env, "bot").await;
    env.wait("bot", "Authorized", "False", "RefreshTokenRejected")
        .await;
    env.wait("bot", "TokenReady", "False", "Expired").await;
    let reconciliations = "zoom_operator_reconciliations_total{";
    let before = env.op.metric(reconciliations).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = env.op.metric(reconciliations).await - before;
    assert!(
        during <= 3.0,
        "{during} reconciles in 6 idle seconds: the loop spins"
    );
}

#[tokio::test]
async fn one_zoom_user_authorizing_one_app_for_two_connections_is_said_in_both() {
    // Zoom's rule, one live grant per user and app (zoom-sim's default keeps them all).
    let env = setup("shared", &["--grant-tolerance=1"]).await;
    let (client, ns) = (&env.client, &env.ns);
    for name in ["first", "second"] {
        env.apply(&Zc::private_oauth(name)).await;
    }
    // The same Zoom user (zoom-sim's user-1) authorizes both, "first" first.
    for name in ["first", "second"] {
        assert_eq!(full_flow(&env, name).await.0, StatusCode::OK);
        env.wait_ready(name).await;
    }
    for (name, other) in [("first", "second"), ("second", "first")] {
        let other = format!("{ns}/{other}");
        wait_zc(
            client,
            ns,
            name,
            "the shared grant in Authorized",
            Duration::from_secs(30),
            |zc| {
                let message = condition_message(&zc, "Authorized");
                if message.contains(&other) && message.contains("one grant per user and app") {
                    Ok(())
                } else {
                    Err(message)
                }
            },
        )
        .await;
    }

    // Zoom dropped the first grant: its next refresh is refused, and the message names the
    // newer authorization as the likely cause.
    request_refresh(client, ns, "first", "1").await;
    let zc = env
        .wait("first", "Authorized", "False", "RefreshTokenRejected")
        .await;
    let message = condition_message(&zc, "Authorized");
    assert!(
        message.contains("likely cause") && message.contains(&format!("{ns}/second")),
        "{message}"
    );
    env.wait_ready("second").await;

    // revokeOnDelete uninstalls the app for that Zoom user: a Warning names who else loses.
    env.apply(&Zc::private_oauth("second").revoke_on_delete())
        .await;
    wait_zc(
        client,
        ns,
        "second",
        "the revoke finalizer",
        Duration::from_secs(30),
        |zc| {
            let has = zc
                .metadata
                .finalizers
                .unwrap_or_default()
                .iter()
                .any(|f| f == "zoom-operator.io/revoke");
            if has {
                Ok(())
            } else {
                Err("no finalizer yet".to_owned())
            }
        },
    )
    .await;
    Api::<ZoomConnection>::namespaced(client.clone(), ns)
        .delete("second", &DeleteParams::default())
        .await
        .expect("delete");
    let first = format!("{ns}/first");
    wait_event(client, ns, "a SharedGrantRevoked warning", |e| {
        e.reason.as_deref() == Some("SharedGrantRevoked")
            && e.note.as_ref().is_some_and(|note| note.contains(&first))
    })
    .await;
}
