//! Optional object detector for frame selection: a YOLO-format ONNX model (user-supplied
//! path and class names), run through ONNX Runtime.
//!
//! The model contract is that of an Ultralytics YOLOv8/YOLO11 detection export: one input
//! `[1, 3, S, S]` (RGB, 0..1, letterboxed to `S`×`S` with grey 114 padding) and one output
//! `[1, 4 + nc, N]`: for each of the `N` candidates the box centre, width and height in
//! input pixels, then one score per class (already sigmoid-ed; no objectness row). `nc`
//! must equal the number of configured class names, in the model's class order.
//!
//! Post-processing: each candidate takes its best class; candidates under `min_confidence`
//! are dropped; non-maximum suppression per class with IoU 0.5; boxes are mapped back to
//! source-image pixels and clipped to the image.
//!
//! The session is built by [`oa_ocr::SessionOptions`], as the OCR engine's are, in the
//! process-wide ONNX Runtime environment (`ORT_DYLIB_PATH` or the build-time default).
//! A session runs one image at a time (`Session::run` needs `&mut`), so
//! [`Detector::detect`] holds a mutex for the duration of one inference; one `Detector`
//! can be shared between tasks behind an `Arc`.

use crate::jpeg::Decoded;
use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Letterbox padding level (Ultralytics' default).
const PAD: f32 = 114.0 / 255.0;
/// IoU above which the weaker of two same-class boxes is suppressed.
pub const NMS_IOU: f32 = 0.5;

/// Detector settings (the `[selection]` table of the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// The ONNX model.
    pub model: PathBuf,
    /// Class names, in the model's class order (`classes.len()` must be the model's `nc`).
    pub classes: Vec<String>,
    /// Classes (a subset of `classes`) whose boxes, when they cover more than
    /// `dominate_fraction` of a frame, get the frame dropped (hands, person).
    pub drop_classes: Vec<String>,
    /// Detections scoring less are ignored.
    pub min_confidence: f32,
    /// Share of the image area (0..=1) that drop-class boxes may cover before the frame is
    /// considered dominated by them.
    pub dominate_fraction: f32,
    /// Side of the square model input.
    pub input_size: u32,
}

/// Detections scoring less are ignored, unless `selection.min_confidence` says otherwise.
pub const DEFAULT_MIN_CONFIDENCE: f32 = 0.25;
/// Share of a frame the drop classes may cover before the frame is not selected.
pub const DEFAULT_DOMINATE_FRACTION: f32 = 0.4;
/// The square input of a YOLO export at its usual size.
pub const DEFAULT_INPUT_SIZE: u32 = 640;

impl DetectorConfig {
    /// A configuration with the default thresholds.
    pub fn new(model: impl Into<PathBuf>, classes: Vec<String>, drop_classes: Vec<String>) -> Self {
        DetectorConfig {
            model: model.into(),
            classes,
            drop_classes,
            min_confidence: DEFAULT_MIN_CONFIDENCE,
            dominate_fraction: DEFAULT_DOMINATE_FRACTION,
            input_size: DEFAULT_INPUT_SIZE,
        }
    }
}

/// One detected object, in source-image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Index into [`DetectorConfig::classes`].
    pub class: usize,
    pub confidence: f32,
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Detection {
    fn iou(&self, o: &Detection) -> f32 {
        let ix = ((self.x + self.w).min(o.x + o.w) - self.x.max(o.x)).max(0.0);
        let iy = ((self.y + self.h).min(o.y + o.h) - self.y.max(o.y)).max(0.0);
        let inter = ix * iy;
        let union = self.w * self.h + o.w * o.h - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

/// A YOLO-format detector; see the module documentation.
pub struct Detector {
    session: Mutex<Session>,
    config: DetectorConfig,
    /// `drop[c]`: class `c` is a drop class.
    drop: Vec<bool>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("config", &self.config)
            .finish()
    }
}

impl Detector {
    /// Loads the model and checks that its input and output fit the configuration.
    pub fn new(config: &DetectorConfig) -> Result<Detector, String> {
        let path = &config.model;
        if !path.is_file() {
            return Err(format!("detector model {} does not exist", path.display()));
        }
        if config.classes.is_empty() {
            return Err("detector: no class names given".into());
        }
        if config.input_size < 32 {
            return Err(format!(
                "detector: input size {} is too small",
                config.input_size
            ));
        }
        let drop = config
            .classes
            .iter()
            .map(|c| config.drop_classes.contains(c))
            .collect();
        if let Some(unknown) = config
            .drop_classes
            .iter()
            .find(|d| !config.classes.contains(d))
        {
            return Err(format!(
                "detector: drop class {unknown:?} is not one of the classes {:?}",
                config.classes
            ));
        }
        let session = load_session(path)?;
        check_io(&session, config)
            .map_err(|e| format!("detector model {}: {e}", path.display()))?;
        Ok(Detector {
            session: Mutex::new(session),
            config: config.clone(),
            drop,
        })
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Whether class `c` is one of the drop classes.
    pub fn is_drop_class(&self, c: usize) -> bool {
        self.drop.get(c).copied().unwrap_or(false)
    }

    /// Objects in a packed B, G, R image (see [`crate::jpeg::decode_bgr`]).
    pub fn detect(&self, img: &Decoded) -> Result<Vec<Detection>, String> {
        if img.width == 0 || img.height == 0 || img.data.len() < img.width * img.height * 3 {
            return Err(format!(
                "bad BGR image ({}x{}, {} bytes)",
                img.width,
                img.height,
                img.data.len()
            ));
        }
        let s = self.config.input_size as usize;
        let lb = Letterbox::new(img.width, img.height, s);
        let input = lb.tensor(img);
        let nc = self.config.classes.len();
        let raw: Vec<f32>;
        let n;
        {
            let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
            let tensor = TensorRef::from_array_view(([1usize, 3, s, s], &*input))
                .map_err(|e| format!("detector input: {e}"))?;
            let outputs = session
                .run(ort::inputs![tensor])
                .map_err(|e| format!("detector run: {e}"))?;
            let first = outputs
                .values()
                .next()
                .ok_or("detector model has no output")?;
            let (shape, out) = first
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("detector output: {e}"))?;
            if shape.len() != 3 || shape[0] != 1 || shape[1] != (4 + nc) as i64 {
                return Err(format!(
                    "detector output has shape {:?}, expected [1, {}, N] for {nc} classes",
                    &shape[..],
                    4 + nc
                ));
            }
            n = shape[2].max(0) as usize;
            raw = out.to_vec();
        }
        if raw.len() < (4 + nc) * n {
            return Err(format!(
                "detector output has {} values, expected {}",
                raw.len(),
                (4 + nc) * n
            ));
        }
        Ok(parse_output(&raw, nc, n, self.config.min_confidence, &lb))
    }

    /// Share of the image area (0..=1) covered by the union of the drop-class boxes.
    pub fn drop_coverage(&self, dets: &[Detection], width: usize, height: usize) -> f64 {
        let boxes: Vec<&Detection> = dets
            .iter()
            .filter(|d| self.is_drop_class(d.class))
            .collect();
        union_fraction(&boxes, width, height)
    }

    /// Whether the drop-class boxes cover more than `dominate_fraction` of the image.
    pub fn dominated(&self, dets: &[Detection], width: usize, height: usize) -> bool {
        self.drop_coverage(dets, width, height) > f64::from(self.config.dominate_fraction)
    }

    /// Detections that are not of a drop class (the objects that count for selection).
    pub fn object_count(&self, dets: &[Detection]) -> usize {
        dets.iter().filter(|d| !self.is_drop_class(d.class)).count()
    }
}

fn load_session(path: &Path) -> Result<Session, String> {
    oa_ocr::SessionOptions::default()
        .load(path)
        .map_err(|e| match e {
            oa_ocr::SessionError::Model { path, cause } => {
                format!("cannot load detector model {}: {cause}", path.display())
            }
            runtime => runtime.to_string(),
        })
}

/// The model must have one float input `[1|-1, 3, S|-1, S|-1]` and a first output
/// `[1|-1, 4 + nc, N]` (dynamic dimensions are accepted and checked at run time).
fn check_io(session: &Session, config: &DetectorConfig) -> Result<(), String> {
    let nc = config.classes.len();
    let inputs = session.inputs();
    if inputs.len() != 1 {
        return Err(format!(
            "has {} inputs, a YOLO detector has one (images)",
            inputs.len()
        ));
    }
    let fixed = |d: i64, want: i64| d <= 0 || d == want;
    if let Some(shape) = inputs[0].dtype().tensor_shape() {
        let s = i64::from(config.input_size);
        if shape.len() != 4 || !fixed(shape[0], 1) || !fixed(shape[1], 3) {
            return Err(format!(
                "input {:?} has shape {:?}, expected [1, 3, {s}, {s}]",
                inputs[0].name(),
                &shape[..]
            ));
        }
        if !fixed(shape[2], s) || !fixed(shape[3], s) {
            return Err(format!(
                "input {:?} has shape {:?}, but the configured input size is {s}",
                inputs[0].name(),
                &shape[..]
            ));
        }
    }
    let output = session.outputs().first().ok_or("has no output")?;
    match output.dtype().tensor_shape() {
        Some(shape) => {
            if shape.len() != 3 || !fixed(shape[0], 1) || !fixed(shape[1], (4 + nc) as i64) {
                return Err(format!(
                    "output {:?} has shape {:?}, expected [1, {}, N] (4 box values + one score per class) for the {nc} configured classes {:?}",
                    output.name(),
                    &shape[..],
                    4 + nc,
                    config.classes
                ));
            }
            Ok(())
        }
        None => Err(format!("output {:?} is not a tensor", output.name())),
    }
}

/// Scale-and-pad from a source image to the square model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub src_w: usize,
    pub src_h: usize,
    pub side: usize,
    /// Source pixels to input pixels.
    pub scale: f32,
    /// Left and top padding in input pixels.
    pub pad_x: f32,
    pub pad_y: f32,
}

impl Letterbox {
    pub fn new(src_w: usize, src_h: usize, side: usize) -> Letterbox {
        let scale = (side as f32 / src_w as f32).min(side as f32 / src_h as f32);
        let (nw, nh) = (
            ((src_w as f32 * scale).round() as usize).clamp(1, side),
            ((src_h as f32 * scale).round() as usize).clamp(1, side),
        );
        Letterbox {
            src_w,
            src_h,
            side,
            scale,
            pad_x: ((side - nw) / 2) as f32,
            pad_y: ((side - nh) / 2) as f32,
        }
    }

    /// NCHW RGB tensor data in 0..1 (bilinear resize, grey 114 padding).
    fn tensor(&self, img: &Decoded) -> Vec<f32> {
        let s = self.side;
        let mut out = vec![PAD; 3 * s * s];
        let (w, h) = (img.width, img.height);
        let nw = ((w as f32 * self.scale).round() as usize).clamp(1, s);
        let nh = ((h as f32 * self.scale).round() as usize).clamp(1, s);
        let (px, py) = (self.pad_x as usize, self.pad_y as usize);
        let px_at = |x: usize, y: usize, c: usize| f32::from(img.data[(y * w + x) * 3 + c]);
        for oy in 0..nh {
            let sy = ((oy as f32 + 0.5) / self.scale - 0.5).clamp(0.0, (h - 1) as f32);
            let (y0, fy) = (sy.floor() as usize, sy.fract());
            let y1 = (y0 + 1).min(h - 1);
            for ox in 0..nw {
                let sx = ((ox as f32 + 0.5) / self.scale - 0.5).clamp(0.0, (w - 1) as f32);
                let (x0, fx) = (sx.floor() as usize, sx.fract());
                let x1 = (x0 + 1).min(w - 1);
                let base = (py + oy) * s + px + ox;
                // Source is B, G, R; the model wants R, G, B planes.
                for (plane, c) in [2usize, 1, 0].into_iter().enumerate() {
                    let top = px_at(x0, y0, c) * (1.0 - fx) + px_at(x1, y0, c) * fx;
                    let bottom = px_at(x0, y1, c) * (1.0 - fx) + px_at(x1, y1, c) * fx;
                    out[plane * s * s + base] = (top * (1.0 - fy) + bottom * fy) / 255.0;
                }
            }
        }
        out
    }

    /// A box in model-input pixels (centre, size) as source pixels (left, top, size),
    /// clipped to the image.
    pub fn to_source(&self, cx: f32, cy: f32, bw: f32, bh: f32) -> (f32, f32, f32, f32) {
        let (sw, sh) = (self.src_w as f32, self.src_h as f32);
        let x0 = ((cx - bw / 2.0 - self.pad_x) / self.scale).clamp(0.0, sw);
        let y0 = ((cy - bh / 2.0 - self.pad_y) / self.scale).clamp(0.0, sh);
        let x1 = ((cx + bw / 2.0 - self.pad_x) / self.scale).clamp(0.0, sw);
        let y1 = ((cy + bh / 2.0 - self.pad_y) / self.scale).clamp(0.0, sh);
        (x0, y0, x1 - x0, y1 - y0)
    }
}

/// Decodes a `[1, 4 + nc, n]` output (row-major) into detections after the confidence
/// threshold and per-class NMS, strongest first.
pub fn parse_output(
    raw: &[f32],
    nc: usize,
    n: usize,
    min_confidence: f32,
    lb: &Letterbox,
) -> Vec<Detection> {
    let at = |row: usize, i: usize| raw[row * n + i];
    let mut cands: Vec<Detection> = (0..n)
        .filter_map(|i| {
            let (class, confidence) = (0..nc)
                .map(|c| (c, at(4 + c, i)))
                .fold((0, f32::NEG_INFINITY), |b, x| if x.1 > b.1 { x } else { b });
            if confidence.is_nan() || confidence < min_confidence {
                return None;
            }
            let (x, y, w, h) = lb.to_source(at(0, i), at(1, i), at(2, i), at(3, i));
            (w > 0.0 && h > 0.0).then_some(Detection {
                class,
                confidence,
                x,
                y,
                w,
                h,
            })
        })
        .collect();
    cands.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut kept: Vec<Detection> = Vec::new();
    for d in cands {
        if kept
            .iter()
            .all(|k| k.class != d.class || k.iou(&d) <= NMS_IOU)
        {
            kept.push(d);
        }
    }
    kept
}

/// Share of a `width`×`height` image covered by the union of `boxes` (exact, by
/// coordinate compression).
fn union_fraction(boxes: &[&Detection], width: usize, height: usize) -> f64 {
    if boxes.is_empty() || width == 0 || height == 0 {
        return 0.0;
    }
    let mut xs: Vec<f64> = boxes
        .iter()
        .flat_map(|b| [f64::from(b.x), f64::from(b.x + b.w)])
        .collect();
    let mut ys: Vec<f64> = boxes
        .iter()
        .flat_map(|b| [f64::from(b.y), f64::from(b.y + b.h)])
        .collect();
    xs.sort_by(f64::total_cmp);
    ys.sort_by(f64::total_cmp);
    xs.dedup();
    ys.dedup();
    let mut area = 0.0;
    for xw in xs.windows(2) {
        for yw in ys.windows(2) {
            let (mx, my) = ((xw[0] + xw[1]) / 2.0, (yw[0] + yw[1]) / 2.0);
            let inside = boxes.iter().any(|b| {
                mx >= f64::from(b.x)
                    && mx <= f64::from(b.x + b.w)
                    && my >= f64::from(b.y)
                    && my <= f64::from(b.y + b.h)
            });
            if inside {
                area += (xw[1] - xw[0]) * (yw[1] - yw[0]);
            }
        }
    }
    (area / (width as f64 * height as f64)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_maps_back_to_source() {
        // 1280x720 into 640: scale 0.5, 140 px of padding above and below.
        let lb = Letterbox::new(1280, 720, 640);
        assert_eq!(lb.scale, 0.5);
        assert_eq!((lb.pad_x, lb.pad_y), (0.0, 140.0));
        let (x, y, w, h) = lb.to_source(320.0, 320.0, 100.0, 50.0);
        assert_eq!((x, y, w, h), (540.0, 310.0, 200.0, 100.0));
        // Boxes reaching into the padding are clipped to the image.
        let (_, y, _, h) = lb.to_source(320.0, 140.0, 10.0, 100.0);
        assert_eq!((y, h), (0.0, 100.0));
    }

    #[test]
    fn nms_is_per_class_and_threshold_applies() {
        let lb = Letterbox::new(640, 640, 640);
        // 4 candidates, 2 classes: rows cx, cy, w, h, s0, s1.
        let raw = [
            100.0, 104.0, 100.0, 300.0, // cx
            100.0, 100.0, 100.0, 300.0, // cy
            50.0, 50.0, 50.0, 20.0, // w
            50.0, 50.0, 50.0, 20.0, // h
            0.9, 0.8, 0.0, 0.1, // class 0
            0.0, 0.0, 0.7, 0.2, // class 1
        ];
        let d = parse_output(&raw, 2, 4, 0.25, &lb);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!((d[0].class, d[0].confidence), (0, 0.9));
        assert_eq!((d[1].class, d[1].confidence), (1, 0.7));
        assert_eq!((d[0].x, d[0].y, d[0].w, d[0].h), (75.0, 75.0, 50.0, 50.0));
    }

    #[test]
    fn union_coverage_counts_overlap_once() {
        let b = |x, y, w, h| Detection {
            class: 0,
            confidence: 1.0,
            x,
            y,
            w,
            h,
        };
        let (a, c) = (b(0.0, 0.0, 50.0, 100.0), b(25.0, 0.0, 50.0, 100.0));
        let f = union_fraction(&[&a, &c], 100, 100);
        assert!((f - 0.75).abs() < 1e-9, "{f}");
        assert_eq!(union_fraction(&[], 100, 100), 0.0);
    }
}
