//! `/metrics`: the Prometheus scrape.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::Shared;
use crate::metrics::CONTENT_TYPE;

pub(super) fn router() -> Router<Shared> {
    Router::new().route("/metrics", get(scrape))
}

#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain")))]
pub(super) async fn scrape(State(state): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render_with(
            &state.statuses(),
            &state
                .events
                .as_ref()
                .map(|e| e.counts())
                .unwrap_or_default(),
        ),
    )
}
