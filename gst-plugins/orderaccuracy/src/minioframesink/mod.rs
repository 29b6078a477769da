//! `minioframesink`: stores every frame of an order in S3 and writes the order's `__EOS__`
//! manifest once all of them are stored.
//!
//! Frames are tagged by `ocrsegment` ([`crate::meta::OrderTag`]); the order ends with an
//! [`crate::events::OrderComplete`] event from `eosmarker`. Several PUTs run at once, each
//! retried with exponential backoff on transient failures; nothing is dropped silently.
//!
//! Untagged frames are not uploaded, except the last `pre-roll` of them, which belong to
//! the next order that starts (the first frames of an order are often read before the slip
//! is), and frames *held* for an order ([`crate::meta::held_for`], set by `ocrsegment` on
//! a frame that reads an ID not yet confirmed or nothing while a hand covers the slip):
//! they are kept and stored with their order, in capture order before the frame, when the
//! next tagged frame is of that order, and dropped (`frames-dropped-untagged`) when it is of
//! another order, when that order's `OrderComplete` arrives, or when a frame held for no
//! order arrives (the hold window upstream has passed). So no frame is stored twice or
//! under an order it was not held for, and the manifest stays in capture order. An `OrderComplete` for an order that has no stored frame still writes a marker,
//! with an empty frame list, so that the consumer can report the order as having no frames
//! instead of never hearing of it.
//!
//! An order ID that comes back after its marker was written (the slip was out of view for
//! longer than the idle timeout) continues that order: its `seq` continues after the stored
//! frames and its new marker is a superset, listing the frames of every segment (earlier
//! first), `first_unix_ms` of the first and `last_unix_ms` and `reason` of the latest. The
//! frames of the last 256 completed orders are remembered; for any other order the sink
//! reads its marker, if there is one, with one GET when the order starts (so after a
//! pipeline restart too). `orders-repeated` counts these orders.
//!
//! Unless the number came back for another order: tills reuse numbers. When the newest
//! stored frame of the order is `reuse-after` seconds (default 1800) or more older than the
//! frame that shows the ID again (both on the frames' own `unix_ms`), the sink LISTs the
//! folders of the ID's later occurrences (`{station}/{order}.` with the delimiter `/`, one
//! request), continues the latest if it is still recent and otherwise starts the next,
//! `{order}.{n}`: its own frames from `seq` 0, its own marker (`order_id` `{order}.{n}`,
//! `"occurrence": n`), the earlier orders untouched. `orders-reused` counts these; when the
//! LIST fails the order continues as if the number had not been reused, with a warning.
//! `reuse-after=0` turns this off.
//!
//! An order that has frames in the store but no marker (the pipeline was stopped or killed
//! in its middle) is resumed the same way: when the marker GET answers 404, one LIST of the
//! order's prefix (every page, within the same bound of 2 s for both requests) finds its
//! frames, `seq` continues after the highest and its marker lists them first, by `seq`.
//! `orders-resumed` counts these orders. The marker, when there is one, is authoritative;
//! when the LIST fails or times out the order starts as new (a warning says so) and its
//! marker lists only the new frames.
//!
//! While buffers arrive the sink posts a `sink-progress` element message at most every
//! `progress-interval` seconds, and one on reaching PLAYING, with its counters
//! ([`oa_contract::messages::SINK_PROGRESS`]): a signal of liveness meant for supervisors,
//! independent of debug logging. Each stored marker is announced with `order-stored`.
//!
//! ```text
//! AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... gst-launch-1.0 -e \
//!   videotestsrc num-buffers=30 ! video/x-raw,framerate=1/1 \
//!   ! ocrsegment station-id=station_1 ! videoconvert ! jpegenc \
//!   ! eosmarker idle-timeout=10000 \
//!   ! minioframesink endpoint-uri=http://127.0.0.1:9000 bucket=frames reuse-after=1800
//! ```
//!
//! Credentials come only from the standard AWS chain (environment, profile, SSO, ...):
//! a pipeline description is visible in `ps`, so it must never carry a secret.

use gst::glib;
use gst::prelude::*;

mod completed;
mod held;
mod imp;
mod progress;
mod stored;

glib::wrapper! {
    pub struct MinioFrameSink(ObjectSubclass<imp::MinioFrameSink>)
        @extends gst_base::BaseSink, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "minioframesink",
        gst::Rank::NONE,
        MinioFrameSink::static_type(),
    )
}
