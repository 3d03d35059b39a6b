//! Events owned until delivered (api.md section 5, "Delivery").
//!
//! Zoom waits 3 seconds for an answer and retries a failed delivery only minutes later, maybe
//! with the original (by then stale) signature. So the operator owns the retries: an event
//! the sink did not accept within `delivery.timeout` is stored in the API server, as a ConfigMap
//! in the operator's namespace (which tenants can neither read nor write; a ConfigMap, so that
//! the operator needs no list, patch or delete on Secrets anywhere), and Zoom is answered 200. Every replica takes webhooks and can store; only the
//! leader redelivers, following the connection's `delivery` policy, and after the last retry
//! sends the event to `deadLetterSink` or drops it with a Warning Event,
//! `EventsReady=False/EventsDropped` and a metric.
//!
//! Storage is bounded per connection and in all ([`Limits`]); when an event can be neither
//! delivered nor stored, Zoom is answered 503. A stored event is named after the hash of its
//! body and its connection, so Zoom's own retry of a stored event stores nothing twice.
//! Delivery is at least once: a sink de-duplicates by `ce-id`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use tokio_util::sync::CancellationToken;

use super::Services;
use crate::api::{SinkSpec, ZoomConnection};
pub use crate::config::Limits;
use crate::tokens::secret::rfc3339;
pub use crate::validation::DeliveryPolicy as Policy;

use super::forward::{display_sink, CloudEvent, Forwarder, SinkFailure};

/// Marks a stored event (value "true").
pub const PENDING_LABEL: &str = "zoom-operator.io/pending-event";
/// The UID of the connection a stored event is for.
pub const CONNECTION_UID_LABEL: &str = "zoom-operator.io/connection-uid";
const CONNECTION: &str = "zoom-operator.io/connection";
const EVENT: &str = "zoom-operator.io/event";
const EVENT_TS: &str = "zoom-operator.io/event-ts";
const RECEIVED: &str = "zoom-operator.io/received";
const ATTEMPTS: &str = "zoom-operator.io/attempts";
const NEXT_ATTEMPT: &str = "zoom-operator.io/next-attempt";
const LAST_ERROR: &str = "zoom-operator.io/last-error";
const LAST_STATUS: &str = "zoom-operator.io/last-status";
const BODY_KEY: &str = "body";
const CONTENT_TYPE_KEY: &str = "content-type";

/// Stored events redelivered at once by the leader.
const REDELIVERY_CONCURRENCY: usize = 8;

/// Why an event could not be stored: it gets 503, so that Zoom retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotStored {
    #[error("{0} undelivered events are stored for this connection already (--max-pending-events-per-connection)")]
    ConnectionFull(usize),
    #[error("{0} undelivered events are stored already (--max-pending-events)")]
    Full(usize),
    #[error("the event could not be stored: {0}")]
    Api(String),
}

/// One event for one connection, as received.
#[derive(Clone, Debug)]
pub struct Undelivered<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub event: &'a str,
    pub event_ts_ms: Option<i64>,
    pub content_type: &'a str,
    pub body: &'a Bytes,
}

/// The stored events: the metadata of their ConfigMaps, cached on every replica (bodies are read
/// only to redeliver), and the writes.
pub struct EventStore {
    api: Api<ConfigMap>,
    meta: Api<PartialObjectMeta<ConfigMap>>,
    limits: Limits,
    cache: Store<PartialObjectMeta<ConfigMap>>,
    writer: Mutex<Option<reflector::store::Writer<PartialObjectMeta<ConfigMap>>>>,
    /// Stored by this replica and not yet seen in the cache, by name → connection UID: counted
    /// against the limits so that a burst cannot overshoot them.
    recent: Mutex<HashMap<String, String>>,
}

fn selector() -> String {
    format!("{PENDING_LABEL}=true")
}

impl EventStore {
    pub fn new(client: Client, namespace: &str, limits: Limits) -> Arc<Self> {
        let (cache, writer) = reflector::store();
        Arc::new(EventStore {
            api: Api::namespaced(client.clone(), namespace),
            meta: Api::namespaced(client, namespace),
            limits,
            cache,
            writer: Mutex::new(Some(writer)),
            recent: Mutex::new(HashMap::new()),
        })
    }

    /// Keeps the cache current until `shutdown`; run once per process.
    pub async fn watch(
        self: Arc<Self>,
        metrics: crate::metrics::Metrics,
        shutdown: CancellationToken,
    ) {
        let Some(writer) = self.writer.lock().ok().and_then(|mut w| w.take()) else {
            return;
        };
        let stream = watcher(
            self.meta.clone(),
            watcher::Config::default().labels(&selector()),
        )
        .default_backoff()
        .modify(|meta| meta.metadata.managed_fields = None)
        .reflect(writer);
        let mut stream = std::pin::pin!(stream);
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                None => return,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching stored events failed; retrying")
                }
                Some(Ok(_)) => {
                    let cached = self.cache.state();
                    if let Ok(mut recent) = self.recent.lock() {
                        recent.retain(|name, _| {
                            !cached
                                .iter()
                                .any(|m| m.metadata.name.as_deref() == Some(name))
                        });
                    }
                    metrics.set_events_stored(self.len());
                }
            }
        }
    }

    /// Stored events in all.
    pub fn len(&self) -> usize {
        let cached = self.cache.state().len();
        cached + self.recent.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stored events of the connection with `uid`.
    pub fn pending_for(&self, uid: &str) -> usize {
        let cached = self
            .cache
            .state()
            .iter()
            .filter(|m| label(m, CONNECTION_UID_LABEL) == Some(uid))
            .count();
        let recent = self
            .recent
            .lock()
            .map(|r| r.values().filter(|u| *u == uid).count())
            .unwrap_or(0);
        cached + recent
    }

    /// Stores one event for redelivery; Ok also when it is stored already (Zoom retried it).
    pub async fn put(&self, event: &Undelivered<'_>, why: &SinkFailure) -> Result<(), NotStored> {
        if self.limits.total == 0 {
            return Err(NotStored::Full(0));
        }
        let total = self.len();
        if total >= self.limits.total {
            return Err(NotStored::Full(total));
        }
        let mine = self.pending_for(event.uid);
        if mine >= self.limits.per_connection {
            return Err(NotStored::ConnectionFull(mine));
        }
        let name = stored_name(event.uid, event.body);
        let now = crate::clock::now();
        let mut annotations = BTreeMap::from([
            (
                CONNECTION.to_owned(),
                format!("{}/{}", event.namespace, event.name),
            ),
            (EVENT.to_owned(), event.event.to_owned()),
            (RECEIVED.to_owned(), rfc3339(now)),
            (ATTEMPTS.to_owned(), "1".to_owned()),
            (NEXT_ATTEMPT.to_owned(), rfc3339(now)),
            (LAST_ERROR.to_owned(), why.to_string()),
        ]);
        if let SinkFailure::Status(code) = why {
            annotations.insert(LAST_STATUS.to_owned(), code.to_string());
        }
        if let Some(ts) = event.event_ts_ms {
            annotations.insert(EVENT_TS.to_owned(), ts.to_string());
        }
        let stored = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([
                    (PENDING_LABEL.to_owned(), "true".to_owned()),
                    (CONNECTION_UID_LABEL.to_owned(), event.uid.to_owned()),
                ])),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([
                (BODY_KEY.to_owned(), ByteString(event.body.to_vec())),
                (
                    CONTENT_TYPE_KEY.to_owned(),
                    ByteString(event.content_type.as_bytes().to_vec()),
                ),
            ])),
            ..ConfigMap::default()
        };
        match self.api.create(&PostParams::default(), &stored).await {
            Ok(_) => {
                if let Ok(mut recent) = self.recent.lock() {
                    recent.insert(name, event.uid.to_owned());
                }
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(e) => Err(NotStored::Api(e.to_string())),
        }
    }

    /// Stored events whose next attempt is due, oldest first.
    fn due(&self, now: Timestamp) -> Vec<String> {
        let mut due: Vec<(Timestamp, String)> = self
            .cache
            .state()
            .iter()
            .filter_map(|m| {
                let at = annotation(m, NEXT_ATTEMPT)
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .unwrap_or(Timestamp::UNIX_EPOCH);
                (at <= now).then(|| Some((at, m.metadata.name.clone()?)))?
            })
            .collect();
        due.sort();
        due.into_iter().map(|(_, name)| name).collect()
    }
}

/// The connection a stored event is for, to reconcile it when its events come and go.
pub fn connection_of(
    m: &PartialObjectMeta<ConfigMap>,
) -> Option<kube::runtime::reflector::ObjectRef<ZoomConnection>> {
    let (ns, name) = annotation(m, CONNECTION)?.split_once('/')?;
    Some(kube::runtime::reflector::ObjectRef::new(name).within(ns))
}

fn label<'a>(m: &'a PartialObjectMeta<ConfigMap>, key: &str) -> Option<&'a str> {
    m.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn annotation<'a>(m: &'a PartialObjectMeta<ConfigMap>, key: &str) -> Option<&'a str> {
    m.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// `zoom-event-<24 hex of the body's SHA-256>-<the connection UID's first 8 characters>`.
fn stored_name(uid: &str, body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let hash = hex::encode(Sha256::digest(body));
    let uid: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("zoom-event-{}-{uid}", &hash[..24])
}

/// Redelivers stored events until `shutdown` (the end of this replica's leadership).
pub async fn redeliver(ctx: Arc<Services>, store: Arc<EventStore>, shutdown: CancellationToken) {
    let forwarder = match Forwarder::new(crate::sink::SinkResolver::new(
        ctx.allow_sink_hosts.clone(),
        Some(ctx.client.clone()),
    )) {
        Ok(f) => Arc::new(f),
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client for redelivery");
            return;
        }
    };
    tracing::info!("redelivering stored events");
    loop {
        let due = store.due(crate::clock::now());
        let work = futures::stream::iter(due)
            .map(|name| attempt(&ctx, &store, &forwarder, name))
            .buffer_unordered(REDELIVERY_CONCURRENCY)
            .for_each(|()| async {});
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = work => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// What one redelivery round decided for a stored event.
enum Next {
    Delivered,
    Retry {
        attempts: u32,
        at: Timestamp,
        failure: SinkFailure,
    },
    GiveUp,
    Discard(&'static str),
}

/// A stored event, as read back.
struct Stored {
    uid: String,
    namespace: String,
    connection: String,
    event: String,
    event_ts: Option<i64>,
    content_type: String,
    body: Bytes,
    /// Attempts made so far (the first one included).
    attempts: u32,
    last_error: String,
    last_status: Option<u16>,
}

impl Stored {
    fn read(map: ConfigMap) -> Option<Stored> {
        let ann = map.metadata.annotations.unwrap_or_default();
        let labels = map.metadata.labels.unwrap_or_default();
        let data = map.binary_data.unwrap_or_default();
        let (namespace, connection) = ann.get(CONNECTION)?.split_once('/')?;
        Some(Stored {
            uid: labels
                .get(CONNECTION_UID_LABEL)
                .cloned()
                .unwrap_or_default(),
            namespace: namespace.to_owned(),
            connection: connection.to_owned(),
            event: ann.get(EVENT).cloned().unwrap_or_default(),
            event_ts: ann.get(EVENT_TS).and_then(|t| t.parse().ok()),
            content_type: data
                .get(CONTENT_TYPE_KEY)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .unwrap_or_else(|| "application/json".to_owned()),
            body: Bytes::from(data.get(BODY_KEY).map(|b| b.0.clone()).unwrap_or_default()),
            attempts: ann.get(ATTEMPTS).and_then(|a| a.parse().ok()).unwrap_or(1),
            last_error: ann.get(LAST_ERROR).cloned().unwrap_or_default(),
            last_status: ann.get(LAST_STATUS).and_then(|s| s.parse().ok()),
        })
    }
}

async fn attempt(ctx: &Arc<Services>, store: &EventStore, forwarder: &Forwarder, name: String) {
    let Some((stored, zc)) = load(ctx, store, &name).await else {
        return;
    };
    let policy = Policy::of(&zc);
    let ce = CloudEvent::for_zoom_event(
        &stored.namespace,
        &stored.connection,
        &stored.event,
        stored.event_ts,
        &stored.content_type,
        &stored.body,
    );
    let sink = zc.spec.events.as_ref().map(|e| e.sink.clone());
    let next = match &sink {
        None => Next::Discard("its connection no longer has a sink"),
        // `attempts` includes the first; `retry` counts those after it.
        Some(_) if stored.attempts > policy.retry => Next::GiveUp,
        Some(sink) => {
            let sent = match sink_url(ctx, sink, &stored.namespace).await {
                Err(problem) => Err(SinkFailure::Unreachable(problem)),
                Ok(url) => send(forwarder, &url, &ce, None, &stored.body, policy.timeout).await,
            };
            after_send(sent, stored.attempts, &policy)
        }
    };
    match next {
        Next::Delivered => {
            ctx.metrics.event_delivery("redelivered");
            delete(store, &name).await;
        }
        Next::Discard(why) => discard(ctx, store, &name, why).await,
        Next::Retry {
            attempts,
            at,
            failure,
        } => {
            ctx.metrics.event_delivery("failed");
            reschedule(store, &name, attempts, at, &failure).await;
        }
        Next::GiveUp => {
            let failed_sink = match &sink {
                Some(sink) => sink_url(ctx, sink, &stored.namespace).await.ok(),
                None => None,
            };
            let failed = Failed {
                sink: failed_sink.as_ref(),
                status: stored.last_status,
            };
            if dead_letter(ctx, forwarder, &policy, &stored, &ce, failed).await {
                ctx.metrics.event_delivery("dead_lettered");
            } else {
                ctx.metrics.event_delivery("dropped");
                dropped(ctx, &zc, &stored).await;
            }
            delete(store, &name).await;
        }
    }
}

/// The stored event `name` and its connection; None when there is nothing to do now (it was
/// delivered meanwhile, the API server is unwell, or it was discarded as orphaned).
async fn load(
    ctx: &Arc<Services>,
    store: &EventStore,
    name: &str,
) -> Option<(Stored, ZoomConnection)> {
    let map = store.api.get_opt(name).await.ok()??;
    let Some(stored) = Stored::read(map) else {
        discard(ctx, store, name, "it names no connection").await;
        return None;
    };
    let api: Api<ZoomConnection> = Api::namespaced(ctx.client.clone(), &stored.namespace);
    match api.get_opt(&stored.connection).await {
        Ok(Some(zc)) if zc.metadata.uid.as_deref() == Some(stored.uid.as_str()) => {
            Some((stored, zc))
        }
        Ok(_) => {
            discard(ctx, store, name, "its connection was deleted").await;
            None
        }
        Err(_) => None,
    }
}

/// What follows a send: delivered, or another attempt after the policy's backoff. Pure but
/// for the clock.
fn after_send(sent: Result<(), SinkFailure>, attempts: u32, policy: &Policy) -> Next {
    match sent {
        Ok(()) => Next::Delivered,
        Err(failure) => {
            let wait = jiff::SignedDuration::try_from(policy.backoff(attempts)).unwrap_or_default();
            Next::Retry {
                attempts: attempts.saturating_add(1),
                at: crate::clock::now()
                    .checked_add(wait)
                    .unwrap_or(Timestamp::MAX),
                failure,
            }
        }
    }
}

async fn reschedule(
    store: &EventStore,
    name: &str,
    attempts: u32,
    at: Timestamp,
    failure: &SinkFailure,
) {
    let status = match failure {
        SinkFailure::Status(code) => Some(code.to_string()),
        _ => None,
    };
    let patch = serde_json::json!({"metadata": {"annotations": {
        ATTEMPTS: attempts.to_string(),
        NEXT_ATTEMPT: rfc3339(at),
        LAST_ERROR: failure.to_string(),
        LAST_STATUS: status,
    }}});
    if let Err(e) = store
        .api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(event = %name, error = %e, "could not reschedule a stored event");
    }
}

/// Sends the event to the policy's dead-letter sink, if it has one; whether that worked.
async fn dead_letter(
    ctx: &Services,
    forwarder: &Forwarder,
    policy: &Policy,
    stored: &Stored,
    ce: &CloudEvent,
    failed: Failed<'_>,
) -> bool {
    let Some(dls) = &policy.dead_letter_sink else {
        return false;
    };
    match sink_url(ctx, dls, &stored.namespace).await {
        Ok(url) => send(
            forwarder,
            &url,
            ce,
            Some(failed),
            &stored.body,
            policy.timeout,
        )
        .await
        .is_ok(),
        Err(_) => false,
    }
}

/// Where and how an event failed, for the dead-letter sink.
struct Failed<'a> {
    sink: Option<&'a url::Url>,
    status: Option<u16>,
}

/// The sink's URL under the same policy as first deliveries (own-namespace Services, no
/// ExternalName; the resolver checks addresses at connect time).
async fn sink_url(ctx: &Services, sink: &SinkSpec, ns: &str) -> Result<url::Url, String> {
    let allowed = &ctx.allow_sink_hosts;
    let url = crate::sink::resolve(sink, ns, allowed).map_err(|p| p.0)?;
    match crate::sink::check_sink_service(&ctx.client, sink, ns, allowed).await {
        Some(problem) => Err(problem.0),
        None => Ok(url),
    }
}

/// POSTs the CloudEvent; to a dead-letter sink with Knative's `knativeerrordest` and
/// `knativeerrorcode` extensions naming where and how it failed.
async fn send(
    forwarder: &Forwarder,
    url: &url::Url,
    ce: &CloudEvent,
    failed: Option<Failed<'_>>,
    body: &Bytes,
    timeout: Duration,
) -> Result<(), SinkFailure> {
    let mut headers = ce.headers().map_err(|_| {
        SinkFailure::Unreachable("the event cannot be expressed as CloudEvent headers".to_owned())
    })?;
    if let Some(failed) = failed {
        if let Some(Ok(v)) = failed.sink.map(|dest| display_sink(dest).parse()) {
            headers.insert("ce-knativeerrordest", v);
        }
        if let Some(code) = failed.status {
            headers.insert("ce-knativeerrorcode", code.into());
        }
    }
    forwarder.send(url, headers, body.clone(), timeout).await
}

async fn delete(store: &EventStore, name: &str) {
    match store.api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => tracing::warn!(event = %name, error = %e, "could not delete a delivered event"),
    }
}

async fn discard(ctx: &Services, store: &EventStore, name: &str, why: &str) {
    tracing::info!(event = %name, why, "discarding a stored event");
    ctx.metrics.event_delivery("discarded");
    delete(store, name).await;
}

/// An event given up on: a Warning Event on the connection and a note in its token Secret,
/// from which the reconciler reports `EventsReady=False/EventsDropped`.
async fn dropped(ctx: &Services, zc: &ZoomConnection, stored: &Stored) {
    let why = &stored.last_error;
    let note = format!(
        "A Zoom event ({}) was dropped after {} delivery attempts: {why}. Set spec.events.delivery.deadLetterSink to keep such events",
        stored.event, stored.attempts
    );
    tracing::warn!(connection = %format!("{}/{}", zc.metadata.namespace.as_deref().unwrap_or_default(), zc.metadata.name.as_deref().unwrap_or_default()), %note, "dropped an event");
    ctx.recorder
        .publish(
            &KubeEvent {
                type_: EventType::Warning,
                reason: "EventsDropped".to_owned(),
                note: Some(note),
                action: "Deliver".to_owned(),
                secondary: None,
            },
            &zc.object_ref(&()),
        )
        .await;
    let now = crate::clock::now();
    let written = ctx
        .token_store(zc)
        .update(zc, |record| {
            Ok::<_, ()>(crate::tokens::transition::event_dropped(record, why, now))
        })
        .await;
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not record a dropped event in the token Secret");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_are_stable_and_valid() {
        let a = stored_name("0b0c5d1e-aaaa-bbbb", b"{}");
        assert_eq!(a, stored_name("0b0c5d1e-aaaa-bbbb", b"{}"));
        assert_ne!(a, stored_name("0b0c5d1e-aaaa-bbbb", b"{ }"));
        assert_ne!(a, stored_name("99999999-aaaa-bbbb", b"{}"));
        assert!(a.len() <= 63 && a.starts_with("zoom-event-"), "{a}");
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        // Whatever a UID holds, the name stays a DNS label.
        let odd = stored_name("../X Y/..", b"{}");
        assert!(
            odd.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{odd}"
        );
    }
}
