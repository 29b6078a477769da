//! The pure step of processing an order: from what became of its manifest, frames and
//! recognition, and the expected items, to the [`OrderResult`] that is stored.

use crate::orders::Inventory;
use crate::result::{Item, OrderResult, OrderStatus, Timings};
use crate::validate::Validation;

/// Which order, and which version of its marker, a result is about.
#[derive(Debug, Clone, Default)]
pub struct Header {
    pub station_id: String,
    pub order_id: String,
    pub recognizer: String,
    pub revision: u32,
    pub manifest_frame_count: Option<u32>,
    pub manifest_last_unix_ms: Option<u64>,
    pub marker_last_modified_ms: Option<i64>,
    pub recognition_attempts: u32,
}

/// How far the order got.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The manifest could not be read, or is about another order.
    BadManifest(String),
    /// No frame could be loaded.
    NoFrames(String),
    SelectionFailed(String),
    RecognitionFailed {
        selected: Vec<String>,
        error: String,
        /// The failure may pass: worth another attempt while the retry window lasts.
        transient: bool,
    },
    Recognized {
        selected: Vec<String>,
        detected: Vec<Item>,
        tokens: Option<crate::result::TokenUsage>,
    },
}

/// The result for `outcome`; timings are the caller's to fill in.
pub fn evaluate(
    header: Header,
    outcome: Outcome,
    expected: Option<&[Item]>,
    inventory: &Inventory,
) -> OrderResult {
    let occurrence = Some(oa_contract::split_order_key(&header.order_id).1).filter(|&n| n > 1);
    let mut r = OrderResult {
        occurrence,
        order_id: header.order_id,
        station_id: header.station_id,
        validation: Validation::unvalidated(
            OrderStatus::NoFrames,
            expected.map(<[_]>::to_vec).unwrap_or_default(),
            vec![],
        ),
        selected_frames: vec![],
        recognizer: header.recognizer,
        timings_ms: Timings::default(),
        error: None,
        revision: header.revision,
        manifest_frame_count: header.manifest_frame_count,
        manifest_last_unix_ms: header.manifest_last_unix_ms,
        marker_last_modified_ms: header.marker_last_modified_ms,
        recognition_attempts: header.recognition_attempts,
        tokens: None,
    };
    match outcome {
        Outcome::BadManifest(e) | Outcome::NoFrames(e) => r.error = Some(e),
        Outcome::SelectionFailed(e) => {
            r.validation.status = OrderStatus::RecognitionFailed;
            r.error = Some(format!("frame selection: {e}"));
        }
        Outcome::RecognitionFailed {
            selected, error, ..
        } => {
            r.validation.status = OrderStatus::RecognitionFailed;
            r.selected_frames = selected;
            r.error = Some(format!("recognition: {error}"));
        }
        Outcome::Recognized {
            selected,
            detected,
            tokens,
        } => {
            r.selected_frames = selected;
            r.tokens = tokens;
            r.validation = crate::validate::validate(expected, &detected, inventory);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> Inventory {
        Inventory::from_json(
            r#"{"items":[{"id":"1","name":"green apple","aliases":["apple"]},{"id":"2","name":"water"}]}"#,
        )
        .unwrap()
    }

    fn item(name: &str, quantity: u32) -> Item {
        Item {
            name: name.into(),
            quantity,
        }
    }

    fn header() -> Header {
        Header {
            station_id: "s1".into(),
            order_id: "384".into(),
            recognizer: "labels".into(),
            revision: 1,
            ..Header::default()
        }
    }

    fn recognized(detected: Vec<Item>) -> Outcome {
        Outcome::Recognized {
            selected: vec!["k1".into()],
            detected,
            tokens: None,
        }
    }

    #[test]
    fn each_status_from_its_outcome() {
        let inv = inventory();
        let expected = [item("green apple", 2)];
        let r = evaluate(
            header(),
            recognized(vec![item("apple", 2)]),
            Some(&expected),
            &inv,
        );
        assert_eq!(r.validation.status, OrderStatus::Validated);
        assert_eq!(r.validation.accuracy, 1.0);
        assert_eq!(r.selected_frames, ["k1"]);

        let r = evaluate(
            header(),
            recognized(vec![item("green apple", 1), item("water", 1)]),
            Some(&expected),
            &inv,
        );
        assert_eq!(r.validation.status, OrderStatus::Mismatch);
        assert_eq!(r.validation.extra, [item("water", 1)]);
        assert_eq!(r.validation.quantity_mismatch.len(), 1);

        let r = evaluate(header(), recognized(vec![item("water", 1)]), None, &inv);
        assert_eq!(r.validation.status, OrderStatus::UnknownOrder);

        let r = evaluate(
            header(),
            Outcome::NoFrames("none loaded".into()),
            Some(&expected),
            &inv,
        );
        assert_eq!(r.validation.status, OrderStatus::NoFrames);
        assert_eq!(r.validation.expected, expected, "what was expected is kept");
        assert_eq!(r.error.as_deref(), Some("none loaded"));

        let r = evaluate(
            header(),
            Outcome::RecognitionFailed {
                selected: vec!["k".into()],
                error: "timeout".into(),
                transient: true,
            },
            Some(&expected),
            &inv,
        );
        assert_eq!(r.validation.status, OrderStatus::RecognitionFailed);
        assert_eq!(r.error.as_deref(), Some("recognition: timeout"));

        let r = evaluate(
            header(),
            Outcome::SelectionFailed("bad jpeg".into()),
            None,
            &inv,
        );
        assert_eq!(r.validation.status, OrderStatus::RecognitionFailed);
        assert!(r.error.unwrap().starts_with("frame selection"));
    }

    #[test]
    fn the_header_is_recorded() {
        let h = Header {
            revision: 3,
            manifest_frame_count: Some(7),
            marker_last_modified_ms: Some(42),
            ..header()
        };
        let r = evaluate(h, Outcome::BadManifest("x".into()), None, &inventory());
        assert_eq!(
            (
                r.revision,
                r.manifest_frame_count,
                r.marker_last_modified_ms
            ),
            (3, Some(7), Some(42))
        );
        assert_eq!((r.station_id.as_str(), r.order_id.as_str()), ("s1", "384"));
    }
}
