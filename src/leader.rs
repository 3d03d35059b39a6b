//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly
//! one runs the controller (and so renews tokens) while all of them serve HTTP.
//!
//! The semantics are client-go's: a lease duration, a renew deadline and a retry period. Every
//! API call is bounded by the renew deadline (a hung connection cannot keep a replica leading),
//! expiry is judged from when *this* replica observed the holder's record change (so clocks
//! need not agree), and leadership is published on a `watch` channel that the controller and
//! the refresh path check, so that work stops the moment leadership is in doubt.

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub const LEASE_NAME: &str = "zoom-operator-leader";

/// client-go's defaults for controllers: the leader gives up after failing to renew for the
/// renew deadline, others take over only after a full lease duration without a change.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Whether this replica leads, as other modules see it. Without leader election it is always
/// true. The refresh path reads it right before sending a refresh token to Zoom.
#[derive(Clone, Debug)]
pub struct Leadership(watch::Receiver<bool>);

impl Leadership {
    pub fn channel() -> (watch::Sender<bool>, Leadership) {
        let (tx, rx) = watch::channel(false);
        (tx, Leadership(rx))
    }

    /// A replica that leads for good (leader election off).
    pub fn always() -> Leadership {
        let (tx, rx) = watch::channel(true);
        // Keep the value readable after the sender is gone.
        drop(tx);
        Leadership(rx)
    }

    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("the controller task stopped while leading ({0}); the Lease was released so another replica takes over")]
    ControllerStopped(String),
}

/// The holder record as last observed, and when (on our monotonic clock) it last changed.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    record: Option<LeaseRecord>,
    at: Option<Instant>,
}

/// The parts of a Lease spec whose change proves the holder is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LeaseRecord {
    holder: String,
    renew_time: Option<Timestamp>,
    acquire_time: Option<Timestamp>,
    transitions: i32,
    duration_seconds: i32,
}

impl LeaseRecord {
    fn of(spec: Option<&LeaseSpec>) -> LeaseRecord {
        LeaseRecord {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default(),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            acquire_time: spec.and_then(|s| s.acquire_time.as_ref()).map(|t| t.0),
            transitions: spec.and_then(|s| s.lease_transitions).unwrap_or(0),
            duration_seconds: spec.and_then(|s| s.lease_duration_seconds).unwrap_or(15),
        }
    }
}

impl Observed {
    /// Records what a GET returned; the observation time moves only when the record changed.
    fn observe(&mut self, spec: Option<&LeaseSpec>, now: Instant) {
        let record = LeaseRecord::of(spec);
        if self.record.as_ref() != Some(&record) {
            self.record = Some(record);
            self.at = Some(now);
        }
    }
}

/// Whether `identity` may take the lease whose record it has observed. Pure: the holder's
/// renewTime is never compared with our wall clock, only how long ago (on our own clock) we
/// last saw the record change.
pub fn can_acquire(observed: &Observed, identity: &str, now: Instant) -> bool {
    let Some(record) = &observed.record else {
        return true;
    };
    if record.holder.is_empty() || record.holder == identity {
        return true;
    }
    let duration = Duration::from_secs(u64::try_from(record.duration_seconds).unwrap_or(15));
    observed
        .at
        .is_none_or(|at| now.saturating_duration_since(at) > duration)
}

pub struct LeaderElector {
    api: Api<Lease>,
    identity: String,
    timing: Timing,
    observed: Observed,
    leading: watch::Sender<bool>,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        identity: &str,
        leading: watch::Sender<bool>,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            identity: identity.to_owned(),
            timing: Timing::default(),
            observed: Observed::default(),
            leading,
            gauge,
        }
    }

    fn set_leading(&self, leading: bool) {
        self.leading.send_replace(leading);
        self.gauge.set(i64::from(leading));
    }

    /// One acquire-or-renew attempt, bounded by `budget`. Ok(true): we hold the lease now.
    async fn try_acquire_or_renew(&mut self, budget: Duration) -> Result<bool, String> {
        match tokio::time::timeout(budget, self.attempt()).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("the API server did not answer within {budget:?}")),
        }
    }

    async fn attempt(&mut self) -> Result<bool, kube::Error> {
        let existing = self.api.get_opt(LEASE_NAME).await?;
        let now = Instant::now();
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_owned()),
                    ..Default::default()
                },
                spec: Some(self.spec(None, crate::clock::now())),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observed.observe(created.spec.as_ref(), Instant::now());
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        self.observed.observe(lease.spec.as_ref(), now);
        if !can_acquire(&self.observed, &self.identity, now) {
            return Ok(false);
        }
        lease.spec = Some(self.spec(lease.spec.as_ref(), crate::clock::now()));
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observed.observe(written.spec.as_ref(), Instant::now());
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let ours =
            previous.and_then(|p| p.holder_identity.as_deref()) == Some(self.identity.as_str());
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(15),
            ),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..Default::default()
        }
    }

    /// Gives the lease up so another replica takes over at once, not after it expires.
    /// Bounded like every other call: a stalled API server must not hold up an exit.
    async fn release(&self) {
        let release = async {
            if let Ok(Some(mut lease)) = self.api.get_opt(LEASE_NAME).await {
                let ours = lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.as_deref())
                    == Some(self.identity.as_str());
                if ours {
                    if let Some(spec) = lease.spec.as_mut() {
                        spec.holder_identity = None;
                        spec.renew_time = None;
                    }
                    let _ = self
                        .api
                        .replace(LEASE_NAME, &PostParams::default(), &lease)
                        .await;
                }
            }
        };
        if tokio::time::timeout(self.timing.renew_deadline, release)
            .await
            .is_err()
        {
            tracing::warn!("releasing the lease timed out; it expires by itself");
        }
    }

    /// Campaigns until this replica holds the lease. Ok(false): shutdown came first.
    async fn campaign(&mut self, shutdown: &CancellationToken) -> bool {
        loop {
            match self.try_acquire_or_renew(self.timing.renew_deadline).await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "lease acquisition failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(self.timing.retry_period) => {}
            }
        }
    }

    /// Renews every retry period until a renewal fails to succeed within the renew deadline
    /// (counted from the start of the last successful attempt), another replica took the
    /// lease, shutdown, or the lead task ended. Says which.
    async fn hold(
        &mut self,
        shutdown: &CancellationToken,
        task: &mut tokio::task::JoinHandle<()>,
    ) -> Holding {
        let mut renewed_at = Instant::now();
        loop {
            tokio::select! {
                // Shutdown first: the lead task ends on shutdown too (its token is a child),
                // and that is no failure.
                biased;
                () = shutdown.cancelled() => return Holding::Shutdown,
                joined = &mut *task => {
                    if shutdown.is_cancelled() {
                        return Holding::Shutdown;
                    }
                    return Holding::TaskEnded(match joined {
                    Ok(()) => "it returned".to_owned(),
                    Err(e) if e.is_panic() => "it panicked".to_owned(),
                        Err(e) => e.to_string(),
                    });
                }
                () = tokio::time::sleep(self.timing.retry_period) => {}
            }
            let started = Instant::now();
            let deadline = renewed_at + self.timing.renew_deadline;
            let Some(budget) = deadline.checked_duration_since(started) else {
                return Holding::Lost("the renew deadline passed".to_owned());
            };
            match self.try_acquire_or_renew(budget).await {
                Ok(true) => renewed_at = started,
                Ok(false) => return Holding::Lost("another replica holds the lease".to_owned()),
                Err(e) => {
                    tracing::warn!(error = %e, "lease renewal failed");
                    if Instant::now() >= deadline {
                        return Holding::Lost(format!(
                            "could not renew within the renew deadline: {e}"
                        ));
                    }
                }
            }
        }
    }

    /// Runs `lead` whenever this replica holds the lease, until `shutdown`. `lead` gets a token
    /// that is cancelled the moment leadership is lost. If `lead` ends on its own while
    /// leading (a panic, say), the lease is released and an error returned, so the process
    /// exits non-zero and its Deployment restarts it.
    pub async fn run<F, Fut>(
        mut self,
        shutdown: CancellationToken,
        mut lead: F,
    ) -> Result<(), LeaderError>
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        loop {
            if !self.campaign(&shutdown).await {
                return Ok(());
            }
            tracing::info!(identity = %self.identity, "acquired leadership");
            self.set_leading(true);
            let term = shutdown.child_token();
            let mut task = tokio::spawn(lead(term.clone()));
            let holding = self.hold(&shutdown, &mut task).await;
            // Stop work first, then tell the world: nothing runs on a lease we no longer hold.
            self.set_leading(false);
            term.cancel();
            match holding {
                Holding::Shutdown => {
                    // Wait for the controller to stop (unless its end was what we saw).
                    if !task.is_finished() {
                        let _ = task.await;
                    }
                    self.release().await;
                    return Ok(());
                }
                Holding::TaskEnded(why) => {
                    tracing::error!(why = %why, "the controller stopped while leading");
                    self.release().await;
                    return Err(LeaderError::ControllerStopped(why));
                }
                Holding::Lost(why) => {
                    tracing::warn!(why = %why, "lost leadership");
                    task.abort();
                    let _ = task.await;
                }
            }
        }
    }
}

enum Holding {
    Shutdown,
    TaskEnded(String),
    Lost(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).expect("ts"))),
            ..Default::default()
        }
    }

    #[test]
    fn lease_rules() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut seen = Observed::default();
        assert!(can_acquire(&seen, "a", t0), "no lease yet");

        seen.observe(Some(&spec("a", 995)), t0);
        assert!(can_acquire(&seen, "a", at(1)), "our own lease");

        let mut seen = Observed::default();
        seen.observe(Some(&spec("b", 995)), t0);
        assert!(!can_acquire(&seen, "a", at(5)), "held and recently seen");
        assert!(!can_acquire(&seen, "a", at(15)), "not yet a full duration");
        assert!(
            can_acquire(&seen, "a", at(16)),
            "unchanged for longer than the duration"
        );

        let mut released = Observed::default();
        released.observe(Some(&spec("", 999)), t0);
        assert!(can_acquire(&released, "a", t0), "released");
    }

    #[test]
    fn expiry_counts_from_when_we_saw_the_change_not_from_renew_time() {
        let t0 = Instant::now();
        let mut seen = Observed::default();
        // The holder's renewTime is an hour in the past by our wall clock (its clock is
        // behind, or ours ahead): irrelevant, we saw it change just now.
        seen.observe(Some(&spec("b", 1_000)), t0);
        assert!(!can_acquire(&seen, "a", t0 + Duration::from_secs(10)));
        // The holder renews: the record changes, the clock restarts.
        seen.observe(Some(&spec("b", 1_002)), t0 + Duration::from_secs(10));
        assert!(!can_acquire(&seen, "a", t0 + Duration::from_secs(20)));
        // The same record seen again does not restart it.
        seen.observe(Some(&spec("b", 1_002)), t0 + Duration::from_secs(20));
        assert!(can_acquire(&seen, "a", t0 + Duration::from_secs(26)));
    }

    #[test]
    fn leadership_without_election_is_always_true() {
        assert!(Leadership::always().is_leader());
        let (tx, rx) = Leadership::channel();
        assert!(!rx.is_leader());
        tx.send_replace(true);
        assert!(rx.is_leader());
    }
}
