//! `/api/expected-orders`: the till's side, what each order should hold
//! ([`crate::expected`]).
//!
//! * `PUT /api/expected-orders/{order_id}` with `{"items": [{"name", "quantity"}]}`
//!   (quantity 1 when left out): 201 when created, 200 when replaced, the stored body;
//! * `GET /api/expected-orders/{order_id}`: the stored body, or the `orders_file` entry
//!   (`"source": "orders_file"`), else 404;
//! * `DELETE /api/expected-orders/{order_id}`: 204, or 404 when the API stored nothing;
//! * `GET /api/expected-orders?limit=N`: the newest N stored (default 100, at most 500);
//! * `POST /api/expected-orders` with `{"orders": [{"order_id", "items"}, ...]}`: at most
//!   500, all checked before any is stored; 200 with the IDs created and replaced.
//!
//! Bad input is 400 with the field named (`items[2].name: unknown item "bananna"; ...`).
//! Bodies are limited to [`BODY_LIMIT`].

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::openapi::{ApiErrorBody, BatchBody, BatchReply, ExpectedItemsBody};
use super::{ApiError, Shared};
use crate::expected::ExpectedOrder;
use crate::expected::{ExpectedOrders, MAX_BATCH, Written};

/// A batch of 500 orders of a few items each fits.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Default and largest `limit` of the listing.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 500;

pub(super) fn router() -> Router<Shared> {
    Router::new()
        .route(
            "/api/expected-orders",
            get(list).post(batch).fallback(not_allowed),
        )
        .route(
            "/api/expected-orders/{order_id}",
            get(one)
                .put(put_one)
                .delete(delete_one)
                .fallback(not_allowed),
        )
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http())
                // Enforced by the body extractor, so that a 413 is JSON too.
                .layer(DefaultBodyLimit::max(BODY_LIMIT))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    super::REQUEST_TIMEOUT,
                )),
        )
}

async fn not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "/api/expected-orders supports GET and POST, /api/expected-orders/{order_id} GET, \
         PUT and DELETE",
    )
}

fn service(state: &Shared) -> Result<Arc<ExpectedOrders>, ApiError> {
    state
        .expected
        .clone()
        .ok_or_else(|| ApiError::not_found("expected orders are not served by this process"))
}

fn store_failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_gateway(e.to_string())
}

#[utoipa::path(put, path = "/api/expected-orders/{order_id}", operation_id = "putExpectedOrder", tag = "expected-orders",
    params(("order_id" = String, Path)),
    request_body = ExpectedItemsBody,
    responses(
        (status = 201, description = "Stored", body = ExpectedOrder),
        (status = 200, description = "Replaced", body = ExpectedOrder),
        (status = 400, description = "Bad input; the message names the field", body = ApiErrorBody),
        (status = 502, description = "The store could not be written", body = ApiErrorBody)))]
pub(super) async fn put_one(
    State(state): State<Shared>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(order_id) = path?;
    let body = body?;
    let svc = service(&state)?;
    let order = svc
        .parse_put(&order_id, &body)
        .map_err(|e| ApiError::bad_request(e.0))?;
    let (written, stored) = svc.put(order).await.map_err(store_failed)?;
    let status = match written {
        Written::Created => StatusCode::CREATED,
        Written::Replaced => StatusCode::OK,
    };
    Ok(super::json(status, &stored))
}

/// The `{order_id}` of a path, checked by the rule every key applies.
fn order_id_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(order_id) = path?;
    if oa_contract::validate_id(oa_contract::IdKind::Order, &order_id).is_err() {
        return Err(ApiError::bad_request(format!(
            "order_id: {order_id:?} is not an order ID ([A-Za-z0-9][A-Za-z0-9_-]{{0,63}})"
        )));
    }
    Ok(order_id)
}

#[utoipa::path(get, path = "/api/expected-orders/{order_id}", operation_id = "getExpectedOrder", tag = "expected-orders",
    params(("order_id" = String, Path)),
    responses(
        (status = 200, description = "The stored items, or the orders_file entry (with \"source\": \"orders_file\")", body = ExpectedOrder),
        (status = 404, description = "Not known", body = ApiErrorBody)))]
pub(super) async fn one(
    State(state): State<Shared>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let order_id = order_id_of(path)?;
    let svc = service(&state)?;
    if let Some(o) = svc.stored(&order_id).await.map_err(store_failed)? {
        return Ok(super::json(StatusCode::OK, &o));
    }
    match svc.base().get(&order_id) {
        Some(items) => Ok(super::json(
            StatusCode::OK,
            &serde_json::json!({ "order_id": order_id, "items": items, "source": "orders_file" }),
        )),
        None => Err(ApiError::not_found(format!(
            "no expected items for order {order_id:?}"
        ))),
    }
}

#[utoipa::path(delete, path = "/api/expected-orders/{order_id}", operation_id = "deleteExpectedOrder", tag = "expected-orders",
    params(("order_id" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Nothing stored through the API for it", body = ApiErrorBody)))]
pub(super) async fn delete_one(
    State(state): State<Shared>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let order_id = order_id_of(path)?;
    let svc = service(&state)?;
    if svc.delete(&order_id).await.map_err(store_failed)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "no expected items stored through the API for order {order_id:?}"
        )))
    }
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    limit: Option<String>,
}

#[utoipa::path(get, path = "/api/expected-orders", operation_id = "listExpectedOrders", tag = "expected-orders",
    params(("limit" = Option<usize>, Query, description = "1..=500, default 100")),
    responses(
        (status = 200, description = "The newest stored orders", body = [ExpectedOrder]),
        (status = 400, description = "Bad input; the message names the field", body = ApiErrorBody)))]
pub(super) async fn list(
    State(state): State<Shared>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let limit = match q.limit.as_deref().filter(|s| !s.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit: {s:?} is not a number in 1..={MAX_LIMIT}"))
            })?,
    };
    let svc = service(&state)?;
    let orders = svc.list(limit).await.map_err(store_failed)?;
    Ok(super::json(StatusCode::OK, &orders))
}

#[utoipa::path(post, path = "/api/expected-orders", operation_id = "putExpectedOrders", tag = "expected-orders",
    request_body = BatchBody,
    responses(
        (status = 200, description = "Every order stored", body = BatchReply),
        (status = 400, description = "Bad input; the message names the field", body = ApiErrorBody),
        (status = 502, description = "The store failed midway; sending the batch again is safe", body = ApiErrorBody)))]
pub(super) async fn batch(
    State(state): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let svc = service(&state)?;
    let orders = svc
        .parse_batch(&body)
        .map_err(|e| ApiError::bad_request(e.0))?;
    debug_assert!(orders.len() <= MAX_BATCH);
    let total = orders.len();
    let mut created = Vec::new();
    let mut replaced = Vec::new();
    let mut set = tokio::task::JoinSet::new();
    let mut todo = orders.into_iter();
    loop {
        while set.len() < 16
            && let Some(o) = todo.next()
        {
            let svc = svc.clone();
            set.spawn(async move { svc.put(o).await });
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        match done.map_err(store_failed)? {
            Ok((Written::Created, o)) => created.push(o.order_id),
            Ok((Written::Replaced, o)) => replaced.push(o.order_id),
            Err(e) => {
                return Err(store_failed(format!(
                    "{} of {total} orders stored before: {e} (storing them is idempotent: \
                     send the batch again)",
                    created.len() + replaced.len()
                )));
            }
        }
    }
    created.sort();
    replaced.sort();
    Ok(super::json(
        StatusCode::OK,
        &serde_json::json!({ "created": created, "replaced": replaced }),
    ))
}
