//! The contract shared by the GStreamer elements and the orchestrator.
//!
//! Everything that is written to or read from the bucket is named here: the key scheme,
//! which station and order IDs may become part of a key, and the `__EOS__` manifest. So
//! are the pipeline's side of the conversation: the region of interest both sides check
//! ([`Roi`]) and the bus messages a pipeline posts and the orchestrator reads back from
//! `gst-launch-1.0 -m` ([`messages`]), and how camera credentials reach a pipeline
//! ([`camera`]). Keeping them in one crate means a writer and a
//! reader cannot drift apart. How new orders are found without walking frames (the station
//! index, and the orchestrator's checkpoint) is in [`index`]. The events the orchestrator publishes are named in
//! [`events`].

pub mod camera;
pub mod events;
mod ids;
pub mod index;
mod keys;
mod manifest;
pub mod messages;
mod pipeline;
mod roi;

pub use ids::{
    DEFAULT_ORDER_PATTERN, IdError, IdKind, MAX_ID_LEN, is_valid_id, order_key, split_order_key,
    validate_id, validate_order_key,
};
pub use index::{
    CHECKPOINTS_DIR, INDEX_DIR, IndexEntry, IndexKind, checkpoint_key, index_after, index_key,
    index_prefix, parse_index_key,
};
pub use keys::{
    CLAIMS_DIR, EXPECTED_DIR, FRAME_EXTENSION, FRAME_PREFIX, KeyError, MARKER_NAME, OUTBOX_DIR,
    ParsedKey, RESULTS_DIR, claim_key, expected_key, expected_prefix, frame_key, marker_key,
    occurrences_prefix, order_prefix, outbox_key, outbox_prefix, parse_expected_key, parse_key,
    parse_occurrence_prefix, result_key, station_prefix,
};
pub use manifest::{CompletionReason, FrameEntry, MANIFEST_VERSION, Manifest, ManifestError};
pub use messages::{LaunchMessage, parse_launch_line};
pub use pipeline::{TemplateError, pipeline_args, render_pipeline};
pub use roi::{MIN_ROI_SIDE, Roi, RoiError};
