//! The foundation against a real API server: CRD validation, printer columns, public URLs from
//! flags and Ingresses, credentials conditions, token Secret ownership and deletion.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use zoom_operator::api::ZoomConnection;

async fn apply_ingress(client: &kube::Client, ns: &str, spec: serde_json::Value) {
    let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
    let ing = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "zoom"},
        "spec": spec,
    });
    api.patch(
        "zoom",
        &PatchParams::apply("test").force(),
        &Patch::Apply(&ing),
    )
    .await
    .expect("apply ingress");
}

/// The OAuth app `id`/`s` in Secret `zoom-app`, and an operator with `args`.
async fn oauth_env(prefix: &str, args: &[&str]) -> (kube::Client, String, Operator) {
    let client = client().await;
    let ns = namespace(&client, prefix).await;
    put_secret(&client, &ns, "zoom-app", APP_KEYS).await;
    let args: Vec<String> = args.iter().map(|a| a.replace("{ns}", &ns)).collect();
    let op = start_operator(&ns, &strs(&args));
    (client, ns, op)
}

/// A Server-to-Server connection `bot` at zoom-sim, and its operator.
fn s2s_env(prefix: &str) -> EnvBuilder {
    Env::new(prefix)
        .app(ZoomApp::s2s("s2s-id", "acc-1"))
        .operator(&["--public-url=https://zoom.example.com"])
}

fn backend() -> serde_json::Value {
    json!({"service": {"name": "zoom-operator", "port": {"number": 8080}}})
}

#[tokio::test]
async fn urls_follow_the_ingress_tls_host_and_its_changes() {
    let (client, ns, _op) = oauth_env("ing-tls", &["--ingress={ns}/zoom"]).await;
    let zcs = Zcs::new(&client, &ns);
    Zc::private_oauth("bot").apply(&client, &ns).await;

    // No Ingress yet: the condition says so.
    let zc = zcs
        .wait("bot", "URLsReady", "False", "IngressNotFound")
        .await;
    assert!(condition_message(&zc, "URLsReady").contains(&format!("{ns}/zoom")));

    apply_ingress(
        &client,
        &ns,
        json!({"tls": [{"hosts": ["zoom.example.com"], "secretName": "tls"}],
               "rules": [{"host": "zoom.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend()}]}}]}),
    )
    .await;
    let zc = wait_redirect_url(
        &client,
        &ns,
        "bot",
        "https://zoom.example.com/oauth/redirect/zoom",
    )
    .await;
    let status = zc.status.clone().expect("status");
    assert_eq!(
        status.event_url.as_deref(),
        Some("https://zoom.example.com/zoom/event")
    );
    let authorize = status
        .authorize_url
        .expect("authorizeURL for an OAuth connection");
    assert!(
        authorize.starts_with(&format!(
            "https://zoom.example.com/oauth/start/zoom/{ns}/bot?ticket="
        )),
        "{authorize}"
    );
    assert_eq!(zc.condition("URLsReady").expect("c").status, "True");

    // The host changes: every connection follows without being touched.
    apply_ingress(
        &client,
        &ns,
        json!({"tls": [{"hosts": ["zoom2.example.com"]}],
               "rules": [{"host": "zoom2.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend()}]}}]}),
    )
    .await;
    wait_redirect_url(
        &client,
        &ns,
        "bot",
        "https://zoom2.example.com/oauth/redirect/zoom",
    )
    .await;
}

#[tokio::test]
async fn urls_from_a_plain_rule_host_and_from_load_balancer_status() {
    let (client, ns, _op) = oauth_env("ing-plain", &["--ingress={ns}/zoom"]).await;
    let zcs = Zcs::new(&client, &ns);
    apply_ingress(
        &client,
        &ns,
        json!({"rules": [{"host": "plain.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend()}]}}]}),
    )
    .await;
    Zc::private_oauth("bot").apply(&client, &ns).await;
    wait_redirect_url(
        &client,
        &ns,
        "bot",
        "http://plain.example.com/oauth/redirect/zoom",
    )
    .await;
    // Zoom would refuse a plain-http event URL: said so, and the URLs are still in status.
    let zc = zcs.wait("bot", "URLsReady", "False", "NotHTTPS").await;
    let message = condition_message(&zc, "URLsReady");
    assert!(
        message.contains("http://plain.example.com/zoom/event") && message.contains("spec.tls"),
        "{message}"
    );

    // No host at all: IngressHasNoHost until the load balancer reports an address.
    apply_ingress(&client, &ns, json!({"defaultBackend": backend()})).await;
    zcs.wait("bot", "URLsReady", "False", "IngressHasNoHost")
        .await;
    let api: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    api.patch_status(
        "zoom",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}})),
    )
    .await
    .expect("patch ingress status");
    wait_redirect_url(
        &client,
        &ns,
        "bot",
        "http://203.0.113.10/oauth/redirect/zoom",
    )
    .await;
}

#[tokio::test]
async fn public_url_flag_wins() {
    let (client, ns, _op) = oauth_env(
        "pub-url",
        &[
            "--public-url=https://zoom.corp.example/",
            "--ingress={ns}/absent",
        ],
    )
    .await;
    Zc::private_oauth("bot").apply(&client, &ns).await;
    let zc = wait_redirect_url(
        &client,
        &ns,
        "bot",
        "https://zoom.corp.example/oauth/redirect/zoom",
    )
    .await;
    assert_eq!(
        zc.status.and_then(|s| s.event_url).as_deref(),
        Some("https://zoom.corp.example/zoom/event")
    );
}

#[tokio::test]
async fn credentials_conditions_recover_when_the_secret_is_fixed() {
    let client = client().await;
    let ns = namespace(&client, "creds").await;
    let zcs = Zcs::new(&client, &ns);
    let op = start_operator(&ns, &["--public-url=https://zoom.example.com"]);
    Zc::private_oauth("bot").apply(&client, &ns).await;

    let zc = zcs
        .wait("bot", "CredentialsReady", "False", "SecretNotFound")
        .await;
    assert_eq!(
        zc.condition("Ready").expect("Ready").reason,
        "SecretNotFound"
    );
    assert_eq!(
        zc.condition("Ready").expect("Ready").observed_generation,
        zc.metadata.generation
    );
    assert_eq!(
        zc.status.as_ref().and_then(|s| s.observed_generation),
        zc.metadata.generation
    );

    put_secret(&client, &ns, "zoom-app", &[("clientId", "id")]).await;
    let zc = zcs
        .wait("bot", "CredentialsReady", "False", "MissingKey")
        .await;
    assert_eq!(
        condition_message(&zc, "CredentialsReady"),
        format!("Secret {ns}/zoom-app has no key clientSecret; add it or set spec.credentialsRef.clientSecretKey")
    );

    // Fixing the Secret alone (the resource is not touched) recovers the condition.
    put_secret(
        &client,
        &ns,
        "zoom-app",
        &[("clientId", "id"), ("clientSecret", "the-client-secret")],
    )
    .await;
    let zc = zcs.wait("bot", "CredentialsReady", "True", "Valid").await;
    assert_eq!(
        zc.condition("Ready").expect("Ready").reason,
        "AwaitingAuthorization"
    );

    // Transitions were published as Events (and only transitions).
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let events = wait_listed(
        &events,
        &ListParams::default(),
        "events for the transitions",
        Duration::from_secs(30),
        |events| {
            let reasons: Vec<String> = events.iter().filter_map(|e| e.reason.clone()).collect();
            if ["SecretNotFound", "MissingKey", "Valid"]
                .iter()
                .all(|r| reasons.iter().any(|x| x == r))
            {
                Ok(events.to_vec())
            } else {
                Err(format!("{reasons:?}"))
            }
        },
    )
    .await;
    for e in &events {
        let note = e.note.clone().unwrap_or_default();
        assert!(
            !note.contains("the-client-secret"),
            "secret value in an Event: {note}"
        );
    }
    assert!(
        !op.process.logs().contains("the-client-secret"),
        "secret value in the operator log"
    );
}

#[tokio::test]
async fn a_foreign_secret_is_never_taken_over() {
    let client = client().await;
    let ns = namespace(&client, "foreign").await;
    let zcs = Zcs::new(&client, &ns);
    put_secret(
        &client,
        &ns,
        "bot-zoom-token",
        &[("access_token", "someone-elses")],
    )
    .await;
    let app = ZoomApp::s2s("s2s-id", "acc-1");
    let sim = start_zoom_sim(&[&app.sim_flag()]);
    app.secret("zoom-app").put(&client, &ns).await;
    let _op = sim.operator(&ns, &["--public-url=https://zoom.example.com"]);
    Zc::s2s("bot").apply(&client, &ns).await;
    let zc = zcs
        .wait("bot", "TokenReady", "False", "SecretNotOwned")
        .await;
    let message = condition_message(&zc, "TokenReady");
    assert!(
        message.contains(&format!("{ns}/bot-zoom-token")) && message.contains("not owned"),
        "{message}"
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = secrets.get("bot-zoom-token").await.expect("still there");
    let data = secret.data.expect("data");
    assert_eq!(
        data["access_token"].0, b"someone-elses",
        "the foreign Secret was modified"
    );
    assert!(secret.metadata.owner_references.is_none());
}

#[tokio::test]
async fn deleting_the_connection_collects_its_token_secret() {
    let env = s2s_env("delete").start().await;
    let (client, ns) = (&env.client, &env.ns);
    env.apply(&Zc::s2s("bot")).await;
    env.wait_ready("bot").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    assert!(secrets
        .get_opt("bot-zoom-token")
        .await
        .expect("get")
        .is_some());

    let zcs: Api<ZoomConnection> = Api::namespaced(client.clone(), ns);
    zcs.delete("bot", &DeleteParams::default())
        .await
        .expect("delete");
    wait_deleted(
        &secrets,
        "bot-zoom-token",
        "the token Secret to be garbage-collected",
        Duration::from_secs(90),
    )
    .await;
    // The credentials Secret is the team's: it stays.
    assert!(secrets.get_opt("zoom-app").await.expect("get").is_some());
}

#[tokio::test]
async fn the_api_server_rejects_what_the_schema_can_express() {
    let client = client().await;
    let ns = namespace(&client, "schema").await;
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), &ns);
    let cases = [
        (
            "unknown authType",
            json!({"authType": "Magic", "credentialsRef": {"name": "x"}}),
        ),
        (
            "malformed refreshBefore",
            json!({"authType": "PrivateOAuth", "credentialsRef": {"name": "x"}, "refreshBefore": "ten minutes"}),
        ),
        (
            "PrivateOAuth without credentials",
            json!({"authType": "PrivateOAuth"}),
        ),
        (
            "DefaultOAuth with credentials",
            json!({"authType": "DefaultOAuth", "credentialsRef": {"name": "x"}}),
        ),
        (
            "sink with both uri and ref",
            json!({"authType": "DefaultOAuth", "events": {"sink": {"uri": "http://a.b.svc", "ref": {"name": "a", "port": 80}}}}),
        ),
    ];
    for (what, spec) in cases {
        let obj: ZoomConnection = match serde_json::from_value(json!({
            "apiVersion": "zoom-operator.io/v1alpha1", "kind": "ZoomConnection",
            "metadata": {"name": "bad"}, "spec": spec,
        })) {
            Ok(obj) => obj,
            Err(_) => {
                // Our own types refuse it too; send the raw JSON to the API server instead.
                let raw = json!({"apiVersion": "zoom-operator.io/v1alpha1", "kind": "ZoomConnection", "metadata": {"name": "bad"}, "spec": spec});
                let result = api
                    .patch("bad", &PatchParams::apply("test"), &Patch::Apply(&raw))
                    .await;
                assert!(
                    matches!(result, Err(kube::Error::Api(ref s)) if s.code == 422),
                    "{what}: {result:?}"
                );
                continue;
            }
        };
        let result = api.create(&PostParams::default(), &obj).await;
        assert!(
            matches!(result, Err(kube::Error::Api(ref s)) if s.code == 422),
            "{what} was accepted: {result:?}"
        );
    }
    // And a valid one with defaults filled in by the API server.
    let created = Zc::private_oauth("good").apply(&client, &ns).await;
    assert_eq!(created.spec.refresh_before, "10m");
    assert_eq!(
        created.spec.credentials_ref.expect("ref").client_secret_key,
        "clientSecret"
    );
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let client = client().await;
    let ns = namespace(&client, "columns").await;
    let zcs = Zcs::new(&client, &ns);
    let _op = start_operator(&ns, &["--public-url=https://zoom.example.com"]);
    Zc::private_oauth("bot").apply(&client, &ns).await;
    zcs.wait("bot", "Ready", "False", "SecretNotFound").await;
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &control_plane().kubeconfig)
        .args(["get", "zc", "-n", &ns])
        .output()
        .expect("kubectl");
    let text = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "AUTH", "READY", "REASON", "EXPIRES", "AGE"],
        "{text}"
    );
    let row: Vec<&str> = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..4],
        ["bot", "PrivateOAuth", "False", "SecretNotFound"],
        "{text}"
    );
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    let client = client().await;
    let ns = namespace(&client, "sigterm").await;
    let zcs = Zcs::new(&client, &ns);
    let mut op = start_operator(&ns, &["--public-url=https://zoom.example.com"]);
    Zc::private_oauth("bot").apply(&client, &ns).await;
    zcs.wait("bot", "Ready", "False", "SecretNotFound").await;
    let status = op
        .process
        .terminate()
        .expect("exited within 10s of SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        op.process.logs()
    );
    // It released the lease, so a successor does not wait for it to expire.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &ns);
    let lease = leases.get("zoom-operator-leader").await.expect("lease");
    assert_eq!(lease.spec.and_then(|s| s.holder_identity), None);
}

/// `--watch-namespace` twice: each namespace is watched on its own. Connections in both are
/// reconciled and follow their Secrets (their own credentials Secret, and the default app's
/// Secret, which lives in a third, unwatched namespace and is watched by name), the expiry
/// gauge covers both namespaces, and the third namespace's connections are never touched.
#[tokio::test]
async fn two_watched_namespaces_are_reconciled_and_a_third_is_ignored() {
    let client = client().await;
    let a = namespace(&client, "multi-a").await;
    let b = namespace(&client, "multi-b").await;
    let other = namespace(&client, "multi-other").await;
    let app = ZoomApp::s2s("s2s-id", "acc-9");
    let sim = start_zoom_sim(&[&app.sim_flag()]);
    // The default app is incomplete at first, and so is b's own OAuth app.
    put_secret(
        &client,
        &other,
        "default-app",
        &[("clientId", "default-id")],
    )
    .await;
    put_secret(&client, &b, "zoom-app", &[("clientId", "id")]).await;
    for ns in [&a, &b, &other] {
        app.secret("s2s-app").put(&client, ns).await;
        Zc::s2s("s2s")
            .credentials("s2s-app")
            .apply(&client, ns)
            .await;
        Zc::default_oauth("shared").apply(&client, ns).await;
    }
    Zc::private_oauth("own").apply(&client, &b).await;

    let mut args = vec![
        format!("--watch-namespace={a}"),
        format!("--watch-namespace={b}"),
        format!("--lease-namespace={a}"),
        format!("--default-app-secret={other}/default-app"),
        "--public-url=https://zoom.example.com".to_owned(),
    ];
    args.extend(sim.zoom_flags());
    let op = start_operator_with_args("multi", &strs(&args));

    let b_zcs = Zcs::new(&client, &b);
    for ns in [&a, &b] {
        let zcs = Zcs::new(&client, ns);
        zcs.wait_ready("s2s").await;
        zcs.wait_redirect_url("shared", "https://zoom.example.com/oauth/redirect/zoom")
            .await;
        zcs.wait_no_default_app("shared").await;
    }
    b_zcs
        .wait("own", "CredentialsReady", "False", "MissingKey")
        .await;

    // Fixing the Secrets alone (no connection is touched) reaches both namespaces: the
    // connections would otherwise wait for their next periodic pass, minutes away. The pause
    // lets the passes triggered by the status writes above finish first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    put_secret(&client, &other, "default-app", DEFAULT_APP_KEYS).await;
    put_secret(&client, &b, "zoom-app", APP_KEYS).await;
    for ns in [&a, &b] {
        Zcs::new(&client, ns)
            .wait("shared", "CredentialsReady", "True", "Valid")
            .await;
    }
    b_zcs.wait("own", "CredentialsReady", "True", "Valid").await;

    // The expiry gauge reads every namespace's cache.
    let url = format!("{}/metrics", op.metrics);
    eventually(
        "the expiry gauge for both namespaces",
        Duration::from_secs(30),
        || {
            let url = url.clone();
            let (a, b) = (a.clone(), b.clone());
            async move {
                let text = reqwest::get(&url)
                    .await
                    .map_err(|e| e.to_string())?
                    .text()
                    .await
                    .map_err(|e| e.to_string())?;
                let series: Vec<&str> = text
                    .lines()
                    .filter(|l| l.starts_with("zoom_operator_token_expiry_timestamp_seconds{"))
                    .collect();
                let has = |ns: &str| {
                    series
                        .iter()
                        .any(|l| l.contains(&format!("namespace=\"{ns}\",name=\"s2s\"")))
                };
                if has(&a) && has(&b) && series.len() == 2 {
                    Ok(())
                } else {
                    Err(format!("{series:?}"))
                }
            }
        },
    )
    .await;

    // The third namespace: no status, no finalizer, no token Secret.
    let others: Api<ZoomConnection> = Api::namespaced(client.clone(), &other);
    for name in ["s2s", "shared"] {
        let zc = others.get(name).await.expect("get");
        assert!(
            zc.status.is_none(),
            "{other}/{name} was reconciled: {:?}",
            zc.status
        );
        assert!(
            zc.metadata.finalizers.unwrap_or_default().is_empty(),
            "{other}/{name} got a finalizer"
        );
    }
    let token = Api::<Secret>::namespaced(client.clone(), &other)
        .get_opt("s2s-zoom-token")
        .await
        .expect("get");
    assert!(token.is_none(), "{other}/s2s-zoom-token was written");
    assert!(
        !op.process.logs().contains(&format!("{other}/s2s")),
        "the operator logged about the unwatched namespace"
    );
}
