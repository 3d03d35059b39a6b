//! Several replicas: one leader renews, every replica serves OAuth, and a successor takes over
//! when the leader stops. Also the admin endpoints a platform team scrapes and probes.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use reqwest::StatusCode;

async fn holder(client: &kube::Client, ns: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt("zoom-operator-leader")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn replicas_share_flows_and_fail_over() {
    let client = client().await;
    let ns = namespace(&client, "ha").await;
    let sim = start_zoom_sim(&[
        "--consent=approve",
        "--token-lifetime=20",
        "--app=kind=oauth,client_id=ha-id,client_secret=ha-secret,account_id=acc-1",
    ]);
    put_secret(
        &client,
        &ns,
        "zoom-app",
        &[("clientId", "ha-id"), ("clientSecret", "ha-secret")],
    )
    .await;
    let zoom = [
        format!("--zoom-oauth-url={}", sim.url),
        format!("--zoom-api-url={}", sim.url),
    ];
    // Both replicas advertise replica A's address, as they would one Ingress.
    let mut a = start_operator(&ns, &[&zoom[0], &zoom[1]]);
    let public = format!("--public-url={}", a.public_url);
    let mut b = start_operator(&ns, &[&zoom[0], &zoom[1], &public]);
    apply_zc(
        &client,
        &ns,
        "apiVersion: zoom-operator.io/v1alpha1\nkind: ZoomConnection\nmetadata: {name: bot}\nspec: {authType: PrivateOAuth, credentialsRef: {name: zoom-app}, refreshBefore: 5s}\n",
    )
    .await;
    let zc = wait_condition(
        &client,
        &ns,
        "bot",
        "Authorized",
        "False",
        "AwaitingAuthorization",
    )
    .await;

    // Start the flow on replica A, finish it on replica B: no per-process memory is needed.
    let start = zc
        .status
        .and_then(|s| s.authorize_url)
        .expect("authorizeURL");
    let to_zoom = http().get(&start).send().await.expect("start");
    assert_eq!(to_zoom.status(), StatusCode::FOUND);
    let zoom_url = to_zoom.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let back = http().get(&zoom_url).send().await.expect("zoom");
    let callback = back.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let on_b = callback.replace(&a.public_url, &b.public_url);
    assert_ne!(on_b, callback);
    let done = http().get(&on_b).send().await.expect("callback on B");
    assert_eq!(done.status(), StatusCode::OK);
    wait_condition(&client, &ns, "bot", "Ready", "True", "Ready").await;

    // Exactly one leader; stop it and the other keeps the tokens fresh.
    let leader = holder(&client, &ns).await.expect("a leader");
    let a_pid = a.process.child.id().to_string();
    let (stopped, survivor) = if leader.ends_with(&a_pid) {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    assert!(stopped.process.terminate().is_some_and(|s| s.success()));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let before = secrets
        .get("bot-zoom-token")
        .await
        .expect("secret")
        .data
        .expect("data")["refresh_token"]
        .clone();
    eventually(
        "the surviving replica to lead",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            let ns = ns.clone();
            let pid = survivor.process.child.id().to_string();
            async move {
                match holder(&client, &ns).await {
                    Some(h) if h.ends_with(&pid) => Ok(()),
                    other => Err(format!("holder {other:?}")),
                }
            }
        },
    )
    .await;
    eventually(
        "a refresh by the new leader",
        Duration::from_secs(60),
        || {
            let secrets = secrets.clone();
            let before = before.clone();
            async move {
                let s = secrets
                    .get("bot-zoom-token")
                    .await
                    .map_err(|e| e.to_string())?;
                let now = s.data.and_then(|d| d.get("refresh_token").cloned());
                if now.as_ref() != Some(&before) {
                    Ok(())
                } else {
                    Err("not refreshed yet".to_owned())
                }
            }
        },
    )
    .await;
    let stats: serde_json::Value = http()
        .get(format!("{}/sim/stats", sim.url))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(
        stats["reused_refresh_tokens"], 0,
        "two replicas must never both refresh: {stats}"
    );

    // The survivor's admin endpoints: ready, and the expiry gauge for the connection.
    let ready = http()
        .get(format!("{}/readyz", survivor.metrics))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    let metrics = eventually("the expiry metric", Duration::from_secs(30), || {
        let url = format!("{}/metrics", survivor.metrics);
        async move {
            let body = http()
                .get(url)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if body.contains("zoom_operator_token_expiry_timestamp_seconds{") {
                Ok(body)
            } else {
                Err(body)
            }
        }
    })
    .await;
    assert!(
        metrics.contains(&format!("namespace=\"{ns}\"")) && metrics.contains("name=\"bot\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("zoom_operator_token_requests_total{"),
        "{metrics}"
    );
    assert!(!metrics.contains("ha-secret"));
}
