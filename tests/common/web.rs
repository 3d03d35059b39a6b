//! What a test does over plain HTTP, with no control plane of its own: polling until something
//! holds, a client that shows each redirect, and the Zoom user's browser hop by hop. Standalone,
//! so that tests/e2e.rs (its own cluster) includes it too.

#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;

/// Polls until `check` returns Ok, or panics with the last state seen.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(state) => state,
        };
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An HTTP client that does not follow redirects, so tests see each hop of a browser flow.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// The `Location` header of a redirect, or "".
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Seconds since the epoch, as Zoom's `x-zm-request-timestamp` counts them.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The two redirects of a browser flow before the callback: the start link's (to Zoom's
/// authorize page) and Zoom's (back to the redirect URL, once the user consented).
pub struct Hops {
    pub to_zoom: String,
    pub callback: String,
}

/// The Zoom user's browser from the start link to Zoom and back, without opening the callback:
/// the start link must redirect (302) to Zoom, and Zoom (zoom-sim with `--consent=approve`)
/// back with a 302.
pub async fn through_zoom(start: &str) -> Hops {
    let http = http();
    let to_zoom = http.get(start).send().await.expect("start");
    assert_eq!(
        to_zoom.status(),
        StatusCode::FOUND,
        "the start link {start} should redirect to Zoom"
    );
    let to_zoom = location(&to_zoom);
    let zoom = http.get(&to_zoom).send().await.expect("zoom authorize");
    let status = zoom.status();
    let callback = location(&zoom);
    assert_eq!(
        status,
        StatusCode::FOUND,
        "zoom-sim (consent=approve) redirects back: {:?}",
        zoom.text().await
    );
    Hops { to_zoom, callback }
}

/// Opens the callback URL: its status and page.
pub async fn open(url: &str) -> (StatusCode, String) {
    let response = http().get(url).send().await.expect("callback");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

/// The browser flow from the start link through the callback, which must answer 200.
pub async fn authorize_in_browser(start: &str) -> Hops {
    let hops = through_zoom(start).await;
    let (status, page) = open(&hops.callback).await;
    assert_eq!(status, StatusCode::OK, "the callback: {page}");
    hops
}
