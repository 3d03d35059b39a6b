//! Prometheus metrics. Counters are bumped where things happen; token expiry is computed at
//! scrape time from the controller's cache, so a deleted connection's series disappears with it.

use std::sync::{Arc, RwLock};

use kube::runtime::reflector::Store;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub event: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone)]
pub struct Metrics {
    pub reconciliations: Family<ResultLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub token_requests: Family<TokenLabels, Counter>,
    pub webhook_events: Family<WebhookLabels, Counter>,
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
            webhook_events: Family::default(),
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
            "webhook_events",
            "Zoom webhook requests by event type and result",
            self.webhook_events.clone(),
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

    pub fn webhook(&self, event: &str, result: &str) {
        // Event names come from verified payloads only; unverified requests are labelled by
        // outcome alone, so an attacker cannot mint label values.
        self.webhook_events
            .get_or_create(&WebhookLabels {
                event: event.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `zoom_operator_token_expiry_timestamp_seconds{namespace,name}` from the cached status.
#[derive(Debug)]
pub struct ExpiryCollector {
    /// The controller's caches (one per watched namespace, disjoint) while this replica
    /// leads; empty otherwise.
    pub slot: Arc<RwLock<Vec<Store<ZoomConnection>>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    namespace: String,
    name: String,
}

impl prometheus_client::collector::Collector for ExpiryCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let connections: Vec<Arc<ZoomConnection>> = match self.slot.read() {
            Ok(stores) => stores.iter().flat_map(Store::state).collect(),
            Err(_) => Vec::new(),
        };
        let mut metric = encoder.encode_descriptor(
            "zoom_operator_token_expiry_timestamp_seconds",
            "When the connection's current access token expires (unix seconds)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for zc in connections {
            let Some(expires) = zc.status.as_ref().and_then(|s| s.expires_at.as_ref()) else {
                continue;
            };
            let labels = ConnectionLabels {
                namespace: zc.metadata.namespace.clone().unwrap_or_default(),
                name: zc.metadata.name.clone().unwrap_or_default(),
            };
            let gauge = ConstGauge::new(expires.0.as_second());
            gauge.encode(metric.encode_family(&labels)?)?;
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
            "status": expires.map(|e| serde_json::json!({"expiresAt": e})),
        }))
        .expect("connection")
    }

    fn scrape(slot: Arc<RwLock<Vec<Store<ZoomConnection>>>>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ExpiryCollector { slot }));
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
            stores.push(reader);
        }
        let slot = Arc::new(RwLock::new(stores));
        let text = scrape(slot.clone());
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

        // Not leading: no caches, no series.
        slot.write().expect("lock").clear();
        assert!(
            !scrape(slot).contains("expiry_timestamp_seconds{"),
            "series remain after the caches were dropped"
        );
    }
}
