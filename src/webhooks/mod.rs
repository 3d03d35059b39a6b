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

use std::time::Duration;

/// How long a request from Zoom may take in total. Zoom gives a receiver 3 seconds; half a
/// second is left for reading the body, verifying it and the network back to Zoom.
pub const ZOOM_DEADLINE: Duration = Duration::from_millis(2500);

/// Field manager of `status.lastEventTime`, separate from the controller's so neither
/// removes the other's fields on server-side apply.
pub const EVENTS_MANAGER: &str = "zoom-operator-events";
