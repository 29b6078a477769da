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
//!
//! Frames without an order are not lost for it: a frame is *held* for an order (the
//! `held-for` field of the same meta, [`crate::meta::set_held_for`]) when it reads an ID
//! that is not confirmed yet (the first `confirm-frames` frames of an order, whatever that
//! is set to), or when it reads nothing within `hold-frames` frames of the last frame that
//! read the order last tagged (a hand over the slip; the order may even have been released
//! meanwhile, and is then current again at once when its ID is read within the window,
//! without `confirm-frames` reads, so that one more second of its slip is enough). Buffers are never delayed here: `minioframesink` keeps held frames and
//! stores them, in capture order and before the frame, when the next tagged frame is of
//! their order, and drops (and counts) them when it is of another order, when that order
//! completes, or when a frame held for nothing arrives (the window passed). `eosmarker`
//! keeps an order open while frames are held for it. Holding in the sink rather than here
//! keeps this element a plain in-place filter whose output order is its input order, and
//! puts the decision where the frames wait anyway.

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
