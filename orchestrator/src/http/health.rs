//! `/healthz` (liveness) and `/readyz` (readiness).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

use super::Shared;
use super::openapi::Readiness;
use crate::consume::Consumer;
use crate::status::{State as Pipeline, StationStatus};

pub(super) fn router() -> Router<Shared> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "health",
    responses((status = 200, description = "The process serves (liveness)", body = String, content_type = "text/plain")))]
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "health",
    responses(
        (status = 200, description = "Every pipeline runs and the store was listed", body = Readiness),
        (status = 503, description = "Not ready, with the reasons", body = Readiness)))]
pub(super) async fn readyz(State(state): State<Shared>) -> Response {
    let reasons = not_ready(&state.statuses(), state.consumer.as_deref());
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    super::json(
        status,
        &serde_json::json!({ "ready": reasons.is_empty(), "reasons": reasons }),
    )
}

/// Why the orchestrator is not ready to do its job: stations whose pipeline is not
/// running, and a store the latest listing could not read.
pub fn not_ready(stations: &[StationStatus], consumer: Option<&Consumer>) -> Vec<String> {
    let mut reasons: Vec<String> = stations
        .iter()
        .filter(|s| !matches!(s.state, Pipeline::Running | Pipeline::Finished))
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
