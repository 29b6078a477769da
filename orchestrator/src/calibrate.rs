//! `orchestrator calibrate`: where a station's slip lies, from its own camera. A few
//! frames are grabbed through the station's pipeline up to OCR (the same source, decoding
//! and 1 frame/s as in production), whole-frame OCR finds the text that matches the order
//! pattern on each, and the union of those boxes plus a margin is proposed as the
//! station's `roi`, checked by reading every one of those frames with region OCR inside
//! it, as `ocrsegment` will.
//!
//! The pure parts ([`grab_args`], [`locate`], [`propose`], [`draw_rect`]) are apart from
//! the I/O ([`Calibrate::run`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oa_contract::{IdKind, validate_id};
use oa_ocr::{BgrImage, OcrConfig, OcrEngine, Rect, TextLine};
use regex::Regex;

use crate::supervise::camera::CameraEnv;
use crate::supervise::child::Launch;
use crate::supervise::{self, StationSpec, StorageTarget};

/// Reads below this are not taken, as `ocrsegment`'s `min-confidence` default.
pub const MIN_CONFIDENCE: f32 = 0.5;

/// What one calibration needs.
pub struct Calibrate {
    pub station: StationSpec,
    pub camera: CameraEnv,
    pub supervision: supervise::Settings,
    pub pattern: Regex,
    /// Frames to read (1 frame/s: seconds of a camera), at most 1000.
    pub frames: usize,
    /// The annotated frame is written here.
    pub out: PathBuf,
    /// The OCR models; `None`: `OA_MODEL_DIR` or the installed ones.
    pub model_dir: Option<PathBuf>,
}

/// Where the order ID was read on one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Its place among the frames the ID was read on.
    pub frame: usize,
    pub id: String,
    /// The text that matched the pattern (e.g. `ORDER #384`).
    pub text: String,
    pub rect: Rect,
}

/// The outcome of a calibration.
#[derive(Debug)]
pub struct Calibration {
    pub station: String,
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    pub found: Vec<Found>,
    pub roi: Rect,
    /// Frames of `found` on which region OCR inside `roi` read the same ID.
    pub region_reads: usize,
    /// The frame with the boxes drawn on it.
    pub annotated: PathBuf,
}

/// Why no proposal came.
#[derive(Debug)]
pub enum CalibrateError {
    /// No frame could be grabbed (camera unreachable, file unplayable): exit 1.
    NoFrames(String),
    /// Frames came, and none showed an order ID: exit 3.
    NoSlip(String),
    /// Anything else (the models, the output file): exit 1.
    Failed(String),
}

impl CalibrateError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CalibrateError::NoFrames(_) | CalibrateError::Failed(_) => 1,
            CalibrateError::NoSlip(_) => 3,
        }
    }
}

impl std::fmt::Display for CalibrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalibrateError::NoFrames(m) | CalibrateError::NoSlip(m) | CalibrateError::Failed(m) => {
                f.write_str(m)
            }
        }
    }
}

/// The station's rendered pipeline cut before `ocrsegment`, ending in JPEG files in `dir`
/// instead: the frames OCR would see.
pub fn grab_args(station_args: &[String], dir: &Path) -> Result<Vec<String>, String> {
    let at = station_args
        .iter()
        .position(|a| a == "ocrsegment")
        .ok_or("the station's pipeline has no ocrsegment: nothing tells where OCR reads")?;
    let mut args = station_args[..at].to_vec();
    if args.last().is_some_and(|a| a == "!") {
        args.pop();
    }
    let location = dir.join("%05d.jpg");
    args.extend(
        [
            "!",
            "videoconvert",
            "!",
            "jpegenc",
            "quality=95",
            "!",
            "multifilesink",
        ]
        .map(String::from),
    );
    args.push(format!("location={}", location.display()));
    // A bound on the disk, whatever happens to the reader.
    args.push("max-files=1000".into());
    Ok(args)
}

/// The order ID on one frame's OCR lines and the box of the text that matched; lines are
/// joined when no one line matches (the detector may split `ORDER` and `384`).
pub fn locate(
    lines: &[TextLine],
    pattern: &Regex,
    min_confidence: f32,
) -> Option<(String, String, Rect)> {
    let usable = |id: &str| validate_id(IdKind::Order, id).is_ok();
    for l in lines.iter().filter(|l| l.confidence >= min_confidence) {
        if let Some(c) = pattern.captures(&l.text)
            && let (Some(all), Some(id)) = (c.get(0), c.get(1))
            && usable(id.as_str())
        {
            return Some((
                id.as_str().to_owned(),
                all.as_str().trim().to_owned(),
                l.bbox,
            ));
        }
    }
    // Joined with spaces, each line's span known: the lines the match overlaps make the box.
    let mut joined = String::new();
    let mut spans = Vec::new();
    for l in lines.iter().filter(|l| l.confidence >= min_confidence) {
        if !joined.is_empty() {
            joined.push(' ');
        }
        let start = joined.len();
        joined.push_str(&l.text);
        spans.push((start, joined.len(), l.bbox));
    }
    let c = pattern.captures(&joined)?;
    let (all, id) = (c.get(0)?, c.get(1)?);
    if !usable(id.as_str()) {
        return None;
    }
    let rect = spans
        .iter()
        .filter(|(s, e, _)| *s < all.end() && all.start() < *e)
        .map(|(_, _, r)| *r)
        .reduce(union)?;
    Some((id.as_str().to_owned(), all.as_str().trim().to_owned(), rect))
}

fn union(a: Rect, b: Rect) -> Rect {
    let x = a.x.min(b.x);
    let y = a.y.min(b.y);
    let right = (a.x + a.width).max(b.x + b.width);
    let bottom = (a.y + a.height).max(b.y + b.height);
    Rect::new(x, y, right - x, bottom - y)
}

/// The region to read: every box where the ID was read, with a margin of half a line
/// (the flattest box: a rotated slip's box is taller than its text; at least 16 px) on
/// each side for a slip that lies a little elsewhere next time, inside the frame.
pub fn propose(found: &[Rect], width: u32, height: u32) -> Option<Rect> {
    let all = found.iter().copied().reduce(union)?;
    let flattest = found.iter().map(|r| r.height).min().unwrap_or(0);
    let margin = (flattest / 2).max(16);
    let x = all.x.saturating_sub(margin);
    let y = all.y.saturating_sub(margin);
    let right = (all.x + all.width + margin).min(width);
    let bottom = (all.y + all.height + margin).min(height);
    let side = oa_contract::MIN_ROI_SIDE;
    Some(Rect::new(
        x,
        y,
        (right - x).max(side).min(width - x),
        (bottom - y).max(side).min(height - y),
    ))
}

/// Draws `rect`'s outline, `thickness` px inside it, on packed BGR.
pub fn draw_rect(img: &mut BgrImage, rect: Rect, bgr: [u8; 3], thickness: u32) {
    let (w, h) = (img.width, img.height);
    let mut put = |x: u32, y: u32| {
        if x < w && y < h {
            let i = ((y * w + x) * 3) as usize;
            img.data[i..i + 3].copy_from_slice(&bgr);
        }
    };
    let right = rect.x + rect.width.max(1) - 1;
    let bottom = rect.y + rect.height.max(1) - 1;
    for t in 0..thickness {
        for x in rect.x..=right {
            put(x, rect.y + t);
            put(x, bottom.saturating_sub(t));
        }
        for y in rect.y..=bottom {
            put(rect.x + t, y);
            put(right.saturating_sub(t), y);
        }
    }
}

/// The station's `roi` line, as the configuration writes it.
pub fn toml_line(roi: Rect) -> String {
    format!("roi = \"{},{},{},{}\"", roi.x, roi.y, roi.width, roi.height)
}

/// The lines a person reads after a calibration.
pub fn report(c: &Calibration) -> String {
    let ids: std::collections::BTreeSet<&str> = c.found.iter().map(|f| f.id.as_str()).collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let mut s = format!(
        "station {}: order ID read on {} of {} frames ({}x{}), whole-frame OCR: {}\n",
        c.station,
        c.found.len(),
        c.frames,
        c.width,
        c.height,
        ids.join(", ")
    );
    s.push_str(&format!(
        "region OCR inside the proposed roi reads the same ID on {} of those {} frames\n",
        c.region_reads,
        c.found.len()
    ));
    if c.region_reads < c.found.len() {
        s.push_str(
            "  some frames read differently inside the region: check the annotated frame, \
             widen the region by hand, or run calibrate again with the slip where it lies \
             while packing\n",
        );
    }
    s.push_str(&format!(
        "annotated frame: {} (green: where the ID was read, red: the proposed roi)\n",
        c.annotated.display()
    ));
    s.push_str(&format!(
        "add to the station's [[stations]] table (id = \"{}\"):\n{}",
        c.station,
        toml_line(c.roi)
    ));
    s
}

impl Calibrate {
    /// Grabs, reads, proposes, checks and draws.
    pub async fn run(self) -> Result<Calibration, CalibrateError> {
        let dir = crate::check_video::scratch_root();
        std::fs::create_dir_all(&dir)
            .map_err(|e| CalibrateError::Failed(format!("{}: {e}", dir.display())))?;
        let out = self.grab(&dir).await;
        let files = out.and_then(|()| frame_files(&dir, self.frames));
        let result = match files {
            Ok(files) => {
                let me = self;
                tokio::task::spawn_blocking(move || me.read_frames(&files))
                    .await
                    .map_err(|e| CalibrateError::Failed(format!("OCR task: {e}")))?
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn grab(&self, dir: &Path) -> Result<(), CalibrateError> {
        let storage = StorageTarget {
            endpoint: "http://127.0.0.1:9".into(),
            bucket: "calibrate".into(),
            prefix: String::new(),
        };
        let plan = supervise::plan(
            &self.supervision,
            &storage,
            &StationSpec {
                // Whole-frame: the template's own ROI placeholder must not fail the render.
                roi: None,
                ..self.station.clone()
            },
            &self.camera,
            "calibrate",
        )
        .map_err(CalibrateError::Failed)?;
        let args = grab_args(&plan.args, dir).map_err(CalibrateError::Failed)?;
        let launch = Launch {
            gst_launch: self.supervision.gst_launch.clone(),
            plugin_path: self.supervision.plugin_path.clone(),
        };
        let mut child = launch
            .command_with_env(&args, &plan.env)
            .spawn()
            .map_err(|e| {
                CalibrateError::Failed(format!(
                    "cannot start {}: {e}",
                    self.supervision.gst_launch.display()
                ))
            })?;
        let pid = child.id().unwrap_or(0);
        // The pipeline's errors, kept to say why no frame came.
        let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let errors = errors.clone();
            tokio::spawn(async move {
                let mut r = tokio::io::BufReader::new(stream);
                let mut buf = Vec::new();
                while let Some(l) = supervise::next_line(&mut r, &mut buf).await {
                    tracing::debug!("{l}");
                    use supervise::protocol::{LaunchFailure, launch_failure};
                    if let Some(LaunchFailure::Element(what) | LaunchFailure::Unbuildable(what)) =
                        launch_failure(&l)
                    {
                        errors.lock().unwrap().push(what);
                    }
                }
            });
        }
        // A camera gives a frame a second once it plays; connecting takes a few.
        let limit = Duration::from_secs(self.frames as u64 + 20);
        let deadline = Instant::now() + limit;
        let mut exited = false;
        loop {
            if count_frames(dir) > self.frames {
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::select! {
                _ = child.wait() => { exited = true; break; }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                // The pipeline has a process group of its own: the terminal's Ctrl-C
                // does not reach it.
                _ = tokio::signal::ctrl_c() => {
                    supervise::child::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                    let _ = child.wait().await;
                    return Err(CalibrateError::Failed("interrupted".into()));
                }
            }
        }
        supervise::child::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait().await;
        // The readers see the last lines within a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if count_frames(dir) == 0 {
            let why = errors.lock().unwrap().first().cloned().unwrap_or_else(|| {
                if exited {
                    "the pipeline ended without a frame".into()
                } else {
                    format!("no frame within {} s", limit.as_secs())
                }
            });
            return Err(CalibrateError::NoFrames(format!(
                "station {}: no frame from {}: {why}",
                self.station.id, self.station.source
            )));
        }
        Ok(())
    }

    fn read_frames(self, files: &[PathBuf]) -> Result<Calibration, CalibrateError> {
        let mut engine = OcrEngine::new(&OcrConfig {
            model_dir: self.model_dir.clone(),
            ..OcrConfig::default()
        })
        .map_err(|e| CalibrateError::Failed(format!("OCR: {e}")))?;
        // Only the frames the ID was read on are kept (for the region check and the
        // picture); the others are counted.
        let mut frames: Vec<BgrImage> = Vec::new();
        let mut decoded = 0;
        let mut size = None;
        let mut found = Vec::new();
        let mut seen_text: Vec<String> = Vec::new();
        for path in files {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            // The last file may be cut short by the kill.
            let Ok(d) = crate::jpeg::decode_bgr(&bytes) else {
                continue;
            };
            let img = BgrImage {
                width: d.width as u32,
                height: d.height as u32,
                data: d.data,
            };
            let lines = engine
                .detect_and_recognize(&img)
                .map_err(|e| CalibrateError::Failed(format!("OCR: {e}")))?;
            let index = decoded;
            decoded += 1;
            size.get_or_insert((img.width, img.height));
            let before = found.len();
            match locate(&lines, &self.pattern, MIN_CONFIDENCE) {
                Some((id, text, rect)) => {
                    found.push(Found {
                        frame: frames.len(),
                        id,
                        text,
                        rect,
                    });
                    frames.push(img);
                }
                None => seen_text.extend(lines.into_iter().map(|l| l.text)),
            }
            tracing::info!(
                "frame {} of {}: {}",
                index + 1,
                files.len(),
                found
                    .get(before)
                    .map_or("no order ID".to_owned(), |f| format!(
                        "{:?} at {},{} {}x{}",
                        f.text, f.rect.x, f.rect.y, f.rect.width, f.rect.height
                    ))
            );
        }
        let Some((width, height)) = size else {
            return Err(CalibrateError::NoFrames(format!(
                "station {}: no frame could be decoded",
                self.station.id
            )));
        };
        let rects: Vec<Rect> = found.iter().map(|f| f.rect).collect();
        let Some(roi) = propose(&rects, width, height) else {
            seen_text.sort();
            seen_text.dedup();
            seen_text.truncate(8);
            let seen = if seen_text.is_empty() {
                "no text at all".to_owned()
            } else {
                format!("text read: {seen_text:?}")
            };
            return Err(CalibrateError::NoSlip(format!(
                "station {}: no order slip in view on {} frames ({seen}): put a slip where it \
                 lies while packing, in view of the camera, and run calibrate again; a slip \
                 printed in another form needs --order-pattern",
                self.station.id, decoded
            )));
        };
        let mut region_reads = 0;
        for f in &found {
            let crop = frames[f.frame]
                .crop(roi)
                .map_err(|e| CalibrateError::Failed(format!("crop: {e}")))?;
            let lines = engine
                .recognize_region(&crop)
                .map_err(|e| CalibrateError::Failed(format!("OCR: {e}")))?;
            if locate(&lines, &self.pattern, MIN_CONFIDENCE).is_some_and(|(id, _, _)| id == f.id) {
                region_reads += 1;
            }
        }
        // The frame that shows the slip, the latest of them, with every box on it.
        let shown = found.last().map_or(0, |f| f.frame);
        let mut img = frames.swap_remove(shown);
        for f in &found {
            draw_rect(&mut img, f.rect, [0, 200, 0], 2);
        }
        draw_rect(&mut img, roi, [0, 0, 255], 4);
        let jpeg = encode_bgr(&img)?;
        std::fs::write(&self.out, jpeg)
            .map_err(|e| CalibrateError::Failed(format!("{}: {e}", self.out.display())))?;
        Ok(Calibration {
            station: self.station.id.clone(),
            frames: decoded,
            width,
            height,
            found,
            roi,
            region_reads,
            annotated: self.out.clone(),
        })
    }
}

fn encode_bgr(img: &BgrImage) -> Result<Vec<u8>, CalibrateError> {
    let mut out = Vec::new();
    let encoder = jpeg_encoder::Encoder::new(&mut out, 90);
    encoder
        .encode(
            &img.data,
            img.width as u16,
            img.height as u16,
            jpeg_encoder::ColorType::Bgr,
        )
        .map_err(|e| CalibrateError::Failed(format!("JPEG: {e}")))?;
    Ok(out)
}

fn count_frames(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().count())
        .unwrap_or(0)
}

/// The first `n` grabbed frames, in order.
fn frame_files(dir: &Path, n: usize) -> Result<Vec<PathBuf>, CalibrateError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CalibrateError::Failed(format!("{}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    files.truncate(n);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oa_ocr::Quad;

    fn line(text: &str, x: u32, y: u32, w: u32, h: u32) -> TextLine {
        TextLine {
            text: text.into(),
            confidence: 0.9,
            bbox: Rect::new(x, y, w, h),
            quad: Quad::axis_aligned(x as f32, y as f32, w as f32, h as f32),
        }
    }

    fn pattern() -> Regex {
        Regex::new(oa_contract::DEFAULT_ORDER_PATTERN).unwrap()
    }

    #[test]
    fn the_line_that_holds_the_id_is_the_box() {
        let lines = [
            line("BURGER BAR", 10, 10, 200, 30),
            line("ORDER #384", 40, 60, 180, 32),
            line("2x fries", 40, 100, 120, 30),
        ];
        let (id, text, rect) = locate(&lines, &pattern(), 0.5).unwrap();
        assert_eq!((id.as_str(), text.as_str()), ("384", "ORDER #384"));
        assert_eq!(rect, Rect::new(40, 60, 180, 32));
    }

    #[test]
    fn a_split_id_takes_the_box_of_both_lines() {
        let lines = [
            line("ORDER", 40, 60, 90, 32),
            line("384", 140, 62, 60, 30),
            line("fries", 40, 120, 90, 30),
        ];
        let (id, _, rect) = locate(&lines, &pattern(), 0.5).unwrap();
        assert_eq!(id, "384");
        assert_eq!(rect, Rect::new(40, 60, 160, 32));
    }

    #[test]
    fn low_confidence_and_no_id_find_nothing() {
        let mut weak = line("ORDER #384", 40, 60, 180, 32);
        weak.confidence = 0.3;
        assert_eq!(locate(&[weak], &pattern(), 0.5), None);
        assert_eq!(
            locate(&[line("ORDER SUMMARY", 0, 0, 9, 9)], &pattern(), 0.5),
            None
        );
    }

    #[test]
    fn the_proposal_covers_every_box_with_a_margin_inside_the_frame() {
        let boxes = [Rect::new(100, 50, 200, 30), Rect::new(400, 80, 180, 40)];
        let roi = propose(&boxes, 1280, 720).unwrap();
        // margin = 16 (half the flattest box, 15, is less)
        assert_eq!(roi, Rect::new(84, 34, 512, 102));
        for b in boxes {
            assert!(b.x >= roi.x && b.x + b.width <= roi.x + roi.width);
            assert!(b.y >= roi.y && b.y + b.height <= roi.y + roi.height);
        }
        let edge = propose(&[Rect::new(1250, 700, 30, 20)], 1280, 720).unwrap();
        assert_eq!(edge, Rect::new(1234, 684, 46, 36));
        assert_eq!(propose(&[], 1280, 720), None);
        assert!(oa_contract::Roi::parse(toml_line(roi).split('"').nth(1).unwrap()).is_ok());
    }

    #[test]
    fn a_drawn_box_is_its_outline() {
        let mut img = BgrImage::filled(10, 10, [0, 0, 0]);
        draw_rect(&mut img, Rect::new(2, 2, 5, 5), [1, 2, 3], 1);
        assert_eq!(img.pixel(2, 2), [1, 2, 3]);
        assert_eq!(img.pixel(6, 4), [1, 2, 3]);
        assert_eq!(img.pixel(4, 6), [1, 2, 3]);
        assert_eq!(img.pixel(4, 4), [0, 0, 0], "inside stays");
        assert_eq!(img.pixel(7, 7), [0, 0, 0], "outside stays");
    }

    #[test]
    fn the_grab_pipeline_is_the_station_s_up_to_ocr() {
        let station: Vec<String> = "camerasrc location=rtsp://x ! videoconvert ! videorate \
             ! video/x-raw,framerate=1/1 ! ocrsegment station-id=s roi= ! jpegenc ! eosmarker"
            .split_whitespace()
            .map(String::from)
            .collect();
        let args = grab_args(&station, Path::new("/tmp/g")).unwrap();
        assert_eq!(
            args.join(" "),
            "camerasrc location=rtsp://x ! videoconvert ! videorate ! \
             video/x-raw,framerate=1/1 ! videoconvert ! jpegenc quality=95 ! multifilesink \
             location=/tmp/g/%05d.jpg max-files=1000"
        );
        assert!(grab_args(&["videotestsrc".into()], Path::new("/tmp")).is_err());
    }
}
