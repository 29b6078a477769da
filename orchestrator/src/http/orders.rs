//! `/api/orders`: the results known to this process a page at a time, one result, its
//! selected frames.

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::openapi::ApiErrorBody;
use super::{ApiError, Shared};
use crate::listing::{self, MAX_LIMIT, Position};
use crate::result::{OrderResult, OrderStatus};

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
    limit: Option<String>,
    cursor: Option<String>,
}

impl Filter {
    /// The page asked for; a 400 names the parameter that is wrong.
    fn query(self) -> Result<listing::Query, ApiError> {
        // A parameter left blank (`?station=`) is not given.
        let given = |v: Option<String>| v.filter(|s| !s.is_empty());
        let station = given(self.station);
        if let Some(s) = &station {
            oa_contract::validate_id(oa_contract::IdKind::Station, s)
                .map_err(|e| ApiError::bad_request(format!("station: {e}")))?;
        }
        let status = given(self.status)
            .map(|s| {
                serde_json::from_value::<OrderStatus>(serde_json::Value::String(s.clone())).map_err(
                    |_| {
                        ApiError::bad_request(format!(
                            "status: {s:?} is not one of validated, mismatch, unknown-order, \
                             no-frames, recognition-failed, awaiting-order"
                        ))
                    },
                )
            })
            .transpose()?;
        let cursor = given(self.cursor);
        let limit = match given(self.limit) {
            // Clients from before paging ask for neither and get every result, as then.
            None if cursor.is_none() => None,
            None => Some(MAX_LIMIT),
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "limit: {l:?} is not a number from 1 to {MAX_LIMIT}"
                    ))
                })
                .map(Some)?,
        };
        let after = cursor
            .map(|c| Position::parse(&c).map_err(|e| ApiError::bad_request(format!("cursor: {e}"))))
            .transpose()?;
        Ok(listing::Query {
            station,
            status,
            after,
            limit,
        })
    }
}

/// The `Link` to the page after `q`'s, which ends at `next`. Every value in it is URL-safe
/// as it is (IDs, status names, cursors).
fn next_link(q: &listing::Query, next: &Position) -> String {
    let limit = q.limit.unwrap_or(MAX_LIMIT);
    let mut url = format!("/api/orders?limit={limit}&cursor={next}");
    if let Some(s) = &q.station {
        url.push_str(&format!("&station={s}"));
    }
    if let Some(s) = q.status
        && let Ok(serde_json::Value::String(s)) = serde_json::to_value(s)
    {
        url.push_str(&format!("&status={s}"));
    }
    format!("<{url}>; rel=\"next\"")
}

#[utoipa::path(get, path = "/api/orders", operation_id = "listOrders", tag = "orders",
    params(
        ("station" = Option<String>, Query, description = "Only this station's results"),
        ("status" = Option<String>, Query, description = "Only results with this status (e.g. mismatch)"),
        ("limit" = Option<usize>, Query, description = "Results per page, 1 to 500; without it and without a cursor, every result (as before paging), with a cursor 500"),
        ("cursor" = Option<String>, Query, description = "Where the page starts: the cursor in the previous page's Link header")),
    responses(
        (status = 200, description = "The results known to this process, newest first (by when their marker was written); when more follow, a `Link: <...>; rel=\"next\"` header names the next page",
            body = [OrderResult],
            headers(("Link" = String, description = "The next page, when there is one"))),
        (status = 400, description = "A parameter is wrong; the message names it", body = ApiErrorBody)))]
pub(super) async fn list(
    State(state): State<Shared>,
    filter: Result<Query<Filter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(filter) = filter?;
    let q = filter.query()?;
    let page = state
        .consumer
        .as_ref()
        .map(|c| c.results_page(&q))
        .unwrap_or_default();
    let mut res = super::json(StatusCode::OK, &page.results);
    if let Some(next) = &page.next
        && let Ok(link) = header::HeaderValue::from_str(&next_link(&q, next))
    {
        res.headers_mut().insert(header::LINK, link);
    }
    Ok(res)
}

fn no_result() -> ApiError {
    ApiError::not_found("no result for this order")
}

#[utoipa::path(get, path = "/api/orders/{station}/{order}", operation_id = "getOrder", tag = "orders",
    params(("station" = String, Path), ("order" = String, Path)),
    responses(
        (status = 200, description = "The order's result", body = OrderResult),
        (status = 404, description = "No result for this order", body = ApiErrorBody),
        (status = 502, description = "The store could not be read", body = ApiErrorBody)))]
pub(super) async fn one(
    State(state): State<Shared>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((station, order)) = path?;
    let consumer = state.consumer.as_ref().ok_or_else(no_result)?;
    let r = stored_result(consumer, &station, &order).await?;
    Ok(super::json(StatusCode::OK, &r))
}

/// The result from memory or, for one older than memory keeps, from the store.
async fn stored_result(
    consumer: &crate::consume::Consumer,
    station: &str,
    order: &str,
) -> Result<crate::result::OrderResult, ApiError> {
    match consumer.result_or_stored(station, order).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(no_result()),
        Err(e) => Err(ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())),
    }
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
    let r = stored_result(consumer, &station, &order).await?;
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
