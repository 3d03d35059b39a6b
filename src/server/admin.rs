//! The admin listener (`--metrics-listen`): `/metrics`, `/healthz`, `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

pub struct AdminState {
    pub registry: Registry,
    /// Set once the caches this replica serves from have synced.
    pub ready: AtomicBool,
    /// Set when shutdown begins: from then on the replica takes no new traffic.
    pub shutting_down: AtomicBool,
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode metrics",
        )
            .into_response(),
    }
}

async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    readiness(
        state.ready.load(Ordering::Relaxed),
        state.shutting_down.load(Ordering::Relaxed),
    )
}

/// What `/readyz` answers. Pure.
pub fn readiness(synced: bool, shutting_down: bool) -> (StatusCode, &'static str) {
    match (synced, shutting_down) {
        (_, true) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        (true, false) => (StatusCode::OK, "ready"),
        (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_synced_and_not_shutting_down() {
        let table = [
            (false, false, StatusCode::SERVICE_UNAVAILABLE),
            (true, false, StatusCode::OK),
            (true, true, StatusCode::SERVICE_UNAVAILABLE),
            (false, true, StatusCode::SERVICE_UNAVAILABLE),
        ];
        for (synced, shutting_down, want) in table {
            assert_eq!(
                readiness(synced, shutting_down).0,
                want,
                "{synced} {shutting_down}"
            );
        }
    }
}
