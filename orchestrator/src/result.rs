//! The per-order result of docs/architecture.md, stored at `results/{station}/{order}.json`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderStatus {
    Validated,
    Mismatch,
    UnknownOrder,
    NoFrames,
    RecognitionFailed,
}

/// An item with a quantity, as ordered or as detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantityMismatch {
    pub name: String,
    pub expected: u32,
    pub detected: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub discover: u64,
    pub load: u64,
    pub select: u64,
    pub recognize: u64,
    pub validate: u64,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderResult {
    pub order_id: String,
    pub station_id: String,
    pub status: OrderStatus,
    pub expected: Vec<Item>,
    pub detected: Vec<Item>,
    pub matched: Vec<Item>,
    pub missing: Vec<Item>,
    pub extra: Vec<Item>,
    pub quantity_mismatch: Vec<QuantityMismatch>,
    pub accuracy: f64,
    pub selected_frames: Vec<String>,
    pub recognizer: String,
    pub timings_ms: Timings,
    /// Why the order could not be validated (recognition failure, unreadable frames...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// 1 for the first result of an order, one more each time the order was processed
    /// again because its marker was replaced by a superset (the order ID came back at the
    /// station after its marker was written). 0 in results written before revisions
    /// existed; those are never processed again.
    #[serde(default)]
    pub revision: u32,
    /// `frame_count` of the manifest this result was computed from (absent when the
    /// manifest could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_frame_count: Option<u32>,
    /// `last_unix_ms` of that manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_last_unix_ms: Option<u64>,
    /// Recognition attempts this result took: more than 1 when failures that could pass
    /// (VLM down, timeouts, 429/5xx) were retried; 0 in results written before retries.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recognition_attempts: u32,
    /// When the store says that marker was written (its LastModified), in Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_last_modified_ms: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
