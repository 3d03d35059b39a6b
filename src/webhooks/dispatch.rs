//! What a verified event does to the connections it was routed to: `status.lastEventTime`
//! (coalesced), token deletion for `app_deauthorized`, forwarding to each sink within Zoom's
//! deadline, and sink health in the token Secret (written only when it changes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use futures::future::join_all;
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Client, Resource};
use serde_json::json;
use tokio::time::Instant;
use url::Url;

use super::Services;
use crate::api::{AuthType, ZoomConnection};
use crate::tokens::secret::{rfc3339, SinkUnreachable};
use crate::tokens::transition::{self, Change};
use crate::tokens::GrantReason;

use super::coalesce::{Coalescer, Decision, MIN_INTERVAL};
use super::delivery::{NotStored, Policy, Undelivered};
use super::forward::{display_sink, CloudEvent, Forwarder, SinkFailure};
use super::index::{deauthorization_targets, Route};
use super::EVENTS_MANAGER;

pub const APP_DEAUTHORIZED: &str = "app_deauthorized";

/// Of Zoom's deadline, what is kept for storing an event the sink did not take in time.
const STORE_RESERVE: std::time::Duration = std::time::Duration::from_millis(500);

/// A verified event, as the dispatcher needs it.
#[derive(Clone, Debug)]
pub struct VerifiedEvent {
    pub event: String,
    pub user_id: Option<String>,
    /// `payload.deauthorization_time` of `app_deauthorized`.
    pub deauthorization_time: Option<Timestamp>,
    pub event_ts_ms: Option<i64>,
    pub content_type: String,
    pub body: Bytes,
}

/// What became of one event.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Sinks that accepted the event.
    pub forwarded: usize,
    /// Not accepted by the sink in time, and stored for redelivery.
    pub stored: usize,
    /// `namespace/name: why` for each sink that did not accept it in time.
    pub sink_failures: Vec<String>,
    /// Connections whose tokens could not be deleted for `app_deauthorized`.
    pub deauthorization_failures: usize,
}

impl Outcome {
    /// Zoom gets 200 only when nothing needs a retry.
    pub fn accepted(&self) -> bool {
        self.sink_failures.is_empty() && self.deauthorization_failures == 0
    }
}

pub struct Dispatcher {
    ctx: Arc<Services>,
    forwarder: Forwarder,
    last_event: Arc<Mutex<Coalescer<String>>>,
    /// Per connection UID, the failing sink its token Secret was last seen to record (None:
    /// healthy), so the Secret is only written when health changes.
    sink_health: Arc<Mutex<HashMap<String, Option<String>>>>,
}

impl Dispatcher {
    pub fn new(ctx: Arc<Services>) -> Result<Self, reqwest::Error> {
        Ok(Dispatcher {
            forwarder: Forwarder::new(crate::sink::SinkResolver::new(
                ctx.allow_sink_hosts.clone(),
                Some(ctx.client.clone()),
            ))?,
            last_event: Arc::new(Mutex::new(Coalescer::new(MIN_INTERVAL))),
            sink_health: Arc::new(Mutex::new(HashMap::new())),
            ctx,
        })
    }

    /// Handles one event for `routes` (all of one app and account), answering by `deadline`.
    /// Writes that Zoom need not wait for (lastEventTime, sink health) run in the background.
    pub async fn dispatch(
        &self,
        routes: &[Arc<Route>],
        event: &VerifiedEvent,
        deadline: Instant,
    ) -> Outcome {
        let received = crate::clock::now();
        for route in routes {
            self.note_event(route, received);
        }

        // Spawned, so a deletion already under way finishes even if Zoom is answered first.
        let deauthorizations: Vec<_> = if event.event == APP_DEAUTHORIZED {
            deauthorization_targets(routes, event.user_id.as_deref())
                .into_iter()
                .map(|route| {
                    tokio::spawn(deauthorize(
                        self.ctx.clone(),
                        route.clone(),
                        event.deauthorization_time,
                    ))
                })
                .collect()
        } else {
            Vec::new()
        };

        let sends = routes.iter().filter_map(|route| {
            // Refused sinks (SinkNotAllowed) are never called; the condition says why.
            let Some(Ok(url)) = &route.sink else {
                return None;
            };
            Some(self.deliver(route, url, event, deadline))
        });
        let sends: Vec<_> = sends.collect();
        let in_flight = InFlight::new(&self.ctx.metrics, sends.len());
        let results = join_all(sends).await;
        drop(in_flight);

        let mut outcome = Outcome::default();
        for (route, sink, result, stored) in results {
            match (&result, &stored) {
                (Ok(()), _) => outcome.forwarded += 1,
                (Err(_), Some(Ok(()))) => outcome.stored += 1,
                (Err(why), not_stored) => {
                    let not_stored = match not_stored {
                        Some(Err(e)) => format!("; {e}"),
                        _ => String::new(),
                    };
                    tracing::warn!(connection = %format!("{}/{}", route.namespace, route.name), sink = %sink, error = %why, "forwarding a Zoom event failed and it could not be stored{not_stored}");
                    outcome.sink_failures.push(format!(
                        "{}/{}: {why}{not_stored}",
                        route.namespace, route.name
                    ));
                }
            }
            self.record_sink_health(route, sink, &result);
        }

        let count = deauthorizations.len();
        match tokio::time::timeout_at(deadline, join_all(deauthorizations)).await {
            Ok(done) => {
                outcome.deauthorization_failures =
                    done.into_iter().filter(|r| !matches!(r, Ok(true))).count();
            }
            Err(_) => outcome.deauthorization_failures = count,
        }
        outcome
    }

    /// One attempt within the connection's `delivery.timeout` (and Zoom's deadline, less what
    /// storing takes); an event the sink did not accept is stored for redelivery.
    async fn deliver<'r>(
        &self,
        route: &'r Arc<Route>,
        url: &Url,
        event: &VerifiedEvent,
        deadline: Instant,
    ) -> (
        &'r Arc<Route>,
        String,
        Result<(), SinkFailure>,
        Option<Result<(), NotStored>>,
    ) {
        let policy = Policy::of(&route.zc);
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(STORE_RESERVE)
            .min(policy.timeout);
        let ce = CloudEvent::for_zoom_event(
            &route.namespace,
            &route.name,
            &event.event,
            event.event_ts_ms,
            &event.content_type,
            &event.body,
        );
        let result = match ce.headers() {
            Ok(headers) => {
                self.forwarder
                    .send(url, headers, event.body.clone(), budget)
                    .await
            }
            Err(_) => Err(SinkFailure::Unreachable(
                "the event cannot be expressed as CloudEvent headers".to_owned(),
            )),
        };
        let stored = match &result {
            Ok(()) => {
                self.ctx.metrics.event_delivery("delivered");
                None
            }
            Err(why) => {
                let undelivered = Undelivered {
                    namespace: &route.namespace,
                    name: &route.name,
                    uid: &route.uid,
                    event: &event.event,
                    event_ts_ms: event.event_ts_ms,
                    content_type: &event.content_type,
                    body: &event.body,
                };
                let stored =
                    match tokio::time::timeout_at(deadline, self.ctx.events.put(&undelivered, why))
                        .await
                    {
                        Ok(stored) => stored,
                        Err(_) => Err(NotStored::Api(
                            "the API server did not answer in time".to_owned(),
                        )),
                    };
                self.ctx
                    .metrics
                    .event_delivery(if stored.is_ok() { "stored" } else { "failed" });
                Some(stored)
            }
        };
        (route, display_sink(url), result, stored)
    }

    fn note_event(&self, route: &Arc<Route>, at: Timestamp) {
        let decision = match self.last_event.lock() {
            Ok(mut coalescer) => coalescer.record(route.uid.clone(), at, std::time::Instant::now()),
            Err(_) => return,
        };
        let client = self.ctx.client.clone();
        let route = route.clone();
        match decision {
            Decision::WriteNow(time) => {
                tokio::spawn(write_last_event(client, route, time));
            }
            Decision::FlushAt(when) => {
                let coalescer = self.last_event.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(Instant::from_std(when)).await;
                    let time = coalescer
                        .lock()
                        .ok()
                        .and_then(|mut c| c.flush(&route.uid, std::time::Instant::now()));
                    if let Some(time) = time {
                        write_last_event(client, route, time).await;
                    }
                });
            }
            Decision::Coalesced => {}
        }
    }

    fn record_sink_health(
        &self,
        route: &Arc<Route>,
        sink: String,
        result: &Result<(), SinkFailure>,
    ) {
        let want = result.as_ref().err().map(|why| SinkUnreachable {
            sink,
            message: why.to_string(),
        });
        let want_sink = want.as_ref().map(|p| p.sink.clone());
        let known = self
            .sink_health
            .lock()
            .ok()
            .and_then(|m| m.get(&route.uid).cloned());
        if known.as_ref() == Some(&want_sink) {
            return;
        }
        let ctx = self.ctx.clone();
        let health = self.sink_health.clone();
        let route = route.clone();
        tokio::spawn(async move {
            let zc = &route.zc;
            let written = ctx
                .token_store(zc)
                .update(zc, |record| {
                    Ok::<_, ()>(transition::sink_health(record, want.as_ref()))
                })
                .await;
            match written {
                Ok(Ok(record)) => {
                    if let Ok(mut map) = health.lock() {
                        map.insert(route.uid.clone(), record.sink_problem.map(|p| p.sink));
                    }
                }
                Ok(Err(())) => {}
                Err(e) => tracing::warn!(
                    connection = %format!("{}/{}", route.namespace, route.name),
                    error = %e,
                    "could not record the sink's health in the token Secret"
                ),
            }
        });
    }
}

/// `status.lastEventTime` by server-side apply with the events field manager, so the
/// controller's status apply (which never sets it) and this never undo each other.
/// Counts events in flight to sinks in `zoom_operator_events_pending`, also when the request
/// is dropped halfway (Zoom hung up).
struct InFlight<'a> {
    metrics: &'a crate::metrics::Metrics,
    count: i64,
}

impl<'a> InFlight<'a> {
    fn new(metrics: &'a crate::metrics::Metrics, count: usize) -> Self {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        metrics.events_in_flight(count);
        InFlight { metrics, count }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.events_in_flight(-self.count);
    }
}

async fn write_last_event(client: Client, route: Arc<Route>, at: Timestamp) {
    let api: Api<ZoomConnection> = Api::namespaced(client, &route.namespace);
    let patch = json!({
        "apiVersion": ZoomConnection::api_version(&()),
        "kind": ZoomConnection::kind(&()),
        "status": {"lastEventTime": rfc3339(at)},
    });
    let params = PatchParams::apply(EVENTS_MANAGER).force();
    if let Err(e) = api
        .patch_status(&route.name, &params, &Patch::Apply(&patch))
        .await
    {
        // Gone connections are expected here (deleted while an event was in flight).
        tracing::debug!(connection = %format!("{}/{}", route.namespace, route.name), error = %e, "could not write lastEventTime");
    }
}

/// Deletes a connection's tokens after `app_deauthorized`; true when done (or nothing to do).
async fn deauthorize(ctx: Arc<Services>, route: Arc<Route>, at: Option<Timestamp>) -> bool {
    let zc = &route.zc;
    let who = format!("{}/{}", route.namespace, route.name);
    let message = match at {
        Some(t) => format!("Zoom sent app_deauthorized at {}", rfc3339(t)),
        None => "Zoom sent app_deauthorized".to_owned(),
    };
    let mut wrote = false;
    let result = ctx
        .token_store(zc)
        .update(zc, |record| {
            let change = transition::deauthorized(record, at, &message);
            wrote = change == Change::Write;
            Ok::<_, ()>(change)
        })
        .await;
    match result {
        Ok(_) if !wrote => true,
        Ok(_) => {
            tracing::info!(connection = %who, "app deauthorized at Zoom; tokens deleted");
            let secret = format!("{}/{}", route.namespace, zc.token_secret_name());
            let next = match zc.spec.auth_type {
                AuthType::ServerToServer => "the operator will try to mint a new token, which Zoom grants only while the app is installed".to_owned(),
                _ => "open status.authorizeURL (or run `zoom-operator authorize`) to authorize again".to_owned(),
            };
            let event = KubeEvent {
                type_: EventType::Warning,
                reason: GrantReason::Deauthorized.to_string(),
                note: Some(format!(
                    "The app was removed from the Zoom account (app_deauthorized); the tokens in Secret {secret} were deleted; {next}"
                )),
                action: "Deauthorize".to_owned(),
                secondary: None,
            };
            ctx.recorder.publish(&event, &zc.object_ref(&())).await;
            true
        }
        Err(e) => {
            tracing::warn!(connection = %who, error = %e, "could not delete the tokens after app_deauthorized");
            false
        }
    }
}
