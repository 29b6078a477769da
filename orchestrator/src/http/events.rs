//! `GET /api/events`: Server-Sent Events, one per order result and station change.
//!
//! `?types=order.mismatch,station.state` and `?station=` select events. A client that
//! comes back sends `Last-Event-ID` (browsers' `EventSource` does it by itself; or
//! `?last_event_id=`) and gets every retained event after that one; when it is no longer
//! retained (too old, or this process restarted), every retained event, which the client
//! tells apart by `id`. Without it, only events from now on.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oa_contract::events::EVENT_TYPES;
use serde::Deserialize;

use super::openapi::ApiErrorBody;
use super::{ApiError, Shared};
use crate::events::Filter;

pub(super) fn router() -> Router<Shared> {
    Router::new().route("/api/events", get(stream))
}

#[derive(Deserialize)]
pub(super) struct Params {
    types: Option<String>,
    station: Option<String>,
    last_event_id: Option<String>,
}

/// Comments at this interval keep proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn parse_types(s: &str) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !EVENT_TYPES.contains(&t) {
            return Err(ApiError::bad_request(format!(
                "types: {t:?} is not an event type ({})",
                EVENT_TYPES.join(", ")
            )));
        }
        out.push(t.to_owned());
    }
    Ok(out)
}

#[utoipa::path(get, path = "/api/events", operation_id = "streamEvents", tag = "events",
    params(
        ("types" = Option<String>, Query, description = "Comma-separated event types: order.completed, order.mismatch, station.state"),
        ("station" = Option<String>, Query, description = "Only this station's events"),
        ("last_event_id" = Option<String>, Query, description = "Resume after this event (as the Last-Event-ID header)"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses(
        (status = 200, description = "Server-Sent Events: id = the event's id, event = its type, data = the event (docs/events.schema.json)", content_type = "text/event-stream", body = String),
        (status = 400, description = "An unknown event type", body = ApiErrorBody)))]
pub(super) async fn stream(
    State(state): State<Shared>,
    headers: HeaderMap,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params?;
    let events = state
        .events
        .clone()
        .ok_or_else(|| ApiError::not_found("events are not published by this orchestrator"))?;
    let filter = Filter {
        types: parse_types(p.types.as_deref().unwrap_or(""))?,
        station: p.station.filter(|s| !s.is_empty()),
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(p.last_event_id)
        .filter(|s| !s.is_empty());
    let cursor = events.subscribe(last.as_deref(), filter);
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        let e = c.next().await?;
        let sse = SseEvent::default()
            .id(e.event.id.as_str())
            .event(e.event.kind.as_str())
            .data(&*e.json);
        Some((Ok::<_, Infallible>(sse), c))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}
