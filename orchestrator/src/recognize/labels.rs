//! The `labels` backend (embedded default): reads the labels and stickers on the packed
//! items with the PP-OCR engine of `oa_ocr` (the models `ocrsegment` reads slips with),
//! and maps each text line to an inventory name or alias ([`Inventory::canonical`], with
//! the configured bounded fuzzy match).
//!
//! Counting: within one frame every matching line counts one item; across frames the
//! **maximum** count per item is taken, because the same physical item is seen on several
//! frames. Lines read with less than `min_confidence`, and lines that look like the order
//! slip (`ORDER #384`, `#384`, `Order 384`, bare numbers), are ignored; lines that match no
//! inventory name are ignored too (stray text is common on packaging).
//!
//! The OCR engine is loaded once, when the backend is built, and runs in
//! `spawn_blocking`; it is not `Sync`, so orders take turns on it.

use super::{Frame, RecognizeError, Recognizer, add_item};
use crate::config::LabelsConfig;
use crate::orders::Inventory;
use crate::result::Item;
use oa_ocr::{BgrImage, OcrConfig, OcrEngine};
use regex::Regex;
use std::sync::{Arc, Mutex};

pub struct LabelsRecognizer {
    engine: Arc<Mutex<OcrEngine>>,
    inventory: Arc<Inventory>,
    min_confidence: f32,
    max_edit_distance: usize,
    slip: Regex,
}

impl std::fmt::Debug for LabelsRecognizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelsRecognizer")
            .field("min_confidence", &self.min_confidence)
            .field("max_edit_distance", &self.max_edit_distance)
            .finish_non_exhaustive()
    }
}

/// What looks like an order slip rather than an item label.
pub const ORDER_SLIP_PATTERN: &str =
    r"(?i)^\s*(?:(?:order|ord|bestellung|pedido|commande)\b.*|#\s*\S+|no\.?\s*\d+|\d+)\s*$";

impl LabelsRecognizer {
    pub fn new(config: &LabelsConfig, inventory: Arc<Inventory>) -> Result<Self, String> {
        let ocr = OcrConfig {
            model_dir: config.model_dir.clone(),
            intra_threads: config.threads,
            det_max_side_len: config.det_max_side,
            ..OcrConfig::default()
        };
        let engine = OcrEngine::new(&ocr).map_err(|e| format!("labels backend: {e}"))?;
        Ok(LabelsRecognizer {
            engine: Arc::new(Mutex::new(engine)),
            inventory,
            min_confidence: config.min_confidence,
            max_edit_distance: config.max_edit_distance,
            slip: Regex::new(ORDER_SLIP_PATTERN).map_err(|e| e.to_string())?,
        })
    }
}

/// Maps the text lines of one frame to item counts.
pub fn count_labels<'a>(
    lines: impl IntoIterator<Item = (&'a str, f32)>,
    inventory: &Inventory,
    min_confidence: f32,
    max_edit_distance: usize,
    slip: &Regex,
) -> Vec<Item> {
    let mut items = Vec::new();
    for (text, confidence) in lines {
        if confidence < min_confidence || slip.is_match(text) {
            continue;
        }
        if let Some(name) = inventory.canonical(text, max_edit_distance) {
            add_item(&mut items, name, 1);
        }
    }
    items
}

/// The maximum count per item over the frames, in first-seen order.
pub fn merge_max(per_frame: &[Vec<Item>]) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::new();
    for frame in per_frame {
        for it in frame {
            match out.iter_mut().find(|o| o.name == it.name) {
                Some(o) => o.quantity = o.quantity.max(it.quantity),
                None => out.push(it.clone()),
            }
        }
    }
    out
}

#[async_trait::async_trait]
impl Recognizer for LabelsRecognizer {
    fn name(&self) -> &str {
        "labels"
    }

    async fn recognize(&self, frames: &[Frame]) -> Result<Vec<Item>, RecognizeError> {
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let frames = frames.to_vec();
        let engine = Arc::clone(&self.engine);
        let inventory = Arc::clone(&self.inventory);
        let (min_conf, max_edit) = (self.min_confidence, self.max_edit_distance);
        let slip = self.slip.clone();
        tokio::task::spawn_blocking(move || {
            let mut per_frame = Vec::with_capacity(frames.len());
            let mut errors = Vec::new();
            for f in &frames {
                let img = match crate::jpeg::decode_bgr(&f.jpeg) {
                    Ok(d) => BgrImage {
                        width: d.width as u32,
                        height: d.height as u32,
                        data: d.data,
                    },
                    Err(e) => {
                        errors.push(format!("{}: corrupt JPEG: {e}", f.key));
                        continue;
                    }
                };
                let lines = {
                    let mut engine = engine.lock().unwrap_or_else(|e| e.into_inner());
                    engine.detect_and_recognize(&img)
                };
                match lines {
                    Ok(lines) => per_frame.push(count_labels(
                        lines.iter().map(|l| (l.text.as_str(), l.confidence)),
                        &inventory,
                        min_conf,
                        max_edit,
                        &slip,
                    )),
                    Err(e) => errors.push(format!("{}: {e}", f.key)),
                }
            }
            if per_frame.is_empty() {
                return Err(RecognizeError::new(format!(
                    "no frame could be read: {}",
                    errors.join("; ")
                )));
            }
            for e in &errors {
                eprintln!("orchestrator: labels: skipping frame {e}");
            }
            Ok(merge_max(&per_frame))
        })
        .await
        .map_err(|e| RecognizeError::new(format!("OCR task failed: {e}")))?
    }
}
