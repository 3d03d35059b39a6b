//! The operator against each way Zoom has answered a dead refresh token (zoom-sim's
//! `refresh_rejection` dialects), and against the answers that are the client's or the app's
//! fault: every dead-token form is `Authorized=False/RefreshTokenRejected` with the credentials
//! still `Valid`; only a refused client is `CredentialsReady=False/InvalidClientCredentials`.
//! One operator and one zoom-sim; one app and one connection per case, since a forced refresh
//! is honoured at once only the first time per connection.

mod common;

use common::*;
use serde_json::json;
use zoom_operator::api::ZoomConnection;

const DIALECTS: &[&str] = &[
    "invalid_grant_400",
    "invalid_grant_401",
    "invalid_request_400",
    "no_reason_400",
    "no_reason_401",
];

/// The zoom-sim app of one case: its own client and its own Zoom user, so that no two
/// connections share a grant.
fn app(case: &str) -> ZoomApp {
    ZoomApp::oauth(&format!("cid-{case}"), &format!("secret-{case}"))
        .account(&format!("acc-{case}"))
        .user(&format!("user-{case}"), &format!("{case}@example.com"))
}

fn name(case: &str) -> String {
    format!("bot-{}", case.replace('_', "-"))
}

fn secret_name(case: &str) -> String {
    format!("app-{}", case.replace('_', "-"))
}

/// Asks for a refresh of the case's connection, which must fail: waits for its `type_`
/// condition to be False/`reason`.
async fn refresh_fails(env: &Env, case: &str, type_: &str, reason: &str) -> ZoomConnection {
    request_refresh(&env.client, &env.ns, &name(case), "1").await;
    env.wait(&name(case), type_, "False", reason).await
}

/// Puts the case's credentials Secret and connection, and authorizes it through zoom-sim.
async fn authorized(env: &Env, case: &str) {
    app(case)
        .secret(&secret_name(case))
        .put(&env.client, &env.ns)
        .await;
    env.apply(&Zc::private_oauth(&name(case)).credentials(&secret_name(case)))
        .await;
    env.authorize(&name(case)).await;
}

#[tokio::test]
async fn every_dead_refresh_token_dialect_is_refresh_token_rejected() {
    let mut cases: Vec<&str> = DIALECTS.to_vec();
    cases.extend(["wrong_secret", "disabled"]);
    let flags: Vec<String> = cases.iter().map(|c| app(c).sim_flag()).collect();
    let env = Env::new("dialects")
        .sim(&["--consent=approve"])
        .sim(&strs(&flags))
        .start()
        .await;
    let (client, ns, sim) = (&env.client, &env.ns, &env.sim);

    for dialect in DIALECTS {
        let settings = sim
            .admin("/sim/config", json!({"refresh_rejection": dialect}))
            .await;
        assert_eq!(settings["refresh_rejection"], *dialect);
        authorized(&env, dialect).await;
        let expired = sim
            .admin(
                "/sim/tokens/expire-refresh",
                json!({"client_id": format!("cid-{dialect}")}),
            )
            .await;
        assert_eq!(expired["expired"], 1, "{dialect}: {expired}");
        let zc = refresh_fails(&env, dialect, "Authorized", "RefreshTokenRejected").await;
        let credentials = zc.condition("CredentialsReady").expect("CredentialsReady");
        assert_eq!(
            (credentials.status.as_str(), credentials.reason.as_str()),
            ("True", "Valid"),
            "{dialect}: a dead refresh token is not a credentials problem: {}",
            credentials.message
        );
        let stats = sim.stats().await;
        assert!(
            stats["failed_token_requests"].as_u64() >= Some(1),
            "{dialect}: the refresh reached zoom-sim: {stats}"
        );
    }

    // The client's fault: a wrong secret after authorization.
    let case = "wrong_secret";
    authorized(&env, case).await;
    let mut wrong = app(case);
    wrong.client_secret = "not-the-secret".to_owned();
    wrong.secret(&secret_name(case)).put(client, ns).await;
    let zc = refresh_fails(&env, case, "CredentialsReady", "InvalidClientCredentials").await;
    assert_ne!(
        zc.condition("Authorized").map(|c| c.reason.as_str()),
        Some("RefreshTokenRejected"),
        "the grant is not blamed for the client's fault"
    );

    // The app's fault: Zoom disabled it (4717).
    let case = "disabled";
    authorized(&env, case).await;
    sim.admin(&format!("/sim/apps/cid-{case}/disable"), json!({}))
        .await;
    let zc = refresh_fails(&env, case, "CredentialsReady", "InvalidClientCredentials").await;
    let message = condition_message(&zc, "CredentialsReady");
    assert!(message.contains("disabled"), "{message}");
}
