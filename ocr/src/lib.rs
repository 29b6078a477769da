//! Text detection and recognition with the PP-OCR ONNX models, through ONNX Runtime.
//!
//! Pre- and post-processing follow rapidocr (the models' reference pipeline): BGR input,
//! DB detection with a 0.3 pixel threshold, 0.5 box threshold and 1.6 unclip ratio, and
//! CTC recognition at height 48. The crate knows nothing of GStreamer: callers hand it
//! planes of raw pixels ([`convert`]) or a [`BgrImage`], so the plugin and the
//! orchestrator share one engine. [`session`] is where every ONNX Runtime session of the
//! project is built, the orchestrator's YOLO detector's too.

mod ctc;
mod geometry;
mod image;
pub mod session;

pub use ctc::Dictionary;
pub use geometry::{BoxParams, Quad};
pub use image::{
    BgrImage, ColorMatrix, PixelLayout, Plane, Rect, Signature, YuvCoefficients, convert,
};
pub use session::{
    DEFAULT_MODEL_DIR, DEFAULT_ORT_DYLIB, SessionError, SessionOptions, ort_environment,
    resolve_model_dir,
};

use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};

/// File name of the detection model inside the model directory.
pub const DET_MODEL: &str = "PP-OCRv6_det_small.onnx";
/// File name of the recognition model inside the model directory.
pub const REC_MODEL: &str = "PP-OCRv6_rec_small.onnx";

/// Recognition input height the model was trained for.
const REC_HEIGHT: usize = 48;
/// Narrowest recognition input (rapidocr pads every batch to at least 320 pixels).
const REC_MIN_WIDTH: usize = 320;
const REC_BATCH: usize = 6;

#[derive(Debug)]
pub enum OcrError {
    /// ONNX Runtime or a model could not be loaded.
    Setup(String),
    /// Inference failed.
    Inference(String),
    /// The caller passed something unusable (bad region, unsupported format).
    Input(String),
}

impl std::fmt::Display for OcrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OcrError::Setup(m) => write!(f, "OCR setup failed: {m}"),
            OcrError::Inference(m) => write!(f, "OCR inference failed: {m}"),
            OcrError::Input(m) => write!(f, "bad OCR input: {m}"),
        }
    }
}

impl std::error::Error for OcrError {}

impl From<SessionError> for OcrError {
    fn from(e: SessionError) -> Self {
        OcrError::Setup(e.to_string())
    }
}

fn inference<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> OcrError {
    move |e| OcrError::Inference(format!("{what}: {e}"))
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct OcrConfig {
    /// Folder holding the two models; `None` resolves through [`resolve_model_dir`].
    pub model_dir: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per model.
    pub intra_threads: usize,
    /// The detector input's short side is scaled up to at least this (rapidocr: 736).
    pub det_limit_side_len: u32,
    /// ...and its long side scaled down to at most this, to bound the cost on big frames.
    pub det_max_side_len: u32,
    /// Widest recognition input; longer lines are squeezed.
    pub rec_max_width: u32,
    pub boxes: BoxParams,
}

impl Default for OcrConfig {
    fn default() -> Self {
        OcrConfig {
            model_dir: None,
            intra_threads: 1,
            det_limit_side_len: 736,
            det_max_side_len: 1600,
            rec_max_width: 1600,
            boxes: BoxParams::default(),
        }
    }
}

/// One line of text found in an image.
#[derive(Debug, Clone, PartialEq)]
pub struct TextLine {
    pub text: String,
    /// Mean probability of the decoded characters, 0..=1.
    pub confidence: f32,
    /// Axis-aligned bounds in the coordinates of the image passed in.
    pub bbox: Rect,
    /// The (possibly rotated) box that was read.
    pub quad: Quad,
}

fn load_session(path: &Path, threads: usize) -> Result<Session, OcrError> {
    if !path.is_file() {
        return Err(OcrError::Setup(format!(
            "model {} does not exist (run scripts/setup.sh, or point model-dir / OA_MODEL_DIR at the models)",
            path.display()
        )));
    }
    Ok(SessionOptions::default()
        .with_intra_threads(threads)
        .load(path)?)
}

/// PP-OCR detector plus recogniser. Not `Sync`: one engine serves one thread at a time.
pub struct OcrEngine {
    det: Session,
    rec: Session,
    dict: Dictionary,
    config: OcrConfig,
    model_dir: PathBuf,
}

impl std::fmt::Debug for OcrEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcrEngine")
            .field("model_dir", &self.model_dir)
            .field("config", &self.config)
            .finish()
    }
}

impl OcrEngine {
    pub fn new(config: &OcrConfig) -> Result<OcrEngine, OcrError> {
        let model_dir = resolve_model_dir(config.model_dir.as_deref());
        if !model_dir.is_dir() {
            return Err(OcrError::Setup(format!(
                "model directory {} does not exist (run scripts/setup.sh)",
                model_dir.display()
            )));
        }
        let det = load_session(&model_dir.join(DET_MODEL), config.intra_threads)?;
        let rec_path = model_dir.join(REC_MODEL);
        let rec = load_session(&rec_path, config.intra_threads)?;
        let character = rec
            .metadata()
            .ok()
            .and_then(|m| m.custom("character"))
            .ok_or_else(|| {
                OcrError::Setup(format!(
                    "model {} has no `character` metadata (is it a PP-OCR recogniser?)",
                    rec_path.display()
                ))
            })?;
        let dict = Dictionary::from_metadata(&character);
        Ok(OcrEngine {
            det,
            rec,
            dict,
            config: config.clone(),
            model_dir,
        })
    }

    pub fn model_dir(&self) -> &Path {
        &self.model_dir
    }

    /// Finds the text lines of `img` and reads them, in reading order.
    pub fn detect_and_recognize(&mut self, img: &BgrImage) -> Result<Vec<TextLine>, OcrError> {
        let quads = self.detect(img)?;
        self.recognize_quads(img, &quads)
    }

    /// Text boxes of `img` in image coordinates, in reading order.
    pub fn detect(&mut self, img: &BgrImage) -> Result<Vec<Quad>, OcrError> {
        if img.width < 4 || img.height < 4 {
            return Ok(Vec::new());
        }
        let (w, h) = det_input_size(
            img.width,
            img.height,
            self.config.det_limit_side_len,
            self.config.det_max_side_len,
        );
        let mut input = vec![0.0f32; 3 * w * h];
        let full = Quad::axis_aligned(0.0, 0.0, img.width as f32, img.height as f32);
        geometry::sample_normalized(img, &full, w, h, &mut input, w, w * h);
        let tensor = TensorRef::from_array_view(([1usize, 3, h, w], &*input))
            .map_err(inference("det input"))?;
        let outputs = self
            .det
            .run(ort::inputs![tensor])
            .map_err(inference("det run"))?;
        let first = outputs
            .values()
            .next()
            .ok_or_else(|| OcrError::Inference("det model has no output".into()))?;
        let (_, out) = first
            .try_extract_tensor::<f32>()
            .map_err(inference("det output"))?;
        let (shape_ok, map) = (out.len() >= w * h, &out[..(w * h).min(out.len())]);
        if !shape_ok {
            return Err(OcrError::Inference(format!(
                "det output has {} values, expected {w}x{h}",
                out.len()
            )));
        }
        let sx = img.width as f32 / w as f32;
        let sy = img.height as f32 / h as f32;
        let mut boxes: Vec<(Quad, f32)> = geometry::boxes_from_prob(map, w, h, &self.config.boxes)
            .into_iter()
            .map(|(q, s)| (q.scaled(sx, sy), s))
            .filter(|(q, _)| q.width() > 3.0 && q.height() > 3.0)
            .collect();
        geometry::sort_reading_order(&mut boxes);
        Ok(boxes.into_iter().map(|(q, _)| q).collect())
    }

    /// Reads `img` without detection, for a region of interest that frames the slip.
    ///
    /// The region is split into bands of rows that hold ink (pixels far from the dominant
    /// background level), so a loose ROI around a multi-line slip still gives one text
    /// line per band; when no band is found the region is blank and no model runs.
    pub fn recognize_region(&mut self, img: &BgrImage) -> Result<Vec<TextLine>, OcrError> {
        let quads = text_bands(img);
        self.recognize_quads(img, &quads)
    }

    /// Reads the given boxes of `img`, batched; empty lines are dropped.
    pub fn recognize_quads(
        &mut self,
        img: &BgrImage,
        quads: &[Quad],
    ) -> Result<Vec<TextLine>, OcrError> {
        let ratios: Vec<f32> = quads
            .iter()
            .map(|q| q.width() / q.height().max(1.0))
            .collect();
        let mut order: Vec<usize> = (0..quads.len()).collect();
        order.sort_by(|&a, &b| ratios[a].total_cmp(&ratios[b]));
        let mut results: Vec<Option<(String, f32)>> = vec![None; quads.len()];
        let max_w = (self.config.rec_max_width as usize).max(REC_MIN_WIDTH);
        for batch in order.chunks(REC_BATCH) {
            let max_ratio = batch
                .iter()
                .map(|&i| ratios[i])
                .fold(REC_MIN_WIDTH as f32 / REC_HEIGHT as f32, f32::max);
            let width =
                ((REC_HEIGHT as f32 * max_ratio).ceil() as usize).clamp(REC_MIN_WIDTH, max_w);
            let plane = REC_HEIGHT * width;
            let mut input = vec![0.0f32; batch.len() * 3 * plane];
            for (k, &i) in batch.iter().enumerate() {
                let w = ((REC_HEIGHT as f32 * ratios[i]).ceil() as usize).clamp(1, width);
                geometry::sample_normalized(
                    img,
                    &quads[i],
                    w,
                    REC_HEIGHT,
                    &mut input[k * 3 * plane..],
                    width,
                    plane,
                );
            }
            let tensor = TensorRef::from_array_view(([batch.len(), 3, REC_HEIGHT, width], &*input))
                .map_err(inference("rec input"))?;
            let outputs = self
                .rec
                .run(ort::inputs![tensor])
                .map_err(inference("rec run"))?;
            let first = outputs
                .values()
                .next()
                .ok_or_else(|| OcrError::Inference("rec model has no output".into()))?;
            let (shape, out) = first
                .try_extract_tensor::<f32>()
                .map_err(inference("rec output"))?;
            if shape.len() != 3 || shape[0] as usize != batch.len() {
                return Err(OcrError::Inference(format!(
                    "rec output shape {:?} is not [batch, steps, classes]",
                    &shape[..]
                )));
            }
            let (steps, classes) = (shape[1] as usize, shape[2] as usize);
            if classes != self.dict.len() {
                return Err(OcrError::Inference(format!(
                    "rec model predicts {classes} classes but its dictionary has {}",
                    self.dict.len()
                )));
            }
            for (k, &i) in batch.iter().enumerate() {
                let seq = &out[k * steps * classes..(k + 1) * steps * classes];
                results[i] = Some(self.dict.decode(seq, steps, classes));
            }
        }
        Ok(quads
            .iter()
            .zip(results)
            .filter_map(|(q, r)| {
                let (text, confidence) = r?;
                let text = text.trim().to_owned();
                if text.is_empty() {
                    return None;
                }
                let (x, y, width, height) = q.bounds(img.width, img.height);
                Some(TextLine {
                    text,
                    confidence,
                    bbox: Rect::new(x, y, width, height),
                    quad: *q,
                })
            })
            .collect())
    }
}

/// Detector input size: short side up to `limit` (as rapidocr's `limit_type: min`), long
/// side down to `max`, both rounded to multiples of 32 as the network needs.
pub fn det_input_size(w: u32, h: u32, limit: u32, max: u32) -> (usize, usize) {
    let (w, h) = (f64::from(w), f64::from(h));
    let mut ratio = if w.min(h) < f64::from(limit) {
        f64::from(limit) / w.min(h)
    } else {
        1.0
    };
    if w.max(h) * ratio > f64::from(max) {
        ratio = f64::from(max) / w.max(h);
    }
    let round32 = |v: f64| (((v / 32.0).round() as usize) * 32).max(32);
    (round32(w * ratio), round32(h * ratio))
}

/// A pixel is ink when its luma is this far from the region's median.
const INK_CONTRAST: u8 = 60;
/// More bands than this means a busy background rather than a slip: read it whole.
const MAX_BANDS: usize = 6;

/// Bands of rows holding ink, each as one box padded like the detector's unclip would.
fn text_bands(img: &BgrImage) -> Vec<Quad> {
    let (w, h) = (img.width as usize, img.height as usize);
    let whole = vec![Quad::axis_aligned(0.0, 0.0, w as f32, h as f32)];
    if w < 4 || h < 4 {
        return Vec::new();
    }
    let luma: Vec<u8> = img
        .data
        .chunks_exact(3)
        .map(|p| ((u32::from(p[2]) * 77 + u32::from(p[1]) * 150 + u32::from(p[0]) * 29) >> 8) as u8)
        .collect();
    let mut hist = [0usize; 256];
    for &l in &luma {
        hist[l as usize] += 1;
    }
    let mut acc = 0;
    let median = hist
        .iter()
        .position(|&n| {
            acc += n;
            acc * 2 >= luma.len()
        })
        .unwrap_or(128) as u8;
    let ink = |l: u8| l.abs_diff(median) > INK_CONTRAST;
    let row_ink: Vec<bool> = luma
        .chunks_exact(w)
        .map(|row| row.iter().filter(|&&l| ink(l)).count() >= 2)
        .collect();
    let mut bands: Vec<(usize, usize)> = Vec::new();
    for (y, &has) in row_ink.iter().enumerate() {
        if !has {
            continue;
        }
        match bands.last_mut() {
            // Small gaps are within a line (the dot of an "i", thin strokes).
            Some(b) if y <= b.1 + 3 => b.1 = y,
            _ => bands.push((y, y)),
        }
    }
    bands.retain(|&(a, b)| b - a + 1 >= 6);
    if bands.is_empty() {
        return Vec::new();
    }
    if bands.len() > MAX_BANDS {
        return whole;
    }
    bands
        .into_iter()
        .filter_map(|(y0, y1)| {
            let (mut x0, mut x1) = (usize::MAX, 0usize);
            for y in y0..=y1 {
                let row = &luma[y * w..(y + 1) * w];
                if let Some(a) = row.iter().position(|&l| ink(l)) {
                    x0 = x0.min(a);
                }
                if let Some(b) = row.iter().rposition(|&l| ink(l)) {
                    x1 = x1.max(b);
                }
            }
            if x0 > x1 {
                return None;
            }
            let bh = (y1 - y0 + 1) as f32;
            let pad_y = (bh * 0.25).max(2.0);
            let pad_x = (bh * 0.4).max(3.0);
            let fx0 = (x0 as f32 - pad_x).max(0.0);
            let fy0 = (y0 as f32 - pad_y).max(0.0);
            let fx1 = ((x1 + 1) as f32 + pad_x).min(w as f32);
            let fy1 = ((y1 + 1) as f32 + pad_y).min(h as f32);
            Some(Quad::axis_aligned(fx0, fy0, fx1 - fx0, fy1 - fy0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn det_size_follows_limits() {
        // rapidocr: 1280x720 -> short side 736 -> 1308.4 x 736 -> multiples of 32.
        assert_eq!(det_input_size(1280, 720, 736, 4000), (1312, 736));
        // The long-side cap wins.
        assert_eq!(det_input_size(1280, 720, 736, 960), (960, 544));
        assert_eq!(det_input_size(10, 10, 736, 960), (736, 736));
    }

    #[test]
    fn bands_split_lines_and_skip_blank() {
        let mut img = BgrImage::filled(200, 100, [255, 255, 255]);
        assert!(text_bands(&img).is_empty());
        for (y0, y1, x0, x1) in [(10usize, 30usize, 20usize, 120usize), (60, 80, 50, 180)] {
            for y in y0..y1 {
                for x in x0..x1 {
                    let i = (y * 200 + x) * 3;
                    img.data[i..i + 3].fill(0);
                }
            }
        }
        let bands = text_bands(&img);
        assert_eq!(bands.len(), 2);
        assert!(bands[0].origin[1] < 10.0 && bands[0].origin[1] > 0.0);
        assert!(bands[0].origin[0] < 20.0 && bands[0].width() > 100.0);
        assert!(bands[1].origin[1] > 50.0);
    }

    #[test]
    fn missing_model_dir_is_named() {
        let cfg = OcrConfig {
            model_dir: Some(PathBuf::from("/nonexistent/models")),
            ..Default::default()
        };
        let err = OcrEngine::new(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/models") && err.contains("scripts/setup.sh"),
            "{err}"
        );
    }
}
