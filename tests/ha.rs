//! Several replicas: one leader renews, every replica serves OAuth, and a successor takes over
//! when the leader stops. Also the admin endpoints a platform team scrapes and probes.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use reqwest::StatusCode;

#[tokio::test]
async fn replicas_share_flows_and_fail_over() {
    // Both replicas advertise replica A's address, as they would one Ingress.
    let mut env = Env::new("ha")
        .sim(&["--consent=approve", "--token-lifetime=20"])
        .app(ZoomApp::oauth("ha-id", "ha-secret").account("acc-1"))
        .start()
        .await;
    let mut b = env.replica(&[]);
    env.apply(&Zc::private_oauth("bot").refresh_before("5s"))
        .await;
    let zc = env
        .wait("bot", "Authorized", "False", "AwaitingAuthorization")
        .await;

    // Start the flow on replica A, finish it on replica B: no per-process memory is needed.
    let start = zc
        .status
        .and_then(|s| s.authorize_url)
        .expect("authorizeURL");
    let callback = web::through_zoom(&start).await.callback;
    let on_b = callback.replace(&env.op.public_url, &b.public_url);
    assert_ne!(on_b, callback);
    assert_eq!(web::open(&on_b).await.0, StatusCode::OK, "callback on B");
    env.wait_ready("bot").await;

    // Exactly one leader; stop it and the other keeps the tokens fresh.
    let (client, ns) = (&env.client, &env.ns);
    let leader = lease_holder(client, ns).await.expect("a leader");
    let a_pid = env.op.process.child.id().to_string();
    let (stopped, survivor) = if leader.ends_with(&a_pid) {
        (&mut env.op, &b)
    } else {
        (&mut b, &env.op)
    };
    assert!(stopped.process.terminate().is_some_and(|s| s.success()));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let before = secrets
        .get("bot-zoom-token")
        .await
        .expect("secret")
        .data
        .expect("data")["refresh_token"]
        .clone();
    wait_leading(
        client,
        ns,
        survivor,
        "the surviving replica to lead",
        Duration::from_secs(30),
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
    let stats = env.sim.stats().await;
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
