//! `POST /api/reload` (write scope): the configuration file read again and applied as on
//! SIGHUP ([`crate::reload`]): 200 with what changed, or 400 naming the field of an
//! invalid file (the running configuration kept).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;

use super::openapi::ApiErrorBody;
use super::{ApiError, Shared};
use crate::reload::{Outcome, Request};

pub(super) fn router() -> Router<Shared> {
    Router::new().route("/api/reload", post(reload).fallback(not_allowed))
}

async fn not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "/api/reload supports POST")
}

#[utoipa::path(post, path = "/api/reload", operation_id = "reload", tag = "stations",
    responses(
        (status = 200, description = "Applied: the stations added, removed, changed and unchanged, and the sections that need a restart", body = Outcome),
        (status = 400, description = "Refused: the file is invalid (the field is named) and the running configuration is kept", body = ApiErrorBody),
        (status = 404, description = "Not served by this process", body = ApiErrorBody)))]
pub(super) async fn reload(State(state): State<Shared>) -> Result<Response, ApiError> {
    let tx = state
        .reload
        .clone()
        .ok_or_else(|| ApiError::not_found("this process does not reload its configuration"))?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    tx.send(Request {
        why: "POST /api/reload",
        reply: Some(reply),
    })
    .map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the orchestrator is stopping",
        )
    })?;
    match answer.await {
        Ok(Ok(outcome)) => Ok(super::json(StatusCode::OK, &outcome)),
        Ok(Err(e)) => Err(ApiError::bad_request(e)),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the orchestrator is stopping",
        )),
    }
}
