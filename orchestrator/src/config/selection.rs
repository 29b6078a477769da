//! `[selection]`: the optional YOLO object detector used to pick an order's best frames.

use super::{ConfigError, Resolver};
use crate::detector::{
    DEFAULT_DOMINATE_FRACTION, DEFAULT_INPUT_SIZE, DEFAULT_MIN_CONFIDENCE, DetectorConfig,
};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectionConfig {
    /// The ONNX model; `None`: no detector, and no other field may be set.
    pub detector_model: Option<PathBuf>,
    /// The model's class names, in its class order.
    pub classes: Vec<String>,
    /// Classes whose boxes make a frame useless when they dominate it.
    pub drop_classes: Vec<String>,
    /// Detections scoring less are ignored.
    pub min_confidence: f32,
    /// Share of the image the drop classes may cover.
    pub dominate_fraction: f32,
    /// The model's square input side (a multiple of 32).
    pub input_size: u32,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            detector_model: None,
            classes: Vec::new(),
            drop_classes: Vec::new(),
            min_confidence: DEFAULT_MIN_CONFIDENCE,
            dominate_fraction: DEFAULT_DOMINATE_FRACTION,
            input_size: DEFAULT_INPUT_SIZE,
        }
    }
}

impl SelectionConfig {
    pub(super) fn validate(&mut self, resolve: &Resolver<'_>) -> Result<(), ConfigError> {
        let f = |name: &str| format!("selection.{name}");
        let model = match &self.detector_model {
            Some(m) if m.as_os_str().is_empty() => {
                return Err(ConfigError::new(f("detector_model"), "empty"));
            }
            Some(m) => resolve.path(m),
            None => {
                let d = SelectionConfig::default();
                let set = [
                    ("classes", !self.classes.is_empty()),
                    ("drop_classes", !self.drop_classes.is_empty()),
                    ("min_confidence", self.min_confidence != d.min_confidence),
                    (
                        "dominate_fraction",
                        self.dominate_fraction != d.dominate_fraction,
                    ),
                    ("input_size", self.input_size != d.input_size),
                ];
                return match set.iter().find(|(_, s)| *s) {
                    Some((name, _)) => {
                        Err(ConfigError::new(f(name), "needs selection.detector_model"))
                    }
                    None => Ok(()),
                };
            }
        };
        if !model.is_file() {
            return Err(ConfigError::new(
                f("detector_model"),
                format!("{} does not exist", model.display()),
            ));
        }
        self.detector_model = Some(model);
        if self.classes.is_empty() {
            return Err(ConfigError::new(
                f("classes"),
                "missing: the model's class names, in its class order",
            ));
        }
        let mut seen = HashSet::new();
        for c in &self.classes {
            if c.trim().is_empty() {
                return Err(ConfigError::new(f("classes"), "empty class name"));
            }
            if !seen.insert(c) {
                return Err(ConfigError::new(
                    f("classes"),
                    format!("duplicate class name {c:?}"),
                ));
            }
        }
        if let Some(d) = self.drop_classes.iter().find(|d| !self.classes.contains(d)) {
            return Err(ConfigError::new(
                f("drop_classes"),
                format!("{d:?} is not one of selection.classes {:?}", self.classes),
            ));
        }
        if !(self.min_confidence > 0.0 && self.min_confidence <= 1.0) {
            return Err(ConfigError::new(
                f("min_confidence"),
                format!("{} is outside 0 (exclusive) ..= 1", self.min_confidence),
            ));
        }
        if !(self.dominate_fraction > 0.0 && self.dominate_fraction <= 1.0) {
            return Err(ConfigError::new(
                f("dominate_fraction"),
                format!("{} is outside 0 (exclusive) ..= 1", self.dominate_fraction),
            ));
        }
        if !(32..=4096).contains(&self.input_size) || !self.input_size.is_multiple_of(32) {
            return Err(ConfigError::new(
                f("input_size"),
                format!(
                    "{} must be a multiple of 32 between 32 and 4096",
                    self.input_size
                ),
            ));
        }
        Ok(())
    }

    /// The detector's settings, when a model is named (after [`Self::validate`]).
    pub fn detector(&self) -> Option<DetectorConfig> {
        let model = self.detector_model.clone()?;
        Some(DetectorConfig {
            min_confidence: self.min_confidence,
            dominate_fraction: self.dominate_fraction,
            input_size: self.input_size,
            ..DetectorConfig::new(model, self.classes.clone(), self.drop_classes.clone())
        })
    }
}
