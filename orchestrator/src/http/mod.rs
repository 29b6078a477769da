//! The HTTP API (axum, HTTP/1.1), one router per resource:
//! * `dashboard`: `GET /`, `/app.css`, `/app.js`, the dashboard page (docs/dashboard.md),
//!   served from the binary without a token: it holds no data;
//! * `health`: `GET /healthz`, `ok` while the process serves (liveness); `GET /readyz`,
//!   200 when every station's pipeline is running and the latest marker listing reached
//!   the store, else 503 with the reasons (readiness);
//! * `stations`: `GET /api/stations`, every station's supervision state (and its
//!   configuration revision);
//! * `reload`: `POST /api/reload`, the configuration read again and applied as on SIGHUP;
//! * `orders`: `GET /api/orders?station=&status=`, the results known to this process;
//!   `GET /api/orders/{station}/{order}`, one result;
//!   `GET /api/orders/{station}/{order}/frames/{n}`, its n-th selected frame (JPEG);
//! * `metrics`: `GET /metrics`, Prometheus text format;
//! * `events`: `GET /api/events`, Server-Sent Events (order results, station changes),
//!   resumable with `Last-Event-ID`;
//! * `stats`: `GET /api/stats?since=`, per-station counts and mismatch rates;
//! * `openapi`: `GET /api/openapi.json`, the OpenAPI 3.1 description of all of these;
//! * `expected`: `PUT`/`GET`/`DELETE /api/expected-orders/{order}`, `GET` and `POST
//!   /api/expected-orders`: the expected items of orders, from the till (1 MiB bodies);
//! * `videos`: `POST /api/videos`, a recording to check, `GET /api/videos/{id}` its
//!   progress and report, `GET /api/videos` the newest (bodies up to
//!   `http.max_video_mb`, streamed to disk).
//!
//! Errors are JSON (`{"error": ...}`, see [`ApiError`]): 404 for other paths, 405 for
//! other methods.

pub mod auth;
mod dashboard;
mod error;
mod events;
mod expected;
mod health;
mod metrics;
pub mod openapi;
mod orders;
mod reload;
mod server;
mod stations;
mod stats;
pub mod tls;
mod videos;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use health::not_ready;

use crate::consume::Consumer;
use crate::metrics::Metrics;
use crate::shutdown::Stopping;
use crate::status::StationStatus;
use crate::supervise::Supervisor;

/// What the handlers read.
pub struct AppState {
    pub supervisor: Option<Arc<Supervisor>>,
    pub consumer: Option<Arc<Consumer>>,
    pub metrics: Arc<Metrics>,
    /// `/api/expected-orders`; `None`: not served (404).
    pub expected: Option<Arc<crate::expected::ExpectedOrders>>,
    /// The API's bearer tokens ([`auth`]); `None`: open, no token asked.
    pub auth: Option<Arc<auth::Tokens>>,
    /// `/api/events`; `None`: 404.
    pub events: Option<Arc<crate::events::Events>>,
    /// `/api/videos`; `None`: 404.
    pub videos: Option<Arc<crate::videos::Videos>>,
    /// `POST /api/reload`; `None`: 404.
    pub reload: Option<tokio::sync::mpsc::UnboundedSender<crate::reload::Request>>,
}

impl AppState {
    /// Nothing but fresh metrics: every resource 404s until its field is set (tests and
    /// tools build on it with `..AppState::empty()`).
    pub fn empty() -> AppState {
        AppState {
            supervisor: None,
            consumer: None,
            metrics: Arc::new(Metrics::new()),
            expected: None,
            auth: None,
            events: None,
            videos: None,
            reload: None,
        }
    }

    fn statuses(&self) -> Vec<StationStatus> {
        self.supervisor
            .as_ref()
            .map(|s| s.statuses())
            .unwrap_or_default()
    }
}

type Shared = Arc<AppState>;

/// Bounds a frame read from a hung store, and with it how long a graceful shutdown
/// waits for in-flight requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The read-only endpoints never read a body; `expected` has a limit of its own.
const BODY_LIMIT: usize = 16 * 1024;

/// The whole API, with its layers.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(dashboard::router())
        .merge(health::router())
        .merge(stations::router())
        .merge(reload::router())
        .merge(orders::router())
        .merge(metrics::router())
        .merge(events::router())
        .merge(stats::router())
        .merge(openapi::router())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http())
                .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
                // What times out is a read from the store, an upstream: 504, as a failed
                // read is 502.
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    REQUEST_TIMEOUT,
                )),
        )
        // Merged after the layers: it reads bodies, and brings its own (larger) limit.
        .merge(expected::router())
        .merge(videos::router())
        // Last, so that it covers every route (`expected` too) and runs before the others.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .with_state(state)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported")
}

async fn not_found(method: Method) -> ApiError {
    // As on the known paths, a method the API never serves is refused before the path.
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed().await;
    }
    ApiError::not_found("no such endpoint")
}

/// Pretty-printed with a closing newline: the API is read with curl as often as by
/// programs.
fn json(status: StatusCode, v: &impl serde::Serialize) -> Response {
    let mut body = serde_json::to_vec_pretty(v).expect("serialisable");
    body.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Binds `addr`; errors name it.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("http.bind {addr}: {e}"))
}

/// Serves until `stopping` fires, then stops accepting and returns once the requests in
/// flight are answered.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, stopping: Stopping) {
    serve_router(listener, router(state), stopping).await;
}

/// [`serve`] over TLS (`http.tls_cert`, `http.tls_key`, see [`tls::acceptor`]).
pub async fn serve_tls(
    listener: TcpListener,
    state: Arc<AppState>,
    acceptor: tokio_rustls::TlsAcceptor,
    stopping: Stopping,
) {
    server::serve(listener, router(state), Some(acceptor), stopping).await;
}

async fn serve_router(listener: TcpListener, app: Router, stopping: Stopping) {
    server::serve(listener, app, None, stopping).await;
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use axum::routing::get;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;
    use crate::shutdown::Shutdown;

    async fn call(method: &str, uri: &str, length: Option<usize>) -> (StatusCode, String) {
        let app = router(Arc::new(AppState::empty()));
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(n) = length {
            req = req.header(header::CONTENT_LENGTH, n);
        }
        let res = app
            .oneshot(req.body(Body::from(vec![0; length.unwrap_or(0)])).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn error(msg: &str) -> String {
        String::from_utf8(serde_json::to_vec_pretty(&serde_json::json!({ "error": msg })).unwrap())
            .unwrap()
            + "\n"
    }

    #[tokio::test]
    async fn errors_are_json_and_methods_are_refused_before_paths() {
        assert_eq!(
            call("GET", "/healthz", None).await,
            (StatusCode::OK, "ok\n".into())
        );
        assert_eq!(call("HEAD", "/healthz", None).await.0, StatusCode::OK);
        let refused = (
            StatusCode::METHOD_NOT_ALLOWED,
            error("only GET is supported"),
        );
        assert_eq!(call("POST", "/healthz", None).await, refused);
        assert_eq!(call("DELETE", "/nope", None).await, refused);
        assert_eq!(
            call("GET", "/nope", None).await,
            (StatusCode::NOT_FOUND, error("no such endpoint"))
        );
        let no_result = (StatusCode::NOT_FOUND, error("no result for this order"));
        assert_eq!(call("GET", "/api/orders/s/1", None).await, no_result);
        assert_eq!(
            call("GET", "/api/orders/s/1/frames/x", None).await,
            no_result
        );
        assert_eq!(
            call("GET", "/api/orders?station=&status=", None).await,
            (StatusCode::OK, "[]\n".into())
        );
        assert_eq!(
            call("GET", "/healthz", Some(BODY_LIMIT + 1)).await.0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[tokio::test]
    async fn a_client_that_trickles_its_headers_is_dropped() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(AppState::empty()),
            shutdown.listener(),
        ));
        let started = std::time::Instant::now();
        let client = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            // The request line and one header, never the blank line that ends them.
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
                .unwrap();
            let mut raw = Vec::new();
            let _ = s.read_to_end(&mut raw);
            raw
        });
        let raw = client.await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
            "dropped after {waited:?}"
        );
        assert!(!String::from_utf8_lossy(&raw).contains("200 OK"));
        shutdown.trigger();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_answers_the_requests_in_flight() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let entered = Arc::new(Notify::new());
        let app = Router::new().route(
            "/slow",
            get({
                let entered = entered.clone();
                move || async move {
                    entered.notify_one();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "done"
                }
            }),
        );
        let shutdown = Shutdown::new();
        let server = tokio::spawn(serve_router(listener, app, shutdown.listener()));
        let client = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
                .unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).unwrap();
            raw
        });
        entered.notified().await;
        shutdown.trigger();
        let raw = client.await.unwrap();
        assert!(
            raw.starts_with("HTTP/1.1 200") && raw.ends_with("done"),
            "{raw}"
        );
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returns once the request is answered")
            .unwrap();
    }
}
