//! `GET /api/openapi.json`: the OpenAPI 3.1 description of every route, generated from
//! the handlers' `#[utoipa::path]` annotations and the types they return.

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{
    Shared, dashboard, events, expected, health, metrics, orders, reload, stations, stats, videos,
};

pub(super) fn router() -> Router<Shared> {
    Router::new().route("/api/openapi.json", get(openapi_json))
}

/// Every error: a status and this body.
#[derive(Serialize, ToSchema)]
pub struct ApiErrorBody {
    /// What went wrong; for bad input, starting with the field (`items[2].name: ...`).
    pub error: String,
}

/// `GET /readyz`.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// Why not, one line each: stations whose pipeline is not running, an unreadable store.
    pub reasons: Vec<String>,
}

/// One expected item as the till sends it.
#[derive(Serialize, ToSchema)]
pub struct ExpectedItem {
    /// An inventory name or alias.
    pub name: String,
    /// 1..=99; 1 when left out.
    pub quantity: Option<u32>,
}

/// `PUT /api/expected-orders/{order_id}`.
#[derive(Serialize, ToSchema)]
pub struct ExpectedItemsBody {
    /// 1 to 50 items.
    pub items: Vec<ExpectedItem>,
    /// When given, it must equal the path's.
    pub order_id: Option<String>,
}

/// One order of a batch.
#[derive(Serialize, ToSchema)]
pub struct BatchOrder {
    pub order_id: String,
    pub items: Vec<ExpectedItem>,
}

/// `POST /api/expected-orders`: at most 500 orders, all checked before any is stored.
#[derive(Serialize, ToSchema)]
pub struct BatchBody {
    pub orders: Vec<BatchOrder>,
}

/// The order IDs a batch created and replaced.
#[derive(Serialize, ToSchema)]
pub struct BatchReply {
    pub created: Vec<String>,
    pub replaced: Vec<String>,
}

/// Bearer tokens: `read` for the GETs under /api, `write` for the expected-orders writes
/// and video uploads.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_default()
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "order-accuracy orchestrator",
        description = "Results, events and expected orders of the packing stations. With API tokens configured, every route under /api needs `Authorization: Bearer <token>` (scope read; the expected-orders writes need write); /healthz, /readyz, /metrics and the dashboard (/, /app.css, /app.js) are open. Errors are JSON: {\"error\": \"...\"}.",
    ),
    paths(
        dashboard::index,
        dashboard::css,
        dashboard::js,
        health::healthz,
        health::readyz,
        metrics::scrape,
        stations::list,
        reload::reload,
        orders::list,
        orders::one,
        orders::frame,
        stats::get_stats,
        events::stream,
        expected::put_one,
        expected::one,
        expected::delete_one,
        expected::list,
        expected::batch,
        videos::upload,
        videos::one,
        videos::list,
        openapi_json,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "dashboard", description = "The dashboard page and its files, never behind a token"),
        (name = "health", description = "Probes and metrics, never behind a token"),
        (name = "stations", description = "The stations' pipelines"),
        (name = "orders", description = "Results of completed orders"),
        (name = "events", description = "Results and station changes as they happen (docs/events.md)"),
        (name = "expected-orders", description = "What each order should hold, from the till"),
        (name = "videos", description = "Recordings uploaded to be checked, as `orchestrator check-video` checks a file"),
    )
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/api/openapi.json", operation_id = "openapi", tag = "health",
    responses((status = 200, description = "This description (OpenAPI 3.1)", body = Object)))]
pub(super) async fn openapi_json() -> Response {
    super::json(StatusCode::OK, &ApiDoc::openapi())
}
