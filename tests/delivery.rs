//! Events owned until delivered (api.md section 5, "Delivery"), against the real local control
//! plane: a sink down for two minutes while 200 events arrive, the replica that took events
//! SIGKILLed right after answering, dead-letter sinks and dropped events, and the bound on
//! what is stored (ConfigMaps in the operator's namespace).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::sink::RecordingSink;
use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use zoom_operator::api::ZoomConnection;

/// A Server-to-Server app at a fresh zoom-sim, its credentials Secret `zoom-app`, connection
/// `bot` forwarding to `sink` with `delivery`, and an operator (sinks on 127.0.0.1 allowed)
/// with `extra`, routing events to `bot`.
async fn setup(prefix: &str, sink: &RecordingSink, delivery: Value, extra: &[&str]) -> Env {
    let env = Env::new(prefix)
        .app(ZoomApp::s2s("cid-q", "acc-q").secret_token("tok-q"))
        .connection(connection(sink, delivery))
        .operator(&["--allow-sink-host=127.0.0.1"])
        .operator(extra)
        .start()
        .await;
    env.wait_ready("bot").await;
    wait_routable(&env.op).await;
    env
}

fn connection(sink: &RecordingSink, delivery: Value) -> Zc {
    Zc::s2s("bot").sink_uri(&sink.url).delivery(delivery)
}

/// A distinct `meeting.started` body for event number `i`.
fn body(i: usize) -> Vec<u8> {
    json!({"event": "meeting.started", "event_ts": now_secs() * 1000, "payload": {"account_id": "acc-q", "object": {"id": i.to_string()}}})
        .to_string()
        .into_bytes()
}

fn ce_id(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// POSTs `body` signed like Zoom; (status, answer, time taken).
async fn post(op: &Operator, body: &[u8]) -> (u16, String, Duration) {
    let started = Instant::now();
    match try_post_signed(op, "tok-q", body, None).await {
        Ok(a) => (a.status, a.body, a.elapsed),
        // Not listening yet (a replica starting): status 0, so callers can wait.
        Err(e) => (0, e.to_string(), started.elapsed()),
    }
}

/// Waits until the operator routes events to `name` (its index caught up).
async fn wait_routable(op: &Operator) {
    eventually(
        "the connection to be routable",
        Duration::from_secs(60),
        || async {
            let (status, text, _) = post(
                op,
                b"{\"event\":\"meeting.ended\",\"payload\":{\"account_id\":\"acc-q\"}}",
            )
            .await;
            if status == 200 && text.contains("accepted") {
                Ok(())
            } else {
                Err(format!("{status} {text}"))
            }
        },
    )
    .await;
}

/// The ce-ids the sink accepted: what it received from index `from` on, while answering 200.
fn accepted_since(sink: &RecordingSink, from: usize) -> BTreeSet<String> {
    sink.received()
        .into_iter()
        .skip(from)
        .filter_map(|r| r.header("ce-id").map(str::to_owned))
        .collect()
}

/// Brings the sink back and waits until it has accepted every event of `sent`.
async fn recover_and_wait_for_all(sink: &RecordingSink, sent: &BTreeSet<String>, within: Duration) {
    let up_from = sink.received().len();
    sink.answer(0, Duration::ZERO);
    eventually("every event at the sink", within, || async {
        let got = accepted_since(sink, up_from);
        let missing = sent.difference(&got).count();
        if missing == 0 {
            Ok(())
        } else {
            Err(format!("{missing} of {} not delivered yet", sent.len()))
        }
    })
    .await;
}

async fn stored_events(client: &kube::Client, ns: &str) -> usize {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("zoom-operator.io/pending-event=true"))
        .await
        .map(|l| l.items.len())
        .unwrap_or(usize::MAX)
}

async fn pending_in_status(client: &kube::Client, ns: &str, name: &str) -> Option<u32> {
    Api::<ZoomConnection>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()?
        .status?
        .pending_events
}

/// Sends events `range` one after another; each must be answered 200 within Zoom's 3 s.
async fn send_all(op: &Operator, range: std::ops::Range<usize>) -> BTreeSet<String> {
    let answers = futures::stream::iter(range)
        .map(|i| async move {
            let b = body(i);
            let (status, text, took) = post(op, &b).await;
            (ce_id(&b), status, text, took)
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    let mut ids = BTreeSet::new();
    for (id, status, text, took) in answers {
        assert_eq!(status, 200, "{text}");
        assert!(took < Duration::from_secs(3), "answered after {took:?}");
        ids.insert(id);
    }
    ids
}

#[tokio::test]
async fn a_sink_down_for_two_minutes_gets_every_event_after_it_recovers() {
    let sink = RecordingSink::start("127.0.0.1").await;
    let env = setup(
        "dl-outage",
        &sink,
        json!({"retry": 60, "backoffPolicy": "linear", "backoffDelay": "PT2S", "timeout": "PT1S"}),
        &["--max-pending-events-per-connection=300"],
    )
    .await;
    let (client, ns, op) = (&env.client, &env.ns, &env.op);

    // The sink goes down; 200 events arrive over the next minute, each answered 200 in time.
    sink.answer(503, Duration::ZERO);
    let down_at = Instant::now();
    let mut sent = BTreeSet::new();
    for round in 0..4 {
        sent.extend(send_all(op, round * 50..(round + 1) * 50).await);
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
    assert_eq!(sent.len(), 200);
    let pending = eventually(
        "pendingEvents in status",
        Duration::from_secs(30),
        || async {
            match pending_in_status(client, ns, "bot").await {
                Some(n) if n > 0 => Ok(n),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(pending <= 200, "{pending}");
    let zc = env
        .wait("bot", "EventsReady", "False", "SinkUnreachable")
        .await;
    let message = condition_message(&zc, "EventsReady");
    assert!(message.contains("redelivered"), "{message}");

    // Two minutes after it went down, the sink is back: every event reaches it.
    tokio::time::sleep(Duration::from_secs(120).saturating_sub(down_at.elapsed())).await;
    recover_and_wait_for_all(&sink, &sent, Duration::from_secs(180)).await;
    eventually("nothing left stored", Duration::from_secs(60), || async {
        let stored = stored_events(client, ns).await;
        let in_status = pending_in_status(client, ns, "bot").await;
        if stored == 0 && in_status == Some(0) {
            Ok(())
        } else {
            Err(format!("{stored} stored, status says {in_status:?}"))
        }
    })
    .await;
    let m = op.metrics_text().await;
    assert!(
        m.contains(r#"zoom_operator_events_delivered_total{result="redelivered"} "#)
            && m.contains("zoom_operator_events_pending 0"),
        "{m}"
    );
}

#[tokio::test]
async fn events_taken_by_a_replica_killed_right_after_answering_are_not_lost() {
    let sink = RecordingSink::start("127.0.0.1").await;
    let mut env = setup(
        "dl-kill",
        &sink,
        json!({"retry": 30, "backoffPolicy": "linear", "backoffDelay": "PT1S"}),
        &[],
    )
    .await;
    // Each replica serves on its own URL.
    let b = env.sim.operator(&env.ns, &["--allow-sink-host=127.0.0.1"]);
    wait_routable(&b).await;

    // Replica A (the leader) takes 50 events the sink refuses, answers 200 for each, and is
    // SIGKILLed right after the last answer.
    sink.answer(503, Duration::ZERO);
    let sent = send_all(&env.op, 0..50).await;
    env.op.kill();
    tokio::time::sleep(Duration::from_secs(5)).await;

    // The other replica takes over the lease and delivers them all once the sink is back.
    recover_and_wait_for_all(&sink, &sent, Duration::from_secs(120)).await;
    drop(b);
}

#[tokio::test]
async fn after_the_last_retry_events_go_to_the_dead_letter_sink_or_are_dropped_and_said_so() {
    let sink = RecordingSink::start("127.0.0.1").await;
    let dlq = RecordingSink::start("127.0.0.1").await;
    let env = setup(
        "dl-dlq",
        &sink,
        json!({"retry": 2, "backoffDelay": "PT1S", "deadLetterSink": {"uri": dlq.url}}),
        &[],
    )
    .await;
    let (client, ns, op) = (&env.client, &env.ns, &env.op);
    sink.answer(500, Duration::ZERO);
    let first = body(1);
    let (status, text, _) = post(op, &first).await;
    assert!(
        status == 200 && text.contains("\"stored\":1"),
        "{status} {text}"
    );
    let first = first.as_slice();

    // First attempt + 2 retries, then the dead-letter sink, with Knative's extensions.
    let letter = eventually("the dead letter", Duration::from_secs(60), || async {
        dlq.received()
            .into_iter()
            .next()
            .ok_or_else(|| "none yet".to_owned())
    })
    .await;
    assert_eq!(
        letter.header("ce-id").map(str::to_owned),
        Some(ce_id(first))
    );
    assert_eq!(letter.header("ce-knativeerrorcode"), Some("500"));
    assert_eq!(
        letter.header("ce-knativeerrordest"),
        Some(sink.url.as_str())
    );
    assert_eq!(letter.body, first.to_vec());
    let tries = sink
        .received()
        .iter()
        .filter(|r| r.header("ce-id").map(str::to_owned) == Some(ce_id(first)))
        .count();
    assert_eq!(tries, 3, "one attempt and two retries");

    // Without a dead-letter sink the event is dropped: a Warning Event and EventsDropped.
    env.apply(&connection(
        &sink,
        json!({"retry": 1, "backoffDelay": "PT1S"}),
    ))
    .await;
    let second = body(2);
    eventually(
        "the second event stored",
        Duration::from_secs(30),
        || async {
            let (status, text, _) = post(op, &second).await;
            if status == 200 && text.contains("\"stored\":1") {
                Ok(())
            } else {
                Err(format!("{status} {text}"))
            }
        },
    )
    .await;
    let zc = env
        .wait("bot", "EventsReady", "False", "EventsDropped")
        .await;
    let message = condition_message(&zc, "EventsReady");
    assert!(message.contains("deadLetterSink"), "{message}");
    let warned = events(client, ns).await.into_iter().any(|e| {
        e.reason.as_deref() == Some("EventsDropped") && e.type_.as_deref() == Some("Warning")
    });
    assert!(warned, "a Warning Event for the dropped event");
    assert_eq!(
        dlq.received().len(),
        1,
        "nothing else went to the old dead-letter sink"
    );
}

#[tokio::test]
async fn storage_is_bounded_and_beyond_it_zoom_is_answered_503() {
    let sink = RecordingSink::start("127.0.0.1").await;
    let env = setup(
        "dl-bound",
        &sink,
        json!({"retry": 100, "backoffDelay": "PT60S"}),
        &["--max-pending-events-per-connection=5"],
    )
    .await;
    let (client, ns, op) = (&env.client, &env.ns, &env.op);
    sink.answer(503, Duration::ZERO);

    let mut statuses = Vec::new();
    for i in 0..12 {
        let (status, text, _) = post(op, &body(100 + i)).await;
        statuses.push((status, text));
        // Let the store's cache see each write.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stored = statuses
        .iter()
        .filter(|(s, t)| *s == 200 && t.contains("\"stored\":1"))
        .count();
    let refused: Vec<&String> = statuses
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(stored, 5, "{statuses:?}");
    assert!(!refused.is_empty(), "{statuses:?}");
    assert!(
        refused.iter().all(|t| t.contains("could not be stored")),
        "{refused:?}"
    );
    assert_eq!(stored_events(client, ns).await, 5);
}

/// What Zoom alone achieves: no storage, no redelivery (`--max-pending-events=0`,
/// `delivery.retry: 0`), a sink down for the first attempt. zoom-sim retries 5 minutes later on
/// its simulated clock: a retry with the original timestamp is refused as stale by the
/// operator's 5-minute window, a re-signed one reaches the sink.
#[tokio::test]
async fn zoom_retries_alone_reach_the_sink_only_when_re_signed() {
    let sink = RecordingSink::start("127.0.0.1").await;
    let env = setup(
        "dl-zoom",
        &sink,
        json!({"retry": 0}),
        &["--max-pending-events=0"],
    )
    .await;
    let (client, ns, op, sim) = (&env.client, &env.ns, &env.op, &env.sim);
    let url = format!("{}/zoom/event", op.public_url);

    for (mode, reaches) in [("original", false), ("fresh", true)] {
        sim.admin("/sim/config", json!({"retry_timestamp": mode}))
            .await;
        let object = format!("zoom-retry-{mode}");
        let sent_to_sink = |sink: &RecordingSink| {
            sink.received()
                .iter()
                .filter(|r| String::from_utf8_lossy(&r.body).contains(&object))
                .count()
        };
        // The first attempt: the sink is down, nothing is stored, Zoom gets 503.
        sink.answer(503, Duration::ZERO);
        let first = sim
            .admin(
                "/sim/webhooks/send",
                json!({"client_id": "cid-q", "event": "meeting.started", "url": url,
                   "account_id": "acc-q", "payload": {"object": {"id": object}}}),
            )
            .await;
        assert_eq!(first["status"], 503, "{mode}: {first}");
        assert_eq!(stored_events(client, ns).await, 0);
        let tried = sent_to_sink(&sink);

        // The sink recovers; Zoom's first retry comes 5 minutes later.
        sink.answer(0, Duration::ZERO);
        let retries = sim.stat("webhook_retries").await;
        sim.admin("/sim/clock", json!({"advance_secs": 301})).await;
        eventually("zoom-sim's retry", Duration::from_secs(30), || async {
            let now = sim.stat("webhook_retries").await;
            if now > retries {
                Ok(())
            } else {
                Err(format!("{now} retries"))
            }
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = sent_to_sink(&sink);
        if reaches {
            assert_eq!(
                after,
                tried + 1,
                "{mode}: the re-signed retry reached the sink"
            );
        } else {
            assert_eq!(after, tried, "{mode}: a stale retry never reaches the sink");
        }
    }
}
