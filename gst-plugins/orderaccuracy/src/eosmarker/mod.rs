//! `eosmarker`: owns the order lifecycle.
//!
//! Frames pass through untouched. The element watches the `OaOrderMeta` of every frame and
//! the `OrderChanged` events from `ocrsegment`, and sends exactly one serialized
//! `OrderComplete` event downstream per order: when a different order starts
//! (`next-order`), when no frame of the open order arrived for `idle-timeout` (a timer that
//! fires with no buffers flowing, e.g. a stalled camera), or on EOS (`end-of-stream`).
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
