//! The order-accuracy orchestrator: one process for many stations.
//!
//! It supervises one `gst-launch-1.0 -e` pipeline per station, discovers completed orders
//! through their `__EOS__` markers, selects the best frames, recognises the packed items,
//! validates them against the expected order and publishes the result.

/// What `--version` prints: the version, and for a `meson install` build the commit and
/// the prefix (`OA_BUILD` at build time).
pub const BUILD: &str = match option_env!("OA_BUILD") {
    Some(b) => b,
    None => concat!(env!("CARGO_PKG_VERSION"), " (cargo build)"),
};

pub mod calibrate;
pub mod check_video;
pub mod config;
pub mod consume;
pub mod detector;
pub mod events;
pub mod expected;
pub mod http;
pub mod jpeg;
pub mod listing;
pub mod logging;
pub mod metrics;
pub mod orders;
pub mod recognize;
pub mod reload;
pub mod result;
pub mod retention;
pub mod roles;
pub mod select;
pub mod shutdown;
pub mod stats;
pub mod status;
pub mod store;
pub mod supervise;
#[doc(hidden)]
pub mod testing;
pub mod validate;
pub mod videos;
