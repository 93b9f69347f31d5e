//! A real OTLP/HTTP receiver on 127.0.0.1 that keeps every export request it gets.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// The receiver; stops when dropped.
pub struct OtlpReceiver {
    address: std::net::SocketAddr,
    received: Received,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn traces(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    received.lock().unwrap().push((content_type, body.to_vec()));
    StatusCode::OK
}

impl OtlpReceiver {
    /// Starts on a free loopback port.
    pub async fn start() -> OtlpReceiver {
        let received = Received::default();
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .with_state(Arc::clone(&received));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OtlpReceiver {
            address,
            received,
            task,
        }
    }

    /// The collector endpoint (`/v1/traces` is appended by exporters).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every export request: content type and body.
    pub fn received(&self) -> Vec<(String, Vec<u8>)> {
        self.received.lock().unwrap().clone()
    }
}
