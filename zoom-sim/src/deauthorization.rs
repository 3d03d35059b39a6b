//! Zoom's `app_deauthorized` event: what an app hears when a user removes it, from the
//! Marketplace (`POST /sim/deauthorize`) or through the app's own `POST /oauth/revoke`.
//! Delivered to the app's `deauthorization_url`, else its `event_url`, signed and retried
//! like any event.

use serde_json::{json, Value};

use crate::clock::{rfc3339_millis, wall_clock_ms};
use crate::delivery::{self, EventReport, SendOptions};
use crate::server::SharedState;
use crate::state::{App, User};
use crate::webhook::{self, Outgoing};

/// The event's body: `account_id, user_id, signature, deauthorization_time, client_id,
/// user_data_retention`, as Zoom's *App Deauthorized* reference shows it.
pub fn event_body(app: &App, user: &User, now_ms: i64) -> Vec<u8> {
    let deauthorization_time = rfc3339_millis(now_ms).unwrap_or_default();
    // Zoom does not document how `signature` is derived; receivers treat it as
    // opaque (it is echoed to the Data Compliance API). Ours is a stable HMAC.
    let signature = webhook::hmac_hex(
        &app.secret_token,
        format!(
            "{}:{}:{}",
            app.client_id, user.user_id, deauthorization_time
        )
        .as_bytes(),
    );
    let payload = match json!({
        "account_id": user.account_id,
        "user_id": user.user_id,
        "signature": signature,
        "deauthorization_time": deauthorization_time,
        "client_id": app.client_id,
        "user_data_retention": "false",
    }) {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    webhook::event_body("app_deauthorized", now_ms, payload)
}

/// Delivers `app_deauthorized` for `user`; None when the app has nowhere to send it.
pub async fn notify(shared: &SharedState, app: &App, user: &User) -> Option<EventReport> {
    let url = app.deauthorization_target()?.to_owned();
    let out = Outgoing::for_app(app, &url, event_body(app, user, wall_clock_ms()));
    Some(
        delivery::send_event(
            shared,
            &app.client_id,
            "app_deauthorized",
            out,
            SendOptions::default(),
        )
        .await,
    )
}
