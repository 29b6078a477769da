//! The HTTP API (hyper 1, HTTP/1.1):
//! * `GET /healthz`: `ok` while the process serves (liveness);
//! * `GET /readyz`: 200 when every station's pipeline is running and the latest marker
//!   listing reached the store, else 503 with the reasons (readiness);
//! * `GET /metrics`: Prometheus text format;
//! * `GET /api/stations`: every station's supervision state;
//! * `GET /api/orders?station=&status=`: results known to this process;
//! * `GET /api/orders/{station}/{order}`: one result;
//! * `GET /api/orders/{station}/{order}/frames/{n}`: the n-th selected frame (JPEG).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::consume::Consumer;
use crate::metrics::{Metrics, log};
use crate::supervise::{State, StationStatus, Supervisor};

/// What the handlers read.
pub struct AppState {
    pub supervisor: Option<Arc<Supervisor>>,
    pub consumer: Option<Arc<Consumer>>,
    pub metrics: Arc<Metrics>,
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("valid response")
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Resp {
    let mut body = serde_json::to_vec_pretty(v).expect("serialisable");
    body.push(b'\n');
    respond(status, "application/json", body)
}

fn error(status: StatusCode, msg: &str) -> Resp {
    json(status, &serde_json::json!({ "error": msg }))
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name && !v.is_empty()).then(|| v.to_owned())
    })
}

/// Why the orchestrator is not ready to do its job: stations whose pipeline is not
/// running, and a store the latest listing could not read.
pub fn not_ready(stations: &[StationStatus], consumer: Option<&Consumer>) -> Vec<String> {
    let mut reasons: Vec<String> = stations
        .iter()
        .filter(|s| s.state != State::Running)
        .map(|s| match &s.last_exit {
            Some(exit) => format!(
                "station {}: pipeline {} (last exit: {exit})",
                s.station_id,
                s.state.as_str()
            ),
            None => format!("station {}: pipeline {}", s.station_id, s.state.as_str()),
        })
        .collect();
    if let Some(c) = consumer {
        match c.storage_status() {
            None => reasons.push("storage: not listed yet".into()),
            Some(Err(e)) => reasons.push(format!("storage: {e}")),
            Some(Ok(())) => {}
        }
    }
    reasons
}

/// Routes one request.
pub async fn handle(state: &AppState, req: &Request<Incoming>) -> Resp {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported");
    }
    let path = req.uri().path();
    let query = req.uri().query();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let statuses = || {
        state
            .supervisor
            .as_ref()
            .map(|s| s.statuses())
            .unwrap_or_default()
    };
    match parts.as_slice() {
        ["healthz"] => respond(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        ["readyz"] => {
            let reasons = not_ready(&statuses(), state.consumer.as_deref());
            let status = if reasons.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(
                status,
                &serde_json::json!({ "ready": reasons.is_empty(), "reasons": reasons }),
            )
        }
        ["metrics"] => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render(&statuses()),
        ),
        ["api", "stations"] => json(StatusCode::OK, &statuses()),
        ["api", "orders"] => {
            let station = query_param(query, "station");
            let status = query_param(query, "status");
            let results = state
                .consumer
                .as_ref()
                .map(|c| c.results())
                .unwrap_or_default();
            let filtered: Vec<_> = results
                .into_iter()
                .filter(|r| station.as_deref().is_none_or(|s| r.station_id == s))
                .filter(|r| {
                    status.as_deref().is_none_or(|s| {
                        serde_json::to_value(r.status)
                            .ok()
                            .is_some_and(|v| v.as_str() == Some(s))
                    })
                })
                .collect();
            json(StatusCode::OK, &filtered)
        }
        ["api", "orders", station, order] => {
            match state
                .consumer
                .as_ref()
                .and_then(|c| c.result(station, order))
            {
                Some(r) => json(StatusCode::OK, &r),
                None => error(StatusCode::NOT_FOUND, "no result for this order"),
            }
        }
        ["api", "orders", station, order, "frames", n] => {
            let Some(consumer) = state.consumer.as_ref() else {
                return error(StatusCode::NOT_FOUND, "no result for this order");
            };
            let Some(r) = consumer.result(station, order) else {
                return error(StatusCode::NOT_FOUND, "no result for this order");
            };
            let Some(key) = n
                .parse::<usize>()
                .ok()
                .and_then(|n| r.selected_frames.get(n))
            else {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "frame index must be 0..{} (the selected frames)",
                        r.selected_frames.len()
                    ),
                );
            };
            match consumer.store().get(&consumer.layout().bucket, key).await {
                Ok(Some(o)) => respond(StatusCode::OK, "image/jpeg", o.body),
                Ok(None) => error(StatusCode::NOT_FOUND, &format!("{key} is not stored")),
                Err(e) => error(StatusCode::BAD_GATEWAY, &e.to_string()),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

/// Binds `addr`; errors name it.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("http.bind {addr}: {e}"))
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (socket, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    log(format_args!("http accept: {e}"));
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::supervise::stopped(&mut shutdown) => break,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, &req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}
