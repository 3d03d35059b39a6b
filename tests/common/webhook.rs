//! Zoom's side of the webhook: event bodies and POSTs signed as Zoom signs them.

use std::time::{Duration, Instant};

use serde_json::json;
use zoom_operator::zoom::webhook::sign;

use super::web::{http, now_secs};
use super::Operator;

/// The operator's answer to one POST /zoom/event.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub elapsed: Duration,
}

/// A `event` for `account`, timestamped now.
pub fn event_body(event: &str, account: &str) -> Vec<u8> {
    json!({"event": event, "event_ts": now_secs() * 1000, "payload": {"account_id": account, "object": {"id": "123"}}})
        .to_string()
        .into_bytes()
}

/// POSTs `body` signed like Zoom does with `token` (and an optional request id); Err when the
/// operator could not be reached.
pub async fn try_post_signed(
    op: &Operator,
    token: &str,
    body: &[u8],
    request_id: Option<&str>,
) -> Result<Answer, reqwest::Error> {
    let ts = now_secs().to_string();
    let mut request = http()
        .post(format!("{}/zoom/event", op.public_url))
        .header("content-type", "application/json; charset=utf-8")
        .header("x-zm-request-timestamp", &ts)
        .header("x-zm-signature", sign(token.as_bytes(), &ts, body))
        .body(body.to_vec());
    if let Some(id) = request_id {
        request = request.header("x-zm-request-id", id);
    }
    let started = Instant::now();
    let response = request.send().await?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    Ok(Answer {
        status,
        body,
        elapsed: started.elapsed(),
    })
}

/// POSTs `body` signed with `token`.
pub async fn post_signed(op: &Operator, token: &str, body: &[u8]) -> Answer {
    try_post_signed(op, token, body, None)
        .await
        .expect("POST /zoom/event")
}

/// Repeats a signed POST until the operator has indexed the connection and answers `want`
/// (routing catches up with the API server within a fraction of a second; the first try may
/// be early).
pub async fn post_until(op: &Operator, token: &str, body: &[u8], want: u16) -> Answer {
    let mut last = None;
    for _ in 0..120 {
        let answer = post_signed(op, token, body).await;
        if answer.status == want && !answer.body.contains("unroutable") {
            return answer;
        }
        last = Some(format!("{} {}", answer.status, answer.body));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("never got {want}; last answer: {last:?}");
}
