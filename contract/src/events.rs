//! The events the orchestrator publishes (Server-Sent Events, webhooks, MQTT): one JSON
//! schema for all (`docs/events.schema.json`), and the headers a webhook receiver checks.
//!
//! ```json
//! {"id": "order:station-1:384:1", "type": "order.mismatch", "time_unix_ms": 1700000000000,
//!  "station_id": "station-1", "order_id": "384", "data": { ...the stored result... }}
//! ```
//!
//! Every final result of an order is one event: `order.mismatch` when the bag differs from
//! the order, `order.completed` for every other status. A change of a station's pipeline
//! state is a `station.state` event. The `id` is unique and, for order events, the same
//! wherever and however often the same result revision is announced: receivers drop
//! duplicates by `id` (at least once, never exactly once).

use serde::{Deserialize, Serialize};

/// Every final order result whose status is not `mismatch`.
pub const ORDER_COMPLETED: &str = "order.completed";
/// A bag that differs from its order: the one to act on at the counter.
pub const ORDER_MISMATCH: &str = "order.mismatch";
/// A station's pipeline changed state (`starting`, `running`, `backoff`, `failing`, `stopped`).
pub const STATION_STATE: &str = "station.state";
/// Every event type, in the order the docs list them.
pub const EVENT_TYPES: [&str; 3] = [ORDER_COMPLETED, ORDER_MISMATCH, STATION_STATE];

/// Webhook header: the event's `id`, for receivers that drop duplicates.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Webhook header: the event's `type`.
pub const EVENT_TYPE_HEADER: &str = "X-OA-Event-Type";
/// Webhook header: `sha256=` and the lowercase hex HMAC-SHA256 of the body, keyed with the
/// webhook's secret.
pub const SIGNATURE_HEADER: &str = "X-OA-Signature";
/// What the signature header's value starts with.
pub const SIGNATURE_SCHEME: &str = "sha256=";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// When the orchestrator created the event.
    pub time_unix_ms: u64,
    pub station_id: String,
    /// Order events only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Order events: the result as stored at `results/{station}/{order}.json`. Station
    /// events: `{"state", "previous", "pid", "last_exit"}`.
    pub data: serde_json::Value,
}

/// The ID of the event announcing `revision` of an order's result.
pub fn order_event_id(station: &str, order: &str, revision: u32) -> String {
    format!("order:{station}:{order}:{revision}")
}

/// The ID of a station event; `seq` tells apart two changes in one millisecond.
pub fn station_event_id(station: &str, unix_ms: u64, seq: u64) -> String {
    format!("station:{station}:{unix_ms}-{seq}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_their_type_field() {
        let e = Event {
            id: order_event_id("station-1", "384", 2),
            kind: ORDER_MISMATCH.into(),
            time_unix_ms: 1_700_000_000_000,
            station_id: "station-1".into(),
            order_id: Some("384".into()),
            data: serde_json::json!({"status": "mismatch"}),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""type":"order.mismatch""#), "{json}");
        assert!(json.contains(r#""id":"order:station-1:384:2""#), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        let station = Event {
            id: station_event_id("s", 5, 1),
            kind: STATION_STATE.into(),
            order_id: None,
            ..e
        };
        let json = serde_json::to_string(&station).unwrap();
        assert!(!json.contains("order_id"), "{json}");
        assert_ne!(station_event_id("s", 5, 1), station_event_id("s", 5, 2));
    }
}
