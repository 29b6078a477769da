//! `OaOrderMeta`: which station captured a frame and which order it belongs to.
//!
//! Built on `GstCustomMeta` (a registered name carrying a structure), so it needs no
//! unsafe code, is visible to C and Python elements, and is copied through encoders
//! such as `jpegenc` (a custom meta without tags survives `GstVideoEncoder`).

use gst::meta::CustomMeta;

/// Registered name of the meta.
pub const ORDER_META_NAME: &str = "OaOrderMeta";

const FIELD_STATION: &str = "station-id";
const FIELD_ORDER: &str = "order-id";
const FIELD_UNIX_MS: &str = "unix-ms";
const FIELD_HELD_FOR: &str = "held-for";

/// Registers the meta; called once from `plugin_init`, harmless when repeated.
pub fn register() {
    if !CustomMeta::is_registered(ORDER_META_NAME) {
        CustomMeta::register(ORDER_META_NAME, &[]);
    }
}

/// What `ocrsegment` knows about a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTag {
    pub station_id: String,
    /// The order this frame belongs to; `None` while no order is current.
    pub order_id: Option<String>,
    /// Wall-clock capture time (milliseconds since the Unix epoch) as seen by `ocrsegment`.
    pub unix_ms: u64,
}

impl OrderTag {
    /// Puts the tag on `buffer`, replacing an earlier one.
    pub fn attach(&self, buffer: &mut gst::BufferRef) {
        register();
        let mut meta = match CustomMeta::from_mut_buffer(buffer, ORDER_META_NAME) {
            Ok(meta) => meta,
            Err(_) => CustomMeta::add(buffer, ORDER_META_NAME).expect("meta is registered"),
        };
        let s = meta.mut_structure();
        s.set(FIELD_STATION, self.station_id.as_str());
        s.set(FIELD_ORDER, self.order_id.as_deref());
        s.set(FIELD_UNIX_MS, self.unix_ms);
    }

    /// Reads the tag from `buffer`, if it carries one.
    pub fn from_buffer(buffer: &gst::BufferRef) -> Option<OrderTag> {
        let meta = CustomMeta::from_buffer(buffer, ORDER_META_NAME).ok()?;
        let s = meta.structure();
        Some(OrderTag {
            station_id: s.get::<String>(FIELD_STATION).ok()?,
            order_id: s.get::<Option<String>>(FIELD_ORDER).ok()?,
            unix_ms: s.get::<u64>(FIELD_UNIX_MS).unwrap_or(0),
        })
    }
}

/// Marks a tagged frame without an order as held for `order_id` (or clears that): it belongs
/// to that order if the order's ID is read again before anything else happens (a hand over
/// the slip, the first frames before an ID is confirmed), and is dropped otherwise. Kept
/// apart from [`OrderTag`] so that taggers that know nothing of holding are unaffected.
pub fn set_held_for(buffer: &mut gst::BufferRef, order_id: Option<&str>) {
    register();
    let mut meta = match CustomMeta::from_mut_buffer(buffer, ORDER_META_NAME) {
        Ok(meta) => meta,
        Err(_) => CustomMeta::add(buffer, ORDER_META_NAME).expect("meta is registered"),
    };
    let s = meta.mut_structure();
    match order_id {
        Some(id) => s.set(FIELD_HELD_FOR, id),
        None => s.remove_field(FIELD_HELD_FOR),
    }
}

/// The order a frame is held for ([`set_held_for`]).
pub fn held_for(buffer: &gst::BufferRef) -> Option<String> {
    let meta = CustomMeta::from_buffer(buffer, ORDER_META_NAME).ok()?;
    meta.structure().get::<String>(FIELD_HELD_FOR).ok()
}

/// Wall-clock time at which the frame with `running_time` was captured, in milliseconds
/// since the Unix epoch: now, minus how long ago on the pipeline clock that running time
/// was. OCR can take longer than a frame interval, so "now" alone would drift per frame.
pub fn capture_unix_ms(element: &gst::Element, running_time: Option<gst::ClockTime>) -> u64 {
    use gst::prelude::*;
    let now = unix_ms_now();
    let (Some(clock), Some(base), Some(running_time)) =
        (element.clock(), element.base_time(), running_time)
    else {
        return now;
    };
    let clock_now = clock.time();
    let age_ms = clock_now.saturating_sub(base + running_time).mseconds();
    now.saturating_sub(age_ms)
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trips_and_replaces() {
        gst::init().unwrap();
        register();
        let mut buffer = gst::Buffer::with_size(4).unwrap();
        let b = buffer.get_mut().unwrap();
        assert_eq!(OrderTag::from_buffer(b), None);
        let mut tag = OrderTag {
            station_id: "s1".into(),
            order_id: None,
            unix_ms: 5,
        };
        tag.attach(b);
        assert_eq!(OrderTag::from_buffer(b).as_ref(), Some(&tag));
        tag.order_id = Some("384".into());
        tag.attach(b);
        assert_eq!(OrderTag::from_buffer(b), Some(tag));
        assert_eq!(b.iter_meta::<gst::Meta>().count(), 1);
    }

    #[test]
    fn held_for_is_set_cleared_and_survives_a_new_tag() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::with_size(4).unwrap();
        let b = buffer.get_mut().unwrap();
        assert_eq!(held_for(b), None);
        let tag = OrderTag {
            station_id: "s1".into(),
            order_id: None,
            unix_ms: 5,
        };
        tag.attach(b);
        set_held_for(b, Some("384"));
        assert_eq!(held_for(b).as_deref(), Some("384"));
        assert_eq!(OrderTag::from_buffer(b), Some(tag.clone()));
        tag.attach(b);
        assert_eq!(held_for(b).as_deref(), Some("384"));
        set_held_for(b, None);
        assert_eq!(held_for(b), None);
        assert_eq!(b.iter_meta::<gst::Meta>().count(), 1);
    }
}
