//! One very long order through the consumer (issue 12, "orders that never end"): a real S3
//! server on 127.0.0.1 (oa-s3-server, SigV4) is seeded with ONE order of 20,000 frames
//! (640x480 JPEGs of ~30 KB), then a consumer finds its marker, streams
//! and selects its frames (`consume::frames`) and recognises the chosen ones with a test
//! double. Prints the frames, the wall time and the peak RSS of the processing (VmHWM,
//! reset after seeding), and the most JPEG bodies held at once.
//!
//!   cargo bench -p orchestrator --bench long_order [-- --frames N] [--distinct M]
//!       [--detector]
//!
//! `--detector` selects with the stand-in YOLO model of the tests
//! (`tests/fixtures/tiny_yolo.onnx`; needs ORT_DYLIB_PATH). Needs gst-launch-1.0 (to make
//! the JPEGs). Frames cycle through `--distinct` (300) different pictures. The server runs
//! as its own process (`target/release/oa-s3-server`, built by `cargo build --release`),
//! so that the peak RSS is the consumer's alone; without that binary it runs in this
//! process (oa_s3server) and its memory is counted too (the output says which).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use oa_contract::{CompletionReason, FrameEntry, Manifest, frame_key};
use orchestrator::consume::frames::{self, MAX_FRAMES_IN_MEMORY};
use orchestrator::consume::{Consumer, ConsumerDeps, Settings};
use orchestrator::detector::{Detector, DetectorConfig};
use orchestrator::metrics::Metrics;
use orchestrator::orders::{Inventory, Orders};
use orchestrator::result::OrderResult;
use orchestrator::store::Store;
use orchestrator::testing::{
    FIRST_FRAME_UNIX_MS, RecognizerDouble, Scratch, consumer_settings, scratch_dir,
};
use tokio::sync::watch;

const ACCESS: &str = "bench-access";
const SECRET: &str = "bench-secret-0123456789";

const BUCKET: &str = "frames";
const STATION: &str = "station_1";
const ORDER: &str = "384";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// A line of /proc/self/status in MB (VmRSS, VmHWM).
fn status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `n` 640x480 JPEGs: SMPTE bars scrolling sideways (each frame differs), ~30 KB each.
fn pictures(dir: &std::path::Path, n: usize) -> Vec<Vec<u8>> {
    orchestrator::testing::videotestsrc_jpegs(
        &dir.join("pictures"),
        &["pattern=smpte", "horizontal-speed=3"],
        (640, 480),
        n,
    )
}

/// The S3 server: its own process, else in this one.
enum Server {
    Process {
        child: std::process::Child,
        dir: std::path::PathBuf,
    },
    InProcess(Box<Scratch>),
}

impl Server {
    async fn start() -> (Server, Store) {
        let bin = std::env::current_exe()
            .ok()
            .and_then(|e| Some(e.parent()?.parent()?.join("oa-s3-server")))
            .filter(|b| b.is_file());
        let Some(bin) = bin else {
            let s = Scratch::start("bench-long-order", ACCESS, SECRET, &[BUCKET]).await;
            let store = s.store.clone();
            return (Server::InProcess(Box::new(s)), store);
        };
        let dir = scratch_dir("bench-long-order");
        let mut child = std::process::Command::new(bin)
            .arg("--root")
            .arg(dir.join("s3"))
            .args(["--bucket", BUCKET, "--access-key", ACCESS])
            .env("OA_S3_SECRET_KEY", SECRET)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("oa-s3-server starts");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("its stdout")),
            &mut line,
        )
        .expect("oa-s3-server says where it listens");
        let endpoint = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("oa-s3-server said {line:?}"))
            .to_owned();
        let store = Store::connect(Some(&endpoint), "us-east-1", true).await;
        (Server::Process { child, dir }, store)
    }

    fn dir(&self) -> &std::path::Path {
        match self {
            Server::Process { dir, .. } => dir,
            Server::InProcess(s) => &s.dir,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Server::Process { .. } => "oa-s3-server in its own process",
            Server::InProcess(_) => "oa_s3server in this process (its memory is counted)",
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Server::Process { child, dir } = self {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn main() {
    // SAFETY: before any other thread exists (the runtime is built below).
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(bench());
}

async fn bench() {
    let n: usize = arg("--frames").map_or(20_000, |v| v.parse().expect("--frames N"));
    let distinct: usize = arg("--distinct").map_or(300, |v| v.parse().expect("--distinct M"));
    let k = 4;
    let (server, store) = Server::start().await;
    println!("S3 server: {}", server.kind());
    let pics = Arc::new(pictures(server.dir(), distinct.max(1)));
    let mean_kb = pics.iter().map(Vec::len).sum::<usize>() as f64 / pics.len() as f64 / 1024.0;

    // Seed: n frames, 32 PUTs at a time.
    let t = Instant::now();
    let entries: Vec<FrameEntry> = (0..n as u32)
        .map(|seq| {
            // 2 frames a second: 20,000 frames are almost 3 hours of a slip in view.
            let unix_ms = FIRST_FRAME_UNIX_MS + u64::from(seq) * 500;
            FrameEntry {
                key: frame_key("", STATION, ORDER, unix_ms, seq).expect("frame key"),
                seq,
                unix_ms,
                bytes: pics[seq as usize % pics.len()].len() as u64,
            }
        })
        .collect();
    let mut puts = futures_util::stream::iter(entries.iter().cloned())
        .map(|e| {
            let (store, pics) = (store.clone(), pics.clone());
            async move {
                let body = pics[e.seq as usize % pics.len()].clone();
                store.put(BUCKET, &e.key, body, "image/jpeg").await
            }
        })
        .buffer_unordered(32);
    while let Some(r) = puts.next().await {
        r.expect("frame stored");
    }
    drop(puts);
    let m = Manifest::new(
        STATION,
        ORDER,
        CompletionReason::MaxDuration,
        entries,
        "bench-1",
    );
    let json = m.to_json();
    let tp = Instant::now();
    let parsed = Manifest::from_json(&json).expect("the manifest parses");
    let parse_ms = tp.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(parsed.frames.len(), n);
    drop(parsed);
    store
        .put_marker(BUCKET, "", &m)
        .await
        .expect("marker stored");
    drop(m);
    println!(
        "seeded {n} frames ({distinct} pictures of {mean_kb:.1} KB on average, {:.0} MB) in \
         {:.1} s; manifest {:.1} MB, parsed in {parse_ms:.1} ms",
        n as f64 * mean_kb / 1024.0,
        t.elapsed().as_secs_f64(),
        json.len() as f64 / 1e6
    );
    drop(json);

    let detector = flag("--detector").then(|| {
        let model =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_yolo.onnx");
        Arc::new(
            Detector::new(&DetectorConfig::new(
                model,
                vec!["person".into(), "item".into()],
                vec!["person".into()],
            ))
            .unwrap_or_else(|e| panic!("{e} (ORT_DYLIB_PATH)")),
        )
    });
    let consumer = Consumer::new(ConsumerDeps {
        store: store.clone(),
        settings: Settings {
            frames_per_order: k,
            ..consumer_settings(&[STATION], BUCKET, "")
        },
        recognizer: Arc::new(RecognizerDouble::sees(&[("apple", 1)])),
        orders: Arc::new(
            Orders::from_json(r#"{"384":[{"name":"apple","quantity":1}]}"#).expect("orders"),
        ),
        inventory: Arc::new(
            Inventory::from_json(r#"{"items":[{"id":"001","name":"apple","aliases":[]}]}"#)
                .expect("inventory"),
        ),
        metrics: Arc::new(Metrics::new()),
        detector,
        expected: None,
    });

    // The peak RSS from here on: writing 5 to clear_refs resets VmHWM (Linux 4.0+).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = status_mb("VmRSS:");
    let t = Instant::now();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(consumer.clone().run(rx.into()));
    while consumer.processed_count() < 1 {
        assert!(
            t.elapsed() < Duration::from_secs(3600),
            "no result within an hour"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = t.elapsed().as_secs_f64();
    let hwm = status_mb("VmHWM:");
    let _ = stop.send(true);
    task.await.expect("consumer stops");
    let key = format!("results/{STATION}/{ORDER}.json");
    let body = store.get(BUCKET, &key).await.expect("GET result");
    let r: OrderResult =
        serde_json::from_slice(&body.expect("result stored").body).expect("result parses");
    println!(
        "processed 1 order of {n} frames in {wall:.2} s (load {} ms, select {} ms): status \
         {:?}, selected {:?}",
        r.timings_ms.load, r.timings_ms.select, r.validation.status, r.selected_frames
    );
    println!(
        "peak RSS while processing {hwm:.1} MB{} (RSS before {rss_before:.1} MB); at most {} \
         JPEG bodies held at once (ceiling {MAX_FRAMES_IN_MEMORY}); loading every frame at \
         once would hold {:.0} MB of bodies",
        if reset {
            ""
        } else {
            " (VmHWM not reset: includes seeding)"
        },
        frames::peak_bodies_held(),
        n as f64 * mean_kb / 1024.0
    );
    println!(
        "BENCH_JSON {{\"frames\":{n},\"seconds\":{wall:.3},\"peak_rss_mb\":{hwm:.1},\
         \"rss_before_mb\":{rss_before:.1},\"max_bodies_held\":{},\"frame_kb\":{mean_kb:.1},\
         \"manifest_parse_ms\":{parse_ms:.1}}}",
        frames::peak_bodies_held()
    );
}
