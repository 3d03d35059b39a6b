//! The public listener (`--listen`): what Zoom and people's browsers reach through the Ingress.

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::urls::{EVENT_PATH, REDIRECT_PATH, START_PATH_PREFIX};

use super::events::EventReceiver;
use super::oauth::OAuthState;

pub fn router(oauth: Arc<OAuthState>, events: Arc<EventReceiver>) -> Router {
    // The webhook reads its body itself (limit enforced while reading, JSON errors), so no
    // extractor-level body limit applies to it.
    let webhooks = Router::new()
        .route(EVENT_PATH, post(super::events::receive))
        .with_state(events);
    Router::new()
        .route(
            &format!("{START_PATH_PREFIX}/{{namespace}}/{{name}}"),
            get(super::oauth::start),
        )
        .route(REDIRECT_PATH, get(super::oauth::redirect))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(oauth)
        .merge(webhooks)
}
