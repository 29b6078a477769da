//! `/api/stations`: every station's supervision state.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

use super::Shared;

pub(super) fn router() -> Router<Shared> {
    Router::new().route("/api/stations", get(list))
}

async fn list(State(state): State<Shared>) -> Response {
    super::json(StatusCode::OK, &state.statuses())
}
