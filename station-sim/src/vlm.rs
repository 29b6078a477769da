//! A test double of an OpenAI-compatible VLM server, for fault scenarios that need the
//! `openai` backend where no real VLM can run: `POST /v1/chat/completions` answers with the
//! items the orchestrator's own `labels` recogniser (PP-OCR of the printed item labels)
//! reads in the request's images, as a JSON `{"items": [...]}` reply. While
//! [`VlmDouble::set_down`] holds, every request gets `503 Service Unavailable`, as from a
//! gateway in front of a VLM that died.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use orchestrator::config::LabelsConfig;
use orchestrator::orders::Inventory;
use orchestrator::recognize::labels::LabelsRecognizer;
use orchestrator::recognize::{Frame, Recognizer};
use serde_json::{Value, json};

struct Inner {
    labels: LabelsRecognizer,
    down: AtomicBool,
    answered: AtomicU64,
    refused: AtomicU64,
}

/// The running double; stops when dropped.
pub struct VlmDouble {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl VlmDouble {
    /// Serves on a free port of 127.0.0.1, on the current tokio runtime.
    pub async fn start(inventory_json: &str) -> Result<VlmDouble, String> {
        let inventory = Arc::new(Inventory::from_json(inventory_json)?);
        let labels = LabelsRecognizer::new(&LabelsConfig::default(), inventory)?;
        let inner = Arc::new(Inner {
            labels,
            down: AtomicBool::new(false),
            answered: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("the VLM double cannot listen: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(VlmDouble { addr, inner, task })
    }

    /// `http://127.0.0.1:port`, for `recognition.openai.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// While `true`, every request is answered 503.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Requests answered with items, and requests refused while down.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.inner.answered.load(Ordering::SeqCst),
            self.inner.refused.load(Ordering::SeqCst),
        )
    }
}

impl Drop for VlmDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The JPEGs of a chat-completions request's `image_url` parts.
fn images(body: &Value) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        for part in m["content"].as_array().into_iter().flatten() {
            let Some(url) = part["image_url"]["url"].as_str() else {
                continue;
            };
            if let Some((_, b64)) = url.split_once(";base64,")
                && let Ok(jpeg) = base64::engine::general_purpose::STANDARD.decode(b64)
            {
                out.push(jpeg);
            }
        }
    }
    out
}

async fn complete(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not JSON\n").into_response();
    };
    if inner.down.load(Ordering::SeqCst) {
        inner.refused.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "the VLM is down\n").into_response();
    }
    let frames: Vec<Frame> = images(&body)
        .into_iter()
        .enumerate()
        .map(|(i, jpeg)| Frame {
            key: format!("image-{i}"),
            jpeg,
        })
        .collect();
    if frames.is_empty() {
        return (StatusCode::BAD_REQUEST, "no image_url parts\n").into_response();
    }
    match inner.labels.recognize(&frames).await {
        Ok(items) => {
            inner.answered.fetch_add(1, Ordering::SeqCst);
            let items: Vec<Value> = items
                .iter()
                .map(|i| json!({"name": i.name, "quantity": i.quantity}))
                .collect();
            let content = json!({ "items": items }).to_string();
            let reply = json!({
                "object": "chat.completion",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop"
                }]
            });
            (
                [(header::CONTENT_TYPE, "application/json")],
                reply.to_string(),
            )
                .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
