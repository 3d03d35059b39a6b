//! OAuth end to end against the real control plane and zoom-sim: the browser flow, tickets and
//! state, rotating refresh, outages, Server-to-Server, the default app, revoke on delete, and a
//! scan for leaked tokens.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use reqwest::StatusCode;
use serde_json::{json, Value};
use zoom_operator::api::ZoomConnection;

const CLIENT_ID: &str = "oauth-client-id";
const CLIENT_SECRET: &str = "oauth-client-secret-value";

fn sim_app(extra: &str) -> String {
    format!("--app=kind=oauth,client_id={CLIENT_ID},client_secret={CLIENT_SECRET},account_id=acc-1,user_id=user-1,email=owner@example.com{extra}")
}

fn oauth_zc(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: zoom-operator.io/v1alpha1\nkind: ZoomConnection\nmetadata: {{name: {name}}}\nspec:\n  authType: PrivateOAuth\n  credentialsRef: {{name: zoom-app}}\n{extra_spec}"
    )
}

struct Env {
    client: kube::Client,
    ns: String,
    sim: ZoomSim,
    op: Operator,
}

async fn setup(prefix: &str, sim_args: &[&str], op_args: &[&str]) -> Env {
    let client = client().await;
    let ns = namespace(&client, prefix).await;
    let sim = start_zoom_sim(sim_args);
    put_secret(
        &client,
        &ns,
        "zoom-app",
        &[("clientId", CLIENT_ID), ("clientSecret", CLIENT_SECRET)],
    )
    .await;
    let mut args = vec![
        format!("--zoom-oauth-url={}", sim.url),
        format!("--zoom-api-url={}", sim.url),
    ];
    args.extend(op_args.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let op = start_operator(&ns, &args);
    Env {
        client,
        ns,
        sim,
        op,
    }
}

async fn authorize_url(env: &Env, name: &str) -> String {
    let api: Api<ZoomConnection> = Api::namespaced(env.client.clone(), &env.ns);
    eventually("status.authorizeURL", Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            let zc = api.get(name).await.map_err(|e| e.to_string())?;
            zc.status
                .and_then(|s| s.authorize_url)
                .ok_or_else(|| "no authorizeURL yet".to_owned())
        }
    })
    .await
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Follows the browser's path: start link -> Zoom's authorize -> back to the redirect URL.
/// Returns the redirect URL Zoom sent the browser to, without opening it.
async fn through_zoom(start_url: &str) -> String {
    let http = http();
    let start = http.get(start_url).send().await.expect("start");
    assert_eq!(
        start.status(),
        StatusCode::FOUND,
        "start should redirect to Zoom"
    );
    let to_zoom = location(&start);
    let parsed = url::Url::parse(&to_zoom).expect("authorize URL");
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
    let zoom = http.get(&to_zoom).send().await.expect("zoom authorize");
    assert_eq!(
        zoom.status(),
        StatusCode::FOUND,
        "zoom-sim (consent=approve) redirects back"
    );
    let back = location(&zoom);
    assert!(
        back.starts_with(&get("redirect_uri").unwrap_or_default()),
        "{back}"
    );
    back
}

async fn full_flow(env: &Env, name: &str) -> (StatusCode, String) {
    let start = authorize_url(env, name).await;
    let callback = through_zoom(&start).await;
    let response = http().get(&callback).send().await.expect("callback");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

async fn token_secret(env: &Env, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(env.client.clone(), &env.ns)
        .get_opt(&format!("{name}-zoom-token"))
        .await
        .expect("get secret")
}

fn key(secret: &Secret, k: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(k)
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

async fn sim_stats(sim: &ZoomSim) -> Value {
    http()
        .get(format!("{}/sim/stats", sim.url))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json")
}

async fn sim_post(sim: &ZoomSim, path: &str, body: Value) {
    let r = http()
        .post(format!("{}{path}", sim.url))
        .json(&body)
        .send()
        .await
        .expect("sim admin");
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

async fn annotate_refresh(env: &Env, name: &str, value: &str) {
    let api: Api<ZoomConnection> = Api::namespaced(env.client.clone(), &env.ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"zoom-operator.io/refresh-requested": value}}}),
        ),
    )
    .await
    .expect("annotate");
}

#[tokio::test]
async fn browser_flow_writes_the_token_secret_and_status() {
    let env = setup("flow", &["--consent=approve", &sim_app("")], &[]).await;
    apply_zc(
        &env.client,
        &env.ns,
        &oauth_zc("bot", "  tokenSecretTemplate: {labels: {team: a}}\n"),
    )
    .await;
    wait_condition(
        &env.client,
        &env.ns,
        "bot",
        "Authorized",
        "False",
        "AwaitingAuthorization",
    )
    .await;

    let (status, page) = full_flow(&env, "bot").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("Connected to Zoom") && page.contains("owner@example.com"),
        "{page}"
    );

    let zc = wait_condition(&env.client, &env.ns, "bot", "Ready", "True", "Ready").await;
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

    let secret = token_secret(&env, "bot").await.expect("token Secret");
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
            key(&secret, k).is_some_and(|v| !v.is_empty()),
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
        .bearer_auth(key(&secret, "access_token").expect("token"))
        .send()
        .await
        .expect("users/me");
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(sim_stats(&env.sim).await["authorization_code_grants"], 1);
}

#[tokio::test]
async fn tickets_and_states_are_checked() {
    let env = setup("tickets", &["--consent=approve", &sim_app("")], &[]).await;
    apply_zc(&env.client, &env.ns, &oauth_zc("bot", "")).await;
    let start = authorize_url(&env, "bot").await;
    let http = http();

    // No ticket, a tampered ticket, a ticket for another connection: 403, no redirect.
    let base = start.split('?').next().expect("base").to_owned();
    let r = http.get(&base).send().await.expect("start");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let tampered = format!("{start}x");
    assert_eq!(
        http.get(&tampered).send().await.expect("start").status(),
        StatusCode::FORBIDDEN
    );
    let other = start.replace("/bot?", "/other?");
    assert_eq!(
        http.get(&other).send().await.expect("start").status(),
        StatusCode::FORBIDDEN
    );

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
    assert_eq!(
        http.get(&callback).send().await.expect("cb").status(),
        StatusCode::OK
    );
    let replay = http.get(&callback).send().await.expect("replay");
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(replay
        .text()
        .await
        .unwrap_or_default()
        .contains("already used"));

    // An expired state (signed with the real key, 11 minutes old) is refused.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let key_secret = secrets
        .get("zoom-operator-signing-key")
        .await
        .expect("signing key Secret");
    let key =
        zoom_operator::signing::SigningKey::new(key_secret.data.expect("data")["key"].0.clone());
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
    let r = http
        .get(format!("{redirect}?code=abc&state={old_state}"))
        .send()
        .await
        .expect("expired");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap_or_default().contains("expired"));
}

#[tokio::test]
async fn access_denied_is_reported() {
    let env = setup("denied", &["--consent=deny", &sim_app("")], &[]).await;
    apply_zc(&env.client, &env.ns, &oauth_zc("bot", "")).await;
    let (status, page) = full_flow(&env, "bot").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("denied"), "{page}");
    let api: Api<ZoomConnection> = Api::namespaced(env.client.clone(), &env.ns);
    eventually(
        "the denial in the Authorized condition",
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let zc = api.get("bot").await.map_err(|e| e.to_string())?;
                let c = zc.condition("Authorized").ok_or("no condition")?;
                if c.status == "False" && c.message.contains("access_denied") {
                    Ok(())
                } else {
                    Err(format!("{}/{}: {}", c.status, c.reason, c.message))
                }
            }
        },
    )
    .await;
}

#[tokio::test]
async fn refresh_rotates_without_reuse_and_never_stores_an_expired_token() {
    let env = setup(
        "rotate",
        &["--consent=approve", "--token-lifetime=30", &sim_app("")],
        &[],
    )
    .await;
    apply_zc(
        &env.client,
        &env.ns,
        &oauth_zc("bot", "  refreshBefore: 10s\n"),
    )
    .await;
    let (status, _) = full_flow(&env, "bot").await;
    assert_eq!(status, StatusCode::OK);

    let mut refresh_tokens = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while refresh_tokens.len() < 4 && tokio::time::Instant::now() < deadline {
        if let Some(secret) = token_secret(&env, "bot").await {
            let expires: jiff::Timestamp = key(&secret, "expires_at")
                .expect("expires_at")
                .parse()
                .expect("rfc3339");
            assert!(
                expires > jiff::Timestamp::now(),
                "the Secret holds an expired token (expired {expires})"
            );
            refresh_tokens.insert(key(&secret, "refresh_token").expect("refresh_token"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        refresh_tokens.len() >= 4,
        "expected 3 rotations in 2 minutes, saw {} refresh tokens",
        refresh_tokens.len()
    );
    let stats = sim_stats(&env.sim).await;
    assert!(stats["refreshes"].as_u64() >= Some(3), "{stats}");
    assert_eq!(
        stats["reused_refresh_tokens"], 0,
        "a refresh token was sent twice: {stats}"
    );
    wait_condition(&env.client, &env.ns, "bot", "TokenReady", "True", "Fresh").await;
}

#[tokio::test]
async fn rejected_refresh_token_asks_for_reauthorization() {
    let env = setup("rejected", &["--consent=approve", &sim_app("")], &[]).await;
    apply_zc(&env.client, &env.ns, &oauth_zc("bot", "")).await;
    assert_eq!(full_flow(&env, "bot").await.0, StatusCode::OK);
    wait_condition(&env.client, &env.ns, "bot", "Ready", "True", "Ready").await;

    // Someone revokes the grant at Zoom; the next refresh gets invalid_grant.
    let secret = token_secret(&env, "bot").await.expect("secret");
    let r = http()
        .post(format!("{}/oauth/revoke", env.sim.url))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("token", key(&secret, "refresh_token").expect("rt"))])
        .send()
        .await
        .expect("revoke");
    assert!(r.status().is_success());
    annotate_refresh(&env, "bot", "1").await;
    let zc = wait_condition(
        &env.client,
        &env.ns,
        "bot",
        "Authorized",
        "False",
        "RefreshTokenRejected",
    )
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
    wait_condition(&env.client, &env.ns, "bot", "Ready", "True", "Ready").await;
}

#[tokio::test]
async fn zoom_outage_is_reported_and_recovers() {
    let env = setup("outage", &["--consent=approve", &sim_app("")], &[]).await;
    apply_zc(&env.client, &env.ns, &oauth_zc("bot", "")).await;
    assert_eq!(full_flow(&env, "bot").await.0, StatusCode::OK);
    wait_condition(&env.client, &env.ns, "bot", "Ready", "True", "Ready").await;
    let before = token_secret(&env, "bot").await.expect("secret");

    sim_post(
        &env.sim,
        "/sim/faults",
        json!({"path": "/oauth/token", "status": 503, "count": 3}),
    )
    .await;
    sim_post(
        &env.sim,
        "/sim/faults",
        json!({"path": "/oauth/token", "status": 429, "count": 1, "retry_after": "3"}),
    )
    .await;
    annotate_refresh(&env, "bot", "outage").await;
    let zc = wait_condition(
        &env.client,
        &env.ns,
        "bot",
        "TokenReady",
        "False",
        "RefreshFailing",
    )
    .await;
    let message = zc.condition("TokenReady").expect("c").message.clone();
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

    let zc = wait_condition(&env.client, &env.ns, "bot", "TokenReady", "True", "Fresh").await;
    assert_eq!(zc.status.and_then(|s| s.failed_refresh_attempts), Some(0));
    let after = token_secret(&env, "bot").await.expect("secret");
    assert_ne!(
        key(&before, "refresh_token"),
        key(&after, "refresh_token"),
        "the refresh eventually happened"
    );
    assert_eq!(sim_stats(&env.sim).await["reused_refresh_tokens"], 0);
}

#[tokio::test]
async fn server_to_server_mints_tokens_without_a_browser() {
    let client = client().await;
    let ns = namespace(&client, "s2s").await;
    let (_sim, _op) = start_s2s(&client, &ns, "acc-9", &["--token-lifetime=20"], &[]).await;
    apply_zc(&client, &ns, "apiVersion: zoom-operator.io/v1alpha1\nkind: ZoomConnection\nmetadata: {name: bot}\nspec: {authType: ServerToServer, credentialsRef: {name: zoom-app}, refreshBefore: 5s}\n").await;
    let zc = wait_condition(&client, &ns, "bot", "Ready", "True", "Ready").await;
    assert!(
        zc.status
            .as_ref()
            .and_then(|s| s.authorize_url.clone())
            .is_none(),
        "no browser step"
    );
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), &ns);
    let account = eventually(
        "status.account from /v2/users/me",
        Duration::from_secs(30),
        || {
            let api = api.clone();
            async move {
                let zc = api.get("bot").await.map_err(|e| e.to_string())?;
                zc.status
                    .and_then(|s| s.account)
                    .ok_or_else(|| "no account yet".to_owned())
            }
        },
    )
    .await;
    assert_eq!(account.account_id.as_deref(), Some("acc-9"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let first = secrets.get("bot-zoom-token").await.expect("secret");
    assert!(key(&first, "access_token").is_some());
    assert!(
        key(&first, "refresh_token").is_none(),
        "Server-to-Server has no refresh token"
    );
    // Minted again before expiry.
    eventually(
        "a second Server-to-Server token",
        Duration::from_secs(60),
        || {
            let secrets = secrets.clone();
            let first = key(&first, "access_token");
            async move {
                let s = secrets
                    .get("bot-zoom-token")
                    .await
                    .map_err(|e| e.to_string())?;
                if key(&s, "access_token") != first {
                    Ok(())
                } else {
                    Err("same token".to_owned())
                }
            }
        },
    )
    .await;

    // Wrong account ID: AccountCredentialsRejected.
    put_secret(
        &client,
        &ns,
        "bad-app",
        &[
            ("clientId", "s2s-id"),
            ("clientSecret", "s2s-secret"),
            ("accountId", "not-mine"),
        ],
    )
    .await;
    apply_zc(&client, &ns, "apiVersion: zoom-operator.io/v1alpha1\nkind: ZoomConnection\nmetadata: {name: wrong}\nspec: {authType: ServerToServer, credentialsRef: {name: bad-app}}\n").await;
    wait_condition(
        &client,
        &ns,
        "wrong",
        "Authorized",
        "False",
        "AccountCredentialsRejected",
    )
    .await;

    // Wrong client secret: InvalidClientCredentials; fixing the Secret recovers.
    put_secret(
        &client,
        &ns,
        "bad-client",
        &[
            ("clientId", "s2s-id"),
            ("clientSecret", "nope"),
            ("accountId", "acc-9"),
        ],
    )
    .await;
    apply_zc(&client, &ns, "apiVersion: zoom-operator.io/v1alpha1\nkind: ZoomConnection\nmetadata: {name: badclient}\nspec: {authType: ServerToServer, credentialsRef: {name: bad-client}}\n").await;
    wait_condition(
        &client,
        &ns,
        "badclient",
        "CredentialsReady",
        "False",
        "InvalidClientCredentials",
    )
    .await;
    put_secret(
        &client,
        &ns,
        "bad-client",
        &[
            ("clientId", "s2s-id"),
            ("clientSecret", "s2s-secret"),
            ("accountId", "acc-9"),
        ],
    )
    .await;
    wait_condition(&client, &ns, "badclient", "Ready", "True", "Ready").await;
}

#[tokio::test]
async fn default_app_is_used_when_configured() {
    let client = client().await;
    let ns = namespace(&client, "default-app").await;
    let sim = start_zoom_sim(&["--consent=approve", &sim_app("")]);
    put_secret(
        &client,
        &ns,
        "platform-zoom-app",
        &[("clientId", CLIENT_ID), ("clientSecret", CLIENT_SECRET)],
    )
    .await;
    let zc_yaml = "apiVersion: zoom-operator.io/v1alpha1\nkind: ZoomConnection\nmetadata: {name: bot}\nspec: {authType: DefaultOAuth}\n";

    // Without --default-app-secret: a clear condition.
    {
        let _op = start_operator(
            &ns,
            &[
                &format!("--zoom-oauth-url={}", sim.url),
                &format!("--zoom-api-url={}", sim.url),
            ],
        );
        apply_zc(&client, &ns, zc_yaml).await;
        let zc = wait_condition(
            &client,
            &ns,
            "bot",
            "CredentialsReady",
            "False",
            "DefaultAppNotConfigured",
        )
        .await;
        assert!(zc
            .condition("CredentialsReady")
            .expect("c")
            .message
            .contains("--default-app-secret"));
    }
    // With it: the tenant only authorizes.
    let op = start_operator(
        &ns,
        &[
            &format!("--zoom-oauth-url={}", sim.url),
            &format!("--zoom-api-url={}", sim.url),
            &format!("--default-app-secret={ns}/platform-zoom-app"),
        ],
    );
    let env = Env {
        client: client.clone(),
        ns: ns.clone(),
        sim,
        op,
    };
    wait_condition(&client, &ns, "bot", "CredentialsReady", "True", "Valid").await;
    assert_eq!(full_flow(&env, "bot").await.0, StatusCode::OK);
    wait_condition(&client, &ns, "bot", "Ready", "True", "Ready").await;
}

#[tokio::test]
async fn revoke_on_delete_revokes_or_gives_up_with_a_warning() {
    let env = setup("revoke", &["--consent=approve", &sim_app("")], &[]).await;
    apply_zc(
        &env.client,
        &env.ns,
        &oauth_zc("bot", "  revokeOnDelete: true\n"),
    )
    .await;
    apply_zc(
        &env.client,
        &env.ns,
        &oauth_zc("stuck", "  revokeOnDelete: true\n"),
    )
    .await;
    assert_eq!(full_flow(&env, "bot").await.0, StatusCode::OK);
    assert_eq!(full_flow(&env, "stuck").await.0, StatusCode::OK);
    wait_condition(&env.client, &env.ns, "bot", "Ready", "True", "Ready").await;
    wait_condition(&env.client, &env.ns, "stuck", "Ready", "True", "Ready").await;
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
    assert_eq!(sim_stats(&env.sim).await["revokes"], 1);

    // Zoom down: bounded retries, then the finalizer goes with a Warning Event.
    sim_post(
        &env.sim,
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
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.client.clone(), &env.ns);
    let list = events.list(&Default::default()).await.expect("events");
    assert!(
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("RevokeFailed")
                && e.type_.as_deref() == Some("Warning")),
        "a RevokeFailed warning"
    );
}

#[tokio::test]
async fn authorize_command_prints_the_url_and_waits() {
    let env = setup("cli", &["--consent=approve", &sim_app("")], &[]).await;
    apply_zc(&env.client, &env.ns, &oauth_zc("bot", "")).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zoom-operator"))
        .args(["authorize", "-n", &env.ns, "bot", "--timeout=90s"])
        .env("KUBECONFIG", &control_plane().kubeconfig)
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
    assert_eq!(
        http().get(&callback).send().await.expect("cb").status(),
        StatusCode::OK
    );
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("authorize exits once authorized")
        .expect("wait");
    assert!(status.success());

    // A connection that never gets authorized: non-zero exit with a clear message.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_zoom-operator"))
        .args(["authorize", "-n", &env.ns, "missing", "--timeout=2s"])
        .env("KUBECONFIG", &control_plane().kubeconfig)
        .output()
        .await
        .expect("authorize");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[tokio::test]
async fn tokens_never_leak_into_logs_events_or_status() {
    let env = setup(
        "leaks",
        &["--consent=approve", "--token-lifetime=30", &sim_app("")],
        &[],
    )
    .await;
    apply_zc(
        &env.client,
        &env.ns,
        &oauth_zc("bot", "  refreshBefore: 10s\n"),
    )
    .await;
    assert_eq!(full_flow(&env, "bot").await.0, StatusCode::OK);
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    while tokio::time::Instant::now() < deadline {
        if let Some(s) = token_secret(&env, "bot").await {
            seen.extend(key(&s, "access_token"));
            seen.extend(key(&s, "refresh_token"));
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
    let events =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(env.client.clone(), &env.ns)
            .list(&Default::default())
            .await
            .expect("events");
    let events = serde_json::to_string(&events.items).expect("json");
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

async fn reconciliations(op: &Operator) -> u64 {
    let body = http()
        .get(format!("{}/metrics", op.metrics))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    body.lines()
        .filter(|l| l.starts_with("zoom_operator_reconciliations_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_dead_grant_with_an_expired_token_does_not_spin_the_reconciler() {
    let env = setup(
        "idle",
        &["--consent=approve", "--token-lifetime=6", &sim_app("")],
        &[],
    )
    .await;
    apply_zc(
        &env.client,
        &env.ns,
        &oauth_zc("bot", "  refreshBefore: 1s\n"),
    )
    .await;
    assert_eq!(full_flow(&env, "bot").await.0, StatusCode::OK);
    wait_condition(&env.client, &env.ns, "bot", "Ready", "True", "Ready").await;
    // Kill the grant at Zoom: the next refresh is rejected and the access token runs out.
    let secret = token_secret(&env, "bot").await.expect("secret");
    http()
        .post(format!("{}/oauth/revoke", env.sim.url))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("token", key(&secret, "refresh_token").expect("rt"))])
        .send()
        .await
        .expect("revoke");
    wait_condition(
        &env.client,
        &env.ns,
        "bot",
        "Authorized",
        "False",
        "RefreshTokenRejected",
    )
    .await;
    wait_condition(
        &env.client,
        &env.ns,
        "bot",
        "TokenReady",
        "False",
        "Expired",
    )
    .await;
    let before = reconciliations(&env.op).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = reconciliations(&env.op).await - before;
    assert!(
        during <= 3,
        "{during} reconciles in 6 idle seconds: the loop spins"
    );
}

#[tokio::test]
async fn one_zoom_user_authorizing_one_app_for_two_connections_is_said_in_both() {
    // Zoom's rule, one live grant per user and app (zoom-sim's default keeps them all).
    let env = setup(
        "shared",
        &["--consent=approve", "--grant-tolerance=1", &sim_app("")],
        &[],
    )
    .await;
    for name in ["first", "second"] {
        apply_zc(&env.client, &env.ns, &oauth_zc(name, "")).await;
    }
    // The same Zoom user (zoom-sim's user-1) authorizes both, "first" first.
    for name in ["first", "second"] {
        assert_eq!(full_flow(&env, name).await.0, StatusCode::OK);
        wait_condition(&env.client, &env.ns, name, "Ready", "True", "Ready").await;
    }
    let api: Api<ZoomConnection> = Api::namespaced(env.client.clone(), &env.ns);
    for (name, other) in [("first", "second"), ("second", "first")] {
        let other = format!("{}/{other}", env.ns);
        eventually(
            "the shared grant in Authorized",
            Duration::from_secs(30),
            || {
                let api = api.clone();
                let other = other.clone();
                async move {
                    let zc = api.get(name).await.map_err(|e| e.to_string())?;
                    let message = zc
                        .condition("Authorized")
                        .map(|c| c.message.clone())
                        .unwrap_or_default();
                    if message.contains(&other) && message.contains("one grant per user and app") {
                        Ok(())
                    } else {
                        Err(message)
                    }
                }
            },
        )
        .await;
    }

    // Zoom dropped the first grant: its next refresh is refused, and the message names the
    // newer authorization as the likely cause.
    annotate_refresh(&env, "first", "1").await;
    let zc = wait_condition(
        &env.client,
        &env.ns,
        "first",
        "Authorized",
        "False",
        "RefreshTokenRejected",
    )
    .await;
    let message = &zc.condition("Authorized").expect("Authorized").message;
    assert!(
        message.contains("likely cause") && message.contains(&format!("{}/second", env.ns)),
        "{message}"
    );
    wait_condition(&env.client, &env.ns, "second", "Ready", "True", "Ready").await;

    // revokeOnDelete uninstalls the app for that Zoom user: a Warning names who else loses.
    apply_zc(
        &env.client,
        &env.ns,
        &oauth_zc("second", "  revokeOnDelete: true\n"),
    )
    .await;
    eventually("the revoke finalizer", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let zc = api.get("second").await.map_err(|e| e.to_string())?;
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
        }
    })
    .await;
    api.delete("second", &DeleteParams::default())
        .await
        .expect("delete");
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.client.clone(), &env.ns);
    let first = format!("{}/first", env.ns);
    eventually(
        "a SharedGrantRevoked warning",
        Duration::from_secs(30),
        || {
            let events = events.clone();
            let first = first.clone();
            async move {
                let list = events
                    .list(&Default::default())
                    .await
                    .map_err(|e| e.to_string())?;
                list.items
                    .iter()
                    .find(|e| e.reason.as_deref() == Some("SharedGrantRevoked"))
                    .and_then(|e| e.note.clone())
                    .filter(|note| note.contains(&first))
                    .map(|_| ())
                    .ok_or_else(|| "no warning yet".to_owned())
            }
        },
    )
    .await;
}
