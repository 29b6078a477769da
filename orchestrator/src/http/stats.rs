//! `GET /api/stats?since=`: validated, mismatch and unknown counts and the mismatch rate
//! per station, over the results this process knows (see [`crate::stats`]).

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::openapi::ApiErrorBody;
use super::{ApiError, Shared};
use crate::stats;

pub(super) fn router() -> Router<Shared> {
    Router::new().route("/api/stats", get(get_stats))
}

#[derive(Deserialize)]
pub(super) struct Params {
    since: Option<String>,
}

#[utoipa::path(get, path = "/api/stats", operation_id = "getStats", tag = "orders",
    params(("since" = Option<String>, Query, description = "Unix ms, or a span back from now: 90s, 15m, 8h, 7d")),
    responses(
        (status = 200, description = "Counts and mismatch rate per station", body = stats::Stats),
        (status = 400, description = "A bad since", body = ApiErrorBody)))]
pub(super) async fn get_stats(
    State(state): State<Shared>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    let now = crate::consume::now_ms().max(0) as u64;
    let since = match p.since.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(stats::parse_since(s, now).map_err(ApiError::bad_request)?),
        None => None,
    };
    let stations: Vec<String> = state.statuses().into_iter().map(|s| s.station_id).collect();
    let results = state
        .consumer
        .as_ref()
        .map(|c| c.results())
        .unwrap_or_default();
    Ok(super::json(
        StatusCode::OK,
        &stats::compute(&results, &stations, since),
    ))
}
