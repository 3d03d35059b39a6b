//! zoom-operator: Zoom connections as Kubernetes resources.
//!
//! `api` is the CRD; `controller` reconciles it (leader only); `tokens` is the token lifecycle
//! shared by the controller, the OAuth callback and deauthorization; `webhooks` routes, verifies,
//! dispatches and delivers Zoom's events; `server` translates HTTP into calls on those; `zoom`
//! speaks to Zoom; `leader` elects the one replica that reconciles; `run` wires them together.
//! Pure decisions (`urls`, `conditions`, `credentials::app_secret`, `validation`, `signing`,
//! `sink`, `controller::schedule`, `tokens::transition`) take values and return values; `clock`
//! is the one wall clock. ARCHITECTURE.md has the module map and the four data flows.

pub mod api;
pub mod authorize;
pub mod cache;
pub mod clock;
pub mod conditions;
pub mod config;
pub mod controller;
pub mod credentials;
pub mod duration;
pub mod leader;
pub mod metrics;
pub mod recorder;
pub mod run;
pub mod server;
pub mod signing;
pub mod sink;
pub mod tokens;
pub mod urls;
pub mod validation;
pub mod webhooks;
pub mod zoom;
