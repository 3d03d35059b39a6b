//! The operator against each way Zoom has answered a dead refresh token (zoom-sim's
//! `refresh_rejection` dialects), and against the answers that are the client's or the app's
//! fault: every dead-token form is `Authorized=False/RefreshTokenRejected` with the credentials
//! still `Valid`; only a refused client is `CredentialsReady=False/InvalidClientCredentials`.
//! One operator and one zoom-sim; one app and one connection per case, since a forced refresh
//! is honoured at once only the first time per connection.

mod common;

use common::*;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
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
fn app_flag(case: &str) -> String {
    format!(
        "--app=kind=oauth,client_id=cid-{case},client_secret=secret-{case},account_id=acc-{case},user_id=user-{case},email={case}@example.com"
    )
}

fn connection(case: &str) -> String {
    format!(
        "apiVersion: zoom-operator.io/v1alpha1\nkind: ZoomConnection\nmetadata: {{name: {}}}\nspec:\n  authType: PrivateOAuth\n  credentialsRef: {{name: {}}}\n",
        name(case),
        secret_name(case)
    )
}

fn name(case: &str) -> String {
    format!("bot-{}", case.replace('_', "-"))
}

fn secret_name(case: &str) -> String {
    format!("app-{}", case.replace('_', "-"))
}

async fn sim_post(sim: &ZoomSim, path: &str, body: Value) -> Value {
    let r = http()
        .post(format!("{}{path}", sim.url))
        .json(&body)
        .send()
        .await
        .expect("sim admin");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.expect("json")
}

async fn force_refresh(client: &kube::Client, ns: &str, name: &str) {
    Api::<ZoomConnection>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"zoom-operator.io/refresh-requested": "1"}}}),
            ),
        )
        .await
        .expect("annotate");
}

/// Puts the case's credentials Secret and connection, and authorizes it through zoom-sim.
async fn authorized(client: &kube::Client, ns: &str, case: &str) {
    put_secret(
        client,
        ns,
        &secret_name(case),
        &[
            ("clientId", &format!("cid-{case}")),
            ("clientSecret", &format!("secret-{case}")),
        ],
    )
    .await;
    apply_zc(client, ns, &connection(case)).await;
    browser_authorize(client, ns, &name(case)).await;
}

#[tokio::test]
async fn every_dead_refresh_token_dialect_is_refresh_token_rejected() {
    let client = client().await;
    let ns = namespace(&client, "dialects").await;
    let mut cases: Vec<&str> = DIALECTS.to_vec();
    cases.extend(["wrong_secret", "disabled"]);
    let mut sim_args = vec!["--consent=approve".to_owned()];
    sim_args.extend(cases.iter().map(|c| app_flag(c)));
    let sim_args: Vec<&str> = sim_args.iter().map(String::as_str).collect();
    let sim = start_zoom_sim(&sim_args);
    let oauth = format!("--zoom-oauth-url={}", sim.url);
    let api = format!("--zoom-api-url={}", sim.url);
    let _op = start_operator(&ns, &[&oauth, &api]);

    for dialect in DIALECTS {
        let settings = sim_post(&sim, "/sim/config", json!({"refresh_rejection": dialect})).await;
        assert_eq!(settings["refresh_rejection"], *dialect);
        authorized(&client, &ns, dialect).await;
        let expired = sim_post(
            &sim,
            "/sim/tokens/expire-refresh",
            json!({"client_id": format!("cid-{dialect}")}),
        )
        .await;
        assert_eq!(expired["expired"], 1, "{dialect}: {expired}");
        force_refresh(&client, &ns, &name(dialect)).await;
        let zc = wait_condition(
            &client,
            &ns,
            &name(dialect),
            "Authorized",
            "False",
            "RefreshTokenRejected",
        )
        .await;
        let credentials = zc.condition("CredentialsReady").expect("CredentialsReady");
        assert_eq!(
            (credentials.status.as_str(), credentials.reason.as_str()),
            ("True", "Valid"),
            "{dialect}: a dead refresh token is not a credentials problem: {}",
            credentials.message
        );
        let stats = sim_stats(&sim).await;
        assert!(
            stats["failed_token_requests"].as_u64() >= Some(1),
            "{dialect}: the refresh reached zoom-sim: {stats}"
        );
    }

    // The client's fault: a wrong secret after authorization.
    let case = "wrong_secret";
    authorized(&client, &ns, case).await;
    put_secret(
        &client,
        &ns,
        &secret_name(case),
        &[
            ("clientId", &format!("cid-{case}")),
            ("clientSecret", "not-the-secret"),
        ],
    )
    .await;
    force_refresh(&client, &ns, &name(case)).await;
    let zc = wait_condition(
        &client,
        &ns,
        &name(case),
        "CredentialsReady",
        "False",
        "InvalidClientCredentials",
    )
    .await;
    assert_ne!(
        zc.condition("Authorized").map(|c| c.reason.as_str()),
        Some("RefreshTokenRejected"),
        "the grant is not blamed for the client's fault"
    );

    // The app's fault: Zoom disabled it (4717).
    let case = "disabled";
    authorized(&client, &ns, case).await;
    sim_post(&sim, &format!("/sim/apps/cid-{case}/disable"), json!({})).await;
    force_refresh(&client, &ns, &name(case)).await;
    let zc = wait_condition(
        &client,
        &ns,
        &name(case),
        "CredentialsReady",
        "False",
        "InvalidClientCredentials",
    )
    .await;
    let message = &zc.condition("CredentialsReady").expect("condition").message;
    assert!(message.contains("disabled"), "{message}");
}
