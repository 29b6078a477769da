//! The storage contract shared by the GStreamer elements and the orchestrator.
//!
//! Everything that is written to or read from the bucket is named here: the key scheme,
//! which station and order IDs may become part of a key, and the `__EOS__` manifest.
//! Keeping it in one crate means a writer and a reader cannot drift apart.

mod ids;
mod keys;
mod manifest;
mod pipeline;

pub use ids::{IdError, IdKind, MAX_ID_LEN, is_valid_id, validate_id};
pub use keys::{
    FRAME_EXTENSION, FRAME_PREFIX, KeyError, MARKER_NAME, ParsedKey, RESULTS_DIR, frame_key,
    marker_key, order_prefix, parse_key, result_key, station_prefix,
};
pub use manifest::{CompletionReason, FrameEntry, MANIFEST_VERSION, Manifest, ManifestError};
pub use pipeline::{TemplateError, pipeline_args, render_pipeline};
