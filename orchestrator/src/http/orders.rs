//! `/api/orders`: the results known to this process, one result, its selected frames.

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::openapi::ApiErrorBody;
use super::{ApiError, Shared};
use crate::result::OrderResult;

pub(super) fn router() -> Router<Shared> {
    Router::new()
        .route("/api/orders", get(list))
        .route("/api/orders/{station}/{order}", get(one))
        .route("/api/orders/{station}/{order}/frames/{n}", get(frame))
}

#[derive(Deserialize)]
pub(super) struct Filter {
    station: Option<String>,
    status: Option<String>,
}

#[utoipa::path(get, path = "/api/orders", operation_id = "listOrders", tag = "orders",
    params(
        ("station" = Option<String>, Query, description = "Only this station's results"),
        ("status" = Option<String>, Query, description = "Only results with this status (e.g. mismatch)")),
    responses((status = 200, description = "The results known to this process", body = [OrderResult])))]
pub(super) async fn list(
    State(state): State<Shared>,
    filter: Result<Query<Filter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(Filter { station, status }) = filter?;
    // A field left blank (`?station=`) filters nothing.
    let station = station.filter(|s| !s.is_empty());
    let status = status.filter(|s| !s.is_empty());
    let results: Vec<OrderResult> = state
        .consumer
        .as_ref()
        .map(|c| c.results())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| station.as_deref().is_none_or(|s| r.station_id == s))
        .filter(|r| {
            // Compared as serialised, so the filter spells a status as the results do.
            status.as_deref().is_none_or(|s| {
                serde_json::to_value(r.validation.status)
                    .ok()
                    .is_some_and(|v| v.as_str() == Some(s))
            })
        })
        .collect();
    Ok(super::json(StatusCode::OK, &results))
}

fn no_result() -> ApiError {
    ApiError::not_found("no result for this order")
}

#[utoipa::path(get, path = "/api/orders/{station}/{order}", operation_id = "getOrder", tag = "orders",
    params(("station" = String, Path), ("order" = String, Path)),
    responses(
        (status = 200, description = "The order's result", body = OrderResult),
        (status = 404, description = "No result for this order", body = ApiErrorBody)))]
pub(super) async fn one(
    State(state): State<Shared>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((station, order)) = path?;
    let r = state
        .consumer
        .as_ref()
        .and_then(|c| c.result(&station, &order))
        .ok_or_else(no_result)?;
    Ok(super::json(StatusCode::OK, &r))
}

#[utoipa::path(get, path = "/api/orders/{station}/{order}/frames/{n}", operation_id = "getOrderFrame", tag = "orders",
    params(("station" = String, Path), ("order" = String, Path),
        ("n" = usize, Path, description = "Index into the result's selected_frames")),
    responses(
        (status = 200, description = "The selected frame", content_type = "image/jpeg", body = Vec<u8>),
        (status = 404, description = "No such result or frame", body = ApiErrorBody),
        (status = 502, description = "The store could not be read", body = ApiErrorBody)))]
pub(super) async fn frame(
    State(state): State<Shared>,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((station, order, n)) = path?;
    let consumer = state.consumer.as_ref().ok_or_else(no_result)?;
    let r = consumer.result(&station, &order).ok_or_else(no_result)?;
    // Any index that names no selected frame, a malformed one included, is a frame not
    // found rather than a bad request.
    let key = n
        .parse::<usize>()
        .ok()
        .and_then(|n| r.selected_frames.get(n))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "frame index must be 0..{} (the selected frames)",
                r.selected_frames.len()
            ))
        })?;
    match consumer.store().get(&consumer.layout().bucket, key).await {
        Ok(Some(o)) => Ok(([(header::CONTENT_TYPE, "image/jpeg")], o.body).into_response()),
        Ok(None) => Err(ApiError::not_found(format!("{key} is not stored"))),
        Err(e) => Err(ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())),
    }
}
