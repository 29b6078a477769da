//! `/api/stations`: every station's supervision state.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

use super::Shared;
use crate::status::StationStatus;

pub(super) fn router() -> Router<Shared> {
    Router::new().route("/api/stations", get(list))
}

#[utoipa::path(get, path = "/api/stations", operation_id = "listStations", tag = "stations",
    responses((status = 200, description = "Every station's supervision state, in configuration order", body = [StationStatus])))]
pub(super) async fn list(State(state): State<Shared>) -> Response {
    super::json(StatusCode::OK, &state.statuses())
}
