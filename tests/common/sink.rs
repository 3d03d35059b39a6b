//! A sink that records what it gets and answers as told: a status, after a delay.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone, Default)]
struct SinkState {
    received: Arc<Mutex<Vec<Received>>>,
    /// 0 means 200.
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
}

pub struct RecordingSink {
    pub url: String,
    state: SinkState,
}

impl RecordingSink {
    pub async fn start(ip: &str) -> RecordingSink {
        let state = SinkState::default();
        let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
            .await
            .expect("bind sink");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(record))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RecordingSink {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub fn answer(&self, status: u16, delay: Duration) {
        self.state.status.store(status, Ordering::SeqCst);
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

async fn record(State(state): State<SinkState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if let Ok(mut r) = state.received.lock() {
        r.push(Received {
            headers,
            body: body.to_vec(),
        });
    }
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    match state.status.load(Ordering::SeqCst) {
        0 => StatusCode::OK,
        s => StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    }
}
