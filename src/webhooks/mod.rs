//! Zoom webhooks after the signature check: which connections an event is for (`index`, kept
//! current by `sync` on every replica), what happens for them (`dispatch`: lastEventTime,
//! deauthorization, forwarding), events stored and redelivered when the sink did not take them
//! (`delivery`), the CloudEvent sent to sinks (`forward`) and how status writes are
//! rate-limited (`coalesce`). The HTTP side lives in `server::events`.

pub mod coalesce;
pub mod delivery;
pub mod dispatch;
pub mod forward;
pub mod index;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use crate::recorder::Recorder;
use kube::Client;

use crate::api::ZoomConnection;
use crate::metrics::Metrics;
use crate::tokens::TokenStore;

/// What the webhook path needs from the rest of the process, and nothing more: the API
/// server, Events, metrics, the stored events and which hosts sinks may use.
pub struct Services {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Extra hosts event sinks may use besides in-cluster Services (`--allow-sink-host`).
    pub allow_sink_hosts: Vec<String>,
    /// Events stored for redelivery (every replica stores; the leader redelivers).
    pub events: Arc<delivery::EventStore>,
}

impl Services {
    pub fn token_store(&self, zc: &ZoomConnection) -> TokenStore {
        TokenStore::for_connection(self.client.clone(), zc)
    }
}

/// How long a request from Zoom may take in total. Zoom gives a receiver 3 seconds; half a
/// second is left for reading the body, verifying it and the network back to Zoom.
pub const ZOOM_DEADLINE: Duration = Duration::from_millis(2500);

/// Field manager of `status.lastEventTime`, separate from the controller's so neither
/// removes the other's fields on server-side apply.
pub const EVENTS_MANAGER: &str = "zoom-operator-events";
