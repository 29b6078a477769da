use super::debounce::{Change, Debouncer, FrameTag};
use super::frame::{self, SUPPORTED_FORMATS};
use super::slip::{DEFAULT_ORDER_PATTERN, Outcome, compile_pattern, find_read};
use crate::events::OrderChanged;
use crate::meta::{OrderTag, capture_unix_ms, set_held_for};
use crate::throttle::{self, Throttle};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::subclass::prelude::*;
use oa_contract::messages::{self, field};
use oa_contract::{IdKind, Roi, validate_id};
use oa_ocr::{OcrConfig, OcrEngine, Rect, Signature, TextLine};
use regex::Regex;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "ocrsegment",
        gst::DebugColorFlags::empty(),
        Some("Order slip OCR segmenter"),
    )
});

const DEFAULT_STATION_ID: &str = "station_1";
const DEFAULT_ROI: &str = "";
const DEFAULT_MIN_CONFIDENCE: f64 = 0.5;
const DEFAULT_CONFIRM_FRAMES: u32 = 2;
const DEFAULT_RELEASE_FRAMES: u32 = 3;
/// `hold-frames` of -1: `release-frames` plus this. Two frames are a fifth of eosmarker's
/// default idle timeout (10 s) at the 1 frame/s the shipped pipelines sample: the order's
/// completion after its slip leaves is delayed by at most the hold, which stays well inside
/// the idle timeout, while a hand over the slip for up to about 5 s costs the order nothing.
const AUTO_HOLD_EXTRA_FRAMES: u32 = 2;
const DEFAULT_HOLD_FRAMES: i32 = -1;
const DEFAULT_OCR_INTERVAL: u32 = 1;
const DEFAULT_SKIP_UNCHANGED: bool = true;
const DEFAULT_THREADS: u32 = 1;
/// Detection input's long side is capped at this: a 720p frame becomes 960x544, about half
/// the cost of rapidocr's 1312x736, while a printed slip stays well above the text size the
/// detector needs.
const DEFAULT_DET_MAX_SIDE: u32 = 960;

/// Mean luma change (0..255) of one signature cell that counts as a changed region. Well
/// above sensor noise and compression flicker, well below what one changed glyph causes.
const CHANGE_THRESHOLD: u8 = 10;

#[derive(Debug, Clone)]
struct Settings {
    station_id: String,
    roi: String,
    model_dir: Option<String>,
    order_pattern: String,
    min_confidence: f64,
    confirm_frames: u32,
    release_frames: u32,
    hold_frames: i32,
    ocr_interval: u32,
    skip_unchanged: bool,
    threads: u32,
    det_max_side: u32,
}

impl Settings {
    fn hold_frames(&self) -> u32 {
        u32::try_from(self.hold_frames)
            .unwrap_or_else(|_| self.release_frames.saturating_add(AUTO_HOLD_EXTRA_FRAMES))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            station_id: DEFAULT_STATION_ID.into(),
            roi: DEFAULT_ROI.into(),
            model_dir: None,
            order_pattern: DEFAULT_ORDER_PATTERN.into(),
            min_confidence: DEFAULT_MIN_CONFIDENCE,
            confirm_frames: DEFAULT_CONFIRM_FRAMES,
            release_frames: DEFAULT_RELEASE_FRAMES,
            hold_frames: DEFAULT_HOLD_FRAMES,
            ocr_interval: DEFAULT_OCR_INTERVAL,
            skip_unchanged: DEFAULT_SKIP_UNCHANGED,
            threads: DEFAULT_THREADS,
            det_max_side: DEFAULT_DET_MAX_SIDE,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    frames: u64,
    ocr_runs: u64,
    ocr_skipped: u64,
    rejected_reads: u64,
}

struct State {
    engine: OcrEngine,
    pattern: Regex,
    settings: Settings,
    roi: Option<Rect>,
    info: Option<gst_video::VideoInfo>,
    frame_index: u64,
    /// Signature of the region when OCR last ran.
    last_signature: Option<Signature>,
    debounce: Debouncer,
    /// "ignored unusable order IDs": a slip the pattern matches but the contract refuses
    /// is read so at every OCR run while it stays in view.
    unusable: Throttle,
}

/// What the OCR run of one frame says about unusable order IDs.
enum Unusable {
    /// Only unusable IDs were read; logged (first time, or once per interval).
    Logged(throttle::Report),
    /// Usable again after a logged run of unusable reads.
    Cleared(throttle::Cleared),
}

#[derive(Default)]
pub struct OcrSegment {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    stats: Mutex<Stats>,
}

impl OcrSegment {
    fn post(&self, s: gst::Structure) {
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
    }

    fn post_read(&self, station: &str, lines: &[TextLine], outcome: &Outcome, ocr_ms: f64) {
        let text = lines
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let confidence = outcome.read.as_ref().map_or_else(
            || lines.iter().map(|l| l.confidence).fold(0.0, f32::max),
            |r| r.confidence,
        );
        self.post(
            gst::Structure::builder(messages::OCR_READ)
                .field(field::STATION_ID, station)
                .field(field::TEXT, text)
                .field(
                    field::ORDER_ID,
                    outcome.read.as_ref().map(|r| r.id.as_str()),
                )
                .field(field::CONFIDENCE, confidence)
                .field(field::REJECTED, outcome.rejected.len() as u32)
                .field(field::OCR_MS, ocr_ms)
                .build(),
        );
    }

    fn announce(&self, station_id: &str, change: Change) {
        let name = change.message_name();
        let e = OrderChanged {
            station_id: station_id.to_owned(),
            order_id: change.order_id,
            previous: change.previous,
            confidence: change.confidence,
        };
        gst::info!(
            CAT,
            imp = self,
            "{}: {:?} -> {:?} (confidence {:.2})",
            name,
            e.previous,
            e.order_id,
            e.confidence
        );
        // Serialized and sent from the streaming thread before the buffer leaves
        // transform_ip, so downstream sees the change exactly between the right frames.
        if !self.obj().src_pad().push_event(gst::Event::from(&e)) {
            gst::debug!(CAT, imp = self, "downstream did not handle the order event");
        }
        self.post(
            gst::Structure::builder(name)
                .field(field::STATION_ID, e.station_id.as_str())
                .field(field::ORDER_ID, e.order_id.as_deref())
                .field(field::PREVIOUS, e.previous.as_deref())
                .field(field::CONFIDENCE, e.confidence)
                .build(),
        );
    }
}

#[glib::object_subclass]
impl ObjectSubclass for OcrSegment {
    const NAME: &'static str = "OaOcrSegment";
    type Type = super::OcrSegment;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for OcrSegment {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("station-id")
                    .nick("Station ID")
                    .blurb("Packing station this camera watches; written into every frame's tag and event ([A-Za-z0-9][A-Za-z0-9_-]{0,63})")
                    .default_value(Some(DEFAULT_STATION_ID))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("roi")
                    .nick("Region of interest")
                    .blurb("Where the slip's order ID is, as \"x,y,width,height\" in pixels: only that region is read, with recognition only (fast). Empty: detect and read text in the whole frame")
                    .default_value(Some(DEFAULT_ROI))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("model-dir")
                    .nick("Model directory")
                    .blurb("Folder with PP-OCRv6_det_small.onnx and PP-OCRv6_rec_small.onnx. Unset: $OA_MODEL_DIR, else the folder the plugin was built with (filled by scripts/setup.sh)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("order-pattern")
                    .nick("Order pattern")
                    .blurb("Regular expression (Rust regex syntax) with exactly one capture group, the order ID, matched against each OCR'd text line. The default is case-insensitive and reads \"#384\", \"ORDER 384\", \"ORDER #384\" and \"Order #A7-5521\"")
                    .default_value(Some(DEFAULT_ORDER_PATTERN))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("min-confidence")
                    .nick("Minimum confidence")
                    .blurb("OCR confidence (0-1) a matched order ID needs; weaker matches are counted in rejected-reads and ignored")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_MIN_CONFIDENCE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("confirm-frames")
                    .nick("Confirm frames")
                    .blurb("Consecutive OCR'd frames that must read the same new order ID before it becomes the current order")
                    .minimum(1)
                    .maximum(1000)
                    .default_value(DEFAULT_CONFIRM_FRAMES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("release-frames")
                    .nick("Release frames")
                    .blurb("Consecutive OCR'd frames without the current order ID after which no order is current (order-released)")
                    .minimum(1)
                    .maximum(1000)
                    .default_value(DEFAULT_RELEASE_FRAMES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("hold-frames")
                    .nick("Hold frames")
                    .blurb("Frames in a row without the ID of the order last read (a hand over the slip) that are held for that order: they belong to it if its ID is read again within this many frames, and are dropped by the sink if another order starts first or the window passes. Frames that read an ID not yet confirmed are always held for it. -1: release-frames + 2")
                    .minimum(-1)
                    .maximum(1000)
                    .default_value(DEFAULT_HOLD_FRAMES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("ocr-interval")
                    .nick("OCR interval")
                    .blurb("Run OCR on every k-th frame only; the frames in between inherit the last read")
                    .minimum(1)
                    .maximum(100_000)
                    .default_value(DEFAULT_OCR_INTERVAL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("skip-unchanged")
                    .nick("Skip unchanged")
                    .blurb("Skip OCR when the region looks the same as when OCR last ran (coarse luma thumbnail compare); the frame inherits the last read")
                    .default_value(DEFAULT_SKIP_UNCHANGED)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("ONNX Runtime intra-op threads per model")
                    .minimum(1)
                    .maximum(64)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("det-max-side")
                    .nick("Detection size")
                    .blurb(
                        "Longest side, in pixels, a whole frame is scaled down to for text \
                         detection (whole-frame mode only); larger reads smaller text and \
                         costs more",
                    )
                    .minimum(128)
                    .maximum(4096)
                    .default_value(DEFAULT_DET_MAX_SIDE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("frames")
                    .nick("Frames")
                    .blurb("Buffers tagged since the element started")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("ocr-runs")
                    .nick("OCR runs")
                    .blurb("Frames on which OCR ran")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("ocr-skipped")
                    .nick("OCR skipped")
                    .blurb("Frames due for OCR (per ocr-interval) on which it was skipped because the region had not changed")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("rejected-reads")
                    .nick("Rejected reads")
                    .blurb("Order-pattern matches that were ignored: not a valid order ID (e.g. \"../x\", over 64 characters) or below min-confidence")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "station-id" => {
                settings.station_id = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
            }
            "roi" => {
                settings.roi = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
            }
            "model-dir" => {
                settings.model_dir = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|d| !d.is_empty());
            }
            "order-pattern" => {
                settings.order_pattern = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
            }
            "min-confidence" => {
                settings.min_confidence = value.get().expect("type checked upstream");
            }
            "confirm-frames" => {
                settings.confirm_frames = value.get().expect("type checked upstream");
            }
            "release-frames" => {
                settings.release_frames = value.get().expect("type checked upstream");
            }
            "hold-frames" => {
                settings.hold_frames = value.get().expect("type checked upstream");
            }
            "ocr-interval" => {
                settings.ocr_interval = value.get().expect("type checked upstream");
            }
            "skip-unchanged" => {
                settings.skip_unchanged = value.get().expect("type checked upstream");
            }
            "threads" => {
                settings.threads = value.get().expect("type checked upstream");
            }
            "det-max-side" => {
                settings.det_max_side = value.get().expect("type checked upstream");
            }
            _ => unimplemented!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        let stats = *self.stats.lock().unwrap();
        match pspec.name() {
            "station-id" => settings.station_id.to_value(),
            "roi" => settings.roi.to_value(),
            "model-dir" => settings.model_dir.to_value(),
            "order-pattern" => settings.order_pattern.to_value(),
            "min-confidence" => settings.min_confidence.to_value(),
            "confirm-frames" => settings.confirm_frames.to_value(),
            "release-frames" => settings.release_frames.to_value(),
            "hold-frames" => settings.hold_frames.to_value(),
            "ocr-interval" => settings.ocr_interval.to_value(),
            "skip-unchanged" => settings.skip_unchanged.to_value(),
            "threads" => settings.threads.to_value(),
            "det-max-side" => settings.det_max_side.to_value(),
            "frames" => stats.frames.to_value(),
            "ocr-runs" => stats.ocr_runs.to_value(),
            "ocr-skipped" => stats.ocr_skipped.to_value(),
            "rejected-reads" => stats.rejected_reads.to_value(),
            _ => unimplemented!(),
        }
    }
}

impl GstObjectImpl for OcrSegment {}

impl ElementImpl for OcrSegment {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Order slip OCR segmenter",
                "Filter/Analyzer/Video",
                "Reads the order ID on an order slip with OCR (PP-OCR models on ONNX Runtime), \
                 tags every frame with the station and current order, and signals order changes \
                 downstream and on the bus",
                "order-accuracy developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list(SUPPORTED_FORMATS)
                .build();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for OcrSegment {
    // In place without passthrough: base transform then hands over a writable buffer
    // (a shallow copy at worst, pixels are shared) so the tag can be attached; the frame
    // itself is only ever mapped for reading.
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        validate_id(IdKind::Station, &settings.station_id).map_err(|e| {
            gst::error_msg!(
                gst::LibraryError::Settings,
                ("Invalid station-id {:?}: {}", settings.station_id, e)
            )
        })?;
        let roi = Roi::parse_optional(&settings.roi)
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("roi {}", e)))?
            .map(|r| Rect::new(r.x, r.y, r.width, r.height));
        let pattern = compile_pattern(&settings.order_pattern)
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{}", e)))?;
        let config = OcrConfig {
            model_dir: settings.model_dir.as_ref().map(PathBuf::from),
            intra_threads: settings.threads as usize,
            det_max_side_len: settings.det_max_side,
            ..OcrConfig::default()
        };
        let engine = OcrEngine::new(&config)
            .map_err(|e| gst::error_msg!(gst::ResourceError::NotFound, ("{}", e)))?;
        gst::info!(
            CAT,
            imp = self,
            "models loaded from {}",
            engine.model_dir().display()
        );
        *self.stats.lock().unwrap() = Stats::default();
        let debounce = Debouncer::with_hold(
            settings.confirm_frames,
            settings.release_frames,
            settings.hold_frames(),
        );
        *self.state.lock().unwrap() = Some(State {
            engine,
            pattern,
            settings,
            roi,
            info: None,
            frame_index: 0,
            last_signature: None,
            debounce,
            unusable: Throttle::default(),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let running_time = self
            .obj()
            .segment()
            .downcast_ref::<gst::ClockTime>()
            .and_then(|segment| segment.to_running_time(buf.pts()));
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ["Not started"]);
            return Err(gst::FlowError::Error);
        };
        let Some(info) = state.info.clone() else {
            return Err(gst::FlowError::NotNegotiated);
        };
        let index = state.frame_index;
        state.frame_index += 1;
        let due = index % u64::from(state.settings.ocr_interval.max(1)) == 0;
        let rect = state
            .roi
            .unwrap_or(Rect::new(0, 0, info.width(), info.height()));

        let mut skipped = false;
        let mut ran = None;
        if due {
            let mapped =
                gst_video::VideoFrameRef::from_buffer_ref_readable(&*buf, &info).map_err(|e| {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        ["Cannot map frame: {}", e]
                    );
                    gst::FlowError::Error
                })?;
            let signature = if state.settings.skip_unchanged {
                let sig = frame::signature(&mapped, rect).map_err(|e| {
                    gst::element_imp_error!(self, gst::StreamError::Format, ["{}", e]);
                    gst::FlowError::Error
                })?;
                // Only skip once the debounce has settled: a pending confirmation or
                // release counts OCR'd frames, and a static scene must still reach it.
                skipped = state.debounce.settled()
                    && state
                        .last_signature
                        .as_ref()
                        .is_some_and(|old| !old.differs(&sig, CHANGE_THRESHOLD));
                Some(sig)
            } else {
                None
            };
            if !skipped {
                let started = Instant::now();
                let image = frame::to_bgr(&mapped, Some(rect)).map_err(|e| {
                    gst::element_imp_error!(self, gst::StreamError::Format, ["{}", e]);
                    gst::FlowError::Error
                })?;
                drop(mapped);
                let lines = if state.roi.is_some() {
                    state.engine.recognize_region(&image)
                } else {
                    state.engine.detect_and_recognize(&image)
                }
                .map_err(|e| {
                    gst::element_imp_error!(self, gst::StreamError::Failed, ["{}", e]);
                    gst::FlowError::Error
                })?;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                state.last_signature = signature;
                let min_conf = state.settings.min_confidence as f32;
                let outcome = find_read(&lines, &state.pattern, min_conf);
                // One line per OCR run: debug, never info.
                gst::debug!(
                    CAT,
                    imp = self,
                    "OCR {:.1} ms: {:?} -> {:?}",
                    ms,
                    lines,
                    outcome.read
                );
                for (id, why) in &outcome.rejected {
                    gst::debug!(CAT, imp = self, "rejected order ID {:?}: {}", id, why);
                }
                ran = Some((lines, outcome, ms));
            }
        }

        let mut change = None;
        let mut unusable = None;
        let station = state.settings.station_id.clone();
        if let Some((_, outcome, _)) = &ran {
            change = state.debounce.update(outcome.read.clone());
            let now = Instant::now();
            unusable = if !outcome.rejected.is_empty() && outcome.read.is_none() {
                state.unusable.hit(now).map(Unusable::Logged)
            } else {
                state.unusable.clear(now).map(Unusable::Cleared)
            };
        }
        let FrameTag { order_id, held_for } = state.debounce.frame_tag();
        let tag = OrderTag {
            station_id: station.clone(),
            order_id,
            unix_ms: capture_unix_ms(self.obj().upcast_ref(), running_time),
        };
        drop(guard);

        {
            let mut stats = self.stats.lock().unwrap();
            stats.frames += 1;
            if skipped {
                stats.ocr_skipped += 1;
            }
            if let Some((_, outcome, _)) = &ran {
                stats.ocr_runs += 1;
                stats.rejected_reads += outcome.rejected.len() as u64;
            }
        }
        if let Some((lines, outcome, ms)) = &ran {
            match unusable {
                Some(Unusable::Logged(report)) => gst::warning!(
                    CAT,
                    imp = self,
                    "ignored unusable order IDs: {:?}{report}",
                    outcome.rejected
                ),
                Some(Unusable::Cleared(cleared)) => gst::info!(
                    CAT,
                    imp = self,
                    "no unusable order IDs read any more{cleared}"
                ),
                None => {}
            }
            self.post_read(&station, lines, outcome, *ms);
        }
        if let Some(change) = change {
            self.announce(&station, change);
        }
        tag.attach(buf);
        set_held_for(buf, held_for.as_deref());
        Ok(gst::FlowSuccess::Ok)
    }
}

impl VideoFilterImpl for OcrSegment {
    fn set_info(
        &self,
        incaps: &gst::Caps,
        in_info: &gst_video::VideoInfo,
        outcaps: &gst::Caps,
        out_info: &gst_video::VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            return Err(gst::loggable_error!(CAT, "caps set before start"));
        };
        if let Some(roi) = state.roi
            && !roi.fits_in(in_info.width(), in_info.height())
        {
            let msg = format!(
                "roi {},{},{},{} lies outside the {}x{} frame",
                roi.x,
                roi.y,
                roi.width,
                roi.height,
                in_info.width(),
                in_info.height()
            );
            drop(guard);
            gst::element_imp_error!(self, gst::LibraryError::Settings, ("{}", msg));
            return Err(gst::loggable_error!(CAT, "{}", msg));
        }
        if state
            .info
            .as_ref()
            .is_some_and(|i| i.width() != in_info.width() || i.height() != in_info.height())
        {
            state.last_signature = None;
        }
        state.info = Some(in_info.clone());
        drop(guard);
        self.parent_set_info(incaps, in_info, outcaps, out_info)
    }
}
