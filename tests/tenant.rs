//! Tenant-proofing (issue 7, api.md sections 1, 3, 5 and 9), each test written as the attack a
//! hostile tenant would try, against the real local control plane, zoom-sim and the operator
//! binary: injected sink names, a huge refreshBefore with a deleted annotation, ExternalName and
//! cross-namespace sinks, a flood of OAuth callbacks, unauthenticated 1 MiB bodies, forced
//! refreshes in a loop, 10,000 self-signed event names, and a grant whose account cannot be read.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use zoom_operator::api::ZoomConnection;
use zoom_operator::zoom::webhook::sign;

// ----- helpers ------------------------------------------------------------------------------

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

/// A Server-to-Server app with secret token `token` at zoom-sim, and its Secret `zoom-app`.
fn s2s_env(prefix: &str, id: &str, token: &str, account: &str) -> EnvBuilder {
    Env::new(prefix).app(ZoomApp::s2s(id, account).secret_token(token))
}

/// A connection with `sink` as its `spec.events.sink`.
fn with_sink(name: &str, sink: Value) -> Zc {
    Zc::s2s(name).sink(sink)
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

// ----- 1. SSRF through spec.events.sink.ref.name --------------------------------------------

#[tokio::test]
async fn injected_sink_names_are_refused_and_nothing_is_sent() {
    let trap = Tripwire::start("127.0.0.3").await;
    let port = trap.addr.port();
    let env = s2s_env("tn-ssrf", "cid-x", "tok-x", "acc-x")
        .operator(&["--allow-sink-host=127.0.0.1"])
        .start()
        .await;
    let env = &env;
    let refused = |zc: Zc| async move {
        zc.try_apply(&env.client, &env.ns)
            .await
            .map(|_| ())
            .expect_err("the API server refuses it")
    };

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
        let zc = Zc::s2s(&format!("inject-{i}")).sink_service(name, 80);
        let (code, message) = refused(zc).await;
        assert_eq!(code, 422, "{name:?}: {message}");
        assert!(
            message.contains("spec.events.sink.ref.name"),
            "{name:?}: {message}"
        );
    }
    for (path, why) in [("/a?b=1", "query"), ("/a#f", "fragment"), ("x", "relative")] {
        let zc = with_sink(
            "inject-path",
            json!({"ref": {"kind": "Service", "name": "handler", "port": 80, "path": path}}),
        );
        let (code, message) = refused(zc).await;
        assert_eq!(code, 422, "{why}: {message}");
    }
    let (code, _) = refused(Zc::s2s("inject-port").sink_service("handler", 0)).await;
    assert_eq!(code, 422);

    // What the API server admits: a uri straight at the trap, and a well-formed ref (which
    // does not resolve here). Neither may reach 127.0.0.3.
    env.apply(&Zc::s2s("direct").sink_uri(&format!("http://127.0.0.3:{port}/hook")))
        .await;
    env.apply(&with_sink(
        "by-ref",
        json!({"ref": {"kind": "Service", "name": "handler", "port": 80, "path": "/hook"}}),
    ))
    .await;
    env.op.wait_ready().await;
    let zc = env
        .wait("direct", "EventsReady", "False", "SinkNotAllowed")
        .await;
    let message = condition_message(&zc, "EventsReady");
    assert!(message.contains("127.0.0.3"), "{message}");

    let body = event_body("meeting.started", "acc-x");
    let mut answered = 0;
    for _ in 0..40 {
        let answer = post_signed(&env.op, "tok-x", &body).await;
        if answer.status != 401 && !answer.body.contains("unroutable") {
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
    let app = ZoomApp::s2s("cid-h", "acc-h").secret_token("tok-h");
    let sim = start_zoom_sim(&["--token-lifetime=20", &app.sim_flag()]);
    for ns in [&ns_a, &ns_b] {
        app.secret("zoom-app").put(&client, ns).await;
        Zc::s2s("bot").apply(&client, ns).await;
    }
    let mut args = vec![
        format!("--watch-namespace={ns_a}"),
        format!("--watch-namespace={ns_b}"),
        format!("--lease-namespace={ns_a}"),
    ];
    args.extend(sim.zoom_flags());
    let mut op = start_operator_with_args("tn-huge", &strs(&args));
    for ns in [&ns_a, &ns_b] {
        Zcs::new(&client, ns)
            .wait("bot", "Ready", "True", "Ready")
            .await;
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
    let zc = Zcs::new(&client, &ns_a)
        .wait("bot", "Ready", "False", "InvalidSpec")
        .await;
    let message = condition_message(&zc, "Ready");
    assert!(message.contains("spec.refreshBefore"), "{message}");

    // Namespace B keeps refreshing on time: two more renewals within ~3 token lifetimes.
    let mut seen = last_refresh(&client, &ns_b, "bot").await;
    for round in 0..2 {
        let before = seen.clone();
        seen = Some(
            eventually(
                &format!("renewal {round} in {ns_b}"),
                Duration::from_secs(30),
                || async {
                    match last_refresh(&client, &ns_b, "bot").await {
                        Some(t) if Some(&t) != before.as_ref() => Ok(t),
                        other => Err(format!("lastRefreshTime still {other:?}")),
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
    let zcs = Zcs::new(&client, &ns);
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
    let app = ZoomApp::s2s("cid-e", "acc-e").secret_token("tok-e");
    let sim = start_zoom_sim(&[&app.sim_flag()]);
    app.secret("zoom-app").put(&client, &ns).await;
    for zc in [
        Zc::s2s("alias").sink_service("elsewhere", 80),
        Zc::s2s("alias-uri").sink_uri(&format!("http://elsewhere.{ns}.svc.cluster.local/")),
        Zc::s2s("neighbour").sink_uri(&format!("http://handler.{other}.svc:8080/")),
    ] {
        zc.apply(&client, &ns).await;
    }
    let _op = sim.operator(&ns, &[]);
    for name in ["alias", "alias-uri"] {
        let zc = zcs
            .wait(name, "EventsReady", "False", "SinkNotAllowed")
            .await;
        let message = condition_message(&zc, "EventsReady");
        assert!(message.contains("ExternalName"), "{name}: {message}");
    }
    let zc = zcs
        .wait("neighbour", "EventsReady", "False", "SinkNotAllowed")
        .await;
    let message = condition_message(&zc, "EventsReady");
    assert!(message.contains(&format!("namespace {other}")), "{message}");
}

// ----- 4. state flood ------------------------------------------------------------------------

#[tokio::test]
async fn a_flood_of_callbacks_without_code_leaves_the_token_secret_writable() {
    let env = Env::new("tn-flood")
        .sim(&["--consent=approve"])
        .app(
            ZoomApp::oauth("flood-client-id", "flood-secret")
                .account("acc-f")
                .user("user-f", "f@example.com"),
        )
        .connection(Zc::private_oauth("bot"))
        .start()
        .await;
    let (client, ns) = (&env.client, &env.ns);
    env.authorize("bot").await;

    // The attack: valid states (a ticket holder can mint as many as it likes through the start
    // link; here they are signed with the operator's key directly), and never a code.
    let key = signing_key(client, ns).await;
    let uid = Api::<ZoomConnection>::namespaced(client.clone(), ns)
        .get("bot")
        .await
        .expect("zc")
        .metadata
        .uid
        .expect("uid");
    let redirect = format!("{}/oauth/redirect/zoom", env.op.public_url);
    let statuses: Vec<u16> = futures::stream::iter(0..500)
        .map(|_| {
            let (state, _) = key.issue_state(ns, "bot", &uid, jiff::Timestamp::now());
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

    let secret = token_secret(client, ns, "bot").await.expect("token Secret");
    let consumed = annotation(&secret, "zoom-operator.io/consumed-states")
        .map(|v| v.split(',').count())
        .unwrap_or(0);
    assert!(
        consumed <= 1,
        "{consumed} states remembered after callbacks without a code"
    );

    // And the Secret still takes writes: a second authorization stores a new grant.
    let before = secret_key(&secret, "access_token");
    assert!(before.is_some());
    let start = wait_authorize_url(client, ns, "bot").await;
    web::authorize_in_browser(&start).await;
    let after = token_secret(client, ns, "bot").await.expect("token Secret");
    assert_ne!(secret_key(&after, "access_token"), before);
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
    let env = s2s_env("tn-unauth", "cid-u", "tok-u", "acc-u")
        .connection(Zc::s2s("bot"))
        .start()
        .await;
    let op = &env.op;
    op.wait_ready().await;

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
        let line = head_only(op, &headers, Duration::from_secs(5))
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
    assert_eq!(head_only(op, &headers, Duration::from_secs(1)).await, None);

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
    let answer = post_signed(op, "tok-u", &event_body("meeting.started", "acc-u")).await;
    assert_eq!(answer.status, 200);
}

// ----- 8. forced refresh rate limit ----------------------------------------------------------

#[tokio::test]
async fn forced_refreshes_are_rate_limited() {
    let env = s2s_env("tn-force", "cid-r", "tok-r", "acc-r")
        .connection(Zc::s2s("bot"))
        .start()
        .await;
    env.wait_ready("bot").await;
    let grants = || env.sim.stat("account_credentials_grants");
    let minted = grants().await;

    // The attack: a new refresh-requested value every 200 ms for 10 seconds. The first is
    // honoured at once; the others wait for the minute to be up.
    for i in 0..50 {
        request_refresh(&env.client, &env.ns, "bot", &format!("{i}")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = grants().await;
    assert_eq!(
        after,
        minted + 1,
        "one forced refresh, then none within the minute"
    );

    // Said so in an Event, and the last request is honoured once the minute is up.
    let list = events(&env.client, &env.ns).await;
    let said = list
        .iter()
        .find(|e| e.reason.as_deref() == Some("RefreshRateLimited"));
    let note = said.and_then(|e| e.note.clone()).unwrap_or_default();
    assert!(
        note.contains("one per minute"),
        "no RefreshRateLimited Event: {note:?}"
    );
    eventually("the deferred refresh", Duration::from_secs(90), || async {
        let now = grants().await;
        if now > after {
            Ok(())
        } else {
            Err(format!("{now} grants"))
        }
    })
    .await;
    let total = grants().await;
    assert!(
        total <= minted + 2,
        "{total} grants for one minute of requests"
    );
}

// ----- 5. metric labels a signer chooses ----------------------------------------------------

/// The series on `/metrics`: every sample line's name and labels (values dropped).
async fn metric_series(op: &Operator) -> std::collections::BTreeSet<String> {
    op.metrics_text()
        .await
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

#[tokio::test]
async fn ten_thousand_event_names_leave_metrics_the_same_size() {
    let env = s2s_env("tn-labels", "cid-l", "tok-l", "acc-l")
        .connection(Zc::s2s("bot"))
        .start()
        .await;
    let op = &env.op;
    env.wait_ready("bot").await;
    op.wait_ready().await;
    let signed = |name: String, account: &'static str| async move {
        let body = json!({"event": name, "event_ts": now_secs() * 1000, "payload": {"account_id": account}})
            .to_string()
            .into_bytes();
        try_post_signed(op, "tok-l", &body, None)
            .await
            .map(|a| a.status)
            .unwrap_or(0)
    };
    // Every outcome once, so that each fixed series exists before the count. A reconcile's
    // result is counted just after its status write, which is what `wait_ready` saw.
    for account in ["acc-l", "acc-other"] {
        assert_eq!(signed("meeting.started".to_owned(), account).await, 200);
    }
    let before = eventually(
        "the first reconcile to be counted",
        Duration::from_secs(30),
        || async {
            let series = metric_series(op).await;
            let counted = series
                .iter()
                .any(|s| s.starts_with("zoom_operator_reconciliations_total{result=\"ok\"}"));
            if counted {
                Ok(series)
            } else {
                Err("no reconcile counted yet".to_owned())
            }
        },
    )
    .await;

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

    let after = metric_series(op).await;
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
    let env = Env::new("tn-account")
        .sim(&["--consent=approve", "--token-lifetime=600"])
        // Registered without user:read:user: zoom-sim refuses users/me with Zoom's 4711.
        .app(
            ZoomApp::oauth("cid-a", "cid-a-secret")
                .secret_token("tok-a")
                .account("acc-a")
                .scopes("meeting:read:meeting"),
        )
        .connection(Zc::private_oauth("bot"))
        .start()
        .await;
    let (client, ns, op) = (&env.client, &env.ns, &env.op);

    // The app lacks user:read:user: Zoom refuses users/me for the callback's read and for
    // every retry until the scope is added.
    env.authorize("bot").await;

    // Not silent: EventsReady names the missing scope, and the event is unroutable.
    let zc = env
        .wait("bot", "EventsReady", "False", "AccountUnknown")
        .await;
    let message = condition_message(&zc, "EventsReady");
    assert!(message.contains("user:read:user"), "{message}");
    let answer = post_signed(op, "tok-a", &event_body("meeting.started", "acc-a")).await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("unroutable"), "{}", answer.body);

    // A new access token (the scope was added and the grant refreshed) is read with at once.
    let added = http()
        .post(format!("{}/sim/apps/cid-a/scopes", env.sim.url))
        .json(&json!({"scopes": "meeting:read:meeting user:read:user"}))
        .send()
        .await
        .expect("add the scope");
    assert!(added.status().is_success());
    request_refresh(client, ns, "bot", "scope-added").await;
    let zc = env.wait("bot", "EventsReady", "True", "Ready").await;
    let account = zc.status.and_then(|s| s.account).expect("account");
    assert_eq!(account.account_id.as_deref(), Some("acc-a"));
    eventually("the event routed", Duration::from_secs(30), || async {
        let answer = post_signed(op, "tok-a", &event_body("meeting.started", "acc-a")).await;
        if answer.status == 200 && answer.body.contains("accepted") {
            Ok(())
        } else {
            Err(format!("{} {}", answer.status, answer.body))
        }
    })
    .await;
}
