//! `ocrsegment`: reads the order ID off the order slip and tags every frame with it.
//!
//! An in-place video filter that never touches pixel data. Per OCR'd frame the "read" is
//! the first order ID matched by `order-pattern` that passes `min-confidence` and the ID
//! alphabet of the storage contract; frames that are not OCR'd (`ocr-interval`,
//! `skip-unchanged`) inherit the previous read. A read ID becomes the current order after
//! `confirm-frames` consecutive OCR'd reads, and the current order is released after
//! `release-frames` consecutive OCR'd frames without it. Every buffer gets an
//! [`OrderTag`](crate::meta::OrderTag) naming the current order only when that frame's read
//! is the current order. Changes travel downstream as
//! [`OrderChanged`](crate::events::OrderChanged) events, sent before the buffer that caused
//! them, and as `order-started`, `order-changed` and `order-released` element messages
//! ([`oa_contract::messages`]).

use gst::glib;
use gst::prelude::*;

mod debounce;
pub mod frame;
mod imp;
mod slip;

glib::wrapper! {
    pub struct OcrSegment(ObjectSubclass<imp::OcrSegment>)
        @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "ocrsegment",
        gst::Rank::NONE,
        OcrSegment::static_type(),
    )
}
