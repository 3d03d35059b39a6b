//! The public listener (`--listen`): what Zoom and people's browsers reach through the Ingress.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

use crate::controller::Context;
use crate::urls::{REDIRECT_PATH, START_PATH_PREFIX};

pub fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route(&format!("{START_PATH_PREFIX}/{{namespace}}/{{name}}"), get(super::oauth::start))
        .route(REDIRECT_PATH, get(super::oauth::redirect))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(ctx)
}
