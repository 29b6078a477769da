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

async fn scrape(State(state): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(&state.statuses()),
    )
}
