//! zoom-sim: a Zoom OAuth, REST API and webhook simulator.
//!
//! It stands in for `zoom.us` (OAuth: authorize, token, revoke) and `api.zoom.us`
//! (`/v2/users/me`, `/v2/users/{id}`, `/v2/users/{id}/meetings`, `/v2/meetings/{id}`) on a single
//! listener, signs webhooks exactly like Zoom and delivers them on Zoom's retry
//! schedule. Everything lives in memory; the `/sim/*` admin API steers it from tests.
//!
//! Layout:
//! - [`state`]: the pure model (apps, codes, grants, counters); no I/O, unit tested.
//! - [`oauth`], [`api`], [`admin`]: the HTTP handlers over that model.
//! - [`faults`]: the fault-injection queue and its middleware.
//! - [`deauthorization`]: the `app_deauthorized` event (Marketplace removal, `/oauth/revoke`).
//! - [`webhook`]: Zoom's webhook signing and one delivery, shared by the CLI and the admin API.
//! - [`delivery`]: Zoom's delivery behaviour: timeout, retry schedule, duplicates, pending queue.
//! - [`ratelimit`]: the optional per-account rate-limit mode of the REST API.
//! - [`meetings`]: meetings created through the simulated API, bounded per user.
//! - [`config`]: app specs (`--app`, JSON) and the config file.
//! - [`server`]: wiring, startup and shutdown.

pub mod admin;
pub mod api;
pub mod clock;
pub mod config;
pub mod deauthorization;
pub mod delivery;
pub mod errors;
pub mod faults;
pub mod html;
pub mod meetings;
pub mod oauth;
pub mod ratelimit;
pub mod server;
pub mod state;
pub mod tokens;
pub mod webhook;
