//! Prometheus metrics (api.md section 8). Counters are bumped where things happen; the
//! per-connection gauges (token expiry, readiness) are computed at scrape time from the
//! controller's cache, so a deleted connection's series disappear with it.
//!
//! Every label value is bounded: fixed words chosen here, HTTP status codes, and the
//! namespace and name of existing connections. Nothing a tenant or Zoom sends (an event
//! name, say) becomes a label.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::api::ZoomConnection;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub auth_type: String,
    pub result: String,
}

/// A call to Zoom: which endpoint (a fixed word) and the HTTP status, or "error" when no
/// answer arrived.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ZoomRequestLabels {
    pub endpoint: &'static str,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn zoom_latency() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 12))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug)]
pub struct Metrics {
    pub reconciliations: Family<ResultLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub token_requests: Family<TokenLabels, Counter>,
    /// `POST /zoom/event` requests by outcome.
    pub webhook_requests: Family<ResultLabels, Counter>,
    /// Forwarding attempts of verified events to sinks by outcome.
    pub events_delivered: Family<ResultLabels, Counter>,
    /// Verified events accepted from Zoom and not yet delivered: in flight to a sink plus
    /// stored for redelivery.
    pub events_pending: Gauge,
    events_in_flight: Arc<AtomicI64>,
    events_stored: Arc<AtomicI64>,
    pub zoom_requests: Family<ZoomRequestLabels, Counter>,
    pub zoom_request_duration: HistogramFamily<EndpointLabels>,
    pub oauth_requests: Family<HttpLabels, Counter>,
    /// 1 while this replica holds the lease (or runs without leader election), else 0.
    pub leader: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            reconciliations: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            token_requests: Family::default(),
            webhook_requests: Family::default(),
            events_delivered: Family::default(),
            events_pending: Gauge::default(),
            events_in_flight: Arc::default(),
            events_stored: Arc::default(),
            zoom_requests: Family::default(),
            zoom_request_duration: Family::new_with_constructor(zoom_latency),
            oauth_requests: Family::default(),
            leader: Gauge::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("zoom_operator");
        r.register(
            "reconciliations",
            "Reconcile passes by result",
            self.reconciliations.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile pass",
            self.reconcile_duration.clone(),
        );
        r.register(
            "token_requests",
            "Requests to Zoom's token endpoint by auth type and result",
            self.token_requests.clone(),
        );
        r.register(
            "webhook_requests",
            "POST /zoom/event requests by result",
            self.webhook_requests.clone(),
        );
        r.register(
            "events_delivered",
            "Verified Zoom events forwarded to sinks, by result",
            self.events_delivered.clone(),
        );
        r.register(
            "events_pending",
            "Verified events accepted from Zoom and not yet delivered",
            self.events_pending.clone(),
        );
        r.register(
            "zoom_requests",
            "Requests to Zoom by endpoint and HTTP status (error: no answer)",
            self.zoom_requests.clone(),
        );
        r.register(
            "zoom_request_duration_seconds",
            "Time until Zoom answered, by endpoint",
            self.zoom_request_duration.clone(),
        );
        r.register(
            "oauth_requests",
            "OAuth start and redirect requests by status",
            self.oauth_requests.clone(),
        );
        r.register(
            "leader",
            "1 on the replica that leads (runs the controller), 0 elsewhere",
            self.leader.clone(),
        );
    }

    pub fn token_request(&self, auth_type: &str, result: &str) {
        self.token_requests
            .get_or_create(&TokenLabels {
                auth_type: auth_type.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// One `POST /zoom/event` request; `result` is one of the endpoint's fixed outcomes.
    pub fn webhook(&self, result: &'static str) {
        self.webhook_requests
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Events now on their way to a sink (`delta` up before sending, down after).
    pub fn events_in_flight(&self, delta: i64) {
        self.events_in_flight.fetch_add(delta, Ordering::Relaxed);
        self.update_pending();
    }

    /// Events stored for redelivery, as the store's cache counts them.
    pub fn set_events_stored(&self, stored: usize) {
        let stored = i64::try_from(stored).unwrap_or(i64::MAX);
        self.events_stored.store(stored, Ordering::Relaxed);
        self.update_pending();
    }

    fn update_pending(&self) {
        let total = self
            .events_in_flight
            .load(Ordering::Relaxed)
            .saturating_add(self.events_stored.load(Ordering::Relaxed));
        self.events_pending.set(total);
    }

    /// One forwarding attempt's outcome: "delivered", "stored", "failed", "redelivered",
    /// "dead_lettered", "dropped" or "discarded".
    pub fn event_delivery(&self, result: &'static str) {
        self.events_delivered
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// One call to Zoom; `status` None when no answer arrived.
    pub fn zoom_request(&self, endpoint: &'static str, status: Option<u16>, seconds: f64) {
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.zoom_requests
            .get_or_create(&ZoomRequestLabels { endpoint, status })
            .inc();
        self.zoom_request_duration
            .get_or_create(&EndpointLabels { endpoint })
            .observe(seconds);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `zoom_operator_token_expiry_timestamp_seconds{namespace,name}` and
/// `zoom_operator_connection_ready{namespace,name}` from the cached status.
#[derive(Debug)]
pub struct ConnectionCollector {
    /// The shared caches of connections.
    pub caches: crate::cache::Caches,
    /// Only the lease holder reports connections, so that a sum over replicas counts each once.
    pub leadership: crate::leader::Leadership,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    namespace: String,
    name: String,
}

impl prometheus_client::collector::Collector for ConnectionCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let connections: Vec<Arc<ZoomConnection>> = if self.leadership.is_leader() {
            self.caches.connections()
        } else {
            Vec::new()
        };
        let labels = |zc: &ZoomConnection| ConnectionLabels {
            namespace: zc.metadata.namespace.clone().unwrap_or_default(),
            name: zc.metadata.name.clone().unwrap_or_default(),
        };
        {
            let mut metric = encoder.encode_descriptor(
                "zoom_operator_token_expiry_timestamp_seconds",
                "When the connection's current access token expires (unix seconds)",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for zc in &connections {
                let Some(expires) = zc.status.as_ref().and_then(|s| s.expires_at.as_ref()) else {
                    continue;
                };
                let gauge = ConstGauge::new(expires.0.as_second());
                gauge.encode(metric.encode_family(&labels(zc))?)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "zoom_operator_connection_ready",
            "1 when the connection's Ready condition is True, else 0",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for zc in &connections {
            let ready = zc
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True");
            let gauge = ConstGauge::new(i64::from(ready));
            gauge.encode(metric.encode_family(&labels(zc))?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;
    use kube::runtime::watcher;

    fn connection(ns: &str, name: &str, expires: Option<&str>) -> ZoomConnection {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "zoom-operator.io/v1alpha1",
            "kind": "ZoomConnection",
            "metadata": {"namespace": ns, "name": name},
            "spec": {"authType": "DefaultOAuth"},
            "status": expires.map(|e| serde_json::json!({"expiresAt": e, "conditions": [{
                "type": "Ready", "status": "True", "reason": "Ready", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]})),
        }))
        .expect("connection")
    }

    fn scrape(caches: &crate::cache::Caches, leadership: &crate::leader::Leadership) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ConnectionCollector {
            caches: caches.clone(),
            leadership: leadership.clone(),
        }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    }

    #[test]
    fn the_expiry_gauge_covers_every_watched_namespace() {
        let mut stores = Vec::new();
        for (ns, expires) in [("a", "2030-01-01T00:00:00Z"), ("b", "2030-01-01T00:01:40Z")] {
            let (reader, mut writer) = reflector::store();
            writer.apply_watcher_event(&watcher::Event::Apply(connection(
                ns,
                "bot",
                Some(expires),
            )));
            writer.apply_watcher_event(&watcher::Event::Apply(connection(ns, "new", None)));
            stores.push((crate::config::WatchScope::Namespace(ns.to_owned()), reader));
        }
        let caches = crate::cache::Caches::of_connections(stores);
        let (leading, leadership) = crate::leader::Leadership::channel();
        leading.send_replace(true);
        let text = scrape(&caches, &leadership);
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("zoom_operator_token_expiry_timestamp_seconds{"))
            .collect();
        assert_eq!(
            series,
            [
                r#"zoom_operator_token_expiry_timestamp_seconds{namespace="a",name="bot"} 1893456000"#,
                r#"zoom_operator_token_expiry_timestamp_seconds{namespace="b",name="bot"} 1893456100"#,
            ],
            "{text}"
        );

        let ready: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("zoom_operator_connection_ready{"))
            .collect();
        assert_eq!(ready.len(), 4, "one series per connection: {text}");
        assert!(ready.contains(&r#"zoom_operator_connection_ready{namespace="a",name="bot"} 1"#));
        assert!(ready.contains(&r#"zoom_operator_connection_ready{namespace="b",name="new"} 0"#));

        // Not leading: no series (the leader reports them, so a sum over replicas counts each
        // connection once).
        leading.send_replace(false);
        assert!(
            !scrape(&caches, &leadership).contains("expiry_timestamp_seconds{"),
            "series remain after leadership was lost"
        );
        assert!(!scrape(&caches, &leadership).contains("connection_ready{"));
    }
}
