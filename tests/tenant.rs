//! Tenant-proofing (issue 7, api.md sections 1, 3, 5 and 9), each test written as the attack a
//! hostile tenant would try, against the real local control plane, zoom-sim and the operator
//! binary: injected sink names, a huge refreshBefore with a deleted annotation, ExternalName and
//! cross-namespace sinks, a flood of OAuth callbacks, unauthenticated 1 MiB bodies, forced
//! refreshes in a loop, 10,000 self-signed event names, and a grant whose account cannot be read.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use zoom_operator::api::ZoomConnection;
use zoom_operator::zoom::webhook::sign;

// ----- helpers ------------------------------------------------------------------------------

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// A listener that counts every connection it accepts (and answers 200 to anything): if the
/// operator ever reached it, the count says so.
struct Tripwire {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Tripwire {
    async fn start(ip: &str) -> Tripwire {
        let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
            .await
            .expect("bind tripwire");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        Tripwire { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn s2s_sim_app(client_id: &str, token: &str, account: &str) -> String {
    format!("--app=kind=s2s,client_id={client_id},client_secret=s2s-secret,secret_token={token},account_id={account}")
}

async fn s2s_app_secret(
    client: &kube::Client,
    ns: &str,
    client_id: &str,
    token: &str,
    account: &str,
) {
    put_secret(
        client,
        ns,
        "zoom-app",
        &[
            ("clientId", client_id),
            ("clientSecret", "s2s-secret"),
            ("secretToken", token),
            ("accountId", account),
        ],
    )
    .await;
}

fn s2s_zc(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: zoom-operator.io/v1alpha1\nkind: ZoomConnection\nmetadata: {{name: {name}}}\nspec:\n  authType: ServerToServer\n  credentialsRef: {{name: zoom-app}}\n{extra_spec}"
    )
}

/// Server-side apply of a ZoomConnection, returning the API server's error code if refused.
async fn try_apply(client: &kube::Client, ns: &str, yaml: &str) -> Result<(), (u16, String)> {
    let value: Value = serde_yaml::from_str(yaml).expect("yaml");
    let name = value["metadata"]["name"].as_str().expect("name").to_owned();
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), ns);
    match api
        .patch(
            &name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&value),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err((status.code, status.message)),
        Err(e) => panic!("unexpected error applying {name}: {e}"),
    }
}

async fn post_signed(op: &Operator, token: &str, body: &[u8]) -> (u16, String) {
    let ts = now_secs().to_string();
    let response = http()
        .post(format!("{}/zoom/event", op.public_url))
        .header("content-type", "application/json")
        .header("x-zm-request-timestamp", &ts)
        .header("x-zm-signature", sign(token.as_bytes(), &ts, body))
        .body(body.to_vec())
        .send()
        .await
        .expect("POST /zoom/event");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

fn event_body(account: &str) -> Vec<u8> {
    json!({"event": "meeting.started", "event_ts": now_secs() * 1000, "payload": {"account_id": account, "object": {"id": "1"}}})
        .to_string()
        .into_bytes()
}

async fn wait_ready(op: &Operator) {
    eventually("operator /readyz", Duration::from_secs(60), || async {
        match reqwest::get(format!("{}/readyz", op.metrics)).await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("status {}", r.status())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
}

async fn last_refresh(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), ns);
    api.get(name)
        .await
        .ok()?
        .status?
        .last_refresh_time
        .map(|t| t.0.to_string())
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

// ----- 1. SSRF through spec.events.sink.ref.name --------------------------------------------

#[tokio::test]
async fn injected_sink_names_are_refused_and_nothing_is_sent() {
    let client = client().await;
    let ns = namespace(&client, "tn-ssrf").await;
    let trap = Tripwire::start("127.0.0.3").await;
    let port = trap.addr.port();
    let sim = start_zoom_sim(&[&s2s_sim_app("cid-x", "tok-x", "acc-x")]);
    s2s_app_secret(&client, &ns, "cid-x", "tok-x", "acc-x").await;
    let op = start_operator(
        &ns,
        &[
            "--allow-sink-host=127.0.0.1",
            &format!("--zoom-oauth-url={}", sim.url),
            &format!("--zoom-api-url={}", sim.url),
        ],
    );

    // Each form that would move the host, port or path of http://{name}.{ns}.svc:{port}{path}.
    let long = "a".repeat(64);
    let names = [
        format!("127.0.0.3:{port}/hook#"),
        format!("127.0.0.3:{port}/?"),
        format!("x@127.0.0.3:{port}"),
        format!("127.0.0.3:{port}\\\\x"),
        "169.254.169.254/latest#".to_owned(),
        "Handler".to_owned(),
        long,
    ];
    for (i, name) in names.iter().enumerate() {
        let yaml = s2s_zc(
            &format!("inject-{i}"),
            &format!(
                "  events: {{sink: {{ref: {{kind: Service, name: {:?}, port: 80}}}}}}\n",
                name
            ),
        );
        let refused = try_apply(&client, &ns, &yaml).await.expect_err(name);
        assert_eq!(refused.0, 422, "{name:?}: {refused:?}");
        assert!(
            refused.1.contains("spec.events.sink.ref.name"),
            "{name:?}: {}",
            refused.1
        );
    }
    for (path, why) in [("/a?b=1", "query"), ("/a#f", "fragment"), ("x", "relative")] {
        let yaml = s2s_zc(
            "inject-path",
            &format!("  events: {{sink: {{ref: {{kind: Service, name: handler, port: 80, path: {path:?}}}}}}}\n"),
        );
        let refused = try_apply(&client, &ns, &yaml).await.expect_err(why);
        assert_eq!(refused.0, 422, "{why}: {refused:?}");
    }
    let yaml = s2s_zc(
        "inject-port",
        "  events: {sink: {ref: {kind: Service, name: handler, port: 0}}}\n",
    );
    assert_eq!(
        try_apply(&client, &ns, &yaml).await.map_err(|e| e.0),
        Err(422)
    );

    // What the API server admits: a uri straight at the trap, and a well-formed ref (which
    // does not resolve here). Neither may reach 127.0.0.3.
    apply_zc(
        &client,
        &ns,
        &s2s_zc(
            "direct",
            &format!("  events: {{sink: {{uri: \"http://127.0.0.3:{port}/hook\"}}}}\n"),
        ),
    )
    .await;
    apply_zc(
        &client,
        &ns,
        &s2s_zc(
            "by-ref",
            "  events: {sink: {ref: {kind: Service, name: handler, port: 80, path: /hook}}}\n",
        ),
    )
    .await;
    wait_ready(&op).await;
    let zc = wait_condition(
        &client,
        &ns,
        "direct",
        "EventsReady",
        "False",
        "SinkNotAllowed",
    )
    .await;
    let message = zc
        .condition("EventsReady")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("127.0.0.3"), "{message}");

    let body = event_body("acc-x");
    let mut answered = 0;
    for _ in 0..40 {
        let (status, text) = post_signed(&op, "tok-x", &body).await;
        if status != 401 && !text.contains("unroutable") {
            answered += 1;
            if answered >= 3 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(answered >= 3, "the events were never routed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        trap.hits(),
        0,
        "the operator connected to a host the tenant injected"
    );
}

// ----- 2. one tenant's refreshBefore does not stop another's refreshes ---------------------

#[tokio::test]
async fn a_huge_refresh_before_and_a_deleted_annotation_do_not_stop_other_tenants() {
    let client = client().await;
    let ns_a = namespace(&client, "tn-huge-a").await;
    let ns_b = namespace(&client, "tn-huge-b").await;
    // 20-second tokens: renewed at half-life, every ~10 seconds.
    let sim = start_zoom_sim(&[
        "--token-lifetime=20",
        &s2s_sim_app("cid-h", "tok-h", "acc-h"),
    ]);
    for ns in [&ns_a, &ns_b] {
        s2s_app_secret(&client, ns, "cid-h", "tok-h", "acc-h").await;
        apply_zc(&client, ns, &s2s_zc("bot", "")).await;
    }
    let args = [
        format!("--watch-namespace={ns_a}"),
        format!("--watch-namespace={ns_b}"),
        format!("--lease-namespace={ns_a}"),
        format!("--zoom-oauth-url={}", sim.url),
        format!("--zoom-api-url={}", sim.url),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut op = start_operator_with_args("tn-huge", &args);
    for ns in [&ns_a, &ns_b] {
        wait_condition(&client, ns, "bot", "Ready", "True", "Ready").await;
    }

    // The attack: the tenant of namespace A deletes the issue-time annotation from its own
    // token Secret and sets a refreshBefore the CRD pattern admits but no clock can hold.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns_a);
    secrets
        .patch(
            "bot-zoom-token",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"zoom-operator.io/last-refresh-time": null}}}),
            ),
        )
        .await
        .expect("delete the annotation");
    let api_a: Api<ZoomConnection> = Api::namespaced(client.clone(), &ns_a);
    api_a
        .patch(
            "bot",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"refreshBefore": "3000000000000000h"}})),
        )
        .await
        .expect("the API server admits the pattern");
    let zc = wait_condition(&client, &ns_a, "bot", "Ready", "False", "InvalidSpec").await;
    let message = zc
        .condition("Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("spec.refreshBefore"), "{message}");

    // Namespace B keeps refreshing on time: two more renewals within ~3 token lifetimes.
    let mut seen = last_refresh(&client, &ns_b, "bot").await;
    for round in 0..2 {
        let before = seen.clone();
        seen = Some(
            eventually(
                &format!("renewal {round} in {ns_b}"),
                Duration::from_secs(30),
                || {
                    let client = client.clone();
                    let ns = ns_b.clone();
                    let before = before.clone();
                    async move {
                        match last_refresh(&client, &ns, "bot").await {
                            Some(t) if Some(&t) != before.as_ref() => Ok(t),
                            other => Err(format!("lastRefreshTime still {other:?}")),
                        }
                    }
                },
            )
            .await,
        );
    }
    assert!(
        op.process.child.try_wait().ok().flatten().is_none(),
        "the operator exited"
    );
    assert!(
        !op.process.logs().contains("panicked"),
        "the operator panicked"
    );
    drop(sim);
    let _ = op.process.terminate();
}

// ----- 3. ExternalName and cross-namespace sinks --------------------------------------------

#[tokio::test]
async fn external_name_and_cross_namespace_sinks_are_refused() {
    let client = client().await;
    let ns = namespace(&client, "tn-sinks").await;
    let other = namespace(&client, "tn-sinks-other").await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let external: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "elsewhere"},
        "spec": {"type": "ExternalName", "externalName": "metadata.google.internal"}
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &external)
        .await
        .expect("create ExternalName Service");
    let sim = start_zoom_sim(&[&s2s_sim_app("cid-e", "tok-e", "acc-e")]);
    s2s_app_secret(&client, &ns, "cid-e", "tok-e", "acc-e").await;
    apply_zc(
        &client,
        &ns,
        &s2s_zc(
            "alias",
            "  events: {sink: {ref: {kind: Service, name: elsewhere, port: 80}}}\n",
        ),
    )
    .await;
    apply_zc(
        &client,
        &ns,
        &s2s_zc(
            "alias-uri",
            &format!("  events: {{sink: {{uri: \"http://elsewhere.{ns}.svc.cluster.local/\"}}}}\n"),
        ),
    )
    .await;
    apply_zc(
        &client,
        &ns,
        &s2s_zc(
            "neighbour",
            &format!("  events: {{sink: {{uri: \"http://handler.{other}.svc:8080/\"}}}}\n"),
        ),
    )
    .await;
    let _op = start_operator(
        &ns,
        &[
            &format!("--zoom-oauth-url={}", sim.url),
            &format!("--zoom-api-url={}", sim.url),
        ],
    );
    for name in ["alias", "alias-uri"] {
        let zc = wait_condition(&client, &ns, name, "EventsReady", "False", "SinkNotAllowed").await;
        let message = zc
            .condition("EventsReady")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        assert!(message.contains("ExternalName"), "{name}: {message}");
    }
    let zc = wait_condition(
        &client,
        &ns,
        "neighbour",
        "EventsReady",
        "False",
        "SinkNotAllowed",
    )
    .await;
    let message = zc
        .condition("EventsReady")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains(&format!("namespace {other}")), "{message}");
}

// ----- 4. state flood ------------------------------------------------------------------------

const OAUTH_CLIENT_ID: &str = "flood-client-id";

#[tokio::test]
async fn a_flood_of_callbacks_without_code_leaves_the_token_secret_writable() {
    let client = client().await;
    let ns = namespace(&client, "tn-flood").await;
    let sim = start_zoom_sim(&[
        "--consent=approve",
        &format!("--app=kind=oauth,client_id={OAUTH_CLIENT_ID},client_secret=flood-secret,account_id=acc-f,user_id=user-f,email=f@example.com"),
    ]);
    put_secret(
        &client,
        &ns,
        "zoom-app",
        &[
            ("clientId", OAUTH_CLIENT_ID),
            ("clientSecret", "flood-secret"),
        ],
    )
    .await;
    apply_zc(
        &client,
        &ns,
        "apiVersion: zoom-operator.io/v1alpha1\nkind: ZoomConnection\nmetadata: {name: bot}\nspec:\n  authType: PrivateOAuth\n  credentialsRef: {name: zoom-app}\n",
    )
    .await;
    let op = start_operator(
        &ns,
        &[
            &format!("--zoom-oauth-url={}", sim.url),
            &format!("--zoom-api-url={}", sim.url),
        ],
    );
    authorize_through_sim(&client, &ns).await;

    // The attack: valid states (a ticket holder can mint as many as it likes through the start
    // link; here they are signed with the operator's key directly), and never a code.
    let key = signing_key(&client, &ns).await;
    let uid = Api::<ZoomConnection>::namespaced(client.clone(), &ns)
        .get("bot")
        .await
        .expect("zc")
        .metadata
        .uid
        .expect("uid");
    let redirect = format!("{}/oauth/redirect/zoom", op.public_url);
    let statuses: Vec<u16> = futures::stream::iter(0..500)
        .map(|_| {
            let (state, _) = key.issue_state(&ns, "bot", &uid, jiff::Timestamp::now());
            let url = format!("{redirect}?state={state}");
            async move {
                http()
                    .get(url)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 400), "{:?}", &statuses[..10]);

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = secrets.get("bot-zoom-token").await.expect("token Secret");
    let consumed = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("zoom-operator.io/consumed-states"))
        .map(|v| v.split(',').count())
        .unwrap_or(0);
    assert!(
        consumed <= 1,
        "{consumed} states remembered after callbacks without a code"
    );

    // And the Secret still takes writes: a second authorization stores a new grant.
    let before = secret
        .data
        .as_ref()
        .and_then(|d| d.get("access_token"))
        .cloned();
    authorize_through_sim(&client, &ns).await;
    let after = secrets.get("bot-zoom-token").await.expect("token Secret");
    assert_ne!(
        after
            .data
            .as_ref()
            .and_then(|d| d.get("access_token"))
            .cloned(),
        before
    );
}

async fn signing_key(client: &kube::Client, ns: &str) -> zoom_operator::signing::SigningKey {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get("zoom-operator-signing-key")
        .await
        .expect("signing key Secret");
    zoom_operator::signing::SigningKey::new(secret.data.expect("data")["key"].0.clone())
}

/// start link -> zoom-sim's consent (approve) -> the callback, as a browser would.
async fn authorize_through_sim(client: &kube::Client, ns: &str) {
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), ns);
    let start = eventually("status.authorizeURL", Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            let zc = api.get("bot").await.map_err(|e| e.to_string())?;
            zc.status
                .and_then(|s| s.authorize_url)
                .ok_or_else(|| "no authorizeURL yet".to_owned())
        }
    })
    .await;
    let http = http();
    let mut url = start;
    for hop in 0..2 {
        let r = http.get(&url).send().await.expect("hop");
        assert_eq!(r.status().as_u16(), 302, "hop {hop} to {url}");
        url = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
    }
    let r = http.get(&url).send().await.expect("callback");
    let status = r.status().as_u16();
    assert_eq!(status, 200, "{}", r.text().await.unwrap_or_default());
}

// ----- 6. unauthenticated bodies -------------------------------------------------------------

/// Sends only the head of a POST /zoom/event with `Content-Length: 1 MiB` and returns the
/// status line the server sent within `wait`, having sent no body byte.
async fn head_only(op: &Operator, extra_headers: &str, wait: Duration) -> Option<String> {
    let stream = tokio::net::TcpStream::connect(&op.listen)
        .await
        .expect("connect");
    let (read, mut write) = tokio::io::split(stream);
    let head = format!(
        "POST /zoom/event HTTP/1.1\r\nHost: zoom-operator\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        1024 * 1024
    );
    write.write_all(head.as_bytes()).await.expect("send head");
    let mut line = String::new();
    let mut reader = BufReader::new(read);
    let got = tokio::time::timeout(wait, reader.read_line(&mut line)).await;
    drop(write);
    matches!(got, Ok(Ok(n)) if n > 0).then_some(line)
}

#[tokio::test]
async fn unauthenticated_megabyte_bodies_are_refused_unread() {
    let client = client().await;
    let ns = namespace(&client, "tn-unauth").await;
    let sim = start_zoom_sim(&[&s2s_sim_app("cid-u", "tok-u", "acc-u")]);
    s2s_app_secret(&client, &ns, "cid-u", "tok-u", "acc-u").await;
    apply_zc(&client, &ns, &s2s_zc("bot", "")).await;
    let op = start_operator(
        &ns,
        &[
            &format!("--zoom-oauth-url={}", sim.url),
            &format!("--zoom-api-url={}", sim.url),
        ],
    );
    wait_ready(&op).await;

    // Zero body bytes sent, and the answer is already there: the server read none.
    let stale = (now_secs() - 3600).to_string();
    let forged = sign(b"guess", &stale, b"");
    for (what, headers) in [
        ("no signature headers", String::new()),
        (
            "only a timestamp",
            format!("x-zm-request-timestamp: {}\r\n", now_secs()),
        ),
        (
            "only a signature",
            format!("x-zm-signature: {}\r\n", sign(b"g", "1", b"")),
        ),
        (
            "a stale timestamp",
            format!("x-zm-request-timestamp: {stale}\r\nx-zm-signature: {forged}\r\n"),
        ),
        (
            "a malformed signature",
            format!(
                "x-zm-request-timestamp: {}\r\nx-zm-signature: v0=zz\r\n",
                now_secs()
            ),
        ),
    ] {
        let line = head_only(&op, &headers, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{what}: no answer before the body was sent"));
        assert!(line.starts_with("HTTP/1.1 401"), "{what}: {line:?}");
    }

    // The measure is not vacuous: fresh, well-formed headers make the server wait for the
    // body it must verify.
    let ts = now_secs().to_string();
    let headers = format!(
        "x-zm-request-timestamp: {ts}\r\nx-zm-signature: {}\r\n",
        sign(b"guess", &ts, b"{}")
    );
    assert_eq!(head_only(&op, &headers, Duration::from_secs(1)).await, None);

    // Many unauthenticated megabytes at once leave the operator serving signed events.
    let bodies = futures::stream::iter(0..50)
        .map(|_| {
            let op_url = op.public_url.clone();
            async move {
                let ts = now_secs().to_string();
                http()
                    .post(format!("{op_url}/zoom/event"))
                    .header("content-type", "application/json")
                    .header("x-zm-request-timestamp", &ts)
                    .header("x-zm-signature", sign(b"guess", &ts, b""))
                    .body(vec![b' '; 1024 * 1024])
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<u16>>()
        .await;
    assert!(bodies.iter().all(|s| *s == 401 || *s == 503), "{bodies:?}");
    let (status, _) = post_signed(&op, "tok-u", &event_body("acc-u")).await;
    assert_eq!(status, 200);
}

// ----- 8. forced refresh rate limit ----------------------------------------------------------

#[tokio::test]
async fn forced_refreshes_are_rate_limited() {
    let client = client().await;
    let ns = namespace(&client, "tn-force").await;
    let sim = start_zoom_sim(&[&s2s_sim_app("cid-r", "tok-r", "acc-r")]);
    s2s_app_secret(&client, &ns, "cid-r", "tok-r", "acc-r").await;
    apply_zc(&client, &ns, &s2s_zc("bot", "")).await;
    let _op = start_operator(
        &ns,
        &[
            &format!("--zoom-oauth-url={}", sim.url),
            &format!("--zoom-api-url={}", sim.url),
        ],
    );
    wait_condition(&client, &ns, "bot", "Ready", "True", "Ready").await;
    let minted = sim_stats(&sim).await["account_credentials_grants"]
        .as_u64()
        .unwrap_or(0);

    // The attack: a new refresh-requested value every 200 ms for 10 seconds. The first is
    // honoured at once; the others wait for the minute to be up.
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), &ns);
    for i in 0..50 {
        api.patch(
            "bot",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"zoom-operator.io/refresh-requested": format!("{i}")}}})),
        )
        .await
        .expect("annotate");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = sim_stats(&sim).await["account_credentials_grants"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        after,
        minted + 1,
        "one forced refresh, then none within the minute"
    );

    // Said so in an Event, and the last request is honoured once the minute is up.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let list = events.list(&Default::default()).await.expect("events");
    let said = list
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("RefreshRateLimited"));
    let note = said.and_then(|e| e.note.clone()).unwrap_or_default();
    assert!(
        note.contains("one per minute"),
        "no RefreshRateLimited Event: {note:?}"
    );
    eventually("the deferred refresh", Duration::from_secs(90), || async {
        let now = sim_stats(&sim).await["account_credentials_grants"]
            .as_u64()
            .unwrap_or(0);
        if now > after {
            Ok(())
        } else {
            Err(format!("{now} grants"))
        }
    })
    .await;
    let total = sim_stats(&sim).await["account_credentials_grants"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        total <= minted + 2,
        "{total} grants for one minute of requests"
    );
}

// ----- 5. metric labels a signer chooses ----------------------------------------------------

/// The series on `/metrics`: every sample line's name and labels (values dropped).
async fn metric_series(op: &Operator) -> std::collections::BTreeSet<String> {
    let text = http()
        .get(format!("{}/metrics", op.metrics))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

#[tokio::test]
async fn ten_thousand_event_names_leave_metrics_the_same_size() {
    let client = client().await;
    let ns = namespace(&client, "tn-labels").await;
    let sim = start_zoom_sim(&[&s2s_sim_app("cid-l", "tok-l", "acc-l")]);
    s2s_app_secret(&client, &ns, "cid-l", "tok-l", "acc-l").await;
    apply_zc(&client, &ns, &s2s_zc("bot", "")).await;
    let op = start_operator(
        &ns,
        &[
            &format!("--zoom-oauth-url={}", sim.url),
            &format!("--zoom-api-url={}", sim.url),
        ],
    );
    wait_condition(&client, &ns, "bot", "Ready", "True", "Ready").await;
    wait_ready(&op).await;
    let signed = |name: String, account: &'static str| {
        let op_url = op.public_url.clone();
        async move {
            let body = json!({"event": name, "event_ts": now_secs() * 1000, "payload": {"account_id": account}})
                .to_string()
                .into_bytes();
            let ts = now_secs().to_string();
            http()
                .post(format!("{op_url}/zoom/event"))
                .header("content-type", "application/json")
                .header("x-zm-request-timestamp", &ts)
                .header("x-zm-signature", sign(b"tok-l", &ts, &body))
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    // Every outcome once, so that each fixed series exists before the count.
    for account in ["acc-l", "acc-other"] {
        assert_eq!(signed("meeting.started".to_owned(), account).await, 200);
    }
    let before = metric_series(&op).await;

    // The attack: 10,000 validly signed events, each with its own name, routable or not.
    let answers = futures::stream::iter(0..10_000)
        .map(|i| {
            signed(
                format!("tenant.{i}.x"),
                if i % 2 == 0 { "acc-l" } else { "acc-other" },
            )
        })
        .buffer_unordered(16)
        .collect::<Vec<u16>>()
        .await;
    assert!(
        answers.iter().all(|s| *s == 200),
        "every event answered 200"
    );

    let after = metric_series(&op).await;
    let added: Vec<&String> = after.difference(&before).collect();
    assert!(
        added.is_empty(),
        "new series after 10,000 event names: {added:?}"
    );
    assert!(
        !after.iter().any(|s| s.contains("tenant.")),
        "an event name became a label"
    );
}

// ----- 7. an account that could not be read --------------------------------------------------

#[tokio::test]
async fn a_failed_account_read_is_reported_and_retried() {
    let client = client().await;
    let ns = namespace(&client, "tn-account").await;
    let sim = start_zoom_sim(&[
        "--consent=approve",
        "--token-lifetime=600",
        // Registered without user:read:user: zoom-sim refuses users/me with Zoom's 4711.
        "--app=kind=oauth,client_id=cid-a,client_secret=cid-a-secret,secret_token=tok-a,account_id=acc-a,scopes=meeting:read:meeting",
    ]);
    put_secret(
        &client,
        &ns,
        "zoom-app",
        &[
            ("clientId", "cid-a"),
            ("clientSecret", "cid-a-secret"),
            ("secretToken", "tok-a"),
        ],
    )
    .await;
    apply_zc(
        &client,
        &ns,
        "apiVersion: zoom-operator.io/v1alpha1\nkind: ZoomConnection\nmetadata: {name: bot}\nspec: {authType: PrivateOAuth, credentialsRef: {name: zoom-app}}\n",
    )
    .await;
    let op = start_operator(
        &ns,
        &[
            &format!("--zoom-oauth-url={}", sim.url),
            &format!("--zoom-api-url={}", sim.url),
        ],
    );

    // The app lacks user:read:user: Zoom refuses users/me for the callback's read and for
    // every retry until the scope is added.
    browser_authorize(&client, &ns, "bot").await;

    // Not silent: EventsReady names the missing scope, and the event is unroutable.
    let zc = wait_condition(
        &client,
        &ns,
        "bot",
        "EventsReady",
        "False",
        "AccountUnknown",
    )
    .await;
    let message = &zc.condition("EventsReady").expect("EventsReady").message;
    assert!(message.contains("user:read:user"), "{message}");
    let (status, body) = post_signed(&op, "tok-a", &event_body("acc-a")).await;
    assert_eq!(status, 200);
    assert!(body.contains("unroutable"), "{body}");

    // A new access token (the scope was added and the grant refreshed) is read with at once.
    let added = http()
        .post(format!("{}/sim/apps/cid-a/scopes", sim.url))
        .json(&json!({"scopes": "meeting:read:meeting user:read:user"}))
        .send()
        .await
        .expect("add the scope");
    assert!(added.status().is_success());
    Api::<ZoomConnection>::namespaced(client.clone(), &ns)
        .patch(
            "bot",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"zoom-operator.io/refresh-requested": "scope-added"}}})),
        )
        .await
        .expect("annotate");
    let zc = wait_condition(&client, &ns, "bot", "EventsReady", "True", "Ready").await;
    let account = zc.status.and_then(|s| s.account).expect("account");
    assert_eq!(account.account_id.as_deref(), Some("acc-a"));
    eventually("the event routed", Duration::from_secs(30), || async {
        let (status, body) = post_signed(&op, "tok-a", &event_body("acc-a")).await;
        if status == 200 && body.contains("accepted") {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;
}
