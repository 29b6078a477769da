//! `eosmarker`: owns the order lifecycle.
//!
//! Frames pass through untouched. The element watches the `OaOrderMeta` of every frame and
//! the `OrderChanged` events from `ocrsegment`, and sends exactly one serialized
//! `OrderComplete` event downstream per order (per segment, see below): when a different
//! order starts (`next-order`), when no frame of the open order arrived for `idle-timeout`
//! (a timer that fires with no buffers flowing, e.g. a stalled camera), or on EOS
//! (`end-of-stream`).
//! An order whose slip stays in view is completed once its frames span
//! `max-order-duration` on their own timestamps (`max-duration`): its later frames continue
//! the same order ID as its next segment, which gets an `OrderComplete` of its own (the
//! sink rewrites the order's marker as a superset), so no order grows without bound.
//! Frames held for the open order ([`crate::meta::held_for`]: a hand over the slip) keep
//! it from idling, without being counted: they may still become its frames.

use gst::glib;
use gst::prelude::*;

mod imp;
mod lifecycle;

glib::wrapper! {
    pub struct EosMarker(ObjectSubclass<imp::EosMarker>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "eosmarker",
        gst::Rank::NONE,
        EosMarker::static_type(),
    )
}
