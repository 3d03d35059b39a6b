//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly
//! one runs the controller (and so renews tokens) while all of them serve HTTP.
//!
//! Every write is a compare-and-swap on the Lease's resourceVersion; a replica that cannot
//! renew within the lease duration stops leading before another may take over.

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tokio_util::sync::CancellationToken;

pub const LEASE_NAME: &str = "zoom-operator-leader";
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(5);
const RETRY_EVERY: Duration = Duration::from_secs(2);

pub struct LeaderElector {
    api: Api<Lease>,
    identity: String,
}

/// Whether `identity` may take a lease with this spec at `now`. Pure.
pub fn can_acquire(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = spec else { return true };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == identity {
        return true;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let renewed = spec
        .renew_time
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    now.as_second() > renewed.as_second() + duration
}

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, identity: &str) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            identity: identity.to_owned(),
        }
    }

    /// One acquire-or-renew attempt. Ok(true): we hold the lease now.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let existing = self.api.get_opt(LEASE_NAME).await?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_owned()),
                    ..Default::default()
                },
                spec: Some(self.spec(None, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        if !can_acquire(lease.spec.as_ref(), &self.identity, now) {
            return Ok(false);
        }
        lease.spec = Some(self.spec(lease.spec.as_ref(), now));
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
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
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours { transitions } else { transitions + 1 }),
            ..Default::default()
        }
    }

    /// Gives the lease up so another replica takes over at once, not after it expires.
    async fn release(&self) {
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
    }

    /// Runs `lead` whenever this replica holds the lease, until `shutdown`. `lead` gets a token
    /// that is cancelled when leadership is lost.
    pub async fn run<F, Fut>(self, shutdown: CancellationToken, mut lead: F)
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        loop {
            // Campaign.
            loop {
                match self.try_acquire_or_renew().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "lease acquisition failed"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RETRY_EVERY) => {}
                }
            }
            tracing::info!(identity = %self.identity, "acquired leadership");
            let term = shutdown.child_token();
            let task = tokio::spawn(lead(term.clone()));
            let mut last_renewal = tokio::time::Instant::now();
            // Lead, renewing; stop before the lease could have expired in others' eyes.
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => {
                        term.cancel();
                        let _ = task.await;
                        self.release().await;
                        return;
                    }
                    () = tokio::time::sleep(RENEW_EVERY) => {}
                }
                match self.try_acquire_or_renew().await {
                    Ok(true) => last_renewal = tokio::time::Instant::now(),
                    Ok(false) => {
                        tracing::warn!("lost leadership to another replica");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lease renewal failed");
                        if last_renewal.elapsed() > LEASE_DURATION - RENEW_EVERY {
                            break;
                        }
                    }
                }
            }
            term.cancel();
            let _ = task.await;
        }
    }
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
        let now = Timestamp::from_second(1_000).expect("ts");
        assert!(can_acquire(None, "a", now), "no lease yet");
        assert!(
            can_acquire(Some(&spec("a", 995)), "a", now),
            "our own lease"
        );
        assert!(
            !can_acquire(Some(&spec("b", 995)), "a", now),
            "held and fresh"
        );
        assert!(
            can_acquire(Some(&spec("b", 980)), "a", now),
            "held but expired"
        );
        assert!(can_acquire(Some(&spec("", 999)), "a", now), "released");
    }
}
