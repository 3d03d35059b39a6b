//! HTTP servers: the public one (OAuth start and redirect, Zoom events) and the admin one
//! (metrics, health). Handlers translate requests into calls on the controller's context.

pub mod admin;
pub mod events;
pub mod oauth;
pub mod public;
