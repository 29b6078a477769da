//! Typed serialized downstream events that carry the order lifecycle through the pipeline.
//!
//! `ocrsegment` sends [`OrderChanged`]; `eosmarker` turns changes, idle timeouts and EOS
//! into exactly one [`OrderComplete`] per order; `minioframesink` writes the marker on it.

use oa_contract::CompletionReason;

/// Structure name of [`OrderChanged`].
pub const ORDER_CHANGED: &str = "oa-order-changed";
/// Structure name of [`OrderComplete`].
pub const ORDER_COMPLETE: &str = "oa-order-complete";

/// The current order of a station changed (`order_id` is `None` once no slip is read).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderChanged {
    pub station_id: String,
    pub order_id: Option<String>,
    pub previous: Option<String>,
    /// Mean OCR confidence of the reads that confirmed the new order (0 when none).
    pub confidence: f32,
}

impl From<&OrderChanged> for gst::Event {
    fn from(e: &OrderChanged) -> gst::Event {
        let s = gst::Structure::builder(ORDER_CHANGED)
            .field("station-id", e.station_id.as_str())
            .field("order-id", e.order_id.as_deref())
            .field("previous", e.previous.as_deref())
            .field("confidence", e.confidence)
            .build();
        gst::event::CustomDownstream::new(s)
    }
}

impl OrderChanged {
    pub fn try_parse(event: &gst::EventRef) -> Option<Self> {
        let s = custom_downstream(event, ORDER_CHANGED)?;
        Some(OrderChanged {
            station_id: s.get("station-id").ok()?,
            order_id: s.get("order-id").ok()?,
            previous: s.get("previous").ok()?,
            confidence: s.get("confidence").unwrap_or(0.0),
        })
    }
}

/// An order is complete: every frame of it has passed; the sink may write its marker.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderComplete {
    pub station_id: String,
    pub order_id: String,
    pub reason: CompletionReason,
    /// Frames of the order that passed `eosmarker`.
    pub frame_count: u32,
    pub first_pts: Option<gst::ClockTime>,
    pub last_pts: Option<gst::ClockTime>,
    pub first_unix_ms: Option<u64>,
    pub last_unix_ms: Option<u64>,
}

impl From<&OrderComplete> for gst::Event {
    fn from(e: &OrderComplete) -> gst::Event {
        let s = gst::Structure::builder(ORDER_COMPLETE)
            .field("station-id", e.station_id.as_str())
            .field("order-id", e.order_id.as_str())
            .field("reason", e.reason.as_str())
            .field("frame-count", e.frame_count)
            .field("first-pts", e.first_pts)
            .field("last-pts", e.last_pts)
            .field_if_some("first-unix-ms", e.first_unix_ms)
            .field_if_some("last-unix-ms", e.last_unix_ms)
            .build();
        gst::event::CustomDownstream::new(s)
    }
}

impl OrderComplete {
    /// An order complete with `frame_count` frames and no first/last PTS or capture time
    /// (e.g. one a test sends, or an order whose frames carried none).
    pub fn new(
        station_id: impl Into<String>,
        order_id: impl Into<String>,
        reason: CompletionReason,
        frame_count: u32,
    ) -> Self {
        OrderComplete {
            station_id: station_id.into(),
            order_id: order_id.into(),
            reason,
            frame_count,
            first_pts: None,
            last_pts: None,
            first_unix_ms: None,
            last_unix_ms: None,
        }
    }

    pub fn try_parse(event: &gst::EventRef) -> Option<Self> {
        let s = custom_downstream(event, ORDER_COMPLETE)?;
        Some(OrderComplete {
            station_id: s.get("station-id").ok()?,
            order_id: s.get("order-id").ok()?,
            reason: CompletionReason::parse(s.get::<&str>("reason").ok()?)?,
            frame_count: s.get("frame-count").ok()?,
            first_pts: s.get("first-pts").ok()?,
            last_pts: s.get("last-pts").ok()?,
            first_unix_ms: s.get("first-unix-ms").ok(),
            last_unix_ms: s.get("last-unix-ms").ok(),
        })
    }
}

fn custom_downstream<'a>(event: &'a gst::EventRef, name: &str) -> Option<&'a gst::StructureRef> {
    match event.view() {
        gst::EventView::CustomDownstream(_) => event.structure().filter(|s| s.name() == name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        gst::init().unwrap();
        let changed = OrderChanged {
            station_id: "s1".into(),
            order_id: Some("384".into()),
            previous: None,
            confidence: 0.9,
        };
        let ev = gst::Event::from(&changed);
        assert!(ev.is_serialized());
        assert_eq!(OrderChanged::try_parse(&ev), Some(changed));
        assert_eq!(OrderComplete::try_parse(&ev), None);

        let complete = OrderComplete {
            station_id: "s1".into(),
            order_id: "384".into(),
            reason: CompletionReason::IdleTimeout,
            frame_count: 8,
            first_pts: Some(gst::ClockTime::from_seconds(1)),
            last_pts: None,
            first_unix_ms: Some(1),
            last_unix_ms: Some(2),
        };
        let ev = gst::Event::from(&complete);
        assert_eq!(OrderComplete::try_parse(&ev), Some(complete));
        let bare = OrderComplete::new("s1", "7", CompletionReason::NextOrder, 0);
        assert_eq!(
            OrderComplete::try_parse(&gst::Event::from(&bare)),
            Some(bare)
        );
        assert_eq!(OrderChanged::try_parse(&gst::event::Eos::new()), None);
    }
}
