//! OCR cost per frame, through `ocrsegment` and straight on the engine.
//!
//! `cargo run --release -p gst-plugin-orderaccuracy --example bench_ocr -- [RUNS] [--ppm FILE]`
//!
//! `--ppm FILE` also writes the benchmark frame (exact pixels, RGB PPM) for
//! `scripts/bench/python_ocr.py`, which times the same work through pip `rapidocr`.
//! The last line is `BENCH_JSON {...}` for `scripts/bench.sh`.
//!
//! The frame is a 1280x720 BGRx slip rendered by `textoverlay`, the way the tests make
//! theirs. Element figures are the wall time of one `Harness::push` (OCR plus tagging);
//! the floor is the engine alone on an already converted image.

use gst::prelude::*;
use gst_check::Harness;
use gstorderaccuracy::ocrsegment::frame;
use oa_ocr::{BgrImage, OcrConfig, OcrEngine, Rect};
use std::time::Instant;

/// Frames the slip's line (about x 186..1092, y 285..381) with some slack.
const ROI: Rect = Rect {
    x: 120,
    y: 250,
    width: 1040,
    height: 220,
};

fn render() -> (gst::Caps, gst::Buffer) {
    oa_test_support::frame(
        "videotestsrc pattern=white num-buffers=1 ! video/x-raw,width=1280,height=720,framerate=30/1 \
         ! textoverlay text=\"ORDER #384\" font-desc=\"Sans Bold 48\" valignment=center \
           halignment=center color=0xff000000 draw-outline=false draw-shadow=false \
         ! videoconvert ! video/x-raw,format=BGRx ! appsink name=sink sync=false",
    )
}

struct Summary {
    median: f64,
    min: f64,
    max: f64,
}

fn summarize(mut ms: Vec<f64>) -> Summary {
    ms.sort_by(f64::total_cmp);
    Summary {
        median: ms[ms.len() / 2],
        min: ms[0],
        max: ms[ms.len() - 1],
    }
}

fn time(runs: usize, mut f: impl FnMut()) -> Summary {
    summarize(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

/// Times pushes through `ocrsegment` configured with `props` after `warmup` pushes.
fn element(
    props: &[(&str, &str)],
    caps: &gst::Caps,
    buf: &gst::Buffer,
    warmup: usize,
    runs: usize,
) -> (Summary, u64, u64) {
    let el = gst::ElementFactory::make("ocrsegment").build().unwrap();
    for (k, v) in props {
        el.set_property_from_str(k, v);
    }
    let mut h = Harness::with_element(&el, Some("sink"), Some("src"));
    h.set_src_caps(caps.clone());
    let mut push = || {
        h.push(buf.clone()).expect("push");
        h.pull().expect("pull");
    };
    for _ in 0..warmup {
        push();
    }
    let s = time(runs, push);
    (
        s,
        el.property::<u64>("ocr-runs"),
        el.property::<u64>("ocr-skipped"),
    )
}

fn main() {
    let mut runs: usize = 20;
    let mut ppm: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--ppm" {
            ppm = Some(args.next().expect("--ppm needs a path"));
        } else {
            runs = a.parse::<usize>().expect("RUNS must be a number").max(1);
        }
    }
    gst::init().unwrap();
    gstorderaccuracy::plugin_register_static().unwrap();
    let (caps, buf) = render();
    let roi = format!("{},{},{},{}", ROI.x, ROI.y, ROI.width, ROI.height);

    let mut rows: Vec<(String, Summary, String)> = Vec::new();
    let (s, n, _) = element(&[("skip-unchanged", "false")], &caps, &buf, 2, runs);
    rows.push((
        "element, full frame det+rec".into(),
        s,
        format!("{n} OCR runs"),
    ));
    let (s, n, _) = element(
        &[("skip-unchanged", "false"), ("roi", &roi)],
        &caps,
        &buf,
        2,
        runs,
    );
    rows.push(("element, ROI rec only".into(), s, format!("{n} OCR runs")));
    // Two warm-up frames let the debounce settle; after that identical frames skip OCR.
    let (s, n, k) = element(&[("skip-unchanged", "true")], &caps, &buf, 2, runs);
    rows.push((
        "element, unchanged (skipped)".into(),
        s,
        format!("{n} OCR runs, {k} skipped"),
    ));

    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    let mapped = gst_video::VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), &info).unwrap();
    let full = frame::to_bgr(&mapped, None).unwrap();
    let region = frame::to_bgr(&mapped, Some(ROI)).unwrap();
    if let Some(path) = &ppm {
        write_ppm(path, &full);
    }
    // Same detection size as the element's default, so the floor is the same work.
    let det_max_side: u32 = gst::ElementFactory::make("ocrsegment")
        .build()
        .unwrap()
        .property("det-max-side");
    let mut engine = OcrEngine::new(&OcrConfig {
        det_max_side_len: det_max_side,
        ..OcrConfig::default()
    })
    .expect("engine");
    let lines = engine.detect_and_recognize(&full).unwrap();
    let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    let s = time(runs, || {
        engine.detect_and_recognize(&full).unwrap();
    });
    rows.push((
        "engine floor, full frame det+rec".into(),
        s,
        format!("{text:?}"),
    ));
    let lines = engine.recognize_region(&region).unwrap();
    let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    let s = time(runs, || {
        engine.recognize_region(&region).unwrap();
    });
    rows.push(("engine floor, ROI rec only".into(), s, format!("{text:?}")));
    let s = time(runs, || {
        frame::to_bgr(&mapped, None).unwrap();
    });
    rows.push(("BGRx->BGR conversion, full frame".into(), s, String::new()));
    let s = time(runs, || {
        frame::signature(&mapped, Rect::new(0, 0, 1280, 720)).unwrap();
    });
    rows.push(("change signature, full frame".into(), s, String::new()));

    println!("1280x720 BGRx slip \"ORDER #384\", {runs} runs each, 1 ORT thread");
    println!(
        "{:<36} {:>10} {:>10} {:>10}  notes",
        "path", "median ms", "min ms", "max ms"
    );
    let mut json = Vec::new();
    for (name, s, note) in rows {
        println!(
            "{:<36} {:>10.2} {:>10.2} {:>10.2}  {}",
            name, s.median, s.min, s.max, note
        );
        json.push(format!(
            "{:?}:{{\"median\":{:.3},\"min\":{:.3},\"max\":{:.3}}}",
            name, s.median, s.min, s.max
        ));
    }
    println!(
        "BENCH_JSON {{\"ocr\":{{{}}},\"ocr_runs\":{runs},\"roi\":\"{roi}\",\"det_max_side\":{det_max_side}}}",
        json.join(",")
    );
}

/// Binary PPM (RGB) of a BGR image: the exact pixels the engine sees, readable by OpenCV.
fn write_ppm(path: &str, img: &BgrImage) {
    let mut out = format!("P6\n{} {}\n255\n", img.width, img.height).into_bytes();
    out.extend(img.data.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]));
    std::fs::write(path, out).unwrap_or_else(|e| panic!("{path}: {e}"));
}
