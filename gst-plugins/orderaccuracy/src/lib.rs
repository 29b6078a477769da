#![allow(clippy::non_send_fields_in_send_ty, unused_doc_comments)]

//! Order accuracy GStreamer plugin.
//!
//! * `ocrsegment` reads the order slip with OCR and tags every frame with its order.
//! * `eosmarker` decides when an order is complete and says so with a serialized event.
//! * `minioframesink` stores the frames of every order in S3 and writes the `__EOS__`
//!   manifest last.
//!
//! The OCR engine is the `oa_ocr` crate; the names and fields of the bus messages the
//! orchestrator reads are `oa_contract::messages`.

use gst::glib;

pub mod camerasrc;
pub mod eosmarker;
pub mod events;
pub mod meta;
pub mod minioframesink;
pub mod ocrsegment;
pub mod throttle;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    meta::register();
    ocrsegment::register(plugin)?;
    eosmarker::register(plugin)?;
    minioframesink::register(plugin)?;
    camerasrc::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    orderaccuracy,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
