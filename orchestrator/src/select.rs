//! Picks the `k` most useful frames of an order.
//!
//! Every frame is decoded to luma and downscaled (long side at most [`ANALYSIS_SIDE`]).
//! Scores, each in 0..=1:
//! - **sharpness**: variance of the 4-neighbour Laplacian, divided by the largest variance
//!   among the order's frames (motion blur and defocus lower it);
//! - **exposure**: how close the mean brightness is to mid-grey, less the share of clipped
//!   (near-black or near-white) pixels;
//! - **novelty**: mean absolute difference of a 16x16 thumbnail to the closest frame chosen
//!   so far (scaled so that a difference of 64 grey levels counts as fully new); 1.0 for
//!   the first pick.
//!
//! Selection is greedy: `total = 0.5·sharpness + 0.2·exposure + 0.3·novelty`, the best
//! frame is taken, novelty is recomputed against the chosen set, and so on. Corrupt JPEGs
//! are skipped (and logged); the result is in capture order.
//!
//! With an object [`Detector`] ([`select_frames_with`]), every frame is also run through
//! the model:
//! - a frame whose drop-class boxes (hands, person) cover more than the configured
//!   `dominate_fraction` of the image is **dropped**; when that would drop every frame,
//!   none is dropped (the order still gets its best frames, scored as below);
//! - **objects**: the number of detections of the other classes, divided by the largest
//!   such count among the frames still in the running (0 when none has any), adds
//!   `0.3·objects` to the total.
//!
//! A frame the detector fails on (logged) is neither dropped nor credited with objects.
//! Without a detector the scores are exactly those above.
//!
//! The frames need not be in memory together: a [`Scorer`] is given them one at a time and
//! keeps [`SCORER_BYTES_PER_FRAME`] bytes of each (scores and thumbnail); the functions
//! over a slice are a scorer fed from it (the consumer streams an order's frames through
//! one, see `consume::frames`).

use crate::detector::Detector;
pub use crate::jpeg::{Decoded, decode_bgr, decode_luma};
use std::fmt;

/// Long side of the downscaled luma image that is analysed.
pub const ANALYSIS_SIDE: usize = 320;
const THUMB: usize = 16;
const W_SHARPNESS: f64 = 0.5;
const W_EXPOSURE: f64 = 0.2;
const W_NOVELTY: f64 = 0.3;
/// Weight of the normalised object count (only with a detector).
pub const W_OBJECTS: f64 = 0.3;

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FrameScore {
    pub sharpness: f64,
    pub exposure: f64,
    pub novelty: f64,
    /// Normalised count of non-drop-class objects (0 without a detector).
    pub objects: f64,
    pub total: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectError {
    /// No frame was given.
    NoFrames,
    /// Every frame failed to decode; `first` says why the first one did.
    AllCorrupt { count: usize, first: String },
    /// Selection itself failed (e.g. its worker thread panicked).
    Failed(String),
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectError::NoFrames => f.write_str("no frames to select from"),
            SelectError::AllCorrupt { count, first } => {
                write!(f, "all {count} frames are corrupt JPEGs (first: {first})")
            }
            SelectError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SelectError {}

/// Box-filter downscale of a luma image so that its long side is at most `side`.
fn downscale(img: &Decoded, side: usize) -> Decoded {
    let scale = img.width.max(img.height).div_ceil(side).max(1);
    let (w, h) = ((img.width / scale).max(1), (img.height / scale).max(1));
    let mut data = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut sum = 0u32;
            let mut n = 0u32;
            for yy in y * scale..((y + 1) * scale).min(img.height) {
                let row = &img.data[yy * img.width..(yy + 1) * img.width];
                let x1 = ((x + 1) * scale).min(img.width);
                for &v in &row[x * scale..x1] {
                    sum += u32::from(v);
                    n += 1;
                }
            }
            data[y * w + x] = (sum / n.max(1)) as u8;
        }
    }
    Decoded {
        width: w,
        height: h,
        data,
    }
}

/// Fixed-size thumbnail by area averaging (for novelty).
fn thumbnail(img: &Decoded) -> [f32; THUMB * THUMB] {
    let mut out = [0f32; THUMB * THUMB];
    for ty in 0..THUMB {
        let (y0, y1) = (
            ty * img.height / THUMB,
            ((ty + 1) * img.height / THUMB).max(ty * img.height / THUMB + 1),
        );
        for tx in 0..THUMB {
            let (x0, x1) = (
                tx * img.width / THUMB,
                ((tx + 1) * img.width / THUMB).max(tx * img.width / THUMB + 1),
            );
            let mut sum = 0f32;
            let mut n = 0f32;
            for y in y0..y1.min(img.height) {
                for x in x0..x1.min(img.width) {
                    sum += f32::from(img.data[y * img.width + x]);
                    n += 1.0;
                }
            }
            out[ty * THUMB + tx] = if n > 0.0 { sum / n } else { 0.0 };
        }
    }
    out
}

fn laplacian_variance(img: &Decoded) -> f64 {
    let (w, h) = (img.width, img.height);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let p = |x: usize, y: usize| f64::from(img.data[y * w + x]);
    let (mut sum, mut sq, mut n) = (0f64, 0f64, 0f64);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let l = p(x - 1, y) + p(x + 1, y) + p(x, y - 1) + p(x, y + 1) - 4.0 * p(x, y);
            sum += l;
            sq += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sq / n - mean * mean).max(0.0)
}

fn exposure(img: &Decoded) -> f64 {
    let n = img.data.len().max(1) as f64;
    let mean = img.data.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let clipped = img
        .data
        .iter()
        .filter(|&&v| !(8..=247).contains(&v))
        .count() as f64
        / n;
    ((1.0 - (mean - 128.0).abs() / 128.0) - clipped).clamp(0.0, 1.0)
}

fn novelty(thumb: &[f32; THUMB * THUMB], chosen: &[&[f32; THUMB * THUMB]]) -> f64 {
    chosen
        .iter()
        .map(|c| {
            let mad = thumb
                .iter()
                .zip(c.iter())
                .map(|(a, b)| f64::from((a - b).abs()))
                .sum::<f64>()
                / (THUMB * THUMB) as f64;
            (mad / 64.0).min(1.0)
        })
        .fold(1.0, f64::min)
}

/// Indices (ascending) of the best `k` frames; see the module documentation.
pub fn select_frames(frames: &[Vec<u8>], k: usize) -> Result<Vec<usize>, SelectError> {
    Ok(select_frames_scored(frames, k)?
        .into_iter()
        .map(|(i, _)| i)
        .collect())
}

/// Like [`select_frames`], with the score each chosen frame had when it was picked.
pub fn select_frames_scored(
    frames: &[Vec<u8>],
    k: usize,
) -> Result<Vec<(usize, FrameScore)>, SelectError> {
    select_frames_scored_with(frames, k, None)
}

/// Like [`select_frames`], with an optional object detector (see the module
/// documentation); `None` gives exactly [`select_frames`].
pub fn select_frames_with(
    frames: &[Vec<u8>],
    k: usize,
    detector: Option<&Detector>,
) -> Result<Vec<usize>, SelectError> {
    Ok(select_frames_scored_with(frames, k, detector)?
        .into_iter()
        .map(|(i, _)| i)
        .collect())
}

/// What the detector said about one frame.
#[derive(Debug, Clone, Copy, Default)]
struct Objects {
    dominated: bool,
    count: usize,
}

fn detect_objects(detector: &Detector, index: usize, jpeg: &[u8]) -> Objects {
    let found = decode_bgr(jpeg).and_then(|img| {
        let dets = detector.detect(&img)?;
        Ok(Objects {
            dominated: detector.dominated(&dets, img.width, img.height),
            count: detector.object_count(&dets),
        })
    });
    found.unwrap_or_else(|e| {
        eprintln!("orchestrator: frame {index}: object detection failed: {e}");
        Objects::default()
    })
}

/// Like [`select_frames_scored`], with an optional object detector.
pub fn select_frames_scored_with(
    frames: &[Vec<u8>],
    k: usize,
    detector: Option<&Detector>,
) -> Result<Vec<(usize, FrameScore)>, SelectError> {
    let mut scorer = Scorer::with_capacity(detector, frames.len());
    for jpeg in frames {
        scorer.add(jpeg);
    }
    scorer.finish(k)
}

/// What is kept of one decoded frame: its scores and its thumbnail, never its pixels.
struct Analysed {
    index: usize,
    sharpness: f64,
    exposure: f64,
    thumb: [f32; THUMB * THUMB],
    objects: Objects,
}

/// Bytes a [`Scorer`] keeps per frame it was given (its scores and 16x16 thumbnail).
pub const SCORER_BYTES_PER_FRAME: usize = std::mem::size_of::<Analysed>();

/// [`select_frames_scored_with`] one frame at a time, so that the frames need not be in
/// memory together: [`Scorer::add`] decodes a frame, keeps what selection needs of it
/// ([`SCORER_BYTES_PER_FRAME`] bytes: its scores and thumbnail) and lets go of the JPEG
/// and the decoded image; [`Scorer::finish`] normalises and chooses exactly as
/// [`select_frames_scored_with`] does over the same frames in the same order (that
/// function is this scorer fed from a slice).
pub struct Scorer<'d> {
    detector: Option<&'d Detector>,
    analysed: Vec<Analysed>,
    given: usize,
    first_error: Option<String>,
}

impl<'d> Scorer<'d> {
    pub fn new(detector: Option<&'d Detector>) -> Scorer<'d> {
        Scorer::with_capacity(detector, 0)
    }

    /// A scorer with room for `frames` frames (no reallocation, which would briefly hold
    /// the per-frame state twice, up to that many).
    pub fn with_capacity(detector: Option<&'d Detector>, frames: usize) -> Scorer<'d> {
        Scorer {
            detector,
            analysed: Vec::with_capacity(frames),
            given: 0,
            first_error: None,
        }
    }

    /// Scores the next frame (its index is the number of frames given before it); a
    /// corrupt JPEG is logged and skipped as in [`select_frames`]. Returns its index.
    pub fn add(&mut self, jpeg: &[u8]) -> usize {
        let index = self.given;
        self.given += 1;
        match decode_luma(jpeg) {
            Ok(img) => {
                let small = downscale(&img, ANALYSIS_SIDE);
                drop(img);
                self.analysed.push(Analysed {
                    index,
                    sharpness: laplacian_variance(&small),
                    exposure: exposure(&small),
                    thumb: thumbnail(&small),
                    objects: self
                        .detector
                        .map(|d| detect_objects(d, index, jpeg))
                        .unwrap_or_default(),
                });
            }
            Err(e) => {
                eprintln!("orchestrator: skipping frame {index}: corrupt JPEG: {e}");
                self.first_error.get_or_insert(e);
            }
        }
        index
    }

    /// How many frames were given.
    pub fn len(&self) -> usize {
        self.given
    }

    pub fn is_empty(&self) -> bool {
        self.given == 0
    }

    /// The best `k` of the frames given (indices ascending), with the score each had
    /// when it was picked; see the module documentation.
    pub fn finish(self, k: usize) -> Result<Vec<(usize, FrameScore)>, SelectError> {
        let Scorer {
            detector,
            mut analysed,
            given,
            first_error,
        } = self;
        if given == 0 {
            return Err(SelectError::NoFrames);
        }
        if analysed.is_empty() {
            return Err(SelectError::AllCorrupt {
                count: given,
                first: first_error.unwrap_or_default(),
            });
        }
        Ok(choose(&mut analysed, k, detector.is_some()))
    }
}

/// Drops dominated frames, normalises and picks greedily (the second half of selection).
fn choose(analysed: &mut Vec<Analysed>, k: usize, with_detector: bool) -> Vec<(usize, FrameScore)> {
    if analysed.iter().any(|a| !a.objects.dominated) {
        for a in analysed.iter().filter(|a| a.objects.dominated) {
            eprintln!(
                "orchestrator: dropping frame {}: dominated by drop-class objects",
                a.index
            );
        }
        analysed.retain(|a| !a.objects.dominated);
    } else if with_detector {
        eprintln!("orchestrator: every frame is dominated by drop-class objects; keeping them all");
    }
    let max_sharp = analysed.iter().map(|a| a.sharpness).fold(0.0, f64::max);
    let max_objects = analysed.iter().map(|a| a.objects.count).max().unwrap_or(0);
    let mut chosen: Vec<(usize, FrameScore)> = Vec::new();
    let mut taken = vec![false; analysed.len()];
    while chosen.len() < k.min(analysed.len()) {
        let chosen_thumbs: Vec<&[f32; THUMB * THUMB]> =
            chosen.iter().map(|(i, _)| &analysed[*i].thumb).collect();
        let mut best: Option<(usize, FrameScore)> = None;
        for (i, a) in analysed.iter().enumerate() {
            if taken[i] {
                continue;
            }
            let sharpness = if max_sharp > 0.0 {
                a.sharpness / max_sharp
            } else {
                0.0
            };
            let novelty = novelty(&a.thumb, &chosen_thumbs);
            let objects = if max_objects > 0 {
                a.objects.count as f64 / max_objects as f64
            } else {
                0.0
            };
            let total = W_SHARPNESS * sharpness
                + W_EXPOSURE * a.exposure
                + W_NOVELTY * novelty
                + W_OBJECTS * objects;
            let score = FrameScore {
                sharpness,
                exposure: a.exposure,
                novelty,
                objects,
                total,
            };
            // Strictly greater: on a tie the earlier frame wins, which keeps it deterministic.
            if best.is_none_or(|(_, b)| total > b.total) {
                best = Some((i, score));
            }
        }
        let Some((i, score)) = best else { break };
        taken[i] = true;
        chosen.push((i, score));
    }
    let mut out: Vec<(usize, FrameScore)> = chosen
        .into_iter()
        .map(|(i, s)| (analysed[i].index, s))
        .collect();
    out.sort_by_key(|(i, _)| *i);
    out
}
