//! Kubernetes Events about connections (`events.k8s.io/v1`), published as kube's `Recorder`
//! publishes them: the same fields, and an Event repeated within six minutes becomes a series
//! on the first one (a merge patch of `series`) instead of a new object.
//!
//! Unlike kube's recorder, the series cache is bounded ([`MAX_SERIES`]) and keeps only what a
//! repeat needs (the Event's namespace, name and count), not whole Events. The memory
//! benchmark showed kube's cache holding 2.6 KiB per connection (one Event each, on
//! creation), in a table that never shrank once the entries expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as KubeEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// How long a repeat extends the first Event's series (client-go and kube use the same).
const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);
/// Series remembered at most; past it a repeat creates an Event of its own.
const MAX_SERIES: usize = 1024;

/// Publishes Events as the operator (`reportingController: zoom-operator`).
///
/// Off the caller's path: [`Recorder::publish`] queues the Event and returns, and a background
/// task sends up to [`SENDERS`] at a time. An Event is a report, not a step of the reconcile
/// that caused it, so a new connection's pass does not wait a round trip for it. A full queue
/// ([`QUEUED`]) makes callers wait rather than drop Events.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Queued>,
}

/// Events waiting to be sent, at most.
const QUEUED: usize = 1024;
/// Events sent at the same time, at most.
const SENDERS: usize = 8;

struct Queued {
    event: Event,
    regarding: ObjectReference,
    at: Timestamp,
}

impl Recorder {
    /// Starts the sending task (it ends when the last clone of the recorder is dropped).
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        let sender = Sender {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
            series: Arc::default(),
        };
        let (queue, queued) = mpsc::channel::<Queued>(QUEUED);
        tokio::spawn(
            ReceiverStream::new(queued).for_each_concurrent(SENDERS, move |q| {
                let sender = sender.clone();
                async move {
                    if let Err(e) = sender.send(&q.event, &q.regarding, q.at).await {
                        tracing::warn!(reason = %q.event.reason, error = %e, "could not publish an Event");
                    }
                }
            }),
        );
        Recorder { queue }
    }

    /// Publishes `event` about `regarding`, in its namespace: a new Event, or the next count
    /// of a series when the same event was published in the last six minutes.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) {
        let queued = Queued {
            // kube's Event is not Clone.
            event: Event {
                type_: match event.type_ {
                    EventType::Normal => EventType::Normal,
                    EventType::Warning => EventType::Warning,
                },
                reason: event.reason.clone(),
                note: event.note.clone(),
                action: event.action.clone(),
                secondary: event.secondary.clone(),
            },
            regarding: regarding.clone(),
            at: crate::clock::now(),
        };
        if self.queue.send(queued).await.is_err() {
            tracing::warn!(reason = %event.reason, "the Event sender has stopped; Event not published");
        }
    }
}

/// What sends the queued Events.
#[derive(Clone)]
struct Sender {
    client: Client,
    controller: String,
    instance: String,
    series: Arc<Mutex<Series>>,
}

impl Sender {
    async fn send(
        &self,
        event: &Event,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), namespace);
        let key = SeriesKey::of(event, regarding);
        let repeat = self
            .series
            .lock()
            .ok()
            .and_then(|mut s| s.repeat(&key, now));
        if let Some((name, count)) = repeat {
            let patch = KubeEvent {
                series: Some(EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                }),
                ..Default::default()
            };
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Deleted (Events expire after an hour by default): start a new one.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let created = api
            .create(
                &PostParams::default(),
                &self.event(event, regarding, namespace, now),
            )
            .await?;
        if let (Ok(mut series), Some(name)) = (self.series.lock(), created.metadata.name) {
            series.created(key, name, now);
        }
        Ok(())
    }

    fn event(
        &self,
        event: &Event,
        regarding: &ObjectReference,
        namespace: &str,
        now: Timestamp,
    ) -> KubeEvent {
        let name = regarding.name.as_deref().unwrap_or(&self.controller);
        KubeEvent {
            metadata: ObjectMeta {
                namespace: Some(namespace.to_owned()),
                name: Some(event_name(name, now)),
                ..Default::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }
}

/// `NAME.NANOS` (hex), as client-go names Events, with NAME cut so that the whole stays a valid
/// object name (253 characters) however long the connection's name is.
fn event_name(name: &str, now: Timestamp) -> String {
    let suffix = format!(".{:x}", now.as_nanosecond());
    // Object names are ASCII (DNS subdomains), so a byte cut is a character cut.
    let keep = name.len().min(253 - suffix.len());
    let prefix = name
        .get(..keep)
        .unwrap_or("event")
        .trim_end_matches(['.', '-']);
    format!("{prefix}{suffix}")
}

/// What makes two Events the same for a series (as kube's: the note may differ).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    regarding: String,
    related: Option<String>,
    reason: String,
    action: String,
    warning: bool,
}

impl SeriesKey {
    fn of(event: &Event, regarding: &ObjectReference) -> Self {
        let id = |r: &ObjectReference| {
            // The uid identifies the object; kind/namespace/name cover references without one.
            format!(
                "{}/{}/{}/{}",
                r.kind.as_deref().unwrap_or_default(),
                r.namespace.as_deref().unwrap_or_default(),
                r.name.as_deref().unwrap_or_default(),
                r.uid.as_deref().unwrap_or_default()
            )
        };
        SeriesKey {
            regarding: id(regarding),
            related: event.secondary.as_ref().map(id),
            reason: event.reason.clone(),
            action: event.action.clone(),
            warning: matches!(event.type_, EventType::Warning),
        }
    }
}

#[derive(Debug)]
struct Seen {
    name: String,
    count: i32,
    last: Timestamp,
}

/// The series of the last six minutes, at most [`MAX_SERIES`].
#[derive(Debug, Default)]
struct Series {
    seen: HashMap<SeriesKey, Seen>,
}

impl Series {
    /// The Event to extend and its next count, when `key` was published within the TTL.
    fn repeat(&mut self, key: &SeriesKey, now: Timestamp) -> Option<(String, i32)> {
        self.prune(now);
        let seen = self.seen.get_mut(key)?;
        // A first Event counts as one occurrence; its first repeat makes the series 2.
        seen.count = seen.count.saturating_add(1);
        seen.last = now;
        Some((seen.name.clone(), seen.count))
    }

    /// Remembers a newly created Event, if there is room.
    fn created(&mut self, key: SeriesKey, name: String, now: Timestamp) {
        self.prune(now);
        if self.seen.len() < MAX_SERIES || self.seen.contains_key(&key) {
            self.seen.insert(
                key,
                Seen {
                    name,
                    count: 1,
                    last: now,
                },
            );
        }
    }

    fn prune(&mut self, now: Timestamp) {
        let before = self.seen.len();
        self.seen.retain(|_, s| {
            s.last
                .checked_add(SERIES_TTL)
                .is_ok_and(|until| until > now)
        });
        // A burst (every connection's first Event at start-up) must not leave its table behind.
        if self.seen.len() < before && self.seen.capacity() > 4 * self.seen.len().max(16) {
            self.seen.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: &str) -> Event {
        Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: Some("a note".to_owned()),
            action: "Refresh".to_owned(),
            secondary: None,
        }
    }

    fn regarding(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("ZoomConnection".to_owned()),
            namespace: Some("team-a".to_owned()),
            name: Some(name.to_owned()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("timestamp")
    }

    #[test]
    fn a_repeat_within_six_minutes_extends_the_first_events_series() {
        let mut series = Series::default();
        let key = SeriesKey::of(&event("RefreshFailing"), &regarding("bot"));
        assert_eq!(series.repeat(&key, at(0)), None, "nothing published yet");
        series.created(key.clone(), "bot.1".to_owned(), at(0));
        assert_eq!(series.repeat(&key, at(60)), Some(("bot.1".to_owned(), 2)));
        assert_eq!(series.repeat(&key, at(120)), Some(("bot.1".to_owned(), 3)));
        // Six minutes after the last occurrence the series is over: a new Event.
        assert_eq!(series.repeat(&key, at(120 + 360)), None);
    }

    #[test]
    fn the_note_does_not_split_a_series_but_reason_and_object_do() {
        let mut other_note = event("RefreshFailing");
        other_note.note = Some("another note".to_owned());
        let key = SeriesKey::of(&event("RefreshFailing"), &regarding("bot"));
        assert_eq!(key, SeriesKey::of(&other_note, &regarding("bot")));
        assert_ne!(key, SeriesKey::of(&event("Expired"), &regarding("bot")));
        assert_ne!(
            key,
            SeriesKey::of(&event("RefreshFailing"), &regarding("other"))
        );
    }

    #[test]
    fn event_names_stay_valid_for_the_longest_connection_names() {
        assert_eq!(
            event_name("bot", at(0)),
            format!("bot.{:x}", at(0).as_nanosecond())
        );
        let long = format!("{}-{}", "a".repeat(230), "b".repeat(22));
        assert_eq!(long.len(), 253);
        let name = event_name(&long, at(0));
        assert!(name.len() <= 253, "{}", name.len());
        assert!(name.starts_with(&"a".repeat(230)));
        // A cut that would end in '-' or '.' drops it: names end alphanumeric.
        let dashed = format!("{}-{}", "a".repeat(235), "b".repeat(17));
        assert!(!event_name(&dashed, at(0)).contains("-."));
    }

    #[test]
    fn the_cache_is_bounded_and_shrinks_after_a_burst() {
        let mut series = Series::default();
        for i in 0..(2 * MAX_SERIES) {
            let key = SeriesKey::of(&event("Ready"), &regarding(&format!("c{i}")));
            series.created(key, format!("c{i}.1"), at(0));
        }
        assert_eq!(series.seen.len(), MAX_SERIES);
        // A connection past the bound gets an Event of its own each time, never an error.
        let late = SeriesKey::of(&event("Ready"), &regarding(&format!("c{}", MAX_SERIES)));
        assert_eq!(series.repeat(&late, at(1)), None);

        let key = SeriesKey::of(&event("Ready"), &regarding("after"));
        series.created(key, "after.1".to_owned(), at(400));
        assert_eq!(series.seen.len(), 1, "the burst expired");
        assert!(
            series.seen.capacity() < MAX_SERIES,
            "and its table was released"
        );
    }
}
