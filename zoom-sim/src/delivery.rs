//! Webhook delivery the way Zoom does it: a short timeout, retries on Zoom's
//! schedule (driven by the simulated clock), optional at-least-once duplicates,
//! and a bounded queue of deliveries waiting for their next retry.
//!
//! Zoom's documentation ("Webhook delays"): the endpoint must answer 200 or 204
//! within three seconds; otherwise the event is sent 3 more times, 5 minutes after
//! the first attempt, 20 minutes after the first retry and 60 minutes after the
//! second, then dropped. We count any 2xx as success, as Zoom's page also does.
//!
//! The schedule and the queue ([`RetryQueue`], [`next_step`]) are pure and take
//! `now`; [`run_retries`] is the I/O loop that wakes when a retry is due, by the
//! simulated clock (so `POST /sim/clock` makes retries go out at once) or by real time.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::clock::{wall_clock_ms, Millis};
use crate::server::SharedState;
use crate::webhook::{self, Delivery, DeliveryError, FailureKind, Outgoing};

/// Zoom's retry delays, each counted from the previous attempt.
pub const RETRY_DELAYS_MS: [Millis; 3] = [5 * 60_000, 20 * 60_000, 60 * 60_000];
/// Zoom waits three seconds for an answer.
pub const DEFAULT_TIMEOUT_MS: u64 = 3_000;
/// Upper bound for the configurable timeout: longer only hangs tests.
pub const MAX_TIMEOUT_MS: u64 = 120_000;
/// Deliveries waiting for a retry, at most; the oldest is dropped beyond this.
pub const DEFAULT_MAX_PENDING: usize = 10_000;
/// Upper bound for the configurable queue size (each entry holds a body of up to 256 KiB).
pub const MAX_PENDING_LIMIT: usize = 100_000;
/// Retries in flight at once; the rest wait their turn.
const MAX_CONCURRENT_RETRIES: usize = 32;
/// The retry loop looks at the clock at least this often (it also wakes on
/// clock changes and new entries), so real-time retries are at most this late.
const MAX_IDLE: Duration = Duration::from_millis(500);

/// What a retry carries as `x-zm-request-timestamp`. Zoom does not document it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryTimestamp {
    /// The first attempt's timestamp and signature: the retry looks exactly as
    /// old as it is, so a receiver's replay window can refuse it.
    Original,
    /// Re-signed with the current time.
    Fresh,
}

impl FromStr for RetryTimestamp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "original" => Ok(RetryTimestamp::Original),
            "fresh" => Ok(RetryTimestamp::Fresh),
            other => Err(format!(
                "retry_timestamp must be original or fresh, not {other:?}"
            )),
        }
    }
}

/// Delivery behaviour, adjustable at runtime through `POST /sim/config`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WebhookSettings {
    pub webhook_timeout_ms: u64,
    /// Retry failed deliveries on Zoom's schedule.
    pub webhook_retries: bool,
    pub retry_timestamp: RetryTimestamp,
    /// Probability (0..=1) that a first attempt is delivered twice, same body and headers.
    pub duplicate_rate: f64,
    /// Also send `x-zm-request-id` (Zoom documents only `x-zm-trackingid`).
    pub webhook_request_id_header: bool,
    /// Send the app's verification token as `authorization` (the pre-2023 scheme).
    pub legacy_authorization_header: bool,
    pub max_pending_webhooks: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            webhook_timeout_ms: DEFAULT_TIMEOUT_MS,
            webhook_retries: true,
            retry_timestamp: RetryTimestamp::Original,
            duplicate_rate: 0.0,
            webhook_request_id_header: false,
            legacy_authorization_header: false,
            max_pending_webhooks: DEFAULT_MAX_PENDING,
        }
    }
}

impl WebhookSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.webhook_timeout_ms)
    }

    /// Checks values from any source (flags, config file, admin API).
    pub fn validate(&self) -> Result<(), String> {
        if self.webhook_timeout_ms == 0 || self.webhook_timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!("webhook_timeout_ms must be 1..={MAX_TIMEOUT_MS}"));
        }
        if !(0.0..=1.0).contains(&self.duplicate_rate) {
            return Err("duplicate_rate must be between 0 and 1".to_owned());
        }
        if self.max_pending_webhooks == 0 || self.max_pending_webhooks > MAX_PENDING_LIMIT {
            return Err(format!(
                "max_pending_webhooks must be 1..={MAX_PENDING_LIMIT}"
            ));
        }
        Ok(())
    }
}

/// How one attempt went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    Answered(Delivery),
    NoAnswer(DeliveryError),
}

impl AttemptResult {
    pub fn is_success(&self) -> bool {
        matches!(self, AttemptResult::Answered(d) if d.is_success())
    }

    /// Short text for listings: `status 500`, `timeout`, `connection`.
    pub fn summary(&self) -> String {
        match self {
            AttemptResult::Answered(d) => format!("status {}", d.status),
            AttemptResult::NoAnswer(e) => e.kind.as_str().to_owned(),
        }
    }

    /// `{"status": 200, "body": ..}` or `{"status": null, "error": "timeout", "message": ..}`.
    pub fn to_json(&self) -> Value {
        match self {
            AttemptResult::Answered(d) => {
                json!({"status": d.status, "body": d.body, "error": null})
            }
            AttemptResult::NoAnswer(e) => {
                json!({"status": null, "error": e.kind.as_str(), "message": e.message})
            }
        }
    }
}

/// What follows an attempt, given how many retries were already made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    Done,
    RetryAfter(Millis),
    GiveUp,
}

/// Zoom's schedule: success ends it; a failure is retried after the next delay; after the third retry the event is dropped.
pub fn next_step(retries_done: usize, success: bool) -> NextStep {
    if success {
        return NextStep::Done;
    }
    match RETRY_DELAYS_MS.get(retries_done) {
        Some(delay) => NextStep::RetryAfter(*delay),
        None => NextStep::GiveUp,
    }
}

/// A failed delivery waiting for its next retry.
#[derive(Clone, Debug)]
pub struct PendingDelivery {
    pub id: u64,
    pub client_id: String,
    pub event: String,
    /// The request as first sent (timestamp, signature input, tracking id).
    pub out: Outgoing,
    /// The simulated clock's offset at the first attempt; see [`retry_outgoing`].
    pub first_offset_ms: Millis,
    pub first_attempt_ms: Millis,
    pub retries_done: usize,
    pub due_ms: Millis,
    pub last_result: String,
}

/// `GET /sim/webhooks/pending` entry (no secrets, no body).
#[derive(Clone, Debug, Serialize)]
pub struct PendingView {
    pub id: u64,
    pub client_id: String,
    pub event: String,
    pub url: String,
    pub tracking_id: String,
    pub attempts: usize,
    pub next_retry: usize,
    pub first_attempt_ms: Millis,
    pub due_ms: Millis,
    pub due_in_secs: i64,
    pub last_result: String,
}

impl PendingDelivery {
    pub fn view(&self, now: Millis) -> PendingView {
        PendingView {
            id: self.id,
            client_id: self.client_id.clone(),
            event: self.event.clone(),
            url: self.out.url.clone(),
            tracking_id: self.out.request_id.clone(),
            attempts: self.retries_done + 1,
            next_retry: self.retries_done + 1,
            first_attempt_ms: self.first_attempt_ms,
            due_ms: self.due_ms,
            due_in_secs: self.due_ms.saturating_sub(now).max(0) / 1000,
            last_result: self.last_result.clone(),
        }
    }
}

/// Deliveries waiting for a retry, oldest first, bounded.
#[derive(Debug, Default)]
pub struct RetryQueue {
    entries: VecDeque<PendingDelivery>,
    next_id: u64,
    /// Sum of the queued bodies, kept under [`MAX_PENDING_BYTES`].
    bytes: usize,
}

/// The queued bodies together stay under this (64 MiB), whatever the entry limit.
pub const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

impl RetryQueue {
    /// Evicts the oldest entries until one more of `incoming` bytes fits.
    fn make_room(&mut self, max: usize, incoming: usize) -> Vec<PendingDelivery> {
        let mut evicted = Vec::new();
        while self.entries.len() >= max.max(1)
            || (!self.entries.is_empty() && self.bytes + incoming > MAX_PENDING_BYTES)
        {
            match self.entries.pop_front() {
                Some(old) => {
                    self.bytes = self.bytes.saturating_sub(old.out.body.len());
                    evicted.push(old);
                }
                None => break,
            }
        }
        evicted
    }

    /// Queues an entry (its id is assigned here). Returns the id and, if the queue
    /// was full, the oldest entries that were pushed out to make room.
    pub fn push(&mut self, mut entry: PendingDelivery, max: usize) -> (u64, Vec<PendingDelivery>) {
        let evicted = self.make_room(max, entry.out.body.len());
        self.next_id += 1;
        entry.id = self.next_id;
        self.bytes += entry.out.body.len();
        self.entries.push_back(entry);
        (self.next_id, evicted)
    }

    /// Re-queues an entry that keeps its id (after a failed retry). Returns the evicted ones.
    pub fn requeue(&mut self, entry: PendingDelivery, max: usize) -> Vec<PendingDelivery> {
        let evicted = self.make_room(max, entry.out.body.len());
        self.bytes += entry.out.body.len();
        self.entries.push_back(entry);
        evicted
    }

    fn recount(&mut self) {
        self.bytes = self.entries.iter().map(|e| e.out.body.len()).sum();
    }

    /// Removes and returns every entry due at `now`.
    pub fn take_due(&mut self, now: Millis) -> Vec<PendingDelivery> {
        if self.next_due().is_none_or(|due| due > now) {
            return Vec::new();
        }
        let (due, rest): (Vec<_>, Vec<_>) = self.entries.drain(..).partition(|e| e.due_ms <= now);
        self.entries = rest.into();
        self.recount();
        due
    }

    pub fn next_due(&self) -> Option<Millis> {
        self.entries.iter().map(|e| e.due_ms).min()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn count_for(&self, client_id: &str) -> usize {
        self.entries
            .iter()
            .filter(|e| e.client_id == client_id)
            .count()
    }

    pub fn views(&self, client_id: Option<&str>, now: Millis) -> Vec<PendingView> {
        self.entries
            .iter()
            .filter(|e| client_id.is_none_or(|c| e.client_id == c))
            .map(|e| e.view(now))
            .collect()
    }

    /// Drops everything (or one app's entries); returns how many.
    pub fn clear(&mut self, client_id: Option<&str>) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|e| client_id.is_some_and(|c| e.client_id != c));
        self.recount();
        before - self.entries.len()
    }

    /// Shrinks to `max` entries, oldest out; returns the evicted ones.
    pub fn shrink_to(&mut self, max: usize) -> Vec<PendingDelivery> {
        let mut evicted = Vec::new();
        while self.entries.len() > max {
            match self.entries.pop_front() {
                Some(old) => evicted.push(old),
                None => break,
            }
        }
        self.recount();
        evicted
    }

    /// Bytes of body held, for tests.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The request a retry sends. `Fresh`: re-signed now. `Original`: the first
/// attempt's timestamp, moved back by however far the simulated clock was advanced
/// since, so that the receiver (which checks against its own wall clock) sees the
/// retry exactly as old as it would be on Zoom. Without clock changes this is the
/// original timestamp and signature, byte for byte.
pub fn retry_outgoing(
    entry: &PendingDelivery,
    mode: RetryTimestamp,
    offset_now_ms: Millis,
    wall_now_ms: Millis,
) -> Outgoing {
    let mut out = entry.out.clone();
    out.timestamp_secs = match mode {
        RetryTimestamp::Fresh => wall_now_ms / 1000,
        RetryTimestamp::Original => {
            let skew_secs = offset_now_ms.saturating_sub(entry.first_offset_ms) / 1000;
            entry.out.timestamp_secs.saturating_sub(skew_secs.max(0))
        }
    };
    out
}

/// Whether a first attempt gets a duplicate: asked for explicitly, or by chance.
pub fn wants_duplicate(explicit: Option<bool>, rate: f64) -> bool {
    match explicit {
        Some(choice) => choice,
        None => rate > 0.0 && rand::random::<f64>() < rate,
    }
}

/// Sends one POST and counts it.
async fn attempt(shared: &SharedState, client_id: &str, out: &Outgoing) -> AttemptResult {
    let timeout = shared.webhook_settings().timeout();
    let result = match webhook::deliver(&shared.http, out, timeout).await {
        Ok(d) => AttemptResult::Answered(d),
        Err(e) => AttemptResult::NoAnswer(e),
    };
    shared.sim().count(Some(client_id), |c| {
        c.webhook_deliveries += 1;
        match &result {
            AttemptResult::Answered(d) if !d.is_success() => c.webhook_failures += 1,
            AttemptResult::Answered(_) => {}
            AttemptResult::NoAnswer(e) if e.kind == FailureKind::Timeout => c.webhook_timeouts += 1,
            AttemptResult::NoAnswer(_) => c.webhook_connection_errors += 1,
        }
    });
    result
}

/// The outcome of a first delivery, for admin answers.
#[derive(Clone, Debug)]
pub struct EventReport {
    pub url: String,
    pub request_id: String,
    pub result: AttemptResult,
    pub duplicate: Option<AttemptResult>,
    /// Set when the event was queued for a retry: (pending id, due at).
    pub retry: Option<(u64, Millis)>,
}

impl EventReport {
    /// The admin API's answer fields: `url, status, body, error, request_id, duplicate, retry`.
    pub fn to_json(&self, now: Millis) -> Value {
        let mut v = self.result.to_json();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("url".to_owned(), json!(self.url));
            obj.insert("request_id".to_owned(), json!(self.request_id));
            obj.insert(
                "duplicate".to_owned(),
                self.duplicate
                    .as_ref()
                    .map_or(Value::Null, AttemptResult::to_json),
            );
            obj.insert(
                "retry".to_owned(),
                match self.retry {
                    Some((id, due)) => {
                        json!({"id": id, "due_ms": due, "due_in_secs": due.saturating_sub(now).max(0) / 1000})
                    }
                    None => Value::Null,
                },
            );
        }
        v
    }
}

/// Options of one event delivery.
#[derive(Clone, Copy, Debug, Default)]
pub struct SendOptions {
    /// Force (or forbid) a duplicate; None: `duplicate_rate` decides.
    pub duplicate: Option<bool>,
    /// Forbid retries for this event even when retries are on.
    pub no_retry: bool,
}

/// Delivers an event now (plus a duplicate if wanted) and queues a retry if it failed.
pub async fn send_event(
    shared: &SharedState,
    client_id: &str,
    event: &str,
    mut out: Outgoing,
    opts: SendOptions,
) -> EventReport {
    let settings = shared.webhook_settings();
    out.request_id_header = settings.webhook_request_id_header;
    if !settings.legacy_authorization_header {
        out.verification_token = None;
    }
    let first_offset_ms = shared.clock.offset_ms();
    let first_attempt_ms = shared.clock.now_ms();
    let result = attempt(shared, client_id, &out).await;
    let duplicate = if wants_duplicate(opts.duplicate, settings.duplicate_rate) {
        shared
            .sim()
            .count(Some(client_id), |c| c.webhook_duplicates += 1);
        Some(attempt(shared, client_id, &out).await)
    } else {
        None
    };
    let mut retry = None;
    if let NextStep::RetryAfter(delay) = next_step(0, result.is_success()) {
        if settings.webhook_retries && !opts.no_retry {
            let due_ms = shared.clock.now_ms().saturating_add(delay);
            let entry = PendingDelivery {
                id: 0,
                client_id: client_id.to_owned(),
                event: event.to_owned(),
                out: out.clone(),
                first_offset_ms,
                first_attempt_ms,
                retries_done: 0,
                due_ms,
                last_result: result.summary(),
            };
            let (id, evicted) = shared.retries().push(entry, settings.max_pending_webhooks);
            count_evicted(shared, &evicted);
            shared.retry_wake.notify_one();
            retry = Some((id, due_ms));
        } else {
            shared
                .sim()
                .count(Some(client_id), |c| c.webhooks_dropped += 1);
        }
    }
    EventReport {
        url: out.url.clone(),
        request_id: out.request_id.clone(),
        result,
        duplicate,
        retry,
    }
}

pub fn count_evicted(shared: &SharedState, evicted: &[PendingDelivery]) {
    if evicted.is_empty() {
        return;
    }
    let mut sim = shared.sim();
    for old in evicted {
        tracing::warn!(client_id = %old.client_id, event = %old.event, "pending webhook queue full; dropped the oldest delivery");
        sim.count(Some(&old.client_id), |c| {
            c.webhooks_dropped += 1;
            c.webhooks_evicted += 1;
        });
    }
}

/// One retry: send, count, then re-queue or drop.
async fn retry_one(shared: SharedState, mut entry: PendingDelivery) {
    let settings = shared.webhook_settings();
    let mut out = retry_outgoing(
        &entry,
        settings.retry_timestamp,
        shared.clock.offset_ms(),
        wall_clock_ms(),
    );
    if settings.retry_timestamp == RetryTimestamp::Fresh {
        // Re-signed now, so with the app's current secret token (it may have been rotated).
        if let Some(token) = shared
            .sim()
            .app(&entry.client_id)
            .map(|a| a.secret_token.clone())
        {
            out.secret_token = token;
        }
    }
    out.request_id_header = settings.webhook_request_id_header;
    if !settings.legacy_authorization_header {
        out.verification_token = None;
    }
    shared
        .sim()
        .count(Some(&entry.client_id), |c| c.webhook_retries += 1);
    let result = attempt(&shared, &entry.client_id, &out).await;
    entry.retries_done += 1;
    tracing::info!(client_id = %entry.client_id, event = %entry.event, retry = entry.retries_done, result = %result.summary(), "webhook retry");
    match next_step(entry.retries_done, result.is_success()) {
        NextStep::Done => {}
        NextStep::RetryAfter(delay) if settings.webhook_retries => {
            entry.due_ms = shared.clock.now_ms().saturating_add(delay);
            entry.last_result = result.summary();
            let evicted = shared
                .retries()
                .requeue(entry, settings.max_pending_webhooks);
            count_evicted(&shared, &evicted);
        }
        NextStep::RetryAfter(_) | NextStep::GiveUp => {
            tracing::warn!(client_id = %entry.client_id, event = %entry.event, "webhook dropped after Zoom's last retry");
            shared
                .sim()
                .count(Some(&entry.client_id), |c| c.webhooks_dropped += 1);
        }
    }
}

/// The retry loop: sends whatever is due by the simulated clock, then sleeps until
/// the next due time, a clock change or a new entry (at most [`MAX_IDLE`]).
pub async fn run_retries(shared: SharedState) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_RETRIES));
    loop {
        let now = shared.clock.now_ms();
        let due = shared.retries().take_due(now);
        for entry in due {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                retry_one(shared, entry).await;
                drop(permit);
            });
        }
        let wait = shared
            .retries()
            .next_due()
            .map(|due| {
                Duration::from_millis(
                    u64::try_from(due.saturating_sub(shared.clock.now_ms())).unwrap_or(0),
                )
            })
            .map_or(MAX_IDLE, |d| d.min(MAX_IDLE));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.retry_wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(due_ms: Millis, client: &str) -> PendingDelivery {
        let mut out = Outgoing::now("http://127.0.0.1:9/", "st", b"{}".to_vec());
        out.timestamp_secs = 1_700_000_000;
        PendingDelivery {
            id: 0,
            client_id: client.to_owned(),
            event: "meeting.started".to_owned(),
            out,
            first_offset_ms: 0,
            first_attempt_ms: 0,
            retries_done: 0,
            due_ms,
            last_result: "status 500".to_owned(),
        }
    }

    #[test]
    fn zoom_schedule() {
        assert_eq!(next_step(0, true), NextStep::Done);
        assert_eq!(next_step(0, false), NextStep::RetryAfter(5 * 60_000));
        assert_eq!(next_step(1, false), NextStep::RetryAfter(20 * 60_000));
        assert_eq!(next_step(2, false), NextStep::RetryAfter(60 * 60_000));
        assert_eq!(next_step(3, false), NextStep::GiveUp);
        assert_eq!(next_step(3, true), NextStep::Done);
    }

    #[test]
    fn queue_takes_due_entries_and_evicts_the_oldest() {
        let mut q = RetryQueue::default();
        let (a, ev) = q.push(entry(100, "a"), 2);
        assert!(ev.is_empty());
        let (_, ev) = q.push(entry(50, "b"), 2);
        assert!(ev.is_empty());
        assert_eq!(q.next_due(), Some(50));
        let (_, ev) = q.push(entry(200, "c"), 2);
        assert_eq!(ev.iter().map(|e| e.id).collect::<Vec<_>>(), vec![a]);
        assert_eq!(q.len(), 2);
        let due = q.take_due(60);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].client_id, "b");
        assert_eq!(q.len(), 1);
        assert!(q.take_due(199).is_empty());
        assert_eq!(q.count_for("c"), 1);
        assert_eq!(q.clear(Some("x")), 0);
        assert_eq!(q.clear(None), 1);
        assert!(q.is_empty());
    }

    #[test]
    fn queue_bytes_are_bounded_too() {
        let mut q = RetryQueue::default();
        let big = |due| {
            let mut e = entry(due, "a");
            e.out.body = vec![b' '; MAX_PENDING_BYTES / 2 + 1];
            e
        };
        q.push(big(1), 10);
        let (_, evicted) = q.push(big(2), 10);
        assert_eq!(evicted.len(), 1, "two halves do not fit");
        assert_eq!(q.len(), 1);
        assert!(q.bytes() <= MAX_PENDING_BYTES);
        q.take_due(5);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn retry_timestamps() {
        let e = entry(0, "a");
        let original = retry_outgoing(&e, RetryTimestamp::Original, 0, 1_800_000_000_000);
        assert_eq!(original.timestamp_secs, 1_700_000_000);
        assert_eq!(original.signature(), e.out.signature());
        // The simulated clock moved 5 minutes: the retry looks 5 minutes older.
        let skewed = retry_outgoing(&e, RetryTimestamp::Original, 300_000, 1_800_000_000_000);
        assert_eq!(skewed.timestamp_secs, 1_700_000_000 - 300);
        let fresh = retry_outgoing(&e, RetryTimestamp::Fresh, 300_000, 1_800_000_000_000);
        assert_eq!(fresh.timestamp_secs, 1_800_000_000);
        assert_ne!(fresh.signature(), e.out.signature());
        assert_eq!(fresh.body, e.out.body);
    }

    #[test]
    fn settings_validation() {
        assert!(WebhookSettings::default().validate().is_ok());
        for bad in [
            WebhookSettings {
                webhook_timeout_ms: 0,
                ..WebhookSettings::default()
            },
            WebhookSettings {
                duplicate_rate: 1.5,
                ..WebhookSettings::default()
            },
            WebhookSettings {
                duplicate_rate: f64::NAN,
                ..WebhookSettings::default()
            },
            WebhookSettings {
                max_pending_webhooks: 0,
                ..WebhookSettings::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(wants_duplicate(Some(true), 0.0));
        assert!(!wants_duplicate(Some(false), 1.0));
        assert!(wants_duplicate(None, 1.0));
        assert!(!wants_duplicate(None, 0.0));
    }
}
