//! `ocrsegment` against the real PP-OCR models, on frames rendered by GStreamer's own
//! `textoverlay` (so the text is real anti-aliased type, not a bitmap font).

use gst::prelude::*;
use gst_check::Harness;
use gstorderaccuracy::events::OrderChanged;
use gstorderaccuracy::meta::OrderTag;
use gstorderaccuracy::ocrsegment::frame;
use oa_ocr::{BgrImage, OcrConfig, OcrEngine, Rect};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once};

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstorderaccuracy::plugin_register_static().expect("register plugin");
    });
}

/// Text to draw and where: `valignment` is `top`, `center` or `bottom`.
type Overlay<'a> = (&'a str, &'a str);

/// Renders a 1280x720 white frame with black text and converts it to `format`.
fn render(overlays: &[Overlay<'_>], format: &str) -> (gst::Caps, gst::Buffer) {
    init();
    let mut desc = String::from(
        "videotestsrc pattern=white num-buffers=1 ! video/x-raw,width=1280,height=720,framerate=30/1",
    );
    for (text, valign) in overlays {
        desc.push_str(&format!(
            " ! textoverlay text=\"{text}\" font-desc=\"Sans Bold 48\" valignment={valign} \
             halignment=center color=0xff000000 draw-outline=false draw-shadow=false"
        ));
    }
    desc.push_str(&format!(
        " ! videoconvert ! video/x-raw,format={format} ! appsink name=sink sync=false"
    ));
    oa_test_support::frame(&desc)
}

/// Frames by name, rendered once per test.
struct Frames {
    format: String,
    cache: HashMap<String, (gst::Caps, gst::Buffer)>,
}

impl Frames {
    fn new(format: &str) -> Self {
        Frames {
            format: format.into(),
            cache: HashMap::new(),
        }
    }

    fn get(&mut self, text: &str) -> (gst::Caps, gst::Buffer) {
        let format = self.format.clone();
        self.cache
            .entry(text.to_owned())
            .or_insert_with(|| render(&[(text, "center")], &format))
            .clone()
    }
}

/// What left the element, in order.
#[derive(Debug, Clone, PartialEq)]
enum Out {
    Buffer(Option<String>),
    Changed(Option<String>, Option<String>),
}

struct Rig {
    h: Harness,
    seen: Arc<Mutex<Vec<Out>>>,
    bus: gst::Bus,
}

impl Rig {
    /// `props` as in gst-launch, e.g. `confirm-frames=2 skip-unchanged=false`.
    fn new(props: &str, caps: &gst::Caps) -> Rig {
        init();
        let element = gst::ElementFactory::make("ocrsegment").build().unwrap();
        for prop in props.split_whitespace() {
            let (k, v) = prop.split_once('=').expect("name=value");
            element.set_property_from_str(k, v);
        }
        let bus = gst::Bus::new();
        element.set_bus(Some(&bus));
        let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        element.static_pad("src").unwrap().add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                if let Some(buffer) = info.buffer() {
                    let tag = OrderTag::from_buffer(buffer).expect("every buffer is tagged");
                    seen2.lock().unwrap().push(Out::Buffer(tag.order_id));
                } else if let Some(event) = info.event()
                    && let Some(c) = OrderChanged::try_parse(event)
                {
                    seen2
                        .lock()
                        .unwrap()
                        .push(Out::Changed(c.order_id, c.previous));
                }
                gst::PadProbeReturn::Ok
            },
        );
        h.set_src_caps(caps.clone());
        Rig { h, seen, bus }
    }

    /// Pushes a frame and returns the order its tag names.
    fn push(&mut self, buffer: &gst::Buffer) -> Option<String> {
        self.h.push(buffer.clone()).expect("push");
        let out = self.h.pull().expect("buffer out");
        let tag = OrderTag::from_buffer(&out).expect("tagged");
        assert_eq!(tag.station_id, self.prop::<String>("station-id"));
        assert!(tag.unix_ms > 1_600_000_000_000);
        tag.order_id
    }

    fn prop<T: for<'a> glib::value::FromValue<'a> + 'static>(&self, name: &str) -> T {
        self.h.element().unwrap().property::<T>(name)
    }

    fn messages(&self, names: &[&str]) -> Vec<gst::Structure> {
        std::iter::from_fn(|| self.bus.pop())
            .filter_map(|m| m.structure().map(|s| s.to_owned()))
            .filter(|s| names.contains(&s.name().as_str()))
            .collect()
    }
}

use gst::glib;

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[test]
fn debounce_release_events_and_messages() {
    let mut frames = Frames::new("BGRx");
    let (caps, blank) = frames.get("");
    let (_, o384) = frames.get("ORDER #384");
    let (_, o512) = frames.get("ORDER #512");
    let mut rig = Rig::new(
        "station-id=pack_7 confirm-frames=2 release-frames=3 skip-unchanged=false",
        &caps,
    );
    let sequence = [
        &blank, &blank, &o384, &o384, &o384, &o512, &o512, &o512, &blank, &blank, &blank,
    ];
    let tags: Vec<Option<String>> = sequence.iter().map(|b| rig.push(b)).collect();
    assert_eq!(
        tags,
        vec![
            None,
            None,
            None, // first read of 384: not confirmed yet
            some("384"),
            some("384"),
            None, // 512 read once: neither the current order nor confirmed
            some("512"),
            some("512"),
            None,
            None,
            None,
        ]
    );
    let seen = rig.seen.lock().unwrap().clone();
    use Out::*;
    assert_eq!(
        seen,
        vec![
            Buffer(None),
            Buffer(None),
            Buffer(None),
            Changed(some("384"), None),
            Buffer(some("384")),
            Buffer(some("384")),
            Buffer(None),
            Changed(some("512"), some("384")),
            Buffer(some("512")),
            Buffer(some("512")),
            Buffer(None),
            Buffer(None),
            Changed(None, some("512")),
            Buffer(None),
        ]
    );
    let msgs = rig.messages(&["order-started", "order-changed", "order-released"]);
    let summary: Vec<(String, Option<String>, Option<String>, String)> = msgs
        .iter()
        .map(|s| {
            (
                s.name().to_string(),
                s.get::<Option<String>>("order-id").unwrap(),
                s.get::<Option<String>>("previous").unwrap(),
                s.get::<String>("station-id").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("order-started".into(), some("384"), None, "pack_7".into()),
            (
                "order-changed".into(),
                some("512"),
                some("384"),
                "pack_7".into()
            ),
            ("order-released".into(), None, some("512"), "pack_7".into()),
        ]
    );
    let c = msgs[0].get::<f32>("confidence").unwrap();
    assert!(c > 0.5 && c <= 1.0, "confidence {c}");
    assert_eq!(rig.prop::<u64>("frames"), 11);
    assert_eq!(rig.prop::<u64>("ocr-runs"), 11);
    assert_eq!(rig.prop::<u64>("ocr-skipped"), 0);
    let reads = rig.messages(&["ocr-read"]);
    assert!(reads.is_empty(), "already drained with the others");
}

#[test]
fn default_pattern_reads_slip_styles() {
    let mut frames = Frames::new("BGRx");
    for (text, want) in [
        ("#384", "384"),
        ("ORDER 384", "384"),
        ("Order #A7-5521", "A7-5521"),
    ] {
        let (caps, buf) = frames.get(text);
        let mut rig = Rig::new("confirm-frames=1", &caps);
        assert_eq!(rig.push(&buf).as_deref(), Some(want), "slip {text:?}");
        let read = rig.messages(&["ocr-read"]);
        assert_eq!(read.len(), 1);
        assert_eq!(
            read[0]
                .get::<Option<String>>("order-id")
                .unwrap()
                .as_deref(),
            Some(want)
        );
    }
}

#[test]
fn noise_and_invalid_ids_never_become_orders() {
    let mut frames = Frames::new("BGRx");
    // A pattern loose enough to capture a path separator: the contract check must refuse it.
    let (caps, bad) = frames.get("ORDER 38/4");
    let mut rig = Rig::new(
        r"confirm-frames=1 skip-unchanged=false order-pattern=(?i)order\s*(\S+)",
        &caps,
    );
    for _ in 0..3 {
        assert_eq!(rig.push(&bad), None);
    }
    assert!(
        rig.prop::<u64>("rejected-reads") >= 3,
        "rejected {}",
        rig.prop::<u64>("rejected-reads")
    );
    assert!(rig.messages(&["order-started"]).is_empty());

    // Text that is not an order slip at all.
    let (_, noise) = frames.get("TOTAL 12.50 THANK YOU");
    let mut rig = Rig::new("confirm-frames=1 skip-unchanged=false", &caps);
    for _ in 0..2 {
        assert_eq!(rig.push(&noise), None);
    }
    assert_eq!(rig.prop::<u64>("ocr-runs"), 2);
    assert!(
        rig.seen
            .lock()
            .unwrap()
            .iter()
            .all(|o| *o == Out::Buffer(None))
    );
}

/// A slip the pattern matches but the contract refuses, read at every frame: warned about
/// once (then at most once a minute, `throttle.rs`), and said at info level when usable
/// reads come back.
#[test]
fn unusable_ids_are_warned_once_while_they_repeat() {
    init();
    const NAME: &str = "unusable-ids";
    let logged: Arc<Mutex<Vec<(gst::DebugLevel, String)>>> = Arc::default();
    let sink = logged.clone();
    gst::log::set_threshold_for_name("ocrsegment", gst::DebugLevel::Info);
    let log_fn = gst::log::add_log_function(move |cat, level, _, _, _, obj, msg| {
        if cat.name() == "ocrsegment"
            && obj.is_some_and(|o| o.to_string() == NAME)
            && let Some(m) = msg.get()
        {
            sink.lock().unwrap().push((level, m.to_string()));
        }
    });
    let mut frames = Frames::new("BGRx");
    let (caps, bad) = frames.get("ORDER 38/4");
    let (_, good) = frames.get("ORDER 384");
    let mut rig = Rig::new(
        &format!(
            r"name={NAME} confirm-frames=1 skip-unchanged=false order-pattern=(?i)order\s*(\S+)"
        ),
        &caps,
    );
    let lines = |level: gst::DebugLevel, text: &str| -> Vec<String> {
        logged
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, m)| *l == level && m.contains(text))
            .map(|(_, m)| m.clone())
            .collect()
    };
    for _ in 0..4 {
        assert_eq!(rig.push(&bad), None);
    }
    assert!(rig.prop::<u64>("rejected-reads") >= 4);
    let warned = lines(gst::DebugLevel::Warning, "ignored unusable order IDs");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(!warned[0].contains("more since"), "{warned:?}");

    rig.push(&good);
    let cleared = lines(gst::DebugLevel::Info, "no unusable order IDs read any more");
    assert_eq!(cleared.len(), 1, "{:?}", logged.lock().unwrap());
    assert!(
        cleared[0].contains("after 4 occurrences") && cleared[0].contains("(3 not logged)"),
        "{cleared:?}"
    );
    // Back within the minute: counted, not logged again.
    rig.push(&bad);
    assert_eq!(
        lines(gst::DebugLevel::Warning, "ignored unusable order IDs").len(),
        1
    );
    // One OCR line per run, at debug level: none of them at info.
    assert!(lines(gst::DebugLevel::Info, "OCR ").is_empty());
    gst::log::remove_log_function(log_fn);
}

#[test]
fn roi_reads_only_the_region() {
    // Two slips: one at the top, one in the middle. Full-frame reads top first.
    let (caps, buf) = render(&[("ORDER #999", "top"), ("ORDER #384", "center")], "I420");
    let mut full = Rig::new("confirm-frames=1", &caps);
    assert_eq!(full.push(&buf).as_deref(), Some("999"));
    // The centred line spans about x 186..1092, y 285..381 at this font size.
    let mut roi = Rig::new("confirm-frames=1 roi=120,250,1040,220", &caps);
    assert_eq!(roi.push(&buf).as_deref(), Some("384"));
    // A blank region runs no model and reads nothing.
    let (_, blank) = render(&[], "I420");
    assert_eq!(roi.push(&blank), None);
}

#[test]
fn unchanged_frames_skip_ocr_once_settled() {
    let mut frames = Frames::new("NV12");
    let (caps, o384) = frames.get("ORDER #384");
    let (_, blank) = frames.get("");
    let mut rig = Rig::new("confirm-frames=2 release-frames=2", &caps);
    let tags: Vec<Option<String>> = (0..5).map(|_| rig.push(&o384)).collect();
    assert_eq!(
        tags,
        vec![None, some("384"), some("384"), some("384"), some("384")]
    );
    // Frame 1 is OCR'd, frame 2 too because the read was not confirmed yet, then skips.
    assert_eq!(rig.prop::<u64>("ocr-runs"), 2);
    assert_eq!(rig.prop::<u64>("ocr-skipped"), 3);
    // A change is seen at once; release needs a second (forced) OCR'd miss.
    assert_eq!(rig.push(&blank), None);
    assert_eq!(rig.push(&blank), None);
    assert_eq!(rig.push(&blank), None);
    assert_eq!(rig.prop::<u64>("ocr-runs"), 4);
    assert_eq!(rig.prop::<u64>("ocr-skipped"), 4);
    assert_eq!(rig.messages(&["order-released"]).len(), 1);
    assert_eq!(rig.prop::<u64>("frames"), 8);
}

#[test]
fn ocr_interval_inherits_reads() {
    let mut frames = Frames::new("BGRx");
    let (caps, o384) = frames.get("ORDER #384");
    let mut rig = Rig::new(
        "confirm-frames=1 ocr-interval=3 skip-unchanged=false",
        &caps,
    );
    let tags: Vec<Option<String>> = (0..6).map(|_| rig.push(&o384)).collect();
    assert!(tags.iter().all(|t| t.as_deref() == Some("384")), "{tags:?}");
    assert_eq!(rig.prop::<u64>("ocr-runs"), 2);
}

#[test]
fn formats_agree() {
    let mut reads = Vec::new();
    for format in ["BGRx", "I420", "NV12", "RGB", "GRAY8", "ABGR"] {
        let (caps, buf) = render(&[("Order #A7-5521", "center")], format);
        let mut rig = Rig::new("confirm-frames=1", &caps);
        reads.push((format, rig.push(&buf)));
    }
    for (format, read) in &reads {
        assert_eq!(read.as_deref(), Some("A7-5521"), "{format}");
    }
}

/// Starts a bare element with `props` and returns the error message it posted.
fn start_error(props: &[(&str, &str)]) -> String {
    init();
    let element = gst::ElementFactory::make("ocrsegment").build().unwrap();
    for (k, v) in props {
        element.set_property_from_str(k, v);
    }
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    assert!(
        element.set_state(gst::State::Paused).is_err(),
        "{props:?} must fail"
    );
    element.set_state(gst::State::Null).unwrap();
    std::iter::from_fn(|| bus.pop())
        .find_map(|m| match m.view() {
            gst::MessageView::Error(e) => Some(format!("{} {:?}", e.error(), e.debug())),
            _ => None,
        })
        .expect("error message")
}

#[test]
fn bad_settings_fail_clearly_at_start() {
    let e = start_error(&[("order-pattern", "ORDER (\\d+")]);
    assert!(e.contains("not a valid regex"), "{e}");
    let e = start_error(&[("order-pattern", "ORDER \\d+")]);
    assert!(e.contains("exactly one"), "{e}");
    let e = start_error(&[("roi", "10,10,100")]);
    assert!(e.contains("x,y,width,height"), "{e}");
    let e = start_error(&[("station-id", "../x")]);
    assert!(e.contains("station"), "{e}");
    let e = start_error(&[("model-dir", "/nonexistent/oa-models")]);
    assert!(
        e.contains("/nonexistent/oa-models") && e.contains("scripts/setup.sh"),
        "{e}"
    );
}

#[test]
fn roi_outside_the_frame_is_an_error() {
    let (caps, buf) = render(&[], "BGRx");
    init();
    let element = gst::ElementFactory::make("ocrsegment")
        .property("roi", "1200,0,200,100")
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps(caps);
    assert!(h.push(buf).is_err());
    let err = std::iter::from_fn(|| bus.pop())
        .find_map(|m| match m.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        })
        .expect("error message");
    assert!(err.contains("outside the 1280x720 frame"), "{err}");
}

#[test]
fn properties_are_documented() {
    init();
    let element = gst::ElementFactory::make("ocrsegment").build().unwrap();
    let factory = element.factory().unwrap();
    assert_eq!(factory.longname(), "Order slip OCR segmenter");
    assert_eq!(factory.klass(), "Filter/Analyzer/Video");
    let mut names = Vec::new();
    for pspec in element.list_properties() {
        if pspec.owner_type() != element.type_() {
            continue;
        }
        let blurb = pspec.blurb().unwrap_or_default();
        assert!(blurb.len() > 20, "{} has no real blurb", pspec.name());
        names.push(pspec.name().to_string());
    }
    for want in [
        "station-id",
        "roi",
        "model-dir",
        "order-pattern",
        "min-confidence",
        "confirm-frames",
        "release-frames",
        "ocr-interval",
        "skip-unchanged",
        "threads",
        "frames",
        "ocr-runs",
        "ocr-skipped",
        "rejected-reads",
    ] {
        assert!(names.iter().any(|n| n == want), "missing property {want}");
    }
}

/// Converts a rendered frame into the engine's image type.
fn bgr_image(caps: &gst::Caps, buf: &gst::Buffer) -> BgrImage {
    let info = gst_video::VideoInfo::from_caps(caps).unwrap();
    let mapped = gst_video::VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), &info).unwrap();
    frame::to_bgr(&mapped, None).unwrap()
}

/// Rotates `img` by `degrees` about its centre (nearest neighbour, white outside).
fn rotate(img: &BgrImage, degrees: f32) -> BgrImage {
    let (w, h) = (img.width as f32, img.height as f32);
    let (s, c) = degrees.to_radians().sin_cos();
    let mut out = BgrImage::filled(img.width, img.height, [255, 255, 255]);
    for y in 0..img.height {
        for x in 0..img.width {
            let (dx, dy) = (x as f32 - w / 2.0, y as f32 - h / 2.0);
            let sx = (c * dx + s * dy + w / 2.0).round();
            let sy = (-s * dx + c * dy + h / 2.0).round();
            if sx >= 0.0 && sy >= 0.0 && sx < w && sy < h {
                let i = ((y * img.width + x) * 3) as usize;
                out.data[i..i + 3].copy_from_slice(&img.pixel(sx as u32, sy as u32));
            }
        }
    }
    out
}

#[test]
fn engine_reads_tilted_slips() {
    let (caps, buf) = render(&[("ORDER #384", "center")], "BGRx");
    let img = bgr_image(&caps, &buf);
    let mut engine = OcrEngine::new(&OcrConfig::default()).expect("models");
    for degrees in [0.0f32, 10.0, -10.0] {
        let lines = engine.detect_and_recognize(&rotate(&img, degrees)).unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.text.contains("384") && l.confidence > 0.8),
            "{degrees} degrees: {lines:?}"
        );
    }
    // Recognition only on the region that frames the line.
    let region = img.crop(Rect::new(120, 250, 1040, 220)).unwrap();
    let lines = engine.recognize_region(&region).unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].text, "ORDER #384");
    assert!(lines[0].bbox.width < 1040 && lines[0].bbox.height < 220);
    // A blank region yields nothing.
    let blank = BgrImage::filled(400, 100, [255, 255, 255]);
    assert!(engine.recognize_region(&blank).unwrap().is_empty());
    assert!(engine.detect_and_recognize(&blank).unwrap().is_empty());
}
