//! zoom-operator: Zoom connections as Kubernetes resources.
//!
//! `api` is the CRD; `controller` reconciles it; `server` serves OAuth, webhooks and metrics;
//! `zoom` speaks to Zoom. Pure decisions (`urls`, `conditions`, `credentials`, `signing`,
//! `token_secret`, `sink`, `controller::schedule`) take values and return values; `clock`
//! is the one wall clock. `tokens`
//! holds the rotation-safety rules (refresh fence, grants not stored yet) and `leader` the
//! Lease-based election whose outcome other modules watch.

pub mod api;
pub mod authorize;
pub mod clock;
pub mod conditions;
pub mod config;
pub mod controller;
pub mod credentials;
pub mod duration;
pub mod leader;
pub mod metrics;
pub mod run;
pub mod server;
pub mod signing;
pub mod sink;
pub mod tokens;
pub mod urls;
pub mod validation;
pub mod webhooks;
pub mod zoom;
