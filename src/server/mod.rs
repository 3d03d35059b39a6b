//! HTTP servers: the public one (OAuth start and redirect, Zoom events) and the admin one
//! (metrics, health). Handlers only translate requests into calls on `tokens`, `webhooks`,
//! `zoom` and `signing`, each with the small state it needs (`oauth::OAuthState`,
//! `events::EventReceiver`, `admin::AdminState`).

pub mod admin;
pub mod events;
pub mod oauth;
pub mod public;
