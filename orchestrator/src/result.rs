//! The per-order result of docs/architecture.md, stored at `results/{station}/{order}.json`.

use serde::{Deserialize, Serialize};

use crate::validate::Validation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OrderStatus {
    Validated,
    Mismatch,
    UnknownOrder,
    NoFrames,
    RecognitionFailed,
    /// Recognised, and the expected items are not known yet: held (in memory) for
    /// `processing.expected_wait_s`, validated once they arrive, else `unknown-order`.
    /// Never stored as a final result.
    AwaitingOrder,
}

impl OrderStatus {
    /// As stored: `validated`, `mismatch`, `unknown-order`...
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Validated => "validated",
            OrderStatus::Mismatch => "mismatch",
            OrderStatus::UnknownOrder => "unknown-order",
            OrderStatus::NoFrames => "no-frames",
            OrderStatus::RecognitionFailed => "recognition-failed",
            OrderStatus::AwaitingOrder => "awaiting-order",
        }
    }
}

/// An item with a quantity, as ordered or as detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Item {
    pub name: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuantityMismatch {
    pub name: String,
    pub expected: u32,
    pub detected: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Timings {
    pub discover: u64,
    pub load: u64,
    pub select: u64,
    pub recognize: u64,
    pub validate: u64,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderResult {
    /// The order key: the slip's order ID, or `{id}.{n}` for the n-th order the till gave
    /// that number at this station (see `occurrence`).
    pub order_id: String,
    pub station_id: String,
    /// From 2 up when the number had been used at the station before (`reuse_after_s`);
    /// absent for the first order with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<u32>,
    /// `status` to `accuracy`, stored inline as they always were.
    #[serde(flatten)]
    pub validation: Validation,
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
    /// Tokens the recogniser's server counted for this order (`usage` of an OpenAI-compatible
    /// reply); absent for the embedded backends and servers that do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenUsage>,
}

#[cfg(test)]
impl OrderResult {
    /// A result with nothing but its identity, status and marker time, for unit tests.
    pub(crate) fn example(
        station: &str,
        order: &str,
        status: OrderStatus,
        at: Option<i64>,
    ) -> Self {
        OrderResult {
            order_id: order.into(),
            station_id: station.into(),
            occurrence: None,
            validation: crate::validate::Validation::unvalidated(status, vec![], vec![]),
            selected_frames: vec![],
            recognizer: "r".into(),
            timings_ms: Default::default(),
            error: None,
            revision: 1,
            manifest_frame_count: None,
            manifest_last_unix_ms: None,
            recognition_attempts: 0,
            marker_last_modified_ms: at,
            tokens: None,
        }
    }
}

/// Tokens of one recognition: what a shared GPU server's capacity is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenUsage {
    /// The prompt, images included.
    pub prompt: u64,
    /// The reply (reasoning included, where the server counts it).
    pub completion: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result with every field set, as the version before `validation` was flattened
    /// wrote it.
    const STORED: &str = r#"{"order_id":"384","station_id":"station-1","status":"mismatch","expected":[{"name":"green apple","quantity":2},{"name":"water","quantity":1}],"detected":[{"name":"green apple","quantity":1},{"name":"cola","quantity":1}],"matched":[{"name":"green apple","quantity":1}],"missing":[{"name":"water","quantity":1}],"extra":[{"name":"cola","quantity":1}],"quantity_mismatch":[{"name":"green apple","expected":2,"detected":1}],"accuracy":0.25,"selected_frames":["frames/station-1/384/000001.jpg"],"recognizer":"labels","timings_ms":{"discover":1,"load":2,"select":3,"recognize":4,"validate":5,"total":15},"error":"recognition: timeout","revision":2,"manifest_frame_count":7,"manifest_last_unix_ms":1700000000123,"recognition_attempts":3,"marker_last_modified_ms":1700000000456}"#;

    /// The same with the optional fields at their defaults.
    const STORED_MINIMAL: &str = r#"{"order_id":"384","station_id":"station-1","status":"mismatch","expected":[{"name":"green apple","quantity":2},{"name":"water","quantity":1}],"detected":[{"name":"green apple","quantity":1},{"name":"cola","quantity":1}],"matched":[{"name":"green apple","quantity":1}],"missing":[{"name":"water","quantity":1}],"extra":[{"name":"cola","quantity":1}],"quantity_mismatch":[{"name":"green apple","expected":2,"detected":1}],"accuracy":0.25,"selected_frames":["frames/station-1/384/000001.jpg"],"recognizer":"labels","timings_ms":{"discover":1,"load":2,"select":3,"recognize":4,"validate":5,"total":15},"revision":0}"#;

    #[test]
    fn stored_results_round_trip_unchanged() {
        for stored in [STORED, STORED_MINIMAL] {
            let r: OrderResult = serde_json::from_str(stored).unwrap();
            assert_eq!(serde_json::to_string(&r).unwrap(), stored);
        }
        let r: OrderResult = serde_json::from_str(STORED).unwrap();
        assert_eq!(r.validation.status, OrderStatus::Mismatch);
        // as_str is the stored form.
        for s in [
            OrderStatus::UnknownOrder,
            OrderStatus::RecognitionFailed,
            OrderStatus::NoFrames,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(r.validation.quantity_mismatch[0].detected, 1);
        assert_eq!(r.validation.accuracy, 0.25);
        assert_eq!(r.recognition_attempts, 3);
    }

    #[test]
    fn results_from_before_revisions_load() {
        let legacy = STORED_MINIMAL.replace(r#","revision":0"#, "");
        let r: OrderResult = serde_json::from_str(&legacy).unwrap();
        assert_eq!(r.revision, 0);
        assert_eq!(r.validation.missing.len(), 1);
    }
}
